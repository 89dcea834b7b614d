//! Revenue accounting: one reward-per-token accumulator per revenue asset and one correction
//! per holder and asset, so a deposit, a mint, a burn, a transfer or a claim costs O(1) whatever
//! the number of holders.
//!
//! A holder's entitlement (magnified, see [`crate::fixed`]) is
//! `balance * reward_per_token + correction`. A deposit raises `reward_per_token`; every balance
//! change moves the correction by `-delta * reward_per_token`, so what was earned before the
//! change stays earned; a claim of `p` lowers the correction by `p << 128`.
//!
//! Conservation, exact in magnified units and checked by the property test:
//! `deposited << 128 == (claimed << 128) + sum(entitlements) + pending`.
//! `pending` holds what no holder received yet: the rounding remainder of each deposit (less
//! than one base unit) and forfeited entitlements; it is added to the next deposit. The
//! `supply` a pool shares over is the contract's earning supply; when it is zero the contract
//! hands what waits to the owner (`ModelToken::assign_unearned`). In base units each holder can claim its entitlement rounded
//! down, so payouts never exceed deposits; the difference ("dust") is below one base unit per
//! holder plus one, and stays in the contract until later deposits lift it into whole units.

use enclave_cloud_common::Asset;
use near_sdk::near;

use crate::errors::ModelTokenError;
use crate::fixed::{Mag, U256};

/// The accumulator of one revenue asset.
#[near(serializers = [borsh])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevenuePool {
    pub asset: Asset,
    /// Magnified revenue per token base unit, modulo 2^256.
    pub reward_per_token: Mag,
    /// Magnified revenue not yet assigned to holders (see the module doc).
    pub pending: Mag,
    /// Everything ever deposited, base units.
    pub deposited: u128,
    /// Everything paid out (or in flight) to holders, base units.
    pub claimed: u128,
}

impl RevenuePool {
    pub fn new(asset: Asset) -> Self {
        Self {
            asset,
            reward_per_token: Mag::ZERO,
            pending: Mag::ZERO,
            deposited: 0,
            claimed: 0,
        }
    }

    /// Shares `amount` among the `supply` tokens pro rata. With no supply the amount waits in
    /// `pending` for the first holders.
    pub fn deposit(&mut self, amount: u128, supply: u128) -> Result<(), ModelTokenError> {
        let overflow = || ModelTokenError::RevenueOverflow {
            asset: self.asset.clone(),
        };
        let deposited = self.deposited.checked_add(amount).ok_or_else(overflow)?;
        // Cannot overflow while deposited fits u128: pending + amount << 128 <= deposited << 128.
        let total = Mag::from_amount(amount)
            .0
            .checked_add(self.pending.0)
            .ok_or_else(overflow)?;
        self.deposited = deposited;
        if supply == 0 {
            self.pending = Mag(total);
            return Ok(());
        }
        let (per_token, remainder) = total.div_mod(U256::from(supply));
        self.reward_per_token = self.reward_per_token.wrapping_add(Mag(per_token));
        self.pending = Mag(remainder);
        Ok(())
    }

    /// Magnified entitlement of a holder: exact, non-negative.
    pub fn entitlement(&self, balance: u128, correction: Mag) -> Mag {
        self.reward_per_token
            .wrapping_mul_amount(balance)
            .wrapping_add(correction)
    }

    /// What a holder can claim now, base units (the contract reads entitlements through
    /// `ModelToken::entitlement_of`, which knows the holder's earning balance).
    #[cfg(test)]
    pub fn claimable(&self, balance: u128, correction: Mag) -> u128 {
        self.entitlement(balance, correction).whole()
    }

    /// Whole base units waiting in `pending` for holders.
    pub fn undistributed(&self) -> u128 {
        self.pending.whole()
    }

    /// Correction after `amount` tokens arrive on a holder (mint or incoming transfer).
    pub fn on_credit(&self, correction: Mag, amount: u128) -> Mag {
        correction.wrapping_sub(self.reward_per_token.wrapping_mul_amount(amount))
    }

    /// Correction after `amount` tokens leave a holder (burn or outgoing transfer).
    pub fn on_debit(&self, correction: Mag, amount: u128) -> Mag {
        correction.wrapping_add(self.reward_per_token.wrapping_mul_amount(amount))
    }

    /// Records a payout of `amount` (at most the holder's claimable); returns the correction.
    pub fn on_claim(&mut self, correction: Mag, amount: u128) -> Result<Mag, ModelTokenError> {
        self.claimed =
            self.claimed
                .checked_add(amount)
                .ok_or(ModelTokenError::RevenueOverflow {
                    asset: self.asset.clone(),
                })?;
        Ok(correction.wrapping_sub(Mag::from_amount(amount)))
    }

    /// Undoes [`Self::on_claim`] after the payout failed: the amount is claimable again.
    pub fn on_claim_failed(&mut self, correction: Mag, amount: u128) -> Mag {
        self.claimed = self.claimed.saturating_sub(amount);
        correction.wrapping_add(Mag::from_amount(amount))
    }

    /// A payout failed and its holder is gone: the amount goes back to the pool.
    pub fn return_to_pool(&mut self, amount: u128) {
        self.claimed = self.claimed.saturating_sub(amount);
        self.pending = self.pending.wrapping_add(Mag::from_amount(amount));
    }

    /// Takes everything waiting in `pending` (to assign it elsewhere).
    pub fn take_pending(&mut self) -> Mag {
        std::mem::replace(&mut self.pending, Mag::ZERO)
    }

    /// A holder leaves with an unclaimed entitlement: it goes to the next deposit's holders.
    pub fn forfeit(&mut self, entitlement: Mag) {
        self.pending = self.pending.wrapping_add(entitlement);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> RevenuePool {
        RevenuePool::new(Asset::Near)
    }

    #[test]
    fn pro_rata_with_rounding_down() {
        let mut p = pool();
        // a: 1, b: 2 of 3 tokens; 10 yocto -> 3.33 / 6.66.
        let (ca, cb) = (p.on_credit(Mag::ZERO, 1), p.on_credit(Mag::ZERO, 2));
        p.deposit(10, 3).unwrap();
        assert_eq!(p.claimable(1, ca), 3);
        assert_eq!(p.claimable(2, cb), 6);
        // The fractional parts and the remainder make the last yocto of dust.
        assert_eq!(p.deposited, 10);
    }

    #[test]
    fn deposits_without_supply_wait_for_holders() {
        let mut p = pool();
        p.deposit(100, 0).unwrap();
        assert_eq!(p.undistributed(), 100);
        let c = p.on_credit(Mag::ZERO, 5);
        p.deposit(1, 5).unwrap();
        // 101 / 5 per token leaves a remainder below one unit: the lone holder gets 100, the
        // last yocto is dust that later deposits lift.
        assert_eq!(p.claimable(5, c), 100);
        assert_eq!(p.undistributed(), 0);
        p.deposit(4, 5).unwrap();
        assert_eq!(p.claimable(5, c), 105);
    }

    #[test]
    fn transfer_keeps_what_was_earned() {
        let mut p = pool();
        let ca = p.on_credit(Mag::ZERO, 10);
        p.deposit(1_000, 10).unwrap();
        // a sends everything to b: a keeps 1000, b earns only later deposits.
        let ca = p.on_debit(ca, 10);
        let cb = p.on_credit(Mag::ZERO, 10);
        p.deposit(500, 10).unwrap();
        assert_eq!(p.claimable(0, ca), 1_000);
        assert_eq!(p.claimable(10, cb), 500);
    }

    #[test]
    fn claim_and_failed_claim() {
        let mut p = pool();
        let c = p.on_credit(Mag::ZERO, 1);
        p.deposit(42, 1).unwrap();
        let after = p.on_claim(c, 42).unwrap();
        assert_eq!((p.claimable(1, after), p.claimed), (0, 42));
        let restored = p.on_claim_failed(after, 42);
        assert_eq!((p.claimable(1, restored), p.claimed), (42, 0));
    }

    #[test]
    fn forfeited_and_returned_amounts_go_to_the_next_holders() {
        let mut p = pool();
        let c = p.on_credit(Mag::ZERO, 1);
        p.deposit(7, 1).unwrap();
        p.forfeit(p.entitlement(1, c));
        p.return_to_pool(0);
        assert_eq!(p.undistributed(), 7);
        let c2 = p.on_credit(Mag::ZERO, 3);
        p.deposit(2, 3).unwrap();
        assert_eq!(p.claimable(3, c2), 9);
    }

    #[test]
    fn deposit_overflow_is_refused() {
        let mut p = pool();
        p.deposit(u128::MAX, 1).unwrap();
        let err = p.deposit(1, 1).unwrap_err();
        assert!(
            matches!(err, ModelTokenError::RevenueOverflow { .. }),
            "{err}"
        );
    }
}
