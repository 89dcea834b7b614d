//! The REST API over the fixture scenario: every endpoint, its errors, the OpenAPI
//! document, CORS, metrics and the worker feed (SSE and pages).
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use http_body_util::BodyExt;
use indexer::api::{self, ApiContext};
use indexer::fixture::scenario::{self, Expect};
use indexer::fixture::{ChainBuilder, write_block};
use indexer::follower::ChainStatus;
use indexer::source::FixtureSource;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tower::ServiceExt;

struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
    status: Arc<ChainStatus>,
    node_pages: Arc<indexer::api::page_cache::PageCache>,
}

async fn indexed_scenario(postgres: bool) -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = fresh_db(dir.path(), postgres).await?;
    let blocks_dir = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir).unwrap();
    let blocks = write_scenario(&blocks_dir);
    let metrics = follow(&db, &blocks_dir, blocks.last().unwrap().height()).await;
    let status = status();
    status
        .head
        .store(blocks.last().unwrap().height() + 3, Ordering::Relaxed);
    let node_pages = Arc::new(indexer::api::page_cache::PageCache::default());
    // The pages' network view as the binary configures it; no bundle (`/` says how to build it).
    let site = api::site::Site {
        dir: None,
        network: Some(protocol::indexer::Network {
            rpc_url: Some("http://127.0.0.1:3030".into()),
            network_id: "localnet".into(),
            registry: scenario::REGISTRY.into(),
            marketplace: scenario::MARKETPLACE.into(),
            factory: Some(scenario::FACTORY.into()),
            payment_tokens: vec![scenario::USDC.into()],
            methods: api::site::contract_methods(),
        }),
    };
    let app = api::router_with_site(
        ApiContext {
            db,
            status: status.clone(),
            metrics,
            node_pages: node_pages.clone(),
        },
        site,
    );
    Some(Fixture {
        _dir: dir,
        app,
        status,
        node_pages,
    })
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
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

async fn ok(app: &Router, uri: &str) -> Value {
    let (status, body) = get(app, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    body
}

/// Asserts a JSON error with the given status and code whose message mentions `needle`.
async fn err(app: &Router, uri: &str, status: StatusCode, code: &str, needle: &str) {
    let (got, body) = get(app, uri).await;
    assert_eq!(got, status, "{uri}: {body}");
    assert_eq!(body["error"], code, "{uri}: {body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "{uri}: '{message}' should mention '{needle}'"
    );
}

fn ids(page: &Value, key: &str) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[key].as_str().unwrap().to_owned())
        .collect()
}

async fn nodes_filter_sort_and_paginate(postgres: bool) {
    let Some(f) = indexed_scenario(postgres).await else {
        return;
    };
    let all = ok(&f.app, "/v1/nodes").await;
    assert_eq!(ids(&all, "node_id"), ["1", "2"]);
    assert_eq!(all["next_cursor"], Value::Null);
    let n1 = &all["items"][0];
    assert_eq!(n1["gpus"][0]["model"], "H100");
    assert_eq!(n1["prices"][0]["output_per_million"], "2000");
    assert_eq!(n1["region"], "eu");

    let by_price = ok(&f.app, "/v1/nodes?sort=price").await;
    assert_eq!(ids(&by_price, "node_id"), ["2", "1"]);
    let first = ok(&f.app, "/v1/nodes?sort=price&limit=1").await;
    assert_eq!(ids(&first, "node_id"), ["2"]);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = ok(
        &f.app,
        &format!("/v1/nodes?sort=price&limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(ids(&second, "node_id"), ["1"]);
    assert_eq!(second["next_cursor"], Value::Null);
    let page1 = ok(&f.app, "/v1/nodes?limit=1").await;
    assert_eq!(page1["next_cursor"], "1");
    assert_eq!(
        ids(&ok(&f.app, "/v1/nodes?limit=1&cursor=1").await, "node_id"),
        ["2"]
    );

    for (query, expect) in [
        ("gpu=H200", vec!["2"]),
        ("region=eu", vec!["1"]),
        ("status=active", vec!["1", "2"]),
        ("status=inactive", vec![]),
        ("max_price=1500", vec!["2"]),
        ("model=llama-3-8b&max_price=2000&sort=price", vec!["2", "1"]),
        ("model=other-model", vec![]),
        ("model=llama-3-8b&max_price=1500", vec!["2"]),
        ("model=llama-3-8b", vec!["1", "2"]),
    ] {
        let page = ok(&f.app, &format!("/v1/nodes?{query}")).await;
        assert_eq!(ids(&page, "node_id"), expect, "{query}");
    }

    let detail = ok(&f.app, "/v1/nodes/1").await;
    assert_eq!(detail["node_id"], "1");
    let history: Vec<&str> = detail["status_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["active", "inactive", "active"]);
    assert_eq!(
        detail["operator_stake"]["staked"],
        "10000000000000000000000000"
    );
    assert_eq!(detail["last_heartbeat_ns"], "77");
}

async fn bad_parameters_are_json_400s_and_missing_things_404s(postgres: bool) {
    let Some(f) = indexed_scenario(postgres).await else {
        return;
    };
    let bad = StatusCode::BAD_REQUEST;
    err(
        &f.app,
        "/v1/nodes?status=sleeping",
        bad,
        "bad_parameter",
        "'sleeping'",
    )
    .await;
    err(
        &f.app,
        "/v1/nodes?model=Not_A_Model",
        bad,
        "bad_parameter",
        "model",
    )
    .await;
    err(
        &f.app,
        "/v1/nodes?max_price=-1",
        bad,
        "bad_parameter",
        "max_price",
    )
    .await;
    err(
        &f.app,
        "/v1/nodes?sort=name",
        bad,
        "bad_parameter",
        "'name'",
    )
    .await;
    err(&f.app, "/v1/nodes?limit=0", bad, "bad_parameter", "limit").await;
    err(&f.app, "/v1/nodes?limit=abc", bad, "bad_parameter", "limit").await;
    err(
        &f.app,
        "/v1/nodes?colour=red",
        bad,
        "bad_parameter",
        "colour",
    )
    .await;
    err(&f.app, "/v1/nodes?cursor=zz", bad, "bad_cursor", "zz").await;
    err(
        &f.app,
        "/v1/nodes?sort=price&cursor=12-1",
        bad,
        "bad_cursor",
        "12-1",
    )
    .await;
    err(&f.app, "/v1/nodes/abc", bad, "bad_parameter", "'abc'").await;
    err(
        &f.app,
        "/v1/nodes/99",
        StatusCode::NOT_FOUND,
        "not_found",
        "node '99'",
    )
    .await;
    err(
        &f.app,
        "/v1/jobs?user=NOT%20AN%20ACCOUNT",
        bad,
        "bad_parameter",
        "user",
    )
    .await;
    err(
        &f.app,
        "/v1/jobs?status=done",
        bad,
        "bad_parameter",
        "'done'",
    )
    .await;
    err(&f.app, "/v1/jobs?node=x", bad, "bad_parameter", "node").await;
    err(&f.app, "/v1/jobs?cursor=-5", bad, "bad_cursor", "-5").await;
    err(&f.app, "/v1/jobs/1.5", bad, "bad_parameter", "'1.5'").await;
    err(
        &f.app,
        "/v1/jobs/42",
        StatusCode::NOT_FOUND,
        "not_found",
        "job '42'",
    )
    .await;
    err(&f.app, "/v1/requests/x", bad, "bad_parameter", "'x'").await;
    err(
        &f.app,
        "/v1/requests/9",
        StatusCode::NOT_FOUND,
        "not_found",
        "request '9'",
    )
    .await;
    err(&f.app, "/v1/models/UPPER", bad, "bad_parameter", "'UPPER'").await;
    err(
        &f.app,
        "/v1/models/no-such-model",
        StatusCode::NOT_FOUND,
        "not_found",
        "no-such-model",
    )
    .await;
    err(&f.app, "/v1/models?cursor=Bad!", bad, "bad_cursor", "Bad!").await;
    err(
        &f.app,
        "/v1/accounts/Bad!Account",
        bad,
        "bad_parameter",
        "Bad!Account",
    )
    .await;
    err(
        &f.app,
        "/v1/nodes/2/offers?after=x",
        bad,
        "bad_parameter",
        "after",
    )
    .await;
    err(
        &f.app,
        "/v1/nodes/2/offers?limit=1000",
        bad,
        "bad_parameter",
        "limit",
    )
    .await;
    err(
        &f.app,
        "/v1/nodes/77/offers",
        StatusCode::NOT_FOUND,
        "not_found",
        "node '77'",
    )
    .await;
    err(
        &f.app,
        "/v1/nodes/77/feed",
        StatusCode::NOT_FOUND,
        "not_found",
        "node '77'",
    )
    .await;
    err(
        &f.app,
        "/v1/nope",
        StatusCode::NOT_FOUND,
        "not_found",
        "/v1/nope",
    )
    .await;
    let resp = f
        .app
        .clone()
        .oneshot(Request::post("/v1/nodes").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let resp = f
        .app
        .clone()
        .oneshot(
            Request::get("/v1/nodes/2/feed")
                .header("last-event-id", "later")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

async fn jobs_and_requests_with_timelines(postgres: bool) {
    let Some(f) = indexed_scenario(postgres).await else {
        return;
    };
    let all = ok(&f.app, "/v1/jobs").await;
    assert_eq!(ids(&all, "job_id"), ["4", "3", "2", "1"], "newest first");
    let page = ok(&f.app, "/v1/jobs?limit=3").await;
    assert_eq!(page["next_cursor"], "2");
    assert_eq!(
        ids(&ok(&f.app, "/v1/jobs?limit=3&cursor=2").await, "job_id"),
        ["1"]
    );
    assert_eq!(
        ids(&ok(&f.app, "/v1/jobs?status=open").await, "job_id"),
        ["4", "3"]
    );
    assert_eq!(
        ids(&ok(&f.app, "/v1/jobs?node=2").await, "job_id"),
        ["4", "1"]
    );
    assert_eq!(
        ids(
            &ok(&f.app, &format!("/v1/jobs?user={}", scenario::USER)).await,
            "job_id"
        )
        .len(),
        4
    );
    assert_eq!(
        ids(&ok(&f.app, "/v1/jobs?user=nobody.test").await, "job_id").len(),
        0
    );

    let job = ok(&f.app, "/v1/jobs/1").await;
    assert_eq!(job["status"], "settled");
    assert_eq!(job["node_id"], "2");
    assert_eq!(job["settlement"]["cost"], Expect::SETTLED_COST.to_string());
    assert_eq!(job["usage"]["output_tokens"], 20);
    assert_eq!(job["output"]["kind"], "remote");
    let events: Vec<&str> = job["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["job_submitted", "job_claimed", "job_settled"]);
    assert_eq!(job["timeline"][1]["data"]["node_id"], "2");
    let cancelled = ok(&f.app, "/v1/jobs/2").await;
    assert_eq!(
        (
            cancelled["status"].as_str(),
            cancelled["cancel_reason"].as_str()
        ),
        (Some("cancelled"), Some("unclaimed"))
    );
    let named = ok(&f.app, "/v1/jobs/4").await;
    assert_eq!(named["target"]["kind"], "node");
    assert_eq!(named["target"]["node_id"], "2");

    let request = ok(&f.app, "/v1/requests/1").await;
    assert_eq!(request["status"], "pending");
    assert_eq!(request["caller"], scenario::AGENT);
    assert_eq!(request["timeline"][0]["event"], "request_created");
}

async fn models_accounts_stats_status(postgres: bool) {
    let Some(f) = indexed_scenario(postgres).await else {
        return;
    };
    let models = ok(&f.app, "/v1/models").await;
    assert_eq!(ids(&models, "model_id"), [scenario::MODEL]);
    let m = &models["items"][0];
    assert_eq!(m["token"], scenario::MODEL_TOKEN);
    assert_eq!(m["holders"], 2);
    assert_eq!(m["total_supply"], "100");
    assert_eq!(m["crowdfund"]["state"], "succeeded");
    assert_eq!(m["crowdfund"]["raised"], "100");

    let detail = ok(&f.app, &format!("/v1/models/{}", scenario::MODEL)).await;
    assert_eq!(detail["manifest"]["name"], "Llama 3 8B");
    assert_eq!(detail["name"], "Llama 3 8B");
    let holders: Vec<(String, String)> = detail["top_holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["account"].as_str().unwrap().into(),
                h["balance"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        holders,
        [
            ("a.test".into(), Expect::HOLDER_A.to_string()),
            ("b.test".into(), Expect::HOLDER_B.to_string())
        ]
    );
    assert_eq!(detail["revenue"][0]["kind"], "deposit");
    assert_eq!(detail["revenue"][0]["amount"], "100");
    assert_eq!(detail["recent_revenue"].as_array().unwrap().len(), 1);

    let user = ok(&f.app, &format!("/v1/accounts/{}", scenario::USER)).await;
    assert_eq!(user["jobs_submitted"], 4);
    assert_eq!(user["recent_jobs"].as_array().unwrap().len(), 4);
    let s = scenario::settlement(Expect::SETTLED_COST, 5_000);
    let refunds = &user["earnings"].as_array().unwrap()[0];
    assert_eq!(refunds["kind"], "refund");
    // Refunds: 4,000 from job 1's settlement and 5,000 from job 2's cancellation.
    assert_eq!(refunds["amount"], (s.refund.0 + 5_000).to_string());
    let operator = ok(&f.app, &format!("/v1/accounts/{}", scenario::OPERATOR)).await;
    assert_eq!(operator["nodes"], serde_json::json!(["1", "2"]));
    assert_eq!(operator["earnings"][0]["kind"], "provider");
    // Job 1's provider share and that of the channels' settlements (all of whose costs split
    // exactly, so their shares sum to the share of their sum).
    let channels = scenario::settlement(Expect::CHANNEL_COST, Expect::CHANNEL_COST);
    assert_eq!(
        operator["earnings"][0]["amount"],
        (s.provider.0 + channels.provider.0).to_string()
    );
    let holder = ok(&f.app, "/v1/accounts/a.test").await;
    assert_eq!(holder["holdings"][0]["model_id"], scenario::MODEL);
    assert_eq!(
        holder["holdings"][0]["balance"],
        Expect::HOLDER_A.to_string()
    );
    let nobody = ok(&f.app, "/v1/accounts/nobody.test").await;
    assert_eq!(nobody["jobs_submitted"], 0);

    let stats = ok(&f.app, "/v1/stats").await;
    assert_eq!(stats["nodes"]["active"], 2);
    assert_eq!(stats["jobs"]["open"], 2);
    assert_eq!(stats["jobs"]["settled"], 1);
    assert_eq!(stats["requests"]["pending"], 1);
    assert_eq!(stats["models"], 1);
    assert_eq!(
        stats["totals"]["volume:near"],
        (Expect::SETTLED_COST + Expect::CHANNEL_COST).to_string()
    );

    let status = ok(&f.app, "/v1/status").await;
    let indexed = status["indexed_height"].as_u64().unwrap();
    assert_eq!(status["chain_head"].as_u64().unwrap(), indexed + 3);
    assert_eq!(status["lag"], 3);
    assert_eq!(status["events_malformed"], Expect::MALFORMED);
    assert_eq!(status["events_foreign"], Expect::FOREIGN);
    assert!(status["events_applied"].as_i64().unwrap() > 20);
    let _ = &f.status;
}

/// The scenario's governance: the registry's change waits, the marketplace's (proposed while
/// its delay was 0) was applied in the same receipt.
async fn governance_changes_of_the_scenario(postgres: bool) {
    let Some(f) = indexed_scenario(postgres).await else {
        return;
    };
    let all = ok(&f.app, "/v1/governance").await;
    let items = all["items"].as_array().unwrap();
    let keys: Vec<(&str, &str, &str)> = items
        .iter()
        .map(|c| {
            (
                c["contract"].as_str().unwrap(),
                c["change_id"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            (scenario::MARKETPLACE, "1", "applied"),
            (scenario::REGISTRY, "1", "pending"),
        ]
    );
    let applied = &items[0];
    assert_eq!(
        applied["change"],
        serde_json::json!({ "set_delay": { "delay_ns": "3600000000000" } })
    );
    assert_eq!(applied["proposed_by"], scenario::GOVERNOR);
    assert_eq!(applied["resolved_height"], applied["proposed_height"]);
    assert_eq!(items[1]["resolved_height"], Value::Null);
    let pending = ok(
        &f.app,
        "/v1/governance?status=pending&contract=registry.test",
    )
    .await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 1, "{pending}");
}
storage_test!(
    governance_changes_of_the_scenario_on,
    governance_changes_of_the_scenario
);

async fn openapi_metrics_and_cors(postgres: bool) {
    let Some(f) = indexed_scenario(postgres).await else {
        return;
    };
    let doc = ok(&f.app, "/openapi.json").await;
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    for route in [
        "/v1/nodes",
        "/v1/nodes/{id}",
        "/v1/nodes/{id}/feed",
        "/v1/nodes/{id}/offers",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/requests/{id}",
        "/v1/channels",
        "/v1/channels/{id}",
        "/v1/models",
        "/v1/models/{id}",
        "/v1/accounts/{id}",
        "/v1/governance",
        "/v1/stats",
        "/v1/status",
        "/v1/series",
        "/v1/operators/{id}",
        "/v1/models/{id}/grants",
        "/v1/search",
        "/v1/events",
        "/v1/network",
    ] {
        assert!(
            paths.iter().any(|p| *p == route),
            "{route} missing from the OpenAPI document"
        );
    }
    // Every documented path answers (with ids that exist), so the document matches the code.
    for path in &paths {
        let concrete = path.replace(
            "{id}",
            if path.starts_with("/v1/models") {
                scenario::MODEL
            } else if path.starts_with("/v1/accounts") {
                "a.test"
            } else if path.starts_with("/v1/operators") {
                scenario::OPERATOR
            } else {
                "1"
            },
        );
        if concrete.ends_with("/feed") || concrete == "/v1/events" {
            continue; // an endless stream; covered by the feed and browser tests
        }
        // The routes with a required parameter.
        let concrete = match concrete.as_str() {
            "/v1/series" => "/v1/series?metric=jobs".to_owned(),
            "/v1/search" => "/v1/search?q=op.test".to_owned(),
            _ => concrete,
        };
        ok(&f.app, &concrete).await;
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    // The checked-in copy is the published contract: regenerate it with
    // `UPDATE_OPENAPI=1 cargo test -p indexer --test api` when the API changes on purpose.
    let pretty = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    let checked_in = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(checked_in, &pretty).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(checked_in).unwrap(),
        pretty,
        "openapi.json is stale"
    );

    // Without a bundle (an API-only router) `/` says how to build the explorer pages
    // (tests/browser.rs serves and drives the real ones).
    let page = f
        .app
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    let html = String::from_utf8(
        page.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(html.contains("explorer/build.sh"), "{html}");
    // The read-only views the pages use.
    for endpoint in [
        "/v1/series?metric=jobs",
        "/v1/series?metric=volume&buckets=10",
        "/v1/series?metric=gpus",
        "/v1/search?q=1",
    ] {
        ok(&f.app, endpoint).await;
    }

    ok(&f.app, "/v1/nodes").await;
    let resp = f
        .app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("ecloud_indexer_http_requests_total{route=\"/v1/nodes\",status=\"2xx\"}"),
        "{text}"
    );
    assert!(text.contains("ecloud_indexer_blocks_total"), "{text}");

    let resp = f
        .app
        .clone()
        .oneshot(
            Request::get("/v1/nodes")
                .header(header::ORIGIN, "https://explorer.example")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}

async fn offers_page_what_each_node_may_take(postgres: bool) {
    let Some(f) = indexed_scenario(postgres).await else {
        return;
    };
    // Node 2 (1,000/M, us, H200): open job 3 (ceiling 1,500), job 4 named to it, request 1.
    let page = ok(&f.app, "/v1/nodes/2/offers").await;
    let kinds: Vec<(String, Option<String>)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().into(),
                i["job"]["job_id"].as_str().map(Into::into),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("job".into(), Some("3".into())),
            ("job".into(), Some("4".into())),
            ("request".into(), None)
        ]
    );
    // Node 1 (2,000/M) is above job 3's ceiling and job 4 is not its: only the request.
    let page = ok(&f.app, "/v1/nodes/1/offers").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["kind"], "request");
    // Paging by cursor.
    let first = ok(&f.app, "/v1/nodes/2/offers?limit=2").await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let rest = ok(&f.app, &format!("/v1/nodes/2/offers?cursor={cursor}")).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["kind"], "request");
    let after = ok(&f.app, &format!("/v1/nodes/2/offers?after={cursor}")).await;
    assert_eq!(after["items"], rest["items"]);
}

/// Reads SSE events from a streaming body until `n` events (not keep-alive comments)
/// arrived; returns `(id, event, data)` each.
async fn read_events(body: &mut Body, n: usize) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    while out.len() < n {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("feed event within 10 s")
            .expect("stream open")
            .unwrap();
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.push_str(std::str::from_utf8(&data).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let chunk: String = buf.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (String::new(), String::new(), Value::Null);
            for line in chunk.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = serde_json::from_str(v.trim()).unwrap();
                }
            }
            if !id.is_empty() {
                out.push((id, event, data));
            }
        }
    }
    out
}

async fn feed_streams_new_work_and_resumes_with_last_event_id(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let blocks_dir = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir).unwrap();
    let blocks = write_scenario(&blocks_dir);
    let last = blocks.last().unwrap().height();
    let follower = follower(FixtureSource::new(&blocks_dir), &db, None);
    let (metrics, status) = (follower.metrics.clone(), follower.status.clone());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let following = tokio::spawn(follower.run(stop_rx));
    let app = api::router(ApiContext {
        db,
        status: status.clone(),
        metrics: metrics.clone(),
        node_pages: Default::default(),
    });

    // The node must be indexed before its feed exists.
    let mut indexed = status.indexed.subscribe();
    tokio::time::timeout(Duration::from_secs(30), indexed.wait_for(|h| *h >= last))
        .await
        .unwrap()
        .unwrap();
    let resp = app
        .clone()
        .oneshot(
            Request::get("/v1/nodes/2/feed")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = resp.into_body();
    // Everything open when we connected.
    let first = read_events(&mut body, 3).await;
    let kinds: Vec<&str> = first.iter().map(|(_, e, _)| e.as_str()).collect();
    assert_eq!(kinds, ["job", "job", "request"]);
    assert_eq!(first[0].2["job"]["job_id"], "3");
    assert_eq!(first[1].2["job"]["job_id"], "4");
    assert_eq!(metrics.feed_subscribers.get(), 1);

    // A new block with a job for any node: delivered as soon as it is committed.
    let mut chain = ChainBuilder::new(last + 1);
    // Link to the scenario's last block.
    let mut next = chain.block(&[(
        scenario::MARKETPLACE,
        vec![enclave_cloud_common::events::Nep297::to_log_line(
            &scenario::submitted(5, scenario::any_target(None), 9),
        )],
    )]);
    next.block.header.prev_hash = blocks.last().unwrap().block.header.hash.clone();
    write_block(&blocks_dir, &next).unwrap();
    let new = read_events(&mut body, 1).await;
    assert_eq!(new[0].2["job"]["job_id"], "5");
    drop(body);

    // Resuming after job 4 replays only what came after it.
    let resume = app
        .clone()
        .oneshot(
            Request::get("/v1/nodes/2/feed")
                .header("last-event-id", first[1].0.as_str())
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = resume.into_body();
    let resumed = read_events(&mut body, 2).await;
    assert_eq!(resumed[0].1, "request");
    assert_eq!(resumed[1].2["job"]["job_id"], "5");
    drop(body);
    stop.send(true).unwrap();
    following.await.unwrap().unwrap();
}

/// Every node of every listing is exactly the node `/v1/nodes/{id}` shows (the listing is
/// rendered by SQLite itself, the detail by the structs): several GPUs and prices, added out
/// of order, a zero and the largest amount, optional fields set and unset, an unpriced node.
async fn listed_nodes_match_their_detail(postgres: bool) {
    use enclave_cloud_common::events::{Nep297, RegistryEvent};
    use enclave_cloud_common::{GpuInfo, Hash32, ModelPrice, NodeId};
    use near_sdk::json_types::U128;

    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let gpu = |node: u64, byte: u8, vbios: Option<&str>| RegistryEvent::GpuAdded {
        node_id: NodeId(node),
        gpu: GpuInfo {
            model: format!("G{byte}"),
            device_id: Hash32([byte; 32]),
            driver_version: Some("550.54.14".into()),
            vbios_version: vbios.map(str::to_owned),
        },
    };
    let price = |model: &str, input: u128, output: u128| ModelPrice {
        model_id: model.parse().unwrap(),
        input_per_million: U128(input),
        output_per_million: U128(output),
    };
    let mut logs: Vec<String> = (1..=3)
        .map(|n| scenario::registered(n).to_log_line())
        .collect();
    for e in [
        gpu(1, 9, None),
        gpu(1, 1, Some("96.00")),
        gpu(1, 5, None),
        gpu(2, 3, None),
    ] {
        logs.push(e.to_log_line());
    }
    logs.push(
        RegistryEvent::NodeUpdated {
            node_id: NodeId(1),
            endpoint: None,
            region: Some("eu".into()),
            prices: vec![
                price("zeta-model", u128::MAX, 0),
                price("alpha-model", 0, 7),
            ],
            capacity: 3,
        }
        .to_log_line(),
    );
    let blocks_dir = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir).unwrap();
    let mut chain = ChainBuilder::new(FIRST_HEIGHT);
    let block = chain.block(&[(scenario::REGISTRY, logs)]);
    write_block(&blocks_dir, &block).unwrap();
    follow(&db, &blocks_dir, block.height()).await;
    let app = api::router(ApiContext {
        db,
        status: status(),
        metrics: indexer::metrics::Metrics::new().unwrap(),
        node_pages: Default::default(),
    });

    let mut seen = 0;
    for query in [
        "",
        "?sort=price",
        "?model=zeta-model&sort=price",
        "?gpu=G3&limit=1",
    ] {
        let page = ok(&app, &format!("/v1/nodes{query}")).await;
        for item in page["items"].as_array().unwrap() {
            let id = item["node_id"].as_str().unwrap();
            let mut detail = ok(&app, &format!("/v1/nodes/{id}")).await;
            for key in ["status_history", "operator_stake", "key_grants"] {
                detail.as_object_mut().unwrap().remove(key).unwrap();
            }
            assert_eq!(item, &detail, "{query}");
            seen += 1;
        }
    }
    assert_eq!(seen, 3 + 3 + 1 + 1);
    let node1 = ok(&app, "/v1/nodes/1").await;
    let devices: Vec<&str> = node1["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| &g["device_id"].as_str().unwrap()[..2])
        .collect();
    assert_eq!(devices, ["01", "05", "09"]);
    assert_eq!(node1["gpus"][0]["vbios_version"], "96.00");
    assert_eq!(node1["prices"][0]["model_id"], "alpha-model");
    assert_eq!(node1["prices"][0]["input_per_million"], "0");
    assert_eq!(
        node1["prices"][1]["input_per_million"],
        u128::MAX.to_string()
    );
    assert_eq!(node1["prices"][1]["output_per_million"], "0");
}

/// With every API connection busy, a request waits the read pool's acquire timeout and is
/// answered 503 `overloaded` with `Retry-After` (never 500); meanwhile the follower, on its
/// own pool, keeps indexing; once a connection is free the same request succeeds.
async fn exhausted_read_pool_is_503_and_does_not_stop_ingest(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, url)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let read = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(200))
        .connect(&url)
        .await
        .unwrap();
    let db = indexer::db::Db {
        read: read.clone(),
        ..db
    };
    let app = api::router(ApiContext {
        db: db.clone(),
        status: status(),
        metrics: indexer::metrics::Metrics::new().unwrap(),
        node_pages: Default::default(),
    });
    let held = read.acquire().await.unwrap();

    let resp = app
        .clone()
        .oneshot(Request::get("/v1/nodes").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    let body: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"], "overloaded", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("retry"),
        "{body}"
    );

    let blocks_dir = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir).unwrap();
    let blocks = write_scenario(&blocks_dir);
    follow(&db, &blocks_dir, blocks.last().unwrap().height()).await;

    drop(held);
    assert_eq!(ids(&ok(&app, "/v1/nodes").await, "node_id"), ["1", "2"]);
}

/// Pages of `/v1/nodes` are reused between blocks, never across one: a page read before
/// the nodes were indexed is not served after.
async fn node_pages_follow_new_blocks(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some((db, _)) = fresh_db(dir.path(), postgres).await else {
        return;
    };
    let app = api::router(ApiContext {
        db: db.clone(),
        status: status(),
        metrics: indexer::metrics::Metrics::new().unwrap(),
        node_pages: Default::default(),
    });
    for query in ["/v1/nodes", "/v1/nodes?sort=price"] {
        assert!(ids(&ok(&app, query).await, "node_id").is_empty());
        assert!(
            ids(&ok(&app, query).await, "node_id").is_empty(),
            "served again"
        );
    }

    let blocks_dir = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir).unwrap();
    let blocks = write_scenario(&blocks_dir);
    follow(&db, &blocks_dir, blocks.last().unwrap().height()).await;

    assert_eq!(ids(&ok(&app, "/v1/nodes").await, "node_id"), ["1", "2"]);
    assert_eq!(
        ids(&ok(&app, "/v1/nodes?sort=price").await, "node_id").len(),
        2
    );
}

storage_test!(
    node_pages_follow_new_blocks_on,
    node_pages_follow_new_blocks
);
storage_test!(
    nodes_filter_sort_and_paginate_on,
    nodes_filter_sort_and_paginate
);
storage_test!(
    bad_parameters_are_json_400s_and_missing_things_404s_on,
    bad_parameters_are_json_400s_and_missing_things_404s
);
storage_test!(
    jobs_and_requests_with_timelines_on,
    jobs_and_requests_with_timelines
);
storage_test!(
    models_accounts_stats_status_on,
    models_accounts_stats_status
);
storage_test!(openapi_metrics_and_cors_on, openapi_metrics_and_cors);
storage_test!(
    offers_page_what_each_node_may_take_on,
    offers_page_what_each_node_may_take
);
storage_test!(
    feed_streams_new_work_and_resumes_with_last_event_id_on,
    feed_streams_new_work_and_resumes_with_last_event_id
);
storage_test!(
    exhausted_read_pool_is_503_and_does_not_stop_ingest_on,
    exhausted_read_pool_is_503_and_does_not_stop_ingest
);
storage_test!(
    listed_nodes_match_their_detail_on,
    listed_nodes_match_their_detail
);

/// `uri`'s body parses as `T` (the shared type `ecloud` and the worker read it with) and
/// serialises back to the very same bytes: nothing the indexer writes is lost or reshaped.
async fn round_trips_as<T: serde::de::DeserializeOwned + serde::Serialize>(
    app: &Router,
    uri: &str,
) {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{uri}");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let typed: T = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: not a {}: {e}", std::any::type_name::<T>()));
    assert_eq!(
        String::from_utf8(serde_json::to_vec(&typed).unwrap()).unwrap(),
        String::from_utf8(bytes.to_vec()).unwrap(),
        "{uri}"
    );
}

async fn responses_are_the_shared_protocol_types(postgres: bool) {
    use protocol::indexer::*;
    let Some(f) = indexed_scenario(postgres).await else {
        return;
    };
    let app = &f.app;
    round_trips_as::<Page<Node>>(app, "/v1/nodes").await;
    round_trips_as::<Page<Node>>(app, "/v1/nodes?sort=price&limit=1").await;
    round_trips_as::<NodeDetail>(app, "/v1/nodes/1").await;
    round_trips_as::<Page<FeedItem>>(app, "/v1/nodes/2/offers").await;
    round_trips_as::<Page<Job>>(app, "/v1/jobs").await;
    for id in 1..=4 {
        round_trips_as::<JobDetail>(app, &format!("/v1/jobs/{id}")).await;
    }
    round_trips_as::<RequestDetail>(app, "/v1/requests/1").await;
    round_trips_as::<Page<Channel>>(app, "/v1/channels").await;
    for id in 1..=3 {
        round_trips_as::<ChannelDetail>(app, &format!("/v1/channels/{id}")).await;
    }
    round_trips_as::<Page<Model>>(app, "/v1/models").await;
    round_trips_as::<ModelDetail>(app, &format!("/v1/models/{}", scenario::MODEL)).await;
    for account in [scenario::USER, scenario::OPERATOR, "a.test"] {
        round_trips_as::<Account>(app, &format!("/v1/accounts/{account}")).await;
    }
    round_trips_as::<Stats>(app, "/v1/stats").await;
    round_trips_as::<Status>(app, "/v1/status").await;
    let (status, body) = get(app, "/v1/jobs/99").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let error: ErrorBody = serde_json::from_value(body).unwrap();
    assert_eq!(error.error, "not_found");
}

storage_test!(
    responses_are_the_shared_protocol_types_on,
    responses_are_the_shared_protocol_types
);

/// Every route refuses parameters it does not take, those without any parameters included,
/// and ids have one spelling: `/v1/jobs/%2B1` is not job 1.
async fn unknown_parameters_and_odd_ids_are_refused_everywhere(postgres: bool) {
    let Some(f) = indexed_scenario(postgres).await else {
        return;
    };
    let bad = StatusCode::BAD_REQUEST;
    for route in [
        "/v1/stats",
        "/v1/status",
        "/v1/jobs/1",
        "/v1/requests/1",
        "/v1/nodes/2",
        "/v1/models/llama-3-8b",
        "/v1/accounts/alice.test",
        "/v1/nodes",
        "/v1/jobs",
        "/v1/models",
        "/v1/governance",
        "/v1/nodes/2/offers",
        "/v1/operators/op.test",
        "/v1/models/llama-3-8b/grants",
        "/v1/network",
        "/openapi.json",
        "/metrics",
    ] {
        // The route itself answers...
        let (status, body) = get(&f.app, route).await;
        assert_eq!(status, StatusCode::OK, "{route}: {body}");
        // ...and refuses what it does not take, naming it.
        err(
            &f.app,
            &format!("{route}?colour=red"),
            bad,
            "bad_parameter",
            "colour",
        )
        .await;
    }
    // The page route (503 without a bundle) refuses parameters too.
    err(&f.app, "/?colour=red", bad, "bad_parameter", "colour").await;
    for id in ["%2B1", "01", "+1", "%201", "1.0", "-1"] {
        for route in ["/v1/jobs", "/v1/requests", "/v1/nodes"] {
            err(&f.app, &format!("{route}/{id}"), bad, "bad_parameter", "id").await;
        }
    }
    err(&f.app, "/v1/nodes/%2B2/offers", bad, "bad_parameter", "id").await;
    err(&f.app, "/v1/jobs?cursor=%2B3", bad, "bad_cursor", "+3").await;
    err(
        &f.app,
        "/v1/nodes/2/offers?after=02",
        bad,
        "bad_parameter",
        "after",
    )
    .await;
}
storage_test!(
    unknown_parameters_and_odd_ids_on,
    unknown_parameters_and_odd_ids_are_refused_everywhere
);

/// Spellings of one `/v1/nodes` query share one cached page: a client varying the
/// spelling cannot make the cache hold a page per variant.
async fn node_pages_are_cached_per_parsed_query(postgres: bool) {
    let Some(f) = indexed_scenario(postgres).await else {
        return;
    };
    let first = ok(&f.app, "/v1/nodes?limit=50&sort=price").await;
    let held = f.node_pages.bytes();
    assert!(held > 0, "the page was cached");
    for zeros in 0..300 {
        let zeros = "0".repeat(zeros);
        let uri = if zeros.len() % 2 == 0 {
            format!("/v1/nodes?limit={zeros}50&sort=price")
        } else {
            format!("/v1/nodes?sort=price&limit={zeros}50")
        };
        assert_eq!(ok(&f.app, &uri).await, first, "{uri}");
    }
    assert_eq!(
        f.node_pages.bytes(),
        held,
        "300 spellings of one query hold one page"
    );
    // A different query is a different page.
    ok(&f.app, "/v1/nodes?limit=1").await;
    assert!(f.node_pages.bytes() > held);
}
storage_test!(
    node_pages_per_parsed_query_on,
    node_pages_are_cached_per_parsed_query
);

/// The explorer's views over the scenario: charts' series, the operator, search, grants and
/// the network the pages sign against.
async fn explorer_views_of_the_scenario(postgres: bool) {
    let Some(f) = indexed_scenario(postgres).await else {
        return;
    };
    let total = |s: &Value| -> u128 {
        s["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["value"].as_str().unwrap().parse::<u128>().unwrap())
            .sum()
    };
    let jobs = ok(&f.app, "/v1/series?metric=jobs&buckets=10").await;
    assert_eq!(
        (
            jobs["unit"].as_str(),
            jobs["points"].as_array().unwrap().len()
        ),
        (Some("count"), 10)
    );
    assert_eq!(total(&jobs), Expect::JOBS as u128);
    // The settled job's and the channel settlements' costs went to provider, royalty and
    // fee: the volume is their sum.
    let volume = ok(&f.app, "/v1/series?metric=volume").await;
    assert_eq!(
        total(&volume),
        Expect::SETTLED_COST + Expect::CHANNEL_COST,
        "{volume}"
    );
    let earned = ok(&f.app, "/v1/series?metric=node_earnings&node=2").await;
    assert!(
        total(&earned) > 0 && total(&earned) < Expect::SETTLED_COST,
        "{earned}"
    );
    // Node 1 earned only through the channels.
    let channels = scenario::settlement(Expect::CHANNEL_COST, Expect::CHANNEL_COST);
    assert_eq!(
        total(&ok(&f.app, "/v1/series?metric=node_earnings&node=1").await),
        channels.provider.0
    );
    let revenue = ok(
        &f.app,
        &format!("/v1/series?metric=model_revenue&model={}", scenario::MODEL),
    )
    .await;
    assert_eq!(total(&revenue), 100, "{revenue}");
    // Both nodes (one GPU each) are active at the end.
    for metric in ["nodes", "gpus"] {
        let s = ok(&f.app, &format!("/v1/series?metric={metric}")).await;
        let last = s["points"].as_array().unwrap().last().unwrap()["value"].clone();
        assert_eq!(last, "2", "{metric}: {s}");
    }
    let bad = StatusCode::BAD_REQUEST;
    err(
        &f.app,
        "/v1/series?metric=colour",
        bad,
        "bad_parameter",
        "metric",
    )
    .await;
    err(
        &f.app,
        "/v1/series?metric=node_earnings",
        bad,
        "bad_parameter",
        "node",
    )
    .await;
    err(
        &f.app,
        "/v1/series?metric=jobs&buckets=0",
        bad,
        "bad_parameter",
        "buckets",
    )
    .await;

    let op = ok(&f.app, &format!("/v1/operators/{}", scenario::OPERATOR)).await;
    assert_eq!(op["stake"]["staked"], "10000000000000000000000000");
    let nodes: Vec<&str> = op["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["1", "2"]);
    assert_eq!(op["nodes"][1]["gpus"][0]["model"], "H200");
    err(
        &f.app,
        "/v1/operators/nobody.test",
        StatusCode::NOT_FOUND,
        "not_found",
        "nobody.test",
    )
    .await;

    let hits = |v: Value| -> Vec<String> {
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                format!(
                    "{} {}",
                    h["kind"].as_str().unwrap(),
                    h["id"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        hits(ok(&f.app, "/v1/search?q=1").await),
        ["node 1", "job 1", "request 1", "channel 1"]
    );
    assert_eq!(
        hits(ok(&f.app, "/v1/search?q=3").await),
        ["job 3", "channel 3"]
    );
    assert_eq!(
        hits(ok(&f.app, &format!("/v1/search?q={}", scenario::OPERATOR)).await),
        ["operator op.test", "account op.test"]
    );
    // The token account is a model and an account (it paid royalties out).
    assert_eq!(
        hits(ok(&f.app, &format!("/v1/search?q={}", scenario::MODEL_TOKEN)).await)[0],
        "model llama-3-8b"
    );
    assert_eq!(
        hits(ok(&f.app, "/v1/search?q=Llama%203%208B").await),
        ["model llama-3-8b"]
    );
    assert!(hits(ok(&f.app, "/v1/search?q=nobody.test").await).is_empty());
    err(&f.app, "/v1/search?q=", bad, "bad_parameter", "q").await;

    assert_eq!(
        ok(&f.app, &format!("/v1/models/{}/grants", scenario::MODEL)).await,
        serde_json::json!([])
    );
    err(
        &f.app,
        "/v1/models/nope/grants",
        StatusCode::NOT_FOUND,
        "not_found",
        "nope",
    )
    .await;
    let net = ok(&f.app, "/v1/network").await;
    assert_eq!(
        (net["marketplace"].as_str(), net["network_id"].as_str()),
        (Some(scenario::MARKETPLACE), Some("localnet"))
    );
}

storage_test!(explorer_views_on, explorer_views_of_the_scenario);
