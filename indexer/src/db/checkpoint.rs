//! The follower's position, written in the same transaction as the block's data.

use sqlx::{AnyConnection, Row};

/// The last processed height and the hash of the last block that existed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub height: u64,
    pub block_hash: String,
    pub timestamp_ns: u64,
}

pub async fn load(conn: &mut AnyConnection) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row = sqlx::query("SELECT height, block_hash, timestamp_ns FROM checkpoint WHERE id = 1")
        .fetch_optional(conn)
        .await?;
    row.map(|r| {
        Ok(Checkpoint {
            height: to_u64(r.try_get("height")?),
            block_hash: r.try_get("block_hash")?,
            timestamp_ns: to_u64(r.try_get("timestamp_ns")?),
        })
    })
    .transpose()
}

pub async fn store(conn: &mut AnyConnection, cp: &Checkpoint) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO checkpoint (id, height, block_hash, timestamp_ns) VALUES (1, $1, $2, $3)
         ON CONFLICT (id) DO UPDATE SET height = excluded.height,
             block_hash = excluded.block_hash, timestamp_ns = excluded.timestamp_ns",
    )
    .bind(to_i64(cp.height))
    .bind(&cp.block_hash)
    .bind(to_i64(cp.timestamp_ns))
    .execute(conn)
    .await?;
    Ok(())
}

/// Adds `by` to a persistent counter (malformed events, ignored events, ...).
pub async fn bump_counter(
    conn: &mut AnyConnection,
    name: &str,
    by: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO counters (name, value) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value",
    )
    .bind(name)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn counter(conn: &mut AnyConnection, name: &str) -> Result<i64, sqlx::Error> {
    let v: Option<i64> = sqlx::query_scalar("SELECT value FROM counters WHERE name = $1")
        .bind(name)
        .fetch_optional(conn)
        .await?;
    Ok(v.unwrap_or(0))
}

/// Heights, nanosecond times and ids are u64 on chain and BIGINT in SQL. Values above
/// i64::MAX cannot occur for heights/ids; timestamps saturate rather than wrap.
pub fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
