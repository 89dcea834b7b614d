//! `/v1/channels` and `/v1/channels/{id}`: payment channels between a user and a node, their
//! settled vouchers and their close. Amounts are decimal strings in the channel's asset
//! (yoctoNEAR for `near`, the token's smallest unit for `ft:<token>`).

use serde::{Deserialize, Serialize};

use super::jobs::TimelineEntry;

/// The node's price for the channel's model when it was opened, yoctoNEAR per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelPrice {
    pub input_per_million: String,
    pub output_per_million: String,
}

/// What a channel's settlements paid out, summed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelPaid {
    /// To the node's operator.
    pub provider: String,
    /// To the model's token contract (its holders).
    pub royalty: String,
    pub protocol_fee: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Channel {
    pub channel_id: String,
    pub user: String,
    pub node_id: String,
    pub operator: String,
    pub model_id: String,
    /// `near` or `ft:<token account>`.
    pub asset: String,
    /// The key that signs the channel's vouchers (`ed25519:<base58>`).
    pub channel_key: String,
    pub price: ChannelPrice,
    /// For a NEP-141 channel: the token's smallest units worth one NEAR at opening.
    pub units_per_near: Option<String>,
    pub challenge_period_ns: String,
    /// The deposit, top-ups included.
    pub deposit: String,
    /// The cumulative amount of the newest settled voucher.
    pub settled: String,
    /// `deposit - settled`: what the user can still spend (or gets back at close).
    pub remaining: String,
    /// `open`, `closing` (a unilateral close: the node may settle until `close_ends_ns`) or
    /// `closed`.
    pub state: String,
    pub close_ends_ns: Option<String>,
    /// `cooperative` (by the node with its final voucher) or `unilateral` (by the user after
    /// the challenge period); set once closed.
    pub close_reason: Option<String>,
    /// Vouchers settled (a cooperative close with a new voucher counts one).
    pub settlement_count: i64,
    pub paid: ChannelPaid,
    /// Returned to the user at close.
    pub refund: Option<String>,
    pub opened_height: u64,
    pub opened_at_ns: String,
    pub updated_height: u64,
    pub updated_at_ns: String,
}

/// One settled voucher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelSettlement {
    /// The voucher's cumulative amount.
    pub settled: String,
    /// What this settlement paid: the difference to the previous voucher.
    pub cost: String,
    pub provider: String,
    pub royalty: String,
    pub protocol_fee: String,
    pub block_height: u64,
    pub timestamp_ns: String,
    pub receipt_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChannelDetail {
    #[serde(flatten)]
    pub channel: Channel,
    /// Oldest first.
    pub settlements: Vec<ChannelSettlement>,
    /// Every event of the channel as the contract wrote it, oldest first.
    pub timeline: Vec<TimelineEntry>,
}
