//! `ecloud-deploy`: deploys and initialises the enclave-cloud contracts.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::time::Duration;

use chain_client::args::{format_duration_ns, parse_duration_or_zero};
use clap::Parser;
use ecloud_deploy::plan::{Options, TestToken};
use ecloud_deploy::{Network, Plan, create_accounts, deploy};
use near_workspaces::AccountId;
use near_workspaces::types::NearToken;

/// Deploys the enclave-cloud contracts to localnet, testnet or mainnet, and (off mainnet)
/// creates funded test accounts.
#[derive(Debug, Parser)]
#[command(name = "ecloud-deploy", version)]
struct Cli {
    /// localnet, testnet or mainnet.
    #[arg(
        long,
        global = true,
        env = "ECLOUD_NETWORK",
        default_value = "localnet"
    )]
    network: Network,
    /// JSON-RPC endpoint [default: the network's public RPC, or http://127.0.0.1:3030 for localnet].
    #[arg(long, global = true, env = "ECLOUD_RPC_URL")]
    rpc_url: Option<String>,
    /// The signer: deployer of the contracts (they become its sub-accounts), or funder of
    /// the test accounts.
    #[arg(long, global = true, env = "ECLOUD_DEPLOYER")]
    account_id: Option<AccountId>,
    /// near-cli credentials of the signer
    /// [default: ~/.near-credentials/<network>/<account-id>.json].
    #[arg(long, global = true)]
    credentials: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Deploy the registry, the marketplace and the model factory (which publishes the
    /// model-token code as a NEAR global contract), initialise and wire them, set their
    /// governance delay, delete the deployer's full-access keys from their accounts, and write
    /// a deployment record for the indexer, workers and ecloud.
    Contracts(ContractsArgs),
    /// Create funded accounts `<name>.<account-id>` with fresh keys, saved as near-cli
    /// credentials files. localnet and testnet only.
    Accounts(AccountsArgs),
}

#[derive(Debug, clap::Args)]
struct ContractsArgs {
    /// Directory with the built contracts (scripts/build-contracts.sh).
    #[arg(long, env = "ECLOUD_WASM_DIR", default_value = "target/near")]
    wasm_dir: PathBuf,
    /// Prefix of the sub-account names, e.g. `v2-` gives v2-registry.<account-id>.
    #[arg(long, default_value = "")]
    prefix: String,
    /// Receives the protocol fees [default: the deployer].
    #[arg(long)]
    treasury: Option<AccountId>,
    /// Accept `dev` attestations signed by this CA public key (ed25519:...). Not on mainnet.
    #[arg(long, conflicts_with = "new_dev_ca")]
    dev_ca_key: Option<String>,
    /// Make a new development CA, write its secret key (hex) to this file (mode 0600) and
    /// accept `dev` attestations it signs (`worker attest --provider dev --dev-ca-key-file`).
    /// If the file exists (a retry), its key is used and kept. Not on mainnet.
    #[arg(long, value_name = "FILE")]
    new_dev_ca: Option<PathBuf>,
    /// Registry policy (JSON object, the registry's `Policy`) instead of the contract's
    /// default: allowed TDX platforms, compose hashes, stake, lifetimes.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Deploy a mintable NEP-141 test token with this symbol and accept it for payments.
    /// Not on mainnet.
    #[arg(long, value_name = "SYMBOL")]
    test_token: Option<String>,
    /// The marketplace's largest inline input/output ciphertext in bytes (contract default
    /// 10240, one sealed embedding; at most 11000). Larger outputs go by hash + URI.
    #[arg(long)]
    max_inline_bytes: Option<u32>,
    /// Governance delay set on the registry, marketplace and model factory once they are
    /// wired: the owner's critical changes (code, links, treasury, fees, owner, the delay
    /// itself) apply only this long after they are proposed. E.g. 24h, 90m, 1h30m, 0s; at most
    /// 30 days [default: 24h on mainnet, 0s on testnet and localnet].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_or_zero)]
    governance_delay: Option<Duration>,
    /// Keep the deployer's full-access keys on the registry, marketplace and model factory
    /// accounts (by default they are deleted at the end, so only governance changes the
    /// contracts). For development: refused on mainnet.
    #[arg(long)]
    keep_access_keys: bool,
    /// Where to write the deployment record.
    #[arg(long, default_value = "deployment.json")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct AccountsArgs {
    /// Names of the new sub-accounts.
    #[arg(required = true)]
    names: Vec<String>,
    /// Balance of each, in NEAR.
    #[arg(long, default_value_t = 100)]
    balance: u32,
    /// Where the credentials files go [default: ~/.near-credentials/<network>].
    #[arg(long)]
    credentials_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Deploy(#[from] ecloud_deploy::DeployError),
}

/// The development CA for `--new-dev-ca FILE`: a new one whose ed25519 secret (hex, the
/// worker's format) goes to `path`, or, when `path` already holds one (a retry after a
/// deployment that failed), that one: a CA key is never overwritten. Returns the public key
/// (`ed25519:...`).
fn dev_ca(path: &Path) -> Result<(String, bool), CliError> {
    let bad = |e: String| CliError::Usage(format!("{}: {e}", path.display()));
    if path.exists() {
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let seed: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| bad("not a development CA key (64 hex characters)".into()))?;
        let secret = chain_client::ed25519_secret_from_seed(&seed);
        return Ok((secret.public_key().to_string(), false));
    }
    let secret = near_crypto::SecretKey::from_random(near_crypto::KeyType::ED25519);
    let near_crypto::SecretKey::ED25519(ref key) = secret else {
        return Err(CliError::Usage(
            "the key generator made a non-ed25519 key".into(),
        ));
    };
    // near-crypto keeps seed || public key; the worker's dev provider takes the 32-byte seed.
    let seed_hex = hex::encode(&key.0[..32]);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", path.display())))?;
    file.write_all(seed_hex.as_bytes())
        .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", path.display())))?;
    Ok((secret.public_key().to_string(), true))
}

fn home() -> Result<PathBuf, CliError> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| CliError::Usage("HOME is not set: pass --credentials".into()))
}

/// The signer and its credentials file.
fn signer(cli: &Cli) -> Result<(AccountId, PathBuf), CliError> {
    let account = cli
        .account_id
        .clone()
        .ok_or_else(|| CliError::Usage("--account-id is required (or ECLOUD_DEPLOYER)".into()))?;
    let credentials = match &cli.credentials {
        Some(path) => path.clone(),
        None => home()?
            .join(".near-credentials")
            .join(cli.network.name())
            .join(format!("{account}.json")),
    };
    Ok((account, credentials))
}

fn print_step() -> impl FnMut(&str) {
    let mut step = 0;
    move |line: &str| {
        step += 1;
        println!("[{step}] {line}");
    }
}

/// The deployment options of `contracts`, checked against the network before anything (a
/// dev CA file included) is written or sent.
fn contracts_options(
    cli: &Cli,
    args: &ContractsArgs,
    account_id: &AccountId,
) -> Result<Options, CliError> {
    let registry_policy = match &args.policy {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
            Some(
                serde_json::from_str(&text)
                    .map_err(|e| CliError::Usage(format!("{} is not JSON: {e}", path.display())))?,
            )
        }
        None => None,
    };
    if cli.network.is_production() && args.new_dev_ca.is_some() {
        return Err(CliError::Usage(
            "--new-dev-ca is refused on mainnet: mainnet nodes must attest real TDX hardware"
                .into(),
        ));
    }
    let options = Options {
        prefix: args.prefix.clone(),
        treasury: args.treasury.clone(),
        dev_ca_key: args.dev_ca_key.clone(),
        registry_policy,
        max_inline_bytes: args.max_inline_bytes,
        test_token: args.test_token.clone().map(|symbol| TestToken {
            symbol,
            ..TestToken::default()
        }),
        governance_delay: args.governance_delay,
        keep_access_keys: args.keep_access_keys,
    };
    Plan::new(cli.network, account_id.clone(), options.clone())
        .map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(options)
}

async fn run_contracts(cli: &Cli, args: &ContractsArgs, rpc_url: &str) -> Result<(), CliError> {
    let (account_id, credentials) = signer(cli)?;
    // Checked before a key file is written.
    let mut options = contracts_options(cli, args, &account_id)?;
    if let Some(path) = &args.new_dev_ca {
        let (public, created) = dev_ca(path)?;
        options.dev_ca_key = Some(public);
        if created {
            println!("dev CA secret key written to {}", path.display());
        } else {
            println!("dev CA: the existing key in {}", path.display());
        }
    }
    let plan =
        Plan::new(cli.network, account_id, options).map_err(|e| CliError::Usage(e.to_string()))?;

    let deployment = deploy(
        &plan,
        rpc_url,
        &credentials,
        &args.wasm_dir,
        &mut print_step(),
    )
    .await?;
    deployment
        .save(&args.out)
        .map_err(|e| CliError::Usage(format!("cannot write {}: {e}", args.out.display())))?;

    println!(
        "\ndeployed on {} (chain {}, protocol {}):",
        deployment.network, deployment.chain_id, deployment.protocol_version
    );
    println!("  registry      {}", deployment.registry);
    println!("  marketplace   {}", deployment.marketplace);
    println!("  model factory {}", deployment.model_factory);
    if let Some(token) = &deployment.token {
        println!("  test token    {token}");
    }
    println!(
        "governance delay {} (critical changes apply that long after the owner proposes them)",
        format_duration_ns(deployment.governance_delay_ns)
    );
    if deployment.access_keys_removed {
        println!("full-access keys: none left on the registry, marketplace and model factory");
    } else {
        println!(
            "full-access keys: the deployer's key still controls the registry, marketplace and \
             model factory accounts (--keep-access-keys)"
        );
    }
    println!(
        "record: {} (indexer start height {})",
        args.out.display(),
        deployment.start_height
    );
    println!("\ncheck with near-cli:");
    for command in deployment.near_cli_checks() {
        println!("  {command}");
    }
    Ok(())
}

async fn run_accounts(cli: &Cli, args: &AccountsArgs, rpc_url: &str) -> Result<(), CliError> {
    let (_, credentials) = signer(cli)?;
    let dir = match &args.credentials_dir {
        Some(dir) => dir.clone(),
        None => home()?.join(".near-credentials").join(cli.network.name()),
    };
    let created = create_accounts(
        cli.network,
        rpc_url,
        &credentials,
        &args.names,
        NearToken::from_near(u128::from(args.balance)),
        &dir,
        &mut print_step(),
    )
    .await?;
    for (account, path) in created {
        println!("{account}\t{}", path.display());
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let rpc_url = cli
        .rpc_url
        .clone()
        .unwrap_or_else(|| cli.network.default_rpc_url().to_string());
    match &cli.command {
        Command::Contracts(args) => run_contracts(&cli, args, &rpc_url).await,
        Command::Accounts(args) => run_accounts(&cli, args, &rpc_url).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
    use super::*;

    #[test]
    fn a_dev_ca_file_is_made_once_and_reused_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev-ca.hex");
        let (first, created) = dev_ca(&path).unwrap();
        assert!(created);
        assert!(first.starts_with("ed25519:"), "{first}");
        let secret = std::fs::read_to_string(&path).unwrap();
        let (again, created) = dev_ca(&path).unwrap();
        assert!(!created);
        assert_eq!(again, first, "a retry uses the same CA");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), secret);

        let junk = dir.path().join("junk.hex");
        std::fs::write(&junk, "not hex").unwrap();
        let err = dev_ca(&junk).unwrap_err().to_string();
        assert!(err.contains("not a development CA key"), "{err}");
        assert_eq!(std::fs::read_to_string(&junk).unwrap(), "not hex");
    }

    /// `ecloud-deploy --network NETWORK --account-id ops.near contracts EXTRA...`: its checked
    /// options.
    fn contracts_options_of(network: &str, extra: &[&str]) -> Result<Options, CliError> {
        let mut argv = vec![
            "ecloud-deploy",
            "--network",
            network,
            "--account-id",
            "ops.near",
            "contracts",
        ];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).unwrap();
        let Command::Contracts(args) = &cli.command else {
            panic!("not the contracts command")
        };
        contracts_options(&cli, args, &"ops.near".parse().unwrap())
    }

    #[test]
    fn keep_access_keys_is_refused_on_mainnet_only() {
        let err = contracts_options_of("mainnet", &["--keep-access-keys"]).unwrap_err();
        assert!(matches!(err, CliError::Usage(_)), "{err}");
        assert!(
            err.to_string()
                .contains("--keep-access-keys is refused on mainnet"),
            "{err}"
        );
        let options = contracts_options_of("testnet", &["--keep-access-keys"]).unwrap();
        assert!(options.keep_access_keys);
        // By default the keys go, on every network.
        let options = contracts_options_of("mainnet", &[]).unwrap();
        assert!(!options.keep_access_keys);
        assert_eq!(options.governance_delay, None, "the network's default");
    }

    #[test]
    fn governance_delay_takes_a_duration() {
        let options = contracts_options_of("localnet", &["--governance-delay", "1h"]).unwrap();
        assert_eq!(options.governance_delay, Some(Duration::from_secs(3_600)));
        let options = contracts_options_of("mainnet", &["--governance-delay", "0s"]).unwrap();
        assert_eq!(options.governance_delay, Some(Duration::ZERO));
        let err = Cli::try_parse_from(["ecloud-deploy", "contracts", "--governance-delay", "soon"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a duration"), "{err}");
        let err = contracts_options_of("testnet", &["--governance-delay", "31d"]).unwrap_err();
        assert!(err.to_string().contains("30 days"), "{err}");
    }
}
