//! The REST API (axum 0.8). Layout after launchbadge/realworld-axum-sqlx: one
//! [`ApiContext`] handed to every handler as `State`, one router per resource, one error
//! enum ([`error::ApiError`]) turned into `{error, message}` responses.

pub mod accounts;
pub mod channels;
pub mod error;
pub mod feed;
pub mod governance;
pub mod jobs;
pub mod models;
pub mod node_json;
pub mod nodes;
pub mod page_cache;
pub mod params;
mod rows;
pub mod series;
pub mod site;
pub mod stats;
pub mod views;

use crate::db::Db;
use crate::follower::ChainStatus;
use crate::metrics::Metrics;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use error::ApiError;
use params::{NoParams, Q};
use std::sync::Arc;
use std::time::Instant;
use tower_http::cors::{Any, CorsLayer};
use utoipa::OpenApi;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiContext {
    pub db: Db,
    pub status: Arc<ChainStatus>,
    pub metrics: Metrics,
    /// Rendered `/v1/nodes` pages of the current index generation.
    pub node_pages: Arc<page_cache::PageCache>,
}

/// The OpenAPI document, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(title = "enclave-cloud indexer", description = "Nodes, jobs, agent requests, payment channels, models, accounts and governance changes of the enclave-cloud contracts, and the worker feed."),
    paths(
        nodes::list_nodes, nodes::get_node,
        feed::feed, feed::offers,
        jobs::list_jobs, jobs::get_job, jobs::get_request,
        channels::list_channels, channels::get_channel,
        models::list_models, models::get_model,
        accounts::get_account,
        governance::list_governance,
        stats::stats, stats::status,
        series::series, views::get_operator, views::model_grants, views::search, views::events,
        site::network,
    ),
    components(schemas(error::ErrorBody)),
    tags(
        (name = "nodes", description = "Attested nodes"),
        (name = "feed", description = "What a node may take"),
        (name = "jobs", description = "Jobs and agent requests"),
        (name = "channels", description = "Payment channels: deposits, settled vouchers, closes"),
        (name = "models", description = "Models, crowdfunds, holders, revenue"),
        (name = "accounts", description = "One account's activity"),
        (name = "governance", description = "Timelocked changes of the contracts"),
        (name = "status", description = "Network totals, time series, search and indexer progress"),
    )
)]
pub struct ApiDoc;

/// The whole HTTP surface, without the explorer pages' bundle or network (`/` says how to
/// build them).
pub fn router(ctx: ApiContext) -> Router {
    router_with_site(ctx, site::Site::default())
}

/// The whole HTTP surface with the explorer pages.
pub fn router_with_site(ctx: ApiContext, site: site::Site) -> Router {
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers([
            header::ACCEPT,
            header::CONTENT_TYPE,
            HeaderName::from_static("last-event-id"),
        ]);
    Router::new()
        .merge(nodes::router())
        .merge(feed::router())
        .merge(jobs::router())
        .merge(channels::router())
        .merge(models::router())
        .merge(accounts::router())
        .merge(governance::router())
        .merge(stats::router())
        .route("/v1/series", get(series::series))
        .route("/v1/operators/{id}", get(views::get_operator))
        .route("/v1/models/{id}/grants", get(views::model_grants))
        .route("/v1/search", get(views::search))
        .route("/v1/events", get(views::events))
        .route("/v1/network", get(site::network))
        .route("/", get(site::index))
        .route("/assets/{file}", get(site::asset))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(ctx.clone(), track))
        .layer(cors)
        .layer(axum::Extension(std::sync::Arc::new(site)))
        .with_state(ctx)
}

async fn openapi(_: Q<NoParams>) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn metrics(State(ctx): State<ApiContext>, _: Q<NoParams>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ctx.metrics.render(),
    )
        .into_response()
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Counts requests and their latency by route template (not by raw path, which would let
/// clients create unbounded label values).
async fn track(State(ctx): State<ApiContext>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    ctx.metrics
        .http_seconds
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    ctx.metrics
        .http_requests
        .with_label_values(&[&route, status_label(status)])
        .inc();
    if let Some(error::BadValueField(field)) = resp.extensions().get() {
        ctx.metrics.bad_values.with_label_values(&[field]).inc();
    }
    resp
}

fn status_label(s: StatusCode) -> &'static str {
    match s.as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
