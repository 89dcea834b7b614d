//! `/v1/accounts/{id}`: one account's activity.

use serde::{Deserialize, Serialize};

use super::jobs::Job;
use super::nodes::Stake;

/// Money an account received, summed by kind and asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Earning {
    /// `provider`, `royalty`, `protocol_fee`, `refund`, `slash`, `revenue_claim`,
    /// `crowdfund_release` or `crowdfund_refund`.
    pub kind: String,
    pub asset: String,
    pub amount: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Holding {
    pub token: String,
    /// Set when the token is a model's revenue token.
    pub model_id: Option<String>,
    pub balance: String,
}

/// A marketplace credit: a payout that could not be delivered, waiting for `withdraw`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Claimable {
    pub asset: String,
    pub amount: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Account {
    pub account_id: String,
    pub jobs_submitted: i64,
    /// Newest first, at most 10. Page through `/v1/jobs?user=` for more.
    pub recent_jobs: Vec<Job>,
    pub requests_made: i64,
    /// Nodes this account operates.
    pub nodes: Vec<String>,
    pub stake: Option<Stake>,
    pub earnings: Vec<Earning>,
    pub holdings: Vec<Holding>,
    pub claimable: Vec<Claimable>,
}
