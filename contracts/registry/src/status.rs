//! A node's status is computed from timestamps and the current policy whenever it is read, so
//! no cron job has to walk the registry: expiry, missed heartbeats and governance revocations
//! take effect by themselves.

use enclave_cloud_common::{AttestationKind, NodeStatus, TcbStatus};

use crate::policy::{NANOS_PER_SEC, Policy};
use crate::state::{Node, Operator};

/// Status of `node` at `now_ns`. `operator` is `None` only for a deregistered node whose
/// operator record was removed. `registering`: its registration still waits for devices.
pub fn node_status(
    node: &Node,
    operator: Option<&Operator>,
    policy: &Policy,
    now_ns: u64,
    registering: bool,
) -> NodeStatus {
    if node.deregistered {
        return NodeStatus::Deregistered;
    }
    if registering {
        return NodeStatus::Pending;
    }
    if now_ns >= node.attestation_expires_at_ns || !still_allowed(node, policy, now_ns) {
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

/// Whether the policy in force still accepts what the node attested: governance revoking a
/// platform, compose hash, image digest, TCB grace or dev mode retires nodes at once (they
/// must re-attest with something allowed).
pub fn still_allowed(node: &Node, policy: &Policy, now_ns: u64) -> bool {
    match node.kind {
        AttestationKind::Dev => policy.dev_mode,
        AttestationKind::Tdx => {
            let m = &node.measurements;
            let platform = policy.allows_platform(m);
            let compose = m
                .compose_hash
                .is_some_and(|h| policy.compose_hashes.contains(&h));
            let image = policy.image_digests.is_empty()
                || node
                    .image_digest
                    .is_some_and(|d| policy.image_digests.contains(&d));
            platform && compose && image && tcb_accepted(node.tcb_status, policy, now_ns)
        }
    }
}

/// `UpToDate`, or a status under a grace period that has not ended.
fn tcb_accepted(status: TcbStatus, policy: &Policy, now_ns: u64) -> bool {
    status == TcbStatus::UpToDate
        || policy
            .tcb_grace
            .iter()
            .any(|g| g.status == status && now_ns / NANOS_PER_SEC <= g.until.0)
}
