//! The one conversion from the registry's governance [`Policy`] to the attestation library's
//! [`VerifyPolicy`]. The registry judges bundles with it and `ecloud proxy` judges the node it
//! is about to pay with it, so a client can never accept a node the registry would refuse (or
//! refuse one it accepts) because two copies of this mapping drifted apart.

use attestation::{
    DEV_GPU_ROOT_SHA256, GraceStatus, TcbGrace as LibGrace, TcbPolicy, VerifyPolicy,
};

use crate::TcbStatus;
use crate::interfaces::registry::Policy;

/// The policy grants grace to a TCB status the library cannot tolerate (only `OutOfDate` and
/// `SWHardeningNeeded` can be accepted for a while; `Revoked` never).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the registry's policy grants grace to {0:?}; only OutOfDate and SWHardeningNeeded can have one"
)]
pub struct UngraceableStatus(pub TcbStatus);

/// Whether `dev` attestations (dev CA, dev GPUs) count: the governance switch, on a registry
/// deployed with dev mode available, and never on a mainnet-initialised one.
pub fn dev_attestation_enabled(policy: &Policy, dev_mode_available: bool, mainnet: bool) -> bool {
    policy.dev_mode && dev_mode_available && !mainnet
}

/// The library policy: TCB grace, and the dev CA and dev GPU root only where `dev_enabled`
/// (see [`dev_attestation_enabled`]). Compose hashes are always required.
pub fn verify_policy(
    policy: &Policy,
    dev_enabled: bool,
) -> Result<VerifyPolicy, UngraceableStatus> {
    let grace = policy
        .tcb_grace
        .iter()
        .map(|g| {
            let status = match g.status {
                TcbStatus::OutOfDate => GraceStatus::OutOfDate,
                TcbStatus::SWHardeningNeeded => GraceStatus::SWHardeningNeeded,
                other => return Err(UngraceableStatus(other)),
            };
            Ok(LibGrace {
                status,
                until: g.until.0,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // A NEAR ed25519 key is its curve byte then the 32-byte key.
    let dev_ca_public_key = match (&policy.dev_ca_key, dev_enabled) {
        (Some(key), true) => key
            .as_bytes()
            .get(1..)
            .and_then(|b| <[u8; 32]>::try_from(b).ok()),
        _ => None,
    };
    Ok(VerifyPolicy {
        tcb: TcbPolicy { grace },
        dev_ca_public_key,
        require_compose_hash: true,
        dev_gpu_root: dev_enabled.then_some(DEV_GPU_ROOT_SHA256),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interfaces::registry::TcbGrace;
    use near_sdk::json_types::U64;

    fn dev_key() -> near_sdk::PublicKey {
        "ed25519:6E8sCci9badyRkXb3JoRpBj5p8C6Tw41ELDZoiihKEtp"
            .parse()
            .expect("key")
    }

    fn policy(status: TcbStatus) -> Policy {
        Policy {
            dev_mode: true,
            dev_ca_key: Some(dev_key()),
            tcb_grace: vec![TcbGrace {
                status,
                until: U64(99),
            }],
            ..Policy::default()
        }
    }

    #[test]
    fn dev_parts_only_where_dev_is_enabled() {
        let p = policy(TcbStatus::OutOfDate);
        let dev = verify_policy(&p, true).expect("policy");
        assert_eq!(
            dev.dev_ca_public_key.map(|k| k.to_vec()),
            Some(dev_key().as_bytes()[1..].to_vec())
        );
        assert_eq!(dev.dev_gpu_root, Some(DEV_GPU_ROOT_SHA256));
        assert_eq!(dev.tcb.grace.len(), 1);
        assert_eq!(dev.tcb.grace[0].until, 99);
        assert!(dev.require_compose_hash);
        let prod = verify_policy(&p, false).expect("policy");
        assert_eq!(prod.dev_ca_public_key, None);
        assert_eq!(prod.dev_gpu_root, None);
    }

    #[test]
    fn mainnet_or_unavailable_never_enables_dev() {
        let p = policy(TcbStatus::OutOfDate);
        assert!(dev_attestation_enabled(&p, true, false));
        assert!(!dev_attestation_enabled(&p, true, true));
        assert!(!dev_attestation_enabled(&p, false, false));
        let off = Policy {
            dev_mode: false,
            ..p
        };
        assert!(!dev_attestation_enabled(&off, true, false));
    }

    #[test]
    fn revoked_or_up_to_date_cannot_have_grace() {
        for status in [TcbStatus::Revoked, TcbStatus::UpToDate] {
            assert_eq!(
                verify_policy(&policy(status), true),
                Err(UngraceableStatus(status))
            );
        }
    }
}
