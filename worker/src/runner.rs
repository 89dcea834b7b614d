//! Exactly-once job processing on top of the [`Journal`] and the [`Executor`]: the chain-free
//! core of `worker run`.
//!
//! The run loop journals a claim once the claim transaction succeeded, asks [`JobRunner::
//! result_for`] for the result, submits it, and journals the submission. After a crash:
//!
//! * claimed, no result yet: the job is run again (nothing left the enclave);
//! * result journaled, not submitted: the *same* signed result is submitted again: no second
//!   inference, no second usage figure, and the marketplace settles a job only once.

use std::collections::BTreeSet;
use std::sync::Mutex;

use enclave_cloud_common::ReceiptSubject;

use crate::job::{Executor, JobError, JobTask, sha256};
use crate::journal::{InFlight, Journal, JournalError, ReadyResult};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error("{0:?} is being processed by another task")]
    Busy(ReceiptSubject),
    #[error("{0:?} was claimed with another input than the one given now")]
    InputChanged(ReceiptSubject),
}

pub struct JobRunner {
    executor: Executor,
    journal: Mutex<Journal>,
    busy: Mutex<BTreeSet<String>>,
}

/// Marks a subject busy for the lifetime of the guard.
struct BusyGuard<'a> {
    set: &'a Mutex<BTreeSet<String>>,
    key: String,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.key);
    }
}

impl JobRunner {
    pub fn new(executor: Executor, journal: Journal) -> Self {
        Self {
            executor,
            journal: Mutex::new(journal),
            busy: Mutex::new(BTreeSet::new()),
        }
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn busy(&self, subject: ReceiptSubject) -> Result<BusyGuard<'_>, RunError> {
        let key = format!("{subject:?}");
        let mut set = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(key.clone()) {
            return Err(RunError::Busy(subject));
        }
        Ok(BusyGuard {
            set: &self.busy,
            key,
        })
    }

    /// The request of `task` if its input opens for this node (nothing is journaled or run).
    pub fn request_of(&self, task: &JobTask) -> Option<crate::job::JobRequest> {
        self.executor.request_of(task)
    }

    /// Whether a result of `subject` is journaled (it is resubmitted, not run again).
    pub fn has_result(&self, subject: &ReceiptSubject) -> bool {
        self.journal()
            .get(subject)
            .is_some_and(|job| job.result.is_some())
    }

    /// Jobs to resume after a restart.
    pub fn in_flight(&self) -> Vec<InFlight> {
        self.journal().in_flight().cloned().collect()
    }

    /// Journals a successful claim of `task`; a claim already journaled is accepted again
    /// (the run loop may see its own claim twice after a restart).
    pub fn claimed(&self, task: &JobTask) -> Result<(), RunError> {
        let mut journal = self.journal();
        if let Some(job) = journal.get(&task.subject) {
            if job.input_hash != sha256(&task.input) {
                return Err(RunError::InputChanged(task.subject));
            }
            return Ok(());
        }
        journal.claimed(task.subject, task.model_id.clone(), sha256(&task.input))?;
        Ok(())
    }

    /// The result of a claimed job: the journaled one if any, else a new one, journaled before
    /// it is returned.
    pub async fn result_for(&self, task: &JobTask) -> Result<ReadyResult, RunError> {
        let _guard = self.busy(task.subject)?;
        self.claimed(task)?;
        if let Some(ready) = self
            .journal()
            .get(&task.subject)
            .and_then(|job| job.result.clone())
        {
            return Ok(ready);
        }
        let ready = self.executor.execute(task).await?;
        self.journal().result_ready(ready.clone())?;
        Ok(ready)
    }

    /// Journals that the result was accepted on chain.
    pub fn submitted(&self, subject: ReceiptSubject) -> Result<(), RunError> {
        Ok(self.journal().submitted(subject)?)
    }

    /// Journals that the job left this node unanswered (deadline passed, job cancelled).
    pub fn abandoned(&self, subject: ReceiptSubject, reason: &str) -> Result<(), RunError> {
        Ok(self.journal().abandoned(subject, reason)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::EncryptionSecret;
    use crate::inference::{
        BackendFuture, ChatChoice, ChatCompletionRequest, ChatCompletionResponse, ChatMessage,
        EmbeddingsRequest, EmbeddingsResponse, InferenceBackend, InferenceError, Usage,
    };
    use crate::job::{CHAT_URL, JobRequest, open_job_output, seal_job_input};
    use crate::keys::EnclaveKeys;
    use enclave_cloud_common::{JobId, ModelId};
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Counts inferences; each answer differs (like sampling), so a rerun would be visible.
    #[derive(Default)]
    struct Counting(AtomicU64);

    impl InferenceBackend for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn chat(&self, r: ChatCompletionRequest) -> BackendFuture<'_, ChatCompletionResponse> {
            Box::pin(async move {
                let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(ChatCompletionResponse {
                    id: format!("c{n}"),
                    object: "chat.completion".into(),
                    created: 0,
                    model: r.model,
                    choices: vec![ChatChoice {
                        index: 0,
                        message: ChatMessage {
                            role: "assistant".into(),
                            content: format!("answer #{n}"),
                        },
                        finish_reason: None,
                    }],
                    usage: Usage::new(5, n),
                })
            })
        }
        fn embed(&self, _r: EmbeddingsRequest) -> BackendFuture<'_, EmbeddingsResponse> {
            Box::pin(async {
                Err(InferenceError::Unsupported {
                    backend: "counting",
                    what: "embeddings",
                })
            })
        }
    }

    fn model() -> ModelId {
        "m1".parse().unwrap()
    }

    fn runner(keys: &Arc<EnclaveKeys>, backend: &Arc<Counting>, path: &Path) -> JobRunner {
        let exec = Executor::new(
            keys.clone(),
            backend.clone(),
            BTreeMap::from([(model(), "served".to_string())]),
        );
        JobRunner::new(exec, Journal::open(path).unwrap())
    }

    fn task(keys: &EnclaveKeys, user: &EncryptionSecret, id: u64) -> JobTask {
        let request = JobRequest {
            method: "POST".into(),
            url: CHAT_URL.into(),
            body: serde_json::json!({"model": "x", "messages": [{"role": "user", "content": "q"}]}),
        };
        let env = seal_job_input(
            &keys.public().enclave_key,
            &model(),
            &user.public_key(),
            &request,
        )
        .unwrap();
        JobTask {
            subject: ReceiptSubject::Job(JobId(id)),
            model_id: model(),
            input: env.to_bytes(),
            user_key: Some(user.public_key()),
        }
    }

    #[tokio::test]
    async fn crash_after_the_result_resubmits_the_same_result() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("jobs.journal");
        let keys = Arc::new(EnclaveKeys::generate().unwrap());
        let backend = Arc::new(Counting::default());
        let user = EncryptionSecret::generate();
        let t = task(&keys, &user, 1);

        let first = {
            let r = runner(&keys, &backend, &path);
            r.claimed(&t).unwrap();
            assert!(!r.has_result(&t.subject));
            r.result_for(&t).await.unwrap()
            // crash: dropped before `submitted`
        };
        let r = runner(&keys, &backend, &path);
        assert!(
            r.has_result(&t.subject),
            "resubmitted without running the model again"
        );
        let resumed = r.in_flight();
        assert_eq!(resumed.len(), 1);
        assert_eq!(resumed[0].result.as_ref(), Some(&first));
        let again = r.result_for(&t).await.unwrap();
        assert_eq!(again, first);
        assert_eq!(backend.0.load(Ordering::SeqCst), 1, "inference ran once");
        let out = open_job_output(&user, t.subject, &model(), &again.output).unwrap();
        assert_eq!(out.body["choices"][0]["message"]["content"], "answer #1");
        r.submitted(t.subject).unwrap();
        assert!(r.in_flight().is_empty());
        drop(r);
        assert!(runner(&keys, &backend, &path).in_flight().is_empty());
    }

    #[tokio::test]
    async fn crash_before_the_result_runs_the_job_again_once() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("jobs.journal");
        let keys = Arc::new(EnclaveKeys::generate().unwrap());
        let backend = Arc::new(Counting::default());
        let user = EncryptionSecret::generate();
        let t = task(&keys, &user, 2);
        runner(&keys, &backend, &path).claimed(&t).unwrap();
        let r = runner(&keys, &backend, &path);
        assert_eq!(r.in_flight()[0].result, None);
        let a = r.result_for(&t).await.unwrap();
        let b = r.result_for(&t).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(backend.0.load(Ordering::SeqCst), 1);
        // The same subject with another input is refused, not run.
        let other = task(&keys, &user, 2);
        assert!(matches!(
            r.result_for(&other).await,
            Err(RunError::InputChanged(_))
        ));
        r.abandoned(t.subject, "deadline passed").unwrap();
        assert!(r.in_flight().is_empty());
    }
}
