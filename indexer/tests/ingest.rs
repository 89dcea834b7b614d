//! Fixture chain -> database: what is stored, restarts and crashes, refused events.
//! Every test runs on SQLite and, with `ECLOUD_TEST_POSTGRES_URL`, on PostgreSQL.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use common::*;
use indexer::db::amount;
use indexer::db::checkpoint::{self, counter};
use indexer::fixture::scenario::{self, Expect};
use indexer::ingest::{IngestError, Ingestor};
use indexer::metrics::Metrics;
use std::time::Duration;

async fn stores_the_scenario(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let blocks_dir = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir).unwrap();
    let blocks = write_scenario(&blocks_dir);
    let last = blocks.last().unwrap().height();
    let metrics = follow(&db, &blocks_dir, last).await;

    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM nodes").await,
        Expect::NODES
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM jobs").await, Expect::JOBS);
    let open: Vec<i64> =
        sqlx::query_scalar("SELECT job_id FROM jobs WHERE status = 'open' ORDER BY job_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(open, Expect::OPEN_JOBS.map(|j| j as i64));
    // Job 2's claim came from a failed receipt, a foreign contract and the wrong one of
    // ours: none of them may have claimed it.
    let job2: (String, Option<i64>) =
        sqlx::query_as("SELECT status, node_id FROM jobs WHERE job_id = 2")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(job2, ("cancelled".to_owned(), None));
    let timeline: Vec<String> = sqlx::query_scalar(
        "SELECT event FROM timeline WHERE entity = 'job' AND entity_id = 1 ORDER BY seq",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(timeline, ["job_submitted", "job_claimed", "job_settled"]);

    // Settlement legs: provider to the node's operator, royalty to the model token.
    let payouts: Vec<(String, String, String)> =
        sqlx::query_as("SELECT account, kind, amount FROM payouts WHERE job_id = 1 ORDER BY idx")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let s = scenario::settlement(Expect::SETTLED_COST, 5_000);
    let expected = [
        (scenario::OPERATOR, "provider", s.provider.0),
        (scenario::MODEL_TOKEN, "royalty", s.royalty.0),
        (scenario::MARKETPLACE, "protocol_fee", s.protocol_fee.0),
        (scenario::USER, "refund", s.refund.0),
    ];
    let got: Vec<(&str, &str, u128)> = payouts
        .iter()
        .map(|(a, k, v)| (a.as_str(), k.as_str(), amount::parse("amount", v).unwrap()))
        .collect();
    assert_eq!(got, expected);

    // Holders after mint 100 to a, transfer 30 to b.
    let balances: Vec<(String, String)> =
        sqlx::query_as("SELECT account, balance FROM balances WHERE token = $1 ORDER BY account")
            .bind(scenario::MODEL_TOKEN)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let balances: Vec<(&str, u128)> = balances
        .iter()
        .map(|(a, b)| (a.as_str(), amount::parse("balance", b).unwrap()))
        .collect();
    assert_eq!(
        balances,
        [("a.test", Expect::HOLDER_A), ("b.test", Expect::HOLDER_B)]
    );

    // Refused lines are counted (persistently and in metrics) and kept for inspection.
    let mut conn = db.pool.acquire().await.unwrap();
    assert_eq!(
        counter(&mut conn, "events_malformed").await.unwrap(),
        Expect::MALFORMED
    );
    assert_eq!(
        counter(&mut conn, "events_foreign").await.unwrap(),
        Expect::FOREIGN
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM rejected_events").await,
        Expect::MALFORMED
    );
    assert!(
        metrics
            .render()
            .contains("ecloud_indexer_events_rejected_total{reason=\"malformed\"} 2")
    );
    assert_eq!(metrics.skipped_heights.get(), 1);

    // The checkpoint is the last height, with the last block's hash.
    let cp = checkpoint::load(&mut conn).await.unwrap().unwrap();
    assert_eq!(cp.height, last);
    assert_eq!(cp.block_hash, blocks.last().unwrap().block.header.hash);
}
storage_test!(stores_the_scenario_on, stores_the_scenario);

async fn restart_in_the_middle_loses_and_doubles_nothing(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let blocks_dir = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir).unwrap();
    let blocks = write_scenario(&blocks_dir);
    let last = blocks.last().unwrap().height();

    let Some((reference, _)) = fresh_db(&dir.path().join("ref"), postgres).await else {
        return;
    };
    follow(&reference, &blocks_dir, last).await;

    // Stop after every height in turn, reopening the database each time.
    let Some((_, url)) = fresh_db(&dir.path().join("restarts"), postgres).await else {
        return;
    };
    for stop in FIRST_HEIGHT..=last {
        let db = indexer::db::Db::open(&url).await.unwrap();
        follow(&db, &blocks_dir, stop).await;
        db.pool.close().await;
    }
    let db = indexer::db::Db::open(&url).await.unwrap();
    assert_eq!(dump(&db).await, dump(&reference).await);
}
storage_test!(
    restart_in_the_middle_on,
    restart_in_the_middle_loses_and_doubles_nothing
);

async fn killed_mid_transaction_loses_and_doubles_nothing(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let blocks_dir = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir).unwrap();
    let blocks = write_scenario(&blocks_dir);
    let last = blocks.last().unwrap().height();
    let Some((reference, _)) = fresh_db(&dir.path().join("ref"), postgres).await else {
        return;
    };
    follow(&reference, &blocks_dir, last).await;

    // Abort the follower task at growing delays: wherever it is (inside a block's
    // transaction or between blocks), the next run must continue exactly where the last
    // commit left off.
    let Some((_, url)) = fresh_db(&dir.path().join("killed"), postgres).await else {
        return;
    };
    let mut delay_us = 50;
    let mut interrupted = 0;
    for _ in 0..200 {
        let db = indexer::db::Db::open(&url).await.unwrap();
        let mut conn = db.pool.acquire().await.unwrap();
        let done = checkpoint::load(&mut conn)
            .await
            .unwrap()
            .is_some_and(|c| c.height >= last);
        drop(conn);
        if done {
            break;
        }
        interrupted += 1;
        let dir2 = blocks_dir.clone();
        let db2 = db.clone();
        let task = tokio::spawn(async move { follow(&db2, &dir2, last).await });
        tokio::time::sleep(Duration::from_micros(delay_us)).await;
        task.abort();
        let _ = task.await;
        db.pool.close().await;
        delay_us = delay_us * 3 / 2 + 50;
    }
    // The kills must really have landed before the end, several times.
    assert!(interrupted > 3, "only {interrupted} runs were interrupted");
    let db = indexer::db::Db::open(&url).await.unwrap();
    assert_eq!(dump(&db).await, dump(&reference).await);
}
storage_test!(
    killed_mid_transaction_on,
    killed_mid_transaction_loses_and_doubles_nothing
);

async fn replays_and_gaps_are_refused(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let blocks = scenario::blocks(FIRST_HEIGHT);
    let ingestor = Ingestor::new(scenario::contracts(), Metrics::new().unwrap());
    ingestor.apply_block(&db, &blocks[0]).await.unwrap();
    let before = dump(&db).await;
    // The same block again: refused, nothing written.
    let err = ingestor.apply_block(&db, &blocks[0]).await.unwrap_err();
    assert!(matches!(err, IngestError::Replay { .. }), "{err}");
    // A block that does not link to the indexed one (blocks[2] follows a skipped height
    // after blocks[1]): refused, nothing written.
    let err = ingestor.apply_block(&db, &blocks[2]).await.unwrap_err();
    assert!(matches!(err, IngestError::Discontinuity { .. }), "{err}");
    assert_eq!(dump(&db).await, before);
}
storage_test!(replays_and_gaps_on, replays_and_gaps_are_refused);

/// A model token's `new` logs its manifest, crowdfund and first mint one block before the
/// factory's callback announces the token (the real contracts' order): nothing of it may be
/// lost. Events of accounts the factory could not have created are never kept.
async fn token_events_before_the_announcement_are_kept(postgres: bool) {
    use enclave_cloud_common::events::model::ModelManifest;
    use enclave_cloud_common::events::nep141::FtMint;
    use enclave_cloud_common::events::{ModelEvent, Nep141Event, Nep297};
    use indexer::fixture::ChainBuilder;
    use indexer::fixture::scenario::{FACTORY, MODEL_TOKEN, acc, model};
    use near_sdk::json_types::{U64, U128};

    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let manifest = ModelEvent::ManifestUpdated {
        model_id: model(),
        manifest: ModelManifest {
            name: "Llama 3 8B".into(),
            ..Default::default()
        },
    };
    let crowdfund = ModelEvent::CrowdfundStarted {
        goal: U128(100),
        token_price: U128(2),
        deadline_ns: U64(10),
        beneficiary: acc("trainer.test"),
    };
    let mint = Nep141Event::FtMint(vec![FtMint {
        owner_id: acc("owner.test"),
        amount: U128(7),
        memo: None,
    }]);
    let impostor = "llama-3-8b.evil.test";
    let mut chain = ChainBuilder::new(FIRST_HEIGHT);
    let blocks = [
        chain.block(&[
            (
                MODEL_TOKEN,
                vec![
                    manifest.to_log_line(),
                    crowdfund.to_log_line(),
                    mint.to_log_line(),
                ],
            ),
            (impostor, vec![manifest.to_log_line()]),
        ]),
        chain.block(&[(
            FACTORY,
            vec![
                ModelEvent::ModelCreated {
                    model_id: model(),
                    token: acc(MODEL_TOKEN),
                    owner: acc("owner.test"),
                }
                .to_log_line(),
            ],
        )]),
    ];
    let ingestor = Ingestor::new(scenario::contracts(), Metrics::new().unwrap());
    let first = ingestor.apply_block(&db, &blocks[0]).await.unwrap();
    assert_eq!(first.applied, 0, "nothing applied before the announcement");
    let second = ingestor.apply_block(&db, &blocks[1]).await.unwrap();
    assert_eq!(
        second.applied, 4,
        "the announcement and the three held events"
    );

    /// name, goal, token price, deadline, beneficiary, total supply
    type Metadata = (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<String>,
        String,
    );
    let row: Metadata = sqlx::query_as(
        "SELECT name, crowdfund_goal, crowdfund_token_price, crowdfund_deadline_ns,
                    crowdfund_beneficiary, total_supply
             FROM models WHERE model_id = $1",
    )
    .bind(model().as_str())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row.0.as_deref(), Some("Llama 3 8B"));
    assert_eq!(row.1, Some(amount::pad(100)));
    assert_eq!(row.2, Some(amount::pad(2)));
    assert_eq!(row.3, Some(10));
    assert_eq!(row.4.as_deref(), Some("trainer.test"));
    assert_eq!(
        row.5,
        amount::pad(7),
        "the first mint counted in the supply"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM pending_token_events").await,
        0,
        "held events are applied once and forgotten; the impostor's were never held"
    );
}
storage_test!(
    token_events_before_announcement_on,
    token_events_before_the_announcement_are_kept
);

/// Audit finding 6: a slash announces the operator's standing once (`under_staked`) instead
/// of a status event per node. Every active node of that operator must show inactive after
/// that one event; its other nodes keep their status, other operators' nodes are untouched,
/// and the stake ledger follows the registry (bonded first, then unbonding).
async fn an_under_staked_operator_s_nodes_turn_inactive(postgres: bool) {
    use enclave_cloud_common::events::{Nep297, RegistryEvent};
    use enclave_cloud_common::{NodeId, NodeStatus};
    use indexer::fixture::ChainBuilder;
    use indexer::fixture::scenario::{OPERATOR, REGISTRY, acc, registered};
    use near_sdk::NearToken;
    use near_sdk::json_types::U64;

    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let other = "other-op.test";
    let yocto = NearToken::from_yoctonear;
    let mut other_node = registered(9);
    if let RegistryEvent::NodeRegistered { operator, .. } = &mut other_node {
        *operator = acc(other);
    }
    let slash = |amount: u128, stake: u128, under_staked: bool| RegistryEvent::NodeSlashed {
        node_id: NodeId(1),
        operator: acc(OPERATOR),
        amount: yocto(amount),
        beneficiary: acc("alice.test"),
        stake: Some(yocto(stake)),
        under_staked,
    };
    let mut setup: Vec<String> = [
        RegistryEvent::StakeDeposited {
            operator: acc(OPERATOR),
            amount: yocto(100),
            total: yocto(100),
        },
        RegistryEvent::UnstakeRequested {
            operator: acc(OPERATOR),
            amount: yocto(30),
            unlocks_at_ns: U64(1),
        },
        other_node,
    ]
    .iter()
    .map(Nep297::to_log_line)
    .collect();
    setup.extend((1..=4).map(|n| registered(n).to_log_line()));
    setup.push(
        RegistryEvent::NodeStatusChanged {
            node_id: NodeId(4),
            status: NodeStatus::Expired,
        }
        .to_log_line(),
    );
    let mut chain = ChainBuilder::new(FIRST_HEIGHT);
    let blocks = [
        chain.block(&[(REGISTRY, setup)]),
        // Still covered: nothing changes status.
        chain.block(&[(REGISTRY, vec![slash(10, 60, false).to_log_line()])]),
        // Takes the remaining 60 bonded and 5 unbonding: under-staked.
        chain.block(&[(REGISTRY, vec![slash(65, 0, true).to_log_line()])]),
    ];
    let ingestor = Ingestor::new(scenario::contracts(), Metrics::new().unwrap());
    let statuses = || async {
        sqlx::query_as::<_, (i64, String)>("SELECT node_id, status FROM nodes ORDER BY node_id")
            .fetch_all(&db.pool)
            .await
            .unwrap()
    };
    let stake = |operator: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_as::<_, (String, String, String)>(
                "SELECT staked, unstaking, slashed FROM operators WHERE operator = $1",
            )
            .bind(operator)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    let pad = |v: u128| amount::pad(v);

    ingestor.apply_block(&db, &blocks[0]).await.unwrap();
    ingestor.apply_block(&db, &blocks[1]).await.unwrap();
    let all_active = |expired: i64| {
        [1, 2, 3, 4, 9].map(|n| {
            let status = if n == expired { "expired" } else { "active" };
            (n, status.to_owned())
        })
    };
    assert_eq!(statuses().await, all_active(4));
    assert_eq!(stake(OPERATOR).await, s(&pad(60), &pad(30), &pad(10)));

    ingestor.apply_block(&db, &blocks[2]).await.unwrap();
    let expected: Vec<(i64, String)> = [
        (1, "inactive"),
        (2, "inactive"),
        (3, "inactive"),
        (4, "expired"),
        (9, "active"),
    ]
    .map(|(n, st)| (n, st.to_owned()))
    .into();
    assert_eq!(statuses().await, expected);
    assert_eq!(stake(OPERATOR).await, s(&pad(0), &pad(25), &pad(75)));
    // The history has one row per node that changed.
    let history: Vec<(i64, String)> = sqlx::query_as(
        "SELECT node_id, status FROM node_status_history WHERE status = 'inactive'
         ORDER BY node_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(history, expected[..3].to_vec());
}
storage_test!(
    under_staked_operator_on,
    an_under_staked_operator_s_nodes_turn_inactive
);
