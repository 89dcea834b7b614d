//! NVIDIA GPU evidence through NVML (feature `nvml`): for each GPU in confidential-computing
//! mode, `nvmlDeviceGetConfComputeGpuAttestationReport` over the verifier's nonce (the SPDM
//! GET_MEASUREMENTS request || signed response, as nvtrust's local verifier consumes it) and
//! `nvmlDeviceGetConfComputeGpuCertificate` (the attestation certificate chain, PEM).
//! NVML is loaded at run time, so this compiles and links on machines without a GPU.

use attestation::GpuEvidence;
use nvml_wrapper::Nvml;

use super::{AttestError, DeviceEvidence, GpuEvidenceSource};

pub struct NvmlGpus {
    nvml: Nvml,
}

impl NvmlGpus {
    /// Loads `libnvidia-ml` and initializes NVML.
    pub fn init() -> Result<Self, AttestError> {
        Nvml::init()
            .map(|nvml| Self { nvml })
            .map_err(|e| AttestError::Gpu(format!("NVML init: {e}")))
    }
}

fn prefix(bytes: &[u8], size: u32, what: &str) -> Result<Vec<u8>, AttestError> {
    usize::try_from(size)
        .ok()
        .and_then(|n| bytes.get(..n))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| AttestError::Gpu(format!("{what}: size {size} exceeds the buffer")))
}

impl NvmlGpus {
    fn gpu_count(&self) -> Result<u32, AttestError> {
        self.nvml
            .device_count()
            .map_err(|e| AttestError::Gpu(format!("device count: {e}")))
    }
}

/// Every GPU NVML sees (NVSwitch evidence comes through NVIDIA's NSCQ library, which this
/// source does not read: a protected-PCIe node needs another switch source).
impl GpuEvidenceSource for NvmlGpus {
    fn counts(&self) -> Result<(u32, u32), AttestError> {
        Ok((self.gpu_count()?, 0))
    }

    fn evidence(&self, nonce: [u8; 32]) -> Result<DeviceEvidence, AttestError> {
        let gpu = |i: u32, what: &str, e: nvml_wrapper::error::NvmlError| {
            AttestError::Gpu(format!("GPU {i}: {what}: {e}"))
        };
        let count = self.gpu_count()?;
        let mut out = Vec::new();
        for i in 0..count {
            let device = self
                .nvml
                .device_by_index(i)
                .map_err(|e| gpu(i, "device", e))?;
            let report = device
                .confidential_compute_gpu_attestation_report(nonce)
                .map_err(|e| gpu(i, "attestation report", e))?;
            let certs = device
                .confidential_compute_gpu_certificate()
                .map_err(|e| gpu(i, "certificate", e))?;
            let chain = prefix(
                &certs.attestation_cert_chain,
                certs.attestation_cert_chain_size,
                "certificate chain",
            )?;
            out.push(GpuEvidence {
                report: prefix(
                    &report.attestation_report,
                    report.attestation_report_size,
                    "attestation report",
                )?,
                nonce: nonce.to_vec(),
                certificate_chain: String::from_utf8(chain)
                    .map_err(|_| AttestError::Gpu(format!("GPU {i}: chain is not PEM text")))?,
            });
        }
        Ok(DeviceEvidence {
            gpus: out,
            switches: Vec::new(),
        })
    }
}
