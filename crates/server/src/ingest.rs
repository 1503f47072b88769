//! Ingesting events (NDJSON): each line is parsed and checked; the good lines of a batch are
//! stored and counted in one transaction, the bad ones are reported with their line number.

use std::collections::{BTreeSet, HashMap};

use datacube_store::{Store, StoreError};
use jiff::civil::Date;
use serde::Serialize;

/// One refused line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// 1-based line number in the input.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// What an ingestion did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    /// Events stored and counted.
    pub accepted: usize,
    /// Events whose `id` had been accepted before: ignored.
    pub duplicates: usize,
    /// Lines refused, with the reason.
    pub rejected: Vec<Rejected>,
}

impl IngestReport {
    /// Adds another batch's report to this one.
    pub fn merge(&mut self, other: IngestReport) {
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        self.rejected.extend(other.rejected);
    }
}

/// Whether accounts exist, remembered across batches.
#[derive(Debug, Default)]
pub struct KnownAccounts(HashMap<String, bool>);

/// Ingests one batch of numbered lines (blank lines are skipped). Returns the report and the
/// accounts whose statistics changed.
pub async fn ingest_lines(
    store: &Store,
    lines: &[(usize, String)],
    yesterday: Date,
    known: &mut KnownAccounts,
) -> Result<(IngestReport, BTreeSet<String>), StoreError> {
    let mut report = IngestReport::default();
    let mut good = Vec::with_capacity(lines.len());
    for (number, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let event = match datacube_engine::parse_line(line) {
            Ok(event) => event,
            Err(e) => {
                report.rejected.push(Rejected {
                    line: *number,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let exists = match known.0.get(&event.appid) {
            Some(exists) => *exists,
            None => {
                let exists = store.account(&event.appid).await?.is_some();
                known.0.insert(event.appid.clone(), exists);
                exists
            }
        };
        if !exists {
            report.rejected.push(Rejected {
                line: *number,
                reason: format!(
                    "no account {}; add it first (datacube account add)",
                    event.appid
                ),
            });
            continue;
        }
        good.push(event);
    }
    let appids: Vec<String> = good.iter().map(|e| e.appid.clone()).collect();
    let outcome = store.ingest(good, yesterday).await?;
    let mut changed = BTreeSet::new();
    for (appid, accepted) in appids.into_iter().zip(outcome.accepted) {
        if accepted {
            report.accepted += 1;
            changed.insert(appid);
        } else {
            report.duplicates += 1;
        }
    }
    Ok((report, changed))
}
