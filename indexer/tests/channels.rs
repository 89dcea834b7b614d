//! Payment channels (`ecloud_marketplace` 1.1.0 channel events): the indexer keeps one row
//! per channel (deposit, newest settled voucher, state, sums paid out, refund), every settled
//! voucher, and the payouts of settlements and closes, and serves them at `/v1/channels`.
//! Every test runs on SQLite and, with `ECLOUD_TEST_POSTGRES_URL`, on PostgreSQL.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use enclave_cloud_common::events::marketplace::ChannelCloseReason;
use enclave_cloud_common::events::{MarketplaceEvent, ModelEvent, Nep297};
use enclave_cloud_common::interfaces::marketplace::TokenRate;
use enclave_cloud_common::{Asset, ChannelId};
use http_body_util::BodyExt;
use indexer::api::{self, ApiContext};
use indexer::block::StreamerMessage;
use indexer::db::Db;
use indexer::db::amount;
use indexer::db::checkpoint::counter;
use indexer::fixture::ChainBuilder;
use indexer::fixture::scenario::{
    self, CHALLENGE_NS, CHANNEL_NODE, CHANNEL_USER, FACTORY, MARKETPLACE, MODEL, MODEL_TOKEN, NEAR,
    OPERATOR, REGISTRY, USDC, acc, channel_close_started, channel_closed, channel_opened,
    channel_settled, channel_topped_up, model,
};
use indexer::ingest::{BlockReport, Ingestor};
use indexer::metrics::Metrics;
use near_sdk::json_types::{U64, U128};
use protocol::indexer::{Channel, ChannelDetail, Page};
use serde_json::Value;
use tower::ServiceExt;

/// Applies `blocks` in order with one ingestor; the reports of each.
async fn ingest(db: &Db, blocks: &[StreamerMessage]) -> (Metrics, Vec<BlockReport>) {
    let metrics = Metrics::new().unwrap();
    let ingestor = Ingestor::new(scenario::contracts(), metrics.clone());
    let mut reports = Vec::new();
    for b in blocks {
        reports.push(ingestor.apply_block(db, b).await.unwrap());
    }
    (metrics, reports)
}

/// The columns of a channel row the tests look at, amounts parsed.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    state: String,
    deposit: u128,
    settled: u128,
    settlements: i64,
    paid: [u128; 3],
    refund: Option<u128>,
    close_ends_ns: Option<i64>,
    close_reason: Option<String>,
}

async fn channel_row(db: &Db, channel_id: i64) -> Row {
    type Raw = (
        String,
        String,
        String,
        i64,
        String,
        String,
        String,
        Option<String>,
        Option<i64>,
        Option<String>,
    );
    let r: Raw = sqlx::query_as(
        "SELECT state, deposit, settled, settlements, paid_provider, paid_royalty, paid_fee,
             refund, close_ends_ns, close_reason FROM channels WHERE channel_id = $1",
    )
    .bind(channel_id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let a = |s: &str| amount::parse("amount", s).unwrap();
    Row {
        state: r.0,
        deposit: a(&r.1),
        settled: a(&r.2),
        settlements: r.3,
        paid: [a(&r.4), a(&r.5), a(&r.6)],
        refund: r.7.as_deref().map(a),
        close_ends_ns: r.8,
        close_reason: r.9,
    }
}

/// (account, kind, asset, amount) of the payouts of a channel, in chain order.
async fn payouts(db: &Db, channel_id: i64) -> Vec<(String, String, String, u128)> {
    let rows: Vec<(String, String, String, String, Option<i64>)> = sqlx::query_as(
        "SELECT account, kind, asset, amount, node_id FROM payouts WHERE channel_id = $1
         ORDER BY seq, idx",
    )
    .bind(channel_id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(account, kind, asset, v, node)| {
            assert_eq!(
                node,
                Some(CHANNEL_NODE as i64),
                "a channel payout names its node"
            );
            (account, kind, asset, amount::parse("amount", &v).unwrap())
        })
        .collect()
}

fn legs(cost: u128) -> [u128; 3] {
    let s = scenario::settlement(cost, cost);
    [s.provider.0, s.royalty.0, s.protocol_fee.0]
}

fn add(a: [u128; 3], b: [u128; 3]) -> [u128; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

fn paid_out(channel_asset: &str, cost: u128) -> Vec<(String, String, String, u128)> {
    let [provider, royalty, fee] = legs(cost);
    [
        (OPERATOR, "provider", provider),
        (MODEL_TOKEN, "royalty", royalty),
        (MARKETPLACE, "protocol_fee", fee),
    ]
    .into_iter()
    .map(|(a, k, v)| (a.to_owned(), k.to_owned(), channel_asset.to_owned(), v))
    .collect()
}

/// A NEP-141 channel (USDC, 6 decimals, 2 USDC per NEAR at opening).
fn usdc_channel_opened(channel: u64, deposit: u128) -> MarketplaceEvent {
    let MarketplaceEvent::ChannelOpened {
        channel_id,
        user,
        node_id,
        operator,
        model_id,
        deposit: _,
        channel_key,
        price,
        challenge_period_ns,
        ..
    } = channel_opened(channel, 0)
    else {
        unreachable!("channel_opened makes a channel_opened event")
    };
    MarketplaceEvent::ChannelOpened {
        channel_id,
        user,
        node_id,
        operator,
        model_id,
        asset: Asset::Ft { token: acc(USDC) },
        deposit: U128(deposit),
        channel_key,
        price,
        token_rate: Some(TokenRate {
            units_per_near: U128(2_000_000),
        }),
        challenge_period_ns,
    }
}

/// Node 1 of op.test and the model's token, as every channel test starts.
fn setup(chain: &mut ChainBuilder) -> StreamerMessage {
    chain.block(&[
        (
            REGISTRY,
            vec![scenario::registered(CHANNEL_NODE).to_log_line()],
        ),
        (
            FACTORY,
            vec![
                ModelEvent::ModelCreated {
                    model_id: model(),
                    token: acc(MODEL_TOKEN),
                    owner: acc("owner.test"),
                }
                .to_log_line(),
            ],
        ),
    ])
}

fn market(chain: &mut ChainBuilder, events: &[MarketplaceEvent]) -> StreamerMessage {
    chain.block(&[(
        MARKETPLACE,
        events.iter().map(Nep297::to_log_line).collect(),
    )])
}

const FIRST: u128 = NEAR / 100;
const SECOND: u128 = 3 * NEAR / 100;

/// Channel 1 (NEAR) runs open, top-up, two settlements, the user's close and its end after
/// the challenge period; channel 2 (USDC) closes cooperatively with its final voucher. The
/// row, the settlements and the payouts follow each step.
async fn a_channel_through_its_life(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let ingestor = Ingestor::new(scenario::contracts(), Metrics::new().unwrap());
    let mut chain = ChainBuilder::new(FIRST_HEIGHT);
    let step = |b: StreamerMessage| {
        let ingestor = ingestor.clone();
        let db = db.clone();
        async move {
            let report = ingestor.apply_block(&db, &b).await.unwrap();
            assert_eq!(
                (report.orphan, report.bad_value, report.foreign),
                (0, 0, 0),
                "{report:?}"
            );
            report
        }
    };
    step(setup(&mut chain)).await;

    // Open.
    let opened = market(&mut chain, &[channel_opened(1, NEAR)]);
    let opened_height = i64::try_from(opened.height()).unwrap();
    step(opened).await;
    let mut expected = Row {
        state: "open".into(),
        deposit: NEAR,
        settled: 0,
        settlements: 0,
        paid: [0; 3],
        refund: None,
        close_ends_ns: None,
        close_reason: None,
    };
    assert_eq!(channel_row(&db, 1).await, expected);
    let stored: (
        String,
        i64,
        String,
        String,
        String,
        String,
        Option<String>,
        i64,
        i64,
    ) = sqlx::query_as(
        "SELECT user_id, node_id, operator, model_id, asset, output_per_million,
                 units_per_near, challenge_period_ns, opened_height FROM channels
             WHERE channel_id = 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        stored,
        (
            CHANNEL_USER.to_owned(),
            CHANNEL_NODE as i64,
            OPERATOR.to_owned(),
            MODEL.to_owned(),
            "near".to_owned(),
            amount::pad(2_000),
            None,
            CHALLENGE_NS as i64,
            opened_height
        )
    );

    // Top-up.
    step(market(
        &mut chain,
        &[channel_topped_up(1, NEAR / 2, 3 * NEAR / 2)],
    ))
    .await;
    expected.deposit = 3 * NEAR / 2;
    assert_eq!(channel_row(&db, 1).await, expected);

    // Two settlements: `settled` is the voucher's cumulative amount, the sums add up.
    step(market(&mut chain, &[channel_settled(1, FIRST, FIRST, 0)])).await;
    expected.settled = FIRST;
    expected.settlements = 1;
    expected.paid = legs(FIRST);
    assert_eq!(channel_row(&db, 1).await, expected);
    step(market(
        &mut chain,
        &[channel_settled(1, SECOND, SECOND - FIRST, 0)],
    ))
    .await;
    expected.settled = SECOND;
    expected.settlements = 2;
    expected.paid = add(legs(FIRST), legs(SECOND - FIRST));
    assert_eq!(channel_row(&db, 1).await, expected);

    // The user starts a unilateral close: closing until the challenge period ends.
    let ends_ns = 1_800_000_000_000_000_000u64;
    step(market(&mut chain, &[channel_close_started(1, ends_ns)])).await;
    expected.state = "closing".into();
    expected.close_ends_ns = Some(ends_ns as i64);
    assert_eq!(channel_row(&db, 1).await, expected);

    // After it, the close: the rest of the deposit goes back.
    let refund = 3 * NEAR / 2 - SECOND;
    step(market(
        &mut chain,
        &[channel_closed(
            1,
            ChannelCloseReason::Unilateral,
            SECOND,
            refund,
        )],
    ))
    .await;
    expected.state = "closed".into();
    expected.refund = Some(refund);
    expected.close_reason = Some("unilateral".into());
    assert_eq!(channel_row(&db, 1).await, expected);

    let mut want = paid_out("near", FIRST);
    want.extend(paid_out("near", SECOND - FIRST));
    want.push((CHANNEL_USER.into(), "refund".into(), "near".into(), refund));
    assert_eq!(payouts(&db, 1).await, want);
    let history: Vec<(String, String)> = sqlx::query_as(
        "SELECT settled, cost FROM channel_settlements WHERE channel_id = 1 ORDER BY seq",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        history,
        [
            (amount::pad(FIRST), amount::pad(FIRST)),
            (amount::pad(SECOND), amount::pad(SECOND - FIRST)),
        ]
    );

    // Channel 2 in USDC: opened and closed by the node with its final voucher, in one block
    // (the close's settlement carries the refund, which is paid once, with the close).
    let deposit = 5_000_000;
    let fin = 1_200_000;
    step(market(&mut chain, &[usdc_channel_opened(2, deposit)])).await;
    step(market(
        &mut chain,
        &[
            channel_settled(2, fin, fin, deposit - fin),
            channel_closed(2, ChannelCloseReason::Cooperative, fin, deposit - fin),
        ],
    ))
    .await;
    let asset = format!("ft:{USDC}");
    assert_eq!(
        channel_row(&db, 2).await,
        Row {
            state: "closed".into(),
            deposit,
            settled: fin,
            settlements: 1,
            paid: legs(fin),
            refund: Some(deposit - fin),
            close_ends_ns: None,
            close_reason: Some("cooperative".into()),
        }
    );
    let mut want = paid_out(&asset, fin);
    want.push((
        CHANNEL_USER.into(),
        "refund".into(),
        asset.clone(),
        deposit - fin,
    ));
    assert_eq!(payouts(&db, 2).await, want);
    let rate: Option<String> =
        sqlx::query_scalar("SELECT units_per_near FROM channels WHERE channel_id = 2")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(rate, Some(amount::pad(2_000_000)));

    // The running totals: the operator's earnings and the network's volume, per asset.
    let total = |name: String| {
        let db = db.clone();
        async move {
            let v: String = sqlx::query_scalar("SELECT value FROM totals WHERE name = $1")
                .bind(&name)
                .fetch_one(&db.pool)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            amount::parse("value", &v).unwrap()
        }
    };
    assert_eq!(total("volume:near".into()).await, SECOND);
    assert_eq!(total(format!("volume:{asset}")).await, fin);
    assert_eq!(
        total(format!("earned:{OPERATOR}:provider:near")).await,
        expected.paid[0]
    );
    assert_eq!(
        total(format!("earned:{CHANNEL_USER}:refund:{asset}")).await,
        deposit - fin
    );
}
storage_test!(a_channel_through_its_life_on, a_channel_through_its_life);

/// Events about channels the indexer never saw opened are orphans and write nothing; an id
/// opened a second time does not overwrite the first channel. Out-of-range values are
/// refused whole (the savepoint path): the other events of the block are applied.
async fn unknown_channels_reopened_ids_and_bad_values(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let mut chain = ChainBuilder::new(FIRST_HEIGHT);
    let huge = i64::MAX as u64 + 1;
    let too_long = match channel_opened(3, NEAR) {
        MarketplaceEvent::ChannelOpened {
            channel_id,
            user,
            node_id,
            operator,
            model_id,
            asset,
            deposit,
            channel_key,
            price,
            token_rate,
            ..
        } => MarketplaceEvent::ChannelOpened {
            channel_id,
            user,
            node_id,
            operator,
            model_id,
            asset,
            deposit,
            channel_key,
            price,
            token_rate,
            challenge_period_ns: U64(huge),
        },
        _ => unreachable!("channel_opened makes a channel_opened event"),
    };
    let blocks = [
        setup(&mut chain),
        market(
            &mut chain,
            &[
                channel_topped_up(9, 1, 2),
                channel_settled(9, 1, 1, 0),
                channel_close_started(9, 5),
                channel_closed(9, ChannelCloseReason::Unilateral, 0, 1),
                channel_opened(1, NEAR),
            ],
        ),
        market(
            &mut chain,
            &[
                channel_opened(1, 7),
                too_long,
                channel_settled(1, FIRST, FIRST, 0),
                MarketplaceEvent::ChannelToppedUp {
                    channel_id: ChannelId(huge),
                    amount: U128(1),
                    deposit: U128(1),
                },
            ],
        ),
    ];
    let (_, reports) = ingest(&db, &blocks).await;
    assert_eq!(
        (reports[1].applied, reports[1].orphan),
        (1, 4),
        "{:?}",
        reports[1]
    );
    assert_eq!(
        (reports[2].applied, reports[2].orphan, reports[2].bad_value),
        (1, 1, 2),
        "{:?}",
        reports[2]
    );
    let ids: Vec<i64> = sqlx::query_scalar("SELECT channel_id FROM channels ORDER BY channel_id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(ids, [1], "no row for unknown or refused channels");
    let row = channel_row(&db, 1).await;
    assert_eq!((row.deposit, row.settled), (NEAR, FIRST), "{row:?}");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM payouts WHERE channel_id = 9").await,
        0
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM channel_settlements").await,
        1
    );
    let mut conn = db.pool.acquire().await.unwrap();
    assert_eq!(counter(&mut conn, "events_orphan").await.unwrap(), 5);
}
storage_test!(
    unknown_channels_reopened_ids_and_bad_values_on,
    unknown_channels_reopened_ids_and_bad_values
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

fn ids(page: &Page<Channel>) -> Vec<&str> {
    page.items.iter().map(|c| c.channel_id.as_str()).collect()
}

/// The API over the fixture scenario's channels (1 open, 2 closing, 3 closed cooperatively,
/// all of carol.test to node 1): listing by user, node, operator, model and state, paging,
/// one channel with its settlements and events, and refusals.
async fn the_endpoints_serve_the_scenarios_channels(postgres: bool) {
    use scenario::Expect;
    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let blocks = scenario::blocks(FIRST_HEIGHT);
    let (metrics, _) = ingest(&db, &blocks).await;
    let app = api::router(ApiContext {
        db: db.clone(),
        status: status(),
        metrics,
        node_pages: Default::default(),
    });
    let page = |uri: String| {
        let app = app.clone();
        async move {
            let (code, body) = get(&app, &uri).await;
            assert_eq!(code, StatusCode::OK, "{uri}: {body}");
            serde_json::from_value::<Page<Channel>>(body).unwrap()
        }
    };

    let all = page("/v1/channels".into()).await;
    assert_eq!(ids(&all), ["3", "2", "1"], "newest first");
    assert_eq!(all.next_cursor, None);
    for filter in [
        format!("user={CHANNEL_USER}"),
        format!("node={CHANNEL_NODE}"),
        format!("operator={OPERATOR}"),
        format!("model={MODEL}"),
    ] {
        let got = page(format!("/v1/channels?{filter}")).await;
        assert_eq!(ids(&got), ["3", "2", "1"], "{filter}");
    }
    for filter in [
        "user=alice.test",
        "node=2",
        "operator=nobody.test",
        "model=other",
    ] {
        assert!(
            page(format!("/v1/channels?{filter}"))
                .await
                .items
                .is_empty(),
            "{filter}"
        );
    }
    for (state, want) in [("open", "1"), ("closing", "2"), ("closed", "3")] {
        let got = page(format!("/v1/channels?state={state}")).await;
        assert_eq!(ids(&got), [want], "{state}");
    }
    let first = page("/v1/channels?limit=2".into()).await;
    assert_eq!(ids(&first), ["3", "2"]);
    let cursor = first.next_cursor.unwrap();
    let rest = page(format!("/v1/channels?limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&rest), ["1"]);
    assert_eq!(rest.next_cursor, None);

    // The open channel: deposit after its top-up, two settlements, what is left.
    let one = &all.items[2];
    assert_eq!(one.state, "open");
    assert_eq!(one.deposit, Expect::CHANNEL_1_DEPOSIT.to_string());
    assert_eq!(one.settled, Expect::CHANNEL_1_SETTLED.to_string());
    assert_eq!(
        one.remaining,
        (Expect::CHANNEL_1_DEPOSIT - Expect::CHANNEL_1_SETTLED).to_string()
    );
    assert_eq!(one.settlement_count, 2);
    assert_eq!(one.price.output_per_million, "2000");
    assert_eq!(
        one.paid.provider,
        legs(Expect::CHANNEL_1_SETTLED)[0].to_string()
    );
    assert_eq!(
        (one.refund.as_deref(), one.close_reason.as_deref()),
        (None, None)
    );
    let closing = &all.items[1];
    assert_eq!(closing.state, "closing");
    let started_ns = blocks[blocks.len() - 1].block.header.timestamp_nanosec;
    assert_eq!(
        closing.close_ends_ns,
        Some((started_ns + CHALLENGE_NS).to_string())
    );
    let three = &all.items[0];
    assert_eq!(three.close_reason.as_deref(), Some("cooperative"));
    assert_eq!(three.refund, Some(Expect::CHANNEL_3_REFUND.to_string()));
    assert_eq!(three.remaining, Expect::CHANNEL_3_REFUND.to_string());

    let (code, body) = get(&app, "/v1/channels/1").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let detail: ChannelDetail = serde_json::from_value(body).unwrap();
    assert_eq!(&detail.channel, one);
    let settled: Vec<(&str, &str)> = detail
        .settlements
        .iter()
        .map(|s| (s.settled.as_str(), s.cost.as_str()))
        .collect();
    let first_cost = (11 * NEAR / 1_000).to_string();
    let second_cost = (Expect::CHANNEL_1_SETTLED - 11 * NEAR / 1_000).to_string();
    let total = Expect::CHANNEL_1_SETTLED.to_string();
    assert_eq!(
        settled,
        [
            (first_cost.as_str(), first_cost.as_str()),
            (total.as_str(), second_cost.as_str())
        ]
    );
    let events: Vec<&str> = detail.timeline.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "channel_opened",
            "channel_topped_up",
            "channel_settled",
            "channel_settled"
        ]
    );
    let (_, body) = get(&app, "/v1/channels/3").await;
    let events: Vec<&str> = body["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["channel_opened", "channel_settled", "channel_closed"]
    );

    for (uri, code, needle) in [
        ("/v1/channels/99", StatusCode::NOT_FOUND, "99"),
        ("/v1/channels/x", StatusCode::BAD_REQUEST, "id"),
        ("/v1/channels?state=gone", StatusCode::BAD_REQUEST, "state"),
        ("/v1/channels?node=x", StatusCode::BAD_REQUEST, "node"),
        (
            "/v1/channels?user=NOT%20AN%20ACCOUNT",
            StatusCode::BAD_REQUEST,
            "user",
        ),
        ("/v1/channels?cursor=x", StatusCode::BAD_REQUEST, "cursor"),
        ("/v1/channels?channel=1", StatusCode::BAD_REQUEST, "channel"),
    ] {
        let (got, body) = get(&app, uri).await;
        assert_eq!(got, code, "{uri}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(needle),
            "{uri}: {body}"
        );
    }
}
storage_test!(
    the_endpoints_serve_the_scenarios_channels_on,
    the_endpoints_serve_the_scenarios_channels
);
