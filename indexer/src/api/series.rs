//! `/v1/series`: values over block time in equal buckets, for the explorer's charts. Amounts
//! are summed as u128 here (the database stores them as padded text, which SQL cannot add
//! exactly on both backends).

use super::ApiContext;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::params::{Filter, Q, parse, path_id};
use super::rows;
use crate::db::{BadValue, amount, checkpoint};
use axum::Json;
use axum::extract::State;
use protocol::indexer::explorer::{Point, Series};
use serde::Deserialize;
use std::collections::HashMap;
use utoipa::IntoParams;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// `jobs` (jobs created), `volume` (provider + royalty + protocol fee paid),
    /// `nodes` / `gpus` (active at the end of each bucket), `node_earnings` (needs `node`),
    /// `model_revenue` (royalties deposited to a model's token, needs `model`).
    metric: String,
    /// Only this node (jobs, volume, node_earnings).
    node: Option<String>,
    /// Only this model (jobs, model_revenue).
    model: Option<String>,
    /// Asset of the amounts: `near` (default) or `ft:<token>`.
    asset: Option<String>,
    /// 1..=200, default 24.
    buckets: Option<String>,
}

const DEFAULT_BUCKETS: u64 = 24;
const MAX_BUCKETS: u64 = 200;

/// What one metric reads: events (time, amount) summed per bucket, or status changes whose
/// running state is sampled at each bucket's end.
enum Samples {
    Sums(Vec<(u64, u128)>),
    Active(Vec<(u64, i64, bool)>, HashMap<i64, u128>),
}

/// A time series for the explorer's charts.
#[utoipa::path(get, path = "/v1/series", tag = "status", params(SeriesQuery),
    responses((status = 200, body = Series), (status = 400, body = ErrorBody)))]
pub async fn series(
    State(ctx): State<ApiContext>,
    Q(q): Q<SeriesQuery>,
) -> ApiResult<Json<Series>> {
    let buckets = parse::<u64>("buckets", q.buckets.as_deref())?.unwrap_or(DEFAULT_BUCKETS);
    if !(1..=MAX_BUCKETS).contains(&buckets) {
        return Err(ApiError::bad(
            "buckets",
            format!("must be from 1 to {MAX_BUCKETS}"),
        ));
    }
    let node = q.node.as_deref().map(|n| path_id("node", n)).transpose()?;
    let asset = q.asset.clone().unwrap_or_else(|| "near".to_owned());
    let needs = |what: Option<&str>, name: &'static str| {
        what.map(str::to_owned)
            .ok_or_else(|| ApiError::bad(name, format!("metric '{}' needs '{name}'", q.metric)))
    };
    let mut f = Filter::default();
    let (unit, samples) = match q.metric.as_str() {
        "jobs" => {
            if let Some(n) = node {
                let p = f.int(n);
                f.push(format!("node_id = {p}"));
            }
            if let Some(m) = &q.model {
                let p = f.text(m.clone());
                f.push(format!("model_id = {p}"));
            }
            let sql = format!("SELECT created_ns AS t FROM jobs{}", f.where_sql());
            let rows = f.bind(sqlx::query(&sql)).fetch_all(&ctx.db.read).await?;
            let samples = rows
                .iter()
                .map(|r| Ok((rows::height(r, "t")?, 1)))
                .collect::<Result<_, sqlx::Error>>()?;
            ("count".to_owned(), Samples::Sums(samples))
        }
        "volume" | "node_earnings" => {
            if q.metric == "volume" {
                f.push("kind IN ('provider', 'royalty', 'protocol_fee')".to_owned());
            } else {
                needs(q.node.as_deref(), "node")?;
                f.push("kind = 'provider'".to_owned());
            }
            let p = f.text(asset.clone());
            f.push(format!("asset = {p}"));
            if let Some(n) = node {
                let p = f.int(n);
                f.push(format!("node_id = {p}"));
            }
            let sql = format!(
                "SELECT timestamp_ns AS t, amount FROM payouts{}",
                f.where_sql()
            );
            (asset.clone(), Samples::Sums(amounts(&ctx, &sql, &f).await?))
        }
        "model_revenue" => {
            let model = f.text(needs(q.model.as_deref(), "model")?);
            let p = f.text(asset.clone());
            f.push(format!(
                "model_id = {model} AND kind = 'deposit' AND asset = {p}"
            ));
            let sql = format!(
                "SELECT timestamp_ns AS t, amount FROM revenue{}",
                f.where_sql()
            );
            (asset.clone(), Samples::Sums(amounts(&ctx, &sql, &f).await?))
        }
        "nodes" | "gpus" => {
            let changes = sqlx::query(
                "SELECT node_id, status, timestamp_ns FROM node_status_history ORDER BY seq",
            )
            .fetch_all(&ctx.db.read)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    rows::height(r, "timestamp_ns")?,
                    rows::int(r, "node_id")?,
                    rows::text(r, "status")? == "active",
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
            // Each node weighs 1, or its GPU count.
            let mut weight: HashMap<i64, u128> = HashMap::new();
            if q.metric == "gpus" {
                for r in
                    sqlx::query("SELECT node_id, COUNT(*) AS n FROM node_gpus GROUP BY node_id")
                        .fetch_all(&ctx.db.read)
                        .await?
                {
                    let n = u128::try_from(rows::int(&r, "n")?).unwrap_or(0);
                    weight.insert(rows::int(&r, "node_id")?, n);
                }
            } else {
                for (_, id, _) in &changes {
                    weight.insert(*id, 1);
                }
            }
            ("count".to_owned(), Samples::Active(changes, weight))
        }
        other => {
            return Err(ApiError::bad(
                "metric",
                format!(
                    "'{other}': expected jobs, volume, nodes, gpus, node_earnings or model_revenue"
                ),
            ));
        }
    };
    let mut conn = ctx.db.read.acquire().await?;
    let now = checkpoint::load(&mut conn).await?.map(|c| c.timestamp_ns);
    Ok(Json(bucketed(q.metric, unit, samples, now, buckets)))
}

/// (time, amount) rows of a query with columns `t` and `amount`.
async fn amounts(ctx: &ApiContext, sql: &str, f: &Filter) -> Result<Vec<(u64, u128)>, sqlx::Error> {
    f.bind(sqlx::query(sql))
        .fetch_all(&ctx.db.read)
        .await?
        .iter()
        .map(|r| {
            let v =
                amount::parse("amount", &rows::text(r, "amount")?).map_err(BadValue::into_sqlx)?;
            Ok((rows::height(r, "t")?, v))
        })
        .collect()
}

/// Buckets from the first sample to `now` (the newest indexed block's time).
fn bucketed(
    metric: String,
    unit: String,
    samples: Samples,
    now: Option<u64>,
    buckets: u64,
) -> Series {
    let times: Vec<u64> = match &samples {
        Samples::Sums(s) => s.iter().map(|(t, _)| *t).collect(),
        Samples::Active(c, _) => c.iter().map(|(t, _, _)| *t).collect(),
    };
    let (Some(first), Some(last)) = (times.iter().min().copied(), times.iter().max().copied())
    else {
        return Series {
            metric,
            unit,
            bucket_ns: "0".into(),
            points: Vec::new(),
        };
    };
    let end = now.unwrap_or(last).max(last);
    let bucket = ((end - first) / buckets + 1).max(1);
    let index = |t: u64| usize::try_from(((t - first) / bucket).min(buckets - 1)).unwrap_or(0);
    let n = usize::try_from(buckets).unwrap_or(1);
    let mut values = vec![0u128; n];
    match samples {
        Samples::Sums(s) => {
            for (t, v) in s {
                // A sum of u128 amounts of one asset cannot realistically overflow; saturate
                // rather than fail the chart if it ever did.
                values[index(t)] = values[index(t)].saturating_add(v);
            }
        }
        Samples::Active(mut changes, weight) => {
            changes.sort_by_key(|(t, _, _)| *t);
            let mut active: HashMap<i64, bool> = HashMap::new();
            let mut next = changes.into_iter().peekable();
            for (i, value) in values.iter_mut().enumerate() {
                let bucket_end = first + bucket * (i as u64 + 1);
                while let Some((_, id, on)) = next.next_if(|(t, _, _)| *t < bucket_end) {
                    active.insert(id, on);
                }
                *value = active
                    .iter()
                    .filter(|(_, on)| **on)
                    .map(|(id, _)| weight.get(id).copied().unwrap_or(0))
                    .sum();
            }
        }
    }
    let points = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| Point {
            t_ns: (first + bucket * i as u64).to_string(),
            value: v.to_string(),
        })
        .collect();
    Series {
        metric,
        unit,
        bucket_ns: bucket.to_string(),
        points,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_fall_in_their_buckets_and_active_counts_are_sampled_at_bucket_ends() {
        let s = bucketed(
            "x".into(),
            "near".into(),
            Samples::Sums(vec![(0, 5), (9, 7), (10, 1)]),
            Some(19),
            2,
        );
        assert_eq!(s.bucket_ns, "10");
        assert_eq!(
            s.points
                .iter()
                .map(|p| p.value.as_str())
                .collect::<Vec<_>>(),
            ["12", "1"]
        );
        let weight = HashMap::from([(1, 8), (2, 1)]);
        let changes = vec![(0, 1, true), (12, 2, true), (15, 1, false)];
        let s = bucketed(
            "gpus".into(),
            "count".into(),
            Samples::Active(changes, weight),
            Some(19),
            2,
        );
        assert_eq!(
            s.points
                .iter()
                .map(|p| p.value.as_str())
                .collect::<Vec<_>>(),
            ["8", "1"]
        );
        let empty = bucketed(
            "x".into(),
            "count".into(),
            Samples::Sums(vec![]),
            Some(5),
            3,
        );
        assert!(empty.points.is_empty());
    }
}
