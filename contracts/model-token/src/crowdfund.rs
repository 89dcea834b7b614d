//! The crowdfund that pays for a model's training: contributions mint tokens at a fixed price
//! until the deadline; reaching the goal releases the funds to the beneficiary (the training
//! operator), at once or in milestones an approver releases; missing it lets every contributor
//! burn its tokens for its NEAR back.
//!
//! Crowdfund tokens are locked until the crowdfund succeeds: they cannot move (so a
//! contributor always holds what its refund burns) and earn no revenue (the backer's NEAR is
//! not at risk until then, and a refunded or never-refunded backer of a failed model must not
//! be paid by it). Every other token, the founders' supply included, moves and earns in every
//! state. On success the crowdfund tokens start earning at once, in O(1): the pools'
//! accumulators are recorded in [`CrowdfundEarnings`] and each holder's share is derived from
//! them when read (see `crate::ledger`).

use enclave_cloud_common::events::Nep297;
use enclave_cloud_common::events::model::ModelEvent;
use near_sdk::json_types::U128;
use near_sdk::{AccountId, Gas, NearToken, Promise, env, near};

#[allow(unused_imports)] // named by the code #[near] generates
use crate::ModelTokenExt;
use crate::access::{OrPanic, require_one_yocto};
use crate::errors::ModelTokenError;
use crate::fixed::{Mag, mul_div_floor};
use crate::state::MAX_POOLS;
use crate::{CrowdfundApi, ModelToken};

pub use enclave_cloud_common::interfaces::model_token::{
    CrowdfundConfig, CrowdfundStatus, CrowdfundView,
};

const GAS_FOR_RELEASE_CALLBACK: Gas = Gas::from_tgas(5);
const GAS_FOR_REFUND_CALLBACK: Gas = Gas::from_tgas(10);
const BPS: u128 = 10_000;
const MAX_MILESTONES: usize = 16;

#[near(serializers = [borsh])]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crowdfund {
    pub config: CrowdfundConfig,
    pub status: CrowdfundStatus,
    pub raised: u128,
    pub tokens_minted: u128,
    /// Sent (or in flight) to the beneficiary.
    pub released: u128,
    pub next_milestone: u32,
    pub release_in_flight: bool,
    /// Sent (or in flight) back to contributors.
    pub refunded: u128,
}

/// How crowdfund tokens earn; a field of the contract state (appended to it by the audit
/// fixes of issue 15). Fixed size, so no call ever grows it.
#[near(serializers = [borsh])]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrowdfundEarnings {
    /// Crowdfund tokens that earn nothing: minted by a crowdfund that has not succeeded and
    /// not refunded. Zero once it succeeded.
    pub locked_supply: u128,
    /// Each pool's `reward_per_token` when the crowdfund succeeded (zero before, and for
    /// pools added later): crowdfund tokens earn what the accumulator gained since.
    pub reward_per_token_at_success: [Mag; MAX_POOLS],
}

impl Crowdfund {
    fn milestone_count(&self) -> u32 {
        self.config.milestones_bps.len().max(1) as u32
    }

    /// The amount of milestone `i`; the last one takes the remainder, so nothing is left over.
    fn milestone_amount(&self, i: u32) -> u128 {
        let rest = self.raised.saturating_sub(self.released);
        if i + 1 >= self.milestone_count() {
            return rest;
        }
        let bps = u128::from(self.config.milestones_bps[i as usize]);
        mul_div_floor(self.raised, bps, BPS)
            .unwrap_or(rest)
            .min(rest)
    }
}

fn validate(config: &CrowdfundConfig) -> Result<(), ModelTokenError> {
    let invalid = |field, reason: String| ModelTokenError::Invalid { field, reason };
    if config.goal.0 == 0 {
        return Err(invalid("crowdfund.goal", "must be positive".into()));
    }
    if config.token_price.0 == 0 {
        return Err(invalid("crowdfund.token_price", "must be positive".into()));
    }
    let now = env::block_timestamp();
    if config.deadline_ns.0 <= now {
        return Err(invalid(
            "crowdfund.deadline_ns",
            format!("{} is not after now ({now})", config.deadline_ns.0),
        ));
    }
    let ms = &config.milestones_bps;
    if ms.len() > MAX_MILESTONES || ms.contains(&0) {
        return Err(invalid(
            "crowdfund.milestones_bps",
            format!("at most {MAX_MILESTONES} positive entries"),
        ));
    }
    let sum: u32 = ms.iter().map(|&b| u32::from(b)).sum();
    if !ms.is_empty() && sum != BPS as u32 {
        return Err(invalid(
            "crowdfund.milestones_bps",
            format!("sum to {sum}, expected {BPS}"),
        ));
    }
    Ok(())
}

impl ModelToken {
    fn crowdfund_ref(&self) -> Result<&Crowdfund, ModelTokenError> {
        self.crowdfund.as_ref().ok_or(ModelTokenError::NoCrowdfund)
    }

    fn crowdfund_mut(&mut self) -> Result<&mut Crowdfund, ModelTokenError> {
        self.crowdfund.as_mut().ok_or(ModelTokenError::NoCrowdfund)
    }

    pub(crate) fn open_crowdfund(
        &mut self,
        config: CrowdfundConfig,
    ) -> Result<(), ModelTokenError> {
        if self.crowdfund.is_some() {
            return Err(ModelTokenError::CrowdfundExists);
        }
        validate(&config)?;
        ModelEvent::CrowdfundStarted {
            goal: config.goal,
            token_price: config.token_price,
            deadline_ns: config.deadline_ns,
            beneficiary: config.beneficiary.clone(),
        }
        .emit();
        self.crowdfund = Some(Crowdfund {
            config,
            status: CrowdfundStatus::Active,
            raised: 0,
            tokens_minted: 0,
            released: 0,
            next_milestone: 0,
            release_in_flight: false,
            refunded: 0,
        });
        Ok(())
    }

    fn require_active(&self) -> Result<&Crowdfund, ModelTokenError> {
        let cf = self.crowdfund_ref()?;
        if cf.status != CrowdfundStatus::Active {
            return Err(ModelTokenError::CrowdfundNotActive(format!(
                "{:?}",
                cf.status
            )));
        }
        Ok(cf)
    }

    fn try_contribute(&mut self) -> Result<U128, ModelTokenError> {
        let cf = self.require_active()?;
        let now = env::block_timestamp();
        if now >= cf.config.deadline_ns.0 {
            return Err(ModelTokenError::CrowdfundEnded {
                deadline_ns: cf.config.deadline_ns.0,
                now_ns: now,
            });
        }
        let price = cf.config.token_price.0;
        let account = env::predecessor_account_id();
        let attached = env::attached_deposit();
        let paid = self.ensure_registered(&account, attached)?.as_yoctonear();
        let decimals = self.metadata.get().as_ref().map_or(0, |m| m.decimals);
        let unit = 10u128.pow(u32::from(decimals));
        let tokens = mul_div_floor(paid, unit, price).unwrap_or(0);
        if tokens == 0 {
            return Err(ModelTokenError::ContributionTooSmall(attached));
        }
        let contributed = self
            .holder(&account)?
            .contributed
            .checked_add(paid)
            .ok_or(ModelTokenError::SupplyOverflow)?;
        self.mint_locked(&account, tokens, Some("crowdfund"))?;
        self.holder_mut(&account)?.contributed = contributed;
        let cf = self.crowdfund_mut()?;
        cf.raised = cf.raised.saturating_add(paid);
        cf.tokens_minted = cf.tokens_minted.saturating_add(tokens);
        ModelEvent::Contributed {
            account,
            amount: U128(paid),
            tokens: U128(tokens),
        }
        .emit();
        Ok(U128(tokens))
    }

    fn try_finalize(&mut self) -> Result<CrowdfundStatus, ModelTokenError> {
        let cf = self.require_active()?;
        let now = env::block_timestamp();
        let (raised, goal, deadline) = (cf.raised, cf.config.goal.0, cf.config.deadline_ns.0);
        if raised >= goal {
            // From here on every crowdfund token earns: record where the accumulators stand.
            let at_success = &mut self.crowdfund_earnings.reward_per_token_at_success;
            for (slot, pool) in at_success.iter_mut().zip(&self.pools) {
                *slot = pool.reward_per_token;
            }
            self.crowdfund_earnings.locked_supply = 0;
            self.crowdfund_mut()?.status = CrowdfundStatus::Succeeded;
            ModelEvent::CrowdfundSucceeded {
                raised: U128(raised),
            }
            .emit();
            self.start_release()?.detach();
            Ok(CrowdfundStatus::Succeeded)
        } else if now >= deadline {
            self.crowdfund_mut()?.status = CrowdfundStatus::Failed;
            ModelEvent::CrowdfundFailed {
                raised: U128(raised),
            }
            .emit();
            Ok(CrowdfundStatus::Failed)
        } else {
            Err(ModelTokenError::CrowdfundRunning {
                raised,
                goal,
                deadline_ns: deadline,
                now_ns: now,
            })
        }
    }

    /// Sends the next milestone to the beneficiary; the callback undoes it on failure.
    fn start_release(&mut self) -> Result<Promise, ModelTokenError> {
        let cf = self.crowdfund_mut()?;
        if cf.release_in_flight {
            return Err(ModelTokenError::ReleaseInFlight);
        }
        let milestone = cf.next_milestone;
        if milestone >= cf.milestone_count() {
            return Err(ModelTokenError::NoMilestoneLeft);
        }
        let amount = cf.milestone_amount(milestone);
        cf.next_milestone += 1;
        cf.released = cf.released.saturating_add(amount);
        cf.release_in_flight = true;
        Ok(Promise::new(cf.config.beneficiary.clone())
            .transfer(NearToken::from_yoctonear(amount))
            .then(
                Self::ext(env::current_account_id())
                    .with_static_gas(GAS_FOR_RELEASE_CALLBACK)
                    .with_unused_gas_weight(0)
                    .on_funds_released(milestone, U128(amount)),
            ))
    }

    fn try_release_milestone(&mut self) -> Result<Promise, ModelTokenError> {
        require_one_yocto()?;
        let cf = self.crowdfund_ref()?;
        let approver = cf
            .config
            .approver
            .clone()
            .unwrap_or_else(|| self.owner.clone());
        let caller = env::predecessor_account_id();
        if caller != approver {
            return Err(ModelTokenError::NotApprover { approver, caller });
        }
        if cf.status != CrowdfundStatus::Succeeded {
            return Err(ModelTokenError::CrowdfundNotActive(format!(
                "{:?}",
                cf.status
            )));
        }
        self.start_release()
    }

    fn try_refund(&mut self) -> Result<Promise, ModelTokenError> {
        let cf = self.crowdfund_ref()?;
        if cf.status != CrowdfundStatus::Failed {
            return Err(ModelTokenError::NotRefundable(format!("{:?}", cf.status)));
        }
        let account = env::predecessor_account_id();
        let holder = self.holder(&account)?;
        let (amount, tokens) = (holder.contributed, holder.crowdfund_tokens);
        if amount == 0 {
            return Err(ModelTokenError::NothingToRefund(account));
        }
        // Burned tokens with a contribution left: the refund is in flight.
        if tokens == 0 {
            return Err(ModelTokenError::RefundInFlight(account));
        }
        // The contribution stays on the record until the NEAR arrived: it keeps the record
        // (storage_unregister refuses an open contribution), so a bounced refund finds it.
        let burned = self.burn_locked(&account, Some("crowdfund refund"))?;
        let cf = self.crowdfund_mut()?;
        cf.refunded = cf
            .refunded
            .checked_add(amount)
            .ok_or(ModelTokenError::SupplyOverflow)?;
        Ok(Promise::new(account.clone())
            .transfer(NearToken::from_yoctonear(amount))
            .then(
                Self::ext(env::current_account_id())
                    .with_static_gas(GAS_FOR_REFUND_CALLBACK)
                    .with_unused_gas_weight(0)
                    .on_refund_sent(account, U128(amount), U128(burned)),
            ))
    }

    /// Settles a refund. The holder's record is still there (it cannot unregister while its
    /// contribution is open), so neither outcome grows the state.
    fn settle_refund(
        &mut self,
        account: AccountId,
        amount: u128,
        tokens: u128,
    ) -> Result<bool, ModelTokenError> {
        if near_sdk::is_promise_success() {
            let holder = self.holder_mut(&account)?;
            holder.contributed = holder.contributed.saturating_sub(amount);
            ModelEvent::ContributionRefunded {
                account,
                amount: U128(amount),
                tokens_burned: U128(tokens),
            }
            .emit();
            return Ok(true);
        }
        // The transfer bounced: give the tokens back (locked again) so it can retry.
        self.mint_locked(&account, tokens, Some("crowdfund refund failed"))?;
        let cf = self.crowdfund_mut()?;
        cf.refunded = cf.refunded.saturating_sub(amount);
        env::log_str(&format!(
            "refund of {amount} to {account} failed; it can be retried"
        ));
        Ok(false)
    }

    fn settle_release(&mut self, milestone: u32, amount: u128) -> Result<bool, ModelTokenError> {
        let success = near_sdk::is_promise_success();
        let cf = self.crowdfund_mut()?;
        cf.release_in_flight = false;
        if success {
            ModelEvent::FundsReleased {
                beneficiary: cf.config.beneficiary.clone(),
                amount: U128(amount),
                milestone,
            }
            .emit();
        } else {
            cf.released = cf.released.saturating_sub(amount);
            cf.next_milestone = milestone;
            env::log_str(&format!(
                "release of milestone {milestone} failed; it can be released again"
            ));
        }
        Ok(success)
    }
}

#[near]
impl CrowdfundApi for ModelToken {
    #[payable]
    fn start_crowdfund(&mut self, config: CrowdfundConfig) {
        require_one_yocto()
            .and_then(|()| self.require_owner())
            .and_then(|_| self.open_crowdfund(config))
            .or_panic();
    }

    #[payable]
    fn contribute(&mut self) -> U128 {
        self.try_contribute().or_panic()
    }

    fn finalize_crowdfund(&mut self) -> CrowdfundStatus {
        self.try_finalize().or_panic()
    }

    #[payable]
    fn release_milestone(&mut self) -> Promise {
        self.try_release_milestone().or_panic()
    }

    fn refund_contribution(&mut self) -> Promise {
        self.try_refund().or_panic()
    }

    fn crowdfund(&self) -> Option<CrowdfundView> {
        self.crowdfund.as_ref().map(|c| CrowdfundView {
            config: c.config.clone(),
            status: c.status,
            raised: U128(c.raised),
            tokens_minted: U128(c.tokens_minted),
            released: U128(c.released),
            next_milestone: c.next_milestone,
            milestones: c.milestone_count(),
            refunded: U128(c.refunded),
        })
    }

    fn contribution(&self, account_id: AccountId) -> (U128, U128) {
        self.holders
            .get(&account_id)
            .map_or((U128(0), U128(0)), |h| {
                (U128(h.contributed), U128(h.crowdfund_tokens))
            })
    }
}

#[near]
impl ModelToken {
    /// Callback of a release to the beneficiary (this contract only).
    #[private]
    pub fn on_funds_released(&mut self, milestone: u32, amount: U128) -> bool {
        self.settle_release(milestone, amount.0).or_panic()
    }

    /// Callback of a contributor refund (this contract only).
    #[private]
    pub fn on_refund_sent(&mut self, account: AccountId, amount: U128, tokens: U128) -> bool {
        self.settle_refund(account, amount.0, tokens.0).or_panic()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::*;
    use near_sdk::PromiseResult;
    use near_sdk::json_types::U64;
    use near_sdk::test_utils::{get_created_receipts, get_logs};

    const NEAR: u128 = 10u128.pow(24);

    fn config(milestones: Vec<u16>) -> CrowdfundConfig {
        CrowdfundConfig {
            goal: U128(10 * NEAR),
            // 1 NEAR per whole token (18 decimals in the test metadata).
            token_price: U128(NEAR),
            deadline_ns: U64(NOW + 1_000),
            beneficiary: acc(TRAINER),
            milestones_bps: milestones,
            approver: None,
        }
    }

    fn with_crowdfund(milestones: Vec<u16>) -> ModelToken {
        setup_with(|init| init.crowdfund = Some(config(milestones)))
    }

    fn contribute(t: &mut ModelToken, who: &str, near: u128) -> u128 {
        let storage = if t.holders.contains_key(&acc(who)) {
            0
        } else {
            t.storage_cost().as_yoctonear()
        };
        ctx(who, NearToken::from_yoctonear(near * NEAR + storage));
        t.contribute().0
    }

    #[test]
    fn contribute_mints_at_price_and_registers() {
        let mut t = with_crowdfund(vec![]);
        assert!(
            get_logs()
                .iter()
                .any(|l| l.contains("\"crowdfund_started\""))
        );
        assert_eq!(contribute(&mut t, ALICE, 3), 3 * 10u128.pow(18));
        assert_eq!(t.balance_of(&acc(ALICE)), 3 * 10u128.pow(18));
        assert_eq!(t.contribution(acc(ALICE)).0.0, 3 * NEAR);
        assert!(get_logs().iter().any(|l| l.contains("\"contributed\"")));
        assert_eq!(t.crowdfund().unwrap().raised.0, 3 * NEAR);
        // Transfers are locked while the crowdfund is open.
        register(&mut t, BOB);
        ctx(ALICE, NearToken::from_yoctonear(1));
        assert_panics_with(
            || t.ft_transfer(acc(BOB), U128(1), None),
            "cannot move until the crowdfund succeeds",
        );
        // Too small, too late.
        ctx(ALICE, NearToken::from_yoctonear(1));
        assert_panics_with(|| t.contribute(), "buys less than one token");
        ctx_at(ALICE, NearToken::from_near(1), NOW + 1_000);
        assert_panics_with(|| t.contribute(), "crowdfund ended");
    }

    #[test]
    fn start_crowdfund_owner_once_valid() {
        let mut t = setup();
        ctx(ALICE, NearToken::from_yoctonear(1));
        assert_panics_with(|| t.start_crowdfund(config(vec![])), "only the owner");
        ctx(OWNER, NearToken::from_yoctonear(1));
        assert_panics_with(|| t.start_crowdfund(config(vec![5000])), "sum to 5000");
        ctx(OWNER, NearToken::from_yoctonear(1));
        let mut late = config(vec![]);
        late.deadline_ns = U64(NOW);
        assert_panics_with(|| t.start_crowdfund(late), "is not after now");
        ctx(OWNER, NearToken::from_yoctonear(1));
        t.start_crowdfund(config(vec![]));
        ctx(OWNER, NearToken::from_yoctonear(1));
        assert_panics_with(|| t.start_crowdfund(config(vec![])), "already started");
        ctx(OWNER, NearToken::from_yoctonear(0));
        assert_panics_with(|| t.start_crowdfund(config(vec![])), "1 yoctoNEAR");
    }

    #[test]
    fn success_releases_everything_and_unlocks_transfers() {
        let mut t = with_crowdfund(vec![]);
        contribute(&mut t, ALICE, 4);
        ctx(BOB, NearToken::from_yoctonear(0));
        assert_panics_with(
            || t.finalize_crowdfund(),
            "raised 4000000000000000000000000 of",
        );
        contribute(&mut t, BOB, 6);
        ctx(CAROL, NearToken::from_yoctonear(0));
        assert_eq!(t.finalize_crowdfund(), CrowdfundStatus::Succeeded);
        let r = get_created_receipts();
        assert_eq!(r[0].receiver_id, acc(TRAINER));
        callback_ctx(PromiseResult::Successful(vec![]));
        assert!(t.on_funds_released(0, U128(10 * NEAR)));
        assert!(get_logs().iter().any(|l| l.contains("\"funds_released\"")));
        assert_eq!(t.crowdfund().unwrap().released.0, 10 * NEAR);
        ctx(ALICE, NearToken::from_yoctonear(1));
        t.ft_transfer(acc(BOB), U128(1), None);
        ctx(ALICE, NearToken::from_near(1));
        assert_panics_with(|| t.contribute(), "not active");
    }

    #[test]
    fn milestones_release_in_order_and_a_failed_release_can_be_retried() {
        let mut t = with_crowdfund(vec![2_500, 7_500]);
        contribute(&mut t, ALICE, 10);
        ctx(ALICE, NearToken::from_yoctonear(0));
        t.finalize_crowdfund();
        // First tranche bounced.
        callback_ctx(PromiseResult::Failed);
        assert!(!t.on_funds_released(0, U128(NEAR * 10 / 4)));
        assert_eq!(t.crowdfund().unwrap().released.0, 0);
        ctx(ALICE, NearToken::from_yoctonear(1));
        assert_panics_with(|| t.release_milestone(), "only owner.near may release");
        ctx(OWNER, NearToken::from_yoctonear(1));
        let _ = t.release_milestone();
        ctx(OWNER, NearToken::from_yoctonear(1));
        assert_panics_with(|| t.release_milestone(), "already in flight");
        callback_ctx(PromiseResult::Successful(vec![]));
        assert!(t.on_funds_released(0, U128(NEAR * 10 / 4)));
        ctx(OWNER, NearToken::from_yoctonear(1));
        let _ = t.release_milestone();
        callback_ctx(PromiseResult::Successful(vec![]));
        assert!(t.on_funds_released(1, U128(NEAR * 30 / 4)));
        assert_eq!(t.crowdfund().unwrap().released.0, 10 * NEAR);
        ctx(OWNER, NearToken::from_yoctonear(1));
        assert_panics_with(|| t.release_milestone(), "every milestone");
    }

    #[test]
    fn failure_refunds_each_contributor_and_burns_tokens() {
        let mut t = with_crowdfund(vec![]);
        contribute(&mut t, ALICE, 2);
        contribute(&mut t, BOB, 3);
        ctx(ALICE, NearToken::from_yoctonear(0));
        assert_panics_with(|| t.refund_contribution(), "only open after it failed");
        ctx_at(CAROL, NearToken::from_yoctonear(0), NOW + 1_000);
        assert_eq!(t.finalize_crowdfund(), CrowdfundStatus::Failed);
        assert!(
            get_logs()
                .iter()
                .any(|l| l.contains("\"crowdfund_failed\""))
        );

        ctx(ALICE, NearToken::from_yoctonear(0));
        let _ = t.refund_contribution();
        assert_eq!(get_created_receipts()[0].receiver_id, acc(ALICE));
        assert_eq!(t.balance_of(&acc(ALICE)), 0);
        assert_eq!(t.total_supply, 3 * 10u128.pow(18));
        callback_ctx(PromiseResult::Successful(vec![]));
        assert!(t.on_refund_sent(acc(ALICE), U128(2 * NEAR), U128(2 * 10u128.pow(18))));
        assert!(
            get_logs()
                .iter()
                .any(|l| l.contains("\"contribution_refunded\""))
        );
        ctx(ALICE, NearToken::from_yoctonear(0));
        assert_panics_with(|| t.refund_contribution(), "no contribution to refund");

        // BOB's transfer bounces: tokens and contribution come back for a retry.
        ctx(BOB, NearToken::from_yoctonear(0));
        let _ = t.refund_contribution();
        callback_ctx(PromiseResult::Failed);
        assert!(!t.on_refund_sent(acc(BOB), U128(3 * NEAR), U128(3 * 10u128.pow(18))));
        assert_eq!(t.contribution(acc(BOB)).0.0, 3 * NEAR);
        assert_eq!(t.balance_of(&acc(BOB)), 3 * 10u128.pow(18));
        assert_eq!(t.crowdfund().unwrap().refunded.0, 2 * NEAR);
    }
}
