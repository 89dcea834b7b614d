//! The home dir, as neard lays it out: `init` writes genesis.json, config.json,
//! validator_key.json and node_key.json; `run` reads them back (with whatever near-sandbox
//! patched into them).

use near_chain_configs::{Genesis, GenesisConfig, GenesisRecords};
use near_crypto::{KeyFile, KeyType, SecretKey};
use near_primitives::account::{AccessKey, Account, AccountContract};
use near_primitives::shard_layout::ShardLayout;
use near_primitives::state_record::StateRecord;
use near_primitives::types::{AccountId, AccountInfo, Balance, Gas};
use near_primitives_core::version::PROTOCOL_VERSION;
use std::path::Path;
use std::time::Duration;

/// The validator account; near-workspaces uses it as the root account.
pub const VALIDATOR_ACCOUNT: &str = "test.near";
/// neard's testing balances: 1e9 NEAR on the validator, 5e7 NEAR of it staked.
const INIT_BALANCE: Balance = Balance::from_near(1_000_000_000);
const INIT_STAKE: Balance = Balance::from_near(50_000_000);
pub const DEFAULT_BLOCK_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + '_ {
    move |source| HomeError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn account_id(s: &str) -> AccountId {
    s.parse()
        .unwrap_or_else(|_| unreachable!("{s} is a valid account id"))
}

/// `localnet init` takes the genesis time from this variable when it is set (near-workspaces
/// runs `init` itself, so its tests cannot pass a flag): unix seconds or RFC 3339.
pub const GENESIS_TIME_ENV: &str = "LOCALNET_GENESIS_TIME";

#[derive(Debug, thiserror::Error)]
#[error("genesis time {value:?} is neither unix seconds nor an RFC 3339 time: {reason}")]
pub struct GenesisTimeError {
    value: String,
    reason: String,
}

/// A genesis time as unix nanoseconds, from unix seconds (`1786579200`) or RFC 3339
/// (`2026-08-13T00:00:00Z`, parsed as neard parses genesis.json's `genesis_time`).
pub fn parse_genesis_time(value: &str) -> Result<u64, GenesisTimeError> {
    let error = |reason: String| GenesisTimeError {
        value: value.to_string(),
        reason,
    };
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return secs
            .checked_mul(1_000_000_000)
            .ok_or_else(|| error("too far in the future".into()));
    }
    // genesis.json's own field type and parser, so both forms agree on what is accepted.
    let config = GenesisConfig {
        genesis_time: serde_json::from_value(serde_json::Value::String(value.to_string()))
            .map_err(|e| error(e.to_string()))?,
        ..GenesisConfig::default()
    };
    config
        .genesis_time
        .timestamp_nanos_opt()
        .and_then(|ns| u64::try_from(ns).ok())
        .ok_or_else(|| error("outside 1970..2262".into()))
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Writes a fresh home dir with genesis time now. `fast` shortens epochs, as `neard init
/// --fast` does.
pub fn init(home: &Path, fast: bool) -> Result<(), HomeError> {
    init_at(home, fast, now_ns())
}

/// Writes a fresh home dir whose genesis time is `genesis_time_ns` (unix nanoseconds): the
/// chain's first block has that timestamp and the clock runs in real time from there.
pub fn init_at(home: &Path, fast: bool, genesis_time_ns: u64) -> Result<(), HomeError> {
    std::fs::create_dir_all(home).map_err(io_err(home))?;
    let validator = account_id(VALIDATOR_ACCOUNT);
    let validator_key = SecretKey::from_random(KeyType::ED25519);
    let node_key = SecretKey::from_random(KeyType::ED25519);
    let write_key = |file: &str, account: AccountId, key: &SecretKey| {
        let path = home.join(file);
        KeyFile {
            account_id: account,
            public_key: key.public_key(),
            secret_key: key.clone(),
        }
        .write_to_file(&path)
        .map_err(io_err(&path))
    };
    write_key("validator_key.json", validator.clone(), &validator_key)?;
    write_key("node_key.json", account_id("node"), &node_key)?;

    let records = vec![
        StateRecord::Account {
            account_id: validator.clone(),
            account: Account::new(
                INIT_BALANCE.saturating_sub(INIT_STAKE),
                INIT_STAKE,
                AccountContract::None,
                0,
            ),
        },
        StateRecord::AccessKey {
            account_id: validator.clone(),
            public_key: validator_key.public_key().into(),
            access_key: AccessKey::full_access(),
        },
    ];
    let config = GenesisConfig {
        protocol_version: PROTOCOL_VERSION,
        genesis_time: near_primitives::utils::from_timestamp(genesis_time_ns),
        chain_id: "localnet".to_string(),
        genesis_height: 0,
        num_block_producer_seats: 1,
        epoch_length: if fast { 60 } else { 500 },
        gas_limit: Gas::from_teragas(1000),
        min_gas_price: Balance::from_yoctonear(100_000_000),
        max_gas_price: Balance::from_yoctonear(10_000_000_000_000_000_000_000),
        block_producer_kickout_threshold: 90,
        chunk_producer_kickout_threshold: 90,
        validators: vec![AccountInfo {
            account_id: validator.clone(),
            public_key: validator_key.public_key(),
            amount: INIT_STAKE,
        }],
        transaction_validity_period: 1000,
        total_supply: INIT_BALANCE,
        num_blocks_per_year: 31_536_000,
        protocol_treasury_account: validator,
        shard_layout: ShardLayout::single_shard(),
        ..GenesisConfig::default()
    };
    let genesis = Genesis::new(config, GenesisRecords(records)).map_err(|e| HomeError::Io {
        path: home.join("genesis.json").display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    genesis.to_file(home.join("genesis.json"));

    let config = serde_json::json!({
        "genesis_file": "genesis.json",
        "validator_key_file": "validator_key.json",
        "node_key_file": "node_key.json",
        "rpc": {
            "addr": "0.0.0.0:3030",
            "limits_config": { "json_payload_max_size": 10 * 1024 * 1024 }
        },
        "network": { "addr": "0.0.0.0:24567" },
        "consensus": {
            "min_block_production_delay": {
                "secs": 0,
                "nanos": DEFAULT_BLOCK_INTERVAL.as_nanos() as u64
            }
        },
        "store": { "path": "data" }
    });
    let path = home.join("config.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&config).unwrap_or_default(),
    )
    .map_err(io_err(&path))?;
    Ok(())
}

/// What `run` takes from config.json.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub block_interval: Duration,
    pub json_payload_max_size: usize,
    pub rpc_addr: String,
    /// Epochs of state history kept for queries at earlier blocks (neard's field and default).
    pub gc_num_epochs_to_keep: u64,
}

pub fn read_config(home: &Path) -> Result<NodeConfig, HomeError> {
    let path = home.join("config.json");
    let text = std::fs::read(&path).map_err(io_err(&path))?;
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|source| HomeError::Json {
            path: path.display().to_string(),
            source,
        })?;
    let delay = &value["consensus"]["min_block_production_delay"];
    let block_interval = match (delay["secs"].as_u64(), delay["nanos"].as_u64()) {
        (Some(secs), Some(nanos)) => Duration::new(secs, nanos as u32),
        _ => DEFAULT_BLOCK_INTERVAL,
    };
    Ok(NodeConfig {
        block_interval: block_interval.max(Duration::from_millis(10)),
        json_payload_max_size: value["rpc"]["limits_config"]["json_payload_max_size"]
            .as_u64()
            .map(|n| n as usize)
            .unwrap_or(10 * 1024 * 1024),
        rpc_addr: value["rpc"]["addr"]
            .as_str()
            .unwrap_or("0.0.0.0:3030")
            .to_string(),
        gc_num_epochs_to_keep: value["gc_num_epochs_to_keep"]
            .as_u64()
            .unwrap_or(crate::chain::history::DEFAULT_EPOCHS),
    })
}

pub fn read_key(home: &Path, file: &str) -> Result<KeyFile, HomeError> {
    let path = home.join(file);
    KeyFile::from_file(&path).map_err(io_err(&path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test fixtures")]
    use super::*;

    const AUG_13_2026: u64 = 1_786_579_200_000_000_000;

    #[test]
    fn genesis_time_reads_unix_seconds_and_rfc3339() {
        assert_eq!(parse_genesis_time("1786579200").unwrap(), AUG_13_2026);
        assert_eq!(
            parse_genesis_time("2026-08-13T00:00:00Z").unwrap(),
            AUG_13_2026
        );
        assert_eq!(
            parse_genesis_time("2026-08-13T02:00:00+02:00").unwrap(),
            AUG_13_2026
        );
        let err = parse_genesis_time("yesterday").unwrap_err().to_string();
        assert!(err.contains("yesterday"), "{err}");
    }

    #[test]
    fn init_at_writes_the_genesis_time() {
        let home = std::env::temp_dir().join(format!("localnet-home-at-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        init_at(&home, true, AUG_13_2026).unwrap();
        let genesis: serde_json::Value =
            serde_json::from_slice(&std::fs::read(home.join("genesis.json")).unwrap()).unwrap();
        let _ = std::fs::remove_dir_all(&home);
        assert_eq!(genesis["genesis_time"], "2026-08-13T00:00:00Z");
    }
}
