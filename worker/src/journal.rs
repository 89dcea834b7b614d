//! A journal of in-flight jobs, so a restarted worker resumes instead of losing a job or
//! charging it twice.
//!
//! Append-only JSON lines, fsynced after each entry:
//!
//! * `claimed`: the node claimed the job on chain; after a restart the job is run again
//!   (inference is side-effect free until the result is submitted);
//! * `result_ready`: the sealed output and the signed receipt; after a restart the *same*
//!   result is submitted again, never a second inference with a different output or usage;
//! * `submitted` / `abandoned`: the job left the node; it is not in flight any more and is
//!   refused if claimed again in this run.
//!
//! A crash can leave a torn last line: it is dropped on open (the entry never took effect).
//! A bad line anywhere else is corruption and refuses to open. Opening compacts the file to the
//! in-flight jobs (written to a temp file, fsynced, renamed), and so does a running journal
//! once the finished entries in it outweigh the live ones ([`COMPACT_MIN_BYTES`]): a
//! long-running worker's journal stays about the size of its in-flight jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use enclave_cloud_common::{Hash32, ModelId, ReceiptSubject, ResultReceipt};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("journal {path} is corrupt at line {line}: {reason}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{subject} is already {state}")]
    InvalidTransition {
        subject: String,
        state: &'static str,
    },
    #[error("{subject} is not in flight")]
    NotInFlight { subject: String },
    #[error("receipt for {subject} does not match its claim ({field} differs)")]
    ReceiptMismatch {
        subject: String,
        field: &'static str,
    },
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JournalEntry {
    Claimed {
        subject: ReceiptSubject,
        model_id: ModelId,
        input_hash: Hash32,
    },
    ResultReady {
        receipt: ResultReceipt,
        /// ed25519 signature over `receipt.signing_bytes()`, hex.
        signature: String,
        /// The output as submitted (sealed envelope bytes or a URI), hex.
        output: String,
    },
    Submitted {
        subject: ReceiptSubject,
    },
    Abandoned {
        subject: ReceiptSubject,
        reason: String,
    },
}

/// A signed result waiting to be (re)submitted.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadyResult {
    pub receipt: ResultReceipt,
    pub signature: [u8; 64],
    pub output: Vec<u8>,
}

/// A job between claim and submission.
#[derive(Debug, Clone, PartialEq)]
pub struct InFlight {
    pub subject: ReceiptSubject,
    pub model_id: ModelId,
    pub input_hash: Hash32,
    /// `Some`: resubmit this; `None`: run the job again.
    pub result: Option<ReadyResult>,
}

fn key(subject: &ReceiptSubject) -> String {
    match subject {
        ReceiptSubject::Job(id) => format!("job {id}"),
        ReceiptSubject::Request(id) => format!("request {id}"),
    }
}

#[derive(Debug, Default)]
struct State {
    in_flight: BTreeMap<String, InFlight>,
    done: BTreeSet<String>,
}

impl State {
    /// Applies an entry, refusing transitions that cannot happen.
    fn apply(&mut self, entry: &JournalEntry) -> Result<(), JournalError> {
        match entry {
            JournalEntry::Claimed {
                subject,
                model_id,
                input_hash,
            } => {
                let k = key(subject);
                if self.done.contains(&k) {
                    return Err(JournalError::InvalidTransition {
                        subject: k,
                        state: "finished",
                    });
                }
                if self.in_flight.contains_key(&k) {
                    return Err(JournalError::InvalidTransition {
                        subject: k,
                        state: "in flight",
                    });
                }
                self.in_flight.insert(
                    k,
                    InFlight {
                        subject: *subject,
                        model_id: model_id.clone(),
                        input_hash: *input_hash,
                        result: None,
                    },
                );
            }
            JournalEntry::ResultReady {
                receipt,
                signature,
                output,
            } => {
                let k = key(&receipt.subject);
                let job = self
                    .in_flight
                    .get_mut(&k)
                    .ok_or_else(|| JournalError::NotInFlight { subject: k.clone() })?;
                if job.result.is_some() {
                    return Err(JournalError::InvalidTransition {
                        subject: k,
                        state: "answered",
                    });
                }
                let mismatch = |field| JournalError::ReceiptMismatch {
                    subject: k.clone(),
                    field,
                };
                if receipt.model_id != job.model_id {
                    return Err(mismatch("model_id"));
                }
                if receipt.input_hash != job.input_hash {
                    return Err(mismatch("input_hash"));
                }
                let signature = hex::decode(signature)
                    .ok()
                    .and_then(|s| <[u8; 64]>::try_from(s).ok())
                    .ok_or_else(|| mismatch("signature"))?;
                let output = hex::decode(output).map_err(|_| mismatch("output"))?;
                job.result = Some(ReadyResult {
                    receipt: receipt.clone(),
                    signature,
                    output,
                });
            }
            JournalEntry::Submitted { subject } | JournalEntry::Abandoned { subject, .. } => {
                let k = key(subject);
                if self.in_flight.remove(&k).is_none() {
                    return Err(JournalError::NotInFlight { subject: k });
                }
                self.done.insert(k);
            }
        }
        Ok(())
    }
}

/// A running journal is compacted when it holds at least this many bytes and more than twice
/// what its in-flight jobs need: a settled job's entries (its sealed output, hex) are gone
/// within a few jobs, and compaction, which rewrites the live entries, costs at most about as
/// many bytes as the appends since the previous one.
pub const COMPACT_MIN_BYTES: u64 = 256 * 1024;

pub struct Journal {
    path: PathBuf,
    file: File,
    state: State,
    /// Bytes in the file now.
    len: u64,
    /// Bytes the in-flight jobs take once compacted (measured at each compaction, then kept
    /// up to date by the entries appended since).
    live: u64,
}

impl Journal {
    /// Opens (or creates) the journal at `path`, replays it and compacts it.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let io_err = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        let text = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(e)),
        };
        let mut state = State::default();
        let mut lines = text.split(|&b| b == b'\n').enumerate().peekable();
        while let Some((index, line)) = lines.next() {
            let is_last = lines.peek().is_none();
            if line.is_empty() {
                continue;
            }
            let parsed: Result<JournalEntry, _> = serde_json::from_slice(line);
            match parsed {
                Ok(entry) => state.apply(&entry).map_err(|e| JournalError::Corrupt {
                    path: path.to_owned(),
                    line: index + 1,
                    reason: e.to_string(),
                })?,
                // A torn final line: the write never completed, the entry never took effect.
                Err(_) if is_last => {
                    tracing::warn!(path = %path.display(), "dropping a torn last journal line");
                }
                Err(e) => {
                    return Err(JournalError::Corrupt {
                        path: path.to_owned(),
                        line: index + 1,
                        reason: e.to_string(),
                    });
                }
            }
        }
        let (file, len) = Self::compact(path, &state)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            state,
            len,
            live: len,
        })
    }

    /// Rewrites the file with the in-flight jobs only; returns it open for appending, and its
    /// length.
    fn compact(path: &Path, state: &State) -> Result<(File, u64), JournalError> {
        let tmp = path.with_extension("compact");
        let io_err = |p: &Path| {
            let p = p.to_owned();
            move |source| JournalError::Io { path: p, source }
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let out: Vec<u8> = state.in_flight.values().flat_map(Self::job_lines).collect();
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&out).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))?;
        // The rename is durable once the directory is synced.
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        Ok((file, out.len() as u64))
    }

    /// Compacts when finished entries make up most of the file (see [`COMPACT_MIN_BYTES`]).
    fn compact_if_due(&mut self) -> Result<(), JournalError> {
        if self.len < COMPACT_MIN_BYTES || self.len <= self.live.saturating_mul(2) {
            return Ok(());
        }
        let (file, len) = Self::compact(&self.path, &self.state)?;
        self.file = file;
        self.len = len;
        self.live = len;
        Ok(())
    }

    /// The lines that restore `job` in a compacted journal.
    fn job_lines(job: &InFlight) -> Vec<u8> {
        let mut out = Self::line(&JournalEntry::Claimed {
            subject: job.subject,
            model_id: job.model_id.clone(),
            input_hash: job.input_hash,
        });
        if let Some(r) = &job.result {
            out.extend(Self::line(&JournalEntry::ResultReady {
                receipt: r.receipt.clone(),
                signature: hex::encode(r.signature),
                output: hex::encode(&r.output),
            }));
        }
        out
    }

    fn line(entry: &JournalEntry) -> Vec<u8> {
        // Serializing these plain data types cannot fail.
        let mut line = serde_json::to_vec(entry).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Validates `entry` against the state, makes it durable, then applies it.
    fn append(&mut self, entry: JournalEntry) -> Result<(), JournalError> {
        let mut next = State {
            in_flight: self.state.in_flight.clone(),
            done: self.state.done.clone(),
        };
        next.apply(&entry)?;
        let io_err = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let line = Self::line(&entry);
        self.file.write_all(&line).map_err(io_err)?;
        self.file.sync_data().map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })?;
        let n = line.len() as u64;
        self.len = self.len.saturating_add(n);
        match &entry {
            JournalEntry::Claimed { .. } | JournalEntry::ResultReady { .. } => {
                self.state = next;
                self.live = self.live.saturating_add(n);
            }
            // The job's entries are dead weight from now on.
            JournalEntry::Submitted { subject } | JournalEntry::Abandoned { subject, .. } => {
                let freed = self
                    .state
                    .in_flight
                    .get(&key(subject))
                    .map_or(0, |job| Self::job_lines(job).len() as u64);
                self.state = next;
                self.live = self.live.saturating_sub(freed);
                // The entry is durable already; a failed compaction only leaves a longer file
                // (tried again at the next finished job).
                if let Err(e) = self.compact_if_due() {
                    tracing::warn!(error = %e, "journal compaction failed");
                }
            }
        }
        Ok(())
    }

    pub fn claimed(
        &mut self,
        subject: ReceiptSubject,
        model_id: ModelId,
        input_hash: Hash32,
    ) -> Result<(), JournalError> {
        self.append(JournalEntry::Claimed {
            subject,
            model_id,
            input_hash,
        })
    }

    pub fn result_ready(&mut self, result: ReadyResult) -> Result<(), JournalError> {
        self.append(JournalEntry::ResultReady {
            receipt: result.receipt,
            signature: hex::encode(result.signature),
            output: hex::encode(result.output),
        })
    }

    pub fn submitted(&mut self, subject: ReceiptSubject) -> Result<(), JournalError> {
        self.append(JournalEntry::Submitted { subject })
    }

    pub fn abandoned(&mut self, subject: ReceiptSubject, reason: &str) -> Result<(), JournalError> {
        self.append(JournalEntry::Abandoned {
            subject,
            reason: reason.to_owned(),
        })
    }

    /// Jobs to resume, in subject order.
    pub fn in_flight(&self) -> impl Iterator<Item = &InFlight> {
        self.state.in_flight.values()
    }

    pub fn get(&self, subject: &ReceiptSubject) -> Option<&InFlight> {
        self.state.in_flight.get(&key(subject))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclave_cloud_common::{JobId, RequestId, Usage};
    use near_sdk::json_types::U64;

    fn job(n: u64) -> ReceiptSubject {
        ReceiptSubject::Job(JobId(n))
    }

    fn model() -> ModelId {
        "minilm".parse().unwrap()
    }

    fn ready(subject: ReceiptSubject, input: u8) -> ReadyResult {
        ReadyResult {
            receipt: ResultReceipt {
                subject,
                model_id: model(),
                input_hash: Hash32([input; 32]),
                output_hash: Hash32([9; 32]),
                usage: Usage {
                    input_tokens: U64(12),
                    output_tokens: U64(0),
                },
                weights_hash: None,
            },
            signature: [7; 64],
            output: vec![1, 2, 3],
        }
    }

    #[test]
    fn restart_resumes_claimed_and_answered_jobs() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state/jobs.journal");
        {
            let mut j = Journal::open(&path).unwrap();
            j.claimed(job(1), model(), Hash32([1; 32])).unwrap();
            j.claimed(job(2), model(), Hash32([2; 32])).unwrap();
            j.claimed(
                ReceiptSubject::Request(RequestId(1)),
                model(),
                Hash32([3; 32]),
            )
            .unwrap();
            j.result_ready(ready(job(2), 2)).unwrap();
            j.result_ready(ready(ReceiptSubject::Request(RequestId(1)), 3))
                .unwrap();
            j.submitted(ReceiptSubject::Request(RequestId(1))).unwrap();
        }
        let j = Journal::open(&path).unwrap();
        let resumed: Vec<_> = j.in_flight().cloned().collect();
        assert_eq!(resumed.len(), 2);
        assert_eq!(resumed[0].subject, job(1));
        assert_eq!(resumed[0].result, None); // run again
        assert_eq!(resumed[1].result, Some(ready(job(2), 2))); // resubmit the same result
        // Compaction kept exactly the in-flight entries.
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
    }

    #[test]
    fn a_job_runs_once_per_claim() {
        let tmp = tempfile::tempdir().unwrap();
        let mut j = Journal::open(&tmp.path().join("j")).unwrap();
        j.claimed(job(1), model(), Hash32([1; 32])).unwrap();
        assert!(matches!(
            j.claimed(job(1), model(), Hash32([1; 32])),
            Err(JournalError::InvalidTransition { .. })
        ));
        j.result_ready(ready(job(1), 1)).unwrap();
        assert!(matches!(
            j.result_ready(ready(job(1), 1)),
            Err(JournalError::InvalidTransition { .. })
        ));
        j.submitted(job(1)).unwrap();
        assert!(matches!(
            j.claimed(job(1), model(), Hash32([1; 32])),
            Err(JournalError::InvalidTransition { .. })
        ));
        assert!(matches!(
            j.submitted(job(1)),
            Err(JournalError::NotInFlight { .. })
        ));
        assert!(matches!(
            j.result_ready(ready(job(5), 1)),
            Err(JournalError::NotInFlight { .. })
        ));
        j.claimed(job(2), model(), Hash32([2; 32])).unwrap();
        assert!(matches!(
            j.result_ready(ready(job(2), 1)),
            Err(JournalError::ReceiptMismatch {
                field: "input_hash",
                ..
            })
        ));
        j.abandoned(job(2), "deadline passed").unwrap();
        assert_eq!(j.in_flight().count(), 0);
    }

    #[test]
    fn a_running_journal_stays_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("j");
        let mut j = Journal::open(&path).unwrap();
        // One job stays in flight the whole time: compaction must keep it.
        j.claimed(job(0), model(), Hash32([0; 32])).unwrap();
        // ~17 KB per settled job, as a sealed embeddings output makes (hex doubles it).
        let big = |subject, input| ReadyResult {
            output: vec![0xab; 8_500],
            ..ready(subject, input)
        };
        let mut largest = 0;
        for n in 1..=200u64 {
            let input = (n % 250) as u8;
            j.claimed(job(n), model(), Hash32([input; 32])).unwrap();
            j.result_ready(big(job(n), input)).unwrap();
            if n % 2 == 0 {
                j.submitted(job(n)).unwrap();
            } else {
                j.abandoned(job(n), "deadline passed").unwrap();
            }
            largest = largest.max(fs::metadata(&path).unwrap().len());
        }
        // Unbounded, the file would hold 200 x ~17 KB = 3.4 MB.
        assert!(
            largest <= 2 * COMPACT_MIN_BYTES + 64 * 1024,
            "journal grew to {largest} bytes"
        );
        drop(j);
        let j = Journal::open(&path).unwrap();
        let left: Vec<_> = j.in_flight().map(|f| f.subject).collect();
        assert_eq!(left, vec![job(0)]);
    }

    #[test]
    fn torn_tail_is_dropped_and_corruption_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("j");
        {
            let mut j = Journal::open(&path).unwrap();
            j.claimed(job(1), model(), Hash32([1; 32])).unwrap();
        }
        // A crash in the middle of writing the next entry.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"event":"submitted","subj"#).unwrap();
        drop(f);
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.in_flight().count(), 1);
        assert!(j.get(&job(1)).is_some());
        drop(j);
        // Garbage before a valid line is corruption, not a torn write.
        let valid = fs::read_to_string(&path).unwrap();
        fs::write(&path, format!("garbage\n{valid}")).unwrap();
        assert!(matches!(
            Journal::open(&path),
            Err(JournalError::Corrupt { line: 1, .. })
        ));
    }

    /// A result journaled before receipts named weights (no `weights_hash` key) still loads
    /// and resumes as signed (the v1 layout); one naming weights keeps them across a restart.
    #[test]
    fn results_journaled_before_and_after_receipts_named_weights_resume() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("j");
        let old = format!(
            concat!(
                r#"{{"event":"claimed","subject":{{"kind":"job","id":"1"}},"model_id":"minilm","input_hash":"{h1}"}}"#,
                "\n",
                r#"{{"event":"result_ready","receipt":{{"subject":{{"kind":"job","id":"1"}},"model_id":"minilm","input_hash":"{h1}","output_hash":"{h9}","usage":{{"input_tokens":"12","output_tokens":"0"}}}},"signature":"{sig}","output":"010203"}}"#,
                "\n"
            ),
            h1 = "01".repeat(32),
            h9 = "09".repeat(32),
            sig = "07".repeat(64),
        );
        fs::write(&path, old).unwrap();
        let mut j = Journal::open(&path).unwrap();
        assert_eq!(j.get(&job(1)).unwrap().result, Some(ready(job(1), 1)));
        let weights = ReadyResult {
            receipt: ResultReceipt {
                weights_hash: Some(Hash32([0xab; 32])),
                ..ready(job(2), 2).receipt
            },
            ..ready(job(2), 2)
        };
        j.claimed(job(2), model(), Hash32([2; 32])).unwrap();
        j.result_ready(weights.clone()).unwrap();
        drop(j);
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.get(&job(1)).unwrap().result, Some(ready(job(1), 1)));
        assert_eq!(j.get(&job(2)).unwrap().result, Some(weights));
        // Compaction rewrote the old entry as it was: no weights key.
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("weights_hash").count(), 1, "{text}");
    }
}
