//! Registry contract: attested TEE nodes, their operators' stake and the governance policy.
//!
//! A node is an enclave (Intel TDX confidential VM, optionally with NVIDIA GPUs in CC mode)
//! whose NEAR access key belongs to its operator's account. The enclave signs its own
//! registration: the attestation's `report_data` binds `env::signer_account_pk()`, so a bundle
//! copied by anyone else is refused. Status (active / inactive / expired) is computed from
//! timestamps at read time: no cron is needed.
//!
//! Deposits and gas, per method, are stated on each method below. "Enclave key" means the call
//! is signed by the node's attested NEAR key (a function-call access key of the operator
//! account, so no deposit can be attached); "operator, 1 yocto" means any full access key of
//! the operator account, confirming with exactly one yoctoNEAR.

mod access;
mod args;
mod attest;
pub mod details;
mod errors;
mod events;
mod governance;
mod nodes;
pub mod policy;
mod stake;
mod state;
pub mod status;
mod storage_keys;
mod upgrade;
pub mod views;

#[cfg(test)]
mod tests;

use enclave_cloud_common::interfaces::NodeView;
use enclave_cloud_common::{GpuInfo, Hash32, NodeId};
use near_sdk::json_types::U64;
use near_sdk::{AccountId, NearToken, PanicOnDefault, Promise, PublicKey, env, near};

pub use details::NodeUpdate;
pub use errors::RegistryError;
pub use policy::{GpuPolicy, PlatformMeasurements, Policy, TcbGrace};
pub use views::{ConfigView, NodeFilter, NodePage, OperatorView};

use state::StateV1;

/// The contract. Stored versioned: a new layout is a new variant (see `migrate`).
#[near(contract_state)]
#[derive(PanicOnDefault)]
pub enum Registry {
    V1(StateV1),
}

impl Registry {
    fn state(&self) -> &StateV1 {
        match self {
            Self::V1(s) => s,
        }
    }

    fn state_mut(&mut self) -> &mut StateV1 {
        match self {
            Self::V1(s) => s,
        }
    }
}

#[near]
impl Registry {
    /// Initialises the registry. `mainnet: true` makes the `dev` attestation kind impossible
    /// forever; `dev_ca_key` (localnet/testnet only) enables it with that development CA.
    /// `policy` defaults to [`Policy::default`] (empty allowlists: no TDX node can join until
    /// governance allows measurements).
    #[init]
    #[handle_result]
    pub fn new(
        owner: AccountId,
        mainnet: bool,
        dev_ca_key: Option<PublicKey>,
        policy: Option<Policy>,
    ) -> Result<Self, RegistryError> {
        let dev_mode_available = dev_ca_key.is_some();
        let mut policy = policy.unwrap_or_default();
        if let Some(key) = dev_ca_key {
            policy.dev_ca_key = Some(key);
            policy.dev_mode = true;
        }
        governance::check_dev_rules(mainnet, dev_mode_available, &policy)?;
        policy.validate()?;
        Ok(Self::V1(StateV1::new(
            owner,
            mainnet,
            dev_mode_available,
            policy,
        )))
    }

    /// Converts the stored state to the newest layout after a code upgrade. Private (the
    /// contract account itself, e.g. in the deploy transaction).
    #[init(ignore_state)]
    #[private]
    #[handle_result]
    pub fn migrate() -> Result<Self, RegistryError> {
        upgrade::migrate()
    }

    // ---------------------------------------------------------------- governance (owner)

    /// Owner, 1 yocto. Replaces the whole policy (read it with `get_policy`, change, send).
    /// Emits one `policy_updated` per changed field. Refused: enabling dev mode on a mainnet
    /// registry or on one not initialised with it.
    #[payable]
    #[handle_result]
    pub fn set_policy(&mut self, policy: Policy) -> Result<(), RegistryError> {
        governance::set_policy(self.state_mut(), policy)
    }

    /// Owner, 1 yocto. The only account allowed to `slash`.
    #[payable]
    #[handle_result]
    pub fn set_marketplace(&mut self, marketplace: AccountId) -> Result<(), RegistryError> {
        governance::set_marketplace(self.state_mut(), marketplace)
    }

    /// Owner, 1 yocto. Hands governance to another account (e.g. a DAO).
    #[payable]
    #[handle_result]
    pub fn set_owner(&mut self, owner: AccountId) -> Result<(), RegistryError> {
        governance::set_owner(self.state_mut(), owner)
    }

    // ---------------------------------------------------------------- stake

    /// Anyone, payable (> 0): adds the attached NEAR to the caller's stake, creating the
    /// operator record (its storage is paid from the stake). Returns the new total.
    #[payable]
    #[handle_result]
    pub fn deposit_stake(&mut self) -> Result<NearToken, RegistryError> {
        stake::deposit(self.state_mut())
    }

    /// Operator, 1 yocto. Moves `amount` from bonded stake to unbonding; everything unbonding
    /// unlocks `unbonding_delay_ns` after the latest request. The remaining free stake must
    /// still cover the operator's live nodes. Returns the unlock time (ns).
    #[payable]
    #[handle_result]
    pub fn request_unstake(&mut self, amount: NearToken) -> Result<U64, RegistryError> {
        stake::request_unstake(self.state_mut(), amount)
    }

    /// Operator, 1 yocto, after the unbonding delay: sends the unbonded stake to the caller.
    /// If the transfer fails, the callback puts it back (withdrawable again). Gas: 10 Tgas
    /// plus the 5 Tgas callback.
    #[payable]
    #[handle_result]
    pub fn withdraw(&mut self) -> Result<Promise, RegistryError> {
        stake::withdraw(self.state_mut())
    }

    /// Callback of `withdraw`.
    #[private]
    pub fn on_withdraw(&mut self, operator: AccountId, amount: NearToken) {
        stake::on_withdraw(
            self.state_mut(),
            operator,
            amount,
            near_sdk::is_promise_success(),
        );
    }

    /// Marketplace only, no deposit. Moves up to `amount` of the node operator's stake
    /// (bonded first, then unbonding; never the part paying for storage) to `beneficiary`;
    /// a failed transfer becomes a credit the beneficiary claims with `claim_credit`.
    /// Returns what was slashed. Works on deregistered nodes too. Gas: ~10 Tgas.
    #[handle_result]
    pub fn slash(
        &mut self,
        node_id: NodeId,
        amount: NearToken,
        beneficiary: AccountId,
    ) -> Result<NearToken, RegistryError> {
        stake::slash(self.state_mut(), node_id, amount, beneficiary)
    }

    /// Callback of slash payouts and credit claims: a failed transfer becomes a credit.
    #[private]
    pub fn on_payout(&mut self, beneficiary: AccountId, amount: NearToken) {
        stake::on_payout(
            self.state_mut(),
            beneficiary,
            amount,
            near_sdk::is_promise_success(),
        );
    }

    /// Anyone with a credit (a slash payout whose transfer failed), no deposit: sends it.
    #[handle_result]
    pub fn claim_credit(&mut self) -> Result<NearToken, RegistryError> {
        stake::claim_credit(self.state_mut())
    }

    // ---------------------------------------------------------------- nodes

    /// Enclave key of the operator's account, no deposit. Arguments
    /// `{"bundle": <attestation bundle JSON object (attestation crate README)>, "details":
    /// <NodeUpdate>?}`, read from the raw input so the bundle is parsed once (malformed JSON:
    /// `BadArguments`). The bundle must bind the transaction's signing key. The operator's free
    /// stake must cover one more node (storage is paid from it). Gas: ~21 Tgas for the real
    /// dstack TDX node (of which 16.5 the DCAP verification), +~85 Tgas per GPU with its chain
    /// cached.
    #[handle_result]
    pub fn register_node(&mut self) -> Result<NodeId, RegistryError> {
        let args: args::RegisterArgs = args::read()?;
        nodes::register(
            self.state_mut(),
            args.bundle,
            args.details.unwrap_or_default(),
        )
    }

    /// Enclave key, no deposit. Arguments `{"node_id", "bundle"}` (raw input, as
    /// `register_node`): a fresh bundle from the same enclave (same enclave key) renews the
    /// attestation lifetime; GPUs in the bundle are added or refreshed. Gas: ~21 Tgas (TDX).
    #[handle_result]
    pub fn reattest(&mut self) -> Result<(), RegistryError> {
        let args: args::ReattestArgs = args::read()?;
        nodes::reattest(self.state_mut(), args.node_id, args.bundle)
    }

    /// Enclave key, no deposit. Arguments `{"node_id", "evidence": {report, nonce,
    /// certificate_chain}}` (raw input) for one GPU whose nonce was never used. Gas: each chain
    /// certificate not yet cached costs about 80 Tgas (P-384 in wasm), the report signature
    /// another 80: cache the chain first with `cache_gpu_certificates` (then ~90 Tgas).
    #[handle_result]
    pub fn add_gpu(&mut self) -> Result<GpuInfo, RegistryError> {
        let args: args::AddGpuArgs = args::read()?;
        nodes::add_gpu(self.state_mut(), args.node_id, &args.evidence)
    }

    /// Enclave key, no deposit. Verifies up to `max_signatures` (default 2, at most 3; about
    /// 80 Tgas each) not yet cached certificates of a GPU's NVIDIA chain (PEM, leaf first),
    /// from the pinned root down, and caches them. Repeat until it returns nothing; then
    /// `add_gpu` for that GPU only verifies the report signature. Returns the new hashes.
    #[handle_result]
    pub fn cache_gpu_certificates(
        &mut self,
        node_id: NodeId,
        certificate_chain: String,
        max_signatures: Option<u8>,
    ) -> Result<Vec<Hash32>, RegistryError> {
        nodes::cache_gpu_certificates(
            self.state_mut(),
            node_id,
            certificate_chain,
            max_signatures.unwrap_or(2),
        )
    }

    /// Enclave key, no deposit. Liveness signal. Gas: ≤ 5 Tgas target.
    #[handle_result]
    pub fn heartbeat(&mut self, node_id: NodeId) -> Result<(), RegistryError> {
        nodes::heartbeat(self.state_mut(), node_id)
    }

    /// Enclave key with no deposit, or operator with 1 yocto. Endpoint, region, prices
    /// (per model per 1M input/output tokens) and capacity; absent fields are unchanged.
    #[payable]
    #[handle_result]
    pub fn update_node(
        &mut self,
        node_id: NodeId,
        update: NodeUpdate,
    ) -> Result<(), RegistryError> {
        nodes::update(self.state_mut(), node_id, update)
    }

    /// Enclave key with no deposit, or operator with 1 yocto. Removes the node (a tombstone
    /// stays so it can still be slashed during unbonding) and refunds its storage to the stake.
    #[payable]
    #[handle_result]
    pub fn deregister(&mut self, node_id: NodeId) -> Result<(), RegistryError> {
        nodes::deregister(self.state_mut(), node_id)
    }

    // ---------------------------------------------------------------- views

    /// A node with its current status, or `None`.
    pub fn get_node(&self, node_id: NodeId) -> Option<NodeView> {
        views::get_node(self.state(), node_id)
    }

    /// The live node whose enclave signs with `signer_key`.
    pub fn get_node_by_signer_key(&self, signer_key: PublicKey) -> Option<NodeView> {
        views::get_node_by_signer_key(self.state(), &signer_key)
    }

    /// Nodes by id from `from_index` (default 0) matching `filter`, at most `limit`
    /// (default 20, max 100) per page; continue from `next_index`.
    pub fn list_nodes(
        &self,
        filter: Option<NodeFilter>,
        from_index: Option<U64>,
        limit: Option<u32>,
    ) -> NodePage {
        views::list_nodes(
            self.state(),
            filter.unwrap_or_default(),
            from_index.map_or(0, |i| i.0),
            limit,
        )
    }

    pub fn get_operator(&self, account_id: AccountId) -> Option<OperatorView> {
        views::get_operator(self.state(), account_id)
    }

    pub fn get_policy(&self) -> Policy {
        views::policy(self.state())
    }

    pub fn get_config(&self) -> ConfigView {
        views::config(self.state())
    }

    /// Whether a GPU evidence nonce (64 hex) was already used.
    pub fn is_gpu_nonce_used(&self, nonce: Hash32) -> bool {
        self.state().used_gpu_nonces.contains(&nonce.0)
    }

    /// Whether an NVIDIA CA certificate (sha256 of DER) is in the verified cache.
    pub fn is_certificate_cached(&self, hash: Hash32) -> bool {
        self.state().cert_cache.contains(&hash.0)
    }

    /// A beneficiary's unclaimed slash payout.
    pub fn get_credit(&self, account_id: AccountId) -> NearToken {
        self.state()
            .credits
            .get(&account_id)
            .copied()
            .unwrap_or_default()
    }

    /// Block time the contract sees, ns (handy for clients computing expiry).
    pub fn now_ns(&self) -> U64 {
        U64(env::block_timestamp())
    }
}
