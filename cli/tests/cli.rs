//! End to end: build a bundle from the dstack vector with the binary, verify it with the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DSTACK_NOW: &str = "1786622400";
const GPU_NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

fn vectors() -> PathBuf {
    PathBuf::from(attestation::TESTDATA_DIR)
}

fn ecloud(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ecloud"))
        .args(args)
        .output()
        .expect("run ecloud")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ecloud-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir.join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

fn build_bundle(name: &str, with_gpu: bool) -> PathBuf {
    let out = tmp(name);
    let public_data = vectors().join("intel-tdx-dstack-node/public_data.json");
    let report = vectors().join("nvidia-hopper-single/hopperAttestationReport.txt");
    let chain = vectors().join("nvidia-hopper-single/hopperCertChain.txt");
    let mut args = vec![
        "attestation",
        "bundle-from-dstack",
        s(&public_data),
        "--output",
        s(&out),
    ];
    if with_gpu {
        args.extend([
            "--gpu-report",
            s(&report),
            "--gpu-chain",
            s(&chain),
            "--gpu-nonce",
            GPU_NONCE,
        ]);
    }
    let o = ecloud(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

#[test]
fn dstack_bundle_with_gpu_verifies_end_to_end() {
    let bundle = build_bundle("node-gpu.json", true);
    let o = ecloud(&["attestation", "verify", s(&bundle), "--at", DSTACK_NOW]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v = json(&o);
    assert_eq!(v["valid"], true);
    assert_eq!(v["tcb_status"], "UpToDate");
    assert_eq!(
        v["measurements"]["compose_hash"],
        "2911e1f733466216dedb862d6d669e11256ee7a34ce4dbc66c4b807ba7a9c895"
    );
    assert_eq!(
        v["bound_keys"]["near_public_key"],
        "ed25519:J992NeWhuaJXeUVJcDCVwfS5j1G26B5aJDUZ8iuBCYdc"
    );
    assert_eq!(v["gpus"][0]["model"], "GH100");
    assert_eq!(v["gpus"][0]["nonce"], GPU_NONCE);
}

#[test]
fn wrong_time_is_invalid_with_exit_1() {
    let bundle = build_bundle("node.json", false);
    let o = ecloud(&["attestation", "verify", s(&bundle), "--at", "1700000000"]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["valid"], false);
    assert_eq!(v["error"]["code"], "quote_verification");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("future"),
        "{v}"
    );
}

#[test]
fn tampered_bundle_names_what_failed() {
    let bundle = build_bundle("node-tampered.json", false);
    let mut b: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle).expect("read")).expect("json");
    b["near_public_key"] = "ed25519:11111111111111111111111111111111".into();
    std::fs::write(&bundle, b.to_string()).expect("write");
    let o = ecloud(&["attestation", "verify", s(&bundle), "--at", DSTACK_NOW]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["error"]["code"], "report_data_mismatch");
}

#[test]
fn bad_files_give_clear_errors_without_panics() {
    let missing = tmp("does-not-exist.json");
    let o = ecloud(&["attestation", "verify", s(&missing)]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot read") && err.contains("does-not-exist.json"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // Not JSON at all: bad input (exit 2), one line naming the file.
    let garbage = tmp("garbage.json");
    std::fs::write(&garbage, b"\x00\x01 not json").expect("write");
    let o = ecloud(&["attestation", "verify", s(&garbage), "--at", DSTACK_NOW]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("garbage.json") && err.contains("not JSON") && !err.contains("panicked"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    // JSON that is not a bundle: an invalid verdict (exit 1) naming the problem.
    let not_bundle = tmp("not-bundle.json");
    std::fs::write(&not_bundle, br#"{"kind": "tdx"}"#).expect("write");
    let o = ecloud(&["attestation", "verify", s(&not_bundle), "--at", DSTACK_NOW]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["error"]["code"], "malformed");
    assert!(!String::from_utf8_lossy(&o.stderr).contains("panicked"));

    let o = ecloud(&["attestation", "bundle-from-dstack", s(&garbage)]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("garbage.json") && !err.contains("panicked"),
        "{err}"
    );
}
