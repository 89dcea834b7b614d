//! NEP-145 storage management: a holder pays once for its record at its largest (balance,
//! crowdfund contribution, one reward correction per possible revenue asset), so no later
//! operation needs more deposit.

use near_contract_standards::storage_management::{
    StorageBalance, StorageBalanceBounds, StorageManagement,
};
use near_sdk::{AccountId, NearToken, env, log, near};

use crate::ModelToken;
#[allow(unused_imports)] // named by the code #[near] generates
use crate::ModelTokenExt;
use crate::access::{OrPanic, refund, require_one_yocto};
use crate::crowdfund::CrowdfundStatus;
use crate::errors::ModelTokenError;

impl ModelToken {
    /// Writes out every buffered collection, so `env::storage_usage()` counts every write.
    fn flush_collections(&mut self) {
        self.holders.flush();
        self.grants.flush();
        self.manifest.flush();
        self.metadata.flush();
    }

    /// Starts a storage measurement: the usage with every earlier write flushed.
    pub(crate) fn storage_mark(&mut self) -> u64 {
        self.flush_collections();
        env::storage_usage()
    }

    /// Bytes the state grew since `mark` (0 if it shrank), every write flushed. With
    /// [`Self::storage_mark`], the one way the contract measures what a caller pays for (the
    /// NEP-145 deposit is such a measure, taken once at creation: `measure_holder_storage`).
    pub(crate) fn storage_grown_since(&mut self, mark: u64) -> u64 {
        self.flush_collections();
        env::storage_usage().saturating_sub(mark)
    }

    pub(crate) fn storage_cost(&self) -> NearToken {
        env::storage_byte_cost().saturating_mul(u128::from(self.holder_storage_bytes))
    }

    fn registered_balance(&self) -> StorageBalance {
        StorageBalance {
            total: self.storage_cost(),
            available: NearToken::from_yoctonear(0),
        }
    }

    /// Registers `account` if needed, paid from `attached`; returns what is left of it.
    pub(crate) fn ensure_registered(
        &mut self,
        account: &AccountId,
        attached: NearToken,
    ) -> Result<NearToken, ModelTokenError> {
        if self.holders.contains_key(account) {
            return Ok(attached);
        }
        let required = self.storage_cost();
        let rest = attached
            .checked_sub(required)
            .ok_or(ModelTokenError::DepositTooSmall { required, attached })?;
        self.register(account);
        Ok(rest)
    }

    fn try_unregister(&mut self, force: bool) -> Result<bool, ModelTokenError> {
        require_one_yocto()?;
        let account = env::predecessor_account_id();
        let Some(holder) = self.holders.get(&account).cloned() else {
            log!("The account {account} is not registered");
            return Ok(false);
        };
        if account == self.owner {
            return Err(ModelTokenError::OwnerCannotUnregister(account));
        }
        let crowdfund_open = self
            .crowdfund
            .as_ref()
            .is_some_and(|c| c.status != CrowdfundStatus::Succeeded);
        // An open contribution (refundable, or its refund in flight) keeps the record, so a
        // bounced refund never needs a record nobody paid for.
        if (holder.contributed > 0 || self.locked_tokens(&holder) > 0) && crowdfund_open {
            return Err(ModelTokenError::OpenContribution(account));
        }
        if holder.balance > 0 && !force {
            return Err(ModelTokenError::PositiveBalance {
                account,
                balance: holder.balance,
            });
        }
        for (i, pool) in self.pools.iter().enumerate() {
            let amount = self.entitlement_of(&holder, i).whole();
            if amount > 0 && !force {
                return Err(ModelTokenError::UnclaimedRevenue {
                    account,
                    asset: pool.asset.clone(),
                    amount,
                });
            }
        }
        if holder.balance > 0 {
            self.burn(&account, holder.balance, Some("unregister"))?;
        }
        // Whatever the account leaves unclaimed goes to the remaining earning holders (or,
        // if none is left, to the owner).
        let holder = self.holders.remove(&account).unwrap_or_default();
        for i in 0..self.pools.len() {
            let entitlement = self.entitlement_of(&holder, i);
            self.pools[i].forfeit(entitlement);
            self.assign_unearned(i);
        }
        refund(
            &account,
            self.storage_cost()
                .saturating_add(NearToken::from_yoctonear(1)),
        );
        Ok(true)
    }
}

#[near]
impl StorageManagement for ModelToken {
    /// Payable: registers `account_id` (default: the caller) for at least
    /// `storage_balance_bounds().min`; the excess, or everything if already registered, is
    /// refunded to the caller.
    #[payable]
    fn storage_deposit(
        &mut self,
        account_id: Option<AccountId>,
        registration_only: Option<bool>,
    ) -> StorageBalance {
        let _ = registration_only; // min == max: every deposit is registration only
        let caller = env::predecessor_account_id();
        let account = account_id.unwrap_or_else(|| caller.clone());
        let attached = env::attached_deposit();
        let rest = self.ensure_registered(&account, attached).or_panic();
        refund(&caller, rest);
        self.registered_balance()
    }

    /// 1 yocto. Nothing is ever available above the fixed deposit, so only `None` or 0 pass.
    #[payable]
    fn storage_withdraw(&mut self, amount: Option<NearToken>) -> StorageBalance {
        require_one_yocto().or_panic();
        let account = env::predecessor_account_id();
        self.holder(&account).or_panic();
        if let Some(amount) = amount.filter(|a| !a.is_zero()) {
            ModelTokenError::NoStorageAvailable(amount).or_panic_now();
        }
        self.registered_balance()
    }

    /// 1 yocto. Removes the caller's record and refunds its deposit. With tokens or unclaimed
    /// revenue it needs `force`: the tokens are burned and the revenue goes to the other
    /// earning holders (the owner if none is left). Refused while the caller has a
    /// contribution in an unsuccessful crowdfund (its refund in flight included), and for the
    /// owner, whose record receives the revenue no token earns.
    #[payable]
    fn storage_unregister(&mut self, force: Option<bool>) -> bool {
        self.try_unregister(force.unwrap_or(false)).or_panic()
    }

    fn storage_balance_bounds(&self) -> StorageBalanceBounds {
        let cost = self.storage_cost();
        StorageBalanceBounds {
            min: cost,
            max: Some(cost),
        }
    }

    fn storage_balance_of(&self, account_id: AccountId) -> Option<StorageBalance> {
        self.holders
            .contains_key(&account_id)
            .then(|| self.registered_balance())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::*;
    use near_sdk::json_types::U128;
    use near_sdk::test_utils::get_created_receipts;

    #[test]
    fn deposit_registers_and_refunds_excess() {
        let mut t = setup();
        let min = t.storage_balance_bounds().min;
        ctx(ALICE, min.saturating_add(NearToken::from_millinear(1)));
        let b = t.storage_deposit(None, None);
        assert_eq!(b.total, min);
        assert!(t.storage_balance_of(acc(ALICE)).is_some());
        assert_eq!(get_created_receipts().len(), 1, "excess refunded");
        // Registering someone else, and again: full refund.
        ctx(ALICE, min);
        t.storage_deposit(Some(acc(BOB)), Some(true));
        assert!(t.storage_balance_of(acc(BOB)).is_some());
        ctx(ALICE, min);
        t.storage_deposit(Some(acc(BOB)), None);
        assert_eq!(get_created_receipts().len(), 1);
        ctx(CAROL, NearToken::from_yoctonear(1));
        assert_panics_with(|| t.storage_deposit(None, None), "attach at least");
    }

    #[test]
    fn withdraw_needs_registration_and_yocto() {
        let mut t = setup_with_holders(&[(ALICE, 0)]);
        ctx(ALICE, NearToken::from_yoctonear(1));
        assert!(t.storage_withdraw(None).available.is_zero());
        ctx(ALICE, NearToken::from_yoctonear(1));
        assert_panics_with(
            || t.storage_withdraw(Some(NearToken::from_yoctonear(5))),
            "nothing is available",
        );
        ctx(BOB, NearToken::from_yoctonear(1));
        assert_panics_with(|| t.storage_withdraw(None), "not registered");
        ctx(ALICE, NearToken::from_yoctonear(0));
        assert_panics_with(|| t.storage_withdraw(None), "1 yoctoNEAR");
    }

    #[test]
    fn unregister_requires_force_with_balance_or_revenue_and_forfeits_to_others() {
        let mut t = setup_with_holders(&[(ALICE, 50), (BOB, 50)]);
        ctx(CAROL, NearToken::from_yoctonear(1));
        assert!(!t.storage_unregister(None));
        ctx(ALICE, NearToken::from_yoctonear(1));
        assert_panics_with(|| t.storage_unregister(None), "still holds 50 tokens");
        deposit_near(&mut t, 100);
        ctx(ALICE, NearToken::from_yoctonear(1));
        assert!(t.storage_unregister(Some(true)));
        assert_eq!(t.total_supply, 50);
        assert!(t.storage_balance_of(acc(ALICE)).is_none());
        // ALICE's 50 waits in the pool and goes to BOB with the next deposit.
        assert_eq!(t.pools[0].undistributed(), 50);
        deposit_near(&mut t, 10);
        // 50 earned + 50 forfeited + 10; rounding keeps one yocto as dust.
        assert_eq!(
            t.claimable(acc(BOB), enclave_cloud_common::Asset::Near),
            U128(109)
        );
        deposit_near(&mut t, 1);
        assert_eq!(
            t.claimable(acc(BOB), enclave_cloud_common::Asset::Near),
            U128(110)
        );
    }

    #[test]
    fn unregister_with_zero_balance_but_revenue_needs_force() {
        let mut t = setup_with_holders(&[(ALICE, 10), (BOB, 10)]);
        deposit_near(&mut t, 20);
        ctx(ALICE, NearToken::from_yoctonear(1));
        t.ft_transfer(acc(BOB), U128(10), None);
        ctx(ALICE, NearToken::from_yoctonear(1));
        assert_panics_with(|| t.storage_unregister(None), "unclaimed revenue 10");
    }
}
