//! Helpers of the near-workspaces conformance suite (`tests/`).
//!
//! The suite runs against whatever `NEAR_SANDBOX_BIN_PATH` names. When it is unset, the helpers
//! build `localnet` (`cargo build -p localnet`) and point near-workspaces at it. The test
//! contract is built the same way (`cargo build -p localnet-probe --target
//! wasm32-unknown-unknown --release`) unless `LOCALNET_PROBE_WASM` names a built wasm.
//! Both land in `$CARGO_TARGET_DIR` (default `<workspace>/target`).

pub mod calls;
pub mod dev_node;
pub mod localnet;
pub mod marketplace;
pub mod model_token;
pub mod registry;

use near_workspaces::network::Sandbox;
use near_workspaces::{Contract, Worker};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn cargo_build(args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(cargo)
        .args(["build", "--quiet"])
        .args(args)
        .current_dir(workspace_root())
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo build {args:?}: {e}"));
    assert!(status.success(), "cargo build {args:?} failed");
}

/// Where `scripts/build-contracts.sh` put the contracts: `ECLOUD_WASM_DIR`, default
/// `$CARGO_TARGET_DIR/near`.
pub fn wasm_dir() -> PathBuf {
    std::env::var_os("ECLOUD_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("near"))
}

/// A built contract, `<wasm_dir()>/<name>.wasm`.
pub fn contract_wasm(name: &str) -> anyhow::Result<Vec<u8>> {
    let path = wasm_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (build the contracts with ./scripts/build-contracts.sh)",
            path.display()
        )
    })
}

/// Which build of our contracts a test deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// What `scripts/build-contracts.sh` built from this checkout ([`contract_wasm`]).
    Current,
    /// A release kept in `contracts/archive/<name>/` (its wasm files, committed), to test
    /// upgrades from it.
    Archived(&'static str),
}

impl Build {
    /// The wasm of contract `name` (e.g. `marketplace`) in this build.
    pub fn wasm(self, name: &str) -> anyhow::Result<Vec<u8>> {
        match self {
            Self::Current => contract_wasm(name),
            Self::Archived(release) => {
                let path = workspace_root()
                    .join("contracts/archive")
                    .join(release)
                    .join(format!("{name}.wasm"));
                std::fs::read(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
            }
        }
    }
}

/// The node binary near-workspaces will start: `NEAR_SANDBOX_BIN_PATH`, or a fresh localnet.
pub fn sandbox_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("NEAR_SANDBOX_BIN_PATH") {
            return PathBuf::from(path);
        }
        cargo_build(&["-p", "localnet", "--bin", "localnet"]);
        let path = target_dir().join("debug").join("localnet");
        // SAFETY: set once, before any sandbox starts, under the OnceLock.
        unsafe { std::env::set_var("NEAR_SANDBOX_BIN_PATH", &path) };
        path
    })
}

/// The probe test contract (see `test-contracts/probe`).
pub fn probe_wasm() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        let path = match std::env::var_os("LOCALNET_PROBE_WASM") {
            Some(path) => PathBuf::from(path),
            None => {
                cargo_build(&[
                    "-p",
                    "localnet-probe",
                    "--target",
                    "wasm32-unknown-unknown",
                    "--release",
                ]);
                target_dir().join("wasm32-unknown-unknown/release/localnet_probe.wasm")
            }
        };
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// A fresh chain started by near-workspaces.
pub async fn sandbox() -> anyhow::Result<Worker<Sandbox>> {
    sandbox_bin();
    Ok(near_workspaces::sandbox().await?)
}

/// A fresh chain with the probe contract on a dev account.
pub async fn with_probe() -> anyhow::Result<(Worker<Sandbox>, Contract)> {
    let worker = sandbox().await?;
    let contract = worker.dev_deploy(probe_wasm()).await?;
    Ok((worker, contract))
}

/// `host:port` of an RPC url such as `http://127.0.0.1:3030/`.
fn host_port(rpc_url: &str) -> &str {
    let rest = rpc_url.split("://").nth(1).unwrap_or(rpc_url);
    rest.split('/').next().unwrap_or(rest)
}

/// POSTs raw bytes to the JSON-RPC endpoint and returns the JSON reply (whatever it is).
pub async fn post_raw(rpc_url: &str, body: &[u8]) -> anyhow::Result<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = host_port(rpc_url);
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await?;
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP body in {:?}", String::from_utf8_lossy(&reply)))?;
    Ok(serde_json::from_slice(&reply[split + 4..])?)
}

/// One JSON-RPC call; returns the whole response object (`result` or `error`).
pub async fn rpc(
    rpc_url: &str,
    method: &str,
    params: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": "t", "method": method, "params": params});
    post_raw(rpc_url, body.to_string().as_bytes()).await
}

/// The near-crypto form of a near-workspaces key.
pub fn crypto_key(key: &near_workspaces::types::SecretKey) -> near_crypto::SecretKey {
    key.to_string()
        .parse()
        .unwrap_or_else(|e| panic!("near-workspaces keys are near-crypto keys: {e}"))
}

/// Signs `actions` from `signer_id` with `key` against the chain's head; `nonce` is taken as is.
pub async fn signed_tx(
    rpc_url: &str,
    signer_id: &near_workspaces::AccountId,
    key: &near_crypto::SecretKey,
    receiver_id: &near_workspaces::AccountId,
    nonce: u64,
    actions: Vec<near_primitives::action::Action>,
) -> anyhow::Result<near_primitives::transaction::SignedTransaction> {
    let block = rpc(rpc_url, "block", serde_json::json!({"finality": "final"})).await?;
    let hash: near_primitives::hash::CryptoHash = block["result"]["header"]["hash"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no block hash in {block}"))?
        .parse()
        .map_err(|e| anyhow::anyhow!("bad block hash: {e:?}"))?;
    let signer =
        near_crypto::InMemorySigner::from_secret_key(signer_id.as_str().parse()?, key.clone());
    Ok(
        near_primitives::transaction::SignedTransaction::from_actions(
            nonce,
            signer_id.as_str().parse()?,
            receiver_id.as_str().parse()?,
            &signer,
            actions,
            hash,
        ),
    )
}

/// `broadcast_tx_commit` of a signed transaction; returns the whole JSON-RPC response.
pub async fn commit(
    rpc_url: &str,
    tx: &near_primitives::transaction::SignedTransaction,
) -> anyhow::Result<serde_json::Value> {
    use base64::Engine;
    let bytes = borsh::to_vec(tx)?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    rpc(rpc_url, "broadcast_tx_commit", serde_json::json!([encoded])).await
}

/// The nonce of an access key, read over RPC.
pub async fn key_nonce(
    rpc_url: &str,
    account_id: &near_workspaces::AccountId,
    public_key: &near_crypto::PublicKey,
) -> anyhow::Result<u64> {
    let reply = rpc(
        rpc_url,
        "query",
        serde_json::json!({
            "request_type": "view_access_key",
            "finality": "final",
            "account_id": account_id,
            "public_key": public_key,
        }),
    )
    .await?;
    reply["result"]["nonce"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no nonce in {reply}"))
}
