//! Owner configuration, storage balances, views, pagination and state migration.

use super::*;
use crate::state::{ConfigPatch, JobStatus, TokenRate};

#[test]
fn only_the_owner_with_one_yocto_changes_the_config() {
    let mut h = Harness::new();
    let patch = || ConfigPatch {
        protocol_fee_bps: Some(300),
        ..Default::default()
    };
    let err = h
        .call(USER, 1, |c| c.try_update_config(patch()))
        .unwrap_err();
    assert!(matches!(err, MarketplaceError::NotOwner { .. }), "{err}");
    assert_eq!(
        h.call(OWNER, 0, |c| c.try_update_config(patch()))
            .unwrap_err(),
        MarketplaceError::OneYoctoRequired
    );
    h.call(OWNER, 1, |c| c.try_update_config(patch())).unwrap();
    assert!(
        matches!(&h.events[..], [MarketplaceEvent::PolicyUpdated { field, value }]
        if field == "protocol_fee_bps" && value == "300")
    );
    h.install(USER, 0, vec![]);
    assert_eq!(h.contract.get_config().protocol_fee_bps, 300);

    let too_much = ConfigPatch {
        royalty_bps: Some(9_800),
        ..Default::default()
    };
    let err = h
        .call(OWNER, 1, |c| c.try_update_config(too_much))
        .unwrap_err();
    assert!(
        err.to_string().contains("300 + 9800 exceeds 10000"),
        "{err}"
    );
    let zero_inline = ConfigPatch {
        max_inline_bytes: Some(0),
        ..Default::default()
    };
    assert!(
        h.call(OWNER, 1, |c| c.try_update_config(zero_inline))
            .is_err()
    );

    // Ownership moves.
    let handover = ConfigPatch {
        owner: Some(acc("dao.near")),
        ..Default::default()
    };
    h.call(OWNER, 1, |c| c.try_update_config(handover)).unwrap();
    assert!(h.call(OWNER, 1, |c| c.try_update_config(patch())).is_err());
    h.call("dao.near", 1, |c| c.try_update_config(patch()))
        .unwrap();
}

#[test]
fn tokens_and_royalty_accounts_are_governed() {
    let mut h = Harness::new();
    let rate = TokenRate {
        units_per_near: U128(5),
    };
    assert!(
        h.call(USER, 1, |c| c
            .try_set_accepted_token(acc("dai.near"), Some(rate)))
            .is_err()
    );
    let zero = TokenRate {
        units_per_near: U128(0),
    };
    assert!(
        h.call(OWNER, 1, |c| c
            .try_set_accepted_token(acc("dai.near"), Some(zero)))
            .is_err()
    );
    h.call(OWNER, 1, |c| {
        c.try_set_accepted_token(acc("dai.near"), Some(rate))
    })
    .unwrap();
    h.install(USER, 0, vec![]);
    assert_eq!(h.contract.accepted_tokens().len(), 2);
    h.call(OWNER, 1, |c| {
        c.try_set_accepted_token(acc("dai.near"), None)
    })
    .unwrap();
    h.install(USER, 0, vec![]);
    assert_eq!(
        h.contract.accepted_tokens(),
        vec![(
            acc(TOKEN),
            TokenRate {
                units_per_near: U128(3_000_000)
            }
        )]
    );

    assert!(
        h.call(USER, 1, |c| c.try_set_royalty_account(model(), None))
            .is_err()
    );
    h.install(USER, 0, vec![]);
    assert_eq!(h.contract.royalty_account(model()), Some(acc(ROYALTY)));
    h.call(OWNER, 1, |c| c.try_set_royalty_account(model(), None))
        .unwrap();
    h.install(USER, 0, vec![]);
    assert_eq!(h.contract.royalty_account(model()), None);
}

#[test]
fn storage_balances_are_deposited_and_withdrawn() {
    let mut h = Harness::new();
    assert!(h.call(USER, 0, |c| c.try_storage_deposit(None)).is_err());
    let balance = h
        .call(RELAYER, 10 * MILLI, |c| {
            c.try_storage_deposit(Some(acc(USER)))
        })
        .unwrap();
    // The new entry paid for itself out of the deposit.
    assert!(
        balance.0 < 10 * MILLI && balance.0 > 7 * MILLI,
        "{balance:?}"
    );
    h.check_funds();
    let again = h
        .call(USER, 10 * MILLI, |c| c.try_storage_deposit(None))
        .unwrap();
    assert_eq!(
        again.0,
        balance.0 + 10 * MILLI,
        "an existing entry costs nothing more"
    );
    assert_eq!(
        h.call(USER, 0, |c| c.try_storage_withdraw(None))
            .unwrap_err(),
        MarketplaceError::OneYoctoRequired
    );
    let err = h
        .call(USER, 1, |c| c.try_storage_withdraw(Some(U128(again.0 + 1))))
        .unwrap_err();
    assert!(
        matches!(err, MarketplaceError::InsufficientStorageBalance { .. }),
        "{err}"
    );
    assert_eq!(
        h.call(USER, 1, |c| c.try_storage_withdraw(Some(U128(MILLI))))
            .unwrap()
            .0,
        again.0 - MILLI
    );
    assert_eq!(h.sent_near(USER), MILLI);
    h.call(USER, 1, |c| c.try_storage_withdraw(None)).unwrap();
    h.install(USER, 0, vec![]);
    assert_eq!(h.contract.storage_balance_of(acc(USER)).0, 0);
    h.check_funds();
}

#[test]
fn views_page_through_jobs() {
    let mut h = Harness::new();
    let ids: Vec<JobId> = (0..5).map(|_| h.submit(spec(NEAR))).collect();
    h.install(USER, 0, vec![]);
    let page = |h: &Harness, from, limit| -> Vec<JobId> {
        h.contract
            .jobs_by_status(JobStatus::Open, from, limit)
            .into_iter()
            .map(|v| match v {
                crate::state::JobView::Open(j) => j.job_id,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(page(&h, None, None), ids);
    assert_eq!(page(&h, Some(1), Some(2)), ids[1..3].to_vec());
    assert_eq!(page(&h, Some(4), Some(10)), ids[4..].to_vec());
    assert!(page(&h, Some(9), None).is_empty());
    assert_eq!(
        h.contract.jobs_by_user(acc(USER), Some(3), Some(100)).len(),
        2
    );
    assert!(h.contract.jobs_by_user(acc(RELAYER), None, None).is_empty());
    assert!(
        h.contract
            .jobs_by_status(JobStatus::Claimed, None, None)
            .is_empty()
    );
    assert!(h.contract.get_job(JobId(99)).is_none());
    assert_eq!(h.contract.version(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn migrate_reads_the_current_layout_and_refuses_unknown_ones() {
    let mut h = Harness::new();
    let job_id = h.submit(spec(NEAR));
    h.install(OWNER, 0, vec![]);
    env::state_write(&h.contract);
    let migrated = Marketplace::try_migrate().unwrap();
    assert_eq!(migrated.config, h.contract.config);
    assert!(migrated.jobs.get(&job_id).is_some());
    let mut raw = borsh::to_vec(&h.contract).unwrap();
    raw[0] = 9;
    env::storage_write(b"STATE", &raw);
    let err = Marketplace::try_migrate().err().unwrap();
    assert!(err.to_string().contains("unknown state version 9"), "{err}");
}

/// Finding 9: the owner pointed `registry` at a fake registry and settled every escrow to
/// fake nodes. Once governance set a delay, a new registry (or treasury, fee, factory, owner)
/// is only announced; users have the delay to cancel their jobs before it applies.
#[test]
fn a_new_registry_applies_only_after_the_delay_and_users_can_leave_meanwhile() {
    use enclave_cloud_common::governance::{self as gov, Change};
    use near_sdk::json_types::U64;
    const DELAY: u64 = 24 * 3_600 * 1_000_000_000;
    let mut h = Harness::new();
    h.call(OWNER, 1, |c| {
        gov::propose(
            c,
            Change::SetDelay {
                delay_ns: U64(DELAY),
            },
        )
        .map_err(Into::into)
    })
    .unwrap();
    let job_id = h.submit(spec(NEAR));
    h.check_funds();

    let fake = ConfigPatch {
        registry: Some(acc("fake-registry.near")),
        ..Default::default()
    };
    h.call(OWNER, 1, |c| c.try_update_config(fake)).unwrap();
    h.check_funds();
    h.install(USER, 0, vec![]);
    assert_eq!(h.contract.get_config().registry, acc(REGISTRY));
    let pending = h.contract.governance().pending;
    assert_eq!(pending.len(), 1);
    let change = pending[0].id.0;

    // The user leaves while the change is pending.
    h.call(USER, 1, |c| c.try_cancel_job(job_id)).unwrap();
    h.check_funds();
    h.advance(DELAY - 1);
    assert!(
        h.call(RELAYER, 0, |c| gov::apply(c, change)
            .map(drop)
            .map_err(Into::into))
            .unwrap_err()
            .to_string()
            .contains("to go")
    );
    h.advance(1);
    h.call(RELAYER, 0, |c| {
        gov::apply(c, change).map(drop).map_err(Into::into)
    })
    .unwrap();
    h.check_funds();
    h.install(USER, 0, vec![]);
    assert_eq!(h.contract.get_config().registry, acc("fake-registry.near"));

    // Operational settings (pause, limits) still apply at once.
    let pause = ConfigPatch {
        paused: Some(true),
        ..Default::default()
    };
    h.call(OWNER, 1, |c| c.try_update_config(pause)).unwrap();
    h.install(USER, 0, vec![]);
    assert!(h.contract.get_config().paused);
}
