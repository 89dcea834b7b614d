//! The transaction pool: accepted transactions waiting for a block, grouped by (signer, access
//! key) and ordered by nonce within each group, as nearcore's pool hands them to the chunk
//! producer. Clients that send several transactions of one key at once (consecutive nonces, in
//! whatever order they happen to arrive) see all of them land.
//!
//! One thing goes beyond nearcore: a transaction whose nonce leaves a gap after the key's
//! current nonce waits up to [`GAP_WAIT`] for the missing nonces to arrive. localnet makes a
//! block every 100 ms (neard's sandbox about every second), so without the wait a block could
//! fall between two concurrent submissions and take the higher nonce first, which makes the
//! lower one invalid.

use near_crypto::PublicKey;
use near_primitives::hash::CryptoHash;
use near_primitives::transaction::SignedTransaction;
use near_primitives::types::{AccountId, Nonce};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// How long a transaction after a nonce gap waits for the transactions that fill the gap.
pub const GAP_WAIT: Duration = Duration::from_secs(1);

/// The transactions of one access key: the signer and the key that signed them.
type KeyId = (AccountId, PublicKey);

struct Pooled {
    tx: SignedTransaction,
    arrived: Instant,
}

#[derive(Default)]
pub struct TxPool {
    /// Per key, by (nonce, hash): two transactions with one nonce both stay until a block
    /// takes the first and finds the second's nonce used.
    groups: BTreeMap<KeyId, BTreeMap<(Nonce, CryptoHash), Pooled>>,
    hashes: HashSet<CryptoHash>,
}

impl TxPool {
    pub fn insert(&mut self, tx: SignedTransaction) {
        let hash = tx.get_hash();
        if !self.hashes.insert(hash) {
            return;
        }
        let t = &tx.transaction;
        let key = (t.signer_id().clone(), t.public_key().clone());
        let nonce = t.nonce().nonce();
        self.groups.entry(key).or_default().insert(
            (nonce, hash),
            Pooled {
                tx,
                arrived: Instant::now(),
            },
        );
    }

    pub fn contains(&self, hash: &CryptoHash) -> bool {
        self.hashes.contains(hash)
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Takes the transactions for the next block, in the order to apply them: each key's in
    /// nonce order, up to a nonce gap younger than [`GAP_WAIT`]. `key_nonce` reads a key's
    /// current nonce (`None`: no such key; its transactions fail in the block).
    pub fn take_ready(
        &mut self,
        now: Instant,
        key_nonce: impl Fn(&AccountId, &PublicKey) -> Option<Nonce>,
    ) -> Vec<SignedTransaction> {
        let mut ready = Vec::new();
        self.groups.retain(|(signer, public_key), txs| {
            let mut last = key_nonce(signer, public_key);
            while let Some(entry) = txs.first_entry() {
                let nonce = entry.key().0;
                let follows = last.is_none_or(|last| nonce <= last.saturating_add(1));
                if !follows && now.saturating_duration_since(entry.get().arrived) < GAP_WAIT {
                    break;
                }
                last = Some(last.map_or(nonce, |last| last.max(nonce)));
                ready.push(entry.remove().tx);
            }
            !txs.is_empty()
        });
        for tx in &ready {
            self.hashes.remove(&tx.get_hash());
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use near_crypto::{InMemorySigner, KeyType, SecretKey};
    use near_primitives::action::{Action, TransferAction};
    use near_primitives::types::Balance;

    fn tx(signer: &near_crypto::Signer, nonce: Nonce) -> SignedTransaction {
        SignedTransaction::from_actions(
            nonce,
            "alice.near".parse().unwrap_or_else(|e| panic!("{e}")),
            "bob.near".parse().unwrap_or_else(|e| panic!("{e}")),
            signer,
            vec![Action::Transfer(TransferAction {
                deposit: Balance::from_yoctonear(1),
            })],
            CryptoHash::default(),
        )
    }

    fn signer() -> near_crypto::Signer {
        InMemorySigner::from_secret_key(
            "alice.near".parse().unwrap_or_else(|e| panic!("{e}")),
            SecretKey::from_random(KeyType::ED25519),
        )
    }

    fn drain(pool: &mut TxPool, now: Instant, ak_nonce: Nonce) -> Vec<Nonce> {
        pool.take_ready(now, |_, _| Some(ak_nonce))
            .iter()
            .map(|tx| tx.transaction.nonce().nonce())
            .collect()
    }

    #[test]
    fn one_keys_transactions_come_out_in_nonce_order_whatever_the_arrival_order() {
        let signer = signer();
        let mut pool = TxPool::default();
        for nonce in [13, 11, 15, 12, 14] {
            pool.insert(tx(&signer, nonce));
        }
        assert_eq!(
            drain(&mut pool, Instant::now(), 10),
            vec![11, 12, 13, 14, 15]
        );
        assert!(pool.is_empty());
    }

    #[test]
    fn a_nonce_gap_waits_for_the_missing_nonce_then_goes_ahead() {
        let signer = signer();
        let mut pool = TxPool::default();
        pool.insert(tx(&signer, 11));
        pool.insert(tx(&signer, 13));
        let now = Instant::now();
        assert_eq!(drain(&mut pool, now, 10), vec![11]);
        assert_eq!(pool.len(), 1);
        // 12 never comes: 13 goes ahead once it has waited long enough.
        assert_eq!(drain(&mut pool, now + GAP_WAIT, 11), vec![13]);
        assert!(pool.is_empty());
    }
}
