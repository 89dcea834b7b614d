//! An OpenAI-compatible HTTP server as the backend (vLLM, SGLang, llama.cpp server, Ollama).
//! `base_url` includes the API prefix, e.g. `http://127.0.0.1:8000/v1`.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    BackendFuture, ChatCompletionRequest, ChatCompletionResponse, EmbeddingsRequest,
    EmbeddingsResponse, InferenceBackend, InferenceError, OpenAiErrorBody,
};

#[derive(Debug, Clone)]
pub struct OpenAiHttpBackend {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<String>,
}

impl OpenAiHttpBackend {
    pub fn new(
        base_url: &str,
        api_key: Option<String>,
        timeout: Duration,
    ) -> Result<Self, InferenceError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| InferenceError::Transport(e.to_string()))?;
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
        })
    }

    async fn post<B: Serialize + Sync, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, InferenceError> {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base_url))
            .json(body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| InferenceError::Transport(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| InferenceError::Transport(e.to_string()))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<OpenAiErrorBody>(&bytes)
                .map(|b| b.error.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).chars().take(500).collect());
            return Err(InferenceError::Upstream {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| InferenceError::Protocol(e.to_string()))
    }
}

impl InferenceBackend for OpenAiHttpBackend {
    fn name(&self) -> &'static str {
        "openai-http"
    }

    fn chat(&self, request: ChatCompletionRequest) -> BackendFuture<'_, ChatCompletionResponse> {
        Box::pin(async move {
            if request.stream == Some(true) {
                return Err(InferenceError::Unsupported {
                    backend: self.name(),
                    what: "streaming",
                });
            }
            self.post("/chat/completions", &request).await
        })
    }

    fn embed(&self, request: EmbeddingsRequest) -> BackendFuture<'_, EmbeddingsResponse> {
        Box::pin(async move { self.post("/embeddings", &request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inference::{
        ChatChoice, ChatMessage, EmbeddingData, EmbeddingInput, OpenAiError, Usage,
    };
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::{Json, Router};

    fn words(s: &str) -> u64 {
        s.split_whitespace().count() as u64
    }

    fn error(status: StatusCode, message: &str) -> (StatusCode, Json<serde_json::Value>) {
        let body = OpenAiErrorBody {
            error: OpenAiError {
                message: message.into(),
                kind: "invalid_request_error".into(),
                code: None,
            },
        };
        (status, Json(serde_json::to_value(body).unwrap()))
    }

    /// A tiny OpenAI-compatible server: chat reverses the last message's words, embeddings are
    /// (length, word count); tokens are words. Model "missing" answers 404, requests without
    /// the expected bearer token 401.
    async fn upstream() -> String {
        async fn chat(
            headers: HeaderMap,
            Json(req): Json<ChatCompletionRequest>,
        ) -> Result<Json<ChatCompletionResponse>, (StatusCode, Json<serde_json::Value>)> {
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer k") {
                return Err(error(StatusCode::UNAUTHORIZED, "bad key"));
            }
            if req.model == "missing" {
                return Err(error(StatusCode::NOT_FOUND, "model missing not found"));
            }
            let prompt: u64 = req.messages.iter().map(|m| words(&m.content)).sum();
            let last = req
                .messages
                .last()
                .map(|m| m.content.clone())
                .unwrap_or_default();
            let answer: Vec<&str> = last.split_whitespace().rev().collect();
            let answer = answer.join(" ");
            Ok(Json(ChatCompletionResponse {
                id: "chatcmpl-1".into(),
                object: "chat.completion".into(),
                created: 1,
                model: req.model,
                usage: Usage::new(prompt, words(&answer)),
                choices: vec![ChatChoice {
                    index: 0,
                    message: ChatMessage {
                        role: "assistant".into(),
                        content: answer,
                    },
                    finish_reason: Some("stop".into()),
                }],
            }))
        }
        async fn embeddings(Json(req): Json<EmbeddingsRequest>) -> Json<serde_json::Value> {
            let inputs = req.input.into_vec();
            let prompt: u64 = inputs.iter().map(|s| words(s)).sum();
            let data: Vec<EmbeddingData> = inputs
                .iter()
                .enumerate()
                .map(|(i, s)| EmbeddingData {
                    object: "embedding".into(),
                    index: i as u32,
                    embedding: vec![s.len() as f32, words(s) as f32],
                })
                .collect();
            // Like vLLM: no completion_tokens in embedding usage.
            Json(serde_json::json!({
                "object": "list", "data": data, "model": req.model,
                "usage": {"prompt_tokens": prompt, "total_tokens": prompt}
            }))
        }
        async fn garbage() -> &'static str {
            "not json"
        }
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .route("/bad/embeddings", post(garbage));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    fn backend(base: &str, key: Option<&str>) -> OpenAiHttpBackend {
        OpenAiHttpBackend::new(base, key.map(str::to_owned), Duration::from_secs(10)).unwrap()
    }

    fn chat_request(model: &str, text: &str) -> ChatCompletionRequest {
        ChatCompletionRequest {
            model: model.into(),
            messages: vec![
                ChatMessage {
                    role: "system".into(),
                    content: "be brief".into(),
                },
                ChatMessage {
                    role: "user".into(),
                    content: text.into(),
                },
            ],
            max_tokens: Some(16),
            temperature: None,
            seed: None,
            stream: None,
        }
    }

    #[tokio::test]
    async fn chat_and_embeddings_with_usage() {
        let base = upstream().await;
        let b = backend(&format!("{base}/v1/"), Some("k"));
        let out = b
            .chat(chat_request("llama", "one two three"))
            .await
            .unwrap();
        assert_eq!(out.choices[0].message.content, "three two one");
        assert_eq!(out.usage, Usage::new(5, 3));
        let emb = b
            .embed(EmbeddingsRequest {
                model: "e5".into(),
                input: EmbeddingInput::Many(vec!["a b".into(), "abc".into()]),
                encoding_format: None,
            })
            .await
            .unwrap();
        assert_eq!(emb.data.len(), 2);
        assert_eq!(emb.data[1].embedding, vec![3.0, 1.0]);
        assert_eq!(emb.usage, Usage::new(3, 0));
    }

    #[tokio::test]
    async fn upstream_errors_are_typed() {
        let base = upstream().await;
        let b = backend(&format!("{base}/v1"), Some("k"));
        assert_eq!(
            b.chat(chat_request("missing", "x")).await,
            Err(InferenceError::Upstream {
                status: 404,
                message: "model missing not found".into()
            })
        );
        let unauth = backend(&format!("{base}/v1"), None);
        assert!(matches!(
            unauth.chat(chat_request("llama", "x")).await,
            Err(InferenceError::Upstream { status: 401, .. })
        ));
        let mut streaming = chat_request("llama", "x");
        streaming.stream = Some(true);
        assert!(matches!(
            b.chat(streaming).await,
            Err(InferenceError::Unsupported { .. })
        ));
        let bad = backend(&format!("{base}/bad"), None);
        let req = EmbeddingsRequest {
            model: "e5".into(),
            input: EmbeddingInput::One("x".into()),
            encoding_format: None,
        };
        assert!(matches!(
            bad.embed(req.clone()).await,
            Err(InferenceError::Protocol(_))
        ));
        // Nothing listens on port 9 of localhost.
        let down = backend("http://127.0.0.1:9/v1", None);
        assert!(matches!(
            down.embed(req).await,
            Err(InferenceError::Transport(_))
        ));
    }
}
