//! A node as JSON, rendered by SQLite: the hot path of `/v1/nodes` on the default backend.
//!
//! Why in SQL: sqlx runs each SQLite connection on its own thread and hands every row over
//! as a copy of each of its values (allocated there, freed on the runtime's threads). A page
//! of 50 nodes read as columns is ~1,000 such values, ~100 rows more for GPUs and prices,
//! then a tree of structs serde walks again. Rendered by SQLite it is one text value per
//! node and one statement per page, passed to the client as is: about half the CPU per
//! request (measured with `examples/api_bench.rs`). The document is exactly
//! [`super::nodes::Node`]'s serde form (same keys, order and types); the API tests compare
//! every listed node with the struct-built `/v1/nodes/{id}`.
//!
//! PostgreSQL builds nodes from columns instead (see `list_nodes`): its JSON functions cost
//! its server more than the plain queries.

/// How a column becomes a JSON value.
#[derive(Clone, Copy)]
enum Field {
    /// As stored: text, integer or NULL.
    Plain(&'static str),
    /// A u64 carried as a JSON string (ids, nanosecond times), like NEAR's `U64`.
    U64Text(&'static str),
    /// A padded amount as plain decimal text ([`crate::db::amount::display`]).
    Amount(&'static str),
    /// A column holding JSON text, embedded as JSON.
    Json(&'static str),
    /// A JSON array expression built by [`array`].
    Array(&'static str),
}

const GPU: &[(&str, Field)] = &[
    ("model", Field::Plain("g.model")),
    ("device_id", Field::Plain("g.device_id")),
    ("driver_version", Field::Plain("g.driver_version")),
    ("vbios_version", Field::Plain("g.vbios_version")),
];

const PRICE: &[(&str, Field)] = &[
    ("model_id", Field::Plain("q.model_id")),
    ("input_per_million", Field::Amount("q.input_per_million")),
    ("output_per_million", Field::Amount("q.output_per_million")),
];

/// The node's keys in `Node`'s field order. `gpus`/`prices` name the arrays.
const NODE: &[(&str, Field)] = &[
    ("node_id", Field::U64Text("n.node_id")),
    ("operator", Field::Plain("n.operator")),
    ("status", Field::Plain("n.status")),
    ("kind", Field::Plain("n.kind")),
    ("signer_key", Field::Plain("n.signer_key")),
    ("encryption_key", Field::Plain("n.encryption_key")),
    ("tcb_status", Field::Plain("n.tcb_status")),
    ("measurements", Field::Json("n.measurements")),
    ("endpoint", Field::Plain("n.endpoint")),
    ("region", Field::Plain("n.region")),
    ("capacity", Field::Plain("n.capacity")),
    ("gpus", Field::Array("gpus")),
    ("prices", Field::Array("prices")),
    ("registered_height", Field::Plain("n.registered_height")),
    ("registered_at_ns", Field::U64Text("n.registered_at_ns")),
    (
        "attestation_expires_at_ns",
        Field::U64Text("n.expires_at_ns"),
    ),
    ("last_heartbeat_ns", Field::U64Text("n.last_heartbeat_ns")),
    ("jobs_settled", Field::Plain("n.jobs_settled")),
    ("requests_answered", Field::Plain("n.requests_answered")),
];

/// The SQL expression (over `nodes n`) whose value is the node's JSON document as text.
pub fn node_json() -> String {
    object(NODE)
}

fn object(fields: &[(&str, Field)]) -> String {
    let args = fields
        .iter()
        .map(|(key, field)| format!("'{key}', {}", value(*field)))
        .collect::<Vec<_>>()
        .join(", ");
    format!("json_object({args})")
}

/// The key of the object SQLite puts in place of a stored value that does not read as its
/// column holds: `{"value": <stored>, "bad_value": <column>}`. Strings in the document are
/// JSON-escaped, so `"bad_value":` appears unescaped only as this key ([`bad_value_in`]).
const BAD_VALUE_KEY: &str = "bad_value";

/// u128::MAX, the largest stored amount.
const U128_MAX: &str = "340282366920938463463374607431768211455";

/// `column` without its table alias.
fn column_name(c: &'static str) -> &'static str {
    c.rsplit('.').next().unwrap_or(c)
}

fn bad_value(c: &'static str) -> String {
    format!(
        "json_object('value', {c}, '{BAD_VALUE_KEY}', '{}')",
        column_name(c)
    )
}

fn value(field: Field) -> String {
    match field {
        Field::Plain(c) => c.to_owned(),
        // Written from u64s: never negative.
        Field::U64Text(c) => format!(
            "CASE WHEN {c} IS NULL OR {c} >= 0 THEN CAST({c} AS TEXT) ELSE {} END",
            bad_value(c)
        ),
        // Padding stripped; all zeros is 0. Only decimal digits up to u128::MAX read as an
        // amount (as `amount::parse`); anything else is a bad value, never 0.
        Field::Amount(c) => {
            let digits = format!("LTRIM({c}, '0')");
            format!(
                "CASE WHEN {c} IS NULL THEN NULL \
                 WHEN {c} <> '' AND {c} NOT GLOB '*[^0-9]*' AND (length({digits}) < 39 \
                     OR (length({digits}) = 39 AND {digits} <= '{U128_MAX}')) \
                 THEN COALESCE(NULLIF({digits}, ''), '0') ELSE {} END",
                bad_value(c)
            )
        }
        Field::Json(c) => format!(
            "CASE WHEN {c} IS NULL OR json_valid({c}) THEN json({c}) ELSE {} END",
            bad_value(c)
        ),
        Field::Array("gpus") => array("node_gpus g", GPU, "g.device_id"),
        Field::Array(_) => array("node_prices q", PRICE, "q.model_id"),
    }
}

/// The JSON array of `fields` objects of the node's rows in `table` (aliased), in `order`.
///
/// Ordered in a subquery rather than with the aggregate's own ORDER BY, which makes SQLite
/// build a temporary b-tree per node; the primary key (node_id, then `order`) already yields
/// the rows in order. json() keeps each element an object rather than a string once it has
/// passed through the subquery.
fn array(table: &str, fields: &[(&str, Field)], order: &str) -> String {
    let object = object(fields);
    let alias = table.rsplit(' ').next().unwrap_or(table);
    format!(
        "(SELECT json_group_array(json(o)) FROM (SELECT {object} AS o FROM {table} \
         WHERE {alias}.node_id = n.node_id ORDER BY {order}))"
    )
}

/// The first stored value of a rendered node that did not read (see [`BAD_VALUE_KEY`]).
pub fn bad_value_in(doc: &str) -> Option<crate::db::BadValue> {
    use crate::db::BadValue;
    if !doc.contains(&format!("\"{BAD_VALUE_KEY}\":")) {
        return None;
    }
    fn find(v: &serde_json::Value) -> Option<(&str, String)> {
        match v {
            serde_json::Value::Object(o) => match o.get(BAD_VALUE_KEY) {
                Some(serde_json::Value::String(name)) => {
                    let value = match o.get("value") {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    };
                    Some((name.as_str(), value))
                }
                _ => o.values().find_map(find),
            },
            serde_json::Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    let parsed: serde_json::Value = match serde_json::from_str(doc) {
        Ok(v) => v,
        Err(_) => return Some(BadValue::new("node", doc, "rendered node is not JSON")),
    };
    let (name, value) = find(&parsed)?;
    let field = NODE
        .iter()
        .chain(GPU)
        .chain(PRICE)
        .find_map(|(_, f)| match f {
            Field::U64Text(c) | Field::Amount(c) | Field::Json(c) if column_name(c) == name => {
                Some(column_name(c))
            }
            _ => None,
        })
        .unwrap_or("node");
    Some(BadValue::new(
        field,
        value,
        "stored value does not read as its column holds",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_key_once() {
        let sql = node_json();
        for (key, _) in NODE.iter().chain(GPU).chain(PRICE) {
            assert_eq!(sql.matches(&format!("'{key}',")).count(), 1, "{key}: {sql}");
        }
        assert_eq!(sql.matches("json_group_array(json(o))").count(), 2, "{sql}");
    }

    #[test]
    fn bad_values_are_found_by_their_key_only() {
        let ok = r#"{"node_id":"1","region":"\"bad_value\":\"x\"","prices":[]}"#;
        assert_eq!(bad_value_in(ok), None);
        let bad = r#"{"node_id":"1","prices":[{"model_id":"m","input_per_million":"1",
            "output_per_million":{"value":"12abc","bad_value":"output_per_million"}}]}"#;
        let found = bad_value_in(bad).unwrap();
        assert_eq!(
            (found.field, found.value.as_str()),
            ("output_per_million", "12abc")
        );
        let bad = r#"{"node_id":{"value":-3,"bad_value":"node_id"}}"#;
        let found = bad_value_in(bad).unwrap();
        assert_eq!((found.field, found.value.as_str()), ("node_id", "-3"));
    }
}
