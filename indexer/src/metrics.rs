//! Prometheus metrics, served at `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Every metric the indexer exports, registered in its own registry (tests build several
/// indexers in one process, so nothing goes into the global default registry).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub blocks: IntCounter,
    pub skipped_heights: IntCounter,
    /// Events applied, by standard.
    pub events: IntCounterVec,
    /// Events refused, by reason (`malformed`, `foreign`, `orphan`, `bad_value`).
    pub rejected: IntCounterVec,
    /// Values that do not fit their column or do not parse, by field: events skipped at
    /// ingest and API reads answered 500 (see [`crate::db::BadValue`]).
    pub bad_values: IntCounterVec,
    pub indexed_height: IntGauge,
    pub chain_head: IntGauge,
    pub source_errors: IntCounter,
    pub http_requests: IntCounterVec,
    pub http_seconds: HistogramVec,
    pub feed_subscribers: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("ecloud_indexer".into()), None)?;
        let blocks = IntCounter::new("blocks_total", "Blocks ingested")?;
        let skipped_heights = IntCounter::new(
            "skipped_heights_total",
            "Heights without a block (chain skips)",
        )?;
        let events =
            IntCounterVec::new(Opts::new("events_total", "Events applied"), &["standard"])?;
        let rejected = IntCounterVec::new(
            Opts::new("events_rejected_total", "Event logs not applied"),
            &["reason"],
        )?;
        let bad_values = IntCounterVec::new(
            Opts::new(
                "bad_values_total",
                "Values that do not fit or do not parse (event skipped or read refused)",
            ),
            &["field"],
        )?;
        let indexed_height = IntGauge::new("indexed_height", "Last indexed block height")?;
        let chain_head = IntGauge::new("chain_head", "Last final height seen at the source")?;
        let source_errors = IntCounter::new("source_errors_total", "Failed block source calls")?;
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests"),
            &["route", "status"],
        )?;
        let http_seconds = HistogramVec::new(
            HistogramOpts::new("http_request_seconds", "HTTP request latency").buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
            ]),
            &["route"],
        )?;
        let feed_subscribers = IntGauge::new("feed_subscribers", "Open worker feed streams")?;
        registry.register(Box::new(blocks.clone()))?;
        registry.register(Box::new(skipped_heights.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(bad_values.clone()))?;
        registry.register(Box::new(indexed_height.clone()))?;
        registry.register(Box::new(chain_head.clone()))?;
        registry.register(Box::new(source_errors.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_seconds.clone()))?;
        registry.register(Box::new(feed_subscribers.clone()))?;
        Ok(Self {
            registry,
            blocks,
            skipped_heights,
            events,
            rejected,
            bad_values,
            indexed_height,
            chain_head,
            source_errors,
            http_requests,
            http_seconds,
            feed_subscribers,
        })
    }

    /// Counts a value refused with `bad`.
    pub fn bad_value(&self, bad: &crate::db::BadValue) {
        self.bad_values.with_label_values(&[bad.field]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
