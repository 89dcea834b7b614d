//! The contract's persistent state. The root holds what most calls need (supply, revenue pools,
//! crowdfund); large or rarely read values (manifest, metadata) sit behind lazy cells so a
//! transfer or a deposit does not pay to read them.

use enclave_cloud_common::events::model::ModelManifest;
use enclave_cloud_common::{ModelId, NodeId};
use near_contract_standards::fungible_token::metadata::FungibleTokenMetadata;
use near_sdk::store::{IterableMap, LazyOption, LookupMap};
use near_sdk::{AccountId, PanicOnDefault, near};

use crate::crowdfund::{Crowdfund, CrowdfundEarnings};
use crate::keys::KeyGrant;
use crate::ledger::Holder;
use crate::rewards::RevenuePool;

/// Allow-listed NEP-141 revenue tokens at most; with NEAR that bounds the per-holder record
/// (one correction per asset) and so the NEP-145 storage deposit and the gas of a transfer.
pub const MAX_REVENUE_TOKENS: usize = 4;
/// Revenue assets: NEAR (index 0) plus the allow-listed tokens.
pub const MAX_POOLS: usize = 1 + MAX_REVENUE_TOKENS;

#[near(contract_state)]
#[derive(PanicOnDefault)]
pub struct ModelToken {
    /// Layout version ([`crate::upgrade::STATE_VERSION`]). First field on purpose: `migrate`
    /// reads it before deciding how to decode the rest.
    pub(crate) state_version: u16,
    pub(crate) model_id: ModelId,
    /// Governs the manifest, the revenue-token allow list and key grants.
    pub(crate) owner: AccountId,
    /// The node registry that key grants are checked against.
    pub(crate) registry: AccountId,
    /// An account of the owner's key service, allowed to grant and revoke keys.
    pub(crate) key_service: Option<AccountId>,
    pub(crate) manifest: LazyOption<ModelManifest>,
    pub(crate) metadata: LazyOption<FungibleTokenMetadata>,
    pub(crate) holders: LookupMap<AccountId, Holder>,
    pub(crate) total_supply: u128,
    /// Bytes of one holder record at its largest: the NEP-145 storage deposit.
    pub(crate) holder_storage_bytes: u64,
    /// Revenue pools; index 0 is NEAR, the others follow the allow list. Append only: a
    /// holder's corrections are indexed by pool.
    pub(crate) pools: Vec<RevenuePool>,
    pub(crate) crowdfund: Option<Crowdfund>,
    pub(crate) grants: IterableMap<NodeId, KeyGrant>,
    /// Locked crowdfund tokens and the accumulators at the crowdfund's success (appended by
    /// the audit fixes of issue 15; a state written before them needs a migration).
    pub(crate) crowdfund_earnings: CrowdfundEarnings,
}
