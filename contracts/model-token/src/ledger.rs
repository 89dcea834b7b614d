//! Token balances. Every balance change goes through `ModelToken::change_balance`, which
//! moves the holder's reward corrections with it (O(number of revenue assets), never
//! O(holders)); mint, burn and transfer emit the NEP-141 events.

use enclave_cloud_common::events::nep141::{FtBurn, FtMint, FtTransfer};
use enclave_cloud_common::events::{Nep141Event, Nep297};
use near_sdk::json_types::U128;
use near_sdk::{AccountId, env, near};

use crate::ModelToken;
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

    /// Adds (`incoming`) or takes `amount` to or from a registered account's balance and
    /// moves its reward corrections with it; the supply is the caller's business.
    fn change_balance(
        &mut self,
        account: &AccountId,
        amount: u128,
        incoming: bool,
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
        holder.adjust(pools, amount, incoming);
        Ok(())
    }

    pub(crate) fn mint(
        &mut self,
        account: &AccountId,
        amount: u128,
        memo: Option<&str>,
    ) -> Result<(), ModelTokenError> {
        let supply = self
            .total_supply
            .checked_add(amount)
            .ok_or(ModelTokenError::SupplyOverflow)?;
        self.change_balance(account, amount, true)?;
        self.total_supply = supply;
        Nep141Event::FtMint(vec![FtMint {
            owner_id: account.clone(),
            amount: U128(amount),
            memo: memo.map(str::to_owned),
        }])
        .emit();
        Ok(())
    }

    pub(crate) fn burn(
        &mut self,
        account: &AccountId,
        amount: u128,
        memo: Option<&str>,
    ) -> Result<(), ModelTokenError> {
        self.change_balance(account, amount, false)?;
        // The supply covers every balance, so it cannot underflow.
        self.total_supply = self.total_supply.saturating_sub(amount);
        Nep141Event::FtBurn(vec![FtBurn {
            owner_id: account.clone(),
            amount: U128(amount),
            memo: memo.map(str::to_owned),
        }])
        .emit();
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
        self.change_balance(from, amount, false)?;
        self.change_balance(to, amount, true)?;
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
        let before = env::storage_usage();
        let probe: AccountId = "a".repeat(64).parse().unwrap_or_else(|_| env::abort());
        self.holders.insert(probe.clone(), Holder::largest());
        self.holders.flush();
        let bytes = env::storage_usage().saturating_sub(before);
        self.holders.remove(&probe);
        self.holders.flush();
        bytes
    }
}
