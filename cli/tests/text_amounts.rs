//! Amounts in `ecloud`'s text output are for people: every report that prints an amount is
//! rendered on awkward values (1 yoctoNEAR, 0.000275 NEAR minus 1 yocto, 18-decimal tokens,
//! u128::MAX) and its text must hold no raw yocto (no run of 19 or more digits, no "yocto"),
//! while the `--json` document keeps the exact integer strings.

use std::path::PathBuf;

use ecloud::amount::TokenFormat;
use ecloud::cancel::Cancelled;
use ecloud::jobs::{JobStatusReport, Submitted};
use ecloud::models::{Claimed, Confirmed, Contributed, Created, Holder, ModelReport};
use ecloud::nodes::{NodeInfo, NodeList};
use ecloud::output::{Report, to_json};
use enclave_cloud_common::events::marketplace::CancelReason;
use enclave_cloud_common::interfaces::model_factory::ModelStatus;
use enclave_cloud_common::interfaces::model_token::{
    AssetAmount, CrowdfundConfig, CrowdfundStatus, CrowdfundView, RevenuePoolView,
};
use enclave_cloud_common::{
    Asset, AttestationKind, Hash32, JobId, ModelId, ModelPrice, NodeId, NodeStatus,
};
use near_sdk::AccountId;
use near_sdk::json_types::{U64, U128};

const NEAR: u128 = 10u128.pow(24);
/// 0.000275 NEAR minus one yocto: what a royalty share looks like after integer division.
const ROYALTY: u128 = 275 * NEAR / 1_000_000 - 1;
/// 0.011 NEAR.
const STORAGE: u128 = 11 * NEAR / 1000;
/// 123456.789000000000000001 of an 18-decimal token (24 digits raw).
const BIG_TOKEN: u128 = 123_456_789 * 10u128.pow(15) + 1;

fn acc(s: &str) -> AccountId {
    s.parse().expect("account id")
}

fn model() -> ModelId {
    "llama".parse().expect("model id")
}

fn usdc() -> Asset {
    Asset::Ft {
        token: acc("usdc.test.near"),
    }
}

fn usdc_format() -> Option<TokenFormat> {
    Some(TokenFormat {
        symbol: "USDC".into(),
        decimals: 18,
    })
}

/// A word of `text` that is a raw amount: 19 to 39 digits (a u128 has at most 39; a hex hash
/// is longer or has letters).
fn raw_amount(text: &str) -> Option<&str> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| (19..=39).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_digit()))
}

fn assert_readable(what: &str, text: &str) {
    assert!(
        raw_amount(text).is_none(),
        "{what}: a raw amount in the text output:\n{text}"
    );
    assert!(
        !text.to_lowercase().contains("yocto"),
        "{what}: yocto in the text output:\n{text}"
    );
}

fn submitted(asset: Asset, cap: u128, token_format: Option<TokenFormat>) -> Submitted {
    Submitted {
        job_id: JobId(7),
        node_id: NodeId(2),
        model_id: model(),
        asset,
        price_cap: U128(cap),
        attached: U128(cap.saturating_add(STORAGE)),
        deadline_ns: U64(1_700_000_000_000_000_000),
        input_bytes: 120,
        input_hash: Hash32([3; 32]),
        user_key: "ab".repeat(32),
        key_file: PathBuf::from("/keys/alice.key"),
        tx_hash: "tx".into(),
        token_format,
    }
}

fn status(asset: &str, token_format: Option<TokenFormat>) -> JobStatusReport {
    JobStatusReport {
        source: "indexer",
        job_id: JobId(7),
        status: "settled".into(),
        model_id: Some(model()),
        user: Some("alice.test.near".into()),
        node_id: Some(NodeId(2)),
        asset: Some(asset.into()),
        price_cap: Some(STORAGE.to_string()),
        deadline_ns: Some("1700000000000000000".into()),
        usage: Some(serde_json::json!({"input_tokens": "12", "output_tokens": "30"})),
        settlement: Some(serde_json::json!({
            "cost": ROYALTY.to_string(), "provider": "1", "royalty": "1",
            "protocol_fee": "1", "refund": (STORAGE - ROYALTY).to_string(),
        })),
        cancel_reason: None,
        refund: Some((STORAGE - ROYALTY).to_string()),
        token_format,
    }
}

fn model_report() -> ModelReport {
    ModelReport {
        model_id: model(),
        token: acc("llama.factory.test.near"),
        owner: acc("alice.test.near"),
        creator: acc("alice.test.near"),
        created_at_ns: U64(1),
        status: ModelStatus::Created,
        name: "Llama revenue".into(),
        symbol: "LLAMA".into(),
        decimals: 18,
        total_supply: U128(1_000_000 * 10u128.pow(18) + 1),
        manifest: None,
        crowdfund: Some(CrowdfundView {
            config: CrowdfundConfig {
                goal: U128(1000 * NEAR),
                token_price: U128(STORAGE),
                deadline_ns: U64(1),
                beneficiary: acc("trainer.test.near"),
                milestones_bps: vec![],
                approver: None,
            },
            status: CrowdfundStatus::Active,
            raised: U128(123_456_789 * NEAR / 1000 + 1),
            tokens_minted: U128(5),
            released: U128(0),
            next_milestone: 0,
            milestones: 0,
            refunded: U128(0),
        }),
        revenue_pools: vec![
            RevenuePoolView {
                asset: Asset::Near,
                deposited: U128(ROYALTY * 3),
                claimed: U128(ROYALTY),
                undistributed: U128(1),
            },
            RevenuePoolView {
                asset: usdc(),
                deposited: U128(BIG_TOKEN),
                claimed: U128(1),
                undistributed: U128(0),
            },
        ],
        holder: Some(Holder {
            account_id: acc("bob.test.near"),
            balance: U128(10u128.pow(18) / 3),
            claimable: vec![
                AssetAmount {
                    asset: Asset::Near,
                    amount: U128(ROYALTY),
                },
                AssetAmount {
                    asset: usdc(),
                    amount: U128(1),
                },
            ],
        }),
        token_formats: vec![(usdc(), usdc_format().expect("format"))],
    }
}

fn node_list() -> NodeList {
    NodeList {
        items: vec![NodeInfo {
            node_id: NodeId(2),
            operator: "op.test.near".into(),
            status: NodeStatus::Active,
            kind: AttestationKind::Dev,
            signer_key: "ed25519:abc".into(),
            encryption_key: "00".repeat(32),
            tcb_status: None,
            region: Some("eu".into()),
            endpoint: None,
            gpus: vec![],
            prices: vec![ModelPrice {
                model_id: model(),
                input_per_million: U128(ROYALTY),
                output_per_million: U128(STORAGE + 1),
            }],
            capacity: 1,
            attestation_expires_at_ns: U64(1),
            last_heartbeat_ns: U64(1),
        }],
        next_cursor: None,
        model: None,
    }
}

#[test]
fn text_output_has_no_raw_yocto() {
    let confirmed = Confirmed {
        model_id: model(),
        marketplace: acc("market.test.near"),
        royalty_account: Some(acc("llama.factory.test.near")),
        refused: None,
        tx_hash: Some("tx".into()),
    };
    let reports: Vec<(&str, String)> = vec![
        (
            "job submit (NEAR)",
            submitted(Asset::Near, ROYALTY, None).human(),
        ),
        (
            "job submit (token)",
            submitted(usdc(), BIG_TOKEN, usdc_format()).human(),
        ),
        ("job status (NEAR)", status("near", None).human()),
        (
            "job status (token)",
            status("ft:usdc.test.near", usdc_format()).human(),
        ),
        (
            "job cancel",
            Cancelled {
                job_id: JobId(7),
                reason: CancelReason::DeadlineMissed,
                refunded_to: acc("alice.test.near"),
                asset: Asset::Near,
                refund: U128(STORAGE),
                slashed: Some(U128(ROYALTY)),
                tx_hash: "tx".into(),
                token_format: None,
            }
            .human(),
        ),
        (
            "model create",
            Created {
                model_id: model(),
                token: acc("llama.factory.test.near"),
                owner: acc("alice.test.near"),
                deposit: U128(3 * NEAR + ROYALTY),
                tx_hash: "tx".into(),
                royalties: confirmed,
            }
            .human(),
        ),
        (
            "model contribute",
            Contributed {
                model_id: model(),
                token: acc("llama.factory.test.near"),
                amount: U128(ROYALTY),
                tokens: U128(ROYALTY),
                decimals: 18,
                tx_hash: "tx".into(),
            }
            .human(),
        ),
        (
            "model claim (NEAR)",
            Claimed {
                model_id: model(),
                asset: Asset::Near,
                amount: U128(ROYALTY),
                tx_hash: Some("tx".into()),
                token_format: None,
            }
            .human(),
        ),
        (
            "model claim (token)",
            Claimed {
                model_id: model(),
                asset: usdc(),
                amount: U128(BIG_TOKEN),
                tx_hash: Some("tx".into()),
                token_format: usdc_format(),
            }
            .human(),
        ),
        ("model show", model_report().human()),
        ("nodes", node_list().human()),
    ];
    for (what, text) in &reports {
        println!("--- {what}\n{text}");
        assert_readable(what, text);
    }
    let text = |what: &str| &reports.iter().find(|(w, _)| *w == what).unwrap().1;
    assert!(
        text("model claim (NEAR)").contains("claimed 0.000275 NEAR of model llama's revenue"),
        "{}",
        text("model claim (NEAR)")
    );
    assert!(text("model claim (token)").contains("claimed 123456.789 USDC"));
    assert!(text("job submit (NEAR)").contains("price cap  0.000275 NEAR"));
    assert!(text("job status (NEAR)").contains("price cap   0.011 NEAR"));
    assert!(text("job status (NEAR)").contains("cost        0.000275 NEAR"));
    // The split of the settlement: 1 yoctoNEAR each reads as under a millionth.
    assert!(text("job status (NEAR)").contains("provider    <0.000001 NEAR"));
    assert!(text("job status (NEAR)").contains("royalty     <0.000001 NEAR"));
    assert!(text("job status (NEAR)").contains("fee         <0.000001 NEAR"));
    assert!(text("job cancel").contains("0.011 NEAR refunded"));
    let show = text("model show");
    assert!(
        show.contains("raised 123456.789 NEAR of 1000 NEAR (token price 0.011 NEAR per LLAMA)"),
        "{show}"
    );
    assert!(show.contains("claimable  <0.000001 USDC"), "{show}");
    assert!(
        text("nodes").contains("llama 0.000275/0.011"),
        "{}",
        text("nodes")
    );
}

#[test]
fn the_check_finds_raw_amounts() {
    assert_eq!(
        raw_amount("claimed 274999999999999999999 of x"),
        Some("274999999999999999999")
    );
    // The old exact display: 24 decimals are a raw amount too.
    assert!(raw_amount("claimed 0.000274999999999999999999 NEAR").is_some());
    assert_eq!(raw_amount("claimed 0.000275 NEAR, 123456.789 USDC"), None);
    assert_eq!(raw_amount(&"1".repeat(64)), None);
    assert_eq!(
        raw_amount("deadline 1700000000000000000"),
        Some("1700000000000000000")
    );
}

#[test]
fn json_output_keeps_exact_amounts() {
    let claimed = Claimed {
        model_id: model(),
        asset: Asset::Near,
        amount: U128(ROYALTY),
        tx_hash: Some("tx".into()),
        token_format: None,
    };
    let v: serde_json::Value = serde_json::from_str(&to_json(&claimed)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "model_id": "llama",
            "asset": {"kind": "near"},
            "amount": "274999999999999999999",
            "tx_hash": "tx",
        })
    );
    let v: serde_json::Value =
        serde_json::from_str(&to_json(&submitted(usdc(), 5, usdc_format()))).unwrap();
    assert_eq!(v["price_cap"], "5");
    assert!(v.get("token_format").is_none(), "{v}");
    let v: serde_json::Value = serde_json::from_str(&to_json(&model_report())).unwrap();
    assert_eq!(v["revenue_pools"][1]["deposited"], BIG_TOKEN.to_string());
    assert!(v.get("token_formats").is_none(), "{v}");
    let v: serde_json::Value = serde_json::from_str(&to_json(&status("near", None))).unwrap();
    assert_eq!(v["settlement"]["cost"], ROYALTY.to_string());
}
