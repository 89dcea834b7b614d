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
//! BENCH marketplace.submit_result.plain.gas <Tgas> Tgas   (a later job, plain weights; tx total)
//! BENCH marketplace.submit_result.weights.gas <Tgas> Tgas (the same job from the same state,
//!                                                          its receipt naming its weights)
//! BENCH marketplace.submit_result.{plain,weights}.receipt.gas <Tgas> Tgas (their contract receipts)
//! BENCH marketplace.request.gas <Tgas> Tgas               (the request receipt, yield created)
//! BENCH marketplace.respond.gas <Tgas> Tgas               (tx total)
//! BENCH marketplace.on_request_done.gas <Tgas> Tgas       (yield callback + payouts + caller callback)
//! BENCH marketplace.open_channel.gas <Tgas> Tgas          (NEAR, the node cached)
//! BENCH marketplace.settle_channel.gas <Tgas> Tgas        (tx total incl. payouts + on_payouts)
//! BENCH marketplace.close_channel.gas <Tgas> Tgas         (final voucher: payouts and refund)
//! BENCH marketplace.start_close.gas <Tgas> Tgas
//! BENCH marketplace.finish_close.gas <Tgas> Tgas          (refund + storage)
//! BENCH marketplace.storage.channel <bytes> bytes         (stored; a flat CHANNEL_STORAGE_BYTES is charged)
//! BENCH marketplace.propose_change.gas <Tgas> Tgas        (a critical update_config, queued)
//! BENCH marketplace.apply_change.gas <Tgas> Tgas          (applied after the delay)
//! BENCH marketplace.storage.open_job <bytes> bytes
//! BENCH marketplace.storage.settled_job <bytes> bytes
//! BENCH marketplace.storage.receipt_weights <bytes> bytes (what naming the weights adds)
//! ```
//!
//! A transaction's total is the signer's send fees plus, for every receipt it causes, the
//! receipt's execution fees and the gas its code burnt in the VM (which includes the send fees
//! of the receipts it creates); the VM, the fees and the mocked accounts are the shared
//! `gas-harness`. It is an estimate: the sandbox tests on localnet measure the real
//! `tx_outcome` totals. Usage: `marketplace-gas-bench [MARKETPLACE.wasm REGISTRY.wasm]`
//! (default: `$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/{marketplace,registry}.wasm`).

use anyhow::{Result, anyhow, bail};
use enclave_cloud_common::{
    Asset, ChannelId, Hash32, JobId, ReceiptSubject, RequestId, ResultReceipt, Usage, Voucher,
};
use gas_harness::{
    Call, Contract, Gas, NEAR, Outcome, PromiseResult, SEC, T0, Vm, print_bench, print_gas, sum,
    wasm_arg,
};
use near_crypto::{KeyType, SecretKey, Signature};
use serde_json::{Value, json};

const MODEL: &str = "llama-3-8b";
/// Transactions are priced at the `send_sir` rate, as these figures always were; a user's
/// transaction pays `send_not_sir`, more per argument byte (see `Vm::send_fee`).
const SENDER_IS_RECEIVER: bool = true;

/// A function-call transaction: the signer's send fees, its receipt's execution fees, and
/// the gas of everything it caused (`parts`).
fn tx_total(vm: &Vm, method: &str, args: &Value, parts: &[Gas]) -> Gas {
    let fees = vm.function_call_tx_fees(method, args, SENDER_IS_RECEIVER);
    sum(&[&[fees], parts].concat())
}

fn bench(name: &str, gas: Gas) {
    print_gas(&format!("marketplace.{name}"), gas);
}

/// A view call's JSON result.
fn view(vm: &Vm, c: &mut Contract, method: &str, args: &Value) -> Result<Value> {
    let out = c.call(vm, Call::by("viewer.test.near"), method, args)?;
    Ok(serde_json::from_slice(&out.value)?)
}

/// Runs the `on_payouts` callback of the receipts `settled` created, all payouts succeeding;
/// returns the gas of the payout receipts and the callback.
fn settle_payouts(vm: &Vm, market: &mut Contract, settled: &Outcome, now_ns: u64) -> Result<Gas> {
    let transfers = settled.transfers() as u64;
    let args = settled.scheduled_json("on_payouts")?;
    let results = (0..transfers)
        .map(|_| PromiseResult::Successful(Vec::new().into()))
        .collect();
    let me = market.account().to_owned();
    let callback = Call::by(&me).results(results).at(now_ns);
    let callback = market.call(vm, callback, "on_payouts", &args)?;
    Ok(sum(&[
        Gas::from_gas(vm.transfer_exec().as_gas() * transfers),
        vm.function_call_exec("on_payouts", &args),
        callback.gas,
    ]))
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

/// The channel key's signature (base64) over `voucher`.
fn sign_voucher(key: &SecretKey, voucher: &Voucher) -> Result<String> {
    let Signature::ED25519(sig) = key.sign(&voucher.signing_bytes()) else {
        bail!("ed25519 signs ed25519")
    };
    Ok(near_primitives_core::serialize::to_base64(&sig.to_bytes()))
}

/// Payment channels with the node cached: open (NEAR), settle, close cooperatively, then a
/// second channel closed unilaterally.
fn channels(vm: &Vm, market: &mut Contract, t: u64) -> Result<()> {
    let key = SecretKey::from_seed(KeyType::ED25519, "channel-key");
    let storage: String =
        serde_json::from_value(view(vm, market, "channel_storage_deposit", &json!({}))?)?;
    let deposit = NEAR;
    let open = json!({ "channel": { "node_id": "0", "model_id": MODEL, "channel_key": key.public_key().to_string() }, "deposit": deposit.to_string() });
    let user = |now_ns| {
        Call::by("alice.test.near")
            .deposit(deposit + storage.parse::<u128>().unwrap_or(0))
            .at(now_ns)
    };
    let before = market.storage_usage();
    let opened = market.call(vm, user(t), "open_channel", &open)?;
    if opened.value != b"\"1\"" {
        bail!(
            "channel not opened: {}",
            String::from_utf8_lossy(&opened.value)
        );
    }
    let stored = market.storage_usage() - before;
    bench(
        "open_channel",
        tx_total(vm, "open_channel", &open, &[opened.gas]),
    );
    print_bench("marketplace.storage.channel", stored, "bytes");

    let voucher_args = |id: u64, amount: u128| -> Result<Value> {
        let voucher = Voucher {
            marketplace: "market.test.near".parse()?,
            channel_id: ChannelId(id),
            asset: Asset::Near,
            amount: amount.into(),
        };
        let signature = sign_voucher(&key, &voucher)?;
        Ok(json!({ "channel_id": id.to_string(), "voucher": voucher, "signature": signature }))
    };
    let node = |now_ns| Call::by("op.test.near").at(now_ns);
    // The same cost whatever the number of requests the voucher covers: one amount.
    let args = voucher_args(1, NEAR / 10)?;
    let settled = market.call(vm, node(t + SEC), "settle_channel", &args)?;
    let payouts = settle_payouts(vm, market, &settled, t + SEC)?;
    bench(
        "settle_channel",
        tx_total(vm, "settle_channel", &args, &[settled.gas, payouts]),
    );
    let args = voucher_args(1, NEAR / 4)?;
    let closed = market.call(vm, node(t + 2 * SEC), "close_channel", &args)?;
    let payouts = settle_payouts(vm, market, &closed, t + 2 * SEC)?;
    bench(
        "close_channel",
        tx_total(vm, "close_channel", &args, &[closed.gas, payouts]),
    );

    market.call(vm, user(t + 3 * SEC), "open_channel", &open)?;
    let channel = json!({ "channel_id": "2" });
    let start = Call::by("alice.test.near").deposit(1).at(t + 4 * SEC);
    let started = market.call(vm, start, "start_close", &channel)?;
    bench(
        "start_close",
        tx_total(vm, "start_close", &channel, &[started.gas]),
    );
    let after = t + 5 * SEC + 24 * 3600 * SEC;
    let anyone = Call::by("anyone.test.near").at(after);
    let finished = market.call(vm, anyone, "finish_close", &channel)?;
    let payouts = settle_payouts(vm, market, &finished, after)?;
    bench(
        "finish_close",
        tx_total(vm, "finish_close", &channel, &[finished.gas, payouts]),
    );
    Ok(())
}

fn inline(bytes: &[u8]) -> Value {
    json!({ "kind": "inline", "ciphertext": near_primitives_core::serialize::to_base64(bytes) })
}

fn main() -> Result<()> {
    let market_code = wasm_arg(1, "marketplace")?;
    let registry_code = wasm_arg(2, "registry")?;
    print_bench("marketplace.wasm_size", market_code.len(), "bytes");
    let vm = Vm::new();
    let t = T0;

    // ----- the registry with one dev node serving the model
    let ca = SecretKey::from_seed(KeyType::ED25519, "dev-ca");
    let enclave = SecretKey::from_seed(KeyType::ED25519, "dev-enclave");
    let enclave_key = borsh_key(&enclave.public_key());
    let mut registry = Contract::new("registry.test.near", &registry_code)?;
    let new = json!({ "owner": "owner.test.near", "mainnet": false, "dev_ca_key": ca.public_key().to_string() });
    registry.call(&vm, Call::by("owner.test.near"), "new", &new)?;
    let stake = Call::by("op.test.near").deposit(150 * NEAR);
    registry.call(&vm, stake, "deposit_stake", &json!({}))?;
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
    registry.call(&vm, node(), "register_node", &json!({ "bundle": bundle }))?;
    let update = json!({ "node_id": "0", "update": {
        "endpoint": "https://node.example/v1", "region": "eu-west", "capacity": 8,
        "prices": [{ "model_id": MODEL, "input_per_million": NEAR.to_string(), "output_per_million": (2 * NEAR).to_string() }] } });
    registry.call(&vm, node().at(t + SEC), "update_node", &update)?;
    let set_market = json!({ "marketplace": "market.test.near" });
    let governor = Call::by("owner.test.near").deposit(1);
    registry.call(&vm, governor, "set_marketplace", &set_market)?;

    // ----- the marketplace
    let mut market = Contract::new("market.test.near", &market_code)?;
    let owner = || Call::by("owner.test.near").deposit(1);
    let new = json!({ "owner": "owner.test.near", "registry": "registry.test.near", "treasury": "treasury.test.near" });
    market.call(&vm, Call::by("market.test.near"), "new", &new)?;
    let royalty = json!({ "model_id": MODEL, "account": "royalty.test.near" });
    market.call(&vm, owner(), "set_royalty_account", &royalty)?;
    let operator = Call::by("op.test.near").deposit(NEAR / 10);
    market.call(&vm, operator, "storage_deposit", &json!({}))?;

    let input = vec![0x5a; 256];
    let estimate = json!({ "input_bytes": 256 });
    let estimate: String =
        serde_json::from_value(view(&vm, &mut market, "job_storage_deposit", &estimate)?)?;
    let deposit = NEAR + estimate.parse::<u128>()?;
    let job = json!({ "job": {
        "model_id": MODEL, "price_cap": NEAR.to_string(), "deadline_ns": (t + 3600 * SEC).to_string(),
        "target": { "kind": "any", "region": null, "gpu_model": null, "max_price_per_million": null },
        "input": inline(&input), "user_key": "cd".repeat(32) } });
    let user = |now_ns| Call::by("alice.test.near").deposit(deposit).at(now_ns);
    let submit = market.call(&vm, user(t + 2 * SEC), "submit_job", &job)?;
    // The excess deposit goes back by transfer, checked by `on_payouts`.
    let refund = settle_payouts(&vm, &mut market, &submit, t + 2 * SEC)?;
    bench(
        "submit_job",
        tx_total(&vm, "submit_job", &job, &[submit.gas, refund]),
    );
    bench("submit_job.receipt", submit.gas);

    // ----- claim through the registry
    let claim = json!({ "job_id": "1", "node_id": "0" });
    let claimer = |now_ns| Call::by("op.test.near").at(now_ns);
    let claimed = market.call(&vm, claimer(t + 3 * SEC), "claim_job", &claim)?;
    let get_node = json!({ "node_id": "0" });
    let from_market = Call::by("market.test.near").at(t + 3 * SEC);
    let view_node = registry.call(&vm, from_market, "get_node", &get_node)?;
    let on_node = json!({ "job_id": "1", "node_id": "0", "claimer": "op.test.near" });
    let node_result = PromiseResult::Successful(view_node.value.clone().into());
    let callback = Call::by("market.test.near")
        .results(vec![node_result])
        .at(t + 4 * SEC);
    let callback = market.call(&vm, callback, "on_node_for_claim", &on_node)?;
    if callback.value != b"true" {
        bail!(
            "the claim was refused: {}",
            String::from_utf8_lossy(&callback.value)
        );
    }
    bench(
        "claim_job",
        tx_total(
            &vm,
            "claim_job",
            &claim,
            &[
                claimed.gas,
                vm.function_call_exec("get_node", &get_node),
                view_node.gas,
                vm.function_call_exec("on_node_for_claim", &on_node),
                callback.gas,
            ],
        ),
    );
    bench("registry_get_node", view_node.gas);

    // ----- a second job, claimed from the cache; its storage is measured
    let before_job = market.storage_usage();
    market.call(&vm, user(t + 5 * SEC), "submit_job", &job)?;
    let open_bytes = market.storage_usage() - before_job;
    let claim2 = json!({ "job_id": "2", "node_id": "0" });
    let before_claim = market.storage_usage();
    let cached = market.call(&vm, claimer(t + 6 * SEC), "claim_job", &claim2)?;
    let claim_bytes = market.storage_usage() - before_claim;
    bench(
        "claim_job.cached",
        tx_total(&vm, "claim_job", &claim2, &[cached.gas]),
    );
    // ----- results, relayed with the node's signature
    let output = vec![0xa5; 512];
    let used = Usage {
        input_tokens: 1_000.into(),
        output_tokens: 2_000.into(),
    };
    let receipt = |subject, weights_hash| -> Result<ResultReceipt> {
        Ok(ResultReceipt {
            subject,
            model_id: MODEL.parse().map_err(|e| anyhow!("{e}"))?,
            input_hash: sha256(&input),
            output_hash: sha256(&output),
            usage: used,
            weights_hash,
        })
    };
    let signed_args = |job_id: u64, weights_hash: Option<Hash32>| -> Result<Value> {
        let receipt = receipt(ReceiptSubject::Job(JobId(job_id)), weights_hash)?;
        let mut args = json!({ "job_id": job_id.to_string(), "output": inline(&output), "usage": used, "signature": sign(&enclave, &receipt)? });
        if let Some(w) = weights_hash {
            args["weights_hash"] = json!(w);
        }
        Ok(args)
    };
    let result_args = |job_id: u64| signed_args(job_id, None);
    let relayer = |now_ns| Call::by("relayer.test.near").at(now_ns);
    let args = result_args(1)?;
    let settled = market.call(&vm, relayer(t + 7 * SEC), "submit_result", &args)?;
    let payouts = settle_payouts(&vm, &mut market, &settled, t + 8 * SEC)?;
    bench(
        "submit_result",
        tx_total(&vm, "submit_result", &args, &[settled.gas, payouts]),
    );
    bench("submit_result.receipt", settled.gas);
    let before_settle = market.storage_usage();
    market.call(&vm, relayer(t + 9 * SEC), "submit_result", &result_args(2)?)?;
    let job2 = view(&vm, &mut market, "get_job", &json!({ "job_id": "2" }))?;
    if job2["status"] != "settled" || job2.get("weights_hash").is_some() {
        bail!("job 2 is {job2}, expected settled with plain weights");
    }
    // Open: record + indexes. Settled: what stays after the claim grew it and settlement
    // replaced it with its receipt.
    let settled_bytes =
        (open_bytes + claim_bytes) as i64 + (market.storage_usage() as i64 - before_settle as i64);
    print_bench("marketplace.storage.open_job", open_bytes, "bytes");
    print_bench("marketplace.storage.settled_job", settled_bytes, "bytes");

    // ----- a third job settled both ways from the same state: plain weights (on a copy of
    // the contract) and with a receipt naming its encrypted weights
    market.call(&vm, user(t + 9 * SEC), "submit_job", &job)?;
    let claim3 = json!({ "job_id": "3", "node_id": "0" });
    if market
        .call(&vm, claimer(t + 9 * SEC), "claim_job", &claim3)?
        .value
        != b"true"
    {
        bail!("job 3 was not claimed from the cache");
    }
    let weights = Hash32([0xee; 32]);
    let settle_3 = |market: &mut Contract, weights_hash| -> Result<(Gas, Gas, i64)> {
        let args = signed_args(3, weights_hash)?;
        let before = market.storage_usage();
        let settled = market.call(&vm, relayer(t + 9 * SEC), "submit_result", &args)?;
        let stored = market.storage_usage() as i64 - before as i64;
        let payouts = settle_payouts(&vm, market, &settled, t + 9 * SEC)?;
        let job3 = view(&vm, market, "get_job", &json!({ "job_id": "3" }))?;
        if job3["status"] != "settled"
            || job3.get("weights_hash") != weights_hash.map(|w| json!(w)).as_ref()
        {
            bail!("job 3 is {job3}, expected settled naming {weights_hash:?}");
        }
        let total = tx_total(&vm, "submit_result", &args, &[settled.gas, payouts]);
        Ok((total, settled.gas, stored))
    };
    let (plain_total, plain_receipt, plain_stored) = settle_3(&mut market.clone(), None)?;
    let (total, receipt_gas, stored) = settle_3(&mut market, Some(weights))?;
    bench("submit_result.plain", plain_total);
    bench("submit_result.plain.receipt", plain_receipt);
    bench("submit_result.weights", total);
    bench("submit_result.weights.receipt", receipt_gas);
    print_bench(
        "marketplace.storage.receipt_weights",
        stored - plain_stored,
        "bytes",
    );

    // ----- an agent request answered by the node
    let req_dep = json!({ "input_bytes": 256 });
    let req_dep: String =
        serde_json::from_value(view(&vm, &mut market, "request_deposit", &req_dep)?)?;
    let request =
        json!({ "model_id": MODEL, "input": inline(&input), "price_cap": NEAR.to_string() });
    let agent = Call::by("agent.test.near")
        .deposit(NEAR + req_dep.parse::<u128>()?)
        .at(t + 10 * SEC);
    let requested = market.call(&vm, agent, "request", &request)?;
    bench(
        "request",
        sum(&[vm.function_call_exec("request", &request), requested.gas]),
    );
    let answer = receipt(ReceiptSubject::Request(RequestId(1)), None)?;
    let respond = json!({ "request_id": "1", "node_id": "0", "output": inline(&output), "usage": used, "signature": sign(&enclave, &answer)? });
    let responded = market.call(&vm, relayer(t + 11 * SEC), "respond", &respond)?;
    bench(
        "respond",
        tx_total(&vm, "respond", &respond, &[responded.gas]),
    );
    let resumed = Call::by("market.test.near")
        .results(vec![PromiseResult::Successful(Vec::new().into())])
        .at(t + 12 * SEC);
    let done = market.call(
        &vm,
        resumed,
        "on_request_done",
        &json!({ "request_id": "1" }),
    )?;
    let payouts = settle_payouts(&vm, &mut market, &done, t + 13 * SEC)?;
    // Without the caller's own on_ai_response, which depends on the caller's code.
    bench("on_request_done", sum(&[done.gas, payouts]));

    channels(&vm, &mut market, t + 14 * SEC)?;

    // ----- governance: a delay, then a critical change proposed, announced and applied after it
    let day = 24 * 3600 * SEC;
    let set_delay = json!({ "change": { "set_delay": { "delay_ns": day.to_string() } } });
    market.call(&vm, owner().at(t + 20 * SEC), "propose_change", &set_delay)?;
    let patch = json!({ "patch": { "treasury": "dao-treasury.test.near" } });
    let proposed = market.call(&vm, owner().at(t + 21 * SEC), "update_config", &patch)?;
    bench(
        "propose_change",
        tx_total(&vm, "update_config", &patch, &[proposed.gas]),
    );
    let pending = view(&vm, &mut market, "governance", &json!({}))?;
    let apply = json!({ "id": pending["pending"][0]["id"] });
    let applied = market.call(
        &vm,
        Call::by("anyone.test.near").at(t + 21 * SEC + day),
        "apply_change",
        &apply,
    )?;
    bench(
        "apply_change",
        tx_total(&vm, "apply_change", &apply, &[applied.gas]),
    );
    let config = view(&vm, &mut market, "get_config", &json!({}))?;
    if config["treasury"] != json!("dao-treasury.test.near") {
        bail!("the governed change did not apply: {config}");
    }
    Ok(())
}
