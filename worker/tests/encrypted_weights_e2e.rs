//! Encrypted model weights end to end on localnet, every component a separate process:
//! localnet with the registry, marketplace and model factory, the indexer, the owner's key
//! keeper (`ecloud model keeper`), `worker run --factory` serving MiniLM embeddings from the
//! weights `ecloud model encrypt` made, and `ecloud proxy` for a paying user.
//!
//! 1. The manifest allows no enclave: the keeper grants nothing, and the node waits for its
//!    key without serving the model.
//! 2. The owner allows dev enclaves while the keeper is killed; restarted, the keeper grants
//!    the key to the node (it missed nothing), which opens it, decrypts the weights in memory,
//!    checks them and serves the model; a request through the proxy is answered, its signatures name the manifest's weights hash (the proxy checked
//!    them against the manifest and tells its caller), and the node's kept signature says so;
//!    its fresh attestation measures the weights (RTMR3 event `ecloud-model-weights`); a job's
//!    answer names them under the receipt's signature and `ecloud job result` checks them.
//!    The owner then stops allowing the node: the keeper revokes its grant and the node stops
//!    serving the model; allowed again, it is granted again and serves.
//! 3. The ciphertext is tampered with: the restarted node refuses the weights before serving
//!    anything, and the model's requests are not answered.
//! 4. The node re-attests: the keeper grants it afresh (the grant expires with the new
//!    attestation) and it serves on.
//! 5. The operator deregisters the node: the keeper revokes its grant, the node stops serving
//!    the model, and later passes give it no new key.
//!
//! Needs, with the same CARGO_TARGET_DIR: the localnet, indexer, worker and ecloud binaries,
//! the contracts (`./scripts/build-contracts.sh`) and MiniLM (`worker/scripts/fetch-model.sh`).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use chain_client::NearToken;
use chain_client::contracts::{ModelTokenClient, RegistryClient};
use chain_client::testkit::{
    IndexerProcess, Localnet, Process, Suite, SuiteConfig, WorkerNode, free_port, wait_for_http,
};
use enclave_cloud_common::events::model::ModelManifest;
use enclave_cloud_common::{Hash32, NodeId};
use protocol::channel_api::{headers, paths};
use sealed_api::report::AttestationReport;
use serde_json::{Value, json};
use support::model_dir;
use support::paid_stack::{account_with_credentials, ecloud, start_proxy};

/// The model served from encrypted weights, priced for the paid API (1 NEAR per million
/// tokens).
const MODEL: &str = "embed";
const PRICE: &str = "embed:1000000000000000000000000:1000000000000000000000000";
const WAIT: Duration = Duration::from_secs(180);
/// The suite's development CA (`SuiteConfig::default()`).
const DEV_CA: [u8; 32] = [0x5a; 32];

/// Waits until `process`'s log contains `needle` (failing if it dies or `WAIT` passes).
async fn log_shows(process: &mut Process, needle: &str) {
    log_shows_more(process, needle, 0).await;
}

/// How often `needle` is in `log`.
fn times(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

/// Waits until `process`'s log contains `needle` more than `seen` times: a line logged after
/// `seen` was counted (logs are appended across restarts).
async fn log_shows_more(process: &mut Process, needle: &str, seen: usize) {
    let started = Instant::now();
    loop {
        if times(&process.log(), needle) > seen {
            return;
        }
        process.check_alive().expect("the process is running");
        assert!(
            started.elapsed() < WAIT,
            "{} never logged '{needle}':\n{}",
            process.name(),
            process.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn run_json(mut cmd: std::process::Command, what: &str) -> Value {
    let out = cmd.output().expect(what);
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn manifest(weights_hash: Hash32, uri: &str, allowed: &[&str]) -> ModelManifest {
    ModelManifest {
        name: "all-MiniLM-L6-v2".into(),
        weights_hash,
        encrypted_weights_uri: uri.into(),
        allowed_enclave_measurements: allowed.iter().map(|s| (*s).to_owned()).collect(),
        licence: "apache-2.0".into(),
        ..ModelManifest::default()
    }
}

/// `worker run` serving the encrypted model (MiniLM's config and tokenizer from its dir),
/// with `more` arguments.
fn start_worker(
    worker: &mut WorkerNode,
    indexer: &IndexerProcess,
    factory: &str,
    listen: &str,
    more: &[&str],
) {
    let dir = model_dir().display().to_string();
    let model = format!("{MODEL}=all-minilm-l6-v2");
    let backend = [
        "--backend",
        "embedded",
        "--model-dir",
        &dir,
        "--model",
        &model,
    ];
    let extra = [
        "--api-listen",
        listen,
        "--factory",
        factory,
        "--grant-poll-max-secs",
        "2",
    ];
    let extra: Vec<&str> = extra.iter().chain(more).copied().collect();
    worker
        .start_with_backend(Some(indexer), &backend, &extra)
        .expect("worker run");
}

async fn embeddings(url: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/embeddings"))
        .json(&json!({"model": MODEL, "input": ["encrypted weights, decrypted in the enclave"]}))
        .send()
        .await
        .expect("POST /embeddings")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_encrypted_weights_only_once_granted_and_refuses_tampered_ones() {
    let mut dir = tempfile::tempdir().unwrap();
    dir.disable_cleanup(std::env::var_os("ECLOUD_TEST_KEEP").is_some());
    let dir: &Path = dir.path();
    let localnet = Localnet::start(dir).await.expect("localnet");
    let client = localnet.client();
    let suite = Suite::deploy(&client, &localnet.root, SuiteConfig::default())
        .await
        .expect("contracts");
    let factory = suite.deploy_factory(&client).await.expect("the factory");
    let factory_id = factory.account_id().to_string();
    let indexer = IndexerProcess::start(dir, &localnet, &suite)
        .await
        .expect("indexer");
    let (owner, owner_creds) = account_with_credentials(&client, &localnet, dir, "owner").await;
    let as_owner = || {
        let mut cmd = ecloud(dir, &localnet, &suite, &indexer, &owner, &owner_creds);
        cmd.args(["--factory", &factory_id]);
        cmd
    };

    // The owner encrypts MiniLM's weights and creates the model, allowing no enclave yet.
    let encrypted = dir.join("minilm.enc");
    let key_file = dir.join("model.key");
    let mut encrypt = as_owner();
    encrypt
        .args(["--json", "model", "encrypt", "--weights"])
        .arg(model_dir().join("model.safetensors"))
        .arg("--out")
        .arg(&encrypted)
        .arg("--new-key")
        .arg(&key_file);
    let summary = run_json(encrypt, "ecloud model encrypt");
    let weights_hash: Hash32 =
        serde_json::from_value(summary["ciphertext_sha256"].clone()).expect("the ciphertext hash");
    let uri = format!("file://{}", encrypted.display());
    let manifest_file = dir.join("manifest.json");
    std::fs::write(
        &manifest_file,
        serde_json::to_vec(&manifest(weights_hash, &uri, &[])).unwrap(),
    )
    .unwrap();
    let mut create = as_owner();
    create
        .args(["--json", "model", "create", MODEL, "--manifest"])
        .arg(&manifest_file)
        .args([
            "--name",
            "Embed revenue",
            "--symbol",
            "EMB",
            "--decimals",
            "6",
        ]);
    let created = run_json(create, "ecloud model create");
    let token: chain_client::AccountId = created["token"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("the token account");

    // A node offering the model, and the keeper.
    let api_port = free_port().expect("port");
    let endpoint = format!("http://127.0.0.1:{api_port}");
    let listen = format!("127.0.0.1:{api_port}");
    let mut worker = WorkerNode::create(dir, "op", &localnet, &client, &suite)
        .await
        .expect("worker");
    let node_id = NodeId(
        worker
            .register_with(&suite, &["--endpoint", &endpoint, "--price", PRICE])
            .expect("register"),
    );
    start_worker(&mut worker, &indexer, &factory_id, &listen, &[]);
    let start_keeper = |log: &str| {
        let mut cmd = as_owner();
        cmd.args(["model", "keeper", "--model", MODEL, "--key-file"])
            .arg(&key_file)
            .args(["--interval", "2s"]);
        Process::spawn("ecloud model keeper", cmd, &dir.join(log)).expect("keeper")
    };
    let mut keeper = start_keeper("keeper.log");

    // 1. Not allowed: no grant, and the node waits without serving.
    log_shows(&mut keeper, &format!("decision node={node_id} ")).await;
    log_shows(&mut keeper, "pass nodes=1").await;
    let worker_process = worker.process.as_mut().expect("worker process");
    log_shows(worker_process, "waiting for this node's key grant").await;
    let grants = ModelTokenClient::new(&client, token.clone());
    assert_eq!(grants.key_grant(node_id).await.expect("key_grant"), None);
    assert!(
        !worker
            .log()
            .contains("serving the model from its encrypted weights"),
        "served without a grant:\n{}",
        worker.log()
    );

    // 2. Allowed while the keeper is down (killed: no graceful stop); restarted, it misses
    // nothing: the node is granted, decrypts, checks and serves; the client checks the hash.
    keeper.kill();
    grants
        .update_manifest(
            manifest(weights_hash, &uri, &["dev"]),
            NearToken::from_millinear(10),
        )
        .expect("args")
        .send(&owner)
        .await
        .expect("update_manifest");
    let mut keeper = start_keeper("keeper-restarted.log");
    log_shows(&mut keeper, &format!("granted node={node_id}")).await;
    let worker_process = worker.process.as_mut().expect("worker process");
    log_shows(
        worker_process,
        "serving the model from its encrypted weights",
    )
    .await;
    let grant = grants
        .key_grant(node_id)
        .await
        .expect("key_grant")
        .expect("the node's grant");
    assert!(worker.log().contains(&grant.key_hash.to_string()));

    let (user, user_creds) = account_with_credentials(&client, &localnet, dir, "user").await;
    let mut as_user = ecloud(dir, &localnet, &suite, &indexer, &user, &user_creds);
    as_user.args(["--factory", &factory_id]);
    let (mut proxy, proxy_url) = start_proxy(dir, as_user, &["--deposit", "3 NEAR"]).await;
    let response = embeddings(&proxy_url).await;
    let status = response.status();
    let shown = response
        .headers()
        .get(headers::WEIGHTS_HASH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let id = response
        .headers()
        .get(headers::RESPONSE_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(status, 200, "{body}\n{}", proxy.log_tail(20));
    assert_eq!(shown, Some(weights_hash.to_string()), "{body}");
    assert_eq!(
        body["data"][0]["embedding"].as_array().map(Vec::len),
        Some(384)
    );
    assert!(
        proxy
            .log()
            .contains(&format!("served from encrypted weights {weights_hash}")),
        "{}",
        proxy.log_tail(20)
    );
    // The node's fresh attestation measures the weights (RTMR3 event ecloud-model-weights,
    // signed by the dev CA): what the proxy checked before opening its session.
    let nonce = "5e".repeat(32);
    let report: AttestationReport = reqwest::get(format!(
        "{endpoint}{}?nonce={nonce}",
        paths::ATTESTATION_REPORT
    ))
    .await
    .expect("GET report")
    .json()
    .await
    .expect("report JSON");
    report.check_binding(&nonce).expect("binds the nonce");
    let policy = attestation::VerifyPolicy {
        dev_ca_public_key: Some(worker::attest::dev::DevProvider::new(&DEV_CA, 1).ca_public_key()),
        ..attestation::VerifyPolicy::default()
    };
    let verdict = attestation::verify_bundle(
        &report.attestation,
        worker::attest::now_unix_secs(),
        &policy,
        &attestation::RustCrypto,
    )
    .expect("the report's bundle verifies");
    assert_eq!(verdict.model_weights, vec![weights_hash.to_string()]);
    // The node keeps the signature; its text names the weights.
    let id = id.expect("the response id");
    let kept: Value = reqwest::get(format!("{endpoint}/v1/signature/{id}?signing_algo=ed25519"))
        .await
        .expect("GET signature")
        .json()
        .await
        .expect("JSON");
    assert!(
        kept["text"]
            .as_str()
            .is_some_and(|t| t.ends_with(&format!(":{weights_hash}"))),
        "{kept}"
    );

    // A job for the model: its answer names the weights inside the output the receipt signs,
    // and `ecloud job result` checks them against the manifest.
    let as_user = || {
        let mut cmd = ecloud(dir, &localnet, &suite, &indexer, &user, &user_creds);
        cmd.args(["--factory", &factory_id]);
        cmd
    };
    let mut submit = as_user();
    submit.args([
        "--json",
        "job",
        "submit",
        "--model",
        MODEL,
        "--embed",
        "a job",
        "--max-cost",
        "0.01",
    ]);
    let submitted = run_json(submit, "ecloud job submit");
    let job_id = submitted["job_id"].to_string();
    let started = Instant::now();
    let result = loop {
        let mut cmd = as_user();
        cmd.args(["--json", "job", "result", job_id.trim_matches('"')]);
        let out = cmd.output().expect("ecloud job result");
        if out.status.success() {
            break serde_json::from_slice::<Value>(&out.stdout).expect("result JSON");
        }
        assert!(
            started.elapsed() < WAIT,
            "job {job_id} never settled: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            worker.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert_eq!(result["status_code"], 200, "{result}");
    assert_eq!(result["weights_hash"], weights_hash.to_string(), "{result}");
    // The receipt itself names them (signed by the node, kept by the marketplace).
    assert_eq!(
        result["verified"]["weights_hash"],
        weights_hash.to_string(),
        "{result}"
    );

    // The owner stops allowing dev enclaves: the keeper revokes the grant and the node stops
    // serving the model; allowed again, it is granted and serves again.
    grants
        .update_manifest(
            manifest(weights_hash, &uri, &[]),
            NearToken::from_millinear(10),
        )
        .expect("args")
        .send(&owner)
        .await
        .expect("update_manifest");
    log_shows(&mut keeper, &format!("revoked node={node_id}")).await;
    let worker_process = worker.process.as_mut().expect("worker process");
    log_shows(worker_process, "REVOKED: this node's key grant is gone").await;
    let revoked = embeddings(&proxy_url).await;
    assert_ne!(revoked.status(), 200, "a revoked node answered");
    grants
        .update_manifest(
            manifest(weights_hash, &uri, &["dev"]),
            NearToken::from_millinear(10),
        )
        .expect("args")
        .send(&owner)
        .await
        .expect("update_manifest");
    let worker_process = worker.process.as_mut().expect("worker process");
    log_shows(worker_process, "granted again; serving the model again").await;

    // 3. Tampered ciphertext: the restarted node refuses it and serves nothing of the model.
    worker.stop();
    let intact = std::fs::read(&encrypted).unwrap();
    let mut bytes = intact.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&encrypted, bytes).unwrap();
    start_worker(&mut worker, &indexer, &factory_id, &listen, &[]);
    let worker_process = worker.process.as_mut().expect("worker process");
    wait_for_http(&format!("{endpoint}/v1/models"), worker_process, WAIT)
        .await
        .expect("the worker's API");
    log_shows(worker_process, "REFUSED encrypted weights").await;
    let refused = embeddings(&proxy_url).await;
    assert_ne!(refused.status(), 200, "a refused model answered");
    let log = worker.log();
    let after_restart = &log[log.rfind("REFUSED").expect("refused")..];
    assert!(
        !after_restart.contains("serving the model from its encrypted weights"),
        "{after_restart}"
    );

    // 4. Re-attestation: restarted with the intact ciphertext and a re-attestation margin
    // longer than its attestation's life, the node re-attests at once. The keeper sees the new
    // attestation and grants the key again, a fresh grant that expires with it; the node
    // serves on.
    worker.stop();
    std::fs::write(&encrypted, &intact).unwrap();
    let old_grant = grants
        .key_grant(node_id)
        .await
        .expect("key_grant")
        .expect("the node's grant");
    let granted = format!("granted node={node_id}");
    let granted_before = times(&keeper.log(), &granted);
    let serving = "serving the model from its encrypted weights";
    let serving_before = times(&worker.log(), serving);
    let reattested_before = times(&worker.log(), "re-attested");
    let regrant = format!("decision node={node_id} grant (re-attested)");
    let regrant_before = times(&keeper.log(), &regrant);
    start_worker(
        &mut worker,
        &indexer,
        &factory_id,
        &listen,
        &[
            "--heartbeat-secs",
            "1",
            "--reattest-before-secs",
            "315360000",
        ],
    );
    let worker_process = worker.process.as_mut().expect("worker process");
    log_shows_more(worker_process, serving, serving_before).await;
    log_shows_more(worker_process, "re-attested", reattested_before).await;
    log_shows_more(&mut keeper, &regrant, regrant_before).await;
    log_shows_more(&mut keeper, &granted, granted_before).await;
    let registry = RegistryClient::new(&client, suite.registry.account_id().clone());
    let node = registry
        .get_node(node_id)
        .await
        .expect("get_node")
        .expect("the node");
    let fresh = grants
        .key_grant(node_id)
        .await
        .expect("key_grant")
        .expect("the node's fresh grant");
    assert_eq!(fresh.expires_at_ns, node.attestation_expires_at_ns);
    assert!(
        fresh.expires_at_ns.0 > old_grant.expires_at_ns.0,
        "{fresh:?} after {old_grant:?}"
    );
    let response = embeddings(&proxy_url).await;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "{body}\n{}", proxy.log_tail(20));

    // 5. The operator deregisters the node: the keeper revokes its grant, the node stops
    // serving the model, and the keeper's later passes give it no new key.
    let revoked = format!("revoked node={node_id}");
    let revoked_before = times(&keeper.log(), &revoked);
    let stopped = "REVOKED: this node's key grant is gone";
    let stopped_before = times(&worker.log(), stopped);
    registry
        .deregister(node_id)
        .expect("args")
        .send(&worker.operator)
        .await
        .expect("deregister");
    log_shows_more(&mut keeper, &revoked, revoked_before).await;
    log_shows(
        &mut keeper,
        &format!("decision node={node_id} revoke (deregistered)"),
    )
    .await;
    let worker_process = worker.process.as_mut().expect("worker process");
    log_shows_more(worker_process, stopped, stopped_before).await;
    let passes = times(&keeper.log(), "pass nodes=");
    log_shows_more(&mut keeper, "pass nodes=", passes + 1).await;
    assert_eq!(grants.key_grant(node_id).await.expect("key_grant"), None);
    let log = keeper.log();
    let since_revoked = &log[log.rfind(&revoked).expect("revoked")..];
    assert!(!since_revoked.contains(&granted), "{since_revoked}");
    assert_ne!(
        embeddings(&proxy_url).await.status(),
        200,
        "a deregistered node answered"
    );

    keeper.terminate(Duration::from_secs(10));
    proxy.terminate(Duration::from_secs(10));
    worker.stop();
}
