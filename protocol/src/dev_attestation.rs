//! The `dev` attestation bundle: a development CA's ed25519 key signs
//! `dev_attestation_message(enclave_key, near_key, expires_at)` instead of a TEE quote.
//! Registries accept it only when their policy names this CA's public key, which is never the
//! case on mainnet. The worker's dev provider makes these bundles; tests that stand in for a
//! node make the very same ones.

use attestation::{AttestationBundle, AttestationKind, BUNDLE_VERSION, DevEvidence, EventLogEntry};
use ed25519_dalek::{Signer as _, SigningKey};

/// The bundle binding `enclave_key` (x25519) and `near_key` (ed25519 public key), valid until
/// `expires_at` (unix seconds), signed by the dev CA `ca`.
pub fn dev_bundle(
    ca: &SigningKey,
    enclave_key: &[u8; 32],
    near_key: &[u8; 32],
    expires_at: u64,
) -> AttestationBundle {
    dev_bundle_with_events(ca, enclave_key, near_key, expires_at, Vec::new())
        .unwrap_or_else(|_| unreachable!("a bundle without events always signs"))
}

/// [`dev_bundle`] carrying the dstack runtime `events` the node measured (e.g.
/// `ecloud-model-weights`), their RTMR3 replay signed with the keys; refused for an event that
/// is not a runtime event or whose digest is not its payload's.
pub fn dev_bundle_with_events(
    ca: &SigningKey,
    enclave_key: &[u8; 32],
    near_key: &[u8; 32],
    expires_at: u64,
    events: Vec<EventLogEntry>,
) -> Result<AttestationBundle, attestation::AttestationError> {
    let message = attestation::dev_attestation_message_with_events(
        enclave_key,
        near_key,
        expires_at,
        &events,
    )?;
    Ok(AttestationBundle {
        version: BUNDLE_VERSION,
        kind: AttestationKind::Dev,
        enclave_key: enclave_key.to_vec(),
        near_public_key: attestation::format_near_ed25519_key(near_key),
        tdx: None,
        dev: Some(DevEvidence {
            expires_at,
            signature: ca.sign(&message).to_bytes().to_vec(),
            events,
        }),
        gpus: Vec::new(),
        switches: Vec::new(),
        gpu_challenge: None,
    })
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
        assert!(verdict.model_weights.is_empty());
        // Without events the JSON is what it always was.
        assert!(!String::from_utf8(json).unwrap().contains("events"));
    }

    /// A dev node measures the weights it serves as a TDX node does (RTMR3 runtime events):
    /// the verdict shows them, and the CA's signature covers them.
    #[test]
    fn a_dev_bundle_measures_model_weights_under_the_ca_signature() {
        let ca = SigningKey::from_bytes(&[42; 32]);
        let weights = attestation::runtime_event(attestation::MODEL_WEIGHTS_EVENT, &[0xab; 32]);
        let bundle =
            dev_bundle_with_events(&ca, &[1; 32], &[2; 32], 2_000, vec![weights]).expect("signed");
        let policy = VerifyPolicy {
            dev_ca_public_key: Some(ca.verifying_key().to_bytes()),
            ..VerifyPolicy::default()
        };
        let json = serde_json::to_vec(&bundle).unwrap();
        let parsed = attestation::parse_bundle(&json).unwrap();
        let verdict = attestation::verify_bundle(&parsed, 1_000, &policy, &RustCrypto).unwrap();
        assert_eq!(verdict.model_weights, vec!["ab".repeat(32)]);
        assert_eq!(verdict.events[0].name, "ecloud-model-weights");

        // Other weights in place of the signed ones, or none at all: the signature fails.
        let mut swapped = parsed.clone();
        let dev = swapped.dev.as_mut().unwrap();
        dev.events = vec![attestation::runtime_event(
            attestation::MODEL_WEIGHTS_EVENT,
            &[0xcd; 32],
        )];
        assert!(attestation::verify_bundle(&swapped, 1_000, &policy, &RustCrypto).is_err());
        let mut dropped = parsed.clone();
        dropped.dev.as_mut().unwrap().events.clear();
        assert!(attestation::verify_bundle(&dropped, 1_000, &policy, &RustCrypto).is_err());
        // Only runtime events are carried.
        let mut firmware = attestation::runtime_event("x", b"");
        firmware.imr = 1;
        assert!(dev_bundle_with_events(&ca, &[1; 32], &[2; 32], 2_000, vec![firmware]).is_err());
    }
}
