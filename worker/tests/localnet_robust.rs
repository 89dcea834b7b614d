//! What a worker must not pay for, on localnet with real processes (same prerequisites as
//! `localnet_e2e.rs`):
//!
//! * an underpaid job (a 1-yocto cap) is never claimed;
//! * an output over the marketplace's inline limit is answered by hash + URI, served by the
//!   worker, with no refused transaction; without an output store it is given up, again with
//!   no refused transaction (before, the worker resubmitted it until the deadline);
//! * the marketplace's default inline limit takes one sealed embedding, event log included.
//!
//! `cargo test -p worker --features localnet-e2e --test localnet_robust`

mod support;

use std::time::{Duration, Instant};

use chain_client::NearToken;
use chain_client::contracts::MarketplaceClient;
use chain_client::testkit::{Localnet, Suite, SuiteConfig, WorkerNode, create_account, free_port};
use enclave_cloud_common::interfaces::marketplace::{ConfigPatch, JobStatus};
use enclave_cloud_common::{DEFAULT_MAX_INLINE_BYTES, NodeId};
use serde_json::json;
use support::{
    User, embeddings_request, job_view, node_encryption_key, open_output, status_of, submit_job,
    wait_settled,
};
use worker::job::{EMBEDDINGS_URL, JobRequest, sha256};

const SETTLE: Duration = Duration::from_secs(120);

/// One counter of the worker's `/metrics`, `None` while the worker is not serving them yet.
async fn try_metric(metrics_url: &str, name: &str) -> Option<u64> {
    let text = reqwest::get(metrics_url).await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

async fn metric(metrics_url: &str, name: &str) -> u64 {
    try_metric(metrics_url, name)
        .await
        .unwrap_or_else(|| panic!("no {name} at {metrics_url}"))
}

/// Waits until the counter reaches `at_least`.
async fn wait_metric(metrics_url: &str, name: &str, at_least: u64, worker: &WorkerNode) {
    let until = Instant::now() + SETTLE;
    while try_metric(metrics_url, name).await.unwrap_or(0) < at_least {
        assert!(
            Instant::now() < until,
            "{name} < {at_least}:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn embed_many(texts: &[&str]) -> JobRequest {
    JobRequest {
        method: "POST".into(),
        url: EMBEDDINGS_URL.into(),
        body: json!({ "model": "any", "input": texts }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_outputs_go_by_uri_and_underpaid_jobs_stay_open() {
    let mut dir = tempfile::tempdir().unwrap();
    dir.disable_cleanup(std::env::var_os("ECLOUD_TEST_KEEP").is_some());
    eprintln!("processes run in {}", dir.path().display());
    let node = Localnet::start(dir.path()).await.unwrap();
    let client = node.client();
    let suite = Suite::deploy(&client, &node.root, SuiteConfig::default())
        .await
        .unwrap();
    // The suite raises the inline limit for the other tests; here the marketplace's default.
    let patch = ConfigPatch {
        max_inline_bytes: Some(DEFAULT_MAX_INLINE_BYTES),
        ..ConfigPatch::default()
    };
    MarketplaceClient::new(&client, suite.marketplace_id().clone())
        .update_config(patch)
        .unwrap()
        .send(&suite.owner)
        .await
        .unwrap();

    let mut worker = WorkerNode::create(dir.path(), "op", &node, &client, &suite)
        .await
        .unwrap();
    let node_id = NodeId(worker.register(&suite).unwrap());
    let outputs_listen = format!("127.0.0.1:{}", free_port().unwrap());
    let metrics_listen = format!("127.0.0.1:{}", free_port().unwrap());
    let metrics_url = format!("http://{metrics_listen}/metrics");
    worker
        .start(
            &suite,
            None,
            &support::model_dir(),
            &[
                "--outputs-listen",
                &outputs_listen,
                "--metrics-listen",
                &metrics_listen,
            ],
        )
        .unwrap();
    let user = User::new(
        create_account(&client, &node.root, "user", NearToken::from_near(100))
            .await
            .unwrap(),
    );
    let node_key = node_encryption_key(&client, &suite, node_id).await;
    let submit = |request: JobRequest, cap: NearToken| {
        let (client, suite, user) = (&client, &suite, &user);
        async move { submit_job(client, suite, user, node_id, &node_key, &request, cap).await }
    };

    // An underpaid job: its 1-yocto cap does not cover its input at the node's price.
    let underpaid = submit(
        embeddings_request("a cap of one yocto pays for nothing"),
        NearToken::from_yoctonear(1),
    )
    .await;
    // One embedding: inline at the default limit (its settled event fits the log too).
    let one = submit(
        embeddings_request("one text fits inline"),
        NearToken::from_near(5),
    )
    .await;
    // Three embeddings: ~25 KB sealed, over the limit: by hash + URI.
    let three = submit(
        embed_many(&["first text", "second text", "third text"]),
        NearToken::from_near(5),
    )
    .await;
    wait_settled(&client, &suite, one, SETTLE).await;
    let settled = wait_settled(&client, &suite, three, SETTLE).await;

    // The user fetches the output where the worker serves it and checks the receipt's hash.
    let uri = format!("http://{outputs_listen}/v1/outputs/{three}");
    let stored = reqwest::get(&uri).await.unwrap();
    assert_eq!(stored.status(), 200, "{uri}");
    let stored = stored.bytes().await.unwrap().to_vec();
    assert!(stored.len() > DEFAULT_MAX_INLINE_BYTES as usize);
    assert_eq!(sha256(&stored), settled.output_hash, "{settled:?}");
    let response = open_output(&user, &suite, three, &stored);
    assert_eq!(response.status_code, 200, "{:?}", response.body);
    assert_eq!(response.body["data"].as_array().map(Vec::len), Some(3));

    wait_metric(&metrics_url, "worker_offers_declined_total", 1, &worker).await;
    assert_eq!(metric(&metrics_url, "worker_outputs_stored_total").await, 1);
    assert_eq!(
        metric(&metrics_url, "worker_results_refused_total").await,
        0
    );
    assert_eq!(metric(&metrics_url, "worker_jobs_given_up_total").await, 0);
    assert_eq!(
        status_of(&job_view(&client, &suite, underpaid).await),
        JobStatus::Open
    );
    assert!(
        worker.log().contains("not claiming the job"),
        "{}",
        worker.log()
    );

    // Without an output store the same kind of job is given up, with no refused transaction.
    assert_eq!(worker.stop(), Some(0), "{}", worker.log());
    worker
        .start(
            &suite,
            None,
            &support::model_dir(),
            &["--metrics-listen", &metrics_listen],
        )
        .unwrap();
    let too_big = submit(
        embed_many(&["fourth text", "fifth text", "sixth text"]),
        NearToken::from_near(5),
    )
    .await;
    wait_metric(&metrics_url, "worker_jobs_given_up_total", 1, &worker).await;
    assert_eq!(
        metric(&metrics_url, "worker_results_refused_total").await,
        0
    );
    // Given up, not retried: it stays claimed until its deadline (then the user cancels it).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        status_of(&job_view(&client, &suite, too_big).await),
        JobStatus::Claimed
    );
    assert_eq!(
        status_of(&job_view(&client, &suite, underpaid).await),
        JobStatus::Open
    );
    assert_eq!(
        metric(&metrics_url, "worker_results_refused_total").await,
        0
    );
    assert_eq!(worker.stop(), Some(0), "{}", worker.log());
}
