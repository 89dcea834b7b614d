use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// A local NEAR chain for development and CI.
#[derive(Parser)]
#[command(name = "localnet", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check that contracts would be accepted by nearcore's VM (size limit, prepare, compile).
    CheckContract {
        /// Paths of .wasm files.
        #[arg(required = true)]
        wasm: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckContract { wasm } => check_contracts(&wasm),
    }
}

fn check_contracts(paths: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for path in paths {
        let verdict = std::fs::read(path)
            .map_err(|e| format!("cannot read: {e}"))
            .and_then(|code| {
                localnet::contract_check::check_deployable(&code).map_err(|e| e.to_string())
            });
        match verdict {
            Ok(d) => println!(
                "deployable  {}  {} bytes (limit {}, protocol {})",
                path.display(),
                d.size,
                d.max_size,
                d.protocol_version
            ),
            Err(e) => {
                failed = true;
                eprintln!("REJECTED    {}  {e}", path.display());
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
