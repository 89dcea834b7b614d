//! Builds `StreamerMessage` fixtures whose logs are real NEP-297 lines written by the
//! shared event types (`to_log_line()`), exactly as the contracts emit them. Used by the
//! tests, the ingest benchmark and anyone who needs blocks without a chain.

use crate::block::{
    BlockHeaderView, BlockView, ExecutionOutcomeView, ExecutionOutcomeWithIdView,
    IndexerExecutionOutcomeWithReceipt, IndexerShard, StreamerMessage,
};
use crate::source::FixtureSource;
use std::path::Path;

/// A chain of fixture blocks with linked hashes.
#[derive(Debug, Clone)]
pub struct ChainBuilder {
    height: u64,
    prev_hash: String,
    receipts: u64,
}

/// Nanoseconds of the fixture chain's genesis; one second per block.
const GENESIS_NS: u64 = 1_700_000_000_000_000_000;

impl ChainBuilder {
    /// The next block built will have height `first_height`.
    pub fn new(first_height: u64) -> Self {
        Self {
            height: first_height,
            prev_hash: hash_of(first_height.saturating_sub(1)),
            receipts: 0,
        }
    }

    /// Leaves `n` heights without a block (the chain skipped them).
    pub fn skip(&mut self, n: u64) {
        self.height += n;
    }

    /// The next block, with one successful receipt per `(executor, logs)` entry.
    pub fn block(&mut self, receipts: &[(&str, Vec<String>)]) -> StreamerMessage {
        self.block_with_status(
            receipts
                .iter()
                .map(|(e, l)| (*e, l.clone(), true))
                .collect(),
        )
    }

    /// Like [`Self::block`], choosing per receipt whether it succeeded.
    pub fn block_with_status(
        &mut self,
        receipts: Vec<(&str, Vec<String>, bool)>,
    ) -> StreamerMessage {
        let height = self.height;
        let hash = hash_of(height);
        let outcomes = receipts
            .into_iter()
            .map(|(executor, logs, ok)| {
                self.receipts += 1;
                let status = if ok {
                    serde_json::json!({"SuccessValue": ""})
                } else {
                    serde_json::json!({"Failure": {"ActionError": {"index": 0,
                        "kind": {"FunctionCallError": {"ExecutionError": "fixture failure"}}}}})
                };
                IndexerExecutionOutcomeWithReceipt {
                    execution_outcome: ExecutionOutcomeWithIdView {
                        id: format!("receipt-{}", self.receipts),
                        outcome: ExecutionOutcomeView {
                            logs,
                            executor_id: executor.to_owned(),
                            status,
                        },
                    },
                }
            })
            .collect();
        let msg = StreamerMessage {
            block: BlockView {
                header: BlockHeaderView {
                    height,
                    hash: hash.clone(),
                    prev_hash: std::mem::replace(&mut self.prev_hash, hash),
                    timestamp_nanosec: GENESIS_NS + height * 1_000_000_000,
                },
            },
            shards: vec![IndexerShard {
                shard_id: 0,
                receipt_execution_outcomes: outcomes,
            }],
        };
        self.height += 1;
        msg
    }
}

/// A deterministic fake block hash.
fn hash_of(height: u64) -> String {
    format!("fixture-block-{height}")
}

/// Writes `msg` where [`FixtureSource`] reads it.
pub fn write_block(dir: &Path, msg: &StreamerMessage) -> std::io::Result<()> {
    let json = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    std::fs::write(FixtureSource::path_for(dir, msg.height()), json)
}

/// A small but complete story on the fixture chain: two nodes register, a model is
/// created and crowdfunded, jobs and an agent request run through, governance changes are
/// proposed (one applied at once), payment channels are opened, settled and closed, and a
/// few lines that must be refused (malformed, foreign, from a failed receipt) are mixed in.
pub mod scenario {
    use super::ChainBuilder;
    use crate::block::StreamerMessage;
    use crate::ingest::Contracts;
    use enclave_cloud_common::events::marketplace::{ChannelCloseReason, JobTarget, Settlement};
    use enclave_cloud_common::events::model::ModelManifest;
    use enclave_cloud_common::events::nep141::{FtMint, FtTransfer};
    use enclave_cloud_common::events::{
        GovernanceEvent, MarketplaceEvent, ModelEvent, Nep141Event, Nep297, RegistryEvent,
    };
    use enclave_cloud_common::governance::Change;
    use enclave_cloud_common::interfaces::marketplace::NodePrice;
    use enclave_cloud_common::{
        Asset, AttestationKind, ChannelId, GpuInfo, Hash32, InputRef, JobId, Measurements, ModelId,
        ModelPrice, NodeId, NodeStatus, RequestId, TcbStatus, Usage,
    };
    use near_sdk::json_types::{Base64VecU8, U64, U128};
    use near_sdk::{AccountId, NearToken};

    pub const REGISTRY: &str = "registry.test";
    pub const MARKETPLACE: &str = "market.test";
    pub const FACTORY: &str = "factory.test";
    pub const MODEL: &str = "llama-3-8b";
    pub const MODEL_TOKEN: &str = "llama-3-8b.factory.test";
    pub const USDC: &str = "usdc.test";
    pub const OPERATOR: &str = "op.test";
    pub const USER: &str = "alice.test";
    pub const AGENT: &str = "agent.test";
    /// The owner (a DAO) of the contracts' timelocks.
    pub const GOVERNOR: &str = "dao.test";

    /// The accounts the scenario's contracts live at.
    pub fn contracts() -> Contracts {
        Contracts {
            registry: acc(REGISTRY),
            marketplace: acc(MARKETPLACE),
            factory: Some(acc(FACTORY)),
            payment_tokens: vec![acc(USDC)],
        }
    }

    pub fn acc(s: &str) -> AccountId {
        s.parse()
            .unwrap_or_else(|_| panic!("fixture account id '{s}' is invalid"))
    }

    pub fn model() -> ModelId {
        MODEL
            .parse()
            .unwrap_or_else(|_| panic!("fixture model id '{MODEL}' is invalid"))
    }

    pub fn registered(node: u64) -> RegistryEvent {
        RegistryEvent::NodeRegistered {
            node_id: NodeId(node),
            operator: acc(OPERATOR),
            signer_key: near_sdk::PublicKey::from_parts(
                near_sdk::CurveType::ED25519,
                vec![node as u8; 32],
            )
            .unwrap_or_else(|_| panic!("32 bytes make an ed25519 key")),
            encryption_key: "11".repeat(32),
            kind: AttestationKind::Dev,
            tcb_status: TcbStatus::None,
            measurements: Measurements {
                mrtd: "aa".repeat(48),
                ..Default::default()
            },
            expires_at_ns: U64(9_000_000_000_000_000_000),
        }
    }

    pub fn priced(node: u64, region: &str, output_price: u128) -> RegistryEvent {
        RegistryEvent::NodeUpdated {
            node_id: NodeId(node),
            endpoint: Some(format!("https://node{node}.example")),
            region: Some(region.into()),
            prices: vec![ModelPrice {
                model_id: model(),
                input_per_million: U128(1),
                output_per_million: U128(output_price),
            }],
            capacity: 2,
        }
    }

    pub fn gpu(node: u64, model: &str) -> RegistryEvent {
        RegistryEvent::GpuAdded {
            node_id: NodeId(node),
            gpu: GpuInfo {
                model: model.into(),
                device_id: Hash32([node as u8; 32]),
                driver_version: Some("550.54.14".into()),
                vbios_version: None,
            },
        }
    }

    pub fn submitted(job: u64, target: JobTarget, cap: u128) -> MarketplaceEvent {
        MarketplaceEvent::JobSubmitted {
            job_id: JobId(job),
            user: acc(USER),
            model_id: model(),
            asset: Asset::Near,
            price_cap: U128(cap),
            claim_deadline_ns: U64(1),
            deadline_ns: U64(2),
            target,
            input: InputRef::Inline {
                ciphertext: Base64VecU8(vec![1, 2, 3]),
            },
            user_key: "22".repeat(32),
        }
    }

    pub fn any_target(max_price: Option<u128>) -> JobTarget {
        JobTarget::Any {
            region: None,
            gpu_model: None,
            max_price_per_million: max_price.map(U128),
        }
    }

    pub fn settlement(cost: u128, cap: u128) -> Settlement {
        let royalty = cost / 10;
        let fee = cost / 20;
        Settlement {
            cost: U128(cost),
            provider: U128(cost - royalty - fee),
            royalty: U128(royalty),
            protocol_fee: U128(fee),
            refund: U128(cap - cost),
        }
    }

    pub fn settled(job: u64, node: u64, cost: u128, cap: u128) -> MarketplaceEvent {
        MarketplaceEvent::JobSettled {
            job_id: JobId(job),
            node_id: NodeId(node),
            usage: Usage {
                input_tokens: U64(100),
                output_tokens: U64(20),
            },
            output: InputRef::Remote {
                hash: Hash32([4; 32]),
                uri: "ipfs://out".into(),
            },
            input_hash: Hash32([5; 32]),
            output_hash: Hash32([4; 32]),
            signature: Base64VecU8(vec![9; 64]),
            settlement: settlement(cost, cap),
            weights_hash: None,
        }
    }

    /// `change_proposed` of a new delay, as a contract's timelock writes it.
    pub fn delay_proposed(
        id: u64,
        delay_ns: u64,
        applies_at_ns: u64,
    ) -> GovernanceEvent<Change<()>> {
        GovernanceEvent::ChangeProposed {
            id: U64(id),
            change: Change::SetDelay {
                delay_ns: U64(delay_ns),
            },
            proposed_by: acc(GOVERNOR),
            applies_at_ns: U64(applies_at_ns),
        }
    }

    pub fn claimed(job: u64, node: u64) -> MarketplaceEvent {
        MarketplaceEvent::JobClaimed {
            job_id: JobId(job),
            node_id: NodeId(node),
            operator: acc(OPERATOR),
        }
    }

    /// The user of the scenario's payment channels.
    pub const CHANNEL_USER: &str = "carol.test";
    /// The scenario's channels are to node 1.
    pub const CHANNEL_NODE: u64 = 1;
    /// One NEAR in yoctoNEAR.
    pub const NEAR: u128 = 1_000_000_000_000_000_000_000_000;
    /// The challenge period of the scenario's channels: 24 h.
    pub const CHALLENGE_NS: u64 = 86_400 * 1_000_000_000;

    /// `channel_opened` of a NEAR channel from [`CHANNEL_USER`] to [`CHANNEL_NODE`].
    pub fn channel_opened(channel: u64, deposit: u128) -> MarketplaceEvent {
        MarketplaceEvent::ChannelOpened {
            channel_id: ChannelId(channel),
            user: acc(CHANNEL_USER),
            node_id: NodeId(CHANNEL_NODE),
            operator: acc(OPERATOR),
            model_id: model(),
            asset: Asset::Near,
            deposit: U128(deposit),
            channel_key: near_sdk::PublicKey::from_parts(
                near_sdk::CurveType::ED25519,
                vec![channel as u8; 32],
            )
            .unwrap_or_else(|_| panic!("32 bytes make an ed25519 key")),
            price: NodePrice {
                input_per_million: U128(1),
                output_per_million: U128(2_000),
            },
            token_rate: None,
            challenge_period_ns: U64(CHALLENGE_NS),
        }
    }

    /// `channel_settled` of a voucher for `settled` in all, `cost` more than the previous
    /// one; `refund` is what a close returns (0 for a plain settlement).
    pub fn channel_settled(
        channel: u64,
        settled: u128,
        cost: u128,
        refund: u128,
    ) -> MarketplaceEvent {
        MarketplaceEvent::ChannelSettled {
            channel_id: ChannelId(channel),
            node_id: NodeId(CHANNEL_NODE),
            settled: U128(settled),
            settlement: settlement(cost, cost + refund),
        }
    }

    pub fn channel_topped_up(channel: u64, amount: u128, deposit: u128) -> MarketplaceEvent {
        MarketplaceEvent::ChannelToppedUp {
            channel_id: ChannelId(channel),
            amount: U128(amount),
            deposit: U128(deposit),
        }
    }

    pub fn channel_close_started(channel: u64, ends_ns: u64) -> MarketplaceEvent {
        MarketplaceEvent::ChannelCloseStarted {
            channel_id: ChannelId(channel),
            ends_ns: U64(ends_ns),
        }
    }

    pub fn channel_closed(
        channel: u64,
        reason: ChannelCloseReason,
        settled: u128,
        refund: u128,
    ) -> MarketplaceEvent {
        MarketplaceEvent::ChannelClosed {
            channel_id: ChannelId(channel),
            reason,
            settled: U128(settled),
            refund: U128(refund),
        }
    }

    fn lines<E: Nep297>(events: &[E]) -> Vec<String> {
        events.iter().map(Nep297::to_log_line).collect()
    }

    /// What the scenario must leave in the database.
    pub struct Expect;
    impl Expect {
        pub const NODES: i64 = 2;
        pub const JOBS: i64 = 4;
        /// Job 3 is open to any node, job 4 is named to node 2: both still open.
        pub const OPEN_JOBS: [u64; 2] = [3, 4];
        pub const MALFORMED: i64 = 2;
        pub const FOREIGN: i64 = 1;
        pub const SETTLED_COST: u128 = 1_000;
        pub const HOLDER_A: u128 = 70;
        pub const HOLDER_B: u128 = 30;
        /// Channel 1 (open): 1 NEAR, topped up by 0.5, two vouchers settled.
        pub const CHANNEL_1_DEPOSIT: u128 = 3 * NEAR / 2;
        pub const CHANNEL_1_SETTLED: u128 = 30 * NEAR / 1_000;
        /// Channel 2 (closing): 0.5 NEAR, one voucher settled, the user's close started.
        pub const CHANNEL_2_SETTLED: u128 = NEAR / 10;
        /// Channel 3 (closed cooperatively with its final voucher): 0.2 NEAR.
        pub const CHANNEL_3_SETTLED: u128 = NEAR / 20;
        pub const CHANNEL_3_REFUND: u128 = 3 * NEAR / 20;
        /// What the channels' settlements cost in all (provider, royalty and fee).
        pub const CHANNEL_COST: u128 =
            Self::CHANNEL_1_SETTLED + Self::CHANNEL_2_SETTLED + Self::CHANNEL_3_SETTLED;
    }

    /// The scenario's blocks, from `first_height`, with one skipped height in the middle.
    pub fn blocks(first_height: u64) -> Vec<StreamerMessage> {
        let mut chain = ChainBuilder::new(first_height);
        let mut out = Vec::new();
        // Nodes join.
        out.push(chain.block(&[(
            REGISTRY,
            lines(&[
                RegistryEvent::StakeDeposited {
                    operator: acc(OPERATOR),
                    amount: NearToken::from_near(10),
                    total: NearToken::from_near(10),
                },
                registered(1),
                gpu(1, "H100"),
                priced(1, "eu", 2_000),
                registered(2),
                gpu(2, "H200"),
                priced(2, "us", 1_000),
            ]),
        )]));
        // A model with its token, manifest and crowdfund; holders get tokens.
        let token = MODEL_TOKEN;
        out.push(chain.block(&[
            (
                FACTORY,
                lines(&[ModelEvent::ModelCreated {
                    model_id: model(),
                    token: acc(token),
                    owner: acc("owner.test"),
                }]),
            ),
            (
                token,
                lines(&[
                    ModelEvent::ManifestUpdated {
                        model_id: model(),
                        manifest: ModelManifest {
                            name: "Llama 3 8B".into(),
                            ..Default::default()
                        },
                    },
                    ModelEvent::CrowdfundStarted {
                        goal: U128(100),
                        token_price: U128(1),
                        deadline_ns: U64(10),
                        beneficiary: acc("trainer.test"),
                    },
                    ModelEvent::Contributed {
                        account: acc("a.test"),
                        amount: U128(100),
                        tokens: U128(100),
                    },
                    ModelEvent::CrowdfundSucceeded { raised: U128(100) },
                ]),
            ),
        ]));
        chain.skip(1);
        out.push(chain.block(&[(
            token,
            lines(&[
                Nep141Event::FtMint(vec![FtMint {
                    owner_id: acc("a.test"),
                    amount: U128(100),
                    memo: None,
                }]),
                Nep141Event::FtTransfer(vec![FtTransfer {
                    old_owner_id: acc("a.test"),
                    new_owner_id: acc("b.test"),
                    amount: U128(30),
                    memo: None,
                }]),
            ]),
        )]));
        // Jobs: 1 settles on node 2, 2 is cancelled, 3 (any) and 4 (named to node 2) stay open.
        out.push(chain.block(&[(
            MARKETPLACE,
            lines(&[
                submitted(1, any_target(None), 5_000),
                submitted(2, any_target(Some(500)), 5_000),
            ]),
        )]));
        out.push(chain.block_with_status(vec![
            (MARKETPLACE, lines(&[claimed(1, 2)]), true),
            // Rolled back: must leave no trace.
            (MARKETPLACE, lines(&[claimed(2, 1)]), false),
            // A contract that is not ours imitating the marketplace.
            ("evil.test", lines(&[claimed(2, 1)]), true),
            // Our registry writing a marketplace event: foreign, counted.
            (REGISTRY, lines(&[claimed(2, 1)]), true),
        ]));
        out.push(chain.block(&[
            (
                MARKETPLACE,
                vec![
                    settled(1, 2, Expect::SETTLED_COST, 5_000).to_log_line(),
                    MarketplaceEvent::JobCancelled {
                        job_id: JobId(2),
                        reason: enclave_cloud_common::events::marketplace::CancelReason::Unclaimed,
                        refund: U128(5_000),
                        slashed: None,
                    }
                    .to_log_line(),
                    "EVENT_JSON:{not json".to_owned(),
                    r#"EVENT_JSON:{"standard":"ecloud_marketplace","version":"1.0.0","event":"job_claimed","data":{"job_id":"x"}}"#.to_owned(),
                    "plain log line, not an event".to_owned(),
                ],
            ),
            (
                token,
                lines(&[ModelEvent::RevenueDeposited {
                    payer: acc(MARKETPLACE),
                    asset: Asset::Near,
                    amount: U128(100),
                }]),
            ),
        ]));
        out.push(chain.block(&[(
            MARKETPLACE,
            lines(&[
                submitted(3, any_target(Some(1_500)), 5_000),
                submitted(4, JobTarget::Node { node_id: NodeId(2) }, 5_000),
                MarketplaceEvent::RequestCreated {
                    request_id: RequestId(1),
                    caller: acc(AGENT),
                    model_id: model(),
                    deposit: U128(300),
                    input: InputRef::Inline {
                        ciphertext: Base64VecU8(b"hi".to_vec()),
                    },
                },
            ]),
        )]));
        out.push(chain.block(&[(
            REGISTRY,
            lines(&[
                RegistryEvent::NodeHeartbeat {
                    node_id: NodeId(1),
                    at_ns: U64(77),
                },
                RegistryEvent::NodeStatusChanged {
                    node_id: NodeId(1),
                    status: NodeStatus::Inactive,
                },
                RegistryEvent::NodeStatusChanged {
                    node_id: NodeId(1),
                    status: NodeStatus::Active,
                },
            ]),
        )]));
        // Governance: the registry's change 1 waits for its delay; the marketplace's change
        // 1, proposed while its delay is 0, is applied at once.
        let applied = GovernanceEvent::ChangeApplied {
            id: U64(1),
            change: Change::SetDelay {
                delay_ns: U64(3_600_000_000_000),
            },
        };
        out.push(chain.block(&[
            (
                REGISTRY,
                lines(&[delay_proposed(
                    1,
                    86_400_000_000_000,
                    9_000_000_000_000_000_000,
                )]),
            ),
            (
                MARKETPLACE,
                lines(&[delay_proposed(1, 3_600_000_000_000, 0), applied]),
            ),
        ]));
        // Payment channels to node 1: 1 stays open (a top-up, two settlements), 2 is closing
        // (the user's close started), 3 closed cooperatively with its final voucher.
        out.push(chain.block(&[(
            MARKETPLACE,
            lines(&[
                channel_opened(1, NEAR),
                channel_opened(2, NEAR / 2),
                channel_opened(3, NEAR / 5),
            ]),
        )]));
        let first = 11 * NEAR / 1_000;
        out.push(chain.block(&[(
            MARKETPLACE,
            lines(&[
                channel_topped_up(1, NEAR / 2, Expect::CHANNEL_1_DEPOSIT),
                channel_settled(1, first, first, 0),
                channel_settled(2, Expect::CHANNEL_2_SETTLED, Expect::CHANNEL_2_SETTLED, 0),
            ]),
        )]));
        let closes_at = super::GENESIS_NS + chain.height * 1_000_000_000 + CHALLENGE_NS;
        out.push(chain.block(&[(
            MARKETPLACE,
            lines(&[
                channel_settled(
                    1,
                    Expect::CHANNEL_1_SETTLED,
                    Expect::CHANNEL_1_SETTLED - first,
                    0,
                ),
                channel_close_started(2, closes_at),
                channel_settled(
                    3,
                    Expect::CHANNEL_3_SETTLED,
                    Expect::CHANNEL_3_SETTLED,
                    Expect::CHANNEL_3_REFUND,
                ),
                channel_closed(
                    3,
                    ChannelCloseReason::Cooperative,
                    Expect::CHANNEL_3_SETTLED,
                    Expect::CHANNEL_3_REFUND,
                ),
            ]),
        )]));
        out
    }
}
