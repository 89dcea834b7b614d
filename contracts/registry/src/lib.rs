//! Registry contract: attested TEE nodes, their operators' stake and the governance policy.
//!
//! Skeleton: the real interface lands with the registry issue.

use near_sdk::{AccountId, PanicOnDefault, env, near};

#[near(contract_state)]
#[derive(PanicOnDefault)]
pub struct Registry {
    owner: AccountId,
}

#[near]
impl Registry {
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
