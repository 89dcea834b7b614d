//! The encryption envelope for job inputs and outputs: HPKE (RFC 9180), base mode,
//! suite DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305.
//!
//! A user seals a job input to the node's attested x25519 key; the node seals the output to
//! the user's x25519 key. Both sides use these same functions (the `ecloud` client too).
//!
//! # Wire format
//!
//! ```text
//! envelope = version (1 byte, 0x01) || enc (32 bytes, HPKE encapsulated key) || ciphertext
//! ```
//! where `ciphertext` is the ChaCha20-Poly1305 output (plaintext length + 16-byte tag).
//! In JSON the envelope is one standard base64 string (with padding) of those bytes.
//!
//! # Context binding
//!
//! The HPKE `info` names what the envelope is for, and enters the key schedule, so an envelope
//! opened under any other context fails to decrypt:
//!
//! ```text
//! job input  (user -> node): "ecloud-envelope-v1|input|model:<model id>|user:<user x25519 key, 64 hex>"
//! job output (node -> user): "ecloud-envelope-v1|output|job:<job id>|model:<model id>"
//! model key  (keeper -> node): "ecloud-envelope-v1|model-key|model:<model id>|node:<node id>"
//! ```
//!
//! The input cannot name the job: its id is assigned by the marketplace when the ciphertext is
//! already in the transaction. It names the user key the output will be sealed to instead, so
//! copying someone's input into a job of one's own (with one's own `user_key`) does not get its
//! answer sealed to the copier: the node refuses to open it. The output names the job, so a
//! result can never be passed off as another job's, and the direction keeps an output from ever
//! being accepted as an input.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use enclave_cloud_common::{ModelId, NodeId, ReceiptSubject};
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// The KEM: X25519 with HKDF-SHA256.
pub type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

/// Envelope format version (first byte on the wire).
pub const ENVELOPE_VERSION: u8 = 1;
/// Length of the X25519 encapsulated key.
pub const ENC_LEN: usize = 32;
/// Length of the ChaCha20-Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Domain separation prefix of the HPKE `info`.
pub const INFO_PREFIX: &str = "ecloud-envelope-v1";

/// Why an envelope could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("recipient public key is not a valid x25519 key: {0}")]
    BadPublicKey(String),
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("unsupported envelope version {0} (expected {ENVELOPE_VERSION})")]
    UnsupportedVersion(u8),
    /// Wrong key, tampered ciphertext or encapsulated key, or another context: HPKE cannot
    /// (and must not) tell these apart.
    #[error("envelope does not decrypt under this key and context")]
    Decrypt,
    #[error("encryption failed: {0}")]
    Seal(String),
}

/// What an envelope is bound to (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeContext {
    /// User to node: the model and the user key that will receive the output.
    JobInput {
        model_id: ModelId,
        user_key: [u8; 32],
    },
    /// Node to user: the job (or request) and its model.
    JobOutput {
        subject: ReceiptSubject,
        model_id: ModelId,
    },
    /// Model owner's keeper to node: the model's weight key, for this model and this node
    /// only (the `encrypted_key` of a `grant_key`, see [`crate::weights`]).
    ModelKey { model_id: ModelId, node_id: NodeId },
}

impl EnvelopeContext {
    /// The HPKE `info` bytes.
    pub fn info(&self) -> Vec<u8> {
        match self {
            Self::JobInput { model_id, user_key } => format!(
                "{INFO_PREFIX}|input|model:{}|user:{}",
                model_id.as_str(),
                hex::encode(user_key)
            ),
            Self::JobOutput { subject, model_id } => {
                let subject = match subject {
                    ReceiptSubject::Job(id) => format!("job:{id}"),
                    ReceiptSubject::Request(id) => format!("request:{id}"),
                };
                format!("{INFO_PREFIX}|output|{subject}|model:{}", model_id.as_str())
            }
            Self::ModelKey { model_id, node_id } => {
                format!(
                    "{INFO_PREFIX}|model-key|model:{}|node:{node_id}",
                    model_id.as_str()
                )
            }
        }
        .into_bytes()
    }
}

/// An x25519 secret key (the enclave's, or a user's for receiving outputs).
pub struct EncryptionSecret(<Kem as hpke::Kem>::PrivateKey);

impl EncryptionSecret {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self(Kem::gen_keypair().0)
    }

    /// Restores a key from its 32 bytes (as sealed by [`crate::keys`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        <Kem as hpke::Kem>::PrivateKey::from_bytes(bytes)
            .map(Self)
            .map_err(|e| EnvelopeError::Malformed(format!("x25519 secret key: {e}")))
    }

    /// The 32 secret bytes, wiped when dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&self.0.to_bytes());
        out
    }

    /// The public key to publish (the attested `enclave_key`).
    pub fn public_key(&self) -> [u8; 32] {
        let public = <Kem as hpke::Kem>::sk_to_pk(&self.0);
        let mut out = [0u8; 32];
        out.copy_from_slice(&public.to_bytes());
        out
    }
}

impl fmt::Debug for EncryptionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EncryptionSecret {{ public: {}, secret: <redacted> }}",
            hex::encode(self.public_key())
        )
    }
}

/// A sealed message: the encapsulated key and the AEAD ciphertext.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    pub enc: [u8; ENC_LEN],
    pub ciphertext: Vec<u8>,
}

impl Envelope {
    /// `version || enc || ciphertext`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + ENC_LEN + self.ciphertext.len());
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(&self.enc);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let (&version, rest) = bytes
            .split_first()
            .ok_or_else(|| EnvelopeError::Malformed("empty envelope".into()))?;
        if version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(version));
        }
        if rest.len() < ENC_LEN + TAG_LEN {
            return Err(EnvelopeError::Malformed(format!(
                "{} bytes after the version, need at least {}",
                rest.len(),
                ENC_LEN + TAG_LEN
            )));
        }
        let (enc, ciphertext) = rest.split_at(ENC_LEN);
        let mut enc_arr = [0u8; ENC_LEN];
        enc_arr.copy_from_slice(enc);
        Ok(Self {
            enc: enc_arr,
            ciphertext: ciphertext.to_vec(),
        })
    }

    pub fn to_base64(&self) -> String {
        BASE64.encode(self.to_bytes())
    }

    pub fn from_base64(s: &str) -> Result<Self, EnvelopeError> {
        let bytes = BASE64
            .decode(s.trim())
            .map_err(|e| EnvelopeError::Malformed(format!("base64: {e}")))?;
        Self::from_bytes(&bytes)
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Envelope {{ enc: {}, ciphertext: {} bytes }}",
            hex::encode(self.enc),
            self.ciphertext.len()
        )
    }
}

impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_base64(&s).map_err(serde::de::Error::custom)
    }
}

/// Encrypts `plaintext` to `recipient` (32-byte x25519 public key) bound to `context`.
pub fn seal_to(
    recipient: &[u8; 32],
    plaintext: &[u8],
    context: &EnvelopeContext,
) -> Result<Envelope, EnvelopeError> {
    let public = <Kem as hpke::Kem>::PublicKey::from_bytes(recipient)
        .map_err(|e| EnvelopeError::BadPublicKey(e.to_string()))?;
    let (enc, ciphertext) = hpke::single_shot_seal::<Aead, Kdf, Kem>(
        &OpModeS::Base,
        &public,
        &context.info(),
        plaintext,
        &[],
    )
    .map_err(|e| EnvelopeError::Seal(e.to_string()))?;
    let mut enc_arr = [0u8; ENC_LEN];
    enc_arr.copy_from_slice(&enc.to_bytes());
    Ok(Envelope {
        enc: enc_arr,
        ciphertext,
    })
}

/// Decrypts `envelope` with `secret` under `context`; the plaintext is wiped when dropped.
pub fn open(
    secret: &EncryptionSecret,
    envelope: &Envelope,
    context: &EnvelopeContext,
) -> Result<Zeroizing<Vec<u8>>, EnvelopeError> {
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&envelope.enc)
        .map_err(|_| EnvelopeError::Decrypt)?;
    hpke::single_shot_open::<Aead, Kdf, Kem>(
        &OpModeR::Base,
        &secret.0,
        &enc,
        &context.info(),
        &envelope.ciphertext,
        &[],
    )
    .map(Zeroizing::new)
    .map_err(|_| EnvelopeError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclave_cloud_common::{JobId, RequestId};

    fn input(model: &str, user: u8) -> EnvelopeContext {
        EnvelopeContext::JobInput {
            model_id: model.parse().unwrap(),
            user_key: [user; 32],
        }
    }

    fn output(subject: ReceiptSubject, model: &str) -> EnvelopeContext {
        EnvelopeContext::JobOutput {
            subject,
            model_id: model.parse().unwrap(),
        }
    }

    #[test]
    fn round_trip_through_bytes_base64_and_json() {
        let node = EncryptionSecret::generate();
        let c = input("minilm", 1);
        let env = seal_to(&node.public_key(), b"what is TDX?", &c).unwrap();
        assert_eq!(env.ciphertext.len(), 12 + TAG_LEN);
        let wire = serde_json::to_string(&env).unwrap();
        let back: Envelope = serde_json::from_str(&wire).unwrap();
        assert_eq!(back, env);
        assert_eq!(Envelope::from_bytes(&env.to_bytes()).unwrap(), env);
        assert_eq!(&*open(&node, &back, &c).unwrap(), b"what is TDX?");
    }

    #[test]
    fn each_seal_is_fresh() {
        let node = EncryptionSecret::generate();
        let c = input("minilm", 1);
        let a = seal_to(&node.public_key(), b"same", &c).unwrap();
        let b = seal_to(&node.public_key(), b"same", &c).unwrap();
        assert_ne!(a.enc, b.enc);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn wrong_key_fails() {
        let node = EncryptionSecret::generate();
        let other = EncryptionSecret::generate();
        let c = input("minilm", 1);
        let env = seal_to(&node.public_key(), b"secret", &c).unwrap();
        assert_eq!(open(&other, &env, &c), Err(EnvelopeError::Decrypt));
    }

    #[test]
    fn tampering_is_rejected() {
        let node = EncryptionSecret::generate();
        let c = input("minilm", 1);
        let env = seal_to(&node.public_key(), b"secret input", &c).unwrap();
        for i in 0..env.ciphertext.len() {
            let mut t = env.clone();
            t.ciphertext[i] ^= 0x01;
            assert_eq!(
                open(&node, &t, &c),
                Err(EnvelopeError::Decrypt),
                "ct byte {i}"
            );
        }
        for i in 0..ENC_LEN {
            let mut t = env.clone();
            t.enc[i] ^= 0x80;
            assert_eq!(
                open(&node, &t, &c),
                Err(EnvelopeError::Decrypt),
                "enc byte {i}"
            );
        }
        let mut truncated = env.clone();
        truncated.ciphertext.pop();
        assert_eq!(open(&node, &truncated, &c), Err(EnvelopeError::Decrypt));
    }

    #[test]
    fn another_context_is_rejected() {
        let node = EncryptionSecret::generate();
        let c = input("minilm", 1);
        let env = seal_to(&node.public_key(), b"secret", &c).unwrap();
        let others = [
            input("minilm", 2),
            input("other-model", 1),
            output(ReceiptSubject::Job(JobId(7)), "minilm"),
        ];
        for other in &others {
            assert_eq!(open(&node, &env, other), Err(EnvelopeError::Decrypt));
        }
    }

    #[test]
    fn outputs_are_bound_to_their_job() {
        let user = EncryptionSecret::generate();
        let c = output(ReceiptSubject::Job(JobId(7)), "minilm");
        let env = seal_to(&user.public_key(), b"answer", &c).unwrap();
        assert_eq!(&*open(&user, &env, &c).unwrap(), b"answer");
        for other in [
            output(ReceiptSubject::Job(JobId(8)), "minilm"),
            output(ReceiptSubject::Request(RequestId(7)), "minilm"),
            output(ReceiptSubject::Job(JobId(7)), "other"),
            input("minilm", 1),
        ] {
            assert_eq!(open(&user, &env, &other), Err(EnvelopeError::Decrypt));
        }
    }

    #[test]
    fn info_layout_is_fixed() {
        assert_eq!(
            output(ReceiptSubject::Job(JobId(7)), "minilm").info(),
            b"ecloud-envelope-v1|output|job:7|model:minilm"
        );
        assert_eq!(
            output(ReceiptSubject::Request(RequestId(3)), "m2").info(),
            b"ecloud-envelope-v1|output|request:3|model:m2"
        );
        assert_eq!(
            EnvelopeContext::ModelKey {
                model_id: "m2".parse().unwrap(),
                node_id: NodeId(4)
            }
            .info(),
            b"ecloud-envelope-v1|model-key|model:m2|node:4"
        );
        let mut expected = b"ecloud-envelope-v1|input|model:minilm|user:".to_vec();
        expected.extend(hex::encode([1u8; 32]).as_bytes());
        assert_eq!(input("minilm", 1).info(), expected);
    }

    #[test]
    fn malformed_wire_is_typed() {
        assert!(matches!(
            Envelope::from_bytes(&[]),
            Err(EnvelopeError::Malformed(_))
        ));
        assert_eq!(
            Envelope::from_bytes(&[2; 60]),
            Err(EnvelopeError::UnsupportedVersion(2))
        );
        assert!(matches!(
            Envelope::from_bytes(&[1; 40]),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::from_base64("not base64!"),
            Err(EnvelopeError::Malformed(_))
        ));
        // The all-zero point has low order: the shared secret would be zero.
        assert!(matches!(
            seal_to(&[0; 32], b"x", &input("minilm", 1)),
            Err(EnvelopeError::Seal(_))
        ));
    }

    #[test]
    fn secret_round_trips_and_debug_redacts() {
        let s = EncryptionSecret::generate();
        let bytes = s.to_bytes();
        let back = EncryptionSecret::from_bytes(&*bytes).unwrap();
        assert_eq!(back.public_key(), s.public_key());
        let dbg = format!("{s:?}");
        assert!(dbg.contains("redacted"));
        assert!(!dbg.contains(&hex::encode(*bytes)));
    }
}
