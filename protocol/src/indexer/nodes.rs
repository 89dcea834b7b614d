//! `/v1/nodes` and `/v1/nodes/{id}`: attested nodes.

use serde::{Deserialize, Serialize};

/// One attested GPU of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Gpu {
    pub model: String,
    /// SHA-256 of the GPU's leaf certificate, hex.
    pub device_id: String,
    pub driver_version: Option<String>,
    pub vbios_version: Option<String>,
}

/// A node's price for one model, yoctoNEAR per million tokens (decimal strings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Price {
    pub model_id: String,
    pub input_per_million: String,
    pub output_per_million: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Node {
    pub node_id: String,
    pub operator: String,
    /// `active`, `inactive`, `expired` or `deregistered`.
    pub status: String,
    /// `tdx` or `dev`.
    pub kind: String,
    pub signer_key: String,
    /// x25519 key (hex) users encrypt job inputs to.
    pub encryption_key: String,
    pub tcb_status: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub measurements: serde_json::Value,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub capacity: i64,
    pub gpus: Vec<Gpu>,
    pub prices: Vec<Price>,
    pub registered_height: u64,
    pub registered_at_ns: String,
    pub attestation_expires_at_ns: String,
    pub last_heartbeat_ns: String,
    pub jobs_settled: i64,
    pub requests_answered: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusChange {
    pub status: String,
    pub block_height: u64,
    pub timestamp_ns: String,
}

/// The operator's stake in the registry (yoctoNEAR).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stake {
    pub staked: String,
    pub unstaking: String,
    pub slashed: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeyGrant {
    pub model_id: String,
    pub key_hash: Option<String>,
    pub granted_height: Option<u64>,
    pub revoked_height: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeDetail {
    #[serde(flatten)]
    pub node: Node,
    /// Newest first, at most 100.
    pub status_history: Vec<StatusChange>,
    pub operator_stake: Option<Stake>,
    pub key_grants: Vec<KeyGrant>,
}
