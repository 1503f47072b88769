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
//! - `datacube_resident_bytes`: statistics held in memory to answer ranges
//!   (`--stats-memory`);
//! - `datacube_quota_refusals_total{api}`: 45009 answers (a datacube endpoint's daily quota,
//!   or `token` / `stable_token`'s);
//! - `datacube_secret_checks_total{verdict}`: secret checks, `right`, `wrong` or `busy` (the
//!   queue of argon2 checks of older versions full);
//! - `datacube_connections_open`, `datacube_connections_closed_total{reason}`: connections the
//!   edge closed (`header_timeout`, `body_timeout`, `idle_timeout`, `evicted`) or refused
//!   (`full`, `address_full`);
//! - `datacube_ingest_seconds`: a `POST /admin/events` batch stored, its statistics pending
//!   (a histogram);
//! - `datacube_recompute_seconds{trigger}`: pending statistics recomputed, before an `answer`,
//!   as their day became `readable`, or `all` of them (`push`, `proxy`) — a histogram,
//!   recorded by the store;
//! - `datacube_db_wait_seconds{op}`: how long a `read` took to get a connection, or a `write`
//!   its turn (opening a connection and the round trips of taking its accounts' locks included;
//!   recorded by the store);
//! - `datacube_ready`: 1 when `/readyz` would answer ready, checked every 5 seconds;
//! - `datacube_sync_runs_total{mirror,outcome}`, `datacube_sync_rows_total{mirror}` (rows new
//!   or changed), `datacube_sync_last_success_timestamp_seconds{mirror}`, and per account of
//!   the configuration `datacube_sync_account_last_success_timestamp_seconds{mirror,appid}` and
//!   `datacube_sync_account_outcome{mirror,appid,outcome}`: `serve --mirror`'s runs, present
//!   at zero from the start;
//! - `push` and `proxy` (with `--metrics-listen`): `datacube_callbacks_total{source,verdict}`,
//!   `datacube_callback_seconds{source}`, `datacube_push_messages_total{outcome}`,
//!   `datacube_proxy_refused_total{reason}` (`datacube-push`'s `metrics`).
//!
//! Labels come from fixed sets, never from what a client sends, so a client cannot make the
//! number of series grow. Every family has its `# HELP`; the series of fixed label sets are
//! there at zero from the first scrape. `deploy/prometheus/` has alerting rules on them.

use std::cell::RefCell;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rustc_hash::FxHashMap;

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
            describe();
            datacube_store::record_waits();
            // Histograms are folded in by upkeep; run it now and then.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("datacube-metrics".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    fold();
                    upkeep.run_upkeep();
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// `# HELP` for every family, and the series of fixed label sets present from the first
/// scrape at zero — so that `increase()` sees the first event and an alert on a series that
/// never moved can fire.
fn describe() {
    describe_serving();
    describe_store();
    describe_mirror();
    describe_push();
    zero_series();
}

/// `# HELP` for the families of serving: requests, tokens, answers, quotas, secrets and
/// connections.
fn describe_serving() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "datacube_requests_total",
        "Requests answered, by API, WeChat errcode (- outside its API) and HTTP status."
    );
    describe_histogram!(
        "datacube_request_duration_seconds",
        Unit::Seconds,
        "Time to answer a request, by API."
    );
    describe_counter!(
        "datacube_tokens_issued_total",
        "Access tokens issued, by kind (basic, stable)."
    );
    describe_counter!(
        "datacube_events_total",
        "Events posted to /admin/events, by outcome (accepted, duplicate, rejected)."
    );
    describe_counter!(
        "datacube_response_cache_total",
        "Datacube answers kept (hit: the response cache's or an event loop's copy) or rendered (miss: from statistics held in memory or the store)."
    );
    describe_gauge!(
        "datacube_resident_bytes",
        Unit::Bytes,
        "Statistics held in memory to answer ranges without reading the database."
    );
    describe_counter!(
        "datacube_quota_refusals_total",
        "45009 answers: a daily quota used up, by API (an endpoint, token, stable_token)."
    );
    describe_counter!(
        "datacube_secret_checks_total",
        "AppSecret checks, by verdict (right, wrong, busy)."
    );
    describe_gauge!(
        "datacube_connections_open",
        "Connections open to the server."
    );
    describe_counter!(
        "datacube_connections_closed_total",
        "Connections the edge closed or refused, by reason."
    );
}

/// `# HELP` for the families of the store: ingestion, recomputing, waits and readiness.
fn describe_store() {
    use metrics::{describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        "datacube_ingest_seconds",
        Unit::Seconds,
        "A POST /admin/events batch stored, its statistics pending."
    );
    describe_histogram!(
        "datacube_recompute_seconds",
        Unit::Seconds,
        "Pending statistics recomputed: before an answer, as their day became readable, or all (push, proxy)."
    );
    describe_histogram!(
        "datacube_db_wait_seconds",
        Unit::Seconds,
        "Time a read waited for a connection or a write for its turn, by op."
    );
    describe_gauge!(
        "datacube_ready",
        "1 when the server is ready (its database answers, as /readyz says), 0 when not."
    );
}

/// `# HELP` for the families of `serve --mirror`: runs, rows, and each account's last run.
fn describe_mirror() {
    use metrics::{describe_counter, describe_gauge, Unit};
    describe_counter!(
        "datacube_sync_runs_total",
        "Runs of serve --mirror, by mirror and outcome (ok, partial, failed, interrupted, credentials)."
    );
    describe_counter!(
        "datacube_sync_rows_total",
        "Statistics rows a mirror stored new or changed, by mirror (a row fetched again unchanged is not counted)."
    );
    describe_gauge!(
        "datacube_sync_last_success_timestamp_seconds",
        Unit::Seconds,
        "When a mirror's last complete run ended (Unix seconds); 0 until it has one."
    );
    describe_gauge!(
        "datacube_sync_account_last_success_timestamp_seconds",
        Unit::Seconds,
        "When each mirrored account was last mirrored completely (Unix seconds); 0 until it was."
    );
    describe_gauge!(
        "datacube_sync_account_outcome",
        "Each mirrored account's last outcome: 1 on the series of that outcome (never, ok, partial, failed, interrupted, credentials), 0 on the others."
    );
}

/// `# HELP` for the families of `push` and `proxy`: callbacks judged, messages sent,
/// requests refused, pushes not recorded.
fn describe_push() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(
        "datacube_callbacks_total",
        "Pushes to a developer's server judged, by source and verdict."
    );
    describe_histogram!(
        "datacube_callback_seconds",
        Unit::Seconds,
        "Time a developer's server took to answer a push, by source."
    );
    describe_counter!(
        "datacube_push_messages_total",
        "Messages datacube push sent, by outcome."
    );
    describe_counter!(
        "datacube_proxy_refused_total",
        "Requests datacube proxy refused, by reason."
    );
    describe_counter!(
        "datacube_recording_refused_total",
        "Pushes not recorded because their account was removed."
    );
}

/// The series of fixed label sets, at zero from the first scrape.
fn zero_series() {
    for kind in ["basic", "stable"] {
        metrics::counter!("datacube_tokens_issued_total", "kind" => kind).absolute(0);
    }
    for outcome in ["accepted", "duplicate", "rejected"] {
        metrics::counter!("datacube_events_total", "outcome" => outcome).absolute(0);
    }
    for result in ["hit", "miss"] {
        metrics::counter!("datacube_response_cache_total", "result" => result).absolute(0);
    }
    let apis = datacube_api::Endpoint::ALL
        .iter()
        .map(|e| e.name())
        .chain(["token", "stable_token"]);
    for api in apis {
        metrics::counter!("datacube_quota_refusals_total", "api" => api).absolute(0);
    }
    for verdict in crate::gate::VERDICTS {
        metrics::counter!("datacube_secret_checks_total", "verdict" => verdict).absolute(0);
    }
    for reason in crate::edge::CLOSE_REASONS {
        metrics::counter!("datacube_connections_closed_total", "reason" => reason).absolute(0);
    }
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
            {
                fold();
                h.render()
            },
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

/// Requests counted on one thread and not added to the shared metrics yet: every request
/// adding to shared counters and histograms would write cache lines both event loops write
/// (issue 32). Added every [`FOLD_EVERY`] requests of the thread, at every scrape, and by the
/// upkeep every 5 s, so a scrape sees every request answered before it.
/// (Its maps' keys are ours — a fixed set of label values — so hashed by the fast hasher, and
/// kept with their room when added.)
#[derive(Default)]
struct Shard {
    requests: FxHashMap<RequestLabels, u64>,
    latencies: FxHashMap<&'static str, Vec<f64>>,
    /// Response cache hits and misses.
    cache: [u64; 2],
    counted: usize,
}

/// Requests a thread counts before adding them to the shared metrics.
const FOLD_EVERY: usize = 512;

/// Every thread's shard.
static SHARDS: Mutex<Vec<Arc<Mutex<Shard>>>> = Mutex::new(Vec::new());

thread_local! {
    static SHARD: Arc<Mutex<Shard>> = {
        let shard = Arc::new(Mutex::new(Shard::default()));
        lock(&SHARDS).push(shard.clone());
        shard
    };
    /// Each thread's handles, by label values: looking a metric up by its labels costs more
    /// than a request's answer from the cache (the label sets are small and fixed).
    static REQUESTS: RefCell<FxHashMap<RequestLabels, Counter>> = RefCell::default();
    static LATENCIES: RefCell<FxHashMap<&'static str, Histogram>> = RefCell::default();
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts on this thread's shard (its lock is this thread's alone but at a fold).
fn counting(count: impl FnOnce(&mut Shard)) {
    // (A thread past its end counts nothing: nothing is answered then.)
    let _ = SHARD.try_with(|shard| {
        let mut shard = lock(shard);
        count(&mut shard);
        shard.counted += 1;
        if shard.counted >= FOLD_EVERY {
            // Added under the shard's lock: a scrape folding meanwhile waits for it.
            add(&mut shard);
        }
    });
}

/// Adds what a shard counted to the shared metrics, and empties it.
fn add(counted: &mut Shard) {
    counted.counted = 0;
    let _ = REQUESTS.try_with(|requests| {
        let mut requests = requests.borrow_mut();
        for ((api, errcode, status), n) in counted.requests.drain() {
            let counter = requests.entry((api, errcode, status)).or_insert_with(|| {
                let errcode = errcode.map_or_else(|| "-".to_owned(), |c| c.to_string());
                metrics::counter!(
                    "datacube_requests_total",
                    "api" => api,
                    "errcode" => errcode,
                    "status" => status.to_string()
                )
            });
            counter.increment(n);
        }
    });
    let _ = LATENCIES.try_with(|latencies| {
        let mut latencies = latencies.borrow_mut();
        for (api, took) in counted.latencies.iter_mut() {
            if took.is_empty() {
                continue;
            }
            let histogram = latencies.entry(api).or_insert_with(
                || metrics::histogram!("datacube_request_duration_seconds", "api" => *api),
            );
            for seconds in took.drain(..) {
                histogram.record(seconds);
            }
        }
    });
    static HIT: LazyLock<Counter> =
        LazyLock::new(|| metrics::counter!("datacube_response_cache_total", "result" => "hit"));
    static MISS: LazyLock<Counter> =
        LazyLock::new(|| metrics::counter!("datacube_response_cache_total", "result" => "miss"));
    let [hits, misses] = std::mem::take(&mut counted.cache);
    if hits > 0 {
        HIT.increment(hits);
    }
    if misses > 0 {
        MISS.increment(misses);
    }
}

/// Adds what every thread counted to the shared metrics (before a scrape), and forgets the
/// shards of threads that ended.
pub(crate) fn fold() {
    let shards: Vec<_> = {
        let mut all = lock(&SHARDS);
        let shards = all.clone();
        // A live thread's shard is also referenced by the thread and by `shards`.
        all.retain(|shard| Arc::strong_count(shard) > 2);
        shards
    };
    for shard in shards {
        add(&mut lock(&shard));
    }
}

/// Records one request.
pub(crate) fn request(api: &'static str, errcode: Option<i32>, status: u16, took: Duration) {
    counting(|shard| {
        *shard.requests.entry((api, errcode, status)).or_default() += 1;
        shard
            .latencies
            .entry(api)
            .or_default()
            .push(took.as_secs_f64());
    });
}

/// Counts a datacube answer kept (`hit`: the response cache's or a loop's) or rendered.
pub(crate) fn response_cache(hit: bool) {
    // Added with the thread's requests, or at the next scrape.
    let _ = SHARD.try_with(|shard| lock(shard).cache[usize::from(!hit)] += 1);
}
