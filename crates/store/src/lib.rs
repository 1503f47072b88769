//! datacube's storage: accounts, access tokens, quotas and statistics rows.
//!
//! # Layout
//! - [`Store`]: the handle every other crate uses; cheap to clone. Open one with
//!   [`Store::open`] and a database URL (`sqlite://datacube.db`).
//! - `sqlite`: the embedded SQLite backend (WAL mode, one writer, a pool of readers).
//! - `schema`: the migrations, applied automatically when a database is opened.
//!
//! Writes run on tokio's blocking pool. The read on the serving hot path,
//! [`Store::list_body`], is one indexed range scan and runs inline on the caller's thread.

mod codec;
mod days;
mod events;
mod schema;
mod sqlite;
mod sync;

use datacube_api::row::Row;
use datacube_api::Endpoint;
use jiff::civil::Date;

pub use events::Batch;
pub use sqlite::SqliteStore;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL names no backend datacube has.
    #[error(
        "unsupported database URL {0:?}: use sqlite://PATH (for example sqlite://datacube.db)"
    )]
    UnsupportedUrl(String),
    /// The database could not be opened or migrated.
    #[error("cannot open database {url}: {source}")]
    Open {
        /// The URL as given.
        url: String,
        /// The cause.
        source: rusqlite::Error,
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
    /// A database operation failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Stored data could not be read back.
    #[error("corrupt data in the database: {0}")]
    Corrupt(String),
    /// A blocking task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, StoreError>;

/// An Official Account known to datacube. The secret is kept only as a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// `wx…`
    pub appid: String,
    /// PHC string of the secret's hash (argon2id).
    pub secret_hash: String,
    /// Unverified accounts get 48001 from every datacube endpoint.
    pub verified: bool,
    /// Unix seconds (emulated clock).
    pub created_at: i64,
}

/// Which API issued a token; the two families are isolated from each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// `GET /cgi-bin/token`: every call issues a new token.
    Basic,
    /// `POST /cgi-bin/stable_token`: the same token until 5 minutes before expiry.
    Stable,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Basic => "basic",
            TokenKind::Stable => "stable",
        }
    }
    fn parse(s: &str) -> TokenKind {
        if s == "stable" {
            TokenKind::Stable
        } else {
            TokenKind::Basic
        }
    }
}

/// A stored access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token string.
    pub token: String,
    /// Whose it is.
    pub appid: String,
    /// Which API issued it.
    pub kind: TokenKind,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds; from then on the token answers 42001.
    pub expires_at: i64,
    /// Unix seconds; from then on the token answers 40001 (superseded or force-refreshed).
    pub invalid_after: Option<i64>,
}

/// What a token is worth at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    /// Usable.
    Valid,
    /// Replaced by a newer token and past the hand-over: 40001.
    Superseded,
    /// Past its lifetime: 42001.
    Expired,
}

impl TokenRecord {
    /// The token's status at `now`.
    pub fn status(&self, now: i64) -> TokenStatus {
        if self.invalid_after.is_some_and(|t| now >= t) {
            TokenStatus::Superseded
        } else if now >= self.expires_at {
            TokenStatus::Expired
        } else {
            TokenStatus::Valid
        }
    }
}

/// The answer of a token API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issued {
    /// A token and its remaining lifetime in seconds.
    Token {
        /// The token.
        token: String,
        /// `expires_in`.
        expires_in: i64,
    },
    /// The daily quota is used up: 45009.
    QuotaExceeded,
}

/// How an import changed the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertReport {
    /// Rows whose key was new.
    pub inserted: usize,
    /// Rows that replaced a different row with the same key.
    pub updated: usize,
    /// Rows identical to the stored ones.
    pub unchanged: usize,
}

/// What ingesting a batch of events did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// For each event of the batch, in order: `true` if accepted, `false` if its id had been
    /// accepted before (a duplicate).
    pub accepted: Vec<bool>,
}

/// The storage handle. One variant per backend; PostgreSQL comes next to SQLite.
#[derive(Clone)]
pub enum Store {
    /// The embedded default.
    Sqlite(SqliteStore),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Sqlite(s) => write!(f, "Store::Sqlite({})", s.path().display()),
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

impl Store {
    /// Opens (creating and migrating as needed) the database at `url`:
    /// `sqlite://PATH`, `sqlite:PATH` or `sqlite:///ABSOLUTE/PATH`.
    pub fn open(url: &str) -> Result<Store> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .filter(|p| !p.is_empty())
            .ok_or_else(|| StoreError::UnsupportedUrl(url.to_owned()))?;
        Ok(Store::Sqlite(SqliteStore::open(path, url)?))
    }

    /// Adds an account; fails with [`StoreError::AccountExists`] if the appid is taken.
    pub async fn add_account(&self, account: AccountRecord) -> Result<()> {
        match self {
            Store::Sqlite(s) => {
                let s = s.clone();
                blocking(move || s.add_account(&account, false)).await
            }
        }
    }

    /// Adds an account or replaces the secret and verification of an existing one.
    pub async fn put_account(&self, account: AccountRecord) -> Result<()> {
        match self {
            Store::Sqlite(s) => {
                let s = s.clone();
                blocking(move || s.add_account(&account, true)).await
            }
        }
    }

    /// The account with this appid.
    pub async fn account(&self, appid: &str) -> Result<Option<AccountRecord>> {
        match self {
            Store::Sqlite(s) => {
                let (s, appid) = (s.clone(), appid.to_owned());
                blocking(move || s.account(&appid)).await
            }
        }
    }

    /// Every account, by appid.
    pub async fn accounts(&self) -> Result<Vec<AccountRecord>> {
        match self {
            Store::Sqlite(s) => {
                let s = s.clone();
                blocking(move || s.accounts()).await
            }
        }
    }

    /// `/cgi-bin/token`: stores `token` as the account's newest basic token, leaving the
    /// previous ones valid for the 5-minute hand-over, unless the daily quota is used up.
    pub async fn issue_basic_token(
        &self,
        appid: &str,
        token: String,
        now: i64,
        daily_quota: u32,
    ) -> Result<Issued> {
        match self {
            Store::Sqlite(s) => {
                let (s, appid) = (s.clone(), appid.to_owned());
                blocking(move || s.issue_basic_token(&appid, token, now, daily_quota)).await
            }
        }
    }

    /// `/cgi-bin/stable_token`: the current stable token, or `candidate` as a new one when
    /// there is none, it is within 5 minutes of expiry, or a forced refresh is allowed.
    pub async fn stable_token(
        &self,
        appid: &str,
        candidate: String,
        now: i64,
        force_refresh: bool,
    ) -> Result<Issued> {
        match self {
            Store::Sqlite(s) => {
                let (s, appid) = (s.clone(), appid.to_owned());
                blocking(move || s.stable_token(&appid, candidate, now, force_refresh)).await
            }
        }
    }

    /// Looks a token up (inline: one primary-key read).
    pub fn token(&self, token: &str) -> Result<Option<TokenRecord>> {
        match self {
            Store::Sqlite(s) => s.token(token),
        }
    }

    /// Takes one use of `api` by `appid` on China-time `day` if fewer than `limit` were taken;
    /// returns whether it was taken. Counted in the database, so every instance shares it.
    pub async fn quota_take(&self, appid: &str, api: &str, day: Date, limit: u64) -> Result<bool> {
        match self {
            Store::Sqlite(s) => {
                let (s, appid, api) = (s.clone(), appid.to_owned(), api.to_owned());
                blocking(move || s.quota_take(&appid, &api, day, limit)).await
            }
        }
    }

    /// Mirrors one answer of `datacube sync`: the stored rows of `endpoint` dated in `window`
    /// are replaced by `rows` (canonical rows, as imports make them), and the window's days up
    /// to `final_through` are recorded as final — in one transaction.
    pub async fn mirror_window(
        &self,
        appid: &str,
        endpoint: Endpoint,
        window: (Date, Date),
        rows: Vec<Row>,
        final_through: Option<Date>,
    ) -> Result<()> {
        let (s, appid) = (self.clone(), appid.to_owned());
        blocking(move || match &s {
            Store::Sqlite(s) => s.mirror_window(&appid, endpoint, window, &rows, final_through),
        })
        .await
    }

    /// The ranges of days of `endpoint` that `datacube sync` mirrored as final, merged.
    pub fn final_ranges(&self, appid: &str, endpoint: Endpoint) -> Result<Vec<(Date, Date)>> {
        match self {
            Store::Sqlite(s) => s.final_ranges(appid, endpoint),
        }
    }

    /// Upserts rows of one endpoint for one account, all or nothing.
    pub async fn upsert_rows(
        &self,
        appid: &str,
        endpoint: Endpoint,
        rows: Vec<Row>,
    ) -> Result<UpsertReport> {
        match self {
            Store::Sqlite(s) => {
                let (s, appid) = (s.clone(), appid.to_owned());
                blocking(move || s.upsert_rows(&appid, endpoint, &rows)).await
            }
        }
    }

    /// Stores a batch of events and recomputes the statistics they touch, in one transaction:
    /// when this returns, the events are durable and counted exactly once. `yesterday` (China
    /// time) is the last day every account's daily rows reach.
    pub async fn ingest(
        &self,
        events: Vec<datacube_engine::Event>,
        yesterday: Date,
    ) -> Result<IngestOutcome> {
        let s = self.clone();
        blocking(move || {
            let batch = Batch::prepare(events)?;
            s.ingest_batch_blocking(batch, yesterday)
        })
        .await
    }

    /// [`Store::ingest`] of a batch prepared beforehand ([`Batch::prepare`], which is pure
    /// work and can run on any thread while the store writes the previous batch).
    pub async fn ingest_batch(&self, batch: Batch, yesterday: Date) -> Result<IngestOutcome> {
        let s = self.clone();
        blocking(move || s.ingest_batch_blocking(batch, yesterday)).await
    }

    /// Stores events now and their statistics later: the periods they touch are marked, in the
    /// same transaction, and recomputed by [`Store::flush_pending`]. For recording a live
    /// stream in small batches, where recomputing the current day at every batch would cost
    /// the square of the day's events. Events are durable and counted exactly once either way.
    pub async fn ingest_deferred(
        &self,
        events: Vec<datacube_engine::Event>,
    ) -> Result<IngestOutcome> {
        let s = self.clone();
        blocking(move || {
            let batch = Batch::prepare(events)?;
            match &s {
                Store::Sqlite(s) => s.ingest_deferred(batch),
            }
        })
        .await
    }

    /// [`Store::ingest_deferred`] of events handed over in parts (joined on the blocking
    /// thread, not the caller's).
    pub async fn ingest_deferred_parts(
        &self,
        parts: Vec<Vec<datacube_engine::Event>>,
    ) -> Result<IngestOutcome> {
        let s = self.clone();
        blocking(move || {
            let batch = Batch::prepare(parts.into_iter().flatten().collect())?;
            match &s {
                Store::Sqlite(s) => s.ingest_deferred(batch),
            }
        })
        .await
    }

    /// Recomputes the statistics of every period marked by [`Store::ingest_deferred`];
    /// returns how many accounts.
    pub async fn flush_pending(&self, yesterday: Date) -> Result<usize> {
        let s = self.clone();
        blocking(move || match &s {
            Store::Sqlite(s) => s.flush_pending(yesterday),
        })
        .await
    }

    fn ingest_batch_blocking(&self, batch: Batch, yesterday: Date) -> Result<IngestOutcome> {
        match self {
            Store::Sqlite(s) => s.ingest(batch, yesterday),
        }
    }

    /// Extends the daily follower rows of every account with events up to `yesterday` (China
    /// time), so that quiet days have rows too (getusersummary's `user_source` 0 row and
    /// getusercumulate are there every day, as on WeChat). Returns how many accounts were
    /// extended; their change is logged, so servers drop their cached answers.
    pub async fn carry_forward(&self, yesterday: Date) -> Result<usize> {
        let s = self.clone();
        blocking(move || match &s {
            Store::Sqlite(s) => s.carry_forward(yesterday),
        })
        .await
    }

    /// Accounts whose statistics changed after change number `seq`, with their latest change
    /// number, oldest first (inline: one indexed read).
    pub fn changes_since(&self, seq: i64) -> Result<Vec<(String, i64)>> {
        match self {
            Store::Sqlite(s) => s.changes_since(seq),
        }
    }

    /// Appends the stored rows of `endpoint` for `appid` with `ref_date` in `[begin, end]`,
    /// comma-separated, in WeChat's order (date, hour, key), to `out`; returns how many.
    pub fn list_rows_into(
        &self,
        appid: &str,
        endpoint: Endpoint,
        begin: Date,
        end: Date,
        out: &mut String,
    ) -> Result<usize> {
        match self {
            Store::Sqlite(s) => s.list_rows_into(appid, endpoint, begin, end, out),
        }
    }

    /// The success body `{"list":[…]}` for a range (see [`Store::list_rows_into`]).
    pub fn list_body(
        &self,
        appid: &str,
        endpoint: Endpoint,
        begin: Date,
        end: Date,
    ) -> Result<String> {
        let mut out = String::with_capacity(4096);
        out.push_str("{\"list\":[");
        self.list_rows_into(appid, endpoint, begin, end, &mut out)?;
        out.push_str("]}");
        Ok(out)
    }
}
