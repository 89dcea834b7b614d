//! Helpers shared by the integration tests.
#![allow(dead_code)]

use indexer::block::StreamerMessage;
use indexer::db::Db;
use indexer::fixture::{scenario, write_block};
use indexer::follower::{ChainStatus, FollowConfig, Follower};
use indexer::ingest::Ingestor;
use indexer::metrics::Metrics;
use indexer::source::{BlockSource, FixtureSource};
use sqlx::{Column, Row};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub const FIRST_HEIGHT: u64 = 100;

/// The database URL for a test: PostgreSQL when `ECLOUD_TEST_POSTGRES_URL` is set and the
/// caller asks for it, otherwise a fresh SQLite file in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    indexer::db::sqlite_url_in(dir)
}

/// Writes the scenario's blocks as fixture files and returns them.
pub fn write_scenario(dir: &Path) -> Vec<StreamerMessage> {
    let blocks = scenario::blocks(FIRST_HEIGHT);
    for b in &blocks {
        write_block(dir, b).unwrap();
    }
    blocks
}

pub fn fast_config(stop_at: Option<u64>) -> FollowConfig {
    FollowConfig {
        start_height: FIRST_HEIGHT,
        poll_interval: Duration::from_millis(20),
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        stop_at,
    }
}

/// A follower of the scenario's contracts on `source`, fast-paced for tests.
pub fn follower<S: BlockSource>(source: S, db: &Db, stop_at: Option<u64>) -> Follower<S> {
    let metrics = Metrics::new().unwrap();
    Follower {
        source,
        db: db.clone(),
        ingestor: Ingestor::new(scenario::contracts(), metrics.clone()),
        config: fast_config(stop_at),
        status: ChainStatus::new("test source".into(), 0),
        metrics,
    }
}

/// Runs `follower` to its `stop_at` and returns its metrics.
pub async fn run_to_end<S: BlockSource>(follower: Follower<S>) -> Metrics {
    let metrics = follower.metrics.clone();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::time::timeout(Duration::from_secs(60), follower.run(rx))
        .await
        .unwrap()
        .unwrap();
    metrics
}

/// Follows the fixture chain in `blocks_dir` into `db` until `stop_at`.
pub async fn follow(db: &Db, blocks_dir: &Path, stop_at: u64) -> Metrics {
    run_to_end(follower(FixtureSource::new(blocks_dir), db, Some(stop_at))).await
}

pub fn status() -> Arc<ChainStatus> {
    ChainStatus::new("fixtures".into(), 0)
}

pub const TABLES: &[&str] = &[
    "checkpoint",
    "counters",
    "rejected_events",
    "operators",
    "nodes",
    "node_gpus",
    "node_prices",
    "node_status_history",
    "jobs",
    "requests",
    "timeline",
    "models",
    "model_activity",
    "key_grants",
    "balances",
    "revenue",
    "payouts",
    "credits",
    "totals",
    "pending_token_events",
    "governance_changes",
    "channels",
    "channel_settlements",
];

/// Every row of every table, as text, sorted: two databases with the same dump hold the
/// same data.
pub async fn dump(db: &Db) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for table in TABLES {
        let rows = sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(&db.pool)
            .await
            .unwrap();
        let mut lines: Vec<String> = rows
            .iter()
            .map(|row| {
                (0..row.columns().len())
                    .map(|i| {
                        let name = row.columns()[i].name().to_owned();
                        let v = if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                            format!("{v:?}")
                        } else {
                            format!("{:?}", row.try_get::<Option<String>, _>(i).unwrap())
                        };
                        format!("{name}={v}")
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        lines.sort();
        out.insert((*table).to_owned(), lines);
    }
    out
}

pub async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

/// A fresh, empty database for one test. SQLite by default; with `postgres = true` a new
/// PostgreSQL database on the server at `ECLOUD_TEST_POSTGRES_URL`, or `None` (and a loud
/// message) when that variable is not set.
pub async fn fresh_db(dir: &Path, postgres: bool) -> Option<(Db, String)> {
    if !postgres {
        let url = sqlite_url(dir);
        return Some((Db::open(&url).await.unwrap(), url));
    }
    let Ok(base) = std::env::var("ECLOUD_TEST_POSTGRES_URL") else {
        eprintln!(
            "SKIPPED (loudly): ECLOUD_TEST_POSTGRES_URL is not set, PostgreSQL storage test not run"
        );
        return None;
    };
    sqlx::any::install_default_drivers();
    let name = format!(
        "ecloud_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&base)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h.to_owned(), format!("?{q}")),
        None => (base.clone(), String::new()),
    };
    let server = head
        .rsplit_once('/')
        .map(|(s, _)| s.to_owned())
        .unwrap_or(head);
    let url = format!("{server}/{name}{query}");
    Some((Db::open(&url).await.unwrap(), url))
}

/// Declares a storage test twice: on SQLite, and on PostgreSQL when configured.
#[macro_export]
macro_rules! storage_test {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body(false).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body(true).await;
            }
        }
    };
}

/// `GET uri` on the API router: the status and the JSON body (a body that is not JSON comes
/// back as a string, so a failing assertion shows it).
pub async fn get(app: &axum::Router, uri: &str) -> (axum::http::StatusCode, serde_json::Value) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let request = axum::http::Request::get(uri)
        .body(axum::body::Body::empty())
        .expect("a GET request");
    let resp = app
        .clone()
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, body)
}
