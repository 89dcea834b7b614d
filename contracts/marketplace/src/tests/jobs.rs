//! Submitting (NEAR and token) and cancelling jobs.

use super::*;
use crate::state::{JobView, StorageSource};
use enclave_cloud_common::events::marketplace::CancelReason;
use near_sdk::PromiseOrValue;

fn open_job(h: &mut Harness, job_id: JobId) -> crate::state::Job {
    h.install(RELAYER, 0, vec![]);
    match h.contract.get_job(job_id) {
        Some(JobView::Open(job)) => job,
        other => panic!("job {job_id} is not open: {other:?}"),
    }
}

#[test]
fn submit_in_near_escrows_the_cap_and_refunds_the_excess() {
    let mut h = Harness::new();
    let estimate = h.storage_estimate();
    let job_id = h
        .call(USER, NEAR + estimate, |c| c.try_submit_job(spec(NEAR)))
        .unwrap();
    assert_eq!(job_id, JobId(1));
    let job = open_job(&mut h, job_id);
    let storage = job.storage_deposit.as_yoctonear();
    assert!(
        storage > 0 && storage <= estimate,
        "{storage} within the estimate {estimate}"
    );
    assert_eq!(
        h.sent_near(USER),
        estimate - storage,
        "the excess is refunded"
    );
    assert_eq!(job.storage_source, StorageSource::Attached);
    assert_eq!(job.input_hash, sha256(b"ciphertext for the node"));
    assert!(matches!(
        h.events[0],
        MarketplaceEvent::JobSubmitted {
            job_id: JobId(1),
            ..
        }
    ));
    h.check_funds();
    let next = h.submit(spec(NEAR));
    assert_eq!(next, JobId(2));
    h.check_funds();
}

#[test]
fn submit_refuses_bad_jobs_without_a_trace() {
    let mut h = Harness::new();
    let estimate = h.storage_estimate();
    // One byte over the default inline limit.
    let over = crate::state::Config::DEFAULT_MAX_INLINE_BYTES as usize + 1;
    let over_message = format!("{over} bytes");
    let cases: Vec<(JobSpec, u128, &str)> = vec![
        (spec(0), estimate, "price cap must be more than zero"),
        (spec(NEAR), NEAR, "need at least"),
        (
            JobSpec {
                deadline_ns: U64(T0),
                ..spec(NEAR)
            },
            NEAR + estimate,
            "deadline_ns",
        ),
        (
            JobSpec {
                deadline_ns: U64(T0 + 2 * 24 * 3600 * SECOND),
                ..spec(NEAR)
            },
            NEAR + estimate,
            "deadline_ns",
        ),
        (
            JobSpec {
                claim_deadline_ns: Some(U64(T0 + 7200 * SECOND)),
                ..spec(NEAR)
            },
            NEAR + estimate,
            "claim_deadline_ns",
        ),
        (
            JobSpec {
                user_key: "xyz".into(),
                ..spec(NEAR)
            },
            NEAR + estimate,
            "user_key",
        ),
        (
            JobSpec {
                input: inline(&vec![1; over]),
                ..spec(NEAR)
            },
            NEAR + estimate,
            &over_message,
        ),
        (
            JobSpec {
                input: inline(&[]),
                ..spec(NEAR)
            },
            NEAR + estimate,
            "0 bytes",
        ),
        (
            JobSpec {
                input: InputRef::Remote {
                    hash: Hash32([1; 32]),
                    uri: "x".repeat(513),
                },
                ..spec(NEAR)
            },
            NEAR + estimate,
            "uri",
        ),
        (
            JobSpec {
                target: JobTarget::Any {
                    region: Some(String::new()),
                    gpu_model: None,
                    max_price_per_million: None,
                },
                ..spec(NEAR)
            },
            NEAR + estimate,
            "target.region",
        ),
    ];
    for (job, deposit, expected) in cases {
        let err = h
            .call(USER, deposit, |c| c.try_submit_job(job))
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err} should mention {expected}");
    }
    h.check_funds();
    // Nothing was left behind: the next job still gets id 1.
    assert_eq!(h.submit(spec(NEAR)), JobId(1));
}

#[test]
fn a_remote_input_is_referenced_by_its_hash() {
    let mut h = Harness::new();
    let input = InputRef::Remote {
        hash: Hash32([5; 32]),
        uri: "ipfs://bafy".into(),
    };
    let job_id = h.submit(JobSpec {
        input,
        ..spec(NEAR)
    });
    assert_eq!(open_job(&mut h, job_id).input_hash, Hash32([5; 32]));
}

fn ft_msg(spec: &JobSpec) -> String {
    near_sdk::serde_json::json!({ "submit_job": {
        "model_id": spec.model_id,
        "price_cap": spec.price_cap,
        "deadline_ns": spec.deadline_ns,
        "target": spec.target,
        "input": spec.input,
        "user_key": spec.user_key,
    }})
    .to_string()
}

/// A token transfer arrives: the token contract credits the marketplace, then calls it.
fn ft_submit(
    h: &mut Harness,
    token: &str,
    amount: u128,
    msg: String,
) -> Result<U128, MarketplaceError> {
    let result = h.call(token, 0, |c| {
        c.try_ft_on_transfer(acc(USER), U128(amount), msg)
            .map(|v| match v {
                PromiseOrValue::Value(v) => v,
                PromiseOrValue::Promise(_) => panic!("no promise expected"),
            })
    });
    // NEP-141: what is returned (or everything, on failure) goes back to the sender.
    let kept = result.as_ref().map_or(0, |unused| amount - unused.0);
    *h.ft.entry(acc(token)).or_default() += kept;
    result
}

#[test]
fn token_jobs_take_storage_from_the_balance_and_return_unused_tokens() {
    let mut h = Harness::new();
    let msg = ft_msg(&spec(1_000_000));
    let err = ft_submit(&mut h, TOKEN, 1_500_000, msg.clone()).unwrap_err();
    assert!(
        matches!(err, MarketplaceError::InsufficientStorageBalance { .. }),
        "{err}"
    );
    h.fund_storage(USER, 50 * MILLI);
    let unused = ft_submit(&mut h, TOKEN, 1_500_000, msg.clone()).unwrap();
    assert_eq!(unused, U128(500_000));
    let job = open_job(&mut h, JobId(1));
    assert_eq!(job.asset, Asset::Ft { token: acc(TOKEN) });
    assert_eq!(job.price_cap, U128(1_000_000));
    assert_eq!(job.storage_source, StorageSource::Balance);
    h.install(USER, 0, vec![]);
    let balance = h.contract.storage_balance_of(acc(USER)).0;
    assert!(balance < 50 * MILLI - job.storage_deposit.as_yoctonear() + 1);
    h.check_funds();

    let err = ft_submit(&mut h, "fake.near", 1_000_000, msg.clone()).unwrap_err();
    assert_eq!(err, MarketplaceError::TokenNotAccepted(acc("fake.near")));
    let err = ft_submit(&mut h, TOKEN, 999_999, msg).unwrap_err();
    assert!(
        err.to_string().contains("more than the 999999 transferred"),
        "{err}"
    );
    let err = ft_submit(&mut h, TOKEN, 10, "{\"buy\":1}".into()).unwrap_err();
    assert!(
        matches!(err, MarketplaceError::BadTransferMessage(_)),
        "{err}"
    );
    h.check_funds();
}

#[test]
fn the_user_cancels_before_a_claim_with_one_yocto_and_gets_everything_back() {
    let mut h = Harness::new();
    let job_id = h.submit(spec(NEAR));
    let storage = open_job(&mut h, job_id).storage_deposit.as_yoctonear();
    assert_eq!(
        h.call(USER, 0, |c| c.try_cancel_job(job_id)).unwrap_err(),
        MarketplaceError::OneYoctoRequired
    );
    let err = h
        .call(RELAYER, 0, |c| c.try_cancel_job(job_id))
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::NotCancellable { .. }),
        "{err}"
    );
    h.call(USER, 1, |c| c.try_cancel_job(job_id)).unwrap();
    // Everything comes back, storage included: the job left no bytes behind.
    assert_eq!(h.sent_near(USER), NEAR + storage);
    assert!(matches!(
        h.events[..],
        [MarketplaceEvent::JobCancelled {
            reason: CancelReason::ByUser,
            slashed: None,
            ..
        }]
    ));
    h.install(USER, 0, vec![]);
    assert_eq!(h.contract.get_job(job_id), None);
    assert!(h.contract.jobs_by_user(acc(USER), None, None).is_empty());
    h.check_funds();
    assert_eq!(
        h.call(USER, 1, |c| c.try_cancel_job(job_id)).unwrap_err(),
        MarketplaceError::JobNotFound(job_id)
    );
}

#[test]
fn anyone_cancels_an_unclaimed_job_after_its_claim_window() {
    let mut h = Harness::new();
    let job_id = h.submit(spec(NEAR));
    h.advance(10 * 60 * SECOND + 1);
    let err = h
        .call(RELAYER, 2, |c| c.try_cancel_job(job_id))
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::UnexpectedDeposit(_)),
        "{err}"
    );
    h.call(RELAYER, 0, |c| c.try_cancel_job(job_id)).unwrap();
    assert!(h.sent_near(USER) > NEAR);
    assert!(matches!(
        h.events[..],
        [MarketplaceEvent::JobCancelled {
            reason: CancelReason::Unclaimed,
            ..
        }]
    ));
    h.check_funds();
}

#[test]
fn a_missed_deadline_refunds_the_user_and_slashes_the_node() {
    let mut h = Harness::new();
    let job_id = h.claimed_job(NEAR);
    let err = h
        .call(RELAYER, 0, |c| c.try_cancel_job(job_id))
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::NotCancellable { .. }),
        "{err}"
    );
    h.advance(3600 * SECOND + 1);
    h.call(RELAYER, 0, |c| c.try_cancel_job(job_id)).unwrap();
    assert!(h.sent_near(USER) > NEAR, "cap and storage refunded");
    let slash = h.calls("slash");
    assert!(
        matches!(slash[..], [Outflow::Call { to, args, deposit: 0, .. }]
        if to.as_str() == REGISTRY && args.contains("\"beneficiary\":\"alice.near\"") && args.contains("\"node_id\":\"7\""))
    );
    assert_eq!(
        h.self_calls,
        vec!["on_payouts".to_owned(), "on_slashed".to_owned()]
    );
    h.check_funds();
    // The registry slashed 1 NEAR: the event reports it.
    h.callback(vec![ok_result(&NearToken::from_near(1))], |c| {
        c.on_slashed(job_id, U128(NEAR), Ok(NearToken::from_near(1)))
    });
    assert!(matches!(&h.events[..], [MarketplaceEvent::JobCancelled {
        reason: CancelReason::DeadlineMissed, slashed: Some(s), .. }] if s.0 == NEAR));
    // A refused slash is reported as none.
    h.callback(vec![PromiseResult::Failed], |c| {
        c.on_slashed(job_id, U128(NEAR), Err(near_sdk::PromiseError::Failed))
    });
    assert!(matches!(
        &h.events[..],
        [MarketplaceEvent::JobCancelled { slashed: None, .. }]
    ));
    h.install(USER, 0, vec![]);
    assert!(h.contract.jobs_by_node(NODE, None, None).is_empty());
    h.check_funds();
}

#[test]
fn paused_marketplace_takes_no_new_jobs_but_lets_users_leave() {
    let mut h = Harness::new();
    let job_id = h.submit(spec(NEAR));
    let patch = crate::state::ConfigPatch {
        paused: Some(true),
        ..Default::default()
    };
    h.call(OWNER, 1, |c| c.try_update_config(patch)).unwrap();
    let estimate = h.storage_estimate();
    assert_eq!(
        h.call(USER, NEAR + estimate, |c| c.try_submit_job(spec(NEAR)))
            .unwrap_err(),
        MarketplaceError::Paused
    );
    assert_eq!(
        h.claim(OPERATOR, 0, job_id, NODE).unwrap_err(),
        MarketplaceError::Paused
    );
    h.call(USER, 1, |c| c.try_cancel_job(job_id)).unwrap();
    h.check_funds();
}

#[test]
fn the_last_job_of_an_index_set_gets_back_the_header_an_earlier_job_paid() {
    // Found on localnet: two jobs of one user, the first claimed. The user's index set was
    // paid by the first job and stayed (locked) when it was cancelled; cancelling the second
    // freed more bytes than that job was charged ("amount overflow in storage bytes").
    let mut h = Harness::new();
    let first = h.submit(spec(NEAR));
    let second = h.submit(spec(NEAR));
    let deposits = open_job(&mut h, first).storage_deposit.as_yoctonear()
        + open_job(&mut h, second).storage_deposit.as_yoctonear();
    h.fund_storage(OPERATOR, 100 * MILLI);
    assert!(h.claim_via_registry(first, &active_node()));
    h.advance(3600 * SECOND + 1);
    h.call(RELAYER, 0, |c| c.try_cancel_job(first)).unwrap();
    let mut refunded = h.sent_near(USER);
    h.check_funds();
    h.call(RELAYER, 0, |c| c.try_cancel_job(second)).unwrap();
    refunded += h.sent_near(USER);
    h.check_funds();
    // Every byte both jobs used is free again: both caps and both deposits came back.
    assert_eq!(refunded, 2 * NEAR + deposits);
    h.install(USER, 0, vec![]);
    assert!(h.contract.jobs_by_user(acc(USER), None, None).is_empty());
}
