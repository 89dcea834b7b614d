//! Several backends behind one: each request goes to the first backend that serves its model
//! (e.g. the embedded MiniLM for embeddings and the embedded Gemma for chat); `/v1/models` lists
//! them all.

use std::sync::Arc;

use super::{
    BackendFuture, ChatCompletionRequest, ChatCompletionResponse, ChunkStream, EmbeddingsRequest,
    EmbeddingsResponse, InferenceBackend, InferenceError,
};

pub struct Routed {
    backends: Vec<Arc<dyn InferenceBackend>>,
}

impl Routed {
    pub fn new(backends: Vec<Arc<dyn InferenceBackend>>) -> Self {
        Self { backends }
    }

    /// The first backend serving `model`.
    fn backend_for(&self, model: &str) -> Result<&dyn InferenceBackend, InferenceError> {
        self.backends
            .iter()
            .find(|b| b.serves(model))
            .map(|b| b.as_ref())
            .ok_or_else(|| InferenceError::UnknownModel(model.to_owned()))
    }
}

impl InferenceBackend for Routed {
    fn name(&self) -> &'static str {
        "routed"
    }

    fn models(&self) -> BackendFuture<'_, Vec<String>> {
        Box::pin(async move {
            let mut all = Vec::new();
            for backend in &self.backends {
                all.extend(backend.models().await?);
            }
            Ok(all)
        })
    }

    fn serves(&self, model: &str) -> bool {
        self.backends.iter().any(|b| b.serves(model))
    }

    fn chat(&self, request: ChatCompletionRequest) -> BackendFuture<'_, ChatCompletionResponse> {
        match self.backend_for(&request.model) {
            Ok(backend) => backend.chat(request),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn chat_stream(&self, request: ChatCompletionRequest) -> BackendFuture<'_, ChunkStream> {
        match self.backend_for(&request.model) {
            Ok(backend) => backend.chat_stream(request),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn embed(&self, request: EmbeddingsRequest) -> BackendFuture<'_, EmbeddingsResponse> {
        match self.backend_for(&request.model) {
            Ok(backend) => backend.embed(request),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}
