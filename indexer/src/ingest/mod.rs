//! Turns one final block into table writes, committed with the checkpoint in one
//! transaction: a crash before the commit leaves nothing of the block behind, a crash after
//! it leaves the checkpoint past the block, so no event is ever lost or applied twice.

pub(crate) mod channels;
pub(crate) mod governance;
mod ledger;
mod marketplace;
mod model;
mod nep141;
mod registry;

use crate::block::{LogLine, StreamerMessage};
use crate::db::checkpoint::{self, Checkpoint, bump_counter, to_i64};
use crate::db::{BadValue, Db};
use crate::metrics::Metrics;
use enclave_cloud_common::events::{AnyEvent, EVENT_JSON_PREFIX, ModelEvent};
use near_sdk::AccountId;
use sqlx::AnyConnection;

/// The contract accounts whose events are trusted. Anyone can write a log line that looks
/// like a marketplace event; only the configured account's logs are believed.
#[derive(Debug, Clone)]
pub struct Contracts {
    pub registry: AccountId,
    pub marketplace: AccountId,
    /// Creates model tokens; every token it announces is followed from then on.
    pub factory: Option<AccountId>,
    /// NEP-141 tokens accepted for payment; their balances are followed.
    pub payment_tokens: Vec<AccountId>,
}

/// Where an event sits in the chain.
#[derive(Debug, Clone, Copy)]
pub struct EventCtx<'a> {
    /// `height * SEQ_PER_BLOCK + index of the log line in the block`.
    pub seq: i64,
    pub height: i64,
    pub timestamp_ns: i64,
    pub receipt_id: &'a str,
    pub executor: &'a str,
    /// Running amounts changed so far in this block.
    pub pending: &'a std::sync::Mutex<ledger::Pending>,
}

/// The JSON text of an event's value, for a TEXT column.
fn json_text<T: serde::Serialize>(v: &T, field: &'static str) -> Result<String, BadValue> {
    serde_json::to_string(v).map_err(|e| BadValue::new(field, e, "cannot be written as JSON"))
}

/// Room for this many log lines per block in `seq`.
pub const SEQ_PER_BLOCK: i64 = 1_000_000;

/// What happened to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Stored,
    /// Emitted by an account that is not allowed to emit it.
    Foreign,
    /// Refers to something the indexer never saw (e.g. a job before the start height).
    Orphan(String),
}

/// Why one event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The database failed: the block fails and is retried.
    #[error("database error: {0}")]
    Db(sqlx::Error),
    /// A value of the event (or one it updates) does not fit or does not parse: the event
    /// is skipped, the rest of the block is applied.
    #[error("bad value: {0}")]
    BadValue(#[from] BadValue),
}

impl From<sqlx::Error> for ApplyError {
    fn from(e: sqlx::Error) -> Self {
        match BadValue::from_sqlx(e) {
            Ok(bad) => Self::BadValue(bad),
            Err(e) => Self::Db(e),
        }
    }
}

/// Why a block could not be ingested. The follower retries; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The block's own height or time does not fit the database (a broken source): no event
    /// of it can be placed, so it is not indexed at all.
    #[error("block {height}: {bad}")]
    BadValue { height: u64, bad: BadValue },
    #[error(
        "block {height} does not follow the indexed chain: its prev_hash is {prev_hash}, the last indexed block is {indexed}"
    )]
    Discontinuity {
        height: u64,
        prev_hash: String,
        indexed: String,
    },
    #[error("block {height} is not above the checkpoint {checkpoint}")]
    Replay { height: u64, checkpoint: u64 },
}

/// What one block contributed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockReport {
    pub height: u64,
    pub applied: u64,
    pub malformed: u64,
    pub foreign: u64,
    pub orphan: u64,
    /// Events skipped because a value did not fit or did not parse.
    pub bad_value: u64,
    /// Applied events by standard, for the metrics (published once the block committed).
    standards: std::collections::BTreeMap<&'static str, u64>,
    /// The field of each bad value, for the metrics.
    bad_fields: Vec<&'static str>,
}

/// Applies blocks to the database.
#[derive(Clone)]
pub struct Ingestor {
    contracts: Contracts,
    metrics: Metrics,
}

impl Ingestor {
    pub fn new(contracts: Contracts, metrics: Metrics) -> Self {
        Self { contracts, metrics }
    }

    /// Applies `msg` and moves the checkpoint to its height, atomically.
    ///
    /// An event with a value that does not fit or does not parse is skipped, the rest of
    /// the block applied (see [`Self::apply_checked`]). Almost no block has one, so a block
    /// is first applied without a savepoint per event (measured: savepoints on every event
    /// halve ingest throughput); if a bad value turns up, that attempt is rolled back whole
    /// and the block applied again with a savepoint per event, which skips exactly the bad
    /// events. Metrics are published once the block committed, so nothing counts twice.
    pub async fn apply_block(
        &self,
        db: &Db,
        msg: &StreamerMessage,
    ) -> Result<BlockReport, IngestError> {
        if let Some(report) = self.attempt(db, msg, false).await? {
            return Ok(report);
        }
        let header = &msg.block.header;
        tracing::debug!(
            height = header.height,
            "a bad value in the block: applying it again, each event in a savepoint"
        );
        match self.attempt(db, msg, true).await? {
            Some(report) => Ok(report),
            // A careful attempt handles bad values itself and always returns a report.
            None => Err(IngestError::BadValue {
                height: header.height,
                bad: BadValue::new("block", header.height, "could not be applied"),
            }),
        }
    }

    /// One attempt at a block: `None` when not `careful` and an event holds a bad value
    /// (nothing was written).
    async fn attempt(
        &self,
        db: &Db,
        msg: &StreamerMessage,
        careful: bool,
    ) -> Result<Option<BlockReport>, IngestError> {
        let header = &msg.block.header;
        let bad_header = |bad: BadValue| {
            self.metrics.bad_value(&bad);
            IngestError::BadValue {
                height: header.height,
                bad,
            }
        };
        let height = to_i64(header.height, "block_height").map_err(bad_header)?;
        let timestamp_ns = to_i64(header.timestamp_nanosec, "timestamp_ns").map_err(bad_header)?;
        let base = height.checked_mul(SEQ_PER_BLOCK).ok_or_else(|| {
            bad_header(BadValue::new(
                "block_height",
                height,
                "too high to number its events",
            ))
        })?;
        let mut tx = db.pool.begin().await?;
        if let Some(cp) = checkpoint::load(&mut tx).await? {
            if header.height <= cp.height {
                return Err(IngestError::Replay {
                    height: header.height,
                    checkpoint: cp.height,
                });
            }
            if header.prev_hash != cp.block_hash {
                return Err(IngestError::Discontinuity {
                    height: header.height,
                    prev_hash: header.prev_hash.clone(),
                    indexed: cp.block_hash,
                });
            }
        }
        let mut report = BlockReport {
            height: header.height,
            ..Default::default()
        };
        let pending = std::sync::Mutex::new(ledger::Pending::default());
        for (index, log) in msg.logs().enumerate() {
            // Past SEQ_PER_BLOCK lines a seq would collide with the next block's.
            let Some(seq) = i64::try_from(index)
                .ok()
                .filter(|i| *i < SEQ_PER_BLOCK)
                .map(|i| base + i)
            else {
                let bad = BadValue::new("log_index", index, "exceeds the lines a block may hold");
                tracing::error!(height, receipt = log.receipt_id, error = %bad, "log line not indexed");
                report.bad_value += 1;
                report.bad_fields.push(bad.field);
                continue;
            };
            let ctx = EventCtx {
                seq,
                height,
                timestamp_ns,
                receipt_id: log.receipt_id,
                executor: log.executor_id,
                pending: &pending,
            };
            match self
                .apply_log(&mut tx, &ctx, log, &mut report, careful)
                .await
            {
                Ok(()) => {}
                Err(ApplyError::Db(e)) => return Err(e.into()),
                Err(ApplyError::BadValue(_)) if !careful => {
                    tx.rollback().await?;
                    return Ok(None);
                }
                Err(ApplyError::BadValue(bad)) => {
                    return Err(IngestError::BadValue {
                        height: header.height,
                        bad,
                    });
                }
            }
        }
        let pending = pending
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ledger::flush(&mut tx, pending).await?;
        for (name, n) in [
            ("events_applied", report.applied),
            ("events_malformed", report.malformed),
            ("events_foreign", report.foreign),
            ("events_orphan", report.orphan),
            ("events_bad_value", report.bad_value),
        ] {
            if n > 0 {
                let n = to_i64(n, "event_count").map_err(BadValue::into_sqlx)?;
                bump_counter(&mut tx, name, n).await?;
            }
        }
        let cp = Checkpoint {
            height: header.height,
            block_hash: header.hash.clone(),
            timestamp_ns: header.timestamp_nanosec,
        };
        checkpoint::store(&mut tx, &cp).await?;
        tx.commit().await?;
        if report.applied > 0 {
            db.bump_generation();
        }
        self.publish(&report, height);
        Ok(Some(report))
    }

    /// The metrics of a committed block.
    fn publish(&self, report: &BlockReport, height: i64) {
        let m = &self.metrics;
        for (standard, n) in &report.standards {
            m.events.with_label_values(&[standard]).inc_by(*n);
        }
        for (reason, n) in [
            ("malformed", report.malformed),
            ("foreign", report.foreign),
            ("orphan", report.orphan),
            ("bad_value", report.bad_value),
        ] {
            if n > 0 {
                m.rejected.with_label_values(&[reason]).inc_by(n);
            }
        }
        for field in &report.bad_fields {
            m.bad_values.with_label_values(&[field]).inc();
        }
        m.blocks.inc();
        m.indexed_height.set(height);
    }

    /// Records that no block exists at `height` (a chain skip): the checkpoint moves on,
    /// the last block hash stays, so the next block's `prev_hash` still links up.
    pub async fn apply_skipped(&self, db: &Db, height: u64) -> Result<(), IngestError> {
        let gauge = to_i64(height, "block_height").map_err(|bad| {
            self.metrics.bad_value(&bad);
            IngestError::BadValue { height, bad }
        })?;
        let mut tx = db.pool.begin().await?;
        let prev = checkpoint::load(&mut tx).await?;
        if let Some(cp) = &prev
            && height <= cp.height
        {
            return Err(IngestError::Replay {
                height,
                checkpoint: cp.height,
            });
        }
        let cp = Checkpoint {
            height,
            block_hash: prev
                .as_ref()
                .map(|c| c.block_hash.clone())
                .unwrap_or_default(),
            timestamp_ns: prev.map(|c| c.timestamp_ns).unwrap_or_default(),
        };
        checkpoint::store(&mut tx, &cp).await?;
        tx.commit().await?;
        self.metrics.skipped_heights.inc();
        self.metrics.indexed_height.set(gauge);
        Ok(())
    }

    async fn apply_log(
        &self,
        conn: &mut AnyConnection,
        ctx: &EventCtx<'_>,
        log: LogLine<'_>,
        report: &mut BlockReport,
        careful: bool,
    ) -> Result<(), ApplyError> {
        if !log.line.starts_with(EVENT_JSON_PREFIX) {
            return Ok(());
        }
        // Other contracts' events (public chains are full of them) are not ours to judge.
        let emitter = self.emitter(conn, ctx.executor).await?;
        if emitter == Emitter::Untracked {
            return Ok(());
        }
        let event = match AnyEvent::parse(log.line) {
            Ok(None) => return Ok(()),
            Ok(Some(e)) => e,
            Err(e) => {
                report.malformed += 1;
                tracing::warn!(
                    height = ctx.height, receipt = ctx.receipt_id, executor = ctx.executor,
                    error = %e, "malformed event skipped"
                );
                return Ok(record_rejected(conn, ctx, &e.to_string(), log.line).await?);
            }
        };
        if let Emitter::UnannouncedToken = emitter {
            // Kept until the factory announces the token (usually the next block).
            model::hold_for_announcement(conn, ctx, log.line).await?;
            return Ok(());
        }
        self.apply_checked(conn, ctx, &event, &emitter, log.line, report, careful)
            .await?;
        if let (AnyEvent::Model(ModelEvent::ModelCreated { token, .. }), Emitter::Factory) =
            (&event, &emitter)
        {
            self.apply_held(conn, ctx, token.as_str(), report, careful)
                .await?;
        }
        Ok(())
    }

    /// Applies the events a token wrote before the factory announced it, in chain order,
    /// each with its own place in the chain.
    async fn apply_held(
        &self,
        conn: &mut AnyConnection,
        ctx: &EventCtx<'_>,
        token: &str,
        report: &mut BlockReport,
        careful: bool,
    ) -> Result<(), ApplyError> {
        let Some(model_id) = model::model_of_token(conn, token).await? else {
            return Ok(());
        };
        let emitter = Emitter::ModelToken(model_id);
        for held in model::take_held(conn, token).await? {
            let held_ctx = EventCtx {
                seq: held.seq,
                height: held.height,
                timestamp_ns: held.timestamp_ns,
                receipt_id: &held.receipt_id,
                executor: token,
                pending: ctx.pending,
            };
            // Stored only after it parsed; a line that no longer parses is dropped.
            let Ok(Some(event)) = AnyEvent::parse(&held.line) else {
                continue;
            };
            let line = &held.line;
            self.apply_checked(conn, &held_ctx, &event, &emitter, line, report, careful)
                .await?;
        }
        Ok(())
    }

    /// Applies one event. Not `careful`: directly, a bad value is returned (and aborts the
    /// attempt at the block). `careful`: inside a savepoint; an event with a value that
    /// does not fit or does not parse leaves nothing behind (its rows and running amounts
    /// are rolled back): it is logged, counted and kept in `rejected_events`, and the block
    /// goes on with the next event, so one bad value never stalls the follower nor costs
    /// other events.
    #[allow(clippy::too_many_arguments)]
    async fn apply_checked(
        &self,
        conn: &mut AnyConnection,
        ctx: &EventCtx<'_>,
        event: &AnyEvent,
        emitter: &Emitter,
        line: &str,
        report: &mut BlockReport,
        careful: bool,
    ) -> Result<(), ApplyError> {
        if !careful {
            let (standard, outcome) = self.apply_event(conn, ctx, event, emitter).await?;
            self.count(ctx, standard, outcome, report);
            return Ok(());
        }
        let mark = ledger::mark(ctx.pending);
        let mut savepoint = sqlx::Connection::begin(&mut *conn).await?;
        match self.apply_event(&mut savepoint, ctx, event, emitter).await {
            Ok((standard, outcome)) => {
                savepoint.commit().await?;
                self.count(ctx, standard, outcome, report);
                Ok(())
            }
            Err(ApplyError::BadValue(bad)) => {
                savepoint.rollback().await?;
                ledger::rollback(ctx.pending, mark);
                report.bad_value += 1;
                report.bad_fields.push(bad.field);
                tracing::error!(
                    height = ctx.height, receipt = ctx.receipt_id, executor = ctx.executor,
                    field = bad.field, value = %bad.value, error = %bad,
                    "event with a value that does not fit skipped"
                );
                Ok(record_rejected(conn, ctx, &format!("bad value: {bad}"), line).await?)
            }
            Err(e) => Err(e),
        }
    }

    /// Dispatches one event to the tables of the standard its emitter may write.
    async fn apply_event(
        &self,
        conn: &mut AnyConnection,
        ctx: &EventCtx<'_>,
        event: &AnyEvent,
        emitter: &Emitter,
    ) -> Result<(&'static str, Applied), ApplyError> {
        Ok(match (event, emitter) {
            (AnyEvent::Registry(e), Emitter::Registry) => {
                ("registry", registry::apply(conn, ctx, e).await?)
            }
            (AnyEvent::Marketplace(e), Emitter::Marketplace) => (
                "marketplace",
                marketplace::apply(conn, ctx, &self.contracts, e).await?,
            ),
            (AnyEvent::Model(e), Emitter::Factory) => {
                ("model", model::from_factory(conn, ctx, e).await?)
            }
            (AnyEvent::Model(e), Emitter::ModelToken(model_id)) => {
                ("model", model::from_token(conn, ctx, model_id, e).await?)
            }
            (AnyEvent::Nep141(e), Emitter::ModelToken(model_id)) => {
                ("nep141", nep141::apply(conn, ctx, Some(model_id), e).await?)
            }
            (AnyEvent::Nep141(e), Emitter::PaymentToken) => {
                ("nep141", nep141::apply(conn, ctx, None, e).await?)
            }
            // Each of our contracts announces its own timelock; a payment token has none.
            (
                AnyEvent::Governance(e),
                Emitter::Registry
                | Emitter::Marketplace
                | Emitter::Factory
                | Emitter::ModelToken(_),
            ) => ("governance", governance::apply(conn, ctx, e).await?),
            _ => ("foreign", Applied::Foreign),
        })
    }

    /// Counts an event's outcome in the block report (published to the metrics once the
    /// block committed).
    fn count(
        &self,
        ctx: &EventCtx<'_>,
        standard: &'static str,
        outcome: Applied,
        report: &mut BlockReport,
    ) {
        match outcome {
            Applied::Stored => {
                report.applied += 1;
                *report.standards.entry(standard).or_default() += 1;
            }
            Applied::Foreign => {
                report.foreign += 1;
                tracing::warn!(
                    executor = ctx.executor,
                    receipt = ctx.receipt_id,
                    "event of a kind this account may not emit ignored"
                );
            }
            Applied::Orphan(why) => {
                report.orphan += 1;
                tracing::warn!(
                    height = ctx.height,
                    receipt = ctx.receipt_id,
                    "event not applied: {why}"
                );
            }
        }
    }

    /// Which of our contracts (if any) wrote a log.
    async fn emitter(
        &self,
        conn: &mut AnyConnection,
        executor: &str,
    ) -> Result<Emitter, sqlx::Error> {
        let c = &self.contracts;
        if executor == c.registry.as_str() {
            return Ok(Emitter::Registry);
        }
        if executor == c.marketplace.as_str() {
            return Ok(Emitter::Marketplace);
        }
        if c.factory.as_ref().is_some_and(|f| f.as_str() == executor) {
            return Ok(Emitter::Factory);
        }
        if c.payment_tokens.iter().any(|t| t.as_str() == executor) {
            return Ok(Emitter::PaymentToken);
        }
        if let Some(model_id) = model::model_of_token(conn, executor).await? {
            return Ok(Emitter::ModelToken(model_id));
        }
        if c.factory
            .as_ref()
            .is_some_and(|f| model::is_direct_sub_account(executor, f))
        {
            return Ok(Emitter::UnannouncedToken);
        }
        Ok(Emitter::Untracked)
    }
}

/// The role of the account that wrote a log.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Emitter {
    Registry,
    Marketplace,
    Factory,
    ModelToken(String),
    /// A direct sub-account of the factory it has not announced (yet): only the factory
    /// can create such an account, and a token's `new` logs before the announcement.
    UnannouncedToken,
    PaymentToken,
    Untracked,
}

/// Keeps the raw line of a refused event for inspection (`/v1/status` counts them).
async fn record_rejected(
    conn: &mut AnyConnection,
    ctx: &EventCtx<'_>,
    reason: &str,
    line: &str,
) -> Result<(), sqlx::Error> {
    // Bound what a hostile contract can make us store.
    let line: String = line.chars().take(4096).collect();
    sqlx::query(
        "INSERT INTO rejected_events (seq, block_height, receipt_id, executor_id, reason, line)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(ctx.seq)
    .bind(ctx.height)
    .bind(ctx.receipt_id)
    .bind(ctx.executor)
    .bind(reason)
    .bind(line)
    .execute(conn)
    .await?;
    Ok(())
}
