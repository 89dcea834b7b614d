//! gemma-3-270m through the worker's OpenAI endpoint: the tokenizer on the real vocabulary, the
//! chat template, greedy and seeded completions, streaming, usage, `max_tokens`, concurrency,
//! and OpenAI-shaped refusals.
//!
//! Needs the GGUF: `eval "$(worker/scripts/fetch-gemma.sh)"` (sets ECLOUD_GEMMA_GGUF); without
//! it every test here prints why and passes without checking anything.

use std::sync::{Arc, OnceLock};

use worker::api::{ApiState, MAX_REQUEST_BYTES, router};
use worker::attest::AttestationProvider;
use worker::attest::dev::DevProvider;
use worker::inference::gemma::{GGUF_ENV, GemmaBackend, MODEL_ID};
use worker::inference::spm::TokenKind;
use worker::inference::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatMessage, ModelList,
    OpenAiErrorBody, Usage,
};
use worker::keys::EnclaveKeys;

/// The model, loaded once for all tests; `None` (after saying so) without ECLOUD_GEMMA_GGUF.
fn backend() -> Option<GemmaBackend> {
    static MODEL: OnceLock<Option<GemmaBackend>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let Some(path) = GemmaBackend::path_from_env() else {
                eprintln!(
                    "SKIPPED: {GGUF_ENV} is not set; run eval \"$(worker/scripts/fetch-gemma.sh)\""
                );
                return None;
            };
            Some(GemmaBackend::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        })
        .clone()
}

/// The endpoint on the shared model, at a fresh port.
async fn serve(backend: GemmaBackend) -> String {
    let keys = EnclaveKeys::generate().expect("enclave keys");
    let dev = DevProvider::new(&[9; 32], 3600);
    let bundle = dev
        .attest(&keys.public(), 1_700_000_000)
        .expect("dev attestation");
    let state = ApiState::new(Arc::new(backend), bundle);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move { axum::serve(listener, router(state)).await.expect("serve") });
    format!("http://{addr}")
}

fn user(content: &str) -> ChatMessage {
    ChatMessage {
        role: "user".into(),
        content: content.into(),
    }
}

fn greedy(prompt: &str, max_tokens: u32) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: MODEL_ID.into(),
        messages: vec![user(prompt)],
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        ..ChatCompletionRequest::default()
    }
}

async fn complete(base: &str, request: &ChatCompletionRequest) -> ChatCompletionResponse {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(request)
        .send()
        .await
        .expect("the endpoint answers");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("a chat.completion")
}

/// The `data:` payloads of a streamed response, in order.
async fn stream_events(base: &str, request: &ChatCompletionRequest) -> Vec<String> {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(request)
        .send()
        .await
        .expect("the endpoint answers");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().expect("ascii"),
        "text/event-stream"
    );
    let body = resp.text().await.expect("the stream body");
    assert!(body.ends_with("\n\n"), "{body:?}");
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {e:?}"))
                .to_owned()
        })
        .collect()
}

fn content(response: &ChatCompletionResponse) -> &str {
    &response.choices[0].message.content
}

/// Text a reader would call text: words of letters, no control-token spelling, no U+FFFD.
fn assert_coherent(text: &str) {
    let words = text
        .split_whitespace()
        .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 2)
        .count();
    assert!(words >= 2, "not text: {text:?}");
    assert!(
        !text.contains('\u{FFFD}') && !text.contains("<start_of_turn>"),
        "{text:?}"
    );
}

#[test]
fn tokenizer_matches_the_vocabulary_on_real_text() {
    let Some(backend) = backend() else { return };
    let vocab = backend.vocab();
    assert_eq!(vocab.len(), 262_144);
    let ids = vocab.encode("Hello world");
    assert_eq!(ids, [9259, 1902], "Hello, ▁world");
    assert_eq!(vocab.piece(1902).unwrap().text, "\u{2581}world");
    assert_eq!(vocab.decode(&ids), "Hello world");
    // The turn markers are single control tokens, never produced from text.
    let start = vocab.token_id("<start_of_turn>").unwrap();
    let end = vocab.token_id("<end_of_turn>").unwrap();
    assert_eq!((start, end), (105, 106));
    assert_eq!(vocab.piece(start).unwrap().kind, TokenKind::Control);
    let spelled = vocab.encode("<start_of_turn>user");
    assert!(!spelled.contains(&start), "{spelled:?}");
    assert_eq!(vocab.decode(&spelled), "<start_of_turn>user");
    assert_eq!((vocab.bos(), vocab.eos()), (2, 1));
    // Newline runs and space runs are Gemma's user-defined pieces.
    assert_eq!(vocab.encode("a\n\nb")[1], 108);
    for text in [
        "naïve café — 日本語 🙂 Ünïcödé",
        "  indented\n\tcode(x) { return x * 2; }\n\n\n",
        "ﬁ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u{200b} ٱلْعَرَبِيَّة",
    ] {
        let ids = vocab.encode(text);
        assert_eq!(vocab.decode(&ids), text, "{ids:?}");
    }
    // A rare character is spelled in byte tokens and still round-trips.
    let ids = vocab.encode("\u{10FFFD}");
    assert!(ids.len() > 1, "{ids:?}");
    assert!(
        ids.iter()
            .all(|&id| vocab.piece(id).unwrap().kind == TokenKind::Byte)
    );
}

#[test]
fn the_prompt_is_gemma3_chat_template() {
    let Some(backend) = backend() else { return };
    let vocab = backend.vocab();
    let request = ChatCompletionRequest {
        model: MODEL_ID.into(),
        messages: vec![
            ChatMessage {
                role: "system".into(),
                content: "Be brief.".into(),
            },
            user(" Hi! "),
            ChatMessage {
                role: "assistant".into(),
                content: "Hello.".into(),
            },
            user("Name a colour."),
        ],
        max_tokens: Some(8),
        ..ChatCompletionRequest::default()
    };
    let prompt = backend.prepare(&request).unwrap().prompt;
    let rendered: String = prompt
        .iter()
        .map(|&id| {
            let piece = vocab.piece(id).unwrap();
            match piece.kind {
                TokenKind::Control => piece.text.clone(),
                _ => vocab.decode(&[id]),
            }
        })
        .collect();
    assert_eq!(
        rendered,
        "<bos><start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n\
         <start_of_turn>model\nHello.<end_of_turn>\n\
         <start_of_turn>user\nName a colour.<end_of_turn>\n\
         <start_of_turn>model\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_completion_and_its_stream_agree_with_exact_usage() {
    let Some(backend) = backend() else { return };
    let base = serve(backend.clone()).await;
    let request = greedy("Write one sentence about the sea.", 16);
    let expected_prompt = backend.prepare(&request).unwrap().prompt.len() as u64;

    let whole = complete(&base, &request).await;
    assert_eq!(whole.object, "chat.completion");
    assert_eq!(whole.model, MODEL_ID);
    assert_coherent(content(&whole));
    let finish = whole.choices[0].finish_reason.clone().unwrap();
    assert_eq!(whole.usage.prompt_tokens, expected_prompt);
    match finish.as_str() {
        "length" => assert_eq!(whole.usage.completion_tokens, 16),
        "stop" => assert!((1..16).contains(&whole.usage.completion_tokens)),
        other => panic!("finish_reason {other}"),
    }
    assert_eq!(
        whole.usage,
        Usage::new(expected_prompt, whole.usage.completion_tokens)
    );

    let mut streamed = request.clone();
    streamed.stream = Some(true);
    streamed.stream_options = Some(worker::inference::StreamOptions {
        include_usage: Some(true),
    });
    let events = stream_events(&base, &streamed).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<ChatCompletionChunk> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = &chunks[0].id;
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c.object, "chat.completion.chunk");
        assert_eq!(&c.id, id);
        assert_eq!(c.model, MODEL_ID);
    }
    assert_eq!(
        chunks[0].choices[0].delta.role.as_deref(),
        Some("assistant")
    );
    // ... content chunks, then the finish chunk, then the usage chunk.
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    let (finish_chunk, content_chunks) = rest.split_last().unwrap();
    assert!(usage_chunk.choices.is_empty());
    assert_eq!(usage_chunk.usage, Some(whole.usage));
    assert_eq!(
        finish_chunk.choices[0].finish_reason.as_deref(),
        Some(finish.as_str())
    );
    let text: String = content_chunks
        .iter()
        .filter_map(|c| c.choices[0].delta.content.clone())
        .collect();
    assert_eq!(text, content(&whole));
    // Token by token: at most one content chunk per generated token, none of them empty
    // (the role chunk aside), none with a finish reason.
    assert!(content_chunks.len() as u64 <= whole.usage.completion_tokens + 1);
    assert!(content_chunks.len() > 2, "{} chunks", content_chunks.len());
    for c in &content_chunks[1..] {
        assert!(!c.choices[0].delta.content.as_deref().unwrap().is_empty());
        assert_eq!(c.choices[0].finish_reason, None);
    }
    // Without include_usage, no usage chunk: the finish chunk is the last before [DONE].
    streamed.stream_options = None;
    let events = stream_events(&base, &streamed).await;
    let last: ChatCompletionChunk = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(
        last.choices[0].finish_reason.as_deref(),
        Some(finish.as_str())
    );
    assert_eq!(last.usage, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_ends_with_length() {
    let Some(backend) = backend() else { return };
    let base = serve(backend).await;
    let mut request = greedy("Count from one to twenty in words.", 5);
    request.max_tokens = None;
    request.max_completion_tokens = Some(5);
    let out = complete(&base, &request).await;
    assert_eq!(out.choices[0].finish_reason.as_deref(), Some("length"));
    assert_eq!(out.usage.completion_tokens, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_do_not_corrupt_each_other() {
    let Some(backend) = backend() else { return };
    let base = serve(backend).await;
    let a = greedy("Tell me about cats.", 10);
    let b = greedy("Describe a mountain at sunrise.", 10);
    let alone_a = complete(&base, &a).await;
    let alone_b = complete(&base, &b).await;
    assert_ne!(content(&alone_a), content(&alone_b));
    let (together_a, together_b) = tokio::join!(complete(&base, &a), complete(&base, &b));
    assert_eq!(content(&together_a), content(&alone_a));
    assert_eq!(content(&together_b), content(&alone_b));
    assert_eq!(together_a.usage, alone_a.usage);
    assert_eq!(together_b.usage, alone_b.usage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_makes_sampling_reproducible() {
    let Some(backend) = backend() else { return };
    let base = serve(backend).await;
    let mut request = greedy("Invent a name for a ship.", 8);
    request.temperature = Some(0.9);
    request.top_p = Some(0.95);
    request.seed = Some(42);
    let first = complete(&base, &request).await;
    let second = complete(&base, &request).await;
    assert_eq!(content(&first), content(&second));
    assert_eq!(first.usage, second.usage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_openai_errors_and_models_are_listed() {
    let Some(backend) = backend() else { return };
    let base = serve(backend).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/chat/completions");

    let models: ModelList = client
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models.object, "list");
    assert_eq!(models.data.len(), 1);
    assert_eq!(models.data[0].id, MODEL_ID);
    assert_eq!(models.data[0].object, "model");

    let refused = |status: u16, body: serde_json::Value| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let resp = client.post(&url).json(&body).send().await.unwrap();
            assert_eq!(resp.status(), status, "{body}");
            let raw: serde_json::Value = resp.json().await.unwrap();
            // Every field of OpenAI's error object is present (param may be null).
            for field in ["message", "type", "param", "code"] {
                assert!(raw["error"].get(field).is_some(), "{raw}");
            }
            serde_json::from_value::<OpenAiErrorBody>(raw)
                .unwrap()
                .error
        }
    };
    let hi = serde_json::json!([{"role": "user", "content": "hi"}]);

    // Embeddings: not this model's job; another model is unknown here.
    let embed = |model: &str| {
        client
            .post(format!("{base}/v1/embeddings"))
            .json(&serde_json::json!({"model": model, "input": "x"}))
            .send()
    };
    assert_eq!(embed(MODEL_ID).await.unwrap().status(), 400);
    assert_eq!(embed("all-minilm-l6-v2").await.unwrap().status(), 404);

    let e = refused(404, serde_json::json!({"model": "gpt-4", "messages": hi})).await;
    assert_eq!(e.code.as_deref(), Some("model_not_found"));
    assert_eq!(e.param.as_deref(), Some("model"));
    // Also when streaming: refused before any event, with a status.
    let e = refused(
        404,
        serde_json::json!({"model": "gpt-4", "messages": hi, "stream": true}),
    )
    .await;
    assert_eq!(e.code.as_deref(), Some("model_not_found"));

    for messages in [
        serde_json::json!([]),
        serde_json::json!([{"role": "system", "content": "only a system prompt"}]),
        serde_json::json!([{"role": "assistant", "content": "hi"}]),
        serde_json::json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]),
        serde_json::json!([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]),
        serde_json::json!([{"role": "tool", "content": "x"}]),
        serde_json::json!([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]),
    ] {
        let e = refused(
            400,
            serde_json::json!({"model": MODEL_ID, "messages": messages, "stream": true}),
        )
        .await;
        assert_eq!(e.param.as_deref(), Some("messages"), "{messages}");
        assert_eq!(e.kind, "invalid_request_error");
    }

    let e = refused(
        400,
        serde_json::json!({"model": MODEL_ID, "messages": hi, "max_tokens": 100_000}),
    )
    .await;
    assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
    let long = "word ".repeat(2000);
    let e = refused(
        400,
        serde_json::json!({"model": MODEL_ID, "messages": [{"role": "user", "content": long}]}),
    )
    .await;
    assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
    let e = refused(
        400,
        serde_json::json!({"model": MODEL_ID, "messages": hi, "max_tokens": 0}),
    )
    .await;
    assert_eq!(e.param.as_deref(), Some("max_tokens"));
    for (field, value) in [
        ("temperature", 2.5),
        ("temperature", -1.0),
        ("top_p", 0.0),
        ("top_p", 1.5),
    ] {
        let mut body = serde_json::json!({"model": MODEL_ID, "messages": hi});
        body[field] = value.into();
        let e = refused(400, body).await;
        assert_eq!(e.param.as_deref(), Some(field));
    }
    // Not JSON, the wrong shape, too large.
    let e = refused(
        400,
        serde_json::json!({"model": MODEL_ID, "messages": "hi"}),
    )
    .await;
    assert_eq!(e.code.as_deref(), Some("bad_json"));
    let huge = "x".repeat(MAX_REQUEST_BYTES + 1);
    let e = refused(
        413,
        serde_json::json!({"model": MODEL_ID, "messages": [{"role": "user", "content": huge}]}),
    )
    .await;
    assert_eq!(e.code.as_deref(), Some("request_too_large"));
    // Under the body limit but over the content bound: refused before tokenizing.
    let big = "x".repeat(worker::inference::gemma::MAX_PROMPT_CHARS + 1);
    let e = refused(
        400,
        serde_json::json!({"model": MODEL_ID, "messages": [{"role": "user", "content": big}]}),
    )
    .await;
    assert_eq!(e.param.as_deref(), Some("messages"));
}
