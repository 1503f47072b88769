//! `datacube demo`: a deterministic stream of realistic events for an account.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use datacube_server::demo;

use crate::args::{ClockArg, DatabaseArg};
use crate::open;

#[derive(Args)]
pub struct DemoArgs {
    /// The account (it must exist).
    #[arg(long)]
    appid: String,
    /// Days of activity, ending yesterday.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// The same seed gives the same events (ingesting them twice adds nothing).
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Write the events (NDJSON) to this file, or `-` for standard output, instead of
    /// ingesting them.
    #[arg(long)]
    output: Option<String>,
    #[command(flatten)]
    db: DatabaseArg,
    #[command(flatten)]
    clock: ClockArg,
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let clock = args.clock.clock();
    let yesterday = ClockArg::yesterday(&clock);
    let days = args.days.clamp(1, 3650);
    if let Some(output) = &args.output {
        let lines = datacube_engine::demo::events(&args.appid, yesterday, days, args.seed);
        let mut out: Box<dyn Write> = if output == "-" {
            Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
        } else {
            Box::new(std::io::BufWriter::new(
                std::fs::File::create(output).with_context(|| format!("creating {output}"))?,
            ))
        };
        let written = (|| -> std::io::Result<()> {
            for line in &lines {
                out.write_all(line.as_bytes())?;
                out.write_all(b"\n")?;
            }
            out.flush()
        })();
        return super::reader_gone_is_fine(written).with_context(|| format!("writing {output}"));
    }
    let store = open(&args.db.database)?;
    super::account_must_exist(&store, &args.appid).await?;
    let report = demo::seed(&store, &args.appid, yesterday, days, args.seed, yesterday).await?;
    println!(
        "{} days of demo events for {}: {} accepted, {} duplicates",
        days, args.appid, report.accepted, report.duplicates
    );
    Ok(())
}
