//! The registry on a real chain (localnet by default) with real evidence: the dstack TDX node
//! of the vectors registers itself, signing with its own attested key, on a chain whose clock
//! starts at the vectors' time; the H100 vector is added as its GPU. Needs the registry wasm
//! (`./scripts/build-contracts.sh registry`, else built on first use).

use near_workspaces::types::NearToken;
use sandbox_tests::registry::{
    GPU_NONCE, MIN_STAKE, Registry, SEC_NS, STAKE, VECTOR_TIME_SECS, contract_error, dstack_bundle,
    dstack_node_key, dstack_policy, hopper_evidence, json_u64, json_yocto, vector,
};
use serde_json::{Value, json};

fn ed25519_hex(near_key: &str) -> String {
    let key: near_crypto::PublicKey = near_key.parse().expect("a NEAR public key");
    key.key_data().iter().map(|b| format!("{b:02x}")).collect()
}

/// The NEP-297 events of an outcome's logs, as JSON.
fn events<S: AsRef<str>>(logs: &[S]) -> Vec<Value> {
    logs.iter()
        .filter_map(|l| l.as_ref().strip_prefix("EVENT_JSON:"))
        .map(|j| serde_json::from_str(j).expect("event JSON"))
        .collect()
}

#[tokio::test]
async fn the_dstack_node_registers_with_its_own_key_and_a_copy_is_refused() -> anyhow::Result<()> {
    let r = Registry::start(dstack_policy(json!({}))).await?;
    let now = r.now_ns().await?;
    assert!(
        (VECTOR_TIME_SECS * SEC_NS..(VECTOR_TIME_SECS + 3600) * SEC_NS).contains(&now),
        "the chain clock ({now} ns) is not at the vectors' time"
    );
    let before = r.state().await?;

    // The same bundle sent by another key (the operator's full access key) is refused.
    let copied = r
        .call(
            &r.operator,
            "register_node",
            json!({ "bundle": dstack_bundle() }),
        )
        .await?;
    let err = contract_error(copied);
    assert!(err.contains("the bundle binds NEAR key"), "{err}");
    assert_eq!(r.state().await?, before, "a refused call changed the state");

    // Signed by the node's own key: verified and active.
    let outcome = r
        .call(
            &r.node,
            "register_node",
            json!({ "bundle": dstack_bundle(), "details": { "region": "eu-west", "capacity": 4 } }),
        )
        .await?;
    assert!(outcome.is_success(), "{outcome:?}");
    println!(
        "register_node (dstack TDX) on localnet: {} Tgas burnt in total",
        outcome.total_gas_burnt.as_tgas()
    );
    let logs: Vec<String> = outcome.logs().into_iter().map(str::to_owned).collect();
    let node_id: String = outcome.json()?;
    assert_eq!(node_id, "0");
    let registered: Vec<_> = events(&logs)
        .into_iter()
        .filter(|e| e["event"] == "node_registered")
        .collect();
    assert_eq!(registered.len(), 1, "{logs:?}");

    let node = r.node_view(&node_id).await?;
    let node_key = dstack_node_key().public_key().to_string();
    let tcb: Value = serde_json::from_str(&vector("intel-tdx-dstack-node/tcb_info.json"))?;
    assert_eq!(node["status"], "active", "{node}");
    assert_eq!(node["kind"], "tdx");
    assert_eq!(node["tcb_status"], "UpToDate");
    assert_eq!(node["operator"], r.operator.id().as_str());
    assert_eq!(node["signer_key"], node_key);
    assert_eq!(node["measurements"]["mrtd"], tcb["mrtd"]);
    assert_eq!(node["measurements"]["rtmr3"], tcb["rtmr3"]);
    assert_eq!(node["measurements"]["compose_hash"], tcb["compose_hash"]);
    assert_eq!(
        node["encryption_key"].as_str(),
        Some(ed25519_hex(&vector("intel-tdx-dstack-node/near_p2p_public_key.pub")).as_str())
    );
    assert_eq!(node["region"], "eu-west");
    let by_key = r
        .view("get_node_by_signer_key", json!({ "signer_key": node_key }))
        .await?;
    assert_eq!(by_key["node_id"], "0");
    let operator = r
        .view("get_operator", json!({ "account_id": r.operator.id() }))
        .await?;
    assert_eq!(operator["nodes"], json!(["0"]));

    // The key already serves a live node: a second registration is refused (with enough
    // stake for two nodes, so the stake check does not refuse it first).
    let staked = r
        .operator
        .call(r.id(), "deposit_stake")
        .deposit(STAKE)
        .transact()
        .await?;
    assert!(staked.is_success(), "{staked:?}");
    let again = r
        .call(
            &r.node,
            "register_node",
            json!({ "bundle": dstack_bundle() }),
        )
        .await?;
    let err = contract_error(again);
    assert!(err.contains("already belongs to live node 0"), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_compose_hash_off_the_allowlist_is_refused() -> anyhow::Result<()> {
    let other = "11".repeat(32);
    let r = Registry::start(dstack_policy(json!({ "compose_hashes": [other] }))).await?;
    let before = r.state().await?;
    let outcome = r
        .call(
            &r.node,
            "register_node",
            json!({ "bundle": dstack_bundle() }),
        )
        .await?;
    let err = contract_error(outcome);
    let tcb: Value = serde_json::from_str(&vector("intel-tdx-dstack-node/tcb_info.json"))?;
    let compose = tcb["compose_hash"].as_str().unwrap_or_default();
    assert!(
        err.contains(&format!("compose hash {compose} is not on the allowlist")),
        "{err}"
    );
    assert_eq!(r.state().await?, before);
    let page = r.view("list_nodes", json!({})).await?;
    assert_eq!(page["nodes"], json!([]), "{page}");
    Ok(())
}

#[tokio::test]
async fn heartbeats_keep_a_node_active_and_reattestation_renews_an_expired_one()
-> anyhow::Result<()> {
    // Lifetime 2 h; heartbeats every 300 s, 3 may be missed.
    let r = Registry::start(dstack_policy(json!({}))).await?;
    let id = r.register_dstack_node().await?;
    assert_eq!(r.status(&id).await?, "active");
    let first = r.node_view(&id).await?;

    // ~1000 s without a heartbeat: inactive; a heartbeat makes it active again.
    r.worker.fast_forward(1000).await?;
    assert_eq!(r.status(&id).await?, "inactive");
    let beat = r
        .call(&r.node, "heartbeat", json!({ "node_id": id }))
        .await?;
    assert!(beat.is_success(), "{beat:?}");
    let kinds: Vec<_> = events(&beat.logs())
        .iter()
        .map(|e| e["event"].clone())
        .collect();
    assert!(kinds.contains(&json!("node_heartbeat")), "{kinds:?}");
    assert!(kinds.contains(&json!("node_status_changed")), "{kinds:?}");
    assert_eq!(r.status(&id).await?, "active");
    let beaten = r.node_view(&id).await?;
    assert!(
        json_u64(&beaten["last_heartbeat_ns"])?
            >= json_u64(&first["last_heartbeat_ns"])? + 999 * SEC_NS
    );
    // Only the node's key may heartbeat.
    let err = contract_error(
        r.call(&r.operator, "heartbeat", json!({ "node_id": id }))
            .await?,
    );
    assert!(err.contains("enclave key"), "{err}");

    // Past the 2 h lifetime: expired, whatever the heartbeats.
    r.worker.fast_forward(2 * 3600).await?;
    let beat = r
        .call(&r.node, "heartbeat", json!({ "node_id": id }))
        .await?;
    assert!(beat.is_success(), "{beat:?}");
    assert_eq!(r.status(&id).await?, "expired");

    // A fresh attestation (the same evidence, still inside its collateral window) renews it.
    let outcome = r
        .call(
            &r.node,
            "reattest",
            json!({ "node_id": id, "bundle": dstack_bundle() }),
        )
        .await?;
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(r.status(&id).await?, "active");
    let renewed = r.node_view(&id).await?;
    let expires = json_u64(&renewed["attestation_expires_at_ns"])?;
    assert!(expires > json_u64(&first["attestation_expires_at_ns"])? + 2 * 3600 * SEC_NS);
    assert!(expires > r.now_ns().await?);
    Ok(())
}

#[tokio::test]
async fn stake_covers_the_node_and_unbonds_after_the_delay() -> anyhow::Result<()> {
    let r = Registry::start(dstack_policy(json!({}))).await?;
    let id = r.register_dstack_node().await?;
    let op = r
        .view("get_operator", json!({ "account_id": r.operator.id() }))
        .await?;
    assert_eq!(json_yocto(&op["stake"])?, STAKE.as_yoctonear());
    assert_eq!(json_yocto(&op["required_stake"])?, MIN_STAKE.as_yoctonear());
    let storage = json_yocto(&op["storage_cost"])?;
    assert!(storage > 0, "{op}");

    // Unstaking into the node's minimum is refused (and needs the 1 yocto confirmation).
    let free = STAKE.as_yoctonear() - storage - MIN_STAKE.as_yoctonear();
    let too_much = NearToken::from_yoctonear(free + 1);
    let unstake = |amount: NearToken, deposit: NearToken| {
        r.operator
            .call(r.id(), "request_unstake")
            .args_json(json!({ "amount": amount }))
            .deposit(deposit)
            .transact()
    };
    let err = contract_error(unstake(too_much, NearToken::from_yoctonear(1)).await?);
    assert!(err.contains("may unstake at most"), "{err}");
    let err = contract_error(unstake(NearToken::from_near(1), NearToken::from_yoctonear(0)).await?);
    assert!(err.contains("attach exactly 1 yoctoNEAR"), "{err}");

    let amount = NearToken::from_near(5);
    let outcome = unstake(amount, NearToken::from_yoctonear(1)).await?;
    assert!(outcome.is_success(), "{outcome:?}");
    let unlocks: Value = outcome.json()?;
    let unlocks = json_u64(&unlocks)?;
    let op = r
        .view("get_operator", json!({ "account_id": r.operator.id() }))
        .await?;
    assert_eq!(json_yocto(&op["unbonding"])?, amount.as_yoctonear());
    assert_eq!(
        r.status(&id).await?,
        "active",
        "the node's minimum stays bonded"
    );

    let withdraw = || {
        r.operator
            .call(r.id(), "withdraw")
            .deposit(NearToken::from_yoctonear(1))
            .max_gas()
            .transact()
    };
    let err = contract_error(withdraw().await?);
    assert!(err.contains("unlocks at"), "{err}");

    // One day later (fast-forward: one second per skipped block) the stake comes back.
    r.worker.fast_forward(24 * 3600 + 60).await?;
    assert!(r.now_ns().await? > unlocks);
    let balance_before = r.operator.view_account().await?.balance;
    let outcome = withdraw().await?;
    assert!(outcome.is_success(), "{outcome:?}");
    assert!(outcome.receipt_failures().is_empty(), "{outcome:?}");
    let balance_after = r.operator.view_account().await?.balance;
    let gained = balance_after.as_yoctonear() as i128 - balance_before.as_yoctonear() as i128;
    assert!(
        gained > NearToken::from_millinear(4_990).as_yoctonear() as i128,
        "withdrew only {gained} yocto"
    );
    let op = r
        .view("get_operator", json!({ "account_id": r.operator.id() }))
        .await?;
    assert_eq!(json_yocto(&op["unbonding"])?, 0, "{op}");
    assert_eq!(
        json_yocto(&op["stake"])?,
        STAKE.as_yoctonear() - amount.as_yoctonear()
    );
    let err = contract_error(withdraw().await?);
    assert!(err.contains("nothing to withdraw"), "{err}");
    Ok(())
}

#[tokio::test]
async fn the_hopper_gpu_is_added_after_its_chain_is_cached() -> anyhow::Result<()> {
    let r = Registry::start(dstack_policy(json!({}))).await?;
    let id = r.register_dstack_node().await?;
    let evidence = hopper_evidence();

    // One call cannot afford the whole chain (one P-384 signature is ~80 Tgas): cache it in
    // steps of two signatures, root side first, until nothing new is verified.
    let mut cached = Vec::new();
    for _ in 0..4 {
        let step = r
            .call(
                &r.node,
                "cache_gpu_certificates",
                json!({ "node_id": id, "certificate_chain": evidence["certificate_chain"], "max_signatures": 2 }),
            )
            .await?;
        assert!(step.is_success(), "{step:?}");
        let new: Vec<String> = step.json()?;
        if new.is_empty() {
            break;
        }
        cached.extend(new);
    }
    assert_eq!(cached.len(), 4, "the H100 chain below the root: {cached:?}");
    for hash in &cached {
        let known = r
            .view("is_certificate_cached", json!({ "hash": hash }))
            .await?;
        assert_eq!(known, json!(true));
    }

    let outcome = r
        .call(
            &r.node,
            "add_gpu",
            json!({ "node_id": id, "evidence": evidence }),
        )
        .await?;
    assert!(outcome.is_success(), "{outcome:?}");
    println!(
        "add_gpu (H100, chain cached) on localnet: {} Tgas burnt in total",
        outcome.total_gas_burnt.as_tgas()
    );
    let gpu: Value = outcome.json()?;
    assert_eq!(gpu["model"], "GH100", "{gpu}");
    let node = r.node_view(&id).await?;
    assert_eq!(node["gpus"], json!([gpu]), "{node}");
    assert_eq!(node["status"], "active");
    let used = r
        .view("is_gpu_nonce_used", json!({ "nonce": GPU_NONCE }))
        .await?;
    assert_eq!(used, json!(true));

    // The same evidence again: its nonce is spent.
    let before = r.state().await?;
    let err = contract_error(
        r.call(
            &r.node,
            "add_gpu",
            json!({ "node_id": id, "evidence": hopper_evidence() }),
        )
        .await?,
    );
    assert!(
        err.contains(&format!("GPU nonce {GPU_NONCE} was used before")),
        "{err}"
    );
    assert_eq!(r.state().await?, before);
    Ok(())
}

#[tokio::test]
async fn bad_input_fails_with_a_typed_error_and_changes_nothing() -> anyhow::Result<()> {
    let r = Registry::start(dstack_policy(json!({}))).await?;
    let before = r.state().await?;

    let refused = |err: String, expected: &str| {
        assert!(err.contains(expected), "expected '{expected}' in {err}");
    };
    // Garbage bytes, not JSON at all.
    let garbage = (0u8..=255).cycle().take(3000).collect::<Vec<u8>>();
    let err = contract_error(r.call_raw(&r.node, "register_node", garbage).await?);
    refused(err, "arguments are not valid JSON for this method");
    // JSON of the wrong shape.
    for args in [
        json!({ "bundle": 5 }),
        json!({ "bundle": { "version": 1, "kind": "tdx" } }),
        json!([1, 2, 3]),
        json!({ "bundle": dstack_bundle(), "extra": true }),
    ] {
        let err = contract_error(r.call(&r.node, "register_node", args).await?);
        refused(err, "arguments are not valid JSON for this method");
    }
    // A truncated quote: typed attestation error.
    let mut bundle = dstack_bundle();
    let quote = bundle["tdx"]["quote"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    bundle["tdx"]["quote"] = json!(&quote[..quote.len() / 2]);
    let err = contract_error(
        r.call(&r.node, "register_node", json!({ "bundle": bundle }))
            .await?,
    );
    refused(err, "attestation bundle refused");
    // A flipped byte in the quote.
    let mut bundle = dstack_bundle();
    let mut bytes = quote.into_bytes();
    bytes[1000] = if bytes[1000] == b'0' { b'1' } else { b'0' };
    bundle["tdx"]["quote"] = json!(String::from_utf8(bytes)?);
    let err = contract_error(
        r.call(&r.node, "register_node", json!({ "bundle": bundle }))
            .await?,
    );
    refused(err, "attestation bundle refused");
    assert_eq!(
        r.state().await?,
        before,
        "a refused registration changed the state"
    );

    // The GPU methods on a registered node: garbage evidence and chains.
    let id = r.register_dstack_node().await?;
    let before = r.state().await?;
    let err = contract_error(
        r.call_raw(&r.node, "add_gpu", b"{\"node_id\":".to_vec())
            .await?,
    );
    refused(err, "arguments are not valid JSON for this method");
    let mut evidence = hopper_evidence();
    let report = evidence["report"].as_str().unwrap_or_default().to_owned();
    evidence["report"] = json!(&report[..200]);
    let err = contract_error(
        r.call(
            &r.node,
            "add_gpu",
            json!({ "node_id": id, "evidence": evidence }),
        )
        .await?,
    );
    refused(err, "GPU evidence refused");
    let err = contract_error(
        r.call(
            &r.node,
            "cache_gpu_certificates",
            json!({ "node_id": id, "certificate_chain": "-----BEGIN CERTIFICATE-----\nnot base64\n" }),
        )
        .await?,
    );
    refused(err, "GPU evidence refused");
    let err = contract_error(
        r.call(&r.node, "heartbeat", json!({ "node_id": "not a number" }))
            .await?,
    );
    assert!(err.contains("Failed to deserialize"), "{err}");
    assert_eq!(
        r.state().await?,
        before,
        "refused GPU calls changed the state"
    );
    Ok(())
}
