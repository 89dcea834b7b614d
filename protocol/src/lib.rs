//! enclave-cloud's off-chain wire formats, shared by the user's client (`ecloud`), the node
//! (`worker`) and the indexer. Each format is defined once here, so the writer and the reader
//! can never drift. On-chain types (ids, events, the receipt's signing bytes) stay in
//! `enclave-cloud-common`; this crate builds on them.
//!
//! * [`channel_api`]: the paid, private API between `ecloud proxy` and a node: payment
//!   headers, paths, billing.
//! * [`envelope`]: the HPKE envelope of job inputs and outputs, and its context binding.
//! * [`job`]: job plaintexts (an OpenAI Batch API line in, a status and body out) and the
//!   user's half of a job: seal the input, open the output.
//! * [`openai`]: the OpenAI request and response bodies inside those plaintexts.
//! * [`receipt`]: the result receipt a node signs, and its check.
//! * [`keys`]: key files (sealed node secrets) and [`user_key`]: the user's x25519 key file.
//! * [`weights`]: encrypted model weights (chunked AEAD file format), the model key and its
//!   grant envelope.
//! * [`dev_attestation`]: the `dev` attestation bundle (development CA instead of a TEE).
//! * [`indexer`]: the indexer's REST API response types (`utoipa` schemas with `openapi`).

pub mod channel_api;
pub mod dev_attestation;
pub mod envelope;
pub mod indexer;
pub mod job;
pub mod keys;
pub mod openai;
pub mod receipt;
pub mod user_key;
pub mod weights;
