//! Process orchestration for tests, benchmarks and the demo (feature `testkit`): a localnet
//! chain, accounts and contract deployments through [`crate::ChainClient`], the enclave-cloud
//! contract suite, and the indexer and worker as child processes.
//!
//! Binaries and wasm files are found the same way everywhere (so the ecloud tests, the worker
//! acceptance tests and the demo share one convention):
//!
//! | what | override | default |
//! |---|---|---|
//! | `localnet` | `NEAR_SANDBOX_BIN_PATH` or `ECLOUD_LOCALNET_BIN` | `$CARGO_TARGET_DIR/debug/localnet` |
//! | `indexer` | `ECLOUD_INDEXER_BIN` | `$CARGO_TARGET_DIR/debug/indexer` |
//! | `worker` | `ECLOUD_WORKER_BIN` | `$CARGO_TARGET_DIR/debug/worker` |
//! | contracts | `ECLOUD_WASM_DIR` | `$CARGO_TARGET_DIR/near/<name>.wasm` |
//!
//! (`$CARGO_TARGET_DIR` defaults to the workspace's `target/`.) Every process logs to a file
//! in its directory; [`Process::log_tail`] shows the end of it when a test fails.

mod chain;
mod process;
mod suite;
mod worker;

pub use chain::{Localnet, create_account, create_account_with_key, deploy_contract};
pub use process::{Process, free_port, wait_for_http};

pub use suite::{DevCa, IndexerProcess, Suite, SuiteConfig};
pub use worker::{TEST_PRICE_PER_MILLION, WorkerNode};

use std::path::PathBuf;

/// The cargo target directory: `$CARGO_TARGET_DIR`, else the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // chain-client/ is one level below the workspace root.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|root| root.join("target"))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// A binary: the first set variable of `env_vars`, else `$CARGO_TARGET_DIR/debug/<name>`.
pub fn binary(name: &str, env_vars: &[&str]) -> PathBuf {
    env_vars
        .iter()
        .find_map(std::env::var_os)
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug").join(name))
}

/// A contract's wasm: `$ECLOUD_WASM_DIR/<name>.wasm`, else `$CARGO_TARGET_DIR/near/<name>.wasm`.
pub fn wasm_path(name: &str) -> PathBuf {
    std::env::var_os("ECLOUD_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("near"))
        .join(format!("{name}.wasm"))
}

/// Test-setup failures: what failed, with the log tail of a process when there is one.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Chain(#[from] crate::ChainError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub type TestkitResult<T> = std::result::Result<T, TestkitError>;

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestkitError {
    let what = what.into();
    move |source| TestkitError::Io { what, source }
}
