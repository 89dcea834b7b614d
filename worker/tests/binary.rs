//! The `worker` binary as an operator runs it: init, attest (dev), serve, graceful stop.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attestation::{RustCrypto, VerifyPolicy};

const BIN: &str = env!("CARGO_BIN_EXE_worker");

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("ECLOUD_WORKER_DATA_DIR")
        .output()
        .expect("the worker binary runs")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

#[test]
fn init_attest_and_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data = data.to_str().unwrap();

    // attest before init: a one-line error, exit code 1.
    let out = run(&["--data-dir", data, "attest"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("worker init"), "{err}");

    let out = run(&["--data-dir", data, "init"]);
    assert!(out.status.success());
    let public: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(public["created"], true);
    // Secrets never reach stdout/stderr: only the public keys are printed.
    let secret = std::fs::read(tmp.path().join("data/enclave-x25519.key")).unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&hex::encode(&secret)));

    let ca = tmp.path().join("ca.hex");
    std::fs::write(&ca, hex::encode([3u8; 32])).unwrap();
    let bundle_path = tmp.path().join("bundle.json");
    let out = run(&[
        "--data-dir",
        data,
        "attest",
        "--provider",
        "dev",
        "--dev-ca-key-file",
        ca.to_str().unwrap(),
        "--out",
        bundle_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = attestation::parse_bundle(&std::fs::read(&bundle_path).unwrap()).unwrap();
    let ca_public = ed25519_dalek::SigningKey::from_bytes(&[3u8; 32])
        .verifying_key()
        .to_bytes();
    let policy = VerifyPolicy {
        dev_ca_public_key: Some(ca_public),
        ..VerifyPolicy::default()
    };
    let verdict = attestation::verify_bundle(&bundle, now(), &policy, &RustCrypto).unwrap();
    assert_eq!(verdict.bound_keys.enclave_key, public["enclave_key"]);

    // serve (the OpenAI backend is only contacted per request), fetch the attestation, stop.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut child = Command::new(BIN)
        .args([
            "--data-dir",
            data,
            "serve",
            "--unpaid-api",
            "--dev-ca-key-file",
            ca.to_str().unwrap(),
            "--backend",
            "openai",
            "--upstream-url",
            "http://127.0.0.1:9/v1",
            "--listen",
            &addr.to_string(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let body = loop {
        match std::net::TcpStream::connect(addr) {
            Ok(mut s) => {
                use std::io::{Read as _, Write as _};
                write!(
                    s,
                    "GET /v1/attestation HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                let mut text = String::new();
                s.read_to_string(&mut text).unwrap();
                break text;
            }
            Err(_) if start.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("worker serve did not listen: {e}"),
        }
    };
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let json = &body[body.find("\r\n\r\n").unwrap() + 4..];
    let served = attestation::parse_bundle(json.as_bytes()).unwrap();
    assert_eq!(served.enclave_key, bundle.enclave_key);
    assert_eq!(served.near_public_key, bundle.near_public_key);

    // SIGTERM: graceful shutdown, exit 0.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap();
    let mut log = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        log.push_str(&line.unwrap());
        log.push('\n');
    }
    assert!(code.success(), "exit {code:?}; log:\n{log}");
    assert!(log.contains("shutting down"), "{log}");
}
