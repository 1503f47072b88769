//! Databases for tests: an SQLite file by default, or a fresh PostgreSQL database when
//! [`POSTGRES_ENV`] names a server. The same tests so run against either backend.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// The variable naming the PostgreSQL server that tests create their databases on, as a URL
/// of a database they may connect to (for example `postgres://postgres@127.0.0.1:5432/test`).
pub const POSTGRES_ENV: &str = "DATACUBE_TEST_POSTGRES";

/// The prefix of the databases tests create (`scripts/test` drops them before a run).
pub const DATABASE_PREFIX: &str = "dctest_";

/// The inverse of PostgreSQL's schema version 7 (appid first in every key): for tests that
/// put a database back to an older layout to check a migration.
pub const UNDO_POSTGRES_ACCOUNT_KEYS: &str = "
    ALTER TABLE token DROP CONSTRAINT token_pkey;
    ALTER TABLE token ADD PRIMARY KEY (token);
    DROP INDEX token_by_token;
    ALTER TABLE event_chunk DROP CONSTRAINT event_chunk_pkey;
    ALTER TABLE event_chunk ADD PRIMARY KEY (seq);
    ALTER TABLE event_id_delta DROP CONSTRAINT event_id_delta_pkey;
    ALTER TABLE event_id_delta ADD PRIMARY KEY (seq);
    CREATE INDEX event_id_delta_by_app ON event_id_delta (appid, seq, stamp);
";

/// Whether tests run against PostgreSQL.
pub fn postgres_server() -> Option<String> {
    std::env::var(POSTGRES_ENV).ok().filter(|s| !s.is_empty())
}

/// The URL of a new, empty database for one test: `sqlite://DIR/NAME.db`, or a database
/// created for it on the server of [`POSTGRES_ENV`].
///
/// # Panics
/// If the PostgreSQL server cannot be reached or refuses to create the database: a test run
/// that was asked to use PostgreSQL must not pass without it.
pub fn fresh_database(dir: &Path, name: &str) -> String {
    match postgres_server() {
        None => format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
        Some(server) => {
            static N: AtomicU32 = AtomicU32::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let db = format!(
                "{DATABASE_PREFIX}{}_{}_{nanos}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            let create = format!("CREATE DATABASE {db}");
            let admin = server.clone();
            std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&admin, postgres::NoTls)
                    .unwrap_or_else(|e| panic!("{POSTGRES_ENV}={admin}: cannot connect: {e}"));
                client
                    .batch_execute(&create)
                    .unwrap_or_else(|e| panic!("{create}: {e}"));
            })
            .join()
            .expect("creating a test database");
            with_database(&server, &db)
        }
    }
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    if query.is_empty() {
        format!("{base}/{db}")
    } else {
        format!("{base}/{db}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
