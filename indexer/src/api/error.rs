//! One error type for every handler, rendered as `{"error": <code>, "message": <text>}`
//! with the matching HTTP status.

use crate::db::BadValue;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
pub use protocol::indexer::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a query, path or header parameter that does not parse or is out of range.
    #[error("parameter '{name}': {message}")]
    BadParameter { name: &'static str, message: String },
    /// 400: a pagination cursor this server did not issue.
    #[error("cursor '{0}' is not valid for this listing; use the next_cursor of a previous page")]
    BadCursor(String),
    /// 404.
    #[error("{what} '{id}' not found")]
    NotFound { what: &'static str, id: String },
    /// 404 for a path no route matches.
    #[error("no route for {0}")]
    NoRoute(String),
    /// 405.
    #[error("method not allowed; this API is read-only (GET)")]
    MethodNotAllowed,
    /// 503: every database connection stayed busy for the pool's acquire timeout. Too many
    /// requests, not a fault: the client should retry after `Retry-After` seconds.
    #[error("the server is overloaded; retry after {RETRY_AFTER_SECS} s")]
    Overloaded,
    /// 500: the database failed; details go to the log, not to the client.
    #[error("the database failed to answer")]
    Db(sqlx::Error),
    /// 500: a stored value does not read as what its column holds (see [`BadValue`]); the
    /// field and value go to the log and the `bad_values_total` metric, not to the client.
    #[error("the database holds a value that cannot be read")]
    BadValue(BadValue),
}

/// Set on a response answered with [`ApiError::BadValue`], so the metrics middleware can
/// count it by field (a handler's error has no access to the metrics).
#[derive(Debug, Clone, Copy)]
pub struct BadValueField(pub &'static str);

/// What an overloaded server asks clients to wait, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            // Waiting for a connection timed out, or the pool closed because the server is
            // shutting down: either way the request was never run, so it may be retried.
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => Self::Overloaded,
            e => match BadValue::from_sqlx(e) {
                Ok(bad) => Self::BadValue(bad),
                Err(e) => Self::Db(e),
            },
        }
    }
}

impl ApiError {
    pub fn bad(name: &'static str, message: impl Into<String>) -> Self {
        Self::BadParameter {
            name,
            message: message.into(),
        }
    }

    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            what,
            id: id.to_string(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadParameter { .. } => (StatusCode::BAD_REQUEST, "bad_parameter"),
            Self::BadCursor(_) => (StatusCode::BAD_REQUEST, "bad_cursor"),
            Self::NotFound { .. } | Self::NoRoute(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            Self::Db(_) | Self::BadValue(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Db(e) => tracing::error!(error = %e, "database error while serving a request"),
            Self::Overloaded => tracing::warn!("no database connection came free: answered 503"),
            Self::BadValue(bad) => tracing::error!(
                field = bad.field, value = %bad.value, error = %bad,
                "stored value cannot be read while serving a request: answered 500"
            ),
            _ => {}
        }
        let (status, code) = self.status_and_code();
        let body = ErrorBody {
            error: code.to_owned(),
            message: self.to_string(),
        };
        let mut resp = (status, Json(body)).into_response();
        if matches!(self, Self::Overloaded) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if let Self::BadValue(bad) = &self {
            resp.extensions_mut().insert(BadValueField(bad.field));
        }
        resp
    }
}

/// Query strings that do not deserialize (unknown parameter, wrong type) are 400s in our
/// JSON shape, not axum's plain-text rejection.
impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad("query", r.body_text())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_exhaustion_is_503_with_retry_after_and_other_db_errors_are_500() {
        let resp = ApiError::from(sqlx::Error::PoolTimedOut).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let resp = ApiError::from(sqlx::Error::RowNotFound).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn unreadable_stored_values_are_500_internal_and_name_the_field_for_the_metrics() {
        let bad = BadValue::new("cost", "12abc", "is not a decimal amount");
        let err = ApiError::from(bad.into_sqlx());
        assert!(matches!(err, ApiError::BadValue(_)), "{err:?}");
        let resp = err.into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let field = resp.extensions().get::<BadValueField>().map(|f| f.0);
        assert_eq!(field, Some("cost"));
    }
}
