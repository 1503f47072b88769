//! Statistics answered from memory: each (account, endpoint) asked for is read from the store
//! once, in one snapshot ([`datacube_store::Resident`]), and answers every range after that
//! without a database read — until the account's statistics change. It is tagged with the
//! account's generation in the response cache ([`crate::cache::ResponseCache::generation`],
//! read before loading), so the change log retires it exactly as it retires cached answers,
//! and a copy loaded while a change landed is never used.
//!
//! Bounded by `--stats-memory`: past it, held accounts are dropped (whichever the map yields
//! first) until a quarter is free. While one request loads a copy, others asking for the same
//! one read the store as before instead of waiting. An account with live events not counted
//! yet is answered by the store, which counts them first.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use datacube_api::Endpoint;
use datacube_store::Resident;

/// An account's held endpoints, each with the generation it was read at.
type Held = Vec<(Endpoint, u64, Arc<Resident>)>;

pub(crate) struct Residents {
    budget: usize,
    held: RwLock<HashMap<Box<str>, Held>>,
    bytes: AtomicUsize,
    loading: Mutex<HashSet<(Box<str>, Endpoint)>>,
}

/// A load under way; dropped when it ends (loaded or not). It holds the server's state, so
/// that it can end after the request that started it (a client gone meanwhile).
pub(crate) struct Loading {
    app: crate::App,
    key: Option<(Box<str>, Endpoint)>,
}

impl Drop for Loading {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let residents = &self.app.inner.residents;
            residents
                .loading
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        }
    }
}

impl Residents {
    /// At most `budget` bytes held; 0 holds nothing (every answer reads the store).
    pub(crate) fn new(budget: usize) -> Residents {
        Residents {
            budget,
            held: RwLock::default(),
            bytes: AtomicUsize::new(0),
            loading: Mutex::default(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// The copy of `endpoint` of `appid` read at `generation`, if it is held.
    pub(crate) fn get(
        &self,
        appid: &str,
        endpoint: Endpoint,
        generation: u64,
    ) -> Option<Arc<Resident>> {
        let held = self.held.read().unwrap_or_else(|p| p.into_inner());
        held.get(appid)?
            .iter()
            .find(|(e, g, _)| *e == endpoint && *g == generation)
            .map(|(_, _, r)| r.clone())
    }

    /// Marks `endpoint` of `appid` as loading; `None` when another request loads it already.
    pub(crate) fn start_loading(
        app: &crate::App,
        appid: &str,
        endpoint: Endpoint,
    ) -> Option<Loading> {
        let key = (Box::<str>::from(appid), endpoint);
        let first = app
            .inner
            .residents
            .loading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone());
        // (The guard is released before a `Loading` exists: dropping one takes the lock.)
        first.then(|| Loading {
            app: app.clone(),
            key: Some(key),
        })
    }

    /// Holds `resident`, read at `generation`, in place of what was held of its endpoint —
    /// unless `current` (the account's generation now, asked under the lock that
    /// [`Residents::forget`] takes, after a change bumped it) says it changed meanwhile.
    pub(crate) fn put(
        &self,
        appid: &str,
        generation: u64,
        resident: Arc<Resident>,
        current: impl FnOnce() -> u64,
    ) {
        let size = resident.size();
        if !self.enabled() || size > self.budget / 4 {
            return;
        }
        let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
        if current() != generation {
            return;
        }
        if self.bytes.load(Ordering::Relaxed) + size > self.budget {
            let mut freed = 0;
            let goal = self.budget / 4 + size;
            held.retain(|_, endpoints| {
                if freed >= goal {
                    return true;
                }
                freed += endpoints.iter().map(|(_, _, r)| r.size()).sum::<usize>();
                false
            });
            self.bytes.fetch_sub(freed, Ordering::Relaxed);
        }
        let endpoints = held.entry(appid.into()).or_default();
        let endpoint = resident.endpoint();
        if let Some(at) = endpoints.iter().position(|(e, _, _)| *e == endpoint) {
            let (_, _, old) = endpoints.swap_remove(at);
            self.bytes.fetch_sub(old.size(), Ordering::Relaxed);
        }
        endpoints.push((endpoint, generation, resident));
        let total = self.bytes.fetch_add(size, Ordering::Relaxed) + size;
        metrics::gauge!("datacube_resident_bytes").set(total as f64);
    }

    /// Drops what is held of `appid` (its statistics changed: it would not be used again).
    pub(crate) fn forget(&self, appid: &str) {
        let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
        if let Some(endpoints) = held.remove(appid) {
            let freed = endpoints.iter().map(|(_, _, r)| r.size()).sum::<usize>();
            let total = self.bytes.fetch_sub(freed, Ordering::Relaxed) - freed;
            metrics::gauge!("datacube_resident_bytes").set(total as f64);
        }
    }

    /// Drops everything held.
    pub(crate) fn clear(&self) {
        let mut held = self.held.write().unwrap_or_else(|p| p.into_inner());
        held.clear();
        self.bytes.store(0, Ordering::Relaxed);
        metrics::gauge!("datacube_resident_bytes").set(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One request loads a copy; another asking meanwhile is told to read the store (and
    /// neither waits on the other); once the load ends, the next may load.
    #[test]
    fn one_load_at_a_time_and_nobody_waits() {
        let store = datacube_store::Store::open("sqlite::memory:").unwrap();
        let app = crate::App::new(
            store,
            datacube_api::clock::Clock::real(),
            Default::default(),
        );
        let first = Residents::start_loading(&app, "wxa", Endpoint::GetUserSummary);
        assert!(first.is_some());
        assert!(Residents::start_loading(&app, "wxa", Endpoint::GetUserSummary).is_none());
        assert!(Residents::start_loading(&app, "wxa", Endpoint::GetUserCumulate).is_some());
        drop(first);
        assert!(Residents::start_loading(&app, "wxa", Endpoint::GetUserSummary).is_some());
    }
}
