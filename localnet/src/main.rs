use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// A local NEAR chain for development and CI, drop-in for near-sandbox.
#[derive(Parser)]
#[command(name = "localnet", version)]
struct Cli {
    /// Home directory (genesis.json, config.json, keys, data/).
    #[arg(long, global = true, default_value = ".localnet")]
    home: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write genesis.json, config.json, validator_key.json and node_key.json into --home.
    Init {
        /// Short epochs, as `neard init --fast`.
        #[arg(long)]
        fast: bool,
        /// Accepted for neard compatibility (the chain id is always `localnet`).
        #[arg(long)]
        chain_id: Option<String>,
    },
    /// Serve the chain: JSON-RPC and the neardata block stream on --rpc-addr.
    Run {
        #[arg(long)]
        rpc_addr: Option<String>,
        /// Accepted for neard compatibility; localnet has no peer network.
        #[arg(long)]
        network_addr: Option<String>,
    },
    /// Check that contracts would be accepted by nearcore's VM (size limit, prepare, compile).
    CheckContract {
        /// Paths of .wasm files.
        #[arg(required = true)]
        wasm: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckContract { wasm } => check_contracts(&wasm),
        Command::Init { fast, .. } => init(&cli.home, fast),
        Command::Run { rpc_addr, .. } => localnet::serve::run(cli.home, rpc_addr),
    }
}

/// `init`, with the genesis time of `LOCALNET_GENESIS_TIME` when it is set.
fn init(home: &std::path::Path, fast: bool) -> ExitCode {
    use localnet::home::{GENESIS_TIME_ENV, init, init_at, parse_genesis_time};
    let written = match std::env::var(GENESIS_TIME_ENV) {
        Ok(value) => match parse_genesis_time(&value) {
            Ok(ns) => init_at(home, fast, ns),
            Err(e) => {
                eprintln!("localnet init: {GENESIS_TIME_ENV}: {e}");
                return ExitCode::FAILURE;
            }
        },
        Err(_) => init(home, fast),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("localnet init: {e}");
            ExitCode::FAILURE
        }
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
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
