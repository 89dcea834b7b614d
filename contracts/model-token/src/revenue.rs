//! Revenue in (NEAR by `deposit_revenue`, allow-listed NEP-141 by `ft_on_transfer`) and out
//! (`claim_revenue`). The arithmetic is in [`crate::rewards`]; this module moves the money.

use enclave_cloud_common::Asset;
use enclave_cloud_common::events::Nep297;
use enclave_cloud_common::events::model::ModelEvent;
use enclave_cloud_common::interfaces::ModelRevenueApi;
use near_contract_standards::fungible_token::core::ext_ft_core;
use near_contract_standards::fungible_token::receiver::FungibleTokenReceiver;
use near_sdk::json_types::U128;
use near_sdk::{AccountId, Gas, NearToken, Promise, PromiseOrValue, env, near};

#[allow(unused_imports)] // named by the code #[near] generates
use crate::ModelTokenExt;
use crate::access::{OrPanic, require_one_yocto};
use crate::errors::ModelTokenError;
use crate::{ModelToken, RevenueApi};

/// Gas for the token's `ft_transfer` when paying a claim.
pub use enclave_cloud_common::interfaces::model_token::{AssetAmount, RevenuePoolView};

const GAS_FOR_FT_PAYOUT: Gas = Gas::from_tgas(10);
/// Gas for `on_revenue_claimed`.
const GAS_FOR_CLAIM_CALLBACK: Gas = Gas::from_tgas(5);

impl ModelToken {
    pub(crate) fn pool_index(&self, asset: &Asset) -> Result<usize, ModelTokenError> {
        self.pools
            .iter()
            .position(|p| &p.asset == asset)
            .ok_or_else(|| ModelTokenError::UnknownAsset(asset.clone()))
    }

    fn deposit(
        &mut self,
        payer: AccountId,
        asset: Asset,
        amount: u128,
    ) -> Result<(), ModelTokenError> {
        if amount == 0 {
            return Err(ModelTokenError::DepositRequired);
        }
        let index = self.pool_index(&asset)?;
        // Shared by the tokens that earn: never a crowdfund's locked tokens.
        let supply = self.earning_supply();
        self.pools[index].deposit(amount, supply)?;
        self.assign_unearned(index);
        ModelEvent::RevenueDeposited {
            payer,
            asset,
            amount: U128(amount),
        }
        .emit();
        Ok(())
    }

    /// Revenue waiting in pool `index` while no token earns goes to the owner's record, where
    /// it is claimable like any revenue. Nobody else can have earned it: a deposit made then
    /// (even 1 yocto by the next holder) must not hand it to whoever earns first. While some
    /// token earns, what waits (rounding remainders, forfeits) goes to the next deposit's
    /// earning holders as before. O(1).
    pub(crate) fn assign_unearned(&mut self, index: usize) {
        if self.earning_supply() > 0 {
            return;
        }
        let Some(owner) = self.holders.get_mut(&self.owner) else {
            // Only a state from before the owner had to stay registered: it waits.
            return;
        };
        let Some(pool) = self.pools.get_mut(index) else {
            return;
        };
        let waiting = pool.take_pending();
        owner.set_correction(index, owner.correction(index).wrapping_add(waiting));
    }

    pub(crate) fn claimable_at(&self, account: &AccountId, index: usize) -> u128 {
        self.holders
            .get(account)
            .map_or(0, |h| self.entitlement_of(h, index).whole())
    }

    fn try_claim(&mut self, asset: Asset) -> Result<Promise, ModelTokenError> {
        require_one_yocto()?;
        let account = env::predecessor_account_id();
        let index = self.pool_index(&asset)?;
        let amount = self.claimable_at(&account, index);
        if amount == 0 {
            return Err(ModelTokenError::NothingToClaim { account, asset });
        }
        let current = self.holder(&account)?.correction(index);
        let correction = self.pools[index].on_claim(current, amount)?;
        self.holder_mut(&account)?.set_correction(index, correction);

        let payout = match &asset {
            // The confirming yocto goes back with the payout.
            Asset::Near => Promise::new(account.clone()).transfer(
                NearToken::from_yoctonear(amount).saturating_add(NearToken::from_yoctonear(1)),
            ),
            Asset::Ft { token } => ext_ft_core::ext(token.clone())
                .with_attached_deposit(NearToken::from_yoctonear(1))
                .with_static_gas(GAS_FOR_FT_PAYOUT)
                .ft_transfer(
                    account.clone(),
                    U128(amount),
                    Some("model revenue".to_owned()),
                ),
        };
        Ok(payout.then(
            Self::ext(env::current_account_id())
                .with_static_gas(GAS_FOR_CLAIM_CALLBACK)
                .with_unused_gas_weight(0)
                .on_revenue_claimed(account, index as u32, U128(amount)),
        ))
    }

    /// Settles a payout: an event on success; on failure the amount becomes claimable again
    /// (or, if the holder left meanwhile, goes back to the pool).
    fn settle_claim(&mut self, account: AccountId, index: usize, amount: u128) -> bool {
        let Some(pool) = self.pools.get_mut(index) else {
            return false;
        };
        if near_sdk::is_promise_success() {
            ModelEvent::RevenueClaimed {
                account,
                asset: pool.asset.clone(),
                amount: U128(amount),
            }
            .emit();
            return true;
        }
        env::log_str(&format!(
            "payout of {amount} {:?} to {account} failed; it is claimable again",
            pool.asset
        ));
        match self.holders.get_mut(&account) {
            Some(holder) => {
                let restored = pool.on_claim_failed(holder.correction(index), amount);
                holder.set_correction(index, restored);
            }
            None => {
                pool.return_to_pool(amount);
                self.assign_unearned(index);
            }
        }
        false
    }
}

#[near]
impl ModelRevenueApi for ModelToken {
    /// Payable, any caller (the marketplace pays royalties here): the attached NEAR is shared
    /// pro rata by the tokens that earn (not a crowdfund's locked tokens); if none earns, it
    /// goes to the owner's claimable revenue. O(1), ~3 Tgas.
    #[payable]
    fn deposit_revenue(&mut self) {
        let amount = env::attached_deposit().as_yoctonear();
        self.deposit(env::predecessor_account_id(), Asset::Near, amount)
            .or_panic();
    }
}

#[near]
impl FungibleTokenReceiver for ModelToken {
    /// Called by an allow-listed NEP-141 token on `ft_transfer_call` from any payer: the whole
    /// amount is revenue (returns 0 unused). Other tokens are refused, so they refund the payer.
    fn ft_on_transfer(
        &mut self,
        sender_id: AccountId,
        amount: U128,
        msg: String,
    ) -> PromiseOrValue<U128> {
        let _ = msg;
        let token = env::predecessor_account_id();
        let asset = Asset::Ft {
            token: token.clone(),
        };
        if self.pool_index(&asset).is_err() {
            ModelTokenError::TokenNotAllowed(token).or_panic_now();
        }
        self.deposit(sender_id, asset, amount.0).or_panic();
        PromiseOrValue::Value(U128(0))
    }
}

#[near]
impl RevenueApi for ModelToken {
    #[payable]
    fn claim_revenue(&mut self, asset: Asset) -> Promise {
        self.try_claim(asset).or_panic()
    }

    fn claimable(&self, account_id: AccountId, asset: Asset) -> U128 {
        U128(
            self.pool_index(&asset)
                .map_or(0, |i| self.claimable_at(&account_id, i)),
        )
    }

    fn claimable_all(&self, account_id: AccountId) -> Vec<AssetAmount> {
        (0..self.pools.len())
            .map(|i| AssetAmount {
                asset: self.pools[i].asset.clone(),
                amount: U128(self.claimable_at(&account_id, i)),
            })
            .collect()
    }

    fn revenue_pools(&self) -> Vec<RevenuePoolView> {
        self.pools
            .iter()
            .map(|p| RevenuePoolView {
                asset: p.asset.clone(),
                deposited: U128(p.deposited),
                claimed: U128(p.claimed),
                undistributed: U128(p.undistributed()),
            })
            .collect()
    }
}

#[near]
impl ModelToken {
    /// Callback of `claim_revenue` (this contract only). Returns whether the payout arrived.
    #[private]
    pub fn on_revenue_claimed(&mut self, account: AccountId, pool: u32, amount: U128) -> bool {
        self.settle_claim(account, pool as usize, amount.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::*;
    use near_sdk::PromiseResult;
    use near_sdk::test_utils::{get_created_receipts, get_logs};

    #[test]
    fn deposit_revenue_any_payer_needs_deposit() {
        let mut t = setup_with_holders(&[(ALICE, 1), (BOB, 3)]);
        ctx(MARKET, NearToken::from_yoctonear(400));
        t.deposit_revenue();
        assert!(
            get_logs()
                .iter()
                .any(|l| l.contains("\"revenue_deposited\"") && l.contains(MARKET))
        );
        assert_eq!(t.claimable(acc(ALICE), Asset::Near).0, 100);
        assert_eq!(t.claimable(acc(BOB), Asset::Near).0, 300);
        ctx(MARKET, NearToken::from_yoctonear(0));
        assert_panics_with(|| t.deposit_revenue(), "positive deposit");
    }

    #[test]
    fn ft_on_transfer_accepts_only_allow_listed_tokens() {
        let mut t = setup_with_holders(&[(ALICE, 2)]);
        ctx(USDC, NearToken::from_yoctonear(0));
        let r = t.ft_on_transfer(acc(MARKET), U128(50), String::new());
        assert!(matches!(r, PromiseOrValue::Value(U128(0))));
        assert_eq!(t.claimable(acc(ALICE), usdc()).0, 50);
        ctx("evil.near", NearToken::from_yoctonear(0));
        assert_panics_with(
            || drop(t.ft_on_transfer(acc(MARKET), U128(50), String::new())),
            "not an allow-listed revenue token",
        );
        ctx(USDC, NearToken::from_yoctonear(0));
        assert_panics_with(
            || t.ft_on_transfer(acc(MARKET), U128(0), String::new()),
            "positive",
        );
    }

    #[test]
    fn claim_near_pays_and_emits_on_success() {
        let mut t = setup_with_holders(&[(ALICE, 1)]);
        deposit_near(&mut t, 1_000);
        ctx(ALICE, NearToken::from_yoctonear(1));
        let _ = t.claim_revenue(Asset::Near);
        let receipts = get_created_receipts();
        assert_eq!(receipts[0].receiver_id, acc(ALICE));
        assert_eq!(t.claimable(acc(ALICE), Asset::Near).0, 0);
        assert_eq!(t.pools[0].claimed, 1_000);
        callback_ctx(PromiseResult::Successful(vec![]));
        assert!(t.on_revenue_claimed(acc(ALICE), 0, U128(1_000)));
        assert!(get_logs().iter().any(|l| l.contains("\"revenue_claimed\"")));
        assert_eq!(t.pools[0].claimed, 1_000);
    }

    #[test]
    fn failed_payout_restores_the_claimable_amount() {
        let mut t = setup_with_holders(&[(ALICE, 1)]);
        ctx(USDC, NearToken::from_yoctonear(0));
        let _ = t.ft_on_transfer(acc(MARKET), U128(77), String::new());
        ctx(ALICE, NearToken::from_yoctonear(1));
        let _ = t.claim_revenue(usdc());
        assert_eq!(get_created_receipts()[0].receiver_id, acc(USDC));
        assert_eq!(t.claimable(acc(ALICE), usdc()).0, 0);
        callback_ctx(PromiseResult::Failed);
        assert!(!t.on_revenue_claimed(acc(ALICE), 1, U128(77)));
        assert_eq!(t.claimable(acc(ALICE), usdc()).0, 77);
        assert_eq!(t.pools[1].claimed, 0);
        // Holder gone before the failure: back to the pool, not stranded.
        ctx(ALICE, NearToken::from_yoctonear(1));
        let _ = t.claim_revenue(usdc());
        t.holders.remove(&acc(ALICE));
        callback_ctx(PromiseResult::Failed);
        assert!(!t.on_revenue_claimed(acc(ALICE), 1, U128(77)));
        assert_eq!(t.pools[1].undistributed(), 77);
    }

    #[test]
    fn claim_checks_caller_deposit_and_asset() {
        let mut t = setup_with_holders(&[(ALICE, 1)]);
        deposit_near(&mut t, 10);
        ctx(ALICE, NearToken::from_yoctonear(0));
        assert_panics_with(|| t.claim_revenue(Asset::Near), "1 yoctoNEAR");
        ctx(BOB, NearToken::from_yoctonear(1));
        assert_panics_with(|| t.claim_revenue(Asset::Near), "nothing to claim");
        ctx(ALICE, NearToken::from_yoctonear(1));
        let other = Asset::Ft {
            token: acc("other.near"),
        };
        assert_panics_with(|| t.claim_revenue(other), "is not a revenue asset");
    }

    #[test]
    fn views_list_pools_and_claimables() {
        let mut t = setup_with_holders(&[(ALICE, 1)]);
        deposit_near(&mut t, 5);
        let pools = t.revenue_pools();
        assert_eq!(pools.len(), 2);
        assert_eq!(pools[0].deposited.0, 5);
        let all = t.claimable_all(acc(ALICE));
        assert_eq!(all[0].amount.0, 5);
        assert_eq!(all[1].asset, usdc());
        assert_eq!(
            t.claimable(
                acc(ALICE),
                Asset::Ft {
                    token: acc("x.near")
                }
            )
            .0,
            0
        );
    }
}
