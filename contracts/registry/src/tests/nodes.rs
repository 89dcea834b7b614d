use super::*;
use crate::NodeUpdate;
use enclave_cloud_common::{AttestationKind, ModelPrice, TcbStatus};
use near_sdk::json_types::U128;

fn price(model: &str) -> ModelPrice {
    ModelPrice {
        model_id: model.parse().expect("model id"),
        input_per_million: U128(10),
        output_per_million: U128(20),
    }
}

#[test]
fn dev_node_registers_signed_by_its_own_key() {
    let mut r = registry();
    stake(&mut r, op(), near(100));
    let before_storage = r.get_operator(op()).expect("op").storage_cost;
    Call::by(op()).key(key(1).1).set();
    let details = NodeUpdate {
        region: Some("eu-west".into()),
        capacity: Some(4),
        ..Default::default()
    };
    let id = r
        .register_node_json(dev_bundle(1), Some(details))
        .expect("register");
    assert_eq!(id, NodeId(0));
    let v = node(&r, id);
    assert_eq!(v.operator, op());
    assert_eq!(v.status, NodeStatus::Active);
    assert_eq!(v.kind, AttestationKind::Dev);
    assert_eq!(v.tcb_status, TcbStatus::None);
    assert_eq!(v.signer_key, key(1).1);
    assert_eq!(v.encryption_key, hex::encode([1u8; 32]));
    assert_eq!((v.region.as_deref(), v.capacity), (Some("eu-west"), 4));
    assert_eq!(v.attestation_expires_at_ns.0, T0 + 7 * DAY);
    let evs = events();
    assert!(
        matches!(&evs[0], RegistryEvent::NodeRegistered { node_id, kind: AttestationKind::Dev, .. } if *node_id == id)
    );
    assert!(matches!(
        &evs[1],
        RegistryEvent::NodeUpdated { capacity: 4, .. }
    ));
    let op_view = r.get_operator(op()).expect("op");
    assert_eq!(op_view.nodes, vec![id]);
    assert!(
        op_view.storage_cost > before_storage,
        "the node's storage is paid from the stake"
    );
    assert_eq!(
        r.get_node_by_signer_key(key(1).1).map(|n| n.node_id),
        Some(id)
    );
}

#[test]
fn registration_needs_stake_and_a_fresh_direct_key() {
    let mut r = registry();
    Call::by(op()).key(key(1).1).set();
    assert_eq!(
        r.register_node_json(dev_bundle(1), None)
            .expect_err("no operator"),
        RegistryError::UnknownOperator(op())
    );

    stake(&mut r, op(), near(MIN_STAKE));
    Call::by(op()).key(key(1).1).set();
    let err = r
        .register_node_json(dev_bundle(1), None)
        .expect_err("storage eats into the minimum");
    assert!(
        matches!(err, RegistryError::InsufficientStake { nodes: 1, .. }),
        "{err}"
    );

    stake(&mut r, op(), near(5));
    Call::by(op())
        .key(key(1).1)
        .relayed_by(acc("relayer.near"))
        .set();
    assert!(matches!(
        r.register_node_json(dev_bundle(1), None),
        Err(RegistryError::RelayedCall { .. })
    ));
    register_dev(&mut r, op(), 1);

    // The same enclave key cannot be a second node, even for another operator.
    stake(&mut r, acc("other.near"), near(100));
    Call::by(acc("other.near")).key(key(1).1).set();
    let before = snapshot(&r);
    assert!(matches!(
        r.register_node_json(dev_bundle(1), None),
        Err(RegistryError::SignerKeyInUse(_, NodeId(0)))
    ));
    assert_eq!(snapshot(&r), before);

    // A second node needs a second minimum stake.
    Call::by(op()).key(key(2).1).set();
    assert!(matches!(
        r.register_node_json(dev_bundle(2), None),
        Err(RegistryError::InsufficientStake { nodes: 2, .. })
    ));
}

#[test]
fn a_bundle_sent_by_another_key_is_refused() {
    let mut r = registry();
    stake(&mut r, op(), near(100));
    let before = snapshot(&r);
    // Bundle binds key 1, transaction signed by key 2.
    Call::by(op()).key(key(2).1).set();
    let err = r
        .register_node_json(dev_bundle(1), None)
        .expect_err("wrong signer");
    assert!(
        matches!(err, RegistryError::SignerKeyMismatch { .. }),
        "{err}"
    );
    assert_eq!(snapshot(&r), before);
    // Non-ed25519 transaction keys cannot be bound at all.
    let secp = PublicKey::from_parts(CurveType::SECP256K1, vec![7u8; 64]).expect("secp key");
    Call::by(op()).key(secp).set();
    assert!(matches!(
        r.register_node_json(dev_bundle(1), None),
        Err(RegistryError::SignerKeyNotEd25519(_))
    ));
}

#[test]
fn bad_input_fails_typed_and_changes_nothing() {
    let mut r = registry();
    stake(&mut r, op(), near(100));
    let good: serde_json::Value = serde_json::from_str(&dev_bundle(1)).expect("json");
    let truncated = dev_bundle(1)[..40].to_owned();
    let mut wrong_type = good.clone();
    wrong_type["dev"]["expires_at"] = "tomorrow".into();
    let mut bad_sig = good.clone();
    bad_sig["dev"]["signature"] = hex::encode([0u8; 64]).into();
    let mut short_key = good.clone();
    short_key["enclave_key"] = "abcd".into();
    let mut tdx_without_quote = good.clone();
    tdx_without_quote["kind"] = "tdx".into();
    let other_ca = SigningKey::from_bytes(&[10u8; 32]);
    let cases = [
        (
            "\u{0}\u{1}garbage".to_owned(),
            "not valid JSON for this method",
        ),
        (String::new(), "not valid JSON for this method"),
        ("[]".to_owned(), "not valid JSON for this method"),
        (truncated, "not valid JSON for this method"),
        (wrong_type.to_string(), "not valid JSON for this method"),
        (bad_sig.to_string(), "signature"),
        (short_key.to_string(), "enclave_key"),
        (tdx_without_quote.to_string(), "no `tdx` section"),
        (
            dev_bundle_with(&other_ca, [1; 32], &key(1).1, T0 / SEC + 100),
            "signature",
        ),
        (
            dev_bundle_with(&dev_ca(), [1; 32], &key(1).1, T0 / SEC - 1),
            "expired",
        ),
    ];
    for (bundle, message) in cases {
        let before = snapshot(&r);
        Call::by(op()).key(key(1).1).set();
        let err = expect_err(r.register_node_json(bundle.clone(), None), message);
        assert!(
            matches!(
                err,
                RegistryError::Attestation(_) | RegistryError::BadArguments(_)
            ),
            "{bundle}: {err}"
        );
        assert_eq!(snapshot(&r), before, "{bundle}");
        assert!(events().is_empty());
    }
    // Input that is not JSON at all, or not the method's arguments.
    for input in ["\u{0}garbage", "", "{}", r#"{"bundle":{},"extra":1}"#] {
        let before = snapshot(&r);
        Call::by(op()).key(key(1).1).set();
        super::with_input(input.to_owned());
        assert!(
            matches!(r.try_register_node(), Err(RegistryError::BadArguments(_))),
            "{input}"
        );
        assert!(
            matches!(r.try_reattest(), Err(RegistryError::BadArguments(_))),
            "{input}"
        );
        assert!(
            matches!(r.try_add_gpu(), Err(RegistryError::BadArguments(_))),
            "{input}"
        );
        assert_eq!(snapshot(&r), before);
    }
    // Bad commercial details are refused before the attestation is even looked at.
    for (details, message) in [
        (
            NodeUpdate {
                endpoint: Some("ftp://x".into()),
                ..Default::default()
            },
            "endpoint",
        ),
        (
            NodeUpdate {
                region: Some("EU West".into()),
                ..Default::default()
            },
            "region",
        ),
        (
            NodeUpdate {
                prices: Some(vec![price("llama"), price("llama")]),
                ..Default::default()
            },
            "priced twice",
        ),
    ] {
        Call::by(op()).key(key(1).1).set();
        let before = snapshot(&r);
        expect_err(r.register_node_json(dev_bundle(1), Some(details)), message);
        assert_eq!(snapshot(&r), before);
    }
}

#[test]
fn dev_expiry_caps_the_attestation_lifetime() {
    let mut r = registry();
    stake(&mut r, op(), near(100));
    Call::by(op()).key(key(1).1).set();
    let bundle = dev_bundle_with(&dev_ca(), [1; 32], &key(1).1, T0 / SEC + 3600);
    let id = r.register_node_json(bundle, None).expect("register");
    assert_eq!(node(&r, id).attestation_expires_at_ns.0, T0 + 3600 * SEC);
}

#[test]
fn heartbeat_status_transitions() {
    let (mut r, id) = with_node();
    let timeout = 3 * 60 * SEC;
    // Missed heartbeats: inactive, computed from time alone.
    Call::by(op()).at(T0 + timeout).set();
    assert_eq!(status(&r, id), NodeStatus::Active);
    Call::by(op()).at(T0 + timeout + 1).set();
    assert_eq!(status(&r, id), NodeStatus::Inactive);

    // Only the enclave key proves liveness.
    Call::by(op()).at(T0 + timeout + 1).set();
    assert!(matches!(
        r.try_heartbeat(id),
        Err(RegistryError::NotNodeKey { .. })
    ));
    Call::by(acc("other.near"))
        .key(key(1).1)
        .at(T0 + timeout + 1)
        .set();
    assert!(matches!(
        r.try_heartbeat(id),
        Err(RegistryError::NotNodeOperator { .. })
    ));
    Call::by(op())
        .key(key(1).1)
        .relayed_by(acc("relayer.near"))
        .set();
    assert!(matches!(
        r.try_heartbeat(id),
        Err(RegistryError::RelayedCall { .. })
    ));
    Call::by(op()).key(key(1).1).set();
    assert_eq!(
        r.try_heartbeat(NodeId(7)).expect_err("unknown"),
        RegistryError::UnknownNode(NodeId(7))
    );

    let t = T0 + timeout + 1;
    Call::by(op()).key(key(1).1).at(t).set();
    r.try_heartbeat(id).expect("heartbeat");
    assert_eq!(
        events(),
        vec![
            RegistryEvent::NodeHeartbeat {
                node_id: id,
                at_ns: U64(t)
            },
            RegistryEvent::NodeStatusChanged {
                node_id: id,
                status: NodeStatus::Active
            },
        ]
    );
    assert_eq!(status(&r, id), NodeStatus::Active);
    assert_eq!(node(&r, id).last_heartbeat_ns.0, t);

    // A heartbeat of an active node announces no status change.
    Call::by(op()).key(key(1).1).at(t + SEC).set();
    r.try_heartbeat(id).expect("heartbeat");
    assert_eq!(events().len(), 1);
}

#[test]
fn expiry_and_reattestation() {
    let (mut r, id) = with_node();
    let expiry = T0 + 7 * DAY;
    Call::by(op()).key(key(1).1).at(expiry - 1).set();
    r.try_heartbeat(id).expect("heartbeat");
    assert_eq!(status(&r, id), NodeStatus::Active);
    Call::by(op()).key(key(1).1).at(expiry).set();
    assert_eq!(status(&r, id), NodeStatus::Expired);
    // Heartbeats keep coming but do not revive an expired attestation.
    r.try_heartbeat(id).expect("heartbeat");
    assert_eq!(status(&r, id), NodeStatus::Expired);

    // Another enclave key in the bundle: not the same enclave.
    Call::by(op()).key(key(1).1).at(expiry).set();
    let other_enclave = dev_bundle_with(
        &dev_ca(),
        [42; 32],
        &key(1).1,
        expiry / SEC + 30 * 24 * 3600,
    );
    let before = snapshot(&r);
    assert!(matches!(
        r.reattest_json(id, other_enclave),
        Err(RegistryError::EnclaveKeyMismatch { .. })
    ));
    assert_eq!(snapshot(&r), before);
    // Only the enclave key may re-attest.
    Call::by(op()).at(expiry).set();
    assert!(matches!(
        r.reattest_json(id, dev_bundle(1)),
        Err(RegistryError::NotNodeKey { .. })
    ));
    Call::by(op()).key(key(1).1).at(expiry).set();
    expect_err(
        r.reattest_json(id, "{".into()),
        "not valid JSON for this method",
    );

    Call::by(op()).key(key(1).1).at(expiry + SEC).set();
    let fresh = dev_bundle_with(&dev_ca(), [1; 32], &key(1).1, expiry / SEC + 30 * 24 * 3600);
    r.reattest_json(id, fresh).expect("reattest");
    let v = node(&r, id);
    assert_eq!(v.status, NodeStatus::Active);
    assert_eq!(v.attestation_expires_at_ns.0, expiry + SEC + 7 * DAY);
    assert_eq!(
        events(),
        vec![
            RegistryEvent::NodeReattested {
                node_id: id,
                tcb_status: TcbStatus::None,
                expires_at_ns: U64(expiry + SEC + 7 * DAY)
            },
            RegistryEvent::NodeStatusChanged {
                node_id: id,
                status: NodeStatus::Active
            },
        ]
    );
}

#[test]
fn update_node_by_enclave_or_operator_with_one_yocto() {
    let (mut r, id) = with_node();
    let update = NodeUpdate {
        endpoint: Some("https://node.example:8443/v1".into()),
        region: Some("us-east-1".into()),
        prices: Some(vec![price("llama-3-8b"), price("qwen-7b")]),
        capacity: Some(8),
    };
    // Enclave key: no deposit allowed (it could not attach one anyway).
    Call::by(op()).key(key(1).1).yocto().set();
    assert_eq!(
        r.try_update_node(id, update.clone()).expect_err("deposit"),
        RegistryError::DepositNotAllowed(1)
    );
    // Any other operator key: exactly one yocto.
    Call::by(op()).set();
    assert_eq!(
        r.try_update_node(id, update.clone()).expect_err("no yocto"),
        RegistryError::OneYoctoRequired(0)
    );
    Call::by(acc("other.near")).yocto().set();
    assert!(matches!(
        r.try_update_node(id, update.clone()),
        Err(RegistryError::NotNodeOperator { .. })
    ));

    Call::by(op()).key(key(1).1).set();
    r.try_update_node(id, update.clone())
        .expect("enclave updates");
    let v = node(&r, id);
    assert_eq!(v.endpoint.as_deref(), Some("https://node.example:8443/v1"));
    assert_eq!(
        (v.region.as_deref(), v.prices.len(), v.capacity),
        (Some("us-east-1"), 2, 8)
    );
    assert!(matches!(
        &events()[..],
        [RegistryEvent::NodeUpdated { capacity: 8, .. }]
    ));

    // Absent fields stay; empty strings clear.
    Call::by(op()).yocto().set();
    r.try_update_node(
        id,
        NodeUpdate {
            endpoint: Some(String::new()),
            capacity: Some(2),
            ..Default::default()
        },
    )
    .expect("operator updates");
    let v = node(&r, id);
    assert_eq!(
        (v.endpoint, v.region.as_deref(), v.prices.len(), v.capacity),
        (None, Some("us-east-1"), 2, 2)
    );

    let too_many: Vec<_> = (0..33).map(|i| price(&format!("model-{i}"))).collect();
    for (bad, message) in [
        (
            NodeUpdate {
                endpoint: Some("https://a b".into()),
                ..Default::default()
            },
            "endpoint",
        ),
        (
            NodeUpdate {
                endpoint: Some(format!("https://{}", "a".repeat(300))),
                ..Default::default()
            },
            "endpoint",
        ),
        (
            NodeUpdate {
                region: Some("x".repeat(33)),
                ..Default::default()
            },
            "region",
        ),
        (
            NodeUpdate {
                prices: Some(too_many),
                ..Default::default()
            },
            "at most 32",
        ),
    ] {
        Call::by(op()).yocto().set();
        let before = snapshot(&r);
        let err = expect_err(r.try_update_node(id, bad), message);
        assert!(matches!(err, RegistryError::InvalidInput { .. }));
        assert_eq!(snapshot(&r), before);
    }
}

#[test]
fn deregister_frees_the_key_and_stake_but_stays_slashable() {
    let (mut r, id) = with_node();
    Call::by(op()).set();
    assert_eq!(
        r.try_deregister(id).expect_err("no yocto"),
        RegistryError::OneYoctoRequired(0)
    );
    Call::by(acc("other.near")).yocto().set();
    assert!(matches!(
        r.try_deregister(id),
        Err(RegistryError::NotNodeOperator { .. })
    ));
    let storage_with_node = r.get_operator(op()).expect("op").storage_cost;

    Call::by(op()).yocto().set();
    r.try_deregister(id).expect("deregister");
    assert_eq!(
        events(),
        vec![RegistryEvent::NodeStatusChanged {
            node_id: id,
            status: NodeStatus::Deregistered
        }]
    );
    assert_eq!(status(&r, id), NodeStatus::Deregistered);
    let op_view = r.get_operator(op()).expect("op");
    assert!(op_view.nodes.is_empty() && op_view.required_stake.is_zero());
    assert!(
        op_view.storage_cost < storage_with_node,
        "storage refunded to the free stake"
    );
    assert!(r.get_node_by_signer_key(key(1).1).is_none());

    // Nothing more can be done with it...
    Call::by(op()).key(key(1).1).set();
    assert_eq!(
        r.try_heartbeat(id).expect_err("gone"),
        RegistryError::NodeDeregistered(id)
    );
    Call::by(op()).yocto().set();
    assert_eq!(
        r.try_deregister(id).expect_err("gone"),
        RegistryError::NodeDeregistered(id)
    );
    // ...but the marketplace can still slash for a missed deadline.
    Call::by(owner()).yocto().set();
    r.try_set_marketplace(market()).expect("set");
    Call::by(market()).set();
    assert_eq!(
        r.try_slash(id, near(1), acc("user.near")).expect("slash"),
        near(1)
    );

    // The key is free again: the same enclave registers as a new node.
    let id2 = register_dev(&mut r, op(), 1);
    assert_eq!(id2, NodeId(1));
    assert_eq!(status(&r, id2), NodeStatus::Active);
}

#[test]
fn enclave_key_may_deregister_without_deposit() {
    let (mut r, id) = with_node();
    Call::by(op()).key(key(1).1).set();
    r.try_deregister(id).expect("enclave deregisters");
    assert_eq!(status(&r, id), NodeStatus::Deregistered);
}

/// Issue 15, finding 7: every path that charges storage charges exactly what it stores.
#[test]
fn every_charging_path_charges_what_it_stores() {
    let mut r = registry();
    Call::by(op()).deposit(near(100)).set();
    paid(&mut r, "first stake", |r| r.try_deposit_stake()).expect("stake");
    Call::by(op()).deposit(near(1)).set();
    paid(&mut r, "more stake", |r| r.try_deposit_stake()).expect("stake");
    Call::by(op()).key(key(1).1).set();
    let id = paid(&mut r, "register", |r| {
        r.register_node_json(dev_bundle(1), None)
    })
    .expect("register");
    Call::by(op()).key(key(2).1).set();
    let second = paid(&mut r, "second node", |r| {
        r.register_node_json(dev_bundle(2), None)
    })
    .expect("register");
    let update = NodeUpdate {
        endpoint: Some("https://node.example:8443/v1".into()),
        region: Some("us-east-1".into()),
        prices: Some(vec![price("llama-3-8b"), price("qwen-7b")]),
        capacity: Some(8),
    };
    Call::by(op()).key(key(1).1).set();
    paid(&mut r, "update grows", |r| r.try_update_node(id, update)).expect("update");
    Call::by(op()).yocto().set();
    paid(&mut r, "update shrinks", |r| {
        r.try_update_node(
            id,
            NodeUpdate {
                prices: Some(vec![]),
                ..Default::default()
            },
        )
    })
    .expect("update");
    Call::by(op()).key(key(1).1).at(T0 + SEC).set();
    paid(&mut r, "reattest", |r| r.reattest_json(id, dev_bundle(1))).expect("reattest");
    Call::by(op()).yocto().set();
    paid(&mut r, "deregister", |r| r.try_deregister(second)).expect("deregister");
    Call::by(op()).yocto().set();
    paid(&mut r, "deregister the other", |r| r.try_deregister(id)).expect("deregister");
}
