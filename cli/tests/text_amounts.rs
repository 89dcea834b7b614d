//! Amounts in `ecloud`'s text output are for people: every report that prints an amount is
//! rendered on awkward values (1 yoctoNEAR, 0.000275 NEAR minus 1 yocto, 18-decimal tokens,
//! u128::MAX) and its text must hold no raw yocto (no run of 19 or more digits, no "yocto"),
//! while the `--json` document keeps the exact integer strings.

use std::path::PathBuf;

use ecloud::amount::TokenFormat;
use ecloud::cancel::Cancelled;
use ecloud::jobs::{JobResult, JobStatusReport, Submitted, Verified};
use ecloud::model_weights::{Decrypted, Encrypted, WeightsSet};
use ecloud::models::{Claimed, Confirmed, Contributed, Created, Finalized, Holder, ModelReport};
use ecloud::nodes::{GpuSummary, NodeInfo, NodeList};
use ecloud::output::{Align, Report, Table, to_json};
use enclave_cloud_common::events::marketplace::CancelReason;
use enclave_cloud_common::interfaces::model_factory::ModelStatus;
use enclave_cloud_common::interfaces::model_token::{
    AssetAmount, CrowdfundConfig, CrowdfundStatus, CrowdfundView, RevenuePoolView,
};
use enclave_cloud_common::{
    Asset, AttestationKind, Hash32, JobId, ModelId, ModelPrice, NodeId, NodeStatus, Usage,
};
use near_sdk::AccountId;
use near_sdk::json_types::{U64, U128};
use protocol::weights::{DecryptSummary, EncryptSummary};

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
    assert!(show.contains("ft:usdc.test.near  <0.000001 USDC"), "{show}");
    assert!(
        text("nodes").contains("llama    0.000275        0.011"),
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

/// The tables in a text output: a header line (two or more upper-case cells separated by two
/// or more spaces) and the lines after it at the same indent that hold cells too.
fn tables(text: &str) -> Vec<Vec<&str>> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let cells = |l: &str| -> Vec<String> {
        l.trim()
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let is_header = |l: &str| {
        let c = cells(l);
        c.len() >= 2
            && c.iter().all(|c| {
                c.chars().any(|ch| ch.is_ascii_uppercase()) && !c.chars().any(char::is_lowercase)
            })
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !is_header(lines[i]) {
            i += 1;
            continue;
        }
        let at = indent(lines[i]);
        let mut table = vec![lines[i]];
        i += 1;
        while i < lines.len()
            && !lines[i].trim().is_empty()
            && indent(lines[i]) == at
            && lines[i][at..].contains("  ")
        {
            table.push(lines[i]);
            i += 1;
        }
        out.push(table);
    }
    out
}

/// A table is aligned when its columns are vertical bands: the runs of two or more positions
/// that are blank on every line split every line into as many cells as the header has, and no
/// line has a cell spilling over a gap.
fn check_aligned(table: &[&str]) -> Result<(), String> {
    let rows: Vec<Vec<char>> = table.iter().map(|l| l.chars().collect()).collect();
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let blank = |x: usize| rows.iter().all(|r| r.get(x).is_none_or(|c| *c == ' '));
    // The bands: maximal runs of non-blank columns separated by 2+ blank ones.
    let mut bands: Vec<(usize, usize)> = Vec::new();
    let mut x = 0;
    while x < width {
        if blank(x) {
            x += 1;
            continue;
        }
        let start = x;
        loop {
            while x < width && !blank(x) {
                x += 1;
            }
            // A single blank position inside a band is a space within cells ("0.1 NEAR").
            if x + 1 < width && blank(x) && !blank(x + 1) {
                x += 1;
                continue;
            }
            break;
        }
        bands.push((start, x));
    }
    let header_cells = table[0]
        .trim()
        .split("  ")
        .filter(|c| !c.is_empty())
        .count();
    if bands.len() != header_cells {
        return Err(format!(
            "{} column bands for {header_cells} headers:\n{}",
            bands.len(),
            table.join("\n")
        ));
    }
    for (line, row) in table.iter().zip(&rows) {
        for &(start, end) in &bands {
            let cell: String = row
                .get(start..end.min(row.len()))
                .unwrap_or_default()
                .iter()
                .collect();
            if cell.trim().is_empty() || cell.trim().contains("  ") {
                return Err(format!("no single cell in {start}..{end} of {line:?}"));
            }
        }
    }
    Ok(())
}

fn node(
    id: u64,
    kind: AttestationKind,
    region: &str,
    gpus: &[&str],
    prices: &[(&str, u128, u128)],
) -> NodeInfo {
    let mut n = node_list().items.remove(0);
    n.node_id = NodeId(id);
    n.kind = kind;
    n.region = (!region.is_empty()).then(|| region.to_owned());
    n.gpus = gpus
        .iter()
        .map(|g| GpuSummary {
            model: (*g).to_owned(),
        })
        .collect();
    n.prices = prices
        .iter()
        .map(|(m, i, o)| ModelPrice {
            model_id: m.parse().expect("model id"),
            input_per_million: U128(*i),
            output_per_million: U128(*o),
        })
        .collect();
    n
}

/// A report's text and `--json` forms.
type Render = Box<dyn Fn() -> (String, String)>;

/// Every report, with values of uneven widths, and how many tables its text has.
fn every_report() -> Vec<(&'static str, Render, usize)> {
    fn both<R: Report>(r: R) -> (String, String) {
        (r.human(), to_json(&r))
    }
    let confirmed = || Confirmed {
        model_id: model(),
        marketplace: acc("market.test.near"),
        royalty_account: None,
        refused: Some("no factory".into()),
        tx_hash: None,
    };
    let summary = EncryptSummary {
        plaintext_sha256: Hash32([1; 32]),
        ciphertext_sha256: Hash32([2; 32]),
        bytes: 5 << 20,
        ciphertext_bytes: (5 << 20) + 100,
        chunk_size: 1 << 20,
        chunks: 5,
    };
    vec![
        (
            "job submit",
            Box::new(|| both(submitted(usdc(), BIG_TOKEN, usdc_format()))),
            0,
        ),
        ("job status", Box::new(|| both(status("near", None))), 0),
        (
            "job result",
            Box::new(|| {
                both(JobResult {
                    job_id: JobId(7),
                    model_id: model(),
                    node_id: NodeId(2),
                    usage: Usage {
                        input_tokens: U64(12),
                        output_tokens: U64(30),
                    },
                    status_code: 200,
                    body: serde_json::json!({"choices": [{"message": {"content": "hi"}}]}),
                    weights_hash: Some(Hash32([0xab; 32])),
                    verified: Verified {
                        receipt: "signature",
                        signer_key: "ed25519:abc".into(),
                        key_source: "marketplace",
                        input_hash: Hash32([3; 32]),
                        output_hash: Hash32([4; 32]),
                        weights_hash: Some(Hash32([0xab; 32])),
                    },
                })
            }),
            0,
        ),
        (
            "job cancel",
            Box::new(|| {
                both(Cancelled {
                    job_id: JobId(7),
                    reason: CancelReason::DeadlineMissed,
                    refunded_to: acc("alice.test.near"),
                    asset: Asset::Near,
                    refund: U128(STORAGE),
                    slashed: None,
                    tx_hash: "tx".into(),
                    token_format: None,
                })
            }),
            0,
        ),
        (
            "model create",
            Box::new(move || {
                both(Created {
                    model_id: model(),
                    token: acc("llama.factory.test.near"),
                    owner: acc("alice.test.near"),
                    deposit: U128(3 * NEAR),
                    tx_hash: "tx".into(),
                    royalties: confirmed(),
                })
            }),
            0,
        ),
        ("model confirm", Box::new(move || both(confirmed())), 0),
        (
            "model contribute",
            Box::new(|| {
                both(Contributed {
                    model_id: model(),
                    token: acc("llama.factory.test.near"),
                    amount: U128(NEAR),
                    tokens: U128(10u128.pow(18)),
                    decimals: 18,
                    tx_hash: "tx".into(),
                })
            }),
            0,
        ),
        (
            "model finalize",
            Box::new(|| {
                both(Finalized {
                    model_id: model(),
                    token: acc("llama.factory.test.near"),
                    status: CrowdfundStatus::Succeeded,
                    tx_hash: "tx".into(),
                })
            }),
            0,
        ),
        (
            "model claim",
            Box::new(|| {
                both(Claimed {
                    model_id: model(),
                    asset: usdc(),
                    amount: U128(BIG_TOKEN),
                    tx_hash: None,
                    token_format: None,
                })
            }),
            0,
        ),
        ("model show", Box::new(|| both(model_report())), 2),
        (
            "model encrypt",
            Box::new(move || {
                both(Encrypted {
                    weights: PathBuf::from("w.bin"),
                    out: PathBuf::from("w.enc"),
                    key_file: PathBuf::from("w.key"),
                    key_created: true,
                    key_hash: Hash32([5; 32]),
                    summary,
                    seconds: 0.5,
                })
            }),
            0,
        ),
        (
            "model decrypt",
            Box::new(|| {
                both(Decrypted {
                    input: PathBuf::from("w.enc"),
                    out: PathBuf::from("w.bin"),
                    summary: DecryptSummary {
                        plaintext_sha256: Hash32([1; 32]),
                        ciphertext_sha256: Hash32([2; 32]),
                        bytes: 5 << 20,
                    },
                    seconds: 0.0,
                })
            }),
            0,
        ),
        (
            "model set-weights",
            Box::new(|| {
                both(WeightsSet {
                    model_id: model(),
                    token: acc("llama.factory.test.near"),
                    encrypted_weights_uri: "https://example.org/w.enc".into(),
                    weights_hash: Hash32([2; 32]),
                    plaintext_sha256: None,
                    tx_hash: "tx".into(),
                })
            }),
            0,
        ),
        (
            "nodes",
            Box::new(|| {
                let mut list = node_list();
                list.items.push(node(
                    137,
                    AttestationKind::Tdx,
                    "us-east-1",
                    &["H100", "H100"],
                    &[
                        ("llama", 1, u128::MAX),
                        ("minilm-l6-v2", 5 * NEAR, NEAR / 2),
                    ],
                ));
                list.items.push(node(9, AttestationKind::Dev, "", &[], &[]));
                list.next_cursor = Some("c2".into());
                both(list)
            }),
            1,
        ),
        (
            "nodes (none)",
            Box::new(|| {
                both(NodeList {
                    items: vec![],
                    next_cursor: None,
                    model: None,
                })
            }),
            0,
        ),
    ]
}

#[test]
fn every_report_prints_json_and_aligned_tables() {
    for (what, render, expected_tables) in every_report() {
        let (text, json) = render();
        println!("--- {what}\n{text}");
        let v: serde_json::Value = serde_json::from_str(&json)
            .unwrap_or_else(|e| panic!("{what}: --json is not JSON: {e}"));
        assert!(v.is_object(), "{what}: {json}");
        assert_readable(what, &text);
        let found = tables(&text);
        assert_eq!(found.len(), expected_tables, "{what}: tables in\n{text}");
        for t in found {
            assert!(t.len() >= 2, "{what}: a table without rows:\n{text}");
            check_aligned(&t).unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}

#[test]
fn nodes_table_has_a_row_per_price_with_amounts_right_aligned() {
    let mut list = node_list();
    list.items.push(node(
        137,
        AttestationKind::Tdx,
        "us-east-1",
        &["H100", "H100"],
        &[("llama", 1, 123 * NEAR), ("minilm", 5 * NEAR, NEAR / 2)],
    ));
    let text = list.human();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("NODE  STATUS  KIND  REGION     GPUS       MODEL"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("137   active  tdx   us-east-1  H100,H100  llama "),
        "{text}"
    );
    assert!(
        lines[3].starts_with("137   active  tdx   us-east-1  H100,H100  minilm"),
        "{text}"
    );
    // Right-aligned: every line ends at the same column (the OUT prices, then the header).
    let ends: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
    assert!(ends.iter().all(|e| *e == ends[0]), "{text}");
    assert!(lines[2].ends_with("  123"), "{text}");
    assert!(lines[3].ends_with("  0.5"), "{text}");
    // The same table only for one model.
    list.model = Some("minilm".parse().unwrap());
    let text = list.human();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(!text.contains("llama"), "{text}");
}

#[test]
fn the_alignment_check_finds_ragged_tables() {
    let mut t = Table::new(&[("ASSET", Align::Left), ("AMOUNT", Align::Right)]);
    t.row(["near", "0.5 NEAR"])
        .row(["ft:usdc.test.near", "123456.789 USDC"]);
    let text = t.render("  ");
    let found = tables(&text);
    assert_eq!(found.len(), 1, "{text}");
    check_aligned(&found[0]).unwrap();
    assert!(
        text.contains("  ft:usdc.test.near  123456.789 USDC\n"),
        "{text}"
    );
    assert!(
        text.contains("  near                      0.5 NEAR\n"),
        "{text}"
    );
    // Ad-hoc format strings: a cell wider than its column shifts the rest of its row.
    let ragged = "ID  NAME    AMOUNT\n1   alpha   3 NEAR\n22  a-long-name  4 NEAR\n";
    let found = tables(ragged);
    assert_eq!(found.len(), 1);
    assert!(check_aligned(&found[0]).is_err(), "{ragged}");
    // A cell run into its neighbour.
    let shifted = "ID  NAME   AMOUNT\n1   alpha  3\n22  beta 4\n";
    assert!(check_aligned(&tables(shifted)[0]).is_err(), "{shifted}");
}
