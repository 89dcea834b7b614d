//! What the private, paid API adds to a request, measured in one run on localnet: an
//! OpenAI-compatible upstream that answers at once (so inference takes no time), called
//! directly and through `ecloud proxy` -> OHTTP -> `worker run` (payment, signatures) -> the
//! same upstream.
//!
//! Prints
//!   BENCH paid_api.direct_p50_ms / direct_p99_ms        the upstream alone
//!   BENCH paid_api.proxied_p50_ms / proxied_p99_ms      through proxy and node
//!   BENCH paid_api.added_p50_ms / added_p99_ms          the difference (goal: p50 < 5 ms)
//!   BENCH paid_api.latency_ratio_p50                    proxied / direct
//!   BENCH paid_api.stream_ttft_ms                       first content chunk, streamed (p50)
//!   BENCH paid_api.stream_tokens_per_s                  chunks/s of a 200-token stream
//!   BENCH paid_api.requests_per_s                       8 clients at once, vouchers included
//! (the gas of open / settle / close is printed by the channels sandbox suite.)
//!
//! Needs what worker/tests/paid_api_e2e.rs needs but gemma and the SDK; scripts/bench.sh runs
//! it with optimised binaries. `ECLOUD_BENCH_REQUESTS` (default 200) sets the sample size.

#[path = "../tests/support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};
use support::paid_stack::{NodeSetup, PaidStack};

const MODEL: &str = "bench";
/// 1 NEAR per million tokens in and out.
const PRICE: &str = "bench:1000000000000000000000000:1000000000000000000000000";
const STREAM_TOKENS: usize = 200;
const CLIENTS: usize = 8;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn chunk(content: Option<&str>, finish: Option<&str>, usage: Option<Value>) -> String {
    let choices = match (content, finish) {
        (None, None) => json!([]),
        _ => json!([{"index": 0, "delta": {"content": content}, "finish_reason": finish}]),
    };
    let mut c = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
        "model": "upstream", "choices": choices});
    if let Some(u) = usage {
        c["usage"] = u;
    }
    format!("data: {c}\n\n")
}

/// An OpenAI-compatible upstream that answers at once: one token, or `STREAM_TOKENS` streamed.
async fn upstream(body: axum::Json<Value>) -> axum::response::Response {
    let usage =
        |n: usize| json!({"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n});
    if body["stream"].as_bool() == Some(true) {
        let n = body["max_tokens"]
            .as_u64()
            .unwrap_or(1)
            .min(STREAM_TOKENS as u64) as usize;
        let mut events: Vec<String> = (0..n).map(|_| chunk(Some("x"), None, None)).collect();
        events.push(chunk(None, Some("length"), None));
        events.push(chunk(None, None, Some(usage(n))));
        events.push("data: [DONE]\n\n".into());
        let stream = futures_util::stream::iter(events.into_iter().map(Ok::<_, Infallible>));
        return (
            [("content-type", "text/event-stream")],
            Body::from_stream(stream),
        )
            .into_response();
    }
    axum::Json(
        json!({"id": "chatcmpl-bench", "object": "chat.completion", "created": 1,
        "model": "upstream", "choices": [{"index": 0, "message": {"role": "assistant",
        "content": "x"}, "finish_reason": "length"}], "usage": usage(1)}),
    )
    .into_response()
}

async fn serve_upstream() -> String {
    let app = Router::new()
        .route("/v1/chat/completions", post(upstream))
        .route(
            "/v1/models",
            get(|| async {
                axum::Json(json!({"object": "list", "data": [{"id": "upstream",
                "object": "model", "created": 1, "owned_by": "bench"}]}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("upstream") });
    // OpenAI's base URL shape, as `--upstream-url` takes it.
    format!("http://{addr}/v1")
}

fn request(stream: bool, max_tokens: usize) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens, "stream": stream})
}

async fn one(http: &reqwest::Client, base: &str, body: &Value) -> f64 {
    let started = Instant::now();
    let response = http
        .post(format!("{base}/chat/completions"))
        .json(body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let bytes = response.bytes().await.expect("body");
    assert!(
        status.is_success(),
        "{status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    started.elapsed().as_secs_f64() * 1e3
}

async fn latencies(http: &reqwest::Client, base: &str, n: usize) -> Vec<f64> {
    let body = request(false, 1);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(one(http, base, &body).await);
    }
    out.sort_by(f64::total_cmp);
    out
}

/// (time to first content chunk, chunks per second after it) of one streamed request.
async fn stream_once(http: &reqwest::Client, base: &str) -> (f64, f64) {
    let started = Instant::now();
    let mut response = http
        .post(format!("{base}/chat/completions"))
        .json(&request(true, STREAM_TOKENS))
        .send()
        .await
        .expect("stream");
    assert!(response.status().is_success(), "{}", response.status());
    let (mut first, mut chunks, mut text) = (None, 0usize, String::new());
    while let Some(bytes) = response.chunk().await.expect("chunk") {
        text.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            if event.contains("\"content\":\"x\"") {
                first.get_or_insert_with(Instant::now);
                chunks += 1;
            }
        }
    }
    let first = first.expect("a content chunk");
    let ttft = (first - started).as_secs_f64() * 1e3;
    let rate = chunks.saturating_sub(1) as f64 / first.elapsed().as_secs_f64().max(1e-9);
    (ttft, rate)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("ECLOUD_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream_url = serve_upstream().await;
    let stack = PaidStack::start(
        dir.path(),
        NodeSetup {
            backend: vec![
                "--backend".into(),
                "openai".into(),
                "--upstream-url".into(),
                upstream_url.clone(),
                "--model".into(),
                format!("{MODEL}=upstream"),
            ],
            prices: &[PRICE],
            worker_extra: &[],
            proxy_extra: &["--deposit", "5 NEAR"],
        },
    )
    .await;
    let http = reqwest::Client::new();
    let proxied_base = stack.proxy_url.clone();
    // Warm up: the proxy verifies the node and opens its channel on the first request.
    for _ in 0..5 {
        one(&http, &proxied_base, &request(false, 1)).await;
    }

    let direct = latencies(&http, &upstream_url, n).await;
    let proxied = latencies(&http, &proxied_base, n).await;
    let (d50, d99) = (percentile(&direct, 0.5), percentile(&direct, 0.99));
    let (p50, p99) = (percentile(&proxied, 0.5), percentile(&proxied, 0.99));
    println!("BENCH paid_api.direct_p50_ms {d50:.2} ms");
    println!("BENCH paid_api.direct_p99_ms {d99:.2} ms");
    println!("BENCH paid_api.proxied_p50_ms {p50:.2} ms");
    println!("BENCH paid_api.proxied_p99_ms {p99:.2} ms");
    println!("BENCH paid_api.added_p50_ms {:.2} ms", p50 - d50);
    println!("BENCH paid_api.added_p99_ms {:.2} ms", p99 - d99);
    println!(
        "BENCH paid_api.latency_ratio_p50 {:.2} x",
        p50 / d50.max(1e-9)
    );

    let mut ttfts = Vec::new();
    let mut rates = Vec::new();
    for _ in 0..10 {
        let (ttft, rate) = stream_once(&http, &proxied_base).await;
        ttfts.push(ttft);
        rates.push(rate);
    }
    ttfts.sort_by(f64::total_cmp);
    rates.sort_by(f64::total_cmp);
    println!(
        "BENCH paid_api.stream_ttft_ms {:.2} ms",
        percentile(&ttfts, 0.5)
    );
    println!(
        "BENCH paid_api.stream_tokens_per_s {:.0} tokens/s",
        percentile(&rates, 0.5)
    );

    let started = Instant::now();
    let http = Arc::new(http);
    let per_client = n.div_ceil(CLIENTS);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (http, base) = (http.clone(), proxied_base.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_client {
                one(&http, &base, &request(false, 1)).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    let rate = (per_client * CLIENTS) as f64 / started.elapsed().as_secs_f64();
    println!("BENCH paid_api.requests_per_s {rate:.1} requests/s");
    drop(stack);
    tokio::time::sleep(Duration::from_millis(100)).await;
}
