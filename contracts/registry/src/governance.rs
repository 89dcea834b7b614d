//! Governance (the owner; later a DAO account): policy, the marketplace allowed to slash, and
//! ownership. Every call needs one yocto, i.e. a full access key.

use enclave_cloud_common::events::{Nep297, RegistryEvent};
use near_sdk::AccountId;
use near_sdk::serde_json::{self, Value};

use crate::access::require_owner;
use crate::errors::{RegistryError, Result};
use crate::policy::Policy;
use crate::state::StateV1;

/// Whether `policy` may be in force on this registry: dev attestations only where the
/// registry was initialised with them, never on mainnet.
pub fn check_dev_rules(mainnet: bool, dev_mode_available: bool, policy: &Policy) -> Result<()> {
    let wants_dev = policy.dev_mode || policy.dev_ca_key.is_some();
    if wants_dev && mainnet {
        return Err(RegistryError::DevModeOnMainnet);
    }
    if wants_dev && !dev_mode_available {
        return Err(RegistryError::DevModeNotAvailable);
    }
    Ok(())
}

pub fn set_policy(state: &mut StateV1, policy: Policy) -> Result<()> {
    require_owner(state)?;
    policy.validate()?;
    check_dev_rules(state.mainnet, state.dev_mode_available, &policy)?;
    let old = std::mem::replace(&mut state.policy, policy);
    emit_changes(&old, &state.policy);
    Ok(())
}

/// One `PolicyUpdated` per top-level field that changed, with its new value as JSON.
fn emit_changes(old: &Policy, new: &Policy) {
    let (Ok(Value::Object(old)), Ok(Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return;
    };
    for (field, value) in new {
        if old.get(&field) != Some(&value) {
            RegistryEvent::PolicyUpdated {
                field,
                value: value.to_string(),
            }
            .emit();
        }
    }
}

pub fn set_marketplace(state: &mut StateV1, marketplace: AccountId) -> Result<()> {
    require_owner(state)?;
    RegistryEvent::PolicyUpdated {
        field: "marketplace".to_owned(),
        value: marketplace.to_string(),
    }
    .emit();
    state.marketplace = Some(marketplace);
    Ok(())
}

pub fn set_owner(state: &mut StateV1, owner: AccountId) -> Result<()> {
    require_owner(state)?;
    RegistryEvent::PolicyUpdated {
        field: "owner".to_owned(),
        value: owner.to_string(),
    }
    .emit();
    state.owner = owner;
    Ok(())
}
