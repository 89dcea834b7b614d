//! Acceptance on localnet with every component a separate process: localnet, the contracts,
//! the indexer following localnet's block stream, and `worker run` (dev attestation, embedded
//! MiniLM). A user (chain-client + worker::envelope) submits sealed jobs.
//!
//! Needs, with the same CARGO_TARGET_DIR:
//!   nice -n 10 cargo build -p localnet --bin localnet
//!   nice -n 10 cargo build -p indexer --bin indexer
//!   nice -n 10 cargo build -p worker --bin worker
//!   ./scripts/build-contracts.sh                      (registry.wasm, marketplace.wasm)
//!   eval "$(worker/scripts/fetch-model.sh)"            (ECLOUD_MINILM_DIR)
//! then `cargo test -p worker --test localnet_e2e`.

mod support;

use std::time::Duration;

use chain_client::NearToken;
use chain_client::testkit::{
    IndexerProcess, Localnet, Suite, SuiteConfig, WorkerNode, create_account,
};
use enclave_cloud_common::NodeId;
use enclave_cloud_common::interfaces::marketplace::JobStatus;
use support::{
    User, embeddings_request, node_encryption_key, open_output, output_from_indexer, submit_job,
    wait_settled, wait_status,
};
use worker::inference::InferenceBackend as _;
use worker::inference::embedded::MiniLmBackend;

const SETTLE: Duration = Duration::from_secs(120);

/// What MiniLM answers for `text`, computed in this process.
async fn expected_embedding(text: &str) -> Vec<f32> {
    let backend = MiniLmBackend::load(&support::model_dir()).expect("model (fetch-model.sh)");
    let request = serde_json::from_value(serde_json::json!({
        "model": "all-minilm-l6-v2", "input": [text]
    }))
    .expect("embeddings request");
    let response = backend.embed(request).await.expect("embed");
    response.data[0].embedding.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_answered_paid_resumed_and_survive_the_indexer() {
    let mut dir = tempfile::tempdir().unwrap();
    // ECLOUD_TEST_KEEP=1 keeps the logs and state of every process for a look afterwards.
    dir.disable_cleanup(std::env::var_os("ECLOUD_TEST_KEEP").is_some());
    eprintln!("processes run in {}", dir.path().display());
    let node = Localnet::start(dir.path()).await.unwrap();
    let client = node.client();
    let suite = Suite::deploy(&client, &node.root, SuiteConfig::default())
        .await
        .unwrap();
    let mut indexer = IndexerProcess::start(dir.path(), &node, &suite)
        .await
        .unwrap();
    let mut worker = WorkerNode::create(dir.path(), "op", &node, &client, &suite)
        .await
        .unwrap();
    let node_id = NodeId(worker.register(&suite).unwrap());
    // Registering twice is a no-op (same node).
    assert_eq!(worker.register(&suite).unwrap(), node_id.0);
    let run_args = ["--stream-retry-secs", "2"];
    worker
        .start(&suite, Some(&indexer), &support::model_dir(), &run_args)
        .unwrap();

    let user = User::new(
        create_account(&client, &node.root, "user", NearToken::from_near(100))
            .await
            .unwrap(),
    );
    let node_key = node_encryption_key(&client, &suite, node_id).await;

    // 1. A job is answered, the user decrypts the right embedding, everyone is paid.
    let operator_before = client
        .view_account(worker.operator.account_id())
        .await
        .unwrap()
        .amount;
    let royalty_before = client
        .view_account(suite.royalty.account_id())
        .await
        .unwrap()
        .amount;
    let text = "confidential inference on NEAR";
    let job = submit_job(
        &client,
        &suite,
        &user,
        node_id,
        &node_key,
        &embeddings_request(text),
        NearToken::from_near(5),
    )
    .await;
    let settled = wait_settled(&client, &suite, job, SETTLE).await;
    let settlement = &settled.settlement;
    let output = output_from_indexer(&indexer.url, job, SETTLE).await;
    let response = open_output(&user, &suite, job, &output);
    assert_eq!(response.status_code, 200, "{:?}", response.body);
    // The same vector as MiniLM computes here (JSON carries f32 values through f64).
    let got: Vec<f32> =
        serde_json::from_value(response.body["data"][0]["embedding"].clone()).unwrap();
    let want = expected_embedding(text).await;
    assert_eq!(got.len(), 384);
    assert!(
        got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
        "{got:?} != {want:?}"
    );
    assert_eq!(
        response.body["usage"]["prompt_tokens"].as_u64(),
        Some(settled.usage.input_tokens.0)
    );
    let royalty = settlement.royalty.0;
    let provider = settlement.provider.0;
    assert!(royalty > 0 && provider > 0, "{settlement:?}");
    let royalty_after = client
        .view_account(suite.royalty.account_id())
        .await
        .unwrap()
        .amount;
    assert_eq!(
        royalty_after.as_yoctonear() - royalty_before.as_yoctonear(),
        royalty
    );
    // The operator got the provider share, less the gas of its claim and submission.
    let operator_after = client
        .view_account(worker.operator.account_id())
        .await
        .unwrap()
        .amount;
    let gained = operator_after.as_yoctonear() as i128 - operator_before.as_yoctonear() as i128;
    let gas_bound = NearToken::from_millinear(50).as_yoctonear() as i128;
    assert!(
        gained > provider as i128 - gas_bound && gained <= provider as i128,
        "gained {gained}, provider {provider}"
    );

    // 2. Kill the worker mid-job (claimed, not settled) and restart it: the job completes once.
    let job = submit_job(
        &client,
        &suite,
        &user,
        node_id,
        &node_key,
        &embeddings_request("kill me mid-job"),
        NearToken::from_near(5),
    )
    .await;
    wait_status(&client, &suite, job, JobStatus::Claimed, SETTLE).await;
    worker.kill();
    let after_kill = support::job_view(&client, &suite, job).await;
    assert_eq!(
        support::status_of(&after_kill),
        JobStatus::Claimed,
        "the worker finished before the kill: {after_kill:?}"
    );
    worker
        .start(&suite, Some(&indexer), &support::model_dir(), &run_args)
        .unwrap();
    wait_settled(&client, &suite, job, SETTLE).await;
    let output = output_from_indexer(&indexer.url, job, SETTLE).await;
    assert_eq!(open_output(&user, &suite, job, &output).status_code, 200);
    assert!(worker.log().contains("resuming"), "{}", worker.log());
    let journal =
        std::fs::read_to_string(worker.data_dir.join("journal.jsonl")).unwrap_or_default();
    let submitted = journal
        .lines()
        .filter(|l| l.contains("\"submitted\"") && l.contains(&format!("\"id\":\"{job}\"")))
        .count();
    assert!(submitted <= 1, "submitted twice: {journal}");

    // 3. Stop the indexer: the worker falls back to polling the contract and still answers.
    indexer.stop();
    let job = submit_job(
        &client,
        &suite,
        &user,
        node_id,
        &node_key,
        &embeddings_request("no indexer"),
        NearToken::from_near(5),
    )
    .await;
    wait_settled(&client, &suite, job, SETTLE).await;
    // And it goes back to the stream when the indexer returns.
    let streams_before = worker.log().matches("following the indexer feed").count();
    indexer.restart().await.unwrap();
    let job = submit_job(
        &client,
        &suite,
        &user,
        node_id,
        &node_key,
        &embeddings_request("indexer is back"),
        NearToken::from_near(5),
    )
    .await;
    wait_settled(&client, &suite, job, SETTLE).await;
    let output = output_from_indexer(&indexer.url, job, SETTLE).await;
    assert_eq!(open_output(&user, &suite, job, &output).status_code, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while worker.log().matches("following the indexer feed").count() <= streams_before {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never returned to the stream:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Graceful shutdown: SIGTERM ends `worker run` with success.
    assert_eq!(worker.stop(), Some(0), "{}", worker.log());
}
