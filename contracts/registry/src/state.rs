//! The contract's persistent state. Versioned as every enclave-cloud contract
//! (`enclave_cloud_common::state_version`): the root starts with its layout version, and
//! `upgrade` converts older layouts.

use enclave_cloud_common::interfaces::registry::AttestationPurpose;
use enclave_cloud_common::{
    AttestationKind, GpuInfo, Hash32, Measurements, ModelPrice, NodeId, TcbStatus,
};
use near_sdk::store::{LookupMap, LookupSet};
use near_sdk::{AccountId, NearToken, PanicOnDefault, PublicKey, env, near};

use crate::errors::{RegistryError, Result};
use crate::policy::Policy;
use crate::storage_keys::StorageKey;

/// An operator: the NEAR account that stakes for its nodes and whose access keys the
/// enclaves are.
#[near(serializers = [borsh])]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Operator {
    /// Bonded stake (slashable, counts for eligibility).
    pub stake: NearToken,
    /// Stake asked back, still slashable until it unlocks.
    pub unbonding: NearToken,
    pub unlocks_at_ns: u64,
    /// A withdrawal transfer is in flight (its callback has not run yet).
    pub withdrawing: bool,
    /// Bytes of contract storage this operator's nodes occupy; paid from the stake.
    pub storage_bytes: u64,
    /// Live (not deregistered) nodes.
    pub nodes: Vec<NodeId>,
}

impl Operator {
    /// Stake that backs storage.
    pub fn storage_cost(&self) -> NearToken {
        env::storage_byte_cost().saturating_mul(u128::from(self.storage_bytes))
    }

    /// Bonded stake after paying for storage: what counts towards the per-node minimum.
    pub fn free_stake(&self) -> NearToken {
        self.stake.saturating_sub(self.storage_cost())
    }

    /// Free stake needed for `nodes` live nodes.
    pub fn required_stake(policy: &Policy, nodes: usize) -> NearToken {
        policy.min_stake.saturating_mul(nodes as u128)
    }

    /// Whether the stake covers the operator's live nodes (slashing can break this; then the
    /// operator's nodes are inactive until it stakes again).
    pub fn is_sufficiently_staked(&self, policy: &Policy) -> bool {
        self.free_stake() >= Self::required_stake(policy, self.nodes.len())
    }
}

/// A registered node.
#[near(serializers = [borsh])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub operator: AccountId,
    pub kind: AttestationKind,
    pub signer_key: PublicKey,
    /// 32-byte enclave key bound by the quote (x25519 for our worker).
    pub encryption_key: [u8; 32],
    pub tcb_status: TcbStatus,
    pub measurements: Measurements,
    pub image_digest: Option<Hash32>,
    pub gpus: Vec<GpuInfo>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub prices: Vec<ModelPrice>,
    pub capacity: u32,
    pub registered_at_ns: u64,
    pub attested_at_ns: u64,
    pub attestation_expires_at_ns: u64,
    pub last_heartbeat_ns: u64,
    pub deregistered: bool,
}

/// An NVSwitch of a node (protected-PCIe HGX systems attest their switches with the GPUs).
#[near(serializers = [borsh])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchInfo {
    /// Chip, e.g. "LS10".
    pub model: String,
    /// SHA-256 of the switch's leaf certificate.
    pub device_id: Hash32,
    /// The switch's PDI (platform device identity), hex, as the GPUs' topology lists it.
    pub pdi: String,
    /// The switch reports protected-PCIe mode.
    pub protected_pcie: bool,
    /// The PDIs (hex) of the GPUs the switch connects.
    pub gpu_pdis: Vec<String>,
}

/// A verified GPU as a pending attestation keeps it until the topology check at completion.
#[near(serializers = [borsh])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingGpu {
    pub info: GpuInfo,
    /// The GPU runs in protected-PCIe mode (multi-GPU CC behind NVSwitches).
    pub protected_pcie: bool,
    /// The switch PDIs (hex) the GPU reports.
    pub switch_pdis: Vec<String>,
}

/// What a verified re-attestation bundle will set on the node once every device is verified.
#[near(serializers = [borsh])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAttestation {
    pub kind: AttestationKind,
    pub tcb_status: TcbStatus,
    pub measurements: Measurements,
    pub image_digest: Option<Hash32>,
    pub attested_at_ns: u64,
    pub expires_at_ns: u64,
}

/// A registration or re-attestation in progress, keyed by the enclave key that began it
/// (`begin_attestation`). Its storage is paid from the operator's stake until it completes or
/// expires.
#[near(serializers = [borsh])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAttestation {
    pub operator: AccountId,
    pub purpose: AttestationPurpose,
    /// Random: every device nonce is bound to it (`attestation::gpu_binding_nonce`).
    pub challenge: [u8; 32],
    pub gpus_declared: u32,
    pub switches_declared: u32,
    pub expires_at_ns: u64,
    /// The node created by `register_node` (registration) or being re-attested.
    pub node_id: Option<NodeId>,
    /// The enclave's x25519 key from the verified bundle (devices' nonces bind it);
    /// `None` until `register_node` / `reattest` verified the bundle.
    pub encryption_key: Option<[u8; 32]>,
    /// Re-attestation only: applied to the node at completion.
    pub attestation: Option<NewAttestation>,
    pub gpus: Vec<PendingGpu>,
    pub switches: Vec<SwitchInfo>,
}

impl PendingAttestation {
    pub fn is_expired(&self, now_ns: u64) -> bool {
        now_ns >= self.expires_at_ns
    }

    /// Every declared device is verified.
    pub fn is_complete(&self) -> bool {
        self.gpus.len() == self.gpus_declared as usize
            && self.switches.len() == self.switches_declared as usize
    }

    /// A registration whose node exists (status `pending` until complete).
    pub fn registering(&self, node_id: NodeId) -> bool {
        self.purpose == AttestationPurpose::Register && self.node_id == Some(node_id)
    }
}

/// Layout version of [`Registry`]'s state (see `upgrade`).
pub const STATE_VERSION: u16 = 3;

/// The contract.
#[near(contract_state)]
#[derive(PanicOnDefault)]
pub struct Registry {
    /// First field on purpose: `migrate` reads it before deciding how to decode the rest.
    pub state_version: u16,
    pub owner: AccountId,
    /// Set at init, never changed: a mainnet registry can never accept `dev` attestations.
    pub mainnet: bool,
    /// The registry was initialised with dev mode: governance may switch it on and off.
    pub dev_mode_available: bool,
    /// The only account allowed to `slash`.
    pub marketplace: Option<AccountId>,
    pub policy: Policy,
    pub operators: LookupMap<AccountId, Operator>,
    pub nodes: LookupMap<NodeId, Node>,
    pub next_node_id: NodeId,
    /// Enclave signing key -> live node.
    pub node_by_signer_key: LookupMap<PublicKey, NodeId>,
    /// Device id (sha256 of its leaf certificate; GPUs and NVSwitches) -> the live node it is
    /// attached to or reserved for by a pending attestation: never two nodes.
    pub gpu_owner: LookupMap<Hash32, NodeId>,
    /// NVIDIA intermediate certificates already verified to the root (sha256 of DER).
    pub cert_cache: LookupSet<[u8; 32]>,
    /// Slashed amounts whose transfer failed, claimable by the beneficiary.
    pub credits: LookupMap<AccountId, NearToken>,
    /// Registrations and re-attestations in progress, by the enclave key that began them.
    pub pending: LookupMap<PublicKey, PendingAttestation>,
    /// The NVSwitches of each node that has some.
    pub node_switches: LookupMap<NodeId, Vec<SwitchInfo>>,
}

impl Registry {
    pub fn with_policy(
        owner: AccountId,
        mainnet: bool,
        dev_mode_available: bool,
        policy: Policy,
    ) -> Self {
        Self {
            state_version: STATE_VERSION,
            owner,
            mainnet,
            dev_mode_available,
            marketplace: None,
            policy,
            operators: LookupMap::new(StorageKey::Operators),
            nodes: LookupMap::new(StorageKey::Nodes),
            next_node_id: NodeId(0),
            node_by_signer_key: LookupMap::new(StorageKey::NodeBySignerKey),
            gpu_owner: LookupMap::new(StorageKey::GpuOwner),
            cert_cache: LookupSet::new(StorageKey::CertCache),
            credits: LookupMap::new(StorageKey::Credits),
            pending: LookupMap::new(StorageKey::PendingAttestations),
            node_switches: LookupMap::new(StorageKey::NodeSwitches),
        }
    }

    /// Whether `node` (id `id`) is still in its registration (status `pending`).
    pub fn is_registering(&self, id: NodeId, node: &Node) -> bool {
        self.pending
            .get(&node.signer_key)
            .is_some_and(|p| p.registering(id))
    }

    pub fn node(&self, id: NodeId) -> Result<&Node> {
        self.nodes.get(&id).ok_or(RegistryError::UnknownNode(id))
    }

    pub fn operator(&self, account: &AccountId) -> Result<&Operator> {
        self.operators
            .get(account)
            .ok_or_else(|| RegistryError::UnknownOperator(account.clone()))
    }

    pub fn operator_mut(&mut self, account: &AccountId) -> Result<&mut Operator> {
        self.operators
            .get_mut(account)
            .ok_or_else(|| RegistryError::UnknownOperator(account.clone()))
    }

    /// Writes out every buffered collection, so `env::storage_usage()` counts every pending
    /// write. (`cert_cache` is a `store::LookupSet`, which writes through.)
    fn flush_collections(&mut self) {
        self.operators.flush();
        self.nodes.flush();
        self.node_by_signer_key.flush();
        self.gpu_owner.flush();
        self.credits.flush();
        self.pending.flush();
        self.node_switches.flush();
    }

    /// Starts a storage measurement for [`Self::settle_storage`]: the usage with every earlier
    /// write of the call flushed, so the operator is charged for its own writes only.
    pub fn storage_mark(&mut self) -> u64 {
        self.flush_collections();
        env::storage_usage()
    }

    /// Charges `operator` for the storage growth since `usage_before` (a [`Self::storage_mark`];
    /// or refunds a shrink): whoever grows state pays for it, out of their stake. The one path
    /// by which the registry charges storage.
    pub fn settle_storage(&mut self, operator: &AccountId, usage_before: u64) -> Result<()> {
        self.flush_collections();
        let usage_after = env::storage_usage();
        let op = self.operator_mut(operator)?;
        op.storage_bytes = if usage_after >= usage_before {
            op.storage_bytes.saturating_add(usage_after - usage_before)
        } else {
            op.storage_bytes.saturating_sub(usage_before - usage_after)
        };
        if op.storage_cost() > op.stake {
            return Err(RegistryError::InsufficientStake {
                operator: operator.clone(),
                required: op.storage_cost(),
                available: op.stake,
                nodes: op.nodes.len() as u32,
            });
        }
        Ok(())
    }
}
