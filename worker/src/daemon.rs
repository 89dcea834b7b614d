//! `worker run`: the node's main loop.
//!
//! * offers come from [`crate::feed`] (indexer stream, indexer pages, or the contract);
//! * each job is read from the chain, claimed, run through the [`JobRunner`] (journaled, so a
//!   crash resumes it without a second inference) and its signed result submitted; agent
//!   requests are answered with `respond`;
//! * an open job is claimed only if it is worth it ([`ClaimPolicy`]: its cap covers its input at
//!   this node's price, enough time is left on the chain's clock);
//! * outputs over the marketplace's inline limit go on chain by hash + URI, served from the
//!   [`OutputStore`]; a result the marketplace refuses (a contract panic: it would refuse the
//!   same transaction again) is never resubmitted: the job is given up, logged and counted;
//! * deadlines are judged by the chain's clock, as the marketplace judges them;
//! * at most `concurrency` jobs run at once;
//! * heartbeats every `heartbeat_interval`, re-attestation `reattest_before` the attestation
//!   expires;
//! * on shutdown (Ctrl-C / SIGTERM) no new work is taken; running jobs get `grace` to finish,
//!   the rest stay journaled and resume at the next start.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chain_client::ChainError;
use enclave_cloud_common::{InputRef, JobId, NodeId, OutputRef, ReceiptSubject, RequestId};
use near_sdk::json_types::Base64VecU8;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::attest::{AttestationProvider, GpuEvidenceSource, now_unix_secs};
use crate::chain::NodeChain;
use crate::claim::{ClaimPolicy, JobTerms};
use crate::devices::{DeviceAttestation, Limits, Purpose};
use crate::feed::{self, FeedConfig, Offer};
use crate::job::JobTask;
use crate::journal::ReadyResult;
use crate::keys::EnclaveKeys;
use crate::metrics::Metrics;
use crate::outputs::{OUTPUT_RETENTION, OutputStore};
use crate::runner::{JobRunner, RunError};
use crate::served_weights::{Readiness, ServedWeights};
use enclave_cloud_common::interfaces::marketplace::{Job, JobView};

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub node_id: NodeId,
    pub indexer_url: Option<String>,
    pub concurrency: usize,
    pub poll_interval: Duration,
    pub stream_retry: Duration,
    pub heartbeat_interval: Duration,
    /// Re-attest when the attestation expires within this.
    pub reattest_before: Duration,
    /// How long running jobs may finish after a shutdown signal.
    pub grace: Duration,
    /// Pause before retrying a failed submission or inference.
    pub retry_delay: Duration,
    /// Which open jobs are worth claiming.
    pub claim_policy: ClaimPolicy,
    /// Where outputs over the inline limit are stored and served; `None`: such jobs are
    /// given up.
    pub outputs: Option<OutputStore>,
    /// Which models are ready (a model with encrypted weights only once they are decrypted
    /// and checked): work for the others is not taken.
    pub weights: Arc<ServedWeights>,
}

/// Jobs declined are remembered (the feed offers them again and again) up to this many.
const DECLINED_MEMORY: usize = 100_000;

/// Everything a job task needs.
struct Ctx {
    chain: NodeChain,
    runner: JobRunner,
    metrics: Metrics,
    node_id: NodeId,
    retry_delay: Duration,
    claim_policy: ClaimPolicy,
    outputs: Option<OutputStore>,
    weights: Arc<ServedWeights>,
    /// The marketplace's inline limit as last read (0: unknown, outputs are tried inline).
    max_inline: AtomicU32,
    /// Offers being processed: the feed repeats itself (polls, reconnects).
    active: Mutex<HashSet<Offer>>,
    /// Open jobs found not worth claiming (their cap and deadline do not change).
    declined: Mutex<HashSet<JobId>>,
    shutdown: watch::Receiver<bool>,
}

/// Removes an offer from the active set when its task ends.
struct ActiveGuard<'a>(&'a Ctx, Offer);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active_set().remove(&self.1);
        self.0.metrics.in_flight.dec();
    }
}

impl Ctx {
    fn active_set(&self) -> std::sync::MutexGuard<'_, HashSet<Offer>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(&self, offer: Offer) -> Option<ActiveGuard<'_>> {
        if !self.active_set().insert(offer) {
            return None;
        }
        self.metrics.in_flight.inc();
        Some(ActiveGuard(self, offer))
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn declined_set(&self) -> std::sync::MutexGuard<'_, HashSet<JobId>> {
        self.declined.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the marketplace's inline limit again; returns it (0 if unknown).
    async fn refresh_max_inline(&self) -> u32 {
        match self.chain.max_inline_bytes().await {
            Ok(limit) => {
                self.max_inline.store(limit, Ordering::Relaxed);
                limit
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the marketplace's inline limit");
                self.max_inline.load(Ordering::Relaxed)
            }
        }
    }
}

/// Runs until `shutdown` turns true, then drains.
pub async fn run(
    config: RunConfig,
    chain: NodeChain,
    runner: JobRunner,
    attester: Attester,
    keys: Arc<EnclaveKeys>,
    metrics: Metrics,
    shutdown: watch::Receiver<bool>,
) {
    let ctx = Arc::new(Ctx {
        chain: chain.clone(),
        runner,
        metrics: metrics.clone(),
        node_id: config.node_id,
        retry_delay: config.retry_delay,
        claim_policy: config.claim_policy,
        outputs: config.outputs.clone(),
        weights: config.weights.clone(),
        max_inline: AtomicU32::new(0),
        active: Mutex::new(HashSet::new()),
        declined: Mutex::new(HashSet::new()),
        shutdown: shutdown.clone(),
    });
    let max_inline = ctx.refresh_max_inline().await;
    tracing::info!(node_id = %config.node_id, operator = %chain.operator(), max_inline, "worker running");

    let (tx, mut rx) = mpsc::channel::<Offer>(256);
    // Journaled work first: a restart resumes instead of losing or double-charging.
    for job in ctx.runner.in_flight() {
        let offer = match job.subject {
            ReceiptSubject::Job(id) => Offer::Job(id),
            ReceiptSubject::Request(id) => Offer::Request(id),
        };
        tracing::info!(?offer, "resuming journaled work");
        ctx.metrics.jobs_resumed.inc();
        let _ = tx.send(offer).await;
    }
    // A crash between the claim transaction and its journal entry leaves a job claimed on
    // chain that the journal does not know and no feed offers (it is no longer open).
    for job_id in held_jobs(&chain, config.node_id).await {
        let _ = tx.send(Offer::Job(job_id)).await;
    }
    let feed = tokio::spawn(feed::run(
        FeedConfig {
            indexer_url: config.indexer_url.clone(),
            node_id: config.node_id,
            poll_interval: config.poll_interval,
            stream_retry: config.stream_retry,
        },
        chain.clone(),
        tx,
        shutdown.clone(),
        metrics.clone(),
    ));
    let liveness = tokio::spawn(liveness(
        chain.clone(),
        config.clone(),
        attester,
        keys,
        metrics.clone(),
        shutdown.clone(),
    ));

    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        let offer = tokio::select! {
            offer = rx.recv() => offer,
            _ = stop.changed() => None,
        };
        let Some(offer) = offer else { break };
        if ctx.stopping() {
            break;
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p,
            _ = stop.changed() => break,
        };
        let Ok(permit) = permit else { break };
        let ctx = ctx.clone();
        tasks.spawn(async move {
            let _permit = permit;
            if let Some(_guard) = ctx.begin(offer) {
                match offer {
                    Offer::Job(id) => handle_job(&ctx, id).await,
                    Offer::Request(id) => handle_request(&ctx, id).await,
                }
            }
        });
        // Reap finished tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }

    tracing::info!(running = tasks.len(), "shutting down: no new work");
    let drained = tokio::time::timeout(config.grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "grace period over; unfinished jobs stay journaled and resume at the next start"
        );
        tasks.abort_all();
    }
    feed.abort();
    liveness.abort();
    tracing::info!("worker stopped");
}

/// Jobs the chain says this node holds (claimed, not settled).
async fn held_jobs(chain: &NodeChain, node_id: NodeId) -> Vec<JobId> {
    const PAGE: u64 = 100;
    let mut held = Vec::new();
    let mut from = 0;
    loop {
        match chain.jobs_by_node(node_id, from, PAGE).await {
            Ok(page) => {
                let n = page.len() as u64;
                held.extend(page.into_iter().filter_map(|job| match job {
                    JobView::Claimed(job) => Some(job.job_id),
                    _ => None,
                }));
                if n < PAGE {
                    return held;
                }
                from += n;
            }
            Err(e) => {
                tracing::warn!(error = %e, "jobs_by_node failed; relying on the journal");
                return held;
            }
        }
    }
}

/// Heartbeats and re-attestation.
async fn liveness(
    chain: NodeChain,
    config: RunConfig,
    attester: Attester,
    keys: Arc<EnclaveKeys>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    // Shrinks to half the attestation lifetime when the provider attests for less than
    // `reattest_before` (a short dev validity), so a fresh attestation is not renewed at once.
    let mut reattest_before = config.reattest_before;
    loop {
        if let Some(store) = &config.outputs {
            let removed = store.prune(OUTPUT_RETENTION);
            if removed > 0 {
                tracing::info!(removed, "deleted stored outputs past their retention");
            }
        }
        match chain.heartbeat(config.node_id).await {
            Ok(()) => metrics.heartbeats.inc(),
            Err(e) => {
                metrics.heartbeat_failures.inc();
                tracing::warn!(error = %e, "heartbeat failed");
            }
        }
        match reattest_if_due(
            &chain,
            config.node_id,
            reattest_before,
            &attester,
            &keys,
            &metrics,
        )
        .await
        {
            Ok(Some(lifetime)) if lifetime <= reattest_before => {
                reattest_before = lifetime / 2;
                tracing::info!(
                    ?reattest_before,
                    "attestations live shorter than the re-attestation margin; margin halved to their lifetime"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "re-attestation failed; retrying at the next heartbeat")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(config.heartbeat_interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// What re-attests the node: its TEE evidence, and its GPUs and NVSwitches if it has any.
pub struct Attester {
    pub provider: Arc<dyn AttestationProvider>,
    pub devices: Option<Box<dyn GpuEvidenceSource>>,
    /// The API listener (`run --api-listen`), whose `/v1/attestation` then serves a bundle
    /// of the new attestation.
    pub api: Option<crate::api::ApiState>,
}

/// Re-attests if the attestation expires within `before`. Returns the new attestation's
/// remaining lifetime when it re-attested. A node with devices goes through the same flow as
/// its registration ([`crate::devices`]), with fresh evidence over a new challenge (resumed
/// if an earlier attempt stopped half-way).
async fn reattest_if_due(
    chain: &NodeChain,
    node_id: NodeId,
    before: Duration,
    attester: &Attester,
    keys: &EnclaveKeys,
    metrics: &Metrics,
) -> Result<Option<Duration>, String> {
    let expires_ns = attestation_expiry(chain, node_id).await?;
    let now_ns = u128::from(now_ns());
    if now_ns < expires_ns.saturating_sub(before.as_nanos()) {
        return Ok(None);
    }
    match &attester.devices {
        Some(source) => {
            let flow = DeviceAttestation {
                chain,
                keys,
                provider: attester.provider.as_ref(),
                source: source.as_ref(),
            };
            let outcome = flow
                .run(
                    Purpose::Reattest { node_id },
                    Limits::default(),
                    &mut |line| tracing::info!(%node_id, "re-attestation: {line}"),
                )
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(
                %node_id,
                transactions = outcome.transactions,
                gas_tgas = outcome.gas_burnt.as_teragas(),
                "devices re-attested"
            );
        }
        None => {
            let bundle = attester
                .provider
                .attest(&keys.public(), now_unix_secs())
                .map_err(|e| e.to_string())?;
            let bundle = serde_json::to_value(&bundle).map_err(|e| e.to_string())?;
            chain
                .reattest(node_id, &bundle)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    metrics.reattestations.inc();
    if let Some(api) = &attester.api {
        match attester.provider.attest(&keys.public(), now_unix_secs()) {
            Ok(bundle) => api.set_bundle(bundle),
            Err(e) => tracing::warn!(error = %e, "the API's /v1/attestation keeps the old bundle"),
        }
    }
    // The marketplace caches the node until its attestation expires: show it the new one.
    if let Err(e) = chain.refresh_node(node_id).await {
        tracing::warn!(error = %e, "refresh_node after re-attestation failed");
    }
    let remaining = attestation_expiry(chain, node_id)
        .await?
        .saturating_sub(u128::from(self::now_ns()));
    tracing::info!(%node_id, "re-attested");
    Ok(Some(Duration::from_nanos(
        u64::try_from(remaining).unwrap_or(u64::MAX),
    )))
}

async fn attestation_expiry(chain: &NodeChain, node_id: NodeId) -> Result<u128, String> {
    let node = chain
        .get_node(node_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("node {node_id} is not in the registry"))?;
    Ok(u128::from(node.attestation_expires_at_ns.0))
}

fn now_ns() -> u64 {
    now_unix_secs().saturating_mul(1_000_000_000)
}

/// One job: look it up, claim it if open, run and submit it.
async fn handle_job(ctx: &Ctx, job_id: JobId) {
    let state = match ctx.chain.get_job(job_id).await {
        Ok(Some(state)) => state,
        Ok(None) => {
            forget(ctx, ReceiptSubject::Job(job_id), "the job no longer exists");
            return;
        }
        Err(e) => {
            tracing::warn!(%job_id, error = %e, "get_job failed");
            return;
        }
    };
    let job = match state {
        JobView::Open(job) => {
            if ctx.declined_set().contains(&job_id) {
                return;
            }
            match worth_claiming(ctx, &job).await {
                Ok(()) => {}
                Err(NotClaimed::Declined(reason)) => {
                    ctx.metrics.offers_declined.inc();
                    tracing::info!(%job_id, %reason, "not claiming the job");
                    let mut declined = ctx.declined_set();
                    if declined.len() >= DECLINED_MEMORY {
                        declined.clear();
                    }
                    declined.insert(job_id);
                    return;
                }
                Err(NotClaimed::Undecided(reason)) => {
                    tracing::warn!(%job_id, %reason, "cannot judge the job now; it stays open");
                    return;
                }
            }
            match ctx.chain.claim_job(job_id, ctx.node_id).await {
                Ok(Ok(())) => {
                    ctx.metrics.jobs_claimed.inc();
                    tracing::info!(%job_id, "claimed");
                    job
                }
                Ok(Err(reason)) => {
                    ctx.metrics.claims_lost.inc();
                    tracing::info!(%job_id, %reason, "claim refused by the marketplace");
                    return;
                }
                Err(e) => {
                    ctx.metrics.claims_lost.inc();
                    tracing::info!(%job_id, error = %e, "claim failed");
                    return;
                }
            }
        }
        JobView::Claimed(job) if job.claim.as_ref().map(|c| c.node_id) == Some(ctx.node_id) => {
            tracing::info!(%job_id, "resuming a job this node holds");
            job
        }
        JobView::Claimed(_) => return,
        JobView::Settled(_) => {
            // Settled while we were down: if we journaled it, our submission went through.
            finish(ctx, ReceiptSubject::Job(job_id));
            return;
        }
    };
    let started = Instant::now();
    process_job(ctx, job).await;
    ctx.metrics
        .job_seconds
        .observe(started.elapsed().as_secs_f64());
}

/// Why an open job is not claimed.
enum NotClaimed {
    /// Not worth it, and it will not become so.
    Declined(String),
    /// The chain could not be asked (its clock, this node's price): try at the next offer.
    Undecided(String),
}

/// Whether an open job is worth claiming: its input opens for this node, its cap covers it at
/// this node's price, and enough time is left on the chain's clock.
async fn worth_claiming(ctx: &Ctx, job: &Job) -> Result<(), NotClaimed> {
    match ctx.weights.readiness(&job.model_id) {
        Readiness::Ready => {}
        Readiness::NotYet(why) => return Err(NotClaimed::Undecided(why)),
        Readiness::Never(why) => return Err(NotClaimed::Declined(why)),
    }
    let task = task_of(job).map_err(NotClaimed::Declined)?;
    let request = ctx.runner.request_of(&task).ok_or_else(|| {
        NotClaimed::Declined("its input does not open for this node, model and user key".into())
    })?;
    let now = ctx
        .chain
        .chain_now_ns()
        .await
        .map_err(|e| NotClaimed::Undecided(format!("the chain's clock: {e}")))?;
    let node = ctx
        .chain
        .get_node(ctx.node_id)
        .await
        .map_err(|e| NotClaimed::Undecided(format!("this node's prices: {e}")))?
        .ok_or_else(|| NotClaimed::Undecided("this node is not in the registry".into()))?;
    let price = node.prices.iter().find(|p| p.model_id == job.model_id);
    let terms = JobTerms {
        price_cap: job.price_cap.0,
        units_per_near: job.token_rate.map(|r| r.units_per_near.0),
        deadline_ns: job.deadline_ns.0,
        claim_deadline_ns: job.claim_deadline_ns.0,
        request: &request,
    };
    ctx.claim_policy
        .check(&terms, price, now)
        .map_err(|d| NotClaimed::Declined(d.to_string()))
}

fn task_of(job: &Job) -> Result<JobTask, String> {
    let InputRef::Inline { ciphertext } = &job.input else {
        return Err("remote inputs are not supported".into());
    };
    let mut user_key = [0u8; 32];
    hex::decode_to_slice(&job.user_key, &mut user_key)
        .map_err(|_| format!("user_key '{}' is not 32 bytes of hex", job.user_key))?;
    Ok(JobTask {
        subject: ReceiptSubject::Job(job.job_id),
        model_id: job.model_id.clone(),
        input: ciphertext.0.clone(),
        user_key: Some(user_key),
    })
}

/// Runs a claimed job until it is settled, its deadline passes, or the worker stops.
async fn process_job(ctx: &Ctx, job: Job) {
    let subject = ReceiptSubject::Job(job.job_id);
    let task = match task_of(&job) {
        Ok(task) => task,
        Err(reason) => {
            tracing::warn!(job_id = %job.job_id, %reason, "cannot run the job");
            return;
        }
    };
    loop {
        // The chain's clock, as the marketplace judges the deadline; unknown (RPC down): the
        // attempt finds out.
        match ctx.chain.chain_now_ns().await {
            Ok(now) if now > job.deadline_ns.0 => {
                give_up(
                    ctx,
                    subject,
                    &format!(
                        "its deadline {} passed on the chain's clock ({now})",
                        job.deadline_ns.0
                    ),
                );
                return;
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(job_id = %job.job_id, error = %e, "chain clock unknown"),
        }
        match attempt_job(ctx, &job, &task).await {
            Ok(()) => return,
            Err(Attempt::Final(reason)) => {
                give_up(ctx, subject, &reason);
                return;
            }
            Err(Attempt::Retry(reason)) => {
                ctx.metrics.jobs_failed.inc();
                tracing::warn!(job_id = %job.job_id, %reason, "job attempt failed; retrying");
            }
        }
        if ctx.stopping() {
            return; // journaled: resumes at the next start
        }
        tokio::time::sleep(ctx.retry_delay).await;
    }
}

enum Attempt {
    Retry(String),
    Final(String),
}

async fn attempt_job(ctx: &Ctx, job: &Job, task: &JobTask) -> Result<(), Attempt> {
    // A job resumed after a restart waits for its model's encrypted weights (rather than
    // being answered "not served"), unless its result is journaled already.
    if let Readiness::NotYet(why) = ctx.weights.readiness(&task.model_id)
        && !ctx.runner.has_result(&task.subject)
    {
        return Err(Attempt::Retry(why));
    }
    let ready = ctx.runner.result_for(task).await.map_err(|e| match e {
        RunError::InputChanged(_) => Attempt::Final(e.to_string()),
        other => Attempt::Retry(other.to_string()),
    })?;
    let output = job_output(ctx, job.job_id, &ready)?;
    match ctx
        .chain
        .submit_result(job.job_id, &output, &ready.receipt, &ready.signature)
        .await
    {
        Ok(settlement) => {
            ctx.metrics.jobs_settled.inc();
            let cost = ctx.chain.amount_text(&job.asset, settlement.cost.0).await;
            let provider = ctx
                .chain
                .amount_text(&job.asset, settlement.provider.0)
                .await;
            tracing::info!(job_id = %job.job_id, %cost, %provider, "result settled");
            finish(ctx, task.subject);
            Ok(())
        }
        Err(e) => after_failed_submit(ctx, job.job_id, &output, e).await,
    }
}

/// The output to submit: inline when the marketplace takes it so, else stored here and
/// referenced by hash + URI; with no store, a final refusal (never a transaction the
/// marketplace would refuse).
fn job_output(ctx: &Ctx, job_id: JobId, ready: &ReadyResult) -> Result<OutputRef, Attempt> {
    let limit = ctx.max_inline.load(Ordering::Relaxed);
    if limit == 0 || ready.output.len() <= limit as usize {
        return Ok(output_ref(ready));
    }
    let Some(store) = &ctx.outputs else {
        return Err(Attempt::Final(format!(
            "the output is {} bytes, over the marketplace's inline limit of {limit}, and this worker stores no outputs (--outputs-listen)",
            ready.output.len()
        )));
    };
    let output = store
        .put(job_id, &ready.output)
        .map_err(|e| Attempt::Retry(e.to_string()))?;
    ctx.metrics.outputs_stored.inc();
    tracing::info!(%job_id, bytes = ready.output.len(), "output stored, submitted by hash + URI");
    Ok(output)
}

/// A submission failed: settled already (our earlier attempt went through) is success; a job
/// that is no longer ours is final; a refusal by the contract is final too (the same
/// transaction would be refused again), except an inline output over a limit that changed
/// since it was read: answered once more by hash + URI; anything else (RPC, network, nonce)
/// is retried.
async fn after_failed_submit(
    ctx: &Ctx,
    job_id: JobId,
    sent: &OutputRef,
    error: ChainError,
) -> Result<(), Attempt> {
    match ctx.chain.get_job(job_id).await {
        Ok(Some(JobView::Settled(_))) => {
            tracing::info!(%job_id, "already settled");
            finish(ctx, ReceiptSubject::Job(job_id));
            Ok(())
        }
        Ok(Some(JobView::Claimed(job)))
            if job.claim.as_ref().map(|c| c.node_id) == Some(ctx.node_id) =>
        {
            let ChainError::ContractPanic { message, .. } = &error else {
                return Err(Attempt::Retry(error.to_string()));
            };
            ctx.metrics.results_refused.inc();
            if let InputRef::Inline { ciphertext } = sent {
                let limit = ctx.refresh_max_inline().await;
                if limit > 0 && ciphertext.0.len() > limit as usize {
                    return Err(Attempt::Retry(format!(
                        "the inline limit is now {limit} bytes: {message}"
                    )));
                }
            }
            Err(Attempt::Final(format!(
                "the marketplace refused the result: {message}"
            )))
        }
        Ok(_) => Err(Attempt::Final(format!(
            "the job is no longer claimed by this node ({error})"
        ))),
        Err(e) => Err(Attempt::Retry(format!("{error}; get_job: {e}"))),
    }
}

fn output_ref(ready: &ReadyResult) -> InputRef {
    InputRef::Inline {
        ciphertext: Base64VecU8(ready.output.clone()),
    }
}

/// Journals a submitted result (idempotent: a job the journal never saw is fine).
fn finish(ctx: &Ctx, subject: ReceiptSubject) {
    if let Err(e) = ctx.runner.submitted(subject) {
        tracing::debug!(?subject, error = %e, "journal: nothing in flight to mark submitted");
    }
}

/// Gives up a job this node holds: journaled as abandoned, logged, counted.
fn give_up(ctx: &Ctx, subject: ReceiptSubject, reason: &str) {
    ctx.metrics.jobs_given_up.inc();
    tracing::warn!(?subject, %reason, "giving up the job");
    if let Err(e) = ctx.runner.abandoned(subject, reason) {
        tracing::debug!(?subject, error = %e, "journal: nothing in flight to abandon");
    }
}

/// Journals a job that leaves this node unanswered.
fn forget(ctx: &Ctx, subject: ReceiptSubject, reason: &str) {
    if ctx.runner.abandoned(subject, reason).is_ok() {
        tracing::warn!(?subject, %reason, "abandoned");
    }
}

/// An agent request: answer it if nobody has yet.
async fn handle_request(ctx: &Ctx, request_id: RequestId) {
    let subject = ReceiptSubject::Request(request_id);
    let request = match ctx.chain.get_request(request_id).await {
        Ok(Some(r)) if r.answer.is_none() => r,
        Ok(_) => {
            // Answered (by us or another node) or finished: nothing to do.
            finish(ctx, subject);
            return;
        }
        Err(e) => {
            tracing::warn!(%request_id, error = %e, "get_request failed");
            return;
        }
    };
    let InputRef::Inline { ciphertext } = &request.input else {
        tracing::info!(%request_id, "skipping a request with a remote input");
        return;
    };
    if let Readiness::NotYet(why) | Readiness::Never(why) = ctx.weights.readiness(&request.model_id)
        && !ctx.runner.has_result(&subject)
    {
        tracing::info!(%request_id, %why, "not answering the request");
        return;
    }
    let task = JobTask {
        subject,
        model_id: request.model_id.clone(),
        input: ciphertext.0.clone(),
        user_key: None,
    };
    let ready = match ctx.runner.result_for(&task).await {
        Ok(ready) => ready,
        Err(e) => {
            tracing::warn!(%request_id, error = %e, "request failed");
            return;
        }
    };
    let output = output_ref(&ready);
    let mut refreshed = false;
    loop {
        match ctx
            .chain
            .respond(
                request_id,
                ctx.node_id,
                &output,
                ready.receipt.usage,
                &ready.signature,
            )
            .await
        {
            Ok(()) => {
                ctx.metrics.requests_answered.inc();
                finish(ctx, subject);
                return;
            }
            // The marketplace answers only for a cached, fresh node: refresh it once.
            Err(ChainError::ContractPanic { .. }) if !refreshed => {
                refreshed = true;
                if let Err(e) = ctx.chain.refresh_node(ctx.node_id).await {
                    tracing::warn!(error = %e, "refresh_node failed");
                }
            }
            Err(e) => {
                forget(ctx, subject, &format!("respond failed: {e}"));
                return;
            }
        }
    }
}
