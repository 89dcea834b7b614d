//! The bridge to the `attestation` library: turns a bundle (or devices' evidence) into what the
//! registry stores, after checking the registry's own policy (allowlists, devices). Every
//! device answers the binding nonce of the pending attestation's challenge.
//! Nothing here writes state: a refused bundle changes nothing.

use attestation::dstack::NamedEvent;
use attestation::nvidia::{GpuRoots, SwitchVerdict, check_topology, verify_switch_evidence};
use attestation::{
    AttestationBundle, AttestationKind as BundleKind, CertCache, DEV_GPU_ROOT_SHA256,
    DefaultCrypto, GpuError, GpuEvidence, GpuVerdict, Verdict, VerifyPolicy, gpu_binding_nonce,
    parse_near_ed25519_key, verify_bundle_with_cache, verify_gpu_evidence, verify_measured_gpu,
};
use enclave_cloud_common::attestation_policy;
use enclave_cloud_common::{AttestationKind, GpuInfo, Hash32, Measurements, NodeId, TcbStatus};
use near_sdk::store::LookupSet;
use near_sdk::{CurveType, env};
use std::collections::BTreeSet;

use crate::errors::{RegistryError, Result};
use crate::policy::{NANOS_PER_SEC, Policy};
use crate::state::{PendingGpu, Registry, SwitchInfo};

/// A bundle that passed the library and the registry's policy.
#[derive(Debug, Clone)]
pub struct Attested {
    pub kind: AttestationKind,
    pub tcb_status: TcbStatus,
    pub measurements: Measurements,
    pub image_digest: Option<Hash32>,
    pub encryption_key: [u8; 32],
    /// The dev attestation's own signed expiry, ns.
    pub expires_at_ns: Option<u64>,
    /// RTMR3 events (GPUs verified inside the VM are found there).
    pub events: Vec<NamedEvent>,
}

/// A GPU whose evidence verified (bound to the challenge) and whose device is free.
#[derive(Debug, Clone)]
pub struct VerifiedGpu {
    pub gpu: PendingGpu,
    /// NVIDIA CA certificates verified by this call: cached for the next device.
    pub new_certs: Vec<[u8; 32]>,
}

/// An NVSwitch whose evidence verified and whose device is free.
#[derive(Debug, Clone)]
pub struct VerifiedSwitch {
    pub switch: SwitchInfo,
    pub new_certs: Vec<[u8; 32]>,
}

/// The devices one call verified.
#[derive(Debug, Clone, Default)]
pub struct VerifiedDevices {
    pub gpus: Vec<VerifiedGpu>,
    pub switches: Vec<VerifiedSwitch>,
}

/// The registry's certificate cache as the library reads it.
struct Cache<'a>(&'a LookupSet<[u8; 32]>);

impl CertCache for Cache<'_> {
    fn contains(&self, sha256_of_der: &[u8; 32]) -> bool {
        self.0.contains(sha256_of_der)
    }
}

fn now_secs() -> u64 {
    env::block_timestamp() / NANOS_PER_SEC
}

fn refused(e: impl ToString) -> RegistryError {
    RegistryError::Attestation(e.to_string())
}

/// The transaction's signing key as 32 ed25519 bytes.
pub fn signer_ed25519() -> Result<[u8; 32]> {
    let pk = env::signer_account_pk();
    let bytes = pk.as_bytes();
    match (
        pk.curve_type(),
        bytes.get(1..).and_then(|b| <[u8; 32]>::try_from(b).ok()),
    ) {
        (CurveType::ED25519, Some(key)) => Ok(key),
        _ => Err(RegistryError::SignerKeyNotEd25519(String::from(&pk))),
    }
}

/// The library's policy, derived from governance settings.
fn verify_policy(state: &Registry) -> Result<VerifyPolicy> {
    attestation_policy::verify_policy(&state.policy, dev_enabled(state))
        .map_err(|e| RegistryError::InvalidPolicy(e.to_string()))
}

fn dev_enabled(state: &Registry) -> bool {
    attestation_policy::dev_attestation_enabled(
        &state.policy,
        state.dev_mode_available,
        state.mainnet,
    )
}

/// NVIDIA's pinned root, and the fixed development GPU root only where dev attestation is
/// enabled (never on mainnet).
fn gpu_roots(state: &Registry) -> GpuRoots {
    GpuRoots {
        dev_root_sha256: dev_enabled(state).then_some(DEV_GPU_ROOT_SHA256),
    }
}

/// Verifies a registration or re-attestation bundle signed by the current transaction's key.
/// Its GPUs and switches are left to [`verify_devices`] (the caller knows the challenge):
/// a bundle with devices must carry a challenge, checked against the pending one by the caller.
pub fn verify_registration(state: &Registry, bundle: &mut AttestationBundle) -> Result<Attested> {
    // Cheap checks first: a bundle replayed by another key fails before any crypto.
    let signer = signer_ed25519()?;
    let bound = parse_near_ed25519_key(&bundle.near_public_key).map_err(refused)?;
    if bound != signer {
        return Err(RegistryError::SignerKeyMismatch {
            bound: bundle.near_public_key.clone(),
            signer: String::from(&env::signer_account_pk()),
        });
    }
    if bundle.kind == BundleKind::Dev && !dev_enabled(state) {
        return Err(RegistryError::DevModeDisabled);
    }
    let gpus = std::mem::take(&mut bundle.gpus);
    let switches = std::mem::take(&mut bundle.switches);
    let verdict = verify_bundle_with_cache(
        bundle,
        now_secs(),
        &verify_policy(state)?,
        &DefaultCrypto::default(),
        &Cache(&state.cert_cache),
    )
    .map_err(refused)?;
    bundle.gpus = gpus;
    bundle.switches = switches;
    attested_from(state, verdict)
}

/// The nonce every device of this attestation answers.
pub fn binding_nonce(encryption_key: &[u8; 32], challenge: &[u8; 32]) -> Result<[u8; 32]> {
    Ok(gpu_binding_nonce(
        encryption_key,
        &signer_ed25519()?,
        challenge,
    ))
}

/// Where devices are verified: the binding nonce, the node they join (its own devices are not
/// "in use") and the devices the pending attestation already holds.
pub struct DeviceContext<'a> {
    pub nonce: [u8; 32],
    pub node: Option<NodeId>,
    pub already: &'a [Hash32],
    /// The bundle's RTMR3 events, when its GPUs may have been verified inside the VM.
    pub events: Option<&'a [NamedEvent]>,
}

/// Verifies GPUs and switches bound to `ctx.nonce` and checks the registry's policy on each:
/// allowed GPU model, device not in another live or pending node, not revoked, not twice.
pub fn verify_devices(
    state: &Registry,
    ctx: &DeviceContext<'_>,
    gpus: &[GpuEvidence],
    switches: &[GpuEvidence],
) -> Result<VerifiedDevices> {
    let cache = Cache(&state.cert_cache);
    let roots = gpu_roots(state);
    let mut seen: BTreeSet<Hash32> = ctx.already.iter().copied().collect();
    let measured = match ctx.events {
        Some(events) if state.policy.gpu.allow_measured_in_rtmr3 => Some(events),
        _ => None,
    };
    let mut out = VerifiedDevices::default();
    for (index, ev) in gpus.iter().enumerate() {
        let verdict = match measured {
            Some(events) => match verify_measured_gpu(events, ev, &ctx.nonce, &roots) {
                Err(GpuError::NotMeasured { .. }) => {
                    verify_gpu_evidence(ev, &ctx.nonce, now_secs(), &cache, &roots)
                }
                other => other,
            },
            None => verify_gpu_evidence(ev, &ctx.nonce, now_secs(), &cache, &roots),
        }
        .map_err(|e| RegistryError::Gpu(format!("GPU {index}: {e}")))?;
        out.gpus
            .push(registry_gpu(state, &verdict, ctx.node, &mut seen)?);
    }
    for (index, ev) in switches.iter().enumerate() {
        let verdict = verify_switch_evidence(ev, &ctx.nonce, now_secs(), &cache, &roots)
            .map_err(|e| RegistryError::Gpu(format!("switch {index}: {e}")))?;
        out.switches
            .push(registry_switch(state, &verdict, ctx.node, &mut seen)?);
    }
    Ok(out)
}

/// NVIDIA's topology check over every device of a complete attestation (they may have been
/// verified over several calls: the verdicts are rebuilt from what was recorded).
pub fn check_node_topology(gpus: &[PendingGpu], switches: &[SwitchInfo]) -> Result<()> {
    let gpus: Vec<GpuVerdict> = gpus
        .iter()
        .map(|g| GpuVerdict {
            model: g.info.model.clone(),
            device_id: g.info.device_id.to_string(),
            nonce: String::new(),
            driver_version: g.info.driver_version.clone(),
            vbios_version: g.info.vbios_version.clone(),
            project: None,
            project_sku: None,
            chip_sku: None,
            measurements: Vec::new(),
            verified_intermediates: Vec::new(),
            measured_in_rtmr3: false,
            protected_pcie: g.protected_pcie,
            switch_pdis: g.switch_pdis.clone(),
        })
        .collect();
    let switches: Vec<SwitchVerdict> = switches
        .iter()
        .map(|s| SwitchVerdict {
            model: s.model.clone(),
            device_id: s.device_id.to_string(),
            nonce: String::new(),
            pdi: s.pdi.clone(),
            protected_pcie: s.protected_pcie,
            gpu_pdis: s.gpu_pdis.clone(),
            measurements: Vec::new(),
            verified_intermediates: Vec::new(),
        })
        .collect();
    check_topology(&gpus, &switches).map_err(|e| RegistryError::Topology(e.to_string()))
}

fn attested_from(state: &Registry, verdict: Verdict) -> Result<Attested> {
    let encryption_key = hex32(&verdict.bound_keys.enclave_key, "enclave_key").map_err(refused)?;
    let (kind, tcb_status, measurements, image_digest) = match verdict.kind {
        BundleKind::Dev => (
            AttestationKind::Dev,
            TcbStatus::None,
            Measurements::default(),
            None,
        ),
        BundleKind::Tdx => {
            let m = verdict
                .measurements
                .as_ref()
                .ok_or_else(|| refused("TDX verdict without measurements"))?;
            let measurements = Measurements {
                mrtd: m.mrtd.clone(),
                rtmr0: m.rtmr0.clone(),
                rtmr1: m.rtmr1.clone(),
                rtmr2: m.rtmr2.clone(),
                rtmr3: m.rtmr3.clone(),
                compose_hash: m
                    .compose_hash
                    .as_deref()
                    .map(|h| hex32(h, "compose_hash").map(Hash32))
                    .transpose()
                    .map_err(refused)?,
            };
            check_measurements(&state.policy, &measurements)?;
            let image_digest = image_digest(&state.policy, &verdict)?;
            let tcb = tcb_status(verdict.tcb_status.as_deref().unwrap_or_default())?;
            (AttestationKind::Tdx, tcb, measurements, image_digest)
        }
    };
    Ok(Attested {
        kind,
        tcb_status,
        measurements,
        image_digest,
        encryption_key,
        expires_at_ns: verdict.expires_at.map(|s| s.saturating_mul(NANOS_PER_SEC)),
        events: verdict.events,
    })
}

/// The allowlists: an allowed platform (MRTD + RTMR0-2) and an allowed compose hash.
fn check_measurements(policy: &Policy, m: &Measurements) -> Result<()> {
    if !policy.allows_platform(m) {
        return Err(RegistryError::PlatformNotAllowed {
            mrtd: m.mrtd.clone(),
        });
    }
    let compose = m.compose_hash.ok_or(RegistryError::ComposeHashMissing)?;
    if !policy.compose_hashes.contains(&compose) {
        return Err(RegistryError::ComposeHashNotAllowed(compose.to_string()));
    }
    Ok(())
}

/// The container image digest from the RTMR3 event the policy names, checked against the
/// allowlist when there is one.
fn image_digest(policy: &Policy, verdict: &Verdict) -> Result<Option<Hash32>> {
    let digest = verdict
        .events
        .iter()
        .find(|e| e.name == policy.image_digest_event)
        .map(|e| digest_from_payload(&e.payload))
        .transpose()?;
    if policy.image_digests.is_empty() {
        return Ok(digest);
    }
    let digest = digest.ok_or(RegistryError::ImageDigestMissing)?;
    if !policy.image_digests.contains(&digest) {
        return Err(RegistryError::ImageDigestNotAllowed(digest.to_string()));
    }
    Ok(Some(digest))
}

/// An image digest event carries 32 raw bytes, or their hex as text (optionally `sha256:`).
fn digest_from_payload(payload_hex: &str) -> Result<Hash32> {
    let bytes =
        hex::decode(payload_hex).map_err(|e| refused(format!("image digest payload: {e}")))?;
    if let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) {
        return Ok(Hash32(raw));
    }
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim().trim_start_matches("sha256:");
    hex32(text, "image digest").map(Hash32).map_err(refused)
}

fn tcb_status(name: &str) -> Result<TcbStatus> {
    Ok(match name {
        "UpToDate" => TcbStatus::UpToDate,
        "SWHardeningNeeded" => TcbStatus::SWHardeningNeeded,
        "ConfigurationNeeded" => TcbStatus::ConfigurationNeeded,
        "ConfigurationAndSWHardeningNeeded" => TcbStatus::ConfigurationAndSWHardeningNeeded,
        "OutOfDate" => TcbStatus::OutOfDate,
        "OutOfDateConfigurationNeeded" => TcbStatus::OutOfDateConfigurationNeeded,
        "Revoked" => TcbStatus::Revoked,
        other => return Err(refused(format!("unknown TCB status '{other}'"))),
    })
}

fn hex32(s: &str, what: &str) -> std::result::Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)
        .map_err(|e| format!("{what} '{s}' is not 32 hex bytes: {e}"))?;
    Ok(out)
}

/// Registry-side checks of a verified device: not attached to or reserved by another node,
/// not revoked, not twice in this attestation.
fn check_device(
    state: &Registry,
    device_id: Hash32,
    node: Option<NodeId>,
    seen: &mut BTreeSet<Hash32>,
) -> Result<()> {
    if let Some(owner) = state.gpu_owner.get(&device_id)
        && Some(*owner) != node
    {
        return Err(RegistryError::GpuInUse {
            device_id: device_id.to_string(),
            node: *owner,
        });
    }
    if crate::governance::revoked_gpus().contains(&device_id) {
        return Err(RegistryError::GpuRevoked(device_id.to_string()));
    }
    if !seen.insert(device_id) {
        return Err(RegistryError::DuplicateGpu(device_id.to_string()));
    }
    Ok(())
}

fn cert_hashes(hex_hashes: &[String]) -> Result<Vec<[u8; 32]>> {
    hex_hashes
        .iter()
        .map(|h| hex32(h, "certificate hash").map_err(RegistryError::Gpu))
        .collect()
}

/// Registry-side checks of one verified GPU: allowed model, and [`check_device`].
fn registry_gpu(
    state: &Registry,
    g: &GpuVerdict,
    node: Option<NodeId>,
    seen: &mut BTreeSet<Hash32>,
) -> Result<VerifiedGpu> {
    let allowed = &state.policy.gpu.allowed_models;
    if !allowed.contains(&g.model) {
        return Err(RegistryError::GpuModelNotAllowed(g.model.clone()));
    }
    crate::golden::check_gpu(g)?;
    let device_id = Hash32(hex32(&g.device_id, "GPU device id").map_err(RegistryError::Gpu)?);
    check_device(state, device_id, node, seen)?;
    Ok(VerifiedGpu {
        gpu: PendingGpu {
            info: GpuInfo {
                model: g.model.clone(),
                device_id,
                driver_version: g.driver_version.clone(),
                vbios_version: g.vbios_version.clone(),
            },
            protected_pcie: g.protected_pcie,
            switch_pdis: g.switch_pdis.clone(),
        },
        new_certs: cert_hashes(&g.verified_intermediates)?,
    })
}

/// Registry-side checks of one verified NVSwitch ([`check_device`]; the library refuses a
/// leaf that is not a switch).
fn registry_switch(
    state: &Registry,
    s: &SwitchVerdict,
    node: Option<NodeId>,
    seen: &mut BTreeSet<Hash32>,
) -> Result<VerifiedSwitch> {
    let device_id = Hash32(hex32(&s.device_id, "switch device id").map_err(RegistryError::Gpu)?);
    check_device(state, device_id, node, seen)?;
    Ok(VerifiedSwitch {
        switch: SwitchInfo {
            model: s.model.clone(),
            device_id,
            pdi: s.pdi.clone(),
            protected_pcie: s.protected_pcie,
            gpu_pdis: s.gpu_pdis.clone(),
        },
        new_certs: cert_hashes(&s.verified_intermediates)?,
    })
}

/// Most P-384 signatures one `cache_gpu_certificates` call verifies (about 29 Tgas each).
pub const MAX_CHAIN_STEP_SIGNATURES: u8 = 3;

/// Verifies up to `max_signatures` not yet cached certificates of a GPU's NVIDIA chain (PEM,
/// leaf first), from the pinned root down, each against its already verified issuer; returns
/// their hashes to cache. Once the whole chain is cached (leaf included), `add_gpu` for that
/// device only verifies the report signature.
pub fn verify_gpu_chain_step(
    state: &Registry,
    certificate_chain: &str,
    max_signatures: u8,
) -> Result<Vec<[u8; 32]>> {
    if max_signatures == 0 || max_signatures > MAX_CHAIN_STEP_SIGNATURES {
        return Err(RegistryError::invalid(
            "max_signatures",
            format!("{max_signatures} is not in 1..={MAX_CHAIN_STEP_SIGNATURES}"),
        ));
    }
    attestation::nvidia::verify_chain_step(
        certificate_chain,
        now_secs(),
        &Cache(&state.cert_cache),
        usize::from(max_signatures),
        &gpu_roots(state),
    )
    .map_err(|e| RegistryError::Gpu(e.to_string()))
}
