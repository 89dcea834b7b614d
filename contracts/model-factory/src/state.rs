//! The factory's persistent state.

use enclave_cloud_common::ModelId;
use near_sdk::store::{IterableMap, LookupMap};
use near_sdk::{AccountId, GlobalContractId, PanicOnDefault, near};

use crate::storage_keys::StorageKey;
pub use enclave_cloud_common::interfaces::model_factory::ModelStatus;

#[near(serializers = [borsh])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRecord {
    pub token: AccountId,
    pub owner: AccountId,
    /// Who paid for the creation (refunded if it fails).
    pub creator: AccountId,
    pub created_at_ns: u64,
    pub status: ModelStatus,
    /// The code the model was created with.
    pub code: GlobalContractId,
}

#[near(contract_state)]
#[derive(PanicOnDefault)]
pub struct ModelFactory {
    /// Layout version ([`crate::upgrade::STATE_VERSION`]). First field on purpose: `migrate`
    /// reads it before deciding how to decode the rest.
    pub(crate) state_version: u16,
    pub(crate) owner: AccountId,
    /// Passed to every new model: the registry its key grants are checked against.
    pub(crate) registry: AccountId,
    pub(crate) model_code: Option<GlobalContractId>,
    pub(crate) models: IterableMap<ModelId, ModelRecord>,
    /// Model ids governance reserved for their rights holder: only that account may create
    /// them (appended by the audit fixes of issue 15; a state written before needs a migration).
    pub(crate) reservations: LookupMap<ModelId, AccountId>,
}

#[near]
impl ModelFactory {
    #[init]
    pub fn new(owner: AccountId, registry: AccountId) -> Self {
        Self {
            state_version: crate::upgrade::STATE_VERSION,
            owner,
            registry,
            model_code: None,
            models: IterableMap::new(StorageKey::Models),
            reservations: LookupMap::new(StorageKey::Reservations),
        }
    }
}
