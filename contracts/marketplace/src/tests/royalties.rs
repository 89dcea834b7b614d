//! Token royalties to a model token: delivered by `ft_transfer_call` (the model token counts
//! token revenue only in `ft_on_transfer`); what it does not use comes back as its credit.

use super::*;
use crate::state::{Payout, PayoutKind};
use crate::{GAS_FT_TRANSFER_CALL, GAS_MODEL_TOKEN_ON_TRANSFER};
use near_sdk::PromiseOrValue;

const FACTORY: &str = "models.near";
const MODEL_TOKEN: &str = "llama-3-8b.models.near";

fn usdc() -> Asset {
    Asset::Ft { token: acc(TOKEN) }
}

/// A job paid in tokens, settled with the royalty going to the model's token contract.
/// Returns the split and the payouts handed to `on_payouts`.
fn settle_token_job(h: &mut Harness) -> (Settlement, Vec<Payout>) {
    h.use_model_factory(FACTORY);
    h.confirm_created_model(FACTORY);
    h.fund_storage(USER, 50 * MILLI);
    let msg = near_sdk::serde_json::json!({ "submit_job": spec(3_000_000) }).to_string();
    let unused = h
        .call(TOKEN, 0, |c| {
            c.try_ft_on_transfer(acc(USER), U128(3_000_000), msg)
        })
        .unwrap();
    assert!(matches!(unused, PromiseOrValue::Value(U128(0))));
    h.ft.insert(acc(TOKEN), 3_000_000);
    h.fund_storage(OPERATOR, 100 * MILLI);
    assert!(h.claim_via_registry(JobId(1), &active_node()));
    let s = h.settle(JobId(1), b"out", usage(100_000, 200_000)).unwrap();
    assert!(s.royalty.0 > 0, "the test needs a royalty: {s:?}");
    let payouts = h.payouts_of_last_call();
    (s, payouts)
}

/// The promise results of a payout batch: plain `ft_transfer`s return nothing, the royalty's
/// `ft_transfer_call` returns `royalty` (its JSON answer, or `None`: the call failed).
fn results(payouts: &[Payout], royalty: Option<Vec<u8>>) -> Vec<PromiseResult> {
    payouts
        .iter()
        .map(|p| match p.kind {
            PayoutKind::Revenue => royalty
                .clone()
                .map_or(PromiseResult::Failed, PromiseResult::Successful),
            PayoutKind::Transfer => PromiseResult::Successful(vec![]),
        })
        .collect()
}

fn used(amount: u128) -> Option<Vec<u8>> {
    Some(near_sdk::serde_json::to_vec(&U128(amount)).unwrap())
}

fn credit(h: &mut Harness, account: &str) -> u128 {
    h.install(RELAYER, 0, vec![]);
    h.contract.credit_of(acc(account), usdc()).0
}

#[test]
fn the_token_royalty_is_an_ft_transfer_call_to_the_model_token() {
    let mut h = Harness::new();
    let (s, payouts) = settle_token_job(&mut h);
    assert!(
        h.calls("deposit_revenue").is_empty(),
        "deposit_revenue is for NEAR"
    );
    let calls = h.calls("ft_transfer_call");
    let [
        Outflow::Call {
            to,
            args,
            deposit,
            gas,
            ..
        },
    ] = calls[..]
    else {
        panic!("one ft_transfer_call expected: {:?}", h.outflows);
    };
    assert_eq!(to.as_str(), TOKEN);
    assert_eq!(*deposit, 1, "NEP-141 wants one yocto");
    let args: near_sdk::serde_json::Value = near_sdk::serde_json::from_str(args).unwrap();
    assert_eq!(args["receiver_id"], MODEL_TOKEN);
    assert_eq!(args["amount"], s.royalty.0.to_string());
    assert_eq!(args["msg"], "");
    assert_eq!(*gas, GAS_FT_TRANSFER_CALL);
    // The token keeps 30 Tgas (own work + `ft_resolve_transfer`); the model token's
    // `ft_on_transfer` gets the rest.
    assert!(
        gas.as_gas()
            >= near_sdk::Gas::from_tgas(30).as_gas() + GAS_MODEL_TOKEN_ON_TRANSFER.as_gas()
    );
    // Provider share and refund are still plain transfers.
    let transfers = h.calls("ft_transfer");
    assert_eq!(transfers.len(), 2, "{transfers:?}");
    assert!(transfers.iter().all(|t| matches!(t,
        Outflow::Call { args, .. } if !args.contains(MODEL_TOKEN))));
    let royalty = payouts
        .iter()
        .find(|p| p.kind == PayoutKind::Revenue)
        .unwrap();
    assert_eq!(royalty.account.as_str(), MODEL_TOKEN);
    assert_eq!(royalty.amount, s.royalty);
    h.check_funds();

    // The model token used all of it: nothing comes back, no credit.
    h.callback(results(&payouts, used(s.royalty.0)), |c| {
        c.on_payouts(payouts)
    });
    assert!(h.events.is_empty(), "{:?}", h.events);
    assert_eq!(credit(&mut h, MODEL_TOKEN), 0);
    h.check_funds();
}

#[test]
fn a_royalty_the_model_token_refused_becomes_its_credit() {
    let mut h = Harness::new();
    let (s, payouts) = settle_token_job(&mut h);
    // `ft_on_transfer` panicked: the token refunded everything and reports 0 used.
    h.ft_refund(TOKEN, s.royalty.0);
    h.callback(results(&payouts, used(0)), |c| c.on_payouts(payouts));
    assert!(
        matches!(&h.events[..], [MarketplaceEvent::CreditAdded { account, asset, amount }]
            if account.as_str() == MODEL_TOKEN && *asset == usdc() && *amount == s.royalty),
        "{:?}",
        h.events
    );
    assert_eq!(credit(&mut h, MODEL_TOKEN), s.royalty.0);
    h.check_funds();

    // Withdrawing the credit tries `ft_transfer_call` again, never a plain transfer.
    let paid = h
        .call(RELAYER, 0, |c| {
            c.try_withdraw(usdc(), Some(acc(MODEL_TOKEN)))
        })
        .unwrap();
    assert_eq!(paid, s.royalty);
    assert!(h.calls("ft_transfer").is_empty());
    assert!(
        matches!(h.calls("ft_transfer_call")[..], [Outflow::Call { args, .. }]
        if args.contains(MODEL_TOKEN))
    );
    assert_eq!(credit(&mut h, MODEL_TOKEN), 0);
    h.check_funds();
    let retry = h.payouts_of_last_call();
    h.callback(results(&retry, used(s.royalty.0)), |c| c.on_payouts(retry));
    assert_eq!(credit(&mut h, MODEL_TOKEN), 0);
    h.check_funds();
}

#[test]
fn the_unused_part_of_a_royalty_becomes_a_credit() {
    let mut h = Harness::new();
    let (s, payouts) = settle_token_job(&mut h);
    let kept = s.royalty.0 - 7;
    h.ft_refund(TOKEN, 7);
    h.callback(results(&payouts, used(kept)), |c| c.on_payouts(payouts));
    assert!(
        matches!(&h.events[..], [MarketplaceEvent::CreditAdded { account, amount, .. }]
            if account.as_str() == MODEL_TOKEN && amount.0 == 7),
        "{:?}",
        h.events
    );
    assert_eq!(credit(&mut h, MODEL_TOKEN), 7);
    h.check_funds();
}

#[test]
fn a_failed_royalty_call_becomes_a_credit_once() {
    let mut h = Harness::new();
    let (s, payouts) = settle_token_job(&mut h);
    // The `ft_transfer_call` itself failed (e.g. the model token is not registered with the
    // token): no tokens moved.
    h.ft_refund(TOKEN, s.royalty.0);
    h.callback(results(&payouts, None), |c| c.on_payouts(payouts));
    assert_eq!(credit(&mut h, MODEL_TOKEN), s.royalty.0);
    assert_eq!(credit(&mut h, OPERATOR), 0, "the provider was paid");
    h.check_funds();
}

#[test]
fn a_used_amount_that_is_not_a_u128_counts_as_delivered() {
    let mut h = Harness::new();
    let (_, payouts) = settle_token_job(&mut h);
    // Crediting tokens that may have left would owe more than the contract holds.
    h.callback(results(&payouts, Some(b"\"lots\"".to_vec())), |c| {
        c.on_payouts(payouts)
    });
    assert!(h.events.is_empty(), "{:?}", h.events);
    assert!(h.logs.iter().any(|l| l.contains("no U128 used amount")));
    assert_eq!(credit(&mut h, MODEL_TOKEN), 0);
    h.check_funds();
}
