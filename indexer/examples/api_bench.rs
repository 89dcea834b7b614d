//! Benchmark (not a test): the API under load and the feed's latency, on loopback.
//!
//! `cargo run --profile bench -p indexer --example api_bench [nodes] [requests] [concurrency] [rate] [secs]`
//! indexes `nodes` registered nodes (default 10,000) into SQLite, serves the API, and
//! prints:
//! - `BENCH indexer.api.nodes.rps <n> req/s` and `BENCH indexer.api.nodes.p99 <t> ms`
//!   for `GET /v1/nodes?sort=price` pages (the listing a client shows first), `concurrency`
//!   clients as fast as they go (closed loop);
//! - `BENCH indexer.api.nodes.fixed_rate <n> req/s`, `..fixed_rate.p50/p99 <t> ms`: the same
//!   mix sent open loop at a fixed rate (default 1,000/s for 10 s), each request on its own
//!   schedule, latency counted from when it was due (no coordinated omission);
//! - `BENCH indexer.feed.latency <t> ms`: from a new block file appearing at the source
//!   to its job arriving on a node's SSE feed (includes the follower's poll interval,
//!   50 ms here).

use enclave_cloud_common::events::Nep297;
use indexer::api::{self, ApiContext};
use indexer::db::Db;
use indexer::fixture::scenario;
use indexer::fixture::{ChainBuilder, write_block};
use indexer::follower::{ChainStatus, FollowConfig, Follower};
use indexer::ingest::Ingestor;
use indexer::metrics::Metrics;
use indexer::source::FixtureSource;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FIRST: u64 = 1_000;

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let nodes = arg(1, 10_000);
    let requests = arg(2, 5_000);
    let concurrency = arg(3, 16);
    let rate = arg(4, 1_000);
    let rate_secs = arg(5, 10);
    let dir = tempfile::tempdir()?;
    let blocks_dir = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir)?;

    let mut chain = ChainBuilder::new(FIRST);
    for chunk in (1..=nodes).collect::<Vec<_>>().chunks(500) {
        let mut logs = Vec::new();
        for &n in chunk {
            logs.push(scenario::registered(n).to_log_line());
            logs.push(scenario::gpu(n, if n % 2 == 0 { "H100" } else { "H200" }).to_log_line());
            let region = ["eu", "us", "asia"][(n % 3) as usize];
            logs.push(
                scenario::priced(n, region, 1_000 + (n * 7919) as u128 % 100_000).to_log_line(),
            );
        }
        write_block(&blocks_dir, &chain.block(&[(scenario::REGISTRY, logs)]))?;
    }

    let db = Db::open(&indexer::db::sqlite_url_in(dir.path())).await?;
    let metrics = Metrics::new()?;
    let status = ChainStatus::new("bench".into(), 0);
    let follower = Follower {
        source: FixtureSource::new(&blocks_dir),
        db: db.clone(),
        ingestor: Ingestor::new(scenario::contracts(), metrics.clone()),
        config: FollowConfig {
            start_height: FIRST,
            poll_interval: Duration::from_millis(50),
            ..FollowConfig::default()
        },
        status: status.clone(),
        metrics: metrics.clone(),
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let following = tokio::spawn(follower.run(stop_rx));
    let indexed_to = chain_height(&chain);
    status
        .indexed
        .subscribe()
        .wait_for(|h| *h >= indexed_to)
        .await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = api::router(ApiContext {
        db,
        status: status.clone(),
        metrics,
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let base = format!("http://{addr}");

    // Load 1: `concurrency` clients, each walking price-sorted pages, as fast as they go.
    let client = reqwest::Client::new();
    let latencies = Arc::new(tokio::sync::Mutex::new(Vec::with_capacity(
        requests as usize,
    )));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (client, base, latencies) = (client.clone(), base.clone(), latencies.clone());
        let per_client = requests / concurrency;
        tasks.push(tokio::spawn(async move {
            let mut cursor: Option<String> = None;
            for i in 0..per_client {
                let url = request_url(&base, (i + c) % 4, cursor.as_deref());
                let t = Instant::now();
                let page = fetch(&client, &url).await?;
                latencies.lock().await.push(t.elapsed());
                cursor = page["next_cursor"].as_str().map(str::to_owned);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut lat = latencies.lock().await.clone();
    lat.sort();
    eprintln!(
        "{} requests over {nodes} nodes, {concurrency} clients, {elapsed:.2} s",
        lat.len()
    );
    println!(
        "BENCH indexer.api.nodes.rps {:.0} req/s",
        lat.len() as f64 / elapsed
    );
    println!(
        "BENCH indexer.api.nodes.p99 {:.2} ms",
        percentile(&lat, 99).as_secs_f64() * 1e3
    );

    // Load 2: open loop at `rate` requests/s. Request i is due at i/rate s; it is sent on its
    // own task at that time and its latency runs from the due time, so a slow server cannot
    // hide its queueing by slowing the sender down.
    let total = rate * rate_secs;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let first_page = fetch(&client, &request_url(&base, 0, None)).await?;
    let cursor = first_page["next_cursor"].as_str().map(str::to_owned);
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let url = request_url(&base, i % 4, cursor.as_deref());
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            fetch(&client, &url).await?;
            Ok::<_, anyhow::Error>(due.elapsed())
        }));
    }
    let mut lat = Vec::with_capacity(tasks.len());
    for t in tasks {
        lat.push(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort();
    eprintln!(
        "{} requests at a target of {rate}/s over {nodes} nodes, {elapsed:.2} s",
        lat.len()
    );
    println!(
        "BENCH indexer.api.nodes.fixed_rate {:.0} req/s",
        lat.len() as f64 / elapsed
    );
    println!(
        "BENCH indexer.api.nodes.fixed_rate.p50 {:.2} ms",
        percentile(&lat, 50).as_secs_f64() * 1e3
    );
    println!(
        "BENCH indexer.api.nodes.fixed_rate.p99 {:.2} ms",
        percentile(&lat, 99).as_secs_f64() * 1e3
    );

    // Feed latency: open node 1's feed, drop a block with a job for it, time the event.
    let mut feed = client.get(format!("{base}/v1/nodes/1/feed")).send().await?;
    let mut samples = Vec::new();
    let mut job = 0;
    for _ in 0..10 {
        job += 1;
        let target = enclave_cloud_common::events::marketplace::JobTarget::Node {
            node_id: enclave_cloud_common::NodeId(1),
        };
        let block = chain.block(&[(
            scenario::MARKETPLACE,
            vec![scenario::submitted(job, target, 5).to_log_line()],
        )]);
        let t = Instant::now();
        write_block(&blocks_dir, &block)?;
        let mut seen = String::new();
        while !seen.contains(&format!("\"job_id\":\"{job}\"")) {
            let chunk = tokio::time::timeout(Duration::from_secs(10), feed.chunk())
                .await??
                .ok_or_else(|| anyhow::anyhow!("feed ended"))?;
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        samples.push(t.elapsed());
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    println!(
        "BENCH indexer.feed.latency {:.1} ms",
        median.as_secs_f64() * 1e3
    );
    stop.send(true)?;
    status.close();
    following.await??;
    Ok(())
}

/// The request mix: price-sorted pages (first or next), a GPU + region filter, a model +
/// price filter.
fn request_url(base: &str, kind: u64, cursor: Option<&str>) -> String {
    match (cursor, kind) {
        (Some(cur), 0) => format!("{base}/v1/nodes?sort=price&cursor={cur}"),
        (_, 1) => format!("{base}/v1/nodes?gpu=H100&region=eu&sort=price"),
        (_, 2) => format!("{base}/v1/nodes?model={}&max_price=50000", scenario::MODEL),
        _ => format!("{base}/v1/nodes?sort=price"),
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> anyhow::Result<serde_json::Value> {
    let resp = client.get(url).send().await?;
    anyhow::ensure!(resp.status().is_success(), "{url}: {}", resp.status());
    Ok(resp.json().await?)
}

/// The `p`th percentile of sorted samples.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted
        .get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// The height of the last block the builder produced.
fn chain_height(chain: &ChainBuilder) -> u64 {
    let mut probe = chain.clone();
    probe.block(&[]).height() - 1
}
