//! The running node: the chain behind a lock, a block producer on a timer, and the HTTP server
//! (JSON-RPC on `/`, `GET /status`, `GET /health`, the neardata block stream under `/v0`).

use crate::chain::Chain;
use crate::home::{self, NodeConfig};
use crate::runtime::Runtime;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use near_crypto::{KeyFile, PublicKey};
use near_primitives::types::{Balance, Gas};
use near_primitives::version::Version;
use near_primitives::views::{StatusResponse, ValidatorInfo};
use near_vm_runner::FilesystemContractRuntimeCache;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Home(#[from] home::HomeError),
    #[error(transparent)]
    Genesis(#[from] crate::chain::GenesisError),
    #[error(transparent)]
    Chain(#[from] crate::chain::ChainError),
    #[error("compiled-contract cache: {0}")]
    Cache(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

pub struct Node {
    chain: Mutex<Chain>,
    /// Height of the last produced block; waiters for transactions watch it.
    pub heads: watch::Sender<u64>,
    pub validator: KeyFile,
    pub node_key: PublicKey,
    pub config: NodeConfig,
    started: Instant,
    pub rpc_addr: Mutex<Option<String>>,
}

impl Node {
    /// Opens the chain in `home` (genesis.json, config.json, keys, data/).
    pub fn open(home: &Path) -> Result<Arc<Node>, NodeError> {
        let config = home::read_config(home)?;
        let validator = home::read_key(home, "validator_key.json")?;
        let node_key = home::read_key(home, "node_key.json")?.public_key;
        let genesis = crate::chain::load_genesis(&home.join("genesis.json"))?;
        // Compiled contracts are keyed by code hash and VM config, so every node on this
        // machine shares one cache: a test suite compiles each contract once.
        let cache_dir = std::env::var_os("LOCALNET_CONTRACT_CACHE")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .map(|h| std::path::PathBuf::from(h).join(".cache/localnet/contracts"))
            })
            .unwrap_or_else(|| home.join("data/contract.cache"));
        let open_cache = |dir: &Path| {
            FilesystemContractRuntimeCache::with_memory_cache(
                home,
                Some("data"),
                dir,
                128,
                None,
                1 << 30,
                near_vm_runner::noop_background_spawner(),
            )
        };
        // An unwritable shared cache falls back to one in the home dir.
        let cache = open_cache(&cache_dir)
            .or_else(|_| open_cache(&home.join("data/contract.cache")))
            .map_err(NodeError::Cache)?;
        let runtime_config = near_parameters::RuntimeConfigStore::new(None)
            .get_config(genesis.config.protocol_version)
            .clone();
        let runtime = Runtime {
            config: runtime_config,
            wasm_config: crate::contract_check::current_vm_config(),
            cache: Box::new(cache),
            chain_id: genesis.config.chain_id.clone(),
        };
        let mut chain = Chain::open(home, runtime, genesis)?;
        chain.set_history_epochs(config.gc_num_epochs_to_keep);
        let (heads, _) = watch::channel(chain.head().height);
        Ok(Arc::new(Node {
            chain: Mutex::new(chain),
            heads,
            validator,
            node_key,
            config,
            started: Instant::now(),
            rpc_addr: Mutex::new(None),
        }))
    }

    /// The chain, locked. A panic while holding the lock leaves the data as last committed.
    pub fn chain(&self) -> MutexGuard<'_, Chain> {
        self.chain
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn gas_limit(&self) -> Gas {
        self.chain().genesis.config.gas_limit
    }

    pub fn validator_stake(&self) -> Balance {
        self.chain()
            .genesis
            .config
            .validators
            .iter()
            .find(|v| v.account_id == self.validator.account_id)
            .map(|v| v.amount)
            .unwrap_or(Balance::ZERO)
    }

    /// Produces one block and tells the waiters.
    pub fn produce_block(&self, skip: u64) -> Result<u64, crate::chain::ChainError> {
        let height = self.chain().produce_block(skip)?.height;
        self.heads.send_replace(height);
        Ok(height)
    }

    /// sandbox_fast_forward: the next block is `delta` heights further (at least one).
    pub fn fast_forward(&self, delta: u64) -> Result<u64, crate::chain::ChainError> {
        self.produce_block(delta.saturating_sub(1))
    }

    pub fn status(&self) -> StatusResponse {
        let chain = self.chain();
        let head = chain.head();
        let time = near_primitives::utils::from_timestamp(head.timestamp_ns);
        let genesis_time = chain.genesis.config.genesis_time;
        StatusResponse {
            version: Version {
                version: env!("CARGO_PKG_VERSION").to_string(),
                build: "localnet".to_string(),
                commit: "localnet".to_string(),
                rustc_version: String::new(),
            },
            chain_id: chain.genesis.config.chain_id.clone(),
            protocol_version: chain.genesis.config.protocol_version,
            latest_protocol_version: near_primitives_core::version::PROTOCOL_VERSION,
            rpc_addr: self.rpc_addr.lock().map(|a| a.clone()).unwrap_or_default(),
            validators: vec![ValidatorInfo {
                account_id: self.validator.account_id.clone(),
            }],
            // The view's time type serializes as RFC 3339, which chrono writes too.
            sync_info: serde_json::from_value(serde_json::json!({
                "latest_block_hash": head.hash,
                "latest_block_height": head.height,
                "latest_state_root": near_primitives::hash::CryptoHash::default(),
                "latest_block_time": time,
                "syncing": false,
                "earliest_block_hash": null,
                "earliest_block_height": chain.genesis.config.genesis_height,
                "earliest_block_time": genesis_time,
                "epoch_id": null,
                "epoch_start_height": null,
            }))
            .unwrap_or_else(|e| unreachable!("a valid StatusSyncInfo: {e}")),
            validator_account_id: Some(self.validator.account_id.clone()),
            validator_public_key: Some(self.validator.public_key.clone()),
            node_public_key: self.node_key.clone(),
            node_key: None,
            uptime_sec: self.started.elapsed().as_secs() as i64,
            genesis_hash: Default::default(),
            detailed_debug_status: None,
        }
    }

    /// `validators` for the epoch of `block`: the one validator, its blocks and chunks
    /// counted from the epoch's start up to that block.
    pub fn validators(&self, block: &crate::chain::StoredBlock) -> serde_json::Value {
        let chain = self.chain();
        let epoch_start = chain.epoch_start_height(block.epoch_height);
        let produced = block.height.saturating_sub(epoch_start).saturating_add(1);
        serde_json::json!({
            "current_validators": [{
                "account_id": self.validator.account_id,
                "public_key": self.validator.public_key,
                "is_slashed": false,
                "stake": self.validator_stake_unlocked(&chain).as_yoctonear().to_string(),
                "shards": [0],
                "num_produced_blocks": produced,
                "num_expected_blocks": produced,
                "num_produced_chunks": produced,
                "num_expected_chunks": produced,
            }],
            "next_validators": [],
            "current_fishermen": [],
            "next_fishermen": [],
            "current_proposals": [],
            "prev_epoch_kickout": [],
            "epoch_start_height": epoch_start,
            "epoch_height": block.epoch_height,
        })
    }

    fn validator_stake_unlocked(&self, chain: &Chain) -> Balance {
        chain
            .genesis
            .config
            .validators
            .iter()
            .find(|v| v.account_id == self.validator.account_id)
            .map(|v| v.amount)
            .unwrap_or(Balance::ZERO)
    }
}

/// Produces blocks every `block_interval` until the process ends.
pub fn spawn_block_producer(node: Arc<Node>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(node.config.block_interval);
            if let Err(e) = node.produce_block(0) {
                tracing::error!(target: "localnet", "block production failed: {e}");
            }
        }
    })
}

/// JSON-RPC on `/`. A body over `json_payload_max_size` is answered with a JSON-RPC parse
/// error, read no further than the limit.
async fn rpc(State(node): State<Arc<Node>>, request: Request) -> impl IntoResponse {
    let limit = node.config.json_payload_max_size;
    match axum::body::to_bytes(request.into_body(), limit).await {
        Ok(body) => Json(crate::rpc::handle_body(node, &body).await),
        Err(e) => Json(crate::rpc::body_error(limit, e)),
    }
}

async fn http_status(State(node): State<Arc<Node>>) -> impl IntoResponse {
    Json(node.status())
}

pub fn router(node: Arc<Node>) -> Router {
    let limit = node.config.json_payload_max_size;
    Router::new()
        .route("/", post(rpc))
        .route("/status", get(http_status))
        .route("/health", get(|| async { "" }))
        .merge(crate::neardata::routes())
        .layer(DefaultBodyLimit::max(limit))
        .layer(cors())
        .with_state(node)
}

/// Any origin may call, as neard's JSON-RPC allows (actix-cors): a wallet on a web page (the
/// explorer, served by the indexer on another port) sends its transactions here.
fn cors() -> tower_http::cors::CorsLayer {
    use axum::http::{Method, header};
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE, header::ACCEPT])
}

/// Serves `node` on `addr` until the process is stopped.
pub async fn serve(node: Arc<Node>, addr: &str) -> Result<(), NodeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| addr.to_string());
    if let Ok(mut slot) = node.rpc_addr.lock() {
        *slot = Some(local.clone());
    }
    tracing::info!(target: "localnet", "serving JSON-RPC on http://{local}");
    spawn_block_producer(node.clone());
    axum::serve(listener, router(node))
        .await
        .map_err(|source| NodeError::Listen {
            addr: addr.to_string(),
            source,
        })
}
