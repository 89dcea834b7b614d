//! Registry contract: attested TEE nodes, their operators' stake and the governance policy.
//!
//! A node is an enclave (Intel TDX confidential VM, optionally with NVIDIA GPUs in CC mode)
//! whose NEAR access key belongs to its operator's account. The enclave signs its own
//! registration: the attestation's `report_data` binds `env::signer_account_pk()`, so a bundle
//! copied by anyone else is refused. Status (active / inactive / expired) is computed from
//! timestamps at read time: no cron is needed.
//!
//! Every public method is declared in one of the traits below, which state who may call it,
//! its deposit and its gas; the implementations (`#[near] impl Trait for Registry`) live in the
//! module of their concern, private callbacks beside the call they complete. Errors are
//! [`RegistryError`]s, raised with [`enclave_cloud_common::OrPanic`]. "Enclave key" means the
//! call is signed by the node's attested NEAR key (a function-call access key of the operator
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
use near_sdk::{AccountId, NearToken, Promise, PublicKey, ext_contract};

pub use details::NodeUpdate;
pub use errors::RegistryError;
pub use policy::{GpuPolicy, PlatformMeasurements, Policy, TcbGrace};
pub use state::{Registry, RegistryExt, STATE_VERSION};
pub use views::{ConfigView, NodeFilter, NodePage, OperatorView};

/// Governance: the owner (later a DAO account), 1 yocto, ~5 Tgas. Implemented in
/// `governance`. `set_policy`, `set_marketplace` and `set_owner` are governance proposals,
/// applied after the delay (at once while it is 0) by `apply_change`; the timelock methods are
/// `enclave_cloud_common::governed_methods!`, documented there.
#[ext_contract(ext_registry_governance)]
pub trait GovernanceApi {
    /// Replaces the whole policy (read it with `get_policy`, change, send). Emits one
    /// `policy_updated` per changed field. Refused: enabling dev mode on a mainnet registry or
    /// on one not initialised with it.
    fn set_policy(&mut self, policy: Policy);
    /// The only account allowed to `slash`.
    fn set_marketplace(&mut self, marketplace: AccountId);
    /// Hands governance to another account (e.g. a DAO).
    fn set_owner(&mut self, owner: AccountId);
    /// Drops certificates (sha256 of their DER) from the cache of verified NVIDIA intermediates,
    /// e.g. after NVIDIA revoked one: chains through them are verified in full again (and a
    /// revoked one then fails). Returns how many were cached. Emits one `policy_updated`
    /// (`cert_cache.removed`). The operators who paid for the entries are not refunded. At most
    /// 100 per call; ~1 Tgas each.
    fn forget_certificates(&mut self, hashes: Vec<Hash32>) -> u32;
    /// Revokes GPU devices (their `device_id`, sha256 of the leaf certificate), e.g. one whose
    /// key leaked: a revoked device is removed from the node holding it (which may then go
    /// inactive below `gpu.min_gpus`) and can never be added again. Applies at once, like
    /// `forget_certificates` (it only makes verification stricter). Returns how many were
    /// attached to a node. Emits one `policy_updated` (`gpu.revoked`) and the status changes.
    /// At most 100 per call; ~2 Tgas each.
    fn revoke_gpus(&mut self, device_ids: Vec<Hash32>) -> u32;
}

/// Operators' stake, slashing and slash credits. Implemented in `stake`.
#[ext_contract(ext_registry_stake)]
pub trait StakeApi {
    /// Anyone, payable (> 0): adds the attached NEAR to the caller's stake, creating the
    /// operator record (its storage is paid from the stake). Returns the new total. ~5 Tgas.
    fn deposit_stake(&mut self) -> NearToken;
    /// Operator, 1 yocto. Moves `amount` from bonded stake to unbonding; everything unbonding
    /// unlocks `unbonding_delay_ns` after the latest request. The remaining free stake must
    /// still cover the operator's live nodes. Returns the unlock time (ns). ~5 Tgas.
    fn request_unstake(&mut self, amount: NearToken) -> U64;
    /// Operator, 1 yocto, after the unbonding delay: sends the unbonded stake to the caller.
    /// If the transfer fails, the callback puts it back (withdrawable again). Gas: 10 Tgas
    /// plus the 5 Tgas callback.
    fn withdraw(&mut self) -> Promise;
    /// Marketplace only, no deposit. Moves up to `amount` of the node operator's stake
    /// (bonded first, then unbonding; never the part paying for storage) to `beneficiary`;
    /// a failed transfer becomes a credit the beneficiary claims with `claim_credit`.
    /// Returns what was slashed. Works on deregistered nodes too. Touches only the node and
    /// its operator and logs one `node_slashed` (whose `under_staked` stands for all of the
    /// operator's nodes turning inactive), so its gas does not grow with the operator's node
    /// count: ~2 Tgas plus the 5 Tgas payout callback (the marketplace attaches 15).
    fn slash(&mut self, node_id: NodeId, amount: NearToken, beneficiary: AccountId) -> NearToken;
    /// Anyone with a credit (a slash payout whose transfer failed), no deposit: sends it.
    /// Gas: 10 Tgas plus the 5 Tgas callback.
    fn claim_credit(&mut self) -> NearToken;
}

/// Nodes: registration, attestation, GPUs, liveness. Implemented in `nodes`.
#[ext_contract(ext_registry_nodes)]
pub trait NodeApi {
    /// Enclave key of the operator's account, no deposit. Arguments
    /// `{"bundle": <attestation bundle JSON object (attestation crate README)>, "details":
    /// <NodeUpdate>?}`, read from the raw input so the bundle is parsed once (malformed JSON:
    /// `BadArguments`). The bundle must bind the transaction's signing key. The operator's free
    /// stake must cover one more node (storage is paid from it). Gas: ~21 Tgas for the real
    /// dstack TDX node (of which 16.5 the DCAP verification), +~85 Tgas per GPU with its chain
    /// cached.
    fn register_node(&mut self) -> NodeId;
    /// Enclave key, no deposit. Arguments `{"node_id", "bundle"}` (raw input, as
    /// `register_node`): a fresh bundle from the same enclave (same enclave key) renews the
    /// attestation lifetime; GPUs in the bundle are added or refreshed. Gas: ~21 Tgas (TDX).
    fn reattest(&mut self);
    /// Enclave key, no deposit. Arguments `{"node_id", "evidence": {report, nonce,
    /// certificate_chain}}` (raw input) for one GPU whose nonce was never used. Gas: each chain
    /// certificate not yet cached costs about 80 Tgas (P-384 in wasm), the report signature
    /// another 80: cache the chain first with `cache_gpu_certificates` (then ~90 Tgas).
    fn add_gpu(&mut self) -> GpuInfo;
    /// Enclave key, no deposit. Verifies up to `max_signatures` (default 2, at most 3; about
    /// 80 Tgas each) not yet cached certificates of a GPU's NVIDIA chain (PEM, leaf first),
    /// from the pinned root down, and caches them. Repeat until it returns nothing; then
    /// `add_gpu` for that GPU only verifies the report signature. Returns the new hashes.
    fn cache_gpu_certificates(
        &mut self,
        node_id: NodeId,
        certificate_chain: String,
        max_signatures: Option<u8>,
    ) -> Vec<Hash32>;
    /// Enclave key, no deposit. Liveness signal. Gas: ≤ 5 Tgas target.
    fn heartbeat(&mut self, node_id: NodeId);
    /// Enclave key with no deposit, or operator with 1 yocto. Endpoint, region, prices
    /// (per model per 1M input/output tokens) and capacity; absent fields are unchanged.
    /// Gas: ~5 Tgas.
    fn update_node(&mut self, node_id: NodeId, update: NodeUpdate);
    /// Enclave key with no deposit, or operator with 1 yocto. Removes the node (a tombstone
    /// stays so it can still be slashed during unbonding) and refunds its storage to the stake.
    /// Gas: ~5 Tgas.
    fn deregister(&mut self, node_id: NodeId);
}

/// Read-only views: anyone, free (view calls). Implemented in `views`.
#[ext_contract(ext_registry_views)]
pub trait RegistryViewApi {
    /// A node with its current status, or `None`.
    fn get_node(&self, node_id: NodeId) -> Option<NodeView>;
    /// The live node whose enclave signs with `signer_key`.
    fn get_node_by_signer_key(&self, signer_key: PublicKey) -> Option<NodeView>;
    /// Nodes by id from `from_index` (default 0) matching `filter`, at most `limit`
    /// (default 20, max 100) per page; continue from `next_index`.
    fn list_nodes(
        &self,
        filter: Option<NodeFilter>,
        from_index: Option<U64>,
        limit: Option<u32>,
    ) -> NodePage;
    fn get_operator(&self, account_id: AccountId) -> Option<OperatorView>;
    fn get_policy(&self) -> Policy;
    fn get_config(&self) -> ConfigView;
    /// Whether a GPU evidence nonce (64 hex) was already used.
    fn is_gpu_nonce_used(&self, nonce: Hash32) -> bool;
    /// Whether an NVIDIA CA certificate (sha256 of DER) is in the verified cache.
    fn is_certificate_cached(&self, hash: Hash32) -> bool;
    /// Whether a GPU device id was revoked by governance (`revoke_gpus`).
    fn is_gpu_revoked(&self, device_id: Hash32) -> bool;
    /// A beneficiary's unclaimed slash payout.
    fn get_credit(&self, account_id: AccountId) -> NearToken;
    /// Block time the contract sees, ns (handy for clients computing expiry).
    fn now_ns(&self) -> U64;
}
