//! The private API layer of enclave-cloud nodes (see README.md):
//!
//! * [`ohttp`] / [`chunked`]: Oblivious HTTP (RFC 9458) and chunked OHTTP to the node's
//!   attested x25519 key, Binary HTTP inside ([`bhttp`]), padded ([`padding`]), bounded
//!   ([`Limits`]);
//! * [`gateway`]: the axum router that puts the worker's routes behind it;
//! * [`client`] / [`stream`]: sealing requests and opening (streamed) responses for
//!   `ecloud proxy`;
//! * [`signature`] / [`report`]: signed responses and the attestation report, in NEAR AI
//!   Cloud's shapes.

pub mod bhttp;
pub mod chunked;
pub mod client;
mod crypto;
pub mod error;
pub mod gateway;
pub mod key_config;
pub mod limits;
pub mod ohttp;
pub mod padding;
mod random;
pub mod report;
pub mod signature;
pub mod stream;
pub mod varint;

pub use client::SealedClient;
pub use error::OhttpError;
pub use gateway::{Gateway, SealedRequest};
pub use key_config::{AeadId, GatewayKey, KeyConfig};
pub use limits::Limits;
pub use report::AttestationReport;
pub use signature::{ResponseSignature, ResponseSigner, SigningAlgo};
pub use stream::{StreamEvent, StreamOpener};
