//! Arguments of the methods that carry attestation evidence. They are read straight from the
//! call input, so the (large) bundle is parsed once, into the library's types, and malformed
//! JSON fails with a typed error instead of the SDK's generic deserialization panic. The
//! argument shapes are the registry's interface (`interfaces::registry::methods`).

use attestation::{AttestationBundle, GpuEvidence};
use near_sdk::env;
use near_sdk::serde::de::DeserializeOwned;

use enclave_cloud_common::interfaces::registry::methods;

use crate::errors::{RegistryError, Result};

/// `register_node({"bundle": {...}, "details": {...}?})`.
pub type RegisterArgs = methods::RegisterNodeArgs<AttestationBundle>;
/// `reattest({"node_id": "7", "bundle": {...}})`.
pub type ReattestArgs = methods::ReattestArgs<AttestationBundle>;
/// `add_gpu({"node_id": "7", "evidence": {"report", "nonce", "certificate_chain"}})`.
pub type AddGpuArgs = methods::AddGpuArgs<GpuEvidence>;

/// Parses the call input as `T`.
pub fn read<T: DeserializeOwned>() -> Result<T> {
    let input = env::input().unwrap_or_default();
    serde_json::from_slice(&input).map_err(|e| RegistryError::BadArguments(e.to_string()))
}
