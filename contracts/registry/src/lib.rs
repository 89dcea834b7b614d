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
mod golden;
mod governance;
mod nodes;
mod pending;
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
use enclave_cloud_common::interfaces::registry::{
    AttestationProgress, GoldenKind, GoldenReference, PendingAttestationView,
};
use enclave_cloud_common::{Hash32, NodeId};
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
    /// Pins (or replaces) a golden measurement set (`ecloud attestation gpu-reference`'s JSON,
    /// from NVIDIA's signed RIMs) through the governance timelock. Once a chip has a pinned
    /// set, every GPU of that chip registered or re-attested must match the VBIOS set of its
    /// VBIOS version and the driver set of its driver version; a GPU without both is refused.
    /// At most 256 indexes of at most 8 alternatives each. ~5 Tgas.
    fn pin_golden_set(&mut self, set: GoldenReference);
    /// Unpins one set (through the timelock). A chip with no set left is not compared.
    fn unpin_golden_set(&mut self, kind: GoldenKind, product: String, version: String);
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
///
/// A node with GPUs (and, in protected-PCIe mode, NVSwitches) first calls
/// `begin_attestation` ([`PendingApi`]) for a challenge; every device's evidence must answer
/// `attestation::gpu_binding_nonce(enclave_key, near_key, challenge)` and the bundle carries
/// the challenge (`gpu_challenge`). The devices come in `register_node` / `reattest` and then
/// `add_gpu` calls, as many per call as fit in the 1 PGas per-call limit; the attestation
/// completes (topology check, the node takes its devices) with the last declared one. A node
/// without devices may register and re-attest without a challenge.
#[ext_contract(ext_registry_nodes)]
pub trait NodeApi {
    /// Enclave key of the operator's account, no deposit. Arguments
    /// `{"bundle": <attestation bundle JSON object (attestation crate README)>, "details":
    /// <NodeUpdate>?}`, read from the raw input so the bundle is parsed once (malformed JSON:
    /// `BadArguments`). The bundle must bind the transaction's signing key. The operator's free
    /// stake must cover one more node (storage is paid from it). With a pending registration
    /// of this key, `bundle.gpu_challenge` must be its challenge (`WrongChallenge`,
    /// `ChallengeExpired`) and the devices within the declared counts (`TooManyDevices`); the
    /// node is created with status `pending` until every declared device is verified. Devices
    /// or a challenge without a pending registration: `NoPendingAttestation`. Gas: ~21 Tgas for
    /// the real dstack TDX node (of which 16.5 the DCAP verification), ~5 for dev, plus each
    /// device (as `add_gpu`).
    fn register_node(&mut self) -> NodeId;
    /// Enclave key, no deposit. Arguments `{"node_id", "bundle"}` (raw input, as
    /// `register_node`): a fresh bundle from the same enclave (same enclave key). Without
    /// devices and without a pending re-attestation (only for a node that has no devices) it
    /// renews the attestation at once. Otherwise it needs the pending re-attestation of this
    /// node (`begin_attestation` with `node_id`): its challenge, the devices within the declared
    /// counts; the new attestation and device set replace the node's once every declared device
    /// is verified (until then the node keeps its current one). Gas as `register_node`.
    fn reattest(&mut self);
    /// Enclave key, no deposit. Arguments `{"node_id", "gpus": [evidence], "switches":
    /// [evidence]}` (raw input; evidence `{report, nonce, certificate_chain}`): more devices of
    /// the pending registration or re-attestation of `node_id` begun by this key, after its
    /// bundle was verified (`BundleNotVerified`). Each must answer the binding nonce (library
    /// error "GPU nonce not bound to this enclave"), be an allowed GPU model or an NVSwitch,
    /// and not be in another live or pending node (`GpuInUse`). Completes the attestation with
    /// the last declared device (then the topology check: `Topology`). Gas per device: one
    /// P-384 verification for the report plus one per chain certificate not yet cached (see the
    /// README's gas table).
    fn add_gpu(&mut self) -> AttestationProgress;
    /// Enclave key, no deposit. Verifies up to `max_signatures` (default 2, at most 3; about
    /// 30 Tgas each) not yet cached certificates of a GPU's NVIDIA chain (PEM, leaf first),
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

/// Registrations and re-attestations in progress (issue 16). Implemented in `pending`.
#[ext_contract(ext_registry_pending)]
pub trait PendingApi {
    /// Enclave key, no deposit. Begins a registration (`node_id` absent: the key must not
    /// belong to a live node, and the operator's free stake must cover one more node) or a
    /// re-attestation of `node_id` (signed by its enclave key), declaring the `gpus` (at most
    /// the policy's `max_gpus`) and `switches` (at most 8) it will present. Returns the pending
    /// entry with its challenge, from the block's random seed, the enclave key and the block
    /// height. The entry lives `challenge_lifetime_ns` (policy, default 1 h); its storage (and
    /// that of the devices it reserves) is paid from the operator's stake and refunded when it
    /// completes or expires. An expired entry of this key is removed first; a live one is
    /// `AttestationInProgress`. Gas: ~5 Tgas.
    fn begin_attestation(
        &mut self,
        gpus: u32,
        switches: u32,
        node_id: Option<NodeId>,
    ) -> PendingAttestationView;
    /// Anyone, no deposit. Removes the expired pending attestations of these enclave keys (at
    /// most 20; live or unknown ones are skipped): the devices they reserved are freed, a
    /// half-registered node is deregistered, and the storage is refunded to the operator's
    /// stake. Returns how many were removed. Gas: ~5 Tgas each.
    fn prune_pending(&mut self, signer_keys: Vec<PublicKey>) -> u32;
    /// View, free: the attestation in progress begun by `signer_key` (expired ones included
    /// until removed), e.g. for a worker resuming after an interruption.
    fn get_pending_attestation(&self, signer_key: PublicKey) -> Option<PendingAttestationView>;
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
    /// The golden measurement sets pinned for a chip (e.g. "GH100"); empty: not compared.
    fn golden_sets(&self, product: String) -> Vec<GoldenReference>;
    fn get_config(&self) -> ConfigView;
    /// Device ids of a node's NVSwitches (its GPUs are in the node view).
    fn get_node_switches(&self, node_id: NodeId) -> Vec<Hash32>;
    /// Whether an NVIDIA CA certificate (sha256 of DER) is in the verified cache.
    fn is_certificate_cached(&self, hash: Hash32) -> bool;
    /// Whether a GPU device id was revoked by governance (`revoke_gpus`).
    fn is_gpu_revoked(&self, device_id: Hash32) -> bool;
    /// A beneficiary's unclaimed slash payout.
    fn get_credit(&self, account_id: AccountId) -> NearToken;
    /// Block time the contract sees, ns (handy for clients computing expiry).
    fn now_ns(&self) -> U64;
}
