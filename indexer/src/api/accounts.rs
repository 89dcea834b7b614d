//! `/v1/accounts/{id}`: one NEAR account's jobs, earnings, holdings and claimable credits.

use super::ApiContext;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::jobs::job_from_row;
use super::models::totals_with_prefix;
use super::nodes::load_stake;
use super::params::{NoParams, Q};
use super::rows;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use near_sdk::AccountId;
pub use protocol::indexer::accounts::{Account, Claimable, Earning, Holding};

pub fn router() -> Router<ApiContext> {
    Router::new().route("/v1/accounts/{id}", get(get_account))
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
