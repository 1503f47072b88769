//! One module per command: its arguments and what it does; here, what several share.

use std::net::SocketAddr;

use anyhow::Context as _;

pub mod account;
pub mod database_wait;
pub mod demo;
pub mod export;
pub mod healthcheck;
pub mod import;
pub mod ingest;
pub mod mirror_metrics;
pub mod openapi;
pub mod proxy;
pub mod push;
pub mod serve;
pub mod sync;

/// The account `appid`; fails unless the database has it (the commands that record for one).
pub async fn account_must_exist(
    store: &datacube_store::Store,
    appid: &str,
) -> anyhow::Result<datacube_store::AccountRecord> {
    match store.account(appid).await? {
        Some(account) => Ok(account),
        None => anyhow::bail!("no account {appid}; add it first with `datacube account add`"),
    }
}

/// What `push` and `proxy` record with: a recorder into the store (which must have the
/// account `appid`; it records for that account as it is now, see [`Recorder::start`]), the
/// metrics endpoint if asked for, and "now" by the command's clock.
///
/// [`Recorder::start`]: datacube_push::recorder::Recorder::start
pub async fn recording_for(
    db: &crate::args::DatabaseArg,
    appid: &str,
    metrics_listen: Option<SocketAddr>,
    clock: &crate::args::ClockArg,
) -> anyhow::Result<(
    datacube_push::recorder::Recorder,
    datacube_push::recorder::Now,
)> {
    let store = crate::open(&db.database)?;
    let account = account_must_exist(&store, appid).await?;
    metrics_endpoint(metrics_listen).await?;
    let clock = clock.clock();
    let now: datacube_push::recorder::Now = std::sync::Arc::new(move || clock.now());
    let recorder = datacube_push::recorder::Recorder::start(store, now.clone(), &account);
    Ok((recorder, now))
}

/// The end of `push` or `proxy`: partial success (exit 3) when `gone` events were refused
/// because the account was removed while they recorded.
pub fn account_removed_while_recording(appid: &str, gone: usize) -> anyhow::Result<()> {
    if gone == 0 {
        return Ok(());
    }
    Err(crate::Exit::code(
        crate::Code::Partial,
        format!("{gone} events not recorded: account {appid} was removed while recording"),
    ))
}

/// What writing to standard output ended with: a reader that went away (`datacube … | head`)
/// is not an error.
pub fn reader_gone_is_fine(written: std::io::Result<()>) -> std::io::Result<()> {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Registers SIGINT and SIGTERM handlers now (so a signal that arrives while the server starts
/// is not lost) and returns a future that completes on the first of them.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => tracing::info!("SIGINT received"),
                _ = term.recv() => tracing::info!("SIGTERM received"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C received");
        })
    }
}

/// `--metrics-listen` of `push` and `proxy`: `GET /metrics` on `at`, announced on stdout,
/// served until the process ends.
pub async fn metrics_endpoint(at: Option<SocketAddr>) -> anyhow::Result<()> {
    let Some(at) = at else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .with_context(|| format!("--metrics-listen: cannot listen on {at}"))?;
    println!(
        "datacube metrics on http://{}/metrics",
        listener.local_addr()?
    );
    // The recorder before the first push is counted.
    datacube_server::metrics::handle();
    tokio::spawn(async move {
        if let Err(e) = datacube_server::metrics::serve_alone(listener).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    });
    Ok(())
}
