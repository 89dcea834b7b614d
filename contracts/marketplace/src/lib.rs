//! Marketplace contract: escrowed inference jobs, settlement, agent requests and payment
//! channels.
//!
//! A user escrows a price cap (NEAR, or an allow-listed NEP-141 token) for a job; an eligible
//! node (checked with the registry once and cached) claims it and posts a result signed by its
//! attested key; settlement pays the provider, the model's royalty and the protocol fee in the
//! same call and refunds the rest. Contracts call AI with `request`, which yields until a node
//! `respond`s or the yield times out; the caller's `on_ai_response` gets the answer either way.
//! A payment channel (`channels`) holds a user's deposit for one node and model; the node
//! settles the channel key's cumulative vouchers with the same split and payouts as a job.
//!
//! Money rules: state is updated before any promise; every payout that fails becomes a credit
//! (`withdraw`); `funds` recomputes `held == escrow + credits + fees + storage` per asset.
//!
//! This file is the public interface: every public method is declared in one of the traits
//! below, which state who may call it, the deposit it takes and the gas it needs; the
//! implementations (`#[near] impl Trait for Marketplace`) live in the module of their concern,
//! and private callbacks beside the call they complete. Errors are
//! [`errors::MarketplaceError`]s,
//! raised with [`enclave_cloud_common::OrPanic`].

mod channels;
pub mod errors;
mod funds;
mod governance;
mod jobs;
mod models;
mod nodes;
mod payouts;
mod refs;
mod requests;
mod results;
pub mod settlement;
pub mod state;
mod storage;
mod storage_keys;
mod upgrade;
mod views;

use std::collections::BTreeMap;

use near_sdk::collections::{LookupMap, UnorderedMap, UnorderedSet, Vector};
use near_sdk::json_types::{Base64VecU8, U128};
use near_sdk::{AccountId, Gas, PanicOnDefault, Promise, PromiseOrValue, ext_contract, near};

use enclave_cloud_common::events::marketplace::Settlement;
use enclave_cloud_common::{
    Asset, ChannelId, Hash32, InputRef, JobId, ModelId, NodeId, OutputRef, RequestId, Usage,
    Voucher,
};
use near_sdk::json_types::U64;

use crate::state::{
    CachedNode, Channel, ChannelSettings, Config, ConfigPatch, CreditKey, Job, JobSpec, JobStatus,
    JobView, Ledger, OpenChannelSpec, Receipt, Request, TokenRate,
};

pub use crate::state::{AssetFunds, FtMessage, FundsReport};

/// Gas the registry gets for `get_node`.
pub const GAS_GET_NODE: Gas = Gas::from_tgas(4);
/// Gas of the callback that caches a node and claims the job.
pub const GAS_ON_NODE: Gas = Gas::from_tgas(6);
/// Gas the registry gets for `slash` (it pays the beneficiary and checks the transfer).
pub const GAS_SLASH: Gas = Gas::from_tgas(15);
/// Gas of the callback after a slash.
pub const GAS_ON_SLASHED: Gas = Gas::from_tgas(3);
/// Gas of a model token's `deposit_revenue`.
pub const GAS_DEPOSIT_REVENUE: Gas = Gas::from_tgas(4);
/// Gas the model factory gets for `model`.
pub const GAS_MODEL_LISTING: Gas = Gas::from_tgas(4);
/// Gas of the callback that records a confirmed model.
pub const GAS_ON_MODEL_CONFIRMED: Gas = Gas::from_tgas(6);
/// Gas of a token's `ft_transfer`.
pub const GAS_FT_TRANSFER: Gas = Gas::from_tgas(5);
/// Gas a model token's `ft_on_transfer` needs for a token royalty (~5 Tgas measured; the
/// model token books it as revenue).
pub const GAS_MODEL_TOKEN_ON_TRANSFER: Gas = Gas::from_tgas(5);
/// Gas of a token's `ft_transfer_call` carrying a royalty to a model token (40 Tgas): the
/// 30 Tgas NEP-141 reference tokens keep for themselves (their own work and the 5 Tgas of
/// `ft_resolve_transfer`; near-contract-standards 4.x refuses a call with less and forwards
/// only the excess to the receiver) plus `GAS_MODEL_TOKEN_ON_TRANSFER` and as much again as
/// margin, so both `ft_on_transfer` and the refund accounting run.
pub const GAS_FT_TRANSFER_CALL: Gas = Gas::from_tgas(30 + 2 * 5);
/// Gas of the callback that turns failed payouts into credits.
pub const GAS_ON_PAYOUTS: Gas = Gas::from_tgas(4);
/// Gas reserved for the yield callback of an agent request (settlement + caller callback).
pub const GAS_ON_REQUEST_DONE: Gas = Gas::from_tgas(30);
/// Gas of the callback that opens a channel once the registry answered (or refunds).
pub const GAS_ON_NODE_FOR_CHANNEL: Gas = Gas::from_tgas(10);
/// Gas the caller's `on_ai_response` gets.
pub const GAS_AI_CALLBACK: Gas = Gas::from_tgas(10);

/// Layout version of the stored state (see `upgrade`).
pub const STATE_VERSION: u16 = 2;

#[near(contract_state)]
#[derive(PanicOnDefault)]
pub struct Marketplace {
    /// First field on purpose: `migrate` reads it before deciding how to decode the rest.
    state_version: u16,
    config: Config,
    next_job_id: JobId,
    next_request_id: RequestId,
    jobs: LookupMap<JobId, Job>,
    open_jobs: UnorderedSet<JobId>,
    claimed_jobs: UnorderedSet<JobId>,
    receipts: LookupMap<JobId, Receipt>,
    settled_jobs: Vector<JobId>,
    jobs_by_user: LookupMap<AccountId, UnorderedSet<JobId>>,
    jobs_by_node: LookupMap<NodeId, UnorderedSet<JobId>>,
    nodes: LookupMap<NodeId, CachedNode>,
    requests: UnorderedMap<RequestId, Request>,
    credits: UnorderedMap<CreditKey, U128>,
    storage_balances: UnorderedMap<AccountId, U128>,
    accepted_tokens: UnorderedMap<AccountId, TokenRate>,
    royalty_accounts: LookupMap<ModelId, AccountId>,
    ledgers: BTreeMap<Asset, Ledger>,
    /// NEAR that pays for storage nobody gets back: receipts, node caches, balance entries.
    locked_storage: U128,
    /// Claimed jobs not yet settled or cancelled, per node (absent: none), held to the
    /// cached node's capacity. Its entries are paid from the claiming job's storage.
    in_flight: LookupMap<NodeId, u32>,
}

/// Escrowed jobs: submit (NEAR or token), claim, result, cancel. Implemented in `jobs`.
#[ext_contract(ext_marketplace_jobs)]
pub trait JobApi {
    /// Anyone, paying in NEAR. Deposit: `price_cap` plus the job's storage (see
    /// `job_storage_deposit`); any excess is refunded. Gas: 10 Tgas. Returns the job id.
    fn submit_job(&mut self, job: JobSpec) -> JobId;

    /// NEP-141 receiver. Called by an accepted token contract on `ft_transfer_call` with
    /// `msg = {"submit_job": <JobSpec>}`; the job's storage comes from the sender's storage
    /// balance. Returns the unused amount (`amount - price_cap`); a refused job returns all.
    fn ft_on_transfer(
        &mut self,
        sender_id: AccountId,
        amount: U128,
        msg: String,
    ) -> PromiseOrValue<U128>;

    /// The operator of `node_id`, no deposit. Claims an open job for the node. With a fresh
    /// cached node this is synchronous and returns `true`; otherwise the registry is asked
    /// (`get_node`) and `on_node_for_claim` finishes the claim, returning `true` if claimed and
    /// `false` (job left open, reason logged) if the node was refused. Gas: 20 Tgas.
    fn claim_job(&mut self, job_id: JobId, node_id: NodeId) -> PromiseOrValue<bool>;

    /// Anyone (a relayer) with `signature`, or the node's operator signing the transaction with
    /// the node's attested key and no `signature`. No deposit. Settles at once and returns the
    /// split. The signature is ed25519 by the node's key over
    /// `ResultReceipt { Job(job_id), model_id, input_hash, output_hash, usage, weights_hash }
    /// .signing_bytes()`. `weights_hash` (optional; omitted: `None`) names the encrypted
    /// weights that answered: the receipt keeps it (`get_job`, event `job_settled`), its entry
    /// paid from the job's storage deposit like the receipt.
    /// Gas: 20 Tgas (payouts + one callback); 80 Tgas for a token-paid job whose royalty goes
    /// to a model token (its `ft_transfer_call` alone gets `GAS_FT_TRANSFER_CALL`, 40 Tgas).
    fn submit_result(
        &mut self,
        job_id: JobId,
        output: OutputRef,
        usage: Usage,
        signature: Option<Base64VecU8>,
        weights_hash: Option<Hash32>,
    ) -> Settlement;

    /// Anyone once the claim window passed (unclaimed) or the deadline passed (claimed; the
    /// node is slashed, part of its stake to the user); the job's user before any claim with
    /// 1 yoctoNEAR attached. Refunds the escrow and storage. Gas: 10 Tgas; attach 40 Tgas for
    /// a missed deadline (registry `slash` + callback).
    fn cancel_job(&mut self, job_id: JobId);
}

/// Payment channels: a user's deposit for one node and one model, paid out by the channel
/// key's cumulative vouchers (`enclave_cloud_common::Voucher`), any number of requests per
/// settlement. Implemented in `channels`. Amounts are in the channel's asset.
#[ext_contract(ext_marketplace_channels)]
pub trait ChannelApi {
    /// Anyone, paying in NEAR (a token channel opens by `ft_transfer_call` with
    /// `FtMessage::OpenChannel`). Deposit: `deposit` (at least `channel_settings().min_deposit`)
    /// plus `channel_storage_deposit()`; the excess is refunded. The node must serve the model;
    /// its price is frozen in the channel. With the node fresh in the cache this is
    /// synchronous and returns the channel id; otherwise the registry is asked (`get_node`,
    /// the cache entry paid from the operator's storage balance as for claims) and
    /// `on_node_for_near_channel` opens it, or refunds everything and returns `None`.
    /// Gas: 10 Tgas cached, 25 Tgas through the registry.
    fn open_channel(
        &mut self,
        channel: OpenChannelSpec,
        deposit: U128,
    ) -> PromiseOrValue<Option<ChannelId>>;

    /// The channel's user, while the channel is open (not closing), paying in NEAR (a token
    /// channel is topped up by `ft_transfer_call` with `FtMessage::TopUpChannel`). Adds the
    /// attached NEAR to the deposit and returns the new deposit. Gas: 5 Tgas.
    fn top_up_channel(&mut self, channel_id: ChannelId) -> U128;

    /// The channel's node: its operator, or its enclave key (an access key of the operator's
    /// account), as results are submitted. No deposit. Settles the newest `voucher` (signed by
    /// the channel key): the difference to what was settled before is split like a job's cost
    /// (provider, model royalty, protocol fee). As often as the node likes, while the channel
    /// is open or within its challenge period. A voucher not above what was settled is refused
    /// (`VoucherNotAboveSettled`: it would pay nothing; a node retrying learns it is stale).
    /// Gas: <= 15 Tgas whatever the number of requests the voucher covers (one signature
    /// check, one record, the payouts); 80 Tgas for a token channel whose royalty goes to a
    /// model token (`ft_transfer_call`).
    fn settle_channel(
        &mut self,
        channel_id: ChannelId,
        voucher: Voucher,
        signature: Base64VecU8,
    ) -> Settlement;

    /// The channel's node, no deposit, with its final voucher (which may equal what was
    /// settled): settles it and refunds the rest of the deposit and the storage to the user,
    /// open or closing. Returns the last split (`refund`: what went back). Gas as settle.
    fn close_channel(
        &mut self,
        channel_id: ChannelId,
        voucher: Voucher,
        signature: Base64VecU8,
    ) -> Settlement;

    /// The channel's user, 1 yoctoNEAR: starts a unilateral close. The node may still settle
    /// until the returned time (now plus the channel's challenge period). Gas: 5 Tgas.
    fn start_close(&mut self, channel_id: ChannelId) -> U64;

    /// Anyone (the refund goes to the user), no deposit, once the challenge period is over:
    /// refunds the deposit minus what was settled, and the storage. Returns the refund.
    /// Gas: 10 Tgas.
    fn finish_close(&mut self, channel_id: ChannelId) -> U128;
}

/// Views of payment channels: anyone, free. Pages hold at most 100 channels. Implemented in
/// `channels::views`.
#[ext_contract(ext_marketplace_channel_views)]
pub trait ChannelViewApi {
    /// An open or closing channel (`None`: unknown or closed).
    fn get_channel(&self, channel_id: ChannelId) -> Option<Channel>;
    /// A user's open and closing channels.
    fn channels_by_user(
        &self,
        account_id: AccountId,
        from_index: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<Channel>;
    /// A node's open and closing channels.
    fn channels_by_node(
        &self,
        node_id: NodeId,
        from_index: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<Channel>;
    fn channel_settings(&self) -> ChannelSettings;
    /// NEAR to attach to `open_channel` beyond the deposit (or to hold in the storage balance
    /// for a token channel): refunded when the channel closes.
    fn channel_storage_deposit(&self) -> U128;
}

/// The marketplace's cache of registry nodes. Implemented in `nodes`.
#[ext_contract(ext_marketplace_nodes)]
pub trait NodeCacheApi {
    /// Anyone, no deposit: re-reads a node from the registry (e.g. after it re-attested or was
    /// deregistered). The cache storage is paid from the operator's storage balance. Gas:
    /// 20 Tgas (registry `get_node` + callback). The result is the callback's: whether the
    /// node is now cached.
    fn refresh_node(&mut self, node_id: NodeId) -> Promise;
}

/// Where models' royalties go. Implemented in `models`.
#[ext_contract(ext_marketplace_models)]
pub trait ModelRoyaltyApi {
    /// Anyone, no deposit: asks the model factory whether `model_id` was created and, if its
    /// listing shows it created with its token at `<model_id>.<model_factory>`, sends the
    /// model's royalties to that token from then on. Until a model is confirmed (or governance
    /// names its royalty account) its royalties are protocol fees: nobody can collect
    /// royalties by creating an id after they accrued. A royalty account already set is kept.
    /// The marketplace stores the entry (one per created model; governance may lift it). Gas:
    /// 10 Tgas (factory `model` + callback); the caller pays it, so asking about ids nobody
    /// created stores nothing and costs only the caller. The result is the callback's: whether
    /// the model's royalties now go to its token (or already went to an account).
    fn confirm_model(&mut self, model_id: ModelId) -> Promise;
}

/// Agent requests: a contract calls AI (yield/resume). Implemented in `requests`.
#[ext_contract(ext_marketplace_requests)]
pub trait AgentRequestApi {
    /// Any account (typically a contract). Deposit: `price_cap` (NEAR) plus storage (see
    /// `request_deposit`); what is not spent comes back. Gas: attach at least 50 Tgas, 30 of
    /// which wait in the yield for the answer. The answer (or `None` after 200 blocks) is
    /// delivered to the predecessor's `on_ai_response(request_id, response)`.
    fn request(&mut self, model_id: ModelId, input: InputRef, price_cap: U128) -> RequestId;

    /// Anyone with `signature`, or the node's operator signing with the node's attested key.
    /// No deposit. The node must be cached and fresh (`refresh_node`). Stores the answer and
    /// resumes the request's yield. Gas: 20 Tgas.
    fn respond(
        &mut self,
        request_id: RequestId,
        node_id: NodeId,
        output: OutputRef,
        usage: Usage,
        signature: Option<Base64VecU8>,
    );
}

/// Credits and protocol fees. Implemented in `payouts`.
#[ext_contract(ext_marketplace_funds)]
pub trait FundsApi {
    /// Anyone, no deposit: pays `account_id`'s (default: the caller's) credit in `asset`.
    /// Gas: 10 Tgas; attach 60 Tgas for a model token's credit in a token
    /// (`ft_transfer_call`).
    fn withdraw(&mut self, asset: Asset, account_id: Option<AccountId>) -> U128;

    /// Anyone, no deposit: sends the protocol fees collected in `asset` to the treasury.
    /// Gas: 10 Tgas.
    fn withdraw_fees(&mut self, asset: Asset) -> U128;
}

/// Storage balances, which pay the storage of token-paid jobs and of node cache entries.
/// Implemented in `storage`.
#[ext_contract(ext_marketplace_storage)]
pub trait StorageBalanceApi {
    /// Anyone, for `account_id` (default: the caller): adds the attached NEAR to its storage
    /// balance. Returns the balance. Gas: 5 Tgas.
    fn storage_deposit(&mut self, account_id: Option<AccountId>) -> U128;

    /// The balance's owner, 1 yoctoNEAR: withdraws `amount` (default: all) of its storage
    /// balance. Gas: 5 Tgas.
    fn storage_withdraw(&mut self, amount: Option<U128>) -> U128;
}

/// Governance: the owner, 1 yoctoNEAR, 5 Tgas each. Implemented in `governance`. The
/// timelock methods (`propose_change`, `apply_change`, `cancel_change`, `apply_upgrade`, view
/// `governance`) are `enclave_cloud_common::governed_methods!`, documented there.
#[ext_contract(ext_marketplace_governance)]
pub trait GovernanceApi {
    /// Changes configuration fields; emits `policy_updated` per field. A patch touching a
    /// critical field (`ConfigPatch::is_critical`: owner, registry, treasury, factory, fees,
    /// royalties, slash amount, answer window) is a governance proposal instead, applied after
    /// the delay (at once while it is 0); the rest applies now.
    fn update_config(&mut self, patch: ConfigPatch);

    /// Accepts a NEP-141 token at a conversion rate, or stops accepting it (`rate: None`).
    fn set_accepted_token(&mut self, token: AccountId, rate: Option<TokenRate>);

    /// Proposes (governance delay, as for critical `update_config` fields) sending a model's
    /// royalties to an account, or (`account: None`) to the protocol fees until the model is
    /// confirmed again (`confirm_model`).
    fn set_royalty_account(&mut self, model_id: ModelId, account: Option<AccountId>);
}

/// Read-only views: anyone, free (view calls). Pages hold at most 100 items. Implemented in
/// `views`.
#[ext_contract(ext_marketplace_views)]
pub trait MarketplaceViewApi {
    fn get_config(&self) -> Config;
    /// The contract's Cargo version.
    fn version(&self) -> String;
    fn get_job(&self, job_id: JobId) -> Option<JobView>;
    fn jobs_by_user(
        &self,
        account_id: AccountId,
        from_index: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<JobView>;
    fn jobs_by_node(
        &self,
        node_id: NodeId,
        from_index: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<JobView>;
    fn jobs_by_status(
        &self,
        status: JobStatus,
        from_index: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<JobView>;
    /// Open jobs `node_id` may claim (target and, if the node is cached, model and filters).
    fn open_jobs_for_node(
        &self,
        node_id: NodeId,
        from_index: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<Job>;
    fn get_request(&self, request_id: RequestId) -> Option<Request>;
    fn get_cached_node(&self, node_id: NodeId) -> Option<CachedNode>;
    fn accepted_tokens(&self) -> Vec<(AccountId, TokenRate)>;
    /// Where `model_id`'s royalties go (`None`: to the protocol fees).
    fn royalty_account(&self, model_id: ModelId) -> Option<AccountId>;
    fn credit_of(&self, account_id: AccountId, asset: Asset) -> U128;
    fn storage_balance_of(&self, account_id: AccountId) -> U128;
    /// NEAR to attach to `submit_job` beyond the price cap for a job whose inline input is
    /// `input_bytes` long (an upper bound: the excess is refunded).
    fn job_storage_deposit(&self, input_bytes: u32) -> U128;
    /// NEAR to attach to `request` beyond the price cap.
    fn request_deposit(&self, input_bytes: u32) -> U128;
    /// Recomputes every asset's obligations from the records and compares them with the
    /// ledger: `held == escrow + credits + fees + storage`, and NEAR held <= the balance.
    /// Iterates all open jobs, requests, live channels, credits and storage balances: for tests
    /// and audits.
    fn funds(&self) -> FundsReport;
}

#[cfg(test)]
mod tests;
