//! NVIDIA GPU evidence (Hopper and later, confidential-computing mode): the SPDM
//! GET_MEASUREMENTS request/response signed by the GPU's attestation key (ECDSA P-384), and the
//! device certificate chain up to NVIDIA's Device Identity CA.

mod chain;
mod spdm;

pub use chain::{CertCache, NVIDIA_DEVICE_ROOT_PEM, NoCache, VerifiedChain, verify_chain};
pub use spdm::{SpdmReport, parse_spdm_report};

use p384::ecdsa::signature::Verifier;
use serde::{Deserialize, Serialize};

use crate::GpuError;
use crate::bundle::GpuEvidence;
use crate::hexser::to_hex;

/// What a verified GPU report says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuVerdict {
    /// Chip from the leaf certificate's subject, e.g. "GH100" (H100/H200).
    pub model: String,
    /// SHA-256 of the leaf certificate (DER): a stable identity of the device, hex.
    pub device_id: String,
    /// The nonce the report answers, hex.
    pub nonce: String,
    pub driver_version: Option<String>,
    pub vbios_version: Option<String>,
    /// Project / SKU / chip SKU strings from the opaque data, when present.
    pub project: Option<String>,
    pub project_sku: Option<String>,
    pub chip_sku: Option<String>,
    /// Measurement values in block order (block index = position + 1), hex.
    pub measurements: Vec<String>,
    /// SHA-256 (hex) of the CA certificates verified by this call (store them as the cache).
    pub verified_intermediates: Vec<String>,
}

/// Verifies one GPU's evidence at `now` (unix seconds): nonce, chain to the pinned root (stopping
/// at a cached intermediate), report signature by the leaf key.
pub fn verify_gpu_evidence<K: CertCache + ?Sized>(
    ev: &GpuEvidence,
    now: u64,
    cache: &K,
) -> Result<GpuVerdict, GpuError> {
    let report = parse_spdm_report(&ev.report)?;
    if ev.nonce.as_slice() != report.nonce.as_slice() {
        return Err(GpuError::Nonce {
            expected: to_hex(&ev.nonce),
            found: to_hex(&report.nonce),
        });
    }
    let chain = verify_chain(&ev.certificate_chain, now, cache)?;
    let signature = p384::ecdsa::Signature::from_slice(report.signature)
        .map_err(|_| GpuError::ReportSignature)?;
    chain
        .leaf_key
        .verify(report.signed, &signature)
        .map_err(|_| GpuError::ReportSignature)?;
    Ok(GpuVerdict {
        model: chain.model,
        device_id: to_hex(&chain.leaf_hash),
        nonce: to_hex(&report.nonce),
        driver_version: report.driver_version(),
        vbios_version: report.vbios_version(),
        project: report.opaque_string(spdm::OPAQUE_PROJECT),
        project_sku: report.opaque_string(spdm::OPAQUE_PROJECT_SKU),
        chip_sku: report.opaque_string(spdm::OPAQUE_CHIP_SKU),
        measurements: report.measurements.iter().map(|m| to_hex(m)).collect(),
        verified_intermediates: chain
            .verified_intermediates
            .iter()
            .map(|h| to_hex(h))
            .collect(),
    })
}
