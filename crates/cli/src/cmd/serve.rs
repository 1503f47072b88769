//! `datacube serve`: the WeChat API, the admin API, the dashboard and the health checks.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use datacube_api::clock::Clock;
use datacube_api::date::{add_days, format_date};
use datacube_api::SuffixStyle;
use datacube_server::config::{Config, Limits};
use datacube_server::waiting::{self, Starting};
use datacube_server::{demo, App, Listeners};
use datacube_store::Store;
use jiff::civil::Date;
use tokio::net::TcpListener;

use crate::args::{at_least_one, duration, timeout, ClockArg, DatabaseArg};
use crate::Exit;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DATACUBE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    db: DatabaseArg,
    /// How long to keep opening the database at start while it cannot be reached (connection
    /// refused, a host name not resolving yet, PostgreSQL starting up…), with a pause of
    /// 250 ms doubling up to 5 s: e.g. `60s`, `2m`; 0 tries once. Meanwhile `/healthz`
    /// answers 200 and `/readyz` 503 (`database unavailable`); past it serve exits 1. A
    /// refused password, a bad URL or a newer schema fail at once.
    #[arg(
        long,
        env = "DATACUBE_DATABASE_WAIT",
        value_name = "DURATION",
        default_value = "60s",
        value_parser = duration
    )]
    database_wait: Duration,
    /// Bearer token of the admin API (`/admin/…`); the admin API is disabled when unset.
    #[arg(long, env = "DATACUBE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Serve the admin API (`/admin/…`) and the dashboard's admin sign-in on this address
    /// only (it answers the WeChat API and the dashboard too), for a port only operators
    /// reach: the WeChat API's address then answers admin paths as a path it does not know.
    #[arg(long, env = "DATACUBE_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    #[command(flatten)]
    clock: ClockArg,
    /// Create the demo account and fill it with a year of statistics.
    #[arg(long)]
    demo: bool,
    /// Days of demo statistics, ending at the last ready day.
    #[arg(long, env = "DATACUBE_DEMO_DAYS", default_value_t = 365)]
    demo_days: u32,
    /// Load fixtures at start (and after `POST /admin/reset`): `accounts.json`, `*.ndjson`
    /// events and `<appid>/<endpoint>.json` WeChat answers.
    #[arg(long, env = "DATACUBE_SEED")]
    seed: Option<std::path::PathBuf>,
    /// Daily quota of /cgi-bin/token per account (45009 past it).
    #[arg(long, env = "DATACUBE_TOKEN_QUOTA", default_value_t = datacube_api::token::DEFAULT_TOKEN_DAILY_QUOTA)]
    token_quota: u32,
    /// Daily quota of each datacube endpoint per account (45009 past it); unlimited when unset.
    #[arg(long, env = "DATACUBE_API_QUOTA")]
    api_quota: Option<u32>,
    /// Answer the six old article endpoints (getarticlesummary, getarticletotal,
    /// getuserread[hour], getusershare[hour]) with 47009 `this api is offline, please use the
    /// new api`, as WeChat does since 2026.
    #[arg(long, env = "DATACUBE_RETIRE_LEGACY_ARTICLES")]
    retire_legacy_articles: bool,
    /// Time between the verify-ticket pushes to components' event URLs (WeChat: 10 minutes).
    #[arg(long, env = "DATACUBE_TICKET_INTERVAL", default_value = "600s", value_parser = timeout)]
    ticket_interval: Duration,
    /// How errmsg ends.
    #[arg(
        long,
        env = "DATACUBE_ERRMSG_SUFFIX",
        default_value = "rid",
        value_enum
    )]
    errmsg_suffix: SuffixArg,
    /// No log line per request (by default one at info: method, path without the query,
    /// appid, endpoint, errcode, status, latency).
    #[arg(long, env = "DATACUBE_NO_REQUEST_LOG")]
    no_request_log: bool,
    /// Datacube answers kept in memory, retired as soon as their account's statistics change
    /// (within 0.1 s when another process wrote them); 0 turns the cache off.
    #[arg(long, env = "DATACUBE_RESPONSE_CACHE", default_value_t = Config::default().response_cache)]
    response_cache: usize,
    /// Connections open at once; past it the connection that has waited longest on its client
    /// (sending, or idle) is closed to make room, and a new one is refused (`-1`) only when
    /// every one is busy with a request.
    #[arg(long, env = "DATACUBE_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Connections open at once from one client address — an IPv6 client counted by its /64
    /// (default: half of --max-connections); past it, that address's longest-waiting
    /// connection makes room. Behind a load balancer every client comes from the balancer's
    /// address: raise it to --max-connections.
    #[arg(long, env = "DATACUBE_MAX_CONNECTIONS_PER_ADDRESS")]
    max_connections_per_address: Option<usize>,
    /// Requests handled at once, counted once their body has arrived; past it requests are
    /// answered `-1 system error` (the health checks are always answered).
    #[arg(long, env = "DATACUBE_MAX_IN_FLIGHT", default_value_t = Limits::default().max_in_flight)]
    max_in_flight: usize,
    /// Requests handled at once from one client address (default: half of --max-in-flight;
    /// behind a load balancer, raise it to --max-in-flight).
    #[arg(long, env = "DATACUBE_MAX_IN_FLIGHT_PER_ADDRESS")]
    max_in_flight_per_address: Option<usize>,
    /// How long a request head may take, from the connection's start or its first byte.
    #[arg(long, env = "DATACUBE_HEADER_TIMEOUT", default_value = humantime(Limits::default().header_timeout), value_parser = timeout)]
    header_timeout: Duration,
    /// How long a request body may take (plus a second per MiB received).
    #[arg(long, env = "DATACUBE_BODY_TIMEOUT", default_value = humantime(Limits::default().body_timeout), value_parser = timeout)]
    body_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    #[arg(long, env = "DATACUBE_IDLE_TIMEOUT", default_value = humantime(Limits::default().idle_timeout), value_parser = timeout)]
    idle_timeout: Duration,
    /// Inject faults: rules `TARGET:EFFECT@WHEN` separated by commas, e.g.
    /// `*:-1@5%,getuserreadhour:45011@0.02,*:+20ms@0.1,getusersummary:-1@first2` (TARGET an
    /// endpoint, * or token; EFFECT an error code or +delay; WHEN a probability, firstN for the
    /// next N calls, afterN for every call after the next N). `/admin/faults` changes them
    /// while serving.
    #[arg(long, env = "DATACUBE_FAULTS", value_parser = parse_faults)]
    faults: Option<datacube_server::faults::Faults>,
    /// The seed of the faults' random draws: the same seed, the same faults (a random one
    /// when unset).
    #[arg(long, env = "DATACUBE_FAULTS_SEED")]
    faults_seed: Option<u64>,
    /// Mirror what this configuration names (TOML; see `datacube sync --mirror`) every day
    /// at its scheduled time, into this server's database, by this server's clock.
    #[arg(long, env = "DATACUBE_MIRROR")]
    mirror: Option<std::path::PathBuf>,
    /// Serve `/metrics` on this address instead of the WeChat API's (with `/healthz` and
    /// `/readyz`, which stay on the API's too), for a port only Prometheus and the
    /// orchestrator reach.
    #[arg(long, env = "DATACUBE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// MiB of statistics held in memory to answer ranges without reading the database (each
    /// account's endpoint read once, until its statistics change); 0: read the database for
    /// every answer the response cache does not hold.
    #[arg(long, env = "DATACUBE_STATS_MEMORY", value_name = "MIB", default_value_t = datacube_server::config::DEFAULT_STATS_MEMORY_MIB)]
    stats_memory: usize,
    /// Event loops answering connections, each a thread with connections of its own (as
    /// nginx's `worker_processes`); one per CPU when unset.
    #[arg(long, env = "DATACUBE_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
}

/// `30s` for a default of 30 seconds.
fn humantime(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// An admin token: at least 16 characters, none of them white space (an empty one leaves the
/// admin API off). Checked after parsing, not by clap, whose messages repeat the value.
fn check_admin_token(token: Option<&str>) -> Result<()> {
    match token {
        Some(s)
            if !s.is_empty() && (s.chars().count() < 16 || s.chars().any(char::is_whitespace)) =>
        {
            Err(Exit::usage(
                "--admin-token: an admin token is at least 16 characters, none of them white \
                 space (e.g. `openssl rand -hex 16`)",
            ))
        }
        _ => Ok(()),
    }
}

fn parse_faults(s: &str) -> Result<datacube_server::faults::Faults, String> {
    datacube_server::faults::Faults::parse(s)
}

/// `--errmsg-suffix`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SuffixArg {
    /// ` rid: …`, today's datacube form.
    Rid,
    /// `, rid: …`.
    CommaRid,
    /// Nothing (old documentation examples).
    None,
}

impl From<SuffixArg> for SuffixStyle {
    fn from(suffix: SuffixArg) -> SuffixStyle {
        match suffix {
            SuffixArg::Rid => SuffixStyle::Rid,
            SuffixArg::CommaRid => SuffixStyle::CommaRid,
            SuffixArg::None => SuffixStyle::None,
        }
    }
}

pub async fn run(args: ServeArgs) -> Result<()> {
    check(&args)?;
    let mirror = args
        .mirror
        .as_deref()
        .map(|path| super::sync::serve_mirror(path).map(|m| (m, path.to_owned())))
        .transpose()?;
    let clock = args.clock.clock();
    let mut config = config(&args);
    if !config.faults.is_empty() {
        tracing::warn!("faults are injected: some answers are errors or late on purpose");
    }
    let shutdown = super::shutdown_signal()?;
    tokio::pin!(shutdown);
    // The addresses first: they answer (alive, not ready) while the database opens.
    let listeners = listeners(&args).await?;
    let addr = listeners.main.local_addr()?;
    // For `datacube healthcheck` with no address (a container's HEALTHCHECK): whatever --listen.
    let _recorded = super::healthcheck::record(addr);
    let starting = Starting::new(&config, &clock, "starting: opening the database");
    // On a task of its own: generating the demo's events or reading the seed keeps a thread
    // busy for a while, and the addresses must answer meanwhile.
    let preparing = tokio::spawn(prepare(
        Preparing {
            database: args.db.database.clone(),
            wait: args.database_wait,
            demo_days: args.demo.then_some(args.demo_days),
            seed: args.seed.clone(),
        },
        clock.clone(),
        starting.clone(),
        addr,
    ));
    let abort = preparing.abort_handle();
    let prepared = waiting::answer_while(&listeners, &starting, preparing);
    let (store, demo_note) = tokio::select! {
        prepared = prepared => prepared.context("starting the server")??,
        () = &mut shutdown => {
            abort.abort();
            tracing::info!("stopped before serving");
            return Ok(());
        }
    };
    tracing::info!(
        %addr,
        database = %args.db.database,
        admin = config.admin_token.is_some(),
        admin_listen = ?listeners.admin.as_ref().and_then(|l| l.local_addr().ok()),
        "datacube serving"
    );
    announce(&listeners, demo_note)?;
    let daemon = mirror.map(|mirror| {
        let stop = datacube_mirror::CancellationToken::new();
        let (handle, runner) =
            super::sync::spawn_daemon(mirror, store.clone(), clock.clone(), stop.clone());
        config.mirror = Some(runner);
        (stop, handle)
    });
    let app = App::new(store, clock, config);
    datacube_server::serve_on(listeners, app, shutdown).await?;
    if let Some((stop, handle)) = daemon {
        // The run under way, if any, ends with its calls in flight and is recorded as
        // interrupted.
        stop.cancel();
        let _ = handle.await;
    }
    Ok(())
}

/// The checks clap cannot make: usage errors (exit 2) before anything is opened.
fn check(args: &ServeArgs) -> Result<()> {
    check_admin_token(args.admin_token.as_deref())?;
    if args.admin_listen.is_some() && args.admin_token.as_deref().is_none_or(str::is_empty) {
        return Err(Exit::usage(
            "--admin-listen: the admin API is off without --admin-token (or DATACUBE_ADMIN_TOKEN)",
        ));
    }
    at_least_one(&[
        ("--max-connections", args.max_connections == 0),
        (
            "--max-connections-per-address",
            args.max_connections_per_address == Some(0),
        ),
        ("--max-in-flight", args.max_in_flight == 0),
        (
            "--max-in-flight-per-address",
            args.max_in_flight_per_address == Some(0),
        ),
    ])?;
    if let Some(dir) = &args.seed {
        if !dir.is_dir() {
            return Err(Exit::usage(format!(
                "--seed {}: not a directory",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// The server's settings from the flags (checked by [`check`]).
fn config(args: &ServeArgs) -> Config {
    Config {
        admin_token: args
            .admin_token
            .clone()
            .filter(|t| !t.is_empty())
            .map(Into::into),
        token_daily_quota: args.token_quota,
        api_daily_quota: args.api_quota,
        retire_legacy_articles: args.retire_legacy_articles,
        suffix: args.errmsg_suffix.into(),
        response_cache: args.response_cache,
        stats_memory: args.stats_memory.saturating_mul(1 << 20),
        limits: Limits {
            max_connections: args.max_connections,
            max_connections_per_address: args
                .max_connections_per_address
                .unwrap_or(args.max_connections / 2)
                .max(1),
            max_in_flight: args.max_in_flight,
            max_in_flight_per_address: args
                .max_in_flight_per_address
                .unwrap_or(args.max_in_flight / 2)
                .max(1),
            header_timeout: args.header_timeout,
            body_timeout: args.body_timeout,
            idle_timeout: args.idle_timeout,
            ..Limits::default()
        },
        faults: args.faults.clone().unwrap_or_default(),
        faults_seed: args.faults_seed,
        ticket_interval: args.ticket_interval,
        request_log: !args.no_request_log,
        demo_days: args.demo.then_some(args.demo_days),
        seed: args.seed.clone(),
        mirror: None,
        metrics_on_main: args.metrics_listen.is_none(),
        threads: args.threads.map_or(0, usize::from),
    }
}

/// The addresses of `--listen`, `--admin-listen` and `--metrics-listen`, bound.
async fn listeners(args: &ServeArgs) -> Result<Listeners> {
    Ok(Listeners {
        main: bind(args.listen, "").await?,
        admin: match args.admin_listen {
            Some(at) => Some(bind(at, "--admin-listen: ").await?),
            None => None,
        },
        metrics: match args.metrics_listen {
            Some(at) => Some(bind(at, "--metrics-listen: ").await?),
            None => None,
        },
    })
}

/// What a starting server says on stdout once it serves: its addresses, and with `--demo` the
/// demo account and a curl line to paste.
fn announce(listeners: &Listeners, demo_note: Option<(Date, Date)>) -> Result<()> {
    let addr = listeners.main.local_addr()?;
    let mut out = std::io::stdout().lock();
    if let Some(l) = &listeners.metrics {
        let _ = writeln!(
            out,
            "datacube metrics on http://{}/metrics",
            l.local_addr()?
        );
    }
    if let Some(l) = &listeners.admin {
        let _ = writeln!(
            out,
            "datacube admin API on http://{}/admin/",
            l.local_addr()?
        );
    }
    let _ = writeln!(out, "datacube is serving the WeChat API on http://{addr}");
    if let Some((first, last)) = demo_note {
        // 0.0.0.0 or :: (as in the container image): the line to paste asks on loopback.
        let host = super::healthcheck::on_loopback(addr).to_string();
        let _ = writeln!(
            out,
            "\ndemo account: appid {app}  secret {secret}\n\
             statistics from {first} to {last} (yesterday appears after 08:00 China time)\n\n\
             try:\n  curl -s \"http://{host}/datacube/getusersummary?access_token=$(curl -s \
             'http://{host}/cgi-bin/token?grant_type=client_credential&appid={app}&secret={secret}' \
             | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')\" \
             -d '{{\"begin_date\":\"{b}\",\"end_date\":\"{last}\"}}'\n",
            app = demo::DEMO_APPID,
            secret = demo::DEMO_SECRET,
            first = format_date(first),
            last = format_date(last),
            b = format_date(add_days(last, -6).max(first)),
        );
    }
    let _ = out.flush();
    Ok(())
}

/// A listener on `at`; `flag` names the flag in the error.
async fn bind(at: SocketAddr, flag: &str) -> Result<TcpListener> {
    TcpListener::bind(at)
        .await
        .with_context(|| format!("{flag}cannot listen on {at}"))
}

/// What [`prepare`] opens and loads.
struct Preparing {
    database: datacube_store::DatabaseUrl,
    wait: std::time::Duration,
    /// `--demo`: its days.
    demo_days: Option<u32>,
    seed: Option<std::path::PathBuf>,
}

/// What the server needs before it serves, while its addresses answer that it is starting
/// (`starting` says why not ready): the database, opened within `--database-wait`, then the
/// demo account and the seed. The first wait for the database is said on stdout, with the
/// address `/readyz` answers on.
async fn prepare(
    what: Preparing,
    clock: Clock,
    starting: Starting,
    addr: SocketAddr,
) -> Result<(Store, Option<(Date, Date)>)> {
    let store = super::database_wait::open(&what.database, what.wait, &starting, || {
        println!("datacube is waiting for its database; /healthz and /readyz on http://{addr}");
    })
    .await?;
    let demo_note = if let Some(days) = what.demo_days {
        starting.set_reason("starting: creating the demo account");
        Some(
            demo::setup(&store, &clock, days)
                .await
                .context("generating demo events")?,
        )
    } else {
        None
    };
    if let Some(dir) = &what.seed {
        starting.set_reason("starting: loading --seed");
        let report =
            datacube_server::seed::load(&store, dir, clock.unix(), ClockArg::yesterday(&clock))
                .await
                .map_err(|e| anyhow::anyhow!("--seed: {e}"))?;
        tracing::info!(
            dir = %dir.display(),
            accounts = report.accounts,
            events = report.accepted,
            already_there = report.duplicates,
            imports = report.imports,
            "seed loaded"
        );
    }
    Ok((store, demo_note))
}
