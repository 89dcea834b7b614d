//! `ecloud proxy` in process against fake nodes: real sockets, the real sealed transport
//! (`sealed_api::Gateway` in front of the node's routes), real signatures (`ResponseSigner`),
//! a real dev attestation bundle verified under a policy with the dev CA, and an in-memory
//! stand-in for the indexer, registry and marketplace (`Market`). Each fake node checks the
//! payment headers the way the worker must (request signature by the channel key over the
//! exact body, sequence numbers served once) and records the vouchers it is handed.
//!
//! Covered: streamed and whole chat completions and embeddings, several requests at once,
//! vouchers cumulative and equal to the verified costs; a node that over-reports usage is not
//! paid and the next request goes to another node; a node whose report does not bind the
//! client's nonce or its OHTTP key is refused before anything is sent or any channel opened.

#![allow(clippy::unwrap_used)] // the fake node and market are test helpers outside #[test]

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use attestation::{AttestationBundle, VerifyPolicy};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ecloud::channels::{ChannelRecord, ChannelStore};
use ecloud::proxy::market::Market;
use ecloud::proxy::{Options, Proxy};
use enclave_cloud_common::events::model::ModelManifest;
use enclave_cloud_common::interfaces::NodeView;
use enclave_cloud_common::interfaces::marketplace::{
    Channel, ChannelState, NodePrice, OpenChannelSpec, StorageSource,
};
use enclave_cloud_common::{
    Asset, AttestationKind, ChannelId, Measurements, ModelId, ModelPrice, NodeId, NodeStatus,
    TcbStatus,
};
use http_body::Frame;
use http_body_util::StreamBody;
use near_sdk::json_types::{U64, U128};
use near_sdk::{AccountId, CurveType, PublicKey};
use protocol::channel_api::{
    BilledUsage, ChannelPayment, VoucherUpdate, authorization, headers, response_cost,
};
use protocol::dev_attestation::dev_bundle_with_events;
use sealed_api::{AttestationReport, Gateway, GatewayKey, Limits, ResponseSigner};
use serde_json::{Value, json};

const MODEL: &str = "llm";
const PROMPT_TOKENS: u64 = 5;
const TOKENS: u64 = 6;

fn model() -> ModelId {
    MODEL.parse().unwrap()
}

fn market_account() -> AccountId {
    "marketplace.test.near".parse().unwrap()
}

fn user() -> AccountId {
    "alice.test.near".parse().unwrap()
}

fn dev_ca() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[77; 32])
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// How a fake node misbehaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Fault {
    #[default]
    None,
    /// Bills more completion tokens than the request's max_tokens.
    OverReports,
    /// Answers the report with another nonce than the client's.
    WrongNonce,
    /// Names another OHTTP key than its attested enclave key.
    WrongOhttpKey,
    /// Signs its answers with a key its attestation does not name.
    ForeignSigner,
    /// Its backend dies in the middle of a stream (no final sealed chunk).
    Truncates,
    /// Signs its answers as served by the encrypted weights [`WEIGHTS`].
    ServesWeights,
    /// Signs its answers as served by other weights than [`WEIGHTS`] (and measured those).
    OtherWeights,
    /// Signs its answers as served by [`WEIGHTS`] but its attestation does not measure them.
    UnmeasuredWeights,
    /// Measures [`WEIGHTS`] but signs its answers as served by others.
    SignsOtherWeights,
}

/// The encrypted weights of the manifest in the weights tests.
const WEIGHTS: [u8; 32] = [0xab; 32];

/// What a fake node saw.
#[derive(Default)]
struct Seen {
    /// (channel, sequence) of every paid request served.
    sequences: Vec<(u64, u64)>,
    /// Voucher amounts carried by requests or delivered on their own.
    vouchers: Vec<u128>,
    /// Requests that reached the inner routes.
    requests: usize,
    /// The exact (request, response) bodies signed under each response id.
    signed: HashMap<String, (Vec<u8>, Vec<u8>)>,
}

struct FakeNode {
    id: NodeId,
    fault: Fault,
    /// The enclave's x25519 secret (the gateway's key) and its configuration.
    secret: [u8; 32],
    key: GatewayKey,
    signer: ResponseSigner,
    seen: Mutex<Seen>,
    chain: Arc<FakeChain>,
}

impl FakeNode {
    fn near_key(&self) -> [u8; 32] {
        self.signer.ed25519_public()
    }

    /// The weights it serves the model from, if it says so.
    fn weights(&self) -> Option<&'static [u8; 32]> {
        match self.fault {
            Fault::ServesWeights | Fault::UnmeasuredWeights => Some(&WEIGHTS),
            Fault::OtherWeights | Fault::SignsOtherWeights => Some(&[0xcd; 32]),
            _ => None,
        }
    }

    /// The dev bundle the worker's dev provider makes (`protocol::dev_attestation`), with the
    /// weights it measured.
    fn bundle(&self) -> AttestationBundle {
        let enclave: [u8; 32] = self.key.config().public_key.as_slice().try_into().unwrap();
        let measured = match self.fault {
            Fault::UnmeasuredWeights => None,
            Fault::SignsOtherWeights => Some(&WEIGHTS),
            _ => self.weights(),
        };
        let events = measured
            .map(|w| attestation::runtime_event(attestation::MODEL_WEIGHTS_EVENT, w))
            .into_iter()
            .collect();
        dev_bundle_with_events(
            &dev_ca(),
            &enclave,
            &self.near_key(),
            now_secs() + 3600,
            events,
        )
        .unwrap()
    }

    fn report(&self, nonce: &str) -> AttestationReport {
        let nonce = if self.fault == Fault::WrongNonce {
            "ab".repeat(32)
        } else {
            nonce.to_owned()
        };
        let other = GatewayKey::generate(1);
        let config = if self.fault == Fault::WrongOhttpKey {
            other.config()
        } else {
            self.key.config()
        };
        support::attestation_report(&self.signer, config, self.bundle(), &nonce)
    }

    /// Checks the payment like the worker: the channel is this node's, the request
    /// signature is the channel key's over this body, the sequence number is new, the
    /// voucher (if any) verifies. Returns the channel.
    fn check_payment(&self, headers: &HeaderMap, body: &[u8]) -> Result<Channel, String> {
        let payment =
            ChannelPayment::from_headers(|name| headers.get(name).and_then(|v| v.to_str().ok()))
                .map_err(|e| e.to_string())?;
        let channel = self
            .chain
            .channels
            .lock()
            .unwrap()
            .get(&payment.channel_id)
            .cloned()
            .ok_or("unknown channel")?;
        if channel.node_id != self.id {
            return Err("another node's channel".into());
        }
        let key: [u8; 32] = channel.channel_key.as_bytes()[1..].try_into().unwrap();
        let auth = authorization(
            &market_account(),
            payment.channel_id,
            payment.sequence,
            body,
        );
        if !auth.verify(&key, &payment.request_signature) {
            return Err("bad request signature".into());
        }
        let mut seen = self.seen.lock().unwrap();
        let slot = (payment.channel_id.0, payment.sequence);
        if seen.sequences.contains(&slot) {
            return Err(format!("sequence {} replayed", payment.sequence));
        }
        seen.sequences.push(slot);
        if let Some((voucher, sig)) = payment.voucher(&market_account(), &channel.asset) {
            if !voucher.verify(&key, &sig) {
                return Err("bad voucher".into());
            }
            seen.vouchers.push(voucher.amount.0);
        }
        Ok(channel)
    }

    /// The answer's signatures: by the attested keys, or by others for `ForeignSigner`.
    fn sign(
        &self,
        id: &str,
        request: &[u8],
        response: &[u8],
    ) -> [sealed_api::ResponseSignature; 2] {
        self.seen
            .lock()
            .unwrap()
            .signed
            .insert(id.to_owned(), (request.to_vec(), response.to_vec()));
        if self.fault == Fault::ForeignSigner {
            let other = ResponseSigner::from_secrets(&[200; 32], &[201; 32]).unwrap();
            return other.sign_both(request, response);
        }
        self.signer
            .sign_both_served(request, response, self.weights())
    }

    fn bill(&self, channel: &Channel, max_tokens: u64) -> BilledUsage {
        let completion = match self.fault {
            Fault::OverReports => max_tokens + 5,
            _ => TOKENS.min(max_tokens),
        };
        BilledUsage {
            prompt_tokens: PROMPT_TOKENS,
            completion_tokens: completion,
            cost: U128(response_cost(channel, PROMPT_TOKENS, completion)),
        }
    }
}

fn refuse(why: String) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": {"message": why, "type": "payment", "code": "unpaid"}})),
    )
        .into_response()
}

async fn chat(State(node): State<Arc<FakeNode>>, headers: HeaderMap, body: Bytes) -> Response {
    let nth = {
        let mut seen = node.seen.lock().unwrap();
        seen.requests += 1;
        seen.requests
    };
    let channel = match node.check_payment(&headers, &body) {
        Ok(c) => c,
        Err(why) => return refuse(why),
    };
    let request: Value = serde_json::from_slice(&body).unwrap();
    let max_tokens = request["max_tokens"].as_u64().unwrap_or(64);
    let bill = node.bill(&channel, max_tokens);
    let id = format!("chatcmpl-{}-{nth}", node.id);
    let content_chunks = TOKENS.min(max_tokens);
    if request["stream"].as_bool() != Some(true) {
        let text: String = (0..content_chunks).map(|i| format!("t{i} ")).collect();
        let response = json!({
            "id": id, "object": "chat.completion", "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": bill.prompt_tokens, "completion_tokens": bill.completion_tokens,
                      "total_tokens": bill.prompt_tokens + bill.completion_tokens},
        })
        .to_string();
        let sigs = node.sign(&id, &body, response.as_bytes());
        return (
            [
                (header::CONTENT_TYPE, "application/json".to_owned()),
                (
                    header::HeaderName::from_static(headers::BILL),
                    serde_json::to_string(&bill).unwrap(),
                ),
                (
                    header::HeaderName::from_static(headers::SIGNATURES),
                    serde_json::to_string(&sigs).unwrap(),
                ),
                (header::HeaderName::from_static(headers::RESPONSE_ID), id),
            ],
            response,
        )
            .into_response();
    }
    let mut events: Vec<String> = (0..content_chunks)
        .map(|i| {
            let chunk = json!({"id": id, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": format!("t{i} ")}}]});
            format!("data: {chunk}\n\n")
        })
        .collect();
    let usage = json!({"id": id, "object": "chat.completion.chunk", "choices": [],
        "usage": {"prompt_tokens": bill.prompt_tokens, "completion_tokens": bill.completion_tokens}});
    events.push(format!("data: {usage}\n\n"));
    events.push("data: [DONE]\n\n".into());
    let full: String = events.concat();
    let sigs = node.sign(&id, &body, full.as_bytes());
    let mut trailers = HeaderMap::new();
    trailers.insert(headers::RESPONSE_ID, id.parse().unwrap());
    trailers.insert(
        headers::BILL,
        serde_json::to_string(&bill).unwrap().parse().unwrap(),
    );
    trailers.insert(
        headers::SIGNATURES,
        serde_json::to_string(&sigs).unwrap().parse().unwrap(),
    );
    let mut frames: Vec<Result<Frame<Bytes>, std::io::Error>> = events
        .into_iter()
        .map(|e| Ok(Frame::data(Bytes::from(e))))
        .chain([Ok(Frame::trailers(trailers))])
        .collect();
    if node.fault == Fault::Truncates {
        // Two events, then (once they surely went out) the backend dies.
        frames.truncate(2);
        frames.push(Err(std::io::Error::other("backend died")));
    }
    let frames = futures_util::stream::unfold(frames.into_iter(), |mut frames| async move {
        let frame = frames.next()?;
        if frame.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Some((frame, frames))
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::new(StreamBody::new(frames)),
    )
        .into_response()
}

async fn embeddings(
    State(node): State<Arc<FakeNode>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let nth = {
        let mut seen = node.seen.lock().unwrap();
        seen.requests += 1;
        seen.requests
    };
    let channel = match node.check_payment(&headers, &body) {
        Ok(c) => c,
        Err(why) => return refuse(why),
    };
    let bill = BilledUsage {
        prompt_tokens: 4,
        completion_tokens: 0,
        cost: U128(response_cost(&channel, 4, 0)),
    };
    let response = json!({"object": "list", "model": MODEL,
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
        "usage": {"prompt_tokens": 4, "total_tokens": 4}})
    .to_string();
    let id = format!("emb-{nth}");
    let sigs = node.sign(&id, &body, response.as_bytes());
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::HeaderName::from_static(headers::BILL),
                serde_json::to_string(&bill).unwrap(),
            ),
            (
                header::HeaderName::from_static(headers::SIGNATURES),
                serde_json::to_string(&sigs).unwrap(),
            ),
            (header::HeaderName::from_static(headers::RESPONSE_ID), id),
        ],
        response,
    )
        .into_response()
}

async fn voucher(State(node): State<Arc<FakeNode>>, body: Bytes) -> Response {
    let update: VoucherUpdate = serde_json::from_slice(&body).unwrap();
    let channel = node.chain.channels.lock().unwrap()[&update.channel_id].clone();
    let key: [u8; 32] = channel.channel_key.as_bytes()[1..].try_into().unwrap();
    let sig: [u8; 64] = update.signature.0.as_slice().try_into().unwrap();
    if !update.voucher.verify(&key, &sig) || update.voucher.marketplace != market_account() {
        return refuse("bad voucher".into());
    }
    node.seen
        .lock()
        .unwrap()
        .vouchers
        .push(update.voucher.amount.0);
    axum::Json(json!({"accepted": true})).into_response()
}

async fn report(State(node): State<Arc<FakeNode>>, uri: axum::http::Uri) -> Response {
    let nonce = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("nonce="))
        .unwrap_or_default()
        .to_owned();
    axum::Json(node.report(&nonce)).into_response()
}

/// Starts a fake node; returns it and its endpoint.
async fn start_node(chain: &Arc<FakeChain>, id: u64, fault: Fault) -> (Arc<FakeNode>, String) {
    let seed = u8::try_from(id).unwrap() + 1;
    let node = Arc::new(FakeNode {
        id: NodeId(id),
        fault,
        secret: [seed + 100; 32],
        key: GatewayKey::from_secret(1, &[seed + 100; 32]).unwrap(),
        signer: ResponseSigner::from_secrets(&[seed; 32], &[seed + 50; 32]).unwrap(),
        seen: Mutex::default(),
        chain: chain.clone(),
    });
    let inner = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/channels/voucher", post(voucher))
        .with_state(node.clone());
    let gateway = Gateway::new(
        GatewayKey::from_secret(1, &node.secret).unwrap(),
        Limits::default(),
    );
    let app = gateway.router(inner).merge(
        Router::new()
            .route("/v1/attestation/report", get(report))
            .with_state(node.clone()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (node, url)
}

/// Indexer, registry and marketplace in memory.
struct FakeChain {
    nodes: Mutex<Vec<NodeView>>,
    channels: Mutex<HashMap<ChannelId, Channel>>,
    /// The model's manifest (none: not a factory model).
    manifest: Mutex<Option<ModelManifest>>,
}

/// A manifest naming the encrypted weights `weights` and allowing `allowed` enclaves.
fn encrypted_manifest(weights: [u8; 32], allowed: &[&str]) -> Option<ModelManifest> {
    Some(ModelManifest {
        weights_hash: enclave_cloud_common::Hash32(weights),
        encrypted_weights_uri: "https://models.example/llm.enc".into(),
        allowed_enclave_measurements: allowed.iter().map(|a| (*a).to_owned()).collect(),
        ..ModelManifest::default()
    })
}

fn price(input: u128, output: u128) -> NodePrice {
    NodePrice {
        input_per_million: U128(input),
        output_per_million: U128(output),
    }
}

fn node_view(node: &FakeNode, endpoint: &str, output_price: u128) -> NodeView {
    NodeView {
        node_id: node.id,
        operator: format!("op{}.test.near", node.id).parse().unwrap(),
        status: NodeStatus::Active,
        kind: AttestationKind::Dev,
        signer_key: PublicKey::from_parts(CurveType::ED25519, node.near_key().to_vec()).unwrap(),
        encryption_key: hex::encode(node.key.config().public_key),
        tcb_status: TcbStatus::None,
        measurements: Measurements {
            mrtd: String::new(),
            rtmr0: String::new(),
            rtmr1: String::new(),
            rtmr2: String::new(),
            rtmr3: String::new(),
            compose_hash: None,
        },
        gpus: Vec::new(),
        endpoint: Some(endpoint.to_owned()),
        region: None,
        prices: vec![ModelPrice {
            model_id: model(),
            input_per_million: U128(1_000_000_000_000_000_000),
            output_per_million: U128(output_price),
        }],
        capacity: 4,
        registered_at_ns: U64(1),
        attestation_expires_at_ns: U64((now_secs() + 86_400) * 1_000_000_000),
        last_heartbeat_ns: U64(1),
    }
}

#[derive(Clone)]
struct Shared(Arc<FakeChain>);

impl Market for Shared {
    async fn candidates(
        &self,
        model: &ModelId,
        _region: Option<&str>,
    ) -> Result<Vec<NodeId>, ecloud::Error> {
        let mut nodes: Vec<NodeView> = self.0.nodes.lock().unwrap().clone();
        nodes.retain(|n| n.prices.iter().any(|p| &p.model_id == model));
        nodes.sort_by_key(|n| n.prices[0].output_per_million.0);
        Ok(nodes.into_iter().map(|n| n.node_id).collect())
    }

    async fn node(&self, id: NodeId) -> Result<Option<NodeView>, ecloud::Error> {
        Ok(self
            .0
            .nodes
            .lock()
            .unwrap()
            .iter()
            .find(|n| n.node_id == id)
            .cloned())
    }

    async fn verify_policy(&self) -> Result<VerifyPolicy, ecloud::Error> {
        Ok(VerifyPolicy {
            dev_ca_public_key: Some(dev_ca().verifying_key().to_bytes()),
            ..VerifyPolicy::default()
        })
    }

    async fn models(&self) -> Result<Vec<ModelId>, ecloud::Error> {
        Ok(vec![model()])
    }

    async fn manifest(&self, _model: &ModelId) -> Result<Option<ModelManifest>, ecloud::Error> {
        Ok(self.0.manifest.lock().unwrap().clone())
    }

    fn marketplace(&self) -> AccountId {
        market_account()
    }

    fn user(&self) -> Result<AccountId, ecloud::Error> {
        Ok(user())
    }

    async fn channel(&self, id: ChannelId) -> Result<Option<Channel>, ecloud::Error> {
        Ok(self.0.channels.lock().unwrap().get(&id).cloned())
    }

    async fn open_channel(
        &self,
        store: &ChannelStore,
        record: &mut ChannelRecord,
        spec: OpenChannelSpec,
        asset: &Asset,
        deposit: u128,
    ) -> Result<(), ecloud::Error> {
        let node = self.node(spec.node_id).await?.unwrap();
        let p = &node.prices[0];
        let id = {
            let mut channels = self.0.channels.lock().unwrap();
            let id = ChannelId(channels.len() as u64);
            channels.insert(
                id,
                Channel {
                    channel_id: id,
                    user: user(),
                    node_id: spec.node_id,
                    operator: node.operator.clone(),
                    model_id: spec.model_id,
                    channel_key: spec.channel_key,
                    asset: asset.clone(),
                    price: price(p.input_per_million.0, p.output_per_million.0),
                    token_rate: None,
                    deposit: U128(deposit),
                    settled: U128(0),
                    storage_deposit: near_sdk::NearToken::from_yoctonear(0),
                    storage_source: StorageSource::Attached,
                    challenge_period_ns: U64(1),
                    opened_ns: U64(1),
                    state: ChannelState::Open,
                },
            );
            id
        };
        store.opened(record, id).map_err(ecloud::Error::from)
    }

    async fn top_up(&self, channel: &Channel, amount: u128) -> Result<(), ecloud::Error> {
        let mut channels = self.0.channels.lock().unwrap();
        let c = channels.get_mut(&channel.channel_id).unwrap();
        c.deposit = U128(c.deposit.0 + amount);
        Ok(())
    }
}

struct Harness {
    chain: Arc<FakeChain>,
    proxy: Arc<Proxy<Shared>>,
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

const DEPOSIT: u128 = 10u128.pow(24);

/// Fake nodes (fault, output price) and a proxy in front of them.
async fn harness(nodes: &[(Fault, u128)]) -> (Harness, Vec<Arc<FakeNode>>) {
    let chain = Arc::new(FakeChain {
        nodes: Mutex::default(),
        channels: Mutex::default(),
        manifest: Mutex::default(),
    });
    let mut fakes = Vec::new();
    for (i, (fault, output_price)) in nodes.iter().enumerate() {
        let (node, url) = start_node(&chain, i as u64, *fault).await;
        chain
            .nodes
            .lock()
            .unwrap()
            .push(node_view(&node, &url, *output_price));
        fakes.push(node);
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        default_model: Some(model()),
        node: None,
        region: None,
        asset: Asset::Near,
        deposit: Some(DEPOSIT),
    };
    let proxy = Arc::new(Proxy::new(
        Shared(chain.clone()),
        ChannelStore::new(dir.path()),
        opts,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(ecloud::proxy::serve(listener, proxy.clone()));
    (
        Harness {
            chain,
            proxy,
            url,
            http: reqwest::Client::new(),
            _dir: dir,
        },
        fakes,
    )
}

impl Harness {
    async fn post(&self, path: &str, body: Value) -> (u16, String) {
        let mut response = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let mut text = Vec::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            text.extend_from_slice(&chunk);
        }
        (status, String::from_utf8(text).unwrap())
    }

    async fn chat(&self, stream: bool, include_usage: bool) -> (u16, String) {
        let mut body = json!({"model": MODEL, "max_tokens": 16, "stream": stream,
            "messages": [{"role": "user", "content": "hello"}]});
        if include_usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        self.post("/chat/completions", body).await
    }

    async fn record(&self) -> ChannelRecord {
        self.proxy
            .session(&model())
            .await
            .expect("a session")
            .record()
    }

    fn channel(&self, id: u64) -> Channel {
        self.chain.channels.lock().unwrap()[&ChannelId(id)].clone()
    }
}

/// Waits until `node` holds a voucher of `amount` (they are delivered in the background).
async fn voucher_arrives(node: &FakeNode, amount: u128) {
    for _ in 0..200 {
        if node.seen.lock().unwrap().vouchers.contains(&amount) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "voucher {amount} never arrived: {:?}",
        node.seen.lock().unwrap().vouchers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_whole_answers_are_verified_then_paid_exactly() {
    let (h, nodes) = harness(&[(Fault::None, 3_000_000_000_000_000_000)]).await;
    let node = &nodes[0];

    let (status, body) = h.chat(false, false).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["usage"]["completion_tokens"], TOKENS);

    // Streamed without include_usage: content and [DONE], never the usage chunk.
    let (status, text) = h.chat(true, false).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(text.matches("\"content\"").count() as u64, TOKENS, "{text}");
    assert!(!text.contains("usage"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    // With include_usage the caller gets it.
    let (_, text) = h.chat(true, true).await;
    assert!(text.contains("\"usage\""), "{text}");

    let (status, body) = h
        .post("/embeddings", json!({"model": MODEL, "input": "hi"}))
        .await;
    assert_eq!(status, 200, "{body}");

    // Several at once: sequence numbers stay unique, vouchers cumulative.
    let runs = (0..6).map(|i| h.chat(i % 2 == 0, false));
    for (status, text) in futures_util::future::join_all(runs).await {
        assert_eq!(status, 200, "{text}");
    }

    let channel = h.channel(0);
    let chat_cost = response_cost(&channel, PROMPT_TOKENS, TOKENS);
    let expected = 9 * chat_cost + response_cost(&channel, 4, 0);
    let record = h.record().await;
    assert_eq!(record.owed.0, expected, "owed is the sum of verified costs");
    assert_eq!(record.next_sequence.0, 10);
    voucher_arrives(node, expected).await;
    {
        let seen = node.seen.lock().unwrap();
        let unique: HashSet<_> = seen.sequences.iter().collect();
        assert_eq!(
            unique.len(),
            10,
            "every request had its own sequence number"
        );
        assert!(
            seen.vouchers.iter().all(|v| *v <= expected),
            "{:?}",
            seen.vouchers
        );
    }
    // The state file holds the same, signed for the channel key.
    let store = ChannelStore::new(h._dir.path());
    let on_disk = store.get(&market_account(), ChannelId(0)).unwrap().unwrap();
    assert_eq!(on_disk.owed.0, expected);
    let (amount, sig) = on_disk.newest_voucher().unwrap();
    let key: [u8; 32] = channel.channel_key.as_bytes()[1..].try_into().unwrap();
    let voucher = enclave_cloud_common::Voucher {
        marketplace: market_account(),
        channel_id: ChannelId(0),
        asset: Asset::Near,
        amount: U128(amount),
    };
    assert!(voucher.verify(&key, &sig));

    let (status, models) = {
        let r = h
            .http
            .get(format!("{}/models", h.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(status, 200);
    assert!(models.contains("\"id\":\"llm\""), "{models}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_over_reporting_node_is_not_paid_and_the_next_request_moves_on() {
    // Node 0 is cheaper (picked first) and bills more tokens than max_tokens allows.
    let (h, nodes) = harness(&[
        (Fault::OverReports, 1_000_000_000_000_000_000),
        (Fault::None, 3_000_000_000_000_000_000),
    ])
    .await;

    let (status, text) = h.chat(true, false).await;
    assert_eq!(status, 200, "the stream started before the bill was known");
    assert!(
        text.contains("failed verification and was not paid") && text.contains("max_tokens"),
        "{text}"
    );
    assert!(
        !text.contains("[DONE]"),
        "no clean end for a refused stream: {text}"
    );
    let store = ChannelStore::new(h._dir.path());
    let record = store.get(&market_account(), ChannelId(0)).unwrap().unwrap();
    assert_eq!(record.node_id, NodeId(0));
    assert_eq!(record.owed.0, 0, "the over-reporting node got nothing");
    assert!(h.proxy.bad_nodes().contains(&NodeId(0)));

    let (status, body) = h.chat(false, false).await;
    assert_eq!(status, 200, "{body}");
    let record = h.record().await;
    assert_eq!(record.node_id, NodeId(1), "moved to the honest node");
    let cost = response_cost(&h.channel(1), PROMPT_TOKENS, TOKENS);
    assert_eq!(record.owed.0, cost);
    voucher_arrives(&nodes[1], cost).await;
    assert!(nodes[0].seen.lock().unwrap().vouchers.is_empty());

    // A whole answer that over-reports: 502, not paid.
    let (h, _nodes) = harness(&[(Fault::OverReports, 1_000_000_000_000_000_000)]).await;
    let (status, body) = h.chat(false, false).await;
    assert_eq!(status, 502, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "node_failed_verification");
    let store = ChannelStore::new(h._dir.path());
    let record = store.get(&market_account(), ChannelId(0)).unwrap().unwrap();
    assert_eq!(record.owed.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_signature_or_a_cut_stream_is_not_paid() {
    // A cut stream shows either as a transport error (the gateway drops the connection) or
    // as a stream without its final sealed chunk, depending on when the cut lands.
    for (fault, stream, why) in [
        (Fault::ForeignSigner, false, &["is not the attested"][..]),
        (Fault::ForeignSigner, true, &["is not the attested"][..]),
        (
            Fault::Truncates,
            true,
            &["the stream broke", "the stream was cut"][..],
        ),
    ] {
        let (h, nodes) = harness(&[(fault, 1_000_000_000_000_000_000)]).await;
        let (status, text) = h.chat(stream, false).await;
        if stream {
            assert_eq!(status, 200, "{text}");
            assert!(!text.contains("[DONE]"), "{fault:?}: {text}");
        } else {
            assert_eq!(status, 502, "{text}");
        }
        assert!(
            text.contains("not paid") && why.iter().any(|w| text.contains(w)),
            "{fault:?}: {text}"
        );
        if fault == Fault::Truncates {
            assert!(text.contains("t1 "), "what arrived was passed on: {text}");
        }
        let store = ChannelStore::new(h._dir.path());
        let record = store.get(&market_account(), ChannelId(0)).unwrap().unwrap();
        assert_eq!(record.owed.0, 0, "{fault:?}: nothing owed");
        assert!(h.proxy.bad_nodes().contains(&NodeId(0)), "{fault:?}");
        assert!(nodes[0].seen.lock().unwrap().vouchers.is_empty());
        // The only node is bad: the next request finds none.
        let (status, body) = h.chat(false, false).await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("failed earlier"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_proxy_reuses_its_channel_and_never_reuses_a_sequence_number() {
    let (h, nodes) = harness(&[(Fault::None, 3_000_000_000_000_000_000)]).await;
    for _ in 0..2 {
        assert_eq!(h.chat(false, false).await.0, 200);
    }
    let before = h.record().await;
    assert_eq!(before.next_sequence.0, 2);
    // A second proxy on the same state files (the first one stopped).
    let opts = Options {
        default_model: Some(model()),
        node: None,
        region: None,
        asset: Asset::Near,
        deposit: None,
    };
    let again = Arc::new(Proxy::new(
        Shared(h.chain.clone()),
        ChannelStore::new(h._dir.path()),
        opts,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(ecloud::proxy::serve(listener, again.clone()));
    let response = h
        .http
        .post(format!("{url}/chat/completions"))
        .json(&json!({"model": MODEL, "max_tokens": 16,
            "messages": [{"role": "user", "content": "again"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        h.chain.channels.lock().unwrap().len(),
        1,
        "no second channel"
    );
    let after = again.session(&model()).await.unwrap().record();
    assert_eq!(after.channel_id, before.channel_id);
    assert_eq!(after.next_sequence.0, 3);
    let cost = response_cost(&h.channel(0), PROMPT_TOKENS, TOKENS);
    assert_eq!(after.owed.0, 3 * cost, "owed carried over and grew");
    let seen = nodes[0].seen.lock().unwrap();
    assert_eq!(seen.sequences, vec![(0, 0), (0, 1), (0, 2)]);
    // The restarted proxy's request carried the voucher the first one signed last.
    assert!(seen.vouchers.contains(&(2 * cost)), "{:?}", seen.vouchers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_does_not_bind_is_refused_before_anything_is_sent() {
    for (fault, why) in [
        (Fault::WrongNonce, "does not carry the request nonce"),
        (Fault::WrongOhttpKey, "OHTTP key"),
    ] {
        let (h, nodes) = harness(&[(fault, 1_000_000_000_000_000_000)]).await;
        let (status, body) = h.chat(false, false).await;
        assert_eq!(status, 503, "{body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(why) && message.contains("node 0"),
            "{message}"
        );
        assert_eq!(nodes[0].seen.lock().unwrap().requests, 0, "no prompt sent");
        assert!(
            h.chain.channels.lock().unwrap().is_empty(),
            "no channel opened"
        );
    }

    // A node whose registry record names other keys than its attestation: refused too.
    let (h, nodes) = harness(&[(Fault::None, 1)]).await;
    h.chain.nodes.lock().unwrap()[0].encryption_key = hex::encode([9u8; 32]);
    let (status, body) = h.chat(true, false).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not the registry's"), "{body}");
    assert_eq!(nodes[0].seen.lock().unwrap().requests, 0);
}

/// What the caller sent and got, and the node's response id header.
async fn raw_exchange(h: &Harness, path: &str, body: &'static [u8]) -> (Option<String>, Vec<u8>) {
    let response = h
        .http
        .post(format!("{}{path}", h.url))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response
        .headers()
        .get(headers::RESPONSE_ID)
        .map(|v| v.to_str().unwrap().to_owned());
    (id, response.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_gets_the_response_id_and_the_exact_bytes_the_node_signed() {
    let (h, nodes) = harness(&[(Fault::None, 3_000_000_000_000_000_000)]).await;
    let signed = |id: &str| nodes[0].seen.lock().unwrap().signed.get(id).cloned();
    // Odd spacing and key order, as an SDK may send: the node must sign these very bytes.
    let cases: [(&str, &[u8]); 3] = [
        (
            "/chat/completions",
            b"{ \"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\n  \"model\":\"llm\", \"max_tokens\":16}",
        ),
        (
            "/chat/completions",
            b"{\"stream\":true,\"stream_options\":{\"include_usage\":true},  \"model\":\"llm\",\"max_tokens\":16,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
        ),
        ("/embeddings", b"{\"input\": \"hi\",\"model\": \"llm\"}"),
    ];
    for (path, body) in cases {
        let (id, got) = raw_exchange(&h, path, body).await;
        let id = id.unwrap_or_else(|| panic!("{path}: no {} header", headers::RESPONSE_ID));
        let (request, response) = signed(&id).unwrap_or_else(|| panic!("{id} was not signed"));
        assert_eq!(request, body, "{path}: the node got the caller's bytes");
        assert_eq!(
            String::from_utf8(got).unwrap(),
            String::from_utf8(response).unwrap(),
            "{path}: the caller got the signed bytes"
        );
    }
    // Without include_usage the stream still names its id (the usage chunk is dropped, so
    // these bytes are not the signed ones).
    let (id, got) = raw_exchange(
        &h,
        "/chat/completions",
        b"{\"stream\":true,\"model\":\"llm\",\"max_tokens\":16,\"messages\":[]}",
    )
    .await;
    assert!(signed(&id.unwrap()).is_some());
    assert!(!String::from_utf8(got).unwrap().contains("usage"));
}

/// A model whose manifest names encrypted weights: a node whose attestation does not measure
/// them (measuring others, or none) is refused before anything is sent; one that measures them
/// but signs its answer as served by others is not paid; the node measuring and signing the
/// manifest's weights is paid and the caller is told which weights answered. A node the
/// manifest does not allow is refused. A plain model's client refuses a signature naming
/// weights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_must_be_measured_and_signed_with_the_manifests_encrypted_weights() {
    let (h, nodes) = harness(&[
        (Fault::OtherWeights, 1_000_000_000_000_000_000),
        (Fault::None, 2_000_000_000_000_000_000),
        (Fault::UnmeasuredWeights, 3_000_000_000_000_000_000),
        (Fault::SignsOtherWeights, 4_000_000_000_000_000_000),
        (Fault::ServesWeights, 5_000_000_000_000_000_000),
    ])
    .await;
    *h.chain.manifest.lock().unwrap() = encrypted_manifest(WEIGHTS, &["dev"]);
    let (status, text) = h.chat(false, false).await;
    assert_eq!(status, 502, "{text}");
    assert!(
        text.contains("node 3") && text.contains("weights") && text.contains("not paid"),
        "{text}"
    );
    for (refused, node) in nodes.iter().enumerate().take(3) {
        assert_eq!(
            node.seen.lock().unwrap().requests,
            0,
            "node {refused}: refused before anything was sent"
        );
    }
    assert!(h.proxy.bad_nodes().contains(&NodeId(3)));
    assert!(nodes[3].seen.lock().unwrap().vouchers.is_empty());

    let response = h
        .http
        .post(format!("{}/chat/completions", h.url))
        .json(&json!({"model": MODEL, "max_tokens": 16,
            "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[headers::WEIGHTS_HASH].to_str().unwrap(),
        hex::encode(WEIGHTS)
    );
    let record = h.record().await;
    assert_eq!(
        record.node_id,
        NodeId(4),
        "the node measuring and signing the weights"
    );
    let cost = response_cost(
        &h.channel(record.channel_id.unwrap().0),
        PROMPT_TOKENS,
        TOKENS,
    );
    voucher_arrives(&nodes[4], cost).await;
    let (status, text) = h.chat(true, true).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("[DONE]"), "{text}");

    // A manifest that does not allow the node's enclave (dev): refused, whatever it measures.
    let (h, nodes) = harness(&[(Fault::ServesWeights, 1_000_000_000_000_000_000)]).await;
    *h.chain.manifest.lock().unwrap() = encrypted_manifest(WEIGHTS, &["ab".repeat(48).as_str()]);
    let (status, text) = h.chat(false, false).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("does not allow its enclave"), "{text}");
    assert_eq!(nodes[0].seen.lock().unwrap().requests, 0);

    // Plain manifest: a node naming weights in its signatures is refused and not paid.
    let (h, nodes) = harness(&[(Fault::ServesWeights, 1_000_000_000_000_000_000)]).await;
    let (status, text) = h.chat(false, false).await;
    assert_eq!(status, 502, "{text}");
    assert!(
        text.contains("weights") && text.contains("not paid"),
        "{text}"
    );
    assert!(nodes[0].seen.lock().unwrap().vouchers.is_empty());
}
