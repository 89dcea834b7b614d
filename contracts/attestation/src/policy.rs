//! What the verifier accepts beyond cryptographic validity.

use serde::{Deserialize, Serialize};

use crate::AttestationError;
use crate::nvidia::GpuRoots;

/// Verification policy (the registry derives it from its governance settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyPolicy {
    #[serde(default)]
    pub tcb: TcbPolicy,
    /// Development CA ed25519 public key (hex). `None`: `dev` bundles are refused.
    #[serde(default, with = "opt_hex32")]
    pub dev_ca_public_key: Option<[u8; 32]>,
    /// Require a `compose-hash` event in RTMR3 (dstack). Default true.
    #[serde(default = "yes")]
    pub require_compose_hash: bool,
    /// SHA-256 (hex) of a development GPU root certificate trusted besides NVIDIA's pinned
    /// Device Identity CA (`attestation::dev_gpu`). Set only where dev attestation is enabled;
    /// `None`: only NVIDIA's root.
    #[serde(default, with = "opt_hex32")]
    pub dev_gpu_root: Option<[u8; 32]>,
}

impl VerifyPolicy {
    /// The GPU certificate roots this policy trusts.
    pub fn gpu_roots(&self) -> GpuRoots {
        GpuRoots {
            dev_root_sha256: self.dev_gpu_root,
        }
    }
}

fn yes() -> bool {
    true
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        Self {
            tcb: TcbPolicy::default(),
            dev_ca_public_key: None,
            require_compose_hash: true,
            dev_gpu_root: None,
        }
    }
}

/// TCB statuses accepted: `UpToDate` always; `OutOfDate` / `SWHardeningNeeded` only while a
/// grace entry for that status lasts. Everything else is refused.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TcbPolicy {
    #[serde(default)]
    pub grace: Vec<TcbGrace>,
}

/// A time-limited acceptance of a non-`UpToDate` status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcbGrace {
    pub status: GraceStatus,
    /// Last accepted unix second (inclusive).
    pub until: u64,
}

/// Statuses that may be granted a grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GraceStatus {
    OutOfDate,
    SWHardeningNeeded,
}

impl GraceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfDate => "OutOfDate",
            Self::SWHardeningNeeded => "SWHardeningNeeded",
        }
    }
}

impl TcbPolicy {
    /// Accepts `status` (dcap-qvl's name, e.g. "UpToDate") at `now`, or says why not.
    pub fn check(&self, status: &str, now: u64) -> Result<(), AttestationError> {
        if status == "UpToDate" {
            return Ok(());
        }
        let refuse = |reason: String| AttestationError::TcbStatusRefused {
            status: status.to_owned(),
            reason,
        };
        let mut grants = self.grace.iter().filter(|g| g.status.as_str() == status);
        let Some(first) = grants.next() else {
            return Err(refuse(
                "only UpToDate is accepted without a grace period".into(),
            ));
        };
        let until = grants.fold(first.until, |acc, g| acc.max(g.until));
        if now <= until {
            Ok(())
        } else {
            Err(refuse(format!("grace period ended at {until} (now {now})")))
        }
    }
}

mod opt_hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(k) => s.serialize_some(&hex::encode(k)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out)
            .map_err(|e| serde::de::Error::custom(format_args!("32 bytes of hex: {e}")))?;
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_accepts_only_up_to_date() {
        let p = TcbPolicy::default();
        assert!(p.check("UpToDate", 0).is_ok());
        for s in [
            "OutOfDate",
            "SWHardeningNeeded",
            "ConfigurationNeeded",
            "Revoked",
        ] {
            let err = p.check(s, 0).unwrap_err().to_string();
            assert!(err.contains(s) && err.contains("only UpToDate"), "{err}");
        }
    }

    #[test]
    fn grace_has_a_deadline_and_covers_only_its_status() {
        let p = TcbPolicy {
            grace: vec![TcbGrace {
                status: GraceStatus::OutOfDate,
                until: 100,
            }],
        };
        assert!(p.check("OutOfDate", 100).is_ok());
        let err = p.check("OutOfDate", 101).unwrap_err().to_string();
        assert!(err.contains("grace period ended at 100"), "{err}");
        assert!(p.check("SWHardeningNeeded", 50).is_err());
        assert!(p.check("OutOfDateConfigurationNeeded", 50).is_err());
    }

    #[test]
    fn policy_json_roundtrip() {
        let p = VerifyPolicy {
            dev_ca_public_key: Some([3; 32]),
            dev_gpu_root: Some([4; 32]),
            ..VerifyPolicy::default()
        };
        let json = serde_json::to_string(&p).expect("serializes");
        assert_eq!(
            serde_json::from_str::<VerifyPolicy>(&json).expect("parses"),
            p
        );
        let d: VerifyPolicy = serde_json::from_str("{}").expect("all defaults");
        assert_eq!(d, VerifyPolicy::default());
    }
}
