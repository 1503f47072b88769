//! `serve --seed DIR`: fixtures loaded when the server starts (and again after
//! `POST /admin/reset`), as fake-gcs-server loads its `/data`:
//!
//! - `DIR/accounts.json`: `[{"appid":"…","secret":"…","verified":true}]`, each added unless it
//!   exists (an existing account keeps its secret);
//! - `DIR/*.ndjson`: events, ingested in file-name order (their ids make a restart add
//!   nothing);
//! - `DIR/<appid>/<endpoint>.json`: WeChat answers (`{"list":[…]}`) imported for the account.
//!
//! Anything wrong — a bad file, a rejected line, an unknown endpoint — stops the server from
//! starting, with the file (and line) named: fixtures are meant to be right.

use std::path::{Path, PathBuf};

use datacube_api::Endpoint;
use datacube_store::ingest::{ingest_lines, KnownAccounts};
use datacube_store::{AccountRecord, Store};
use jiff::civil::Date;
use serde::Deserialize;

/// An account as the admin API (`POST /admin/accounts`) and a seed's `accounts.json` give it:
/// verified unless it says otherwise.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAccount {
    /// 1 to 64 letters, digits, `_` and `-` (WeChat's: `wx` and 16 hexadecimal digits).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "wx5b0f1c0a9e2d4c11")]
    pub appid: String,
    /// Its AppSecret: 1 to 128 visible ASCII characters (WeChat's: 32 random ones; a shorter
    /// one is warned about).
    #[schema(pattern = "^[!-~]{1,128}$")]
    pub secret: String,
    /// Unverified accounts answer 48001 on the datacube endpoints (default true).
    #[serde(default = "verified_by_default")]
    #[schema(default = true)]
    pub verified: bool,
}

fn verified_by_default() -> bool {
    true
}

/// What a seed directory brought.
#[derive(Debug, Default)]
pub struct SeedReport {
    /// Accounts added (not counting those that existed).
    pub accounts: usize,
    /// Events accepted, and those already there.
    pub accepted: usize,
    pub duplicates: usize,
    /// Bodies imported.
    pub imports: usize,
}

/// Lines per ingestion transaction.
const BATCH: usize = 20_000;

/// Loads `dir` into `store`; `now` is the server's clock (Unix seconds), `yesterday` its day
/// before. The error names what is wrong.
pub async fn load(
    store: &Store,
    dir: &Path,
    now: i64,
    yesterday: Date,
) -> Result<SeedReport, String> {
    let mut report = SeedReport::default();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", shown(dir)))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();

    let accounts = dir.join("accounts.json");
    if std::fs::symlink_metadata(&accounts).is_ok() {
        report.accounts = load_accounts(store, &accounts, now).await?;
    }
    // Events, a batch of lines at a time (a file is never held whole).
    let mut known = KnownAccounts::default();
    for file in entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
    {
        load_events(store, file, yesterday, &mut known, &mut report).await?;
    }
    for account in entries.iter().filter(|p| p.is_dir()) {
        report.imports += load_imports(store, account).await?;
    }
    Ok(report)
}

/// A path, for messages.
fn shown(p: &Path) -> String {
    p.display().to_string()
}

/// Adds the accounts of `accounts.json` (at `path`) that do not exist; how many were added.
async fn load_accounts(store: &Store, path: &Path, now: i64) -> Result<usize, String> {
    let text = read_bounded(path, MAX_ACCOUNTS_FILE)?;
    // Each account an object (serde would also read one from an array of its fields).
    let values: Vec<serde_json::Value> =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", shown(path)))?;
    let list = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            serde_json::Value::Object(_) => serde_json::from_value::<NewAccount>(v)
                .map_err(|e| format!("{}: account {}: {e}", shown(path), i + 1)),
            _ => Err(format!(
                "{}: account {} is not a JSON object",
                shown(path),
                i + 1
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut added = 0;
    for a in list {
        datacube_api::Appid::parse(&a.appid)
            .and(datacube_api::Secret::parse(&a.secret))
            .map_err(|e| format!("{}: {e}", shown(path)))?;
        let found = store
            .account(&a.appid)
            .await
            .map_err(|e| format!("{}: {e}", shown(path)))?;
        if found.is_some() {
            continue;
        }
        let secret = a.secret;
        let hash = tokio::task::spawn_blocking(move || datacube_api::account::hash_secret(&secret))
            .await
            .map_err(|e| format!("hashing a secret: {e}"))?;
        store
            .put_account(AccountRecord {
                appid: a.appid,
                secret_hash: hash,
                verified: a.verified,
                created_at: now,
                incarnation: 0, // drawn by the store
            })
            .await
            .map_err(|e| format!("{}: {e}", shown(path)))?;
        added += 1;
    }
    Ok(added)
}

/// Ingests the events of one NDJSON `file`, a batch of lines at a time, counting them in
/// `report`; a rejected line is an error.
async fn load_events(
    store: &Store,
    file: &Path,
    yesterday: Date,
    known: &mut KnownAccounts,
    report: &mut SeedReport,
) -> Result<(), String> {
    let mut lines = LineReader::open(file)?;
    loop {
        let chunk = lines.next_batch(BATCH)?;
        if chunk.is_empty() {
            return Ok(());
        }
        let (done, _) = ingest_lines(store, &chunk, yesterday, known)
            .await
            .map_err(|e| format!("{}: {e}", shown(file)))?;
        if let Some(bad) = done.rejected.first() {
            return Err(format!(
                "{}: line {}: {}",
                shown(file),
                bad.line,
                bad.reason
            ));
        }
        report.accepted += done.accepted;
        report.duplicates += done.duplicates;
    }
}

/// Imports the WeChat answers of the directory `account` (named by its appid), one
/// `<endpoint>.json` at a time; how many were imported.
async fn load_imports(store: &Store, account: &Path) -> Result<usize, String> {
    let appid = account
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    datacube_api::Appid::parse(&appid).map_err(|e| format!("{}: {e}", shown(account)))?;
    let mut bodies: Vec<PathBuf> = std::fs::read_dir(account)
        .map_err(|e| format!("{}: {e}", shown(account)))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    // (Each read below refuses what is not a regular file.)
    bodies.sort();
    let mut imported = 0;
    for file in bodies {
        let name = file
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let endpoint = Endpoint::from_name(name).ok_or_else(|| {
            format!(
                "{}: {name:?} is not a datacube endpoint (getusersummary, getarticleread…)",
                shown(&file)
            )
        })?;
        let body = read_bounded(&file, MAX_BODY_FILE)?;
        datacube_store::import::import_body(
            store,
            &appid,
            endpoint,
            &body,
            datacube_api::row::NewFields::Keep,
        )
        .await
        .map_err(|e| format!("{}: {e}", shown(&file)))?;
        imported += 1;
    }
    Ok(imported)
}

/// The largest `accounts.json` read.
const MAX_ACCOUNTS_FILE: u64 = 16 << 20;
/// The largest WeChat answer read (the admin API's body limit).
const MAX_BODY_FILE: u64 = 256 << 20;

/// Opens `path` for reading if it is a regular file (a FIFO, a device or a socket by a
/// fixture's name is an error, not skipped and not waited on).
fn open_regular(path: &Path) -> Result<std::fs::File, String> {
    let shown = path.display();
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Opened without waiting (a FIFO's open waits for a writer), then looked at: what is
    // read is what was checked.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(|e| format!("{shown}: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown}: not a regular file"));
    }
    Ok(file)
}

/// The whole of a regular file of at most `limit` bytes.
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let shown = path.display();
    let mut body = Vec::new();
    open_regular(path)?
        .take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("{shown}: {e}"))?;
    if body.len() as u64 > limit {
        return Err(format!("{shown}: larger than {} MiB", limit >> 20));
    }
    Ok(body)
}

/// An NDJSON file read a batch of numbered, non-blank lines at a time, each line at most
/// [`datacube_engine::MAX_LINE`] bytes.
struct LineReader {
    path: PathBuf,
    reader: std::io::BufReader<std::fs::File>,
    line: usize,
}

impl LineReader {
    fn open(path: &Path) -> Result<LineReader, String> {
        Ok(LineReader {
            path: path.to_owned(),
            reader: std::io::BufReader::new(open_regular(path)?),
            line: 0,
        })
    }

    fn next_batch(&mut self, n: usize) -> Result<Vec<(usize, String)>, String> {
        use std::io::{BufRead as _, Read as _};
        let shown = self.path.display();
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while out.len() < n {
            buf.clear();
            let max = datacube_engine::MAX_LINE as u64;
            let read = (&mut self.reader)
                .take(max + 2)
                .read_until(b'\n', &mut buf)
                .map_err(|e| format!("{shown}: {e}"))?;
            if read == 0 {
                break;
            }
            self.line += 1;
            let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if text.len() as u64 > max {
                return Err(format!(
                    "{shown}: line {}: longer than {} MiB",
                    self.line,
                    max >> 20
                ));
            }
            let text = std::str::from_utf8(text)
                .map_err(|_| format!("{shown}: line {}: not UTF-8 text", self.line))?;
            if !text.trim().is_empty() {
                out.push((self.line, text.to_owned()));
            }
        }
        Ok(out)
    }
}
