//! Money leaving the contract. Every batch of payouts runs in parallel and ends in one
//! callback; a payout that failed comes back as a credit its owner (or anyone) can withdraw.

use near_sdk::json_types::U128;
use near_sdk::{AccountId, NearToken, Promise, env, ext_contract};

use enclave_cloud_common::Asset;
use enclave_cloud_common::events::{MarketplaceEvent, Nep297};
use enclave_cloud_common::interfaces::ext_model_token;

use crate::errors::{MarketplaceError, Result};
use crate::funds::{dec, inc};
use crate::state::{CreditKey, Payout, PayoutKind};
use crate::{GAS_DEPOSIT_REVENUE, GAS_FT_TRANSFER, GAS_ON_PAYOUTS, Marketplace};

/// The part of NEP-141 the marketplace calls.
/// Only the generated `ext_ft` client is used.
#[allow(dead_code)]
#[ext_contract(ext_ft)]
pub trait FungibleTokenCore {
    fn ft_transfer(&mut self, receiver_id: AccountId, amount: U128, memo: Option<String>);
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
        (Asset::Ft { token }, _) => ext_ft::ext(token.clone())
            .with_attached_deposit(NearToken::from_yoctonear(1))
            .with_static_gas(GAS_FT_TRANSFER)
            .ft_transfer(
                payout.account.clone(),
                payout.amount,
                Some("ecloud marketplace".into()),
            ),
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

impl Marketplace {
    /// Sends `payouts` (after the state already reflects them) and returns the promise chain,
    /// or `None` if there is nothing to send.
    pub(crate) fn pay(&mut self, payouts: Vec<Payout>) -> Option<Promise> {
        let payouts: Vec<Payout> = payouts.into_iter().filter(|p| p.amount.0 > 0).collect();
        let mut promises = Vec::with_capacity(payouts.len());
        for payout in &payouts {
            // The money leaves now; if it comes back, `resolve_payouts` books it as a credit.
            let ledger = self.ledger_mut(&payout.asset);
            ledger.held = U128(ledger.held.0.saturating_sub(payout.amount.0));
            promises.push(payout_promise(payout));
        }
        let joint = promises.into_iter().reduce(|a, b| a.and(b))?;
        Some(
            joint.then(
                Self::ext(env::current_account_id())
                    .with_static_gas(GAS_ON_PAYOUTS)
                    .on_payouts(payouts),
            ),
        )
    }

    /// Callback of `pay`: one promise result per payout, in order.
    pub(crate) fn resolve_payouts(&mut self, payouts: Vec<Payout>) {
        let count = env::promise_results_count();
        for (index, payout) in (0u64..).zip(payouts) {
            // A result longer than 64 bytes still means the call succeeded.
            let failed = index >= count
                || matches!(
                    env::promise_result_checked(index, 64),
                    Err(near_sdk::PromiseError::Failed)
                );
            if failed {
                let ledger = self.ledger_mut(&payout.asset);
                ledger.held = U128(ledger.held.0.saturating_add(payout.amount.0));
                self.add_credit(payout.account, payout.asset, payout.amount.0);
            }
        }
    }

    /// Books `amount` as owed to `account` (the funds are already counted in `held`).
    pub(crate) fn add_credit(&mut self, account: AccountId, asset: Asset, amount: u128) {
        let key = CreditKey {
            account: account.clone(),
            asset: asset.clone(),
        };
        let total = self
            .credits
            .get(&key)
            .map_or(0, |c| c.0)
            .saturating_add(amount);
        self.credits.insert(&key, &U128(total));
        let ledger = self.ledger_mut(&asset);
        ledger.credits = U128(ledger.credits.0.saturating_add(amount));
        MarketplaceEvent::CreditAdded {
            account,
            asset,
            amount: U128(amount),
        }
        .emit();
    }

    pub(crate) fn withdraw_credit(
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
        MarketplaceEvent::CreditWithdrawn {
            account: account.clone(),
            asset: asset.clone(),
            amount: U128(amount),
        }
        .emit();
        let kind = self.payout_kind_for(&account, &asset);
        self.pay(vec![Payout {
            account,
            asset,
            amount: U128(amount),
            kind,
        }]);
        Ok(U128(amount))
    }

    pub(crate) fn withdraw_fees_internal(&mut self, asset: Asset) -> Result<U128> {
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
        }]);
        Ok(U128(amount))
    }

    /// NEAR for a model token contract (a sub-account of the model factory) goes through
    /// `deposit_revenue` so its holders accrue it; everything else is a plain transfer.
    pub(crate) fn payout_kind_for(&self, account: &AccountId, asset: &Asset) -> PayoutKind {
        let is_model_token = self
            .config
            .model_factory
            .as_ref()
            .is_some_and(|factory| account.is_sub_account_of(factory));
        if *asset == Asset::Near && is_model_token {
            PayoutKind::Revenue
        } else {
            PayoutKind::Transfer
        }
    }

    /// Where `model_id`'s royalty goes: a configured account, else its token contract under
    /// the model factory, else nowhere (`None`: the royalty joins the protocol fees).
    pub(crate) fn royalty_destination(
        &self,
        model_id: &enclave_cloud_common::ModelId,
    ) -> Option<(AccountId, PayoutKind)> {
        if let Some(account) = self.royalty_accounts.get(model_id) {
            return Some((account, PayoutKind::Transfer));
        }
        let factory = self.config.model_factory.as_ref()?;
        let account: AccountId = format!("{model_id}.{factory}").parse().ok()?;
        Some((account, PayoutKind::Revenue))
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
                let kind = if *asset == Asset::Near {
                    kind
                } else {
                    PayoutKind::Transfer
                };
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
