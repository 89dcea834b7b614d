//! Node lifecycle: registration, re-attestation, GPUs, heartbeats, commercial details and
//! deregistration. Every action verifies and validates first and writes last, so a refused
//! call leaves the state as it was.

use attestation::{AttestationBundle, GpuEvidence};
use enclave_cloud_common::OrPanic;
use enclave_cloud_common::events::{Nep297, RegistryEvent};
use enclave_cloud_common::{GpuInfo, Hash32, NodeId};
use near_sdk::json_types::U64;
use near_sdk::{AccountId, env, near};

use crate::NodeApi;
use crate::access::{direct_caller, node_caller, require_enclave};
use crate::args::{self, AddGpuArgs, ReattestArgs, RegisterArgs};
use crate::attest::{self, Attested, VerifiedGpu};
use crate::details::{self, CheckedUpdate, NodeUpdate};
use crate::errors::{RegistryError, Result};
use crate::events::{emit_status_changes, statuses};
use crate::policy::Policy;
#[allow(unused_imports)] // named by the code #[near] generates
use crate::state::RegistryExt;
use crate::state::{Node, Operator, Registry};

/// When an attestation made at `now` expires: the policy's lifetime, or earlier if the
/// evidence itself says so (dev).
fn expiry(policy: &Policy, now: u64, evidence_expiry_ns: Option<u64>) -> u64 {
    let by_policy = now.saturating_add(policy.attestation_lifetime_ns.0);
    evidence_expiry_ns.map_or(by_policy, |e| e.min(by_policy))
}

impl Registry {
    pub(crate) fn register(
        &mut self,
        bundle: AttestationBundle,
        details: NodeUpdate,
    ) -> Result<NodeId> {
        let state = self;
        let operator = direct_caller()?;
        let details = details::check(details)?;
        ensure_stake_for(state, &operator, 1)?;
        let signer_key = env::signer_account_pk();
        if let Some(id) = state.node_by_signer_key.get(&signer_key) {
            return Err(RegistryError::SignerKeyInUse(
                String::from(&signer_key),
                *id,
            ));
        }
        let att = attest::verify_registration(state, bundle, None)?;
        check_gpu_room(&state.policy, state.next_node_id, &[], &att.gpus)?;

        // Verified: from here on only writes.
        let usage_before = state.storage_mark();
        let now = env::block_timestamp();
        let node_id = state.next_node_id;
        state.next_node_id = node_id.next();
        let Attested {
            kind,
            tcb_status,
            measurements,
            image_digest,
            encryption_key,
            expires_at_ns,
            gpus,
        } = att;
        let mut node = Node {
            operator: operator.clone(),
            kind,
            signer_key: signer_key.clone(),
            encryption_key,
            tcb_status,
            measurements: measurements.clone(),
            image_digest,
            gpus: Vec::new(),
            endpoint: None,
            region: None,
            prices: Vec::new(),
            capacity: 0,
            registered_at_ns: now,
            attested_at_ns: now,
            attestation_expires_at_ns: expiry(&state.policy, now, expires_at_ns),
            last_heartbeat_ns: now,
            deregistered: false,
        };
        let has_details = apply_details(&mut node, details);
        RegistryEvent::NodeRegistered {
            node_id,
            operator: operator.clone(),
            signer_key: signer_key.clone(),
            encryption_key: hex::encode(encryption_key),
            kind,
            tcb_status,
            measurements,
            expires_at_ns: U64(node.attestation_expires_at_ns),
        }
        .emit();
        if has_details {
            emit_updated(node_id, &node);
        }
        state.nodes.insert(node_id, node);
        state.node_by_signer_key.insert(signer_key, node_id);
        state.operator_mut(&operator)?.nodes.push(node_id);
        apply_gpus(state, node_id, gpus)?;
        state.settle_storage(&operator, usage_before)?;
        // Storage is paid from the stake: the node must still be covered once it is stored.
        ensure_stake_for(state, &operator, 0)?;
        Ok(node_id)
    }
}

/// The operator's free stake covers its live nodes plus `extra` more.
fn ensure_stake_for(state: &Registry, operator: &AccountId, extra: usize) -> Result<()> {
    let op = state.operator(operator)?;
    let nodes = op.nodes.len() + extra;
    let required = Operator::required_stake(&state.policy, nodes);
    if op.free_stake() < required {
        return Err(RegistryError::InsufficientStake {
            operator: operator.clone(),
            required,
            available: op.free_stake(),
            nodes: nodes as u32,
        });
    }
    Ok(())
}

impl Registry {
    pub(crate) fn reattest_bundle(
        &mut self,
        node_id: NodeId,
        bundle: AttestationBundle,
    ) -> Result<()> {
        let state = self;
        let node = state.node(node_id)?;
        require_enclave(node_id, node)?;
        let att = attest::verify_registration(state, bundle, Some(node_id))?;
        let node = state.node(node_id)?;
        if att.encryption_key != node.encryption_key {
            return Err(RegistryError::EnclaveKeyMismatch {
                node: node_id,
                expected: hex::encode(node.encryption_key),
                got: hex::encode(att.encryption_key),
            });
        }
        check_gpu_room(&state.policy, node_id, &node.gpus, &att.gpus)?;

        let operator = node.operator.clone();
        let before = statuses(state, &[node_id]);
        let usage_before = state.storage_mark();
        let now = env::block_timestamp();
        let expires = expiry(&state.policy, now, att.expires_at_ns);
        let node = state
            .nodes
            .get_mut(&node_id)
            .ok_or(RegistryError::UnknownNode(node_id))?;
        node.kind = att.kind;
        node.tcb_status = att.tcb_status;
        node.measurements = att.measurements;
        node.image_digest = att.image_digest;
        node.attested_at_ns = now;
        node.attestation_expires_at_ns = expires;
        // The enclave just proved it is alive.
        node.last_heartbeat_ns = now;
        RegistryEvent::NodeReattested {
            node_id,
            tcb_status: att.tcb_status,
            expires_at_ns: U64(expires),
        }
        .emit();
        apply_gpus(state, node_id, att.gpus)?;
        state.settle_storage(&operator, usage_before)?;
        emit_status_changes(state, &before);
        Ok(())
    }
}

impl Registry {
    pub(crate) fn add_gpu_evidence(
        &mut self,
        node_id: NodeId,
        evidence: &GpuEvidence,
    ) -> Result<GpuInfo> {
        let state = self;
        let node = state.node(node_id)?;
        require_enclave(node_id, node)?;
        let gpu = attest::verify_gpu(state, node_id, evidence)?;
        let node = state.node(node_id)?;
        check_gpu_room(
            &state.policy,
            node_id,
            &node.gpus,
            std::slice::from_ref(&gpu),
        )?;

        let operator = node.operator.clone();
        let info = gpu.info.clone();
        let before = statuses(state, &[node_id]);
        let usage_before = state.storage_mark();
        apply_gpus(state, node_id, vec![gpu])?;
        state.settle_storage(&operator, usage_before)?;
        emit_status_changes(state, &before);
        Ok(info)
    }
}

impl Registry {
    /// Verifies the next certificates of a GPU chain and caches them (see
    /// `attest::verify_gpu_chain_step`). Returns the newly cached hashes.
    pub(crate) fn try_cache_gpu_certificates(
        &mut self,
        node_id: NodeId,
        certificate_chain: String,
        max_signatures: Option<u8>,
    ) -> Result<Vec<Hash32>> {
        let state = self;
        let node = state.node(node_id)?;
        require_enclave(node_id, node)?;
        let operator = node.operator.clone();
        let verified =
            attest::verify_gpu_chain_step(state, &certificate_chain, max_signatures.unwrap_or(2))?;
        let usage_before = state.storage_mark();
        let cached = cache_certificates(state, verified);
        state.settle_storage(&operator, usage_before)?;
        Ok(cached)
    }
}

/// Adds verified certificate hashes to the cache; returns (and announces) the new ones.
fn cache_certificates(state: &mut Registry, hashes: Vec<[u8; 32]>) -> Vec<Hash32> {
    let mut cached = Vec::new();
    for hash in hashes {
        if state.cert_cache.insert(hash) {
            RegistryEvent::CertificateCached { hash: Hash32(hash) }.emit();
            cached.push(Hash32(hash));
        }
    }
    cached
}

/// A node holds at most `max_gpus`; a GPU it already has is refreshed, not added.
fn check_gpu_room(
    policy: &Policy,
    node_id: NodeId,
    existing: &[GpuInfo],
    new: &[VerifiedGpu],
) -> Result<()> {
    let added = new
        .iter()
        .filter(|g| !existing.iter().any(|e| e.device_id == g.info.device_id))
        .count();
    let count = existing.len() + added;
    if count > policy.gpu.max_gpus as usize {
        return Err(RegistryError::TooManyGpus {
            node: node_id,
            count: existing.len(),
        });
    }
    Ok(())
}

/// Records verified GPUs: the nonce is spent, the device is bound to the node, and newly
/// verified NVIDIA CA certificates join the cache.
fn apply_gpus(state: &mut Registry, node_id: NodeId, gpus: Vec<VerifiedGpu>) -> Result<()> {
    for gpu in gpus {
        state.used_gpu_nonces.insert(gpu.nonce);
        state.gpu_owner.insert(gpu.info.device_id, node_id);
        cache_certificates(state, gpu.new_certs);
        let node = state
            .nodes
            .get_mut(&node_id)
            .ok_or(RegistryError::UnknownNode(node_id))?;
        match node
            .gpus
            .iter_mut()
            .find(|g| g.device_id == gpu.info.device_id)
        {
            Some(existing) => *existing = gpu.info.clone(),
            None => node.gpus.push(gpu.info.clone()),
        }
        RegistryEvent::GpuAdded {
            node_id,
            gpu: gpu.info,
        }
        .emit();
    }
    Ok(())
}

impl Registry {
    /// Liveness: only the enclave key can prove the enclave is up. Kept minimal (one node read
    /// and write, one operator read, one or two logs).
    pub(crate) fn try_heartbeat(&mut self, node_id: NodeId) -> Result<()> {
        let state = self;
        let node = state.node(node_id)?;
        require_enclave(node_id, node)?;
        let before = statuses(state, &[node_id]);
        let now = env::block_timestamp();
        let node = state
            .nodes
            .get_mut(&node_id)
            .ok_or(RegistryError::UnknownNode(node_id))?;
        node.last_heartbeat_ns = now;
        RegistryEvent::NodeHeartbeat {
            node_id,
            at_ns: U64(now),
        }
        .emit();
        emit_status_changes(state, &before);
        Ok(())
    }
}

impl Registry {
    pub(crate) fn try_update_node(&mut self, node_id: NodeId, update: NodeUpdate) -> Result<()> {
        let state = self;
        node_caller(node_id, state.node(node_id)?)?;
        let checked = details::check(update)?;
        let usage_before = state.storage_mark();
        let node = state
            .nodes
            .get_mut(&node_id)
            .ok_or(RegistryError::UnknownNode(node_id))?;
        apply_details(node, checked);
        emit_updated(node_id, node);
        let operator = node.operator.clone();
        state.settle_storage(&operator, usage_before)
    }
}

/// Applies validated details; says whether anything was given.
fn apply_details(node: &mut Node, update: CheckedUpdate) -> bool {
    let CheckedUpdate {
        endpoint,
        region,
        prices,
        capacity,
    } = update;
    let any = endpoint.is_some() || region.is_some() || prices.is_some() || capacity.is_some();
    if let Some(v) = endpoint {
        node.endpoint = v;
    }
    if let Some(v) = region {
        node.region = v;
    }
    if let Some(v) = prices {
        node.prices = v;
    }
    if let Some(v) = capacity {
        node.capacity = v;
    }
    any
}

fn emit_updated(node_id: NodeId, node: &Node) {
    RegistryEvent::NodeUpdated {
        node_id,
        endpoint: node.endpoint.clone(),
        region: node.region.clone(),
        prices: node.prices.clone(),
        capacity: node.capacity,
    }
    .emit();
}

impl Registry {
    /// The operator (with a full access key and one yocto) or the enclave itself removes the node.
    /// A tombstone stays so the marketplace can still slash for jobs the node missed; its GPUs and
    /// signing key are freed and its storage is refunded to the operator's free stake.
    pub(crate) fn try_deregister(&mut self, node_id: NodeId) -> Result<()> {
        let state = self;
        node_caller(node_id, state.node(node_id)?)?;
        let node = state.node(node_id)?;
        let operator = node.operator.clone();
        let signer_key = node.signer_key.clone();
        let devices: Vec<_> = node.gpus.iter().map(|g| g.device_id).collect();
        let mut affected = state.operator(&operator)?.nodes.clone();
        affected.retain(|id| *id != node_id);
        affected.push(node_id);
        let before = statuses(state, &affected);
        let usage_before = state.storage_mark();
        state.node_by_signer_key.remove(&signer_key);
        for device in &devices {
            state.gpu_owner.remove(device);
        }
        let node = state
            .nodes
            .get_mut(&node_id)
            .ok_or(RegistryError::UnknownNode(node_id))?;
        node.deregistered = true;
        node.gpus.clear();
        node.prices.clear();
        node.endpoint = None;
        node.region = None;
        state
            .operator_mut(&operator)?
            .nodes
            .retain(|id| *id != node_id);
        state.settle_storage(&operator, usage_before)?;
        // Emits `Deregistered` for this node, and `Active` for siblings the freed stake now covers.
        emit_status_changes(state, &before);
        Ok(())
    }
}

impl Registry {
    pub(crate) fn try_register_node(&mut self) -> Result<NodeId> {
        let args: RegisterArgs = args::read()?;
        self.register(args.bundle, args.details.unwrap_or_default())
    }

    pub(crate) fn try_reattest(&mut self) -> Result<()> {
        let args: ReattestArgs = args::read()?;
        self.reattest_bundle(args.node_id, args.bundle)
    }

    pub(crate) fn try_add_gpu(&mut self) -> Result<GpuInfo> {
        let args: AddGpuArgs = args::read()?;
        self.add_gpu_evidence(args.node_id, &args.evidence)
    }
}

#[near]
impl NodeApi for Registry {
    fn register_node(&mut self) -> NodeId {
        self.try_register_node().or_panic()
    }

    fn reattest(&mut self) {
        self.try_reattest().or_panic()
    }

    fn add_gpu(&mut self) -> GpuInfo {
        self.try_add_gpu().or_panic()
    }

    fn cache_gpu_certificates(
        &mut self,
        node_id: NodeId,
        certificate_chain: String,
        max_signatures: Option<u8>,
    ) -> Vec<Hash32> {
        self.try_cache_gpu_certificates(node_id, certificate_chain, max_signatures)
            .or_panic()
    }

    fn heartbeat(&mut self, node_id: NodeId) {
        self.try_heartbeat(node_id).or_panic()
    }

    #[payable]
    fn update_node(&mut self, node_id: NodeId, update: NodeUpdate) {
        self.try_update_node(node_id, update).or_panic()
    }

    #[payable]
    fn deregister(&mut self, node_id: NodeId) {
        self.try_deregister(node_id).or_panic()
    }
}
