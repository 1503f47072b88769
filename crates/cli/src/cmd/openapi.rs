//! `datacube openapi`: prints the API's description (OpenAPI 3.1) — what a running server
//! answers at `/openapi.json` — for generating a client without a server. Opens nothing.

use std::io::Write as _;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct OpenapiArgs {
    /// Write it to this file instead of standard output.
    #[arg(long, short)]
    output: Option<std::path::PathBuf>,
}

pub async fn run(args: OpenapiArgs) -> Result<()> {
    let text = datacube_server::openapi::document_json();
    match args.output {
        Some(path) => std::fs::write(&path, text)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?,
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    Ok(())
}
