//! A node stopped and started again on the same home dir continues where it was.
//! The node is started here with the near-sandbox command line (`--home DIR init`, `run`).

use near_workspaces::network::ValidatorKey;
use near_workspaces::types::NearToken;
use sandbox_tests::{probe_wasm, sandbox_bin};
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command};

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(home: &Path, port: u16) -> anyhow::Result<Node> {
    let net = free_port()?;
    let child = Command::new(sandbox_bin())
        .args(["--home", &home.display().to_string(), "run"])
        .args(["--rpc-addr", &format!("127.0.0.1:{port}")])
        .args(["--network-addr", &format!("127.0.0.1:{net}")])
        .stderr(std::process::Stdio::null())
        .spawn()?;
    Ok(Node(child))
}

async fn connect(
    home: &Path,
    port: u16,
) -> anyhow::Result<near_workspaces::Worker<near_workspaces::network::Sandbox>> {
    Ok(near_workspaces::sandbox()
        .rpc_addr(&format!("http://127.0.0.1:{port}"))
        .validator_key(ValidatorKey::HomeDir(home.to_path_buf()))
        .await?)
}

#[tokio::test]
async fn state_and_height_survive_a_restart() -> anyhow::Result<()> {
    let home = std::env::temp_dir().join(format!("localnet-persist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let status = Command::new(sandbox_bin())
        .args(["--home", &home.display().to_string(), "init", "--fast"])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()?;
    assert!(status.success());

    let port = free_port()?;
    let node = start(&home, port)?;
    let worker = connect(&home, port).await?;
    let contract = worker
        .root_account()?
        .create_subaccount("keep")
        .initial_balance(NearToken::from_near(10))
        .transact()
        .await?
        .into_result()?
        .deploy(probe_wasm())
        .await?
        .into_result()?;
    contract
        .call("set")
        .args_json(json!({"key": "k", "value": "kept"}))
        .transact()
        .await?
        .into_result()?;
    let height = worker.view_block().await?.height();
    drop(node); // killed, as near-sandbox does

    let port = free_port()?;
    let _node = start(&home, port)?;
    let worker = connect(&home, port).await?;
    let value: Option<String> = worker
        .view(contract.id(), "get")
        .args_json(json!({"key": "k"}))
        .await?
        .json()?;
    assert_eq!(value.as_deref(), Some("kept"));
    assert!(worker.view_block().await?.height() >= height);
    // Transactions keep working (nonces continue from the stored access keys).
    let root = worker.root_account()?;
    root.transfer_near(contract.id(), NearToken::from_near(1))
        .await?
        .into_result()?;
    let _ = std::fs::remove_dir_all(&home);
    Ok(())
}
