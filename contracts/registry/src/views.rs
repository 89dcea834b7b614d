//! Read-only views. Status is computed at the current block time.

use enclave_cloud_common::interfaces::NodeView;
use enclave_cloud_common::interfaces::registry::GoldenReference;
use enclave_cloud_common::{Hash32, NodeId};
use near_sdk::json_types::U64;
use near_sdk::{AccountId, NearToken, PublicKey, env, near};

use crate::RegistryViewApi;
use crate::policy::Policy;
#[allow(unused_imports)] // named by the code #[near] generates
use crate::state::RegistryExt;
use crate::state::{Node, Operator, Registry};
use crate::status::node_status;
pub use enclave_cloud_common::interfaces::registry::{
    ConfigView, NodeFilter, NodePage, OperatorView,
};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;
/// Ids examined per page, so a selective filter cannot run a view out of gas: the caller
/// continues from `next_index`.
pub const MAX_SCAN: u64 = 1_000;

pub fn node_view(state: &Registry, node_id: NodeId, node: &Node) -> NodeView {
    let operator = state.operators.get(&node.operator);
    NodeView {
        node_id,
        operator: node.operator.clone(),
        status: node_status(
            node,
            operator,
            &state.policy,
            env::block_timestamp(),
            state.is_registering(node_id, node),
        ),
        kind: node.kind,
        signer_key: node.signer_key.clone(),
        encryption_key: hex::encode(node.encryption_key),
        tcb_status: node.tcb_status,
        measurements: node.measurements.clone(),
        gpus: node.gpus.clone(),
        endpoint: node.endpoint.clone(),
        region: node.region.clone(),
        prices: node.prices.clone(),
        capacity: node.capacity,
        registered_at_ns: U64(node.registered_at_ns),
        attestation_expires_at_ns: U64(node.attestation_expires_at_ns),
        last_heartbeat_ns: U64(node.last_heartbeat_ns),
    }
}

fn matches(filter: &NodeFilter, view: &NodeView) -> bool {
    filter
        .model
        .as_ref()
        .is_none_or(|m| view.prices.iter().any(|p| p.model_id == *m))
        && filter
            .region
            .as_ref()
            .is_none_or(|r| view.region.as_ref() == Some(r))
        && filter.status.is_none_or(|s| view.status == s)
        && filter
            .gpu_model
            .as_ref()
            .is_none_or(|g| view.gpus.iter().any(|x| x.model == *g))
        && filter
            .min_gpus
            .is_none_or(|n| view.gpus.len() >= n as usize)
        && filter.operator.as_ref().is_none_or(|o| view.operator == *o)
}

fn operator_view(policy: &Policy, account_id: AccountId, op: &Operator) -> OperatorView {
    OperatorView {
        account_id,
        stake: op.stake,
        storage_cost: op.storage_cost(),
        required_stake: Operator::required_stake(policy, op.nodes.len()),
        unbonding: op.unbonding,
        unlocks_at_ns: U64(op.unlocks_at_ns),
        withdrawing: op.withdrawing,
        nodes: op.nodes.clone(),
    }
}

#[near]
impl RegistryViewApi for Registry {
    fn get_node(&self, node_id: NodeId) -> Option<NodeView> {
        self.nodes
            .get(&node_id)
            .map(|n| node_view(self, node_id, n))
    }

    fn get_node_by_signer_key(&self, signer_key: PublicKey) -> Option<NodeView> {
        self.node_by_signer_key
            .get(&signer_key)
            .and_then(|id| self.get_node(*id))
    }

    fn list_nodes(
        &self,
        filter: Option<NodeFilter>,
        from_index: Option<U64>,
        limit: Option<u32>,
    ) -> NodePage {
        let filter = filter.unwrap_or_default();
        let from_index = from_index.map_or(0, |i| i.0);
        let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT) as usize;
        let end = self.next_node_id.0;
        let scan_end = from_index.saturating_add(MAX_SCAN).min(end);
        let mut nodes = Vec::new();
        let mut index = from_index;
        while index < scan_end && nodes.len() < limit {
            let id = NodeId(index);
            index += 1;
            if let Some(node) = self.nodes.get(&id) {
                let view = node_view(self, id, node);
                if matches(&filter, &view) {
                    nodes.push(view);
                }
            }
        }
        NodePage {
            nodes,
            next_index: (index < end).then_some(U64(index)),
        }
    }

    fn get_operator(&self, account_id: AccountId) -> Option<OperatorView> {
        let op = self.operators.get(&account_id)?;
        Some(operator_view(&self.policy, account_id, op))
    }

    fn get_policy(&self) -> Policy {
        self.policy.clone()
    }

    fn golden_sets(&self, product: String) -> Vec<GoldenReference> {
        crate::golden::golden_sets()
            .get(&product)
            .cloned()
            .unwrap_or_default()
    }

    fn get_config(&self) -> ConfigView {
        ConfigView {
            owner: self.owner.clone(),
            marketplace: self.marketplace.clone(),
            mainnet: self.mainnet,
            dev_mode_available: self.dev_mode_available,
            next_node_id: self.next_node_id,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    fn get_node_switches(&self, node_id: NodeId) -> Vec<Hash32> {
        self.node_switches
            .get(&node_id)
            .map(|s| s.iter().map(|s| s.device_id).collect())
            .unwrap_or_default()
    }

    fn is_certificate_cached(&self, hash: Hash32) -> bool {
        self.cert_cache.contains(&hash.0)
    }

    fn is_gpu_revoked(&self, device_id: Hash32) -> bool {
        crate::governance::revoked_gpus().contains(&device_id)
    }

    fn get_credit(&self, account_id: AccountId) -> NearToken {
        self.credits.get(&account_id).copied().unwrap_or_default()
    }

    fn now_ns(&self) -> U64 {
        U64(env::block_timestamp())
    }
}
