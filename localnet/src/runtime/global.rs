//! NEP-591 global contracts, executed as nearcore 0.38 does (`runtime/src/global_contracts.rs`).
//!
//! `DeployGlobalContract` burns `global_contract_storage_amount_per_byte` for each byte of code
//! from the deployer's balance (the code is stored once for everyone, paid once) and sends a
//! distribution receipt; the code becomes usable when that receipt is applied, in the next
//! block. `UseGlobalContract` makes an account run a global contract, referenced by code hash
//! (immutable) or by the deploying account (its owner's redeployments reach every user): the
//! account keeps only the reference, and function calls load the code behind it at call time.

use super::Execution;
use super::actions::clear_contract_storage_usage;
use crate::state::{Overlay, StateRead, keys};
use near_parameters::RuntimeConfig;
use near_primitives::account::{Account, AccountContract};
use near_primitives::action::{
    DeployGlobalContractAction, GlobalContractDeployMode, GlobalContractIdentifier,
};
use near_primitives::errors::ActionErrorKind;
use near_primitives::hash::CryptoHash;
use near_primitives::receipt::{GlobalContractDistributionReceipt, Receipt};
use near_primitives::types::{AccountId, ShardId};

/// The nonce of the last deployment of a global contract (0 before the first).
fn stored_nonce(state: &impl StateRead, id: &GlobalContractIdentifier) -> u64 {
    state
        .get_raw(&keys::global_nonce(id))
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// `DeployGlobalContract` on `account`: burns the storage cost and queues the distribution.
pub(crate) fn deploy(
    config: &RuntimeConfig,
    overlay: &mut Overlay,
    account_id: &AccountId,
    account: &mut Account,
    action: &DeployGlobalContractAction,
    exec: &mut Execution,
) -> Result<(), ActionErrorKind> {
    let cost = config
        .fees
        .storage_usage_config
        .global_contract_storage_amount_per_byte
        .saturating_mul(action.code.len() as u128);
    let Some(rest) = account.amount().checked_sub(cost) else {
        return Err(ActionErrorKind::LackBalanceForState {
            account_id: account_id.clone(),
            amount: cost,
        });
    };
    account.set_amount(rest);
    exec.storage_burnt = exec.storage_burnt.saturating_add(cost);
    let id = match action.deploy_mode {
        GlobalContractDeployMode::CodeHash => {
            GlobalContractIdentifier::CodeHash(CryptoHash::hash_bytes(&action.code))
        }
        GlobalContractDeployMode::AccountId => {
            GlobalContractIdentifier::AccountId(account_id.clone())
        }
    };
    // The nonce moves now, so that of two deployments in flight the later one wins.
    let nonce = stored_nonce(overlay, &id).saturating_add(1);
    overlay.set_raw(keys::global_nonce(&id), nonce.to_le_bytes().to_vec());
    exec.distributions
        .push(Receipt::new_global_contract_distribution(
            account_id.clone(),
            GlobalContractDistributionReceipt::new(
                id,
                ShardId::new(0),
                vec![],
                action.code.clone(),
                nonce,
            ),
        ));
    Ok(())
}

/// `UseGlobalContract` on `account`: the account drops its own code and references `id`.
pub(crate) fn use_global(
    overlay: &mut Overlay,
    account_id: &AccountId,
    account: &mut Account,
    id: &GlobalContractIdentifier,
) -> Result<(), ActionErrorKind> {
    if overlay.get_raw(&keys::global_code(id)).is_none() {
        return Err(ActionErrorKind::GlobalContractDoesNotExist {
            identifier: id.clone(),
        });
    }
    clear_contract_storage_usage(overlay, account_id, account);
    if account.contract().is_local() {
        overlay.remove(keys::code(account_id));
    }
    let contract = match id {
        GlobalContractIdentifier::CodeHash(hash) => AccountContract::Global(*hash),
        GlobalContractIdentifier::AccountId(owner) => {
            AccountContract::GlobalByAccount(owner.clone())
        }
    };
    account.set_storage_usage(account.storage_usage().saturating_add(id.len() as u64));
    account
        .set_contract(contract)
        .map_err(|_| ActionErrorKind::AccountDoesNotExist {
            account_id: account_id.clone(),
        })
}

/// Applies a distribution receipt: stores the code under its identifier, unless a later
/// deployment of the same identifier was already distributed.
pub fn distribute(overlay: &mut Overlay, receipt: &GlobalContractDistributionReceipt) {
    let id = receipt.id();
    if receipt.nonce() < stored_nonce(overlay, id) {
        return;
    }
    overlay.set_raw(
        keys::global_nonce(id),
        receipt.nonce().to_le_bytes().to_vec(),
    );
    overlay.set_raw(keys::global_code(id), receipt.code().to_vec());
}
