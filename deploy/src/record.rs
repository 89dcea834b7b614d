//! The deployment record (`deployment.json`): what the indexer, the worker, `ecloud` and the
//! demo read to find the contracts.

use std::path::Path;

use near_workspaces::AccountId;
use serde::{Deserialize, Serialize};

use enclave_cloud_common::governance::methods::GOVERNANCE;

use crate::network::Network;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub network: String,
    pub rpc_url: String,
    pub chain_id: String,
    pub protocol_version: u32,
    /// Owner of every contract (the deployer).
    pub owner: AccountId,
    pub registry: AccountId,
    pub marketplace: AccountId,
    pub model_factory: AccountId,
    /// The NEP-141 test token (localnet/testnet only).
    pub token: Option<AccountId>,
    pub treasury: AccountId,
    /// Public key of the development CA; `None`: the registry accepts real hardware only.
    pub dev_ca_key: Option<String>,
    /// Global contract hash of the model-token code new models use (base58).
    pub model_code_hash: Option<String>,
    /// The chain head before the deployment began: where an indexer starts.
    pub start_height: u64,
    /// The governance delay of the registry, the marketplace and the factory: a critical change
    /// proposed by the owner applies this long after. 0 in records older than governance.
    #[serde(default)]
    pub governance_delay_ns: u64,
    /// Whether the deployer's full-access keys were deleted from those contract accounts
    /// (false in records older than this field: those kept them).
    #[serde(default)]
    pub access_keys_removed: bool,
}

impl Deployment {
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a deployment record: {e}", path.display()))
    }

    /// near-cli (near-cli-rs) commands that show the deployed contracts answer.
    pub fn near_cli_checks(&self) -> Vec<String> {
        let net = match self.network.parse::<Network>() {
            Ok(Network::Localnet) | Err(_) => "localnet".to_string(),
            Ok(n) => n.name().to_string(),
        };
        let view = |contract: &AccountId, method: &str| {
            format!(
                "near contract call-function as-read-only {contract} {method} json-args '{{}}' network-config {net} now"
            )
        };
        let mut out = vec![
            view(&self.registry, "get_policy"),
            view(&self.marketplace, "get_config"),
            view(&self.marketplace, "funds"),
            view(&self.model_factory, "model_code"),
        ];
        for contract in [&self.registry, &self.marketplace, &self.model_factory] {
            out.push(view(contract, GOVERNANCE));
        }
        if let Some(token) = &self.token {
            out.push(view(token, "ft_metadata"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_file() {
        let d = Deployment {
            network: "localnet".into(),
            rpc_url: "http://127.0.0.1:3030".into(),
            chain_id: "localnet".into(),
            protocol_version: 88,
            owner: "test.near".parse().unwrap(),
            registry: "registry.test.near".parse().unwrap(),
            marketplace: "marketplace.test.near".parse().unwrap(),
            model_factory: "models.test.near".parse().unwrap(),
            token: Some("usdt.test.near".parse().unwrap()),
            treasury: "test.near".parse().unwrap(),
            dev_ca_key: None,
            model_code_hash: Some("abc".into()),
            start_height: 7,
            governance_delay_ns: 3_600_000_000_000,
            access_keys_removed: true,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deployment.json");
        d.save(&path).unwrap();
        assert_eq!(Deployment::load(&path).unwrap(), d);
        let checks = d.near_cli_checks();
        assert_eq!(checks.len(), 8);
        assert!(
            checks[4].contains("registry.test.near governance"),
            "{checks:?}"
        );
        assert!(
            checks[0].starts_with(
                "near contract call-function as-read-only registry.test.near get_policy"
            )
        );
        assert!(
            Deployment::load(&dir.path().join("missing.json"))
                .unwrap_err()
                .contains("cannot read")
        );
    }

    #[test]
    fn a_record_older_than_governance_still_loads() {
        let old = r#"{
            "network": "testnet", "rpc_url": "https://rpc.testnet.near.org",
            "chain_id": "testnet", "protocol_version": 80, "owner": "ops.testnet",
            "registry": "registry.ops.testnet", "marketplace": "marketplace.ops.testnet",
            "model_factory": "models.ops.testnet", "token": null, "treasury": "ops.testnet",
            "dev_ca_key": null, "model_code_hash": null, "start_height": 1
        }"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.json");
        std::fs::write(&path, old).unwrap();
        let d = Deployment::load(&path).unwrap();
        assert_eq!(d.governance_delay_ns, 0);
        assert!(!d.access_keys_removed, "an old deployment kept its keys");
    }
}
