//! The bridge to the `attestation` library: turns a bundle (or a GPU's evidence) into what the
//! registry stores, after checking the registry's own policy (allowlists, nonces, devices).
//! Nothing here writes state: a refused bundle changes nothing.

use attestation::{
    AttestationBundle, AttestationKind as BundleKind, CertCache, DefaultCrypto, GpuError,
    GpuEvidence, GpuVerdict, GraceStatus, TcbGrace as LibGrace, TcbPolicy, Verdict, VerifyPolicy,
    parse_near_ed25519_key, verify_bundle_with_cache, verify_gpu_evidence, verify_measured_gpu,
};
use enclave_cloud_common::{AttestationKind, GpuInfo, Hash32, Measurements, NodeId, TcbStatus};
use near_sdk::store::LookupSet;
use near_sdk::{CurveType, env};
use std::collections::BTreeSet;

use crate::errors::{RegistryError, Result};
use crate::policy::{NANOS_PER_SEC, Policy};
use crate::state::Registry;

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
    pub gpus: Vec<VerifiedGpu>,
}

/// A GPU whose evidence verified and whose nonce and device are new.
#[derive(Debug, Clone)]
pub struct VerifiedGpu {
    pub info: GpuInfo,
    pub nonce: [u8; 32],
    /// NVIDIA CA certificates verified by this call: cached for the next GPU.
    pub new_certs: Vec<[u8; 32]>,
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
    let grace = state
        .policy
        .tcb_grace
        .iter()
        .map(|g| {
            let status = match g.status {
                TcbStatus::OutOfDate => GraceStatus::OutOfDate,
                TcbStatus::SWHardeningNeeded => GraceStatus::SWHardeningNeeded,
                other => {
                    return Err(RegistryError::InvalidPolicy(format!(
                        "no grace for {other:?}"
                    )));
                }
            };
            Ok(LibGrace {
                status,
                until: g.until.0,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let dev_ca_public_key = match (&state.policy.dev_ca_key, dev_enabled(state)) {
        (Some(key), true) => key
            .as_bytes()
            .get(1..)
            .and_then(|b| <[u8; 32]>::try_from(b).ok()),
        _ => None,
    };
    Ok(VerifyPolicy {
        tcb: TcbPolicy { grace },
        dev_ca_public_key,
        require_compose_hash: true,
        // Minimal compile fix (gpu-lib): the dev GPU root policy is gpu-binding's.
        dev_gpu_root: None,
    })
}

fn dev_enabled(state: &Registry) -> bool {
    state.policy.dev_mode && state.dev_mode_available && !state.mainnet
}

/// Verifies a registration or re-attestation bundle signed by the current transaction's key.
/// `node` is the node being re-attested (its own GPUs may not count as "in use").
pub fn verify_registration(
    state: &Registry,
    mut bundle: AttestationBundle,
    node: Option<NodeId>,
) -> Result<Attested> {
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
    let mut nonce = None;
    for gpu in &bundle.gpus {
        check_nonce_fresh(state, &gpu.nonce, &mut nonce)?;
    }
    let cache = Cache(&state.cert_cache);
    // Minimal compile fix (gpu-lib): the bundle's binding nonce, for the measured GPUs taken
    // out below (gpu-binding redoes this flow).
    let enclave_key: [u8; 32] = bundle
        .enclave_key
        .as_slice()
        .try_into()
        .map_err(|_| refused("enclave_key is not 32 bytes"))?;
    let gpu_nonce =
        attestation::bundle_gpu_nonce(&bundle, &enclave_key, &bound).map_err(refused)?;
    // With the cheaper binding allowed, GPUs are checked after the quote, against its events.
    let measured_gpus =
        if state.policy.gpu.allow_measured_in_rtmr3 && bundle.kind == BundleKind::Tdx {
            std::mem::take(&mut bundle.gpus)
        } else {
            Vec::new()
        };
    let mut verdict = verify_bundle_with_cache(
        &bundle,
        now_secs(),
        &verify_policy(state)?,
        &DefaultCrypto::default(),
        &cache,
    )
    .map_err(refused)?;
    for (index, gpu) in measured_gpus.iter().enumerate() {
        verdict.gpus.push(
            measured_or_verified(&verdict, gpu, gpu_nonce.as_ref(), &cache)
                .map_err(|e| refused(format!("GPU {index}: {e}")))?,
        );
    }
    attested_from(state, verdict, node)
}

/// A GPU the attested VM verified and measured into RTMR3 (the quote authenticates the event)
/// costs no signature here; any other GPU gets the full chain and report verification.
fn measured_or_verified(
    verdict: &Verdict,
    gpu: &GpuEvidence,
    nonce: Option<&[u8; 32]>,
    cache: &Cache<'_>,
) -> Result<GpuVerdict, GpuError> {
    let nonce = nonce.ok_or_else(|| GpuError::Report("bundle has no GPU challenge".into()))?;
    let roots = attestation::GpuRoots::NVIDIA;
    match verify_measured_gpu(&verdict.events, gpu, nonce, &roots) {
        Err(GpuError::NotMeasured { .. }) => {
            verify_gpu_evidence(gpu, nonce, now_secs(), cache, &roots)
        }
        other => other,
    }
}

fn attested_from(state: &Registry, verdict: Verdict, node: Option<NodeId>) -> Result<Attested> {
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
    let mut seen = Seen::default();
    let gpus = verdict
        .gpus
        .iter()
        .map(|g| registry_gpu(state, g, node, &mut seen))
        .collect::<Result<Vec<_>>>()?;
    Ok(Attested {
        kind,
        tcb_status,
        measurements,
        image_digest,
        encryption_key,
        expires_at_ns: verdict.expires_at.map(|s| s.saturating_mul(NANOS_PER_SEC)),
        gpus,
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

/// What earlier GPUs of the same call took: their shared nonce and their devices.
#[derive(Default)]
struct Seen {
    nonce: Option<[u8; 32]>,
    devices: BTreeSet<Hash32>,
}

/// A node's GPUs (NVIDIA's multi-GPU evidence, nvtrust's verifier, our worker) answer one
/// nonce: every GPU of a call must carry the same one, and no earlier call may have used it.
fn check_nonce_fresh(state: &Registry, nonce: &[u8], seen: &mut Option<[u8; 32]>) -> Result<()> {
    let nonce = <[u8; 32]>::try_from(nonce)
        .map_err(|_| RegistryError::Gpu(format!("nonce must be 32 bytes, got {}", nonce.len())))?;
    match seen {
        Some(shared) if *shared == nonce => Ok(()),
        Some(shared) => Err(RegistryError::NonceNotShared {
            first: hex::encode(*shared),
            found: hex::encode(nonce),
        }),
        None if state.used_gpu_nonces.contains(&nonce) => {
            Err(RegistryError::NonceReused(hex::encode(nonce)))
        }
        None => {
            *seen = Some(nonce);
            Ok(())
        }
    }
}

/// Registry-side checks of one verified GPU: fresh nonce, allowed model, device not attached to
/// another live node.
fn registry_gpu(
    state: &Registry,
    g: &GpuVerdict,
    node: Option<NodeId>,
    seen: &mut Seen,
) -> Result<VerifiedGpu> {
    let nonce = hex32(&g.nonce, "GPU nonce").map_err(RegistryError::Gpu)?;
    check_nonce_fresh(state, &nonce, &mut seen.nonce)?;
    let allowed = &state.policy.gpu.allowed_models;
    if !allowed.contains(&g.model) {
        return Err(RegistryError::GpuModelNotAllowed(g.model.clone()));
    }
    let device_id = Hash32(hex32(&g.device_id, "GPU device id").map_err(RegistryError::Gpu)?);
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
    if !seen.devices.insert(device_id) {
        return Err(RegistryError::DuplicateGpu(device_id.to_string()));
    }
    let new_certs = g
        .verified_intermediates
        .iter()
        .map(|h| hex32(h, "certificate hash").map_err(RegistryError::Gpu))
        .collect::<Result<Vec<_>>>()?;
    Ok(VerifiedGpu {
        info: GpuInfo {
            model: g.model.clone(),
            device_id,
            driver_version: g.driver_version.clone(),
            vbios_version: g.vbios_version.clone(),
        },
        nonce,
        new_certs,
    })
}

/// Most P-384 signatures one `cache_gpu_certificates` call verifies (about 80 Tgas each).
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
        &attestation::GpuRoots::NVIDIA,
    )
    .map_err(|e| RegistryError::Gpu(e.to_string()))
}

/// Verifies one more GPU for `node` from its evidence.
pub fn verify_gpu(state: &Registry, node: NodeId, evidence: &GpuEvidence) -> Result<VerifiedGpu> {
    // A replayed nonce is refused before paying for any signature check.
    check_nonce_fresh(state, &evidence.nonce, &mut None)?;
    // Minimal compile fix (gpu-lib): the evidence's own nonce, as before; gpu-binding replaces it
    // with the node's binding nonce (enclave key, NEAR key, pending challenge).
    let own_nonce: [u8; 32] = evidence
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| RegistryError::Gpu("nonce is not 32 bytes".into()))?;
    let verdict = verify_gpu_evidence(
        evidence,
        &own_nonce,
        now_secs(),
        &Cache(&state.cert_cache),
        &attestation::GpuRoots::NVIDIA,
    )
    .map_err(|e| RegistryError::Gpu(e.to_string()))?;
    registry_gpu(state, &verdict, Some(node), &mut Seen::default())
}

#[cfg(test)]
mod nonce_tests {
    use super::*;

    /// Issue 16 item 2: a node with 2 or more GPUs presents one nonce for all of them; the
    /// registry refused the second GPU (`NonceReused`).
    #[test]
    fn every_gpu_of_a_call_shares_one_fresh_nonce() {
        near_sdk::testing_env!(near_sdk::test_utils::VMContextBuilder::new().build());
        let mut r = Registry::try_new(
            "owner.near".parse().unwrap_or_else(|_| unreachable!()),
            false,
            None,
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut seen = None;
        for _ in 0..8 {
            assert_eq!(check_nonce_fresh(&r, &[1; 32], &mut seen), Ok(()));
        }
        assert!(matches!(
            check_nonce_fresh(&r, &[2; 32], &mut seen),
            Err(RegistryError::NonceNotShared { .. })
        ));
        r.used_gpu_nonces.insert([1; 32]);
        assert!(matches!(
            check_nonce_fresh(&r, &[1; 32], &mut None),
            Err(RegistryError::NonceReused(_))
        ));
    }
}
