//! Upgrades and governance on a real chain (localnet).
//!
//! 1. The previous release (`contracts/archive/`, its wasm files) is deployed, used (jobs open,
//!    claimed and settled, a failed payout's credit, nodes with stake, a model with holders),
//!    then upgraded to the current build the way that release allows (its contract accounts'
//!    full-access keys: deploy + `migrate` in one transaction). Every view of that state and
//!    the funds are the same afterwards, and the contracts keep working.
//! 2. From then on governance holds the contracts: a critical setting applies only after the
//!    delay, and a code upgrade is proposed by hash, announced, and applied after the delay by
//!    anyone who submits that code (`apply_upgrade`), without any key on the contract account.
//! 3. A model token moves to newer code only through its own owner's proposal, never because
//!    the factory published newer code.

use anyhow::ensure;
use enclave_cloud_common::governance::{Change, Timelock, methods as gov};
use enclave_cloud_common::interfaces::marketplace::methods::{
    CREDIT_OF, CreditArgs, FUNDS, GET_CONFIG, GET_JOB, JobArgs, ModelArgs, ROYALTY_ACCOUNT,
    STORAGE_BALANCE_OF, StorageBalanceArgs, UPDATE_CONFIG, UpdateConfigArgs,
};
use enclave_cloud_common::interfaces::marketplace::{ConfigPatch, FundsReport, MarketplaceSetting};
use enclave_cloud_common::interfaces::method::NoArgs;
use enclave_cloud_common::interfaces::model_factory::methods::{
    CREATE_DEPOSIT, CREATE_MODEL, CreateDepositArgs, CreateModelArgs, MODEL_CODE,
    PUBLISH_MODEL_CODE,
};
use enclave_cloud_common::interfaces::model_token::{
    DEFAULT_GOVERNANCE_DELAY_NS, ModelTokenSetting,
};
use enclave_cloud_common::interfaces::registry::methods as registry_methods;
use enclave_cloud_common::{Asset, Hash32, JobId};
use near_workspaces::network::Sandbox;
use near_workspaces::operations::Function;
use near_workspaces::types::{Gas, NearToken};
use near_workspaces::{Account, AccountId, Contract, Worker};
use sandbox_tests::Build;
use sandbox_tests::calls::{call, view};
use sandbox_tests::marketplace::{
    MODEL, NEAR, SEC, Suite, model, ok, refused, sha256, succeeded, usage,
};
use sandbox_tests::model_token::{
    account, deploy_factory, deploy_factory_with, ft_balance, ft_transfer, model_args, register,
};
use serde_json::{Value, json};

/// The release before governance (issue 15): what mainnet would run today.
const PREVIOUS: Build = Build::Archived("0.1.0-998d879");

/// Everything the upgrade must keep, as the views return it.
async fn snapshot(
    s: &Suite,
    factory: &Contract,
    model_token: &AccountId,
    holders: &[&AccountId],
    jobs: &[JobId],
    ghost: &AccountId,
) -> anyhow::Result<Value> {
    let w = &s.worker;
    let mut jobs_json = Vec::new();
    for job_id in jobs {
        jobs_json
            .push(view::<Value, _>(w, s.market.id(), GET_JOB, &JobArgs { job_id: *job_id }).await?);
    }
    let funds: FundsReport = view(w, s.market.id(), FUNDS, &NoArgs {}).await?;
    ensure!(funds.balanced, "books do not balance: {funds:#?}");
    let mut balances = Vec::new();
    for holder in holders {
        balances.push(ft_balance(model_token, holder, &s.user).await?.to_string());
    }
    let registry = s.registry.id();
    Ok(json!({
        "market.config": view::<Value, _>(w, s.market.id(), GET_CONFIG, &NoArgs {}).await?,
        "market.jobs": jobs_json,
        // The ledgers, not the balance: the upgrade transaction's gas is paid by the contract
        // account itself.
        "market.ledgers": serde_json::to_value(&funds.assets)?,
        "market.credit": view::<Value, _>(w, s.market.id(), CREDIT_OF, &CreditArgs {
            account_id: ghost.clone(),
            asset: Asset::Near,
        }).await?,
        "market.storage_balance": view::<Value, _>(w, s.market.id(), STORAGE_BALANCE_OF, &StorageBalanceArgs {
            account_id: s.node.operator.id().clone(),
        }).await?,
        "market.royalty_account": view::<Value, _>(w, s.market.id(), ROYALTY_ACCOUNT, &ModelArgs { model_id: model() }).await?,
        "registry.nodes": [
            view::<Value, _>(w, registry, registry_methods::GET_NODE, &registry_methods::NodeArgs { node_id: s.node.id }).await?,
            view::<Value, _>(w, registry, registry_methods::GET_NODE, &registry_methods::NodeArgs { node_id: s.other_node.id }).await?,
        ],
        "registry.operator": view::<Value, _>(w, registry, registry_methods::GET_OPERATOR, &registry_methods::AccountArgs {
            account_id: s.node.operator.id().clone(),
        }).await?,
        "registry.policy": view::<Value, _>(w, registry, registry_methods::GET_POLICY, &NoArgs {}).await?,
        "registry.config": view::<Value, _>(w, registry, registry_methods::GET_CONFIG, &NoArgs {}).await?,
        "factory.models": view::<Value, _>(w, factory.id(), "models", &json!({})).await?,
        "factory.model_code": view::<Value, _>(w, factory.id(), MODEL_CODE, &NoArgs {}).await?,
        "token.balances": balances,
        "token.supply": view::<Value, _>(w, model_token, "ft_total_supply", &NoArgs {}).await?,
        "token.manifest": view::<Value, _>(w, model_token, "manifest", &NoArgs {}).await?,
    }))
}

/// The previous release's way to upgrade: the contract account's own full-access key deploys
/// the new code and calls `migrate` in the same transaction.
async fn upgrade_with_key(contract: &Contract, code: &[u8]) -> anyhow::Result<()> {
    let outcome = contract
        .as_account()
        .batch(contract.id())
        .deploy(code)
        .call(
            Function::new("migrate")
                .args_json(json!({}))
                .gas(Gas::from_tgas(30)),
        )
        .transact()
        .await?;
    ensure!(
        outcome.is_success(),
        "upgrading {}: {:?}",
        contract.id(),
        outcome.failures()
    );
    Ok(())
}

/// Creates model `model_id` through `factory`, paid and owned by `creator`.
async fn create_model(
    worker: &Worker<Sandbox>,
    factory: &Contract,
    creator: &Account,
    model_id: &str,
) -> anyhow::Result<AccountId> {
    let args = model_args(json!({ "initial_supply": "1000" }));
    let deposit: NearToken = view(
        worker,
        factory.id(),
        CREATE_DEPOSIT,
        &CreateDepositArgs { args: args.clone() },
    )
    .await?;
    let create = CreateModelArgs {
        model_id: model_id
            .parse()
            .map_err(|e| anyhow::anyhow!("{model_id}: {e:?}"))?,
        args,
    };
    let created: bool = ok(call(creator, factory.id(), CREATE_MODEL, &create)
        .deposit(deposit)
        .transact()
        .await?)?
    .json()?;
    ensure!(created, "the factory did not create {model_id}");
    Ok(format!("{model_id}.{}", factory.id()).parse()?)
}

/// A job settled by the suite's node (payouts, a receipt). The settlement succeeds; a payout
/// to an account that does not exist fails on its own (and becomes a credit).
async fn settled_job(s: &Suite, input: &[u8]) -> anyhow::Result<JobId> {
    let now = s.now_ns().await?;
    let spec = s.job_spec(NEAR, input, None, now + 600 * SEC);
    let job = s.submit_near_job(&spec, input.len() as u32).await?;
    ensure!(s.claim(&s.node, job).await?, "claim {job:?}");
    let settled = s
        .submit_result(
            job,
            &s.node.enclave_key,
            input,
            b"answer",
            usage(1_000, 2_000),
        )
        .await?;
    ensure!(
        settled.is_success(),
        "settle {job:?}: {:?}",
        settled.failures()
    );
    Ok(job)
}

/// `code` with a custom section appended: valid wasm, the same contract, another hash (a
/// stand-in for the next release in the governed-upgrade steps).
fn next_release(code: &[u8]) -> Vec<u8> {
    let mut code = code.to_vec();
    // section id 0 (custom), 5 bytes: a 4-byte name "next".
    code.extend_from_slice(&[0, 5, 4, b'n', b'e', b'x', b't']);
    code
}

/// The account's code: its own (`code_hash`) and the global code it uses, base58.
async fn code_of(worker: &Worker<Sandbox>, account_id: &AccountId) -> anyhow::Result<Value> {
    let view = sandbox_tests::rpc(
        &worker.rpc_addr(),
        "query",
        json!({"request_type": "view_account", "finality": "final", "account_id": account_id}),
    )
    .await?;
    Ok(json!({
        "code_hash": view["result"]["code_hash"],
        "global_contract_hash": view["result"]["global_contract_hash"],
    }))
}

fn base58_of(code: &[u8]) -> String {
    near_primitives::hash::hash(code).to_string()
}

/// `timelock.pending`'s only change.
fn only_pending<C: std::fmt::Debug>(timelock: &Timelock<C>) -> anyhow::Result<u64> {
    ensure!(timelock.pending.len() == 1, "{timelock:?}");
    Ok(timelock.pending[0].id.0)
}

#[tokio::test]
async fn the_previous_release_upgrades_with_its_state_and_funds_then_governance_takes_over()
-> anyhow::Result<()> {
    // ----- the previous release, used.
    let s = Suite::start_with(PREVIOUS).await?;
    let factory = deploy_factory_with(PREVIOUS, &s.worker, &s.owner, s.registry.id()).await?;
    let holder = account(&s.worker, "holder", 10).await?;
    let model_token = create_model(&s.worker, &factory, &s.user, MODEL).await?;
    register(&model_token, &holder).await?;
    succeeded(ft_transfer(&model_token, &s.user, holder.id(), 250).await?)?;

    let settled = settled_job(&s, b"settled before the upgrade").await?;
    // A royalty account that does not exist: the royalty's transfer fails into a credit.
    let ghost = s.royalties_to_a_missing_account().await?;
    let credited = settled_job(&s, b"a royalty that becomes a credit").await?;
    let now = s.now_ns().await?;
    let open_spec = s.job_spec(NEAR, b"open", None, now + 3_600 * SEC);
    let open = s.submit_near_job(&open_spec, 4).await?;
    let claimed_spec = s.job_spec(NEAR, b"claimed", None, now + 3_600 * SEC);
    let claimed = s.submit_near_job(&claimed_spec, 7).await?;
    ensure!(s.claim(&s.node, claimed).await?, "claim");
    s.check_funds("the previous release, used").await?;
    let credit: String = view(
        &s.worker,
        s.market.id(),
        CREDIT_OF,
        &CreditArgs {
            account_id: ghost.clone(),
            asset: Asset::Near,
        },
    )
    .await?;
    ensure!(credit != "0", "the failed royalty left a credit");

    let holders = [s.user.id(), holder.id()];
    let jobs = [settled, credited, open, claimed];
    let before = snapshot(&s, &factory, &model_token, &holders, &jobs, &ghost).await?;
    let token_code = code_of(&s.worker, &model_token).await?;

    // ----- upgraded, the previous release's way.
    upgrade_with_key(&s.registry, &Build::Current.wasm("registry")?).await?;
    upgrade_with_key(&s.market, &Build::Current.wasm("marketplace")?).await?;
    upgrade_with_key(&factory, &Build::Current.wasm("model_factory")?).await?;
    let mut after = snapshot(&s, &factory, &model_token, &holders, &jobs, &ghost).await?;
    // The one addition (registry layout 3, issue 16): the policy's challenge lifetime, at its
    // default of one hour.
    let lifetime = after["registry.policy"]
        .as_object_mut()
        .and_then(|p| p.remove("challenge_lifetime_ns"));
    assert_eq!(
        lifetime,
        Some(json!("3600000000000")),
        "the new policy field"
    );
    assert_eq!(before, after, "the upgrade changed the state");
    s.check_funds("upgraded").await?;
    // The model token created by the previous release keeps its code: nobody can change it.
    assert_eq!(code_of(&s.worker, &model_token).await?, token_code);

    // The upgraded contracts keep working on the old state: the claimed job settles, a new
    // job runs, the old model token transfers.
    let late = s
        .submit_result(
            claimed,
            &s.node.enclave_key,
            b"claimed",
            b"late but in time",
            usage(10, 10),
        )
        .await?;
    ensure!(late.is_success(), "{:?}", late.failures());
    settled_job(&s, b"after the upgrade").await?;
    succeeded(ft_transfer(&model_token, &holder, s.user.id(), 50).await?)?;
    s.check_funds("used after the upgrade").await?;

    // ----- governance takes over: a delay, then a critical setting waits for it.
    const DELAY_S: u64 = 3_600;
    let set_delay = gov::ProposeChangeArgs {
        change: Change::<MarketplaceSetting>::SetDelay {
            delay_ns: (DELAY_S * SEC).into(),
        },
    };
    succeeded(
        call(&s.owner, s.market.id(), gov::PROPOSE_CHANGE, &set_delay)
            .transact()
            .await?,
    )?;
    let timelock: Timelock<Change<MarketplaceSetting>> =
        view(&s.worker, s.market.id(), gov::GOVERNANCE, &NoArgs {}).await?;
    assert_eq!(timelock.delay_ns.0, DELAY_S * SEC);
    assert!(timelock.pending.is_empty(), "delay 0 applied it at once");

    let new_treasury = s.relayer.id().clone();
    let patch = UpdateConfigArgs {
        patch: ConfigPatch {
            treasury: Some(new_treasury.clone()),
            ..ConfigPatch::default()
        },
    };
    let proposed = ok(call(&s.owner, s.market.id(), UPDATE_CONFIG, &patch)
        .transact()
        .await?)?;
    assert!(
        proposed
            .logs()
            .iter()
            .any(|l| l.contains("\"change_proposed\"")),
        "{:?}",
        proposed.logs()
    );
    let timelock: Timelock<Change<MarketplaceSetting>> =
        view(&s.worker, s.market.id(), gov::GOVERNANCE, &NoArgs {}).await?;
    let id = only_pending(&timelock)?;
    let treasury = || async {
        let config: Value = view(&s.worker, s.market.id(), GET_CONFIG, &NoArgs {}).await?;
        anyhow::Ok(config["treasury"].clone())
    };
    assert_eq!(treasury().await?, json!(s.treasury.id()));
    let apply = gov::ChangeIdArgs { id: id.into() };
    refused(
        call(&s.user, s.market.id(), gov::APPLY_CHANGE, &apply)
            .transact()
            .await?,
        "s to go",
    )?;
    assert_eq!(treasury().await?, json!(s.treasury.id()));
    s.worker.fast_forward(DELAY_S + 5).await?;
    succeeded(
        call(&s.user, s.market.id(), gov::APPLY_CHANGE, &apply)
            .transact()
            .await?,
    )?;
    assert_eq!(treasury().await?, json!(new_treasury));

    // ----- a governed code upgrade: proposed by hash, applied after the delay by anyone.
    let next = next_release(&Build::Current.wasm("marketplace")?);
    let upgrade = gov::ProposeChangeArgs {
        change: Change::<MarketplaceSetting>::UpgradeCode {
            code_hash: Hash32(sha256(&next).0),
        },
    };
    succeeded(
        call(&s.owner, s.market.id(), gov::PROPOSE_CHANGE, &upgrade)
            .transact()
            .await?,
    )?;
    let apply_upgrade = || {
        s.user
            .call(s.market.id(), gov::APPLY_UPGRADE.name)
            .args(next.clone())
            .gas(gov::APPLY_UPGRADE.gas)
            .transact()
    };
    refused(apply_upgrade().await?, "s to go")?;
    let other = next_release(&next);
    refused(
        s.user
            .call(s.market.id(), gov::APPLY_UPGRADE.name)
            .args(other)
            .gas(gov::APPLY_UPGRADE.gas)
            .transact()
            .await?,
        "no upgrade to code",
    )?;
    s.worker.fast_forward(DELAY_S + 5).await?;
    succeeded(apply_upgrade().await?)?;
    assert_eq!(
        code_of(&s.worker, s.market.id()).await?["code_hash"],
        json!(base58_of(&next))
    );
    s.check_funds("after the governed upgrade").await?;
    // Two hours passed on the chain: the node proves it is alive.
    s.heartbeat(&s.node).await?;
    let settled_after: JobId = settled_job(&s, b"after the governed upgrade").await?;
    assert!(
        view::<Value, _>(
            &s.worker,
            s.market.id(),
            GET_JOB,
            &JobArgs {
                job_id: settled_after
            }
        )
        .await?
        .is_object()
    );
    s.check_funds("a job under the governed upgrade").await?;
    Ok(())
}

#[tokio::test]
async fn a_model_token_changes_code_only_by_its_owners_proposal_after_the_delay()
-> anyhow::Result<()> {
    let worker = sandbox_tests::sandbox().await?;
    let owner = account(&worker, "owner", 50).await?;
    let creator = account(&worker, "creator", 50).await?;
    let stranger = account(&worker, "stranger", 10).await?;
    let registry = account(&worker, "registry", 5).await?;
    let factory = deploy_factory(&worker, &owner, registry.id()).await?;
    let current = Build::Current.wasm("model_token")?;
    let token = create_model(&worker, &factory, &creator, "m1").await?;
    assert_eq!(
        code_of(&worker, &token).await?["global_contract_hash"],
        json!(base58_of(&current))
    );

    // The factory's owner publishes newer code: new models get it, m1 does not.
    let next = next_release(&current);
    let published: bool = ok(owner
        .call(factory.id(), PUBLISH_MODEL_CODE.name)
        .args(next.clone())
        .gas(PUBLISH_MODEL_CODE.gas)
        .transact()
        .await?)?
    .json()?;
    ensure!(published, "publish");
    assert_eq!(
        code_of(&worker, &token).await?["global_contract_hash"],
        json!(base58_of(&current))
    );
    let newer = create_model(&worker, &factory, &creator, "m2").await?;
    assert_eq!(
        code_of(&worker, &newer).await?["global_contract_hash"],
        json!(base58_of(&next))
    );

    // m1's owner proposes it; nobody else can, and it waits three days.
    let propose = gov::ProposeChangeArgs {
        change: Change::<ModelTokenSetting>::UpgradeCode {
            code_hash: Hash32(sha256(&next).0),
        },
    };
    refused(
        call(&stranger, &token, gov::PROPOSE_CHANGE, &propose)
            .transact()
            .await?,
        "only the owner",
    )?;
    succeeded(
        call(&creator, &token, gov::PROPOSE_CHANGE, &propose)
            .transact()
            .await?,
    )?;
    let timelock: Timelock<Change<ModelTokenSetting>> =
        view(&worker, &token, gov::GOVERNANCE, &NoArgs {}).await?;
    assert_eq!(timelock.delay_ns.0, DEFAULT_GOVERNANCE_DELAY_NS);
    let id = only_pending(&timelock)?;
    let apply = gov::ChangeIdArgs { id: id.into() };
    refused(
        call(&stranger, &token, gov::APPLY_CHANGE, &apply)
            .transact()
            .await?,
        "s to go",
    )?;
    assert_eq!(
        code_of(&worker, &token).await?["global_contract_hash"],
        json!(base58_of(&current))
    );

    let supply_before: Value = view(&worker, &token, "ft_total_supply", &NoArgs {}).await?;
    worker
        .fast_forward(DEFAULT_GOVERNANCE_DELAY_NS / SEC + 5)
        .await?;
    succeeded(
        call(&stranger, &token, gov::APPLY_CHANGE, &apply)
            .transact()
            .await?,
    )?;
    assert_eq!(
        code_of(&worker, &token).await?["global_contract_hash"],
        json!(base58_of(&next))
    );
    let supply_after: Value = view(&worker, &token, "ft_total_supply", &NoArgs {}).await?;
    assert_eq!(supply_before, supply_after, "migrate kept the state");
    let manifest: Value = view(&worker, &token, "manifest", &NoArgs {}).await?;
    assert!(manifest.is_object(), "{manifest}");
    Ok(())
}
