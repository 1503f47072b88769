//! `datacube`: a self-hosted WeChat datacube statistics server.
//!
//! This file parses the command line, starts the runtime and logging, hands the command to
//! its module and maps the outcome to an exit code: 0 success, 1 failure (the message says
//! why), 2 usage error, 3 partial success (`sync`, `ingest`).
//!
//! # Layout
//! - [`args`]: argument groups and value parsers several commands share.
//! - [`settings`]: the settings file under the environment and the flags; `--show-config`.
//! - [`cmd`]: one module per command (`serve`, `account`/`component`, `import`, `ingest`,
//!   `demo`, `push`, `proxy`, `sync`, `export`, `healthcheck`).

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use datacube_store::{DatabaseUrl, Store};

mod args;
mod cmd;
mod settings;

/// mimalloc: faster than the system allocator on the serving path (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its enum's 16th member).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Memory freed is given back to the system 10 ms later, not 1 s (10 s for arenas): with the
/// default, a 250 MB `POST /admin/events` peaked at 832 MB and left 388 MB behind while idle;
/// with 10 ms, 463 MB and 288 MB (traffic reclaims the rest), at no measurable cost to serving
/// (BENCHMARKS.md). Set before anything else allocates much.
#[allow(unsafe_code)]
fn purge_freed_memory_soon() {
    // SAFETY: mi_option_set stores one option's value (an atomic store in mimalloc); it takes
    // no pointer and may be called at any time, from any thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10) }
}

#[derive(Parser)]
#[command(
    name = "datacube",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("DATACUBE_COMMIT"), ")"),
    about = "A self-hosted WeChat datacube statistics server"
)]
struct Cli {
    /// Settings file (TOML; also `DATACUBE_CONFIG`): flags' long names as keys, at the top for
    /// every command, in `[serve]`, `[sync]`… for one; the environment and flags override it
    /// (docs/config.md).
    #[arg(
        long,
        global = true,
        help_heading = "Settings and logs",
        value_name = "FILE"
    )]
    config: Option<std::path::PathBuf>,
    /// Print the settings the command would run with, and where each came from (file,
    /// environment, flag or default), secrets hidden; then exit without doing anything.
    #[arg(long, global = true, help_heading = "Settings and logs")]
    show_config: bool,
    /// Log lines on stderr as text, or as JSON objects; `DATACUBE_LOG` (or `RUST_LOG`)
    /// filters them (e.g. `debug`, `datacube_server=debug`).
    #[arg(long, global = true, help_heading = "Settings and logs", env = "DATACUBE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Reader connections to PostgreSQL a process opens at most [default: twice the CPUs].
    #[arg(
        long,
        global = true,
        help_heading = "Settings and logs",
        env = "DATACUBE_PG_READERS",
        value_name = "N"
    )]
    pg_readers: Option<std::num::NonZeroUsize>,
    /// Writer connections to PostgreSQL a process opens at most [default: twice the CPUs].
    #[arg(
        long,
        global = true,
        help_heading = "Settings and logs",
        env = "DATACUBE_PG_WRITERS",
        value_name = "N"
    )]
    pg_writers: Option<std::num::NonZeroUsize>,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the WeChat API (tokens, the 21 datacube endpoints) and the admin API.
    Serve(cmd::serve::ServeArgs),
    /// Manage accounts.
    #[command(subcommand)]
    Account(cmd::account::AccountCommand),
    /// Manage third-party platforms (components) that read accounts' statistics for them.
    #[command(subcommand)]
    Component(cmd::account::ComponentCommand),
    /// Import a WeChat answer (`{"list":[…]}`) for one endpoint into the statistics store.
    Import(cmd::import::ImportArgs),
    /// Ingest events (NDJSON, one per line) and compute the statistics they change.
    Ingest(cmd::ingest::IngestArgs),
    /// Generate a deterministic stream of realistic events for an account and ingest it.
    Demo(cmd::demo::DemoArgs),
    /// Act as WeChat toward a developer's server: verify its URL, push user messages, judge
    /// the replies, and record messages and callbacks for message and interface analysis.
    Push(cmd::push::PushArgs),
    /// Stand between WeChat and a developer's server: forward every request and answer
    /// unchanged, and record the pushes' messages and callbacks.
    Proxy(cmd::proxy::ProxyArgs),
    /// Mirror an account's statistics from WeChat (or a compatible server) into the database,
    /// incrementally; `serve` then answers with them.
    Sync(cmd::sync::SyncArgs),
    /// Write stored statistics of one endpoint as CSV, NDJSON or WeChat's JSON.
    Export(cmd::export::ExportArgs),
    /// Ask a running server whether it is ready (`GET /readyz`): exit 0 ready, 1 not. For a
    /// container's HEALTHCHECK.
    Healthcheck(cmd::healthcheck::HealthcheckArgs),
    /// Print the API's description (OpenAPI 3.1), as a server answers it at /openapi.json.
    Openapi(cmd::openapi::OpenapiArgs),
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
    purge_freed_memory_soon();
    let parsed = match settings::parse(Cli::command(), std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("error: {e}");
            return Code::Usage.into();
        }
    };
    if parsed.matches.get_flag("show_config") {
        print!("{}", parsed.show());
        return Code::Success.into();
    }
    let cli = match Cli::from_arg_matches(&parsed.matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_tracing(cli.log_format);
    for warning in &parsed.warnings {
        tracing::warn!("{warning}");
    }
    datacube_store::set_pool_sizes(cli.pg_readers, cli.pg_writers);
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
            e.downcast_ref::<Exit>()
                .map_or(Code::Failure, |x| x.code)
                .into()
        }
    }
}

/// The exit codes of every command, chosen here and nowhere else (docs/serve.md, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    /// Done.
    Success = 0,
    /// Failed; the message says why.
    Failure = 1,
    /// A usage error, found before anything was opened.
    Usage = 2,
    /// Partial success: some of the work was done (`sync`, `ingest`, `push`, `proxy`).
    Partial = 3,
}

impl From<Code> for ExitCode {
    fn from(code: Code) -> ExitCode {
        ExitCode::from(code as u8)
    }
}

/// An error with an exit code of its own ([`Code`]); any other error exits 1.
#[derive(Debug)]
struct Exit {
    code: Code,
    message: String,
}

impl Exit {
    /// A usage error: exit 2.
    fn usage(message: impl Into<String>) -> anyhow::Error {
        Exit::code(Code::Usage, message)
    }

    fn code(code: Code, message: impl Into<String>) -> anyhow::Error {
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

/// Logs go to stderr; `DATACUBE_LOG` (or `RUST_LOG`) filters them, `--log-format json` makes
/// them JSON lines.
fn init_tracing(format: LogFormat) {
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
    if format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => cmd::serve::run(args).await,
        Command::Account(command) => cmd::account::account(command).await,
        Command::Component(command) => cmd::account::component(command).await,
        Command::Import(args) => cmd::import::run(args).await,
        Command::Ingest(args) => cmd::ingest::run(args).await,
        Command::Healthcheck(args) => cmd::healthcheck::run(args).await,
        Command::Demo(args) => cmd::demo::run(args).await,
        Command::Push(args) => cmd::push::run(args).await,
        Command::Proxy(args) => cmd::proxy::run(args).await,
        Command::Sync(args) => cmd::sync::sync(args).await,
        Command::Export(args) => cmd::export::run(args).await,
        Command::Openapi(args) => cmd::openapi::run(args).await,
    }
}

/// Opens (creating and migrating) the database of `--database`; an error names it (without its
/// password).
fn open(url: &DatabaseUrl) -> Result<Store> {
    Ok(Store::open(url.expose())?)
}
