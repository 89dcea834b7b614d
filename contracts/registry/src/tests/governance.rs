use super::*;
use crate::PlatformMeasurements;
use enclave_cloud_common::TcbStatus;

#[test]
fn mainnet_init_can_never_have_dev_mode() {
    Call::by(owner()).set();
    let (_, ca) = key(9);
    let err = Registry::try_new(owner(), true, Some(ca), None)
        .map(|_| ())
        .expect_err("refused");
    assert_eq!(err, RegistryError::DevModeOnMainnet);
    let policy = Policy {
        dev_mode: true,
        ..test_policy()
    };
    let err = Registry::try_new(owner(), true, None, Some(policy))
        .map(|_| ())
        .expect_err("refused");
    assert_eq!(err, RegistryError::DevModeOnMainnet);

    // A mainnet registry refuses dev mode through governance too.
    let mut r = Registry::try_new(owner(), true, None, None).expect("mainnet init");
    Call::by(owner()).yocto().set();
    let (_, ca) = key(9);
    let p = Policy {
        dev_mode: true,
        dev_ca_key: Some(ca),
        ..r.get_policy()
    };
    assert_eq!(
        r.try_set_policy(p).expect_err("refused"),
        RegistryError::DevModeOnMainnet
    );
    assert!(!r.get_policy().dev_mode);
}

#[test]
fn dev_mode_only_if_initialised_with_it() {
    Call::by(owner()).set();
    let mut r = Registry::try_new(owner(), false, None, Some(test_policy())).expect("init");
    Call::by(owner()).yocto().set();
    let p = Policy {
        dev_mode: true,
        dev_ca_key: Some(key(9).1),
        ..r.get_policy()
    };
    assert_eq!(
        r.try_set_policy(p).expect_err("refused"),
        RegistryError::DevModeNotAvailable
    );

    // Without dev mode a dev bundle is refused before any verification.
    stake(&mut r, op(), near(100));
    Call::by(op()).key(key(1).1).set();
    assert_eq!(
        r.register_node_json(dev_bundle(1), None)
            .expect_err("dev off"),
        RegistryError::DevModeDisabled
    );
}

#[test]
fn dev_mode_can_be_switched_off_and_on_again() {
    let mut r = registry();
    stake(&mut r, op(), near(100));
    Call::by(owner()).yocto().set();
    r.try_set_policy(Policy {
        dev_mode: false,
        ..r.get_policy()
    })
    .expect("off");
    assert!(events().contains(&RegistryEvent::PolicyUpdated {
        field: "dev_mode".into(),
        value: "false".into()
    }));
    Call::by(op()).key(key(1).1).set();
    assert_eq!(
        r.register_node_json(dev_bundle(1), None).expect_err("off"),
        RegistryError::DevModeDisabled
    );
    Call::by(owner()).yocto().set();
    r.try_set_policy(Policy {
        dev_mode: true,
        ..r.get_policy()
    })
    .expect("on");
    register_dev(&mut r, op(), 1);
}

#[test]
fn set_policy_access_and_events() {
    let mut r = registry();
    let new = Policy {
        min_stake: near(20),
        ..r.get_policy()
    };
    Call::by(op()).yocto().set();
    let err = expect_err(r.try_set_policy(new.clone()), "only the owner owner.near");
    assert!(matches!(err, RegistryError::NotOwner { .. }));
    Call::by(owner()).set();
    assert_eq!(
        r.try_set_policy(new.clone()).expect_err("no yocto"),
        RegistryError::OneYoctoRequired(0)
    );
    Call::by(owner()).deposit(near(1)).set();
    assert!(matches!(
        r.try_set_policy(new.clone()),
        Err(RegistryError::OneYoctoRequired(_))
    ));
    assert_eq!(r.get_policy().min_stake, near(MIN_STAKE));

    Call::by(owner()).yocto().set();
    r.try_set_policy(new.clone()).expect("owner");
    assert_eq!(r.get_policy(), new);
    // Exactly the changed field is announced.
    assert_eq!(
        events(),
        vec![RegistryEvent::PolicyUpdated {
            field: "min_stake".into(),
            value: format!("\"{}\"", near(20).as_yoctonear())
        }]
    );
}

#[test]
fn invalid_policies_are_refused() {
    let mut r = registry();
    let base = r.get_policy();
    let bad_platform = PlatformMeasurements {
        mrtd: "zz".into(),
        rtmr0: "00".repeat(48),
        rtmr1: "00".repeat(48),
        rtmr2: "00".repeat(48),
    };
    let cases = [
        (
            Policy {
                platforms: vec![bad_platform],
                ..base.clone()
            },
            "mrtd 'zz' must be 96 lowercase hex",
        ),
        (
            Policy {
                tcb_grace: vec![crate::TcbGrace {
                    status: TcbStatus::Revoked,
                    until: U64(1),
                }],
                ..base.clone()
            },
            "only possible for OutOfDate or SWHardeningNeeded",
        ),
        (
            Policy {
                missed_heartbeats: 0,
                ..base.clone()
            },
            "missed_heartbeats",
        ),
        (
            Policy {
                heartbeat_interval_ns: U64(0),
                ..base.clone()
            },
            "must be positive",
        ),
        (
            Policy {
                gpu: crate::GpuPolicy {
                    min_gpus: 3,
                    max_gpus: 2,
                    ..base.gpu.clone()
                },
                ..base.clone()
            },
            "GPU bounds",
        ),
        (
            Policy {
                dev_ca_key: None,
                ..base.clone()
            },
            "dev mode needs a dev CA key",
        ),
    ];
    for (policy, message) in cases {
        Call::by(owner()).yocto().set();
        let err = expect_err(r.try_set_policy(policy), message);
        assert!(matches!(err, RegistryError::InvalidPolicy(_)), "{err}");
        assert_eq!(r.get_policy(), base);
        assert!(events().is_empty());
    }
}

#[test]
fn marketplace_and_owner_are_governed() {
    let mut r = registry();
    Call::by(op()).yocto().set();
    assert!(matches!(
        r.try_set_marketplace(market()),
        Err(RegistryError::NotOwner { .. })
    ));
    Call::by(owner()).set();
    assert!(matches!(
        r.try_set_marketplace(market()),
        Err(RegistryError::OneYoctoRequired(0))
    ));
    Call::by(owner()).yocto().set();
    r.try_set_marketplace(market()).expect("owner");
    assert_eq!(r.get_config().marketplace, Some(market()));

    Call::by(op()).yocto().set();
    assert!(matches!(
        r.try_set_owner(op()),
        Err(RegistryError::NotOwner { .. })
    ));
    Call::by(owner()).yocto().set();
    r.try_set_owner(acc("dao.near")).expect("owner");
    assert_eq!(r.get_config().owner, acc("dao.near"));
    // The old owner has no power left.
    Call::by(owner()).yocto().set();
    assert!(matches!(
        r.try_set_marketplace(op()),
        Err(RegistryError::NotOwner { .. })
    ));
}

#[test]
fn migrate_keeps_the_state() {
    let (r, id) = with_node();
    let before = snapshot(&r);
    // Persist the state as the runtime would at the end of a call, then migrate.
    near_sdk::env::state_write(&r);
    drop(r);
    Call::by(acc("registry.near")).set();
    let migrated = Registry::try_migrate().expect("migrates");
    assert_eq!(snapshot(&migrated), before);
    assert_eq!(node(&migrated, id).node_id, id);
}

/// The layout version 2 stored for the state of `r` (its collections are under the same
/// prefixes; the set of used GPU nonces was one more collection).
fn as_version_2(r: &Registry) -> Vec<u8> {
    use crate::storage_keys::StorageKey;
    use crate::upgrade::legacy;
    use near_sdk::store::{LookupMap, LookupSet};
    let p = r.policy.clone();
    let v2 = legacy::Registry {
        state_version: 2,
        owner: r.owner.clone(),
        mainnet: r.mainnet,
        dev_mode_available: r.dev_mode_available,
        marketplace: r.marketplace.clone(),
        policy: legacy::Policy {
            platforms: p.platforms,
            compose_hashes: p.compose_hashes,
            image_digests: p.image_digests,
            image_digest_event: p.image_digest_event,
            tcb_grace: p.tcb_grace,
            attestation_lifetime_ns: p.attestation_lifetime_ns,
            heartbeat_interval_ns: p.heartbeat_interval_ns,
            missed_heartbeats: p.missed_heartbeats,
            min_stake: p.min_stake,
            unbonding_delay_ns: p.unbonding_delay_ns,
            gpu: p.gpu,
            dev_mode: p.dev_mode,
            dev_ca_key: p.dev_ca_key,
        },
        operators: LookupMap::new(StorageKey::Operators),
        nodes: LookupMap::new(StorageKey::Nodes),
        next_node_id: r.next_node_id,
        node_by_signer_key: LookupMap::new(StorageKey::NodeBySignerKey),
        gpu_owner: LookupMap::new(StorageKey::GpuOwner),
        used_gpu_nonces: LookupSet::new(StorageKey::UsedGpuNonces),
        cert_cache: LookupSet::new(StorageKey::CertCache),
        credits: LookupMap::new(StorageKey::Credits),
    };
    near_sdk::borsh::to_vec(&v2).expect("borsh")
}

#[test]
fn migrate_reads_the_version_1_and_2_layouts() {
    use enclave_cloud_common::state_version::STATE_KEY;
    let (mut r, id) = with_node();
    let before = snapshot(&r);
    r.policy.challenge_lifetime_ns = near_sdk::json_types::U64(1);
    let v2 = as_version_2(&r);
    assert_eq!(v2[..2], 2u16.to_le_bytes());
    // Version 1: `enum Registry { V1(StateV1) }`, i.e. the borsh tag 0 and then the same
    // fields version 2 keeps behind its u16 version.
    let mut v1 = vec![0u8];
    v1.extend_from_slice(&v2[2..]);
    drop(r);
    for (version, bytes) in [(2, v2), (1, v1)] {
        near_sdk::env::storage_write(STATE_KEY, &bytes);
        Call::by(acc("registry.near")).set();
        let migrated = Registry::try_migrate()
            .unwrap_or_else(|e| panic!("migrates from version {version}: {e}"));
        assert_eq!(migrated.state_version, crate::STATE_VERSION);
        assert_eq!(snapshot(&migrated), before, "version {version}");
        assert_eq!(
            migrated.policy.challenge_lifetime_ns.0,
            3600 * SEC,
            "the new policy field takes its default"
        );
        assert_eq!(node(&migrated, id).node_id, id);
    }
    // Bytes of no known layout are refused, not misread.
    near_sdk::env::storage_write(STATE_KEY, &[9, 9, 9]);
    assert!(matches!(
        Registry::try_migrate(),
        Err(RegistryError::InvalidInput { field: "state", .. })
    ));
}

#[test]
fn switching_dev_mode_off_retires_dev_nodes() {
    let (mut r, id) = with_node();
    Call::by(owner()).yocto().set();
    r.try_set_policy(Policy {
        dev_mode: false,
        ..r.get_policy()
    })
    .expect("off");
    assert_eq!(status(&r, id), NodeStatus::Expired);
}

#[test]
fn tcb_grace_ends_a_node_at_its_deadline() {
    use crate::state::Node;
    use crate::status::node_status;
    use enclave_cloud_common::{AttestationKind, Hash32, Measurements};
    let (r, _) = with_node();
    let m = Measurements {
        mrtd: "aa".repeat(48),
        rtmr0: "00".repeat(48),
        rtmr1: "01".repeat(48),
        rtmr2: "02".repeat(48),
        rtmr3: "03".repeat(48),
        compose_hash: Some(Hash32([4; 32])),
    };
    let node = Node {
        operator: op(),
        kind: AttestationKind::Tdx,
        signer_key: key(1).1,
        encryption_key: [1; 32],
        tcb_status: TcbStatus::OutOfDate,
        measurements: m.clone(),
        image_digest: None,
        gpus: vec![],
        endpoint: None,
        region: None,
        prices: vec![],
        capacity: 0,
        registered_at_ns: T0,
        attested_at_ns: T0,
        attestation_expires_at_ns: T0 + DAY,
        last_heartbeat_ns: T0,
        deregistered: false,
    };
    let platform = PlatformMeasurements {
        mrtd: m.mrtd,
        rtmr0: m.rtmr0,
        rtmr1: m.rtmr1,
        rtmr2: m.rtmr2,
    };
    let grace_until = T0 / SEC + 60;
    let policy = Policy {
        platforms: vec![platform],
        compose_hashes: vec![Hash32([4; 32])],
        tcb_grace: vec![crate::TcbGrace {
            status: TcbStatus::OutOfDate,
            until: U64(grace_until),
        }],
        ..r.get_policy()
    };
    let operator = crate::state::Operator {
        stake: near(100),
        nodes: vec![NodeId(0)],
        ..Default::default()
    };
    assert_eq!(
        node_status(&node, Some(&operator), &policy, T0 + 60 * SEC, false),
        NodeStatus::Active
    );
    assert_eq!(
        node_status(&node, Some(&operator), &policy, T0 + 61 * SEC, false),
        NodeStatus::Expired
    );
    let no_grace = Policy {
        tcb_grace: vec![],
        ..policy
    };
    assert_eq!(
        node_status(&node, Some(&operator), &no_grace, T0, false),
        NodeStatus::Expired
    );
}

/// Finding 9: the owner named itself the marketplace and slashed every operator to itself.
/// Once governance set a delay, the new marketplace is announced and holds no power until the
/// delay has passed (operators see the `change_proposed` event and can unstake meanwhile).
#[test]
fn a_new_marketplace_can_slash_only_after_the_governance_delay() {
    use enclave_cloud_common::governance::{self as gov, Change, GovernanceError, TimelockError};
    use near_sdk::json_types::U64;
    const DELAY: u64 = 2 * 24 * 3_600 * 1_000_000_000;
    let (mut r, id) = with_node();
    Call::by(owner()).yocto().set();
    r.try_set_marketplace(market())
        .expect("delay 0: wiring applies at once");
    gov::propose(
        &mut r,
        Change::SetDelay {
            delay_ns: U64(DELAY),
        },
    )
    .expect("set delay");

    let t0 = 1_000_000_000_000;
    Call::by(owner()).yocto().at(t0).set();
    r.try_set_marketplace(owner()).expect("proposed");
    assert_eq!(r.get_config().marketplace, Some(market()));
    let pending = gov::timelock::<Registry>().expect("stored").pending;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].applies_at_ns.0, t0 + DELAY);
    let change = pending[0].id.0;

    Call::by(owner()).at(t0 + DELAY - 1).set();
    let before = snapshot(&r);
    assert!(matches!(
        r.try_slash(id, near(1), owner()),
        Err(RegistryError::NotMarketplace { .. })
    ));
    assert!(matches!(
        gov::apply(&mut r, change),
        Err(GovernanceError::Timelock(TimelockError::TooEarly { .. }))
    ));
    assert_eq!(snapshot(&r), before);

    Call::by(op()).at(t0 + DELAY).set();
    assert!(gov::apply(&mut r, change).expect("due").is_none());
    assert_eq!(r.get_config().marketplace, Some(owner()));
}

/// Finding 9, the operators' side: whatever the governance delay (even 0), replacing the
/// marketplace waits the unbonding delay plus an hour, so an operator who starts unbonding
/// when the change is announced has withdrawn before the new marketplace can slash.
#[test]
fn replacing_the_marketplace_waits_out_the_unbonding_delay_whatever_the_governance_delay() {
    use crate::governance::MARKETPLACE_CHANGE_MARGIN_NS;
    use enclave_cloud_common::governance::{self as gov, GovernanceError, TimelockError};
    let mut r = registry();
    Call::by(owner()).yocto().set();
    r.try_set_marketplace(market())
        .expect("the first marketplace applies at once");
    stake(&mut r, op(), near(50));

    let t0 = 1_000_000_000_000;
    Call::by(owner()).yocto().at(t0).set();
    r.try_set_marketplace(owner()).expect("proposed");
    assert_eq!(r.get_config().marketplace, Some(market()));
    let pending = gov::timelock::<Registry>().expect("stored").pending;
    let unbonding = r.get_policy().unbonding_delay_ns.0;
    let wait = unbonding + MARKETPLACE_CHANGE_MARGIN_NS;
    assert_eq!(pending[0].applies_at_ns.0, t0 + wait);
    let change = pending[0].id.0;

    // The operator leaves as soon as it is announced, and is out in time.
    Call::by(op()).yocto().at(t0).set();
    r.try_request_unstake(near(40)).expect("unstake");
    Call::by(op()).yocto().at(t0 + unbonding).set();
    drop(
        r.try_withdraw()
            .expect("withdrawn before the new marketplace applies"),
    );

    Call::by(acc("anyone.near")).at(t0 + wait - 1).set();
    assert!(matches!(
        gov::apply(&mut r, change),
        Err(GovernanceError::Timelock(TimelockError::TooEarly { .. }))
    ));
    Call::by(acc("anyone.near")).at(t0 + wait).set();
    assert!(gov::apply(&mut r, change).expect("due").is_none());
    assert_eq!(r.get_config().marketplace, Some(owner()));
}
