//! Every way a marketplace call can be refused. Each message names the problem and the value.

use near_sdk::{AccountId, NearToken, env};

use enclave_cloud_common::{Asset, ChannelId, JobId, ModelId, NodeId, RequestId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarketplaceError {
    #[error(transparent)]
    Governance(#[from] enclave_cloud_common::governance::GovernanceError),
    #[error("only the owner {owner} may do this, not {caller}")]
    NotOwner { owner: AccountId, caller: AccountId },
    #[error("the marketplace is paused: no new jobs, claims or requests")]
    Paused,
    #[error("attach exactly 1 yoctoNEAR to confirm this call with a full-access key")]
    OneYoctoRequired,
    #[error("this method takes no deposit, {0} was attached")]
    UnexpectedDeposit(NearToken),
    #[error("only the contract itself may call {0}")]
    PrivateMethod(&'static str),
    #[error("invalid argument {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("the price cap must be more than zero")]
    ZeroPriceCap,
    #[error("attached {attached} yoctoNEAR, need at least {needed} (price cap + storage)")]
    InsufficientDeposit { attached: u128, needed: u128 },
    #[error(
        "storage balance of {account} is {available} yoctoNEAR, need {needed}: call storage_deposit first"
    )]
    InsufficientStorageBalance {
        account: AccountId,
        available: u128,
        needed: u128,
    },
    #[error("the storage reserve of job {job_id} is exhausted ({needed} > {paid} yoctoNEAR)")]
    StorageReserveExhausted {
        job_id: JobId,
        needed: u128,
        paid: u128,
    },
    #[error("token {0} is not accepted for payment")]
    TokenNotAccepted(AccountId),
    #[error("ft_on_transfer message is not a job or channel message: {0}")]
    BadTransferMessage(String),
    #[error("job {0} does not exist or is already finished")]
    JobNotFound(JobId),
    #[error("job {job_id} is {state}, expected {expected}")]
    WrongJobState {
        job_id: JobId,
        state: &'static str,
        expected: &'static str,
    },
    #[error("job {job_id} passed its {which} at {deadline_ns} ns (now {now_ns} ns)")]
    DeadlinePassed {
        job_id: JobId,
        which: &'static str,
        deadline_ns: u64,
        now_ns: u64,
    },
    #[error("job {job_id} cannot be cancelled yet: {reason}")]
    NotCancellable { job_id: JobId, reason: &'static str },
    #[error("only the job's owner {user} may do this, not {caller}")]
    NotJobOwner { user: AccountId, caller: AccountId },
    #[error("node {node_id} is not eligible: {reason}")]
    NodeNotEligible { node_id: NodeId, reason: String },
    #[error("node {node_id} has {in_flight} jobs in flight, its capacity is {capacity}")]
    NodeAtCapacity {
        node_id: NodeId,
        in_flight: u32,
        capacity: u32,
    },
    #[error(
        "job {job_id} has {left_ns} ns left before its deadline, less than the answer window of {window_ns} ns"
    )]
    TooLateToClaim {
        job_id: JobId,
        left_ns: u64,
        window_ns: u64,
    },
    #[error("node {0} is unknown to the registry")]
    NodeUnknown(NodeId),
    #[error("the registry call for node {0} failed")]
    RegistryCallFailed(NodeId),
    #[error("node {node_id} belongs to {operator}, not to the caller {caller}")]
    NotNodeOperator {
        node_id: NodeId,
        operator: AccountId,
        caller: AccountId,
    },
    #[error(
        "node {node_id} is not cached or its cache expired: call refresh_node({node_id}) first"
    )]
    NodeNotCached { node_id: NodeId },
    #[error("node {node_id} does not serve model {model_id}")]
    ModelNotServed { node_id: NodeId, model_id: ModelId },
    #[error(
        "the result is not signed by node {node_id}'s attested key: give a valid signature or sign the transaction with that key"
    )]
    BadSignature { node_id: NodeId },
    #[error("the node's signer key is not an ed25519 key")]
    SignerKeyNotEd25519,
    #[error("request {0} does not exist or is already finished")]
    RequestNotFound(RequestId),
    #[error("request {0} was already answered")]
    RequestAnswered(RequestId),
    #[error("request {0} timed out before the answer arrived")]
    RequestTimedOut(RequestId),
    #[error("nothing to withdraw for {account} in {asset:?}")]
    NothingToWithdraw { account: AccountId, asset: Asset },
    #[error("amount overflow in {0}")]
    Overflow(&'static str),
    #[error("no model factory is configured: royalties are protocol fees")]
    NoModelFactory,
    #[error("channel {0} does not exist or is closed")]
    ChannelNotFound(ChannelId),
    #[error("only channel {channel_id}'s user {user} may do this, not {caller}")]
    NotChannelUser {
        channel_id: ChannelId,
        user: AccountId,
        caller: AccountId,
    },
    #[error(
        "only channel {channel_id}'s node (its operator {operator} or its enclave key) may do this, not {caller}"
    )]
    NotChannelNode {
        channel_id: ChannelId,
        operator: AccountId,
        caller: AccountId,
    },
    #[error("channel {0} is closing: no top-ups, and its close has already started")]
    ChannelClosing(ChannelId),
    #[error("channel {0} is open: its user must start_close first")]
    ChannelNotClosing(ChannelId),
    #[error(
        "channel {channel_id}'s challenge period ends at {ends_ns} ns (now {now_ns} ns): finish_close after it"
    )]
    ChallengePeriodNotOver {
        channel_id: ChannelId,
        ends_ns: u64,
        now_ns: u64,
    },
    #[error(
        "channel {channel_id}'s challenge period ended at {ended_ns} ns (now {now_ns} ns): it can only be finished"
    )]
    ChallengePeriodOver {
        channel_id: ChannelId,
        ended_ns: u64,
        now_ns: u64,
    },
    #[error("the voucher of {amount} is over channel {channel_id}'s deposit of {deposit}")]
    VoucherOverDeposit {
        channel_id: ChannelId,
        amount: u128,
        deposit: u128,
    },
    #[error(
        "the voucher of {amount} is not above the {settled} channel {channel_id} already settled"
    )]
    VoucherNotAboveSettled {
        channel_id: ChannelId,
        amount: u128,
        settled: u128,
    },
    #[error("the voucher is for channel {voucher_channel}, not channel {channel_id}")]
    VoucherForAnotherChannel {
        channel_id: ChannelId,
        voucher_channel: ChannelId,
    },
    #[error("the voucher is for the marketplace {marketplace}, not this one ({this})")]
    VoucherForAnotherContract {
        marketplace: AccountId,
        this: AccountId,
    },
    #[error("the voucher is in {voucher:?}, channel {channel_id} is in {channel:?}")]
    VoucherWrongAsset {
        channel_id: ChannelId,
        voucher: Asset,
        channel: Asset,
    },
    #[error("the voucher is not signed by channel {channel_id}'s key")]
    BadVoucherSignature { channel_id: ChannelId },
    #[error("the channel key must be an ed25519 key")]
    ChannelKeyNotEd25519,
    #[error("a channel's deposit must be at least {minimum} (in its asset), got {deposit}")]
    DepositBelowMinimum { deposit: u128, minimum: u128 },
    #[error("channel {channel_id} is in {channel:?}, the transfer is in {paid:?}")]
    WrongChannelAsset {
        channel_id: ChannelId,
        channel: Asset,
        paid: Asset,
    },
    #[error("the model factory {factory} does not confirm model {model_id}: {reason}")]
    ModelNotConfirmed {
        model_id: ModelId,
        factory: AccountId,
        reason: String,
    },
}

impl near_sdk::FunctionError for MarketplaceError {
    fn panic(&self) -> ! {
        env::panic_str(&self.to_string())
    }
}

pub type Result<T, E = MarketplaceError> = std::result::Result<T, E>;

/// Shorthand for an invalid argument.
pub fn invalid(field: &'static str, reason: impl Into<String>) -> MarketplaceError {
    MarketplaceError::InvalidArgument {
        field,
        reason: reason.into(),
    }
}
