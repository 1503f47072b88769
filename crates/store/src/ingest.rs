//! Ingesting events (NDJSON): each line is parsed and checked; the good lines of a batch are
//! stored and counted in one transaction, the bad ones are reported with their line number.

use std::collections::{BTreeSet, HashMap};

use crate::{Store, StoreError};
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
pub async fn ingest_lines<L: AsRef<str>>(
    store: &Store,
    lines: &[(usize, L)],
    yesterday: Date,
    known: &mut KnownAccounts,
) -> Result<(IngestReport, BTreeSet<String>), StoreError> {
    let parsed = parse_lines(store, lines, known).await?;
    parsed.store(store, yesterday).await
}

/// A batch parsed, checked and prepared for storing, not stored yet.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The accounts of the good events, and which one each event is of, in order.
    appids: Vec<String>,
    account_of: Vec<u32>,
    batch: crate::Batch,
    rejected: Vec<Rejected>,
}

impl Parsed {
    /// Stores the good events in one transaction and reports the batch.
    pub async fn store(
        self,
        store: &Store,
        yesterday: Date,
    ) -> Result<(IngestReport, BTreeSet<String>), StoreError> {
        let (appids, account_of) = (self.appids, self.account_of);
        let outcome = store.ingest_batch(self.batch, yesterday).await?;
        let mut report = IngestReport {
            rejected: self.rejected,
            ..IngestReport::default()
        };
        let mut changed = BTreeSet::new();
        for (account, accepted) in account_of.into_iter().zip(outcome.accepted) {
            if accepted {
                report.accepted += 1;
                if let Some(appid) = appids.get(account as usize) {
                    if !changed.contains(appid) {
                        changed.insert(appid.clone());
                    }
                }
            } else {
                report.duplicates += 1;
            }
        }
        Ok((report, changed))
    }
}

/// Parses one batch of numbered lines (blank lines are skipped) and checks that their
/// accounts exist; bad lines are set aside with the reason.
pub async fn parse_lines<L: AsRef<str>>(
    store: &Store,
    lines: &[(usize, L)],
    known: &mut KnownAccounts,
) -> Result<Parsed, StoreError> {
    let mut events = Vec::with_capacity(lines.len());
    let mut rejected = Vec::new();
    for (number, line) in lines {
        let line = line.as_ref();
        if line.trim().is_empty() {
            continue;
        }
        let event = match datacube_engine::parse_line(line) {
            Ok(event) => event,
            Err(e) => {
                rejected.push(Rejected {
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
            rejected.push(Rejected {
                line: *number,
                reason: format!(
                    "no account {}; add it first (datacube account add)",
                    event.appid
                ),
            });
            continue;
        }
        events.push(event);
    }
    let mut appids: Vec<String> = Vec::new();
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut last: Option<u32> = None;
    let account_of = events
        .iter()
        .map(|e| {
            // Events of one account usually come together.
            if let Some(i) = last.filter(|i| appids[*i as usize] == e.appid) {
                return i;
            }
            let i = *index.entry(e.appid.clone()).or_insert_with(|| {
                appids.push(e.appid.clone());
                (appids.len() - 1) as u32
            });
            last = Some(i);
            i
        })
        .collect();
    Ok(Parsed {
        appids,
        account_of,
        batch: crate::Batch::prepare(events)?,
        rejected,
    })
}
