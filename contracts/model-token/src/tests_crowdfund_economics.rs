//! The crowdfund's economics under attack (security audit, issue 15: finding 4, and finding 7's
//! model-token part). Each test replays an attack through the contract's own methods and
//! checks the funds invariant after every step ([`Harness::check`]):
//!
//! - tokens: the supply is the sum of the balances;
//! - crowdfund NEAR: what is raised and neither released nor refunded is exactly what the
//!   refundable contributions add up to;
//! - revenue, per asset, exact in magnified units: `deposited == claimed + Σ entitlements +
//!   pending`, and in base units payouts never exceed deposits;
//! - storage: every holder record was paid for by a registration (the owner's by the
//!   model's creation), and the bytes the contract stores beyond its initial state are
//!   covered by what the registrations paid (each record at its largest). `env::storage_usage`
//!   is the contract's real usage across contexts (see `test_utils::builder`).
//!
//! The refund's start and its callback, which charge nobody, must leave the storage exactly
//! as it was ([`assert_storage_paid`] with 0 bytes).

use std::collections::BTreeSet;

use enclave_cloud_common::Asset;
use near_sdk::json_types::{U64, U128};
use near_sdk::test_utils::get_created_receipts;
use near_sdk::{NearToken, PromiseResult};

use crate::crowdfund::{CrowdfundConfig, CrowdfundStatus};
use crate::fixed::{FRAC_BITS, U256};
use crate::test_utils::*;
use crate::{CrowdfundApi, ModelToken};

const NEAR: u128 = 10u128.pow(24);
/// One token (0 decimals here, so pro-rata shares are exact and the figures read plainly);
/// the crowdfund sells it for 1 NEAR.
const TOKEN: u128 = 1;
/// Every account these tests use; the invariant sums over them.
const ACCOUNTS: [&str; 5] = [OWNER, ALICE, BOB, CAROL, TRAINER];
const DEADLINE: u64 = NOW + 1_000;

struct Harness {
    t: ModelToken,
    /// Accounts whose holder record was paid for (the owner's by the account at creation).
    paid: BTreeSet<&'static str>,
    /// Storage after initialisation, the owner's record included.
    base_usage: u64,
}

impl Harness {
    /// A model whose crowdfund raises 10 NEAR at 1 NEAR per token until [`DEADLINE`]; the
    /// owner holds `founders` whole tokens.
    fn new(founders: u128) -> Self {
        let mut t = setup_with(|init| {
            init.metadata.decimals = 0;
            init.initial_supply = (founders > 0).then_some(U128(founders * TOKEN));
            init.crowdfund = Some(CrowdfundConfig {
                goal: U128(10 * NEAR),
                token_price: U128(NEAR),
                deadline_ns: U64(DEADLINE),
                beneficiary: acc(TRAINER),
                milestones_bps: vec![],
                approver: None,
            });
        });
        // Everything but holder records: each record (the owner's, paid by the creation,
        // included) is paid for at its largest, `holder_storage_bytes`.
        let owner = t
            .holders
            .remove(&acc(OWNER))
            .expect("the owner is registered");
        let base_usage = flushed_usage(&mut t);
        t.holders.insert(acc(OWNER), owner);
        let mut h = Self {
            t,
            paid: BTreeSet::from([OWNER]),
            base_usage,
        };
        h.check();
        h
    }

    /// The funds invariant (see the module doc).
    fn check(&mut self) {
        let t = &mut self.t;
        let usage = flushed_usage(t);
        let mut supply = 0u128;
        let mut refundable = 0u128;
        for who in ACCOUNTS {
            let registered = t.holders.contains_key(&acc(who));
            assert_eq!(
                registered,
                self.paid.contains(who),
                "{who}: a holder record must exist exactly when its storage was paid"
            );
            if let Some(h) = t.holders.get(&acc(who)) {
                supply += h.balance;
                if h.crowdfund_tokens > 0 {
                    refundable += h.contributed;
                }
            }
        }
        assert_eq!(t.total_supply, supply, "supply == sum of balances");

        let grown = usage.saturating_sub(self.base_usage);
        let paid_bytes = self.paid.len() as u64 * t.holder_storage_bytes;
        assert!(
            grown <= paid_bytes,
            "storage grew {grown} bytes, registrations paid for {paid_bytes}"
        );

        if let Some(cf) = &t.crowdfund {
            if cf.status == CrowdfundStatus::Succeeded {
                assert!(cf.released <= cf.raised);
            } else {
                assert_eq!(
                    cf.raised - cf.released - cf.refunded,
                    refundable,
                    "crowdfund NEAR held == refundable contributions"
                );
            }
        }

        for k in 0..t.pools.len() {
            let pool = &t.pools[k];
            let mut entitlements = U256::zero();
            let mut claimable = 0u128;
            for who in ACCOUNTS {
                if let Some(h) = t.holders.get(&acc(who)) {
                    let e = t.entitlement_of(h, k);
                    entitlements += e.0;
                    claimable += e.whole();
                }
            }
            assert_eq!(
                entitlements + pool.pending.0 + (U256::from(pool.claimed) << FRAC_BITS),
                U256::from(pool.deposited) << FRAC_BITS,
                "revenue conserved in pool {k}"
            );
            assert!(
                pool.claimed + claimable + pool.undistributed() <= pool.deposited,
                "pool {k} promises more than was deposited"
            );
        }
    }

    /// `who` contributes `near` NEAR (plus its storage if it is new); returns the tokens.
    fn contribute(&mut self, who: &'static str, near: u128) -> u128 {
        let storage = if self.t.holders.contains_key(&acc(who)) {
            0
        } else {
            self.t.storage_cost().as_yoctonear()
        };
        ctx(who, NearToken::from_yoctonear(near * NEAR + storage));
        let tokens = self.t.contribute().0;
        self.paid.insert(who);
        self.check();
        tokens
    }

    fn register(&mut self, who: &'static str) {
        register(&mut self.t, who);
        self.paid.insert(who);
        self.check();
    }

    fn deposit(&mut self, payer: &str, amount: u128) {
        ctx(payer, NearToken::from_yoctonear(amount));
        self.t.deposit_revenue();
        self.check();
    }

    fn claimable(&self, who: &str) -> u128 {
        self.t.claimable(acc(who), Asset::Near).0
    }

    /// `who` claims its NEAR revenue and the payout arrives; returns the amount.
    fn claim(&mut self, who: &str) -> u128 {
        let amount = self.claimable(who);
        ctx(who, NearToken::from_yoctonear(1));
        let _ = self.t.claim_revenue(Asset::Near);
        callback_ctx(PromiseResult::Successful(vec![]));
        assert!(self.t.on_revenue_claimed(acc(who), 0, U128(amount)));
        self.check();
        amount
    }

    fn finalize(&mut self, at: u64) -> CrowdfundStatus {
        ctx_at(CAROL, NearToken::from_yoctonear(0), at);
        let status = self.t.finalize_crowdfund();
        if status == CrowdfundStatus::Succeeded {
            callback_ctx(PromiseResult::Successful(vec![]));
            let raised = self.t.crowdfund().map_or(0, |c| c.raised.0);
            assert!(self.t.on_funds_released(0, U128(raised)));
        }
        self.check();
        status
    }

    /// `who` asks for its refund; returns what was sent (NEAR, tokens burned).
    fn start_refund(&mut self, who: &str) -> (u128, u128) {
        let (amount, tokens) = self.t.contribution(acc(who));
        ctx(who, NearToken::from_yoctonear(0));
        let _ = assert_storage_paid(&mut self.t, "refund_contribution", |t| {
            (t.refund_contribution(), 0)
        });
        assert_eq!(get_created_receipts()[0].receiver_id, acc(who));
        self.check();
        (amount.0, tokens.0)
    }

    fn finish_refund(&mut self, who: &str, sent: (u128, u128), arrived: bool) {
        callback_ctx(if arrived {
            PromiseResult::Successful(vec![])
        } else {
            PromiseResult::Failed
        });
        let settled = assert_storage_paid(&mut self.t, "on_refund_sent", |t| {
            (t.on_refund_sent(acc(who), U128(sent.0), U128(sent.1)), 0)
        });
        assert_eq!(settled, arrived);
        self.check();
    }

    fn refund(&mut self, who: &str) {
        let sent = self.start_refund(who);
        self.finish_refund(who, sent, true);
    }

    /// `ft_transfer` from `from` to `to`; the panic message if it was refused.
    fn transfer(&mut self, from: &str, to: &str, amount: u128) -> Result<(), String> {
        ctx(from, NearToken::from_yoctonear(1));
        let t = &mut self.t;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            t.ft_transfer(acc(to), U128(amount), None)
        }))
        .map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "panic".into())
        });
        self.check();
        result
    }
}

#[test]
fn crowdfund_tokens_earn_nothing_while_the_crowdfund_is_open() {
    let mut h = Harness::new(10);
    assert_eq!(h.contribute(ALICE, 5), 5 * TOKEN);
    // Royalties while the crowdfund is open go to the founders' tokens only; the backer's
    // NEAR is not at risk yet, so its tokens do not earn yet.
    h.deposit(MARKET, 1_500);
    assert_eq!(h.claimable(ALICE), 0, "a backer earns nothing while open");
    assert_eq!(h.claimable(OWNER), 1_500);
    assert_eq!(h.claim(OWNER), 1_500);
}

#[test]
fn a_refunded_backer_keeps_no_revenue() {
    let mut h = Harness::new(10);
    h.contribute(ALICE, 2);
    h.contribute(BOB, 3);
    h.deposit(MARKET, 1_000);
    assert_eq!(h.finalize(DEADLINE), CrowdfundStatus::Failed);
    h.deposit(MARKET, 1_000);
    h.refund(ALICE);
    assert_eq!(
        h.t.balance_of(&acc(ALICE)),
        0,
        "the refund burns the tokens"
    );
    assert_eq!(h.claimable(ALICE), 0, "and whatever they earned: nothing");
    assert_eq!(
        h.claimable(OWNER),
        2_000,
        "the founders earned every royalty"
    );
    // Revenue and NEAR back: nothing to claim besides the refund.
    ctx(ALICE, NearToken::from_yoctonear(1));
    assert_panics_with(|| h.t.claim_revenue(Asset::Near), "nothing to claim");
}

#[test]
fn backers_who_never_ask_for_a_refund_earn_nothing_from_a_failed_model() {
    let mut h = Harness::new(10);
    h.contribute(BOB, 4);
    assert_eq!(h.finalize(DEADLINE), CrowdfundStatus::Failed);
    for _ in 0..3 {
        h.deposit(MARKET, 700);
        assert_eq!(h.claimable(BOB), 0);
    }
    assert_eq!(h.claimable(OWNER), 2_100);
    // BOB can still get its NEAR back, and nothing else.
    h.refund(BOB);
    assert_eq!(h.claimable(BOB), 0);
}

#[test]
fn revenue_nobody_earned_is_not_the_first_contributors() {
    // No founders' supply: royalties that arrive before anyone holds an earning token.
    let mut h = Harness::new(0);
    h.deposit(MARKET, 1_000);
    h.contribute(ALICE, 1);
    // The attack: a 1-yocto deposit used to distribute everything waiting to the only holder.
    h.deposit(ALICE, 1);
    assert_eq!(
        h.claimable(ALICE),
        0,
        "the first contributor collects nothing"
    );
    // Nobody could earn it: it goes to the model's owner.
    assert_eq!(h.claimable(OWNER), 1_001);
    assert_eq!(h.t.pools[0].undistributed(), 0);
}

#[test]
fn a_failed_crowdfund_locks_only_the_refundable_crowdfund_tokens() {
    let mut h = Harness::new(10);
    h.register(BOB);
    h.contribute(ALICE, 3);
    // Founders' tokens move while the crowdfund is open; a backer's refundable ones do not.
    h.transfer(OWNER, BOB, TOKEN).unwrap();
    let refused = h.transfer(ALICE, BOB, 1).unwrap_err();
    assert!(refused.contains("crowdfund tokens"), "{refused}");
    assert_eq!(h.finalize(DEADLINE), CrowdfundStatus::Failed);

    // After the failure: the founders' supply and every other token move.
    h.transfer(OWNER, ALICE, 2 * TOKEN).unwrap();
    h.transfer(BOB, OWNER, TOKEN).unwrap();
    // ALICE moves what she was given, never the 3 tokens her refund burns.
    let refused = h.transfer(ALICE, BOB, 3 * TOKEN).unwrap_err();
    assert!(refused.contains("crowdfund tokens"), "{refused}");
    h.transfer(ALICE, BOB, TOKEN).unwrap();
    // Tokens that earn do so in a failed model too: owner 8, ALICE 1 (given), BOB 1.
    h.deposit(MARKET, 10_000);
    assert_eq!(h.claimable(ALICE), 1_000);
    assert_eq!(h.claimable(BOB), 1_000);
    assert_eq!(h.claimable(OWNER), 8_000);
    h.refund(ALICE);
    assert_eq!(h.t.balance_of(&acc(ALICE)), TOKEN);
    h.transfer(ALICE, BOB, TOKEN).unwrap();
    assert_eq!(h.claimable(ALICE), 1_000, "what was earned stays earned");
}

#[test]
fn a_bounced_refund_never_registers_anyone_for_free() {
    let mut h = Harness::new(10);
    h.contribute(ALICE, 2);
    assert_eq!(h.finalize(DEADLINE), CrowdfundStatus::Failed);
    let sent = h.start_refund(ALICE);
    // While the refund is in flight the backer may not leave (its storage deposit would go
    // back to it and the bounced refund would need a new record nobody paid for) ...
    ctx(ALICE, NearToken::from_yoctonear(1));
    assert_panics_with(
        || h.t.storage_unregister(Some(true)),
        "open crowdfund contribution",
    );
    h.check();
    // ... nor ask again.
    ctx(ALICE, NearToken::from_yoctonear(0));
    assert_panics_with(|| h.t.refund_contribution(), "already in flight");
    h.check();
    // The transfer bounces: contribution and tokens come back on the record it paid for.
    // (finish_refund checks that the callback adds no storage)
    h.finish_refund(ALICE, sent, false);
    assert_eq!(
        h.t.contribution(acc(ALICE)),
        (U128(2 * NEAR), U128(2 * TOKEN))
    );
    h.refund(ALICE);
    // Refunded: now it may leave, and takes its storage deposit back.
    ctx(ALICE, NearToken::from_yoctonear(1));
    assert!(h.t.storage_unregister(None));
    h.paid.remove(ALICE);
    h.check();
}

#[test]
fn after_success_crowdfund_tokens_earn_like_any_other() {
    let mut h = Harness::new(10);
    h.contribute(ALICE, 6);
    h.deposit(MARKET, 1_000);
    h.contribute(BOB, 4);
    assert_eq!(h.claimable(OWNER), 1_000);
    assert_eq!(h.finalize(NOW + 10), CrowdfundStatus::Succeeded);
    // 20 tokens earn from now on: founders 10, ALICE 6, BOB 4.
    h.deposit(MARKET, 2_000);
    assert_eq!(
        (h.claimable(OWNER), h.claimable(ALICE), h.claimable(BOB)),
        (2_000, 600, 400)
    );
    h.register(CAROL);
    h.transfer(ALICE, CAROL, 3 * TOKEN).unwrap();
    h.deposit(MARKET, 2_000);
    assert_eq!(
        (h.claimable(ALICE), h.claimable(CAROL)),
        (900, 300),
        "earned before the transfer stays, after it splits"
    );
    assert_eq!(h.claim(ALICE), 900);
    h.transfer(BOB, ALICE, 4 * TOKEN).unwrap();
    h.deposit(MARKET, 2_000);
    assert_eq!(
        (h.claimable(ALICE), h.claimable(BOB), h.claimable(OWNER)),
        (700, 800, 4_000)
    );
    // A holder who leaves forfeits to the remaining holders, as before the crowdfund.
    ctx(BOB, NearToken::from_yoctonear(1));
    assert!(h.t.storage_unregister(Some(true)));
    h.paid.remove(BOB);
    h.check();
    // BOB's 800 and 400 new over 20 tokens: 60 a token.
    h.deposit(MARKET, 400);
    assert_eq!(
        (h.claimable(ALICE), h.claimable(CAROL), h.claimable(OWNER)),
        (700 + 7 * 60, 600 + 3 * 60, 4_000 + 10 * 60)
    );
}
