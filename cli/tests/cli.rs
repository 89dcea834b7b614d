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
    build_bundle_with(name, with_gpu, None)
}

/// The dstack vector's bundle, with NVIDIA's public H100 evidence when `with_gpu` (and the
/// challenge, if any).
fn build_bundle_with(name: &str, with_gpu: bool, challenge: Option<&str>) -> PathBuf {
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
        if let Some(c) = challenge {
            args.extend(["--gpu-challenge", c]);
        }
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
fn dstack_bundle_verifies_end_to_end() {
    let bundle = build_bundle("node-plain.json", false);
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
    assert!(v.get("gpu_binding").is_none(), "{v}");
}

/// Issue 16: NVIDIA's public H100 evidence attached to the dstack node verified as its GPU. It
/// answers no enclave's binding nonce: refused with the clear error, whatever the challenge.
#[test]
fn public_gpu_evidence_is_refused_with_a_clear_error() {
    for (name, challenge) in [
        ("node-gpu.json", Some("07".repeat(32))),
        (
            "node-gpu-nonce-as-challenge.json",
            Some(GPU_NONCE.to_owned()),
        ),
    ] {
        let bundle = build_bundle_with(name, true, challenge.as_deref());
        let o = ecloud(&["attestation", "verify", s(&bundle), "--at", DSTACK_NOW]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        let v = json(&o);
        assert_eq!(v["valid"], false);
        assert_eq!(v["error"]["code"], "gpu_not_bound");
        let message = v["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.starts_with("GPU 0: GPU nonce not bound to this enclave"),
            "{message}"
        );
    }
    // Without a challenge the bundle names no binding at all.
    let bundle = build_bundle("node-gpu-no-challenge.json", true);
    let o = ecloud(&["attestation", "verify", s(&bundle), "--at", DSTACK_NOW]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["error"]["code"], "malformed");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("gpu_challenge"),
        "{v}"
    );
    // A challenge that is not 32 bytes of hex is bad input.
    let o = ecloud(&[
        "attestation",
        "bundle-from-dstack",
        s(&vectors().join("intel-tdx-dstack-node/public_data.json")),
        "--gpu-report",
        s(&vectors().join("nvidia-hopper-single/hopperAttestationReport.txt")),
        "--gpu-chain",
        s(&vectors().join("nvidia-hopper-single/hopperCertChain.txt")),
        "--gpu-nonce",
        GPU_NONCE,
        "--gpu-challenge",
        "abc",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--gpu-challenge"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The dstack node with 8 dev GPUs and 4 dev NVSwitches answering its binding nonce (`name`
/// prefixes the files): (bundle, policy trusting the dev GPU root, challenge, nonce).
fn dev_gpu_bundle(name: &str) -> (PathBuf, PathBuf, [u8; 32], [u8; 32]) {
    use attestation::dev_gpu::{DEV_GPU_ROOT_SHA256, DevGpuFleet};
    let plain = build_bundle(&format!("{name}-plain.json"), false);
    let mut b = attestation::parse_bundle(&std::fs::read(&plain).expect("read")).expect("bundle");
    let enclave: [u8; 32] = b.enclave_key.clone().try_into().expect("32 bytes");
    let near = attestation::parse_near_ed25519_key(&b.near_public_key).expect("key");
    let challenge = [0x5a; 32];
    let nonce = attestation::gpu_binding_nonce(&enclave, &near, &challenge);
    let ev = DevGpuFleet::new([3; 32], 8, 4).evidence(&nonce);
    b.gpus = ev.gpus;
    b.switches = ev.switches;
    b.gpu_challenge = Some(hex::encode(challenge));
    let bundle = tmp(&format!("{name}.json"));
    std::fs::write(&bundle, serde_json::to_vec(&b).expect("json")).expect("write");
    let policy = tmp(&format!("{name}-policy.json"));
    std::fs::write(
        &policy,
        serde_json::json!({ "dev_gpu_root": hex::encode(DEV_GPU_ROOT_SHA256) }).to_string(),
    )
    .expect("write");
    (bundle, policy, challenge, nonce)
}

/// The dstack node with 8 dev GPUs and 4 dev NVSwitches answering its binding nonce: valid
/// under a policy naming the dev GPU root (and only then); the verdict prints the binding.
#[test]
fn bound_dev_gpus_verify_and_print_the_binding() {
    let (bundle, policy, challenge, nonce) = dev_gpu_bundle("node-dev-gpus");

    let o = ecloud(&[
        "attestation",
        "verify",
        s(&bundle),
        "--at",
        DSTACK_NOW,
        "--policy",
        s(&policy),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let v = json(&o);
    assert_eq!(v["gpu_binding"]["nonce"], hex::encode(nonce));
    assert_eq!(v["gpu_binding"]["challenge"], hex::encode(challenge));
    assert_eq!(v["gpu_binding"]["gpus"], 8);
    assert_eq!(v["gpu_binding"]["switches"], 4);
    assert!(
        v["gpu_binding"]["meaning"]
            .as_str()
            .unwrap_or("")
            .contains("two live nodes"),
        "{v}"
    );
    assert_eq!(v["gpus"].as_array().map(Vec::len), Some(8));
    assert_eq!(v["switches"][0]["model"], "LS10");

    // The default policy trusts NVIDIA's root only.
    let o = ecloud(&["attestation", "verify", s(&bundle), "--at", DSTACK_NOW]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json(&o)["error"]["code"], "gpu_untrusted_root");
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

/// `bundle-from-dstack -o FILE` prints nothing in text; with `--json` stdout still holds one
/// JSON document (where the bundle went), and the file holds the bundle.
#[test]
fn bundle_written_to_a_file_still_answers_json() {
    let out = tmp("bundle-json.json");
    let public_data = vectors().join("intel-tdx-dstack-node/public_data.json");
    let o = ecloud(&[
        "--json",
        "attestation",
        "bundle-from-dstack",
        s(&public_data),
        "-o",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o), serde_json::json!({ "output": s(&out) }));
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("bundle")).expect("bundle json");
    assert!(bundle.is_object());
    let o = ecloud(&[
        "attestation",
        "bundle-from-dstack",
        s(&public_data),
        "-o",
        s(&out),
    ]);
    assert!(o.status.success());
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// `verify --golden FILE`: every GPU must match the sets of its chip and firmware versions.
/// The dev GPUs' own measurements as sets pass; one value changed, or sets of other firmware
/// (NVIDIA's real RIMs through `gpu-reference`, whose output `--golden` reads), are refused.
#[test]
fn verify_compares_every_gpu_with_golden_sets() {
    let (bundle, policy, _, _) = dev_gpu_bundle("node-golden");
    let verify = |golden: &Path| {
        ecloud(&[
            "attestation",
            "verify",
            s(&bundle),
            "--at",
            DSTACK_NOW,
            "--policy",
            s(&policy),
            "--golden",
            s(golden),
        ])
    };
    let plain = ecloud(&[
        "attestation",
        "verify",
        s(&bundle),
        "--at",
        DSTACK_NOW,
        "--policy",
        s(&policy),
    ]);
    let v = json(&plain);
    assert!(v.get("golden").is_none(), "not compared without --golden");
    let gpu = &v["gpus"][0];
    let measured: Vec<String> = serde_json::from_value(gpu["measurements"].clone()).expect("hex");
    // VBIOS set: RIM indexes 0-31, driver set: 32-63 (as NVIDIA splits them), all active.
    let set = |kind: &str, version: &serde_json::Value, range: std::ops::Range<usize>| {
        serde_json::json!({
            "kind": kind,
            "product": gpu["model"],
            "version": version,
            "tag_id": format!("dev-{kind}"),
            "measurements": range.map(|i| serde_json::json!({
                "index": i,
                "name": format!("dev_{i}"),
                "active": true,
                "alternatives": ["00".repeat(48), measured[i].clone()],
            })).collect::<Vec<_>>(),
        })
    };
    let mut sets = serde_json::json!([
        set("vbios", &gpu["vbios_version"], 0..32),
        set("driver", &gpu["driver_version"], 32..measured.len()),
    ]);
    let golden = tmp("golden.json");
    std::fs::write(&golden, sets.to_string()).expect("write");
    let o = verify(&golden);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(json(&o)["golden"]["gpus_matched"], 8);

    // One hex digit of one golden value changed: every dev GPU is off the set.
    let value = sets[1]["measurements"][5]["alternatives"][1]
        .as_str()
        .expect("hex")
        .to_owned();
    let flipped = format!(
        "{}{}",
        if value.starts_with('0') { "1" } else { "0" },
        &value[1..]
    );
    sets[1]["measurements"][5]["alternatives"][1] = flipped.into();
    std::fs::write(&golden, sets.to_string()).expect("write");
    let o = verify(&golden);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["error"]["code"], "gpu_golden_measurements", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("measurement 37"),
        "{v}"
    );

    // NVIDIA's real RIMs (other firmware): no set for the dev GPUs' versions.
    let rims = vectors().join("nvidia-rims");
    let real = tmp("golden-real.json");
    let o = ecloud(&[
        "attestation",
        "gpu-reference",
        "--vbios",
        s(&rims.join("1010_0200_882_96005E0001_PROD.swidtag")),
        "--driver",
        s(&rims.join("Driver_RIM_test_no_gpu.swidtag")),
        "--at",
        "1704067200",
        "--revocation",
        "skip",
        "--output",
        s(&real),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = verify(&real);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&o);
    assert_eq!(v["error"]["code"], "gpu_golden_measurements", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no Vbios reference set for GH100"),
        "{v}"
    );

    // Not reference sets at all: bad input (exit 2).
    let o = verify(&policy);
    assert_eq!(o.status.code(), Some(2));
}

/// `gpu-reference` checks the RIM chains' revocation online by default: with no responder
/// answering it refuses (exit 4) and says how to proceed, printing no set; `--revocation skip`
/// produces the sets with a warning on stderr.
#[test]
fn gpu_reference_needs_the_ocsp_responder_unless_revocation_is_skipped() {
    let rim = vectors().join("nvidia-rims/1010_0200_882_96005E0001_PROD.swidtag");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", closed.local_addr().expect("addr"));
    drop(closed);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "attestation",
            "gpu-reference",
            "--vbios",
            s(&rim),
            "--at",
            "1704067200",
        ];
        args.extend_from_slice(extra);
        ecloud(&args)
    };

    let o = run(&["--ocsp-url", &url]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("cannot check the revocation"), "{err}");
    assert!(err.contains("CN=HCC RIM L4 Signer"), "{err}");
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("--revocation skip"), "{err}");
    assert!(o.stdout.is_empty(), "no set printed");

    let o = run(&["--json", "--ocsp-url", &url]);
    let v: serde_json::Value = serde_json::from_slice(&o.stderr).expect("a JSON error on stderr");
    assert_eq!(v["error"], "revocation_unchecked", "{v}");

    let o = run(&["--revocation", "skip"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("warning: --revocation skip"), "{err}");
    let sets: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON sets");
    assert_eq!(sets[0]["version"], "96.00.5e.00.01");

    let o = run(&["--revocation", "skip", "--ocsp-url", &url]);
    assert_eq!(o.status.code(), Some(2), "{:?}", o);
}
