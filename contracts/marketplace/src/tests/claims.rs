//! Claims: the registry round trip, the node cache, eligibility, and the callback failure paths.

use super::*;
use crate::state::JobView;
use near_sdk::PromiseError;

fn job_state(h: &mut Harness, job_id: JobId) -> &'static str {
    h.install(RELAYER, 0, vec![]);
    match h.contract.get_job(job_id) {
        Some(JobView::Open(_)) => "open",
        Some(JobView::Claimed(_)) => "claimed",
        Some(JobView::Settled(_)) => "settled",
        None => "gone",
    }
}

/// Runs the claim callback with the registry's `answer`.
fn registry_answers(
    h: &mut Harness,
    job_id: JobId,
    answer: Result<Option<NodeView>, PromiseError>,
) -> bool {
    let result = match &answer {
        Ok(view) => ok_result(view),
        Err(_) => PromiseResult::Failed,
    };
    h.callback(vec![result], |c| {
        c.on_node_for_claim(job_id, NODE, acc(OPERATOR), answer)
    })
}

#[test]
fn a_claim_asks_the_registry_once_then_uses_the_cache() {
    let mut h = Harness::new();
    h.fund_storage(OPERATOR, 100 * MILLI);
    let first = h.submit(spec(NEAR));
    let second = h.submit(spec(NEAR));
    assert!(h.claim_via_registry(first, &active_node()));
    assert_eq!(job_state(&mut h, first), "claimed");
    assert!(matches!(
        &h.events[..],
        [MarketplaceEvent::JobClaimed { node_id: NODE, .. }]
    ));
    h.install(OPERATOR, 0, vec![]);
    let cached = h.contract.get_cached_node(NODE).unwrap();
    assert_eq!(
        cached.valid_until_ns.0,
        T0 + crate::state::Config::DEFAULT_NODE_CACHE_TTL_NS,
        "TTL before attestation expiry"
    );
    let charged = 100 * MILLI - h.contract.storage_balance_of(acc(OPERATOR)).0;
    assert!(
        charged > 0,
        "the cache entry is paid from the operator's storage balance"
    );
    h.check_funds();

    // Cached: synchronous, no registry call.
    let value = h.claim(OPERATOR, 0, second, NODE).unwrap();
    assert_eq!(value, Some(true));
    assert!(h.outflows.is_empty());
    assert_eq!(job_state(&mut h, second), "claimed");

    // A job is claimed once.
    let err = h.claim(OPERATOR, 0, first, NODE).unwrap_err();
    assert!(
        matches!(
            err,
            MarketplaceError::WrongJobState {
                state: "claimed",
                ..
            }
        ),
        "{err}"
    );

    // After the cache TTL the registry is asked again.
    h.advance(3600 * SECOND);
    let third = h.submit(JobSpec {
        deadline_ns: U64(T0 + 7200 * SECOND),
        ..spec(NEAR)
    });
    assert!(h.claim_via_registry(third, &active_node()));
    h.check_funds();
}

#[test]
fn the_cache_never_outlives_the_attestation() {
    let mut h = Harness::new();
    h.fund_storage(OPERATOR, 100 * MILLI);
    let job_id = h.submit(spec(NEAR));
    let expires = T0 + 60 * SECOND;
    assert!(h.claim_via_registry(job_id, &node_view(NodeStatus::Active, expires)));
    h.install(OPERATOR, 0, vec![]);
    assert_eq!(
        h.contract.get_cached_node(NODE).unwrap().valid_until_ns.0,
        expires
    );
}

#[test]
fn a_claim_the_registry_rejects_leaves_the_job_open() {
    let mut h = Harness::new();
    h.fund_storage(OPERATOR, 100 * MILLI);
    let job_id = h.submit(spec(NEAR));
    let expired = node_view(NodeStatus::Active, T0);
    let other_model = NodeView {
        prices: vec![ModelPrice {
            model_id: "other".parse().unwrap(),
            ..price()
        }],
        ..active_node()
    };
    let cases: Vec<(Result<Option<NodeView>, PromiseError>, &str)> = vec![
        (Err(PromiseError::Failed), "registry call for node 7 failed"),
        (Ok(None), "unknown to the registry"),
        (
            Ok(Some(node_view(NodeStatus::Inactive, T0 + 3600 * SECOND))),
            "status is Inactive",
        ),
        (
            Ok(Some(node_view(
                NodeStatus::Deregistered,
                T0 + 3600 * SECOND,
            ))),
            "status is Deregistered",
        ),
        (Ok(Some(expired)), "attestation expired"),
        // Last: this answer is cached (the node is fine, just not for this model).
        (Ok(Some(other_model)), "does not serve model llama-3-8b"),
    ];
    for (answer, reason) in cases {
        let _ = h.claim(OPERATOR, 0, job_id, NODE).unwrap();
        assert!(!registry_answers(&mut h, job_id, answer), "{reason}");
        assert!(
            h.logs.iter().any(|l| l.contains(reason)),
            "{reason} not in {:?}",
            h.logs
        );
        assert_eq!(job_state(&mut h, job_id), "open", "{reason}");
        h.check_funds();
    }
    // A refresh updates the cache; then the claim is synchronous, and only for the operator.
    assert!(h.callback(vec![ok_result(&Some(active_node()))], |c| {
        c.on_node_refreshed(NODE, Ok(Some(active_node())))
    }));
    let err = h.claim("mallory.near", 0, job_id, NODE).unwrap_err();
    assert!(err.to_string().contains("belongs to op.near"), "{err}");
    let claimed = h.claim(OPERATOR, 0, job_id, NODE).unwrap();
    assert_eq!(claimed, Some(true));
    // An ineligible answer evicts what was cached: the operator's storage comes back.
    h.install(OPERATOR, 0, vec![]);
    let after_cache = h.contract.storage_balance_of(acc(OPERATOR)).0;
    h.callback(vec![ok_result(&None::<NodeView>)], |c| {
        c.on_node_refreshed(NODE, Ok(None))
    });
    h.install(OPERATOR, 0, vec![]);
    assert!(h.contract.get_cached_node(NODE).is_none());
    assert!(h.contract.storage_balance_of(acc(OPERATOR)).0 > after_cache);
    h.check_funds();
}

#[test]
fn a_job_taken_while_the_registry_answered_is_not_claimed_twice() {
    let mut h = Harness::new();
    h.fund_storage(OPERATOR, 100 * MILLI);
    let job_id = h.submit(spec(NEAR));
    let _ = h.claim(OPERATOR, 0, job_id, NODE).unwrap();
    assert!(registry_answers(&mut h, job_id, Ok(Some(active_node()))));
    // A second, late registry answer for the same job finds it claimed.
    assert!(!registry_answers(&mut h, job_id, Ok(Some(active_node()))));
    assert!(
        h.logs
            .iter()
            .any(|l| l.contains("is claimed, expected open")),
        "{:?}",
        h.logs
    );
    h.check_funds();
}

#[test]
fn an_operator_without_storage_balance_cannot_be_cached() {
    let mut h = Harness::new();
    let job_id = h.submit(spec(NEAR));
    let _ = h.claim(OPERATOR, 0, job_id, NODE).unwrap();
    assert!(!registry_answers(&mut h, job_id, Ok(Some(active_node()))));
    assert!(
        h.logs
            .iter()
            .any(|l| l.contains("call storage_deposit first")),
        "{:?}",
        h.logs
    );
    assert_eq!(job_state(&mut h, job_id), "open");
    h.check_funds();
}

#[test]
fn targets_and_filters_decide_who_may_claim() {
    let mut h = Harness::new();
    h.fund_storage(OPERATOR, 100 * MILLI);
    let for_other = h.submit(JobSpec {
        target: JobTarget::Node {
            node_id: NodeId(99),
        },
        ..spec(NEAR)
    });
    let err = h.claim(OPERATOR, 0, for_other, NODE).unwrap_err();
    assert!(err.to_string().contains("is for another node"), "{err}");

    let filtered = |region: Option<&str>, gpu: Option<&str>, max: Option<u128>| JobSpec {
        target: JobTarget::Any {
            region: region.map(Into::into),
            gpu_model: gpu.map(Into::into),
            max_price_per_million: max.map(U128),
        },
        ..spec(NEAR)
    };
    let wrong_region = h.submit(filtered(Some("us"), None, None));
    let wrong_gpu = h.submit(filtered(None, Some("B200"), None));
    let too_cheap = h.submit(filtered(None, None, Some(NEAR)));
    let fits = h.submit(filtered(Some("EU"), Some("h100"), Some(2 * NEAR)));
    let mine = h.submit(JobSpec {
        target: JobTarget::Node { node_id: NODE },
        ..spec(NEAR)
    });

    h.install(OPERATOR, 0, vec![]);
    // Not cached yet: only the target is known.
    assert_eq!(h.contract.open_jobs_for_node(NODE, None, None).len(), 5);
    assert!(h.claim_via_registry(mine, &active_node()));
    h.install(OPERATOR, 0, vec![]);
    let visible: Vec<JobId> = h
        .contract
        .open_jobs_for_node(NODE, None, None)
        .into_iter()
        .map(|j| j.job_id)
        .collect();
    assert_eq!(visible, vec![fits]);
    for (job_id, reason) in [
        (wrong_region, "region"),
        (wrong_gpu, "no B200 GPU"),
        (too_cheap, "above the cap"),
    ] {
        let err = h.claim(OPERATOR, 0, job_id, NODE).unwrap_err();
        assert!(err.to_string().contains(reason), "{err}");
    }
    assert_eq!(h.claim(OPERATOR, 0, fits, NODE).unwrap(), Some(true));
    h.check_funds();
}

#[test]
fn claims_are_refused_past_the_claim_deadline_or_with_a_deposit() {
    let mut h = Harness::new();
    let job_id = h.submit(spec(NEAR));
    let err = h.claim(OPERATOR, 5, job_id, NODE).unwrap_err();
    assert!(
        matches!(err, MarketplaceError::UnexpectedDeposit(_)),
        "{err}"
    );
    h.advance(10 * 60 * SECOND + 1);
    let err = h.claim(OPERATOR, 0, job_id, NODE).unwrap_err();
    assert!(
        err.to_string().contains("passed its claim deadline"),
        "{err}"
    );
    assert_eq!(
        h.claim(OPERATOR, 0, JobId(42), NODE).unwrap_err(),
        MarketplaceError::JobNotFound(JobId(42))
    );
}

#[test]
fn the_node_cache_entry_size_matches_what_the_chain_charges() {
    let mut h = Harness::new();
    h.fund_storage(OPERATOR, 100 * MILLI);
    // Measure with the chain's own counter around a refresh callback.
    h.install(MARKET, 0, vec![ok_result(&Some(active_node()))]);
    let before = env::storage_usage();
    assert!(h.contract.on_node_refreshed(NODE, Ok(Some(active_node()))));
    let measured = env::storage_usage() - before;
    let node = h.contract.get_cached_node(NODE).unwrap();
    assert_eq!(node.storage_bytes.0, measured);
}
