//! The owner's configuration: the model code (a global contract) and the registry.

use enclave_cloud_common::ModelId;
use near_sdk::{AccountId, Gas, GlobalContractId, NearToken, Promise, env, near};

use enclave_cloud_common::OrPanic;

use crate::FactoryAdminApi;
use crate::errors::FactoryError;
use crate::state::ModelFactory;
#[allow(unused_imports)] // named by the code #[near] generates
use crate::state::ModelFactoryExt;

const GAS_FOR_PUBLISH_CALLBACK: Gas = Gas::from_tgas(5);
const WASM_MAGIC: &[u8] = b"\0asm";

impl ModelFactory {
    fn require_owner(&self) -> Result<(), FactoryError> {
        let caller = env::predecessor_account_id();
        if caller == self.owner {
            Ok(())
        } else {
            Err(FactoryError::NotOwner {
                owner: self.owner.clone(),
                caller,
            })
        }
    }

    fn require_owner_one_yocto(&self) -> Result<(), FactoryError> {
        let attached = env::attached_deposit();
        if attached != NearToken::from_yoctonear(1) {
            return Err(FactoryError::OneYoctoRequired(attached));
        }
        self.require_owner()
    }

    fn try_reserve(
        &mut self,
        model_id: ModelId,
        reserved_for: Option<AccountId>,
    ) -> Result<(), FactoryError> {
        self.require_owner()?;
        let attached = env::attached_deposit();
        if attached.is_zero() {
            return Err(FactoryError::OneYoctoRequired(attached));
        }
        if self.models.contains_key(&model_id) {
            return Err(FactoryError::ModelExists(model_id));
        }
        let before = env::storage_usage();
        match reserved_for {
            Some(holder) => {
                self.reservations.insert(model_id, holder);
            }
            None => {
                self.reservations.remove(&model_id);
            }
        }
        self.reservations.flush();
        let after = env::storage_usage();
        let byte_cost = env::storage_byte_cost();
        let change = if after >= before {
            let required = byte_cost.saturating_mul(u128::from(after - before));
            attached
                .checked_sub(required)
                .ok_or(FactoryError::DepositTooSmall { required, attached })?
        } else {
            attached.saturating_add(byte_cost.saturating_mul(u128::from(before - after)))
        };
        if !change.is_zero() {
            Promise::new(env::predecessor_account_id())
                .transfer(change)
                .detach();
        }
        Ok(())
    }

    fn try_publish(&mut self) -> Result<Promise, FactoryError> {
        self.require_owner()?;
        let code = env::input().unwrap_or_default();
        if !code.starts_with(WASM_MAGIC) {
            return Err(FactoryError::BadCode(code.len()));
        }
        let id = GlobalContractId::CodeHash(env::sha256_array(&code));
        Ok(Promise::new(env::current_account_id())
            .deploy_global_contract(code)
            .then(
                Self::ext(env::current_account_id())
                    .with_static_gas(GAS_FOR_PUBLISH_CALLBACK)
                    .with_unused_gas_weight(0)
                    .on_code_published(id),
            ))
    }
}

#[near]
impl FactoryAdminApi for ModelFactory {
    #[payable]
    fn publish_model_code(&mut self) -> Promise {
        self.try_publish().or_panic()
    }

    #[payable]
    fn set_model_code(&mut self, code: GlobalContractId) {
        self.require_owner_one_yocto().or_panic();
        self.model_code = Some(code);
    }

    #[payable]
    fn set_registry(&mut self, registry: AccountId) {
        self.require_owner_one_yocto().or_panic();
        self.registry = registry;
    }

    #[payable]
    fn reserve_model(&mut self, model_id: ModelId, reserved_for: Option<AccountId>) {
        self.try_reserve(model_id, reserved_for).or_panic();
    }

    fn reservation(&self, model_id: ModelId) -> Option<AccountId> {
        self.reservations.get(&model_id).cloned()
    }

    fn model_code(&self) -> Option<GlobalContractId> {
        self.model_code.clone()
    }

    fn registry(&self) -> AccountId {
        self.registry.clone()
    }

    fn owner(&self) -> AccountId {
        self.owner.clone()
    }
}

#[near]
impl ModelFactory {
    /// Callback of `publish_model_code` (this contract only): new models use the code only
    /// once its deployment succeeded.
    #[private]
    pub fn on_code_published(&mut self, code: GlobalContractId) -> bool {
        let ok = near_sdk::is_promise_success();
        if ok {
            self.model_code = Some(code);
        } else {
            env::log_str("publishing the model code failed; the previous code stays in use");
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::*;
    use near_sdk::PromiseResult;
    use near_sdk::mock::MockAction;
    use near_sdk::test_utils::{VMContextBuilder, get_created_receipts};
    use near_sdk::testing_env;

    const CODE: &[u8] = b"\0asm\x01\0\0\0";

    fn publish_ctx(caller: &str, input: &[u8]) {
        let mut b = VMContextBuilder::new();
        b.current_account_id(acc(FACTORY))
            .predecessor_account_id(acc(caller))
            .attached_deposit(NearToken::from_near(1))
            .account_balance(NearToken::from_near(1_000));
        let mut context = b.build();
        context.input = input.into();
        testing_env!(context);
    }

    #[test]
    fn publish_deploys_global_code_and_switches_after_success() {
        let mut f = factory();
        publish_ctx(OWNER, CODE);
        let _ = f.publish_model_code();
        let r = get_created_receipts();
        assert_eq!(r[0].receiver_id, acc(FACTORY));
        assert!(
            matches!(&r[0].actions[0], MockAction::DeployGlobalContract { code, .. } if code == CODE)
        );
        assert!(
            f.model_code().is_none(),
            "not before the deployment succeeded"
        );
        let id = GlobalContractId::CodeHash(env::sha256_array(CODE));
        callback_ctx(PromiseResult::Failed);
        assert!(!f.on_code_published(id.clone()));
        assert!(f.model_code().is_none());
        callback_ctx(PromiseResult::Successful(vec![]));
        assert!(f.on_code_published(id.clone()));
        assert_eq!(f.model_code(), Some(id));
    }

    #[test]
    fn publish_refusals() {
        let mut f = factory();
        publish_ctx(ALICE, CODE);
        assert_panics_with(|| f.publish_model_code(), "only the owner");
        publish_ctx(OWNER, b"{\"json\":1}");
        assert_panics_with(|| f.publish_model_code(), "must be the model-token wasm");
    }

    #[test]
    fn owner_settings_need_owner_and_one_yocto() {
        let mut f = factory();
        ctx(OWNER, NearToken::from_yoctonear(1));
        f.set_registry(acc("reg2.near"));
        assert_eq!(f.registry(), acc("reg2.near"));
        ctx(OWNER, NearToken::from_yoctonear(1));
        f.set_model_code(GlobalContractId::CodeHash([7; 32]));
        assert_eq!(f.model_code(), Some(GlobalContractId::CodeHash([7; 32])));
        ctx(ALICE, NearToken::from_yoctonear(1));
        assert_panics_with(|| f.set_registry(acc("x.near")), "only the owner");
        ctx(OWNER, NearToken::from_yoctonear(0));
        assert_panics_with(
            || f.set_model_code(GlobalContractId::CodeHash([1; 32])),
            "1 yoctoNEAR",
        );
        assert_eq!(f.owner(), acc(OWNER));
    }
}
