//! Every way a model-token call can fail. Each message names the problem and the value, so a
//! failed transaction explains itself without a stack trace.

use enclave_cloud_common::{Asset, NodeId};
use near_sdk::{AccountId, FunctionError, NearToken};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, FunctionError)]
pub enum ModelTokenError {
    #[error(transparent)]
    Governance(#[from] enclave_cloud_common::governance::GovernanceError),
    #[error("only the owner {owner} may call this; caller is {caller}")]
    NotOwner { owner: AccountId, caller: AccountId },
    #[error(
        "only the owner {owner} or the key service {key_service:?} may manage keys; caller is {caller}"
    )]
    NotKeyManager {
        owner: AccountId,
        key_service: Option<AccountId>,
        caller: AccountId,
    },
    #[error("attach exactly 1 yoctoNEAR to confirm with a full access key (attached {0})")]
    OneYoctoRequired(NearToken),
    #[error("attach a positive deposit")]
    DepositRequired,
    #[error("attach at least {required} (attached {attached})")]
    DepositTooSmall {
        required: NearToken,
        attached: NearToken,
    },
    #[error("attach at least {required} gas (attached {attached})")]
    NotEnoughGas {
        required: near_sdk::Gas,
        attached: near_sdk::Gas,
    },
    #[error("account {0} is not registered with this token (call storage_deposit)")]
    NotRegistered(AccountId),
    #[error("account {account} holds {balance} tokens, cannot move {amount}")]
    InsufficientBalance {
        account: AccountId,
        balance: u128,
        amount: u128,
    },
    #[error("sender and receiver are the same account {0}")]
    SelfTransfer(AccountId),
    #[error("the amount must be positive")]
    ZeroAmount,
    #[error("balance of {0} would overflow")]
    BalanceOverflow(AccountId),
    #[error("the total supply would overflow")]
    SupplyOverflow,
    #[error(
        "account {account} holds {balance} tokens of which {locked} are refundable crowdfund tokens that cannot move until the crowdfund succeeds; cannot move {amount}"
    )]
    LockedCrowdfundTokens {
        account: AccountId,
        balance: u128,
        locked: u128,
        amount: u128,
    },
    #[error("account {account} still holds {balance} tokens; pass force=true to burn them")]
    PositiveBalance { account: AccountId, balance: u128 },
    #[error(
        "account {account} has unclaimed revenue {amount} in {asset:?}; claim it or pass force=true"
    )]
    UnclaimedRevenue {
        account: AccountId,
        asset: Asset,
        amount: u128,
    },
    #[error("account {0} has an open crowdfund contribution; it cannot unregister")]
    OpenContribution(AccountId),
    #[error("token {0} is not an allow-listed revenue token")]
    TokenNotAllowed(AccountId),
    #[error("token {0} is already allow-listed")]
    TokenAlreadyAllowed(AccountId),
    #[error("at most {0} revenue tokens may be allow-listed")]
    TooManyRevenueTokens(usize),
    #[error("asset {0:?} is not a revenue asset of this model")]
    UnknownAsset(Asset),
    #[error("revenue of {asset:?} would overflow")]
    RevenueOverflow { asset: Asset },
    #[error("cannot withdraw {0}: the storage deposit is fixed, nothing is available")]
    NoStorageAvailable(NearToken),
    #[error("nothing to claim for {account} in {asset:?}")]
    NothingToClaim { account: AccountId, asset: Asset },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("this model has no crowdfund")]
    NoCrowdfund,
    #[error("a crowdfund was already started")]
    CrowdfundExists,
    #[error("the crowdfund is {0}, not active")]
    CrowdfundNotActive(String),
    #[error("the crowdfund ended at {deadline_ns} ns; now is {now_ns} ns")]
    CrowdfundEnded { deadline_ns: u64, now_ns: u64 },
    #[error(
        "the crowdfund raised {raised} of {goal} and runs until {deadline_ns} ns; now is {now_ns} ns"
    )]
    CrowdfundRunning {
        raised: u128,
        goal: u128,
        deadline_ns: u64,
        now_ns: u64,
    },
    #[error("a contribution of {0} buys less than one token base unit")]
    ContributionTooSmall(NearToken),
    #[error("the crowdfund is {0}; refunds are only open after it failed")]
    NotRefundable(String),
    #[error("account {0} has no contribution to refund")]
    NothingToRefund(AccountId),
    #[error("the refund of account {0} is already in flight")]
    RefundInFlight(AccountId),
    #[error("the owner {0} receives the revenue no token earns; it cannot unregister")]
    OwnerCannotUnregister(AccountId),
    #[error("only {approver} may release milestones; caller is {caller}")]
    NotApprover {
        approver: AccountId,
        caller: AccountId,
    },
    #[error("a release to the beneficiary is already in flight")]
    ReleaseInFlight,
    #[error("every milestone was already released")]
    NoMilestoneLeft,
    #[error("the encrypted key is {len} bytes; at most {max}")]
    EncryptedKeyTooLarge { len: usize, max: usize },
    #[error("node {0} has no key grant")]
    NoGrant(NodeId),
}
