//! Model factory and model-token events: models, manifests, crowdfunds, revenue, keys.

use super::ledger::{self, Delta, Leg, PayoutRef, RAISED, RELEASED, asset_key};
use super::{Applied, ApplyError, EventCtx, json_text};
use crate::db::amount;
use crate::db::checkpoint::to_i64;
use enclave_cloud_common::events::ModelEvent;
use sqlx::AnyConnection;

/// The model whose token contract is `token`, if the factory announced it.
pub async fn model_of_token(
    conn: &mut AnyConnection,
    token: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT model_id FROM models WHERE token = $1")
        .bind(token)
        .fetch_optional(conn)
        .await
}

/// Blocks an unannounced token's events wait for the factory's announcement; older ones
/// are dropped (the announcement comes in the next block or two, or never: a failed
/// creation rolls the token's account back, logs included).
pub const HOLD_BLOCKS: i64 = 1_000;

/// Whether `account` is `<name>.<factory>`: only the factory can create such an account.
pub fn is_direct_sub_account(account: &str, factory: &near_sdk::AccountId) -> bool {
    account
        .strip_suffix(factory.as_str())
        .and_then(|name| name.strip_suffix('.'))
        .is_some_and(|name| !name.is_empty() && !name.contains('.'))
}

/// Keeps an event of a token the factory has not announced yet, and forgets events held
/// for longer than [`HOLD_BLOCKS`].
pub async fn hold_for_announcement(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    line: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM pending_token_events WHERE block_height < $1")
        .bind(ctx.height.saturating_sub(HOLD_BLOCKS))
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO pending_token_events (seq, token, block_height, timestamp_ns, receipt_id, line)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(ctx.seq)
    .bind(ctx.executor)
    .bind(ctx.height)
    .bind(ctx.timestamp_ns)
    .bind(ctx.receipt_id)
    .bind(line)
    .execute(conn)
    .await?;
    Ok(())
}

/// An event held by [`hold_for_announcement`].
#[derive(Debug)]
pub struct HeldEvent {
    pub seq: i64,
    pub height: i64,
    pub timestamp_ns: i64,
    pub receipt_id: String,
    pub line: String,
}

/// Removes and returns the events held for `token`, oldest first.
pub async fn take_held(
    conn: &mut AnyConnection,
    token: &str,
) -> Result<Vec<HeldEvent>, sqlx::Error> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT seq, block_height, timestamp_ns, receipt_id, line FROM pending_token_events
         WHERE token = $1 ORDER BY seq",
    )
    .bind(token)
    .fetch_all(&mut *conn)
    .await?;
    let held = rows
        .iter()
        .map(|r| {
            Ok(HeldEvent {
                seq: r.try_get("seq")?,
                height: r.try_get("block_height")?,
                timestamp_ns: r.try_get("timestamp_ns")?,
                receipt_id: r.try_get("receipt_id")?,
                line: r.try_get("line")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    if !held.is_empty() {
        sqlx::query("DELETE FROM pending_token_events WHERE token = $1")
            .bind(token)
            .execute(conn)
            .await?;
    }
    Ok(held)
}

/// The factory only announces models; anything else it emits is not its to say.
pub async fn from_factory(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    event: &ModelEvent,
) -> Result<Applied, ApplyError> {
    let ModelEvent::ModelCreated {
        model_id,
        token,
        owner,
    } = event
    else {
        return Ok(Applied::Foreign);
    };
    sqlx::query(
        "INSERT INTO models (model_id, token, owner, created_height) VALUES ($1, $2, $3, $4)
         ON CONFLICT (model_id) DO UPDATE SET token = excluded.token, owner = excluded.owner",
    )
    .bind(model_id.as_str())
    .bind(token.as_str())
    .bind(owner.as_str())
    .bind(ctx.height)
    .execute(conn)
    .await?;
    Ok(Applied::Stored)
}

/// An event of the token contract of `model_id`.
pub async fn from_token(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    model_id: &str,
    event: &ModelEvent,
) -> Result<Applied, ApplyError> {
    use ModelEvent::*;
    match event {
        ModelCreated { .. } => return Ok(Applied::Foreign),
        ManifestUpdated {
            model_id: named,
            manifest,
        } => {
            if named.as_str() != model_id {
                return Ok(Applied::Orphan(format!(
                    "token of model {model_id} published a manifest for model {named}"
                )));
            }
            sqlx::query("UPDATE models SET name = $2, manifest = $3 WHERE model_id = $1")
                .bind(model_id)
                .bind(&manifest.name)
                .bind(json_text(manifest, "manifest")?)
                .execute(conn)
                .await?;
        }
        CrowdfundStarted {
            goal,
            token_price,
            deadline_ns,
            beneficiary,
        } => {
            sqlx::query(
                "UPDATE models SET crowdfund_state = 'running', crowdfund_goal = $2,
                     crowdfund_token_price = $3, crowdfund_deadline_ns = $4,
                     crowdfund_beneficiary = $5
                 WHERE model_id = $1",
            )
            .bind(model_id)
            .bind(amount::pad(goal.0))
            .bind(amount::pad(token_price.0))
            .bind(to_i64(deadline_ns.0, "deadline_ns")?)
            .bind(beneficiary.as_str())
            .execute(conn)
            .await?;
        }
        Contributed {
            account, amount: v, ..
        } => {
            ledger::adjust(conn, ctx, RAISED, &[model_id], Delta::Add(v.0)).await?;
            activity(
                conn,
                ctx,
                model_id,
                event,
                Some(account.as_str()),
                Some(v.0),
            )
            .await?;
        }
        CrowdfundSucceeded { raised } | CrowdfundFailed { raised } => {
            let state = if matches!(event, CrowdfundSucceeded { .. }) {
                "succeeded"
            } else {
                "failed"
            };
            sqlx::query("UPDATE models SET crowdfund_state = $2 WHERE model_id = $1")
                .bind(model_id)
                .bind(state)
                .execute(&mut *conn)
                .await?;
            ledger::adjust(conn, ctx, RAISED, &[model_id], Delta::Set(raised.0)).await?;
            activity(conn, ctx, model_id, event, None, Some(raised.0)).await?;
        }
        FundsReleased {
            beneficiary,
            amount: v,
            ..
        } => {
            ledger::adjust(conn, ctx, RELEASED, &[model_id], Delta::Add(v.0)).await?;
            activity(
                conn,
                ctx,
                model_id,
                event,
                Some(beneficiary.as_str()),
                Some(v.0),
            )
            .await?;
            let about = PayoutRef::default();
            let who = beneficiary.as_str();
            ledger::payout(
                conn,
                ctx,
                Leg {
                    account: who,
                    kind: "crowdfund_release",
                    asset: "near",
                    value: v.0,
                },
                about,
            )
            .await?;
        }
        ContributionRefunded {
            account, amount: v, ..
        } => {
            activity(
                conn,
                ctx,
                model_id,
                event,
                Some(account.as_str()),
                Some(v.0),
            )
            .await?;
            let about = PayoutRef::default();
            let who = account.as_str();
            ledger::payout(
                conn,
                ctx,
                Leg {
                    account: who,
                    kind: "crowdfund_refund",
                    asset: "near",
                    value: v.0,
                },
                about,
            )
            .await?;
        }
        RevenueDeposited {
            payer,
            asset,
            amount: v,
        } => {
            revenue(
                conn,
                ctx,
                model_id,
                "deposit",
                payer.as_str(),
                &asset_key(asset),
                v.0,
            )
            .await?;
        }
        RevenueClaimed {
            account,
            asset,
            amount: v,
        } => {
            let asset = asset_key(asset);
            revenue(conn, ctx, model_id, "claim", account.as_str(), &asset, v.0).await?;
            let about = PayoutRef::default();
            ledger::payout(
                conn,
                ctx,
                Leg {
                    account: account.as_str(),
                    kind: "revenue_claim",
                    asset: &asset,
                    value: v.0,
                },
                about,
            )
            .await?;
        }
        KeyGranted { node_id, key_hash } => {
            sqlx::query(
                "INSERT INTO key_grants (model_id, node_id, key_hash, granted_height) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (model_id, node_id) DO UPDATE SET key_hash = excluded.key_hash,
                     granted_height = excluded.granted_height, revoked_height = NULL",
            )
            .bind(model_id)
            .bind(to_i64(node_id.0, "node_id")?)
            .bind(key_hash.to_string())
            .bind(ctx.height)
            .execute(conn)
            .await?;
        }
        KeyRevoked { node_id } => {
            sqlx::query(
                "INSERT INTO key_grants (model_id, node_id, revoked_height) VALUES ($1, $2, $3)
                 ON CONFLICT (model_id, node_id) DO UPDATE SET revoked_height = excluded.revoked_height",
            )
            .bind(model_id)
            .bind(to_i64(node_id.0, "node_id")?)
            .bind(ctx.height)
            .execute(conn)
            .await?;
        }
    }
    Ok(Applied::Stored)
}

async fn activity(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    model_id: &str,
    event: &ModelEvent,
    account: Option<&str>,
    value: Option<u128>,
) -> Result<(), ApplyError> {
    let (name, _) = ledger::name_and_data(event);
    sqlx::query(
        "INSERT INTO model_activity (seq, model_id, event, account, amount, block_height, timestamp_ns)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(ctx.seq)
    .bind(model_id)
    .bind(name)
    .bind(account)
    .bind(value.map(amount::pad))
    .bind(ctx.height)
    .bind(ctx.timestamp_ns)
    .execute(conn)
    .await?;
    Ok(())
}

async fn revenue(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    model_id: &str,
    kind: &str,
    account: &str,
    asset: &str,
    value: u128,
) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO revenue (seq, model_id, kind, account, asset, amount, block_height, timestamp_ns)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(ctx.seq)
    .bind(model_id)
    .bind(kind)
    .bind(account)
    .bind(asset)
    .bind(amount::pad(value))
    .bind(ctx.height)
    .bind(ctx.timestamp_ns)
    .execute(&mut *conn)
    .await?;
    let key = ledger::revenue_key(model_id, kind, asset);
    ledger::adjust(conn, ctx, ledger::TOTAL, &[&key], Delta::Add(value)).await?;
    Ok(())
}
