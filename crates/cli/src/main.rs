//! `datacube`: a self-hosted WeChat datacube statistics server.
//!
//! The binary is thin: it parses flags (each with a `DATACUBE_…` env fallback), sets up
//! logging, calls the library crates and maps the outcome to an exit code:
//! 0 success, 1 failure (the message says why), 2 usage error, 3 partial success (`sync`).

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use datacube_api::date::{add_days, format_date};
use datacube_api::{Endpoint, SuffixStyle};
use datacube_server::clock::Clock;
use datacube_server::config::{Config, Limits};
use datacube_server::{admin, demo, import, secret, App};
use datacube_store::{AccountRecord, DatabaseUrl, Store, StoreError};
use jiff::civil::Date;

mod cmd;

/// mimalloc: faster than the system allocator on the serving path (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "datacube",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("DATACUBE_COMMIT"), ")"),
    about = "A self-hosted WeChat datacube statistics server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the WeChat API (tokens, the 21 datacube endpoints) and the admin API.
    Serve(ServeArgs),
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Manage third-party platforms (components) that read accounts' statistics for them.
    #[command(subcommand)]
    Component(ComponentCommand),
    /// Import a WeChat answer (`{"list":[…]}`) for one endpoint into the statistics store.
    Import(ImportArgs),
    /// Ingest events (NDJSON, one per line) and compute the statistics they change.
    Ingest(cmd::ingest::IngestArgs),
    /// Generate a deterministic stream of realistic events for an account and ingest it.
    Demo(DemoArgs),
    /// Act as WeChat toward a developer's server: verify its URL, push user messages, judge
    /// the replies, and record messages and callbacks for message and interface analysis.
    Push(PushArgs),
    /// Stand between WeChat and a developer's server: forward every request and answer
    /// unchanged, and record the pushes' messages and callbacks.
    Proxy(ProxyArgs),
    /// Mirror an account's statistics from WeChat (or a compatible server) into the database,
    /// incrementally; `serve` then answers with them.
    Sync(cmd::sync::SyncArgs),
    /// Write stored statistics of one endpoint as CSV, NDJSON or WeChat's JSON.
    Export(ExportArgs),
    /// Ask a running server whether it is ready (`GET /readyz`): exit 0 ready, 1 not. For a
    /// container's HEALTHCHECK.
    Healthcheck(cmd::healthcheck::HealthcheckArgs),
}

#[derive(Args)]
struct ExportArgs {
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
    /// csv, ndjson, or json (WeChat's own body, `{"list":[…]}`).
    #[arg(long, default_value = "json", value_parser = ["csv", "ndjson", "json"])]
    format: String,
    /// Write here instead of standard output.
    #[arg(long)]
    output: Option<String>,
    #[command(flatten)]
    db: DatabaseArg,
    /// Emulated "now" (RFC 3339): which day is the last ready one (snapshots after it are left
    /// out, as `serve` leaves them out).
    #[arg(long, env = "DATACUBE_CLOCK")]
    clock: Option<jiff::Timestamp>,
}

fn parse_day(s: &str) -> Result<Date, String> {
    datacube_api::date::parse_date(s).ok_or_else(|| format!("{s:?} is not a YYYY-MM-DD date"))
}

fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    Endpoint::from_name(s.trim()).ok_or_else(|| {
        format!(
            "{s:?} is not a datacube endpoint (one of {})",
            Endpoint::ALL.map(|e| e.name()).join(", ")
        )
    })
}

#[derive(Args)]
struct DatabaseArg {
    /// Database URL; created and migrated automatically (never shown with its password).
    #[arg(
        long,
        env = "DATACUBE_DATABASE",
        hide_env_values = true,
        default_value = "sqlite://datacube.db"
    )]
    database: DatabaseUrl,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DATACUBE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    db: DatabaseArg,
    /// Bearer token of the admin API (`/admin/…`); the admin API is disabled when unset.
    #[arg(long, env = "DATACUBE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Emulated "now" (RFC 3339, e.g. 2024-05-01T09:00:00+08:00); it advances with real time.
    #[arg(long, env = "DATACUBE_CLOCK")]
    clock: Option<jiff::Timestamp>,
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
    /// Seconds between the verify-ticket pushes to components' event URLs (WeChat: 600).
    #[arg(long, env = "DATACUBE_TICKET_INTERVAL", default_value_t = 600)]
    ticket_interval: u64,
    /// How errmsg ends: `rid` (` rid: …`, today's datacube form), `comma-rid` or `none`.
    #[arg(long, env = "DATACUBE_ERRMSG_SUFFIX", default_value = "rid", value_parser = parse_suffix)]
    errmsg_suffix: SuffixStyle,
    /// No log line per request (by default one at info: method, path without the query,
    /// appid, endpoint, errcode, status, latency).
    #[arg(long, env = "DATACUBE_NO_REQUEST_LOG")]
    no_request_log: bool,
    /// Datacube answers kept in memory, retired as soon as their account's statistics change
    /// (within 0.1 s when another process wrote them); 0 turns the cache off.
    #[arg(long, env = "DATACUBE_RESPONSE_CACHE", default_value_t = Config::default().response_cache)]
    response_cache: usize,
    /// Connections served at once; past it new connections get `-1` and are closed.
    #[arg(long, env = "DATACUBE_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Requests handled at once; past it requests are answered `-1 system error`.
    #[arg(long, env = "DATACUBE_MAX_IN_FLIGHT", default_value_t = Limits::default().max_in_flight)]
    max_in_flight: usize,
    /// Seconds a connection may take to send a request head, and may stay idle between requests.
    #[arg(long, env = "DATACUBE_IDLE_TIMEOUT", default_value_t = Limits::default().idle_timeout.as_secs())]
    idle_timeout: u64,
    /// Inject faults: rules `TARGET:EFFECT@RATE` separated by commas, e.g.
    /// `*:-1@5%,getuserreadhour:45011@0.02,*:+20ms@0.1,token:-1@1%` (TARGET an endpoint, * or
    /// token; EFFECT an error code or +delay).
    #[arg(long, env = "DATACUBE_FAULTS", value_parser = parse_faults)]
    faults: Option<datacube_server::faults::Faults>,
    /// Mirror what this configuration names (TOML; see `datacube sync --config`) every day
    /// at its scheduled time, into this server's database, by this server's clock.
    #[arg(long, env = "DATACUBE_MIRROR")]
    mirror: Option<std::path::PathBuf>,
    /// Serve `/metrics` on this address instead of the WeChat API's (with `/healthz` and
    /// `/readyz`, which stay on the API's too), for a port only Prometheus and the
    /// orchestrator reach.
    #[arg(long, env = "DATACUBE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
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

fn parse_suffix(s: &str) -> Result<SuffixStyle, String> {
    SuffixStyle::parse(s).ok_or_else(|| format!("{s:?} is not one of rid, comma-rid, none"))
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Add an Official Account. The secret is stored hashed and never shown again.
    Add {
        /// AppID (`wx` + 16 hex digits for real accounts).
        #[arg(long)]
        appid: String,
        /// AppSecret.
        #[arg(long, env = "DATACUBE_SECRET", hide_env_values = true)]
        secret: String,
        /// Make the account unverified: every datacube endpoint answers it 48001.
        #[arg(long)]
        unverified: bool,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// List accounts (never their secrets).
    List {
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Remove an account and everything of it: events, statistics, tokens, quotas, sync
    /// records, the grants it gave. Running servers forget it within a second.
    Remove {
        /// The account's AppID.
        #[arg(long)]
        appid: String,
        #[command(flatten)]
        db: DatabaseArg,
    },
}

#[derive(Subcommand)]
enum ComponentCommand {
    /// Add a third-party platform. `serve` pushes its component_verify_ticket to the event URL
    /// every 10 minutes (and on `POST /admin/components/<appid>/ticket`).
    Add {
        /// The component's AppID.
        #[arg(long)]
        appid: String,
        /// Its AppSecret (stored hashed).
        #[arg(long, env = "DATACUBE_COMPONENT_SECRET", hide_env_values = true)]
        secret: String,
        /// The Token of its pushes (3–32 letters and digits).
        #[arg(long)]
        token: String,
        /// Its EncodingAESKey (43 characters).
        #[arg(long)]
        aes_key: String,
        /// 授权事件接收URL: where tickets and authorization events are pushed.
        #[arg(long)]
        event_url: Option<String>,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// List components (never their secrets).
    List {
        #[command(flatten)]
        db: DatabaseArg,
    },
}

#[derive(Args)]
struct ImportArgs {
    /// Whose statistics these are.
    #[arg(long)]
    appid: String,
    /// The endpoint the body was returned by (e.g. getusersummary).
    #[arg(long)]
    endpoint: String,
    /// File holding the body exactly as WeChat returned it, or `-` for standard input.
    file: String,
    /// Refuse rows with fields WeChat's documentation does not list (by default they are
    /// kept as sent, with a warning per field).
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    db: DatabaseArg,
}

#[derive(Args)]
struct DemoArgs {
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
    /// Emulated "now" (RFC 3339).
    #[arg(long, env = "DATACUBE_CLOCK")]
    clock: Option<jiff::Timestamp>,
}

#[derive(Args)]
struct PushArgs {
    /// The account the messages are for (it must exist; its statistics get the events).
    #[arg(long)]
    appid: String,
    /// The developer's server URL (the one configured on the Official Account Platform).
    #[arg(long)]
    url: String,
    /// The server's token.
    #[arg(long, env = "DATACUBE_PUSH_TOKEN", hide_env_values = true)]
    token: String,
    /// The EncodingAESKey (43 characters), for the compat and safe modes.
    #[arg(long, env = "DATACUBE_PUSH_AES_KEY", hide_env_values = true)]
    aes_key: Option<String>,
    /// plain, compat or safe.
    #[arg(long, default_value = "plain", value_parser = parse_mode)]
    mode: datacube_push::Mode,
    /// Messages per second; 0: as fast as --concurrency allows.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Messages to send.
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,
    /// How long to send (e.g. 30s, 5m, 1h).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Users (openids) the messages come from.
    #[arg(long, default_value_t = 100)]
    users: u32,
    /// Messages in flight at most.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The account's original id (`gh_…`), the pushes' ToUserName; derived from the appid
    /// when not given.
    #[arg(long)]
    original_id: Option<String>,
    /// Send only text messages saying this.
    #[arg(long)]
    text: Option<String>,
    /// Seconds to wait for an answer (WeChat waits 5).
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    #[command(flatten)]
    db: DatabaseArg,
    /// Emulated "now" (RFC 3339): the pushes' CreateTime and the events' times.
    #[arg(long, env = "DATACUBE_CLOCK")]
    clock: Option<jiff::Timestamp>,
    /// Serve `GET /metrics` on this address while pushing (deliveries by verdict, their time
    /// cost, messages answered and failed).
    #[arg(long, env = "DATACUBE_PUSH_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
}

#[derive(Args)]
struct ProxyArgs {
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
    /// Seconds the upstream has to answer before the proxy answers 504 (WeChat waits 5).
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Event loops, each on a thread of its own with its own listening socket (as nginx's
    /// workers); the default is one per CPU.
    #[arg(long, env = "DATACUBE_PROXY_WORKERS")]
    workers: Option<usize>,
    /// Client connections at once; at the limit the one waiting longest on its client is
    /// closed, or a new one answered 503 [default: half the open-file limit, at most 4096].
    #[arg(long, env = "DATACUBE_PROXY_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Seconds a client has to send a request's head.
    #[arg(long, default_value_t = 5.0)]
    header_timeout: f64,
    /// Seconds a client has to send a request's body.
    #[arg(long, default_value_t = 5.0)]
    body_timeout: f64,
    /// Seconds a kept connection may stay idle between requests.
    #[arg(long, default_value_t = 15.0)]
    idle_timeout: f64,
    /// The largest request body in bytes (a WeChat push is a few KB); past it: 413.
    #[arg(long, default_value_t = 64 * 1024)]
    max_body: usize,
    #[command(flatten)]
    db: DatabaseArg,
    /// Emulated "now" (RFC 3339): the events' times.
    #[arg(long, env = "DATACUBE_CLOCK")]
    clock: Option<jiff::Timestamp>,
    /// Serve `GET /metrics` on this address (callbacks by verdict, their time cost,
    /// connections refused).
    #[arg(long, env = "DATACUBE_PROXY_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
}

fn parse_mode(s: &str) -> Result<datacube_push::Mode, String> {
    datacube_push::Mode::parse(s).ok_or_else(|| format!("{s:?} is not one of plain, compat, safe"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration like 30s, 5m or 1h: {e}"))?;
    Duration::try_from(d).map_err(|_| format!("{s:?} is negative"))
}

/// Puts the calling thread in the background: SCHED_IDLE where there is one (a thread that
/// runs only when a CPU would otherwise be idle, and that any woken thread preempts at once),
/// else the lowest priority of its policy.
fn idle_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
            ThreadSchedulePolicy,
        };
        if set_thread_priority_and_policy(
            thread_native_id(),
            thread_priority::ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        )
        .is_ok()
        {
            return;
        }
    }
    let _ = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min);
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    // The proxy is one event loop, as nginx's workers are: a request's reads and writes
    // then never hop between threads (SQLite work still runs on blocking threads).
    let mut builder = if matches!(cli.command, Command::Proxy(_)) {
        let mut b = tokio::runtime::Builder::new_current_thread();
        // The only threads this runtime starts are blocking ones — storing what the proxy
        // records. They yield to the proxy's own: recording must not show in its latency.
        b.on_thread_start(|| {
            idle_priority();
        });
        b
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(e.downcast_ref::<Exit>().map_or(1, |x| x.code))
        }
    }
}

/// An error with an exit code of its own: 2 for a usage error found after parsing (before
/// anything is opened), 3 for a partial success.
#[derive(Debug)]
struct Exit {
    code: u8,
    message: String,
}

impl Exit {
    /// A usage error: exit 2.
    fn usage(message: impl Into<String>) -> anyhow::Error {
        Exit::code(2, message)
    }

    fn code(code: u8, message: impl Into<String>) -> anyhow::Error {
        anyhow::Error::new(Exit {
            code,
            message: message.into(),
        })
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// Logs go to stderr; `DATACUBE_LOG` (or `RUST_LOG`) filters them, `DATACUBE_LOG_FORMAT=json`
/// makes them JSON lines.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("DATACUBE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // The PostgreSQL client logs every statement's parameters at debug and trace — a
    // component's push Token and EncodingAESKey among them: never below info, whatever is
    // asked for.
    let filter = ["tokio_postgres=info", "postgres=info"]
        .into_iter()
        .filter_map(|d| d.parse().ok())
        .fold(filter, |f, d| f.add_directive(d));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("DATACUBE_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Account(AccountCommand::Add {
            appid,
            secret,
            unverified,
            db,
        }) => account_add(&db.database, appid, secret, !unverified).await,
        Command::Account(AccountCommand::List { db }) => account_list(&db.database).await,
        Command::Account(AccountCommand::Remove { appid, db }) => {
            let store = open(&db.database)?;
            if !store.remove_account(&appid).await? {
                return Err(Exit::code(1, format!("no account {appid}")));
            }
            println!("removed account {appid} and its data");
            Ok(())
        }
        Command::Component(ComponentCommand::Add {
            appid,
            secret,
            token,
            aes_key,
            event_url,
            db,
        }) => component_add(&db.database, appid, secret, token, aes_key, event_url).await,
        Command::Component(ComponentCommand::List { db }) => {
            let store = open(&db.database)?;
            for c in store.components().await? {
                println!(
                    "{}\t{}",
                    c.appid,
                    c.event_url.as_deref().unwrap_or("(no event URL)")
                );
            }
            Ok(())
        }
        Command::Import(args) => import_file(args).await,
        Command::Ingest(args) => cmd::ingest::run(args).await,
        Command::Healthcheck(args) => cmd::healthcheck::run(args).await,
        Command::Demo(args) => demo_events(args).await,
        Command::Push(args) => push(args).await,
        Command::Proxy(args) => proxy(args).await,
        Command::Sync(args) => cmd::sync::sync(args).await,
        Command::Export(args) => export(args).await,
    }
}

fn open(url: &DatabaseUrl) -> Result<Store> {
    Store::open(url.expose()).with_context(|| format!("opening the database {url}"))
}

async fn serve(args: ServeArgs) -> Result<()> {
    check_admin_token(args.admin_token.as_deref())?;
    if let Some(dir) = &args.seed {
        if !dir.is_dir() {
            return Err(Exit::usage(format!(
                "--seed {}: not a directory",
                dir.display()
            )));
        }
    }
    let mirror = args
        .mirror
        .as_deref()
        .map(cmd::sync::serve_mirror)
        .transpose()?;
    let store = open(&args.db.database)?;
    let clock = match args.clock {
        Some(start) => Clock::starting_at(start),
        None => Clock::real(),
    };
    let config = Config {
        admin_token: args.admin_token.filter(|t| !t.is_empty()),
        token_daily_quota: args.token_quota,
        api_daily_quota: args.api_quota,
        retire_legacy_articles: args.retire_legacy_articles,
        suffix: args.errmsg_suffix,
        response_cache: args.response_cache,
        limits: Limits {
            max_connections: args.max_connections.max(1),
            max_in_flight: args.max_in_flight.max(1),
            idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
            ..Limits::default()
        },
        faults: args.faults.clone().unwrap_or_default(),
        ticket_interval: Duration::from_secs(args.ticket_interval.max(1)),
        request_log: !args.no_request_log,
        demo_days: args.demo.then_some(args.demo_days),
        seed: args.seed.clone(),
        metrics_on_main: args.metrics_listen.is_none(),
    };
    if !config.faults.is_empty() {
        tracing::warn!("faults are injected: some answers are errors or late on purpose");
    }
    let shutdown = shutdown_signal()?;
    let demo_note = if args.demo {
        Some(
            demo::setup(&store, &clock, args.demo_days)
                .await
                .context("generating demo events")?,
        )
    } else {
        None
    };
    if let Some(dir) = &args.seed {
        let now = clock.unix();
        let yesterday = add_days(datacube_api::date::china_date(now), -1);
        let report = datacube_server::seed::load(&store, dir, now, yesterday)
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
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let metrics_listener = match args.metrics_listen {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("--metrics-listen: cannot listen on {at}"))?,
        ),
        None => None,
    };
    tracing::info!(%addr, database = %args.db.database, admin = config.admin_token.is_some(), "datacube serving");
    let mut out = std::io::stdout().lock();
    if let Some(l) = &metrics_listener {
        let _ = writeln!(
            out,
            "datacube metrics on http://{}/metrics",
            l.local_addr()?
        );
    }
    let _ = writeln!(out, "datacube is serving the WeChat API on http://{addr}");
    if let Some((first, last)) = demo_note {
        // 0.0.0.0 or :: (as in the container image): the line to paste asks on loopback.
        let host = cmd::healthcheck::on_loopback(addr).to_string();
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
    drop(out);
    let daemon = mirror.map(|mirror| {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let handle = cmd::sync::spawn_daemon(
            mirror,
            store.clone(),
            clock.clone(),
            stop.clone(),
            wake.clone(),
        );
        (stop, wake, handle)
    });
    let app = App::new(store, clock, config);
    let internal = metrics_listener.map(|l| {
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = datacube_server::serve_internal(l, app, std::future::pending()).await {
                tracing::error!(error = %e, "the metrics endpoint stopped");
            }
        })
    });
    datacube_server::serve(listener, app, shutdown).await?;
    if let Some(internal) = internal {
        internal.abort();
    }
    if let Some((stop, wake, handle)) = daemon {
        // The run under way, if any, ends after its calls in flight (each bounded by its
        // timeouts) and is recorded as interrupted.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        wake.notify_one();
        let _ = handle.await;
    }
    Ok(())
}

/// Registers SIGINT and SIGTERM handlers now (so a signal that arrives while the server starts
/// is not lost) and returns a future that completes on the first of them.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
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

async fn account_add(
    url: &DatabaseUrl,
    appid: String,
    secret: String,
    verified: bool,
) -> Result<()> {
    if let Err(msg) = admin::check_appid(&appid).and_then(|()| admin::check_secret(&secret)) {
        bail!(msg);
    }
    let store = open(url)?;
    let hash = tokio::task::spawn_blocking(move || secret::hash_secret(&secret)).await?;
    let record = AccountRecord {
        appid: appid.clone(),
        secret_hash: hash,
        verified,
        created_at: jiff::Timestamp::now().as_second(),
    };
    match store.add_account(record).await {
        Ok(()) => {
            println!(
                "added account {appid} ({})",
                if verified {
                    "verified"
                } else {
                    "unverified: datacube endpoints answer 48001"
                }
            );
            Ok(())
        }
        Err(StoreError::AccountExists(_)) => bail!("account {appid} already exists in {url}"),
        Err(e) => Err(e.into()),
    }
}

async fn component_add(
    url: &DatabaseUrl,
    appid: String,
    secret: String,
    token: String,
    aes_key: String,
    event_url: Option<String>,
) -> Result<()> {
    if let Err(msg) = admin::check_appid(&appid)
        .and_then(|()| admin::check_secret(&secret))
        .and_then(|()| admin::check_component_keys(&token, &aes_key, event_url.as_deref()))
    {
        bail!(msg);
    }
    let store = open(url)?;
    let hash = tokio::task::spawn_blocking(move || secret::hash_secret(&secret)).await?;
    let record = datacube_store::ComponentRecord {
        appid: appid.clone(),
        secret_hash: hash,
        token,
        aes_key,
        event_url,
        created_at: jiff::Timestamp::now().as_second(),
    };
    match store.add_component(record).await {
        Ok(()) => {
            println!("added component {appid}");
            Ok(())
        }
        Err(StoreError::AccountExists(_)) => bail!("component {appid} already exists in {url}"),
        Err(e) => Err(e.into()),
    }
}

async fn account_list(url: &DatabaseUrl) -> Result<()> {
    let store = open(url)?;
    let accounts = store.accounts().await?;
    let mut out = std::io::stdout().lock();
    let mut write = || -> std::io::Result<()> {
        writeln!(out, "{:<24} {:<10} CREATED", "APPID", "VERIFIED")?;
        for a in &accounts {
            let created = jiff::Timestamp::from_second(a.created_at)
                .map(|t| t.to_string())
                .unwrap_or_default();
            writeln!(
                out,
                "{:<24} {:<10} {created}",
                a.appid,
                if a.verified { "yes" } else { "no" }
            )?;
        }
        out.flush()
    };
    match write() {
        // `datacube account list | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

async fn import_file(args: ImportArgs) -> Result<()> {
    admin::check_appid(&args.appid).map_err(anyhow::Error::msg)?;
    let Some(endpoint) = Endpoint::from_name(&args.endpoint) else {
        let names: Vec<&str> = Endpoint::ALL.iter().map(|e| e.name()).collect();
        bail!(
            "unknown endpoint {:?}; expected one of: {}",
            args.endpoint,
            names.join(", ")
        );
    };
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

async fn demo_events(args: DemoArgs) -> Result<()> {
    let clock = args.clock.map_or_else(Clock::real, Clock::starting_at);
    let yesterday = add_days(datacube_api::date::china_date(clock.unix()), -1);
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
        return match written {
            // `datacube demo --output - | head` is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other.with_context(|| format!("writing {output}"))?),
        };
    }
    let store = open(&args.db.database)?;
    if store.account(&args.appid).await?.is_none() {
        bail!(
            "no account {}; add it first with `datacube account add`",
            args.appid
        );
    }
    let report = demo::seed(&store, &args.appid, yesterday, days, args.seed, yesterday).await?;
    println!(
        "{} days of demo events for {}: {} accepted, {} duplicates",
        days, args.appid, report.accepted, report.duplicates
    );
    Ok(())
}

/// `--metrics-listen` of `push` and `proxy`: `GET /metrics` on `at`, announced on stdout,
/// served until the process ends.
async fn metrics_endpoint(at: Option<SocketAddr>) -> Result<()> {
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

async fn push(args: PushArgs) -> Result<()> {
    use datacube_push::driver::{self, Config, Stats};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    if args.count.is_none() && args.duration.is_none() {
        bail!("say how many messages to send: --count N or --duration D");
    }
    let key = match &args.aes_key {
        Some(k) => Some(datacube_push::AesKey::from_encoding_key(k).context("--aes-key")?),
        None => None,
    };
    if args.mode != datacube_push::Mode::Plain && key.is_none() {
        bail!("--mode compat and safe encrypt: give the EncodingAESKey with --aes-key");
    }
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        bail!("--timeout must be a positive number of seconds");
    }
    let store = open(&args.db.database)?;
    if store.account(&args.appid).await?.is_none() {
        bail!(
            "no account {}; add it first with `datacube account add`",
            args.appid
        );
    }
    metrics_endpoint(args.metrics_listen).await?;
    let clock = args.clock.map_or_else(Clock::real, Clock::starting_at);
    let now: datacube_push::recorder::Now = {
        let clock = clock.clone();
        Arc::new(move || clock.now())
    };
    let config = Arc::new(Config {
        original_id: args
            .original_id
            .clone()
            .unwrap_or_else(|| driver::default_original_id(&args.appid)),
        appid: args.appid.clone(),
        url: args.url.clone(),
        token: args.token.clone(),
        key,
        mode: args.mode,
        rate: (args.rate > 0.0).then_some(args.rate),
        count: args.count,
        duration: args.duration,
        users: args.users.max(1),
        concurrency: args.concurrency.max(1),
        timeout: Duration::from_secs_f64(args.timeout),
        deliveries: 3,
        text: args.text.clone(),
    });
    let client = driver::http_client(config.concurrency)?;
    driver::verify_url(&client, &config, &now).await?;
    eprintln!("{} passed URL verification", config.url);
    let recorder = datacube_push::recorder::Recorder::start(store, now.clone());
    let stats = Arc::new(Stats::default());
    let started = std::time::Instant::now();
    let line = |s: &Stats, elapsed: f64| {
        let sent = s.sent.load(Ordering::Relaxed);
        format!(
            "sent {sent} · answered {} · failed {} · p50 {} · p99 {} · {:.0}/s",
            s.answered.load(Ordering::Relaxed),
            s.failed.load(Ordering::Relaxed),
            s.percentile_ms(0.5)
                .map_or("–".into(), |v| format!("{v:.1} ms")),
            s.percentile_ms(0.99)
                .map_or("–".into(), |v| format!("{v:.1} ms")),
            sent as f64 / elapsed.max(0.001)
        )
    };
    let progress = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    let running = tokio::spawn(driver::run(
        config.clone(),
        recorder.clone(),
        now.clone(),
        stats.clone(),
    ));
    tokio::pin!(running);
    loop {
        tokio::select! {
            done = &mut running => {
                done.context("the push run failed")??;
                break;
            }
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                progress.set_message(line(&stats, started.elapsed().as_secs_f64()));
                progress.tick();
            }
        }
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let recorded = recorder.finish().await?;
    let sent = stats.sent.load(Ordering::Relaxed);
    println!(
        "pushed {sent} message{} to {} in {elapsed:.1} s ({:.1}/s), {} mode",
        if sent == 1 { "" } else { "s" },
        config.url,
        sent as f64 / elapsed.max(0.001),
        args.mode.name()
    );
    let types: Vec<String> = stats
        .types()
        .iter()
        .map(|(t, n)| format!("{n} {t}"))
        .collect();
    println!("  messages: {}", types.join(", "));
    println!(
        "  answered {}, failed {} ({} deliveries)",
        stats.answered.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed),
        stats.deliveries.load(Ordering::Relaxed)
    );
    for (verdict, n) in stats.verdicts() {
        println!("  {n} × {verdict}");
    }
    if let (Some(p50), Some(p99), Some(max)) = (
        stats.percentile_ms(0.5),
        stats.percentile_ms(0.99),
        stats.percentile_ms(1.0),
    ) {
        println!("  delivery time: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");
    }
    println!(
        "  recorded {} events in {} ({} already there)",
        recorded.accepted, args.db.database, recorded.duplicates
    );
    Ok(())
}

async fn proxy(args: ProxyArgs) -> Result<()> {
    use std::sync::Arc;
    let upstream: hyper::Uri = args
        .upstream
        .parse()
        .with_context(|| format!("--upstream {:?} is not a URL", args.upstream))?;
    if upstream.scheme_str() != Some("http") || upstream.authority().is_none() {
        bail!(
            "--upstream must be http://host:port (TLS ends before the proxy); got {:?}",
            args.upstream
        );
    }
    let key = match &args.aes_key {
        Some(k) => Some(datacube_push::AesKey::from_encoding_key(k).context("--aes-key")?),
        None => None,
    };
    for (flag, seconds) in [
        ("--timeout", args.timeout),
        ("--header-timeout", args.header_timeout),
        ("--body-timeout", args.body_timeout),
        ("--idle-timeout", args.idle_timeout),
    ] {
        if !(seconds > 0.0 && seconds <= 3600.0) {
            return Err(Exit::usage(format!(
                "{flag} must be a number of seconds, more than 0 and at most 3600"
            )));
        }
    }
    if args.max_connections == Some(0) || args.max_body == 0 {
        return Err(Exit::usage(
            "--max-connections and --max-body must be at least 1",
        ));
    }
    let limits = datacube_push::proxy::Limits {
        header_timeout: Duration::from_secs_f64(args.header_timeout),
        body_timeout: Duration::from_secs_f64(args.body_timeout),
        idle_timeout: Duration::from_secs_f64(args.idle_timeout),
        max_body: args.max_body,
        max_connections: args
            .max_connections
            .unwrap_or_else(datacube_push::proxy::default_max_connections),
        ..datacube_push::proxy::Limits::default()
    };
    let store = open(&args.db.database)?;
    if store.account(&args.appid).await?.is_none() {
        bail!(
            "no account {}; add it first with `datacube account add`",
            args.appid
        );
    }
    metrics_endpoint(args.metrics_listen).await?;
    let clock = args.clock.map_or_else(Clock::real, Clock::starting_at);
    let now: datacube_push::recorder::Now = {
        let clock = clock.clone();
        Arc::new(move || clock.now())
    };
    let recorder = datacube_push::recorder::Recorder::start(store, now.clone());
    let shutdown = shutdown_signal()?;
    let workers = match args.workers {
        Some(0) => bail!("--workers must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    };
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
        timeout: Duration::from_secs_f64(args.timeout),
        limits,
    };
    datacube_push::proxy::serve_workers(listeners, config, recorder.clone(), now, shutdown).await?;
    let recorded = recorder.finish().await?;
    println!(
        "recorded {} events in {} ({} already there)",
        recorded.accepted, args.db.database, recorded.duplicates
    );
    Ok(())
}

async fn export(args: ExportArgs) -> Result<()> {
    use datacube_api::row::{answer_body, is_delay, list_body, trim_snapshots};
    let store = open(&args.db.database)?;
    if args.from > args.to {
        bail!("--from is after --to");
    }
    let endpoint = args.endpoint;
    let (rows, _) = store
        .list_rows(&args.appid, endpoint, args.from, args.to)
        .await?;
    // As `serve` would answer now: snapshots up to the last ready day.
    let now = args.clock.unwrap_or_else(jiff::Timestamp::now);
    let ready = datacube_api::date::last_ready_day(now.as_second());
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
        match args.format.as_str() {
            "json" => {
                // The answer of a call over the range; `is_delay` if any of its days may change.
                let delayed = is_delay(endpoint, args.to.min(ready), ready);
                writeln!(out, "{}", answer_body(endpoint, body.clone(), delayed))?;
            }
            "ndjson" => {
                for r in &list {
                    writeln!(out, "{}", r.get())?;
                }
            }
            _ => {
                let columns = csv_columns(endpoint);
                let mut csv = csv::Writer::from_writer(&mut out);
                csv.write_record(columns.iter().map(|c| c.header))?;
                for r in &list {
                    let row: Fields = serde_json::from_str(r.get())?;
                    let details: Vec<Fields> = match datacube_api::row::snapshots_field(endpoint)
                        .and_then(|f| row.get(f))
                    {
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
                }
                csv.flush()?;
            }
        }
        out.flush()?;
        Ok(())
    })();
    match written {
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
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
