//! Randomness from the operating system.

/// Fills `buf` with random bytes. A system without a working random source cannot seal
/// anything safely, so this aborts the request rather than continue with weak bytes.
pub fn fill(buf: &mut [u8]) {
    #[allow(clippy::expect_used)]
    getrandom::fill(buf).expect("the operating system's random source failed");
}
