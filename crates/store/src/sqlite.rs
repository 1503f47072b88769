//! The SQLite backend: WAL mode, one writer connection, a small pool of reader connections.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::events::Batch;
use datacube_api::date::{china_date, format_date};
use datacube_api::row::Row;
use datacube_api::token::{
    LIFETIME_SECONDS, OVERLAP_SECONDS, STABLE_DAILY_QUOTA, STABLE_FORCE_REFRESH_DAILY,
    STABLE_FORCE_REFRESH_INTERVAL_SECONDS,
};
use datacube_api::Endpoint;
use jiff::civil::Date;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::schema::MIGRATIONS;
use crate::{
    AccountRecord, IngestOutcome, Issued, Result, StoreError, TokenKind, TokenRecord, UpsertReport,
};

/// Reader connections kept for reuse; more are opened under load and closed afterwards.
const READER_POOL: usize = 16;

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Live message and reply tallies for [`SqliteStore::flush_pending`] (taken with the
    /// writer held).
    live: Mutex<crate::events::LiveTallies>,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Reads through the page cache's mapping instead of a read() per page.
    conn.pragma_update(None, "mmap_size", 1i64 << 30)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

impl SqliteStore {
    /// Opens or creates the file at `path` and brings its schema up to date.
    pub fn open(path: &str, url: &str) -> Result<SqliteStore> {
        let open_err = |source| StoreError::Open {
            url: url.to_owned(),
            source,
        };
        let writer = Connection::open(path).map_err(open_err)?;
        // WAL: readers never wait for the writer, and a commit is durable once it returns.
        let mode: String = writer
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "SQLite did not switch to WAL mode");
        }
        configure(&writer).map_err(open_err)?;
        migrate(&writer, url)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: PathBuf::from(path),
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                live: Mutex::new(Default::default()),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.inner.readers.lock().expect("reader pool").pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open(&self.inner.path)?;
                configure(&c)?;
                c
            }
        };
        let out = f(&conn);
        let mut pool = self.inner.readers.lock().expect("reader pool");
        if pool.len() < READER_POOL {
            pool.push(conn);
        }
        out
    }

    fn with_writer<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut conn)
    }

    pub(crate) fn add_account(&self, a: &AccountRecord, replace: bool) -> Result<()> {
        self.with_writer(|conn| {
            let sql = if replace {
                "INSERT INTO account (appid, secret_hash, verified, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (appid) DO UPDATE SET secret_hash = excluded.secret_hash,
                                                   verified = excluded.verified"
            } else {
                "INSERT INTO account (appid, secret_hash, verified, created_at) VALUES (?1, ?2, ?3, ?4)"
            };
            match conn.execute(sql, params![a.appid, a.secret_hash, a.verified, a.created_at]) {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Err(StoreError::AccountExists(a.appid.clone()))
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    pub(crate) fn account(&self, appid: &str) -> Result<Option<AccountRecord>> {
        self.with_reader(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT appid, secret_hash, verified, created_at FROM account WHERE appid = ?1",
                )?
                .query_row([appid], account_from_row)
                .optional()?)
        })
    }

    pub(crate) fn accounts(&self) -> Result<Vec<AccountRecord>> {
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT appid, secret_hash, verified, created_at FROM account ORDER BY appid",
            )?;
            let rows = stmt.query_map([], account_from_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    pub(crate) fn token(&self, token: &str) -> Result<Option<TokenRecord>> {
        self.with_reader(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT token, appid, kind, issued_at, expires_at, invalid_after
                     FROM token WHERE token = ?1",
                )?
                .query_row([token], token_from_row)
                .optional()?)
        })
    }

    pub(crate) fn issue_basic_token(
        &self,
        appid: &str,
        token: String,
        now: i64,
        daily_quota: u32,
    ) -> Result<Issued> {
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let day = format_date(china_date(now));
            if quota_used(&tx, appid, "token", &day)? >= u64::from(daily_quota) {
                return Ok(Issued::QuotaExceeded);
            }
            quota_bump(&tx, appid, "token", &day, 1, now)?;
            // The previous tokens stay valid for the hand-over, then answer 40001.
            tx.execute(
                "UPDATE token SET invalid_after = ?3
                 WHERE appid = ?1 AND kind = 'basic' AND invalid_after IS NULL AND expires_at > ?2",
                params![appid, now, now + OVERLAP_SECONDS],
            )?;
            insert_token(&tx, &token, appid, TokenKind::Basic, now)?;
            tx.commit()?;
            Ok(Issued::Token {
                token,
                expires_in: LIFETIME_SECONDS,
            })
        })
    }

    pub(crate) fn stable_token(
        &self,
        appid: &str,
        candidate: String,
        now: i64,
        force_refresh: bool,
    ) -> Result<Issued> {
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let day = format_date(china_date(now));
            if quota_used(&tx, appid, "stable_token", &day)? >= u64::from(STABLE_DAILY_QUOTA) {
                return Ok(Issued::QuotaExceeded);
            }
            quota_bump(&tx, appid, "stable_token", &day, 1, now)?;
            let current: Option<TokenRecord> = tx
                .prepare_cached(
                    "SELECT token, appid, kind, issued_at, expires_at, invalid_after FROM token
                     WHERE appid = ?1 AND kind = 'stable' AND invalid_after IS NULL
                       AND expires_at > ?2
                     ORDER BY issued_at DESC, rowid DESC LIMIT 1",
                )?
                .query_row(params![appid, now], token_from_row)
                .optional()?;
            let reuse = |t: TokenRecord| Issued::Token {
                expires_in: t.expires_at - now,
                token: t.token,
            };
            let outcome = if force_refresh {
                let last_force: Option<i64> = tx
                    .query_row(
                        "SELECT MAX(last_at) FROM quota WHERE appid = ?1 AND api = 'stable_force'",
                        [appid],
                        |r| r.get(0),
                    )
                    .optional()?
                    .flatten();
                let too_soon =
                    last_force.is_some_and(|at| now - at < STABLE_FORCE_REFRESH_INTERVAL_SECONDS);
                match current {
                    // "否则不会刷新": too soon, the current token comes back unchanged.
                    Some(t) if too_soon => reuse(t),
                    _ if quota_used(&tx, appid, "stable_force", &day)?
                        >= u64::from(STABLE_FORCE_REFRESH_DAILY) =>
                    {
                        Issued::QuotaExceeded
                    }
                    _ => {
                        quota_bump(&tx, appid, "stable_force", &day, 1, now)?;
                        // A forced refresh invalidates the previous token at once.
                        tx.execute(
                            "UPDATE token SET invalid_after = ?2
                             WHERE appid = ?1 AND kind = 'stable' AND invalid_after IS NULL",
                            params![appid, now],
                        )?;
                        insert_token(&tx, &candidate, appid, TokenKind::Stable, now)?;
                        Issued::Token {
                            token: candidate,
                            expires_in: LIFETIME_SECONDS,
                        }
                    }
                }
            } else {
                match current {
                    Some(t) if now < t.expires_at - OVERLAP_SECONDS => reuse(t),
                    // None yet, or within its last 5 minutes: a new token. The old one keeps
                    // its own expiry, so both work during the hand-over.
                    _ => {
                        insert_token(&tx, &candidate, appid, TokenKind::Stable, now)?;
                        Issued::Token {
                            token: candidate,
                            expires_in: LIFETIME_SECONDS,
                        }
                    }
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
    }

    pub(crate) fn quota_take(&self, appid: &str, api: &str, day: Date, limit: u64) -> Result<bool> {
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let day = format_date(day);
            if quota_used(&tx, appid, api, &day)? >= limit {
                return Ok(false);
            }
            quota_bump(&tx, appid, api, &day, 1, 0)?;
            tx.commit()?;
            Ok(true)
        })
    }

    pub(crate) fn mirror_window(
        &self,
        appid: &str,
        endpoint: Endpoint,
        window: (Date, Date),
        rows: &[Row],
        final_through: Option<Date>,
    ) -> Result<()> {
        let days = crate::days::prepare_days(rows, window)?;
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            crate::days::replace(&tx, appid, endpoint, window, days)?;
            if let Some(last) = final_through.filter(|l| *l >= window.0) {
                crate::sync::mark_final(&tx, appid, endpoint, (window.0, last.min(window.1)))?;
            }
            bump_change(&tx, appid)?;
            tx.commit()?;
            Ok(())
        })
    }

    pub(crate) fn final_ranges(
        &self,
        appid: &str,
        endpoint: Endpoint,
    ) -> Result<Vec<(Date, Date)>> {
        self.with_reader(|conn| crate::sync::final_ranges(conn, appid, endpoint))
    }

    pub(crate) fn upsert_rows(
        &self,
        appid: &str,
        endpoint: Endpoint,
        rows: &[Row],
    ) -> Result<UpsertReport> {
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let report = crate::days::upsert(&tx, appid, endpoint, rows)?;
            if report.inserted + report.updated > 0 {
                bump_change(&tx, appid)?;
            }
            tx.commit()?;
            Ok(report)
        })
    }

    pub(crate) fn ingest(&self, mut batch: Batch, yesterday: Date) -> Result<IngestOutcome> {
        let accepted = self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let accepted = crate::events::store_batch(&tx, &mut batch, yesterday, |appid| {
                Ok(bump_change(&tx, appid)?)
            })?;
            tx.commit()?;
            Ok(accepted)
        })?;
        // Freeing a large batch's events takes a while: not on the writer's time.
        if batch.len() >= 10_000 {
            std::thread::spawn(move || drop(batch));
        }
        Ok(IngestOutcome { accepted })
    }

    pub(crate) fn ingest_deferred(&self, mut batch: Batch) -> Result<IngestOutcome> {
        let accepted = self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let accepted = crate::events::store_batch_deferred(&tx, &mut batch)?;
            tx.commit()?;
            Ok(accepted)
        })?;
        if batch.len() >= 10_000 {
            std::thread::spawn(move || drop(batch));
        }
        Ok(IngestOutcome { accepted })
    }

    /// How many times the live tallies were built from the stored events.
    #[cfg(test)]
    pub(crate) fn live_rebuilds(&self) -> u64 {
        self.inner.live.lock().map_or(0, |l| l.rebuilds)
    }

    pub(crate) fn flush_pending(&self, yesterday: Date) -> Result<usize> {
        // Usually nothing is pending: look before taking the write lock.
        let any: bool = self.with_reader(|conn| {
            Ok(conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM stat_pending)")?
                .query_row([], |r| r.get(0))?)
        })?;
        if !any {
            return Ok(0);
        }
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut live = self
                .inner
                .live
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let done = crate::events::flush_pending(&tx, yesterday, &mut live, |appid| {
                Ok(bump_change(&tx, appid)?)
            })
            .and_then(|n| Ok(tx.commit().map(|()| n)?));
            if done.is_err() {
                // The tallies may count what the rolled-back transaction merged: start over.
                *live = Default::default();
            }
            done
        })
    }

    pub(crate) fn carry_forward(&self, yesterday: Date) -> Result<usize> {
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n =
                crate::events::carry_forward(&tx, yesterday, |appid| Ok(bump_change(&tx, appid)?))?;
            tx.commit()?;
            Ok(n)
        })
    }

    pub(crate) fn changes_since(&self, seq: i64) -> Result<Vec<(String, i64)>> {
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT appid, seq FROM stat_change WHERE seq > ?1 ORDER BY seq")?;
            let rows = stmt.query_map([seq], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    pub(crate) fn list_rows_into(
        &self,
        appid: &str,
        endpoint: Endpoint,
        begin: Date,
        end: Date,
        out: &mut String,
    ) -> Result<usize> {
        self.with_reader(|conn| crate::days::list_into(conn, appid, endpoint, begin, end, out))
    }
}

fn bump_change(tx: &rusqlite::Transaction<'_>, appid: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO stat_change (appid, seq)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM stat_change))
         ON CONFLICT (appid) DO UPDATE SET seq = excluded.seq",
    )?
    .execute([appid])?;
    Ok(())
}

fn migrate(conn: &Connection, url: &str) -> Result<()> {
    let known = MIGRATIONS.len() as i64;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > known {
        return Err(StoreError::TooNew {
            found: version,
            known,
        });
    }
    if version == known {
        return Ok(());
    }
    // All pending migrations in one transaction; the data moves of earlier layouts run after
    // the last schema change, so that they write in the current layout.
    let apply = || -> Result<()> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        for sql in &MIGRATIONS[version as usize..] {
            conn.execute_batch(sql)?;
        }
        if version < 4 {
            crate::events::move_v3_events(conn)?;
        }
        if version < 5 {
            crate::days::move_v4_rows(conn)?;
        }
        conn.pragma_update(None, "user_version", known)?;
        conn.execute_batch("COMMIT")?;
        Ok(())
    };
    if let Err(e) = apply() {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(match e {
            StoreError::Sqlite(source) => StoreError::Open {
                url: url.to_owned(),
                source,
            },
            other => other,
        });
    }
    tracing::info!(from = version, to = known, "database migrated");
    Ok(())
}

fn account_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRecord> {
    Ok(AccountRecord {
        appid: r.get(0)?,
        secret_hash: r.get(1)?,
        verified: r.get(2)?,
        created_at: r.get(3)?,
    })
}

fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        token: r.get(0)?,
        appid: r.get(1)?,
        kind: TokenKind::parse(r.get_ref(2)?.as_str()?),
        issued_at: r.get(3)?,
        expires_at: r.get(4)?,
        invalid_after: r.get(5)?,
    })
}

fn insert_token(
    tx: &rusqlite::Transaction<'_>,
    token: &str,
    appid: &str,
    kind: TokenKind,
    now: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO token (token, appid, kind, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        token,
        appid,
        kind.as_str(),
        now,
        now + LIFETIME_SECONDS
    ])?;
    Ok(())
}

fn quota_used(tx: &rusqlite::Transaction<'_>, appid: &str, api: &str, day: &str) -> Result<u64> {
    Ok(tx
        .prepare_cached("SELECT used FROM quota WHERE appid = ?1 AND api = ?2 AND day = ?3")?
        .query_row(params![appid, api, day], |r| r.get::<_, i64>(0))
        .optional()?
        .unwrap_or(0) as u64)
}

fn quota_bump(
    tx: &rusqlite::Transaction<'_>,
    appid: &str,
    api: &str,
    day: &str,
    n: u64,
    now: i64,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO quota (appid, api, day, used, last_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (appid, api, day) DO UPDATE SET used = used + excluded.used,
                                                     last_at = MAX(last_at, excluded.last_at)",
    )?
    .execute(params![appid, api, day, n as i64, now])?;
    Ok(())
}
