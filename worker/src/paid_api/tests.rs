//! In-process tests of the paid API: an axum server on 127.0.0.1:0 with a fake backend, a
//! fake marketplace (channel views, settlements) and a real OHTTP client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enclave_cloud_common::events::marketplace::Settlement;
use enclave_cloud_common::interfaces::marketplace::{
    Channel, ChannelState, NodePrice, StorageSource,
};
use enclave_cloud_common::{Asset, ChannelId, NodeId, Voucher};
use near_sdk::json_types::{Base64VecU8, U64, U128};
use protocol::channel_api::{
    BilledUsage, ChannelPayment, VoucherUpdate, authorization, headers, response_cost,
};
use sealed_api::bhttp::{Request, Response};
use sealed_api::client::{CONTENT_TYPE_CHUNKED_REQUEST, CONTENT_TYPE_REQUEST};
use sealed_api::{
    AttestationReport, Gateway, KeyConfig, Limits, ResponseSignature, SealedClient, SigningAlgo,
    StreamEvent,
};

use super::*;
use crate::attest::AttestationProvider;
use crate::attest::dev::DevProvider;
use crate::channels::chain::ChainFuture;
use crate::channels::settle::settle_pass;
use crate::channels::{
    ChannelSource, ChannelStore, PaymentConfig, Payments, SettlePolicy, Settler,
};
use crate::inference::stream::ChunkBuilder;
use crate::inference::{
    BackendFuture, ChatChoice, ChatCompletionRequest, ChatCompletionResponse, ChatMessage,
    ChunkStream, EmbeddingData, EmbeddingsRequest, EmbeddingsResponse, InferenceBackend, Usage,
};
use crate::keys::EnclaveKeys;

const PROMPT_TOKENS: u64 = 10;
/// Tokens the fake model writes when not cut by max_tokens.
const ANSWER_TOKENS: u64 = 5;
/// yoctoNEAR per token (in and out).
const PER_TOKEN: u128 = 1_000_000_000_000_000_000;
const DEPOSIT: u128 = 1_000_000_000_000_000_000_000_000;

/// Writes `t0 t1 ...` up to max_tokens (finish "length") or ANSWER_TOKENS (finish "stop").
struct FakeModel;

fn answer_len(request: &ChatCompletionRequest) -> (u64, &'static str) {
    let max = request.max_completion_tokens().map_or(u64::MAX, u64::from);
    if max < ANSWER_TOKENS {
        (max, "length")
    } else {
        (ANSWER_TOKENS, "stop")
    }
}

impl InferenceBackend for FakeModel {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn chat(&self, request: ChatCompletionRequest) -> BackendFuture<'_, ChatCompletionResponse> {
        Box::pin(async move {
            let (n, reason) = answer_len(&request);
            let text: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
            Ok(ChatCompletionResponse {
                id: crate::inference::stream::completion_id()?,
                object: "chat.completion".into(),
                created: 1,
                model: request.model,
                choices: vec![ChatChoice {
                    index: 0,
                    message: ChatMessage {
                        role: "assistant".into(),
                        content: text.join(" "),
                    },
                    finish_reason: Some(reason.into()),
                }],
                usage: Usage::new(PROMPT_TOKENS, n),
            })
        })
    }

    fn chat_stream(&self, request: ChatCompletionRequest) -> BackendFuture<'_, ChunkStream> {
        Box::pin(async move {
            let (n, reason) = answer_len(&request);
            let b = ChunkBuilder::new(&request.model)?;
            let mut chunks = vec![Ok(b.role())];
            chunks.extend((0..n).map(|i| Ok(b.content(format!("t{i} ")))));
            chunks.push(Ok(b.finish(reason)));
            if request.stream_includes_usage() {
                chunks.push(Ok(b.usage(Usage::new(PROMPT_TOKENS, n))));
            }
            let stream: ChunkStream = Box::pin(futures_util::stream::iter(chunks));
            Ok(stream)
        })
    }

    fn embed(&self, request: EmbeddingsRequest) -> BackendFuture<'_, EmbeddingsResponse> {
        Box::pin(async move {
            Ok(EmbeddingsResponse {
                object: "list".into(),
                data: vec![EmbeddingData {
                    object: "embedding".into(),
                    index: 0,
                    embedding: vec![0.25, -0.5],
                    base64: false,
                }],
                model: request.model,
                usage: Usage::new(4, 0),
            })
        })
    }
}

/// The marketplace as the tests set it.
#[derive(Default)]
struct FakeMarket {
    channels: Mutex<HashMap<ChannelId, Channel>>,
    settled: Mutex<Vec<(Voucher, [u8; 64])>>,
}

impl ChannelSource for FakeMarket {
    fn get_channel(&self, channel_id: ChannelId) -> ChainFuture<'_, Option<Channel>> {
        let c = self.channels.lock().unwrap().get(&channel_id).cloned();
        Box::pin(async move { Ok(c) })
    }
}

impl Settler for FakeMarket {
    fn settle(&self, voucher: Voucher, signature: [u8; 64]) -> ChainFuture<'_, Settlement> {
        Box::pin(async move {
            let key = self.channels.lock().unwrap()[&voucher.channel_id]
                .channel_key
                .clone();
            let raw: [u8; 32] = key.as_bytes()[1..].try_into().unwrap();
            assert!(
                voucher.verify(&raw, &signature),
                "the marketplace checks it"
            );
            if let Some(c) = self.channels.lock().unwrap().get_mut(&voucher.channel_id) {
                c.settled = voucher.amount;
            }
            self.settled.lock().unwrap().push((voucher, signature));
            Ok(Settlement::default())
        })
    }
}

fn marketplace() -> near_sdk::AccountId {
    "market.test.near".parse().unwrap()
}

fn channel_key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn channel(id: u64, node: u64, key: &ed25519_dalek::SigningKey) -> Channel {
    Channel {
        channel_id: ChannelId(id),
        user: "user.test.near".parse().unwrap(),
        node_id: NodeId(node),
        operator: "op.test.near".parse().unwrap(),
        model_id: "gemma".parse().unwrap(),
        channel_key: attestation::format_near_ed25519_key(&key.verifying_key().to_bytes())
            .parse()
            .unwrap(),
        asset: Asset::Near,
        price: NodePrice {
            input_per_million: U128(PER_TOKEN * 1_000_000),
            output_per_million: U128(PER_TOKEN * 1_000_000),
        },
        token_rate: None,
        deposit: U128(DEPOSIT),
        settled: U128(0),
        storage_deposit: near_sdk::NearToken::from_yoctonear(0),
        storage_source: StorageSource::Attached,
        challenge_period_ns: U64(1),
        opened_ns: U64(1),
        state: ChannelState::Open,
    }
}

struct Node {
    base: String,
    http: reqwest::Client,
    client: SealedClient,
    keys: Arc<EnclaveKeys>,
    market: Arc<FakeMarket>,
    payments: Arc<Payments>,
    _dir: tempfile::TempDir,
}

async fn start(credit_limit: u128) -> Node {
    start_with(credit_limit, None).await
}

/// A node whose API maps marketplace model ids to backend models (`run --model`) if `models`.
async fn start_with(
    credit_limit: u128,
    models: Option<std::collections::BTreeMap<enclave_cloud_common::ModelId, String>>,
) -> Node {
    start_served(credit_limit, models, None).await
}

/// [`start_with`], the models' weights as `weights` says (`run` with encrypted weights).
async fn start_served(
    credit_limit: u128,
    models: Option<std::collections::BTreeMap<enclave_cloud_common::ModelId, String>>,
    weights: Option<Arc<crate::served_weights::ServedWeights>>,
) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(EnclaveKeys::generate().unwrap());
    let dev = DevProvider::new(&[9; 32], 3600);
    let bundle = dev
        .attest(&keys.public(), crate::attest::now_unix_secs())
        .unwrap();
    let api = ApiState::new(Arc::new(FakeModel), bundle);
    let market = Arc::new(FakeMarket::default());
    for (id, node) in [(1, 7), (2, 7), (3, 8)] {
        market
            .channels
            .lock()
            .unwrap()
            .insert(ChannelId(id), channel(id, node, &channel_key(id as u8)));
    }
    let payments = Payments::open(
        PaymentConfig {
            marketplace: marketplace(),
            node_id: NodeId(7),
            credit_limit_yocto: credit_limit,
            view_ttl: Duration::from_secs(60),
        },
        market.clone(),
        ChannelStore::open(dir.path()).unwrap(),
    )
    .unwrap();
    let gateway = Gateway::new(keys.gateway_key().unwrap(), Limits::default());
    let report = ReportSource::new(
        keys.clone(),
        Arc::new(dev),
        None,
        gateway.key_config().clone(),
    );
    let signatures = SignatureStore::new();
    let paid = PaidState {
        api: api.clone(),
        payments: payments.clone(),
        signing: Signing {
            keys: keys.clone(),
            signatures: signatures.clone(),
        },
        models: models.map(Arc::new),
        weights,
    };
    let app = app(api, Inference::Paid(paid), report, signatures, gateway);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let configs = http
        .get(format!("{base}/.well-known/ohttp-gateway"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let config = KeyConfig::decode_list(&configs).unwrap().remove(0);
    let client =
        SealedClient::for_attested_key(config, &keys.public().enclave_key, Limits::default())
            .unwrap();
    Node {
        base,
        http,
        client,
        keys,
        market,
        payments,
        _dir: dir,
    }
}

/// A payment for `body` on `channel` signed by `key`, with an optional voucher of `amount`.
fn pay(
    channel: u64,
    sequence: u64,
    key: &ed25519_dalek::SigningKey,
    body: &[u8],
    voucher: Option<(u64, u128, &ed25519_dalek::SigningKey)>,
) -> ChannelPayment {
    let auth = authorization(&marketplace(), ChannelId(channel), sequence, body);
    ChannelPayment {
        channel_id: ChannelId(channel),
        sequence,
        request_signature: auth.sign(key),
        voucher: voucher.map(|(for_channel, amount, signer)| {
            let v = voucher_for(for_channel, amount);
            (amount, v.sign(signer))
        }),
    }
}

fn voucher_for(channel: u64, amount: u128) -> Voucher {
    Voucher {
        marketplace: marketplace(),
        channel_id: ChannelId(channel),
        asset: Asset::Near,
        amount: U128(amount),
    }
}

fn request(path: &str, body: &[u8], payment: Option<&ChannelPayment>) -> Request {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(p) = payment {
        headers.extend(p.to_headers());
    }
    Request {
        method: "POST".into(),
        scheme: "https".into(),
        authority: "node".into(),
        path: path.into(),
        headers,
        body: body.to_vec(),
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

impl Node {
    async fn whole(&self, path: &str, body: &[u8], payment: Option<&ChannelPayment>) -> Response {
        let (wire, pending) = self.client.seal(&request(path, body, payment)).unwrap();
        let res = self
            .http
            .post(format!("{}/ohttp", self.base))
            .header("content-type", CONTENT_TYPE_REQUEST)
            .body(wire)
            .send()
            .await
            .unwrap();
        pending.open(&res.bytes().await.unwrap()).unwrap()
    }

    /// (status, SSE text, trailers)
    async fn stream(
        &self,
        body: &[u8],
        payment: &ChannelPayment,
    ) -> (u16, Vec<u8>, Vec<(String, String)>) {
        let req = request("/v1/chat/completions", body, Some(payment));
        let (wire, mut opener) = self.client.seal_streaming(&req).unwrap();
        let mut res = self
            .http
            .post(format!("{}/ohttp", self.base))
            .header("content-type", CONTENT_TYPE_CHUNKED_REQUEST)
            .body(wire)
            .send()
            .await
            .unwrap();
        let (mut status, mut text, mut trailers) = (0, Vec::new(), Vec::new());
        let mut events = Vec::new();
        while let Some(bytes) = res.chunk().await.unwrap() {
            events.extend(opener.feed(&bytes).unwrap());
        }
        events.extend(opener.finish().unwrap());
        for ev in events {
            match ev {
                StreamEvent::Head(h) => status = h.status,
                StreamEvent::Data(d) => text.extend(d),
                StreamEvent::End { trailers: t } => trailers = t,
            }
        }
        (status, text, trailers)
    }

    fn addresses(&self) -> [String; 2] {
        let s = self.keys.response_signer();
        [
            s.address(SigningAlgo::Ecdsa),
            s.address(SigningAlgo::Ed25519),
        ]
    }

    /// Checks both signatures of an exchange and that /v1/signature/{id} keeps them.
    async fn check_signed(&self, fields: &[(String, String)], request: &[u8], response: &[u8]) {
        self.check_signed_served(fields, request, response, None)
            .await;
    }

    /// [`Self::check_signed`] of a model served from the encrypted weights of `weights`.
    async fn check_signed_served(
        &self,
        fields: &[(String, String)],
        request: &[u8],
        response: &[u8],
        weights: Option<&[u8; 32]>,
    ) {
        let sigs: Vec<ResponseSignature> =
            serde_json::from_str(field(fields, headers::SIGNATURES).unwrap()).unwrap();
        assert_eq!(sigs.len(), 2);
        for (sig, address) in sigs.iter().zip(self.addresses()) {
            assert_eq!(
                sig.verify_exchange_served(request, response, &address, weights),
                Ok(())
            );
        }
        let id = field(fields, headers::RESPONSE_ID).unwrap();
        for (algo, expected) in [("ecdsa", &sigs[0]), ("ed25519", &sigs[1])] {
            let kept: ResponseSignature = self
                .http
                .get(format!(
                    "{}/v1/signature/{id}?signing_algo={algo}",
                    self.base
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(&kept, expected);
        }
    }
}

fn bill(fields: &[(String, String)]) -> BilledUsage {
    serde_json::from_str(field(fields, headers::BILL).unwrap()).unwrap()
}

fn error_code(res: &Response) -> String {
    let body: serde_json::Value = serde_json::from_slice(&res.body).unwrap();
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

const CHAT: &[u8] =
    br#"{"model":"gemma","messages":[{"role":"user","content":"hi"}],"max_tokens":16}"#;
const CHAT_STREAM: &[u8] =
    br#"{"model":"gemma","stream":true,"messages":[{"role":"user","content":"hi"}],"max_tokens":16}"#;
const EMBED: &[u8] = br#"{"model":"minilm","input":"hello world"}"#;

#[tokio::test]
async fn sealed_paid_stream_whole_chat_and_embeddings_are_signed_and_billed() {
    let node = start(DEPOSIT).await;
    let key = channel_key(1);
    let price = channel(1, 7, &key);

    // A stream: signature and bill in the final sealed chunk, usage always included.
    let (status, text, trailers) = node
        .stream(CHAT_STREAM, &pay(1, 1, &key, CHAT_STREAM, None))
        .await;
    assert_eq!(status, 200);
    let sse = String::from_utf8(text.clone()).unwrap();
    assert!(
        sse.contains("\"usage\"") && sse.ends_with("data: [DONE]\n\n"),
        "{sse}"
    );
    node.check_signed(&trailers, CHAT_STREAM, &text).await;
    let b = bill(&trailers);
    assert_eq!(
        (b.prompt_tokens, b.completion_tokens),
        (PROMPT_TOKENS, ANSWER_TOKENS)
    );
    assert_eq!(
        b.cost.0,
        response_cost(&price, PROMPT_TOKENS, ANSWER_TOKENS)
    );

    // A whole chat completion, paid by a voucher for the stream.
    let res = node
        .whole(
            "/v1/chat/completions",
            CHAT,
            Some(&pay(1, 2, &key, CHAT, Some((1, b.cost.0, &key)))),
        )
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    node.check_signed(&res.headers, CHAT, &res.body).await;
    let chat: ChatCompletionResponse = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(
        field(&res.headers, headers::RESPONSE_ID),
        Some(chat.id.as_str())
    );
    assert_eq!(bill(&res.headers).completion_tokens, ANSWER_TOKENS);

    // Embeddings.
    let res = node
        .whole("/v1/embeddings", EMBED, Some(&pay(1, 3, &key, EMBED, None)))
        .await;
    assert_eq!(res.status, 200);
    node.check_signed(&res.headers, EMBED, &res.body).await;
    assert_eq!(bill(&res.headers).cost.0, response_cost(&price, 4, 0));

    // The newest voucher was kept.
    let book = node.payments.book(ChannelId(1));
    assert_eq!(book.lock().unwrap().record.paid(), b.cost.0);

    // Plain requests are refused, OpenAI-shaped; an unknown signature id is 404.
    let plain = node
        .http
        .post(format!("{}/v1/chat/completions", node.base))
        .header("content-type", "application/json")
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 401);
    let body: serde_json::Value = plain.json().await.unwrap();
    assert_eq!(body["error"]["code"], "sealed_api_required");
    let missing = node
        .http
        .get(format!("{}/v1/signature/nope", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // Without payment headers through the gateway: 401.
    let res = node.whole("/v1/embeddings", EMBED, None).await;
    assert_eq!(res.status, 401);
}

#[tokio::test]
async fn forged_over_deposit_foreign_vouchers_replays_and_other_nodes_are_refused() {
    let node = start(DEPOSIT).await;
    let key = channel_key(1);
    let forger = channel_key(99);
    let cases: Vec<(&str, ChannelPayment, u16, &str)> = vec![
        (
            "forged voucher",
            pay(1, 1, &key, EMBED, Some((1, 5, &forger))),
            401,
            "invalid_voucher",
        ),
        (
            "voucher over the deposit",
            pay(1, 2, &key, EMBED, Some((1, DEPOSIT + 1, &key))),
            402,
            "voucher_over_deposit",
        ),
        (
            "voucher of another channel",
            pay(1, 3, &key, EMBED, Some((2, 5, &key))),
            401,
            "invalid_voucher",
        ),
        (
            "request signed by another key",
            pay(1, 4, &forger, EMBED, None),
            401,
            "invalid_request_signature",
        ),
        (
            "another node's channel",
            pay(3, 1, &channel_key(3), EMBED, None),
            401,
            "wrong_node",
        ),
        (
            "unknown channel",
            pay(42, 1, &key, EMBED, None),
            401,
            "unknown_channel",
        ),
    ];
    for (what, payment, status, code) in cases {
        let res = node.whole("/v1/embeddings", EMBED, Some(&payment)).await;
        assert_eq!(
            (res.status, error_code(&res).as_str()),
            (status, code),
            "{what}"
        );
    }
    // A signature over another body does not authorize this one.
    let res = node
        .whole("/v1/embeddings", EMBED, Some(&pay(1, 5, &key, CHAT, None)))
        .await;
    assert_eq!(res.status, 401);
    // Replay: served once.
    let p = pay(1, 6, &key, EMBED, None);
    assert_eq!(
        node.whole("/v1/embeddings", EMBED, Some(&p)).await.status,
        200
    );
    let again = node.whole("/v1/embeddings", EMBED, Some(&p)).await;
    assert_eq!(
        (again.status, error_code(&again).as_str()),
        (409, "replayed_sequence")
    );
    assert!(node.market.settled.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_client_that_stops_paying_is_cut_off_within_the_credit_limit() {
    // Each chat reserves its body length + 16 tokens; the limit covers a few answers.
    let reserve = (CHAT.len() as u128 + 16) * PER_TOKEN;
    let limit = reserve + 3 * (PROMPT_TOKENS + ANSWER_TOKENS) as u128 * PER_TOKEN;
    let node = start(limit).await;
    let key = channel_key(1);
    let mut served = 0u64;
    let mut last = None;
    for seq in 1..20 {
        let res = node
            .whole(
                "/v1/chat/completions",
                CHAT,
                Some(&pay(1, seq, &key, CHAT, None)),
            )
            .await;
        if res.status != 200 {
            last = Some(res);
            break;
        }
        served += 1;
    }
    let refused = last.expect("the node stopped serving");
    assert_eq!(
        (refused.status, error_code(&refused).as_str()),
        (402, "insufficient_credit")
    );
    let unpaid = served as u128 * (PROMPT_TOKENS + ANSWER_TOKENS) as u128 * PER_TOKEN;
    assert!(
        unpaid <= limit,
        "unpaid work {unpaid} within the limit {limit}"
    );
    assert!(served >= 1);
    // Paying (a voucher for everything served) reopens the credit.
    let paid = pay(1, 100, &key, CHAT, Some((1, unpaid, &key)));
    assert_eq!(
        node.whole("/v1/chat/completions", CHAT, Some(&paid))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn max_tokens_is_lowered_to_the_reservation_and_the_stream_ends_with_length() {
    // Room for the prompt bound and 2 completion tokens only.
    let limit = (CHAT_STREAM.len() as u128 + 2) * PER_TOKEN;
    let node = start(limit).await;
    let key = channel_key(1);
    let (status, text, trailers) = node
        .stream(CHAT_STREAM, &pay(1, 1, &key, CHAT_STREAM, None))
        .await;
    assert_eq!(status, 200);
    let sse = String::from_utf8(text).unwrap();
    assert!(sse.contains("\"finish_reason\":\"length\""), "{sse}");
    assert_eq!(bill(&trailers).completion_tokens, 2);
}

#[tokio::test]
async fn vouchers_posted_alone_are_kept_and_settled_in_batches_and_on_close() {
    let node = start(DEPOSIT).await;
    let key = channel_key(1);
    let post = |amount: u128| {
        let update = VoucherUpdate {
            channel_id: ChannelId(1),
            voucher: voucher_for(1, amount),
            signature: Base64VecU8(voucher_for(1, amount).sign(&key).to_vec()),
        };
        serde_json::to_vec(&update).unwrap()
    };
    for amount in [300, 100] {
        let res = node
            .whole("/v1/channels/voucher", &post(amount), None)
            .await;
        assert_eq!(res.status, 200);
    }
    let book = node.payments.book(ChannelId(1));
    assert_eq!(
        book.lock().unwrap().record.paid(),
        300,
        "the largest is kept"
    );

    let batch = SettlePolicy {
        min_amount_yocto: 1_000,
        interval: Duration::from_secs(3600),
        poll: Duration::from_secs(1),
    };
    assert!(
        settle_pass(&node.payments, node.market.as_ref(), &batch)
            .await
            .is_empty(),
        "below the batch"
    );
    // The user starts closing: the node settles at once and stops serving.
    node.market
        .channels
        .lock()
        .unwrap()
        .get_mut(&ChannelId(1))
        .unwrap()
        .state = ChannelState::Closing {
        started_ns: U64(1),
        ends_ns: U64(2),
    };
    let res = node
        .whole("/v1/embeddings", EMBED, Some(&pay(1, 1, &key, EMBED, None)))
        .await;
    // The cached view may still say open; a refreshed one says closing.
    if res.status == 200 {
        node.payments.channel(ChannelId(1), true).await.unwrap();
    }
    let res = node
        .whole("/v1/embeddings", EMBED, Some(&pay(1, 2, &key, EMBED, None)))
        .await;
    assert_eq!(
        (res.status, error_code(&res).as_str()),
        (409, "channel_closing")
    );
    let settled = settle_pass(&node.payments, node.market.as_ref(), &batch).await;
    assert_eq!(settled, vec![(ChannelId(1), 300)]);
}

#[tokio::test]
async fn a_node_restarted_before_settling_settles_the_stored_vouchers() {
    let dir = tempfile::tempdir().unwrap();
    let market = Arc::new(FakeMarket::default());
    let key = channel_key(1);
    market
        .channels
        .lock()
        .unwrap()
        .insert(ChannelId(1), channel(1, 7, &key));
    let config = PaymentConfig {
        marketplace: marketplace(),
        node_id: NodeId(7),
        credit_limit_yocto: DEPOSIT,
        view_ttl: Duration::from_secs(60),
    };
    let open = || {
        Payments::open(
            config.clone(),
            market.clone(),
            ChannelStore::open(dir.path()).unwrap(),
        )
        .unwrap()
    };
    let policy = SettlePolicy {
        min_amount_yocto: DEPOSIT,
        interval: Duration::from_secs(3600),
        poll: Duration::from_secs(1),
    };
    {
        let payments = open();
        let body = EMBED;
        let p = pay(1, 1, &key, body, Some((1, 777, &key)));
        let reservation = payments.authorize(&p, body, 50, 0).await.unwrap();
        reservation.bill(4, 0).unwrap();
        // Far below the batch amount: not settled before the "crash".
        assert!(
            settle_pass(&payments, market.as_ref(), &policy)
                .await
                .is_empty()
        );
    }
    let payments = open();
    let settled = settle_pass(&payments, market.as_ref(), &policy).await;
    assert_eq!(settled, vec![(ChannelId(1), 777)]);
    assert_eq!(market.settled.lock().unwrap()[0].0.amount, U128(777));
    // The served sequence survived too.
    let replay = payments
        .authorize(&pay(1, 1, &key, EMBED, None), EMBED, 50, 0)
        .await;
    assert!(matches!(
        replay,
        Err(crate::channels::PaymentError::Replayed { .. })
    ));
    // Nothing more to settle.
    assert!(
        settle_pass(&payments, market.as_ref(), &policy)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn the_attestation_report_binds_the_nonce_and_both_signers_and_is_rate_limited() {
    let node = start(DEPOSIT).await;
    let nonce = "ab".repeat(32);
    for algo in ["ecdsa", "ed25519"] {
        let report: AttestationReport = node
            .http
            .get(format!(
                "{}/v1/attestation/report?nonce={nonce}&signing_algo={algo}",
                node.base
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(report.check_binding(&nonce), Ok(()));
        assert_eq!(report.signing_algo.as_str(), algo);
        assert_eq!(
            report.attestation.enclave_key,
            node.keys.public().enclave_key.to_vec()
        );
    }
    let bad = node
        .http
        .get(format!("{}/v1/attestation/report?nonce=12", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let res = node
            .http
            .get(format!("{}/v1/attestation/report?nonce={nonce}", node.base))
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn an_abandoned_stream_is_billed_for_what_was_sent() {
    use http_body_util::BodyExt as _;
    let node = start(DEPOSIT).await;
    let key = channel_key(1);
    let price = channel(1, 7, &key);
    let p = pay(1, 1, &key, CHAT_STREAM, None);
    let reservation = node
        .payments
        .authorize(&p, CHAT_STREAM, CHAT_STREAM.len() as u64, 16)
        .await
        .unwrap();
    let request: ChatCompletionRequest = serde_json::from_slice(CHAT_STREAM).unwrap();
    let chunks = FakeModel.chat_stream(request).await.unwrap();
    let signing = Signing {
        keys: node.keys.clone(),
        signatures: SignatureStore::new(),
    };
    let response = stream::paid_sse(
        chunks,
        reservation,
        signing,
        axum::body::Bytes::from_static(CHAT_STREAM),
        None,
    );
    let mut body = response.into_body();
    // The role chunk and two content chunks reach the client, then it goes away.
    for _ in 0..3 {
        body.frame().await.unwrap().unwrap();
    }
    drop(body);
    let book = node.payments.book(ChannelId(1));
    let book = book.lock().unwrap();
    assert_eq!(book.record.billed.0, response_cost(&price, 0, 2));
    assert_eq!(book.reserved, 0, "the reservation was released");
}

#[tokio::test]
async fn requests_name_marketplace_models_and_a_channel_pays_for_its_own_model_only() {
    let models = [("gemma", "gemma-3-270m"), ("minilm", "all-minilm-l6-v2")]
        .into_iter()
        .map(|(id, backend)| (id.parse().unwrap(), backend.to_owned()))
        .collect();
    let node = start_with(DEPOSIT, Some(models)).await;
    let key = channel_key(1);
    let listed: serde_json::Value = node
        .http
        .get(format!("{}/v1/models", node.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gemma", "minilm"]);

    // The channel's model by its marketplace id, run by the backend model it maps to.
    let res = node
        .whole(
            "/v1/chat/completions",
            CHAT,
            Some(&pay(1, 1, &key, CHAT, None)),
        )
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    node.check_signed(&res.headers, CHAT, &res.body).await;
    let chat: ChatCompletionResponse = serde_json::from_slice(&res.body).unwrap();
    assert_eq!(chat.model, "gemma-3-270m");
    let (status, text, trailers) = node
        .stream(CHAT_STREAM, &pay(1, 2, &key, CHAT_STREAM, None))
        .await;
    assert_eq!(status, 200);
    node.check_signed(&trailers, CHAT_STREAM, &text).await;

    // A model this node does not serve: refused before the payment is looked at, so the
    // sequence stays unused.
    let unknown = br#"{"model":"llama","messages":[{"role":"user","content":"hi"}]}"#;
    let res = node
        .whole(
            "/v1/chat/completions",
            unknown,
            Some(&pay(1, 3, &key, unknown, None)),
        )
        .await;
    assert_eq!(res.status, 404, "{}", String::from_utf8_lossy(&res.body));
    let book = node.payments.book(ChannelId(1));
    assert!(!book.lock().unwrap().record.was_served(3));

    // Another model the node serves, on the gemma channel: refused and not billed.
    let res = node
        .whole("/v1/embeddings", EMBED, Some(&pay(1, 4, &key, EMBED, None)))
        .await;
    assert_eq!(res.status, 400, "{}", String::from_utf8_lossy(&res.body));
    let book = book.lock().unwrap();
    assert_eq!(book.reserved, 0);
    let price = channel(1, 7, &key);
    assert_eq!(
        book.record.billed.0,
        2 * response_cost(&price, PROMPT_TOKENS, ANSWER_TOKENS)
    );
}

#[tokio::test]
async fn a_model_served_from_encrypted_weights_signs_their_hash_and_is_not_served_before() {
    use crate::served_weights::{ServedWeights, WeightsState};
    let models = [("gemma", "gemma-3-270m"), ("minilm", "all-minilm-l6-v2")]
        .into_iter()
        .map(|(id, backend)| (id.parse().unwrap(), backend.to_owned()))
        .collect();
    let gemma: enclave_cloud_common::ModelId = "gemma".parse().unwrap();
    let weights = Arc::new(ServedWeights::new([
        (
            gemma.clone(),
            WeightsState::Pending("waiting for the key grant".into()),
        ),
        ("minilm".parse().unwrap(), WeightsState::Plain),
    ]));
    let node = start_served(DEPOSIT, Some(models), Some(weights.clone())).await;
    let key = channel_key(1);

    // Not ready: refused as not served, before the payment is used.
    let res = node
        .whole(
            "/v1/chat/completions",
            CHAT,
            Some(&pay(1, 1, &key, CHAT, None)),
        )
        .await;
    assert_eq!(res.status, 404, "{}", String::from_utf8_lossy(&res.body));
    assert!(
        !node
            .payments
            .book(ChannelId(1))
            .lock()
            .unwrap()
            .record
            .was_served(1)
    );

    // Ready: every response's signatures name the weights (whole and streamed).
    let hash = enclave_cloud_common::Hash32([0xab; 32]);
    weights.set(
        &gemma,
        WeightsState::Ready {
            weights_hash: hash,
            plaintext_hash: enclave_cloud_common::Hash32([1; 32]),
        },
    );
    let res = node
        .whole(
            "/v1/chat/completions",
            CHAT,
            Some(&pay(1, 2, &key, CHAT, None)),
        )
        .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    node.check_signed_served(&res.headers, CHAT, &res.body, Some(&hash.0))
        .await;
    let (status, text, trailers) = node
        .stream(CHAT_STREAM, &pay(1, 3, &key, CHAT_STREAM, None))
        .await;
    assert_eq!(status, 200);
    node.check_signed_served(&trailers, CHAT_STREAM, &text, Some(&hash.0))
        .await;
    // A client expecting plain weights (or others) refuses them.
    let sigs: Vec<ResponseSignature> =
        serde_json::from_str(field(&res.headers, headers::SIGNATURES).unwrap()).unwrap();
    let [ecdsa, _] = node.addresses();
    assert!(sigs[0].verify_exchange(CHAT, &res.body, &ecdsa).is_err());

    // Refused weights: never served again.
    weights.set(&gemma, WeightsState::Refused("tampered".into()));
    let res = node
        .whole(
            "/v1/chat/completions",
            CHAT,
            Some(&pay(1, 4, &key, CHAT, None)),
        )
        .await;
    assert_eq!(res.status, 404, "{}", String::from_utf8_lossy(&res.body));
}
