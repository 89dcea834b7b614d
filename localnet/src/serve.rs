//! `localnet run`: serve the chain in the home dir until stopped. In the library so that the
//! throughput benchmark can time the startup of exactly this code in a binary of its own
//! build profile (it re-executes itself in this mode).

use std::path::PathBuf;
use std::process::ExitCode;

/// Opens the chain in `home` and serves it on `rpc_addr` (default: config.json's) until the
/// process is stopped or interrupted.
pub fn run(home: PathBuf, rpc_addr: Option<String>) -> ExitCode {
    // near-sandbox passes its log filter in NEAR_SANDBOX_LOG; RUST_LOG works too.
    let filter = std::env::var("NEAR_SANDBOX_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "localnet=info".to_string());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let node = match crate::node::Node::open(&home) {
        Ok(node) => node,
        Err(e) => {
            eprintln!("localnet run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = rpc_addr.unwrap_or_else(|| node.config.rpc_addr.clone());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("localnet run: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        tokio::select! {
            served = crate::node::serve(node, &addr) => served,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("localnet run: {e}");
            ExitCode::FAILURE
        }
    }
}
