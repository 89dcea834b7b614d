//! The registry on a real chain (localnet by default) with real evidence: the dstack TDX node
//! of the vectors registers itself, signing with its own attested key, on a chain whose clock
//! starts at the vectors' time; the H100 vector's chain is cached, its public report never bound. Needs the registry wasm
//! (`./scripts/build-contracts.sh registry`, else built on first use).

use enclave_cloud_common::interfaces::NodeView;
use enclave_cloud_common::interfaces::method::NoArgs;
use enclave_cloud_common::interfaces::registry::methods::{
    ADD_GPU, AccountArgs, AddGpuArgs, CACHE_GPU_CERTIFICATES, CacheGpuCertificatesArgs,
    CertificateHashArgs, DEPOSIT_STAKE, GET_NODE_BY_SIGNER_KEY, GET_OPERATOR, HEARTBEAT,
    IS_CERTIFICATE_CACHED, LIST_NODES, ListNodesArgs, NodeArgs, REATTEST, REGISTER_NODE,
    REQUEST_UNSTAKE, ReattestArgs, RegisterNodeArgs, RequestUnstakeArgs, SignerKeyArgs, WITHDRAW,
};
use enclave_cloud_common::interfaces::registry::{NodePage, NodeUpdate, OperatorView};
use enclave_cloud_common::{AttestationKind, Hash32, NodeId, NodeStatus, TcbStatus};
use near_sdk::json_types::U64;
use near_workspaces::types::NearToken;
use sandbox_tests::calls::call;
use sandbox_tests::registry::{
    MIN_STAKE, Registry, SEC_NS, STAKE, VECTOR_TIME_SECS, contract_error, dstack_bundle,
    dstack_node_key, dstack_policy, hopper_evidence, vector,
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
    let r = Registry::start(dstack_policy()).await?;
    let now = r.now_ns().await?;
    assert!(
        (VECTOR_TIME_SECS * SEC_NS..(VECTOR_TIME_SECS + 3600) * SEC_NS).contains(&now),
        "the chain clock ({now} ns) is not at the vectors' time"
    );
    let before = r.state().await?;

    let bundle_only = || RegisterNodeArgs {
        bundle: dstack_bundle(),
        details: None,
    };
    // The same bundle sent by another key (the operator's full access key) is refused.
    let copied = r
        .call_method(&r.operator, REGISTER_NODE, &bundle_only())
        .await?;
    let err = contract_error(copied);
    assert!(err.contains("the bundle binds NEAR key"), "{err}");
    assert_eq!(r.state().await?, before, "a refused call changed the state");

    // Signed by the node's own key: verified and active.
    let args = RegisterNodeArgs {
        bundle: dstack_bundle(),
        details: Some(NodeUpdate {
            region: Some("eu-west".to_owned()),
            capacity: Some(4),
            ..NodeUpdate::default()
        }),
    };
    let outcome = r.call_method(&r.node, REGISTER_NODE, &args).await?;
    assert!(outcome.is_success(), "{outcome:?}");
    println!(
        "register_node (dstack TDX) on localnet: {} Tgas burnt in total",
        outcome.total_gas_burnt.as_tgas()
    );
    let logs: Vec<String> = outcome.logs().into_iter().map(str::to_owned).collect();
    let node_id: NodeId = outcome.json()?;
    assert_eq!(node_id, NodeId(0));
    let registered: Vec<_> = events(&logs)
        .into_iter()
        .filter(|e| e["event"] == "node_registered")
        .collect();
    assert_eq!(registered.len(), 1, "{logs:?}");

    let node = node(&r, node_id).await?;
    let node_key = dstack_node_key().public_key().to_string();
    let tcb: Value = serde_json::from_str(&vector("intel-tdx-dstack-node/tcb_info.json"))?;
    assert_eq!(node.status, NodeStatus::Active, "{node:?}");
    assert_eq!(node.kind, AttestationKind::Tdx);
    assert_eq!(node.tcb_status, TcbStatus::UpToDate);
    assert_eq!(&node.operator, r.operator.id());
    assert_eq!(node.signer_key.to_string(), node_key);
    assert_eq!(json!(node.measurements.mrtd), tcb["mrtd"]);
    assert_eq!(json!(node.measurements.rtmr3), tcb["rtmr3"]);
    assert_eq!(json!(node.measurements.compose_hash), tcb["compose_hash"]);
    assert_eq!(
        node.encryption_key,
        ed25519_hex(&vector("intel-tdx-dstack-node/near_p2p_public_key.pub"))
    );
    assert_eq!(node.region.as_deref(), Some("eu-west"));
    let by_key: Option<NodeView> = r
        .view(
            GET_NODE_BY_SIGNER_KEY,
            &SignerKeyArgs {
                signer_key: node.signer_key.clone(),
            },
        )
        .await?;
    assert_eq!(by_key.map(|n| n.node_id), Some(NodeId(0)));
    let operator = operator(&r).await?;
    assert_eq!(operator.nodes, vec![NodeId(0)]);

    // The key already serves a live node: a second registration is refused (with enough
    // stake for two nodes, so the stake check does not refuse it first).
    let staked = call(&r.operator, r.id(), DEPOSIT_STAKE, &NoArgs {})
        .deposit(STAKE)
        .transact()
        .await?;
    assert!(staked.is_success(), "{staked:?}");
    let again = r
        .call_method(&r.node, REGISTER_NODE, &bundle_only())
        .await?;
    let err = contract_error(again);
    assert!(err.contains("already belongs to live node 0"), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_compose_hash_off_the_allowlist_is_refused() -> anyhow::Result<()> {
    let mut policy = dstack_policy();
    policy.compose_hashes = vec![Hash32([0x11; 32])];
    let r = Registry::start(policy).await?;
    let before = r.state().await?;
    let args = RegisterNodeArgs {
        bundle: dstack_bundle(),
        details: None,
    };
    let outcome = r.call_method(&r.node, REGISTER_NODE, &args).await?;
    let err = contract_error(outcome);
    let tcb: Value = serde_json::from_str(&vector("intel-tdx-dstack-node/tcb_info.json"))?;
    let compose = tcb["compose_hash"].as_str().unwrap_or_default();
    assert!(
        err.contains(&format!("compose hash {compose} is not on the allowlist")),
        "{err}"
    );
    assert_eq!(r.state().await?, before);
    let page: NodePage = r.view(LIST_NODES, &ListNodesArgs::default()).await?;
    assert!(page.nodes.is_empty(), "{page:?}");
    Ok(())
}

#[tokio::test]
async fn heartbeats_keep_a_node_active_and_reattestation_renews_an_expired_one()
-> anyhow::Result<()> {
    // Lifetime 2 h; heartbeats every 300 s, 3 may be missed.
    let r = Registry::start(dstack_policy()).await?;
    let id = r.register_dstack_node().await?;
    assert_eq!(r.status(id).await?, NodeStatus::Active);
    let first = node(&r, id).await?;

    // ~1000 s without a heartbeat: inactive; a heartbeat makes it active again.
    r.worker.fast_forward(1000).await?;
    assert_eq!(r.status(id).await?, NodeStatus::Inactive);
    let heartbeat = NodeArgs { node_id: id };
    let beat = r.call_method(&r.node, HEARTBEAT, &heartbeat).await?;
    assert!(beat.is_success(), "{beat:?}");
    let kinds: Vec<_> = events(&beat.logs())
        .iter()
        .map(|e| e["event"].clone())
        .collect();
    assert!(kinds.contains(&json!("node_heartbeat")), "{kinds:?}");
    assert!(kinds.contains(&json!("node_status_changed")), "{kinds:?}");
    assert_eq!(r.status(id).await?, NodeStatus::Active);
    let beaten = node(&r, id).await?;
    assert!(beaten.last_heartbeat_ns.0 >= first.last_heartbeat_ns.0 + 999 * SEC_NS);
    // Only the node's key may heartbeat.
    let err = contract_error(r.call_method(&r.operator, HEARTBEAT, &heartbeat).await?);
    assert!(err.contains("enclave key"), "{err}");

    // Past the 2 h lifetime: expired, whatever the heartbeats.
    r.worker.fast_forward(2 * 3600).await?;
    let beat = r.call_method(&r.node, HEARTBEAT, &heartbeat).await?;
    assert!(beat.is_success(), "{beat:?}");
    assert_eq!(r.status(id).await?, NodeStatus::Expired);

    // A fresh attestation (the same evidence, still inside its collateral window) renews it.
    let args = ReattestArgs {
        node_id: id,
        bundle: dstack_bundle(),
    };
    let outcome = r.call_method(&r.node, REATTEST, &args).await?;
    assert!(outcome.is_success(), "{outcome:?}");
    assert_eq!(r.status(id).await?, NodeStatus::Active);
    let renewed = node(&r, id).await?;
    let expires = renewed.attestation_expires_at_ns.0;
    assert!(expires > first.attestation_expires_at_ns.0 + 2 * 3600 * SEC_NS);
    assert!(expires > r.now_ns().await?);
    Ok(())
}

#[tokio::test]
async fn stake_covers_the_node_and_unbonds_after_the_delay() -> anyhow::Result<()> {
    let r = Registry::start(dstack_policy()).await?;
    let id = r.register_dstack_node().await?;
    let op = operator(&r).await?;
    assert_eq!(op.stake, STAKE);
    assert_eq!(op.required_stake, MIN_STAKE);
    let storage = op.storage_cost.as_yoctonear();
    assert!(storage > 0, "{op:?}");

    // Unstaking into the node's minimum is refused (and needs the 1 yocto confirmation).
    let free = STAKE.as_yoctonear() - storage - MIN_STAKE.as_yoctonear();
    let too_much = NearToken::from_yoctonear(free + 1);
    let unstake = |amount: NearToken, deposit: NearToken| {
        call(
            &r.operator,
            r.id(),
            REQUEST_UNSTAKE,
            &RequestUnstakeArgs { amount },
        )
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
    let unlocks: U64 = outcome.json()?;
    let unlocks = unlocks.0;
    let op = operator(&r).await?;
    assert_eq!(op.unbonding, amount);
    assert_eq!(
        r.status(id).await?,
        NodeStatus::Active,
        "the node's minimum stays bonded"
    );

    let withdraw = || call(&r.operator, r.id(), WITHDRAW, &NoArgs {}).transact();
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
    let op = operator(&r).await?;
    assert!(op.unbonding.is_zero(), "{op:?}");
    assert_eq!(
        op.stake.as_yoctonear(),
        STAKE.as_yoctonear() - amount.as_yoctonear()
    );
    let err = contract_error(withdraw().await?);
    assert!(err.contains("nothing to withdraw"), "{err}");
    Ok(())
}

#[tokio::test]
async fn the_hopper_chain_is_cached_but_its_public_report_is_never_bound() -> anyhow::Result<()> {
    let r = Registry::start(dstack_policy()).await?;
    let id = r.register_dstack_node().await?;
    let evidence = hopper_evidence();
    let chain = evidence["certificate_chain"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // One call cannot afford the whole chain (one P-384 signature is ~80 Tgas): cache it in
    // steps of two signatures, root side first, until nothing new is verified.
    let mut cached = Vec::new();
    for _ in 0..4 {
        let args = CacheGpuCertificatesArgs {
            node_id: id,
            certificate_chain: chain.clone(),
            max_signatures: Some(2),
        };
        let step = r
            .call_method(&r.node, CACHE_GPU_CERTIFICATES, &args)
            .await?;
        assert!(step.is_success(), "{step:?}");
        let new: Vec<Hash32> = step.json()?;
        if new.is_empty() {
            break;
        }
        cached.extend(new);
    }
    assert_eq!(cached.len(), 4, "the H100 chain below the root: {cached:?}");
    for &hash in &cached {
        let known: bool = r
            .view(IS_CERTIFICATE_CACHED, &CertificateHashArgs { hash })
            .await?;
        assert!(known, "{hash:?} is cached");
    }

    // NVIDIA's public H100 report (issue 16): its nonce is not bound to this enclave, and
    // without a registration or re-attestation in progress no device is taken at all.
    let add_gpu = AddGpuArgs {
        node_id: id,
        gpus: vec![hopper_evidence()],
        switches: Vec::new(),
    };
    let before = r.state().await?;
    let err = contract_error(r.call_method(&r.node, ADD_GPU, &add_gpu).await?);
    assert!(err.contains("no attestation in progress"), "{err}");
    assert_eq!(r.state().await?, before);
    assert!(node(&r, id).await?.gpus.is_empty());
    Ok(())
}

#[tokio::test]
async fn bad_input_fails_with_a_typed_error_and_changes_nothing() -> anyhow::Result<()> {
    let r = Registry::start(dstack_policy()).await?;
    let before = r.state().await?;

    let refused = |err: String, expected: &str| {
        assert!(err.contains(expected), "expected '{expected}' in {err}");
    };
    // Garbage bytes, not JSON at all.
    let garbage = (0u8..=255).cycle().take(3000).collect::<Vec<u8>>();
    let err = contract_error(r.call_raw(&r.node, "register_node", garbage).await?);
    refused(err, "arguments are not valid JSON for this method");
    // JSON of the wrong shape (written out: no typed client can send it).
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
    let with_bundle = |bundle| RegisterNodeArgs {
        bundle,
        details: None,
    };
    let err = contract_error(
        r.call_method(&r.node, REGISTER_NODE, &with_bundle(bundle))
            .await?,
    );
    refused(err, "attestation bundle refused");
    // A flipped byte in the quote.
    let mut bundle = dstack_bundle();
    let mut bytes = quote.into_bytes();
    bytes[1000] = if bytes[1000] == b'0' { b'1' } else { b'0' };
    bundle["tdx"]["quote"] = json!(String::from_utf8(bytes)?);
    let err = contract_error(
        r.call_method(&r.node, REGISTER_NODE, &with_bundle(bundle))
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
    let add_gpu = AddGpuArgs {
        node_id: id,
        gpus: vec![evidence],
        switches: Vec::new(),
    };
    let err = contract_error(r.call_method(&r.node, ADD_GPU, &add_gpu).await?);
    refused(err, "no attestation in progress");
    let not_base64 = CacheGpuCertificatesArgs {
        node_id: id,
        certificate_chain: "-----BEGIN CERTIFICATE-----\nnot base64\n".to_owned(),
        max_signatures: None,
    };
    let err = contract_error(
        r.call_method(&r.node, CACHE_GPU_CERTIFICATES, &not_base64)
            .await?,
    );
    refused(err, "GPU evidence refused");
    // A node id that is not a number: JSON no client would send.
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

/// `get_node`, which must know the node.
async fn node(r: &Registry, node_id: NodeId) -> anyhow::Result<NodeView> {
    r.node_view(node_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no node {node_id}"))
}

/// `get_operator` of the suite's operator, which must exist.
async fn operator(r: &Registry) -> anyhow::Result<OperatorView> {
    let args = AccountArgs {
        account_id: r.operator.id().clone(),
    };
    let operator: Option<OperatorView> = r.view(GET_OPERATOR, &args).await?;
    operator.ok_or_else(|| anyhow::anyhow!("no operator {}", r.operator.id()))
}
