//! One action at a time, with nearcore's checks and error kinds.

use super::ext::RuntimeExt;
use super::{BlockContext, Execution, Runtime, fees};
use crate::state::{Overlay, StateRead, keys};
use near_crypto::PublicKey;
use near_parameters::RuntimeConfig;
use near_primitives::account::{AccessKey, AccessKeyPermission, Account, AccountContract};
use near_primitives::action::{Action, FunctionCallAction};
use near_primitives::errors::{ActionErrorKind, FunctionCallError, InvalidAccessKeyError};
use near_primitives::hash::CryptoHash;
use near_primitives::receipt::{ActionReceipt, Receipt};
use near_primitives::types::{AccountId, Balance, Gas};
use near_primitives::utils::create_random_seed;
use near_vm_runner::ContractCode;
use near_vm_runner::logic::errors::FunctionCallError as VmFunctionCallError;
use near_vm_runner::logic::types::PromiseResult;
use near_vm_runner::logic::{ReturnData, VMContext};
use std::sync::Arc;

/// Nonces of new keys start at `(height - 1) * 1e6`, as in nearcore, so that old signed
/// transactions cannot be replayed against a re-added key.
pub const ACCESS_KEY_NONCE_RANGE_MULTIPLIER: u64 = 1_000_000;

/// An account whose state fits in this many bytes needs no balance for storage.
const ZERO_BALANCE_ACCOUNT_STORAGE_LIMIT: u64 = 770;

pub(crate) struct ActionContext<'a> {
    pub runtime: &'a Runtime,
    pub receipt: &'a Receipt,
    pub action_receipt: &'a ActionReceipt,
    pub block: &'a BlockContext,
    pub action_hash: CryptoHash,
    pub promise_results: Arc<[PromiseResult]>,
    pub is_last: bool,
}

/// `Err(missing amount)` if the account cannot pay for its storage.
pub fn check_storage_stake(config: &RuntimeConfig, account: &Account) -> Result<(), Balance> {
    let usage = account.storage_usage();
    if usage <= ZERO_BALANCE_ACCOUNT_STORAGE_LIMIT {
        return Ok(());
    }
    let per_byte = config.fees.storage_usage_config.storage_amount_per_byte;
    let required =
        Balance::from_yoctonear(u128::from(usage).saturating_mul(per_byte.as_yoctonear()));
    let available = account.amount().saturating_add(account.locked());
    if available >= required {
        Ok(())
    } else {
        Err(required.saturating_sub(available))
    }
}

/// Bytes an access key record occupies in state, as nearcore counts them.
pub fn access_key_storage(config: &RuntimeConfig, pk: &PublicKey, key: &AccessKey) -> u64 {
    let pk_len = borsh::object_length(pk).unwrap_or(0) as u64;
    let key_len = borsh::object_length(key).unwrap_or(0) as u64;
    config.fees.storage_usage_config.num_extra_bytes_record + pk_len + key_len
}

/// The VM's error as the protocol reports it (nearcore's `node-runtime` does the same mapping).
pub(crate) fn vm_error(e: VmFunctionCallError) -> FunctionCallError {
    use near_primitives::errors::{CompilationError as C, MethodResolveError as M};
    use near_vm_runner::logic::errors::{CompilationError as VmC, MethodResolveError as VmM};
    match e {
        VmFunctionCallError::CompilationError(VmC::CodeDoesNotExist { account_id }) => {
            match account_id.parse() {
                Ok(account_id) => {
                    FunctionCallError::CompilationError(C::CodeDoesNotExist { account_id })
                }
                Err(_) => FunctionCallError::ExecutionError(format!("no code for {account_id}")),
            }
        }
        VmFunctionCallError::CompilationError(VmC::PrepareError(p)) => {
            match borsh::to_vec(&p)
                .ok()
                .and_then(|b| borsh::from_slice(&b).ok())
            {
                Some(p) => FunctionCallError::CompilationError(C::PrepareError(p)),
                None => FunctionCallError::ExecutionError(format!("{p:?}")),
            }
        }
        VmFunctionCallError::CompilationError(VmC::WasmerCompileError { msg }) => {
            FunctionCallError::CompilationError(C::WasmerCompileError { msg })
        }
        VmFunctionCallError::MethodResolveError(m) => {
            FunctionCallError::MethodResolveError(match m {
                VmM::MethodEmptyName => M::MethodEmptyName,
                VmM::MethodNotFound => M::MethodNotFound,
                VmM::MethodInvalidSignature => M::MethodInvalidSignature,
            })
        }
        other => FunctionCallError::ExecutionError(other.to_string()),
    }
}

fn no_account(account_id: &AccountId) -> ActionErrorKind {
    ActionErrorKind::AccountDoesNotExist {
        account_id: account_id.clone(),
    }
}

/// Actions that change an account only its owner may send: the predecessor, or anyone in the
/// receipt that created the account (nearcore's `actor_id`).
fn check_actor(
    ctx: &ActionContext,
    action: &Action,
    exec: &Execution,
) -> Result<(), ActionErrorKind> {
    let needs_owner = matches!(
        action,
        Action::DeployContract(_)
            | Action::DeployGlobalContract(_)
            | Action::UseGlobalContract(_)
            | Action::Stake(_)
            | Action::AddKey(_)
            | Action::DeleteKey(_)
            | Action::DeleteAccount(_)
    );
    let account_id = ctx.receipt.receiver_id();
    let actor_id = &exec.actor_id;
    if needs_owner && actor_id != account_id {
        return Err(ActionErrorKind::ActorNoPermission {
            account_id: account_id.clone(),
            actor_id: actor_id.clone(),
        });
    }
    Ok(())
}

pub(crate) fn apply_action(
    ctx: &ActionContext,
    action: &Action,
    overlay: &mut Overlay,
    account: &mut Option<Account>,
    exec: &mut Execution,
) -> Result<(), ActionErrorKind> {
    let config = &ctx.runtime.config;
    let account_id = ctx.receipt.receiver_id();
    check_actor(ctx, action, exec)?;
    match action {
        Action::CreateAccount(_) => {
            create_account(ctx, account)?;
            exec.actor_id = account_id.clone();
            Ok(())
        }
        Action::Transfer(t) => {
            if account.is_none() && account_id.get_account_type().is_implicit() {
                create_implicit_account(config, account_id, overlay, account)?;
            }
            let acc = account.as_mut().ok_or_else(|| no_account(account_id))?;
            acc.set_amount(acc.amount().saturating_add(t.deposit));
            refund_allowance(ctx, overlay, t.deposit);
            Ok(())
        }
        Action::DeployContract(d) => {
            let acc = account.as_mut().ok_or_else(|| no_account(account_id))?;
            clear_contract_storage_usage(overlay, account_id, acc);
            let hash = CryptoHash::hash_bytes(&d.code);
            overlay.set_raw(keys::code(account_id), d.code.clone());
            acc.set_storage_usage(acc.storage_usage().saturating_add(d.code.len() as u64));
            acc.set_contract(AccountContract::Local(hash))
                .map_err(|_| no_account(account_id))?;
            Ok(())
        }
        Action::DeployGlobalContract(d) => {
            let acc = account.as_mut().ok_or_else(|| no_account(account_id))?;
            super::global::deploy(config, overlay, account_id, acc, d, exec)
        }
        Action::UseGlobalContract(u) => {
            let acc = account.as_mut().ok_or_else(|| no_account(account_id))?;
            super::global::use_global(overlay, account_id, acc, &u.contract_identifier)
        }
        Action::FunctionCall(f) => function_call(ctx, f, overlay, account, exec),
        Action::AddKey(add) => {
            let acc = account.as_mut().ok_or_else(|| no_account(account_id))?;
            if overlay.access_key(account_id, &add.public_key).is_some() {
                return Err(ActionErrorKind::AddKeyAlreadyExists {
                    account_id: account_id.clone(),
                    public_key: add.public_key.clone().into(),
                });
            }
            let mut key = add.access_key.clone();
            key.nonce = ctx
                .block
                .height
                .saturating_sub(1)
                .saturating_mul(ACCESS_KEY_NONCE_RANGE_MULTIPLIER);
            acc.set_storage_usage(acc.storage_usage().saturating_add(access_key_storage(
                config,
                &add.public_key,
                &key,
            )));
            overlay.set_access_key(account_id, &add.public_key, &key);
            Ok(())
        }
        Action::DeleteKey(del) => {
            let acc = account.as_mut().ok_or_else(|| no_account(account_id))?;
            let Some(key) = overlay.access_key(account_id, &del.public_key) else {
                return Err(ActionErrorKind::DeleteKeyDoesNotExist {
                    account_id: account_id.clone(),
                    public_key: del.public_key.clone().into(),
                });
            };
            acc.set_storage_usage(acc.storage_usage().saturating_sub(access_key_storage(
                config,
                &del.public_key,
                &key,
            )));
            overlay.remove(keys::access_key(account_id, &del.public_key));
            Ok(())
        }
        Action::DeleteAccount(del) => {
            let acc = account.as_ref().ok_or_else(|| no_account(account_id))?;
            if !acc.locked().is_zero() {
                return Err(ActionErrorKind::DeleteAccountStaking {
                    account_id: account_id.clone(),
                });
            }
            for prefix in [
                keys::access_key_prefix(account_id),
                keys::data_prefix(account_id),
            ] {
                for key in overlay.keys_with_prefix(&prefix) {
                    overlay.remove(key);
                }
            }
            overlay.remove(keys::code(account_id));
            overlay.remove(keys::account(account_id));
            if !acc.amount().is_zero() {
                exec.direct_receipts.push((
                    del.beneficiary_id.clone(),
                    vec![Action::Transfer(near_primitives::action::TransferAction {
                        deposit: acc.amount(),
                    })],
                ));
            }
            *account = None;
            Ok(())
        }
        Action::Delegate(signed) => delegate(ctx, signed, overlay, exec),
        Action::Stake(stake) => Err(ActionErrorKind::InsufficientStake {
            account_id: account_id.clone(),
            stake: stake.stake,
            minimum_stake: Balance::MAX,
        }),
        _ => Err(ActionErrorKind::FunctionCallError(
            FunctionCallError::ExecutionError(format!(
                "localnet does not execute this action: {action:?}"
            )),
        )),
    }
}

/// Takes the bytes of the account's current contract out of its storage usage: its own code,
/// or the identifier of the global contract it uses (nearcore's
/// `clear_account_contract_storage_usage`).
pub(crate) fn clear_contract_storage_usage(
    overlay: &Overlay,
    account_id: &AccountId,
    account: &mut Account,
) {
    let bytes = match account.contract().into_owned() {
        AccountContract::None => 0,
        AccountContract::Local(_) => overlay
            .code(account_id)
            .map(|c| c.len() as u64)
            .unwrap_or(0),
        AccountContract::Global(_) => 32,
        AccountContract::GlobalByAccount(owner) => owner.len() as u64,
    };
    account.set_storage_usage(account.storage_usage().saturating_sub(bytes));
}

/// A gas refund (from `system`, to the signer) gives a function-call key its allowance back.
fn refund_allowance(ctx: &ActionContext, overlay: &mut Overlay, amount: Balance) {
    let receipt = ctx.action_receipt;
    let receiver = ctx.receipt.receiver_id();
    if ctx.receipt.predecessor_id().as_str() != "system" || &receipt.signer_id != receiver {
        return;
    }
    let Some(mut key) = overlay.access_key(receiver, &receipt.signer_public_key) else {
        return;
    };
    if let AccessKeyPermission::FunctionCall(permission) = &mut key.permission
        && let Some(allowance) = permission.allowance
    {
        permission.allowance = Some(allowance.saturating_add(amount));
        overlay.set_access_key(receiver, &receipt.signer_public_key, &key);
    }
}

fn create_account(
    ctx: &ActionContext,
    account: &mut Option<Account>,
) -> Result<(), ActionErrorKind> {
    let config = &ctx.runtime.config;
    let account_id = ctx.receipt.receiver_id();
    let predecessor = ctx.receipt.predecessor_id();
    if account.is_some() {
        return Err(ActionErrorKind::AccountAlreadyExists {
            account_id: account_id.clone(),
        });
    }
    let creation = &config.account_creation_config;
    if account_id.is_top_level() {
        if account_id.len() < creation.min_allowed_top_level_account_length as usize
            && predecessor != &creation.registrar_account_id
        {
            return Err(ActionErrorKind::CreateAccountOnlyByRegistrar {
                account_id: account_id.clone(),
                registrar_account_id: creation.registrar_account_id.clone(),
                predecessor_id: predecessor.clone(),
            });
        }
    } else if !account_id.is_sub_account_of(predecessor) {
        return Err(ActionErrorKind::CreateAccountNotAllowed {
            account_id: account_id.clone(),
            predecessor_id: predecessor.clone(),
        });
    }
    *account = Some(Account::new(
        Balance::ZERO,
        Balance::ZERO,
        AccountContract::None,
        config.fees.storage_usage_config.num_bytes_account,
    ));
    Ok(())
}

fn create_implicit_account(
    config: &RuntimeConfig,
    account_id: &AccountId,
    overlay: &mut Overlay,
    account: &mut Option<Account>,
) -> Result<(), ActionErrorKind> {
    let public_key = PublicKey::from_near_implicit_account(account_id).map_err(|_| {
        ActionErrorKind::OnlyImplicitAccountCreationAllowed {
            account_id: account_id.clone(),
        }
    })?;
    let key = AccessKey::full_access();
    let usage = config.fees.storage_usage_config.num_bytes_account
        + access_key_storage(config, &public_key, &key);
    overlay.set_access_key(account_id, &public_key, &key);
    *account = Some(Account::new(
        Balance::ZERO,
        Balance::ZERO,
        AccountContract::None,
        usage,
    ));
    Ok(())
}

/// The contract an account runs, as nearcore hands it to the VM: named by the code hash in
/// the account record (the compiled-contract cache's key), its wasm read from state only
/// when that cache misses. A warm call neither copies nor hashes the code.
pub(crate) struct AccountCode<'a, S: StateRead> {
    state: &'a S,
    key: Vec<u8>,
    hash: CryptoHash,
}

impl<S: StateRead> near_vm_runner::Contract for AccountCode<'_, S> {
    fn hash(&self) -> CryptoHash {
        self.hash
    }
    fn get_code(&self) -> Option<Arc<ContractCode>> {
        let code = self.state.get_raw(&self.key)?;
        Some(Arc::new(ContractCode::new(code, Some(self.hash))))
    }
}

/// The code `account_id` runs under `contract`, if it has any.
pub(crate) fn account_code<'a, S: StateRead>(
    state: &'a S,
    account_id: &AccountId,
    contract: &AccountContract,
) -> Option<AccountCode<'a, S>> {
    let key = keys::contract_code(account_id, contract)?;
    let hash = match contract {
        AccountContract::Local(hash) | AccountContract::Global(hash) => {
            state.has(&key).then_some(*hash)?
        }
        // The record names only the owner: hash the code it currently deploys.
        AccountContract::GlobalByAccount(_) => CryptoHash::hash_bytes(&state.get_raw(&key)?),
        AccountContract::None => return None,
    };
    Some(AccountCode { state, key, hash })
}

/// Shares the gas a call did not use among the calls it created, by their weights.
fn distribute_gas(exec: &mut Execution, first_new: usize, unused: Gas) -> Gas {
    let total: u128 = exec.new_receipts[first_new..]
        .iter()
        .flat_map(|r| r.gas_weights.iter().map(|(_, w)| u128::from(*w)))
        .sum();
    if total == 0 || unused == Gas::ZERO {
        return Gas::ZERO;
    }
    let mut distributed = Gas::ZERO;
    let mut last: Option<(usize, usize)> = None;
    for (r, receipt) in exec.new_receipts.iter_mut().enumerate().skip(first_new) {
        let weights = receipt.gas_weights.clone();
        for (index, weight) in weights {
            if let Some(Action::FunctionCall(f)) = receipt.actions.get_mut(index) {
                let share = (u128::from(unused.as_gas()) * u128::from(weight) / total) as u64;
                let share = Gas::from_gas(share);
                f.gas = f.gas.checked_add(share).unwrap_or(Gas::MAX);
                distributed = distributed.checked_add(share).unwrap_or(Gas::MAX);
                last = Some((r, index));
            }
        }
    }
    // The rounding remainder goes to the last weighted call.
    if let Some((r, index)) = last
        && let Some(Action::FunctionCall(f)) = exec.new_receipts[r].actions.get_mut(index)
    {
        let rest = unused.checked_sub(distributed).unwrap_or(Gas::ZERO);
        f.gas = f.gas.checked_add(rest).unwrap_or(Gas::MAX);
    }
    unused
}

fn function_call(
    ctx: &ActionContext,
    call: &FunctionCallAction,
    overlay: &mut Overlay,
    account: &mut Option<Account>,
    exec: &mut Execution,
) -> Result<(), ActionErrorKind> {
    let runtime = ctx.runtime;
    let account_id = ctx.receipt.receiver_id();
    let acc = account.as_mut().ok_or_else(|| no_account(account_id))?;
    // The account's contract as of this action: a UseGlobalContract earlier in the same
    // receipt already switched it.
    let context = VMContext {
        current_account_id: account_id.clone(),
        signer_account_id: ctx.action_receipt.signer_id.clone(),
        signer_account_pk: borsh::to_vec(&ctx.action_receipt.signer_public_key).unwrap_or_default(),
        predecessor_account_id: ctx.receipt.predecessor_id().clone(),
        refund_to_account_id: ctx.receipt.balance_refund_receiver().clone(),
        input: call.args.clone().into(),
        promise_results: ctx.promise_results.clone(),
        block_height: ctx.block.height,
        block_timestamp: ctx.block.timestamp_ns,
        epoch_height: ctx.block.epoch_height,
        account_balance: acc.amount(),
        account_locked_balance: acc.locked(),
        storage_usage: acc.storage_usage(),
        account_contract: acc.contract().into_owned(),
        attached_deposit: call.deposit,
        prepaid_gas: call.gas,
        random_seed: create_random_seed(ctx.action_hash, ctx.block.random_seed),
        view_config: None,
        output_data_receivers: if ctx.is_last {
            ctx.action_receipt
                .output_data_receivers
                .iter()
                .map(|r| r.receiver_id.clone())
                .collect()
        } else {
            vec![]
        },
    };
    let prepared = {
        let Some(code) = account_code(&*overlay, account_id, &acc.contract()) else {
            return Err(ActionErrorKind::FunctionCallError(
                FunctionCallError::CompilationError(
                    near_primitives::errors::CompilationError::CodeDoesNotExist {
                        account_id: account_id.clone(),
                    },
                ),
            ));
        };
        near_vm_runner::prepare(
            &code,
            runtime.wasm_config.clone(),
            Some(runtime.cache.as_ref()),
            context.make_gas_counter(&runtime.wasm_config),
            &call.method_name,
        )
    };
    let first_new = exec.new_receipts.len();
    let mut ext = RuntimeExt::new(
        overlay,
        account_id.clone(),
        ctx.action_hash,
        runtime.chain_id.clone(),
    );
    ext.receipts = std::mem::take(&mut exec.new_receipts);
    let result = near_vm_runner::run(prepared, &mut ext, &context, runtime.config.fees.clone());
    exec.new_receipts = std::mem::take(&mut ext.receipts);
    let resumes = std::mem::take(&mut ext.resumes);
    drop(ext);
    let outcome = result.map_err(|e| {
        ActionErrorKind::FunctionCallError(FunctionCallError::ExecutionError(format!(
            "VM runner error: {e:?}"
        )))
    })?;
    exec.gas_burnt = exec
        .gas_burnt
        .checked_add(outcome.burnt_gas)
        .unwrap_or(Gas::MAX);
    exec.function_call_burnt = exec
        .function_call_burnt
        .checked_add(outcome.burnt_gas)
        .unwrap_or(Gas::MAX);
    exec.gas_used = exec
        .gas_used
        .checked_add(outcome.used_gas)
        .unwrap_or(Gas::MAX);
    exec.logs.extend(outcome.logs.iter().cloned());
    if let Some(err) = outcome.aborted {
        return Err(ActionErrorKind::FunctionCallError(vm_error(err)));
    }
    if let Some(what) = exec.new_receipts[first_new..]
        .iter()
        .find_map(|r| r.unsupported)
    {
        return Err(ActionErrorKind::FunctionCallError(
            FunctionCallError::ExecutionError(format!("localnet does not support {what}")),
        ));
    }
    acc.set_amount(outcome.balance);
    acc.set_storage_usage(outcome.storage_usage);
    exec.resumes.extend(resumes);
    let unused = call.gas.checked_sub(outcome.used_gas).unwrap_or(Gas::ZERO);
    let distributed = distribute_gas(exec, first_new, unused);
    exec.gas_used = exec.gas_used.checked_add(distributed).unwrap_or(Gas::MAX);
    exec.return_data = outcome.return_data;
    if !ctx.is_last {
        exec.return_data = ReturnData::None;
    }
    Ok(())
}

fn delegate(
    ctx: &ActionContext,
    signed: &near_primitives::action::delegate::SignedDelegateAction,
    overlay: &mut Overlay,
    exec: &mut Execution,
) -> Result<(), ActionErrorKind> {
    let fees = &ctx.runtime.config.fees;
    let delegate = &signed.delegate_action;
    if !signed.verify() {
        return Err(ActionErrorKind::DelegateActionInvalidSignature);
    }
    if ctx.block.height > delegate.max_block_height {
        return Err(ActionErrorKind::DelegateActionExpired);
    }
    let receiver = ctx.receipt.receiver_id();
    if &delegate.sender_id != receiver {
        return Err(
            ActionErrorKind::DelegateActionSenderDoesNotMatchTxReceiver {
                sender_id: delegate.sender_id.clone(),
                receiver_id: receiver.clone(),
            },
        );
    }
    let Some(mut key) = overlay.access_key(&delegate.sender_id, &delegate.public_key) else {
        return Err(ActionErrorKind::DelegateActionAccessKeyError(
            InvalidAccessKeyError::AccessKeyNotFound {
                account_id: delegate.sender_id.clone(),
                public_key: delegate.public_key.clone().into(),
            },
        ));
    };
    if delegate.nonce <= key.nonce {
        return Err(ActionErrorKind::DelegateActionInvalidNonce {
            delegate_nonce: delegate.nonce,
            ak_nonce: key.nonce,
        });
    }
    let upper_bound = ctx
        .block
        .height
        .saturating_mul(ACCESS_KEY_NONCE_RANGE_MULTIPLIER);
    if delegate.nonce >= upper_bound {
        return Err(ActionErrorKind::DelegateActionNonceTooLarge {
            delegate_nonce: delegate.nonce,
            upper_bound,
        });
    }
    let actions = delegate.get_actions();
    if let AccessKeyPermission::FunctionCall(permission) = &key.permission {
        super::verify::check_function_call_permission(permission, &delegate.receiver_id, &actions)
            .map_err(ActionErrorKind::DelegateActionAccessKeyError)?;
    }
    key.nonce = delegate.nonce;
    overlay.set_access_key(&delegate.sender_id, &delegate.public_key, &key);
    // The relayer prepaid the inner receipt: its send fees burn now, the rest is used.
    let sir = delegate.receiver_id == delegate.sender_id;
    let send = fees::receipt_send_fee(fees, sir)
        .checked_add(fees::total_send_fees(fees, &actions, sir))
        .unwrap_or(Gas::MAX);
    exec.burn(send);
    let prepaid = fees::receipt_exec_fee(fees)
        .checked_add(fees::total_prepaid_exec_fees(fees, &actions))
        .and_then(|g| g.checked_add(fees::total_prepaid_gas(&actions)))
        .unwrap_or(Gas::MAX);
    exec.gas_used = exec.gas_used.checked_add(prepaid).unwrap_or(Gas::MAX);
    exec.direct_receipts
        .push((delegate.receiver_id.clone(), actions));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::State;
    use near_vm_runner::Contract;

    fn state_with_code(account_id: &AccountId, code: &[u8]) -> State {
        let mut state = State::default();
        let mut overlay = state.overlay();
        overlay.set_raw(keys::code(account_id), code.to_vec());
        let changes = overlay.into_changes();
        state.commit(changes);
        state
    }

    #[test]
    fn the_vm_gets_the_record_hash_and_reads_the_code_only_when_asked() {
        let alice: AccountId = "alice.near".parse().unwrap();
        let code = b"\0asm not really".to_vec();
        let hash = CryptoHash::hash_bytes(&code);
        let state = state_with_code(&alice, &code);
        let contract = account_code(&state, &alice, &AccountContract::Local(hash)).unwrap();
        assert_eq!(contract.hash(), hash);
        let loaded = contract.get_code().unwrap();
        assert_eq!(loaded.code(), code.as_slice());
        assert_eq!(*loaded.hash(), hash);
    }

    #[test]
    fn no_code_means_no_contract() {
        let alice: AccountId = "alice.near".parse().unwrap();
        let bob: AccountId = "bob.near".parse().unwrap();
        let state = state_with_code(&alice, b"code");
        let hash = CryptoHash::hash_bytes(b"code");
        assert!(account_code(&state, &alice, &AccountContract::None).is_none());
        // A record naming code that is not stored (bob has none).
        assert!(account_code(&state, &bob, &AccountContract::Local(hash)).is_none());
    }
}
