//! The shared state of a running server: store, clock, settings and small caches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use datacube_api::error::{error_body, Rid};
use datacube_api::ErrCode;
use datacube_store::{AccountRecord, Store, TokenKind, TokenRecord};
use rand::RngCore;

use crate::cache::ResponseCache;
use crate::config::Config;
use crate::gate::SecretGate;
use crate::secret::SecretChecker;
use datacube_api::clock::Clock;

/// How long a cached token or account is trusted before it is read again. Changes made by
/// another process on the same database (the CLI, another instance) are seen within this.
const CACHE_TTL: Duration = Duration::from_secs(1);

/// Cached entries beyond this are dropped wholesale; the cache refills from the database.
const CACHE_MAX: usize = 100_000;

/// Values read from the database, trusted for [`CACHE_TTL`]; dropped wholesale past
/// [`CACHE_MAX`] entries.
struct Recent<K, V> {
    entries: RwLock<HashMap<K, (Instant, V)>>,
    /// How many times they were dropped wholesale.
    cleared: AtomicU64,
}

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Recent {
            entries: RwLock::default(),
            cleared: AtomicU64::new(0),
        }
    }
}

impl<K: Eq + std::hash::Hash, V: Clone> Recent<K, V> {
    /// The value of `key`, if it was read less than [`CACHE_TTL`] ago.
    fn fresh<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + std::hash::Hash + ?Sized,
    {
        self.fresh_until(key).map(|(value, _)| value)
    }

    /// The value of `key` and until when it is trusted, if it still is.
    fn fresh_until<Q>(&self, key: &Q) -> Option<(V, Instant)>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + std::hash::Hash + ?Sized,
    {
        let cache = self.entries.read().expect("cache lock");
        let (at, value) = cache.get(key)?;
        let until = *at + CACHE_TTL;
        (Instant::now() < until).then(|| (value.clone(), until))
    }

    fn put(&self, key: K, value: V) {
        let mut cache = self.entries.write().expect("cache lock");
        if cache.len() >= CACHE_MAX {
            cache.clear();
            // What the loops learned from the records dropped no longer holds either.
            self.cleared.fetch_add(1, Ordering::AcqRel);
        }
        cache.insert(key, (Instant::now(), value));
    }

    fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) {
        let mut cache = self.entries.write().expect("cache lock");
        cache.retain(|k, (_, v)| keep(k, v));
    }

    fn remove<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + std::hash::Hash + ?Sized,
    {
        self.entries.write().expect("cache lock").remove(key);
    }

    fn clear(&self) {
        self.entries.write().expect("cache lock").clear();
    }
}

impl<V> Recent<String, Arc<V>> {
    /// The record of `key` and until when it is trusted: cached, or read by `load` (and
    /// cached if there is one).
    async fn through_until(
        &self,
        key: &str,
        load: impl std::future::Future<Output = datacube_store::Result<Option<V>>>,
    ) -> datacube_store::Result<Option<(Arc<V>, Instant)>> {
        if let Some(cached) = self.fresh_until(key) {
            return Ok(Some(cached));
        }
        let Some(record) = load.await? else {
            return Ok(None);
        };
        let record = Arc::new(record);
        let until = Instant::now() + CACHE_TTL;
        self.put(key.to_owned(), record.clone());
        Ok(Some((record, until)))
    }
}

/// A WeChat error body with a fresh request id, of `clock`'s time.
pub(crate) fn error_body_at(
    clock: &Clock,
    suffix: datacube_api::SuffixStyle,
    code: ErrCode,
) -> String {
    let mut rng = rand::rng();
    let rid = Rid {
        time: clock.unix() as u32,
        a: rng.next_u32(),
        b: rng.next_u32(),
    };
    error_body(code, rid, suffix)
}

/// Whose secret a hash is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SecretOf {
    Account,
    Component,
}

/// A running server's state. Cheap to clone.
#[derive(Clone)]
pub struct App {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) clock: Clock,
    pub(crate) config: Config,
    tokens: Recent<String, Arc<TokenRecord>>,
    accounts: Recent<String, Arc<AccountRecord>>,
    /// The permission sets of (component, authorizer) grants, `None` for no grant.
    grants: Recent<(String, String), Option<Arc<Vec<u32>>>>,
    /// Bumped whenever a cached token or account is forgotten: the loops' copies of their
    /// hottest answers ([`crate::hot`]) hold while it stays the same.
    pub(crate) forgotten: AtomicU64,
    pub(crate) in_flight: AtomicUsize,
    /// Set once shutdown began: no new connections, open requests finishing.
    draining: AtomicBool,
    pub(crate) answers: ResponseCache,
    /// Statistics held in memory to answer ranges (`--stats-memory`).
    pub(crate) residents: crate::resident::Residents,
    /// `/readyz`'s last check of the database.
    pub(crate) ready: crate::health::LastCheck,
    /// The faults injected (`--faults`, `/admin/faults`).
    pub(crate) faults: crate::faults::Injector,
    /// Where the clock started (`None`: real time), for `POST /admin/reset {"clock":true}`.
    clock_start: Option<jiff::Timestamp>,
    /// Secret checks (fast hashes inline; argon2 hashes of older versions on a few threads).
    pub(crate) secrets: SecretGate,
}

impl App {
    /// A server state over `store`, reading time from `clock`.
    pub fn new(store: Store, clock: Clock, config: Config) -> App {
        // The metrics recorder, before anything is recorded.
        crate::metrics::handle();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        App {
            inner: Arc::new(Inner {
                answers: ResponseCache::new(config.response_cache),
                residents: crate::resident::Residents::new(config.stats_memory),
                ready: Default::default(),
                faults: crate::faults::Injector::new(&config.faults, config.faults_seed),
                clock_start: (!clock.is_real()).then(|| clock.now()),
                store,
                clock,
                config,
                tokens: Recent::default(),
                accounts: Recent::default(),
                grants: Recent::default(),
                forgotten: AtomicU64::new(0),
                in_flight: AtomicUsize::new(0),
                draining: AtomicBool::new(false),
                secrets: SecretGate::new(SecretChecker::new(cores, 64)),
            }),
        }
    }

    /// Puts the clock back where it started (real time, if it was).
    pub(crate) fn restart_clock(&self) {
        match self.inner.clock_start {
            Some(start) => self.inner.clock.set(start),
            None => self.inner.clock.set_real(),
        }
    }

    /// Marks the server as shutting down (`/readyz` answers 503 from now on).
    pub(crate) fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// Whether shutdown began.
    pub(crate) fn draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The emulated clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A WeChat error body with a fresh request id.
    pub(crate) fn error_body(&self, code: ErrCode) -> String {
        error_body_at(&self.inner.clock, self.inner.config.suffix, code)
    }

    /// The token, from the cache or the database.
    pub(crate) async fn token(
        &self,
        token: &str,
    ) -> datacube_store::Result<Option<Arc<TokenRecord>>> {
        Ok(self.token_until(token).await?.map(|(record, _)| record))
    }

    /// [`Self::token`], with until when the cached record is trusted.
    pub(crate) async fn token_until(
        &self,
        token: &str,
    ) -> datacube_store::Result<Option<(Arc<TokenRecord>, Instant)>> {
        let store = &self.inner.store;
        self.inner
            .tokens
            .through_until(token, store.token(token))
            .await
    }

    /// Forgets cached tokens of `appid` and `kind` (a new token changes the older ones).
    pub(crate) fn forget_tokens(&self, appid: &str, kind: TokenKind) {
        self.inner
            .tokens
            .retain(|_, rec| rec.appid != appid || rec.kind != kind);
        self.forgot();
    }

    /// The permission sets `authorizer` granted `component`, `None` when there is no grant;
    /// cached like tokens (a second), forgotten here when a grant changes.
    pub(crate) async fn grant_sets(
        &self,
        component: &str,
        authorizer: &str,
    ) -> datacube_store::Result<Option<Arc<Vec<u32>>>> {
        let key = (component.to_owned(), authorizer.to_owned());
        if let Some(sets) = self.inner.grants.fresh(&key) {
            return Ok(sets);
        }
        let sets = self
            .inner
            .store
            .grant(component, authorizer)
            .await?
            .map(|g| Arc::new(g.sets));
        self.inner.grants.put(key, sets.clone());
        Ok(sets)
    }

    /// Forgets the cached grant of (`component`, `authorizer`).
    pub(crate) fn forget_grant(&self, component: &str, authorizer: &str) {
        self.inner
            .grants
            .remove(&(component.to_owned(), authorizer.to_owned()));
    }

    /// Forgets cached authorizer tokens of `appid` (its authorization of a component ended).
    pub(crate) fn forget_authorizer_tokens(&self, appid: &str) {
        self.inner
            .tokens
            .retain(|_, rec| rec.appid != appid || rec.kind != TokenKind::Authorizer);
    }

    /// The account, from the cache or the database.
    pub(crate) async fn account(
        &self,
        appid: &str,
    ) -> datacube_store::Result<Option<Arc<AccountRecord>>> {
        Ok(self.account_until(appid).await?.map(|(record, _)| record))
    }

    /// [`Self::account`], with until when the cached record is trusted.
    pub(crate) async fn account_until(
        &self,
        appid: &str,
    ) -> datacube_store::Result<Option<(Arc<AccountRecord>, Instant)>> {
        let store = &self.inner.store;
        self.inner
            .accounts
            .through_until(appid, store.account(appid))
            .await
    }

    /// Marks cached tokens or accounts forgotten (the loops' hot answers no longer hold); call
    /// it after they are removed.
    fn forgot(&self) {
        self.inner.forgotten.fetch_add(1, Ordering::AcqRel);
    }

    /// How many times cached tokens or accounts were forgotten (or dropped all at once).
    pub(crate) fn forgotten(&self) -> u64 {
        let i = &self.inner;
        i.forgotten.load(Ordering::Acquire)
            + i.tokens.cleared.load(Ordering::Acquire)
            + i.accounts.cleared.load(Ordering::Acquire)
    }

    /// Replaces the argon2 hash `old` an older datacube stored for `appid`'s secret with a fast
    /// one, now that `secret` was found right (nothing to do for a fast hash). Only if the
    /// stored hash is still `old`: a secret changed meanwhile stays changed. A failure is
    /// logged; the sign-in goes on.
    pub(crate) async fn upgrade_secret(&self, of: SecretOf, appid: &str, old: &str, secret: &str) {
        if datacube_api::account::is_fast(old) {
            return;
        }
        let new = datacube_api::account::hash_secret(secret);
        let store = self.store();
        let done = match of {
            SecretOf::Account => store.upgrade_account_secret(appid, old, &new).await,
            SecretOf::Component => store.upgrade_component_secret(appid, old, &new).await,
        };
        match done {
            Ok(true) => {
                self.forget_account(appid);
                tracing::info!(appid, "secret hash upgraded from argon2 to HMAC-SHA-256");
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(appid, error = %e, "upgrading a secret hash failed"),
        }
    }

    /// The answer to a sign-in whose account was removed (or removed and added again) while
    /// it was checked: WeChat's "busy, retry" — the retry is checked against what is there now.
    pub(crate) fn account_gone(&self, appid: &str) -> axum::response::Response {
        tracing::info!(appid, "the account was removed during a sign-in");
        self.forget_all_of(appid);
        self.wechat_error(ErrCode::SystemError)
    }

    /// Retires the cached answers of `appid` (its statistics changed).
    pub(crate) fn statistics_changed(&self, appid: &str) {
        self.inner.answers.invalidate(appid);
        self.inner.residents.forget(appid);
    }

    /// Forgets a cached account (after the admin API changed it).
    pub(crate) fn forget_account(&self, appid: &str) {
        self.inner.accounts.remove(appid);
        self.forgot();
    }

    /// Forgets everything cached of `appid` (removed): the account, its tokens, the grants it
    /// gave, its answers. (Other instances forget within a second: tokens and accounts are
    /// cached that long, answers until the change log says.)
    pub(crate) fn forget_all_of(&self, appid: &str) {
        self.inner.accounts.remove(appid);
        self.inner.tokens.retain(|_, rec| rec.appid != appid);
        self.inner
            .grants
            .retain(|(_, authorizer), _| authorizer != appid);
        self.inner.answers.invalidate(appid);
        self.inner.residents.forget(appid);
        // Last: a request that reads the new count finds none of the above cached.
        self.forgot();
    }

    /// Forgets everything cached (after a reset).
    pub(crate) fn forget_everything(&self) {
        self.inner.accounts.clear();
        self.inner.tokens.clear();
        self.inner.grants.clear();
        self.inner.answers.invalidate_all();
        self.inner.residents.clear();
        self.forgot();
    }
}
