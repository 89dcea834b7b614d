//! Time to first token and tokens/s of the embedded gemma-3-270m (CPU), greedy, streamed
//! through the backend as `/v1/chat/completions` streams it:
//!
//!   eval "$(worker/scripts/fetch-gemma.sh)"
//!   cargo run -p worker --example gemma_bench [--profile bench] -- [MAX_TOKENS] [RUNS] [PROMPT]

use std::time::Instant;

use futures_util::StreamExt;
use worker::inference::gemma::{GGUF_ENV, GemmaBackend, MODEL_ID};
use worker::inference::{ChatCompletionRequest, ChatMessage, InferenceBackend, StreamOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let max_tokens: u32 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(64);
    let runs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let prompt = args
        .next()
        .unwrap_or_else(|| "Write a short story about a lighthouse keeper.".into());
    let path = GemmaBackend::path_from_env().ok_or_else(|| {
        format!("{GGUF_ENV} is not set: eval \"$(worker/scripts/fetch-gemma.sh)\"")
    })?;
    let start = Instant::now();
    let backend = GemmaBackend::load(&path)?;
    println!("load: {:.2} s", start.elapsed().as_secs_f64());
    for run in 1..=runs {
        let request = ChatCompletionRequest {
            model: MODEL_ID.into(),
            messages: vec![ChatMessage {
                role: "user".into(),
                content: prompt.clone(),
            }],
            max_tokens: Some(max_tokens),
            temperature: Some(0.0),
            stream: Some(true),
            stream_options: Some(StreamOptions {
                include_usage: Some(true),
            }),
            ..ChatCompletionRequest::default()
        };
        let start = Instant::now();
        let mut chunks = backend.chat_stream(request).await?;
        let mut first_token = None;
        let mut usage = None;
        let mut text = String::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if let Some(content) = chunk
                .choices
                .first()
                .and_then(|c| c.delta.content.as_deref())
                && !content.is_empty()
            {
                first_token.get_or_insert_with(|| start.elapsed());
                text.push_str(content);
            }
            usage = usage.or(chunk.usage);
        }
        let total = start.elapsed();
        let usage = usage.ok_or("no usage chunk")?;
        let ttft = first_token.unwrap_or(total);
        let decode_secs = (total - ttft).as_secs_f64();
        let tokens_per_sec = if decode_secs > 0.0 {
            (usage.completion_tokens.saturating_sub(1)) as f64 / decode_secs
        } else {
            0.0
        };
        println!(
            "run {run}: prompt {} tokens, completion {} tokens, time to first token {:.0} ms, \
             {tokens_per_sec:.1} tokens/s after it, total {:.2} s",
            usage.prompt_tokens,
            usage.completion_tokens,
            ttft.as_secs_f64() * 1e3,
            total.as_secs_f64()
        );
        if run == 1 {
            println!("text: {text:?}");
        }
    }
    Ok(())
}
