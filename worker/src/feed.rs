//! Where the node learns about work: the indexer's server-sent-event feed
//! (`/v1/nodes/{id}/feed`, resumed with `Last-Event-ID`), falling back to the indexer's paged
//! `/v1/nodes/{id}/offers`, and to the marketplace contract itself (`open_jobs_for_node`)
//! when the indexer is down. The feed only says "look at job N": the job is always read from
//! the chain before it is claimed, so a wrong or stale indexer cannot make the node do
//! anything the contract would not accept.

use std::time::{Duration, Instant};

use enclave_cloud_common::{JobId, NodeId, RequestId};
use protocol::indexer::{FeedItem, Page};
use tokio::sync::{mpsc, watch};

use crate::chain::NodeChain;
use crate::metrics::Metrics;

/// Something to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Offer {
    Job(JobId),
    Request(RequestId),
}

/// Which source the feed uses now (the `worker_feed_mode` gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedMode {
    Stream = 0,
    IndexerPoll = 1,
    ChainPoll = 2,
}

#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// The indexer's base URL; `None`: poll the chain only.
    pub indexer_url: Option<String>,
    pub node_id: NodeId,
    /// Pause between polls when the stream is down.
    pub poll_interval: Duration,
    /// How often a poller tries the stream again.
    pub stream_retry: Duration,
}

/// The offer an indexer feed item names, if it names one this worker knows.
fn offer_of(item: &FeedItem) -> Option<Offer> {
    match item.kind.as_str() {
        "job" => item
            .job
            .as_ref()
            .and_then(|j| j.job_id.parse().ok())
            .map(Offer::Job),
        "request" => item
            .request
            .as_ref()
            .and_then(|r| r.request_id.parse().ok())
            .map(Offer::Request),
        _ => None,
    }
}

/// Server-sent events parser: feed it bytes, get `(id, data)` of complete events.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: String,
    id: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<(Option<String>, String)> {
        self.buffer.push_str(&String::from_utf8_lossy(chunk));
        let mut events = Vec::new();
        while let Some(end) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push((self.id.take(), self.data.join("\n")));
                    self.data.clear();
                }
                continue;
            }
            if line.starts_with(':') {
                continue; // comment / keep-alive
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "id" => self.id = Some(value.to_owned()),
                "data" => self.data.push(value.to_owned()),
                _ => {}
            }
        }
        events
    }
}

/// Runs until `shutdown` turns true, sending offers to `out`.
pub async fn run(
    config: FeedConfig,
    chain: NodeChain,
    out: mpsc::Sender<Offer>,
    mut shutdown: watch::Receiver<bool>,
    metrics: Metrics,
) {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .build()
        .unwrap_or_default();
    let mut last_id: Option<String> = None;
    let mut last_stream_try: Option<Instant> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let stream_due = last_stream_try.is_none_or(|t| t.elapsed() >= config.stream_retry);
        if let (Some(url), true) = (config.indexer_url.as_deref(), stream_due) {
            last_stream_try = Some(Instant::now());
            metrics.set_feed_mode(FeedMode::Stream);
            let streamed = tokio::select! {
                r = stream(&http, url, config.node_id, &mut last_id, &out) => r,
                _ = shutdown.changed() => return,
            };
            match streamed {
                Ok(()) => tracing::warn!("indexer feed ended; polling"),
                Err(e) => tracing::warn!(error = %e, "indexer feed unavailable; polling"),
            }
            metrics.feed_reconnects.inc();
        }
        let mode = poll_once(&http, &config, &chain, &mut last_id, &out).await;
        metrics.set_feed_mode(mode);
        tokio::select! {
            _ = tokio::time::sleep(config.poll_interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Reads the SSE stream until it ends or fails.
async fn stream(
    http: &reqwest::Client,
    base: &str,
    node_id: NodeId,
    last_id: &mut Option<String>,
    out: &mpsc::Sender<Offer>,
) -> Result<(), String> {
    let url = format!("{}/v1/nodes/{node_id}/feed", base.trim_end_matches('/'));
    let mut request = http.get(&url).header("accept", "text/event-stream");
    if let Some(id) = last_id.as_deref() {
        request = request.header("last-event-id", id);
    }
    let mut response = request.send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    tracing::info!(%url, resume_after = ?last_id, "following the indexer feed");
    let mut parser = SseParser::default();
    // The indexer sends a keep-alive every 15 s: silence for longer means it is gone.
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(40), response.chunk())
        .await
        .map_err(|_| "no data or keep-alive for 40 s".to_owned())?
        .map_err(|e| e.to_string())?
    {
        for (id, data) in parser.push(&chunk) {
            match serde_json::from_str::<FeedItem>(&data) {
                Ok(item) => {
                    if let Some(offer) = offer_of(&item) {
                        out.send(offer)
                            .await
                            .map_err(|_| "worker stopped".to_owned())?;
                    }
                    *last_id = id.or(Some(item.id));
                }
                Err(e) => tracing::warn!(error = %e, "unreadable feed event"),
            }
        }
    }
    Ok(())
}

/// One poll: the indexer's pages, else the contract. Returns the source that answered.
async fn poll_once(
    http: &reqwest::Client,
    config: &FeedConfig,
    chain: &NodeChain,
    last_id: &mut Option<String>,
    out: &mpsc::Sender<Offer>,
) -> FeedMode {
    if let Some(base) = config.indexer_url.as_deref() {
        match poll_indexer(http, base, config.node_id, last_id, out).await {
            Ok(()) => return FeedMode::IndexerPoll,
            Err(e) => tracing::debug!(error = %e, "indexer offers unavailable; asking the chain"),
        }
    }
    match chain.open_jobs_for_node(config.node_id, 0, 100).await {
        Ok(jobs) => {
            for job in jobs {
                if out.send(Offer::Job(job.job_id)).await.is_err() {
                    break;
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "open_jobs_for_node failed"),
    }
    FeedMode::ChainPoll
}

async fn poll_indexer(
    http: &reqwest::Client,
    base: &str,
    node_id: NodeId,
    last_id: &mut Option<String>,
    out: &mpsc::Sender<Offer>,
) -> Result<(), String> {
    let url = format!("{}/v1/nodes/{node_id}/offers", base.trim_end_matches('/'));
    let mut request = http.get(&url).query(&[("limit", "100")]);
    if let Some(after) = last_id.as_deref() {
        request = request.query(&[("after", after)]);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let page: Page<FeedItem> = response.json().await.map_err(|e| e.to_string())?;
    for item in page.items {
        if let Some(offer) = offer_of(&item) {
            out.send(offer)
                .await
                .map_err(|_| "worker stopped".to_owned())?;
        }
        *last_id = Some(item.id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(
            p.push(b": keep-alive\n\nid: 5\nevent: job\ndata: {\"a\"")
                .is_empty()
        );
        let events = p.push(b":1}\n\nid: 6\r\ndata: x\r\n\r\n");
        assert_eq!(
            events,
            vec![
                (Some("5".into()), "{\"a\":1}".into()),
                (Some("6".into()), "x".into())
            ]
        );
        assert!(p.push(b"data: a\ndata: b\n").is_empty());
        assert_eq!(p.push(b"\n"), vec![(None, "a\nb".into())]);
    }

    /// A feed item as the indexer serialises it.
    fn item(id: &str, kind: &str, job: Option<&str>, request: Option<&str>) -> FeedItem {
        let job = job.map(|id| {
            serde_json::json!({
                "job_id": id, "user": "alice.near", "model_id": "m", "asset": "near",
                "price_cap": "1", "claim_deadline_ns": "1", "deadline_ns": "2",
                "target": {"kind": "any", "node_id": null, "region": null, "gpu_model": null,
                           "max_price_per_million": null},
                "input": {}, "user_key": "00", "status": "open", "node_id": null,
                "operator": null, "usage": null, "output": null, "output_hash": null,
                "settlement": null, "cancel_reason": null, "refund": null, "slashed": null,
                "created_height": 1, "created_at_ns": "1", "updated_height": 1
            })
        });
        let request = request.map(|id| {
            serde_json::json!({
                "request_id": id, "caller": "app.near", "model_id": "m", "deposit": "1",
                "input": {}, "status": "pending", "node_id": null, "usage": null,
                "settlement": null, "refund": null, "created_height": 1, "created_at_ns": "1",
                "updated_height": 1
            })
        });
        serde_json::from_value(
            serde_json::json!({"id": id, "kind": kind, "job": job, "request": request}),
        )
        .unwrap()
    }

    #[test]
    fn feed_items_become_offers() {
        let job = item("12", "job", Some("3"), None);
        assert_eq!(offer_of(&job), Some(Offer::Job(JobId(3))));
        let request = item("13", "request", None, Some("9"));
        assert_eq!(offer_of(&request), Some(Offer::Request(RequestId(9))));
        assert_eq!(offer_of(&item("14", "other", None, None)), None);
        assert_eq!(offer_of(&item("15", "job", Some("x"), None)), None);
    }
}
