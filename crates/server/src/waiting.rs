//! What a server answers before it serves (`serve --database-wait`): its addresses are up
//! from the start, so that while the database cannot be opened yet (or the demo account or
//! the seed are being loaded) an orchestrator sees the process alive and not ready, and no
//! client waits on a connection nobody accepts:
//!
//! - `/healthz`: 200, as ever;
//! - `/readyz`: 503 `{"status":"unavailable","reason":"database unavailable: …"}` (or what
//!   the start is doing);
//! - `/metrics` where it is served: the metrics (`datacube_ready` 0);
//! - the admin API, where it is answered: 503 `{"error":"…"}` with the same reason;
//! - anything else (the WeChat API, the pages): WeChat's `-1 system error`, as an overloaded
//!   server answers it ("busy, retry"); the metrics address answers 404, as it does anything
//!   but its three paths.
//!
//! Every answer closes its connection: the next request comes on a new one, which the server
//! answers in full once it serves.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use datacube_api::clock::Clock;
use datacube_api::{ErrCode, SuffixStyle};
use hyper::body::Incoming;
use tokio::sync::Semaphore;

use crate::admin::AdminError;
use crate::config::Config;
use crate::serve::Listeners;

/// Connections answered at once while starting; past it a new one is closed unanswered.
const CONNECTIONS: usize = 256;

/// How long one connection may take, its request head included.
const CONNECTION_TIME: Duration = Duration::from_secs(5);

/// Why the server does not serve yet: set by whoever starts it, shown by `/readyz` (and the
/// admin API) meanwhile. Cheap to clone.
#[derive(Clone)]
pub struct Starting {
    inner: Arc<Inner>,
}

struct Inner {
    reason: Mutex<String>,
    suffix: SuffixStyle,
    clock: Clock,
    /// `/metrics` on the main (and admin) address.
    metrics_on_main: bool,
}

impl Starting {
    /// A start with the server's settings and clock (for WeChat's errors), not ready for
    /// `reason`.
    pub fn new(config: &Config, clock: &Clock, reason: impl Into<String>) -> Starting {
        Starting {
            inner: Arc::new(Inner {
                reason: Mutex::new(reason.into()),
                suffix: config.suffix,
                clock: clock.clone(),
                metrics_on_main: config.metrics_on_main,
            }),
        }
    }

    /// Why the server is not ready now (`/readyz` says it).
    pub fn set_reason(&self, reason: impl Into<String>) {
        *self.inner.reason.lock().unwrap_or_else(|p| p.into_inner()) = reason.into();
    }

    fn reason(&self) -> String {
        self.inner
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What an address answers while starting.
#[derive(Clone, Copy)]
struct Role {
    /// The WeChat API's paths (the main and admin addresses; not the metrics one).
    api: bool,
    /// The admin API's paths.
    admin: bool,
    /// `/metrics`.
    metrics: bool,
}

/// Answers on every address of `listeners` as a starting server does (see the module) until
/// `until` completes, and returns what it returned. The listeners stay open (connections
/// not accepted yet wait for the server that takes them next); connections accepted meanwhile
/// close after their one answer.
pub async fn answer_while<T>(
    listeners: &Listeners,
    starting: &Starting,
    until: impl Future<Output = T>,
) -> T {
    crate::metrics::handle();
    metrics::gauge!("datacube_ready").set(0.0);
    let metrics_on_main = starting.inner.metrics_on_main;
    let mut addresses = vec![(
        &listeners.main,
        Role {
            api: true,
            admin: listeners.admin.is_none(),
            metrics: metrics_on_main,
        },
    )];
    if let Some(admin) = &listeners.admin {
        let role = Role {
            api: true,
            admin: true,
            metrics: metrics_on_main,
        };
        addresses.push((admin, role));
    }
    if let Some(metrics) = &listeners.metrics {
        let role = Role {
            api: false,
            admin: false,
            metrics: true,
        };
        addresses.push((metrics, role));
    }
    let listening: Vec<_> = addresses.iter().map(|(l, _)| *l).collect();
    let room = Arc::new(Semaphore::new(CONNECTIONS));
    // The accept loop's end is `until`'s, not a shutdown of its own.
    let never = std::future::pending::<()>();
    tokio::pin!(until, never);
    let mut turn = 0;
    loop {
        let accepted = tokio::select! {
            out = &mut until => return out,
            accepted = crate::serve::accept_any(&listening, &mut turn, never.as_mut()) => accepted,
        };
        let Some((stream, _peer, at)) = accepted else {
            continue;
        };
        // Past the bound a connection is closed unanswered (dropped).
        let Ok(permit) = room.clone().try_acquire_owned() else {
            continue;
        };
        let (starting, role) = (starting.clone(), addresses[at].1);
        let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let starting = starting.clone();
            async move { Ok::<_, Infallible>(answer(&starting, role, &req).await) }
        });
        let conn = crate::serve::connection(stream, svc, false, Some(CONNECTION_TIME));
        tokio::spawn(async move {
            let _ = tokio::time::timeout(CONNECTION_TIME, conn).await;
            drop(permit);
        });
    }
}

/// The answer to `req` on an address of `role` while starting.
async fn answer<B>(starting: &Starting, role: Role, req: &hyper::Request<B>) -> Response {
    let path = req.uri().path();
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    let mut answer = match path {
        "/healthz" if read => crate::health::alive(),
        "/readyz" if read => crate::health::not_ready(starting.reason()),
        "/metrics" if read && role.metrics => crate::metrics::render().await,
        _ if role.admin && path.starts_with("/admin/") => {
            AdminError::new(StatusCode::SERVICE_UNAVAILABLE, starting.reason()).into_response()
        }
        _ if role.api => busy(starting),
        _ => StatusCode::NOT_FOUND.into_response(),
    };
    answer
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    answer
}

/// WeChat's `-1 system error` ("busy, retry"), as the WeChat API answers it when overloaded.
fn busy(starting: &Starting) -> Response {
    let code = ErrCode::SystemError;
    let body = crate::state::error_body_at(&starting.inner.clock, starting.inner.suffix, code);
    crate::wechat::wechat_response(body, code.code())
}
