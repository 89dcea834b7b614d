//! Results, settlement, receipts, credits and withdrawals.

use super::*;
use crate::state::{ConfigPatch, StorageSource};
use near_sdk::PromiseOrValue;

#[test]
fn a_relayed_signed_result_settles_in_the_same_call() {
    let mut h = Harness::new();
    let job_id = h.claimed_job(NEAR);
    h.install(USER, 0, vec![]);
    let storage_paid = match h.contract.get_job(job_id) {
        Some(crate::state::JobView::Claimed(job)) => job.storage_deposit.as_yoctonear(),
        other => panic!("{other:?}"),
    };
    // 100k input tokens at 1 NEAR/M + 200k output at 2 NEAR/M = 0.5 NEAR.
    let settlement = h
        .settle(job_id, b"answer", usage(100_000, 200_000))
        .unwrap();
    assert_eq!(settlement.cost.0, NEAR / 2);
    assert_eq!(settlement.protocol_fee.0, NEAR / 100, "2%");
    assert_eq!(settlement.royalty.0, NEAR / 40, "5%");
    assert_eq!(settlement.provider.0, NEAR / 2 - NEAR / 100 - NEAR / 40);
    assert_eq!(settlement.refund.0, NEAR / 2);
    assert_eq!(h.sent_near(OPERATOR), settlement.provider.0);
    assert_eq!(h.sent_near(ROYALTY), settlement.royalty.0);
    let user_got = h.sent_near(USER);
    assert!(user_got > settlement.refund.0 && user_got < settlement.refund.0 + storage_paid);
    assert_eq!(
        h.self_calls,
        vec!["on_payouts".to_owned()],
        "one callback for all payouts"
    );
    let receipt = h.stored_receipt(job_id).unwrap();
    assert_eq!(receipt.settlement, settlement);
    assert_eq!(receipt.output_hash, sha256(b"answer"));
    assert!(receipt.signature.is_some());
    assert!(
        matches!(&h.events[..], [MarketplaceEvent::JobSettled { job_id: j, .. }] if *j == job_id)
    );
    h.check_funds();
    // Settled once.
    let err = h.settle(job_id, b"answer", usage(1, 1)).unwrap_err();
    assert_eq!(err, MarketplaceError::JobNotFound(job_id));
    h.install(USER, 0, vec![]);
    assert_eq!(
        h.contract
            .jobs_by_status(crate::state::JobStatus::Settled, None, None)
            .len(),
        1
    );
    assert_eq!(h.contract.jobs_by_user(acc(USER), None, None).len(), 1);
    assert_eq!(h.contract.jobs_by_node(NODE, None, None).len(), 1);
}

#[test]
fn the_node_can_sign_the_transaction_itself() {
    let mut h = Harness::new();
    let job_id = h.claimed_job(NEAR);
    // Signed by another key of the operator: refused.
    let other = near_key(&SigningKey::from_bytes(&[8; 32]));
    let err = h
        .signed_with(other)
        .call(OPERATOR, 0, |c| {
            c.try_submit_result(job_id, inline(b"out"), usage(10, 10), None, None)
        })
        .unwrap_err();
    assert_eq!(err, MarketplaceError::BadSignature { node_id: NODE });
    // A relayer without a signature: refused.
    let err = h
        .signed_with(near_key(&node_signing_key()))
        .call(RELAYER, 0, |c| {
            c.try_submit_result(job_id, inline(b"out"), usage(10, 10), None, None)
        })
        .unwrap_err();
    assert_eq!(err, MarketplaceError::BadSignature { node_id: NODE });
    h.signed_with(near_key(&node_signing_key()))
        .call(OPERATOR, 0, |c| {
            c.try_submit_result(job_id, inline(b"out"), usage(10, 10), None, None)
        })
        .unwrap();
    assert_eq!(h.stored_receipt(job_id).unwrap().signature, None);
    h.check_funds();
}

#[test]
fn a_wrong_or_tampered_signature_is_refused() {
    let mut h = Harness::new();
    let job_id = h.claimed_job(NEAR);
    let good = h.receipt_for(job_id, b"out", usage(10, 10));
    let wrong_key = sign(&SigningKey::from_bytes(&[9; 32]), &good);
    let err = h
        .call(RELAYER, 0, |c| {
            c.try_submit_result(job_id, inline(b"out"), usage(10, 10), Some(wrong_key), None)
        })
        .unwrap_err();
    assert_eq!(err, MarketplaceError::BadSignature { node_id: NODE });
    // The node signed 10 tokens; the relayer claims 1000.
    let signed = sign(&node_signing_key(), &good);
    let err = h
        .call(RELAYER, 0, |c| {
            c.try_submit_result(
                job_id,
                inline(b"out"),
                usage(10, 1_000),
                Some(signed.clone()),
                None,
            )
        })
        .unwrap_err();
    assert_eq!(err, MarketplaceError::BadSignature { node_id: NODE });
    let err = h
        .call(RELAYER, 0, |c| {
            c.try_submit_result(
                job_id,
                inline(b"tampered"),
                usage(10, 10),
                Some(signed),
                None,
            )
        })
        .unwrap_err();
    assert_eq!(err, MarketplaceError::BadSignature { node_id: NODE });
    let short = Base64VecU8(vec![1; 63]);
    let err = h
        .call(RELAYER, 0, |c| {
            c.try_submit_result(job_id, inline(b"out"), usage(10, 10), Some(short), None)
        })
        .unwrap_err();
    assert_eq!(err, MarketplaceError::BadSignature { node_id: NODE });
    h.check_funds();
}

#[test]
fn results_are_refused_for_open_jobs_after_the_deadline_or_with_a_deposit() {
    let mut h = Harness::new();
    let open = h.submit(spec(NEAR));
    let err = h.settle(open, b"out", usage(1, 1)).unwrap_err();
    assert!(
        matches!(err, MarketplaceError::WrongJobState { state: "open", .. }),
        "{err}"
    );
    let job_id = h.claimed_job(NEAR);
    let signature = sign(
        &node_signing_key(),
        &h.receipt_for(job_id, b"out", usage(1, 1)),
    );
    let err = h
        .call(RELAYER, 1, |c| {
            c.try_submit_result(job_id, inline(b"out"), usage(1, 1), Some(signature), None)
        })
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::UnexpectedDeposit(_)),
        "{err}"
    );
    h.advance(3600 * SECOND + 1);
    let err = h.settle(job_id, b"out", usage(1, 1)).unwrap_err();
    assert!(err.to_string().contains("passed its deadline"), "{err}");
    h.check_funds();
}

#[test]
fn zero_usage_refunds_everything_and_usage_over_the_cap_charges_the_cap() {
    let mut h = Harness::new();
    let free = h.claimed_job(NEAR);
    let s = h.settle(free, b"out", usage(0, 0)).unwrap();
    assert_eq!((s.cost.0, s.refund.0), (0, NEAR));
    assert_eq!(h.sent_near(OPERATOR), 0, "nothing to pay: no transfer");
    h.check_funds();
    let job_id = h.submit(spec(NEAR));
    assert_eq!(h.claim(OPERATOR, 0, job_id, NODE).unwrap(), Some(true));
    let s = h.settle(job_id, b"out", usage(u64::MAX, u64::MAX)).unwrap();
    assert_eq!((s.cost.0, s.refund.0), (NEAR, 0));
    assert_eq!(s.provider.0 + s.royalty.0 + s.protocol_fee.0, NEAR);
    h.check_funds();
}

/// Audit finding 7: a failed payout's credit entry was stored at the marketplace's expense.
/// A NEAR credit now pays for its own entry out of the amount (locked while the entry exists)
/// and gets it back with the withdrawal, so the owner still receives every yocto.
#[test]
fn failed_payouts_become_credits_that_pay_for_their_entry_and_are_withdrawn_in_full() {
    let mut h = Harness::new();
    let job_id = h.claimed_job(NEAR);
    h.settle(job_id, b"out", usage(100_000, 200_000)).unwrap();
    // The callback carries the payouts, in promise order.
    let payouts = h.payouts_of_last_call();
    assert_eq!(payouts.len(), 3);
    assert_eq!(payouts[1].account.as_str(), OPERATOR);
    // The operator's account rejected the transfer; the others went through.
    let provider = payouts[1].amount.0;
    h.bounce(provider);
    let stored_bytes = h.callback(
        vec![
            PromiseResult::Successful(vec![]),
            PromiseResult::Failed,
            PromiseResult::Successful(vec![]),
        ],
        |c| {
            let before = env::storage_usage();
            c.on_payouts(payouts);
            env::storage_usage() - before
        },
    );
    assert!(stored_bytes > 0);
    let entry_cost = u128::from(stored_bytes) * env::storage_byte_cost().as_yoctonear();
    let credited = provider - entry_cost;
    assert!(
        matches!(&h.events[..], [MarketplaceEvent::CreditAdded { account, amount, .. }]
        if account.as_str() == OPERATOR && amount.0 == credited),
        "{:?}",
        h.events
    );
    h.install(OPERATOR, 0, vec![]);
    assert_eq!(h.contract.credit_of(acc(OPERATOR), Asset::Near).0, credited);
    h.check_funds();
    // Anyone may push it out to its owner: the credit and its entry's storage.
    assert_eq!(
        h.call(RELAYER, 0, |c| c
            .try_withdraw(Asset::Near, Some(acc(OPERATOR))))
            .unwrap()
            .0,
        credited
    );
    assert_eq!(h.sent_near(OPERATOR), provider);
    h.check_funds();
    let err = h
        .call(OPERATOR, 0, |c| c.try_withdraw(Asset::Near, None))
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::NothingToWithdraw { .. }),
        "{err}"
    );
}

#[test]
fn fees_go_to_the_treasury() {
    let mut h = Harness::new();
    let job_id = h.claimed_job(NEAR);
    let s = h.settle(job_id, b"out", usage(100_000, 200_000)).unwrap();
    assert_eq!(
        h.call(RELAYER, 0, |c| c.try_withdraw_fees(Asset::Near))
            .unwrap(),
        s.protocol_fee
    );
    assert_eq!(h.sent_near(TREASURY), s.protocol_fee.0);
    h.check_funds();
    assert!(
        h.call(RELAYER, 0, |c| c.try_withdraw_fees(Asset::Near))
            .is_err()
    );
}

#[test]
fn royalties_go_to_the_model_token_or_to_the_fees() {
    let mut h = Harness::new();
    h.call(OWNER, 1, |c| c.try_set_royalty_account(model(), None))
        .unwrap();
    // No factory, no account: the royalty joins the protocol fees.
    let job_id = h.claimed_job(NEAR);
    let s = h.settle(job_id, b"out", usage(100_000, 200_000)).unwrap();
    assert_eq!(
        h.call(RELAYER, 0, |c| c.try_withdraw_fees(Asset::Near))
            .unwrap()
            .0,
        s.protocol_fee.0 + s.royalty.0
    );
    h.check_funds();
    // With a factory that confirmed the model, NEAR royalties go to `<model>.<factory>`
    // through deposit_revenue.
    let patch = ConfigPatch {
        model_factory: Some(acc("models.near")),
        ..Default::default()
    };
    h.call(OWNER, 1, |c| c.try_update_config(patch)).unwrap();
    h.confirm_created_model("models.near");
    let job_id = h.submit(spec(NEAR));
    assert_eq!(h.claim(OPERATOR, 0, job_id, NODE).unwrap(), Some(true));
    let s = h.settle(job_id, b"out", usage(100_000, 200_000)).unwrap();
    let revenue = h.calls("deposit_revenue");
    assert!(matches!(revenue[..], [Outflow::Call { to, deposit, .. }]
        if to.as_str() == "llama-3-8b.models.near" && *deposit == s.royalty.0));
    h.check_funds();
}

#[test]
fn a_token_job_settles_in_tokens_and_returns_storage_to_the_balance() {
    let mut h = Harness::new();
    h.fund_storage(USER, 50 * MILLI);
    let msg = near_sdk::serde_json::json!({ "submit_job": spec(3_000_000) }).to_string();
    let unused = h
        .call(TOKEN, 0, |c| {
            c.try_ft_on_transfer(acc(USER), U128(3_000_000), msg)
        })
        .map(|v| match v {
            PromiseOrValue::Value(v) => v,
            PromiseOrValue::Promise(_) => panic!(),
        })
        .unwrap();
    assert_eq!(unused.0, 0);
    h.ft.insert(acc(TOKEN), 3_000_000);
    h.install(USER, 0, vec![]);
    let balance_before = h.contract.storage_balance_of(acc(USER)).0;
    h.fund_storage(OPERATOR, 100 * MILLI);
    assert!(h.claim_via_registry(JobId(1), &active_node()));
    // 0.5 NEAR of work at 3_000_000 units per NEAR = 1_500_000 units.
    let s = h.settle(JobId(1), b"out", usage(100_000, 200_000)).unwrap();
    assert_eq!(s.cost.0, 1_500_000);
    assert_eq!(s.refund.0, 1_500_000);
    let transfers = h.calls("ft_transfer");
    assert_eq!(transfers.len(), 3, "provider, royalty and refund in tokens");
    assert!(
        transfers
            .iter()
            .all(|t| matches!(t, Outflow::Call { to, deposit: 1, .. } if to.as_str() == TOKEN))
    );
    h.install(USER, 0, vec![]);
    let balance_after = h.contract.storage_balance_of(acc(USER)).0;
    assert!(
        balance_after > balance_before,
        "freed storage returns to the balance"
    );
    assert_eq!(
        h.stored_receipt(JobId(1)).unwrap().asset,
        Asset::Ft { token: acc(TOKEN) }
    );
    // Three 1-yocto attachments came out of the contract's own balance.
    h.check_funds();
}

#[test]
fn the_reserve_covers_the_receipt_for_the_longest_accounts() {
    reserve_covers_the_longest_receipt(None);
    // The weights hash's entry is kept too, paid from the same deposit.
    reserve_covers_the_longest_receipt(Some(Hash32([0xee; 32])));
}

fn reserve_covers_the_longest_receipt(weights_hash: Option<Hash32>) {
    let mut h = Harness::new();
    let long_user = format!("{}.near", "u".repeat(59));
    let long_operator = format!("{}.near", "o".repeat(59));
    let view = NodeView {
        operator: acc(&long_operator),
        ..active_node()
    };
    h.fund_storage(&long_operator, 100 * MILLI);
    let estimate = h.storage_estimate();
    let input = vec![7u8; 64];
    let job = JobSpec {
        input: inline(&input),
        ..spec(NEAR)
    };
    let job_id = h
        .call(&long_user, NEAR + estimate, |c| c.try_submit_job(job))
        .unwrap();
    let _ = h.claim(&long_operator, 0, job_id, NODE).unwrap();
    h.callback(vec![ok_result(&Some(view.clone()))], |c| {
        c.on_node_for_claim(job_id, NODE, acc(&long_operator), Ok(Some(view)))
    });
    h.install(&long_user, 0, vec![]);
    let paid = match h.contract.get_job(job_id) {
        Some(crate::state::JobView::Claimed(job)) => {
            assert_eq!(job.storage_source, StorageSource::Attached);
            job.storage_deposit.as_yoctonear()
        }
        other => panic!("{other:?}"),
    };
    let receipt = ResultReceipt {
        subject: ReceiptSubject::Job(job_id),
        model_id: model(),
        input_hash: sha256(&input),
        output_hash: sha256(&[1; 2048]),
        usage: usage(1, 1),
        weights_hash,
    };
    let signature = sign(&node_signing_key(), &receipt);
    let locked_before = h.contract.locked_storage.0;
    let s = h
        .call(RELAYER, 0, |c| {
            c.try_submit_result(
                job_id,
                inline(&[1; 2048]),
                usage(1, 1),
                Some(signature),
                weights_hash,
            )
        })
        .unwrap();
    // What stays (receipt, indexes) is paid from the deposit, with room to spare; the rest
    // goes back with the refund.
    let kept = h.contract.locked_storage.0 - locked_before;
    assert!(kept > 0 && kept < paid, "kept {kept} of {paid} paid");
    assert_eq!(h.sent_near(&long_user), s.refund.0 + paid - kept);
    assert_eq!(h.stored_receipt(job_id).unwrap().weights_hash, weights_hash);
    h.check_funds();
}

const WEIGHTS: Hash32 = Hash32([0xab; 32]);

/// A result's weights hash is part of what the node signs: a relayer can neither drop it,
/// swap it, nor attribute weights to a receipt that named none.
#[test]
fn a_weights_hash_the_node_did_not_sign_is_refused() {
    let mut h = Harness::new();
    let job_id = h.claimed_job(NEAR);
    let with_weights = ResultReceipt {
        weights_hash: Some(WEIGHTS),
        ..h.receipt_for(job_id, b"out", usage(10, 10))
    };
    let signed = sign(&node_signing_key(), &with_weights);
    let plain = sign(
        &node_signing_key(),
        &h.receipt_for(job_id, b"out", usage(10, 10)),
    );
    for (signature, weights) in [
        // Signed with the weights, relayed without them (the v1 layout).
        (signed.clone(), None),
        // Signed with the weights, relayed with others.
        (signed.clone(), Some(Hash32([0xcd; 32]))),
        // Signed without weights, relayed naming some.
        (plain, Some(WEIGHTS)),
    ] {
        let err = h
            .call(RELAYER, 0, |c| {
                c.try_submit_result(
                    job_id,
                    inline(b"out"),
                    usage(10, 10),
                    Some(signature),
                    weights,
                )
            })
            .unwrap_err();
        assert_eq!(err, MarketplaceError::BadSignature { node_id: NODE });
    }
    h.check_funds();
    h.call(RELAYER, 0, |c| {
        c.try_submit_result(
            job_id,
            inline(b"out"),
            usage(10, 10),
            Some(signed),
            Some(WEIGHTS),
        )
    })
    .unwrap();
    h.check_funds();
}

#[test]
fn a_settled_job_shows_the_weights_its_receipt_named() {
    let mut h = Harness::new();
    let with = h.claimed_job(NEAR);
    h.settle_with_weights(with, b"out", usage(10, 10), Some(WEIGHTS))
        .unwrap();
    assert!(
        matches!(&h.events[..], [MarketplaceEvent::JobSettled { job_id, weights_hash: Some(w), .. }]
            if *job_id == with && *w == WEIGHTS),
        "{:?}",
        h.events
    );
    h.check_funds();
    let without = h.submit(spec(NEAR));
    assert_eq!(h.claim(OPERATOR, 0, without, NODE).unwrap(), Some(true));
    h.settle(without, b"out", usage(10, 10)).unwrap();
    assert!(matches!(
        &h.events[..],
        [MarketplaceEvent::JobSettled {
            weights_hash: None,
            ..
        }]
    ));
    h.check_funds();

    assert_eq!(h.stored_receipt(with).unwrap().weights_hash, Some(WEIGHTS));
    assert_eq!(h.stored_receipt(without).unwrap().weights_hash, None);
    // The JSON of a view names the weights only when there are some.
    let json = |h: &mut Harness, id| {
        h.install(USER, 0, vec![]);
        near_sdk::serde_json::to_value(h.contract.get_job(id)).unwrap()
    };
    assert_eq!(json(&mut h, with)["weights_hash"], WEIGHTS.to_string());
    assert!(json(&mut h, without).get("weights_hash").is_none());
    // Pages show them too.
    h.install(USER, 0, vec![]);
    let weights: Vec<_> = h
        .contract
        .jobs_by_user(acc(USER), None, None)
        .into_iter()
        .map(|v| match v {
            crate::state::JobView::Settled(r) => r.weights_hash,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(weights, vec![Some(WEIGHTS), None]);
}

#[test]
fn a_node_signing_the_transaction_names_its_weights_in_the_arguments() {
    let mut h = Harness::new();
    let job_id = h.claimed_job(NEAR);
    h.signed_with(near_key(&node_signing_key()))
        .call(OPERATOR, 0, |c| {
            c.try_submit_result(job_id, inline(b"out"), usage(10, 10), None, Some(WEIGHTS))
        })
        .unwrap();
    let receipt = h.stored_receipt(job_id).unwrap();
    assert_eq!(
        (receipt.signature, receipt.weights_hash),
        (None, Some(WEIGHTS))
    );
    h.check_funds();
}
