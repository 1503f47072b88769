//! The admin API under `/admin`, for operators and tests. Plain HTTP semantics (status codes,
//! `{"error": "…"}` bodies), guarded by `Authorization: Bearer <admin token>`; disabled when no
//! admin token is configured.
//!
//! One router ([`router`]) answers every path under `/admin/`: the admin token is checked once
//! for all of them ([`extract::guard`]), handlers answer `Result<Json<T>, AdminError>` with
//! typed extractors ([`AdminJson`], [`AdminQuery`], [`Admitted`]), an unknown path is a 404 and
//! a method a path does not take a 405, both as `{"error": "…"}`.

mod components;
mod error;
mod extract;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Json, Router};
use datacube_api::{Appid, Endpoint, Secret};
use datacube_store::{AccountRecord, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) use self::components::integral;
pub(crate) use self::error::{AdminError, Problem};
use self::extract::required;
pub(crate) use self::extract::{
    parse_optional_json, shows_admin_token, AdminJson, AdminQuery, Admitted,
};
use crate::seed::NewAccount;
use crate::state::App;
use datacube_api::account::hash_secret;
use datacube_store::import::{import_body, ImportError};

/// Where the admin API is: every path under it is the admin API's ([`answers`]).
pub(crate) const AT: &str = "/admin";

/// Whether `path` is the admin API's (on an address that serves it).
pub(crate) fn answers(path: &str) -> bool {
    path.strip_prefix(AT)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// The admin routes, each with its description.
pub(crate) fn routes() -> OpenApiRouter<App> {
    crate::control::routes()
        .routes(routes!(list_accounts, add_account))
        .routes(routes!(remove_account))
        .routes(routes!(import))
        .routes(routes!(events))
        .routes(routes!(datacube))
        .routes(routes!(sync_runs))
        .routes(routes!(crate::mirror::run_now))
        .routes(routes!(crate::mirror::mirror_state))
        .merge(components::routes())
}

/// The admin API as served: every path under [`AT`], behind the admin token, an unknown one
/// answered 404 (not as the WeChat API's unknown paths are).
pub(crate) fn router<S: Clone + Send + Sync + 'static>(app: &App) -> Router<S> {
    let (routes, _) = routes().split_for_parts();
    let api = routes
        .fallback(extract::no_admin_api)
        .with_state(app.clone());
    let guarded = tower::Layer::layer(
        &axum::middleware::from_fn_with_state(app.clone(), extract::guard),
        api,
    );
    Router::new().nest_service(AT, guarded)
}

fn unknown_endpoint(status: StatusCode, name: &str) -> AdminError {
    AdminError::new(
        status,
        format!("unknown endpoint {name:?}; expected one of the 21 datacube names such as getusersummary"),
    )
}

/// The endpoint `name`, or `status` naming it unknown.
fn endpoint_named(name: &str, status: StatusCode) -> Result<Endpoint, AdminError> {
    Endpoint::from_name(name).ok_or_else(|| unknown_endpoint(status, name))
}

/// An account (its secret is never shown).
#[derive(Serialize, ToSchema)]
pub(crate) struct Account {
    appid: String,
    /// Unverified accounts answer 48001 on the datacube endpoints.
    verified: bool,
    /// When it was added, Unix seconds by the emulated clock.
    created_at: i64,
}

impl From<&AccountRecord> for Account {
    fn from(a: &AccountRecord) -> Account {
        Account {
            appid: a.appid.clone(),
            verified: a.verified,
            created_at: a.created_at,
        }
    }
}

/// The accounts.
#[utoipa::path(get, path = "/admin/accounts", tag = "Admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every account, by appid.", body = [Account]),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "The admin API is disabled (no admin token configured).", body = Problem),
    ))]
async fn list_accounts(State(app): State<App>) -> Result<Json<Vec<Account>>, AdminError> {
    let accounts = app.store().accounts().await?;
    Ok(Json(accounts.iter().map(Account::from).collect()))
}

/// What removing an account answers.
#[derive(Serialize, ToSchema)]
pub(crate) struct Removed {
    /// The appid removed.
    removed: String,
}

/// Removes an account and everything of it.
///
/// Its events, statistics, tokens and grants go. A write for it already under way stores
/// nothing (docs/compatibility.md, Tokens).
#[utoipa::path(delete, path = "/admin/accounts/{appid}", tag = "Admin",
    security(("admin_token" = [])),
    params(("appid" = String, Path, description = "The account's appid.")),
    responses(
        (status = 200, description = "Removed.", body = Removed),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "No such account (or the admin API is disabled).", body = Problem),
    ))]
async fn remove_account(
    State(app): State<App>,
    Path(appid): Path<String>,
) -> Result<Json<Removed>, AdminError> {
    if !app.store().remove_account(&appid).await? {
        return Err(AdminError::not_found(format!("no account {appid}")));
    }
    app.forget_all_of(&appid);
    tracing::info!(appid, "account removed");
    Ok(Json(Removed { removed: appid }))
}

/// `secret`'s hash, made off the async threads (argon2 takes tens of milliseconds).
async fn hashed(secret: String) -> Result<String, AdminError> {
    tokio::task::spawn_blocking(move || hash_secret(&secret))
        .await
        .map_err(|_| {
            AdminError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "hashing the secret failed",
            )
        })
}

/// Adds an account.
///
/// Its secret is stored hashed and never shown again; one shorter than 32 characters is warned
/// about in the log.
#[utoipa::path(post, path = "/admin/accounts", tag = "Admin",
    security(("admin_token" = [])),
    request_body = NewAccount,
    responses(
        (status = 201, description = "Added.", body = Account,
            links(("RemoveAccount" = (operation_id = "remove_account",
                parameters(("appid" = "$response.body#/appid")))))),
        (status = 400, description = "Not JSON, an unknown field, or an appid or secret that is not one.", body = Problem),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "The admin API is disabled.", body = Problem),
        (status = 409, description = "The appid is taken (by an account or a component).", body = Problem),
    ))]
async fn add_account(
    State(app): State<App>,
    AdminJson(new): AdminJson<NewAccount>,
) -> Result<(StatusCode, Json<Account>), AdminError> {
    let secret = Appid::parse(&new.appid)
        .and(Secret::parse(&new.secret))
        .map_err(AdminError::bad_request)?;
    if secret.is_short() {
        tracing::warn!(
            appid = new.appid,
            "a secret shorter than 32 characters can be guessed (sign-ins are not slowed down): \
             use 32 random characters, as WeChat's are"
        );
    }
    let record = AccountRecord {
        appid: new.appid,
        secret_hash: hashed(new.secret).await?,
        verified: new.verified,
        created_at: app.clock().unix(),
        incarnation: 0, // drawn by the store
    };
    app.store()
        .add_account(record.clone())
        .await
        .map_err(|e| match e {
            StoreError::AccountExists(appid) => {
                AdminError::conflict(format!("account {appid} already exists"))
            }
            e @ StoreError::AppidInUse(..) => AdminError::conflict(e.to_string()),
            e => AdminError::internal(&e),
        })?;
    app.forget_account(&record.appid);
    tracing::info!(
        appid = record.appid,
        verified = record.verified,
        "account added"
    );
    Ok((StatusCode::CREATED, Json(Account::from(&record))))
}

/// What an import did.
#[derive(Serialize, ToSchema)]
pub(crate) struct Imported {
    /// Rows whose key was new.
    inserted: usize,
    /// Rows that replaced a different row with the same key.
    updated: usize,
    /// Rows identical to those stored.
    unchanged: usize,
    /// Fields no shape lists, kept as sent (`url`, `details[].url`).
    new_fields: Vec<String>,
}

/// Imports an answer of WeChat's as an endpoint's rows.
///
/// The body is `{"list":[…]}` as WeChat answers it; all its rows are stored, or none.
#[utoipa::path(post, path = "/admin/import", tag = "Admin",
    security(("admin_token" = [])),
    params(
        ("appid" = String, Query, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "The account the rows are of."),
        ("endpoint" = String, Query, description = "The endpoint they answer (`getusersummary`)."),
        ("strict" = Option<bool>, Query, description = "Refuse rows with fields no shape lists (they are kept by default)."),
    ),
    request_body(content = Object, content_type = "application/json",
        description = "An answer as WeChat gives it: `{\"list\":[…]}`."),
    responses(
        (status = 200, description = "Imported.", body = Imported),
        (status = 400, description = "A parameter missing or wrong.", body = Problem),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "The admin API is disabled.", body = Problem),
        (status = 409, description = "The account was removed meanwhile.", body = Problem),
        (status = 422, description = "A row that does not fit the endpoint's shape, named.", body = Problem),
    ))]
async fn import(
    State(app): State<App>,
    AdminQuery(asked): AdminQuery<ImportQuery>,
    Admitted(body): Admitted,
) -> Result<Json<Imported>, AdminError> {
    let appid = required(asked.appid, "appid")?;
    Appid::parse(&appid).map_err(AdminError::bad_request)?;
    let endpoint = endpoint_named(
        &required(asked.endpoint, "endpoint")?,
        StatusCode::BAD_REQUEST,
    )?;
    let new = match asked.strict.as_deref() {
        None | Some("false" | "0") => datacube_api::row::NewFields::Keep,
        Some("true" | "1" | "") => datacube_api::row::NewFields::Refuse,
        Some(other) => {
            return Err(AdminError::bad_request(format!(
                "`strict` is true or false, not {other:?}"
            )))
        }
    };
    let imported = import_body(app.store(), &appid, endpoint, &body, new)
        .await
        .map_err(|e| match e {
            e @ ImportError::Invalid { .. } => {
                AdminError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            ImportError::Store(e @ StoreError::AccountGone(_)) => {
                AdminError::conflict(format!("{e} while its rows were imported"))
            }
            ImportError::Store(e) => AdminError::internal(&e),
        })?;
    app.statistics_changed(&appid);
    let report = imported.report;
    Ok(Json(Imported {
        inserted: report.inserted,
        updated: report.updated,
        unchanged: report.unchanged,
        new_fields: imported.new_fields,
    }))
}

/// The query of `POST /admin/import`, as sent.
#[derive(Deserialize)]
struct ImportQuery {
    appid: Option<String>,
    endpoint: Option<String>,
    strict: Option<String>,
}

/// The newest runs of `datacube sync`.
#[derive(Serialize, ToSchema)]
pub(crate) struct SyncRuns {
    runs: Vec<SyncRun>,
}

/// One run of `datacube sync`.
#[derive(Serialize, ToSchema)]
pub(crate) struct SyncRun {
    /// Its number, in the order runs started.
    id: i64,
    /// The mirror's name (a daemon's configuration); empty for a one-shot sync.
    mirror: String,
    /// The China day a daemon's run was scheduled for; null for a one-shot sync.
    slot: Option<String>,
    /// 1 for a slot's first try, 2 for its first retry…
    attempt: i64,
    /// When it started, in China time (`2026-12-07T08:30:00+08:00`), as its report and
    /// `datacube sync --status` give it.
    #[schema(format = DateTime)]
    started: String,
    /// When it ended; null while it runs (or if its process died).
    #[schema(format = DateTime)]
    finished: Option<String>,
    /// `ok`, `partial`, `failed`, `interrupted`, or `credentials` (the token API refused the
    /// secret of every account that failed); null while it runs.
    outcome: Option<String>,
    /// The run's report, as `datacube sync --json` prints it.
    #[schema(value_type = Option<Object>)]
    report: Option<serde_json::Value>,
}

/// The newest runs of `datacube sync`.
///
/// One-shot and daemon runs of this database, newest first, each with its report.
#[utoipa::path(get, path = "/admin/sync/runs", tag = "Admin",
    security(("admin_token" = [])),
    params(
        ("mirror" = Option<String>, Query, description = "Only this mirror's runs."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "How many (20)."),
    ),
    responses(
        (status = 200, description = "The runs, newest first.", body = SyncRuns),
        (status = 400, description = "`limit` out of range.", body = Problem),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "The admin API is disabled.", body = Problem),
    ))]
async fn sync_runs(
    State(app): State<App>,
    AdminQuery(asked): AdminQuery<SyncRunsQuery>,
) -> Result<Json<SyncRuns>, AdminError> {
    let limit = match asked.limit.map(|l| l.parse::<u32>()) {
        None => 20,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return Err(AdminError::bad_request(
                "`limit` is a number from 1 to 1000",
            ))
        }
    };
    let runs = app
        .store()
        .sync_runs(asked.mirror.as_deref(), limit)
        .await?;
    let runs = runs
        .into_iter()
        .map(|r| SyncRun {
            report: r
                .report
                .as_deref()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok()),
            id: r.id,
            mirror: r.mirror,
            slot: r.slot,
            attempt: r.attempt,
            started: datacube_api::date::china_time_of(r.started),
            finished: r.finished.map(datacube_api::date::china_time_of),
            outcome: r.outcome,
        })
        .collect();
    Ok(Json(SyncRuns { runs }))
}

/// The query of `GET /admin/sync/runs`, as sent.
#[derive(Deserialize)]
struct SyncRunsQuery {
    mirror: Option<String>,
    limit: Option<String>,
}

/// What posting events did.
#[derive(Serialize, ToSchema)]
pub(crate) struct EventsReport {
    /// Events stored and counted.
    accepted: usize,
    /// Events whose `id` had been accepted before: ignored.
    duplicates: usize,
    /// Lines refused, with the reason: the first 1000 of them by line number.
    rejected: Vec<RejectedLine>,
    /// Lines refused in all.
    rejected_total: usize,
}

/// A line refused.
#[derive(Serialize, ToSchema)]
pub(crate) struct RejectedLine {
    /// 1-based line number in the body (0: events refused as a whole, named in `reason`).
    line: usize,
    /// What is wrong with it.
    reason: String,
}

impl From<datacube_store::ingest::IngestReport> for EventsReport {
    fn from(report: datacube_store::ingest::IngestReport) -> EventsReport {
        EventsReport {
            accepted: report.accepted,
            duplicates: report.duplicates,
            rejected: report
                .rejected
                .into_iter()
                .map(|r| RejectedLine {
                    line: r.line,
                    reason: r.reason,
                })
                .collect(),
            rejected_total: report.rejected_total,
        }
    }
}

/// Stores events; their statistics are counted when they can first be read.
///
/// One JSON object per line (docs/events.md); bad lines are named with their number and
/// reason, the good ones kept. A body up to 16 MiB is stored in one transaction, with the
/// periods it touches marked pending: every answer counts what it may show before it is
/// given, and today's figures are counted when the day becomes readable — a batch costs what
/// it holds, not the account's history. A larger body is loaded as `datacube ingest` loads a
/// file, in bounded memory, its statistics computed at once.
#[utoipa::path(post, path = "/admin/events", tag = "Admin",
    security(("admin_token" = [])),
    request_body(content = Option<String>, content_type = "application/x-ndjson",
        description = "NDJSON: `{\"type\":\"follow\",\"appid\":\"wx…\",\"openid\":\"o…\",\"time\":\"2026-11-30T09:00:00+08:00\"}` per line."),
    responses(
        (status = 200, description = "What was stored, and each line refused.", body = EventsReport),
        (status = 400, description = "The body is not UTF-8.", body = Problem),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "The admin API is disabled.", body = Problem),
        (status = 413, description = "Larger than `--admin-body-limit`.", body = Problem),
    ))]
async fn events(
    State(app): State<App>,
    Admitted(body): Admitted,
) -> Result<Json<EventsReport>, AdminError> {
    let yesterday =
        datacube_api::date::add_days(datacube_api::date::china_date(app.clock().unix()), -1);
    let started = std::time::Instant::now();
    let (report, changed) = if body.len() > ONE_TRANSACTION {
        events_in_bulk(&app, body, yesterday).await?
    } else {
        let text = std::str::from_utf8(&body)
            .map_err(|_| AdminError::bad_request("the body is not UTF-8 text"))?;
        let lines: Vec<(usize, &str)> = text.lines().enumerate().map(|(i, l)| (i + 1, l)).collect();
        let mut known = datacube_store::ingest::KnownAccounts::default();
        // Stored at once, counted when first read: a batch costs what it holds.
        datacube_store::ingest::parse_lines(app.store(), &lines, &mut known)
            .await?
            .store(app.store(), datacube_store::ingest::Recompute::WhenRead)
            .await?
    };
    // Storing the events and recomputing the periods they touch.
    metrics::histogram!("datacube_ingest_seconds").record(started.elapsed().as_secs_f64());
    for appid in &changed {
        app.statistics_changed(appid);
    }
    for (outcome, n) in [
        ("accepted", report.accepted),
        ("duplicate", report.duplicates),
        ("rejected", report.rejected_total),
    ] {
        metrics::counter!("datacube_events_total", "outcome" => outcome).increment(n as u64);
    }
    Ok(Json(EventsReport::from(report)))
}

/// The largest body of events stored in one transaction.
const ONE_TRANSACTION: usize = 16 << 20;
/// Events per transaction of a larger body.
const BULK_BATCH: usize = 200_000;
/// Memory for sorting a larger body's events (past it, sorted runs go to temporary files).
const BULK_MEMORY: usize = 128 << 20;

/// A large body of events, loaded in bulk: the report, and the accounts it was for.
async fn events_in_bulk(
    app: &App,
    body: axum::body::Bytes,
    yesterday: jiff::civil::Date,
) -> datacube_store::Result<(
    datacube_store::ingest::IngestReport,
    std::collections::BTreeSet<String>,
)> {
    let store = app.store().clone();
    let runtime = tokio::runtime::Handle::current();
    let loaded = tokio::task::spawn_blocking(move || {
        datacube_store::load::read_and_sort(
            Box::new(std::io::Cursor::new(body)),
            &store,
            &runtime,
            datacube_store::bulk::Sorter::new(BULK_MEMORY, std::env::temp_dir()),
            datacube_store::ingest::NAMED_REJECTIONS,
            &|_| {},
        )
    })
    .await
    .map_err(|e| datacube_store::StoreError::Task(e.to_string()))??;
    let changed: std::collections::BTreeSet<String> = loaded.fence.keys().cloned().collect();
    let outcome = app
        .store()
        .ingest_sorted(loaded.sorted, loaded.fence, yesterday, BULK_BATCH, |_| {})
        .await?;
    let mut rejected = loaded.rejected;
    if outcome.gone > 0 {
        rejected.push(
            0,
            format!(
                "{} events: their account was removed before they were stored",
                outcome.gone
            ),
        );
    }
    let report = datacube_store::ingest::IngestReport {
        accepted: outcome.accepted as usize,
        duplicates: outcome.duplicates as usize,
        rejected: rejected.named(),
        rejected_total: rejected.total() - usize::from(outcome.gone > 0) + outcome.gone as usize,
    };
    Ok((report, changed))
}

/// Reads an account's statistics as `/datacube/{name}` answers them.
///
/// Without its access token (the dashboard signed in with the admin token reads every account
/// so) and without taking its API quota.
#[utoipa::path(post, path = "/admin/datacube/{name}", tag = "Admin",
    security(("admin_token" = [])),
    params(
        ("name" = String, Path, description = "The endpoint."),
        ("appid" = String, Query, description = "The account."),
    ),
    request_body = crate::openapi::DatacubeRequest,
    responses(
        (status = 200, description = "The endpoint's answer, as WeChat gives it (errors too: HTTP 200 with an errcode).",
            body = ref("#/components/schemas/AnyDatacubeAnswer")),
        (status = 400, description = "No `appid`.", body = Problem),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "No such endpoint or account (or the admin API is disabled).", body = Problem),
    ))]
async fn datacube(
    State(app): State<App>,
    Path(name): Path<String>,
    AdminQuery(asked): AdminQuery<DatacubeQuery>,
    Admitted(body): Admitted,
) -> Result<Response, AdminError> {
    let endpoint = endpoint_named(&name, StatusCode::NOT_FOUND)?;
    let appid = required(asked.appid, "appid")?;
    if app.store().account(&appid).await?.is_none() {
        return Err(AdminError::not_found(format!("no account {appid}")));
    }
    Ok(crate::wechat::answer(&app, endpoint, &appid, &body, None).await)
}

/// The query of `POST /admin/datacube/{name}`, as sent.
#[derive(Deserialize)]
struct DatacubeQuery {
    appid: Option<String>,
}
