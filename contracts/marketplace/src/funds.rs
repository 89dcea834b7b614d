//! The ledger of what the marketplace owes, and the view that recomputes it from the records.

use std::collections::BTreeMap;

use near_sdk::env;
use near_sdk::json_types::U128;

use enclave_cloud_common::Asset;

use crate::Marketplace;
use crate::errors::{MarketplaceError, Result};
use crate::state::{AssetFunds, FundsReport, Ledger};

/// `*v += amount`, refusing to wrap.
pub fn inc(v: &mut U128, amount: u128) -> Result<()> {
    v.0 =
        v.0.checked_add(amount)
            .ok_or(MarketplaceError::Overflow("ledger"))?;
    Ok(())
}

/// `*v -= amount`, refusing to go below zero (that would be an accounting bug).
pub fn dec(v: &mut U128, amount: u128) -> Result<()> {
    v.0 =
        v.0.checked_sub(amount)
            .ok_or(MarketplaceError::Overflow("ledger underflow"))?;
    Ok(())
}

fn entry<'a>(assets: &'a mut BTreeMap<Asset, AssetFunds>, asset: &Asset) -> &'a mut AssetFunds {
    assets.entry(asset.clone()).or_insert_with(|| AssetFunds {
        asset: asset.clone(),
        ledger: Ledger::default(),
        escrow_recomputed: U128(0),
        credits_recomputed: U128(0),
        storage_recomputed: U128(0),
        balanced: false,
    })
}

impl Marketplace {
    pub(crate) fn ledger_mut(&mut self, asset: &Asset) -> &mut Ledger {
        self.ledgers.entry(asset.clone()).or_default()
    }

    pub(crate) fn funds_report(&self) -> FundsReport {
        let mut assets: BTreeMap<Asset, AssetFunds> = BTreeMap::new();
        for (asset, ledger) in self.ledgers.iter() {
            entry(&mut assets, asset).ledger = *ledger;
        }
        // Sums saturate: a view must answer even if the books are broken.
        let add = |v: &mut U128, x: u128| v.0 = v.0.saturating_add(x);
        for job_id in self.open_jobs.iter().chain(self.claimed_jobs.iter()) {
            if let Some(job) = self.jobs.get(&job_id) {
                add(
                    &mut entry(&mut assets, &job.asset).escrow_recomputed,
                    job.price_cap.0,
                );
                let near = entry(&mut assets, &Asset::Near);
                add(
                    &mut near.storage_recomputed,
                    job.storage_deposit.as_yoctonear(),
                );
            }
        }
        for request in self.requests.values() {
            let near = entry(&mut assets, &Asset::Near);
            add(&mut near.escrow_recomputed, request.price_cap.0);
            add(
                &mut near.storage_recomputed,
                request.storage_deposit.as_yoctonear(),
            );
        }
        for channel in crate::channels::live_channels() {
            add(
                &mut entry(&mut assets, &channel.asset).escrow_recomputed,
                channel.unsettled(),
            );
            add(
                &mut entry(&mut assets, &Asset::Near).storage_recomputed,
                channel.storage_deposit.as_yoctonear(),
            );
        }
        for (key, amount) in self.credits.iter() {
            add(
                &mut entry(&mut assets, &key.asset).credits_recomputed,
                amount.0,
            );
        }
        let balances: u128 = self
            .storage_balances
            .values()
            .fold(0u128, |acc, b| acc.saturating_add(b.0));
        let near = entry(&mut assets, &Asset::Near);
        add(
            &mut near.storage_recomputed,
            balances.saturating_add(self.locked_storage.0),
        );

        let mut all_balanced = true;
        for funds in assets.values_mut() {
            let l = &funds.ledger;
            let owed = l
                .escrow
                .0
                .checked_add(l.credits.0)
                .and_then(|v| v.checked_add(l.fees.0))
                .and_then(|v| v.checked_add(l.storage.0));
            funds.balanced = owed == Some(l.held.0)
                && l.escrow == funds.escrow_recomputed
                && l.credits == funds.credits_recomputed
                && l.storage == funds.storage_recomputed;
            all_balanced &= funds.balanced;
        }
        let near_balance = env::account_balance().as_yoctonear();
        let near_held = self.ledgers.get(&Asset::Near).map_or(0, |l| l.held.0);
        let near_surplus = near_balance.checked_sub(near_held);
        FundsReport {
            assets: assets.into_values().collect(),
            near_balance: U128(near_balance),
            near_surplus: U128(near_surplus.unwrap_or(0)),
            balanced: all_balanced && near_surplus.is_some(),
        }
    }
}
