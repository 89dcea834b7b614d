//! A NEAR JSON-RPC node as a block source (`near-jsonrpc-client`).
//!
//! JSON-RPC has no "every receipt outcome of block h" method: logs are only reachable
//! through transaction status. So this source keeps the transactions whose receipts may
//! still run ("open" transactions) and, for each block, asks each of them for its outcomes
//! (`tx` with `wait_until = INCLUDED_FINAL`) and keeps those executed in that block:
//!
//! - block `h` (`block`, height) -> its new chunks (`chunk`) -> their transactions become open;
//! - every open transaction's receipt outcomes whose block is `h` are block `h`'s outcomes;
//! - a transaction closes once it is complete (`final_execution_status = FINAL`) and none of
//!   its outcomes lies above `h`.
//!
//! Limitations (use the neardata source where it exists): one `tx` call per open transaction
//! per block, so it suits localnet/testnet traffic, not mainnet's; within one block, outcomes
//! come grouped by transaction rather than in execution order; after a restart (or a jump)
//! only transactions of the `lookback` blocks before the resume height are followed, so a
//! receipt that runs longer after its transaction (a yield waits up to 200 blocks) is found
//! only within that window; a transaction the node no longer knows (garbage-collected on a
//! non-archival node) is dropped with a warning.

use super::{BlockSource, SourceError};
use crate::block::{
    BlockHeaderView, BlockView, ExecutionOutcomeView, ExecutionOutcomeWithIdView,
    IndexerExecutionOutcomeWithReceipt, IndexerShard, StreamerMessage,
};
use near_jsonrpc_client::errors::{JsonRpcError, JsonRpcServerError};
use near_jsonrpc_client::methods::block::{RpcBlockError, RpcBlockRequest};
use near_jsonrpc_client::methods::chunk::{ChunkReference, RpcChunkRequest};
use near_jsonrpc_client::methods::tx::{
    RpcTransactionError, RpcTransactionStatusRequest, TransactionInfo,
};
use near_jsonrpc_client::{JsonRpcClient, methods};
use near_primitives::hash::CryptoHash;
use near_primitives::types::{AccountId, BlockId, BlockReference, Finality};
use near_primitives::views::{self, TxExecutionStatus};
use std::collections::HashMap;
use std::fmt::Display;
use std::time::Duration;

/// Blocks before the resume height whose transactions are followed again after a restart:
/// more than an agent request's yield timeout (200 blocks).
pub const DEFAULT_LOOKBACK: u64 = 250;

/// How many block hash -> height entries to remember before forgetting the oldest.
const HEIGHT_CACHE: usize = 4096;

#[derive(Debug, Clone)]
struct OpenTx {
    hash: CryptoHash,
    signer: AccountId,
}

/// What the source remembers between blocks.
#[derive(Debug, Default)]
struct Tracking {
    /// The height the open set is up to date for (the next block it expects is this + 1).
    last: Option<u64>,
    open: Vec<OpenTx>,
    /// Heights of block hashes seen in outcomes.
    heights: HashMap<CryptoHash, u64>,
}

pub struct JsonRpcSource {
    url: String,
    client: JsonRpcClient,
    lookback: u64,
    state: tokio::sync::Mutex<Tracking>,
}

impl std::fmt::Debug for JsonRpcSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonRpcSource")
            .field("url", &self.url)
            .field("lookback", &self.lookback)
            .finish_non_exhaustive()
    }
}

impl JsonRpcSource {
    pub fn new(rpc_url: &str, timeout: Duration) -> Result<Self, SourceError> {
        let url = rpc_url.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("enclave-cloud-indexer/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| unreachable(&url, e))?;
        let client = JsonRpcClient::with(http).connect(&url);
        Ok(Self {
            url,
            client,
            lookback: DEFAULT_LOOKBACK,
            state: tokio::sync::Mutex::new(Tracking::default()),
        })
    }

    /// Follows the transactions of this many blocks before a resume height (default
    /// [`DEFAULT_LOOKBACK`]).
    pub fn with_lookback(mut self, blocks: u64) -> Self {
        self.lookback = blocks;
        self
    }

    async fn fetch_block(&self, id: BlockId) -> Result<Option<views::BlockView>, SourceError> {
        let request = RpcBlockRequest {
            block_reference: BlockReference::BlockId(id),
        };
        match self.client.call(request).await {
            Ok(block) => Ok(Some(block)),
            // A final height without a block: the chain skipped it.
            Err(JsonRpcError::ServerError(JsonRpcServerError::HandlerError(
                RpcBlockError::UnknownBlock { .. },
            ))) => Ok(None),
            Err(e) => Err(unreachable(&self.url, e)),
        }
    }

    /// The transactions of `block`'s chunks that were produced at its height (a missing
    /// chunk repeats an older header, whose transactions were counted then).
    async fn transactions(&self, block: &views::BlockView) -> Result<Vec<OpenTx>, SourceError> {
        let mut out = Vec::new();
        for chunk in &block.chunks {
            if chunk.height_included != block.header.height {
                continue;
            }
            let request = RpcChunkRequest {
                chunk_reference: ChunkReference::ChunkHash {
                    chunk_id: chunk.chunk_hash,
                },
            };
            let chunk = self
                .client
                .call(request)
                .await
                .map_err(|e| unreachable(&self.url, e))?;
            out.extend(chunk.transactions.into_iter().map(|tx| OpenTx {
                hash: tx.hash,
                signer: tx.signer_id,
            }));
        }
        Ok(out)
    }

    /// The transaction's outcomes so far and whether every receipt it caused has run;
    /// `None` if the node does not know it.
    async fn tx_outcomes(
        &self,
        tx: &OpenTx,
    ) -> Result<Option<(views::FinalExecutionOutcomeView, bool)>, SourceError> {
        let request = RpcTransactionStatusRequest {
            transaction_info: TransactionInfo::TransactionId {
                tx_hash: tx.hash,
                sender_account_id: tx.signer.clone(),
            },
            wait_until: TxExecutionStatus::IncludedFinal,
        };
        match self.client.call(request).await {
            Ok(response) => {
                let complete = response.final_execution_status == TxExecutionStatus::Final;
                Ok(response
                    .final_execution_outcome
                    .map(|o| (o.into_outcome(), complete)))
            }
            Err(JsonRpcError::ServerError(JsonRpcServerError::HandlerError(
                RpcTransactionError::UnknownTransaction { .. },
            ))) => Ok(None),
            Err(e) => Err(unreachable(&self.url, e)),
        }
    }

    async fn height_of(
        &self,
        heights: &mut HashMap<CryptoHash, u64>,
        hash: CryptoHash,
    ) -> Result<u64, SourceError> {
        if let Some(h) = heights.get(&hash) {
            return Ok(*h);
        }
        let block = self
            .fetch_block(BlockId::Hash(hash))
            .await?
            .ok_or_else(|| SourceError::Unreachable {
                url: self.url.clone(),
                reason: format!("an outcome names block {hash}, which the node does not have"),
            })?;
        remember(heights, hash, block.header.height);
        Ok(block.header.height)
    }

    /// Rebuilds the open set for a follower that (re)starts at `height`.
    async fn warm_up(&self, height: u64, state: &mut Tracking) -> Result<(), SourceError> {
        state.open.clear();
        let from = height.saturating_sub(self.lookback);
        tracing::info!(
            source = %self.describe(), from, to = height,
            "following the transactions of the blocks before the resume height"
        );
        for h in from..height {
            if let Some(block) = self.fetch_block(BlockId::Height(h)).await? {
                remember(&mut state.heights, block.header.hash, h);
                let txs = self.transactions(&block).await?;
                state.open.extend(txs);
            }
        }
        state.last = height.checked_sub(1);
        Ok(())
    }
}

fn remember(heights: &mut HashMap<CryptoHash, u64>, hash: CryptoHash, height: u64) {
    if heights.len() >= HEIGHT_CACHE {
        // Forget the older half: outcomes of open transactions are recent.
        let mut all: Vec<u64> = heights.values().copied().collect();
        all.sort_unstable();
        let cut = all[all.len() / 2];
        heights.retain(|_, h| *h > cut);
    }
    heights.insert(hash, height);
}

fn unreachable(url: &str, e: impl Display) -> SourceError {
    SourceError::Unreachable {
        url: url.to_owned(),
        reason: e.to_string(),
    }
}

/// One receipt outcome in the indexer's shape.
fn outcome(o: views::ExecutionOutcomeWithIdView) -> IndexerExecutionOutcomeWithReceipt {
    IndexerExecutionOutcomeWithReceipt {
        execution_outcome: ExecutionOutcomeWithIdView {
            id: o.id.to_string(),
            outcome: ExecutionOutcomeView {
                logs: o.outcome.logs,
                executor_id: o.outcome.executor_id.to_string(),
                status: serde_json::to_value(&o.outcome.status).unwrap_or(serde_json::Value::Null),
            },
        },
    }
}

impl BlockSource for JsonRpcSource {
    fn describe(&self) -> String {
        format!("JSON-RPC at {}", self.url)
    }

    async fn final_head(&self) -> Result<u64, SourceError> {
        let request = methods::block::RpcBlockRequest {
            block_reference: BlockReference::Finality(Finality::Final),
        };
        let block = self
            .client
            .call(request)
            .await
            .map_err(|e| unreachable(&self.url, e))?;
        Ok(block.header.height)
    }

    async fn block(&self, height: u64) -> Result<Option<StreamerMessage>, SourceError> {
        let mut state = self.state.lock().await;
        if state.last.map(|l| l + 1) != Some(height) {
            self.warm_up(height, &mut state).await?;
        }
        let Some(block) = self.fetch_block(BlockId::Height(height)).await? else {
            state.last = Some(height);
            return Ok(None);
        };
        if block.header.height != height {
            return Err(SourceError::WrongHeight {
                asked: height,
                got: block.header.height,
            });
        }
        remember(&mut state.heights, block.header.hash, height);
        // Work on a copy: a failure leaves the state as it was and the follower retries.
        let mut candidates = state.open.clone();
        candidates.extend(self.transactions(&block).await?);
        let mut still_open = Vec::with_capacity(candidates.len());
        let mut outcomes = Vec::new();
        for tx in candidates {
            let Some((status, complete)) = self.tx_outcomes(&tx).await? else {
                tracing::warn!(
                    source = %self.describe(), tx = %tx.hash, height,
                    "the node does not know this transaction any more; its later receipts are not followed"
                );
                continue;
            };
            let mut later = false;
            for o in status.receipts_outcome {
                let at = self.height_of(&mut state.heights, o.block_hash).await?;
                if at == height {
                    outcomes.push(outcome(o));
                } else if at > height {
                    later = true;
                }
            }
            if !complete || later {
                still_open.push(tx);
            }
        }
        state.open = still_open;
        state.last = Some(height);
        let header = block.header;
        Ok(Some(StreamerMessage {
            block: BlockView {
                header: BlockHeaderView {
                    height,
                    hash: header.hash.to_string(),
                    prev_hash: header.prev_hash.to_string(),
                    timestamp_nanosec: header.timestamp_nanosec,
                },
            },
            shards: vec![IndexerShard {
                shard_id: 0,
                receipt_execution_outcomes: outcomes,
            }],
        }))
    }
}
