//! Values that do not fit are refused, never stored or served as a clamped or zero figure:
//! u64 ids, token counts and nanosecond times above i64::MAX (the SQL BIGINT), stored
//! amounts that are not decimal numbers, stored JSON that does not parse. At ingest such an
//! event is skipped (logged, counted, kept in `rejected_events`) and the rest of the block
//! is applied; through the API it is a 500 with the JSON error body.
//! Every test runs on SQLite and, with `ECLOUD_TEST_POSTGRES_URL`, on PostgreSQL.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use axum::http::StatusCode;
use common::*;
use enclave_cloud_common::events::nep141::{FtMint, FtTransfer};
use enclave_cloud_common::events::{MarketplaceEvent, Nep141Event, Nep297};
use indexer::api::{self, ApiContext};
use indexer::db::Db;
use indexer::db::amount;
use indexer::db::checkpoint::{self, counter};
use indexer::fixture::ChainBuilder;
use indexer::fixture::scenario::{
    self, MARKETPLACE, REGISTRY, USDC, acc, any_target, claimed, registered, settled, submitted,
};
use indexer::ingest::Ingestor;
use indexer::metrics::Metrics;
use near_sdk::json_types::{U64, U128};

const HUGE: u64 = i64::MAX as u64 + 1;

fn lines<E: Nep297>(events: &[E]) -> Vec<String> {
    events.iter().map(Nep297::to_log_line).collect()
}

async fn jobs(db: &Db) -> Vec<(i64, String, i64, Option<i64>)> {
    sqlx::query_as("SELECT job_id, status, deadline_ns, output_tokens FROM jobs ORDER BY job_id")
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

async fn out_of_range_ids_and_times_skip_the_event_not_the_block(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let mut late = submitted(1, any_target(None), 5_000);
    if let MarketplaceEvent::JobSubmitted { deadline_ns, .. } = &mut late {
        *deadline_ns = U64(HUGE);
    }
    let mut big_usage = settled(2, 1, 1_000, 5_000);
    if let MarketplaceEvent::JobSettled { usage, .. } = &mut big_usage {
        usage.output_tokens = U64(u64::MAX);
    }
    let mut chain = ChainBuilder::new(FIRST_HEIGHT);
    let blocks = [
        chain.block(&[
            (REGISTRY, lines(&[registered(1), registered(HUGE)])),
            (
                MARKETPLACE,
                lines(&[
                    late,
                    submitted(2, any_target(None), 5_000),
                    submitted(HUGE, any_target(None), 5_000),
                    claimed(2, 1),
                    big_usage,
                    submitted(3, any_target(None), 5_000),
                ]),
            ),
        ]),
        // The follower goes on with the next block.
        chain.block(&[(MARKETPLACE, lines(&[claimed(3, 1)]))]),
    ];
    let metrics = Metrics::new().unwrap();
    let ingestor = Ingestor::new(scenario::contracts(), metrics.clone());
    for b in &blocks {
        ingestor.apply_block(&db, b).await.unwrap();
    }

    // Neither the huge deadline nor the huge token count is stored as i64::MAX: the
    // submission of job 1 and the settlement of job 2 are skipped, job 2 stays claimed.
    assert_eq!(
        jobs(&db).await,
        [
            (2, "claimed".to_owned(), 2, None),
            (3, "claimed".to_owned(), 2, None),
        ]
    );
    let nodes: Vec<i64> = sqlx::query_scalar("SELECT node_id FROM nodes ORDER BY node_id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(nodes, [1]);
    // Nothing of the skipped settlement is left behind (payouts, totals, timeline).
    assert_eq!(count(&db, "SELECT COUNT(*) FROM payouts").await, 0);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM totals").await, 0);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM timeline WHERE event = 'job_settled'"
        )
        .await,
        0
    );

    // Counted persistently, in the metrics, and kept for inspection with the field named.
    let mut conn = db.pool.acquire().await.unwrap();
    assert_eq!(counter(&mut conn, "events_bad_value").await.unwrap(), 4);
    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT reason FROM rejected_events ORDER BY seq")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    for (reason, field) in reasons
        .iter()
        .zip(["node_id", "deadline_ns", "job_id", "output_tokens"])
    {
        assert!(reason.contains(field), "{reason} should name {field}");
    }
    let text = metrics.render();
    for line in [
        "ecloud_indexer_events_rejected_total{reason=\"bad_value\"} 4",
        "ecloud_indexer_bad_values_total{field=\"deadline_ns\"} 1",
        "ecloud_indexer_bad_values_total{field=\"output_tokens\"} 1",
        // The block is first tried without savepoints, then again with them: the events
        // of the block count once.
        "ecloud_indexer_events_total{standard=\"registry\"} 1",
        "ecloud_indexer_events_total{standard=\"marketplace\"} 4",
        "ecloud_indexer_blocks_total 2",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    let cp = checkpoint::load(&mut conn).await.unwrap().unwrap();
    assert_eq!(cp.height, blocks[1].height());
}
storage_test!(
    out_of_range_ids_and_times_on,
    out_of_range_ids_and_times_skip_the_event_not_the_block
);

async fn a_garbage_stored_amount_is_not_read_as_zero(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let mint = |to: &str, v: u128| {
        Nep141Event::FtMint(vec![FtMint {
            owner_id: acc(to),
            amount: U128(v),
            memo: None,
        }])
    };
    let transfer = Nep141Event::FtTransfer(vec![FtTransfer {
        old_owner_id: acc("a.test"),
        new_owner_id: acc("b.test"),
        amount: U128(30),
        memo: None,
    }]);
    let mut chain = ChainBuilder::new(FIRST_HEIGHT);
    let first = chain.block(&[(USDC, lines(&[mint("a.test", 100)]))]);
    let second = chain.block(&[(USDC, lines(&[transfer, mint("c.test", 5)]))]);
    let metrics = Metrics::new().unwrap();
    let ingestor = Ingestor::new(scenario::contracts(), metrics.clone());
    ingestor.apply_block(&db, &first).await.unwrap();
    sqlx::query("UPDATE balances SET balance = 'garbage' WHERE account = 'a.test'")
        .execute(&db.pool)
        .await
        .unwrap();
    ingestor.apply_block(&db, &second).await.unwrap();

    let balances: Vec<(String, String)> =
        sqlx::query_as("SELECT account, balance FROM balances ORDER BY account")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    // The transfer is skipped: a.test keeps what is stored (not 0), b.test gets nothing;
    // the mint in the same block is applied.
    assert_eq!(
        balances,
        [
            ("a.test".to_owned(), "garbage".to_owned()),
            ("c.test".to_owned(), amount::pad(5)),
        ]
    );
    let mut conn = db.pool.acquire().await.unwrap();
    assert_eq!(counter(&mut conn, "events_bad_value").await.unwrap(), 1);
    assert!(
        metrics
            .render()
            .contains("ecloud_indexer_bad_values_total{field=\"balance\"} 1")
    );
}
storage_test!(
    garbage_stored_amount_on,
    a_garbage_stored_amount_is_not_read_as_zero
);

async fn unreadable_stored_values_are_500s_not_defaults(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let mut chain = ChainBuilder::new(FIRST_HEIGHT);
    let block = chain.block(&[
        (REGISTRY, lines(&[registered(1)])),
        (
            MARKETPLACE,
            lines(&[
                submitted(1, any_target(None), 5_000),
                submitted(2, any_target(None), 5_000),
                submitted(3, any_target(None), 5_000),
                claimed(1, 1),
                settled(1, 1, 1_000, 5_000),
            ]),
        ),
    ]);
    let metrics = Metrics::new().unwrap();
    Ingestor::new(scenario::contracts(), metrics.clone())
        .apply_block(&db, &block)
        .await
        .unwrap();
    let app = api::router(ApiContext {
        db: db.clone(),
        status: status(),
        metrics: metrics.clone(),
        node_pages: Default::default(),
    });
    for (uri, expected) in [("/v1/jobs/1", "1000"), ("/v1/jobs/2", "5000")] {
        let (code, body) = get(&app, uri).await;
        assert_eq!(code, StatusCode::OK, "{uri}: {body}");
        let got = body["settlement"]["cost"]
            .as_str()
            .or(body["price_cap"].as_str());
        assert_eq!(got, Some(expected), "{uri}: {body}");
    }
    let corrupt = [
        "UPDATE jobs SET cost = '12abc' WHERE job_id = 1",
        "UPDATE jobs SET input = '{not json' WHERE job_id = 2",
        "UPDATE jobs SET price_cap = '' WHERE job_id = 3",
    ];
    for sql in corrupt {
        sqlx::query(sql).execute(&db.pool).await.unwrap();
    }
    for (uri, field) in [
        ("/v1/jobs/1", "cost"),
        ("/v1/jobs/2", "input"),
        ("/v1/jobs/3", "price_cap"),
    ] {
        let (code, body) = get(&app, uri).await;
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{uri}: {body}");
        assert_eq!(body["error"], "internal", "{uri}: {body}");
        let line = format!("ecloud_indexer_bad_values_total{{field=\"{field}\"}} 1");
        let text = metrics.render();
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
    // A listing that holds a bad row fails too, rather than showing it with a made-up value.
    let (code, body) = get(&app, "/v1/jobs").await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{body}");

    // A settled row missing a leg, a negative token count: not "" nor -1.
    let cost = amount::pad(1_000);
    let cases = [
        (
            format!("UPDATE jobs SET cost = '{cost}', provider_amount = NULL WHERE job_id = 1"),
            "provider_amount",
        ),
        (
            format!(
                "UPDATE jobs SET provider_amount = '{cost}', output_tokens = -1 WHERE job_id = 1"
            ),
            "output_tokens",
        ),
    ];
    for (sql, field) in cases {
        sqlx::query(&sql).execute(&db.pool).await.unwrap();
        let (code, body) = get(&app, "/v1/jobs/1").await;
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{sql}: {body}");
        let line = format!("ecloud_indexer_bad_values_total{{field=\"{field}\"}} 1");
        let text = metrics.render();
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
}
storage_test!(
    unreadable_stored_values_on,
    unreadable_stored_values_are_500s_not_defaults
);

/// `/v1/nodes` on SQLite renders nodes in SQL (`node_json`): the same strictness there.
async fn unreadable_node_values_are_500s_in_listings_and_details(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let mut chain = ChainBuilder::new(FIRST_HEIGHT);
    let block = chain.block(&[(
        REGISTRY,
        lines(&[registered(1), scenario::priced(1, "eu", 7)]),
    )]);
    let metrics = Metrics::new().unwrap();
    Ingestor::new(scenario::contracts(), metrics.clone())
        .apply_block(&db, &block)
        .await
        .unwrap();
    let app = api::router(ApiContext {
        db: db.clone(),
        status: status(),
        metrics: metrics.clone(),
        node_pages: Default::default(),
    });
    let (code, body) = get(&app, "/v1/nodes?limit=1").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        body["items"][0]["prices"][0]["output_per_million"], "7",
        "{body}"
    );

    let cases = [
        (
            "UPDATE node_prices SET output_per_million = ''",
            "output_per_million",
        ),
        (
            "UPDATE node_prices SET output_per_million = '340282366920938463463374607431768211456'",
            "output_per_million",
        ),
        (
            "UPDATE node_prices SET output_per_million = '7', input_per_million = '1x'",
            "input_per_million",
        ),
        (
            "UPDATE node_prices SET input_per_million = '1'; UPDATE nodes SET measurements = '{bad'",
            "measurements",
        ),
    ];
    for (n, (sql, field)) in cases.into_iter().enumerate() {
        for stmt in sql.split("; ") {
            sqlx::query(stmt).execute(&db.pool).await.unwrap();
        }
        // A new limit each time: a new page, not one cached before the change.
        for uri in [
            format!("/v1/nodes?limit={}", n + 2),
            "/v1/nodes/1".to_owned(),
        ] {
            let (code, body) = get(&app, &uri).await;
            assert_eq!(
                code,
                StatusCode::INTERNAL_SERVER_ERROR,
                "{sql}: {uri}: {body}"
            );
            assert_eq!(body["error"], "internal", "{uri}: {body}");
        }
        let text = metrics.render();
        assert!(
            text.contains(&format!(
                "ecloud_indexer_bad_values_total{{field=\"{field}\"}}"
            )),
            "{field} missing from\n{text}"
        );
    }
}
storage_test!(
    unreadable_node_values_on,
    unreadable_node_values_are_500s_in_listings_and_details
);

/// A token's events held until the factory announces it: a held event with a bad value is
/// skipped when the announcement applies them, the other held events are applied.
async fn a_bad_held_token_event_is_skipped_the_others_applied(postgres: bool) {
    use enclave_cloud_common::events::ModelEvent;
    use indexer::fixture::scenario::{FACTORY, MODEL_TOKEN, model};

    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let crowdfund = ModelEvent::CrowdfundStarted {
        goal: U128(100),
        token_price: U128(2),
        deadline_ns: U64(HUGE),
        beneficiary: acc("trainer.test"),
    };
    let mint = Nep141Event::FtMint(vec![FtMint {
        owner_id: acc("owner.test"),
        amount: U128(7),
        memo: None,
    }]);
    let created = ModelEvent::ModelCreated {
        model_id: model(),
        token: acc(MODEL_TOKEN),
        owner: acc("owner.test"),
    };
    let mut chain = ChainBuilder::new(FIRST_HEIGHT);
    let blocks = [
        chain.block(&[(
            MODEL_TOKEN,
            vec![crowdfund.to_log_line(), mint.to_log_line()],
        )]),
        chain.block(&[(FACTORY, vec![created.to_log_line()])]),
    ];
    let metrics = Metrics::new().unwrap();
    let ingestor = Ingestor::new(scenario::contracts(), metrics.clone());
    ingestor.apply_block(&db, &blocks[0]).await.unwrap();
    let report = ingestor.apply_block(&db, &blocks[1]).await.unwrap();
    assert_eq!(
        report.applied, 2,
        "the announcement and the mint: {report:?}"
    );

    let row: (Option<String>, Option<i64>, String) = sqlx::query_as(
        "SELECT crowdfund_state, crowdfund_deadline_ns, total_supply FROM models
         WHERE model_id = $1",
    )
    .bind(model().as_str())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row, (None, None, amount::pad(7)));
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM pending_token_events").await,
        0
    );
    let reason: String = sqlx::query_scalar("SELECT reason FROM rejected_events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(reason.contains("deadline_ns"), "{reason}");
    let mut conn = db.pool.acquire().await.unwrap();
    assert_eq!(counter(&mut conn, "events_bad_value").await.unwrap(), 1);
    assert!(
        metrics
            .render()
            .contains("ecloud_indexer_bad_values_total{field=\"deadline_ns\"} 1")
    );
}
storage_test!(
    bad_held_token_event_on,
    a_bad_held_token_event_is_skipped_the_others_applied
);
