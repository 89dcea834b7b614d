//! The explorer page in a real headless browser (Debian `chromium`): it must render the
//! indexed nodes, jobs and models from the live API. Without a browser the test says so
//! loudly and passes; `scripts/test.sh` installs `chromium` so it runs there.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use common::*;
use indexer::config::{Config, SourceKind};
use indexer::fixture::scenario;
use std::time::Duration;

fn browser() -> Option<String> {
    if let Ok(b) = std::env::var("ECLOUD_CHROMIUM") {
        return Some(b);
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .map(str::to_owned)
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explorer_page_renders_live_data_in_chromium() {
    let Some(chromium) = browser() else {
        eprintln!(
            "SKIPPED (loudly): no chromium found (install Debian 'chromium' or set ECLOUD_CHROMIUM)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let blocks_dir = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks_dir).unwrap();
    write_scenario(&blocks_dir);
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut follow = fast_config(None);
    follow.start_height = FIRST_HEIGHT;
    let config = Config {
        database_url: indexer::db::sqlite_url_in(&dir.path().join("data")),
        listen,
        source: SourceKind::Fixtures,
        source_url: blocks_dir.display().to_string(),
        follow,
        contracts: scenario::contracts(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = tokio::spawn(indexer::app::run(config, async move {
        let _ = stopped.await;
    }));
    // Wait until the API answers with both nodes.
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
    let profile = dir.path().join("chromium-profile");
    let out = tokio::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=5000",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            &format!("http://{listen}/"),
        ])
        .output()
        .await
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "indexed height",
        scenario::OPERATOR,
        "H200",
        "Llama 3 8B",
        scenario::MODEL_TOKEN,
        "settled",
        "succeeded",
    ] {
        assert!(
            dom.contains(expected),
            "rendered page lacks '{expected}':\n{dom}"
        );
    }
    assert!(
        !dom.contains("class=\"error\""),
        "the page reports an API error: {dom}"
    );
    // Amounts for people (the settled job's 1,000 yocto, the nodes' prices), never raw yocto.
    assert!(
        dom.contains("0.000001 NEAR"),
        "amounts are not shown in NEAR: {dom}"
    );
    let longest_digit_run = dom
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(
        longest_digit_run < 19,
        "a raw amount ({longest_digit_run} digits) on the page: {dom}"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), app)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
