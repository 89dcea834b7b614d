//! The result receipt a node signs with its attested ed25519 key.
//!
//! The marketplace verifies the signature over [`ResultReceipt::signing_bytes`]; the worker
//! produces the same bytes, so the byte layout is defined once, here. A user can later prove
//! what was charged by showing the receipt and the signature against the node's attested key.

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

/// (job or request id, model id, input hash, output hash, usage), signed by the node.
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
}

impl ResultReceipt {
    /// Domain separation: a signature over these bytes can never be replayed as another message.
    pub const DOMAIN: &'static [u8] = b"ecloud-result-receipt-v1:";

    /// The exact bytes the node signs: `DOMAIN || borsh(self)`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Self::DOMAIN.to_vec();
        // Borsh into a Vec cannot fail.
        out.extend(borsh::to_vec(self).unwrap_or_default());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use near_sdk::json_types::U64;

    #[test]
    fn signing_bytes_are_domain_separated_and_fixed() {
        let receipt = ResultReceipt {
            subject: ReceiptSubject::Job(JobId(7)),
            model_id: "m7".parse().unwrap(),
            input_hash: Hash32([1; 32]),
            output_hash: Hash32([2; 32]),
            usage: Usage {
                input_tokens: U64(3),
                output_tokens: U64(4),
            },
        };
        let bytes = receipt.signing_bytes();
        assert!(bytes.starts_with(ResultReceipt::DOMAIN));
        let body = &bytes[ResultReceipt::DOMAIN.len()..];
        // variant 0, job id 7 (u64 LE), model id "m7" (u32 len + bytes), hashes, usage.
        let mut expected = vec![0u8];
        expected.extend(7u64.to_le_bytes());
        expected.extend(2u32.to_le_bytes());
        expected.extend(b"m7");
        expected.extend([1u8; 32]);
        expected.extend([2u8; 32]);
        expected.extend(3u64.to_le_bytes());
        expected.extend(4u64.to_le_bytes());
        assert_eq!(body, expected.as_slice());
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
}
