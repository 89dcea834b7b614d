//! Rendered `/v1/nodes` pages, reused until the index changes.
//!
//! The node list only changes when a block with contract events is committed (see
//! [`crate::db::Db::generation`]), while clients (the explorer page, workers, `ecloud`) ask
//! for the same few pages over and over. A page is stored under the generation that was
//! current *before* its query ran, so it can only be newer than its label, never older: the
//! next commit moves the generation on and every stored page is dropped.

use axum::body::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;

/// Pages kept per generation at most; beyond that the cache starts over (distinct queries
/// are few in practice, this only bounds memory against a client walking every filter).
const MAX_PAGES: usize = 4096;

#[derive(Debug, Default)]
pub struct PageCache {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    generation: u64,
    pages: HashMap<String, Bytes>,
}

impl PageCache {
    /// The page for `key` rendered at `generation`, if there is one.
    pub fn get(&self, generation: u64, key: &str) -> Option<Bytes> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (state.generation == generation)
            .then(|| state.pages.get(key).cloned())
            .flatten()
    }

    /// Keeps `page` for `key`; a page of an older generation than the cache's is dropped.
    pub fn put(&self, generation: u64, key: String, page: Bytes) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if generation < state.generation {
            return;
        }
        if generation > state.generation || state.pages.len() >= MAX_PAGES {
            state.pages.clear();
            state.generation = generation;
        }
        state.pages.insert(key, page);
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
}
