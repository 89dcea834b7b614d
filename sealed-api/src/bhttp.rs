//! Binary HTTP (RFC 9292): the plaintext inside every OHTTP message.
//!
//! * Requests are Known-Length messages (framing indicator 0), padded with zeros to a multiple
//!   of the padding bucket ([`crate::padding::BUCKET`]). The decoder also accepts RFC 9292
//!   §3.8 truncation (empty trailing sections left out), as in RFC 9458 Appendix A.
//! * Whole responses are Known-Length (framing indicator 1), padded the same way.
//! * Streamed responses are Indeterminate-Length (framing indicator 3), produced piece by piece:
//!   [`encode_streamed_head`], one [`encode_content_chunk`] per body frame, and
//!   [`encode_streamed_end`]; their concatenation is one valid RFC 9292 message.
//!
//! Decoding never panics and never allocates more than its input (plus a bounded field list):
//! every length is checked against the bytes that remain.

use crate::varint;

/// Most header fields a message may carry (each costs a `Vec` entry on decode).
pub const MAX_FIELDS: usize = 128;

/// A header field: lowercase name, value.
pub type Field = (String, String);

/// Why a Binary HTTP message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BhttpError {
    #[error("binary HTTP message is truncated inside {0}")]
    Truncated(&'static str),
    #[error("unexpected binary HTTP framing indicator {0}")]
    Framing(u64),
    #[error("binary HTTP {0} is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("binary HTTP message has more than {MAX_FIELDS} fields")]
    TooManyFields,
    #[error("binary HTTP status {0} is not a valid status code")]
    Status(u64),
    #[error("binary HTTP padding is not all zeros")]
    Padding,
}

/// An HTTP request as carried inside OHTTP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    pub method: String,
    pub scheme: String,
    pub authority: String,
    pub path: String,
    pub headers: Vec<Field>,
    pub body: Vec<u8>,
}

/// An HTTP response as carried inside OHTTP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<Field>,
    pub body: Vec<u8>,
}

/// The status and headers of a streamed response (its body follows in chunks).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Vec<Field>,
}

const KNOWN_REQUEST: u64 = 0;
const KNOWN_RESPONSE: u64 = 1;
const INDETERMINATE_RESPONSE: u64 = 3;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    varint::put(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn field_lines(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        put_bytes(&mut out, name.to_ascii_lowercase().as_bytes());
        put_bytes(&mut out, value.as_bytes());
    }
    out
}

/// Encodes a Known-Length request (unpadded; see [`crate::padding::pad_message`]).
pub fn encode_request(req: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + req.body.len());
    varint::put(&mut out, KNOWN_REQUEST);
    for part in [&req.method, &req.scheme, &req.authority, &req.path] {
        put_bytes(&mut out, part.as_bytes());
    }
    put_bytes(&mut out, &field_lines(&req.headers));
    put_bytes(&mut out, &req.body);
    varint::put(&mut out, 0); // no trailers
    out
}

/// Encodes a Known-Length response (unpadded).
pub fn encode_response(res: &Response) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + res.body.len());
    varint::put(&mut out, KNOWN_RESPONSE);
    varint::put(&mut out, u64::from(res.status));
    put_bytes(&mut out, &field_lines(&res.headers));
    put_bytes(&mut out, &res.body);
    varint::put(&mut out, 0);
    out
}

/// The first piece of a streamed (Indeterminate-Length) response: status and header fields.
/// (Field lines of an indeterminate section end with an empty name.)
pub fn encode_streamed_head(head: &ResponseHead) -> Vec<u8> {
    let mut out = Vec::new();
    varint::put(&mut out, INDETERMINATE_RESPONSE);
    varint::put(&mut out, u64::from(head.status));
    out.extend_from_slice(&field_lines(&head.headers));
    varint::put(&mut out, 0); // end of the header section
    out
}

/// One content chunk of a streamed response. Empty data encodes nothing (a zero length would
/// end the content).
pub fn encode_content_chunk(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    if !data.is_empty() {
        put_bytes(&mut out, data);
    }
    out
}

/// The end of a streamed response: end of content, then the trailer fields (the node's
/// response signature travels here, in the final sealed chunk, after the body it signs).
pub fn encode_streamed_end(trailers: &[Field]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&field_lines(trailers));
    out.push(0);
    out
}

/// A cursor over a message being decoded.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, BhttpError> {
        match varint::read(self.buf) {
            varint::Read::Value(v, n) => {
                self.buf = &self.buf[n..];
                Ok(v)
            }
            varint::Read::Incomplete => Err(BhttpError::Truncated(what)),
        }
    }

    /// A length-prefixed byte string; a message ending before the length reads as empty
    /// (RFC 9292 §3.8 truncation) only where `truncatable`.
    fn bytes(&mut self, what: &'static str, truncatable: bool) -> Result<&'a [u8], BhttpError> {
        if truncatable && self.is_empty() {
            return Ok(&[]);
        }
        let len = self.varint(what)?;
        let len = usize::try_from(len).map_err(|_| BhttpError::Truncated(what))?;
        if len > self.buf.len() {
            return Err(BhttpError::Truncated(what));
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    fn text(&mut self, what: &'static str, truncatable: bool) -> Result<String, BhttpError> {
        let b = self.bytes(what, truncatable)?;
        String::from_utf8(b.to_vec()).map_err(|_| BhttpError::NotUtf8(what))
    }

    fn padding(&self) -> Result<(), BhttpError> {
        if self.buf.iter().all(|b| *b == 0) {
            Ok(())
        } else {
            Err(BhttpError::Padding)
        }
    }
}

fn parse_field_lines(mut r: Reader<'_>) -> Result<Vec<Field>, BhttpError> {
    let mut fields = Vec::new();
    while !r.is_empty() {
        if fields.len() == MAX_FIELDS {
            return Err(BhttpError::TooManyFields);
        }
        let name = r.text("field name", false)?;
        let value = r.text("field value", false)?;
        fields.push((name, value));
    }
    Ok(fields)
}

fn known_fields(r: &mut Reader<'_>) -> Result<Vec<Field>, BhttpError> {
    let section = r.bytes("field section", true)?;
    parse_field_lines(Reader { buf: section })
}

fn status(v: u64) -> Result<u16, BhttpError> {
    match u16::try_from(v) {
        Ok(s) if (100..=999).contains(&s) => Ok(s),
        _ => Err(BhttpError::Status(v)),
    }
}

/// Decodes a Known-Length request (padding, if any, must be zeros).
pub fn decode_request(buf: &[u8]) -> Result<Request, BhttpError> {
    let mut r = Reader { buf };
    let framing = r.varint("framing indicator")?;
    if framing != KNOWN_REQUEST {
        return Err(BhttpError::Framing(framing));
    }
    let method = r.text("method", false)?;
    let scheme = r.text("scheme", false)?;
    let authority = r.text("authority", false)?;
    let path = r.text("path", false)?;
    let headers = known_fields(&mut r)?;
    let body = r.bytes("content", true)?.to_vec();
    let _trailers = known_fields(&mut r)?;
    r.padding()?;
    Ok(Request {
        method,
        scheme,
        authority,
        path,
        headers,
        body,
    })
}

/// Decodes a Known-Length response, skipping informational (1xx) responses.
pub fn decode_response(buf: &[u8]) -> Result<Response, BhttpError> {
    let mut r = Reader { buf };
    let framing = r.varint("framing indicator")?;
    if framing != KNOWN_RESPONSE {
        return Err(BhttpError::Framing(framing));
    }
    let status = loop {
        let s = status(r.varint("status")?)?;
        if s >= 200 {
            break s;
        }
        known_fields(&mut r)?; // an informational response's fields
    };
    let headers = known_fields(&mut r)?;
    let body = r.bytes("content", true)?.to_vec();
    let _trailers = known_fields(&mut r)?;
    r.padding()?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Decodes the head piece of a streamed response ([`encode_streamed_head`]).
pub fn decode_streamed_head(buf: &[u8]) -> Result<ResponseHead, BhttpError> {
    let mut r = Reader { buf };
    let framing = r.varint("framing indicator")?;
    if framing != INDETERMINATE_RESPONSE {
        return Err(BhttpError::Framing(framing));
    }
    let status = status(r.varint("status")?)?;
    let headers = indeterminate_fields(&mut r)?;
    if !r.is_empty() {
        return Err(BhttpError::Truncated("head (trailing bytes)"));
    }
    Ok(ResponseHead { status, headers })
}

/// Field lines up to an empty name (an Indeterminate-Length field section).
fn indeterminate_fields(r: &mut Reader<'_>) -> Result<Vec<Field>, BhttpError> {
    let mut fields = Vec::new();
    loop {
        let name = r.text("field name", false)?;
        if name.is_empty() {
            return Ok(fields);
        }
        if fields.len() == MAX_FIELDS {
            return Err(BhttpError::TooManyFields);
        }
        fields.push((name, r.text("field value", false)?));
    }
}

/// What a body piece of a streamed response held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentPiece {
    pub data: Vec<u8>,
    /// `Some(trailer fields)` when the piece ended the message.
    pub trailers: Option<Vec<Field>>,
}

/// Decodes a body piece: at most one content chunk, optionally followed by the end of the
/// content and the trailer section.
pub fn decode_content_piece(buf: &[u8]) -> Result<ContentPiece, BhttpError> {
    let mut r = Reader { buf };
    let mut data = Vec::new();
    if r.is_empty() {
        return Ok(ContentPiece {
            data,
            trailers: None,
        });
    }
    let chunk = r.bytes("content chunk", false)?;
    if !chunk.is_empty() {
        data.extend_from_slice(chunk);
        if r.is_empty() {
            return Ok(ContentPiece {
                data,
                trailers: None,
            });
        }
        if !r.bytes("end of content", false)?.is_empty() {
            return Err(BhttpError::Truncated("end of content"));
        }
    }
    let trailers = indeterminate_fields(&mut r)?;
    if !r.is_empty() {
        return Err(BhttpError::Truncated("trailer section (trailing bytes)"));
    }
    Ok(ContentPiece {
        data,
        trailers: Some(trailers),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_response_round_trip() {
        let req = Request {
            method: "POST".into(),
            scheme: "https".into(),
            authority: "node".into(),
            path: "/v1/chat/completions".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{\"x\":1}".to_vec(),
        };
        let mut wire = encode_request(&req);
        assert_eq!(decode_request(&wire), Ok(req));
        wire.push(1);
        assert_eq!(decode_request(&wire), Err(BhttpError::Padding));

        let res = Response {
            status: 402,
            headers: vec![("x-a".into(), "b".into())],
            body: b"pay".to_vec(),
        };
        let mut wire = encode_response(&res);
        wire.extend_from_slice(&[0; 40]);
        assert_eq!(decode_response(&wire), Ok(res));
    }

    #[test]
    fn streamed_pieces_concatenate_to_one_indeterminate_message() {
        let head = ResponseHead {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
        };
        assert_eq!(decode_streamed_head(&encode_streamed_head(&head)), Ok(head));
        let piece = encode_content_chunk(b"data: 1\n\n");
        assert_eq!(
            decode_content_piece(&piece),
            Ok(ContentPiece {
                data: b"data: 1\n\n".to_vec(),
                trailers: None
            })
        );
        let mut last = encode_content_chunk(b"data: 2\n\n");
        let sig: Vec<Field> = vec![("x-signature".into(), "0xabc".into())];
        last.extend_from_slice(&encode_streamed_end(&sig));
        assert_eq!(
            decode_content_piece(&last),
            Ok(ContentPiece {
                data: b"data: 2\n\n".to_vec(),
                trailers: Some(sig)
            })
        );
        assert!(
            decode_content_piece(&encode_streamed_end(&[]))
                .is_ok_and(|p| p.trailers == Some(vec![]))
        );
    }

    #[test]
    fn hostile_lengths_are_refused_without_allocating_them() {
        // A content length of 2^62 - 1 in a 20-byte message.
        let mut wire = vec![0, 0, 0, 0, 0, 0];
        wire.extend_from_slice(&[0xff; 8]);
        assert!(matches!(
            decode_request(&wire),
            Err(BhttpError::Truncated(_))
        ));
        let mut many = Vec::new();
        for _ in 0..=MAX_FIELDS {
            many.extend_from_slice(&[1, b'a', 0]);
        }
        let mut wire = vec![0, 0, 0, 0, 0];
        put_bytes(&mut wire, &many);
        assert_eq!(decode_request(&wire), Err(BhttpError::TooManyFields));
        assert_eq!(
            decode_response(&[1, 0x43, 0xe8]),
            Err(BhttpError::Status(1000))
        );
    }
}
