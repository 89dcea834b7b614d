//! The one error type of sealing and opening.

use crate::bhttp::BhttpError;
use crate::key_config::KeyConfigError;
use crate::padding::FrameError;

/// Why a message could not be sealed or opened. Variants never carry plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OhttpError {
    #[error("unknown key id {0}")]
    UnknownKeyId(u8),
    #[error("unsupported suite: KEM 0x{kem:04x}, KDF 0x{kdf:04x}, AEAD 0x{aead:04x}")]
    UnsupportedSuite { kem: u16, kdf: u16, aead: u16 },
    #[error("malformed encapsulated message: {0}")]
    Malformed(&'static str),
    /// Wrong key, a changed byte, a chunk out of order or replayed: AEAD cannot (and must not)
    /// tell these apart.
    #[error("message does not decrypt (wrong key, tampered, reordered or replayed chunk)")]
    Decrypt,
    #[error("stream ended without its final chunk (truncated)")]
    Truncated,
    #[error("chunk of {len} bytes is over the limit of {max}")]
    OversizedChunk { len: u64, max: usize },
    #[error("message is over the limit of {max} bytes")]
    TooLarge { max: usize },
    #[error("the stream already failed or ended")]
    Closed,
    #[error("the key configuration does not carry the attested enclave key")]
    NotAttestedKey,
    #[error("encryption failed")]
    Crypto,
    #[error(transparent)]
    KeyConfig(#[from] KeyConfigError),
    #[error(transparent)]
    Bhttp(#[from] BhttpError),
    #[error(transparent)]
    Frame(#[from] FrameError),
}
