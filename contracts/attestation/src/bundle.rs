//! The attestation bundle: everything a node submits to prove what it runs (see README.md).

use dcap_qvl::QuoteCollateralV3;
use serde::{Deserialize, Serialize};

use crate::AttestationError;

/// Current bundle format version.
pub const BUNDLE_VERSION: u32 = 1;

/// How a node proves it runs in a TEE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttestationKind {
    /// Intel TDX DCAP quote (+ dstack event log, + NVIDIA GPU evidence).
    Tdx,
    /// Development key signed by a development CA: localnet/testnet only.
    Dev,
}

impl AttestationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tdx => "tdx",
            Self::Dev => "dev",
        }
    }
}

/// A node's attestation, produced by the worker and checked by [`crate::verify_bundle`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationBundle {
    /// Format version ([`BUNDLE_VERSION`]).
    #[serde(default = "default_version")]
    pub version: u32,
    pub kind: AttestationKind,
    /// The enclave's 32-byte public key bound by the quote (x25519 for our worker; the
    /// dstack vector binds its ed25519 TLS/p2p key here).
    #[serde(with = "crate::hexser")]
    pub enclave_key: Vec<u8>,
    /// The NEAR access key of the enclave, `ed25519:<base58>`: it signs the registration.
    pub near_public_key: String,
    /// TDX evidence (kind `tdx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tdx: Option<TdxEvidence>,
    /// Dev evidence (kind `dev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<DevEvidence>,
    /// One entry per GPU.
    #[serde(default)]
    pub gpus: Vec<GpuEvidence>,
    /// One entry per NVSwitch (protected-PCIe nodes), the same shape as a GPU's.
    #[serde(default)]
    pub switches: Vec<GpuEvidence>,
    /// The registry's challenge (32 bytes, 64 hex) the GPU binding nonce is derived from
    /// ([`crate::gpu_binding_nonce`]); required when `gpus` or `switches` is not empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_challenge: Option<String>,
}

fn default_version() -> u32 {
    BUNDLE_VERSION
}

/// TDX quote, its DCAP collateral and the dstack boot evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxEvidence {
    /// Raw TDX quote (v4/v5).
    #[serde(with = "crate::hexser")]
    pub quote: Vec<u8>,
    /// dcap-qvl's collateral shape (PCK CRL, root CA CRL, TCB info, QE identity, chains).
    #[serde(deserialize_with = "crate::collateral_json::deserialize")]
    pub collateral: QuoteCollateralV3,
    /// dstack event log (all IMRs may be given; only imr=3 is replayed).
    #[serde(default)]
    pub event_log: Vec<EventLogEntry>,
    /// The app compose text whose sha256 is the `compose-hash` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_compose: Option<String>,
}

/// One dstack event log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLogEntry {
    pub imr: u32,
    pub event_type: u32,
    /// SHA-384 digest extended into the IMR (48 bytes).
    #[serde(with = "crate::hexser")]
    pub digest: Vec<u8>,
    /// Event name (dstack runtime events), empty for firmware events.
    #[serde(default)]
    pub event: String,
    #[serde(default, with = "crate::hexser")]
    pub event_payload: Vec<u8>,
}

/// A development CA's signature over the node's keys and an expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevEvidence {
    /// Unix seconds after which the dev attestation is refused.
    pub expires_at: u64,
    /// Ed25519 signature (64 bytes) over [`crate::dev_attestation_message`] (with these
    /// events, if any).
    #[serde(with = "crate::hexser")]
    pub signature: Vec<u8>,
    /// dstack runtime events the node measured, as a TDX node's RTMR3 would carry them (e.g.
    /// `ecloud-model-weights`): the CA's signature covers their RTMR3 replay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventLogEntry>,
}

/// One GPU's (or NVSwitch's) SPDM evidence and certificate chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuEvidence {
    /// SPDM GET_MEASUREMENTS request (37 bytes) followed by the signed response.
    #[serde(with = "crate::hexser")]
    pub report: Vec<u8>,
    /// The 32-byte nonce the report claims to answer. Never trusted on its own: verifiers
    /// compare the signed request's nonce with the binding nonce they compute.
    #[serde(with = "crate::hexser")]
    pub nonce: Vec<u8>,
    /// PEM certificates, leaf first; the pinned root may be included or left out.
    pub certificate_chain: String,
}

/// Parses a bundle from JSON, with a typed error for bad input.
pub fn parse_bundle(json: &[u8]) -> Result<AttestationBundle, AttestationError> {
    serde_json::from_slice(json).map_err(|e| AttestationError::Malformed {
        what: "bundle JSON",
        reason: e.to_string(),
    })
}

/// Copies `bytes` into a fixed array or names the field whose length is wrong.
pub(crate) fn fixed<const N: usize>(
    bytes: &[u8],
    what: &'static str,
) -> Result<[u8; N], AttestationError> {
    bytes.try_into().map_err(|_| AttestationError::Malformed {
        what,
        reason: format!("expected {N} bytes, got {}", bytes.len()),
    })
}
