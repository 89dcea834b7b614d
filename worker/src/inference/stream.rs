//! Streamed chat completions: a stream of OpenAI `chat.completion.chunk`s, from a backend's
//! generation events (embedded) or passed through from an upstream's server-sent events (HTTP).
//!
//! The chunk sequence follows OpenAI's: a first chunk with `delta.role = "assistant"` and empty
//! content, one chunk per piece of text, a chunk with an empty delta and the `finish_reason`,
//! and, when the request asked for `stream_options.include_usage`, a last chunk with no choices
//! and the usage.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};

use super::sse::{MAX_EVENT_BYTES, SseEvent, SseParser};
use super::{ChatCompletionChunk, ChatDelta, ChunkChoice, InferenceError, OpenAiErrorBody, Usage};

/// Chunks of one streamed completion, ending after the last chunk (or an error).
pub type ChunkStream =
    Pin<Box<dyn Stream<Item = Result<ChatCompletionChunk, InferenceError>> + Send>>;

pub fn now_unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh `chatcmpl-…` id.
pub fn completion_id() -> Result<String, InferenceError> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|e| InferenceError::Model(format!("random id: {e}")))?;
    Ok(format!("chatcmpl-{}", hex::encode(bytes)))
}

/// Builds the chunks of one completion (same id, time and model in each).
#[derive(Debug, Clone)]
pub struct ChunkBuilder {
    id: String,
    created: u64,
    model: String,
}

impl ChunkBuilder {
    pub fn new(model: &str) -> Result<Self, InferenceError> {
        Ok(Self {
            id: completion_id()?,
            created: now_unix_secs(),
            model: model.into(),
        })
    }

    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        }
    }

    fn choice(&self, delta: ChatDelta, finish_reason: Option<&str>) -> ChatCompletionChunk {
        self.chunk(
            vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish_reason.map(str::to_owned),
            }],
            None,
        )
    }

    /// The first chunk: the assistant's role.
    pub fn role(&self) -> ChatCompletionChunk {
        self.choice(
            ChatDelta {
                role: Some("assistant".into()),
                content: Some(String::new()),
            },
            None,
        )
    }

    pub fn content(&self, text: String) -> ChatCompletionChunk {
        self.choice(
            ChatDelta {
                role: None,
                content: Some(text),
            },
            None,
        )
    }

    pub fn finish(&self, reason: &str) -> ChatCompletionChunk {
        self.choice(ChatDelta::default(), Some(reason))
    }

    pub fn usage(&self, usage: Usage) -> ChatCompletionChunk {
        self.chunk(Vec::new(), Some(usage))
    }
}

#[cfg(feature = "embedded")]
pub use embedded_events::chunks_of_events;

#[cfg(feature = "embedded")]
mod embedded_events {
    use super::*;
    use crate::inference::gemma::GenerationEvent;
    use tokio::sync::mpsc;

    /// The chunk stream of a generation's events.
    pub fn chunks_of_events(
        model: &str,
        include_usage: bool,
        events: mpsc::Receiver<Result<GenerationEvent, InferenceError>>,
    ) -> Result<ChunkStream, InferenceError> {
        let builder = ChunkBuilder::new(model)?;
        let first = futures_util::stream::iter([Ok(builder.role())]);
        let rest = futures_util::stream::unfold(events, |mut events| async move {
            events.recv().await.map(|event| (event, events))
        })
        .flat_map(move |event| {
            let chunks: Vec<Result<ChatCompletionChunk, InferenceError>> = match event {
                Ok(GenerationEvent::Text(text)) => vec![Ok(builder.content(text))],
                Ok(GenerationEvent::Finished { reason, usage }) => {
                    let mut last = vec![Ok(builder.finish(reason.as_str()))];
                    if include_usage {
                        last.push(Ok(builder.usage(usage)));
                    }
                    last
                }
                Err(e) => vec![Err(e)],
            };
            futures_util::stream::iter(chunks)
        });
        Ok(Box::pin(first.chain(rest)))
    }
}

/// The chunks of an upstream's `text/event-stream` body, each `data:` event parsed as a chunk,
/// until `data: [DONE]`; `body` yields the bytes as they arrive.
pub fn chunks_of_sse<S>(body: S) -> ChunkStream
where
    S: Stream<Item = Result<Vec<u8>, InferenceError>> + Send + Unpin + 'static,
{
    struct State<S> {
        body: S,
        parser: SseParser,
        done: bool,
    }
    let state = State {
        body,
        parser: SseParser::default(),
        done: false,
    };
    Box::pin(futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            match s.parser.next_event() {
                Some(SseEvent::Data(data)) if data.trim() == "[DONE]" => return None,
                Some(SseEvent::Data(data)) => {
                    let parsed = parse_chunk(&data);
                    s.done = parsed.is_err();
                    return Some((parsed, s));
                }
                None if s.parser.pending() > MAX_EVENT_BYTES => {
                    s.done = true;
                    return Some((
                        Err(InferenceError::Protocol(format!(
                            "a stream event over {MAX_EVENT_BYTES} bytes"
                        ))),
                        s,
                    ));
                }
                None => {}
            }
            match s.body.next().await {
                Some(Ok(bytes)) => s.parser.push(&bytes),
                None => {
                    s.done = true;
                    return Some((
                        Err(InferenceError::Protocol(
                            "the stream ended without data: [DONE]".into(),
                        )),
                        s,
                    ));
                }
                Some(Err(e)) => {
                    s.done = true;
                    return Some((Err(e), s));
                }
            }
        }
    }))
}

/// One upstream event: a chunk, or the error an upstream reports in the stream.
fn parse_chunk(data: &str) -> Result<ChatCompletionChunk, InferenceError> {
    serde_json::from_str::<ChatCompletionChunk>(data).map_err(|e| {
        match serde_json::from_str::<OpenAiErrorBody>(data) {
            Ok(body) => InferenceError::Upstream {
                status: 200,
                message: body.error.message,
            },
            Err(_) => InferenceError::Protocol(format!(
                "stream chunk: {e}: {}",
                data.chars().take(200).collect::<String>()
            )),
        }
    })
}
