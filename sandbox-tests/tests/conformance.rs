//! near-workspaces against the node in NEAR_SANDBOX_BIN_PATH (localnet by default): written
//! against chain behaviour only, so a real near-sandbox binary passes it unchanged.

use near_workspaces::types::{AccessKey, NearToken, SecretKey};
use near_workspaces::{Account, AccountId};
use sandbox_tests::{probe_wasm, sandbox, with_probe};
use serde_json::json;

const MILLI: NearToken = NearToken::from_millinear(1);

#[tokio::test]
async fn deploy_call_view_and_state() -> anyhow::Result<()> {
    let (worker, contract) = with_probe().await?;
    let outcome = contract
        .call("set")
        .args_json(json!({"key": "color", "value": "blue"}))
        .transact()
        .await?;
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(outcome.logs(), vec!["set color"]);

    let value: Option<String> = contract
        .view("get")
        .args_json(json!({"key": "color"}))
        .await?
        .json()?;
    assert_eq!(value.as_deref(), Some("blue"));

    let state = worker.view_state(contract.id()).await?;
    assert_eq!(
        state.get(b"color".as_slice()).map(Vec::as_slice),
        Some(b"blue".as_slice())
    );
    assert_eq!(worker.view_code(contract.id()).await?, probe_wasm());

    let account = contract.view_account().await?;
    assert!(account.storage_usage > probe_wasm().len() as u64);
    Ok(())
}

#[tokio::test]
async fn a_panic_fails_the_call_with_its_message_and_changes_nothing() -> anyhow::Result<()> {
    let (_worker, contract) = with_probe().await?;
    let outcome = contract
        .call("fail")
        .args_json(json!({"message": "boom 42"}))
        .transact()
        .await?;
    assert!(outcome.is_failure());
    let failure = format!("{:?}", outcome.into_result().unwrap_err());
    assert!(
        failure.contains("Smart contract panicked: boom 42"),
        "{failure}"
    );

    let err = contract
        .view("fail")
        .args_json(json!({"message": "view boom"}))
        .await;
    let err = format!("{:?}", err.unwrap_err());
    assert!(err.contains("view boom"), "{err}");
    Ok(())
}

#[tokio::test]
async fn cross_contract_promises_report_failures_and_refund_deposits() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let a = worker.dev_deploy(probe_wasm()).await?;
    let b = worker.dev_deploy(probe_wasm()).await?;

    // then: a successful call and its callback.
    let ok: String = a
        .call("relay")
        .args_json(json!({"target": b.id(), "method": "echo", "args": "{\"value\":\"hi\"}", "deposit": "0"}))
        .max_gas()
        .transact()
        .await?
        .json()?;
    assert_eq!(ok, "ok:\"hi\"");

    // then: the called contract panics with 1 NEAR attached; the callback sees the failure and
    // the deposit goes back to the caller.
    let user = worker.dev_create_account().await?;
    let a_before = a.view_account().await?.balance;
    let b_before = b.view_account().await?.balance;
    let outcome = user
        .call(a.id(), "relay")
        .args_json(json!({"target": b.id(), "method": "fail", "args": "{\"message\":\"no\"}", "deposit": NearToken::from_near(1)}))
        .deposit(NearToken::from_near(1))
        .max_gas()
        .transact()
        .await?;
    assert_eq!(outcome.receipt_failures().len(), 1, "{outcome:?}");
    let text: String = outcome.json()?;
    assert_eq!(text, "failed");
    let a_after = a.view_account().await?.balance;
    let b_after = b.view_account().await?.balance;
    // a received the user's 1 NEAR and got back the 1 NEAR it forwarded to b.
    assert!(
        a_after >= a_before.saturating_add(NearToken::from_millinear(999)),
        "{a_before} -> {a_after}"
    );
    // b kept nothing of the deposit (at most a gas reward).
    assert!(
        b_after < b_before.saturating_add(MILLI.saturating_mul(10)),
        "{b_before} -> {b_after}"
    );

    // and: two calls joined, one succeeds, one fails; the callback sees both.
    let results: Vec<String> = a
        .call("fan_out")
        .args_json(json!({"target": b.id(), "value": "x"}))
        .max_gas()
        .transact()
        .await?
        .json()?;
    assert_eq!(results, vec!["ok:\"x\"".to_string(), "failed".to_string()]);
    Ok(())
}

#[tokio::test]
async fn gas_is_charged_at_the_gas_price_and_unused_gas_refunded() -> anyhow::Result<()> {
    let (worker, contract) = with_probe().await?;
    let user = worker.dev_create_account().await?;
    let before = user.view_account().await?.balance;
    let outcome = user
        .call(contract.id(), "echo")
        .args_json(json!({"value": "v"}))
        .max_gas()
        .transact()
        .await?;
    assert!(outcome.is_success());
    let after = user.view_account().await?.balance;
    let spent = before.saturating_sub(after);
    let burnt = outcome.total_gas_burnt;
    // 300 Tgas were bought; what is left is far less than their price: unused gas came back.
    assert!(spent < NearToken::from_millinear(10), "spent {spent}");
    assert!(spent >= NearToken::from_yoctonear(u128::from(burnt.as_gas()) * 100_000_000 / 2));
    Ok(())
}

#[tokio::test]
async fn function_call_keys_are_limited_to_their_receiver_methods_and_allowance()
-> anyhow::Result<()> {
    let (worker, contract) = with_probe().await?;
    let owner = worker.dev_create_account().await?;
    let key = SecretKey::from_random(near_workspaces::types::KeyType::ED25519);
    owner
        .batch(owner.id())
        .add_key(
            key.public_key(),
            AccessKey::function_call_access(contract.id(), &["set"], Some(NearToken::from_near(1))),
        )
        .transact()
        .await?
        .into_result()?;
    let limited = Account::from_secret_key(owner.id().clone(), key.clone(), &worker);

    limited
        .call(contract.id(), "set")
        .args_json(json!({"key": "k", "value": "v"}))
        .transact()
        .await?
        .into_result()?;

    let wrong_method = limited
        .call(contract.id(), "echo")
        .args_json(json!({"value": "v"}))
        .transact()
        .await;
    let wrong_method = format!("{:?}", wrong_method.unwrap_err());
    assert!(
        wrong_method.contains("MethodNameMismatch"),
        "{wrong_method}"
    );

    let other: AccountId = worker.dev_create_account().await?.id().clone();
    let wrong_receiver = limited
        .transfer_near(&other, NearToken::from_yoctonear(1))
        .await;
    let wrong_receiver = format!("{:?}", wrong_receiver.unwrap_err());
    assert!(
        wrong_receiver.contains("RequiresFullAccess"),
        "{wrong_receiver}"
    );

    let keys = owner.view_access_keys().await?;
    assert_eq!(keys.len(), 2);

    owner
        .batch(owner.id())
        .delete_key(key.public_key())
        .transact()
        .await?
        .into_result()?;
    let deleted = limited
        .call(contract.id(), "set")
        .args_json(json!({"key": "k", "value": "w"}))
        .transact()
        .await;
    let deleted = format!("{:?}", deleted.unwrap_err());
    assert!(
        deleted.contains("AccessKeyNotFound") || deleted.contains("access key"),
        "{deleted}"
    );
    Ok(())
}

#[tokio::test]
async fn state_must_be_paid_for() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let root = worker.root_account()?;
    // 1 NEAR pays for ~100 kB; the probe is larger.
    let poor = root
        .create_subaccount("poor")
        .initial_balance(NearToken::from_near(1))
        .transact()
        .await?
        .into_result()?;
    let deploy = poor.deploy(probe_wasm()).await?;
    let failure = format!("{:?}", deploy.into_result().unwrap_err());
    assert!(failure.contains("LackBalanceForState"), "{failure}");
    assert!(
        worker.view_code(poor.id()).await.is_err(),
        "a refused deploy leaves no code"
    );

    let rich = root
        .create_subaccount("rich")
        .initial_balance(NearToken::from_near(3))
        .transact()
        .await?
        .into_result()?;
    let contract = rich.deploy(probe_wasm()).await?.into_result()?;
    let usage = contract.view_account().await?.storage_usage;
    // 300 kB more than 3 NEAR can pay for.
    let outcome = contract
        .call("fill")
        .args_json(json!({"bytes": 300_000}))
        .max_gas()
        .transact()
        .await?;
    let failure = format!("{:?}", outcome.into_result().unwrap_err());
    assert!(failure.contains("LackBalanceForState"), "{failure}");
    assert_eq!(contract.view_account().await?.storage_usage, usage);
    Ok(())
}

#[tokio::test]
async fn fast_forward_moves_height_and_time() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let before = worker.view_block().await?;
    worker.fast_forward(1000).await?;
    let after = worker.view_block().await?;
    assert!(
        after.height() >= before.height() + 1000,
        "{} -> {}",
        before.height(),
        after.height()
    );
    assert!(after.timestamp() > before.timestamp());
    Ok(())
}

#[tokio::test]
async fn patch_state_writes_contract_storage_and_accounts() -> anyhow::Result<()> {
    let (worker, contract) = with_probe().await?;
    worker
        .patch_state(contract.id(), b"color", b"green")
        .await?;
    let value: Option<String> = contract
        .view("get")
        .args_json(json!({"key": "color"}))
        .await?
        .json()?;
    assert_eq!(value.as_deref(), Some("green"));

    let user = worker.dev_create_account().await?;
    worker
        .patch(user.id())
        .account(
            near_workspaces::types::AccountDetailsPatch::default()
                .balance(NearToken::from_near(12345)),
        )
        .transact()
        .await?;
    assert_eq!(
        user.view_account().await?.balance,
        NearToken::from_near(12345)
    );
    Ok(())
}

#[tokio::test]
async fn yields_are_resumed_or_time_out() -> anyhow::Result<()> {
    let (worker, contract) = with_probe().await?;
    let asked = contract.call("ask").max_gas().transact_async().await?;
    // Let the yield be created before answering it.
    worker.fast_forward(3).await?;
    let resumed: bool = contract
        .call("answer")
        .args_json(json!({"text": "42"}))
        .max_gas()
        .transact()
        .await?
        .json()?;
    assert!(resumed);
    let answer: String = asked.await?.json()?;
    assert_eq!(answer, "answer:42");

    let asked = contract.call("ask").max_gas().transact_async().await?;
    worker.fast_forward(3).await?;
    // Past the protocol's yield timeout (200 blocks) the callback runs with a failed result.
    worker.fast_forward(250).await?;
    let answer: String = asked.await?.json()?;
    assert_eq!(answer, "timeout");
    let late: bool = contract
        .call("answer")
        .args_json(json!({"text": "late"}))
        .max_gas()
        .transact()
        .await?
        .json()?;
    assert!(!late);
    Ok(())
}
