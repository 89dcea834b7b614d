//! The explorer pages in a real headless browser (Debian `chromium`, driven through the
//! DevTools protocol, see `cdp/`): the indexer serves the built bundle (`explorer/build.sh`)
//! over the fixture scenario; every page must load without console errors, show the
//! scenario's figures, link to the others, and never show a raw yocto amount. A screenshot
//! of every page is written under `$CARGO_TARGET_DIR/explorer-screenshots` (printed).
//!
//! The wallet flows run against localnet with the real contracts (see `chain/`): the page
//! connects with the imported-key wallet module (the same wallet-selector code path as
//! production wallets), backs a model's crowdfund, claims its revenue, submits a job paid in
//! NEAR, cancels it and withdraws a credit; each change is checked on chain through JSON-RPC
//! views.
//!
//! Without a browser the tests say so loudly and pass; `scripts/test.sh` installs
//! `chromium` and builds the bundle first.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod cdp;
mod chain;
mod common;

use base64::Engine as _;
use cdp::{Browser, Tab, explorer_bundle, screenshot_dir};
use common::*;
use indexer::config::{Config, ExplorerConfig, SourceKind};
use indexer::fixture::scenario;
use std::time::Duration;

/// Opens `#/route`, waits for `page` to render, checks what every page must hold (no
/// console errors, no error banner, no raw amount), saves a screenshot, returns the text.
async fn visit(
    browser: &Browser,
    tab: &Tab<'_>,
    base: &str,
    route: &str,
    page: &str,
    shot: &str,
) -> String {
    tab.goto(&format!("{base}/#/{route}")).await;
    checked_page(browser, tab, &format!("#/{route}"), page, shot).await
}

/// Waits until the page of `hash` (a `page` page) is rendered and the event stream is live.
async fn checked_page(
    browser: &Browser,
    tab: &Tab<'_>,
    hash: &str,
    page: &str,
    shot: &str,
) -> String {
    tab.wait_for(
        &format!("document.body.dataset.hash === {hash:?} && document.querySelector('#page [data-page=\"{page}\"]') && document.getElementById('status').textContent.includes('live')"),
        20,
        &format!("the {page} page"),
    )
    .await;
    let text = tab.text().await;
    let path = tab
        .screenshot(&screenshot_dir().join(format!("{shot}.png")))
        .await;
    println!("screenshot: {}", path.display());
    let problems = browser.take_problems();
    assert!(
        problems.is_empty(),
        "{page} page: console errors {problems:#?}\n{text}"
    );
    let banner = tab.eval("document.getElementById('errors').hidden").await;
    assert_eq!(
        banner,
        serde_json::json!(true),
        "{page} page shows an error:\n{text}"
    );
    let longest_digit_run = text
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(
        longest_digit_run < 19,
        "{page} page: a raw amount ({longest_digit_run} digits):\n{text}"
    );
    text
}

fn assert_shows(text: &str, page: &str, expected: &[&str]) {
    for e in expected {
        assert!(text.contains(e), "the {page} page lacks '{e}':\n{text}");
    }
}

/// Clicks the first link to `href` and waits for `page`.
async fn follow(browser: &Browser, tab: &Tab<'_>, href: &str, page: &str, shot: &str) -> String {
    let clicked = tab
        .eval(&format!("(() => {{ const a = document.querySelector('a[href=\"{href}\"]'); if (!a) return false; a.click(); return true; }})()"))
        .await;
    assert_eq!(
        clicked,
        serde_json::json!(true),
        "no link to {href}:\n{}",
        tab.text().await
    );
    checked_page(browser, tab, href, page, shot).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explorer_pages_render_the_scenario_link_to_each_other_and_update_live() {
    let Some(chromium) = cdp::browser() else {
        eprintln!(
            "SKIPPED (loudly): no chromium found (install Debian 'chromium' or set ECLOUD_CHROMIUM)"
        );
        return;
    };
    let bundle = explorer_bundle();
    let dir = tempfile::tempdir().unwrap();
    let blocks_dir = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir).unwrap();
    let last_height = write_scenario(&blocks_dir).last().unwrap().height();
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut follow_config = fast_config(None);
    follow_config.start_height = FIRST_HEIGHT;
    let config = Config {
        database_url: indexer::db::sqlite_url_in(&dir.path().join("data")),
        listen,
        source: SourceKind::Fixtures,
        source_url: blocks_dir.display().to_string(),
        follow: follow_config,
        contracts: scenario::contracts(),
        explorer: ExplorerConfig {
            dir: Some(bundle),
            rpc_url: None,
            network_id: None,
        },
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = tokio::spawn(indexer::app::run(config, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    // The whole scenario indexed (its last blocks are the channels').
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Ok(resp) = client
            .get(format!("http://{listen}/v1/status"))
            .send()
            .await
        else {
            continue;
        };
        let status: serde_json::Value = resp.json().await.unwrap();
        if status["indexed_height"]
            .as_u64()
            .is_some_and(|h| h >= last_height)
        {
            break;
        }
    }
    let base = format!("http://{listen}");
    let browser = Browser::launch(&chromium);
    let tab = browser.tab().await;

    // Network overview: the figures of the scenario, its charts, prices per model.
    let text = visit(&browser, &tab, &base, "", "overview", "overview").await;
    assert_shows(
        &text,
        "overview",
        &[
            "indexed height",
            "Llama 3 8B",
            "H200",
            "op.test",
            "<0.000001 NEAR",
            "Prices per model",
            "jobs submitted",
        ],
    );
    let figure = |id: &'static str| {
        format!("document.querySelector('[data-figure=\"{id}\"] .value').textContent")
    };
    assert_eq!(tab.eval(&figure("nodes-active")).await, "2");
    assert_eq!(tab.eval(&figure("gpus-active")).await, "2");
    assert_eq!(tab.eval(&figure("jobs-total")).await, "4");
    let bars = tab
        .eval("document.querySelectorAll('figure.chart svg rect.bar').length")
        .await;
    assert!(
        bars.as_u64().unwrap() >= 4 * 24,
        "charts without bars: {bars}"
    );
    let hover = tab.eval("document.querySelector('.amount').title").await;
    assert!(
        hover.as_str().unwrap().contains("smallest units"),
        "no exact amount on hover: {hover}"
    );

    // Node 2 (H200), reached through the overview's link.
    let text = follow(&browser, &tab, "#/node/2", "node", "node").await;
    assert_shows(
        &text,
        "node",
        &[
            "Node 2",
            "Verified attestation",
            "TCB status",
            "H200",
            "op.test",
            "Jobs served",
            "job 1",
            "earnings",
        ],
    );

    // Its job 1, settled: cost split and receipt.
    let text = follow(&browser, &tab, "#/job/1", "job", "job").await;
    assert_shows(
        &text,
        "job",
        &[
            "Job 1",
            "settled",
            "Cost split",
            "provider",
            "model royalty",
            "protocol fee",
            "Receipt",
            "verified on chain",
            "Timeline",
        ],
    );

    // The model: manifest, crowdfund at 100 %, holders, revenue.
    let text = follow(&browser, &tab, "#/model/llama-3-8b", "model", "model").await;
    assert_shows(
        &text,
        "model",
        &[
            "Model Llama 3 8B",
            "Crowdfund",
            "succeeded",
            "100%",
            "trainer.test",
            "a.test",
            "b.test",
            "Manifest",
            "royalty revenue",
            "Key grants",
        ],
    );
    assert_eq!(
        tab.eval("document.querySelector('.progress').dataset.percent")
            .await,
        "100"
    );

    // The operator: stake and nodes.
    visit(&browser, &tab, &base, "node/1", "node", "node-1").await;
    let text = follow(&browser, &tab, "#/operator/op.test", "operator", "operator").await;
    assert_shows(
        &text,
        "operator",
        &["Operator op.test", "10 NEAR", "node 1", "node 2", "Slashes"],
    );

    // Payment channels: the list with its state filter, a channel with its settlements,
    // reached from its node; the user's channels on the account page.
    let text = visit(&browser, &tab, &base, "channels", "channels", "channels").await;
    assert_shows(
        &text,
        "channels",
        &[
            "Payment channels",
            "channel 1",
            "channel 2",
            "channel 3",
            "carol.test",
            "node 1",
            "closing",
            "challenge over",
            "closed (cooperative)",
            "1.5 NEAR",
            "0.03 NEAR",
            "1.47 NEAR",
            "0.15 NEAR",
        ],
    );
    let text = follow(
        &browser,
        &tab,
        "#/channels/closing",
        "channels",
        "channels-closing",
    )
    .await;
    assert_shows(&text, "channels", &["channel 2", "0.4 NEAR"]);
    assert!(
        !text.contains("channel 1") && !text.contains("channel 3"),
        "the closing filter shows other channels:\n{text}"
    );
    let text = visit(&browser, &tab, &base, "node/1", "node", "node-1-channels").await;
    assert_shows(&text, "node", &["Payment channels", "channel 1"]);
    let text = follow(&browser, &tab, "#/channel/1", "channel", "channel").await;
    assert_shows(
        &text,
        "channel",
        &[
            "Channel 1",
            "open",
            "carol.test",
            "op.test",
            "llama-3-8b",
            "1.5 NEAR",
            "1.47 NEAR",
            "challenge period",
            "1 d",
            "Paid out",
            "model royalty",
            "Settlements (2)",
            "0.011 NEAR",
            "0.019 NEAR",
            "0.03 NEAR",
            "channel_topped_up",
        ],
    );
    let text = visit(
        &browser,
        &tab,
        &base,
        "channel/3",
        "channel",
        "channel-closed",
    )
    .await;
    assert_shows(
        &text,
        "channel",
        &[
            "Channel 3",
            "cooperatively",
            "refund to the user",
            "0.15 NEAR",
            "channel_closed",
        ],
    );
    let text = visit(
        &browser,
        &tab,
        &base,
        "account/carol.test",
        "account",
        "account-channels",
    )
    .await;
    assert_shows(
        &text,
        "account",
        &[
            "Account carol.test",
            "Payment channels",
            "channel 3",
            "channel 1",
        ],
    );

    // An account, and search by account and by id.
    let text = visit(
        &browser,
        &tab,
        &base,
        "account/alice.test",
        "account",
        "account",
    )
    .await;
    assert_shows(
        &text,
        "account",
        &["Account alice.test", "Recent jobs", "job 1"],
    );
    let text = visit(&browser, &tab, &base, "search/op.test", "search", "search").await;
    assert_shows(&text, "search", &["operator op.test", "account op.test"]);
    let text = visit(&browser, &tab, &base, "search/1", "search", "search-id").await;
    assert_shows(&text, "search", &["node 1", "job 1", "channel 1"]);
    follow(&browser, &tab, "#/job/1", "job", "job-from-search").await;

    // The search box in the header leads to the results.
    tab.eval("(() => { const f = document.querySelector('#nav-search form'); f.q.value = 'llama-3-8b'; f.requestSubmit(); })()").await;
    let text = checked_page(
        &browser,
        &tab,
        "#/search/llama-3-8b",
        "search",
        "search-box",
    )
    .await;
    assert_shows(&text, "search", &["model llama-3-8b"]);

    drop(tab);
    drop(browser);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), app)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Submits the form `#id` after filling `fields` (input name, value) and waits for its outcome;
/// returns the outcome's text, panicking with it when the action failed.
async fn act(
    browser: &Browser,
    tab: &Tab<'_>,
    id: &str,
    fields: &[(&str, &str)],
    shot: &str,
) -> String {
    tab.wait_for(
        &format!("document.getElementById({id:?})"),
        30,
        &format!("the {id} form"),
    )
    .await;
    let fill = fields
        .iter()
        .map(|(name, value)| format!("f.elements[{name:?}].value = {value:?};"))
        .collect::<String>();
    tab.eval(&format!(
        "(() => {{ const f = document.getElementById({id:?}); {fill} f.requestSubmit(); }})()"
    ))
    .await;
    let result = format!("document.querySelector('[data-result={id:?}]')");
    tab.wait_for(
        &format!("{result} && {result}.dataset.ok"),
        60,
        &format!("the outcome of {id}"),
    )
    .await;
    let text = tab
        .eval(&format!("{result}.textContent"))
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let path = tab
        .screenshot(&screenshot_dir().join(format!("{shot}.png")))
        .await;
    println!("screenshot: {}", path.display());
    let ok = tab.eval(&format!("{result}.dataset.ok")).await;
    assert_eq!(ok, "true", "{id} failed: {text}");
    let problems = browser.take_problems();
    assert!(problems.is_empty(), "{id}: console errors {problems:#?}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_flows_on_the_pages_change_the_chain() {
    use chain::*;
    use serde_json::json;
    let Some(chromium) = cdp::browser() else {
        eprintln!(
            "SKIPPED (loudly): no chromium found (install Debian 'chromium' or set ECLOUD_CHROMIUM)"
        );
        return;
    };
    let bundle = explorer_bundle();
    let node = Localnet::start(300).await;
    let chain = Chain::new(&node.url);
    let suite = deploy(&chain, &node).await;
    deploy_factory(&chain, &node).await;
    let (_, now_ns) = chain.final_head().await;
    let goal = 2 * NEAR;
    let args = json!({
        "manifest": { "name": "MiniLM on localnet", "weights_hash": "11".repeat(32), "encrypted_weights_uri": "ipfs://weights",
            "training_data_manifest_hash": "22".repeat(32), "training_data_manifest_uri": "ipfs://data",
            "training_image_measurement": "33".repeat(48), "allowed_enclave_measurements": ["dev"], "licence": "apache-2.0" },
        "metadata": { "spec": "ft-1.0.0", "name": "MiniLM token", "symbol": "MINI", "decimals": 6 },
        "crowdfund": { "goal": goal.to_string(), "token_price": NEAR.to_string(),
            "deadline_ns": (now_ns + 3_600 * 1_000_000_000).to_string(), "beneficiary": OPERATOR },
    });
    create_model(&chain, &node, "minilm", &args).await;
    let token = format!("minilm.{FACTORY}");

    let dir = tempfile::tempdir().unwrap();
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = Config {
        database_url: indexer::db::sqlite_url_in(dir.path()),
        listen,
        source: SourceKind::Neardata,
        source_url: node.url.clone(),
        follow: indexer::follower::FollowConfig {
            start_height: 0,
            poll_interval: Duration::from_millis(20),
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            stop_at: None,
        },
        contracts: indexer::ingest::Contracts {
            registry: REGISTRY.parse().unwrap(),
            marketplace: MARKET.parse().unwrap(),
            factory: Some(FACTORY.parse().unwrap()),
            payment_tokens: vec![],
        },
        explorer: ExplorerConfig {
            dir: Some(bundle),
            rpc_url: Some(node.url.clone()),
            network_id: None,
        },
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = tokio::spawn(indexer::app::run(config, async move {
        let _ = stopped.await;
    }));
    let base = format!("http://{listen}");
    let browser = Browser::launch(&chromium);
    let tab = browser.tab().await;

    // The model page, once indexed (a page about what the indexer has not seen yet loads a
    // 404 the browser logs), then connect with the user's key.
    indexed(&format!("{base}/v1/models/minilm")).await;
    let shows_model = "document.querySelector('#page [data-page=\"model\"]')";
    tab.goto(&format!("{base}/#/model/minilm")).await;
    tab.wait_for(shows_model, 60, "the indexed model page")
        .await;
    let near_crypto::Signer::InMemory(user) = &suite.user else {
        panic!("the user signs in memory")
    };
    tab.eval("document.getElementById('connect').click()").await;
    let filled = json!({ "account": USER, "secret": user.secret_key.to_string() });
    act_connect(&tab, &filled).await;
    tab.wait_for(
        &format!("document.querySelector('[data-account={USER:?}]')"),
        20,
        "signed in",
    )
    .await;
    checked_page(
        &browser,
        &tab,
        "#/model/minilm",
        "model",
        "wallet-connected",
    )
    .await;

    // Back the crowdfund with 2 NEAR: the page adds the NEP-145 storage for a new holder.
    let text = act(&browser, &tab, "back", &[("amount", "2")], "wallet-backed").await;
    assert!(
        text.contains("backed with 2 NEAR (+ ") && text.contains("storage), 2 MINI minted"),
        "{text}"
    );
    let contribution = chain
        .view(&token, "contribution", json!({ "account_id": USER }))
        .await;
    assert_eq!(
        contribution[0],
        (2 * NEAR).to_string(),
        "on chain: {contribution}"
    );

    // The page follows the chain: the user is a holder of 2 MINI (the token's decimals).
    tab.wait_for(
        "[...document.querySelectorAll('#page td')].some(td => td.textContent === '2 MINI')",
        30,
        "the new holding",
    )
    .await;

    // The goal is met: finalize (anyone), then 1 NEAR of royalties arrives; the user claims.
    chain
        .call(&suite.root, &token, "finalize_crowdfund", json!({}), 0)
        .await;
    chain
        .call(&suite.root, &token, "deposit_revenue", json!({}), NEAR)
        .await;
    let claimable = |v: serde_json::Value| v.as_str().unwrap().parse::<u128>().unwrap();
    let asset = json!({ "account_id": USER, "asset": { "kind": "near" } });
    let before = claimable(chain.view(&token, "claimable", asset.clone()).await);
    assert!(
        before > NEAR / 2,
        "the user should earn the deposit: {before}"
    );
    let text = act(&browser, &tab, "claim", &[], "wallet-claimed").await;
    assert!(
        text.starts_with("claimed ") && text.contains("NEAR"),
        "{text}"
    );
    assert_eq!(
        claimable(chain.view(&token, "claimable", asset).await),
        0,
        "claimed on chain"
    );

    // Submit a job paid in NEAR to the node, from its page.
    tab.goto(&format!("{base}/#/node/{}", suite.node_id)).await;
    checked_page(
        &browser,
        &tab,
        &format!("#/node/{}", suite.node_id),
        "node",
        "wallet-node",
    )
    .await;
    // The page seals the input to the node's attested key itself.
    let text = act(
        &browser,
        &tab,
        "submit-job",
        &[
            ("cap", "0.5"),
            ("kind", "embeddings"),
            ("text", "a private text"),
        ],
        "wallet-submitted",
    )
    .await;
    let job_id: String = tab
        .eval("document.querySelector('[data-job]').dataset.job")
        .await
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text.contains(&format!("submitted job {job_id}")) && text.contains("cap 0.5 NEAR"),
        "{text}"
    );
    let job = chain
        .view(MARKET, "get_job", json!({ "job_id": job_id }))
        .await;
    assert_ne!(job, serde_json::Value::Null, "the job is on chain");
    assert!(
        job.to_string().contains(USER) && job.to_string().contains("500000000000000000000000"),
        "{job}"
    );
    // Only the enclave opens it: the chain holds a ciphertext, never the text.
    assert!(!job.to_string().contains("a private text"), "{job}");
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(
            job["input"]["ciphertext"]
                .as_str()
                .expect("an inline input"),
        )
        .unwrap();
    let user_key: [u8; 32] = hex::decode(job["user_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let opened = protocol::envelope::open(
        &chain::tee_secret(),
        &protocol::envelope::Envelope::from_bytes(&sealed).unwrap(),
        &protocol::envelope::EnvelopeContext::JobInput {
            model_id: MODEL.parse().unwrap(),
            user_key,
        },
    )
    .expect("the node's enclave opens what the page sealed");
    let request: serde_json::Value = serde_json::from_slice(&opened).unwrap();
    assert_eq!(request["url"], "/v1/embeddings");
    assert_eq!(request["body"]["input"][0], "a private text");

    // Its page (once indexed) offers the cancel; cancelling removes it from the chain.
    indexed(&format!("{base}/v1/jobs/{job_id}")).await;
    tab.eval(&format!(
        "document.querySelector('a[data-job=\"{job_id}\"]').click()"
    ))
    .await;
    act(&browser, &tab, "cancel", &[], "wallet-cancelled").await;
    assert_eq!(
        chain
            .view(MARKET, "get_job", json!({ "job_id": job_id }))
            .await,
        serde_json::Value::Null,
        "cancelled on chain"
    );
    tab.wait_for(
        "document.body.innerText.includes('cancelled')",
        30,
        "the indexed cancellation",
    )
    .await;

    // Withdraw a credit: a refund that could not be paid (bob deleted his account before
    // his unclaimed job was cancelled) waits in the marketplace; bob, back under the same
    // name, withdraws it from his account page.
    let bob_id = "bob.test.near";
    let bob = chain
        .create_account(&suite.root, bob_id, 10, None, vec![])
        .await;
    let storage = chain
        .view(
            MARKET,
            "job_storage_deposit",
            json!({ "input_bytes": INPUT.len() }),
        )
        .await;
    let storage: u128 = storage.as_str().unwrap().parse().unwrap();
    let (_, now_ns) = chain.final_head().await;
    let job = json!({ "job": {
        "model_id": MODEL, "price_cap": NEAR.to_string(),
        "deadline_ns": (now_ns + 3600 * 1_000_000_000).to_string(),
        "claim_deadline_ns": (now_ns + 2 * 1_000_000_000).to_string(),
        "target": { "kind": "any", "region": null, "gpu_model": null, "max_price_per_million": null },
        "input": inline(INPUT), "user_key": "cd".repeat(32) } });
    let bobs_job = chain
        .call(&bob, MARKET, "submit_job", job, NEAR + storage)
        .await
        .json();
    let delete = near_primitives::transaction::Action::DeleteAccount(
        near_primitives::transaction::DeleteAccountAction {
            beneficiary_id: suite.root.get_account_id(),
        },
    );
    chain.send(&bob, bob_id, vec![delete]).await;
    loop {
        let (_, now) = chain.final_head().await;
        if now > now_ns + 3 * 1_000_000_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The refund's transfer to the deleted account fails: the marketplace keeps it as a credit.
    let cancelled = chain
        .send_settled(
            &suite.root,
            MARKET,
            vec![function_call(
                "cancel_job",
                &json!({ "job_id": bobs_job }),
                0,
                100,
            )],
        )
        .await;
    assert_eq!(
        cancelled.failed_receipts().count(),
        1,
        "{:#?}",
        cancelled.logs()
    );
    let credit = |v: serde_json::Value| v.as_str().unwrap().parse::<u128>().unwrap();
    let bobs_credit = json!({ "account_id": bob_id, "asset": { "kind": "near" } });
    let owed = credit(chain.view(MARKET, "credit_of", bobs_credit.clone()).await);
    assert!(owed >= NEAR, "the failed refund is a credit: {owed}");
    let bob = chain
        .create_account(&suite.root, bob_id, 1, None, vec![])
        .await;
    let near_crypto::Signer::InMemory(bob) = &bob else {
        panic!("bob signs in memory")
    };
    tab.eval("document.querySelector('#wallet-bar button').click()")
        .await; // disconnect alice
    tab.wait_for("document.getElementById('connect')", 20, "signed out")
        .await;
    tab.eval("document.getElementById('connect').click()").await;
    act_connect(
        &tab,
        &json!({ "account": bob_id, "secret": bob.secret_key.to_string() }),
    )
    .await;
    tab.wait_for(
        &format!("document.querySelector('[data-account={bob_id:?}]')"),
        20,
        "bob signed in",
    )
    .await;
    indexed(&format!("{base}/v1/accounts/{bob_id}")).await;
    tab.goto(&format!("{base}/#/account/{bob_id}")).await;
    let text = act(&browser, &tab, "withdraw-near", &[], "wallet-withdrawn").await;
    assert!(text.starts_with("withdrawn 1"), "{text}");
    assert_eq!(
        credit(chain.view(MARKET, "credit_of", bobs_credit).await),
        0,
        "withdrawn on chain"
    );

    drop(tab);
    drop(browser);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), app)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Waits until the indexer answers `url` with 200.
async fn indexed(url: &str) {
    let client = reqwest::Client::new();
    for _ in 0..600 {
        if client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the indexer never served {url}");
}

/// Fills the imported-key form (account id, secret key) and submits it.
async fn act_connect(tab: &Tab<'_>, fields: &serde_json::Value) {
    tab.eval(&format!(
        "(() => {{ const f = document.getElementById('import-key'); const v = {fields}; f.elements.account.value = v.account; f.elements.secret.value = v.secret; f.requestSubmit(); }})()"
    ))
    .await;
}
