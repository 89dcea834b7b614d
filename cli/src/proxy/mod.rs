//! `ecloud proxy`: a local OpenAI-compatible endpoint (`POST /v1/chat/completions`, streamed
//! or not, `POST /v1/embeddings`, `GET /v1/models`) that pays attested nodes through payment
//! channels.
//!
//! For each model the proxy keeps a session with one node: picked from the indexer (or
//! `--node`), its attestation report fetched for a fresh nonce and checked against the
//! registry's record ([`attest`]), a channel of the user's to it (reused from the local state
//! files, topped up, or opened with `--deposit`). Each request is sealed to the attested key
//! (OHTTP; chunked for streams) with the payment headers (the newest voucher and the channel
//! key's signature over this request's sequence number and body); the response streams
//! through as it arrives ([`sse`]); then its two signatures are checked over the exact request
//! and response bodies against the attested addresses, its bill against the channel's price
//! and what was received ([`usage`]), and only then is the next voucher signed (state file
//! first) and handed to the node (`POST /v1/channels/voucher`, sealed). A node whose answer
//! fails any check is not paid for it, is marked bad for the rest of the proxy's life, and the
//! next request goes to another node.

pub mod attest;
pub mod market;
pub mod sse;
pub mod usage;

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use enclave_cloud_common::interfaces::marketplace::{Channel, ChannelState, OpenChannelSpec};
use enclave_cloud_common::interfaces::model_token::key_grants;
use enclave_cloud_common::voucher::ChannelSigningKey;
use enclave_cloud_common::{Asset, Hash32, ModelId, NodeId};
use futures_util::StreamExt as _;
use near_sdk::json_types::Base64VecU8;
use protocol::channel_api::{
    self, BilledUsage, ChannelPayment, VoucherUpdate, headers, paths, prompt_token_bound,
};
use sealed_api::bhttp::{Field, Request};
use sealed_api::client::{CONTENT_TYPE_CHUNKED_REQUEST, CONTENT_TYPE_REQUEST};
use sealed_api::gateway::GATEWAY_PATH;
use sealed_api::{AttestationReport, ResponseSignature, SigningAlgo, StreamEvent};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::channels::{ChannelRecord, ChannelStore};
use attest::AttestedNode;
use market::Market;
use usage::Observed;

/// How the proxy chooses nodes and pays them (the `ecloud proxy` flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// The model of requests that name none.
    pub default_model: Option<ModelId>,
    /// Only this node.
    pub node: Option<NodeId>,
    /// Only nodes in this region.
    pub region: Option<String>,
    /// The asset new channels are opened in.
    pub asset: Asset,
    /// Deposit of a new channel, and of each top-up; `None`: only existing channels are used.
    pub deposit: Option<u128>,
}

/// An error the caller's OpenAI SDK understands: status and `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    BadRequest(String),
    /// No node could be used (none verifies, none serves the model, no channel).
    #[error("{0}")]
    Unavailable(String),
    /// The node failed: unreachable, or its answer did not verify.
    #[error("{0}")]
    BadNode(String),
    #[error("{0}")]
    Internal(String),
}

impl ProxyError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadNode(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "invalid_request",
            Self::Unavailable(_) => "no_verified_node",
            Self::BadNode(_) => "node_failed_verification",
            Self::Internal(_) => "proxy_error",
        }
    }
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {
                "message": self.to_string(),
                "type": "ecloud_proxy_error",
                "param": null,
                "code": self.code(),
            }
        });
        (self.status(), axum::Json(body)).into_response()
    }
}

impl From<crate::Error> for ProxyError {
    fn from(e: crate::Error) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl From<crate::channels::StateError> for ProxyError {
    fn from(e: crate::channels::StateError) -> Self {
        Self::Internal(format!("channel state: {e}"))
    }
}

/// One model's node and channel.
pub struct Session {
    pub node: AttestedNode,
    pub model: ModelId,
    /// The encrypted weights the model's manifest names: every response must be signed as
    /// served by them (`None`: plain weights, and a signature naming weights is refused).
    pub weights_hash: Option<Hash32>,
    /// The chain's record of the channel (its price and rate, its deposit).
    channel: Mutex<Channel>,
    record: Mutex<ChannelRecord>,
    key: ChannelSigningKey,
    scheme: String,
    authority: String,
}

impl Session {
    pub fn channel(&self) -> Channel {
        lock(&self.channel).clone()
    }

    pub fn record(&self) -> ChannelRecord {
        lock(&self.record).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The proxy: options, the outside world, sessions per model, nodes found faulty.
pub struct Proxy<M: Market> {
    market: M,
    store: ChannelStore,
    opts: Options,
    http: reqwest::Client,
    sessions: tokio::sync::Mutex<HashMap<ModelId, Arc<Session>>>,
    bad: Mutex<HashSet<NodeId>>,
}

impl<M: Market> Proxy<M> {
    pub fn new(market: M, store: ChannelStore, opts: Options) -> Self {
        Self {
            market,
            store,
            opts,
            // A node that does not accept a connection in time is as good as down; answers
            // themselves may take as long as the model needs.
            http: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            sessions: tokio::sync::Mutex::new(HashMap::new()),
            bad: Mutex::new(HashSet::new()),
        }
    }

    pub fn market(&self) -> &M {
        &self.market
    }

    /// Nodes found faulty (never used again by this proxy).
    pub fn bad_nodes(&self) -> HashSet<NodeId> {
        lock(&self.bad).clone()
    }

    /// The current session of `model`, if any.
    pub async fn session(&self, model: &ModelId) -> Option<Arc<Session>> {
        self.sessions.lock().await.get(model).cloned()
    }

    async fn mark_bad(&self, session: &Session, why: &str) {
        let id = session.node.node.node_id;
        eprintln!("ecloud proxy: node {id} marked bad: {why}");
        lock(&self.bad).insert(id);
        let mut sessions = self.sessions.lock().await;
        if sessions
            .get(&session.model)
            .is_some_and(|s| s.node.node.node_id == id)
        {
            sessions.remove(&session.model);
        }
    }

    /// The session for `model`: the current one, or a new one with the first candidate that
    /// verifies and has (or gets) a channel.
    async fn session_for(&self, model: &ModelId) -> Result<Arc<Session>, ProxyError> {
        let mut sessions = self.sessions.lock().await;
        if let Some(s) = sessions.get(model) {
            let s = s.clone();
            self.top_up_if_low(&s).await?;
            return Ok(s);
        }
        let candidates = match self.opts.node {
            Some(id) => vec![id],
            None => {
                self.market
                    .candidates(model, self.opts.region.as_deref())
                    .await?
            }
        };
        let bad = lock(&self.bad).clone();
        let mut reasons = Vec::new();
        for id in candidates {
            if bad.contains(&id) {
                reasons.push(format!("node {id}: failed earlier"));
                continue;
            }
            match self.start_session(id, model).await {
                Ok(s) => {
                    let s = Arc::new(s);
                    sessions.insert(model.clone(), s.clone());
                    return Ok(s);
                }
                Err(why) => {
                    eprintln!("ecloud proxy: node {id} refused: {why}");
                    reasons.push(format!("node {id}: {why}"));
                }
            }
        }
        Err(ProxyError::Unavailable(if reasons.is_empty() {
            format!("no active node serves model '{model}'")
        } else {
            format!(
                "no verifiable node for model '{model}': {}",
                reasons.join("; ")
            )
        }))
    }

    async fn start_session(&self, id: NodeId, model: &ModelId) -> Result<Session, String> {
        let manifest = self
            .market
            .manifest(model)
            .await
            .map_err(|e| format!("model {model}'s manifest: {e}"))?;
        let weights_hash = manifest.as_ref().and_then(|m| m.encrypted_weights_hash());
        let node = self.attest(id, model).await?;
        if let (Some(h), Some(m)) = (&weights_hash, &manifest) {
            // The rule the model token and the keeper apply before granting the key: a node
            // the manifest does not allow (any more) has no business holding the weights.
            key_grants::manifest_allows(&node.node, m)
                .map_err(|e| format!("the manifest does not allow its enclave: {e}"))?;
            node.check_measures(h)?;
            eprintln!(
                "ecloud proxy: model {model} is served from encrypted weights {h} (its manifest's \
                 weights_hash); node {id}'s answers must be signed as served by them"
            );
        }
        let (channel, record) = self
            .channel_for(&node, model)
            .await
            .map_err(|e| e.to_string())?;
        let key = record.signing_key().map_err(|e| e.to_string())?;
        let url = reqwest::Url::parse(&node.endpoint).map_err(|e| e.to_string())?;
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        Ok(Session {
            scheme: url.scheme().to_owned(),
            authority,
            node,
            model: model.clone(),
            weights_hash,
            channel: Mutex::new(channel),
            record: Mutex::new(record),
            key,
        })
    }

    /// Fetches node `id`'s attestation report for a fresh nonce and checks it.
    async fn attest(&self, id: NodeId, model: &ModelId) -> Result<AttestedNode, String> {
        let now = self.market.now_secs();
        let node = self
            .market
            .node(id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("is not in the registry")?;
        let endpoint = attest::check_record(&node, model, now)?;
        let policy = self
            .market
            .verify_policy()
            .await
            .map_err(|e| e.to_string())?;
        let nonce = attest::fresh_nonce().map_err(|e| format!("no randomness: {e}"))?;
        let url = format!("{endpoint}{}", paths::ATTESTATION_REPORT);
        let response = self
            .http
            .get(&url)
            .query(&[("nonce", nonce.as_str()), ("signing_algo", "ecdsa")])
            .send()
            .await
            .map_err(|e| format!("attestation report unreachable: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("attestation report: HTTP {}", response.status()));
        }
        let report: AttestationReport = response
            .json()
            .await
            .map_err(|e| format!("attestation report is not a report: {e}"))?;
        attest::check_report(&report, &nonce, &node, endpoint, &policy, now)
    }

    /// An open channel of the user's to `node` for `model` with room left, from the local
    /// state files; else a new one (with `--deposit`).
    async fn channel_for(
        &self,
        node: &AttestedNode,
        model: &ModelId,
    ) -> Result<(Channel, ChannelRecord), ProxyError> {
        let user = self.market.user()?;
        let marketplace = self.market.marketplace();
        let node_id = node.node.node_id;
        for record in self.store.all(&marketplace)? {
            let Some(id) = record.channel_id else {
                continue;
            };
            if record.node_id != node_id || &record.model_id != model {
                continue;
            }
            let Some(channel) = self.market.channel(id).await? else {
                continue;
            };
            let usable = channel.user == user
                && channel.state == ChannelState::Open
                && channel.channel_key == record.public_key()?
                && channel.deposit.0 > record.owed.0;
            if usable {
                let channel = self.top_up_channel_if_low(channel, &record).await?;
                return Ok((channel, record));
            }
        }
        let deposit = self.opts.deposit.ok_or_else(|| {
            ProxyError::Unavailable(format!(
                "no open channel to node {node_id} for model '{model}': start the proxy with --deposit to open one"
            ))
        })?;
        let mut record =
            ChannelRecord::generate(marketplace, node_id, model.clone(), self.opts.asset.clone())?;
        self.store.save(&record)?;
        let spec = OpenChannelSpec {
            node_id,
            model_id: model.clone(),
            channel_key: record.public_key()?,
        };
        self.market
            .open_channel(&self.store, &mut record, spec, &self.opts.asset, deposit)
            .await?;
        let id = record
            .channel_id
            .ok_or_else(|| ProxyError::Internal("the channel opened without an id".into()))?;
        let channel = self
            .market
            .channel(id)
            .await?
            .ok_or_else(|| ProxyError::Internal(format!("channel {id} is not on chain")))?;
        Ok((channel, record))
    }

    /// Tops up by `--deposit` when less than a tenth of it is left.
    async fn top_up_channel_if_low(
        &self,
        channel: Channel,
        record: &ChannelRecord,
    ) -> Result<Channel, ProxyError> {
        let Some(deposit) = self.opts.deposit else {
            return Ok(channel);
        };
        let left = channel.deposit.0.saturating_sub(record.owed.0);
        if left >= deposit / 10 {
            return Ok(channel);
        }
        self.market.top_up(&channel, deposit).await?;
        Ok(self
            .market
            .channel(channel.channel_id)
            .await?
            .unwrap_or(channel))
    }

    async fn top_up_if_low(&self, s: &Session) -> Result<(), ProxyError> {
        let (channel, record) = (s.channel(), s.record());
        let fresh = self.top_up_channel_if_low(channel.clone(), &record).await?;
        if fresh.deposit != channel.deposit {
            *lock(&s.channel) = fresh;
        }
        Ok(())
    }

    /// Takes a sequence number (saved before use) and builds the sealed inner request.
    fn inner_request(&self, s: &Session, path: &str, body: &[u8]) -> Result<Request, ProxyError> {
        let (sequence, voucher, channel_id) = {
            let mut record = lock(&s.record);
            let sequence = record.reserve_sequence();
            self.store.save(&record)?;
            let channel_id = record
                .channel_id
                .ok_or_else(|| ProxyError::Internal("channel without an id".into()))?;
            (sequence, record.newest_voucher(), channel_id)
        };
        let auth =
            channel_api::authorization(&self.market.marketplace(), channel_id, sequence, body);
        let payment = ChannelPayment {
            channel_id,
            sequence,
            request_signature: auth.sign(&s.key),
            voucher,
        };
        let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        headers.extend(payment.to_headers());
        Ok(Request {
            method: "POST".into(),
            scheme: s.scheme.clone(),
            authority: s.authority.clone(),
            path: path.into(),
            headers,
            body: body.to_vec(),
        })
    }

    /// Both signatures over the exact bodies by the attested addresses, then the bill: the
    /// amount to pay for this response.
    fn verify(
        &self,
        s: &Session,
        fields: &[Field],
        request: &[u8],
        response: &[u8],
        seen: &Observed,
    ) -> Result<u128, String> {
        let sigs: Vec<ResponseSignature> = field(fields, headers::SIGNATURES)
            .ok_or("no response signatures")
            .and_then(|v| serde_json::from_str(v).map_err(|_| "malformed response signatures"))?;
        for (algo, address) in [
            (SigningAlgo::Ecdsa, &s.node.ecdsa_address),
            (SigningAlgo::Ed25519, &s.node.ed25519_address),
        ] {
            let sig = sigs
                .iter()
                .find(|sig| sig.signing_algo == algo)
                .ok_or_else(|| format!("no {algo} signature"))?;
            sig.verify_exchange_served(
                request,
                response,
                address,
                s.weights_hash.as_ref().map(|h| &h.0),
            )
            .map_err(|e| format!("{algo} signature: {e}"))?;
        }
        let bill: BilledUsage = field(fields, headers::BILL)
            .ok_or("no bill")
            .and_then(|v| serde_json::from_str(v).map_err(|_| "malformed bill"))?;
        usage::check_bill(&s.channel(), &bill, seen).map_err(|e| e.to_string())
    }

    /// Adds a verified response's cost to the channel: signs the cumulative voucher, saves it,
    /// and hands it to the node.
    fn pay(self: &Arc<Self>, s: &Arc<Session>, cost: u128) -> Result<(), ProxyError> {
        if cost == 0 {
            return Ok(());
        }
        let deposit = s.channel().deposit.0;
        let (voucher, signature) = {
            let mut record = lock(&s.record);
            let mut next = record.clone();
            let paid = next.pay(cost, deposit)?;
            self.store.save(&next)?;
            *record = next;
            paid
        };
        let update = VoucherUpdate {
            channel_id: voucher.channel_id,
            voucher,
            signature: Base64VecU8(signature.to_vec()),
        };
        let (proxy, session) = (self.clone(), s.clone());
        tokio::spawn(async move {
            if let Err(why) = proxy.deliver(&session, &update).await {
                eprintln!(
                    "ecloud proxy: voucher for {} not delivered to node {} (the next request carries it): {why}",
                    update.voucher.amount.0, session.node.node.node_id
                );
            }
        });
        Ok(())
    }

    async fn deliver(&self, s: &Session, update: &VoucherUpdate) -> Result<(), String> {
        let body = serde_json::to_vec(update).map_err(|e| e.to_string())?;
        let request = Request {
            method: "POST".into(),
            scheme: s.scheme.clone(),
            authority: s.authority.clone(),
            path: paths::CHANNEL_VOUCHER.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        };
        let (wire, pending) = s.node.sealed.seal(&request).map_err(|e| e.to_string())?;
        let bytes = self
            .post_sealed(s, wire, CONTENT_TYPE_REQUEST)
            .await?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        let response = pending.open(&bytes).map_err(|e| e.to_string())?;
        if (200..300).contains(&response.status) {
            Ok(())
        } else {
            Err(format!(
                "HTTP {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ))
        }
    }

    async fn post_sealed(
        &self,
        s: &Session,
        wire: Vec<u8>,
        content_type: &str,
    ) -> Result<reqwest::Response, String> {
        let response = self
            .http
            .post(format!("{}{GATEWAY_PATH}", s.node.endpoint))
            .header(header::CONTENT_TYPE, content_type)
            .body(wire)
            .send()
            .await
            .map_err(|e| format!("unreachable: {e}"))?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            return Err(format!("gateway HTTP {status}: {text}"));
        }
        Ok(response)
    }

    /// A whole (non-streamed) exchange: chat without `stream`, embeddings.
    async fn whole(
        self: &Arc<Self>,
        s: Arc<Session>,
        path: &str,
        body: Bytes,
        request: &Value,
    ) -> Result<Response, ProxyError> {
        let inner = self.inner_request(&s, path, &body)?;
        let (wire, pending) = s
            .node
            .sealed
            .seal(&inner)
            .map_err(|e| ProxyError::Internal(e.to_string()))?;
        let node_id = s.node.node.node_id;
        let outcome = async {
            let bytes = self
                .post_sealed(&s, wire, CONTENT_TYPE_REQUEST)
                .await?
                .bytes()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?;
            pending
                .open(&bytes)
                .map_err(|e| format!("the answer does not open: {e}"))
        }
        .await;
        let response = match outcome {
            Ok(r) => r,
            Err(why) => {
                self.mark_bad(&s, &why).await;
                return Err(ProxyError::BadNode(format!("node {node_id}: {why}")));
            }
        };
        if response.status != 200 {
            // The node's own refusal (OpenAI-shaped 401/402/409...): passed through, unpaid.
            return Ok(passthrough(response.status, response.body));
        }
        let seen = Observed {
            max_tokens: usage::max_tokens_of(request),
            prompt_bound: prompt_token_bound(&body),
            content_chunks: 0,
            body_usage: serde_json::from_slice(&response.body)
                .ok()
                .as_ref()
                .and_then(usage::usage_of),
        };
        match self.verify(&s, &response.headers, &body, &response.body, &seen) {
            Ok(cost) => {
                self.pay(&s, cost)?;
                let mut ok = passthrough(200, response.body);
                if let Some(id) = field(&response.headers, headers::RESPONSE_ID) {
                    set_response_id(&mut ok, id);
                }
                set_weights_hash(&mut ok, &s);
                Ok(ok)
            }
            Err(why) => {
                self.mark_bad(&s, &why).await;
                Err(ProxyError::BadNode(format!(
                    "node {node_id}'s answer failed verification and was not paid: {why}"
                )))
            }
        }
    }

    /// A streamed chat completion: the events go to the caller as they are opened.
    async fn stream(
        self: &Arc<Self>,
        s: Arc<Session>,
        body: Bytes,
        request: &Value,
    ) -> Result<Response, ProxyError> {
        let inner = self.inner_request(&s, paths::CHAT_COMPLETIONS, &body)?;
        let (wire, opener) = s
            .node
            .sealed
            .seal_streaming(&inner)
            .map_err(|e| ProxyError::Internal(e.to_string()))?;
        let node_id = s.node.node.node_id;
        let response = match self
            .post_sealed(&s, wire, CONTENT_TYPE_CHUNKED_REQUEST)
            .await
        {
            Ok(r) => r,
            Err(why) => {
                self.mark_bad(&s, &why).await;
                return Err(ProxyError::BadNode(format!("node {node_id}: {why}")));
            }
        };
        let include_usage = request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let job = StreamJob {
            proxy: self.clone(),
            session: s.clone(),
            request: body,
            max_tokens: usage::max_tokens_of(request),
            include_usage,
        };
        let (tx, mut rx) = mpsc::channel::<Out>(64);
        tokio::spawn(job.run(response, opener, tx));
        match rx.recv().await {
            Some(Out::Head(200)) => {
                // The response id (what the node keeps the signatures under) is the
                // completion's `id`, which every chunk carries: the head waits for the first
                // event to name it.
                let first = next_data(&mut rx).await;
                let id = first.as_deref().and_then(sse::chunk_id);
                let events = futures_util::stream::unfold(rx, |mut rx| async move {
                    next_data(&mut rx).await.map(|b| (b, rx))
                });
                let events = futures_util::stream::iter(first)
                    .chain(events)
                    .map(Ok::<_, Infallible>);
                let mut ok = Response::builder()
                    .status(StatusCode::OK)
                    .header(header::CONTENT_TYPE, "text/event-stream")
                    .header(header::CACHE_CONTROL, "no-cache")
                    .body(Body::from_stream(events))
                    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
                if let Some(id) = id {
                    set_response_id(&mut ok, &id);
                }
                // The stream's signatures (its trailers) must name them, or it ends unpaid.
                set_weights_hash(&mut ok, &s);
                Ok(ok)
            }
            Some(Out::Head(status)) => {
                let mut body = Vec::new();
                while let Some(Out::Data(b)) = rx.recv().await {
                    body.extend_from_slice(&b);
                }
                Ok(passthrough(status, body))
            }
            Some(Out::Fail(why)) => Err(ProxyError::BadNode(format!("node {node_id}: {why}"))),
            Some(Out::Data(_)) | None => Err(ProxyError::BadNode(format!(
                "node {node_id}: the stream ended before its head"
            ))),
        }
    }
}

/// The next bytes for the caller of a stream that began.
async fn next_data(rx: &mut mpsc::Receiver<Out>) -> Option<Bytes> {
    loop {
        match rx.recv().await? {
            Out::Data(b) => return Some(b),
            Out::Head(_) | Out::Fail(_) => continue,
        }
    }
}

/// Names the node's response id to the caller (`x-ecloud-response-id`), so it can fetch the
/// signatures (`GET /v1/signature/{id}`) and check them over the bytes it sent and received.
fn set_response_id(response: &mut Response, id: &str) {
    if let Ok(value) = header::HeaderValue::from_str(id) {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static(headers::RESPONSE_ID), value);
    }
}

/// Names the encrypted weights the answer is checked against (`x-ecloud-weights-hash`).
fn set_weights_hash(response: &mut Response, s: &Session) {
    if let Some(h) = &s.weights_hash
        && let Ok(value) = header::HeaderValue::from_str(&h.to_string())
    {
        response.headers_mut().insert(
            header::HeaderName::from_static(headers::WEIGHTS_HASH),
            value,
        );
    }
}

/// What the stream task hands the handler.
enum Out {
    Head(u16),
    Data(Bytes),
    /// Failed before the head arrived.
    Fail(String),
}

/// One streamed exchange being read, forwarded and checked.
struct StreamJob<M: Market> {
    proxy: Arc<Proxy<M>>,
    session: Arc<Session>,
    request: Bytes,
    max_tokens: Option<u64>,
    include_usage: bool,
}

impl<M: Market> StreamJob<M> {
    async fn run(
        self,
        mut response: reqwest::Response,
        mut opener: sealed_api::StreamOpener,
        tx: mpsc::Sender<Out>,
    ) {
        let mut head: Option<u16> = None;
        let mut full = Vec::new();
        let mut splitter = sse::Splitter::default();
        let mut filter = sse::StreamFilter::new(self.include_usage);
        let mut trailers: Option<Vec<Field>> = None;
        let mut fail: Option<String> = None;
        let mut handle = |event: StreamEvent, head: &mut Option<u16>| -> Vec<Out> {
            match event {
                StreamEvent::Head(h) => {
                    *head = Some(h.status);
                    vec![Out::Head(h.status)]
                }
                StreamEvent::Data(d) => {
                    full.extend_from_slice(&d);
                    if *head != Some(200) {
                        return vec![Out::Data(Bytes::from(d))];
                    }
                    splitter
                        .push(&d)
                        .into_iter()
                        .filter_map(|e| filter.event(e))
                        .map(|b| Out::Data(Bytes::from(b)))
                        .collect()
                }
                StreamEvent::End { trailers: t } => {
                    trailers = Some(t);
                    Vec::new()
                }
            }
        };
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    fail = Some(format!("the stream broke: {e}"));
                    break;
                }
            };
            match opener.feed(&chunk) {
                Ok(events) => {
                    for e in events {
                        for out in handle(e, &mut head) {
                            let _ = tx.send(out).await;
                        }
                    }
                }
                Err(e) => {
                    fail = Some(format!("the stream does not open: {e}"));
                    break;
                }
            }
        }
        if fail.is_none() {
            match opener.finish() {
                Ok(events) => {
                    for e in events {
                        for out in handle(e, &mut head) {
                            let _ = tx.send(out).await;
                        }
                    }
                }
                Err(e) => fail = Some(format!("the stream was cut ({e})")),
            }
        }
        // Bytes after the last complete event (a stream that ends without its blank line)
        // still reach the caller: it gets every byte the signatures cover.
        if head == Some(200) && !splitter.rest().is_empty() {
            let rest = Bytes::copy_from_slice(splitter.rest());
            let _ = tx.send(Out::Data(rest)).await;
        }
        let s = &self.session;
        let Some(status) = head else {
            let why = fail.unwrap_or_else(|| "no response head".into());
            self.proxy.mark_bad(s, &why).await;
            let _ = tx.send(Out::Fail(why)).await;
            return;
        };
        if status != 200 {
            return; // a refusal, passed through whole and unpaid
        }
        let verdict = match (fail, trailers) {
            (Some(why), _) => Err(why),
            (None, None) => Err("the stream ended without its signatures".into()),
            (None, Some(fields)) => {
                let seen = Observed {
                    max_tokens: self.max_tokens,
                    prompt_bound: prompt_token_bound(&self.request),
                    content_chunks: filter.content_chunks,
                    body_usage: filter.usage,
                };
                self.proxy.verify(s, &fields, &self.request, &full, &seen)
            }
        };
        let node_id = s.node.node.node_id;
        let closing = match verdict.map(|cost| self.proxy.pay(s, cost)) {
            Ok(Ok(())) => filter.done.then(|| sse::DONE.to_vec()),
            Ok(Err(e)) => Some(sse::error_event(&e.to_string(), "proxy_error")),
            Err(why) => {
                self.proxy.mark_bad(s, &why).await;
                Some(sse::error_event(
                    &format!("node {node_id}'s stream failed verification and was not paid: {why}"),
                    "node_failed_verification",
                ))
            }
        };
        if let Some(bytes) = closing {
            let _ = tx.send(Out::Data(Bytes::from(bytes))).await;
        }
    }
}

fn field<'a>(fields: &'a [Field], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn passthrough(status: u16, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response()
}

/// The model a request names (`model`), else the proxy's `--model`.
fn model_of<M: Market>(proxy: &Proxy<M>, request: &Value) -> Result<ModelId, ProxyError> {
    match request.get("model").and_then(Value::as_str) {
        Some(name) => name
            .parse()
            .map_err(|e| ProxyError::BadRequest(format!("model '{name}': {e}"))),
        None => proxy.opts.default_model.clone().ok_or_else(|| {
            ProxyError::BadRequest("the request names no model and the proxy has no --model".into())
        }),
    }
}

async fn forward<M: Market>(
    proxy: Arc<Proxy<M>>,
    path: &'static str,
    body: Bytes,
) -> Result<Response, ProxyError> {
    let request: Value = serde_json::from_slice(&body)
        .map_err(|e| ProxyError::BadRequest(format!("the body is not JSON: {e}")))?;
    let model = model_of(&proxy, &request)?;
    let session = proxy.session_for(&model).await?;
    let streaming = path == paths::CHAT_COMPLETIONS
        && request.get("stream").and_then(Value::as_bool) == Some(true);
    if streaming {
        proxy.stream(session, body, &request).await
    } else {
        proxy.whole(session, path, body, &request).await
    }
}

async fn chat<M: Market>(State(proxy): State<Arc<Proxy<M>>>, body: Bytes) -> Response {
    forward(proxy, paths::CHAT_COMPLETIONS, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn embeddings<M: Market>(State(proxy): State<Arc<Proxy<M>>>, body: Bytes) -> Response {
    forward(proxy, paths::EMBEDDINGS, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn models<M: Market>(State(proxy): State<Arc<Proxy<M>>>) -> Response {
    let mut ids = match proxy.market.models().await {
        Ok(ids) => ids,
        Err(e) => return ProxyError::from(e).into_response(),
    };
    if let Some(m) = &proxy.opts.default_model
        && !ids.contains(m)
    {
        ids.insert(0, m.clone());
    }
    let data: Vec<Value> = ids
        .iter()
        .map(|id| {
            serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "enclave-cloud"})
        })
        .collect();
    axum::Json(serde_json::json!({"object": "list", "data": data})).into_response()
}

/// The proxy's routes.
pub fn router<M: Market>(proxy: Arc<Proxy<M>>) -> Router {
    Router::new()
        .route(paths::CHAT_COMPLETIONS, post(chat::<M>))
        .route(paths::EMBEDDINGS, post(embeddings::<M>))
        .route(paths::MODELS, get(models::<M>))
        .with_state(proxy)
}

/// Serves the proxy on `listener` until the process ends.
pub async fn serve<M: Market>(
    listener: tokio::net::TcpListener,
    proxy: Arc<Proxy<M>>,
) -> std::io::Result<()> {
    axum::serve(listener, router(proxy)).await
}
