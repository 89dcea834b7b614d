//! Prometheus metrics of `worker run`, served at `/metrics`.

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, IntCounter, IntGauge, Registry, TextEncoder,
};

use crate::feed::FeedMode;

/// Cheap to clone (the collectors are shared handles).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub jobs_claimed: IntCounter,
    pub claims_lost: IntCounter,
    pub jobs_settled: IntCounter,
    pub jobs_failed: IntCounter,
    pub jobs_resumed: IntCounter,
    pub jobs_given_up: IntCounter,
    pub results_refused: IntCounter,
    pub offers_declined: IntCounter,
    pub outputs_stored: IntCounter,
    pub requests_answered: IntCounter,
    pub heartbeats: IntCounter,
    pub heartbeat_failures: IntCounter,
    pub reattestations: IntCounter,
    pub feed_reconnects: IntCounter,
    pub feed_mode: IntGauge,
    pub in_flight: IntGauge,
    pub job_seconds: Histogram,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("metric names and help texts are constants");
    let _ = registry.register(Box::new(c.clone()));
    c
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let feed_mode = IntGauge::new(
            "worker_feed_mode",
            "Where offers come from: 0 indexer stream, 1 indexer pages, 2 the contract",
        )
        .expect("metric names and help texts are constants");
        let in_flight = IntGauge::new("worker_jobs_in_flight", "Jobs and requests being processed")
            .expect("metric names and help texts are constants");
        let job_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "worker_job_seconds",
                "From claim to settled result (inference and both transactions)",
            )
            .buckets(vec![0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0]),
        )
        .expect("metric names and help texts are constants");
        let _ = registry.register(Box::new(feed_mode.clone()));
        let _ = registry.register(Box::new(in_flight.clone()));
        let _ = registry.register(Box::new(job_seconds.clone()));
        Self {
            jobs_claimed: counter(
                &registry,
                "worker_jobs_claimed_total",
                "Jobs this node claimed",
            ),
            claims_lost: counter(
                &registry,
                "worker_claims_lost_total",
                "Claims refused (another node was first, or the job closed)",
            ),
            jobs_settled: counter(
                &registry,
                "worker_jobs_settled_total",
                "Results accepted and settled",
            ),
            jobs_failed: counter(
                &registry,
                "worker_jobs_failed_total",
                "Job attempts that failed (retried while the deadline allows)",
            ),
            jobs_resumed: counter(
                &registry,
                "worker_jobs_resumed_total",
                "Journaled jobs resumed after a restart",
            ),
            jobs_given_up: counter(
                &registry,
                "worker_jobs_given_up_total",
                "Claimed jobs given up (result refused by the marketplace, deadline passed, output too large to send)",
            ),
            results_refused: counter(
                &registry,
                "worker_results_refused_total",
                "Result transactions the marketplace refused (never resent as they were)",
            ),
            offers_declined: counter(
                &registry,
                "worker_offers_declined_total",
                "Open jobs not claimed: cap below the input's cost, too little time left, input not for this node",
            ),
            outputs_stored: counter(
                &registry,
                "worker_outputs_stored_total",
                "Outputs over the inline limit stored and submitted by hash + URI",
            ),
            requests_answered: counter(
                &registry,
                "worker_requests_answered_total",
                "Agent requests answered",
            ),
            heartbeats: counter(&registry, "worker_heartbeats_total", "Heartbeats sent"),
            heartbeat_failures: counter(
                &registry,
                "worker_heartbeat_failures_total",
                "Heartbeats that failed",
            ),
            reattestations: counter(
                &registry,
                "worker_reattestations_total",
                "Re-attestations sent",
            ),
            feed_reconnects: counter(
                &registry,
                "worker_feed_reconnects_total",
                "Times the indexer stream ended or could not be opened",
            ),
            feed_mode,
            in_flight,
            job_seconds,
            registry,
        }
    }

    pub fn set_feed_mode(&self, mode: FeedMode) {
        self.feed_mode.set(mode as i64);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric() {
        let m = Metrics::new();
        m.jobs_claimed.inc();
        m.set_feed_mode(FeedMode::ChainPoll);
        let text = m.render();
        assert!(text.contains("worker_jobs_claimed_total 1"), "{text}");
        assert!(text.contains("worker_feed_mode 2"), "{text}");
        assert!(text.contains("worker_job_seconds_bucket"), "{text}");
    }
}
