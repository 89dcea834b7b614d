//! The worker feed: jobs and agent requests a node may take, as server-sent events
//! (`/v1/nodes/{id}/feed`, resumable with `Last-Event-ID`) or pages (`/v1/nodes/{id}/offers`).
//!
//! A node may take an open job named to it, or an open "any node" job for a model it
//! prices, at or under the job's price ceiling, in the job's region and with the job's GPU
//! when those are set; and any pending agent request for a model it prices. Each item's id
//! is the chain position (`seq`) of the event that created it, so ids only grow and a
//! client resuming after id N misses nothing created after N.

use super::ApiContext;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::jobs::{job_from_row, request_from_row};
use super::params::{Page, Q, canonical_int, int_cursor, limit, path_id};
use super::rows;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::Stream;
pub use protocol::indexer::feed::FeedItem;
use serde::Deserialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use utoipa::IntoParams;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/v1/nodes/{id}/feed", get(feed))
        .route("/v1/nodes/{id}/offers", get(offers))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OffersQuery {
    /// Only items with an id above this one.
    after: Option<String>,
    /// 1..=200, default 50.
    limit: Option<String>,
    /// Same as `after`: the `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Only items with an id above this one (`Last-Event-ID` takes precedence).
    after: Option<String>,
}

/// The open jobs and pending requests `node_id` may take, created after `after`, oldest
/// first, at most `limit`.
pub async fn load_offers(
    ctx: &ApiContext,
    node_id: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, FeedItem)>, sqlx::Error> {
    let jobs = sqlx::query(
        "SELECT j.* FROM jobs j WHERE j.status = 'open' AND j.created_seq > $2 AND (
             j.target_node = $1 OR (j.target_node IS NULL
               AND EXISTS (SELECT 1 FROM node_prices p WHERE p.node_id = $1
                   AND p.model_id = j.model_id
                   AND (j.target_max_price IS NULL OR p.output_per_million <= j.target_max_price))
               AND (j.target_region IS NULL
                   OR j.target_region = (SELECT n.region FROM nodes n WHERE n.node_id = $1))
               AND (j.target_gpu IS NULL OR EXISTS (SELECT 1 FROM node_gpus g
                   WHERE g.node_id = $1 AND g.model = j.target_gpu))))
         ORDER BY j.created_seq LIMIT $3",
    )
    .bind(node_id)
    .bind(after)
    .bind(limit)
    .fetch_all(&ctx.db.read)
    .await?;
    let requests = sqlx::query(
        "SELECT r.* FROM requests r WHERE r.status = 'pending' AND r.created_seq > $2
           AND EXISTS (SELECT 1 FROM node_prices p WHERE p.node_id = $1 AND p.model_id = r.model_id)
         ORDER BY r.created_seq LIMIT $3",
    )
    .bind(node_id)
    .bind(after)
    .bind(limit)
    .fetch_all(&ctx.db.read)
    .await?;
    let mut items = Vec::with_capacity(jobs.len() + requests.len());
    for r in &jobs {
        let seq = rows::int(r, "created_seq")?;
        let job = job_from_row(r)?;
        items.push((
            seq,
            FeedItem {
                id: seq.to_string(),
                kind: "job".into(),
                job: Some(job),
                request: None,
            },
        ));
    }
    for r in &requests {
        let seq = rows::int(r, "created_seq")?;
        let request = request_from_row(r)?;
        items.push((
            seq,
            FeedItem {
                id: seq.to_string(),
                kind: "request".into(),
                job: None,
                request: Some(request),
            },
        ));
    }
    items.sort_by_key(|(seq, _)| *seq);
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(items)
}

async fn known_node(ctx: &ApiContext, id: &str) -> ApiResult<i64> {
    let node_id = path_id("id", id)?;
    let found: Option<i64> = sqlx::query_scalar("SELECT node_id FROM nodes WHERE node_id = $1")
        .bind(node_id)
        .fetch_optional(&ctx.db.read)
        .await?;
    found.ok_or_else(|| ApiError::not_found("node", node_id))
}

/// What a node may take, one page at a time (for workers that poll).
#[utoipa::path(get, path = "/v1/nodes/{id}/offers", tag = "feed",
    params(("id" = String, Path, description = "Node id"), OffersQuery),
    responses((status = 200, body = Page<FeedItem>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn offers(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    Q(q): Q<OffersQuery>,
) -> ApiResult<Json<Page<FeedItem>>> {
    let node_id = known_node(&ctx, &id).await?;
    let limit = limit(q.limit.as_deref())?;
    let after = match (int_cursor(q.cursor.as_deref())?, q.after.as_deref()) {
        (Some(c), _) => c,
        (None, Some(a)) => after_param("after", a)?,
        (None, None) => 0,
    };
    let items: Vec<FeedItem> = load_offers(&ctx, node_id, after, limit + 1)
        .await?
        .into_iter()
        .map(|(_, i)| i)
        .collect();
    Ok(Json(Page::from_rows(items, limit, |i| i.id.clone())))
}

fn after_param(name: &'static str, v: &str) -> ApiResult<i64> {
    canonical_int(v).ok_or_else(|| {
        ApiError::bad(
            name,
            format!("'{v}' is not an event id: expected decimal digits"),
        )
    })
}

/// Server-sent events of what a node may take: first everything open now, then each new
/// item as soon as the block that created it is committed. Events are named `job` or
/// `request`, carry a [`FeedItem`] as data and its id as the SSE id.
#[utoipa::path(get, path = "/v1/nodes/{id}/feed", tag = "feed",
    params(("id" = String, Path, description = "Node id"), FeedQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this item id")),
    responses((status = 200, description = "text/event-stream of FeedItem", content_type = "text/event-stream"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn feed(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Q(q): Q<FeedQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let node_id = known_node(&ctx, &id).await?;
    let header = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad("Last-Event-ID", "not ASCII"))
        })
        .transpose()?;
    let after = match (header, q.after.as_deref()) {
        (Some(h), _) => after_param("Last-Event-ID", h)?,
        (None, Some(a)) => after_param("after", a)?,
        (None, None) => 0,
    };
    let state = FeedState {
        wake: ctx.status.indexed.subscribe(),
        _subscriber: Subscriber::new(&ctx),
        ctx,
        node_id,
        after,
        buffered: VecDeque::new(),
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        let event = s.next_event().await?;
        Some((Ok(event), s))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct FeedState {
    ctx: ApiContext,
    node_id: i64,
    after: i64,
    buffered: VecDeque<(i64, FeedItem)>,
    wake: tokio::sync::watch::Receiver<u64>,
    /// Held for the stream's lifetime: counts it in the gauge.
    _subscriber: Subscriber,
}

impl FeedState {
    /// The next item, waiting for new blocks as long as needed. `None` ends the stream
    /// (the indexer is shutting down).
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if self.ctx.status.is_closing() {
                return None;
            }
            if let Some((seq, item)) = self.buffered.pop_front() {
                self.after = seq;
                let data = serde_json::to_string(&item).unwrap_or_default();
                return Some(Event::default().id(item.id).event(item.kind).data(data));
            }
            // Mark the current height seen *before* querying: a block committed after the
            // query wakes us up, so nothing falls between the query and the wait.
            self.wake.borrow_and_update();
            match load_offers(&self.ctx, self.node_id, self.after, 100).await {
                Ok(items) if !items.is_empty() => self.buffered.extend(items),
                Ok(_) => self.wake.changed().await.ok()?,
                Err(e) => match crate::db::BadValue::from_sqlx(e) {
                    // Not skipped (a worker would miss an offer) nor shown with a made-up
                    // value: logged and counted on every retry until the row is repaired.
                    Ok(bad) => {
                        self.ctx.metrics.bad_value(&bad);
                        tracing::error!(
                            node = self.node_id, field = bad.field, value = %bad.value,
                            error = %bad, "feed item holds a value that cannot be read; retrying"
                        );
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        tracing::warn!(node = self.node_id, error = %e, "feed query failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
            }
        }
    }
}

/// Counts open streams in the `feed_subscribers` gauge.
struct Subscriber(prometheus::IntGauge);

impl Subscriber {
    fn new(ctx: &ApiContext) -> Self {
        ctx.metrics.feed_subscribers.inc();
        Self(ctx.metrics.feed_subscribers.clone())
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.dec();
    }
}
