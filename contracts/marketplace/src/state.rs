//! Stored records: configuration, jobs, receipts, cached nodes, agent requests, the ledger.
//! JSON-friendly integer types (`U64`/`U128`) are used in stored records too: their borsh form
//! is the plain integer, so views can return the records as they are.

use near_sdk::json_types::{Base64VecU8, U64, U128};
use near_sdk::{AccountId, NearToken, PublicKey, YieldId, near};

use enclave_cloud_common::events::marketplace::{JobTarget, Settlement};
use enclave_cloud_common::{
    Asset, Hash32, InputRef, JobId, ModelId, ModelPrice, NodeId, OutputRef, RequestId, Usage,
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
    /// Stake asked to be slashed from a node that claimed a job and missed its deadline.
    pub slash_amount: NearToken,
    pub paused: bool,
}

impl Config {
    pub const DEFAULT_FEE_BPS: u16 = 200;
    pub const DEFAULT_ROYALTY_BPS: u16 = 500;
    pub const DEFAULT_MAX_INLINE_BYTES: u32 = enclave_cloud_common::DEFAULT_MAX_INLINE_BYTES;
    pub const DEFAULT_CLAIM_WINDOW_NS: u64 = 10 * 60 * 1_000_000_000;
    pub const DEFAULT_MAX_JOB_DURATION_NS: u64 = 24 * 60 * 60 * 1_000_000_000;
    pub const DEFAULT_NODE_CACHE_TTL_NS: u64 = 60 * 60 * 1_000_000_000;

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
        }
    }
}

/// A change to the configuration; absent fields stay as they are.
#[near(serializers = [json])]
#[derive(Debug, Clone, Default)]
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
}

/// An accepted NEP-141 token and how node prices (yoctoNEAR) convert into it.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRate {
    /// Smallest token units worth one NEAR (10^24 yoctoNEAR).
    pub units_per_near: U128,
}

/// What a user submits; shared with clients through `contracts/common`.
pub use enclave_cloud_common::JobSpec;

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
    /// Price caps of open/claimed jobs and pending requests.
    pub escrow: U128,
    /// Payouts that failed and wait for `withdraw`.
    pub credits: U128,
    /// Protocol fees not yet withdrawn to the treasury.
    pub fees: U128,
    /// NEAR only: storage deposits of jobs/requests, storage balances, and storage locked by
    /// receipts and node caches.
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
