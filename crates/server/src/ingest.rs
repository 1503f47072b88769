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
    let parsed = parse_lines(store, lines, known).await?;
    parsed.store(store, yesterday).await
}

/// A batch parsed and checked, not stored yet.
#[derive(Debug, Default)]
pub struct Parsed {
    events: Vec<datacube_engine::Event>,
    rejected: Vec<Rejected>,
}

impl Parsed {
    /// Stores the good events in one transaction and reports the batch.
    pub async fn store(
        self,
        store: &Store,
        yesterday: Date,
    ) -> Result<(IngestReport, BTreeSet<String>), StoreError> {
        let appids: Vec<String> = self.events.iter().map(|e| e.appid.clone()).collect();
        let outcome = store.ingest(self.events, yesterday).await?;
        let mut report = IngestReport {
            rejected: self.rejected,
            ..IngestReport::default()
        };
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
}

/// Parses one batch of numbered lines (blank lines are skipped) and checks that their
/// accounts exist; bad lines are set aside with the reason.
pub async fn parse_lines(
    store: &Store,
    lines: &[(usize, String)],
    known: &mut KnownAccounts,
) -> Result<Parsed, StoreError> {
    let mut parsed = Parsed {
        events: Vec::with_capacity(lines.len()),
        rejected: Vec::new(),
    };
    for (number, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let event = match datacube_engine::parse_line(line) {
            Ok(event) => event,
            Err(e) => {
                parsed.rejected.push(Rejected {
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
            parsed.rejected.push(Rejected {
                line: *number,
                reason: format!(
                    "no account {}; add it first (datacube account add)",
                    event.appid
                ),
            });
            continue;
        }
        parsed.events.push(event);
    }
    Ok(parsed)
}
