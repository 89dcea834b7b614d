//! Registrations and re-attestations in progress (issue 16). `begin_attestation` hands the
//! enclave a fresh challenge; every GPU and NVSwitch of the node then answers
//! `gpu_binding_nonce(enclave_key, near_key, challenge)`, in `register_node` / `reattest` and
//! then in `add_gpu` calls until every declared device is verified. Only then does the node
//! change: a registration's node leaves `pending`, a re-attestation's new evidence replaces the
//! node's. The entry (and the devices it reserves) is paid from the operator's stake until it
//! completes or expires; an expired entry is removed by the next `begin_attestation` of its key
//! or by anyone with `prune_pending`.

use enclave_cloud_common::OrPanic;
use enclave_cloud_common::events::{Nep297, RegistryEvent};
use enclave_cloud_common::interfaces::registry::{AttestationPurpose, PendingAttestationView};
use enclave_cloud_common::{Hash32, NodeId};
use near_sdk::json_types::U64;
use near_sdk::{PublicKey, env, near};

use crate::PendingApi;
use crate::access::{direct_caller, require_enclave};
use crate::attest::{self, VerifiedDevices};
use crate::errors::{RegistryError, Result};
use crate::events::{emit_status_changes, statuses};
use crate::nodes::{cache_certificates, ensure_stake_for};
#[allow(unused_imports)] // named by the code #[near] generates
use crate::state::RegistryExt;
use crate::state::{PendingAttestation, Registry};

/// Most NVSwitches a node may declare (an HGX H100 has 4, an HGX B200 2).
pub const MAX_SWITCHES: u32 = 8;
/// Most expired entries one `prune_pending` call removes.
pub const MAX_PRUNE: usize = 20;

/// The challenge: unpredictable before the block (its random seed), distinct per enclave key
/// within a block, and tied to the height (and time) it was handed out at.
fn new_challenge(signer: &[u8; 32]) -> [u8; 32] {
    let mut preimage = env::random_seed();
    preimage.extend_from_slice(signer);
    preimage.extend_from_slice(&env::block_height().to_le_bytes());
    preimage.extend_from_slice(&env::block_timestamp().to_le_bytes());
    env::sha256_array(&preimage)
}

pub fn view(signer_key: PublicKey, p: &PendingAttestation) -> PendingAttestationView {
    PendingAttestationView {
        signer_key,
        operator: p.operator.clone(),
        purpose: p.purpose,
        challenge: Hash32(p.challenge),
        gpus_declared: p.gpus_declared,
        switches_declared: p.switches_declared,
        gpus_verified: p.gpus.iter().map(|g| g.info.device_id).collect(),
        switches_verified: p.switches.iter().map(|s| s.device_id).collect(),
        node_id: p.node_id,
        bundle_verified: p.encryption_key.is_some(),
        expires_at_ns: U64(p.expires_at_ns),
    }
}

impl Registry {
    pub(crate) fn try_begin_attestation(
        &mut self,
        gpus: u32,
        switches: u32,
        node_id: Option<NodeId>,
    ) -> Result<PendingAttestationView> {
        let state = self;
        let operator = direct_caller()?;
        let signer_key = env::signer_account_pk();
        let signer = attest::signer_ed25519()?;
        state.operator(&operator)?;
        let now = env::block_timestamp();
        // An expired entry of this key goes first: a half-registered node it leaves is
        // deregistered, so the key can register again.
        if let Some(old) = state.pending.get(&signer_key) {
            if !old.is_expired(now) {
                return Err(RegistryError::AttestationInProgress {
                    expires_at_ns: old.expires_at_ns,
                });
            }
            let old_operator = old.operator.clone();
            let before = state.storage_mark();
            drop_pending(state, &signer_key)?;
            state.settle_storage(&old_operator, before)?;
        }
        let purpose = match node_id {
            Some(id) => {
                require_enclave(id, state.node(id)?)?;
                AttestationPurpose::Reattest { node_id: id }
            }
            None => {
                if let Some(id) = state.node_by_signer_key.get(&signer_key) {
                    return Err(RegistryError::SignerKeyInUse(
                        String::from(&signer_key),
                        *id,
                    ));
                }
                ensure_stake_for(state, &operator, 1)?;
                AttestationPurpose::Register
            }
        };
        if gpus > state.policy.gpu.max_gpus {
            return Err(RegistryError::invalid(
                "gpus",
                format!(
                    "{gpus} exceeds the policy's max_gpus {}",
                    state.policy.gpu.max_gpus
                ),
            ));
        }
        if switches > MAX_SWITCHES {
            return Err(RegistryError::invalid(
                "switches",
                format!("{switches} exceeds {MAX_SWITCHES}"),
            ));
        }
        let usage_before = state.storage_mark();
        let pending = PendingAttestation {
            operator: operator.clone(),
            purpose,
            challenge: new_challenge(&signer),
            gpus_declared: gpus,
            switches_declared: switches,
            expires_at_ns: now.saturating_add(state.policy.challenge_lifetime_ns.0),
            node_id,
            encryption_key: None,
            attestation: None,
            gpus: Vec::new(),
            switches: Vec::new(),
        };
        let out = view(signer_key.clone(), &pending);
        state.pending.insert(signer_key, pending);
        state.settle_storage(&operator, usage_before)?;
        // The entry is paid from the stake: a registration must still leave room for the node.
        if node_id.is_none() {
            ensure_stake_for(state, &operator, 1)?;
        }
        Ok(out)
    }

    pub(crate) fn try_prune_pending(&mut self, signer_keys: Vec<PublicKey>) -> Result<u32> {
        let state = self;
        if signer_keys.len() > MAX_PRUNE {
            return Err(RegistryError::invalid(
                "signer_keys",
                format!("at most {MAX_PRUNE} per call"),
            ));
        }
        let now = env::block_timestamp();
        let mut removed = 0;
        for key in signer_keys {
            let Some(p) = state.pending.get(&key) else {
                continue;
            };
            if !p.is_expired(now) {
                continue;
            }
            let operator = p.operator.clone();
            let before = state.storage_mark();
            drop_pending(state, &key)?;
            state.settle_storage(&operator, before)?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// The live pending attestation of the signing key for `purpose`.
pub fn live_pending<'a>(
    state: &'a Registry,
    signer_key: &PublicKey,
    purpose: AttestationPurpose,
) -> Result<Option<&'a PendingAttestation>> {
    let Some(p) = state.pending.get(signer_key) else {
        return Ok(None);
    };
    if p.purpose != purpose {
        return Err(RegistryError::WrongPendingAttestation {
            expected: format!("{:?}", p.purpose),
        });
    }
    if p.is_expired(env::block_timestamp()) {
        return Err(RegistryError::ChallengeExpired {
            expired_at_ns: p.expires_at_ns,
        });
    }
    Ok(Some(p))
}

/// The bundle's `gpu_challenge` must be the pending one.
pub fn check_challenge(p: &PendingAttestation, bundle_challenge: Option<&str>) -> Result<()> {
    let expected = hex::encode(p.challenge);
    match bundle_challenge {
        Some(got) if got.eq_ignore_ascii_case(&expected) => Ok(()),
        got => Err(RegistryError::WrongChallenge {
            expected,
            got: got.unwrap_or("(none)").to_owned(),
        }),
    }
}

/// The declared counts bound what an attestation may hold.
pub fn check_room(p: &PendingAttestation, gpus: usize, switches: usize) -> Result<()> {
    let gpus = p.gpus.len() + gpus;
    let switches = p.switches.len() + switches;
    if gpus > p.gpus_declared as usize || switches > p.switches_declared as usize {
        return Err(RegistryError::TooManyDevices {
            gpus,
            switches,
            gpus_declared: p.gpus_declared,
            switches_declared: p.switches_declared,
        });
    }
    Ok(())
}

/// Device ids the pending attestation already holds.
pub fn held_devices(p: &PendingAttestation) -> Vec<Hash32> {
    p.gpus
        .iter()
        .map(|g| g.info.device_id)
        .chain(p.switches.iter().map(|s| s.device_id))
        .collect()
}

/// Records verified devices in the pending entry of `signer_key` and reserves them for its
/// node; completes the attestation once every declared device is in. Returns whether it
/// completed. The caller settles storage.
pub fn record_devices(
    state: &mut Registry,
    signer_key: &PublicKey,
    node_id: NodeId,
    devices: VerifiedDevices,
) -> Result<bool> {
    let p = state
        .pending
        .get(signer_key)
        .ok_or_else(|| RegistryError::NoPendingAttestation(String::from(signer_key)))?;
    // The last devices: the topology check runs before anything is written.
    let mut gpus = p.gpus.clone();
    gpus.extend(devices.gpus.iter().map(|g| g.gpu.clone()));
    let mut switches = p.switches.clone();
    switches.extend(devices.switches.iter().map(|s| s.switch.clone()));
    if gpus.len() == p.gpus_declared as usize && switches.len() == p.switches_declared as usize {
        attest::check_node_topology(&gpus, &switches)?;
    }
    for d in devices
        .gpus
        .iter()
        .map(|g| g.gpu.info.device_id)
        .chain(devices.switches.iter().map(|s| s.switch.device_id))
    {
        state.gpu_owner.insert(d, node_id);
    }
    let mut certs = Vec::new();
    let p = state
        .pending
        .get_mut(signer_key)
        .ok_or_else(|| RegistryError::NoPendingAttestation(String::from(signer_key)))?;
    for g in devices.gpus {
        p.gpus.push(g.gpu);
        certs.extend(g.new_certs);
    }
    for s in devices.switches {
        p.switches.push(s.switch);
        certs.extend(s.new_certs);
    }
    let complete = p.is_complete();
    cache_certificates(state, certs);
    if complete {
        complete_pending(state, signer_key)?;
    }
    Ok(complete)
}

/// Every declared device is verified (and the topology checked): the node takes the attested
/// devices (and, for a re-attestation, the new attestation). The entry is removed (its
/// storage refunded by the caller's settlement).
fn complete_pending(state: &mut Registry, signer_key: &PublicKey) -> Result<()> {
    let p = state
        .pending
        .remove(signer_key)
        .ok_or_else(|| RegistryError::NoPendingAttestation(String::from(signer_key)))?;
    let node_id = p.node_id.ok_or(RegistryError::BundleNotVerified)?;
    let before = statuses(state, &[node_id]);
    let node = state
        .nodes
        .get_mut(&node_id)
        .ok_or(RegistryError::UnknownNode(node_id))?;
    let old: Vec<Hash32> = node
        .gpus
        .iter()
        .map(|g| g.device_id)
        .chain(
            state
                .node_switches
                .get(&node_id)
                .into_iter()
                .flatten()
                .map(|s| s.device_id),
        )
        .collect();
    let node = state
        .nodes
        .get_mut(&node_id)
        .ok_or(RegistryError::UnknownNode(node_id))?;
    node.gpus = p.gpus.iter().map(|g| g.info.clone()).collect();
    if let Some(a) = &p.attestation {
        node.kind = a.kind;
        node.tcb_status = a.tcb_status;
        node.measurements = a.measurements.clone();
        node.image_digest = a.image_digest;
        node.attested_at_ns = a.attested_at_ns;
        node.attestation_expires_at_ns = a.expires_at_ns;
        node.last_heartbeat_ns = env::block_timestamp();
        RegistryEvent::NodeReattested {
            node_id,
            tcb_status: a.tcb_status,
            expires_at_ns: U64(a.expires_at_ns),
        }
        .emit();
    }
    if p.switches.is_empty() {
        state.node_switches.remove(&node_id);
    } else {
        state.node_switches.insert(node_id, p.switches.clone());
    }
    let held = held_devices(&p);
    for device in old.iter().filter(|d| !held.contains(d)) {
        state.gpu_owner.remove(device);
    }
    for g in p.gpus {
        RegistryEvent::GpuAdded {
            node_id,
            gpu: g.info,
        }
        .emit();
    }
    emit_status_changes(state, &before);
    Ok(())
}

/// Removes the pending entry of `signer_key` and what it reserved: devices not attached to the
/// node, and a registration's node itself (it never became active). The caller settles storage.
pub fn drop_pending(state: &mut Registry, signer_key: &PublicKey) -> Result<()> {
    let Some(p) = state.pending.remove(signer_key) else {
        return Ok(());
    };
    let attached: Vec<Hash32> = p
        .node_id
        .and_then(|id| state.nodes.get(&id))
        .map(|n| n.gpus.iter().map(|g| g.device_id).collect())
        .unwrap_or_default();
    let switches: Vec<Hash32> = p
        .node_id
        .and_then(|id| state.node_switches.get(&id))
        .map(|s| s.iter().map(|s| s.device_id).collect())
        .unwrap_or_default();
    for device in held_devices(&p) {
        if !attached.contains(&device) && !switches.contains(&device) {
            state.gpu_owner.remove(&device);
        }
    }
    if let (AttestationPurpose::Register, Some(node_id)) = (p.purpose, p.node_id)
        && state.nodes.get(&node_id).is_some_and(|n| !n.deregistered)
    {
        state.remove_node(node_id)?;
    }
    Ok(())
}

#[near]
impl PendingApi for Registry {
    fn begin_attestation(
        &mut self,
        gpus: u32,
        switches: u32,
        node_id: Option<NodeId>,
    ) -> PendingAttestationView {
        self.try_begin_attestation(gpus, switches, node_id)
            .or_panic()
    }

    fn prune_pending(&mut self, signer_keys: Vec<PublicKey>) -> u32 {
        self.try_prune_pending(signer_keys).or_panic()
    }

    fn get_pending_attestation(&self, signer_key: PublicKey) -> Option<PendingAttestationView> {
        self.pending
            .get(&signer_key)
            .map(|p| view(signer_key.clone(), p))
    }
}
