use super::*;
use near_sdk::PromiseResult;

#[test]
fn deposit_creates_an_operator_paying_its_storage() {
    let mut r = registry();
    Call::by(op()).set();
    assert_eq!(
        r.try_deposit_stake().expect_err("zero"),
        RegistryError::ZeroStake
    );
    assert!(r.get_operator(op()).is_none());

    Call::by(op()).deposit(near(15)).set();
    assert_eq!(r.try_deposit_stake().expect("stake"), near(15));
    assert_eq!(
        events(),
        vec![RegistryEvent::StakeDeposited {
            operator: op(),
            amount: near(15),
            total: near(15)
        }]
    );
    let view = r.get_operator(op()).expect("operator");
    assert_eq!(view.stake, near(15));
    assert!(
        !view.storage_cost.is_zero(),
        "the operator record is paid from the stake"
    );
    assert!(view.required_stake.is_zero());

    Call::by(op()).deposit(near(5)).set();
    assert_eq!(r.try_deposit_stake().expect("top up"), near(20));
}

#[test]
fn unstake_needs_one_yocto_and_keeps_nodes_covered() {
    let (mut r, _) = with_node();
    let view = r.get_operator(op()).expect("operator");
    let free = view.stake.saturating_sub(view.storage_cost);
    let max = free.saturating_sub(near(MIN_STAKE));

    Call::by(op()).set();
    assert_eq!(
        r.try_request_unstake(near(1)).expect_err("no yocto"),
        RegistryError::OneYoctoRequired(0)
    );
    Call::by(acc("nobody.near")).yocto().set();
    assert!(matches!(
        r.try_request_unstake(near(1)),
        Err(RegistryError::UnknownOperator(_))
    ));
    Call::by(op()).yocto().set();
    assert!(matches!(
        r.try_request_unstake(yocto(0)),
        Err(RegistryError::InvalidInput { .. })
    ));
    let too_much = max.saturating_add(yocto(1));
    let err = r.try_request_unstake(too_much).expect_err("too much");
    assert_eq!(
        err,
        RegistryError::UnstakeTooLarge {
            operator: op(),
            requested: too_much,
            max,
            nodes: 1
        }
    );

    let before = snapshot(&r);
    Call::by(op()).yocto().at(T0 + 5 * SEC).set();
    let unlocks = r.try_request_unstake(max).expect("unstake");
    assert_eq!(unlocks.0, T0 + 5 * SEC + DAY);
    assert_ne!(snapshot(&r), before);
    let view = r.get_operator(op()).expect("operator");
    assert_eq!(view.unbonding, max);
    assert_eq!(
        events(),
        vec![RegistryEvent::UnstakeRequested {
            operator: op(),
            amount: max,
            unlocks_at_ns: unlocks
        }]
    );
}

#[test]
fn withdraw_after_the_unbonding_delay_and_restore_on_failed_transfer() {
    let mut r = registry();
    stake(&mut r, op(), near(50));
    Call::by(op()).yocto().set();
    assert_eq!(
        r.try_withdraw().map(|_| ()).expect_err("nothing"),
        RegistryError::NothingToWithdraw(op())
    );
    r.try_request_unstake(near(30)).expect("unstake");

    Call::by(op()).yocto().at(T0 + DAY - 1).set();
    let err = r.try_withdraw().map(|_| ()).expect_err("too early");
    assert_eq!(
        err,
        RegistryError::StillUnbonding {
            operator: op(),
            unlocks_at_ns: T0 + DAY,
            now_ns: T0 + DAY - 1
        }
    );
    Call::by(op()).at(T0 + DAY).set();
    assert_eq!(
        r.try_withdraw().map(|_| ()).expect_err("no yocto"),
        RegistryError::OneYoctoRequired(0)
    );

    Call::by(op()).yocto().at(T0 + DAY).set();
    let _ = r.try_withdraw().expect("withdraw");
    let view = r.get_operator(op()).expect("operator");
    assert!(
        view.unbonding.is_zero() && view.withdrawing,
        "state updated before the transfer"
    );
    assert_eq!(
        r.try_withdraw().map(|_| ()).expect_err("in flight"),
        RegistryError::WithdrawalInFlight(op())
    );
    Call::by(op()).yocto().at(T0 + DAY).set();
    assert_eq!(
        r.try_request_unstake(near(1)).expect_err("in flight"),
        RegistryError::WithdrawalInFlight(op())
    );

    // The transfer failed: the amount is withdrawable again.
    Call::by(acc("registry.near")).set_callback(vec![PromiseResult::Failed]);
    r.on_withdraw(op(), near(30));
    let view = r.get_operator(op()).expect("operator");
    assert_eq!((view.unbonding, view.withdrawing), (near(30), false));
    assert!(events().is_empty());

    Call::by(op()).yocto().at(T0 + DAY).set();
    let _ = r.try_withdraw().expect("withdraw again");
    Call::by(acc("registry.near")).set_callback(vec![PromiseResult::Successful(vec![])]);
    r.on_withdraw(op(), near(30));
    let view = r.get_operator(op()).expect("operator");
    assert_eq!(
        (view.unbonding, view.withdrawing, view.stake),
        (yocto(0), false, near(20))
    );
    assert_eq!(
        events(),
        vec![RegistryEvent::StakeWithdrawn {
            operator: op(),
            amount: near(30)
        }]
    );
}

#[test]
fn slash_only_by_the_marketplace() {
    let (mut r, id) = with_node();
    Call::by(market()).set();
    let err = r
        .try_slash(id, near(1), acc("user.near"))
        .expect_err("no marketplace configured");
    assert!(err.to_string().contains("(none configured)"), "{err}");
    Call::by(owner()).yocto().set();
    r.try_set_marketplace(market()).expect("set");
    for caller in [owner(), op(), acc("user.near")] {
        Call::by(caller.clone()).set();
        let before = snapshot(&r);
        let err = r
            .try_slash(id, near(1), caller.clone())
            .expect_err("not marketplace");
        assert_eq!(
            err,
            RegistryError::NotMarketplace {
                expected: market().to_string(),
                caller
            }
        );
        assert_eq!(snapshot(&r), before);
    }
    Call::by(market()).set();
    assert_eq!(
        r.try_slash(NodeId(99), near(1), op()).expect_err("unknown"),
        RegistryError::UnknownNode(NodeId(99))
    );
}

#[test]
fn slash_takes_bonded_then_unbonding_stake_but_never_storage() {
    let (mut r, id) = with_node();
    Call::by(owner()).yocto().set();
    r.try_set_marketplace(market()).expect("set");
    // Unstake everything above the minimum the node needs.
    let view = r.get_operator(op()).expect("operator");
    let unbonding = view
        .stake
        .saturating_sub(view.storage_cost)
        .saturating_sub(near(MIN_STAKE));
    Call::by(op()).yocto().set();
    r.try_request_unstake(unbonding).expect("unstake");

    // Within the bonded stake.
    Call::by(market()).set();
    assert_eq!(
        r.try_slash(id, near(5), acc("user.near")).expect("slash"),
        near(5)
    );
    // Free stake is now below the minimum: the node stops taking jobs. The one event says so
    // for all of the operator's nodes (no status event per node).
    assert_eq!(
        events(),
        vec![RegistryEvent::NodeSlashed {
            node_id: id,
            operator: op(),
            amount: near(5),
            beneficiary: acc("user.near"),
            stake: Some(view.stake.saturating_sub(unbonding).saturating_sub(near(5))),
            under_staked: true,
        }]
    );
    assert_eq!(status(&r, id), NodeStatus::Inactive);

    // Beyond it: the rest of the bonded stake, then the unbonding stake; storage stays paid.
    Call::by(market()).set();
    let slashed = r
        .try_slash(id, near(1_000), acc("user.near"))
        .expect("slash all");
    assert_eq!(slashed, near(MIN_STAKE - 5).saturating_add(unbonding));
    let view = r.get_operator(op()).expect("operator");
    assert_eq!(view.stake, view.storage_cost);
    assert!(view.unbonding.is_zero());
    Call::by(market()).set();
    assert_eq!(
        r.try_slash(id, near(1), acc("user.near"))
            .expect("nothing left"),
        yocto(0)
    );
    assert!(events().is_empty());

    // Staking again revives the node.
    Call::by(op()).deposit(near(MIN_STAKE)).set();
    r.try_deposit_stake().expect("top up");
    assert_eq!(status(&r, id), NodeStatus::Active);
    assert!(events().contains(&RegistryEvent::NodeStatusChanged {
        node_id: id,
        status: NodeStatus::Active
    }));
}

/// What `on_payout` stored for a failed payout, and what those bytes cost.
fn failed_payout(r: &mut Registry, user: &AccountId, amount: NearToken) -> NearToken {
    Call::by(acc("registry.near")).set_callback(vec![PromiseResult::Failed]);
    let before = r.storage_mark();
    r.on_payout(user.clone(), amount);
    let grown = r.storage_mark() - before;
    near_sdk::env::storage_byte_cost().saturating_mul(u128::from(grown))
}

/// Audit finding 7: a failed slash payout's credit entry was stored at the registry's
/// expense. The credit now pays for its own entry (that part is locked while it exists) and
/// the claim pays everything back, so the beneficiary still receives every yocto.
#[test]
fn failed_payout_becomes_a_claimable_credit_that_pays_for_its_entry() {
    let mut r = registry();
    let user = acc("user.near");
    Call::by(user.clone()).set();
    assert_eq!(
        r.try_claim_credit().expect_err("none"),
        RegistryError::NoCredit(user.clone())
    );

    let entry_cost = failed_payout(&mut r, &user, near(3));
    assert!(!entry_cost.is_zero(), "a new entry stores bytes");
    let credited = near(3).saturating_sub(entry_cost);
    assert_eq!(r.get_credit(user.clone()), credited);
    Call::by(acc("registry.near")).set_callback(vec![PromiseResult::Successful(vec![])]);
    r.on_payout(user.clone(), near(2));
    assert_eq!(
        r.get_credit(user.clone()),
        credited,
        "a successful payout adds no credit"
    );
    // A second failure adds to the entry, which costs nothing more.
    assert!(failed_payout(&mut r, &user, near(1)).is_zero());
    let credited = credited.saturating_add(near(1));
    assert_eq!(r.get_credit(user.clone()), credited);

    Call::by(user.clone()).set();
    assert_eq!(r.try_claim_credit().expect("claim"), credited);
    let transferred: Vec<NearToken> = near_sdk::test_utils::get_created_receipts()
        .iter()
        .flat_map(|receipt| receipt.actions.iter())
        .filter_map(|action| match action {
            near_sdk::mock::MockAction::Transfer { deposit, .. } => Some(*deposit),
            _ => None,
        })
        .collect();
    assert_eq!(
        transferred,
        vec![near(4)],
        "the credit and its entry's storage"
    );
    assert!(
        r.get_credit(user.clone()).is_zero(),
        "removed before the transfer"
    );
    // The claim's own transfer fails: the credit comes back, paying for its entry again.
    let entry_cost = failed_payout(&mut r, &user, near(4));
    assert_eq!(r.get_credit(user), near(4).saturating_sub(entry_cost));
}

/// One `slash` by the marketplace that leaves an operator of `nodes` active dev nodes
/// under-staked, run as a fresh call: the contract state is written out and read back, so no
/// record is cached, and the collections flush when the contract is dropped, as at the end of
/// a real call. Returns the host gas the call used (unit tests do not meter wasm
/// instructions, only host functions: storage, logs, promises) and its log lines.
fn slash_cost(nodes: u8) -> (u64, Vec<String>) {
    let mut r = registry();
    stake(&mut r, op(), near(MIN_STAKE * u128::from(nodes) + 1));
    let ids: Vec<NodeId> = (1..=nodes)
        .map(|seed| register_dev(&mut r, op(), seed))
        .collect();
    Call::by(owner()).yocto().set();
    r.try_set_marketplace(market()).expect("set");
    assert!(ids.iter().all(|id| status(&r, *id) == NodeStatus::Active));
    near_sdk::env::state_write(&r);
    drop(r);

    Call::by(market()).set();
    let mut r: Registry = near_sdk::env::state_read().expect("contract state");
    let before = near_sdk::env::used_gas().as_gas();
    let slashed = r
        .try_slash(ids[0], near(MIN_STAKE), acc("user.near"))
        .expect("slash");
    near_sdk::env::state_write(&r);
    drop(r);
    let used = near_sdk::env::used_gas().as_gas() - before;
    let logs = near_sdk::test_utils::get_logs();
    assert_eq!(slashed, near(MIN_STAKE));

    // Every node of the operator is inactive now: its free stake no longer covers them.
    Call::by(market()).set();
    let r: Registry = near_sdk::env::state_read().expect("contract state");
    assert!(ids.iter().all(|id| status(&r, *id) == NodeStatus::Inactive));
    (used, logs)
}

/// Finding 6 of the audit: the marketplace attaches a fixed 15 Tgas to `slash`, so its cost
/// must not grow with the operator's node count (a large operator would be unslashable).
#[test]
fn slash_costs_the_same_for_one_node_and_a_hundred() {
    let (gas_one, logs_one) = slash_cost(1);
    let (gas_many, logs_many) = slash_cost(100);
    eprintln!("slash host gas: 1 node {gas_one}, 100 nodes {gas_many}");
    // One event, whatever the node count.
    assert_eq!(logs_one.len(), 1, "{logs_one:?}");
    assert_eq!(logs_many.len(), 1, "{logs_many:?}");
    // Only the operator record grows (8 bytes per node id, read and written once):
    // well under 0.2 Tgas for 99 more nodes.
    let growth = gas_many.saturating_sub(gas_one);
    assert!(
        growth < Gas::from_ggas(200).as_gas(),
        "slash host gas grew by {growth} from 1 to 100 nodes ({gas_one} -> {gas_many})"
    );
}

#[test]
fn a_slash_that_leaves_the_stake_covering_the_nodes_is_not_under_staked() {
    let (mut r, id) = with_node();
    Call::by(owner()).yocto().set();
    r.try_set_marketplace(market()).expect("set");
    let stake = r.get_operator(op()).expect("operator").stake;
    Call::by(market()).set();
    assert_eq!(
        r.try_slash(id, near(1), acc("user.near")).expect("slash"),
        near(1)
    );
    assert_eq!(
        events(),
        vec![RegistryEvent::NodeSlashed {
            node_id: id,
            operator: op(),
            amount: near(1),
            beneficiary: acc("user.near"),
            stake: Some(stake.saturating_sub(near(1))),
            under_staked: false,
        }]
    );
    assert_eq!(status(&r, id), NodeStatus::Active);
}
