//! The SQL the store speaks to either backend.
//!
//! The store's logic (accounts, tokens, quotas, the event log, statistics days, sync state) is
//! written once against [`Db`]: a connection, usually inside a transaction, that runs a
//! statement with parameters and hands back rows. SQLite and PostgreSQL implement it. The SQL
//! is written in the dialect both accept: `?N` parameters (rewritten to `$N` for PostgreSQL),
//! `ON CONFLICT … DO UPDATE`, `RETURNING`, no two-argument `MIN`/`MAX`, integers as 64-bit
//! (`BIGINT` in PostgreSQL), text and byte strings.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::{Result, StoreError};

/// Whether a metrics recorder is installed ([`record_waits`]): until then waits are not
/// timed at all (the commands without `/metrics`).
static RECORDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Starts recording `datacube_db_wait_seconds`: called once the process has installed its
/// metrics recorder (handles taken before it would count nowhere).
pub fn record_waits() {
    RECORDING.store(true, std::sync::atomic::Ordering::Relaxed);
}

thread_local! {
    /// Each thread's histogram handles, `read` and `write`: a lookup by label on every store
    /// call costs more than the cached answers it sits beside.
    static WAITS: [metrics::Histogram; 2] = [
        metrics::histogram!("datacube_db_wait_seconds", "op" => "read"),
        metrics::histogram!("datacube_db_wait_seconds", "op" => "write"),
    ];
}

/// How long a read took to get a connection, or a write its turn (a writer connection and the
/// locks of what it writes), opening a connection and the round trips included: recorded when dropped —
/// also when getting it failed — as `datacube_db_wait_seconds{op}`, a histogram, once a
/// recorder is installed (`serve`, `--metrics-listen`).
pub(crate) struct Waiting {
    write: bool,
    since: Option<std::time::Instant>,
}

impl Waiting {
    pub(crate) fn start(op: &'static str) -> Waiting {
        let timed = RECORDING.load(std::sync::atomic::Ordering::Relaxed);
        Waiting {
            write: op == "write",
            since: timed.then(std::time::Instant::now),
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(since) = self.since {
            let seconds = since.elapsed().as_secs_f64();
            WAITS.with(|w| w[usize::from(self.write)].record(seconds));
        }
    }
}

/// A parameter or a column value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum V<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for V<'_> {
            fn from(n: $t) -> Self {
                V::Int(n as i64)
            }
        }
    )*};
}
from_int!(i64, i32, u32, u8, usize);

impl From<u64> for V<'_> {
    fn from(n: u64) -> Self {
        V::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}
impl From<bool> for V<'_> {
    fn from(b: bool) -> Self {
        V::Int(i64::from(b))
    }
}
impl<'a> From<&'a str> for V<'a> {
    fn from(s: &'a str) -> Self {
        V::Text(s)
    }
}
impl<'a> From<&'a String> for V<'a> {
    fn from(s: &'a String) -> Self {
        V::Text(s)
    }
}
impl<'a> From<&'a datacube_api::secret::Secret> for V<'a> {
    fn from(s: &'a datacube_api::secret::Secret) -> Self {
        V::Text(s.expose())
    }
}
impl<'a> From<&'a [u8]> for V<'a> {
    fn from(b: &'a [u8]) -> Self {
        V::Blob(b)
    }
}
impl<'a> From<&'a Vec<u8>> for V<'a> {
    fn from(b: &'a Vec<u8>) -> Self {
        V::Blob(b)
    }
}
impl<'a> From<Option<&'a str>> for V<'a> {
    fn from(s: Option<&'a str>) -> Self {
        s.map_or(V::Null, V::Text)
    }
}
impl From<Option<i64>> for V<'_> {
    fn from(n: Option<i64>) -> Self {
        n.map_or(V::Null, V::Int)
    }
}

/// Parameters: `p![appid, day]`.
macro_rules! p {
    ($($x:expr),* $(,)?) => { &[$($crate::db::V::from($x)),*] };
}
pub(crate) use p;

/// One row of a result.
pub(crate) trait DbRow {
    /// Column `i` (from 0).
    fn get(&self, i: usize) -> Result<V<'_>>;

    /// Column `i` as an integer.
    fn int(&self, i: usize) -> Result<i64> {
        match self.get(i)? {
            V::Int(n) => Ok(n),
            other => Err(mismatch(i, "an integer", other)),
        }
    }
    /// Column `i` as an integer, or NULL.
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.get(i)? {
            V::Int(n) => Ok(Some(n)),
            V::Null => Ok(None),
            other => Err(mismatch(i, "an integer or NULL", other)),
        }
    }
    /// Column `i` as text.
    fn text(&self, i: usize) -> Result<&str> {
        match self.get(i)? {
            V::Text(s) => Ok(s),
            other => Err(mismatch(i, "text", other)),
        }
    }
    /// Column `i` as text, or NULL.
    fn opt_text(&self, i: usize) -> Result<Option<&str>> {
        match self.get(i)? {
            V::Text(s) => Ok(Some(s)),
            V::Null => Ok(None),
            other => Err(mismatch(i, "text or NULL", other)),
        }
    }
    /// Column `i` as bytes.
    fn blob(&self, i: usize) -> Result<&[u8]> {
        match self.get(i)? {
            V::Blob(b) => Ok(b),
            other => Err(mismatch(i, "bytes", other)),
        }
    }
}

fn mismatch(i: usize, wanted: &str, got: V<'_>) -> StoreError {
    let got = match got {
        V::Null => "NULL",
        V::Int(_) => "an integer",
        V::Text(_) => "text",
        V::Blob(_) => "bytes",
    };
    StoreError::Corrupt(format!(
        "column {i} holds {got} where {wanted} was expected"
    ))
}

/// A database connection (usually in a transaction) the store's logic runs against.
pub(crate) trait Db {
    /// Runs a statement; returns the rows it changed.
    fn exec(&self, sql: &'static str, params: &[V<'_>]) -> Result<u64>;
    /// `head (row 1), (row 2), … tail`: an `INSERT … VALUES` of many rows (`params` holds
    /// `width` values per row), in as few statements as the database allows — one per row on
    /// SQLite, where a statement costs no round trip, a few hundred rows per statement on
    /// PostgreSQL, where it does. The rows' keys must be distinct.
    fn insert_many(
        &self,
        head: &'static str,
        tail: &'static str,
        width: usize,
        params: &[V<'_>],
    ) -> Result<()>;
    /// Logs `appid`'s statistics as changed: the change log servers follow to drop what they
    /// hold of it. On PostgreSQL the change's number is drawn at commit (see
    /// [`crate::scope`]); SQLite, one writer at a time, draws it at once.
    fn log_change(&self, appid: &str) -> Result<()>;
    /// Runs a query and calls `f` with each row, in order. `f` may use the connection.
    fn each(
        &self,
        sql: &'static str,
        params: &[V<'_>],
        f: &mut dyn FnMut(&dyn DbRow) -> Result<()>,
    ) -> Result<()>;
}

impl dyn Db + '_ {
    /// Every row, through `f`.
    pub(crate) fn all<T>(
        &self,
        sql: &'static str,
        params: &[V<'_>],
        mut f: impl FnMut(&dyn DbRow) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.each(sql, params, &mut |r| {
            out.push(f(r)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row, if any, through `f`.
    pub(crate) fn opt<T>(
        &self,
        sql: &'static str,
        params: &[V<'_>],
        f: impl FnOnce(&dyn DbRow) -> Result<T>,
    ) -> Result<Option<T>> {
        let mut f = Some(f);
        let mut out = None;
        self.each(sql, params, &mut |r| {
            if let Some(f) = f.take() {
                out = Some(f(r)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row, through `f`; no row is an error.
    pub(crate) fn one<T>(
        &self,
        sql: &'static str,
        params: &[V<'_>],
        f: impl FnOnce(&dyn DbRow) -> Result<T>,
    ) -> Result<T> {
        self.opt(sql, params, f)?
            .ok_or_else(|| StoreError::Corrupt(format!("no row from {sql}")))
    }

    /// The integer in the first column of the first row.
    pub(crate) fn int(&self, sql: &'static str, params: &[V<'_>]) -> Result<i64> {
        self.one(sql, params, |r| r.int(0))
    }
}

// ---- SQLite ----

impl rusqlite::ToSql for V<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            V::Null => ValueRef::Null,
            V::Int(n) => ValueRef::Integer(n),
            V::Text(s) => ValueRef::Text(s.as_bytes()),
            V::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl DbRow for rusqlite::Row<'_> {
    fn get(&self, i: usize) -> Result<V<'_>> {
        use rusqlite::types::ValueRef;
        Ok(match self.get_ref(i)? {
            ValueRef::Null => V::Null,
            ValueRef::Integer(n) => V::Int(n),
            ValueRef::Real(f) => V::Int(f as i64),
            ValueRef::Text(t) => V::Text(
                std::str::from_utf8(t)
                    .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))?,
            ),
            ValueRef::Blob(b) => V::Blob(b),
        })
    }
}

/// `(?1, ?2, …)` or `($1, $2, …)` for `rows` rows of `width` values.
fn values_sql(head: &str, tail: &str, width: usize, rows: usize, mark: char) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * width * 6);
    sql.push_str(head);
    for r in 0..rows {
        sql.push_str(if r == 0 { " (" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push(mark);
            sql.push_str(&(r * width + c + 1).to_string());
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// Logs one account's change with the next number (`?1`: the appid), on SQLite, whose one
/// writer at a time draws numbers in commit order (PostgreSQL draws one per commit, under
/// [`crate::scope::CHANGES`]: `postgres::committed`).
pub(crate) const LOG_CHANGE: &str = "INSERT INTO stat_change (appid, seq)
     VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM stat_change))
     ON CONFLICT (appid) DO UPDATE SET seq = excluded.seq";

impl Db for rusqlite::Connection {
    fn log_change(&self, appid: &str) -> Result<()> {
        self.exec(LOG_CHANGE, p![appid]).map(drop)
    }
    fn insert_many(
        &self,
        head: &'static str,
        tail: &'static str,
        width: usize,
        params: &[V<'_>],
    ) -> Result<()> {
        if params.is_empty() {
            return Ok(());
        }
        let mut stmt = self.prepare_cached(&values_sql(head, tail, width, 1, '?'))?;
        for row in params.chunks(width) {
            stmt.execute(rusqlite::params_from_iter(row))?;
        }
        Ok(())
    }
    fn exec(&self, sql: &'static str, params: &[V<'_>]) -> Result<u64> {
        Ok(self
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))? as u64)
    }
    fn each(
        &self,
        sql: &'static str,
        params: &[V<'_>],
        f: &mut dyn FnMut(&dyn DbRow) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self.prepare_cached(sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        while let Some(row) = rows.next()? {
            f(row)?;
        }
        Ok(())
    }
}

// ---- PostgreSQL ----

impl postgres::types::ToSql for V<'_> {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        use postgres::types::{IsNull, Type};
        match *self {
            V::Null => Ok(IsNull::Yes),
            V::Int(n) => match *ty {
                Type::INT8 => n.to_sql(ty, out),
                Type::INT4 => i32::try_from(n)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(n)?.to_sql(ty, out),
                Type::BOOL => (n != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => n.to_string().as_str().to_sql(ty, out),
                _ => Err(format!("an integer cannot be bound to a {ty} parameter").into()),
            },
            V::Text(s) if *ty == Type::BYTEA => s.as_bytes().to_sql(ty, out),
            V::Text(s) => s.to_sql(ty, out),
            V::Blob(b) => b.to_sql(ty, out),
        }
    }
    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }
    postgres::types::to_sql_checked!();
}

impl DbRow for postgres::Row {
    fn get(&self, i: usize) -> Result<V<'_>> {
        use postgres::types::Type;
        let column = self
            .columns()
            .get(i)
            .ok_or_else(|| StoreError::Corrupt(format!("no column {i}")))?;
        let v = match *column.type_() {
            Type::INT8 => self.try_get::<_, Option<i64>>(i)?.map(V::Int),
            Type::INT4 => self.try_get::<_, Option<i32>>(i)?.map(|n| V::Int(n.into())),
            Type::INT2 => self.try_get::<_, Option<i16>>(i)?.map(|n| V::Int(n.into())),
            Type::BOOL => self
                .try_get::<_, Option<bool>>(i)?
                .map(|b| V::Int(b.into())),
            Type::BYTEA => self.try_get::<_, Option<&[u8]>>(i)?.map(V::Blob),
            _ => self.try_get::<_, Option<&str>>(i)?.map(V::Text),
        };
        Ok(v.unwrap_or(V::Null))
    }
}

/// The statements a PostgreSQL connection has prepared, by their SQL as the store writes it.
pub(crate) type Prepared = HashMap<&'static str, postgres::Statement>;

/// `?N` → `$N`.
fn to_postgres(sql: &str) -> String {
    sql.replace('?', "$")
}

/// A PostgreSQL connection or transaction, with its connection's prepared statements.
pub(crate) struct PgDb<'a> {
    pub(crate) client: RefCell<PgClient<'a>>,
    pub(crate) prepared: RefCell<&'a mut Prepared>,
    /// Accounts whose change is logged at commit ([`Db::log_change`]).
    pub(crate) changed: RefCell<std::collections::BTreeSet<String>>,
}

impl<'a> PgDb<'a> {
    pub(crate) fn new(client: PgClient<'a>, prepared: &'a mut Prepared) -> PgDb<'a> {
        PgDb {
            client: client.into(),
            prepared: prepared.into(),
            changed: Default::default(),
        }
    }
}

/// What a [`PgDb`] runs statements on.
pub(crate) enum PgClient<'a> {
    Client(&'a mut postgres::Client),
    Transaction(postgres::Transaction<'a>),
}

impl PgClient<'_> {
    fn prepare(&mut self, sql: &str) -> std::result::Result<postgres::Statement, postgres::Error> {
        match self {
            PgClient::Client(c) => c.prepare(sql),
            PgClient::Transaction(t) => t.prepare(sql),
        }
    }
    fn execute(
        &mut self,
        stmt: &postgres::Statement,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> std::result::Result<u64, postgres::Error> {
        match self {
            PgClient::Client(c) => c.execute(stmt, params),
            PgClient::Transaction(t) => t.execute(stmt, params),
        }
    }
    fn query(
        &mut self,
        stmt: &postgres::Statement,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> std::result::Result<Vec<postgres::Row>, postgres::Error> {
        match self {
            PgClient::Client(c) => c.query(stmt, params),
            PgClient::Transaction(t) => t.query(stmt, params),
        }
    }
}

impl PgDb<'_> {
    fn statement(&self, sql: &'static str) -> Result<postgres::Statement> {
        if let Some(s) = self.prepared.borrow().get(sql) {
            return Ok(s.clone());
        }
        let stmt = self.client.borrow_mut().prepare(&to_postgres(sql))?;
        self.prepared.borrow_mut().insert(sql, stmt.clone());
        Ok(stmt)
    }
}

fn pg_params<'p>(params: &'p [V<'_>]) -> Vec<&'p (dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| p as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

/// Whether a parameter is text with a NUL character — which PostgreSQL's text cannot hold
/// (`22021 invalid byte sequence`), where SQLite's can.
fn holds_nul(params: &[V<'_>]) -> bool {
    params
        .iter()
        .any(|p| matches!(p, V::Text(s) if s.contains('\0')))
}

/// `params` with each NUL of a text replaced by U+FFFE, a noncharacter no stored identifier
/// holds: a lookup by a value with a NUL then finds nothing — an access token, appid, code…
/// holding one is unknown, as on SQLite, not a database error — an aggregate gives its empty
/// answer, and an update or delete by it changes nothing.
fn nul_free(params: &[V<'_>]) -> Vec<String> {
    params
        .iter()
        .map(|p| match p {
            V::Text(s) => s.replace('\0', "\u{FFFE}"),
            _ => String::new(),
        })
        .collect()
}

fn with_texts<'a>(params: &[V<'a>], texts: &'a [String]) -> Vec<V<'a>> {
    params
        .iter()
        .zip(texts)
        .map(|(p, t)| match p {
            V::Text(_) => V::Text(t),
            other => *other,
        })
        .collect()
}

/// Rows per `INSERT` on PostgreSQL (its limit is 65,535 parameters a statement).
const PG_ROWS_PER_INSERT: usize = 500;

impl Db for PgDb<'_> {
    fn log_change(&self, appid: &str) -> Result<()> {
        if matches!(&*self.client.borrow(), PgClient::Client(_)) {
            return Err(StoreError::Task(
                "a change is logged in a write transaction only".into(),
            ));
        }
        self.changed.borrow_mut().insert(appid.to_owned());
        Ok(())
    }
    fn insert_many(
        &self,
        head: &'static str,
        tail: &'static str,
        width: usize,
        params: &[V<'_>],
    ) -> Result<()> {
        for chunk in params.chunks(width * PG_ROWS_PER_INSERT) {
            let sql = values_sql(head, tail, width, chunk.len() / width, '$');
            let mut client = self.client.borrow_mut();
            match &mut *client {
                PgClient::Client(c) => c.execute(sql.as_str(), &pg_params(chunk))?,
                PgClient::Transaction(t) => t.execute(sql.as_str(), &pg_params(chunk))?,
            };
        }
        Ok(())
    }
    fn exec(&self, sql: &'static str, params: &[V<'_>]) -> Result<u64> {
        if holds_nul(params) {
            if sql.trim_start().starts_with("INSERT") {
                return Err(StoreError::Corrupt(
                    "a text with a NUL character cannot be stored".into(),
                ));
            }
            let texts = nul_free(params);
            return self.exec(sql, &with_texts(params, &texts));
        }
        let stmt = self.statement(sql)?;
        Ok(self
            .client
            .borrow_mut()
            .execute(&stmt, &pg_params(params))?)
    }
    fn each(
        &self,
        sql: &'static str,
        params: &[V<'_>],
        f: &mut dyn FnMut(&dyn DbRow) -> Result<()>,
    ) -> Result<()> {
        if holds_nul(params) {
            let texts = nul_free(params);
            return self.each(sql, &with_texts(params, &texts), f);
        }
        let stmt = self.statement(sql)?;
        // Materialized first, so that `f` may run statements of its own.
        let rows = self.client.borrow_mut().query(&stmt, &pg_params(params))?;
        for row in &rows {
            f(row)?;
        }
        Ok(())
    }
}

/// The mutex's guard, also after a thread panicked holding it: the connections behind the
/// store's mutexes stay usable (a transaction a panic left open is rolled back on drop).
pub(crate) fn locked<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_rows_make_one_values_list() {
        assert_eq!(
            values_sql(
                "INSERT INTO t (a, b) VALUES",
                "ON CONFLICT DO NOTHING",
                2,
                2,
                '$'
            ),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
    }

    #[test]
    fn parameters_become_numbered_dollars() {
        assert_eq!(
            to_postgres("SELECT a FROM t WHERE b = ?1 AND c BETWEEN ?2 AND ?12"),
            "SELECT a FROM t WHERE b = $1 AND c BETWEEN $2 AND $12"
        );
    }
}
