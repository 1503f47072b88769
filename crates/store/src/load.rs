//! Loading a stream of NDJSON events in bulk, in bounded memory — what `datacube ingest` does
//! with a file and `POST /admin/events` with a large body. The stream is read in blocks of
//! whole lines, parsed on every core and sorted by account and day ([`crate::bulk::Sorter`]:
//! sorted runs go to temporary files past its memory); then [`crate::Store::ingest_sorted`]
//! stores the events account after account in batches, one transaction each.
//!
//! Bad lines are counted, the first few kept with their reason ([`Rejections`]), so memory
//! stays bounded however many lines are bad.

use std::collections::HashMap;
use std::io::{BufRead, Read as _};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::bulk::{Piece, Sorted, Sorter};
use crate::ingest::Rejections;
use crate::{Store, StoreError};

/// The size of the blocks a stream is read and parsed in.
const BLOCK: usize = 4 << 20;

/// What reading a stream gave: the events sorted, the incarnation of each account they are of
/// (to store them only for those), how many sorted runs were spilled, and the rejected lines.
pub struct Loaded {
    pub sorted: Sorted,
    pub fence: HashMap<String, i64>,
    pub runs: usize,
    pub rejected: Rejections,
}

/// The longest line taken; a longer one is rejected (and skipped without being held).
const MAX_LINE: usize = datacube_engine::MAX_LINE;

/// A block of whole lines, and the number of its first line; or, `oversized`, the number of
/// a line longer than [`MAX_LINE`] (its bytes skipped).
struct Block {
    first: u64,
    bytes: Vec<u8>,
    oversized: bool,
}

/// Reads `reader` in blocks of whole lines, parses them on every core, and sorts the events
/// of known accounts; the other lines are rejected (the first `named` kept with their reason).
/// `progress` is told how many bytes were read so far. Blocking: called off the runtime, whose
/// `runtime` handle looks the accounts up.
pub fn read_and_sort(
    mut reader: Box<dyn BufRead + Send>,
    store: &Store,
    runtime: &tokio::runtime::Handle,
    mut sorter: Sorter,
    named: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Loaded, StoreError> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
    let (blocks_tx, blocks_rx) = mpsc::sync_channel::<Block>(workers);
    let blocks_rx = Arc::new(Mutex::new(blocks_rx));
    let (pieces_tx, pieces_rx) = mpsc::sync_channel::<(Piece, Rejections)>(workers);
    let mut rejected = Rejections::keeping(named);
    // Each account's incarnation when first seen (`None`: no such account).
    let mut known: HashMap<String, Option<i64>> = HashMap::new();
    let no_thread = |e: std::io::Error| StoreError::Task(format!("no thread for a bulk load: {e}"));
    std::thread::scope(|scope| -> Result<(), StoreError> {
        let read = std::thread::Builder::new()
            .name("datacube-read".into())
            .spawn_scoped(scope, move || {
                read_blocks(&mut reader, &blocks_tx, &|n| progress(n))
            })
            .map_err(no_thread)?;
        for _ in 0..workers {
            let (blocks_rx, pieces_tx) = (blocks_rx.clone(), pieces_tx.clone());
            std::thread::Builder::new()
                .name("datacube-parse".into())
                .spawn_scoped(scope, move || loop {
                    let block = match blocks_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(block) = block else { return };
                    if pieces_tx.send(parse_block(&block, named)).is_err() {
                        return;
                    }
                })
                .map_err(no_thread)?;
        }
        drop(pieces_tx);
        // Here: the accounts checked, the events taken by the sorter.
        let mut outcome = Ok(());
        for (piece, bad) in pieces_rx.iter() {
            if outcome.is_err() {
                // Drain, so that the reader and the parsers end.
                continue;
            }
            rejected.merge(bad);
            outcome = (|| -> Result<(), StoreError> {
                for appid in piece.appids() {
                    if !known.contains_key(appid) {
                        let account = runtime.block_on(store.account(appid))?;
                        known.insert(appid.clone(), account.map(|a| a.incarnation));
                    }
                }
                sorter.add(
                    piece,
                    |appid| known.get(appid).is_some_and(Option::is_some),
                    |line, appid| {
                        rejected.push(
                            line as usize,
                            format!("no account {appid}; add it first (datacube account add)"),
                        )
                    },
                )?;
                Ok(())
            })();
        }
        let read = read
            .join()
            .map_err(|_| StoreError::Task("the reader thread panicked".into()))?;
        outcome?;
        read
    })?;
    let runs = sorter.runs();
    // Stored only for the accounts as they were when their events were read.
    let fence = known
        .into_iter()
        .filter_map(|(appid, incarnation)| Some((appid, incarnation?)))
        .collect();
    Ok(Loaded {
        sorted: sorter.finish()?,
        fence,
        runs,
        rejected,
    })
}

/// Reads blocks of about [`BLOCK`] bytes, each cut after a newline, numbering lines.
fn read_blocks(
    reader: &mut Box<dyn BufRead + Send>,
    blocks: &mpsc::SyncSender<Block>,
    progress: &dyn Fn(u64),
) -> Result<(), StoreError> {
    let mut next_line = 1u64;
    let mut total = 0u64;
    let mut carry: Vec<u8> = Vec::new();
    // Skipping the rest of an oversized line.
    let mut skipping = false;
    loop {
        let mut bytes = std::mem::take(&mut carry);
        let before = bytes.len();
        bytes.reserve(BLOCK);
        let n = reader
            .by_ref()
            .take(BLOCK as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| StoreError::Read(e.to_string()))?;
        total += n as u64;
        progress(total);
        let eof = n == 0;
        if skipping {
            match memchr::memchr(b'\n', &bytes) {
                Some(at) => {
                    bytes.drain(..=at);
                    skipping = false;
                }
                None if eof => return Ok(()),
                None => continue,
            }
        }
        if !eof {
            // Cut after the last newline; the rest goes with the next block.
            match memchr::memrchr(b'\n', &bytes[before.min(bytes.len())..]) {
                Some(at) => carry = bytes.split_off(before.min(bytes.len()) + at + 1),
                None if bytes.len() > MAX_LINE => {
                    let first = next_line;
                    next_line += 1;
                    skipping = true;
                    let block = Block {
                        first,
                        bytes: Vec::new(),
                        oversized: true,
                    };
                    if blocks.send(block).is_err() {
                        return Ok(());
                    }
                    continue;
                }
                None => {
                    carry = bytes;
                    continue;
                }
            }
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let lines = memchr::memchr_iter(b'\n', &bytes).count() as u64
            + u64::from(bytes.last() != Some(&b'\n'));
        let first = next_line;
        next_line += lines;
        let block = Block {
            first,
            bytes,
            oversized: false,
        };
        if blocks.send(block).is_err() || eof {
            return Ok(());
        }
    }
}

/// Parses a block's lines: the events into a piece, the bad lines with their reason (the
/// first few kept, all counted).
fn parse_block(block: &Block, named: usize) -> (Piece, Rejections) {
    let mut piece = Piece::new();
    let mut rejected = Rejections::keeping(named);
    if block.oversized {
        rejected.push(
            block.first as usize,
            format!("longer than {} MiB", MAX_LINE >> 20),
        );
        return (piece, rejected);
    }
    let mut line = block.first;
    let mut rest = &block.bytes[..];
    while !rest.is_empty() {
        let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |at| at + 1);
        let raw = &rest[..end];
        rest = &rest[end..];
        let number = line;
        line += 1;
        let reason = match std::str::from_utf8(raw) {
            // The reader cuts a line longer than this when it sees no end of it; one whose
            // end came in the same read is caught here.
            _ if raw.len() > MAX_LINE => format!("longer than {} MiB", MAX_LINE >> 20),
            Err(_) => "not UTF-8 text".to_owned(),
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => match datacube_engine::parse_line(text) {
                Ok(event) => match piece.push(number, &event) {
                    Ok(()) => continue,
                    Err(reason) => reason,
                },
                Err(e) => e.to_string(),
            },
        };
        rejected.push(number as usize, reason);
    }
    (piece, rejected)
}
