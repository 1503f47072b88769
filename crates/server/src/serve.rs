//! The accept loop: bounded connections, a bounded number of requests in flight, header and
//! idle timeouts, graceful shutdown. Overload is answered with WeChat's `-1 system error`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::header::CONNECTION;
use axum::http::HeaderValue;
use axum::response::Response;
use axum::Router;
use datacube_api::ErrCode;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use crate::state::App;

/// Connections past `max_connections` that still get a `-1` answer before being closed.
const OVERFLOW_CONNECTIONS: usize = 64;

/// The whole HTTP application: the admin API and, for every other path, the WeChat API.
pub fn router(app: App) -> Router {
    crate::admin::routes()
        .merge(crate::dashboard::routes())
        .merge(crate::health::routes(app.config().metrics_on_main))
        .fallback(crate::wechat::dispatch)
        .with_state(app)
}

/// Decrements the in-flight count when a request is done, however it ends.
struct InFlight(App);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inner.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn overloaded(app: &App) -> Response {
    let mut resp = app.wechat_error(ErrCode::SystemError);
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Serves `/metrics`, `/healthz` and `/readyz` of `app` on an address of their own
/// (`serve --metrics-listen`: a port Prometheus and the orchestrator reach, the WeChat API's
/// kept for clients), until `shutdown` completes.
pub async fn serve_internal(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = crate::health::routes(true).with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish
/// (up to the configured grace period).
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = app.config().limits.clone();
    let router = router(app.clone());
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let overflow = Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS));
    let watcher = tokio::spawn(watch_changes(app.clone()));
    let days = tokio::spawn(roll_days(app.clone()));
    let tickets = tokio::spawn(crate::component::push_tickets(app.clone()));
    tokio::pin!(shutdown);
    loop {
        let Some((stream, peer)) =
            datacube_push::http1::accept_until(&listener, shutdown.as_mut()).await
        else {
            break;
        };
        if let Ok(permit) = connections.clone().try_acquire_owned() {
            let svc = service(app.clone(), router.clone(), peer.ip());
            let conn = connection(&limits, stream, svc, true);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                drop(permit);
            });
        } else if let Ok(permit) = overflow.clone().try_acquire_owned() {
            tracing::warn!(%peer, "connection limit reached; answering -1 and closing");
            let app = app.clone();
            let svc = hyper::service::service_fn(move |_req: hyper::Request<Incoming>| {
                let resp = overloaded(&app);
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = connection(&limits, stream, svc, false);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                drop(permit);
            });
        } else {
            tracing::warn!(%peer, "connection limit reached; closing at once");
            drop(stream);
        }
    }
    app.start_draining();
    drop(listener);
    watcher.abort();
    days.abort();
    tickets.abort();
    tracing::info!("shutting down: no new connections; waiting for open requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!("grace period over; closing the remaining connections");
        }
    }
    Ok(())
}

/// Polls the store's change log and retires the cached answers of accounts whose statistics
/// changed — also when another process (the CLI, another instance) wrote them.
async fn watch_changes(app: App) {
    // Until the log has been read once, every change is unknown: the first read retires the
    // answers of every account it lists.
    let mut seen: Option<i64> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        match app.store().changes_since(seen.unwrap_or(0)).await {
            Ok(changes) => {
                let mut last = seen.unwrap_or(0);
                for (appid, seq) in changes {
                    app.statistics_changed(&appid);
                    last = last.max(seq);
                }
                seen = Some(last);
            }
            Err(e) => tracing::warn!(error = %e, "reading the change log failed"),
        }
    }
}

/// Keeps computed statistics complete as days go by: whenever the China day (by the server's
/// clock) changes, accounts with events get their daily follower rows up to yesterday, also
/// for days without any event; and statistics left pending (events stored by `push` or
/// `proxy` whose periods were not recomputed yet, say after a crash) are recomputed.
async fn roll_days(app: App) {
    let mut filled: Option<jiff::civil::Date> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let yesterday =
            datacube_api::date::add_days(datacube_api::date::china_date(app.clock().unix()), -1);
        // Statistics left pending by a recorder that stopped before recomputing them.
        if let Err(e) = app.store().flush_pending(yesterday).await {
            tracing::warn!(error = %e, "recomputing pending statistics failed");
        }
        if filled == Some(yesterday) {
            continue;
        }
        match app.store().carry_forward(yesterday).await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(accounts = n, %yesterday, "daily follower rows extended");
                }
                filled = Some(yesterday);
            }
            Err(e) => {
                tracing::warn!(error = %e, "extending daily follower rows failed");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

fn connection<S>(
    limits: &crate::config::Limits,
    stream: TcpStream,
    svc: S,
    keep_alive: bool,
) -> http1::Connection<TokioIo<TcpStream>, S>
where
    S: hyper::service::Service<hyper::Request<Incoming>, Response = Response, Error = Infallible>,
{
    http1::Builder::new()
        .timer(TokioTimer::new())
        // hyper restarts this timer whenever a connection waits for its next request, so it is
        // both the header timeout and the keep-alive idle timeout.
        .header_read_timeout(limits.idle_timeout)
        .title_case_headers(true)
        .keep_alive(keep_alive)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), svc)
}

fn service(
    app: App,
    router: Router,
    client: std::net::IpAddr,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let app = app.clone();
        let router = router.clone();
        async move {
            let before = app.inner.in_flight.fetch_add(1, Ordering::Relaxed);
            let _guard = InFlight(app.clone());
            if before >= app.config().limits.max_in_flight {
                return Ok(overloaded(&app));
            }
            let started = Instant::now();
            let api = crate::metrics::api_of(req.uri().path());
            let logged = (app.config().request_log
                && tracing::enabled!(target: "datacube::request", tracing::Level::INFO))
            .then(|| (req.method().clone(), req.uri().clone()));
            let answer = answer(app.clone(), router, client, req).await;
            let took = started.elapsed();
            let errcode = answer
                .headers()
                .get("logicret")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            crate::metrics::request(api, errcode, answer.status().as_u16(), took);
            if let Some((method, uri)) = logged {
                log_request(&method, &uri, &answer, took);
            }
            Ok(answer)
        }
    })
}

/// Answers one request. The WeChat API is the hot path: straight to its handler; the router
/// only for the admin API, the dashboard and the health checks.
async fn answer(
    app: App,
    router: Router,
    client: std::net::IpAddr,
    req: hyper::Request<Incoming>,
) -> Response {
    let path = req.uri().path();
    let page = (path == "/"
        || path.starts_with("/dashboard/")
        || path == "/healthz"
        || path == "/readyz"
        || (path == "/metrics" && app.config().metrics_on_main))
        && matches!(*req.method(), hyper::Method::GET | hyper::Method::HEAD);
    if path.starts_with("/admin/") || page {
        match router.oneshot(req).await {
            Ok(answer) => answer,
            Err(never) => match never {},
        }
    } else {
        // The client's address, for the secret checks' throttles.
        let answer = crate::wechat::dispatch_request(app, req.map(axum::body::Body::new));
        crate::gate::CLIENT.scope(client, answer).await
    }
}

/// The request log: one line per request — never the query (it carries the access token)
/// nor any header (the admin token).
fn log_request(method: &hyper::Method, uri: &hyper::Uri, answer: &Response, took: Duration) {
    let path = uri.path();
    // A hostile client's path is not worth more than this.
    let path = match path.char_indices().nth(200) {
        Some((at, _)) => &path[..at],
        None => path,
    };
    let endpoint = path
        .strip_prefix("/datacube/")
        .and_then(datacube_api::Endpoint::from_name)
        .map_or("-", |e| e.name());
    // A token request names its account in the query (only a plausible appid is shown).
    let asked = (path == "/cgi-bin/token")
        .then(|| uri.query())
        .flatten()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "appid")
                .map(|(_, v)| v.into_owned())
        })
        .filter(|a| {
            (1..=64).contains(&a.len())
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    let appid = match answer.extensions().get::<crate::wechat::AnsweredFor>() {
        Some(a) => a.0.as_str(),
        None => asked.as_deref().unwrap_or("-"),
    };
    let errcode = answer
        .headers()
        .get("logicret")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info!(
        target: "datacube::request",
        %method,
        path,
        appid,
        endpoint,
        errcode,
        status = answer.status().as_u16(),
        ms = %format_args!("{:.3}", took.as_secs_f64() * 1000.0),
        "request"
    );
}
