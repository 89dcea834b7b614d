//! The keeper's counters, and `--metrics-listen`: a Prometheus text endpoint at `/metrics`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;

/// Counts since the keeper started (a restart starts them at zero, as Prometheus expects of
/// counters), and two gauges of the last pass.
#[derive(Debug, Default)]
pub struct Metrics {
    pub passes: AtomicU64,
    pub grants: AtomicU64,
    pub revocations: AtomicU64,
    /// Failed reads, refused or failed transactions.
    pub errors: AtomicU64,
    /// Nodes holding a grant of the current key for their current attestation after the
    /// last pass.
    pub granted_nodes: AtomicU64,
    /// Unix seconds at the end of the last pass.
    pub last_pass_unix: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every figure, labelled with the model.
    pub fn render(&self, model: &str) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let rows = [
            (
                "ecloud_keeper_passes_total",
                "counter",
                "Passes over chain state.",
                get(&self.passes),
            ),
            (
                "ecloud_keeper_grants_total",
                "counter",
                "Model keys granted (grant_key stored).",
                get(&self.grants),
            ),
            (
                "ecloud_keeper_revocations_total",
                "counter",
                "Grants revoked.",
                get(&self.revocations),
            ),
            (
                "ecloud_keeper_errors_total",
                "counter",
                "Failed reads and refused or failed transactions.",
                get(&self.errors),
            ),
            (
                "ecloud_keeper_granted_nodes",
                "gauge",
                "Nodes holding an up-to-date grant after the last pass.",
                get(&self.granted_nodes),
            ),
            (
                "ecloud_keeper_last_pass_timestamp_seconds",
                "gauge",
                "When the last pass ended (unix seconds).",
                get(&self.last_pass_unix),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{{model=\"{model}\"}} {value}");
        }
        out
    }
}

/// Serves `GET /metrics` on `addr` in the background; returns the bound address (port 0
/// picks a free one).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    model: String,
) -> Result<SocketAddr, Error> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::BadInput(format!("--metrics-listen {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::BadInput(format!("--metrics-listen {addr}: {e}")))?;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let body = metrics.render(&model);
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    body,
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("keeper: the metrics endpoint stopped: {e}");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter_with_its_type() {
        let m = Metrics::default();
        Metrics::add(&m.grants, 2);
        Metrics::add(&m.errors, 1);
        let text = m.render("llama");
        assert!(text.contains("# TYPE ecloud_keeper_grants_total counter\n"));
        assert!(text.contains("ecloud_keeper_grants_total{model=\"llama\"} 2\n"));
        assert!(text.contains("ecloud_keeper_errors_total{model=\"llama\"} 1\n"));
        assert!(text.contains("ecloud_keeper_revocations_total{model=\"llama\"} 0\n"));
        assert!(text.contains("# TYPE ecloud_keeper_granted_nodes gauge\n"));
    }

    #[tokio::test]
    async fn the_endpoint_serves_the_counters() {
        let m = Arc::new(Metrics::default());
        Metrics::add(&m.revocations, 3);
        let addr = serve("127.0.0.1:0".parse().unwrap(), m, "llama".into())
            .await
            .unwrap();
        let body = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            body.contains("ecloud_keeper_revocations_total{model=\"llama\"} 3"),
            "{body}"
        );
    }
}
