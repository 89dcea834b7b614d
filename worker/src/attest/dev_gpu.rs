//! The dev GPU provider (`--gpu-provider dev`): the attestation library's dev fleet
//! (`attestation::dev_gpu`), GPUs and NVSwitches with P-384 chains under the fixed dev root and
//! SPDM reports signed like real ones, so the registry runs the same verification (and gas) as
//! for NVIDIA devices. Registries trust the dev root only where dev attestation is enabled;
//! the worker allows this provider only with `--provider dev`.

use attestation::dev_gpu::DevGpuFleet;

use super::{AttestError, DeviceEvidence, GpuEvidenceSource};

pub struct DevGpus {
    fleet: DevGpuFleet,
    gpus: u32,
    switches: u32,
}

impl DevGpus {
    /// `gpus` GPUs and `switches` NVSwitches derived from `seed`: the same seed gives the
    /// same devices (two nodes built from one seed present the same GPUs).
    pub fn new(seed: [u8; 32], gpus: u32, switches: u32) -> Self {
        Self {
            fleet: DevGpuFleet::new(seed, gpus as usize, switches as usize),
            gpus,
            switches,
        }
    }
}

impl GpuEvidenceSource for DevGpus {
    fn counts(&self) -> Result<(u32, u32), AttestError> {
        Ok((self.gpus, self.switches))
    }

    fn evidence(&self, nonce: [u8; 32]) -> Result<DeviceEvidence, AttestError> {
        let ev = self.fleet.evidence(&nonce);
        Ok(DeviceEvidence {
            gpus: ev.gpus,
            switches: ev.switches,
        })
    }
}
