//! `/v1/governance`: the timelocked changes of the contracts the indexer follows.

use super::ApiContext;
use super::error::{ApiResult, ErrorBody};
use super::params::{Filter, Page, Q, limit, parse};
use super::rows;
use crate::ingest::governance::{APPLIED, CANCELLED, PENDING};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use near_sdk::AccountId;
pub use protocol::indexer::governance::GovernanceChange;
use serde::Deserialize;
use sqlx::any::AnyRow;
use utoipa::IntoParams;

pub fn router() -> Router<ApiContext> {
    Router::new().route("/v1/governance", get(list_governance))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GovernanceQuery {
    /// Changes of this contract account only (registry, marketplace, factory or a model
    /// token).
    contract: Option<String>,
    /// `pending`, `applied` or `cancelled`.
    status: Option<String>,
    /// 1..=200, default 50.
    limit: Option<String>,
    /// Newest first: the page continues below this cursor.
    cursor: Option<String>,
}

const STATUSES: [&str; 3] = [PENDING, APPLIED, CANCELLED];

/// List governance changes, newest proposal first.
#[utoipa::path(get, path = "/v1/governance", tag = "governance", params(GovernanceQuery),
    responses((status = 200, body = Page<GovernanceChange>), (status = 400, body = ErrorBody)))]
pub async fn list_governance(
    State(ctx): State<ApiContext>,
    Q(q): Q<GovernanceQuery>,
) -> ApiResult<Json<Page<GovernanceChange>>> {
    let contract = parse::<AccountId>("contract", q.contract.as_deref())?;
    let limit = limit(q.limit.as_deref())?;
    let mut f = Filter::default();
    f.eq_text("contract", contract.as_ref().map(|a| a.as_str()));
    f.eq_one_of("status", "status", q.status.as_deref(), &STATUSES)?;
    let sql = f.newest_first_sql(
        "governance_changes",
        "proposed_seq",
        q.cursor.as_deref(),
        limit,
    )?;
    let rows = f.bind(sqlx::query(&sql)).fetch_all(&ctx.db.read).await?;
    // The cursor is the position of the proposal in the chain (unique, unlike an id).
    let changes = rows
        .iter()
        .map(|r| Ok((change_from_row(r)?, rows::int(r, "proposed_seq")?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let page = Page::from_rows(changes, limit, |(_, seq)| seq.to_string());
    Ok(Json(Page {
        items: page.items.into_iter().map(|(c, _)| c).collect(),
        next_cursor: page.next_cursor,
    }))
}

pub fn change_from_row(r: &AnyRow) -> Result<GovernanceChange, sqlx::Error> {
    Ok(GovernanceChange {
        contract: rows::text(r, "contract")?,
        change_id: rows::u64_text(r, "change_id")?,
        change: rows::json(r, "change")?,
        proposed_by: rows::text(r, "proposed_by")?,
        applies_at_ns: rows::u64_text(r, "applies_at_ns")?,
        status: rows::text(r, "status")?,
        proposed_height: rows::height(r, "proposed_height")?,
        proposed_at_ns: rows::u64_text(r, "proposed_at_ns")?,
        proposed_receipt: rows::text(r, "proposed_receipt")?,
        resolved_height: rows::opt_height(r, "resolved_height")?,
        resolved_at_ns: rows::opt_u64_text(r, "resolved_at_ns")?,
    })
}
