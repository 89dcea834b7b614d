//! ECDSA P-384 / SHA-384 signature verification, the one function every P-384 signature of the
//! crate goes through (NVIDIA certificate chains and SPDM reports).

use p384::ecdsa::signature::Verifier;
use p384::ecdsa::{Signature, VerifyingKey};

/// The signature does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSignature;

/// Verifies `sig` over SHA-384(`msg`) with `key`; exactly what
/// `p384::ecdsa::VerifyingKey::verify` accepts (high `s` included).
pub fn verify(key: &VerifyingKey, msg: &[u8], sig: &Signature) -> Result<(), BadSignature> {
    key.verify(msg, sig).map_err(|_| BadSignature)
}
