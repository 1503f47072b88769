//! The admin API under `/admin`, for operators and tests. Plain HTTP semantics (status codes,
//! `{"error": "…"}` bodies), guarded by `Authorization: Bearer <admin token>`; disabled when no
//! admin token is configured.

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use datacube_api::{Appid, Endpoint, Secret};
use datacube_store::{AccountRecord, StoreError};
use serde::Deserialize;
use serde_json::json;

use crate::secret::constant_time_eq;
use crate::seed::NewAccount;
use crate::state::App;
use crate::wechat::{read_body, BodyError};
use datacube_api::account::hash_secret;
use datacube_store::import::{import_body, ImportError};

/// The admin routes.
pub(crate) fn routes() -> Router<App> {
    crate::control::routes()
        .route("/admin/accounts", get(list_accounts).post(add_account))
        .route(
            "/admin/accounts/{appid}",
            axum::routing::delete(remove_account),
        )
        .route("/admin/import", post(import))
        .route("/admin/events", post(events))
        .route("/admin/datacube/{name}", post(datacube))
        .route("/admin/sync/runs", get(sync_runs))
        .route(
            "/admin/components",
            get(list_components).post(add_component),
        )
        .route("/admin/components/{appid}/ticket", post(push_ticket))
        .route("/admin/components/{appid}/grants", post(grant))
        .route(
            "/admin/components/{appid}/grants/{authorizer}",
            axum::routing::delete(revoke),
        )
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
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
    let expected = app.config().admin_token.as_deref();
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
        let Some(expected) = app.config().admin_token.as_deref() else {
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

pub(crate) fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, AdminError> {
    serde_json::from_slice(body)
        .map_err(|e| AdminError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

fn account_json(a: &AccountRecord) -> serde_json::Value {
    json!({ "appid": a.appid, "verified": a.verified, "created_at": a.created_at })
}

async fn list_accounts(State(app): State<App>, _: Admitted) -> Response {
    match app.store().accounts().await {
        Ok(accounts) => Json(accounts.iter().map(account_json).collect::<Vec<_>>()).into_response(),
        Err(e) => internal(&e),
    }
}

/// `DELETE /admin/accounts/<appid>`: the account and everything of it.
async fn remove_account(
    State(app): State<App>,
    Path(appid): Path<String>,
    _: Admitted,
) -> Response {
    match app.store().remove_account(&appid).await {
        Ok(true) => {
            app.forget_all_of(&appid);
            tracing::info!(appid, "account removed");
            Json(json!({ "removed": appid })).into_response()
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
            (StatusCode::CREATED, Json(account_json(&record))).into_response()
        }
        Err(StoreError::AccountExists(appid)) => error(
            StatusCode::CONFLICT,
            format!("account {appid} already exists"),
        ),
        Err(e @ StoreError::AppidInUse(..)) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e) => internal(&e),
    }
}

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
            Json(json!({
            "inserted": report.inserted,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "new_fields": imported.new_fields,
            }))
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

/// `GET /admin/sync/runs?mirror=NAME&limit=N`: the newest runs of `datacube sync` (one-shot
/// and daemon, of this database), newest first, each with its report.
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
            let runs: Vec<serde_json::Value> = runs
                .into_iter()
                .map(|r| {
                    let report = r
                        .report
                        .as_deref()
                        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok());
                    json!({
                        "id": r.id,
                        "mirror": r.mirror,
                        "slot": r.slot,
                        "attempt": r.attempt,
                        "started": r.started,
                        "finished": r.finished,
                        "outcome": r.outcome,
                        "report": report,
                    })
                })
                .collect();
            Json(json!({ "runs": runs })).into_response()
        }
        Err(e) => internal(&e),
    }
}

/// `POST /admin/events`: an NDJSON body of events. Bad lines are reported with their number
/// and reason. A body up to [`ONE_TRANSACTION`] is stored and counted in one transaction; a
/// larger one is loaded as `datacube ingest` loads a file — sorted in bounded memory, stored in
/// transactions of [`BULK_BATCH`] events — so that memory stays bounded whatever its size.
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
        datacube_store::ingest::ingest_lines(app.store(), &lines, yesterday, &mut known).await
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
            Json(report).into_response()
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

/// `POST /admin/datacube/<name>?appid=…` with a datacube body: the account's answer as
/// `/datacube/<name>` gives it, without an access token (the dashboard signed in with the admin
/// token reads every account this way) and without taking the account's API quota.
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

fn component_json(c: &datacube_store::ComponentRecord) -> serde_json::Value {
    json!({ "appid": c.appid, "event_url": c.event_url, "created_at": c.created_at })
}

async fn list_components(State(app): State<App>, _: Admitted) -> Response {
    match app.store().components().await {
        Ok(list) => Json(list.iter().map(component_json).collect::<Vec<_>>()).into_response(),
        Err(e) => internal(&e),
    }
}

async fn add_component(State(app): State<App>, Admitted(body): Admitted) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewComponent {
        appid: String,
        secret: String,
        token: String,
        aes_key: String,
        event_url: Option<String>,
    }
    let new: NewComponent = match parse_json(&body) {
        Ok(new) => new,
        Err(e) => return e.into_response(),
    };
    if let Err(msg) = Appid::parse(&new.appid)
        .and(Secret::parse(&new.secret))
        .and(datacube_push::crypto::check_component_keys(
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
        token: new.token,
        aes_key: new.aes_key,
        event_url: new.event_url,
        created_at: app.clock().unix(),
    };
    match app.store().add_component(record.clone()).await {
        Ok(()) => (StatusCode::CREATED, Json(component_json(&record))).into_response(),
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

/// Issues a component_verify_ticket now and pushes it to the component's event URL (WeChat
/// pushes one every 10 minutes); without an event URL the ticket is only answered here.
async fn push_ticket(State(app): State<App>, Path(appid): Path<String>, _: Admitted) -> Response {
    let component = match component_of(&app, &appid).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match crate::component::push_ticket(&app, &component).await {
        Ok((ticket, pushed)) => Json(json!({
            "ticket": ticket,
            "pushed": pushed.is_ok(),
            "push_error": pushed.err(),
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// The authorization step, without a browser: an account grants permission sets to a
/// component. Answers the authorization code (also pushed as `authorized`).
async fn grant(
    State(app): State<App>,
    Path(appid): Path<String>,
    Admitted(body): Admitted,
) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewGrant {
        authorizer_appid: String,
        func_ids: Vec<u32>,
        pre_auth_code: Option<String>,
    }
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
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no account {}", new.authorizer_appid),
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
        Ok(done) => Json(json!({
            "authorization_code": done.code,
            "expires_in": crate::component::AUTH_CODE_LIFETIME,
            "authorizer_refresh_token": done.refresh_token,
            "info_type": done.info_type,
            "pushed": done.pushed.is_ok(),
            "push_error": done.pushed.err(),
        }))
        .into_response(),
        Err(code) => error(
            StatusCode::BAD_REQUEST,
            format!("pre_auth_code refused: {} {}", code.code(), code.message()),
        ),
    }
}

/// Ends an account's authorization of a component (its tokens die; `unauthorized` pushed).
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
        Ok((true, pushed)) => Json(json!({
            "revoked": true,
            "pushed": pushed.is_ok(),
            "push_error": pushed.err(),
        }))
        .into_response(),
        Err(code) => error(StatusCode::INTERNAL_SERVER_ERROR, code.message()),
    }
}
