//! The registry's interface types: its arguments (`Policy`, `NodeUpdate`, `NodeFilter`) and
//! views (`NodePage`, `OperatorView`, `ConfigView`; `NodeView` is in [`super`], shared with
//! the marketplace). The contract and its clients import these very types.

use near_sdk::json_types::U64;
use near_sdk::{AccountId, NearToken, PublicKey, near};

use super::NodeView;
use crate::{Hash32, Measurements, ModelId, ModelPrice, NodeId, NodeStatus, TcbStatus};

pub const NANOS_PER_SEC: u64 = 1_000_000_000;
const DAY_NS: u64 = 24 * 3600 * NANOS_PER_SEC;
/// How long a registration or re-attestation challenge stays open by default.
pub const DEFAULT_CHALLENGE_LIFETIME_NS: u64 = 3600 * NANOS_PER_SEC;

fn default_challenge_lifetime() -> U64 {
    U64(DEFAULT_CHALLENGE_LIFETIME_NS)
}

// ---------------------------------------------------------------- policy (governance)

/// One allowed TDX platform: the firmware (MRTD) and boot chain (RTMR0-2) of a dstack OS image.
/// Hex, 96 lowercase characters each (48-byte registers).
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformMeasurements {
    pub mrtd: String,
    pub rtmr0: String,
    pub rtmr1: String,
    pub rtmr2: String,
}

/// A TCB status below `UpToDate` that is tolerated until a deadline (Intel published a fix;
/// operators get time to patch).
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbGrace {
    /// `OutOfDate` or `SWHardeningNeeded`.
    pub status: TcbStatus,
    /// Inclusive deadline, unix seconds.
    pub until: U64,
}

/// What a node's GPUs must be.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuPolicy {
    /// A node is not active (takes no jobs) until this many GPUs are attested.
    pub min_gpus: u32,
    /// Upper bound on GPUs per node (keeps a node's record bounded).
    pub max_gpus: u32,
    /// GPU chips accepted as the evidence names them (e.g. "GH100"); empty: none (never
    /// "any": a new chip is admitted by governance). NVSwitches and other non-GPU devices are
    /// refused whatever this lists (`attestation::nvidia::device_class`).
    pub allowed_models: Vec<String>,
    /// Accept GPUs of a TDX bundle that the attested VM verified itself and measured into
    /// RTMR3 (`nvidia-gpu-evidence` event): no chain or signature work on chain. Trusts the
    /// allowlisted worker image to verify GPUs correctly.
    pub allow_measured_in_rtmr3: bool,
}

impl GpuPolicy {
    /// The chips a new registry accepts: Hopper (H100/H200) and Blackwell (B100/B200).
    pub const DEFAULT_MODELS: &'static [&'static str] = &["GH100", "GB100"];
}

#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Allowed TDX platforms; a TDX node must match one. Empty: no TDX node can join.
    pub platforms: Vec<PlatformMeasurements>,
    /// Allowed dstack app compose hashes. Empty: no TDX node can join.
    pub compose_hashes: Vec<Hash32>,
    /// Allowed container image digests, read from the RTMR3 event named `image_digest_event`.
    /// Empty: not checked (the compose hash already pins the images by digest).
    pub image_digests: Vec<Hash32>,
    pub image_digest_event: String,
    /// Tolerated TCB statuses below `UpToDate`, each until a deadline.
    pub tcb_grace: Vec<TcbGrace>,
    /// How long a verified attestation stays valid.
    pub attestation_lifetime_ns: U64,
    /// Nodes heartbeat this often...
    pub heartbeat_interval_ns: U64,
    /// ...and become inactive after missing this many intervals.
    pub missed_heartbeats: u32,
    /// Stake an operator needs per live node.
    pub min_stake: NearToken,
    /// Delay between `request_unstake` and `withdraw`. Must exceed the longest job deadline so
    /// an operator cannot leave before a missed deadline is slashed.
    pub unbonding_delay_ns: U64,
    pub gpu: GpuPolicy,
    /// Accept the `dev` attestation kind (never on a mainnet-initialised registry).
    pub dev_mode: bool,
    /// Development CA whose ed25519 signature makes a `dev` attestation.
    pub dev_ca_key: Option<PublicKey>,
    /// How long a challenge handed out by `begin_attestation` stays valid: the registration or
    /// re-attestation (every declared GPU and switch verified) must complete before, or its
    /// pending entry is removed (storage refunded; a half-registered node is deregistered).
    #[serde(default = "default_challenge_lifetime")]
    pub challenge_lifetime_ns: U64,
}

/// A critical setting of the registry: proposed, announced, applied after the delay
/// (`crate::governance`).
/// Which firmware a golden measurement set describes.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GoldenKind {
    Vbios,
    Driver,
}

/// One index of a golden set: the RIM's index (SPDM block `index + 1`), whether it is
/// compared, and the accepted SHA-384 values (lowercase hex).
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenIndex {
    pub index: u16,
    pub name: String,
    pub active: bool,
    pub alternatives: Vec<String>,
}

/// Golden GPU measurements of one VBIOS or driver version of one chip, as
/// `ecloud attestation gpu-reference` prints them from NVIDIA's signed RIMs (the same JSON).
/// Pinned by governance (`pin_golden_set`); once a chip has any pinned set, each of its GPUs
/// must match the pinned VBIOS set of its VBIOS version and the driver set of its driver
/// version (`attestation::nvidia::check_golden_measurements`).
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenReference {
    pub kind: GoldenKind,
    pub product: String,
    pub version: String,
    pub tag_id: String,
    pub measurements: Vec<GoldenIndex>,
}

#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum RegistrySetting {
    /// Replaces the whole policy.
    SetPolicy(Box<Policy>),
    /// The only account allowed to slash.
    SetMarketplace { marketplace: AccountId },
    /// Hands governance to another account (e.g. a DAO).
    SetOwner { owner: AccountId },
    /// Pins (or replaces) the golden set of its (kind, product, version).
    PinGoldenSet(Box<GoldenReference>),
    /// Unpins the golden set of (kind, product, version).
    UnpinGoldenSet {
        kind: GoldenKind,
        product: String,
        version: String,
    },
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            platforms: Vec::new(),
            compose_hashes: Vec::new(),
            image_digests: Vec::new(),
            image_digest_event: "image-digest".to_owned(),
            tcb_grace: Vec::new(),
            attestation_lifetime_ns: U64(7 * DAY_NS),
            heartbeat_interval_ns: U64(5 * 60 * NANOS_PER_SEC),
            missed_heartbeats: 3,
            min_stake: NearToken::from_near(100),
            unbonding_delay_ns: U64(7 * DAY_NS),
            gpu: GpuPolicy {
                min_gpus: 0,
                max_gpus: 8,
                allowed_models: GpuPolicy::DEFAULT_MODELS
                    .iter()
                    .map(|m| (*m).to_owned())
                    .collect(),
                allow_measured_in_rtmr3: false,
            },
            dev_mode: false,
            dev_ca_key: None,
            challenge_lifetime_ns: default_challenge_lifetime(),
        }
    }
}

impl Policy {
    /// Whether the firmware and boot chain of `m` are an allowed platform.
    pub fn allows_platform(&self, m: &Measurements) -> bool {
        self.platforms.iter().any(|p| {
            p.mrtd == m.mrtd && p.rtmr0 == m.rtmr0 && p.rtmr1 == m.rtmr1 && p.rtmr2 == m.rtmr2
        })
    }

    /// A node without a heartbeat for this long is inactive.
    pub fn heartbeat_timeout_ns(&self) -> u64 {
        self.heartbeat_interval_ns
            .0
            .saturating_mul(u64::from(self.missed_heartbeats))
    }
}

// ---------------------------------------------------------------- nodes

/// Changes to a node's commercial details; absent fields stay as they are, an empty
/// `endpoint` or `region` clears it.
#[near(serializers = [json])]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeUpdate {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub prices: Option<Vec<ModelPrice>>,
    #[serde(default)]
    pub capacity: Option<u32>,
}

// ---------------------------------------------------------------- views

/// Which nodes `list_nodes` returns; every given criterion must hold.
#[near(serializers = [json])]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFilter {
    /// Nodes that price this model.
    pub model: Option<ModelId>,
    pub region: Option<String>,
    pub status: Option<NodeStatus>,
    /// Nodes with at least one GPU of this model (e.g. "GH100").
    pub gpu_model: Option<String>,
    pub min_gpus: Option<u32>,
    pub operator: Option<AccountId>,
}

#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq)]
pub struct NodePage {
    pub nodes: Vec<NodeView>,
    /// Where the next page starts; `None` when every node has been examined.
    pub next_index: Option<U64>,
}

#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorView {
    pub account_id: AccountId,
    pub stake: NearToken,
    /// The part of the stake that pays for the operator's storage.
    pub storage_cost: NearToken,
    /// Free stake needed for the live nodes.
    pub required_stake: NearToken,
    pub unbonding: NearToken,
    pub unlocks_at_ns: U64,
    pub withdrawing: bool,
    pub nodes: Vec<NodeId>,
}

/// What a pending attestation is for.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AttestationPurpose {
    /// A new node: created (status `pending`) by `register_node`, active once complete.
    Register,
    /// A fresh attestation of this live node: applied (new expiry, the new device set) once
    /// complete; until then the node keeps its current attestation.
    Reattest { node_id: NodeId },
}

/// A registration or re-attestation in progress (`begin_attestation`,
/// `get_pending_attestation`): the challenge every device nonce is bound to and what is
/// verified so far.
#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAttestationView {
    /// The enclave key that began it (and signs every call of it).
    pub signer_key: PublicKey,
    pub operator: AccountId,
    pub purpose: AttestationPurpose,
    /// The bundle's `gpu_challenge` must be this; every device nonce is
    /// `gpu_binding_nonce(enclave_key, near_key, challenge)`.
    pub challenge: Hash32,
    pub gpus_declared: u32,
    pub switches_declared: u32,
    /// Device ids (sha256 of the leaf certificate) verified so far.
    pub gpus_verified: Vec<Hash32>,
    pub switches_verified: Vec<Hash32>,
    /// The node `register_node` created, or the node being re-attested; `None` before the
    /// bundle of a registration is verified.
    pub node_id: Option<NodeId>,
    /// Whether `register_node` / `reattest` already verified the bundle: from then on only
    /// `add_gpu` calls remain. The entry's storage (and the devices it reserves) is paid from
    /// the operator's stake until it completes or expires.
    pub bundle_verified: bool,
    pub expires_at_ns: U64,
}

/// What `add_gpu` leaves: how many devices are verified, and whether that completed the
/// attestation (the node then has its devices; a registered node leaves `pending`).
#[near(serializers = [json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttestationProgress {
    pub gpus_verified: u32,
    pub gpus_declared: u32,
    pub switches_verified: u32,
    pub switches_declared: u32,
    pub complete: bool,
}

#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigView {
    pub owner: AccountId,
    pub marketplace: Option<AccountId>,
    pub mainnet: bool,
    pub dev_mode_available: bool,
    pub next_node_id: NodeId,
    pub version: String,
}

/// The registry's methods as clients call them (name, gas to attach, deposit rule) and their
/// JSON arguments. Gas figures are what a client attaches: the contract's documented budget
/// plus room (the unused part is refunded).
pub mod methods {
    use near_sdk::{AccountId, PublicKey, near};

    use super::{NodeFilter, NodeUpdate};
    use crate::NodeId;
    use crate::interfaces::method::Method;

    /// Dev bundle ~5 Tgas, TDX ~28, plus each device's verification: clients attach what the
    /// devices they send need (`Method::with_tgas`), up to `MAX_CALL_TGAS`.
    pub const REGISTER_NODE: Method = Method::call("register_node", 300);
    pub const REATTEST: Method = Method::call("reattest", 300);
    /// 1.45 Tgas measured.
    pub const HEARTBEAT: Method = Method::call("heartbeat", 10);
    /// The node's operator, 1 yocto (or its enclave key with none): removes the node, a
    /// tombstone staying for slashing during unbonding (~5 Tgas).
    pub const DEREGISTER: Method = Method::one_yocto("deregister", 30);
    /// Deposit: the stake to add (~5 Tgas).
    pub const DEPOSIT_STAKE: Method = Method::payable("deposit_stake", 30);
    pub const SET_MARKETPLACE: Method = Method::one_yocto("set_marketplace", 30);
    /// Owner: replaces the whole policy.
    pub const SET_POLICY: Method = Method::one_yocto("set_policy", 30);
    /// Owner: drops cached certificates (at most 100, ~1 Tgas each).
    pub const FORGET_CERTIFICATES: Method = Method::one_yocto("forget_certificates", 150);
    /// Owner: revokes GPU device ids (at most 100, ~2 Tgas each).
    pub const REVOKE_GPUS: Method = Method::one_yocto("revoke_gpus", 250);
    /// The owner, 1 yocto: `pin_golden_set({set})` / `unpin_golden_set({kind, product,
    /// version})`, through the governance timelock.
    pub const PIN_GOLDEN_SET: Method = Method::one_yocto("pin_golden_set", 30);
    pub const UNPIN_GOLDEN_SET: Method = Method::one_yocto("unpin_golden_set", 30);
    /// `golden_sets({product})`: the sets pinned for a chip.
    pub const GOLDEN_SETS: &str = "golden_sets";

    pub const GET_NODE: &str = "get_node";
    pub const GET_NODE_BY_SIGNER_KEY: &str = "get_node_by_signer_key";
    pub const LIST_NODES: &str = "list_nodes";
    pub const GET_OPERATOR: &str = "get_operator";
    pub const GET_POLICY: &str = "get_policy";
    pub const GET_CONFIG: &str = "get_config";
    pub const NOW_NS: &str = "now_ns";

    /// `register_node({"bundle", "details"?})`. `B` is the attestation bundle: the
    /// attestation library's type in the contract, its JSON (`serde_json::Value`) in clients.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    #[serde(deny_unknown_fields)]
    pub struct RegisterNodeArgs<B> {
        pub bundle: B,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub details: Option<NodeUpdate>,
    }

    /// `reattest({"node_id", "bundle"})`.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    #[serde(deny_unknown_fields)]
    pub struct ReattestArgs<B> {
        pub node_id: NodeId,
        pub bundle: B,
    }

    /// `add_gpu({"node_id", "gpus", "switches"})`: more devices of the pending attestation;
    /// `E` (a device's evidence) as `B` above.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    #[serde(deny_unknown_fields)]
    // An absent list is empty, whatever `E` is (serde would otherwise ask `E: Default`).
    #[serde(bound(
        serialize = "E: near_sdk::serde::Serialize",
        deserialize = "E: near_sdk::serde::Deserialize<'de>"
    ))]
    pub struct AddGpuArgs<E> {
        pub node_id: NodeId,
        #[serde(default)]
        pub gpus: Vec<E>,
        #[serde(default)]
        pub switches: Vec<E>,
    }

    /// `begin_attestation({"gpus", "switches", "node_id"?})`: a registration (no node) or a
    /// re-attestation of `node_id`, declaring the devices it will present.
    #[near(serializers = [json])]
    #[derive(Debug, Clone, Copy)]
    pub struct BeginAttestationArgs {
        pub gpus: u32,
        pub switches: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub node_id: Option<NodeId>,
    }

    /// `prune_pending({"signer_keys"})`.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct PrunePendingArgs {
        pub signer_keys: Vec<PublicKey>,
    }

    /// A challenge: one storage write (~5 Tgas).
    pub const BEGIN_ATTESTATION: Method = Method::call("begin_attestation", 30);
    /// Anyone: removes expired pending attestations (~5 Tgas each, at most 20).
    pub const PRUNE_PENDING: Method = Method::call("prune_pending", 150);
    /// `get_pending_attestation({"signer_key"})`.
    pub const GET_PENDING_ATTESTATION: &str = "get_pending_attestation";
    /// `get_node_switches({"node_id"})`.
    pub const GET_NODE_SWITCHES: &str = "get_node_switches";
    /// The most gas one function call may use (protocol 83+: 1 PGas). Clients pack as many
    /// devices into one `register_node` / `reattest` / `add_gpu` as fit under it.
    pub const MAX_CALL_TGAS: u64 = 1_000;

    /// `heartbeat`, `get_node`: one node.
    #[near(serializers = [json])]
    #[derive(Debug, Clone, Copy)]
    pub struct NodeArgs {
        pub node_id: NodeId,
    }

    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct SignerKeyArgs {
        pub signer_key: PublicKey,
    }

    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct AccountArgs {
        pub account_id: AccountId,
    }

    /// `forget_certificates`' arguments: sha256 of each certificate's DER.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct ForgetCertificatesArgs {
        pub hashes: Vec<crate::Hash32>,
    }

    /// `set_policy`'s arguments; `P` as in [`NewArgs`].
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct SetPolicyArgs<P> {
        pub policy: P,
    }

    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct SetMarketplaceArgs {
        pub marketplace: AccountId,
    }

    #[near(serializers = [json])]
    #[derive(Debug, Clone, Default)]
    pub struct ListNodesArgs {
        pub filter: Option<NodeFilter>,
        pub from_index: Option<near_sdk::json_types::U64>,
        pub limit: Option<u32>,
    }

    /// The `#[init]` call (deploy).
    pub const NEW: Method = Method::call("new", 100);

    /// `new`'s arguments. `P` is the policy: [`super::Policy`], or its JSON in clients that
    /// pass one through. Absent options are left out of the JSON (the contract's defaults).
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct NewArgs<P> {
        pub owner: AccountId,
        pub mainnet: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub dev_ca_key: Option<PublicKey>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub policy: Option<P>,
    }

    /// Per device: each chain certificate not yet cached, and the report signature, one P-384
    /// verification each.
    pub const ADD_GPU: Method = Method::call("add_gpu", 300);
    /// ~80 Tgas per certificate verified (`max_signatures`, default 2, at most 3).
    pub const CACHE_GPU_CERTIFICATES: Method = Method::call("cache_gpu_certificates", 300);
    /// Operator (~5 Tgas).
    pub const REQUEST_UNSTAKE: Method = Method::one_yocto("request_unstake", 30);
    /// Operator, after the unbonding delay: 10 Tgas and the 5 Tgas callback.
    pub const WITHDRAW: Method = Method::one_yocto("withdraw", 30);

    pub const IS_CERTIFICATE_CACHED: &str = "is_certificate_cached";
    pub const IS_GPU_REVOKED: &str = "is_gpu_revoked";

    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct CacheGpuCertificatesArgs {
        pub node_id: NodeId,
        /// PEM, leaf first.
        pub certificate_chain: String,
        pub max_signatures: Option<u8>,
    }

    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct RequestUnstakeArgs {
        pub amount: near_sdk::NearToken,
    }

    /// `is_certificate_cached`'s arguments: sha256 of the certificate's DER.
    #[near(serializers = [json])]
    #[derive(Debug, Clone, Copy)]
    pub struct CertificateHashArgs {
        pub hash: crate::Hash32,
    }
}
