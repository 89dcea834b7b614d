//! Governance policy: what a node must prove to join, and the economic and liveness rules.
//! The types are the registry's interface (`enclave_cloud_common::interfaces::registry`);
//! the checks that refuse an unusable or unsafe policy are the contract's.

use enclave_cloud_common::TcbStatus;

pub use enclave_cloud_common::interfaces::registry::{
    GpuPolicy, NANOS_PER_SEC, PlatformMeasurements, Policy, TcbGrace,
};

use crate::errors::{RegistryError, Result};

/// The registry's checks of a policy.
pub trait PolicyCheck {
    /// Rejects a policy that would make the registry unusable or unsafe.
    fn validate(&self) -> Result<()>;
}

impl PolicyCheck for PlatformMeasurements {
    fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("mrtd", &self.mrtd),
            ("rtmr0", &self.rtmr0),
            ("rtmr1", &self.rtmr1),
            ("rtmr2", &self.rtmr2),
        ] {
            let ok = value.len() == 96
                && value
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !ok {
                return Err(RegistryError::InvalidPolicy(format!(
                    "{name} '{value}' must be 96 lowercase hex characters"
                )));
            }
        }
        Ok(())
    }
}

impl PolicyCheck for Policy {
    /// Rejects a policy that would make the registry unusable or unsafe.
    fn validate(&self) -> Result<()> {
        for p in &self.platforms {
            p.validate()?;
        }
        for g in &self.tcb_grace {
            if !matches!(
                g.status,
                TcbStatus::OutOfDate | TcbStatus::SWHardeningNeeded
            ) {
                return Err(RegistryError::InvalidPolicy(format!(
                    "a grace period is only possible for OutOfDate or SWHardeningNeeded, not {:?}",
                    g.status
                )));
            }
        }
        if self.attestation_lifetime_ns.0 == 0 || self.heartbeat_interval_ns.0 == 0 {
            return Err(RegistryError::InvalidPolicy(
                "attestation lifetime and heartbeat interval must be positive".to_owned(),
            ));
        }
        if self.missed_heartbeats == 0 {
            return Err(RegistryError::InvalidPolicy(
                "missed_heartbeats must be at least 1".to_owned(),
            ));
        }
        if self.gpu.min_gpus > self.gpu.max_gpus || self.gpu.max_gpus > 64 {
            return Err(RegistryError::InvalidPolicy(format!(
                "GPU bounds min {} max {} must satisfy min <= max <= 64",
                self.gpu.min_gpus, self.gpu.max_gpus
            )));
        }
        if self.dev_mode && self.dev_ca_key.is_none() {
            return Err(RegistryError::InvalidPolicy(
                "dev mode needs a dev CA key".to_owned(),
            ));
        }
        if self.challenge_lifetime_ns.0 == 0 {
            return Err(RegistryError::InvalidPolicy(
                "challenge_lifetime_ns must be positive".to_owned(),
            ));
        }
        if self.image_digest_event.is_empty() || self.image_digest_event.len() > 64 {
            return Err(RegistryError::InvalidPolicy(
                "image_digest_event must be 1-64 characters".to_owned(),
            ));
        }
        Ok(())
    }
}
