//! The OpenAI JSON shapes inside job plaintexts, and the ones the worker speaks upstream (to
//! vLLM, SGLang, llama.cpp, Ollama) and downstream (its own `/v1` endpoint). Only the fields
//! the worker uses or must pass through.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// The legacy name of `max_completion_tokens`; either bounds the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Server-sent events of [`ChatCompletionChunk`]s (the `/v1` endpoint; job results are
    /// sealed and signed as a whole, so jobs do not stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
}

impl ChatCompletionRequest {
    /// The completion bound the client asked for: `max_completion_tokens`, else `max_tokens`.
    pub fn max_completion_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether a stream ends with a chunk carrying the usage (`stream_options.include_usage`).
    pub fn stream_includes_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
}

/// One server-sent event of a streamed chat completion (`object: "chat.completion.chunk"`).
/// The content chunks concatenate to the message; the last choice chunk has `finish_reason`;
/// with `stream_options.include_usage` a final chunk has no choices and the usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    #[serde(default = "chunk_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

fn chunk_object() -> String {
    "chat.completion.chunk".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: ChatDelta,
    /// `null` until the last chunk of the choice (serialized as `null`, as OpenAI does).
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// What a chunk adds to the message: the role in the first chunk, then content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    #[serde(default = "list_object")]
    pub object: String,
    pub data: Vec<ModelCard>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub id: String,
    #[serde(default = "model_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub owned_by: String,
}

fn model_object() -> String {
    "model".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChoice {
    pub index: u32,
    pub message: ChatMessage,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// Token counts, as OpenAI reports them; what the job is charged for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionResponse {
    pub id: String,
    #[serde(default = "chat_object")]
    pub object: String,
    #[serde(default)]
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
}

fn chat_object() -> String {
    "chat.completion".into()
}

/// `input`: one string or a batch of strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
}

impl EmbeddingInput {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    /// `"float"` (the default) or `"base64"` (what the OpenAI SDKs ask for by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EmbeddingData {
    #[serde(default = "embedding_object")]
    pub object: String,
    pub index: u32,
    /// Read from a JSON array or from OpenAI's base64 form.
    #[serde(deserialize_with = "floats_or_base64")]
    pub embedding: Vec<f32>,
    /// Written as base64 of the little-endian f32 values (`encoding_format: "base64"`).
    #[serde(skip)]
    pub base64: bool,
}

impl Serialize for EmbeddingData {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut st = s.serialize_struct("EmbeddingData", 3)?;
        st.serialize_field("object", &self.object)?;
        st.serialize_field("index", &self.index)?;
        if self.base64 {
            use base64::Engine as _;
            let bytes: Vec<u8> = self
                .embedding
                .iter()
                .flat_map(|f| f.to_le_bytes())
                .collect();
            st.serialize_field(
                "embedding",
                &base64::engine::general_purpose::STANDARD.encode(bytes),
            )?;
        } else {
            st.serialize_field("embedding", &self.embedding)?;
        }
        st.end()
    }
}

fn floats_or_base64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Floats(Vec<f32>),
        Base64(String),
    }
    match Form::deserialize(d)? {
        Form::Floats(v) => Ok(v),
        Form::Base64(s) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(serde::de::Error::custom)?;
            if bytes.len() % 4 != 0 {
                return Err(serde::de::Error::custom("base64 embedding is not f32s"));
            }
            Ok(bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        }
    }
}

fn embedding_object() -> String {
    "embedding".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsResponse {
    #[serde(default = "list_object")]
    pub object: String,
    pub data: Vec<EmbeddingData>,
    pub model: String,
    pub usage: Usage,
}

fn list_object() -> String {
    "list".into()
}

/// OpenAI's error body: `{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAiErrorBody {
    pub error: OpenAiError,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAiError {
    pub message: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The request field at fault, if any (`null` otherwise, as OpenAI sends it).
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
}
