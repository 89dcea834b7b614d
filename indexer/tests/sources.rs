//! Block sources end to end: the neardata HTTP source against a small neardata-style
//! server (with skipped heights and outages), and the binary's `app::run` with graceful
//! shutdown while a feed stream is open.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::*;
use indexer::config::{Config, SourceKind};
use indexer::fixture::scenario;
use indexer::source::{BlockSource, NeardataSource};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Serves fixture files the way neardata does; answers 503 to the first `fail_first`
/// requests (an outage).
#[derive(Clone)]
struct FakeNeardata {
    dir: PathBuf,
    head: u64,
    fail_first: Arc<AtomicU32>,
}

impl FakeNeardata {
    fn down(&self) -> bool {
        self.fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

async fn block(State(s): State<FakeNeardata>, Path(h): Path<u64>) -> Response {
    if s.down() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match std::fs::read(s.dir.join(format!("{h}.json"))) {
        Ok(bytes) => ([("content-type", "application/json")], bytes).into_response(),
        // neardata answers `null` for a height the chain skipped.
        Err(_) => ([("content-type", "application/json")], "null").into_response(),
    }
}

async fn last_final(State(s): State<FakeNeardata>) -> Response {
    if s.down() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let bytes = std::fs::read(s.dir.join(format!("{}.json", s.head))).unwrap();
    ([("content-type", "application/json")], bytes).into_response()
}

async fn serve_neardata(fake: FakeNeardata) -> String {
    let app = Router::new()
        .route("/v0/block/{h}", get(block))
        .route("/v0/last_block/final", get(last_final))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neardata_source_survives_outages_and_skipped_heights() {
    let dir = tempfile::tempdir().unwrap();
    let blocks_dir = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir).unwrap();
    let blocks = write_scenario(&blocks_dir);
    let last = blocks.last().unwrap().height();
    let fake = FakeNeardata {
        dir: blocks_dir.clone(),
        head: last,
        fail_first: Arc::new(AtomicU32::new(5)),
    };
    let url = serve_neardata(fake.clone()).await;

    let source = NeardataSource::new(&url, Duration::from_secs(5)).unwrap();
    let (ref_db, _) = fresh_db(&dir.path().join("ref"), false).await.unwrap();
    follow(&ref_db, &blocks_dir, last).await;

    let (db, _) = fresh_db(&dir.path().join("http"), false).await.unwrap();
    let metrics = run_to_end(follower(source, &db, Some(last))).await;
    assert_eq!(
        metrics.source_errors.get(),
        5,
        "every outage answer is counted and retried"
    );
    assert_eq!(
        metrics.skipped_heights.get(),
        1,
        "the skipped height came back as null"
    );
    assert_eq!(
        dump(&db).await,
        dump(&ref_db).await,
        "same data as from the fixture files"
    );

    // The source itself: head, a block, a skipped height, a wrong answer.
    let source = NeardataSource::new(&url, Duration::from_secs(5)).unwrap();
    assert_eq!(source.final_head().await.unwrap(), last);
    assert_eq!(
        source.block(FIRST_HEIGHT).await.unwrap().unwrap(),
        blocks[0]
    );
    assert!(source.block(FIRST_HEIGHT + 2).await.unwrap().is_none());
    let down = NeardataSource::new("http://127.0.0.1:9", Duration::from_secs(2)).unwrap();
    let e = down.final_head().await.unwrap_err().to_string();
    assert!(e.contains("unreachable at http://127.0.0.1:9"), "{e}");
}

fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn config(blocks_dir: &std::path::Path, data: &std::path::Path, stop_at: Option<u64>) -> Config {
    let mut c = Config {
        database_url: indexer::db::sqlite_url_in(data),
        listen: free_port(),
        source: SourceKind::Fixtures,
        source_url: blocks_dir.display().to_string(),
        follow: fast_config(stop_at),
        contracts: scenario::contracts(),
        explorer: Default::default(),
    };
    c.follow.start_height = FIRST_HEIGHT;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_stops_at_the_requested_height() {
    let dir = tempfile::tempdir().unwrap();
    let blocks_dir = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir).unwrap();
    let last = write_scenario(&blocks_dir).last().unwrap().height();
    let data = dir.path().join("data");
    let run = indexer::app::run(
        config(&blocks_dir, &data, Some(last)),
        std::future::pending(),
    );
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .unwrap()
        .unwrap();
    let db = indexer::db::Db::open(&indexer::db::sqlite_url_in(&data))
        .await
        .unwrap();
    assert_eq!(
        count(&db, "SELECT height FROM checkpoint").await,
        last as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_shuts_down_gracefully_with_a_feed_open() {
    let dir = tempfile::tempdir().unwrap();
    let blocks_dir = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir).unwrap();
    write_scenario(&blocks_dir);
    let cfg = config(&blocks_dir, &dir.path().join("data"), None);
    let addr = cfg.listen;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = tokio::spawn(indexer::app::run(cfg, async move {
        let _ = stopped.await;
    }));
    // Wait for the API and node 2, then hold its feed open.
    let mut feed = None;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            continue;
        };
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(
                b"GET /v1/nodes/2/feed HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n",
            )
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200") {
            feed = Some(stream);
            break;
        }
    }
    let _feed = feed.expect("feed of node 2 opened");
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(20), app).await;
    result
        .expect("shutdown completes with a feed open")
        .unwrap()
        .unwrap();
}

/// One indexer per data directory: a second one on the same data fails at once with a clear
/// error, before it indexes anything, and the first one keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_indexer_on_the_same_data_directory_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let blocks_dir = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir).unwrap();
    write_scenario(&blocks_dir);
    let data = dir.path().join("data");
    let first_cfg = config(&blocks_dir, &data, None);
    let first_addr = first_cfg.listen;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let first = tokio::spawn(indexer::app::run(first_cfg, async move {
        let _ = stopped.await;
    }));
    let mut up = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if tokio::net::TcpStream::connect(first_addr).await.is_ok() {
            up = true;
            break;
        }
    }
    assert!(up, "the first indexer serves");

    // Another listen address: only the data directory is shared.
    let second = indexer::app::run(config(&blocks_dir, &data, None), std::future::pending());
    let e = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second indexer stops at once")
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("another indexer is already using"), "{e}");
    assert!(!first.is_finished(), "the first indexer keeps running");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), first)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
