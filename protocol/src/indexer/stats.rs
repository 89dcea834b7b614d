//! `/v1/stats` and `/v1/status`: network totals and indexer progress.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    /// Node count by status.
    pub nodes: BTreeMap<String, i64>,
    /// Job count by status.
    pub jobs: BTreeMap<String, i64>,
    /// Agent request count by status.
    pub requests: BTreeMap<String, i64>,
    pub models: i64,
    /// Settled volume, royalties and protocol fees, by `<name>:<asset>`.
    pub totals: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    /// Last height committed (block or skipped height).
    pub indexed_height: Option<u64>,
    /// Newest final height seen at the block source.
    pub chain_head: Option<u64>,
    /// `chain_head - indexed_height`.
    pub lag: Option<u64>,
    pub source: String,
    /// Whether the last call to the block source succeeded.
    pub source_ok: bool,
    pub events_applied: i64,
    pub events_malformed: i64,
    /// Events a tracked account may not emit (e.g. a marketplace event from the registry).
    pub events_foreign: i64,
    /// Events about something never seen (e.g. a job created before the start height).
    pub events_orphan: i64,
}
