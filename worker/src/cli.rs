//! The `worker` command line: `init` (make and seal the enclave keys), `attest` (produce the
//! attestation bundle), `serve` (the OpenAI-compatible endpoint), `register` (stake, add the
//! node's keys, register the enclave) and `run` (take, run and settle jobs; with
//! `--api-listen` also the paid API).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chain_client::AccountId;
use clap::{Args, Parser, Subcommand, ValueEnum};
use enclave_cloud_common::{ModelId, NodeId};

use crate::attest::dev::{DEFAULT_DEV_VALIDITY_SECS, DevProvider};
use crate::attest::dev_gpu::DevGpus;
use crate::attest::dstack::{DEFAULT_DSTACK_SOCKET, DstackProvider, GuestAgent};
use crate::attest::tdx::{
    ConfigfsTsm, DEFAULT_TSM_ENTRY, DEFAULT_TSM_ROOT, TdxEvidenceFiles, TdxProvider,
};
use crate::attest::{AttestationProvider, GpuEvidenceSource, now_unix_secs};
use crate::claim::ClaimPolicy;
use crate::inference::http::OpenAiHttpBackend;
use crate::inference::routed::Routed;
use crate::inference::{InferenceBackend, MODEL_DIR_ENV};
use crate::keys::{EnclaveKeys, FileSealer};
use crate::served_weights::{EncryptedModel, Loader};

#[derive(Debug, Parser)]
#[command(name = "worker", version, about = "enclave-cloud node agent")]
pub struct Cli {
    /// Directory of the sealed keys and worker state.
    #[arg(
        long,
        env = "ECLOUD_WORKER_DATA_DIR",
        default_value = "./worker-data",
        global = true
    )]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generates and seals the enclave keys (once); prints the public keys as JSON.
    Init,
    /// Produces the attestation bundle binding the sealed keys (JSON on stdout or --out).
    Attest {
        #[command(flatten)]
        attestation: AttestArgs,
        /// Write the bundle here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Development only (`--provider dev`): also write the enclave's NEAR key to FILE as a
        /// near-cli access key file of `--operator`, so near-cli can sign `register_node` and
        /// `heartbeat` by hand. Refused with `--provider tdx`: a real enclave's key never
        /// leaves it (`worker register` and `worker run` sign inside the CVM).
        #[arg(long, value_name = "FILE", requires = "operator")]
        export_near_key: Option<PathBuf>,
        /// The account the exported key belongs to: the node's operator.
        #[arg(long, requires = "export_near_key")]
        operator: Option<AccountId>,
    },
    /// Serves the OpenAI-compatible API: sealed (OHTTP at /ohttp) and paid by payment
    /// channels, signed (/v1/signature/{id}), with /v1/models, /v1/attestation and
    /// /v1/attestation/report public; settles the channels' vouchers in the background.
    Serve(Box<ServeArgs>),
    /// Operator: stakes, adds the enclave's keys to the operator account, registers the node;
    /// prints a report (text, or JSON with --json).
    Register(Box<RegisterArgs>),
    /// Takes jobs from the feed, runs them and settles them on chain until Ctrl-C; with
    /// --api-listen also serves the private, paid API (as `serve`) and settles its channels.
    Run(Box<RunArgs>),
}

/// `worker serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub attestation: AttestArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[arg(long, env = "ECLOUD_WORKER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub channels: ChannelArgs,
}

/// `worker serve`'s chain (not used with --unpaid-api) and payment settings.
#[derive(Debug, Args)]
pub struct ChannelArgs {
    #[command(flatten)]
    pub chain: ChainArgs,
    /// The node id (default: from node.json, else asked from the registry).
    #[arg(long, env = "ECLOUD_NODE_ID")]
    pub node_id: Option<NodeId>,
    #[command(flatten)]
    pub payment: PaymentArgs,
}

/// How the API listener (`serve`, `run --api-listen`) is paid.
#[derive(Debug, Args)]
pub struct PaymentArgs {
    /// Development and benchmarks only: serve /v1/chat/completions and /v1/embeddings plain
    /// and unpaid (also through the gateway), with no channel. Without it inference is sealed
    /// and paid, and a plain request gets a 401.
    #[arg(long)]
    pub unpaid_api: bool,
    /// Most unpaid work per channel: billed responses no voucher covers yet plus the maximum
    /// cost of requests in flight. NEAR (`0.5`, `0.5 NEAR`, `1000yocto`); a token channel's
    /// limit is converted at its rate. A client that stops paying gets 402 beyond it.
    #[arg(long, default_value = "1", value_parser = near_amount)]
    pub channel_credit_limit: u128,
    /// Settle a channel once its newest voucher is this much above what was settled (NEAR,
    /// as --channel-credit-limit).
    #[arg(long, default_value = "0.5", value_parser = near_amount)]
    pub settle_min_amount: u128,
    /// Settle a smaller amount once it has waited this long (2s, 90s, 10m, 2h, 1d). Channels
    /// that start closing are settled at once, and vouchers found after a restart on the
    /// first pass.
    #[arg(long, default_value = "10m", value_parser = chain_client::args::parse_duration)]
    pub settle_interval: Duration,
}

fn near_amount(s: &str) -> Result<u128, String> {
    s.parse::<chain_client::args::Near>()
        .map(|n| n.yocto())
        .map_err(|e| e.to_string())
}

/// Where the chain and the contracts are.
#[derive(Debug, Args)]
pub struct ChainArgs {
    /// NEAR JSON-RPC URL.
    #[arg(long, env = "ECLOUD_RPC_URL", default_value = "http://127.0.0.1:3030")]
    pub rpc_url: String,
    /// The operator account (default for `run`: from node.json).
    #[arg(long, env = "ECLOUD_OPERATOR")]
    pub operator: Option<AccountId>,
    #[arg(long, env = "ECLOUD_REGISTRY")]
    pub registry: Option<AccountId>,
    #[arg(long, env = "ECLOUD_MARKETPLACE")]
    pub marketplace: Option<AccountId>,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub chain: ChainArgs,
    /// The operator's near-cli credentials file (default:
    /// <credentials-dir>/<network>/<operator>.json).
    #[arg(long, env = "ECLOUD_OPERATOR_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
    /// near-cli's credentials directory (default ~/.near-credentials).
    #[arg(long)]
    pub credentials_dir: Option<PathBuf>,
    /// near-cli network name of the credentials.
    #[arg(long, env = "ECLOUD_NETWORK", default_value = "localnet")]
    pub network: String,
    /// A price this node asks, `MODEL:INPUT:OUTPUT` in yoctoNEAR per million tokens
    /// (repeat per model).
    #[arg(long = "price", value_name = "MODEL:INPUT:OUTPUT")]
    pub prices: Vec<PriceArg>,
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    /// Jobs the node runs at once (published in the registry). The marketplace refuses a
    /// claim beyond it, so keep `run --concurrency` at or below it.
    #[arg(long, default_value_t = 4)]
    pub capacity: u32,
    /// Gas allowance of each of the node's function-call keys, in NEAR (0: unlimited).
    #[arg(long, default_value_t = 10)]
    pub key_allowance_near: u128,
    /// Stop after this many device transactions (`begin_attestation`, `register_node`,
    /// `add_gpu`); running `worker register` again continues from the chain's pending entry.
    #[arg(long)]
    pub max_transactions: Option<u32>,
    #[command(flatten)]
    pub attestation: AttestArgs,
    /// Print the report as JSON (amounts in yoctoNEAR as strings) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub chain: ChainArgs,
    /// The node id (default: from node.json, else asked from the registry).
    #[arg(long, env = "ECLOUD_NODE_ID")]
    pub node_id: Option<NodeId>,
    /// The indexer's base URL for the job feed; without it the worker polls the contract.
    #[arg(long, env = "ECLOUD_INDEXER_URL")]
    pub indexer_url: Option<String>,
    /// A model this node serves, `MARKETPLACE_MODEL_ID=BACKEND_MODEL` (repeat per model).
    #[arg(long = "model", value_name = "ID=BACKEND_MODEL", required = true)]
    pub models: Vec<ModelArg>,
    /// Jobs run at once; at most the capacity registered (`register --capacity`), beyond which
    /// the marketplace refuses claims.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Pause between polls while the indexer stream is down.
    #[arg(long, default_value_t = 2000)]
    pub poll_interval_ms: u64,
    /// How often a polling worker tries the indexer stream again.
    #[arg(long, default_value_t = 30)]
    pub stream_retry_secs: u64,
    /// Heartbeat period (0: half the registry's heartbeat interval).
    #[arg(long, default_value_t = 0)]
    pub heartbeat_secs: u64,
    /// Re-attest when the attestation expires within this many seconds.
    #[arg(long, default_value_t = 86_400)]
    pub reattest_before_secs: u64,
    /// Time running jobs get to finish after Ctrl-C / SIGTERM.
    #[arg(long, default_value_t = 30)]
    pub grace_secs: u64,
    /// Pause before retrying a failed inference or submission.
    #[arg(long, default_value_t = 2000)]
    pub retry_delay_ms: u64,
    /// Serve Prometheus metrics at http://<addr>/metrics.
    #[arg(long, env = "ECLOUD_WORKER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve stored outputs at http://<addr>/v1/outputs/{job_id}: outputs over the
    /// marketplace's inline limit are kept in <data dir>/outputs (7 days) and submitted by
    /// hash + URI. Without it such jobs are given up.
    #[arg(long, env = "ECLOUD_WORKER_OUTPUTS_LISTEN")]
    pub outputs_listen: Option<SocketAddr>,
    /// The base URL users reach --outputs-listen at (e.g. https://node.example.org)
    /// [default: http://<outputs-listen>].
    #[arg(long, requires = "outputs_listen")]
    pub outputs_url: Option<String>,
    /// Chat jobs: output tokens the job's cap must pay for, beyond its input, to be claimed.
    #[arg(long, default_value_t = ClaimPolicy::default().min_output_tokens)]
    pub min_output_tokens: u64,
    /// Claim a job only with more than this many seconds left before its deadline (chain
    /// time).
    #[arg(long, default_value_t = ClaimPolicy::default().deadline_margin.as_secs())]
    pub deadline_margin_secs: u64,
    /// Serve the private, paid OpenAI-compatible API here (the address registered as the
    /// node's `--endpoint`): GET /v1/models, /v1/attestation, /v1/attestation/report,
    /// /v1/signature/{id}, /.well-known/ohttp-gateway; POST /ohttp (the OHTTP gateway) in
    /// front of /v1/chat/completions, /v1/embeddings and /v1/channels/voucher, paid by this
    /// node's payment channels (request models are the --model ids).
    #[arg(long, env = "ECLOUD_WORKER_API_LISTEN")]
    pub api_listen: Option<SocketAddr>,
    /// The model factory. Each --model it lists whose manifest names encrypted weights is
    /// served from them: the ciphertext is fetched into <data dir>/weights (resumable, hash
    /// checked), the key granted to this node (`ecloud model keeper`) is waited for and
    /// opened inside the enclave, the weights are decrypted in memory and checked, and only
    /// then is the model served (its jobs claimed). Such a model needs --backend embedded; a
    /// MiniLM one still takes config.json and tokenizer.json from --model-dir.
    #[arg(long, env = "ECLOUD_FACTORY")]
    pub factory: Option<AccountId>,
    /// Longest pause between two polls of a model's key grant (they start at 1 s and double).
    #[arg(long, default_value_t = 30)]
    pub grant_poll_max_secs: u64,
    #[command(flatten)]
    pub payment: PaymentArgs,
    #[command(flatten)]
    pub attestation: AttestArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// `MODEL:INPUT:OUTPUT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceArg {
    pub model_id: ModelId,
    pub input_per_million: u128,
    pub output_per_million: u128,
}

impl std::str::FromStr for PriceArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        let [model, input, output] = parts.as_slice() else {
            return Err(format!("'{s}': expected MODEL:INPUT:OUTPUT"));
        };
        let amount = |v: &str| {
            v.parse::<u128>()
                .map_err(|_| format!("'{v}' is not a yoctoNEAR amount"))
        };
        Ok(Self {
            model_id: model
                .parse()
                .map_err(|e: enclave_cloud_common::IdError| e.to_string())?,
            input_per_million: amount(input)?,
            output_per_million: amount(output)?,
        })
    }
}

/// `ID=BACKEND_MODEL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelArg {
    pub model_id: ModelId,
    pub backend_model: String,
}

impl std::str::FromStr for ModelArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, model) = s
            .split_once('=')
            .filter(|(_, m)| !m.is_empty())
            .ok_or_else(|| format!("'{s}': expected ID=BACKEND_MODEL"))?;
        Ok(Self {
            model_id: id
                .parse()
                .map_err(|e: enclave_cloud_common::IdError| e.to_string())?,
            backend_model: model.to_owned(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// Development CA signature (localnet/testnet).
    Dev,
    /// Intel TDX quote via configfs-tsm (event log and compose from files; cannot measure
    /// encrypted weights).
    Tdx,
    /// Intel TDX on a dstack CVM: quotes, the event log and RTMR3 events through dstack's
    /// guest agent (--dstack-socket).
    Dstack,
}

#[derive(Debug, Args)]
pub struct AttestArgs {
    #[arg(long, value_enum, env = "ECLOUD_ATTESTATION", default_value = "dev")]
    pub provider: ProviderKind,
    /// dev: file holding the development CA's ed25519 secret key (64 hex characters).
    #[arg(long, env = "ECLOUD_DEV_CA_KEY_FILE")]
    pub dev_ca_key_file: Option<PathBuf>,
    /// dev: lifetime of the attestation in seconds.
    #[arg(long, default_value_t = DEFAULT_DEV_VALIDITY_SECS)]
    pub dev_validity_secs: u64,
    /// tdx: configfs-tsm report root.
    #[arg(long, default_value = DEFAULT_TSM_ROOT)]
    pub tsm_root: PathBuf,
    /// tdx: report entry created under the root.
    #[arg(long, default_value = DEFAULT_TSM_ENTRY)]
    pub tsm_entry: String,
    /// tdx, dstack: DCAP collateral (dcap-qvl QuoteCollateralV3 JSON).
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// tdx: dstack event log JSON.
    #[arg(long)]
    pub event_log: Option<PathBuf>,
    /// tdx, dstack: the app compose file whose hash is measured (dstack: default from the
    /// guest agent's Info).
    #[arg(long)]
    pub app_compose: Option<PathBuf>,
    /// dstack: the guest agent's socket.
    #[arg(long, default_value = DEFAULT_DSTACK_SOCKET)]
    pub dstack_socket: PathBuf,
    /// Collect every GPU's evidence through NVML over the registry's bound nonce (build with
    /// feature `nvml`).
    #[arg(long, conflicts_with = "gpu_provider")]
    pub nvml: bool,
    /// `dev`: the dev GPU fleet (P-384 chains under the dev root, real SPDM reports); only
    /// with `--provider dev`.
    #[arg(long, value_enum)]
    pub gpu_provider: Option<GpuProviderKind>,
    /// dev GPU provider: number of GPUs.
    #[arg(long, default_value_t = 8)]
    pub dev_gpus: u32,
    /// dev GPU provider: number of NVSwitches (0: no protected-PCIe topology).
    #[arg(long, default_value_t = 4)]
    pub dev_switches: u32,
    /// dev GPU provider: 64 hex characters from which the devices derive (default: from the
    /// enclave's NEAR key, so every node has its own devices).
    #[arg(long)]
    pub dev_gpu_seed: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GpuProviderKind {
    /// The attestation library's dev GPUs and NVSwitches (localnet/testnet).
    Dev,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// all-MiniLM-L6-v2 (embeddings) and/or gemma-3-270m (chat) on the CPU.
    Embedded,
    /// An OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama).
    Openai,
}

#[derive(Debug, Args)]
pub struct BackendArgs {
    #[arg(long, value_enum, env = "ECLOUD_BACKEND", default_value = "embedded")]
    pub backend: BackendKind,
    /// embedded: the all-MiniLM-L6-v2 directory (config.json, tokenizer.json,
    /// model.safetensors), for embeddings.
    #[arg(long, env = MODEL_DIR_ENV)]
    pub model_dir: Option<PathBuf>,
    /// embedded: the gemma-3-270m GGUF file (worker/scripts/fetch-gemma.sh), for chat.
    #[arg(long, env = "ECLOUD_GEMMA_GGUF")]
    pub gemma_gguf: Option<PathBuf>,
    /// openai: base URL including the API prefix, e.g. http://127.0.0.1:8000/v1.
    #[arg(long, env = "ECLOUD_UPSTREAM_URL")]
    pub upstream_url: Option<String>,
    /// openai: bearer token for the upstream server.
    #[arg(long, env = "ECLOUD_UPSTREAM_API_KEY", hide_env_values = true)]
    pub upstream_api_key: Option<String>,
    /// openai: request timeout in seconds.
    #[arg(long, default_value_t = 300)]
    pub upstream_timeout_secs: u64,
}

/// A command failure, printed as one line by `main`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Attest(#[from] crate::attest::AttestError),
    #[error(transparent)]
    Inference(#[from] crate::inference::InferenceError),
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no keys in {0}: run `worker init` first")]
    NotInitialized(PathBuf),
    #[error(transparent)]
    Chain(#[from] chain_client::ChainError),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    #[error(transparent)]
    Outputs(#[from] crate::outputs::OutputStoreError),
    #[error(transparent)]
    Channels(#[from] crate::channels::store::StoreError),
}

pub(crate) fn load_keys(data_dir: &Path) -> Result<EnclaveKeys, CliError> {
    EnclaveKeys::load(&FileSealer::new(data_dir))?
        .ok_or_else(|| CliError::NotInitialized(data_dir.to_owned()))
}

fn read_file(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Builds the configured attestation provider.
pub fn provider(args: &AttestArgs) -> Result<Box<dyn AttestationProvider>, CliError> {
    match args.provider {
        ProviderKind::Dev => {
            let path = args.dev_ca_key_file.as_deref().ok_or_else(|| {
                CliError::Usage("--dev-ca-key-file is required with --provider dev".into())
            })?;
            let key = zeroize::Zeroizing::new(read_file(path)?);
            Ok(Box::new(DevProvider::from_hex(
                &key,
                args.dev_validity_secs,
            )?))
        }
        ProviderKind::Dstack => {
            let collateral = args.collateral.clone().ok_or_else(|| {
                CliError::Usage("--collateral is required with --provider dstack".into())
            })?;
            if args.event_log.is_some() {
                return Err(CliError::Usage(
                    "--event-log is not used with --provider dstack: the guest agent keeps the \
                     event log"
                        .into(),
                ));
            }
            Ok(Box::new(DstackProvider::new(
                GuestAgent::new(&args.dstack_socket),
                collateral,
                args.app_compose.clone(),
            )))
        }
        ProviderKind::Tdx => {
            let collateral = args.collateral.clone().ok_or_else(|| {
                CliError::Usage("--collateral is required with --provider tdx".into())
            })?;
            Ok(Box::new(TdxProvider::new(
                ConfigfsTsm::new(&args.tsm_root, &args.tsm_entry),
                TdxEvidenceFiles {
                    collateral,
                    event_log: args.event_log.clone(),
                    app_compose: args.app_compose.clone(),
                },
            )))
        }
    }
}

/// The node's GPUs (and NVSwitches), if it declares any: NVML, or the dev fleet (only with
/// dev attestation: registries trust its root only where dev attestation is enabled).
pub fn device_source(
    args: &AttestArgs,
    keys: &EnclaveKeys,
) -> Result<Option<Box<dyn GpuEvidenceSource>>, CliError> {
    if args.nvml {
        return nvml_source().map(Some);
    }
    match args.gpu_provider {
        None => Ok(None),
        Some(GpuProviderKind::Dev) => {
            if args.provider != ProviderKind::Dev {
                return Err(CliError::Usage(
                    "--gpu-provider dev is only allowed with dev attestation (--provider dev)"
                        .into(),
                ));
            }
            let seed = match &args.dev_gpu_seed {
                Some(hex_seed) => {
                    let mut seed = [0u8; 32];
                    hex::decode_to_slice(hex_seed.trim(), &mut seed).map_err(|e| {
                        CliError::Usage(format!("--dev-gpu-seed must be 64 hex characters: {e}"))
                    })?;
                    seed
                }
                None => {
                    use sha2::Digest;
                    sha2::Sha256::new()
                        .chain_update(b"enclave-cloud dev GPUs of ")
                        .chain_update(keys.public().near_key)
                        .finalize()
                        .into()
                }
            };
            Ok(Some(Box::new(DevGpus::new(
                seed,
                args.dev_gpus,
                args.dev_switches,
            ))))
        }
    }
}

#[cfg(feature = "nvml")]
fn nvml_source() -> Result<Box<dyn GpuEvidenceSource>, CliError> {
    Ok(Box::new(crate::attest::nvml::NvmlGpus::init()?))
}

#[cfg(not(feature = "nvml"))]
fn nvml_source() -> Result<Box<dyn GpuEvidenceSource>, CliError> {
    Err(CliError::Usage(
        "--nvml needs a worker built with the `nvml` feature".into(),
    ))
}

/// Builds the configured inference backend.
pub fn backend(args: &BackendArgs) -> Result<Arc<dyn InferenceBackend>, CliError> {
    match args.backend {
        BackendKind::Embedded => {
            if args.model_dir.is_none() && args.gemma_gguf.is_none() {
                return Err(CliError::Usage(format!(
                    "--model-dir (or {MODEL_DIR_ENV}) and/or --gemma-gguf (or ECLOUD_GEMMA_GGUF) \
                     is required with --backend embedded"
                )));
            }
            embedded_backend(args.model_dir.as_deref(), args.gemma_gguf.as_deref())
        }
        BackendKind::Openai => {
            let url = args.upstream_url.as_deref().ok_or_else(|| {
                CliError::Usage("--upstream-url is required with --backend openai".into())
            })?;
            Ok(Arc::new(OpenAiHttpBackend::new(
                url,
                args.upstream_api_key.clone(),
                Duration::from_secs(args.upstream_timeout_secs),
            )?))
        }
    }
}

/// `worker run`'s backend: the plain-weights backends (as [`backend`], without the embedded
/// models served from encrypted weights), behind a [`Routed`] to which each encrypted model's
/// backend is added once ready, and the loader of each of `encrypted` (in its order).
pub fn run_backend(
    args: &BackendArgs,
    encrypted: &[EncryptedModel],
) -> Result<(Arc<Routed>, Vec<Loader>), CliError> {
    if encrypted.is_empty() {
        return Ok((Arc::new(Routed::new(vec![backend(args)?])), Vec::new()));
    }
    if args.backend != BackendKind::Embedded {
        return Err(CliError::Usage(format!(
            "model {}'s manifest names encrypted weights: they are decrypted inside the enclave \
             and need --backend embedded",
            encrypted[0].model_id
        )));
    }
    encrypted_embedded(args, encrypted)
}

#[cfg(feature = "embedded")]
fn encrypted_embedded(
    args: &BackendArgs,
    encrypted: &[EncryptedModel],
) -> Result<(Arc<Routed>, Vec<Loader>), CliError> {
    use crate::inference::{embedded, embedded::MiniLmBackend, gemma, gemma::GemmaBackend};
    let is = |aliases: &[&str], name: &str| aliases.iter().any(|a| a.eq_ignore_ascii_case(name));
    let (mut minilm_encrypted, mut gemma_encrypted) = (false, false);
    let mut loaders = Vec::new();
    for model in encrypted {
        let name = model.backend_model.as_str();
        let loader: Loader = if is(&gemma::MODEL_ALIASES, name) {
            gemma_encrypted = true;
            let shown = format!("{}'s encrypted weights", model.model_id);
            Box::new(move |d| {
                let mut weights = d.weights;
                // The GGUF reader takes the bytes; they stay in the enclave's memory.
                let bytes = std::mem::take(&mut *weights);
                Ok(Arc::new(GemmaBackend::from_gguf_bytes(bytes, &shown)?) as Arc<_>)
            })
        } else if is(&embedded::MODEL_ALIASES, name) {
            minilm_encrypted = true;
            let dir = args.model_dir.clone().ok_or_else(|| {
                CliError::Usage(format!(
                    "model {} (MiniLM) has encrypted weights: --model-dir must hold its \
                     config.json and tokenizer.json",
                    model.model_id
                ))
            })?;
            Box::new(move |d| {
                Ok(Arc::new(MiniLmBackend::load_with_weights(&dir, Some(&d.weights))?) as Arc<_>)
            })
        } else {
            return Err(CliError::Usage(format!(
                "model {} has encrypted weights but its backend model '{name}' is neither \
                 gemma-3-270m nor all-MiniLM-L6-v2 (the embedded backends)",
                model.model_id
            )));
        };
        loaders.push(loader);
    }
    let minilm = args.model_dir.as_deref().filter(|_| !minilm_encrypted);
    let gemma = args.gemma_gguf.as_deref().filter(|_| !gemma_encrypted);
    let mut plain: Vec<Arc<dyn InferenceBackend>> = Vec::new();
    if let Some(dir) = minilm {
        plain.push(Arc::new(MiniLmBackend::load(dir)?));
    }
    if let Some(gguf) = gemma {
        plain.push(Arc::new(GemmaBackend::load(gguf)?));
    }
    Ok((Arc::new(Routed::new(plain)), loaders))
}

#[cfg(not(feature = "embedded"))]
fn encrypted_embedded(
    _args: &BackendArgs,
    _encrypted: &[EncryptedModel],
) -> Result<(Arc<Routed>, Vec<Loader>), CliError> {
    Err(CliError::Usage(
        "encrypted weights need a worker built with the `embedded` feature".into(),
    ))
}

/// MiniLM for embeddings and/or Gemma for chat, each request to the one serving its model.
#[cfg(feature = "embedded")]
fn embedded_backend(
    minilm_dir: Option<&Path>,
    gemma_gguf: Option<&Path>,
) -> Result<Arc<dyn InferenceBackend>, CliError> {
    use crate::inference::{embedded::MiniLmBackend, gemma::GemmaBackend};
    let mut backends: Vec<Arc<dyn InferenceBackend>> = Vec::new();
    if let Some(dir) = minilm_dir {
        backends.push(Arc::new(MiniLmBackend::load(dir)?));
    }
    if let Some(gguf) = gemma_gguf {
        backends.push(Arc::new(GemmaBackend::load(gguf)?));
    }
    Ok(match backends.len() {
        1 => backends.remove(0),
        _ => Arc::new(Routed::new(backends)),
    })
}

#[cfg(not(feature = "embedded"))]
fn embedded_backend(
    _minilm_dir: Option<&Path>,
    _gemma_gguf: Option<&Path>,
) -> Result<Arc<dyn InferenceBackend>, CliError> {
    Err(CliError::Usage(
        "--backend embedded needs a worker built with the `embedded` feature".into(),
    ))
}

/// `worker init`: the public keys as JSON.
pub fn init(data_dir: &Path) -> Result<serde_json::Value, CliError> {
    let (keys, created) = EnclaveKeys::load_or_generate(&FileSealer::new(data_dir))?;
    let public = keys.public();
    Ok(serde_json::json!({
        "created": created,
        "enclave_key": hex::encode(public.enclave_key),
        "near_public_key": public.near_public_key(),
        "report_data": hex::encode(public.report_data()),
    }))
}

/// `worker attest`: the bundle as JSON text.
pub fn attest(data_dir: &Path, args: &AttestArgs) -> Result<String, CliError> {
    let keys = load_keys(data_dir)?;
    let bundle = provider(args)?.attest(&keys.public(), now_unix_secs())?;
    serde_json::to_string_pretty(&bundle).map_err(|e| CliError::Usage(e.to_string()))
}

/// `worker attest --export-near-key`: writes the sealed NEAR key as a near-cli credentials
/// file (mode 0600) of `operator`. Only for `dev` attestations, whose keys no hardware protects.
pub fn export_near_key(
    data_dir: &Path,
    args: &AttestArgs,
    operator: &AccountId,
    path: &Path,
) -> Result<(), CliError> {
    if args.provider != ProviderKind::Dev {
        return Err(CliError::Usage(
            "--export-near-key is for --provider dev only: a TDX enclave's NEAR key never leaves it"
                .into(),
        ));
    }
    let keys = load_keys(data_dir)?;
    let secret = chain_client::ed25519_secret_from_seed(&keys.export_near_seed());
    chain_client::write_credentials_file(path, operator, &secret)?;
    Ok(())
}

/// Limits of `worker serve`'s connections. A chat completion that is not streamed writes
/// nothing until the whole answer is ready, which on a CPU backend can take minutes: the idle
/// limit leaves room for that; partial request heads still go after the header timeout.
pub const ENDPOINT_TIMEOUTS: http_serve::Timeouts = http_serve::Timeouts {
    header_read: std::time::Duration::from_secs(10),
    idle: std::time::Duration::from_secs(600),
};

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` and systemd send).
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without a SIGTERM handler, only Ctrl-C stops the server.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Init => {
            println!("{:#}", init(&cli.data_dir)?);
        }
        Command::Attest {
            attestation,
            out,
            export_near_key: key_out,
            operator,
        } => {
            if let (Some(path), Some(operator)) = (&key_out, &operator) {
                export_near_key(&cli.data_dir, &attestation, operator, path)?;
            }
            let json = attest(&cli.data_dir, &attestation)?;
            match out {
                Some(path) => std::fs::write(&path, json).map_err(|source| CliError::Io {
                    path: path.clone(),
                    source,
                })?,
                None => println!("{json}"),
            }
        }
        Command::Serve(args) => crate::serve::serve_command(&cli.data_dir, &args).await?,
        Command::Register(args) => {
            let report = crate::node::register_command(&cli.data_dir, &args).await?;
            if args.json {
                let json = serde_json::to_string_pretty(&report)
                    .map_err(|e| CliError::Usage(e.to_string()))?;
                println!("{json}");
            } else {
                print!("{}", report.human());
            }
        }
        Command::Run(args) => crate::node::run_command(&cli.data_dir, &args).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use attestation::{RustCrypto, VerifyPolicy};

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("worker").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn init_is_idempotent_and_attest_produces_a_verifiable_dev_bundle() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let first = init(&data).unwrap();
        let second = init(&data).unwrap();
        assert_eq!(first["created"], true);
        assert_eq!(second["created"], false);
        assert_eq!(first["enclave_key"], second["enclave_key"]);
        assert_eq!(first["near_public_key"], second["near_public_key"]);

        let ca_file = tmp.path().join("dev-ca.key");
        std::fs::write(&ca_file, format!("{}\n", hex::encode([5u8; 32]))).unwrap();
        let data_arg = data.to_str().unwrap();
        let ca_arg = ca_file.to_str().unwrap();
        let cli = parse(&[
            "--data-dir",
            data_arg,
            "attest",
            "--dev-ca-key-file",
            ca_arg,
        ]);
        let Command::Attest { attestation, .. } = &cli.command else {
            panic!("parsed {:?}", cli.command)
        };
        let json = attest(&cli.data_dir, attestation).unwrap();
        let bundle = attestation::parse_bundle(json.as_bytes()).unwrap();
        let policy = VerifyPolicy {
            dev_ca_public_key: Some(DevProvider::new(&[5; 32], 1).ca_public_key()),
            ..VerifyPolicy::default()
        };
        let verdict =
            attestation::verify_bundle(&bundle, now_unix_secs(), &policy, &RustCrypto).unwrap();
        assert_eq!(verdict.bound_keys.enclave_key, first["enclave_key"]);
        assert_eq!(verdict.bound_keys.near_public_key, first["near_public_key"]);
    }

    #[test]
    fn a_dev_node_exports_its_near_key_for_near_cli_and_a_tdx_node_refuses() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let public = init(&data).unwrap();
        let ca_file = tmp.path().join("dev-ca.key");
        std::fs::write(&ca_file, hex::encode([5u8; 32])).unwrap();
        let key_file = tmp.path().join("node-key.json");
        let cli = parse(&[
            "--data-dir",
            data.to_str().unwrap(),
            "attest",
            "--dev-ca-key-file",
            ca_file.to_str().unwrap(),
            "--export-near-key",
            key_file.to_str().unwrap(),
            "--operator",
            "operator.test.near",
        ]);
        let Command::Attest {
            attestation,
            export_near_key: Some(path),
            operator: Some(operator),
            ..
        } = &cli.command
        else {
            panic!("parsed {:?}", cli.command)
        };
        export_near_key(&cli.data_dir, attestation, operator, path).unwrap();
        let account = chain_client::Account::from_credentials_file(&key_file).unwrap();
        assert_eq!(account.account_id().as_str(), "operator.test.near");
        assert_eq!(
            account.public_key().to_string(),
            public["near_public_key"].as_str().unwrap()
        );
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let tdx_file = tmp.path().join("tdx-key.json");
        let cli = parse(&[
            "--data-dir",
            data.to_str().unwrap(),
            "attest",
            "--provider",
            "tdx",
            "--export-near-key",
            tdx_file.to_str().unwrap(),
            "--operator",
            "operator.test.near",
        ]);
        let Command::Attest {
            attestation,
            operator: Some(operator),
            ..
        } = &cli.command
        else {
            panic!("parsed {:?}", cli.command)
        };
        assert!(matches!(
            export_near_key(&cli.data_dir, attestation, operator, &tdx_file),
            Err(CliError::Usage(_))
        ));
        assert!(!tdx_file.exists());
        let no_operator = ["worker", "attest", "--export-near-key", "k.json"];
        assert!(Cli::try_parse_from(no_operator).is_err());
    }

    #[test]
    fn run_and_serve_take_the_api_listener_and_payment_flags() {
        let cli = parse(&[
            "run",
            "--model",
            "gemma=gemma-3-270m",
            "--api-listen",
            "127.0.0.1:9000",
            "--settle-interval",
            "2s",
            "--channel-credit-limit",
            "0.5",
            "--settle-min-amount",
            "1000yocto",
        ]);
        let Command::Run(args) = &cli.command else {
            panic!("parsed {:?}", cli.command)
        };
        assert_eq!(args.api_listen, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(args.payment.settle_interval, Duration::from_secs(2));
        assert_eq!(
            args.payment.channel_credit_limit,
            500_000_000_000_000_000_000_000
        );
        assert_eq!(args.payment.settle_min_amount, 1000);
        assert!(!args.payment.unpaid_api);

        let cli = parse(&["serve", "--unpaid-api", "--settle-interval", "90s"]);
        let Command::Serve(args) = &cli.command else {
            panic!("parsed {:?}", cli.command)
        };
        assert!(args.channels.payment.unpaid_api);
        assert_eq!(
            args.channels.payment.settle_interval,
            Duration::from_secs(90)
        );
        assert_eq!(
            args.channels.payment.channel_credit_limit,
            1_000_000_000_000_000_000_000_000
        );
        assert!(Cli::try_parse_from(["worker", "serve", "--settle-interval", "soon"]).is_err());
    }

    #[test]
    fn missing_keys_and_options_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().to_str().unwrap();
        let cli = parse(&[
            "--data-dir",
            data,
            "attest",
            "--dev-ca-key-file",
            "/nonexistent",
        ]);
        let Command::Attest { attestation, .. } = &cli.command else {
            panic!()
        };
        assert!(matches!(
            attest(&cli.data_dir, attestation),
            Err(CliError::NotInitialized(_))
        ));
        init(tmp.path()).unwrap();
        assert!(matches!(
            attest(&cli.data_dir, attestation),
            Err(CliError::Io { .. })
        ));
        let cli = parse(&["--data-dir", data, "attest"]);
        let Command::Attest { attestation, .. } = &cli.command else {
            panic!()
        };
        assert!(matches!(
            attest(&cli.data_dir, attestation),
            Err(CliError::Usage(_))
        ));
        let cli = parse(&["attest", "--provider", "tdx"]);
        let Command::Attest { attestation, .. } = &cli.command else {
            panic!()
        };
        assert!(matches!(provider(attestation), Err(CliError::Usage(_))));
    }
}
