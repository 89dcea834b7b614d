//! The chain state: one ordered key-value map, held in memory and persisted block by block.
//!
//! Keys are `column byte + account id + ',' + rest`. Account ids never contain `,`, so the
//! prefix of one account never matches another (`alice,` vs `alice.near,`). Every receipt runs
//! on an [`Overlay`]: its writes become visible to the chain only if the receipt succeeds.

use crate::chain::changes::{LoggedChange, is_reported};
use borsh::BorshDeserialize;
use near_crypto::PublicKey;
use near_primitives::account::{AccessKey, Account, AccountContract};
use near_primitives::action::GlobalContractIdentifier;
use near_primitives::hash::CryptoHash;
use near_primitives::types::AccountId;
use near_primitives::views::StateChangeCauseView;
use std::collections::{BTreeMap, BTreeSet};

/// Key layout of the state map, one column byte per kind of record.
pub mod keys {
    use super::*;

    pub const ACCOUNT: u8 = b'a';
    pub const ACCESS_KEY: u8 = b'k';
    pub const CODE: u8 = b'c';
    pub const DATA: u8 = b'd';
    /// A receipt waiting for input data: `p` + receipt id -> (receipt, missing data count).
    pub const POSTPONED: u8 = b'p';
    /// Which postponed receipt waits for a data id: `w` + data id -> receipt id.
    pub const WAITING: u8 = b'w';
    /// Data delivered before (or without) its receipt: `r` + data id -> `Option<Vec<u8>>`.
    pub const RECEIVED: u8 = b'r';
    /// A yield that can still be resumed: `y` + account + `,` + data id -> expiry height.
    pub const YIELD: u8 = b'y';
    /// Yield timeouts by height: `t` + height (big endian) + data id -> account.
    pub const YIELD_TIMEOUT: u8 = b't';
    /// Global contract code (NEP-591): `g` + 0 + code hash, or `g` + 1 + deploying account.
    pub const GLOBAL_CODE: u8 = b'g';
    /// Nonce of a global contract's last deployment (`n` + identifier as for `g`): a
    /// distribution older than the stored one is dropped, as nearcore does.
    pub const GLOBAL_NONCE: u8 = b'n';

    fn global(col: u8, id: &GlobalContractIdentifier) -> Vec<u8> {
        let mut key = vec![col];
        match id {
            GlobalContractIdentifier::CodeHash(hash) => {
                key.push(0);
                key.extend_from_slice(hash.as_ref());
            }
            GlobalContractIdentifier::AccountId(account_id) => {
                key.push(1);
                key.extend_from_slice(account_id.as_bytes());
            }
        }
        key
    }
    pub fn global_code(id: &GlobalContractIdentifier) -> Vec<u8> {
        global(GLOBAL_CODE, id)
    }
    pub fn global_nonce(id: &GlobalContractIdentifier) -> Vec<u8> {
        global(GLOBAL_NONCE, id)
    }

    fn with_account(col: u8, account_id: &AccountId) -> Vec<u8> {
        let mut key = Vec::with_capacity(account_id.len() + 2);
        key.push(col);
        key.extend_from_slice(account_id.as_bytes());
        key.push(b',');
        key
    }

    pub fn account(account_id: &AccountId) -> Vec<u8> {
        with_account(ACCOUNT, account_id)
    }
    pub fn code(account_id: &AccountId) -> Vec<u8> {
        with_account(CODE, account_id)
    }
    pub fn access_key_prefix(account_id: &AccountId) -> Vec<u8> {
        with_account(ACCESS_KEY, account_id)
    }
    pub fn access_key(account_id: &AccountId, public_key: &PublicKey) -> Vec<u8> {
        let mut key = access_key_prefix(account_id);
        key.extend_from_slice(&borsh::to_vec(public_key).unwrap_or_default());
        key
    }
    /// Where the code an account with `contract` runs is stored: its own code, or the
    /// global contract it uses; `None` for an account without a contract.
    pub fn contract_code(account_id: &AccountId, contract: &AccountContract) -> Option<Vec<u8>> {
        match contract {
            AccountContract::None => None,
            AccountContract::Local(_) => Some(code(account_id)),
            AccountContract::Global(hash) => {
                Some(global_code(&GlobalContractIdentifier::CodeHash(*hash)))
            }
            AccountContract::GlobalByAccount(owner) => Some(global_code(
                &GlobalContractIdentifier::AccountId(owner.clone()),
            )),
        }
    }
    pub fn data_prefix(account_id: &AccountId) -> Vec<u8> {
        with_account(DATA, account_id)
    }
    pub fn data(account_id: &AccountId, data_key: &[u8]) -> Vec<u8> {
        let mut key = data_prefix(account_id);
        key.extend_from_slice(data_key);
        key
    }
    pub fn by_hash(col: u8, hash: &CryptoHash) -> Vec<u8> {
        let mut key = Vec::with_capacity(33);
        key.push(col);
        key.extend_from_slice(hash.as_ref());
        key
    }
    pub fn yield_entry(account_id: &AccountId, data_id: &CryptoHash) -> Vec<u8> {
        let mut key = with_account(YIELD, account_id);
        key.extend_from_slice(data_id.as_ref());
        key
    }
    pub fn yield_timeout(height: u64, data_id: &CryptoHash) -> Vec<u8> {
        let mut key = vec![YIELD_TIMEOUT];
        key.extend_from_slice(&height.to_be_bytes());
        key.extend_from_slice(data_id.as_ref());
        key
    }
}

/// Read access shared by the committed state and a receipt's overlay.
pub trait StateRead {
    fn get_raw(&self, key: &[u8]) -> Option<Vec<u8>>;

    fn get_borsh<T: BorshDeserialize>(&self, key: &[u8]) -> Option<T> {
        self.get_raw(key)
            .and_then(|bytes| T::try_from_slice(&bytes).ok())
    }
    fn account(&self, account_id: &AccountId) -> Option<Account> {
        self.get_borsh(&keys::account(account_id))
    }
    fn access_key(&self, account_id: &AccountId, public_key: &PublicKey) -> Option<AccessKey> {
        self.get_borsh(&keys::access_key(account_id, public_key))
    }
    /// The account's own (locally deployed) code.
    fn code(&self, account_id: &AccountId) -> Option<Vec<u8>> {
        self.get_raw(&keys::code(account_id))
    }
    /// Whether `key` holds a value (without copying it).
    fn has(&self, key: &[u8]) -> bool {
        self.get_raw(key).is_some()
    }
    /// The code an account with `contract` runs: its own, or the global contract it uses.
    fn contract_code(&self, account_id: &AccountId, contract: &AccountContract) -> Option<Vec<u8>> {
        self.get_raw(&keys::contract_code(account_id, contract)?)
    }
}

/// The committed state, with the keys changed since the last persisted block and, for the
/// records that state changes report, each write with its cause.
#[derive(Default)]
pub struct State {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    dirty: BTreeSet<Vec<u8>>,
    /// What the writes committed from now on are caused by; `None`: not logged (genesis,
    /// sandbox patches).
    cause: Option<StateChangeCauseView>,
    log: Vec<LoggedChange>,
    /// The value each key written since the last [`State::take_undo`] had before (`None`: it
    /// did not exist): what turns this state back into the previous block's.
    undo: Changes,
}

/// Changes of one receipt (or one patch): `None` deletes the key.
pub type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

impl State {
    /// The state as loaded from disk: nothing is dirty.
    pub fn from_entries(entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Self {
        State {
            map: entries.into_iter().collect(),
            ..State::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Sets the cause of the writes committed from now on.
    pub fn set_cause(&mut self, cause: Option<StateChangeCauseView>) {
        self.cause = cause;
    }

    /// The logged writes since the last call.
    pub fn take_change_log(&mut self) -> Vec<LoggedChange> {
        std::mem::take(&mut self.log)
    }

    pub fn commit(&mut self, changes: Changes) {
        if let Some(cause) = &self.cause {
            for (key, value) in &changes {
                if key.first().copied().is_some_and(is_reported) {
                    self.log.push((cause.clone(), key.clone(), value.clone()));
                }
            }
        }
        for (key, value) in changes {
            let before = match value {
                Some(value) => self.map.insert(key.clone(), value),
                None => self.map.remove(&key),
            };
            if !self.undo.contains_key(&key) {
                self.undo.insert(key.clone(), before);
            }
            self.dirty.insert(key);
        }
    }

    /// The keys written since the last [`State::take_dirty`].
    pub fn dirty_keys(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.dirty.iter()
    }

    /// The keys written since the last call, with their current values, for persistence.
    pub fn take_dirty(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|key| {
                let value = self.map.get(&key).cloned();
                (key, value)
            })
            .collect()
    }

    /// The undo log since the last call (see the `undo` field), for the block being made.
    pub fn take_undo(&mut self) -> Changes {
        std::mem::take(&mut self.undo)
    }

    /// The undo log of the writes not yet in a block (sandbox patches since the last block).
    pub fn pending_undo(&self) -> &Changes {
        &self.undo
    }

    /// A read-only view of an earlier state: `undo` holds, for each key changed since, its
    /// value then (the undo logs of the blocks after it, merged, the oldest value winning).
    pub fn view_with(&self, undo: Changes) -> Overlay<'_> {
        Overlay {
            base: self,
            changes: undo,
        }
    }

    pub fn scan_prefix<'a>(
        &'a self,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)> + 'a {
        self.map
            .range(prefix.to_vec()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    pub fn overlay(&self) -> Overlay<'_> {
        Overlay {
            base: self,
            changes: Changes::new(),
        }
    }
}

impl StateRead for State {
    fn get_raw(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.map.get(key).cloned()
    }
    fn has(&self, key: &[u8]) -> bool {
        self.map.contains_key(key)
    }
}

/// Uncommitted writes on top of the committed state.
pub struct Overlay<'a> {
    base: &'a State,
    changes: Changes,
}

impl Overlay<'_> {
    pub fn set_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.changes.insert(key, Some(value));
    }
    pub fn remove(&mut self, key: Vec<u8>) {
        self.changes.insert(key, None);
    }
    pub fn set_borsh<T: borsh::BorshSerialize>(&mut self, key: Vec<u8>, value: &T) {
        // Serializing our own in-memory values into a Vec cannot fail.
        self.set_raw(key, borsh::to_vec(value).unwrap_or_default());
    }
    pub fn set_account(&mut self, account_id: &AccountId, account: &Account) {
        self.set_borsh(keys::account(account_id), account);
    }
    pub fn set_access_key(&mut self, account_id: &AccountId, pk: &PublicKey, key: &AccessKey) {
        self.set_borsh(keys::access_key(account_id, pk), key);
    }

    /// Keys under `prefix`, committed or written here, minus those deleted here.
    pub fn keys_with_prefix(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        let mut keys: BTreeSet<Vec<u8>> = self
            .base
            .scan_prefix(prefix)
            .map(|(k, _)| k.clone())
            .collect();
        for (key, value) in self
            .changes
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            if value.is_some() {
                keys.insert(key.clone());
            } else {
                keys.remove(key);
            }
        }
        keys.into_iter().collect()
    }

    /// Key-value pairs under `prefix`, committed or written here, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.keys_with_prefix(prefix)
            .into_iter()
            .filter_map(|key| {
                let value = self.get_raw(&key)?;
                Some((key, value))
            })
            .collect()
    }

    pub fn into_changes(self) -> Changes {
        self.changes
    }
}

impl StateRead for Overlay<'_> {
    fn get_raw(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self.changes.get(key) {
            Some(value) => value.clone(),
            None => self.base.get_raw(key),
        }
    }
    fn has(&self, key: &[u8]) -> bool {
        match self.changes.get(key) {
            Some(value) => value.is_some(),
            None => self.base.has(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_writes_are_invisible_until_committed() {
        let mut state = State::default();
        let alice: AccountId = "alice.near".parse().unwrap();
        let mut overlay = state.overlay();
        overlay.set_raw(keys::data(&alice, b"k"), b"v".to_vec());
        assert_eq!(
            overlay.get_raw(&keys::data(&alice, b"k")),
            Some(b"v".to_vec())
        );
        let changes = overlay.into_changes();
        assert_eq!(state.get_raw(&keys::data(&alice, b"k")), None);
        state.commit(changes);
        assert_eq!(
            state.get_raw(&keys::data(&alice, b"k")),
            Some(b"v".to_vec())
        );
        assert_eq!(state.take_dirty().len(), 1);
        assert!(state.take_dirty().is_empty());
    }

    #[test]
    fn prefixes_of_one_account_never_match_another() {
        let mut state = State::default();
        let alice: AccountId = "alice".parse().unwrap();
        let alice_near: AccountId = "alice.near".parse().unwrap();
        let mut overlay = state.overlay();
        overlay.set_raw(keys::data(&alice, b"x"), vec![1]);
        overlay.set_raw(keys::data(&alice_near, b"y"), vec![2]);
        let changes = overlay.into_changes();
        state.commit(changes);
        let prefix = keys::data_prefix(&alice);
        assert_eq!(state.scan_prefix(&prefix).count(), 1);
        let mut overlay = state.overlay();
        overlay.remove(keys::data(&alice, b"x"));
        assert!(overlay.keys_with_prefix(&prefix).is_empty());
    }
}
