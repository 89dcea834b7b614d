//! Gas probe: the smallest contract around the library, so nearcore's VM can measure what
//! verification costs on chain (see `gas-bench/`). Build:
//! `cargo build -p attestation --example gas_probe --features near --target wasm32-unknown-unknown --release`
//!
//! Methods (input = JSON, block time = the chain's):
//! * `verify_bundle(bundle)`: the whole bundle with the default policy; returns the verdict.
//! * `verify_gpu(gpu_evidence)`: one GPU, full chain; returns the device id. The probe measures
//!   cost, not binding: the expected nonce is the evidence's own (`nonce` field).
//! * `verify_gpu_cached({evidence, cache: [hex sha256]})`: one GPU with cached certificates.
//! * `verify_ca_step({evidence, cache})`: verifies the next certificate of the chain.

use attestation::{GpuEvidence, GpuRoots, NearCrypto, NoCache, VerifyPolicy};
use near_sdk::env;
use std::collections::BTreeSet;

fn now_secs() -> u64 {
    env::block_timestamp() / 1_000_000_000
}

fn input() -> Vec<u8> {
    env::input().unwrap_or_default()
}

/// The nonce the evidence claims (the probe measures cost; binding is the callers' job).
fn own_nonce(ev: &GpuEvidence) -> [u8; 32] {
    match ev.nonce.as_slice().try_into() {
        Ok(n) => n,
        Err(_) => env::panic_str("nonce is not 32 bytes"),
    }
}

/// Verifies a bundle; panics with the error's message when invalid.
#[unsafe(no_mangle)]
pub extern "C" fn verify_bundle() {
    let result = attestation::parse_bundle(&input()).and_then(|b| {
        attestation::verify_bundle(&b, now_secs(), &VerifyPolicy::default(), &NearCrypto)
    });
    match result.map(|v| serde_json::to_vec(&v)) {
        Ok(Ok(json)) => env::value_return(&json),
        Ok(Err(e)) => env::panic_str(&e.to_string()),
        Err(e) => env::panic_str(&e.to_string()),
    }
}

/// Verifies one GPU's evidence with no cached intermediates.
#[unsafe(no_mangle)]
pub extern "C" fn verify_gpu() {
    let ev: GpuEvidence = match serde_json::from_slice(&input()) {
        Ok(ev) => ev,
        Err(e) => env::panic_str(&e.to_string()),
    };
    match attestation::verify_gpu_evidence(
        &ev,
        &own_nonce(&ev),
        now_secs(),
        &NoCache,
        &GpuRoots::NVIDIA,
    ) {
        Ok(v) => env::value_return(v.device_id.as_bytes()),
        Err(e) => env::panic_str(&e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct CachedGpu {
    evidence: GpuEvidence,
    /// SHA-256 (hex) of certificates verified before.
    cache: Vec<String>,
}

fn cached_input() -> (GpuEvidence, BTreeSet<[u8; 32]>) {
    let input: CachedGpu = match serde_json::from_slice(&input()) {
        Ok(i) => i,
        Err(e) => env::panic_str(&e.to_string()),
    };
    let cache = input
        .cache
        .iter()
        .filter_map(|h| hex::decode(h).ok()?.try_into().ok())
        .collect();
    (input.evidence, cache)
}

/// Verifies one GPU's evidence with the given certificate cache.
#[unsafe(no_mangle)]
pub extern "C" fn verify_gpu_cached() {
    let (ev, cache) = cached_input();
    match attestation::verify_gpu_evidence(
        &ev,
        &own_nonce(&ev),
        now_secs(),
        &cache,
        &GpuRoots::NVIDIA,
    ) {
        Ok(v) => env::value_return(v.device_id.as_bytes()),
        Err(e) => env::panic_str(&e.to_string()),
    }
}

/// Verifies the next certificate of a GPU chain (one P-384 signature).
#[unsafe(no_mangle)]
pub extern "C" fn verify_ca_step() {
    let (ev, cache) = cached_input();
    match attestation::nvidia::verify_chain_step(
        &ev.certificate_chain,
        now_secs(),
        &cache,
        1,
        &GpuRoots::NVIDIA,
    ) {
        Ok(v) => env::value_return(hex::encode(v.concat()).as_bytes()),
        Err(e) => env::panic_str(&e.to_string()),
    }
}
