//! Money leaving the contract. Every batch of payouts runs in parallel and ends in one
//! callback; a payout that failed comes back as a credit its owner (or anyone) can withdraw.
//! A token royalty to a model token goes by `ft_transfer_call`; the part it did not use comes
//! back to the marketplace and becomes the model token's credit.

use near_sdk::json_types::U128;
use near_sdk::{AccountId, NearToken, Promise, env, ext_contract, near};

use enclave_cloud_common::events::{MarketplaceEvent, Nep297};
use enclave_cloud_common::interfaces::ext_model_token;
use enclave_cloud_common::{Asset, OrPanic};

use crate::FundsApi;
#[allow(unused_imports)] // named by the code #[near] generates
use crate::MarketplaceExt;
use crate::errors::{MarketplaceError, Result};
use crate::funds::{dec, inc};
use crate::state::{CreditKey, Payout, PayoutKind};
use crate::storage::{StorageMeter, bytes_cost};
use crate::storage_keys::StorageKey;
use near_sdk::collections::LookupMap;

use crate::{
    GAS_DEPOSIT_REVENUE, GAS_FT_TRANSFER, GAS_FT_TRANSFER_CALL, GAS_ON_PAYOUTS, Marketplace,
};

/// What each self-paid NEAR credit entry locked for its storage (`Marketplace::add_credit`).
/// A collection of its own (not in the root state): entries from before it existed locked
/// nothing and release nothing.
fn credit_locks() -> LookupMap<CreditKey, U128> {
    LookupMap::new(StorageKey::CreditLocks)
}

/// Longest payout result read: a JSON U128 string (at most 41 bytes) fits.
const MAX_RESULT_LEN: usize = 64;

/// The part of NEP-141 the marketplace calls.
/// Only the generated `ext_ft` client is used.
#[allow(dead_code)]
#[ext_contract(ext_ft)]
pub trait FungibleTokenCore {
    fn ft_transfer(&mut self, receiver_id: AccountId, amount: U128, memo: Option<String>);
    /// Returns the amount the receiver used (JSON U128); the rest is refunded to the sender.
    fn ft_transfer_call(
        &mut self,
        receiver_id: AccountId,
        amount: U128,
        memo: Option<String>,
        msg: String,
    ) -> U128;
}

/// Adds `payout` to `payouts`, merging with an existing one to the same place (one transfer
/// instead of two saves gas) and dropping zero amounts.
pub fn push_payout(payouts: &mut Vec<Payout>, payout: Payout) {
    if payout.amount.0 == 0 {
        return;
    }
    if let Some(same) = payouts
        .iter_mut()
        .find(|p| p.account == payout.account && p.asset == payout.asset && p.kind == payout.kind)
    {
        same.amount = U128(same.amount.0.saturating_add(payout.amount.0));
    } else {
        payouts.push(payout);
    }
}

fn payout_promise(payout: &Payout) -> Promise {
    match (&payout.asset, payout.kind) {
        (Asset::Near, PayoutKind::Transfer) => Promise::new(payout.account.clone())
            .transfer(NearToken::from_yoctonear(payout.amount.0)),
        (Asset::Near, PayoutKind::Revenue) => ext_model_token::ext(payout.account.clone())
            .with_attached_deposit(NearToken::from_yoctonear(payout.amount.0))
            .with_static_gas(GAS_DEPOSIT_REVENUE)
            .deposit_revenue(),
        // The model token counts token revenue only through `ft_on_transfer`.
        (Asset::Ft { token }, PayoutKind::Revenue) => ext_ft::ext(token.clone())
            .with_attached_deposit(NearToken::from_yoctonear(1))
            .with_static_gas(GAS_FT_TRANSFER_CALL)
            .ft_transfer_call(
                payout.account.clone(),
                payout.amount,
                Some("ecloud marketplace royalty".into()),
                String::new(),
            ),
        (Asset::Ft { token }, PayoutKind::Transfer) => ext_ft::ext(token.clone())
            .with_attached_deposit(NearToken::from_yoctonear(1))
            .with_static_gas(GAS_FT_TRANSFER)
            .ft_transfer(
                payout.account.clone(),
                payout.amount,
                Some("ecloud marketplace".into()),
            ),
    }
}

/// How much of `payout` came back to the contract, given its promise result.
///
/// A failed call moved nothing: all of it. A successful `ft_transfer_call` returns the amount
/// the receiver used (a JSON U128 string, never more than was sent) and the token refunded the
/// rest. Any other success, and an `ft_transfer_call` result that is too long or not a U128
/// (not NEP-141), counts as delivered: crediting tokens that may have left would promise
/// more than the contract holds.
fn returned_amount(payout: &Payout, result: Result<Vec<u8>, near_sdk::PromiseError>) -> u128 {
    let sent = payout.amount.0;
    let bytes = match result {
        Err(near_sdk::PromiseError::Failed) => return sent,
        // `TooLong`: the call succeeded with an answer no NEP-141 token gives.
        Err(_) => return 0,
        Ok(bytes) => bytes,
    };
    if !(matches!(payout.asset, Asset::Ft { .. }) && payout.kind == PayoutKind::Revenue) {
        return 0;
    }
    match near_sdk::serde_json::from_slice::<U128>(&bytes) {
        Ok(used) => sent.saturating_sub(used.0),
        Err(_) => {
            env::log_str(&format!(
                "ft_transfer_call of {sent} to {} returned no U128 used amount; counted as used",
                payout.account
            ));
            0
        }
    }
}

/// An escrow being settled, and who its parts go to.
pub struct EscrowRelease<'a> {
    pub asset: &'a Asset,
    pub amount: u128,
    pub model_id: &'a enclave_cloud_common::ModelId,
    pub provider: &'a AccountId,
    /// Who paid, and gets the unspent part back.
    pub payer: &'a AccountId,
}

#[near]
impl Marketplace {
    /// Sends `payouts` (after the state already reflects them) and returns the promise chain,
    /// or `None` if there is nothing to send. Sending more than the ledger holds is an
    /// accounting bug: refused (`Overflow`), never clamped.
    pub(crate) fn pay(&mut self, payouts: Vec<Payout>) -> Result<Option<Promise>> {
        let payouts: Vec<Payout> = payouts.into_iter().filter(|p| p.amount.0 > 0).collect();
        for payout in &payouts {
            // The money leaves now; if it comes back, `on_payouts` books it as a credit.
            dec(&mut self.ledger_mut(&payout.asset).held, payout.amount.0)?;
        }
        let promises = payouts.iter().map(payout_promise);
        let Some(joint) = promises.reduce(|a, b| a.and(b)) else {
            return Ok(None);
        };
        Ok(Some(
            joint.then(
                Self::ext(env::current_account_id())
                    .with_static_gas(GAS_ON_PAYOUTS)
                    .on_payouts(payouts),
            ),
        ))
    }

    /// Callback of `pay`: one promise result per payout, in order. What did not reach its
    /// owner is back in the contract and becomes a credit.
    /// Callback of every payout batch: failed payouts, and the part of a token royalty a
    /// model token did not use, become credits. Private.
    #[private]
    pub fn on_payouts(&mut self, payouts: Vec<Payout>) {
        let count = env::promise_results_count();
        for (index, payout) in (0u64..).zip(payouts) {
            let result = if index < count {
                env::promise_result_checked(index, MAX_RESULT_LEN)
            } else {
                Err(near_sdk::PromiseError::Failed)
            };
            let returned = returned_amount(&payout, result);
            if returned == 0 {
                continue;
            }
            // A callback must not fail (the money is back either way); should the books
            // overflow, the amount stays unbooked and `funds` reports the difference.
            let booked = inc(&mut self.ledger_mut(&payout.asset).held, returned)
                .and_then(|()| self.add_credit(payout.account.clone(), payout.asset, returned));
            if let Err(e) = booked {
                env::log_str(&format!(
                    "ledger error: {returned} returned for {} not booked: {e}",
                    payout.account
                ));
            }
        }
    }

    /// Books `amount` as owed to `account` (the funds are already counted in `held`). A new
    /// NEAR credit pays for its own entry out of `amount`: that part is locked (in the storage
    /// bucket, recorded in `credit_locks`) while the entry exists and goes back to the owner
    /// with the withdrawal. A token credit, or a NEAR amount too small to pay for its entry,
    /// is stored at the marketplace's cost: one entry per account and asset, which only a
    /// failed transfer to an account that cannot receive creates.
    pub(crate) fn add_credit(
        &mut self,
        account: AccountId,
        asset: Asset,
        amount: u128,
    ) -> Result<()> {
        let key = CreditKey {
            account: account.clone(),
            asset: asset.clone(),
        };
        let existing = self.credits.get(&key);
        let meter = StorageMeter::start();
        let mut total = existing.unwrap_or(U128(0));
        inc(&mut total, amount)?;
        self.credits.insert(&key, &total);
        let mut lock = 0;
        if existing.is_none() && asset == Asset::Near {
            let mut locks = credit_locks();
            // The lock's own record is part of what the entry costs.
            locks.insert(&key, &U128(0));
            let cost = bytes_cost(u64::try_from(meter.delta()).unwrap_or(0));
            if cost < amount {
                lock = cost;
                locks.insert(&key, &U128(cost));
                self.credits.insert(&key, &U128(amount - cost));
                inc(&mut self.locked_storage, cost)?;
                inc(&mut self.ledger_mut(&Asset::Near).storage, cost)?;
            } else {
                locks.remove(&key);
            }
        }
        let credited = amount - lock;
        inc(&mut self.ledger_mut(&asset).credits, credited)?;
        MarketplaceEvent::CreditAdded {
            account,
            asset,
            amount: U128(credited),
        }
        .emit();
        Ok(())
    }

    pub(crate) fn try_withdraw(
        &mut self,
        asset: Asset,
        account_id: Option<AccountId>,
    ) -> Result<U128> {
        let account = account_id.unwrap_or_else(env::predecessor_account_id);
        let key = CreditKey {
            account: account.clone(),
            asset: asset.clone(),
        };
        let amount = self.credits.remove(&key).map_or(0, |c| c.0);
        if amount == 0 {
            return Err(MarketplaceError::NothingToWithdraw { account, asset });
        }
        dec(&mut self.ledger_mut(&asset).credits, amount)?;
        // The storage the entry paid for comes back with it.
        let lock = credit_locks().remove(&key).map_or(0, |l| l.0);
        dec(&mut self.locked_storage, lock)?;
        dec(&mut self.ledger_mut(&Asset::Near).storage, lock)?;
        MarketplaceEvent::CreditWithdrawn {
            account: account.clone(),
            asset: asset.clone(),
            amount: U128(amount),
        }
        .emit();
        let kind = self.payout_kind_for(&account);
        self.pay(vec![Payout {
            account,
            asset,
            amount: U128(amount + lock),
            kind,
        }])?;
        Ok(U128(amount))
    }

    pub(crate) fn try_withdraw_fees(&mut self, asset: Asset) -> Result<U128> {
        let ledger = self.ledger_mut(&asset);
        let amount = ledger.fees.0;
        if amount == 0 {
            return Err(MarketplaceError::NothingToWithdraw {
                account: self.config.treasury.clone(),
                asset,
            });
        }
        ledger.fees = U128(0);
        let treasury = self.config.treasury.clone();
        self.pay(vec![Payout {
            account: treasury,
            asset,
            amount: U128(amount),
            kind: PayoutKind::Transfer,
        }])?;
        Ok(U128(amount))
    }

    /// Money for a model token contract (a sub-account of the model factory) goes in as
    /// revenue (`deposit_revenue` for NEAR, `ft_transfer_call` for a token) so its holders
    /// accrue it; everything else is a plain transfer.
    pub(crate) fn payout_kind_for(&self, account: &AccountId) -> PayoutKind {
        let is_model_token = self
            .config
            .model_factory
            .as_ref()
            .is_some_and(|factory| account.is_sub_account_of(factory));
        if is_model_token {
            PayoutKind::Revenue
        } else {
            PayoutKind::Transfer
        }
    }

    /// Where `model_id`'s royalty goes: the account governance named or `confirm_model`
    /// recorded (a model token gets it as revenue), else nowhere (`None`: the royalty joins
    /// the protocol fees). A model id nobody created, or that the factory did not confirm,
    /// earns nothing for whoever creates it later.
    pub(crate) fn royalty_destination(
        &self,
        model_id: &enclave_cloud_common::ModelId,
    ) -> Option<(AccountId, PayoutKind)> {
        let account = self.royalty_accounts.get(model_id)?;
        let kind = self.payout_kind_for(&account);
        Some((account, kind))
    }

    /// Books a settlement split: the escrow is released, the fee kept, the royalty, provider
    /// share and refund queued as payouts.
    pub(crate) fn book_split(
        &mut self,
        escrow: EscrowRelease<'_>,
        split: &enclave_cloud_common::events::marketplace::Settlement,
        payouts: &mut Vec<Payout>,
    ) -> Result<()> {
        let EscrowRelease {
            asset,
            amount: escrow,
            model_id,
            provider,
            payer: refund_to,
        } = escrow;
        let ledger = self.ledger_mut(asset);
        dec(&mut ledger.escrow, escrow)?;
        inc(&mut ledger.fees, split.protocol_fee.0)?;
        match self.royalty_destination(model_id) {
            Some((account, kind)) => {
                push_payout(
                    payouts,
                    Payout {
                        account,
                        asset: asset.clone(),
                        amount: split.royalty,
                        kind,
                    },
                );
            }
            None => inc(&mut self.ledger_mut(asset).fees, split.royalty.0)?,
        }
        push_payout(
            payouts,
            Payout {
                account: provider.clone(),
                asset: asset.clone(),
                amount: split.provider,
                kind: PayoutKind::Transfer,
            },
        );
        push_payout(
            payouts,
            Payout {
                account: refund_to.clone(),
                asset: asset.clone(),
                amount: split.refund,
                kind: PayoutKind::Transfer,
            },
        );
        Ok(())
    }
}

#[near]
impl FundsApi for Marketplace {
    fn withdraw(&mut self, asset: Asset, account_id: Option<AccountId>) -> U128 {
        self.try_withdraw(asset, account_id).or_panic()
    }

    fn withdraw_fees(&mut self, asset: Asset) -> U128 {
        self.try_withdraw_fees(asset).or_panic()
    }
}
