//! Runs the `gas_probe` contract (contracts/attestation/examples/gas_probe.rs) in nearcore's
//! wasmtime VM under the current protocol's costs and prints the gas burnt:
//!
//! ```text
//! BENCH attestation.verify_bundle_tdx.gas <Tgas> Tgas
//! BENCH attestation.verify_bundle_tdx_gpu.gas <Tgas> Tgas
//! BENCH attestation.verify_gpu.gas <Tgas> Tgas
//! BENCH attestation.verify_gpu_cached_intermediates.gas <Tgas> Tgas
//! BENCH attestation.verify_gpu_known_device.gas <Tgas> Tgas
//! BENCH attestation.verify_gpu_ca_step.gas <Tgas> Tgas
//! BENCH attestation.gas_probe.wasm_size <bytes> bytes
//! ```
//!
//! Usage: `attestation-gas-bench [PROBE.wasm]` (default: the release example in
//! `$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/examples/gas_probe.wasm`). Gas is
//! deterministic; it does not depend on the machine or on this harness's build profile.

use anyhow::{Context, Result, bail};
use attestation::{GpuEvidence, bundle_from_dstack_public_data};
use near_parameters::vm::VMKind;
use near_parameters::{ExtCosts, RuntimeConfigStore};
use near_primitives_core::account::AccountContract;
use near_primitives_core::types::{Balance, Gas};
use near_primitives_core::version::PROTOCOL_VERSION;
use near_vm_runner::ContractCode;
use near_vm_runner::logic::VMContext;
use near_vm_runner::logic::mocks::mock_external::MockedExternal;
use std::path::PathBuf;
use std::sync::Arc;

/// The dstack vector's valid time, in nanoseconds.
const DSTACK_NOW_NS: u64 = 1_786_622_400 * 1_000_000_000;
const GPU_NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/attestation-vectors")
}

fn read(rel: &str) -> Result<Vec<u8>> {
    let p = vectors().join(rel);
    std::fs::read(&p).with_context(|| format!("read {}", p.display()))
}

fn probe_path() -> PathBuf {
    if let Some(p) = std::env::args().nth(1) {
        return p.into();
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    PathBuf::from(target).join("wasm32-unknown-unknown/release/examples/gas_probe.wasm")
}

fn hopper() -> Result<GpuEvidence> {
    let report = String::from_utf8(read("nvidia-hopper-single/hopperAttestationReport.txt")?)?;
    Ok(GpuEvidence {
        report: hex::decode(report.trim())?,
        nonce: hex::decode(GPU_NONCE)?,
        certificate_chain: String::from_utf8(read("nvidia-hopper-single/hopperCertChain.txt")?)?,
    })
}

/// Calls `method` with `input`; returns the gas burnt or the contract's failure.
fn call(code: &[u8], method: &str, input: Vec<u8>) -> Result<Gas> {
    let store = RuntimeConfigStore::new(None);
    let runtime_config = store.get_config(PROTOCOL_VERSION);
    let mut wasm_config = runtime_config.wasm_config.as_ref().clone();
    wasm_config.vm_kind = VMKind::Wasmtime;
    let wasm_config = Arc::new(wasm_config);
    let fees = Arc::new(runtime_config.fees.as_ref().clone());

    let mut ext = MockedExternal::with_code(ContractCode::new(code.to_vec(), None));
    let context = VMContext {
        current_account_id: "registry.test.near".parse()?,
        signer_account_id: "node.test.near".parse()?,
        signer_account_pk: vec![0; 33],
        predecessor_account_id: "node.test.near".parse()?,
        refund_to_account_id: "node.test.near".parse()?,
        input: input.into(),
        promise_results: vec![].into(),
        block_height: 1,
        block_timestamp: DSTACK_NOW_NS,
        epoch_height: 1,
        account_balance: Balance::from_near(100),
        account_locked_balance: Balance::from_yoctonear(0),
        storage_usage: 10_000,
        account_contract: AccountContract::None,
        attached_deposit: Balance::from_yoctonear(0),
        prepaid_gas: Gas::from_teragas(1_000),
        random_seed: vec![0; 32],
        view_config: None,
        output_data_receivers: vec![],
    };
    let gas_counter = context.make_gas_counter(&wasm_config);
    let prepared = near_vm_runner::prepare(&ext, wasm_config, None, gas_counter, method);
    let outcome = near_vm_runner::run(prepared, &mut ext, &context, fees)
        .map_err(|e| anyhow::anyhow!("VM error: {e:?}"))?;
    if let Some(err) = outcome.aborted {
        bail!("{method} failed after {} gas: {err:?}", outcome.burnt_gas);
    }
    let host = outcome
        .burnt_gas
        .as_gas()
        .saturating_sub(outcome.profile.get_wasm_cost().as_gas());
    eprintln!(
        "{method}: wasm {:.2} Tgas, host functions {:.2} Tgas (p256_verify {:.2})",
        tgas(outcome.profile.get_wasm_cost()),
        host as f64 / 1e12,
        tgas(outcome.profile.get_ext_cost(ExtCosts::p256_verify_base))
            + tgas(outcome.profile.get_ext_cost(ExtCosts::p256_verify_byte)),
    );
    Ok(outcome.burnt_gas)
}

fn tgas(g: Gas) -> f64 {
    g.as_gas() as f64 / 1e12
}

fn main() -> Result<()> {
    let path = probe_path();
    let code = std::fs::read(&path).with_context(|| {
        format!(
            "read {} (build it: cargo build -p attestation --example gas_probe --features near --target wasm32-unknown-unknown --release)",
            path.display()
        )
    })?;
    println!("BENCH attestation.gas_probe.wasm_size {} bytes", code.len());

    let mut bundle =
        bundle_from_dstack_public_data(&read("intel-tdx-dstack-node/public_data.json")?)?;
    let gas = call(&code, "verify_bundle", serde_json::to_vec(&bundle)?)?;
    println!(
        "BENCH attestation.verify_bundle_tdx.gas {:.2} Tgas",
        tgas(gas)
    );

    let gpu = hopper()?;
    let gas = call(&code, "verify_gpu", serde_json::to_vec(&gpu)?)?;
    println!("BENCH attestation.verify_gpu.gas {:.2} Tgas", tgas(gas));

    // Cached CA certificates (what add_gpu pays once the registry has seen this GPU model),
    // a known device (re-attestation), and one CA certificate per call.
    let full = attestation::verify_gpu_evidence(
        &gpu,
        DSTACK_NOW_NS / 1_000_000_000,
        &attestation::NoCache,
    )?;
    let cached = |cache: Vec<String>| {
        serde_json::to_vec(&serde_json::json!({ "evidence": &gpu, "cache": cache }))
    };
    let gas = call(
        &code,
        "verify_gpu_cached",
        cached(full.verified_intermediates.clone())?,
    )?;
    println!(
        "BENCH attestation.verify_gpu_cached_intermediates.gas {:.2} Tgas",
        tgas(gas)
    );
    let mut known = full.verified_intermediates.clone();
    known.push(full.device_id.clone());
    let gas = call(&code, "verify_gpu_cached", cached(known)?)?;
    println!(
        "BENCH attestation.verify_gpu_known_device.gas {:.2} Tgas",
        tgas(gas)
    );
    let gas = call(&code, "verify_ca_step", cached(Vec::new())?)?;
    println!(
        "BENCH attestation.verify_gpu_ca_step.gas {:.2} Tgas",
        tgas(gas)
    );

    bundle.gpus.push(gpu);
    match call(&code, "verify_bundle", serde_json::to_vec(&bundle)?) {
        Ok(gas) => println!(
            "BENCH attestation.verify_bundle_tdx_gpu.gas {:.2} Tgas",
            tgas(gas)
        ),
        Err(e) => eprintln!("verify_bundle with a GPU: {e}"),
    }
    Ok(())
}
