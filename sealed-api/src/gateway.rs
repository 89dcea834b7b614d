//! The gateway (worker side): an axum router in front of the worker's existing routes that
//! opens OHTTP requests, runs them through the inner router, and seals the responses.
//!
//! ```text
//! let app = Gateway::new(enclave_key, Limits::default()).router(inner_routes);
//! ```
//!
//! * `GET  /.well-known/ohttp-gateway` serves the key configuration (`application/ohttp-keys`).
//! * `POST /ohttp` with `message/ohttp-req` answers `message/ohttp-res`: the inner response
//!   is read whole (at most [`Limits::max_response_bytes`]) and sealed padded.
//! * `POST /ohttp` with `message/ohttp-chunked-req` answers `message/ohttp-chunked-res`: the
//!   inner response streams, one sealed frame per body frame the inner route yields (axum's
//!   `Sse` yields one per event), each sent as soon as it is sealed, and the final chunk after
//!   the inner body ends, carrying the inner body's trailers (HTTP trailer frames): the place
//!   for the response signature, sealed, after the exact body it signs. If the inner body fails the gateway stops without a final chunk, so
//!   the client sees a truncated stream rather than a short one.
//!
//! The inner request carries a [`SealedRequest`] extension, so a route can insist that it
//! came through the gateway (and so was private end to end). Errors of the gateway itself
//! (undecryptable or oversized messages) are plain HTTP errors with an OpenAI-shaped body:
//! they concern the envelope and carry nothing of its content.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::stream;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use crate::bhttp::{self, Field, ResponseHead};
use crate::chunked::{self, ChunkedResponseWriter};
use crate::client::{
    CONTENT_TYPE_CHUNKED_REQUEST, CONTENT_TYPE_CHUNKED_RESPONSE, CONTENT_TYPE_KEYS,
    CONTENT_TYPE_REQUEST, CONTENT_TYPE_RESPONSE,
};
use crate::error::OhttpError;
use crate::key_config::{GatewayKey, KeyConfig};
use crate::limits::{Limits, MAX_FRAME};
use crate::ohttp::{self, ResponseSealer};
use crate::padding;
use crate::stream::StreamSealer;

/// Path of the key configuration.
pub const KEYS_PATH: &str = "/.well-known/ohttp-gateway";
/// Path requests are posted to (as NEAR AI Cloud's gateway).
pub const GATEWAY_PATH: &str = "/ohttp";

/// Present in the extensions of every request the gateway hands to the inner router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedRequest {
    /// The client asked for a chunked (streamed) response.
    pub streaming: bool,
}

/// The node's OHTTP gateway: its enclave key and limits.
#[derive(Clone)]
pub struct Gateway {
    key: Arc<GatewayKey>,
    limits: Limits,
}

impl Gateway {
    pub fn new(key: GatewayKey, limits: Limits) -> Self {
        Self {
            key: Arc::new(key),
            limits,
        }
    }

    pub fn key_config(&self) -> &KeyConfig {
        self.key.config()
    }

    /// The gateway's two routes in front of `inner` (merge the result into the worker's app).
    pub fn router(self, inner: Router) -> Router {
        let keys = KeyConfig::encode_list(std::slice::from_ref(self.key.config()));
        Router::new()
            .route(
                KEYS_PATH,
                get(move || async move { ([(header::CONTENT_TYPE, CONTENT_TYPE_KEYS)], keys) }),
            )
            .route(
                GATEWAY_PATH,
                post(move |request: axum::extract::Request| async move {
                    self.handle(inner, request).await
                }),
            )
    }

    /// Largest encapsulated request body accepted (the plaintext limit plus framing).
    fn max_wire_bytes(&self) -> usize {
        let n = self.limits.max_request_bytes;
        n + n / 16 + 2 * MAX_FRAME
    }

    /// Opens `request`, runs it through `inner`, seals the response.
    pub async fn handle(&self, inner: Router, request: axum::extract::Request) -> Response {
        let streaming = match content_type(request.headers()) {
            Some(CONTENT_TYPE_REQUEST) => false,
            Some(CONTENT_TYPE_CHUNKED_REQUEST) => true,
            _ => {
                return error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("POST {CONTENT_TYPE_REQUEST} or {CONTENT_TYPE_CHUNKED_REQUEST}"),
                );
            }
        };
        let wire = match axum::body::to_bytes(request.into_body(), self.max_wire_bytes()).await {
            Ok(b) => b,
            Err(_) => {
                return envelope_error(&OhttpError::TooLarge {
                    max: self.max_wire_bytes(),
                });
            }
        };
        if streaming {
            match chunked::open_chunked_request(&self.key, &wire, &self.limits) {
                Ok((bhttp, writer)) => self.respond_streaming(inner, &bhttp, writer).await,
                Err(e) => envelope_error(&e),
            }
        } else {
            match ohttp::decapsulate_request(&self.key, &wire, &self.limits) {
                Ok((bhttp, sealer)) => self.respond_whole(inner, &bhttp, sealer).await,
                Err(e) => envelope_error(&e),
            }
        }
    }

    async fn run_inner(
        inner: Router,
        bhttp: &[u8],
        streaming: bool,
    ) -> Result<Response, OhttpError> {
        let req = bhttp::decode_request(bhttp)?;
        let method = Method::from_bytes(req.method.as_bytes())
            .map_err(|_| OhttpError::Malformed("inner request method"))?;
        if !req.path.starts_with('/') {
            return Err(OhttpError::Malformed("inner request path"));
        }
        let mut builder = axum::http::Request::builder().method(method).uri(&req.path);
        if !req.authority.is_empty() && !req.headers.iter().any(|(n, _)| n == "host") {
            builder = builder.header(header::HOST, &req.authority);
        }
        for (name, value) in &req.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let mut inner_request = builder
            .body(Body::from(req.body))
            .map_err(|_| OhttpError::Malformed("inner request header"))?;
        inner_request
            .extensions_mut()
            .insert(SealedRequest { streaming });
        // A router never fails: its error type is `Infallible`.
        let Ok(response) = inner.oneshot(inner_request).await;
        Ok(response)
    }

    async fn respond_whole(&self, inner: Router, bhttp: &[u8], sealer: ResponseSealer) -> Response {
        let response = match Self::run_inner(inner, bhttp, false).await {
            Ok(r) => r,
            Err(e) => return envelope_error(&e),
        };
        let (parts, body) = response.into_parts();
        let Ok(body) = axum::body::to_bytes(body, self.limits.max_response_bytes).await else {
            return error(
                StatusCode::BAD_GATEWAY,
                "response_too_large",
                "the response is over the gateway's limit; ask for a streamed response".into(),
            );
        };
        let mut msg = bhttp::encode_response(&bhttp::Response {
            status: parts.status.as_u16(),
            headers: fields(&parts.headers),
            body: body.to_vec(),
        });
        padding::pad_message(&mut msg);
        match sealer.seal(&msg) {
            Ok(wire) => ([(header::CONTENT_TYPE, CONTENT_TYPE_RESPONSE)], wire).into_response(),
            Err(e) => envelope_error(&e),
        }
    }

    async fn respond_streaming(
        &self,
        inner: Router,
        bhttp: &[u8],
        writer: ChunkedResponseWriter,
    ) -> Response {
        let response = match Self::run_inner(inner, bhttp, true).await {
            Ok(r) => r,
            Err(e) => return envelope_error(&e),
        };
        let (parts, body) = response.into_parts();
        let mut sealer = StreamSealer::new(writer);
        let head = ResponseHead {
            status: parts.status.as_u16(),
            headers: fields(&parts.headers),
        };
        let first = match sealer.head(&head) {
            Ok(b) => b,
            Err(e) => return envelope_error(&e),
        };
        let state = StreamState {
            first: Some(first),
            body: Some(body),
            sealer: Some(sealer),
            trailers: Vec::new(),
        };
        let chunks = stream::unfold(state, next_chunk);
        let mut response = Response::new(Body::from_stream(chunks));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(CONTENT_TYPE_CHUNKED_RESPONSE),
        );
        // Proxies that buffer would defeat streaming (and add latency to every event).
        response
            .headers_mut()
            .insert("x-accel-buffering", HeaderValue::from_static("no"));
        response
    }
}

struct StreamState {
    first: Option<Vec<u8>>,
    body: Option<Body>,
    sealer: Option<StreamSealer>,
    trailers: Vec<Field>,
}

/// The next sealed bytes of a streamed response: the head, one item per inner body frame,
/// then the final chunk with the inner body's trailers (where the worker puts the response
/// signature). An inner body error ends the stream with an error and no final chunk (the
/// client reports truncation).
async fn next_chunk(mut st: StreamState) -> Option<(Result<Bytes, OhttpError>, StreamState)> {
    if let Some(first) = st.first.take() {
        return Some((Ok(Bytes::from(first)), st));
    }
    let body = st.body.as_mut()?;
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                let data = match frame.into_data() {
                    Ok(data) => data,
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            st.trailers.extend(fields(&trailers));
                        }
                        continue;
                    }
                };
                if data.is_empty() {
                    continue;
                }
                let sealed = st.sealer.as_mut()?.data(&data);
                return Some(finish_item(sealed, st));
            }
            Some(Err(_)) => {
                st.body = None;
                st.sealer = None;
                return Some((Err(OhttpError::Truncated), st));
            }
            None => {
                st.body = None;
                let end = st.sealer.take()?.end(&st.trailers);
                return Some(finish_item(end, st));
            }
        }
    }
}

fn finish_item(
    sealed: Result<Vec<u8>, OhttpError>,
    mut st: StreamState,
) -> (Result<Bytes, OhttpError>, StreamState) {
    match sealed {
        Ok(b) => (Ok(Bytes::from(b)), st),
        Err(e) => {
            st.body = None;
            st.sealer = None;
            (Err(e), st)
        }
    }
}

/// Response header fields to carry inside: everything but hop-by-hop and length fields
/// (the outer message has its own). Values that are not UTF-8 are left out.
fn fields(headers: &HeaderMap) -> Vec<Field> {
    const SKIP: [HeaderName; 4] = [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::HOST,
    ];
    headers
        .iter()
        .filter(|(n, _)| !SKIP.contains(n))
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(v.split(';').next().unwrap_or(v).trim())
}

/// An OpenAI-shaped error body.
fn error(status: StatusCode, code: &str, message: String) -> Response {
    let body = serde_json::json!({
        "error": { "message": message, "type": "invalid_request_error", "code": code }
    });
    (status, axum::Json(body)).into_response()
}

fn envelope_error(e: &OhttpError) -> Response {
    let (status, code) = match e {
        OhttpError::UnknownKeyId(_) | OhttpError::UnsupportedSuite { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, "key_config_mismatch")
        }
        OhttpError::TooLarge { .. } | OhttpError::OversizedChunk { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large")
        }
        OhttpError::Crypto => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        _ => (StatusCode::BAD_REQUEST, "invalid_encapsulated_request"),
    };
    error(status, code, e.to_string())
}
