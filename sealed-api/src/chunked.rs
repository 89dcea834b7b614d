//! Chunked Oblivious HTTP (draft-ietf-ohai-chunked-ohttp): the same keys as RFC 9458, with
//! the message cut into separately sealed chunks so a response streams.
//!
//! ```text
//! request  = header(7) || enc(32) || chunk* || final
//!            info = "message/bhttp chunked request" || 0x00 || header
//!            chunk i sealed with the HPKE context (its sequence number is i)
//! response = response_nonce(max(Nn, Nk)) || chunk* || final
//!            secret = Export("message/bhttp chunked response", max(Nn, Nk)), key schedule
//!            as RFC 9458 §4.4, chunk i sealed with nonce aead_nonce XOR i
//! chunk    = varint(len > 0) || ciphertext(len)        AAD ""
//! final    = varint(0) || ciphertext (to the end)       AAD "final"
//! ```
//!
//! Security properties the tests check:
//! * truncation: a stream that ends before a chunk sealed with AAD `"final"` is refused
//!   ([`OhttpError::Truncated`]); cutting a stream and appending an indicator of 0 does not
//!   help, since the last chunk was sealed without "final";
//! * reordering and replay: chunk `i` only opens under nonce `i`, so a moved, repeated or
//!   dropped chunk fails to decrypt ([`OhttpError::Decrypt`]) and poisons the stream;
//! * bounded memory: a declared chunk length over [`Limits::max_chunk_bytes`] is refused as
//!   soon as its length prefix arrives, and so is a final chunk that grows past it.
//!
//! Every chunk's plaintext is one padded frame ([`crate::padding`]).

use crate::crypto::{self, ENC_LEN, ReceiverCtx, ResponseCipher, SenderCtx};
use crate::error::OhttpError;
use crate::key_config::{GatewayKey, KeyConfig};
use crate::limits::{Limits, MAX_FRAME};
use crate::ohttp::{self, HEADER_LEN, ResponseKeys};
use crate::padding;
use crate::varint;

/// HPKE info label of a chunked request.
pub const CHUNKED_REQUEST_LABEL: &[u8] = b"message/bhttp chunked request";
/// Exporter label of a chunked response.
pub const CHUNKED_RESPONSE_LABEL: &[u8] = b"message/bhttp chunked response";
/// AAD of the final chunk.
pub const FINAL_AAD: &[u8] = b"final";

/// Largest payload one frame carries (frame header of at most 4 bytes, padded to
/// [`MAX_FRAME`]).
pub const MAX_FRAME_PAYLOAD: usize = MAX_FRAME - 4;

/// Seals chunks in order.
pub(crate) trait SealChunk {
    fn seal_chunk(&mut self, pt: &[u8], aad: &[u8]) -> Result<Vec<u8>, OhttpError>;
}

/// Opens chunks in order.
pub(crate) trait OpenChunk {
    fn open_chunk(&mut self, ct: &[u8], aad: &[u8]) -> Result<Vec<u8>, OhttpError>;
}

impl SealChunk for SenderCtx {
    fn seal_chunk(&mut self, pt: &[u8], aad: &[u8]) -> Result<Vec<u8>, OhttpError> {
        self.seal(pt, aad)
    }
}

impl SealChunk for ResponseCipher {
    fn seal_chunk(&mut self, pt: &[u8], aad: &[u8]) -> Result<Vec<u8>, OhttpError> {
        self.seal(pt, aad)
    }
}

impl OpenChunk for ReceiverCtx {
    fn open_chunk(&mut self, ct: &[u8], aad: &[u8]) -> Result<Vec<u8>, OhttpError> {
        self.open(ct, aad)
    }
}

impl OpenChunk for ResponseCipher {
    fn open_chunk(&mut self, ct: &[u8], aad: &[u8]) -> Result<Vec<u8>, OhttpError> {
        self.open(ct, aad)
    }
}

/// Seals one frame (at most [`MAX_FRAME_PAYLOAD`] bytes of payload) as a chunk.
pub(crate) fn seal_frame(
    cipher: &mut impl SealChunk,
    payload: &[u8],
    last: bool,
) -> Result<Vec<u8>, OhttpError> {
    if payload.len() > MAX_FRAME_PAYLOAD {
        return Err(OhttpError::TooLarge {
            max: MAX_FRAME_PAYLOAD,
        });
    }
    let ct = cipher.seal_chunk(&padding::frame(payload), if last { FINAL_AAD } else { b"" })?;
    let mut out = Vec::with_capacity(ct.len() + 4);
    varint::put(&mut out, if last { 0 } else { ct.len() as u64 });
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Reads chunks as bytes arrive and opens each one as soon as it is whole.
pub(crate) struct ChunkReader<C> {
    cipher: C,
    buf: Vec<u8>,
    in_final: bool,
    failed: bool,
    max_chunk: usize,
}

impl<C: OpenChunk> ChunkReader<C> {
    pub(crate) fn new(cipher: C, max_chunk: usize) -> Self {
        Self {
            cipher,
            buf: Vec::new(),
            in_final: false,
            failed: false,
            max_chunk,
        }
    }

    /// Consumes `data`; returns the payloads of the chunks it completed, in order.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, OhttpError> {
        if self.failed {
            return Err(OhttpError::Closed);
        }
        let r = self.feed_inner(data);
        self.failed = r.is_err();
        r
    }

    fn feed_inner(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, OhttpError> {
        let mut out = Vec::new();
        let mut data = data;
        loop {
            if self.in_final {
                if self.buf.len() + data.len() > self.max_chunk {
                    return Err(OhttpError::OversizedChunk {
                        len: (self.buf.len() + data.len()) as u64,
                        max: self.max_chunk,
                    });
                }
                self.buf.extend_from_slice(data);
                return Ok(out);
            }
            // Take only what completes the chunk at the front, so the buffer never holds
            // more than one chunk.
            let (len, n) = match varint::read(&self.buf) {
                varint::Read::Value(len, n) => (len, n),
                varint::Read::Incomplete => {
                    let Some((&b, rest)) = data.split_first() else {
                        return Ok(out);
                    };
                    self.buf.push(b);
                    data = rest;
                    continue;
                }
            };
            if len == 0 {
                self.buf.clear();
                self.in_final = true;
                continue;
            }
            if len > self.max_chunk as u64 {
                return Err(OhttpError::OversizedChunk {
                    len,
                    max: self.max_chunk,
                });
            }
            let want = n + len as usize;
            let take = (want - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() < want {
                return Ok(out);
            }
            let pt = self.cipher.open_chunk(&self.buf[n..], b"")?;
            out.push(padding::unframe(&pt)?.to_vec());
            self.buf.clear();
        }
    }

    /// The stream ended: opens the final chunk, or reports truncation.
    pub(crate) fn finish(&mut self) -> Result<Vec<u8>, OhttpError> {
        if self.failed {
            return Err(OhttpError::Closed);
        }
        self.failed = true;
        if !self.in_final {
            return Err(OhttpError::Truncated);
        }
        let pt = self.cipher.open_chunk(&self.buf, FINAL_AAD)?;
        Ok(padding::unframe(&pt)?.to_vec())
    }
}

/// Client: seals `bhttp` (a Binary HTTP request) as a chunked request, split into frames.
pub fn seal_chunked_request(
    config: &KeyConfig,
    bhttp: &[u8],
    limits: &Limits,
) -> Result<(Vec<u8>, ChunkedResponseReader), OhttpError> {
    if bhttp.len() > limits.max_request_bytes {
        return Err(OhttpError::TooLarge {
            max: limits.max_request_bytes,
        });
    }
    let aead = config.preferred_aead();
    let hdr = ohttp::header(config.key_id, aead);
    let (enc, mut ctx) = crypto::setup_sender(
        aead,
        &config.hpke_public_key()?,
        &ohttp::info(CHUNKED_REQUEST_LABEL, &hdr),
    )?;
    let keys = ohttp::sender_keys(&ctx, aead, enc, CHUNKED_RESPONSE_LABEL)?;
    let mut wire = Vec::with_capacity(HEADER_LEN + ENC_LEN + padding::padded_len(bhttp.len()) + 64);
    wire.extend_from_slice(&hdr);
    wire.extend_from_slice(&enc);
    let mut pieces = bhttp.chunks(MAX_FRAME_PAYLOAD).peekable();
    if pieces.peek().is_none() {
        wire.extend_from_slice(&seal_frame(&mut ctx, &[], true)?);
    }
    while let Some(piece) = pieces.next() {
        let last = pieces.peek().is_none();
        wire.extend_from_slice(&seal_frame(&mut ctx, piece, last)?);
    }
    Ok((
        wire,
        ChunkedResponseReader {
            keys,
            max_chunk: limits.max_chunk_bytes,
            state: ReaderState::Nonce(Vec::new()),
        },
    ))
}

/// Gateway: opens a whole chunked request (bounded by [`Limits::max_request_bytes`]);
/// returns the Binary HTTP request and the writer of the chunked response.
pub fn open_chunked_request(
    key: &GatewayKey,
    wire: &[u8],
    limits: &Limits,
) -> Result<(Vec<u8>, ChunkedResponseWriter), OhttpError> {
    let ohttp::Parsed {
        header: hdr,
        aead,
        enc,
        body: chunks,
    } = ohttp::parse_header(key, wire)?;
    let ctx = crypto::setup_receiver(
        aead,
        &key.secret,
        enc,
        &ohttp::info(CHUNKED_REQUEST_LABEL, &hdr),
    )?;
    let keys = ohttp::receiver_keys(&ctx, aead, enc, CHUNKED_RESPONSE_LABEL)?;
    let mut reader = ChunkReader::new(ctx, limits.max_chunk_bytes);
    let mut bhttp = Vec::new();
    let mut append = |piece: Vec<u8>| {
        if bhttp.len() + piece.len() > limits.max_request_bytes {
            return Err(OhttpError::TooLarge {
                max: limits.max_request_bytes,
            });
        }
        bhttp.extend_from_slice(&piece);
        Ok(())
    };
    for piece in reader.feed(chunks)? {
        append(piece)?;
    }
    append(reader.finish()?)?;
    Ok((bhttp, ChunkedResponseWriter::new(keys)?))
}

/// Gateway: seals the frames of a chunked response in order; the response nonce goes out in
/// front of the first chunk.
pub struct ChunkedResponseWriter {
    cipher: ResponseCipher,
    nonce: Option<Vec<u8>>,
}

impl ChunkedResponseWriter {
    fn new(keys: ResponseKeys) -> Result<Self, OhttpError> {
        let mut nonce = vec![0u8; crypto::response_nonce_len(keys.aead)];
        crate::random::fill(&mut nonce);
        let cipher = ResponseCipher::new(keys.aead, &keys.secret, &keys.enc, &nonce)?;
        Ok(Self {
            cipher,
            nonce: Some(nonce),
        })
    }

    fn prefixed(&mut self, chunk: Vec<u8>) -> Vec<u8> {
        match self.nonce.take() {
            Some(mut nonce) => {
                nonce.extend_from_slice(&chunk);
                nonce
            }
            None => chunk,
        }
    }

    /// One non-final chunk carrying `payload` (at most [`MAX_FRAME_PAYLOAD`] bytes).
    pub fn frame(&mut self, payload: &[u8]) -> Result<Vec<u8>, OhttpError> {
        let chunk = seal_frame(&mut self.cipher, payload, false)?;
        Ok(self.prefixed(chunk))
    }

    /// The final chunk; nothing may follow it.
    pub fn finish(mut self, payload: &[u8]) -> Result<Vec<u8>, OhttpError> {
        let chunk = seal_frame(&mut self.cipher, payload, true)?;
        Ok(self.prefixed(chunk))
    }
}

enum ReaderState {
    Nonce(Vec<u8>),
    Chunks(ChunkReader<ResponseCipher>),
}

/// Client: opens a chunked response as its bytes arrive.
pub struct ChunkedResponseReader {
    keys: ResponseKeys,
    max_chunk: usize,
    state: ReaderState,
}

impl ChunkedResponseReader {
    /// Consumes bytes from the network; returns the frame payloads completed, in order.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, OhttpError> {
        let mut data = data;
        if let ReaderState::Nonce(nonce) = &mut self.state {
            let need = crypto::response_nonce_len(self.keys.aead);
            let take = (need - nonce.len()).min(data.len());
            nonce.extend_from_slice(&data[..take]);
            data = &data[take..];
            if nonce.len() < need {
                return Ok(Vec::new());
            }
            let cipher =
                ResponseCipher::new(self.keys.aead, &self.keys.secret, &self.keys.enc, nonce)?;
            self.state = ReaderState::Chunks(ChunkReader::new(cipher, self.max_chunk));
        }
        match &mut self.state {
            ReaderState::Chunks(reader) => reader.feed(data),
            ReaderState::Nonce(_) => Ok(Vec::new()),
        }
    }

    /// The response ended: the final frame's payload, or [`OhttpError::Truncated`].
    pub fn finish(&mut self) -> Result<Vec<u8>, OhttpError> {
        match &mut self.state {
            ReaderState::Chunks(reader) => reader.finish(),
            ReaderState::Nonce(_) => Err(OhttpError::Truncated),
        }
    }
}
