//! The encrypted weights a settled job's receipt names (`job_settled.weights_hash`,
//! `ecloud_marketplace` 1.2.0): stored with the job and served by the job API; absent (older
//! events, plain weights): `null`. A stored value that is not a hash is a 500, never a guess.
//! Every test runs on SQLite and, with `ECLOUD_TEST_POSTGRES_URL`, on PostgreSQL.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use axum::http::StatusCode;
use common::*;
use enclave_cloud_common::Hash32;
use enclave_cloud_common::events::{MarketplaceEvent, Nep297};
use indexer::api::{self, ApiContext};
use indexer::fixture::ChainBuilder;
use indexer::fixture::scenario::{
    self, MARKETPLACE, REGISTRY, any_target, claimed, registered, settled, submitted,
};
use indexer::ingest::Ingestor;
use indexer::metrics::Metrics;
use serde_json::Value;

const WEIGHTS: Hash32 = Hash32([0xab; 32]);

async fn settled_jobs_serve_their_receipts_weights(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let mut with_weights = settled(1, 1, 1_000, 5_000);
    if let MarketplaceEvent::JobSettled { weights_hash, .. } = &mut with_weights {
        *weights_hash = Some(WEIGHTS);
    }
    // Job 2 settles as a 1.1.0 marketplace wrote it: no weights key at all.
    let old_line = settled(2, 1, 1_000, 5_000)
        .to_log_line()
        .replace(r#""version":"1.2.0""#, r#""version":"1.1.0""#);
    assert!(old_line.contains("1.1.0") && !old_line.contains("weights_hash"));
    let mut lines: Vec<String> = [
        submitted(1, any_target(None), 5_000),
        submitted(2, any_target(None), 5_000),
        submitted(3, any_target(None), 5_000),
        claimed(1, 1),
        claimed(2, 1),
        with_weights,
    ]
    .iter()
    .map(Nep297::to_log_line)
    .collect();
    lines.push(old_line);
    let mut chain = ChainBuilder::new(FIRST_HEIGHT);
    let block = chain.block(&[
        (REGISTRY, vec![registered(1).to_log_line()]),
        (MARKETPLACE, lines),
    ]);
    let metrics = Metrics::new().unwrap();
    Ingestor::new(scenario::contracts(), metrics.clone())
        .apply_block(&db, &block)
        .await
        .unwrap();
    let stored: Vec<(i64, Option<String>)> =
        sqlx::query_as("SELECT job_id, weights_hash FROM jobs ORDER BY job_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        stored,
        [(1, Some(WEIGHTS.to_string())), (2, None), (3, None)]
    );

    let app = api::router(ApiContext {
        db: db.clone(),
        status: status(),
        metrics: metrics.clone(),
        node_pages: Default::default(),
    });
    let (code, job) = get(&app, "/v1/jobs/1").await;
    assert_eq!(code, StatusCode::OK, "{job}");
    assert_eq!(job["weights_hash"], WEIGHTS.to_string());
    // The timeline keeps the event as written, with the weights.
    assert_eq!(
        job["timeline"][2]["data"]["weights_hash"],
        WEIGHTS.to_string()
    );
    let (_, job) = get(&app, "/v1/jobs/2").await;
    assert_eq!(job["status"], "settled");
    assert!(job["weights_hash"].is_null(), "{job}");
    let (_, open) = get(&app, "/v1/jobs/3").await;
    assert!(open["weights_hash"].is_null(), "{open}");
    let (code, page) = get(&app, "/v1/jobs?status=settled").await;
    assert_eq!(code, StatusCode::OK, "{page}");
    let weights: Vec<&Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| &j["weights_hash"])
        .collect();
    assert_eq!(weights.len(), 2, "{page}");
    assert!(weights.contains(&&Value::String(WEIGHTS.to_string())));

    // What the API reads must be a hash: a corrupt row is a 500, counted.
    sqlx::query("UPDATE jobs SET weights_hash = 'abc' WHERE job_id = 1")
        .execute(&db.pool)
        .await
        .unwrap();
    let (code, body) = get(&app, "/v1/jobs/1").await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(
        metrics
            .render()
            .contains("ecloud_indexer_bad_values_total{field=\"weights_hash\"} 1")
    );
}
storage_test!(
    settled_jobs_serve_weights_on,
    settled_jobs_serve_their_receipts_weights
);
