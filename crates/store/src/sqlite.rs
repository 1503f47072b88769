//! The SQLite backend: WAL mode, one writer connection, a small pool of reader connections.

use std::path::PathBuf;
use std::sync::Mutex;

use rusqlite::{Connection, TransactionBehavior};

use crate::db::Db;
use crate::schema::{self, MIGRATIONS};
use crate::{Result, StoreError};

/// Reader connections kept for reuse; more are opened under load and closed afterwards.
const READER_POOL: usize = 16;

/// An SQLite database file.
pub(crate) struct Sqlite {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// For `sqlite::memory:`: the directory of the file, removed with the store.
    _ephemeral: Option<tempfile::TempDir>,
}

/// Whether `path` asks for an in-memory database (`sqlite::memory:`, `sqlite://:memory:`).
pub(crate) fn is_memory(path: &str) -> bool {
    path == ":memory:"
}

fn configure(conn: &Connection, mapped: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // The writer reads through the page cache's mapping instead of a read() per page. Readers
    // do not: every page a mapping touches counts in the process's resident memory, so a
    // server answering 1,000 accounts would show the whole file; a reader's own page cache
    // (2 MB) is bounded.
    conn.pragma_update(None, "mmap_size", if mapped { 1i64 << 30 } else { 0 })?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

impl Sqlite {
    /// Opens or creates the file at `path` and brings its schema up to date. `:memory:` is a
    /// database of this process alone, in a file of its own in memory (`/dev/shm` where there
    /// is one, else the temporary directory) removed when the store is dropped: SQLite's own
    /// in-memory databases are one per connection, and datacube reads on several.
    pub(crate) fn open(path: &str, url: &str) -> Result<Sqlite> {
        let open_err = |source: rusqlite::Error| StoreError::Open {
            url: url.to_owned(),
            cause: match unwritable(path, &source) {
                Some(why) => why.into(),
                None => Box::new(source),
            },
        };
        let ephemeral = if is_memory(path) {
            let shm = std::path::Path::new("/dev/shm");
            let dir = if shm.is_dir() {
                tempfile::Builder::new().prefix("datacube-").tempdir_in(shm)
            } else {
                tempfile::Builder::new().prefix("datacube-").tempdir()
            }
            .map_err(|e| StoreError::Open {
                url: url.to_owned(),
                cause: Box::new(e),
            })?;
            Some(dir)
        } else {
            None
        };
        let file = ephemeral.as_ref().map(|dir| {
            dir.path()
                .join("datacube.db")
                .to_string_lossy()
                .into_owned()
        });
        let path = file.as_deref().unwrap_or(path);
        owner_only(path);
        let writer = Connection::open(path).map_err(open_err)?;
        // Another process may be creating the same file: wait for its locks, as every
        // connection does.
        writer
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        // WAL: readers never wait for the writer, and a commit is durable once it returns.
        // Switching needs the file to itself: when another connection is switching it at
        // the same moment, SQLite answers "busy" at once (its busy handler cannot help a
        // lock upgrade), so try again for a while.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mode: String = loop {
            match writer.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(
                        5 + u64::from(std::process::id() % 7) * 3,
                    ));
                }
                other => break other.map_err(open_err)?,
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(mode, "SQLite did not switch to WAL mode");
        }
        configure(&writer, true).map_err(open_err)?;
        migrate(&writer, url)?;
        Ok(Sqlite {
            path: PathBuf::from(path),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            _ephemeral: ephemeral,
        })
    }

    /// Runs `f` on a reader connection (outside any transaction: each statement sees the
    /// latest commit).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        self.with_reader(|conn| f(conn))
    }

    /// Runs `f` with a reader connection of the pool (a new one when none is idle).
    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let waiting = crate::db::Waiting::start("read");
        let conn = self.readers.lock().expect("reader pool").pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open(&self.path)?;
                configure(&c, false)?;
                c
            }
        };
        drop(waiting);
        let out = f(&conn);
        let mut pool = self.readers.lock().expect("reader pool");
        if pool.len() < READER_POOL {
            pool.push(conn);
        }
        out
    }

    /// Runs `f` on a reader connection in one read transaction: every statement sees the same
    /// commit (and the WAL's read lock is taken once, not once per statement).
    pub(crate) fn snapshot<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        self.with_reader(|conn| {
            let tx = conn.unchecked_transaction()?;
            let out = f(&*tx);
            // Nothing was written: ending it either way only lets the snapshot go.
            drop(tx);
            out
        })
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`: one writer at a time, also across
    /// processes, whatever its scope), committed if `f` succeeds.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        let waiting = crate::db::Waiting::start("write");
        let mut conn = crate::db::locked(&self.writer);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        drop(waiting);
        let out = f(&*tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// The database holds live access tokens: a new file is made readable and writable by its
/// owner alone (SQLite gives its `-wal` and `-shm` files the database file's mode), and an
/// existing one that others can read is said once.
fn owner_only(path: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if path.starts_with(':') || path.starts_with("file:") {
            return;
        }
        // An empty file is a new database to SQLite; another process creating it at the same
        // moment is fine.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path,
                    mode = format!("{mode:o}"),
                    "the database file (with live access tokens) can be read by other users: \
                     chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Why SQLite could not open or create `path`, when the reason is the file's or its directory's
/// permissions (SQLite says only "unable to open database file"): who may write there, and who
/// this process is — in the container image, uid 10001, which a host directory mounted on
/// `/data` must let write.
fn unwritable(path: &str, error: &rusqlite::Error) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let rusqlite::Error::SqliteFailure(e, _) = error else {
            return None;
        };
        if !matches!(
            e.code,
            rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::ReadOnly
                | rusqlite::ErrorCode::PermissionDenied
        ) {
            return None;
        }
        let file = std::path::Path::new(path);
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        // The owner of /proc/self is this process's effective uid (Linux).
        let me = std::fs::metadata("/proc/self").ok().map(|m| m.uid());
        let who = me.map_or_else(|| "this process".to_owned(), |uid| format!("uid {uid}"));
        // Whether this process may create files in the directory (the database, and beside it
        // its -wal and -shm): a probe file of its own, created exclusively (no symlink
        // followed, nothing of anyone else's touched) and removed at once.
        let probe = dir.join(format!(".datacube-write-check-{}", std::process::id()));
        let dir_writable = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .map(|_| {
                let _ = std::fs::remove_file(&probe);
            })
            .is_ok();
        let file_writable = match std::fs::metadata(file) {
            Ok(_) => std::fs::OpenOptions::new().write(true).open(file).is_ok(),
            Err(_) => true,
        };
        let (name, meta) = if !dir_writable {
            match std::fs::metadata(dir) {
                Ok(m) => (format!("the directory {}", dir.display()), m),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Some(format!(
                        "the directory {} does not exist (datacube creates the database file, not its directory)",
                        dir.display()
                    ))
                }
                Err(e) => return Some(format!("the directory {}: {e}", dir.display())),
            }
        } else if !file_writable {
            match std::fs::metadata(file) {
                Ok(m) => (file.display().to_string(), m),
                Err(_) => return None,
            }
        } else {
            // A writable place with another cause (a full disk…): SQLite's own words.
            return None;
        };
        let mode = meta.permissions().mode() & 0o7777;
        // The directory too: SQLite writes its -wal and -shm files beside the database.
        let fix = match me {
            Some(uid) => format!(
                "give {who} the right to write there and in its directory (chown {uid} {}, or a mode that lets it write) or run datacube as the owner",
                dir.display()
            ),
            None => "make it and its directory writable by the user datacube runs as".to_owned(),
        };
        Some(format!(
            "{name} is not writable by {who} (it belongs to uid {}, mode {mode:o}): {fix}; \
             in the container image datacube runs as uid 10001",
            meta.uid()
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, error);
        None
    }
}

fn migrate(conn: &Connection, url: &str) -> Result<()> {
    let known = MIGRATIONS.len() as i64;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if !schema::pending(version, known)? {
        return Ok(());
    }
    // All pending migrations in one transaction; the data moves of earlier layouts run after
    // the last schema change, so that they write in the current layout. The version is read
    // again inside it: another process opening the same new file at the same moment (a
    // `serve` and a `sync --status`) may have migrated it meanwhile.
    let apply = || -> Result<i64> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if !schema::pending(version, known)? {
            conn.execute_batch("COMMIT")?;
            return Ok(known);
        }
        for sql in &MIGRATIONS[version as usize..] {
            conn.execute_batch(sql)?;
        }
        if version < 4 {
            crate::schema::move_v3_events(conn)?;
        }
        if version < 5 {
            crate::days::move_v4_rows(conn)?;
        }
        if version < schema::VIEWS_SINCE {
            crate::days::make_plain(
                conn,
                "SELECT appid, endpoint, ref_date, rows, keys FROM stat_day
                 WHERE typeof(rows) = 'blob' AND substr(rows, 1, 4) = x'28b52ffd' LIMIT 256",
            )?;
            conn.execute_batch(&crate::views::script(crate::views::Dialect::Sqlite))?;
        }
        conn.pragma_update(None, "user_version", known)?;
        conn.execute_batch("COMMIT")?;
        Ok(version)
    };
    let version = match apply() {
        Ok(v) if v == known => return Ok(()),
        Ok(v) => v,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(match e {
                StoreError::Sqlite(source) => StoreError::Open {
                    url: url.to_owned(),
                    cause: Box::new(source),
                },
                other => other,
            });
        }
    };
    tracing::info!(from = version, to = known, "database migrated");
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Two processes opening one new file at once (`serve --mirror` and `sync --status`):
    /// one migrates, the others find it done.
    #[test]
    fn a_new_file_opened_by_many_at_once_is_migrated_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("race.db");
        let path = path.to_str().unwrap().to_owned();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || super::Sqlite::open(&path, "sqlite://race.db").map(drop))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
    }
}
