//! Every event must serialize to the exact NEP-297 line and parse back to itself.

use super::marketplace::{CancelReason, JobTarget, Settlement};
use super::model::ModelManifest;
use super::nep141::{FtBurn, FtMint, FtTransfer};
use super::*;
use crate::*;
use near_sdk::json_types::{Base64VecU8, U64, U128};
use near_sdk::{AccountId, NearToken};
use std::collections::BTreeSet;

fn acc(s: &str) -> AccountId {
    s.parse().unwrap()
}

fn model() -> ModelId {
    "llama-3-8b".parse().unwrap()
}

fn registry_samples() -> Vec<RegistryEvent> {
    use RegistryEvent::*;
    let node_id = NodeId(3);
    vec![
        StakeDeposited {
            operator: acc("op.near"),
            amount: NearToken::from_near(5),
            total: NearToken::from_near(10),
        },
        UnstakeRequested {
            operator: acc("op.near"),
            amount: NearToken::from_near(1),
            unlocks_at_ns: U64(9),
        },
        StakeWithdrawn {
            operator: acc("op.near"),
            amount: NearToken::from_near(1),
        },
        NodeRegistered {
            node_id,
            operator: acc("op.near"),
            signer_key: "ed25519:6E8sCci9badyRkXb3JoRpBj5p8C6Tw41ELDZoiihKEtp"
                .parse()
                .unwrap(),
            encryption_key: "11".repeat(32),
            kind: AttestationKind::Tdx,
            tcb_status: TcbStatus::UpToDate,
            measurements: Measurements {
                mrtd: "aa".repeat(48),
                compose_hash: Some(Hash32([1; 32])),
                ..Default::default()
            },
            expires_at_ns: U64(1_000),
        },
        NodeReattested {
            node_id,
            tcb_status: TcbStatus::SWHardeningNeeded,
            expires_at_ns: U64(2),
        },
        GpuAdded {
            node_id,
            gpu: GpuInfo {
                model: "H100".into(),
                device_id: Hash32([2; 32]),
                driver_version: Some("550.54.14".into()),
                vbios_version: None,
            },
        },
        NodeUpdated {
            node_id,
            endpoint: Some("https://n.example".into()),
            region: Some("eu".into()),
            prices: vec![ModelPrice {
                model_id: model(),
                input_per_million: U128(1),
                output_per_million: U128(2),
            }],
            capacity: 4,
        },
        NodeHeartbeat {
            node_id,
            at_ns: U64(5),
        },
        NodeStatusChanged {
            node_id,
            status: NodeStatus::Inactive,
        },
        NodeSlashed {
            node_id,
            operator: acc("op.near"),
            amount: NearToken::from_millinear(10),
            beneficiary: acc("user.near"),
            stake: Some(NearToken::from_near(3)),
            under_staked: true,
        },
        PolicyUpdated {
            field: "min_stake".into(),
            value: "1".into(),
        },
        CertificateCached {
            hash: Hash32([3; 32]),
        },
    ]
}

fn registry_variant(e: &RegistryEvent) -> usize {
    use RegistryEvent::*;
    match e {
        StakeDeposited { .. } => 0,
        UnstakeRequested { .. } => 1,
        StakeWithdrawn { .. } => 2,
        NodeRegistered { .. } => 3,
        NodeReattested { .. } => 4,
        GpuAdded { .. } => 5,
        NodeUpdated { .. } => 6,
        NodeHeartbeat { .. } => 7,
        NodeStatusChanged { .. } => 8,
        NodeSlashed { .. } => 9,
        PolicyUpdated { .. } => 10,
        CertificateCached { .. } => 11,
    }
}

fn marketplace_samples() -> Vec<MarketplaceEvent> {
    use MarketplaceEvent::*;
    let job_id = JobId(1);
    let settlement = Settlement {
        cost: U128(10),
        provider: U128(8),
        royalty: U128(1),
        protocol_fee: U128(1),
        refund: U128(5),
    };
    let usage = Usage {
        input_tokens: U64(100),
        output_tokens: U64(20),
    };
    vec![
        JobSubmitted {
            job_id,
            user: acc("user.near"),
            model_id: model(),
            asset: Asset::Ft {
                token: acc("usdc.near"),
            },
            price_cap: U128(15),
            claim_deadline_ns: U64(10),
            deadline_ns: U64(20),
            target: JobTarget::Any {
                region: None,
                gpu_model: Some("H100".into()),
                max_price_per_million: Some(U128(3)),
            },
            input: InputRef::Inline {
                ciphertext: Base64VecU8(vec![1, 2, 3]),
            },
            user_key: "22".repeat(32),
        },
        JobClaimed {
            job_id,
            node_id: NodeId(3),
            operator: acc("op.near"),
        },
        JobSettled {
            job_id,
            node_id: NodeId(3),
            usage,
            output: InputRef::Remote {
                hash: Hash32([4; 32]),
                uri: "ipfs://x".into(),
            },
            input_hash: Hash32([5; 32]),
            output_hash: Hash32([4; 32]),
            signature: Base64VecU8(vec![9; 64]),
            settlement: settlement.clone(),
            weights_hash: Some(Hash32([6; 32])),
        },
        JobSettled {
            job_id,
            node_id: NodeId(3),
            usage,
            output: InputRef::Remote {
                hash: Hash32([4; 32]),
                uri: "ipfs://x".into(),
            },
            input_hash: Hash32([5; 32]),
            output_hash: Hash32([4; 32]),
            signature: Base64VecU8(vec![9; 64]),
            settlement: settlement.clone(),
            weights_hash: None,
        },
        JobCancelled {
            job_id,
            reason: CancelReason::DeadlineMissed,
            refund: U128(15),
            slashed: Some(U128(1)),
        },
        RequestCreated {
            request_id: RequestId(7),
            caller: acc("agent.near"),
            model_id: model(),
            deposit: U128(3),
            input: InputRef::Inline {
                ciphertext: Base64VecU8(b"hi".to_vec()),
            },
        },
        RequestAnswered {
            request_id: RequestId(7),
            node_id: NodeId(3),
            usage,
            settlement: settlement.clone(),
        },
        RequestTimedOut {
            request_id: RequestId(8),
            refund: U128(3),
        },
        CreditAdded {
            account: acc("op.near"),
            asset: Asset::Near,
            amount: U128(8),
        },
        CreditWithdrawn {
            account: acc("op.near"),
            asset: Asset::Near,
            amount: U128(8),
        },
        PolicyUpdated {
            field: "protocol_fee_bps".into(),
            value: "100".into(),
        },
        ChannelOpened {
            channel_id: ChannelId(4),
            user: acc("user.near"),
            node_id: NodeId(3),
            operator: acc("op.near"),
            model_id: "llama".parse().unwrap(),
            asset: Asset::Near,
            deposit: U128(1_000),
            channel_key: "ed25519:6E8sCci9badyRkXb3JoRpBj5p8C6Tw41ELDZoiihKEtp"
                .parse()
                .unwrap(),
            price: crate::interfaces::marketplace::NodePrice {
                input_per_million: U128(1),
                output_per_million: U128(2),
            },
            token_rate: None,
            challenge_period_ns: U64(86_400_000_000_000),
        },
        ChannelToppedUp {
            channel_id: ChannelId(4),
            amount: U128(10),
            deposit: U128(1_010),
        },
        ChannelSettled {
            channel_id: ChannelId(4),
            node_id: NodeId(3),
            settled: U128(10),
            settlement: settlement.clone(),
        },
        ChannelCloseStarted {
            channel_id: ChannelId(4),
            ends_ns: U64(9),
        },
        ChannelClosed {
            channel_id: ChannelId(4),
            reason: crate::events::marketplace::ChannelCloseReason::Unilateral,
            settled: U128(10),
            refund: U128(1_000),
        },
    ]
}

fn marketplace_variant(e: &MarketplaceEvent) -> usize {
    use MarketplaceEvent::*;
    match e {
        JobSubmitted { .. } => 0,
        JobClaimed { .. } => 1,
        JobSettled { .. } => 2,
        JobCancelled { .. } => 3,
        RequestCreated { .. } => 4,
        RequestAnswered { .. } => 5,
        RequestTimedOut { .. } => 6,
        CreditAdded { .. } => 7,
        CreditWithdrawn { .. } => 8,
        PolicyUpdated { .. } => 9,
        ChannelOpened { .. } => 10,
        ChannelToppedUp { .. } => 11,
        ChannelSettled { .. } => 12,
        ChannelCloseStarted { .. } => 13,
        ChannelClosed { .. } => 14,
    }
}

fn model_samples() -> Vec<ModelEvent> {
    use ModelEvent::*;
    vec![
        ModelCreated {
            model_id: model(),
            token: acc("llama-3-8b.models.near"),
            owner: acc("o.near"),
        },
        ManifestUpdated {
            model_id: model(),
            manifest: ModelManifest {
                name: "Llama 3 8B".into(),
                allowed_enclave_measurements: vec!["ab".into()],
                ..Default::default()
            },
        },
        CrowdfundStarted {
            goal: U128(100),
            token_price: U128(2),
            deadline_ns: U64(50),
            beneficiary: acc("trainer.near"),
        },
        Contributed {
            account: acc("a.near"),
            amount: U128(10),
            tokens: U128(5),
        },
        CrowdfundSucceeded { raised: U128(100) },
        CrowdfundFailed { raised: U128(10) },
        FundsReleased {
            beneficiary: acc("trainer.near"),
            amount: U128(50),
            milestone: 1,
        },
        ContributionRefunded {
            account: acc("a.near"),
            amount: U128(10),
            tokens_burned: U128(5),
        },
        RevenueDeposited {
            payer: acc("market.near"),
            asset: Asset::Near,
            amount: U128(3),
        },
        RevenueClaimed {
            account: acc("a.near"),
            asset: Asset::Near,
            amount: U128(1),
        },
        KeyGranted {
            node_id: NodeId(3),
            key_hash: Hash32([6; 32]),
        },
        KeyRevoked { node_id: NodeId(3) },
    ]
}

fn model_variant(e: &ModelEvent) -> usize {
    use ModelEvent::*;
    match e {
        ModelCreated { .. } => 0,
        ManifestUpdated { .. } => 1,
        CrowdfundStarted { .. } => 2,
        Contributed { .. } => 3,
        CrowdfundSucceeded { .. } => 4,
        CrowdfundFailed { .. } => 5,
        FundsReleased { .. } => 6,
        ContributionRefunded { .. } => 7,
        RevenueDeposited { .. } => 8,
        RevenueClaimed { .. } => 9,
        KeyGranted { .. } => 10,
        KeyRevoked { .. } => 11,
    }
}

fn nep141_samples() -> Vec<Nep141Event> {
    vec![
        Nep141Event::FtMint(vec![FtMint {
            owner_id: acc("a.near"),
            amount: U128(5),
            memo: None,
        }]),
        Nep141Event::FtBurn(vec![FtBurn {
            owner_id: acc("a.near"),
            amount: U128(5),
            memo: Some("refund".into()),
        }]),
        Nep141Event::FtTransfer(vec![FtTransfer {
            old_owner_id: acc("a.near"),
            new_owner_id: acc("b.near"),
            amount: U128(1),
            memo: None,
        }]),
    ]
}

/// Checks the NEP-297 envelope and the round trip of one event.
fn check_round_trip(event: AnyEvent, standard: &str, version: &str) -> String {
    let line = event.to_log_line();
    let json = line.strip_prefix("EVENT_JSON:").expect("prefix");
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["standard", "version", "event", "data"], "{line}");
    assert_eq!(value["standard"], standard);
    assert_eq!(value["version"], version);
    assert!(
        value["event"]
            .as_str()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_')
    );
    assert_eq!(AnyEvent::parse(&line).unwrap(), Some(event), "{line}");
    value["event"].as_str().unwrap().to_owned()
}

#[test]
fn every_registry_event_round_trips() {
    let samples = registry_samples();
    let covered: BTreeSet<usize> = samples.iter().map(registry_variant).collect();
    assert_eq!(covered.len(), 12, "a registry event variant has no sample");
    let names: BTreeSet<String> = samples
        .into_iter()
        .map(|e| check_round_trip(AnyEvent::Registry(e), "ecloud_registry", "1.1.0"))
        .collect();
    assert_eq!(names.len(), 12);
}

#[test]
fn every_marketplace_event_round_trips() {
    let samples = marketplace_samples();
    let covered: BTreeSet<usize> = samples.iter().map(marketplace_variant).collect();
    assert_eq!(
        covered.len(),
        15,
        "a marketplace event variant has no sample"
    );
    for e in samples {
        check_round_trip(AnyEvent::Marketplace(e), "ecloud_marketplace", "1.2.0");
    }
}

#[test]
fn every_model_event_round_trips() {
    let samples = model_samples();
    let covered: BTreeSet<usize> = samples.iter().map(model_variant).collect();
    assert_eq!(covered.len(), 12, "a model event variant has no sample");
    for e in samples {
        check_round_trip(AnyEvent::Model(e), "ecloud_model", "1.0.0");
    }
}

#[test]
fn nep141_events_round_trip() {
    for e in nep141_samples() {
        check_round_trip(AnyEvent::Nep141(e), "nep141", "1.0.0");
    }
}

#[test]
fn exact_wire_form() {
    let line = RegistryEvent::NodeHeartbeat {
        node_id: NodeId(3),
        at_ns: U64(5),
    }
    .to_log_line();
    assert_eq!(
        line,
        r#"EVENT_JSON:{"standard":"ecloud_registry","version":"1.1.0","event":"node_heartbeat","data":{"node_id":"3","at_ns":"5"}}"#
    );
    let line = MarketplaceEvent::JobClaimed {
        job_id: JobId(1),
        node_id: NodeId(3),
        operator: acc("op.near"),
    }
    .to_log_line();
    assert_eq!(
        line,
        r#"EVENT_JSON:{"standard":"ecloud_marketplace","version":"1.2.0","event":"job_claimed","data":{"job_id":"1","node_id":"3","operator":"op.near"}}"#
    );
}

/// A `job_settled` line without `weights_hash` (versions 1.0.0 and 1.1.0, or plain weights).
fn job_settled_line(version: &str, weights: &str) -> String {
    format!(
        r#"EVENT_JSON:{{"standard":"ecloud_marketplace","version":"{version}","event":"job_settled","data":{{"job_id":"1","node_id":"3","usage":{{"input_tokens":"1","output_tokens":"2"}},"output":{{"kind":"remote","hash":"{h4}","uri":"ipfs://x"}},"input_hash":"{h5}","output_hash":"{h4}","signature":"","settlement":{{"cost":"10","provider":"8","royalty":"1","protocol_fee":"1","refund":"0"}}{weights}}}}}"#,
        h4 = "04".repeat(32),
        h5 = "05".repeat(32),
    )
}

#[test]
fn job_settled_names_weights_only_when_the_receipt_does() {
    let weights_of = |line: &str| match AnyEvent::parse(line).unwrap() {
        Some(AnyEvent::Marketplace(MarketplaceEvent::JobSettled { weights_hash, .. })) => {
            weights_hash
        }
        other => panic!("{other:?}"),
    };
    // Older versions (no field) read as plain weights.
    for version in ["1.0.0", "1.1.0", "1.2.0"] {
        assert_eq!(
            weights_of(&job_settled_line(version, "")),
            None,
            "{version}"
        );
    }
    let named = format!(r#","weights_hash":"{}""#, "06".repeat(32));
    assert_eq!(
        weights_of(&job_settled_line("1.2.0", &named)),
        Some(Hash32([6; 32]))
    );
    // Written without the key when there are none: what 1.1.0 readers saw.
    let plain = AnyEvent::parse(&job_settled_line("1.2.0", ""))
        .unwrap()
        .unwrap();
    let AnyEvent::Marketplace(plain) = plain else {
        panic!()
    };
    assert_eq!(plain.to_log_line(), job_settled_line("1.2.0", ""));
}

#[test]
fn reads_the_registry_events_of_version_1_0_0() {
    // A 1.0.0 registry announced a slash without the operator's standing (and emitted a
    // node_status_changed per node): still read, the new fields at their defaults.
    let line = r#"EVENT_JSON:{"standard":"ecloud_registry","version":"1.0.0","event":"node_slashed","data":{"node_id":"3","operator":"op.near","amount":"5","beneficiary":"user.near"}}"#;
    assert_eq!(
        AnyEvent::parse(line).unwrap(),
        Some(AnyEvent::Registry(RegistryEvent::NodeSlashed {
            node_id: NodeId(3),
            operator: acc("op.near"),
            amount: NearToken::from_yoctonear(5),
            beneficiary: acc("user.near"),
            stake: None,
            under_staked: false,
        }))
    );
    let line = r#"EVENT_JSON:{"standard":"ecloud_registry","version":"1.0.0","event":"node_heartbeat","data":{"node_id":"3","at_ns":"5"}}"#;
    assert!(matches!(
        AnyEvent::parse(line).unwrap(),
        Some(AnyEvent::Registry(RegistryEvent::NodeHeartbeat { .. }))
    ));
    // Versions never released are refused, older or newer.
    for version in ["0.9.0", "1.2.0"] {
        let line = format!(
            r#"EVENT_JSON:{{"standard":"ecloud_registry","version":"{version}","event":"node_heartbeat","data":{{"node_id":"3","at_ns":"5"}}}}"#
        );
        assert!(matches!(
            AnyEvent::parse(&line),
            Err(EventError::UnknownStandard { .. })
        ));
    }
}

#[test]
fn parses_what_near_contract_standards_writes() {
    // Verbatim shape of near-contract-standards' FtTransfer log.
    let line = r#"EVENT_JSON:{"standard":"nep141","version":"1.0.0","event":"ft_transfer","data":[{"old_owner_id":"a.near","new_owner_id":"b.near","amount":"7"}]}"#;
    let Some(AnyEvent::Nep141(Nep141Event::FtTransfer(t))) = AnyEvent::parse(line).unwrap() else {
        panic!("not an ft_transfer")
    };
    assert_eq!(t[0].amount, U128(7));
}

#[test]
fn bad_lines_are_typed_errors() {
    assert_eq!(AnyEvent::parse("plain log").unwrap(), None);
    assert!(matches!(
        AnyEvent::parse("EVENT_JSON:{nope"),
        Err(EventError::Malformed(_))
    ));
    let unknown =
        r#"EVENT_JSON:{"standard":"ecloud_registry","version":"9.0.0","event":"x","data":{}}"#;
    assert_eq!(
        AnyEvent::parse(unknown).unwrap_err().to_string(),
        "unknown event standard 'ecloud_registry' version '9.0.0'"
    );
    let bad = r#"EVENT_JSON:{"standard":"ecloud_registry","version":"1.0.0","event":"node_heartbeat","data":{"node_id":"x"}}"#;
    assert!(matches!(
        AnyEvent::parse(bad),
        Err(EventError::BadEvent { .. })
    ));
}
