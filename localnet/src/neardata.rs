//! The neardata block stream for indexers: `GET /v0/block/{height}` and
//! `GET /v0/last_block/final`, each a `StreamerMessage` of near-indexer-primitives
//! (`null` for a height without a block: skipped by a fast-forward or not produced yet).

use crate::chain::StoredBlock;
use crate::chain::blocks::{block_view, chunk_view};
use crate::node::Node;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use near_indexer_primitives::{
    IndexerChunkView, IndexerExecutionOutcomeWithOptionalReceipt,
    IndexerExecutionOutcomeWithReceipt, IndexerShard, IndexerTransactionWithOutcome,
    StreamerMessage,
};
use near_primitives::types::{AccountId, Gas, ShardId};
use std::sync::Arc;

/// The block as an indexer sees it: one shard, its chunk, and every outcome with its receipt.
pub fn streamer_message(
    block: &StoredBlock,
    author: &AccountId,
    gas_limit: Gas,
) -> StreamerMessage {
    let chunk = chunk_view(block, author, gas_limit);
    let transactions = block
        .transactions
        .iter()
        .zip(&block.tx_outcomes)
        .map(|(tx, outcome)| IndexerTransactionWithOutcome {
            transaction: tx.clone(),
            outcome: IndexerExecutionOutcomeWithOptionalReceipt {
                execution_outcome: outcome.clone(),
                receipt: None,
            },
        })
        .collect();
    let receipt_execution_outcomes = block
        .receipt_outcomes
        .iter()
        .zip(&block.receipts)
        .map(|(outcome, receipt)| IndexerExecutionOutcomeWithReceipt {
            execution_outcome: outcome.clone(),
            receipt: receipt.clone(),
        })
        .collect();
    StreamerMessage {
        block: block_view(block, author, gas_limit),
        shards: vec![IndexerShard {
            shard_id: ShardId::new(0),
            chunk: Some(IndexerChunkView {
                author: chunk.author,
                header: chunk.header,
                transactions,
                receipts: chunk.receipts,
                local_receipts: vec![],
                instant_receipts: vec![],
            }),
            receipt_execution_outcomes,
            state_changes: block.state_changes.clone(),
        }],
    }
}

fn reply(node: &Node, block: Result<Option<StoredBlock>, crate::chain::ChainError>) -> Response {
    match block {
        Ok(Some(block)) => Json(streamer_message(
            &block,
            &node.validator.account_id,
            node.gas_limit(),
        ))
        .into_response(),
        Ok(None) => Json(serde_json::Value::Null).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "error": "store", "message": e.to_string() })),
        )
            .into_response(),
    }
}

async fn block(State(node): State<Arc<Node>>, Path(height): Path<String>) -> Response {
    let Ok(height) = height.parse::<u64>() else {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({
                "error": "bad_height",
                "message": format!("block height must be a number, got {height:?}"),
            })),
        )
            .into_response();
    };
    let found = node.chain().block(height);
    reply(&node, found)
}

async fn last_final(State(node): State<Arc<Node>>) -> Response {
    let head = node.chain().head().clone();
    reply(&node, Ok(Some(head)))
}

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/v0/block/{height}", get(block))
        .route("/v0/last_block/final", get(last_final))
}
