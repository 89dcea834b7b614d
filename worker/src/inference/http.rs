//! An OpenAI-compatible HTTP server as the backend (vLLM, SGLang, llama.cpp server, Ollama).
//! `base_url` includes the API prefix, e.g. `http://127.0.0.1:8000/v1`.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::stream::chunks_of_sse;
use super::{
    BackendFuture, ChatCompletionRequest, ChatCompletionResponse, ChunkStream, EmbeddingsRequest,
    EmbeddingsResponse, InferenceBackend, InferenceError, ModelList, OpenAiErrorBody,
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

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self
            .client
            .request(method, format!("{}{path}", self.base_url));
        match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Sends `request`; a non-2xx answer becomes [`InferenceError::Upstream`] with the
    /// upstream's OpenAI error message.
    async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, InferenceError> {
        let response = request
            .send()
            .await
            .map_err(|e| InferenceError::Transport(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| InferenceError::Transport(e.to_string()))?;
        let message = serde_json::from_slice::<OpenAiErrorBody>(&bytes)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).chars().take(500).collect());
        Err(InferenceError::Upstream {
            status: status.as_u16(),
            message,
        })
    }

    async fn json<R: DeserializeOwned>(
        request: reqwest::RequestBuilder,
    ) -> Result<R, InferenceError> {
        let bytes = Self::send(request)
            .await?
            .bytes()
            .await
            .map_err(|e| InferenceError::Transport(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| InferenceError::Protocol(e.to_string()))
    }

    async fn post<B: Serialize + Sync, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, InferenceError> {
        Self::json(self.request(reqwest::Method::POST, path).json(body)).await
    }
}

impl InferenceBackend for OpenAiHttpBackend {
    fn name(&self) -> &'static str {
        "openai-http"
    }

    /// The upstream's `GET /models`.
    fn models(&self) -> BackendFuture<'_, Vec<String>> {
        Box::pin(async move {
            let list: ModelList = Self::json(self.request(reqwest::Method::GET, "/models")).await?;
            Ok(list.data.into_iter().map(|m| m.id).collect())
        })
    }

    fn chat(
        &self,
        mut request: ChatCompletionRequest,
    ) -> BackendFuture<'_, ChatCompletionResponse> {
        Box::pin(async move {
            // One JSON answer: streaming goes through chat_stream.
            request.stream = None;
            request.stream_options = None;
            self.post("/chat/completions", &request).await
        })
    }

    /// The upstream's own stream, chunk by chunk as its events arrive.
    fn chat_stream(&self, mut request: ChatCompletionRequest) -> BackendFuture<'_, ChunkStream> {
        Box::pin(async move {
            request.stream = Some(true);
            let response = Self::send(
                self.request(reqwest::Method::POST, "/chat/completions")
                    .header(reqwest::header::ACCEPT, "text/event-stream")
                    .json(&request),
            )
            .await?;
            let body = futures_util::stream::unfold(Some(response), |response| async move {
                let mut response = response?;
                match response.chunk().await {
                    Ok(Some(bytes)) => Some((Ok(bytes.to_vec()), Some(response))),
                    Ok(None) => None,
                    Err(e) => Some((Err(InferenceError::Transport(e.to_string())), None)),
                }
            });
            Ok(chunks_of_sse(Box::pin(body)))
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
    use axum::body::Body;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use futures_util::StreamExt;

    /// Releases the events of the "gated" model's stream.
    static GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);
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
                param: None,
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
        ) -> Result<Response, (StatusCode, Json<serde_json::Value>)> {
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
            if req.stream == Some(true) {
                return Ok(stream_words(&req.model, &answer));
            }
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
            })
            .into_response())
        }
        /// The words as chunks, like vLLM: each event written separately; model "gated" sends
        /// the first event, then each further one when the test adds a GATE permit; model
        /// "cut" ends without `[DONE]`.
        fn stream_words(model: &str, words: &[&str]) -> Response {
            let chunk = |delta: serde_json::Value, finish: Option<&str>| {
                format!(
                    "data: {}\r\n\r\n",
                    serde_json::json!({"id": "chatcmpl-up", "object": "chat.completion.chunk",
                        "created": 1, "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                )
            };
            let mut events = vec![chunk(serde_json::json!({"role": "assistant"}), None)];
            for (i, w) in words.iter().enumerate() {
                let text = if i == 0 {
                    w.to_string()
                } else {
                    format!(" {w}")
                };
                events.push(chunk(serde_json::json!({"content": text}), None));
            }
            events.push(chunk(serde_json::json!({}), Some("stop")));
            if model != "cut" {
                events.push("data: [DONE]\n\n".into());
            }
            let gated = model == "gated";
            let body = futures_util::stream::iter(events.into_iter().enumerate()).then(
                move |(i, event)| async move {
                    if gated && i > 0 {
                        GATE.acquire().await.unwrap().forget();
                    }
                    Ok::<_, std::convert::Infallible>(event)
                },
            );
            (
                [("content-type", "text/event-stream")],
                Body::from_stream(body),
            )
                .into_response()
        }
        async fn models() -> Json<serde_json::Value> {
            Json(serde_json::json!({"object": "list", "data": [
                {"id": "llama", "object": "model", "created": 1, "owned_by": "me"}]}))
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
                    base64: false,
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
            .route("/v1/models", axum::routing::get(models))
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
            ..ChatCompletionRequest::default()
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
    async fn streams_pass_through_chunk_by_chunk_and_models_are_listed() {
        let base = upstream().await;
        let b = backend(&format!("{base}/v1"), Some("k"));
        assert_eq!(b.models().await.unwrap(), ["llama"]);
        let mut stream = b
            .chat_stream(chat_request("gated", "one two three"))
            .await
            .unwrap();
        // The first chunk arrives while the upstream holds back the rest: nothing is buffered.
        let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("the first chunk was held back")
            .unwrap()
            .unwrap();
        assert_eq!(first.choices[0].delta.role.as_deref(), Some("assistant"));
        GATE.add_permits(10);
        let mut text = String::new();
        let mut finish = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            assert_eq!(chunk.object, "chat.completion.chunk");
            text.extend(chunk.choices[0].delta.content.clone());
            finish = finish.or(chunk.choices[0].finish_reason.clone());
        }
        assert_eq!(text, "three two one");
        assert_eq!(finish.as_deref(), Some("stop"));
        // The non-streaming call of a streaming request still gets one JSON answer.
        let mut whole = chat_request("llama", "one two");
        whole.stream = Some(true);
        assert_eq!(
            b.chat(whole).await.unwrap().choices[0].message.content,
            "two one"
        );
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
        // A refused stream is refused before any chunk.
        assert!(matches!(
            b.chat_stream(chat_request("missing", "x")).await,
            Err(InferenceError::Upstream { status: 404, .. })
        ));
        // A stream cut before [DONE] ends in an error, never silently.
        let mut cut = b.chat_stream(chat_request("cut", "a b")).await.unwrap();
        let mut last = None;
        while let Some(item) = cut.next().await {
            last = Some(item);
        }
        assert!(matches!(last, Some(Err(InferenceError::Protocol(_)))));
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
