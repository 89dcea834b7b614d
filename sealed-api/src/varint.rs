//! QUIC variable-length integers (RFC 9000 §16), the length prefix of Binary HTTP and of
//! chunked OHTTP.

/// Largest value a varint can carry (2^62 - 1).
pub const MAX_VARINT: u64 = (1 << 62) - 1;

/// Appends `v` in the shortest encoding. Values above [`MAX_VARINT`] cannot be encoded; every
/// length this crate writes is bounded by its limits, far below.
pub fn put(out: &mut Vec<u8>, v: u64) {
    debug_assert!(v <= MAX_VARINT);
    if v < 1 << 6 {
        out.push(v as u8);
    } else if v < 1 << 14 {
        out.extend_from_slice(&((v as u16) | 0x4000).to_be_bytes());
    } else if v < 1 << 30 {
        out.extend_from_slice(&((v as u32) | 0x8000_0000).to_be_bytes());
    } else {
        out.extend_from_slice(&(v | 0xc000_0000_0000_0000).to_be_bytes());
    }
}

/// Encoded length of `v`.
pub fn len(v: u64) -> usize {
    match v {
        0..0x40 => 1,
        0x40..0x4000 => 2,
        0x4000..0x4000_0000 => 4,
        _ => 8,
    }
}

/// Result of reading a varint from the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The value and the number of bytes it took.
    Value(u64, usize),
    /// The buffer ends inside the varint: more bytes are needed.
    Incomplete,
}

/// Reads a varint from the front of `buf`.
pub fn read(buf: &[u8]) -> Read {
    let Some(&first) = buf.first() else {
        return Read::Incomplete;
    };
    let n = 1usize << (first >> 6);
    if buf.len() < n {
        return Read::Incomplete;
    }
    let mut v = u64::from(first & 0x3f);
    for b in &buf[1..n] {
        v = (v << 8) | u64::from(*b);
    }
    Read::Value(v, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_each_width_and_reports_incomplete_input() {
        for v in [0, 63, 64, 16383, 16384, (1 << 30) - 1, 1 << 30, MAX_VARINT] {
            let mut out = Vec::new();
            put(&mut out, v);
            assert_eq!(out.len(), len(v));
            assert_eq!(read(&out), Read::Value(v, out.len()));
            assert_eq!(read(&out[..out.len() - 1]), Read::Incomplete);
        }
        // RFC 9000 Appendix A.1 examples.
        assert_eq!(read(&[0x40, 0x25]), Read::Value(37, 2));
        assert_eq!(read(&[0x9d, 0x7f, 0x3e, 0x7d]), Read::Value(494_878_333, 4));
    }
}
