//! The enclave-cloud contracts on a localnet: registry (dev attestation enabled with a
//! development CA), marketplace wired to it, a treasury and a plain account collecting one
//! model's royalties; plus the indexer following them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use near_primitives::types::{AccountId, Balance};
use serde_json::json;

use super::chain::{Localnet, create_account, deploy_contract};
use super::process::{Process, free_port, wait_for_http};
use super::{TestkitResult, binary, io, wasm_path};
use crate::contracts::{MarketplaceClient, RegistryClient, function_call};
use crate::{Account, ChainClient, ChainError};
use enclave_cloud_common::interfaces::marketplace::ConfigPatch;
use enclave_cloud_common::interfaces::marketplace::methods as market_methods;
use enclave_cloud_common::interfaces::registry::methods as registry_methods;

/// A nearcore public key as near-sdk's (the contracts' argument type).
fn sdk_key(key: &near_crypto::PublicKey) -> Result<near_sdk::PublicKey, ChainError> {
    key.to_string().parse().map_err(|e| ChainError::Args {
        method: "new".to_owned(),
        message: format!("key {key}: {e:?}"),
    })
}

/// The marketplace's inline input/output limit on the test suite (bytes).
pub const MAX_INLINE_BYTES: u32 = 32 * 1024;

/// The development CA of `dev` attestations: its secret signs, the registry knows its public
/// key.
#[derive(Clone)]
pub struct DevCa {
    secret: [u8; 32],
}

impl DevCa {
    pub fn new(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    /// `ed25519:<base58>`, as `registry.new(dev_ca_key)` takes it.
    pub fn public_key(&self) -> near_crypto::PublicKey {
        crate::ed25519_secret_from_seed(&self.secret).public_key()
    }

    /// Writes the secret as 64 hex characters (what `worker --dev-ca-key-file` reads).
    pub fn write_secret(&self, path: &Path) -> TestkitResult<()> {
        let hex: String = self.secret.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(path, hex).map_err(io(format!("dev CA key {}", path.display())))
    }
}

/// What to deploy.
#[derive(Clone)]
pub struct SuiteConfig {
    /// The model whose royalties go to [`Suite::royalty`].
    pub model_id: String,
    pub dev_ca: DevCa,
    /// Registry policy fields to override (merged into the contract's default policy), e.g.
    /// `{"heartbeat_interval_ns": "2000000000"}`.
    pub policy: serde_json::Value,
}

impl Default for SuiteConfig {
    fn default() -> Self {
        Self {
            model_id: "minilm".into(),
            dev_ca: DevCa::new([0x5a; 32]),
            policy: json!({}),
        }
    }
}

/// The deployed contracts and their accounts (all sub-accounts of `test.near`).
pub struct Suite {
    pub registry: Account,
    pub marketplace: Account,
    pub treasury: Account,
    /// Receives the royalty of `config.model_id`.
    pub royalty: Account,
    /// Owner of both contracts (the root account).
    pub owner: Account,
    pub config: SuiteConfig,
}

impl Suite {
    /// Deploys `registry.wasm` and `marketplace.wasm` (see [`wasm_path`]) and wires them.
    pub async fn deploy(
        client: &ChainClient,
        root: &Account,
        config: SuiteConfig,
    ) -> TestkitResult<Self> {
        let funds = Balance::from_near(50);
        let registry = create_account(client, root, "registry", funds).await?;
        let marketplace = create_account(client, root, "market", funds).await?;
        let treasury = create_account(client, root, "treasury", Balance::from_near(1)).await?;
        let royalty = create_account(client, root, "royalty", Balance::from_near(1)).await?;

        let init = function_call(
            registry.account_id(),
            registry_methods::NEW,
            &registry_methods::NewArgs::<serde_json::Value> {
                owner: root.account_id().clone(),
                mainnet: false,
                dev_ca_key: Some(sdk_key(&config.dev_ca.public_key())?),
                policy: None,
            },
            None,
        )?;
        deploy_contract(client, &registry, &wasm_path("registry"), Some(init)).await?;
        let registry_client = RegistryClient::new(client, registry.account_id().clone());
        // Overrides patch the contract's own default policy (read back after init).
        if config.policy.as_object().is_some_and(|o| !o.is_empty()) {
            let mut current =
                serde_json::to_value(registry_client.get_policy().await?).map_err(|e| {
                    ChainError::Args {
                        method: "set_policy".to_owned(),
                        message: e.to_string(),
                    }
                })?;
            merge(&mut current, &config.policy);
            registry_client.set_policy(current)?.send(root).await?;
        }
        let init = function_call(
            marketplace.account_id(),
            market_methods::NEW,
            &market_methods::NewArgs {
                owner: root.account_id().clone(),
                registry: registry.account_id().clone(),
                treasury: treasury.account_id().clone(),
            },
            None,
        )?;
        deploy_contract(client, &marketplace, &wasm_path("marketplace"), Some(init)).await?;
        let market = MarketplaceClient::new(client, marketplace.account_id().clone());
        // A sealed MiniLM embedding (384 floats as JSON) is ~8 KiB, over the default 2 KiB of
        // inline output; governance raises the limit rather than the test storing outputs.
        let patch = ConfigPatch {
            max_inline_bytes: Some(MAX_INLINE_BYTES),
            ..ConfigPatch::default()
        };
        market.update_config(patch)?.send(root).await?;
        registry_client
            .set_marketplace(marketplace.account_id().clone())?
            .send(root)
            .await?;
        let model_id = config.model_id.parse().map_err(|e| ChainError::Args {
            method: "set_royalty_account".to_owned(),
            message: format!("model id {}: {e:?}", config.model_id),
        })?;
        market
            .set_royalty_account(model_id, Some(royalty.account_id().clone()))?
            .send(root)
            .await?;
        Ok(Self {
            registry,
            marketplace,
            treasury,
            royalty,
            owner: root.clone(),
            config,
        })
    }

    /// The model factory (account `models`) with the model-token code published as its
    /// global contract, and the marketplace following it: royalties follow the factory's
    /// models, so the suite model's own royalty account is lifted (its royalties are protocol
    /// fees until the marketplace confirms the model exists).
    pub async fn deploy_factory(&self, client: &ChainClient) -> TestkitResult<Account> {
        let root = &self.owner;
        let factory = create_account(client, root, "models", Balance::from_near(200)).await?;
        let init = crate::FunctionCall::new(factory.account_id().clone(), "new")
            .args_json(&json!({ "owner": root.account_id(), "registry": self.registry_id() }))?;
        deploy_contract(client, &factory, &wasm_path("model_factory"), Some(init)).await?;
        let path = wasm_path("model_token");
        let code = std::fs::read(&path).map_err(io(format!("{}", path.display())))?;
        let publish = crate::FunctionCall::new(factory.account_id().clone(), "publish_model_code")
            .args_raw(code)
            .gas_tgas(300)
            .deposit(Balance::from_near(100));
        let published: bool = client.call(root, publish).await?;
        if !published {
            return Err(super::TestkitError::Setup(
                "the factory refused the model-token code".into(),
            ));
        }
        let market = MarketplaceClient::new(client, self.marketplace_id().clone());
        let model_id = self.config.model_id.parse().map_err(|e| ChainError::Args {
            method: "set_royalty_account".to_owned(),
            message: format!("model id {}: {e:?}", self.config.model_id),
        })?;
        market
            .set_royalty_account(model_id, None)?
            .send(root)
            .await?;
        let patch = ConfigPatch {
            model_factory: Some(factory.account_id().clone()),
            ..ConfigPatch::default()
        };
        market.update_config(patch)?.send(root).await?;
        Ok(factory)
    }

    pub fn registry_id(&self) -> &AccountId {
        self.registry.account_id()
    }

    pub fn marketplace_id(&self) -> &AccountId {
        self.marketplace.account_id()
    }
}

fn merge(base: &mut serde_json::Value, patch: &serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// The indexer following a localnet's neardata stream for a suite (SQLite in its directory).
pub struct IndexerProcess {
    pub url: String,
    pub process: Process,
    args: Vec<String>,
    bin: PathBuf,
    log: PathBuf,
    port: u16,
}

impl IndexerProcess {
    /// `indexer --source neardata --source-url <rpc> --registry --marketplace --start-height 1`.
    pub async fn start(dir: &Path, localnet: &Localnet, suite: &Suite) -> TestkitResult<Self> {
        let bin = binary("indexer", &["ECLOUD_INDEXER_BIN"]);
        let port = free_port()?;
        let data = dir.join("indexer");
        std::fs::create_dir_all(&data).map_err(io("indexer data dir"))?;
        let args = vec![
            "--source".into(),
            "neardata".into(),
            "--source-url".into(),
            localnet.rpc_url.clone(),
            "--registry".into(),
            suite.registry_id().to_string(),
            "--marketplace".into(),
            suite.marketplace_id().to_string(),
            "--start-height".into(),
            "1".into(),
            "--poll-interval-ms".into(),
            "100".into(),
            "--data-dir".into(),
            data.display().to_string(),
        ];
        let mut indexer = Self {
            url: format!("http://127.0.0.1:{port}"),
            process: spawn_indexer(&bin, &args, port, &dir.join("indexer.log"))?,
            args,
            bin,
            log: dir.join("indexer.log"),
            port,
        };
        indexer.wait_ready().await?;
        Ok(indexer)
    }

    async fn wait_ready(&mut self) -> TestkitResult<()> {
        let url = format!("{}/v1/status", self.url);
        wait_for_http(&url, &mut self.process, Duration::from_secs(60)).await
    }

    /// Stops it (SIGTERM, as an operator would).
    pub fn stop(&mut self) {
        self.process.terminate(Duration::from_secs(10));
    }

    /// Starts it again on the same port and database (it resumes from its checkpoint).
    pub async fn restart(&mut self) -> TestkitResult<()> {
        self.process.kill();
        self.process = spawn_indexer(&self.bin, &self.args, self.port, &self.log)?;
        self.wait_ready().await
    }
}

fn spawn_indexer(bin: &Path, args: &[String], port: u16, log: &Path) -> TestkitResult<Process> {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "indexer=info");
    Process::spawn("indexer", cmd, log)
}
