//! Governance events (`ecloud_governance`): every contract we follow (registry,
//! marketplace, model factory, each model token) announces the changes of its own timelock.
//! Ids are per contract, so the emitting account (the receipt's executor) is part of the key.

use super::{Applied, ApplyError, EventCtx, json_text};
use crate::db::BadValue;
use crate::db::checkpoint::to_i64;
use enclave_cloud_common::events::GovernanceEvent;
use sqlx::AnyConnection;

/// The statuses of a change, as stored and served.
pub const PENDING: &str = "pending";
pub const APPLIED: &str = "applied";
pub const CANCELLED: &str = "cancelled";

fn id(change_id: u64) -> Result<i64, BadValue> {
    to_i64(change_id, "change_id")
}

pub async fn apply(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    event: &GovernanceEvent,
) -> Result<Applied, ApplyError> {
    let contract = ctx.executor;
    match event {
        GovernanceEvent::ChangeProposed {
            id: change_id,
            change,
            proposed_by,
            applies_at_ns,
        } => {
            // A contract never reuses an id; the same id again can only come from a contract
            // deployed afresh on the same account, whose new proposal is what now stands.
            sqlx::query(
                "INSERT INTO governance_changes (contract, change_id, change, proposed_by,
                     applies_at_ns, proposed_seq, proposed_height, proposed_at_ns,
                     proposed_receipt, status, resolved_height, resolved_at_ns)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL)
                 ON CONFLICT (contract, change_id) DO UPDATE SET change = excluded.change,
                     proposed_by = excluded.proposed_by, applies_at_ns = excluded.applies_at_ns,
                     proposed_seq = excluded.proposed_seq,
                     proposed_height = excluded.proposed_height,
                     proposed_at_ns = excluded.proposed_at_ns,
                     proposed_receipt = excluded.proposed_receipt, status = excluded.status,
                     resolved_height = NULL, resolved_at_ns = NULL",
            )
            .bind(contract)
            .bind(id(change_id.0)?)
            .bind(json_text(change, "change")?)
            .bind(proposed_by.as_str())
            .bind(to_i64(applies_at_ns.0, "applies_at_ns")?)
            .bind(ctx.seq)
            .bind(ctx.height)
            .bind(ctx.timestamp_ns)
            .bind(ctx.receipt_id)
            .bind(PENDING)
            .execute(conn)
            .await?;
            Ok(Applied::Stored)
        }
        GovernanceEvent::ChangeApplied { id: change_id, .. } => {
            resolve(conn, ctx, change_id.0, APPLIED).await
        }
        GovernanceEvent::ChangeCancelled { id: change_id } => {
            resolve(conn, ctx, change_id.0, CANCELLED).await
        }
    }
}

/// Moves a pending change of the emitting contract to `status`. A change the indexer did not
/// see proposed (before the start height) or that is no longer pending is an orphan.
async fn resolve(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    change_id: u64,
    status: &'static str,
) -> Result<Applied, ApplyError> {
    let updated = sqlx::query(
        "UPDATE governance_changes SET status = $3, resolved_height = $4, resolved_at_ns = $5
         WHERE contract = $1 AND change_id = $2 AND status = $6",
    )
    .bind(ctx.executor)
    .bind(id(change_id)?)
    .bind(status)
    .bind(ctx.height)
    .bind(ctx.timestamp_ns)
    .bind(PENDING)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(if updated == 0 {
        Applied::Orphan(format!(
            "governance change {change_id} of {} {status}, but no such change is pending",
            ctx.executor
        ))
    } else {
        Applied::Stored
    })
}
