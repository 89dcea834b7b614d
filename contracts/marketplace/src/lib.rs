//! Marketplace contract: escrowed inference jobs, settlement, and agent requests.
//!
//! A user escrows a price cap (NEAR, or an allow-listed NEP-141 token) for a job; an eligible
//! node (checked with the registry once and cached) claims it and posts a result signed by its
//! attested key; settlement pays the provider, the model's royalty and the protocol fee in the
//! same call and refunds the rest. Contracts call AI with `request`, which yields until a node
//! `respond`s or the yield times out; the caller's `on_ai_response` gets the answer either way.
//!
//! Money rules: state is updated before any promise; every payout that fails becomes a credit
//! (`withdraw`); `funds` recomputes `held == escrow + credits + fees + storage` per asset.
//!
//! This file is the public interface. Each method states who may call it, the deposit it
//! takes and the gas it needs; the work is in the modules named after each concern.

pub mod errors;
mod funds;
mod governance;
mod jobs;
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
use near_sdk::{AccountId, Gas, PanicOnDefault, PromiseError, PromiseOrValue, near};

use enclave_cloud_common::interfaces::NodeView;
use enclave_cloud_common::{Asset, InputRef, JobId, ModelId, NodeId, OutputRef, RequestId, Usage};

use crate::errors::Result;
use crate::state::{
    CachedNode, Config, ConfigPatch, CreditKey, Job, JobSpec, JobStatus, JobView, Ledger, Payout,
    Receipt, Request, TokenRate,
};

pub use crate::funds::{AssetFunds, FundsReport};
pub use crate::jobs::FtMessage;

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
/// Gas the caller's `on_ai_response` gets.
pub const GAS_AI_CALLBACK: Gas = Gas::from_tgas(10);

/// Layout version of the stored state (see `upgrade`).
pub const STATE_VERSION: u16 = 1;

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
}

#[near]
impl Marketplace {
    // ----- lifecycle -----

    /// Creates the marketplace. `registry` is asked about nodes; `treasury` receives fees.
    #[init]
    pub fn new(owner: AccountId, registry: AccountId, treasury: AccountId) -> Self {
        Self::with_config(Config::new(owner, registry, treasury))
    }

    /// Owner (the contract account itself, through a deploy-and-call): re-reads the stored
    /// state after a code upgrade, converting older layouts.
    #[private]
    #[init(ignore_state)]
    #[handle_result]
    pub fn migrate() -> Result<Self> {
        Self::migrate_state()
    }

    // ----- jobs -----

    /// Anyone, paying in NEAR. Deposit: `price_cap` plus the job's storage (see
    /// `job_storage_deposit`); any excess is refunded. Gas: 10 Tgas. Returns the job id.
    #[payable]
    #[handle_result]
    pub fn submit_job(&mut self, job: JobSpec) -> Result<JobId> {
        self.submit_job_near(job)
    }

    /// NEP-141 receiver. Called by an accepted token contract on `ft_transfer_call` with
    /// `msg = {"submit_job": <JobSpec>}`; the job's storage comes from the sender's storage
    /// balance. Returns the unused amount (`amount - price_cap`); a refused job returns all.
    #[handle_result]
    pub fn ft_on_transfer(
        &mut self,
        sender_id: AccountId,
        amount: U128,
        msg: String,
    ) -> Result<PromiseOrValue<U128>> {
        self.submit_job_ft(sender_id, amount, msg)
            .map(PromiseOrValue::Value)
    }

    /// The operator of `node_id`, no deposit. Claims an open job for the node. With a fresh
    /// cached node this is synchronous and returns `true`; otherwise the registry is asked
    /// (`get_node`) and `on_node_for_claim` finishes the claim, returning `true` if claimed and
    /// `false` (job left open, reason logged) if the node was refused. Gas: 20 Tgas.
    #[handle_result]
    pub fn claim_job(&mut self, job_id: JobId, node_id: NodeId) -> Result<PromiseOrValue<bool>> {
        self.claim_job_internal(job_id, node_id)
    }

    /// Callback of `claim_job`. Private.
    #[private]
    pub fn on_node_for_claim(
        &mut self,
        job_id: JobId,
        node_id: NodeId,
        claimer: AccountId,
        #[callback_result] node: Result<Option<NodeView>, PromiseError>,
    ) -> bool {
        self.finish_claim(job_id, node_id, claimer, node)
    }

    /// Anyone (a relayer) with `signature`, or the node's operator signing the transaction with
    /// the node's attested key and no `signature`. No deposit. Settles at once and returns the
    /// split. The signature is ed25519 by the node's key over
    /// `ResultReceipt { Job(job_id), model_id, input_hash, output_hash, usage }.signing_bytes()`.
    /// Gas: 20 Tgas (payouts + one callback); 80 Tgas for a token-paid job whose royalty goes
    /// to a model token (its `ft_transfer_call` alone gets `GAS_FT_TRANSFER_CALL`, 40 Tgas).
    #[handle_result]
    pub fn submit_result(
        &mut self,
        job_id: JobId,
        output: OutputRef,
        usage: Usage,
        signature: Option<Base64VecU8>,
    ) -> Result<enclave_cloud_common::events::marketplace::Settlement> {
        self.submit_result_internal(job_id, output, usage, signature)
    }

    /// Anyone once the claim window passed (unclaimed) or the deadline passed (claimed; the
    /// node is slashed, part of its stake to the user); the job's user before any claim with
    /// 1 yoctoNEAR attached. Refunds the escrow and storage. Gas: 10 Tgas; attach 40 Tgas for
    /// a missed deadline (registry `slash` + callback).
    #[payable]
    #[handle_result]
    pub fn cancel_job(&mut self, job_id: JobId) -> Result<()> {
        self.cancel_job_internal(job_id)
    }

    /// Callback of a deadline-missed cancel: records what the registry slashed. Private.
    #[private]
    pub fn on_slashed(
        &mut self,
        job_id: JobId,
        refund: U128,
        #[callback_result] slashed: Result<near_sdk::NearToken, PromiseError>,
    ) {
        self.finish_slash(job_id, refund, slashed)
    }

    // ----- nodes -----

    /// Anyone, no deposit: re-reads a node from the registry (e.g. after it re-attested or was
    /// deregistered). The cache storage is paid from the operator's storage balance.
    pub fn refresh_node(&mut self, node_id: NodeId) -> near_sdk::Promise {
        self.refresh_node_internal(node_id)
    }

    /// Callback of `refresh_node`. Private. Returns whether the node is now cached.
    #[private]
    pub fn on_node_refreshed(
        &mut self,
        node_id: NodeId,
        #[callback_result] node: Result<Option<NodeView>, PromiseError>,
    ) -> bool {
        self.finish_refresh(node_id, node)
    }

    // ----- agent requests -----

    /// Any account (typically a contract). Deposit: `price_cap` (NEAR) plus storage (see
    /// `request_deposit`); what is not spent comes back. Gas: attach at least 50 Tgas, 30 of
    /// which wait in the yield for the answer. The answer (or `None` after 200 blocks) is
    /// delivered to the predecessor's `on_ai_response(request_id, response)`.
    #[payable]
    #[handle_result]
    pub fn request(
        &mut self,
        model_id: ModelId,
        input: InputRef,
        price_cap: U128,
    ) -> Result<RequestId> {
        self.request_internal(model_id, input, price_cap)
    }

    /// Anyone with `signature`, or the node's operator signing with the node's attested key.
    /// No deposit. The node must be cached and fresh (`refresh_node`). Stores the answer and
    /// resumes the request's yield. Gas: 20 Tgas.
    #[handle_result]
    pub fn respond(
        &mut self,
        request_id: RequestId,
        node_id: NodeId,
        output: OutputRef,
        usage: Usage,
        signature: Option<Base64VecU8>,
    ) -> Result<()> {
        self.respond_internal(request_id, node_id, output, usage, signature)
    }

    /// Yield callback of `request`, run on `respond` or after the timeout. Private.
    #[private]
    pub fn on_request_done(&mut self, request_id: RequestId) {
        self.finish_request(request_id)
    }

    // ----- money -----

    /// Anyone: pays `account_id`'s (default: the caller's) credit in `asset`. No deposit.
    /// Gas: attach 60 Tgas for a model token's credit in a token (`ft_transfer_call`).
    #[handle_result]
    pub fn withdraw(&mut self, asset: Asset, account_id: Option<AccountId>) -> Result<U128> {
        self.withdraw_credit(asset, account_id)
    }

    /// Callback of every payout batch: failed payouts, and the part of a token royalty a
    /// model token did not use, become credits. Private.
    #[private]
    pub fn on_payouts(&mut self, payouts: Vec<Payout>) {
        self.resolve_payouts(payouts)
    }

    /// Anyone: sends the protocol fees collected in `asset` to the treasury.
    #[handle_result]
    pub fn withdraw_fees(&mut self, asset: Asset) -> Result<U128> {
        self.withdraw_fees_internal(asset)
    }

    /// Anyone, for `account_id` (default: the caller): adds the attached NEAR to its storage
    /// balance, which pays the storage of token-paid jobs and of node cache entries. Returns
    /// the balance.
    #[payable]
    #[handle_result]
    pub fn storage_deposit(&mut self, account_id: Option<AccountId>) -> Result<U128> {
        self.storage_deposit_internal(account_id)
    }

    /// The balance's owner, 1 yoctoNEAR: withdraws `amount` (default: all) of its storage
    /// balance.
    #[payable]
    #[handle_result]
    pub fn storage_withdraw(&mut self, amount: Option<U128>) -> Result<U128> {
        self.storage_withdraw_internal(amount)
    }

    // ----- governance (owner, 1 yoctoNEAR) -----

    /// Changes configuration fields; emits `policy_updated` per field.
    #[payable]
    #[handle_result]
    pub fn update_config(&mut self, patch: ConfigPatch) -> Result<()> {
        self.update_config_internal(patch)
    }

    /// Accepts a NEP-141 token at a conversion rate, or stops accepting it (`rate: None`).
    #[payable]
    #[handle_result]
    pub fn set_accepted_token(&mut self, token: AccountId, rate: Option<TokenRate>) -> Result<()> {
        self.set_accepted_token_internal(token, rate)
    }

    /// Sends a model's royalties to a plain account (until its token contract exists), or
    /// back to the default `<model>.<model_factory>` (`account: None`).
    #[payable]
    #[handle_result]
    pub fn set_royalty_account(
        &mut self,
        model_id: ModelId,
        account: Option<AccountId>,
    ) -> Result<()> {
        self.set_royalty_account_internal(model_id, account)
    }

    // ----- views -----

    pub fn get_config(&self) -> Config {
        self.config.clone()
    }

    pub fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    pub fn get_job(&self, job_id: JobId) -> Option<JobView> {
        self.job_view(job_id)
    }

    pub fn jobs_by_user(
        &self,
        account_id: AccountId,
        from_index: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<JobView> {
        self.jobs_by_user_view(account_id, from_index, limit)
    }

    pub fn jobs_by_node(
        &self,
        node_id: NodeId,
        from_index: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<JobView> {
        self.jobs_by_node_view(node_id, from_index, limit)
    }

    pub fn jobs_by_status(
        &self,
        status: JobStatus,
        from_index: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<JobView> {
        self.jobs_by_status_view(status, from_index, limit)
    }

    /// Open jobs `node_id` may claim (target and, if the node is cached, model and filters).
    pub fn open_jobs_for_node(
        &self,
        node_id: NodeId,
        from_index: Option<u64>,
        limit: Option<u64>,
    ) -> Vec<Job> {
        self.open_jobs_for_node_view(node_id, from_index, limit)
    }

    pub fn get_request(&self, request_id: RequestId) -> Option<Request> {
        self.requests.get(&request_id)
    }

    pub fn get_cached_node(&self, node_id: NodeId) -> Option<CachedNode> {
        self.nodes.get(&node_id)
    }

    pub fn accepted_tokens(&self) -> Vec<(AccountId, TokenRate)> {
        self.accepted_tokens.to_vec()
    }

    /// Where `model_id`'s royalties go (`None`: to the protocol fees).
    pub fn royalty_account(&self, model_id: ModelId) -> Option<AccountId> {
        self.royalty_destination(&model_id)
            .map(|(account, _)| account)
    }

    pub fn credit_of(&self, account_id: AccountId, asset: Asset) -> U128 {
        self.credits
            .get(&CreditKey {
                account: account_id,
                asset,
            })
            .unwrap_or(U128(0))
    }

    pub fn storage_balance_of(&self, account_id: AccountId) -> U128 {
        self.storage_balances.get(&account_id).unwrap_or(U128(0))
    }

    /// NEAR to attach to `submit_job` beyond the price cap for a job whose inline input is
    /// `input_bytes` long (an upper bound: the excess is refunded).
    pub fn job_storage_deposit(&self, input_bytes: u32) -> U128 {
        U128(storage::job_storage_estimate(input_bytes))
    }

    /// NEAR to attach to `request` beyond the price cap.
    pub fn request_deposit(&self, input_bytes: u32) -> U128 {
        U128(self.request_storage_estimate(input_bytes))
    }

    /// Recomputes every asset's obligations from the records and compares them with the
    /// ledger: `held == escrow + credits + fees + storage`, and NEAR held <= the balance.
    /// Iterates all open jobs, requests, credits and storage balances: for tests and audits.
    pub fn funds(&self) -> FundsReport {
        self.funds_report()
    }
}

#[cfg(test)]
mod tests;
