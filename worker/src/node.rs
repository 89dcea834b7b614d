//! Glue of `worker register` and `worker run`: arguments, keys, credentials and files to the
//! [`crate::register`] and [`crate::daemon`] logic.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chain_client::{Account, AccountId, ChainClient, NearToken};
use enclave_cloud_common::NodeId;
use enclave_cloud_common::interfaces::registry::NodeUpdate;
use enclave_cloud_common::{ModelId, ModelPrice};
use near_sdk::json_types::U128;
use serde::Serialize;
use tokio::sync::watch;

use crate::api::ApiState;
use crate::attest::AttestationProvider;
use crate::attest::now_unix_secs;
use crate::chain::{NodeChain, node_accounts};
use crate::claim::ClaimPolicy;
use crate::cli::{
    ChainArgs, CliError, ENDPOINT_TIMEOUTS, RegisterArgs, RunArgs, device_source, load_keys,
    provider, run_backend, shutdown_signal,
};
use crate::daemon::{self, Attester, RunConfig};
use crate::devices::{DeviceError, Limits};
use crate::inference::routed::Routed;
use crate::job::Executor;
use crate::journal::Journal;
use crate::keys::EnclaveKeys;
use crate::metrics::Metrics;
use crate::outputs::{self, OutputStore};
use crate::register::{NodeAttestation, NodeRecord, register};
use crate::runner::JobRunner;
use crate::serve::{ApiNode, PaidChain, api_app};
use crate::served_weights::{
    self, GrantPolling, Preparation, ServedWeights, TokenGrants, WeightsState,
};

/// The journal of in-flight jobs in the data dir.
pub const JOURNAL_FILE: &str = "journal.jsonl";
/// Stored outputs (served with `--outputs-listen`) in the data dir.
pub const OUTPUTS_DIR: &str = "outputs";
/// Downloaded encrypted weights (public ciphertext, by hash) in the data dir.
pub const WEIGHTS_DIR: &str = "weights";

fn required(value: Option<AccountId>, flag: &str) -> Result<AccountId, CliError> {
    value.ok_or_else(|| {
        CliError::Usage(format!(
            "--{flag} is required (or run `worker register` first)"
        ))
    })
}

/// Flags first, then node.json.
pub(crate) fn contracts(
    args: &ChainArgs,
    record: Option<&NodeRecord>,
) -> Result<(AccountId, AccountId, AccountId), CliError> {
    let operator = required(
        args.operator
            .clone()
            .or_else(|| record.map(|r| r.operator.clone())),
        "operator",
    )?;
    let registry = required(
        args.registry
            .clone()
            .or_else(|| record.map(|r| r.registry.clone())),
        "registry",
    )?;
    let marketplace = required(
        args.marketplace
            .clone()
            .or_else(|| record.map(|r| r.marketplace.clone())),
        "marketplace",
    )?;
    Ok((operator, registry, marketplace))
}

pub(crate) fn node_chain(
    client: Arc<ChainClient>,
    keys: &Arc<EnclaveKeys>,
    operator: &AccountId,
    registry: AccountId,
    marketplace: AccountId,
) -> NodeChain {
    let (enclave, market) = node_accounts(operator, keys);
    NodeChain {
        client,
        enclave,
        market,
        registry,
        marketplace,
    }
}

fn operator_account(args: &RegisterArgs, operator: &AccountId) -> Result<Account, CliError> {
    let account = match &args.credentials {
        Some(path) => Account::from_credentials_file(path)?,
        None => {
            let dir = args
                .credentials_dir
                .clone()
                .or_else(chain_client::default_credentials_dir)
                .ok_or_else(|| CliError::Usage("no HOME: pass --credentials".into()))?;
            Account::from_near_credentials(&dir, &args.network, operator)?
        }
    };
    if account.account_id() != operator {
        return Err(CliError::Usage(format!(
            "the credentials are for {}, not the operator {operator}",
            account.account_id()
        )));
    }
    Ok(account)
}

/// What `worker register` prints: text for people by default, this JSON with `--json`
/// (amounts in yoctoNEAR as strings).
#[derive(Debug, Clone, Serialize)]
pub struct RegisterReport {
    /// `None` only when a run with devices stopped (`--max-transactions`) before
    /// `register_node`.
    pub node_id: Option<NodeId>,
    /// Whether this run registered the node (false: it was registered already).
    pub created: bool,
    /// Whether every declared GPU and switch is verified (the node takes jobs); run again to
    /// continue otherwise.
    pub complete: bool,
    pub gpus: u32,
    pub switches: u32,
    /// Device transactions this run sent (`begin_attestation`, `register_node`, `add_gpu`)
    /// and the gas they burnt.
    pub device_transactions: u32,
    pub device_gas_tgas: u64,
    /// Stake deposited by this run.
    pub staked: NearToken,
    /// Added to the operator's storage balance in the marketplace by this run.
    pub storage_deposit: NearToken,
    pub keys_added: Vec<String>,
    pub enclave_key: String,
    pub marketplace_key: String,
}

impl RegisterReport {
    /// The report for people: amounts through [`chain_client::format_near`].
    pub fn human(&self) -> String {
        let node = self
            .node_id
            .map_or_else(|| "the node".to_owned(), |id| format!("node {id}"));
        let mut out = match (self.created, self.complete) {
            (_, false) => format!(
                "{node}: registration in progress (run `worker register` again to continue)\n"
            ),
            (true, true) => format!("{node} registered\n"),
            (false, true) => format!("{node} was registered already\n"),
        };
        if self.gpus + self.switches > 0 {
            out += &format!(
                "devices: {} GPUs, {} switches; this run: {} transactions, {} Tgas\n",
                self.gpus, self.switches, self.device_transactions, self.device_gas_tgas
            );
        }
        let amount = |yocto: NearToken| {
            if yocto.is_zero() {
                "none needed".to_string()
            } else {
                chain_client::format_near(yocto.as_yoctonear())
            }
        };
        out += &format!("stake deposited: {}\n", amount(self.staked));
        out += &format!(
            "marketplace storage deposit: {}\n",
            amount(self.storage_deposit)
        );
        if self.keys_added.is_empty() {
            out += "keys added: none (the operator has them already)\n";
        } else {
            for key in &self.keys_added {
                out += &format!("key added: {key}\n");
            }
        }
        out += &format!("enclave key (registry): {}\n", self.enclave_key);
        out += &format!("marketplace key: {}\n", self.marketplace_key);
        out
    }
}

/// `worker register`: registers (or updates) the node and records it in node.json.
pub async fn register_command(
    data_dir: &Path,
    args: &RegisterArgs,
) -> Result<RegisterReport, CliError> {
    let keys = Arc::new(load_keys(data_dir)?);
    let (operator_id, registry, marketplace) = contracts(&args.chain, None)?;
    let operator = operator_account(args, &operator_id)?;
    let client = Arc::new(ChainClient::new(&args.chain.rpc_url));
    let chain = node_chain(client.clone(), &keys, &operator_id, registry, marketplace);
    let provider = provider(&args.attestation)?;
    let devices = device_source(&args.attestation, &keys)?;
    let details = NodeUpdate {
        endpoint: args.endpoint.clone(),
        region: args.region.clone(),
        prices: Some(
            args.prices
                .iter()
                .map(|p| ModelPrice {
                    model_id: p.model_id.clone(),
                    input_per_million: U128(p.input_per_million),
                    output_per_million: U128(p.output_per_million),
                })
                .collect(),
        ),
        capacity: Some(args.capacity),
    };
    let allowance = NearToken::from_near(args.key_allowance_near);
    let limits = Limits {
        max_transactions: args.max_transactions,
    };
    let done = register(
        &client,
        &operator,
        &chain,
        NodeAttestation {
            keys: &keys,
            provider: provider.as_ref(),
            devices: devices.as_deref(),
        },
        details,
        allowance,
        limits,
        &mut |line| eprintln!("{line}"),
    )
    .await
    .map_err(device_error)?;
    if let Some(node_id) = done.node_id {
        let record = NodeRecord {
            node_id,
            operator: operator_id,
            registry: chain.registry.clone(),
            marketplace: chain.marketplace.clone(),
        };
        record.save(data_dir).map_err(CliError::Usage)?;
    }
    Ok(RegisterReport {
        node_id: done.node_id,
        created: done.created,
        complete: done.complete,
        gpus: done.gpus,
        switches: done.switches,
        device_transactions: done.device_transactions,
        device_gas_tgas: done.device_gas_tgas,
        staked: done.staked,
        storage_deposit: done.storage_deposit,
        keys_added: done.keys_added,
        enclave_key: chain.enclave.public_key().to_string(),
        marketplace_key: chain.market.public_key().to_string(),
    })
}

fn device_error(e: DeviceError) -> CliError {
    match e {
        DeviceError::Chain(e) => CliError::Chain(e),
        DeviceError::Attest(e) => CliError::Attest(e),
        other => CliError::Usage(other.to_string()),
    }
}

/// The node id: the flag, else node.json, else the registry's node of this enclave.
pub(crate) async fn node_id(
    chain: &NodeChain,
    flag: Option<NodeId>,
    record: Option<&NodeRecord>,
) -> Result<NodeId, CliError> {
    match flag.or(record.map(|r| r.node_id)) {
        Some(id) => Ok(id),
        None => Ok(chain
            .node_of_this_enclave()
            .await?
            .ok_or_else(|| {
                CliError::Usage("this enclave is not registered: run `worker register`".into())
            })?
            .node_id),
    }
}

/// `worker run`: until Ctrl-C / SIGTERM.
pub async fn run_command(data_dir: &Path, args: &RunArgs) -> Result<(), CliError> {
    let keys = Arc::new(load_keys(data_dir)?);
    let record = NodeRecord::load(data_dir).map_err(CliError::Usage)?;
    let (operator, registry, marketplace) = contracts(&args.chain, record.as_ref())?;
    let client = Arc::new(ChainClient::new(&args.chain.rpc_url));
    let chain = node_chain(client.clone(), &keys, &operator, registry, marketplace);
    let node_id = node_id(&chain, args.node_id, record.as_ref()).await?;
    let heartbeat_interval = match args.heartbeat_secs {
        0 => {
            let ns = chain
                .registry_client()
                .get_policy()
                .await?
                .heartbeat_interval_ns
                .0;
            Duration::from_nanos(ns / 2).max(Duration::from_secs(1))
        }
        secs => Duration::from_secs(secs),
    };
    let models: BTreeMap<_, _> = args
        .models
        .iter()
        .map(|m| (m.model_id.clone(), m.backend_model.clone()))
        .collect();
    let (stop_tx, stop_rx) = watch::channel(false);
    // One provider for the API's reports, re-attestation and the weights' measurements, so
    // every bundle carries what was measured.
    let attestation: Arc<dyn AttestationProvider> = Arc::from(provider(&args.attestation)?);
    let weights = start_weights(
        data_dir,
        args,
        &keys,
        &client,
        &models,
        node_id,
        &attestation,
        &stop_rx,
    )
    .await?;
    let backend: Arc<dyn crate::inference::InferenceBackend> = weights.backend;
    let api = match args.api_listen {
        Some(listen) => Some(
            serve_api(
                data_dir,
                args,
                &keys,
                attestation.clone(),
                backend.clone(),
                weights.served.clone(),
                &models,
                &chain,
                node_id,
                listen,
            )
            .await?,
        ),
        None => None,
    };
    let executor =
        Executor::new(keys.clone(), backend, models).with_weights(weights.served.clone());
    let journal = Journal::open(&data_dir.join(JOURNAL_FILE))?;
    let runner = JobRunner::new(executor, journal);
    let metrics = Metrics::new();
    if let Some(listen) = args.metrics_listen {
        serve_metrics(listen, metrics.clone()).await?;
    }
    let outputs = match args.outputs_listen {
        Some(listen) => {
            let base = args
                .outputs_url
                .clone()
                .unwrap_or_else(|| format!("http://{listen}"));
            let store = OutputStore::new(&data_dir.join(OUTPUTS_DIR), &base)?;
            serve(
                listen,
                outputs::router(store.clone()),
                "outputs at /v1/outputs/{job_id}",
                http_serve::Timeouts::default(),
            )
            .await?;
            Some(store)
        }
        None => None,
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let config = RunConfig {
        node_id,
        indexer_url: args.indexer_url.clone(),
        concurrency: args.concurrency,
        poll_interval: Duration::from_millis(args.poll_interval_ms),
        stream_retry: Duration::from_secs(args.stream_retry_secs),
        heartbeat_interval,
        reattest_before: Duration::from_secs(args.reattest_before_secs),
        grace: Duration::from_secs(args.grace_secs),
        retry_delay: Duration::from_millis(args.retry_delay_ms),
        claim_policy: ClaimPolicy {
            min_output_tokens: args.min_output_tokens,
            deadline_margin: Duration::from_secs(args.deadline_margin_secs),
        },
        outputs,
        weights: weights.served,
    };
    let attester = Attester {
        provider: attestation,
        devices: device_source(&args.attestation, &keys)?,
        api,
    };
    daemon::run(config, chain, runner, attester, keys, metrics, stop_rx).await;
    Ok(())
}

/// `worker run`'s models: the backend and, for each model whose manifest names encrypted
/// weights (with `--factory`), a task that fetches, waits for the grant, decrypts, checks and
/// adds it ([`crate::served_weights`]).
struct RunWeights {
    backend: Arc<Routed>,
    served: Arc<ServedWeights>,
}

#[allow(clippy::too_many_arguments)]
async fn start_weights(
    data_dir: &Path,
    args: &RunArgs,
    keys: &Arc<EnclaveKeys>,
    client: &Arc<ChainClient>,
    models: &BTreeMap<ModelId, String>,
    node_id: NodeId,
    attestation: &Arc<dyn AttestationProvider>,
    stop: &watch::Receiver<bool>,
) -> Result<RunWeights, CliError> {
    let encrypted = match &args.factory {
        Some(factory) => served_weights::resolve(client, factory, models).await?,
        None => Vec::new(),
    };
    let (models_only, tokens): (Vec<_>, Vec<_>) = encrypted.into_iter().unzip();
    let (backend, loaders) = run_backend(&args.backend, &models_only)?;
    let served = Arc::new(ServedWeights::new(models.keys().map(|id| {
        let state = if models_only.iter().any(|m| &m.model_id == id) {
            WeightsState::Pending("starting".into())
        } else {
            WeightsState::Plain
        };
        (id.clone(), state)
    })));
    let preparation = Preparation {
        node_id,
        keys: keys.clone(),
        attestation: attestation.clone(),
        cache_dir: data_dir.join(WEIGHTS_DIR),
        polling: GrantPolling {
            max: Duration::from_secs(args.grant_poll_max_secs.max(1)),
            ..GrantPolling::default()
        },
        shutdown: stop.clone(),
        served: served.clone(),
    };
    for ((model, token), load) in models_only.into_iter().zip(tokens).zip(loaders) {
        let grants = TokenGrants {
            client: client.clone(),
            token,
        };
        let routed = backend.clone();
        let p = preparation.clone();
        tokio::spawn(async move {
            let served = served_weights::prepare(&p, &model, &grants, load, |b| routed.add(b));
            if let Some(key_hash) = served.await {
                served_weights::watch_grant(&p, &model, &grants, key_hash).await;
            }
        });
    }
    Ok(RunWeights { backend, served })
}

/// `run --api-listen`: the private, paid API (or `--unpaid-api`) on the job runner's backend,
/// its channels read and settled with the node's chain client. Returns its state (for the
/// bundle after a re-attestation).
#[allow(clippy::too_many_arguments)]
async fn serve_api(
    data_dir: &Path,
    args: &RunArgs,
    keys: &Arc<EnclaveKeys>,
    provider: Arc<dyn AttestationProvider>,
    backend: Arc<dyn crate::inference::InferenceBackend>,
    weights: Arc<ServedWeights>,
    models: &BTreeMap<ModelId, String>,
    chain: &NodeChain,
    node_id: NodeId,
    listen: std::net::SocketAddr,
) -> Result<ApiState, CliError> {
    let gpus: Option<Arc<dyn crate::attest::GpuEvidenceSource>> =
        device_source(&args.attestation, keys)?.map(Arc::from);
    let bundle = provider.attest(&keys.public(), now_unix_secs())?;
    let api = ApiState::new(backend, bundle).measuring(provider.clone(), keys.clone(), weights.clone());
    let node = ApiNode {
        keys: keys.clone(),
        provider,
        gpus,
        api: api.clone(),
        models: Some(Arc::new(models.clone())),
        weights: Some(weights),
    };
    let paid = PaidChain {
        chain: chain.clone(),
        node_id,
    };
    let app = api_app(data_dir, node, &args.payment, Some(paid))?;
    serve(
        listen,
        app,
        "the OpenAI-compatible API (sealed at /ohttp)",
        ENDPOINT_TIMEOUTS,
    )
    .await?;
    Ok(api)
}

async fn serve_metrics(listen: std::net::SocketAddr, metrics: Metrics) -> Result<(), CliError> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move { metrics.render() }
        }),
    );
    serve(
        listen,
        app,
        "metrics at /metrics",
        http_serve::Timeouts::default(),
    )
    .await
}

/// Binds `listen` (an error if taken) and serves `app` in the background.
async fn serve(
    listen: std::net::SocketAddr,
    app: axum::Router,
    what: &'static str,
    timeouts: http_serve::Timeouts,
) -> Result<(), CliError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| CliError::Io {
            path: listen.to_string().into(),
            source,
        })?;
    tracing::info!(%listen, "{what}");
    tokio::spawn(async move {
        let never = std::future::pending::<()>();
        if let Err(e) = http_serve::serve(listener, app, timeouts, never).await {
            tracing::warn!(error = %e, "{what}: server stopped");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_register_report_shows_near_in_text_and_yocto_strings_in_json() {
        let report = RegisterReport {
            node_id: Some(NodeId(7)),
            created: true,
            complete: true,
            gpus: 8,
            switches: 4,
            device_transactions: 4,
            device_gas_tgas: 2_400,
            staked: NearToken::from_millinear(5_100),
            storage_deposit: NearToken::from_millinear(100),
            keys_added: vec!["ed25519:Abc -> registry.test.near".into()],
            enclave_key: "ed25519:Abc".into(),
            marketplace_key: "ed25519:Def".into(),
        };
        let text = report.human();
        assert!(text.contains("node 7 registered"), "{text}");
        assert!(
            text.contains("devices: 8 GPUs, 4 switches; this run: 4 transactions, 2400 Tgas"),
            "{text}"
        );
        assert!(text.contains("stake deposited: 5.1 NEAR"), "{text}");
        assert!(
            text.contains("marketplace storage deposit: 0.1 NEAR"),
            "{text}"
        );
        assert!(
            !text.contains("yocto") && !text.contains("000000"),
            "{text}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["staked"], "5100000000000000000000000");
        assert_eq!(json["storage_deposit"], "100000000000000000000000");
        assert_eq!(json["node_id"], serde_json::to_value(NodeId(7)).unwrap());

        let again = RegisterReport {
            created: false,
            staked: NearToken::ZERO,
            storage_deposit: NearToken::ZERO,
            keys_added: vec![],
            ..report
        };
        let text = again.human();
        assert!(text.contains("was registered already"), "{text}");
        assert!(text.contains("stake deposited: none needed"), "{text}");
        let partial = RegisterReport {
            complete: false,
            ..again
        };
        assert!(
            partial
                .human()
                .contains("registration in progress (run `worker register` again to continue)")
        );
    }
}
