//! The worker's OpenAI chat routes (mounted by [`crate::api::router`]):
//!
//! * `POST /v1/chat/completions`: a `chat.completion`, or with `stream: true` server-sent
//!   events, one `data: {chat.completion.chunk}` per event as the backend produces them (token by
//!   token for the embedded model, the upstream's chunks as they arrive for an HTTP backend),
//!   then `data: [DONE]`. A request the backend refuses is answered with its HTTP status before
//!   any event; a failure after the stream started ends it with one `data: {"error": …}` event
//!   and no `[DONE]`, so a client cannot take a cut stream for a complete one.
//! * `GET /v1/models`: the models the backend serves.

use std::convert::Infallible;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::api::{ApiError, ApiState};
use crate::inference::sse::data_event;
use crate::inference::stream::now_unix_secs;
use crate::inference::{ChatCompletionRequest, ChunkStream, ModelCard, ModelList};

/// The last event of a complete stream.
const DONE: &str = "[DONE]";

pub(crate) async fn chat(
    State(state): State<ApiState>,
    body: Result<Json<ChatCompletionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    if request.is_stream() {
        let chunks = state.backend.chat_stream(request).await?;
        Ok(sse_response(chunks))
    } else {
        Ok(Json(state.backend.chat(request).await?).into_response())
    }
}

/// The server-sent-event body of a chunk stream.
fn sse_response(chunks: ChunkStream) -> Response {
    let events = chunks
        .map(Some)
        .chain(futures_util::stream::iter([None]))
        .scan(false, |failed, item| {
            let event = match (*failed, item) {
                (true, _) => return futures_util::future::ready(None),
                (false, Some(Ok(chunk))) => {
                    data_event(&serde_json::to_string(&chunk).unwrap_or_default())
                }
                (false, Some(Err(e))) => {
                    *failed = true;
                    let (_, body) = ApiError::from(e).body();
                    data_event(&serde_json::to_string(&body).unwrap_or_default())
                }
                (false, None) => data_event(DONE),
            };
            futures_util::future::ready(Some(Ok::<_, Infallible>(event)))
        });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}

pub(crate) async fn models(State(state): State<ApiState>) -> Result<Json<ModelList>, ApiError> {
    Ok(Json(model_list(state.backend.models().await?)))
}

/// `GET /v1/models`'s answer listing `ids`.
pub(crate) fn model_list(ids: Vec<String>) -> ModelList {
    let created = now_unix_secs();
    let data = ids
        .into_iter()
        .map(|id| ModelCard {
            id,
            object: "model".into(),
            created,
            owned_by: "enclave-cloud".into(),
        })
        .collect();
    ModelList {
        object: "list".into(),
        data,
    }
}
