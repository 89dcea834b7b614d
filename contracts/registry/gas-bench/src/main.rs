//! Runs the registry contract (release wasm) in nearcore's wasmtime VM under the current
//! protocol's costs, through a real sequence of calls on one contract state, and prints:
//!
//! ```text
//! BENCH registry.wasm_size <bytes> bytes
//! BENCH registry.register_node.tdx.gas <Tgas> Tgas      (the real dstack node, full DCAP)
//! BENCH registry.heartbeat.gas <Tgas> Tgas
//! BENCH registry.get_node.gas <Tgas> Tgas / registry.slash.gas <Tgas> Tgas (marketplace calls)
//! BENCH registry.update_node.gas <Tgas> Tgas
//! BENCH registry.cache_gpu_certificates.step1.gas <Tgas> Tgas (2 chain signatures)
//! BENCH registry.cache_gpu_certificates.step2.gas <Tgas> Tgas (2 more: chain cached)
//! BENCH registry.add_gpu.chain_cached.gas <Tgas> Tgas         (H100: report signature)
//! BENCH registry.reattest.tdx.gas <Tgas> Tgas
//! BENCH registry.register_node.dev.gas <Tgas> Tgas      (dev kind, localnet registry)
//! ```
//!
//! Usage: `registry-gas-bench [REGISTRY.wasm]` (default:
//! `$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/registry.wasm`). Gas is deterministic.
//! An `add_gpu` with nothing cached (4 chain signatures + the report, ~400 Tgas) cannot fit
//! the 300 Tgas limit; the harness reports that attempt on stderr.

use anyhow::{Context, Result, bail};
use attestation::bundle_from_dstack_public_data;
use near_crypto::{KeyType, SecretKey};
use near_parameters::RuntimeConfigStore;
use near_parameters::vm::VMKind;
use near_primitives_core::account::AccountContract;
use near_primitives_core::types::{Balance, Gas};
use near_primitives_core::version::PROTOCOL_VERSION;
use near_vm_runner::ContractCode;
use near_vm_runner::logic::VMContext;
use near_vm_runner::logic::mocks::mock_external::MockedExternal;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;

const SEC: u64 = 1_000_000_000;
/// The dstack vector's valid time, in nanoseconds.
const DSTACK_NOW_NS: u64 = 1_786_622_400 * SEC;
const GPU_NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/attestation-vectors")
}

fn read(rel: &str) -> Result<String> {
    let p = vectors().join(rel);
    Ok(std::fs::read_to_string(&p)
        .with_context(|| format!("read {}", p.display()))?
        .trim()
        .to_owned())
}

fn wasm_path() -> PathBuf {
    if let Some(p) = std::env::args().nth(1) {
        return p.into();
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    PathBuf::from(target).join("wasm32-unknown-unknown/release/registry.wasm")
}

/// One transaction's caller.
struct Caller<'a> {
    account: &'a str,
    /// Borsh public key: curve byte + key bytes.
    key: Vec<u8>,
    deposit: Balance,
}

/// The registry on one persistent mocked state.
struct Chain {
    ext: MockedExternal,
    storage_usage: u64,
}

impl Chain {
    fn new(code: &[u8]) -> Self {
        Self {
            ext: MockedExternal::with_code(ContractCode::new(code.to_vec(), None)),
            storage_usage: 10_000,
        }
    }

    /// Calls `method`; returns the gas burnt, or the contract's failure.
    fn call(&mut self, caller: &Caller<'_>, method: &str, args: Value, now_ns: u64) -> Result<Gas> {
        let store = RuntimeConfigStore::new(None);
        let runtime_config = store.get_config(PROTOCOL_VERSION);
        let mut wasm_config = runtime_config.wasm_config.as_ref().clone();
        wasm_config.vm_kind = VMKind::Wasmtime;
        let wasm_config = Arc::new(wasm_config);
        let fees = Arc::new(runtime_config.fees.as_ref().clone());
        let context = VMContext {
            current_account_id: "registry.test.near".parse()?,
            signer_account_id: caller.account.parse()?,
            signer_account_pk: caller.key.clone(),
            predecessor_account_id: caller.account.parse()?,
            refund_to_account_id: caller.account.parse()?,
            input: serde_json::to_vec(&args)?.into(),
            promise_results: vec![].into(),
            block_height: 1,
            block_timestamp: now_ns,
            epoch_height: 1,
            account_balance: Balance::from_near(1_000),
            account_locked_balance: Balance::from_yoctonear(0),
            storage_usage: self.storage_usage,
            account_contract: AccountContract::None,
            attached_deposit: caller.deposit,
            prepaid_gas: Gas::from_teragas(300),
            random_seed: vec![0; 32],
            view_config: None,
            output_data_receivers: vec![],
        };
        let gas_counter = context.make_gas_counter(&wasm_config);
        let prepared = near_vm_runner::prepare(&self.ext, wasm_config, None, gas_counter, method);
        let outcome = near_vm_runner::run(prepared, &mut self.ext, &context, fees)
            .map_err(|e| anyhow::anyhow!("VM error: {e:?}"))?;
        if let Some(err) = outcome.aborted {
            bail!(
                "{method} failed after {} gas: {err:?}; logs {:?}",
                outcome.burnt_gas,
                outcome.logs
            );
        }
        if std::env::var_os("REGISTRY_BENCH_PROFILE").is_some() {
            eprintln!("{method}: {:?}", outcome.profile);
            for log in &outcome.logs {
                eprintln!("{method} log: {log}");
            }
        }
        self.storage_usage = outcome.storage_usage;
        Ok(outcome.burnt_gas)
    }
}

fn borsh_key(near_key: &str) -> Result<Vec<u8>> {
    let pk: near_crypto::PublicKey = near_key
        .parse()
        .map_err(|e| anyhow::anyhow!("{near_key}: {e:?}"))?;
    let mut out = vec![0u8];
    out.extend_from_slice(pk.key_data());
    Ok(out)
}

fn tgas(g: Gas) -> f64 {
    g.as_gas() as f64 / 1e12
}

fn bench(name: &str, gas: Gas) {
    println!("BENCH registry.{name}.gas {:.2} Tgas", tgas(gas));
}

fn tdx_policy() -> Result<Value> {
    let tcb: Value = serde_json::from_str(&read("intel-tdx-dstack-node/tcb_info.json")?)?;
    Ok(json!({
        "platforms": [{ "mrtd": tcb["mrtd"], "rtmr0": tcb["rtmr0"], "rtmr1": tcb["rtmr1"], "rtmr2": tcb["rtmr2"] }],
        "compose_hashes": [tcb["compose_hash"]],
        "image_digests": [],
        "image_digest_event": "image-digest",
        "tcb_grace": [],
        "attestation_lifetime_ns": (7 * 24 * 3600 * SEC).to_string(),
        "heartbeat_interval_ns": (300 * SEC).to_string(),
        "missed_heartbeats": 3,
        "min_stake": "10000000000000000000000000",
        "unbonding_delay_ns": (24 * 3600 * SEC).to_string(),
        "gpu": { "min_gpus": 0, "max_gpus": 8, "allowed_models": [], "allow_measured_in_rtmr3": false },
        "dev_mode": false,
        "dev_ca_key": null
    }))
}

fn main() -> Result<()> {
    let path = wasm_path();
    let code = std::fs::read(&path).with_context(|| {
        format!(
            "read {} (build it: cargo build -p registry --target wasm32-unknown-unknown --release)",
            path.display()
        )
    })?;
    println!("BENCH registry.wasm_size {} bytes", code.len());

    let owner = Caller {
        account: "owner.test.near",
        key: vec![0; 33],
        deposit: Balance::from_yoctonear(0),
    };
    let staker = Caller {
        account: "op.test.near",
        key: vec![0; 33],
        deposit: Balance::from_near(100),
    };
    let node = Caller {
        account: "op.test.near",
        key: borsh_key(&read("intel-tdx-dstack-node/near_account_public_key.pub")?)?,
        deposit: Balance::from_yoctonear(0),
    };

    // Mainnet-style registry, the real dstack node.
    let mut chain = Chain::new(&code);
    let t = DSTACK_NOW_NS;
    chain.call(
        &owner,
        "new",
        json!({ "owner": "owner.test.near", "mainnet": true, "policy": tdx_policy()? }),
        t,
    )?;
    chain.call(&staker, "deposit_stake", json!({}), t)?;
    let bundle =
        bundle_from_dstack_public_data(read("intel-tdx-dstack-node/public_data.json")?.as_bytes())?;
    let bundle = serde_json::to_value(&bundle)?;
    bench(
        "register_node.tdx",
        chain.call(&node, "register_node", json!({ "bundle": bundle }), t)?,
    );
    bench(
        "heartbeat",
        chain.call(&node, "heartbeat", json!({ "node_id": "0" }), t + 60 * SEC)?,
    );
    let update = json!({ "node_id": "0", "update": {
        "endpoint": "https://node.example/v1", "region": "eu-west", "capacity": 8,
        "prices": [{ "model_id": "llama-3-8b", "input_per_million": "1000", "output_per_million": "2000" }] } });
    bench(
        "update_node",
        chain.call(&node, "update_node", update, t + 61 * SEC)?,
    );
    bench(
        "heartbeat.with_details",
        chain.call(&node, "heartbeat", json!({ "node_id": "0" }), t + 120 * SEC)?,
    );
    // What the marketplace calls: get_node on claim (it gives 4 Tgas), slash on a missed
    // deadline (15 Tgas, including the payout transfer and its 5 Tgas callback).
    bench(
        "get_node",
        chain.call(&owner, "get_node", json!({ "node_id": "0" }), t + 121 * SEC)?,
    );
    let governor = Caller {
        account: owner.account,
        key: vec![0; 33],
        deposit: Balance::from_yoctonear(1),
    };
    let args = json!({ "marketplace": "market.test.near" });
    chain.call(&governor, "set_marketplace", args, t + 121 * SEC)?;
    let market = Caller {
        account: "market.test.near",
        key: vec![0; 33],
        deposit: Balance::from_yoctonear(0),
    };
    let args = json!({ "node_id": "0", "amount": "1000000000000000000000000", "beneficiary": "user.test.near" });
    bench("slash", chain.call(&market, "slash", args, t + 122 * SEC)?);

    let evidence = json!({
        "report": read("nvidia-hopper-single/hopperAttestationReport.txt")?,
        "nonce": GPU_NONCE,
        "certificate_chain": read("nvidia-hopper-single/hopperCertChain.txt")?,
    });
    let add = json!({ "node_id": "0", "evidence": evidence });
    match chain.call(&node, "add_gpu", add.clone(), t + 180 * SEC) {
        Ok(gas) => bench("add_gpu.cold", gas),
        Err(e) => eprintln!("add_gpu with nothing cached: {e}"),
    }
    // The new-GPU flow: cache the chain two signatures per call (root side first), then
    // add_gpu verifies only the report signature.
    let chain_pem = read("nvidia-hopper-single/hopperCertChain.txt")?;
    for step in [
        "cache_gpu_certificates.step1",
        "cache_gpu_certificates.step2",
    ] {
        let args = json!({ "node_id": "0", "certificate_chain": chain_pem, "max_signatures": 2 });
        bench(
            step,
            chain.call(&node, "cache_gpu_certificates", args, t + 180 * SEC)?,
        );
    }
    bench(
        "add_gpu.chain_cached",
        chain.call(&node, "add_gpu", add, t + 181 * SEC)?,
    );
    bench(
        "reattest.tdx",
        chain.call(
            &node,
            "reattest",
            json!({ "node_id": "0", "bundle": bundle }),
            t + 3600 * SEC,
        )?,
    );

    // Localnet-style registry with the dev kind.
    let ca = SecretKey::from_seed(KeyType::ED25519, "dev-ca");
    let enclave = SecretKey::from_seed(KeyType::ED25519, "dev-enclave");
    let ca_pk = ca.public_key().to_string();
    let enclave_pk = enclave.public_key();
    let near_key: [u8; 32] = enclave_pk.key_data().try_into()?;
    let expires = t / SEC + 30 * 24 * 3600;
    let enclave_key = [7u8; 32];
    let near_crypto::Signature::ED25519(sig) = ca.sign(&attestation::dev_attestation_message(
        &enclave_key,
        &near_key,
        expires,
    )) else {
        bail!("ed25519 CA signs ed25519");
    };
    let dev_bundle = json!({
        "version": 1, "kind": "dev", "enclave_key": hex::encode(enclave_key),
        "near_public_key": enclave_pk.to_string(),
        "dev": { "expires_at": expires, "signature": hex::encode(sig.to_bytes()) },
    });
    let mut chain = Chain::new(&code);
    chain.call(
        &owner,
        "new",
        json!({ "owner": "owner.test.near", "mainnet": false, "dev_ca_key": ca_pk, "policy": tdx_policy()? }),
        t,
    )?;
    chain.call(&staker, "deposit_stake", json!({}), t)?;
    let dev_node = Caller {
        key: borsh_key(&enclave_pk.to_string())?,
        ..node
    };
    bench(
        "register_node.dev",
        chain.call(
            &dev_node,
            "register_node",
            json!({ "bundle": dev_bundle }),
            t,
        )?,
    );
    Ok(())
}
