//! `/v1/channels` and `/v1/channels/{id}`: payment channels, per user, node, operator, model
//! or state, each with its settled vouchers.

use super::ApiContext;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::jobs::load_timeline;
use super::params::{Filter, NoParams, Page, Q, limit, parse, path_id};
use super::rows;
use crate::db::{BadValue, amount};
use crate::ingest::channels::{CLOSED, CLOSING, OPEN};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use enclave_cloud_common::ModelId;
use near_sdk::AccountId;
pub use protocol::indexer::channels::{
    Channel, ChannelDetail, ChannelPaid, ChannelPrice, ChannelSettlement,
};
use serde::Deserialize;
use sqlx::any::AnyRow;
use utoipa::IntoParams;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/v1/channels", get(list_channels))
        .route("/v1/channels/{id}", get(get_channel))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChannelQuery {
    /// Channels opened by this account.
    user: Option<String>,
    /// Channels to this node.
    node: Option<String>,
    /// Channels to the nodes of this operator.
    operator: Option<String>,
    model: Option<String>,
    /// `open`, `closing` or `closed`.
    state: Option<String>,
    /// 1..=200, default 50.
    limit: Option<String>,
    /// Newest first: the page continues below this cursor.
    cursor: Option<String>,
}

const STATES: [&str; 3] = [OPEN, CLOSING, CLOSED];

/// List payment channels, newest first.
#[utoipa::path(get, path = "/v1/channels", tag = "channels", params(ChannelQuery),
    responses((status = 200, body = Page<Channel>), (status = 400, body = ErrorBody)))]
pub async fn list_channels(
    State(ctx): State<ApiContext>,
    Q(q): Q<ChannelQuery>,
) -> ApiResult<Json<Page<Channel>>> {
    let user = parse::<AccountId>("user", q.user.as_deref())?;
    let node = q.node.as_deref().map(|n| path_id("node", n)).transpose()?;
    let operator = parse::<AccountId>("operator", q.operator.as_deref())?;
    let model = parse::<ModelId>("model", q.model.as_deref())?;
    let limit = limit(q.limit.as_deref())?;
    let mut f = Filter::default();
    f.eq_text("user_id", user.as_ref().map(|a| a.as_str()));
    f.eq_int("node_id", node);
    f.eq_text("operator", operator.as_ref().map(|a| a.as_str()));
    f.eq_text("model_id", model.as_ref().map(|m| m.as_str()));
    f.eq_one_of("state", "state", q.state.as_deref(), &STATES)?;
    let sql = f.newest_first_sql("channels", "channel_id", q.cursor.as_deref(), limit)?;
    let rows = f.bind(sqlx::query(&sql)).fetch_all(&ctx.db.read).await?;
    let channels = rows
        .iter()
        .map(channel_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(Page::from_rows(channels, limit, |c| {
        c.channel_id.clone()
    })))
}

/// One payment channel with its settled vouchers and its events.
#[utoipa::path(get, path = "/v1/channels/{id}", tag = "channels",
    params(("id" = String, Path, description = "Channel id")),
    responses((status = 200, body = ChannelDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_channel(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    _: Q<NoParams>,
) -> ApiResult<Json<ChannelDetail>> {
    let channel_id = path_id("id", &id)?;
    let row = sqlx::query("SELECT * FROM channels WHERE channel_id = $1")
        .bind(channel_id)
        .fetch_optional(&ctx.db.read)
        .await?
        .ok_or_else(|| ApiError::not_found("channel", channel_id))?;
    let settlements =
        sqlx::query("SELECT * FROM channel_settlements WHERE channel_id = $1 ORDER BY seq")
            .bind(channel_id)
            .fetch_all(&ctx.db.read)
            .await?
            .iter()
            .map(|r| {
                Ok(ChannelSettlement {
                    settled: rows::amount(r, "settled")?,
                    cost: rows::amount(r, "cost")?,
                    provider: rows::amount(r, "provider")?,
                    royalty: rows::amount(r, "royalty")?,
                    protocol_fee: rows::amount(r, "protocol_fee")?,
                    block_height: rows::height(r, "block_height")?,
                    timestamp_ns: rows::u64_text(r, "timestamp_ns")?,
                    receipt_id: rows::text(r, "receipt_id")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
    let timeline = load_timeline(&ctx, "channel", channel_id).await?;
    Ok(Json(ChannelDetail {
        channel: channel_from_row(&row)?,
        settlements,
        timeline,
    }))
}

pub fn channel_from_row(r: &AnyRow) -> Result<Channel, sqlx::Error> {
    let deposit = rows::amount(r, "deposit")?;
    let settled = rows::amount(r, "settled")?;
    Ok(Channel {
        channel_id: rows::u64_text(r, "channel_id")?,
        user: rows::text(r, "user_id")?,
        node_id: rows::u64_text(r, "node_id")?,
        operator: rows::text(r, "operator")?,
        model_id: rows::text(r, "model_id")?,
        asset: rows::text(r, "asset")?,
        channel_key: rows::text(r, "channel_key")?,
        price: ChannelPrice {
            input_per_million: rows::amount(r, "input_per_million")?,
            output_per_million: rows::amount(r, "output_per_million")?,
        },
        units_per_near: rows::opt_amount(r, "units_per_near")?,
        challenge_period_ns: rows::u64_text(r, "challenge_period_ns")?,
        remaining: remaining(&deposit, &settled)?,
        deposit,
        settled,
        state: rows::text(r, "state")?,
        close_ends_ns: rows::opt_u64_text(r, "close_ends_ns")?,
        close_reason: rows::opt_text(r, "close_reason")?,
        settlement_count: rows::int(r, "settlements")?,
        paid: ChannelPaid {
            provider: rows::amount(r, "paid_provider")?,
            royalty: rows::amount(r, "paid_royalty")?,
            protocol_fee: rows::amount(r, "paid_fee")?,
        },
        refund: rows::opt_amount(r, "refund")?,
        opened_height: rows::height(r, "opened_height")?,
        opened_at_ns: rows::u64_text(r, "opened_ns")?,
        updated_height: rows::height(r, "updated_height")?,
        updated_at_ns: rows::u64_text(r, "updated_ns")?,
    })
}

/// `deposit - settled`; a settled amount above the deposit was never written by the
/// contract (it refuses such a voucher) and is a bad value, not 0.
fn remaining(deposit: &str, settled: &str) -> Result<String, sqlx::Error> {
    let d = amount::parse("deposit", deposit).map_err(BadValue::into_sqlx)?;
    let s = amount::parse("settled", settled).map_err(BadValue::into_sqlx)?;
    d.checked_sub(s)
        .map(|v| v.to_string())
        .ok_or_else(|| BadValue::new("settled", s, "exceeds the deposit").into_sqlx())
}
