//! `/v1/jobs`, `/v1/jobs/{id}` and `/v1/requests/{id}`: escrowed jobs, agent requests and
//! their timelines.

use enclave_cloud_common::Hash32;
use serde::{Deserialize, Serialize};

/// Which nodes may take a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Target {
    /// `node` (only `node_id`) or `any` (any node passing the filters).
    pub kind: String,
    pub node_id: Option<String>,
    pub region: Option<String>,
    pub gpu_model: Option<String>,
    pub max_price_per_million: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    pub input_tokens: i64,
    pub output_tokens: i64,
}

/// How a settled job's cost was split (decimal strings in the job's asset).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Settlement {
    pub cost: String,
    pub provider: String,
    pub royalty: String,
    pub protocol_fee: String,
    pub refund: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Job {
    pub job_id: String,
    pub user: String,
    pub model_id: String,
    /// `near` or `ft:<token account>`.
    pub asset: String,
    pub price_cap: String,
    pub claim_deadline_ns: String,
    pub deadline_ns: String,
    pub target: Target,
    /// The input reference as submitted (inline ciphertext or hash + URI).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub input: serde_json::Value,
    pub user_key: String,
    /// `open`, `claimed`, `settled` or `cancelled`.
    pub status: String,
    pub node_id: Option<String>,
    pub operator: Option<String>,
    pub usage: Option<Usage>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub output: serde_json::Value,
    pub output_hash: Option<String>,
    /// The encrypted weights that answered, as the node's signed receipt names them (64 hex);
    /// `null` for plain weights, unsettled jobs, and jobs settled before receipts named them.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub weights_hash: Option<Hash32>,
    pub settlement: Option<Settlement>,
    pub cancel_reason: Option<String>,
    pub refund: Option<String>,
    pub slashed: Option<String>,
    pub created_height: u64,
    pub created_at_ns: String,
    pub updated_height: u64,
}

/// One event in the life of a job or request, as the contract wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimelineEntry {
    pub event: String,
    pub block_height: u64,
    pub timestamp_ns: String,
    pub receipt_id: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: Job,
    pub timeline: Vec<TimelineEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Request {
    pub request_id: String,
    /// The contract that asked.
    pub caller: String,
    pub model_id: String,
    pub deposit: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub input: serde_json::Value,
    /// `pending`, `answered` or `timed_out`.
    pub status: String,
    pub node_id: Option<String>,
    pub usage: Option<Usage>,
    pub settlement: Option<Settlement>,
    pub refund: Option<String>,
    pub created_height: u64,
    pub created_at_ns: String,
    pub updated_height: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestDetail {
    #[serde(flatten)]
    pub request: Request,
    pub timeline: Vec<TimelineEntry>,
}
