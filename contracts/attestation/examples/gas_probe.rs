//! Gas probe: the smallest contract around the library, so nearcore's VM can measure what
//! verification costs on chain (see `gas-bench/`). Build:
//! `cargo build -p attestation --example gas_probe --features near --target wasm32-unknown-unknown --release`
//!
//! Methods (input = JSON, block time = the chain's):
//! * `verify_bundle(bundle)`: the whole bundle with the default policy; returns the verdict.
//! * `verify_gpu(gpu_evidence)`: one GPU, full chain; returns the device id. The probe measures
//!   cost, not binding: the expected nonce is the evidence's own (`nonce` field).
//! * `verify_gpu_cached({evidence, cache: [hex sha256], dev_root?})`: one GPU with cached
//!   certificates (`dev_root`: the SHA-256 hex of a dev GPU root to trust, see `dev_gpu`).
//! * `verify_ca_step({evidence, cache, dev_root?})`: verifies the next certificate of the chain.
//! * `parse_gpu({evidence, cache, dev_root?})`: everything but signatures (nonce binding, report
//!   and chain parsing, chain shape): subtracted from the others to isolate one P-384 check.
//! * `verify_p384({key_sec1_hex, msg_hex, sig_hex})`: one P-384 signature (`sig` = `r || s`).

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
    /// SHA-256 (hex) of a dev GPU root to trust besides NVIDIA's.
    #[serde(default)]
    dev_root: Option<String>,
}

fn cached_input() -> (GpuEvidence, BTreeSet<[u8; 32]>, GpuRoots) {
    let input: CachedGpu = match serde_json::from_slice(&input()) {
        Ok(i) => i,
        Err(e) => env::panic_str(&e.to_string()),
    };
    let cache = input
        .cache
        .iter()
        .filter_map(|h| hex::decode(h).ok()?.try_into().ok())
        .collect();
    let roots = GpuRoots {
        dev_root_sha256: input
            .dev_root
            .and_then(|h| hex::decode(h).ok()?.try_into().ok()),
    };
    (input.evidence, cache, roots)
}

/// Verifies one GPU's evidence with the given certificate cache.
#[unsafe(no_mangle)]
pub extern "C" fn verify_gpu_cached() {
    let (ev, cache, roots) = cached_input();
    match attestation::verify_gpu_evidence(&ev, &own_nonce(&ev), now_secs(), &cache, &roots) {
        Ok(v) => env::value_return(v.device_id.as_bytes()),
        Err(e) => env::panic_str(&e.to_string()),
    }
}

/// Verifies the next certificate of a GPU chain (one P-384 signature).
#[unsafe(no_mangle)]
pub extern "C" fn verify_ca_step() {
    let (ev, cache, roots) = cached_input();
    match attestation::nvidia::verify_chain_step(
        &ev.certificate_chain,
        now_secs(),
        &cache,
        1,
        &roots,
    ) {
        Ok(v) => env::value_return(hex::encode(v.concat()).as_bytes()),
        Err(e) => env::panic_str(&e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct P384Input {
    /// SEC1 public key, hex.
    key_sec1_hex: String,
    /// The signed message (hashed with SHA-384 inside), hex.
    msg_hex: String,
    /// `r || s`, hex.
    sig_hex: String,
}

/// Exactly one ECDSA P-384 / SHA-384 verification (what each certificate and report costs).
#[unsafe(no_mangle)]
pub extern "C" fn verify_p384() {
    let input: P384Input = match serde_json::from_slice(&input()) {
        Ok(i) => i,
        Err(e) => env::panic_str(&e.to_string()),
    };
    let decode = |h: &str| hex::decode(h).unwrap_or_else(|e| env::panic_str(&e.to_string()));
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(&decode(&input.key_sec1_hex))
        .unwrap_or_else(|_| env::panic_str("bad key"));
    let sig = p384::ecdsa::Signature::from_slice(&decode(&input.sig_hex))
        .unwrap_or_else(|_| env::panic_str("bad signature encoding"));
    match attestation::p384_verify::verify(&key, &decode(&input.msg_hex), &sig) {
        Ok(()) => env::value_return(b"ok"),
        Err(_) => env::panic_str("signature does not verify"),
    }
}

/// Parses and binds one GPU's evidence without verifying any signature.
#[unsafe(no_mangle)]
pub extern "C" fn parse_gpu() {
    let (ev, _, roots) = cached_input();
    let result = attestation::nvidia::check_bound(&ev, &own_nonce(&ev))
        .and_then(|()| attestation::nvidia::leaf_identity(&ev.certificate_chain, &roots));
    match result {
        Ok(leaf) => env::value_return(hex::encode(leaf.leaf_hash).as_bytes()),
        Err(e) => env::panic_str(&e.to_string()),
    }
}
