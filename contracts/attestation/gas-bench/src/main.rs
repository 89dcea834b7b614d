//! Runs the `gas_probe` contract (contracts/attestation/examples/gas_probe.rs) in nearcore's
//! wasmtime VM under the current protocol's costs (the shared `gas-harness`) and prints the
//! gas burnt:
//!
//! ```text
//! BENCH attestation.verify_bundle_tdx.gas <Tgas> Tgas
//! BENCH attestation.verify_bundle_tdx_gpu.gas <Tgas> Tgas
//! BENCH attestation.verify_gpu.gas <Tgas> Tgas
//! BENCH attestation.verify_gpu_cached_intermediates.gas <Tgas> Tgas
//! BENCH attestation.verify_gpu_known_device.gas <Tgas> Tgas
//! BENCH attestation.verify_gpu_ca_step.gas <Tgas> Tgas
//! BENCH attestation.p384_verify_ca_key.gas <Tgas> Tgas
//! BENCH attestation.p384_verify_device_key.gas <Tgas> Tgas
//! BENCH attestation.gas_probe.wasm_size <bytes> bytes
//! BENCH attestation.dev_gpu.verify_gpu.gas <Tgas> Tgas            (dev chain, nothing cached)
//! BENCH attestation.dev_gpu.ca_step.gas <Tgas> Tgas               (one chain step)
//! BENCH attestation.dev_gpu.known_device.gas <Tgas> Tgas          (report signature only)
//! BENCH attestation.dev_gpu.parse_only.gas <Tgas> Tgas            (no signature)
//! BENCH attestation.p384_verify.ca_key.gas <Tgas> Tgas            (dev chain, by difference)
//! BENCH attestation.p384_verify.device_key.gas <Tgas> Tgas        (dev chain, by difference)
//! ```
//!
//! The two `p384_verify` figures isolate one P-384 verification on the dev chain (the same code
//! as for NVIDIA's): with a CA key, the leaf certificate checked with the intermediate's key
//! (intermediate cached minus known device); with a device key, the report checked with the
//! leaf's key (known device minus parsing only).
//!
//! Usage: `attestation-gas-bench [PROBE.wasm]` (default: the release example in
//! `$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/examples/gas_probe.wasm`). Gas is
//! deterministic; it does not depend on the machine or on this harness's build profile.

use anyhow::{Context, Result};
use attestation::{GpuEvidence, bundle_from_dstack_public_data};
use gas_harness::{
    Call, Contract, ExtCosts, Gas, NEAR, SEC, T0, Vm, print_bench, print_gas, tgas,
    wasm_arg_release_file,
};
use std::path::PathBuf;

/// The dstack vector's valid time, in nanoseconds.
const DSTACK_NOW_NS: u64 = T0;
const GPU_NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

fn vectors() -> PathBuf {
    PathBuf::from(attestation::TESTDATA_DIR)
}

fn read(rel: &str) -> Result<Vec<u8>> {
    let p = vectors().join(rel);
    std::fs::read(&p).with_context(|| format!("read {}", p.display()))
}

fn hopper() -> Result<GpuEvidence> {
    let report = String::from_utf8(read("nvidia-hopper-single/hopperAttestationReport.txt")?)?;
    Ok(GpuEvidence {
        report: hex::decode(report.trim())?,
        nonce: hex::decode(GPU_NONCE)?,
        certificate_chain: String::from_utf8(read("nvidia-hopper-single/hopperCertChain.txt")?)?,
    })
}

/// One P-384 verification as `verify_p384` takes it.
fn p384_input(key_sec1: &[u8], msg: &[u8], sig: &p384::ecdsa::Signature) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&serde_json::json!({
        "key_sec1_hex": hex::encode(key_sec1),
        "msg_hex": hex::encode(msg),
        "sig_hex": hex::encode(sig.to_bytes()),
    }))?)
}

/// The two kinds of P-384 signature of the H100 evidence: the leaf certificate signed by its
/// issuing CA's key, and the SPDM report signed by the device (leaf) key.
fn hopper_p384_vectors(gpu: &GpuEvidence) -> Result<(Vec<u8>, Vec<u8>)> {
    use der::{Decode, Encode};
    let certs = pem::parse_many(&gpu.certificate_chain)?
        .iter()
        .map(|p| x509_cert::Certificate::from_der(p.contents()))
        .collect::<Result<Vec<_>, _>>()?;
    let key = |cert: &x509_cert::Certificate| -> Result<Vec<u8>> {
        let spki = cert.tbs_certificate().subject_public_key_info();
        Ok(spki
            .subject_public_key
            .as_bytes()
            .context("key bits")?
            .to_vec())
    };
    let (leaf, issuer) = (&certs[0], &certs[1]);
    let cert_sig =
        p384::ecdsa::Signature::from_der(leaf.signature().as_bytes().context("sig bits")?)?;
    let ca = p384_input(&key(issuer)?, &leaf.tbs_certificate().to_der()?, &cert_sig)?;
    let report = attestation::nvidia::parse_spdm_report(&gpu.report)?;
    let report_sig = p384::ecdsa::Signature::from_slice(report.signature)?;
    let device = p384_input(&key(leaf)?, report.signed, &report_sig)?;
    Ok((ca, device))
}

/// Calls `method` with `input` (the exact bytes: re-serialising them would reorder keys and
/// change the gas) on a fresh probe account; returns the gas burnt or the contract's failure.
/// The split into wasm, host functions and p256 goes to stderr.
fn call(vm: &Vm, code: &[u8], method: &str, input: Vec<u8>) -> Result<Gas> {
    let mut probe = Contract::new("registry.test.near", code)?.with_balance(100 * NEAR);
    let caller = Call::by("node.test.near").prepaid_gas(Gas::from_teragas(1_000));
    let out = probe.call_raw(vm, caller, method, input)?;
    let wasm = out.profile.get_wasm_cost();
    let host = out.gas.as_gas().saturating_sub(wasm.as_gas());
    eprintln!(
        "{method}: wasm {:.2} Tgas, host functions {:.2} Tgas (p256_verify {:.2})",
        tgas(wasm),
        host as f64 / 1e12,
        tgas(out.profile.get_ext_cost(ExtCosts::p256_verify_base))
            + tgas(out.profile.get_ext_cost(ExtCosts::p256_verify_byte)),
    );
    Ok(out.gas)
}

fn bench(name: &str, gas: Gas) {
    print_gas(&format!("attestation.{name}"), gas);
}

fn main() -> Result<()> {
    let code = wasm_arg_release_file(
        1,
        "examples/gas_probe.wasm",
        "build it: cargo build -p attestation --example gas_probe --features near --target wasm32-unknown-unknown --release",
    )?;
    print_bench("attestation.gas_probe.wasm_size", code.len(), "bytes");
    let vm = Vm::new();

    let mut bundle =
        bundle_from_dstack_public_data(&read("intel-tdx-dstack-node/public_data.json")?)?;
    let gas = call(&vm, &code, "verify_bundle", serde_json::to_vec(&bundle)?)?;
    bench("verify_bundle_tdx", gas);

    let gpu = hopper()?;
    let gas = call(&vm, &code, "verify_gpu", serde_json::to_vec(&gpu)?)?;
    bench("verify_gpu", gas);

    // Cached CA certificates (what add_gpu pays once the registry has seen this GPU model),
    // a known device (re-attestation), and one CA certificate per call.
    let nonce: [u8; 32] = gpu.nonce.clone().try_into().expect("32-byte nonce");
    let full = attestation::verify_gpu_evidence(
        &gpu,
        &nonce,
        DSTACK_NOW_NS / SEC,
        &attestation::NoCache,
        &attestation::GpuRoots::NVIDIA,
    )?;
    let cached = |cache: Vec<String>| {
        serde_json::to_vec(&serde_json::json!({ "evidence": &gpu, "cache": cache }))
    };
    let gas = call(
        &vm,
        &code,
        "verify_gpu_cached",
        cached(full.verified_intermediates.clone())?,
    )?;
    bench("verify_gpu_cached_intermediates", gas);
    let mut known = full.verified_intermediates.clone();
    known.push(full.device_id.clone());
    let gas = call(&vm, &code, "verify_gpu_cached", cached(known)?)?;
    bench("verify_gpu_known_device", gas);
    let gas = call(&vm, &code, "verify_ca_step", cached(Vec::new())?)?;
    bench("verify_gpu_ca_step", gas);

    let (ca, device) = hopper_p384_vectors(&gpu)?;
    bench("p384_verify_ca_key", call(&vm, &code, "verify_p384", ca)?);
    bench(
        "p384_verify_device_key",
        call(&vm, &code, "verify_p384", device)?,
    );

    // The dstack node with one dev GPU bound to it is refused by the probe's default policy (no
    // dev root); the bundle's GPU cost is measured with the dev chain below.
    bundle.gpus.push(gpu);
    bundle.gpu_challenge = Some(hex::encode([7u8; 32]));
    if let Ok(gas) = call(&vm, &code, "verify_bundle", serde_json::to_vec(&bundle)?) {
        bench("verify_bundle_tdx_gpu", gas);
    } else {
        eprintln!("verify_bundle with NVIDIA's public GPU: refused (not bound), as it must be");
    }
    dev_gpu_figures(&vm, &code)
}

/// One P-384 verification with a CA key and with a device key, on the dev chain.
fn dev_gpu_figures(vm: &Vm, code: &[u8]) -> Result<()> {
    use attestation::dev_gpu::{DEV_GPU_ROOT_SHA256, DevGpuFleet};
    let nonce = [9u8; 32];
    let gpu = DevGpuFleet::new([1; 32], 1, 0)
        .evidence(&nonce)
        .gpus
        .remove(0);
    let roots = attestation::GpuRoots {
        dev_root_sha256: Some(DEV_GPU_ROOT_SHA256),
    };
    let full = attestation::verify_gpu_evidence(
        &gpu,
        &nonce,
        DSTACK_NOW_NS / SEC,
        &attestation::NoCache,
        &roots,
    )?;
    let input = |cache: &[String]| {
        serde_json::to_vec(&serde_json::json!({
            "evidence": &gpu,
            "cache": cache,
            "dev_root": hex::encode(DEV_GPU_ROOT_SHA256),
        }))
    };
    let mut known = full.verified_intermediates.clone();
    known.push(full.device_id.clone());
    let uncached = call(vm, code, "verify_gpu_cached", input(&[])?)?;
    let ca_step = call(vm, code, "verify_ca_step", input(&[])?)?;
    let intermediate = call(
        vm,
        code,
        "verify_gpu_cached",
        input(&full.verified_intermediates)?,
    )?;
    let known_device = call(vm, code, "verify_gpu_cached", input(&known)?)?;
    let parse_only = call(vm, code, "parse_gpu", input(&[])?)?;
    bench("dev_gpu.verify_gpu", uncached);
    bench("dev_gpu.ca_step", ca_step);
    bench("dev_gpu.known_device", known_device);
    bench("dev_gpu.parse_only", parse_only);
    bench(
        "p384_verify.ca_key",
        Gas::from_gas(intermediate.as_gas().saturating_sub(known_device.as_gas())),
    );
    bench(
        "p384_verify.device_key",
        Gas::from_gas(known_device.as_gas().saturating_sub(parse_only.as_gas())),
    );
    Ok(())
}
