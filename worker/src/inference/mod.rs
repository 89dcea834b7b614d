//! Inference backends behind one trait: chat completions and embeddings, each returning the
//! output and its token usage (what a job is charged for).
//!
//! * [`http::OpenAiHttpBackend`]: any OpenAI-compatible server by base URL (vLLM, SGLang,
//!   llama.cpp server, Ollama); usage as the server's own tokenizer counted it.
//! * `embedded::MiniLmBackend` (feature `embedded`, default): all-MiniLM-L6-v2 on the CPU with
//!   candle-transformers' BERT, usage counted with the model's own tokenizer.

#[cfg(feature = "embedded")]
pub mod embedded;
pub mod http;
#[cfg(feature = "embedded")]
pub mod pooling;

use std::future::Future;
use std::pin::Pin;

/// The OpenAI request and response shapes (the shared wire format).
pub use protocol::openai::*;

/// Environment variable naming the embedded model's directory.
pub const MODEL_DIR_ENV: &str = "ECLOUD_MINILM_DIR";

/// A boxed future, so backends can be used as `Arc<dyn InferenceBackend>`.
pub type BackendFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, InferenceError>> + Send + 'a>>;

/// Why inference failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InferenceError {
    #[error("backend '{backend}' does not support {what}")]
    Unsupported {
        backend: &'static str,
        what: &'static str,
    },
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("model '{0}' is not served here")]
    UnknownModel(String),
    #[error("upstream returned HTTP {status}: {message}")]
    Upstream { status: u16, message: String },
    #[error("upstream unreachable: {0}")]
    Transport(String),
    #[error("upstream answered with an unexpected body: {0}")]
    Protocol(String),
    #[error("model failure: {0}")]
    Model(String),
}

pub trait InferenceBackend: Send + Sync {
    /// A short name for logs and errors.
    fn name(&self) -> &'static str;
    fn chat(&self, request: ChatCompletionRequest) -> BackendFuture<'_, ChatCompletionResponse>;
    fn embed(&self, request: EmbeddingsRequest) -> BackendFuture<'_, EmbeddingsResponse>;
}
