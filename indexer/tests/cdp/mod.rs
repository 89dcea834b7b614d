//! A small Chrome DevTools Protocol client over Chromium's `--remote-debugging-pipe` (no
//! websocket, no extra crate): commands go to the browser's fd 3, answers and events come
//! from its fd 4, one JSON message per NUL-terminated frame. The two descriptors are named
//! pipes the shell opens before `exec`ing Chromium, so no unsafe `pre_exec` is needed.
//!
//! Enough to drive the explorer pages: open a tab, navigate, evaluate JavaScript, wait for a
//! condition, take a screenshot, and collect console errors and uncaught exceptions.
#![allow(dead_code)]

use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// The Chromium binary: `ECLOUD_CHROMIUM`, else the first of the usual names that runs.
pub fn browser() -> Option<String> {
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

/// The built pages (`explorer/build.sh`); a clear failure when they are missing.
pub fn explorer_bundle() -> PathBuf {
    let dir = std::env::var_os("ECLOUD_EXPLORER_DIR")
        .map_or_else(indexer::config::default_explorer_dir, PathBuf::from);
    assert!(
        dir.join("index.html").is_file() && dir.join("explorer.js").is_file(),
        "no explorer bundle in {}: run explorer/build.sh first (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// Where the page tests write their screenshots: `$CARGO_TARGET_DIR/explorer-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let dir = target.join("explorer-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

pub struct Browser {
    child: std::process::Child,
    to_browser: Mutex<std::fs::File>,
    pending: Pending,
    /// Console errors, uncaught exceptions and failed loads, as text.
    pub problems: Arc<Mutex<Vec<String>>>,
    next_id: AtomicU64,
    _dir: tempfile::TempDir,
}

/// One tab (a target attached with a flat session).
pub struct Tab<'b> {
    browser: &'b Browser,
    session: String,
}

impl Browser {
    pub fn launch(chromium: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (cmd_pipe, out_pipe) = (dir.path().join("in"), dir.path().join("out"));
        for p in [&cmd_pipe, &out_pipe] {
            let ok = std::process::Command::new("mkfifo")
                .arg(p)
                .status()
                .unwrap()
                .success();
            assert!(ok, "mkfifo {}", p.display());
        }
        let profile = dir.path().join("profile");
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<"$CDP_IN" 4>"$CDP_OUT""#)
            .arg(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ])
            .env("CDP_IN", &cmd_pipe)
            .env("CDP_OUT", &out_pipe)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The shell opens `in` first, then `out`: open them in the same order.
        let to_browser = std::fs::OpenOptions::new()
            .write(true)
            .open(&cmd_pipe)
            .unwrap();
        let from_browser = std::fs::File::open(&out_pipe).unwrap();
        let pending: Pending = Arc::default();
        let problems: Arc<Mutex<Vec<String>>> = Arc::default();
        {
            let (pending, problems) = (pending.clone(), problems.clone());
            std::thread::spawn(move || read_loop(from_browser, &pending, &problems));
        }
        Self {
            child,
            to_browser: Mutex::new(to_browser),
            pending,
            problems,
            next_id: AtomicU64::new(1),
            _dir: dir,
        }
    }

    /// Sends one command and waits (at most 30 s) for its answer; a CDP error panics.
    pub async fn send(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        {
            let mut w = self.to_browser.lock().unwrap();
            w.write_all(msg.to_string().as_bytes()).unwrap();
            w.write_all(b"\0").unwrap();
            w.flush().unwrap();
        }
        let answer = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .unwrap_or_else(|_| panic!("no answer to {method} within 30 s"))
            .unwrap();
        if let Some(e) = answer.get("error") {
            panic!("{method} failed: {e}");
        }
        answer["result"].clone()
    }

    /// A new tab, 1280 pixels wide, with console and exception reporting on.
    pub async fn tab(&self) -> Tab<'_> {
        let target = self
            .send(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = self
            .send(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        let tab = Tab {
            browser: self,
            session: attached["sessionId"].as_str().unwrap().to_owned(),
        };
        for domain in ["Runtime.enable", "Page.enable", "Log.enable"] {
            tab.send(domain, json!({})).await;
        }
        tab.send(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        tab
    }

    pub fn take_problems(&self) -> Vec<String> {
        std::mem::take(&mut *self.problems.lock().unwrap())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_loop(from: std::fs::File, pending: &Pending, problems: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(from);
    let mut frame = Vec::new();
    loop {
        frame.clear();
        match reader.read_until(0, &mut frame) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if frame.last() == Some(&0) {
            frame.pop();
        }
        let Ok(msg) = serde_json::from_slice::<Value>(&frame) else {
            continue;
        };
        if let Some(id) = msg.get("id").and_then(Value::as_u64) {
            if let Some(tx) = pending.lock().unwrap().remove(&id) {
                let _ = tx.send(msg);
            }
            continue;
        }
        let params = &msg["params"];
        let problem = match msg["method"].as_str() {
            Some("Runtime.exceptionThrown") => Some(format!(
                "uncaught: {}",
                params["exceptionDetails"]["exception"]["description"]
                    .as_str()
                    .unwrap_or_else(|| params["exceptionDetails"]["text"].as_str().unwrap_or("?"))
            )),
            Some("Runtime.consoleAPICalled")
                if matches!(params["type"].as_str(), Some("error" | "assert")) =>
            {
                Some(format!(
                    "console.{}: {}",
                    params["type"].as_str().unwrap_or("?"),
                    params["args"]
                        .as_array()
                        .map(|a| a
                            .iter()
                            .map(|v| v["value"]
                                .as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| v["description"].to_string()))
                            .collect::<Vec<_>>()
                            .join(" "))
                        .unwrap_or_default()
                ))
            }
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => Some(format!(
                "log: {} {}",
                params["entry"]["text"].as_str().unwrap_or("?"),
                params["entry"]["url"].as_str().unwrap_or("")
            )),
            _ => None,
        };
        if let Some(p) = problem {
            problems.lock().unwrap().push(p);
        }
    }
}

impl Tab<'_> {
    pub async fn send(&self, method: &str, params: Value) -> Value {
        self.browser.send(Some(&self.session), method, params).await
    }

    pub async fn goto(&self, url: &str) {
        self.send("Page.navigate", json!({"url": url})).await;
    }

    /// Evaluates `expr` (awaiting a promise) and returns its value as JSON; a thrown
    /// exception panics with its text.
    pub async fn eval(&self, expr: &str) -> Value {
        let r = self
            .send(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!(
                "evaluating {expr}: {}",
                e["exception"]["description"]
                    .as_str()
                    .unwrap_or(&e.to_string())
            );
        }
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is truthy (at most `secs`), panicking with `what` and the page's
    /// text otherwise.
    pub async fn wait_for(&self, expr: &str, secs: u64, what: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self
                .send(
                    "Runtime.evaluate",
                    json!({"expression": format!("!!({expr})"), "returnByValue": true}),
                )
                .await;
            if r["result"]["value"] == json!(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what} ({expr}); the page shows:\n{}",
                    self.text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The visible text of the page.
    pub async fn text(&self) -> String {
        self.eval("document.body.innerText")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A full-page PNG written to `path`.
    pub async fn screenshot(&self, path: &Path) -> PathBuf {
        let r = self
            .send(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
        path.to_owned()
    }
}
