//! Runs the marketplace contract (release wasm) with the real registry contract in nearcore's
//! wasmtime VM under the current protocol's costs, through a whole job and agent request, and
//! prints the gas of each transaction and the storage a job occupies:
//!
//! ```text
//! BENCH marketplace.wasm_size <bytes> bytes
//! BENCH marketplace.submit_job.gas <Tgas> Tgas            (tx total: receipt + refund transfer)
//! BENCH marketplace.claim_job.gas <Tgas> Tgas             (tx total incl. registry get_node + callback)
//! BENCH marketplace.claim_job.cached.gas <Tgas> Tgas      (node cached: no round trip)
//! BENCH marketplace.submit_result.gas <Tgas> Tgas         (tx total incl. payouts + on_payouts)
//! BENCH marketplace.request.gas <Tgas> Tgas               (the request receipt, yield created)
//! BENCH marketplace.respond.gas <Tgas> Tgas               (tx total)
//! BENCH marketplace.on_request_done.gas <Tgas> Tgas       (yield callback + payouts + caller callback)
//! BENCH marketplace.storage.open_job <bytes> bytes
//! BENCH marketplace.storage.settled_job <bytes> bytes
//! ```
//!
//! A transaction's total is the signer's send fees plus, for every receipt it causes, the
//! receipt's execution fees and the gas its code burnt in the VM (which includes the send fees
//! of the receipts it creates). It is an estimate: the sandbox tests on localnet measure the
//! real `tx_outcome` totals. Usage: `marketplace-gas-bench [MARKETPLACE.wasm REGISTRY.wasm]`
//! (default: `$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/{marketplace,registry}.wasm`).

use anyhow::{Context, Result, bail};
use enclave_cloud_common::{Hash32, JobId, ReceiptSubject, RequestId, ResultReceipt, Usage};
use near_crypto::{KeyType, SecretKey, Signature};
use near_parameters::vm::VMKind;
use near_parameters::{ActionCosts, RuntimeConfigStore, RuntimeFeesConfig};
use near_primitives_core::account::AccountContract;
use near_primitives_core::types::{Balance, Gas};
use near_primitives_core::version::PROTOCOL_VERSION;
use near_vm_runner::ContractCode;
use near_vm_runner::logic::mocks::mock_external::{MockAction, MockedExternal};
use near_vm_runner::logic::types::{PromiseResult, ReturnData};
use near_vm_runner::logic::{Config, VMContext};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_786_622_400 * SEC;
const NEAR: u128 = 10u128.pow(24);
const MODEL: &str = "llama-3-8b";

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
            "read {} (cargo build -p {name} --target wasm32-unknown-unknown --release)",
            path.display()
        )
    })
}

struct Vm {
    config: Arc<Config>,
    fees: Arc<RuntimeFeesConfig>,
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
        }
    }

    fn fc_bytes(method: &str, args: &Value) -> u64 {
        (method.len() + args.to_string().len()) as u64
    }

    /// What the signer pays to turn a function-call transaction into its receipt.
    fn tx_send(&self, method: &str, args: &Value) -> Gas {
        let f = |c| self.fees.fee(c).send_fee(true).gas.as_gas();
        Gas::from_gas(
            f(ActionCosts::new_action_receipt)
                + f(ActionCosts::function_call_base)
                + f(ActionCosts::function_call_byte) * Self::fc_bytes(method, args),
        )
    }

    /// A function-call transaction: the signer's send fees, its receipt's execution fees, and
    /// the gas of everything it caused (`parts`).
    fn tx_total(&self, method: &str, args: &Value, parts: &[Gas]) -> Gas {
        sum(&[
            &[self.tx_send(method, args), self.fc_exec(method, args)],
            parts,
        ]
        .concat())
    }

    /// Execution fees of a function-call receipt (charged before its code runs).
    fn fc_exec(&self, method: &str, args: &Value) -> Gas {
        let f = |c| self.fees.fee(c).exec_fee().gas.as_gas();
        Gas::from_gas(
            f(ActionCosts::new_action_receipt)
                + f(ActionCosts::function_call_base)
                + f(ActionCosts::function_call_byte) * Self::fc_bytes(method, args),
        )
    }

    /// Execution fees of a transfer receipt.
    fn transfer_exec(&self) -> Gas {
        let f = |c| self.fees.fee(c).exec_fee().gas.as_gas();
        Gas::from_gas(f(ActionCosts::new_action_receipt) + f(ActionCosts::transfer))
    }
}

struct Contract {
    account: &'static str,
    ext: MockedExternal,
    storage_usage: u64,
}

struct Call<'a> {
    who: &'a str,
    key: Vec<u8>,
    deposit: u128,
    results: Vec<PromiseResult>,
}

impl<'a> Call<'a> {
    fn by(who: &'a str) -> Self {
        Self {
            who,
            key: vec![0; 33],
            deposit: 0,
            results: vec![],
        }
    }
    fn deposit(mut self, yocto: u128) -> Self {
        self.deposit = yocto;
        self
    }
    fn key(mut self, key: Vec<u8>) -> Self {
        self.key = key;
        self
    }
    fn results(mut self, results: Vec<PromiseResult>) -> Self {
        self.results = results;
        self
    }
}

struct Outcome {
    gas: Gas,
    value: Vec<u8>,
}

impl Contract {
    fn new(account: &'static str, code: Vec<u8>) -> Self {
        Self {
            account,
            ext: MockedExternal::with_code(ContractCode::new(code, None)),
            storage_usage: 10_000,
        }
    }

    fn call(
        &mut self,
        vm: &Vm,
        call: Call<'_>,
        method: &str,
        args: &Value,
        now_ns: u64,
    ) -> Result<Outcome> {
        let context = VMContext {
            current_account_id: self.account.parse()?,
            signer_account_id: call.who.parse()?,
            signer_account_pk: call.key.clone(),
            predecessor_account_id: call.who.parse()?,
            refund_to_account_id: call.who.parse()?,
            input: serde_json::to_vec(args)?.into(),
            promise_results: call.results.into(),
            block_height: 1,
            block_timestamp: now_ns,
            epoch_height: 1,
            account_balance: Balance::from_near(1_000),
            account_locked_balance: Balance::from_yoctonear(0),
            storage_usage: self.storage_usage,
            account_contract: AccountContract::None,
            attached_deposit: Balance::from_yoctonear(call.deposit),
            prepaid_gas: Gas::from_teragas(300),
            random_seed: vec![0; 32],
            view_config: None,
            output_data_receivers: vec![],
        };
        let gas_counter = context.make_gas_counter(&vm.config);
        let prepared =
            near_vm_runner::prepare(&self.ext, vm.config.clone(), None, gas_counter, method);
        let outcome = near_vm_runner::run(prepared, &mut self.ext, &context, vm.fees.clone())
            .map_err(|e| anyhow::anyhow!("VM error: {e:?}"))?;
        if let Some(err) = outcome.aborted {
            bail!(
                "{method} failed after {} gas: {err:?}; logs {:?}",
                outcome.burnt_gas,
                outcome.logs
            );
        }
        self.storage_usage = outcome.storage_usage;
        let value = match outcome.return_data {
            ReturnData::Value(v) => v,
            _ => vec![],
        };
        Ok(Outcome {
            gas: outcome.burnt_gas,
            value,
        })
    }

    /// A view call's JSON result.
    fn view(&mut self, vm: &Vm, method: &str, args: &Value) -> Result<Value> {
        let out = self.call(vm, Call::by("viewer.test.near"), method, args, T0)?;
        Ok(serde_json::from_slice(&out.value)?)
    }

    /// Runs the `on_payouts` callback of the receipts the last call created, all payouts
    /// succeeding; returns the gas of the payout receipts and the callback.
    fn settle_payouts(&mut self, vm: &Vm, now_ns: u64) -> Result<Gas> {
        let receipts = self.take_receipts();
        let transfers = receipts.iter().filter(|(m, _)| m == "transfer").count() as u64;
        let args: Value = receipts
            .iter()
            .find(|(m, _)| m == "on_payouts")
            .map(|(_, a)| serde_json::from_slice(a))
            .context("no on_payouts callback")??;
        let results = (0..transfers)
            .map(|_| PromiseResult::Successful(Vec::new().into()))
            .collect();
        let callback = self.call(
            vm,
            Call::by(self.account).results(results),
            "on_payouts",
            &args,
            now_ns,
        )?;
        Ok(sum(&[
            Gas::from_gas(vm.transfer_exec().as_gas() * transfers),
            vm.fc_exec("on_payouts", &args),
            callback.gas,
        ]))
    }

    /// Receipts the last calls created: (method or "transfer", args); the log is cleared.
    fn take_receipts(&mut self) -> Vec<(String, Vec<u8>)> {
        let out = self
            .ext
            .action_log
            .iter()
            .filter_map(|a| match a {
                MockAction::FunctionCallWeight {
                    method_name, args, ..
                } => Some((
                    String::from_utf8_lossy(method_name).into_owned(),
                    args.clone(),
                )),
                MockAction::Transfer { .. } => Some(("transfer".to_owned(), vec![])),
                _ => None,
            })
            .collect();
        self.ext.action_log.clear();
        out
    }
}

fn tgas(g: Gas) -> f64 {
    g.as_gas() as f64 / 1e12
}

fn bench(name: &str, gas: Gas) {
    println!("BENCH marketplace.{name}.gas {:.2} Tgas", tgas(gas));
}

fn sum(parts: &[Gas]) -> Gas {
    Gas::from_gas(parts.iter().map(|g| g.as_gas()).sum())
}

fn borsh_key(pk: &near_crypto::PublicKey) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(pk.key_data());
    out
}

fn sign(key: &SecretKey, receipt: &ResultReceipt) -> Result<String> {
    let Signature::ED25519(sig) = key.sign(&receipt.signing_bytes()) else {
        bail!("ed25519 signs ed25519")
    };
    Ok(near_primitives_core::serialize::to_base64(&sig.to_bytes()))
}

fn sha256(bytes: &[u8]) -> Hash32 {
    Hash32(near_primitives_core::hash::hash(bytes).0)
}

fn inline(bytes: &[u8]) -> Value {
    json!({ "kind": "inline", "ciphertext": near_primitives_core::serialize::to_base64(bytes) })
}

fn main() -> Result<()> {
    let market_code = wasm(1, "marketplace")?;
    let registry_code = wasm(2, "registry")?;
    println!("BENCH marketplace.wasm_size {} bytes", market_code.len());
    let vm = Vm::new();
    let t = T0;

    // ----- the registry with one dev node serving the model
    let ca = SecretKey::from_seed(KeyType::ED25519, "dev-ca");
    let enclave = SecretKey::from_seed(KeyType::ED25519, "dev-enclave");
    let enclave_key = borsh_key(&enclave.public_key());
    let mut registry = Contract::new("registry.test.near", registry_code);
    let new = json!({ "owner": "owner.test.near", "mainnet": false, "dev_ca_key": ca.public_key().to_string() });
    registry.call(&vm, Call::by("owner.test.near"), "new", &new, t)?;
    registry.call(
        &vm,
        Call::by("op.test.near").deposit(150 * NEAR),
        "deposit_stake",
        &json!({}),
        t,
    )?;
    let near_key: [u8; 32] = enclave.public_key().key_data().try_into()?;
    let expires = t / SEC + 30 * 24 * 3600;
    let tee_key = [7u8; 32];
    let Signature::ED25519(sig) = ca.sign(&attestation::dev_attestation_message(
        &tee_key, &near_key, expires,
    )) else {
        bail!("ed25519 CA signs ed25519");
    };
    let bundle = json!({
        "version": 1, "kind": "dev", "enclave_key": hex::encode(tee_key),
        "near_public_key": enclave.public_key().to_string(),
        "dev": { "expires_at": expires, "signature": hex::encode(sig.to_bytes()) },
    });
    let node = || Call::by("op.test.near").key(enclave_key.clone());
    registry.call(
        &vm,
        node(),
        "register_node",
        &json!({ "bundle": bundle }),
        t,
    )?;
    let update = json!({ "node_id": "0", "update": {
        "endpoint": "https://node.example/v1", "region": "eu-west", "capacity": 8,
        "prices": [{ "model_id": MODEL, "input_per_million": NEAR.to_string(), "output_per_million": (2 * NEAR).to_string() }] } });
    registry.call(&vm, node(), "update_node", &update, t + SEC)?;
    let set_market = json!({ "marketplace": "market.test.near" });
    registry.call(
        &vm,
        Call::by("owner.test.near").deposit(1),
        "set_marketplace",
        &set_market,
        t,
    )?;

    // ----- the marketplace
    let mut market = Contract::new("market.test.near", market_code);
    let owner = || Call::by("owner.test.near").deposit(1);
    let new = json!({ "owner": "owner.test.near", "registry": "registry.test.near", "treasury": "treasury.test.near" });
    market.call(&vm, Call::by("market.test.near"), "new", &new, t)?;
    let royalty = json!({ "model_id": MODEL, "account": "royalty.test.near" });
    market.call(&vm, owner(), "set_royalty_account", &royalty, t)?;
    market.call(
        &vm,
        Call::by("op.test.near").deposit(NEAR / 10),
        "storage_deposit",
        &json!({}),
        t,
    )?;

    let input = vec![0x5a; 256];
    let estimate: String = serde_json::from_value(market.view(
        &vm,
        "job_storage_deposit",
        &json!({ "input_bytes": 256 }),
    )?)?;
    let deposit = NEAR + estimate.parse::<u128>()?;
    let job = json!({ "job": {
        "model_id": MODEL, "price_cap": NEAR.to_string(), "deadline_ns": (t + 3600 * SEC).to_string(),
        "target": { "kind": "any", "region": null, "gpu_model": null, "max_price_per_million": null },
        "input": inline(&input), "user_key": "cd".repeat(32) } });
    let user = || Call::by("alice.test.near").deposit(deposit);
    market.take_receipts();
    let submit = market.call(&vm, user(), "submit_job", &job, t + 2 * SEC)?;
    // The excess deposit goes back by transfer, checked by `on_payouts`.
    let refund = market.settle_payouts(&vm, t + 2 * SEC)?;
    let submit_total = vm.tx_total("submit_job", &job, &[submit.gas, refund]);
    bench("submit_job", submit_total);
    println!(
        "BENCH marketplace.submit_job.receipt.gas {:.2} Tgas",
        tgas(submit.gas)
    );

    // ----- claim through the registry
    let claim = json!({ "job_id": "1", "node_id": "0" });
    let claimed = market.call(
        &vm,
        Call::by("op.test.near"),
        "claim_job",
        &claim,
        t + 3 * SEC,
    )?;
    market.take_receipts();
    let get_node = json!({ "node_id": "0" });
    let view = registry.call(
        &vm,
        Call::by("market.test.near"),
        "get_node",
        &get_node,
        t + 3 * SEC,
    )?;
    let on_node = json!({ "job_id": "1", "node_id": "0", "claimer": "op.test.near" });
    let callback = market.call(
        &vm,
        Call::by("market.test.near")
            .results(vec![PromiseResult::Successful(view.value.clone().into())]),
        "on_node_for_claim",
        &on_node,
        t + 4 * SEC,
    )?;
    if callback.value != b"true" {
        bail!(
            "the claim was refused: {}",
            String::from_utf8_lossy(&callback.value)
        );
    }
    bench(
        "claim_job",
        vm.tx_total(
            "claim_job",
            &claim,
            &[
                claimed.gas,
                vm.fc_exec("get_node", &get_node),
                view.gas,
                vm.fc_exec("on_node_for_claim", &on_node),
                callback.gas,
            ],
        ),
    );
    println!(
        "BENCH marketplace.registry_get_node.gas {:.2} Tgas",
        tgas(view.gas)
    );

    // ----- a second job, claimed from the cache; its storage is measured
    let before_job = market.storage_usage;
    market.call(&vm, user(), "submit_job", &job, t + 5 * SEC)?;
    let open_bytes = market.storage_usage - before_job;
    let claim2 = json!({ "job_id": "2", "node_id": "0" });
    let before_claim = market.storage_usage;
    let cached = market.call(
        &vm,
        Call::by("op.test.near"),
        "claim_job",
        &claim2,
        t + 6 * SEC,
    )?;
    let claim_bytes = market.storage_usage - before_claim;
    bench(
        "claim_job.cached",
        vm.tx_total("claim_job", &claim2, &[cached.gas]),
    );
    market.take_receipts();

    // ----- results, relayed with the node's signature
    let output = vec![0xa5; 512];
    let used = Usage {
        input_tokens: 1_000.into(),
        output_tokens: 2_000.into(),
    };
    let result_args = |job_id: u64| -> Result<Value> {
        let receipt = ResultReceipt {
            subject: ReceiptSubject::Job(JobId(job_id)),
            model_id: MODEL.parse().map_err(|e| anyhow::anyhow!("{e}"))?,
            input_hash: sha256(&input),
            output_hash: sha256(&output),
            usage: used,
        };
        Ok(
            json!({ "job_id": job_id.to_string(), "output": inline(&output), "usage": used, "signature": sign(&enclave, &receipt)? }),
        )
    };
    let args = result_args(1)?;
    let settled = market.call(
        &vm,
        Call::by("relayer.test.near"),
        "submit_result",
        &args,
        t + 7 * SEC,
    )?;
    let payouts = market.settle_payouts(&vm, t + 8 * SEC)?;
    bench(
        "submit_result",
        vm.tx_total("submit_result", &args, &[settled.gas, payouts]),
    );
    println!(
        "BENCH marketplace.submit_result.receipt.gas {:.2} Tgas",
        tgas(settled.gas)
    );
    let before_settle = market.storage_usage;
    market.call(
        &vm,
        Call::by("relayer.test.near"),
        "submit_result",
        &result_args(2)?,
        t + 9 * SEC,
    )?;
    market.take_receipts();
    let job2 = market.view(&vm, "get_job", &json!({ "job_id": "2" }))?;
    if job2["status"] != "settled" {
        bail!("job 2 is {}, expected settled", job2["status"]);
    }
    // Open: record + indexes. Settled: what stays after the claim grew it and settlement
    // replaced it with its receipt.
    let settled_bytes =
        (open_bytes + claim_bytes) as i64 + (market.storage_usage as i64 - before_settle as i64);
    println!("BENCH marketplace.storage.open_job {open_bytes} bytes");
    println!("BENCH marketplace.storage.settled_job {settled_bytes} bytes");

    // ----- an agent request answered by the node
    let req_dep: String = serde_json::from_value(market.view(
        &vm,
        "request_deposit",
        &json!({ "input_bytes": 256 }),
    )?)?;
    let request =
        json!({ "model_id": MODEL, "input": inline(&input), "price_cap": NEAR.to_string() });
    let agent = Call::by("agent.test.near").deposit(NEAR + req_dep.parse::<u128>()?);
    let requested = market.call(&vm, agent, "request", &request, t + 10 * SEC)?;
    bench(
        "request",
        sum(&[vm.fc_exec("request", &request), requested.gas]),
    );
    let answer = ResultReceipt {
        subject: ReceiptSubject::Request(RequestId(1)),
        model_id: MODEL.parse().map_err(|e| anyhow::anyhow!("{e}"))?,
        input_hash: sha256(&input),
        output_hash: sha256(&output),
        usage: used,
    };
    let respond = json!({ "request_id": "1", "node_id": "0", "output": inline(&output), "usage": used, "signature": sign(&enclave, &answer)? });
    let responded = market.call(
        &vm,
        Call::by("relayer.test.near"),
        "respond",
        &respond,
        t + 11 * SEC,
    )?;
    bench(
        "respond",
        vm.tx_total("respond", &respond, &[responded.gas]),
    );
    market.take_receipts();
    let done_args = json!({ "request_id": "1" });
    let done = market.call(
        &vm,
        Call::by("market.test.near").results(vec![PromiseResult::Successful(Vec::new().into())]),
        "on_request_done",
        &done_args,
        t + 12 * SEC,
    )?;
    let payouts = market.settle_payouts(&vm, t + 13 * SEC)?;
    // Without the caller's own on_ai_response, which depends on the caller's code.
    bench("on_request_done", sum(&[done.gas, payouts]));
    Ok(())
}
