//! `/v1/models`: models, their manifest, crowdfund, holders and revenue.

use super::ApiContext;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::params::{Filter, NoParams, Page, Q, limit, parse};
use super::rows;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use enclave_cloud_common::ModelId;
pub use protocol::indexer::models::{
    Crowdfund, Holder, Model, ModelDetail, RevenueEntry, RevenueTotal,
};
use serde::Deserialize;
use sqlx::any::AnyRow;
use utoipa::IntoParams;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ModelQuery {
    /// 1..=200, default 50.
    limit: Option<String>,
    /// Model id after which the page starts.
    cursor: Option<String>,
}

const ZERO: &str = "0000000000000000000000000000000000000000";

fn model_select() -> String {
    format!(
        "SELECT m.*, (SELECT COUNT(*) FROM balances b WHERE b.token = m.token AND b.balance > '{ZERO}')
         AS holders FROM models m"
    )
}

/// List models.
#[utoipa::path(get, path = "/v1/models", tag = "models", params(ModelQuery),
    responses((status = 200, body = Page<Model>), (status = 400, body = ErrorBody)))]
pub async fn list_models(
    State(ctx): State<ApiContext>,
    Q(q): Q<ModelQuery>,
) -> ApiResult<Json<Page<Model>>> {
    let limit = limit(q.limit.as_deref())?;
    let mut f = Filter::default();
    if let Some(c) = &q.cursor {
        let after = c
            .parse::<ModelId>()
            .map_err(|_| ApiError::BadCursor(c.clone()))?;
        let p = f.text(after.as_str());
        f.push(format!("m.model_id > {p}"));
    }
    let lim = f.int(limit + 1);
    let sql = format!(
        "{}{} ORDER BY m.model_id LIMIT {lim}",
        model_select(),
        f.where_sql()
    );
    let rows = f.bind(sqlx::query(&sql)).fetch_all(&ctx.db.read).await?;
    let models = rows
        .iter()
        .map(model_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(Page::from_rows(models, limit, |m| m.model_id.clone())))
}

/// One model with manifest, holders and revenue.
#[utoipa::path(get, path = "/v1/models/{id}", tag = "models",
    params(("id" = String, Path, description = "Model id")),
    responses((status = 200, body = ModelDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_model(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    _: Q<NoParams>,
) -> ApiResult<Json<ModelDetail>> {
    let model_id =
        parse::<ModelId>("id", Some(&id))?.ok_or_else(|| ApiError::bad("id", "missing"))?;
    let sql = format!("{} WHERE m.model_id = $1", model_select());
    let row = sqlx::query(&sql)
        .bind(model_id.as_str())
        .fetch_optional(&ctx.db.read)
        .await?
        .ok_or_else(|| ApiError::not_found("model", &model_id))?;
    let model = model_from_row(&row)?;
    let top_holders = match &model.token {
        Some(token) => sqlx::query(&format!(
            "SELECT account, balance FROM balances WHERE token = $1 AND balance > '{ZERO}'
             ORDER BY balance DESC, account LIMIT 100"
        ))
        .bind(token)
        .fetch_all(&ctx.db.read)
        .await?
        .iter()
        .map(|r| {
            Ok(Holder {
                account: rows::text(r, "account")?,
                balance: rows::amount(r, "balance")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?,
        None => Vec::new(),
    };
    let prefix = format!("revenue:{model_id}:");
    let revenue = totals_with_prefix(&ctx, &prefix)
        .await?
        .into_iter()
        .filter_map(|(rest, amount)| {
            let (kind, asset) = rest.split_once(':')?;
            Some(RevenueTotal {
                kind: kind.to_owned(),
                asset: asset.to_owned(),
                amount,
            })
        })
        .collect();
    let recent_revenue = sqlx::query(
        "SELECT kind, account, asset, amount, block_height FROM revenue WHERE model_id = $1
         ORDER BY seq DESC LIMIT 50",
    )
    .bind(model_id.as_str())
    .fetch_all(&ctx.db.read)
    .await?
    .iter()
    .map(|r| {
        Ok(RevenueEntry {
            kind: rows::text(r, "kind")?,
            account: rows::text(r, "account")?,
            asset: rows::text(r, "asset")?,
            amount: rows::amount(r, "amount")?,
            block_height: rows::height(r, "block_height")?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(ModelDetail {
        model,
        manifest: rows::json(&row, "manifest")?,
        top_holders,
        revenue,
        recent_revenue,
    }))
}

/// `(name without prefix, amount)` of every running total whose name starts with
/// `prefix` (which must end in `:`; `;` is the next character, bounding the range).
pub async fn totals_with_prefix(
    ctx: &ApiContext,
    prefix: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let end = format!("{};", prefix.trim_end_matches(':'));
    sqlx::query("SELECT name, value FROM totals WHERE name >= $1 AND name < $2 ORDER BY name")
        .bind(prefix)
        .bind(end)
        .fetch_all(&ctx.db.read)
        .await?
        .iter()
        .map(|r| {
            let name = rows::text(r, "name")?;
            Ok((
                name.strip_prefix(prefix).unwrap_or(&name).to_owned(),
                rows::amount(r, "value")?,
            ))
        })
        .collect()
}

fn model_from_row(r: &AnyRow) -> Result<Model, sqlx::Error> {
    let crowdfund = rows::opt_text(r, "crowdfund_state")?
        .map(|state| {
            Ok::<_, sqlx::Error>(Crowdfund {
                state,
                goal: rows::opt_amount(r, "crowdfund_goal")?,
                token_price: rows::opt_amount(r, "crowdfund_token_price")?,
                deadline_ns: rows::opt_u64_text(r, "crowdfund_deadline_ns")?,
                beneficiary: rows::opt_text(r, "crowdfund_beneficiary")?,
                raised: rows::amount(r, "crowdfund_raised")?,
                released: rows::amount(r, "released")?,
            })
        })
        .transpose()?;
    Ok(Model {
        model_id: rows::text(r, "model_id")?,
        token: rows::opt_text(r, "token")?,
        owner: rows::opt_text(r, "owner")?,
        name: rows::opt_text(r, "name")?,
        created_height: rows::opt_height(r, "created_height")?,
        crowdfund,
        total_supply: rows::amount(r, "total_supply")?,
        holders: rows::int(r, "holders")?,
    })
}
