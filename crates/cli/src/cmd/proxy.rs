//! `datacube proxy`: between WeChat and a developer's server, recording the pushes.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::args::{aes_key, at_least_one, timeout, ClockArg, DatabaseArg};
use crate::Exit;

#[derive(Args)]
pub struct ProxyArgs {
    /// Address to listen on (where WeChat's pushes arrive).
    #[arg(long, env = "DATACUBE_PROXY_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// The developer's server, http://host:port (a path prefix is kept).
    #[arg(long)]
    upstream: String,
    /// The account the pushes are for (it must exist; its statistics get the events).
    #[arg(long)]
    appid: String,
    /// The server's token: pushes whose signature does not verify are not recorded, and
    /// encrypted replies' MsgSignature is checked.
    #[arg(long, env = "DATACUBE_PUSH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The EncodingAESKey: safe-mode pushes and encrypted replies are read.
    #[arg(long, env = "DATACUBE_PUSH_AES_KEY", hide_env_values = true)]
    aes_key: Option<String>,
    /// Time the upstream has to answer before the proxy answers 504 (WeChat waits 5 s).
    #[arg(long, default_value = "5s", value_parser = timeout)]
    timeout: Duration,
    /// Event loops, each on a thread of its own with its own listening socket (as nginx's
    /// workers); the default is one per CPU.
    #[arg(long, env = "DATACUBE_PROXY_WORKERS")]
    workers: Option<usize>,
    /// Client connections at once; at the limit the one waiting longest on its client is
    /// closed, or a new one answered 503 [default: half the open-file limit, at most 4096].
    #[arg(long, env = "DATACUBE_PROXY_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Time a client has to send a request's head.
    #[arg(long, default_value = "5s", value_parser = timeout)]
    header_timeout: Duration,
    /// Time a client has to send a request's body.
    #[arg(long, default_value = "5s", value_parser = timeout)]
    body_timeout: Duration,
    /// Time a kept connection may stay idle between requests.
    #[arg(long, default_value = "15s", value_parser = timeout)]
    idle_timeout: Duration,
    /// The largest request body in bytes (a WeChat push is a few KB); past it: 413.
    #[arg(long, default_value_t = 64 * 1024)]
    max_body: usize,
    #[command(flatten)]
    db: DatabaseArg,
    #[command(flatten)]
    clock: ClockArg,
    /// Serve `GET /metrics` on this address (callbacks by verdict, their time cost,
    /// connections refused).
    #[arg(long, env = "DATACUBE_PROXY_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
}

pub async fn run(args: ProxyArgs) -> Result<()> {
    let upstream: hyper::Uri = args
        .upstream
        .parse()
        .ok()
        .filter(|u: &hyper::Uri| u.scheme_str() == Some("http") && u.authority().is_some())
        .ok_or_else(|| {
            Exit::usage(format!(
                "--upstream must be http://host:port (TLS ends before the proxy); got {:?}",
                args.upstream
            ))
        })?;
    let key = aes_key(args.aes_key.as_deref())?;
    at_least_one(&[
        ("--max-connections", args.max_connections == Some(0)),
        ("--max-body", args.max_body == 0),
        ("--workers", args.workers == Some(0)),
    ])?;
    let limits = datacube_push::proxy::Limits {
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        idle_timeout: args.idle_timeout,
        max_body: args.max_body,
        max_connections: args
            .max_connections
            .unwrap_or_else(datacube_push::proxy::default_max_connections),
        ..datacube_push::proxy::Limits::default()
    };
    let (recorder, now) =
        super::recording_for(&args.db, &args.appid, args.metrics_listen, &args.clock).await?;
    let shutdown = super::shutdown_signal()?;
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let listeners = datacube_push::proxy::bind_workers(args.listen, workers)
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listeners[0].local_addr()?;
    println!(
        "datacube proxy on http://{addr} → {upstream}, recording for {}",
        args.appid
    );
    std::io::stdout().flush().ok();
    let config = datacube_push::proxy::ProxyConfig {
        upstream,
        appid: args.appid.clone(),
        token: args.token.clone(),
        key,
        timeout: args.timeout,
        limits,
    };
    datacube_push::proxy::serve_workers(listeners, config, recorder.clone(), now, shutdown).await?;
    let recorded = recorder.finish().await?;
    println!(
        "recorded {} events in {} ({} already there)",
        recorded.accepted, args.db.database, recorded.duplicates
    );
    super::account_removed_while_recording(&args.appid, recorded.gone)
}
