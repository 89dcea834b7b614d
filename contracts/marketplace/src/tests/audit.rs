//! The audit's attacks on jobs and claims (issue 15, findings 1, 3 and 5), each replayed as
//! the attacker would run it. They failed on the code before the fixes.

use super::*;
use crate::state::Config;

fn slash_args(h: &Harness) -> near_sdk::serde_json::Value {
    let calls = h.calls("slash");
    let [Outflow::Call { args, .. }] = calls[..] else {
        panic!("expected one slash call, got {calls:?}");
    };
    near_sdk::serde_json::from_str(args).unwrap()
}

fn window() -> u64 {
    Config::DEFAULT_MIN_ANSWER_WINDOW_NS
}

/// Finding 1: a user aims a 1-yocto job with a deadline 2 s away at a node, hoping it is
/// claimed at the last moment and then can never be answered, and has the node slashed.
#[test]
fn slash_farming_finds_no_job_that_cannot_be_answered_after_its_claim() {
    let mut h = Harness::new();
    let aimed = |deadline_ns: u64, claim_deadline_ns: Option<u64>| JobSpec {
        target: JobTarget::Node { node_id: NODE },
        deadline_ns: U64(deadline_ns),
        claim_deadline_ns: claim_deadline_ns.map(U64),
        ..spec(1)
    };
    let deposit = 1 + h.storage_estimate();
    for (deadline, claim_deadline, field) in [
        // No time to answer at all.
        (h.now + 2 * SECOND, None, "deadline_ns"),
        // A claim deadline that leaves less than the answer window.
        (
            h.now + 3600 * SECOND,
            Some(h.now + 3600 * SECOND - window() + 1),
            "claim_deadline_ns",
        ),
    ] {
        let err = h
            .call(USER, deposit, |c| {
                c.try_submit_job(aimed(deadline, claim_deadline))
            })
            .unwrap_err();
        assert!(
            matches!(&err, MarketplaceError::InvalidArgument { field: f, .. } if *f == field),
            "{err}"
        );
    }
    // The default claim deadline leaves the window too.
    let deadline = h.now + window() + 5 * SECOND;
    let job_id = h.submit(aimed(deadline, None));
    h.install(USER, 0, vec![]);
    let Some(crate::state::JobView::Open(job)) = h.contract.get_job(job_id) else {
        panic!("open job expected");
    };
    assert_eq!(job.claim_deadline_ns.0, deadline - window());
    h.check_funds();
}

/// Finding 1, the other half: should a node miss a deadline it had time for, the user gets
/// at most what they put at risk, never the fixed `slash_amount` for a 1-yocto job.
#[test]
fn a_slash_never_pays_the_user_more_than_the_job_risked() {
    let mut h = Harness::new();
    // 1 milliNEAR at risk, slash_amount is 1 NEAR.
    let job_id = h.claimed_job(MILLI);
    h.advance(3600 * SECOND + 1);
    h.call(RELAYER, 0, |c| c.try_cancel_job(job_id)).unwrap();
    assert_eq!(slash_args(&h)["amount"], MILLI.to_string());
    h.check_funds();

    // A token job: 3,000 units at 3,000,000 units per NEAR is worth 1 milliNEAR.
    h.install(USER, 0, vec![]);
    let rates = h.contract.accepted_tokens();
    assert_eq!(rates[0].1.units_per_near.0, 3_000_000, "{rates:?}");
    h.fund_storage(USER, 50 * MILLI);
    let msg = near_sdk::serde_json::json!({ "submit_job": {
        "model_id": model(),
        "price_cap": "3000",
        "deadline_ns": U64(h.now + 3600 * SECOND),
        "target": JobTarget::Node { node_id: NODE },
        "input": inline(b"ciphertext for the node"),
        "user_key": "cd".repeat(32),
    }})
    .to_string();
    let unused = h
        .call(TOKEN, 0, |c| {
            c.try_ft_on_transfer(acc(USER), U128(3_000), msg)
        })
        .unwrap();
    assert!(matches!(unused, near_sdk::PromiseOrValue::Value(U128(0))));
    *h.ft.entry(acc(TOKEN)).or_default() += 3_000;
    let token_job = h.contract.next_job_id.0 - 1;
    let token_job = JobId(token_job);
    assert_eq!(h.claim(OPERATOR, 0, token_job, NODE).unwrap(), None);
    assert!(h.callback(vec![ok_result(&Some(active_node()))], |c| {
        c.on_node_for_claim(token_job, NODE, acc(OPERATOR), Ok(Some(active_node())))
    }));
    h.advance(3600 * SECOND + 1);
    h.call(RELAYER, 0, |c| c.try_cancel_job(token_job)).unwrap();
    assert_eq!(slash_args(&h)["amount"], MILLI.to_string());
    h.check_funds();
}

/// Finding 3: one staked node claimed every open job (40 of 40) and answered none.
#[test]
fn a_node_is_held_to_its_capacity() {
    let mut h = Harness::new();
    h.fund_storage(OPERATOR, 100 * MILLI);
    let capacity = active_node().capacity;
    let jobs: Vec<JobId> = (0..capacity + 2).map(|_| h.submit(spec(NEAR))).collect();
    assert!(h.claim_via_registry(jobs[0], &active_node()));
    for job_id in &jobs[1..capacity as usize] {
        assert_eq!(h.claim(OPERATOR, 0, *job_id, NODE).unwrap(), Some(true));
    }
    let over = jobs[capacity as usize];
    let err = h.claim(OPERATOR, 0, over, NODE).unwrap_err();
    assert!(
        matches!(err, MarketplaceError::NodeAtCapacity { in_flight, capacity: c, .. }
            if in_flight == capacity && c == capacity),
        "{err}"
    );
    h.check_funds();

    // A settled job frees its slot.
    h.settle(jobs[0], b"answer", usage(10, 10)).unwrap();
    assert_eq!(h.claim(OPERATOR, 0, over, NODE).unwrap(), Some(true));
    let next = jobs[capacity as usize + 1];
    assert!(h.claim(OPERATOR, 0, next, NODE).is_err());
    h.check_funds();
}

/// A node that publishes no capacity (0) gets the marketplace's default, not unlimited.
#[test]
fn a_node_without_a_published_capacity_gets_the_default() {
    let mut h = Harness::new();
    h.fund_storage(OPERATOR, 100 * MILLI);
    let view = NodeView {
        capacity: 0,
        ..active_node()
    };
    let default = Config::DEFAULT_NODE_CAPACITY;
    let jobs: Vec<JobId> = (0..=default).map(|_| h.submit(spec(NEAR))).collect();
    assert!(h.claim_via_registry(jobs[0], &view));
    for job_id in &jobs[1..default as usize] {
        assert_eq!(h.claim(OPERATOR, 0, *job_id, NODE).unwrap(), Some(true));
    }
    let err = h
        .claim(OPERATOR, 0, jobs[default as usize], NODE)
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::NodeAtCapacity { .. }),
        "{err}"
    );
}

/// Finding 3: a slashed node stayed in the cache and kept claiming until its TTL.
#[test]
fn a_node_slashed_for_a_missed_deadline_must_ask_the_registry_again() {
    let mut h = Harness::new();
    let job_id = h.claimed_job(NEAR);
    let next = h.submit(JobSpec {
        deadline_ns: U64(h.now + 7200 * SECOND),
        claim_deadline_ns: Some(U64(h.now + 7000 * SECOND)),
        ..spec(NEAR)
    });
    h.advance(3600 * SECOND + 1);
    h.call(RELAYER, 0, |c| c.try_cancel_job(job_id)).unwrap();
    h.install(USER, 0, vec![]);
    assert!(h.contract.get_cached_node(NODE).is_none(), "still cached");
    // Its next claim goes to the registry (which now reports its post-slash status).
    assert_eq!(h.claim(OPERATOR, 0, next, NODE).unwrap(), None);
    assert_eq!(h.calls("get_node").len(), 1);
    h.check_funds();
}

/// Finding 3: a node the registry stopped listing as active (missed heartbeats, revoked by a
/// policy change) kept claiming from the marketplace's cache for up to an hour. The cache is
/// trusted for one registry heartbeat interval at most; then a claim asks the registry again,
/// and an inactive node is refused and evicted.
#[test]
fn an_inactive_node_is_trusted_from_the_cache_for_one_heartbeat_interval_at_most() {
    let mut h = Harness::new();
    h.claimed_job(NEAR);
    let later = |h: &Harness| JobSpec {
        deadline_ns: U64(h.now + 7200 * SECOND),
        claim_deadline_ns: Some(U64(h.now + 7000 * SECOND)),
        ..spec(NEAR)
    };
    let next = h.submit(later(&h));
    // The registry now lists the node as inactive; five minutes after the marketplace asked.
    h.advance(5 * 60 * SECOND + 1);
    assert_eq!(
        h.claim(OPERATOR, 0, next, NODE).unwrap(),
        None,
        "claimed from a cache older than a heartbeat interval"
    );
    assert_eq!(h.calls("get_node").len(), 1);
    let inactive = node_view(NodeStatus::Inactive, T0 + 30 * 24 * 3600 * SECOND);
    assert!(!h.callback(vec![ok_result(&Some(inactive.clone()))], |c| {
        c.on_node_for_claim(next, NODE, acc(OPERATOR), Ok(Some(inactive.clone())))
    }));
    h.install(USER, 0, vec![]);
    assert!(h.contract.get_cached_node(NODE).is_none(), "still cached");
    h.check_funds();
}

/// Finding 5: the price filter looked at the output price only, so a node asking a huge
/// input price passed it and charged the whole cap.
#[test]
fn the_price_filter_bounds_every_token_price() {
    let mut h = Harness::new();
    h.fund_storage(OPERATOR, 100 * MILLI);
    let greedy_input = NodeView {
        prices: vec![ModelPrice {
            input_per_million: U128(1_000 * NEAR),
            ..price()
        }],
        ..active_node()
    };
    let job_id = h.submit(JobSpec {
        target: JobTarget::Any {
            region: None,
            gpu_model: None,
            max_price_per_million: Some(U128(2 * NEAR)),
        },
        ..spec(NEAR)
    });
    assert!(!h.claim_via_registry(job_id, &greedy_input));
    assert!(
        h.logs.iter().any(|l| l.contains("above the cap")),
        "{:?}",
        h.logs
    );
    h.check_funds();
}

/// Finding 8: `pay` clamped `held` at zero, so paying out more than the ledger held went
/// unnoticed; now it is an accounting error that fails the call.
#[test]
fn paying_more_than_the_ledger_holds_is_an_error_not_a_clamp() {
    let mut h = Harness::new();
    let job_id = h.submit(spec(NEAR));
    h.install(USER, 0, vec![]);
    let held = h.contract.funds().assets[0].ledger.held.0;
    let err = h
        .call(RELAYER, 0, |c| {
            c.pay(vec![crate::state::Payout {
                account: acc(USER),
                asset: Asset::Near,
                amount: U128(held + 1),
                kind: crate::state::PayoutKind::Transfer,
            }])
            .map(|_| ())
        })
        .unwrap_err();
    assert!(matches!(err, MarketplaceError::Overflow(_)), "{err}");
    h.check_funds();
    h.call(USER, 1, |c| c.try_cancel_job(job_id)).unwrap();
    h.check_funds();
}
