//! Registry events: operators' stake and the node table.

use super::ledger::{self, Delta, Leg, PayoutRef, SLASHED, STAKED, UNSTAKING};
use super::{Applied, ApplyError, EventCtx, json_text};
use crate::db::BadValue;
use crate::db::amount;
use crate::db::checkpoint::{to_i64, to_u64};
use enclave_cloud_common::events::RegistryEvent;
use enclave_cloud_common::{ModelPrice, NodeId, NodeStatus};
use sqlx::AnyConnection;

/// The JSON string form of a unit enum (`"active"`, `"UpToDate"`, ...).
pub fn label<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn id(node_id: NodeId) -> Result<i64, BadValue> {
    to_i64(node_id.0, "node_id")
}

pub async fn apply(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    event: &RegistryEvent,
) -> Result<Applied, ApplyError> {
    use RegistryEvent::*;
    match event {
        StakeDeposited {
            operator, total, ..
        } => {
            ledger::adjust(
                conn,
                ctx,
                STAKED,
                &[operator.as_str()],
                Delta::Set(total.as_yoctonear()),
            )
            .await?;
        }
        UnstakeRequested {
            operator, amount, ..
        } => {
            let v = amount.as_yoctonear();
            ledger::adjust(conn, ctx, STAKED, &[operator.as_str()], Delta::Sub(v)).await?;
            ledger::adjust(conn, ctx, UNSTAKING, &[operator.as_str()], Delta::Add(v)).await?;
        }
        StakeWithdrawn {
            operator, amount, ..
        } => {
            let v = amount.as_yoctonear();
            ledger::adjust(conn, ctx, UNSTAKING, &[operator.as_str()], Delta::Sub(v)).await?;
        }
        NodeRegistered {
            node_id,
            operator,
            signer_key,
            encryption_key,
            kind,
            tcb_status,
            measurements,
            expires_at_ns,
        } => {
            sqlx::query(
                "INSERT INTO nodes (node_id, operator, status, kind, signer_key, encryption_key,
                     tcb_status, measurements, capacity, registered_height, registered_at_ns,
                     expires_at_ns, last_heartbeat_ns, jobs_settled, requests_answered)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, $11, $10, 0, 0)
                 ON CONFLICT (node_id) DO UPDATE SET operator = excluded.operator,
                     status = excluded.status, kind = excluded.kind,
                     signer_key = excluded.signer_key, encryption_key = excluded.encryption_key,
                     tcb_status = excluded.tcb_status, measurements = excluded.measurements,
                     expires_at_ns = excluded.expires_at_ns",
            )
            .bind(id(*node_id)?)
            .bind(operator.as_str())
            .bind(label(&NodeStatus::Active))
            .bind(label(kind))
            .bind(String::from(signer_key))
            .bind(encryption_key)
            .bind(label(tcb_status))
            .bind(json_text(measurements, "measurements")?)
            .bind(ctx.height)
            .bind(ctx.timestamp_ns)
            .bind(to_i64(expires_at_ns.0, "expires_at_ns")?)
            .execute(&mut *conn)
            .await?;
            status_history(conn, ctx, *node_id, NodeStatus::Active).await?;
        }
        NodeReattested {
            node_id,
            tcb_status,
            expires_at_ns,
        } => {
            let q = sqlx::query(
                "UPDATE nodes SET tcb_status = $2, expires_at_ns = $3 WHERE node_id = $1",
            )
            .bind(id(*node_id)?)
            .bind(label(tcb_status))
            .bind(to_i64(expires_at_ns.0, "expires_at_ns")?);
            return node_updated(q.execute(conn).await?.rows_affected(), *node_id);
        }
        GpuAdded { node_id, gpu } => {
            if !node_exists(conn, *node_id).await? {
                return Ok(unknown_node(*node_id));
            }
            sqlx::query(
                "INSERT INTO node_gpus (node_id, device_id, model, driver_version, vbios_version)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (node_id, device_id) DO UPDATE SET model = excluded.model,
                     driver_version = excluded.driver_version, vbios_version = excluded.vbios_version",
            )
            .bind(id(*node_id)?)
            .bind(gpu.device_id.to_string())
            .bind(&gpu.model)
            .bind(gpu.driver_version.as_deref())
            .bind(gpu.vbios_version.as_deref())
            .execute(conn)
            .await?;
        }
        NodeUpdated {
            node_id,
            endpoint,
            region,
            prices,
            capacity,
        } => {
            return update_commercials(conn, *node_id, endpoint, region, prices, *capacity).await;
        }
        NodeHeartbeat { node_id, at_ns } => {
            let q = sqlx::query("UPDATE nodes SET last_heartbeat_ns = $2 WHERE node_id = $1")
                .bind(id(*node_id)?)
                .bind(to_i64(at_ns.0, "at_ns")?);
            return node_updated(q.execute(conn).await?.rows_affected(), *node_id);
        }
        NodeStatusChanged { node_id, status } => {
            let q = sqlx::query("UPDATE nodes SET status = $2 WHERE node_id = $1")
                .bind(id(*node_id)?)
                .bind(label(status));
            if q.execute(&mut *conn).await?.rows_affected() == 0 {
                return Ok(unknown_node(*node_id));
            }
            status_history(conn, ctx, *node_id, *status).await?;
        }
        NodeSlashed {
            node_id,
            operator,
            amount: slashed,
            beneficiary,
            stake,
            under_staked,
        } => {
            let v = slashed.as_yoctonear();
            let who = &[operator.as_str()];
            ledger::adjust(conn, ctx, SLASHED, who, Delta::Add(v)).await?;
            match stake {
                // The registry takes bonded stake first; what the bonded stake did not cover
                // came from unbonding stake.
                Some(stake) => {
                    let stake = stake.as_yoctonear();
                    let bonded = ledger::adjust(conn, ctx, STAKED, who, Delta::Add(0)).await?;
                    let from_unbonding = v.saturating_sub(bonded.saturating_sub(stake));
                    ledger::adjust(conn, ctx, STAKED, who, Delta::Set(stake)).await?;
                    if from_unbonding > 0 {
                        let sub = Delta::Sub(from_unbonding);
                        ledger::adjust(conn, ctx, UNSTAKING, who, sub).await?;
                    }
                }
                // Version 1.0.0 events.
                None => {
                    ledger::adjust(conn, ctx, STAKED, who, Delta::Sub(v)).await?;
                }
            }
            if *under_staked {
                operator_under_staked(conn, ctx, operator.as_str()).await?;
            }
            let about = PayoutRef {
                node_id: Some(id(*node_id)?),
                ..Default::default()
            };
            ledger::payout(
                conn,
                ctx,
                Leg {
                    account: beneficiary.as_str(),
                    kind: "slash",
                    asset: "near",
                    value: v,
                },
                about,
            )
            .await?;
        }
        // Policy and certificate-cache changes have no table; they are counted as applied.
        PolicyUpdated { .. } | CertificateCached { .. } => {}
    }
    Ok(Applied::Stored)
}

async fn update_commercials(
    conn: &mut AnyConnection,
    node_id: NodeId,
    endpoint: &Option<String>,
    region: &Option<String>,
    prices: &[ModelPrice],
    capacity: u32,
) -> Result<Applied, ApplyError> {
    let min_price = prices
        .iter()
        .map(|p| p.output_per_million.0)
        .min()
        .map_or_else(|| amount::UNPRICED.to_owned(), amount::pad);
    let updated = sqlx::query(
        "UPDATE nodes SET endpoint = $2, region = $3, capacity = $4, min_output_price = $5
         WHERE node_id = $1",
    )
    .bind(id(node_id)?)
    .bind(endpoint.as_deref())
    .bind(region.as_deref())
    .bind(i64::from(capacity))
    .bind(min_price)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(unknown_node(node_id));
    }
    // The event carries the full price list: replace, don't merge.
    sqlx::query("DELETE FROM node_prices WHERE node_id = $1")
        .bind(id(node_id)?)
        .execute(&mut *conn)
        .await?;
    for p in prices {
        sqlx::query(
            "INSERT INTO node_prices (node_id, model_id, input_per_million, output_per_million)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (node_id, model_id) DO UPDATE SET
                 input_per_million = excluded.input_per_million,
                 output_per_million = excluded.output_per_million",
        )
        .bind(id(node_id)?)
        .bind(p.model_id.as_str())
        .bind(amount::pad(p.input_per_million.0))
        .bind(amount::pad(p.output_per_million.0))
        .execute(&mut *conn)
        .await?;
    }
    Ok(Applied::Stored)
}

/// The registry's status rule: a node is active only while its operator's free stake covers
/// the operator's nodes. A slash that breaks this announces it once (`under_staked`) instead
/// of a `NodeStatusChanged` per node, so every active node of the operator turns inactive
/// here (expired and deregistered ones stay as they are); a deposit that restores the stake
/// announces each revived node.
async fn operator_under_staked(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    operator: &str,
) -> Result<(), ApplyError> {
    let active = label(&NodeStatus::Active);
    let nodes: Vec<i64> = sqlx::query_scalar(
        "SELECT node_id FROM nodes WHERE operator = $1 AND status = $2 ORDER BY node_id",
    )
    .bind(operator)
    .bind(&active)
    .fetch_all(&mut *conn)
    .await?;
    if nodes.is_empty() {
        return Ok(());
    }
    sqlx::query("UPDATE nodes SET status = $3 WHERE operator = $1 AND status = $2")
        .bind(operator)
        .bind(&active)
        .bind(label(&NodeStatus::Inactive))
        .execute(&mut *conn)
        .await?;
    for node_id in nodes {
        let node_id = NodeId(to_u64(node_id, "node_id")?);
        status_history(conn, ctx, node_id, NodeStatus::Inactive).await?;
    }
    Ok(())
}

async fn status_history(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    node_id: NodeId,
    status: NodeStatus,
) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO node_status_history (node_id, seq, status, block_height, timestamp_ns)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id(node_id)?)
    .bind(ctx.seq)
    .bind(label(&status))
    .bind(ctx.height)
    .bind(ctx.timestamp_ns)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn node_exists(conn: &mut AnyConnection, node_id: NodeId) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar("SELECT node_id FROM nodes WHERE node_id = $1")
        .bind(id(node_id).map_err(BadValue::into_sqlx)?)
        .fetch_optional(conn)
        .await?;
    Ok(found.is_some())
}

fn unknown_node(node_id: NodeId) -> Applied {
    Applied::Orphan(format!(
        "node {node_id} was never registered in the indexed range"
    ))
}

fn node_updated(rows: u64, node_id: NodeId) -> Result<Applied, ApplyError> {
    Ok(if rows == 0 {
        unknown_node(node_id)
    } else {
        Applied::Stored
    })
}
