//! Helpers of the model-token suite (`tests/model_token.rs`): the built contracts, model tokens
//! deployed directly, a registry with a `dev`-attested node, and gas and balance accounting of
//! transaction outcomes.
//!
//! Contracts come from `ECLOUD_WASM_DIR` (default `$CARGO_TARGET_DIR/near`), where
//! `./scripts/build-contracts.sh` puts them.

use enclave_cloud_common::NodeId;
use enclave_cloud_common::interfaces::method::NoArgs;
use enclave_cloud_common::interfaces::registry::Policy;
use enclave_cloud_common::interfaces::registry::methods as registry_methods;
use near_workspaces::network::Sandbox;
use near_workspaces::result::ExecutionFinalResult;
use near_workspaces::types::{Gas, KeyType, NearToken, SecretKey};
use near_workspaces::{Account, AccountId, Contract, Worker};
use serde_json::{Value, json};

/// Gas of calls that schedule callbacks (the contracts ask for at most 50 Tgas).
pub const CALL_GAS: Gas = Gas::from_tgas(100);

pub use crate::contract_wasm;

/// A manifest allowing these enclave measurements (hex, or `dev` for dev-attested nodes).
pub fn manifest(allowed: &[&str]) -> Value {
    json!({
        "name": "Llama sandbox",
        "weights_hash": "11".repeat(32),
        "encrypted_weights_uri": "ipfs://weights",
        "training_data_manifest_hash": "22".repeat(32),
        "training_data_manifest_uri": "ipfs://data",
        "training_image_measurement": "33".repeat(48),
        "allowed_enclave_measurements": allowed,
        "licence": "apache-2.0",
    })
}

/// NEP-148 metadata.
pub fn metadata(symbol: &str, decimals: u8) -> Value {
    json!({
        "spec": "ft-1.0.0",
        "name": format!("{symbol} token"),
        "symbol": symbol,
        "decimals": decimals,
    })
}

/// `ModelInit` without the fields the factory fills in (`model_id`, `registry`, `owner`).
pub fn model_args(extra: Value) -> Value {
    let mut args = json!({
        "manifest": manifest(&["dev"]),
        "metadata": metadata("LLM", 0),
    });
    if let (Some(map), Value::Object(extra)) = (args.as_object_mut(), extra) {
        map.extend(extra);
    }
    args
}

/// A model token deployed directly on a dev account and initialised with `new`; `extra`
/// overrides or adds `ModelInit` fields (`initial_supply`, `crowdfund`, `revenue_tokens`, ...).
pub async fn deploy_token(
    worker: &Worker<Sandbox>,
    owner: &Account,
    registry: &AccountId,
    extra: Value,
) -> anyhow::Result<Contract> {
    let token = worker.dev_deploy(&contract_wasm("model_token")?).await?;
    let mut init = model_args(extra);
    init["model_id"] = json!("llama");
    init["owner"] = json!(owner.id());
    init["registry"] = json!(registry);
    token
        .call("new")
        .args_json(json!({ "init": init }))
        .transact()
        .await?
        .into_result()?;
    Ok(token)
}

/// A sub-account of the root with `near` NEAR.
pub async fn account(worker: &Worker<Sandbox>, name: &str, near: u128) -> anyhow::Result<Account> {
    Ok(worker
        .root_account()?
        .create_subaccount(name)
        .initial_balance(NearToken::from_near(near))
        .transact()
        .await?
        .into_result()?)
}

/// NEP-145: the storage deposit of one holder of `token` (min == max).
pub async fn storage_min(token: &AccountId, viewer: &Account) -> anyhow::Result<NearToken> {
    let bounds: Value = viewer.view(token, "storage_balance_bounds").await?.json()?;
    Ok(serde_json::from_value(bounds["min"].clone())?)
}

/// NEP-145: registers `who` on `token`, paid by `who`, with the exact minimum.
pub async fn register(token: &AccountId, who: &Account) -> anyhow::Result<()> {
    who.call(token, "storage_deposit")
        .args_json(json!({}))
        .deposit(storage_min(token, who).await?)
        .transact()
        .await?
        .into_result()?;
    Ok(())
}

/// `ft_balance_of` as a number.
pub async fn ft_balance(
    token: &AccountId,
    who: &AccountId,
    viewer: &Account,
) -> anyhow::Result<u128> {
    let v: String = viewer
        .view(token, "ft_balance_of")
        .args_json(json!({ "account_id": who }))
        .await?
        .json()?;
    Ok(v.parse()?)
}

/// `ft_transfer` with the confirming yocto.
pub async fn ft_transfer(
    token: &AccountId,
    from: &Account,
    to: &AccountId,
    amount: u128,
) -> anyhow::Result<ExecutionFinalResult> {
    Ok(from
        .call(token, "ft_transfer")
        .args_json(json!({ "receiver_id": to, "amount": amount.to_string() }))
        .deposit(NearToken::from_yoctonear(1))
        .transact()
        .await?)
}

/// What the signer paid for a transaction's gas: the tokens burnt by every receipt it bought
/// gas for (unused gas came back to it).
pub fn gas_cost(outcome: &ExecutionFinalResult) -> NearToken {
    let burnt = outcome
        .outcomes()
        .iter()
        .map(|o| o.tokens_burnt.as_yoctonear())
        .sum();
    NearToken::from_yoctonear(burnt)
}

/// Gas burnt by the transaction, without the receipts executed on `excluded` (another
/// contract's own work, e.g. a payment token's `ft_transfer`).
pub fn gas_without(outcome: &ExecutionFinalResult, excluded: &[&AccountId]) -> Gas {
    let burnt = outcome
        .outcomes()
        .iter()
        .filter(|o| !excluded.contains(&&o.executor_id))
        .map(|o| o.gas_burnt.as_gas())
        .sum();
    Gas::from_gas(burnt)
}

/// Tgas, for messages and `BENCH` lines.
pub fn tgas(gas: Gas) -> f64 {
    gas.as_gas() as f64 / 1e12
}

/// The real registry, initialised with a development CA so nodes may join with `dev` bundles.
pub struct DevRegistry {
    pub contract: Contract,
    ca: SecretKey,
}

/// A node registered in a [`DevRegistry`]: its id, the operator, and the enclave's access
/// key on the operator's account.
pub struct DevNode {
    pub id: NodeId,
    pub operator: Account,
    pub enclave: Account,
}

impl DevRegistry {
    /// Deploys the registry on a dev account: default policy, a fresh development CA.
    pub async fn deploy(worker: &Worker<Sandbox>, owner: &Account) -> anyhow::Result<Self> {
        let contract = worker.dev_deploy(&contract_wasm("registry")?).await?;
        let ca = SecretKey::from_random(KeyType::ED25519);
        let init = registry_methods::NewArgs::<Policy> {
            owner: owner.id().clone(),
            mainnet: false,
            dev_ca_key: Some(ca.public_key().to_string().parse()?),
            policy: None,
        };
        crate::calls::call(
            contract.as_account(),
            contract.id(),
            registry_methods::NEW,
            &init,
        )
        .transact()
        .await?
        .into_result()?;
        Ok(Self { contract, ca })
    }

    /// A new operator (sub-account `name` of the root) stakes what the policy asks for one
    /// node and its enclave registers with a dev bundle signed by the CA; `enclave_key` is the
    /// node's x25519 key.
    pub async fn register_node(
        &self,
        worker: &Worker<Sandbox>,
        name: &str,
        enclave_key: [u8; 32],
    ) -> anyhow::Result<DevNode> {
        let policy: Policy = crate::calls::view(
            worker,
            self.contract.id(),
            registry_methods::GET_POLICY,
            &NoArgs {},
        )
        .await?;
        let min_stake = policy.min_stake;
        // The stake also pays for the operator's records: one NEAR covers them.
        let stake = min_stake.saturating_add(NearToken::from_near(1));
        let operator = account(worker, name, stake.as_near() + 10).await?;
        let near_key = SecretKey::from_random(KeyType::ED25519);
        let (id, enclave) = crate::dev_node::enroll(
            worker,
            crate::dev_node::Enrolment {
                registry: self.contract.id(),
                operator: &operator,
                stake,
                ca: &self.ca,
                enclave_key: &near_key,
                tee_key: enclave_key,
                details: None,
            },
        )
        .await?;
        Ok(DevNode {
            id,
            operator,
            enclave,
        })
    }
}

/// The model factory at `factory.<root>` (100 NEAR), owned by `owner`, with the model-token
/// code published as its global contract (raw input, not JSON: the code itself).
pub async fn deploy_factory(
    worker: &Worker<Sandbox>,
    owner: &Account,
    registry: &AccountId,
) -> anyhow::Result<Contract> {
    deploy_factory_with(crate::Build::Current, worker, owner, registry).await
}

/// [`deploy_factory`] with the factory and model-token code of `build`.
pub async fn deploy_factory_with(
    build: crate::Build,
    worker: &Worker<Sandbox>,
    owner: &Account,
    registry: &AccountId,
) -> anyhow::Result<Contract> {
    use enclave_cloud_common::interfaces::model_factory::methods::{
        NEW, NewArgs, PUBLISH_MODEL_CODE,
    };
    let factory = account(worker, "factory", 100)
        .await?
        .deploy(&build.wasm("model_factory")?)
        .await?
        .into_result()?;
    let init = NewArgs {
        owner: owner.id().clone(),
        registry: registry.clone(),
    };
    crate::calls::call(factory.as_account(), factory.id(), NEW, &init)
        .transact()
        .await?
        .into_result()?;
    let published: bool = owner
        .call(factory.id(), PUBLISH_MODEL_CODE.name)
        .args(build.wasm("model_token")?)
        .gas(PUBLISH_MODEL_CODE.gas)
        .transact()
        .await?
        .into_result()?
        .json()?;
    anyhow::ensure!(published, "the factory refused the model-token code");
    Ok(factory)
}
