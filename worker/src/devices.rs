//! The node's GPUs and NVSwitches on chain (issue 16): a registration or re-attestation that
//! binds every device to this enclave and to a fresh registry challenge.
//!
//! 1. `begin_attestation` (enclave key) declares the devices and returns the challenge; every
//!    device must answer `attestation::gpu_binding_nonce(enclave_key, near_key, challenge)`.
//! 2. The [`GpuEvidenceSource`] collects every device's evidence over that nonce.
//! 3. `register_node` / `reattest` carries the bundle (with the challenge) and as many devices
//!    as fit in one call's gas; `add_gpu` calls carry the rest. The registry completes the
//!    attestation with the last declared device (the node then takes jobs).
//!
//! The batch size is measured, not assumed: the first call packs devices by an estimate, every
//! call's burnt gas refines the per-device cost, and a call that runs out of gas (reverted, so
//! nothing changed) is retried with fewer devices. Calls attach the 1 PGas per-call limit
//! (protocol 83+) and aim at [`TARGET_TGAS`].
//!
//! Resumable: the pending entry lives on chain. A run that stops half-way (interrupted, or
//! limited with [`Limits::max_transactions`]) is continued by the next one, which reads the
//! entry (`get_pending_attestation`), collects evidence again over the same challenge, and
//! sends only the devices not yet verified.

use attestation::{AttestationBundle, GpuEvidence, GpuRoots, gpu_binding_nonce};
use chain_client::ChainError;
use chain_client::near_primitives::gas::Gas;
use enclave_cloud_common::interfaces::registry::methods::MAX_CALL_TGAS;
use enclave_cloud_common::interfaces::registry::{
    AttestationPurpose, NodeUpdate, PendingAttestationView,
};
use enclave_cloud_common::{Hash32, NodeId};

use crate::attest::{AttestationProvider, DeviceEvidence, GpuEvidenceSource, now_unix_secs};
use crate::chain::NodeChain;
use crate::keys::EnclaveKeys;

/// What one call aims to burn at most: the 1 PGas limit minus a margin for the estimate's
/// error (a call that still runs out is retried smaller).
pub const TARGET_TGAS: u64 = 900;
/// The first per-device estimate, before any call was measured: a device costs one P-384
/// verification for its report and one for its leaf certificate (~78 Tgas each before issue
/// 16's speed-up), plus its share of parsing; the first device of a chain also verifies the
/// uncached intermediate. Refined from the burnt gas of every call.
pub const FIRST_DEVICE_TGAS_ESTIMATE: u64 = 250;
/// The bundle's own cost (TDX ~21 Tgas, dev ~5) in the estimate of a `register_node` /
/// `reattest` call.
pub const BUNDLE_TGAS_ESTIMATE: u64 = 30;
/// Fixed cost of any call (the transaction, parsing the input, the pending entry).
const CALL_BASE_TGAS: u64 = 5;

/// Why the devices could not be attested.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Attest(#[from] crate::attest::AttestError),
    #[error(
        "the attestation in progress declared {declared_gpus} GPUs and {declared_switches} switches; this machine has {gpus} and {switches}"
    )]
    CountsChanged {
        declared_gpus: u32,
        declared_switches: u32,
        gpus: usize,
        switches: usize,
    },
    #[error("the attestation in progress is for {found:?}, not {wanted:?}")]
    OtherAttestation {
        found: AttestationPurpose,
        wanted: AttestationPurpose,
    },
    #[error("device evidence: {0}")]
    Evidence(String),
    #[error("one device alone does not fit in a call: {0}")]
    DeviceTooExpensive(ChainError),
}

/// What to attest.
#[derive(Debug, Clone)]
pub enum Purpose {
    /// A new node with these commercial details.
    Register { details: NodeUpdate },
    /// A fresh attestation of this node.
    Reattest { node_id: NodeId },
}

impl Purpose {
    fn registry_purpose(&self) -> AttestationPurpose {
        match self {
            Self::Register { .. } => AttestationPurpose::Register,
            Self::Reattest { node_id } => AttestationPurpose::Reattest { node_id: *node_id },
        }
    }
}

/// Bounds on one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Stop after this many transactions (the rest is sent by the next run): what an
    /// interruption looks like, for tests and for operators who pace their spending.
    pub max_transactions: Option<u32>,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicesOutcome {
    /// The node (`None` only if a registration stopped before `register_node`).
    pub node_id: Option<NodeId>,
    /// Whether the attestation completed (every declared device verified).
    pub complete: bool,
    /// Whether this run continued an attestation begun earlier.
    pub resumed: bool,
    pub gpus: u32,
    pub switches: u32,
    /// Transactions this run sent (`begin_attestation` included), and the gas they burnt.
    pub transactions: u32,
    pub gas_burnt: Gas,
}

/// One progress line for people: "GPU 3/8 verified, 2 transactions so far".
pub fn progress_line(p: &PendingAttestationView, transactions: u32) -> String {
    let gpus = p.gpus_verified.len();
    let switches = p.switches_verified.len();
    let devices = if p.switches_declared > 0 {
        format!(
            "GPU {gpus}/{} and switch {switches}/{} verified",
            p.gpus_declared, p.switches_declared
        )
    } else {
        format!("GPU {gpus}/{} verified", p.gpus_declared)
    };
    format!("{devices}, {transactions} transactions so far")
}

/// The device id the registry records: SHA-256 of the leaf certificate (read without trusting
/// the chain: the registry verifies it).
fn device_id(ev: &GpuEvidence) -> Result<Hash32, DeviceError> {
    let roots = GpuRoots {
        dev_root_sha256: Some(attestation::DEV_GPU_ROOT_SHA256),
    };
    attestation::nvidia::leaf_identity(&ev.certificate_chain, &roots)
        .map(|leaf| Hash32(leaf.leaf_hash))
        .map_err(|e| DeviceError::Evidence(e.to_string()))
}

/// Devices of one call.
#[derive(Debug, Clone, Default)]
struct Batch {
    gpus: Vec<GpuEvidence>,
    switches: Vec<GpuEvidence>,
}

impl Batch {
    fn len(&self) -> usize {
        self.gpus.len() + self.switches.len()
    }
}

/// The devices not yet verified, GPUs first, and the measured cost of one.
struct Remaining {
    gpus: Vec<GpuEvidence>,
    switches: Vec<GpuEvidence>,
    device_tgas: u64,
}

impl Remaining {
    fn is_empty(&self) -> bool {
        self.gpus.is_empty() && self.switches.is_empty()
    }

    /// How many devices fit in a call that also costs `overhead_tgas`.
    fn fitting(&self, overhead_tgas: u64) -> usize {
        let room = TARGET_TGAS.saturating_sub(overhead_tgas + CALL_BASE_TGAS);
        ((room / self.device_tgas.max(1)) as usize).max(1)
    }

    fn take(&self, n: usize) -> Batch {
        let gpus: Vec<_> = self.gpus.iter().take(n).cloned().collect();
        let switches = self.switches.iter().take(n - gpus.len()).cloned().collect();
        Batch { gpus, switches }
    }

    fn sent(&mut self, batch: &Batch) {
        self.gpus.drain(..batch.gpus.len());
        self.switches.drain(..batch.switches.len());
    }

    /// Learns the per-device cost from a call's burnt gas.
    fn measured(&mut self, burnt: Gas, overhead_tgas: u64, devices: usize) {
        if devices == 0 {
            return;
        }
        let per = burnt
            .as_teragas()
            .saturating_sub(overhead_tgas + CALL_BASE_TGAS)
            .div_ceil(devices as u64);
        // A margin of a tenth: devices differ (the first of a chain verifies its CA).
        self.device_tgas = per + per / 10 + 1;
    }
}

fn out_of_gas(e: &ChainError) -> bool {
    let text = format!("{e} {e:?}");
    [
        "GasExceeded",
        "GasLimitExceeded",
        "Exceeded the prepaid gas",
        "Exceeded the maximum amount of gas allowed to burn",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// The node's devices on chain: registers or re-attests with every device of `source`.
pub struct DeviceAttestation<'a> {
    pub chain: &'a NodeChain,
    pub keys: &'a EnclaveKeys,
    pub provider: &'a dyn AttestationProvider,
    pub source: &'a dyn GpuEvidenceSource,
}

impl DeviceAttestation<'_> {
    fn signer_key(&self) -> Result<near_sdk::PublicKey, DeviceError> {
        let key = self.chain.enclave.public_key().to_string();
        key.parse().map_err(|e| {
            DeviceError::Chain(ChainError::Args {
                method: "get_pending_attestation".to_owned(),
                message: format!("{key}: {e:?}"),
            })
        })
    }

    /// The attestation in progress of this enclave key, if still open.
    pub async fn pending(&self) -> Result<Option<PendingAttestationView>, DeviceError> {
        let key = self.signer_key()?;
        let Some(p) = self
            .chain
            .registry_client()
            .get_pending_attestation(&key)
            .await?
        else {
            return Ok(None);
        };
        let now = self.chain.chain_now_ns().await?;
        Ok((now < p.expires_at_ns.0).then_some(p))
    }

    /// Runs (or resumes) the attestation; `progress` receives a line after each transaction.
    pub async fn run(
        &self,
        purpose: Purpose,
        limits: Limits,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<DevicesOutcome, DeviceError> {
        let registry = self.chain.registry_client();
        let wanted = purpose.registry_purpose();
        let mut outcome = DevicesOutcome {
            node_id: match &purpose {
                Purpose::Register { .. } => None,
                Purpose::Reattest { node_id } => Some(*node_id),
            },
            complete: false,
            resumed: false,
            gpus: 0,
            switches: 0,
            transactions: 0,
            gas_burnt: Gas::from_gas(0),
        };
        let limit_reached =
            |o: &DevicesOutcome| limits.max_transactions.is_some_and(|m| o.transactions >= m);

        // 1. The pending entry: resumed, or begun.
        let pending = match self.pending().await? {
            Some(p) if p.purpose == wanted => {
                outcome.resumed = true;
                progress(format!("resuming: {}", progress_line(&p, 0)));
                p
            }
            Some(p) => {
                return Err(DeviceError::OtherAttestation {
                    found: p.purpose,
                    wanted,
                });
            }
            None => {
                let (gpus, switches) = self.source.counts()?;
                let (p, tx) = registry
                    .begin_attestation(gpus, switches, outcome.node_id)?
                    .send_outcome(&self.chain.enclave)
                    .await?;
                outcome.transactions += 1;
                outcome.gas_burnt = outcome.gas_burnt.saturating_add(tx.gas_burnt);
                progress(format!(
                    "challenge {} for {gpus} GPUs and {switches} switches",
                    p.challenge
                ));
                p
            }
        };
        outcome.node_id = outcome.node_id.or(pending.node_id);
        outcome.gpus = pending.gpus_declared;
        outcome.switches = pending.switches_declared;

        // 2. Evidence of every device over the bound nonce; the ones not yet verified.
        let keys = self.keys.public();
        let nonce = gpu_binding_nonce(&keys.enclave_key, &keys.near_key, &pending.challenge.0);
        let DeviceEvidence { gpus, switches } = self.source.evidence(nonce)?;
        if gpus.len() != pending.gpus_declared as usize
            || switches.len() != pending.switches_declared as usize
        {
            return Err(DeviceError::CountsChanged {
                declared_gpus: pending.gpus_declared,
                declared_switches: pending.switches_declared,
                gpus: gpus.len(),
                switches: switches.len(),
            });
        }
        let mut remaining = Remaining {
            gpus: unverified(gpus, &pending.gpus_verified)?,
            switches: unverified(switches, &pending.switches_verified)?,
            device_tgas: FIRST_DEVICE_TGAS_ESTIMATE,
        };
        if limit_reached(&outcome) {
            return Ok(outcome);
        }

        // 3. The bundle with the first devices.
        if !pending.bundle_verified {
            let mut bundle = self
                .provider
                .attest(&keys, now_unix_secs())
                .map_err(DeviceError::Attest)?;
            bundle.gpu_challenge = Some(pending.challenge.to_string());
            let mut n = remaining.fitting(BUNDLE_TGAS_ESTIMATE);
            loop {
                let batch = remaining.take(n);
                match self.send_bundle(&purpose, &bundle, &batch).await {
                    Ok((node_id, burnt)) => {
                        outcome.node_id = Some(node_id);
                        outcome.transactions += 1;
                        outcome.gas_burnt = outcome.gas_burnt.saturating_add(burnt);
                        remaining.measured(burnt, BUNDLE_TGAS_ESTIMATE, batch.len());
                        remaining.sent(&batch);
                        break;
                    }
                    Err(DeviceError::Chain(e)) if out_of_gas(&e) && n > 1 => n /= 2,
                    Err(DeviceError::Chain(e)) if out_of_gas(&e) => {
                        return Err(DeviceError::DeviceTooExpensive(e));
                    }
                    Err(e) => return Err(e),
                }
            }
            self.refresh(&pending, outcome.transactions, progress)
                .await?;
        }

        // 4. The rest, as many per add_gpu as fit.
        let node_id = outcome.node_id.ok_or_else(|| {
            DeviceError::Evidence("the registry returned no node for the bundle".into())
        })?;
        while !remaining.is_empty() {
            if limit_reached(&outcome) {
                return Ok(outcome);
            }
            let mut n = remaining.fitting(0);
            loop {
                let batch = remaining.take(n);
                let call = registry.add_gpu(node_id, batch.gpus.clone(), batch.switches.clone())?;
                match call
                    .gas(Gas::from_teragas(MAX_CALL_TGAS))
                    .send_outcome(&self.chain.enclave)
                    .await
                {
                    Ok((_, tx)) => {
                        tracing::debug!(
                            devices = batch.len(),
                            gas_tgas = tx.gas_burnt.as_teragas(),
                            "add_gpu"
                        );
                        outcome.transactions += 1;
                        outcome.gas_burnt = outcome.gas_burnt.saturating_add(tx.gas_burnt);
                        remaining.measured(tx.gas_burnt, 0, batch.len());
                        remaining.sent(&batch);
                        break;
                    }
                    Err(e) if out_of_gas(&e) && n > 1 => {
                        tracing::info!(
                            devices = n,
                            "add_gpu ran out of gas (reverted): fewer devices"
                        );
                        n /= 2;
                    }
                    Err(e) if out_of_gas(&e) => return Err(DeviceError::DeviceTooExpensive(e)),
                    Err(e) => return Err(e.into()),
                }
            }
            self.refresh(&pending, outcome.transactions, progress)
                .await?;
        }
        outcome.complete = true;
        Ok(outcome)
    }

    /// `register_node` / `reattest` with the bundle and `batch`. Returns the node and the
    /// burnt gas.
    async fn send_bundle(
        &self,
        purpose: &Purpose,
        bundle: &AttestationBundle,
        batch: &Batch,
    ) -> Result<(NodeId, Gas), DeviceError> {
        let mut bundle = bundle.clone();
        bundle.gpus = batch.gpus.clone();
        bundle.switches = batch.switches.clone();
        let json =
            serde_json::to_value(&bundle).map_err(|e| DeviceError::Evidence(e.to_string()))?;
        let registry = self.chain.registry_client();
        let gas = Gas::from_teragas(MAX_CALL_TGAS);
        Ok(match purpose {
            Purpose::Register { details } => {
                let (id, tx) = registry
                    .register_node(&json, Some(details.clone()))?
                    .gas(gas)
                    .send_outcome(&self.chain.enclave)
                    .await?;
                (id, tx.gas_burnt)
            }
            Purpose::Reattest { node_id } => {
                let ((), tx) = registry
                    .reattest(*node_id, &json)?
                    .gas(gas)
                    .send_outcome(&self.chain.enclave)
                    .await?;
                (*node_id, tx.gas_burnt)
            }
        })
    }

    /// Reports the entry after a call (gone once complete: then everything declared is
    /// verified).
    async fn refresh(
        &self,
        before: &PendingAttestationView,
        transactions: u32,
        progress: &mut (dyn FnMut(String) + Send),
    ) -> Result<(), DeviceError> {
        let key = self.signer_key()?;
        let now = self
            .chain
            .registry_client()
            .get_pending_attestation(&key)
            .await?;
        let view = now.unwrap_or_else(|| PendingAttestationView {
            gpus_verified: vec![Hash32([0; 32]); before.gpus_declared as usize],
            switches_verified: vec![Hash32([0; 32]); before.switches_declared as usize],
            ..before.clone()
        });
        progress(progress_line(&view, transactions));
        Ok(())
    }
}

/// `devices` without those whose id is in `verified`.
fn unverified(
    devices: Vec<GpuEvidence>,
    verified: &[Hash32],
) -> Result<Vec<GpuEvidence>, DeviceError> {
    let mut out = Vec::new();
    for d in devices {
        if !verified.contains(&device_id(&d)?) {
            out.push(d);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclave_cloud_common::interfaces::registry::AttestationPurpose;
    use near_sdk::json_types::U64;

    fn view(gpus: usize, switches: usize) -> PendingAttestationView {
        PendingAttestationView {
            signer_key: "ed25519:6E8sCci9badyRkXb3JoRpBj5p8C6Tw41ELDZoiihKEtp"
                .parse()
                .unwrap(),
            operator: "op.near".parse().unwrap(),
            purpose: AttestationPurpose::Register,
            challenge: Hash32([1; 32]),
            gpus_declared: 8,
            switches_declared: 4,
            gpus_verified: vec![Hash32([2; 32]); gpus],
            switches_verified: vec![Hash32([3; 32]); switches],
            node_id: None,
            bundle_verified: false,
            expires_at_ns: U64(0),
        }
    }

    #[test]
    fn progress_lines_say_how_far_and_how_many_transactions() {
        assert_eq!(
            progress_line(&view(3, 0), 2),
            "GPU 3/8 and switch 0/4 verified, 2 transactions so far"
        );
        let mut no_switches = view(3, 0);
        no_switches.switches_declared = 0;
        assert_eq!(
            progress_line(&no_switches, 2),
            "GPU 3/8 verified, 2 transactions so far"
        );
    }

    fn evidence(n: usize) -> Vec<GpuEvidence> {
        attestation::dev_gpu::DevGpuFleet::new([1; 32], n, 0)
            .evidence(&[0; 32])
            .gpus
    }

    #[test]
    fn batches_follow_the_measured_cost() {
        let mut r = Remaining {
            gpus: evidence(8),
            switches: attestation::dev_gpu::DevGpuFleet::new([1; 32], 1, 4)
                .evidence(&[0; 32])
                .switches,
            device_tgas: FIRST_DEVICE_TGAS_ESTIMATE,
        };
        assert_eq!(r.fitting(BUNDLE_TGAS_ESTIMATE), 3, "865 Tgas of room / 250");
        let batch = r.take(3);
        assert_eq!((batch.gpus.len(), batch.switches.len()), (3, 0));
        // 3 devices burnt 500 Tgas with the bundle: ~155 each, with a tenth of margin.
        r.measured(Gas::from_teragas(500), BUNDLE_TGAS_ESTIMATE, 3);
        r.sent(&batch);
        assert_eq!(r.device_tgas, 155 + 15 + 1);
        assert_eq!(r.fitting(0), 5);
        let batch = r.take(7);
        assert_eq!((batch.gpus.len(), batch.switches.len()), (5, 2));
        r.sent(&batch);
        assert_eq!((r.gpus.len(), r.switches.len()), (0, 2));
        assert!(!r.is_empty());
    }

    #[test]
    fn verified_devices_are_not_sent_again() {
        let all = evidence(3);
        let done = vec![device_id(&all[1]).unwrap()];
        let rest = unverified(all.clone(), &done).unwrap();
        assert_eq!(rest, vec![all[0].clone(), all[2].clone()]);
    }
}
