//! A node's status is computed from timestamps whenever it is read, so no cron job has to
//! walk the registry: expiry and missed heartbeats take effect by themselves.

use enclave_cloud_common::NodeStatus;

use crate::policy::Policy;
use crate::state::{Node, Operator};

/// Status of `node` at `now_ns`. `operator` is `None` only for a deregistered node whose
/// operator record was removed.
pub fn node_status(
    node: &Node,
    operator: Option<&Operator>,
    policy: &Policy,
    now_ns: u64,
) -> NodeStatus {
    if node.deregistered {
        return NodeStatus::Deregistered;
    }
    if now_ns >= node.attestation_expires_at_ns {
        return NodeStatus::Expired;
    }
    let heartbeat_fresh =
        now_ns.saturating_sub(node.last_heartbeat_ns) <= policy.heartbeat_timeout_ns();
    let enough_gpus = node.gpus.len() >= policy.gpu.min_gpus as usize;
    let staked = operator.is_some_and(|op| op.is_sufficiently_staked(policy));
    if heartbeat_fresh && enough_gpus && staked {
        NodeStatus::Active
    } else {
        NodeStatus::Inactive
    }
}
