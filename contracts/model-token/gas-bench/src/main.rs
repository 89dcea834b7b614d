//! Runs the model-token and model-factory contracts (release wasm) in nearcore's wasmtime VM
//! under the current protocol's costs and prints the gas of a whole transaction (signer's
//! send fees + receipt execution fees + contract execution, callbacks included):
//!
//! ```text
//! BENCH model_token.wasm_size <bytes> bytes
//! BENCH model_factory.wasm_size <bytes> bytes
//! BENCH model_token.deposit_revenue.holders_<N>.gas <Tgas> Tgas       (N = 1, 1000)
//! BENCH model_token.ft_on_transfer.holders_<N>.gas <Tgas> Tgas        (token's own gas excluded)
//! BENCH model_token.ft_transfer.holders_<N>.gas <Tgas> Tgas
//! BENCH model_token.claim_revenue.near.holders_<N>.gas <Tgas> Tgas    (+ transfer + callback)
//! BENCH model_token.claim_revenue.ft.holders_<N>.gas <Tgas> Tgas      (token's ft_transfer excluded)
//! BENCH model_token.contribute.gas <Tgas> Tgas
//! BENCH model_token.grant_key.gas <Tgas> Tgas                         (registry's get_node excluded)
//! BENCH model_factory.create_model.gas <Tgas> Tgas                    (batch + new + callback)
//! BENCH model_token.init_storage <bytes> bytes                        (state a new model starts with)
//! ```
//!
//! Usage: `model-token-gas-bench [MODEL_TOKEN.wasm [MODEL_FACTORY.wasm]]` (default:
//! `$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/`). Gas is deterministic. The mocked
//! trie charges no trie-node touches, so a real chain adds a little per storage access
//! (logarithmic in the state size, not linear in the holders); the sandbox tests measure that.
//! The VM, the fees and the mocked accounts are the shared `gas-harness`.

use anyhow::{Context, Result, bail};
use gas_harness::{
    ActionCosts, Call, Contract, NEAR, Outcome, PromiseResult, SEC, T0, Vm, print_bench, print_gas,
    sum, tgas, wasm_arg,
};
use serde_json::{Value, json};
use std::rc::Rc;

const TOKEN: &str = "llama.factory.test.near";
const FACTORY: &str = "factory.test.near";
const OWNER: &str = "owner.test.near";
const USDC: &str = "usdc.test.near";
const MARKET: &str = "market.test.near";
/// The balance of the token and factory accounts.
const BALANCE: u128 = 1_000_000 * NEAR;
/// Transactions are priced at the `send_sir` rate, as these figures always were; a user's
/// transaction pays `send_not_sir`, more per argument byte (see `Vm::send_fee`).
const SENDER_IS_RECEIVER: bool = true;

fn account(name: &str, code: &[u8]) -> Result<Contract> {
    Ok(Contract::new(name, code)?.with_balance(BALANCE))
}

/// A whole function-call transaction by `call`'s signer: fees plus execution.
fn tx(vm: &Vm, c: &mut Contract, call: Call<'_>, method: &str, args: Value) -> Result<Outcome> {
    let mut out = c.call(vm, call, method, &args)?;
    out.gas = sum(&[
        out.gas,
        vm.function_call_tx_fees(method, &args, SENDER_IS_RECEIVER),
    ]);
    Ok(out)
}

/// A callback `c` receives with one successful `result`: its receipt's execution fees and
/// its code; returns the outcome with that total as its gas.
fn callback(
    vm: &Vm,
    c: &mut Contract,
    result: Vec<u8>,
    method: &str,
    args: &Value,
) -> Result<Outcome> {
    let me = c.account().to_owned();
    let ok = PromiseResult::Successful(Rc::from(result));
    let mut out = c.call(vm, Call::by(&me).results(vec![ok]), method, args)?;
    out.gas = sum(&[out.gas, vm.function_call_exec(method, args)]);
    Ok(out)
}

fn model_init(crowdfund: Option<Value>) -> Value {
    json!({
        "model_id": "llama",
        "owner": OWNER,
        "registry": "registry.test.near",
        "manifest": {
            "name": "Llama 3 8B fine-tune",
            "weights_hash": "ab".repeat(32),
            "encrypted_weights_uri": "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
            "training_data_manifest_hash": "cd".repeat(32),
            "training_data_manifest_uri": "ipfs://bafybeidata",
            "training_image_measurement": "ef".repeat(48),
            "allowed_enclave_measurements": ["ab".repeat(32), "cd".repeat(48)],
            "licence": "llama3"
        },
        "metadata": { "spec": "ft-1.0.0", "name": "Llama revenue", "symbol": "LLM", "decimals": 18 },
        "initial_supply": (1_000_000 * NEAR).to_string(),
        "key_service": "keys.test.near",
        "revenue_tokens": [USDC],
        "crowdfund": crowdfund,
    })
}

/// A model token initialised by its owner.
fn new_token(vm: &Vm, code: &[u8], crowdfund: Option<Value>) -> Result<Contract> {
    let mut t = account(TOKEN, code)?;
    let init = json!({ "init": model_init(crowdfund) });
    t.call(vm, Call::by(OWNER), "new", &init)?;
    Ok(t)
}

fn holder(i: usize) -> String {
    format!("h{i}.test.near")
}

/// The revenue methods on a token with `n` holders.
fn revenue_benches(vm: &Vm, code: &[u8], n: usize) -> Result<()> {
    let mut t = new_token(vm, code, None)?;
    for i in 0..n {
        let h = holder(i);
        let owner = || Call::by(OWNER);
        t.call(
            vm,
            owner().deposit(NEAR / 10),
            "storage_deposit",
            &json!({ "account_id": h }),
        )?;
        let args = json!({ "receiver_id": h, "amount": (NEAR + i as u128).to_string() });
        t.call(vm, owner().deposit(1), "ft_transfer", &args)?;
    }
    let tag = format!("holders_{n}");

    let dep = tx(
        vm,
        &mut t,
        Call::by(MARKET).deposit(3 * NEAR),
        "deposit_revenue",
        json!({}),
    )?;
    print_gas(&format!("model_token.deposit_revenue.{tag}"), dep.gas);

    let args = json!({ "sender_id": MARKET, "amount": "5000000", "msg": "" });
    let ft = tx(vm, &mut t, Call::by(USDC), "ft_on_transfer", args)?;
    print_gas(&format!("model_token.ft_on_transfer.{tag}"), ft.gas);

    let args = json!({ "receiver_id": holder(0), "amount": "1000" });
    let tr = tx(vm, &mut t, Call::by(OWNER).deposit(1), "ft_transfer", args)?;
    print_gas(&format!("model_token.ft_transfer.{tag}"), tr.gas);

    let h0 = holder(0);
    for (asset, pool, name) in [
        (json!({ "kind": "near" }), 0, "near"),
        (json!({ "kind": "ft", "token": USDC }), 1, "ft"),
    ] {
        let args = json!({ "asset": asset });
        let claim = tx(vm, &mut t, Call::by(&h0).deposit(1), "claim_revenue", args)?;
        let scheduled = claim.scheduled_json("on_revenue_claimed")?;
        let amount = scheduled["amount"].as_str().unwrap_or("0");
        // The payout receipt: a transfer (NEAR) or ft_transfer on the token (its execution
        // fees only; the token's own code is not ours).
        let payout = if name == "near" {
            vm.transfer_exec()
        } else {
            vm.receipt_exec(&[ActionCosts::function_call_base], 100)
        };
        let args = json!({ "account": h0, "pool": pool, "amount": amount });
        let cb = callback(vm, &mut t, vec![], "on_revenue_claimed", &args)?;
        print_gas(
            &format!("model_token.claim_revenue.{name}.{tag}"),
            sum(&[claim.gas, payout, cb.gas]),
        );
    }
    Ok(())
}

fn contribute_bench(vm: &Vm, code: &[u8]) -> Result<()> {
    let crowdfund = json!({
        "goal": (1_000 * NEAR).to_string(),
        "token_price": NEAR.to_string(),
        "deadline_ns": (T0 + 3600 * SEC).to_string(),
        "beneficiary": "trainer.test.near",
        "milestones_bps": [5000, 5000]
    });
    let mut t = new_token(vm, code, Some(crowdfund))?;
    let (h0, h1) = (holder(0), holder(1));
    tx(
        vm,
        &mut t,
        Call::by(&h0).deposit(2 * NEAR),
        "contribute",
        json!({}),
    )?;
    let second = tx(
        vm,
        &mut t,
        Call::by(&h1).deposit(2 * NEAR),
        "contribute",
        json!({}),
    )?;
    print_gas("model_token.contribute", second.gas);
    Ok(())
}

/// `grant_key` and its callback with an eligible node (the registry's `get_node` is not ours).
fn grant_bench(vm: &Vm, code: &[u8]) -> Result<()> {
    let mut t = new_token(vm, code, None)?;
    let key = "c2VhbGVkIG1vZGVsIGtleSBmb3Igbm9kZSA3IChIUEtFIGNpcGhlcnRleHQgb2YgMzIgYnl0ZXMp";
    let args = json!({ "node_id": "7", "encrypted_key": key, "key_hash": "11".repeat(32) });
    let keys = Call::by("keys.test.near").deposit(NEAR / 10);
    let grant = tx(vm, &mut t, keys, "grant_key", args)?;
    let node = json!({
        "node_id": "7", "operator": "op.test.near", "status": "active", "kind": "tdx",
        "signer_key": "ed25519:6E8sCci9badyRkXb3JoRpBj5p8C6Tw41ELDZoiihKEtp",
        "encryption_key": "22".repeat(32), "tcb_status": "UpToDate",
        "measurements": { "mrtd": "00".repeat(48), "rtmr0": "00".repeat(48), "rtmr1": "00".repeat(48),
            "rtmr2": "00".repeat(48), "rtmr3": "cd".repeat(48), "compose_hash": "ab".repeat(32) },
        "gpus": [], "endpoint": "https://node.example", "region": "eu", "prices": [], "capacity": 4,
        "registered_at_ns": T0.to_string(), "attestation_expires_at_ns": (T0 + 7 * 24 * 3600 * SEC).to_string(),
        "last_heartbeat_ns": T0.to_string()
    });
    let cb_args = json!({ "node_id": "7", "encrypted_key": key, "key_hash": "11".repeat(32),
        "grantor": "keys.test.near", "deposit": (NEAR / 10).to_string() });
    let result = serde_json::to_vec(&Some(node))?;
    let cb = callback(vm, &mut t, result, "on_node_checked", &cb_args)?;
    if !cb.logs.iter().any(|l| l.contains("\"key_granted\"")) {
        bail!("on_node_checked refused the grant: {:?}", cb.logs);
    }
    print_gas("model_token.grant_key", sum(&[grant.gas, cb.gas]));
    Ok(())
}

fn factory_bench(vm: &Vm, token_code: &[u8], factory_code: &[u8]) -> Result<()> {
    let mut f = account(FACTORY, factory_code)?;
    let init = json!({ "owner": OWNER, "registry": "registry.test.near" });
    f.call(vm, Call::by(OWNER), "new", &init)?;
    let code = json!({ "code": { "hash": "E4boMSwkJ2vxb6MgjhNhgmaHpkGX8MMwK3M5RioLQPtj" } });
    f.call(vm, Call::by(OWNER).deposit(1), "set_model_code", &code)?;
    let mut args = model_init(None);
    for k in ["model_id", "owner", "registry"] {
        args.as_object_mut().context("init is an object")?.remove(k);
    }
    let alice = Call::by("alice.test.near").deposit(5 * NEAR);
    let args = json!({ "model_id": "llama", "args": args });
    let create = tx(vm, &mut f, alice, "create_model", args)?;
    // The batch on the new account: create, fund, use the global code, call `new`.
    let init = create.scheduled_args("new")?.to_vec();
    let creator_args = create.scheduled_json("on_model_created")?;
    let batch = vm.receipt_exec(
        &[
            ActionCosts::create_account,
            ActionCosts::transfer,
            ActionCosts::use_global_contract_base,
            ActionCosts::function_call_base,
        ],
        ("new".len() + init.len()) as u64,
    );
    let mut model = account(TOKEN, token_code)?;
    let before = model.storage_usage();
    let new_gas = model
        .call(
            vm,
            Call::by(FACTORY),
            "new",
            &serde_json::from_slice(&init)?,
        )?
        .gas;
    // What the creator's deposit must cover besides the account record (the factory asks for
    // 1200 bytes plus the arguments).
    println!(
        "BENCH model_token.init_storage {} bytes  # init args {} bytes",
        model.storage_usage() - before,
        init.len()
    );
    let cb = callback(vm, &mut f, vec![], "on_model_created", &creator_args)?.gas;
    println!(
        "# create_model: factory {:.2}, batch fees {:.2}, new {:.2}, callback {:.2} Tgas",
        tgas(create.gas),
        tgas(batch),
        tgas(new_gas),
        tgas(cb)
    );
    print_gas(
        "model_factory.create_model",
        sum(&[create.gas, batch, new_gas, cb]),
    );
    Ok(())
}

fn main() -> Result<()> {
    let token_code = wasm_arg(1, "model_token")?;
    let factory_code = wasm_arg(2, "model_factory")?;
    print_bench("model_token.wasm_size", token_code.len(), "bytes");
    print_bench("model_factory.wasm_size", factory_code.len(), "bytes");
    let vm = Vm::new();
    for n in [1, 1000] {
        revenue_benches(&vm, &token_code, n)?;
    }
    contribute_bench(&vm, &token_code)?;
    grant_bench(&vm, &token_code)?;
    factory_bench(&vm, &token_code, &factory_code)?;
    Ok(())
}
