//! Minimal DER TLV splitting: enough to take a certificate's signed `tbsCertificate` bytes
//! verbatim and to read an ECDSA signature, without re-encoding anything.

/// Splits one TLV off the front of `input`: `(tag, value, rest)`. Only definite lengths up to
/// 4 length bytes are accepted (DER). `None` when truncated or malformed.
pub fn split(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (tlv_len, header_len) = tlv_lengths(input)?;
    let tag = *input.first()?;
    let value = input.get(header_len..tlv_len)?;
    let rest = input.get(tlv_len..)?;
    Some((tag, value, rest))
}

/// Splits one whole TLV (header included) off the front: `(tlv, rest)`.
pub fn split_raw(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tlv_len, _) = tlv_lengths(input)?;
    Some((input.get(..tlv_len)?, input.get(tlv_len..)?))
}

/// `(total TLV length, header length)`.
fn tlv_lengths(input: &[u8]) -> Option<(usize, usize)> {
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2usize)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = input.get(2..2 + n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + n)
    };
    let total = header.checked_add(len)?;
    (total <= input.len()).then_some((total, header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_short_and_long_forms() {
        assert_eq!(
            split(&[0x02, 1, 5, 9]),
            Some((0x02, &[5u8][..], &[9u8][..]))
        );
        let mut long = vec![0x04, 0x81, 200];
        long.extend([1u8; 200]);
        let (tag, v, rest) = split(&long).expect("long form");
        assert_eq!((tag, v.len(), rest.len()), (0x04, 200, 0));
        assert_eq!(split(&long[..100]), None);
        assert_eq!(split(&[0x30]), None);
        assert_eq!(split(&[0x30, 0x85, 0, 0, 0, 0, 0]), None);
    }
}
