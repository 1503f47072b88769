//! The PostgreSQL backend: for several datacube instances over one database.
//!
//! Each process keeps a pool of writer connections and a pool of reader connections. A write
//! transaction first takes the advisory locks of its [`Scope`] — the accounts it writes — so
//! that writers of one account are serialized across every instance as SQLite serializes
//! them across processes, while writers of different accounts never wait for each other:
//! token hand-overs, quotas, de-duplication by event id rest on that, and the change numbers
//! servers follow are drawn at commit under a lock of their own (see `docs/postgres.md`).
//! Readers never wait for any of it.
//!
//! The `postgres` crate runs each connection on a small runtime of its own, so a connection is
//! only used, opened and dropped on threads that are not running async tasks (the store runs
//! its work on tokio's blocking pool).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use crate::db::{Db, PgClient, PgDb, Prepared};
use crate::scope::{Scope, CHANGES, GLOBAL, MIGRATE};
use crate::{schema, Result, StoreError};

/// The pools' sizes the process chose ([`set_pool_sizes`]); 0: the default.
static READERS: AtomicUsize = AtomicUsize::new(0);
static WRITERS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many reader and writer connections to PostgreSQL this process opens at most
/// (`None`: twice the CPUs, at least 2), before it opens a database: pools opened later keep
/// the sizes they were opened with.
pub fn set_pool_sizes(readers: Option<NonZeroUsize>, writers: Option<NonZeroUsize>) {
    READERS.store(readers.map_or(0, NonZeroUsize::get), Ordering::Relaxed);
    WRITERS.store(writers.map_or(0, NonZeroUsize::get), Ordering::Relaxed);
}

/// A pool's size: as set, else twice the CPUs, at least 2.
fn pool_max(set: &AtomicUsize) -> usize {
    match set.load(Ordering::Relaxed) {
        0 => 2 * std::thread::available_parallelism().map_or(2, NonZeroUsize::get),
        n => n,
    }
}

/// Reader connections a process opens at most (`--pg-readers`; by default twice the CPUs, at
/// least 2); a read waits for one beyond that. Opening a connection per read under a burst
/// costs PostgreSQL a process each time (serving 64 connections' cache misses, the p99 went
/// to 1.5 s), and more connections than the CPUs can serve only queue on them (two instances
/// on this 2-CPU machine: p99 0.3–0.6 s with 8 readers each, 30–44 ms with 4).
fn readers_max() -> usize {
    pool_max(&READERS)
}

/// Writer connections a process opens at most (`--pg-writers`, by default as many as
/// readers): writes of different accounts run side by side, each on its own connection, and
/// one waiting for an account's lock holds only its own.
fn writers_max() -> usize {
    pool_max(&WRITERS)
}

/// Migrations of the PostgreSQL schema; entry `i` takes it from version `i` to `i + 1`
/// (recorded in `datacube_schema`). Version 1 is the layout of SQLite's version 6; later ones
/// are SQLite's, in PostgreSQL's types ([`schema::for_postgres`]). Never edit an entry that
/// has shipped: add a new one.
fn pg_migrations() -> [std::borrow::Cow<'static, str>; 7] {
    [
        PG_LAYOUT_1.into(),
        schema::for_postgres(schema::COMPONENTS).into(),
        schema::for_postgres(schema::SYNC_RUNS).into(),
        schema::for_postgres(schema::INCARNATIONS).into(),
        schema::for_postgres(schema::STAT_VIEWS).into(),
        schema::for_postgres(schema::DELTA_STAMPS).into(),
        PG_APPID_KEYS.into(),
    ]
}

/// Version 7: `appid` first in the primary key of every table that holds an account's data,
/// so that the tables can be distributed by account (`docs/scaling.md`): the token table's
/// key was the token, the two logs' their sequence. A token is looked up by itself through an
/// index of its own (not unique: a distributed table's unique keys must hold the distribution
/// column; tokens are long random strings). The delta log's old index is the key now, with the
/// stamp included, so that listing an account's deltas still reads no delta.
const PG_APPID_KEYS: &str = r#"
    ALTER TABLE token DROP CONSTRAINT token_pkey;
    ALTER TABLE token ADD PRIMARY KEY (appid, token);
    CREATE INDEX token_by_token ON token (token);
    ALTER TABLE event_chunk DROP CONSTRAINT event_chunk_pkey;
    ALTER TABLE event_chunk ADD PRIMARY KEY (appid, seq);
    ALTER TABLE event_id_delta DROP CONSTRAINT event_id_delta_pkey;
    ALTER TABLE event_id_delta ADD PRIMARY KEY (appid, seq) INCLUDE (stamp);
    DROP INDEX event_id_delta_by_app;
    "#;

/// The PostgreSQL version from which the views exist (SQLite's [`schema::VIEWS_SINCE`]).
const VIEWS_SINCE: i64 = 5;

/// Version 1: everything, keyed by appid first but for the token and the two logs (version 7).
const PG_LAYOUT_1: &str = r#"
    CREATE TABLE account (
        appid        TEXT PRIMARY KEY,
        secret_hash  TEXT NOT NULL,
        verified     BIGINT NOT NULL,
        created_at   BIGINT NOT NULL
    );
    CREATE TABLE token (
        token         TEXT PRIMARY KEY,
        appid         TEXT NOT NULL,
        kind          TEXT NOT NULL,
        issued_at     BIGINT NOT NULL,
        expires_at    BIGINT NOT NULL,
        invalid_after BIGINT,
        rowid         BIGSERIAL NOT NULL
    );
    CREATE INDEX token_by_appid ON token (appid, kind, issued_at);
    CREATE TABLE quota (
        appid   TEXT NOT NULL,
        api     TEXT NOT NULL,
        day     TEXT NOT NULL,
        used    BIGINT NOT NULL,
        last_at BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (appid, api, day)
    );
    CREATE TABLE stat_change (
        appid TEXT PRIMARY KEY,
        seq   BIGINT NOT NULL
    );
    CREATE INDEX stat_change_by_seq ON stat_change (seq);
    CREATE TABLE event_chunk (
        seq   BIGSERIAL PRIMARY KEY,
        appid TEXT NOT NULL,
        class BIGINT NOT NULL,
        day   BIGINT NOT NULL,
        data  BYTEA NOT NULL,
        codec BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX event_chunk_by_day ON event_chunk (appid, class, day);
    CREATE TABLE event_id (
        appid  TEXT NOT NULL,
        bucket BIGINT NOT NULL,
        data   BYTEA NOT NULL,
        PRIMARY KEY (appid, bucket)
    );
    CREATE TABLE event_app (
        appid   TEXT PRIMARY KEY,
        id_bits BIGINT NOT NULL,
        ids     BIGINT NOT NULL
    );
    CREATE TABLE event_id_delta (
        seq   BIGSERIAL PRIMARY KEY,
        appid TEXT NOT NULL,
        data  BYTEA NOT NULL
    );
    CREATE INDEX event_id_delta_by_app ON event_id_delta (appid, seq);
    CREATE TABLE stat_day (
        appid    TEXT NOT NULL,
        endpoint BIGINT NOT NULL,
        ref_date TEXT NOT NULL,
        n        BIGINT NOT NULL,
        rows     BYTEA NOT NULL,
        keys     BYTEA NOT NULL,
        PRIMARY KEY (appid, endpoint, ref_date)
    );
    CREATE TABLE stat_pending (
        appid TEXT NOT NULL,
        class BIGINT NOT NULL,
        lo    BIGINT NOT NULL,
        hi    BIGINT NOT NULL,
        PRIMARY KEY (appid, class)
    );
    CREATE TABLE sync_final (
        appid    TEXT NOT NULL,
        endpoint BIGINT NOT NULL,
        lo       BIGINT NOT NULL,
        hi       BIGINT NOT NULL,
        PRIMARY KEY (appid, endpoint, lo)
    );
    "#;

/// One connection and the statements it has prepared. Dropped off any async thread (the
/// `postgres` crate blocks on its own runtime when closing).
struct Conn {
    client: Option<postgres::Client>,
    prepared: Prepared,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                std::thread::spawn(move || drop(client));
            }
        }
    }
}

impl Conn {
    fn connect(
        config: &postgres::Config,
        tls: &crate::tls::Tls,
    ) -> std::result::Result<Conn, postgres::Error> {
        Ok(Conn {
            client: Some(tls.connect(config)?),
            prepared: Prepared::new(),
        })
    }
    fn parts(&mut self) -> (&mut postgres::Client, &mut Prepared) {
        (
            self.client
                .as_mut()
                .expect("a connection's client lives as long as it"),
            &mut self.prepared,
        )
    }
}

/// A PostgreSQL database.
pub(crate) struct Postgres {
    config: postgres::Config,
    tls: crate::tls::Tls,
    writers: Pool,
    readers: Pool,
    /// The accounts this process's writes hold or wait for (see [`Gates`]).
    gates: Gates,
}

/// The lock keys this process's writes hold or wait for. A write takes its keys here first,
/// in the same order as in the database: of several writes of one account in a process, one
/// waits for the account's database lock — holding a writer connection — and the others wait
/// here, holding none, so a busy account never takes every writer connection from the others.
#[derive(Default)]
struct Gates {
    busy: Mutex<std::collections::HashSet<i64>>,
    freed: Condvar,
}

impl Gates {
    /// Takes `keys` (ascending), each once free; given back when the guard is dropped.
    fn enter<'a>(&'a self, keys: &'a [i64]) -> Gated<'a> {
        let mut busy = crate::db::locked(&self.busy);
        for key in keys {
            while busy.contains(key) {
                busy = self.freed.wait(busy).unwrap_or_else(|p| p.into_inner());
            }
            busy.insert(*key);
        }
        Gated { gates: self, keys }
    }
}

struct Gated<'a> {
    gates: &'a Gates,
    keys: &'a [i64],
}

impl Drop for Gated<'_> {
    fn drop(&mut self) {
        let mut busy = crate::db::locked(&self.gates.busy);
        for key in self.keys {
            busy.remove(key);
        }
        drop(busy);
        self.gates.freed.notify_all();
    }
}

/// Connections of one kind: idle ones, and how many are open in all (at most `max`).
struct Pool {
    conns: Mutex<Conns>,
    /// Signalled when a connection is returned or closed.
    returned: Condvar,
    max: usize,
}

#[derive(Default)]
struct Conns {
    idle: Vec<Conn>,
    open: usize,
}

impl Pool {
    fn new(max: usize, first: Option<Conn>) -> Pool {
        let open = usize::from(first.is_some());
        Pool {
            conns: Mutex::new(Conns {
                idle: first.into_iter().collect(),
                open,
            }),
            returned: Condvar::new(),
            max,
        }
    }

    /// Runs `f` with a connection of the pool (one is opened when none is idle, up to the
    /// pool's size; beyond, it waits for one), then gives it back — unless it broke.
    fn with<T>(&self, db: &Postgres, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        let mut conn = {
            let mut conns = crate::db::locked(&self.conns);
            loop {
                if let Some(c) = conns.idle.pop() {
                    break c;
                }
                if conns.open < self.max {
                    conns.open += 1;
                    drop(conns);
                    match Conn::connect(&db.config, &db.tls) {
                        Ok(c) => break c,
                        Err(e) => {
                            self.closed();
                            return Err(e.into());
                        }
                    }
                }
                conns = self.returned.wait(conns).unwrap_or_else(|p| p.into_inner());
            }
        };
        let out = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut conn))) {
            Ok(out) => out,
            Err(panic) => {
                // Its transaction is rolled back with it; another may be opened.
                drop(conn);
                self.closed();
                std::panic::resume_unwind(panic);
            }
        };
        // A connection that broke is not reused.
        if conn
            .client
            .as_ref()
            .is_some_and(postgres::Client::is_closed)
        {
            drop(conn);
            self.closed();
        } else {
            crate::db::locked(&self.conns).idle.push(conn);
            self.returned.notify_one();
        }
        out
    }

    /// A connection was closed (or failed to open): another may be opened.
    fn closed(&self) {
        crate::db::locked(&self.conns).open -= 1;
        self.returned.notify_one();
    }
}

/// Runs `f` on a thread of its own when called from an async task's thread, where the
/// `postgres` crate cannot block.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(f).join().expect("connecting thread"))
    } else {
        f()
    }
}

/// `sslmode=prefer` (libpq's default, and datacube's) falls back to plaintext when the
/// server offers no TLS: allowed, but said once, when the database is opened.
fn warn_if_plaintext(conn: &mut Conn, shown: &str) {
    let (client, _) = conn.parts();
    let encrypted = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .ok()
        .and_then(|row| row.try_get::<_, bool>(0).ok());
    if encrypted == Some(false) {
        tracing::warn!(
            database = %shown,
            "the connection to PostgreSQL is not encrypted: the server offers no TLS and \
             sslmode=prefer (the default) allows plaintext; add ?sslmode=require to refuse it, \
             or ?sslmode=disable to say plaintext is intended"
        );
    }
}

impl Postgres {
    /// Connects to `url` (`postgres://user@host:port/database`) and brings the schema up to
    /// date.
    pub(crate) fn open(url: &str) -> Result<Postgres> {
        // Messages name the URL without its password.
        let shown = crate::redacted(url);
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            url: shown.clone(),
            cause: e,
        };
        let (url, tls) = crate::tls::from_url(url).map_err(|e| open_err(e.into()))?;
        let mut config: postgres::Config = url.parse().map_err(|e| open_err(Box::new(e)))?;
        config.ssl_mode(tls.pg_mode());
        let writer = off_runtime(|| -> Result<Conn> {
            let mut conn = Conn::connect(&config, &tls).map_err(|e| open_err(Box::new(e)))?;
            if tls.mode == crate::tls::SslMode::Prefer {
                warn_if_plaintext(&mut conn, &shown);
            }
            migrate(&mut conn, &shown)?;
            Ok(conn)
        })?;
        Ok(Postgres {
            config,
            tls,
            writers: Pool::new(writers_max(), Some(writer)),
            readers: Pool::new(readers_max(), None),
            gates: Gates::default(),
        })
    }

    /// Runs `f` on a reader connection (autocommit: each statement sees the latest commit).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        self.with_reader(|conn| {
            let (client, prepared) = conn.parts();
            f(&PgDb::new(PgClient::Client(client), prepared))
        })
    }

    /// Runs `f` on a reader connection in one read-only `REPEATABLE READ` transaction: every
    /// statement sees the same snapshot.
    pub(crate) fn snapshot<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        self.with_reader(|conn| {
            let (client, prepared) = conn.parts();
            let tx = client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            committed(tx, prepared, f)
        })
    }

    /// Runs `f` with a reader connection, timed as a read's wait.
    fn with_reader<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        let mut waiting = Some(crate::db::Waiting::start("read"));
        self.readers.with(self, |conn| {
            drop(waiting.take());
            f(conn)
        })
    }

    /// Runs `f` in a transaction that holds the locks of `scope` (see [`crate::scope`]),
    /// committed if `f` succeeds.
    pub(crate) fn write<T>(
        &self,
        scope: &Scope,
        f: impl FnOnce(&dyn Db) -> Result<T>,
    ) -> Result<T> {
        let waiting = crate::db::Waiting::start("write");
        let _gated = self.gates.enter(scope.keys());
        self.writers.with(self, |conn| {
            let (client, prepared) = conn.parts();
            let mut tx = client.transaction()?;
            lock(&mut tx, scope)?;
            drop(waiting);
            committed(tx, prepared, f)
        })
    }
}

/// Takes the advisory locks of `scope`, in the fixed order of [`crate::scope`].
fn lock(tx: &mut postgres::Transaction<'_>, scope: &Scope) -> Result<()> {
    if scope.is_whole() {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&GLOBAL])?;
        return Ok(());
    }
    match scope.keys() {
        [] => {
            tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&GLOBAL])?;
        }
        // The usual write, one account: one round trip.
        [key] => {
            tx.execute(
                "SELECT pg_advisory_xact_lock_shared($1), pg_advisory_xact_lock($2)",
                &[&GLOBAL, key],
            )?;
        }
        keys => {
            tx.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&GLOBAL])?;
            for key in keys {
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[key])?;
            }
        }
    }
    Ok(())
}

/// Runs `f` in `tx`, committed if `f` succeeds (rolled back when dropped otherwise).
fn committed<T>(
    tx: postgres::Transaction<'_>,
    prepared: &mut Prepared,
    f: impl FnOnce(&dyn Db) -> Result<T>,
) -> Result<T> {
    let db = PgDb::new(PgClient::Transaction(tx), prepared);
    let out = f(&db)?;
    let changed = db.changed.take();
    if !changed.is_empty() {
        // One number for the commit, drawn under CHANGES, held to the commit: a server that
        // has read number n has seen every commit with a smaller one, and each commit's
        // accounts all at once.
        // (Two statements: in READ COMMITTED each takes its snapshot when it starts, and the
        // number must be read with one taken after the lock is granted.)
        let tx: &dyn Db = &db;
        tx.exec("SELECT pg_advisory_xact_lock(?1)", crate::db::p![CHANGES])?;
        let seq = tx.int(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM stat_change",
            crate::db::p![],
        )?;
        let rows: Vec<crate::db::V<'_>> = changed
            .iter()
            .flat_map(|appid| [crate::db::V::from(appid), crate::db::V::Int(seq)])
            .collect();
        tx.insert_many(
            "INSERT INTO stat_change (appid, seq) VALUES",
            "ON CONFLICT (appid) DO UPDATE SET seq = excluded.seq",
            2,
            &rows,
        )?;
    }
    match db.client.into_inner() {
        PgClient::Transaction(tx) => tx.commit()?,
        PgClient::Client(_) => unreachable!("built with a transaction"),
    }
    Ok(out)
}

fn migrate(conn: &mut Conn, url: &str) -> Result<()> {
    let open_err = |e: postgres::Error| StoreError::Open {
        url: url.to_owned(),
        cause: Box::new(e),
    };
    let (client, prepared) = conn.parts();
    // Instances starting together: one migrates, the others wait and find it done.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATE])
        .map_err(open_err)?;
    let done = (|| -> Result<()> {
        client.batch_execute(
            "SET client_min_messages TO warning;
             CREATE TABLE IF NOT EXISTS datacube_schema (version BIGINT NOT NULL);
             INSERT INTO datacube_schema (version)
             SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM datacube_schema);",
        )?;
        let version: i64 = client
            .query_one("SELECT version FROM datacube_schema", &[])?
            .get(0);
        let known = pg_migrations().len() as i64;
        if schema::pending(version, known)? {
            let mut tx = client.transaction()?;
            for sql in &pg_migrations()[version as usize..] {
                tx.batch_execute(sql)?;
            }
            tx.execute("UPDATE datacube_schema SET version = $1", &[&known])?;
            if version < VIEWS_SINCE {
                tx.batch_execute(&crate::views::script(crate::views::Dialect::Postgres))?;
                let db = PgDb::new(PgClient::Transaction(tx), prepared);
                crate::days::make_plain(
                    &db,
                    "SELECT appid, endpoint, ref_date, rows, keys FROM stat_day
                     WHERE substring(rows from 1 for 4) = decode('28b52ffd', 'hex') LIMIT 256",
                )?;
                tx = match db.client.into_inner() {
                    PgClient::Transaction(tx) => tx,
                    PgClient::Client(_) => unreachable!("a migration runs in a transaction"),
                };
            }
            tx.commit()?;
            tracing::info!(from = version, to = known, "database migrated");
        }
        Ok(())
    })();
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE]);
    done.and(unlocked.map(|_| ()).map_err(open_err))
}
