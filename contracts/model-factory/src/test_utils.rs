//! Shared fixtures of the factory's unit tests.

pub use crate::FactoryAdminApi;
pub use model_token::testing::assert_panics_with;

use crate::ModelFactory;
use near_sdk::test_utils::VMContextBuilder;
use near_sdk::{AccountId, Gas, GlobalContractId, NearToken, PromiseResult, testing_env};

pub const FACTORY: &str = "factory.near";
pub const OWNER: &str = "owner.near";
pub const REGISTRY: &str = "registry.near";
pub const ALICE: &str = "alice.near";
pub const BOB: &str = "bob.near";

pub fn acc(s: &str) -> AccountId {
    s.parse().unwrap()
}

fn builder(predecessor: &str, deposit: NearToken, gas: Gas) -> VMContextBuilder {
    let mut b = VMContextBuilder::new();
    b.current_account_id(acc(FACTORY))
        .predecessor_account_id(acc(predecessor))
        .signer_account_id(acc(predecessor))
        .attached_deposit(deposit)
        .prepaid_gas(gas)
        .account_balance(NearToken::from_near(1_000));
    b
}

pub fn ctx_gas(predecessor: &str, deposit: NearToken, gas: Gas) {
    testing_env!(builder(predecessor, deposit, gas).build());
}

/// A call at block time `now_ns`.
pub fn ctx_at(predecessor: &str, deposit: NearToken, now_ns: u64) {
    let mut b = builder(predecessor, deposit, Gas::from_tgas(300));
    b.block_timestamp(now_ns);
    testing_env!(b.build());
}

pub fn ctx(predecessor: &str, deposit: NearToken) {
    ctx_gas(predecessor, deposit, Gas::from_tgas(300));
}

pub fn callback_ctx(result: PromiseResult) {
    testing_env!(
        builder(FACTORY, NearToken::from_yoctonear(0), Gas::from_tgas(300)).build(),
        near_sdk::test_vm_config(),
        near_sdk::RuntimeFeesConfig::test(),
        Default::default(),
        vec![result],
    );
}

pub fn factory() -> ModelFactory {
    ctx(OWNER, NearToken::from_yoctonear(0));
    near_sdk::mock::with_mocked_blockchain(|b| drop(b.take_storage()));
    ModelFactory::new(acc(OWNER), acc(REGISTRY))
}

pub fn factory_with_code() -> ModelFactory {
    let mut f = factory();
    ctx(OWNER, NearToken::from_yoctonear(1));
    f.set_model_code(GlobalContractId::CodeHash([42; 32]));
    f
}
