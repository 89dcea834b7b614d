//! The `dev` attestation kind: a development CA vouches for a node's keys until an expiry.
//! Only for localnet/testnet; the registry decides at init whether a dev CA exists at all.

use crate::bundle::{DevEvidence, fixed};
use crate::{AttestationError, Crypto};

/// Domain separation for dev attestation signatures.
pub const DEV_DOMAIN: &[u8] = b"enclave-cloud-dev-attestation-v1";

/// The bytes the development CA signs:
/// `DEV_DOMAIN || enclave_key || near_key || expires_at (u64 big-endian)`.
pub fn dev_attestation_message(
    enclave_key: &[u8; 32],
    near_key: &[u8; 32],
    expires_at: u64,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(DEV_DOMAIN.len() + 72);
    m.extend_from_slice(DEV_DOMAIN);
    m.extend_from_slice(enclave_key);
    m.extend_from_slice(near_key);
    m.extend_from_slice(&expires_at.to_be_bytes());
    m
}

/// Verifies a dev attestation; returns its expiry.
pub fn verify_dev<C: Crypto>(
    ev: &DevEvidence,
    enclave_key: &[u8; 32],
    near_key: &[u8; 32],
    now: u64,
    ca_public_key: &[u8; 32],
    crypto: &C,
) -> Result<u64, AttestationError> {
    let signature: [u8; 64] = fixed(&ev.signature, "dev.signature")?;
    let message = dev_attestation_message(enclave_key, near_key, ev.expires_at);
    if !crypto.ed25519_verify(&signature, &message, ca_public_key) {
        return Err(AttestationError::DevSignature);
    }
    if now > ev.expires_at {
        return Err(AttestationError::DevExpired {
            expires_at: ev.expires_at,
            now,
        });
    }
    Ok(ev.expires_at)
}
