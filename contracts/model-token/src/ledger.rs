//! Token balances. Every balance change goes through `ModelToken::change_balance`, which
//! moves the holder's reward corrections with it (O(number of revenue assets), never
//! O(holders)); mint, burn and transfer emit the NEP-141 events.
//!
//! Crowdfund tokens of a crowdfund that has not succeeded are *locked*: they do not move and
//! do not earn revenue (they are minted and burned without touching the corrections, and the
//! pools share deposits over the earning supply only). When the crowdfund succeeds they start
//! earning at once, without touching any holder: a holder's effective correction subtracts
//! `crowdfund_tokens * reward_per_token_at_success`, exactly what crediting those tokens at
//! that moment would have done (see [`ModelToken::entitlement_of`]).

use enclave_cloud_common::events::nep141::{FtBurn, FtMint, FtTransfer};
use enclave_cloud_common::events::{Nep141Event, Nep297};
use near_sdk::json_types::U128;
use near_sdk::{AccountId, env, near};

use crate::ModelToken;
use crate::crowdfund::CrowdfundStatus;
use crate::errors::ModelTokenError;
use crate::fixed::Mag;
use crate::rewards::RevenuePool;
use crate::state::MAX_POOLS;

/// One registered account.
#[near(serializers = [borsh])]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    pub balance: u128,
    /// NEAR this account put into the crowdfund (refunded if it fails).
    pub contributed: u128,
    /// Tokens minted for that contribution (burned by the refund).
    pub crowdfund_tokens: u128,
    /// Reward correction per revenue pool (missing entries are zero).
    pub corrections: Vec<Mag>,
}

impl Holder {
    pub fn correction(&self, pool: usize) -> Mag {
        self.corrections.get(pool).copied().unwrap_or(Mag::ZERO)
    }

    pub fn set_correction(&mut self, pool: usize, value: Mag) {
        if self.corrections.len() <= pool {
            self.corrections.resize(pool + 1, Mag::ZERO);
        }
        self.corrections[pool] = value;
    }

    /// The largest record a holder can have: what its storage deposit must cover.
    pub fn largest() -> Self {
        Self {
            balance: u128::MAX,
            contributed: u128::MAX,
            crowdfund_tokens: u128::MAX,
            corrections: vec![Mag::ZERO; MAX_POOLS],
        }
    }

    fn adjust(&mut self, pools: &[RevenuePool], amount: u128, incoming: bool) {
        for (i, pool) in pools.iter().enumerate() {
            let c = self.correction(i);
            let c = if incoming {
                pool.on_credit(c, amount)
            } else {
                pool.on_debit(c, amount)
            };
            self.set_correction(i, c);
        }
    }
}

impl ModelToken {
    pub(crate) fn holder(&self, account: &AccountId) -> Result<&Holder, ModelTokenError> {
        self.holders
            .get(account)
            .ok_or_else(|| ModelTokenError::NotRegistered(account.clone()))
    }

    pub(crate) fn holder_mut(
        &mut self,
        account: &AccountId,
    ) -> Result<&mut Holder, ModelTokenError> {
        self.holders
            .get_mut(account)
            .ok_or_else(|| ModelTokenError::NotRegistered(account.clone()))
    }

    pub(crate) fn balance_of(&self, account: &AccountId) -> u128 {
        self.holders.get(account).map_or(0, |h| h.balance)
    }

    /// Whether the crowdfund (if any) succeeded: its tokens earn and move like any other.
    fn crowdfund_succeeded(&self) -> bool {
        self.crowdfund
            .as_ref()
            .is_some_and(|c| c.status == CrowdfundStatus::Succeeded)
    }

    /// Tokens of `holder` that neither move nor earn: its refundable crowdfund tokens while
    /// the crowdfund has not succeeded.
    pub(crate) fn locked_tokens(&self, holder: &Holder) -> u128 {
        if self.crowdfund_succeeded() {
            0
        } else {
            holder.crowdfund_tokens
        }
    }

    /// Tokens that earn revenue: the supply without the locked crowdfund tokens.
    pub(crate) fn earning_supply(&self) -> u128 {
        self.total_supply
            .saturating_sub(self.crowdfund_earnings.locked_supply)
    }

    /// What `account` may move now.
    pub(crate) fn transferable_of(&self, account: &AccountId) -> u128 {
        self.holders
            .get(account)
            .map_or(0, |h| h.balance.saturating_sub(self.locked_tokens(h)))
    }

    /// `holder`'s magnified entitlement in pool `index`: its earning balance times the
    /// accumulator plus its effective correction (see the module doc). Exact.
    pub(crate) fn entitlement_of(&self, holder: &Holder, index: usize) -> Mag {
        let pool = &self.pools[index];
        let correction = holder.correction(index);
        if self.crowdfund_succeeded() {
            let at_success = self
                .crowdfund_earnings
                .reward_per_token_at_success
                .get(index)
                .copied()
                .unwrap_or(Mag::ZERO);
            let activation = at_success.wrapping_mul_amount(holder.crowdfund_tokens);
            pool.entitlement(holder.balance, correction.wrapping_sub(activation))
        } else {
            let earning = holder.balance.saturating_sub(holder.crowdfund_tokens);
            pool.entitlement(earning, correction)
        }
    }

    /// Adds (`incoming`) or takes `amount` to or from a registered account's balance; if the
    /// tokens earn (`earning`), moves its reward corrections with it. The supply is the
    /// caller's business.
    fn change_balance(
        &mut self,
        account: &AccountId,
        amount: u128,
        incoming: bool,
        earning: bool,
    ) -> Result<(), ModelTokenError> {
        let pools = &self.pools;
        let holder = self
            .holders
            .get_mut(account)
            .ok_or_else(|| ModelTokenError::NotRegistered(account.clone()))?;
        let balance = if incoming {
            holder
                .balance
                .checked_add(amount)
                .ok_or_else(|| ModelTokenError::BalanceOverflow(account.clone()))?
        } else {
            holder.balance.checked_sub(amount).ok_or_else(|| {
                ModelTokenError::InsufficientBalance {
                    account: account.clone(),
                    balance: holder.balance,
                    amount,
                }
            })?
        };
        holder.balance = balance;
        if earning {
            holder.adjust(pools, amount, incoming);
        }
        Ok(())
    }

    /// Mints earning tokens.
    pub(crate) fn mint(
        &mut self,
        account: &AccountId,
        amount: u128,
        memo: Option<&str>,
    ) -> Result<(), ModelTokenError> {
        self.mint_tokens(account, amount, memo, false)
    }

    /// Mints refundable crowdfund tokens: locked, earning nothing until the crowdfund
    /// succeeds. Only while the crowdfund has not succeeded.
    pub(crate) fn mint_locked(
        &mut self,
        account: &AccountId,
        amount: u128,
        memo: Option<&str>,
    ) -> Result<(), ModelTokenError> {
        self.mint_tokens(account, amount, memo, true)
    }

    fn mint_tokens(
        &mut self,
        account: &AccountId,
        amount: u128,
        memo: Option<&str>,
        locked: bool,
    ) -> Result<(), ModelTokenError> {
        let supply = self
            .total_supply
            .checked_add(amount)
            .ok_or(ModelTokenError::SupplyOverflow)?;
        if locked {
            let locked_supply = self
                .crowdfund_earnings
                .locked_supply
                .checked_add(amount)
                .ok_or(ModelTokenError::SupplyOverflow)?;
            let crowdfund_tokens = self
                .holder(account)?
                .crowdfund_tokens
                .checked_add(amount)
                .ok_or_else(|| ModelTokenError::BalanceOverflow(account.clone()))?;
            self.change_balance(account, amount, true, false)?;
            self.holder_mut(account)?.crowdfund_tokens = crowdfund_tokens;
            self.crowdfund_earnings.locked_supply = locked_supply;
        } else {
            self.change_balance(account, amount, true, true)?;
        }
        self.total_supply = supply;
        emit_mint(account, amount, memo);
        Ok(())
    }

    /// Burns all of `account`'s locked crowdfund tokens (a refund); returns how many. What
    /// they never earned needs no settling.
    pub(crate) fn burn_locked(
        &mut self,
        account: &AccountId,
        memo: Option<&str>,
    ) -> Result<u128, ModelTokenError> {
        let amount = self.locked_tokens(self.holder(account)?);
        let locked = self
            .crowdfund_earnings
            .locked_supply
            .checked_sub(amount)
            .ok_or(ModelTokenError::SupplyOverflow)?;
        self.change_balance(account, amount, false, false)?;
        self.holder_mut(account)?.crowdfund_tokens = 0;
        // The supply covers every balance, so it cannot underflow.
        self.total_supply = self.total_supply.saturating_sub(amount);
        self.crowdfund_earnings.locked_supply = locked;
        emit_burn(account, amount, memo);
        Ok(amount)
    }

    /// Burns earning tokens (never locked ones: see [`Self::burn_locked`]).
    pub(crate) fn burn(
        &mut self,
        account: &AccountId,
        amount: u128,
        memo: Option<&str>,
    ) -> Result<(), ModelTokenError> {
        self.require_unlocked(account, amount)?;
        self.change_balance(account, amount, false, true)?;
        // The supply covers every balance, so it cannot underflow.
        self.total_supply = self.total_supply.saturating_sub(amount);
        emit_burn(account, amount, memo);
        Ok(())
    }

    /// Refuses to take `amount` from `account` if that would touch its locked tokens.
    fn require_unlocked(&self, account: &AccountId, amount: u128) -> Result<(), ModelTokenError> {
        let holder = self.holder(account)?;
        let locked = self.locked_tokens(holder);
        if locked > 0 && holder.balance.saturating_sub(locked) < amount {
            return Err(ModelTokenError::LockedCrowdfundTokens {
                account: account.clone(),
                balance: holder.balance,
                locked,
                amount,
            });
        }
        Ok(())
    }

    pub(crate) fn transfer(
        &mut self,
        from: &AccountId,
        to: &AccountId,
        amount: u128,
        memo: Option<String>,
    ) -> Result<(), ModelTokenError> {
        if from == to {
            return Err(ModelTokenError::SelfTransfer(from.clone()));
        }
        if amount == 0 {
            return Err(ModelTokenError::ZeroAmount);
        }
        // Check the receiver first so a failed call leaves nothing half done.
        self.holder(to)?;
        self.require_unlocked(from, amount)?;
        self.change_balance(from, amount, false, true)?;
        self.change_balance(to, amount, true, true)?;
        Nep141Event::FtTransfer(vec![FtTransfer {
            old_owner_id: from.clone(),
            new_owner_id: to.clone(),
            amount: U128(amount),
            memo,
        }])
        .emit();
        Ok(())
    }

    /// Creates an empty holder record.
    pub(crate) fn register(&mut self, account: &AccountId) {
        self.holders.insert(account.clone(), Holder::default());
    }

    /// Bytes one holder record takes at its largest, measured on a 64-character account id.
    pub(crate) fn measure_holder_storage(&mut self) -> u64 {
        let mark = self.storage_mark();
        let probe: AccountId = "a".repeat(64).parse().unwrap_or_else(|_| env::abort());
        self.holders.insert(probe.clone(), Holder::largest());
        let bytes = self.storage_grown_since(mark);
        self.holders.remove(&probe);
        self.holders.flush();
        bytes
    }
}

fn emit_mint(account: &AccountId, amount: u128, memo: Option<&str>) {
    Nep141Event::FtMint(vec![FtMint {
        owner_id: account.clone(),
        amount: U128(amount),
        memo: memo.map(str::to_owned),
    }])
    .emit();
}

fn emit_burn(account: &AccountId, amount: u128, memo: Option<&str>) {
    Nep141Event::FtBurn(vec![FtBurn {
        owner_id: account.clone(),
        amount: U128(amount),
        memo: memo.map(str::to_owned),
    }])
    .emit();
}
