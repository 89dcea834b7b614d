//! Encrypted jobs: `ecloud job submit | status | result`.
//!
//! Submit: choose a node (or take `--node`), confirm its attested keys with the registry,
//! seal the request to its x25519 key (HPKE, `protocol`'s envelope, bound to the model and the
//! user's key), pay the marketplace (`submit_job` with NEAR, or `ft_transfer_call` with a
//! NEP-141 token and the job as `msg`; the token must be one the marketplace accepts). Result:
//! take the output from the indexer (or, for an output too large to go inline, from the URI
//! the node gave, checked against its hash), check the node's signed receipt against the
//! hashes of our input and of that output, then decrypt it with the user's key.

use std::path::PathBuf;
use std::time::Duration;

use chain_client::NearToken;
use chain_client::contracts::MarketplaceClient;
use enclave_cloud_common::events::marketplace::JobTarget;
use enclave_cloud_common::events::model::ModelManifest;
use enclave_cloud_common::events::{AnyEvent, MarketplaceEvent};
use enclave_cloud_common::interfaces::marketplace::JobView;
use enclave_cloud_common::{
    Asset, Hash32, InputRef, JobId, JobSpec, ModelId, NodeId, ReceiptSubject, ResultReceipt, Usage,
};
use near_sdk::AccountId;
use near_sdk::json_types::{Base64VecU8, U64, U128};
use protocol::indexer::JobDetail;
use protocol::job::{JobRequest, JobResponse, open_job_output, seal_job_input, sha256};
use protocol::receipt::verify_receipt;
use serde::Serialize;

use crate::Error;
use crate::amount::{TokenFormat, asset_amount};
use crate::chain::Chain;
use crate::indexer::{Indexer, NodeQuery};
use crate::nodes::{self, NodeInfo};
use crate::output::Report;
use crate::user_key::{self, UserKey};

/// The marketplace's `get_config`, in the contract's own type.
pub type MarketConfig = enclave_cloud_common::interfaces::marketplace::Config;

/// When a job must be claimed and answered, relative to the chain's clock.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub deadline: Duration,
    pub claim_window: Option<Duration>,
}

/// What the user pays at most, and when, on the chain's clock.
#[derive(Debug, Clone, Copy)]
pub struct Terms {
    /// yoctoNEAR, or the token's smallest units.
    pub price_cap: u128,
    /// The chain's time now.
    pub now_ns: u64,
    pub deadlines: Deadlines,
}

/// A sealed job ready to send, and the sizes that decide its deposit.
#[derive(Debug, Clone)]
pub struct PreparedJob {
    pub spec: JobSpec,
    /// The envelope bytes (what `input_hash` covers).
    pub ciphertext: Vec<u8>,
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Seals `request` to `node` and builds the job. Pure: no network.
pub fn prepare(
    node: &NodeInfo,
    model: &ModelId,
    request: &JobRequest,
    user: &UserKey,
    terms: Terms,
    config: &MarketConfig,
) -> Result<PreparedJob, Error> {
    let Terms {
        price_cap,
        now_ns,
        deadlines,
    } = terms;
    if let Some(why) = node.unusable_for(model, now_ns) {
        return Err(Error::NotFound(why));
    }
    if price_cap == 0 {
        return Err(Error::BadInput(
            "--max-cost must be more than zero: it is the most the job may cost".into(),
        ));
    }
    let envelope = seal_job_input(
        &node.encryption_key_bytes()?,
        model,
        &user.public_key(),
        request,
    )
    .map_err(|e| Error::Verification(format!("cannot seal to node {}: {e}", node.node_id)))?;
    let ciphertext = envelope.to_bytes();
    if ciphertext.len() > config.max_inline_bytes as usize {
        return Err(Error::BadInput(format!(
            "the sealed input is {} bytes; the marketplace takes at most {} inline (shorten the input)",
            ciphertext.len(),
            config.max_inline_bytes
        )));
    }
    if ns(deadlines.deadline) > config.max_job_duration_ns.0 {
        return Err(Error::BadInput(format!(
            "--deadline is longer than the marketplace allows ({} s)",
            config.max_job_duration_ns.0 / 1_000_000_000
        )));
    }
    let window = config.min_answer_window_ns.0;
    if ns(deadlines.deadline) <= window {
        return Err(Error::BadInput(format!(
            "--deadline must be more than the marketplace's answer window ({} s): a node \
             claiming the job needs that long to answer",
            window / 1_000_000_000
        )));
    }
    let deadline_ns = now_ns.saturating_add(ns(deadlines.deadline));
    // The marketplace refuses a claim deadline that leaves the node less than the window.
    let claim_deadline_ns = deadlines
        .claim_window
        .map(|w| U64(now_ns.saturating_add(ns(w)).min(deadline_ns - window)));
    Ok(PreparedJob {
        spec: JobSpec {
            model_id: model.clone(),
            price_cap: U128(price_cap),
            deadline_ns: U64(deadline_ns),
            claim_deadline_ns,
            target: JobTarget::Node {
                node_id: node.node_id,
            },
            input: InputRef::Inline {
                ciphertext: Base64VecU8(ciphertext.clone()),
            },
            user_key: user.public_hex(),
        },
        ciphertext,
    })
}

/// How the user picks the node.
#[derive(Debug, Clone, Default)]
pub struct NodeChoice {
    pub node: Option<NodeId>,
    pub region: Option<String>,
    pub gpu: Option<String>,
    /// Highest output price per million tokens, yoctoNEAR.
    pub max_price: Option<u128>,
}

/// `ecloud job submit`.
#[derive(Debug, Clone)]
pub struct SubmitArgs {
    pub model: ModelId,
    pub request: JobRequest,
    pub choice: NodeChoice,
    /// In yoctoNEAR, or in the token's smallest units with `token`.
    pub price_cap: u128,
    pub token: Option<AccountId>,
    pub deadlines: Deadlines,
}

/// What `job submit` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Submitted {
    pub job_id: JobId,
    pub node_id: NodeId,
    pub model_id: ModelId,
    pub asset: Asset,
    pub price_cap: U128,
    /// NEAR attached to the transaction (cap + storage for NEAR jobs; 1 yocto for tokens).
    pub attached: U128,
    pub deadline_ns: U64,
    pub input_bytes: usize,
    pub input_hash: Hash32,
    pub user_key: String,
    pub key_file: PathBuf,
    pub tx_hash: String,
    /// The token's symbol and decimals for the text output (not in the JSON).
    #[serde(skip)]
    pub token_format: Option<TokenFormat>,
}

impl Report for Submitted {
    fn human(&self) -> String {
        let cap = asset_amount(&self.asset, self.price_cap.0, self.token_format.as_ref());
        format!(
            "job {} submitted to node {} (model {})\n  price cap  {cap}\n  input      {} bytes sealed to the node's attested key\n  your key   {} ({})\n  tx         {}\n",
            self.job_id,
            self.node_id,
            self.model_id,
            self.input_bytes,
            self.user_key,
            self.key_file.display(),
            self.tx_hash
        )
    }
}

/// The chain's clock (the registry's `now_ns`), or the local clock if the view fails.
pub async fn chain_now_ns(chain: &Chain) -> u64 {
    chain
        .registry()
        .now_ns()
        .await
        .unwrap_or_else(|_| local_now_ns())
}

pub fn local_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, ns)
}

/// The registry's record of a node.
pub async fn registry_node(chain: &Chain, id: NodeId) -> Result<Option<NodeInfo>, Error> {
    Ok(chain.registry().get_node(id).await?.map(NodeInfo::from))
}

/// Picks the node: `--node` (indexer record, else the registry's) or the cheapest usable node
/// the indexer lists for the model and filters; then confirms it with the registry.
pub async fn pick_node(
    chain: &Chain,
    indexer: &Indexer,
    model: &ModelId,
    choice: &NodeChoice,
    now_ns: u64,
) -> Result<NodeInfo, Error> {
    let candidate = match choice.node {
        Some(id) => match indexer.node(id).await {
            Ok(Some(n)) => n,
            // The indexer does not know it (yet) or is down: the registry decides alone.
            Ok(None) | Err(Error::Indexer { .. }) => registry_node(chain, id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("node {id} is not in the registry")))?,
            Err(e) => return Err(e),
        },
        None => {
            let page = indexer
                .nodes(&NodeQuery {
                    model: Some(model.clone()),
                    region: choice.region.clone(),
                    gpu: choice.gpu.clone(),
                    status: Some("active".into()),
                    max_price: choice.max_price,
                    sort: Some("price"),
                    limit: Some(50),
                    cursor: None,
                })
                .await?;
            nodes::choose(&page.items, model, now_ns)?.clone()
        }
    };
    let confirmed = nodes::confirm(&candidate, registry_node(chain, candidate.node_id).await?)?;
    if let Some(why) = confirmed.unusable_for(model, now_ns) {
        return Err(Error::NotFound(why));
    }
    Ok(confirmed)
}

/// `ecloud job submit`: seal, pay, return the job id.
pub async fn submit(
    chain: &Chain,
    indexer: &Indexer,
    args: SubmitArgs,
) -> Result<Submitted, Error> {
    let settings = chain.settings().clone();
    let signer = chain.signer()?;
    let marketplace = chain.marketplace();
    let market = marketplace.id().clone();
    if let Some(token) = &args.token {
        check_token_accepted(chain, token).await?;
    }
    let now = chain_now_ns(chain).await;
    let node = pick_node(chain, indexer, &args.model, &args.choice, now).await?;
    let config: MarketConfig = marketplace.get_config().await?;
    if config.paused {
        return Err(Error::Chain(format!("the marketplace {market} is paused")));
    }
    let user = user_key::load_or_create(&settings.network_keys_dir(), signer.account_id())?;
    let job = prepare(
        &node,
        &args.model,
        &args.request,
        &user,
        Terms {
            price_cap: args.price_cap,
            now_ns: now,
            deadlines: args.deadlines,
        },
        &config,
    )?;
    let input_len = u32::try_from(job.ciphertext.len()).unwrap_or(u32::MAX);
    let storage = marketplace
        .job_storage_deposit(input_len)
        .await?
        .as_yoctonear();
    let (asset, attached, job_id, tx_hash) = match &args.token {
        None => {
            let attached = args
                .price_cap
                .checked_add(storage)
                .ok_or_else(|| Error::BadInput("--max-cost is too large".into()))?;
            let (id, outcome) = crate::progress::waiting(
                "submitting the job (submit_job)",
                marketplace
                    .submit_job(&job.spec, NearToken::from_yoctonear(attached))?
                    .send_outcome(&signer),
            )
            .await?;
            (Asset::Near, attached, id, outcome.tx_hash.to_string())
        }
        Some(token) => {
            // Token jobs pay their storage from the user's storage balance at the marketplace.
            let balance = marketplace
                .storage_balance_of(signer.account_id())
                .await?
                .as_yoctonear();
            if balance < storage {
                crate::progress::waiting(
                    "paying the job's storage at the marketplace",
                    marketplace
                        .storage_deposit(None, NearToken::from_yoctonear(storage - balance))?
                        .send(&signer),
                )
                .await?;
            }
            let msg = MarketplaceClient::submit_job_message(&job.spec);
            let outcome = crate::progress::waiting(
                &format!("submitting the job (ft_transfer_call to {token})"),
                chain.ft_transfer_call(&signer, token, &market, args.price_cap, msg),
            )
            .await?;
            let id = submitted_job_id(&outcome.logs, signer.account_id()).ok_or_else(|| {
                Error::Chain(format!(
                    "{token} took the transfer but the marketplace created no job (tx {}): is the token accepted? the amount was refunded",
                    outcome.tx_hash
                ))
            })?;
            (
                Asset::Ft {
                    token: token.clone(),
                },
                1,
                id,
                outcome.tx_hash.to_string(),
            )
        }
    };
    let token_format = chain.token_format(&asset).await;
    Ok(Submitted {
        job_id,
        node_id: node.node_id,
        model_id: args.model,
        asset,
        price_cap: U128(args.price_cap),
        attached: U128(attached),
        deadline_ns: job.spec.deadline_ns,
        input_bytes: job.ciphertext.len(),
        input_hash: sha256(&job.ciphertext),
        user_key: user.public_hex(),
        key_file: user.path,
        tx_hash,
        token_format,
    })
}

/// Refuses a payment token the marketplace does not accept (`accepted_tokens`), before any
/// transaction: the transfer would only be refunded, its gas lost.
pub async fn check_token_accepted(chain: &Chain, token: &AccountId) -> Result<(), Error> {
    let marketplace = chain.marketplace();
    let market = marketplace.id();
    let accepted = marketplace.accepted_tokens().await?;
    if accepted.iter().any(|(t, _)| t == token) {
        return Ok(());
    }
    let list: Vec<String> = accepted.iter().map(|(t, _)| t.to_string()).collect();
    Err(Error::BadInput(format!(
        "--token {token}: the marketplace {market} does not accept it for payment (accepted: {})",
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.join(", ")
        }
    )))
}

/// The id of the job `user` submitted, from a transaction's NEP-297 logs.
pub fn submitted_job_id(logs: &[String], user: &AccountId) -> Option<JobId> {
    logs.iter().find_map(|line| match AnyEvent::parse(line) {
        Ok(Some(AnyEvent::Marketplace(MarketplaceEvent::JobSubmitted {
            job_id, user: u, ..
        }))) if &u == user => Some(job_id),
        _ => None,
    })
}

// ----- status -----

/// What `job status` prints: the same fields whichever source answered.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatusReport {
    /// `indexer` or `marketplace` (the chain view, used when the indexer cannot answer).
    pub source: &'static str,
    pub job_id: JobId,
    /// `open`, `claimed`, `settled` or `cancelled`.
    pub status: String,
    pub model_id: Option<ModelId>,
    pub user: Option<String>,
    pub node_id: Option<NodeId>,
    pub asset: Option<String>,
    pub price_cap: Option<String>,
    pub deadline_ns: Option<String>,
    pub usage: Option<serde_json::Value>,
    pub settlement: Option<serde_json::Value>,
    pub cancel_reason: Option<String>,
    pub refund: Option<String>,
    /// A token job's symbol and decimals for the text output (not in the JSON).
    #[serde(skip)]
    pub token_format: Option<TokenFormat>,
}

impl JobStatusReport {
    /// The job's asset from its `near` / `ft:<token>` name.
    pub fn asset(&self) -> Option<Asset> {
        match self.asset.as_deref()? {
            "near" => Some(Asset::Near),
            other => Some(Asset::Ft {
                token: other.strip_prefix("ft:")?.parse().ok()?,
            }),
        }
    }

    /// From the indexer's record of job `id`.
    fn from_indexer(id: JobId, j: &JobDetail) -> Self {
        let j = &j.job;
        Self {
            source: "indexer",
            job_id: id,
            status: j.status.clone(),
            model_id: j.model_id.parse().ok(),
            user: Some(j.user.clone()),
            node_id: j.node_id.as_deref().and_then(|n| n.parse().ok()),
            asset: Some(j.asset.clone()),
            price_cap: Some(j.price_cap.clone()),
            deadline_ns: Some(j.deadline_ns.clone()),
            usage: j.usage.as_ref().and_then(|u| serde_json::to_value(u).ok()),
            settlement: j
                .settlement
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok()),
            cancel_reason: j.cancel_reason.clone(),
            refund: j.refund.clone(),
            token_format: None,
        }
    }

    /// From the marketplace's `get_job`.
    pub fn from_marketplace(id: JobId, view: &JobView) -> Self {
        let asset = crate::amount::asset_name;
        match view {
            JobView::Open(j) | JobView::Claimed(j) => Self {
                source: "marketplace",
                job_id: id,
                status: if matches!(view, JobView::Open(_)) {
                    "open"
                } else {
                    "claimed"
                }
                .to_owned(),
                model_id: Some(j.model_id.clone()),
                user: Some(j.user.to_string()),
                node_id: j.claim.as_ref().map(|c| c.node_id),
                asset: Some(asset(&j.asset)),
                price_cap: Some(j.price_cap.0.to_string()),
                deadline_ns: Some(j.deadline_ns.0.to_string()),
                usage: None,
                settlement: None,
                cancel_reason: None,
                refund: None,
                token_format: None,
            },
            JobView::Settled(r) => Self {
                source: "marketplace",
                job_id: id,
                status: "settled".to_owned(),
                model_id: Some(r.model_id.clone()),
                user: Some(r.user.to_string()),
                node_id: Some(r.node_id),
                asset: Some(asset(&r.asset)),
                price_cap: None,
                deadline_ns: None,
                usage: serde_json::to_value(r.usage).ok(),
                settlement: serde_json::to_value(&r.settlement).ok(),
                cancel_reason: None,
                refund: Some(r.settlement.refund.0.to_string()),
                token_format: None,
            },
        }
    }
}

impl Report for JobStatusReport {
    fn human(&self) -> String {
        let mut out = format!("job {}: {}\n", self.job_id, self.status);
        let asset = self.asset();
        let amount = |v: &str| match (&asset, v.parse::<u128>()) {
            (Some(a), Ok(units)) => asset_amount(a, units, self.token_format.as_ref()),
            _ => v.to_owned(),
        };
        let mut row = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                out.push_str(&format!("  {k:<11} {v}\n"));
            }
        };
        row("model", self.model_id.as_ref().map(ToString::to_string));
        row("user", self.user.clone());
        row("node", self.node_id.map(|n| n.to_string()));
        row("asset", self.asset.clone());
        row("price cap", self.price_cap.as_deref().map(amount));
        row(
            "usage",
            self.usage.as_ref().map(|u| {
                format!(
                    "{} input / {} output tokens",
                    u["input_tokens"]
                        .as_u64()
                        .or_else(|| u["input_tokens"].as_str().and_then(|s| s.parse().ok()))
                        .unwrap_or(0),
                    u["output_tokens"]
                        .as_u64()
                        .or_else(|| u["output_tokens"].as_str().and_then(|s| s.parse().ok()))
                        .unwrap_or(0)
                )
            }),
        );
        // The settlement: the cost and how it was split (provider, model royalty, protocol fee).
        for (label, key) in [
            ("cost", "cost"),
            ("provider", "provider"),
            ("royalty", "royalty"),
            ("fee", "protocol_fee"),
        ] {
            row(
                label,
                self.settlement
                    .as_ref()
                    .and_then(|s| s[key].as_str())
                    .map(amount),
            );
        }
        row("cancelled", self.cancel_reason.clone());
        row("refund", self.refund.as_deref().map(amount));
        row("source", Some(self.source.to_owned()));
        out
    }
}

/// The report with its token's symbol and decimals (token jobs).
async fn with_token_format(chain: &Chain, mut report: JobStatusReport) -> JobStatusReport {
    if let Some(asset) = report.asset() {
        report.token_format = chain.token_format(&asset).await;
    }
    report
}

/// `ecloud job status`: the indexer, or the marketplace view when the indexer is down or has
/// not seen the job yet.
pub async fn status(chain: &Chain, indexer: &Indexer, id: JobId) -> Result<JobStatusReport, Error> {
    let indexed = indexer.job(id).await;
    if let Ok(Some(job)) = &indexed {
        return Ok(with_token_format(chain, JobStatusReport::from_indexer(id, job)).await);
    }
    let marketplace = chain.marketplace();
    let market = marketplace.id();
    let view = match marketplace.get_job(id).await.map_err(Error::from) {
        Ok(v) => v,
        // Both sources failed: report the indexer's failure too.
        Err(chain_err) => {
            return Err(match (indexed, chain_err) {
                (Err(indexer_err), Error::Chain(m)) => {
                    Error::Chain(format!("{m}; and the {indexer_err}"))
                }
                (_, e) => e,
            });
        }
    };
    match view {
        Some(v) => Ok(with_token_format(chain, JobStatusReport::from_marketplace(id, &v)).await),
        // The marketplace keeps open, claimed and settled jobs; a cancelled job is gone from it
        // and only the indexer remembers it.
        None => Err(Error::NotFound(format!(
            "job {id} is not in the marketplace {market} (never submitted, or cancelled and the indexer is unavailable)"
        ))),
    }
}

// ----- result -----

/// What the check reads of the `job_settled` event ([`MarketplaceEvent::JobSettled`]).
#[derive(Debug, Clone)]
pub struct SettledEvent {
    pub node_id: NodeId,
    pub usage: Usage,
    pub output: InputRef,
    pub input_hash: Hash32,
    pub output_hash: Hash32,
    pub signature: Base64VecU8,
    /// The encrypted weights the signed receipt names (`None`: plain weights).
    pub weights_hash: Option<Hash32>,
}

/// Everything needed to check and open a settled job's output.
#[derive(Debug, Clone)]
pub struct SettledJob {
    pub job_id: JobId,
    pub model_id: ModelId,
    /// The user key the job named (hex).
    pub user_key: String,
    /// The input ciphertext as submitted.
    pub input: Vec<u8>,
    pub settled: SettledEvent,
}

/// How the receipt was authenticated.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// `signature` (ed25519 over the receipt, checked here) or `transaction` (the node signed
    /// the result transaction itself; the marketplace checked that key).
    pub receipt: &'static str,
    pub signer_key: String,
    /// Where the node's key came from: `marketplace` (the receipt's key frozen at claim),
    /// `registry`, or `indexer` (the chain was unreachable).
    pub key_source: &'static str,
    pub input_hash: Hash32,
    pub output_hash: Hash32,
    /// The encrypted weights the receipt names (signed with it; `None`: plain weights). The
    /// answer (`JobResult::weights_hash`) must name the same ones.
    pub weights_hash: Option<Hash32>,
}

/// What `job result` prints.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    pub job_id: JobId,
    pub model_id: ModelId,
    pub node_id: NodeId,
    pub usage: Usage,
    /// The node's HTTP status for the request (4xx: the request was refused, at zero usage).
    pub status_code: u16,
    /// The OpenAI response (or error) body.
    pub body: serde_json::Value,
    /// The encrypted weights that answered as the answer names them (inside the output the
    /// receipt signs): the same as the receipt's (`verified.weights_hash`), checked against the
    /// model manifest's; `None`: plain weights.
    pub weights_hash: Option<Hash32>,
    pub verified: Verified,
}

impl JobResult {
    /// An answer must name the encrypted weights the model's manifest names (`expected`), and
    /// none when it names none. Refusals (non-200) name none and are not checked.
    pub fn check_weights(&self, expected: Option<&Hash32>) -> Result<(), Error> {
        if self.status_code != 200 {
            return Ok(());
        }
        protocol::job::check_weights(self.weights_hash.as_ref(), expected).map_err(|e| {
            Error::Verification(format!(
                "job {}'s answer by node {}: {e}",
                self.job_id, self.node_id
            ))
        })
    }
}

fn inline_bytes(r: &InputRef, what: &str) -> Result<Vec<u8>, Error> {
    match r {
        InputRef::Inline { ciphertext } => Ok(ciphertext.0.clone()),
        InputRef::Remote { uri, .. } => Err(Error::BadInput(format!(
            "the {what} is stored remotely ({uri}); only inline {what}s are supported"
        ))),
    }
}

/// The node key a settled job is checked against, and its source.
pub struct NodeKey {
    pub key: String,
    pub source: &'static str,
    /// `true` when the chain confirmed that the result transaction itself was signed by it
    /// (a receipt with no separate signature).
    pub transaction_signed: bool,
}

/// Checks the receipt against our input, the output and the node's key, then decrypts.
pub fn verify_and_open(
    job: &SettledJob,
    key: &NodeKey,
    user: &UserKey,
) -> Result<JobResult, Error> {
    let s = &job.settled;
    if user.public_hex() != job.user_key {
        return Err(Error::BadInput(format!(
            "job {}'s output is sealed to key {}, but {} holds {} (another account, network or --keys-dir?)",
            job.job_id,
            job.user_key,
            user.path.display(),
            user.public_hex()
        )));
    }
    let output = inline_bytes(&s.output, "output")?;
    if sha256(&job.input) != s.input_hash {
        return Err(Error::Verification(format!(
            "the receipt's input hash {} is not the hash of job {}'s input",
            s.input_hash, job.job_id
        )));
    }
    if sha256(&output) != s.output_hash {
        return Err(Error::Verification(format!(
            "the output does not hash to the receipt's output hash {} (tampered in transit?)",
            s.output_hash
        )));
    }
    let receipt = ResultReceipt {
        subject: ReceiptSubject::Job(job.job_id),
        model_id: job.model_id.clone(),
        input_hash: s.input_hash,
        output_hash: s.output_hash,
        usage: s.usage,
        weights_hash: s.weights_hash,
    };
    let signer = nodes::ed25519_key_bytes(&key.key)?;
    let how = if s.signature.0.is_empty() {
        if !key.transaction_signed {
            return Err(Error::Verification(format!(
                "job {}'s receipt carries no signature and the chain could not confirm who signed the result",
                job.job_id
            )));
        }
        "transaction"
    } else {
        let sig: [u8; 64] = s.signature.0.as_slice().try_into().map_err(|_| {
            Error::Verification(format!(
                "the receipt signature is {} bytes, not 64",
                s.signature.0.len()
            ))
        })?;
        if !verify_receipt(&signer, &receipt, &sig) {
            return Err(Error::Verification(format!(
                "the receipt signature does not verify with node {}'s key {}",
                s.node_id, key.key
            )));
        }
        "signature"
    };
    let response: JobResponse = open_job_output(
        &user.secret,
        ReceiptSubject::Job(job.job_id),
        &job.model_id,
        &output,
    )
    .map_err(|e| Error::Verification(format!("the output does not open with your key: {e}")))?;
    if response.weights_hash != s.weights_hash {
        let shown = |h: Option<Hash32>| h.map_or_else(|| "none".to_owned(), |h| h.to_string());
        return Err(Error::Verification(format!(
            "job {}'s receipt names the weights {} but node {}'s answer names {}",
            job.job_id,
            shown(s.weights_hash),
            s.node_id,
            shown(response.weights_hash)
        )));
    }
    Ok(JobResult {
        job_id: job.job_id,
        model_id: job.model_id.clone(),
        node_id: s.node_id,
        usage: s.usage,
        status_code: response.status_code,
        body: response.body,
        weights_hash: response.weights_hash,
        verified: Verified {
            receipt: how,
            signer_key: key.key.clone(),
            key_source: key.source,
            input_hash: s.input_hash,
            output_hash: s.output_hash,
            weights_hash: s.weights_hash,
        },
    })
}

/// The settled job as the indexer recorded it.
pub fn settled_from_indexer(detail: &JobDetail) -> Result<SettledJob, Error> {
    let j = &detail.job;
    match j.status.as_str() {
        "settled" => {}
        "cancelled" => {
            return Err(Error::NotReady(format!(
                "job {} was cancelled ({}); it has no result",
                j.job_id,
                j.cancel_reason.as_deref().unwrap_or("no reason recorded")
            )));
        }
        other => {
            return Err(Error::NotReady(format!(
                "job {} is {other}: no result yet (try `ecloud job status {}`)",
                j.job_id, j.job_id
            )));
        }
    }
    let entry = detail
        .timeline
        .iter()
        .find(|e| e.event == "job_settled")
        .ok_or_else(|| Error::Indexer {
            url: String::new(),
            message: format!(
                "job {} is settled but its job_settled event is missing",
                j.job_id
            ),
        })?;
    let malformed_event = |message: String| Error::Indexer {
        url: String::new(),
        message: format!(
            "job {}'s job_settled event is malformed: {message}",
            j.job_id
        ),
    };
    // The timeline keeps the event's name and data: the marketplace's own event type reads them.
    let event = serde_json::json!({ "event": entry.event, "data": entry.data });
    let settled = match serde_json::from_value(event) {
        Ok(MarketplaceEvent::JobSettled {
            node_id,
            usage,
            output,
            input_hash,
            output_hash,
            signature,
            weights_hash,
            ..
        }) => SettledEvent {
            node_id,
            usage,
            output,
            input_hash,
            output_hash,
            signature,
            weights_hash,
        },
        Ok(_) => return Err(malformed_event("another event's data".to_owned())),
        Err(e) => return Err(malformed_event(e.to_string())),
    };
    let input: InputRef = serde_json::from_value(j.input.clone()).map_err(|e| Error::Indexer {
        url: String::new(),
        message: format!("job {}'s input is malformed: {e}", j.job_id),
    })?;
    let malformed = |field: &str, value: &str| Error::Indexer {
        url: String::new(),
        message: format!("job {}'s {field} '{value}' is malformed", j.job_id),
    };
    Ok(SettledJob {
        job_id: j.job_id.parse().map_err(|_| malformed("id", &j.job_id))?,
        model_id: j
            .model_id
            .parse()
            .map_err(|_| malformed("model id", &j.model_id))?,
        user_key: j.user_key.clone(),
        input: inline_bytes(&input, "input")?,
        settled,
    })
}

/// The key that signed the job's receipt: the marketplace's receipt (the key frozen at claim)
/// when the chain answers, which must agree with the indexer's output hash; the indexer's node
/// record otherwise.
async fn node_key(chain: &Chain, indexer: &Indexer, job: &SettledJob) -> Result<NodeKey, Error> {
    let receipt = chain
        .marketplace()
        .get_job(job.job_id)
        .await
        .map_err(Error::from);
    match receipt {
        Ok(Some(JobView::Settled(r))) => {
            if r.output_hash != job.settled.output_hash {
                return Err(Error::Verification(format!(
                    "the indexer's output hash for job {} differs from the marketplace's receipt",
                    job.job_id
                )));
            }
            if r.weights_hash != job.settled.weights_hash {
                return Err(Error::Verification(format!(
                    "the indexer's weights hash for job {} differs from the marketplace's receipt",
                    job.job_id
                )));
            }
            Ok(NodeKey {
                key: String::from(&r.signer_key),
                source: "marketplace",
                transaction_signed: r.signature.is_none_or(|s| s.0.is_empty()),
            })
        }
        Ok(_) => Err(Error::Verification(format!(
            "the indexer says job {} is settled but the marketplace has no receipt of it",
            job.job_id
        ))),
        Err(Error::Chain(chain_err)) => {
            let node = indexer.node(job.settled.node_id).await?.ok_or_else(|| {
                Error::Chain(format!(
                    "{chain_err}; and the indexer does not know node {}",
                    job.settled.node_id
                ))
            })?;
            Ok(NodeKey {
                key: node.signer_key,
                source: "indexer",
                transaction_signed: false,
            })
        }
        Err(e) => Err(e),
    }
}

/// Largest output fetched from a node's URI.
pub const MAX_REMOTE_OUTPUT_BYTES: usize = 64 << 20;
/// How long fetching an output may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Fetches an output stored by the node (`OutputRef::Remote`) and checks it against the hash
/// the receipt signs, so the node or the network cannot swap it.
pub async fn fetch_output(uri: &str, hash: &Hash32) -> Result<Vec<u8>, Error> {
    crate::config::check_url("the output URI", uri).map_err(|e| Error::Fetch {
        url: uri.to_owned(),
        message: e.to_string(),
    })?;
    let fail = |message: String| Error::Fetch {
        url: uri.to_owned(),
        message,
    };
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let response = client
        .get(uri)
        .send()
        .await
        .map_err(|e| fail(format!("unreachable: {e}")))?;
    if !response.status().is_success() {
        return Err(fail(format!("answered HTTP {}", response.status())));
    }
    let body = crate::http_read::read_limited(response, MAX_REMOTE_OUTPUT_BYTES)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if sha256(&body) != *hash {
        return Err(Error::Verification(format!(
            "the output fetched from {uri} does not hash to the receipt's {hash}"
        )));
    }
    Ok(body)
}

/// `ecloud job result`.
pub async fn result(chain: &Chain, indexer: &Indexer, id: JobId) -> Result<JobResult, Error> {
    let settings = chain.settings();
    let account = settings.signer()?;
    let job = match indexer.job(id).await? {
        Some(j) => j,
        None => {
            return Err(Error::NotFound(format!(
                "the indexer {} does not know job {id} (not submitted, or not indexed yet)",
                indexer.url()
            )));
        }
    };
    let mut settled = settled_from_indexer(&job)?;
    if let InputRef::Remote { hash, uri } = &settled.settled.output {
        let bytes = crate::progress::waiting(
            &format!("fetching job {id}'s output from {uri}"),
            fetch_output(uri, hash),
        )
        .await?;
        settled.settled.output = InputRef::Inline {
            ciphertext: Base64VecU8(bytes),
        };
    }
    let user = user_key::load(&settings.network_keys_dir(), account)?.ok_or_else(|| {
        Error::BadInput(format!(
            "no key for {account} in {}: job outputs can only be opened with the key that submitted them",
            settings.network_keys_dir().display()
        ))
    })?;
    let key = node_key(chain, indexer, &settled).await?;
    let result = verify_and_open(&settled, &key, &user)?;
    let expected = expected_weights(chain, indexer, &result.model_id).await?;
    result.check_weights(expected.as_ref())?;
    Ok(result)
}

/// The encrypted weights `model`'s answers must name: from the chain (the factory's token and
/// its manifest); when the chain cannot be reached, from the indexer's copy of the manifest, as
/// [`node_key`] falls back for the receipt's key (a model the indexer does not know is, like one
/// the factory does not list, served from plain weights).
async fn expected_weights(
    chain: &Chain,
    indexer: &Indexer,
    model: &ModelId,
) -> Result<Option<Hash32>, Error> {
    match crate::models::encrypted_weights_hash(chain, model).await {
        Err(Error::Chain(chain_err)) => {
            let Some(detail) = indexer.model(model).await? else {
                return Ok(None);
            };
            if detail.manifest.is_null() {
                return Ok(None);
            }
            let manifest: ModelManifest = serde_json::from_value(detail.manifest).map_err(|e| {
                Error::Verification(format!(
                    "{chain_err}; and the indexer's manifest of model {model} is malformed: {e}"
                ))
            })?;
            Ok(manifest.encrypted_weights_hash())
        }
        other => other,
    }
}

impl Report for JobResult {
    /// The answer itself, then how it was checked.
    fn human(&self) -> String {
        let mut out = String::new();
        if self.status_code != 200 {
            let msg = self.body["error"]["message"]
                .as_str()
                .map_or_else(|| self.body.to_string(), str::to_owned);
            out.push_str(&format!(
                "the node refused the request (HTTP {}): {msg}\n",
                self.status_code
            ));
        } else if let Some(text) = self.body["choices"][0]["message"]["content"].as_str() {
            out.push_str(text);
            out.push('\n');
        } else if let Some(data) = self.body["data"].as_array() {
            for d in data {
                let v = d["embedding"].as_array().map_or(&[][..], Vec::as_slice);
                let head: Vec<String> = v
                    .iter()
                    .take(4)
                    .map(|x| format!("{:.4}", x.as_f64().unwrap_or(0.0)))
                    .collect();
                out.push_str(&format!(
                    "embedding {}: {} dims [{}, ...]\n",
                    d["index"],
                    v.len(),
                    head.join(", ")
                ));
            }
        } else {
            out.push_str(&format!("{:#}\n", self.body));
        }
        out.push_str(&format!(
            "-- job {} by node {}: {} input / {} output tokens; receipt verified ({}, key {} from the {}), output decrypted\n",
            self.job_id,
            self.node_id,
            self.usage.input_tokens.0,
            self.usage.output_tokens.0,
            self.verified.receipt,
            self.verified.signer_key,
            self.verified.key_source
        ));
        if let Some(w) = &self.verified.weights_hash {
            out.push_str(&format!(
                "-- answered by the encrypted weights {w}: named by the signed receipt and the \
                 answer, the model manifest's weights_hash\n"
            ));
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Pure parts of the job commands. The encryption round trip through a node is in
    //! tests/encryption.rs.

    use super::*;
    use crate::input::{InputSpec, build};
    use protocol::envelope::EncryptionSecret;

    /// Job 4 of alice.test.near as the marketplace's `get_job` returns it while it is `open`
    /// or `claimed` (by node 2): 1 NEAR price cap, the deadlines given.
    pub(crate) fn market_job(status: &str, claim_deadline_ns: u64, deadline_ns: u64) -> JobView {
        let claim = (status == "claimed").then(|| {
            serde_json::json!({
                "node_id": "2", "operator": "op.test.near",
                "signer_key": attestation::format_near_ed25519_key(&[7; 32]),
                "price": {"input_per_million": "1", "output_per_million": "2"},
                "claimed_ns": "3"
            })
        });
        serde_json::from_value(serde_json::json!({
            "status": status, "job_id": "4", "user": "alice.test.near", "model_id": "llama",
            "asset": {"kind": "near"}, "token_rate": null,
            "price_cap": "1000000000000000000000000", "storage_deposit": "0",
            "storage_source": "attached", "storage_bytes": "0", "created_ns": "1",
            "claim_deadline_ns": claim_deadline_ns.to_string(),
            "deadline_ns": deadline_ns.to_string(),
            "target": {"kind": "node", "node_id": "2"},
            "input": {"kind": "inline", "ciphertext": ""}, "input_hash": hex::encode([0u8; 32]),
            "user_key": "00", "claim": claim
        }))
        .unwrap()
    }

    fn model() -> ModelId {
        "llama".parse().unwrap()
    }

    fn config() -> MarketConfig {
        let account = |s: &str| s.parse::<near_sdk::AccountId>().unwrap();
        MarketConfig {
            max_inline_bytes: 2048,
            ..MarketConfig::new(
                account("owner.near"),
                account("registry.near"),
                account("treasury.near"),
            )
        }
    }

    fn deadlines() -> Deadlines {
        Deadlines {
            deadline: Duration::from_secs(600),
            claim_window: Some(Duration::from_secs(60)),
        }
    }

    fn terms(price_cap: u128, now_ns: u64, deadlines: Deadlines) -> Terms {
        Terms {
            price_cap,
            now_ns,
            deadlines,
        }
    }

    /// A node with a fresh x25519 key (nothing here opens its inputs or checks its receipts).
    fn node() -> NodeInfo {
        let enclave_key = EncryptionSecret::generate().public_key();
        let mut n = crate::nodes::tests::indexer_node_info(1, "active", enclave_key, [7; 32]);
        n.prices[0].model_id = model();
        n
    }

    #[test]
    fn prepare_builds_the_marketplace_job() {
        let dir = tempfile::tempdir().unwrap();
        let alice =
            user_key::load_or_create(dir.path(), &"alice.test.near".parse().unwrap()).unwrap();
        let node = node();
        let request = build(&InputSpec::Embed(vec!["hi".into()]), &model()).unwrap();
        let p = prepare(
            &node,
            &model(),
            &request,
            &alice,
            terms(10, 1_000, deadlines()),
            &config(),
        )
        .unwrap();
        assert_eq!(p.spec.target, JobTarget::Node { node_id: NodeId(1) });
        assert_eq!(p.spec.deadline_ns, U64(1_000 + 600_000_000_000));
        assert_eq!(p.spec.claim_deadline_ns, Some(U64(1_000 + 60_000_000_000)));
        assert_eq!(p.spec.user_key, alice.public_hex());
        assert_eq!(p.spec.price_cap, U128(10));
        assert_eq!(
            p.spec.input,
            InputRef::Inline {
                ciphertext: Base64VecU8(p.ciphertext.clone())
            }
        );
        let json = serde_json::to_value(&p.spec).unwrap();
        assert_eq!(
            json["target"],
            serde_json::json!({"kind": "node", "node_id": "1"})
        );
        assert_eq!(json["input"]["kind"], "inline");
    }

    #[test]
    fn prepare_refuses_what_the_marketplace_would() {
        let dir = tempfile::tempdir().unwrap();
        let alice =
            user_key::load_or_create(dir.path(), &"alice.test.near".parse().unwrap()).unwrap();
        let node = node();
        let request = build(&InputSpec::Embed(vec!["x".repeat(3000)]), &model()).unwrap();
        let err = prepare(
            &node,
            &model(),
            &request,
            &alice,
            terms(10, 1, deadlines()),
            &config(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("at most 2048 inline"), "{err}");
        let small = build(&InputSpec::Embed(vec!["x".into()]), &model()).unwrap();
        let err = prepare(
            &node,
            &model(),
            &small,
            &alice,
            terms(0, 1, deadlines()),
            &config(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--max-cost"), "{err}");
        let long = Deadlines {
            deadline: Duration::from_secs(2 * 86_400),
            claim_window: None,
        };
        let err = prepare(
            &node,
            &model(),
            &small,
            &alice,
            terms(10, 1, long),
            &config(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--deadline"), "{err}");
        // No time left to answer after a claim: the marketplace's answer window (20 s).
        let short = Deadlines {
            deadline: Duration::from_secs(20),
            claim_window: None,
        };
        let err = prepare(
            &node,
            &model(),
            &small,
            &alice,
            terms(10, 1, short),
            &config(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("answer window (20 s)"), "{err}");
        // A claim window past the deadline minus the answer window is brought back to it.
        let late_claims = Deadlines {
            deadline: Duration::from_secs(60),
            claim_window: Some(Duration::from_secs(60)),
        };
        let p = prepare(
            &node,
            &model(),
            &small,
            &alice,
            terms(10, 1, late_claims),
            &config(),
        )
        .unwrap();
        assert_eq!(p.spec.claim_deadline_ns, Some(U64(1 + 40_000_000_000)));
        let other: ModelId = "other".parse().unwrap();
        let err = prepare(
            &node,
            &other,
            &small,
            &alice,
            terms(10, 1, deadlines()),
            &config(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
        let mut bad = node.clone();
        bad.encryption_key = hex::encode([0u8; 32]);
        let err = prepare(
            &bad,
            &model(),
            &small,
            &alice,
            terms(10, 1, deadlines()),
            &config(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("cannot seal"), "{err}");
    }

    #[test]
    fn job_id_comes_from_the_users_job_submitted_event() {
        let alice: AccountId = "alice.test.near".parse().unwrap();
        let event = |user: &str, id: &str| {
            format!(
                r#"EVENT_JSON:{{"standard":"ecloud_marketplace","version":"1.0.0","event":"job_submitted","data":{{"job_id":"{id}","user":"{user}","model_id":"llama","asset":{{"kind":"near"}},"price_cap":"1","claim_deadline_ns":"1","deadline_ns":"2","target":{{"kind":"node","node_id":"1"}},"input":{{"kind":"inline","ciphertext":""}},"user_key":"00"}}}}"#
            )
        };
        let logs = vec![
            "plain log".to_owned(),
            event("bob.test.near", "3"),
            event("alice.test.near", "4"),
        ];
        assert_eq!(submitted_job_id(&logs, &alice), Some(JobId(4)));
        assert_eq!(submitted_job_id(&logs[..2], &alice), None);
    }

    #[test]
    fn status_from_the_marketplace_view() {
        let r = JobStatusReport::from_marketplace(JobId(4), &market_job("claimed", 8, 9));
        assert_eq!(r.status, "claimed");
        assert_eq!(r.node_id, Some(NodeId(2)));
        assert_eq!(r.asset.as_deref(), Some("near"));
        assert_eq!(r.deadline_ns.as_deref(), Some("9"));
        let text = r.human();
        assert!(text.contains("job 4: claimed"), "{text}");
        assert!(text.contains("price cap   1 NEAR"), "{text}");
        let open = JobStatusReport::from_marketplace(JobId(4), &market_job("open", 8, 9));
        assert_eq!((open.status.as_str(), open.node_id), ("open", None));
        let settled: JobView = serde_json::from_value(serde_json::json!({"status": "settled",
            "job_id": "4", "user": "alice.test.near", "node_id": "2", "model_id": "llama",
            "asset": {"kind": "ft", "token": "usdc.test.near"},
            "input_hash": hex::encode([0u8; 32]), "output_hash": hex::encode([1u8; 32]),
            "usage": {"input_tokens": "5", "output_tokens": "3"},
            "settlement": {"cost": "8", "provider": "7", "royalty": "1", "protocol_fee": "0", "refund": "2"},
            "signature": null, "signer_key": attestation::format_near_ed25519_key(&[7; 32]),
            "settled_ns": "10"}))
        .unwrap();
        let r = JobStatusReport::from_marketplace(JobId(4), &settled);
        assert_eq!(r.asset.as_deref(), Some("ft:usdc.test.near"));
        assert_eq!(r.refund.as_deref(), Some("2"));
        assert_eq!(
            serde_json::to_value(&r).unwrap()["usage"],
            serde_json::json!({"input_tokens": "5", "output_tokens": "3"})
        );
        let text = r.human();
        assert!(text.contains("5 input / 3 output tokens"), "{text}");
        assert!(text.contains("cost        8"), "{text}");
    }

    #[test]
    fn results_need_a_settled_job() {
        let job: JobDetail = serde_json::from_value(serde_json::json!({
            "job_id": "3", "user": "alice.test.near", "model_id": "llama", "asset": "near",
            "price_cap": "1", "deadline_ns": "2", "claim_deadline_ns": "1",
            "target": {"kind": "any", "node_id": null, "region": null, "gpu_model": null,
                       "max_price_per_million": null},
            "input": {"kind": "inline", "ciphertext": ""}, "user_key": "00", "status": "claimed",
            "node_id": "1", "operator": "op.test.near", "usage": null, "output": null,
            "output_hash": null, "settlement": null, "cancel_reason": null, "refund": null,
            "slashed": null, "created_height": 1, "created_at_ns": "0", "updated_height": 1,
            "timeline": []
        }))
        .unwrap();
        assert!(matches!(
            settled_from_indexer(&job),
            Err(Error::NotReady(_))
        ));
        let mut cancelled = job.clone();
        cancelled.job.status = "cancelled".into();
        cancelled.job.cancel_reason = Some("unclaimed".into());
        let err = settled_from_indexer(&cancelled).unwrap_err().to_string();
        assert!(err.contains("cancelled (unclaimed)"), "{err}");
        let mut settled = job;
        settled.job.status = "settled".into();
        assert!(
            settled_from_indexer(&settled)
                .unwrap_err()
                .to_string()
                .contains("job_settled event is missing")
        );
        settled.timeline.push(
            serde_json::from_value(serde_json::json!({
                "event": "job_settled", "block_height": 2, "timestamp_ns": "3", "receipt_id": "r",
                "data": {"job_id": "3", "node_id": "1"}
            }))
            .unwrap(),
        );
        let err = settled_from_indexer(&settled).unwrap_err().to_string();
        assert!(err.contains("job_settled event is malformed"), "{err}");
    }

    #[test]
    fn a_result_shows_its_encrypted_weights_and_must_match_the_manifest() {
        let w = Hash32([0xab; 32]);
        let result = JobResult {
            job_id: JobId(4),
            model_id: "minilm".parse().unwrap(),
            node_id: NodeId(2),
            usage: Usage::default(),
            status_code: 200,
            body: serde_json::json!({"data": []}),
            weights_hash: Some(w),
            verified: Verified {
                receipt: "signature",
                signer_key: "ed25519:x".into(),
                key_source: "marketplace",
                input_hash: Hash32([1; 32]),
                output_hash: Hash32([2; 32]),
                weights_hash: Some(w),
            },
        };
        let text = result.human();
        assert!(
            text.contains(&format!("answered by the encrypted weights {w}")),
            "{text}"
        );
        assert!(result.check_weights(Some(&w)).is_ok());
        for expected in [None, Some(&Hash32([0xcd; 32]))] {
            let e = result.check_weights(expected).unwrap_err().to_string();
            assert!(e.contains("job 4") && e.contains("manifest"), "{e}");
        }
        let plain = JobResult {
            weights_hash: None,
            verified: Verified {
                weights_hash: None,
                ..result.verified.clone()
            },
            ..result.clone()
        };
        assert!(plain.check_weights(None).is_ok());
        assert!(plain.check_weights(Some(&w)).is_err());
        assert!(!plain.human().contains("encrypted weights"));
        // A refusal names no weights and is not checked.
        let refused = JobResult {
            status_code: 400,
            ..plain
        };
        assert!(refused.check_weights(Some(&w)).is_ok());
    }
}
