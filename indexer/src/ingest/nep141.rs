//! NEP-141 events of model tokens and allow-listed payment tokens: holder balances.

use super::ledger::{self, BALANCE, Delta, SUPPLY};
use super::{Applied, ApplyError, EventCtx};
use enclave_cloud_common::events::Nep141Event;
use sqlx::AnyConnection;

/// `model_id` is set when the token is a model's revenue token (its supply is tracked).
pub async fn apply(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    model_id: Option<&String>,
    event: &Nep141Event,
) -> Result<Applied, ApplyError> {
    let token = ctx.executor;
    match event {
        Nep141Event::FtMint(mints) => {
            for m in mints {
                let keys = [token, m.owner_id.as_str()];
                ledger::adjust(conn, ctx, BALANCE, &keys, Delta::Add(m.amount.0)).await?;
                if let Some(model) = model_id {
                    ledger::adjust(conn, ctx, SUPPLY, &[model], Delta::Add(m.amount.0)).await?;
                }
            }
        }
        Nep141Event::FtBurn(burns) => {
            for b in burns {
                let keys = [token, b.owner_id.as_str()];
                ledger::adjust(conn, ctx, BALANCE, &keys, Delta::Sub(b.amount.0)).await?;
                if let Some(model) = model_id {
                    ledger::adjust(conn, ctx, SUPPLY, &[model], Delta::Sub(b.amount.0)).await?;
                }
            }
        }
        Nep141Event::FtTransfer(transfers) => {
            for t in transfers {
                let from = [token, t.old_owner_id.as_str()];
                ledger::adjust(conn, ctx, BALANCE, &from, Delta::Sub(t.amount.0)).await?;
                let to = [token, t.new_owner_id.as_str()];
                ledger::adjust(conn, ctx, BALANCE, &to, Delta::Add(t.amount.0)).await?;
            }
        }
    }
    Ok(Applied::Stored)
}
