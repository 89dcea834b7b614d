//! OHTTP key configurations (RFC 9458 §3) and the gateway's key.
//!
//! The gateway key is the enclave's attested x25519 key (`AttestationBundle::enclave_key`):
//! the client builds the [`KeyConfig`] from the public key it verified in the attestation (or
//! checks that the configuration the node serves carries exactly that key), so only the
//! attested enclave can open what it seals.

use hpke::{Deserializable, Kem as _, Serializable};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The KEM: DHKEM(X25519, HKDF-SHA256).
pub(crate) type Kem = hpke::kem::X25519HkdfSha256;

/// HPKE KEM id of DHKEM(X25519, HKDF-SHA256).
pub const KEM_X25519_HKDF_SHA256: u16 = 0x0020;
/// HPKE KDF id of HKDF-SHA256 (the only KDF we accept).
pub const KDF_HKDF_SHA256: u16 = 0x0001;
/// Length of an X25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;

/// The AEADs we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AeadId {
    /// AES-128-GCM (0x0001), the suite of RFC 9458 Appendix A and of NEAR AI Cloud's gateway.
    Aes128Gcm,
    /// ChaCha20-Poly1305 (0x0003).
    ChaCha20Poly1305,
}

impl AeadId {
    pub fn id(self) -> u16 {
        match self {
            Self::Aes128Gcm => 0x0001,
            Self::ChaCha20Poly1305 => 0x0003,
        }
    }

    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            0x0001 => Some(Self::Aes128Gcm),
            0x0003 => Some(Self::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// Key length `Nk`.
    pub fn key_len(self) -> usize {
        match self {
            Self::Aes128Gcm => 16,
            Self::ChaCha20Poly1305 => 32,
        }
    }

    /// Nonce length `Nn`.
    pub fn nonce_len(self) -> usize {
        12
    }

    /// Tag length `Nt`.
    pub fn tag_len(self) -> usize {
        16
    }
}

/// Why a key configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyConfigError {
    #[error("key configuration is truncated or has trailing bytes")]
    Malformed,
    #[error("unsupported KEM 0x{0:04x} (only DHKEM(X25519, HKDF-SHA256) 0x0020)")]
    UnsupportedKem(u16),
    #[error("no supported (HKDF-SHA256, AES-128-GCM | ChaCha20-Poly1305) suite offered")]
    NoSupportedSuite,
    #[error("not a valid x25519 public key")]
    BadPublicKey,
}

/// One key configuration (RFC 9458 §3.1). Produced by the node (worker) from its enclave key;
/// checked by the client (`ecloud proxy`) against the attested key before it seals anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyConfig {
    pub key_id: u8,
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// The AEADs offered with HKDF-SHA256, in the server's order of preference.
    pub aeads: Vec<AeadId>,
}

impl KeyConfig {
    /// The encoding of RFC 9458 §3.1 (no length prefix).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(7 + PUBLIC_KEY_LEN + 4 * self.aeads.len());
        out.push(self.key_id);
        out.extend_from_slice(&KEM_X25519_HKDF_SHA256.to_be_bytes());
        out.extend_from_slice(&self.public_key);
        let suites_len = 4 * self.aeads.len() as u16;
        out.extend_from_slice(&suites_len.to_be_bytes());
        for aead in &self.aeads {
            out.extend_from_slice(&KDF_HKDF_SHA256.to_be_bytes());
            out.extend_from_slice(&aead.id().to_be_bytes());
        }
        out
    }

    /// Decodes one configuration, all of `buf`. Suites we do not speak are skipped (a client
    /// picks among those it supports); a configuration with none left is refused.
    pub fn decode(buf: &[u8]) -> Result<Self, KeyConfigError> {
        let u16_at = |i: usize| -> Result<u16, KeyConfigError> {
            buf.get(i..i + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or(KeyConfigError::Malformed)
        };
        let key_id = *buf.first().ok_or(KeyConfigError::Malformed)?;
        let kem = u16_at(1)?;
        if kem != KEM_X25519_HKDF_SHA256 {
            return Err(KeyConfigError::UnsupportedKem(kem));
        }
        let public_key: [u8; PUBLIC_KEY_LEN] = buf
            .get(3..3 + PUBLIC_KEY_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(KeyConfigError::Malformed)?;
        let suites_at = 3 + PUBLIC_KEY_LEN;
        let suites_len = usize::from(u16_at(suites_at)?);
        let start = suites_at + 2;
        if suites_len % 4 != 0 || buf.len() != start + suites_len {
            return Err(KeyConfigError::Malformed);
        }
        let mut aeads = Vec::new();
        for i in (start..buf.len()).step_by(4) {
            if u16_at(i)? == KDF_HKDF_SHA256
                && let Some(aead) = AeadId::from_id(u16_at(i + 2)?)
            {
                aeads.push(aead);
            }
        }
        if aeads.is_empty() {
            return Err(KeyConfigError::NoSupportedSuite);
        }
        Ok(Self {
            key_id,
            public_key,
            aeads,
        })
    }

    /// `application/ohttp-keys` (RFC 9458 §3.2): each configuration with a 2-byte length.
    pub fn encode_list(configs: &[KeyConfig]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in configs {
            let enc = c.encode();
            out.extend_from_slice(&(enc.len() as u16).to_be_bytes());
            out.extend_from_slice(&enc);
        }
        out
    }

    /// Decodes `application/ohttp-keys`; any encoding error refuses the whole list. Entries
    /// with an unsupported KEM or no supported suite are skipped.
    pub fn decode_list(mut buf: &[u8]) -> Result<Vec<KeyConfig>, KeyConfigError> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let [hi, lo, rest @ ..] = buf else {
                return Err(KeyConfigError::Malformed);
            };
            let len = usize::from(u16::from_be_bytes([*hi, *lo]));
            if rest.len() < len {
                return Err(KeyConfigError::Malformed);
            }
            match Self::decode(&rest[..len]) {
                Ok(c) => out.push(c),
                Err(KeyConfigError::UnsupportedKem(_) | KeyConfigError::NoSupportedSuite) => {}
                Err(e) => return Err(e),
            }
            buf = &rest[len..];
        }
        Ok(out)
    }

    /// The suite a client uses: the first one offered.
    pub fn preferred_aead(&self) -> AeadId {
        self.aeads.first().copied().unwrap_or(AeadId::Aes128Gcm)
    }

    /// The HPKE public key.
    pub(crate) fn hpke_public_key(&self) -> Result<<Kem as hpke::Kem>::PublicKey, KeyConfigError> {
        <Kem as hpke::Kem>::PublicKey::from_bytes(&self.public_key)
            .map_err(|_| KeyConfigError::BadPublicKey)
    }
}

/// The gateway's private key: the enclave's x25519 secret. Lives only inside the enclave
/// (worker); the client never sees it.
pub struct GatewayKey {
    pub(crate) secret: <Kem as hpke::Kem>::PrivateKey,
    config: KeyConfig,
}

impl GatewayKey {
    /// From the enclave's 32-byte x25519 secret (the worker's `enclave-x25519.key`). Both AEADs
    /// are offered, AES-128-GCM first (what NEAR AI Cloud's clients pick).
    pub fn from_secret(key_id: u8, secret: &[u8; 32]) -> Result<Self, KeyConfigError> {
        let secret = <Kem as hpke::Kem>::PrivateKey::from_bytes(secret)
            .map_err(|_| KeyConfigError::BadPublicKey)?;
        let public = Kem::sk_to_pk(&secret);
        let public_key: [u8; 32] = public
            .to_bytes()
            .as_slice()
            .try_into()
            .map_err(|_| KeyConfigError::BadPublicKey)?;
        Ok(Self {
            secret,
            config: KeyConfig {
                key_id,
                public_key,
                aeads: vec![AeadId::Aes128Gcm, AeadId::ChaCha20Poly1305],
            },
        })
    }

    /// A fresh random key (tests, benches).
    pub fn generate(key_id: u8) -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        crate::random::fill(secret.as_mut_slice());
        #[allow(clippy::expect_used)] // any 32 bytes are an x25519 secret
        Self::from_secret(key_id, &secret).expect("32 random bytes are an x25519 secret")
    }

    /// The public configuration a client seals to.
    pub fn config(&self) -> &KeyConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_round_trips_and_skips_unknown_suites() {
        let key = GatewayKey::generate(7);
        let cfg = key.config().clone();
        assert_eq!(KeyConfig::decode(&cfg.encode()), Ok(cfg.clone()));
        let list = KeyConfig::encode_list(&[cfg.clone(), cfg.clone()]);
        assert_eq!(
            KeyConfig::decode_list(&list),
            Ok(vec![cfg.clone(), cfg.clone()])
        );
        assert_eq!(
            KeyConfig::decode_list(&list[..list.len() - 1]),
            Err(KeyConfigError::Malformed)
        );
        // An AES-256-GCM (0x0002) suite is skipped; alone it leaves nothing.
        let mut only_aes256 = cfg.encode();
        only_aes256.truncate(35);
        only_aes256.extend_from_slice(&[0, 4, 0, 1, 0, 2]);
        assert_eq!(
            KeyConfig::decode(&only_aes256),
            Err(KeyConfigError::NoSupportedSuite)
        );
        let mut p256 = cfg.encode();
        p256[2] = 0x10;
        assert_eq!(
            KeyConfig::decode(&p256),
            Err(KeyConfigError::UnsupportedKem(0x10))
        );
        assert_eq!(KeyConfig::decode(&[1, 0]), Err(KeyConfigError::Malformed));
    }
}
