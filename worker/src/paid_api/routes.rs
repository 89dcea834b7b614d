//! The paid inference routes (reached through the gateway only): `POST /v1/chat/completions`
//! (whole, or `stream: true` in a chunked sealed request), `POST /v1/embeddings` and
//! `POST /v1/channels/voucher`. Each request carries its payment
//! (`protocol::channel_api::ChannelPayment`); see [`crate::channels::ledger`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use protocol::channel_api::{ChannelPayment, VoucherUpdate};
use sealed_api::SealedRequest;
use serde::de::DeserializeOwned;

use super::exchange::{Signing, response_id};
use super::stream::paid_sse;
use crate::api::{ApiError, ApiState};
use crate::channels::{Payments, Reservation};
use crate::inference::{ChatCompletionRequest, EmbeddingsRequest, InferenceError, StreamOptions};
use enclave_cloud_common::{Hash32, ModelId};

use crate::served_weights::{Readiness, ServedWeights};

/// The completion bound reserved when a request sets none (the embedded Gemma's default).
pub const DEFAULT_MAX_TOKENS: u64 = 256;

/// State of the paid routes.
#[derive(Clone)]
pub struct PaidState {
    pub api: ApiState,
    pub payments: Arc<Payments>,
    pub signing: Signing,
    /// Marketplace model id → backend model (`run --model`). With it a request names the
    /// channel's model by its marketplace id; without it (`serve`) by the backend's name.
    pub models: Option<Arc<BTreeMap<ModelId, String>>>,
    /// Which weights each model is served with (`run`): a model whose encrypted weights are
    /// not ready is not served, and a response of one that is names its weights hash in its
    /// signatures.
    pub weights: Option<Arc<ServedWeights>>,
}

impl PaidState {
    /// The backend model serving `requested`, refused before any payment if this node does
    /// not serve it.
    fn backend_model(&self, requested: &str) -> Result<String, ApiError> {
        let Some(models) = &self.models else {
            return Ok(requested.to_owned());
        };
        let unknown = || ApiError::Inference(InferenceError::UnknownModel(requested.into()));
        let id = requested.parse::<ModelId>().map_err(|_| unknown())?;
        if let Some(weights) = &self.weights
            && weights.readiness(&id) != Readiness::Ready
        {
            return Err(unknown());
        }
        models.get(&id).cloned().ok_or_else(unknown)
    }

    /// The encrypted weights the channel's model is served with, if any.
    fn weights_hash(&self, reservation: &Reservation) -> Option<Hash32> {
        self.weights
            .as_ref()?
            .weights_hash(&reservation.channel().model_id)
    }

    /// A channel pays for its own model only.
    fn check_channel_model(
        &self,
        reservation: &Reservation,
        requested: &str,
    ) -> Result<(), ApiError> {
        let channel = reservation.channel();
        if self.models.is_some() && channel.model_id.as_str() != requested {
            return Err(ApiError::Invalid {
                param: "model",
                message: format!(
                    "channel {} pays for model '{}', not '{requested}'",
                    channel.channel_id, channel.model_id
                ),
            });
        }
        Ok(())
    }
}

/// The sealed request's payment and JSON body, or why not.
fn paid_request<T: DeserializeOwned>(
    sealed: Option<Extension<SealedRequest>>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(SealedRequest, ChannelPayment, T), ApiError> {
    let Some(Extension(sealed)) = sealed else {
        return Err(ApiError::SealedOnly);
    };
    let payment =
        ChannelPayment::from_headers(|name| headers.get(name).and_then(|v| v.to_str().ok()))
            .map_err(|e| ApiError::Payment(e.into()))?;
    let request = serde_json::from_slice(body).map_err(|e| ApiError::BadJson {
        status: axum::http::StatusCode::BAD_REQUEST,
        message: format!("request body: {e}"),
    })?;
    Ok((sealed, payment, request))
}

pub(crate) async fn chat(
    State(state): State<PaidState>,
    sealed: Option<Extension<SealedRequest>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (sealed, payment, mut request): (_, _, ChatCompletionRequest) =
        paid_request(sealed, &headers, &body)?;
    let stream = request.is_stream();
    if stream && !sealed.streaming {
        return Err(ApiError::StreamNeedsChunked);
    }
    let backend_model = state.backend_model(&request.model)?;
    let wanted = request
        .max_completion_tokens()
        .map_or(DEFAULT_MAX_TOKENS, u64::from);
    let reservation = state
        .payments
        .authorize(
            &payment,
            &body,
            protocol::channel_api::prompt_token_bound(&body),
            wanted,
        )
        .await?;
    state.check_channel_model(&reservation, &request.model)?;
    request.model = backend_model;
    // The backend gets the bound the reservation allows (the signature stays over the
    // client's exact body).
    request.max_completion_tokens = None;
    request.max_tokens = Some(u32::try_from(reservation.max_tokens).unwrap_or(u32::MAX));
    if stream {
        request.stream_options = Some(StreamOptions {
            include_usage: Some(true),
        });
        let weights = state.weights_hash(&reservation);
        let chunks = state.api.backend.chat_stream(request).await?;
        return Ok(paid_sse(
            chunks,
            reservation,
            state.signing.clone(),
            body,
            weights,
        ));
    }
    let weights = state.weights_hash(&reservation);
    let response = state.api.backend.chat(request).await?;
    let response_body =
        serde_json::to_vec(&response).map_err(|e| ApiError::Evidence(e.to_string()))?;
    let bill = reservation.bill(
        response.usage.prompt_tokens,
        response.usage.completion_tokens,
    )?;
    let fields = state
        .signing
        .seal_exchange(&response.id, &body, &response_body, weights, &bill);
    Ok(json_response(response_body, fields))
}

pub(crate) async fn embeddings(
    State(state): State<PaidState>,
    sealed: Option<Extension<SealedRequest>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (_, payment, mut request): (_, _, EmbeddingsRequest) =
        paid_request(sealed, &headers, &body)?;
    let backend_model = state.backend_model(&request.model)?;
    let reservation = state
        .payments
        .authorize(
            &payment,
            &body,
            protocol::channel_api::prompt_token_bound(&body),
            0,
        )
        .await?;
    state.check_channel_model(&reservation, &request.model)?;
    request.model = backend_model;
    let weights = state.weights_hash(&reservation);
    let response = state.api.backend.embed(request).await?;
    let response_body =
        serde_json::to_vec(&response).map_err(|e| ApiError::Evidence(e.to_string()))?;
    let bill = reservation.bill(response.usage.prompt_tokens, 0)?;
    let id = response_id("emb");
    let fields = state
        .signing
        .seal_exchange(&id, &body, &response_body, weights, &bill);
    Ok(json_response(response_body, fields))
}

/// `POST /v1/channels/voucher`: stores a newer voucher; answers the newest amount held.
pub(crate) async fn voucher(
    State(state): State<PaidState>,
    sealed: Option<Extension<SealedRequest>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if sealed.is_none() {
        return Err(ApiError::SealedOnly);
    }
    let update: VoucherUpdate = serde_json::from_slice(&body).map_err(|e| ApiError::BadJson {
        status: axum::http::StatusCode::BAD_REQUEST,
        message: format!("voucher update: {e}"),
    })?;
    let newest = state.payments.accept_voucher(&update).await?;
    Ok(Json(serde_json::json!({
        "channel_id": update.channel_id,
        "amount": near_sdk::json_types::U128(newest),
    }))
    .into_response())
}

/// A JSON body with the exchange's header fields.
fn json_response(body: Vec<u8>, fields: HeaderMap) -> Response {
    let mut response = (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    response.headers_mut().extend(fields);
    response
}
