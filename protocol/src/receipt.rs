//! Result receipts: what a node signs with its attested ed25519 key for every job and agent
//! request. The receipt and its signing bytes are defined once in `enclave-cloud-common` (the
//! marketplace verifies them on chain); this module re-exports them and adds the off-chain
//! check a user or auditor runs.

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
pub use enclave_cloud_common::{ReceiptSubject, ResultReceipt};

/// Anyone: checks a receipt's signature by the node's attested NEAR key.
pub fn verify_receipt(near_key: &[u8; 32], receipt: &ResultReceipt, signature: &[u8; 64]) -> bool {
    VerifyingKey::from_bytes(near_key)
        .map(|vk| {
            vk.verify(&receipt.signing_bytes(), &Signature::from_bytes(signature))
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};
    use enclave_cloud_common::{Hash32, JobId, Usage};

    fn receipt() -> ResultReceipt {
        ResultReceipt {
            subject: ReceiptSubject::Job(JobId(7)),
            model_id: "m7".parse().unwrap(),
            input_hash: Hash32([1; 32]),
            output_hash: Hash32([2; 32]),
            usage: Usage::default(),
            weights_hash: None,
        }
    }

    #[test]
    fn a_receipt_verifies_only_as_signed_and_by_its_key() {
        let node = SigningKey::from_bytes(&[3; 32]);
        let key = node.verifying_key().to_bytes();
        let signature = node.sign(&receipt().signing_bytes()).to_bytes();
        assert!(verify_receipt(&key, &receipt(), &signature));
        let mut charged_more = receipt();
        charged_more.usage.output_tokens.0 = 1;
        assert!(!verify_receipt(&key, &charged_more, &signature));
        let other = SigningKey::from_bytes(&[4; 32]).verifying_key().to_bytes();
        assert!(!verify_receipt(&other, &receipt(), &signature));
        // Not a curve point: false, not a panic.
        assert!(!verify_receipt(&[0xff; 32], &receipt(), &signature));
    }

    #[test]
    fn a_weights_signature_verifies_only_with_those_weights() {
        let node = SigningKey::from_bytes(&[3; 32]);
        let key = node.verifying_key().to_bytes();
        let with_weights = ResultReceipt {
            weights_hash: Some(Hash32([5; 32])),
            ..receipt()
        };
        let signature = node.sign(&with_weights.signing_bytes()).to_bytes();
        assert!(verify_receipt(&key, &with_weights, &signature));
        // Dropping the weights (the v1 layout) or naming others: refused.
        assert!(!verify_receipt(&key, &receipt(), &signature));
        let other = ResultReceipt {
            weights_hash: Some(Hash32([6; 32])),
            ..receipt()
        };
        assert!(!verify_receipt(&key, &other, &signature));
        // And a v1 signature never vouches for weights.
        let plain = node.sign(&receipt().signing_bytes()).to_bytes();
        assert!(!verify_receipt(&key, &with_weights, &plain));
    }
}
