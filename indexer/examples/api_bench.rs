//! Benchmark (not a test): the API under load and the feed's latency, on loopback.
//!
//! `cargo run --profile bench --no-default-features -p indexer --example api_bench [nodes] [requests] [concurrency] [rate] [secs]`
//! indexes `nodes` registered nodes (default 10,000) into SQLite, serves the API, and
//! prints:
//! - `BENCH indexer.api.nodes.p99 <t> ms` (and `.p50`, `.max`): `GET /v1/nodes` pages of
//!   50 nodes (the mix of `request_url`) sent open loop at a FIXED rate (default 1,000/s for 10 s). Request i is due
//!   at i/rate s and is sent at that time on its own task whatever happened to the others;
//!   its latency runs from its due time, so a slow server (or a late sender) cannot hide its
//!   queueing by slowing the load down (no coordinated omission). With it:
//!   `indexer.api.nodes.rate` (responses per second achieved), `indexer.api.nodes.errors`
//!   (non-2xx answers and transport errors, each kind also on stderr),
//!   `indexer.api.nodes.sender_lag.p99` (how late the sender itself was: when this is large
//!   the machine, not the server, was the bottleneck);
//! - `BENCH indexer.api.nodes.cpu_per_request <t> us`: CPU time of the server's threads (the
//!   HTTP runtime and SQLite's connection threads) per request during the fixed-rate run,
//!   from `/proc/self/task/*/stat`. Unlike latency it barely depends on what else the
//!   machine runs; `..client_cpu_per_request` is the load generator's share;
//! - `BENCH indexer.api.nodes.rps <n> req/s` and `..closed_loop.p99`: `concurrency` clients
//!   as fast as they go (closed loop): the capacity of this machine at this moment;
//! - `BENCH indexer.feed.latency <t> ms`: from a new block file appearing at the source
//!   to its job arriving on a node's SSE feed (includes the follower's poll interval,
//!   50 ms here).
//!
//! The server and the load generator run on separate runtimes (2 and 1 worker threads) so
//! their CPU can be told apart. `api_bench serve [nodes] [addr]` only indexes and serves
//! (default 127.0.0.1:8091) for an external load tool, e.g.
//! `oha -z 10s -q 1000 --latency-correction 'http://127.0.0.1:8091/v1/nodes?sort=price'`.

use enclave_cloud_common::events::Nep297;
use indexer::api::{self, ApiContext};
use indexer::db::Db;
use indexer::fixture::scenario;
use indexer::fixture::{ChainBuilder, write_block};
use indexer::follower::{ChainStatus, FollowConfig, Follower};
use indexer::ingest::Ingestor;
use indexer::metrics::Metrics;
use indexer::source::FixtureSource;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const FIRST: u64 = 1_000;
const SERVER_THREADS: &str = "api-server";
const CLIENT_THREADS: &str = "bench-client";

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// The indexed chain and the API serving it.
struct Served {
    _dir: tempfile::TempDir,
    blocks_dir: PathBuf,
    chain: ChainBuilder,
    status: Arc<ChainStatus>,
    stop: tokio::sync::watch::Sender<bool>,
    following: tokio::task::JoinHandle<Result<(), sqlx::Error>>,
    base: String,
}

fn main() -> anyhow::Result<()> {
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVER_THREADS)
        .enable_all()
        .build()?;
    if std::env::args().nth(1).as_deref() == Some("serve") {
        let nodes = arg(2, 10_000);
        let addr = std::env::args()
            .nth(3)
            .unwrap_or_else(|| "127.0.0.1:8091".into());
        return server.block_on(async {
            let served = serve(nodes, &addr).await?;
            eprintln!(
                "serving {nodes} nodes at {} until Ctrl-C; e.g. oha -z 10s -q 1000 --latency-correction '{}/v1/nodes?sort=price'",
                served.base, served.base
            );
            tokio::signal::ctrl_c().await?;
            shut_down(served).await
        });
    }
    let nodes = arg(1, 10_000);
    let requests = arg(2, 5_000);
    let concurrency = arg(3, 16);
    let rate = arg(4, 1_000);
    let rate_secs = arg(5, 10);
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(CLIENT_THREADS)
        .enable_all()
        .build()?;

    let served = server.block_on(serve(nodes, "127.0.0.1:0"))?;
    let base = served.base.clone();
    on(&client_rt, async move {
        let client = reqwest::Client::new();
        // Cursors of the first 20 price-sorted pages: "next page" requests spread over them.
        let mut cursors = Vec::new();
        let mut cursor = None;
        while cursors.len() < 20 {
            let page = fetch_json(&client, &request_url(&base, 0, cursor.as_deref())).await?;
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            match &cursor {
                Some(c) => cursors.push(c.clone()),
                None => break,
            }
        }
        let cursors = Arc::new(cursors);
        eprintln!("load average before: {}", load_average());

        // Open loop at a fixed rate: the acceptance figure.
        let cpu_before = thread_cpu_seconds();
        let run = fixed_rate(&client, &base, &cursors, rate, rate_secs).await;
        let cpu = thread_cpu_seconds().delta(&cpu_before);
        eprintln!(
            "{} requests due at {rate}/s over {nodes} nodes; {} answered in {:.2} s; load average after: {}",
            run.sent,
            run.latencies.len(),
            run.elapsed,
            load_average()
        );
        for (kind, n) in &run.errors {
            eprintln!("  error: {n} x {kind}");
        }
        let answered = run.latencies.len() as f64;
        println!(
            "BENCH indexer.api.nodes.rate {:.0} req/s",
            answered / run.elapsed
        );
        println!(
            "BENCH indexer.api.nodes.errors {} requests",
            run.error_count()
        );
        for (name, p) in [("p50", 50.0), ("p99", 99.0), ("max", 100.0)] {
            println!(
                "BENCH indexer.api.nodes.{name} {:.2} ms",
                ms(percentile(&run.latencies, p))
            );
        }
        println!(
            "BENCH indexer.api.nodes.sender_lag.p99 {:.2} ms",
            ms(percentile(&run.sender_lag, 99.0))
        );
        let per_request = |secs: f64| secs / run.sent.max(1) as f64 * 1e6;
        println!(
            "BENCH indexer.api.nodes.cpu_per_request {:.0} us",
            per_request(cpu.server)
        );
        println!(
            "BENCH indexer.api.nodes.client_cpu_per_request {:.0} us",
            per_request(cpu.client)
        );

        // Closed loop: how many requests/s this machine serves right now.
        let (lat, elapsed) = closed_loop(&client, &base, requests, concurrency).await?;
        eprintln!(
            "{} requests over {nodes} nodes, {concurrency} clients, {elapsed:.2} s",
            lat.len()
        );
        println!(
            "BENCH indexer.api.nodes.rps {:.0} req/s",
            lat.len() as f64 / elapsed
        );
        println!(
            "BENCH indexer.api.nodes.closed_loop.p99 {:.2} ms",
            ms(percentile(&lat, 99.0))
        );
        Ok(())
    })?;

    let feed_ms = server.block_on(feed_latency(&served))?;
    println!("BENCH indexer.feed.latency {feed_ms:.1} ms");
    server.block_on(shut_down(served))
}

/// Runs `fut` as a task of `rt` (on its named worker threads, not on the caller's).
fn on<T: Send + 'static>(
    rt: &Runtime,
    fut: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    rt.block_on(rt.spawn(fut))?
}

/// Indexes `nodes` nodes (a GPU and a price each) from fixture blocks and serves the API.
async fn serve(nodes: u64, addr: &str) -> anyhow::Result<Served> {
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

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = api::router(ApiContext {
        db,
        status: status.clone(),
        metrics,
        node_pages: Default::default(),
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Served {
        _dir: dir,
        blocks_dir,
        chain,
        status,
        stop,
        following,
        base,
    })
}

async fn shut_down(served: Served) -> anyhow::Result<()> {
    served.stop.send(true)?;
    served.status.close();
    served.following.await??;
    Ok(())
}

/// What an open-loop run measured.
#[derive(Default)]
struct FixedRun {
    sent: u64,
    /// Of the answered requests, from each one's due time to its full body.
    latencies: Vec<Duration>,
    /// How late the sender started each request.
    sender_lag: Vec<Duration>,
    /// From the first due time to the last answer.
    elapsed: f64,
    errors: BTreeMap<String, u64>,
}

impl FixedRun {
    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Sends `rate * secs` requests, request i at `i / rate` s, each on its own task.
async fn fixed_rate(
    client: &reqwest::Client,
    base: &str,
    cursors: &[String],
    rate: u64,
    secs: u64,
) -> FixedRun {
    let total = rate * secs;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let started = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = Vec::with_capacity(total as usize);
    let mut run = FixedRun::default();
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        run.sender_lag.push(due.elapsed());
        let cursor = cursors.get((i / 4) as usize % cursors.len().max(1));
        let (client, url) = (
            client.clone(),
            request_url(base, i % 4, cursor.map(String::as_str)),
        );
        tasks.push(tokio::spawn(async move {
            let answer = fetch_bytes(&client, &url).await;
            (answer, due.elapsed())
        }));
        run.sent += 1;
    }
    for t in tasks {
        match t.await {
            Ok((Ok(()), latency)) => run.latencies.push(latency),
            Ok((Err(kind), _)) => *run.errors.entry(kind).or_default() += 1,
            Err(e) => *run.errors.entry(format!("task: {e}")).or_default() += 1,
        }
    }
    run.elapsed = started.elapsed().as_secs_f64();
    run.latencies.sort();
    run.sender_lag.sort();
    run
}

/// `concurrency` clients walking pages as fast as they go.
async fn closed_loop(
    client: &reqwest::Client,
    base: &str,
    requests: u64,
    concurrency: u64,
) -> anyhow::Result<(Vec<Duration>, f64)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (client, base) = (client.clone(), base.to_owned());
        let per_client = requests / concurrency.max(1);
        tasks.push(tokio::spawn(async move {
            let mut cursor: Option<String> = None;
            let mut lat = Vec::with_capacity(per_client as usize);
            for i in 0..per_client {
                let url = request_url(&base, (i + c) % 4, cursor.as_deref());
                let t = Instant::now();
                let page = fetch_json(&client, &url).await?;
                lat.push(t.elapsed());
                cursor = page["next_cursor"].as_str().map(str::to_owned);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort();
    Ok((lat, elapsed))
}

/// Feed latency: open node 1's feed, drop a block with a job for it, time the event.
async fn feed_latency(served: &Served) -> anyhow::Result<f64> {
    let client = reqwest::Client::new();
    let mut chain = served.chain.clone();
    let mut feed = client
        .get(format!("{}/v1/nodes/1/feed", served.base))
        .send()
        .await?;
    let mut samples = Vec::new();
    for job in 1..=10 {
        let target = enclave_cloud_common::events::marketplace::JobTarget::Node {
            node_id: enclave_cloud_common::NodeId(1),
        };
        let block = chain.block(&[(
            scenario::MARKETPLACE,
            vec![scenario::submitted(job, target, 5).to_log_line()],
        )]);
        let t = Instant::now();
        write_block(&served.blocks_dir, &block)?;
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
    Ok(ms(percentile(&samples, 50.0)))
}

/// The request mix: a price-sorted page after `cursor` (one of the first 20 pages; the
/// first page without one), a GPU + region filter, a model + price filter, the first
/// price-sorted page.
fn request_url(base: &str, kind: u64, cursor: Option<&str>) -> String {
    match (cursor, kind) {
        (Some(cur), 0) => format!("{base}/v1/nodes?sort=price&cursor={cur}"),
        (_, 1) => format!("{base}/v1/nodes?gpu=H100&region=eu&sort=price"),
        (_, 2) => format!("{base}/v1/nodes?model={}&max_price=50000", scenario::MODEL),
        _ => format!("{base}/v1/nodes?sort=price"),
    }
}

async fn fetch_json(client: &reqwest::Client, url: &str) -> anyhow::Result<serde_json::Value> {
    let resp = client.get(url).send().await?;
    anyhow::ensure!(resp.status().is_success(), "{url}: {}", resp.status());
    Ok(resp.json().await?)
}

/// One request read to its last byte, as a load tool does (no JSON parsing on the client);
/// an error names its kind (status or transport failure).
async fn fetch_bytes(client: &reqwest::Client, url: &str) -> Result<(), String> {
    let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
    }
    if !body.starts_with(b"{\"items\":") {
        return Err("200 without a page".into());
    }
    Ok(())
}

/// The `p`th percentile of sorted samples (100: the largest).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p / 100.0) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The height of the last block the builder produced.
fn chain_height(chain: &ChainBuilder) -> u64 {
    let mut probe = chain.clone();
    probe.block(&[]).height() - 1
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// CPU seconds used so far by this process's threads, by role.
#[derive(Debug, Default, Clone, Copy)]
struct ThreadCpu {
    /// The HTTP server's runtime and SQLite's connection threads.
    server: f64,
    client: f64,
}

impl ThreadCpu {
    fn delta(&self, before: &Self) -> Self {
        Self {
            server: self.server - before.server,
            client: self.client - before.client,
        }
    }
}

/// Sums utime + stime (100 Hz ticks) of `/proc/self/task/*` by thread name. Threads that
/// ended in between are missed, so the run's threads are all long-lived ones.
fn thread_cpu_seconds() -> ThreadCpu {
    let mut cpu = ThreadCpu::default();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return cpu;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue;
        };
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
            .sum();
        let secs = ticks / 100.0;
        if comm.starts_with(SERVER_THREADS) || comm.starts_with("sqlx-sqlite") {
            cpu.server += secs;
        } else if comm.starts_with(CLIENT_THREADS) {
            cpu.client += secs;
        }
    }
    cpu
}
