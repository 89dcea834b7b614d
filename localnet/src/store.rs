//! Persistence in the home dir: one redb file, written once per block in one transaction,
//! so a restarted node continues from the last block it produced.

use near_primitives::hash::CryptoHash;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::Path;

const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const BLOCK_HEIGHTS: TableDefinition<&[u8], u64> = TableDefinition::new("block_heights");
const TXS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("txs");
const OUTCOMES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("outcomes");
const RECEIPTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("receipts");
/// Per block height, the undo log that turns that block's state back into its parent's.
const UNDO: TableDefinition<u64, &[u8]> = TableDefinition::new("undo");

/// A failure of the embedded database (boxed: redb's errors are large).
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(Box<redb::Error>);

macro_rules! store_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError(Box::new(e.into()))
            }
        }
    )*};
}
store_error_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Key-value pairs of the state table.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Everything one block adds to the store.
#[derive(Default)]
pub struct BlockWrite {
    pub height: u64,
    pub hash: CryptoHash,
    pub block: Vec<u8>,
    pub state: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub meta: Vec<(&'static str, Vec<u8>)>,
    pub txs: Vec<(CryptoHash, Vec<u8>)>,
    pub outcomes: Vec<(CryptoHash, Vec<u8>)>,
    pub receipts: Vec<(CryptoHash, Vec<u8>)>,
    /// The block's undo log (empty: none is kept).
    pub undo: Vec<u8>,
    /// Undo logs of this height and below are dropped: that history is garbage-collected.
    pub forget_undo_to: Option<u64>,
}

pub struct Store {
    db: Database,
}

fn put_hashed(
    table: &mut redb::Table<&[u8], &[u8]>,
    rows: &[(CryptoHash, Vec<u8>)],
) -> Result<(), StoreError> {
    for (hash, value) in rows {
        table.insert(hash.as_ref(), value.as_slice())?;
    }
    Ok(())
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        {
            // Create every table so reads never meet a missing one.
            tx.open_table(STATE)?;
            tx.open_table(META)?;
            tx.open_table(BLOCKS)?;
            tx.open_table(BLOCK_HEIGHTS)?;
            tx.open_table(TXS)?;
            tx.open_table(OUTCOMES)?;
            tx.open_table(RECEIPTS)?;
            tx.open_table(UNDO)?;
        }
        tx.commit()?;
        Ok(Store { db })
    }

    pub fn write_block(&self, write: &BlockWrite) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut state = tx.open_table(STATE)?;
            for (key, value) in &write.state {
                match value {
                    Some(value) => {
                        state.insert(key.as_slice(), value.as_slice())?;
                    }
                    None => {
                        state.remove(key.as_slice())?;
                    }
                }
            }
            let mut meta = tx.open_table(META)?;
            for (key, value) in &write.meta {
                meta.insert(*key, value.as_slice())?;
            }
            if !write.block.is_empty() {
                tx.open_table(BLOCKS)?
                    .insert(write.height, write.block.as_slice())?;
                tx.open_table(BLOCK_HEIGHTS)?
                    .insert(write.hash.as_ref(), write.height)?;
            }
            put_hashed(&mut tx.open_table(TXS)?, &write.txs)?;
            put_hashed(&mut tx.open_table(OUTCOMES)?, &write.outcomes)?;
            put_hashed(&mut tx.open_table(RECEIPTS)?, &write.receipts)?;
            let mut undo = tx.open_table(UNDO)?;
            if !write.undo.is_empty() {
                undo.insert(write.height, write.undo.as_slice())?;
            }
            if let Some(to) = write.forget_undo_to {
                let stale = undo
                    .range(..=to)?
                    .map(|row| row.map(|(height, _)| height.value()))
                    .collect::<Result<Vec<u64>, _>>()?;
                for height in stale {
                    undo.remove(height)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn load_state(&self) -> Result<Entries, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(STATE)?;
        let mut entries = Vec::with_capacity(table.len()? as usize);
        for row in table.iter()? {
            let (k, v) = row?;
            entries.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(entries)
    }

    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(META)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    pub fn block(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(BLOCKS)?;
        Ok(table.get(height)?.map(|v| v.value().to_vec()))
    }

    /// The undo logs of the heights in `from..=to`, newest first.
    pub fn undo_logs(&self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(UNDO)?;
        let mut logs = Vec::new();
        for row in table.range(from..=to)?.rev() {
            logs.push(row?.1.value().to_vec());
        }
        Ok(logs)
    }

    /// The highest stored block below `height`.
    pub fn block_before(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(BLOCKS)?;
        let last = table.range(..height)?.next_back().transpose()?;
        Ok(last.map(|(_, block)| block.value().to_vec()))
    }

    /// The lowest stored block above `height`.
    pub fn block_after(&self, height: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(from) = height.checked_add(1) else {
            return Ok(None);
        };
        let tx = self.db.begin_read()?;
        let table = tx.open_table(BLOCKS)?;
        let first = table.range(from..)?.next().transpose()?;
        Ok(first.map(|(_, block)| block.value().to_vec()))
    }

    pub fn block_height(&self, hash: &CryptoHash) -> Result<Option<u64>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(BLOCK_HEIGHTS)?;
        Ok(table.get(hash.as_ref())?.map(|v| v.value()))
    }

    fn get_hashed(
        &self,
        def: TableDefinition<&[u8], &[u8]>,
        hash: &CryptoHash,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(def)?;
        Ok(table.get(hash.as_ref())?.map(|v| v.value().to_vec()))
    }

    pub fn tx(&self, hash: &CryptoHash) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_hashed(TXS, hash)
    }
    pub fn outcome(&self, id: &CryptoHash) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_hashed(OUTCOMES, id)
    }
    pub fn receipt(&self, id: &CryptoHash) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_hashed(RECEIPTS, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_write_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("localnet-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("data.redb");
        let hash = CryptoHash::hash_bytes(b"block");
        {
            let store = Store::open(&path).unwrap();
            store
                .write_block(&BlockWrite {
                    height: 7,
                    hash,
                    block: b"{}".to_vec(),
                    state: vec![(b"k".to_vec(), Some(b"v".to_vec()))],
                    meta: vec![("head", b"7".to_vec())],
                    ..Default::default()
                })
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.block_height(&hash).unwrap(), Some(7));
        assert_eq!(store.meta("head").unwrap(), Some(b"7".to_vec()));
        assert_eq!(
            store.load_state().unwrap(),
            vec![(b"k".to_vec(), b"v".to_vec())]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
