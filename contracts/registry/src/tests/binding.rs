//! Issue 16: GPU binding with the registry's challenge, nodes with many GPUs and NVSwitches
//! (the dev fleet of `attestation::dev_gpu`: real P-384 chains and SPDM reports under the dev
//! root, so the same verification runs as for NVIDIA devices), expiry and refunds.

use attestation::dev_gpu::{DevEvidence, DevGpuFleet};
use attestation::{GpuEvidence, gpu_binding_nonce};
use enclave_cloud_common::interfaces::registry::{
    AttestationPurpose, GoldenKind, GoldenReference, PendingAttestationView, RegistrySetting,
};
use enclave_cloud_common::{Hash32, NodeId, NodeStatus};

use super::*;
use crate::GovernanceApi as _;

/// Inside the dev certificates' validity (2025..2049).
const NOW_S: u64 = 1_786_622_400;
const NOW: u64 = NOW_S * SEC;
const HOUR: u64 = 3600 * SEC;
const MINUTE: u64 = 60 * SEC;
/// The fleet seed of the 8-GPU node (a second node built from it presents the same GPUs).
const FLEET: [u8; 32] = [42; 32];

/// The dev registry, with a staked operator.
fn dev_registry() -> Registry {
    let mut r = registry();
    stake(&mut r, op(), near(100));
    r
}

fn as_enclave(seed: u8, at: u64) {
    Call::by(op()).key(key(seed).1).at(at).set();
}

fn begin(
    r: &mut Registry,
    seed: u8,
    gpus: u32,
    switches: u32,
    node: Option<NodeId>,
    at: u64,
) -> Result<PendingAttestationView, RegistryError> {
    as_enclave(seed, at);
    r.try_begin_attestation(gpus, switches, node)
}

/// The fleet's evidence bound to enclave `seed` (enclave key [seed; 32]) and `challenge`.
fn evidence(fleet: &DevGpuFleet, seed: u8, challenge: Hash32) -> DevEvidence {
    let nonce = gpu_binding_nonce(&[seed; 32], &ed25519_bytes(&key(seed).1), &challenge.0);
    fleet.evidence(&nonce)
}

fn json(devices: &[GpuEvidence]) -> String {
    serde_json::to_string(devices).expect("evidence serializes")
}

/// The dev bundle of enclave `seed` carrying `challenge` and these devices.
fn bundle(
    seed: u8,
    challenge: Option<Hash32>,
    gpus: &[GpuEvidence],
    switches: &[GpuEvidence],
) -> String {
    let text = dev_bundle_with(&dev_ca(), [seed; 32], &key(seed).1, NOW_S + 365 * 24 * 3600);
    let mut b: serde_json::Value = serde_json::from_str(&text).expect("json");
    if let Some(c) = challenge {
        b["gpu_challenge"] = c.to_string().into();
    }
    b["gpus"] = serde_json::to_value(gpus).expect("gpus");
    b["switches"] = serde_json::to_value(switches).expect("switches");
    b.to_string()
}

fn register(
    r: &mut Registry,
    seed: u8,
    challenge: Option<Hash32>,
    gpus: &[GpuEvidence],
    switches: &[GpuEvidence],
    at: u64,
) -> Result<NodeId, RegistryError> {
    as_enclave(seed, at);
    r.register_node_json(bundle(seed, challenge, gpus, switches), None)
}

fn add(
    r: &mut Registry,
    seed: u8,
    id: NodeId,
    gpus: &[GpuEvidence],
    switches: &[GpuEvidence],
    at: u64,
) -> Result<AttestationProgress, RegistryError> {
    as_enclave(seed, at);
    r.add_gpu_json(id, json(gpus), json(switches))
}

fn storage_bytes(r: &Registry) -> u64 {
    r.operators.get(&op()).expect("operator").storage_bytes
}

/// Registers enclave `seed` with the fleet's 8 GPUs + 4 switches in three calls, checking
/// the storage invariant around each. Returns the node and the challenge it answered.
fn register_8_plus_4(r: &mut Registry, seed: u8) -> (NodeId, Hash32) {
    let fleet = DevGpuFleet::new(FLEET, 8, 4);
    let pending =
        paid_at(r, seed, "begin", |r| r.try_begin_attestation(8, 4, None)).expect("begins");
    let ev = evidence(&fleet, seed, pending.challenge);
    as_enclave(seed, NOW);
    let id = paid(r, "register_node", |r| {
        r.register_node_json(
            bundle(seed, Some(pending.challenge), &ev.gpus[..3], &[]),
            None,
        )
    })
    .expect("registers");
    assert_eq!(status(r, id), NodeStatus::Pending);
    as_enclave(seed, NOW);
    let progress = paid(r, "add_gpu", |r| {
        r.add_gpu_json(id, json(&ev.gpus[3..6]), "[]".into())
    })
    .expect("adds 3");
    assert!(!progress.complete);
    assert_eq!((progress.gpus_verified, progress.switches_verified), (6, 0));
    assert_eq!(
        status(r, id),
        NodeStatus::Pending,
        "no jobs before every device"
    );
    as_enclave(seed, NOW);
    let progress = paid(r, "add_gpu, last", |r| {
        r.add_gpu_json(id, json(&ev.gpus[6..]), json(&ev.switches))
    })
    .expect("adds the rest");
    assert!(progress.complete);
    (id, pending.challenge)
}

fn paid_at<T>(r: &mut Registry, seed: u8, what: &str, call: impl FnOnce(&mut Registry) -> T) -> T {
    as_enclave(seed, NOW);
    paid(r, what, call)
}

#[test]
fn a_dev_node_registers_8_gpus_and_4_switches_over_several_calls() {
    let mut r = dev_registry();
    let (id, _) = register_8_plus_4(&mut r, 1);
    let view = node(&r, id);
    assert_eq!(view.status, NodeStatus::Active);
    assert_eq!(view.gpus.len(), 8);
    assert!(view.gpus.iter().all(|g| g.model == "GH100"));
    assert_eq!(r.get_node_switches(id).len(), 4);
    assert!(
        r.get_pending_attestation(key(1).1).is_none(),
        "entry removed"
    );
    for d in view
        .gpus
        .iter()
        .map(|g| g.device_id)
        .chain(r.get_node_switches(id))
    {
        assert_eq!(r.gpu_owner.get(&d), Some(&id));
    }
    let evs = events();
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, RegistryEvent::GpuAdded { .. }))
            .count(),
        8
    );
    assert!(evs.contains(&RegistryEvent::NodeStatusChanged {
        node_id: id,
        status: NodeStatus::Active
    }));
}

#[test]
fn the_pending_entry_is_paid_from_the_stake_and_refunded_on_completion() {
    let mut r = dev_registry();
    let before = storage_bytes(&r);
    let pending = begin(&mut r, 1, 1, 0, None, NOW).expect("begins");
    let during = storage_bytes(&r);
    assert!(during > before, "the entry is charged");
    let fleet = DevGpuFleet::new(FLEET, 1, 0);
    let ev = evidence(&fleet, 1, pending.challenge);
    let id = register(&mut r, 1, Some(pending.challenge), &ev.gpus, &[], NOW).expect("registers");
    assert_eq!(status(&r, id), NodeStatus::Active, "complete in one call");
    // What remains charged is the node with its GPU, not the entry.
    let with_node = storage_bytes(&r);
    let mut plain = dev_registry();
    let pending = begin(&mut plain, 1, 1, 0, None, NOW).expect("begins");
    let ev = evidence(&fleet, 1, pending.challenge);
    register(&mut plain, 1, Some(pending.challenge), &ev.gpus, &[], NOW).expect("registers");
    assert_eq!(storage_bytes(&plain), with_node, "deterministic");
    assert!(r.get_pending_attestation(key(1).1).is_none());
}

#[test]
fn begin_refusals() {
    let mut r = dev_registry();
    // More than the policy's GPUs, or too many switches.
    let max = r.get_policy().gpu.max_gpus;
    let err = begin(&mut r, 1, max + 1, 0, None, NOW).expect_err("too many GPUs");
    assert!(
        matches!(err, RegistryError::InvalidInput { field: "gpus", .. }),
        "{err}"
    );
    let err = begin(&mut r, 1, 1, 9, None, NOW).expect_err("too many switches");
    assert!(
        matches!(
            err,
            RegistryError::InvalidInput {
                field: "switches",
                ..
            }
        ),
        "{err}"
    );
    // No stake: no operator.
    Call::by(acc("other.near")).key(key(3).1).at(NOW).set();
    assert!(matches!(
        r.try_begin_attestation(1, 0, None),
        Err(RegistryError::UnknownOperator(_))
    ));
    // One live entry per key.
    let first = begin(&mut r, 1, 1, 0, None, NOW).expect("begins");
    let err = begin(&mut r, 1, 1, 0, None, NOW + 1).expect_err("in progress");
    assert!(
        matches!(err, RegistryError::AttestationInProgress { .. }),
        "{err}"
    );
    // A key that already has a node begins a registration: refused.
    let ev = evidence(&DevGpuFleet::new(FLEET, 1, 0), 1, first.challenge);
    let id = register(&mut r, 1, Some(first.challenge), &ev.gpus, &[], NOW).expect("registers");
    let err = begin(&mut r, 1, 1, 0, None, NOW).expect_err("key in use");
    assert!(matches!(err, RegistryError::SignerKeyInUse(..)), "{err}");
    // Another key begins a re-attestation of this node: refused.
    let err = begin(&mut r, 2, 1, 0, Some(id), NOW).expect_err("not the node's key");
    assert!(matches!(err, RegistryError::NotNodeKey { .. }), "{err}");
    // Challenges differ per key and per block.
    let other = begin(&mut r, 2, 1, 0, None, NOW).expect("another key begins");
    assert_ne!(other.challenge, first.challenge);
}

#[test]
fn register_refusals_change_nothing() {
    let mut r = dev_registry();
    let fleet = DevGpuFleet::new(FLEET, 2, 0);
    // Devices (or a challenge) without a pending registration.
    let stray = evidence(&fleet, 1, Hash32([1; 32]));
    let before = snapshot(&r);
    let err = register(&mut r, 1, None, &stray.gpus, &[], NOW).expect_err("no pending");
    assert!(
        matches!(err, RegistryError::NoPendingAttestation(_)),
        "{err}"
    );
    let err = register(&mut r, 1, Some(Hash32([1; 32])), &[], &[], NOW).expect_err("no pending");
    assert!(
        matches!(err, RegistryError::NoPendingAttestation(_)),
        "{err}"
    );
    assert_eq!(snapshot(&r), before);

    let pending = begin(&mut r, 1, 2, 0, None, NOW).expect("begins");
    let ev = evidence(&fleet, 1, pending.challenge);
    let before = snapshot(&r);
    // Another challenge, or none.
    let err = register(&mut r, 1, Some(Hash32([1; 32])), &ev.gpus, &[], NOW)
        .expect_err("wrong challenge");
    assert!(matches!(err, RegistryError::WrongChallenge { .. }), "{err}");
    let err = register(&mut r, 1, None, &[], &[], NOW).expect_err("no challenge");
    assert!(matches!(err, RegistryError::WrongChallenge { .. }), "{err}");
    // Evidence bound to another challenge (or another enclave) under the right one.
    let err =
        register(&mut r, 1, Some(pending.challenge), &stray.gpus, &[], NOW).expect_err("not bound");
    assert!(
        err.to_string()
            .contains("GPU nonce not bound to this enclave"),
        "{err}"
    );
    let foreign = evidence(&fleet, 2, pending.challenge);
    let err = register(&mut r, 1, Some(pending.challenge), &foreign.gpus, &[], NOW)
        .expect_err("bound to another enclave");
    assert!(
        err.to_string()
            .contains("GPU nonce not bound to this enclave"),
        "{err}"
    );
    // More than declared.
    let three = evidence(&DevGpuFleet::new(FLEET, 3, 0), 1, pending.challenge);
    let err =
        register(&mut r, 1, Some(pending.challenge), &three.gpus, &[], NOW).expect_err("too many");
    assert!(matches!(err, RegistryError::TooManyDevices { .. }), "{err}");
    // The same GPU twice.
    let twice = [ev.gpus[0].clone(), ev.gpus[0].clone()];
    let err = register(&mut r, 1, Some(pending.challenge), &twice, &[], NOW).expect_err("twice");
    assert!(matches!(err, RegistryError::DuplicateGpu(_)), "{err}");
    // Expired.
    let expiry = pending.expires_at_ns.0;
    let err =
        register(&mut r, 1, Some(pending.challenge), &ev.gpus, &[], expiry).expect_err("expired");
    assert!(
        matches!(err, RegistryError::ChallengeExpired { .. }),
        "{err}"
    );
    assert_eq!(snapshot(&r), before);
    // The right one still registers.
    register(&mut r, 1, Some(pending.challenge), &ev.gpus, &[], NOW).expect("registers");
}

#[test]
fn add_gpu_refusals() {
    let mut r = dev_registry();
    let fleet = DevGpuFleet::new(FLEET, 3, 0);
    let pending = begin(&mut r, 1, 3, 0, None, NOW).expect("begins");
    let ev = evidence(&fleet, 1, pending.challenge);
    let id =
        register(&mut r, 1, Some(pending.challenge), &ev.gpus[..1], &[], NOW).expect("registers");
    let before = snapshot(&r);
    // Only the enclave key.
    Call::by(op()).at(NOW).set();
    assert!(matches!(
        r.add_gpu_json(id, json(&ev.gpus[1..]), "[]".into()),
        Err(RegistryError::NotNodeKey { .. })
    ));
    // Nothing to add; more than declared; a device already verified.
    let err = add(&mut r, 1, id, &[], &[], NOW).expect_err("empty");
    assert!(matches!(err, RegistryError::InvalidInput { .. }), "{err}");
    let four = evidence(&DevGpuFleet::new(FLEET, 4, 0), 1, pending.challenge);
    let err = add(&mut r, 1, id, &four.gpus[1..], &[], NOW).expect_err("too many");
    assert!(matches!(err, RegistryError::TooManyDevices { .. }), "{err}");
    let err = add(&mut r, 1, id, &ev.gpus[..1], &[], NOW).expect_err("again");
    assert!(matches!(err, RegistryError::DuplicateGpu(_)), "{err}");
    // Evidence of another challenge.
    let old = evidence(&fleet, 1, Hash32([9; 32]));
    let err = add(&mut r, 1, id, &old.gpus[1..], &[], NOW).expect_err("not bound");
    assert!(
        err.to_string()
            .contains("GPU nonce not bound to this enclave"),
        "{err}"
    );
    // A flipped byte in a report.
    let mut flipped = ev.gpus[1].clone();
    let last = flipped.report.len() - 1;
    flipped.report[last] ^= 1;
    let err = add(&mut r, 1, id, &[flipped], &[], NOW).expect_err("tampered");
    assert!(matches!(err, RegistryError::Gpu(_)), "{err}");
    // A switch presented as a GPU, a GPU as a switch.
    let with_switch = evidence(&DevGpuFleet::new(FLEET, 1, 1), 1, pending.challenge);
    let err = add(&mut r, 1, id, &with_switch.switches, &[], NOW).expect_err("switch as GPU");
    assert!(matches!(err, RegistryError::Gpu(_)), "{err}");
    // Expired.
    let err = add(&mut r, 1, id, &ev.gpus[1..], &[], pending.expires_at_ns.0).expect_err("expired");
    assert!(
        matches!(err, RegistryError::ChallengeExpired { .. }),
        "{err}"
    );
    assert_eq!(snapshot(&r), before);
    // No attestation in progress at all (after completion).
    add(&mut r, 1, id, &ev.gpus[1..], &[], NOW).expect("completes");
    let err = add(&mut r, 1, id, &ev.gpus[1..], &[], NOW).expect_err("nothing pending");
    assert!(
        matches!(err, RegistryError::NoPendingAttestation(_)),
        "{err}"
    );
}

#[test]
fn gpu_model_policy_and_switches_are_never_gpus() {
    let mut r = dev_registry();
    let mut policy = r.get_policy();
    policy.gpu.allowed_models = vec!["GB100".into()];
    Call::by(owner()).yocto().at(NOW).set();
    r.try_set_policy(policy.clone()).expect("owner");
    let pending = begin(&mut r, 1, 1, 0, None, NOW).expect("begins");
    let ev = evidence(&DevGpuFleet::new(FLEET, 1, 0), 1, pending.challenge);
    let err = register(&mut r, 1, Some(pending.challenge), &ev.gpus, &[], NOW).expect_err("model");
    assert!(matches!(err, RegistryError::GpuModelNotAllowed(_)), "{err}");
    // An empty allowlist admits none (never "any"); the default is Hopper and Blackwell.
    policy.gpu.allowed_models = Vec::new();
    Call::by(owner()).yocto().at(NOW).set();
    r.try_set_policy(policy).expect("owner");
    let err = register(&mut r, 1, Some(pending.challenge), &ev.gpus, &[], NOW).expect_err("none");
    assert!(matches!(err, RegistryError::GpuModelNotAllowed(_)), "{err}");
    assert_eq!(
        Policy::default().gpu.allowed_models,
        vec!["GH100".to_owned(), "GB100".to_owned()]
    );
}

#[test]
fn a_switch_missing_fails_the_topology_check() {
    let mut r = dev_registry();
    // Declares 2 GPUs and 1 switch, but the GPUs link to 2 switches.
    let pending = begin(&mut r, 1, 2, 1, None, NOW).expect("begins");
    let ev = evidence(&DevGpuFleet::new(FLEET, 2, 2), 1, pending.challenge);
    let id = register(&mut r, 1, Some(pending.challenge), &ev.gpus, &[], NOW).expect("registers");
    let before = snapshot(&r);
    let err = add(&mut r, 1, id, &[], &ev.switches[..1], NOW).expect_err("topology");
    assert!(matches!(err, RegistryError::Topology(_)), "{err}");
    assert_eq!(snapshot(&r), before);
    assert_eq!(status(&r, id), NodeStatus::Pending);
}

#[test]
fn a_device_is_never_in_two_nodes_even_pending() {
    let mut r = dev_registry();
    let fleet = DevGpuFleet::new(FLEET, 2, 0);
    // Node 1 is still registering, with GPU 0 verified.
    let p1 = begin(&mut r, 1, 2, 0, None, NOW).expect("begins");
    let ev1 = evidence(&fleet, 1, p1.challenge);
    let n1 = register(&mut r, 1, Some(p1.challenge), &ev1.gpus[..1], &[], NOW).expect("registers");
    // Node 2 presents that GPU (the same device, bound to its own enclave).
    let p2 = begin(&mut r, 2, 1, 0, None, NOW).expect("begins");
    let ev2 = evidence(&fleet, 2, p2.challenge);
    let err =
        register(&mut r, 2, Some(p2.challenge), &ev2.gpus[..1], &[], NOW).expect_err("GPU in use");
    assert_eq!(
        err,
        RegistryError::GpuInUse {
            device_id: node_device(&ev1.gpus[0]).to_string(),
            node: n1
        }
    );
    // Once node 1 is complete, still refused.
    add(&mut r, 1, n1, &ev1.gpus[1..], &[], NOW).expect("completes");
    let err =
        register(&mut r, 2, Some(p2.challenge), &ev2.gpus[1..], &[], NOW).expect_err("GPU in use");
    assert!(matches!(err, RegistryError::GpuInUse { .. }), "{err}");
    // After node 1 deregisters, node 2 may take it.
    Call::by(op()).yocto().at(NOW).set();
    r.try_deregister(n1).expect("deregisters");
    register(&mut r, 2, Some(p2.challenge), &ev2.gpus[..1], &[], NOW).expect("free again");
}

/// A device's id: the hash of its leaf certificate.
fn node_device(ev: &GpuEvidence) -> Hash32 {
    let roots = attestation::GpuRoots {
        dev_root_sha256: Some(attestation::DEV_GPU_ROOT_SHA256),
    };
    Hash32(
        attestation::nvidia::leaf_identity(&ev.certificate_chain, &roots)
            .expect("dev chain")
            .leaf_hash,
    )
}

#[test]
fn an_expired_registration_is_pruned_and_refunded() {
    let mut r = dev_registry();
    let before = storage_bytes(&r);
    // Begun only: the next begin of the key removes it.
    let first = begin(&mut r, 1, 2, 0, None, NOW).expect("begins");
    assert!(storage_bytes(&r) > before);
    let later = first.expires_at_ns.0;
    assert_eq!(later, NOW + HOUR, "default lifetime one hour");
    let second = begin(&mut r, 1, 2, 0, None, later).expect("the expired entry is replaced");
    assert_ne!(second.challenge, first.challenge);

    // Half registered: its node is pending, one GPU reserved.
    let fleet = DevGpuFleet::new(FLEET, 2, 0);
    let ev = evidence(&fleet, 1, second.challenge);
    let id =
        register(&mut r, 1, Some(second.challenge), &ev.gpus[..1], &[], later).expect("registers");
    let device = node_device(&ev.gpus[0]);
    assert_eq!(r.gpu_owner.get(&device), Some(&id));
    let charged = storage_bytes(&r);

    // Not yet expired: prune skips it. Anyone may prune.
    let expiry = second.expires_at_ns.0;
    Call::by(acc("anyone.near")).at(expiry - 1).set();
    assert_eq!(r.try_prune_pending(vec![key(1).1]).expect("prunes"), 0);
    Call::by(acc("anyone.near")).at(expiry).set();
    let removed = paid(&mut r, "prune", |r| {
        r.try_prune_pending(vec![key(1).1, key(7).1])
    })
    .expect("prunes");
    assert_eq!(removed, 1);
    assert!(
        storage_bytes(&r) < charged,
        "the entry and the reservation are refunded"
    );
    assert!(r.get_pending_attestation(key(1).1).is_none());
    assert_eq!(
        status(&r, id),
        NodeStatus::Deregistered,
        "never became active"
    );
    assert_eq!(r.gpu_owner.get(&device), None, "the GPU is free");
    assert!(r.get_node_by_signer_key(key(1).1).is_none());
    // At most 20 per call.
    Call::by(acc("anyone.near")).at(expiry).set();
    assert!(r.try_prune_pending(vec![key(1).1; 21]).is_err());
    // The key can register again.
    let again = begin(&mut r, 1, 1, 0, None, expiry).expect("begins again");
    let ev = evidence(&DevGpuFleet::new(FLEET, 1, 0), 1, again.challenge);
    register(&mut r, 1, Some(again.challenge), &ev.gpus, &[], expiry).expect("registers");
}

#[test]
fn a_begun_only_entry_is_refunded_to_the_byte() {
    let mut r = dev_registry();
    let before = storage_bytes(&r);
    let p = begin(&mut r, 1, 2, 0, None, NOW).expect("begins");
    Call::by(acc("anyone.near")).at(p.expires_at_ns.0).set();
    assert_eq!(r.try_prune_pending(vec![key(1).1]).expect("prunes"), 1);
    assert_eq!(storage_bytes(&r), before);
}

#[test]
fn reattestation_needs_fresh_evidence_and_applies_when_complete() {
    let mut r = dev_registry();
    let (id, old_challenge) = register_8_plus_4(&mut r, 1);
    let fleet = DevGpuFleet::new(FLEET, 8, 4);
    let old = evidence(&fleet, 1, old_challenge);
    let expires = node(&r, id).attestation_expires_at_ns;

    // A node with devices cannot re-attest without a challenge.
    let err = {
        as_enclave(1, NOW + MINUTE);
        r.reattest_json(id, bundle(1, None, &[], &[]))
    }
    .expect_err("needs a challenge");
    assert!(
        matches!(err, RegistryError::NoPendingAttestation(_)),
        "{err}"
    );
    let p = begin(&mut r, 1, 8, 4, Some(id), NOW + MINUTE).expect("begins");
    assert_eq!(p.purpose, AttestationPurpose::Reattest { node_id: id });
    // add_gpu before the bundle.
    let fresh = evidence(&fleet, 1, p.challenge);
    let err = add(&mut r, 1, id, &fresh.gpus[..1], &[], NOW + MINUTE).expect_err("bundle first");
    assert!(matches!(err, RegistryError::BundleNotVerified), "{err}");
    // The old evidence (the registration's challenge) is refused.
    as_enclave(1, NOW + MINUTE);
    let err = r
        .reattest_json(id, bundle(1, Some(p.challenge), &old.gpus[..4], &[]))
        .expect_err("old evidence");
    assert!(
        err.to_string()
            .contains("GPU nonce not bound to this enclave"),
        "{err}"
    );
    // Fresh evidence, in two calls; the node stays active meanwhile with its old expiry.
    as_enclave(1, NOW + MINUTE);
    r.reattest_json(id, bundle(1, Some(p.challenge), &fresh.gpus[..4], &[]))
        .expect("reattests");
    assert_eq!(status(&r, id), NodeStatus::Active);
    assert_eq!(node(&r, id).attestation_expires_at_ns, expires);
    as_enclave(1, NOW + MINUTE);
    let err = r
        .reattest_json(id, bundle(1, Some(p.challenge), &fresh.gpus[..4], &[]))
        .expect_err("bundle once");
    assert!(matches!(err, RegistryError::BundleAlreadyVerified), "{err}");
    add(
        &mut r,
        1,
        id,
        &fresh.gpus[4..],
        &fresh.switches,
        NOW + MINUTE,
    )
    .expect("completes");
    let view = node(&r, id);
    assert!(view.attestation_expires_at_ns.0 > expires.0, "renewed");
    assert_eq!((view.gpus.len(), r.get_node_switches(id).len()), (8, 4));
    assert_eq!(view.status, NodeStatus::Active);
    assert!(
        events()
            .iter()
            .any(|e| matches!(e, RegistryEvent::NodeReattested { .. }))
    );
}

#[test]
fn an_expired_reattestation_frees_only_what_it_reserved() {
    let mut r = dev_registry();
    let pending = begin(&mut r, 1, 1, 0, None, NOW).expect("begins");
    let one = evidence(&DevGpuFleet::new(FLEET, 1, 0), 1, pending.challenge);
    let id = register(&mut r, 1, Some(pending.challenge), &one.gpus, &[], NOW).expect("registers");
    let kept = node(&r, id).gpus[0].device_id;
    // Re-attest declaring 2 GPUs (GPU 1 is new), then let it expire.
    let p = begin(&mut r, 1, 2, 0, Some(id), NOW).expect("begins");
    let two = evidence(&DevGpuFleet::new(FLEET, 2, 0), 1, p.challenge);
    as_enclave(1, NOW);
    r.reattest_json(id, bundle(1, Some(p.challenge), &two.gpus[1..], &[]))
        .expect("reattests");
    let new = node_device(&two.gpus[1]);
    assert_eq!(r.gpu_owner.get(&new), Some(&id), "reserved");
    Call::by(acc("anyone.near")).at(p.expires_at_ns.0).set();
    assert_eq!(r.try_prune_pending(vec![key(1).1]).expect("prunes"), 1);
    assert_eq!(r.gpu_owner.get(&new), None, "the reservation is freed");
    assert_eq!(r.gpu_owner.get(&kept), Some(&id), "the node keeps its GPU");
    assert_ne!(status(&r, id), NodeStatus::Deregistered);
}

#[test]
fn a_node_without_devices_registers_and_reattests_without_a_challenge() {
    let (mut r, id) = with_node();
    Call::by(op()).key(key(1).1).at(T0 + DAY).set();
    r.reattest_json(id, dev_bundle(1)).expect("reattests");
    assert_eq!(status(&r, id), NodeStatus::Active);
}

#[test]
fn revoking_a_switch_removes_it_from_its_node() {
    let mut r = dev_registry();
    let (id, _) = register_8_plus_4(&mut r, 1);
    let switch = r.get_node_switches(id)[0];
    Call::by(owner()).yocto().at(NOW).set();
    assert_eq!(r.try_revoke_gpus(vec![switch]).expect("owner"), 1);
    assert!(!r.get_node_switches(id).contains(&switch));
    assert_eq!(r.gpu_owner.get(&switch), None);
}

#[test]
fn deregistering_a_pending_node_frees_its_reservations() {
    let mut r = dev_registry();
    let pending = begin(&mut r, 1, 2, 0, None, NOW).expect("begins");
    let ev = evidence(&DevGpuFleet::new(FLEET, 2, 0), 1, pending.challenge);
    let id =
        register(&mut r, 1, Some(pending.challenge), &ev.gpus[..1], &[], NOW).expect("registers");
    Call::by(op()).yocto().at(NOW).set();
    paid(&mut r, "deregister", |r| r.try_deregister(id)).expect("deregisters");
    assert!(r.get_pending_attestation(key(1).1).is_none());
    assert_eq!(r.gpu_owner.get(&node_device(&ev.gpus[0])), None);
}

#[test]
fn the_next_begin_replaces_an_expired_half_registration() {
    let mut r = dev_registry();
    let first = begin(&mut r, 1, 2, 0, None, NOW).expect("begins");
    let ev = evidence(&DevGpuFleet::new(FLEET, 2, 0), 1, first.challenge);
    let old = register(&mut r, 1, Some(first.challenge), &ev.gpus[..1], &[], NOW)
        .expect("registers half");
    let later = first.expires_at_ns.0;
    let second = begin(&mut r, 1, 2, 0, None, later).expect("the key may register again");
    assert_eq!(status(&r, old), NodeStatus::Deregistered);
    assert_eq!(r.gpu_owner.get(&node_device(&ev.gpus[0])), None);
    let ev = evidence(&DevGpuFleet::new(FLEET, 2, 0), 1, second.challenge);
    let new = register(&mut r, 1, Some(second.challenge), &ev.gpus, &[], later).expect("registers");
    assert_ne!(new, old);
    assert_eq!(status(&r, new), NodeStatus::Active);
}

/// The dev golden sets as governance pins them (the JSON `ecloud attestation gpu-reference`
/// prints is the same shape).
fn dev_golden() -> (GoldenReference, GoldenReference) {
    let (vbios, driver) = attestation::dev_gpu::dev_gpu_golden_sets();
    let to_ref = |s: attestation::nvidia::GoldenSet| -> GoldenReference {
        serde_json::from_value(serde_json::to_value(s).expect("json")).expect("same shape")
    };
    (to_ref(vbios), to_ref(driver))
}

fn pin(r: &mut Registry, set: GoldenReference) {
    Call::by(owner()).yocto().at(NOW).set();
    r.pin_golden_set(set);
}

#[test]
fn pinned_golden_sets_admit_matching_gpus_and_refuse_the_rest() {
    let mut r = dev_registry();
    let (vbios, driver) = dev_golden();
    // Nothing pinned for GH100: not compared (what a registry without sets does).
    assert!(r.golden_sets("GH100".into()).is_empty());

    // Only the VBIOS set pinned: a GPU without a pinned driver set is refused.
    pin(&mut r, vbios.clone());
    assert_eq!(r.golden_sets("GH100".into()).len(), 1);
    let pending = begin(&mut r, 1, 1, 0, None, NOW).expect("begins");
    let ev = evidence(&DevGpuFleet::new(FLEET, 1, 0), 1, pending.challenge);
    let err = register(&mut r, 1, Some(pending.challenge), &ev.gpus, &[], NOW)
        .expect_err("no driver set");
    assert!(err.to_string().contains("no Driver reference set"), "{err}");

    // A driver set whose one value is off: refused, naming the index.
    let mut off = driver.clone();
    off.measurements[3].alternatives = vec!["11".repeat(48)];
    pin(&mut r, off);
    let err =
        register(&mut r, 1, Some(pending.challenge), &ev.gpus, &[], NOW).expect_err("off the set");
    assert!(err.to_string().contains("not a golden value"), "{err}");

    // The right driver set replaces it (same kind, chip and version): the GPU is admitted.
    pin(&mut r, driver.clone());
    assert_eq!(r.golden_sets("GH100".into()).len(), 2);
    register(&mut r, 1, Some(pending.challenge), &ev.gpus, &[], NOW).expect("matches");

    // Unpinned: back to not compared.
    Call::by(owner()).yocto().at(NOW).set();
    r.unpin_golden_set(GoldenKind::Vbios, "GH100".into(), vbios.version.clone());
    Call::by(owner()).yocto().at(NOW).set();
    r.unpin_golden_set(GoldenKind::Driver, "GH100".into(), driver.version.clone());
    assert!(r.golden_sets("GH100".into()).is_empty());
}

#[test]
fn malformed_golden_sets_and_strangers_are_refused() {
    let mut r = dev_registry();
    let (vbios, _) = dev_golden();
    let mut bad = vbios.clone();
    bad.measurements[0].alternatives = vec!["zz".into()];
    Call::by(owner()).yocto().at(NOW).set();
    let err = crate::golden::validate(&bad).expect_err("not hex");
    assert!(err.to_string().contains("96 hex digits"), "{err}");
    let mut empty = vbios.clone();
    empty.measurements.clear();
    assert!(crate::golden::validate(&empty).is_err());
    Call::by(op()).yocto().at(NOW).set();
    let err = r
        .try_propose(RegistrySetting::PinGoldenSet(Box::new(vbios)))
        .expect_err("not the owner");
    assert!(matches!(err, RegistryError::NotOwner { .. }), "{err}");
}
