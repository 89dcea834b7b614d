//! The chain: genesis, the transaction pool, block production (receipts executed across
//! blocks, yields timed out), persistence, and lookups of transactions and outcomes.

pub mod blocks;
pub mod changes;
mod genesis;
pub mod history;
pub mod pool;
pub mod views;

pub use genesis::{GenesisError, load_genesis};

use crate::runtime::{Applied, BlockContext, Runtime, verify_and_charge, yield_timeout_receipt};
use crate::state::{State, StateRead, keys};
use crate::store::{BlockWrite, Store, StoreError};
use borsh::{BorshDeserialize, BorshSerialize};
use near_chain_configs::Genesis;
use near_primitives::errors::InvalidTxError;
use near_primitives::hash::CryptoHash;
use near_primitives::receipt::{ActionReceipt, Receipt, ReceiptEnum};
use near_primitives::transaction::SignedTransaction;
use near_primitives::types::{AccountId, Balance, Gas};
use near_primitives::views::{
    ExecutionOutcomeWithIdView, ExecutionStatusView, FinalExecutionOutcomeView,
    FinalExecutionStatus, ReceiptView, SignedTransactionView, StateChangeCauseView,
    StateChangeKindView, StateChangeWithCauseView,
};
use near_vm_runner::logic::types::PromiseResult;
use pool::TxPool;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// How far a fast-forwarded block moves the clock, per skipped height.
pub const FAST_FORWARD_NS_PER_BLOCK: u64 = 1_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot skip {skip} heights after height {head}: past the largest block height")]
    HeightOverflow { head: u64, skip: u64 },
}

/// A produced block: its header fields and everything that happened in it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StoredBlock {
    pub height: u64,
    pub hash: CryptoHash,
    pub prev_hash: CryptoHash,
    pub prev_height: Option<u64>,
    pub timestamp_ns: u64,
    pub epoch_height: u64,
    pub gas_price: Balance,
    pub total_supply: Balance,
    pub transactions: Vec<SignedTransactionView>,
    /// Receipts executed in this block (action receipts with an outcome).
    pub receipts: Vec<ReceiptView>,
    pub tx_outcomes: Vec<ExecutionOutcomeWithIdView>,
    pub receipt_outcomes: Vec<ExecutionOutcomeWithIdView>,
    pub gas_used: Gas,
    pub balance_burnt: Balance,
    /// Which accounts' records changed in this block, as (state column, account).
    #[serde(default)]
    pub touched: Vec<(u8, AccountId)>,
    /// Every change of an account, access key, contract data or code record, with its cause.
    #[serde(default)]
    pub state_changes: Vec<StateChangeWithCauseView>,
}

impl StoredBlock {
    /// The block's changes as EXPERIMENTAL_changes_in_block reports them.
    pub fn changes(&self) -> Vec<StateChangeKindView> {
        self.touched
            .iter()
            .map(|(col, id)| {
                let account_id = id.clone();
                match *col {
                    keys::ACCOUNT => StateChangeKindView::AccountTouched { account_id },
                    keys::ACCESS_KEY => StateChangeKindView::AccessKeyTouched { account_id },
                    keys::DATA => StateChangeKindView::DataTouched { account_id },
                    _ => StateChangeKindView::ContractCodeTouched { account_id },
                }
            })
            .collect()
    }
}

/// The kinds of records the changed keys belong to, one entry per (kind, account).
fn touched(keys: impl Iterator<Item = Vec<u8>>) -> Vec<(u8, AccountId)> {
    let mut seen = std::collections::BTreeSet::new();
    for key in keys {
        let Some(end) = key.iter().position(|b| *b == b',') else {
            continue;
        };
        let Some(account_id) = std::str::from_utf8(&key[1..end])
            .ok()
            .and_then(|a| a.parse::<AccountId>().ok())
        else {
            continue;
        };
        if matches!(
            key[0],
            keys::ACCOUNT | keys::ACCESS_KEY | keys::DATA | keys::CODE
        ) {
            seen.insert((key[0], account_id));
        }
    }
    seen.into_iter().collect()
}

/// A transaction that made it into a block.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StoredTx {
    pub transaction: SignedTransactionView,
    pub block_height: u64,
}

/// Where a transaction stands.
pub enum TxLookup {
    Unknown,
    /// In the pool, not yet in a block.
    Pending,
    /// Dropped when its block was produced (the state changed since it was accepted).
    Rejected(InvalidTxError),
    /// In a block; `complete` when every receipt it caused has an outcome.
    Found {
        outcome: Box<FinalExecutionOutcomeView>,
        receipts: Vec<ReceiptView>,
        complete: bool,
    },
}

#[derive(BorshSerialize, BorshDeserialize, Clone)]
struct Head {
    height: u64,
    hash: CryptoHash,
    timestamp_ns: u64,
    /// The chain clock minus the wall clock: set at genesis so that block timestamps start at
    /// `genesis_time` and advance in real time from there, then moved by fast-forwards.
    /// (An `i64` has the borsh layout of the `u64` earlier versions stored.)
    time_offset_ns: i64,
}

pub struct Chain {
    pub runtime: Runtime,
    pub genesis: Genesis,
    pub state: State,
    store: Store,
    head: Head,
    head_block: StoredBlock,
    pool: TxPool,
    /// How many epochs of state history queries can reach (neard's `gc_num_epochs_to_keep`).
    history_epochs: u64,
    rejected: HashMap<CryptoHash, InvalidTxError>,
    /// Receipts to execute in the next block.
    delayed: VecDeque<Receipt>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The offset that makes the chain clock read `genesis_ns` at wall-clock time `wall_ns`.
fn clock_offset(genesis_ns: u64, wall_ns: u64) -> i64 {
    let offset = i128::from(genesis_ns) - i128::from(wall_ns);
    offset.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The chain clock at wall-clock time `wall_ns`.
fn chain_time(wall_ns: u64, offset_ns: i64) -> u64 {
    (i128::from(wall_ns) + i128::from(offset_ns)).clamp(0, i128::from(u64::MAX)) as u64
}

fn block_hash(height: u64, prev: &CryptoHash, timestamp_ns: u64, chain_id: &str) -> CryptoHash {
    let bytes = borsh::to_vec(&(height, prev, timestamp_ns, chain_id)).unwrap_or_default();
    CryptoHash::hash_bytes(&bytes)
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Results of one block's work, collected for the block record and the store.
#[derive(Default)]
struct BlockWork {
    receipts: Vec<ReceiptView>,
    receipt_outcomes: Vec<ExecutionOutcomeWithIdView>,
    created: Vec<(CryptoHash, Vec<u8>)>,
    next: VecDeque<Receipt>,
    gas_used: Gas,
    burnt: Balance,
}

impl Chain {
    /// Opens the chain in `home`: continues the stored chain, or starts it from genesis.
    pub fn open(
        home: &std::path::Path,
        runtime: Runtime,
        genesis: Genesis,
    ) -> Result<Self, ChainError> {
        let data = home.join("data");
        std::fs::create_dir_all(&data)
            .map_err(|e| ChainError::Corrupt(format!("cannot create {}: {e}", data.display())))?;
        let store = Store::open(&data.join("localnet.redb"))?;
        match store.meta("head")? {
            Some(bytes) => {
                let head = Head::try_from_slice(&bytes)
                    .map_err(|e| ChainError::Corrupt(format!("head: {e}")))?;
                let delayed = match store.meta("delayed")? {
                    Some(bytes) => Vec::<Receipt>::try_from_slice(&bytes)
                        .map_err(|e| ChainError::Corrupt(format!("delayed receipts: {e}")))?,
                    None => vec![],
                };
                let head_block = store
                    .block(head.height)?
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .ok_or_else(|| ChainError::Corrupt("head block missing".into()))?;
                let state = State::from_entries(store.load_state()?);
                Ok(Chain {
                    runtime,
                    genesis,
                    state,
                    store,
                    head,
                    head_block,
                    pool: TxPool::default(),
                    history_epochs: history::DEFAULT_EPOCHS,
                    rejected: HashMap::new(),
                    delayed: delayed.into(),
                })
            }
            None => Self::start(runtime, genesis, store),
        }
    }

    fn start(runtime: Runtime, genesis: Genesis, store: Store) -> Result<Self, ChainError> {
        let mut state = State::default();
        genesis::apply_records(&runtime.config, &genesis, &mut state);
        let config = &genesis.config;
        let timestamp_ns = config.genesis_time.timestamp_nanos_opt().unwrap_or(0) as u64;
        let height = config.genesis_height;
        let hash = block_hash(
            height,
            &CryptoHash::default(),
            timestamp_ns,
            &config.chain_id,
        );
        let block = StoredBlock {
            height,
            hash,
            prev_hash: CryptoHash::default(),
            prev_height: None,
            timestamp_ns,
            epoch_height: 0,
            gas_price: config.min_gas_price,
            total_supply: config.total_supply,
            transactions: vec![],
            receipts: vec![],
            tx_outcomes: vec![],
            receipt_outcomes: vec![],
            gas_used: Gas::ZERO,
            balance_burnt: Balance::ZERO,
            touched: vec![],
            state_changes: vec![],
        };
        let head = Head {
            height,
            hash,
            timestamp_ns,
            time_offset_ns: clock_offset(timestamp_ns, now_ns()),
        };
        let mut chain = Chain {
            runtime,
            genesis,
            state,
            store,
            head,
            head_block: block.clone(),
            pool: TxPool::default(),
            history_epochs: history::DEFAULT_EPOCHS,
            rejected: HashMap::new(),
            delayed: VecDeque::new(),
        };
        // Nothing is older than genesis: its records need no undo log.
        chain.state.take_undo();
        chain.persist(&block, Vec::new(), Vec::new(), Vec::new())?;
        Ok(chain)
    }

    pub fn head(&self) -> &StoredBlock {
        &self.head_block
    }

    pub fn gas_price(&self) -> Balance {
        self.genesis.config.min_gas_price
    }

    pub fn block(&self, height: u64) -> Result<Option<StoredBlock>, ChainError> {
        Ok(self
            .store
            .block(height)?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// The highest block below `height`.
    pub fn last_block_before(&self, height: u64) -> Result<Option<StoredBlock>, ChainError> {
        Ok(self
            .store
            .block_before(height)?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// The lowest block above `height`.
    pub fn next_block_after(&self, height: u64) -> Result<Option<StoredBlock>, ChainError> {
        Ok(self
            .store
            .block_after(height)?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// The first height of the epoch with this epoch height.
    pub fn epoch_start_height(&self, epoch_height: u64) -> u64 {
        let config = &self.genesis.config;
        epoch_height
            .saturating_mul(config.epoch_length.max(1))
            .saturating_add(config.genesis_height)
    }

    pub fn block_by_hash(&self, hash: &CryptoHash) -> Result<Option<StoredBlock>, ChainError> {
        match self.store.block_height(hash)? {
            Some(height) => self.block(height),
            None => Ok(None),
        }
    }

    pub fn receipt(&self, id: &CryptoHash) -> Result<Option<ReceiptView>, ChainError> {
        Ok(self
            .store
            .receipt(id)?
            .and_then(|r| serde_json::from_slice(&r).ok()))
    }

    fn outcome(&self, id: &CryptoHash) -> Result<Option<ExecutionOutcomeWithIdView>, ChainError> {
        Ok(self
            .store
            .outcome(id)?
            .and_then(|r| serde_json::from_slice(&r).ok()))
    }

    fn context(&self, height: u64, timestamp_ns: u64) -> BlockContext {
        let hash = block_hash(
            height,
            &self.head.hash,
            timestamp_ns,
            &self.genesis.config.chain_id,
        );
        let epoch_length = self.genesis.config.epoch_length.max(1);
        BlockContext {
            height,
            hash,
            prev_hash: self.head.hash,
            timestamp_ns,
            epoch_height: height.saturating_sub(self.genesis.config.genesis_height) / epoch_length,
            gas_price: self.gas_price(),
            random_seed: CryptoHash::hash_bytes(hash.as_ref()),
        }
    }

    /// Validates a transaction against the head state and queues it for the next block.
    /// A transaction seen before is accepted again without effect.
    pub fn submit(&mut self, tx: SignedTransaction) -> Result<CryptoHash, InvalidTxError> {
        let hash = tx.get_hash();
        if self.pool.contains(&hash) || matches!(self.store.tx(&hash), Ok(Some(_))) {
            return Ok(hash);
        }
        let base = self
            .store
            .block_height(tx.transaction.block_hash())
            .ok()
            .flatten()
            .ok_or(InvalidTxError::Expired)?;
        if self.head.height.saturating_sub(base) > self.genesis.config.transaction_validity_period {
            return Err(InvalidTxError::Expired);
        }
        let ctx = self.context(self.head.height.saturating_add(1), self.head.timestamp_ns);
        let mut overlay = self.state.overlay();
        verify_and_charge(&self.runtime, &mut overlay, &tx, &ctx, false)?;
        self.rejected.remove(&hash);
        self.pool.insert(tx);
        Ok(hash)
    }

    /// Remembers why a transaction was refused (for `tx` lookups after broadcast_tx_async).
    pub fn reject(&mut self, hash: CryptoHash, error: InvalidTxError) {
        self.rejected.insert(hash, error);
    }

    pub fn pool_len(&self) -> usize {
        self.pool.len()
    }

    /// Nothing waits to be included or executed (postponed receipts and yields aside).
    pub fn is_idle(&self) -> bool {
        self.pool.is_empty() && self.delayed.is_empty()
    }

    /// Produces the next block (or, with `skip > 0`, the block `skip` heights further, as
    /// sandbox fast-forward does) and persists it.
    pub fn produce_block(&mut self, skip: u64) -> Result<&StoredBlock, ChainError> {
        let height = self
            .head
            .height
            .checked_add(1)
            .and_then(|next| next.checked_add(skip))
            .ok_or(ChainError::HeightOverflow {
                head: self.head.height,
                skip,
            })?;
        let skipped_ns = skip.saturating_mul(FAST_FORWARD_NS_PER_BLOCK);
        self.head.time_offset_ns = self
            .head
            .time_offset_ns
            .saturating_add(i64::try_from(skipped_ns).unwrap_or(i64::MAX));
        let timestamp_ns = chain_time(now_ns(), self.head.time_offset_ns)
            .max(self.head.timestamp_ns.saturating_add(1));
        let ctx = self.context(height, timestamp_ns);
        let mut work = BlockWork::default();

        // Transactions become receipts; those to the signer itself run in this block.
        let mut transactions = Vec::new();
        let mut tx_outcomes = Vec::new();
        let mut local = VecDeque::new();
        let mut stored_txs = Vec::new();
        let state = &self.state;
        let ready = self.pool.take_ready(Instant::now(), |signer, public_key| {
            state.access_key(signer, public_key).map(|key| key.nonce)
        });
        for tx in ready {
            let hash = tx.get_hash();
            let mut overlay = self.state.overlay();
            // Pool transactions had their signatures checked when submitted.
            match verify_and_charge(&self.runtime, &mut overlay, &tx, &ctx, true) {
                Ok((receipt, gas_burnt)) => {
                    let changes = overlay.into_changes();
                    self.state
                        .set_cause(Some(StateChangeCauseView::TransactionProcessing {
                            tx_hash: hash,
                        }));
                    self.state.commit(changes);
                    self.state.set_cause(None);
                    let signer = tx.transaction.signer_id().clone();
                    let view = SignedTransactionView::from(tx.clone());
                    let outcome = ExecutionOutcomeWithIdView {
                        proof: vec![],
                        block_hash: ctx.hash,
                        id: hash,
                        outcome: crate::runtime::outcome(
                            signer.clone(),
                            ExecutionStatusView::SuccessReceiptId(*receipt.receipt_id()),
                            gas_burnt,
                            ctx.gas_price,
                            vec![],
                            vec![*receipt.receipt_id()],
                        ),
                    };
                    work.gas_used = work.gas_used.checked_add(gas_burnt).unwrap_or(Gas::MAX);
                    work.burnt = work.burnt.saturating_add(outcome.outcome.tokens_burnt);
                    work.created.push((
                        *receipt.receipt_id(),
                        json(&ReceiptView::from(receipt.clone())),
                    ));
                    stored_txs.push((
                        hash,
                        json(&StoredTx {
                            transaction: view.clone(),
                            block_height: height,
                        }),
                    ));
                    transactions.push(view);
                    tx_outcomes.push(outcome);
                    if receipt.receiver_id() == &signer {
                        local.push_back(receipt);
                    } else {
                        work.next.push_back(receipt);
                    }
                }
                Err(e) => {
                    self.rejected.insert(hash, e);
                }
            }
        }

        // Receipts from earlier blocks, the local ones, then yields that time out now.
        let mut queue: VecDeque<Receipt> = std::mem::take(&mut self.delayed);
        queue.extend(local);
        for (key, account) in self.due_yield_timeouts(height) {
            let data_id = CryptoHash::try_from(&key[9..]).unwrap_or_default();
            let mut overlay = self.state.overlay();
            overlay.remove(key);
            let entry = keys::yield_entry(&account, &data_id);
            let live = overlay.get_raw(&entry).is_some();
            if live {
                overlay.remove(entry);
            }
            let changes = overlay.into_changes();
            self.state.commit(changes);
            if live {
                queue.push_back(yield_timeout_receipt(&account, data_id, height));
            }
        }
        while let Some(receipt) = queue.pop_front() {
            self.apply_receipt(receipt, &ctx, &mut work, &mut queue);
        }

        let block = StoredBlock {
            height,
            hash: ctx.hash,
            prev_hash: self.head.hash,
            prev_height: Some(self.head.height),
            timestamp_ns,
            epoch_height: ctx.epoch_height,
            gas_price: ctx.gas_price,
            total_supply: self.head_block.total_supply.saturating_sub(work.burnt),
            transactions,
            receipts: work.receipts,
            tx_outcomes,
            receipt_outcomes: work.receipt_outcomes,
            gas_used: work.gas_used,
            balance_burnt: work.burnt,
            touched: touched(self.state.dirty_keys().cloned()),
            state_changes: changes::to_views(self.state.take_change_log()),
        };
        self.delayed = work.next;
        self.head = Head {
            height,
            hash: ctx.hash,
            timestamp_ns,
            time_offset_ns: self.head.time_offset_ns,
        };
        let mut outcomes: Vec<(CryptoHash, Vec<u8>)> = block
            .tx_outcomes
            .iter()
            .chain(block.receipt_outcomes.iter())
            .map(|o| (o.id, json(o)))
            .collect();
        outcomes.shrink_to_fit();
        self.persist(&block, stored_txs, outcomes, work.created)?;
        self.head_block = block;
        Ok(&self.head_block)
    }

    fn due_yield_timeouts(&self, height: u64) -> Vec<(Vec<u8>, AccountId)> {
        let prefix = [keys::YIELD_TIMEOUT];
        self.state
            .scan_prefix(&prefix)
            .take_while(|(k, _)| {
                k.len() == 41
                    && u64::from_be_bytes(k[1..9].try_into().unwrap_or([0xff; 8])) <= height
            })
            .filter_map(|(k, v)| {
                let account = std::str::from_utf8(v).ok()?.parse().ok()?;
                Some((k.clone(), account))
            })
            .collect()
    }

    fn persist(
        &mut self,
        block: &StoredBlock,
        txs: Vec<(CryptoHash, Vec<u8>)>,
        outcomes: Vec<(CryptoHash, Vec<u8>)>,
        receipts: Vec<(CryptoHash, Vec<u8>)>,
    ) -> Result<(), ChainError> {
        let delayed: Vec<Receipt> = self.delayed.iter().cloned().collect();
        let undo = borsh::to_vec(&self.state.take_undo()).unwrap_or_default();
        let write = BlockWrite {
            height: block.height,
            hash: block.hash,
            block: json(block),
            state: self.state.take_dirty(),
            meta: vec![
                ("head", borsh::to_vec(&self.head).unwrap_or_default()),
                ("delayed", borsh::to_vec(&delayed).unwrap_or_default()),
            ],
            txs,
            outcomes,
            receipts,
            undo,
            forget_undo_to: Some(self.earliest_state_height()),
        };
        self.store.write_block(&write)?;
        Ok(())
    }

    /// Delivers one receipt: runs it, postpones it until its data arrives, or stores data.
    fn apply_receipt(
        &mut self,
        receipt: Receipt,
        ctx: &BlockContext,
        work: &mut BlockWork,
        queue: &mut VecDeque<Receipt>,
    ) {
        let receipt_id = *receipt.receipt_id();
        match receipt.receipt() {
            ReceiptEnum::Action(action) | ReceiptEnum::PromiseYield(action) => {
                let is_yield = matches!(receipt.receipt(), ReceiptEnum::PromiseYield(_));
                let missing: Vec<CryptoHash> = action
                    .input_data_ids
                    .iter()
                    .filter(|id| {
                        self.state
                            .get_raw(&keys::by_hash(keys::RECEIVED, id))
                            .is_none()
                    })
                    .copied()
                    .collect();
                if missing.is_empty() {
                    let action = action.clone();
                    self.execute(receipt, &action, ctx, work, queue);
                    return;
                }
                let mut overlay = self.state.overlay();
                for id in &missing {
                    overlay.set_raw(
                        keys::by_hash(keys::WAITING, id),
                        receipt_id.as_ref().to_vec(),
                    );
                }
                if is_yield {
                    let data_id = missing[0];
                    let timeout = self
                        .runtime
                        .wasm_config
                        .limit_config
                        .yield_timeout_length_in_blocks;
                    let expiry = ctx.height.saturating_add(timeout);
                    let account = receipt.receiver_id();
                    overlay.set_raw(
                        keys::yield_entry(account, &data_id),
                        expiry.to_le_bytes().to_vec(),
                    );
                    overlay.set_raw(
                        keys::yield_timeout(expiry, &data_id),
                        account.as_bytes().to_vec(),
                    );
                }
                overlay.set_borsh(
                    keys::by_hash(keys::POSTPONED, &receipt_id),
                    &(receipt, missing.len() as u32),
                );
                let changes = overlay.into_changes();
                self.state.commit(changes);
            }
            ReceiptEnum::Data(data) | ReceiptEnum::PromiseResume(data) => {
                let mut overlay = self.state.overlay();
                overlay.set_borsh(keys::by_hash(keys::RECEIVED, &data.data_id), &data.data);
                let waiting = keys::by_hash(keys::WAITING, &data.data_id);
                let mut ready = None;
                if let Some(rid) = overlay.get_raw(&waiting) {
                    overlay.remove(waiting);
                    let rid = CryptoHash::try_from(rid.as_slice()).unwrap_or_default();
                    let pkey = keys::by_hash(keys::POSTPONED, &rid);
                    if let Some((postponed, count)) = overlay.get_borsh::<(Receipt, u32)>(&pkey) {
                        if count <= 1 {
                            overlay.remove(pkey);
                            ready = Some(postponed);
                        } else {
                            overlay.set_borsh(pkey, &(postponed, count - 1));
                        }
                    }
                }
                let changes = overlay.into_changes();
                self.state.commit(changes);
                if let Some(postponed) = ready
                    && let ReceiptEnum::Action(action) | ReceiptEnum::PromiseYield(action) =
                        postponed.receipt()
                {
                    let action = action.clone();
                    self.execute(postponed, &action, ctx, work, queue);
                }
            }
            ReceiptEnum::GlobalContractDistribution(distribution) => {
                let mut overlay = self.state.overlay();
                crate::runtime::global::distribute(&mut overlay, distribution);
                let changes = overlay.into_changes();
                self.state.commit(changes);
            }
            _ => {}
        }
    }

    fn execute(
        &mut self,
        receipt: Receipt,
        action: &ActionReceipt,
        ctx: &BlockContext,
        work: &mut BlockWork,
        queue: &mut VecDeque<Receipt>,
    ) {
        let mut overlay = self.state.overlay();
        let results: Vec<PromiseResult> = action
            .input_data_ids
            .iter()
            .map(|id| {
                let key = keys::by_hash(keys::RECEIVED, id);
                let data: Option<Option<Vec<u8>>> = overlay.get_borsh(&key);
                overlay.remove(key);
                match data.flatten() {
                    Some(bytes) => PromiseResult::Successful(bytes.into()),
                    None => PromiseResult::Failed,
                }
            })
            .collect();
        let changes = overlay.into_changes();
        self.state.commit(changes);
        let Applied { outcome, receipts } = self.runtime.apply_action_receipt(
            &mut self.state,
            &receipt,
            action,
            Arc::from(results),
            ctx,
        );
        self.state.set_cause(None);
        work.gas_used = work
            .gas_used
            .checked_add(outcome.gas_burnt)
            .unwrap_or(Gas::MAX);
        work.burnt = work.burnt.saturating_add(outcome.tokens_burnt);
        work.receipts.push(ReceiptView::from(receipt.clone()));
        work.receipt_outcomes.push(ExecutionOutcomeWithIdView {
            proof: vec![],
            block_hash: ctx.hash,
            id: *receipt.receipt_id(),
            outcome,
        });
        for new in receipts {
            work.created
                .push((*new.receipt_id(), json(&ReceiptView::from(new.clone()))));
            // Yields are registered at once so a resume in the next block finds them; global
            // code is stored at once, so that the code is there as soon as the deployment's
            // transaction is final (on neard, finality takes the blocks that distribute it).
            if matches!(
                new.receipt(),
                ReceiptEnum::PromiseYield(_) | ReceiptEnum::GlobalContractDistribution(_)
            ) {
                queue.push_back(new);
            } else {
                work.next.push_back(new);
            }
        }
    }

    /// Everything known about a transaction.
    pub fn lookup_tx(&self, hash: &CryptoHash) -> Result<TxLookup, ChainError> {
        if self.pool.contains(hash) {
            return Ok(TxLookup::Pending);
        }
        if let Some(e) = self.rejected.get(hash) {
            return Ok(TxLookup::Rejected(e.clone()));
        }
        let Some(stored) = self.store.tx(hash)? else {
            return Ok(TxLookup::Unknown);
        };
        let stored: StoredTx = serde_json::from_slice(&stored)
            .map_err(|e| ChainError::Corrupt(format!("tx {hash}: {e}")))?;
        let tx_outcome = self
            .outcome(hash)?
            .ok_or_else(|| ChainError::Corrupt(format!("outcome of tx {hash}")))?;
        let mut receipts_outcome = Vec::new();
        let mut receipts = Vec::new();
        let mut complete = true;
        let mut pending: VecDeque<CryptoHash> =
            tx_outcome.outcome.receipt_ids.iter().copied().collect();
        while let Some(id) = pending.pop_front() {
            if let Some(r) = self.receipt(&id)? {
                receipts.push(r);
            }
            match self.outcome(&id)? {
                Some(o) => {
                    pending.extend(o.outcome.receipt_ids.iter().copied());
                    receipts_outcome.push(o);
                }
                None => complete = false,
            }
        }
        let status = final_status(&tx_outcome, &receipts_outcome);
        Ok(TxLookup::Found {
            outcome: Box::new(FinalExecutionOutcomeView {
                status,
                transaction: stored.transaction,
                transaction_outcome: tx_outcome,
                receipts_outcome,
            }),
            receipts,
            complete,
        })
    }

    /// Writes state records directly (sandbox_patch_state) and persists them at once.
    pub fn patch_state(
        &mut self,
        records: Vec<near_primitives::state_record::StateRecord>,
    ) -> Result<(), ChainError> {
        let mut overlay = self.state.overlay();
        for record in records {
            genesis::write_record(&mut overlay, record);
        }
        let changes = overlay.into_changes();
        self.state.commit(changes);
        let write = BlockWrite {
            state: self.state.take_dirty(),
            ..Default::default()
        };
        self.store.write_block(&write)?;
        Ok(())
    }
}

/// The status of a transaction as nearcore reports it: follow the chain of receipts the
/// transaction's outcome points to until a value or a failure.
fn final_status(
    tx: &ExecutionOutcomeWithIdView,
    receipts: &[ExecutionOutcomeWithIdView],
) -> FinalExecutionStatus {
    let mut looking_for = tx.id;
    let all: Vec<&ExecutionOutcomeWithIdView> = std::iter::once(tx).chain(receipts).collect();
    loop {
        let Some(o) = all.iter().find(|o| o.id == looking_for) else {
            return FinalExecutionStatus::Started;
        };
        match &o.outcome.status {
            ExecutionStatusView::Unknown => return FinalExecutionStatus::Started,
            ExecutionStatusView::Failure(e) => return FinalExecutionStatus::Failure(e.clone()),
            ExecutionStatusView::SuccessValue(v) => {
                return FinalExecutionStatus::SuccessValue(v.clone());
            }
            ExecutionStatusView::SuccessReceiptId(id) => looking_for = *id,
        }
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_past_genesis_time_starts_the_clock_there_and_it_runs_in_real_time() {
        // 2026-08-13T00:00:00Z, with the wall clock a hundred days later.
        let genesis = 1_786_579_200 * SECOND;
        let wall = genesis + 100 * 86_400 * SECOND;
        let offset = clock_offset(genesis, wall);
        assert_eq!(chain_time(wall, offset), genesis);
        assert_eq!(chain_time(wall + 3 * SECOND, offset), genesis + 3 * SECOND);
    }

    #[test]
    fn a_future_genesis_time_also_starts_the_clock_there() {
        let wall = 1_700_000_000 * SECOND;
        let genesis = wall + 86_400 * SECOND;
        let offset = clock_offset(genesis, wall);
        assert!(offset > 0);
        assert_eq!(chain_time(wall + SECOND, offset), genesis + SECOND);
    }
}
