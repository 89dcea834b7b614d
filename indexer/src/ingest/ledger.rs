//! Writes shared by the event handlers: running amounts, payouts and timelines.

use super::EventCtx;
use crate::db::amount;
use enclave_cloud_common::Asset;
use sqlx::AnyConnection;
use std::collections::HashMap;
use std::sync::Mutex;

/// A text-keyed table column holding a running u128 amount.
#[derive(Debug, Clone, Copy)]
pub struct Ledger {
    table: &'static str,
    keys: &'static [&'static str],
    column: &'static str,
}

pub const BALANCE: Ledger = Ledger {
    table: "balances",
    keys: &["token", "account"],
    column: "balance",
};
pub const CREDIT: Ledger = Ledger {
    table: "credits",
    keys: &["account", "asset"],
    column: "amount",
};
pub const TOTAL: Ledger = Ledger {
    table: "totals",
    keys: &["name"],
    column: "value",
};
pub const STAKED: Ledger = Ledger {
    table: "operators",
    keys: &["operator"],
    column: "staked",
};
pub const UNSTAKING: Ledger = Ledger {
    table: "operators",
    keys: &["operator"],
    column: "unstaking",
};
pub const SLASHED: Ledger = Ledger {
    table: "operators",
    keys: &["operator"],
    column: "slashed",
};
pub const RAISED: Ledger = Ledger {
    table: "models",
    keys: &["model_id"],
    column: "crowdfund_raised",
};
pub const RELEASED: Ledger = Ledger {
    table: "models",
    keys: &["model_id"],
    column: "released",
};
pub const SUPPLY: Ledger = Ledger {
    table: "models",
    keys: &["model_id"],
    column: "total_supply",
};

/// A change to a running amount.
#[derive(Debug, Clone, Copy)]
pub enum Delta {
    Add(u128),
    Sub(u128),
    Set(u128),
}

/// Running amounts touched by the current block, written once at its end: a block that
/// settles 50 jobs updates the protocol-fee total once, not 50 times.
#[derive(Debug, Default)]
pub struct Pending {
    entries: HashMap<(&'static str, &'static str, Vec<String>), (Ledger, u128)>,
}

/// Applies `delta` to the amount at `keys` (missing rows start at zero) and returns the
/// new amount. Going below zero means the indexer missed an event (e.g. it started after
/// the tokens were minted): the amount stops at zero and a warning says where.
/// The new value is kept in the block's [`Pending`] set until [`flush`].
pub async fn adjust(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    ledger: Ledger,
    keys: &[&str],
    delta: Delta,
) -> Result<u128, sqlx::Error> {
    let Ledger {
        table,
        keys: key_cols,
        column,
    } = ledger;
    let id = (
        table,
        column,
        keys.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>(),
    );
    let cached = lock(ctx.pending).entries.get(&id).map(|(_, v)| *v);
    let current = match cached {
        Some(v) => v,
        None => {
            let filter: Vec<String> = key_cols
                .iter()
                .enumerate()
                .map(|(i, k)| format!("{k} = ${}", i + 1))
                .collect();
            let select = format!(
                "SELECT {column} FROM {table} WHERE {}",
                filter.join(" AND ")
            );
            let mut q = sqlx::query_scalar::<_, String>(&select);
            for k in keys {
                q = q.bind(*k);
            }
            q.fetch_optional(&mut *conn)
                .await?
                .map(|s| amount::parse(&s))
                .unwrap_or(0)
        }
    };
    let next = match delta {
        Delta::Add(v) => current.checked_add(v).unwrap_or_else(|| {
            tracing::warn!(table, column, ?keys, "amount overflows u128; capped");
            u128::MAX
        }),
        Delta::Sub(v) => current.checked_sub(v).unwrap_or_else(|| {
            tracing::warn!(
                table,
                column,
                ?keys,
                current,
                minus = v,
                "amount would go negative; set to 0"
            );
            0
        }),
        Delta::Set(v) => v,
    };
    lock(ctx.pending).entries.insert(id, (ledger, next));
    Ok(next)
}

/// Writes every amount the block changed. Called once per block, inside its transaction.
pub async fn flush(conn: &mut AnyConnection, pending: Pending) -> Result<(), sqlx::Error> {
    for ((_, _, keys), (ledger, value)) in pending.entries {
        let Ledger {
            table,
            keys: key_cols,
            column,
        } = ledger;
        let cols = key_cols.join(", ");
        let placeholders: Vec<String> = (1..=key_cols.len() + 1).map(|i| format!("${i}")).collect();
        let upsert = format!(
            "INSERT INTO {table} ({cols}, {column}) VALUES ({}) \
             ON CONFLICT ({cols}) DO UPDATE SET {column} = excluded.{column}",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&upsert);
        for k in keys {
            q = q.bind(k);
        }
        q.bind(amount::pad(value)).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The lock is never held across an await, so it cannot be poisoned by a cancelled
/// future; a poisoned lock (a panic elsewhere) still holds consistent data.
fn lock(m: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `near` or `ft:<token>`: one text key per asset.
pub fn asset_key(asset: &Asset) -> String {
    match asset {
        Asset::Near => "near".to_owned(),
        Asset::Ft { token } => format!("ft:{token}"),
    }
}

/// What a payout row is about.
#[derive(Debug, Clone, Copy, Default)]
pub struct PayoutRef {
    pub job_id: Option<i64>,
    pub request_id: Option<i64>,
    pub node_id: Option<i64>,
}

/// One movement of money to an account.
#[derive(Debug, Clone, Copy)]
pub struct Leg<'a> {
    pub account: &'a str,
    /// `provider`, `royalty`, `protocol_fee`, `refund`, `slash`, ...
    pub kind: &'a str,
    pub asset: &'a str,
    pub value: u128,
}

/// Records one payout.
pub async fn payout(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    leg: Leg<'_>,
    about: PayoutRef,
) -> Result<(), sqlx::Error> {
    payouts(conn, ctx, &[leg], about).await
}

/// Records the payouts of one event in one statement; a leg's position is its `idx`.
/// Zero legs are not stored.
pub async fn payouts(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    legs: &[Leg<'_>],
    about: PayoutRef,
) -> Result<(), sqlx::Error> {
    let legs: Vec<(usize, &Leg<'_>)> = legs
        .iter()
        .enumerate()
        .filter(|(_, l)| l.value > 0)
        .collect();
    if legs.is_empty() {
        return Ok(());
    }
    const COLS: usize = 11;
    let rows: Vec<String> = (0..legs.len())
        .map(|r| {
            let p: Vec<String> = (1..=COLS).map(|c| format!("${}", r * COLS + c)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO payouts (seq, idx, account, kind, asset, amount, job_id, request_id, node_id,
             block_height, timestamp_ns) VALUES {}",
        rows.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for (idx, leg) in &legs {
        q = q
            .bind(ctx.seq)
            .bind(*idx as i64)
            .bind(leg.account)
            .bind(leg.kind)
            .bind(leg.asset)
            .bind(amount::pad(leg.value))
            .bind(about.job_id)
            .bind(about.request_id)
            .bind(about.node_id)
            .bind(ctx.height)
            .bind(ctx.timestamp_ns);
    }
    q.execute(&mut *conn).await?;
    // Running sum per account, kind and asset, so an account page is one range read.
    for (_, leg) in legs {
        let key = earned_key(leg.account, leg.kind, leg.asset);
        adjust(conn, ctx, TOTAL, &[&key], Delta::Add(leg.value)).await?;
    }
    Ok(())
}

/// The `totals` key of what `account` received as `kind` in `asset`. Keys of one account
/// share the prefix `earned:<account>:`, and `;` sorts right after `:`, so
/// `name >= 'earned:<a>:' AND name < 'earned:<a>;'` selects exactly that account.
pub fn earned_key(account: &str, kind: &str, asset: &str) -> String {
    format!("earned:{account}:{kind}:{asset}")
}

/// The `totals` key of a model's revenue of `kind` (`deposit`/`claim`) in `asset`.
pub fn revenue_key(model_id: &str, kind: &str, asset: &str) -> String {
    format!("revenue:{model_id}:{kind}:{asset}")
}

/// Appends an event to the timeline of a job or a request. `event` is the NEP-297 enum
/// value; its `event` name and `data` are stored as written on chain.
pub async fn timeline<E: serde::Serialize>(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    entity: &str,
    entity_id: i64,
    event: &E,
) -> Result<(), sqlx::Error> {
    let (name, data) = name_and_data(event);
    sqlx::query(
        "INSERT INTO timeline (entity, entity_id, seq, event, block_height, timestamp_ns,
             receipt_id, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(entity)
    .bind(entity_id)
    .bind(ctx.seq)
    .bind(name)
    .bind(ctx.height)
    .bind(ctx.timestamp_ns)
    .bind(ctx.receipt_id)
    .bind(data)
    .execute(conn)
    .await?;
    Ok(())
}

/// The NEP-297 `event` name and `data` JSON of an event enum value.
pub fn name_and_data<E: serde::Serialize>(event: &E) -> (String, String) {
    let value = serde_json::to_value(event).unwrap_or_default();
    let name = value
        .get("event")
        .and_then(|v| v.as_str())
        .unwrap_or("unknown")
        .to_owned();
    let data = value.get("data").cloned().unwrap_or_default().to_string();
    (name, data)
}
