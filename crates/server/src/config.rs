//! The server's settings. The CLI fills them from flags, with `DATACUBE_…` env fallbacks.

use std::time::Duration;

use datacube_api::token::DEFAULT_TOKEN_DAILY_QUOTA;
use datacube_api::SuffixStyle;

/// `--stats-memory`'s default, in MiB.
pub const DEFAULT_STATS_MEMORY_MIB: usize = 192;

/// Everything `serve` can be told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bearer token of the admin API; `None` disables it.
    pub admin_token: Option<datacube_api::secret::Secret>,
    /// Daily quota of `/cgi-bin/token` per account (45009 past it).
    pub token_daily_quota: u32,
    /// Daily quota of each datacube endpoint per account; `None` means unlimited
    /// (WeChat documents none).
    pub api_daily_quota: Option<u32>,
    /// The six old article endpoints answer 47009 `this api is offline, please use the new
    /// api`, as WeChat's do since 2026 (off by default: both generations are served).
    pub retire_legacy_articles: bool,
    /// How the request id is appended to `errmsg`.
    pub suffix: SuffixStyle,
    /// Datacube answers kept in memory; 0 turns the cache off.
    pub response_cache: usize,
    /// Bytes of statistics held in memory to answer ranges without reading the database
    /// (`--stats-memory`); 0 reads the database for every answer not cached.
    pub stats_memory: usize,
    /// Limits that keep the server up.
    pub limits: Limits,
    /// Injected faults (`--faults`); none by default. `/admin/faults` changes them at run time.
    pub faults: crate::faults::Faults,
    /// The seed of the faults' random stream (`--faults-seed`); a random one when unset.
    pub faults_seed: Option<u64>,
    /// How often components' verify tickets are pushed (WeChat: every 10 minutes).
    pub ticket_interval: Duration,
    /// One log line per request, at info (`datacube::request`).
    pub request_log: bool,
    /// `serve --demo`: the demo account's days, rebuilt by `POST /admin/reset`.
    pub demo_days: Option<u32>,
    /// `serve --seed`: fixtures loaded at start and by `POST /admin/reset`.
    pub seed: Option<std::path::PathBuf>,
    /// `GET /metrics` on the WeChat API's address; off when `serve --metrics-listen` gives it
    /// an address of its own ([`crate::serve_internal`]).
    pub metrics_on_main: bool,
    /// `serve --mirror`: the daemon that `POST /admin/sync/run` asks.
    pub mirror: Option<crate::mirror::MirrorHandle>,
    /// Event loops answering connections (`serve --threads`), each a thread of its own with
    /// its own connections, as nginx's workers are; 0 means one per CPU.
    pub threads: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            admin_token: None,
            token_daily_quota: DEFAULT_TOKEN_DAILY_QUOTA,
            api_daily_quota: None,
            retire_legacy_articles: false,
            suffix: SuffixStyle::Rid,
            response_cache: 10_000,
            stats_memory: DEFAULT_STATS_MEMORY_MIB << 20,
            limits: Limits::default(),
            faults: crate::faults::Faults::default(),
            faults_seed: None,
            ticket_interval: Duration::from_secs(600),
            request_log: true,
            metrics_on_main: true,
            demo_days: None,
            seed: None,
            mirror: None,
            threads: 0,
        }
    }
}

impl Config {
    /// How many event loops answer connections: [`Config::threads`], or one per CPU.
    pub fn event_loops(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

/// Resource limits (`crate::edge` says how they are kept). Past them the server answers
/// WeChat's `-1 system error` or closes the connection; it never queues without bound.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections at once. Past it, the connection that has waited longest on its client
    /// (sending, or idle) is closed to make room; only when every one is busy with a request is
    /// a new one refused (up to 64 get one `-1` answer, the rest are closed at once).
    pub max_connections: usize,
    /// Open connections from one client address; past it, that address's connection that has
    /// waited longest makes room.
    pub max_connections_per_address: usize,
    /// Requests handled at once (counted once their body is whole); more are answered
    /// `-1 system error` at once. The health checks are not counted.
    pub max_in_flight: usize,
    /// Requests handled at once from one client address.
    pub max_in_flight_per_address: usize,
    /// Largest body of a WeChat API request (a datacube body is about 50 bytes).
    pub body_limit: usize,
    /// Largest body of an admin request (imports).
    pub admin_body_limit: usize,
    /// A request head must arrive whole within this time of the connection's start, or of its
    /// first byte after an idle wait.
    pub header_timeout: Duration,
    /// A kept-alive connection may wait this long for its next request.
    pub idle_timeout: Duration,
    /// A request body must arrive within this time, plus a second per MiB received.
    pub body_timeout: Duration,
    /// How long shutdown waits for open requests to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 4096,
            max_connections_per_address: 2048,
            max_in_flight: 1024,
            max_in_flight_per_address: 512,
            body_limit: 64 * 1024,
            admin_body_limit: 256 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}
