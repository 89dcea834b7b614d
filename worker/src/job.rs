//! Running one job inside the enclave, chain-free: open the input, run inference, seal the
//! output to the user, sign the receipt. `worker run` feeds it claimed jobs and journals the
//! [`ReadyResult`] before submitting. The plaintexts and the user-side half (sealing inputs,
//! opening outputs, checking receipts) are the shared wire format in [`protocol::job`] and
//! [`protocol::receipt`], re-exported here.
//!
//! The job's `model_id` decides the model: the body's `model` is replaced by the backend model
//! that id maps to, so a user cannot pay for one model and run another.

use std::collections::BTreeMap;
use std::sync::Arc;

use enclave_cloud_common::{ModelId, ReceiptSubject, ResultReceipt, Usage};
use near_sdk::json_types::U64;
use serde::Serialize;

use crate::envelope::{self, Envelope, EnvelopeContext, EnvelopeError};
use crate::inference::{InferenceBackend, InferenceError, OpenAiError, OpenAiErrorBody};
use crate::journal::ReadyResult;
use crate::keys::EnclaveKeys;
use crate::served_weights::ServedWeights;
pub use protocol::job::{
    CHAT_URL, EMBEDDINGS_URL, JobRequest, JobResponse, open_job_output, seal_job_input, sha256,
};
pub use protocol::receipt::verify_receipt;

/// A claimed job, as the worker sees it.
#[derive(Debug, Clone)]
pub struct JobTask {
    pub subject: ReceiptSubject,
    pub model_id: ModelId,
    /// The inline input bytes (an envelope for jobs, plaintext for agent requests).
    pub input: Vec<u8>,
    /// Jobs: the user's x25519 key the output is sealed to. Requests: `None`.
    pub user_key: Option<[u8; 32]>,
}

/// Why a job produced no result to submit. Everything the user caused is answered instead
/// (an error output at zero usage); these are the node's own failures, worth a retry.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job {subject:?} has no user key to seal its output to")]
    NoUserKey { subject: ReceiptSubject },
    #[error("inference failed on the node's side, retry later: {0}")]
    Backend(InferenceError),
    #[error("sealing the output: {0}")]
    Seal(EnvelopeError),
}

/// Runs jobs for the models this node serves.
pub struct Executor {
    keys: Arc<EnclaveKeys>,
    backend: Arc<dyn InferenceBackend>,
    /// Marketplace model id -> backend model name.
    models: BTreeMap<ModelId, String>,
    /// Which weights each model is served with: an answer of a model served from encrypted
    /// weights names their hash (inside the output the receipt signs).
    weights: Option<Arc<ServedWeights>>,
}

/// What the backend answered, before sealing.
struct Answer {
    response: JobResponse,
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl Answer {
    fn refused(status_code: u16, kind: &str, message: String) -> Self {
        let body = OpenAiErrorBody {
            error: OpenAiError {
                message,
                kind: kind.into(),
                param: None,
                code: None,
            },
        };
        Self {
            response: JobResponse {
                status_code,
                body: serde_json::to_value(body).unwrap_or_default(),
                weights_hash: None,
            },
            prompt_tokens: 0,
            completion_tokens: 0,
        }
    }

    fn ok<T: Serialize>(body: &T, prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            response: JobResponse {
                status_code: 200,
                body: serde_json::to_value(body).unwrap_or_default(),
                weights_hash: None,
            },
            prompt_tokens,
            completion_tokens,
        }
    }
}

impl Executor {
    pub fn new(
        keys: Arc<EnclaveKeys>,
        backend: Arc<dyn InferenceBackend>,
        models: BTreeMap<ModelId, String>,
    ) -> Self {
        Self {
            keys,
            backend,
            models,
            weights: None,
        }
    }

    /// Answers name the encrypted weights `weights` says each model is served with.
    pub fn with_weights(mut self, weights: Arc<ServedWeights>) -> Self {
        self.weights = Some(weights);
        self
    }

    /// Runs `task` and returns the signed result to journal and submit.
    pub async fn execute(&self, task: &JobTask) -> Result<ReadyResult, JobError> {
        if matches!(task.subject, ReceiptSubject::Job(_)) && task.user_key.is_none() {
            return Err(JobError::NoUserKey {
                subject: task.subject,
            });
        }
        let input_hash = sha256(&task.input);
        let mut answer = match self.open_input(task) {
            Ok(request) => self.answer(task, request).await?,
            Err(refusal) => *refusal,
        };
        if answer.response.status_code == 200 {
            answer.response.weights_hash = self
                .weights
                .as_ref()
                .and_then(|w| w.weights_hash(&task.model_id));
        }
        let plaintext = serde_json::to_vec(&answer.response).unwrap_or_default();
        let output = match task.subject {
            ReceiptSubject::Job(_) => {
                let user_key = task.user_key.ok_or(JobError::NoUserKey {
                    subject: task.subject,
                })?;
                let ctx = EnvelopeContext::JobOutput {
                    subject: task.subject,
                    model_id: task.model_id.clone(),
                };
                envelope::seal_to(&user_key, &plaintext, &ctx)
                    .map_err(JobError::Seal)?
                    .to_bytes()
            }
            ReceiptSubject::Request(_) => plaintext,
        };
        let receipt = ResultReceipt {
            subject: task.subject,
            model_id: task.model_id.clone(),
            input_hash,
            output_hash: sha256(&output),
            usage: Usage {
                input_tokens: U64(answer.prompt_tokens),
                output_tokens: U64(answer.completion_tokens),
            },
            // A job's receipt names the weights its answer names (anyone can see them on
            // chain); an agent request's `respond` takes none, so its receipt names none.
            weights_hash: match task.subject {
                ReceiptSubject::Job(_) => answer.response.weights_hash,
                ReceiptSubject::Request(_) => None,
            },
        };
        let signature = self.keys.sign(&receipt.signing_bytes());
        Ok(ReadyResult {
            receipt,
            signature,
            output,
        })
    }

    /// The request of `task` if its input opens (what the node will run), else `None`: seen
    /// before a claim, to judge whether the job is worth it.
    pub fn request_of(&self, task: &JobTask) -> Option<JobRequest> {
        self.open_input(task).ok()
    }

    /// The request plaintext, or the refusal to send back (boxed: an answer is large).
    fn open_input(&self, task: &JobTask) -> Result<JobRequest, Box<Answer>> {
        let plaintext = match (task.subject, task.user_key) {
            (ReceiptSubject::Job(_), Some(user_key)) => {
                let ctx = EnvelopeContext::JobInput {
                    model_id: task.model_id.clone(),
                    user_key,
                };
                Envelope::from_bytes(&task.input)
                    .and_then(|env| envelope::open(self.keys.encryption(), &env, &ctx))
                    .map(|p| p.to_vec())
                    .map_err(|e| {
                        Box::new(Answer::refused(
                            400,
                            "invalid_request_error",
                            format!(
                                "the input does not open for this node, model and user key: {e}"
                            ),
                        ))
                    })?
            }
            // Refused before opening, in `execute`.
            (ReceiptSubject::Job(_), None) => Vec::new(),
            (ReceiptSubject::Request(_), _) => task.input.clone(),
        };
        serde_json::from_slice(&plaintext).map_err(|e| {
            Box::new(Answer::refused(
                400,
                "invalid_request_error",
                format!("the input is not a JSON job request {{method, url, body}}: {e}"),
            ))
        })
    }

    async fn answer(&self, task: &JobTask, request: JobRequest) -> Result<Answer, JobError> {
        let bad = |m: String| Answer::refused(400, "invalid_request_error", m);
        let Some(model) = self.models.get(&task.model_id) else {
            return Ok(Answer::refused(
                404,
                "invalid_request_error",
                format!("model '{}' is not served by this node", task.model_id),
            ));
        };
        if request.method != "POST" {
            return Ok(bad(format!("method '{}' is not supported", request.method)));
        }
        let mut body = request.body;
        if let Some(obj) = body.as_object_mut() {
            obj.insert("model".into(), serde_json::Value::String(model.clone()));
        }
        let result = match request.url.as_str() {
            CHAT_URL => match serde_json::from_value(body) {
                Ok(req) => self
                    .backend
                    .chat(req)
                    .await
                    .map(|r| Answer::ok(&r, r.usage.prompt_tokens, r.usage.completion_tokens)),
                Err(e) => return Ok(bad(format!("chat request: {e}"))),
            },
            EMBEDDINGS_URL => match serde_json::from_value(body) {
                Ok(req) => self
                    .backend
                    .embed(req)
                    .await
                    .map(|r| Answer::ok(&r, r.usage.prompt_tokens, 0)),
                Err(e) => return Ok(bad(format!("embeddings request: {e}"))),
            },
            other => return Ok(bad(format!("url '{other}' is not supported"))),
        };
        match result {
            Ok(answer) => Ok(answer),
            Err(e) => match &e {
                InferenceError::BadRequest(_)
                | InferenceError::InvalidParam { .. }
                | InferenceError::ContextTooLong { .. }
                | InferenceError::Unsupported { .. } => Ok(bad(e.to_string())),
                InferenceError::UnknownModel(_) => {
                    Ok(Answer::refused(404, "invalid_request_error", e.to_string()))
                }
                InferenceError::Upstream { status, .. } if (400..500).contains(status) => Ok(
                    Answer::refused(*status, "invalid_request_error", e.to_string()),
                ),
                _ => Err(JobError::Backend(e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::EncryptionSecret;
    use crate::inference::{
        BackendFuture, ChatChoice, ChatCompletionRequest, ChatCompletionResponse, ChatMessage,
        EmbeddingsRequest, EmbeddingsResponse, Usage as OpenAiUsage,
    };
    use enclave_cloud_common::{JobId, RequestId};
    use std::sync::Mutex;

    /// Answers chat with the model name it was asked for; counts calls; fails on demand.
    #[derive(Default)]
    struct Echo {
        seen_models: Mutex<Vec<String>>,
        fail: Option<InferenceError>,
    }

    impl InferenceBackend for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }
        fn chat(&self, r: ChatCompletionRequest) -> BackendFuture<'_, ChatCompletionResponse> {
            Box::pin(async move {
                self.seen_models.lock().unwrap().push(r.model.clone());
                if let Some(e) = &self.fail {
                    return Err(e.clone());
                }
                Ok(ChatCompletionResponse {
                    id: "c".into(),
                    object: "chat.completion".into(),
                    created: 0,
                    model: r.model.clone(),
                    choices: vec![ChatChoice {
                        index: 0,
                        message: ChatMessage {
                            role: "assistant".into(),
                            content: format!("served by {}", r.model),
                        },
                        finish_reason: Some("stop".into()),
                    }],
                    usage: OpenAiUsage::new(11, 4),
                })
            })
        }
        fn embed(&self, _r: EmbeddingsRequest) -> BackendFuture<'_, EmbeddingsResponse> {
            Box::pin(async move {
                Err(InferenceError::Unsupported {
                    backend: "echo",
                    what: "embeddings",
                })
            })
        }
    }

    fn model() -> ModelId {
        "llama".parse().unwrap()
    }

    fn setup(backend: Echo) -> (Executor, Arc<EnclaveKeys>, Arc<Echo>) {
        let keys = Arc::new(EnclaveKeys::generate().unwrap());
        let backend = Arc::new(backend);
        let models = BTreeMap::from([(model(), "meta-llama/Llama-3.1-8B".to_string())]);
        (
            Executor::new(keys.clone(), backend.clone(), models),
            keys,
            backend,
        )
    }

    fn chat_request(model: &str) -> JobRequest {
        JobRequest {
            method: "POST".into(),
            url: CHAT_URL.into(),
            body: serde_json::json!({"model": model,
                "messages": [{"role": "user", "content": "hello"}]}),
        }
    }

    fn job_task(keys: &EnclaveKeys, user: &EncryptionSecret, id: u64, req: &JobRequest) -> JobTask {
        let input = seal_job_input(
            &keys.public().enclave_key,
            &model(),
            &user.public_key(),
            req,
        )
        .unwrap();
        JobTask {
            subject: ReceiptSubject::Job(JobId(id)),
            model_id: model(),
            input: input.to_bytes(),
            user_key: Some(user.public_key()),
        }
    }

    #[tokio::test]
    async fn sealed_job_end_to_end() {
        let (exec, keys, backend) = setup(Echo::default());
        let user = EncryptionSecret::generate();
        // The user asks for another model: the job's model id wins.
        let task = job_task(&keys, &user, 7, &chat_request("gpt-4"));
        let result = exec.execute(&task).await.unwrap();
        assert_eq!(
            backend.seen_models.lock().unwrap().as_slice(),
            ["meta-llama/Llama-3.1-8B"]
        );
        let r = &result.receipt;
        assert_eq!(r.subject, ReceiptSubject::Job(JobId(7)));
        assert_eq!(r.input_hash, sha256(&task.input));
        assert_eq!(r.output_hash, sha256(&result.output));
        assert_eq!((r.usage.input_tokens.0, r.usage.output_tokens.0), (11, 4));
        assert!(verify_receipt(
            &keys.public().near_key,
            r,
            &result.signature
        ));
        let mut forged = r.clone();
        forged.usage.output_tokens = U64(400);
        assert!(!verify_receipt(
            &keys.public().near_key,
            &forged,
            &result.signature
        ));
        let out = open_job_output(&user, r.subject, &model(), &result.output).unwrap();
        assert_eq!(out.status_code, 200);
        assert_eq!(
            out.body["choices"][0]["message"]["content"],
            "served by meta-llama/Llama-3.1-8B"
        );
        // Only the user opens it, and only as job 7's output.
        let other = EncryptionSecret::generate();
        assert!(open_job_output(&other, r.subject, &model(), &result.output).is_err());
        assert!(
            open_job_output(
                &user,
                ReceiptSubject::Job(JobId(8)),
                &model(),
                &result.output
            )
            .is_err()
        );
    }

    /// An executor serving `model()` from the encrypted weights `hash`.
    fn weights_setup(hash: enclave_cloud_common::Hash32) -> (Executor, Arc<EnclaveKeys>) {
        use crate::served_weights::{ServedWeights, WeightsState};
        let (exec, keys, _backend) = setup(Echo::default());
        let served = Arc::new(ServedWeights::new([(
            model(),
            WeightsState::Ready {
                weights_hash: hash,
                plaintext_hash: enclave_cloud_common::Hash32([1; 32]),
            },
        )]));
        (exec.with_weights(served), keys)
    }

    /// A model served from encrypted weights names them in its answers (inside the sealed
    /// output whose hash the receipt signs) and in the signed receipt itself, so anyone can
    /// see on chain which weights served the job. A refused request names none.
    #[tokio::test]
    async fn answers_and_receipts_name_the_encrypted_weights() {
        let hash = enclave_cloud_common::Hash32([0xab; 32]);
        let (exec, keys) = weights_setup(hash);
        let user = EncryptionSecret::generate();
        let task = job_task(&keys, &user, 7, &chat_request("x"));
        let result = exec.execute(&task).await.unwrap();
        assert_eq!(result.receipt.weights_hash, Some(hash));
        assert!(verify_receipt(
            &keys.public().near_key,
            &result.receipt,
            &result.signature
        ));
        // Signed over the weights: the receipt without them does not verify.
        let dropped = ResultReceipt {
            weights_hash: None,
            ..result.receipt.clone()
        };
        assert!(!verify_receipt(
            &keys.public().near_key,
            &dropped,
            &result.signature
        ));
        assert_eq!(result.receipt.output_hash, sha256(&result.output));
        let out = open_job_output(&user, result.receipt.subject, &model(), &result.output).unwrap();
        assert_eq!(out.weights_hash, Some(hash));

        let mut refused = job_task(&keys, &user, 8, &chat_request("x"));
        refused.input[40] ^= 1;
        let result = exec.execute(&refused).await.unwrap();
        let out = open_job_output(&user, result.receipt.subject, &model(), &result.output).unwrap();
        assert_eq!(out.status_code, 400);
        assert_eq!(out.weights_hash, None);
        assert_eq!(result.receipt.weights_hash, None);
    }

    /// `respond` takes no weights hash, so an agent request's receipt names none (its
    /// plaintext answer still does).
    #[tokio::test]
    async fn agent_request_receipts_keep_the_v1_layout() {
        let hash = enclave_cloud_common::Hash32([0xab; 32]);
        let (exec, keys) = weights_setup(hash);
        let task = JobTask {
            subject: ReceiptSubject::Request(RequestId(3)),
            model_id: model(),
            input: serde_json::to_vec(&chat_request("x")).unwrap(),
            user_key: None,
        };
        let result = exec.execute(&task).await.unwrap();
        assert_eq!(result.receipt.weights_hash, None);
        let out: JobResponse = serde_json::from_slice(&result.output).unwrap();
        assert_eq!(out.weights_hash, Some(hash));
        assert!(verify_receipt(
            &keys.public().near_key,
            &result.receipt,
            &result.signature
        ));
    }

    #[tokio::test]
    async fn copied_input_with_another_user_key_is_refused_at_zero_usage() {
        let (exec, keys, backend) = setup(Echo::default());
        let victim = EncryptionSecret::generate();
        let attacker = EncryptionSecret::generate();
        let mut task = job_task(&keys, &victim, 1, &chat_request("x"));
        task.user_key = Some(attacker.public_key());
        let result = exec.execute(&task).await.unwrap();
        assert!(
            backend.seen_models.lock().unwrap().is_empty(),
            "no inference ran"
        );
        assert_eq!(result.receipt.usage.input_tokens.0, 0);
        let out = open_job_output(&attacker, task.subject, &model(), &result.output).unwrap();
        assert_eq!(out.status_code, 400);
        assert!(
            out.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("does not open")
        );
    }

    #[tokio::test]
    async fn user_errors_are_answered_and_node_errors_retried() {
        let (exec, keys, _) = setup(Echo::default());
        let user = EncryptionSecret::generate();
        let cases = [
            (
                JobRequest {
                    url: "/v1/images".into(),
                    ..chat_request("x")
                },
                400,
            ),
            (
                JobRequest {
                    url: EMBEDDINGS_URL.into(),
                    body: serde_json::json!({"model": "x", "input": "hi"}),
                    method: "POST".into(),
                },
                400, // the backend does not embed
            ),
            (
                JobRequest {
                    body: serde_json::json!({"messages": "not a list"}),
                    ..chat_request("x")
                },
                400,
            ),
        ];
        for (i, (req, status)) in cases.into_iter().enumerate() {
            let task = job_task(&keys, &user, i as u64, &req);
            let result = exec.execute(&task).await.unwrap();
            let out = open_job_output(&user, task.subject, &model(), &result.output).unwrap();
            assert_eq!(out.status_code, status, "case {i}: {:?}", out.body);
            assert_eq!(result.receipt.usage.input_tokens.0, 0);
        }
        // A model this node does not serve.
        let mut task = job_task(&keys, &user, 9, &chat_request("x"));
        task.model_id = "unknown".parse().unwrap();
        task.input = seal_job_input(
            &keys.public().enclave_key,
            &task.model_id,
            &user.public_key(),
            &chat_request("x"),
        )
        .unwrap()
        .to_bytes();
        let result = exec.execute(&task).await.unwrap();
        let out = open_job_output(&user, task.subject, &task.model_id, &result.output).unwrap();
        assert_eq!(out.status_code, 404);
        // The backend is down: no result, the job stays claimed and is retried.
        let (exec, keys, _) = setup(Echo {
            fail: Some(InferenceError::Transport("connection refused".into())),
            ..Echo::default()
        });
        let task = job_task(&keys, &user, 10, &chat_request("x"));
        assert!(matches!(
            exec.execute(&task).await,
            Err(JobError::Backend(_))
        ));
        let mut no_key = task.clone();
        no_key.user_key = None;
        assert!(matches!(
            exec.execute(&no_key).await,
            Err(JobError::NoUserKey { .. })
        ));
    }

    #[tokio::test]
    async fn agent_requests_are_plaintext() {
        let (exec, keys, _) = setup(Echo::default());
        let task = JobTask {
            subject: ReceiptSubject::Request(RequestId(3)),
            model_id: model(),
            input: serde_json::to_vec(&chat_request("x")).unwrap(),
            user_key: None,
        };
        let result = exec.execute(&task).await.unwrap();
        let out: JobResponse = serde_json::from_slice(&result.output).unwrap();
        assert_eq!(out.status_code, 200);
        assert!(verify_receipt(
            &keys.public().near_key,
            &result.receipt,
            &result.signature
        ));
    }
}
