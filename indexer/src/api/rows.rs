//! Reading columns of `AnyRow`s into API values. Strict: a stored value that is not what
//! its column holds (a negative id, an amount that is not decimal digits, JSON text that
//! does not parse) is a [`BadValue`] error (the request answers 500), never a default.

use crate::db::{BadValue, amount};
use enclave_cloud_common::Hash32;
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

/// A stored u64 (written by `checkpoint::to_i64`, so never negative).
fn unsigned(col: &'static str, v: i64) -> Result<u64, sqlx::Error> {
    crate::db::checkpoint::to_u64(v, col).map_err(BadValue::into_sqlx)
}

/// A u64 that travels as a JSON string (ids, nanosecond times), like NEAR's `U64`.
pub fn u64_text(row: &AnyRow, col: &'static str) -> Result<String, sqlx::Error> {
    Ok(unsigned(col, int(row, col)?)?.to_string())
}

pub fn opt_u64_text(row: &AnyRow, col: &'static str) -> Result<Option<String>, sqlx::Error> {
    opt_int(row, col)?
        .map(|v| Ok(unsigned(col, v)?.to_string()))
        .transpose()
}

/// A stored (padded) amount as plain decimal text.
pub fn amount(row: &AnyRow, col: &'static str) -> Result<String, sqlx::Error> {
    amount::display(col, &text(row, col)?).map_err(BadValue::into_sqlx)
}

pub fn opt_amount(row: &AnyRow, col: &'static str) -> Result<Option<String>, sqlx::Error> {
    opt_text(row, col)?
        .map(|v| amount::display(col, &v).map_err(BadValue::into_sqlx))
        .transpose()
}

/// A column holding a 32-byte hash as 64 hex characters (NULL: none).
pub fn opt_hash(row: &AnyRow, col: &'static str) -> Result<Option<Hash32>, sqlx::Error> {
    opt_text(row, col)?
        .map(|s| {
            s.parse()
                .map_err(|_| BadValue::new(col, s, "is not 64 hex characters").into_sqlx())
        })
        .transpose()
}

/// A column holding JSON text, as a JSON value: null when the column is NULL, an error when
/// the text does not parse.
pub fn json(row: &AnyRow, col: &'static str) -> Result<serde_json::Value, sqlx::Error> {
    let Some(s) = opt_text(row, col)? else {
        return Ok(serde_json::Value::Null);
    };
    serde_json::from_str(&s).map_err(|_| BadValue::new(col, s, "is not JSON").into_sqlx())
}

pub fn height(row: &AnyRow, col: &'static str) -> Result<u64, sqlx::Error> {
    unsigned(col, int(row, col)?)
}

pub fn opt_height(row: &AnyRow, col: &'static str) -> Result<Option<u64>, sqlx::Error> {
    opt_int(row, col)?.map(|v| unsigned(col, v)).transpose()
}

/// A count written from a u64 (token counts): an i64 that is never negative.
pub fn opt_count(row: &AnyRow, col: &'static str) -> Result<Option<i64>, sqlx::Error> {
    opt_int(row, col)?
        .map(|v| {
            unsigned(col, v)?;
            Ok(v)
        })
        .transpose()
}

/// An amount that must be present because another column says so (`why`).
pub fn required_amount(
    row: &AnyRow,
    col: &'static str,
    why: &'static str,
) -> Result<String, sqlx::Error> {
    opt_amount(row, col)?.ok_or_else(|| BadValue::new(col, "NULL", why).into_sqlx())
}
