//! `indexer`: see the library docs; configuration in `indexer --help`.

use clap::Parser;
use indexer::config::{Cli, Config};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = match Config::resolve(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("indexer: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match indexer::app::run(config, indexer::app::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("indexer failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
