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
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewAccount {
    pub appid: String,
    pub secret: String,
    #[serde(default = "verified_by_default")]
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
    let shown = |p: &Path| p.display().to_string();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", shown(dir)))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();

    // Accounts.
    let accounts = dir.join("accounts.json");
    if accounts.is_file() {
        let text = std::fs::read(&accounts).map_err(|e| format!("{}: {e}", shown(&accounts)))?;
        let list: Vec<NewAccount> =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", shown(&accounts)))?;
        for a in list {
            datacube_api::Appid::parse(&a.appid)
                .and(datacube_api::Secret::parse(&a.secret))
                .map_err(|e| format!("{}: {e}", shown(&accounts)))?;
            let found = store
                .account(&a.appid)
                .await
                .map_err(|e| format!("{}: {e}", shown(&accounts)))?;
            if found.is_some() {
                continue;
            }
            let secret = a.secret;
            let hash =
                tokio::task::spawn_blocking(move || datacube_api::account::hash_secret(&secret))
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
                .map_err(|e| format!("{}: {e}", shown(&accounts)))?;
            report.accounts += 1;
        }
    }

    // Events.
    let mut known = KnownAccounts::default();
    for file in entries
        .iter()
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "ndjson"))
    {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", shown(file)))?;
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(_, l)| !l.trim().is_empty())
            .collect();
        for chunk in lines.chunks(BATCH) {
            let (done, _) = ingest_lines(store, chunk, yesterday, &mut known)
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

    // Imports.
    for account in entries.iter().filter(|p| p.is_dir()) {
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
        bodies.sort();
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
            let body = std::fs::read(&file).map_err(|e| format!("{}: {e}", shown(&file)))?;
            datacube_store::import::import_body(
                store,
                &appid,
                endpoint,
                &body,
                datacube_api::row::NewFields::Keep,
            )
            .await
            .map_err(|e| format!("{}: {e}", shown(&file)))?;
            report.imports += 1;
        }
    }
    Ok(report)
}
