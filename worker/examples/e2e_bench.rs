//! End-to-end benchmark on localnet: localnet, contracts, indexer and `worker run` as
//! processes; a user submits sealed embedding jobs.
//!
//! Prints
//!   BENCH worker.e2e.latency_ms <median> ms      submit_job sent -> job settled (sequential)
//!   BENCH worker.e2e.latency_p90_ms <p90> ms
//!   BENCH worker.e2e.jobs_per_minute <n> jobs/min   4 jobs in flight at all times
//!
//! Needs the same binaries and wasm as the acceptance test (see worker/tests/localnet_e2e.rs);
//! build the worker optimised for meaningful numbers:
//!   cargo build -p worker --bin worker --profile bench
//!   ECLOUD_WORKER_BIN=$CARGO_TARGET_DIR/release/worker cargo run -p worker --example e2e_bench
//! (the `bench` profile writes to target/release; scripts/bench.sh runs it that way).
//! `ECLOUD_BENCH_JOBS` (default 12) sets how many jobs each phase runs.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chain_client::NearToken;
use chain_client::testkit::{
    IndexerProcess, Localnet, Suite, SuiteConfig, WorkerNode, create_account,
};
use enclave_cloud_common::NodeId;
use support::{User, embeddings_request, node_encryption_key, submit_job, wait_settled};

const CONCURRENCY: usize = 4;
const SETTLE: Duration = Duration::from_secs(300);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let jobs: usize = std::env::var("ECLOUD_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let dir = tempfile::tempdir()?;
    let node = Localnet::start(dir.path()).await?;
    let client = Arc::new(node.client());
    let suite = Arc::new(Suite::deploy(&client, &node.root, SuiteConfig::default()).await?);
    let indexer = IndexerProcess::start(dir.path(), &node, &suite).await?;
    let mut worker = WorkerNode::create(dir.path(), "op", &node, &client, &suite).await?;
    let node_id = NodeId(worker.register(&suite)?);
    worker.start(
        &suite,
        Some(&indexer),
        &support::model_dir(),
        &["--concurrency", &CONCURRENCY.to_string()],
    )?;
    let node_key = node_encryption_key(&client, &suite, node_id).await;
    let mut users = Vec::new();
    for i in 0..CONCURRENCY {
        let account = create_account(
            &client,
            &node.root,
            &format!("user{i}"),
            NearToken::from_near(1000),
        )
        .await?;
        users.push(Arc::new(User::new(account)));
    }

    // Warm-up: the first job loads the model and fills the marketplace's node cache.
    let warm = submit_job(
        &client,
        &suite,
        &users[0],
        node_id,
        &node_key,
        &embeddings_request("warm up"),
        NearToken::from_near(5),
    )
    .await;
    wait_settled(&client, &suite, warm, SETTLE).await;

    // Latency: one job at a time.
    let mut latencies = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let started = Instant::now();
        let request = embeddings_request(&format!("latency sample {i}"));
        let job = submit_job(
            &client,
            &suite,
            &users[0],
            node_id,
            &node_key,
            &request,
            NearToken::from_near(5),
        )
        .await;
        wait_settled(&client, &suite, job, SETTLE).await;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "BENCH worker.e2e.latency_ms {:.0} ms",
        percentile(&latencies, 0.5)
    );
    println!(
        "BENCH worker.e2e.latency_p90_ms {:.0} ms",
        percentile(&latencies, 0.9)
    );

    // Throughput: CONCURRENCY users, each submitting its next job when the last one settled.
    let started = Instant::now();
    let per_user = jobs.div_ceil(CONCURRENCY);
    let mut tasks = Vec::new();
    for (u, user) in users.iter().enumerate() {
        let (client, suite, user) = (client.clone(), suite.clone(), user.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..per_user {
                let request = embeddings_request(&format!("throughput sample {u}/{i}"));
                let job = submit_job(
                    &client,
                    &suite,
                    &user,
                    node_id,
                    &node_key,
                    &request,
                    NearToken::from_near(5),
                )
                .await;
                wait_settled(&client, &suite, job, SETTLE).await;
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let done = per_user * CONCURRENCY;
    println!(
        "BENCH worker.e2e.jobs_per_minute {:.1} jobs/min",
        done as f64 / minutes
    );
    worker.stop();
    Ok(())
}
