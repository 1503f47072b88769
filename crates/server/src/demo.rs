//! Demo data for `serve --demo` and `datacube demo`: a deterministic stream of realistic events
//! (`datacube_engine::demo`), counted through the same ingestion path as `datacube ingest`.

use datacube_api::date::add_days;
use datacube_store::{AccountRecord, Store, StoreError};
use jiff::civil::Date;

use datacube_api::clock::Clock;

use datacube_store::ingest::{ingest_lines, IngestReport, KnownAccounts};

/// The demo account's appid (`wx` + "datacube" in hex).
pub const DEMO_APPID: &str = "wx6461746163756265";
/// The demo account's secret, printed by `serve --demo`. Public: demo use only.
pub const DEMO_SECRET: &str = "64656d6f5f7365637265745f32303236";

/// Creates (or resets) the demo account and fills it with `days` days up to yesterday by
/// `clock`; returns the first and last day.
pub async fn setup(store: &Store, clock: &Clock, days: u32) -> Result<(Date, Date), StoreError> {
    let hash = tokio::task::spawn_blocking(|| datacube_api::account::hash_secret(DEMO_SECRET))
        .await
        .map_err(|e| StoreError::Task(format!("hashing the demo secret: {e}")))?;
    store
        .put_account(AccountRecord {
            appid: DEMO_APPID.into(),
            secret_hash: hash,
            verified: true,
            created_at: clock.unix(),
            incarnation: 0, // drawn by the store
        })
        .await?;
    // Generate up to yesterday, so that the data is there the moment it becomes ready.
    let last = add_days(datacube_api::date::china_date(clock.unix()), -1);
    let days = days.clamp(1, 3650);
    let report = seed(store, DEMO_APPID, last, days, 2026, last).await?;
    tracing::info!(
        new_events = report.accepted,
        already_there = report.duplicates,
        days,
        "demo statistics ready"
    );
    let first = add_days(last, -(i64::from(days) - 1)).max(datacube_api::date::FIRST_DAY);
    Ok((first, last))
}

/// Lines per ingestion transaction.
const BATCH: usize = 20_000;

/// Generates `days` days of events for `appid` ending on `last` and ingests them; `yesterday`
/// is the China-time day before the (emulated) now. The same seed gives the same events with the
/// same ids, so seeding twice adds nothing.
pub async fn seed(
    store: &Store,
    appid: &str,
    last: Date,
    days: u32,
    seed: u64,
    yesterday: Date,
) -> Result<IngestReport, StoreError> {
    let lines = datacube_engine::demo::events(appid, last, days, seed);
    let mut report = IngestReport::default();
    let mut known = KnownAccounts::default();
    for (n, chunk) in lines.chunks(BATCH).enumerate() {
        let numbered: Vec<(usize, String)> = chunk
            .iter()
            .enumerate()
            .map(|(i, l)| (n * BATCH + i + 1, l.clone()))
            .collect();
        let (done, _) = ingest_lines(store, &numbered, yesterday, &mut known).await?;
        report.merge(done);
    }
    Ok(report)
}
