//! A bounded cache of datacube answers, invalidated per account.
//!
//! An answer is keyed by (appid, endpoint, first label, last label, last ready day) — the
//! labels after the readiness rule, so the passing of 08:00 changes the key. Every statistics write records the
//! account in the store's change log; the serve loop polls it every 100 ms and bumps the
//! account's generation, which retires its cached answers. Writes made through this process's
//! admin API invalidate at once.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// The answers, and the order they were stored in (the oldest makes room).
#[derive(Default)]
struct Entries {
    answers: HashMap<Key, (u64, Bytes)>,
    order: std::collections::VecDeque<Key>,
}

pub(crate) struct ResponseCache {
    max: usize,
    entries: RwLock<Entries>,
    /// Each account's own count of changes (a cell the loops' hot answers watch).
    generations: RwLock<HashMap<String, Arc<AtomicU64>>>,
    /// Added to every generation: bumped to retire every answer at once.
    epoch: AtomicU64,
    /// Answers asked for once since its last reset.
    doorkeeper: Doorkeeper,
}

/// TinyLFU's doorkeeper: an answer is stored the second time it is asked for (within the
/// doorkeeper's memory), so that a stream of one-off ranges neither costs a write to the
/// cache each nor pushes out the answers that are asked again. One bit per hash, forgotten
/// all at once when an eighth are set.
struct Doorkeeper {
    bits: Box<[AtomicU64]>,
    set: AtomicUsize,
    hasher: std::hash::RandomState,
}

impl Doorkeeper {
    /// A doorkeeper for a cache of `max` answers: eight bits each.
    fn new(max: usize) -> Doorkeeper {
        let words = (max.saturating_mul(8) / 64)
            .clamp(64, 1 << 20)
            .next_power_of_two();
        Doorkeeper {
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
            set: AtomicUsize::new(0),
            hasher: Default::default(),
        }
    }

    /// Whether `key` was asked for before (since the last reset); it is from now on.
    fn asked_before(&self, key: &Key) -> bool {
        let hash = self.hasher.hash_one(key) as usize;
        let word = &self.bits[(hash / 64) & (self.bits.len() - 1)];
        let bit = 1u64 << (hash % 64);
        // Read first: a bit already set costs no write to a shared line.
        if word.load(Ordering::Relaxed) & bit != 0
            || word.fetch_or(bit, Ordering::Relaxed) & bit != 0
        {
            return true;
        }
        // Reset when an eighth of the bits are set: at most one in eight one-offs gets in.
        if self.set.fetch_add(1, Ordering::Relaxed) + 1 >= self.bits.len() * 8 {
            for word in &self.bits {
                word.store(0, Ordering::Relaxed);
            }
            self.set.store(0, Ordering::Relaxed);
        }
        false
    }
}

impl ResponseCache {
    /// A cache of at most `max` answers; 0 disables it.
    pub(crate) fn new(max: usize) -> ResponseCache {
        ResponseCache {
            max,
            entries: RwLock::default(),
            generations: RwLock::default(),
            epoch: AtomicU64::new(0),
            doorkeeper: Doorkeeper::new(max),
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
            .answers
            .get(key)
            .filter(|(g, _)| *g == generation)
            .map(|(_, body)| body.clone())
    }

    /// Stores an answer read at `generation` (a later invalidation makes it unreachable), if
    /// it was asked for before.
    pub(crate) fn put(&self, key: Key, generation: u64, body: Bytes) {
        if !self.enabled() || !self.doorkeeper.asked_before(&key) {
            return;
        }
        let mut entries = self.entries.write().expect("response cache");
        let Entries { answers, order } = &mut *entries;
        if answers.len() >= self.max && !answers.contains_key(&key) {
            // The oldest stored makes room (an answer asked for again comes back).
            while let Some(oldest) = order.pop_front() {
                if answers.remove(&oldest).is_some() {
                    break;
                }
            }
        }
        if answers.insert(key.clone(), (generation, body)).is_none() {
            order.push_back(key);
        }
    }

    /// Retires every cached answer.
    pub(crate) fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        *self.entries.write().expect("response cache") = Entries::default();
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

        /// An answer asked for twice (stored the second time).
        fn put_twice(&self, key: Key, generation: u64, body: Bytes) {
            self.put(key.clone(), generation, body.clone());
            self.put(key, generation, body);
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
        cache.put_twice(key("a"), cache.generation("a"), Bytes::from_static(b"A"));
        cache.put_twice(key("b"), cache.generation("b"), Bytes::from_static(b"B"));
        cache.invalidate("a");
        assert_eq!(cache.get(&key("a")), None);
        assert_eq!(cache.get(&key("b")), Some(Bytes::from_static(b"B")));
    }

    #[test]
    fn an_answer_read_before_an_invalidation_is_never_served() {
        let cache = ResponseCache::new(10);
        let generation = cache.generation("a");
        cache.invalidate("a"); // a write lands while the answer is being read
        cache.put_twice(key("a"), generation, Bytes::from_static(b"old"));
        assert_eq!(cache.get(&key("a")), None);
    }

    #[test]
    fn the_cache_stays_bounded_and_can_be_off() {
        let cache = ResponseCache::new(2);
        for i in 0..5 {
            cache.put_twice(key(&i.to_string()), 0, Bytes::new());
        }
        assert!(cache.entries.read().unwrap().answers.len() <= 2);
        let off = ResponseCache::new(0);
        off.put_twice(key("a"), 0, Bytes::new());
        assert_eq!(off.get(&key("a")), None);
    }

    #[test]
    fn an_answer_is_stored_when_asked_for_again_and_few_one_offs_are() {
        let cache = ResponseCache::new(100);
        cache.put(key("hot"), 0, Bytes::from_static(b"H"));
        assert_eq!(cache.get(&key("hot")), None, "asked for once: not stored");
        cache.put(key("hot"), 0, Bytes::from_static(b"H"));
        assert_eq!(cache.get(&key("hot")), Some(Bytes::from_static(b"H")));
        // A stream of ranges asked for once each, far more than the cache holds: few are
        // stored (only those the doorkeeper takes for another), and the cache stays bounded.
        let mut stored = 0;
        for i in 0..100_000 {
            let once = key(&format!("once{i}"));
            cache.put(once.clone(), 0, Bytes::new());
            stored += usize::from(cache.get(&once).is_some());
        }
        assert!(stored < 100_000 / 8, "{stored} of 100,000 one-offs stored");
        assert!(cache.entries.read().unwrap().answers.len() <= 100);
        // The oldest made room, one at a time: the last stored are all there.
        assert_eq!(cache.entries.read().unwrap().answers.len(), 100);
    }
}
