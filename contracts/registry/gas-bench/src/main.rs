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
//! BENCH registry.revoke_gpus.one.gas <Tgas> Tgas              (governance revokes a device)
//! BENCH registry.reattest.tdx.gas <Tgas> Tgas
//! BENCH registry.register_node.dev.gas <Tgas> Tgas      (dev kind, localnet registry)
//! BENCH registry.begin_attestation.gas <Tgas> Tgas      (a challenge for 8 GPUs + 4 switches)
//! BENCH registry.register_node.dev_1gpu_cold.gas <Tgas> Tgas (dev GPU: CA, leaf, report)
//! BENCH registry.add_gpu.dev_gpu.gas <Tgas> Tgas        (one more GPU: leaf and report)
//! BENCH registry.add_gpu.dev_switch_cold.gas / dev_switch.gas <Tgas> Tgas (NVSwitches)
//! BENCH registry.prune_pending.one.gas <Tgas> Tgas      (an expired half registration)
//!
//! NVIDIA's public H100 sample is never bound to an enclave (issue 16), so the GPU figures are
//! the dev fleet's (`attestation::dev_gpu`): the same P-384 chain and SPDM report checks.
//! ```
//!
//! The figures are the gas the code burns in the VM (the shared `gas-harness`), without the
//! transaction's receipt fees. Usage: `registry-gas-bench [REGISTRY.wasm]` (default:
//! `$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/registry.wasm`). Gas is deterministic.
//! With `REGISTRY_BENCH_PROFILE` set, every call's gas profile and logs go to stderr.

use anyhow::{Context, Result, bail};
use attestation::bundle_from_dstack_public_data;
use gas_harness::{Call, Contract, Gas, NEAR, SEC, T0, Vm, print_bench, print_gas, wasm_arg};
use near_crypto::{KeyType, SecretKey};
use serde_json::{Value, json};
use std::path::PathBuf;

/// The dstack vector's valid time, in nanoseconds.
const DSTACK_NOW_NS: u64 = T0;
/// A device call attaches the per-call limit (protocol 83+).
const DEVICE_CALL_TGAS: u64 = 1_000;

fn vectors() -> PathBuf {
    PathBuf::from(attestation::TESTDATA_DIR)
}

fn read(rel: &str) -> Result<String> {
    let p = vectors().join(rel);
    Ok(std::fs::read_to_string(&p)
        .with_context(|| format!("read {}", p.display()))?
        .trim()
        .to_owned())
}

/// The registry on one persistent mocked state.
struct Chain<'a> {
    vm: &'a Vm,
    registry: Contract,
}

impl<'a> Chain<'a> {
    fn new(vm: &'a Vm, code: &[u8]) -> Result<Self> {
        Ok(Self {
            vm,
            registry: Contract::new("registry.test.near", code)?,
        })
    }

    /// Calls `method`; returns the gas burnt, or the contract's failure.
    fn call(&mut self, call: Call<'_>, method: &str, args: Value) -> Result<Gas> {
        Ok(self.call_value(call, method, args)?.0)
    }

    /// Calls `method`; returns the gas burnt and the JSON it returned.
    fn call_value(&mut self, call: Call<'_>, method: &str, args: Value) -> Result<(Gas, Value)> {
        let out = self.registry.call(self.vm, call, method, &args)?;
        if std::env::var_os("REGISTRY_BENCH_PROFILE").is_some() {
            eprintln!("{method}: {:?}", out.profile);
            for log in &out.logs {
                eprintln!("{method} log: {log}");
            }
        }
        let value = if out.value.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&out.value)?
        };
        Ok((out.gas, value))
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

fn bench(name: &str, gas: Gas) {
    print_gas(&format!("registry.{name}"), gas);
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
        "gpu": { "min_gpus": 0, "max_gpus": 8, "allowed_models": ["GH100"], "allow_measured_in_rtmr3": false },
        "dev_mode": false,
        "dev_ca_key": null
    }))
}

fn main() -> Result<()> {
    let code = wasm_arg(1, "registry")?;
    print_bench("registry.wasm_size", code.len(), "bytes");

    let owner = || Call::by("owner.test.near");
    let staker = || Call::by("op.test.near").deposit(100 * NEAR);
    let node_key = borsh_key(&read("intel-tdx-dstack-node/near_account_public_key.pub")?)?;
    let node = |now_ns| Call::by("op.test.near").key(node_key.clone()).at(now_ns);

    // Mainnet-style registry, the real dstack node.
    let vm = Vm::new();
    let mut chain = Chain::new(&vm, &code)?;
    let t = DSTACK_NOW_NS;
    chain.call(
        owner().at(t),
        "new",
        json!({ "owner": "owner.test.near", "mainnet": true, "policy": tdx_policy()? }),
    )?;
    chain.call(staker().at(t), "deposit_stake", json!({}))?;
    let bundle =
        bundle_from_dstack_public_data(read("intel-tdx-dstack-node/public_data.json")?.as_bytes())?;
    let bundle = serde_json::to_value(&bundle)?;
    bench(
        "register_node.tdx",
        chain.call(node(t), "register_node", json!({ "bundle": bundle }))?,
    );
    bench(
        "heartbeat",
        chain.call(node(t + 60 * SEC), "heartbeat", json!({ "node_id": "0" }))?,
    );
    let update = json!({ "node_id": "0", "update": {
        "endpoint": "https://node.example/v1", "region": "eu-west", "capacity": 8,
        "prices": [{ "model_id": "llama-3-8b", "input_per_million": "1000", "output_per_million": "2000" }] } });
    bench(
        "update_node",
        chain.call(node(t + 61 * SEC), "update_node", update)?,
    );
    bench(
        "heartbeat.with_details",
        chain.call(node(t + 120 * SEC), "heartbeat", json!({ "node_id": "0" }))?,
    );
    // What the marketplace calls: get_node on claim (it gives 4 Tgas), slash on a missed
    // deadline (15 Tgas, including the payout transfer and its 5 Tgas callback).
    bench(
        "get_node",
        chain.call(
            owner().at(t + 121 * SEC),
            "get_node",
            json!({ "node_id": "0" }),
        )?,
    );
    let governor = owner().deposit(1).at(t + 121 * SEC);
    let args = json!({ "marketplace": "market.test.near" });
    chain.call(governor, "set_marketplace", args)?;
    let market = Call::by("market.test.near").at(t + 122 * SEC);
    let args = json!({ "node_id": "0", "amount": "1000000000000000000000000", "beneficiary": "user.test.near" });
    bench("slash", chain.call(market, "slash", args)?);

    // The GPU chain cached two signatures per call (root side first).
    let chain_pem = read("nvidia-hopper-single/hopperCertChain.txt")?;
    for step in [
        "cache_gpu_certificates.step1",
        "cache_gpu_certificates.step2",
    ] {
        let args = json!({ "node_id": "0", "certificate_chain": chain_pem, "max_signatures": 2 });
        bench(
            step,
            chain.call(node(t + 180 * SEC), "cache_gpu_certificates", args)?,
        );
    }
    bench(
        "reattest.tdx",
        chain.call(
            node(t + 3600 * SEC),
            "reattest",
            json!({ "node_id": "0", "bundle": bundle }),
        )?,
    );
    // Governance revokes the GPU (a leaked device key): it leaves the node.
    let device = attestation::nvidia::leaf_identity(&chain_pem, &attestation::GpuRoots::NVIDIA)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .leaf_hash;
    bench(
        "revoke_gpus.one",
        chain.call(
            owner().deposit(1).at(t + 3601 * SEC),
            "revoke_gpus",
            json!({ "device_ids": [hex::encode(device)] }),
        )?,
    );

    // Localnet-style registry with the dev kind.
    let ca = SecretKey::from_seed(KeyType::ED25519, "dev-ca");
    let ca_pk = ca.public_key().to_string();
    let mut chain = Chain::new(&vm, &code)?;
    chain.call(
        owner().at(t),
        "new",
        json!({ "owner": "owner.test.near", "mainnet": false, "dev_ca_key": ca_pk, "policy": tdx_policy()? }),
    )?;
    chain.call(staker().at(t), "deposit_stake", json!({}))?;
    let plain = DevNode::new("dev-enclave", [7; 32]);
    bench(
        "register_node.dev",
        chain.call(
            plain.call(t)?,
            "register_node",
            json!({ "bundle": plain.bundle(&ca, t, None, &[])? }),
        )?,
    );

    // A dev node with 8 GPUs and 4 NVSwitches: the challenge, then devices one per call.
    let gpu_node = DevNode::new("dev-gpu-enclave", [8; 32]);
    let (gas, pending) = chain.call_value(
        gpu_node.call(t)?,
        "begin_attestation",
        json!({ "gpus": 8, "switches": 4 }),
    )?;
    bench("begin_attestation", gas);
    let challenge: [u8; 32] = hex::decode(pending["challenge"].as_str().context("challenge")?)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("32-byte challenge"))?;
    let fleet = attestation::dev_gpu::DevGpuFleet::new([42; 32], 8, 4);
    let evidence = fleet.evidence(&attestation::gpu_binding_nonce(
        &gpu_node.enclave_key,
        &gpu_node.near_key()?,
        &challenge,
    ));
    let device_call = |at| -> Result<Call<'static>> {
        Ok(gpu_node
            .call(at)?
            .prepaid_gas(Gas::from_teragas(DEVICE_CALL_TGAS)))
    };
    let bundle = gpu_node.bundle(&ca, t, Some(challenge), &evidence.gpus[..1])?;
    let (gas, node_id) = chain.call_value(
        device_call(t)?,
        "register_node",
        json!({ "bundle": bundle }),
    )?;
    bench("register_node.dev_1gpu_cold", gas);
    let add = |gpus: &[attestation::GpuEvidence], switches: &[attestation::GpuEvidence]| json!({ "node_id": node_id, "gpus": gpus, "switches": switches });
    bench(
        "add_gpu.dev_gpu",
        chain.call(device_call(t)?, "add_gpu", add(&evidence.gpus[1..2], &[]))?,
    );
    bench(
        "add_gpu.dev_switch_cold",
        chain.call(
            device_call(t)?,
            "add_gpu",
            add(&[], &evidence.switches[..1]),
        )?,
    );
    bench(
        "add_gpu.dev_switch",
        chain.call(
            device_call(t)?,
            "add_gpu",
            add(&[], &evidence.switches[1..2]),
        )?,
    );
    // Left half-way: it expires (1 h) and anyone removes it, deregistering the node.
    let expired = t + 3601 * SEC;
    bench(
        "prune_pending.one",
        chain.call(
            Call::by("anyone.test.near").at(expired),
            "prune_pending",
            json!({ "signer_keys": [gpu_node.public_key()] }),
        )?,
    );
    Ok(())
}

/// A dev enclave: its NEAR key (from a seed) and its x25519 key.
struct DevNode {
    near: SecretKey,
    enclave_key: [u8; 32],
}

impl DevNode {
    fn new(seed: &str, enclave_key: [u8; 32]) -> Self {
        Self {
            near: SecretKey::from_seed(KeyType::ED25519, seed),
            enclave_key,
        }
    }

    fn public_key(&self) -> String {
        self.near.public_key().to_string()
    }

    fn near_key(&self) -> Result<[u8; 32]> {
        Ok(self.near.public_key().key_data().try_into()?)
    }

    /// A call signed by this enclave's key, of the operator account.
    fn call(&self, at: u64) -> Result<Call<'static>> {
        Ok(Call::by("op.test.near")
            .key(borsh_key(&self.public_key())?)
            .at(at))
    }

    /// Its dev bundle (valid 30 days from `t`), with a challenge and GPUs if given.
    fn bundle(
        &self,
        ca: &SecretKey,
        t: u64,
        challenge: Option<[u8; 32]>,
        gpus: &[attestation::GpuEvidence],
    ) -> Result<Value> {
        let expires = t / SEC + 30 * 24 * 3600;
        let near_crypto::Signature::ED25519(sig) = ca.sign(&attestation::dev_attestation_message(
            &self.enclave_key,
            &self.near_key()?,
            expires,
        )) else {
            bail!("ed25519 CA signs ed25519");
        };
        let mut bundle = json!({
            "version": 1, "kind": "dev", "enclave_key": hex::encode(self.enclave_key),
            "near_public_key": self.public_key(),
            "dev": { "expires_at": expires, "signature": hex::encode(sig.to_bytes()) },
            "gpus": gpus,
        });
        if let Some(c) = challenge {
            bundle["gpu_challenge"] = hex::encode(c).into();
        }
        Ok(bundle)
    }
}
