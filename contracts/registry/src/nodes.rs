//! Node lifecycle: registration, re-attestation, GPUs, heartbeats, commercial details and
//! deregistration. Every action verifies and validates first and writes last, so a refused
//! call leaves the state as it was.

use attestation::{AttestationBundle, GpuEvidence};
use enclave_cloud_common::OrPanic;
use enclave_cloud_common::events::{Nep297, RegistryEvent};
use enclave_cloud_common::interfaces::registry::{AttestationProgress, AttestationPurpose};
use enclave_cloud_common::{Hash32, NodeId};
use near_sdk::json_types::U64;
use near_sdk::{AccountId, PublicKey, env, near};

use crate::NodeApi;
use crate::access::{direct_caller, node_caller, require_enclave};
use crate::args::{self, AddGpuArgs, ReattestArgs, RegisterArgs};
use crate::attest::{self, Attested, DeviceContext, VerifiedDevices};
use crate::details::{self, CheckedUpdate, NodeUpdate};
use crate::errors::{RegistryError, Result};
use crate::events::{emit_status_changes, statuses};
use crate::pending;
use crate::policy::Policy;
#[allow(unused_imports)] // named by the code #[near] generates
use crate::state::RegistryExt;
use crate::state::{NewAttestation, Node, Operator, Registry};

/// When an attestation made at `now` expires: the policy's lifetime, or earlier if the
/// evidence itself says so (dev).
fn expiry(policy: &Policy, now: u64, evidence_expiry_ns: Option<u64>) -> u64 {
    let by_policy = now.saturating_add(policy.attestation_lifetime_ns.0);
    evidence_expiry_ns.map_or(by_policy, |e| e.min(by_policy))
}

impl Registry {
    pub(crate) fn register(
        &mut self,
        mut bundle: AttestationBundle,
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
        let challenge = expected_challenge(
            state,
            &signer_key,
            &operator,
            AttestationPurpose::Register,
            &bundle,
        )?;
        let att = attest::verify_registration(state, &mut bundle)?;
        let node_id = state.next_node_id;
        let devices = bundle_devices(state, &att, challenge, node_id, &bundle)?;

        // Verified: from here on only writes.
        let usage_before = state.storage_mark();
        let now = env::block_timestamp();
        state.next_node_id = node_id.next();
        let Attested {
            kind,
            tcb_status,
            measurements,
            image_digest,
            encryption_key,
            expires_at_ns,
            events: _,
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
        state.node_by_signer_key.insert(signer_key.clone(), node_id);
        state.operator_mut(&operator)?.nodes.push(node_id);
        if challenge.is_some() {
            let p = state
                .pending
                .get_mut(&signer_key)
                .ok_or_else(|| RegistryError::NoPendingAttestation(String::from(&signer_key)))?;
            p.node_id = Some(node_id);
            p.encryption_key = Some(encryption_key);
            pending::record_devices(state, &signer_key, node_id, devices)?;
        }
        state.settle_storage(&operator, usage_before)?;
        // Storage is paid from the stake: the node must still be covered once it is stored.
        ensure_stake_for(state, &operator, 0)?;
        Ok(node_id)
    }
}

/// The devices a registration or re-attestation bundle carries, verified against the nonce its
/// challenge binds (none without a challenge).
fn bundle_devices(
    state: &Registry,
    att: &Attested,
    challenge: Option<[u8; 32]>,
    node_id: NodeId,
    bundle: &AttestationBundle,
) -> Result<VerifiedDevices> {
    let Some(challenge) = challenge else {
        return Ok(VerifiedDevices::default());
    };
    attest::verify_devices(
        state,
        &DeviceContext {
            nonce: attest::binding_nonce(&att.encryption_key, &challenge)?,
            node: Some(node_id),
            already: &[],
            events: Some(&att.events),
        },
        &bundle.gpus,
        &bundle.switches,
    )
}

/// The challenge the bundle must answer: the pending attestation's (checked here, with the
/// declared device counts), or none for a node without GPUs that began nothing.
fn expected_challenge(
    state: &Registry,
    signer_key: &PublicKey,
    operator: &AccountId,
    purpose: AttestationPurpose,
    bundle: &AttestationBundle,
) -> Result<Option<[u8; 32]>> {
    match pending::live_pending(state, signer_key, purpose)? {
        Some(p) if p.operator == *operator => {
            if p.encryption_key.is_some() {
                return Err(RegistryError::BundleAlreadyVerified);
            }
            pending::check_challenge(p, bundle.gpu_challenge.as_deref())?;
            pending::check_room(p, bundle.gpus.len(), bundle.switches.len())?;
            Ok(Some(p.challenge))
        }
        Some(_) => Err(RegistryError::NoPendingAttestation(String::from(
            signer_key,
        ))),
        None => {
            let has_devices = !bundle.gpus.is_empty() || !bundle.switches.is_empty();
            if has_devices || bundle.gpu_challenge.is_some() {
                return Err(RegistryError::NoPendingAttestation(String::from(
                    signer_key,
                )));
            }
            Ok(None)
        }
    }
}

/// The operator's free stake covers its live nodes plus `extra` more.
pub(crate) fn ensure_stake_for(state: &Registry, operator: &AccountId, extra: usize) -> Result<()> {
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
        mut bundle: AttestationBundle,
    ) -> Result<()> {
        let state = self;
        let node = state.node(node_id)?;
        require_enclave(node_id, node)?;
        let operator = node.operator.clone();
        let signer_key = env::signer_account_pk();
        let challenge = expected_challenge(
            state,
            &signer_key,
            &operator,
            AttestationPurpose::Reattest { node_id },
            &bundle,
        )?;
        // A node with devices re-attests them all, with fresh evidence: a challenge is needed.
        if challenge.is_none() && state.has_devices(node_id)? {
            return Err(RegistryError::NoPendingAttestation(String::from(
                &signer_key,
            )));
        }
        let att = attest::verify_registration(state, &mut bundle)?;
        let node = state.node(node_id)?;
        if att.encryption_key != node.encryption_key {
            return Err(RegistryError::EnclaveKeyMismatch {
                node: node_id,
                expected: hex::encode(node.encryption_key),
                got: hex::encode(att.encryption_key),
            });
        }
        let devices = bundle_devices(state, &att, challenge, node_id, &bundle)?;

        let before = statuses(state, &[node_id]);
        let usage_before = state.storage_mark();
        let now = env::block_timestamp();
        let new = NewAttestation {
            kind: att.kind,
            tcb_status: att.tcb_status,
            measurements: att.measurements,
            image_digest: att.image_digest,
            attested_at_ns: now,
            expires_at_ns: expiry(&state.policy, now, att.expires_at_ns),
        };
        if challenge.is_some() {
            // Applied once every declared device is verified (`pending::record_devices`).
            let p = state
                .pending
                .get_mut(&signer_key)
                .ok_or_else(|| RegistryError::NoPendingAttestation(String::from(&signer_key)))?;
            p.encryption_key = Some(att.encryption_key);
            p.attestation = Some(new);
            pending::record_devices(state, &signer_key, node_id, devices)?;
        } else {
            let node = state
                .nodes
                .get_mut(&node_id)
                .ok_or(RegistryError::UnknownNode(node_id))?;
            node.kind = new.kind;
            node.tcb_status = new.tcb_status;
            node.measurements = new.measurements;
            node.image_digest = new.image_digest;
            node.attested_at_ns = now;
            node.attestation_expires_at_ns = new.expires_at_ns;
            // The enclave just proved it is alive.
            node.last_heartbeat_ns = now;
            RegistryEvent::NodeReattested {
                node_id,
                tcb_status: new.tcb_status,
                expires_at_ns: U64(new.expires_at_ns),
            }
            .emit();
        }
        state.settle_storage(&operator, usage_before)?;
        emit_status_changes(state, &before);
        Ok(())
    }

    /// Whether the node holds GPUs or NVSwitches.
    fn has_devices(&self, node_id: NodeId) -> Result<bool> {
        Ok(!self.node(node_id)?.gpus.is_empty() || self.node_switches.get(&node_id).is_some())
    }
}

impl Registry {
    /// More devices of the pending attestation of the signing key (which must be for
    /// `node_id`, its bundle already verified).
    pub(crate) fn add_devices(
        &mut self,
        node_id: NodeId,
        gpus: &[GpuEvidence],
        switches: &[GpuEvidence],
    ) -> Result<AttestationProgress> {
        let state = self;
        let node = state.node(node_id)?;
        require_enclave(node_id, node)?;
        let operator = node.operator.clone();
        let signer_key = env::signer_account_pk();
        let p = state
            .pending
            .get(&signer_key)
            .ok_or_else(|| RegistryError::NoPendingAttestation(String::from(&signer_key)))?;
        if p.node_id != Some(node_id) {
            return Err(RegistryError::WrongPendingAttestation {
                expected: format!("{:?}", p.purpose),
            });
        }
        if p.is_expired(env::block_timestamp()) {
            return Err(RegistryError::ChallengeExpired {
                expired_at_ns: p.expires_at_ns,
            });
        }
        let encryption_key = p.encryption_key.ok_or(RegistryError::BundleNotVerified)?;
        if gpus.is_empty() && switches.is_empty() {
            return Err(RegistryError::invalid("gpus", "no device to add"));
        }
        pending::check_room(p, gpus.len(), switches.len())?;
        let already = pending::held_devices(p);
        let devices = attest::verify_devices(
            state,
            &DeviceContext {
                nonce: attest::binding_nonce(&encryption_key, &p.challenge)?,
                node: Some(node_id),
                already: &already,
                events: None,
            },
            gpus,
            switches,
        )?;
        let mut progress = AttestationProgress {
            gpus_verified: (p.gpus.len() + devices.gpus.len()) as u32,
            gpus_declared: p.gpus_declared,
            switches_verified: (p.switches.len() + devices.switches.len()) as u32,
            switches_declared: p.switches_declared,
            complete: false,
        };

        let before = statuses(state, &[node_id]);
        let usage_before = state.storage_mark();
        progress.complete = pending::record_devices(state, &signer_key, node_id, devices)?;
        state.settle_storage(&operator, usage_before)?;
        emit_status_changes(state, &before);
        Ok(progress)
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
pub(crate) fn cache_certificates(state: &mut Registry, hashes: Vec<[u8; 32]>) -> Vec<Hash32> {
    let mut cached = Vec::new();
    for hash in hashes {
        if state.cert_cache.insert(hash) {
            RegistryEvent::CertificateCached { hash: Hash32(hash) }.emit();
            cached.push(Hash32(hash));
        }
    }
    cached
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
        let usage_before = state.storage_mark();
        // An attestation in progress ends with the node (its reservations are freed).
        if state
            .pending
            .get(&signer_key)
            .is_some_and(|p| p.node_id == Some(node_id))
        {
            pending::drop_pending(state, &signer_key)?;
        }
        if !state.node(node_id)?.deregistered {
            state.remove_node(node_id)?;
        }
        state.settle_storage(&operator, usage_before)
    }

    /// Tombstones a node: frees its signing key and devices, leaves its operator's live nodes;
    /// announces the status changes (its own, and siblings the freed stake covers again). The
    /// caller settles storage.
    pub(crate) fn remove_node(&mut self, node_id: NodeId) -> Result<()> {
        let state = self;
        let node = state.node(node_id)?;
        let operator = node.operator.clone();
        let signer_key = node.signer_key.clone();
        let mut devices: Vec<_> = node.gpus.iter().map(|g| g.device_id).collect();
        devices.extend(
            state
                .node_switches
                .get(&node_id)
                .into_iter()
                .flatten()
                .map(|s| s.device_id),
        );
        let mut affected = state.operator(&operator)?.nodes.clone();
        affected.retain(|id| *id != node_id);
        affected.push(node_id);
        let before = statuses(state, &affected);
        state.node_by_signer_key.remove(&signer_key);
        for device in &devices {
            state.gpu_owner.remove(device);
        }
        state.node_switches.remove(&node_id);
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

    pub(crate) fn try_add_gpu(&mut self) -> Result<AttestationProgress> {
        let args: AddGpuArgs = args::read()?;
        self.add_devices(args.node_id, &args.gpus, &args.switches)
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

    fn add_gpu(&mut self) -> AttestationProgress {
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
