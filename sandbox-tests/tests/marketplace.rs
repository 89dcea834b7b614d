//! The marketplace on localnet with the real registry, a real NEP-141 token and the example AI
//! caller: jobs paid in NEAR and in the token from submission to settlement, refusals (an
//! ineligible node, a wrong key, a late result), cancellations with refund and slash, failed
//! payouts that become credits, and agent requests answered and timed out. The marketplace's
//! funds invariant (`funds().balanced`, and its token balance equal to its token ledger) is
//! checked after every step.
//!
//! Needs the contracts built: `./scripts/build-contracts.sh` (into `$ECLOUD_WASM_DIR`).

use enclave_cloud_common::events::marketplace::Settlement;
use enclave_cloud_common::interfaces::marketplace::methods::{
    AssetArgs, GET_CONFIG, GET_REQUEST, InputBytesArgs, NodeArgs, REFRESH_NODE, REQUEST_DEPOSIT,
    RequestArgs, STORAGE_BALANCE_OF, STORAGE_DEPOSIT, SUBMIT_JOB, StorageBalanceArgs,
    StorageDepositArgs, SubmitJobArgs, WITHDRAW, WITHDRAW_FEES, WithdrawArgs,
};
use enclave_cloud_common::interfaces::marketplace::{Config, FtMessage, JobView, Request};
use enclave_cloud_common::interfaces::method::NoArgs;
use enclave_cloud_common::interfaces::registry::OperatorView;
use enclave_cloud_common::interfaces::registry::methods::{AccountArgs, GET_OPERATOR};
use enclave_cloud_common::{Asset, Hash32, JobId, ReceiptSubject, RequestId};
use near_sdk::json_types::U128;
use near_workspaces::types::{Gas, NearToken};
use sandbox_tests::calls::{call, view};
use sandbox_tests::marketplace::{
    NEAR, SEC, Suite, TOKEN_UNITS_PER_NEAR, cost_yocto, gas_within, model, num, ok, refused,
    result_receipt, succeeded, usage,
};
use serde_json::{Value, json};

const FEE_BPS: u128 = 200;
const ROYALTY_BPS: u128 = 500;

/// The split the marketplace must make of `escrow` for a job that cost `cost`.
fn expected_split(escrow: u128, cost: u128) -> (u128, u128, u128, u128) {
    let cost = cost.min(escrow);
    let fee = cost * FEE_BPS / 10_000;
    let royalty = cost * ROYALTY_BPS / 10_000;
    (cost - fee - royalty, royalty, fee, escrow - cost)
}

fn near() -> Asset {
    Asset::Near
}

/// `get_job`'s answer, `"open"`, `"claimed"`, `"settled"` or `"gone"`.
fn status(job: &Option<JobView>) -> &'static str {
    match job {
        Some(JobView::Open(_)) => "open",
        Some(JobView::Claimed(_)) => "claimed",
        Some(JobView::Settled(_)) => "settled",
        None => "gone",
    }
}

#[tokio::test]
async fn near_job_lifecycle_refusals_settlement_and_a_failed_payout_credit() -> anyhow::Result<()> {
    let s = Suite::start().await?;
    s.check_funds("setup").await?;
    let input = b"encrypted prompt for the enclave".to_vec();
    let output = b"encrypted answer for the user, a little longer".to_vec();
    let cap = NEAR / 100;
    let now = s.now_ns().await?;
    let spec = s.job_spec(cap, &input, None, now + 3600 * SEC);

    // ----- submit
    let job = s.submit_near_job(&spec, input.len() as u32).await?;
    assert_eq!(status(&s.job(job).await?), "open");
    assert_eq!(s.ledger(&near()).await?.escrow.0, cap);
    s.check_funds("submit_job").await?;

    // ----- a node that does not serve the model: the registry's answer refuses it, the job
    // stays open for others.
    assert!(!s.claim(&s.other_node, job).await?);
    assert_eq!(status(&s.job(job).await?), "open");
    s.check_funds("refused claim").await?;
    // Nobody claims with a node that is not theirs (the refused node is cached by now).
    refused(
        s.try_claim(&s.relayer, job, s.other_node.id).await?,
        "not to the caller",
    )?;
    assert_eq!(status(&s.job(job).await?), "open");
    s.check_funds("claim by a stranger").await?;

    // ----- the eligible node claims it (registry round trip), once.
    assert!(s.claim(&s.node, job).await?);
    let Some(JobView::Claimed(claimed)) = s.job(job).await? else {
        anyhow::bail!("job {job} is not claimed");
    };
    assert_eq!(claimed.claim.map(|c| c.node_id), Some(s.node.id));
    s.check_funds("claim").await?;
    refused(
        s.try_claim(&s.node.operator, job, s.node.id).await?,
        "claimed",
    )?;

    // ----- a result signed by another key is refused; the job stays claimed.
    let used = usage(1_000, 2_000);
    let wrong = s
        .submit_result(job, &s.other_node.enclave_key, &input, &output, used)
        .await?;
    refused(wrong, "not signed by node")?;
    assert_eq!(status(&s.job(job).await?), "claimed");
    s.check_funds("wrong-key result").await?;

    // ----- the node served encrypted weights and signed their hash: a relayer can neither
    // drop it, swap it, nor name weights a receipt did not sign.
    let weights = Hash32([0xab; 32]);
    for (signed, relayed) in [
        (Some(weights), None),
        (Some(weights), Some(Hash32([0xcd; 32]))),
        (None, Some(weights)),
    ] {
        let forged = s
            .submit_result_naming(
                job,
                &s.node.enclave_key,
                &input,
                &output,
                used,
                signed,
                relayed,
            )
            .await?;
        refused(forged, "not signed by node")?;
    }
    assert_eq!(status(&s.job(job).await?), "claimed");
    s.check_funds("forged weights").await?;

    // ----- the node's result settles: provider, royalty, fee, refund; the receipt keeps the
    // weights hash (paid from the job's storage deposit).
    let user_before = s.settled_near_balance(s.user.id()).await?;
    let payees_before = s.payee_balances().await?;
    let storage_before = s.ledger(&near()).await?.storage.0;
    let outcome = ok(s
        .submit_result_naming(
            job,
            &s.node.enclave_key,
            &input,
            &output,
            used,
            Some(weights),
            Some(weights),
        )
        .await?)?;
    gas_within("submit_result", &outcome, 20)?;
    let settled_event = outcome
        .logs()
        .into_iter()
        .find(|l| l.contains("\"job_settled\""))
        .ok_or_else(|| anyhow::anyhow!("no job_settled event"))?;
    assert!(
        settled_event.contains(&format!("\"weights_hash\":\"{weights}\"")),
        "{settled_event}"
    );
    let settlement: Settlement = outcome.json()?;
    let (provider, royalty, fee, refund) = expected_split(cap, cost_yocto(&used));
    assert_eq!(settlement.cost.0, cost_yocto(&used));
    assert_eq!(settlement.provider.0, provider);
    assert_eq!(settlement.royalty.0, royalty);
    assert_eq!(settlement.protocol_fee.0, fee);
    assert_eq!(settlement.refund.0, refund);
    let storage_refund = storage_before - s.ledger(&near()).await?.storage.0;
    assert!(storage_refund > 0, "the job's storage is given back");
    assert_eq!(
        s.near_balance(s.user.id()).await? - user_before,
        refund + storage_refund
    );
    s.check_near_payouts(&payees_before, provider, royalty, fee)
        .await?;
    let Some(JobView::Settled(receipt)) = s.job(job).await? else {
        anyhow::bail!("job {job} is not settled");
    };
    assert_eq!(receipt.usage, used);
    assert_eq!(receipt.weights_hash, Some(weights));
    let signed = enclave_cloud_common::ResultReceipt {
        weights_hash: Some(weights),
        ..result_receipt(ReceiptSubject::Job(job), &input, &output, used)
    };
    assert_eq!(json!(receipt.signature), json!(s.node.sign(&signed)));
    s.check_funds("settlement").await?;
    // Settled once: a second result is refused.
    refused(
        s.submit_result(job, &s.node.enclave_key, &input, &output, used)
            .await?,
        "does not exist",
    )?;

    // ----- the protocol fee goes to the treasury.
    let treasury_before = s.near_balance(s.treasury.id()).await?;
    succeeded(
        call(
            &s.relayer,
            s.market.id(),
            WITHDRAW_FEES,
            &AssetArgs { asset: near() },
        )
        .transact()
        .await?,
    )?;
    assert_eq!(
        s.near_balance(s.treasury.id()).await? - treasury_before,
        fee
    );
    assert_eq!(s.ledger(&near()).await?.fees.0, 0);
    s.check_funds("withdraw_fees").await?;

    // ----- a royalty account that does not exist yet: its transfer fails and becomes a
    // credit, which is paid once the account exists.
    let ghost = s.royalties_to_a_missing_account().await?;
    let job2 = s.submit_near_job(&spec, input.len() as u32).await?;
    s.check_funds("second submit").await?;
    assert!(s.claim(&s.node, job2).await?, "claimed from the node cache");
    s.check_funds("cached claim").await?;
    // (Plain weights: the arguments carry no `weights_hash`, as before receipts named them.)
    let settled = s
        .submit_result(job2, &s.node.enclave_key, &input, &output, used)
        .await?;
    assert!(settled.is_success(), "{:?}", settled.failures());
    let Some(JobView::Settled(plain)) = s.job(job2).await? else {
        anyhow::bail!("job {job2} is not settled");
    };
    assert_eq!(plain.weights_hash, None);
    assert_eq!(
        settled.receipt_failures().len(),
        1,
        "the transfer to {ghost} fails"
    );
    assert_eq!(s.credit(&ghost, &near()).await?, royalty);
    assert_eq!(s.ledger(&near()).await?.credits.0, royalty);
    s.check_funds("failed royalty transfer").await?;
    let withdraw = |account_id| WithdrawArgs {
        asset: near(),
        account_id: Some(account_id),
    };
    refused(
        call(
            &s.relayer,
            s.market.id(),
            WITHDRAW,
            &withdraw(s.relayer.id().clone()),
        )
        .transact()
        .await?,
        "nothing",
    )?;
    let ghost_account = s
        .root
        .create_subaccount("ghost")
        .initial_balance(NearToken::from_near(1))
        .transact()
        .await?
        .into_result()?;
    let withdrawn: U128 = ok(call(
        &s.relayer,
        s.market.id(),
        WITHDRAW,
        &withdraw(ghost.clone()),
    )
    .transact()
    .await?)?
    .json()?;
    assert_eq!(withdrawn.0, royalty);
    assert_eq!(s.near_balance(ghost_account.id()).await?, NEAR + royalty);
    assert_eq!(s.credit(&ghost, &near()).await?, 0);
    assert_eq!(s.ledger(&near()).await?.credits.0, 0);
    s.check_funds("credit withdrawn").await?;
    Ok(())
}

#[tokio::test]
async fn token_job_lifecycle_with_a_failed_token_payout_credit() -> anyhow::Result<()> {
    let s = Suite::start().await?;
    let token = s.token_asset();
    for account in [s.user.id(), s.market.id(), s.royalty.id(), s.treasury.id()] {
        s.register_on_token(account).await?;
    }
    // The node's operator is not registered with the token: its payout will fail.
    succeeded(s.owner
        .call(s.token.id(), "ft_transfer")
        .args_json(json!({ "receiver_id": s.user.id(), "amount": (10 * TOKEN_UNITS_PER_NEAR).to_string() }))
        .deposit(NearToken::from_yoctonear(1))
        .transact()
        .await?)?;
    s.check_funds("setup").await?;

    let input = b"token-paid prompt".to_vec();
    let output = b"token-paid answer".to_vec();
    let cap = TOKEN_UNITS_PER_NEAR / 100;
    let sent = cap + TOKEN_UNITS_PER_NEAR / 1_000;
    let now = s.now_ns().await?;
    let spec = s.job_spec(cap, &input, None, now + 3600 * SEC);
    let msg = serde_json::to_string(&FtMessage::SubmitJob(spec.clone()))?;
    // The test token is a plain NEP-141 contract: its calls are written out.
    let transfer_call = |amount: u128| {
        s.user
            .call(s.token.id(), "ft_transfer_call")
            .args_json(json!({
                "receiver_id": s.market.id(), "amount": amount.to_string(), "msg": msg,
            }))
            .deposit(NearToken::from_yoctonear(1))
            .gas(Gas::from_tgas(100))
            .transact()
    };
    let user_tokens = s.ft_balance(s.token.id(), s.user.id()).await?;

    // ----- without a storage balance the job is refused and the token gives everything back.
    let refused_job = transfer_call(sent).await?;
    assert!(refused_job.is_success(), "{:?}", refused_job.failures());
    let used: Value = refused_job.json()?;
    assert_eq!(num(&used)?, 0);
    assert_eq!(s.ft_balance(s.token.id(), s.user.id()).await?, user_tokens);
    s.check_funds("refused token job").await?;

    // ----- storage first, then the job: only the cap stays, the rest comes back.
    succeeded(
        call(
            &s.user,
            s.market.id(),
            STORAGE_DEPOSIT,
            &StorageDepositArgs::default(),
        )
        .deposit(NearToken::from_millinear(100))
        .transact()
        .await?,
    )?;
    s.check_funds("storage_deposit").await?;
    async fn storage_balance(s: &Suite) -> anyhow::Result<u128> {
        let args = StorageBalanceArgs {
            account_id: s.user.id().clone(),
        };
        let balance: NearToken = s.view(STORAGE_BALANCE_OF, &args).await?;
        Ok(balance.as_yoctonear())
    }
    let balance_before_job = storage_balance(&s).await?;
    let submitted = ok(transfer_call(sent).await?)?;
    assert_eq!(
        num(&submitted.json::<Value>()?)?,
        cap,
        "the token used the cap"
    );
    assert_eq!(
        s.ft_balance(s.token.id(), s.user.id()).await?,
        user_tokens - cap
    );
    assert_eq!(s.ft_balance(s.token.id(), s.market.id()).await?, cap);
    let job = JobId(1);
    let Some(JobView::Open(open)) = s.job(job).await? else {
        anyhow::bail!("job {job} is not open");
    };
    assert_eq!(open.asset, token);
    let job_storage = balance_before_job - storage_balance(&s).await?;
    assert_eq!(open.storage_deposit.as_yoctonear(), job_storage);
    s.check_funds("token submit").await?;

    // ----- claim and settle in the token.
    assert!(s.claim(&s.node, job).await?);
    s.check_funds("claim").await?;
    let used = usage(1_000, 2_000);
    let user_before = s.ft_balance(s.token.id(), s.user.id()).await?;
    let outcome = s
        .submit_result(job, &s.node.enclave_key, &input, &output, used)
        .await?;
    assert!(outcome.is_success(), "{:?}", outcome.failures());
    gas_within("submit_result (token)", &outcome, 20)?;
    let settlement: Settlement = outcome.json()?;
    let cost = cost_yocto(&used) / (NEAR / TOKEN_UNITS_PER_NEAR);
    let (provider, royalty, fee, refund) = expected_split(cap, cost);
    assert_eq!(settlement.cost.0, cost);
    assert_eq!(settlement.provider.0, provider);
    assert_eq!(
        s.ft_balance(s.token.id(), s.user.id()).await? - user_before,
        refund
    );
    assert_eq!(s.ft_balance(s.token.id(), s.royalty.id()).await?, royalty);
    // The provider's transfer failed (not registered): a credit in the token.
    assert_eq!(s.credit(s.node.operator.id(), &token).await?, provider);
    assert_eq!(s.ledger(&token).await?.credits.0, provider);
    assert_eq!(s.ledger(&token).await?.fees.0, fee);
    assert_eq!(s.ledger(&token).await?.escrow.0, 0);
    // The job's storage went back to the user's storage balance, less the receipt's bytes.
    let returned = storage_balance(&s).await? - (balance_before_job - job_storage);
    assert!(
        returned > 0 && returned < job_storage,
        "{returned} of {job_storage}"
    );
    s.check_funds("token settlement").await?;

    // ----- the fee to the treasury, the credit to the provider once it can receive.
    succeeded(
        call(
            &s.relayer,
            s.market.id(),
            WITHDRAW_FEES,
            &AssetArgs {
                asset: token.clone(),
            },
        )
        .transact()
        .await?,
    )?;
    assert_eq!(s.ft_balance(s.token.id(), s.treasury.id()).await?, fee);
    s.check_funds("token withdraw_fees").await?;
    s.register_on_token(s.node.operator.id()).await?;
    let own_credit = WithdrawArgs {
        asset: token.clone(),
        account_id: None,
    };
    succeeded(
        call(&s.node.operator, s.market.id(), WITHDRAW, &own_credit)
            .transact()
            .await?,
    )?;
    assert_eq!(
        s.ft_balance(s.token.id(), s.node.operator.id()).await?,
        provider
    );
    assert_eq!(s.credit(s.node.operator.id(), &token).await?, 0);
    assert_eq!(s.ft_balance(s.token.id(), s.market.id()).await?, 0);
    s.check_funds("token credit withdrawn").await?;
    Ok(())
}

#[tokio::test]
async fn late_results_are_refused_and_missed_jobs_cancelled_with_refund_and_slash()
-> anyhow::Result<()> {
    let s = Suite::start().await?;
    let input = b"prompt with a short deadline".to_vec();
    let output = b"too late".to_vec();
    let cap = NEAR / 100;
    let now = s.now_ns().await?;
    let spec = s.job_spec(cap, &input, Some(now + 40 * SEC), now + 60 * SEC);
    let claimed_job = s.submit_near_job(&spec, input.len() as u32).await?;
    let unclaimed_job = s.submit_near_job(&spec, input.len() as u32).await?;
    s.check_funds("submit").await?;
    assert!(s.claim(&s.node, claimed_job).await?);
    s.check_funds("claim").await?;
    // Before its claim deadline only the user may cancel an open job.
    refused(s.cancel(unclaimed_job).await?, "only its user")?;
    refused(s.cancel(claimed_job).await?, "deadline has not passed")?;

    // ----- past both deadlines.
    s.worker.fast_forward(70).await?;
    assert!(s.now_ns().await? > now + 60 * SEC);
    let used = usage(10, 10);
    refused(
        s.submit_result(claimed_job, &s.node.enclave_key, &input, &output, used)
            .await?,
        "deadline",
    )?;
    assert_eq!(status(&s.job(claimed_job).await?), "claimed");
    s.check_funds("late result").await?;
    refused(
        s.try_claim(&s.node.operator, unclaimed_job, s.node.id)
            .await?,
        "claim deadline",
    )?;

    // ----- the missed deadline: anyone cancels; the user gets the escrow, the storage and
    // the slashed stake.
    async fn stake(s: &Suite) -> anyhow::Result<u128> {
        let args = AccountArgs {
            account_id: s.node.operator.id().clone(),
        };
        let operator: Option<OperatorView> =
            view(&s.worker, s.registry.id(), GET_OPERATOR, &args).await?;
        let operator = operator.ok_or_else(|| anyhow::anyhow!("no operator"))?;
        Ok(operator.stake.as_yoctonear())
    }
    // The user is compensated up to what the job put at risk (audit issue 15, finding 1).
    let config: Config = s.view(GET_CONFIG, &NoArgs {}).await?;
    let slash = config.slash_amount.as_yoctonear().min(cap);
    assert_eq!(slash, cap, "the slash is bounded by the cap");
    let stake_before = stake(&s).await?;
    let user_before = s.settled_near_balance(s.user.id()).await?;
    let storage_before = s.ledger(&near()).await?.storage.0;
    let cancelled = ok(s.cancel(claimed_job).await?)?;
    let storage_refund = storage_before - s.ledger(&near()).await?.storage.0;
    assert_eq!(stake_before - stake(&s).await?, slash);
    assert_eq!(
        s.near_balance(s.user.id()).await? - user_before,
        cap + storage_refund + slash
    );
    let event = cancelled
        .logs()
        .into_iter()
        .find(|l| l.contains("job_cancelled"))
        .map(str::to_owned);
    let event = event.unwrap_or_default();
    assert!(event.contains("deadline_missed"), "{event}");
    assert!(event.contains(&slash.to_string()), "{event}");
    assert!(s.job(claimed_job).await?.is_none());
    s.check_funds("cancel with slash").await?;

    // ----- the unclaimed job: anyone cancels, the user gets everything back.
    let user_before = s.settled_near_balance(s.user.id()).await?;
    let storage_before = s.ledger(&near()).await?.storage.0;
    succeeded(s.cancel(unclaimed_job).await?)?;
    let storage_refund = storage_before - s.ledger(&near()).await?.storage.0;
    assert_eq!(
        s.near_balance(s.user.id()).await? - user_before,
        cap + storage_refund
    );
    assert_eq!(s.ledger(&near()).await?.escrow.0, 0);
    s.check_funds("cancel unclaimed").await?;
    Ok(())
}

/// Waits (a block at a time) until the marketplace holds request `id`.
/// The audit's attacks on localnet (issue 15, findings 1 and 3): a job aimed to be missed
/// (deadline 2 s away) is refused at submission, and one node cannot hold more claimed jobs
/// than the capacity it publishes in the registry (4 for the suite's node).
#[tokio::test]
async fn slash_farming_is_refused_and_a_node_is_held_to_its_capacity() -> anyhow::Result<()> {
    let s = Suite::start().await?;
    let input = b"audit".to_vec();
    let now = s.now_ns().await?;
    let doomed = s.job_spec(1, &input, None, now + 2 * SEC);
    let outcome = call(
        &s.user,
        s.market.id(),
        SUBMIT_JOB,
        &SubmitJobArgs { job: doomed },
    )
    .deposit(NearToken::from_near(1))
    .transact()
    .await?;
    refused(outcome, "answer window")?;
    s.check_funds("a job that could not be answered is refused")
        .await?;

    let capacity = 4;
    let spec = s.job_spec(NEAR / 100, &input, None, now + 600 * SEC);
    let mut jobs = Vec::new();
    for _ in 0..=capacity {
        jobs.push(s.submit_near_job(&spec, input.len() as u32).await?);
    }
    for job in &jobs[..capacity] {
        assert!(s.claim(&s.node, *job).await?);
    }
    s.check_funds("claims up to the capacity").await?;
    let over = jobs[capacity];
    refused(
        s.try_claim(&s.node.operator, over, s.node.id).await?,
        "capacity is 4",
    )?;
    // A settled job frees its slot.
    let output = b"done".to_vec();
    succeeded(
        s.submit_result(jobs[0], &s.node.enclave_key, &input, &output, usage(3, 3))
            .await?,
    )?;
    assert!(s.claim(&s.node, over).await?);
    s.check_funds("a settled job frees its slot").await?;
    Ok(())
}

/// A job of NEAR cap for the suite's node, claimed and settled; its settlement.
async fn settle_job(s: &Suite, input: &[u8], output: &[u8]) -> anyhow::Result<Settlement> {
    let now = s.now_ns().await?;
    let spec = s.job_spec(NEAR, input, None, now + 600 * SEC);
    let job = s.submit_near_job(&spec, input.len() as u32).await?;
    assert!(s.claim(&s.node, job).await?);
    let outcome = ok(s
        .submit_result(
            job,
            &s.node.enclave_key,
            input,
            output,
            usage(100_000, 200_000),
        )
        .await?)?;
    Ok(outcome.json()?)
}

/// Audit finding 2: a model id nobody created earns no royalties for whoever creates it later.
/// With a model factory and no royalty account, a job's royalty is a protocol fee and nothing
/// is credited to `<model>.<factory>`; the marketplace refuses to confirm the model before it
/// exists; once the factory created it, `confirm_model` routes the next royalty to its token.
#[tokio::test]
async fn royalties_of_an_uncreated_model_are_fees_until_the_factory_confirms_it()
-> anyhow::Result<()> {
    use enclave_cloud_common::interfaces::marketplace::ConfigPatch;
    use enclave_cloud_common::interfaces::marketplace::methods::{
        CONFIRM_MODEL, ModelArgs, ROYALTY_ACCOUNT, SET_ROYALTY_ACCOUNT, SetRoyaltyAccountArgs,
        UPDATE_CONFIG, UpdateConfigArgs,
    };
    use enclave_cloud_common::interfaces::model_factory::methods::{
        CREATE_DEPOSIT, CREATE_MODEL, CreateDepositArgs, CreateModelArgs,
    };
    use near_workspaces::AccountId;
    use sandbox_tests::model_token::{deploy_factory, model_args};

    let s = Suite::start().await?;
    let factory = deploy_factory(&s.worker, &s.owner, s.registry.id()).await?;
    let token: AccountId = format!("{}.{}", model(), factory.id()).parse()?;
    let lift = SetRoyaltyAccountArgs {
        model_id: model(),
        account: None,
    };
    succeeded(
        call(&s.owner, s.market.id(), SET_ROYALTY_ACCOUNT, &lift)
            .transact()
            .await?,
    )?;
    let patch = UpdateConfigArgs {
        patch: ConfigPatch {
            model_factory: Some(factory.id().clone()),
            ..ConfigPatch::default()
        },
    };
    succeeded(
        call(&s.owner, s.market.id(), UPDATE_CONFIG, &patch)
            .transact()
            .await?,
    )?;

    // 1. The model does not exist: its royalty joins the fees, nobody is credited.
    let input = b"royalty".to_vec();
    let output = b"paid".to_vec();
    let fees_before = s.ledger(&near()).await?.fees.0;
    let first = settle_job(&s, &input, &output).await?;
    assert!(first.royalty.0 > 0, "{first:?}");
    assert_eq!(
        s.ledger(&near()).await?.fees.0 - fees_before,
        first.protocol_fee.0 + first.royalty.0,
        "the royalty of an uncreated model is a protocol fee"
    );
    assert_eq!(s.credit(&token, &near()).await?, 0, "nothing set aside");
    s.check_funds("an uncreated model's royalty").await?;

    // 2. Confirming a model the factory never created is refused.
    let model_args_ = ModelArgs { model_id: model() };
    let confirm = || call(&s.user, s.market.id(), CONFIRM_MODEL, &model_args_).transact();
    let refused_confirmation: bool = ok(confirm().await?)?.json()?;
    assert!(!refused_confirmation);
    let account: Option<AccountId> = s.view(ROYALTY_ACCOUNT, &model_args_).await?;
    assert_eq!(account, None);

    // 3. The factory creates it; the marketplace confirms it; the next royalty goes to it.
    let args = model_args(json!({}));
    let deposit: NearToken = view(
        &s.worker,
        factory.id(),
        CREATE_DEPOSIT,
        &CreateDepositArgs { args: args.clone() },
    )
    .await?;
    let create = CreateModelArgs {
        model_id: model(),
        args,
    };
    let created: bool = ok(call(&s.user, factory.id(), CREATE_MODEL, &create)
        .deposit(deposit)
        .transact()
        .await?)?
    .json()?;
    assert!(created);
    let confirmed: bool = ok(confirm().await?)?.json()?;
    assert!(confirmed);
    let account: Option<AccountId> = s.view(ROYALTY_ACCOUNT, &model_args_).await?;
    assert_eq!(account.as_ref(), Some(&token));
    s.check_funds("a confirmed model").await?;
    let token_before = s.near_balance(&token).await?;
    let second = settle_job(&s, &input, &output).await?;
    assert!(second.royalty.0 > 0, "{second:?}");
    let token_after = s.settled_near_balance(&token).await?;
    assert_eq!(
        token_after - token_before,
        second.royalty.0,
        "the royalty reached the model token as revenue"
    );
    s.check_funds("a confirmed model's royalty").await?;
    Ok(())
}

async fn request_pending(s: &Suite, id: RequestId) -> anyhow::Result<Request> {
    for _ in 0..50 {
        let request: Option<Request> = s.view(GET_REQUEST, &RequestArgs { request_id: id }).await?;
        if let Some(request) = request {
            return Ok(request);
        }
        s.worker.fast_forward(1).await?;
    }
    anyhow::bail!("request {id} never arrived")
}

/// The most NEAR `tgas` of prepaid gas can cost at the gas price `outcome` paid.
fn gas_cost_bound(outcome: &near_workspaces::result::ExecutionFinalResult, tgas: u128) -> u128 {
    let tx = outcome.outcome();
    let price = tx.tokens_burnt.as_yoctonear() / u128::from(tx.gas_burnt.as_gas().max(1));
    tgas * 1_000_000_000_000 * price
}

/// Waits (a block at a time) until the AI caller has an outcome for request `id`; a few more
/// blocks let the payouts sent with it land.
async fn answer_of(s: &Suite, id: &str) -> anyhow::Result<Value> {
    for _ in 0..50 {
        let answer: Value = s
            .caller
            .view("get_answer")
            .args_json(json!({ "request_id": id }))
            .await?
            .json()?;
        if !answer.is_null() {
            s.worker.fast_forward(3).await?;
            return Ok(answer);
        }
        s.worker.fast_forward(1).await?;
    }
    anyhow::bail!("request {id} got no answer")
}

#[tokio::test]
async fn agent_requests_are_answered_and_time_out_through_the_example_caller() -> anyhow::Result<()>
{
    let s = Suite::start().await?;
    // The node answers requests from the marketplace's cache.
    let cached: bool = ok(call(
        &s.relayer,
        s.market.id(),
        REFRESH_NODE,
        &NodeArgs { node_id: s.node.id },
    )
    .transact()
    .await?)?
    .json()?;
    assert!(cached);
    s.check_funds("refresh_node").await?;

    let input = b"what is the answer?".to_vec();
    let output = b"42, encrypted".to_vec();
    let cap = NEAR / 10;
    let storage: NearToken = s
        .view(
            REQUEST_DEPOSIT,
            &InputBytesArgs {
                input_bytes: u32::try_from(input.len())?,
            },
        )
        .await?;
    let deposit = cap + storage.as_yoctonear();
    let ask = || {
        s.user
            .call(s.caller.id(), "ask")
            .args_json(json!({ "model_id": sandbox_tests::marketplace::MODEL,
                               "input": sandbox_tests::marketplace::inline(&input),
                               "price_cap": cap.to_string() }))
            .deposit(NearToken::from_yoctonear(deposit))
            .gas(Gas::from_tgas(150))
            .transact_async()
    };

    // ----- answered: the caller's callback gets the output, the asker pays only the cost.
    let user_before = s.settled_near_balance(s.user.id()).await?;
    let payees_before = s.payee_balances().await?;
    let asked = ask().await?;
    let request = request_pending(&s, RequestId(1)).await?;
    assert_eq!(&request.caller, s.caller.id());
    assert_eq!(s.ledger(&near()).await?.escrow.0, cap);
    s.check_funds("request").await?;
    let used = usage(3_000, 500);
    let responded = ok(s
        .respond(RequestId(1), &s.node, &input, &output, used)
        .await?)?;
    gas_within("respond", &responded, 20)?;
    let asked = ok(asked.await?)?;
    let most_gas = gas_cost_bound(&asked, 150);
    let request_id: Value = asked.json()?;
    assert_eq!(request_id, json!("1"));
    let answer = answer_of(&s, "1").await?;
    let cost = cost_yocto(&used);
    assert_eq!(answer["status"], "answered", "{answer}");
    assert_eq!(num(&answer["response"]["cost"])?, cost);
    assert_eq!(
        answer["response"]["output"],
        json!(sandbox_tests::marketplace::inline(&output))
    );
    let (provider, royalty, fee, _refund) = expected_split(cap, cost);
    // The asker paid the cost and gas, nothing else (the rest of its deposit came back).
    let paid = user_before.saturating_sub(s.settled_near_balance(s.user.id()).await?);
    assert!(
        paid >= cost && paid <= cost + most_gas,
        "paid {paid}, cost {cost}"
    );
    s.check_near_payouts(&payees_before, provider, royalty, fee)
        .await?;
    let gone: Option<Request> = s
        .view(
            GET_REQUEST,
            &RequestArgs {
                request_id: RequestId(1),
            },
        )
        .await?;
    assert!(gone.is_none());
    s.check_funds("answered request").await?;

    // ----- nobody answers: after the yield timeout the caller hears `None` and the asker
    // gets everything back but the gas.
    let user_before = s.settled_near_balance(s.user.id()).await?;
    let asked = ask().await?;
    request_pending(&s, RequestId(2)).await?;
    s.check_funds("second request").await?;
    s.worker.fast_forward(250).await?;
    let asked = ok(asked.await?)?;
    let answer = answer_of(&s, "2").await?;
    assert_eq!(answer["status"], "timed_out", "{answer}");
    let after = s.settled_near_balance(s.user.id()).await?;
    // The asker's balance never grows: it got its deposit back and paid gas.
    assert!(
        after <= user_before,
        "balance grew from {user_before} to {after}"
    );
    let paid = user_before - after;
    assert!(
        paid <= gas_cost_bound(&asked, 150),
        "paid {paid} of a {cap} cap"
    );
    assert_eq!(s.ledger(&near()).await?.escrow.0, 0);
    s.check_funds("timed-out request").await?;
    // A late answer finds nothing to resume.
    refused(
        s.respond(RequestId(2), &s.node, &input, &output, used)
            .await?,
        "does not exist",
    )?;
    s.check_funds("late answer").await?;
    Ok(())
}
