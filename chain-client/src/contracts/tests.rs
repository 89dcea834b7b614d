//! The calls the clients build: name, gas and deposit from the interface, JSON arguments as
//! the contracts read them.

use enclave_cloud_common::interfaces::marketplace::methods as market;
use enclave_cloud_common::{Asset, JobId, NodeId};
use near_primitives::action::Action;
use serde_json::json;

use super::*;

fn chain() -> ChainClient {
    ChainClient::new("http://127.0.0.1:9")
}

fn account(s: &str) -> AccountId {
    s.parse().unwrap()
}

fn action(call: &FunctionCall) -> (String, serde_json::Value, Gas, Balance) {
    let Action::FunctionCall(fc) = call.action() else {
        panic!("not a function call")
    };
    (
        fc.method_name.clone(),
        serde_json::from_slice(&fc.args).unwrap(),
        fc.gas,
        fc.deposit,
    )
}

#[test]
fn claim_job_takes_its_name_gas_and_no_deposit_from_the_interface() {
    let chain = chain();
    let market_client = MarketplaceClient::new(&chain, account("market.test.near"));
    let call = market_client.claim_job(JobId(3), NodeId(1)).unwrap();
    let (name, args, gas, deposit) = action(call.function_call());
    assert_eq!(name, market::CLAIM_JOB.name);
    assert_eq!(args, json!({"job_id": "3", "node_id": "1"}));
    assert_eq!(gas.as_gas(), market::CLAIM_JOB.gas.as_gas());
    assert_eq!(deposit, Balance::ZERO);
    assert_eq!(
        call.function_call().receiver_id,
        account("market.test.near")
    );
}

#[test]
fn one_yocto_and_payable_methods_attach_what_they_must() {
    let chain = chain();
    let token = ModelTokenClient::new(&chain, account("m.factory.test.near"));
    let (name, args, _, deposit) =
        action(token.claim_revenue(Asset::Near).unwrap().function_call());
    assert_eq!(name, "claim_revenue");
    assert_eq!(args, json!({"asset": {"kind": "near"}}));
    assert_eq!(deposit, Balance::from_yoctonear(1));

    let registry = RegistryClient::new(&chain, account("registry.test.near"));
    let stake = registry
        .deposit_stake(Balance::from_near(3))
        .unwrap()
        .gas(Gas::from_teragas(7));
    let (name, args, gas, deposit) = action(stake.function_call());
    assert_eq!(name, "deposit_stake");
    assert_eq!(args, json!({}));
    assert_eq!(gas, Gas::from_teragas(7));
    assert_eq!(deposit, Balance::from_near(3));
}

#[test]
fn a_payable_method_cannot_be_sent_without_its_deposit() {
    let chain = chain();
    let contract = Contract {
        chain: &chain,
        id: &account("market.test.near"),
    };
    let err = contract
        .call::<()>(market::SUBMIT_JOB, &NoArgsForTest {})
        .err()
        .expect("refused");
    assert!(err.to_string().contains("submit_job"), "{err}");
}

#[derive(serde::Serialize)]
struct NoArgsForTest {}

#[test]
fn register_node_omits_absent_details() {
    let chain = chain();
    let registry = RegistryClient::new(&chain, account("registry.test.near"));
    let call = registry
        .register_node(json!({"kind": "dev"}), None)
        .unwrap();
    let (name, args, gas, _) = action(call.function_call());
    assert_eq!(name, "register_node");
    assert_eq!(args, json!({"bundle": {"kind": "dev"}}));
    assert_eq!(gas, Gas::from_teragas(300));
}

#[test]
fn governance_calls_come_from_the_shared_table_with_typed_changes() {
    use enclave_cloud_common::governance::Change;
    use enclave_cloud_common::governance::methods as gov;
    use enclave_cloud_common::interfaces::registry::RegistrySetting;
    use near_sdk::json_types::U64;

    let chain = chain();
    let registry = RegistryClient::new(&chain, account("registry.test.near"));
    let propose = registry
        .propose_change(Change::Setting(RegistrySetting::SetMarketplace {
            marketplace: account("market.test.near"),
        }))
        .unwrap();
    let (name, args, gas, deposit) = action(propose.function_call());
    assert_eq!(name, gov::PROPOSE_CHANGE.name);
    assert_eq!(
        args,
        json!({"change": {"setting": {"set_marketplace": {"marketplace": "market.test.near"}}}})
    );
    assert_eq!(gas.as_gas(), gov::PROPOSE_CHANGE.gas.as_gas());
    assert_eq!(deposit, Balance::from_yoctonear(1));

    let market = MarketplaceClient::new(&chain, account("market.test.near"));
    let delay = market
        .propose_change(Change::SetDelay {
            delay_ns: U64(3_600_000_000_000),
        })
        .unwrap();
    let (_, args, _, _) = action(delay.function_call());
    assert_eq!(
        args,
        json!({"change": {"set_delay": {"delay_ns": "3600000000000"}}})
    );

    let factory = ModelFactoryClient::new(&chain, account("models.test.near"));
    let (name, args, gas, deposit) = action(factory.apply_change(U64(4)).unwrap().function_call());
    assert_eq!(name, gov::APPLY_CHANGE.name);
    assert_eq!(args, json!({"id": "4"}));
    assert_eq!(gas.as_gas(), gov::APPLY_CHANGE.gas.as_gas());
    assert_eq!(deposit, Balance::ZERO);

    let token = ModelTokenClient::new(&chain, account("m.models.test.near"));
    let (name, args, _, deposit) = action(token.cancel_change(U64(2)).unwrap().function_call());
    assert_eq!(name, gov::CANCEL_CHANGE.name);
    assert_eq!(args, json!({"id": "2"}));
    assert_eq!(deposit, Balance::from_yoctonear(1));

    // The upgrade's input is the wasm itself, not JSON.
    let upgrade = registry.apply_upgrade(b"\0asm\x01\0\0\0".to_vec());
    let Action::FunctionCall(fc) = upgrade.function_call().action() else {
        panic!("not a function call")
    };
    assert_eq!(fc.method_name, gov::APPLY_UPGRADE.name);
    assert_eq!(fc.args, b"\0asm\x01\0\0\0");
    assert_eq!(fc.gas.as_gas(), gov::APPLY_UPGRADE.gas.as_gas());
    assert_eq!(fc.deposit, Balance::ZERO);
}

#[test]
fn the_governance_view_decodes_into_the_contracts_change_type() {
    use enclave_cloud_common::governance::{Change, Timelock};
    use enclave_cloud_common::interfaces::model_factory::FactorySetting;

    let view = json!({
        "delay_ns": "86400000000000",
        "next_id": "3",
        "pending": [{
            "id": "2",
            "change": {"setting": {"set_owner": {"owner": "dao.test.near"}}},
            "proposed_by": "test.near",
            "proposed_at_ns": "1",
            "applies_at_ns": "86400000000001"
        }]
    });
    let timelock: Timelock<Change<FactorySetting>> = serde_json::from_value(view).unwrap();
    assert_eq!(timelock.delay_ns.0, 86_400_000_000_000);
    assert_eq!(timelock.pending[0].id.0, 2);
    assert_eq!(
        timelock.pending[0].change,
        Change::Setting(FactorySetting::SetOwner {
            owner: account("dao.test.near")
        })
    );
}
