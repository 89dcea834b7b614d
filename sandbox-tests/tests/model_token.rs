//! The model-token contract (and its factory) on a real chain: crowdfund success and failure,
//! revenue in NEAR and in a NEP-141 token shared exactly among holders, NEP-145 storage, and
//! key grants checked against the real registry with a `dev`-attested node.
//!
//! Needs the built contracts (`./scripts/build-contracts.sh`, see `sandbox_tests::model_token`).

use enclave_cloud_common::Asset;
use enclave_cloud_common::interfaces::method::NoArgs;
use enclave_cloud_common::interfaces::model_factory::methods::{
    CREATE_DEPOSIT, CREATE_MODEL, CreateDepositArgs, CreateModelArgs, MODEL, MODEL_CODE,
    MODEL_COUNT, MODELS, ModelArgs, ModelsArgs,
};
use enclave_cloud_common::interfaces::model_factory::{ModelStatus, ModelView};
use enclave_cloud_common::interfaces::model_token::methods::{
    AssetArgs, CLAIM_REVENUE, CONTRIBUTE, FINALIZE_CROWDFUND,
};
use near_workspaces::network::Sandbox;
use near_workspaces::operations::Function;
use near_workspaces::result::ExecutionFinalResult;
use near_workspaces::types::{Gas, NearToken};
use near_workspaces::{Account, AccountId, Contract, Worker};
use sandbox_tests::calls::{call, view as factory_view};
use sandbox_tests::model_token::{
    CALL_GAS, DevRegistry, account, deploy_factory, deploy_token, ft_balance, ft_transfer,
    gas_cost, gas_without, manifest, model_args, register, storage_min, tgas,
};
use sandbox_tests::sandbox;
use serde_json::{Value, json};

const ONE_YOCTO: NearToken = NearToken::from_yoctonear(1);
/// Budget of deposit_revenue, ft_transfer and claim_revenue (the acceptance).
const REVENUE_BUDGET: Gas = Gas::from_tgas(10);
const NEAR: u128 = 10u128.pow(24);

/// The panic message of a failed call, or the outcome if it did not fail.
fn failure(outcome: ExecutionFinalResult) -> String {
    match outcome.into_result() {
        Ok(ok) => panic!("expected a failure, got {ok:?}"),
        Err(e) => format!("{e:?}"),
    }
}

fn assert_fails_with(outcome: ExecutionFinalResult, needle: &str) {
    let message = failure(outcome);
    assert!(message.contains(needle), "'{needle}' not in {message}");
}

async fn view<T: serde::de::DeserializeOwned>(
    viewer: &Account,
    contract: &AccountId,
    method: &str,
    args: Value,
) -> anyhow::Result<T> {
    Ok(viewer
        .view(contract, method)
        .args_json(args)
        .await?
        .json()?)
}

async fn balance(account: &Account) -> anyhow::Result<u128> {
    Ok(account.view_account().await?.balance.as_yoctonear())
}

/// Block time now, ns.
async fn now_ns(worker: &Worker<Sandbox>) -> anyhow::Result<u64> {
    Ok(worker.view_block().await?.timestamp())
}

fn crowdfund(
    goal_near: u128,
    deadline_ns: u64,
    beneficiary: &AccountId,
    milestones: &[u16],
) -> Value {
    json!({
        "goal": (goal_near * NEAR).to_string(),
        "token_price": NEAR.to_string(),
        "deadline_ns": deadline_ns.to_string(),
        "beneficiary": beneficiary,
        "milestones_bps": milestones,
    })
}

/// Contributes `near` NEAR on top of the storage deposit; returns the tokens minted.
async fn contribute(token: &AccountId, who: &Account, near: u128) -> anyhow::Result<u128> {
    let min = storage_min(token, who).await?;
    let tokens: String = call(who, token, CONTRIBUTE, &NoArgs {})
        .deposit(min.saturating_add(NearToken::from_near(near)))
        .transact()
        .await?
        .into_result()?
        .json()?;
    Ok(tokens.parse()?)
}

/// A model token whose crowdfund (goal 10 NEAR, paid out in `milestones`) ends `secs` from
/// now, with its trainer (the beneficiary) and two backers, alice and bob, holding 50 NEAR.
struct Crowdfunded {
    worker: Worker<Sandbox>,
    owner: Account,
    trainer: Account,
    alice: Account,
    bob: Account,
    deadline: u64,
    token: Contract,
}

async fn crowdfunded(secs: u64, milestones: &[u16]) -> anyhow::Result<Crowdfunded> {
    let worker = sandbox().await?;
    let owner = worker.dev_create_account().await?;
    let trainer = account(&worker, "trainer", 1).await?;
    let alice = account(&worker, "alice", 50).await?;
    let bob = account(&worker, "bob", 50).await?;
    let deadline = now_ns(&worker).await? + secs * 1_000_000_000;
    let token = deploy_token(
        &worker,
        &owner,
        owner.id(),
        json!({ "crowdfund": crowdfund(10, deadline, trainer.id(), milestones) }),
    )
    .await?;
    Ok(Crowdfunded {
        worker,
        owner,
        trainer,
        alice,
        bob,
        deadline,
        token,
    })
}

#[tokio::test]
async fn crowdfund_success_releases_the_milestones_to_the_beneficiary() -> anyhow::Result<()> {
    // `_worker` keeps the chain running until the test ends.
    let Crowdfunded {
        worker: _worker,
        owner,
        trainer,
        alice,
        bob,
        deadline: _,
        token,
    } = crowdfunded(3600, &[3000, 7000]).await?;
    let t = token.id();

    assert_eq!(contribute(t, &alice, 4).await?, 4);
    // Tokens stay locked while the crowdfund runs, and it cannot end before goal or deadline.
    assert_fails_with(
        ft_transfer(t, &alice, owner.id(), 1).await?,
        "cannot move until",
    );
    assert_fails_with(
        call(&bob, t, FINALIZE_CROWDFUND, &NoArgs {})
            .transact()
            .await?,
        "raised 4000000000000000000000000 of 10000000000000000000000000",
    );
    assert_eq!(contribute(t, &bob, 6).await?, 6);

    let trainer_before = balance(&trainer).await?;
    let status: String = call(&bob, t, FINALIZE_CROWDFUND, &NoArgs {})
        .transact()
        .await?
        .into_result()?
        .json()?;
    assert_eq!(status, "succeeded");
    assert_eq!(
        balance(&trainer).await? - trainer_before,
        3 * NEAR,
        "first milestone: 30%"
    );
    assert_fails_with(
        call(&alice, t, CONTRIBUTE, &NoArgs {})
            .deposit(NearToken::from_near(1))
            .transact()
            .await?,
        "not active",
    );

    // Only the approver (the owner by default) releases the next milestone.
    assert_fails_with(
        alice
            .call(t, "release_milestone")
            .deposit(ONE_YOCTO)
            .gas(CALL_GAS)
            .transact()
            .await?,
        "may release milestones",
    );
    owner
        .call(t, "release_milestone")
        .deposit(ONE_YOCTO)
        .gas(CALL_GAS)
        .transact()
        .await?
        .into_result()?;
    assert_eq!(
        balance(&trainer).await? - trainer_before,
        10 * NEAR,
        "everything released"
    );
    let view_cf: Value = view(&owner, t, "crowdfund", json!({})).await?;
    assert_eq!(view_cf["released"], (10 * NEAR).to_string());
    assert_eq!(view_cf["next_milestone"], 2);
    assert_fails_with(
        owner
            .call(t, "release_milestone")
            .deposit(ONE_YOCTO)
            .gas(CALL_GAS)
            .transact()
            .await?,
        "every milestone was already released",
    );

    // After success the tokens move.
    ft_transfer(t, &alice, bob.id(), 1).await?.into_result()?;
    assert_eq!(ft_balance(t, alice.id(), &owner).await?, 3);
    assert_eq!(ft_balance(t, bob.id(), &owner).await?, 7);
    let supply: String = view(&owner, t, "ft_total_supply", json!({})).await?;
    assert_eq!(supply, "10");
    Ok(())
}

#[tokio::test]
async fn crowdfund_failure_refunds_every_contributor_and_burns_their_tokens() -> anyhow::Result<()>
{
    let Crowdfunded {
        worker,
        owner,
        trainer,
        alice,
        bob,
        deadline,
        token,
    } = crowdfunded(30, &[]).await?;
    let t = token.id();
    let contributions = [(&alice, 2u128), (&bob, 3u128)];
    for (who, near) in contributions {
        assert_eq!(contribute(t, who, near).await?, near);
    }
    assert_fails_with(
        alice
            .call(t, "refund_contribution")
            .gas(CALL_GAS)
            .transact()
            .await?,
        "refunds are only open after it failed",
    );

    while now_ns(&worker).await? <= deadline {
        worker.fast_forward(20).await?;
    }
    assert_fails_with(
        call(&alice, t, CONTRIBUTE, &NoArgs {})
            .deposit(NearToken::from_near(1))
            .transact()
            .await?,
        "the crowdfund ended",
    );
    let status: String = call(&owner, t, FINALIZE_CROWDFUND, &NoArgs {})
        .transact()
        .await?
        .into_result()?
        .json()?;
    assert_eq!(status, "failed");

    for (who, near) in contributions {
        let before = balance(who).await?;
        let outcome = who
            .call(t, "refund_contribution")
            .gas(CALL_GAS)
            .transact()
            .await?;
        let cost = gas_cost(&outcome).as_yoctonear();
        assert!(
            outcome.logs().iter().any(|l| l.contains("\"ft_burn\"")),
            "{:?}",
            outcome.logs()
        );
        outcome.into_result()?;
        assert_eq!(
            balance(who).await? + cost,
            before + near * NEAR,
            "{} gets back exactly its contribution",
            who.id()
        );
        assert_eq!(ft_balance(t, who.id(), &owner).await?, 0);
        assert_fails_with(
            who.call(t, "refund_contribution")
                .gas(CALL_GAS)
                .transact()
                .await?,
            "has no contribution to refund",
        );
    }
    let supply: String = view(&owner, t, "ft_total_supply", json!({})).await?;
    assert_eq!(supply, "0");
    let cf: Value = view(&owner, t, "crowdfund", json!({})).await?;
    assert_eq!(cf["refunded"], (5 * NEAR).to_string());
    assert_eq!(cf["released"], "0");
    assert_eq!(
        balance(&trainer).await?,
        NEAR,
        "the beneficiary got nothing"
    );

    // A refunded contributor may leave and takes its storage deposit back.
    let left: bool = alice
        .call(t, "storage_unregister")
        .args_json(json!({}))
        .deposit(ONE_YOCTO)
        .transact()
        .await?
        .into_result()?
        .json()?;
    assert!(left);
    Ok(())
}

/// NEAR revenue `who` can claim from `token`.
async fn claimable_near(
    token: &AccountId,
    who: &AccountId,
    viewer: &Account,
) -> anyhow::Result<u128> {
    let v: String = view(
        viewer,
        token,
        "claimable",
        json!({ "account_id": who, "asset": { "kind": "near" } }),
    )
    .await?;
    Ok(v.parse()?)
}

/// `claim_revenue`'s arguments for NEAR.
fn near_asset() -> AssetArgs {
    AssetArgs { asset: Asset::Near }
}

/// `claim_revenue` of NEAR by `who`, with the confirming yocto.
async fn claim_near(token: &AccountId, who: &Account) -> anyhow::Result<ExecutionFinalResult> {
    Ok(call(who, token, CLAIM_REVENUE, &near_asset())
        .transact()
        .await?)
}

/// NEAR `who` gained by `outcome` (which must succeed), its gas added back.
async fn gained(
    who: &Account,
    before: u128,
    outcome: ExecutionFinalResult,
) -> anyhow::Result<u128> {
    let cost = gas_cost(&outcome).as_yoctonear();
    outcome.into_result()?;
    Ok(balance(who).await? + cost - before)
}

/// A failed crowdfund (audit finding 4): royalties go to the founders' tokens and tokens
/// bought from them, never to a backer's crowdfund tokens, refunded or not; the founders'
/// supply and every other token move while the crowdfund runs and after it failed; only a
/// backer's refundable tokens stay locked until its refund, which pays back exactly the NEAR.
#[tokio::test]
async fn a_failed_crowdfund_pays_backers_no_revenue_and_locks_only_their_tokens()
-> anyhow::Result<()> {
    let worker = sandbox().await?;
    let owner = worker.dev_create_account().await?;
    let trainer = account(&worker, "trainer", 1).await?;
    let alice = account(&worker, "alice", 50).await?;
    let bob = account(&worker, "bob", 50).await?;
    let carol = account(&worker, "carol", 10).await?;
    let deadline = now_ns(&worker).await? + 30_000_000_000;
    let token = deploy_token(
        &worker,
        &owner,
        owner.id(),
        json!({
            "initial_supply": "10",
            "crowdfund": crowdfund(10, deadline, trainer.id(), &[]),
        }),
    )
    .await?;
    let t = token.id();
    let deposit = |amount: u128| {
        carol
            .call(t, "deposit_revenue")
            .deposit(NearToken::from_yoctonear(amount))
            .transact()
    };
    let claimable = |who: AccountId| {
        let (t, owner) = (t.clone(), owner.clone());
        async move { claimable_near(&t, &who, &owner).await }
    };
    assert_eq!(contribute(t, &alice, 2).await?, 2);
    assert_eq!(contribute(t, &bob, 3).await?, 3);
    register(t, &carol).await?;

    // While the crowdfund runs: the founders' tokens move, a backer's do not; royalties go to
    // the earning tokens only (owner 8, carol 2 of 10).
    ft_transfer(t, &owner, carol.id(), 2).await?.into_result()?;
    assert_fails_with(
        ft_transfer(t, &alice, carol.id(), 1).await?,
        "refundable crowdfund tokens",
    );
    deposit(1_000).await?.into_result()?;
    assert_eq!(claimable(alice.id().clone()).await?, 0);
    assert_eq!(claimable(bob.id().clone()).await?, 0);
    assert_eq!(claimable(owner.id().clone()).await?, 800);
    assert_eq!(claimable(carol.id().clone()).await?, 200);

    while now_ns(&worker).await? <= deadline {
        worker.fast_forward(20).await?;
    }
    let status: String = call(&carol, t, FINALIZE_CROWDFUND, &NoArgs {})
        .transact()
        .await?
        .into_result()?
        .json()?;
    assert_eq!(status, "failed");

    // After the failure every other token still moves; ALICE moves the token she was given,
    // never the two her refund burns.
    ft_transfer(t, &owner, alice.id(), 1).await?.into_result()?;
    ft_transfer(t, &carol, owner.id(), 1).await?.into_result()?;
    ft_transfer(t, &alice, carol.id(), 1).await?.into_result()?;
    assert_fails_with(
        ft_transfer(t, &alice, carol.id(), 1).await?,
        "refundable crowdfund tokens",
    );
    // Earning: owner 8, carol 2; the backers' 5 locked tokens earn nothing.
    deposit(1_000).await?.into_result()?;
    assert_eq!(claimable(owner.id().clone()).await?, 1_600);
    assert_eq!(claimable(carol.id().clone()).await?, 400);

    // ALICE's refund: exactly her NEAR back, no revenue.
    let before = balance(&alice).await?;
    let outcome = alice
        .call(t, "refund_contribution")
        .gas(CALL_GAS)
        .transact()
        .await?;
    assert_eq!(gained(&alice, before, outcome).await?, 2 * NEAR);
    assert_eq!(ft_balance(t, alice.id(), &owner).await?, 0);
    assert_eq!(claimable(alice.id().clone()).await?, 0);
    assert_fails_with(claim_near(t, &alice).await?, "nothing to claim");
    // BOB never asks: a failed model still pays him nothing.
    deposit(500).await?.into_result()?;
    assert_eq!(claimable(bob.id().clone()).await?, 0);
    assert_eq!(claimable(carol.id().clone()).await?, 500);

    // CAROL's revenue is real NEAR.
    let before = balance(&carol).await?;
    let outcome = claim_near(t, &carol).await?;
    assert_eq!(gained(&carol, before, outcome).await?, 500);

    // BOB's refund later still works; what is left is the founders' supply.
    bob.call(t, "refund_contribution")
        .gas(CALL_GAS)
        .transact()
        .await?
        .into_result()?;
    let supply: String = view(&owner, t, "ft_total_supply", json!({})).await?;
    assert_eq!(supply, "10");
    Ok(())
}

/// Exact pro-rata share of every holder: `floor(sum over deposits of balance * amount / supply)`.
fn shares(history: &[(Vec<u128>, u128)], supply: u128) -> Vec<u128> {
    let holders = history.first().map_or(0, |(b, _)| b.len());
    (0..holders)
        .map(|i| {
            history
                .iter()
                .map(|(balances, amount)| balances[i] * amount)
                .sum::<u128>()
                / supply
        })
        .collect()
}

#[tokio::test]
async fn revenue_in_near_and_a_token_is_claimed_exactly_pro_rata() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let owner = account(&worker, "owner", 20).await?;
    let market = account(&worker, "market", 50).await?;
    // The payment token: another model-token instance, all of it held by the marketplace.
    let usdc = deploy_token(
        &worker,
        &market,
        market.id(),
        json!({ "metadata": sandbox_tests::model_token::metadata("USDC", 6), "initial_supply": "1000000000000" }),
    )
    .await?;
    // 1024 tokens: a power of two, so every share below is an exact fraction of 1/1024.
    let token = deploy_token(
        &worker,
        &owner,
        owner.id(),
        json!({ "initial_supply": "1024", "revenue_tokens": [usdc.id()] }),
    )
    .await?;
    let t = token.id();
    let mut holders = vec![owner.clone()];
    for name in ["alice", "bob", "carol"] {
        holders.push(account(&worker, name, 10).await?);
    }
    for h in &holders {
        if h.id() != owner.id() {
            register(t, h).await?;
        }
        register(usdc.id(), h).await?;
    }
    // The model token receives the payment token.
    market
        .call(usdc.id(), "storage_deposit")
        .args_json(json!({ "account_id": t }))
        .deposit(storage_min(usdc.id(), &market).await?)
        .transact()
        .await?
        .into_result()?;
    let [_, alice, bob, carol] = &holders[..] else {
        unreachable!("four holders")
    };
    for (to, amount) in [(alice, 512), (bob, 256), (carol, 128)] {
        ft_transfer(t, &owner, to.id(), amount)
            .await?
            .into_result()?;
    }

    let mut near_history = Vec::new();
    let mut ft_history = Vec::new();
    let mut balances = vec![128u128, 512, 256, 128];

    let deposit_near = |amount: u128| {
        market
            .call(t, "deposit_revenue")
            .deposit(NearToken::from_yoctonear(amount))
            .transact()
    };
    let deposit_ft = |amount: u128| {
        market
            .call(usdc.id(), "ft_transfer_call")
            .args_json(json!({ "receiver_id": t, "amount": amount.to_string(), "msg": "" }))
            .deposit(ONE_YOCTO)
            .gas(CALL_GAS)
            .transact()
    };

    let first = 3 * NEAR;
    let outcome = deposit_near(first).await?;
    assert!(outcome.total_gas_burnt <= REVENUE_BUDGET, "{outcome:?}");
    println!(
        "BENCH model_token.sandbox.deposit_revenue.gas {:.2} Tgas",
        tgas(outcome.total_gas_burnt)
    );
    outcome.into_result()?;
    near_history.push((balances.clone(), first));
    let outcome = deposit_ft(4_096_000).await?;
    outcome.into_result()?;
    ft_history.push((balances.clone(), 4_096_000));

    // Transfers in between: alice -> carol 256, bob -> owner 100.
    let outcome = ft_transfer(t, alice, carol.id(), 256).await?;
    assert!(outcome.total_gas_burnt <= REVENUE_BUDGET, "{outcome:?}");
    println!(
        "BENCH model_token.sandbox.ft_transfer.gas {:.2} Tgas",
        tgas(outcome.total_gas_burnt)
    );
    outcome.into_result()?;
    ft_transfer(t, bob, owner.id(), 100).await?.into_result()?;
    balances = vec![228, 256, 156, 384];

    // Amounts that do not divide: rounding leaves dust.
    let second = NEAR + 7;
    deposit_near(second).await?.into_result()?;
    near_history.push((balances.clone(), second));
    deposit_ft(999_999).await?.into_result()?;
    ft_history.push((balances.clone(), 999_999));
    ft_transfer(t, carol, alice.id(), 3).await?.into_result()?;
    balances = vec![228, 259, 156, 381];
    let third = 5;
    deposit_near(third).await?.into_result()?;
    near_history.push((balances.clone(), third));

    // A token that is not allow-listed is refused and goes back to its sender.
    let other = deploy_token(
        &worker,
        &market,
        market.id(),
        json!({ "metadata": sandbox_tests::model_token::metadata("OTHER", 6), "initial_supply": "1000" }),
    )
    .await?;
    market
        .call(other.id(), "storage_deposit")
        .args_json(json!({ "account_id": t }))
        .deposit(storage_min(other.id(), &market).await?)
        .transact()
        .await?
        .into_result()?;
    let refused: String = market
        .call(other.id(), "ft_transfer_call")
        .args_json(json!({ "receiver_id": t, "amount": "10", "msg": "" }))
        .deposit(ONE_YOCTO)
        .gas(CALL_GAS)
        .transact()
        .await?
        .into_result()?
        .json()?;
    assert_eq!(refused, "0", "nothing of the refused token was used");
    assert_eq!(ft_balance(other.id(), market.id(), &market).await?, 1000);

    let near_shares = shares(&near_history, 1024);
    let ft_shares = shares(&ft_history, 1024);
    let usdc_asset = AssetArgs {
        asset: Asset::Ft {
            token: usdc.id().clone(),
        },
    };
    let mut near_claimed = 0;
    let mut ft_claimed = 0;
    for (i, h) in holders.iter().enumerate() {
        let claimable: String = view(
            h,
            t,
            "claimable",
            json!({ "account_id": h.id(), "asset": { "kind": "near" } }),
        )
        .await?;
        assert_eq!(
            claimable.parse::<u128>()?,
            near_shares[i],
            "{} NEAR share",
            h.id()
        );

        let before = balance(h).await?;
        let outcome = call(h, t, CLAIM_REVENUE, &near_asset()).transact().await?;
        assert!(outcome.total_gas_burnt <= REVENUE_BUDGET, "{outcome:?}");
        if i == 0 {
            println!(
                "BENCH model_token.sandbox.claim_revenue.near.gas {:.2} Tgas",
                tgas(outcome.total_gas_burnt)
            );
        }
        let cost = gas_cost(&outcome).as_yoctonear();
        outcome.into_result()?;
        let received = balance(h).await? + cost - before;
        assert_eq!(
            received,
            near_shares[i],
            "{} received its NEAR share",
            h.id()
        );
        near_claimed += received;

        let before = ft_balance(usdc.id(), h.id(), h).await?;
        let outcome = call(h, t, CLAIM_REVENUE, &usdc_asset).transact().await?;
        let own = gas_without(&outcome, &[usdc.id()]);
        assert!(own <= REVENUE_BUDGET, "{outcome:?}");
        if i == 0 {
            println!(
                "BENCH model_token.sandbox.claim_revenue.ft.gas {:.2} Tgas",
                tgas(own)
            );
        }
        outcome.into_result()?;
        let received = ft_balance(usdc.id(), h.id(), h).await? - before;
        assert_eq!(
            received,
            ft_shares[i],
            "{} received its token share",
            h.id()
        );
        ft_claimed += received;

        assert_fails_with(
            call(h, t, CLAIM_REVENUE, &near_asset()).transact().await?,
            "nothing to claim",
        );
    }

    // Conservation, from balances: what holders received plus what the contract still holds
    // as dust is exactly what was deposited; the dust is below one unit per holder.
    let near_deposited = first + second + third;
    let ft_deposited = 4_096_000 + 999_999;
    let near_dust = near_deposited - near_claimed;
    let ft_dust = ft_balance(usdc.id(), t, &market).await?;
    assert_eq!(ft_claimed + ft_dust, ft_deposited);
    assert!(near_dust < 4 && ft_dust < 4, "dust {near_dust} / {ft_dust}");
    let pools: Value = view(&market, t, "revenue_pools", json!({})).await?;
    assert_eq!(pools[0]["deposited"], near_deposited.to_string());
    assert_eq!(pools[0]["claimed"], near_claimed.to_string());
    assert_eq!(pools[1]["deposited"], ft_deposited.to_string());
    assert_eq!(pools[1]["claimed"], ft_claimed.to_string());
    Ok(())
}

/// `count` holders `h<i>.<token>` registered and given one token each by `owner`, in batches.
async fn add_holders(owner: &Account, token: &AccountId, count: usize) -> anyhow::Result<()> {
    let min = storage_min(token, owner).await?;
    let ids: Vec<String> = (0..count).map(|i| format!("h{i}.{token}")).collect();
    for chunk in ids.chunks(30) {
        let mut batch = owner.batch(token);
        for id in chunk {
            batch = batch
                .call(
                    Function::new("storage_deposit")
                        .args_json(json!({ "account_id": id }))
                        .deposit(min)
                        .gas(Gas::from_tgas(4)),
                )
                .call(
                    Function::new("ft_transfer")
                        .args_json(json!({ "receiver_id": id, "amount": "1" }))
                        .deposit(ONE_YOCTO)
                        .gas(Gas::from_tgas(5)),
                );
        }
        batch.transact().await?.into_result()?;
    }
    Ok(())
}

/// Gas of deposit_revenue, ft_transfer and claim_revenue (NEAR) on the token now.
async fn revenue_gas(
    token: &AccountId,
    owner: &Account,
    market: &Account,
    receiver: &AccountId,
) -> anyhow::Result<[Gas; 3]> {
    let deposit = market
        .call(token, "deposit_revenue")
        .deposit(NearToken::from_near(1))
        .transact()
        .await?;
    let transfer = ft_transfer(token, owner, receiver, 1).await?;
    let claim = call(owner, token, CLAIM_REVENUE, &near_asset())
        .transact()
        .await?;
    let gas = [
        deposit.total_gas_burnt,
        transfer.total_gas_burnt,
        claim.total_gas_burnt,
    ];
    deposit.into_result()?;
    transfer.into_result()?;
    claim.into_result()?;
    Ok(gas)
}

#[tokio::test]
async fn revenue_gas_is_the_same_with_one_and_a_thousand_holders() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let owner = account(&worker, "owner", 50).await?;
    let market = account(&worker, "market", 20).await?;
    let token = deploy_token(
        &worker,
        &owner,
        owner.id(),
        json!({ "initial_supply": "1000000" }),
    )
    .await?;
    let t = token.id();
    add_holders(&owner, t, 1).await?;
    let receiver: AccountId = format!("h0.{t}").parse()?;
    let one = revenue_gas(t, &owner, &market, &receiver).await?;
    add_holders(&owner, t, 1000).await?;
    let thousand = revenue_gas(t, &owner, &market, &receiver).await?;
    for (i, name) in ["deposit_revenue", "ft_transfer", "claim_revenue.near"]
        .iter()
        .enumerate()
    {
        for (n, gas) in [(1, one[i]), (1000, thousand[i])] {
            println!(
                "BENCH model_token.sandbox.{name}.holders_{n}.gas {:.2} Tgas",
                tgas(gas)
            );
            assert!(
                gas <= REVENUE_BUDGET,
                "{name} with {n} holders: {} Tgas",
                tgas(gas)
            );
        }
        // O(1): the per-operation trie work may grow a little with the state, never per holder.
        let (a, b) = (one[i].as_gas() as f64, thousand[i].as_gas() as f64);
        assert!(
            (b - a).abs() <= a * 0.05,
            "{name}: {} -> {} Tgas",
            tgas(one[i]),
            tgas(thousand[i])
        );
    }
    Ok(())
}

#[tokio::test]
async fn storage_registration_withdrawal_and_unregistration() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let owner = account(&worker, "owner", 20).await?;
    let alice = account(&worker, "alice", 10).await?;
    let bob = account(&worker, "bob", 10).await?;
    let carol = account(&worker, "carol", 10).await?;
    let token = deploy_token(
        &worker,
        &owner,
        owner.id(),
        json!({ "initial_supply": "128" }),
    )
    .await?;
    let t = token.id();
    let bounds: Value = view(&owner, t, "storage_balance_bounds", json!({})).await?;
    assert_eq!(bounds["min"], bounds["max"], "one fixed deposit");
    let min = storage_min(t, &owner).await?;
    assert!(min > NearToken::from_millinear(1), "{min}");

    // alice pays bob's registration; the excess comes back to her.
    let before = balance(&alice).await?;
    let outcome = alice
        .call(t, "storage_deposit")
        .args_json(json!({ "account_id": bob.id() }))
        .deposit(min.saturating_add(NearToken::from_near(1)))
        .transact()
        .await?;
    let cost = gas_cost(&outcome).as_yoctonear();
    let registered: Value = outcome.into_result()?.json()?;
    assert_eq!(registered["total"], json!(min));
    assert_eq!(before - balance(&alice).await? - cost, min.as_yoctonear());
    let of: Value = view(
        &owner,
        t,
        "storage_balance_of",
        json!({ "account_id": bob.id() }),
    )
    .await?;
    assert_eq!(of["total"], json!(min));
    assert_eq!(of["available"], "0");

    // Too little: refused, nothing registered; unregistered receivers are refused.
    assert_fails_with(
        carol
            .call(t, "storage_deposit")
            .args_json(json!({}))
            .deposit(min.saturating_sub(ONE_YOCTO))
            .transact()
            .await?,
        "attach at least",
    );
    let none: Value = view(
        &owner,
        t,
        "storage_balance_of",
        json!({ "account_id": carol.id() }),
    )
    .await?;
    assert!(none.is_null());
    assert_fails_with(
        ft_transfer(t, &owner, carol.id(), 1).await?,
        "is not registered",
    );

    // Withdrawal: nothing is ever available above the fixed deposit.
    let w: Value = bob
        .call(t, "storage_withdraw")
        .args_json(json!({}))
        .deposit(ONE_YOCTO)
        .transact()
        .await?
        .into_result()?
        .json()?;
    assert_eq!(w["available"], "0");
    assert_fails_with(
        bob.call(t, "storage_withdraw")
            .args_json(json!({ "amount": "1" }))
            .deposit(ONE_YOCTO)
            .transact()
            .await?,
        "nothing is available",
    );

    // Unregistering with tokens needs force: they are burned, the revenue goes to the others.
    ft_transfer(t, &owner, bob.id(), 64).await?.into_result()?;
    owner
        .call(t, "deposit_revenue")
        .deposit(NearToken::from_yoctonear(1024))
        .transact()
        .await?
        .into_result()?;
    assert_fails_with(
        bob.call(t, "storage_unregister")
            .args_json(json!({}))
            .deposit(ONE_YOCTO)
            .transact()
            .await?,
        "still holds 64 tokens",
    );
    let before = balance(&bob).await?;
    let outcome = bob
        .call(t, "storage_unregister")
        .args_json(json!({ "force": true }))
        .deposit(ONE_YOCTO)
        .transact()
        .await?;
    let cost = gas_cost(&outcome).as_yoctonear();
    assert!(outcome.into_result()?.json::<bool>()?);
    assert_eq!(
        balance(&bob).await? + cost,
        before + min.as_yoctonear(),
        "storage deposit refunded (and the confirming yocto)"
    );
    assert_eq!(ft_balance(t, bob.id(), &owner).await?, 0);
    let supply: String = view(&owner, t, "ft_total_supply", json!({})).await?;
    assert_eq!(supply, "64");
    // bob's 512 yocto of revenue wait for the next deposit, then go to the owner (a power-of-two
    // supply leaves no rounding dust).
    owner
        .call(t, "deposit_revenue")
        .deposit(NearToken::from_yoctonear(64))
        .transact()
        .await?
        .into_result()?;
    let claimable: String = view(
        &owner,
        t,
        "claimable",
        json!({ "account_id": owner.id(), "asset": { "kind": "near" } }),
    )
    .await?;
    assert_eq!(claimable, (512 + 512 + 64).to_string());
    // Registered again, from scratch.
    register(t, &bob).await?;
    assert_eq!(ft_balance(t, bob.id(), &owner).await?, 0);
    Ok(())
}

async fn grant(
    token: &AccountId,
    granter: &Account,
    node_id: &enclave_cloud_common::NodeId,
    deposit: NearToken,
) -> anyhow::Result<ExecutionFinalResult> {
    Ok(granter
        .call(token, "grant_key")
        .args_json(json!({
            "node_id": node_id,
            // base64 of 80 bytes: an HPKE-sealed model key.
            "encrypted_key": "q".repeat(108),
            "key_hash": "44".repeat(32),
        }))
        .deposit(deposit)
        .gas(CALL_GAS)
        .transact()
        .await?)
}

#[tokio::test]
async fn key_grants_go_to_eligible_nodes_only() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let owner = account(&worker, "owner", 20).await?;
    let keys = account(&worker, "keys", 10).await?;
    let registry = DevRegistry::deploy(&worker, &owner).await?;
    let node = registry.register_node(&worker, "op1", [7; 32]).await?;
    let view_node: Value = view(
        &owner,
        registry.contract.id(),
        "get_node",
        json!({ "node_id": node.id }),
    )
    .await?;
    assert_eq!(view_node["status"], "active", "{view_node}");
    assert_eq!(view_node["kind"], "dev");

    let token = deploy_token(
        &worker,
        &owner,
        registry.contract.id(),
        json!({ "key_service": keys.id() }),
    )
    .await?;
    let t = token.id();
    let required: NearToken =
        view(&keys, t, "grant_deposit", json!({ "encrypted_len": 80 })).await?;
    let deposit = required.saturating_add(NearToken::from_millinear(10));

    // Eligible: stored, event, and only the storage it takes is kept.
    let before = balance(&keys).await?;
    let outcome = grant(t, &keys, &node.id, deposit).await?;
    println!(
        "BENCH model_token.sandbox.grant_key.gas {:.2} Tgas",
        tgas(outcome.total_gas_burnt)
    );
    let cost = gas_cost(&outcome).as_yoctonear();
    assert!(
        outcome.logs().iter().any(|l| l.contains("\"key_granted\"")),
        "{:?}",
        outcome.logs()
    );
    assert!(outcome.into_result()?.json::<bool>()?);
    let kept = before - balance(&keys).await? - cost;
    assert!(
        kept > 0 && kept <= required.as_yoctonear(),
        "kept {kept} of {required}"
    );
    let stored: Value = view(&keys, t, "key_grant", json!({ "node_id": node.id })).await?;
    assert_eq!(stored["encryption_key"], "07".repeat(32));
    assert_eq!(stored["granted_by"], json!(keys.id()));
    let all: Vec<Value> = view(&keys, t, "key_grants", json!({})).await?;
    assert_eq!(all.len(), 1);

    // Refused, deposit refunded in full: unknown node, deregistered node, measurement not allowed.
    let gone = registry.register_node(&worker, "op2", [8; 32]).await?;
    gone.enclave
        .call(registry.contract.id(), "deregister")
        .args_json(json!({ "node_id": gone.id }))
        .transact()
        .await?
        .into_result()?;
    let strict = deploy_token(
        &worker,
        &owner,
        registry.contract.id(),
        json!({ "key_service": keys.id(), "manifest": manifest(&[&"ab".repeat(32)]) }),
    )
    .await?;
    for (token, node_id, reason) in [
        (t, enclave_cloud_common::NodeId(99), "not in the registry"),
        (t, gone.id, "not active"),
        (strict.id(), node.id, "not allowed by the manifest"),
    ] {
        let before = balance(&keys).await?;
        let outcome = grant(token, &keys, &node_id, deposit).await?;
        let cost = gas_cost(&outcome).as_yoctonear();
        assert!(
            outcome.logs().iter().any(|l| l.contains(reason)),
            "{reason}: {:?}",
            outcome.logs()
        );
        assert!(!outcome.into_result()?.json::<bool>()?, "{reason}");
        assert_eq!(
            before - balance(&keys).await?,
            cost,
            "{reason}: deposit refunded"
        );
        let stored: Value = view(&keys, token, "key_grant", json!({ "node_id": node_id })).await?;
        assert!(stored.is_null(), "{reason}");
    }

    // Only the owner or its key service grant and revoke.
    let stranger = account(&worker, "stranger", 5).await?;
    assert_fails_with(
        grant(t, &stranger, &node.id, deposit).await?,
        "may manage keys",
    );
    assert_fails_with(
        stranger
            .call(t, "revoke_key")
            .args_json(json!({ "node_id": node.id }))
            .deposit(ONE_YOCTO)
            .transact()
            .await?,
        "may manage keys",
    );
    let before = balance(&keys).await?;
    let outcome = owner
        .call(t, "revoke_key")
        .args_json(json!({ "node_id": node.id }))
        .deposit(ONE_YOCTO)
        .transact()
        .await?;
    assert!(outcome.logs().iter().any(|l| l.contains("\"key_revoked\"")));
    outcome.into_result()?;
    assert_eq!(
        balance(&keys).await? - before,
        kept,
        "the storage goes back to whoever paid it"
    );
    let stored: Value = view(&keys, t, "key_grant", json!({ "node_id": node.id })).await?;
    assert!(stored.is_null());
    Ok(())
}

#[tokio::test]
async fn the_factory_creates_lists_and_refunds_models() -> anyhow::Result<()> {
    let worker = sandbox().await?;
    let owner = account(&worker, "owner", 10).await?;
    let alice = account(&worker, "alice", 20).await?;
    let bob = account(&worker, "bob", 10).await?;
    let registry: AccountId = format!("registry.{}", worker.root_account()?.id()).parse()?;
    // The model code is published once, as a global contract paid by the factory (0.0001 NEAR
    // per byte).
    let factory = deploy_factory(&worker, &owner, &registry).await?;
    let code: Value = factory_view(&worker, factory.id(), MODEL_CODE, &NoArgs {}).await?;
    assert!(
        !code.is_null(),
        "the factory uses the published code once it is deployed"
    );

    let args = model_args(json!({ "initial_supply": "1000" }));
    let deposit: NearToken = factory_view(
        &worker,
        factory.id(),
        CREATE_DEPOSIT,
        &CreateDepositArgs { args: args.clone() },
    )
    .await?;
    let create = |model_id: &str, args: &Value| -> anyhow::Result<CreateModelArgs<Value>> {
        Ok(CreateModelArgs {
            model_id: model_id
                .parse()
                .map_err(|e| anyhow::anyhow!("{model_id}: {e:?}"))?,
            args: args.clone(),
        })
    };
    let outcome = call(&alice, factory.id(), CREATE_MODEL, &create("llama", &args)?)
        .deposit(deposit)
        .transact()
        .await?;
    println!(
        "BENCH model_factory.sandbox.create_model.gas {:.2} Tgas",
        tgas(outcome.total_gas_burnt)
    );
    assert!(outcome.total_gas_burnt <= Gas::from_tgas(50), "{outcome:?}");
    assert!(
        outcome
            .logs()
            .iter()
            .any(|l| l.contains("\"model_created\"")),
        "{:?}",
        outcome.logs()
    );
    assert!(outcome.into_result()?.json::<bool>()?);

    // Listed, and the token at <model>.<factory> works.
    let token: AccountId = format!("llama.{}", factory.id()).parse()?;
    let listed: Vec<ModelView> =
        factory_view(&worker, factory.id(), MODELS, &ModelsArgs::default()).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].token, token);
    assert_eq!(&listed[0].owner, alice.id());
    assert_eq!(listed[0].status, ModelStatus::Created);
    let count: u32 = factory_view(&worker, factory.id(), MODEL_COUNT, &NoArgs {}).await?;
    assert_eq!(count, 1);
    let model_id: String = view(&bob, &token, "model_id", json!({})).await?;
    assert_eq!(model_id, "llama");
    let token_registry: AccountId = view(&bob, &token, "registry", json!({})).await?;
    assert_eq!(token_registry, registry);
    assert_eq!(ft_balance(&token, alice.id(), &bob).await?, 1000);
    register(&token, &bob).await?;
    ft_transfer(&token, &alice, bob.id(), 250)
        .await?
        .into_result()?;
    owner
        .call(&token, "deposit_revenue")
        .deposit(NearToken::from_yoctonear(4000))
        .transact()
        .await?
        .into_result()?;
    let claimable: String = view(
        &bob,
        &token,
        "claimable",
        json!({ "account_id": bob.id(), "asset": { "kind": "near" } }),
    )
    .await?;
    assert_eq!(claimable, "1000");
    let account = worker.view_account(&token).await?;
    assert!(
        account.storage_usage < 5_000,
        "the model pays for its state only, not the code: {} bytes",
        account.storage_usage
    );

    // The same id again is refused; a model whose `new` fails is unlisted and its deposit
    // refunded in full.
    assert_fails_with(
        call(&alice, factory.id(), CREATE_MODEL, &create("llama", &args)?)
            .deposit(deposit)
            .transact()
            .await?,
        "already exists",
    );
    let mut bad = model_args(json!({}));
    bad["manifest"]["allowed_enclave_measurements"] = json!(["zz"]);
    let deposit: NearToken = factory_view(
        &worker,
        factory.id(),
        CREATE_DEPOSIT,
        &CreateDepositArgs { args: bad.clone() },
    )
    .await?;
    let before = balance(&bob).await?;
    let outcome = call(&bob, factory.id(), CREATE_MODEL, &create("broken", &bad)?)
        .deposit(deposit)
        .transact()
        .await?;
    let cost = gas_cost(&outcome).as_yoctonear();
    assert!(!outcome.into_result()?.json::<bool>()?);
    assert_eq!(before - balance(&bob).await?, cost, "deposit refunded");
    let broken: Option<ModelView> = factory_view(
        &worker,
        factory.id(),
        MODEL,
        &ModelArgs {
            model_id: create("broken", &bad)?.model_id,
        },
    )
    .await?;
    assert!(broken.is_none());
    let broken_account: AccountId = format!("broken.{}", factory.id()).parse()?;
    assert!(worker.view_account(&broken_account).await.is_err());
    Ok(())
}
