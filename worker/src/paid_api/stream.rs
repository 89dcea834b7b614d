//! A paid streamed chat completion: the backend's chunks as server-sent events, each its own
//! body frame (the gateway seals one frame per event), `data: [DONE]`, then one trailer frame
//! with the response id, the bill and the signatures over the exact request body and the
//! full SSE text (the gateway puts trailers in the final sealed chunk).
//!
//! Billing: the usage chunk's counts (the node always asks the backend for it), the
//! completion capped at the reservation's `max_tokens`. A stream the client abandons (the
//! body is dropped before its end) is billed for what was sent: the content chunks (one token
//! each from a token-by-token backend) and the prompt tokens if the backend reported them.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use http_body::Frame;
use http_body_util::StreamBody;

use enclave_cloud_common::Hash32;

use super::exchange::Signing;
use crate::api::ApiError;
use crate::channels::Reservation;
use crate::inference::sse::data_event;
use crate::inference::{ChatCompletionChunk, ChunkStream, Usage};

/// The state of one paid stream.
struct PaidStream {
    chunks: ChunkStream,
    reservation: Option<Reservation>,
    signing: Signing,
    request_body: Bytes,
    /// The encrypted weights answering, named in the signature.
    weights_hash: Option<Hash32>,
    /// The SSE text sent so far (what the signature covers).
    sent: Vec<u8>,
    response_id: Option<String>,
    content_chunks: u64,
    usage: Option<Usage>,
    /// The backend's stream ended (normally or with an error event).
    ended: bool,
    /// The trailers were produced: nothing more to send.
    finished: bool,
}

impl PaidStream {
    fn note(&mut self, chunk: &ChatCompletionChunk) {
        if self.response_id.is_none() {
            self.response_id = Some(chunk.id.clone());
        }
        let content = chunk
            .choices
            .iter()
            .filter(|c| c.delta.content.as_deref().is_some_and(|t| !t.is_empty()))
            .count() as u64;
        self.content_chunks += content;
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
    }

    fn send(&mut self, event: String) -> Frame<Bytes> {
        self.sent.extend_from_slice(event.as_bytes());
        Frame::data(Bytes::from(event))
    }

    /// What to bill: the reported usage (completion capped at the reservation), else what was
    /// sent.
    fn usage_to_bill(&self, max_tokens: u64) -> (u64, u64) {
        match self.usage {
            Some(u) => (u.prompt_tokens, u.completion_tokens.min(max_tokens)),
            None => (0, self.content_chunks.min(max_tokens)),
        }
    }

    /// Bills the stream; the trailer frame when the bill was recorded.
    fn bill_and_sign(&mut self) -> Option<Frame<Bytes>> {
        let reservation = self.reservation.take()?;
        let (prompt, completion) = self.usage_to_bill(reservation.max_tokens);
        let bill = match reservation.bill(prompt, completion) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "a paid stream's bill was not recorded");
                return None;
            }
        };
        let id = self
            .response_id
            .clone()
            .unwrap_or_else(|| super::exchange::response_id("chatcmpl"));
        Some(Frame::trailers(self.signing.seal_exchange(
            &id,
            &self.request_body,
            &self.sent,
            self.weights_hash,
            &bill,
        )))
    }

    async fn next_frame(&mut self) -> Option<Frame<Bytes>> {
        if self.finished {
            return None;
        }
        if !self.ended {
            match self.chunks.next().await {
                Some(Ok(chunk)) => {
                    self.note(&chunk);
                    let json = serde_json::to_string(&chunk).unwrap_or_default();
                    return Some(self.send(data_event(&json)));
                }
                Some(Err(e)) => {
                    // The failure is the stream's last event (no [DONE]); the bill and
                    // signature still cover what was sent.
                    self.ended = true;
                    let (_, body) = ApiError::from(e).body();
                    let json = serde_json::to_string(&body).unwrap_or_default();
                    return Some(self.send(data_event(&json)));
                }
                None => {
                    self.ended = true;
                    return Some(self.send(data_event("[DONE]")));
                }
            }
        }
        self.finished = true;
        self.bill_and_sign()
    }
}

impl Drop for PaidStream {
    fn drop(&mut self) {
        if let Some(reservation) = self.reservation.take() {
            // The client went away mid-stream: bill what was sent.
            let (prompt, completion) = self.usage_to_bill(reservation.max_tokens);
            match reservation.bill(prompt, completion) {
                Ok(bill) => tracing::info!(
                    completion_tokens = bill.completion_tokens,
                    cost = bill.cost.0,
                    "paid stream abandoned by the client; billed what was sent"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "an abandoned stream's bill was not recorded")
                }
            }
        }
    }
}

/// The response of a paid stream.
pub fn paid_sse(
    chunks: ChunkStream,
    reservation: Reservation,
    signing: Signing,
    request_body: Bytes,
    weights_hash: Option<Hash32>,
) -> Response {
    let state = PaidStream {
        chunks,
        reservation: Some(reservation),
        signing,
        request_body,
        weights_hash,
        sent: Vec::new(),
        response_id: None,
        content_chunks: 0,
        usage: None,
        ended: false,
        finished: false,
    };
    let frames = futures_util::stream::unfold(state, |mut s| async move {
        let frame = s.next_frame().await?;
        Some((Ok::<_, Infallible>(frame), s))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::new(StreamBody::new(frames)),
    )
        .into_response()
}
