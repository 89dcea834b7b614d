//! The `dev` attestation bundle: a development CA's ed25519 key signs
//! `dev_attestation_message(enclave_key, near_key, expires_at)` instead of a TEE quote.
//! Registries accept it only when their policy names this CA's public key, which is never the
//! case on mainnet. The worker's dev provider makes these bundles; tests that stand in for a
//! node make the very same ones.

use attestation::{AttestationBundle, AttestationKind, BUNDLE_VERSION, DevEvidence};
use ed25519_dalek::{Signer as _, SigningKey};

/// The bundle binding `enclave_key` (x25519) and `near_key` (ed25519 public key), valid until
/// `expires_at` (unix seconds), signed by the dev CA `ca`.
pub fn dev_bundle(
    ca: &SigningKey,
    enclave_key: &[u8; 32],
    near_key: &[u8; 32],
    expires_at: u64,
) -> AttestationBundle {
    let message = attestation::dev_attestation_message(enclave_key, near_key, expires_at);
    AttestationBundle {
        version: BUNDLE_VERSION,
        kind: AttestationKind::Dev,
        enclave_key: enclave_key.to_vec(),
        near_public_key: attestation::format_near_ed25519_key(near_key),
        tdx: None,
        dev: Some(DevEvidence {
            expires_at,
            signature: ca.sign(&message).to_bytes().to_vec(),
        }),
        gpus: Vec::new(),
        switches: Vec::new(),
        gpu_challenge: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use attestation::{RustCrypto, VerifyPolicy};

    #[test]
    fn the_bundle_verifies_under_its_ca_only() {
        let ca = SigningKey::from_bytes(&[42; 32]);
        let bundle = dev_bundle(&ca, &[1; 32], &[2; 32], 2_000);
        let json = serde_json::to_vec(&bundle).unwrap();
        let parsed = attestation::parse_bundle(&json).unwrap();
        let policy = |key: [u8; 32]| VerifyPolicy {
            dev_ca_public_key: Some(key),
            ..VerifyPolicy::default()
        };
        let ca_key = ca.verifying_key().to_bytes();
        let verdict = attestation::verify_bundle(&parsed, 1_000, &policy(ca_key), &RustCrypto)
            .expect("signed by the policy's CA");
        assert_eq!(verdict.expires_at, Some(2_000));
        assert_eq!(verdict.bound_keys.enclave_key, hex::encode([1u8; 32]));
        let other = SigningKey::from_bytes(&[43; 32]).verifying_key().to_bytes();
        assert!(attestation::verify_bundle(&parsed, 1_000, &policy(other), &RustCrypto).is_err());
    }
}
