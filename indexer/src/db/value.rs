//! A value that cannot be stored or read as what it claims to be.
//!
//! Every conversion between chain values and columns is strict: a u64 that does not fit a
//! BIGINT, a stored amount that is not a decimal u128, a stored JSON text that does not
//! parse. Such a value is an error naming the field and the value, never a clamped or zero
//! figure. Ingest skips the event that carries it; the API answers 500. Both log it and
//! count it in `ecloud_indexer_bad_values_total{field}`.

/// Longest rendering of an offending value kept in an error (a stored text can be long).
const MAX_SHOWN: usize = 80;

/// A value of `field` that does not fit or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value}: {problem}")]
pub struct BadValue {
    /// The event field or column: a fixed name, so it can label a metric.
    pub field: &'static str,
    /// The offending value as text (truncated).
    pub value: String,
    pub problem: &'static str,
}

impl BadValue {
    pub fn new(field: &'static str, value: impl std::fmt::Display, problem: &'static str) -> Self {
        let mut value = value.to_string();
        if value.chars().count() > MAX_SHOWN {
            value = value.chars().take(MAX_SHOWN).chain("…".chars()).collect();
        }
        Self {
            field,
            value,
            problem,
        }
    }

    /// As the error of a row read or a bind, so it travels through `sqlx::Error` paths
    /// (`?` in row mappers); [`BadValue::from_sqlx`] gets it back.
    pub fn into_sqlx(self) -> sqlx::Error {
        sqlx::Error::Decode(Box::new(self))
    }

    /// The `BadValue` inside a `sqlx::Error` made by [`BadValue::into_sqlx`], or the error.
    pub fn from_sqlx(e: sqlx::Error) -> Result<Self, sqlx::Error> {
        match e {
            sqlx::Error::Decode(inner) => match inner.downcast::<BadValue>() {
                Ok(bad) => Ok(*bad),
                Err(inner) => Err(sqlx::Error::Decode(inner)),
            },
            e => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn travels_through_sqlx_errors_and_comes_back() {
        let bad = BadValue::new("cost", "12abc", "is not a decimal amount");
        assert_eq!(bad.to_string(), "cost = 12abc: is not a decimal amount");
        assert_eq!(BadValue::from_sqlx(bad.clone().into_sqlx()).unwrap(), bad);
        assert!(matches!(
            BadValue::from_sqlx(sqlx::Error::RowNotFound),
            Err(sqlx::Error::RowNotFound)
        ));
    }

    #[test]
    fn long_values_are_truncated() {
        let bad = BadValue::new("input", "x".repeat(1000), "is not JSON");
        assert_eq!(bad.value.chars().count(), MAX_SHOWN + 1);
    }
}
