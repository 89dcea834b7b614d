//! The model factory's interface types: the listing it returns (`model`, `models`), its
//! methods as clients call them and their arguments. The factory, the marketplace (which pays
//! royalties only to models the factory lists) and the clients import these very types.

use near_sdk::json_types::U64;
use near_sdk::{AccountId, GlobalContractId, ext_contract, near};

use crate::{Hash32, ModelId};

/// A critical setting of the factory: proposed, announced, applied after the delay
/// (`crate::governance`).
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum FactorySetting {
    /// New models use the global contract of this hash. Only a hash: code referenced by an
    /// account would change whenever that account redeployed.
    SetModelCode {
        code_hash: Hash32,
    },
    SetRegistry {
        registry: AccountId,
    },
    /// Hands governance to another account (e.g. a DAO).
    SetOwner {
        owner: AccountId,
    },
}

/// Where a model's creation stands.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    /// The creating batch is in flight.
    Creating,
    Created,
}

/// A model as the factory lists it.
#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelView {
    pub model_id: ModelId,
    /// The model's token contract, `<model_id>.<factory>`.
    pub token: AccountId,
    pub owner: AccountId,
    pub creator: AccountId,
    pub created_at_ns: U64,
    pub status: ModelStatus,
    /// The global contract code the model was created with.
    pub code: GlobalContractId,
}

/// The factory as the marketplace asks it whether a model exists.
#[ext_contract(ext_model_listing)]
pub trait ModelListingApi {
    /// The model's listing, or `None` if the factory never created it.
    fn model(&self, model_id: ModelId) -> Option<ModelView>;
}

impl ModelView {
    /// Whether this listing shows `model_id` created by `factory`, with its token at
    /// `<model_id>.<factory>`: the only account royalties for `model_id` may go to.
    pub fn confirms(&self, model_id: &ModelId, factory: &AccountId) -> bool {
        self.model_id == *model_id
            && self.status == ModelStatus::Created
            && self.token.as_str() == format!("{model_id}.{factory}")
    }
}

/// The factory's methods as clients call them and their JSON arguments.
pub mod methods {
    use near_sdk::{AccountId, near};

    use crate::ModelId;
    use crate::interfaces::method::Method;

    /// Deposit: at least `create_deposit(args)`. The call gives `new` 20 Tgas and the callback
    /// 15 Tgas; 50 Tgas in all.
    pub const CREATE_MODEL: Method = Method::payable("create_model", 50);
    /// Deposit: 1 yocto and the reservation's storage (~3 Tgas).
    pub const RESERVE_MODEL: Method = Method::payable("reserve_model", 10);

    pub const MODEL: &str = "model";
    pub const MODELS: &str = "models";
    pub const MODEL_COUNT: &str = "model_count";
    pub const CREATE_DEPOSIT: &str = "create_deposit";
    pub const MODEL_CODE: &str = "model_code";

    /// `create_model`'s arguments. `A` is the model token's init object (`ModelInit` without
    /// the fields the factory fills in), as JSON in clients.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct CreateModelArgs<A> {
        pub model_id: ModelId,
        pub args: A,
    }

    /// `create_deposit`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct CreateDepositArgs<A> {
        pub args: A,
    }

    /// `model`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct ModelArgs {
        pub model_id: ModelId,
    }

    /// `reserve_model`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct ReserveModelArgs {
        pub model_id: ModelId,
        pub reserved_for: Option<AccountId>,
    }

    /// `models`' arguments: a page in creation order.
    #[near(serializers = [json])]
    #[derive(Debug, Clone, Copy, Default)]
    pub struct ModelsArgs {
        pub from_index: Option<u32>,
        pub limit: Option<u32>,
    }

    /// The `#[init]` call (deploy).
    pub const NEW: Method = Method::call("new", 100);
    /// Owner only. Raw input (not JSON): the model-token wasm. Deposit: the global contract's
    /// storage cost. About 1 Tgas per 10 KiB of code plus 10 Tgas.
    pub const PUBLISH_MODEL_CODE: Method = Method::payable("publish_model_code", 300);

    /// `new`'s arguments.
    #[near(serializers = [json])]
    #[derive(Debug, Clone)]
    pub struct NewArgs {
        pub owner: AccountId,
        pub registry: AccountId,
    }
}
