//! datacube's storage: accounts, access tokens, quotas and statistics rows.
//!
//! # Layout
//! - [`Store`]: the handle every other crate uses; cheap to clone. Open one with
//!   [`Store::open`] and a database URL (`sqlite://datacube.db` or
//!   `postgres://user@host/database`).
//! - `db`: the SQL both backends speak; the logic (`accounts`, `components`, `events`, `days`,
//!   `sync`: what `datacube sync` mirrored for good, and its runs) is
//!   written once against it.
//! - `sqlite`: the embedded backend (WAL mode, one writer, a pool of readers).
//! - `postgres`: the shared backend, for several instances over one database.
//! - `schema` (and `postgres`'s own list): the migrations, applied automatically at open.
//! - `codec`: zstd compression of event chunks, one context per thread.
//! - [`import`]: WeChat answers (a file, an admin upload) into the statistics.
//! - [`ingest`]: event lines into the store, each rejected one named.
//! - [`bulk`]: `datacube ingest`'s external sort — events in any order, within a memory budget.
//! - `reset`: `POST /admin/reset` and the removal of an account with everything of it.
//! - `tls`: TLS to PostgreSQL, as libpq's `sslmode` and `sslrootcert` say.
//! - `records`: what the store keeps and answers (accounts, components, grants, tokens, write
//!   outcomes); `url`: database URLs that never show their password.
//! - `inner`: the blocking work behind [`Store`]'s methods.
//! - [`views`]: the statistics as SQL views (`wechat_<endpoint>`), created by the migrations.
//! - [`testing`]: databases for tests (an SQLite file, or a fresh PostgreSQL database).
//!
//! Writes run on tokio's blocking pool. On SQLite the reads of the serving hot path (a token,
//! [`Store::list_body`]: one indexed read each) run inline on the caller's thread; on
//! PostgreSQL, which answers over the network, on the blocking pool too.

mod accounts;
pub mod bulk;
mod codec;
mod components;
mod days;
mod db;
mod events;
pub mod import;
pub mod ingest;
mod inner;
pub mod load;
mod postgres;
mod records;
mod reset;
mod resident;
mod schema;
mod scope;
mod sqlite;
mod sync;
pub mod testing;
mod tls;
mod unreachable;
mod url;
pub mod views;

use std::sync::Arc;

use rustc_hash::FxHashSet;

use datacube_api::row::Row;
use datacube_api::Endpoint;
use jiff::civil::Date;

pub use db::record_waits;
pub use events::Batch;

/// When an answer is read: the last day it may show (`last_ready_day`) and yesterday (the
/// last day follower rows reach), both China time. Statistics pending for days up to `ready`
/// are recomputed before it is read ([`Store::list_body`]).
#[derive(Debug, Clone, Copy)]
pub struct Settle {
    pub ready: Date,
    pub yesterday: Date,
}

impl Settle {
    /// At `unix` seconds.
    pub fn at(unix: i64) -> Settle {
        Settle {
            ready: datacube_api::date::last_ready_day(unix),
            yesterday: datacube_api::date::add_days(datacube_api::date::china_date(unix), -1),
        }
    }
}
pub use postgres::set_pool_sizes;
pub use records::{
    AccountRecord, BulkOutcome, ComponentRecord, Grant, IngestOutcome, Issued, TokenKind,
    TokenRecord, TokenStatus, UpsertReport,
};
pub use resident::Resident;
pub use sync::SyncRun;
pub use url::{redacted, DatabaseUrl};

use crate::db::Db;
use crate::scope::Scope;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names no backend datacube has.
    #[error(
        "unsupported database URL {0:?}: use sqlite://PATH (for example sqlite://datacube.db) \
         or postgres://USER@HOST:PORT/DATABASE"
    )]
    UnsupportedUrl(String),
    /// The database could not be opened or migrated.
    #[error("cannot open database {url}: {}", describe(.cause.as_ref()))]
    Open {
        /// The URL, without its password.
        url: String,
        /// The cause (described whole in the message, with its own causes).
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database was made by a newer datacube.
    #[error("database schema version {found} is newer than this datacube understands ({known}); upgrade datacube")]
    TooNew {
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// An account with this appid exists already.
    #[error("account {0} already exists")]
    AccountExists(String),
    /// The account a write was for was removed (or removed and added again) meanwhile.
    #[error("account {0} was removed")]
    AccountGone(String),
    /// The appid is the other kind's: accounts and components never share one.
    #[error("{0} is {1}; an appid belongs to one account or one component")]
    AppidInUse(String, &'static str),
    /// A database operation failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A PostgreSQL operation failed: the server's own message when it sent one
    /// (`postgres::Error` alone says only "db error").
    #[error("database error: {}", postgres_message(.0))]
    Postgres(#[from] ::postgres::Error),
    /// Stored data could not be read back.
    #[error("corrupt data in the database: {0}")]
    Corrupt(String),
    /// A blocking task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(String),
    /// Reading a stream of events failed.
    #[error("reading events: {0}")]
    Read(String),
    /// Sorting a bulk load's events through temporary files failed (disk full, say).
    #[error("{0}")]
    Spill(String),
}

/// An error and its causes in one line; PostgreSQL's own message where there is one.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    if let Some(pg) = e.downcast_ref::<::postgres::Error>() {
        return postgres_message(pg);
    }
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// What PostgreSQL said: severity, SQLSTATE, message, detail and hint, or the client's error.
fn postgres_message(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                s.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = db.hint() {
                s.push_str(&format!("; hint: {hint}"));
            }
            s
        }
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Result alias.
pub type Result<T> = std::result::Result<T, StoreError>;

pub use components::CodeUse;

/// The database behind a [`Store`].
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(Box<postgres::Postgres>),
}

/// What a [`Store`] shares between its clones; its methods are the blocking work.
pub(crate) struct Inner {
    backend: Backend,
    /// The URL as given, for messages (without a password).
    url: String,
    /// Live message and reply tallies for [`Store::flush_pending`], by account (each taken
    /// with a write transaction of its account open).
    live: events::LiveShelf,
    /// The id index's deltas this process has read or written.
    ids: events::IdCache,
}

/// The storage handle: SQLite or PostgreSQL, cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.inner.url)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

impl Store {
    /// Opens (creating and migrating as needed) the database at `url`: `sqlite://PATH`,
    /// `sqlite:PATH` or `sqlite:///ABSOLUTE/PATH` for an SQLite file, or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (also `postgresql://`) for PostgreSQL.
    pub fn open(url: &str) -> Result<Store> {
        let backend = Self::backend(url).map_err(|e| match e {
            // Every error names the database, once and without its password.
            e @ (StoreError::Open { .. } | StoreError::UnsupportedUrl(_)) => e,
            other => StoreError::Open {
                url: redacted(url),
                cause: Box::new(other),
            },
        })?;
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                url: redacted(url),
                live: Default::default(),
                ids: Default::default(),
            }),
        })
    }

    /// The backend `url` names, opened and migrated.
    fn backend(url: &str) -> Result<Backend> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Backend::Postgres(Box::new(postgres::Postgres::open(url)?)));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .filter(|p| !p.is_empty())
            .ok_or_else(|| StoreError::UnsupportedUrl(redacted(url)))?;
        Ok(Backend::Sqlite(sqlite::Sqlite::open(path, url)?))
    }

    /// Runs blocking work on tokio's blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let s = self.clone();
        blocking(move || f(&s.inner)).await
    }

    /// A read: inline on SQLite (a local indexed read), on the blocking pool on PostgreSQL.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Db) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        match &self.inner.backend {
            Backend::Sqlite(s) => s.read(f),
            Backend::Postgres(_) => self.run(move |inner| inner.read(f)).await,
        }
    }

    /// Adds an account; fails with [`StoreError::AccountExists`] if the appid is taken.
    pub async fn add_account(&self, account: AccountRecord) -> Result<()> {
        self.run(move |s| {
            s.write(&Scope::account(&account.appid), |tx| {
                accounts::add_account(tx, &account, false)
            })
        })
        .await
    }

    /// Adds an account or replaces the secret and verification of an existing one.
    pub async fn put_account(&self, account: AccountRecord) -> Result<()> {
        self.run(move |s| {
            s.write(&Scope::account(&account.appid), |tx| {
                accounts::add_account(tx, &account, true)
            })
        })
        .await
    }

    /// Clears events, statistics, tokens, quotas, sync records and components' tickets and
    /// codes — what tests accumulate; with `accounts`, the accounts, components and grants
    /// too. Returns how many accounts had data cleared (their change is logged).
    pub async fn reset(&self, accounts: bool) -> Result<usize> {
        self.run(move |s| {
            s.write(&Scope::whole(), |tx| {
                let cleared = reset::reset(tx, accounts)?;
                // The live tallies counted events that are gone: cleared before the commit,
                // which no other write of the store can begin before, so that whatever uses
                // tallies after it starts them over (also one that took them before).
                s.live.clear();
                Ok(cleared)
            })
        })
        .await
    }

    /// Removes an account and everything of it; returns whether it existed.
    pub async fn remove_account(&self, appid: &str) -> Result<bool> {
        let appid = appid.to_owned();
        self.run(move |s| {
            let tallies = s.live.of(&appid);
            let mut live = db::locked(&tallies);
            let done = s.write(&Scope::account(&appid), |tx| {
                reset::remove_account(tx, &appid)
            });
            *live = Default::default();
            drop(live);
            s.live.forget(&appid);
            done
        })
        .await
    }

    /// Whether the database answers a query (readiness checks).
    pub async fn ping(&self) -> Result<()> {
        self.read(|db| db.int("SELECT 1", db::p![]).map(drop)).await
    }

    /// The account with this appid.
    pub async fn account(&self, appid: &str) -> Result<Option<AccountRecord>> {
        let appid = appid.to_owned();
        self.run(move |s| s.read(|db| accounts::account(db, &appid)))
            .await
    }

    /// Adds a component.
    pub async fn add_component(&self, c: ComponentRecord) -> Result<()> {
        self.run(move |s| {
            s.write(&Scope::account(&c.appid), |tx| {
                components::add_component(tx, &c)
            })
        })
        .await
    }

    /// Replaces `appid`'s secret hash by `new` if it is still `old`; returns whether it was.
    pub async fn upgrade_account_secret(&self, appid: &str, old: &str, new: &str) -> Result<bool> {
        let (appid, old, new) = (appid.to_owned(), old.to_owned(), new.to_owned());
        self.run(move |s| {
            s.write(&Scope::account(&appid), |tx| {
                accounts::replace_secret_hash(false, tx, &appid, &old, &new)
            })
        })
        .await
    }

    /// [`Store::upgrade_account_secret`] for a component.
    pub async fn upgrade_component_secret(
        &self,
        appid: &str,
        old: &str,
        new: &str,
    ) -> Result<bool> {
        let (appid, old, new) = (appid.to_owned(), old.to_owned(), new.to_owned());
        self.run(move |s| {
            s.write(&Scope::account(&appid), |tx| {
                accounts::replace_secret_hash(true, tx, &appid, &old, &new)
            })
        })
        .await
    }

    /// The component with this appid.
    pub async fn component(&self, appid: &str) -> Result<Option<ComponentRecord>> {
        let appid = appid.to_owned();
        self.run(move |s| s.read(|db| components::component(db, &appid)))
            .await
    }

    /// Every component, by appid.
    pub async fn components(&self) -> Result<Vec<ComponentRecord>> {
        self.run(|s| s.read(components::components)).await
    }

    /// Records a component_verify_ticket pushed at `now`.
    pub async fn add_ticket(&self, component: &str, ticket: &str, now: i64) -> Result<()> {
        let (c, t) = (component.to_owned(), ticket.to_owned());
        self.run(move |s| {
            s.write(&Scope::account(&c), |tx| {
                components::add_ticket(tx, &c, &t, now)
            })
        })
        .await
    }

    /// When `ticket` was pushed to `component`, if it was.
    pub async fn ticket_issued_at(&self, component: &str, ticket: &str) -> Result<Option<i64>> {
        let (c, t) = (component.to_owned(), ticket.to_owned());
        self.run(move |s| s.read(|db| components::ticket_issued_at(db, &c, &t)))
            .await
    }

    /// When the newest ticket of `component` was issued, if any.
    pub async fn latest_ticket_at(&self, component: &str) -> Result<Option<i64>> {
        let c = component.to_owned();
        self.run(move |s| s.read(|db| components::latest_ticket_at(db, &c)))
            .await
    }

    /// Stores a new component token (`authorizer`: None) or authorizer token, valid 7200 s.
    pub async fn issue_component_token(
        &self,
        component: &str,
        authorizer: Option<&str>,
        token: &str,
        now: i64,
    ) -> Result<()> {
        let (c, a, t) = (
            component.to_owned(),
            authorizer.map(str::to_owned),
            token.to_owned(),
        );
        self.run(move |s| {
            let scope = Scope::accounts([Some(c.as_str()), a.as_deref()].into_iter().flatten());
            s.write(&scope, |tx| match &a {
                None => components::issue_token(tx, &c, None, TokenKind::Component, &t, now),
                Some(a) => components::issue_token(tx, a, Some(&c), TokenKind::Authorizer, &t, now),
            })
        })
        .await
    }

    /// Stores a single-use code (`kind` "preauth" or "auth").
    pub async fn new_code(
        &self,
        code: &str,
        kind: &'static str,
        component: &str,
        authorizer: Option<&str>,
        expires_at: i64,
    ) -> Result<()> {
        let (code, c, a) = (
            code.to_owned(),
            component.to_owned(),
            authorizer.map(str::to_owned),
        );
        self.run(move |s| {
            let scope = Scope::accounts([Some(c.as_str()), a.as_deref()].into_iter().flatten());
            s.write(&scope, |tx| {
                components::new_code(tx, &code, kind, &c, a.as_deref(), expires_at)
            })
        })
        .await
    }

    /// Uses a code of `kind` issued to `component`.
    pub async fn use_code(
        &self,
        code: &str,
        kind: &'static str,
        component: &str,
        now: i64,
    ) -> Result<CodeUse> {
        let (code, c) = (code.to_owned(), component.to_owned());
        self.run(move |s| {
            s.write(&Scope::account(&c), |tx| {
                components::use_code(tx, &code, kind, &c, now)
            })
        })
        .await
    }

    /// Records (or replaces) a grant, if its authorizer is still the incarnation
    /// `incarnation` (or, without one, still exists; [`StoreError::AccountGone`]).
    pub async fn put_grant(&self, grant: Grant, incarnation: Option<i64>) -> Result<()> {
        self.run(move |s| {
            s.write(
                &Scope::accounts([grant.component.as_str(), grant.authorizer.as_str()]),
                |tx| components::put_grant(tx, &grant, incarnation),
            )
        })
        .await
    }

    /// `authorizer`'s grant to `component`, if it stands.
    pub async fn grant(&self, component: &str, authorizer: &str) -> Result<Option<Grant>> {
        let (c, a) = (component.to_owned(), authorizer.to_owned());
        self.run(move |s| s.read(|db| components::grant(db, &c, &a)))
            .await
    }

    /// Every grant to `component`, oldest first.
    pub async fn grants(&self, component: &str) -> Result<Vec<Grant>> {
        let c = component.to_owned();
        self.run(move |s| s.read(|db| components::grants(db, &c)))
            .await
    }

    /// Ends a grant and its tokens; whether there was one.
    pub async fn revoke_grant(&self, component: &str, authorizer: &str, now: i64) -> Result<bool> {
        let (c, a) = (component.to_owned(), authorizer.to_owned());
        self.run(move |s| {
            s.write(&Scope::accounts([c.as_str(), a.as_str()]), |tx| {
                components::revoke(tx, &c, &a, now)
            })
        })
        .await
    }

    /// Every account, by appid.
    pub async fn accounts(&self) -> Result<Vec<AccountRecord>> {
        self.run(|s| s.read(accounts::accounts)).await
    }

    /// `/cgi-bin/token`: stores `token` as the account's newest basic token, leaving the
    /// previous ones valid for the 5-minute hand-over, unless the daily quota is used up.
    /// The account `account` names, as the incarnation it is, must still be there
    /// ([`StoreError::AccountGone`]).
    pub async fn issue_basic_token(
        &self,
        account: &AccountRecord,
        token: String,
        now: i64,
        daily_quota: u32,
    ) -> Result<Issued> {
        let (appid, incarnation) = (account.appid.clone(), account.incarnation);
        self.run(move |s| {
            s.write(&Scope::account(&appid), |tx| {
                accounts::issue_basic_token(tx, (&appid, incarnation), token, now, daily_quota)
            })
        })
        .await
    }

    /// `/cgi-bin/stable_token`: the current stable token, or `candidate` as a new one when
    /// there is none, it is within 5 minutes of expiry, or a forced refresh is allowed.
    /// Fenced as [`Store::issue_basic_token`] is.
    pub async fn stable_token(
        &self,
        account: &AccountRecord,
        candidate: String,
        now: i64,
        force_refresh: bool,
    ) -> Result<Issued> {
        let (appid, incarnation) = (account.appid.clone(), account.incarnation);
        self.run(move |s| {
            s.write(&Scope::account(&appid), |tx| {
                accounts::stable_token(tx, (&appid, incarnation), candidate, now, force_refresh)
            })
        })
        .await
    }

    /// Looks a token up (one primary-key read).
    pub async fn token(&self, token: &str) -> Result<Option<TokenRecord>> {
        let token = token.to_owned();
        self.read(move |db| accounts::token(db, &token)).await
    }

    /// Takes one use of `api` by `appid` on China-time `day` if fewer than `limit` were taken;
    /// returns whether it was taken. Counted in the database, so every instance shares it.
    /// The account must still be there, as the incarnation `account` is
    /// ([`StoreError::AccountGone`]).
    pub async fn quota_take(
        &self,
        account: &AccountRecord,
        api: &str,
        day: Date,
        limit: u64,
    ) -> Result<bool> {
        let (appid, incarnation, api) =
            (account.appid.clone(), account.incarnation, api.to_owned());
        self.run(move |s| {
            s.write(&Scope::account(&appid), |tx| {
                accounts::quota_take(tx, (&appid, incarnation), &api, day, limit)
            })
        })
        .await
    }

    /// Mirrors one answer of `datacube sync`: the stored rows of `endpoint` dated in `window`
    /// are replaced by `rows` (canonical rows, as imports make them, in any order), and the
    /// window's days up to `final_through` are recorded as final — in one transaction. The
    /// account must exist — as the incarnation `fence`, when given ([`StoreError::AccountGone`]).
    /// Returns how many of `rows` were not stored so before (new or changed).
    pub async fn mirror_window(
        &self,
        appid: &str,
        endpoint: Endpoint,
        window: (Date, Date),
        mut rows: Vec<Row>,
        final_through: Option<Date>,
        fence: Option<i64>,
    ) -> Result<u64> {
        let appid = appid.to_owned();
        self.run(move |s| {
            days::sort_rows(&mut rows);
            let days = days::prepare_days(&rows, window)?;
            s.write(&Scope::account(&appid), |tx| {
                accounts::fence(tx, &appid, fence)?;
                let changed = days::replace_counting(tx, &appid, endpoint, window, days)?;
                if let Some(last) = final_through.filter(|l| *l >= window.0) {
                    sync::mark_final(tx, &appid, endpoint, (window.0, last.min(window.1)))?;
                }
                accounts::bump_change(tx, &appid)?;
                Ok(changed)
            })
        })
        .await
    }

    /// Records the last ready day of an emulated clock for the SQL views (`docs/sql.md`), so
    /// that they answer up to it as the API does; `None` (a real clock): the database
    /// server's own clock.
    pub async fn set_view_clock(&self, last_ready: Option<Date>) -> Result<()> {
        self.run(move |s| {
            s.write(&Scope::named("view-clock"), |tx| {
                match last_ready {
                    Some(day) => tx.exec(
                        "INSERT INTO view_clock (id, last_ready) VALUES (1, ?1)
                         ON CONFLICT (id) DO UPDATE SET last_ready = excluded.last_ready",
                        db::p![&datacube_api::date::format_date(day)],
                    ),
                    None => tx.exec("DELETE FROM view_clock", db::p![]),
                }
                .map(|_| ())
            })
        })
        .await
    }

    /// The ranges of days of `endpoint` that `datacube sync` mirrored as final, merged.
    pub async fn final_ranges(&self, appid: &str, endpoint: Endpoint) -> Result<Vec<(Date, Date)>> {
        let appid = appid.to_owned();
        self.read(move |db| sync::final_ranges(db, &appid, endpoint))
            .await
    }

    /// Records the start of a run of `datacube sync`: its id, or `None` when a run with this
    /// `(mirror, slot, attempt)` was already taken (by another instance on the database).
    pub async fn start_sync_run(
        &self,
        mirror: &str,
        slot: Option<&str>,
        attempt: i64,
        started: i64,
    ) -> Result<Option<i64>> {
        let (mirror, slot) = (mirror.to_owned(), slot.map(str::to_owned));
        self.run(move |s| {
            s.write(&Scope::mirror(&mirror), |tx| {
                sync::start_run(tx, &mirror, slot.as_deref(), attempt, started)
            })
        })
        .await
    }

    /// [`Store::start_sync_run`] of a run asked for (a daemon's `slot`, `attempt`), refused
    /// (`None`) when a run of `mirror` is under way — a sign of life within `stale` seconds —
    /// or one of `slot` started within `at_once` seconds: checked in the claim's own
    /// transaction, so that of requests made at once on several instances, one runs.
    pub async fn start_sync_run_unless_busy(
        &self,
        (mirror, slot, attempt): (&str, &str, i64),
        started: i64,
        (stale, at_once): (i64, i64),
    ) -> Result<Option<i64>> {
        let (mirror, slot) = (mirror.to_owned(), slot.to_owned());
        self.run(move |s| {
            s.write(&Scope::mirror(&mirror), |tx| {
                sync::start_run_unless_busy(
                    tx,
                    (&mirror, &slot, attempt),
                    started,
                    (stale, at_once),
                )
            })
        })
        .await
    }

    /// A sign of life of run `id` at `now` (Unix seconds).
    pub async fn beat_sync_run(&self, id: i64, now: i64) -> Result<()> {
        self.run(move |s| s.write(&Scope::own_rows(), |tx| sync::beat_run(tx, id, now)))
            .await
    }

    /// The newest attempt of `mirror`'s run for `slot` (a China day), if any.
    pub async fn sync_slot_run(&self, mirror: &str, slot: &str) -> Result<Option<SyncRun>> {
        let (mirror, slot) = (mirror.to_owned(), slot.to_owned());
        self.read(move |db| sync::slot_run(db, &mirror, &slot))
            .await
    }

    /// Records how run `id` ended, with its report (JSON).
    pub async fn finish_sync_run(
        &self,
        id: i64,
        finished: i64,
        outcome: &str,
        report: String,
    ) -> Result<()> {
        let outcome = outcome.to_owned();
        self.run(move |s| {
            s.write(&Scope::own_rows(), |tx| {
                sync::finish_run(tx, id, finished, &outcome, &report)
            })
        })
        .await
    }

    /// The newest `limit` runs of `datacube sync` (of one mirror, or of all), newest first.
    pub async fn sync_runs(&self, mirror: Option<&str>, limit: u32) -> Result<Vec<SyncRun>> {
        let mirror = mirror.map(str::to_owned);
        self.read(move |db| sync::runs(db, mirror.as_deref(), i64::from(limit)))
            .await
    }

    /// Upserts rows of one endpoint for one account, all or nothing.
    ///
    /// With `fence`, the account must still be that incarnation ([`StoreError::AccountGone`]);
    /// without, the rows are stored whether or not the account exists (yet).
    pub async fn upsert_rows(
        &self,
        appid: &str,
        endpoint: Endpoint,
        rows: Vec<Row>,
        fence: Option<i64>,
    ) -> Result<UpsertReport> {
        let appid = appid.to_owned();
        self.run(move |s| {
            s.write(&Scope::account(&appid), |tx| {
                if fence.is_some() {
                    accounts::fence(tx, &appid, fence)?;
                }
                let report = days::upsert(tx, &appid, endpoint, &rows)?;
                if report.inserted + report.updated > 0 {
                    accounts::bump_change(tx, &appid)?;
                }
                Ok(report)
            })
        })
        .await
    }

    /// Stores a batch of events and recomputes the statistics they touch, in one transaction:
    /// when this returns, the events are durable and counted exactly once. `yesterday` (China
    /// time) is the last day every account's daily rows reach.
    pub async fn ingest(
        &self,
        events: Vec<datacube_engine::Event>,
        yesterday: Date,
    ) -> Result<IngestOutcome> {
        self.run(move |s| s.ingest(Batch::prepare(events)?, yesterday))
            .await
    }

    /// [`Store::ingest`] of a batch prepared beforehand ([`Batch::prepare`], which is pure
    /// work and can run on any thread while the store writes the previous batch).
    pub async fn ingest_batch(&self, batch: Batch, yesterday: Date) -> Result<IngestOutcome> {
        self.run(move |s| s.ingest(batch, yesterday)).await
    }

    /// Stores the events of a bulk load, sorted by a [`bulk::Sorter`], in batches of about
    /// `batch` events: each account's statistics are computed once, after its last event is
    /// stored, whatever the order the events came in. Each batch is one transaction; an
    /// account whose events take several batches has its periods marked pending in the same
    /// transactions, so that a load cut short leaves nothing stale: the next bulk load, or
    /// `serve`, recomputes them. `progress` is told how many events were stored so far.
    ///
    /// The events of an account are stored only while it is the incarnation `fence` names
    /// (an account it does not name must exist): an account removed during the load gets
    /// nothing more ([`BulkOutcome::gone`]).
    pub async fn ingest_sorted(
        &self,
        sorted: bulk::Sorted,
        fence: std::collections::HashMap<String, i64>,
        yesterday: Date,
        batch: usize,
        progress: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<BulkOutcome> {
        self.run(move |s| s.ingest_sorted(sorted, &fence, yesterday, batch, &progress))
            .await
    }

    /// Stores events now and their statistics later: the periods they touch are marked, in the
    /// same transaction, and recomputed by [`Store::flush_pending`]. For recording a live
    /// stream in small batches, where recomputing the current day at every batch would cost
    /// the square of the day's events. Events are durable and counted exactly once either way.
    pub async fn ingest_deferred(
        &self,
        events: Vec<datacube_engine::Event>,
    ) -> Result<IngestOutcome> {
        self.run(move |s| s.ingest_deferred(Batch::prepare(events)?, false))
            .await
    }

    /// Stores a batch of live events (`POST /admin/events`): the events at once, durable and
    /// counted exactly once when this returns, their statistics pending — recomputed when
    /// they can first be read: before an answer that may show them ([`Store::list_body`] with
    /// a [`Settle`]), or by [`Store::flush_readable`] as days become readable. What a batch costs is what it holds, not the account's history. Each account
    /// that stored events is in the change log at once.
    pub async fn ingest_live(&self, batch: Batch) -> Result<IngestOutcome> {
        self.run(move |s| s.ingest_deferred(batch, true)).await
    }

    /// [`Store::ingest_deferred`] of events handed over in parts (joined on the blocking
    /// thread, not the caller's), stored only for the accounts still the incarnations `fence`
    /// names ([`Batch::fenced`]).
    pub async fn ingest_deferred_parts(
        &self,
        parts: Vec<Vec<datacube_engine::Event>>,
        fence: Vec<(String, i64)>,
    ) -> Result<IngestOutcome> {
        self.run(move |s| {
            let events = parts.into_iter().flatten().collect();
            s.ingest_deferred(Batch::prepare(events)?.fenced(fence), false)
        })
        .await
    }

    /// Recomputes the statistics of every period marked by [`Store::ingest_deferred`];
    /// returns how many accounts.
    pub async fn flush_pending(&self, yesterday: Date) -> Result<usize> {
        self.run(move |s| s.flush_pending(yesterday, events::Due::All))
            .await
    }

    /// Recomputes the pending periods of every account with one on or before `ready`: what
    /// answers up to `ready` may show (later days only — today's — wait). Returns how many
    /// accounts.
    pub async fn flush_readable(&self, ready: Date, yesterday: Date) -> Result<usize> {
        self.run(move |s| s.flush_pending(yesterday, events::Due::Through(ready)))
            .await
    }

    /// Recomputes what is pending of `appid` and may show in an answer by `settle.ready`
    /// (what [`Store::list_body`] does before reading). Returns whether anything was.
    pub async fn settle(&self, appid: &str, settle: Settle) -> Result<bool> {
        let appid = appid.to_owned();
        self.run(move |s| s.settle(&appid, settle)).await
    }

    /// Extends the daily follower rows of every account with events up to `yesterday` (China
    /// time), so that quiet days have rows too (getusersummary's `user_source` 0 row and
    /// getusercumulate are there every day, as on WeChat). Returns how many accounts were
    /// extended; their change is logged, so servers drop their cached answers.
    pub async fn carry_forward(&self, yesterday: Date) -> Result<usize> {
        self.run(move |s| s.carry_forward(yesterday)).await
    }

    /// Accounts whose statistics changed after change number `seq`, with their latest change
    /// number and the incarnation the account is now (`None`: removed), oldest first (one
    /// indexed read). A removal is a change.
    pub async fn changes_since(&self, seq: i64) -> Result<Vec<(String, i64, Option<i64>)>> {
        self.read(move |db| accounts::changes_since(db, seq)).await
    }

    /// The stored rows of `endpoint` for `appid` with `ref_date` in `[begin, end]`,
    /// comma-separated, in WeChat's order (date, hour, key), and how many.
    pub async fn list_rows(
        &self,
        appid: &str,
        endpoint: Endpoint,
        begin: Date,
        end: Date,
    ) -> Result<(String, usize)> {
        let appid = appid.to_owned();
        self.read(move |db| {
            let mut out = String::new();
            let n = days::list_into(db, &appid, endpoint, begin, end, &mut out)?;
            Ok((out, n))
        })
        .await
    }

    /// The success body `{"list":[…]}` for a range (see [`Store::list_rows`]), with the quiet
    /// days after what is stored of an account with events (getusersummary, getusercumulate:
    /// days past `days::QUIET_STORED` after its last event are not stored). `end` must be at
    /// most the last ready day. With `settle`, the statistics of live events still pending
    /// that may show by `settle.ready` are recomputed first, so that the answer reflects every
    /// event accepted before it ([`Store::ingest_live`]). The rows are read in one snapshot;
    /// on SQLite inline (a local indexed read) unless something must be recomputed first.
    pub async fn list_body(
        &self,
        appid: &str,
        endpoint: Endpoint,
        (begin, end): (Date, Date),
        settle: Option<Settle>,
    ) -> Result<String> {
        if let Backend::Sqlite(_) = &self.inner.backend {
            if let Some(body) = self
                .inner
                .settled_body(appid, endpoint, (begin, end), settle)?
            {
                return Ok(body);
            }
        }
        let appid = appid.to_owned();
        self.run(move |s| s.list_body(&appid, endpoint, (begin, end), settle))
            .await
    }

    /// `endpoint`'s statistics of `appid` as stored now, read in one snapshot, to answer
    /// ranges from memory ([`Resident::body`] answers as [`Store::list_body`] does).
    pub async fn resident(&self, appid: &str, endpoint: Endpoint) -> Result<Resident> {
        let appid = appid.to_owned();
        self.run(move |s| s.snapshot(|db| Resident::load(db, &appid, endpoint)))
            .await
    }
}

#[cfg(test)]
mod tests {
    /// A database made by a newer datacube is refused, the database named.
    #[test]
    fn a_newer_schema_is_refused_naming_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("newer.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 999")
            .unwrap();
        let url = format!("sqlite://{}", path.display());
        let Err(e) = super::Store::open(&url) else {
            panic!("opened a database of schema version 999");
        };
        let message = e.to_string();
        assert!(
            message.starts_with(&format!("cannot open database {url}: ")),
            "{message}"
        );
        assert!(message.contains("version 999 is newer"), "{message}");
    }

    #[test]
    fn passwords_are_left_out_of_urls_in_messages() {
        assert_eq!(
            super::redacted("postgres://dc:s3cret@db:5432/datacube"),
            "postgres://dc:***@db:5432/datacube"
        );
        assert_eq!(super::redacted("postgres://dc@db/x"), "postgres://dc@db/x");
        assert_eq!(super::redacted("sqlite://a@b.db"), "sqlite://a@b.db");
        assert_eq!(
            super::redacted("postgres://dc@db/x?sslmode=require&password=hunter2"),
            "postgres://dc@db/x?sslmode=require&password=***"
        );
        assert_eq!(
            super::redacted("postgres://dc:p%40ss@db/x?PassWord=a&sslpassword=b"),
            "postgres://dc:***@db/x?PassWord=***&sslpassword=***"
        );
        assert_eq!(
            super::redacted("host=db password='a b\\' c' dbname=x user=u"),
            "host=db password=*** dbname=x user=u"
        );
        assert_eq!(
            super::redacted("host=db password=hunter2"),
            "host=db password=***"
        );
        // Every form the driver reads a password from.
        for (url, secret) in [
            ("postgres://u:Hunter?2secret@h/db", "2secret"),
            ("postgres://u:Hunter#2secret@h/db", "2secret"),
            (
                "postgres://u:p@ss/word@h:5432/db?sslmode=require",
                "ss/word",
            ),
            ("postgresql://u:a%3Fb%40c@h/db", "a%3Fb"),
            ("postgres://u@h/db?pass%77ord=Hunter2", "Hunter2"),
            ("postgres://u@h/db?PASSWORD=Hunter2&x=1", "Hunter2"),
            ("postgres://u@h/db?ssl%70assword=Hunter2", "Hunter2"),
            ("host=h password = Hunter2 dbname=d", "Hunter2"),
            ("host=h password= 'Hunter 2' dbname=d", "Hunter"),
            ("host=h password=Hun\\ ter2 dbname=d", "ter2"),
        ] {
            let shown = super::redacted(url);
            assert!(!shown.contains(secret), "{url} → {shown}");
        }
        assert_eq!(
            super::redacted("postgres://u:Hunter?2secret@h/db?sslmode=require"),
            "postgres://u:***@h/db?sslmode=require"
        );
        // An `@` in a parameter's value is not the userinfo's.
        assert_eq!(
            super::redacted("postgres://app@db/stats?password=Hunter2&application_name=svc@prod"),
            "postgres://app@db/stats?password=***&application_name=svc@prod"
        );
        assert_eq!(
            super::redacted("postgres://u:p@h?application_name=a@b&sslmode=require"),
            "postgres://u:***@h?application_name=a@b&sslmode=require"
        );
        assert_eq!(
            crate::url::split_query(
                "postgres://u:p@h/db?sslmode=require&application_name=ops@corp"
            ),
            (
                "postgres://u:p@h/db",
                Some("sslmode=require&application_name=ops@corp")
            )
        );
        assert_eq!(
            crate::url::split_query("postgres://u:Hunter?2secret@h/db?sslmode=require"),
            ("postgres://u:Hunter?2secret@h/db", Some("sslmode=require"))
        );
        assert_eq!(
            crate::url::split_query("postgres://h/db?sslmode=require"),
            ("postgres://h/db", Some("sslmode=require"))
        );
        assert_eq!(
            super::redacted("host=h password = 'a b' dbname=d"),
            "host=h password=*** dbname=d"
        );
        let url: super::DatabaseUrl = "postgres://u:hunter2@h/db".parse().unwrap();
        assert_eq!(
            format!("{url} {url:?}"),
            "postgres://u:***@h/db DatabaseUrl(postgres://u:***@h/db)"
        );
        assert_eq!(url.expose(), "postgres://u:hunter2@h/db");
    }
}
