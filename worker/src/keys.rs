//! The enclave's keys: the x25519 key users encrypt job inputs to (and the paid API's OHTTP
//! key), the ed25519 NEAR access key that signs the registration, heartbeats, result receipts
//! and (as the `ed25519` signer) paid API responses, and the secp256k1 key that signs paid API
//! responses as the `ecdsa` signer (NEAR AI Cloud's default), bound to the NEAR key by the
//! attestation report's `signer_binding`.
//!
//! Both are generated inside the enclave from the operating system's CSPRNG and stored through
//! a [`Sealer`] (the key file format, [`protocol::keys`]). Secrets are never printed: `Debug`
//! redacts them.

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey};
use zeroize::Zeroizing;

use crate::envelope::EncryptionSecret;
pub use protocol::keys::{ENCRYPTION_KEY_NAME, FileSealer, KeyError, NEAR_KEY_NAME, Sealer};

/// Sealed item holding the secp256k1 response-signing secret (32 bytes). Key directories made
/// before it existed get one generated on the next load.
pub const ECDSA_KEY_NAME: &str = "response-secp256k1.key";

/// The public halves, safe to publish and to bind in the attestation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKeys {
    /// x25519 public key (the bundle's `enclave_key`).
    pub enclave_key: [u8; 32],
    /// ed25519 public key of the NEAR access key.
    pub near_key: [u8; 32],
}

impl PublicKeys {
    /// `ed25519:<base58>`, as NEAR and the bundle write it.
    pub fn near_public_key(&self) -> String {
        attestation::format_near_ed25519_key(&self.near_key)
    }

    /// The 64-byte TDX `report_data` that commits to both keys (registry layout).
    pub fn report_data(&self) -> [u8; 64] {
        attestation::report_data_for(&self.enclave_key, &self.near_key)
    }
}

/// The enclave's secret keys.
pub struct EnclaveKeys {
    encryption: EncryptionSecret,
    near: SigningKey,
    /// A valid secp256k1 secret (non-zero, below the group order), kept to seal it.
    ecdsa: Zeroizing<[u8; 32]>,
    /// `near` and `ecdsa` as the paid API's response signer.
    signer: sealed_api::ResponseSigner,
}

/// A fresh secp256k1 secret: 32 random bytes, drawn again in the (2^-128) case they are not a
/// valid scalar.
fn generate_ecdsa_secret() -> Result<Zeroizing<[u8; 32]>, KeyError> {
    loop {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *secret).map_err(|e| KeyError::Rng(e.to_string()))?;
        if sealed_api::ResponseSigner::from_secrets(&[0; 32], &secret).is_some() {
            return Ok(secret);
        }
    }
}

impl EnclaveKeys {
    /// Fresh keys from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *seed).map_err(|e| KeyError::Rng(e.to_string()))?;
        Self::assemble(
            EncryptionSecret::generate(),
            SigningKey::from_bytes(&seed),
            generate_ecdsa_secret()?,
        )
    }

    /// Loads the sealed keys; `None` if none were sealed yet. A key directory without the
    /// secp256k1 key (made before it existed) gets one generated and sealed.
    pub fn load(sealer: &dyn Sealer) -> Result<Option<Self>, KeyError> {
        let enc = sealer.unseal(ENCRYPTION_KEY_NAME)?;
        let near = sealer.unseal(NEAR_KEY_NAME)?;
        match (enc, near) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(KeyError::Incomplete {
                present: ENCRYPTION_KEY_NAME,
                missing: NEAR_KEY_NAME,
            }),
            (None, Some(_)) => Err(KeyError::Incomplete {
                present: NEAR_KEY_NAME,
                missing: ENCRYPTION_KEY_NAME,
            }),
            (Some(enc), Some(near)) => {
                let near: [u8; 32] = near.as_slice().try_into().map_err(|_| KeyError::Length {
                    name: NEAR_KEY_NAME.into(),
                    len: near.len(),
                })?;
                let near = Zeroizing::new(near);
                if enc.len() != 32 {
                    return Err(KeyError::Length {
                        name: ENCRYPTION_KEY_NAME.into(),
                        len: enc.len(),
                    });
                }
                Self::assemble(
                    EncryptionSecret::from_bytes(&enc)?,
                    SigningKey::from_bytes(&near),
                    load_or_seal_ecdsa(sealer)?,
                )
                .map(Some)
            }
        }
    }

    fn assemble(
        encryption: EncryptionSecret,
        near: SigningKey,
        ecdsa: Zeroizing<[u8; 32]>,
    ) -> Result<Self, KeyError> {
        let signer = sealed_api::ResponseSigner::from_secrets(near.as_bytes(), &ecdsa)
            .ok_or_else(|| invalid_ecdsa_secret(ecdsa.len()))?;
        Ok(Self {
            encryption,
            near,
            ecdsa,
            signer,
        })
    }

    /// Seals the three keys.
    pub fn seal(&self, sealer: &dyn Sealer) -> Result<(), KeyError> {
        sealer.seal(ENCRYPTION_KEY_NAME, &*self.encryption.to_bytes())?;
        sealer.seal(ECDSA_KEY_NAME, &*self.ecdsa)?;
        sealer.seal(NEAR_KEY_NAME, self.near.as_bytes())
    }

    /// The paid API's response signer: the NEAR key (`ed25519`, attested by the bundle) and
    /// the secp256k1 key (`ecdsa`).
    pub fn response_signer(&self) -> &sealed_api::ResponseSigner {
        &self.signer
    }

    /// The x25519 secret as the OHTTP gateway's key (key id 1).
    pub fn gateway_key(
        &self,
    ) -> Result<sealed_api::GatewayKey, sealed_api::key_config::KeyConfigError> {
        sealed_api::GatewayKey::from_secret(1, &self.encryption.to_bytes())
    }

    /// Loads the sealed keys, or generates and seals new ones. Returns whether they are new.
    pub fn load_or_generate(sealer: &dyn Sealer) -> Result<(Self, bool), KeyError> {
        if let Some(keys) = Self::load(sealer)? {
            return Ok((keys, false));
        }
        let keys = Self::generate()?;
        keys.seal(sealer)?;
        Ok((keys, true))
    }

    pub fn public(&self) -> PublicKeys {
        PublicKeys {
            enclave_key: self.encryption.public_key(),
            near_key: self.near.verifying_key().to_bytes(),
        }
    }

    /// The x25519 secret, to open job inputs.
    pub fn encryption(&self) -> &EncryptionSecret {
        &self.encryption
    }

    /// The NEAR key's 32-byte ed25519 seed, for `worker attest --export-near-key` under a
    /// `dev` attestation only: a development node has no hardware protecting its keys, so
    /// handing the key to near-cli loses nothing. A TDX enclave's key never leaves it.
    pub fn export_near_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.near.to_bytes())
    }

    /// Signs `message` with the NEAR access key (receipts, transactions).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.near.sign(message).to_bytes()
    }

    /// The ed25519 key for marketplace transactions (`claim_job`, `submit_result`, `respond`).
    ///
    /// A NEAR function-call access key has a single receiver, so the attested key (limited to
    /// the registry) cannot also call the marketplace. This second key is derived from the
    /// sealed NEAR seed (SHA-256 under a domain tag): no second sealed file, the same key
    /// after every restart, and never usable to forge the attested key's signatures. Results
    /// stay signed by the attested key (the `signature` argument the marketplace verifies).
    pub fn marketplace_signing_key(&self) -> SigningKey {
        use sha2::{Digest as _, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(MARKETPLACE_KEY_DOMAIN);
        hasher.update(self.near.as_bytes());
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&hasher.finalize());
        SigningKey::from_bytes(&seed)
    }
}

/// The sealed secp256k1 secret, or a new one sealed now.
fn load_or_seal_ecdsa(sealer: &dyn Sealer) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    match sealer.unseal(ECDSA_KEY_NAME)? {
        Some(bytes) => {
            let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::Length {
                name: ECDSA_KEY_NAME.into(),
                len: bytes.len(),
            })?;
            Ok(Zeroizing::new(secret))
        }
        None => {
            let secret = generate_ecdsa_secret()?;
            sealer.seal(ECDSA_KEY_NAME, &*secret)?;
            Ok(secret)
        }
    }
}

fn invalid_ecdsa_secret(len: usize) -> KeyError {
    KeyError::Length {
        name: format!("{ECDSA_KEY_NAME} (not a secp256k1 scalar)"),
        len,
    }
}

/// Domain tag of [`EnclaveKeys::marketplace_signing_key`].
const MARKETPLACE_KEY_DOMAIN: &[u8] = b"ecloud-worker-marketplace-key-v1:";

impl fmt::Debug for EnclaveKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let public = self.public();
        f.debug_struct("EnclaveKeys")
            .field("enclave_key", &hex::encode(public.enclave_key))
            .field("near_public_key", &public.near_public_key())
            .field("secrets", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
    use std::fs;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn generate_seal_and_reload_the_same_keys() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = FileSealer::new(dir.path().join("data"));
        let (keys, created) = EnclaveKeys::load_or_generate(&sealer).unwrap();
        assert!(created);
        let (again, created) = EnclaveKeys::load_or_generate(&sealer).unwrap();
        assert!(!created);
        assert_eq!(keys.public(), again.public());
        let dir_mode = fs::metadata(dir.path().join("data"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        for name in [ENCRYPTION_KEY_NAME, NEAR_KEY_NAME, ECDSA_KEY_NAME] {
            let meta = fs::metadata(dir.path().join("data").join(name)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
            assert_eq!(meta.len(), 32);
        }
    }

    #[test]
    fn the_marketplace_key_is_stable_and_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = FileSealer::new(dir.path().join("data"));
        let (keys, _) = EnclaveKeys::load_or_generate(&sealer).unwrap();
        let (again, _) = EnclaveKeys::load_or_generate(&sealer).unwrap();
        let market = keys.marketplace_signing_key();
        assert_eq!(
            market.verifying_key(),
            again.marketplace_signing_key().verifying_key()
        );
        assert_ne!(market.verifying_key().to_bytes(), keys.public().near_key);
        let other = EnclaveKeys::generate().unwrap().marketplace_signing_key();
        assert_ne!(market.verifying_key(), other.verifying_key());
    }

    #[test]
    fn the_response_signer_is_the_near_key_plus_a_sealed_secp256k1_key() {
        use sealed_api::SigningAlgo;
        let dir = tempfile::tempdir().unwrap();
        let sealer = FileSealer::new(dir.path());
        let (keys, _) = EnclaveKeys::load_or_generate(&sealer).unwrap();
        let signer = keys.response_signer();
        assert_eq!(signer.ed25519_public(), keys.public().near_key);
        assert_eq!(
            signer.address(SigningAlgo::Ed25519),
            hex::encode(keys.public().near_key)
        );
        let ecdsa = signer.address(SigningAlgo::Ecdsa);
        let (again, _) = EnclaveKeys::load_or_generate(&sealer).unwrap();
        assert_eq!(again.response_signer().address(SigningAlgo::Ecdsa), ecdsa);

        // A key directory from before the secp256k1 key: one is generated and sealed, the
        // other keys stay.
        fs::remove_file(dir.path().join(ECDSA_KEY_NAME)).unwrap();
        let (upgraded, created) = EnclaveKeys::load_or_generate(&sealer).unwrap();
        assert!(!created);
        assert_eq!(upgraded.public(), keys.public());
        let new_address = upgraded.response_signer().address(SigningAlgo::Ecdsa);
        assert_ne!(new_address, ecdsa);
        assert!(dir.path().join(ECDSA_KEY_NAME).exists());
        let (reloaded, _) = EnclaveKeys::load_or_generate(&sealer).unwrap();
        assert_eq!(
            reloaded.response_signer().address(SigningAlgo::Ecdsa),
            new_address
        );

        // A sealed secret that is not a secp256k1 scalar is refused.
        sealer.seal(ECDSA_KEY_NAME, &[0u8; 32]).unwrap();
        assert!(matches!(
            EnclaveKeys::load(&sealer),
            Err(KeyError::Length { .. })
        ));
    }

    #[test]
    fn two_generations_differ() {
        let a = EnclaveKeys::generate().unwrap().public();
        let b = EnclaveKeys::generate().unwrap().public();
        assert_ne!(a.enclave_key, b.enclave_key);
        assert_ne!(a.near_key, b.near_key);
    }

    #[test]
    fn signatures_verify_with_the_published_key() {
        let keys = EnclaveKeys::generate().unwrap();
        let sig = Signature::from_bytes(&keys.sign(b"receipt"));
        let vk = VerifyingKey::from_bytes(&keys.public().near_key).unwrap();
        assert!(vk.verify(b"receipt", &sig).is_ok());
        assert!(vk.verify(b"other", &sig).is_err());
        let parsed = attestation::parse_near_ed25519_key(&keys.public().near_public_key());
        assert_eq!(parsed.unwrap(), keys.public().near_key);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = FileSealer::new(dir.path());
        let (keys, _) = EnclaveKeys::load_or_generate(&sealer).unwrap();
        let dbg = format!("{keys:?}");
        for name in [ENCRYPTION_KEY_NAME, NEAR_KEY_NAME] {
            let secret = fs::read(dir.path().join(name)).unwrap();
            assert!(!dbg.contains(&hex::encode(&secret)), "{name} leaked");
        }
        assert!(dbg.contains("<redacted>"));
        assert!(dbg.contains(&hex::encode(keys.public().enclave_key)));
    }

    #[test]
    fn loose_permissions_and_partial_state_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = FileSealer::new(dir.path());
        let (_keys, _) = EnclaveKeys::load_or_generate(&sealer).unwrap();
        let path = dir.path().join(NEAR_KEY_NAME);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            EnclaveKeys::load(&sealer),
            Err(KeyError::Permissions { mode: 0o644, .. })
        ));
        fs::remove_file(&path).unwrap();
        assert!(matches!(
            EnclaveKeys::load(&sealer),
            Err(KeyError::Incomplete {
                missing: NEAR_KEY_NAME,
                ..
            })
        ));
        sealer.seal(NEAR_KEY_NAME, &[1; 31]).unwrap();
        assert!(matches!(
            EnclaveKeys::load(&sealer),
            Err(KeyError::Length { len: 31, .. })
        ));
        assert!(matches!(
            sealer.seal("../escape", b"x"),
            Err(KeyError::BadName(_))
        ));
    }
}
