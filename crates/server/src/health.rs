//! Health checks for orchestrators — compose's `service_healthy`, Kubernetes probes,
//! testcontainers' wait strategies, `datacube healthcheck`. They are not WeChat's paths, so
//! they answer plain HTTP statuses instead of WeChat's 40066 (see compatibility.md):
//!
//! - `GET /healthz`: 200 while the process serves;
//! - `GET /readyz`: 200 when the database answers (migrations are done before the server
//!   serves), else 503 with the reason — also once shutdown began, and while the server waits
//!   for its database to open ([`crate::waiting`]).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::App;

/// How long `/readyz` waits for the database.
pub const READY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the database's answer is taken for the current one: `/readyz` is answered
/// whatever the load (it takes no request slot), so a flood of it must not become a flood of
/// queries — one check at a time, at most one a second.
const READY_FRESH: Duration = Duration::from_secs(1);

/// The last readiness check: when, and what it found (`Err`: why not ready).
pub(crate) type LastCheck = tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>;

/// Whether the database answers: checked at most once a second, by one request at a time;
/// the others wait for its answer and take it.
async fn database_ready(app: &App) -> Result<(), String> {
    let mut last = app.inner.ready.lock().await;
    if let Some((at, found)) = &*last {
        if at.elapsed() < READY_FRESH {
            return found.clone();
        }
    }
    let found = match tokio::time::timeout(READY_TIMEOUT, app.store().ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the database does not answer: {e}")),
        Err(_) => Err(format!(
            "the database did not answer within {} s",
            READY_TIMEOUT.as_secs()
        )),
    };
    *last = Some((std::time::Instant::now(), found.clone()));
    metrics::gauge!("datacube_ready").set(if found.is_ok() { 1.0 } else { 0.0 });
    found
}

/// Keeps `datacube_ready` current for Prometheus, whether or not anything asks `/readyz`: a
/// check every 5 seconds (taken from `/readyz`'s when it checked less than a second ago).
pub(crate) async fn watch_readiness(app: App) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let _ = database_ready(&app).await;
    }
}

/// `/healthz` and `/readyz`, and `/metrics` when `metrics`.
pub(crate) fn routes(metrics: bool) -> OpenApiRouter<App> {
    let router = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz));
    if metrics {
        router.routes(routes!(crate::metrics::render))
    } else {
        router
    }
}

/// The process serves, or is ready.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    status: &'static str,
}

/// Not ready.
#[derive(Serialize, ToSchema)]
pub(crate) struct NotReady {
    /// `unavailable`.
    status: &'static str,
    /// Why: the database does not answer (`database unavailable: …` while the server waits
    /// for it to open at start), or the server is shutting down.
    reason: String,
}

/// Whether the process serves.
///
/// For liveness probes: answered whatever the load.
#[utoipa::path(get, path = "/healthz", tag = "Health",
    responses((status = 200, description = "It serves.", body = Health)))]
async fn healthz() -> Response {
    alive()
}

/// `/healthz`'s answer.
pub(crate) fn alive() -> Response {
    Json(Health { status: "ok" }).into_response()
}

/// `/readyz`'s answer when not ready, and why.
pub(crate) fn not_ready(reason: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(NotReady {
            status: "unavailable",
            reason,
        }),
    )
        .into_response()
}

/// Whether the server is ready: its database answers.
///
/// For readiness probes and compose's `service_healthy`: checked once a second at most,
/// answered whatever the load.
#[utoipa::path(get, path = "/readyz", tag = "Health",
    responses(
        (status = 200, description = "Ready.", body = Health),
        (status = 503, description = "Not ready, and why.", body = NotReady),
    ))]
async fn readyz(State(app): State<App>) -> Response {
    if app.draining() {
        // Shutting down: an orchestrator must send no more traffic here (the internal
        // listener of `--metrics-listen` still answers while open requests finish).
        return not_ready("shutting down".into());
    }
    let Err(reason) = database_ready(&app).await else {
        return Json(Health { status: "ready" }).into_response();
    };
    tracing::warn!(%reason, "not ready");
    not_ready(reason)
}
