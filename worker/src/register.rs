//! `worker register`: the operator stakes and adds the node's two keys, then the enclave
//! registers itself.
//!
//! 1. The operator (near-cli credentials) tops its registry stake up to what one more node
//!    needs (`deposit_stake`).
//! 2. The operator adds the attested enclave key as a function-call key limited to the
//!    registry, and the derived marketplace key as one limited to the marketplace, each with
//!    an allowance (a NEAR key has one receiver; see [`crate::chain`]).
//! 3. The operator keeps a storage balance in the marketplace, which pays for the marketplace's
//!    cache entry of the node (taken on the first claim).
//! 4. The enclave signs `register_node({bundle, details})` with its attested key. A node with
//!    GPUs (and NVSwitches) goes through [`crate::devices`]: `begin_attestation`, evidence
//!    bound to its challenge, `register_node` with the first devices, `add_gpu` for the rest.
//!
//! Every step is skipped when already done, so running it again is safe: an interrupted
//! registration is continued from the pending entry on chain. The node's id and contracts go
//! to `<data dir>/node.json` for `worker run`.

use std::path::{Path, PathBuf};

use chain_client::contracts::{MarketplaceClient, RegistryClient};
use chain_client::near_primitives::account::{
    AccessKey, AccessKeyPermission, FunctionCallPermission,
};
use chain_client::near_primitives::action::{Action, AddKeyAction};
use chain_client::{Account, AccountId, ChainClient, ChainError, NearToken};
use enclave_cloud_common::interfaces::registry::{AttestationPurpose, NodeUpdate};
use enclave_cloud_common::{NodeId, NodeStatus};
use serde::{Deserialize, Serialize};

use crate::attest::{AttestationProvider, GpuEvidenceSource, now_unix_secs};
use crate::chain::NodeChain;
use crate::devices::{DeviceAttestation, DeviceError, DevicesOutcome, Limits, Purpose};
use crate::keys::EnclaveKeys;

/// Where `worker register` records the node for `worker run`.
pub const NODE_FILE: &str = "node.json";

/// `<data dir>/node.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: NodeId,
    pub operator: AccountId,
    pub registry: AccountId,
    pub marketplace: AccountId,
}

impl NodeRecord {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(NODE_FILE)
    }

    pub fn load(data_dir: &Path) -> Result<Option<Self>, String> {
        let path = Self::path(data_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    pub fn save(&self, data_dir: &Path) -> Result<(), String> {
        let path = Self::path(data_dir);
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// What `register` did.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    /// `None` only when a registration with devices stopped before `register_node`.
    pub node_id: Option<NodeId>,
    pub created: bool,
    /// Every declared device is verified (always true without devices).
    pub complete: bool,
    /// Devices declared, and the transactions and gas this run spent on them.
    pub gpus: u32,
    pub switches: u32,
    pub device_transactions: u32,
    pub device_gas_tgas: u64,
    pub staked: NearToken,
    /// Added to the operator's storage balance in the marketplace.
    pub storage_deposit: NearToken,
    pub keys_added: Vec<String>,
}

/// The operator's storage balance in the marketplace is topped up to this: a node cache entry
/// takes a few hundred bytes (~0.005 NEAR).
pub const MARKET_STORAGE_BALANCE: NearToken = NearToken::from_millinear(50);

/// Margin over the stake one more node needs: the node record's storage is paid from it.
const STAKE_MARGIN: NearToken = NearToken::from_near(1);

/// How the enclave attests: its keys, the TEE evidence, and its devices if it has any.
pub struct NodeAttestation<'a> {
    pub keys: &'a EnclaveKeys,
    pub provider: &'a dyn AttestationProvider,
    pub devices: Option<&'a dyn GpuEvidenceSource>,
}

/// Runs the steps. `details` is the registry's `NodeUpdate` (endpoint, region, prices,
/// capacity); `progress` gets a line per device transaction.
#[allow(clippy::too_many_arguments)] // the steps' inputs, each used once
pub async fn register(
    client: &ChainClient,
    operator: &Account,
    chain: &NodeChain,
    attestation: NodeAttestation<'_>,
    details: NodeUpdate,
    key_allowance: NearToken,
    limits: Limits,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<Registration, DeviceError> {
    let devices = attestation.devices.map(|source| DeviceAttestation {
        chain,
        keys: attestation.keys,
        provider: attestation.provider,
        source,
    });
    let mut done = Registration {
        node_id: None,
        created: false,
        complete: true,
        gpus: 0,
        switches: 0,
        device_transactions: 0,
        device_gas_tgas: 0,
        staked: NearToken::ZERO,
        storage_deposit: NearToken::ZERO,
        keys_added: Vec::new(),
    };
    if let Some(node) = chain.node_of_this_enclave().await? {
        done.node_id = Some(node.node_id);
        // A registration with devices may have stopped half-way: continue it (or, if its
        // challenge expired, begin again: the registry then drops the half-registered node).
        let resumable = match &devices {
            Some(d) => {
                node.status == NodeStatus::Pending
                    || d.pending().await?.is_some_and(|p| {
                        p.node_id == Some(node.node_id) && p.purpose == AttestationPurpose::Register
                    })
            }
            None => false,
        };
        if let (true, Some(d)) = (resumable, &devices) {
            let outcome = d
                .run(Purpose::Register { details }, limits, progress)
                .await?;
            record_devices(&mut done, &outcome);
        } else {
            tracing::info!(node_id = %node.node_id, "this enclave is already registered");
        }
        done.storage_deposit = top_up_market_storage(client, operator, &chain.marketplace).await?;
        return Ok(done);
    }
    done.staked = top_up_stake(client, operator, &chain.registry).await?;
    for (key, receiver) in [
        (chain.enclave.public_key(), &chain.registry),
        (chain.market.public_key(), &chain.marketplace),
    ] {
        if add_function_call_key(client, operator, key, receiver, key_allowance).await? {
            done.keys_added.push(format!("{key} -> {receiver}"));
        }
    }
    done.storage_deposit = top_up_market_storage(client, operator, &chain.marketplace).await?;
    match &devices {
        Some(d) => {
            let outcome = d
                .run(Purpose::Register { details }, limits, progress)
                .await?;
            done.node_id = outcome.node_id;
            done.created = outcome.node_id.is_some();
            record_devices(&mut done, &outcome);
        }
        None => {
            let bundle = attestation
                .provider
                .attest(&attestation.keys.public(), now_unix_secs())?;
            let bundle =
                serde_json::to_value(&bundle).map_err(|e| DeviceError::Evidence(e.to_string()))?;
            done.node_id = Some(chain.register_node(&bundle, details).await?);
            done.created = true;
        }
    }
    Ok(done)
}

fn record_devices(done: &mut Registration, outcome: &DevicesOutcome) {
    done.node_id = outcome.node_id.or(done.node_id);
    done.complete = outcome.complete;
    done.gpus = outcome.gpus;
    done.switches = outcome.switches;
    done.device_transactions = outcome.transactions;
    done.device_gas_tgas = outcome.gas_burnt.as_teragas();
}

/// Deposits what the operator's free stake lacks for one more node. Returns the deposit.
async fn top_up_stake(
    client: &ChainClient,
    operator: &Account,
    registry: &AccountId,
) -> Result<NearToken, ChainError> {
    let registry = RegistryClient::new(client, registry.clone());
    let policy = registry.get_policy().await?;
    let current = registry.get_operator(operator.account_id()).await?;
    let needed = match &current {
        Some(op) => op
            .required_stake
            .saturating_add(policy.min_stake)
            .saturating_add(STAKE_MARGIN)
            .saturating_sub(op.stake.saturating_sub(op.storage_cost)),
        None => policy.min_stake.saturating_add(STAKE_MARGIN),
    };
    if needed.is_zero() {
        return Ok(NearToken::ZERO);
    }
    let total = registry.deposit_stake(needed)?.send(operator).await?;
    tracing::info!(
        deposit = %chain_client::format_near(needed.as_yoctonear()),
        total = %chain_client::format_near(total.as_yoctonear()),
        "stake deposited"
    );
    Ok(needed)
}

/// Tops the operator's marketplace storage balance up to [`MARKET_STORAGE_BALANCE`].
async fn top_up_market_storage(
    client: &ChainClient,
    operator: &Account,
    marketplace: &AccountId,
) -> Result<NearToken, ChainError> {
    let market = MarketplaceClient::new(client, marketplace.clone());
    let balance = market.storage_balance_of(operator.account_id()).await?;
    let missing = MARKET_STORAGE_BALANCE.saturating_sub(balance);
    if missing.is_zero() {
        return Ok(NearToken::ZERO);
    }
    market
        .storage_deposit(Some(operator.account_id().clone()), missing)?
        .send(operator)
        .await?;
    tracing::info!(
        deposit = %chain_client::format_near(missing.as_yoctonear()),
        "marketplace storage balance topped up"
    );
    Ok(missing)
}

/// Adds `key` as a function-call key of the operator for `receiver` (any method) unless the
/// account has it already. Returns whether it was added.
async fn add_function_call_key(
    client: &ChainClient,
    operator: &Account,
    key: &chain_client::PublicKey,
    receiver: &AccountId,
    allowance: NearToken,
) -> Result<bool, ChainError> {
    match client.view_access_key(operator.account_id(), key).await {
        Ok(_) => return Ok(false),
        Err(ChainError::UnknownAccessKey { .. }) => {}
        Err(e) => return Err(e),
    }
    let action = Action::AddKey(Box::new(AddKeyAction {
        public_key: key.clone(),
        access_key: AccessKey {
            nonce: 0,
            permission: AccessKeyPermission::FunctionCall(FunctionCallPermission {
                allowance: (!allowance.is_zero()).then_some(allowance),
                receiver_id: receiver.to_string(),
                method_names: Vec::new(),
            }),
        },
    }));
    client
        .send_actions(operator, operator.account_id(), vec![action])
        .await?;
    tracing::info!(%key, %receiver, "function-call key added");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_record_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(NodeRecord::load(dir.path()).unwrap(), None);
        let record = NodeRecord {
            node_id: NodeId(3),
            operator: "op.test.near".parse().unwrap(),
            registry: "registry.test.near".parse().unwrap(),
            marketplace: "market.test.near".parse().unwrap(),
        };
        record.save(dir.path()).unwrap();
        assert_eq!(NodeRecord::load(dir.path()).unwrap(), Some(record));
        std::fs::write(NodeRecord::path(dir.path()), "{").unwrap();
        assert!(NodeRecord::load(dir.path()).is_err());
    }
}
