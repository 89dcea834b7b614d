//! Cost of the sealed API layer, without network or inference: what OHTTP, padding and
//! signing add to each request. Prints `BENCH` lines (see scripts/bench.sh):
//!
//! - `BENCH sealed_api.request_1k.p50 <t> us` (and `.p99`): a 1 KiB request sealed by the
//!   client, opened by the gateway, a 1 KiB response sealed and opened (whole OHTTP, both
//!   directions, Binary HTTP and padding included; HPKE's two X25519 operations dominate).
//! - `BENCH sealed_api.request_1k.rate <n> req/s`: the same, one core, back to back.
//! - `BENCH sealed_api.stream_200.p50 <t> ms` (and `.p99`): a chunked request and a
//!   200-event streamed response (SSE-sized events, each its own padded chunk), sealed and
//!   opened event by event.
//! - `BENCH sealed_api.stream_200.chunk_rate <n> chunks/s` and `.throughput <x> MiB/s` (of
//!   padded plaintext through seal + open).
//! - `BENCH sealed_api.sign.ecdsa <t> us`, `.sign.ed25519`, `.verify.ecdsa`: one response
//!   signature (hashing two 1 KiB bodies included).
//!
//! Run: `cargo run --profile bench -p sealed-api --example bench`.

use std::time::{Duration, Instant};

use sealed_api::bhttp::{Request, ResponseHead};
use sealed_api::chunked;
use sealed_api::ohttp;
use sealed_api::stream::StreamSealer;
use sealed_api::{GatewayKey, Limits, ResponseSigner, SealedClient, SigningAlgo};

const REQUESTS: usize = 1000;
const STREAMS: usize = 100;
const EVENTS: usize = 200;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn request(body_len: usize) -> Request {
    Request {
        method: "POST".into(),
        scheme: "https".into(),
        authority: "node".into(),
        path: "/v1/chat/completions".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: vec![b'a'; body_len],
    }
}

fn whole_exchange(key: &GatewayKey, client: &SealedClient, limits: &Limits) {
    let (wire, pending) = client.seal(&request(1024)).expect("seal");
    let (bhttp, sealer) = ohttp::decapsulate_request(key, &wire, limits).expect("open request");
    assert!(bhttp.len() >= 1024);
    let mut msg = sealed_api::bhttp::encode_response(&sealed_api::bhttp::Response {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: vec![b'b'; 1024],
    });
    sealed_api::padding::pad_message(&mut msg);
    let res = pending
        .open(&sealer.seal(&msg).expect("seal response"))
        .expect("open response");
    assert_eq!(res.body.len(), 1024);
}

/// Returns the padded plaintext bytes carried by the stream.
fn stream_exchange(key: &GatewayKey, client: &SealedClient, limits: &Limits) -> usize {
    let (wire, mut opener) = client.seal_streaming(&request(1024)).expect("seal");
    let (_, writer) = chunked::open_chunked_request(key, &wire, limits).expect("open request");
    let mut sealer = StreamSealer::new(writer);
    let head = ResponseHead {
        status: 200,
        headers: vec![("content-type".into(), "text/event-stream".into())],
    };
    let mut events = opener
        .feed(&sealer.head(&head).expect("head"))
        .expect("open head")
        .len();
    let mut carried = 0;
    for i in 0..EVENTS {
        let event = format!(
            "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" tok{i}\"}}}}]}}\n\n"
        );
        let sealed = sealer.data(event.as_bytes()).expect("seal event");
        carried += sealed.len();
        events += opener.feed(&sealed).expect("open event").len();
    }
    let end = sealer.end(&[]).expect("end");
    events += opener.feed(&end).expect("feed end").len();
    events += opener.finish().expect("finish").len();
    assert_eq!(events, EVENTS + 2);
    carried
}

fn main() {
    let limits = Limits::default();
    let key = GatewayKey::generate(1);
    let client = SealedClient::new(key.config().clone(), limits);

    for _ in 0..20 {
        whole_exchange(&key, &client, &limits);
    }
    let mut times = Vec::with_capacity(REQUESTS);
    let start = Instant::now();
    for _ in 0..REQUESTS {
        let t = Instant::now();
        whole_exchange(&key, &client, &limits);
        times.push(t.elapsed());
    }
    let total = start.elapsed();
    times.sort_unstable();
    println!(
        "BENCH sealed_api.request_1k.p50 {:.1} us",
        percentile(&times, 0.5).as_secs_f64() * 1e6
    );
    println!(
        "BENCH sealed_api.request_1k.p99 {:.1} us",
        percentile(&times, 0.99).as_secs_f64() * 1e6
    );
    println!(
        "BENCH sealed_api.request_1k.rate {:.0} req/s",
        REQUESTS as f64 / total.as_secs_f64()
    );

    let mut times = Vec::with_capacity(STREAMS);
    let mut carried = 0usize;
    let start = Instant::now();
    for _ in 0..STREAMS {
        let t = Instant::now();
        carried += stream_exchange(&key, &client, &limits);
        times.push(t.elapsed());
    }
    let total = start.elapsed();
    times.sort_unstable();
    println!(
        "BENCH sealed_api.stream_200.p50 {:.2} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3
    );
    println!(
        "BENCH sealed_api.stream_200.p99 {:.2} ms",
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "BENCH sealed_api.stream_200.chunk_rate {:.0} chunks/s",
        (STREAMS * EVENTS) as f64 / total.as_secs_f64()
    );
    println!(
        "BENCH sealed_api.stream_200.throughput {:.1} MiB/s",
        carried as f64 / total.as_secs_f64() / (1024.0 * 1024.0)
    );

    let signer = ResponseSigner::from_secrets(&[7; 32], &[9; 32]).expect("keys");
    let (req, res) = (vec![b'a'; 1024], vec![b'b'; 1024]);
    for algo in [SigningAlgo::Ecdsa, SigningAlgo::Ed25519] {
        let n = 200;
        let start = Instant::now();
        let mut sig = None;
        for _ in 0..n {
            sig = Some(signer.sign(algo, &req, &res));
        }
        println!(
            "BENCH sealed_api.sign.{algo} {:.1} us",
            start.elapsed().as_secs_f64() * 1e6 / n as f64
        );
        let sig = sig.expect("signed");
        let address = signer.address(algo);
        let start = Instant::now();
        for _ in 0..n {
            sig.verify_exchange(&req, &res, &address).expect("verifies");
        }
        println!(
            "BENCH sealed_api.verify.{algo} {:.1} us",
            start.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }
}
