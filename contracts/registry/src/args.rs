//! Arguments of the methods that carry attestation evidence. They are read straight from the
//! call input, so the (large) bundle is parsed once, into the library's types, and malformed
//! JSON fails with a typed error instead of the SDK's generic deserialization panic.

use attestation::{AttestationBundle, GpuEvidence};
use enclave_cloud_common::NodeId;
use near_sdk::env;
use near_sdk::serde::Deserialize;
use near_sdk::serde::de::DeserializeOwned;

use crate::details::NodeUpdate;
use crate::errors::{RegistryError, Result};

/// `register_node({"bundle": {...}, "details": {...}?})`.
#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde", deny_unknown_fields)]
pub struct RegisterArgs {
    pub bundle: AttestationBundle,
    #[serde(default)]
    pub details: Option<NodeUpdate>,
}

/// `reattest({"node_id": "7", "bundle": {...}})`.
#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde", deny_unknown_fields)]
pub struct ReattestArgs {
    pub node_id: NodeId,
    pub bundle: AttestationBundle,
}

/// `add_gpu({"node_id": "7", "evidence": {"report", "nonce", "certificate_chain"}})`.
#[derive(Deserialize)]
#[serde(crate = "near_sdk::serde", deny_unknown_fields)]
pub struct AddGpuArgs {
    pub node_id: NodeId,
    pub evidence: GpuEvidence,
}

/// Parses the call input as `T`.
pub fn read<T: DeserializeOwned>() -> Result<T> {
    let input = env::input().unwrap_or_default();
    serde_json::from_slice(&input).map_err(|e| RegistryError::BadArguments(e.to_string()))
}
