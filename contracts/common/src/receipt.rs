//! The result receipt a node signs with its attested ed25519 key.
//!
//! The marketplace verifies the signature over [`ResultReceipt::signing_bytes`]; the worker
//! produces the same bytes, so the byte layout is defined once, here. A user can later prove
//! what was charged by showing the receipt and the signature against the node's attested key.
//!
//! Two layouts share one struct. A receipt without `weights_hash` signs exactly what every
//! receipt signed before the field existed (`DOMAIN` v1 || borsh), so stored receipts, journal
//! entries and their signatures keep verifying. A receipt naming the encrypted weights that
//! answered signs `DOMAIN_V2 || borsh(the same fields) || the 32 hash bytes`: another domain,
//! so a v2 signature never verifies as a v1 receipt (nobody can drop the weights from a signed
//! receipt), and the hash last, after a borsh body that determines its own length, so it never
//! verifies with another hash either.

use near_sdk::borsh;
use near_sdk::near;

use crate::{Hash32, JobId, ModelId, RequestId, Usage};

/// What a receipt is about: an escrowed job or an agent request.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum ReceiptSubject {
    Job(JobId),
    Request(RequestId),
}

/// (job or request id, model id, input hash, output hash, usage[, weights hash]), signed by
/// the node.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultReceipt {
    pub subject: ReceiptSubject,
    pub model_id: ModelId,
    /// SHA-256 of the input ciphertext (inline), or the hash given for a remote input.
    pub input_hash: Hash32,
    /// SHA-256 of the output ciphertext (inline), or the hash given for a remote output.
    pub output_hash: Hash32,
    pub usage: Usage,
    /// The encrypted weights that answered (the model manifest's `weights_hash`); `None` for
    /// plain weights, and for agent requests (whose `respond` does not take it). Not part of
    /// the borsh form: [`Self::signing_bytes`] appends it after the v1 body.
    #[borsh(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_hash: Option<Hash32>,
}

impl ResultReceipt {
    /// Domain separation: a signature over these bytes can never be replayed as another message.
    pub const DOMAIN: &'static [u8] = b"ecloud-result-receipt-v1:";
    /// The domain of a receipt that names its weights (`weights_hash: Some`).
    pub const DOMAIN_V2: &'static [u8] = b"ecloud-result-receipt-v2:";

    /// The exact bytes the node signs: `DOMAIN || borsh(self)` without weights,
    /// `DOMAIN_V2 || borsh(self) || weights_hash` with them (`borsh(self)` never includes the
    /// weights hash).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let domain = match self.weights_hash {
            None => Self::DOMAIN,
            Some(_) => Self::DOMAIN_V2,
        };
        let mut out = domain.to_vec();
        // Borsh into a Vec cannot fail.
        out.extend(borsh::to_vec(self).unwrap_or_default());
        if let Some(weights) = &self.weights_hash {
            out.extend_from_slice(&weights.0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use near_sdk::json_types::U64;

    fn receipt() -> ResultReceipt {
        ResultReceipt {
            subject: ReceiptSubject::Job(JobId(7)),
            model_id: "m7".parse().unwrap(),
            input_hash: Hash32([1; 32]),
            output_hash: Hash32([2; 32]),
            usage: Usage {
                input_tokens: U64(3),
                output_tokens: U64(4),
            },
            weights_hash: None,
        }
    }

    /// borsh of `receipt()`: variant 0, job id 7 (u64 LE), model id "m7" (u32 len + bytes),
    /// hashes, usage.
    fn v1_body() -> Vec<u8> {
        let mut expected = vec![0u8];
        expected.extend(7u64.to_le_bytes());
        expected.extend(2u32.to_le_bytes());
        expected.extend(b"m7");
        expected.extend([1u8; 32]);
        expected.extend([2u8; 32]);
        expected.extend(3u64.to_le_bytes());
        expected.extend(4u64.to_le_bytes());
        expected
    }

    #[test]
    fn signing_bytes_are_domain_separated_and_fixed() {
        let receipt = receipt();
        let bytes = receipt.signing_bytes();
        // Exactly the bytes every receipt signed before receipts could name weights.
        let mut expected = b"ecloud-result-receipt-v1:".to_vec();
        expected.extend(v1_body());
        assert_eq!(bytes, expected);
        let request = ResultReceipt {
            subject: ReceiptSubject::Request(RequestId(7)),
            ..receipt
        };
        assert_ne!(
            request.signing_bytes(),
            bytes,
            "job and request receipts must differ"
        );
    }

    #[test]
    fn a_receipt_naming_its_weights_signs_the_v2_layout() {
        let weights = ResultReceipt {
            weights_hash: Some(Hash32([5; 32])),
            ..receipt()
        };
        let mut expected = b"ecloud-result-receipt-v2:".to_vec();
        expected.extend(v1_body());
        expected.extend([5u8; 32]);
        assert_eq!(weights.signing_bytes(), expected);
        // Never the bytes of the same receipt without weights, nor with other weights.
        assert_ne!(weights.signing_bytes(), receipt().signing_bytes());
        let other = ResultReceipt {
            weights_hash: Some(Hash32([6; 32])),
            ..receipt()
        };
        assert_ne!(weights.signing_bytes(), other.signing_bytes());
        // The weights are not part of the borsh form (the field is skipped).
        assert_eq!(borsh::to_vec(&weights).unwrap(), v1_body());
    }

    #[test]
    fn json_names_the_weights_only_when_there_are_some() {
        let plain = near_sdk::serde_json::to_value(receipt()).unwrap();
        assert!(plain.get("weights_hash").is_none(), "{plain}");
        let back: ResultReceipt = near_sdk::serde_json::from_value(plain).unwrap();
        assert_eq!(back, receipt());
        let weights = ResultReceipt {
            weights_hash: Some(Hash32([5; 32])),
            ..receipt()
        };
        let json = near_sdk::serde_json::to_value(&weights).unwrap();
        assert_eq!(json["weights_hash"], hex::encode([5u8; 32]));
        let back: ResultReceipt = near_sdk::serde_json::from_value(json).unwrap();
        assert_eq!(back, weights);
    }
}
