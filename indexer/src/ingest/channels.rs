//! Payment channel events of the marketplace: one `channels` row per channel (deposit,
//! newest settled voucher, state, the sums paid out), one `channel_settlements` row per
//! settled voucher, and the payouts of each settlement and close (like a job's).

use super::ledger::{self, Leg, PayoutRef, asset_key};
use super::marketplace::{Parties, missing, settle};
use super::{Applied, ApplyError, Contracts, EventCtx};
use crate::db::checkpoint::to_i64;
use crate::db::{BadValue, amount};
use enclave_cloud_common::ChannelId;
use enclave_cloud_common::events::MarketplaceEvent;
use enclave_cloud_common::events::marketplace::{ChannelCloseReason, Settlement};
use near_sdk::json_types::U128;
use sqlx::{AnyConnection, Row};

/// The states of a channel, as stored and served.
pub const OPEN: &str = "open";
/// The user started a unilateral close: the node may settle until `close_ends_ns`.
pub const CLOSING: &str = "closing";
pub const CLOSED: &str = "closed";

fn id(channel_id: ChannelId) -> Result<i64, BadValue> {
    to_i64(channel_id.0, "channel_id")
}

/// Applies one channel event; any other marketplace event is not ours (an orphan).
pub async fn apply(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    contracts: &Contracts,
    event: &MarketplaceEvent,
) -> Result<Applied, ApplyError> {
    use MarketplaceEvent::*;
    match event {
        ChannelOpened { .. } => opened(conn, ctx, event).await,
        ChannelToppedUp {
            channel_id,
            deposit,
            ..
        } => {
            let q = sqlx::query(
                "UPDATE channels SET deposit = $2, updated_height = $3, updated_ns = $4
                 WHERE channel_id = $1",
            )
            .bind(id(*channel_id)?)
            .bind(amount::pad(deposit.0))
            .bind(ctx.height)
            .bind(ctx.timestamp_ns);
            Ok(updated(q.execute(conn).await?.rows_affected(), *channel_id))
        }
        ChannelSettled {
            channel_id,
            settled,
            settlement,
            ..
        } => settled_voucher(conn, ctx, contracts, *channel_id, *settled, settlement).await,
        ChannelCloseStarted {
            channel_id,
            ends_ns,
        } => {
            let q = sqlx::query(
                "UPDATE channels SET state = $2, close_ends_ns = $3, updated_height = $4,
                     updated_ns = $5
                 WHERE channel_id = $1",
            )
            .bind(id(*channel_id)?)
            .bind(CLOSING)
            .bind(to_i64(ends_ns.0, "close_ends_ns")?)
            .bind(ctx.height)
            .bind(ctx.timestamp_ns);
            Ok(updated(q.execute(conn).await?.rows_affected(), *channel_id))
        }
        ChannelClosed {
            channel_id,
            reason,
            settled,
            refund,
        } => closed(conn, ctx, *channel_id, *reason, *settled, *refund).await,
        _ => Ok(Applied::Orphan("not a payment channel event".into())),
    }
}

async fn opened(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    event: &MarketplaceEvent,
) -> Result<Applied, ApplyError> {
    let MarketplaceEvent::ChannelOpened {
        channel_id,
        user,
        node_id,
        operator,
        model_id,
        asset,
        deposit,
        channel_key,
        price,
        token_rate,
        challenge_period_ns,
    } = event
    else {
        return Ok(Applied::Orphan("not a channel opening".into()));
    };
    let zero = amount::pad(0);
    // The contract never reuses an id: a second opening of the same id is refused, never
    // allowed to overwrite what the first one (and its settlements) wrote.
    let inserted = sqlx::query(
        "INSERT INTO channels (channel_id, user_id, node_id, operator, model_id, asset,
             channel_key, input_per_million, output_per_million, units_per_near,
             challenge_period_ns, deposit, settled, state, close_ends_ns, close_reason,
             settlements, paid_provider, paid_royalty, paid_fee, refund, opened_seq,
             opened_height, opened_ns, updated_height, updated_ns)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, NULL, NULL, 0,
             $13, $13, $13, NULL, $15, $16, $17, $16, $17)
         ON CONFLICT (channel_id) DO NOTHING",
    )
    .bind(id(*channel_id)?)
    .bind(user.as_str())
    .bind(to_i64(node_id.0, "node_id")?)
    .bind(operator.as_str())
    .bind(model_id.as_str())
    .bind(asset_key(asset))
    .bind(String::from(channel_key))
    .bind(amount::pad(price.input_per_million.0))
    .bind(amount::pad(price.output_per_million.0))
    .bind(token_rate.map(|r| amount::pad(r.units_per_near.0)))
    .bind(to_i64(challenge_period_ns.0, "challenge_period_ns")?)
    .bind(amount::pad(deposit.0))
    .bind(zero)
    .bind(OPEN)
    .bind(ctx.seq)
    .bind(ctx.height)
    .bind(ctx.timestamp_ns)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(if inserted == 0 {
        Applied::Orphan(format!("channel {channel_id} opened again"))
    } else {
        Applied::Stored
    })
}

/// What a settlement needs of its channel.
struct Settling {
    user: String,
    node_id: i64,
    operator: String,
    model_id: String,
    asset: String,
    paid: [u128; 3],
}

const PAID_COLUMNS: [&str; 3] = ["paid_provider", "paid_royalty", "paid_fee"];

async fn load_settling(
    conn: &mut AnyConnection,
    channel_id: i64,
) -> Result<Option<Settling>, ApplyError> {
    let Some(r) = sqlx::query(
        "SELECT user_id, node_id, operator, model_id, asset, paid_provider, paid_royalty,
             paid_fee FROM channels WHERE channel_id = $1",
    )
    .bind(channel_id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let mut paid = [0; 3];
    for (slot, col) in paid.iter_mut().zip(PAID_COLUMNS) {
        *slot = amount::parse(col, &r.try_get::<String, _>(col)?)?;
    }
    Ok(Some(Settling {
        user: r.try_get("user_id")?,
        node_id: r.try_get("node_id")?,
        operator: r.try_get("operator")?,
        model_id: r.try_get("model_id")?,
        asset: r.try_get("asset")?,
        paid,
    }))
}

/// A voucher settled (by `settle` or within a cooperative close): the channel's settled
/// amount and sums move, the settlement is recorded, its legs are paid out. The refund a
/// close's settlement carries is the close's: it is paid out with `channel_closed`.
async fn settled_voucher(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    contracts: &Contracts,
    channel_id: ChannelId,
    settled: U128,
    s: &Settlement,
) -> Result<Applied, ApplyError> {
    let cid = id(channel_id)?;
    let Some(channel) = load_settling(conn, cid).await? else {
        return Ok(missing("channel", channel_id.0));
    };
    let legs = [s.provider.0, s.royalty.0, s.protocol_fee.0];
    let mut paid = [0u128; 3];
    for ((sum, (before, add)), col) in paid
        .iter_mut()
        .zip(channel.paid.iter().zip(legs))
        .zip(PAID_COLUMNS)
    {
        *sum = before.checked_add(add).ok_or_else(|| {
            BadValue::new(
                col,
                format!("{before} + {add}"),
                "exceeds the largest amount (u128)",
            )
        })?;
    }
    sqlx::query(
        "UPDATE channels SET settled = $2, settlements = settlements + 1, paid_provider = $3,
             paid_royalty = $4, paid_fee = $5, updated_height = $6, updated_ns = $7
         WHERE channel_id = $1",
    )
    .bind(cid)
    .bind(amount::pad(settled.0))
    .bind(amount::pad(paid[0]))
    .bind(amount::pad(paid[1]))
    .bind(amount::pad(paid[2]))
    .bind(ctx.height)
    .bind(ctx.timestamp_ns)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO channel_settlements (channel_id, seq, settled, cost, provider, royalty,
             protocol_fee, block_height, timestamp_ns, receipt_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(cid)
    .bind(ctx.seq)
    .bind(amount::pad(settled.0))
    .bind(amount::pad(s.cost.0))
    .bind(amount::pad(s.provider.0))
    .bind(amount::pad(s.royalty.0))
    .bind(amount::pad(s.protocol_fee.0))
    .bind(ctx.height)
    .bind(ctx.timestamp_ns)
    .bind(ctx.receipt_id)
    .execute(&mut *conn)
    .await?;
    let parties = Parties {
        payer: &channel.user,
        provider: Some(&channel.operator),
        model_id: &channel.model_id,
        asset: &channel.asset,
    };
    let without_refund = Settlement {
        refund: U128(0),
        ..s.clone()
    };
    let about = PayoutRef {
        node_id: Some(channel.node_id),
        channel_id: Some(cid),
        ..Default::default()
    };
    let node =
        enclave_cloud_common::NodeId(crate::db::checkpoint::to_u64(channel.node_id, "node_id")?);
    settle(conn, ctx, contracts, node, &parties, &without_refund, about).await?;
    Ok(Applied::Stored)
}

async fn closed(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    channel_id: ChannelId,
    reason: ChannelCloseReason,
    settled: U128,
    refund: U128,
) -> Result<Applied, ApplyError> {
    let cid = id(channel_id)?;
    let row = sqlx::query(
        "UPDATE channels SET state = $2, close_reason = $3, settled = $4, refund = $5,
             updated_height = $6, updated_ns = $7
         WHERE channel_id = $1 RETURNING user_id, node_id, asset",
    )
    .bind(cid)
    .bind(CLOSED)
    .bind(super::registry::label(&reason))
    .bind(amount::pad(settled.0))
    .bind(amount::pad(refund.0))
    .bind(ctx.height)
    .bind(ctx.timestamp_ns)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(missing("channel", channel_id.0));
    };
    let user: String = row.try_get("user_id")?;
    let asset: String = row.try_get("asset")?;
    let about = PayoutRef {
        node_id: Some(row.try_get("node_id")?),
        channel_id: Some(cid),
        ..Default::default()
    };
    let leg = Leg {
        account: &user,
        kind: "refund",
        asset: &asset,
        value: refund.0,
    };
    ledger::payout(conn, ctx, leg, about).await?;
    Ok(Applied::Stored)
}

fn updated(rows: u64, channel_id: ChannelId) -> Applied {
    if rows == 0 {
        missing("channel", channel_id.0)
    } else {
        Applied::Stored
    }
}
