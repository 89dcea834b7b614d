//! The read-only views the explorer pages need beyond the resource endpoints: time series
//! for charts (`/v1/series`), an operator's page (`/v1/operators/{id}`), search
//! (`/v1/search`), a model's key grants (`/v1/models/{id}/grants`), and where the chain is
//! (`/v1/network`: the RPC URL and contract ids a wallet signs against).

use super::nodes::{Node, Stake};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One bucket of a time series: its start and the value in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Point {
    /// Start of the bucket, nanoseconds since the epoch (block time).
    pub t_ns: String,
    /// A count, or an amount in the series' asset (smallest units), as decimal text.
    pub value: String,
}

/// Values over block time in equal buckets, from the first matching event to the newest
/// indexed block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Series {
    /// `jobs`, `volume`, `nodes`, `gpus`, `node_earnings` or `model_revenue`.
    pub metric: String,
    /// `count` (jobs, active nodes, GPUs) or the asset of the amounts (`near`, `ft:<token>`).
    pub unit: String,
    pub bucket_ns: String,
    pub points: Vec<Point>,
}

/// A slash of an operator's stake: the job whose deadline its node missed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Slash {
    pub job_id: String,
    pub node_id: Option<String>,
    /// The user the slashed amount went to.
    pub user: String,
    /// yoctoNEAR.
    pub amount: String,
    pub block_height: u64,
}

/// An operator: its stake, its nodes and the slashes they caused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Operator {
    pub operator: String,
    pub stake: Option<Stake>,
    pub nodes: Vec<Node>,
    /// Newest first, at most 100.
    pub slashes: Vec<Slash>,
}

/// A model's decryption key granted to an attested node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelGrant {
    pub node_id: String,
    pub key_hash: Option<String>,
    pub granted_height: Option<u64>,
    pub revoked_height: Option<u64>,
}

/// What a search term names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchHit {
    /// `node`, `job`, `request`, `channel`, `model`, `operator` or `account`.
    pub kind: String,
    pub id: String,
    /// A few words for the result list.
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchResult {
    pub query: String,
    pub hits: Vec<SearchHit>,
}

/// Where the indexed contracts live: what a wallet on the explorer page needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Network {
    /// NEAR JSON-RPC endpoint transactions are sent to; `None` when the indexer was not told
    /// (`--rpc-url`): the pages are then read-only.
    pub rpc_url: Option<String>,
    /// `mainnet`, `testnet` or `localnet` (what the wallet selector is configured for).
    pub network_id: String,
    pub registry: String,
    pub marketplace: String,
    pub factory: Option<String>,
    pub payment_tokens: Vec<String>,
    /// The contract methods the pages call, by `<contract>.<method>` (`marketplace.submit_job`,
    /// `model_token.contribute`, ...), from the constants in `contracts/common/src/interfaces`:
    /// the page never restates a method name, its gas or its deposit rule.
    pub methods: BTreeMap<String, ContractMethod>,
}

/// A method as a client calls it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContractMethod {
    pub name: String,
    /// Gas to attach (gas units, decimal); `0` for a view.
    pub gas: String,
    /// `none`, `one_yocto`, `payable` (the caller computes it) or `view`.
    pub deposit: String,
}
