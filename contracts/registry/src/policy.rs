//! Governance policy: what a node must prove to join, and the economic and liveness rules.

use enclave_cloud_common::{Hash32, Measurements, TcbStatus};
use near_sdk::json_types::U64;
use near_sdk::{NearToken, PublicKey, near};

use crate::errors::{RegistryError, Result};

pub const NANOS_PER_SEC: u64 = 1_000_000_000;
const DAY_NS: u64 = 24 * 3600 * NANOS_PER_SEC;

/// One allowed TDX platform: the firmware (MRTD) and boot chain (RTMR0-2) of a dstack OS image.
/// Hex, 96 lowercase characters each (48-byte registers).
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformMeasurements {
    pub mrtd: String,
    pub rtmr0: String,
    pub rtmr1: String,
    pub rtmr2: String,
}

impl PlatformMeasurements {
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

/// A TCB status below `UpToDate` that is tolerated until a deadline (Intel published a fix;
/// operators get time to patch).
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbGrace {
    /// `OutOfDate` or `SWHardeningNeeded`.
    pub status: TcbStatus,
    /// Inclusive deadline, unix seconds.
    pub until: U64,
}

/// What a node's GPUs must be.
#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuPolicy {
    /// A node is not active (takes no jobs) until this many GPUs are attested.
    pub min_gpus: u32,
    /// Upper bound on GPUs per node (keeps a node's record bounded).
    pub max_gpus: u32,
    /// GPU models accepted as the evidence names them (e.g. "GH100"); empty: any.
    pub allowed_models: Vec<String>,
    /// Accept GPUs of a TDX bundle that the attested VM verified itself and measured into
    /// RTMR3 (`nvidia-gpu-evidence` event): no chain or signature work on chain. Trusts the
    /// allowlisted worker image to verify GPUs correctly.
    pub allow_measured_in_rtmr3: bool,
}

#[near(serializers = [borsh, json])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Allowed TDX platforms; a TDX node must match one. Empty: no TDX node can join.
    pub platforms: Vec<PlatformMeasurements>,
    /// Allowed dstack app compose hashes. Empty: no TDX node can join.
    pub compose_hashes: Vec<Hash32>,
    /// Allowed container image digests, read from the RTMR3 event named `image_digest_event`.
    /// Empty: not checked (the compose hash already pins the images by digest).
    pub image_digests: Vec<Hash32>,
    pub image_digest_event: String,
    /// Tolerated TCB statuses below `UpToDate`, each until a deadline.
    pub tcb_grace: Vec<TcbGrace>,
    /// How long a verified attestation stays valid.
    pub attestation_lifetime_ns: U64,
    /// Nodes heartbeat this often...
    pub heartbeat_interval_ns: U64,
    /// ...and become inactive after missing this many intervals.
    pub missed_heartbeats: u32,
    /// Stake an operator needs per live node.
    pub min_stake: NearToken,
    /// Delay between `request_unstake` and `withdraw`. Must exceed the longest job deadline so
    /// an operator cannot leave before a missed deadline is slashed.
    pub unbonding_delay_ns: U64,
    pub gpu: GpuPolicy,
    /// Accept the `dev` attestation kind (never on a mainnet-initialised registry).
    pub dev_mode: bool,
    /// Development CA whose ed25519 signature makes a `dev` attestation.
    pub dev_ca_key: Option<PublicKey>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            platforms: Vec::new(),
            compose_hashes: Vec::new(),
            image_digests: Vec::new(),
            image_digest_event: "image-digest".to_owned(),
            tcb_grace: Vec::new(),
            attestation_lifetime_ns: U64(7 * DAY_NS),
            heartbeat_interval_ns: U64(5 * 60 * NANOS_PER_SEC),
            missed_heartbeats: 3,
            min_stake: NearToken::from_near(100),
            unbonding_delay_ns: U64(7 * DAY_NS),
            gpu: GpuPolicy {
                min_gpus: 0,
                max_gpus: 8,
                allowed_models: Vec::new(),
                allow_measured_in_rtmr3: false,
            },
            dev_mode: false,
            dev_ca_key: None,
        }
    }
}

impl Policy {
    /// Rejects a policy that would make the registry unusable or unsafe.
    pub fn validate(&self) -> Result<()> {
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
        if self.image_digest_event.is_empty() || self.image_digest_event.len() > 64 {
            return Err(RegistryError::InvalidPolicy(
                "image_digest_event must be 1-64 characters".to_owned(),
            ));
        }
        Ok(())
    }

    /// Whether the firmware and boot chain of `m` are an allowed platform.
    pub fn allows_platform(&self, m: &Measurements) -> bool {
        self.platforms.iter().any(|p| {
            p.mrtd == m.mrtd && p.rtmr0 == m.rtmr0 && p.rtmr1 == m.rtmr1 && p.rtmr2 == m.rtmr2
        })
    }

    /// A node without a heartbeat for this long is inactive.
    pub fn heartbeat_timeout_ns(&self) -> u64 {
        self.heartbeat_interval_ns
            .0
            .saturating_mul(u64::from(self.missed_heartbeats))
    }
}
