//! Rendered `/v1/nodes` pages, reused until the index changes.
//!
//! The node list only changes when a block with contract events is committed (see
//! [`crate::db::Db::generation`]), while clients (the explorer page, workers, `ecloud`) ask
//! for the same few pages over and over. A page is stored under the generation that was
//! current *before* its query ran, so it can only be newer than its label, never older: the
//! next commit moves the generation on and every stored page is dropped.
//!
//! Memory is bounded in bytes (keys and pages), not only in entries: a client varying its
//! query could otherwise pin one large page per variant. Callers key pages on their parsed
//! parameters, so spellings of one query (`limit=050`, `limit=50`) share one entry.

use axum::body::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;

/// Pages kept per generation at most; beyond that the cache starts over (distinct queries
/// are few in practice, this only bounds memory against a client walking every filter).
const MAX_PAGES: usize = 4096;

/// Bytes of keys and pages kept at most (a full page of 200 nodes is ~200 KB): beyond that
/// the cache starts over.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug)]
pub struct PageCache {
    max_bytes: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    generation: u64,
    pages: HashMap<String, Bytes>,
    /// Sum of the lengths of the keys and pages in `pages`.
    bytes: usize,
}

impl Default for PageCache {
    fn default() -> Self {
        Self::with_budget(MAX_BYTES)
    }
}

impl PageCache {
    /// A cache holding at most `max_bytes` of keys and pages.
    pub fn with_budget(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            state: Mutex::default(),
        }
    }

    /// Bytes of keys and pages held now.
    pub fn bytes(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }

    /// The page for `key` rendered at `generation`, if there is one.
    pub fn get(&self, generation: u64, key: &str) -> Option<Bytes> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (state.generation == generation)
            .then(|| state.pages.get(key).cloned())
            .flatten()
    }

    /// Keeps `page` for `key`; a page of an older generation than the cache's is dropped,
    /// and so is a page larger than the whole budget.
    pub fn put(&self, generation: u64, key: String, page: Bytes) {
        let key_len = key.len();
        let size = key_len + page.len();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if generation < state.generation || size > self.max_bytes {
            return;
        }
        if generation > state.generation
            || state.pages.len() >= MAX_PAGES
            || state.bytes + size > self.max_bytes
        {
            state.pages.clear();
            state.bytes = 0;
            state.generation = generation;
        }
        if let Some(old) = state.pages.insert(key, page) {
            // Two requests raced to render the same page: count it once.
            state.bytes -= key_len + old.len();
        }
        state.bytes += size;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_lives_until_the_generation_moves() {
        let cache = PageCache::default();
        assert_eq!(cache.get(0, "a"), None);
        cache.put(0, "a".into(), Bytes::from_static(b"A0"));
        assert_eq!(cache.get(0, "a"), Some(Bytes::from_static(b"A0")));
        assert_eq!(cache.get(0, "b"), None);
        // A commit happened: the old page is never served for the new generation.
        assert_eq!(cache.get(1, "a"), None);
        cache.put(1, "b".into(), Bytes::from_static(b"B1"));
        assert_eq!(cache.get(1, "a"), None, "older pages were dropped");
        // A slow request that started before the commit cannot store its older page.
        cache.put(0, "a".into(), Bytes::from_static(b"A0"));
        assert_eq!(cache.get(1, "a"), None);
        assert_eq!(cache.get(0, "a"), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = PageCache::default();
        for i in 0..MAX_PAGES {
            cache.put(3, i.to_string(), Bytes::from_static(b"x"));
        }
        assert!(cache.get(3, "0").is_some());
        cache.put(3, "one more".into(), Bytes::from_static(b"y"));
        assert!(cache.get(3, "0").is_none(), "full: started over");
        assert!(cache.get(3, "one more").is_some());
    }

    #[test]
    fn the_cache_is_bounded_in_bytes() {
        let page = Bytes::from(vec![b'x'; 1000]);
        let cache = PageCache::with_budget(10_000);
        for i in 0..100 {
            cache.put(1, format!("k{i}"), page.clone());
            assert!(cache.bytes() <= 10_000, "{} bytes held", cache.bytes());
        }
        assert!(cache.get(1, "k99").is_some(), "the newest page is kept");
        // The same page stored twice is counted once.
        let held = cache.bytes();
        cache.put(1, "k99".into(), page.clone());
        assert_eq!(cache.bytes(), held);
        // A page larger than the budget is not kept at all.
        cache.put(1, "huge".into(), Bytes::from(vec![b'y'; 20_000]));
        assert!(cache.get(1, "huge").is_none());
        assert!(cache.bytes() <= 10_000);
    }
}
