//! The admin API under `/admin`, for operators and tests. Plain HTTP semantics (status codes,
//! `{"error": "…"}` bodies), guarded by `Authorization: Bearer <admin token>`; disabled when no
//! admin token is configured.

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use datacube_api::{Appid, Endpoint, Secret};
use datacube_store::{AccountRecord, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::secret::constant_time_eq;
use crate::seed::NewAccount;
use crate::state::App;
use crate::wechat::{read_body, BodyError};
use datacube_api::account::hash_secret;
use datacube_store::import::{import_body, ImportError};

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
        .routes(routes!(list_components, add_component))
        .routes(routes!(push_ticket))
        .routes(routes!(grant))
        .routes(routes!(revoke))
}

/// What every admin error answers: its HTTP status, and this.
#[derive(Serialize, ToSchema)]
#[schema(as = AdminError)]
pub(crate) struct Problem {
    /// What is wrong, for a person.
    error: String,
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(Problem {
            error: message.into(),
        }),
    )
        .into_response()
}

fn unknown_endpoint(status: StatusCode, name: &str) -> Response {
    error(
        status,
        format!("unknown endpoint {name:?}; expected one of the 21 datacube names such as getusersummary"),
    )
}

pub(crate) fn internal(err: &dyn std::error::Error) -> Response {
    tracing::error!(error = %err, "admin request failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("internal error: {err}"),
    )
}

/// An admin API error: its status and message, answered as `{"error": "…"}`.
#[derive(Debug)]
pub(crate) struct AdminError {
    status: StatusCode,
    message: String,
}

impl AdminError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> AdminError {
        AdminError {
            status,
            message: message.into(),
        }
    }

    fn internal(err: &dyn std::error::Error) -> AdminError {
        tracing::error!(error = %err, "admin request failed");
        AdminError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {err}"),
        )
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        error(self.status, self.message)
    }
}

/// Whether `headers` carry the admin token (`Authorization: Bearer …`).
pub(crate) fn shows_admin_token(app: &App, headers: &axum::http::HeaderMap) -> bool {
    let expected = app
        .config()
        .admin_token
        .as_ref()
        .map(datacube_api::secret::Secret::expose);
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    matches!((given, expected), (Some(g), Some(e)) if constant_time_eq(g, e))
}

/// A request the admin token admits, with its body read (within the admin body limit and
/// time): the extractor every admin handler takes last. Without an admin token configured the
/// whole API answers 404.
pub(crate) struct Admitted(pub(crate) axum::body::Bytes);

impl axum::extract::FromRequest<App> for Admitted {
    type Rejection = AdminError;

    async fn from_request(req: Request, app: &App) -> Result<Admitted, AdminError> {
        let Some(expected) = app
            .config()
            .admin_token
            .as_ref()
            .map(datacube_api::secret::Secret::expose)
        else {
            return Err(AdminError::new(
                StatusCode::NOT_FOUND,
                "the admin API is disabled: start serve with --admin-token or DATACUBE_ADMIN_TOKEN",
            ));
        };
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(given) if constant_time_eq(given, expected) => {}
            Some(_) => {
                return Err(AdminError::new(
                    StatusCode::UNAUTHORIZED,
                    "wrong admin token",
                ))
            }
            None => {
                return Err(AdminError::new(
                    StatusCode::UNAUTHORIZED,
                    "missing header `Authorization: Bearer <admin token>`",
                ))
            }
        }
        let limits = &app.config().limits;
        match read_body(
            req.into_body(),
            limits.admin_body_limit,
            limits.body_timeout,
        )
        .await
        {
            Ok(body) => Ok(Admitted(body)),
            Err(BodyError::TooLarge) => Err(AdminError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body larger than {} bytes", limits.admin_body_limit),
            )),
            Err(BodyError::Broken) => Err(AdminError::new(
                StatusCode::BAD_REQUEST,
                "the request body was cut off or too slow",
            )),
        }
    }
}

/// The admin API's JSON bodies are objects: serde's derived readers would also take an array
/// of the fields in order (`[]` for a struct of defaults), which no description allows.
/// A body that may be empty (or `null`): what it says, or `T`'s default.
pub(crate) fn parse_optional_json<'a, T: Deserialize<'a> + Default>(
    body: &'a [u8],
) -> Result<T, AdminError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    Ok(parse_json::<Option<T>>(body)?.unwrap_or_default())
}

pub(crate) fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, AdminError> {
    if body.trim_ascii_start().starts_with(b"[") {
        return Err(AdminError::new(
            StatusCode::BAD_REQUEST,
            "invalid JSON body: a JSON object is expected, not an array",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| AdminError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
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
async fn list_accounts(State(app): State<App>, _: Admitted) -> Response {
    match app.store().accounts().await {
        Ok(accounts) => {
            Json(accounts.iter().map(Account::from).collect::<Vec<_>>()).into_response()
        }
        Err(e) => internal(&e),
    }
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
    _: Admitted,
) -> Response {
    match app.store().remove_account(&appid).await {
        Ok(true) => {
            app.forget_all_of(&appid);
            tracing::info!(appid, "account removed");
            Json(Removed { removed: appid }).into_response()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, format!("no account {appid}")),
        Err(e) => internal(&e),
    }
}

/// `secret`'s hash, made off the async threads (argon2 takes tens of milliseconds).
async fn hashed(secret: String) -> Result<String, Response> {
    tokio::task::spawn_blocking(move || hash_secret(&secret))
        .await
        .map_err(|_| {
            error(
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
async fn add_account(State(app): State<App>, Admitted(body): Admitted) -> Response {
    let new: NewAccount = match parse_json(&body) {
        Ok(new) => new,
        Err(e) => return e.into_response(),
    };
    let secret = match Appid::parse(&new.appid).and(Secret::parse(&new.secret)) {
        Ok(secret) => secret,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    if secret.is_short() {
        tracing::warn!(
            appid = new.appid,
            "a secret shorter than 32 characters can be guessed (sign-ins are not slowed down): \
             use 32 random characters, as WeChat's are"
        );
    }
    let hash = match hashed(new.secret).await {
        Ok(hash) => hash,
        Err(refused) => return refused,
    };
    let record = AccountRecord {
        appid: new.appid,
        secret_hash: hash,
        verified: new.verified,
        created_at: app.clock().unix(),
        incarnation: 0, // drawn by the store
    };
    match app.store().add_account(record.clone()).await {
        Ok(()) => {
            app.forget_account(&record.appid);
            tracing::info!(
                appid = record.appid,
                verified = record.verified,
                "account added"
            );
            (StatusCode::CREATED, Json(Account::from(&record))).into_response()
        }
        Err(StoreError::AccountExists(appid)) => error(
            StatusCode::CONFLICT,
            format!("account {appid} already exists"),
        ),
        Err(e @ StoreError::AppidInUse(..)) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => internal(&e),
    }
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
    RawQuery(query): RawQuery,
    Admitted(body): Admitted,
) -> Response {
    let query = query.unwrap_or_default();
    let param = |key: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    };
    let Some(appid) = param("appid") else {
        return error(StatusCode::BAD_REQUEST, "missing query parameter `appid`");
    };
    if let Err(msg) = Appid::parse(&appid) {
        return error(StatusCode::BAD_REQUEST, msg);
    }
    let Some(name) = param("endpoint") else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing query parameter `endpoint`",
        );
    };
    let Some(endpoint) = Endpoint::from_name(&name) else {
        return unknown_endpoint(StatusCode::BAD_REQUEST, &name);
    };
    let new = match param("strict").as_deref() {
        None | Some("false" | "0") => datacube_api::row::NewFields::Keep,
        Some("true" | "1" | "") => datacube_api::row::NewFields::Refuse,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("`strict` is true or false, not {other:?}"),
            )
        }
    };
    match import_body(app.store(), &appid, endpoint, &body, new).await {
        Ok(imported) => {
            app.statistics_changed(&appid);
            let report = imported.report;
            Json(Imported {
                inserted: report.inserted,
                updated: report.updated,
                unchanged: report.unchanged,
                new_fields: imported.new_fields,
            })
            .into_response()
        }
        Err(e @ ImportError::Invalid { .. }) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        Err(ImportError::Store(e @ datacube_store::StoreError::AccountGone(_))) => error(
            StatusCode::CONFLICT,
            format!("{e} while its rows were imported"),
        ),
        Err(ImportError::Store(e)) => internal(&e),
    }
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
async fn sync_runs(State(app): State<App>, RawQuery(query): RawQuery, _: Admitted) -> Response {
    let query = query.unwrap_or_default();
    let param = |key: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    };
    let limit = match param("limit").map(|l| l.parse::<u32>()) {
        None => 20,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "`limit` is a number from 1 to 1000",
            )
        }
    };
    let mirror = param("mirror");
    match app.store().sync_runs(mirror.as_deref(), limit).await {
        Ok(runs) => {
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
            Json(SyncRuns { runs }).into_response()
        }
        Err(e) => internal(&e),
    }
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
async fn events(State(app): State<App>, Admitted(body): Admitted) -> Response {
    let yesterday =
        datacube_api::date::add_days(datacube_api::date::china_date(app.clock().unix()), -1);
    let started = std::time::Instant::now();
    let done = if body.len() > ONE_TRANSACTION {
        events_in_bulk(&app, body, yesterday).await
    } else {
        let Ok(text) = std::str::from_utf8(&body) else {
            return error(StatusCode::BAD_REQUEST, "the body is not UTF-8 text");
        };
        let lines: Vec<(usize, &str)> = text.lines().enumerate().map(|(i, l)| (i + 1, l)).collect();
        let mut known = datacube_store::ingest::KnownAccounts::default();
        // Stored at once, counted when first read: a batch costs what it holds.
        async {
            datacube_store::ingest::parse_lines(app.store(), &lines, &mut known)
                .await?
                .store(app.store(), datacube_store::ingest::Recompute::WhenRead)
                .await
        }
        .await
    };
    match done {
        Ok((report, changed)) => {
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
                metrics::counter!("datacube_events_total", "outcome" => outcome)
                    .increment(n as u64);
            }
            Json(EventsReport::from(report)).into_response()
        }
        Err(e) => internal(&e),
    }
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
    RawQuery(query): RawQuery,
    Admitted(body): Admitted,
) -> Response {
    let query = query.unwrap_or_default();
    let Some(endpoint) = Endpoint::from_name(&name) else {
        return unknown_endpoint(StatusCode::NOT_FOUND, &name);
    };
    let Some(appid) = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "appid")
        .map(|(_, v)| v.into_owned())
    else {
        return error(StatusCode::BAD_REQUEST, "missing query parameter `appid`");
    };
    match app.store().account(&appid).await {
        Ok(Some(_)) => {}
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no account {appid}")),
        Err(e) => return internal(&e),
    }
    crate::wechat::answer(&app, endpoint, &appid, &body, None).await
}

// ---- third-party platforms ----

/// A third-party platform (its secret, token and key are never shown).
#[derive(Serialize, ToSchema)]
pub(crate) struct Component {
    appid: String,
    /// Where its tickets and authorization events are pushed.
    event_url: Option<String>,
    /// When it was added, Unix seconds by the emulated clock.
    created_at: i64,
}

impl From<&datacube_store::ComponentRecord> for Component {
    fn from(c: &datacube_store::ComponentRecord) -> Component {
        Component {
            appid: c.appid.clone(),
            event_url: c.event_url.clone(),
            created_at: c.created_at,
        }
    }
}

/// The third-party platforms.
#[utoipa::path(get, path = "/admin/components", tag = "Admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every component, by appid.", body = [Component]),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "The admin API is disabled.", body = Problem),
    ))]
async fn list_components(State(app): State<App>, _: Admitted) -> Response {
    match app.store().components().await {
        Ok(list) => Json(list.iter().map(Component::from).collect::<Vec<_>>()).into_response(),
        Err(e) => internal(&e),
    }
}

/// A third-party platform to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewComponent {
    /// 1 to 64 letters, digits, `_` and `-`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    appid: String,
    /// Its AppSecret (component_appsecret): 1 to 128 visible ASCII characters.
    #[schema(pattern = "^[!-~]{1,128}$")]
    secret: String,
    /// The token its pushes are signed with: 3 to 32 letters and digits.
    #[schema(pattern = "^[A-Za-z0-9]{3,32}$")]
    token: String,
    /// Its EncodingAESKey: 43 letters and digits.
    #[schema(pattern = "^[A-Za-z0-9]{43}$")]
    aes_key: String,
    /// Where tickets and authorization events are pushed (none: only answered here).
    #[schema(pattern = "^https?://")]
    event_url: Option<String>,
}

/// Adds a third-party platform.
#[utoipa::path(post, path = "/admin/components", tag = "Admin",
    security(("admin_token" = [])),
    request_body = NewComponent,
    responses(
        (status = 201, description = "Added.", body = Component,
            links(
                ("PushTicket" = (operation_id = "push_ticket", parameters(("appid" = "$response.body#/appid")))),
                ("Grant" = (operation_id = "grant", parameters(("appid" = "$response.body#/appid")))),
            )),
        (status = 400, description = "Not JSON, an unknown field, or a value that is not one.", body = Problem),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "The admin API is disabled.", body = Problem),
        (status = 409, description = "The appid is taken.", body = Problem),
    ))]
async fn add_component(State(app): State<App>, Admitted(body): Admitted) -> Response {
    let new: NewComponent = match parse_json(&body) {
        Ok(new) => new,
        Err(e) => return e.into_response(),
    };
    if let Err(msg) = Appid::parse(&new.appid)
        .and(Secret::parse(&new.secret))
        .and(datacube_protocol::crypto::check_component_keys(
            &new.token,
            &new.aes_key,
            new.event_url.as_deref(),
        ))
    {
        return error(StatusCode::BAD_REQUEST, msg);
    }
    let hash = match hashed(new.secret).await {
        Ok(hash) => hash,
        Err(refused) => return refused,
    };
    let record = datacube_store::ComponentRecord {
        appid: new.appid,
        secret_hash: hash,
        token: datacube_api::secret::Secret::new(new.token),
        aes_key: datacube_api::secret::Secret::new(new.aes_key),
        event_url: new.event_url,
        created_at: app.clock().unix(),
    };
    match app.store().add_component(record.clone()).await {
        Ok(()) => (StatusCode::CREATED, Json(Component::from(&record))).into_response(),
        Err(StoreError::AccountExists(appid)) => error(
            StatusCode::CONFLICT,
            format!("component {appid} already exists"),
        ),
        Err(e @ StoreError::AppidInUse(..)) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => internal(&e),
    }
}

async fn component_of(
    app: &App,
    appid: &str,
) -> Result<datacube_store::ComponentRecord, AdminError> {
    match app.store().component(appid).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(AdminError::new(
            StatusCode::NOT_FOUND,
            format!("no component {appid}"),
        )),
        Err(e) => Err(AdminError::internal(&e)),
    }
}

/// A ticket issued.
#[derive(Serialize, ToSchema)]
pub(crate) struct TicketIssued {
    /// The component_verify_ticket.
    ticket: String,
    /// Whether the event URL answered `success`.
    pushed: bool,
    /// Why not (null when pushed).
    push_error: Option<String>,
}

/// Issues a component_verify_ticket now.
///
/// It is pushed to the component's event URL (WeChat pushes one every 10 minutes); without an
/// event URL the ticket is only answered here.
#[utoipa::path(post, path = "/admin/components/{appid}/ticket", tag = "Admin",
    security(("admin_token" = [])),
    params(("appid" = String, Path, description = "The component.")),
    responses(
        (status = 200, description = "The ticket, and whether its push was answered.", body = TicketIssued),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "No such component (or the admin API is disabled).", body = Problem),
    ))]
async fn push_ticket(State(app): State<App>, Path(appid): Path<String>, _: Admitted) -> Response {
    let component = match component_of(&app, &appid).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match crate::component::push_ticket(&app, &component).await {
        Ok((ticket, pushed)) => Json(TicketIssued {
            ticket,
            pushed: pushed.is_ok(),
            push_error: pushed.err(),
        })
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// An authorization to give.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewGrant {
    /// The account that authorizes.
    authorizer_appid: String,
    /// The permission sets it grants (1 messages, 2 users, 3 interface, 7 articles, …).
    #[serde(deserialize_with = "integral::list_u32")]
    #[schema(value_type = Vec<PermissionSet>, example = json!([1, 2, 3, 7]))]
    func_ids: Vec<u32>,
    /// The pre-auth code the authorization page was opened with (none: as if one were).
    pre_auth_code: Option<String>,
}

/// Integers as JSON Schema counts them: `7` and `7.0` alike (a number with no fraction is an
/// integer), within the type's range.
pub(crate) mod integral {
    use serde::{Deserialize, Deserializer};

    fn of<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
        value: serde_json::Number,
    ) -> Result<T, D::Error> {
        let whole = match (value.as_u64(), value.as_f64()) {
            (Some(n), _) => Some(n),
            (None, Some(f)) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => {
                Some(f as u64)
            }
            _ => None,
        };
        whole
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| serde::de::Error::custom(format!("{value} is not an integer in range")))
    }

    /// A `u32`.
    pub(crate) fn list_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
        Vec::<serde_json::Number>::deserialize(d)?
            .into_iter()
            .map(of::<D, u32>)
            .collect()
    }

    /// An optional integer from 0 to 2⁶³−1.
    pub(crate) fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<serde_json::Number>::deserialize(d)? {
            None => Ok(None),
            Some(n) => of::<D, i64>(n).map(|n: i64| Some(n as u64)),
        }
    }
}

/// A permission set's id: 1 to 4294967295 (`func_ids`).
pub(crate) struct PermissionSet;

impl utoipa::PartialSchema for PermissionSet {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .format(Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(
                utoipa::openapi::schema::KnownFormat::Int64,
            )))
            .minimum(Some(1))
            .maximum(Some(u32::MAX))
            .into()
    }
}

impl ToSchema for PermissionSet {}

/// An authorization given.
#[derive(Serialize, ToSchema)]
pub(crate) struct Granted {
    /// For `api_query_auth` (single use).
    authorization_code: String,
    /// Its lifetime, seconds (3600).
    expires_in: i64,
    authorizer_refresh_token: String,
    /// `authorized`, or `updateauthorized` when the account had authorized before.
    info_type: String,
    /// Whether the event URL answered `success`.
    pushed: bool,
    /// Why not (null when pushed).
    push_error: Option<String>,
}

/// An account authorizes a component.
///
/// The authorization step, without a browser: the account grants permission sets. Answers the
/// authorization code (also pushed as `authorized`).
#[utoipa::path(post, path = "/admin/components/{appid}/grants", tag = "Admin",
    security(("admin_token" = [])),
    params(("appid" = String, Path, description = "The component.")),
    request_body = NewGrant,
    responses(
        (status = 200, description = "The authorization code, and whether its push was answered.", body = Granted,
            links(("Revoke" = (operation_id = "revoke", parameters(
                ("appid" = "$request.path.appid"),
                ("authorizer" = "$request.body#/authorizer_appid")))))),
        (status = 400, description = "Not JSON, or a permission set 0.", body = Problem),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "No such component (or the admin API is disabled).", body = Problem),
        (status = 409, description = "No such account (it must be added first), or a pre-auth code unknown, used or expired.", body = Problem),
    ))]
async fn grant(
    State(app): State<App>,
    Path(appid): Path<String>,
    Admitted(body): Admitted,
) -> Response {
    let new: NewGrant = match parse_json(&body) {
        Ok(new) => new,
        Err(e) => return e.into_response(),
    };
    let component = match component_of(&app, &appid).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match app.store().account(&new.authorizer_appid).await {
        Ok(Some(_)) => {}
        // The component is there (the path's resource); the account the body names is not.
        Ok(None) => {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "no account {}: add it before it can authorize a component",
                    new.authorizer_appid
                ),
            )
        }
        Err(e) => return internal(&e),
    }
    let mut sets = Vec::new();
    for id in new.func_ids {
        if id == 0 {
            return error(
                StatusCode::BAD_REQUEST,
                "func_ids are permission set ids (1, 2, 3, 7, …)",
            );
        }
        if !sets.contains(&id) {
            sets.push(id);
        }
    }
    match crate::component::authorize(
        &app,
        &component,
        &new.authorizer_appid,
        sets,
        new.pre_auth_code.as_deref(),
    )
    .await
    {
        Ok(done) => Json(Granted {
            authorization_code: done.code,
            expires_in: crate::component::AUTH_CODE_LIFETIME,
            authorizer_refresh_token: done.refresh_token,
            info_type: done.info_type.to_owned(),
            pushed: done.pushed.is_ok(),
            push_error: done.pushed.err(),
        })
        .into_response(),
        // Well formed, but unknown, used or expired: a conflict with what the server holds.
        Err(code) => error(
            StatusCode::CONFLICT,
            format!("pre_auth_code refused: {} {}", code.code(), code.message()),
        ),
    }
}

/// An authorization ended.
#[derive(Serialize, ToSchema)]
pub(crate) struct Revoked {
    revoked: bool,
    /// Whether the event URL answered `success` to `unauthorized`.
    pushed: bool,
    /// Why not (null when pushed).
    push_error: Option<String>,
}

/// Ends an account's authorization of a component.
///
/// Its authorizer tokens die; `unauthorized` is pushed.
#[utoipa::path(delete, path = "/admin/components/{appid}/grants/{authorizer}", tag = "Admin",
    security(("admin_token" = [])),
    params(
        ("appid" = String, Path, description = "The component."),
        ("authorizer" = String, Path, description = "The account that authorized it."),
    ),
    responses(
        (status = 200, description = "Ended.", body = Revoked),
        (status = 401, description = "No admin token, or a wrong one.", body = Problem),
        (status = 404, description = "No such component, or no such authorization (or the admin API is disabled).", body = Problem),
    ))]
async fn revoke(
    State(app): State<App>,
    Path((appid, authorizer)): Path<(String, String)>,
    _: Admitted,
) -> Response {
    let component = match component_of(&app, &appid).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match crate::component::unauthorize(&app, &component, &authorizer).await {
        Ok((false, _)) => error(
            StatusCode::NOT_FOUND,
            format!("{authorizer} has not authorized {appid}"),
        ),
        Ok((true, pushed)) => Json(Revoked {
            revoked: true,
            pushed: pushed.is_ok(),
            push_error: pushed.err(),
        })
        .into_response(),
        Err(code) => error(StatusCode::INTERNAL_SERVER_ERROR, code.message()),
    }
}
