//! `serve --database-wait`: the database opened again and again, with a growing pause, until
//! it answers or the wait is over — for a server that starts beside its database (compose,
//! Kubernetes, a PostgreSQL restart) and must not exit only because it came up first.
//!
//! Only a database that cannot be reached yet is waited for: a connection refused or reset, a
//! name that does not resolve yet, a timeout, PostgreSQL starting up, shutting down or out of
//! connections. Anything else — a bad URL, a refused password, a missing database, a schema
//! newer than this datacube — fails at once, as waiting would not change it.

use std::time::Duration;

use anyhow::Result;
use datacube_server::waiting::Starting;
use datacube_store::{DatabaseUrl, Store, StoreError};
use tokio::time::Instant;

/// The pause after the first failed attempt; doubled after each, up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// Opens (creating and migrating) the database of `url`, trying again while it cannot be
/// reached, until `wait` is over (0: once; an attempt begun before the end may finish after
/// it). Each failed attempt is logged at warn, and said by `starting` (`/readyz`); `waiting`
/// is called once, at the first failure that will be tried again. Past the wait the error
/// names the last reason. The URL is never shown with its password (the store's errors name
/// it redacted).
pub async fn open(
    url: &DatabaseUrl,
    wait: Duration,
    starting: &Starting,
    mut waiting: impl FnMut(),
) -> Result<Store> {
    let deadline = Instant::now() + wait;
    let mut pause = FIRST_PAUSE;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        // An attempt is not cut short: once connected it migrates, which takes what it takes.
        // Connecting to a host that drops packets is bounded by the system's TCP timeout, or
        // by `connect_timeout=` in the URL.
        let e = match open_once(url).await {
            Ok(store) => {
                if attempts > 1 {
                    tracing::info!(database = %url, attempts, "the database is open");
                }
                return Ok(store);
            }
            Err(e) => e,
        };
        if wait.is_zero() || !e.is_unreachable() {
            return Err(e.into());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(anyhow::Error::new(e).context(format!(
                "the database was unavailable for --database-wait {} ({attempts} attempts)",
                shown(wait)
            )));
        }
        let next = pause.min(deadline - now);
        tracing::warn!(
            database = %url,
            attempt = attempts,
            error = %e,
            retry_in_ms = next.as_millis() as u64,
            "the database is unavailable; trying again"
        );
        // Anyone may read /readyz: the reason, not where the database is (the log names it).
        starting.set_reason(format!("database unavailable: {}", e.reason()));
        if attempts == 1 {
            waiting();
        }
        tokio::time::sleep(next).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// One attempt, on a thread of its own (connecting and migrating block): not on tokio's
/// blocking pool, which the runtime waits for when it ends — an attempt under way (a TCP
/// connect to a host that drops packets may take minutes) must not hold up an exit on SIGTERM.
async fn open_once(url: &DatabaseUrl) -> Result<Store, StoreError> {
    let url = url.clone();
    let runtime = tokio::runtime::Handle::current();
    let (done, opened) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("datacube-open".into())
        .spawn(move || {
            // In the runtime's context, as a command opening its database is.
            let _entered = runtime.enter();
            let _ = done.send(Store::open(url.expose()));
        })
        .map_err(|e| {
            StoreError::Task(format!("cannot start a thread to open the database: {e}"))
        })?;
    opened
        .await
        .map_err(|_| StoreError::Task("opening the database panicked".into()))?
}

/// `wait` as a person reads it: `60s`, `2m`, `1m30s`.
fn shown(wait: Duration) -> String {
    let secs = wait.as_secs();
    match (secs / 60, secs % 60, wait.subsec_millis()) {
        (0, s, 0) => format!("{s}s"),
        (m, 0, 0) => format!("{m}m"),
        (m, s, 0) => format!("{m}m{s}s"),
        _ => format!("{:.3}s", wait.as_secs_f64()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_read_as_they_are_written() {
        assert_eq!(shown(Duration::from_secs(60)), "1m");
        assert_eq!(shown(Duration::from_secs(2)), "2s");
        assert_eq!(shown(Duration::from_secs(90)), "1m30s");
        assert_eq!(shown(Duration::from_millis(1500)), "1.500s");
    }
}
