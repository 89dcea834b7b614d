//! Block and chunk views of stored blocks: one shard, one chunk per block, signed by nobody
//! (localnet has no validators to sign; signatures are empty ed25519 signatures).

use super::StoredBlock;
use near_crypto::{KeyType, Signature};
use near_primitives::hash::CryptoHash;
use near_primitives::types::{AccountId, Balance, Gas, ShardId};
use near_primitives::views::{BlockHeaderView, BlockView, ChunkHeaderView, ChunkView};

/// The id of the epoch with this epoch height (localnet's epochs have no validator changes,
/// so the height names them).
pub fn epoch_id_of(epoch_height: u64) -> CryptoHash {
    CryptoHash::hash_bytes(&epoch_height.to_le_bytes())
}

fn epoch_id(block: &StoredBlock) -> CryptoHash {
    epoch_id_of(block.epoch_height)
}

/// One chunk per block: the chunk is named by its block's hash (the `chunk` RPC relies on it).
pub fn chunk_hash(block: &StoredBlock) -> CryptoHash {
    block.hash
}

pub fn chunk_header(block: &StoredBlock, gas_limit: Gas) -> ChunkHeaderView {
    ChunkHeaderView {
        chunk_hash: chunk_hash(block),
        prev_block_hash: block.prev_hash,
        outcome_root: CryptoHash::default(),
        prev_state_root: CryptoHash::default(),
        encoded_merkle_root: CryptoHash::default(),
        encoded_length: 0,
        height_created: block.height,
        height_included: block.height,
        shard_id: ShardId::new(0),
        gas_used: block.gas_used,
        gas_limit,
        rent_paid: Balance::ZERO,
        validator_reward: Balance::ZERO,
        balance_burnt: block.balance_burnt,
        outgoing_receipts_root: CryptoHash::default(),
        tx_root: CryptoHash::default(),
        validator_proposals: vec![],
        congestion_info: None,
        bandwidth_requests: None,
        proposed_split: None,
        signature: Signature::empty(KeyType::ED25519),
    }
}

pub fn block_view(block: &StoredBlock, author: &AccountId, gas_limit: Gas) -> BlockView {
    let header = BlockHeaderView {
        height: block.height,
        prev_height: block.prev_height,
        epoch_id: epoch_id(block),
        next_epoch_id: epoch_id(block),
        hash: block.hash,
        prev_hash: block.prev_hash,
        prev_state_root: CryptoHash::default(),
        block_body_hash: None,
        chunk_receipts_root: CryptoHash::default(),
        chunk_headers_root: CryptoHash::default(),
        chunk_tx_root: CryptoHash::default(),
        outcome_root: CryptoHash::default(),
        chunks_included: 1,
        challenges_root: CryptoHash::default(),
        timestamp: block.timestamp_ns,
        timestamp_nanosec: block.timestamp_ns,
        random_value: CryptoHash::hash_bytes(block.hash.as_ref()),
        validator_proposals: vec![],
        chunk_mask: vec![true],
        gas_price: block.gas_price,
        block_ordinal: Some(block.height),
        rent_paid: Balance::ZERO,
        validator_reward: Balance::ZERO,
        total_supply: block.total_supply,
        challenges_result: vec![],
        // Every block is final as soon as it is produced.
        last_final_block: block.hash,
        last_ds_final_block: block.hash,
        next_bp_hash: CryptoHash::default(),
        block_merkle_root: CryptoHash::default(),
        epoch_sync_data_hash: None,
        approvals: vec![],
        signature: Signature::empty(KeyType::ED25519),
        latest_protocol_version: near_primitives_core::version::PROTOCOL_VERSION,
        chunk_endorsements: None,
        shard_split: None,
        prev_last_certified_block_epoch_id: None,
        spice_chunk_endorsement_stats: None,
        chunk_execution_root: None,
    };
    BlockView {
        author: author.clone(),
        header,
        chunks: vec![chunk_header(block, gas_limit)],
    }
}

pub fn chunk_view(block: &StoredBlock, author: &AccountId, gas_limit: Gas) -> ChunkView {
    ChunkView {
        author: author.clone(),
        header: chunk_header(block, gas_limit),
        transactions: block.transactions.clone(),
        receipts: block.receipts.clone(),
    }
}
