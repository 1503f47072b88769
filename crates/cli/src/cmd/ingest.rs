//! `datacube ingest`: a file of events (NDJSON) in any order, loaded in bulk.
//!
//! Two passes. The first reads the file in blocks, parses the lines on every core and sorts
//! the events by account and day in bounded memory (`datacube_store::bulk`: sorted runs
//! written to temporary files past `--memory`). The second stores them account after account,
//! in batches of about `--batch` events, each one transaction, and computes each account's
//! statistics once. So the cost is one pass over the events whatever their order: an account
//! after another, one time-ordered stream of all accounts, or none.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Read as _};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use clap::Args;
use datacube_store::bulk::{Piece, Sorter};
use datacube_store::ingest::Rejections;
use datacube_store::Store;

use crate::args::{ClockArg, DatabaseArg};
use crate::{open, Exit};

#[derive(Args)]
pub struct IngestArgs {
    /// NDJSON file of events, or `-` for standard input. Any order: events are sorted by
    /// account and day before they are stored.
    file: String,
    #[command(flatten)]
    db: DatabaseArg,
    #[command(flatten)]
    clock: ClockArg,
    /// Events per transaction, about (an account's events stay together up to twice this).
    /// A load cut short keeps the transactions done; run the same command again: ids make it
    /// safe, and statistics left pending are recomputed.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Memory for sorting events, in MiB; past it, sorted runs go to temporary files.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(16..=65_536))]
    memory: u64,
    /// Where sorted runs go past `--memory` (unnamed files, gone when datacube exits).
    /// Default: $TMPDIR, else /tmp.
    #[arg(long)]
    temp_dir: Option<PathBuf>,
}

/// How many rejected lines are printed and kept in memory (all are counted).
const SHOWN_REJECTIONS: usize = 100;
/// The size of the blocks the file is read and parsed in.
const BLOCK: usize = 4 << 20;

pub async fn run(args: IngestArgs) -> Result<()> {
    let temp_dir = args.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    if !temp_dir.is_dir() {
        return Err(Exit::usage(format!(
            "--temp-dir {}: not a directory",
            temp_dir.display()
        )));
    }
    let (reader, size): (Box<dyn BufRead + Send>, Option<u64>) = if args.file == "-" {
        (Box::new(std::io::BufReader::new(std::io::stdin())), None)
    } else {
        let file =
            std::fs::File::open(&args.file).with_context(|| format!("opening {}", args.file))?;
        let size = file.metadata().ok().map(|m| m.len());
        (
            Box::new(std::io::BufReader::with_capacity(BLOCK, file)),
            size,
        )
    };
    let store = open(&args.db.database)?;
    let clock = args.clock.clock();
    let yesterday = ClockArg::yesterday(&clock);
    let bar = progress(size);
    let memory = usize::try_from(args.memory << 20).unwrap_or(usize::MAX);

    // Pass 1: read, parse, sort.
    let started = std::time::Instant::now();
    let sorting = {
        let (store, bar) = (store.clone(), bar.clone());
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            sort_file(
                reader,
                &store,
                &runtime,
                Sorter::new(memory, temp_dir),
                &bar,
            )
        })
    };
    let (sorted, fence, runs, rejected) = sorting.await.context("reading events")??;
    tracing::info!(
        events = sorted.len(),
        runs,
        seconds = started.elapsed().as_secs_f64(),
        "events read and sorted"
    );
    let started = std::time::Instant::now();

    // Pass 2: store.
    bar.set_length(sorted.len());
    bar.set_position(0);
    bar.set_style(style("{spinner} stored {pos}/{len} events {wide_bar}"));
    let outcome = {
        let bar = bar.clone();
        let batch = usize::try_from(args.batch).unwrap_or(usize::MAX);
        store
            .ingest_sorted(sorted, fence, yesterday, batch, move |n| {
                bar.set_position(n)
            })
            .await
            .context("storing events")?
    };
    bar.finish_and_clear();
    tracing::info!(
        accepted = outcome.accepted,
        duplicates = outcome.duplicates,
        seconds = started.elapsed().as_secs_f64(),
        "events stored and statistics computed"
    );

    let shown = rejected.named();
    for r in &shown {
        eprintln!("line {}: {}", r.line, r.reason);
    }
    if rejected.total() > shown.len() {
        eprintln!(
            "… and {} more rejected lines",
            rejected.total() - shown.len()
        );
    }
    if outcome.gone > 0 {
        eprintln!(
            "{} events not stored: their account was removed during the load",
            outcome.gone
        );
    }
    let rejected = rejected.total() + usize::try_from(outcome.gone).unwrap_or(usize::MAX);
    println!(
        "{} accepted, {} duplicates, {} rejected",
        outcome.accepted, outcome.duplicates, rejected
    );
    if rejected > 0 {
        return Err(Exit::code(
            3,
            format!("{rejected} lines were rejected (the others were stored)"),
        ));
    }
    Ok(())
}

fn style(template: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

fn progress(size: Option<u64>) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = size.map_or_else(
        indicatif::ProgressBar::new_spinner,
        indicatif::ProgressBar::new,
    );
    bar.set_style(style("{spinner} read {bytes}/{total_bytes} {wide_bar}"));
    bar
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
/// of known accounts; the others lines are returned as rejected.
fn sort_file(
    mut reader: Box<dyn BufRead + Send>,
    store: &Store,
    runtime: &tokio::runtime::Handle,
    mut sorter: Sorter,
    bar: &indicatif::ProgressBar,
) -> Result<(
    datacube_store::bulk::Sorted,
    HashMap<String, i64>,
    usize,
    Rejections,
)> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
    let (blocks_tx, blocks_rx) = mpsc::sync_channel::<Block>(workers);
    let blocks_rx = Arc::new(Mutex::new(blocks_rx));
    let (pieces_tx, pieces_rx) = mpsc::sync_channel::<(Piece, Rejections)>(workers);
    let mut rejected = Rejections::keeping(SHOWN_REJECTIONS);
    // Each account's incarnation when first seen (`None`: no such account).
    let mut known: HashMap<String, Option<i64>> = HashMap::new();
    std::thread::scope(|scope| -> Result<()> {
        let read = std::thread::Builder::new()
            .name("datacube-read".into())
            .spawn_scoped(scope, move || read_blocks(&mut reader, &blocks_tx, bar))
            .context("starting the reader")?;
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
                    if pieces_tx.send(parse_block(&block)).is_err() {
                        return;
                    }
                })
                .context("starting a parser")?;
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
            outcome = (|| -> Result<()> {
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
            .map_err(|_| anyhow::anyhow!("the reader thread panicked"))?;
        outcome?;
        read
    })?;
    let runs = sorter.runs();
    // Stored only for the accounts as they were when their events were read.
    let fence = known
        .into_iter()
        .filter_map(|(appid, incarnation)| Some((appid, incarnation?)))
        .collect();
    Ok((sorter.finish()?, fence, runs, rejected))
}

/// Reads blocks of about [`BLOCK`] bytes, each cut after a newline, numbering lines.
fn read_blocks(
    reader: &mut Box<dyn BufRead + Send>,
    blocks: &mpsc::SyncSender<Block>,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let mut next_line = 1u64;
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
            .context("reading events")?;
        bar.inc(n as u64);
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
fn parse_block(block: &Block) -> (Piece, Rejections) {
    let mut piece = Piece::new();
    let mut rejected = Rejections::keeping(SHOWN_REJECTIONS);
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
