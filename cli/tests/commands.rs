//! The `ecloud` binary: help, argument errors, unreachable services, and the commands that
//! read the indexer (`nodes`, `job status`, `job result`) against a fake indexer.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use support::{
    TestNode, Weights, answer, answer_naming, dead_url, fake_files, fake_indexer, indexer_job,
    node_detail_json, node_json, output_mut, prompt, user,
};

fn ecloud(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ecloud"))
        .args(args)
        // Nothing from the developer's environment leaks in.
        .env_remove("ECLOUD_NETWORK")
        .env_remove("ECLOUD_ACCOUNT_ID")
        .env_remove("ECLOUD_INDEXER_URL")
        .env_remove("ECLOUD_RPC_URL")
        .output()
        .expect("run ecloud")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

#[test]
fn help_names_every_command_and_flag() {
    let o = ecloud(&["--help"]);
    assert!(o.status.success());
    let h = stdout(&o);
    for word in [
        "nodes",
        "job",
        "model",
        "attestation",
        "--network",
        "--rpc-url",
        "--indexer-url",
        "--account-id",
        "--deployment",
        "--marketplace",
        "--factory",
        "--registry",
        "--json",
        "Exit codes",
    ] {
        assert!(h.contains(word), "--help lacks {word}:\n{h}");
    }
    let cases: [(&[&str], &[&str]); 12] = [
        (
            &["nodes", "--help"],
            &[
                "--model",
                "--region",
                "--gpu",
                "--max-price",
                "--all",
                "--sort",
            ],
        ),
        (
            &["job", "submit", "--help"],
            &[
                "--model",
                "--prompt",
                "--embed",
                "--input",
                "--node",
                "--max-cost",
                "--token",
                "--deadline",
                "--claim-window",
                "--max-price",
                "--network",
            ],
        ),
        (&["job", "status", "--help"], &["<JOB_ID>", "--indexer-url"]),
        (&["job", "result", "--help"], &["<JOB_ID>", "--output"]),
        (
            &["model", "create", "--help"],
            &[
                "<MODEL_ID>",
                "--manifest",
                "--name",
                "--symbol",
                "--goal",
                "--token-price",
                "--deposit",
            ],
        ),
        (&["model", "contribute", "--help"], &["--amount"]),
        (&["model", "claim", "--help"], &["--token"]),
        (
            &["model", "show", "--help"],
            &["<MODEL_ID>", "--account-id"],
        ),
        (
            &["model", "encrypt", "--help"],
            &["--weights", "--out", "--key", "--new-key", "--chunk-size"],
        ),
        (
            &["model", "decrypt", "--help"],
            &["--input", "--out", "--key", "--ciphertext-sha256"],
        ),
        (
            &["model", "set-weights", "--help"],
            &[
                "--model",
                "--uri",
                "--summary",
                "--ciphertext-sha256",
                "--deposit",
            ],
        ),
        (
            &["model", "keeper", "--help"],
            &[
                "--model",
                "--key-file",
                "--interval",
                "--once",
                "--metrics-listen",
            ],
        ),
    ];
    for (args, words) in cases {
        let o = ecloud(args);
        assert!(o.status.success(), "{args:?}");
        let h = stdout(&o);
        for word in words {
            assert!(h.contains(word), "{args:?} help lacks {word}:\n{h}");
        }
    }
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tmp");
    let missing = dir.path().join("missing.jsonl");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["job", "submit", "--model", "llama", "--max-cost", "1"],
            "--prompt",
        ),
        (
            vec![
                "job",
                "submit",
                "--model",
                "Not_A_Model",
                "--prompt",
                "x",
                "--max-cost",
                "1",
            ],
            "not a valid model id",
        ),
        (
            vec![
                "job",
                "submit",
                "--model",
                "llama",
                "--prompt",
                "x",
                "--max-cost",
                "abc",
            ],
            "--max-cost: 'abc' is not a NEAR amount",
        ),
        (
            vec![
                "job",
                "submit",
                "--model",
                "llama",
                "--prompt",
                "x",
                "--max-cost",
                "5",
                "--token",
                "usdc.test.near",
                "--max-cost",
                "1.5",
            ],
            "cannot be used multiple times",
        ),
        (
            vec![
                "job",
                "submit",
                "--model",
                "llama",
                "--prompt",
                "x",
                "--max-cost",
                "1.5",
                "--token",
                "usdc.test.near",
            ],
            "--max-cost: '1.5' is not a token amount",
        ),
        (
            vec![
                "job",
                "submit",
                "--model",
                "llama",
                "--input",
                s(&missing),
                "--max-cost",
                "1",
            ],
            "cannot read",
        ),
        (
            vec![
                "job",
                "submit",
                "--model",
                "llama",
                "--prompt",
                "x",
                "--max-cost",
                "1",
                "--deadline",
                "soon",
            ],
            "not a duration",
        ),
        (
            vec![
                "job",
                "submit",
                "--model",
                "llama",
                "--prompt",
                "x",
                "--max-cost",
                "1",
                "--node",
                "3",
                "--region",
                "eu",
            ],
            "cannot be used with",
        ),
        (vec!["job", "status", "x1"], "not a valid number id"),
        (vec!["--network", "devnet", "nodes"], "not a network"),
        (vec!["nodes", "--max-price", "lots"], "not a NEAR amount"),
        (
            vec!["model", "contribute", "llama", "--amount", "0"],
            "--amount must be more than zero",
        ),
        (
            vec![
                "model",
                "create",
                "llama",
                "--manifest",
                s(&missing),
                "--name",
                "L",
                "--symbol",
                "L",
            ],
            "cannot read",
        ),
        (
            vec![
                "model",
                "create",
                "llama",
                "--manifest",
                "m.json",
                "--name",
                "L",
                "--symbol",
                "L",
                "--goal",
                "1",
            ],
            "--token-price",
        ),
        (
            vec![
                "job",
                "submit",
                "--model",
                "llama",
                "--prompt",
                "x",
                "--max-cost",
                "1",
            ],
            "no account to sign with",
        ),
        (vec!["job", "result", "1"], "no account to sign with"),
    ];
    for (args, expect) in cases {
        let o = ecloud(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(expect),
            "{args:?}: expected '{expect}' in: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// A malformed endpoint is bad input (exit 2, one line naming the flag), found before any
/// request, not a transport failure (exit 4, "builder error").
#[test]
fn malformed_urls_exit_2_in_one_line() {
    let cases: [&[&str]; 5] = [
        &["nodes", "--indexer-url", "not a url"],
        &["job", "status", "1", "--rpc-url", "ftp://x"],
        &["job", "status", "1", "--indexer-url", "127.0.0.1:8090"],
        &["model", "show", "llama", "--rpc-url", "http://"],
        &[
            "--account-id",
            "a.test.near",
            "job",
            "cancel",
            "1",
            "--rpc-url",
            "not a url",
        ],
    ];
    for args in cases {
        let o = ecloud(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("URL"), "{args:?}: {err}");
        assert!(!err.contains("builder error"), "{args:?}: {err}");
    }
    let o = ecloud(&["--json", "nodes", "--indexer-url", "not a url"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stderr).expect("JSON error");
    assert_eq!(v["error"], "bad_input");
}

#[test]
fn json_errors_are_objects_with_a_code() {
    let o = ecloud(&[
        "--json",
        "job",
        "submit",
        "--model",
        "llama",
        "--prompt",
        "x",
        "--max-cost",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stderr).expect("JSON error");
    assert_eq!(v["error"], "no_account");
    assert!(v["message"].as_str().unwrap_or("").contains("--account-id"));
}

#[test]
fn unreachable_services_exit_4() {
    let dead = dead_url();
    let o = ecloud(&["nodes", "--indexer-url", &dead]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("unreachable"), "{}", stderr(&o));
    let o = ecloud(&[
        "--json",
        "job",
        "status",
        "1",
        "--indexer-url",
        &dead,
        "--rpc-url",
        &dead,
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stderr).expect("JSON error");
    assert_eq!(v["error"], "chain");
    let msg = v["message"].as_str().unwrap_or("");
    assert!(msg.contains("indexer") && msg.contains("RPC"), "{msg}");
    let o = ecloud(&["model", "show", "llama", "--rpc-url", &dead]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}

#[test]
fn nodes_lists_what_the_indexer_serves_with_the_filters_passed_on() {
    let keys = TestNode::generate();
    let page = serde_json::json!({"items": [node_json(1, "active", &keys)], "next_cursor": "c2"});
    let seen = Arc::new(Mutex::new(Vec::new()));
    let url = fake_indexer(
        BTreeMap::from([("/v1/nodes".to_owned(), page)]),
        seen.clone(),
    );
    let o = ecloud(&[
        "nodes",
        "--indexer-url",
        &url,
        "--model",
        "llama",
        "--region",
        "eu-west",
        "--gpu",
        "H100",
        "--max-price",
        "0.002",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("NODE"), "{out}");
    assert!(
        out.contains("1     active  dev   eu-west  H100  llama       0.001        0.002"),
        "{out}"
    );
    assert!(out.contains("more: --cursor c2"), "{out}");
    let query = seen.lock().expect("lock")[0].clone();
    for part in [
        "model=llama",
        "region=eu-west",
        "gpu=H100",
        "status=active",
        "max_price=2000000000000000000000",
        "sort=price",
        "limit=50",
    ] {
        assert!(query.contains(part), "{query} lacks {part}");
    }
    let o = ecloud(&[
        "--json",
        "nodes",
        "--indexer-url",
        &url,
        "--all",
        "--sort",
        "id",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["items"][0]["node_id"], "1");
    assert_eq!(
        v["items"][0]["encryption_key"],
        hex::encode(keys.enclave_key())
    );
    assert_eq!(v["next_cursor"], "c2");
    let query = seen.lock().expect("lock")[1].clone();
    assert!(
        !query.contains("status="),
        "--all lists every status: {query}"
    );
    assert!(query.contains("sort=id"), "{query}");
}

/// `job status` and `job result` with the chain unreachable: the indexer answers, the node's
/// key comes from the indexer, and the output is verified and decrypted by the binary.
#[tokio::test(flavor = "multi_thread")]
async fn job_status_and_result_through_the_indexer() {
    let home = tempfile::tempdir().expect("tmp");
    let keys_dir = home.path().join("keys");
    let alice = user(&keys_dir.join("localnet"), "alice.test.near");
    let a = answer(&alice, 7, &prompt("what is TDX?")).await;
    let mut tampered = a.job.clone();
    tampered.job_id = enclave_cloud_common::JobId(8);
    output_mut(&mut tampered)[40] ^= 1;
    let mut claimed = a.job.clone();
    claimed.job_id = enclave_cloud_common::JobId(9);
    let routes = BTreeMap::from([
        ("/v1/jobs/7".to_owned(), indexer_job(&a.job, "settled")),
        ("/v1/jobs/8".to_owned(), indexer_job(&tampered, "settled")),
        ("/v1/jobs/9".to_owned(), indexer_job(&claimed, "claimed")),
        (
            "/v1/nodes/1".to_owned(),
            node_detail_json(1, "active", &a.keys),
        ),
    ]);
    let url = fake_indexer(routes, Arc::new(Mutex::new(Vec::new())));
    let dead = dead_url();
    let base = [
        "--network",
        "localnet",
        "--indexer-url",
        &url,
        "--rpc-url",
        &dead,
        "--account-id",
        "alice.test.near",
        "--keys-dir",
        s(&keys_dir),
    ];
    let run = |extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        ecloud(&args)
    };

    let o = run(&["job", "status", "7"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("job 7: settled"), "{}", stdout(&o));
    assert!(stdout(&o).contains("source      indexer"), "{}", stdout(&o));

    let body_file = home.path().join("body.json");
    let o = run(&["job", "result", "7", "--output", s(&body_file)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("echo: what is TDX?\n"), "{out}");
    assert!(out.contains("receipt verified (signature"), "{out}");
    assert!(out.contains("from the indexer"), "{out}");
    let body: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&body_file).expect("body file")).expect("json");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "echo: what is TDX?"
    );

    let o = run(&["--json", "job", "result", "7"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["status_code"], 200);
    assert_eq!(v["verified"]["key_source"], "indexer");
    assert_eq!(v["usage"]["input_tokens"], "5");

    // Tampered output: exit 1, nothing printed on stdout.
    let o = run(&["job", "result", "8"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains("verification failed"), "{}", stderr(&o));
    // Not settled yet, and unknown: exit 3.
    let o = run(&["job", "result", "9"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("job 9 is claimed: no result yet"),
        "{}",
        stderr(&o)
    );
    let o = run(&["job", "result", "10"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    // Another account's key file cannot open it.
    let o = ecloud(&[
        "--network",
        "localnet",
        "--indexer-url",
        &url,
        "--rpc-url",
        &dead,
        "--account-id",
        "bob.test.near",
        "--keys-dir",
        s(&keys_dir),
        "job",
        "result",
        "7",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no key for bob.test.near"),
        "{}",
        stderr(&o)
    );
}

/// `job result` of a job served from encrypted weights, with the chain unreachable: the
/// receipt's weights hash is shown (text and `verified.weights_hash` in --json) and must be the
/// answer's and the indexer's copy of the manifest's; another one exits 1.
#[tokio::test(flavor = "multi_thread")]
async fn job_result_shows_and_checks_the_receipts_weights() {
    use enclave_cloud_common::{Hash32, NodeId};
    let home = tempfile::tempdir().expect("tmp");
    let keys_dir = home.path().join("keys");
    let alice = user(&keys_dir.join("localnet"), "alice.test.near");
    let manifest_weights = Hash32([0xab; 32]);
    let honest = answer_naming(&alice, 21, &prompt("hi"), Weights::served(manifest_weights)).await;
    // Node 2 serves (and names, consistently) other weights than the manifest's.
    let mut other = answer_naming(
        &alice,
        22,
        &prompt("hi"),
        Weights::served(Hash32([0xcd; 32])),
    )
    .await;
    other.job.settled.node_id = NodeId(2);
    let model = serde_json::json!({
        "model_id": "llama", "token": "llama.models.test.near", "owner": "trainer.test.near",
        "name": "llama", "created_height": 3, "crowdfund": null, "total_supply": "0",
        "holders": 0, "top_holders": [], "revenue": [], "recent_revenue": [],
        "manifest": {
            "name": "llama", "weights_hash": manifest_weights,
            "encrypted_weights_uri": "https://example.org/llama.enc",
            "training_data_manifest_hash": "00".repeat(32), "training_data_manifest_uri": "",
            "training_image_measurement": "", "allowed_enclave_measurements": ["dev"],
            "licence": "apache-2.0"
        }
    });
    let routes = BTreeMap::from([
        (
            "/v1/jobs/21".to_owned(),
            indexer_job(&honest.job, "settled"),
        ),
        ("/v1/jobs/22".to_owned(), indexer_job(&other.job, "settled")),
        (
            "/v1/nodes/1".to_owned(),
            node_detail_json(1, "active", &honest.keys),
        ),
        (
            "/v1/nodes/2".to_owned(),
            node_detail_json(2, "active", &other.keys),
        ),
        ("/v1/models/llama".to_owned(), model),
    ]);
    let url = fake_indexer(routes, Arc::new(Mutex::new(Vec::new())));
    let dead = dead_url();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--network",
            "localnet",
            "--indexer-url",
            &url,
            "--rpc-url",
            &dead,
            "--account-id",
            "alice.test.near",
            "--keys-dir",
            s(&keys_dir),
        ];
        args.extend_from_slice(extra);
        ecloud(&args)
    };

    let o = run(&["--json", "job", "result", "21"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["verified"]["weights_hash"], manifest_weights.to_string());
    assert_eq!(v["weights_hash"], manifest_weights.to_string());
    let o = run(&["job", "result", "21"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!(
            "-- answered by the encrypted weights {manifest_weights}: named by the signed receipt"
        )),
        "{}",
        stdout(&o)
    );

    let o = run(&["job", "result", "22"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    assert!(
        stderr(&o).contains("the model's manifest names") && !stderr(&o).contains("panicked"),
        "{}",
        stderr(&o)
    );
}

/// An output too large to go inline is fetched from the node's URI and checked against the
/// receipt's hash before it is opened.
#[tokio::test(flavor = "multi_thread")]
async fn job_result_fetches_a_remote_output_and_checks_its_hash() {
    let home = tempfile::tempdir().expect("tmp");
    let keys_dir = home.path().join("keys");
    let alice = user(&keys_dir.join("localnet"), "alice.test.near");
    let a = answer(&alice, 11, &prompt("a long answer")).await;
    let sealed = output_mut(&mut a.job.clone()).clone();
    let mut swapped = sealed.clone();
    swapped[40] ^= 1;
    let files = fake_files(BTreeMap::from([
        ("/v1/outputs/11".to_owned(), sealed),
        ("/v1/outputs/12".to_owned(), swapped),
    ]));
    let remote = |id: u64, uri: String| {
        let mut job = a.job.clone();
        job.job_id = enclave_cloud_common::JobId(id);
        job.settled.output = enclave_cloud_common::InputRef::Remote {
            hash: job.settled.output_hash,
            uri,
        };
        job
    };
    // Job 11 as answered; job 12's node serves other bytes; job 13's node is gone. (Jobs 12
    // and 13 reuse job 11's receipt: the hash check must stop them before the signature.)
    let good = remote(11, format!("{files}/v1/outputs/11"));
    let routes = BTreeMap::from([
        ("/v1/jobs/11".to_owned(), indexer_job(&good, "settled")),
        (
            "/v1/jobs/12".to_owned(),
            indexer_job(&remote(12, format!("{files}/v1/outputs/12")), "settled"),
        ),
        (
            "/v1/jobs/13".to_owned(),
            indexer_job(
                &remote(13, format!("{}/v1/outputs/13", dead_url())),
                "settled",
            ),
        ),
        (
            "/v1/nodes/1".to_owned(),
            node_detail_json(1, "active", &a.keys),
        ),
    ]);
    let url = fake_indexer(routes, Arc::new(Mutex::new(Vec::new())));
    let dead = dead_url();
    let run = |id: &str| {
        ecloud(&[
            "--network",
            "localnet",
            "--indexer-url",
            &url,
            "--rpc-url",
            &dead,
            "--account-id",
            "alice.test.near",
            "--keys-dir",
            s(&keys_dir),
            "job",
            "result",
            id,
        ])
    };
    let o = run("11");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("echo: a long answer\n"),
        "{}",
        stdout(&o)
    );
    // The download's progress goes to stderr only: stdout is the answer.
    assert!(
        stderr(&o).contains("fetching job 11's output from"),
        "{}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("fetching"), "{}", stdout(&o));
    let o = run("12");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not hash to"), "{}", stderr(&o));
    let o = run("13");
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("unreachable"), "{}", stderr(&o));
}

#[test]
fn gpu_reference_turns_signed_rims_into_golden_sets_and_refuses_bad_ones() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contracts/attestation/testdata/nvidia-rims"
    );
    let vbios = format!("{dir}/1010_0200_882_96005E0001_PROD.swidtag");
    let driver = format!("{dir}/Driver_RIM_test_no_gpu.swidtag");
    // Inside the sample RIMs' certificate validity.
    let at = "1704067200";
    let o = ecloud(&[
        "attestation",
        "gpu-reference",
        "--vbios",
        &vbios,
        "--driver",
        &driver,
        "--at",
        at,
        // Offline: cli.rs tests the revocation check itself.
        "--revocation",
        "skip",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let sets: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(sets[0]["kind"], "vbios");
    assert_eq!(sets[0]["version"], "96.00.5e.00.01");
    assert_eq!(sets[1]["kind"], "driver");
    assert_eq!(sets[1]["version"], "545.00");

    // Today the sample certificates have expired: refused, naming the file.
    let o = ecloud(&["attestation", "gpu-reference", "--vbios", &vbios]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not valid at"), "{}", stderr(&o));

    // One changed hex digit of a measurement: the signed digest no longer matches.
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.swidtag");
    let xml = std::fs::read_to_string(&vbios).expect("rim");
    std::fs::write(&bad, xml.replacen("c3f65ef79a19", "c3f65ef79a18", 1)).expect("write");
    let o = ecloud(&[
        "attestation",
        "gpu-reference",
        "--vbios",
        s(&bad),
        "--at",
        at,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("signed digest"), "{}", stderr(&o));

    let o = ecloud(&["attestation", "gpu-reference"]);
    assert_eq!(o.status.code(), Some(2));
}

/// `gpu-reference --root PEM`: the RIM root file itself verifies the RIMs as the built-in root
/// does; another root (NVIDIA's device identity root) refuses them, naming the file.
#[test]
fn gpu_reference_root_option_decides_which_root_the_rims_must_chain_to() {
    let att = concat!(env!("CARGO_MANIFEST_DIR"), "/../contracts/attestation");
    let vbios = format!("{att}/testdata/nvidia-rims/1010_0200_882_96005E0001_PROD.swidtag");
    let run = |root: &str| {
        ecloud(&[
            "attestation",
            "gpu-reference",
            "--vbios",
            &vbios,
            "--at",
            "1704067200",
            "--root",
            root,
            "--revocation",
            "skip",
        ])
    };
    let o = run(&format!("{att}/src/nvidia/verifier_rim_root.pem"));
    assert!(o.status.success(), "{}", stderr(&o));
    let sets: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(sets[0]["version"], "96.00.5e.00.01");

    let o = run(&format!("{att}/src/nvidia/verifier_device_root.pem"));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("1010_0200_882_96005E0001_PROD"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty(), "no set printed: {}", stdout(&o));
}
