//! End to end over real sockets: an axum app behind the gateway, a client that seals a
//! request and opens each server-sent event as it arrives, and a TCP forwarder in between
//! (standing in for any proxy or TLS terminator) that records every byte it relays and sees
//! no plaintext.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::convert::Infallible;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Extension;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, Sse};
use axum::routing::post;
use futures_util::stream;
use http_body::Frame;
use http_body_util::StreamBody;
use sealed_api::ResponseSigner;
use sealed_api::SigningAlgo;
use sealed_api::bhttp::Request;
use sealed_api::client::{CONTENT_TYPE_CHUNKED_REQUEST, CONTENT_TYPE_REQUEST};
use sealed_api::gateway::{GATEWAY_PATH, KEYS_PATH};
use sealed_api::{
    Gateway, GatewayKey, KeyConfig, Limits, SealedClient, SealedRequest, StreamEvent,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const PROMPT: &str = "the secret prompt 7d1e";
const EVENTS: usize = 20;

fn token(i: usize) -> String {
    format!("tok-secret-{i:02}")
}

/// The node's response-signing keys in this test.
fn signer() -> ResponseSigner {
    ResponseSigner::from_secrets(&[3; 32], &[4; 32]).expect("keys")
}

/// The trailer that carries the response signature in the final sealed chunk.
const SIGNATURE_TRAILER: &str = "x-response-signature";

/// One step of the toy stream: the SSE text sent so far.
struct Toy {
    i: usize,
    request: String,
    sent: String,
    acks: Arc<tokio::sync::Mutex<mpsc::Receiver<usize>>>,
}

/// The toy streaming route: one SSE event per token, then the signature over the exact
/// request body and the full SSE text as a trailer. It sends event i+1 only after the client
/// said it opened event i, so the test deadlocks (and times out) if anything buffers.
fn chat_route(acks: Arc<tokio::sync::Mutex<mpsc::Receiver<usize>>>) -> Router {
    Router::new()
        .route(
            "/v1/chat/completions",
            post(
                move |sealed: Option<Extension<SealedRequest>>, request: String| async move {
                    assert!(
                        sealed.is_some_and(|s| s.streaming),
                        "came through the gateway"
                    );
                    assert!(request.contains(PROMPT));
                    let toy = Toy {
                        i: 0,
                        request,
                        sent: String::new(),
                        acks: acks.clone(),
                    };
                    let frames = stream::unfold(Some(toy), |toy| async move {
                        let mut toy = toy?;
                        if toy.i == EVENTS {
                            let sig = signer().sign(
                                SigningAlgo::Ecdsa,
                                toy.request.as_bytes(),
                                toy.sent.as_bytes(),
                            );
                            let mut trailers = HeaderMap::new();
                            trailers.insert(
                                SIGNATURE_TRAILER,
                                serde_json::to_string(&sig)
                                    .expect("json")
                                    .parse()
                                    .expect("header value"),
                            );
                            return Some((Ok::<_, Infallible>(Frame::trailers(trailers)), None));
                        }
                        if toy.i > 0 {
                            let got = toy.acks.lock().await.recv().await;
                            assert_eq!(got, Some(toy.i - 1), "client acked the previous event");
                        }
                        let event = format!("data: {{\"token\":\"{}\"}}\n\n", token(toy.i));
                        toy.sent.push_str(&event);
                        toy.i += 1;
                        Some((Ok(Frame::data(Bytes::from(event))), Some(toy)))
                    });
                    (
                        [(header::CONTENT_TYPE, "text/event-stream")],
                        Body::new(StreamBody::new(frames)),
                    )
                },
            ),
        )
        .route(
            "/v1/echo",
            post(
                |sealed: Option<Extension<SealedRequest>>, body: String| async move {
                    assert!(sealed.is_some_and(|s| !s.streaming));
                    format!("echo: {body}")
                },
            ),
        )
        .route(
            "/v1/broken",
            post(|| async {
                // One event, then (once it has surely been flushed) the backend fails.
                let events = stream::unfold(0, |i| async move {
                    match i {
                        0 => Some((Ok(Event::default().data("first")), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            Some((Err(std::io::Error::other("backend died")), 2))
                        }
                        _ => None,
                    }
                });
                Sse::new(events)
            }),
        )
}

/// Relays TCP connections to `upstream`, recording every byte in both directions.
async fn forwarder(
    upstream: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(upstream).await.expect("upstream");
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(copy(cr, sw, seen.clone()));
            tokio::spawn(copy(sr, cw, seen.clone()));
        }
    });
    addr
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    seen: Arc<Mutex<Vec<u8>>>,
) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 4096];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => {
                seen.lock().expect("lock").extend_from_slice(&buf[..n]);
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn inner_request(path: &str) -> Request {
    Request {
        method: "POST".into(),
        scheme: "https".into(),
        authority: "node.example".into(),
        path: path.into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: format!(
            r#"{{"model":"toy","stream":true,"messages":[{{"role":"user","content":"{PROMPT}"}}]}}"#
        )
        .into_bytes(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_streaming_through_a_proxy_that_sees_no_plaintext() {
    let key = GatewayKey::generate(1);
    let attested_key = key.config().public_key; // what the client read from the attestation
    let (ack_tx, ack_rx) = mpsc::channel(EVENTS);
    let app = Gateway::new(key, Limits::default())
        .router(chat_route(Arc::new(tokio::sync::Mutex::new(ack_rx))));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let node = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let proxy = forwarder(node, seen.clone()).await;
    let base = format!("http://{proxy}");
    // One connection per request: a stream cut on purpose below must not poison a pooled one.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");

    // The key configuration, checked against the attested key.
    let keys = http
        .get(format!("{base}{KEYS_PATH}"))
        .send()
        .await
        .expect("keys");
    let configs = KeyConfig::decode_list(&keys.bytes().await.expect("body")).expect("decode");
    let client =
        SealedClient::for_attested_key(configs[0].clone(), &attested_key, Limits::default())
            .expect("attested key");
    assert_eq!(
        SealedClient::for_attested_key(configs[0].clone(), &[7; 32], Limits::default()).err(),
        Some(sealed_api::OhttpError::NotAttestedKey),
        "a configuration with another key is refused"
    );

    // Streaming: each event opens as it arrives (the route waits for our ack of each).
    let (wire, mut opener) = client
        .seal_streaming(&inner_request("/v1/chat/completions"))
        .expect("seal");
    let mut response = http
        .post(format!("{base}{GATEWAY_PATH}"))
        .header("content-type", CONTENT_TYPE_CHUNKED_REQUEST)
        .body(wire)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200);
    let mut sse_text = Vec::new();
    let mut data_events = 0usize;
    let mut head = None;
    let run = async {
        while let Some(bytes) = response.chunk().await.expect("chunk") {
            for ev in opener.feed(&bytes).expect("opens") {
                match ev {
                    StreamEvent::Head(h) => head = Some(h),
                    StreamEvent::Data(d) => {
                        let text = String::from_utf8(d.clone()).expect("utf8");
                        assert!(
                            text.contains(&token(data_events)),
                            "event {data_events} in order: {text}"
                        );
                        sse_text.extend_from_slice(&d);
                        ack_tx.send(data_events).await.expect("ack");
                        data_events += 1;
                    }
                    StreamEvent::End { .. } => panic!("the end comes with the final chunk"),
                }
            }
        }
        opener.finish().expect("final chunk")
    };
    let last = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("events arrive one by one (nothing buffers the stream)");
    // The final sealed chunk carries the node's signature over the exact request body and the
    // full SSE text, which the client checks against what it received.
    let [StreamEvent::End { trailers }] = &last[..] else {
        panic!("one final event: {last:?}");
    };
    let (_, sig) = trailers
        .iter()
        .find(|(n, _)| n == SIGNATURE_TRAILER)
        .expect("signature trailer");
    let sig: sealed_api::ResponseSignature = serde_json::from_str(sig).expect("signature json");
    let request_body = inner_request("/v1/chat/completions").body;
    assert_eq!(
        sig.verify_exchange(
            &request_body,
            &sse_text,
            &signer().address(SigningAlgo::Ecdsa)
        ),
        Ok(())
    );
    assert_eq!(data_events, EVENTS);
    let head = head.expect("head");
    assert_eq!(head.status, 200);
    assert!(
        head.headers
            .iter()
            .any(|(n, v)| n == "content-type" && v == "text/event-stream")
    );
    assert!(
        String::from_utf8(sse_text.clone())
            .expect("utf8")
            .starts_with("data: {\"token\":\"tok-secret-00\"}\n\n")
    );

    // A whole request and response.
    let (wire, pending) = client.seal(&inner_request("/v1/echo")).expect("seal");
    let response = http
        .post(format!("{base}{GATEWAY_PATH}"))
        .header("content-type", CONTENT_TYPE_REQUEST)
        .body(wire)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200);
    let res = pending
        .open(&response.bytes().await.expect("body"))
        .expect("opens");
    assert_eq!(res.status, 200);
    assert!(
        String::from_utf8(res.body)
            .expect("utf8")
            .starts_with("echo: {\"model\"")
    );

    // A backend that dies mid-stream: the client sees a truncated stream, not a short one.
    let (wire, mut opener) = client
        .seal_streaming(&inner_request("/v1/broken"))
        .expect("seal");
    let mut response = http
        .post(format!("{base}{GATEWAY_PATH}"))
        .header("content-type", CONTENT_TYPE_CHUNKED_REQUEST)
        .body(wire)
        .send()
        .await
        .expect("post");
    let mut got_first = false;
    let outcome = loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                for ev in opener.feed(&bytes).expect("opens") {
                    got_first |= ev == StreamEvent::Data(b"data: first\n\n".to_vec());
                }
            }
            Ok(None) => break opener.finish().map(|_| ()),
            Err(_) => break Err(sealed_api::OhttpError::Truncated), // the transport was cut
        }
    };
    assert!(got_first);
    assert_eq!(outcome, Err(sealed_api::OhttpError::Truncated));

    // A tampered request is a plain error that says nothing of any content; a request for
    // another key configuration is told so (422), so the client can fetch the new one.
    let (mut wire, _) = client.seal(&inner_request("/v1/echo")).expect("seal");
    let last = wire.len() - 1;
    wire[last] ^= 1;
    let mut other_key = wire.clone();
    other_key[0] ^= 1;
    for (body, status) in [(wire, 400), (other_key, 422), (vec![1u8; 20], 400)] {
        let response = http
            .post(format!("{base}{GATEWAY_PATH}"))
            .header("content-type", CONTENT_TYPE_REQUEST)
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), status);
    }
    let response = http
        .post(format!("{base}{GATEWAY_PATH}"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(
        response.status(),
        415,
        "plaintext is never accepted at the gateway"
    );

    // The proxy relayed everything and saw none of it.
    let seen = seen.lock().expect("lock").clone();
    assert!(
        seen.len() > 20 * 256,
        "the proxy carried the traffic ({} bytes)",
        seen.len()
    );
    assert!(
        contains(&seen, b"message/ohttp-chunked-res"),
        "the recording is the traffic"
    );
    for secret in [
        PROMPT.as_bytes(),
        b"tok-secret",
        b"text/event-stream",
        b"/v1/chat",
        b"echo:",
    ] {
        assert!(
            !contains(&seen, secret),
            "the proxy saw {:?}",
            String::from_utf8_lossy(secret)
        );
    }
}
