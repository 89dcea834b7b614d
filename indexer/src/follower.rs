//! Follows the chain: catches up from the checkpoint (or the start height) to the final
//! head, then polls for new final blocks. Heights are visited strictly in order and a
//! height is only left behind once its block (or its absence) is committed, so no height
//! is ever skipped; failures are retried with exponential backoff.

use crate::db::Db;
use crate::db::checkpoint::{self, to_i64};
use crate::ingest::{IngestError, Ingestor};
use crate::metrics::Metrics;
use crate::source::BlockSource;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What the API reports about the follower, shared between the two.
#[derive(Debug)]
pub struct ChainStatus {
    /// Newest final height seen at the source (0 before the first answer).
    pub head: AtomicU64,
    /// Last committed height; the worker feed wakes up on every change.
    pub indexed: watch::Sender<u64>,
    pub source_ok: AtomicBool,
    pub source: String,
    /// Set at shutdown: open feed streams end so the HTTP server can drain.
    pub closing: AtomicBool,
}

impl ChainStatus {
    pub fn new(source: String, indexed: u64) -> Arc<Self> {
        Arc::new(Self {
            head: AtomicU64::new(0),
            indexed: watch::Sender::new(indexed),
            source_ok: AtomicBool::new(false),
            source,
            closing: AtomicBool::new(false),
        })
    }

    /// Ends every feed stream (they wake on `indexed` and see `closing`).
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.indexed.send_modify(|_| {});
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }
}

/// How the follower paces itself.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// First height to index when the database has no checkpoint yet.
    pub start_height: u64,
    /// Pause between head polls once caught up.
    pub poll_interval: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Stop (return) once this height is committed; `None` follows forever.
    pub stop_at: Option<u64>,
}

impl Default for FollowConfig {
    fn default() -> Self {
        Self {
            start_height: 0,
            poll_interval: Duration::from_millis(500),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            stop_at: None,
        }
    }
}

/// Exponential backoff between retries of one failing call.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    failures: u32,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
            failures: 0,
        }
    }

    /// The delay before the next attempt; doubles up to the maximum.
    fn fail(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        self.failures += 1;
        delay
    }

    /// Returns how many failures preceded this success.
    fn succeed(&mut self) -> u32 {
        self.next = self.min;
        std::mem::take(&mut self.failures)
    }
}

pub struct Follower<S> {
    pub source: S,
    pub db: Db,
    pub ingestor: Ingestor,
    pub config: FollowConfig,
    pub status: Arc<ChainStatus>,
    pub metrics: Metrics,
}

impl<S: BlockSource> Follower<S> {
    /// Runs until `shutdown` turns true (or `stop_at` is reached).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), sqlx::Error> {
        let mut next = self.resume_height().await?;
        let mut backoff = Backoff::new(self.config.min_backoff, self.config.max_backoff);
        tracing::info!(source = %self.source.describe(), next, "following final blocks");
        loop {
            if stopping(&shutdown) || self.config.stop_at.is_some_and(|s| next > s) {
                return Ok(());
            }
            let head = match self.source.final_head().await {
                Ok(h) => h,
                Err(e) => {
                    self.source_failed(&mut backoff, &e, "final head", &mut shutdown)
                        .await;
                    continue;
                }
            };
            self.source_recovered(&mut backoff);
            self.publish_head(head);
            if next > head {
                sleep_or_shutdown(self.config.poll_interval, &mut shutdown).await;
                continue;
            }
            let mut head = head;
            let mut head_asked = Instant::now();
            while next <= head && !stopping(&shutdown) {
                // Catching up can take hours; `/v1/status` must still show how far the chain
                // is, so ask for the head again every poll interval on the way.
                if head_asked.elapsed() >= self.config.poll_interval {
                    head_asked = Instant::now();
                    // A failure here changes nothing: the loop asks again once caught up.
                    if let Ok(newer) = self.source.final_head().await {
                        head = head.max(newer);
                        self.publish_head(head);
                    }
                }
                match self.step(next).await {
                    Ok(()) => {
                        self.source_recovered(&mut backoff);
                        self.status.indexed.send_replace(next);
                        next += 1;
                        if self.config.stop_at.is_some_and(|s| next > s) {
                            break;
                        }
                    }
                    Err(StepError::Source(e)) => {
                        let what = format!("block {next}");
                        self.source_failed(&mut backoff, &e, &what, &mut shutdown)
                            .await;
                    }
                    Err(StepError::Ingest(IngestError::Replay { checkpoint, .. })) => {
                        // Someone else (a second indexer on the same database) moved on.
                        tracing::warn!(
                            checkpoint,
                            "checkpoint is ahead of this follower; resuming after it"
                        );
                        next = checkpoint + 1;
                    }
                    Err(StepError::Ingest(e)) => {
                        let delay = backoff.fail();
                        tracing::error!(height = next, error = %e, ?delay, "cannot ingest block; retrying the same height");
                        sleep_or_shutdown(delay, &mut shutdown).await;
                    }
                }
            }
        }
    }

    /// What `/v1/status` and the metrics report as the chain's head.
    fn publish_head(&self, head: u64) {
        self.status.head.store(head, Ordering::Relaxed);
        match to_i64(head, "chain_head") {
            Ok(head) => self.metrics.chain_head.set(head),
            Err(bad) => {
                self.metrics.bad_value(&bad);
                tracing::error!(error = %bad, "the source's final head does not fit; not shown");
            }
        }
    }

    async fn resume_height(&self) -> Result<u64, sqlx::Error> {
        let mut conn = self.db.pool.acquire().await?;
        Ok(match checkpoint::load(&mut conn).await? {
            Some(cp) => {
                if self.config.start_height > cp.height + 1 {
                    tracing::warn!(
                        checkpoint = cp.height,
                        start_height = self.config.start_height,
                        "database already has a checkpoint; the start height is ignored"
                    );
                }
                self.status.indexed.send_replace(cp.height);
                cp.height + 1
            }
            None => self.config.start_height,
        })
    }

    async fn step(&self, height: u64) -> Result<(), StepError> {
        match self.source.block(height).await.map_err(StepError::Source)? {
            Some(msg) => {
                let report = self.ingestor.apply_block(&self.db, &msg).await?;
                let refused = report.malformed + report.foreign + report.orphan + report.bad_value;
                if report.applied + refused > 0 {
                    tracing::info!(
                        height,
                        applied = report.applied,
                        malformed = report.malformed,
                        foreign = report.foreign,
                        orphan = report.orphan,
                        bad_value = report.bad_value,
                        "block indexed"
                    );
                } else {
                    tracing::debug!(height, "block indexed (no events)");
                }
            }
            None => {
                tracing::debug!(height, "no block at this height (skipped by the chain)");
                self.ingestor.apply_skipped(&self.db, height).await?;
            }
        }
        Ok(())
    }

    async fn source_failed(
        &self,
        backoff: &mut Backoff,
        error: &crate::source::SourceError,
        what: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        self.metrics.source_errors.inc();
        self.status.source_ok.store(false, Ordering::Relaxed);
        let delay = backoff.fail();
        tracing::warn!(
            source = %self.source.describe(), attempt = backoff.failures, ?delay,
            "block source down or failing while fetching {what}: {error}; retrying"
        );
        sleep_or_shutdown(delay, shutdown).await;
    }

    fn source_recovered(&self, backoff: &mut Backoff) {
        self.status.source_ok.store(true, Ordering::Relaxed);
        let failures = backoff.succeed();
        if failures > 0 {
            tracing::info!(source = %self.source.describe(), failures, "block source is back");
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Source(crate::source::SourceError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// Shutdown was asked for, or whoever could ask for it is gone.
fn stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

async fn sleep_or_shutdown(delay: Duration, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = shutdown.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
    use super::*;
    use crate::block::StreamerMessage;
    use crate::fixture::{ChainBuilder, scenario};
    use crate::source::SourceError;
    use std::sync::Mutex;

    /// A chain of empty blocks whose final head jumps from `first_head` to `later_head`
    /// once block `jump_after` has been fetched; each block takes `fetch` to deliver.
    struct JumpingChain {
        blocks: Mutex<ChainBuilder>,
        fetched: AtomicU64,
        first_head: u64,
        later_head: u64,
        jump_after: u64,
        fetch: Duration,
    }

    impl BlockSource for JumpingChain {
        fn describe(&self) -> String {
            "jumping chain".into()
        }

        async fn final_head(&self) -> Result<u64, SourceError> {
            Ok(if self.fetched.load(Ordering::SeqCst) >= self.jump_after {
                self.later_head
            } else {
                self.first_head
            })
        }

        async fn block(&self, height: u64) -> Result<Option<StreamerMessage>, SourceError> {
            tokio::time::sleep(self.fetch).await;
            let block = self.blocks.lock().unwrap().block(&[]);
            assert_eq!(block.height(), height, "asked in order");
            self.fetched.store(height, Ordering::SeqCst);
            Ok(Some(block))
        }
    }

    #[tokio::test]
    async fn the_head_is_refreshed_while_catching_up() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&crate::db::sqlite_url_in(dir.path()))
            .await
            .unwrap();
        let metrics = Metrics::new().unwrap();
        let status = ChainStatus::new("jumping chain".into(), 0);
        let follower = Follower {
            source: JumpingChain {
                blocks: Mutex::new(ChainBuilder::new(1)),
                fetched: AtomicU64::new(0),
                first_head: 60,
                later_head: 36_000,
                jump_after: 5,
                fetch: Duration::from_millis(10),
            },
            db,
            ingestor: Ingestor::new(scenario::contracts(), metrics.clone()),
            config: FollowConfig {
                start_height: 1,
                poll_interval: Duration::from_millis(50),
                stop_at: Some(60),
                ..FollowConfig::default()
            },
            status: status.clone(),
            metrics,
        };
        let (_stop, stop_rx) = watch::channel(false);
        let run = tokio::spawn(follower.run(stop_rx));
        // Well before the first 60 blocks are indexed, the status knows of the jump.
        let mut seen = None;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if status.head.load(Ordering::Relaxed) == 36_000 {
                seen = Some(*status.indexed.borrow());
                break;
            }
        }
        let indexed = seen.expect("the head was never refreshed while catching up");
        assert!(
            indexed < 60,
            "refreshed only after catching up (indexed {indexed})"
        );
        run.await.unwrap().unwrap();
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<u128> = (0..4).map(|_| b.fail().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        assert_eq!(b.succeed(), 4);
        assert_eq!(b.fail().as_millis(), 100);
    }
}
