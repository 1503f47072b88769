//! Prometheus metrics at `GET /metrics` (text format 0.0.4), recorded with the `metrics`
//! crate into one process-wide recorder:
//!
//! - `datacube_requests_total{api,errcode,status}` and
//!   `datacube_request_duration_seconds{api}` (a histogram): every request; `api` is the
//!   datacube endpoint's name, or `token`, `stable_token`, `component`, `admin`, `dashboard`,
//!   `health`, `metrics`, `other`; `errcode` is WeChat's (`LogicRet`), `-` outside its API;
//! - `datacube_tokens_issued_total{kind}`: access tokens issued (`basic`, `stable`);
//! - `datacube_events_total{outcome}`: events posted to `/admin/events` — `accepted`,
//!   `duplicate`, `rejected`;
//! - `datacube_response_cache_total{result}`: datacube answers from the cache (`hit`) or
//!   the store (`miss`);
//! - `datacube_quota_refusals_total{api}`: 45009 answers (a datacube endpoint's daily quota,
//!   or `token` / `stable_token`'s);
//! - `datacube_secret_checks_total{verdict}`: secret checks, `right`, `wrong` or `busy` (the
//!   queue of argon2 checks of older versions full);
//! - `datacube_connections_open`, `datacube_connections_closed_total{reason}`: connections the
//!   edge closed (`header_timeout`, `body_timeout`, `idle_timeout`, `evicted`) or refused
//!   (`full`, `address_full`);
//! - `datacube_ingest_seconds`: a `POST /admin/events` batch stored and its statistics
//!   recomputed (a histogram);
//! - `datacube_db_wait_seconds{op}`: how long a `read` took to get a connection, or a `write`
//!   its turn (opening a connection and the round trips of taking the write lock included;
//!   recorded by the store);
//! - `datacube_sync_runs_total{mirror,outcome}`, `datacube_sync_rows_total{mirror}` and
//!   `datacube_sync_last_success_timestamp_seconds{mirror}`: `serve --mirror`'s runs;
//! - `push` and `proxy` (with `--metrics-listen`): `datacube_callbacks_total{source,verdict}`,
//!   `datacube_callback_seconds{source}`, `datacube_push_messages_total{outcome}`,
//!   `datacube_proxy_refused_total{reason}` (`datacube_push::metrics`).
//!
//! Labels come from fixed sets, never from what a client sends, so a client cannot make the
//! number of series grow.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first use (`None` if another recorder was).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                // Every other histogram: waits, ingest batches, callbacks (WeChat's limit is 5 s).
                .set_buckets(&[
                    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ])
                .ok()?
                .set_buckets_for_metric(
                    Matcher::Full("datacube_request_duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0,
                    ],
                )
                .ok()?
                .install_recorder()
                .ok()?;
            datacube_store::record_waits();
            // Histograms are folded in by upkeep; run it now and then.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("datacube-metrics".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// Serves `GET /metrics` alone on `listener`, for the commands that are not `serve`
/// (`push`, `proxy`: `--metrics-listen`); runs until the process ends.
pub async fn serve_alone(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    handle();
    let router = axum::Router::new().route("/metrics", axum::routing::get(render));
    axum::serve(listener, router).await
}

/// The metrics, in Prometheus' text format.
///
/// Requests, answers by errcode, tokens, connections, ingestion, the database's waits
/// (`serve --metrics-listen` moves them to an address of their own).
#[utoipa::path(get, path = "/metrics", tag = "Health",
    responses(
        (status = 200, description = "The metrics.", content_type = "text/plain; version=0.0.4", body = String),
        (status = 503, description = "The metrics recorder could not start.", content_type = "text/plain", body = String),
    ))]
pub(crate) async fn render() -> Response {
    match handle() {
        Some(h) => (
            [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            h.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no metrics recorder in this process\n",
        )
            .into_response(),
    }
}

/// What part of the API a path is, for the `api` label.
pub(crate) fn api_of(path: &str) -> &'static str {
    if let Some(name) = path.strip_prefix("/datacube/") {
        return datacube_api::Endpoint::from_name(name).map_or("other", |e| e.name());
    }
    match path {
        "/cgi-bin/token" => "token",
        "/cgi-bin/stable_token" => "stable_token",
        "/healthz" | "/readyz" => "health",
        "/metrics" => "metrics",
        "/" => "dashboard",
        "/openapi.json" | "/docs" => "reference",
        _ if path.starts_with("/docs/") => "reference",
        _ if path.starts_with("/cgi-bin/component/") => "component",
        _ if path.starts_with("/admin/") => "admin",
        _ if path.starts_with("/dashboard/") => "dashboard",
        _ => "other",
    }
}

/// A request's label values: api, errcode, HTTP status.
type RequestLabels = (&'static str, Option<i32>, u16);

thread_local! {
    /// Each thread's handles, by label values: looking a metric up by its labels costs more
    /// than a request's answer from the cache (the label sets are small and fixed).
    static REQUESTS: RefCell<HashMap<RequestLabels, Counter>> = RefCell::default();
    static LATENCIES: RefCell<HashMap<&'static str, Histogram>> = RefCell::default();
}

/// Records one request.
pub(crate) fn request(api: &'static str, errcode: Option<i32>, status: u16, took: Duration) {
    REQUESTS.with(|requests| {
        requests
            .borrow_mut()
            .entry((api, errcode, status))
            .or_insert_with(|| {
                let errcode = errcode.map_or_else(|| "-".to_owned(), |c| c.to_string());
                metrics::counter!(
                    "datacube_requests_total",
                    "api" => api,
                    "errcode" => errcode,
                    "status" => status.to_string()
                )
            })
            .increment(1);
    });
    LATENCIES.with(|latencies| {
        latencies
            .borrow_mut()
            .entry(api)
            .or_insert_with(
                || metrics::histogram!("datacube_request_duration_seconds", "api" => api),
            )
            .record(took.as_secs_f64());
    });
}

/// Counts a datacube answer from the response cache (`hit`) or from the store.
pub(crate) fn response_cache(hit: bool) {
    static HIT: LazyLock<Counter> =
        LazyLock::new(|| metrics::counter!("datacube_response_cache_total", "result" => "hit"));
    static MISS: LazyLock<Counter> =
        LazyLock::new(|| metrics::counter!("datacube_response_cache_total", "result" => "miss"));
    let counter: &Counter = if hit { &HIT } else { &MISS };
    counter.increment(1);
}
