//! Ingesting events (NDJSON): each line is parsed and checked; the good lines of a batch are
//! stored and counted in one transaction, the bad ones are reported with their line number.

use std::collections::{BTreeSet, BinaryHeap, HashMap};

use crate::{Store, StoreError};
use jiff::civil::Date;
use serde::Serialize;

/// One refused line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Rejected {
    /// 1-based line number in the input.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Rejected lines named in a report at most; the others are counted.
pub const NAMED_REJECTIONS: usize = 1000;
/// A reason is cut to this many characters (it may quote the line).
const REASON_CHARS: usize = 300;

/// Refused lines: every one counted, the first `named` of them (by line number, whatever
/// order they come in) kept with their reason — memory stays bounded however many lines are
/// bad.
#[derive(Debug, Clone)]
pub struct Rejections {
    named: usize,
    kept: BinaryHeap<Rejected>,
    total: usize,
}

impl Default for Rejections {
    fn default() -> Rejections {
        Rejections::keeping(NAMED_REJECTIONS)
    }
}

impl Rejections {
    /// Keeping the first `named` lines' reasons.
    pub fn keeping(named: usize) -> Rejections {
        Rejections {
            named,
            kept: BinaryHeap::new(),
            total: 0,
        }
    }

    /// Line `line` is refused for `reason`.
    pub fn push(&mut self, line: usize, reason: impl Into<String>) {
        self.total += 1;
        if self.kept.len() >= self.named && self.kept.peek().is_some_and(|r| r.line < line) {
            return;
        }
        let mut reason = reason.into();
        if let Some((cut, _)) = reason.char_indices().nth(REASON_CHARS) {
            reason.truncate(cut);
            reason.push('…');
        }
        self.kept.push(Rejected { line, reason });
        if self.kept.len() > self.named {
            self.kept.pop();
        }
    }

    /// Every line refused so far.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The lines kept, by line number.
    pub fn named(&self) -> Vec<Rejected> {
        self.kept.clone().into_sorted_vec()
    }

    /// Adds `other`'s.
    pub fn merge(&mut self, other: Rejections) {
        let more = other.total - other.kept.len();
        for r in other.kept {
            self.push(r.line, r.reason);
        }
        self.total += more;
    }
}

/// What an ingestion did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    /// Events stored and counted.
    pub accepted: usize,
    /// Events whose `id` had been accepted before: ignored.
    pub duplicates: usize,
    /// Lines refused, with the reason: the first [`NAMED_REJECTIONS`] of them.
    pub rejected: Vec<Rejected>,
    /// Lines refused in all.
    pub rejected_total: usize,
}

impl IngestReport {
    /// Adds another batch's report to this one.
    pub fn merge(&mut self, other: IngestReport) {
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        let mut rejected = Rejections::default();
        for r in self.rejected.drain(..).chain(other.rejected) {
            rejected.push(r.line, r.reason);
        }
        self.rejected = rejected.named();
        self.rejected_total += other.rejected_total;
    }
}

/// The accounts seen, remembered across batches: the incarnation each was when first seen,
/// `None` for an appid with no account.
#[derive(Debug, Default)]
pub struct KnownAccounts(HashMap<String, Option<i64>>);

/// Ingests one batch of numbered lines (blank lines are skipped), its statistics recomputed
/// in the same transaction. Returns the report and the accounts whose statistics changed.
pub async fn ingest_lines<L: AsRef<str>>(
    store: &Store,
    lines: &[(usize, L)],
    yesterday: Date,
    known: &mut KnownAccounts,
) -> Result<(IngestReport, BTreeSet<String>), StoreError> {
    let parsed = parse_lines(store, lines, known).await?;
    parsed.store(store, Recompute::Now { yesterday }).await
}

/// When the statistics of a batch's events are recomputed.
#[derive(Debug, Clone, Copy)]
pub enum Recompute {
    /// In the transaction that stores them: their periods are fresh when it commits, at a
    /// cost that grows with the account's history (followers from the first follow on).
    Now { yesterday: Date },
    /// When they can first be read (see [`Store::ingest_live`]): a batch costs what it holds.
    WhenRead,
}

/// A batch parsed, checked and prepared for storing, not stored yet.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The accounts of the good events, and which one each event is of, in order, and its
    /// line.
    appids: Vec<String>,
    account_of: Vec<u32>,
    lines: Vec<usize>,
    batch: crate::Batch,
    rejected: Rejections,
}

impl Parsed {
    /// Stores the good events in one transaction and reports the batch.
    pub async fn store(
        self,
        store: &Store,
        recompute: Recompute,
    ) -> Result<(IngestReport, BTreeSet<String>), StoreError> {
        let (appids, account_of) = (self.appids, self.account_of);
        let outcome = match recompute {
            Recompute::Now { yesterday } => store.ingest_batch(self.batch, yesterday).await?,
            Recompute::WhenRead => store.ingest_live(self.batch).await?,
        };
        let mut rejected = self.rejected;
        let mut report = IngestReport::default();
        let mut changed = BTreeSet::new();
        let gone: Vec<usize> = appids
            .iter()
            .enumerate()
            .filter(|(_, a)| outcome.gone.contains(a))
            .map(|(i, _)| i)
            .collect();
        for ((account, accepted), line) in
            account_of.into_iter().zip(outcome.accepted).zip(self.lines)
        {
            if gone.contains(&(account as usize)) {
                // Removed (or removed and added again) while this batch was on its way.
                rejected.push(
                    line,
                    format!(
                        "account {} was removed before its events were stored",
                        appids[account as usize]
                    ),
                );
            } else if accepted {
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
        report.rejected = rejected.named();
        report.rejected_total = rejected.total();
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
    let mut numbers = Vec::with_capacity(lines.len());
    let mut rejected = Rejections::default();
    for (number, line) in lines {
        let line = line.as_ref();
        if line.trim().is_empty() {
            continue;
        }
        let event = match datacube_engine::parse_line(line) {
            Ok(event) => event,
            Err(e) => {
                rejected.push(*number, e.to_string());
                continue;
            }
        };
        let incarnation = match known.0.get(&event.appid) {
            Some(incarnation) => *incarnation,
            None => {
                let incarnation = store.account(&event.appid).await?.map(|a| a.incarnation);
                known.0.insert(event.appid.clone(), incarnation);
                incarnation
            }
        };
        if incarnation.is_none() {
            rejected.push(
                *number,
                format!(
                    "no account {}; add it first (datacube account add)",
                    event.appid
                ),
            );
            continue;
        }
        events.push(event);
        numbers.push(*number);
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
    // Stored only for the accounts as they were when their events were checked.
    let fence: Vec<(String, i64)> = appids
        .iter()
        .filter_map(|a| Some((a.clone(), known.0.get(a).copied().flatten()?)))
        .collect();
    Ok(Parsed {
        appids,
        account_of,
        lines: numbers,
        batch: crate::Batch::prepare(events)?.fenced(fence),
        rejected,
    })
}
