//! Several backends behind one: each request goes to the first backend that serves its model
//! (e.g. the embedded MiniLM for embeddings and the embedded Gemma for chat); `/v1/models` lists
//! them all. Backends can be added while serving (a model whose encrypted weights became
//! ready, [`crate::served_weights`]).

use std::sync::{Arc, RwLock};

use super::{
    BackendFuture, ChatCompletionRequest, ChatCompletionResponse, ChunkStream, EmbeddingsRequest,
    EmbeddingsResponse, InferenceBackend, InferenceError,
};

pub struct Routed {
    backends: RwLock<Vec<Arc<dyn InferenceBackend>>>,
}

impl Routed {
    pub fn new(backends: Vec<Arc<dyn InferenceBackend>>) -> Self {
        Self {
            backends: RwLock::new(backends),
        }
    }

    /// Serves `backend`'s models from now on (after the ones already there).
    pub fn add(&self, backend: Arc<dyn InferenceBackend>) {
        self.list_mut().push(backend);
    }

    pub fn is_empty(&self) -> bool {
        self.list().is_empty()
    }

    fn list(&self) -> Vec<Arc<dyn InferenceBackend>> {
        self.backends
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn list_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<dyn InferenceBackend>>> {
        self.backends.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The first backend serving `model`.
    fn backend_for(&self, model: &str) -> Result<Arc<dyn InferenceBackend>, InferenceError> {
        self.list()
            .into_iter()
            .find(|b| b.serves(model))
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
            for backend in self.list() {
                all.extend(backend.models().await?);
            }
            Ok(all)
        })
    }

    fn serves(&self, model: &str) -> bool {
        self.list().iter().any(|b| b.serves(model))
    }

    fn chat(&self, request: ChatCompletionRequest) -> BackendFuture<'_, ChatCompletionResponse> {
        let backend = self.backend_for(&request.model);
        Box::pin(async move { backend?.chat(request).await })
    }

    fn chat_stream(&self, request: ChatCompletionRequest) -> BackendFuture<'_, ChunkStream> {
        let backend = self.backend_for(&request.model);
        Box::pin(async move { backend?.chat_stream(request).await })
    }

    fn embed(&self, request: EmbeddingsRequest) -> BackendFuture<'_, EmbeddingsResponse> {
        let backend = self.backend_for(&request.model);
        Box::pin(async move { backend?.embed(request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::{ChatChoice, ChatMessage, Usage};

    /// Serves one model; its answers name the backend.
    struct Named(&'static str);

    impl InferenceBackend for Named {
        fn name(&self) -> &'static str {
            self.0
        }
        fn models(&self) -> BackendFuture<'_, Vec<String>> {
            Box::pin(async move { Ok(vec![self.0.to_owned()]) })
        }
        fn serves(&self, model: &str) -> bool {
            model.eq_ignore_ascii_case(self.0)
        }
        fn chat(&self, r: ChatCompletionRequest) -> BackendFuture<'_, ChatCompletionResponse> {
            Box::pin(async move {
                Ok(ChatCompletionResponse {
                    id: "x".into(),
                    object: "chat.completion".into(),
                    created: 0,
                    model: r.model,
                    choices: vec![ChatChoice {
                        index: 0,
                        message: ChatMessage {
                            role: "assistant".into(),
                            content: self.0.into(),
                        },
                        finish_reason: None,
                    }],
                    usage: Usage::default(),
                })
            })
        }
        fn embed(&self, _r: EmbeddingsRequest) -> BackendFuture<'_, EmbeddingsResponse> {
            Box::pin(async move {
                Err(InferenceError::Unsupported {
                    backend: self.0,
                    what: "embeddings",
                })
            })
        }
    }

    #[tokio::test]
    async fn each_request_goes_to_the_backend_serving_its_model() {
        let routed = Routed::new(vec![Arc::new(Named("a")), Arc::new(Named("b"))]);
        assert_eq!(routed.models().await.unwrap(), ["a", "b"]);
        let ask = |model: &str| ChatCompletionRequest {
            model: model.into(),
            ..ChatCompletionRequest::default()
        };
        let answer = routed.chat(ask("B")).await.unwrap();
        assert_eq!(answer.choices[0].message.content, "b");
        assert_eq!(
            routed.chat(ask("c")).await,
            Err(InferenceError::UnknownModel("c".into()))
        );
        assert!(matches!(
            routed.chat_stream(ask("a")).await,
            Err(InferenceError::Unsupported { .. })
        ));
        routed.add(Arc::new(Named("c")));
        assert_eq!(
            routed.chat(ask("c")).await.unwrap().choices[0]
                .message
                .content,
            "c"
        );
        assert_eq!(routed.models().await.unwrap(), ["a", "b", "c"]);
    }
}
