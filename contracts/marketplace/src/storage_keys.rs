//! Every storage prefix of the marketplace. Append only: reordering would alias old data.

use near_sdk::{BorshStorageKey, CryptoHash, near};

use enclave_cloud_common::NodeId;

#[near(serializers = [borsh])]
#[derive(BorshStorageKey)]
pub enum StorageKey {
    Jobs,
    OpenJobs,
    ClaimedJobs,
    Receipts,
    SettledJobs,
    JobsByUser,
    UserJobs {
        account_hash: CryptoHash,
    },
    JobsByNode,
    NodeJobs {
        node_id: NodeId,
    },
    Nodes,
    Requests,
    Credits,
    StorageBalances,
    AcceptedTokens,
    RoyaltyAccounts,
    /// The node cache of state version 2 (`CachedNode` gained `capacity`); version 1's
    /// entries under `Nodes` are left behind by the migration.
    NodesV2,
    InFlight,
    /// The governance timelock (`enclave_cloud_common::governance`).
    Governance,
    /// What each self-paid NEAR credit entry locked for its storage.
    CreditLocks,
    /// Payment channels (`channels`): the records, by id.
    Channels,
    ChannelsByUser,
    UserChannels {
        account_hash: CryptoHash,
    },
    ChannelsByNode,
    NodeChannels {
        node_id: NodeId,
    },
    /// The channels' id counter and settings (`channels::ChannelBook`).
    ChannelBook,
    /// The live channels' ids (the set's handle is in the book).
    LiveChannels,
    /// The encrypted weights hash of each settled job whose receipt names one
    /// (`results::receipt_weights`), beside `Receipts`, whose layout predates the field.
    ReceiptWeights,
}
