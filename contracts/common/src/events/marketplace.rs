//! Events of the marketplace contract (standard `ecloud_marketplace`).

use near_sdk::json_types::{Base64VecU8, U64, U128};
use near_sdk::{AccountId, near};

use super::Nep297;
use near_sdk::PublicKey;

use crate::interfaces::marketplace::{NodePrice, TokenRate};
use crate::{
    Asset, ChannelId, Hash32, InputRef, JobId, ModelId, NodeId, OutputRef, RequestId, Usage,
};

/// Which node may take a job.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobTarget {
    /// Only this node.
    Node { node_id: NodeId },
    /// Any eligible node that passes the filters.
    Any {
        region: Option<String>,
        gpu_model: Option<String>,
        /// Highest acceptable price per million output tokens.
        max_price_per_million: Option<U128>,
    },
}

/// How the cost of a settled job was split. All amounts are in the job's asset.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settlement {
    pub cost: U128,
    pub provider: U128,
    pub royalty: U128,
    pub protocol_fee: U128,
    pub refund: U128,
}

/// Why a job ended without a result.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// Nobody claimed it within the claim window.
    Unclaimed,
    /// Claimed, but no result before the deadline.
    DeadlineMissed,
    /// Withdrawn by the user before any claim.
    ByUser,
}

#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum MarketplaceEvent {
    JobSubmitted {
        job_id: JobId,
        user: AccountId,
        model_id: ModelId,
        asset: Asset,
        price_cap: U128,
        claim_deadline_ns: U64,
        deadline_ns: U64,
        target: JobTarget,
        input: InputRef,
        /// The user's x25519 key, hex: the node encrypts the output to it.
        user_key: String,
    },
    JobClaimed {
        job_id: JobId,
        node_id: NodeId,
        operator: AccountId,
    },
    JobSettled {
        job_id: JobId,
        node_id: NodeId,
        usage: Usage,
        output: OutputRef,
        input_hash: Hash32,
        output_hash: Hash32,
        /// ed25519 signature of the node's attested key over the receipt.
        signature: Base64VecU8,
        settlement: Settlement,
        /// The encrypted weights that answered, as the signed receipt names them (1.2.0;
        /// absent: plain weights, or an event of an older version).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weights_hash: Option<Hash32>,
    },
    JobCancelled {
        job_id: JobId,
        reason: CancelReason,
        refund: U128,
        slashed: Option<U128>,
    },
    RequestCreated {
        request_id: RequestId,
        caller: AccountId,
        model_id: ModelId,
        deposit: U128,
        input: InputRef,
    },
    RequestAnswered {
        request_id: RequestId,
        node_id: NodeId,
        usage: Usage,
        settlement: Settlement,
    },
    RequestTimedOut {
        request_id: RequestId,
        refund: U128,
    },
    /// A payout could not be delivered and waits for `withdraw`.
    CreditAdded {
        account: AccountId,
        asset: Asset,
        amount: U128,
    },
    CreditWithdrawn {
        account: AccountId,
        asset: Asset,
        amount: U128,
    },
    PolicyUpdated {
        field: String,
        value: String,
    },
    /// A payment channel was opened (amounts in its asset).
    ChannelOpened {
        channel_id: ChannelId,
        user: AccountId,
        node_id: NodeId,
        operator: AccountId,
        model_id: ModelId,
        asset: Asset,
        deposit: U128,
        channel_key: PublicKey,
        price: NodePrice,
        token_rate: Option<TokenRate>,
        challenge_period_ns: U64,
    },
    ChannelToppedUp {
        channel_id: ChannelId,
        amount: U128,
        /// The channel's deposit afterwards.
        deposit: U128,
    },
    /// A voucher was settled: `settlement` splits the difference to the previous one
    /// (`settlement.cost`); `settled` is the voucher's cumulative amount.
    ChannelSettled {
        channel_id: ChannelId,
        node_id: NodeId,
        settled: U128,
        settlement: Settlement,
    },
    /// The user started a unilateral close; the node may settle until `ends_ns`.
    ChannelCloseStarted {
        channel_id: ChannelId,
        ends_ns: U64,
    },
    /// The channel ended: `settled` went to the node (in total), `refund` back to the user.
    ChannelClosed {
        channel_id: ChannelId,
        reason: ChannelCloseReason,
        settled: U128,
        refund: U128,
    },
}

/// How a channel ended.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChannelCloseReason {
    /// The node closed it with its final voucher.
    Cooperative,
    /// The user closed it after the challenge period.
    Unilateral,
}

impl Nep297 for MarketplaceEvent {
    const STANDARD: &'static str = "ecloud_marketplace";
    /// 1.1.0 added the channel events; 1.2.0 the `weights_hash` of `job_settled`. Older
    /// events read unchanged (the new field defaults to `None`).
    const VERSION: &'static str = "1.2.0";
    const OLDER_VERSIONS: &'static [&'static str] = &["1.0.0", "1.1.0"];
}
