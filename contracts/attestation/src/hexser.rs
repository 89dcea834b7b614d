//! Serde helpers: byte fields are hex strings in JSON; arrays of numbers are accepted too
//! (dstack's endpoint and near/mpc emit byte arrays).
//!
//! Decoding is ours rather than the `hex` crate's: a bundle carries ~11 KB of hex-encoded
//! bytes (quote, CRLs, event log) and `hex::decode` at the contracts' `opt-level = "z"` cost
//! about 0.27 Mgas per byte on NEAR (3 Tgas per registration); the table lookup below costs
//! a seventh of that.

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    d.deserialize_any(BytesVisitor)
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a hex string or an array of bytes")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        let v = v.strip_prefix("0x").unwrap_or(v);
        decode(v.as_bytes()).map_err(|e| E::custom(format_args!("invalid hex: {e}")))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}

/// Why a hex string did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("odd number of digits ({0})")]
    OddLength(usize),
    #[error("{0:?} at position {1} is not a hex digit")]
    InvalidDigit(char, usize),
}

/// Value of each byte as a hex digit, 0xff for anything else.
const DIGITS: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Decodes hex (either case), all-or-nothing. The loop has no early exit and no index
/// arithmetic: invalid digits set high bits in `bad`, located only once the loop is done.
pub fn decode(hex: &[u8]) -> Result<Vec<u8>, HexError> {
    let (pairs, odd) = hex.as_chunks::<2>();
    if !odd.is_empty() {
        return Err(HexError::OddLength(hex.len()));
    }
    let mut out = vec![0u8; pairs.len()];
    let mut bad = 0u8;
    for (byte, [hi, lo]) in out.iter_mut().zip(pairs) {
        let (hi, lo) = (DIGITS[usize::from(*hi)], DIGITS[usize::from(*lo)]);
        bad |= hi | lo;
        *byte = (hi << 4) | (lo & 0x0f);
    }
    if bad > 0x0f {
        let (index, &c) = hex
            .iter()
            .enumerate()
            .find(|&(_, &c)| DIGITS[usize::from(c)] > 0x0f)
            .unwrap_or((0, &0));
        return Err(HexError::InvalidDigit(char::from(c), index));
    }
    Ok(out)
}

/// Renders bytes as lowercase hex (for verdicts and error messages).
pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_the_hex_crate() {
        let bytes: Vec<u8> = (0..=255).collect();
        for text in [hex::encode(&bytes), hex::encode_upper(&bytes)] {
            assert_eq!(decode(text.as_bytes()), Ok(bytes.clone()));
        }
        assert_eq!(decode(b""), Ok(Vec::new()));
        assert_eq!(decode(b"0aF9"), Ok(vec![0x0a, 0xf9]));
    }

    #[test]
    fn refuses_every_non_digit_and_odd_lengths() {
        for c in 0..=255u8 {
            if c.is_ascii_hexdigit() {
                continue;
            }
            let mut text = b"00112233".to_vec();
            text[5] = c;
            assert_eq!(
                decode(&text),
                Err(HexError::InvalidDigit(char::from(c), 5)),
                "byte {c}"
            );
            assert!(hex::decode(&text).is_err());
        }
        assert_eq!(decode(b"abc"), Err(HexError::OddLength(3)));
        assert_eq!(
            decode("é".as_bytes()),
            Err(HexError::InvalidDigit('\u{c3}', 0))
        );
    }
}
