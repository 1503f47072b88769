//! `datacube ingest`: a file of events (NDJSON) in any order, loaded in bulk.
//!
//! Two passes. The first reads the file in blocks, parses the lines on every core and sorts
//! the events by account and day in bounded memory (`datacube_store::bulk`: sorted runs
//! written to temporary files past `--memory`). The second stores them account after account,
//! in batches of about `--batch` events, each one transaction, and computes each account's
//! statistics once. So the cost is one pass over the events whatever their order: an account
//! after another, one time-ordered stream of all accounts, or none.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use datacube_store::bulk::Sorter;
use datacube_store::load::Loaded;

use crate::args::{ClockArg, DatabaseArg};
use crate::{open, Code, Exit};

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
/// The size of the blocks the file is read in.
const BLOCK: usize = 4 << 20;

pub async fn run(args: IngestArgs) -> Result<()> {
    let temp_dir = args.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    if !temp_dir.is_dir() {
        return Err(Exit::usage(format!(
            "--temp-dir {}: not a directory",
            temp_dir.display()
        )));
    }
    let (reader, size) = input(&args.file)?;
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
            datacube_store::load::read_and_sort(
                reader,
                &store,
                &runtime,
                Sorter::new(memory, temp_dir),
                SHOWN_REJECTIONS,
                &|n| bar.set_position(n),
            )
        })
    };
    let Loaded {
        sorted,
        fence,
        runs,
        rejected,
    } = sorting.await.context("reading events")??;
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

    report(&rejected, &outcome)
}

/// The events to read: `file`, or standard input for `-`; and the file's size, when known.
fn input(file: &str) -> Result<(Box<dyn BufRead + Send>, Option<u64>)> {
    if file == "-" {
        return Ok((Box::new(std::io::BufReader::new(std::io::stdin())), None));
    }
    let opened = std::fs::File::open(file).with_context(|| format!("opening {file}"))?;
    let size = opened.metadata().ok().map(|m| m.len());
    Ok((
        Box::new(std::io::BufReader::with_capacity(BLOCK, opened)),
        size,
    ))
}

/// Prints the rejected lines (the first few) and what was stored; exit code 3 when any line
/// or event was rejected.
fn report(
    rejected: &datacube_store::ingest::Rejections,
    outcome: &datacube_store::BulkOutcome,
) -> Result<()> {
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
            Code::Partial,
            format!(
                "{rejected} {} rejected (the others were stored)",
                if rejected == 1 {
                    "line was"
                } else {
                    "lines were"
                }
            ),
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
