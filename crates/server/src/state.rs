//! The shared state of a running server: store, clock, settings and small caches.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
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

type GrantCache = HashMap<(String, String), (Instant, Option<Arc<Vec<u32>>>)>;

/// A running server's state. Cheap to clone.
#[derive(Clone)]
pub struct App {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) clock: Clock,
    pub(crate) config: Config,
    tokens: RwLock<HashMap<String, (Instant, Arc<TokenRecord>)>>,
    accounts: RwLock<HashMap<String, (Instant, Arc<AccountRecord>)>>,
    /// The permission sets of (component, authorizer) grants, `None` for no grant.
    grants: RwLock<GrantCache>,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) answers: ResponseCache,
    /// Secret checks: known answers and throttles in front of a few dedicated threads (argon2
    /// is slow and memory-hungry).
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
                store,
                clock,
                config,
                tokens: RwLock::default(),
                accounts: RwLock::default(),
                grants: RwLock::default(),
                in_flight: AtomicUsize::new(0),
                secrets: SecretGate::new(SecretChecker::new(cores, 64)),
            }),
        }
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
        let mut rng = rand::rng();
        let rid = Rid {
            time: self.inner.clock.unix() as u32,
            a: rng.next_u32(),
            b: rng.next_u32(),
        };
        error_body(code, rid, self.inner.config.suffix)
    }

    /// The token, from the cache or the database.
    pub(crate) async fn token(
        &self,
        token: &str,
    ) -> datacube_store::Result<Option<Arc<TokenRecord>>> {
        if let Some((at, rec)) = self.inner.tokens.read().expect("token cache").get(token) {
            if at.elapsed() < CACHE_TTL {
                return Ok(Some(rec.clone()));
            }
        }
        let Some(rec) = self.inner.store.token(token).await? else {
            return Ok(None);
        };
        let rec = Arc::new(rec);
        let mut cache = self.inner.tokens.write().expect("token cache");
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(token.to_owned(), (Instant::now(), rec.clone()));
        Ok(Some(rec))
    }

    /// Forgets cached tokens of `appid` and `kind` (a new token changes the older ones).
    pub(crate) fn forget_tokens(&self, appid: &str, kind: TokenKind) {
        self.inner
            .tokens
            .write()
            .expect("token cache")
            .retain(|_, (_, rec)| rec.appid != appid || rec.kind != kind);
    }

    /// The permission sets `authorizer` granted `component`, `None` when there is no grant;
    /// cached like tokens (a second), forgotten here when a grant changes.
    pub(crate) async fn grant_sets(
        &self,
        component: &str,
        authorizer: &str,
    ) -> datacube_store::Result<Option<Arc<Vec<u32>>>> {
        let key = (component.to_owned(), authorizer.to_owned());
        if let Some((at, sets)) = self.inner.grants.read().expect("grant cache").get(&key) {
            if at.elapsed() < CACHE_TTL {
                return Ok(sets.clone());
            }
        }
        let sets = self
            .inner
            .store
            .grant(component, authorizer)
            .await?
            .map(|g| Arc::new(g.sets));
        let mut cache = self.inner.grants.write().expect("grant cache");
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), sets.clone()));
        Ok(sets)
    }

    /// Forgets the cached grant of (`component`, `authorizer`).
    pub(crate) fn forget_grant(&self, component: &str, authorizer: &str) {
        self.inner
            .grants
            .write()
            .expect("grant cache")
            .remove(&(component.to_owned(), authorizer.to_owned()));
    }

    /// Forgets cached authorizer tokens of `appid` (its authorization of a component ended).
    pub(crate) fn forget_authorizer_tokens(&self, appid: &str) {
        self.inner
            .tokens
            .write()
            .expect("token cache")
            .retain(|_, (_, rec)| rec.appid != appid || rec.kind != TokenKind::Authorizer);
    }

    /// The account, from the cache or the database.
    pub(crate) async fn account(
        &self,
        appid: &str,
    ) -> datacube_store::Result<Option<Arc<AccountRecord>>> {
        if let Some((at, rec)) = self
            .inner
            .accounts
            .read()
            .expect("account cache")
            .get(appid)
        {
            if at.elapsed() < CACHE_TTL {
                return Ok(Some(rec.clone()));
            }
        }
        let Some(rec) = self.inner.store.account(appid).await? else {
            return Ok(None);
        };
        let rec = Arc::new(rec);
        let mut cache = self.inner.accounts.write().expect("account cache");
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(appid.to_owned(), (Instant::now(), rec.clone()));
        Ok(Some(rec))
    }

    /// Retires the cached answers of `appid` (its statistics changed).
    pub(crate) fn statistics_changed(&self, appid: &str) {
        self.inner.answers.invalidate(appid);
    }

    /// Forgets a cached account (after the admin API changed it).
    pub(crate) fn forget_account(&self, appid: &str) {
        self.inner
            .accounts
            .write()
            .expect("account cache")
            .remove(appid);
    }

    /// Forgets everything cached of `appid` (removed): the account, its tokens, the grants it
    /// gave, its answers. (Other instances forget within a second: tokens and accounts are
    /// cached that long, answers until the change log says.)
    pub(crate) fn forget_all_of(&self, appid: &str) {
        self.forget_account(appid);
        self.inner
            .tokens
            .write()
            .expect("token cache")
            .retain(|_, (_, rec)| rec.appid != appid);
        self.inner
            .grants
            .write()
            .expect("grant cache")
            .retain(|(_, authorizer), _| authorizer != appid);
        self.inner.answers.invalidate(appid);
    }

    /// Forgets everything cached (after a reset).
    pub(crate) fn forget_everything(&self) {
        self.inner.accounts.write().expect("account cache").clear();
        self.inner.tokens.write().expect("token cache").clear();
        self.inner.grants.write().expect("grant cache").clear();
        self.inner.answers.invalidate_all();
    }
}
