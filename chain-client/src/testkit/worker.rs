//! A worker node as processes: `worker init`, `worker register` (dev attestation, the
//! operator's near-cli credentials file), `worker run` (embedded MiniLM backend).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use near_primitives::types::Balance;

use super::chain::{Localnet, create_account_with_key};
use super::process::Process;
use super::suite::{IndexerProcess, Suite};
use super::{TestkitError, TestkitResult, binary, io};
use crate::{Account, ChainClient, write_credentials_file};

/// Price of the suite's model on the test node, yoctoNEAR per million tokens (input, output):
/// 100 000 NEAR, so a short embedding (~10 tokens) costs ~1 NEAR, far above the gas of the
/// node's transactions, and payouts are visible in balances.
pub const TEST_PRICE_PER_MILLION: (u128, u128) = (100_000 * ONE_NEAR, 100_000 * ONE_NEAR);

const ONE_NEAR: u128 = 1_000_000_000_000_000_000_000_000;

/// One node: its operator account, data dir and (when running) its `worker run` process.
pub struct WorkerNode {
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub operator: Account,
    pub credentials: PathBuf,
    pub dev_ca_file: PathBuf,
    pub node_id: Option<u64>,
    pub process: Option<Process>,
    bin: PathBuf,
    rpc_url: String,
}

impl WorkerNode {
    /// Creates the operator account (`<name>.test.near`, 1000 NEAR), writes its near-cli
    /// credentials and the dev CA key, and runs `worker init`.
    pub async fn create(
        dir: &Path,
        name: &str,
        localnet: &Localnet,
        client: &ChainClient,
        suite: &Suite,
    ) -> TestkitResult<Self> {
        let bin = binary("worker", &["ECLOUD_WORKER_BIN"]);
        if !bin.exists() {
            return Err(TestkitError::Setup(format!(
                "no worker binary at {}: nice -n 10 cargo build -p worker --bin worker",
                bin.display()
            )));
        }
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).map_err(io("worker dir"))?;
        let (operator, key) =
            create_account_with_key(client, &localnet.root, name, Balance::from_near(1000)).await?;
        let credentials = dir.join("credentials.json");
        write_credentials_file(&credentials, operator.account_id(), &key)?;
        let dev_ca_file = dir.join("dev-ca.key");
        suite.config.dev_ca.write_secret(&dev_ca_file)?;
        let node = Self {
            data_dir: dir.join("data"),
            dir,
            operator,
            credentials,
            dev_ca_file,
            node_id: None,
            process: None,
            bin,
            rpc_url: localnet.rpc_url.clone(),
        };
        node.command_output(&["init"])?;
        Ok(node)
    }

    fn base(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--data-dir").arg(&self.data_dir);
        cmd
    }

    fn command_output(&self, args: &[&str]) -> TestkitResult<String> {
        let out = self
            .base()
            .args(args)
            .output()
            .map_err(io(format!("worker {args:?}")))?;
        if !out.status.success() {
            return Err(TestkitError::Setup(format!(
                "worker {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `worker register --json` with a dev bundle and the test price for `suite.config.model_id`.
    /// Returns the node id.
    pub fn register(&mut self, suite: &Suite) -> TestkitResult<u64> {
        self.register_with(suite, &[])
    }

    /// [`Self::register`] with more `worker register` arguments, e.g. `--price
    /// MODEL:INPUT:OUTPUT` for another model this node offers, or `--endpoint URL`.
    pub fn register_with(&mut self, suite: &Suite, extra_args: &[&str]) -> TestkitResult<u64> {
        let price = format!(
            "{}:{}:{}",
            suite.config.model_id, TEST_PRICE_PER_MILLION.0, TEST_PRICE_PER_MILLION.1
        );
        let args = [
            "register",
            "--rpc-url",
            &self.rpc_url,
            "--operator",
            self.operator.account_id().as_str(),
            "--credentials",
            &self.credentials.display().to_string(),
            "--registry",
            suite.registry_id().as_str(),
            "--marketplace",
            suite.marketplace_id().as_str(),
            "--price",
            &price,
            "--provider",
            "dev",
            "--dev-ca-key-file",
            &self.dev_ca_file.display().to_string(),
            "--json",
        ];
        let out = self.command_output(&[&args[..], extra_args].concat())?;
        let report: serde_json::Value = serde_json::from_str(&out)
            .map_err(|e| TestkitError::Setup(format!("register printed {out:?}: {e}")))?;
        let node_id = report["node_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| TestkitError::Setup(format!("no node_id in {report}")))?;
        self.node_id = Some(node_id);
        Ok(node_id)
    }

    /// Starts `worker run` (embedded backend from `model_dir`, the suite's model mapped to
    /// MiniLM) with `extra` arguments; logs to `<dir>/worker.log`.
    pub fn start(
        &mut self,
        suite: &Suite,
        indexer: Option<&IndexerProcess>,
        model_dir: &Path,
        extra: &[&str],
    ) -> TestkitResult<()> {
        let model_dir = model_dir.display().to_string();
        let model = format!("{}=all-minilm-l6-v2", suite.config.model_id);
        let backend = [
            "--backend",
            "embedded",
            "--model-dir",
            &model_dir,
            "--model",
            &model,
        ];
        self.start_with_backend(indexer, &backend, extra)
    }

    /// Starts `worker run` with the given backend arguments (`--backend ...`, its models and
    /// their `--model ID=BACKEND_MODEL` mappings) and `extra` arguments.
    pub fn start_with_backend(
        &mut self,
        indexer: Option<&IndexerProcess>,
        backend: &[&str],
        extra: &[&str],
    ) -> TestkitResult<()> {
        let mut cmd = self.base();
        cmd.args(["run", "--rpc-url", &self.rpc_url])
            .args(["--provider", "dev", "--dev-ca-key-file"])
            .arg(&self.dev_ca_file)
            .args(backend)
            .args(["--poll-interval-ms", "500", "--retry-delay-ms", "500"])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("ECLOUD_TEST_WORKER_LOG").unwrap_or_else(|_| "worker=info".into()),
            );
        if let Some(indexer) = indexer {
            cmd.args(["--indexer-url", &indexer.url]);
        }
        self.process = Some(Process::spawn("worker", cmd, &self.dir.join("worker.log"))?);
        Ok(())
    }

    /// SIGKILL (a crash: no graceful shutdown).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// SIGTERM and wait (graceful shutdown); returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        self.process
            .take()
            .and_then(|mut p| p.terminate(Duration::from_secs(30)))
    }

    /// The worker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("worker.log")).unwrap_or_default()
    }
}
