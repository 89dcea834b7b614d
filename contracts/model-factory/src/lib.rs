//! Model factory: creates a model token account in one call (global contract code).
//!
//! Skeleton: the real interface lands with the model-token issue.

use near_sdk::{AccountId, PanicOnDefault, env, near};

#[near(contract_state)]
#[derive(PanicOnDefault)]
pub struct ModelFactory {
    owner: AccountId,
}

#[near]
impl ModelFactory {
    #[init]
    pub fn new(owner: AccountId) -> Self {
        Self { owner }
    }

    /// The governance account.
    pub fn owner(&self) -> AccountId {
        self.owner.clone()
    }

    /// Contract version, from Cargo.
    pub fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }

    /// Who called last (keeps `env` in use so the skeleton links the host functions).
    pub fn whoami(&self) -> AccountId {
        env::predecessor_account_id()
    }
}
