//! HPKE contexts for our suites, and the response AEAD of RFC 9458 §4.4 (with the chunk
//! counter of chunked OHTTP).

use aes_gcm::aead::{Aead as _, KeyInit, Payload};
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use crate::error::OhttpError;
use crate::key_config::{AeadId, Kem};

type Kdf = hpke::kdf::HkdfSha256;
type Aes = hpke::aead::AesGcm128;
type ChaCha = hpke::aead::ChaCha20Poly1305;

/// Length of the encapsulated key (X25519).
pub const ENC_LEN: usize = 32;

/// The sender's HPKE context (client side of a request).
pub(crate) enum SenderCtx {
    Aes(Box<hpke::aead::AeadCtxS<Aes, Kdf, Kem>>),
    ChaCha(hpke::aead::AeadCtxS<ChaCha, Kdf, Kem>),
}

/// The recipient's HPKE context (gateway side of a request).
pub(crate) enum ReceiverCtx {
    Aes(Box<hpke::aead::AeadCtxR<Aes, Kdf, Kem>>),
    ChaCha(hpke::aead::AeadCtxR<ChaCha, Kdf, Kem>),
}

pub(crate) fn setup_sender(
    aead: AeadId,
    pk: &<Kem as hpke::Kem>::PublicKey,
    info: &[u8],
) -> Result<([u8; ENC_LEN], SenderCtx), OhttpError> {
    fn enc_bytes(e: <Kem as hpke::Kem>::EncappedKey) -> Result<[u8; ENC_LEN], OhttpError> {
        e.to_bytes()
            .as_slice()
            .try_into()
            .map_err(|_| OhttpError::Crypto)
    }
    match aead {
        AeadId::Aes128Gcm => {
            let (enc, ctx) = hpke::setup_sender::<Aes, Kdf, Kem>(&OpModeS::Base, pk, info)
                .map_err(|_| OhttpError::Crypto)?;
            Ok((enc_bytes(enc)?, SenderCtx::Aes(Box::new(ctx))))
        }
        AeadId::ChaCha20Poly1305 => {
            let (enc, ctx) = hpke::setup_sender::<ChaCha, Kdf, Kem>(&OpModeS::Base, pk, info)
                .map_err(|_| OhttpError::Crypto)?;
            Ok((enc_bytes(enc)?, SenderCtx::ChaCha(ctx)))
        }
    }
}

pub(crate) fn setup_receiver(
    aead: AeadId,
    sk: &<Kem as hpke::Kem>::PrivateKey,
    enc: &[u8],
    info: &[u8],
) -> Result<ReceiverCtx, OhttpError> {
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| OhttpError::Decrypt)?;
    Ok(match aead {
        AeadId::Aes128Gcm => ReceiverCtx::Aes(Box::new(
            hpke::setup_receiver::<Aes, Kdf, Kem>(&OpModeR::Base, sk, &enc, info)
                .map_err(|_| OhttpError::Decrypt)?,
        )),
        AeadId::ChaCha20Poly1305 => ReceiverCtx::ChaCha(
            hpke::setup_receiver::<ChaCha, Kdf, Kem>(&OpModeR::Base, sk, &enc, info)
                .map_err(|_| OhttpError::Decrypt)?,
        ),
    })
}

impl SenderCtx {
    pub(crate) fn seal(&mut self, pt: &[u8], aad: &[u8]) -> Result<Vec<u8>, OhttpError> {
        match self {
            Self::Aes(c) => c.seal(pt, aad),
            Self::ChaCha(c) => c.seal(pt, aad),
        }
        .map_err(|_| OhttpError::Crypto)
    }

    pub(crate) fn export(&self, label: &[u8], out: &mut [u8]) -> Result<(), OhttpError> {
        match self {
            Self::Aes(c) => c.export(label, out),
            Self::ChaCha(c) => c.export(label, out),
        }
        .map_err(|_| OhttpError::Crypto)
    }
}

impl ReceiverCtx {
    pub(crate) fn open(&mut self, ct: &[u8], aad: &[u8]) -> Result<Vec<u8>, OhttpError> {
        match self {
            Self::Aes(c) => c.open(ct, aad),
            Self::ChaCha(c) => c.open(ct, aad),
        }
        .map_err(|_| OhttpError::Decrypt)
    }

    pub(crate) fn export(&self, label: &[u8], out: &mut [u8]) -> Result<(), OhttpError> {
        match self {
            Self::Aes(c) => c.export(label, out),
            Self::ChaCha(c) => c.export(label, out),
        }
        .map_err(|_| OhttpError::Crypto)
    }
}

/// Length of the response nonce: max(Nn, Nk).
pub(crate) fn response_nonce_len(aead: AeadId) -> usize {
    aead.nonce_len().max(aead.key_len())
}

/// The response AEAD (RFC 9458 §4.4):
///
/// ```text
/// secret = context.Export(label, max(Nn, Nk))
/// salt = enc || response_nonce
/// prk = Extract(salt, secret)
/// aead_key = Expand(prk, "key", Nk); aead_nonce = Expand(prk, "nonce", Nn)
/// ```
///
/// Chunk `i` of a chunked response uses `aead_nonce XOR i` (i big-endian over Nn bytes), as
/// HPKE does for its own sequence numbers.
pub(crate) struct ResponseCipher {
    cipher: ResponseAead,
    nonce: [u8; 12],
    counter: u64,
}

enum ResponseAead {
    Aes(Box<aes_gcm::Aes128Gcm>),
    ChaCha(Box<chacha20poly1305::ChaCha20Poly1305>),
}

impl ResponseCipher {
    pub(crate) fn new(
        aead: AeadId,
        secret: &[u8],
        enc: &[u8],
        response_nonce: &[u8],
    ) -> Result<Self, OhttpError> {
        let mut salt = Vec::with_capacity(enc.len() + response_nonce.len());
        salt.extend_from_slice(enc);
        salt.extend_from_slice(response_nonce);
        let prk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&salt), secret);
        let mut key = Zeroizing::new(vec![0u8; aead.key_len()]);
        let mut nonce = [0u8; 12];
        prk.expand(b"key", &mut key)
            .map_err(|_| OhttpError::Crypto)?;
        prk.expand(b"nonce", &mut nonce)
            .map_err(|_| OhttpError::Crypto)?;
        let cipher = match aead {
            AeadId::Aes128Gcm => ResponseAead::Aes(Box::new(
                aes_gcm::Aes128Gcm::new_from_slice(&key).map_err(|_| OhttpError::Crypto)?,
            )),
            AeadId::ChaCha20Poly1305 => ResponseAead::ChaCha(Box::new(
                chacha20poly1305::ChaCha20Poly1305::new_from_slice(&key)
                    .map_err(|_| OhttpError::Crypto)?,
            )),
        };
        Ok(Self {
            cipher,
            nonce,
            counter: 0,
        })
    }

    fn next_nonce(&mut self) -> Result<[u8; 12], OhttpError> {
        let mut nonce = self.nonce;
        for (n, c) in nonce[4..].iter_mut().zip(self.counter.to_be_bytes()) {
            *n ^= c;
        }
        self.counter = self.counter.checked_add(1).ok_or(OhttpError::Crypto)?;
        Ok(nonce)
    }

    pub(crate) fn seal(&mut self, pt: &[u8], aad: &[u8]) -> Result<Vec<u8>, OhttpError> {
        let nonce = self.next_nonce()?;
        let payload = Payload { msg: pt, aad };
        match &self.cipher {
            ResponseAead::Aes(c) => c.encrypt(&nonce.into(), payload),
            ResponseAead::ChaCha(c) => c.encrypt(&nonce.into(), payload),
        }
        .map_err(|_| OhttpError::Crypto)
    }

    pub(crate) fn open(&mut self, ct: &[u8], aad: &[u8]) -> Result<Vec<u8>, OhttpError> {
        let nonce = self.next_nonce()?;
        let payload = Payload { msg: ct, aad };
        match &self.cipher {
            ResponseAead::Aes(c) => c.decrypt(&nonce.into(), payload),
            ResponseAead::ChaCha(c) => c.decrypt(&nonce.into(), payload),
        }
        .map_err(|_| OhttpError::Decrypt)
    }
}
