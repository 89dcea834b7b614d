//! Oblivious HTTP (RFC 9458): request encapsulation (§4.3) and response encapsulation (§4.4)
//! for whole messages. The chunked variant is in [`crate::chunked`].
//!
//! ```text
//! request  = key_id(1) || kem_id(2) || kdf_id(2) || aead_id(2) || enc(32) || ct
//!            info = "message/bhttp request" || 0x00 || the 7-byte header
//! response = response_nonce(max(Nn, Nk)) || ct
//! ```
//! The AEAD additional data is empty in both directions.

use zeroize::Zeroizing;

use crate::crypto::{self, ENC_LEN, ReceiverCtx, ResponseCipher, SenderCtx};
use crate::error::OhttpError;
use crate::key_config::{AeadId, GatewayKey, KDF_HKDF_SHA256, KEM_X25519_HKDF_SHA256, KeyConfig};
use crate::limits::Limits;

/// HPKE info label of a request.
pub const REQUEST_LABEL: &[u8] = b"message/bhttp request";
/// Exporter label of a response.
pub const RESPONSE_LABEL: &[u8] = b"message/bhttp response";
/// Length of the request header (key id, KEM, KDF, AEAD).
pub const HEADER_LEN: usize = 7;

/// The 7-byte request header.
pub(crate) fn header(key_id: u8, aead: AeadId) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = key_id;
    h[1..3].copy_from_slice(&KEM_X25519_HKDF_SHA256.to_be_bytes());
    h[3..5].copy_from_slice(&KDF_HKDF_SHA256.to_be_bytes());
    h[5..7].copy_from_slice(&aead.id().to_be_bytes());
    h
}

/// `label || 0x00 || header`.
pub(crate) fn info(label: &[u8], header: &[u8; HEADER_LEN]) -> Vec<u8> {
    let mut info = Vec::with_capacity(label.len() + 1 + HEADER_LEN);
    info.extend_from_slice(label);
    info.push(0);
    info.extend_from_slice(header);
    info
}

/// The front of an encapsulated request.
pub(crate) struct Parsed<'a> {
    pub(crate) header: [u8; HEADER_LEN],
    pub(crate) aead: AeadId,
    pub(crate) enc: &'a [u8],
    /// The ciphertext (or the chunks) after `enc`.
    pub(crate) body: &'a [u8],
}

/// Reads and checks the header and `enc` at the front of an encapsulated request.
pub(crate) fn parse_header<'a>(key: &GatewayKey, wire: &'a [u8]) -> Result<Parsed<'a>, OhttpError> {
    if wire.len() < HEADER_LEN + ENC_LEN {
        return Err(OhttpError::Malformed(
            "shorter than header and encapsulated key",
        ));
    }
    let (hdr, rest) = wire.split_at(HEADER_LEN);
    let (enc, body) = rest.split_at(ENC_LEN);
    let key_id = hdr[0];
    if key_id != key.config().key_id {
        return Err(OhttpError::UnknownKeyId(key_id));
    }
    let kem = u16::from_be_bytes([hdr[1], hdr[2]]);
    let kdf = u16::from_be_bytes([hdr[3], hdr[4]]);
    let aead_id = u16::from_be_bytes([hdr[5], hdr[6]]);
    let aead = AeadId::from_id(aead_id)
        .filter(|a| {
            kem == KEM_X25519_HKDF_SHA256
                && kdf == KDF_HKDF_SHA256
                && key.config().aeads.contains(a)
        })
        .ok_or(OhttpError::UnsupportedSuite {
            kem,
            kdf,
            aead: aead_id,
        })?;
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(hdr);
    Ok(Parsed {
        header,
        aead,
        enc,
        body,
    })
}

/// What the client keeps to open the response to a request it sealed.
pub struct ResponseOpener {
    aead: AeadId,
    enc: [u8; ENC_LEN],
    secret: Zeroizing<Vec<u8>>,
    max_response: usize,
}

/// What the gateway keeps to seal the response to a request it opened.
pub struct ResponseSealer {
    aead: AeadId,
    enc: [u8; ENC_LEN],
    secret: Zeroizing<Vec<u8>>,
}

fn export_secret(
    aead: AeadId,
    label: &[u8],
    export: impl FnOnce(&[u8], &mut [u8]) -> Result<(), OhttpError>,
) -> Result<Zeroizing<Vec<u8>>, OhttpError> {
    let mut secret = Zeroizing::new(vec![0u8; crypto::response_nonce_len(aead)]);
    export(label, &mut secret)?;
    Ok(secret)
}

/// Client: encapsulates `bhttp` (an already padded Binary HTTP request) to `config`.
pub fn encapsulate_request(
    config: &KeyConfig,
    bhttp: &[u8],
    limits: &Limits,
) -> Result<(Vec<u8>, ResponseOpener), OhttpError> {
    if bhttp.len() > limits.max_request_bytes {
        return Err(OhttpError::TooLarge {
            max: limits.max_request_bytes,
        });
    }
    let aead = config.preferred_aead();
    let hdr = header(config.key_id, aead);
    let (enc, mut ctx) =
        crypto::setup_sender(aead, &config.hpke_public_key()?, &info(REQUEST_LABEL, &hdr))?;
    let ct = ctx.seal(bhttp, b"")?;
    let secret = export_secret(aead, RESPONSE_LABEL, |l, o| ctx.export(l, o))?;
    let mut wire = Vec::with_capacity(HEADER_LEN + ENC_LEN + ct.len());
    wire.extend_from_slice(&hdr);
    wire.extend_from_slice(&enc);
    wire.extend_from_slice(&ct);
    Ok((
        wire,
        ResponseOpener {
            aead,
            enc,
            secret,
            max_response: limits.max_response_bytes,
        },
    ))
}

/// Gateway: decapsulates a request; returns the Binary HTTP plaintext and the sealer for the
/// response.
pub fn decapsulate_request(
    key: &GatewayKey,
    wire: &[u8],
    limits: &Limits,
) -> Result<(Vec<u8>, ResponseSealer), OhttpError> {
    if wire.len() > limits.max_request_bytes + HEADER_LEN + ENC_LEN + 16 {
        return Err(OhttpError::TooLarge {
            max: limits.max_request_bytes,
        });
    }
    let Parsed {
        header: hdr,
        aead,
        enc,
        body: ct,
    } = parse_header(key, wire)?;
    let mut ctx: ReceiverCtx =
        crypto::setup_receiver(aead, &key.secret, enc, &info(REQUEST_LABEL, &hdr))?;
    let plaintext = ctx.open(ct, b"")?;
    let secret = export_secret(aead, RESPONSE_LABEL, |l, o| ctx.export(l, o))?;
    let mut e = [0u8; ENC_LEN];
    e.copy_from_slice(enc);
    Ok((
        plaintext,
        ResponseSealer {
            aead,
            enc: e,
            secret,
        },
    ))
}

impl ResponseSealer {
    /// Seals `bhttp` (an already padded Binary HTTP response) with a fresh response nonce.
    pub fn seal(self, bhttp: &[u8]) -> Result<Vec<u8>, OhttpError> {
        let mut nonce = vec![0u8; crypto::response_nonce_len(self.aead)];
        crate::random::fill(&mut nonce);
        self.seal_with_nonce(&nonce, bhttp)
    }

    /// Seals with a given response nonce: only for reproducing published test vectors.
    #[doc(hidden)]
    pub fn seal_with_nonce(self, nonce: &[u8], bhttp: &[u8]) -> Result<Vec<u8>, OhttpError> {
        let mut cipher = ResponseCipher::new(self.aead, &self.secret, &self.enc, nonce)?;
        let ct = cipher.seal(bhttp, b"")?;
        let mut wire = Vec::with_capacity(nonce.len() + ct.len());
        wire.extend_from_slice(nonce);
        wire.extend_from_slice(&ct);
        Ok(wire)
    }

    /// Opens a response sealed for this same exchange (the gateway side derives the same key;
    /// used to check published vectors, where the client's ephemeral key is not available).
    #[doc(hidden)]
    pub fn open_as_client(self, wire: &[u8]) -> Result<Vec<u8>, OhttpError> {
        ResponseOpener {
            aead: self.aead,
            enc: self.enc,
            secret: self.secret,
            max_response: usize::MAX,
        }
        .open(wire)
    }
}

impl ResponseOpener {
    /// Opens the encapsulated response (the padded Binary HTTP response inside).
    pub fn open(self, wire: &[u8]) -> Result<Vec<u8>, OhttpError> {
        if wire.len() > self.max_response.saturating_add(64) {
            return Err(OhttpError::TooLarge {
                max: self.max_response,
            });
        }
        let n = crypto::response_nonce_len(self.aead);
        if wire.len() < n + self.aead.tag_len() {
            return Err(OhttpError::Malformed("shorter than response nonce and tag"));
        }
        let (nonce, ct) = wire.split_at(n);
        let mut cipher = ResponseCipher::new(self.aead, &self.secret, &self.enc, nonce)?;
        cipher.open(ct, b"")
    }
}

/// The chunked variant needs the same pieces.
pub(crate) struct ResponseKeys {
    pub(crate) aead: AeadId,
    pub(crate) enc: [u8; ENC_LEN],
    pub(crate) secret: Zeroizing<Vec<u8>>,
}

pub(crate) fn sender_keys(
    ctx: &SenderCtx,
    aead: AeadId,
    enc: [u8; ENC_LEN],
    label: &[u8],
) -> Result<ResponseKeys, OhttpError> {
    Ok(ResponseKeys {
        aead,
        enc,
        secret: export_secret(aead, label, |l, o| ctx.export(l, o))?,
    })
}

pub(crate) fn receiver_keys(
    ctx: &ReceiverCtx,
    aead: AeadId,
    enc: &[u8],
    label: &[u8],
) -> Result<ResponseKeys, OhttpError> {
    let mut e = [0u8; ENC_LEN];
    e.copy_from_slice(enc);
    Ok(ResponseKeys {
        aead,
        enc: e,
        secret: export_secret(aead, label, |l, o| ctx.export(l, o))?,
    })
}
