//! Attestation providers: evidence that the worker's keys live in a TEE, as the bundle the
//! registry's `register_node` and `ecloud attestation verify` check.
//!
//! * [`dev::DevProvider`]: a development CA signs the keys (localnet/testnet only).
//! * [`tdx::TdxProvider`]: an Intel TDX quote from the kernel's configfs-tsm interface whose
//!   `report_data` commits to both keys, plus DCAP collateral, the dstack event log and GPU
//!   evidence from a [`GpuEvidenceSource`].
//! * `nvml::NvmlGpus` (feature `nvml`): NVIDIA confidential-computing evidence per GPU.

pub mod dev;
#[cfg(feature = "nvml")]
pub mod nvml;
pub mod tdx;

use std::io;
use std::path::PathBuf;

use attestation::{AttestationBundle, AttestationKind, GpuEvidence};

use crate::keys::PublicKeys;

/// Why evidence could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("configfs-tsm provider is '{0}', expected 'tdx_guest'")]
    WrongTsmProvider(String),
    #[error(
        "configfs-tsm report was changed concurrently (generation {before} -> {after}, expected +1)"
    )]
    TsmRace { before: u64, after: u64 },
    #[error("configfs-tsm {what} is not a number: '{value}'")]
    TsmAttribute { what: &'static str, value: String },
    #[error("the TEE returned a quote whose report_data does not bind our keys")]
    ReportDataMismatch,
    #[error("the TEE returned an unusable quote: {0}")]
    Quote(#[source] attestation::AttestationError),
    #[error("{what} in {path}: {reason}")]
    Evidence {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("GPU evidence: {0}")]
    Gpu(String),
    #[error("no randomness from the operating system: {0}")]
    Rng(String),
    #[error("dev CA key: {0}")]
    DevKey(String),
}

/// A source of TEE evidence for the worker's keys.
pub trait AttestationProvider: Send + Sync {
    fn kind(&self) -> AttestationKind;
    /// Produces a bundle binding `keys`, valid at `now_unix_secs`.
    fn attest(
        &self,
        keys: &PublicKeys,
        now_unix_secs: u64,
    ) -> Result<AttestationBundle, AttestError>;
}

/// Local GPUs' evidence over a verifier's fresh nonce.
pub trait GpuEvidenceSource: Send + Sync {
    fn evidence(&self, nonce: [u8; 32]) -> Result<Vec<GpuEvidence>, AttestError>;
}

/// A fresh 32-byte nonce from the operating system's CSPRNG.
pub fn fresh_nonce() -> Result<[u8; 32], AttestError> {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|e| AttestError::Rng(e.to_string()))?;
    Ok(nonce)
}

/// Seconds since the Unix epoch.
pub fn now_unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
