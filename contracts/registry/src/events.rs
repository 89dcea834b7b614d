//! Event helpers. Status is computed from time, so transitions caused by a call (a heartbeat
//! reviving a node, a slash leaving it under-staked, a re-attestation) are announced by
//! comparing the statuses before and after the call.

use enclave_cloud_common::events::{Nep297, RegistryEvent};
use enclave_cloud_common::{NodeId, NodeStatus};
use near_sdk::env;

use crate::state::Registry;
use crate::status::node_status;

/// Current statuses of `nodes` (unknown ids are skipped).
pub fn statuses(state: &Registry, nodes: &[NodeId]) -> Vec<(NodeId, NodeStatus)> {
    let now = env::block_timestamp();
    nodes
        .iter()
        .filter_map(|id| {
            let node = state.nodes.get(id)?;
            let operator = state.operators.get(&node.operator);
            let registering = state.is_registering(*id, node);
            Some((
                *id,
                node_status(node, operator, &state.policy, now, registering),
            ))
        })
        .collect()
}

/// Emits `NodeStatusChanged` for every node whose status differs from `before`.
pub fn emit_status_changes(state: &Registry, before: &[(NodeId, NodeStatus)]) {
    let ids: Vec<NodeId> = before.iter().map(|(id, _)| *id).collect();
    for ((node_id, old), (_, new)) in before.iter().zip(statuses(state, &ids)) {
        if *old != new {
            RegistryEvent::NodeStatusChanged {
                node_id: *node_id,
                status: new,
            }
            .emit();
        }
    }
}
