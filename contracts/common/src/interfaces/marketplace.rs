//! The marketplace's interface types: its arguments (`JobSpec`, `ConfigPatch`, `TokenRate`,
//! the `ft_transfer_call` message), its views (`JobView`, `Config`, `Request`, `FundsReport`,
//! ...) and the records it stores, which the views return as they are. The contract and its
//! clients (worker, `ecloud`, deploy, indexer, tests) import these very types.
//!
//! JSON-friendly integer types (`U64`/`U128`) are used in stored records too: their borsh form
//! is the plain integer, so views can return the records as they are.

use near_sdk::json_types::{Base64VecU8, U64, U128};
use near_sdk::{AccountId, NearToken, PublicKey, YieldId, near};

use crate::events::marketplace::{JobTarget, Settlement};
use crate::{
    Asset, ChannelId, Hash32, InputRef, JobId, ModelId, ModelPrice, NodeId, OutputRef, RequestId,
    Usage,
};

/// Governance-controlled parameters.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub owner: AccountId,
    /// The node registry asked on claim and told to slash.
    pub registry: AccountId,
    /// Receives the protocol fees (`withdraw_fees`).
    pub treasury: AccountId,
    /// Model token contracts are `<model_id>.<model_factory>`; royalties go there.
    pub model_factory: Option<AccountId>,
    /// Protocol fee, in basis points of each job's cost.
    pub protocol_fee_bps: u16,
    /// Model royalty, in basis points of each job's cost.
    pub royalty_bps: u16,
    /// Largest inline ciphertext (input or output), bytes.
    pub max_inline_bytes: u32,
    /// Default time a job waits for a claim.
    pub claim_window_ns: U64,
    /// Longest allowed time between submission and deadline.
    pub max_job_duration_ns: U64,
    /// How long a node fetched from the registry is trusted before it is asked again
    /// (never past the node's attestation expiry).
    pub node_cache_ttl_ns: U64,
    /// Stake asked to be slashed from a node that claimed a job and missed its deadline; the
    /// user never gets more than the job put at risk (its price cap, in NEAR).
    pub slash_amount: NearToken,
    pub paused: bool,
    /// Least time between a job's claim and its deadline: no job may be claimed later than
    /// this before its deadline, so none can be set up to be missed.
    pub min_answer_window_ns: U64,
    /// Jobs in flight for a node that publishes no capacity (0) in the registry.
    pub default_node_capacity: u32,
}

impl Config {
    pub const DEFAULT_FEE_BPS: u16 = 200;
    pub const DEFAULT_ROYALTY_BPS: u16 = 500;
    pub const DEFAULT_MAX_INLINE_BYTES: u32 = crate::DEFAULT_MAX_INLINE_BYTES;
    pub const DEFAULT_CLAIM_WINDOW_NS: u64 = 10 * 60 * 1_000_000_000;
    pub const DEFAULT_MAX_JOB_DURATION_NS: u64 = 24 * 60 * 60 * 1_000_000_000;
    /// One heartbeat interval of the registry's default policy: a node the registry stops
    /// listing as active (missed heartbeats, a revoking policy change) claims from the cache
    /// at most this long after the marketplace last asked; `refresh_node` evicts it at once.
    pub const DEFAULT_NODE_CACHE_TTL_NS: u64 = 5 * 60 * 1_000_000_000;
    /// Least time a claimed job leaves its node to answer: below the worker's own margin
    /// (30 s), so an honest node is never asked for less than it would take.
    pub const DEFAULT_MIN_ANSWER_WINDOW_NS: u64 = 20 * 1_000_000_000;
    /// Jobs in flight for a node that publishes no capacity in the registry.
    pub const DEFAULT_NODE_CAPACITY: u32 = 1;

    pub fn new(owner: AccountId, registry: AccountId, treasury: AccountId) -> Self {
        Self {
            owner,
            registry,
            treasury,
            model_factory: None,
            protocol_fee_bps: Self::DEFAULT_FEE_BPS,
            royalty_bps: Self::DEFAULT_ROYALTY_BPS,
            max_inline_bytes: Self::DEFAULT_MAX_INLINE_BYTES,
            claim_window_ns: U64(Self::DEFAULT_CLAIM_WINDOW_NS),
            max_job_duration_ns: U64(Self::DEFAULT_MAX_JOB_DURATION_NS),
            node_cache_ttl_ns: U64(Self::DEFAULT_NODE_CACHE_TTL_NS),
            slash_amount: NearToken::from_near(1),
            paused: false,
            min_answer_window_ns: U64(Self::DEFAULT_MIN_ANSWER_WINDOW_NS),
            default_node_capacity: Self::DEFAULT_NODE_CAPACITY,
        }
    }
}

/// A change to the configuration; absent fields stay as they are.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigPatch {
    pub owner: Option<AccountId>,
    pub registry: Option<AccountId>,
    pub treasury: Option<AccountId>,
    pub model_factory: Option<AccountId>,
    pub protocol_fee_bps: Option<u16>,
    pub royalty_bps: Option<u16>,
    pub max_inline_bytes: Option<u32>,
    pub claim_window_ns: Option<U64>,
    pub max_job_duration_ns: Option<U64>,
    pub node_cache_ttl_ns: Option<U64>,
    pub slash_amount: Option<NearToken>,
    pub paused: Option<bool>,
    pub min_answer_window_ns: Option<U64>,
    pub default_node_capacity: Option<u32>,
    /// The payment channels' challenge period ([`ChannelSettings`]). Not critical: a channel
    /// keeps the period it was opened with. Applied at once, never queued: it is not part of
    /// the borsh form (the governance timelock stores critical patches in the layout they had
    /// before channels existed).
    #[borsh(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_challenge_period_ns: Option<U64>,
    /// The least deposit of a new payment channel, in NEAR ([`ChannelSettings`]); applied at
    /// once like `channel_challenge_period_ns`.
    #[borsh(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_channel_deposit: Option<NearToken>,
}

impl ConfigPatch {
    /// Whether the patch touches a setting that moves money or trust (the owner, the links to
    /// the registry and the factory, the treasury, fees, royalties, the slash rules): such a
    /// patch is a governance proposal, applied only after the delay. The rest (pause, limits,
    /// windows, the cache) applies at once.
    pub fn is_critical(&self) -> bool {
        self.owner.is_some()
            || self.registry.is_some()
            || self.treasury.is_some()
            || self.model_factory.is_some()
            || self.protocol_fee_bps.is_some()
            || self.royalty_bps.is_some()
            || self.slash_amount.is_some()
            || self.min_answer_window_ns.is_some()
    }
}

/// A critical setting of the marketplace: proposed, announced, applied after the delay
/// (`crate::governance`).
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum MarketplaceSetting {
    UpdateConfig(ConfigPatch),
    /// Where `model_id`'s royalties go (`None`: back to the confirmed token or fees).
    SetRoyaltyAccount {
        model_id: ModelId,
        account: Option<AccountId>,
    },
}

/// An accepted NEP-141 token and how node prices (yoctoNEAR) convert into it.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRate {
    /// Smallest token units worth one NEAR (10^24 yoctoNEAR).
    pub units_per_near: U128,
}

/// What a user submits.
pub use crate::JobSpec;

/// Where a job's storage deposit came from, so it goes back the same way.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StorageSource {
    /// Attached to `submit_job`: refunded by transfer.
    Attached,
    /// Taken from the user's storage balance (token jobs): returned to it.
    Balance,
}

/// A node's price for one model, per million tokens, in yoctoNEAR.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodePrice {
    pub input_per_million: U128,
    pub output_per_million: U128,
}

impl From<&ModelPrice> for NodePrice {
    fn from(p: &ModelPrice) -> Self {
        Self {
            input_per_million: p.input_per_million,
            output_per_million: p.output_per_million,
        }
    }
}

/// The node that took a job, frozen at claim time: its key and price bind the settlement.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub node_id: NodeId,
    pub operator: AccountId,
    pub signer_key: PublicKey,
    pub price: NodePrice,
    pub claimed_ns: U64,
}

/// An open or claimed job.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub job_id: JobId,
    pub user: AccountId,
    pub model_id: ModelId,
    pub asset: Asset,
    /// The token's conversion rate when the job was submitted (`None` for NEAR): governance
    /// changing it later does not change what this job costs.
    pub token_rate: Option<TokenRate>,
    pub price_cap: U128,
    /// NEAR paid for the job's storage, including the reserve for its claim and receipt.
    pub storage_deposit: NearToken,
    pub storage_source: StorageSource,
    /// Bytes of contract storage this job currently uses.
    pub storage_bytes: U64,
    pub created_ns: U64,
    pub claim_deadline_ns: U64,
    pub deadline_ns: U64,
    pub target: JobTarget,
    pub input: InputRef,
    pub input_hash: Hash32,
    pub user_key: String,
    pub claim: Option<Claim>,
}

/// What stays of a settled job: enough for the user to prove what was charged.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub job_id: JobId,
    pub user: AccountId,
    pub node_id: NodeId,
    pub model_id: ModelId,
    pub asset: Asset,
    pub input_hash: Hash32,
    pub output_hash: Hash32,
    pub usage: Usage,
    pub settlement: Settlement,
    /// The node's ed25519 signature over the `ResultReceipt`; `None` when the result
    /// transaction itself was signed by the node's attested key.
    pub signature: Option<Base64VecU8>,
    pub signer_key: PublicKey,
    pub settled_ns: U64,
    /// The encrypted weights that answered, as the node's signed receipt names them (`None`:
    /// plain weights, or a result from before receipts named weights). Not part of the stored
    /// layout: the marketplace keeps it beside the receipt (under its own storage key) and
    /// views fill it in; absent from the JSON when `None`.
    #[borsh(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_hash: Option<Hash32>,
}

/// A job as the views show it.
#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum JobView {
    Open(Job),
    Claimed(Job),
    Settled(Receipt),
}

/// Status filter of `jobs_by_status`.
#[near(serializers = [json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Open,
    Claimed,
    Settled,
}

/// A registry node as last fetched, trusted until `valid_until_ns`.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq)]
pub struct CachedNode {
    pub node_id: NodeId,
    pub operator: AccountId,
    pub signer_key: PublicKey,
    pub encryption_key: String,
    pub region: Option<String>,
    pub gpu_models: Vec<String>,
    pub prices: Vec<ModelPrice>,
    pub attestation_expires_ns: U64,
    pub valid_until_ns: U64,
    /// Bytes this entry uses; paid from the operator's storage balance.
    pub storage_bytes: U64,
    /// Jobs the node may have claimed and not yet settled or lost: its capacity in the
    /// registry, or the marketplace's default when it publishes none.
    pub capacity: u32,
}

impl CachedNode {
    pub fn is_fresh(&self, now_ns: u64) -> bool {
        now_ns < self.valid_until_ns.0 && now_ns < self.attestation_expires_ns.0
    }

    pub fn price_of(&self, model_id: &ModelId) -> Option<NodePrice> {
        self.prices
            .iter()
            .find(|p| &p.model_id == model_id)
            .map(NodePrice::from)
    }
}

/// A node's answer to an agent request, kept until the yield callback settles it.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub node_id: NodeId,
    pub operator: AccountId,
    pub price: NodePrice,
    pub usage: Usage,
    pub output: OutputRef,
    pub output_hash: Hash32,
    pub signature: Option<Base64VecU8>,
}

/// An agent request waiting on its yield.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub request_id: RequestId,
    pub caller: AccountId,
    pub model_id: ModelId,
    /// In NEAR.
    pub price_cap: U128,
    /// Everything attached beyond the cap; returned when the request ends.
    pub storage_deposit: NearToken,
    pub input: InputRef,
    pub input_hash: Hash32,
    pub yield_id: YieldId,
    pub created_ns: U64,
    pub answer: Option<Answer>,
}

/// Funds the marketplace owes, per asset. `held` moves only when funds enter or leave; the
/// buckets move with the business logic. `held == escrow + credits + fees + storage` always.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ledger {
    pub held: U128,
    /// Price caps of open/claimed jobs and pending requests; live channels' unsettled
    /// deposits.
    pub escrow: U128,
    /// Payouts that failed and wait for `withdraw`.
    pub credits: U128,
    /// Protocol fees not yet withdrawn to the treasury.
    pub fees: U128,
    /// NEAR only: storage deposits of jobs/requests/channels, storage balances, and storage
    /// locked by receipts and node caches.
    pub storage: U128,
}

/// Who is owed a credit, in what.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CreditKey {
    pub account: AccountId,
    pub asset: Asset,
}

/// How a payout is delivered.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PayoutKind {
    /// NEAR transfer or `ft_transfer`.
    Transfer,
    /// Revenue for a model token contract: NEAR through `deposit_revenue`, a NEP-141 token
    /// through `ft_transfer_call` (msg ""), since the model token counts only token revenue
    /// that reaches its `ft_on_transfer`.
    Revenue,
}

/// One amount leaving the contract.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    pub account: AccountId,
    pub asset: Asset,
    pub amount: U128,
    pub kind: PayoutKind,
}

/// The message of `ft_transfer_call` to the marketplace.
#[near(serializers = [json])]
#[serde(rename_all = "snake_case")]
pub enum FtMessage {
    SubmitJob(JobSpec),
    /// Opens a payment channel with the whole amount transferred as its deposit.
    OpenChannel(OpenChannelSpec),
    /// Adds the whole amount transferred to an open channel in the same token.
    TopUpChannel {
        channel_id: ChannelId,
    },
}

/// What a user names to open a payment channel.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq)]
pub struct OpenChannelSpec {
    /// The only node that may settle the channel (its operator, or its enclave key, an access
    /// key of the operator's account).
    pub node_id: NodeId,
    /// The model the channel pays for: the node's price for it is frozen at opening, and its
    /// royalty goes to the model's token.
    pub model_id: ModelId,
    /// The ed25519 key that signs the channel's vouchers ([`crate::Voucher`]).
    pub channel_key: PublicKey,
}

/// Governance-controlled parameters of payment channels (stored apart from [`Config`], whose
/// layout predates channels; changed with `update_config`, shown by `channel_settings`).
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelSettings {
    /// Time between a user's `start_close` and `finish_close`, in which the node may still
    /// settle its newest voucher. A channel keeps the period it was opened with.
    pub challenge_period_ns: U64,
    /// The least deposit a channel opens with, in yoctoNEAR (a token deposit is converted at
    /// the token's rate): with the storage the opener pays, it makes flooding a node with
    /// tiny channels cost real money.
    pub min_deposit: NearToken,
}

impl ChannelSettings {
    pub const DEFAULT_CHALLENGE_PERIOD_NS: u64 = 24 * 60 * 60 * 1_000_000_000;
    /// Longest challenge period governance may set: a user's money is never locked longer.
    pub const MAX_CHALLENGE_PERIOD_NS: u64 = 30 * 24 * 60 * 60 * 1_000_000_000;
    pub const DEFAULT_MIN_DEPOSIT: NearToken = NearToken::from_millinear(10);
}

impl Default for ChannelSettings {
    fn default() -> Self {
        Self {
            challenge_period_ns: U64(Self::DEFAULT_CHALLENGE_PERIOD_NS),
            min_deposit: Self::DEFAULT_MIN_DEPOSIT,
        }
    }
}

/// Where a channel is in its life. A closed channel is removed (its storage refunded); its
/// history is in the events.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChannelState {
    /// The node serves and settles; the user may top up.
    Open,
    /// The user started a unilateral close: no top-ups; the node may settle until `ends_ns`,
    /// then anyone may `finish_close`.
    Closing { started_ns: U64, ends_ns: U64 },
}

/// A payment channel: a user's deposit for one node and one model, paid out to the node by
/// vouchers of the channel key.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub channel_id: ChannelId,
    /// The opener: tops up, closes unilaterally, gets the rest back.
    pub user: AccountId,
    pub node_id: NodeId,
    /// The node's operator at opening: receives the provider share; the only account (with its
    /// enclave key) that may settle or close cooperatively.
    pub operator: AccountId,
    pub model_id: ModelId,
    /// ed25519: signs the vouchers.
    pub channel_key: PublicKey,
    pub asset: Asset,
    /// The node's price for the model at opening, yoctoNEAR per million tokens: what the node
    /// may charge per request, converted into the asset at `token_rate`.
    pub price: NodePrice,
    /// The token's rate at opening (`None` for NEAR).
    pub token_rate: Option<TokenRate>,
    /// Everything deposited (opening and top-ups), in the asset.
    pub deposit: U128,
    /// The newest voucher amount settled: paid out to provider, royalty and fee.
    pub settled: U128,
    /// NEAR paid for the channel's storage, refunded when it closes.
    pub storage_deposit: NearToken,
    pub storage_source: StorageSource,
    /// The challenge period at opening.
    pub challenge_period_ns: U64,
    pub opened_ns: U64,
    pub state: ChannelState,
}

impl Channel {
    /// What the channel still holds in escrow: the deposit not yet settled.
    pub fn unsettled(&self) -> u128 {
        self.deposit.0.saturating_sub(self.settled.0)
    }
}

/// One asset's obligations: the ledger next to the same figures recomputed from the records.
#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetFunds {
    pub asset: Asset,
    pub ledger: Ledger,
    pub escrow_recomputed: U128,
    pub credits_recomputed: U128,
    pub storage_recomputed: U128,
    /// `ledger.held == escrow + credits + fees + storage` and every bucket matches its
    /// recomputation.
    pub balanced: bool,
}

#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundsReport {
    pub assets: Vec<AssetFunds>,
    /// The contract's NEAR balance; it must cover the NEAR held for others.
    pub near_balance: U128,
    /// `near_balance - held NEAR`: the contract's own NEAR (initial funding, gas rewards).
    pub near_surplus: U128,
    pub balanced: bool,
}

/// The marketplace's methods as clients call them (name, gas to attach, deposit rule) and
/// their JSON arguments. Gas figures are what a client attaches: the contract's documented
/// budget plus room (the unused part is refunded).
pub mod methods {
    use near_sdk::json_types::Base64VecU8;
    use near_sdk::{AccountId, near};

    use super::{ConfigPatch, OpenChannelSpec, TokenRate};
    use crate::interfaces::method::Method;
    use crate::{Asset, ChannelId, JobId, JobSpec, NodeId, OutputRef, RequestId, Usage, Voucher};

    /// Deposit: the channel's deposit plus `channel_storage_deposit` (the excess comes back).
    /// 10 Tgas documented with the node cached, 25 through the registry (`get_node` +
    /// callback); room for the refunds.
    pub const OPEN_CHANNEL: Method = Method::payable("open_channel", 50);
    /// Deposit: the NEAR added to the channel (a NEAR channel; a token channel is topped up
    /// by `ft_transfer_call` with `FtMessage::TopUpChannel`).
    pub const TOP_UP_CHANNEL: Method = Method::payable("top_up_channel", 20);
    /// The node; <= 15 Tgas measured whatever the number of requests the voucher covers.
    /// 80 Tgas for a token channel whose royalty goes to a model token (`ft_transfer_call`).
    pub const SETTLE_CHANNEL: Method = Method::call("settle_channel", 100);
    /// The node, with its final voucher: settles and refunds the rest to the user.
    pub const CLOSE_CHANNEL: Method = Method::call("close_channel", 100);
    /// The channel's user, 1 yoctoNEAR: starts the challenge period.
    pub const START_CLOSE: Method = Method::one_yocto("start_close", 20);
    /// Anyone once the challenge period is over: refunds the deposit minus what was settled.
    pub const FINISH_CLOSE: Method = Method::call("finish_close", 30);

    pub const GET_CHANNEL: &str = "get_channel";
    pub const CHANNELS_BY_USER: &str = "channels_by_user";
    pub const CHANNELS_BY_NODE: &str = "channels_by_node";
    pub const CHANNEL_SETTINGS: &str = "channel_settings";
    pub const CHANNEL_STORAGE_DEPOSIT: &str = "channel_storage_deposit";

    /// `open_channel`'s arguments: the deposit is in NEAR (the rest of the attached NEAR pays
    /// the storage; the excess comes back).
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct OpenChannelArgs {
        pub channel: OpenChannelSpec,
        pub deposit: near_sdk::json_types::U128,
    }

    /// `get_channel`, `top_up_channel`, `start_close` and `finish_close`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone, Copy)]
    pub struct ChannelArgs {
        pub channel_id: ChannelId,
    }

    /// `settle_channel` and `close_channel`'s arguments: the newest voucher and the channel
    /// key's ed25519 signature over its `signing_bytes`.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct VoucherArgs {
        pub channel_id: ChannelId,
        pub voucher: Voucher,
        pub signature: Base64VecU8,
    }

    /// `channels_by_user`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct UserChannelsArgs {
        pub account_id: AccountId,
        pub from_index: Option<u64>,
        pub limit: Option<u64>,
    }

    /// Deposit: price cap plus `job_storage_deposit` (10 Tgas measured; room for the refund).
    pub const SUBMIT_JOB: Method = Method::payable("submit_job", 30);
    /// 20 Tgas documented: registry `get_node` + callback when the node is not cached.
    pub const CLAIM_JOB: Method = Method::call("claim_job", 30);
    /// 80 Tgas for a token royalty to a model token.
    pub const SUBMIT_RESULT: Method = Method::call("submit_result", 100);
    pub const RESPOND: Method = Method::call("respond", 30);
    /// Registry `get_node` + callback.
    pub const REFRESH_NODE: Method = Method::call("refresh_node", 30);
    /// Model factory `model` + callback (10 Tgas).
    pub const CONFIRM_MODEL: Method = Method::call("confirm_model", 20);
    /// Deposit: the NEAR added to the storage balance.
    pub const STORAGE_DEPOSIT: Method = Method::payable("storage_deposit", 10);
    pub const UPDATE_CONFIG: Method = Method::one_yocto("update_config", 30);
    pub const SET_ACCEPTED_TOKEN: Method = Method::one_yocto("set_accepted_token", 30);
    /// 1 yocto from the job's user before a claim; anyone (any deposit rule) after the windows.
    /// 10 Tgas, 40 for a missed deadline (registry `slash`); room for token refunds.
    pub const CANCEL_JOB: Method = Method::payable("cancel_job", 100);
    /// 60 Tgas for a model token's credit in a token (`ft_transfer_call`).
    pub const WITHDRAW: Method = Method::call("withdraw", 60);
    pub const WITHDRAW_FEES: Method = Method::call("withdraw_fees", 30);

    pub const GET_CONFIG: &str = "get_config";
    pub const GET_JOB: &str = "get_job";
    pub const GET_REQUEST: &str = "get_request";
    pub const JOBS_BY_NODE: &str = "jobs_by_node";
    pub const OPEN_JOBS_FOR_NODE: &str = "open_jobs_for_node";
    pub const JOB_STORAGE_DEPOSIT: &str = "job_storage_deposit";
    pub const STORAGE_BALANCE_OF: &str = "storage_balance_of";
    pub const ACCEPTED_TOKENS: &str = "accepted_tokens";
    pub const CREDIT_OF: &str = "credit_of";
    pub const FUNDS: &str = "funds";
    pub const REQUEST_DEPOSIT: &str = "request_deposit";
    pub const ROYALTY_ACCOUNT: &str = "royalty_account";

    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct SubmitJobArgs {
        pub job: JobSpec,
    }

    #[near(serializers = [json])]
    #[derive(Debug, Clone, Copy)]
    pub struct ClaimJobArgs {
        pub job_id: JobId,
        pub node_id: NodeId,
    }

    /// `submit_result`'s arguments: the signature is the node's over the `ResultReceipt` with
    /// `weights_hash` (absent from the JSON when `None`, as a marketplace from before the field
    /// takes it).
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct SubmitResultArgs {
        pub job_id: JobId,
        pub output: OutputRef,
        pub usage: Usage,
        pub signature: Option<Base64VecU8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub weights_hash: Option<crate::Hash32>,
    }

    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct RespondArgs {
        pub request_id: RequestId,
        pub node_id: NodeId,
        pub output: OutputRef,
        pub usage: Usage,
        pub signature: Option<Base64VecU8>,
    }

    /// `refresh_node`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone, Copy)]
    pub struct NodeArgs {
        pub node_id: NodeId,
    }

    /// `confirm_model`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct ModelArgs {
        pub model_id: crate::ModelId,
    }

    #[near(serializers = [json])]
    #[derive(Debug, Clone, Default)]
    pub struct StorageDepositArgs {
        pub account_id: Option<AccountId>,
    }

    /// `storage_balance_of`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct StorageBalanceArgs {
        pub account_id: AccountId,
    }

    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct UpdateConfigArgs {
        pub patch: ConfigPatch,
    }

    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct SetAcceptedTokenArgs {
        pub token: AccountId,
        pub rate: Option<TokenRate>,
    }

    /// `get_job`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone, Copy)]
    pub struct JobArgs {
        pub job_id: JobId,
    }

    /// `get_request`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone, Copy)]
    pub struct RequestArgs {
        pub request_id: RequestId,
    }

    /// `jobs_by_node` and `open_jobs_for_node`: a page of a node's jobs.
    #[near(serializers = [json])]
    #[derive(Debug, Clone, Copy)]
    pub struct NodeJobsArgs {
        pub node_id: NodeId,
        pub from_index: Option<u64>,
        pub limit: Option<u64>,
    }

    /// `job_storage_deposit`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone, Copy)]
    pub struct InputBytesArgs {
        pub input_bytes: u32,
    }

    /// `withdraw`'s arguments: whose credit (default: the caller's), in which asset.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct WithdrawArgs {
        pub asset: Asset,
        pub account_id: Option<AccountId>,
    }

    /// `credit_of`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct CreditArgs {
        pub account_id: AccountId,
        pub asset: Asset,
    }

    /// The `#[init]` call (deploy).
    pub const NEW: Method = Method::call("new", 100);
    pub const SET_ROYALTY_ACCOUNT: Method = Method::one_yocto("set_royalty_account", 30);

    /// `new`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct NewArgs {
        pub owner: AccountId,
        pub registry: AccountId,
        pub treasury: AccountId,
    }

    /// `set_royalty_account`'s arguments: `None` sends the royalties to the protocol fees
    /// until the model is confirmed (`confirm_model`).
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct SetRoyaltyAccountArgs {
        pub model_id: crate::ModelId,
        pub account: Option<AccountId>,
    }

    /// `withdraw_fees`' arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct AssetArgs {
        pub asset: Asset,
    }
}
