//! Every JSON-RPC method localnet serves answers in neard's response shape (parsed back with
//! the protocol's view types).

#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed step is a failed test"
)]

use localnet::node::Node;
use near_jsonrpc_primitives::types::transactions::RpcTransactionResponse;
use near_primitives::views::{
    BlockView, ChunkView, StateChangeCauseView, StateChangeKindView, StateChangeValueView,
    StateChangeWithCauseView, StatusResponse,
};
use serde_json::{Value, json};
use std::sync::Arc;

fn node(name: &str) -> (Arc<Node>, std::path::PathBuf) {
    let home = std::env::temp_dir().join(format!("localnet-rpc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    localnet::home::init(&home, true).unwrap();
    let node = Node::open(&home).unwrap();
    for _ in 0..3 {
        node.produce_block(0).unwrap();
    }
    (node, home)
}

async fn ok(node: &Node, method: &str, params: Value) -> Value {
    match node.dispatch(method, params).await {
        Ok(value) => value,
        Err(e) => panic!("{method}: {e:?}"),
    }
}

#[tokio::test]
async fn chain_methods_answer_with_neard_views() {
    let (node, home) = node("views");
    let status: StatusResponse =
        serde_json::from_value(ok(&node, "status", json!([])).await).unwrap();
    assert_eq!(status.sync_info.latest_block_height, 3);

    let block: BlockView =
        serde_json::from_value(ok(&node, "block", json!({"block_id": 2})).await).unwrap();
    assert_eq!(block.header.height, 2);
    let by_hash: BlockView = serde_json::from_value(
        ok(
            &node,
            "block",
            json!({"block_id": block.header.hash.to_string()}),
        )
        .await,
    )
    .unwrap();
    assert_eq!(by_hash.header.hash, block.header.hash);
    let final_block: BlockView =
        serde_json::from_value(ok(&node, "block", json!({"finality": "final"})).await).unwrap();
    assert_eq!(final_block.header.height, 3);

    let chunk_id = block.chunks[0].chunk_hash.to_string();
    let chunk: ChunkView =
        serde_json::from_value(ok(&node, "chunk", json!({"chunk_id": chunk_id})).await).unwrap();
    assert_eq!(chunk.header.height_included, 2);

    let price = ok(&node, "gas_price", json!([null])).await;
    assert_eq!(price["gas_price"], "100000000");
    let config = ok(
        &node,
        "EXPERIMENTAL_protocol_config",
        json!({"finality": "final"}),
    )
    .await;
    assert!(
        config["runtime_config"]["wasm_config"].is_object(),
        "{config}"
    );
    let genesis = ok(&node, "EXPERIMENTAL_genesis_config", json!([])).await;
    assert_eq!(genesis["chain_id"], "localnet");
    let validators = ok(&node, "validators", json!([null])).await;
    assert_eq!(
        validators["current_validators"][0]["account_id"],
        "test.near"
    );
    let ordered = ok(&node, "EXPERIMENTAL_validators_ordered", json!([null])).await;
    assert_eq!(ordered[0]["account_id"], "test.near");
    assert_eq!(
        ok(&node, "network_info", json!([])).await["num_active_peers"],
        0
    );
    assert_eq!(ok(&node, "health", json!([])).await, Value::Null);

    let missing = node
        .dispatch("block", json!({"block_id": 999}))
        .await
        .unwrap_err();
    let missing = serde_json::to_value(missing).unwrap();
    assert_eq!(missing["cause"]["name"], "UNKNOWN_BLOCK", "{missing}");
    let unknown = node
        .dispatch(
            "EXPERIMENTAL_receipt",
            json!({"receipt_id": "11111111111111111111111111111111"}),
        )
        .await
        .unwrap_err();
    let unknown = serde_json::to_value(unknown).unwrap();
    assert_eq!(unknown["cause"]["name"], "UNKNOWN_RECEIPT", "{unknown}");
    drop(node);
    let _ = std::fs::remove_dir_all(home);
}

#[tokio::test]
async fn async_transactions_are_found_by_tx_and_their_receipts_by_id() {
    let (node, home) = node("tx");
    let key = localnet::home::read_key(&home, "validator_key.json").unwrap();
    let signer =
        near_crypto::InMemorySigner::from_secret_key(key.account_id.clone(), key.secret_key);
    let head = node.chain().head().hash;
    let tx = near_primitives::transaction::SignedTransaction::from_actions(
        1,
        key.account_id.clone(),
        key.account_id.clone(),
        &signer,
        vec![near_primitives::action::Action::Transfer(
            near_primitives::action::TransferAction {
                deposit: near_primitives::types::Balance::from_yoctonear(1),
            },
        )],
        head,
    );
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(borsh::to_vec(&tx).unwrap());
    let hash = ok(&node, "broadcast_tx_async", json!([encoded])).await;
    assert_eq!(hash, json!(tx.get_hash().to_string()));
    let pending = ok(
        &node,
        "tx",
        json!({"tx_hash": hash, "sender_account_id": key.account_id, "wait_until": "NONE"}),
    )
    .await;
    assert_eq!(pending["final_execution_status"], "NONE");
    for _ in 0..3 {
        node.produce_block(0).unwrap();
    }
    let status: RpcTransactionResponse = serde_json::from_value(
        ok(
            &node,
            "EXPERIMENTAL_tx_status",
            json!({"tx_hash": hash, "sender_account_id": key.account_id}),
        )
        .await,
    )
    .unwrap();
    let outcome = status.final_execution_outcome.unwrap().into_outcome();
    let receipt_id = outcome.transaction_outcome.outcome.receipt_ids[0];
    let receipt = ok(
        &node,
        "EXPERIMENTAL_receipt",
        json!({"receipt_id": receipt_id}),
    )
    .await;
    assert_eq!(receipt["receiver_id"], json!(key.account_id));

    // The block that included the transaction touched the signer's account and key (nonce).
    let block_hash = outcome.transaction_outcome.block_hash.to_string();
    let changes = ok(
        &node,
        "EXPERIMENTAL_changes_in_block",
        json!({"block_id": block_hash}),
    )
    .await;
    let kinds: Vec<StateChangeKindView> =
        serde_json::from_value(changes["changes"].clone()).unwrap();
    let account_id = key.account_id.clone();
    assert!(
        kinds.contains(&StateChangeKindView::AccountTouched { account_id }),
        "{kinds:?}"
    );
    let account_id = key.account_id.clone();
    assert!(
        kinds.contains(&StateChangeKindView::AccessKeyTouched { account_id }),
        "{kinds:?}"
    );

    // With causes: the transaction charged the signer and moved the key's nonce.
    let changes = ok(
        &node,
        "EXPERIMENTAL_changes",
        json!({"block_id": block_hash, "changes_type": "all_access_key_changes",
               "account_ids": [key.account_id]}),
    )
    .await;
    let changes: Vec<StateChangeWithCauseView> =
        serde_json::from_value(changes["changes"].clone()).unwrap();
    let [key_change] = changes.as_slice() else {
        panic!("{changes:?}")
    };
    assert!(
        matches!(key_change.cause, StateChangeCauseView::TransactionProcessing { tx_hash } if tx_hash == tx.get_hash()),
        "{key_change:?}"
    );
    match &key_change.value {
        StateChangeValueView::AccessKeyUpdate { access_key, .. } => assert_eq!(access_key.nonce, 1),
        other => panic!("{other:?}"),
    }
    let accounts = ok(
        &node,
        "EXPERIMENTAL_changes",
        json!({"finality": "final", "changes_type": "account_changes",
               "account_ids": [key.account_id]}),
    )
    .await;
    assert!(accounts["changes"].is_array(), "{accounts}");

    // The receipt's changes carry the receipt as their cause, in the RPC and in the block
    // stream alike.
    let receipt_block = outcome.receipts_outcome[0].block_hash.to_string();
    let changes = ok(
        &node,
        "EXPERIMENTAL_changes",
        json!({"block_id": receipt_block, "changes_type": "account_changes",
               "account_ids": [key.account_id]}),
    )
    .await;
    let changes: Vec<StateChangeWithCauseView> =
        serde_json::from_value(changes["changes"].clone()).unwrap();
    assert!(
        changes.iter().any(|c| matches!(c.cause,
            StateChangeCauseView::ReceiptProcessing { receipt_hash } if receipt_hash == receipt_id)),
        "{changes:?}"
    );
    let height = node
        .chain()
        .block_by_hash(&outcome.receipts_outcome[0].block_hash)
        .unwrap()
        .unwrap()
        .height;
    let stored = node.chain().block(height).unwrap().unwrap();
    let message = localnet::neardata::streamer_message(&stored, &key.account_id, node.gas_limit());
    assert!(
        message.shards[0].state_changes.iter().any(|c| matches!(c.cause,
            StateChangeCauseView::ReceiptProcessing { receipt_hash } if receipt_hash == receipt_id)),
        "{:?}",
        message.shards[0].state_changes
    );
    drop(node);
    let _ = std::fs::remove_dir_all(home);
}

#[tokio::test]
async fn state_older_than_the_kept_epochs_is_answered_as_garbage_collected() {
    let home = std::env::temp_dir().join(format!("localnet-rpc-gc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    localnet::home::init(&home, true).unwrap();
    // Keep one epoch (60 heights with --fast) of state, as neard's gc_num_epochs_to_keep.
    let config_path = home.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["gc_num_epochs_to_keep"] = json!(1);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let node = Node::open(&home).unwrap();
    for _ in 0..100 {
        node.produce_block(0).unwrap();
    }
    let view = |height: u64| json!({"request_type": "view_account", "account_id": "test.near", "block_id": height});
    let kept = ok(&node, "query", view(50)).await;
    assert_eq!(kept["block_height"], json!(50));
    let error = node.dispatch("query", view(20)).await.unwrap_err();
    let error = serde_json::to_value(&error).unwrap();
    assert_eq!(error["cause"]["name"], "GARBAGE_COLLECTED_BLOCK", "{error}");
    assert_eq!(error["cause"]["info"]["block_height"], json!(20), "{error}");
    let _ = std::fs::remove_dir_all(&home);
}

/// A body over `json_payload_max_size` is refused as neard refuses it: a JSON-RPC parse error
/// (HTTP 200 with a JSON body), never a plain-text 413, and the node keeps serving.
#[tokio::test]
async fn a_body_over_the_payload_limit_is_a_json_rpc_parse_error() {
    use tower::ServiceExt;
    let home = std::env::temp_dir().join(format!("localnet-rpc-body-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    localnet::home::init(&home, true).unwrap();
    let config_path = home.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["rpc"]["limits_config"]["json_payload_max_size"] = json!(1024);
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let node = Node::open(&home).unwrap();
    node.produce_block(0).unwrap();

    let post = |body: Vec<u8>| {
        axum::http::Request::post("/")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .unwrap()
    };
    let padding = "x".repeat(4096);
    let big = serde_json::to_vec(&json!({
        "jsonrpc": "2.0", "id": "big", "method": "status", "params": [padding]
    }))
    .unwrap();
    let response = localnet::node::router(node.clone())
        .oneshot(post(big))
        .await
        .unwrap();
    assert_eq!(response.status(), axum::http::StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let reply: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON: {e}: {}", String::from_utf8_lossy(&body)));
    assert_eq!(reply["jsonrpc"], "2.0");
    assert_eq!(
        reply["error"]["name"], "REQUEST_VALIDATION_ERROR",
        "{reply}"
    );
    assert_eq!(reply["error"]["cause"]["name"], "PARSE_ERROR", "{reply}");

    // A request within the limit is still served.
    let small = serde_json::to_vec(&json!({
        "jsonrpc": "2.0", "id": "small", "method": "status", "params": []
    }))
    .unwrap();
    let response = localnet::node::router(node)
        .oneshot(post(small))
        .await
        .unwrap();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let reply: Value = serde_json::from_slice(&body).unwrap();
    assert!(reply["result"]["sync_info"].is_object(), "{reply}");
    let _ = std::fs::remove_dir_all(&home);
}

/// Any origin may call the JSON-RPC, as neard allows: a browser wallet on another origin (the
/// explorer pages) first sends a CORS preflight, then the POST.
#[tokio::test]
async fn the_json_rpc_answers_cors_preflights_from_any_origin() {
    use tower::ServiceExt;
    let home = std::env::temp_dir().join(format!("localnet-rpc-cors-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    localnet::home::init(&home, true).unwrap();
    let node = Node::open(&home).unwrap();
    let preflight = axum::http::Request::builder()
        .method("OPTIONS")
        .uri("/")
        .header("origin", "http://127.0.0.1:8090")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = localnet::node::router(node)
        .oneshot(preflight)
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("content-type"), "{allowed}");
    let _ = std::fs::remove_dir_all(&home);
}
