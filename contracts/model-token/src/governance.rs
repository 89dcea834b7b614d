//! The model's own governance (its owner: the creator or a DAO it handed the model to),
//! through the timelock of `enclave_cloud_common::governance`: a new owner, and new code.
//!
//! A model token runs a global contract used by hash, so it never changes code because
//! someone else redeployed: it moves to newer code only when its owner proposes
//! `upgrade_code` with that code's hash, holders and backers have had the delay (3 days from
//! creation, [`DEFAULT_GOVERNANCE_DELAY_NS`]) to see it, and `apply_change` switches the
//! account to that global code and calls `migrate` in one batch.

use enclave_cloud_common::governance::{CodeSource, Governed};
use enclave_cloud_common::interfaces::model_token::{
    DEFAULT_GOVERNANCE_DELAY_NS, ModelTokenSetting,
};
use near_sdk::AccountId;

use crate::ModelToken;
#[allow(unused_imports)] // named by the code #[near] generates
use crate::ModelTokenExt;
use crate::storage_keys::StorageKey;

impl Governed for ModelToken {
    type Setting = ModelTokenSetting;
    const CODE: CodeSource = CodeSource::Global;
    const DEFAULT_DELAY_NS: u64 = DEFAULT_GOVERNANCE_DELAY_NS;

    fn timelock_key() -> Vec<u8> {
        near_sdk::borsh::to_vec(&StorageKey::Governance).unwrap_or_default()
    }

    fn governor(&self) -> &AccountId {
        &self.owner
    }

    fn check_setting(&self, _setting: &ModelTokenSetting) -> Result<(), String> {
        Ok(())
    }

    fn apply_setting(&mut self, setting: ModelTokenSetting) {
        match setting {
            ModelTokenSetting::SetOwner { owner } => self.owner = owner,
        }
    }
}

enclave_cloud_common::governed_methods!(ModelToken, ModelTokenSetting);
