//! NEP-591 global contracts, as a NEAR node executes them (protocol 88): deployed from a
//! contract and from a transaction, by code hash and by account id, used by other accounts,
//! upgraded for their users, viewed over RPC, and paid for by burning the storage cost.
//! Written against chain behaviour: a real near-sandbox passes it unchanged.

use near_primitives::action::{
    Action, DeployGlobalContractAction, FunctionCallAction, GlobalContractDeployMode,
    GlobalContractIdentifier, UseGlobalContractAction,
};
use near_primitives::hash::CryptoHash;
use near_workspaces::network::Sandbox;
use near_workspaces::types::{Gas, NearToken};
use near_workspaces::{Account, AccountId, Worker};
use sandbox_tests::{commit, crypto_key, key_nonce, probe_wasm, rpc, sandbox, signed_tx};
use serde_json::{Value, json};

/// The smallest contract: one exported method `get` that does nothing (33 bytes).
const TINY_WASM: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
    0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
    0x07, 0x07, 0x01, 0x03, b'g', b'e', b't', 0x00, 0x00, // export "get" = function 0
    0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code section: an empty body
];

/// Protocol 88's `global_contract_storage_amount_per_byte`: 0.0001 NEAR.
const GLOBAL_STORAGE_PER_BYTE: u128 = 100_000_000_000_000_000_000;

const MAX_GAS: Gas = Gas::from_tgas(300);

/// A sub-account of the root account with `near` NEAR and the probe contract.
async fn probe_account(
    worker: &Worker<Sandbox>,
    name: &str,
    near: u128,
) -> anyhow::Result<Account> {
    let account = worker
        .root_account()?
        .create_subaccount(name)
        .initial_balance(NearToken::from_near(near))
        .transact()
        .await?
        .into_result()?;
    account.deploy(probe_wasm()).await?.into_result()?;
    Ok(account)
}

async fn view_account(url: &str, account_id: &AccountId) -> anyhow::Result<Value> {
    let reply = rpc(
        url,
        "query",
        json!({"request_type": "view_account", "finality": "final", "account_id": account_id}),
    )
    .await?;
    Ok(reply["result"].clone())
}

async fn query(url: &str, request: Value) -> anyhow::Result<Value> {
    let mut params = request;
    params["finality"] = json!("final");
    rpc(url, "query", params).await
}

fn code_of(reply: &Value) -> anyhow::Result<Vec<u8>> {
    use base64::Engine;
    let text = reply["result"]["code_base64"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no code in {reply}"))?;
    Ok(base64::engine::general_purpose::STANDARD.decode(text)?)
}

fn balance(view: &Value) -> u128 {
    view["amount"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_default()
}

/// Waits until the distribution of a deployment (a block after it) has stored the code.
async fn wait_for_global_code(url: &str, request: Value) -> anyhow::Result<Vec<u8>> {
    for _ in 0..50 {
        let reply = query(url, request.clone()).await?;
        if reply.get("result").is_some() {
            return code_of(&reply);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("global contract {request} never appeared")
}

#[tokio::test]
async fn a_contract_deploys_a_global_contract_by_hash_and_a_sub_account_runs_it()
-> anyhow::Result<()> {
    let worker = sandbox().await?;
    let url = worker.rpc_addr();
    let factory = probe_account(&worker, "factory", 200).await?;
    let before = balance(&view_account(&url, factory.id()).await?);

    let outcome = factory
        .call(factory.id(), "deploy_global_by_hash")
        .args(probe_wasm().to_vec())
        .gas(MAX_GAS)
        .transact()
        .await?;
    assert!(outcome.is_success(), "{outcome:?}");
    // The storage of the code is burnt from the deployer's balance, once.
    let storage = GLOBAL_STORAGE_PER_BYTE * probe_wasm().len() as u128;
    let after = balance(&view_account(&url, factory.id()).await?);
    assert!(
        before - after >= storage,
        "paid {} for {storage} of storage",
        before - after
    );
    let hash = CryptoHash::hash_bytes(probe_wasm());
    let code = wait_for_global_code(
        &url,
        json!({"request_type": "view_global_contract_code", "code_hash": hash.to_string()}),
    )
    .await?;
    assert_eq!(code, probe_wasm());

    let outcome = factory
        .call(factory.id(), "create_user")
        .args_json(json!({"name": "user", "code_hash": hash.to_string()}))
        .deposit(NearToken::from_near(1))
        .gas(MAX_GAS)
        .transact()
        .await?;
    assert!(outcome.is_success(), "{outcome:?}");
    let user: AccountId = format!("user.{}", factory.id()).parse()?;

    // The user holds a reference, not a copy: 32 bytes of identifier, not the code.
    let view = view_account(&url, &user).await?;
    assert_eq!(view["global_contract_hash"], json!(hash.to_string()));
    assert!(view.get("global_contract_account_id").is_none(), "{view}");
    assert_eq!(view["code_hash"], json!(CryptoHash::default().to_string()));
    assert!(
        view["storage_usage"].as_u64().unwrap_or(u64::MAX) < 1000,
        "{view}"
    );
    let code = query(
        &url,
        json!({"request_type": "view_code", "account_id": user}),
    )
    .await?;
    assert_eq!(code_of(&code)?, probe_wasm());

    // Calls on the user run the global code against the user's own state.
    let outcome = factory
        .call(&user, "set")
        .args_json(json!({"key": "k", "value": "on the user"}))
        .transact()
        .await?;
    assert!(outcome.is_success(), "{outcome:?}");
    let value: Option<String> = worker
        .view(&user, "get")
        .args_json(json!({"key": "k"}))
        .await?
        .json()?;
    assert_eq!(value.as_deref(), Some("on the user"));
    let own: Option<String> = factory
        .view(factory.id(), "get")
        .args_json(json!({"key": "k"}))
        .await?
        .json()?;
    assert_eq!(own, None);
    Ok(())
}

#[tokio::test]
async fn a_global_contract_by_account_id_upgrades_for_its_users() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let url = worker.rpc_addr();
    let owner = probe_account(&worker, "owner", 200).await?;
    let outcome = owner
        .call(owner.id(), "deploy_global_by_account")
        .args(probe_wasm().to_vec())
        .gas(MAX_GAS)
        .transact()
        .await?;
    assert!(outcome.is_success(), "{outcome:?}");
    let by_owner = json!({"request_type": "view_global_contract_code_by_account_id", "account_id": owner.id()});
    assert_eq!(
        wait_for_global_code(&url, by_owner.clone()).await?,
        probe_wasm()
    );

    let outcome = owner
        .call(owner.id(), "create_user")
        .args_json(json!({"name": "user", "owner": owner.id()}))
        .deposit(NearToken::from_near(1))
        .gas(MAX_GAS)
        .transact()
        .await?;
    assert!(outcome.is_success(), "{outcome:?}");
    let user: AccountId = format!("user.{}", owner.id()).parse()?;
    let view = view_account(&url, &user).await?;
    assert_eq!(view["global_contract_account_id"], json!(owner.id()));
    assert!(view.get("global_contract_hash").is_none(), "{view}");
    let echoed: String = worker
        .view(&user, "echo")
        .args_json(json!({"value": "v1"}))
        .await?
        .json()?;
    assert_eq!(echoed, "v1");

    // The owner redeploys: every user runs the new code from then on.
    let outcome = owner
        .call(owner.id(), "deploy_global_by_account")
        .args(TINY_WASM.to_vec())
        .gas(MAX_GAS)
        .transact()
        .await?;
    assert!(outcome.is_success(), "{outcome:?}");
    for _ in 0..50 {
        if wait_for_global_code(&url, by_owner.clone()).await? == TINY_WASM {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let code = query(
        &url,
        json!({"request_type": "view_code", "account_id": user}),
    )
    .await?;
    assert_eq!(code_of(&code)?, TINY_WASM);
    let err = worker
        .view(&user, "echo")
        .args_json(json!({"value": "v2"}))
        .await
        .expect_err("the upgraded code has no echo");
    assert!(format!("{err:?}").contains("MethodNotFound"), "{err:?}");
    let outcome = owner.call(&user, "get").transact().await?;
    assert!(outcome.is_success(), "{outcome:?}");
    Ok(())
}

/// Signs `actions` from `account` to itself and commits them.
async fn own_tx(url: &str, account: &Account, actions: Vec<Action>) -> anyhow::Result<Value> {
    let key = crypto_key(account.secret_key());
    let nonce = key_nonce(url, account.id(), &key.public_key()).await?;
    let tx = signed_tx(url, account.id(), &key, account.id(), nonce + 1, actions).await?;
    commit(url, &tx).await
}

fn deploy_global(code: &[u8], deploy_mode: GlobalContractDeployMode) -> Action {
    Action::DeployGlobalContract(DeployGlobalContractAction {
        code: code.into(),
        deploy_mode,
    })
}

fn use_global(contract_identifier: GlobalContractIdentifier) -> Action {
    Action::UseGlobalContract(Box::new(UseGlobalContractAction {
        contract_identifier,
    }))
}

fn failure(reply: &Value) -> String {
    reply["result"]["status"]["Failure"].to_string()
}

#[tokio::test]
async fn transactions_deploy_and_use_global_contracts() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let url = worker.rpc_addr();
    let deployer = worker.dev_create_account().await?;
    let user = worker.dev_create_account().await?;
    let hash = CryptoHash::hash_bytes(TINY_WASM);

    // Using code nobody deployed fails with the identifier.
    let reply = own_tx(
        &url,
        &user,
        vec![use_global(GlobalContractIdentifier::CodeHash(hash))],
    )
    .await?;
    let text = failure(&reply);
    assert!(text.contains("GlobalContractDoesNotExist"), "{reply}");

    let before = balance(&view_account(&url, deployer.id()).await?);
    let reply = own_tx(
        &url,
        &deployer,
        vec![deploy_global(TINY_WASM, GlobalContractDeployMode::CodeHash)],
    )
    .await?;
    assert!(
        reply["result"]["status"].get("SuccessValue").is_some(),
        "{reply}"
    );
    let burnt: u128 = reply["result"]["receipts_outcome"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["outcome"]["tokens_burnt"].as_str()?.parse::<u128>().ok())
        .sum();
    let storage = GLOBAL_STORAGE_PER_BYTE * TINY_WASM.len() as u128;
    // The receipt's outcome counts the burnt storage with its gas.
    assert!(burnt >= storage, "burnt {burnt} < {storage}");
    let after = balance(&view_account(&url, deployer.id()).await?);
    assert!(before - after >= storage, "paid {}", before - after);
    let code = wait_for_global_code(
        &url,
        json!({"request_type": "view_global_contract_code", "code_hash": hash.to_string()}),
    )
    .await?;
    assert_eq!(code, TINY_WASM);

    // Use it and call it in one transaction.
    let reply = own_tx(
        &url,
        &user,
        vec![
            use_global(GlobalContractIdentifier::CodeHash(hash)),
            Action::FunctionCall(Box::new(FunctionCallAction {
                method_name: "get".to_string(),
                args: vec![],
                gas: near_primitives::types::Gas::from_teragas(10),
                deposit: NearToken::from_yoctonear(0),
            })),
        ],
    )
    .await?;
    assert!(
        reply["result"]["status"].get("SuccessValue").is_some(),
        "{reply}"
    );
    let view = view_account(&url, user.id()).await?;
    assert_eq!(view["global_contract_hash"], json!(hash.to_string()));

    // Unknown global code is an RPC error, as neard reports it.
    let missing = CryptoHash::hash_bytes(b"nothing");
    let reply = query(
        &url,
        json!({"request_type": "view_global_contract_code", "code_hash": missing.to_string()}),
    )
    .await?;
    assert_eq!(
        reply["error"]["cause"]["name"], "NO_GLOBAL_CONTRACT_CODE",
        "{reply}"
    );

    // Deploying costs more than a poor account holds: it fails and keeps its balance.
    let poor = worker
        .root_account()?
        .create_subaccount("poor")
        .initial_balance(NearToken::from_millinear(100))
        .transact()
        .await?
        .into_result()?;
    let mut code = TINY_WASM.to_vec();
    // A custom section (1998 bytes: name "x" and 1996 zeros) pads the module past 2 KB, so its
    // global storage costs 0.2 NEAR.
    code.extend_from_slice(&[0x00, 0xce, 0x0f, 0x01, b'x']);
    code.extend_from_slice(&[0u8; 1996]);
    let reply = own_tx(
        &url,
        &poor,
        vec![deploy_global(&code, GlobalContractDeployMode::AccountId)],
    )
    .await?;
    assert!(failure(&reply).contains("LackBalanceForState"), "{reply}");
    let reply = query(
        &url,
        json!({"request_type": "view_global_contract_code_by_account_id", "account_id": poor.id()}),
    )
    .await?;
    assert!(reply.get("error").is_some(), "{reply}");
    Ok(())
}
