//! Request parameters: the query extractor with JSON rejections, parsing helpers that name
//! the bad parameter, cursor pagination and a small builder for filtered SQL.

use super::error::{ApiError, ApiResult};
use axum::extract::{FromRequestParts, Query};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
pub use protocol::indexer::Page;
use serde::de::DeserializeOwned;
use sqlx::Any;
use sqlx::any::AnyArguments;
use sqlx::query::Query as SqlQuery;
use std::fmt::Display;
use std::str::FromStr;

/// `axum::extract::Query` whose rejection is an [`ApiError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Q<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(v) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(v))
    }
}

/// The query of a route that takes no parameters. Any parameter is refused, as on the
/// routes that take some: a misspelt or misplaced parameter (`/v1/jobs/1?limit=5`) is an
/// error the client should hear about, not something silently ignored.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Parses an optional parameter, naming it and the value when it is bad.
pub fn parse<T>(name: &'static str, value: Option<&str>) -> ApiResult<Option<T>>
where
    T: FromStr,
    T::Err: Display,
{
    value
        .map(|v| {
            v.parse::<T>()
                .map_err(|e| ApiError::bad(name, format!("'{v}': {e}")))
        })
        .transpose()
}

/// A number written the one way the API writes it: decimal digits, no sign, no leading
/// zero. `+1`, `01` and ` 1` are not ids: accepting them would give one object many
/// addresses (and caches and logs many keys for it).
pub fn canonical_int(value: &str) -> Option<i64> {
    let digits_only = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    let no_leading_zero = value == "0" || !value.starts_with('0');
    if !(digits_only && no_leading_zero) {
        return None;
    }
    value.parse::<i64>().ok()
}

/// A numeric id from the path (`/v1/jobs/{id}`).
pub fn path_id(name: &'static str, value: &str) -> ApiResult<i64> {
    canonical_int(value).ok_or_else(|| {
        ApiError::bad(
            name,
            format!(
                "'{value}' is not a valid id: expected decimal digits without sign or leading zero"
            ),
        )
    })
}

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

/// The page size: 1..=200, 50 when absent.
pub fn limit(value: Option<&str>) -> ApiResult<i64> {
    let Some(raw) = value else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.parse::<i64>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::bad(
            "limit",
            format!("'{raw}' must be an integer from 1 to {MAX_LIMIT}"),
        )),
    }
}

/// A [`Page`] whose items are JSON documents the database rendered (see
/// [`super::node_json`]): written out as they are, without parsing them again. The same
/// JSON as `Json<Page<T>>` of the documented item type.
#[derive(Debug)]
pub struct RawPage(Page<String>);

impl From<Page<(String, String)>> for RawPage {
    /// A page of (document, cursor) rows: the cursors only served to find `next_cursor`.
    fn from(page: Page<(String, String)>) -> Self {
        Self(Page {
            items: page.items.into_iter().map(|(doc, _)| doc).collect(),
            next_cursor: page.next_cursor,
        })
    }
}

impl RawPage {
    /// The page's JSON text.
    pub fn into_body(self) -> String {
        let Page { items, next_cursor } = self.0;
        let cursor = serde_json::to_string(&next_cursor).unwrap_or_else(|_| "null".into());
        let len = items.iter().map(|i| i.len() + 1).sum::<usize>() + cursor.len() + 32;
        let mut body = String::with_capacity(len);
        body.push_str("{\"items\":[");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(item);
        }
        body.push_str("],\"next_cursor\":");
        body.push_str(&cursor);
        body.push('}');
        body
    }
}

impl IntoResponse for RawPage {
    fn into_response(self) -> Response {
        JsonText(self.into_body().into()).into_response()
    }
}

/// A JSON document already rendered (a cached page): sent as it is.
#[derive(Debug)]
pub struct JsonText(pub axum::body::Bytes);

impl IntoResponse for JsonText {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

/// A numeric cursor (an id or a sequence number).
pub fn int_cursor(value: Option<&str>) -> ApiResult<Option<i64>> {
    value
        .map(|c| canonical_int(c).ok_or_else(|| ApiError::BadCursor(c.to_owned())))
        .transpose()
}

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub enum Arg {
    Int(i64),
    Text(String),
}

/// Collects `WHERE` clauses and their arguments with `$n` placeholders.
#[derive(Debug, Default)]
pub struct Filter {
    clauses: Vec<String>,
    args: Vec<Arg>,
}

impl Filter {
    /// Adds an argument and returns its placeholder.
    pub fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    pub fn text(&mut self, v: impl Into<String>) -> String {
        self.arg(Arg::Text(v.into()))
    }

    pub fn int(&mut self, v: i64) -> String {
        self.arg(Arg::Int(v))
    }

    pub fn push(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    /// `column = value` when a value was given (text columns: account ids, model ids).
    pub fn eq_text(&mut self, column: &str, value: Option<&str>) {
        if let Some(v) = value {
            let p = self.text(v);
            self.push(format!("{column} = {p}"));
        }
    }

    /// `column = value` when a value was given (integer columns: node ids).
    pub fn eq_int(&mut self, column: &str, value: Option<i64>) {
        if let Some(v) = value {
            let p = self.int(v);
            self.push(format!("{column} = {p}"));
        }
    }

    /// `column = value` for a query parameter `name` that takes one of `allowed` (a status or a
    /// state); anything else is a 400 that lists them.
    pub fn eq_one_of(
        &mut self,
        name: &'static str,
        column: &str,
        value: Option<&str>,
        allowed: &[&str],
    ) -> ApiResult<()> {
        match value {
            Some(v) if !allowed.contains(&v) => Err(ApiError::bad(
                name,
                format!("'{v}': expected {}", allowed.join(", ")),
            )),
            v => {
                self.eq_text(column, v);
                Ok(())
            }
        }
    }

    /// `SELECT * FROM table` with these clauses, newest (largest `id_column`) first, below the
    /// numeric `cursor`, one row more than `limit` so [`Page::from_rows`] knows a next page
    /// exists.
    pub fn newest_first_sql(
        &mut self,
        table: &str,
        id_column: &str,
        cursor: Option<&str>,
        limit: i64,
    ) -> ApiResult<String> {
        if let Some(before) = int_cursor(cursor)? {
            let p = self.int(before);
            self.push(format!("{id_column} < {p}"));
        }
        let lim = self.int(limit + 1);
        Ok(format!(
            "SELECT * FROM {table}{} ORDER BY {id_column} DESC LIMIT {lim}",
            self.where_sql()
        ))
    }

    /// ` WHERE a AND b`, or nothing.
    pub fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    pub fn bind<'q>(
        &self,
        mut q: SqlQuery<'q, Any, AnyArguments<'q>>,
    ) -> SqlQuery<'q, Any, AnyArguments<'q>> {
        for a in &self.args {
            q = match a {
                Arg::Int(v) => q.bind(*v),
                Arg::Text(v) => q.bind(v.clone()),
            };
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cursors() {
        assert_eq!(limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(limit(Some("200")).unwrap(), 200);
        for bad in ["0", "201", "-1", "x"] {
            assert!(matches!(
                limit(Some(bad)),
                Err(ApiError::BadParameter { name: "limit", .. })
            ));
        }
        assert_eq!(int_cursor(Some("12")).unwrap(), Some(12));
        assert!(matches!(
            int_cursor(Some("-3")),
            Err(ApiError::BadCursor(_))
        ));
        assert!(matches!(
            path_id("job_id", "1x"),
            Err(ApiError::BadParameter { .. })
        ));
    }

    #[test]
    fn ids_have_one_spelling() {
        assert_eq!(path_id("id", "0").unwrap(), 0);
        assert_eq!(path_id("id", "120").unwrap(), 120);
        assert_eq!(path_id("id", &i64::MAX.to_string()).unwrap(), i64::MAX);
        for bad in [
            "+1",
            "01",
            "00",
            "",
            " 1",
            "1 ",
            "-1",
            "1e3",
            "9223372036854775808",
        ] {
            assert!(
                matches!(path_id("id", bad), Err(ApiError::BadParameter { .. })),
                "{bad:?} was accepted"
            );
            assert!(
                int_cursor(Some(bad)).is_err(),
                "cursor {bad:?} was accepted"
            );
        }
    }

    #[test]
    fn pages_know_when_more_exist() {
        let p = Page::from_rows(vec![1, 2, 3], 2, |v| v.to_string());
        assert_eq!((p.items, p.next_cursor), (vec![1, 2], Some("2".to_owned())));
        let p = Page::from_rows(vec![1, 2], 2, |v| v.to_string());
        assert_eq!(p.next_cursor, None);
    }

    #[tokio::test]
    async fn raw_pages_are_the_json_of_pages() {
        let rows = vec![
            (r#"{"a":1}"#.to_owned(), "c1".to_owned()),
            (r#"{"a":2}"#.to_owned(), "c2".to_owned()),
        ];
        for (limit, cursor) in [(1, serde_json::json!("c1")), (2, serde_json::Value::Null)] {
            let resp = RawPage::from(Page::from_rows(rows.clone(), limit, |(_, c)| c.clone()))
                .into_response();
            assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            let got: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let items: Vec<_> = (1..=limit).map(|a| serde_json::json!({ "a": a })).collect();
            assert_eq!(
                got,
                serde_json::json!({ "items": items, "next_cursor": cursor })
            );
        }
    }

    #[test]
    fn filter_numbers_placeholders() {
        let mut f = Filter::default();
        let a = f.text("x");
        let b = f.int(3);
        f.push(format!("a = {a}"));
        f.push(format!("b > {b}"));
        assert_eq!(f.where_sql(), " WHERE a = $1 AND b > $2");
    }
}
