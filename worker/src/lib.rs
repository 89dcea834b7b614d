//! enclave-cloud worker: the node agent that runs inside a TEE.
//!
//! * [`keys`]: the enclave's x25519 and NEAR ed25519 keys, sealed to the data dir.
//! * [`envelope`]: HPKE envelopes for job inputs and outputs ([`protocol::envelope`], shared
//!   with the `ecloud` client).
//! * [`attest`]: attestation providers (dev, Intel TDX configfs-tsm, NVIDIA NVML).
//! * [`inference`]: inference backends (OpenAI-compatible HTTP, embedded candle MiniLM and
//!   gemma-3-270m).
//! * [`api`]: the worker's own OpenAI-compatible endpoint plus `/v1/attestation`; its chat and
//!   models routes (streaming as server-sent events) in [`chat_api`].
//! * [`paid_api`]: the sealed (OHTTP), paid and signed API on the same listener: gateway,
//!   paid chat and embeddings, `/v1/signature/{id}`, `/v1/attestation/report`.
//! * [`channels`]: payment channels on the node's side (checks, reservations, bills, durable
//!   vouchers, settlement).
//! * [`job`]: one job inside the enclave (open, infer, seal, sign).
//! * [`journal`]: in-flight jobs, so a restart resumes without losing or double-charging.
//! * [`claim`]: which open jobs are worth claiming (cap covers the input, time left).
//! * [`outputs`]: large outputs stored and served by URI (`GET /v1/outputs/{job_id}`).
//! * [`runner`]: exactly-once processing of claimed jobs (journal + executor).
//! * [`chain`]: the node's registry and marketplace calls (chain-client), its two signers.
//! * [`register`]: `worker register` (stake, function-call keys, `register_node`).
//! * [`devices`]: GPUs and NVSwitches bound to a registry challenge (begin, evidence,
//!   `register_node` / `reattest`, `add_gpu`), resumable.
//! * [`feed`]: offers from the indexer stream, its pages, or the contract.
//! * [`daemon`]: `worker run` (claim, run, submit; heartbeats, re-attestation, shutdown).
//! * [`metrics`]: Prometheus metrics of `worker run`.
//! * [`node`]: glue of the `register` and `run` commands.
//! * [`served_weights`]: which weights each model is served with; `worker run`'s fetch,
//!   grant wait, in-memory decryption and check of a model's encrypted weights.
//! * [`cli`]: `worker init | attest | serve | register | run`.

pub mod api;
pub mod attest;
pub mod chain;
pub mod channels;
pub mod chat_api;
pub mod claim;
pub mod cli;
pub mod daemon;
pub mod devices;
pub mod encrypted_weights;
pub mod feed;
pub mod inference;
pub mod job;
pub mod journal;
pub mod keys;
pub mod metrics;
pub mod node;
pub mod outputs;
pub mod paid_api;
pub mod register;
pub mod runner;
pub mod serve;
pub mod served_weights;

/// The HPKE envelope (the shared wire format), where the worker's modules have always found it.
pub use protocol::envelope;
