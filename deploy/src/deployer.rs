//! Executes a [`Plan`] against a NEAR RPC endpoint with the deployer's near-cli credentials.

use std::path::{Path, PathBuf};

use enclave_cloud_common::governance::methods::{GOVERNANCE, PROPOSE_CHANGE, ProposeChangeArgs};
use enclave_cloud_common::governance::{Change, Timelock};
use enclave_cloud_common::interfaces::marketplace::TokenRate;
use enclave_cloud_common::interfaces::marketplace::methods::{
    SET_ACCEPTED_TOKEN, SetAcceptedTokenArgs, UPDATE_CONFIG, UpdateConfigArgs,
};
use enclave_cloud_common::interfaces::method::Method;
use enclave_cloud_common::interfaces::model_factory::methods::{MODEL_CODE, PUBLISH_MODEL_CODE};
use enclave_cloud_common::interfaces::registry::methods::{SET_MARKETPLACE, SetMarketplaceArgs};
use near_sdk::json_types::{U64, U128};
use near_workspaces::network::Testnet;
use near_workspaces::operations::{CallTransaction, Function};
use near_workspaces::result::ExecutionFinalResult;
use near_workspaces::types::{AccessKeyPermission, Gas, NearToken, PublicKey};
use near_workspaces::{AccessKey, Account, AccountId, Worker};
use serde_json::{Value, json};

use crate::network::{Network, ProtocolCheck};
use crate::plan::{ContractPlan, MODEL_TOKEN_WASM, Plan};
use crate::record::Deployment;
use chain_client::args::format_duration_ns;

/// Why a deployment stopped. Every variant names what to fix; nothing after the failing step
/// was sent.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("cannot reach the RPC at {url}: {reason}")]
    Rpc { url: String, reason: String },
    #[error("the RPC at {url} serves chain {actual:?}, not {expected:?}")]
    ChainMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("the network cannot run the contracts: {0}")]
    Protocol(ProtocolCheck),
    #[error("credentials {path}: {reason}")]
    Credentials { path: PathBuf, reason: String },
    #[error("the credentials are for {actual}, but the plan deploys under {expected}")]
    SignerMismatch {
        expected: AccountId,
        actual: AccountId,
    },
    #[error("{path}: {reason} (run ./scripts/build-contracts.sh)")]
    Wasm { path: PathBuf, reason: String },
    #[error("{0} already exists: choose another --prefix, or delete it first")]
    AccountExists(AccountId),
    #[error(
        "{account} holds {}, the deployment needs about {}",
        chain_client::format_near(.available.as_yoctonear()),
        chain_client::format_near(.needed.as_yoctonear())
    )]
    InsufficientBalance {
        account: AccountId,
        available: NearToken,
        needed: NearToken,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{step} failed: {reason}")]
    Transaction { step: String, reason: String },
}

/// Receives one line per step, as it starts.
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// The test token's `storage_deposit` (NEP-145; the token is outside the interfaces).
const TOKEN_STORAGE_GAS: Gas = Gas::from_tgas(30);
/// NEP-145 registration of the marketplace in the test token.
const TOKEN_STORAGE: NearToken = NearToken::from_millinear(10);
/// Transaction fees of the whole deployment, generously.
const FEES: NearToken = NearToken::from_near(1);

struct Loaded<'p> {
    plan: &'p ContractPlan,
    code: Vec<u8>,
    balance: NearToken,
}

fn read_wasm(dir: &Path, file: &str) -> Result<Vec<u8>, DeployError> {
    let path = dir.join(file);
    let code = std::fs::read(&path).map_err(|e| DeployError::Wasm {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if !code.starts_with(b"\0asm") {
        return Err(DeployError::Wasm {
            path,
            reason: "not a wasm module".into(),
        });
    }
    Ok(code)
}

/// `method` of one of our contracts with JSON `args`: the name, gas and fixed deposit from
/// its interface's method table. A payable method's deposit is the caller's to add. The
/// sandbox tests call our contracts through it too (`sandbox_tests::calls::call`).
pub fn contract_call(
    signer: &Account,
    contract: &AccountId,
    method: Method,
    args: &impl serde::Serialize,
) -> CallTransaction {
    let call = signer
        .call(contract, method.name)
        .args_json(args)
        .gas(method.gas);
    match method.fixed_deposit() {
        Some(deposit) if !deposit.is_zero() => call.deposit(deposit),
        _ => call,
    }
}

pub(crate) fn rpc_error(url: &str, e: impl std::fmt::Display) -> DeployError {
    DeployError::Rpc {
        url: url.to_string(),
        reason: e.to_string(),
    }
}

pub(crate) fn check_outcome(
    step: &str,
    result: near_workspaces::Result<ExecutionFinalResult>,
) -> Result<Value, DeployError> {
    let outcome = result.map_err(|e| DeployError::Transaction {
        step: step.to_string(),
        reason: e.to_string(),
    })?;
    let success = outcome
        .into_result()
        .map_err(|failure| DeployError::Transaction {
            step: step.to_string(),
            reason: failure.to_string(),
        })?;
    Ok(success.json::<Value>().unwrap_or(Value::Null))
}

/// Storage staking price and the global contract price at the network's protocol version.
struct Prices {
    per_byte: NearToken,
    global_per_byte: NearToken,
}

fn prices(chain_id: &str, protocol_version: u32) -> Prices {
    let store = near_parameters::RuntimeConfigStore::for_chain_id(chain_id);
    let config = store.get_config(protocol_version);
    let storage = &config.fees.storage_usage_config;
    Prices {
        per_byte: NearToken::from_yoctonear(storage.storage_amount_per_byte.as_yoctonear()),
        global_per_byte: NearToken::from_yoctonear(
            storage
                .global_contract_storage_amount_per_byte
                .as_yoctonear(),
        ),
    }
}

fn times(price: NearToken, bytes: usize) -> NearToken {
    price.saturating_mul(bytes as u128)
}

/// A checked connection: the right chain, a protocol that runs the contracts, and a signer.
pub struct Connected {
    /// near-workspaces' `Testnet` network type pointed at `rpc_url`: it is a plain RPC client
    /// (the generic `custom` network needs near-workspaces' `unstable` feature).
    pub worker: Worker<Testnet>,
    pub signer: Account,
    pub status: near_primitives::views::StatusResponse,
}

/// Connects to `rpc_url`, checks the chain id (testnet/mainnet) and the protocol version, and
/// loads the near-cli credentials file `credentials` (`{account_id, public_key, private_key}`).
pub async fn connect(
    network: Network,
    rpc_url: &str,
    credentials: &Path,
    progress: Progress<'_>,
) -> Result<Connected, DeployError> {
    progress(&format!("connecting to {network} ({rpc_url})"));
    let worker: Worker<Testnet> = near_workspaces::testnet()
        .rpc_addr(rpc_url)
        .await
        .map_err(|e| rpc_error(rpc_url, e))?;
    let status = worker.status().await.map_err(|e| rpc_error(rpc_url, e))?;
    if let Some(expected) = network.expected_chain_id()
        && status.chain_id != expected
    {
        return Err(DeployError::ChainMismatch {
            url: rpc_url.to_string(),
            expected: expected.to_string(),
            actual: status.chain_id,
        });
    }
    let check = ProtocolCheck::new(status.protocol_version);
    if !check.is_ok() {
        return Err(DeployError::Protocol(check));
    }
    progress(&format!("chain {}: {check}", status.chain_id));
    let signer =
        Account::from_file(credentials, &worker).map_err(|e| DeployError::Credentials {
            path: credentials.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(Connected {
        worker,
        signer,
        status,
    })
}

/// Deploys `plan` through the RPC at `rpc_url`, signing with the near-cli credentials file
/// `credentials` (`{account_id, public_key, private_key}`), code from `wasm_dir`.
pub async fn deploy(
    plan: &Plan,
    rpc_url: &str,
    credentials: &Path,
    wasm_dir: &Path,
    progress: Progress<'_>,
) -> Result<Deployment, DeployError> {
    let Connected {
        worker,
        signer,
        status,
    } = connect(plan.network, rpc_url, credentials, progress).await?;
    let start_height = status.sync_info.latest_block_height;
    if signer.id() != &plan.deployer {
        return Err(DeployError::SignerMismatch {
            expected: plan.deployer.clone(),
            actual: signer.id().clone(),
        });
    }

    let prices = prices(&status.chain_id, status.protocol_version);
    let model_code = read_wasm(wasm_dir, MODEL_TOKEN_WASM)?;
    let publish_cost = times(prices.global_per_byte, model_code.len());
    let mut loaded = Vec::new();
    for contract in plan.contracts() {
        let code = read_wasm(wasm_dir, contract.wasm_file)?;
        let balance = times(prices.per_byte, code.len()).saturating_add(contract.state_reserve);
        loaded.push(Loaded {
            plan: contract,
            code,
            balance,
        });
    }

    progress("checking the accounts are free and the deployer can pay");
    for contract in &loaded {
        if worker.view_account(&contract.plan.account).await.is_ok() {
            return Err(DeployError::AccountExists(contract.plan.account.clone()));
        }
    }
    let needed = loaded
        .iter()
        .fold(publish_cost.saturating_add(FEES), |sum, c| {
            sum.saturating_add(c.balance)
        });
    let available = worker
        .view_account(signer.id())
        .await
        .map_err(|e| DeployError::Credentials {
            path: credentials.to_path_buf(),
            reason: format!("cannot read account {}: {e}", signer.id()),
        })?
        .balance;
    if available < needed {
        return Err(DeployError::InsufficientBalance {
            account: signer.id().clone(),
            available,
            needed,
        });
    }

    for contract in &loaded {
        let ContractPlan {
            role,
            account,
            init,
            init_args,
            ..
        } = contract.plan;
        progress(&format!(
            "{role}: create {account} with {}, deploy {} KB, call {}",
            chain_client::format_near(contract.balance.as_yoctonear()),
            contract.code.len() / 1024,
            init.name
        ));
        let result = signer
            .batch(account)
            .create_account()
            .transfer(contract.balance)
            .add_key(signer.secret_key().public_key(), AccessKey::full_access())
            .deploy(&contract.code)
            .call(Function::new(init.name).args_json(init_args).gas(init.gas))
            .transact()
            .await;
        check_outcome(&format!("deploying the {role} at {account}"), result)?;
    }

    progress(&format!(
        "registry: set_marketplace({})",
        plan.marketplace.account
    ));
    let args = SetMarketplaceArgs {
        marketplace: plan.marketplace.account.clone(),
    };
    let result = contract_call(&signer, &plan.registry.account, SET_MARKETPLACE, &args)
        .transact()
        .await;
    check_outcome("registry.set_marketplace", result)?;

    progress(&format!(
        "model factory: publish the model-token code as a global contract ({} KB, burns {})",
        model_code.len() / 1024,
        chain_client::format_near(publish_cost.as_yoctonear())
    ));
    // Raw input, not JSON: the code itself.
    let result = signer
        .call(&plan.factory.account, PUBLISH_MODEL_CODE.name)
        .args(model_code)
        .deposit(publish_cost)
        .gas(PUBLISH_MODEL_CODE.gas)
        .transact()
        .await;
    check_outcome("model_factory.publish_model_code", result)?;
    let model_code_hash: Value = worker
        .view(&plan.factory.account, MODEL_CODE)
        .await
        .map_err(|e| rpc_error(rpc_url, e))?
        .json()
        .map_err(|e| rpc_error(rpc_url, e))?;
    if model_code_hash.is_null() {
        return Err(DeployError::Transaction {
            step: "model_factory.publish_model_code".into(),
            reason:
                "the factory has no model code after publishing (its callback saw the deploy fail)"
                    .into(),
        });
    }

    progress(&format!(
        "marketplace: update_config {}",
        set_fields(&plan.marketplace_patch)
    ));
    let args = UpdateConfigArgs {
        patch: plan.marketplace_patch.clone(),
    };
    let result = contract_call(&signer, &plan.marketplace.account, UPDATE_CONFIG, &args)
        .transact()
        .await;
    check_outcome("marketplace.update_config", result)?;

    if let Some((token, params)) = &plan.token {
        progress(&format!(
            "marketplace: accept {} ({} units per NEAR); register the marketplace in it",
            token.account, params.units_per_near
        ));
        let args = SetAcceptedTokenArgs {
            token: token.account.clone(),
            rate: Some(TokenRate {
                units_per_near: U128(params.units_per_near),
            }),
        };
        let result = contract_call(
            &signer,
            &plan.marketplace.account,
            SET_ACCEPTED_TOKEN,
            &args,
        )
        .transact()
        .await;
        check_outcome("marketplace.set_accepted_token", result)?;
        let result = signer
            .call(&token.account, "storage_deposit")
            .args_json(json!({ "account_id": plan.marketplace.account, "registration_only": true }))
            .deposit(TOKEN_STORAGE)
            .gas(TOKEN_STORAGE_GAS)
            .transact()
            .await;
        check_outcome("test_token.storage_deposit(marketplace)", result)?;
    }

    // Last, once every owner call of the wiring is done: governance's delay, then the keys.
    let governed = [&plan.registry, &plan.marketplace, &plan.factory];
    set_governance_delay(
        &worker,
        &signer,
        rpc_url,
        &governed,
        plan.governance_delay_ns,
        progress,
    )
    .await?;
    if plan.remove_access_keys {
        for contract in governed {
            remove_full_access_keys(&worker, &signer, rpc_url, contract, progress).await?;
        }
    } else {
        progress(
            "keeping the deployer's full-access keys on the registry, marketplace and model \
             factory accounts (--keep-access-keys): they can still replace the code at once",
        );
    }

    Ok(Deployment {
        network: plan.network.name().to_string(),
        rpc_url: rpc_url.to_string(),
        chain_id: status.chain_id,
        protocol_version: status.protocol_version,
        owner: plan.deployer.clone(),
        registry: plan.registry.account.clone(),
        marketplace: plan.marketplace.account.clone(),
        model_factory: plan.factory.account.clone(),
        token: plan.token.as_ref().map(|(t, _)| t.account.clone()),
        treasury: plan.treasury.clone(),
        dev_ca_key: plan.dev_ca_key.clone(),
        model_code_hash: model_code_hash
            .get("hash")
            .and_then(Value::as_str)
            .map(str::to_string),
        start_height,
        governance_delay_ns: plan.governance_delay_ns,
        access_keys_removed: plan.remove_access_keys,
    })
}

/// Proposes `set_delay` to each of `contracts` (applied at once: their delay is still the 0
/// they start with), then reads every `governance()` back.
async fn set_governance_delay(
    worker: &Worker<Testnet>,
    signer: &Account,
    rpc_url: &str,
    contracts: &[&ContractPlan],
    delay_ns: u64,
    progress: Progress<'_>,
) -> Result<(), DeployError> {
    let delay = format_duration_ns(delay_ns);
    if delay_ns == 0 {
        progress(
            "governance delay 0s (registry, marketplace, model factory): a proposed change \
             applies at once",
        );
    }
    for contract in contracts {
        if delay_ns != 0 {
            progress(&format!(
                "{}: governance delay {delay} (propose_change set_delay; critical changes then \
                 apply {delay} after they are proposed)",
                contract.role
            ));
            let args = ProposeChangeArgs {
                change: Change::<Value>::SetDelay {
                    delay_ns: U64(delay_ns),
                },
            };
            let result = contract_call(signer, &contract.account, PROPOSE_CHANGE, &args)
                .transact()
                .await;
            check_outcome(
                &format!("{}.propose_change(set_delay)", contract.role),
                result,
            )?;
        }
        let timelock: Timelock<Change<Value>> = worker
            .view(&contract.account, GOVERNANCE)
            .await
            .map_err(|e| rpc_error(rpc_url, e))?
            .json()
            .map_err(|e| rpc_error(rpc_url, e))?;
        if timelock.delay_ns.0 != delay_ns {
            return Err(DeployError::Transaction {
                step: format!("{}.propose_change(set_delay)", contract.role),
                reason: format!(
                    "{} reports a governance delay of {}, not {delay}",
                    contract.account,
                    format_duration_ns(timelock.delay_ns.0)
                ),
            });
        }
    }
    Ok(())
}

/// The full-access keys of `account`.
async fn full_access_keys(
    worker: &Worker<Testnet>,
    rpc_url: &str,
    account: &AccountId,
) -> Result<Vec<PublicKey>, DeployError> {
    let keys = worker
        .view_access_keys(account)
        .await
        .map_err(|e| rpc_error(rpc_url, e))?;
    Ok(keys
        .into_iter()
        .filter(|k| matches!(k.access_key.permission, AccessKeyPermission::FullAccess))
        .map(|k| k.public_key)
        .collect())
}

/// Deletes every full-access key of `contract`'s account, signing as that account with the
/// deployer's key (the one the deploying transaction added), then checks none is left: from
/// then on only the contract's own code, so governance with its delay, changes the account.
async fn remove_full_access_keys(
    worker: &Worker<Testnet>,
    signer: &Account,
    rpc_url: &str,
    contract: &ContractPlan,
    progress: Progress<'_>,
) -> Result<(), DeployError> {
    let step = format!("deleting the full-access keys of {}", contract.account);
    let own = signer.secret_key().public_key();
    let keys = full_access_keys(worker, rpc_url, &contract.account).await?;
    if keys.is_empty() {
        progress(&format!(
            "{}: {} has no full-access key",
            contract.role, contract.account
        ));
        return Ok(());
    }
    if !keys.contains(&own) {
        return Err(DeployError::Transaction {
            step,
            reason: format!(
                "the deployer's key {own} is not among them ({}): delete them by hand",
                keys.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    progress(&format!(
        "{}: delete the full-access key {own} of {} (the deployer's; governance alone changes \
         the contract now)",
        contract.role, contract.account
    ));
    let account = Account::from_secret_key(
        contract.account.clone(),
        signer.secret_key().clone(),
        worker,
    );
    // The signing key goes last (a transaction may delete the key that signed it).
    let mut batch = account.batch(&contract.account);
    for key in keys.iter().filter(|k| **k != own) {
        batch = batch.delete_key(key.clone());
    }
    let result = batch.delete_key(own).transact().await;
    check_outcome(&step, result)?;
    let left = full_access_keys(worker, rpc_url, &contract.account).await?;
    if !left.is_empty() {
        return Err(DeployError::Transaction {
            step,
            reason: format!("{} full-access key(s) still on the account", left.len()),
        });
    }
    Ok(())
}

/// The fields a configuration patch sets, as JSON (the rest stay as they are).
fn set_fields(patch: &enclave_cloud_common::interfaces::marketplace::ConfigPatch) -> Value {
    match serde_json::to_value(patch) {
        Ok(Value::Object(fields)) => Value::Object(
            fields
                .into_iter()
                .filter(|(_, value)| !value.is_null())
                .collect(),
        ),
        Ok(other) => other,
        Err(e) => json!(e.to_string()),
    }
}
