//! Writes shared by the event handlers: running amounts, payouts and timelines.

use super::{ApplyError, EventCtx};
use crate::db::{BadValue, amount};
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
    entries: HashMap<EntryKey, (Ledger, u128)>,
    /// Append-only rows (timelines, payouts), inserted many per statement at the end.
    rows: Vec<Row>,
    /// What each change to `entries` replaced, newest last: undoes a skipped event.
    undo: Vec<(EntryKey, Option<(Ledger, u128)>)>,
}

type EntryKey = (&'static str, &'static str, Vec<String>);

/// The state of a block's [`Pending`] set before an event: see [`rollback`].
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    rows: usize,
    undo: usize,
}

/// Where the block's pending changes stand now.
pub fn mark(m: &Mutex<Pending>) -> Mark {
    let p = lock(m);
    Mark {
        rows: p.rows.len(),
        undo: p.undo.len(),
    }
}

/// Forgets every pending change made since `mark` (an event that was skipped).
pub fn rollback(m: &Mutex<Pending>, mark: Mark) {
    let mut p = lock(m);
    p.rows.truncate(mark.rows);
    while p.undo.len() > mark.undo {
        let Some((key, previous)) = p.undo.pop() else {
            break;
        };
        match previous {
            Some(v) => p.entries.insert(key, v),
            None => p.entries.remove(&key),
        };
    }
}

/// A value of a buffered row.
#[derive(Debug, Clone)]
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

/// One row to insert at the end of the block.
#[derive(Debug)]
struct Row {
    table: &'static str,
    columns: &'static [&'static str],
    values: Vec<Value>,
}

/// Rows per INSERT: keeps every statement under SQLite's and PostgreSQL's parameter limits.
const ROWS_PER_INSERT: usize = 200;

/// Applies `delta` to the amount at `keys` (missing rows start at zero) and returns the
/// new amount. Going below zero means the indexer missed an event (e.g. it started after
/// the tokens were minted): the amount stops at zero and a warning says where.
/// A stored amount that does not parse, or a sum beyond u128, is a [`BadValue`]: the event
/// is skipped rather than the amount reset or capped.
/// The new value is kept in the block's [`Pending`] set until [`flush`].
pub async fn adjust(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    ledger: Ledger,
    keys: &[&str],
    delta: Delta,
) -> Result<u128, ApplyError> {
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
            match q.fetch_optional(&mut *conn).await? {
                Some(s) => amount::parse(column, &s)?,
                None => 0,
            }
        }
    };
    let next = match delta {
        Delta::Add(v) => current.checked_add(v).ok_or_else(|| {
            BadValue::new(
                column,
                format!("{current} + {v}"),
                "exceeds the largest amount (u128)",
            )
        })?,
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
    let mut p = lock(ctx.pending);
    let previous = p.entries.insert(id.clone(), (ledger, next));
    p.undo.push((id, previous));
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
    let mut rows = pending.rows;
    rows.sort_by_key(|r| r.table);
    for group in rows.chunk_by(|a, b| a.table == b.table) {
        for chunk in group.chunks(ROWS_PER_INSERT) {
            insert_rows(conn, chunk).await?;
        }
    }
    Ok(())
}

/// One multi-row INSERT of rows of the same table.
async fn insert_rows(conn: &mut AnyConnection, rows: &[Row]) -> Result<(), sqlx::Error> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    let width = first.columns.len();
    let tuples: Vec<String> = (0..rows.len())
        .map(|r| {
            let p: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        first.table,
        first.columns.join(", "),
        tuples.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for row in rows {
        for v in &row.values {
            q = match v {
                Value::Int(i) => q.bind(*i),
                Value::Text(t) => q.bind(t.clone()),
            };
        }
    }
    q.execute(conn).await?;
    Ok(())
}

fn buffer(
    ctx: &EventCtx<'_>,
    table: &'static str,
    columns: &'static [&'static str],
    values: Vec<Value>,
) {
    lock(ctx.pending).rows.push(Row {
        table,
        columns,
        values,
    });
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
    pub channel_id: Option<i64>,
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

const PAYOUT_COLUMNS: &[&str] = &[
    "seq",
    "idx",
    "account",
    "kind",
    "asset",
    "amount",
    "job_id",
    "request_id",
    "node_id",
    "channel_id",
    "block_height",
    "timestamp_ns",
];

const TIMELINE_COLUMNS: &[&str] = &[
    "entity",
    "entity_id",
    "seq",
    "event",
    "block_height",
    "timestamp_ns",
    "receipt_id",
    "data",
];

/// Records one payout.
pub async fn payout(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    leg: Leg<'_>,
    about: PayoutRef,
) -> Result<(), ApplyError> {
    payouts(conn, ctx, &[leg], about).await
}

/// Records the payouts of one event in one statement; a leg's position is its `idx`.
/// Zero legs are not stored.
pub async fn payouts(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    legs: &[Leg<'_>],
    about: PayoutRef,
) -> Result<(), ApplyError> {
    let legs: Vec<(usize, &Leg<'_>)> = legs
        .iter()
        .enumerate()
        .filter(|(_, l)| l.value > 0)
        .collect();
    for (idx, leg) in &legs {
        let values = vec![
            Value::Int(Some(ctx.seq)),
            Value::Int(Some(*idx as i64)),
            Value::Text(Some(leg.account.to_owned())),
            Value::Text(Some(leg.kind.to_owned())),
            Value::Text(Some(leg.asset.to_owned())),
            Value::Text(Some(amount::pad(leg.value))),
            Value::Int(about.job_id),
            Value::Int(about.request_id),
            Value::Int(about.node_id),
            Value::Int(about.channel_id),
            Value::Int(Some(ctx.height)),
            Value::Int(Some(ctx.timestamp_ns)),
        ];
        buffer(ctx, "payouts", PAYOUT_COLUMNS, values);
    }
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
pub fn timeline<E: serde::Serialize>(ctx: &EventCtx<'_>, entity: &str, entity_id: i64, event: &E) {
    let (name, data) = name_and_data(event);
    let values = vec![
        Value::Text(Some(entity.to_owned())),
        Value::Int(Some(entity_id)),
        Value::Int(Some(ctx.seq)),
        Value::Text(Some(name)),
        Value::Int(Some(ctx.height)),
        Value::Int(Some(ctx.timestamp_ns)),
        Value::Text(Some(ctx.receipt_id.to_owned())),
        Value::Text(Some(data)),
    ];
    buffer(ctx, "timeline", TIMELINE_COLUMNS, values);
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
