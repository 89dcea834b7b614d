//! Helpers of the near-workspaces conformance suite (`tests/`).
//!
//! The suite runs against whatever `NEAR_SANDBOX_BIN_PATH` names. When it is unset, the helpers
//! build `localnet` (`cargo build -p localnet`) and point near-workspaces at it. The test
//! contract is built the same way (`cargo build -p localnet-probe --target
//! wasm32-unknown-unknown --release`) unless `LOCALNET_PROBE_WASM` names a built wasm.
//! Both land in `$CARGO_TARGET_DIR` (default `<workspace>/target`).

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
