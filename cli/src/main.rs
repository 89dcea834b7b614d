//! `ecloud` command line (see `ecloud --help`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ecloud::attestation_cmd::{self, GpuFiles};

#[derive(Parser)]
#[command(name = "ecloud", version, about = "enclave-cloud client")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Node attestations: verify bundles, build them from dstack evidence.
    #[command(subcommand)]
    Attestation(AttestationCommand),
}

#[derive(Subcommand)]
enum AttestationCommand {
    /// Verify an attestation bundle; prints a JSON verdict, exits 1 when invalid.
    Verify {
        /// Bundle JSON file (format: contracts/attestation/README.md).
        bundle: PathBuf,
        /// Verification time in unix seconds (default: now).
        #[arg(long)]
        at: Option<u64>,
        /// Policy JSON file (default: only UpToDate TCB, no dev CA, compose hash required).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Build a bundle from a dstack node's public_data.json (near/mpc endpoint output).
    BundleFromDstack {
        /// The node's public_data.json.
        public_data: PathBuf,
        /// Write the bundle here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Attach a GPU: hex SPDM report file (needs --gpu-chain and --gpu-nonce).
        #[arg(long, requires_all = ["gpu_chain", "gpu_nonce"])]
        gpu_report: Option<PathBuf>,
        /// The GPU's PEM certificate chain, leaf first.
        #[arg(long, requires = "gpu_report")]
        gpu_chain: Option<PathBuf>,
        /// The GPU report's nonce, 64 hex characters.
        #[arg(long, requires = "gpu_report")]
        gpu_nonce: Option<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, ecloud::CliError> {
    match cli.command {
        Command::Attestation(AttestationCommand::Verify { bundle, at, policy }) => {
            let at = at.unwrap_or_else(now_unix_secs);
            let out = attestation_cmd::verify_file(&bundle, policy.as_deref(), at)?;
            println!("{}", to_json(&out));
            Ok(if out.is_valid() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Attestation(AttestationCommand::BundleFromDstack {
            public_data,
            output,
            gpu_report,
            gpu_chain,
            gpu_nonce,
        }) => {
            let gpu = match (gpu_report, gpu_chain, gpu_nonce) {
                (Some(report_hex), Some(chain_pem), Some(nonce_hex)) => Some(GpuFiles {
                    report_hex,
                    chain_pem,
                    nonce_hex,
                }),
                _ => None,
            };
            let bundle = attestation_cmd::bundle_from_dstack(&public_data, gpu.as_ref())?;
            let json = to_json(&bundle);
            match output {
                Some(path) => std::fs::write(&path, json + "\n")
                    .map_err(|source| ecloud::CliError::Write { path, source })?,
                None => println!("{json}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Serializing our own plain data types cannot fail; fall back to an error object anyway.
    serde_json::to_string_pretty(v)
        .unwrap_or_else(|e| format!("{{\"valid\":false,\"error\":{{\"message\":\"{e}\"}}}}"))
}

fn now_unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
