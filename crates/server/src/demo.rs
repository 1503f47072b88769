//! Demo data for `serve --demo` and `datacube demo`: a deterministic stream of realistic events
//! (`datacube_engine::demo`), counted through the same ingestion path as `datacube ingest`.

use datacube_store::{Store, StoreError};
use jiff::civil::Date;

use crate::ingest::{ingest_lines, IngestReport, KnownAccounts};

/// The demo account's appid (`wx` + "datacube" in hex).
pub const DEMO_APPID: &str = "wx6461746163756265";
/// The demo account's secret, printed by `serve --demo`. Public: demo use only.
pub const DEMO_SECRET: &str = "64656d6f5f7365637265745f32303236";

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
