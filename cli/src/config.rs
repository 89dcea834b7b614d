//! Where the client talks to: the network, its RPC and indexer, the contract accounts, and
//! where the user's keys live. Every setting is a global flag with an environment default
//! (see `ecloud --help`); contract accounts default per network.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use enclave_cloud_common::deployment;
use near_sdk::AccountId;

/// The NEAR network, which picks default endpoints and contract accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Localnet,
    Testnet,
    Mainnet,
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Localnet => "localnet",
            Self::Testnet => "testnet",
            Self::Mainnet => "mainnet",
        }
    }

    /// The public RPC of the network (`localnet run` listens on 127.0.0.1:3030 by default).
    pub fn default_rpc_url(self) -> &'static str {
        match self {
            Self::Localnet => "http://127.0.0.1:3030",
            Self::Testnet => "https://rpc.testnet.near.org",
            Self::Mainnet => "https://rpc.mainnet.near.org",
        }
    }

    /// The deployment's contract accounts (registry, marketplace, model factory): the
    /// sub-accounts `ecloud-deploy` creates under the network's deployer.
    pub fn default_contracts(self) -> [String; 3] {
        let deployer = match self {
            Self::Localnet => deployment::LOCALNET_DEPLOYER,
            Self::Testnet => deployment::TESTNET_DEPLOYER,
            Self::Mainnet => deployment::MAINNET_DEPLOYER,
        };
        [
            deployment::REGISTRY,
            deployment::MARKETPLACE,
            deployment::MODEL_FACTORY,
        ]
        .map(|name| deployment::contract_account("", name, deployer))
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a network: use localnet, testnet or mainnet")]
pub struct BadNetwork(pub String);

impl FromStr for Network {
    type Err = BadNetwork;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "localnet" | "local" | "sandbox" => Ok(Self::Localnet),
            "testnet" => Ok(Self::Testnet),
            "mainnet" => Ok(Self::Mainnet),
            _ => Err(BadNetwork(s.to_owned())),
        }
    }
}

/// Everything a command needs to reach the deployment, resolved from flags and defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub network: Network,
    pub rpc_url: String,
    pub indexer_url: String,
    /// The signer of transactions and the owner of jobs (needed by commands that sign).
    pub account_id: Option<AccountId>,
    pub registry: AccountId,
    pub marketplace: AccountId,
    pub factory: AccountId,
    /// near-cli credentials: `<dir>/<network>/<account>.json`.
    pub credentials_dir: PathBuf,
    /// The user's x25519 keys for job outputs: `<dir>/<network>/<account>.x25519` (0600).
    pub keys_dir: PathBuf,
}

/// Optional overrides, as the flags give them.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub rpc_url: Option<String>,
    pub indexer_url: Option<String>,
    pub account_id: Option<AccountId>,
    pub registry: Option<AccountId>,
    pub marketplace: Option<AccountId>,
    pub factory: Option<AccountId>,
    pub credentials_dir: Option<PathBuf>,
    pub keys_dir: Option<PathBuf>,
}

/// The parts of a deployment record (`deployment.json`, written by `ecloud-deploy`) the client
/// uses: where the contracts are and which RPC the deployment was made through.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Deployment {
    pub network: Network,
    pub rpc_url: String,
    pub registry: AccountId,
    pub marketplace: AccountId,
    pub model_factory: AccountId,
}

impl Deployment {
    pub fn load(path: &std::path::Path) -> Result<Self, crate::Error> {
        serde_json::from_slice(&crate::read_file(path)?).map_err(|e| crate::Error::Invalid {
            path: path.to_owned(),
            message: format!("not a deployment record: {e}"),
        })
    }

    /// Fills what the flags left open (flags win).
    pub fn under(self, o: Overrides) -> Overrides {
        Overrides {
            rpc_url: o.rpc_url.or(Some(self.rpc_url)),
            registry: o.registry.or(Some(self.registry)),
            marketplace: o.marketplace.or(Some(self.marketplace)),
            factory: o.factory.or(Some(self.model_factory)),
            ..o
        }
    }
}

impl<'de> serde::Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `url` must be an absolute http:// or https:// URL with a host; `what` names the setting.
pub fn check_url(what: &str, url: &str) -> Result<(), crate::Error> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(u) => Err(crate::Error::BadInput(format!(
            "{what} {url:?} is not an http:// or https:// URL (scheme '{}')",
            u.scheme()
        ))),
        Err(e) => Err(crate::Error::BadInput(format!(
            "{what} {url:?} is not a URL: {e}"
        ))),
    }
}

/// The indexer's default listen address (`indexer --listen`).
pub const DEFAULT_INDEXER_URL: &str = "http://127.0.0.1:8090";

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

fn known_account(s: String) -> AccountId {
    s.parse()
        .expect("the built-in contract accounts are valid account ids (tested)")
}

impl Settings {
    pub fn resolve(network: Network, o: Overrides) -> Self {
        let [registry, marketplace, factory] = network.default_contracts();
        Self {
            network,
            rpc_url: o
                .rpc_url
                .unwrap_or_else(|| network.default_rpc_url().to_owned()),
            indexer_url: o
                .indexer_url
                .unwrap_or_else(|| DEFAULT_INDEXER_URL.to_owned()),
            account_id: o.account_id,
            registry: o.registry.unwrap_or_else(|| known_account(registry)),
            marketplace: o.marketplace.unwrap_or_else(|| known_account(marketplace)),
            factory: o.factory.unwrap_or_else(|| known_account(factory)),
            credentials_dir: o
                .credentials_dir
                .unwrap_or_else(|| home().join(".near-credentials")),
            keys_dir: o.keys_dir.unwrap_or_else(|| home().join(".ecloud")),
        }
    }

    /// The signing account, or an error naming the flag to set.
    pub fn signer(&self) -> Result<&AccountId, crate::Error> {
        self.account_id.as_ref().ok_or(crate::Error::NoAccount)
    }

    /// Refuses an RPC or indexer URL that is not `http(s)://host...`, before anything is sent.
    pub fn check_urls(&self) -> Result<(), crate::Error> {
        check_url("the RPC URL (--rpc-url)", &self.rpc_url)?;
        check_url("the indexer URL (--indexer-url)", &self.indexer_url)
    }

    /// Directory of this network's user keys.
    pub fn network_keys_dir(&self) -> PathBuf {
        self.keys_dir.join(self.network.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_defaults() {
        for n in [Network::Localnet, Network::Testnet, Network::Mainnet] {
            assert_eq!(n.as_str().parse::<Network>(), Ok(n));
            for account in n.default_contracts() {
                assert!(account.parse::<AccountId>().is_ok(), "{account}");
            }
        }
        assert!("devnet".parse::<Network>().is_err());
        let s = Settings::resolve(Network::Localnet, Overrides::default());
        assert_eq!(s.rpc_url, "http://127.0.0.1:3030");
        assert_eq!(s.marketplace.as_str(), "marketplace.test.near");
        assert!(s.network_keys_dir().ends_with(".ecloud/localnet"));
        let s = Settings::resolve(
            Network::Testnet,
            Overrides {
                rpc_url: Some("http://x:1".into()),
                factory: Some("f.testnet".parse().unwrap()),
                ..Overrides::default()
            },
        );
        assert_eq!(s.rpc_url, "http://x:1");
        assert_eq!(s.factory.as_str(), "f.testnet");
        assert_eq!(s.registry.as_str(), "registry.ecloud.testnet");
        assert!(matches!(s.signer(), Err(crate::Error::NoAccount)));
    }

    #[test]
    fn endpoints_must_be_http_urls() {
        for good in [
            "http://127.0.0.1:3030",
            "https://rpc.testnet.near.org/",
            "http://h",
        ] {
            assert!(check_url("x", good).is_ok(), "{good}");
        }
        for bad in [
            "not a url",
            "ftp://x",
            "127.0.0.1:3030",
            "http://",
            "file:///tmp/x",
            "",
        ] {
            let err = check_url("the RPC URL (--rpc-url)", bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
            let msg = err.to_string();
            assert!(msg.contains("--rpc-url") && !msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn a_deployment_record_fills_what_flags_leave_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deployment.json");
        std::fs::write(
            &path,
            r#"{"network": "localnet", "rpc_url": "http://127.0.0.1:4040", "chain_id": "localnet",
                "protocol_version": 88, "owner": "test.near", "registry": "r.test.near",
                "marketplace": "m.test.near", "model_factory": "f.test.near", "token": null,
                "treasury": "t.test.near", "dev_ca_key": null, "model_code_hash": null,
                "start_height": 3}"#,
        )
        .unwrap();
        let d = Deployment::load(&path).unwrap();
        assert_eq!(d.network, Network::Localnet);
        let o = d.under(Overrides {
            marketplace: Some("mine.test.near".parse().unwrap()),
            ..Overrides::default()
        });
        let s = Settings::resolve(Network::Localnet, o);
        assert_eq!(s.rpc_url, "http://127.0.0.1:4040");
        assert_eq!(s.registry.as_str(), "r.test.near");
        assert_eq!(s.marketplace.as_str(), "mine.test.near");
        assert_eq!(s.factory.as_str(), "f.test.near");
        std::fs::write(&path, "{}").unwrap();
        let err = Deployment::load(&path).unwrap_err().to_string();
        assert!(err.contains("not a deployment record"), "{err}");
    }
}
