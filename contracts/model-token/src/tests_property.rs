//! Property test: random sequences of mint / transfer / burn / deposit / claim (with payouts
//! that succeed or fail) / force-unregister driven through the contract's own methods, against a reference model
//! that distributes every deposit to every holder one by one (O(holders), no corrections).
//!
//! Revenue no token can earn (a deposit while the supply is zero, or what is forfeited when
//! the last holder leaves) goes to the owner, who holds no tokens here.
//!
//! After every step: balances and supply match the model; every holder's (and the owner's)
//! claimable amount matches the model exactly; `claimed + sum(claimable) + undistributed + dust == deposited`
//! with `0 <= dust <= holders` (payouts never exceed deposits, dust stays bounded); and the
//! exact conservation in magnified units holds.

use enclave_cloud_common::Asset;
use near_sdk::json_types::U128;
use near_sdk::mock::MockAction;
use near_sdk::test_utils::get_created_receipts;
use near_sdk::{NearToken, PromiseResult};
use proptest::prelude::*;

use crate::ModelToken;
use crate::fixed::{FRAC_BITS, U256};
use crate::test_utils::*;

const HOLDERS: [&str; 4] = [ALICE, BOB, CAROL, "dave.near"];

#[derive(Debug, Clone)]
enum Op {
    Mint(usize, u128),
    /// Burns `frac/256` of the holder's balance.
    Burn(usize, u8),
    Transfer(usize, usize, u8),
    Deposit(bool, u128),
    Claim(usize, bool, bool),
    /// The holder force-unregisters (its tokens burn, its revenue goes to the pool) and
    /// registers again.
    Leave(usize),
}

fn amount() -> impl Strategy<Value = u128> {
    prop_oneof![1..1_000u128, 1..(1u128 << 64), 1..(1u128 << 100)]
}

fn op() -> impl Strategy<Value = Op> {
    let h = 0..HOLDERS.len();
    prop_oneof![
        (h.clone(), amount()).prop_map(|(i, a)| Op::Mint(i, a)),
        (h.clone(), any::<u8>()).prop_map(|(i, f)| Op::Burn(i, f)),
        (h.clone(), h.clone(), any::<u8>()).prop_map(|(i, j, f)| Op::Transfer(i, j, f)),
        (any::<bool>(), amount()).prop_map(|(ft, a)| Op::Deposit(ft, a)),
        (h.clone(), any::<bool>(), any::<bool>()).prop_map(|(i, ft, ok)| Op::Claim(i, ft, ok)),
        h.prop_map(Op::Leave),
    ]
}

/// Naive reference: every deposit is credited to every holder.
#[derive(Default)]
struct Reference {
    balances: [u128; HOLDERS.len()],
    /// Per asset (0 NEAR, 1 USDC): magnified entitlement of each holder.
    entitlements: [[U256; HOLDERS.len()]; 2],
    pending: [U256; 2],
    /// Per asset: the owner's magnified entitlement (revenue nobody earned).
    owner: [U256; 2],
    deposited: [u128; 2],
    claimed: [u128; 2],
}

impl Reference {
    fn supply(&self) -> u128 {
        self.balances.iter().sum()
    }

    fn deposit(&mut self, asset: usize, amount: u128) {
        self.deposited[asset] += amount;
        let total = (U256::from(amount) << FRAC_BITS) + self.pending[asset];
        let supply = self.supply();
        if supply == 0 {
            self.owner[asset] += total;
            self.pending[asset] = U256::zero();
            return;
        }
        let per_token = total / U256::from(supply);
        self.pending[asset] = total % U256::from(supply);
        for (e, b) in self.entitlements[asset].iter_mut().zip(self.balances) {
            *e += per_token * U256::from(b);
        }
    }

    fn claimable(&self, asset: usize, holder: usize) -> u128 {
        (self.entitlements[asset][holder] >> FRAC_BITS).low_u128()
    }
}

fn asset(i: usize) -> Asset {
    if i == 0 { Asset::Near } else { usdc() }
}

/// The amount the contract scheduled for `on_revenue_claimed`.
fn scheduled_claim_amount() -> u128 {
    get_created_receipts()
        .iter()
        .flat_map(|r| r.actions.iter())
        .find_map(|a| match a {
            MockAction::FunctionCallWeight {
                method_name, args, ..
            } if method_name == b"on_revenue_claimed" => {
                let v: near_sdk::serde_json::Value = near_sdk::serde_json::from_slice(args).ok()?;
                v["amount"].as_str()?.parse().ok()
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no on_revenue_claimed callback scheduled"))
}

fn apply(t: &mut ModelToken, r: &mut Reference, op: &Op) {
    match *op {
        Op::Mint(i, a) => {
            if r.supply().checked_add(a).is_none() {
                return;
            }
            t.mint(&acc(HOLDERS[i]), a, None).unwrap();
            r.balances[i] += a;
        }
        Op::Burn(i, f) => {
            let a = r.balances[i] / 256 * u128::from(f);
            if a == 0 {
                return;
            }
            t.burn(&acc(HOLDERS[i]), a, None).unwrap();
            r.balances[i] -= a;
        }
        Op::Transfer(i, j, f) => {
            let a = r.balances[i] / 256 * u128::from(f);
            if i == j || a == 0 {
                return;
            }
            ctx(HOLDERS[i], NearToken::from_yoctonear(1));
            t.ft_transfer(acc(HOLDERS[j]), U128(a), None);
            r.balances[i] -= a;
            r.balances[j] += a;
        }
        Op::Deposit(ft, a) => {
            let k = usize::from(ft);
            if r.deposited[k].checked_add(a).is_none() {
                return;
            }
            if ft {
                ctx(USDC, NearToken::from_yoctonear(0));
                let _ = t.ft_on_transfer(acc(MARKET), U128(a), String::new());
            } else {
                ctx(MARKET, NearToken::from_yoctonear(a));
                t.deposit_revenue();
            }
            r.deposit(k, a);
        }
        Op::Claim(i, ft, ok) => {
            let k = usize::from(ft);
            let expected = r.claimable(k, i);
            if expected == 0 {
                return;
            }
            ctx(HOLDERS[i], NearToken::from_yoctonear(1));
            let _ = t.claim_revenue(asset(k));
            let amount = scheduled_claim_amount();
            assert_eq!(amount, expected, "claim pays exactly the claimable amount");
            callback_ctx(if ok {
                PromiseResult::Successful(vec![])
            } else {
                PromiseResult::Failed
            });
            assert_eq!(
                t.on_revenue_claimed(acc(HOLDERS[i]), k as u32, U128(amount)),
                ok
            );
            if ok {
                r.entitlements[k][i] -= U256::from(amount) << FRAC_BITS;
                r.claimed[k] += amount;
            }
        }
        Op::Leave(i) => leave(t, r, i),
    }
}

fn leave(t: &mut ModelToken, r: &mut Reference, i: usize) {
    ctx(HOLDERS[i], NearToken::from_yoctonear(1));
    assert!(t.storage_unregister(Some(true)));
    r.balances[i] = 0;
    for k in 0..2 {
        r.pending[k] += r.entitlements[k][i];
        r.entitlements[k][i] = U256::zero();
        if r.supply() == 0 {
            r.owner[k] += r.pending[k];
            r.pending[k] = U256::zero();
        }
    }
    register(t, HOLDERS[i]);
}

fn check(t: &ModelToken, r: &Reference) {
    assert_eq!(t.total_supply, r.supply(), "supply");
    for (i, h) in HOLDERS.iter().enumerate() {
        assert_eq!(t.balance_of(&acc(h)), r.balances[i], "balance of {h}");
    }
    for k in 0..2 {
        let pool = &t.pools[k];
        assert_eq!(pool.deposited, r.deposited[k]);
        assert_eq!(pool.claimed, r.claimed[k]);
        let owner = t.claimable_at(&acc(OWNER), k);
        assert_eq!(
            owner,
            (r.owner[k] >> FRAC_BITS).low_u128(),
            "owner, asset {k}"
        );
        let mut claimable_sum = owner;
        let owner_record = t.holders.get(&acc(OWNER)).cloned().unwrap_or_default();
        let mut entitlement_sum = t.entitlement_of(&owner_record, k).0;
        for (i, h) in HOLDERS.iter().enumerate() {
            let c = t.claimable_at(&acc(h), k);
            assert_eq!(c, r.claimable(k, i), "claimable of {h} in asset {k}");
            claimable_sum += c;
            let holder = t.holders.get(&acc(h)).cloned().unwrap_or_default();
            entitlement_sum += t.entitlement_of(&holder, k).0;
        }
        // Exact conservation in magnified units.
        assert_eq!(
            entitlement_sum + pool.pending.0 + (U256::from(pool.claimed) << FRAC_BITS),
            U256::from(pool.deposited) << FRAC_BITS,
            "magnified conservation, asset {k}"
        );
        // claimed + claimable + undistributed + dust == deposited, dust >= 0 and bounded.
        let dust = pool
            .deposited
            .checked_sub(pool.claimed + claimable_sum + pool.undistributed())
            .unwrap_or_else(|| panic!("asset {k}: more claimable than deposited"));
        assert!(dust <= HOLDERS.len() as u128 + 1, "asset {k}: dust {dust}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn revenue_is_conserved(ops in proptest::collection::vec(op(), 1..40)) {
        let mut t = setup_with_holders(&HOLDERS.map(|h| (h, 0)));
        let mut r = Reference::default();
        for op in &ops {
            apply(&mut t, &mut r, op);
            check(&t, &r);
        }
    }
}
