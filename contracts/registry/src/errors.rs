//! Every way a registry call can fail. Each message names the problem and the value, so a
//! failed transaction explains itself without a stack trace.

use enclave_cloud_common::NodeId;
use near_sdk::{AccountId, FunctionError, NearToken};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, FunctionError)]
pub enum RegistryError {
    #[error(transparent)]
    Governance(#[from] enclave_cloud_common::governance::GovernanceError),
    #[error("only the owner {owner} may call this; caller is {caller}")]
    NotOwner { owner: AccountId, caller: AccountId },
    #[error("only the marketplace {expected} may slash; caller is {caller}")]
    NotMarketplace { expected: String, caller: AccountId },
    #[error("attach exactly 1 yoctoNEAR to confirm with a full access key (attached {0} yocto)")]
    OneYoctoRequired(u128),
    #[error("this method takes no deposit (attached {0} yocto)")]
    DepositNotAllowed(u128),
    #[error("attach a positive NEAR amount to stake")]
    ZeroStake,
    #[error("account {0} has no stake in the registry")]
    UnknownOperator(AccountId),
    #[error("node {0} does not exist")]
    UnknownNode(NodeId),
    #[error("node {0} is deregistered")]
    NodeDeregistered(NodeId),
    #[error("node {node} belongs to {operator}, not to the caller {caller}")]
    NotNodeOperator {
        node: NodeId,
        operator: AccountId,
        caller: AccountId,
    },
    #[error("this call must be signed by node {node}'s enclave key {expected}; signed by {signer}")]
    NotNodeKey {
        node: NodeId,
        expected: String,
        signer: String,
    },
    #[error("the enclave key {0} already belongs to live node {1}")]
    SignerKeyInUse(String, NodeId),
    #[error("the signing key {0} is not an ed25519 key")]
    SignerKeyNotEd25519(String),
    #[error("the bundle binds NEAR key {bound} but the transaction is signed by {signer}")]
    SignerKeyMismatch { bound: String, signer: String },
    #[error("the bundle binds enclave key {got}, node {node} was registered with {expected}")]
    EnclaveKeyMismatch {
        node: NodeId,
        expected: String,
        got: String,
    },
    #[error(
        "operator {operator} needs {required} of free stake for {nodes} node(s); has {available}"
    )]
    InsufficientStake {
        operator: AccountId,
        required: NearToken,
        available: NearToken,
        nodes: u32,
    },
    #[error(
        "cannot unstake {requested}: {operator} may unstake at most {max} while it has {nodes} node(s)"
    )]
    UnstakeTooLarge {
        operator: AccountId,
        requested: NearToken,
        max: NearToken,
        nodes: u32,
    },
    #[error("nothing to withdraw for {0}")]
    NothingToWithdraw(AccountId),
    #[error("stake of {operator} unlocks at {unlocks_at_ns} ns; now is {now_ns} ns")]
    StillUnbonding {
        operator: AccountId,
        unlocks_at_ns: u64,
        now_ns: u64,
    },
    #[error("a withdrawal of {0} is already in flight")]
    WithdrawalInFlight(AccountId),
    #[error("no credit to claim for {0}")]
    NoCredit(AccountId),
    #[error("arguments are not valid JSON for this method: {0}")]
    BadArguments(String),
    #[error("attestation bundle refused: {0}")]
    Attestation(String),
    #[error("GPU evidence refused: {0}")]
    Gpu(String),
    #[error("attestation kind 'dev' is not enabled on this registry")]
    DevModeDisabled,
    #[error("a mainnet registry can never enable the dev attestation kind")]
    DevModeOnMainnet,
    #[error("dev mode cannot be enabled: the registry was not initialised with it")]
    DevModeNotAvailable,
    #[error("TDX measurements mrtd={mrtd} rtmr0-2 are not on the allowlist")]
    PlatformNotAllowed { mrtd: String },
    #[error("compose hash {0} is not on the allowlist")]
    ComposeHashNotAllowed(String),
    #[error("the bundle has no compose hash but the allowlist requires one")]
    ComposeHashMissing,
    #[error("OS image digest {0} is not on the allowlist")]
    ImageDigestNotAllowed(String),
    #[error("the bundle carries no OS image digest event but the allowlist requires one")]
    ImageDigestMissing,
    #[error(
        "no attestation in progress for key {0}: call begin_attestation first (devices must answer its challenge)"
    )]
    NoPendingAttestation(String),
    #[error("the challenge of this attestation expired at {expired_at_ns} ns: begin again")]
    ChallengeExpired { expired_at_ns: u64 },
    #[error("the bundle answers challenge {got}, the registry handed out {expected}")]
    WrongChallenge { expected: String, got: String },
    #[error(
        "an attestation begun by this key is in progress until {expires_at_ns} ns: complete it (add_gpu) or let it expire"
    )]
    AttestationInProgress { expires_at_ns: u64 },
    #[error("the pending attestation is for {expected}, not for this call")]
    WrongPendingAttestation { expected: String },
    #[error(
        "the bundle of this attestation was already verified: send the remaining devices with add_gpu"
    )]
    BundleAlreadyVerified,
    #[error("register_node or reattest must verify the bundle before add_gpu")]
    BundleNotVerified,
    #[error(
        "{gpus} GPUs and {switches} switches exceed what the attestation declared ({gpus_declared} and {switches_declared})"
    )]
    TooManyDevices {
        gpus: usize,
        switches: usize,
        gpus_declared: u32,
        switches_declared: u32,
    },
    #[error("topology refused: {0}")]
    Topology(String),
    #[error("GPU {device_id} is already attached to node {node}")]
    GpuInUse { device_id: String, node: NodeId },
    #[error("GPU {0} was revoked by governance")]
    GpuRevoked(String),
    #[error("GPU {0} appears twice in the evidence")]
    DuplicateGpu(String),
    #[error("GPU model {0} is not allowed by policy")]
    GpuModelNotAllowed(String),
    #[error("node {node} already has {count} GPUs, the maximum")]
    TooManyGpus { node: NodeId, count: usize },
    #[error(
        "call by {predecessor} was signed by {signer}: node calls must be signed directly by the operator's account"
    )]
    RelayedCall {
        predecessor: AccountId,
        signer: AccountId,
    },
    #[error("invalid {field}: {reason}")]
    InvalidInput { field: &'static str, reason: String },
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),
    #[error("no contract state to migrate")]
    NoState,
}

impl RegistryError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            field,
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
