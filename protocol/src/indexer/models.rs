//! `/v1/models` and `/v1/models/{id}`: models, crowdfunds, holders, revenue.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Crowdfund {
    /// `running`, `succeeded` or `failed`.
    pub state: String,
    pub goal: Option<String>,
    pub token_price: Option<String>,
    pub deadline_ns: Option<String>,
    pub beneficiary: Option<String>,
    pub raised: String,
    pub released: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Model {
    pub model_id: String,
    /// The model's NEP-141 revenue-share token contract.
    pub token: Option<String>,
    pub owner: Option<String>,
    pub name: Option<String>,
    pub created_height: Option<u64>,
    pub crowdfund: Option<Crowdfund>,
    pub total_supply: String,
    /// Accounts holding a non-zero balance.
    pub holders: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Holder {
    pub account: String,
    pub balance: String,
}

/// A running total of revenue of one kind in one asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevenueTotal {
    /// `deposit` (royalties paid in) or `claim` (taken out by holders).
    pub kind: String,
    pub asset: String,
    pub amount: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevenueEntry {
    pub kind: String,
    pub account: String,
    pub asset: String,
    pub amount: String,
    pub block_height: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelDetail {
    #[serde(flatten)]
    pub model: Model,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub manifest: serde_json::Value,
    /// Largest first, at most 100.
    pub top_holders: Vec<Holder>,
    pub revenue: Vec<RevenueTotal>,
    /// Newest first, at most 50.
    pub recent_revenue: Vec<RevenueEntry>,
}
