//! The follower's position, written in the same transaction as the block's data.

use super::BadValue;
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
            height: to_u64(r.try_get("height")?, "height").map_err(BadValue::into_sqlx)?,
            block_hash: r.try_get("block_hash")?,
            timestamp_ns: to_u64(r.try_get("timestamp_ns")?, "timestamp_ns")
                .map_err(BadValue::into_sqlx)?,
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
    .bind(to_i64(cp.height, "height").map_err(BadValue::into_sqlx)?)
    .bind(&cp.block_hash)
    .bind(to_i64(cp.timestamp_ns, "timestamp_ns").map_err(BadValue::into_sqlx)?)
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

/// Heights, nanosecond times, ids and token counts are u64 on chain and BIGINT (i64) in
/// SQL. A value above i64::MAX is refused, never clamped: the caller skips what carries it.
pub fn to_i64(v: u64, field: &'static str) -> Result<i64, BadValue> {
    i64::try_from(v).map_err(|_| BadValue::new(field, v, "does not fit a signed 64-bit column"))
}

/// A stored BIGINT back as the u64 it was written from; a negative one was not written by
/// [`to_i64`] and is refused rather than read as 0.
pub fn to_u64(v: i64, field: &'static str) -> Result<u64, BadValue> {
    u64::try_from(v).map_err(|_| BadValue::new(field, v, "is negative where a u64 is stored"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_refuse_rather_than_clamp() {
        assert_eq!(to_i64(i64::MAX as u64, "id"), Ok(i64::MAX));
        let err = to_i64(i64::MAX as u64 + 1, "deadline_ns").unwrap_err();
        assert_eq!(err.field, "deadline_ns");
        assert!(err.to_string().contains("9223372036854775808"), "{err}");
        assert!(to_i64(u64::MAX, "id").is_err());
        assert_eq!(to_u64(0, "height"), Ok(0));
        assert_eq!(to_u64(-1, "height").unwrap_err().field, "height");
    }
}
