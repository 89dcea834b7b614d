//! Padding, so that ciphertext lengths do not reveal token lengths.
//!
//! * A whole (Known-Length) Binary HTTP message is followed by zeros up to a multiple of
//!   [`BUCKET`] bytes (RFC 9292 §3.8 padding; the decoder checks they are zeros).
//! * Every chunk of a chunked OHTTP message carries one *frame*:
//!
//!   ```text
//!   frame = varint(payload length) || payload || zeros, padded to a multiple of BUCKET
//!   ```
//!
//!   so a streamed token of 3 bytes and one of 200 bytes both travel as a 256-byte frame
//!   (plus the 16-byte AEAD tag and the chunk's length prefix). [`unframe`] removes the pad and
//!   refuses a frame whose length runs past it or whose pad is not zeros. An observer learns
//!   only the number of events and each one's size rounded up to 256 bytes.

use crate::varint;

/// Padding granularity in bytes.
pub const BUCKET: usize = 256;

/// Rounds `len` up to a multiple of [`BUCKET`] (at least one bucket).
pub fn padded_len(len: usize) -> usize {
    len.max(1).div_ceil(BUCKET) * BUCKET
}

/// Appends zeros to a Binary HTTP message up to a multiple of [`BUCKET`].
pub fn pad_message(msg: &mut Vec<u8>) {
    msg.resize(padded_len(msg.len()), 0);
}

/// Builds a padded frame around `payload`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let header = varint::len(payload.len() as u64);
    let mut out = Vec::with_capacity(padded_len(header + payload.len()));
    varint::put(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    pad_message(&mut out);
    out
}

/// Why a frame is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length runs past the end of the chunk")]
    Length,
    #[error("frame padding is not all zeros")]
    Padding,
}

/// The payload of a padded frame.
pub fn unframe(frame: &[u8]) -> Result<&[u8], FrameError> {
    let varint::Read::Value(len, n) = varint::read(frame) else {
        return Err(FrameError::Length);
    };
    let rest = &frame[n..];
    let len = usize::try_from(len).map_err(|_| FrameError::Length)?;
    if len > rest.len() {
        return Err(FrameError::Length);
    }
    let (payload, pad) = rest.split_at(len);
    if pad.iter().any(|b| *b != 0) {
        return Err(FrameError::Padding);
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_hide_payload_lengths_within_a_bucket_and_round_trip() {
        for len in [0, 1, 3, 200, 253, 254] {
            let payload = vec![7u8; len];
            let f = frame(&payload);
            assert_eq!(f.len(), BUCKET, "payload of {len} bytes");
            assert_eq!(unframe(&f), Ok(&payload[..]));
        }
        assert_eq!(frame(&[1; 255]).len(), 2 * BUCKET);
        let mut f = frame(b"abc");
        f[10] = 1;
        assert_eq!(unframe(&f), Err(FrameError::Padding));
        assert_eq!(unframe(&[0x45]), Err(FrameError::Length));
        assert_eq!(unframe(&[]), Err(FrameError::Length));
    }
}
