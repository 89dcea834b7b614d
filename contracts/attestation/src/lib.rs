//! TEE attestation verification for enclave-cloud nodes, on chain (wasm32 / NEAR) and off chain.
//!
//! * Intel TDX DCAP quotes through Phala's `dcap-qvl` (offline, pluggable crypto: NEAR host
//!   functions for P-256 and SHA-256 with the `near` feature),
//! * dstack event log replay of RTMR3 and the app compose hash,
//! * the key binding of `report_data` (near/mpc layout),
//! * NVIDIA GPU SPDM evidence and device certificate chains (P-384),
//! * a `dev` kind for localnet/testnet.
//!
//! Start at [`verify_bundle`]; README.md documents the bundle and verdict formats.

mod binding;
mod bundle;
mod collateral_json;
mod crypto;
mod der_tlv;
mod dev;
#[cfg(feature = "dev-gpu")]
pub mod dev_gpu;
pub mod dstack;
mod dstack_import;
mod error;
mod hexser;
mod keys;
pub mod nvidia;
pub mod p384_verify;
mod policy;
mod quote_layout;
pub mod tdx;
mod verdict;

/// The real attestation vectors committed with this crate (`testdata/`, see its README): the
/// one place tests, benches and tools of the workspace find them.
pub const TESTDATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");

pub use binding::{REPORT_DATA_VERSION, check_report_data, report_data_for};
pub use bundle::{
    AttestationBundle, AttestationKind, BUNDLE_VERSION, DevEvidence, EventLogEntry, GpuEvidence,
    TdxEvidence, parse_bundle,
};
#[cfg(feature = "near")]
pub use crypto::NearCrypto;
pub use crypto::{Crypto, DefaultCrypto, RustCrypto};
pub use dcap_qvl::QuoteCollateralV3;
pub use dev::{
    DEV_DOMAIN, dev_attestation_message, dev_attestation_message_with_events, verify_dev,
};
pub use dstack::{MODEL_WEIGHTS_EVENT, replay_rtmr3, runtime_event};
pub use dstack_import::bundle_from_dstack_public_data;
pub use error::{AttestationError, GpuError};
pub use keys::{format_near_ed25519_key, parse_near_ed25519_key};
pub use nvidia::{
    CertCache, GPU_BINDING_TAG, GPU_EVIDENCE_EVENT, GpuRoots, GpuVerdict, NoCache, SwitchVerdict,
    check_topology, gpu_binding_nonce, gpu_evidence_digest, verify_gpu_evidence,
    verify_measured_gpu, verify_switch_evidence,
};
pub use policy::{GraceStatus, TcbGrace, TcbPolicy, VerifyPolicy};
pub use quote_layout::INTEL_SGX_ROOT_CA_PEM;
pub use verdict::{BoundKeys, Measurements, Verdict};

/// SHA-256 of the development GPU root certificate's DER (`dev_gpu`, feature `dev-gpu`):
/// what a verifier pins where, and only where, dev attestation is enabled.
pub const DEV_GPU_ROOT_SHA256: [u8; 32] = [
    0xc4, 0x10, 0x7d, 0xbd, 0x27, 0xbf, 0x67, 0x92, 0x73, 0x12, 0xb3, 0x23, 0x94, 0xbb, 0xb8, 0x13,
    0xe0, 0xf9, 0xb2, 0xf9, 0x31, 0x3f, 0xa1, 0xdd, 0xb4, 0xfb, 0x42, 0x2a, 0x19, 0xd2, 0xfd, 0x23,
];

use bundle::fixed;
use hexser::to_hex;

/// Verifies a whole bundle at `now_unix_secs` under `policy`, verifying every GPU chain link.
pub fn verify_bundle<C: Crypto>(
    bundle: &AttestationBundle,
    now_unix_secs: u64,
    policy: &VerifyPolicy,
    crypto: &C,
) -> Result<Verdict, AttestationError> {
    verify_bundle_with_cache(bundle, now_unix_secs, policy, crypto, &NoCache)
}

/// [`verify_bundle`] with a cache of NVIDIA CA certificates verified earlier.
///
/// Cheap structural checks run first (keys, GPU nonce binding, quote header, key binding,
/// event log), the DCAP verification after them, the GPUs and switches last, then the
/// protected-PCIe topology of the whole node ([`check_topology`]).
pub fn verify_bundle_with_cache<C: Crypto, K: CertCache + ?Sized>(
    bundle: &AttestationBundle,
    now_unix_secs: u64,
    policy: &VerifyPolicy,
    crypto: &C,
    cache: &K,
) -> Result<Verdict, AttestationError> {
    let verdict = verify_bundle_partial(bundle, now_unix_secs, policy, crypto, cache)?;
    check_topology(&verdict.gpus, &verdict.switches).map_err(AttestationError::Topology)?;
    Ok(verdict)
}

/// [`verify_bundle_with_cache`] without the topology check: for a registry that receives a
/// node's devices over several calls (the same challenge, so the same binding nonce) and runs
/// [`check_topology`] once all of them are verified. Every device in `bundle` is verified and
/// bound.
pub fn verify_bundle_partial<C: Crypto, K: CertCache + ?Sized>(
    bundle: &AttestationBundle,
    now_unix_secs: u64,
    policy: &VerifyPolicy,
    crypto: &C,
    cache: &K,
) -> Result<Verdict, AttestationError> {
    if bundle.version != BUNDLE_VERSION {
        return Err(AttestationError::Malformed {
            what: "bundle version",
            reason: format!(
                "{} is not supported (expected {BUNDLE_VERSION})",
                bundle.version
            ),
        });
    }
    let enclave_key: [u8; 32] = fixed(&bundle.enclave_key, "enclave_key")?;
    let near_key = parse_near_ed25519_key(&bundle.near_public_key)?;
    let bound_keys = BoundKeys {
        enclave_key: to_hex(&enclave_key),
        near_public_key: format_near_ed25519_key(&near_key),
    };
    // Unbound GPU evidence (public samples, another node's) is refused before any expensive
    // check: only the reports' signed requests are parsed here.
    let gpu_nonce = bundle_gpu_nonce(bundle, &enclave_key, &near_key)?;
    if let Some(nonce) = &gpu_nonce {
        for (index, gpu) in bundle.gpus.iter().enumerate() {
            nvidia::check_bound(gpu, nonce)
                .map_err(|error| AttestationError::Gpu { index, error })?;
        }
        for (index, switch) in bundle.switches.iter().enumerate() {
            nvidia::check_bound(switch, nonce)
                .map_err(|error| AttestationError::Switch { index, error })?;
        }
    }
    let mut verdict = match bundle.kind {
        AttestationKind::Tdx => {
            let tdx = bundle
                .tdx
                .as_ref()
                .ok_or(AttestationError::MissingSection {
                    kind: "tdx",
                    section: "tdx",
                })?;
            verify_tdx_part(
                tdx,
                &enclave_key,
                &near_key,
                now_unix_secs,
                policy,
                crypto,
                bound_keys,
            )?
        }
        AttestationKind::Dev => {
            let dev = bundle
                .dev
                .as_ref()
                .ok_or(AttestationError::MissingSection {
                    kind: "dev",
                    section: "dev",
                })?;
            let ca = policy
                .dev_ca_public_key
                .as_ref()
                .ok_or(AttestationError::DevNotAllowed)?;
            let expires_at = verify_dev(dev, &enclave_key, &near_key, now_unix_secs, ca, crypto)?;
            Verdict {
                kind: AttestationKind::Dev,
                tcb_status: None,
                advisory_ids: Vec::new(),
                measurements: None,
                report_data: None,
                events: dstack::named_events(&dev.events),
                model_weights: hex_all(&dstack::model_weights(&dev.events)?),
                bound_keys,
                expires_at: Some(expires_at),
                gpus: Vec::new(),
                switches: Vec::new(),
            }
        }
    };
    if let Some(nonce) = &gpu_nonce {
        let roots = policy.gpu_roots();
        for (index, gpu) in bundle.gpus.iter().enumerate() {
            let v = verify_gpu_evidence(gpu, nonce, now_unix_secs, cache, &roots)
                .map_err(|error| AttestationError::Gpu { index, error })?;
            verdict.gpus.push(v);
        }
        for (index, switch) in bundle.switches.iter().enumerate() {
            let v = verify_switch_evidence(switch, nonce, now_unix_secs, cache, &roots)
                .map_err(|error| AttestationError::Switch { index, error })?;
            verdict.switches.push(v);
        }
    }
    Ok(verdict)
}

/// The binding nonce every GPU and switch of `bundle` must answer
/// ([`gpu_binding_nonce`] of its enclave key, NEAR key and `gpu_challenge`); `None` for a bundle
/// without devices. A bundle with devices and no (or a malformed) challenge is refused.
pub fn bundle_gpu_nonce(
    bundle: &AttestationBundle,
    enclave_key: &[u8; 32],
    near_key: &[u8; 32],
) -> Result<Option<[u8; 32]>, AttestationError> {
    if bundle.gpus.is_empty() && bundle.switches.is_empty() {
        return Ok(None);
    }
    let challenge = bundle
        .gpu_challenge
        .as_deref()
        .ok_or(AttestationError::Malformed {
            what: "gpu_challenge",
            reason: "a bundle with GPUs or switches must carry the registry's challenge".into(),
        })?;
    let challenge = parse_challenge(challenge)?;
    Ok(Some(gpu_binding_nonce(enclave_key, near_key, &challenge)))
}

fn hex_all(hashes: &[[u8; 32]]) -> Vec<String> {
    hashes.iter().map(|h| to_hex(h)).collect()
}

/// A GPU challenge: 64 hex characters.
pub fn parse_challenge(hex_challenge: &str) -> Result<[u8; 32], AttestationError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_challenge, &mut out).map_err(|e| AttestationError::Malformed {
        what: "gpu_challenge",
        reason: format!("expected 64 hex characters: {e}"),
    })?;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn verify_tdx_part<C: Crypto>(
    tdx: &TdxEvidence,
    enclave_key: &[u8; 32],
    near_key: &[u8; 32],
    now: u64,
    policy: &VerifyPolicy,
    crypto: &C,
    bound_keys: BoundKeys,
) -> Result<Verdict, AttestationError> {
    // Unauthenticated pre-checks: cheap, and a wrong signer fails before the expensive part.
    let td = tdx::parse_td_report(&tdx.quote)?;
    check_report_data(&td.report_data, enclave_key, near_key)?;
    let log = dstack::verify_event_log(
        &tdx.event_log,
        &td.rt_mr3,
        tdx.app_compose.as_deref(),
        policy.require_compose_hash,
        crypto,
    )?;
    // Now the quote itself: everything above is only trusted once this passes.
    let q = tdx::verify_tdx_quote(&tdx.quote, &tdx.collateral, now, &policy.tcb, crypto)?;
    if q.report_data != td.report_data || q.rtmr[3] != td.rt_mr3 {
        return Err(AttestationError::Quote(
            "verified report differs from the parsed one".into(),
        ));
    }
    let [rtmr0, rtmr1, rtmr2, rtmr3] = q.rtmr.map(|r| to_hex(&r));
    Ok(Verdict {
        kind: AttestationKind::Tdx,
        tcb_status: Some(q.tcb_status),
        advisory_ids: q.advisory_ids,
        measurements: Some(Measurements {
            mrtd: to_hex(&q.mrtd),
            rtmr0,
            rtmr1,
            rtmr2,
            rtmr3,
            compose_hash: log.compose_hash.map(|h| to_hex(&h)),
        }),
        report_data: Some(to_hex(&q.report_data)),
        events: log.events,
        model_weights: hex_all(&log.model_weights),
        bound_keys,
        expires_at: None,
        gpus: Vec::new(),
        switches: Vec::new(),
    })
}
