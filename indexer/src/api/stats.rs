//! `/v1/stats` (what the network did) and `/v1/status` (how far the indexer is).

use super::ApiContext;
use super::error::ApiResult;
use super::params::{NoParams, Q};
use super::rows;
use crate::db::checkpoint;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
pub use protocol::indexer::stats::{Stats, Status};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/v1/stats", get(stats))
        .route("/v1/status", get(status))
}

async fn count_by(
    ctx: &ApiContext,
    table: &str,
    column: &str,
) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let sql = format!("SELECT {column} AS k, COUNT(*) AS n FROM {table} GROUP BY {column}");
    sqlx::query(&sql)
        .fetch_all(&ctx.db.read)
        .await?
        .iter()
        .map(|r| Ok((rows::text(r, "k")?, rows::int(r, "n")?)))
        .collect()
}

/// Network totals.
#[utoipa::path(get, path = "/v1/stats", tag = "status", responses((status = 200, body = Stats)))]
pub async fn stats(State(ctx): State<ApiContext>, _: Q<NoParams>) -> ApiResult<Json<Stats>> {
    let models: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM models")
        .fetch_one(&ctx.db.read)
        .await?;
    let mut totals = BTreeMap::new();
    for prefix in ["volume:", "royalties:", "fees:"] {
        for (asset, v) in super::models::totals_with_prefix(&ctx, prefix).await? {
            totals.insert(format!("{prefix}{asset}"), v);
        }
    }
    Ok(Json(Stats {
        nodes: count_by(&ctx, "nodes", "status").await?,
        jobs: count_by(&ctx, "jobs", "status").await?,
        requests: count_by(&ctx, "requests", "status").await?,
        models,
        totals,
    }))
}

/// Indexer progress.
#[utoipa::path(get, path = "/v1/status", tag = "status", responses((status = 200, body = Status)))]
pub async fn status(State(ctx): State<ApiContext>, _: Q<NoParams>) -> ApiResult<Json<Status>> {
    let mut conn = ctx.db.read.acquire().await?;
    let indexed_height = checkpoint::load(&mut conn).await?.map(|c| c.height);
    let head = ctx.status.head.load(Ordering::Relaxed);
    let chain_head = (head > 0).then_some(head);
    let lag = match (chain_head, indexed_height) {
        (Some(h), Some(i)) => Some(h.saturating_sub(i)),
        (Some(h), None) => Some(h),
        _ => None,
    };
    Ok(Json(Status {
        indexed_height,
        chain_head,
        lag,
        source: ctx.status.source.clone(),
        source_ok: ctx.status.source_ok.load(Ordering::Relaxed),
        events_applied: checkpoint::counter(&mut conn, "events_applied").await?,
        events_malformed: checkpoint::counter(&mut conn, "events_malformed").await?,
        events_foreign: checkpoint::counter(&mut conn, "events_foreign").await?,
        events_orphan: checkpoint::counter(&mut conn, "events_orphan").await?,
    }))
}
