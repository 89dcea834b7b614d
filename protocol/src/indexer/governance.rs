//! `/v1/governance`: the timelocked changes of the enclave-cloud contracts (registry,
//! marketplace, model factory, model tokens), as their `ecloud_governance` events told them.

use serde::{Deserialize, Serialize};

/// One proposed change of one contract's timelock. Ids are per contract: a change is
/// identified by `contract` and `change_id` together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GovernanceChange {
    /// The contract account whose timelock holds the change.
    pub contract: String,
    pub change_id: String,
    /// The change as the contract wrote it (`{"setting": ...}`, `{"set_delay": ...}`,
    /// `{"upgrade_code": {"code_hash": ...}}`).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub change: serde_json::Value,
    pub proposed_by: String,
    /// The earliest block time (ns) at which anyone may apply it.
    pub applies_at_ns: String,
    /// `pending`, `applied` or `cancelled`.
    pub status: String,
    pub proposed_height: u64,
    pub proposed_at_ns: String,
    pub proposed_receipt: String,
    /// Where it was applied or cancelled; absent while pending.
    pub resolved_height: Option<u64>,
    pub resolved_at_ns: Option<String>,
}
