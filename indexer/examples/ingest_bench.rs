//! Benchmark (not a test): ingest throughput from fixture files into SQLite.
//!
//! `cargo run --profile bench -p indexer --example ingest_bench [blocks] [jobs_per_block]`
//! prints `BENCH indexer.ingest <n> events/s`. Each block carries real NEP-297 lines from
//! the shared event types: job submissions, claims and settlements, heartbeats and token
//! transfers, on top of 100 registered nodes.

use enclave_cloud_common::events::nep141::FtTransfer;
use enclave_cloud_common::events::{MarketplaceEvent, Nep141Event, Nep297, RegistryEvent};
use enclave_cloud_common::{JobId, NodeId};
use indexer::db::Db;
use indexer::fixture::scenario::{self, acc};
use indexer::fixture::{ChainBuilder, write_block};
use indexer::follower::{ChainStatus, FollowConfig, Follower};
use indexer::ingest::Ingestor;
use indexer::metrics::Metrics;
use indexer::source::FixtureSource;
use near_sdk::json_types::{U64, U128};
use std::time::{Duration, Instant};

const NODES: u64 = 100;
const FIRST: u64 = 1_000;

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let blocks = arg(1, 1_000);
    let jobs_per_block = arg(2, 10);
    let dir = tempfile::tempdir()?;
    let blocks_dir = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir)?;

    // Fixture chain: nodes first, then blocks of job traffic.
    let mut chain = ChainBuilder::new(FIRST);
    let mut setup = Vec::new();
    for n in 1..=NODES {
        setup.push(scenario::registered(n).to_log_line());
        setup.push(scenario::gpu(n, "H100").to_log_line());
        setup.push(scenario::priced(n, "eu", 1_000 + n as u128).to_log_line());
    }
    write_block(&blocks_dir, &chain.block(&[(scenario::REGISTRY, setup)]))?;
    let mut events = 3 * NODES;
    let mut job = 0u64;
    for b in 0..blocks {
        let mut market = Vec::new();
        let mut registry = Vec::new();
        for _ in 0..jobs_per_block {
            job += 1;
            let node = job % NODES + 1;
            market.push(scenario::submitted(job, scenario::any_target(None), 5_000).to_log_line());
            // Jobs submitted in the previous block are claimed and settled in this one.
            if job > jobs_per_block {
                let old = job - jobs_per_block;
                market.push(scenario::claimed(old, node).to_log_line());
                market.push(scenario::settled(old, node, 1_000, 5_000).to_log_line());
            }
            registry.push(
                RegistryEvent::NodeHeartbeat {
                    node_id: NodeId(node),
                    at_ns: U64(b),
                }
                .to_log_line(),
            );
        }
        market.push(
            MarketplaceEvent::CreditAdded {
                account: acc(scenario::OPERATOR),
                asset: enclave_cloud_common::Asset::Near,
                amount: U128(1),
            }
            .to_log_line(),
        );
        let transfer = Nep141Event::FtTransfer(vec![FtTransfer {
            old_owner_id: acc("a.test"),
            new_owner_id: acc("b.test"),
            amount: U128(0),
            memo: None,
        }])
        .to_log_line();
        events += (market.len() + registry.len() + 1) as u64;
        let _ = JobId(job);
        write_block(
            &blocks_dir,
            &chain.block(&[
                (scenario::MARKETPLACE, market),
                (scenario::REGISTRY, registry),
                (scenario::USDC, vec![transfer]),
            ]),
        )?;
    }
    let last = FIRST + blocks;

    let db = Db::open(&indexer::db::sqlite_url_in(dir.path())).await?;
    let metrics = Metrics::new()?;
    let follower = Follower {
        source: FixtureSource::new(&blocks_dir),
        db: db.clone(),
        ingestor: Ingestor::new(scenario::contracts(), metrics.clone()),
        config: FollowConfig {
            start_height: FIRST,
            poll_interval: Duration::from_millis(10),
            stop_at: Some(last),
            ..FollowConfig::default()
        },
        status: ChainStatus::new("bench".into(), 0),
        metrics: metrics.clone(),
    };
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    follower.run(stop_rx).await?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let applied: i64 =
        sqlx::query_scalar("SELECT value FROM counters WHERE name = 'events_applied'")
            .fetch_one(&db.pool)
            .await?;
    anyhow::ensure!(
        applied as u64 == events,
        "applied {applied} of {events} events"
    );
    eprintln!(
        "ingested {events} events in {} blocks in {secs:.2} s",
        blocks + 1
    );
    println!("BENCH indexer.ingest {:.0} events/s", events as f64 / secs);
    // Wall time depends on what else the machine runs; CPU time much less so.
    if let Some(cpu) = cpu.filter(|c| *c > 0.0) {
        println!(
            "BENCH indexer.ingest.cpu {:.0} events/cpu-s",
            events as f64 / cpu
        );
    }
    Ok(())
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`, 100 Hz ticks).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
