//! `/v1/jobs` and `/v1/requests/{id}`: escrowed jobs, agent requests and their timelines.

use super::ApiContext;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::params::{Filter, NoParams, Page, Q, limit, parse, path_id};
use super::rows;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use enclave_cloud_common::ModelId;
use near_sdk::AccountId;
pub use protocol::indexer::jobs::{
    Job, JobDetail, Request, RequestDetail, Settlement, Target, TimelineEntry, Usage,
};
use serde::Deserialize;
use sqlx::any::AnyRow;
use utoipa::IntoParams;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/requests/{id}", get(get_request))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Jobs submitted by this account.
    user: Option<String>,
    /// Jobs claimed by (or named to) this node.
    node: Option<String>,
    model: Option<String>,
    /// `open`, `claimed`, `settled` or `cancelled`.
    status: Option<String>,
    /// 1..=200, default 50.
    limit: Option<String>,
    /// Newest first: the page continues below this cursor.
    cursor: Option<String>,
}

const JOB_STATUSES: [&str; 4] = ["open", "claimed", "settled", "cancelled"];

/// List jobs, newest first.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobQuery),
    responses((status = 200, body = Page<Job>), (status = 400, body = ErrorBody)))]
pub async fn list_jobs(
    State(ctx): State<ApiContext>,
    Q(q): Q<JobQuery>,
) -> ApiResult<Json<Page<Job>>> {
    let user = parse::<AccountId>("user", q.user.as_deref())?;
    let node = q.node.as_deref().map(|n| path_id("node", n)).transpose()?;
    let model = parse::<ModelId>("model", q.model.as_deref())?;
    let limit = limit(q.limit.as_deref())?;
    let mut f = Filter::default();
    f.eq_text("user_id", user.as_ref().map(|a| a.as_str()));
    if let Some(node) = node {
        let p = f.int(node);
        f.push(format!("(node_id = {p} OR target_node = {p})"));
    }
    f.eq_text("model_id", model.as_ref().map(|m| m.as_str()));
    f.eq_one_of("status", "status", q.status.as_deref(), &JOB_STATUSES)?;
    let sql = f.newest_first_sql("jobs", "job_id", q.cursor.as_deref(), limit)?;
    let rows = f.bind(sqlx::query(&sql)).fetch_all(&ctx.db.read).await?;
    let jobs = rows
        .iter()
        .map(job_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(Page::from_rows(jobs, limit, |j| j.job_id.clone())))
}

/// One job with its timeline.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_job(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    _: Q<NoParams>,
) -> ApiResult<Json<JobDetail>> {
    let job_id = path_id("id", &id)?;
    let row = sqlx::query("SELECT * FROM jobs WHERE job_id = $1")
        .bind(job_id)
        .fetch_optional(&ctx.db.read)
        .await?
        .ok_or_else(|| ApiError::not_found("job", job_id))?;
    let timeline = load_timeline(&ctx, "job", job_id).await?;
    Ok(Json(JobDetail {
        job: job_from_row(&row)?,
        timeline,
    }))
}

/// One agent request with its timeline.
#[utoipa::path(get, path = "/v1/requests/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Request id")),
    responses((status = 200, body = RequestDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_request(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    _: Q<NoParams>,
) -> ApiResult<Json<RequestDetail>> {
    let request_id = path_id("id", &id)?;
    let row = sqlx::query("SELECT * FROM requests WHERE request_id = $1")
        .bind(request_id)
        .fetch_optional(&ctx.db.read)
        .await?
        .ok_or_else(|| ApiError::not_found("request", request_id))?;
    let timeline = load_timeline(&ctx, "request", request_id).await?;
    Ok(Json(RequestDetail {
        request: request_from_row(&row)?,
        timeline,
    }))
}

pub(super) async fn load_timeline(
    ctx: &ApiContext,
    entity: &str,
    id: i64,
) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    sqlx::query("SELECT * FROM timeline WHERE entity = $1 AND entity_id = $2 ORDER BY seq")
        .bind(entity)
        .bind(id)
        .fetch_all(&ctx.db.read)
        .await?
        .iter()
        .map(|r| {
            Ok(TimelineEntry {
                event: rows::text(r, "event")?,
                block_height: rows::height(r, "block_height")?,
                timestamp_ns: rows::u64_text(r, "timestamp_ns")?,
                receipt_id: rows::text(r, "receipt_id")?,
                data: rows::json(r, "data")?,
            })
        })
        .collect()
}

fn usage(r: &AnyRow) -> Result<Option<Usage>, sqlx::Error> {
    Ok(
        match (
            rows::opt_count(r, "input_tokens")?,
            rows::opt_count(r, "output_tokens")?,
        ) {
            (Some(input_tokens), Some(output_tokens)) => Some(Usage {
                input_tokens,
                output_tokens,
            }),
            _ => None,
        },
    )
}

/// Why a settlement leg may not be NULL.
const SETTLED: &str = "is missing from a settled row (its cost is set)";

fn settlement(r: &AnyRow) -> Result<Option<Settlement>, sqlx::Error> {
    let Some(cost) = rows::opt_amount(r, "cost")? else {
        return Ok(None);
    };
    Ok(Some(Settlement {
        cost,
        provider: rows::required_amount(r, "provider_amount", SETTLED)?,
        royalty: rows::required_amount(r, "royalty", SETTLED)?,
        protocol_fee: rows::required_amount(r, "protocol_fee", SETTLED)?,
        refund: rows::required_amount(r, "refund", SETTLED)?,
    }))
}

pub fn job_from_row(r: &AnyRow) -> Result<Job, sqlx::Error> {
    let target_node = rows::opt_u64_text(r, "target_node")?;
    let target = Target {
        kind: if target_node.is_some() { "node" } else { "any" }.to_owned(),
        node_id: target_node,
        region: rows::opt_text(r, "target_region")?,
        gpu_model: rows::opt_text(r, "target_gpu")?,
        max_price_per_million: rows::opt_amount(r, "target_max_price")?,
    };
    Ok(Job {
        job_id: rows::u64_text(r, "job_id")?,
        user: rows::text(r, "user_id")?,
        model_id: rows::text(r, "model_id")?,
        asset: rows::text(r, "asset")?,
        price_cap: rows::amount(r, "price_cap")?,
        claim_deadline_ns: rows::u64_text(r, "claim_deadline_ns")?,
        deadline_ns: rows::u64_text(r, "deadline_ns")?,
        target,
        input: rows::json(r, "input")?,
        user_key: rows::text(r, "user_key")?,
        status: rows::text(r, "status")?,
        node_id: rows::opt_u64_text(r, "node_id")?,
        operator: rows::opt_text(r, "operator")?,
        usage: usage(r)?,
        output: rows::json(r, "output")?,
        output_hash: rows::opt_text(r, "output_hash")?,
        weights_hash: rows::opt_hash(r, "weights_hash")?,
        settlement: settlement(r)?,
        cancel_reason: rows::opt_text(r, "cancel_reason")?,
        refund: rows::opt_amount(r, "refund")?,
        slashed: rows::opt_amount(r, "slashed")?,
        created_height: rows::height(r, "created_height")?,
        created_at_ns: rows::u64_text(r, "created_ns")?,
        updated_height: rows::height(r, "updated_height")?,
    })
}

pub fn request_from_row(r: &AnyRow) -> Result<Request, sqlx::Error> {
    Ok(Request {
        request_id: rows::u64_text(r, "request_id")?,
        caller: rows::text(r, "caller")?,
        model_id: rows::text(r, "model_id")?,
        deposit: rows::amount(r, "deposit")?,
        input: rows::json(r, "input")?,
        status: rows::text(r, "status")?,
        node_id: rows::opt_u64_text(r, "node_id")?,
        usage: usage(r)?,
        settlement: settlement(r)?,
        refund: rows::opt_amount(r, "refund")?,
        created_height: rows::height(r, "created_height")?,
        created_at_ns: rows::u64_text(r, "created_ns")?,
        updated_height: rows::height(r, "updated_height")?,
    })
}
