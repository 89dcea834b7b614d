//! The worker's own OpenAI-compatible endpoint, so a client can verify the enclave and talk to
//! it directly:
//!
//! * `POST /v1/chat/completions` (with `stream: true` as server-sent events, see
//!   [`crate::chat_api`]), `POST /v1/embeddings`, `GET /v1/models`: OpenAI request and response
//!   shapes, served by the configured [`InferenceBackend`];
//! * `GET /v1/attestation`: the current attestation bundle (verify it with
//!   `ecloud attestation verify`, then trust `enclave_key`); made again once the node serves
//!   encrypted weights the served bundle does not yet measure, so it always shows them.
//!
//! Errors use OpenAI's body, `{"error": {"message", "type", "param", "code"}}`, so OpenAI SDKs
//! surface them; `code` is a stable machine-readable name. Request bodies are bounded by
//! [`MAX_REQUEST_BYTES`] (413 beyond).

use std::sync::{Arc, RwLock};

use attestation::AttestationBundle;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::attest::{AttestationProvider, now_unix_secs};
use crate::inference::{
    EmbeddingsRequest, EmbeddingsResponse, InferenceBackend, InferenceError, OpenAiError,
    OpenAiErrorBody,
};
use crate::keys::EnclaveKeys;
use crate::served_weights::ServedWeights;

/// The largest request body accepted (an embeddings batch of 64 inputs fits many times over).
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Shared state of the endpoint.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) backend: Arc<dyn InferenceBackend>,
    bundle: Arc<RwLock<AttestationBundle>>,
    measured: Option<MeasuredWeights>,
}

/// What makes the served bundle again once weights are measured after it was made.
#[derive(Clone)]
struct MeasuredWeights {
    provider: Arc<dyn AttestationProvider>,
    keys: Arc<EnclaveKeys>,
    weights: Arc<ServedWeights>,
}

impl ApiState {
    pub fn new(backend: Arc<dyn InferenceBackend>, bundle: AttestationBundle) -> Self {
        Self {
            backend,
            bundle: Arc::new(RwLock::new(bundle)),
            measured: None,
        }
    }

    /// `/v1/attestation` makes its bundle again (with `provider`, for `keys`) when a model of
    /// `weights` is served from encrypted weights the bundle does not measure: the weights are
    /// measured after the API starts, and a client should see them without waiting for the
    /// next re-attestation.
    pub fn measuring(
        mut self,
        provider: Arc<dyn AttestationProvider>,
        keys: Arc<EnclaveKeys>,
        weights: Arc<ServedWeights>,
    ) -> Self {
        self.measured = Some(MeasuredWeights {
            provider,
            keys,
            weights,
        });
        self
    }

    /// The bundle to serve: the current one, or a new one if it misses served weights.
    async fn current_bundle(&self) -> AttestationBundle {
        let bundle = self.bundle();
        let Some(m) = &self.measured else {
            return bundle;
        };
        let measured = measured_weights(&bundle);
        let missing = m
            .weights
            .ready_hashes()
            .iter()
            .any(|(_, hash)| !measured.contains(&hash.0));
        if !missing {
            return bundle;
        }
        let (provider, public) = (m.provider.clone(), m.keys.public());
        let made =
            tokio::task::spawn_blocking(move || provider.attest(&public, now_unix_secs())).await;
        match made {
            Ok(Ok(fresh)) => {
                tracing::info!("/v1/attestation: a new bundle measuring the served weights");
                self.set_bundle(fresh.clone());
                fresh
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "/v1/attestation keeps its bundle: attesting failed");
                bundle
            }
            Err(e) => {
                tracing::warn!(error = %e, "/v1/attestation keeps its bundle");
                bundle
            }
        }
    }

    /// Replaces the served bundle after a re-attestation.
    pub fn set_bundle(&self, bundle: AttestationBundle) {
        match self.bundle.write() {
            Ok(mut b) => *b = bundle,
            Err(poisoned) => *poisoned.into_inner() = bundle,
        }
    }

    fn bundle(&self) -> AttestationBundle {
        match self.bundle.read() {
            Ok(b) => b.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// An error answered to the client.
#[derive(Debug)]
pub enum ApiError {
    BadJson {
        status: StatusCode,
        message: String,
    },
    Inference(InferenceError),
    /// A query or body field the route refuses.
    Invalid {
        param: &'static str,
        message: String,
    },
    NotFound(String),
    /// `/v1/attestation/report` beyond its rate.
    RateLimited,
    /// Fresh evidence could not be produced.
    Evidence(String),
    /// A paid route's payment was refused (401 / 402 / 409), or not recorded (5xx).
    Payment(crate::channels::PaymentError),
    /// An inference route of a paid node reached without the sealed API.
    SealedOnly,
    /// `stream: true` in a whole (not chunked) sealed request: a stream's signature travels
    /// in the final chunk.
    StreamNeedsChunked,
}

impl From<crate::channels::PaymentError> for ApiError {
    fn from(e: crate::channels::PaymentError) -> Self {
        Self::Payment(e)
    }
}

impl From<crate::channels::store::StoreError> for ApiError {
    fn from(e: crate::channels::store::StoreError) -> Self {
        Self::Payment(e.into())
    }
}

impl From<InferenceError> for ApiError {
    fn from(e: InferenceError) -> Self {
        Self::Inference(e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        Self::BadJson {
            status: e.status(),
            message: e.body_text(),
        }
    }
}

impl ApiError {
    /// Status, OpenAI `type`, the request field at fault, and our `code`.
    fn parts(&self) -> (StatusCode, &'static str, Option<&'static str>, &'static str) {
        use InferenceError as E;
        let invalid = "invalid_request_error";
        match self {
            Self::BadJson { status, .. } if *status == StatusCode::PAYLOAD_TOO_LARGE => {
                (*status, invalid, None, "request_too_large")
            }
            Self::BadJson { .. } => (StatusCode::BAD_REQUEST, invalid, None, "bad_json"),
            Self::Invalid { param, .. } => (
                StatusCode::BAD_REQUEST,
                invalid,
                Some(*param),
                "invalid_value",
            ),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, invalid, None, "not_found"),
            Self::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                None,
                "rate_limited",
            ),
            Self::Evidence(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                None,
                "attestation_failed",
            ),
            Self::Payment(e) => {
                let (status, code) = e.status_and_code();
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let kind = match status.as_u16() {
                    401 => "authentication_error",
                    402 => "insufficient_quota",
                    s if s >= 500 => "server_error",
                    _ => invalid,
                };
                (status, kind, None, code)
            }
            Self::SealedOnly => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                None,
                "sealed_api_required",
            ),
            Self::StreamNeedsChunked => (
                StatusCode::BAD_REQUEST,
                invalid,
                Some("stream"),
                "stream_needs_chunked_request",
            ),
            Self::Inference(e) => match e {
                E::Unsupported { .. } => (StatusCode::BAD_REQUEST, invalid, None, "unsupported"),
                E::BadRequest(_) => (StatusCode::BAD_REQUEST, invalid, None, "bad_request"),
                E::InvalidParam { param, .. } => (
                    StatusCode::BAD_REQUEST,
                    invalid,
                    Some(*param),
                    "invalid_value",
                ),
                E::ContextTooLong { .. } => (
                    StatusCode::BAD_REQUEST,
                    invalid,
                    Some("messages"),
                    "context_length_exceeded",
                ),
                E::UnknownModel(_) => (
                    StatusCode::NOT_FOUND,
                    invalid,
                    Some("model"),
                    "model_not_found",
                ),
                E::Upstream { .. } => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    None,
                    "upstream_status",
                ),
                E::Transport(_) => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    None,
                    "upstream_unreachable",
                ),
                E::Protocol(_) => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    None,
                    "upstream_protocol",
                ),
                E::Model(_) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    None,
                    "model_failure",
                ),
            },
        }
    }

    /// The status and OpenAI error body (also sent as the last event of a failed stream).
    pub(crate) fn body(&self) -> (StatusCode, OpenAiErrorBody) {
        let (status, kind, param, code) = self.parts();
        let message = match self {
            Self::BadJson { message, .. } => message.clone(),
            Self::Inference(e) => e.to_string(),
            Self::Invalid { param, message } => format!("invalid '{param}': {message}"),
            Self::NotFound(m) | Self::Evidence(m) => m.clone(),
            Self::RateLimited => "too many attestation reports: at most one per second (bursts \
                of five); retry shortly"
                .into(),
            Self::Payment(e) => e.to_string(),
            Self::SealedOnly => "this node serves inference only through its sealed, paid API: \
                POST an Oblivious HTTP request (key configuration at /.well-known/ohttp-gateway) \
                to /ohttp, paid by a payment channel (`ecloud proxy` does both)"
                .into(),
            Self::StreamNeedsChunked => "stream: true needs a chunked sealed request \
                (message/ohttp-chunked-req): the stream's signature travels in its final chunk"
                .into(),
        };
        if status.is_server_error() {
            tracing::warn!(%status, code, %message, "request failed");
        }
        let body = OpenAiErrorBody {
            error: OpenAiError {
                message,
                kind: kind.into(),
                param: param.map(str::to_owned),
                code: Some(code.into()),
            },
        };
        (status, body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.body();
        (status, Json(body)).into_response()
    }
}

async fn embeddings(
    State(state): State<ApiState>,
    body: Result<Json<EmbeddingsRequest>, JsonRejection>,
) -> Result<Json<EmbeddingsResponse>, ApiError> {
    let Json(request) = body?;
    Ok(Json(state.backend.embed(request).await?))
}

pub(crate) async fn attestation(State(state): State<ApiState>) -> Json<AttestationBundle> {
    Json(state.current_bundle().await)
}

/// The weights hashes a bundle's RTMR3 events measure (`ecloud-model-weights`).
fn measured_weights(bundle: &AttestationBundle) -> Vec<[u8; 32]> {
    let events = match (&bundle.tdx, &bundle.dev) {
        (Some(tdx), _) => &tdx.event_log,
        (None, Some(dev)) => &dev.events,
        (None, None) => return Vec::new(),
    };
    attestation::dstack::model_weights(events).unwrap_or_default()
}

/// The plain, unpaid inference routes (`--unpaid-api`, in-process tests).
pub fn inference_routes(state: ApiState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(crate::chat_api::chat))
        .route("/v1/embeddings", post(embeddings))
        .with_state(state)
}

/// The plain, unpaid endpoint's routes (no gateway, no payment): what `worker serve
/// --unpaid-api` serves besides the gateway and the report, and what in-process tests use.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/models", get(crate::chat_api::models))
        .route("/v1/attestation", get(attestation))
        .with_state(state.clone())
        .merge(inference_routes(state))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
}

#[cfg(test)]
#[cfg(feature = "embedded")]
mod tests {
    use super::*;
    use crate::attest::AttestationProvider;
    use crate::attest::dev::DevProvider;
    use crate::inference::embedded::tests::model;
    use crate::inference::{EmbeddingsResponse, Usage};
    use crate::keys::EnclaveKeys;
    use attestation::{RustCrypto, VerifyPolicy};

    async fn serve(state: ApiState) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
        format!("http://{addr}")
    }

    /// Weights measured after the API's bundle was made: `/v1/attestation` makes it again,
    /// once, and then serves a bundle whose verdict names them.
    #[tokio::test]
    async fn the_attestation_shows_weights_measured_after_it_was_made() {
        use crate::served_weights::WeightsState;
        use enclave_cloud_common::{Hash32, ModelId};
        let keys = Arc::new(EnclaveKeys::generate().unwrap());
        let dev = Arc::new(DevProvider::new(&[9; 32], 3600));
        let now = crate::attest::now_unix_secs();
        let bundle = dev.attest(&keys.public(), now).unwrap();
        let model_id: ModelId = "embed".parse().unwrap();
        let weights = Arc::new(ServedWeights::new([(
            model_id.clone(),
            WeightsState::Pending("fetching".into()),
        )]));
        let state = ApiState::new(Arc::new(model()), bundle.clone()).measuring(
            dev.clone(),
            keys.clone(),
            weights.clone(),
        );
        let base = serve(state.clone()).await;
        let fetch = || async {
            reqwest::get(format!("{base}/v1/attestation"))
                .await
                .unwrap()
                .json::<AttestationBundle>()
                .await
                .unwrap()
        };
        // Nothing served from encrypted weights yet: the startup bundle.
        assert_eq!(fetch().await, bundle);
        let hash = Hash32([4; 32]);
        dev.measure(attestation::MODEL_WEIGHTS_EVENT, &hash.0).unwrap();
        weights.set(
            &model_id,
            WeightsState::Ready {
                weights_hash: hash,
                plaintext_hash: Hash32([5; 32]),
            },
        );
        let fresh = fetch().await;
        assert_ne!(fresh, bundle);
        let policy = VerifyPolicy {
            dev_ca_public_key: Some(dev.ca_public_key()),
            ..VerifyPolicy::default()
        };
        let verdict = attestation::verify_bundle(&fresh, now, &policy, &RustCrypto).unwrap();
        assert_eq!(verdict.model_weights, vec![hash.to_string()]);
        // Made once: the next request serves the same bundle.
        assert_eq!(fetch().await, fresh);
    }

    #[tokio::test]
    async fn serves_embeddings_attestation_and_openai_errors() {
        let keys = EnclaveKeys::generate().unwrap();
        let dev = DevProvider::new(&[9; 32], 3600);
        let now = crate::attest::now_unix_secs();
        let bundle = dev.attest(&keys.public(), now).unwrap();
        let state = ApiState::new(Arc::new(model()), bundle);
        let base = serve(state.clone()).await;
        let client = reqwest::Client::new();

        // The bundle a client fetches verifies and binds the enclave's key.
        let fetched: AttestationBundle = client
            .get(format!("{base}/v1/attestation"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let policy = VerifyPolicy {
            dev_ca_public_key: Some(dev.ca_public_key()),
            ..VerifyPolicy::default()
        };
        let verdict = attestation::verify_bundle(&fetched, now, &policy, &RustCrypto).unwrap();
        assert_eq!(
            verdict.bound_keys.enclave_key,
            hex::encode(keys.public().enclave_key)
        );

        let resp = client
            .post(format!("{base}/v1/embeddings"))
            .json(&serde_json::json!({"model": "all-minilm-l6-v2", "input": "hello world"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let emb: EmbeddingsResponse = resp.json().await.unwrap();
        assert_eq!(emb.data.len(), 1);
        assert_eq!(emb.data[0].embedding.len(), 384);
        assert_eq!(emb.usage, Usage::new(4, 0)); // [CLS] hello world [SEP]

        let resp = client
            .post(format!("{base}/v1/chat/completions"))
            .json(&serde_json::json!({"model": "all-minilm-l6-v2",
                "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let err: OpenAiErrorBody = resp.json().await.unwrap();
        assert_eq!(err.error.code.as_deref(), Some("unsupported"));

        let resp = client
            .post(format!("{base}/v1/embeddings"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let err: OpenAiErrorBody = resp.json().await.unwrap();
        assert_eq!(err.error.code.as_deref(), Some("bad_json"));

        let resp = client
            .post(format!("{base}/v1/embeddings"))
            .json(&serde_json::json!({"model": "gpt-4", "input": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);

        // Re-attestation replaces what clients see.
        let later = dev.attest(&keys.public(), now + 100).unwrap();
        state.set_bundle(later.clone());
        let fetched: AttestationBundle = client
            .get(format!("{base}/v1/attestation"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(fetched, later);
    }
}
