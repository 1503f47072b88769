//! `serve --mirror`'s runs on demand: `POST /admin/sync/run` asks the mirror daemon — the CLI's,
//! built on `datacube-mirror`, which this crate does not depend on — through [`MirrorRunner`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::admin::{parse_optional_json, AdminError, Admitted, Problem};
use crate::state::App;

/// A run started now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunStarted {
    /// The run's number: `GET /admin/sync/runs` lists it, with its report once it ends.
    pub id: i64,
    /// The mirror's name.
    pub mirror: String,
    /// The day's slot it was recorded under (`2026-12-07`, or `2026-12-07 wx…` for one
    /// account), and its attempt.
    pub slot: String,
    /// 1 for the slot's first run, 2 for the next…
    pub attempt: i64,
    /// The account it mirrors; null for every account of the mirror.
    pub appid: Option<String>,
}

/// Why a run was not started.
#[derive(Debug, Clone)]
pub enum RunRefused {
    /// The appid is no account of the mirror's configuration.
    UnknownAccount(String),
    /// A run of the mirror is under way (here, or on another instance that took it first).
    Busy(String),
    /// The configuration file, read again, is wrong: the one in use stays.
    Configuration(String),
}

/// What the daemon knows of itself: its configuration's name and accounts, and when it will
/// try next.
#[derive(Debug, Clone, Default)]
pub struct DaemonState {
    /// The mirror's name.
    pub name: String,
    /// Its daily time, `HH:MM` China time.
    pub schedule: String,
    /// The accounts its configuration names, in order (a third-party platform's authorizers
    /// read from the upstream are added as runs reach them).
    pub accounts: Vec<String>,
    /// When it will look again (a scheduled run, a retry), if it knows.
    pub next: Option<jiff::Timestamp>,
}

/// What [`MirrorRunner::run_now`] answers, in time.
pub type RunFuture<'a> = Pin<Box<dyn Future<Output = Result<RunStarted, RunRefused>> + Send + 'a>>;

/// What runs the mirror now, for the admin API.
pub trait MirrorRunner: Send + Sync {
    /// The daemon's state.
    fn state(&self) -> DaemonState;

    /// Reads the configuration again, then starts a run of the whole mirror (or of `appid`
    /// alone) now — once, whichever instances are asked — and answers when it has started.
    fn run_now(&self, appid: Option<String>) -> RunFuture<'_>;
}

/// The mirror daemon beside the server (`serve --mirror`), if any.
#[derive(Clone)]
pub struct MirrorHandle(pub Arc<dyn MirrorRunner>);

impl std::fmt::Debug for MirrorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MirrorHandle")
    }
}

/// What to run.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RunNow {
    /// One account of the mirror; every account when absent.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]+$")]
    appid: Option<String>,
}

/// Runs the mirror now.
///
/// `serve --mirror` only. Reads the mirror's configuration file again (so that a secret fixed
/// there is used), then starts a run of the whole mirror, or of one account, at once; it is
/// recorded like the daily runs (`GET /admin/sync/runs`). Instances sharing a database run it
/// once: the one that records it first.
#[utoipa::path(post, path = "/admin/sync/run", tag = "Admin",
    security(("admin_token" = [])),
    request_body(content = Option<RunNow>, description = "One account (`{\"appid\":\"wx…\"}`), or none: every account."),
    responses(
        (status = 202, description = "Started; it runs in the background.", body = RunStarted),
        (status = 400, description = "Not JSON, or an unknown field.", body = Problem),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "This server runs no mirror (`serve --mirror`), the appid is no account of it, or the admin API is disabled.", body = Problem),
        (status = 409, description = "A run of the mirror is under way, here or on another instance.", body = Problem),
        (status = 422, description = "The configuration file, read again, is wrong (the one in use stays).", body = Problem),
    ))]
pub(crate) async fn run_now(
    State(app): State<App>,
    Admitted(body): Admitted,
) -> Result<(StatusCode, Json<RunStarted>), AdminError> {
    let asked: RunNow = parse_optional_json(&body)?;
    if let Some(appid) = asked.appid.as_deref() {
        if datacube_api::Appid::parse(appid).is_err() {
            return Err(AdminError::new(
                StatusCode::BAD_REQUEST,
                "`appid` is 1 to 64 letters, digits, `_` or `-`",
            ));
        }
    }
    let mirror = the_mirror(&app)?;
    match mirror.0.run_now(asked.appid).await {
        Ok(started) => Ok((StatusCode::ACCEPTED, Json(started))),
        Err(RunRefused::UnknownAccount(appid)) => Err(AdminError::new(
            StatusCode::NOT_FOUND,
            format!("{appid:?} is no account of this mirror"),
        )),
        Err(RunRefused::Busy(why)) => Err(AdminError::new(StatusCode::CONFLICT, why)),
        Err(RunRefused::Configuration(why)) => {
            Err(AdminError::new(StatusCode::UNPROCESSABLE_ENTITY, why))
        }
    }
}

/// The mirror this server runs, or the 404 saying it runs none.
fn the_mirror(app: &App) -> Result<MirrorHandle, AdminError> {
    app.config().mirror.clone().ok_or_else(|| {
        AdminError::new(
            StatusCode::NOT_FOUND,
            "this server runs no mirror: start it with serve --mirror FILE",
        )
    })
}

/// One account of the mirror, as its runs left it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AccountState {
    /// Its appid.
    appid: String,
    /// Its last run's outcome: `ok`, `partial`, `failed`, `interrupted`, `credentials` (the
    /// token API refused its secret), or `never` (no run reached it yet).
    outcome: String,
    /// When its last run ended (China time); null if none did.
    #[schema(format = DateTime)]
    last_run: Option<String>,
    /// When it was last mirrored completely; null if never.
    #[schema(format = DateTime)]
    last_success: Option<String>,
    /// What its last run met: the account's error, or its first failed endpoint's.
    error: Option<String>,
}

/// `serve --mirror`'s state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MirrorState {
    /// The mirror's name.
    mirror: String,
    /// Its daily time, China time.
    schedule: String,
    /// When the daemon looks next (China time): the next day's run, or a retry.
    #[schema(format = DateTime)]
    next_attempt: Option<String>,
    /// A run under way (its number), if any.
    running: Option<i64>,
    /// Every account of the configuration, and those runs reached besides, in that order.
    accounts: Vec<AccountState>,
}

/// The mirror's state.
///
/// `serve --mirror` only: each account's last outcome, last success and last error (accounts
/// that never synced included), the next attempt, and a run under way — what the dashboard's
/// Mirror view shows.
#[utoipa::path(get, path = "/admin/sync/mirror", tag = "Admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The state.", body = MirrorState),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "This server runs no mirror, or the admin API is disabled.", body = Problem),
    ))]
pub(crate) async fn mirror_state(
    State(app): State<App>,
    _: Admitted,
) -> Result<Json<MirrorState>, AdminError> {
    let mirror = the_mirror(&app)?;
    let daemon = mirror.0.state();
    let runs = app.store().sync_runs(Some(&daemon.name), 200).await?;
    let (accounts, running) = account_states(&daemon.accounts, &runs, app.clock().unix());
    Ok(Json(MirrorState {
        mirror: daemon.name,
        schedule: daemon.schedule,
        next_attempt: daemon.next.map(datacube_api::date::china_time),
        running,
        accounts,
    }))
}

/// Each account's state as the recorded runs (newest first) left it — the configuration's
/// accounts first, then those runs reached besides (at most 1,000) — and the run under way.
fn account_states(
    configured: &[String],
    runs: &[datacube_store::SyncRun],
    now: i64,
) -> (Vec<AccountState>, Option<i64>) {
    let never = |appid: &str| AccountState {
        appid: appid.to_owned(),
        outcome: "never".into(),
        last_run: None,
        last_success: None,
        error: None,
    };
    let mut accounts: Vec<AccountState> = configured.iter().map(|a| never(a)).collect();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut running = None;
    // Newest first: the first report naming an account gives its last outcome.
    for run in runs {
        if run.finished.is_none() {
            // A run silent for 5 minutes died with its process.
            if now - run.beat <= 300 {
                running = running.or(Some(run.id));
            }
            continue;
        }
        let Some(report) = run
            .report
            .as_deref()
            .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
        else {
            continue;
        };
        let ended = run.finished.map(datacube_api::date::china_time_of);
        for a in report["accounts"].as_array().into_iter().flatten() {
            let Some(appid) = a["appid"].as_str() else {
                continue;
            };
            let outcome = a["outcome"].as_str().unwrap_or("failed");
            let at = match accounts.iter().position(|s| s.appid == appid) {
                Some(at) => at,
                None if accounts.len() < 1000 => {
                    accounts.push(never(appid));
                    accounts.len() - 1
                }
                None => continue,
            };
            let state = &mut accounts[at];
            if seen.insert(appid.to_owned()) {
                state.outcome = outcome.to_owned();
                state.last_run = ended.clone();
                state.error = a["error"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| first_failed_endpoint(a));
            }
            if outcome == "ok" && state.last_success.is_none() {
                state.last_success = ended.clone();
            }
        }
    }
    (accounts, running)
}

/// `endpoint: error` of an account report's first failed endpoint.
fn first_failed_endpoint(account: &serde_json::Value) -> Option<String> {
    account["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|e| {
            (e["status"] == "failed").then(|| {
                format!(
                    "{}: {}",
                    e["endpoint"].as_str().unwrap_or("?"),
                    e["error"].as_str().unwrap_or("failed")
                )
            })
        })
}
