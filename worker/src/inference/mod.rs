//! Inference backends behind one trait: chat completions and embeddings, each returning the
//! output and its token usage (what a job is charged for).
//!
//! * [`http::OpenAiHttpBackend`]: any OpenAI-compatible server by base URL (vLLM, SGLang,
//!   llama.cpp server, Ollama); usage as the server's own tokenizer counted it.
//! * `embedded::MiniLmBackend` (feature `embedded`, default): all-MiniLM-L6-v2 on the CPU with
//!   candle-transformers' BERT, usage counted with the model's own tokenizer.
//! * `gemma::GemmaBackend` (feature `embedded`): gemma-3-270m chat on the CPU with
//!   candle-transformers' quantized Gemma 3, streaming token by token.
//! * [`routed::Routed`]: several backends behind one, each request to the one serving its model.

#[cfg(feature = "embedded")]
pub mod chat_template;
#[cfg(feature = "embedded")]
pub mod embedded;
#[cfg(feature = "embedded")]
pub mod gemma;
pub mod http;
#[cfg(feature = "embedded")]
pub mod pooling;
pub mod routed;
pub mod spm;
pub mod sse;
pub mod stream;

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
    #[error("invalid '{param}': {message}")]
    InvalidParam {
        param: &'static str,
        message: String,
    },
    #[error(
        "the prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) exceeds the \
         model's context of {limit} tokens"
    )]
    ContextTooLong {
        prompt_tokens: u64,
        max_tokens: u64,
        limit: u64,
    },
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

pub use stream::ChunkStream;

pub trait InferenceBackend: Send + Sync {
    /// A short name for logs and errors.
    fn name(&self) -> &'static str;
    /// The model ids this backend serves (`GET /v1/models`).
    fn models(&self) -> BackendFuture<'_, Vec<String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Whether requests for `model` are this backend's (an upstream server decides itself).
    fn serves(&self, _model: &str) -> bool {
        true
    }
    fn chat(&self, request: ChatCompletionRequest) -> BackendFuture<'_, ChatCompletionResponse>;
    /// A streamed chat completion (`stream: true`): validation errors come back before the
    /// first chunk, so they are answered with an HTTP status.
    fn chat_stream(&self, _request: ChatCompletionRequest) -> BackendFuture<'_, ChunkStream> {
        Box::pin(async move {
            Err(InferenceError::Unsupported {
                backend: self.name(),
                what: "streaming",
            })
        })
    }
    fn embed(&self, request: EmbeddingsRequest) -> BackendFuture<'_, EmbeddingsResponse>;
}
