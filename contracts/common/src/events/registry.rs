//! Events of the registry contract (standard `ecloud_registry`).

use near_sdk::json_types::U64;
use near_sdk::{AccountId, NearToken, PublicKey, near};

use super::Nep297;
use crate::{
    AttestationKind, GpuInfo, Hash32, Measurements, ModelPrice, NodeId, NodeStatus, TcbStatus,
};

#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum RegistryEvent {
    /// An operator added stake.
    StakeDeposited {
        operator: AccountId,
        amount: NearToken,
        total: NearToken,
    },
    /// An operator asked to withdraw stake; it unlocks after the unbonding delay.
    UnstakeRequested {
        operator: AccountId,
        amount: NearToken,
        unlocks_at_ns: U64,
    },
    /// Unbonded stake left the contract.
    StakeWithdrawn {
        operator: AccountId,
        amount: NearToken,
    },
    /// A node passed attestation and joined.
    NodeRegistered {
        node_id: NodeId,
        operator: AccountId,
        /// The enclave's NEAR access key that signed the registration.
        signer_key: PublicKey,
        /// The enclave's x25519 key, hex: users encrypt job inputs to it.
        encryption_key: String,
        kind: AttestationKind,
        tcb_status: TcbStatus,
        measurements: Measurements,
        expires_at_ns: U64,
    },
    /// A node renewed its attestation.
    NodeReattested {
        node_id: NodeId,
        tcb_status: TcbStatus,
        expires_at_ns: U64,
    },
    /// A GPU's evidence verified and was attached to a node.
    GpuAdded { node_id: NodeId, gpu: GpuInfo },
    /// Commercial details changed.
    NodeUpdated {
        node_id: NodeId,
        endpoint: Option<String>,
        region: Option<String>,
        prices: Vec<ModelPrice>,
        capacity: u32,
    },
    /// Liveness signal.
    NodeHeartbeat { node_id: NodeId, at_ns: U64 },
    /// Status transition (inactive, expired, active again, deregistered).
    NodeStatusChanged { node_id: NodeId, status: NodeStatus },
    /// Stake taken from a node's operator for a missed deadline.
    ///
    /// A slash touches only the node and its operator (its gas does not grow with the
    /// operator's node count), so it announces the operator's new standing once, here,
    /// instead of a `NodeStatusChanged` per node: when `under_staked`, every node of the
    /// operator that was active is inactive now, until the operator stakes again (a deposit
    /// that makes them active again emits `NodeStatusChanged` per node). Events of version
    /// 1.0.0 lack `stake` and `under_staked` (those registries emitted the per-node events).
    NodeSlashed {
        node_id: NodeId,
        operator: AccountId,
        amount: NearToken,
        beneficiary: AccountId,
        /// The operator's bonded stake after the slash (as `StakeDeposited::total`, the part
        /// that pays for storage included); what was slashed beyond the bonded stake came
        /// from unbonding stake.
        #[serde(default)]
        stake: Option<NearToken>,
        /// The operator's free stake no longer covers its live nodes.
        #[serde(default)]
        under_staked: bool,
    },
    /// Governance changed a policy; `field` names what changed.
    PolicyUpdated { field: String, value: String },
    /// A verified GPU intermediate certificate was cached.
    CertificateCached { hash: Hash32 },
}

impl Nep297 for RegistryEvent {
    const STANDARD: &'static str = "ecloud_registry";
    /// 1.1.0: `node_slashed` carries `stake` and `under_staked` and replaces the per-node
    /// `node_status_changed` events of a slash.
    const VERSION: &'static str = "1.1.0";
    const OLDER_VERSIONS: &'static [&'static str] = &["1.0.0"];
}
