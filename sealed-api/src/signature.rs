//! Signed responses, in NEAR AI Cloud's shape (`GET /v1/signature/{id}`), so its verifier's
//! steps apply to our nodes unchanged.
//!
//! ```text
//! text = sha256_hex(exact request body) ":" sha256_hex(exact response body)
//!        [ ":" hex(weights hash) ]
//! ```
//! (the response body of a stream is its full SSE text). The third part is present when the
//! model was served from encrypted weights: the model manifest's `weights_hash` (SHA-256 of
//! the encrypted weights the node decrypted and checked), so a client can check which weights
//! answered against the manifest. Without it the text is exactly NEAR AI Cloud's. `signing_algo`:
//! * `ecdsa`: secp256k1 over the Ethereum `personal_sign` hash
//!   `keccak256("\x19Ethereum Signed Message:\n" || len(text) || text)`; `signature` is
//!   `0x` + hex(r || s || v) with v = 27 + recovery id; `signing_address` is the key's
//!   Ethereum address, `0x` + lowercase hex of the last 20 bytes of keccak256(uncompressed
//!   public key without its 0x04 prefix). The verifier recovers the signer from the signature
//!   and compares addresses.
//! * `ed25519`: `signature` is hex of the 64-byte signature over the UTF-8 bytes of `text`;
//!   `signing_address` is hex of the 32-byte public key (no prefix).
//!
//! Produced by the node (worker) for each response with keys bound in its attestation;
//! checked by the client (`ecloud proxy`) before it pays for the response, and by anyone with
//! NEAR AI Cloud's verifier.

use std::fmt;

use ed25519_dalek::Signer as _;
use k256::ecdsa::{RecoveryId, Signature as EcdsaSignature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use sha3::Keccak256;

/// The signature algorithms (`signing_algo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningAlgo {
    Ed25519,
    Ecdsa,
}

impl SigningAlgo {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::Ecdsa => "ecdsa",
        }
    }
}

impl fmt::Display for SigningAlgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of `GET /v1/signature/{id}` (NEAR AI Cloud's `ChatSignature`, same fields).
/// Produced by the node; checked by the client and by any verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseSignature {
    /// `"<sha256 hex of request body>:<sha256 hex of response body>"`.
    pub text: String,
    /// See the module docs for each algorithm's encoding.
    pub signature: String,
    /// Ethereum address (`ecdsa`) or hex public key (`ed25519`).
    pub signing_address: String,
    pub signing_algo: SigningAlgo,
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signed text is not '<request sha256>:<response sha256>[:<weights sha256>]'")]
    Text,
    #[error("the response was signed as served by weights {signed}, expected {expected}")]
    WeightsHash { signed: String, expected: String },
    #[error("signed request hash {signed} is not the request's {actual}")]
    RequestHash { signed: String, actual: String },
    #[error("signed response hash {signed} is not the response's {actual}")]
    ResponseHash { signed: String, actual: String },
    #[error("malformed {0}")]
    Encoding(&'static str),
    #[error("signature does not verify for {0}")]
    Invalid(String),
    #[error("signer {signer} is not the attested {expected}")]
    WrongSigner { signer: String, expected: String },
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

/// The signed text for a request and response body.
pub fn signed_text(request_body: &[u8], response_body: &[u8]) -> String {
    signed_text_served(request_body, response_body, None)
}

/// The signed text of an exchange answered by a model served from encrypted weights whose
/// hash is `weights_hash` (`None`: plain weights, [`signed_text`]).
pub fn signed_text_served(
    request_body: &[u8],
    response_body: &[u8],
    weights_hash: Option<&[u8; 32]>,
) -> String {
    let mut text = format!("{}:{}", sha256_hex(request_body), sha256_hex(response_body));
    if let Some(w) = weights_hash {
        text.push(':');
        text.push_str(&hex::encode(w));
    }
    text
}

/// `"none"` or the hex of a weights hash, for errors.
fn weights_shown(w: Option<&str>) -> String {
    w.map_or_else(|| "none".to_owned(), str::to_owned)
}

/// Ethereum `personal_sign` hash of `message` (EIP-191 version 0x45).
pub fn personal_sign_hash(message: &[u8]) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(format!("\x19Ethereum Signed Message:\n{}", message.len()).as_bytes());
    h.update(message);
    h.finalize().into()
}

/// The Ethereum address of a secp256k1 key, `0x` + 40 lowercase hex digits.
pub fn ethereum_address(key: &VerifyingKey) -> String {
    let point = key.to_sec1_point(false);
    let hash = Keccak256::digest(&point.as_bytes()[1..]);
    format!("0x{}", hex::encode(&hash[12..]))
}

/// The node's two response-signing keys (both bound in its attestation).
pub struct ResponseSigner {
    ed25519: ed25519_dalek::SigningKey,
    ecdsa: SigningKey,
}

impl ResponseSigner {
    pub fn new(ed25519: ed25519_dalek::SigningKey, ecdsa: SigningKey) -> Self {
        Self { ed25519, ecdsa }
    }

    /// From 32-byte secrets; `None` if the secp256k1 secret is zero or over the group order.
    pub fn from_secrets(ed25519: &[u8; 32], ecdsa: &[u8; 32]) -> Option<Self> {
        let ecdsa = SigningKey::from_slice(ecdsa).ok()?;
        Some(Self::new(
            ed25519_dalek::SigningKey::from_bytes(ed25519),
            ecdsa,
        ))
    }

    /// `signing_address` for `algo`.
    pub fn address(&self, algo: SigningAlgo) -> String {
        match algo {
            SigningAlgo::Ed25519 => hex::encode(self.ed25519.verifying_key().as_bytes()),
            SigningAlgo::Ecdsa => ethereum_address(self.ecdsa.verifying_key()),
        }
    }

    /// Signs one exchange with `algo`.
    pub fn sign(
        &self,
        algo: SigningAlgo,
        request_body: &[u8],
        response_body: &[u8],
    ) -> ResponseSignature {
        self.sign_text(algo, signed_text(request_body, response_body))
    }

    /// Signs a given text (for [`ResponseSigner::sign`], the `text` of an exchange).
    pub fn sign_text(&self, algo: SigningAlgo, text: String) -> ResponseSignature {
        let signature = match algo {
            SigningAlgo::Ed25519 => hex::encode(self.ed25519.sign(text.as_bytes()).to_bytes()),
            SigningAlgo::Ecdsa => self.sign_ecdsa(text.as_bytes()),
        };
        ResponseSignature {
            text,
            signature,
            signing_address: self.address(algo),
            signing_algo: algo,
        }
    }

    /// Both signatures of one exchange (the node keeps both at `/v1/signature/{id}`).
    pub fn sign_both(&self, request_body: &[u8], response_body: &[u8]) -> [ResponseSignature; 2] {
        self.sign_both_served(request_body, response_body, None)
    }

    /// Both signatures of one exchange answered with the weights of `weights_hash` (`None`:
    /// plain weights), [`signed_text_served`].
    pub fn sign_both_served(
        &self,
        request_body: &[u8],
        response_body: &[u8],
        weights_hash: Option<&[u8; 32]>,
    ) -> [ResponseSignature; 2] {
        let text = signed_text_served(request_body, response_body, weights_hash);
        [
            self.sign_text(SigningAlgo::Ecdsa, text.clone()),
            self.sign_text(SigningAlgo::Ed25519, text),
        ]
    }

    /// The report's `signer_binding` for `nonce_hex`: the ed25519 key (the node's attested
    /// NEAR key) signs the ecdsa address and the nonce
    /// ([`crate::report::signer_binding_message`]).
    pub fn signer_binding(&self, nonce_hex: &str) -> Result<String, crate::report::ReportError> {
        let message =
            crate::report::signer_binding_message(&self.address(SigningAlgo::Ecdsa), nonce_hex)?;
        Ok(hex::encode(self.ed25519.sign(&message).to_bytes()))
    }

    /// The ed25519 public key (the node's NEAR key).
    pub fn ed25519_public(&self) -> [u8; 32] {
        self.ed25519.verifying_key().to_bytes()
    }

    fn sign_ecdsa(&self, message: &[u8]) -> String {
        let hash = personal_sign_hash(message);
        // RFC 6979 deterministic signing over a 32-byte prehash.
        let (sig, recid): (EcdsaSignature, RecoveryId) = self.ecdsa.sign_prehash_recoverable(&hash);
        let mut bytes = sig.to_bytes().to_vec();
        bytes.push(27 + (recid.to_byte() & 1));
        format!("0x{}", hex::encode(bytes))
    }
}

impl ResponseSignature {
    /// Checks the signature over `text` and that it was made by `signing_address`: the steps
    /// of NEAR AI Cloud's verifier (recover the signer of `text` and compare addresses for
    /// `ecdsa`; an ed25519 verification for `ed25519`).
    pub fn verify(&self) -> Result<(), SignatureError> {
        match self.signing_algo {
            SigningAlgo::Ecdsa => {
                let signer = recover_signer(self.text.as_bytes(), &self.signature)?;
                if signer != self.signing_address.to_ascii_lowercase() {
                    return Err(SignatureError::Invalid(self.signing_address.clone()));
                }
                Ok(())
            }
            SigningAlgo::Ed25519 => {
                let key: [u8; 32] = hex::decode(&self.signing_address)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or(SignatureError::Encoding("ed25519 signing_address"))?;
                let sig: [u8; 64] = hex::decode(&self.signature)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or(SignatureError::Encoding("ed25519 signature"))?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&key)
                    .map_err(|_| SignatureError::Encoding("ed25519 signing_address"))?;
                key.verify_strict(
                    self.text.as_bytes(),
                    &ed25519_dalek::Signature::from_bytes(&sig),
                )
                .map_err(|_| SignatureError::Invalid(self.signing_address.clone()))
            }
        }
    }

    /// The weights hash (hex) the text says answered, if the model was served from encrypted
    /// weights; `Err` for a text of neither shape.
    pub fn signed_weights_hash(&self) -> Result<Option<&str>, SignatureError> {
        Ok(self.parts()?.2)
    }

    fn parts(&self) -> Result<(&str, &str, Option<&str>), SignatureError> {
        let mut parts = self.text.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(req), Some(res), weights, None) => Ok((req, res, weights)),
            _ => Err(SignatureError::Text),
        }
    }

    /// Everything a client checks before paying: the text names these exact bodies, the
    /// signature verifies, and the signer is the address attested for the node. The text must
    /// name no weights ([`Self::verify_exchange_served`] for a model with encrypted weights).
    pub fn verify_exchange(
        &self,
        request_body: &[u8],
        response_body: &[u8],
        attested_address: &str,
    ) -> Result<(), SignatureError> {
        self.verify_exchange_served(request_body, response_body, attested_address, None)
    }

    /// [`Self::verify_exchange`], and the text names `weights_hash` as the weights that
    /// answered (the model manifest's `weights_hash`; `None`: the manifest names no encrypted
    /// weights, and the text must name none).
    pub fn verify_exchange_served(
        &self,
        request_body: &[u8],
        response_body: &[u8],
        attested_address: &str,
        weights_hash: Option<&[u8; 32]>,
    ) -> Result<(), SignatureError> {
        let (req, res, weights) = self.parts()?;
        let expected = weights_hash.map(hex::encode);
        if !weights
            .map(str::to_ascii_lowercase)
            .eq(&expected.as_deref().map(str::to_owned))
        {
            return Err(SignatureError::WeightsHash {
                signed: weights_shown(weights),
                expected: weights_shown(expected.as_deref()),
            });
        }
        let (actual_req, actual_res) = (sha256_hex(request_body), sha256_hex(response_body));
        if req != actual_req {
            return Err(SignatureError::RequestHash {
                signed: req.into(),
                actual: actual_req,
            });
        }
        if res != actual_res {
            return Err(SignatureError::ResponseHash {
                signed: res.into(),
                actual: actual_res,
            });
        }
        self.verify()?;
        if !self.signing_address.eq_ignore_ascii_case(attested_address) {
            return Err(SignatureError::WrongSigner {
                signer: self.signing_address.clone(),
                expected: attested_address.into(),
            });
        }
        Ok(())
    }
}

/// The Ethereum address that signed `message` (`personal_sign`), as eth_account's
/// `Account.recover_message(encode_defunct(text=...), signature=...)` computes it. Accepts
/// v in {0, 1, 27, 28}.
pub fn recover_signer(message: &[u8], signature: &str) -> Result<String, SignatureError> {
    let bytes = hex::decode(signature.strip_prefix("0x").unwrap_or(signature))
        .map_err(|_| SignatureError::Encoding("ecdsa signature"))?;
    let [rs @ .., v] = bytes.as_slice() else {
        return Err(SignatureError::Encoding("ecdsa signature"));
    };
    if rs.len() != 64 {
        return Err(SignatureError::Encoding("ecdsa signature"));
    }
    let v = if *v >= 27 { v - 27 } else { *v };
    let recid = RecoveryId::from_byte(v).ok_or(SignatureError::Encoding("ecdsa recovery id"))?;
    let sig =
        EcdsaSignature::from_slice(rs).map_err(|_| SignatureError::Encoding("ecdsa signature"))?;
    let key = VerifyingKey::recover_from_prehash(&personal_sign_hash(message), &sig, recid)
        .map_err(|_| SignatureError::Invalid("ecdsa signature".into()))?;
    Ok(ethereum_address(&key))
}
