//! Shared fixtures of the unit tests.

pub use crate::RevenueApi;
pub use crate::testing::assert_panics_with;
pub use enclave_cloud_common::interfaces::ModelRevenueApi;
pub use near_contract_standards::fungible_token::core::FungibleTokenCore;
pub use near_contract_standards::fungible_token::receiver::FungibleTokenReceiver;
pub use near_contract_standards::storage_management::StorageManagement;

use crate::{ModelInit, ModelToken};
use enclave_cloud_common::Asset;
use enclave_cloud_common::events::model::ModelManifest;
use near_contract_standards::fungible_token::metadata::{FT_METADATA_SPEC, FungibleTokenMetadata};
use near_sdk::test_utils::VMContextBuilder;
use near_sdk::{AccountId, Gas, NearToken, PromiseResult, testing_env};

pub const CONTRACT: &str = "llama.factory.near";
pub const OWNER: &str = "owner.near";
pub const KEY_SERVICE: &str = "keys.near";
pub const REGISTRY: &str = "registry.near";
pub const MARKET: &str = "market.near";
pub const USDC: &str = "usdc.near";
pub const TRAINER: &str = "trainer.near";
pub const ALICE: &str = "alice.near";
pub const BOB: &str = "bob.near";
pub const CAROL: &str = "carol.near";
/// Block time of every test context unless said otherwise.
pub const NOW: u64 = 1_700_000_000_000_000_000;

pub fn acc(s: &str) -> AccountId {
    s.parse().unwrap()
}

pub fn usdc() -> Asset {
    Asset::Ft { token: acc(USDC) }
}

fn builder(predecessor: &str, deposit: NearToken, now: u64, gas: Gas) -> VMContextBuilder {
    let mut b = VMContextBuilder::new();
    b.current_account_id(acc(CONTRACT))
        .predecessor_account_id(acc(predecessor))
        .signer_account_id(acc(predecessor))
        .attached_deposit(deposit)
        .block_timestamp(now)
        .prepaid_gas(gas)
        // Room for the property test's largest deposits and payouts.
        .account_balance(NearToken::from_yoctonear(u128::MAX / 4))
        // The mocked chain keeps its trie from one context to the next but restarts the usage
        // counter from the context: carry it over, so `env::storage_usage()` is the contract's
        // real usage throughout a test (see `fresh_chain`).
        .storage_usage(near_sdk::env::storage_usage());
    b
}

/// An empty chain: no trie, the usage counter at the default context's.
fn fresh_chain() {
    near_sdk::mock::with_mocked_blockchain(|b| drop(b.take_storage()));
    testing_env!(VMContextBuilder::new().build());
}

pub fn ctx_full(predecessor: &str, deposit: NearToken, now: u64, gas: Gas) {
    testing_env!(builder(predecessor, deposit, now, gas).build());
}

pub fn ctx(predecessor: &str, deposit: NearToken) {
    ctx_full(predecessor, deposit, NOW, Gas::from_tgas(300));
}

pub fn ctx_at(predecessor: &str, deposit: NearToken, now: u64) {
    ctx_full(predecessor, deposit, now, Gas::from_tgas(300));
}

pub fn ctx_gas(predecessor: &str, deposit: NearToken, gas: Gas) {
    ctx_full(predecessor, deposit, NOW, gas);
}

/// The contract calling itself back with one promise result.
pub fn callback_ctx(result: PromiseResult) {
    testing_env!(
        builder(
            CONTRACT,
            NearToken::from_yoctonear(0),
            NOW,
            Gas::from_tgas(300)
        )
        .build(),
        near_sdk::test_vm_config(),
        near_sdk::RuntimeFeesConfig::test(),
        Default::default(),
        vec![result],
    );
}

pub fn model_init() -> ModelInit {
    ModelInit {
        model_id: "llama".parse().unwrap(),
        owner: acc(OWNER),
        registry: acc(REGISTRY),
        manifest: ModelManifest {
            name: "Llama test".into(),
            weights_hash: Default::default(),
            encrypted_weights_uri: "ipfs://weights".into(),
            training_data_manifest_hash: Default::default(),
            training_data_manifest_uri: "ipfs://data".into(),
            training_image_measurement: "00".repeat(48),
            allowed_enclave_measurements: vec!["ab".repeat(32)],
            licence: "apache-2.0".into(),
        },
        metadata: FungibleTokenMetadata {
            spec: FT_METADATA_SPEC.into(),
            name: "Llama revenue".into(),
            symbol: "LLM".into(),
            icon: None,
            reference: None,
            reference_hash: None,
            decimals: 18,
        },
        initial_supply: None,
        key_service: Some(acc(KEY_SERVICE)),
        revenue_tokens: vec![acc(USDC)],
        crowdfund: None,
    }
}

pub fn setup_with(edit: impl FnOnce(&mut ModelInit)) -> ModelToken {
    // A fresh contract: drop what an earlier run on this thread left in the mocked trie.
    fresh_chain();
    ctx(OWNER, NearToken::from_yoctonear(0));
    let mut init = model_init();
    edit(&mut init);
    ModelToken::new(init).unwrap_or_else(|e| panic!("{e}"))
}

pub fn setup() -> ModelToken {
    setup_with(|_| {})
}

pub fn register(t: &mut ModelToken, who: &str) {
    let min = t.storage_balance_bounds().min;
    ctx(who, min);
    t.storage_deposit(None, None);
}

/// A token with these holders registered and minted.
pub fn setup_with_holders(holders: &[(&str, u128)]) -> ModelToken {
    let mut t = setup();
    for &(who, amount) in holders {
        register(&mut t, who);
        if amount > 0 {
            t.mint(&acc(who), amount, None).unwrap();
        }
    }
    t
}

pub fn deposit_near(t: &mut ModelToken, amount: u128) {
    ctx(MARKET, NearToken::from_yoctonear(amount));
    t.deposit_revenue();
}

/// The contract's storage usage with every buffered collection written out (the root state
/// itself is never written by a unit test).
pub fn flushed_usage(t: &mut ModelToken) -> u64 {
    t.holders.flush();
    t.grants.flush();
    t.manifest.flush();
    t.metadata.flush();
    near_sdk::env::storage_usage()
}

/// The storage invariant around one call (beside the funds checks): the storage usage changes
/// by exactly `charged` bytes, what the call made its caller pay for (negative: refunded; 0
/// for a call that must not grow the state). Not for NEP-145 registrations: a holder pays once
/// for its record at its largest, so its record may take fewer bytes than it paid for.
pub fn assert_storage_paid<T>(
    t: &mut ModelToken,
    what: &str,
    call: impl FnOnce(&mut ModelToken) -> (T, i64),
) -> T {
    let before = flushed_usage(t);
    let (out, charged) = call(t);
    let grown = i128::from(flushed_usage(t)) - i128::from(before);
    assert_eq!(
        i128::from(charged),
        grown,
        "{what}: {charged} bytes were paid for, storage changed by {grown}"
    );
    out
}
