//! Checks shared by jobs, results and requests: input/output references, keys, signatures.

use near_sdk::{AccountId, PublicKey, env};

use enclave_cloud_common::{Hash32, InputRef, NodeId, ResultReceipt};

use crate::errors::{MarketplaceError, Result, invalid};

/// Longest URI of a remote input or output.
pub const MAX_URI_LEN: usize = 512;
/// Longest region or GPU model filter.
pub const MAX_FILTER_LEN: usize = 64;

/// Checks a reference's size limits and returns the hash that receipts commit to: SHA-256 of
/// an inline ciphertext, or the given hash of a remote one.
pub fn checked_hash(field: &'static str, r: &InputRef, max_inline_bytes: u32) -> Result<Hash32> {
    match r {
        InputRef::Inline { ciphertext } => {
            let len = ciphertext.0.len();
            if len == 0 || len > max_inline_bytes as usize {
                return Err(invalid(
                    field,
                    format!("inline ciphertext is {len} bytes, allowed 1..={max_inline_bytes}"),
                ));
            }
            Ok(Hash32(env::sha256_array(&ciphertext.0)))
        }
        InputRef::Remote { hash, uri } => {
            if uri.is_empty() || uri.len() > MAX_URI_LEN {
                return Err(invalid(
                    field,
                    format!("uri is {} bytes, allowed 1..={MAX_URI_LEN}", uri.len()),
                ));
            }
            Ok(*hash)
        }
    }
}

/// The user's x25519 key: 64 hex characters.
pub fn check_user_key(key: &str) -> Result<()> {
    if key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(invalid(
            "user_key",
            format!("'{key}' is not 64 hex characters (an x25519 key)"),
        ))
    }
}

/// The 32 key bytes of an ed25519 public key (`None` for any other curve).
pub fn ed25519_key(key: &PublicKey) -> Option<&[u8; 32]> {
    match key.as_bytes().split_first() {
        Some((0, data)) => data.try_into().ok(),
        _ => None,
    }
}

/// Accepts a result if either `signature` is a valid ed25519 signature by `signer_key` over the
/// receipt, or (no signature) the transaction was signed by `signer_key` as an access key of
/// `operator` calling directly.
pub fn verify_node_signature(
    node_id: NodeId,
    signer_key: &PublicKey,
    operator: &AccountId,
    receipt: &ResultReceipt,
    signature: Option<&[u8]>,
) -> Result<()> {
    match signature {
        Some(signature) => {
            let key = ed25519_key(signer_key).ok_or(MarketplaceError::SignerKeyNotEd25519)?;
            let signature: &[u8; 64] = signature
                .try_into()
                .map_err(|_| MarketplaceError::BadSignature { node_id })?;
            if env::ed25519_verify(signature, receipt.signing_bytes(), key) {
                Ok(())
            } else {
                Err(MarketplaceError::BadSignature { node_id })
            }
        }
        None => {
            let direct =
                env::signer_account_id() == *operator && env::predecessor_account_id() == *operator;
            if direct && env::signer_account_pk() == *signer_key {
                Ok(())
            } else {
                Err(MarketplaceError::BadSignature { node_id })
            }
        }
    }
}
