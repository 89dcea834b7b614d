//! enclave-cloud worker: the node agent that runs inside a TEE.
//!
//! * [`keys`]: the enclave's x25519 and NEAR ed25519 keys, sealed to the data dir.
//! * [`envelope`]: HPKE envelopes for job inputs and outputs (shared with the `ecloud` client).
//! * [`attest`]: attestation providers (dev, Intel TDX configfs-tsm, NVIDIA NVML).
//! * [`inference`]: inference backends (OpenAI-compatible HTTP, embedded candle MiniLM).
//! * [`api`]: the worker's own OpenAI-compatible endpoint plus `/v1/attestation`.
//! * [`job`]: one job inside the enclave (open, infer, seal, sign) and the user-side helpers.
//! * [`journal`]: in-flight jobs, so a restart resumes without losing or double-charging.
//! * [`runner`]: exactly-once processing of claimed jobs (journal + executor).
//! * [`cli`]: `worker init | attest | serve`.

pub mod api;
pub mod attest;
pub mod cli;
pub mod envelope;
pub mod inference;
pub mod job;
pub mod journal;
pub mod keys;
pub mod runner;
