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

use anyhow::{Context, Result, bail};
use near_parameters::vm::VMKind;
use near_parameters::{ActionCosts, RuntimeConfigStore, RuntimeFeesConfig};
use near_primitives_core::account::AccountContract;
use near_primitives_core::types::{Balance, Gas};
use near_primitives_core::version::PROTOCOL_VERSION;
use near_vm_runner::logic::mocks::mock_external::{MockAction, MockedExternal};
use near_vm_runner::logic::types::PromiseResult;
use near_vm_runner::logic::{Config, VMContext};
use near_vm_runner::{ContractCode, MockContractRuntimeCache};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_786_622_400 * SEC;
const NEAR: u128 = 10u128.pow(24);
const TOKEN: &str = "llama.factory.test.near";
const FACTORY: &str = "factory.test.near";
const OWNER: &str = "owner.test.near";
const USDC: &str = "usdc.test.near";
const MARKET: &str = "market.test.near";

fn wasm(arg: usize, name: &str) -> Result<Vec<u8>> {
    let path = std::env::args()
        .nth(arg)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            PathBuf::from(target).join(format!("wasm32-unknown-unknown/release/{name}.wasm"))
        });
    std::fs::read(&path).with_context(|| {
        format!(
            "read {} (cargo build -p {} --target wasm32-unknown-unknown --release)",
            path.display(),
            name.replace('_', "-")
        )
    })
}

/// The protocol's VM config, fees and a compiled-code cache shared by every call.
struct Vm {
    config: Arc<Config>,
    fees: Arc<RuntimeFeesConfig>,
    cache: MockContractRuntimeCache,
}

impl Vm {
    fn new() -> Self {
        let store = RuntimeConfigStore::new(None);
        let runtime = store.get_config(PROTOCOL_VERSION);
        let mut config = runtime.wasm_config.as_ref().clone();
        config.vm_kind = VMKind::Wasmtime;
        Self {
            config: Arc::new(config),
            fees: Arc::new(runtime.fees.as_ref().clone()),
            cache: MockContractRuntimeCache::default(),
        }
    }

    fn send(&self, c: ActionCosts) -> u64 {
        self.fees.fee(c).send_fee(true).gas.as_gas()
    }

    fn exec(&self, c: ActionCosts) -> u64 {
        self.fees.fee(c).exec_fee().gas.as_gas()
    }

    /// Signer's send fees plus the receipt's execution fees of a function-call transaction
    /// (what is burnt before the contract code runs).
    fn fc_fees(&self, method: &str, args: &Value) -> Gas {
        let bytes = (method.len() + args.to_string().len()) as u64;
        let both = |c| self.send(c) + self.exec(c);
        Gas::from_gas(
            both(ActionCosts::new_action_receipt)
                + both(ActionCosts::function_call_base)
                + both(ActionCosts::function_call_byte) * bytes,
        )
    }

    /// Execution fees of a receipt the contract created (its send fees are already in the
    /// creating call's burnt gas).
    fn receipt_exec(&self, actions: &[ActionCosts], bytes: u64) -> Gas {
        let per_byte: u64 = actions
            .iter()
            .filter(|c| matches!(c, ActionCosts::function_call_base))
            .map(|_| self.exec(ActionCosts::function_call_byte) * bytes)
            .sum();
        Gas::from_gas(
            self.exec(ActionCosts::new_action_receipt)
                + actions.iter().map(|&c| self.exec(c)).sum::<u64>()
                + per_byte,
        )
    }
}

/// One contract account on its own mocked state.
struct Contract {
    account: &'static str,
    ext: MockedExternal,
    storage_usage: u64,
}

struct Outcome {
    gas: Gas,
    actions: Vec<MockAction>,
    logs: Vec<String>,
}

impl Contract {
    fn new(account: &'static str, code: &[u8]) -> Self {
        Self {
            account,
            ext: MockedExternal::with_code(ContractCode::new(code.to_vec(), None)),
            storage_usage: 10_000,
        }
    }

    fn call(
        &mut self,
        vm: &Vm,
        who: &str,
        deposit: u128,
        method: &str,
        args: &Value,
        results: Vec<PromiseResult>,
    ) -> Result<Outcome> {
        let context = VMContext {
            current_account_id: self.account.parse()?,
            signer_account_id: who.parse()?,
            signer_account_pk: vec![0; 33],
            predecessor_account_id: who.parse()?,
            refund_to_account_id: who.parse()?,
            input: serde_json::to_vec(args)?.into(),
            promise_results: results.into(),
            block_height: 1,
            block_timestamp: T0,
            epoch_height: 1,
            account_balance: Balance::from_yoctonear(1_000_000 * NEAR),
            account_locked_balance: Balance::from_yoctonear(0),
            storage_usage: self.storage_usage,
            account_contract: AccountContract::None,
            attached_deposit: Balance::from_yoctonear(deposit),
            prepaid_gas: Gas::from_teragas(300),
            random_seed: vec![0; 32],
            view_config: None,
            output_data_receivers: vec![],
        };
        self.ext.action_log.clear();
        let counter = context.make_gas_counter(&vm.config);
        let prepared = near_vm_runner::prepare(
            &self.ext,
            vm.config.clone(),
            Some(&vm.cache),
            counter,
            method,
        );
        let outcome = near_vm_runner::run(prepared, &mut self.ext, &context, vm.fees.clone())
            .map_err(|e| anyhow::anyhow!("VM error in {method}: {e:?}"))?;
        if let Some(err) = outcome.aborted {
            bail!("{method} by {who} failed: {err:?}; logs {:?}", outcome.logs);
        }
        self.storage_usage = outcome.storage_usage;
        Ok(Outcome {
            gas: outcome.burnt_gas,
            actions: self.ext.action_log.clone(),
            logs: outcome.logs,
        })
    }

    /// A whole function-call transaction: fees plus execution.
    fn tx(
        &mut self,
        vm: &Vm,
        who: &str,
        deposit: u128,
        method: &str,
        args: Value,
    ) -> Result<Outcome> {
        let mut out = self.call(vm, who, deposit, method, &args, vec![])?;
        out.gas = out
            .gas
            .checked_add(vm.fc_fees(method, &args))
            .context("gas overflow")?;
        Ok(out)
    }

    /// A callback this contract receives with one successful result: its execution fees
    /// and its code.
    fn callback(&mut self, vm: &Vm, method: &str, args: Value) -> Result<Gas> {
        let ok = PromiseResult::Successful(Rc::from(Vec::new()));
        let out = self.call(vm, self.account, 0, method, &args, vec![ok])?;
        let bytes = (method.len() + args.to_string().len()) as u64;
        Ok(sum(&[
            out.gas,
            vm.receipt_exec(&[ActionCosts::function_call_base], bytes),
        ]))
    }
}

fn sum(parts: &[Gas]) -> Gas {
    Gas::from_gas(parts.iter().map(|g| g.as_gas()).sum())
}

fn bench(name: &str, gas: Gas) {
    println!("BENCH {name}.gas {:.2} Tgas", gas.as_gas() as f64 / 1e12);
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

fn holder(i: usize) -> String {
    format!("h{i}.test.near")
}

/// The revenue methods on a token with `n` holders.
fn revenue_benches(vm: &Vm, code: &[u8], n: usize) -> Result<()> {
    let mut t = Contract::new(TOKEN, code);
    t.call(
        vm,
        OWNER,
        0,
        "new",
        &json!({ "init": model_init(None) }),
        vec![],
    )?;
    for i in 0..n {
        let h = holder(i);
        t.call(
            vm,
            OWNER,
            NEAR / 10,
            "storage_deposit",
            &json!({ "account_id": h }),
            vec![],
        )?;
        let args = json!({ "receiver_id": h, "amount": (NEAR + i as u128).to_string() });
        t.call(vm, OWNER, 1, "ft_transfer", &args, vec![])?;
    }
    let tag = format!("holders_{n}");

    let dep = t.tx(vm, MARKET, 3 * NEAR, "deposit_revenue", json!({}))?;
    bench(&format!("model_token.deposit_revenue.{tag}"), dep.gas);

    let args = json!({ "sender_id": MARKET, "amount": "5000000", "msg": "" });
    let ft = t.tx(vm, USDC, 0, "ft_on_transfer", args)?;
    bench(&format!("model_token.ft_on_transfer.{tag}"), ft.gas);

    let args = json!({ "receiver_id": holder(0), "amount": "1000" });
    let tr = t.tx(vm, OWNER, 1, "ft_transfer", args)?;
    bench(&format!("model_token.ft_transfer.{tag}"), tr.gas);

    for (asset, pool, name) in [
        (json!({ "kind": "near" }), 0, "near"),
        (json!({ "kind": "ft", "token": USDC }), 1, "ft"),
    ] {
        let claim = t.tx(
            vm,
            &holder(0),
            1,
            "claim_revenue",
            json!({ "asset": asset }),
        )?;
        let amount = callback_amount(&claim.actions)?;
        // The payout receipt: a transfer (NEAR) or ft_transfer on the token (its execution
        // fees only; the token's own code is not ours).
        let payout = if name == "near" {
            vm.receipt_exec(&[ActionCosts::transfer], 0)
        } else {
            vm.receipt_exec(&[ActionCosts::function_call_base], 100)
        };
        let args = json!({ "account": holder(0), "pool": pool, "amount": amount });
        let cb = t.callback(vm, "on_revenue_claimed", args)?;
        bench(
            &format!("model_token.claim_revenue.{name}.{tag}"),
            sum(&[claim.gas, payout, cb]),
        );
    }
    Ok(())
}

/// The `amount` the contract scheduled for `on_revenue_claimed`.
fn callback_amount(actions: &[MockAction]) -> Result<String> {
    for a in actions {
        if let MockAction::FunctionCallWeight {
            method_name, args, ..
        } = a
            && method_name == b"on_revenue_claimed"
        {
            let v: Value = serde_json::from_slice(args)?;
            return Ok(v["amount"].as_str().unwrap_or("0").to_owned());
        }
    }
    bail!("claim_revenue scheduled no callback: {actions:?}")
}

fn contribute_bench(vm: &Vm, code: &[u8]) -> Result<()> {
    let crowdfund = json!({
        "goal": (1_000 * NEAR).to_string(),
        "token_price": NEAR.to_string(),
        "deadline_ns": (T0 + 3600 * SEC).to_string(),
        "beneficiary": "trainer.test.near",
        "milestones_bps": [5000, 5000]
    });
    let mut t = Contract::new(TOKEN, code);
    t.call(
        vm,
        OWNER,
        0,
        "new",
        &json!({ "init": model_init(Some(crowdfund)) }),
        vec![],
    )?;
    t.tx(vm, &holder(0), 2 * NEAR, "contribute", json!({}))?;
    bench(
        "model_token.contribute",
        t.tx(vm, &holder(1), 2 * NEAR, "contribute", json!({}))?.gas,
    );
    Ok(())
}

/// `grant_key` and its callback with an eligible node (the registry's `get_node` is not ours).
fn grant_bench(vm: &Vm, code: &[u8]) -> Result<()> {
    let mut t = Contract::new(TOKEN, code);
    t.call(
        vm,
        OWNER,
        0,
        "new",
        &json!({ "init": model_init(None) }),
        vec![],
    )?;
    let key = "c2VhbGVkIG1vZGVsIGtleSBmb3Igbm9kZSA3IChIUEtFIGNpcGhlcnRleHQgb2YgMzIgYnl0ZXMp";
    let args = json!({ "node_id": "7", "encrypted_key": key, "key_hash": "11".repeat(32) });
    let grant = t.tx(vm, "keys.test.near", NEAR / 10, "grant_key", args)?;
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
    let result = PromiseResult::Successful(Rc::from(serde_json::to_vec(&Some(node))?));
    let out = t.call(vm, TOKEN, 0, "on_node_checked", &cb_args, vec![result])?;
    let bytes = ("on_node_checked".len() + cb_args.to_string().len()) as u64;
    let cb = sum(&[
        out.gas,
        vm.receipt_exec(&[ActionCosts::function_call_base], bytes),
    ]);
    if !out.logs.iter().any(|l| l.contains("\"key_granted\"")) {
        bail!("on_node_checked refused the grant: {:?}", out.logs);
    }
    bench("model_token.grant_key", sum(&[grant.gas, cb]));
    Ok(())
}

fn factory_bench(vm: &Vm, token_code: &[u8], factory_code: &[u8]) -> Result<()> {
    let mut f = Contract::new(FACTORY, factory_code);
    f.call(
        vm,
        OWNER,
        0,
        "new",
        &json!({ "owner": OWNER, "registry": "registry.test.near" }),
        vec![],
    )?;
    let code = json!({ "hash": "E4boMSwkJ2vxb6MgjhNhgmaHpkGX8MMwK3M5RioLQPtj" });
    f.call(
        vm,
        OWNER,
        1,
        "set_model_code",
        &json!({ "code": code }),
        vec![],
    )?;
    let mut args = model_init(None);
    for k in ["model_id", "owner", "registry"] {
        args.as_object_mut().context("init is an object")?.remove(k);
    }
    let create = f.tx(
        vm,
        "alice.test.near",
        5 * NEAR,
        "create_model",
        json!({ "model_id": "llama", "args": args }),
    )?;
    // The batch on the new account: create, fund, use the global code, call `new`.
    let (init, creator_args) = new_call(&create.actions)?;
    let batch = vm.receipt_exec(
        &[
            ActionCosts::create_account,
            ActionCosts::transfer,
            ActionCosts::use_global_contract_base,
            ActionCosts::function_call_base,
        ],
        ("new".len() + init.len()) as u64,
    );
    let mut model = Contract::new(TOKEN, token_code);
    let before = model.storage_usage;
    let new_gas = model
        .call(
            vm,
            FACTORY,
            0,
            "new",
            &serde_json::from_slice(&init)?,
            vec![],
        )?
        .gas;
    // What the creator's deposit must cover besides the account record (the factory asks for
    // 1200 bytes plus the arguments).
    println!(
        "BENCH model_token.init_storage {} bytes  # init args {} bytes",
        model.storage_usage - before,
        init.len()
    );
    let cb = f.callback(vm, "on_model_created", creator_args)?;
    println!(
        "# create_model: factory {:.2}, batch fees {:.2}, new {:.2}, callback {:.2} Tgas",
        create.gas.as_gas() as f64 / 1e12,
        batch.as_gas() as f64 / 1e12,
        new_gas.as_gas() as f64 / 1e12,
        cb.as_gas() as f64 / 1e12
    );
    bench(
        "model_factory.create_model",
        sum(&[create.gas, batch, new_gas, cb]),
    );
    Ok(())
}

/// The `new` arguments of the creating batch and the callback's arguments.
fn new_call(actions: &[MockAction]) -> Result<(Vec<u8>, Value)> {
    let mut init = None;
    let mut callback = None;
    for a in actions {
        if let MockAction::FunctionCallWeight {
            method_name, args, ..
        } = a
        {
            match method_name.as_slice() {
                b"new" => init = Some(args.clone()),
                b"on_model_created" => callback = Some(serde_json::from_slice(args)?),
                _ => {}
            }
        }
    }
    Ok((
        init.context("create_model scheduled no new()")?,
        callback.context("create_model scheduled no callback")?,
    ))
}

fn main() -> Result<()> {
    let token_code = wasm(1, "model_token")?;
    let factory_code = wasm(2, "model_factory")?;
    println!("BENCH model_token.wasm_size {} bytes", token_code.len());
    println!("BENCH model_factory.wasm_size {} bytes", factory_code.len());
    let vm = Vm::new();
    for n in [1, 1000] {
        revenue_benches(&vm, &token_code, n)?;
    }
    contribute_bench(&vm, &token_code)?;
    grant_bench(&vm, &token_code)?;
    factory_bench(&vm, &token_code, &factory_code)?;
    Ok(())
}
