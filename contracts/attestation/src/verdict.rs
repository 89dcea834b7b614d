//! What a successful verification reports (JSON shapes documented in README.md).

use serde::{Deserialize, Serialize};

use crate::AttestationKind;
use crate::dstack::NamedEvent;
use crate::nvidia::{GpuVerdict, SwitchVerdict};

/// TDX measurements, hex; same JSON shape as `enclave_cloud_common::Measurements`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurements {
    pub mrtd: String,
    pub rtmr0: String,
    pub rtmr1: String,
    pub rtmr2: String,
    pub rtmr3: String,
    /// sha256(app compose) from the `compose-hash` event, hex.
    pub compose_hash: Option<String>,
}

/// The keys the attestation binds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundKeys {
    /// 32-byte enclave key, hex.
    pub enclave_key: String,
    /// `ed25519:<base58>`.
    pub near_public_key: String,
}

/// A valid attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub kind: AttestationKind,
    /// dcap-qvl's TCB status name ("UpToDate", ...); `None` for dev.
    pub tcb_status: Option<String>,
    pub advisory_ids: Vec<String>,
    /// `None` for dev.
    pub measurements: Option<Measurements>,
    /// The quote's report_data, hex; `None` for dev.
    pub report_data: Option<String>,
    /// Named dstack runtime events (authenticated by RTMR3).
    pub events: Vec<NamedEvent>,
    /// The model weights the node measured (`ecloud-model-weights` events), hex, in order: the
    /// manifests' `weights_hash` of the models it serves from encrypted weights.
    #[serde(default)]
    pub model_weights: Vec<String>,
    pub bound_keys: BoundKeys,
    /// Unix seconds: the dev attestation's signed expiry; `None` for tdx (registry policy).
    pub expires_at: Option<u64>,
    pub gpus: Vec<GpuVerdict>,
    /// The NVSwitches of a protected-PCIe node (empty otherwise).
    #[serde(default)]
    pub switches: Vec<SwitchVerdict>,
}
