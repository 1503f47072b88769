//! Bulk loading: events in any order put in (account, China day, arrival) order in bounded
//! memory, so that a whole file costs one pass over its events whatever its order.
//!
//! The caller parses lines into [`Piece`]s (on as many threads as it likes: a piece is plain
//! data), numbering each event with its arrival (the line number). A [`Sorter`] gathers the
//! pieces, each event compactly encoded (the store's own event encoding, without the appid),
//! and when its memory budget is full sorts what it holds and writes it to an unnamed temporary
//! file (a *run*), on a thread of its own while the next pieces come in. [`Sorter::finish`]
//! merges the runs and what is left in memory into one stream, [`Sorted`], which the store
//! takes account after account ([`crate::Store::ingest_sorted`]).
//!
//! Sorting by day inside an account is what makes the cost independent of the order of the
//! input: each account is stored in a few large batches, each touching a contiguous span of
//! days, and its statistics are computed once. Among events of one account and day the
//! arrival order is kept, so of two events with the same id on the same day the first one in
//! the input is the one counted, as when the file is ingested in batches.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::PathBuf;
use std::sync::mpsc::SyncSender;

use datacube_api::date::{china_date, date_to_epoch_day};
use datacube_engine::Event;
use rustc_hash::FxHashMap;

use crate::{Result, StoreError};

/// One event's place in a sort buffer: its key (account << 32 | day), its arrival, and where
/// its bytes are in the buffer's arena.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: u64,
    seq: u64,
    at: usize,
}

/// Events parsed by one worker, ready to hand to a [`Sorter`].
#[derive(Debug, Default)]
pub struct Piece {
    appids: Vec<String>,
    index: FxHashMap<String, u32>,
    entries: Vec<Entry>,
    /// Each event: its length (u32, little-endian) and its encoding.
    arena: Vec<u8>,
}

impl Piece {
    /// An empty piece.
    pub fn new() -> Piece {
        Piece::default()
    }

    /// Adds `event`, which arrived `seq`-th (numbers must be distinct across the pieces of
    /// one sorter; line numbers are). Refuses, saying why, an event outside the years 1970 to
    /// 9998 (what the store can hold; the event format allows no other).
    pub fn push(&mut self, seq: u64, event: &Event) -> std::result::Result<(), String> {
        let day = date_to_epoch_day(china_date(event.time));
        if !(0..1 << 22).contains(&day) {
            return Err(format!(
                "time {} is outside the years 1970 to 9998",
                event.time
            ));
        }
        let account = match self.index.get(event.appid.as_str()) {
            Some(a) => *a,
            None => {
                let a = self.appids.len() as u32;
                self.appids.push(event.appid.clone());
                self.index.insert(event.appid.clone(), a);
                a
            }
        };
        let at = self.arena.len();
        self.arena.extend_from_slice(&[0; 4]);
        crate::events::encode_into(event, &mut self.arena);
        let len = (self.arena.len() - at - 4) as u32;
        self.arena[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.entries.push(Entry {
            key: (u64::from(account) << 32) | day as u64,
            seq,
            at,
        });
        Ok(())
    }

    /// The accounts of the piece's events.
    pub fn appids(&self) -> &[String] {
        &self.appids
    }

    /// How many events the piece holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the piece holds no event.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What a sort buffer of `entries` events and `arena` bytes takes in memory.
fn footprint(entries: usize, arena: usize) -> usize {
    entries * std::mem::size_of::<Entry>() + arena
}

/// One sorted run of events in memory.
struct Buffer {
    entries: Vec<Entry>,
    arena: Vec<u8>,
}

impl Buffer {
    fn sort(&mut self) {
        self.entries.sort_unstable_by_key(|e| (e.key, e.seq));
    }

    fn bytes(&self, e: &Entry) -> &[u8] {
        let len = u32::from_le_bytes(self.arena[e.at..e.at + 4].try_into().unwrap_or_default());
        &self.arena[e.at + 4..e.at + 4 + len as usize]
    }

    /// Writes the (sorted) buffer to an unnamed temporary file: per event its key, arrival,
    /// length and bytes.
    fn spill(&self, dir: &std::path::Path) -> Result<std::fs::File> {
        let file = tempfile::tempfile_in(dir).map_err(|e| spill_error(dir, &e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        for e in &self.entries {
            let bytes = self.bytes(e);
            out.write_all(&e.key.to_le_bytes())
                .and_then(|()| out.write_all(&e.seq.to_le_bytes()))
                .and_then(|()| out.write_all(&(bytes.len() as u32).to_le_bytes()))
                .and_then(|()| out.write_all(bytes))
                .map_err(|e| spill_error(dir, &e))?;
        }
        let mut file = out.into_inner().map_err(|e| spill_error(dir, e.error()))?;
        file.rewind().map_err(|e| spill_error(dir, &e))?;
        Ok(file)
    }
}

fn spill_error(dir: &std::path::Path, e: &std::io::Error) -> StoreError {
    StoreError::Spill(format!(
        "writing sorted events to a temporary file in {}: {e}",
        dir.display()
    ))
}

/// Gathers events in any order and gives them back in (account, day, arrival) order,
/// keeping at most about `memory` bytes of them in memory (twice that while a full buffer is
/// being written out).
pub struct Sorter {
    appids: Vec<String>,
    index: FxHashMap<String, u32>,
    current: Buffer,
    /// The run being written, on its own thread.
    writing: Option<std::thread::JoinHandle<Result<std::fs::File>>>,
    runs: Vec<std::fs::File>,
    memory: usize,
    dir: PathBuf,
    events: u64,
}

impl Sorter {
    /// A sorter holding up to `memory` bytes of events before it writes them, sorted, to
    /// temporary files in `dir`.
    pub fn new(memory: usize, dir: PathBuf) -> Sorter {
        Sorter {
            appids: Vec::new(),
            index: FxHashMap::default(),
            current: Buffer {
                entries: Vec::new(),
                arena: Vec::new(),
            },
            writing: None,
            runs: Vec::new(),
            memory: memory.max(1),
            dir,
            events: 0,
        }
    }

    /// Takes a piece's events, but those of the accounts `keep` refuses: their arrival
    /// numbers are passed to `refused` with the appid.
    pub fn add(
        &mut self,
        piece: Piece,
        keep: impl Fn(&str) -> bool,
        mut refused: impl FnMut(u64, &str),
    ) -> Result<()> {
        let global: Vec<Option<u32>> = piece
            .appids
            .iter()
            .map(|appid| {
                keep(appid).then(|| match self.index.get(appid.as_str()) {
                    Some(a) => *a,
                    None => {
                        let a = self.appids.len() as u32;
                        self.appids.push(appid.clone());
                        self.index.insert(appid.clone(), a);
                        a
                    }
                })
            })
            .collect();
        let base = self.current.arena.len();
        self.current.arena.extend_from_slice(&piece.arena);
        self.current.entries.reserve(piece.entries.len());
        for e in &piece.entries {
            let local = (e.key >> 32) as usize;
            match global[local] {
                Some(a) => {
                    self.current.entries.push(Entry {
                        key: (u64::from(a) << 32) | (e.key & 0xFFFF_FFFF),
                        seq: e.seq,
                        at: base + e.at,
                    });
                    self.events += 1;
                }
                None => refused(e.seq, &piece.appids[local]),
            }
        }
        if footprint(self.current.entries.len(), self.current.arena.len()) >= self.memory {
            self.spill()?;
        }
        Ok(())
    }

    /// How many events were taken.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// How many runs were written to temporary files so far.
    pub fn runs(&self) -> usize {
        self.runs.len() + usize::from(self.writing.is_some())
    }

    fn wait_writing(&mut self) -> Result<()> {
        if let Some(w) = self.writing.take() {
            let file = w.join().map_err(|_| {
                StoreError::Spill("the thread writing sorted events failed".into())
            })??;
            self.runs.push(file);
        }
        Ok(())
    }

    /// Sorts the buffer and writes it out on a thread of its own (waiting for the previous
    /// one first, so that at most two buffers exist).
    fn spill(&mut self) -> Result<()> {
        self.wait_writing()?;
        let mut full = std::mem::replace(
            &mut self.current,
            Buffer {
                entries: Vec::new(),
                arena: Vec::new(),
            },
        );
        let dir = self.dir.clone();
        let spawned = std::thread::Builder::new()
            .name("datacube-sort".into())
            .spawn(move || {
                full.sort();
                full.spill(&dir)
            });
        match spawned {
            Ok(h) => self.writing = Some(h),
            Err(e) => {
                return Err(StoreError::Spill(format!(
                    "no thread to sort events on: {e}"
                )))
            }
        }
        Ok(())
    }

    /// Every event taken, in (account, day, arrival) order.
    pub fn finish(mut self) -> Result<Sorted> {
        self.wait_writing()?;
        let mut last = std::mem::replace(
            &mut self.current,
            Buffer {
                entries: Vec::new(),
                arena: Vec::new(),
            },
        );
        last.sort();
        let mut sources: Vec<Source> = self
            .runs
            .into_iter()
            .map(|f| Source::File(BufReader::with_capacity(1 << 20, f), Vec::new()))
            .collect();
        sources.push(Source::Memory(last, 0));
        let mut sorted = Sorted {
            appids: self.appids,
            sources,
            heap: BinaryHeap::new(),
            events: self.events,
        };
        for i in 0..sorted.sources.len() {
            if let Some(head) = sorted.sources[i].advance()? {
                sorted.heap.push(Reverse((head.0, head.1, i)));
            }
        }
        Ok(sorted)
    }
}

/// A sorted run: a file being read back (with its current event's bytes), or the last
/// buffer, still in memory (with the position of its current event).
enum Source {
    File(BufReader<std::fs::File>, Vec<u8>),
    Memory(Buffer, usize),
}

impl Source {
    /// Moves to the next event; returns its key and arrival.
    fn advance(&mut self) -> Result<Option<(u64, u64)>> {
        match self {
            Source::File(r, bytes) => {
                let mut head = [0u8; 20];
                match r.read_exact(&mut head) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                    Err(e) => return Err(read_error(&e)),
                }
                let key = u64::from_le_bytes(head[0..8].try_into().unwrap_or_default());
                let seq = u64::from_le_bytes(head[8..16].try_into().unwrap_or_default());
                let len = u32::from_le_bytes(head[16..20].try_into().unwrap_or_default());
                bytes.resize(len as usize, 0);
                r.read_exact(bytes).map_err(|e| read_error(&e))?;
                Ok(Some((key, seq)))
            }
            Source::Memory(buffer, next) => {
                let Some(e) = buffer.entries.get(*next) else {
                    // Done: give the memory back now.
                    *buffer = Buffer {
                        entries: Vec::new(),
                        arena: Vec::new(),
                    };
                    return Ok(None);
                };
                *next += 1;
                Ok(Some((e.key, e.seq)))
            }
        }
    }

    /// The current event's bytes.
    fn bytes(&self) -> &[u8] {
        match self {
            Source::File(_, bytes) => bytes,
            Source::Memory(buffer, next) => buffer.bytes(&buffer.entries[*next - 1]),
        }
    }
}

fn read_error(e: &std::io::Error) -> StoreError {
    StoreError::Spill(format!(
        "reading sorted events back from a temporary file: {e}"
    ))
}

/// Events in (account, day, arrival) order: what [`Sorter::finish`] gives.
pub struct Sorted {
    appids: Vec<String>,
    sources: Vec<Source>,
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: u64,
}

impl Sorted {
    /// How many events there are.
    pub fn len(&self) -> u64 {
        self.events
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The next event, decoded, with its account's number (events of one account are
    /// consecutive).
    pub(crate) fn next_event(&mut self) -> Result<Option<(u32, Event)>> {
        let Some(Reverse((key, _, i))) = self.heap.pop() else {
            return Ok(None);
        };
        let account = (key >> 32) as u32;
        let appid = self
            .appids
            .get(account as usize)
            .ok_or_else(|| StoreError::Spill("a sorted event names no known account".into()))?;
        let event = crate::events::decode_one(appid, self.sources[i].bytes())?;
        if let Some(head) = self.sources[i].advance()? {
            self.heap.push(Reverse((head.0, head.1, i)));
        }
        Ok(Some((account, event)))
    }
}

/// One batch of a bulk load, prepared; `partial` is the account whose events go on in the
/// next batch, if any.
pub(crate) struct Part {
    pub(crate) batch: crate::Batch,
    pub(crate) partial: Option<String>,
}

/// Decodes the sorted events and cuts them into batches of about `batch` events: at an
/// account's end once the batch is full; an account is kept whole up to twice `batch`
/// events (the accounts before it are sent on their own when it grows past that), and only
/// an account that alone holds more is cut, every twice `batch`. Sends each batch, prepared,
/// and the last one even when empty (it completes the account before it); stops when the
/// receiver is gone.
pub(crate) fn produce(mut sorted: Sorted, batch: usize, send: &SyncSender<Result<Part>>) {
    let mut run = || -> Result<()> {
        let mut events: Vec<Event> = Vec::with_capacity(2 * batch.min(1 << 20));
        let mut current: Option<u32> = None;
        // Where the current account's events begin in `events`, and how many accounts it holds.
        let mut start = 0;
        let mut accounts = 0;
        let emit = |events: Vec<Event>, partial: Option<String>| -> Result<bool> {
            let part = Part {
                batch: crate::Batch::prepare(events)?,
                partial,
            };
            Ok(send.send(Ok(part)).is_ok())
        };
        loop {
            let Some((account, event)) = sorted.next_event()? else {
                emit(events, None)?;
                return Ok(());
            };
            if current != Some(account) {
                current = Some(account);
                // Full, or as many accounts as a transaction locks one by one.
                if events.len() >= batch || accounts >= crate::scope::MOST_KEYS {
                    let full =
                        std::mem::replace(&mut events, Vec::with_capacity(2 * batch.min(1 << 20)));
                    accounts = 0;
                    if !emit(full, None)? {
                        return Ok(());
                    }
                }
                start = events.len();
                accounts += 1;
            } else if events.len() >= 2 * batch {
                let sent = if start > 0 {
                    // The whole accounts before this one.
                    let rest = events.split_off(start);
                    let whole = std::mem::replace(&mut events, rest);
                    start = 0;
                    accounts = 1;
                    emit(whole, None)?
                } else {
                    let full =
                        std::mem::replace(&mut events, Vec::with_capacity(2 * batch.min(1 << 20)));
                    emit(full, Some(event.appid.clone()))?
                };
                if !sent {
                    return Ok(());
                }
            }
            events.push(event);
        }
    };
    if let Err(e) = run() {
        let _ = send.send(Err(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datacube_engine::Kind;

    fn event(appid: &str, time: i64, id: u64) -> Event {
        Event {
            appid: appid.into(),
            id: Some(format!("e{id}")),
            time,
            kind: Kind::Reply {
                cost_ms: id,
                ok: true,
            },
        }
    }

    #[test]
    fn any_order_comes_out_by_account_day_and_arrival_across_runs() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut events: Vec<(u64, Event)> = (0..20_000u64)
            .map(|i| {
                let appid = format!("wxsort{:012}", rng.random_range(0..7));
                let time = 1_735_660_800 + rng.random_range(0..400 * 86_400);
                (i + 1, event(&appid, time, i))
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        // Small enough a budget to write several runs.
        let mut sorter = Sorter::new(0, dir.path().to_owned());
        let mut refused = Vec::new();
        for chunk in events.chunks(1_000) {
            let mut piece = Piece::new();
            for (seq, e) in chunk {
                piece.push(*seq, e).unwrap();
            }
            sorter
                .add(
                    piece,
                    |appid| !appid.ends_with("6"),
                    |seq, appid| refused.push((seq, appid.to_owned())),
                )
                .unwrap();
        }
        assert!(sorter.runs() >= 2, "{} runs", sorter.runs());
        let mut sorted = sorter.finish().unwrap();
        let mut out = Vec::new();
        let mut accounts = Vec::new();
        while let Some((account, e)) = sorted.next_event().unwrap() {
            if accounts.last() != Some(&account) {
                assert!(!accounts.contains(&account), "an account's events together");
                accounts.push(account);
            }
            out.push(e);
        }
        events.retain(|(_, e)| !e.appid.ends_with('6'));
        assert_eq!(refused.len() + events.len(), 20_000);
        assert_eq!(out.len(), events.len());
        // Within an account: by China day, then arrival.
        let mut expected = events.clone();
        let mut rank: FxHashMap<&str, usize> = FxHashMap::default();
        for e in &out {
            let next = rank.len();
            rank.entry(e.appid.as_str()).or_insert(next);
        }
        expected.sort_by_key(|(seq, e)| {
            (
                rank[e.appid.as_str()],
                date_to_epoch_day(china_date(e.time)),
                *seq,
            )
        });
        let expected: Vec<Event> = expected.into_iter().map(|(_, e)| e).collect();
        assert_eq!(out, expected);
    }

    /// A load of many small accounts is cut into transactions of at most
    /// [`crate::scope::MOST_KEYS`] accounts (each locks its accounts one by one), every event
    /// in exactly one of them; a large account still fills one by itself.
    #[test]
    fn transactions_hold_a_bounded_number_of_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let mut sorter = Sorter::new(1 << 30, dir.path().to_owned());
        let mut piece = Piece::new();
        let mut n = 0u64;
        for a in 0..300 {
            let events = if a == 150 { 5_000 } else { 3 };
            for _ in 0..events {
                n += 1;
                piece
                    .push(n, &event(&format!("wxmany{a:012}"), 1_735_700_000, n))
                    .unwrap();
            }
        }
        sorter.add(piece, |_| true, |_, _| {}).unwrap();
        let (send, parts) = std::sync::mpsc::sync_channel(1024);
        produce(sorter.finish().unwrap(), 1_000, &send);
        drop(send);
        let mut seen = 0;
        for part in parts {
            let part = part.unwrap();
            let accounts = part.batch.appids().count();
            assert!(
                accounts <= crate::scope::MOST_KEYS,
                "{accounts} accounts in one transaction"
            );
            seen += part.batch.len();
        }
        assert_eq!(seen as u64, n);
    }
}
