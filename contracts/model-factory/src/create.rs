//! Creating a model: one batch on the new sub-account (create, fund, use the global code,
//! initialise) and a callback that lists the model or refunds its creator.

use enclave_cloud_common::events::Nep297;
use enclave_cloud_common::events::model::ModelEvent;
use enclave_cloud_common::{ModelId, OrPanic};
use near_sdk::json_types::{U64, U128};
use near_sdk::serde_json::{self, Value};
use near_sdk::{AccountId, Gas, GlobalContractId, NearToken, Promise, env, near};

use crate::FactoryApi;
use crate::errors::FactoryError;
#[allow(unused_imports)] // named by the code #[near] generates
use crate::state::ModelFactoryExt;
use crate::state::{ModelFactory, ModelRecord, ModelStatus};

/// Gas to attach to `create_model`.
pub const CREATE_GAS: Gas = Gas::from_tgas(50);
/// Least gas `create_model` accepts: its own work plus what it passes on.
const MIN_CREATE_GAS: Gas = Gas::from_tgas(45);
const GAS_FOR_MODEL_INIT: Gas = Gas::from_tgas(20);
/// The callback, and on failure the refund step it schedules.
const GAS_FOR_CREATE_CALLBACK: Gas = Gas::from_tgas(15);
/// `refund_failed_creation`: the transfer and its callback.
const GAS_FOR_REFUND_STEP: Gas = Gas::from_tgas(8);
const GAS_FOR_REFUND_CALLBACK: Gas = Gas::from_tgas(4);
/// Storage of a new model besides its init arguments: the account record, the owner's holder
/// record, collection entries. The gas bench measures a new model's state at ~130 bytes plus
/// its arguments (`BENCH model_token.init_storage`); this leaves room for the account record.
const MODEL_BASE_BYTES: u128 = 1_200;
/// Upper bound of a listing entry (the exact cost is measured and charged at creation).
const RECORD_BYTES: u128 = 400;
const MAX_PAGE: u32 = 100;

pub use enclave_cloud_common::interfaces::model_factory::ModelView;

/// The listing of a stored record.
fn view_of(model_id: &ModelId, r: &ModelRecord) -> ModelView {
    ModelView {
        model_id: model_id.clone(),
        token: r.token.clone(),
        owner: r.owner.clone(),
        creator: r.creator.clone(),
        created_at_ns: U64(r.created_at_ns),
        status: r.status,
        code: r.code.clone(),
    }
}

fn model_deposit(args_len: usize) -> NearToken {
    env::storage_byte_cost().saturating_mul(MODEL_BASE_BYTES + args_len as u128)
}

/// The model's `new` arguments: the caller's object with `model_id`, `registry` and `owner`
/// (default: `default_owner`, the caller) filled in. Returns the JSON and the owner.
fn init_args(
    model_id: &ModelId,
    registry: &AccountId,
    args: Value,
    default_owner: &AccountId,
) -> Result<(Vec<u8>, AccountId), FactoryError> {
    let Value::Object(mut map) = args else {
        return Err(FactoryError::BadArgs(format!("got {args}")));
    };
    let owner = match map.get("owner") {
        None | Some(Value::Null) => default_owner.clone(),
        Some(v) => serde_json::from_value::<AccountId>(v.clone())
            .map_err(|e| FactoryError::BadArgs(format!("owner: {e}")))?,
    };
    map.insert("model_id".into(), Value::String(model_id.to_string()));
    map.insert("registry".into(), Value::String(registry.to_string()));
    map.insert("owner".into(), Value::String(owner.to_string()));
    let json = serde_json::to_vec(&serde_json::json!({ "init": map }))
        .map_err(|e| FactoryError::BadArgs(e.to_string()))?;
    Ok((json, owner))
}

impl ModelFactory {
    fn try_create(&mut self, model_id: ModelId, args: Value) -> Result<Promise, FactoryError> {
        let code = self.model_code.clone().ok_or(FactoryError::NoModelCode)?;
        if self.models.contains_key(&model_id) {
            return Err(FactoryError::ModelExists(model_id));
        }
        let caller = env::predecessor_account_id();
        if let Some(reserved_for) = self.reservations.get(&model_id)
            && *reserved_for != caller
        {
            return Err(FactoryError::ModelReserved {
                model_id,
                reserved_for: reserved_for.clone(),
                caller,
            });
        }
        let token_str = format!("{model_id}.{}", env::current_account_id());
        let token: AccountId = token_str
            .parse()
            .map_err(|_| FactoryError::BadAccount(token_str.clone()))?;
        let prepaid = env::prepaid_gas();
        if prepaid < MIN_CREATE_GAS {
            return Err(FactoryError::NotEnoughGas {
                required: MIN_CREATE_GAS,
                attached: prepaid,
            });
        }
        let (init, owner) = init_args(
            &model_id,
            &self.registry,
            args,
            &env::predecessor_account_id(),
        )?;
        let attached = env::attached_deposit();
        let required = create_deposit_for(init.len());
        if attached < required {
            return Err(FactoryError::DepositTooSmall { required, attached });
        }
        let creator = env::predecessor_account_id();

        // List first (state before promises); the callback unlists on failure.
        let before = env::storage_usage();
        self.models.insert(
            model_id.clone(),
            ModelRecord {
                token: token.clone(),
                owner,
                creator: creator.clone(),
                created_at_ns: env::block_timestamp(),
                status: ModelStatus::Creating,
                code: code.clone(),
            },
        );
        self.models.flush();
        let record_cost = env::storage_byte_cost()
            .saturating_mul(u128::from(env::storage_usage().saturating_sub(before)));
        let forward = attached.saturating_sub(record_cost);

        let batch = Promise::new(token).create_account().transfer(forward);
        let batch = match code {
            GlobalContractId::CodeHash(hash) => batch.use_global_contract(hash),
            GlobalContractId::AccountId(account) => {
                batch.use_global_contract_by_account_id(account)
            }
        };
        Ok(batch
            .function_call(
                "new",
                init,
                NearToken::from_yoctonear(0),
                GAS_FOR_MODEL_INIT,
            )
            .then(
                Self::ext(env::current_account_id())
                    .with_static_gas(GAS_FOR_CREATE_CALLBACK)
                    .with_unused_gas_weight(0)
                    .on_model_created(model_id, creator, U128(attached.as_yoctonear())),
            ))
    }

    fn settle_create(&mut self, model_id: ModelId, creator: AccountId, deposit: NearToken) -> bool {
        if near_sdk::is_promise_success() {
            if let Some(record) = self.models.get_mut(&model_id) {
                record.status = ModelStatus::Created;
                ModelEvent::ModelCreated {
                    model_id,
                    token: record.token.clone(),
                    owner: record.owner.clone(),
                }
                .emit();
            }
            return true;
        }
        // Refund only a creation that is still in flight, and only to its creator: a second
        // report of the same failure finds nothing to refund.
        let in_flight = self
            .models
            .get(&model_id)
            .is_some_and(|r| r.status == ModelStatus::Creating && r.creator == creator);
        if !in_flight {
            env::log_str(&format!(
                "creating model {model_id} failed; no creation of {creator} in flight, nothing to refund"
            ));
            return false;
        }
        self.models.remove(&model_id);
        // The runtime returns the batch's deposit to this account in a receipt that runs after
        // this callback; the refund waits one receipt for it instead of advancing it from the
        // factory's own balance (the listing's share comes from the freed listing storage).
        Self::ext(env::current_account_id())
            .with_static_gas(GAS_FOR_REFUND_STEP)
            .with_unused_gas_weight(0)
            .refund_failed_creation(
                model_id.clone(),
                creator.clone(),
                U128(deposit.as_yoctonear()),
            )
            .detach();
        env::log_str(&format!(
            "creating model {model_id} failed; {deposit} goes back to {creator} in the next receipt"
        ));
        false
    }

    fn start_refund(&self, model_id: ModelId, creator: AccountId, amount: NearToken) -> Promise {
        Promise::new(creator.clone()).transfer(amount).then(
            Self::ext(env::current_account_id())
                .with_static_gas(GAS_FOR_REFUND_CALLBACK)
                .with_unused_gas_weight(0)
                .on_creation_refunded(model_id, creator, U128(amount.as_yoctonear())),
        )
    }
}

fn create_deposit_for(args_len: usize) -> NearToken {
    model_deposit(args_len).saturating_add(env::storage_byte_cost().saturating_mul(RECORD_BYTES))
}

#[near]
impl FactoryApi for ModelFactory {
    #[payable]
    fn create_model(&mut self, model_id: ModelId, args: Value) -> Promise {
        self.try_create(model_id, args).or_panic()
    }

    fn create_deposit(&self, args: Value) -> NearToken {
        // A view has no caller: size the default owner as the longest account id.
        let longest: AccountId = "a"
            .repeat(AccountId::MAX_LEN)
            .parse()
            .unwrap_or_else(|_| env::abort());
        let len = init_args(
            &"xx".parse().unwrap_or_else(|_| env::abort()),
            &self.registry,
            args,
            &longest,
        )
        .map_or(0, |(json, _)| json.len());
        // Room for the longest model id the listing accepts.
        create_deposit_for(len + ModelId::MAX_LEN)
    }

    fn model(&self, model_id: ModelId) -> Option<ModelView> {
        self.models.get(&model_id).map(|r| view_of(&model_id, r))
    }

    fn models(&self, from_index: Option<u32>, limit: Option<u32>) -> Vec<ModelView> {
        self.models
            .iter()
            .skip(from_index.unwrap_or(0) as usize)
            .take(limit.unwrap_or(MAX_PAGE).min(MAX_PAGE) as usize)
            .map(|(id, r)| view_of(id, r))
            .collect()
    }

    fn model_count(&self) -> u32 {
        self.models.len()
    }
}

#[near]
impl ModelFactory {
    /// Callback of `create_model` (this contract only): lists the model and emits
    /// `model_created`; if the creation failed, unlists it and schedules
    /// [`Self::refund_failed_creation`] of `deposit` to `creator` (once: only while the
    /// creation is still listed as in flight). Returns whether the model was created.
    #[private]
    pub fn on_model_created(
        &mut self,
        model_id: ModelId,
        creator: AccountId,
        deposit: U128,
    ) -> bool {
        self.settle_create(model_id, creator, NearToken::from_yoctonear(deposit.0))
    }

    /// This contract only, scheduled by a failed creation's callback so that it runs after
    /// the runtime returned the failed batch's deposit: sends `amount` to `creator` and
    /// resolves in [`Self::on_creation_refunded`]. 8 Tgas.
    #[private]
    pub fn refund_failed_creation(
        &mut self,
        model_id: ModelId,
        creator: AccountId,
        amount: U128,
    ) -> Promise {
        self.start_refund(model_id, creator, NearToken::from_yoctonear(amount.0))
    }

    /// Callback of the refund (this contract only): logs "refunded" only if the NEAR
    /// arrived; a bounced refund (the creator's account is gone) stays with the factory and
    /// says so. Returns whether the refund arrived.
    #[private]
    pub fn on_creation_refunded(
        &mut self,
        model_id: ModelId,
        creator: AccountId,
        amount: U128,
    ) -> bool {
        let amount = NearToken::from_yoctonear(amount.0);
        if near_sdk::is_promise_success() {
            env::log_str(&format!(
                "creating model {model_id} failed; {amount} refunded to {creator}"
            ));
            true
        } else {
            env::log_str(&format!(
                "creating model {model_id} failed and the refund of {amount} to {creator} bounced; it stays with the factory"
            ));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::*;
    use near_sdk::PromiseResult;
    use near_sdk::mock::MockAction;
    use near_sdk::test_utils::{get_created_receipts, get_logs};

    /// NEAR the last call sent back to `who`.
    fn refunded_to(who: &str) -> NearToken {
        get_created_receipts()
            .iter()
            .filter(|r| r.receiver_id == acc(who))
            .flat_map(|r| r.actions.iter())
            .filter_map(|a| match a {
                MockAction::Transfer { deposit, .. } => Some(*deposit),
                _ => None,
            })
            .fold(NearToken::from_yoctonear(0), NearToken::saturating_add)
    }

    /// A factory where ALICE's creation of `llama` just failed; returns it and the deposit.
    fn failed_creation() -> (ModelFactory, NearToken) {
        let mut f = factory_with_code();
        let dep = f.create_deposit(args());
        ctx(ALICE, dep);
        let _ = f.create_model("llama".parse().unwrap(), args());
        callback_ctx(PromiseResult::Failed);
        assert!(!f.on_model_created(
            "llama".parse().unwrap(),
            acc(ALICE),
            U128(dep.as_yoctonear())
        ));
        (f, dep)
    }

    fn args() -> Value {
        serde_json::json!({ "manifest": { "name": "m" }, "metadata": { "symbol": "M" } })
    }

    #[test]
    fn create_batches_account_code_and_init_then_lists() {
        let mut f = factory_with_code();
        let dep = f.create_deposit(args());
        ctx(ALICE, dep);
        let _ = f.create_model("llama".parse().unwrap(), args());
        let receipts = get_created_receipts();
        let batch = &receipts[0];
        assert_eq!(batch.receiver_id, acc("llama.factory.near"));
        assert!(matches!(batch.actions[0], MockAction::CreateAccount { .. }));
        assert!(
            matches!(batch.actions[1], MockAction::Transfer { deposit, .. } if deposit < dep && !deposit.is_zero())
        );
        assert!(
            matches!(batch.actions[2], MockAction::UseGlobalContract { .. }),
            "{:?}",
            batch.actions[2]
        );
        let MockAction::FunctionCallWeight {
            method_name,
            args: init,
            ..
        } = &batch.actions[3]
        else {
            panic!("expected new(): {:?}", batch.actions[3]);
        };
        assert_eq!(method_name, b"new");
        let init: Value = serde_json::from_slice(init).unwrap();
        assert_eq!(init["init"]["model_id"], "llama");
        assert_eq!(init["init"]["owner"], ALICE);
        assert_eq!(init["init"]["registry"], REGISTRY);
        assert_eq!(init["init"]["manifest"]["name"], "m");
        assert_eq!(
            f.model("llama".parse().unwrap()).unwrap().status,
            ModelStatus::Creating
        );

        callback_ctx(PromiseResult::Successful(vec![]));
        assert!(f.on_model_created(
            "llama".parse().unwrap(),
            acc(ALICE),
            U128(dep.as_yoctonear())
        ));
        assert!(
            get_logs()
                .iter()
                .any(|l| l.contains("\"model_created\"") && l.contains("llama.factory.near"))
        );
        assert_eq!(
            f.model("llama".parse().unwrap()).unwrap().status,
            ModelStatus::Created
        );
        assert_eq!(f.models(None, None).len(), 1);
        assert_eq!(f.model_count(), 1);
    }

    #[test]
    fn create_deposit_is_a_view_and_covers_any_creator() {
        let f = factory_with_code();
        // As a view call: reading the predecessor would fail it.
        let mut b = near_sdk::test_utils::VMContextBuilder::new();
        b.current_account_id(acc(FACTORY)).is_view(true);
        near_sdk::testing_env!(b.build());
        let dep = f.create_deposit(args());
        // Enough for the longest creator, who becomes the owner.
        let mut f = f;
        let longest = "b".repeat(AccountId::MAX_LEN);
        ctx(&longest, dep);
        let _ = f.create_model("llama".parse().unwrap(), args());
        assert_eq!(
            f.model("llama".parse().unwrap()).unwrap().owner,
            acc(&longest)
        );
    }

    #[test]
    fn failed_creation_unlists_and_refunds_the_creator() {
        let (mut f, dep) = failed_creation();
        assert!(f.model("llama".parse().unwrap()).is_none());
        // The refund step (next receipt) sends the whole deposit to the creator.
        ctx(FACTORY, NearToken::from_yoctonear(0));
        let _ = f.refund_failed_creation(
            "llama".parse().unwrap(),
            acc(ALICE),
            U128(dep.as_yoctonear()),
        );
        let refund = &get_created_receipts()[0];
        assert_eq!(refund.receiver_id, acc(ALICE));
        assert!(
            matches!(refund.actions[0], MockAction::Transfer { deposit, .. } if deposit == dep)
        );
        // The id is free again.
        ctx(BOB, dep);
        let _ = f.create_model("llama".parse().unwrap(), args());
    }

    /// Audit finding 8: the callback of a failed creation runs before the runtime returns the
    /// batch's deposit to the factory, so it must not pay the creator from the factory's own
    /// balance; it pays once, in a later receipt, and says "refunded" only when it was.
    #[test]
    fn a_failed_creation_is_refunded_once_after_the_deposit_returned() {
        let (mut f, dep) = failed_creation();
        let receipts = get_created_receipts();
        assert!(
            receipts.iter().all(|r| r.receiver_id != acc(ALICE)),
            "the callback paid the creator before the deposit came back: {receipts:?}"
        );
        assert!(
            get_logs().iter().all(|l| !l.contains("refunded to")),
            "nothing was refunded yet: {:?}",
            get_logs()
        );
        // The refund runs in the next receipt, to this contract.
        assert_eq!(receipts.len(), 1, "{receipts:?}");
        assert_eq!(receipts[0].receiver_id, acc(FACTORY));
        let MockAction::FunctionCallWeight {
            method_name, args, ..
        } = &receipts[0].actions[0]
        else {
            panic!("expected the refund step: {:?}", receipts[0].actions);
        };
        assert_eq!(method_name, b"refund_failed_creation");
        let step: Value = serde_json::from_slice(args).unwrap();
        assert_eq!(step["amount"], dep.as_yoctonear().to_string());

        // A second report of the same failure refunds nothing.
        callback_ctx(PromiseResult::Failed);
        assert!(!f.on_model_created(
            "llama".parse().unwrap(),
            acc(ALICE),
            U128(dep.as_yoctonear())
        ));
        assert!(get_created_receipts().is_empty(), "refunded twice");

        // The refund step sends the deposit and reports what happened.
        ctx(FACTORY, NearToken::from_yoctonear(0));
        let _ = f.refund_failed_creation(
            "llama".parse().unwrap(),
            acc(ALICE),
            U128(dep.as_yoctonear()),
        );
        let receipts = get_created_receipts();
        assert_eq!(receipts[0].receiver_id, acc(ALICE));
        assert!(
            matches!(receipts[0].actions[0], MockAction::Transfer { deposit, .. } if deposit == dep)
        );
        callback_ctx(PromiseResult::Failed);
        assert!(!f.on_creation_refunded(
            "llama".parse().unwrap(),
            acc(ALICE),
            U128(dep.as_yoctonear())
        ));
        assert!(
            get_logs().iter().all(|l| !l.contains("refunded to")),
            "a bounced refund is not a refund: {:?}",
            get_logs()
        );
        callback_ctx(PromiseResult::Successful(vec![]));
        assert!(f.on_creation_refunded(
            "llama".parse().unwrap(),
            acc(ALICE),
            U128(dep.as_yoctonear())
        ));
        assert!(
            get_logs()
                .iter()
                .any(|l| l.contains("refunded to alice.near"))
        );
    }

    /// Audit finding 2 (factory side): a model id governance reserved for its rights holder
    /// cannot be created, and its royalties captured, by whoever comes first.
    #[test]
    fn a_reserved_id_is_created_only_by_its_rights_holder() {
        let mut f = factory_with_code();
        let llama: ModelId = "llama".parse().unwrap();
        ctx(ALICE, NearToken::from_millinear(10));
        assert_panics_with(
            || f.reserve_model(llama.clone(), Some(acc(ALICE))),
            "only the owner",
        );
        ctx(OWNER, NearToken::from_yoctonear(1));
        assert_panics_with(
            || f.reserve_model(llama.clone(), Some(acc(BOB))),
            "attach at least",
        );
        ctx(OWNER, NearToken::from_millinear(10));
        let usage = env::storage_usage();
        f.reserve_model(llama.clone(), Some(acc(BOB)));
        assert_eq!(f.reservation(llama.clone()), Some(acc(BOB)));
        let charged = NearToken::from_millinear(10).saturating_sub(refunded_to(OWNER));
        assert_eq!(
            charged,
            env::storage_byte_cost().saturating_mul(u128::from(env::storage_usage() - usage)),
            "the reservation pays exactly its storage"
        );

        let dep = f.create_deposit(args());
        ctx(ALICE, dep);
        assert_panics_with(
            || f.create_model(llama.clone(), args()),
            "reserved for bob.near",
        );
        ctx(BOB, dep);
        let _ = f.create_model(llama.clone(), args());
        assert_eq!(f.model(llama.clone()).unwrap().creator, acc(BOB));
        ctx(OWNER, NearToken::from_millinear(10));
        assert_panics_with(
            || f.reserve_model(llama.clone(), Some(acc(ALICE))),
            "already exists",
        );

        // Lifting a reservation gives its storage back.
        let m2: ModelId = "m2".parse().unwrap();
        ctx(OWNER, NearToken::from_millinear(10));
        f.reserve_model(m2.clone(), Some(acc(ALICE)));
        ctx(OWNER, NearToken::from_yoctonear(1));
        f.reserve_model(m2.clone(), None);
        assert!(f.reservation(m2.clone()).is_none());
        assert!(refunded_to(OWNER) > NearToken::from_yoctonear(1));
        ctx(BOB, dep);
        let _ = f.create_model(m2, args());
    }

    #[test]
    fn explicit_owner() {
        let mut f = factory_with_code();
        let mut a = args();
        a["owner"] = Value::String(BOB.into());
        ctx(ALICE, f.create_deposit(a.clone()));
        let _ = f.create_model("m2".parse().unwrap(), a);
        let r = get_created_receipts();
        assert!(matches!(
            &r[0].actions[2],
            MockAction::UseGlobalContract { .. }
        ));
        assert_eq!(f.model("m2".parse().unwrap()).unwrap().owner, acc(BOB));
    }

    #[test]
    fn create_refusals() {
        let mut f = factory_with_code();
        let dep = f.create_deposit(args());
        ctx(
            ALICE,
            dep.saturating_sub(NearToken::from_yoctonear(1))
                .saturating_sub(
                    env::storage_byte_cost()
                        .saturating_mul((ModelId::MAX_LEN + AccountId::MAX_LEN) as u128),
                ),
        );
        assert_panics_with(
            || f.create_model("llama".parse().unwrap(), args()),
            "attach at least",
        );
        ctx_gas(ALICE, dep, Gas::from_tgas(30));
        assert_panics_with(|| f.create_model("llama".parse().unwrap(), args()), "gas");
        ctx(ALICE, dep);
        assert_panics_with(
            || f.create_model("llama".parse().unwrap(), Value::Bool(true)),
            "must be a JSON object",
        );
        ctx(ALICE, dep);
        let mut bad = args();
        bad["owner"] = Value::String("Not An Account".into());
        assert_panics_with(|| f.create_model("llama".parse().unwrap(), bad), "owner");
        ctx(ALICE, dep);
        let _ = f.create_model("llama".parse().unwrap(), args());
        ctx(BOB, dep);
        assert_panics_with(
            || f.create_model("llama".parse().unwrap(), args()),
            "already exists",
        );

        let mut bare = factory();
        ctx(ALICE, dep);
        assert_panics_with(
            || bare.create_model("llama".parse().unwrap(), args()),
            "no model code",
        );
    }

    #[test]
    fn listing_is_paginated() {
        let mut f = factory_with_code();
        for i in 0..5 {
            let dep = f.create_deposit(args());
            ctx(ALICE, dep);
            let _ = f.create_model(format!("m{i}").parse().unwrap(), args());
        }
        let page = f.models(Some(1), Some(2));
        assert_eq!(
            page.iter()
                .map(|m| m.model_id.to_string())
                .collect::<Vec<_>>(),
            ["m1", "m2"]
        );
        assert_eq!(f.models(Some(4), None).len(), 1);
        assert_eq!(f.models(Some(9), None).len(), 0);
    }
}
