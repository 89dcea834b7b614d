//! Configuration: command line and environment (`ECLOUD_INDEXER_*`) over an optional TOML
//! file (`--config`), over defaults.

use crate::db;
use crate::follower::FollowConfig;
use crate::ingest::Contracts;
use clap::{Parser, ValueEnum};
use near_sdk::AccountId;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where blocks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// neardata-style HTTP (`/v0/block/{h}`, `/v0/last_block/final`): localnet, public
    /// NEAR data services.
    Neardata,
    /// A NEAR JSON-RPC node (`near-jsonrpc-client`); logs only through transaction status,
    /// see `source::JsonRpcSource` for the limitations.
    Jsonrpc,
    /// A directory of `<height>.json` StreamerMessage files.
    Fixtures,
}

/// Command line; every flag can also come from the environment or the config file.
#[derive(Debug, Default, Parser)]
#[command(
    name = "indexer",
    version,
    about = "enclave-cloud indexer: chain -> SQL -> REST API + worker feed"
)]
pub struct Cli {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "ECLOUD_INDEXER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the default SQLite database.
    #[arg(long, env = "ECLOUD_INDEXER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `sqlite://...` or `postgres://...`; default: SQLite in the data directory.
    #[arg(long, env = "ECLOUD_INDEXER_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Address of the HTTP API.
    #[arg(long, env = "ECLOUD_INDEXER_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[arg(long, value_enum, env = "ECLOUD_INDEXER_SOURCE")]
    pub source: Option<SourceKind>,
    /// neardata base URL, JSON-RPC URL, or the fixture directory.
    #[arg(long, env = "ECLOUD_INDEXER_SOURCE_URL")]
    pub source_url: Option<String>,
    /// First height to index on an empty database.
    #[arg(long, env = "ECLOUD_INDEXER_START_HEIGHT")]
    pub start_height: Option<u64>,
    /// Stop after indexing this height (scripts, benchmarks).
    #[arg(long, env = "ECLOUD_INDEXER_STOP_AT")]
    pub stop_at: Option<u64>,
    #[arg(long, env = "ECLOUD_INDEXER_POLL_INTERVAL_MS")]
    pub poll_interval_ms: Option<u64>,
    #[arg(long, env = "ECLOUD_INDEXER_REGISTRY")]
    pub registry: Option<String>,
    #[arg(long, env = "ECLOUD_INDEXER_MARKETPLACE")]
    pub marketplace: Option<String>,
    #[arg(long, env = "ECLOUD_INDEXER_FACTORY")]
    pub factory: Option<String>,
    /// Comma-separated NEP-141 token accounts accepted for payment.
    #[arg(long, env = "ECLOUD_INDEXER_PAYMENT_TOKENS", value_delimiter = ',')]
    pub payment_tokens: Option<Vec<String>>,
    /// Directory of the built explorer pages (`explorer/build.sh` writes `explorer/dist`),
    /// served at `/`; default: the `explorer/dist` of the source tree the indexer was built
    /// from, when it exists.
    #[arg(long, env = "ECLOUD_INDEXER_EXPLORER_DIR")]
    pub explorer_dir: Option<PathBuf>,
    /// NEAR JSON-RPC URL the explorer's wallet sends transactions to (`/v1/network`);
    /// default: the source URL when the source is `jsonrpc`, else none (read-only pages).
    #[arg(long, env = "ECLOUD_INDEXER_RPC_URL")]
    pub rpc_url: Option<String>,
    /// `mainnet`, `testnet` or `localnet`: the network the explorer's wallets sign for.
    #[arg(long, env = "ECLOUD_INDEXER_NETWORK_ID")]
    pub network_id: Option<String>,
}

/// The same settings as a TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub listen: Option<SocketAddr>,
    pub source: Option<SourceKind>,
    pub source_url: Option<String>,
    pub start_height: Option<u64>,
    pub stop_at: Option<u64>,
    pub poll_interval_ms: Option<u64>,
    pub registry: Option<String>,
    pub marketplace: Option<String>,
    pub factory: Option<String>,
    pub payment_tokens: Option<Vec<String>>,
    pub explorer_dir: Option<PathBuf>,
    pub rpc_url: Option<String>,
    pub network_id: Option<String>,
}

/// What the explorer pages are served from and sign against.
#[derive(Debug, Clone, Default)]
pub struct ExplorerConfig {
    /// The built bundle (`index.html`, `explorer.js`, ...); `None`: `/` answers a page that
    /// says how to build it.
    pub dir: Option<PathBuf>,
    pub rpc_url: Option<String>,
    /// `localnet` when not set.
    pub network_id: Option<String>,
}

/// `explorer/dist` of the source tree this binary was built from.
pub fn default_explorer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../explorer/dist")
}

/// Everything the indexer needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub listen: SocketAddr,
    pub source: SourceKind,
    pub source_url: String,
    pub follow: FollowConfig,
    pub contracts: Contracts,
    pub explorer: ExplorerConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("setting '{0}' is required (flag --{flag}, env ECLOUD_INDEXER_{env}, or the config file)", flag = .0.replace('_', "-"), env = .0.to_uppercase())]
    Missing(&'static str),
    #[error("setting '{name}': '{value}' is not a valid NEAR account id")]
    BadAccount { name: &'static str, value: String },
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8090";

impl Config {
    /// Merges the command line/environment over the file over defaults.
    pub fn resolve(cli: Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = cli
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("data"));
        let database_url = cli
            .database_url
            .or(file.database_url)
            .unwrap_or_else(|| db::sqlite_url_in(&data_dir));
        let listen = cli.listen.or(file.listen).unwrap_or_else(|| {
            DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8090)))
        });
        let source = cli.source.or(file.source).unwrap_or(SourceKind::Neardata);
        let source_url = cli
            .source_url
            .or(file.source_url)
            .ok_or(ConfigError::Missing("source_url"))?;
        let registry = account("registry", cli.registry.or(file.registry))?;
        let marketplace = account("marketplace", cli.marketplace.or(file.marketplace))?;
        let factory = cli
            .factory
            .or(file.factory)
            .map(|f| account("factory", Some(f)))
            .transpose()?;
        let payment_tokens = cli
            .payment_tokens
            .or(file.payment_tokens)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !t.trim().is_empty())
            .map(|t| account("payment_tokens", Some(t.trim().to_owned())))
            .collect::<Result<_, _>>()?;
        let mut follow = FollowConfig {
            start_height: cli.start_height.or(file.start_height).unwrap_or(0),
            stop_at: cli.stop_at.or(file.stop_at),
            ..FollowConfig::default()
        };
        if let Some(ms) = cli.poll_interval_ms.or(file.poll_interval_ms) {
            follow.poll_interval = Duration::from_millis(ms);
        }
        let explorer = ExplorerConfig {
            dir: cli
                .explorer_dir
                .or(file.explorer_dir)
                .or_else(|| Some(default_explorer_dir()).filter(|d| d.is_dir())),
            rpc_url: cli
                .rpc_url
                .or(file.rpc_url)
                .or_else(|| (source == SourceKind::Jsonrpc).then(|| source_url.clone())),
            network_id: cli.network_id.or(file.network_id),
        };
        Ok(Self {
            explorer,
            database_url,
            listen,
            source,
            source_url,
            follow,
            contracts: Contracts {
                registry,
                marketplace,
                factory,
                payment_tokens,
            },
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let err = |reason: String| ConfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    toml::from_str(&text).map_err(|e| err(e.to_string()))
}

fn account(name: &'static str, value: Option<String>) -> Result<AccountId, ConfigError> {
    let value = value.ok_or(ConfigError::Missing(name))?;
    value
        .parse()
        .map_err(|_| ConfigError::BadAccount { name, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("indexer.toml");
        std::fs::write(
            &path,
            r#"
source = "fixtures"
source_url = "/blocks"
registry = "registry.test"
marketplace = "file-market.test"
payment_tokens = ["usdc.test"]
start_height = 5
"#,
        )
        .unwrap();
        let cli = Cli {
            config: Some(path),
            marketplace: Some("flag-market.test".into()),
            data_dir: Some(dir.path().to_owned()),
            ..Default::default()
        };
        let c = Config::resolve(cli).unwrap();
        assert_eq!(c.source, SourceKind::Fixtures);
        assert_eq!(c.contracts.marketplace.as_str(), "flag-market.test");
        assert_eq!(c.contracts.registry.as_str(), "registry.test");
        assert_eq!(c.contracts.payment_tokens.len(), 1);
        assert_eq!(c.follow.start_height, 5);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert!(
            c.database_url.starts_with("sqlite://")
                && c.database_url.ends_with("indexer.sqlite?mode=rwc")
        );
    }

    #[test]
    fn missing_and_bad_settings_are_named() {
        let cli = Cli {
            source_url: Some("http://x".into()),
            ..Default::default()
        };
        let e = Config::resolve(cli).unwrap_err().to_string();
        assert!(
            e.contains("'registry' is required") && e.contains("ECLOUD_INDEXER_REGISTRY"),
            "{e}"
        );
        let cli = Cli {
            source_url: Some("http://x".into()),
            registry: Some("Bad Account".into()),
            ..Default::default()
        };
        let e = Config::resolve(cli).unwrap_err().to_string();
        assert!(
            e.contains("'Bad Account' is not a valid NEAR account id"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        std::fs::write(&path, "colour = 1").unwrap();
        let e = Config::resolve(Cli {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("colour"), "{e}");
    }
}
