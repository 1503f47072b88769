//! `datacube sync`: mirror accounts' statistics from WeChat (or a compatible server) into
//! datacube's store — what to copy from an upstream (accounts with their secrets, a third-party
//! platform's authorizers), one run of it over every account, and the daemon that runs it
//! every day. The calls themselves are [`datacube_client`]'s.
//!
//! # Layout
//! - [`Mirror`]: the settings, made from `datacube sync`'s flags or a TOML file
//!   ([`config`]).
//! - [`run_once`]: one run — each account's credentials checked upstream first (the local
//!   account is created or its secret updated only then), then [`sync`] per account;
//!   the run is recorded in the store with its report.
//! - [`sync`]: mirroring one account into datacube's store, incrementally and resumably.
//! - [`report`]: what a run did, per account and endpoint.
//! - [`daemon()`]: a run a day at the scheduled time (China time), retried with jitter after a
//!   failed or partial run, one run per scheduled day for all instances on one database.

pub mod config;
mod daemon;
pub mod report;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

use datacube_api::date::last_ready_day;
use datacube_api::Endpoint;
use datacube_store::{AccountRecord, Store, StoreError};
use jiff::civil::Date;
use jiff::Timestamp;

use datacube_client::{Authorizer, Client, ClientConfig, TokenApi};

use crate::report::{AccountReport, Outcome, RunReport};
use crate::sync::{Options, Plan, Progress};

pub use daemon::{
    daemon, next_slot, DaemonInfo, OnDemand, Refused, Reload, RunRequest, Started, STALE,
};

pub use datacube_api::secret::Secret;
pub use tokio_util::sync::CancellationToken;

/// An account to mirror with its own AppSecret.
#[derive(Debug, Clone)]
pub struct AccountSource {
    /// Its appid.
    pub appid: String,
    /// Its AppSecret.
    pub secret: Secret,
    /// Where the secret was given, for a person to fix it (`account[1] (wx…)'s secret_env,
    /// ACME_SECRET`, `--secret`): never the secret itself.
    pub secret_from: String,
}

impl Mirror {
    /// The accounts the configuration names: its own, then a third-party platform's listed
    /// authorizers.
    pub fn named_accounts(&self) -> impl Iterator<Item = &str> {
        self.accounts.iter().map(|a| a.appid.as_str()).chain(
            self.component
                .iter()
                .flat_map(|c| c.authorizers.iter().map(|(appid, _)| appid.as_str())),
        )
    }

    /// Whether `appid` may be one of the accounts a run reaches: one the configuration names,
    /// or any when a third-party platform's authorizers are read from the upstream.
    pub fn may_reach(&self, appid: &str) -> bool {
        self.named_accounts().any(|a| a == appid)
            || self
                .component
                .as_ref()
                .is_some_and(|c| c.authorizers.is_empty())
    }
}

/// A third-party platform whose authorizers are mirrored with authorizer tokens.
#[derive(Debug, Clone)]
pub struct ComponentSource {
    /// The component's appid.
    pub appid: String,
    /// Its AppSecret (needed with a ticket).
    pub secret: Secret,
    /// A component_verify_ticket.
    pub ticket: Option<Secret>,
    /// A component_access_token at hand.
    pub token: Option<Secret>,
    /// The accounts to mirror with their authorizer_refresh_token; empty: every account the
    /// upstream lists as having authorized the component.
    pub authorizers: Vec<(String, Secret)>,
}

/// What to mirror, from where, how, and when.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// Runs are recorded under this name (`sync --status` shows it); empty for a one-shot
    /// sync from flags.
    pub name: String,
    /// The server to mirror (`https://api.weixin.qq.com` or a compatible one).
    pub upstream: String,
    /// Accounts with their own secrets.
    pub accounts: Vec<AccountSource>,
    /// A third-party platform.
    pub component: Option<ComponentSource>,
    /// The endpoints (all 21 when empty).
    pub endpoints: Vec<Endpoint>,
    /// First day.
    pub from: Date,
    /// Last day (the last ready day when `None`).
    pub to: Option<Date>,
    /// Concurrency and strictness.
    pub options: Options,
    /// `/cgi-bin/stable_token` instead of `/cgi-bin/token`.
    pub stable_token: bool,
    /// Retries of one call after `-1`, HTTP 5xx, timeouts and transport errors.
    pub call_retries: u32,
    /// The first wait after a 45011.
    pub slow_down: Duration,
    /// Connect, answer-head and whole-answer timeouts.
    pub timeouts: Timeouts,
    /// The largest answer read, in bytes.
    pub max_answer: u64,
    /// When the daemon runs: (hour, minute), China time.
    pub schedule: (u8, u8),
    /// Runs after a failed or partial one, per scheduled day.
    pub run_retries: u32,
    /// The wait before the first of them; it doubles, with ±50 % jitter.
    pub retry_delay: Duration,
}

/// The three timeouts of a call.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP (and TLS) connection.
    pub connect: Duration,
    /// Until the answer's status and headers.
    pub header: Duration,
    /// Until the whole answer.
    pub answer: Duration,
}

impl Default for Mirror {
    fn default() -> Mirror {
        let client = ClientConfig::new("", "");
        Mirror {
            name: String::new(),
            upstream: datacube_client::WECHAT.to_owned(),
            accounts: Vec::new(),
            component: None,
            endpoints: Vec::new(),
            from: sync::EARLIEST,
            to: None,
            options: Options {
                concurrency: 8,
                strict: false,
            },
            stable_token: false,
            call_retries: client.retries,
            slow_down: client.slow_down,
            timeouts: Timeouts {
                connect: client.connect_timeout,
                header: client.header_timeout,
                answer: client.timeout,
            },
            max_answer: client.max_answer,
            schedule: (8, 30),
            run_retries: 3,
            retry_delay: Duration::from_secs(600),
        }
    }
}

impl Mirror {
    /// The endpoints to mirror.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        if self.endpoints.is_empty() {
            Endpoint::ALL.to_vec()
        } else {
            self.endpoints.clone()
        }
    }

    /// A client of the upstream for `appid` (its own secret, or as a component).
    pub fn client(
        &self,
        appid: &str,
        secret: &str,
        authorizer: Option<Authorizer>,
    ) -> Result<Client, datacube_client::ClientError> {
        let mut config = ClientConfig::new(appid, secret);
        config.base = self.upstream.trim_end_matches('/').to_owned();
        config.authorizer = authorizer;
        if self.stable_token {
            config.token_api = TokenApi::Stable;
        }
        config.retries = self.call_retries;
        config.slow_down = self.slow_down;
        config.connect_timeout = self.timeouts.connect;
        config.header_timeout = self.timeouts.header;
        config.timeout = self.timeouts.answer;
        config.max_answer = self.max_answer;
        Client::new(config)
    }
}

/// One account to mirror in a run.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its appid.
    pub appid: String,
    /// Its own secret, or how a component reads it.
    pub access: Access,
    /// Where its credentials were given ([`AccountSource::secret_from`]), or the component's.
    pub secret_from: String,
}

/// How an account is read.
#[derive(Debug, Clone)]
pub enum Access {
    /// With its AppSecret.
    Secret(Secret),
    /// As a third-party platform, with an authorizer token.
    Component(Authorizer),
}

/// Hashing and checking AppSecrets as the server stores them (argon2id), for the local
/// account a mirror creates.
pub trait LocalSecrets: Send + Sync {
    /// The stored form of `secret`.
    fn hash(&self, secret: &str) -> String;
    /// Whether `secret` is the one `hash` was made from.
    fn verify(&self, secret: &str, hash: &str) -> bool;
    /// A random secret, for an account read as a third-party platform (its own is unknown).
    fn random(&self) -> String;
}

/// Makes the progress display of an account's plan.
pub type ProgressFor = Arc<dyn Fn(&str, &Plan) -> Arc<dyn Progress> + Send + Sync>;

/// What a run works with.
#[derive(Clone)]
pub struct Context {
    /// The mirror's database.
    pub store: Store,
    /// "Now" (an emulated clock in tests and demos).
    pub now: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    /// How local accounts' secrets are stored.
    pub secrets: Arc<dyn LocalSecrets>,
    /// Cancelled to stop the run between calls (and the daemon): the calls under way end at
    /// once, their windows left for the next run.
    pub cancel: CancellationToken,
    /// A progress display per account's plan (a terminal's bars), if any.
    pub progress: Option<ProgressFor>,
}

impl Context {
    /// The last ready day now.
    pub fn last_ready(&self) -> Date {
        last_ready_day((self.now)().as_second())
    }
}

/// The accounts a run of `mirror` covers, and notes for people (how many authorized the
/// component); an error when the component's list cannot be read.
pub async fn targets(
    mirror: &Mirror,
    cancel: &CancellationToken,
) -> Result<(Vec<Target>, Vec<String>), String> {
    let mut out: Vec<Target> = mirror
        .accounts
        .iter()
        .map(|a| Target {
            appid: a.appid.clone(),
            access: Access::Secret(a.secret.clone()),
            secret_from: a.secret_from.clone(),
        })
        .collect();
    let mut notes = Vec::new();
    if let Some(c) = &mirror.component {
        let authorizer = |refresh_token: String| Authorizer {
            component_appid: c.appid.clone(),
            component_secret: c.secret.expose().to_owned(),
            ticket: c.ticket.as_ref().map(|t| t.expose().to_owned()),
            component_token: c.token.as_ref().map(|t| t.expose().to_owned()),
            refresh_token,
        };
        let listed = if c.authorizers.is_empty() {
            let client = mirror
                .client("", "", None)
                .map_err(|e| e.to_string())?
                .cancel_on(cancel.clone());
            let list = client
                .authorizers(&authorizer(String::new()))
                .await
                .map_err(|e| format!("the accounts that authorized {}: {e}", c.appid))?;
            notes.push(format!(
                "{} accounts authorized {} on {}",
                list.len(),
                c.appid,
                datacube_client::redacted_url(&mirror.upstream)
            ));
            list
        } else {
            c.authorizers
                .iter()
                .map(|(a, r)| (a.clone(), r.expose().to_owned()))
                .collect()
        };
        for (appid, refresh) in listed {
            // The list comes from the upstream: an appid that could not be an account's is
            // named and left out, not stored.
            if !valid_appid(&appid) {
                notes.push(format!(
                    "left out an authorizer whose appid is not one: {:?}",
                    appid.chars().take(80).collect::<String>()
                ));
                continue;
            }
            out.push(Target {
                appid,
                access: Access::Component(authorizer(refresh)),
                secret_from: format!("the component {}", c.appid),
            });
        }
    }
    Ok((out, notes))
}

/// An appid: 1–64 characters of `[A-Za-z0-9_-]` (real ones are `wx` + 16 hex digits), as
/// the admin API accepts.
pub fn valid_appid(appid: &str) -> bool {
    (1..=64).contains(&appid.len())
        && appid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The plan of `target` now: the windows each endpoint lacks.
pub async fn plan(mirror: &Mirror, ctx: &Context, appid: &str) -> Result<Plan, StoreError> {
    let last_ready = ctx.last_ready();
    let to = mirror.to.unwrap_or(last_ready).min(last_ready);
    sync::plan(
        &ctx.store,
        appid,
        &mirror.endpoints(),
        (mirror.from, to),
        last_ready,
    )
    .await
}

/// Mirrors one account: its credentials are checked upstream first (a token is fetched);
/// only then is the local account created, or its secret updated, so that a mistyped secret
/// never reaches the mirror. Then every endpoint's missing windows.
pub async fn mirror_account(mirror: &Mirror, ctx: &Context, target: &Target) -> AccountReport {
    let appid = target.appid.as_str();
    let client = match &target.access {
        Access::Secret(s) => mirror.client(appid, s.expose(), None),
        Access::Component(a) => mirror.client(appid, "", Some(a.clone())),
    };
    let client = match client {
        Ok(c) => Arc::new(c.cancel_on(ctx.cancel.clone())),
        Err(e) => return AccountReport::failed(appid, e.to_string()),
    };
    let started = std::time::Instant::now();
    let plan = match plan(mirror, ctx, appid).await {
        Ok(p) => p,
        Err(e) => return AccountReport::failed(appid, e.to_string()),
    };
    if let Err(e) = client.access_token().await {
        let mut report = match &e {
            datacube_client::ClientError::Credentials { code, .. } => {
                // What fixes it, by what was refused and how the account is read.
                let advice = match (&target.access, *code) {
                    (_, datacube_client::client::IP_NOT_WHITELISTED) => format!(
                        "add this machine's address to the IP allow list of {appid} (or of the component)"
                    ),
                    (Access::Component(_), _) => format!(
                        "check the credentials of {} (secret, ticket or token) and its authorization by {appid}",
                        target.secret_from
                    ),
                    // 40013, 41002: the upstream knows no such appid.
                    (Access::Secret(_), 40013 | 41002) => format!(
                        "check the appid {appid}: the upstream knows no such account"
                    ),
                    (Access::Secret(_), _) => format!(
                        "fix the secret of {appid} (given as {})",
                        target.secret_from
                    ),
                };
                AccountReport::refused(appid, format!("{e}; {advice}"))
            }
            _ => AccountReport::failed(appid, e.to_string()),
        };
        if matches!(e, datacube_client::ClientError::Interrupted) {
            report.outcome = Outcome::Interrupted;
        }
        report.token_calls = client
            .counters
            .token_calls
            .load(std::sync::atomic::Ordering::Relaxed);
        return report;
    }
    let local = match local_account(ctx, appid, &target.access).await {
        Ok(local) => local,
        Err(e) => return AccountReport::failed(appid, format!("the local account: {e}")),
    };
    let progress = ctx
        .progress
        .as_ref()
        .map_or_else(|| Arc::new(()) as Arc<dyn Progress>, |p| p(appid, &plan));
    let mut report = sync::run(
        client.clone(),
        ctx.store.clone(),
        appid,
        &plan,
        mirror.options,
        ctx.cancel.clone(),
        progress,
    )
    .await;
    report.token_calls = client
        .counters
        .token_calls
        .load(std::sync::atomic::Ordering::Relaxed);
    report.local_account = local;
    report.seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    report
}

/// Creates the local account, or updates its secret, after the upstream accepted it.
async fn local_account(
    ctx: &Context,
    appid: &str,
    access: &Access,
) -> Result<Option<String>, StoreError> {
    let existing = ctx.store.account(appid).await?;
    let secrets = ctx.secrets.clone();
    let (secret, said) = match (access, &existing) {
        (Access::Secret(s), None) => (
            s.expose().to_owned(),
            "added the local account with the same secret",
        ),
        (Access::Secret(s), Some(a)) => {
            let (secret, hash) = (s.expose().to_owned(), a.secret_hash.clone());
            let same = {
                let secrets = secrets.clone();
                tokio::task::spawn_blocking(move || secrets.verify(&secret, &hash))
                    .await
                    .unwrap_or(true)
            };
            if same {
                return Ok(None);
            }
            (
                s.expose().to_owned(),
                "updated the local account's secret to the one the upstream accepted",
            )
        }
        // Read as a component, the account's secret is unknown: a random one (set another
        // with the admin API or `account add` on a fresh database).
        (Access::Component(_), None) => (
            secrets.random(),
            "added the local account with a random secret: it was read as a third-party platform",
        ),
        (Access::Component(_), Some(_)) => return Ok(None),
    };
    let hash = tokio::task::spawn_blocking(move || secrets.hash(&secret))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?;
    ctx.store
        .put_account(AccountRecord {
            appid: appid.to_owned(),
            secret_hash: hash,
            verified: existing.as_ref().is_none_or(|a| a.verified),
            created_at: existing
                .as_ref()
                .map_or_else(|| (ctx.now)().as_second(), |a| a.created_at),
            incarnation: 0, // drawn by the store
        })
        .await?;
    Ok(Some(said.to_owned()))
}

/// One run of `mirror`: every account in turn, recorded in the store under the mirror's name
/// (with `slot` and attempt for a daemon's run). `None` when another instance on the database
/// took this slot and attempt first.
pub async fn run_once(
    mirror: &Mirror,
    ctx: &Context,
    slot: Option<(&str, i64)>,
) -> Result<Option<RunReport>, StoreError> {
    match claim(mirror, ctx, slot).await? {
        Some(claimed) => run_claimed(mirror, ctx, claimed, None).await.map(Some),
        None => Ok(None),
    }
}

/// A run recorded as started, not run yet.
#[derive(Debug, Clone, Copy)]
pub struct Claimed {
    /// Its number in the store.
    pub id: i64,
    started: Timestamp,
}

/// Records the start of a run of `mirror` (with `slot` and attempt for a daemon's run);
/// `None` when another instance on the database took this slot and attempt first.
pub async fn claim(
    mirror: &Mirror,
    ctx: &Context,
    slot: Option<(&str, i64)>,
) -> Result<Option<Claimed>, StoreError> {
    let started = (ctx.now)();
    let id = ctx
        .store
        .start_sync_run(
            &mirror.name,
            slot.map(|s| s.0),
            slot.map_or(1, |s| s.1),
            started.as_second(),
        )
        .await?;
    Ok(id.map(|id| Claimed { id, started }))
}

/// Runs a claimed run — every account, or `only` that one — and records its end.
pub async fn run_claimed(
    mirror: &Mirror,
    ctx: &Context,
    Claimed { id, started }: Claimed,
    only: Option<&str>,
) -> Result<RunReport, StoreError> {
    // A sign of life every 30 s, so that a run whose process died is told from a long one.
    let beat = {
        let (store, now) = (ctx.store.clone(), ctx.now.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                if let Err(e) = store.beat_sync_run(id, now().as_second()).await {
                    tracing::warn!(error = %e, "cannot record the mirror run's sign of life");
                }
            }
        })
    };
    let clock = std::time::Instant::now();
    let mut report = RunReport {
        mirror: mirror.name.clone(),
        upstream: datacube_client::redacted_url(&mirror.upstream),
        started: china_time(started),
        finished: String::new(),
        seconds: 0.0,
        outcome: Outcome::Ok,
        error: None,
        only: only.map(str::to_owned),
        notes: Vec::new(),
        calls: 0,
        retries: 0,
        token_calls: 0,
        rows_stored: 0,
        rows_changed: 0,
        rows_skipped: 0,
        accounts: Vec::new(),
    };
    match targets(mirror, &ctx.cancel).await {
        Ok((targets, notes)) => {
            report.notes = notes;
            let targets: Vec<&Target> = targets
                .iter()
                .filter(|t| only.is_none_or(|appid| t.appid == appid))
                .collect();
            if let (Some(appid), true) = (only, targets.is_empty()) {
                report.error = Some(format!("{appid} is no account this mirror reaches"));
            }
            for target in targets {
                if ctx.cancel.is_cancelled() {
                    let mut a = AccountReport::failed(&target.appid, "not reached".into());
                    a.outcome = Outcome::Interrupted;
                    report.accounts.push(a);
                    continue;
                }
                report
                    .accounts
                    .push(mirror_account(mirror, ctx, target).await);
            }
        }
        Err(e) => report.error = Some(e),
    }
    beat.abort();
    let finished = (ctx.now)();
    report.finished = china_time(finished);
    report.seconds = (clock.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    report.settle();
    let json = serde_json::to_string(&report).unwrap_or_default();
    ctx.store
        .finish_sync_run(id, finished.as_second(), report.outcome.as_str(), json)
        .await?;
    Ok(report)
}

pub use datacube_api::date::china_time;
