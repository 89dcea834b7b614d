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
