//! `ecloud-deploy` against a fresh chain: every contract deployed, initialised and wired, and
//! the refusals a wrong invocation gets.

use ecloud_deploy::plan::{Options, TestToken};
use ecloud_deploy::{DeployError, Network, Plan, deploy};
use near_workspaces::types::NearToken;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn credentials_file(dir: &Path, account: &near_workspaces::Account) -> PathBuf {
    let path = dir.join(format!("{}.json", account.id()));
    let key = account.secret_key();
    let body = json!({
        "account_id": account.id(),
        "public_key": key.public_key().to_string(),
        "private_key": key.to_string(),
    });
    std::fs::write(&path, body.to_string()).expect("write credentials");
    path
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ecloud-deploy-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn quiet(_: &str) {}

#[tokio::test]
async fn deploys_initialises_and_wires_every_contract() -> anyhow::Result<()> {
    let worker = sandbox_tests::sandbox().await?;
    let root = worker.root_account()?;
    let dir = scratch_dir("ok");
    let credentials = credentials_file(&dir, &root);
    let dev_ca = near_crypto::SecretKey::from_random(near_crypto::KeyType::ED25519).public_key();
    let options = Options {
        dev_ca_key: Some(dev_ca.to_string()),
        test_token: Some(TestToken::default()),
        ..Options::default()
    };
    let plan = Plan::new(Network::Localnet, root.id().clone(), options.clone())?;
    let mut lines = Vec::new();
    let deployment = deploy(
        &plan,
        &worker.rpc_addr(),
        &credentials,
        &sandbox_tests::wasm_dir(),
        &mut |line: &str| lines.push(line.to_string()),
    )
    .await?;
    assert!(lines.len() >= 8, "progress lines: {lines:?}");

    let market: Value = worker
        .view(&deployment.marketplace, "get_config")
        .await?
        .json()?;
    assert_eq!(market["registry"], json!(deployment.registry));
    assert_eq!(market["model_factory"], json!(deployment.model_factory));
    assert_eq!(market["owner"], json!(root.id()));
    let tokens: Value = worker
        .view(&deployment.marketplace, "accepted_tokens")
        .await?
        .json()?;
    let token = deployment.token.clone().expect("test token deployed");
    assert_eq!(tokens[0][0], json!(token), "{tokens}");
    let policy: Value = worker
        .view(&deployment.registry, "get_policy")
        .await?
        .json()?;
    assert_eq!(policy["dev_mode"], json!(true), "{policy}");
    assert_eq!(policy["dev_ca_key"], json!(dev_ca.to_string()));
    let code: Value = worker
        .view(&deployment.model_factory, "model_code")
        .await?
        .json()?;
    assert!(code["hash"].is_string(), "{code}");
    assert_eq!(deployment.model_code_hash.as_deref(), code["hash"].as_str());
    let supply: Value = worker
        .view(&token, "ft_balance_of")
        .args_json(json!({ "account_id": root.id() }))
        .await?
        .json()?;
    assert_eq!(supply, json!(TestToken::default().total_supply.to_string()));
    let registered: Value = worker
        .view(&token, "storage_balance_of")
        .args_json(json!({ "account_id": deployment.marketplace }))
        .await?
        .json()?;
    assert!(
        registered.is_object(),
        "marketplace registered in the token: {registered}"
    );

    // The record round-trips and names a height at or before the deployment.
    let record = dir.join("deployment.json");
    deployment.save(&record)?;
    assert_eq!(
        ecloud_deploy::Deployment::load(&record).map_err(anyhow::Error::msg)?,
        deployment
    );

    // The same plan again: nothing is overwritten.
    let again = deploy(
        &plan,
        &worker.rpc_addr(),
        &credentials,
        &sandbox_tests::wasm_dir(),
        &mut quiet,
    )
    .await;
    assert!(
        matches!(&again, Err(DeployError::AccountExists(a)) if *a == plan.registry.account),
        "{again:?}"
    );
    Ok(())
}

#[tokio::test]
async fn refuses_a_wrong_chain_a_poor_deployer_and_foreign_credentials() -> anyhow::Result<()> {
    let worker = sandbox_tests::sandbox().await?;
    let root = worker.root_account()?;
    let dir = scratch_dir("refusals");
    let root_credentials = credentials_file(&dir, &root);
    let wasm = sandbox_tests::wasm_dir();

    // A testnet plan sent to localnet: the chain id does not match.
    let testnet = Plan::new(Network::Testnet, root.id().clone(), Options::default())?;
    let err = deploy(
        &testnet,
        &worker.rpc_addr(),
        &root_credentials,
        &wasm,
        &mut quiet,
    )
    .await;
    assert!(
        matches!(err, Err(DeployError::ChainMismatch { .. })),
        "{err:?}"
    );

    // A deployer with 5 NEAR cannot pay for the code: refused before any transaction.
    let poor = root
        .create_subaccount("poor")
        .initial_balance(NearToken::from_near(5))
        .transact()
        .await?
        .into_result()?;
    let poor_credentials = credentials_file(&dir, &poor);
    let plan = Plan::new(Network::Localnet, poor.id().clone(), Options::default())?;
    let err = deploy(
        &plan,
        &worker.rpc_addr(),
        &poor_credentials,
        &wasm,
        &mut quiet,
    )
    .await;
    assert!(
        matches!(err, Err(DeployError::InsufficientBalance { .. })),
        "{err:?}"
    );
    assert!(
        worker.view_account(&plan.registry.account).await.is_err(),
        "nothing was created"
    );

    // Credentials of another account than the plan's deployer.
    let err = deploy(
        &plan,
        &worker.rpc_addr(),
        &root_credentials,
        &wasm,
        &mut quiet,
    )
    .await;
    assert!(
        matches!(err, Err(DeployError::SignerMismatch { .. })),
        "{err:?}"
    );

    // A missing wasm directory names the file and the fix.
    let err = deploy(
        &plan,
        &worker.rpc_addr(),
        &poor_credentials,
        Path::new("/nonexistent"),
        &mut quiet,
    )
    .await;
    let text = err.expect_err("no wasm").to_string();
    assert!(text.contains("build-contracts.sh"), "{text}");
    Ok(())
}
