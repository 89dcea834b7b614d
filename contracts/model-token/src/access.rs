//! Who may call what, and the deposits that confirm it.

use near_sdk::{AccountId, NearToken, Promise, env};

use crate::ModelToken;
use crate::errors::ModelTokenError;

/// A call confirmed with a full access key: exactly one yoctoNEAR attached.
pub(crate) fn require_one_yocto() -> Result<(), ModelTokenError> {
    let attached = env::attached_deposit();
    if attached == NearToken::from_yoctonear(1) {
        Ok(())
    } else {
        Err(ModelTokenError::OneYoctoRequired(attached))
    }
}

/// Sends `amount` back to `to` unless it is zero.
pub(crate) fn refund(to: &AccountId, amount: NearToken) {
    if !amount.is_zero() {
        Promise::new(to.clone()).transfer(amount).detach();
    }
}

/// Charges `grown` bytes (see `ModelToken::storage_grown_since`) to `attached`, refunding the
/// rest to `payer`.
pub(crate) fn charge_storage(
    grown: u64,
    attached: NearToken,
    payer: &AccountId,
) -> Result<(), ModelTokenError> {
    let required = env::storage_byte_cost().saturating_mul(u128::from(grown));
    let change = attached
        .checked_sub(required)
        .ok_or(ModelTokenError::DepositTooSmall { required, attached })?;
    refund(payer, change);
    Ok(())
}

impl ModelToken {
    pub(crate) fn require_owner(&self) -> Result<AccountId, ModelTokenError> {
        let caller = env::predecessor_account_id();
        if caller == self.owner {
            Ok(caller)
        } else {
            Err(ModelTokenError::NotOwner {
                owner: self.owner.clone(),
                caller,
            })
        }
    }

    /// The owner or its key service.
    pub(crate) fn require_key_manager(&self) -> Result<AccountId, ModelTokenError> {
        let caller = env::predecessor_account_id();
        if caller == self.owner || self.key_service.as_ref() == Some(&caller) {
            Ok(caller)
        } else {
            Err(ModelTokenError::NotKeyManager {
                owner: self.owner.clone(),
                key_service: self.key_service.clone(),
                caller,
            })
        }
    }
}

/// How this contract raises its errors (the same trait in every contract).
pub(crate) use enclave_cloud_common::OrPanic;
