//! The explorer pages in a real headless browser (Debian `chromium`, driven through the
//! DevTools protocol, see `cdp/`): the indexer serves the built bundle (`explorer/build.sh`)
//! over the fixture scenario; every page must load without console errors, show the
//! scenario's figures, link to the others, and never show a raw yocto amount. A screenshot
//! of every page is written under `$CARGO_TARGET_DIR/explorer-screenshots` (printed).
//!
//! Without a browser the test says so loudly and passes; `scripts/test.sh` installs
//! `chromium` and builds the bundle first.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod cdp;
mod common;

use cdp::{Browser, Tab};
use common::*;
use indexer::config::{Config, ExplorerConfig, SourceKind, default_explorer_dir};
use indexer::fixture::scenario;
use std::path::PathBuf;
use std::time::Duration;

/// The built pages; a clear failure when they are missing.
pub fn explorer_bundle() -> PathBuf {
    let dir =
        std::env::var_os("ECLOUD_EXPLORER_DIR").map_or_else(default_explorer_dir, PathBuf::from);
    assert!(
        dir.join("index.html").is_file() && dir.join("explorer.js").is_file(),
        "no explorer bundle in {}: run explorer/build.sh first (scripts/test.sh does)",
        dir.display()
    );
    dir
}

pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let dir = target.join("explorer-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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
    write_scenario(&blocks_dir);
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
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Ok(resp) = client.get(format!("http://{listen}/v1/jobs")).send().await else {
            continue;
        };
        let page: serde_json::Value = resp.json().await.unwrap();
        if page["items"].as_array().is_some_and(|i| i.len() == 4) {
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
    assert_shows(&text, "search", &["node 1", "job 1"]);
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
