//! Health checks for orchestrators — compose's `service_healthy`, Kubernetes probes,
//! testcontainers' wait strategies, `datacube healthcheck`. They are not WeChat's paths, so
//! they answer plain HTTP statuses instead of WeChat's 40066 (see compatibility.md):
//!
//! - `GET /healthz`: 200 while the process serves;
//! - `GET /readyz`: 200 when the database answers (migrations are done before the server
//!   listens), else 503 with the reason — also once shutdown began.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

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
    found
}

/// `/healthz` and `/readyz`, and `/metrics` when `metrics`.
pub(crate) fn routes(metrics: bool) -> Router<App> {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if metrics {
        router.route("/metrics", get(crate::metrics::render))
    } else {
        router
    }
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(app): State<App>) -> Response {
    if app.draining() {
        // Shutting down: an orchestrator must send no more traffic here (the internal
        // listener of `--metrics-listen` still answers while open requests finish).
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": "shutting down"})),
        )
            .into_response();
    }
    let Err(reason) = database_ready(&app).await else {
        return Json(json!({"status": "ready"})).into_response();
    };
    tracing::warn!(%reason, "not ready");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "unavailable", "reason": reason})),
    )
        .into_response()
}
