//! Model factory: creates a model's token contract at `<model>.<factory>` in one call.
//!
//! The model-token code is a NEAR global contract (NEP-591): deployed once, by the factory
//! ([`FactoryAdminApi::publish_model_code`]) or by anyone (then registered with
//! [`FactoryAdminApi::set_model_code`]). A new model account only references that code, so its
//! creator pays for the model's own state, not for a copy of the wasm. Referencing the code by
//! hash pins it: the factory owner cannot change the code of models that already exist.
//!
//! Every public method is declared in the traits below with who may call it, its deposit and
//! its gas; the implementations live in the module of their concern.

mod admin;
mod create;
mod errors;
mod state;
mod storage_keys;
mod upgrade;

#[cfg(test)]
mod test_utils;

use enclave_cloud_common::ModelId;
use near_sdk::serde_json::Value;
use near_sdk::{AccountId, GlobalContractId, NearToken, Promise, ext_contract};

pub use create::{CREATE_GAS, ModelView};
pub use errors::FactoryError;
pub use state::{ModelFactory, ModelFactoryExt, ModelStatus};

/// Creating and listing models.
#[ext_contract(ext_model_factory)]
pub trait FactoryApi {
    /// Anyone (for a reserved id: only the account it is reserved for). Creates `<model_id>.<factory>` running the model-token code and calls its
    /// `new` with `args` (a `ModelInit` object: manifest, metadata, optional initial supply,
    /// key service, revenue tokens and crowdfund), where `model_id`, `registry` and (unless
    /// given) `owner` = the caller are filled in by the factory. Attach at least
    /// `create_deposit(args)`: the factory keeps what its listing entry costs and sends the rest
    /// to the new account. The callback lists the model and emits `model_created`; if the
    /// creation fails, it unlists it and refunds the whole deposit once, in a receipt after the
    /// runtime returned the failed batch's deposit to the factory (`refund_failed_creation`),
    /// logging "refunded" only when the transfer arrived. Attach 50 Tgas (the call gives `new`
    /// 20 Tgas and the callback 15 Tgas, 8 of them for a refund; ≤ 50 Tgas burnt in all).
    fn create_model(&mut self, model_id: ModelId, args: Value) -> Promise;
    /// The least deposit `create_model` accepts for these arguments.
    fn create_deposit(&self, args: Value) -> NearToken;
    fn model(&self, model_id: ModelId) -> Option<ModelView>;
    /// Models in creation order, paginated (at most 100 per page).
    fn models(&self, from_index: Option<u32>, limit: Option<u32>) -> Vec<ModelView>;
    fn model_count(&self) -> u32;
}

/// Owner configuration.
#[ext_contract(ext_model_factory_admin)]
pub trait FactoryAdminApi {
    /// Owner only. The call's raw input (not JSON) is the model-token wasm: the factory
    /// deploys it as a global contract identified by its hash and, once that succeeded,
    /// proposes it for new models (`set_model_code`'s governance delay). Attach the global-contract storage cost (the runtime burns it from
    /// the factory's balance). Gas: about 1 Tgas per 10 KiB of code plus 10 Tgas.
    fn publish_model_code(&mut self) -> Promise;
    /// Owner only, 1 yocto: proposes already-deployed global code (by hash only; an account id
    /// is refused) for new models; applies after the governance delay (`apply_change`), at
    /// once while it is 0.
    fn set_model_code(&mut self, code: GlobalContractId);
    /// Owner only, 1 yocto: proposes the registry new models check key grants against
    /// (governance delay as above).
    fn set_registry(&mut self, registry: AccountId);
    /// Owner (governance) only. Reserves `model_id` for its rights holder `reserved_for`: from
    /// then on only that account may create it (the model's royalties cannot be captured by
    /// whoever creates a known id first). `None` lifts the reservation. Attach at least
    /// 1 yocto and the new entry's storage; the excess, and the storage a lifted reservation
    /// frees, go back to the caller. Refused for a model that already exists. ~3 Tgas.
    fn reserve_model(&mut self, model_id: ModelId, reserved_for: Option<AccountId>);
    /// Who `model_id` is reserved for, if anyone.
    fn reservation(&self, model_id: ModelId) -> Option<AccountId>;
    fn model_code(&self) -> Option<GlobalContractId>;
    fn registry(&self) -> AccountId;
    fn owner(&self) -> AccountId;
}
