//! `datacube import`: a WeChat answer for one endpoint into the statistics store.

use std::io::Read;

use anyhow::{Context, Result};
use clap::Args;
use datacube_api::Endpoint;
use datacube_store::import;

use crate::args::{parse_endpoint, DatabaseArg};
use crate::{open, Exit};

#[derive(Args)]
pub struct ImportArgs {
    /// Whose statistics these are.
    #[arg(long)]
    appid: String,
    /// The endpoint the body was returned by (e.g. getusersummary).
    #[arg(long, value_parser = parse_endpoint)]
    endpoint: Endpoint,
    /// File holding the body exactly as WeChat returned it, or `-` for standard input.
    file: String,
    /// Refuse rows with fields WeChat's documentation does not list (by default they are
    /// kept as sent, with a warning per field).
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    db: DatabaseArg,
}

pub async fn run(args: ImportArgs) -> Result<()> {
    datacube_api::Appid::parse(&args.appid).map_err(|e| Exit::usage(format!("--appid: {e}")))?;
    let endpoint = args.endpoint;
    let body = if args.file == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading standard input")?;
        buf
    } else {
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file))?
    };
    let store = open(&args.db.database)?;
    if store.account(&args.appid).await?.is_none() {
        eprintln!(
            "warning: no account {} yet; its rows are stored and served once the account exists",
            args.appid
        );
    }
    let new = if args.strict {
        datacube_api::row::NewFields::Refuse
    } else {
        datacube_api::row::NewFields::Keep
    };
    let imported = import::import_body(&store, &args.appid, endpoint, &body, new).await?;
    for field in &imported.new_fields {
        eprintln!("warning: {endpoint}: new field {field:?} kept");
    }
    let report = imported.report;
    println!(
        "{endpoint}: {} rows — {} inserted, {} updated, {} unchanged",
        report.inserted + report.updated + report.unchanged,
        report.inserted,
        report.updated,
        report.unchanged
    );
    Ok(())
}
