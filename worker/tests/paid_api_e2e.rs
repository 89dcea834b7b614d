//! Acceptance of the private, paid API on localnet, every component a separate process:
//! localnet with the contracts, the indexer, `worker run` serving gemma-3-270m (chat) and
//! MiniLM (embeddings) behind its OHTTP gateway, `ecloud proxy`, and the official `openai`
//! Python SDK pointed at the proxy. The SDK does streaming and non-streaming chat completions
//! concurrently and an embeddings call; the test then checks every response's signature (from
//! the node's `/v1/signature/{id}`, over the exact bytes the SDK sent and received, by the
//! signer the node's fresh attestation report binds to its on-chain record) and that each
//! channel settles on chain to the exact sum of its responses' costs, with the marketplace's
//! funds invariant holding.
//!
//! Needs, with the same CARGO_TARGET_DIR: the localnet, indexer, worker and ecloud binaries,
//! the contracts (`./scripts/build-contracts.sh`), MiniLM (`worker/scripts/fetch-model.sh`),
//! gemma (`ECLOUD_GEMMA_GGUF`, `worker/scripts/fetch-gemma.sh`) and the SDK
//! (`ECLOUD_OPENAI_PYTHON`, `ensure_openai_sdk` in scripts/lib.sh); scripts/test.sh runs it.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chain_client::contracts::{MarketplaceClient, RegistryClient};
use enclave_cloud_common::ModelId;
use protocol::channel_api::{paths, response_cost};
use sealed_api::report::AttestationReport;
use sealed_api::signature::{ResponseSignature, SigningAlgo};
use serde_json::Value;
use support::paid_stack::{NodeSetup, PaidStack, gemma_gguf};

/// The chat model's id on chain and its price: 1 NEAR in / 2 NEAR out per million tokens.
const CHAT_MODEL: &str = "gemma";
const CHAT_PRICE: &str = "gemma:1000000000000000000000000:2000000000000000000000000";
/// The embeddings model served over the paid API, 1 NEAR per million tokens (the suite's own
/// model is priced for jobs at 0.1 NEAR a token, over any test channel's deposit).
const EMBED_MODEL: &str = "embed";
const EMBED_PRICE: &str = "embed:1000000000000000000000000:1000000000000000000000000";
const SETTLE_TIMEOUT: Duration = Duration::from_secs(180);

fn openai_python() -> PathBuf {
    std::env::var_os("ECLOUD_OPENAI_PYTHON")
        .map(PathBuf::from)
        .expect("ECLOUD_OPENAI_PYTHON (ensure_openai_sdk in scripts/lib.sh)")
}

async fn http_get(url: &str) -> Value {
    let response = reqwest::get(url).await.expect("GET");
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response.json().await.expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_through_ecloud_proxy_is_private_signed_and_settled_exactly() {
    let mut dir = tempfile::tempdir().unwrap();
    dir.disable_cleanup(std::env::var_os("ECLOUD_TEST_KEEP").is_some());
    eprintln!("processes run in {}", dir.path().display());
    let minilm = support::model_dir().display().to_string();
    let gguf = gemma_gguf().display().to_string();
    let stack = PaidStack::start(
        dir.path(),
        NodeSetup {
            backend: vec![
                "--backend".into(),
                "embedded".into(),
                "--model-dir".into(),
                minilm,
                "--gemma-gguf".into(),
                gguf,
                "--model".into(),
                "minilm=all-minilm-l6-v2".into(),
                "--model".into(),
                format!("{EMBED_MODEL}=all-minilm-l6-v2"),
                "--model".into(),
                format!("{CHAT_MODEL}=gemma-3-270m"),
            ],
            prices: &[CHAT_PRICE, EMBED_PRICE],
            worker_extra: &["--settle-interval", "2s"],
            proxy_extra: &["--deposit", "3 NEAR"],
        },
    )
    .await;
    let (client, suite, endpoint) = (&stack.client, &stack.suite, &stack.endpoint);

    // The official SDK, as an application uses it.
    let started = Instant::now();
    let out = Command::new(openai_python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/openai_sdk_client.py"
        ))
        .args([&stack.proxy_url, CHAT_MODEL, EMBED_MODEL])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "openai SDK client failed: {}\nproxy log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.path().join("proxy.log")).unwrap_or_default()
    );
    eprintln!("SDK calls took {:?}", started.elapsed());
    let result: Value = serde_json::from_slice(&out.stdout).expect("SDK client JSON");
    let chats = result["chats"].as_array().unwrap();
    assert_eq!(chats.len(), 4);
    for chat in chats {
        assert!(
            !chat["text"].as_str().unwrap_or_default().is_empty(),
            "{chat}"
        );
        let usage = &chat["usage"];
        assert!(usage["completion_tokens"].as_u64().unwrap() >= 1);
        let max_tokens = if chat["stream"].as_bool().unwrap() {
            12
        } else {
            10
        };
        assert!(usage["completion_tokens"].as_u64().unwrap() <= max_tokens);
        if chat["stream"].as_bool().unwrap() {
            assert!(
                usage["completion_tokens"].as_u64().unwrap()
                    >= chat["content_chunks"].as_u64().unwrap()
            );
        }
    }
    assert_eq!(result["embeddings"]["dimensions"], 384);

    // The signer the node's fresh report binds, and its on-chain record.
    let nonce = hex::encode(rand_nonce());
    let report: AttestationReport = serde_json::from_value(
        http_get(&format!(
            "{endpoint}{}?nonce={nonce}&signing_algo=ecdsa",
            paths::ATTESTATION_REPORT
        ))
        .await,
    )
    .expect("report");
    report
        .check_binding(&nonce)
        .expect("the report binds signer and nonce");
    let record = RegistryClient::new(client, suite.registry_id().clone())
        .get_node(stack.node_id)
        .await
        .unwrap()
        .expect("node record");
    assert_eq!(
        serde_json::to_value(&record.signer_key).unwrap(),
        serde_json::to_value(&report.attestation.near_public_key).unwrap(),
        "the report's NEAR key is the one registered"
    );

    // Every exchange the SDK made carries both signatures over its exact bytes.
    let exchanges = result["exchanges"].as_array().unwrap();
    assert_eq!(exchanges.len(), 5);
    for ex in exchanges {
        let request = B64.decode(ex["request"].as_str().unwrap()).unwrap();
        let response = B64.decode(ex["response"].as_str().unwrap()).unwrap();
        let id = ex["response_id"].as_str().expect("x-ecloud-response-id");
        for (algo, address) in [
            (SigningAlgo::Ecdsa, &report.signing_addresses.ecdsa),
            (SigningAlgo::Ed25519, &report.signing_addresses.ed25519),
        ] {
            let sig: ResponseSignature = serde_json::from_value(
                http_get(&format!(
                    "{endpoint}{}{id}?signing_algo={algo}",
                    paths::SIGNATURE_PREFIX
                ))
                .await,
            )
            .expect("signature");
            sig.verify_exchange(&request, &response, address)
                .unwrap_or_else(|e| panic!("{} {id} {algo}: {e}", ex["path"]));
        }
    }

    // Each channel settles to the exact sum of its responses' costs.
    let channels = stack.channels().await;
    assert_eq!(channels.len(), 2, "one channel per model: {channels:?}");
    let chat_model: ModelId = CHAT_MODEL.parse().unwrap();
    let mut expected = std::collections::HashMap::new();
    for ch in &channels {
        let owed: u128 = if ch.model_id == chat_model {
            chats
                .iter()
                .map(|c| {
                    response_cost(
                        ch,
                        c["usage"]["prompt_tokens"].as_u64().unwrap(),
                        c["usage"]["completion_tokens"].as_u64().unwrap(),
                    )
                })
                .sum()
        } else {
            response_cost(
                ch,
                result["embeddings"]["usage"]["prompt_tokens"]
                    .as_u64()
                    .unwrap(),
                0,
            )
        };
        assert!(owed > 0);
        expected.insert(ch.channel_id, owed);
    }
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let now = stack.channels().await;
        let settled: Vec<_> = now
            .iter()
            .map(|c| (c.channel_id, c.settled.0, expected[&c.channel_id]))
            .collect();
        if settled.iter().all(|(_, s, e)| s == e) {
            eprintln!("settled exactly: {settled:?}");
            break;
        }
        assert!(
            settled.iter().all(|(_, s, e)| s <= e),
            "settled more than the responses cost: {settled:?}"
        );
        assert!(
            Instant::now() < deadline,
            "channels did not settle to the responses' costs: {settled:?}\nworker log:\n{}",
            stack.worker.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let funds = MarketplaceClient::new(client, suite.marketplace_id().clone())
        .funds()
        .await
        .unwrap();
    assert!(funds.balanced, "funds invariant: {funds:?}");
}

fn rand_nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).expect("rng");
    n
}
