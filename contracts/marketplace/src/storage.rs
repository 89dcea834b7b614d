//! Storage accounting: who pays for the bytes the contract stores, and storage balances
//! (NEP-145 style) for token-paid jobs and node cache entries.

use near_sdk::json_types::U128;
use near_sdk::{AccountId, env, near};

use enclave_cloud_common::{Asset, OrPanic};

#[allow(unused_imports)] // named by the code #[near] generates
use crate::MarketplaceExt;
use crate::{Marketplace, StorageBalanceApi};

use crate::errors::{MarketplaceError, Result};
use crate::funds::{dec, inc};
use crate::state::{Payout, PayoutKind};

/// Bytes a job reserves at submission for what it may add later: its claim, the node index
/// entry, and the receipt (plus settled index entry) that stays after settlement.
pub const JOB_RESERVE_BYTES: u64 = 1_280;
/// Upper bound of a job's own records besides the inline input (record, indexes).
pub const JOB_BASE_BYTES_ESTIMATE: u64 = 1_024;
/// Room an agent request reserves for its answer besides the output ciphertext.
pub const ANSWER_RESERVE_BYTES: u64 = 512;
/// Upper bound of a request record besides the inline input.
pub const REQUEST_BASE_BYTES_ESTIMATE: u64 = 640;
/// Fixed per-record overhead NEAR charges for each stored key-value pair.
pub const RECORD_OVERHEAD_BYTES: u64 = 40;

/// What `bytes` of storage cost.
pub fn bytes_cost(bytes: u64) -> u128 {
    u128::from(bytes).saturating_mul(env::storage_byte_cost().as_yoctonear())
}

/// An upper bound of the storage deposit of a job with `input_bytes` of inline input.
pub fn job_storage_estimate(input_bytes: u32) -> u128 {
    bytes_cost(JOB_BASE_BYTES_ESTIMATE + u64::from(input_bytes) + JOB_RESERVE_BYTES)
}

/// Measures how much storage a piece of work adds (or frees).
pub struct StorageMeter(u64);

impl StorageMeter {
    pub fn start() -> Self {
        Self(env::storage_usage())
    }

    /// Bytes added since `start` (negative when freed).
    pub fn delta(&self) -> i64 {
        let now = env::storage_usage();
        if now >= self.0 {
            i64::try_from(now - self.0).unwrap_or(i64::MAX)
        } else {
            -i64::try_from(self.0 - now).unwrap_or(i64::MAX)
        }
    }
}

/// `base + delta` for byte counts, refusing to go negative.
pub fn apply_delta(base: u64, delta: i64) -> Result<u64> {
    base.checked_add_signed(delta)
        .ok_or(MarketplaceError::Overflow("storage bytes"))
}

impl Marketplace {
    pub(crate) fn request_storage_estimate(&self, input_bytes: u32) -> u128 {
        bytes_cost(
            REQUEST_BASE_BYTES_ESTIMATE
                + u64::from(input_bytes)
                + ANSWER_RESERVE_BYTES
                + u64::from(self.config.max_inline_bytes),
        )
    }

    pub(crate) fn try_storage_deposit(&mut self, account_id: Option<AccountId>) -> Result<U128> {
        let account = account_id.unwrap_or_else(env::predecessor_account_id);
        let attached = env::attached_deposit().as_yoctonear();
        if attached == 0 {
            return Err(crate::errors::invalid(
                "deposit",
                "attach NEAR to deposit for storage",
            ));
        }
        inc(&mut self.ledger_mut(&Asset::Near).held, attached)?;
        let meter = StorageMeter::start();
        let previous = self.storage_balances.get(&account).unwrap_or(U128(0)).0;
        let mut balance = previous
            .checked_add(attached)
            .ok_or(MarketplaceError::Overflow("storage balance"))?;
        self.storage_balances.insert(&account, &U128(balance));
        // A new entry pays for itself out of the deposit; that part is locked for good.
        let entry_cost = bytes_cost(u64::try_from(meter.delta().max(0)).unwrap_or(0));
        if entry_cost > 0 {
            balance =
                balance
                    .checked_sub(entry_cost)
                    .ok_or(MarketplaceError::InsufficientDeposit {
                        attached,
                        needed: entry_cost,
                    })?;
            self.storage_balances.insert(&account, &U128(balance));
            inc(&mut self.locked_storage, entry_cost)?;
        }
        inc(&mut self.ledger_mut(&Asset::Near).storage, attached)?;
        Ok(U128(balance))
    }

    pub(crate) fn try_storage_withdraw(&mut self, amount: Option<U128>) -> Result<U128> {
        crate::governance::require_one_yocto()?;
        let account = env::predecessor_account_id();
        let balance = self.storage_balances.get(&account).unwrap_or(U128(0)).0;
        let amount = amount.map_or(balance, |a| a.0);
        if amount == 0 || amount > balance {
            return Err(MarketplaceError::InsufficientStorageBalance {
                account,
                available: balance,
                needed: amount,
            });
        }
        self.storage_balances
            .insert(&account, &U128(balance - amount));
        dec(&mut self.ledger_mut(&Asset::Near).storage, amount)?;
        self.pay(vec![Payout {
            account,
            asset: Asset::Near,
            amount: U128(amount),
            kind: PayoutKind::Transfer,
        }])?;
        Ok(U128(balance - amount))
    }

    /// Moves `amount` from `account`'s storage balance to a purpose (job or node cache).
    pub(crate) fn charge_storage_balance(
        &mut self,
        account: &AccountId,
        amount: u128,
    ) -> Result<()> {
        let balance = self.storage_balances.get(account).unwrap_or(U128(0)).0;
        let rest = balance.checked_sub(amount).ok_or_else(|| {
            MarketplaceError::InsufficientStorageBalance {
                account: account.clone(),
                available: balance,
                needed: amount,
            }
        })?;
        self.storage_balances.insert(account, &U128(rest));
        Ok(())
    }

    /// Gives `amount` back to `account`'s storage balance.
    pub(crate) fn refund_storage_balance(&mut self, account: &AccountId, amount: u128) {
        if amount == 0 {
            return;
        }
        let balance = self.storage_balances.get(account).unwrap_or(U128(0)).0;
        self.storage_balances
            .insert(account, &U128(balance.saturating_add(amount)));
    }

    /// The storage deposit that is refunded to the user (and leaves the NEAR ledger's
    /// storage bucket when it leaves by transfer).
    pub(crate) fn return_storage(
        &mut self,
        user: &AccountId,
        amount: u128,
        source: crate::state::StorageSource,
        payouts: &mut Vec<Payout>,
    ) -> Result<()> {
        match source {
            crate::state::StorageSource::Balance => self.refund_storage_balance(user, amount),
            crate::state::StorageSource::Attached => {
                dec(&mut self.ledger_mut(&Asset::Near).storage, amount)?;
                crate::payouts::push_payout(
                    payouts,
                    Payout {
                        account: user.clone(),
                        asset: Asset::Near,
                        amount: U128(amount),
                        kind: PayoutKind::Transfer,
                    },
                );
            }
        }
        Ok(())
    }
}

#[near]
impl StorageBalanceApi for Marketplace {
    #[payable]
    fn storage_deposit(&mut self, account_id: Option<AccountId>) -> U128 {
        self.try_storage_deposit(account_id).or_panic()
    }

    #[payable]
    fn storage_withdraw(&mut self, amount: Option<U128>) -> U128 {
        self.try_storage_withdraw(amount).or_panic()
    }
}
