//! Governance events (`ecloud_governance`): every contract we follow announces the changes of
//! its own timelock; the indexer keeps them per (contract, change id) with their status and
//! serves them at `/v1/governance`. Only our contracts' events count.
//! Every test runs on SQLite and, with `ECLOUD_TEST_POSTGRES_URL`, on PostgreSQL.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use enclave_cloud_common::events::{GovernanceEvent, ModelEvent, Nep297};
use http_body_util::BodyExt;
use indexer::api::{self, ApiContext};
use indexer::block::StreamerMessage;
use indexer::db::Db;
use indexer::db::checkpoint::counter;
use indexer::fixture::ChainBuilder;
use indexer::fixture::scenario::{
    self, FACTORY, MARKETPLACE, MODEL_TOKEN, REGISTRY, USDC, acc, model,
};
use indexer::ingest::{BlockReport, Ingestor};
use indexer::metrics::Metrics;
use near_sdk::json_types::U64;
use protocol::indexer::{GovernanceChange, Page};
use serde_json::{Value, json};
use tower::ServiceExt;

const OWNER: &str = "dao.test";
const APPLIES_AT: u64 = 1_800_000_000_000_000_000;

fn delay(ns: u64) -> Value {
    json!({ "set_delay": { "delay_ns": ns.to_string() } })
}

fn proposed(id: u64, change: Value) -> String {
    GovernanceEvent::ChangeProposed {
        id: U64(id),
        change,
        proposed_by: acc(OWNER),
        applies_at_ns: U64(APPLIES_AT),
    }
    .to_log_line()
}

fn applied(id: u64, change: Value) -> String {
    GovernanceEvent::ChangeApplied {
        id: U64(id),
        change,
    }
    .to_log_line()
}

fn cancelled(id: u64) -> String {
    GovernanceEvent::<Value>::ChangeCancelled { id: U64(id) }.to_log_line()
}

/// Applies `blocks` in order; the reports of each.
async fn ingest(db: &Db, blocks: &[StreamerMessage]) -> (Metrics, Vec<BlockReport>) {
    let metrics = Metrics::new().unwrap();
    let ingestor = Ingestor::new(scenario::contracts(), metrics.clone());
    let mut reports = Vec::new();
    for b in blocks {
        reports.push(ingestor.apply_block(db, b).await.unwrap());
    }
    (metrics, reports)
}

type Row = (String, i64, String, Option<i64>);

/// (contract, change id, status, resolved height) of every stored change.
async fn changes(db: &Db) -> Vec<Row> {
    sqlx::query_as(
        "SELECT contract, change_id, status, resolved_height FROM governance_changes
         ORDER BY contract, change_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

fn row(contract: &str, id: i64, status: &str, resolved: Option<u64>) -> Row {
    (
        contract.to_owned(),
        id,
        status.to_owned(),
        resolved.map(|h| i64::try_from(h).unwrap()),
    )
}

async fn proposed_changes_are_pending_until_applied_or_cancelled(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let upgrade = json!({ "upgrade_code": { "code_hash": "ab".repeat(32) } });
    let mut chain = ChainBuilder::new(FIRST_HEIGHT);
    let blocks = [
        // Ids are per contract: the registry's change 1 and the marketplace's change 1.
        chain.block(&[
            (
                REGISTRY,
                vec![proposed(1, delay(60)), proposed(2, upgrade.clone())],
            ),
            (MARKETPLACE, vec![proposed(1, delay(90))]),
        ]),
        chain.block(&[
            (REGISTRY, vec![applied(1, delay(60))]),
            (MARKETPLACE, vec![cancelled(1)]),
        ]),
        // Applied again, cancelled after being applied, never proposed: orphans.
        chain.block(&[
            (
                REGISTRY,
                vec![applied(1, delay(60)), cancelled(1), cancelled(7)],
            ),
            (MARKETPLACE, vec![applied(1, delay(90))]),
        ]),
    ];
    let (metrics, reports) = ingest(&db, &blocks[..1]).await;
    assert_eq!(reports[0].applied, 3, "{:?}", reports[0]);
    assert_eq!(
        changes(&db).await,
        [
            row(MARKETPLACE, 1, "pending", None),
            row(REGISTRY, 1, "pending", None),
            row(REGISTRY, 2, "pending", None),
        ]
    );
    let stored: (String, String, i64, i64, i64, String) = sqlx::query_as(
        "SELECT change, proposed_by, applies_at_ns, proposed_height, proposed_at_ns,
             proposed_receipt FROM governance_changes WHERE contract = $1 AND change_id = 2",
    )
    .bind(REGISTRY)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let header = &blocks[0].block.header;
    assert_eq!(serde_json::from_str::<Value>(&stored.0).unwrap(), upgrade);
    assert_eq!(stored.1, OWNER);
    assert_eq!(stored.2, i64::try_from(APPLIES_AT).unwrap());
    assert_eq!(stored.3, i64::try_from(header.height).unwrap());
    assert_eq!(stored.4, i64::try_from(header.timestamp_nanosec).unwrap());
    assert_eq!(stored.5, "receipt-1");
    assert!(
        metrics
            .render()
            .contains("ecloud_indexer_events_total{standard=\"governance\"} 3")
    );

    let ingestor = Ingestor::new(scenario::contracts(), Metrics::new().unwrap());
    let second = ingestor.apply_block(&db, &blocks[1]).await.unwrap();
    assert_eq!((second.applied, second.orphan), (2, 0), "{second:?}");
    let h2 = blocks[1].height();
    let expected = [
        row(MARKETPLACE, 1, "cancelled", Some(h2)),
        row(REGISTRY, 1, "applied", Some(h2)),
        row(REGISTRY, 2, "pending", None),
    ];
    assert_eq!(changes(&db).await, expected);
    let resolved_at: Option<i64> = sqlx::query_scalar(
        "SELECT resolved_at_ns FROM governance_changes WHERE contract = $1 AND change_id = 1",
    )
    .bind(REGISTRY)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        resolved_at,
        Some(i64::try_from(blocks[1].block.header.timestamp_nanosec).unwrap())
    );

    // A change that is not pending does not move again; it is counted as an orphan.
    let third = ingestor.apply_block(&db, &blocks[2]).await.unwrap();
    assert_eq!((third.applied, third.orphan), (0, 4), "{third:?}");
    assert_eq!(changes(&db).await, expected);
}
storage_test!(
    pending_applied_cancelled_on,
    proposed_changes_are_pending_until_applied_or_cancelled
);

/// Governance events of accounts that are not ours are not stored: an untracked account's
/// are ignored like all its events, a payment token (whose other events we read) may not
/// emit them (foreign). The same block's events of our contracts are applied.
async fn only_our_contracts_governance_is_stored(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let mut chain = ChainBuilder::new(FIRST_HEIGHT);
    let blocks = [
        chain.block(&[
            ("stranger.test", vec![proposed(1, delay(1))]),
            (USDC, vec![proposed(1, delay(1))]),
            (REGISTRY, vec![proposed(1, delay(60))]),
            // Looks like a model token of another factory: not ours either.
            ("llama.other-factory.test", vec![proposed(1, delay(1))]),
        ]),
        // Nor can anyone else apply or cancel our contracts' changes.
        chain.block(&[
            ("stranger.test", vec![applied(1, delay(60))]),
            (USDC, vec![cancelled(1)]),
        ]),
    ];
    let (_, reports) = ingest(&db, &blocks).await;
    assert_eq!(
        (reports[0].applied, reports[0].foreign),
        (1, 1),
        "{:?}",
        reports[0]
    );
    assert_eq!(
        (reports[1].applied, reports[1].foreign),
        (0, 1),
        "{:?}",
        reports[1]
    );
    assert_eq!(changes(&db).await, [row(REGISTRY, 1, "pending", None)]);
    let mut conn = db.pool.acquire().await.unwrap();
    assert_eq!(counter(&mut conn, "events_foreign").await.unwrap(), 2);
}
storage_test!(
    only_our_contracts_governance_on,
    only_our_contracts_governance_is_stored
);

/// The factory and each model token have timelocks of their own. A token's events before
/// the factory announced it are held and applied with the announcement, under the token.
async fn factory_and_model_token_changes(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let created = ModelEvent::ModelCreated {
        model_id: model(),
        token: acc(MODEL_TOKEN),
        owner: acc("owner.test"),
    };
    let mut chain = ChainBuilder::new(FIRST_HEIGHT);
    let blocks = [
        chain.block(&[(MODEL_TOKEN, vec![proposed(1, delay(5))])]),
        chain.block(&[(FACTORY, vec![created.to_log_line(), proposed(1, delay(7))])]),
        chain.block(&[(MODEL_TOKEN, vec![applied(1, delay(5))])]),
    ];
    let (_, reports) = ingest(&db, &blocks).await;
    assert_eq!(reports[0].applied, 0, "held: {:?}", reports[0]);
    assert_eq!(reports[1].applied, 3, "{:?}", reports[1]);
    assert_eq!(reports[2].applied, 1, "{:?}", reports[2]);
    assert_eq!(
        changes(&db).await,
        [
            row(FACTORY, 1, "pending", None),
            row(MODEL_TOKEN, 1, "applied", Some(blocks[2].height())),
        ]
    );
    // The held proposal keeps its own place in the chain.
    let height: i64 =
        sqlx::query_scalar("SELECT proposed_height FROM governance_changes WHERE contract = $1")
            .bind(MODEL_TOKEN)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(height, i64::try_from(blocks[0].height()).unwrap());
}
storage_test!(
    factory_and_model_token_changes_on,
    factory_and_model_token_changes
);

/// Ids and times above i64::MAX are refused through the bad-value path, not clamped: the
/// event is skipped and kept in `rejected_events`, the rest of the block is applied.
async fn out_of_range_ids_and_times_are_bad_values(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let huge = i64::MAX as u64 + 1;
    let late = GovernanceEvent::ChangeProposed {
        id: U64(2),
        change: delay(1),
        proposed_by: acc(OWNER),
        applies_at_ns: U64(huge),
    }
    .to_log_line();
    let mut chain = ChainBuilder::new(FIRST_HEIGHT);
    let block = chain.block(&[(
        REGISTRY,
        vec![
            proposed(1, delay(1)),
            late,
            proposed(huge, delay(1)),
            cancelled(huge),
        ],
    )]);
    let (metrics, reports) = ingest(&db, std::slice::from_ref(&block)).await;
    assert_eq!(
        (reports[0].applied, reports[0].bad_value),
        (1, 3),
        "{:?}",
        reports[0]
    );
    assert_eq!(changes(&db).await, [row(REGISTRY, 1, "pending", None)]);
    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT reason FROM rejected_events ORDER BY seq")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    for (reason, field) in reasons
        .iter()
        .zip(["applies_at_ns", "change_id", "change_id"])
    {
        assert!(reason.contains(field), "{reason} should name {field}");
    }
    assert!(
        metrics
            .render()
            .contains("ecloud_indexer_bad_values_total{field=\"change_id\"} 2")
    );
}
storage_test!(
    governance_bad_values_on,
    out_of_range_ids_and_times_are_bad_values
);

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, body)
}

/// `(contract, change_id)` of a page's items, in order.
fn keys(page: &Page<GovernanceChange>) -> Vec<(String, String)> {
    page.items
        .iter()
        .map(|c| (c.contract.clone(), c.change_id.clone()))
        .collect()
}

fn key(contract: &str, id: &str) -> (String, String) {
    (contract.to_owned(), id.to_owned())
}

async fn the_endpoint_filters_by_contract_and_status(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let mut chain = ChainBuilder::new(FIRST_HEIGHT);
    let blocks = [
        chain.block(&[
            (
                REGISTRY,
                vec![proposed(1, delay(60)), proposed(2, delay(61))],
            ),
            (MARKETPLACE, vec![proposed(1, delay(90))]),
        ]),
        chain.block(&[
            (MARKETPLACE, vec![proposed(2, delay(91))]),
            (REGISTRY, vec![proposed(3, delay(62))]),
        ]),
        chain.block(&[
            (REGISTRY, vec![applied(1, delay(60)), cancelled(2)]),
            (MARKETPLACE, vec![applied(2, delay(91))]),
        ]),
    ];
    let (metrics, _) = ingest(&db, &blocks).await;
    let app = api::router(ApiContext {
        db: db.clone(),
        status: status(),
        metrics,
        node_pages: Default::default(),
    });
    let page = |uri: &'static str| {
        let app = app.clone();
        async move {
            let (code, body) = get(&app, uri).await;
            assert_eq!(code, StatusCode::OK, "{uri}: {body}");
            serde_json::from_value::<Page<GovernanceChange>>(body).unwrap()
        }
    };

    // Newest proposal first, across contracts.
    let all = page("/v1/governance").await;
    assert_eq!(
        keys(&all),
        [
            key(REGISTRY, "3"),
            key(MARKETPLACE, "2"),
            key(MARKETPLACE, "1"),
            key(REGISTRY, "2"),
            key(REGISTRY, "1"),
        ]
    );
    assert_eq!(all.next_cursor, None);
    let r1 = &all.items[4];
    assert_eq!(r1.status, "applied");
    assert_eq!(r1.change, delay(60));
    assert_eq!(r1.proposed_by, OWNER);
    assert_eq!(r1.applies_at_ns, APPLIES_AT.to_string());
    assert_eq!(r1.proposed_height, blocks[0].height());
    assert_eq!(
        r1.proposed_at_ns,
        blocks[0].block.header.timestamp_nanosec.to_string()
    );
    assert_eq!(r1.resolved_height, Some(blocks[2].height()));
    assert_eq!(
        r1.resolved_at_ns,
        Some(blocks[2].block.header.timestamp_nanosec.to_string())
    );
    let r3 = &all.items[0];
    assert_eq!((r3.status.as_str(), r3.resolved_height), ("pending", None));
    assert_eq!(r3.resolved_at_ns, None);

    for (uri, expect) in [
        (
            "/v1/governance?contract=registry.test",
            vec![key(REGISTRY, "3"), key(REGISTRY, "2"), key(REGISTRY, "1")],
        ),
        (
            "/v1/governance?status=pending",
            vec![key(REGISTRY, "3"), key(MARKETPLACE, "1")],
        ),
        (
            "/v1/governance?contract=market.test&status=pending",
            vec![key(MARKETPLACE, "1")],
        ),
        (
            "/v1/governance?contract=registry.test&status=cancelled",
            vec![key(REGISTRY, "2")],
        ),
        (
            "/v1/governance?status=applied",
            vec![key(MARKETPLACE, "2"), key(REGISTRY, "1")],
        ),
        ("/v1/governance?contract=usdc.test", vec![]),
    ] {
        assert_eq!(keys(&page(uri).await), expect, "{uri}");
    }

    // Pages: the cursor continues below the last item.
    let first = page("/v1/governance?contract=registry.test&limit=2").await;
    assert_eq!(keys(&first), [key(REGISTRY, "3"), key(REGISTRY, "2")]);
    let cursor = first.next_cursor.clone().unwrap();
    let uri = format!("/v1/governance?contract=registry.test&limit=2&cursor={cursor}");
    let (code, body) = get(&app, &uri).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let second: Page<GovernanceChange> = serde_json::from_value(body).unwrap();
    assert_eq!(keys(&second), [key(REGISTRY, "1")]);
    assert_eq!(second.next_cursor, None);

    for (uri, code, needle) in [
        ("/v1/governance?status=open", "bad_parameter", "status"),
        (
            "/v1/governance?contract=NOT%20AN%20ACCOUNT",
            "bad_parameter",
            "contract",
        ),
        ("/v1/governance?limit=0", "bad_parameter", "limit"),
        ("/v1/governance?cursor=01", "bad_cursor", "01"),
        ("/v1/governance?colour=red", "bad_parameter", "colour"),
    ] {
        let (status, body) = get(&app, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"], code, "{uri}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(needle), "{uri}: {message}");
    }

    // A stored change that does not read is a 500, not a null.
    sqlx::query("UPDATE governance_changes SET change = '{bad' WHERE contract = $1")
        .bind(MARKETPLACE)
        .execute(&db.pool)
        .await
        .unwrap();
    let (code, body) = get(&app, "/v1/governance?contract=market.test").await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let (code, body) = get(&app, "/v1/governance?contract=registry.test").await;
    assert_eq!(code, StatusCode::OK, "{body}");
}
storage_test!(
    governance_endpoint_on,
    the_endpoint_filters_by_contract_and_status
);
