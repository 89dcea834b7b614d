//! `/v1/nodes`: attested nodes, filterable and sortable by price.

use super::ApiContext;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::node_json::node_json;
use super::params::{
    Filter, JsonText, NoParams, Page, Q, RawPage, canonical_int, int_cursor, limit, parse, path_id,
};
use super::rows;
use crate::db::{Backend, amount};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::get;
use enclave_cloud_common::{ModelId, NodeStatus};
pub use protocol::indexer::nodes::{Gpu, KeyGrant, Node, NodeDetail, Price, Stake, StatusChange};
use serde::Deserialize;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use std::collections::HashMap;
use utoipa::IntoParams;

pub fn router() -> Router<ApiContext> {
    Router::new()
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/nodes/{id}", get(get_node))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NodeQuery {
    /// Only nodes that price this model.
    model: Option<String>,
    region: Option<String>,
    /// GPU model, e.g. `H100`.
    gpu: Option<String>,
    /// `active`, `inactive`, `expired` or `deregistered`.
    status: Option<String>,
    /// Highest output price per million tokens (yoctoNEAR): of `model` when given,
    /// otherwise of the node's cheapest model.
    max_price: Option<String>,
    /// `id` (default) or `price` (cheapest first; unpriced nodes last).
    sort: Option<String>,
    /// 1..=200, default 50.
    limit: Option<String>,
    cursor: Option<String>,
}

/// The price a node without prices sorts by: last. Every price cursor has its width.
const NO_PRICE: &str = amount::UNPRICED;

fn status_param(v: &str) -> ApiResult<String> {
    serde_json::from_value::<NodeStatus>(serde_json::Value::String(v.to_owned())).map_err(
        |_| {
            ApiError::bad(
                "status",
                format!("'{v}': expected active, inactive, expired or deregistered"),
            )
        },
    )?;
    Ok(v.to_owned())
}

fn short_text(name: &'static str, v: &str) -> ApiResult<String> {
    if v.is_empty() || v.len() > 64 {
        return Err(ApiError::bad(
            name,
            format!("'{v}' must be 1 to 64 characters"),
        ));
    }
    Ok(v.to_owned())
}

/// A `/v1/nodes` query, parsed and checked: what a page is cached under, so every spelling
/// of one query (`limit=050` and `limit=50`, parameters in any order) shares one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NodeListing {
    model: Option<ModelId>,
    region: Option<String>,
    gpu: Option<String>,
    status: Option<String>,
    max_price: Option<u128>,
    by_price: bool,
    limit: i64,
    cursor: Option<NodeCursor>,
}

/// Where a page continues: after a node id, or after a (padded price, node id) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NodeCursor {
    Id(i64),
    Price(String, i64),
}

impl NodeListing {
    /// Checks the parameters in the order the documentation lists them.
    fn parse(q: NodeQuery) -> ApiResult<Self> {
        let model = parse::<ModelId>("model", q.model.as_deref())?;
        let max_price = parse::<u128>("max_price", q.max_price.as_deref())?;
        let by_price = match q.sort.as_deref() {
            None | Some("id") => false,
            Some("price") => true,
            Some(other) => {
                return Err(ApiError::bad(
                    "sort",
                    format!("'{other}': expected id or price"),
                ));
            }
        };
        let limit = limit(q.limit.as_deref())?;
        let region = q.region.map(|r| short_text("region", &r)).transpose()?;
        let gpu = q.gpu.map(|g| short_text("gpu", &g)).transpose()?;
        let status = q.status.map(|s| status_param(&s)).transpose()?;
        let cursor = match q.cursor.as_deref() {
            None => None,
            Some(c) if by_price => {
                let (price, id) = price_cursor(c)?;
                Some(NodeCursor::Price(price, id))
            }
            Some(c) => int_cursor(Some(c))?.map(NodeCursor::Id),
        };
        Ok(Self {
            model,
            region,
            gpu,
            status,
            max_price,
            by_price,
            limit,
            cursor,
        })
    }

    /// The page cache's key: the parsed values, so equal queries get equal keys.
    fn cache_key(&self) -> String {
        format!("{self:?}")
    }
}

/// List nodes.
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes", params(NodeQuery),
    responses((status = 200, body = Page<Node>), (status = 400, body = ErrorBody)))]
pub async fn list_nodes(State(ctx): State<ApiContext>, Q(q): Q<NodeQuery>) -> ApiResult<JsonText> {
    let listing = NodeListing::parse(q)?;
    // Before the query: a page stored under this generation can only be newer than it.
    let generation = ctx.db.generation();
    let key = listing.cache_key();
    if let Some(page) = ctx.node_pages.get(generation, &key) {
        return Ok(JsonText(page));
    }
    let page = Bytes::from(query_nodes(&ctx, &listing).await?.into_body());
    ctx.node_pages.put(generation, key, page.clone());
    Ok(JsonText(page))
}

/// One page of `/v1/nodes` from the database.
async fn query_nodes(ctx: &ApiContext, q: &NodeListing) -> ApiResult<RawPage> {
    let (model, by_price, limit) = (&q.model, q.by_price, q.limit);
    let mut f = Filter::default();
    // With a model and a price sort, walk that model's price index through a join; with a
    // model but id order, keep walking nodes by id and test the model with EXISTS, so a page
    // stops after `limit` matches instead of sorting every priced node.
    let max_price = q.max_price.map(amount::pad);
    // The id the price order breaks ties on: with the join, the price index's own copy, so
    // (model_id, output_per_million, node_id) serves the ORDER BY and the cursor range
    // without a sort (`n.node_id` is the same value, but planners do not carry that over).
    let (join, price, max_in_exists, tie_id) = match model {
        Some(m) if by_price => {
            let p = f.text(m.as_str());
            let join = format!(" JOIN node_prices p ON p.node_id = n.node_id AND p.model_id = {p}");
            (join, "p.output_per_million", false, "p.node_id")
        }
        Some(m) => {
            let p = f.text(m.as_str());
            let ceiling = match &max_price {
                Some(max) => format!(" AND p.output_per_million <= {}", f.text(max.clone())),
                None => String::new(),
            };
            f.push(format!(
                "EXISTS (SELECT 1 FROM node_prices p WHERE p.node_id = n.node_id AND p.model_id = {p}{ceiling})"
            ));
            (String::new(), "n.min_output_price", true, "n.node_id")
        }
        None => (String::new(), "n.min_output_price", false, "n.node_id"),
    };
    // Never NULL (unpriced nodes hold NO_PRICE), so the price indexes serve the ORDER BY.
    let sort_price = price;
    if let Some(region) = &q.region {
        let p = f.text(region.clone());
        f.push(format!("n.region = {p}"));
    }
    if let Some(gpu) = &q.gpu {
        let p = f.text(gpu.clone());
        f.push(format!(
            "EXISTS (SELECT 1 FROM node_gpus g WHERE g.node_id = n.node_id AND g.model = {p})"
        ));
    }
    if let Some(status) = &q.status {
        let p = f.text(status.clone());
        f.push(format!("n.status = {p}"));
    }
    if let Some(max) = max_price.filter(|_| !max_in_exists) {
        let p = f.text(max);
        f.push(format!("{price} <= {p}"));
    }
    match &q.cursor {
        Some(NodeCursor::Price(cp, cid)) => {
            let (cp, cid) = (f.text(cp.clone()), f.int(*cid));
            // A row-value comparison: both backends turn it into an index range.
            f.push(format!("({sort_price}, {tie_id}) > ({cp}, {cid})"));
        }
        Some(NodeCursor::Id(after)) => {
            let p = f.int(*after);
            f.push(format!("n.node_id > {p}"));
        }
        None => {}
    }
    let order = if by_price {
        format!("{sort_price}, {tie_id}")
    } else {
        "n.node_id".to_owned()
    };
    let lim = f.int(limit + 1);
    let rest = format!(
        "FROM nodes n{join}{} ORDER BY {order} LIMIT {lim}",
        f.where_sql()
    );
    let cursor_of = |r: &AnyRow| -> Result<String, sqlx::Error> {
        let id = rows::u64_text(r, "node_id")?;
        Ok(if by_price {
            format!("{}-{id}", rows::text(r, "sort_price")?)
        } else {
            id
        })
    };
    let mut conn = ctx.db.read.acquire().await?;
    let page = match ctx.db.backend {
        // SQLite renders each node's JSON itself: one value per node to carry across, passed
        // to the client as is (see `node_json`).
        Backend::Sqlite => {
            let sql = format!(
                "SELECT {} AS node, {sort_price} AS sort_price, n.node_id {rest}",
                node_json()
            );
            let docs = f
                .bind(sqlx::query(&sql))
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| {
                    let doc = rows::text(r, "node")?;
                    if let Some(bad) = super::node_json::bad_value_in(&doc) {
                        return Err(bad.into_sqlx());
                    }
                    Ok((doc, cursor_of(r)?))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            RawPage::from(Page::from_rows(docs, limit, |(_, c)| c.clone()))
        }
        // PostgreSQL's JSON builders cost more server CPU than three plain queries (measured:
        // ~2 ms against ~0.5 ms a page), and its server is the shared resource: it returns
        // columns, the indexer builds the JSON.
        Backend::Postgres => {
            let sql = format!("SELECT n.*, {sort_price} AS sort_price {rest}");
            let rows = f.bind(sqlx::query(&sql)).fetch_all(&mut *conn).await?;
            let nodes = nodes_from_rows(&mut conn, &rows).await?;
            let docs = rows
                .iter()
                .zip(nodes)
                .map(|(r, node)| Ok((json_text(&node)?, cursor_of(r)?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            RawPage::from(Page::from_rows(docs, limit, |(_, c)| c.clone()))
        }
    };
    Ok(page)
}

/// A node's JSON document.
fn json_text(node: &Node) -> Result<String, sqlx::Error> {
    serde_json::to_string(node).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn price_cursor(c: &str) -> ApiResult<(String, i64)> {
    let bad = || ApiError::BadCursor(c.to_owned());
    let (price, id) = c.split_once('-').ok_or_else(bad)?;
    if price.len() != NO_PRICE.len() || !price.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let id = canonical_int(id).ok_or_else(bad)?;
    Ok((price.to_owned(), id))
}

/// One node with its history.
#[utoipa::path(get, path = "/v1/nodes/{id}", tag = "nodes",
    params(("id" = String, Path, description = "Node id")),
    responses((status = 200, body = NodeDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_node(
    State(ctx): State<ApiContext>,
    Path(id): Path<String>,
    _: Q<NoParams>,
) -> ApiResult<Json<NodeDetail>> {
    let node_id = path_id("id", &id)?;
    let node = load_node(&ctx, node_id)
        .await?
        .ok_or_else(|| ApiError::not_found("node", node_id))?;
    let history = sqlx::query(
        "SELECT status, block_height, timestamp_ns FROM node_status_history
         WHERE node_id = $1 ORDER BY seq DESC LIMIT 100",
    )
    .bind(node_id)
    .fetch_all(&ctx.db.read)
    .await?
    .iter()
    .map(|r| {
        Ok(StatusChange {
            status: rows::text(r, "status")?,
            block_height: rows::height(r, "block_height")?,
            timestamp_ns: rows::u64_text(r, "timestamp_ns")?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let operator_stake = load_stake(&ctx, &node.operator).await?;
    let key_grants = sqlx::query(
        "SELECT model_id, key_hash, granted_height, revoked_height FROM key_grants
         WHERE node_id = $1 ORDER BY model_id",
    )
    .bind(node_id)
    .fetch_all(&ctx.db.read)
    .await?
    .iter()
    .map(|r| {
        Ok(KeyGrant {
            model_id: rows::text(r, "model_id")?,
            key_hash: rows::opt_text(r, "key_hash")?,
            granted_height: rows::opt_height(r, "granted_height")?,
            revoked_height: rows::opt_height(r, "revoked_height")?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    Ok(Json(NodeDetail {
        node,
        status_history: history,
        operator_stake,
        key_grants,
    }))
}

/// An operator's stake, if it ever staked.
pub async fn load_stake(ctx: &ApiContext, operator: &str) -> Result<Option<Stake>, sqlx::Error> {
    sqlx::query("SELECT staked, unstaking, slashed FROM operators WHERE operator = $1")
        .bind(operator)
        .fetch_optional(&ctx.db.read)
        .await?
        .map(|r| {
            Ok(Stake {
                staked: rows::amount(&r, "staked")?,
                unstaking: rows::amount(&r, "unstaking")?,
                slashed: rows::amount(&r, "slashed")?,
            })
        })
        .transpose()
}

/// A node by id, with its GPUs and prices.
pub async fn load_node(ctx: &ApiContext, node_id: i64) -> Result<Option<Node>, sqlx::Error> {
    let mut conn = ctx.db.read.acquire().await?;
    let rows = sqlx::query("SELECT * FROM nodes WHERE node_id = $1")
        .bind(node_id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(nodes_from_rows(&mut conn, &rows).await?.pop())
}

/// Builds nodes from `nodes` rows, loading all their GPUs and prices in two queries.
pub(super) async fn nodes_from_rows(
    conn: &mut AnyConnection,
    rows: &[AnyRow],
) -> Result<Vec<Node>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows
        .iter()
        .map(|r| rows::int(r, "node_id"))
        .collect::<Result<_, _>>()?;
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    // The ids are integers we just read: safe to inline, and one statement however many.
    let mut gpus: HashMap<i64, Vec<Gpu>> = HashMap::new();
    let sql =
        format!("SELECT * FROM node_gpus WHERE node_id IN ({list}) ORDER BY node_id, device_id");
    for r in sqlx::query(&sql).fetch_all(&mut *conn).await? {
        gpus.entry(rows::int(&r, "node_id")?)
            .or_default()
            .push(Gpu {
                model: rows::text(&r, "model")?,
                device_id: rows::text(&r, "device_id")?,
                driver_version: rows::opt_text(&r, "driver_version")?,
                vbios_version: rows::opt_text(&r, "vbios_version")?,
            });
    }
    let mut prices: HashMap<i64, Vec<Price>> = HashMap::new();
    let sql =
        format!("SELECT * FROM node_prices WHERE node_id IN ({list}) ORDER BY node_id, model_id");
    for r in sqlx::query(&sql).fetch_all(&mut *conn).await? {
        prices
            .entry(rows::int(&r, "node_id")?)
            .or_default()
            .push(Price {
                model_id: rows::text(&r, "model_id")?,
                input_per_million: rows::amount(&r, "input_per_million")?,
                output_per_million: rows::amount(&r, "output_per_million")?,
            });
    }
    rows.iter()
        .map(|r| {
            let id = rows::int(r, "node_id")?;
            Ok(Node {
                node_id: id.to_string(),
                operator: rows::text(r, "operator")?,
                status: rows::text(r, "status")?,
                kind: rows::text(r, "kind")?,
                signer_key: rows::text(r, "signer_key")?,
                encryption_key: rows::text(r, "encryption_key")?,
                tcb_status: rows::text(r, "tcb_status")?,
                measurements: rows::json(r, "measurements")?,
                endpoint: rows::opt_text(r, "endpoint")?,
                region: rows::opt_text(r, "region")?,
                capacity: rows::int(r, "capacity")?,
                gpus: gpus.remove(&id).unwrap_or_default(),
                prices: prices.remove(&id).unwrap_or_default(),
                registered_height: rows::height(r, "registered_height")?,
                registered_at_ns: rows::u64_text(r, "registered_at_ns")?,
                attestation_expires_at_ns: rows::u64_text(r, "expires_at_ns")?,
                last_heartbeat_ns: rows::u64_text(r, "last_heartbeat_ns")?,
                jobs_settled: rows::int(r, "jobs_settled")?,
                requests_answered: rows::int(r, "requests_answered")?,
            })
        })
        .collect()
}
