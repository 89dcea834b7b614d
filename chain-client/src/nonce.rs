//! Nonces per access key. A key's nonce is fetched once; after that each transaction takes the
//! next value under a lock, so concurrent senders never reuse one. When the chain says a nonce
//! is stale (`InvalidNonce { ak_nonce }`, e.g. another process used the key), the cache jumps to
//! the chain's value and the sender retries.

use std::collections::HashMap;
use std::sync::Mutex;

use near_crypto::PublicKey;
use near_primitives::types::{AccountId, Nonce};

#[derive(Debug, Default)]
pub(crate) struct Nonces {
    last: Mutex<HashMap<(AccountId, PublicKey), Nonce>>,
}

impl Nonces {
    /// The next nonce if the key is known; `None` means "fetch the access key first".
    pub(crate) fn next(&self, account: &AccountId, key: &PublicKey) -> Option<Nonce> {
        let mut map = self.lock();
        let last = map.get_mut(&(account.clone(), key.clone()))?;
        *last = last.saturating_add(1);
        Some(*last)
    }

    /// Records the chain's nonce; never moves the cache backwards (a slower fetch racing a
    /// newer one must not hand out used nonces) and returns the next nonce to use.
    pub(crate) fn observe_and_next(
        &self,
        account: &AccountId,
        key: &PublicKey,
        chain: Nonce,
    ) -> Nonce {
        let mut map = self.lock();
        let last = map.entry((account.clone(), key.clone())).or_insert(chain);
        *last = (*last).max(chain).saturating_add(1);
        *last
    }

    /// Raises the cache to the chain's value after an `InvalidNonce`.
    pub(crate) fn observe(&self, account: &AccountId, key: &PublicKey, chain: Nonce) {
        let mut map = self.lock();
        let last = map.entry((account.clone(), key.clone())).or_insert(chain);
        *last = (*last).max(chain);
    }

    /// Forgets a key (it was deleted or replaced): the next send fetches it again.
    pub(crate) fn forget(&self, account: &AccountId, key: &PublicKey) {
        self.lock().remove(&(account.clone(), key.clone()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(AccountId, PublicKey), Nonce>> {
        // The map holds plain integers: a panic while holding the lock cannot leave it torn.
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use near_crypto::{KeyType, SecretKey};

    #[test]
    fn nonces_increase_and_never_go_back() {
        let nonces = Nonces::default();
        let a: AccountId = "a.near".parse().unwrap();
        let k = SecretKey::from_random(KeyType::ED25519).public_key();
        assert_eq!(nonces.next(&a, &k), None);
        assert_eq!(nonces.observe_and_next(&a, &k, 10), 11);
        assert_eq!(nonces.next(&a, &k), Some(12));
        // A stale fetch does not move it back.
        assert_eq!(nonces.observe_and_next(&a, &k, 5), 13);
        // InvalidNonce: the chain is ahead.
        nonces.observe(&a, &k, 40);
        assert_eq!(nonces.next(&a, &k), Some(41));
        nonces.forget(&a, &k);
        assert_eq!(nonces.next(&a, &k), None);
    }

    #[test]
    fn concurrent_senders_get_distinct_nonces() {
        let nonces = std::sync::Arc::new(Nonces::default());
        let a: AccountId = "a.near".parse().unwrap();
        let k = SecretKey::from_random(KeyType::ED25519).public_key();
        nonces.observe(&a, &k, 0);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (nonces, a, k) = (nonces.clone(), a.clone(), k.clone());
                std::thread::spawn(move || {
                    (0..100)
                        .map(|_| nonces.next(&a, &k).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 400);
    }
}
