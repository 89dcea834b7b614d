//! Marketplace events: jobs, agent requests, their settlement and credits.

use super::ledger::{self, CREDIT, Delta, Leg, PayoutRef, TOTAL, asset_key};
use super::{Applied, ApplyError, Contracts, EventCtx, json_text};
use crate::db::checkpoint::to_i64;
use crate::db::{BadValue, amount};
use enclave_cloud_common::events::MarketplaceEvent;
use enclave_cloud_common::events::marketplace::{JobTarget, Settlement};
use enclave_cloud_common::{NodeId, RequestId, Usage};
use sqlx::{AnyConnection, Row};

pub async fn apply(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    contracts: &Contracts,
    event: &MarketplaceEvent,
) -> Result<Applied, ApplyError> {
    use MarketplaceEvent::*;
    let outcome = match event {
        JobSubmitted { .. } => job_submitted(conn, ctx, event).await?,
        JobClaimed {
            job_id,
            node_id,
            operator,
        } => {
            let q = sqlx::query(
                "UPDATE jobs SET status = 'claimed', node_id = $2, operator = $3, updated_height = $4
                 WHERE job_id = $1",
            )
            .bind(to_i64(job_id.0, "job_id")?)
            .bind(to_i64(node_id.0, "node_id")?)
            .bind(operator.as_str())
            .bind(ctx.height);
            found(
                q.execute(&mut *conn).await?.rows_affected(),
                "job",
                job_id.0,
            )
        }
        JobSettled {
            job_id,
            node_id,
            usage,
            output,
            output_hash,
            settlement,
            weights_hash,
            ..
        } => {
            let settled = sqlx::query(
                "UPDATE jobs SET status = 'settled', node_id = $2, input_tokens = $3,
                     output_tokens = $4, output = $5, output_hash = $6, cost = $7,
                     provider_amount = $8, royalty = $9, protocol_fee = $10, refund = $11,
                     updated_height = $12, weights_hash = $13
                 WHERE job_id = $1 RETURNING user_id, model_id, asset",
            )
            .bind(to_i64(job_id.0, "job_id")?)
            .bind(to_i64(node_id.0, "node_id")?)
            .bind(to_i64(usage.input_tokens.0, "input_tokens")?)
            .bind(to_i64(usage.output_tokens.0, "output_tokens")?)
            .bind(json_text(output, "output")?)
            .bind(output_hash.to_string())
            .bind(amount::pad(settlement.cost.0))
            .bind(amount::pad(settlement.provider.0))
            .bind(amount::pad(settlement.royalty.0))
            .bind(amount::pad(settlement.protocol_fee.0))
            .bind(amount::pad(settlement.refund.0))
            .bind(ctx.height)
            .bind(weights_hash.map(|w| w.to_string()))
            .fetch_optional(&mut *conn)
            .await?;
            let Some(job) = settled.map(|r| job_parties(&r)).transpose()? else {
                return Ok(missing("job", job_id.0));
            };
            let about = PayoutRef {
                job_id: Some(to_i64(job_id.0, "job_id")?),
                node_id: Some(to_i64(node_id.0, "node_id")?),
                ..Default::default()
            };
            let parties = Parties {
                payer: &job.user,
                provider: None,
                model_id: &job.model_id,
                asset: &job.asset,
            };
            settle(conn, ctx, contracts, *node_id, &parties, settlement, about).await?;
            bump_node(conn, *node_id, "jobs_settled").await?;
            Applied::Stored
        }
        JobCancelled {
            job_id,
            reason,
            refund,
            slashed,
        } => {
            let cancelled = sqlx::query(
                "UPDATE jobs SET status = 'cancelled', cancel_reason = $2, refund = $3,
                     slashed = $4, updated_height = $5
                 WHERE job_id = $1 RETURNING user_id, model_id, asset",
            )
            .bind(to_i64(job_id.0, "job_id")?)
            .bind(super::registry::label(reason))
            .bind(amount::pad(refund.0))
            .bind(slashed.map(|s| amount::pad(s.0)))
            .bind(ctx.height)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(job) = cancelled.map(|r| job_parties(&r)).transpose()? else {
                return Ok(missing("job", job_id.0));
            };
            let about = PayoutRef {
                job_id: Some(to_i64(job_id.0, "job_id")?),
                ..Default::default()
            };
            ledger::payout(
                conn,
                ctx,
                Leg {
                    account: &job.user,
                    kind: "refund",
                    asset: &job.asset,
                    value: refund.0,
                },
                about,
            )
            .await?;
            Applied::Stored
        }
        RequestCreated {
            request_id,
            caller,
            model_id,
            deposit,
            input,
        } => {
            sqlx::query(
                "INSERT INTO requests (request_id, caller, model_id, deposit, input, status,
                     created_seq, created_height, created_ns, updated_height)
                 VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $7)",
            )
            .bind(to_i64(request_id.0, "request_id")?)
            .bind(caller.as_str())
            .bind(model_id.as_str())
            .bind(amount::pad(deposit.0))
            .bind(json_text(input, "input")?)
            .bind(ctx.seq)
            .bind(ctx.height)
            .bind(ctx.timestamp_ns)
            .execute(&mut *conn)
            .await?;
            Applied::Stored
        }
        RequestAnswered {
            request_id,
            node_id,
            usage,
            settlement,
        } => {
            let Some((caller, model_id)) = load_request(conn, *request_id).await? else {
                return Ok(missing("request", request_id.0));
            };
            request_answered(conn, ctx, *request_id, *node_id, usage, settlement).await?;
            let about = PayoutRef {
                request_id: Some(to_i64(request_id.0, "request_id")?),
                node_id: Some(to_i64(node_id.0, "node_id")?),
                ..Default::default()
            };
            let parties = Parties {
                payer: &caller,
                provider: None,
                model_id: &model_id,
                asset: "near",
            };
            settle(conn, ctx, contracts, *node_id, &parties, settlement, about).await?;
            bump_node(conn, *node_id, "requests_answered").await?;
            Applied::Stored
        }
        RequestTimedOut { request_id, refund } => {
            let Some((caller, _)) = load_request(conn, *request_id).await? else {
                return Ok(missing("request", request_id.0));
            };
            sqlx::query(
                "UPDATE requests SET status = 'timed_out', refund = $2, updated_height = $3
                 WHERE request_id = $1",
            )
            .bind(to_i64(request_id.0, "request_id")?)
            .bind(amount::pad(refund.0))
            .bind(ctx.height)
            .execute(&mut *conn)
            .await?;
            let about = PayoutRef {
                request_id: Some(to_i64(request_id.0, "request_id")?),
                ..Default::default()
            };
            ledger::payout(
                conn,
                ctx,
                Leg {
                    account: &caller,
                    kind: "refund",
                    asset: "near",
                    value: refund.0,
                },
                about,
            )
            .await?;
            Applied::Stored
        }
        CreditAdded {
            account,
            asset,
            amount: v,
        } => {
            let keys = [account.as_str(), &asset_key(asset)];
            ledger::adjust(conn, ctx, CREDIT, &keys, Delta::Add(v.0)).await?;
            Applied::Stored
        }
        CreditWithdrawn {
            account,
            asset,
            amount: v,
        } => {
            let keys = [account.as_str(), &asset_key(asset)];
            ledger::adjust(conn, ctx, CREDIT, &keys, Delta::Sub(v.0)).await?;
            Applied::Stored
        }
        PolicyUpdated { .. } => Applied::Stored,
        ChannelOpened { .. }
        | ChannelToppedUp { .. }
        | ChannelSettled { .. }
        | ChannelCloseStarted { .. }
        | ChannelClosed { .. } => super::channels::apply(conn, ctx, contracts, event).await?,
    };
    if outcome == Applied::Stored
        && let Some((entity, entity_id)) = timeline_entity(event)?
    {
        ledger::timeline(ctx, entity, entity_id, event);
    }
    Ok(outcome)
}

/// The job, request or payment channel an event belongs to.
fn timeline_entity(event: &MarketplaceEvent) -> Result<Option<(&'static str, i64)>, BadValue> {
    use MarketplaceEvent::*;
    Ok(match event {
        JobSubmitted { job_id, .. }
        | JobClaimed { job_id, .. }
        | JobSettled { job_id, .. }
        | JobCancelled { job_id, .. } => Some(("job", to_i64(job_id.0, "job_id")?)),
        RequestCreated { request_id, .. }
        | RequestAnswered { request_id, .. }
        | RequestTimedOut { request_id, .. } => {
            Some(("request", to_i64(request_id.0, "request_id")?))
        }
        ChannelOpened { channel_id, .. }
        | ChannelToppedUp { channel_id, .. }
        | ChannelSettled { channel_id, .. }
        | ChannelCloseStarted { channel_id, .. }
        | ChannelClosed { channel_id, .. } => {
            Some(("channel", to_i64(channel_id.0, "channel_id")?))
        }
        CreditAdded { .. } | CreditWithdrawn { .. } | PolicyUpdated { .. } => None,
    })
}

async fn job_submitted(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    event: &MarketplaceEvent,
) -> Result<Applied, ApplyError> {
    let MarketplaceEvent::JobSubmitted {
        job_id,
        user,
        model_id,
        asset,
        price_cap,
        claim_deadline_ns,
        deadline_ns,
        target,
        input,
        user_key,
    } = event
    else {
        return Ok(Applied::Orphan("not a job submission".into()));
    };
    let (target_node, region, gpu, max_price) = match target {
        JobTarget::Node { node_id } => (Some(to_i64(node_id.0, "node_id")?), None, None, None),
        JobTarget::Any {
            region,
            gpu_model,
            max_price_per_million,
        } => (
            None,
            region.clone(),
            gpu_model.clone(),
            max_price_per_million.map(|p| amount::pad(p.0)),
        ),
    };
    sqlx::query(
        "INSERT INTO jobs (job_id, user_id, model_id, asset, price_cap, claim_deadline_ns,
             deadline_ns, target_node, target_region, target_gpu, target_max_price, input,
             user_key, status, created_seq, created_height, created_ns, updated_height)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'open', $14, $15, $16, $15)",
    )
    .bind(to_i64(job_id.0, "job_id")?)
    .bind(user.as_str())
    .bind(model_id.as_str())
    .bind(asset_key(asset))
    .bind(amount::pad(price_cap.0))
    .bind(to_i64(claim_deadline_ns.0, "claim_deadline_ns")?)
    .bind(to_i64(deadline_ns.0, "deadline_ns")?)
    .bind(target_node)
    .bind(region)
    .bind(gpu)
    .bind(max_price)
    .bind(json_text(input, "input")?)
    .bind(user_key)
    .bind(ctx.seq)
    .bind(ctx.height)
    .bind(ctx.timestamp_ns)
    .execute(conn)
    .await?;
    Ok(Applied::Stored)
}

async fn request_answered(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    request_id: RequestId,
    node_id: NodeId,
    usage: &Usage,
    settlement: &Settlement,
) -> Result<(), ApplyError> {
    sqlx::query(
        "UPDATE requests SET status = 'answered', node_id = $2, input_tokens = $3,
             output_tokens = $4, cost = $5, provider_amount = $6, royalty = $7,
             protocol_fee = $8, refund = $9, updated_height = $10
         WHERE request_id = $1",
    )
    .bind(to_i64(request_id.0, "request_id")?)
    .bind(to_i64(node_id.0, "node_id")?)
    .bind(to_i64(usage.input_tokens.0, "input_tokens")?)
    .bind(to_i64(usage.output_tokens.0, "output_tokens")?)
    .bind(amount::pad(settlement.cost.0))
    .bind(amount::pad(settlement.provider.0))
    .bind(amount::pad(settlement.royalty.0))
    .bind(amount::pad(settlement.protocol_fee.0))
    .bind(amount::pad(settlement.refund.0))
    .bind(ctx.height)
    .execute(conn)
    .await?;
    Ok(())
}

/// Who a settlement pays.
pub(super) struct Parties<'a> {
    pub payer: &'a str,
    /// The provider's account when the event's subject names it (a channel's operator);
    /// otherwise the node's operator as indexed.
    pub provider: Option<&'a str>,
    pub model_id: &'a str,
    pub asset: &'a str,
}

/// Records the four legs of a settlement and the running totals.
pub(super) async fn settle(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    contracts: &Contracts,
    node_id: NodeId,
    parties: &Parties<'_>,
    s: &Settlement,
    about: PayoutRef,
) -> Result<(), ApplyError> {
    // The provider is the node's operator, the royalty goes to the model's token.
    let row = sqlx::query(
        "SELECT (SELECT operator FROM nodes WHERE node_id = $1) AS operator,
                (SELECT token FROM models WHERE model_id = $2) AS token",
    )
    .bind(to_i64(node_id.0, "node_id")?)
    .bind(parties.model_id)
    .fetch_one(&mut *conn)
    .await?;
    let provider = match parties.provider {
        Some(p) => p.to_owned(),
        None => row
            .try_get::<Option<String>, _>("operator")?
            .unwrap_or_else(|| format!("node:{node_id}")),
    };
    let royalty_to = row
        .try_get::<Option<String>, _>("token")?
        .unwrap_or_else(|| format!("model:{}", parties.model_id));
    let asset = parties.asset;
    let legs = [
        Leg {
            account: &provider,
            kind: "provider",
            asset,
            value: s.provider.0,
        },
        Leg {
            account: &royalty_to,
            kind: "royalty",
            asset,
            value: s.royalty.0,
        },
        Leg {
            account: contracts.marketplace.as_str(),
            kind: "protocol_fee",
            asset,
            value: s.protocol_fee.0,
        },
        Leg {
            account: parties.payer,
            kind: "refund",
            asset,
            value: s.refund.0,
        },
    ];
    ledger::payouts(conn, ctx, &legs, about).await?;
    for (name, v) in [
        ("volume", s.cost.0),
        ("royalties", s.royalty.0),
        ("fees", s.protocol_fee.0),
    ] {
        let key = format!("{name}:{asset}");
        ledger::adjust(conn, ctx, TOTAL, &[&key], Delta::Add(v)).await?;
    }
    Ok(())
}

async fn bump_node(
    conn: &mut AnyConnection,
    node_id: NodeId,
    column: &str,
) -> Result<(), ApplyError> {
    let sql = format!("UPDATE nodes SET {column} = {column} + 1 WHERE node_id = $1");
    sqlx::query(&sql)
        .bind(to_i64(node_id.0, "node_id")?)
        .execute(conn)
        .await?;
    Ok(())
}

struct JobParties {
    user: String,
    model_id: String,
    asset: String,
}

/// The parties of a job, from a row with `user_id, model_id, asset`.
fn job_parties(r: &sqlx::any::AnyRow) -> Result<JobParties, sqlx::Error> {
    Ok(JobParties {
        user: r.try_get("user_id")?,
        model_id: r.try_get("model_id")?,
        asset: r.try_get("asset")?,
    })
}

async fn load_request(
    conn: &mut AnyConnection,
    request_id: RequestId,
) -> Result<Option<(String, String)>, sqlx::Error> {
    let row = sqlx::query("SELECT caller, model_id FROM requests WHERE request_id = $1")
        .bind(to_i64(request_id.0, "request_id").map_err(BadValue::into_sqlx)?)
        .fetch_optional(conn)
        .await?;
    row.map(|r| Ok((r.try_get("caller")?, r.try_get("model_id")?)))
        .transpose()
}

fn found(rows: u64, what: &str, id: u64) -> Applied {
    if rows == 0 {
        missing(what, id)
    } else {
        Applied::Stored
    }
}

pub(super) fn missing(what: &str, id: u64) -> Applied {
    Applied::Orphan(format!(
        "{what} {id} was never created in the indexed range"
    ))
}
