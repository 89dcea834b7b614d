//! Read-only views for the explorer pages: an operator (`/v1/operators/{id}`), a model's
//! key grants (`/v1/models/{id}/grants`), search (`/v1/search`) and the block stream the
//! pages refresh on (`/v1/events`).

use super::ApiContext;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::nodes::{load_stake, nodes_from_rows};
use super::params::{NoParams, Q, canonical_int};
use super::rows;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use near_sdk::AccountId;
use protocol::indexer::explorer::{ModelGrant, Operator, SearchHit, SearchResult, Slash};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use utoipa::IntoParams;

/// An operator's stake, nodes and slashes.
#[utoipa::path(get, path = "/v1/operators/{id}", tag = "accounts",
    params(("id" = String, Path, description = "The operator's NEAR account id")),
    responses((status = 200, body = Operator), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_operator(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    _: Q<NoParams>,
) -> ApiResult<Json<Operator>> {
    let account = account_param(&id)?;
    let a = account.as_str();
    let stake = load_stake(&ctx, a).await?;
    let mut conn = ctx.db.read.acquire().await?;
    let node_rows = sqlx::query("SELECT * FROM nodes WHERE operator = $1 ORDER BY node_id")
        .bind(a)
        .fetch_all(&mut *conn)
        .await?;
    let nodes = nodes_from_rows(&mut conn, &node_rows).await?;
    if stake.is_none() && nodes.is_empty() {
        return Err(ApiError::NotFound {
            what: "operator",
            id: a.to_owned(),
        });
    }
    let slashes = sqlx::query(
        "SELECT job_id, node_id, user_id, slashed, updated_height FROM jobs
         WHERE operator = $1 AND slashed IS NOT NULL ORDER BY job_id DESC LIMIT 100",
    )
    .bind(a)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Slash {
            job_id: rows::u64_text(r, "job_id")?,
            node_id: rows::opt_u64_text(r, "node_id")?,
            user: rows::text(r, "user_id")?,
            amount: rows::amount(r, "slashed")?,
            block_height: rows::height(r, "updated_height")?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(Operator {
        operator: a.to_owned(),
        stake,
        nodes,
        slashes,
    }))
}

fn account_param(id: &str) -> ApiResult<AccountId> {
    id.parse()
        .map_err(|e| ApiError::bad("id", format!("'{id}' is not a NEAR account id: {e}")))
}

/// The nodes a model's key was granted to.
#[utoipa::path(get, path = "/v1/models/{id}/grants", tag = "models",
    params(("id" = String, Path, description = "Model id")),
    responses((status = 200, body = Vec<ModelGrant>), (status = 404, body = ErrorBody)))]
pub async fn model_grants(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    _: Q<NoParams>,
) -> ApiResult<Json<Vec<ModelGrant>>> {
    let known: Option<String> =
        sqlx::query_scalar("SELECT model_id FROM models WHERE model_id = $1")
            .bind(&id)
            .fetch_optional(&ctx.db.read)
            .await?;
    if known.is_none() {
        return Err(ApiError::NotFound { what: "model", id });
    }
    let grants = sqlx::query(
        "SELECT node_id, key_hash, granted_height, revoked_height FROM key_grants
         WHERE model_id = $1 ORDER BY node_id",
    )
    .bind(&id)
    .fetch_all(&ctx.db.read)
    .await?
    .iter()
    .map(|r| {
        Ok(ModelGrant {
            node_id: rows::u64_text(r, "node_id")?,
            key_hash: rows::opt_text(r, "key_hash")?,
            granted_height: rows::opt_height(r, "granted_height")?,
            revoked_height: rows::opt_height(r, "revoked_height")?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(grants))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// A node, job or request id, a model id, token account or name, or an account id.
    q: String,
}

const MAX_QUERY: usize = 128;

/// Everything a term names, exactly (ids are not fuzzy).
#[utoipa::path(get, path = "/v1/search", tag = "status", params(SearchQuery),
    responses((status = 200, body = SearchResult), (status = 400, body = ErrorBody)))]
pub async fn search(
    State(ctx): State<ApiContext>,
    Q(q): Q<SearchQuery>,
) -> ApiResult<Json<SearchResult>> {
    let term = q.q.trim().to_owned();
    if term.is_empty() || term.len() > MAX_QUERY {
        return Err(ApiError::bad(
            "q",
            format!("must be 1 to {MAX_QUERY} characters"),
        ));
    }
    let pool = &ctx.db.read;
    let mut hits = Vec::new();
    let hit = |kind: &str, id: String, label: String| SearchHit {
        kind: kind.to_owned(),
        id,
        label,
    };
    if let Some(n) = canonical_int(&term) {
        if let Some(r) = sqlx::query("SELECT operator, status FROM nodes WHERE node_id = $1")
            .bind(n)
            .fetch_optional(pool)
            .await?
        {
            let label = format!(
                "node of {}, {}",
                rows::text(&r, "operator")?,
                rows::text(&r, "status")?
            );
            hits.push(hit("node", term.clone(), label));
        }
        if let Some(r) = sqlx::query("SELECT model_id, status FROM jobs WHERE job_id = $1")
            .bind(n)
            .fetch_optional(pool)
            .await?
        {
            let label = format!(
                "job for {}, {}",
                rows::text(&r, "model_id")?,
                rows::text(&r, "status")?
            );
            hits.push(hit("job", term.clone(), label));
        }
        if let Some(r) = sqlx::query("SELECT model_id, status FROM requests WHERE request_id = $1")
            .bind(n)
            .fetch_optional(pool)
            .await?
        {
            let label = format!(
                "agent request for {}, {}",
                rows::text(&r, "model_id")?,
                rows::text(&r, "status")?
            );
            hits.push(hit("request", term.clone(), label));
        }
        if let Some(r) =
            sqlx::query("SELECT user_id, node_id, state FROM channels WHERE channel_id = $1")
                .bind(n)
                .fetch_optional(pool)
                .await?
        {
            let label = format!(
                "payment channel of {} to node {}, {}",
                rows::text(&r, "user_id")?,
                rows::u64_text(&r, "node_id")?,
                rows::text(&r, "state")?
            );
            hits.push(hit("channel", term.clone(), label));
        }
    }
    for r in sqlx::query(
        "SELECT model_id, name FROM models WHERE model_id = $1 OR token = $1 OR LOWER(name) = LOWER($1)
         ORDER BY model_id LIMIT 20",
    )
    .bind(&term)
    .fetch_all(pool)
    .await?
    {
        let id = rows::text(&r, "model_id")?;
        let label = rows::opt_text(&r, "name")?.unwrap_or_else(|| id.clone());
        hits.push(hit("model", id, format!("model {label}")));
    }
    if let Ok(account) = term.parse::<AccountId>() {
        let a = account.as_str();
        let operates: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM nodes WHERE operator = $1) + (SELECT COUNT(*) FROM operators WHERE operator = $1)",
        )
        .bind(a)
        .fetch_one(pool)
        .await?;
        if operates > 0 {
            hits.push(hit("operator", a.to_owned(), "node operator".to_owned()));
        }
        let active: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE user_id = $1) + (SELECT COUNT(*) FROM balances WHERE account = $1)
                  + (SELECT COUNT(*) FROM payouts WHERE account = $1) + (SELECT COUNT(*) FROM requests WHERE caller = $1)",
        )
        .bind(a)
        .fetch_one(pool)
        .await?;
        if active > 0 || operates > 0 {
            hits.push(hit("account", a.to_owned(), "account activity".to_owned()));
        }
    }
    Ok(Json(SearchResult { query: term, hits }))
}

/// Minimum time between two events of one stream: blocks can come faster than a page
/// should re-render.
const EVENT_SPACING: Duration = Duration::from_millis(300);

/// Server-sent events, one `block` event (data `{"indexed_height": h}`, id `h`) at once and
/// then whenever newly indexed blocks are committed; the explorer pages re-read what they
/// show on each one instead of polling.
#[utoipa::path(get, path = "/v1/events", tag = "status",
    responses((status = 200, description = "text/event-stream of block events", content_type = "text/event-stream")))]
pub async fn events(
    State(ctx): State<ApiContext>,
    _: Q<NoParams>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let wake = ctx.status.indexed.subscribe();
    let stream =
        futures_util::stream::unfold((ctx, wake, true), |(ctx, mut wake, first)| async move {
            if ctx.status.is_closing() {
                return None;
            }
            if !first {
                tokio::time::sleep(EVENT_SPACING).await;
                wake.changed().await.ok()?;
                if ctx.status.is_closing() {
                    return None;
                }
            }
            let height = *wake.borrow_and_update();
            let event = Event::default()
                .id(height.to_string())
                .event("block")
                .data(format!("{{\"indexed_height\":{height}}}"));
            Some((Ok(event), (ctx, wake, false)))
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
