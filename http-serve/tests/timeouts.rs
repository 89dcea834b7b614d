//! The server closes connections that keep it waiting: a partial request head, an idle
//! kept-alive connection; complete requests are answered and shutdown is graceful.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use axum::Router;
use axum::routing::get;
use http_serve::{Timeouts, serve};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_READ: Duration = Duration::from_millis(400);

async fn start() -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(|| async { "hello" }));
    let timeouts = Timeouts {
        header_read: HEADER_READ,
        idle: Duration::from_secs(5),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        serve(listener, app, timeouts, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stop, server)
}

/// Reads until the server closes the connection; returns what it sent and when it closed.
async fn read_to_close(stream: &mut TcpStream) -> (String, Instant) {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&out).into(), Instant::now());
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open for 10 s"),
        }
    }
}

#[tokio::test]
async fn a_partial_request_head_is_closed_after_the_header_timeout() {
    let (addr, _stop, _server) = start().await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .unwrap();
    let (_, closed) = read_to_close(&mut slow).await;
    let open_for = closed - started;
    assert!(open_for >= HEADER_READ, "closed too early: {open_for:?}");
    assert!(open_for < HEADER_READ * 5, "closed only after {open_for:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_and_requests_still_work() {
    let (addr, _stop, _server) = start().await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = client.read(&mut buf).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"),
        "{answer}"
    );
    // Then nothing: the kept-alive connection does not stay open for ever.
    let started = Instant::now();
    let (rest, closed) = read_to_close(&mut client).await;
    assert!(rest.is_empty(), "{rest}");
    assert!(
        closed - started < HEADER_READ * 5,
        "closed only after {:?}",
        closed - started
    );
}

#[tokio::test]
async fn shutdown_stops_accepting_and_returns() {
    let (addr, stop, server) = start().await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returned after shutdown")
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}
