//! Unit-test helpers shared with other contracts' tests (the model factory's), compiled for
//! this crate's tests and with the `test-utils` feature.

/// Runs `f`, expecting a panic whose message contains `needle`.
pub fn assert_panics_with<R>(f: impl FnOnce() -> R, needle: &str) {
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .err()
        .unwrap_or_else(|| panic!("expected a panic containing '{needle}'"));
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default();
    assert!(
        msg.contains(needle),
        "panic '{msg}' does not contain '{needle}'"
    );
}
