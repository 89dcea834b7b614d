//! Reading columns of `AnyRow`s into API values.

use crate::db::amount;
use sqlx::Row;
use sqlx::any::AnyRow;

pub fn text(row: &AnyRow, col: &str) -> Result<String, sqlx::Error> {
    row.try_get(col)
}

pub fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>, sqlx::Error> {
    row.try_get(col)
}

pub fn int(row: &AnyRow, col: &str) -> Result<i64, sqlx::Error> {
    row.try_get(col)
}

pub fn opt_int(row: &AnyRow, col: &str) -> Result<Option<i64>, sqlx::Error> {
    row.try_get(col)
}

/// A u64 that travels as a JSON string (ids, nanosecond times), like NEAR's `U64`.
pub fn u64_text(row: &AnyRow, col: &str) -> Result<String, sqlx::Error> {
    Ok(int(row, col)?.to_string())
}

pub fn opt_u64_text(row: &AnyRow, col: &str) -> Result<Option<String>, sqlx::Error> {
    Ok(opt_int(row, col)?.map(|v| v.to_string()))
}

/// A stored (padded) amount as plain decimal text.
pub fn amount(row: &AnyRow, col: &str) -> Result<String, sqlx::Error> {
    Ok(amount::display(&text(row, col)?))
}

pub fn opt_amount(row: &AnyRow, col: &str) -> Result<Option<String>, sqlx::Error> {
    Ok(opt_text(row, col)?.map(|v| amount::display(&v)))
}

/// A column holding JSON text, as a JSON value (null when absent or unreadable).
pub fn json(row: &AnyRow, col: &str) -> Result<serde_json::Value, sqlx::Error> {
    Ok(opt_text(row, col)?
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default())
}

pub fn height(row: &AnyRow, col: &str) -> Result<u64, sqlx::Error> {
    Ok(u64::try_from(int(row, col)?).unwrap_or_default())
}
