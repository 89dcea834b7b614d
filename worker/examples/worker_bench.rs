//! Worker micro-benchmarks, printed as `BENCH <name> <value> <unit>` lines:
//!
//! * `worker.envelope.seal_open_1kib`: HPKE seal + open of a 1 KiB job input;
//! * `worker.embed.minilm.batch8`: all-MiniLM-L6-v2 sentence embeddings on the CPU
//!   (needs `ECLOUD_MINILM_DIR`, see `scripts/fetch-model.sh`).
//!
//! `cargo run -p worker --profile bench --example worker_bench` (times: compare only as ratios in one run).

use std::time::Instant;

use enclave_cloud_common::ModelId;
use worker::envelope::{EncryptionSecret, EnvelopeContext, open, seal_to};
use worker::inference::embedded::MiniLmBackend;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let node = EncryptionSecret::generate();
    let ctx = EnvelopeContext::JobInput {
        model_id: ModelId::try_from("minilm".to_string())?,
        user_key: [1; 32],
    };
    let input = vec![7u8; 1024];
    let rounds = 2_000u32;
    let start = Instant::now();
    for _ in 0..rounds {
        let env = seal_to(&node.public_key(), &input, &ctx)?;
        let plain = open(&node, &env, &ctx)?;
        assert_eq!(plain.len(), input.len());
    }
    let per_sec = f64::from(rounds) / start.elapsed().as_secs_f64();
    println!("BENCH worker.envelope.seal_open_1kib {per_sec:.0} ops/s");

    let Some(dir) = MiniLmBackend::dir_from_env() else {
        eprintln!("bench: ECLOUD_MINILM_DIR unset, skipping the embedding benchmark");
        return Ok(());
    };
    let model = MiniLmBackend::load(&dir)?;
    let batch: Vec<String> = (0..8)
        .map(|i| format!("Sentence number {i} about confidential inference on attested GPUs."))
        .collect();
    model.embed_blocking(&batch)?; // warm-up
    let batches = 5u32;
    let start = Instant::now();
    let mut tokens = 0;
    for _ in 0..batches {
        tokens += model.embed_blocking(&batch)?.1;
    }
    let secs = start.elapsed().as_secs_f64();
    let texts = f64::from(batches) * batch.len() as f64;
    println!(
        "BENCH worker.embed.minilm.batch8 {:.1} texts/s",
        texts / secs
    );
    println!(
        "BENCH worker.embed.minilm.tokens {:.0} tokens/s",
        tokens as f64 / secs
    );
    Ok(())
}
