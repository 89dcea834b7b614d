//! `ecloud` command line (see `ecloud --help` and cli/README.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Parser, Subcommand};
use ecloud::Error;
use ecloud::amount::{self, Near};
use ecloud::attestation_cmd::{self, GpuFiles};
use ecloud::cancel;
use ecloud::chain::Chain;
use ecloud::channels::commands as channel_cmd;
use ecloud::config::{Deployment, Network, Overrides, Settings};
use ecloud::indexer::{Indexer, NodeQuery};
use ecloud::input::InputSpec;
use ecloud::jobs::{self, Deadlines, NodeChoice, SubmitArgs};
use ecloud::model_weights::{self, KeySource};
use ecloud::models::{self, CreateArgs};
use ecloud::nodes;
use ecloud::output::{self, Report};
use ecloud::proxy;
use enclave_cloud_common::interfaces::model_token::CrowdfundConfig;
use enclave_cloud_common::{Asset, ChannelId, Hash32, JobId, ModelId, NodeId};
use near_sdk::AccountId;
use near_sdk::json_types::{U64, U128};

const AFTER_HELP: &str = "\
Exit codes: 0 ok; 1 a check failed (attestation, receipt signature, decryption);
2 bad input or local files; 3 not found or not ready; 4 the indexer or the chain failed.";

#[derive(Parser)]
#[command(
    name = "ecloud",
    version,
    about = "enclave-cloud client: nodes, encrypted inference jobs, payment channels and a private OpenAI-compatible proxy, model tokens, attestations",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// NEAR network: localnet, testnet or mainnet (picks the default RPC and contracts, and
    /// the credentials subdirectory) [default: the deployment's, else testnet].
    #[arg(long, global = true, env = "ECLOUD_NETWORK")]
    network: Option<Network>,
    /// A deployment record (deployment.json from scripts/deploy.sh): network, RPC and
    /// contract accounts, for what the other flags leave open.
    #[arg(long, global = true, env = "ECLOUD_DEPLOYMENT")]
    deployment: Option<PathBuf>,
    /// NEAR JSON-RPC URL [default: the network's; localnet http://127.0.0.1:3030].
    #[arg(long, global = true, env = "ECLOUD_RPC_URL")]
    rpc_url: Option<String>,
    /// Indexer REST API URL [default: http://127.0.0.1:8090].
    #[arg(long, global = true, env = "ECLOUD_INDEXER_URL")]
    indexer_url: Option<String>,
    /// Your NEAR account: signs transactions, owns jobs and model tokens.
    #[arg(long, global = true, env = "ECLOUD_ACCOUNT_ID")]
    account_id: Option<AccountId>,
    /// Node registry contract [default: per network, localnet registry.test.near].
    #[arg(long, global = true, env = "ECLOUD_REGISTRY")]
    registry: Option<AccountId>,
    /// Marketplace contract [default: per network, localnet marketplace.test.near].
    #[arg(long, global = true, env = "ECLOUD_MARKETPLACE")]
    marketplace: Option<AccountId>,
    /// Model factory contract [default: per network, localnet models.test.near].
    #[arg(long, global = true, env = "ECLOUD_FACTORY")]
    factory: Option<AccountId>,
    /// near-cli credentials directory (keys in <dir>/<network>/<account>.json)
    /// [default: ~/.near-credentials].
    #[arg(long, global = true, env = "ECLOUD_CREDENTIALS_DIR")]
    credentials_dir: Option<PathBuf>,
    /// Where your keys live, mode 0600: x25519 job keys (<dir>/<network>/<account>.x25519) and
    /// payment channel states with their channel keys (<dir>/<network>/channels/)
    /// [default: ~/.ecloud].
    #[arg(long, global = true, env = "ECLOUD_KEYS_DIR")]
    keys_dir: Option<PathBuf>,
    /// Print JSON instead of text (errors too, on stderr).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// List nodes (from the indexer).
    Nodes(NodesCli),
    /// Encrypted inference jobs: submit, status, result, cancel.
    #[command(subcommand)]
    Job(JobCommand),
    /// Model tokens: create, contribute, claim revenue, show; encrypted weights.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Node attestations: verify bundles, build them from dstack evidence.
    #[command(subcommand)]
    Attestation(AttestationCommand),
    /// Payment channels for the private API: open, list, top up, close.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// A local OpenAI-compatible endpoint that pays attested nodes through payment channels.
    Proxy(ProxyCli),
}

#[derive(Subcommand)]
enum ChannelCommand {
    /// Open a channel to a node for a model. The channel key is generated here and kept with
    /// the channel's state in <keys-dir>/<network>/channels/ (mode 0600), written before the
    /// transaction is sent.
    Open {
        #[arg(long)]
        node: NodeId,
        #[arg(long)]
        model: ModelId,
        /// The deposit: NEAR (e.g. 0.5 or "0.5 NEAR"), or the token's smallest units with
        /// --token. A NEAR channel also attaches the channel's storage (refunded at close).
        #[arg(long)]
        deposit: String,
        /// Open the channel in this NEP-141 token (ft_transfer_call; the storage is paid into
        /// your storage balance at the marketplace first).
        #[arg(long)]
        token: Option<AccountId>,
    },
    /// Your open and closing channels (chain) with the local state: deposit, settled, owed
    /// (the newest voucher you signed), state.
    List,
    /// Add to an open channel's deposit.
    TopUp {
        channel_id: ChannelId,
        /// NEAR, or the token's smallest units for a token channel.
        #[arg(long)]
        amount: String,
    },
    /// Start a unilateral close (start_close, 1 yoctoNEAR): the node may still settle during
    /// the challenge period; then `close ID --finish` refunds the rest.
    Close {
        channel_id: ChannelId,
        /// Finish the close (finish_close) once the challenge period is over.
        #[arg(long)]
        finish: bool,
    },
    /// Finish a close after the challenge period (the same as `close ID --finish`).
    FinishClose { channel_id: ChannelId },
}

#[derive(Args)]
struct ProxyCli {
    /// Where to listen, e.g. 127.0.0.1:8000 (point OPENAI_BASE_URL at http://ADDR/v1).
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: std::net::SocketAddr,
    /// The model of requests that name none (requests' own `model` wins).
    #[arg(long)]
    model: Option<ModelId>,
    /// Use only this node (default: the cheapest active node the indexer lists for the
    /// model that verifies; another one after a node fails).
    #[arg(long)]
    node: Option<NodeId>,
    /// Only nodes in this region.
    #[arg(long, conflicts_with = "node")]
    region: Option<String>,
    /// Deposit of each channel the proxy opens, and of each top-up (when less than a tenth of
    /// it is left): NEAR, or the token's smallest units with --token. Without it the proxy
    /// only uses channels already open (`ecloud channel open`).
    #[arg(long)]
    deposit: Option<String>,
    /// Open channels in this NEP-141 token instead of NEAR.
    #[arg(long)]
    token: Option<AccountId>,
}

#[derive(Args)]
struct NodesCli {
    /// Only nodes that serve this model.
    #[arg(long)]
    model: Option<ModelId>,
    #[arg(long)]
    region: Option<String>,
    /// GPU model, e.g. H100.
    #[arg(long)]
    gpu: Option<String>,
    /// Highest output price per million tokens, in NEAR (of --model if given).
    #[arg(long)]
    max_price: Option<Near>,
    /// Include inactive, expired and deregistered nodes.
    #[arg(long)]
    all: bool,
    /// Order: price (cheapest first) or id.
    #[arg(long, default_value = "price", value_parser = ["price", "id"])]
    sort: String,
    /// At most this many nodes (1-200).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Continue a listing (the cursor printed after the previous page).
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Subcommand)]
enum JobCommand {
    /// Encrypt an input to a node's attested key, pay, and print the job id.
    Submit(Box<SubmitCli>),
    /// A job's state (indexer, or the marketplace when the indexer cannot answer).
    Status { job_id: JobId },
    /// Verify a settled job's receipt, decrypt its output and print it. The receipt's
    /// signature, its hashes of your input and of the output, and the encrypted weights it
    /// names (`verified.weights_hash` in --json), which must be the answer's and the model
    /// manifest's (none for plain weights), are all checked: a mismatch exits 1.
    Result {
        job_id: JobId,
        /// Also write the response body (JSON) to this file.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Cancel a job and refund its escrow to its user: an open job by its user (1 yoctoNEAR
    /// attached) before its claim deadline, by anyone after it; a claimed job by anyone after
    /// its deadline (the node is slashed to the user).
    Cancel { job_id: JobId },
}

#[derive(Args)]
#[command(group(ArgGroup::new("request").required(true).args(["prompt", "embed", "input"])))]
struct SubmitCli {
    /// The model to run (its marketplace id).
    #[arg(long)]
    model: ModelId,
    /// Chat: the user message.
    #[arg(long)]
    prompt: Option<String>,
    /// Chat: a system message before the prompt.
    #[arg(long, requires = "prompt")]
    system: Option<String>,
    /// Chat: most tokens to generate.
    #[arg(long, requires = "prompt")]
    max_tokens: Option<u32>,
    /// Chat: sampling temperature.
    #[arg(long, requires = "prompt")]
    temperature: Option<f32>,
    /// Embeddings: a text to embed (repeat for several).
    #[arg(long)]
    embed: Vec<String>,
    /// A file with one OpenAI Batch API line ({"method","url","body"}); - reads stdin.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Send to this node (default: the cheapest active node serving the model).
    #[arg(long)]
    node: Option<NodeId>,
    /// Choose among nodes in this region.
    #[arg(long, conflicts_with = "node")]
    region: Option<String>,
    /// Choose among nodes with this GPU model.
    #[arg(long, conflicts_with = "node")]
    gpu: Option<String>,
    /// Choose among nodes whose output price per million tokens is at most this (NEAR).
    #[arg(long, conflicts_with = "node")]
    max_price: Option<Near>,
    /// The most the job may cost (escrowed; the rest is refunded): NEAR (e.g. 0.01), or the
    /// token's smallest units with --token.
    #[arg(long)]
    max_cost: String,
    /// Pay with this NEP-141 token (ft_transfer_call) instead of NEAR.
    #[arg(long)]
    token: Option<AccountId>,
    /// Time for the result, e.g. 30m, 2h.
    #[arg(long, default_value = "1h", value_parser = amount::parse_duration)]
    deadline: std::time::Duration,
    /// Time for a node to claim the job [default: the marketplace's claim window]; never later
    /// than the deadline minus the marketplace's answer window (min_answer_window_ns).
    #[arg(long, value_parser = amount::parse_duration)]
    claim_window: Option<std::time::Duration>,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Create a model's revenue token through the factory.
    Create(Box<CreateCli>),
    /// Contribute NEAR to a model's crowdfund for its tokens.
    Contribute {
        model_id: ModelId,
        /// NEAR to contribute (the first contribution also pays your token storage).
        #[arg(long)]
        amount: Near,
    },
    /// Close a crowdfund whose goal is reached or whose deadline passed (anyone may): success
    /// releases the funds to the beneficiary, failure opens refunds.
    Finalize { model_id: ModelId },
    /// Have the marketplace confirm with the factory that the model exists, so that its
    /// royalties go to its token (until then they are protocol fees; `model create` does this
    /// itself). Costs only the gas.
    Confirm { model_id: ModelId },
    /// Claim your share of a model's revenue.
    Claim {
        model_id: ModelId,
        /// Claim revenue paid in this NEP-141 token [default: NEAR].
        #[arg(long)]
        token: Option<AccountId>,
    },
    /// A model's listing, manifest, supply, crowdfund and revenue (and your balance with
    /// --account-id).
    Show { model_id: ModelId },
    /// Encrypt weights for publication (chunked XChaCha20-Poly1305, constant memory); prints
    /// the plaintext and ciphertext SHA-256 (the ciphertext's is the manifest's weights_hash).
    /// Local files only.
    Encrypt(EncryptCli),
    /// Decrypt encrypted weights and verify every chunk and both hashes (operators' check).
    /// The output appears only once all of it verified. Local files only.
    Decrypt(DecryptCli),
    /// Point the model's manifest at encrypted weights (owner only): sets
    /// encrypted_weights_uri and weights_hash, keeping the other fields.
    SetWeights(SetWeightsCli),
    /// Keep the model key (owner or key service): grant it, sealed to each node's attested
    /// x25519 key, to every node that offers the model and that the manifest allows, once per
    /// attestation; revoke it on expiry, deregistration or a manifest change. Runs until
    /// Ctrl-C; decisions are logged on stderr.
    Keeper(KeeperCli),
}

#[derive(Args)]
struct KeeperCli {
    /// The model whose key to keep (its id at the factory).
    #[arg(long = "model")]
    model_id: ModelId,
    /// The model key file (32 bytes; refused unless only its owner may read it, mode 0600).
    #[arg(long)]
    key_file: PathBuf,
    /// Time between passes over the chain.
    #[arg(long, default_value = "30s", value_parser = amount::parse_duration)]
    interval: std::time::Duration,
    /// One pass, then exit (prints what it did).
    #[arg(long)]
    once: bool,
    /// Serve Prometheus metrics (grants, revocations, errors) at http://ADDR/metrics.
    #[arg(long)]
    metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Args)]
#[command(group(ArgGroup::new("model_key").required(true).args(["key", "new_key"])))]
struct EncryptCli {
    /// The plaintext weights file.
    #[arg(long)]
    weights: PathBuf,
    /// Where to write the encrypted weights.
    #[arg(long)]
    out: PathBuf,
    /// Use this model key file (32 bytes, mode 0600).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Generate a model key into this new file (mode 0600; an existing file is refused).
    #[arg(long)]
    new_key: Option<PathBuf>,
    /// Plaintext bytes per chunk.
    #[arg(long, default_value_t = protocol::weights::DEFAULT_CHUNK_SIZE)]
    chunk_size: u32,
}

#[derive(Args)]
struct DecryptCli {
    /// The encrypted weights file.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the plaintext weights.
    #[arg(long)]
    out: PathBuf,
    /// The model key file (mode 0600).
    #[arg(long)]
    key: PathBuf,
    /// Refuse unless the encrypted file has this SHA-256 (the manifest's weights_hash).
    #[arg(long)]
    ciphertext_sha256: Option<Hash32>,
    /// Refuse unless the weights have this SHA-256.
    #[arg(long)]
    plaintext_sha256: Option<Hash32>,
}

#[derive(Args)]
#[command(group(ArgGroup::new("hashes").required(true).args(["summary", "ciphertext_sha256"])))]
struct SetWeightsCli {
    #[arg(long = "model")]
    model_id: ModelId,
    /// Where nodes download the encrypted weights: http(s):// or file://.
    #[arg(long)]
    uri: String,
    /// The JSON `ecloud model encrypt --json` printed (its ciphertext_sha256).
    #[arg(long)]
    summary: Option<PathBuf>,
    /// SHA-256 of the encrypted weights file.
    #[arg(long)]
    ciphertext_sha256: Option<Hash32>,
    /// NEAR to attach for storage growth (the rest is refunded).
    #[arg(long, default_value = "0.01")]
    deposit: Near,
}

#[derive(Args)]
struct CreateCli {
    /// The model id (2-32 of a-z, 0-9, -): its token becomes <model>.<factory>.
    model_id: ModelId,
    /// The manifest, JSON: name, weights_hash, encrypted_weights_uri,
    /// training_data_manifest_hash, training_data_manifest_uri, training_image_measurement,
    /// allowed_enclave_measurements, licence.
    #[arg(long)]
    manifest: PathBuf,
    /// Token name.
    #[arg(long)]
    name: String,
    /// Token symbol.
    #[arg(long)]
    symbol: String,
    #[arg(long, default_value_t = 18)]
    decimals: u8,
    /// Tokens minted to the owner at creation, in smallest units.
    #[arg(long)]
    initial_supply: Option<String>,
    /// The model's owner [default: you].
    #[arg(long)]
    owner: Option<AccountId>,
    /// Account allowed to grant the weight key to attested nodes.
    #[arg(long)]
    key_service: Option<AccountId>,
    /// Crowdfund: NEAR to raise (with --token-price, --crowdfund-duration, --beneficiary).
    #[arg(long, requires_all = ["token_price", "crowdfund_duration", "beneficiary"])]
    goal: Option<Near>,
    /// Crowdfund: NEAR per whole token.
    #[arg(long, requires = "goal")]
    token_price: Option<Near>,
    /// Crowdfund: how long it runs, e.g. 7d.
    #[arg(long, requires = "goal", value_parser = amount::parse_duration)]
    crowdfund_duration: Option<std::time::Duration>,
    /// Crowdfund: who receives the funds (the training operator).
    #[arg(long, requires = "goal")]
    beneficiary: Option<AccountId>,
    /// Crowdfund: release schedule in basis points summing to 10000, e.g. 5000,5000.
    #[arg(long, requires = "goal", value_delimiter = ',')]
    milestones: Vec<u16>,
    /// NEAR to attach [default: the factory's create_deposit for these arguments].
    #[arg(long)]
    deposit: Option<Near>,
}

#[derive(Subcommand)]
enum AttestationCommand {
    /// Verify an attestation bundle; prints a JSON verdict, exits 1 when invalid.
    Verify {
        /// Bundle JSON file (format: contracts/attestation/README.md).
        bundle: PathBuf,
        /// Verification time in unix seconds (default: now).
        #[arg(long)]
        at: Option<u64>,
        /// Policy JSON file (default: only UpToDate TCB, no dev CA, no dev GPU root, compose
        /// hash required). GPUs and switches must answer the bundle's binding nonce
        /// (enclave key, NEAR key, gpu_challenge); public GPU evidence is refused.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Golden measurement sets (JSON, as `gpu-reference` writes them): every GPU of the
        /// bundle must have the VBIOS set of its chip and VBIOS version and the driver set of
        /// its driver version in the file, and each active index must equal one of the set's
        /// values. Without it, measurements are not compared.
        #[arg(long)]
        golden: Option<PathBuf>,
    },
    /// Build a bundle from a dstack node's public_data.json (near/mpc endpoint output).
    BundleFromDstack {
        /// The node's public_data.json.
        public_data: PathBuf,
        /// Write the bundle here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Attach a GPU: hex SPDM report file (needs --gpu-chain and --gpu-nonce).
        #[arg(long, requires_all = ["gpu_chain", "gpu_nonce"])]
        gpu_report: Option<PathBuf>,
        /// The GPU's PEM certificate chain, leaf first.
        #[arg(long, requires = "gpu_report")]
        gpu_chain: Option<PathBuf>,
        /// The nonce the GPU report claims to answer, 64 hex characters.
        #[arg(long, requires = "gpu_report")]
        gpu_nonce: Option<String>,
        /// The registry's challenge the GPU's nonce is bound with, 64 hex characters (the
        /// report must answer SHA-256("enclave-cloud-gpu-v1" || enclave key || NEAR key ||
        /// challenge) to verify).
        #[arg(long, requires = "gpu_report")]
        gpu_challenge: Option<String>,
    },
    /// Golden GPU measurements from NVIDIA's signed RIMs (SWID tags): verifies each RIM's XML
    /// signature, its certificate chain up to NVIDIA's pinned RIM root (validity at --at) and,
    /// by OCSP, that no certificate of the chain below the root is revoked (as NVIDIA's own
    /// verifier asks its responder), then prints the reference sets (index, active, accepted
    /// SHA-384 values) for governance to pin.
    GpuReference {
        /// A VBIOS RIM file (repeat).
        #[arg(long)]
        vbios: Vec<PathBuf>,
        /// A driver RIM file (repeat).
        #[arg(long)]
        driver: Vec<PathBuf>,
        /// Verification time in unix seconds (default: now).
        #[arg(long)]
        at: Option<u64>,
        /// Trust this PEM root certificate instead of NVIDIA's RIM root built into ecloud
        /// (e.g. after NVIDIA rotates it); the sets are only as trustworthy as this root.
        #[arg(long)]
        root: Option<PathBuf>,
        /// Write the reference sets (JSON) here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// `online`: ask the OCSP responder about every certificate of each RIM's chain below
        /// the root (signer and intermediates; SHA-384 CertID, fresh nonce); a revoked or
        /// unknown certificate, or a response that is not signed by its issuer (or a responder
        /// it delegated), not fresh at --at or without the nonce, refuses the RIM. `skip`: no
        /// revocation check, with a warning on stderr (offline use; the sets are then only as
        /// good as certificates that may have been revoked).
        #[arg(long, value_enum, default_value_t = attestation_cmd::Revocation::Online)]
        revocation: attestation_cmd::Revocation,
        /// Ask this OCSP responder instead of the one each certificate names (NVIDIA's:
        /// http://ocsp.ndis.nvidia.com).
        #[arg(long, value_name = "URL")]
        ocsp_url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(4);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            output::print_error(&e, json);
            ExitCode::from(e.exit_code())
        }
    }
}

fn settings(g: &Global) -> Result<Settings, Error> {
    let flags = Overrides {
        rpc_url: g.rpc_url.clone(),
        indexer_url: g.indexer_url.clone(),
        account_id: g.account_id.clone(),
        registry: g.registry.clone(),
        marketplace: g.marketplace.clone(),
        factory: g.factory.clone(),
        credentials_dir: g.credentials_dir.clone(),
        keys_dir: g.keys_dir.clone(),
    };
    Ok(match &g.deployment {
        None => Settings::resolve(g.network.unwrap_or(Network::Testnet), flags),
        Some(path) => {
            let d = Deployment::load(path)?;
            Settings::resolve(g.network.unwrap_or(d.network), d.under(flags))
        }
    })
}

fn done<R: Report>(report: &R, json: bool) -> Result<ExitCode, Error> {
    output::print(report, json);
    Ok(ExitCode::SUCCESS)
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    let json = cli.global.json;
    let s = settings(&cli.global)?;
    // Attestation commands and weight encryption read local files only: the endpoints do not
    // matter to them.
    let local = matches!(
        cli.command,
        Command::Attestation(_)
            | Command::Model(ModelCommand::Encrypt(_) | ModelCommand::Decrypt(_))
    );
    if !local {
        s.check_urls()?;
    }
    let indexer = Indexer::new(&s.indexer_url);
    match cli.command {
        Command::Nodes(n) => {
            let query = NodeQuery {
                model: n.model,
                region: n.region,
                gpu: n.gpu,
                status: (!n.all).then(|| "active".to_owned()),
                max_price: n.max_price.map(Near::yocto),
                sort: Some(if n.sort == "id" { "id" } else { "price" }),
                limit: Some(n.limit),
                cursor: n.cursor,
            };
            done(&nodes::list(&indexer, query).await?, json)
        }
        Command::Job(JobCommand::Submit(a)) => {
            let chain = Chain::new(&s);
            let args = submit_args(*a)?;
            done(&jobs::submit(&chain, &indexer, args).await?, json)
        }
        Command::Job(JobCommand::Status { job_id }) => {
            let chain = Chain::new(&s);
            done(&jobs::status(&chain, &indexer, job_id).await?, json)
        }
        Command::Job(JobCommand::Cancel { job_id }) => {
            let chain = Chain::new(&s);
            done(&cancel::cancel(&chain, job_id).await?, json)
        }
        Command::Job(JobCommand::Result { job_id, output }) => {
            let chain = Chain::new(&s);
            let result = jobs::result(&chain, &indexer, job_id).await?;
            if let Some(path) = output {
                std::fs::write(&path, output::to_json(&result.body) + "\n")
                    .map_err(|source| Error::Write { path, source })?;
            }
            done(&result, json)
        }
        Command::Model(m) => model_command(&s, m, json).await,
        Command::Attestation(a) => attestation_command(a, json).await,
        Command::Channel(c) => channel_command(&s, c, json).await,
        Command::Proxy(p) => proxy_command(&s, indexer, p).await,
    }
}

async fn channel_command(s: &Settings, c: ChannelCommand, json: bool) -> Result<ExitCode, Error> {
    let chain = Chain::new(s);
    match c {
        ChannelCommand::Open {
            node,
            model,
            deposit,
            token,
        } => {
            let asset = token.map_or(Asset::Near, |token| Asset::Ft { token });
            let deposit = channel_cmd::parse_amount(&asset, &deposit, "--deposit")?;
            done(
                &channel_cmd::open(&chain, node, &model, &asset, deposit).await?,
                json,
            )
        }
        ChannelCommand::List => done(&channel_cmd::list(&chain).await?, json),
        ChannelCommand::TopUp { channel_id, amount } => done(
            &channel_cmd::top_up(&chain, channel_id, &amount).await?,
            json,
        ),
        ChannelCommand::Close { channel_id, finish } => {
            done(&channel_cmd::close(&chain, channel_id, finish).await?, json)
        }
        ChannelCommand::FinishClose { channel_id } => {
            done(&channel_cmd::close(&chain, channel_id, true).await?, json)
        }
    }
}

async fn proxy_command(s: &Settings, indexer: Indexer, p: ProxyCli) -> Result<ExitCode, Error> {
    s.signer()?;
    let asset = p.token.map_or(Asset::Near, |token| Asset::Ft { token });
    let deposit = p
        .deposit
        .as_deref()
        .map(|d| channel_cmd::parse_amount(&asset, d, "--deposit"))
        .transpose()?;
    let chain = Chain::new(s);
    let store = channel_cmd::store(&chain);
    let _channels_lock = store.lock()?;
    let opts = proxy::Options {
        default_model: p.model,
        node: p.node,
        region: p.region,
        asset,
        deposit,
    };
    let listener = tokio::net::TcpListener::bind(p.listen)
        .await
        .map_err(|e| Error::BadInput(format!("cannot listen on {}: {e}", p.listen)))?;
    eprintln!(
        "ecloud proxy: OpenAI-compatible endpoint at http://{}/v1 (channel state in {})",
        p.listen,
        store.dir().display()
    );
    let market = proxy::market::ChainMarket { chain, indexer };
    let proxy = std::sync::Arc::new(proxy::Proxy::new(market, store, opts));
    proxy::serve(listener, proxy)
        .await
        .map_err(|e| Error::BadInput(format!("the proxy stopped: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

fn submit_args(a: SubmitCli) -> Result<SubmitArgs, Error> {
    let price_cap = match &a.token {
        Some(_) => amount::parse_units(&a.max_cost),
        None => a.max_cost.parse::<Near>().map(Near::yocto),
    }
    .map_err(|e| Error::BadInput(format!("--max-cost: {e}")))?;
    let spec = if let Some(prompt) = a.prompt {
        InputSpec::Prompt {
            prompt,
            system: a.system,
            max_tokens: a.max_tokens,
            temperature: a.temperature,
        }
    } else if let Some(path) = a.input {
        InputSpec::File(path)
    } else {
        InputSpec::Embed(a.embed)
    };
    Ok(SubmitArgs {
        request: ecloud::input::build(&spec, &a.model)?,
        model: a.model,
        choice: NodeChoice {
            node: a.node,
            region: a.region,
            gpu: a.gpu,
            max_price: a.max_price.map(Near::yocto),
        },
        price_cap,
        token: a.token,
        deadlines: Deadlines {
            deadline: a.deadline,
            claim_window: a.claim_window,
        },
    })
}

async fn model_command(s: &Settings, m: ModelCommand, json: bool) -> Result<ExitCode, Error> {
    let chain = Chain::new(s);
    match m {
        ModelCommand::Create(c) => {
            let manifest =
                serde_json::from_slice(&ecloud::read_file(&c.manifest)?).map_err(|e| {
                    Error::Invalid {
                        path: c.manifest.clone(),
                        message: format!("not a model manifest: {e}"),
                    }
                })?;
            let initial_supply = c
                .initial_supply
                .as_deref()
                .map(amount::parse_units)
                .transpose()
                .map_err(|e| Error::BadInput(format!("--initial-supply: {e}")))?;
            let crowdfund = match (c.goal, c.token_price, c.crowdfund_duration, c.beneficiary) {
                (Some(goal), Some(price), Some(duration), Some(beneficiary)) => {
                    let now = jobs::chain_now_ns(&chain).await;
                    let span = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
                    Some(CrowdfundConfig {
                        goal: U128(goal.yocto()),
                        token_price: U128(price.yocto()),
                        deadline_ns: U64(now.saturating_add(span)),
                        beneficiary,
                        milestones_bps: c.milestones,
                        approver: None,
                    })
                }
                _ => None,
            };
            let args = CreateArgs {
                model_id: c.model_id,
                manifest,
                name: c.name,
                symbol: c.symbol,
                decimals: c.decimals,
                initial_supply,
                owner: c.owner,
                key_service: c.key_service,
                crowdfund,
            };
            done(&models::create(&chain, &args, c.deposit).await?, json)
        }
        ModelCommand::Contribute { model_id, amount } => {
            done(&models::contribute(&chain, &model_id, amount).await?, json)
        }
        ModelCommand::Finalize { model_id } => {
            done(&models::finalize(&chain, &model_id).await?, json)
        }
        ModelCommand::Confirm { model_id } => {
            done(&models::confirm(&chain, &model_id).await?, json)
        }
        ModelCommand::Claim { model_id, token } => {
            let asset = token.map_or(Asset::Near, |token| Asset::Ft { token });
            done(&models::claim(&chain, &model_id, asset).await?, json)
        }
        ModelCommand::Show { model_id } => done(&models::show(&chain, &model_id).await?, json),
        ModelCommand::Encrypt(e) => {
            let key = match (e.key, e.new_key) {
                (Some(path), _) => KeySource::Existing(path),
                (None, Some(path)) => KeySource::New(path),
                (None, None) => return Err(Error::BadInput("--key or --new-key".into())),
            };
            done(
                &model_weights::encrypt(&e.weights, &e.out, &key, e.chunk_size)?,
                json,
            )
        }
        ModelCommand::Decrypt(d) => {
            let expected = protocol::weights::Expected {
                ciphertext_sha256: d.ciphertext_sha256,
                plaintext_sha256: d.plaintext_sha256,
            };
            done(
                &model_weights::decrypt(&d.input, &d.out, &d.key, expected)?,
                json,
            )
        }
        ModelCommand::Keeper(k) => {
            let options = ecloud::model_keeper::KeeperOptions {
                model: k.model_id,
                key_file: k.key_file,
                interval: k.interval,
                once: k.once,
                metrics_listen: k.metrics_listen,
            };
            let indexer = Indexer::new(&s.indexer_url);
            done(
                &ecloud::model_keeper::run(&chain, &indexer, options).await?,
                json,
            )
        }
        ModelCommand::SetWeights(w) => {
            let (ciphertext, plaintext) = match (w.summary, w.ciphertext_sha256) {
                (Some(path), _) => {
                    let s = model_weights::read_summary(&path)?;
                    (s.ciphertext_sha256, Some(s.plaintext_sha256))
                }
                (None, Some(c)) => (c, None),
                (None, None) => {
                    return Err(Error::BadInput("--summary or --ciphertext-sha256".into()));
                }
            };
            let report = model_weights::set_weights(
                &chain,
                &w.model_id,
                &w.uri,
                ciphertext,
                plaintext,
                w.deposit,
            )
            .await?;
            done(&report, json)
        }
    }
}

async fn attestation_command(a: AttestationCommand, json: bool) -> Result<ExitCode, Error> {
    match a {
        AttestationCommand::GpuReference {
            vbios,
            driver,
            at,
            root,
            output,
            revocation,
            ocsp_url,
        } => {
            use attestation::nvidia::ReferenceKind;
            let rims: Vec<attestation_cmd::RimFile> = vbios
                .into_iter()
                .map(|path| (path, ReferenceKind::Vbios))
                .chain(driver.into_iter().map(|path| (path, ReferenceKind::Driver)))
                .map(|(path, kind)| attestation_cmd::RimFile { path, kind })
                .collect();
            if rims.is_empty() {
                return Err(Error::BadInput(
                    "give at least one RIM: --vbios FILE and/or --driver FILE".into(),
                ));
            }
            let revocation = match revocation {
                attestation_cmd::Revocation::Online => {
                    attestation_cmd::RevocationCheck::Online(ecloud::ocsp::Responder {
                        url_override: ocsp_url,
                    })
                }
                attestation_cmd::Revocation::Skip => {
                    if ocsp_url.is_some() {
                        return Err(Error::BadInput(
                            "--ocsp-url is for --revocation online".into(),
                        ));
                    }
                    eprintln!(
                        "warning: --revocation skip: the revocation of the RIMs' signing \
                         certificates was NOT checked; a RIM signed with a revoked key would be \
                         accepted. Check online before governance pins these sets."
                    );
                    attestation_cmd::RevocationCheck::Skip
                }
            };
            let sets = attestation_cmd::gpu_reference(
                &rims,
                root.as_deref(),
                at.unwrap_or_else(now_unix_secs),
                &revocation,
            )
            .await?;
            let text = output::to_json(&sets);
            match output {
                Some(path) => {
                    std::fs::write(&path, text + "\n").map_err(|source| Error::Write {
                        path: path.clone(),
                        source,
                    })?;
                    for s in &sets {
                        eprintln!(
                            "verified {:?} RIM {} {} ({} measurements, {} active)",
                            s.kind,
                            s.product,
                            s.version,
                            s.measurements.len(),
                            s.measurements.iter().filter(|m| m.active).count()
                        );
                    }
                    if json {
                        println!(
                            "{}",
                            output::to_json(&serde_json::json!({ "written": path }))
                        );
                    }
                }
                None => println!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AttestationCommand::Verify {
            bundle,
            at,
            policy,
            golden,
        } => {
            let at = at.unwrap_or_else(now_unix_secs);
            let out =
                attestation_cmd::verify_file(&bundle, policy.as_deref(), golden.as_deref(), at)?;
            println!("{}", output::to_json(&out));
            Ok(if out.is_valid() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        AttestationCommand::BundleFromDstack {
            public_data,
            output,
            gpu_report,
            gpu_chain,
            gpu_nonce,
            gpu_challenge,
        } => {
            let gpu = match (gpu_report, gpu_chain, gpu_nonce) {
                (Some(report_hex), Some(chain_pem), Some(nonce_hex)) => Some(GpuFiles {
                    report_hex,
                    chain_pem,
                    nonce_hex,
                    challenge_hex: gpu_challenge,
                }),
                _ => None,
            };
            let bundle = attestation_cmd::bundle_from_dstack(&public_data, gpu.as_ref())?;
            let text = output::to_json(&bundle);
            match output {
                Some(path) => {
                    std::fs::write(&path, text + "\n").map_err(|source| Error::Write {
                        path: path.clone(),
                        source,
                    })?;
                    // With --json stdout still holds one document: where the bundle went.
                    if json {
                        println!(
                            "{}",
                            output::to_json(&serde_json::json!({ "output": path }))
                        );
                    }
                }
                None => println!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn now_unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
