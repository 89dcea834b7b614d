//! The node's paid, private API (issue 17): the OHTTP gateway (`sealed_api::Gateway`) in
//! front of the worker's routes, inference paid by payment channels and signed.
//!
//! * [`routes`]: `POST /v1/chat/completions`, `/v1/embeddings` and `/v1/channels/voucher`,
//!   sealed and paid;
//! * [`stream`]: a paid stream, its bill and signatures in the final (trailer) frame;
//! * [`exchange`]: signing an exchange with both keys;
//! * [`signatures`]: `GET /v1/signature/{id}`;
//! * [`report`]: `GET /v1/attestation/report` (fresh evidence, rate-limited).
//!
//! [`app`] assembles the listener's router: public routes (`/v1/models`, `/v1/attestation`,
//! `/v1/attestation/report`, `/v1/signature/{id}`, `/.well-known/ohttp-gateway`), the
//! gateway (`POST /ohttp`), and the inference routes: paid (sealed only; a plain request gets
//! an OpenAI-shaped 401) or, with `--unpaid-api`, today's plain unpaid routes.

pub mod exchange;
pub mod report;
pub mod routes;
pub mod signatures;
pub mod stream;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use protocol::channel_api::paths;
use sealed_api::Gateway;

pub use exchange::Signing;
pub use report::ReportSource;
pub use routes::PaidState;
pub use signatures::SignatureStore;

use crate::api::{ApiState, MAX_REQUEST_BYTES};

/// How the inference routes are served.
pub enum Inference {
    /// Sealed and paid by a channel (the default).
    Paid(PaidState),
    /// Plain and unpaid (`--unpaid-api`: development and benchmarks).
    Unpaid,
}

/// The API listener's router.
pub fn app(
    api: ApiState,
    inference: Inference,
    report: ReportSource,
    signatures: Arc<SignatureStore>,
    gateway: Gateway,
) -> Router {
    let models = match &inference {
        // The marketplace ids requests name (`run --model`).
        Inference::Paid(PaidState {
            models: Some(models),
            ..
        }) => {
            let ids: Vec<String> = models.keys().map(ToString::to_string).collect();
            get(move || {
                let ids = ids.clone();
                async move { axum::Json(crate::chat_api::model_list(ids)) }
            })
        }
        _ => get(crate::chat_api::models),
    };
    let public = Router::new()
        .route(paths::MODELS, models)
        .route("/v1/attestation", get(crate::api::attestation))
        .with_state(api.clone())
        .merge(
            Router::new()
                .route(paths::ATTESTATION_REPORT, get(report::get_report))
                .with_state(report),
        )
        .merge(
            Router::new()
                .route("/v1/signature/{id}", get(signatures::get_signature))
                .with_state(signatures),
        );
    let inference_routes = match inference {
        Inference::Paid(state) => Router::new()
            .route(paths::CHAT_COMPLETIONS, post(routes::chat))
            .route(paths::EMBEDDINGS, post(routes::embeddings))
            .route(paths::CHANNEL_VOUCHER, post(routes::voucher))
            .with_state(state),
        Inference::Unpaid => crate::api::inference_routes(api),
    };
    let inner = public
        .merge(inference_routes)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES));
    inner.clone().merge(gateway.router(inner))
}

#[cfg(test)]
mod tests;
