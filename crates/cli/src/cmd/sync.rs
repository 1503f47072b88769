//! `datacube sync`: mirror accounts from WeChat (or a compatible server), once from flags or
//! a configuration file, every day as a daemon, or show how the runs went.

use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use datacube_api::clock::Clock;
use datacube_api::date::format_date;
use datacube_api::Endpoint;
use datacube_mirror::report::{Level, RunReport};
use datacube_mirror::{
    self as mirror, AccountSource, CancellationToken, ComponentSource, Context, LocalSecrets,
    Mirror, Secret,
};
use datacube_store::Store;
use jiff::civil::Date;

use super::shutdown_signal;
use crate::args::{duration, parse_day, parse_endpoint, timeout, ClockArg, DatabaseArg};
use crate::{open, Code, Exit};

#[derive(Args)]
pub struct SyncArgs {
    /// The account to mirror. With `--component-appid` and no `--appid`: every account that
    /// authorized the component (each with the refresh token the upstream lists).
    // Which of --appid, --component-appid and --mirror is needed is checked after parsing
    // ([`mirror_of`]): clap does not count a value from the settings file as given.
    #[arg(long)]
    appid: Option<String>,
    /// Its AppSecret. The local account is created with it (or its secret updated to it) once
    /// the upstream accepted it, so that `serve` answers the mirrored statistics with the same
    /// credentials; not needed when reading as a third-party platform.
    #[arg(long, env = "DATACUBE_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Read as this third-party platform (component), with authorizer tokens.
    #[arg(long, conflicts_with = "mirror")]
    component_appid: Option<String>,
    /// The component's AppSecret.
    #[arg(long, env = "DATACUBE_COMPONENT_SECRET", hide_env_values = true)]
    component_secret: Option<String>,
    /// A component_verify_ticket (the last one pushed to the component), to get component
    /// tokens with.
    #[arg(long, env = "DATACUBE_COMPONENT_TICKET", hide_env_values = true)]
    component_ticket: Option<String>,
    /// A component_access_token already at hand (instead of, or before, the ticket).
    #[arg(long, env = "DATACUBE_COMPONENT_TOKEN", hide_env_values = true)]
    component_token: Option<String>,
    /// The account's authorizer_refresh_token (with `--appid` and `--component-appid`).
    #[arg(long, env = "DATACUBE_REFRESH_TOKEN", hide_env_values = true)]
    refresh_token: Option<String>,
    /// What to mirror, from where and when, in a TOML file (docs/sync.md: "A daily mirror");
    /// the flags below override its settings.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["appid", "component_appid"])]
    mirror: Option<PathBuf>,
    /// Run the configuration's mirror every day at its scheduled time (China time) until
    /// SIGINT or SIGTERM, retrying failed runs.
    #[arg(long, conflicts_with_all = ["dry_run", "status"])]
    daemon: bool,
    /// Show the recorded runs (of the configuration's mirror, or of all) and exit with the
    /// newest one's code.
    #[arg(long, conflicts_with = "dry_run")]
    status: bool,
    /// The server to mirror [default: https://api.weixin.qq.com].
    #[arg(long, env = "DATACUBE_UPSTREAM", hide_env_values = true)]
    upstream: Option<String>,
    /// First day (YYYY-MM-DD) [default: 2014-12-01].
    #[arg(long, value_parser = parse_day)]
    from: Option<Date>,
    /// Last day (YYYY-MM-DD); the last ready day when not given (yesterday after 08:00).
    #[arg(long, value_parser = parse_day)]
    to: Option<Date>,
    /// Endpoints, comma-separated (default: all 21; the four of 2025 are asked from
    /// 2025-11-01 on, an endpoint the upstream says is offline (47009) is asked no more).
    #[arg(long, value_delimiter = ',', value_parser = parse_endpoint)]
    endpoints: Vec<Endpoint>,
    /// Print the calls it would make, per endpoint, and stop.
    #[arg(long)]
    dry_run: bool,
    /// Calls at once, at most (1–64) [default: 8].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: Option<u16>,
    /// Refuse rows with fields WeChat's documentation does not list (by default they are
    /// kept as sent, with a warning per endpoint and field).
    #[arg(long)]
    strict: bool,
    /// Use /cgi-bin/stable_token instead of /cgi-bin/token.
    #[arg(long)]
    stable_token: bool,
    /// How long to wait after a 45011 (per-minute quota) before trying again; doubles on each
    /// 45011 of the same call, up to a minute [default: 2s].
    #[arg(long, value_parser = duration)]
    slow_down: Option<Duration>,
    /// Attempts after the first of a call that met `-1`, HTTP 5xx, a timeout or a network
    /// error [default: 5].
    #[arg(long, alias = "retries", value_parser = clap::value_parser!(u32).range(0..=20))]
    call_retries: Option<u32>,
    /// How long an answer may take, whole [default: 60s].
    #[arg(long, value_parser = timeout)]
    timeout: Option<Duration>,
    /// How long a connection may take [default: 10s].
    #[arg(long, value_parser = timeout)]
    connect_timeout: Option<Duration>,
    /// How long until an answer's status and headers [default: 30s].
    #[arg(long, value_parser = timeout)]
    header_timeout: Option<Duration>,
    /// The largest answer read, e.g. 64MiB (a larger one fails its endpoint) [default: 64MiB].
    #[arg(long, value_parser = size)]
    max_answer: Option<u64>,
    /// `text` for people; `json` prints the run's report (calls, retries, rows stored and
    /// skipped, each endpoint's status and error) on stdout, the text on stderr.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    report: ReportFormat,
    #[command(flatten)]
    db: DatabaseArg,
    #[command(flatten)]
    clock: ClockArg,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

fn size(s: &str) -> Result<u64, String> {
    let n = mirror::config::parse_size(s)?;
    if n < 1024 {
        return Err("at least 1 KiB".into());
    }
    Ok(n)
}

/// Secrets stored as the server stores them.
struct ServerSecrets;

impl LocalSecrets for ServerSecrets {
    fn hash(&self, secret: &str) -> String {
        datacube_api::account::hash_secret(secret)
    }
    fn verify(&self, secret: &str, hash: &str) -> bool {
        datacube_api::account::verify_secret(secret, hash)
    }
    fn random(&self) -> String {
        datacube_api::token::new_token()
    }
}

/// The mirror of the flags, or of the configuration file with the flags over it. Usage
/// errors (exit 2) come out before anything is opened.
fn mirror_of(args: &SyncArgs) -> Result<Mirror> {
    // `--appid` or `--component-appid` on the command line and a mirror's file named by the
    // settings file: the flags win (clap refuses the two only when both are flags).
    let named = args.appid.is_some() || args.component_appid.is_some();
    let mut m = match &args.mirror {
        Some(path) if !named => mirror::config::load(path).map_err(Exit::usage)?,
        _ => {
            let mut m = Mirror::default();
            flag_sources(args, &mut m)?;
            m
        }
    };
    if let Some(u) = &args.upstream {
        m.upstream = mirror::config::check_upstream(u)
            .map_err(|e| Exit::usage(format!("--upstream: {e}")))?;
    }
    if let Some(from) = args.from {
        m.from = from;
    }
    m.to = args.to;
    if let (Some(to), true) = (m.to, args.from.is_some() || args.to.is_some()) {
        if m.from > to {
            return Err(Exit::usage("--from is after --to"));
        }
    }
    if !args.endpoints.is_empty() {
        m.endpoints = args.endpoints.clone();
    }
    if let Some(n) = args.concurrency {
        m.options.concurrency = usize::from(n);
    }
    m.options.strict |= args.strict;
    m.stable_token |= args.stable_token;
    let set = |slot: &mut Duration, v: Option<Duration>| {
        if let Some(v) = v {
            *slot = v;
        }
    };
    set(&mut m.slow_down, args.slow_down);
    set(&mut m.timeouts.answer, args.timeout);
    set(&mut m.timeouts.connect, args.connect_timeout);
    set(&mut m.timeouts.header, args.header_timeout);
    if let Some(n) = args.call_retries {
        m.call_retries = n;
    }
    if let Some(n) = args.max_answer {
        m.max_answer = n;
    }
    Ok(m)
}

/// The accounts of `--appid`/`--secret` or of `--component-…`.
fn flag_sources(args: &SyncArgs, m: &mut Mirror) -> Result<()> {
    let Some(component) = &args.component_appid else {
        let (Some(appid), Some(secret)) = (&args.appid, &args.secret) else {
            return Err(Exit::usage(
                "--appid and --secret (or --component-appid and its credentials, or --mirror) are needed",
            ));
        };
        m.accounts.push(AccountSource {
            appid: appid.clone(),
            secret: Secret::new(secret.clone()),
            secret_from: "--secret (or DATACUBE_SECRET)".to_owned(),
        });
        return Ok(());
    };
    if args.component_secret.is_none() {
        return Err(Exit::usage(
            "--component-appid needs --component-secret (or DATACUBE_COMPONENT_SECRET)",
        ));
    }
    if args.component_ticket.is_none() && args.component_token.is_none() {
        return Err(Exit::usage(
            "--component-appid needs --component-ticket or --component-token",
        ));
    }
    let authorizers = match (&args.appid, &args.refresh_token) {
        (Some(appid), Some(refresh)) => vec![(appid.clone(), Secret::new(refresh.clone()))],
        (Some(_), None) => {
            return Err(Exit::usage(
                "--appid with --component-appid needs --refresh-token",
            ))
        }
        (None, _) => Vec::new(),
    };
    m.component = Some(ComponentSource {
        appid: component.clone(),
        secret: Secret::new(args.component_secret.clone().unwrap_or_default()),
        ticket: args.component_ticket.clone().map(Secret::new),
        token: args.component_token.clone().map(Secret::new),
        authorizers,
    });
    Ok(())
}

/// A context on `store`, with the signal handler that cancels its run between calls (and
/// its daemon).
fn context(store: Store, clock: &Clock) -> Result<Context> {
    let cancel = CancellationToken::new();
    {
        let cancel = cancel.clone();
        let signal = shutdown_signal()?;
        tokio::spawn(async move {
            signal.await;
            eprintln!("interrupted: finishing the calls under way…");
            cancel.cancel();
        });
    }
    let clock = clock.clone();
    Ok(Context {
        store,
        now: Arc::new(move || clock.now()),
        secrets: Arc::new(ServerSecrets),
        cancel,
        progress: None,
    })
}

pub async fn sync(args: SyncArgs) -> Result<()> {
    // clap lets `--daemon` without `--mirror` through when `--appid` is given (the two
    // conflict, and a requirement that conflicts is dropped).
    if args.daemon && args.mirror.is_none() {
        return Err(Exit::usage(
            "--daemon runs a mirror's configuration every day: give it with --mirror FILE",
        ));
    }
    if args.status {
        let name = match &args.mirror {
            Some(path) => Some(mirror::config::name_of(path).map_err(Exit::usage)?),
            None => None,
        };
        return status(&args, name).await;
    }
    let mirror = mirror_of(&args)?;
    let store = open(&args.db.database)?;
    let clock = args.clock.clock();
    let mut ctx = context(store, &clock)?;
    if args.dry_run {
        return dry_run(&mirror, &ctx).await;
    }
    if args.daemon {
        let json = args.report == ReportFormat::Json;
        mirror::daemon(mirror, ctx, None, |report| log_report(report, json)).await;
        return Ok(());
    }
    if std::io::stderr().is_terminal() {
        ctx.progress = Some(Arc::new(
            |appid: &str, plan: &datacube_mirror::sync::Plan| {
                Arc::new(Bars::new(appid, plan)) as Arc<dyn datacube_mirror::sync::Progress>
            },
        ));
    }
    let report = mirror::run_once(&mirror, &ctx, None)
        .await?
        .context("the run was not recorded")?;
    print_report(&report, args.report)
}

/// Prints a run's report, and returns its exit code as an error when it is not 0.
fn print_report(report: &RunReport, format: ReportFormat) -> Result<()> {
    let json = format == ReportFormat::Json;
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    }
    for (level, line) in report.lines() {
        match (level, json) {
            (Level::Info, false) => println!("{line}"),
            (Level::Info, true) | (Level::Note, _) => eprintln!("{line}"),
            (Level::Warn, _) => eprintln!("warning: {line}"),
            (Level::Error, _) => eprintln!("error: {line}"),
        }
    }
    let code = exit_code(report.outcome);
    if code == Code::Success {
        return Ok(());
    }
    let failures = report.failures();
    let what = if report.outcome == datacube_mirror::report::Outcome::Interrupted {
        "interrupted".to_owned()
    } else {
        format!(
            "{} not mirrored ({})",
            if failures.len() == 1 {
                "1 part"
            } else {
                "some parts"
            },
            report.outcome.as_str()
        )
    };
    // Running again resumes what failed on the way; it cannot fix a refused secret.
    let refused: Vec<&str> = report
        .accounts
        .iter()
        .filter(|a| a.outcome == datacube_mirror::report::Outcome::Credentials)
        .map(|a| a.appid.as_str())
        .collect();
    let advice = match (report.retriable(), refused.is_empty()) {
        (_, true) => "run the same command again to resume".to_owned(),
        (true, false) => format!(
            "fix the credentials of {} (above), then run the same command again to resume",
            refused.join(", ")
        ),
        (false, _) => format!(
            "fix the credentials of {} (above); running again without it changes nothing",
            refused.join(", ")
        ),
    };
    Err(Exit::code(code, format!("{what}; {advice}")))
}

/// A daemon's run, in its log.
fn log_report(report: &RunReport, json: bool) {
    if json {
        if let Ok(text) = serde_json::to_string(report) {
            println!("{text}");
        }
    }
    for (level, line) in report.lines() {
        match level {
            Level::Info | Level::Note => tracing::info!(mirror = %report.mirror, "{line}"),
            Level::Warn => tracing::warn!(mirror = %report.mirror, "{line}"),
            Level::Error => tracing::error!(mirror = %report.mirror, "{line}"),
        }
    }
    let outcome = report.outcome.as_str();
    // For `serve --mirror`'s /metrics (the mirror names come from its configuration).
    super::mirror_metrics::record(report);
    if exit_code(report.outcome) == Code::Success {
        tracing::info!(mirror = %report.mirror, outcome, rows = report.rows_stored, "mirror run done");
    } else {
        tracing::error!(mirror = %report.mirror, outcome, failures = ?report.failures(), "mirror run did not complete");
    }
}

async fn dry_run(mirror: &Mirror, ctx: &Context) -> Result<()> {
    let (targets, notes) = mirror::targets(mirror, &ctx.cancel)
        .await
        .map_err(anyhow::Error::msg)?;
    for n in notes {
        println!("{n}");
    }
    let last_ready = ctx.last_ready();
    let to = mirror.to.unwrap_or(last_ready).min(last_ready);
    for target in targets {
        let plan = mirror::plan(mirror, ctx, &target.appid).await?;
        println!(
            "sync of {} from {} to {} (last ready day {}): {} calls",
            target.appid,
            format_date(mirror.from),
            format_date(to),
            format_date(last_ready),
            plan.calls()
        );
        for (endpoint, windows) in &plan.endpoints {
            println!("  {:<24} {:>6} calls", endpoint.name(), windows.len());
        }
    }
    Ok(())
}

/// `sync --status`: the newest runs, newest first.
async fn status(args: &SyncArgs, mirror: Option<String>) -> Result<()> {
    let store = open(&args.db.database)?;
    let runs = store.sync_runs(mirror.as_deref(), 20).await?;
    let now = args.clock.now().as_second();
    let text = if args.report == ReportFormat::Json {
        let list: Vec<serde_json::Value> = runs.iter().map(run_json).collect();
        serde_json::to_string_pretty(&list)? + "\n"
    } else if runs.is_empty() {
        format!("no runs recorded in {}\n", args.db.database)
    } else {
        runs.iter().map(|r| run_line(r, now) + "\n").collect()
    };
    // `datacube sync --status | head -3` is not an error.
    let mut out = std::io::stdout().lock();
    super::reader_gone_is_fine(out.write_all(text.as_bytes()).and_then(|()| out.flush()))?;
    let Some(newest) = runs.first() else {
        return Ok(());
    };
    let (code, why) = match newest.outcome.as_deref() {
        Some("ok") => (Code::Success, ""),
        None if dead(newest, now) => (
            Code::Failure,
            "stopped without finishing (its process died)",
        ),
        None => (Code::Success, ""),
        Some("failed") => (Code::Failure, "did not complete"),
        Some("credentials") => (Code::Failure, "was refused its credentials"),
        Some(_) => (Code::Partial, "did not complete"),
    };
    if code == Code::Success {
        Ok(())
    } else {
        Err(Exit::code(
            code,
            format!("the newest run (#{}) {why}", newest.id),
        ))
    }
}

/// Whether an unfinished run has shown no sign of life for too long.
fn dead(run: &datacube_store::SyncRun, now: i64) -> bool {
    run.finished.is_none() && now - run.beat > mirror::STALE
}

fn when(unix: i64) -> String {
    datacube_api::date::china_time_of(unix)
}

fn run_line(run: &datacube_store::SyncRun, now: i64) -> String {
    let report: Option<RunReport> = run
        .report
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok());
    let name = if run.mirror.is_empty() {
        "(flags)"
    } else {
        run.mirror.as_str()
    };
    let slot = run
        .slot
        .as_deref()
        .map(|s| format!(" for {s}, attempt {}", run.attempt))
        .unwrap_or_default();
    let mut line = format!("#{} {name}{slot}: started {}", run.id, when(run.started));
    match (&run.outcome, &report) {
        (Some(outcome), Some(r)) => {
            line.push_str(&format!(
                ", {outcome} in {:.1} s: {} accounts, {} calls ({} retries), {} rows stored, {} skipped",
                r.seconds,
                r.accounts.len(),
                r.calls,
                r.retries,
                r.rows_stored,
                r.rows_skipped
            ));
            for f in r.failures() {
                line.push_str(&format!("\n    {f}"));
            }
        }
        (Some(outcome), None) => line.push_str(&format!(", {outcome}")),
        (None, _) if dead(run, now) => line.push_str(&format!(
            ", stopped without finishing (no sign of life since {})",
            when(run.beat)
        )),
        (None, _) => line.push_str(", running"),
    }
    line
}

fn run_json(run: &datacube_store::SyncRun) -> serde_json::Value {
    let report = run
        .report
        .as_deref()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok());
    serde_json::json!({
        "id": run.id,
        "mirror": run.mirror,
        "slot": run.slot,
        "attempt": run.attempt,
        "started": when(run.started),
        "finished": run.finished.map(when),
        "outcome": run.outcome,
        "report": report,
    })
}

/// A progress bar per endpoint.
struct Bars {
    _multi: indicatif::MultiProgress,
    bars: std::collections::HashMap<Endpoint, indicatif::ProgressBar>,
}

impl Bars {
    fn new(appid: &str, plan: &datacube_mirror::sync::Plan) -> Bars {
        let multi = indicatif::MultiProgress::new();
        let style =
            indicatif::ProgressStyle::with_template("{prefix:>44} {wide_bar} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        let mut bars = std::collections::HashMap::new();
        for (endpoint, windows) in &plan.endpoints {
            if windows.is_empty() {
                continue;
            }
            let bar = multi.add(indicatif::ProgressBar::new(windows.len() as u64));
            bar.set_style(style.clone());
            bar.set_prefix(format!("{appid} {}", endpoint.name()));
            bars.insert(*endpoint, bar);
        }
        Bars {
            _multi: multi,
            bars,
        }
    }
}

impl datacube_mirror::sync::Progress for Bars {
    fn window_done(&self, endpoint: Endpoint, rows: usize) {
        if let Some(bar) = self.bars.get(&endpoint) {
            bar.inc(1);
            if rows > 0 {
                bar.set_message(format!("+{rows} rows"));
            }
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        for bar in self.bars.values() {
            bar.finish_and_clear();
        }
    }
}

/// `serve --mirror FILE`: the configuration's daemon beside the server, on its database and
/// clock, stopped with it.
pub fn serve_mirror(path: &std::path::Path) -> Result<Mirror> {
    mirror::config::load(path).map_err(Exit::usage)
}

/// Starts the daemon of `mirror` (read from `path`) on `store` and `clock`; cancelling
/// `cancel` ends it (a run under way is recorded as interrupted).
/// The handle lets `POST /admin/sync/run` ask it for a run now, the file read again first.
pub fn spawn_daemon(
    (mirror, path): (Mirror, std::path::PathBuf),
    store: Store,
    clock: Clock,
    cancel: CancellationToken,
) -> (
    tokio::task::JoinHandle<()>,
    datacube_server::mirror::MirrorHandle,
) {
    let ctx = Context {
        store,
        now: Arc::new(move || clock.now()),
        secrets: Arc::new(ServerSecrets),
        cancel,
        progress: None,
    };
    // The recorder first: series registered before it would be lost.
    datacube_server::metrics::handle();
    super::mirror_metrics::register(&mirror);
    {
        let (store, name) = (ctx.store.clone(), mirror.name.clone());
        tokio::spawn(async move { super::mirror_metrics::seed(&store, &name).await });
    }
    // One request waits at most: a second one while a run is under way is told so at once.
    let (requests, received) = tokio::sync::mpsc::channel(1);
    let info = Arc::new(std::sync::Mutex::new(mirror::DaemonInfo::of(&mirror)));
    let on_demand = mirror::OnDemand {
        info: info.clone(),
        requests: received,
        reload: Some(Box::new(move || {
            let fresh = mirror::config::load(&path)?;
            super::mirror_metrics::register(&fresh);
            Ok(fresh)
        })),
    };
    let handle = tokio::spawn(mirror::daemon(mirror, ctx, Some(on_demand), |report| {
        log_report(report, false)
    }));
    (
        handle,
        datacube_server::mirror::MirrorHandle(Arc::new(Runner { requests, info })),
    )
}

/// `POST /admin/sync/run`'s way to the daemon.
struct Runner {
    requests: tokio::sync::mpsc::Sender<mirror::RunRequest>,
    info: Arc<std::sync::Mutex<mirror::DaemonInfo>>,
}

impl datacube_server::mirror::MirrorRunner for Runner {
    fn state(&self) -> datacube_server::mirror::DaemonState {
        let info = self.info.lock().map(|i| i.clone()).unwrap_or_default();
        datacube_server::mirror::DaemonState {
            name: info.name,
            schedule: info.schedule,
            accounts: info.accounts,
            next: info.next,
        }
    }

    fn run_now(&self, appid: Option<String>) -> datacube_server::mirror::RunFuture<'_> {
        use datacube_server::mirror::{RunRefused, RunStarted};
        Box::pin(async move {
            let busy = || {
                RunRefused::Busy("a run of the mirror is under way; ask again when it ends".into())
            };
            let (reply, answer) = tokio::sync::oneshot::channel();
            self.requests
                .try_send(mirror::RunRequest {
                    appid: appid.clone(),
                    reply,
                })
                .map_err(|_| busy())?;
            // The daemon answers at once unless a run of its schedule is under way.
            match tokio::time::timeout(std::time::Duration::from_secs(10), answer).await {
                Ok(Ok(Ok(started))) => Ok(RunStarted {
                    id: started.id,
                    mirror: started.mirror,
                    slot: started.slot,
                    attempt: started.attempt,
                    appid,
                }),
                Ok(Ok(Err(mirror::Refused::UnknownAccount(a)))) => {
                    Err(RunRefused::UnknownAccount(a))
                }
                Ok(Ok(Err(mirror::Refused::Busy(why)))) => Err(RunRefused::Busy(why)),
                Ok(Ok(Err(mirror::Refused::Configuration(why)))) => {
                    Err(RunRefused::Configuration(why))
                }
                Ok(Err(_)) => Err(RunRefused::Busy("the mirror daemon has stopped".into())),
                Err(_) => Err(busy()),
            }
        })
    }
}

/// The exit code of `datacube sync` for a run that ended so: 0 all done, 3 partly done (or
/// interrupted after some of it), 1 nothing done — the binary's to choose, not the client's.
fn exit_code(outcome: datacube_mirror::report::Outcome) -> Code {
    use datacube_mirror::report::Outcome;
    match outcome {
        Outcome::Ok => Code::Success,
        Outcome::Partial | Outcome::Interrupted => Code::Partial,
        Outcome::Failed | Outcome::Credentials => Code::Failure,
    }
}
