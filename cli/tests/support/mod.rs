//! Shared by the integration tests: a node that answers jobs sealed by the client, and a fake
//! indexer serving JSON.
//!
//! The node is made of the shared wire format only ([`protocol`]): it opens the input as the
//! worker does, answers it, seals the answer to the user and signs the receipt. The worker's
//! own executor is tested against the same `protocol` functions in the worker crate (`ecloud`
//! does not depend on the worker).

#![allow(dead_code)] // each test file uses its own part

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ecloud::input::{InputSpec, build};
use ecloud::jobs::{Deadlines, MarketConfig, NodeKey, SettledEvent, SettledJob, Terms, prepare};
use ecloud::nodes::NodeInfo;
use ecloud::user_key::{self, UserKey};
use ed25519_dalek::{Signer as _, SigningKey};
use enclave_cloud_common::{
    Hash32, InputRef, JobId, ModelId, NodeId, ReceiptSubject, ResultReceipt, Usage,
};
use near_sdk::json_types::{Base64VecU8, U64};
use protocol::envelope::{self, EncryptionSecret, Envelope, EnvelopeContext};
use protocol::job::{CHAT_URL, EMBEDDINGS_URL, JobRequest, JobResponse, sha256};
use protocol::openai::{
    ChatChoice, ChatCompletionRequest, ChatCompletionResponse, ChatMessage, EmbeddingData,
    EmbeddingsRequest, EmbeddingsResponse, Usage as OpenAiUsage,
};

/// A node's keys: the x25519 key inputs are sealed to and the ed25519 key that signs receipts.
pub struct TestNode {
    pub encryption: EncryptionSecret,
    pub signing: SigningKey,
}

/// The encrypted weights a node names: in its answer (inside the sealed output) and in its
/// signed receipt. An honest node names the same ones in both (none for plain weights).
#[derive(Debug, Clone, Copy, Default)]
pub struct Weights {
    pub answer: Option<Hash32>,
    pub receipt: Option<Hash32>,
}

impl Weights {
    /// An honest node serving the encrypted weights `hash`.
    pub fn served(hash: Hash32) -> Self {
        Self {
            answer: Some(hash),
            receipt: Some(hash),
        }
    }
}

/// What the node answered: the receipt, its signature and the sealed output.
pub struct NodeAnswer {
    pub receipt: ResultReceipt,
    pub signature: [u8; 64],
    pub output: Vec<u8>,
}

impl TestNode {
    pub fn generate() -> Self {
        // 32 random bytes from the OS CSPRNG, through a throwaway x25519 key.
        let seed = EncryptionSecret::generate().to_bytes();
        Self {
            encryption: EncryptionSecret::generate(),
            signing: SigningKey::from_bytes(&seed),
        }
    }

    pub fn enclave_key(&self) -> [u8; 32] {
        self.encryption.public_key()
    }

    /// `ed25519:<base58>`, as the registry and the indexer write it.
    pub fn near_public_key(&self) -> String {
        attestation::format_near_ed25519_key(&self.signing.verifying_key().to_bytes())
    }

    /// Answers job `subject` of `model` for `user_key`. Chat: "echo: <last message>" (5 prompt
    /// + 3 completion tokens). Embeddings: one 3-dim vector per input (2 tokens each).
    pub fn answer(
        &self,
        subject: ReceiptSubject,
        model: &ModelId,
        user_key: [u8; 32],
        input: &[u8],
    ) -> NodeAnswer {
        self.answer_naming(subject, model, user_key, input, Weights::default())
    }

    /// [`Self::answer`] naming `weights` in the answer and in the signed receipt.
    pub fn answer_naming(
        &self,
        subject: ReceiptSubject,
        model: &ModelId,
        user_key: [u8; 32],
        input: &[u8],
        weights: Weights,
    ) -> NodeAnswer {
        let ctx = EnvelopeContext::JobInput {
            model_id: model.clone(),
            user_key,
        };
        let envelope = Envelope::from_bytes(input).expect("an envelope");
        let plaintext = envelope::open(&self.encryption, &envelope, &ctx).expect("opens");
        let request: JobRequest = serde_json::from_slice(&plaintext).expect("a job request");
        let (body, prompt_tokens, completion_tokens) = match request.url.as_str() {
            CHAT_URL => {
                let r: ChatCompletionRequest =
                    serde_json::from_value(request.body).expect("chat request");
                let last = r
                    .messages
                    .last()
                    .map(|m| m.content.clone())
                    .unwrap_or_default();
                let response = ChatCompletionResponse {
                    id: "c1".into(),
                    object: "chat.completion".into(),
                    created: 0,
                    model: r.model,
                    choices: vec![ChatChoice {
                        index: 0,
                        message: ChatMessage {
                            role: "assistant".into(),
                            content: format!("echo: {last}"),
                        },
                        finish_reason: Some("stop".into()),
                    }],
                    usage: OpenAiUsage::new(5, 3),
                };
                (serde_json::to_value(response).expect("json"), 5, 3)
            }
            EMBEDDINGS_URL => {
                let r: EmbeddingsRequest =
                    serde_json::from_value(request.body).expect("embeddings request");
                let n = r.input.clone().into_vec().len();
                let response = EmbeddingsResponse {
                    object: "list".into(),
                    data: (0..n)
                        .map(|i| EmbeddingData {
                            object: "embedding".into(),
                            index: i as u32,
                            embedding: vec![0.5, -0.25, i as f32],
                            base64: false,
                        })
                        .collect(),
                    model: r.model,
                    usage: OpenAiUsage::new(2 * n as u64, 0),
                };
                (
                    serde_json::to_value(response).expect("json"),
                    2 * n as u64,
                    0,
                )
            }
            other => panic!("unexpected url {other}"),
        };
        let response = JobResponse {
            status_code: 200,
            body,
            weights_hash: weights.answer,
        };
        let output = envelope::seal_to(
            &user_key,
            &serde_json::to_vec(&response).expect("json"),
            &EnvelopeContext::JobOutput {
                subject,
                model_id: model.clone(),
            },
        )
        .expect("seal")
        .to_bytes();
        let receipt = ResultReceipt {
            subject,
            model_id: model.clone(),
            input_hash: sha256(input),
            output_hash: sha256(&output),
            usage: Usage {
                input_tokens: U64(prompt_tokens),
                output_tokens: U64(completion_tokens),
            },
            weights_hash: weights.receipt,
        };
        let signature = self.signing.sign(&receipt.signing_bytes()).to_bytes();
        NodeAnswer {
            receipt,
            signature,
            output,
        }
    }
}

pub fn model() -> ModelId {
    "llama".parse().expect("model id")
}

/// A node's record as the indexer (and, with the same fields, the registry) serves it.
pub fn node_json(id: u64, status: &str, node: &TestNode) -> serde_json::Value {
    serde_json::json!({
        "node_id": id.to_string(), "operator": "op.test.near", "status": status, "kind": "dev",
        "signer_key": node.near_public_key(),
        "encryption_key": hex::encode(node.enclave_key()), "tcb_status": "None",
        "measurements": {}, "capacity": 4, "gpus": [{"model": "H100", "device_id": "00"}],
        "prices": [{"model_id": "llama", "input_per_million": "1000000000000000000000",
                    "output_per_million": "2000000000000000000000"}],
        "region": "eu-west", "endpoint": null, "registered_height": 5,
        "registered_at_ns": "1", "attestation_expires_at_ns": "9000000000000000000",
        "last_heartbeat_ns": "2", "jobs_settled": 0, "requests_answered": 0
    })
}

/// The indexer's `/v1/nodes/{id}` answer: the node and its history.
pub fn node_detail_json(id: u64, status: &str, node: &TestNode) -> serde_json::Value {
    let mut detail = node_json(id, status, node);
    detail["status_history"] = serde_json::json!([]);
    detail["operator_stake"] = serde_json::Value::Null;
    detail["key_grants"] = serde_json::json!([]);
    detail
}

pub fn user(dir: &Path, account: &str) -> UserKey {
    user_key::load_or_create(dir, &account.parse().expect("account")).expect("user key")
}

/// A job the node answered, as the client sees it afterwards.
pub struct Answered {
    pub keys: Arc<TestNode>,
    pub node: NodeInfo,
    pub job: SettledJob,
    pub key: NodeKey,
}

/// Seals `input` for `user` with the client's `prepare`, lets a [`TestNode`] answer it as job
/// `id`, and returns the settled job.
pub async fn answer(user: &UserKey, id: u64, input: &InputSpec) -> Answered {
    answer_naming(user, id, input, Weights::default()).await
}

/// [`answer`] by a node that names `weights`.
pub async fn answer_naming(
    user: &UserKey,
    id: u64,
    input: &InputSpec,
    weights: Weights,
) -> Answered {
    let keys = Arc::new(TestNode::generate());
    let record: protocol::indexer::Node =
        serde_json::from_value(node_json(1, "active", &keys)).expect("node record");
    let node = NodeInfo::try_from(record).expect("node record");
    let request = build(input, &model()).expect("request");
    let account = |s: &str| s.parse::<near_sdk::AccountId>().expect("account id");
    let config = MarketConfig {
        max_inline_bytes: 2048,
        ..MarketConfig::new(
            account("owner.near"),
            account("registry.near"),
            account("treasury.near"),
        )
    };
    let deadlines = Deadlines {
        deadline: Duration::from_secs(600),
        claim_window: None,
    };
    let terms = Terms {
        price_cap: 10,
        now_ns: 1_000,
        deadlines,
    };
    let prepared = prepare(&node, &model(), &request, user, terms, &config).expect("prepare");
    let ready = keys.answer_naming(
        ReceiptSubject::Job(JobId(id)),
        &model(),
        user.public_key(),
        &prepared.ciphertext,
        weights,
    );
    let job = SettledJob {
        job_id: JobId(id),
        model_id: model(),
        user_key: user.public_hex(),
        input: prepared.ciphertext,
        settled: SettledEvent {
            node_id: NodeId(1),
            usage: ready.receipt.usage,
            output: InputRef::Inline {
                ciphertext: Base64VecU8(ready.output),
            },
            input_hash: ready.receipt.input_hash,
            output_hash: ready.receipt.output_hash,
            signature: Base64VecU8(ready.signature.to_vec()),
            weights_hash: ready.receipt.weights_hash,
        },
    };
    let key = NodeKey {
        key: node.signer_key.clone(),
        source: "registry",
        transaction_signed: false,
    };
    Answered {
        keys,
        node,
        job,
        key,
    }
}

pub fn prompt(text: &str) -> InputSpec {
    InputSpec::Prompt {
        prompt: text.into(),
        system: None,
        max_tokens: None,
        temperature: None,
    }
}

pub fn output_mut(job: &mut SettledJob) -> &mut Vec<u8> {
    match &mut job.settled.output {
        InputRef::Inline { ciphertext } => &mut ciphertext.0,
        InputRef::Remote { .. } => panic!("inline output expected"),
    }
}

/// The indexer's `/v1/jobs/{id}` answer for a settled job.
pub fn indexer_job(job: &SettledJob, status: &str) -> serde_json::Value {
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let s = &job.settled;
    let timeline = if status == "settled" {
        let mut data = serde_json::json!({
            "job_id": job.job_id, "node_id": s.node_id, "usage": s.usage,
            "output": s.output,
            "input_hash": s.input_hash, "output_hash": s.output_hash,
            "signature": b64(&s.signature.0),
            "settlement": {"cost": "8", "provider": "7", "royalty": "1", "protocol_fee": "0", "refund": "2"}
        });
        // As the marketplace writes it: the key only when the receipt names weights.
        if let Some(w) = s.weights_hash {
            data["weights_hash"] = serde_json::json!(w);
        }
        serde_json::json!([{
            "event": "job_settled", "block_height": 12, "timestamp_ns": "5", "receipt_id": "r",
            "data": data
        }])
    } else {
        serde_json::json!([])
    };
    serde_json::json!({
        "job_id": job.job_id, "user": "alice.test.near", "model_id": job.model_id,
        "asset": "near", "price_cap": "10", "claim_deadline_ns": "1", "deadline_ns": "2",
        "target": {"kind": "node", "node_id": "1"},
        "input": {"kind": "inline", "ciphertext": b64(&job.input)},
        "user_key": job.user_key, "status": status, "node_id": "1", "operator": "op.test.near",
        "usage": {"input_tokens": s.usage.input_tokens.0, "output_tokens": s.usage.output_tokens.0},
        "output": {}, "output_hash": s.output_hash, "weights_hash": s.weights_hash,
        "settlement": null, "cancel_reason": null, "refund": null, "slashed": null,
        "created_height": 10, "created_at_ns": "1", "updated_height": 12, "timeline": timeline
    })
}

/// Serves `app` on a free local port in a background thread; returns the base URL.
fn serve_in_background(app: impl FnOnce() -> axum::Router + Send + 'static) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app()).await.expect("serve");
        });
    });
    url
}

/// Serves `files` (path -> bytes; anything else 404), as a node serves stored outputs.
pub fn fake_files(files: BTreeMap<String, Vec<u8>>) -> String {
    serve_in_background(move || {
        let files = Arc::new(files);
        axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let files = files.clone();
            async move {
                match files.get(uri.path()) {
                    Some(bytes) => (axum::http::StatusCode::OK, bytes.clone()),
                    None => (axum::http::StatusCode::NOT_FOUND, Vec::new()),
                }
            }
        })
    })
}

/// Serves `routes` (path -> JSON body; anything else 404 with the indexer's error body) on a
/// free local port in a background thread; returns the base URL. Each request's path and
/// query are appended to `seen`.
pub fn fake_indexer(
    routes: BTreeMap<String, serde_json::Value>,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
) -> String {
    serve_in_background(move || {
        let routes = Arc::new(routes);
        axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let routes = routes.clone();
            let seen = seen.clone();
            async move {
                seen.lock().expect("lock").push(uri.to_string());
                match routes.get(uri.path()) {
                    Some(body) => (axum::http::StatusCode::OK, axum::Json(body.clone())),
                    None => (
                        axum::http::StatusCode::NOT_FOUND,
                        axum::Json(serde_json::json!({"error": "not_found",
                                "message": format!("{} not found", uri.path())})),
                    ),
                }
            }
        })
    })
}

/// A local URL nothing listens on.
pub fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

/// The attestation report a node serves for `nonce` (`GET /v1/attestation/report`), as the
/// worker makes it: its bundle, both signing addresses, the NEAR key's signer binding of the
/// ecdsa address, and the OHTTP key configuration `ohttp_config`.
pub fn attestation_report(
    signer: &sealed_api::ResponseSigner,
    ohttp_config: &sealed_api::KeyConfig,
    bundle: attestation::AttestationBundle,
    nonce: &str,
) -> sealed_api::AttestationReport {
    use sealed_api::SigningAlgo;
    let ecdsa = signer.address(SigningAlgo::Ecdsa);
    sealed_api::AttestationReport {
        signing_address: ecdsa.clone(),
        signing_algo: SigningAlgo::Ecdsa,
        request_nonce: nonce.to_owned(),
        report_data: hex::encode(
            sealed_api::report::report_data(&ecdsa, SigningAlgo::Ecdsa, nonce).expect("nonce"),
        ),
        attestation: bundle,
        signing_addresses: sealed_api::report::SigningAddresses {
            ecdsa,
            ed25519: hex::encode(signer.ed25519_public()),
        },
        ohttp_key_config: hex::encode(ohttp_config.encode()),
        signer_binding: signer.signer_binding(nonce).expect("nonce"),
    }
}
