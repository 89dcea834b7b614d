//! `ecloud-deploy` against a fresh chain: every contract deployed, initialised and wired, its
//! governance delay set and the deployer's keys gone from the contract accounts (or kept, when
//! asked), and the refusals a wrong invocation gets.

use ecloud_deploy::plan::{Options, TestToken};
use ecloud_deploy::{DeployError, Deployment, Network, Plan, deploy};
use enclave_cloud_common::governance::methods::GOVERNANCE;
use enclave_cloud_common::governance::{Change, Timelock};
use enclave_cloud_common::interfaces::marketplace::methods::{ACCEPTED_TOKENS, GET_CONFIG};
use enclave_cloud_common::interfaces::marketplace::{Config, MarketplaceSetting, TokenRate};
use enclave_cloud_common::interfaces::method::NoArgs;
use enclave_cloud_common::interfaces::model_factory::FactorySetting;
use enclave_cloud_common::interfaces::model_factory::methods::MODEL_CODE;
use enclave_cloud_common::interfaces::registry::methods::GET_POLICY;
use enclave_cloud_common::interfaces::registry::{Policy, RegistrySetting};
use near_workspaces::network::Sandbox;
use near_workspaces::types::{AccessKeyPermission, NearToken, PublicKey};
use near_workspaces::{AccountId, Worker};
use sandbox_tests::calls::view;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

const HOUR_NS: u64 = 3_600 * 1_000_000_000;

/// The full-access keys of `account`, from the chain's access key list.
async fn full_access_keys(
    worker: &Worker<Sandbox>,
    account: &AccountId,
) -> anyhow::Result<Vec<PublicKey>> {
    Ok(worker
        .view_access_keys(account)
        .await?
        .into_iter()
        .filter(|k| matches!(k.access_key.permission, AccessKeyPermission::FullAccess))
        .map(|k| k.public_key)
        .collect())
}

/// The governance delay each of the registry, marketplace and factory reports, read through
/// each contract's own `Change` type.
async fn governance_delays(
    worker: &Worker<Sandbox>,
    deployment: &Deployment,
) -> anyhow::Result<[u64; 3]> {
    let registry: Timelock<Change<RegistrySetting>> =
        view(worker, &deployment.registry, GOVERNANCE, &NoArgs {}).await?;
    let market: Timelock<Change<MarketplaceSetting>> =
        view(worker, &deployment.marketplace, GOVERNANCE, &NoArgs {}).await?;
    let factory: Timelock<Change<FactorySetting>> =
        view(worker, &deployment.model_factory, GOVERNANCE, &NoArgs {}).await?;
    for pending in [
        registry.pending.len(),
        market.pending.len(),
        factory.pending.len(),
    ] {
        assert_eq!(pending, 0, "the wiring left no pending proposal");
    }
    Ok([registry.delay_ns.0, market.delay_ns.0, factory.delay_ns.0])
}

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
        governance_delay: Some(Duration::from_secs(3_600)),
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
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("registry: governance delay 1h")),
        "progress names the delay: {lines:?}"
    );

    // The delay asked for is in force on all three, and the record says so.
    assert_eq!(governance_delays(&worker, &deployment).await?, [HOUR_NS; 3]);
    assert_eq!(deployment.governance_delay_ns, HOUR_NS);
    // By default no full-access key is left on the contract accounts: only their code, so
    // governance, changes them now. The test token keeps the deployer's key.
    for contract in [
        &deployment.registry,
        &deployment.marketplace,
        &deployment.model_factory,
    ] {
        let keys = full_access_keys(&worker, contract).await?;
        assert!(keys.is_empty(), "{contract} still has {keys:?}");
    }
    assert!(deployment.access_keys_removed);

    let market: Config = view(&worker, &deployment.marketplace, GET_CONFIG, &NoArgs {}).await?;
    assert_eq!(market.registry, deployment.registry);
    assert_eq!(market.model_factory, Some(deployment.model_factory.clone()));
    assert_eq!(&market.owner, root.id());
    let tokens: Vec<(AccountId, TokenRate)> = view(
        &worker,
        &deployment.marketplace,
        ACCEPTED_TOKENS,
        &NoArgs {},
    )
    .await?;
    let token = deployment.token.clone().expect("test token deployed");
    assert_eq!(
        tokens.iter().map(|(t, _)| t).collect::<Vec<_>>(),
        vec![&token],
        "{tokens:?}"
    );
    assert_eq!(
        tokens[0].1.units_per_near.0,
        TestToken::default().units_per_near
    );
    let policy: Policy = view(&worker, &deployment.registry, GET_POLICY, &NoArgs {}).await?;
    assert!(policy.dev_mode, "{policy:?}");
    assert_eq!(
        policy.dev_ca_key.map(|k| k.to_string()),
        Some(dev_ca.to_string())
    );
    // The factory's code id is read as JSON, as the deployment record stores it.
    let code: Value = view(&worker, &deployment.model_factory, MODEL_CODE, &NoArgs {}).await?;
    assert!(code["hash"].is_string(), "{code}");
    assert_eq!(deployment.model_code_hash.as_deref(), code["hash"].as_str());
    // The test token is a plain NEP-141 example: its views are written out.
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
async fn keep_access_keys_leaves_the_deployers_key_on_every_contract() -> anyhow::Result<()> {
    let worker = sandbox_tests::sandbox().await?;
    let root = worker.root_account()?;
    let dir = scratch_dir("keep-keys");
    let credentials = credentials_file(&dir, &root);
    let options = Options {
        keep_access_keys: true,
        ..Options::default()
    };
    let plan = Plan::new(Network::Localnet, root.id().clone(), options)?;
    let mut lines = Vec::new();
    let deployment = deploy(
        &plan,
        &worker.rpc_addr(),
        &credentials,
        &sandbox_tests::wasm_dir(),
        &mut |line: &str| lines.push(line.to_string()),
    )
    .await?;
    assert!(
        lines.iter().any(|l| l.contains("--keep-access-keys")),
        "progress says the keys stay: {lines:?}"
    );
    let deployer_key = root.secret_key().public_key();
    for contract in [
        &deployment.registry,
        &deployment.marketplace,
        &deployment.model_factory,
    ] {
        assert_eq!(
            full_access_keys(&worker, contract).await?,
            vec![deployer_key.clone()],
            "{contract}"
        );
    }
    assert!(!deployment.access_keys_removed);
    // Localnet's default delay: none, every change applies when proposed.
    assert_eq!(governance_delays(&worker, &deployment).await?, [0; 3]);
    assert_eq!(deployment.governance_delay_ns, 0);
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
