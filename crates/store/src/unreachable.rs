//! Telling a database that cannot be reached yet from one that refuses: connection refused or
//! reset, a name that does not resolve yet, a connect timeout, PostgreSQL starting up, shutting
//! down or out of connections, an SQLite file locked by another process.

use crate::StoreError;

impl StoreError {
    /// Whether this says the database cannot be reached yet — waiting may help (`serve
    /// --database-wait`) — rather than that it refuses or cannot be what was asked (a bad URL,
    /// a refused password, a missing database, a schema newer than this datacube), which
    /// waiting will not change.
    pub fn is_unreachable(&self) -> bool {
        unreachable(self)
    }

    /// What went wrong, without naming the database: for answers anyone may read (`/readyz`
    /// while waiting), which must not tell where the database is.
    pub fn reason(&self) -> String {
        match self {
            StoreError::Open { cause, .. } => crate::describe(cause.as_ref()),
            other => other.to_string(),
        }
    }
}

fn unreachable(e: &StoreError) -> bool {
    match e {
        StoreError::Open { cause, .. } => cause_unreachable(cause.as_ref()),
        StoreError::Postgres(pg) => postgres_unreachable(pg),
        StoreError::Sqlite(e) => sqlite_busy(e),
        _ => false,
    }
}

fn cause_unreachable(cause: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(e) = cause.downcast_ref::<StoreError>() {
        return unreachable(e);
    }
    if let Some(pg) = cause.downcast_ref::<::postgres::Error>() {
        return postgres_unreachable(pg);
    }
    if let Some(e) = cause.downcast_ref::<rusqlite::Error>() {
        return sqlite_busy(e);
    }
    false
}

/// PostgreSQL's answer, or the client's failure to get one, says the server is not there yet.
fn postgres_unreachable(e: &::postgres::Error) -> bool {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // Class 08: connection exceptions. 57P01–57P03: shutting down, crashed, starting up
        // ("the database system is starting up"). 53300: too many connections.
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300");
    }
    if e.is_closed() {
        return true;
    }
    // The client's own failures carry no code: their kinds are told apart by their text,
    // which tokio-postgres fixes per kind — connecting (refused, reset, a name that does not
    // resolve, a connect timeout), a timeout, or the connection failing midway (a server going
    // down during the start). A TLS handshake refused, a password missing or refused and a
    // malformed URL are other kinds: not waited for.
    let kind = e.to_string();
    matches!(
        kind.as_str(),
        "error connecting to server"
            | "timeout waiting for server"
            | "error communicating with the server"
    )
}

/// SQLite's file is busy or locked by another process (its own busy timeout ran out).
fn sqlite_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    #[test]
    fn a_bad_url_or_a_newer_schema_is_not_waited_for() {
        assert!(!unreachable(&StoreError::UnsupportedUrl(
            "mysql://x".into()
        )));
        assert!(!unreachable(&StoreError::TooNew { found: 9, known: 1 }));
        let bad = Store::open("postgres://u@host:notaport/db").unwrap_err();
        assert!(!unreachable(&bad), "{bad}");
    }

    #[test]
    fn a_port_nobody_listens_on_is_waited_for() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let refused = Store::open(&format!("postgres://u:pw@127.0.0.1:{port}/db")).unwrap_err();
        assert!(unreachable(&refused), "{refused}");
    }
}
