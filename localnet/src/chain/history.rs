//! The state at earlier blocks, for queries with a `block_id`.
//!
//! Each block stores an undo log: the value every key it wrote had before. The state at block
//! `h` is the head state with the undo logs of the blocks after `h` applied, newest first.
//! As a non-archival neard keeps `gc_num_epochs_to_keep` epochs of state (5 by default),
//! localnet keeps the undo logs of that many epochs of heights and drops older ones; blocks
//! themselves are kept, so a query at an older block gets neard's `GARBAGE_COLLECTED_BLOCK`.

use super::{Chain, ChainError, StoredBlock};
use crate::state::{Changes, Overlay};
use borsh::BorshDeserialize;
use near_jsonrpc_primitives::types::query::RpcQueryError;
use near_primitives::types::{BlockId, BlockReference, SyncCheckpoint};

/// neard's default `gc_num_epochs_to_keep`.
pub const DEFAULT_EPOCHS: u64 = 5;

impl Chain {
    /// Keep the state of `epochs` epochs for queries (at least one).
    pub fn set_history_epochs(&mut self, epochs: u64) {
        self.history_epochs = epochs.max(1);
    }

    /// The lowest height whose state queries can still read.
    pub fn earliest_state_height(&self) -> u64 {
        let kept = self
            .history_epochs
            .saturating_mul(self.genesis.config.epoch_length.max(1));
        self.head
            .height
            .saturating_sub(kept)
            .max(self.genesis.config.genesis_height)
    }

    /// The block a query names, checked to still have its state.
    pub fn query_block(&self, reference: &BlockReference) -> Result<StoredBlock, RpcQueryError> {
        let internal = |e: ChainError| RpcQueryError::InternalError {
            error_message: e.to_string(),
        };
        let found = match reference {
            BlockReference::Finality(_) => Some(self.head().clone()),
            BlockReference::BlockId(BlockId::Height(height)) => {
                self.block(*height).map_err(internal)?
            }
            BlockReference::BlockId(BlockId::Hash(hash)) => {
                self.block_by_hash(hash).map_err(internal)?
            }
            BlockReference::SyncCheckpoint(SyncCheckpoint::Genesis) => self
                .block(self.genesis.config.genesis_height)
                .map_err(internal)?,
            BlockReference::SyncCheckpoint(SyncCheckpoint::EarliestAvailable) => {
                self.first_block_from(self.earliest_state_height())?
            }
        };
        let block = found.ok_or_else(|| RpcQueryError::UnknownBlock {
            block_reference: reference.clone(),
        })?;
        if block.height < self.earliest_state_height() {
            return Err(RpcQueryError::GarbageCollectedBlock {
                block_height: block.height,
                block_hash: block.hash,
            });
        }
        Ok(block)
    }

    /// The first block at `height` or above (fast-forwards leave heights without blocks).
    fn first_block_from(&self, height: u64) -> Result<Option<StoredBlock>, RpcQueryError> {
        for h in height..=self.head.height {
            let block = self.block(h).map_err(|e| RpcQueryError::InternalError {
                error_message: e.to_string(),
            })?;
            if block.is_some() {
                return Ok(block);
            }
        }
        Ok(None)
    }

    /// A read-only view of the state as it was after block `height` (at most the head).
    pub fn state_at(&self, height: u64) -> Result<Overlay<'_>, ChainError> {
        if height >= self.head.height {
            return Ok(self.state.view_with(Changes::new()));
        }
        // Newest first, each older value replacing a newer one: the oldest value wins.
        let mut undo = self.state.pending_undo().clone();
        for bytes in self.store.undo_logs(height + 1, self.head.height)? {
            let log = Changes::try_from_slice(&bytes)
                .map_err(|e| ChainError::Corrupt(format!("undo log: {e}")))?;
            undo.extend(log);
        }
        Ok(self.state.view_with(undo))
    }
}
