//! The owner's configuration: the model code (a global contract, pinned by hash) and the
//! registry, both through the timelock of `enclave_cloud_common::governance`.

use enclave_cloud_common::governance::{self, Change, CodeSource, Governed};
use enclave_cloud_common::interfaces::model_factory::FactorySetting;
use enclave_cloud_common::{Hash32, ModelId};
use near_sdk::{AccountId, Gas, GlobalContractId, NearToken, Promise, env, near};

use enclave_cloud_common::OrPanic;

use crate::FactoryAdminApi;
use crate::errors::FactoryError;
use crate::state::ModelFactory;
#[allow(unused_imports)] // named by the code #[near] generates
use crate::state::ModelFactoryExt;
use crate::storage_keys::StorageKey;

const GAS_FOR_PUBLISH_CALLBACK: Gas = Gas::from_tgas(5);
const WASM_MAGIC: &[u8] = b"\0asm";

impl Governed for ModelFactory {
    type Setting = FactorySetting;
    const CODE: CodeSource = CodeSource::Deployed;

    fn timelock_key() -> Vec<u8> {
        near_sdk::borsh::to_vec(&StorageKey::Governance).unwrap_or_default()
    }

    fn governor(&self) -> &AccountId {
        &self.owner
    }

    fn check_setting(&self, _setting: &FactorySetting) -> Result<(), String> {
        Ok(())
    }

    fn apply_setting(&mut self, setting: FactorySetting) {
        match setting {
            FactorySetting::SetModelCode { code_hash } => {
                self.model_code = Some(GlobalContractId::CodeHash(code_hash.0));
            }
            FactorySetting::SetRegistry { registry } => self.registry = registry,
            FactorySetting::SetOwner { owner } => self.owner = owner,
        }
    }
}

enclave_cloud_common::governed_methods!(ModelFactory, FactorySetting);

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

    /// The owner, 1 yocto: `setting` as a governance proposal (applied at once only while the
    /// delay is 0).
    fn try_propose(&mut self, setting: FactorySetting) -> Result<(), FactoryError> {
        self.require_owner_one_yocto()?;
        let owner = self.owner.clone();
        governance::queue(self, Change::Setting(setting), owner)?;
        Ok(())
    }

    /// Model code is pinned by hash: code named by an account would change for every new
    /// model whenever that account redeployed.
    fn try_set_model_code(&mut self, code: GlobalContractId) -> Result<(), FactoryError> {
        match code {
            GlobalContractId::CodeHash(hash) => self.try_propose(FactorySetting::SetModelCode {
                code_hash: Hash32(hash),
            }),
            GlobalContractId::AccountId(account) => Err(FactoryError::CodeByAccount(account)),
        }
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
        self.try_set_model_code(code).or_panic();
    }

    #[payable]
    fn set_registry(&mut self, registry: AccountId) {
        self.try_propose(FactorySetting::SetRegistry { registry })
            .or_panic();
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
    /// Callback of `publish_model_code` (this contract only): once the deployment succeeded,
    /// the new code is proposed for new models (applied at once while the governance delay is
    /// 0, else after it: `apply_change`).
    #[private]
    pub fn on_code_published(&mut self, code: GlobalContractId) -> bool {
        let ok = near_sdk::is_promise_success();
        if ok {
            let GlobalContractId::CodeHash(hash) = code else {
                env::panic_str("published code is always identified by its hash")
            };
            let owner = self.owner.clone();
            governance::queue(
                self,
                Change::Setting(FactorySetting::SetModelCode {
                    code_hash: Hash32(hash),
                }),
                owner,
            )
            .or_panic();
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

    /// Finding 9: code named by an account would change under every new model whenever that
    /// account redeployed; the factory's docs promise pinned code.
    #[test]
    fn model_code_by_account_is_refused() {
        let mut f = factory_with_code();
        ctx(OWNER, NearToken::from_yoctonear(1));
        assert_panics_with(
            || f.set_model_code(GlobalContractId::AccountId(acc("code.near"))),
            "pinned by its hash",
        );
        assert_eq!(f.model_code(), Some(GlobalContractId::CodeHash([42; 32])));
    }

    /// Finding 9: once governance set a delay, new model code (and any other setting) is
    /// announced and only applies after it; the owner may cancel meanwhile.
    #[test]
    fn model_code_changes_only_after_the_governance_delay() {
        use enclave_cloud_common::governance::Change;
        use near_sdk::json_types::U64;
        const DELAY: u64 = 3_600_000_000_000;
        let mut f = factory_with_code();
        ctx_at(OWNER, NearToken::from_yoctonear(1), 1_000);
        let set_delay = f.propose_change(Change::SetDelay {
            delay_ns: U64(DELAY),
        });
        assert!(f.governance().pending.is_empty(), "delay 0 applies at once");
        assert_eq!(f.governance().delay_ns.0, DELAY);
        assert_eq!(set_delay.applies_at_ns.0, 1_000);

        ctx_at(OWNER, NearToken::from_yoctonear(1), 2_000);
        f.set_model_code(GlobalContractId::CodeHash([7; 32]));
        let pending = f.governance().pending;
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].applies_at_ns.0, 2_000 + DELAY);
        assert_eq!(f.model_code(), Some(GlobalContractId::CodeHash([42; 32])));

        let id = pending[0].id;
        ctx_at(ALICE, NearToken::from_yoctonear(0), 2_000 + DELAY - 1);
        assert_panics_with(|| drop(f.apply_change(id)), "1 s to go");
        ctx_at(ALICE, NearToken::from_yoctonear(1), 2_000 + DELAY);
        assert_panics_with(|| f.cancel_change(id), "only the owner");
        ctx_at(ALICE, NearToken::from_yoctonear(0), 2_000 + DELAY);
        drop(f.apply_change(id));
        assert_eq!(f.model_code(), Some(GlobalContractId::CodeHash([7; 32])));
        assert!(f.governance().pending.is_empty());

        // A cancelled proposal never applies.
        ctx_at(OWNER, NearToken::from_yoctonear(1), 3_000 + DELAY);
        f.set_registry(acc("evil-registry.near"));
        let id = f.governance().pending[0].id;
        ctx_at(OWNER, NearToken::from_yoctonear(1), 3_000 + DELAY);
        f.cancel_change(id);
        ctx_at(ALICE, NearToken::from_yoctonear(0), 3_000 + 2 * DELAY);
        assert_panics_with(|| drop(f.apply_change(id)), "no pending change");
        assert_eq!(f.registry(), acc(REGISTRY));
    }

    #[test]
    fn governance_delay_has_a_ceiling_and_code_upgrades_need_the_code() {
        use enclave_cloud_common::Hash32;
        use enclave_cloud_common::governance::{Change, MAX_DELAY_NS};
        use near_sdk::json_types::U64;
        let mut f = factory();
        ctx(OWNER, NearToken::from_yoctonear(1));
        assert_panics_with(
            || {
                drop(f.propose_change(Change::SetDelay {
                    delay_ns: U64(MAX_DELAY_NS + 1),
                }))
            },
            "longer than the most allowed",
        );
        ctx(OWNER, NearToken::from_yoctonear(1));
        let p = f.propose_change(Change::UpgradeCode {
            code_hash: Hash32([9; 32]),
        });
        // Due at once (delay 0), but only apply_upgrade with the code can carry it out.
        ctx(ALICE, NearToken::from_yoctonear(0));
        assert_panics_with(|| drop(f.apply_change(p.id)), "call apply_upgrade");
        publish_ctx(ALICE, CODE);
        assert_panics_with(|| drop(f.apply_upgrade()), "no upgrade to code");
    }
}
