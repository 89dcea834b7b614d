//! `/v1/accounts/{id}`: one NEAR account's jobs, earnings, holdings and claimable credits.

use super::ApiContext;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::jobs::{Job, job_from_row};
use super::models::totals_with_prefix;
use super::nodes::{Stake, load_stake};
use super::params::{NoParams, Q};
use super::rows;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use near_sdk::AccountId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<ApiContext> {
    Router::new().route("/v1/accounts/{id}", get(get_account))
}

/// Money an account received, summed by kind and asset.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Earning {
    /// `provider`, `royalty`, `protocol_fee`, `refund`, `slash`, `revenue_claim`,
    /// `crowdfund_release` or `crowdfund_refund`.
    pub kind: String,
    pub asset: String,
    pub amount: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Holding {
    pub token: String,
    /// Set when the token is a model's revenue token.
    pub model_id: Option<String>,
    pub balance: String,
}

/// A marketplace credit: a payout that could not be delivered, waiting for `withdraw`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Claimable {
    pub asset: String,
    pub amount: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub account_id: String,
    pub jobs_submitted: i64,
    /// Newest first, at most 10. Page through `/v1/jobs?user=` for more.
    pub recent_jobs: Vec<Job>,
    pub requests_made: i64,
    /// Nodes this account operates.
    pub nodes: Vec<String>,
    pub stake: Option<Stake>,
    pub earnings: Vec<Earning>,
    pub holdings: Vec<Holding>,
    pub claimable: Vec<Claimable>,
}

/// One account.
#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "accounts",
    params(("id" = String, Path, description = "NEAR account id")),
    responses((status = 200, body = Account), (status = 400, body = ErrorBody)))]
pub async fn get_account(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    _: Q<NoParams>,
) -> ApiResult<Json<Account>> {
    let account: AccountId = id
        .parse()
        .map_err(|e| ApiError::bad("id", format!("'{id}' is not a NEAR account id: {e}")))?;
    let a = account.as_str();
    let pool = &ctx.db.read;
    let jobs_submitted: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE user_id = $1")
        .bind(a)
        .fetch_one(pool)
        .await?;
    let recent_jobs =
        sqlx::query("SELECT * FROM jobs WHERE user_id = $1 ORDER BY job_id DESC LIMIT 10")
            .bind(a)
            .fetch_all(pool)
            .await?
            .iter()
            .map(job_from_row)
            .collect::<Result<_, _>>()?;
    let requests_made: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM requests WHERE caller = $1")
        .bind(a)
        .fetch_one(pool)
        .await?;
    let nodes: Vec<i64> =
        sqlx::query_scalar("SELECT node_id FROM nodes WHERE operator = $1 ORDER BY node_id")
            .bind(a)
            .fetch_all(pool)
            .await?;
    let stake = load_stake(&ctx, a).await?;
    let earnings = totals_with_prefix(&ctx, &format!("earned:{a}:"))
        .await?
        .into_iter()
        .filter_map(|(rest, amount)| {
            let (kind, asset) = rest.split_once(':')?;
            Some(Earning {
                kind: kind.to_owned(),
                asset: asset.to_owned(),
                amount,
            })
        })
        .collect();
    let holdings = sqlx::query(
        "SELECT b.token, b.balance, m.model_id FROM balances b LEFT JOIN models m ON m.token = b.token
         WHERE b.account = $1 ORDER BY b.token",
    )
    .bind(a)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(Holding {
            token: rows::text(r, "token")?,
            model_id: rows::opt_text(r, "model_id")?,
            balance: rows::amount(r, "balance")?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let claimable =
        sqlx::query("SELECT asset, amount FROM credits WHERE account = $1 ORDER BY asset")
            .bind(a)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                Ok(Claimable {
                    asset: rows::text(r, "asset")?,
                    amount: rows::amount(r, "amount")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(Account {
        account_id: a.to_owned(),
        jobs_submitted,
        recent_jobs,
        requests_made,
        nodes: nodes.iter().map(i64::to_string).collect(),
        stake,
        earnings,
        holdings,
        claimable,
    }))
}
