//! The `dev` provider: a development CA's ed25519 key (from the worker's config) signs
//! `dev_attestation_message(enclave_key, near_key, expires_at)`. Registries accept it only when
//! their policy names this CA's public key, which is never the case on mainnet.

use std::fmt;

use std::sync::RwLock;

use attestation::{AttestationBundle, AttestationKind, EventLogEntry};
use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

use super::{AttestError, AttestationProvider};
use crate::keys::PublicKeys;

/// Default lifetime of a dev attestation: one day.
pub const DEFAULT_DEV_VALIDITY_SECS: u64 = 24 * 3600;

pub struct DevProvider {
    ca: SigningKey,
    validity_secs: u64,
    /// The runtime events measured so far (what RTMR3 would hold on a TDX node).
    events: RwLock<Vec<EventLogEntry>>,
}

impl DevProvider {
    pub fn new(ca_secret: &[u8; 32], validity_secs: u64) -> Self {
        Self {
            ca: SigningKey::from_bytes(ca_secret),
            validity_secs,
            events: RwLock::default(),
        }
    }

    /// From the CA's 32-byte secret key in hex (64 characters).
    pub fn from_hex(ca_secret_hex: &str, validity_secs: u64) -> Result<Self, AttestError> {
        let bytes = Zeroizing::new(
            hex::decode(ca_secret_hex.trim())
                .map_err(|e| AttestError::DevKey(format!("not hex: {e}")))?,
        );
        let secret: &[u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| AttestError::DevKey(format!("{} bytes, expected 32", bytes.len())))?;
        Ok(Self::new(secret, validity_secs))
    }

    /// The CA public key a dev registry policy must carry.
    pub fn ca_public_key(&self) -> [u8; 32] {
        self.ca.verifying_key().to_bytes()
    }
}

impl fmt::Debug for DevProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevProvider")
            .field("ca_public_key", &hex::encode(self.ca_public_key()))
            .field("validity_secs", &self.validity_secs)
            .finish_non_exhaustive()
    }
}

impl AttestationProvider for DevProvider {
    fn kind(&self) -> AttestationKind {
        AttestationKind::Dev
    }

    fn attest(
        &self,
        keys: &PublicKeys,
        now_unix_secs: u64,
    ) -> Result<AttestationBundle, AttestError> {
        let expires_at = now_unix_secs.saturating_add(self.validity_secs);
        let events = self
            .events
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        protocol::dev_attestation::dev_bundle_with_events(
            &self.ca,
            &keys.enclave_key,
            &keys.near_key,
            expires_at,
            events,
        )
        .map_err(|e| AttestError::DevKey(e.to_string()))
    }

    /// Records the event as dstack would extend RTMR3 with it; the CA signs its replay.
    fn measure(&self, event: &str, payload: &[u8]) -> Result<(), AttestError> {
        self.events
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(attestation::runtime_event(event, payload));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::EnclaveKeys;
    use attestation::{AttestationError, RustCrypto, VerifyPolicy};

    const NOW: u64 = 1_790_000_000;

    fn dev_policy(ca: [u8; 32]) -> VerifyPolicy {
        VerifyPolicy {
            dev_ca_public_key: Some(ca),
            ..VerifyPolicy::default()
        }
    }

    #[test]
    fn bundle_passes_verify_bundle_under_a_dev_policy() {
        let keys = EnclaveKeys::generate().unwrap().public();
        let provider = DevProvider::new(&[42; 32], 3600);
        let bundle = provider.attest(&keys, NOW).unwrap();
        // Through JSON, as the registry and `ecloud attestation verify` receive it.
        let json = serde_json::to_vec(&bundle).unwrap();
        let parsed = attestation::parse_bundle(&json).unwrap();
        let policy = dev_policy(provider.ca_public_key());
        let verdict = attestation::verify_bundle(&parsed, NOW + 10, &policy, &RustCrypto).unwrap();
        assert_eq!(verdict.expires_at, Some(NOW + 3600));
        assert_eq!(
            verdict.bound_keys.enclave_key,
            hex::encode(keys.enclave_key)
        );
        assert_eq!(verdict.bound_keys.near_public_key, keys.near_public_key());
        // dev bundles carry no quote; the binding a TDX quote would carry is the registry's.
        assert_eq!(verdict.report_data, None);
        attestation::check_report_data(&keys.report_data(), &keys.enclave_key, &keys.near_key)
            .unwrap();
    }

    #[test]
    fn other_ca_expiry_and_default_policy_are_refused() {
        let keys = EnclaveKeys::generate().unwrap().public();
        let provider = DevProvider::new(&[42; 32], 3600);
        let bundle = provider.attest(&keys, NOW).unwrap();
        let other = DevProvider::new(&[43; 32], 3600).ca_public_key();
        let crypto = RustCrypto;
        assert!(matches!(
            attestation::verify_bundle(&bundle, NOW, &dev_policy(other), &crypto),
            Err(AttestationError::DevSignature)
        ));
        assert!(matches!(
            attestation::verify_bundle(
                &bundle,
                NOW + 3601,
                &dev_policy(provider.ca_public_key()),
                &crypto
            ),
            Err(AttestationError::DevExpired { .. })
        ));
        assert!(matches!(
            attestation::verify_bundle(&bundle, NOW, &VerifyPolicy::default(), &crypto),
            Err(AttestationError::DevNotAllowed)
        ));
        // A bundle whose keys were swapped for another node's no longer verifies.
        let mut swapped = bundle.clone();
        swapped.enclave_key = EnclaveKeys::generate()
            .unwrap()
            .public()
            .enclave_key
            .to_vec();
        assert!(
            attestation::verify_bundle(
                &swapped,
                NOW,
                &dev_policy(provider.ca_public_key()),
                &crypto
            )
            .is_err()
        );
    }

    #[test]
    fn ca_key_from_hex_is_checked_and_not_printed() {
        let hex_key = hex::encode([7u8; 32]);
        let p = DevProvider::from_hex(&hex_key, 60).unwrap();
        assert!(!format!("{p:?}").contains(&hex_key));
        assert!(matches!(
            DevProvider::from_hex("abcd", 60),
            Err(AttestError::DevKey(_))
        ));
        assert!(matches!(
            DevProvider::from_hex("zz", 60),
            Err(AttestError::DevKey(_))
        ));
    }
}
