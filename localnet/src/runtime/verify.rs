//! Transaction validation and charging, with nearcore's `InvalidTxError` kinds.

use super::actions::{ACCESS_KEY_NONCE_RANGE_MULTIPLIER, check_storage_stake};
use super::{BlockContext, Runtime, fees};
use crate::state::{Overlay, StateRead};
use near_primitives::account::{AccessKeyPermission, FunctionCallPermission};
use near_primitives::action::Action;
use near_primitives::errors::{ActionsValidationError, InvalidAccessKeyError, InvalidTxError};
use near_primitives::receipt::{ActionReceipt, Receipt, ReceiptEnum, ReceiptV0};
use near_primitives::transaction::SignedTransaction;
use near_primitives::types::{AccountId, Gas};
use near_primitives::utils::create_receipt_id_from_transaction;

/// A function-call key allows one function call, without deposit, to its receiver and
/// (if listed) its methods.
pub fn check_function_call_permission(
    permission: &FunctionCallPermission,
    receiver_id: &AccountId,
    actions: &[Action],
) -> Result<(), InvalidAccessKeyError> {
    let [Action::FunctionCall(call)] = actions else {
        return Err(InvalidAccessKeyError::RequiresFullAccess);
    };
    if !call.deposit.is_zero() {
        return Err(InvalidAccessKeyError::DepositWithFunctionCall);
    }
    if permission.receiver_id != receiver_id.as_str() {
        return Err(InvalidAccessKeyError::ReceiverMismatch {
            tx_receiver: receiver_id.clone(),
            ak_receiver: permission.receiver_id.clone(),
        });
    }
    if !permission.method_names.is_empty()
        && !permission
            .method_names
            .iter()
            .any(|m| m == &call.method_name)
    {
        return Err(InvalidAccessKeyError::MethodNameMismatch {
            method_name: call.method_name.clone(),
        });
    }
    Ok(())
}

/// Checks that do not need state: signature and action limits.
fn validate_stateless(runtime: &Runtime, tx: &SignedTransaction) -> Result<(), InvalidTxError> {
    let hash = tx.get_hash();
    if !tx
        .signature
        .verify(hash.as_ref(), tx.transaction.public_key())
    {
        return Err(InvalidTxError::InvalidSignature);
    }
    let limits = &runtime.wasm_config.limit_config;
    let actions = tx.transaction.actions();
    let total_prepaid_gas = fees::total_prepaid_gas(actions);
    if total_prepaid_gas > limits.max_total_prepaid_gas {
        return Err(InvalidTxError::ActionsValidation(
            ActionsValidationError::TotalPrepaidGasExceeded {
                total_prepaid_gas,
                limit: limits.max_total_prepaid_gas,
            },
        ));
    }
    if actions.len() as u64 > limits.max_actions_per_receipt {
        return Err(InvalidTxError::ActionsValidation(
            ActionsValidationError::TotalNumberOfActionsExceeded {
                total_number_of_actions: actions.len() as u64,
                limit: limits.max_actions_per_receipt,
            },
        ));
    }
    for action in actions {
        if let Action::FunctionCall(call) = action
            && call.gas == Gas::ZERO
        {
            return Err(InvalidTxError::ActionsValidation(
                ActionsValidationError::FunctionCallZeroAttachedGas,
            ));
        }
        let code_len = match action {
            Action::DeployContract(d) => d.code.len(),
            Action::DeployGlobalContract(d) => d.code.len(),
            _ => 0,
        } as u64;
        if code_len > limits.max_contract_size {
            return Err(InvalidTxError::ActionsValidation(
                ActionsValidationError::ContractSizeExceeded {
                    size: code_len,
                    limit: limits.max_contract_size,
                },
            ));
        }
    }
    Ok(())
}

/// Validates a transaction against the state, charges its signer (nonce, balance, allowance)
/// in `overlay`, and returns the receipt it becomes and the gas burnt converting it.
/// `stateless_checked`: the signature and action limits were already checked (at submission).
pub fn verify_and_charge(
    runtime: &Runtime,
    overlay: &mut Overlay,
    tx: &SignedTransaction,
    block: &BlockContext,
    stateless_checked: bool,
) -> Result<(Receipt, Gas), InvalidTxError> {
    if !stateless_checked {
        validate_stateless(runtime, tx)?;
    }
    let t = &tx.transaction;
    let signer_id = t.signer_id();
    let public_key = t.public_key();
    let Some(mut signer) = overlay.account(signer_id) else {
        return Err(InvalidTxError::SignerDoesNotExist {
            signer_id: signer_id.clone(),
        });
    };
    let Some(mut key) = overlay.access_key(signer_id, public_key) else {
        return Err(InvalidTxError::InvalidAccessKeyError(
            InvalidAccessKeyError::AccessKeyNotFound {
                account_id: signer_id.clone(),
                public_key: public_key.clone().into(),
            },
        ));
    };
    let nonce = t.nonce().nonce();
    if nonce <= key.nonce {
        return Err(InvalidTxError::InvalidNonce {
            tx_nonce: nonce,
            ak_nonce: key.nonce,
        });
    }
    let upper_bound = block
        .height
        .saturating_mul(ACCESS_KEY_NONCE_RANGE_MULTIPLIER);
    if nonce >= upper_bound {
        return Err(InvalidTxError::NonceTooLarge {
            tx_nonce: nonce,
            upper_bound,
        });
    }
    let sir = signer_id == t.receiver_id();
    let cost = fees::tx_cost(&runtime.config.fees, t.actions(), sir, block.gas_price);
    let balance = signer.amount();
    let Some(remaining) = balance.checked_sub(cost.total_cost) else {
        return Err(InvalidTxError::NotEnoughBalance {
            signer_id: signer_id.clone(),
            balance,
            cost: cost.total_cost,
        });
    };
    if let AccessKeyPermission::FunctionCall(permission) = &mut key.permission {
        if let Some(allowance) = permission.allowance {
            let Some(left) = allowance.checked_sub(cost.total_cost) else {
                return Err(InvalidTxError::InvalidAccessKeyError(
                    InvalidAccessKeyError::NotEnoughAllowance {
                        account_id: signer_id.clone(),
                        public_key: public_key.clone().into(),
                        allowance,
                        cost: cost.total_cost,
                    },
                ));
            };
            permission.allowance = Some(left);
        }
        check_function_call_permission(permission, t.receiver_id(), t.actions())
            .map_err(InvalidTxError::InvalidAccessKeyError)?;
    }
    signer.set_amount(remaining);
    if let Err(amount) = check_storage_stake(&runtime.config, &signer) {
        return Err(InvalidTxError::LackBalanceForState {
            signer_id: signer_id.clone(),
            amount,
        });
    }
    key.nonce = nonce;
    overlay.set_account(signer_id, &signer);
    overlay.set_access_key(signer_id, public_key, &key);

    let receipt = Receipt::V0(ReceiptV0 {
        predecessor_id: signer_id.clone(),
        receiver_id: t.receiver_id().clone(),
        receipt_id: create_receipt_id_from_transaction(&tx.get_hash(), block.height),
        receipt: ReceiptEnum::Action(ActionReceipt {
            signer_id: signer_id.clone(),
            signer_public_key: public_key.clone(),
            gas_price: block.gas_price,
            output_data_receivers: vec![],
            input_data_ids: vec![],
            actions: t.actions().to_vec(),
        }),
    });
    Ok((receipt, cost.gas_burnt))
}
