//! One module per command: its arguments and what it does.

pub mod account;
pub mod demo;
pub mod export;
pub mod healthcheck;
pub mod import;
pub mod ingest;
pub mod proxy;
pub mod push;
pub mod serve;
pub mod sync;

/// Fails unless the database has the account `appid` (the commands that record for one).
pub async fn account_must_exist(store: &datacube_store::Store, appid: &str) -> anyhow::Result<()> {
    if store.account(appid).await?.is_none() {
        anyhow::bail!("no account {appid}; add it first with `datacube account add`");
    }
    Ok(())
}

/// What writing to standard output ended with: a reader that went away (`datacube … | head`)
/// is not an error.
pub fn reader_gone_is_fine(written: std::io::Result<()>) -> std::io::Result<()> {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
