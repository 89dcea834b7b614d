//! Read-only views. Status is computed at the current block time.

use enclave_cloud_common::interfaces::NodeView;
use enclave_cloud_common::{ModelId, NodeId, NodeStatus};
use near_sdk::json_types::U64;
use near_sdk::{AccountId, NearToken, PublicKey, env, near};

use crate::policy::Policy;
use crate::state::{Node, Operator, StateV1};
use crate::status::node_status;

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;
/// Ids examined per page, so a selective filter cannot run a view out of gas: the caller
/// continues from `next_index`.
pub const MAX_SCAN: u64 = 1_000;

/// Which nodes `list_nodes` returns; every given criterion must hold.
#[near(serializers = [json])]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFilter {
    /// Nodes that price this model.
    pub model: Option<ModelId>,
    pub region: Option<String>,
    pub status: Option<NodeStatus>,
    /// Nodes with at least one GPU of this model (e.g. "GH100").
    pub gpu_model: Option<String>,
    pub min_gpus: Option<u32>,
    pub operator: Option<AccountId>,
}

#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq)]
pub struct NodePage {
    pub nodes: Vec<NodeView>,
    /// Where the next page starts; `None` when every node has been examined.
    pub next_index: Option<U64>,
}

#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorView {
    pub account_id: AccountId,
    pub stake: NearToken,
    /// The part of the stake that pays for the operator's storage.
    pub storage_cost: NearToken,
    /// Free stake needed for the live nodes.
    pub required_stake: NearToken,
    pub unbonding: NearToken,
    pub unlocks_at_ns: U64,
    pub withdrawing: bool,
    pub nodes: Vec<NodeId>,
}

#[near(serializers = [json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigView {
    pub owner: AccountId,
    pub marketplace: Option<AccountId>,
    pub mainnet: bool,
    pub dev_mode_available: bool,
    pub next_node_id: NodeId,
    pub version: String,
}

pub fn node_view(state: &StateV1, node_id: NodeId, node: &Node) -> NodeView {
    let operator = state.operators.get(&node.operator);
    NodeView {
        node_id,
        operator: node.operator.clone(),
        status: node_status(node, operator, &state.policy, env::block_timestamp()),
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

pub fn get_node(state: &StateV1, node_id: NodeId) -> Option<NodeView> {
    state
        .nodes
        .get(&node_id)
        .map(|n| node_view(state, node_id, n))
}

pub fn get_node_by_signer_key(state: &StateV1, key: &PublicKey) -> Option<NodeView> {
    state
        .node_by_signer_key
        .get(key)
        .and_then(|id| get_node(state, *id))
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

pub fn list_nodes(
    state: &StateV1,
    filter: NodeFilter,
    from_index: u64,
    limit: Option<u32>,
) -> NodePage {
    let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT) as usize;
    let end = state.next_node_id.0;
    let scan_end = from_index.saturating_add(MAX_SCAN).min(end);
    let mut nodes = Vec::new();
    let mut index = from_index;
    while index < scan_end && nodes.len() < limit {
        let id = NodeId(index);
        index += 1;
        if let Some(node) = state.nodes.get(&id) {
            let view = node_view(state, id, node);
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

pub fn get_operator(state: &StateV1, account: AccountId) -> Option<OperatorView> {
    let op = state.operators.get(&account)?;
    Some(operator_view(&state.policy, account, op))
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

pub fn config(state: &StateV1) -> ConfigView {
    ConfigView {
        owner: state.owner.clone(),
        marketplace: state.marketplace.clone(),
        mainnet: state.mainnet,
        dev_mode_available: state.dev_mode_available,
        next_node_id: state.next_node_id,
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

pub fn policy(state: &StateV1) -> Policy {
    state.policy.clone()
}
