//! `datacube export`: stored statistics of one endpoint as CSV, NDJSON or WeChat's JSON.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use datacube_api::Endpoint;
use jiff::civil::Date;

use crate::args::{parse_day, parse_endpoint, ClockArg, DatabaseArg};
use crate::{open, Exit};

#[derive(Args)]
pub struct ExportArgs {
    /// The account.
    #[arg(long)]
    appid: String,
    /// The endpoint (e.g. getusersummary).
    #[arg(long, value_parser = parse_endpoint)]
    endpoint: Endpoint,
    /// First day (YYYY-MM-DD).
    #[arg(long, value_parser = parse_day)]
    from: Date,
    /// Last day (YYYY-MM-DD).
    #[arg(long, value_parser = parse_day)]
    to: Date,
    /// What to write.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Write here instead of standard output.
    #[arg(long)]
    output: Option<String>,
    #[command(flatten)]
    db: DatabaseArg,
    #[command(flatten)]
    clock: ClockArg,
}

/// `--format`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    /// A header line, then a line per row; a snapshot endpoint's rows repeat their day's
    /// fields for each of its snapshots.
    Csv,
    /// One row per line, as WeChat writes it.
    Ndjson,
    /// WeChat's own body, `{"list":[…]}`.
    Json,
}

pub async fn run(args: ExportArgs) -> Result<()> {
    use datacube_api::row::{answer_body, is_delay, list_body, trim_snapshots};
    if args.from > args.to {
        return Err(Exit::usage(format!(
            "--from {} is after --to {}",
            args.from, args.to
        )));
    }
    let store = open(&args.db.database)?;
    let endpoint = args.endpoint;
    let settle = datacube_store::Settle::at(args.clock.now().as_second());
    let ready = settle.ready;
    // Live events still pending that the rows asked for may show are counted first.
    store
        .settle(
            &args.appid,
            datacube_store::Settle {
                ready: ready.max(args.to),
                ..settle
            },
        )
        .await?;
    let (rows, _) = store
        .list_rows(&args.appid, endpoint, args.from, args.to)
        .await?;
    // As `serve` would answer now: snapshots up to the last ready day.
    let body = list_body([rows.as_str()].into_iter().filter(|r| !r.is_empty()));
    let body = trim_snapshots(endpoint, &body, ready).unwrap_or(body);
    let top: std::collections::BTreeMap<&str, &serde_json::value::RawValue> =
        serde_json::from_str(&body).context("reading the stored rows")?;
    let list: Vec<&serde_json::value::RawValue> =
        serde_json::from_str(top.get("list").map_or("[]", |l| l.get()))
            .context("reading the stored rows")?;
    let mut out: Box<dyn Write> = match args.output.as_deref() {
        None | Some("-") => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {path}"))?,
        )),
    };
    let written = (|| -> Result<()> {
        match args.format {
            Format::Json => {
                // The answer of a call over the range; `is_delay` if any of its days may change.
                let delayed = is_delay(endpoint, args.to.min(ready), ready);
                writeln!(out, "{}", answer_body(endpoint, body.clone(), delayed))?;
            }
            Format::Ndjson => {
                for r in &list {
                    writeln!(out, "{}", r.get())?;
                }
            }
            Format::Csv => write_csv(&mut out, endpoint, &list)?,
        }
        out.flush()?;
        Ok(())
    })();
    match written {
        Err(e) if reader_gone(&e) => Ok(()),
        other => other,
    }
}

/// Writes `list`, rows of `endpoint`, as CSV: a header line, then a line per row, or per
/// snapshot of a snapshot endpoint's row.
fn write_csv(
    out: &mut impl Write,
    endpoint: Endpoint,
    list: &[&serde_json::value::RawValue],
) -> Result<()> {
    let columns = csv_columns(endpoint);
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(columns.iter().map(|c| c.header))?;
    for r in list {
        write_csv_row(&mut csv, &columns, endpoint, r.get())?;
    }
    csv.flush()?;
    Ok(())
}

/// Writes the lines of one row (`json`) of `endpoint`: one, or one per snapshot, each
/// repeating the row's fields and its `detail` object's.
fn write_csv_row<W: Write>(
    csv: &mut csv::Writer<W>,
    columns: &[CsvColumn],
    endpoint: Endpoint,
    json: &str,
) -> Result<()> {
    let row: Fields = serde_json::from_str(json)?;
    let details: Vec<Fields> =
        match datacube_api::row::snapshots_field(endpoint).and_then(|f| row.get(f)) {
            Some(raw) => serde_json::from_str(raw.get())?,
            None => Vec::new(),
        };
    let objects: Vec<(&str, Fields)> = columns
        .iter()
        .filter_map(|c| match c.place {
            CsvPlace::Detail(name) => Some(name),
            _ => None,
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter_map(|name| {
            let raw = row.get(name)?;
            Some((name, serde_json::from_str(raw.get()).ok()?))
        })
        .collect();
    let line = |snapshot: Option<&Fields>| {
        columns
            .iter()
            .map(|c| {
                let raw = match c.place {
                    CsvPlace::Row => row.get(c.header),
                    CsvPlace::Detail(name) => objects
                        .iter()
                        .find(|(n, _)| *n == name)
                        .and_then(|(_, o)| o.get(c.header)),
                    CsvPlace::Snapshot => snapshot.and_then(|d| d.get(c.header)),
                };
                csv_cell(raw.map(|r| &**r))
            })
            .collect::<Vec<String>>()
    };
    if datacube_api::row::snapshots_field(endpoint).is_some() {
        for d in &details {
            csv.write_record(line(Some(d)))?;
        }
    } else {
        csv.write_record(line(None))?;
    }
    Ok(())
}

/// Whether writing failed because the reader went away (`datacube export … | head`): an I/O
/// error of a broken pipe, as it is or inside the CSV writer's error.
fn reader_gone(e: &anyhow::Error) -> bool {
    let broken = |io: &std::io::Error| io.kind() == std::io::ErrorKind::BrokenPipe;
    e.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(broken)
            || cause
                .downcast_ref::<csv::Error>()
                .is_some_and(|c| matches!(c.kind(), csv::ErrorKind::Io(io) if broken(io)))
    })
}

/// One CSV column of an export: a field of the row, of its `detail` object, or of one
/// snapshot (getarticletotal's `details`, getarticletotaldetail's `detail_list`, one line
/// each); nested lists (`read_user_source`, `read_jump_position`) are one cell of JSON.
struct CsvColumn {
    header: &'static str,
    /// Where the field is: in the row, in its `detail`, or in the snapshot.
    place: CsvPlace,
}

enum CsvPlace {
    Row,
    Detail(&'static str),
    Snapshot,
}

/// One JSON object's fields, each as written.
type Fields = std::collections::HashMap<String, Box<serde_json::value::RawValue>>;

/// A CSV cell: a string's text, a number as written, a nested list or object as its JSON
/// (fields in WeChat's order), nothing for a field the row lacks.
fn csv_cell(raw: Option<&serde_json::value::RawValue>) -> String {
    match raw.map(|r| r.get()) {
        None | Some("null") => String::new(),
        Some(text) if text.starts_with('"') => {
            let s = serde_json::from_str::<String>(text).unwrap_or_else(|_| text.to_owned());
            // A text a spreadsheet would run as a formula (`=HYPERLINK(…)` in a title) is
            // written with a leading `'` (OWASP's CSV injection rule); numbers never start so.
            if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{s}")
            } else {
                s
            }
        }
        Some(text) => text.to_owned(),
    }
}

fn csv_columns(endpoint: Endpoint) -> Vec<CsvColumn> {
    use datacube_api::row::Kind as FieldKind;
    let snapshots = datacube_api::row::snapshots_field(endpoint);
    let mut columns = Vec::new();
    for field in endpoint.shape().fields {
        match field.kind {
            FieldKind::List(inner) if Some(field.name) == snapshots => {
                columns.extend(inner.fields.iter().map(|f| CsvColumn {
                    header: f.name,
                    place: CsvPlace::Snapshot,
                }));
            }
            FieldKind::Object(inner) => {
                columns.extend(inner.fields.iter().map(|f| CsvColumn {
                    header: f.name,
                    place: CsvPlace::Detail(field.name),
                }));
            }
            _ => columns.push(CsvColumn {
                header: field.name,
                place: CsvPlace::Row,
            }),
        }
    }
    columns
}
