//! A bounded cache of datacube answers, invalidated per account.
//!
//! An answer is keyed by (appid, endpoint, first label, last label, last ready day) — the
//! labels after the readiness rule, so the passing of 08:00 changes the key. Every statistics write records the
//! account in the store's change log; the serve loop polls it every 100 ms and bumps the
//! account's generation, which retires its cached answers. Writes made through this process's
//! admin API invalidate at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use datacube_api::Endpoint;
use jiff::civil::Date;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) appid: String,
    pub(crate) endpoint: Endpoint,
    pub(crate) begin: Date,
    pub(crate) end: Date,
    /// The last ready day: it changes what getarticletotal's details show.
    pub(crate) ready: Date,
}

pub(crate) struct ResponseCache {
    max: usize,
    entries: RwLock<HashMap<Key, (u64, Bytes)>>,
    /// Each account's own count of changes (a cell the loops' hot answers watch).
    generations: RwLock<HashMap<String, Arc<AtomicU64>>>,
    /// Added to every generation: bumped to retire every answer at once.
    epoch: AtomicU64,
}

impl ResponseCache {
    /// A cache of at most `max` answers; 0 disables it.
    pub(crate) fn new(max: usize) -> ResponseCache {
        ResponseCache {
            max,
            entries: RwLock::default(),
            generations: RwLock::default(),
            epoch: AtomicU64::new(0),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.max > 0
    }

    /// The current generation of `appid`'s statistics. Read it before reading the store.
    pub(crate) fn generation(&self, appid: &str) -> u64 {
        let own = self
            .generations
            .read()
            .expect("generations")
            .get(appid)
            .map_or(0, |own| own.load(Ordering::Acquire));
        own + self.epoch.load(Ordering::Acquire)
    }

    /// `appid`'s own count of changes, to watch without a lock: [`Self::generation_by`] of
    /// it equals [`Self::generation`] at every moment (both counts only grow, so one sum
    /// means neither moved).
    pub(crate) fn cell(&self, appid: &str) -> Arc<AtomicU64> {
        let known = self
            .generations
            .read()
            .expect("generations")
            .get(appid)
            .cloned();
        known.unwrap_or_else(|| {
            let mut generations = self.generations.write().expect("generations");
            generations.entry(appid.to_owned()).or_default().clone()
        })
    }

    /// The generation of the account whose [`Self::cell`] is `own`.
    pub(crate) fn generation_by(&self, own: &AtomicU64) -> u64 {
        own.load(Ordering::Acquire) + self.epoch.load(Ordering::Acquire)
    }

    /// The cached answer, if it is of `generation`.
    pub(crate) fn get_at(&self, key: &Key, generation: u64) -> Option<Bytes> {
        let entries = self.entries.read().expect("response cache");
        entries
            .get(key)
            .filter(|(g, _)| *g == generation)
            .map(|(_, body)| body.clone())
    }

    /// Stores an answer read at `generation` (a later invalidation makes it unreachable).
    pub(crate) fn put(&self, key: Key, generation: u64, body: Bytes) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.entries.write().expect("response cache");
        if entries.len() >= self.max {
            // Simple and bounded: start over. Hot answers come back on their next request.
            entries.clear();
        }
        entries.insert(key, (generation, body));
    }

    /// Retires every cached answer.
    pub(crate) fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.write().expect("response cache").clear();
    }

    /// Retires every cached answer of `appid`.
    pub(crate) fn invalidate(&self, appid: &str) {
        self.cell(appid).fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ResponseCache {
        fn get(&self, key: &Key) -> Option<Bytes> {
            self.get_at(key, self.generation(&key.appid))
        }
    }

    fn key(appid: &str) -> Key {
        Key {
            appid: appid.into(),
            endpoint: Endpoint::GetUserSummary,
            begin: jiff::civil::date(2021, 9, 1),
            end: jiff::civil::date(2021, 9, 7),
            ready: jiff::civil::date(2021, 9, 9),
        }
    }

    #[test]
    fn invalidation_retires_only_that_accounts_answers() {
        let cache = ResponseCache::new(10);
        cache.put(key("a"), cache.generation("a"), Bytes::from_static(b"A"));
        cache.put(key("b"), cache.generation("b"), Bytes::from_static(b"B"));
        cache.invalidate("a");
        assert_eq!(cache.get(&key("a")), None);
        assert_eq!(cache.get(&key("b")), Some(Bytes::from_static(b"B")));
    }

    #[test]
    fn an_answer_read_before_an_invalidation_is_never_served() {
        let cache = ResponseCache::new(10);
        let generation = cache.generation("a");
        cache.invalidate("a"); // a write lands while the answer is being read
        cache.put(key("a"), generation, Bytes::from_static(b"old"));
        assert_eq!(cache.get(&key("a")), None);
    }

    #[test]
    fn the_cache_stays_bounded_and_can_be_off() {
        let cache = ResponseCache::new(2);
        for i in 0..5 {
            cache.put(key(&i.to_string()), 0, Bytes::new());
        }
        assert!(cache.entries.read().unwrap().len() <= 2);
        let off = ResponseCache::new(0);
        off.put(key("a"), 0, Bytes::new());
        assert_eq!(off.get(&key("a")), None);
    }
}
