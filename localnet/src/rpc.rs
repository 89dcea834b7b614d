//! JSON-RPC 2.0 as neard serves it: request/response/error shapes from
//! `near-jsonrpc-primitives`, params in the object or legacy array forms clients send.

use crate::chain::blocks::{block_view, chunk_view};
use crate::chain::{StoredBlock, TxLookup};
use crate::node::Node;
use base64::Engine;
use borsh::BorshDeserialize;
use near_chain_configs::{ProtocolConfig, ProtocolConfigView};
use near_jsonrpc_primitives::errors::RpcError;
use near_jsonrpc_primitives::message::{self, Message, Request};
use near_jsonrpc_primitives::types::blocks::RpcBlockError;
use near_jsonrpc_primitives::types::chunks::{ChunkReference, RpcChunkError};
use near_jsonrpc_primitives::types::query::{RpcQueryError, RpcQueryRequest, RpcQueryResponse};
use near_jsonrpc_primitives::types::sandbox::RpcSandboxFastForwardError;
use near_jsonrpc_primitives::types::transactions::{
    RpcSendTransactionRequest, RpcTransactionError, RpcTransactionResponse,
    RpcTransactionStatusRequest, TransactionInfo,
};
use near_jsonrpc_primitives::types::validator::RpcValidatorError;
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::SignedTransaction;
use near_primitives::types::{BlockId, BlockReference, EpochReference, ShardId};
use near_primitives::views::{
    FinalExecutionOutcomeViewEnum, FinalExecutionOutcomeWithReceiptView, TxExecutionStatus,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How long a call waits for a transaction before answering with neard's timeout error.
const TX_WAIT: Duration = Duration::from_secs(20);

/// A handler error in neard's shape: the typed error as `cause`, its message as `data`.
fn handler_error<E: serde::Serialize + std::fmt::Display>(error: E) -> RpcError {
    let data = Value::String(error.to_string());
    match serde_json::to_value(&error) {
        Ok(value) => RpcError::new_internal_or_handler_error(Some(data), value),
        Err(e) => RpcError::new_internal_error(None, e.to_string()),
    }
}

fn parse_error(e: impl std::fmt::Display) -> RpcError {
    RpcError::parse_error(format!("Failed parsing args: {e}"))
}

fn parse<T: serde::de::DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    serde_json::from_value(params).map_err(parse_error)
}

fn to_value<T: serde::Serialize>(value: T) -> Result<Value, RpcError> {
    serde_json::to_value(value).map_err(|e| RpcError::serialization_error(e.to_string()))
}

fn internal(e: impl std::fmt::Display) -> RpcError {
    RpcError::new_internal_error(None, e.to_string())
}

fn decode_tx(base64: &str) -> Result<SignedTransaction, RpcError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .map_err(parse_error)?;
    SignedTransaction::try_from_slice(&bytes).map_err(parse_error)
}

/// `[base64]` (broadcast_tx_*) or `{signed_tx_base64, wait_until}` (send_tx).
fn parse_send(params: Value) -> Result<(SignedTransaction, TxExecutionStatus), RpcError> {
    match params {
        Value::Array(items) => match items.first() {
            Some(Value::String(s)) => Ok((decode_tx(s)?, TxExecutionStatus::ExecutedOptimistic)),
            _ => Err(parse_error("expected [signed transaction in base64]")),
        },
        other => {
            let request: RpcSendTransactionRequest = parse(other)?;
            Ok((request.signed_transaction, request.wait_until))
        }
    }
}

/// `[hash, sender]`, `[base64]` or `{tx_hash, sender_account_id | signed_tx_base64, wait_until}`.
fn parse_status(params: Value) -> Result<(TransactionInfo, TxExecutionStatus), RpcError> {
    match params {
        Value::Array(items) => match items.as_slice() {
            [Value::String(hash), Value::String(sender)] => Ok((
                TransactionInfo::TransactionId {
                    tx_hash: hash.parse().map_err(parse_error)?,
                    sender_account_id: sender.parse().map_err(parse_error)?,
                },
                TxExecutionStatus::ExecutedOptimistic,
            )),
            [Value::String(tx)] => Ok((
                TransactionInfo::Transaction {
                    signed_tx: decode_tx(tx)?,
                },
                TxExecutionStatus::ExecutedOptimistic,
            )),
            _ => Err(parse_error("expected [tx hash, sender account id]")),
        },
        other => {
            let request: RpcTransactionStatusRequest = parse(other)?;
            Ok((request.transaction_info, request.wait_until))
        }
    }
}

/// `[block_id]`, `[null]`, `{block_id}` or `{finality}`; `None` means the head.
fn parse_block_ref(params: Value) -> Result<Option<BlockId>, RpcError> {
    match params {
        Value::Null => Ok(None),
        Value::Array(items) => match items.into_iter().next() {
            None | Some(Value::Null) => Ok(None),
            Some(id) => Ok(Some(parse(id)?)),
        },
        Value::Object(ref map) if map.contains_key("block_id") && map["block_id"].is_null() => {
            Ok(None)
        }
        other => match parse::<BlockReference>(other)? {
            BlockReference::BlockId(id) => Ok(Some(id)),
            _ => Ok(None),
        },
    }
}

/// The `query` reply as neard's RPC handler writes it: two errors stay in the legacy form of
/// a result with an `error` text (a failed view call, an unknown access key), which clients
/// still parse; an unknown block id carries the store's message as `data`.
fn query_reply(response: Result<RpcQueryResponse, RpcQueryError>) -> Result<Value, RpcError> {
    match response {
        Ok(response) => to_value(response),
        Err(RpcQueryError::ContractExecutionError {
            vm_error,
            block_height,
            block_hash,
            ..
        }) => Ok(json!({
            "error": vm_error,
            "logs": [],
            "block_height": block_height,
            "block_hash": block_hash,
        })),
        Err(RpcQueryError::UnknownAccessKey {
            public_key,
            block_height,
            block_hash,
        }) => Ok(json!({
            "error": format!("access key {public_key} does not exist while viewing"),
            "logs": [],
            "block_height": block_height,
            "block_hash": block_hash,
        })),
        Err(
            error @ RpcQueryError::UnknownBlock {
                block_reference: BlockReference::BlockId(_),
            },
        ) => {
            let data = match &error {
                RpcQueryError::UnknownBlock {
                    block_reference: BlockReference::BlockId(BlockId::Height(height)),
                } => format!("DB Not Found Error: BLOCK HEIGHT: {height} \n Cause: Unknown"),
                RpcQueryError::UnknownBlock {
                    block_reference: BlockReference::BlockId(BlockId::Hash(hash)),
                } => format!("DB Not Found Error: BLOCK HEADER: {hash}"),
                _ => error.to_string(),
            };
            let cause = serde_json::to_value(&error).map_err(internal)?;
            Err(RpcError::new_internal_or_handler_error(
                Some(Value::String(data)),
                cause,
            ))
        }
        Err(error) => Err(error.into()),
    }
}

/// `chunk` params: `{chunk_id}`, `{block_id, shard_id}`, `[chunk_id]` or `[block_id, shard_id]`.
fn parse_chunk_ref(params: Value) -> Result<ChunkReference, RpcError> {
    match params {
        Value::Array(items) => match items.as_slice() {
            [chunk_id] => Ok(ChunkReference::ChunkHash {
                chunk_id: parse(chunk_id.clone())?,
            }),
            [block_id, shard_id] => Ok(ChunkReference::BlockShardId {
                block_id: parse(block_id.clone())?,
                shard_id: parse(shard_id.clone())?,
            }),
            _ => Err(parse_error("expected [chunk_id] or [block_id, shard_id]")),
        },
        other => parse(other),
    }
}

/// `validators` params: `[null]`, `[block_id]`, `{"latest": null}`, `{block_id}`, `{epoch_id}`.
fn parse_epoch_ref(params: Value) -> Result<EpochReference, RpcError> {
    match params {
        Value::Null => Ok(EpochReference::Latest),
        Value::Array(items) => match items.as_slice() {
            [] | [Value::Null] => Ok(EpochReference::Latest),
            [block_id] => Ok(EpochReference::BlockId(parse(block_id.clone())?)),
            _ => Err(parse_error("expected [block_id or null]")),
        },
        other => parse(other),
    }
}

impl Node {
    fn find_block(&self, id: Option<BlockId>) -> Result<Option<StoredBlock>, RpcError> {
        let chain = self.chain();
        match id {
            None => Ok(Some(chain.head().clone())),
            Some(BlockId::Height(h)) => chain.block(h).map_err(internal),
            Some(BlockId::Hash(hash)) => chain.block_by_hash(&hash).map_err(internal),
        }
    }

    fn block_or_error(&self, params: Value) -> Result<StoredBlock, RpcError> {
        let id = parse_block_ref(params)?;
        self.find_block(id.clone())?.ok_or_else(|| {
            handler_error(RpcBlockError::UnknownBlock {
                error_message: format!("DB Not Found Error: {id:?}"),
            })
        })
    }

    /// `chunk`: one shard (0), one chunk per block, named by its block's hash.
    fn chunk(&self, params: Value) -> Result<Value, RpcError> {
        let (block, shard_id) = match parse_chunk_ref(params)? {
            ChunkReference::ChunkHash { chunk_id } => {
                let block = self
                    .find_block(Some(BlockId::Hash(chunk_id)))?
                    .ok_or_else(|| {
                        RpcError::from(RpcChunkError::UnknownChunk {
                            chunk_hash: near_primitives::sharding::ChunkHash(chunk_id),
                        })
                    })?;
                (block, ShardId::new(0))
            }
            ChunkReference::BlockShardId { block_id, shard_id } => {
                let block = self.find_block(Some(block_id.clone()))?.ok_or_else(|| {
                    RpcError::from(RpcChunkError::UnknownBlock {
                        error_message: format!("{block_id:?}"),
                    })
                })?;
                (block, shard_id)
            }
        };
        if shard_id != ShardId::new(0) {
            return Err(RpcChunkError::InvalidShardId { shard_id }.into());
        }
        to_value(chunk_view(
            &block,
            &self.validator.account_id,
            self.gas_limit(),
        ))
    }

    /// The block whose epoch `validators` describes, chosen as neard's view client does: the
    /// head for `latest`; for an epoch id, that epoch (its last block, or the head for the
    /// current one); for a block id, only the last block of an epoch names that epoch
    /// (`VALIDATOR_INFO_UNAVAILABLE` for any other block), and `UNKNOWN_EPOCH` for a block or
    /// epoch the chain does not have (the head too: no next block shows its epoch ended).
    fn validators_block(&self, params: Value) -> Result<StoredBlock, RpcError> {
        let unknown = || RpcError::from(RpcValidatorError::UnknownEpoch);
        let reference = parse_epoch_ref(params)?;
        let chain = self.chain();
        let head = chain.head();
        match reference {
            EpochReference::Latest => Ok(head.clone()),
            EpochReference::EpochId(epoch_id) => {
                let epoch_height = (0..=head.epoch_height)
                    .find(|height| crate::chain::blocks::epoch_id_of(*height) == epoch_id.0)
                    .ok_or_else(unknown)?;
                if epoch_height == head.epoch_height {
                    return Ok(head.clone());
                }
                let next_start = chain.epoch_start_height(epoch_height.saturating_add(1));
                chain
                    .last_block_before(next_start)
                    .map_err(internal)?
                    .ok_or_else(unknown)
            }
            EpochReference::BlockId(id) => {
                let block = match id {
                    BlockId::Height(height) => chain.block(height),
                    BlockId::Hash(hash) => chain.block_by_hash(&hash),
                }
                .map_err(internal)?
                .ok_or_else(unknown)?;
                let next = chain
                    .next_block_after(block.height)
                    .map_err(internal)?
                    .ok_or_else(unknown)?;
                if next.epoch_height == block.epoch_height {
                    return Err(RpcValidatorError::ValidatorInfoUnavailable.into());
                }
                Ok(block)
            }
        }
    }

    /// Waits until the transaction reaches `wait_until` (blocks are final when produced).
    async fn wait_tx(
        &self,
        hash: CryptoHash,
        wait_until: TxExecutionStatus,
        with_receipts: bool,
    ) -> Result<RpcTransactionResponse, RpcError> {
        let mut heads = self.heads.subscribe();
        let deadline = tokio::time::Instant::now() + TX_WAIT;
        loop {
            let lookup = self.chain().lookup_tx(&hash).map_err(internal)?;
            match lookup {
                TxLookup::Unknown => {
                    return Err(RpcTransactionError::UnknownTransaction {
                        requested_transaction_hash: hash,
                    }
                    .into());
                }
                TxLookup::Rejected(context) => {
                    return Err(RpcTransactionError::InvalidTransaction { context }.into());
                }
                TxLookup::Pending if wait_until == TxExecutionStatus::None => {
                    return Ok(RpcTransactionResponse {
                        final_execution_outcome: None,
                        final_execution_status: TxExecutionStatus::None,
                    });
                }
                TxLookup::Found {
                    outcome,
                    receipts,
                    complete,
                } if complete
                    || matches!(
                        wait_until,
                        TxExecutionStatus::None
                            | TxExecutionStatus::Included
                            | TxExecutionStatus::IncludedFinal
                    ) =>
                {
                    let outcome = if with_receipts {
                        FinalExecutionOutcomeViewEnum::FinalExecutionOutcomeWithReceipt(
                            FinalExecutionOutcomeWithReceiptView {
                                final_outcome: *outcome,
                                receipts,
                            },
                        )
                    } else {
                        FinalExecutionOutcomeViewEnum::FinalExecutionOutcome(*outcome)
                    };
                    return Ok(RpcTransactionResponse {
                        final_execution_outcome: Some(outcome),
                        final_execution_status: if complete {
                            TxExecutionStatus::Final
                        } else {
                            TxExecutionStatus::IncludedFinal
                        },
                    });
                }
                _ => {}
            }
            if tokio::time::timeout_at(deadline, heads.changed())
                .await
                .is_err()
            {
                return Err(RpcTransactionError::TimeoutError(None).into());
            }
        }
    }

    async fn send(&self, params: Value, commit_default: bool) -> Result<Value, RpcError> {
        let (tx, mut wait_until) = parse_send(params)?;
        if commit_default {
            wait_until = TxExecutionStatus::ExecutedOptimistic;
        }
        let hash = self.chain().submit(tx).map_err(|context| {
            RpcError::from(RpcTransactionError::InvalidTransaction { context })
        })?;
        to_value(self.wait_tx(hash, wait_until, false).await?)
    }

    async fn tx_status(&self, params: Value, with_receipts: bool) -> Result<Value, RpcError> {
        let (info, wait_until) = parse_status(params)?;
        let hash = match info {
            TransactionInfo::Transaction { signed_tx } => {
                let hash = signed_tx.get_hash();
                // neard accepts a signed transaction here and submits it if new.
                let _ = self.chain().submit(signed_tx);
                hash
            }
            TransactionInfo::TransactionId { tx_hash, .. } => tx_hash,
        };
        to_value(self.wait_tx(hash, wait_until, with_receipts).await?)
    }

    pub async fn dispatch(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        match method {
            "status" => to_value(self.status()),
            "health" => Ok(Value::Null),
            "network_info" => Ok(json!({
                "active_peers": [],
                "num_active_peers": 0,
                "peer_max_count": 0,
                "sent_bytes_per_sec": 0,
                "received_bytes_per_sec": 0,
                "known_producers": [],
            })),
            "query" => {
                let request: RpcQueryRequest = parse(params)?;
                let response = self
                    .chain()
                    .query_at(&request.block_reference, request.request);
                query_reply(response)
            }
            "block" => {
                let block = self.block_or_error(params)?;
                to_value(block_view(
                    &block,
                    &self.validator.account_id,
                    self.gas_limit(),
                ))
            }
            "chunk" => self.chunk(params),
            "gas_price" => {
                let block = self.block_or_error(params)?;
                Ok(json!({ "gas_price": block.gas_price.as_yoctonear().to_string() }))
            }
            "send_tx" => self.send(params, false).await,
            "broadcast_tx_commit" => self.send(params, true).await,
            "broadcast_tx_async" => {
                let (tx, _) = parse_send(params)?;
                let hash = tx.get_hash();
                let mut chain = self.chain();
                if let Err(e) = chain.submit(tx) {
                    chain.reject(hash, e);
                }
                to_value(hash)
            }
            "tx" => self.tx_status(params, false).await,
            "EXPERIMENTAL_tx_status" => self.tx_status(params, true).await,
            "EXPERIMENTAL_changes" => {
                use near_jsonrpc_primitives::types::changes::{
                    RpcStateChangesError, RpcStateChangesInBlockByTypeRequest,
                    RpcStateChangesInBlockResponse,
                };
                let request: RpcStateChangesInBlockByTypeRequest = parse(params)?;
                let id = match request.block_reference {
                    BlockReference::BlockId(id) => Some(id),
                    _ => None,
                };
                let block = self.find_block(id.clone())?.ok_or_else(|| {
                    handler_error(RpcStateChangesError::UnknownBlock {
                        error_message: format!("DB Not Found Error: {id:?}"),
                    })
                })?;
                to_value(RpcStateChangesInBlockResponse {
                    block_hash: block.hash,
                    changes: crate::chain::changes::select(
                        &block.state_changes,
                        &request.state_changes_request,
                    ),
                })
            }
            "EXPERIMENTAL_changes_in_block" => {
                let block = self.block_or_error(params)?;
                Ok(json!({ "block_hash": block.hash, "changes": block.changes() }))
            }
            "EXPERIMENTAL_receipt" => {
                #[derive(serde::Deserialize)]
                struct ReceiptRef {
                    receipt_id: CryptoHash,
                }
                let r: ReceiptRef = parse(params)?;
                match self.chain().receipt(&r.receipt_id).map_err(internal)? {
                    Some(view) => to_value(view),
                    None => Err(handler_error(
                        near_jsonrpc_primitives::types::receipts::RpcReceiptError::UnknownReceipt {
                            receipt_id: r.receipt_id,
                        },
                    )),
                }
            }
            "EXPERIMENTAL_protocol_config" => {
                let chain = self.chain();
                let view: ProtocolConfigView = ProtocolConfig {
                    genesis_config: chain.genesis.config.clone(),
                    runtime_config: chain.runtime.config.as_ref().clone(),
                }
                .into();
                to_value(view)
            }
            "EXPERIMENTAL_genesis_config" => to_value(&self.chain().genesis.config),
            "validators" => {
                let block = self.validators_block(params)?;
                to_value(self.validators(&block))
            }
            "EXPERIMENTAL_validators_ordered" => to_value(vec![json!({
                "validator_stake_struct_version": "V1",
                "account_id": self.validator.account_id,
                "public_key": self.validator.public_key,
                "stake": self.validator_stake().as_yoctonear().to_string(),
            })]),
            "sandbox_patch_state" => {
                let request: near_jsonrpc_primitives::types::sandbox::RpcSandboxPatchStateRequest =
                    parse(params)?;
                self.chain()
                    .patch_state(request.records)
                    .map_err(internal)?;
                Ok(json!({}))
            }
            "sandbox_fast_forward" => {
                let request: near_jsonrpc_primitives::types::sandbox::RpcSandboxFastForwardRequest =
                    parse(params)?;
                self.fast_forward(request.delta_height).map_err(|e| {
                    RpcError::from(RpcSandboxFastForwardError::InternalError {
                        error_message: e.to_string(),
                    })
                })?;
                Ok(json!({}))
            }
            other => Err(RpcError::method_not_found(other.to_string())),
        }
    }
}

async fn handle(node: &Node, request: Request) -> Message {
    let result = node.dispatch(&request.method, request.params.clone()).await;
    match result {
        Ok(value) => request.reply(value),
        Err(e) => request.error(e),
    }
}

/// The reply to a body that could not be read: over `limit` bytes, or cut off.
pub fn body_error(limit: usize, error: axum::Error) -> Message {
    Message::error(RpcError::parse_error(format!(
        "JSON payload could not be read (the limit is {limit} bytes): {error}"
    )))
}

/// One HTTP body: a request, or a batch of them.
pub async fn handle_body(node: Arc<Node>, body: &[u8]) -> Message {
    match message::from_slice(body) {
        Err(broken) => broken.reply(),
        Ok(Message::Request(request)) => handle(&node, request).await,
        Ok(Message::Batch(messages)) => {
            let mut replies = Vec::with_capacity(messages.len());
            for m in messages {
                match m {
                    Message::Request(request) => replies.push(handle(&node, request).await),
                    _ => replies.push(Message::error(RpcError::parse_error(
                        "JSON RPC Request format was expected".to_owned(),
                    ))),
                }
            }
            Message::Batch(replies)
        }
        Ok(_) => Message::error(RpcError::parse_error(
            "JSON RPC Request format was expected".to_owned(),
        )),
    }
}
