//! The GPU binding nonce: what every GPU and NVSwitch of a node must answer, so that evidence is
//! tied to the attested enclave and to one fresh challenge of the registry. NVIDIA's evidence
//! carries the requester's 32-byte nonce in the signed GET_MEASUREMENTS request and NVML lets
//! the caller choose it; public evidence (NVIDIA's samples) answers a nonce that no enclave key
//! hashes to, so it is never bound.

use sha2::{Digest, Sha256};

/// Domain tag of the GPU binding nonce.
pub const GPU_BINDING_TAG: &[u8] = b"enclave-cloud-gpu-v1";

/// The nonce every GPU and switch of a node must answer:
/// `SHA-256(GPU_BINDING_TAG || enclave_key || near_key || challenge)`.
///
/// The enclave key and the NEAR key are the keys the quote (or the dev CA) binds; the challenge
/// is the registry's, handed out when a registration or re-attestation begins (freshness).
pub fn gpu_binding_nonce(
    enclave_key: &[u8; 32],
    near_key: &[u8; 32],
    challenge: &[u8; 32],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(GPU_BINDING_TAG);
    h.update(enclave_key);
    h.update(near_key);
    h.update(challenge);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nonce_is_the_tagged_hash_of_the_three_inputs() {
        let n = gpu_binding_nonce(&[1; 32], &[2; 32], &[3; 32]);
        let mut preimage = GPU_BINDING_TAG.to_vec();
        preimage.extend([1u8; 32]);
        preimage.extend([2u8; 32]);
        preimage.extend([3u8; 32]);
        assert_eq!(n, <[u8; 32]>::from(Sha256::digest(&preimage)));
        // Known answer (Python's hashlib), so that the worker, the CLI and the registry agree
        // across versions.
        assert_eq!(
            hex::encode(n),
            "34d01f7c57588b57dd04a368b29421099ee6fea8b43ce2a983cea92d0d2580f8"
        );
    }

    #[test]
    fn every_input_changes_the_nonce() {
        let base = gpu_binding_nonce(&[1; 32], &[2; 32], &[3; 32]);
        assert_ne!(base, gpu_binding_nonce(&[9; 32], &[2; 32], &[3; 32]));
        assert_ne!(base, gpu_binding_nonce(&[1; 32], &[9; 32], &[3; 32]));
        assert_ne!(base, gpu_binding_nonce(&[1; 32], &[2; 32], &[9; 32]));
        // The keys are not interchangeable.
        assert_ne!(base, gpu_binding_nonce(&[2; 32], &[1; 32], &[3; 32]));
    }
}
