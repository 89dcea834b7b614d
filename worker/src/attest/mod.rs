//! Attestation providers: evidence that the worker's keys live in a TEE, as the bundle the
//! registry's `register_node` and `ecloud attestation verify` check.
//!
//! * [`dev::DevProvider`]: a development CA signs the keys (localnet/testnet only).
//! * [`tdx::TdxProvider`]: an Intel TDX quote from the kernel's configfs-tsm interface whose
//!   `report_data` commits to both keys, plus DCAP collateral, the dstack event log and GPU
//!   evidence from a [`GpuEvidenceSource`].
//! * [`dstack::DstackProvider`]: the same on a dstack CVM, quotes and the event log from
//!   dstack's guest agent, which also measures runtime events into RTMR3 (`EmitEvent`).
//! * `nvml::NvmlGpus` (feature `nvml`): NVIDIA confidential-computing evidence per GPU.
//! * [`dev_gpu::DevGpus`]: the library's dev GPU fleet (GPUs and NVSwitches under the dev
//!   root), only with dev attestation.
//!
//! Device evidence is not part of [`AttestationProvider::attest`]: every GPU and switch
//! answers the binding nonce of a registry challenge (`attestation::gpu_binding_nonce`),
//! which [`crate::devices`] obtains and hands to a [`GpuEvidenceSource`].

pub mod dev;
pub mod dev_gpu;
pub mod dstack;
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
    #[error("dstack guest agent at {socket} ({method}): {reason}")]
    GuestAgent {
        socket: PathBuf,
        method: &'static str,
        reason: String,
    },
    #[error("measuring '{event}' into RTMR3: {reason}")]
    Measure { event: String, reason: String },
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
    /// Extends RTMR3 with the dstack runtime event `event` (e.g. `ecloud-model-weights` and
    /// a weights hash): every later bundle carries it, replayed by the verifier like
    /// compose-hash.
    fn measure(&self, event: &str, payload: &[u8]) -> Result<(), AttestError>;
}

/// Every local GPU's and NVSwitch's evidence for one nonce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceEvidence {
    pub gpus: Vec<GpuEvidence>,
    pub switches: Vec<GpuEvidence>,
}

/// The local GPUs (and NVSwitches): how many, and their evidence over a nonce.
pub trait GpuEvidenceSource: Send + Sync {
    /// How many GPUs and NVSwitches the node has (what a registration declares).
    fn counts(&self) -> Result<(u32, u32), AttestError>;
    /// Evidence of every device answering `nonce` (the binding nonce).
    fn evidence(&self, nonce: [u8; 32]) -> Result<DeviceEvidence, AttestError>;
}

/// Seconds since the Unix epoch.
pub fn now_unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
