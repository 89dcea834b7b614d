//! The indexer against a real chain: localnet (a process) with the real registry and
//! marketplace wasm. A dev node registers, a job is submitted, claimed and settled with the
//! node's signature; the API shows each step and the worker feed delivers the job within
//! one block of the block that created it. The JSON-RPC source must read the same events
//! from the same chain as the neardata source. The contracts' settings made at deployment
//! (timelocked governance changes, applied at once while the delay is 0) are in
//! `/v1/governance`.
//!
//! Needs the localnet binary and the contracts (see `chain/mod.rs`): `scripts/test.sh`
//! builds both before `cargo test`.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod chain;
mod common;

use chain::*;
use indexer::app;
use indexer::config::{Config, SourceKind};
use indexer::db::Db;
use indexer::follower::FollowConfig;
use indexer::ingest::Contracts;
use indexer::source::{BlockSource, JsonRpcSource, NeardataSource};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// Block interval of the test chain. "Within one block" is measured in blocks, so the
/// interval only has to leave the indexer (poll, fetch, commit) room on a loaded machine.
const BLOCK_MS: u64 = 300;

fn contracts() -> Contracts {
    Contracts {
        registry: REGISTRY.parse().unwrap(),
        marketplace: MARKET.parse().unwrap(),
        factory: None,
        payment_tokens: vec![],
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn follow_config(stop_at: Option<u64>) -> FollowConfig {
    FollowConfig {
        start_height: 0,
        poll_interval: Duration::from_millis(20),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(500),
        stop_at,
    }
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "GET {path}: {status} {body}");
        body
    }

    /// Waits until the indexer has committed `height`.
    async fn wait_indexed(&self, height: u64) -> Value {
        for _ in 0..600 {
            if let Ok(resp) = self
                .http
                .get(format!("{}/v1/status", self.base))
                .send()
                .await
                && let Ok(status) = resp.json::<Value>().await
                && status["indexed_height"]
                    .as_u64()
                    .is_some_and(|h| h >= height)
            {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the indexer did not reach height {height}");
    }
}

/// Reads server-sent events until one named `job` arrives; returns its data and the chain's
/// final head at that moment.
async fn first_job_event(mut resp: reqwest::Response, chain: &Chain) -> (Value, u64) {
    let mut buf = String::new();
    loop {
        let chunk = resp.chunk().await.unwrap().expect("the feed ended");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let mut name = "";
            let mut data = String::new();
            for line in event.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if name == "job" {
                let (head, _) = chain.final_head().await;
                return (serde_json::from_str(&data).unwrap(), head);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_through_on_localnet_and_the_api_and_feed_follow_it() {
    let node = Localnet::start(BLOCK_MS).await;
    let chain = Chain::new(&node.url);
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let config = Config {
        database_url: common::sqlite_url(dir.path()),
        listen,
        source: SourceKind::Neardata,
        source_url: node.url.clone(),
        follow: follow_config(None),
        contracts: contracts(),
        explorer: Default::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let indexer = tokio::spawn(app::run(config, async {
        let _ = stopped.await;
    }));
    let api = Api {
        base: format!("http://{listen}"),
        http: reqwest::Client::new(),
    };

    // 1. The node registers: the API shows it with its operator, prices and region.
    let suite = deploy(&chain, &node).await;
    api.wait_indexed(suite.registered_height).await;
    let n = api.get(&format!("/v1/nodes/{}", suite.node_id)).await;
    assert_eq!(n["node_id"], suite.node_id.as_str(), "{n}");
    assert_eq!(n["operator"], OPERATOR, "{n}");
    assert_eq!(n["kind"], "dev", "{n}");
    assert_eq!(n["status"], "active", "{n}");
    assert_eq!(n["region"], "eu-west", "{n}");
    assert_eq!(n["prices"][0]["model_id"], MODEL, "{n}");
    assert_eq!(n["registered_height"], suite.registered_height, "{n}");

    // 2. A job for any node serving the model: the feed of our node delivers it.
    let feed = api
        .http
        .get(format!("{}/v1/nodes/{}/feed", api.base, suite.node_id))
        .send()
        .await
        .unwrap();
    assert!(feed.status().is_success());
    let feed_chain = Chain::new(&node.url);
    let delivered = tokio::spawn(async move { first_job_event(feed, &feed_chain).await });
    let (job_id, job_height) = submit_job(&chain, &suite).await;
    let (item, head_at_delivery) = tokio::time::timeout(Duration::from_secs(60), delivered)
        .await
        .expect("the feed did not deliver the job")
        .unwrap();
    assert_eq!(item["kind"], "job", "{item}");
    assert_eq!(item["job"]["job_id"], job_id.as_str(), "{item}");
    println!(
        "feed: job {job_id} created in block {job_height}, delivered when the final head was {head_at_delivery} ({} block(s) later)",
        head_at_delivery - job_height
    );
    assert!(
        head_at_delivery <= job_height + 1,
        "the feed delivered the job of block {job_height} only at head {head_at_delivery}"
    );
    let j = api.get(&format!("/v1/jobs/{job_id}")).await;
    assert_eq!(j["status"], "open", "{j}");
    assert_eq!(j["user"], USER, "{j}");
    assert_eq!(j["created_height"], job_height, "{j}");
    assert_eq!(timeline(&j), ["job_submitted"], "{j}");

    // 3. The operator claims it.
    let claimed = claim(&chain, &suite, &job_id).await;
    let claim_height = chain
        .height_of(claimed.outcome_logging("job_claimed").block_hash)
        .await;
    api.wait_indexed(claim_height).await;
    let j = api.get(&format!("/v1/jobs/{job_id}")).await;
    assert_eq!(j["status"], "claimed", "{j}");
    assert_eq!(j["node_id"], suite.node_id.as_str(), "{j}");
    assert_eq!(timeline(&j), ["job_submitted", "job_claimed"], "{j}");
    // A claimed job is no longer offered.
    let offers = api
        .get(&format!("/v1/nodes/{}/offers", suite.node_id))
        .await;
    assert_eq!(offers["items"], serde_json::json!([]), "{offers}");

    // 4. The node posts the signed result: the job settles, the split is shown.
    let settled = submit_result(&chain, &suite, &job_id).await;
    let settle_height = chain
        .height_of(settled.outcome_logging("job_settled").block_hash)
        .await;
    let last_height = chain
        .height_of(settled.view.receipts_outcome.last().unwrap().block_hash)
        .await;
    let status = api.wait_indexed(last_height.max(settle_height)).await;
    let j = api.get(&format!("/v1/jobs/{job_id}")).await;
    assert_eq!(j["status"], "settled", "{j}");
    assert_eq!(j["usage"]["output_tokens"], 2_000, "{j}");
    let cost: u128 = j["settlement"]["cost"].as_str().unwrap().parse().unwrap();
    assert!(cost > 0, "{j}");
    let events = timeline(&j);
    assert_eq!(
        events[..3],
        ["job_submitted", "job_claimed", "job_settled"],
        "{j}"
    );

    // 5. Accounts: the user's job, the operator's node and earnings.
    let user = api.get(&format!("/v1/accounts/{USER}")).await;
    assert_eq!(user["jobs_submitted"], 1, "{user}");
    assert_eq!(user["recent_jobs"][0]["job_id"], job_id.as_str(), "{user}");
    let op = api.get(&format!("/v1/accounts/{OPERATOR}")).await;
    assert_eq!(op["nodes"], serde_json::json!([suite.node_id]), "{op}");
    assert!(
        op["earnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["amount"].as_str().is_some_and(|a| a != "0")),
        "{op}"
    );
    let n = api.get(&format!("/v1/nodes/{}", suite.node_id)).await;
    assert_eq!(n["jobs_settled"], 1, "{n}");

    // Every event the real contracts emitted was understood.
    assert_eq!(status["events_malformed"], 0, "{status}");
    assert_eq!(status["events_foreign"], 0, "{status}");
    assert_eq!(status["events_orphan"], 0, "{status}");
    assert!(status["events_applied"].as_i64().unwrap() >= 6, "{status}");

    // The deployment's settings went through each contract's timelock (delay 0: applied in
    // the call that proposed them); the indexer keeps them per contract.
    let gov = api
        .get(&format!("/v1/governance?contract={REGISTRY}"))
        .await;
    let items = gov["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{gov}");
    assert_eq!(items[0]["change_id"], "1", "{gov}");
    assert_eq!(items[0]["status"], "applied", "{gov}");
    assert_eq!(
        items[0]["change"],
        serde_json::json!({ "setting": { "set_marketplace": { "marketplace": MARKET } } }),
        "{gov}"
    );
    assert_eq!(
        items[0]["resolved_height"], items[0]["proposed_height"],
        "{gov}"
    );
    let gov = api
        .get(&format!("/v1/governance?contract={MARKET}&status=applied"))
        .await;
    assert_eq!(
        gov["items"][0]["change"]["setting"]["set_royalty_account"]["model_id"], MODEL,
        "{gov}"
    );
    let pending = api.get("/v1/governance?status=pending").await;
    assert_eq!(pending["items"], serde_json::json!([]), "{pending}");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), indexer)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// The real factory creates a model: the token's `new` logs its manifest and crowdfund one
/// block before the factory's callback announces the token. The API must still show all of
/// the model's metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_created_through_the_real_factory_has_its_metadata_in_the_api() {
    let node = Localnet::start(BLOCK_MS).await;
    let chain = Chain::new(&node.url);
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let config = Config {
        database_url: common::sqlite_url(dir.path()),
        listen,
        source: SourceKind::Neardata,
        source_url: node.url.clone(),
        follow: follow_config(None),
        contracts: Contracts {
            factory: Some(FACTORY.parse().unwrap()),
            ..contracts()
        },
        explorer: Default::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let indexer = tokio::spawn(app::run(config, async {
        let _ = stopped.await;
    }));
    let api = Api {
        base: format!("http://{listen}"),
        http: reqwest::Client::new(),
    };

    deploy_factory(&chain, &node).await;
    let (_, now_ns) = chain.final_head().await;
    let deadline_ns = now_ns + 3_600 * 1_000_000_000;
    let goal = 10 * NEAR;
    let args = serde_json::json!({
        "manifest": {
            "name": "MiniLM on localnet",
            "weights_hash": "11".repeat(32),
            "encrypted_weights_uri": "ipfs://weights",
            "training_data_manifest_hash": "22".repeat(32),
            "training_data_manifest_uri": "ipfs://data",
            "training_image_measurement": "33".repeat(48),
            "allowed_enclave_measurements": ["dev"],
            "licence": "apache-2.0",
        },
        "metadata": { "spec": "ft-1.0.0", "name": "MiniLM token", "symbol": "MINI", "decimals": 6 },
        "crowdfund": {
            "goal": goal.to_string(),
            "token_price": NEAR.to_string(),
            "deadline_ns": deadline_ns.to_string(),
            "beneficiary": USER,
        },
    });
    let created = create_model(&chain, &node, "minilm", &args).await;
    // The real order of the logs: the token's init strictly before the announcement.
    let init_height = chain
        .height_of(created.outcome_logging("crowdfund_started").block_hash)
        .await;
    let announced_height = chain
        .height_of(created.outcome_logging("model_created").block_hash)
        .await;
    assert!(
        init_height < announced_height,
        "the token's init ({init_height}) logs before the factory's callback ({announced_height})"
    );
    let last = chain
        .height_of(created.view.receipts_outcome.last().unwrap().block_hash)
        .await;
    let status = api.wait_indexed(last.max(announced_height)).await;

    let m = api.get("/v1/models/minilm").await;
    let token = format!("minilm.{FACTORY}");
    assert_eq!(m["token"], token.as_str(), "{m}");
    assert_eq!(m["name"], "MiniLM on localnet", "{m}");
    assert_eq!(m["manifest"]["name"], "MiniLM on localnet", "{m}");
    assert_eq!(m["manifest"]["licence"], "apache-2.0", "{m}");
    let cf = &m["crowdfund"];
    assert_eq!(cf["state"], "running", "{m}");
    assert_eq!(cf["goal"], goal.to_string().as_str(), "{m}");
    assert_eq!(cf["token_price"], NEAR.to_string().as_str(), "{m}");
    assert_eq!(cf["deadline_ns"], deadline_ns.to_string().as_str(), "{m}");
    assert_eq!(cf["beneficiary"], USER, "{m}");
    assert_eq!(status["events_orphan"], 0, "{status}");
    assert_eq!(status["events_foreign"], 0, "{status}");
    // Publishing the token code set the factory's model code through its timelock.
    let gov = api.get(&format!("/v1/governance?contract={FACTORY}")).await;
    let code = &gov["items"][0];
    assert_eq!(code["status"], "applied", "{gov}");
    assert!(
        code["change"]["setting"]["set_model_code"]["code_hash"].is_string(),
        "{gov}"
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), indexer)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

fn timeline(job: &Value) -> Vec<String> {
    job["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect()
}

/// The enclave-cloud events of each block, as a source delivers them.
async fn events_by_height<S: BlockSource>(source: &S, to: u64) -> Vec<(u64, Vec<String>)> {
    let mut out = Vec::new();
    for h in 0..=to {
        if let Some(block) = source.block(h).await.unwrap() {
            let mut lines: Vec<String> = block
                .logs()
                .filter(|l| l.executor_id == REGISTRY || l.executor_id == MARKET)
                .map(|l| format!("{} {} {}", l.receipt_id, l.executor_id, l.line))
                .collect();
            lines.sort();
            if !lines.is_empty() {
                out.push((h, lines));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonrpc_source_reads_the_same_chain_as_neardata() {
    let node = Localnet::start(100).await;
    let chain = Chain::new(&node.url);
    let suite = deploy(&chain, &node).await;
    let (job_id, _) = submit_job(&chain, &suite).await;
    claim(&chain, &suite, &job_id).await;
    let settled = submit_result(&chain, &suite, &job_id).await;
    let last = chain
        .height_of(settled.view.receipts_outcome.last().unwrap().block_hash)
        .await;

    let neardata = NeardataSource::new(&node.url, Duration::from_secs(10)).unwrap();
    let rpc = JsonRpcSource::new(&node.url, Duration::from_secs(10)).unwrap();
    assert!(rpc.final_head().await.unwrap() >= last);
    let expected = events_by_height(&neardata, last).await;
    let got = events_by_height(&rpc, last).await;
    assert!(
        expected.iter().map(|(_, l)| l.len()).sum::<usize>() >= 6,
        "{expected:#?}"
    );
    assert_eq!(got, expected);

    // Resuming in the middle (a restart): the transactions of the blocks before are found
    // again, so the receipts they still run are not lost.
    let settle_height = expected.last().unwrap().0;
    let resumed = JsonRpcSource::new(&node.url, Duration::from_secs(10)).unwrap();
    let block = resumed.block(settle_height).await.unwrap().unwrap();
    let lines: Vec<String> = block
        .logs()
        .filter(|l| l.executor_id == MARKET)
        .map(|l| format!("{} {} {}", l.receipt_id, l.executor_id, l.line))
        .collect();
    assert_eq!(
        lines.len(),
        expected.last().unwrap().1.len(),
        "{lines:#?} vs {expected:#?}"
    );

    // Both sources fill the database the same way.
    let by_neardata = follow_into(
        NeardataSource::new(&node.url, Duration::from_secs(10)).unwrap(),
        last,
    )
    .await;
    let by_rpc = follow_into(
        JsonRpcSource::new(&node.url, Duration::from_secs(10)).unwrap(),
        last,
    )
    .await;
    assert!(by_neardata["timeline"].len() >= 3, "{by_neardata:#?}");
    assert_eq!(by_rpc, by_neardata);
}

/// Follows `source` from genesis to `last` into a fresh SQLite database; returns its rows.
async fn follow_into<S: BlockSource>(
    source: S,
    last: u64,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&common::sqlite_url(dir.path())).await.unwrap();
    let mut follower = common::follower(source, &db, Some(last));
    follower.ingestor = indexer::ingest::Ingestor::new(contracts(), follower.metrics.clone());
    follower.config = follow_config(Some(last));
    common::run_to_end(follower).await;
    common::dump(&db).await
}
