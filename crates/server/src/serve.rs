//! The accept loop and each request's way through the edge ([`crate::edge`]: bounded
//! connections and requests, header, body and idle deadlines), graceful shutdown. Overload is
//! answered with WeChat's `-1 system error`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tower::ServiceExt as _;
use utoipa_axum::router::OpenApiRouter;

use crate::config::Limits;
use crate::edge::{Admitted, Conn, Edge, Phase, Prefetched, Sent, Watched};
use crate::state::App;

/// Connections past `max_connections` that still get a `-1` answer before being closed.
const OVERFLOW_CONNECTIONS: usize = 64;

/// The whole HTTP application: the admin API, health checks, the dashboard and the API's
/// description, and for every other path the WeChat API.
pub fn router(app: App) -> Router {
    router_for(app, true)
}

/// The router of an address: [`router`], without the admin API's routes unless `admin` (the
/// main address when `serve --admin-listen` gave the admin API one of its own: an admin path
/// is then answered as every path the router does not know, by the WeChat API's 40066, and
/// the dashboard there offers no admin sign-in).
fn router_for(app: App, admin: bool) -> Router {
    let (router, _) = public_routes(app.config().metrics_on_main).split_for_parts();
    let router = router.fallback(crate::wechat::dispatch);
    let router = if admin {
        router.merge(crate::admin::router(&app))
    } else {
        router.layer(axum::Extension(crate::dashboard::AdminElsewhere))
    };
    router.with_state(app)
}

/// The routes of [`router`] with their descriptions, for the API's description (`/metrics`
/// when `metrics`).
pub(crate) fn described_routes(metrics: bool) -> OpenApiRouter<App> {
    crate::admin::routes().merge(public_routes(metrics))
}

/// [`described_routes`] but the admin API's.
fn public_routes(metrics: bool) -> OpenApiRouter<App> {
    crate::dashboard::routes()
        .merge(crate::health::routes(metrics))
        .merge(crate::openapi::routes())
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
    let (router, _) = crate::health::routes(true).split_for_parts();
    let router = router.with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Keeps the SQL views' last ready day (`docs/sql.md`) on the emulated clock's — recorded when
/// it changes (the clock set, a day gone by), looked at every 5 seconds — or on the database
/// server's own when the clock is real.
async fn view_clock(app: App) {
    let mut written: Option<Option<jiff::civil::Date>> = None;
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let clock = app.clock();
        let now = (!clock.is_real()).then(|| datacube_api::date::last_ready_day(clock.unix()));
        if written != Some(now) {
            match app.store().set_view_clock(now).await {
                Ok(()) => written = Some(now),
                Err(e) => tracing::warn!(error = %e, "cannot record the views' clock"),
            }
        }
    }
}

/// The addresses a server answers on.
pub struct Listeners {
    /// `--listen`: the WeChat API, and everything else that has no address of its own.
    pub main: TcpListener,
    /// `--admin-listen`: the admin API, on this address only; it answers everything the main
    /// address does too (the dashboard's account sign-in reads the WeChat API where the page
    /// came from), and the main address then answers admin paths as a path it does not know.
    pub admin: Option<TcpListener>,
    /// `--metrics-listen`: `/metrics`, `/healthz` and `/readyz` ([`serve_internal`]); with
    /// [`Config::metrics_on_main`](crate::config::Config::metrics_on_main) false, `/metrics`
    /// answers there only.
    pub metrics: Option<TcpListener>,
}

impl Listeners {
    /// The main address alone.
    pub fn main(listener: TcpListener) -> Listeners {
        Listeners {
            main: listener,
            admin: None,
            metrics: None,
        }
    }
}

/// An address the accept loop takes connections on, and how it answers them.
struct Address {
    listener: TcpListener,
    router: Router,
    /// Whether it answers the admin API.
    admin: bool,
}

/// The next connection on any of `listeners` (with `TCP_NODELAY` set) and which one it came
/// to, or `None` once `shutdown` completes. Each call looks first at the listener after the
/// one `turn` names, so that a flood on one address never keeps another's connections waiting.
/// A failed accept — out of file descriptors and the like — is logged and tried again 50 ms
/// later instead of spinning (as `datacube proxy`'s accept loop does).
pub(crate) async fn accept_any<F: Future<Output = ()>>(
    listeners: &[&TcpListener],
    turn: &mut usize,
    mut shutdown: std::pin::Pin<&mut F>,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr, usize)> {
    let n = listeners.len();
    loop {
        let first = *turn % n.max(1);
        let accepted = std::future::poll_fn(|cx| {
            for k in 0..n {
                let i = (first + k) % n;
                if let std::task::Poll::Ready(r) = listeners[i].poll_accept(cx) {
                    return std::task::Poll::Ready((i, r));
                }
            }
            std::task::Poll::Pending
        });
        tokio::select! {
            (i, accepted) = accepted => match accepted {
                Ok((stream, peer)) => {
                    *turn = i + 1;
                    let _ = stream.set_nodelay(true);
                    return Some((stream, peer, i));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => return None,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes: [`serve_on`] with the main address
/// alone.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_on(Listeners::main(listener), app, shutdown).await
}

/// Serves `app` on `listeners` until `shutdown` completes, then lets open requests finish
/// (up to the configured grace period) on every address. What each client may take is kept by
/// [`Edge`], one for all the addresses: the admin address's connections count in the same
/// bounds as the others.
///
/// Connections are accepted here (the edge admits or refuses each, as before any request of
/// it is read) and each admitted one is handed to one of
/// [`Config::event_loops`](crate::config::Config::event_loops) event loops, in turn: a thread
/// with a single-threaded runtime that keeps its connections, as nginx's workers do — a
/// request is read, answered and written on one thread, without waking another. Accepting
/// stays on the caller's runtime, apart from the loops, so that a flood of connections busy
/// on the loops never delays the accepting of others. The WeChat API is answered on the loop;
/// everything else the router answers (the admin API, the dashboard) runs on the caller's
/// runtime, so that a long import never holds a loop's other connections.
pub async fn serve_on(
    listeners: Listeners,
    app: App,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let Listeners {
        main,
        admin,
        metrics,
    } = listeners;
    let addresses = addresses(&app, main, admin);
    // Up while open requests finish (its `/readyz` says "shutting down"); ended with the loops.
    let internal = metrics.map(|listener| serve_metrics(listener, app.clone()));
    let server = Server::start(app)?;
    let tasks = Tasks::start(&server);
    server.accept(&addresses, shutdown).await;
    server.stop(addresses, tasks, internal).await;
    Ok(())
}

/// The addresses connections are accepted on, each with its router: the main one, and the
/// admin API's own when `serve --admin-listen` gave it one (the main address then answers no
/// admin path).
fn addresses(app: &App, main: TcpListener, admin: Option<TcpListener>) -> Vec<Address> {
    let mut addresses = vec![Address {
        listener: main,
        router: router_for(app.clone(), admin.is_none()),
        admin: admin.is_none(),
    }];
    if let Some(listener) = admin {
        addresses.push(Address {
            listener,
            router: router(app.clone()),
            admin: true,
        });
    }
    addresses
}

/// The metrics address ([`serve_internal`]), served by a task of its own until it is aborted.
fn serve_metrics(listener: TcpListener, app: App) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = serve_internal(listener, app, std::future::pending()).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    })
}

/// A server while it serves: what the accept loop hands each connection, and what its
/// shutdown ends.
struct Server {
    app: App,
    limits: Limits,
    edge: Arc<Edge>,
    /// Turned true at shutdown, for the connections handed to hyper (the edge closes the
    /// front's waiting ones); its receivers, one per connection, tell when all have ended.
    drain: watch::Sender<bool>,
    /// Room for the connections past the edge's bounds that still get an answer.
    overflow: Arc<Semaphore>,
    loops: EventLoops,
    /// The caller's runtime, where the router's answers run.
    main: tokio::runtime::Handle,
}

impl Server {
    /// The edge and the event loops of `app`, on the caller's runtime.
    fn start(app: App) -> std::io::Result<Server> {
        let limits = app.config().limits.clone();
        let (drain, _) = watch::channel(false);
        let edge = Edge::new(limits.clone());
        let overflow = Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS));
        let loops = EventLoops::start(app.config().event_loops())?;
        Ok(Server {
            app,
            limits,
            edge,
            drain,
            overflow,
            loops,
            main: tokio::runtime::Handle::current(),
        })
    }

    /// Takes the connections of every address, in turn, until `shutdown` completes: each
    /// admitted by the edge goes to an event loop, the others are answered as overflow.
    async fn accept(&self, addresses: &[Address], shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let listening: Vec<&TcpListener> = addresses.iter().map(|a| &a.listener).collect();
        let mut turn = 0;
        while let Some((stream, peer, at)) =
            accept_any(&listening, &mut turn, shutdown.as_mut()).await
        {
            let address = &addresses[at];
            match self.edge.admit(peer.ip()) {
                Ok(admitted) => self.hand_to_loop(address, stream, peer, admitted),
                Err(_) => self.answer_overflow(address, stream),
            }
        }
    }

    /// Hands a connection the edge admitted to the next event loop, which serves it
    /// ([`crate::front::serve`]) until it ends or the edge's limits close it.
    fn hand_to_loop(
        &self,
        address: &Address,
        stream: TcpStream,
        peer: SocketAddr,
        admitted: Admitted,
    ) {
        // Registered again on the loop's own reactor: its readiness wakes that thread.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "an accepted connection failed");
                return;
            }
        };
        let shared = Shared {
            app: self.app.clone(),
            router: address.router.clone(),
            admin: address.admin,
            main: self.main.clone(),
            conn: admitted.0.clone(),
        };
        let drain = self.drain.subscribe();
        self.loops.next().spawn(async move {
            let Ok(stream) = TcpStream::from_std(stream) else {
                return;
            };
            let conn = shared.conn.clone();
            let io = Watched {
                io: stream,
                conn: conn.clone(),
                unread: bytes::Bytes::new(),
            };
            tokio::select! {
                () = crate::front::serve(io, Arc::new(shared), drain) => {}
                why = conn.must_close() => {
                    tracing::debug!(%peer, reason = why.label(), "connection closed by the limits");
                }
            }
            drop(admitted);
        });
    }

    /// A connection the edge refused, every connection (of the server, or of this address)
    /// being busy with a request: a few get an answer — the health checks theirs, the rest
    /// `-1` — and are closed; past them, it is closed at once.
    fn answer_overflow(&self, address: &Address, stream: TcpStream) {
        let Ok(permit) = self.overflow.clone().try_acquire_owned() else {
            return;
        };
        let (app, router) = (self.app.clone(), address.router.clone());
        let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let (app, router) = (app.clone(), router.clone());
            async move {
                if is_health(&req) {
                    return Ok::<_, Infallible>(route(router, req).await);
                }
                Ok(overloaded(&app))
            }
        });
        let conn = connection(stream, svc, false, Some(self.limits.header_timeout));
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
            drop(permit);
        });
    }

    /// Shuts down once accepting has ended: not ready, the addresses closed and the tasks
    /// ended, open requests given the grace period, then the loops stopped.
    async fn stop(self, addresses: Vec<Address>, tasks: Tasks, internal: Option<JoinHandle<()>>) {
        let Server {
            app,
            limits,
            edge,
            drain,
            loops,
            ..
        } = self;
        app.start_draining();
        tasks.readiness.abort();
        tasks.view_clock.abort();
        // An emulated clock's day leaves with the server: the views follow the real one again.
        if !app.clock().is_real() {
            let _ = app.store().set_view_clock(None).await;
        }
        metrics::gauge!("datacube_ready").set(0.0);
        drop(addresses);
        tasks.watcher.abort();
        tasks.days.abort();
        tasks.tickets.abort();
        tracing::info!("shutting down: no new connections; waiting for open requests");
        // (The deadlines still hold while open requests finish.)
        edge.drain();
        drain.send_replace(true);
        tokio::select! {
            () = drain.closed() => tracing::info!("all connections closed"),
            () = tokio::time::sleep(limits.shutdown_grace) => {
                tracing::warn!("grace period over; closing the remaining connections");
            }
        }
        loops.stop().await;
        tasks.sweeper.abort();
        if let Some(internal) = internal {
            internal.abort();
        }
    }
}

/// The tasks a server runs beside its connections, ended at shutdown.
struct Tasks {
    watcher: JoinHandle<()>,
    days: JoinHandle<()>,
    tickets: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    readiness: JoinHandle<()>,
    view_clock: JoinHandle<()>,
}

impl Tasks {
    /// Spawns them on the caller's runtime.
    fn start(server: &Server) -> Tasks {
        let app = &server.app;
        Tasks {
            watcher: tokio::spawn(watch_changes(app.clone())),
            days: tokio::spawn(roll_days(app.clone())),
            tickets: tokio::spawn(crate::component::push_tickets(app.clone())),
            sweeper: tokio::spawn(server.edge.clone().sweep()),
            readiness: tokio::spawn(crate::health::watch_readiness(app.clone())),
            view_clock: tokio::spawn(view_clock(app.clone())),
        }
    }
}

/// The event loops connections are handed to: threads, each running a single-threaded
/// runtime until told to stop.
struct EventLoops {
    handles: Vec<tokio::runtime::Handle>,
    next: std::sync::atomic::AtomicUsize,
    stop: tokio::sync::watch::Sender<bool>,
    stopped: Vec<tokio::sync::oneshot::Receiver<()>>,
}

impl EventLoops {
    fn start(n: usize) -> std::io::Result<EventLoops> {
        let (stop, told) = tokio::sync::watch::channel(false);
        let (mut handles, mut stopped) = (Vec::new(), Vec::new());
        for i in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (done, finished) = tokio::sync::oneshot::channel::<()>();
            let mut told = told.clone();
            std::thread::Builder::new()
                .name(format!("datacube-loop-{i}"))
                .spawn(move || {
                    crate::hot::on_loop();
                    runtime.block_on(async move {
                        let _ = told.wait_for(|stop| *stop).await;
                    });
                    // What is left (a connection past the grace period, a blocking store
                    // call of a cut-off request) is dropped or ends on its own.
                    runtime.shutdown_timeout(Duration::from_millis(100));
                    drop(done);
                })?;
            stopped.push(finished);
        }
        Ok(EventLoops {
            handles,
            next: Default::default(),
            stop,
            stopped,
        })
    }

    /// The loop the next connection goes to (in turn).
    fn next(&self) -> &tokio::runtime::Handle {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.handles[i % self.handles.len()]
    }

    /// Stops every loop and waits for its thread to end.
    async fn stop(self) {
        let _ = self.stop.send(true);
        for finished in self.stopped {
            let _ = finished.await;
        }
    }
}

/// `GET /healthz` or `/readyz`: answered whatever the load.
fn is_health<B>(req: &hyper::Request<B>) -> bool {
    matches!(req.uri().path(), "/healthz" | "/readyz")
        && matches!(*req.method(), hyper::Method::GET | hyper::Method::HEAD)
}

async fn route<B>(router: Router, req: hyper::Request<B>) -> Response
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    match router.oneshot(req.map(axum::body::Body::new)).await {
        Ok(answer) => answer,
        Err(never) => match never {},
    }
}

/// Polls the store's change log and retires the cached answers of accounts whose statistics
/// changed — also when another process (the CLI, another instance) wrote them — and forgets
/// everything cached of an account that was removed, or removed and added again (its tokens
/// stop working here within a poll, whichever instance removed it).
async fn watch_changes(app: App) {
    // Until the log has been read once, every change is unknown: the first read retires the
    // answers of every account it lists.
    let mut seen: Option<i64> = None;
    // The incarnation each account was at its last change seen here.
    let mut incarnations: std::collections::HashMap<String, Option<i64>> = Default::default();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        match app.store().changes_since(seen.unwrap_or(0)).await {
            Ok(changes) => {
                let mut last = seen.unwrap_or(0);
                for (appid, seq, incarnation) in changes {
                    let before = incarnations.insert(appid.clone(), incarnation);
                    if incarnation.is_none() || before != Some(incarnation) {
                        app.forget_all_of(&appid);
                    } else {
                        app.statistics_changed(&appid);
                    }
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
/// for days without any event; and statistics pending (live events, `POST /admin/events`,
/// and those stored by `push` or `proxy` whose periods were not recomputed yet) are
/// recomputed once they are readable: late events at once, today's when the day is ready
/// (answers settle what they may show themselves; this keeps the SQL views current).
async fn roll_days(app: App) {
    let mut filled: Option<jiff::civil::Date> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let datacube_store::Settle { ready, yesterday } =
            datacube_store::Settle::at(app.clock().unix());
        if let Err(e) = app.store().flush_readable(ready, yesterday).await {
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

pub(crate) fn connection<I, S, B>(
    io: I,
    svc: S,
    keep_alive: bool,
    header_timeout: Option<Duration>,
) -> http1::Connection<TokioIo<I>, S>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    S: hyper::service::Service<
        hyper::Request<Incoming>,
        Response = hyper::Response<B>,
        Error = Infallible,
    >,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    http1::Builder::new()
        .timer(TokioTimer::new())
        // The edge keeps the connection's deadlines (hyper's timer would count a head from
        // the end of the previous answer, and is on by default).
        .header_read_timeout(header_timeout)
        .title_case_headers(true)
        // One write of head and body (an answer is small): cheaper than a vectored write.
        .writev(false)
        .keep_alive(keep_alive)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc)
}

/// What every request of a connection is answered with: the server, its router, the main
/// runtime (for the router's answers), and the connection's edge state. One reference per
/// connection, cloned per request: its count is touched by this connection's loop only (the
/// App's, shared by every loop, is not touched by an answer from the loop).
pub(crate) struct Shared {
    pub(crate) app: App,
    /// The router of the address the connection came to.
    pub(crate) router: Router,
    /// Whether that address answers the admin API (`serve --admin-listen` moves it).
    pub(crate) admin: bool,
    pub(crate) main: tokio::runtime::Handle,
    pub(crate) conn: Arc<Conn>,
}

/// The connection's requests as hyper hands them: each body read by the edge first, then
/// [`respond`].
pub(crate) fn service(
    shared: Arc<Shared>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = hyper::Response<Sent>,
    Error = Infallible,
    Future = impl Future<Output = Result<hyper::Response<Sent>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let shared = shared.clone();
        async move {
            // The body first, whole (within its limit): until then the request holds no slot.
            let limit = body_limit(&shared, &req);
            let (parts, body) = req.into_parts();
            let body = crate::edge::prefetch(body, limit, &shared.conn).await;
            let req = hyper::Request::from_parts(parts, body);
            Ok(match respond(&shared, req).await {
                Some(answer) => crate::edge::sending(&shared.conn, answer),
                // Closed by the edge while its body came: nothing is started.
                None => overloaded(&shared.app).map(Sent::unguarded),
            })
        }
    })
}

/// Answers a request whose body the edge has read: a request slot taken (but for the health
/// checks), the loop's own answer or the whole path, metrics and the request log. `None` when
/// the edge closed the connection meanwhile (nothing is started).
pub(crate) async fn respond(shared: &Shared, req: hyper::Request<Prefetched>) -> Option<Response> {
    let Shared {
        app,
        router,
        admin,
        main,
        conn,
    } = shared;
    if !conn.enter(Phase::Busy) {
        return None;
    }
    let path = req.uri().path();
    let slot = if is_health(&req) {
        None
    } else {
        match conn.take_slot(&app.inner.in_flight) {
            Some(slot) => Some(slot),
            None => return Some(refused(app, path)),
        }
    };
    let started = Instant::now();
    let api = match crate::metrics::api_of(path) {
        // An address without the admin API answers its paths as unknown: counted so.
        "admin" if !*admin => "other",
        api => api,
    };
    let logged = logging(app).then(|| (req.method().clone(), req.uri().clone()));
    let target = req.uri().path_and_query().map_or("", |pq| pq.as_str());
    let hot = crate::hot::answer(
        app,
        req.method(),
        target,
        req.body().whole(),
        logged.is_some(),
    );
    let answer = match hot {
        Some(hot) => hot,
        None => answer(app, router, *admin, main, req).await,
    };
    drop(slot);
    counted(api, &answer, started, logged);
    Some(answer)
}

/// What became of a request the front asked the loop to answer.
pub(crate) enum FromLoop {
    Answered(Response),
    /// For the whole path ([`respond`]).
    Whole,
    /// The edge closed the connection.
    Closed,
}

/// The loop's own answer to a request the front read ([`crate::front`]), before the request
/// is made: [`respond`]'s way for an answer the loop holds, nothing started otherwise.
/// `target` is the path and query as sent, of bytes the http crate takes in a URI.
pub(crate) fn respond_from_loop(
    shared: &Shared,
    method: &hyper::Method,
    target: &str,
    body: Option<&[u8]>,
) -> FromLoop {
    let Shared { app, conn, .. } = shared;
    if method != hyper::Method::POST || !target.starts_with("/datacube/") {
        return FromLoop::Whole;
    }
    if !conn.enter(Phase::Busy) {
        return FromLoop::Closed;
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let Some(slot) = conn.take_slot(&app.inner.in_flight) else {
        return FromLoop::Answered(refused(app, path));
    };
    let started = Instant::now();
    let logged = logging(app)
        .then(|| Some((method.clone(), hyper::Uri::try_from(target).ok()?)))
        .flatten();
    let Some(answer) = crate::hot::answer(app, method, target, body, logged.is_some()) else {
        return FromLoop::Whole;
    };
    drop(slot);
    counted(crate::metrics::api_of(path), &answer, started, logged);
    FromLoop::Answered(answer)
}

/// Whether requests are logged.
fn logging(app: &App) -> bool {
    app.config().request_log && tracing::enabled!(target: "datacube::request", tracing::Level::INFO)
}

/// The answer when no request slot is free (counted).
fn refused(app: &App, path: &str) -> Response {
    crate::metrics::request(crate::metrics::api_of(path), Some(-1), 200, Duration::ZERO);
    overloaded(app)
}

/// Counts `answer` in the metrics, and logs it when `logged`.
fn counted(
    api: &'static str,
    answer: &Response,
    started: Instant,
    logged: Option<(hyper::Method, hyper::Uri)>,
) {
    let took = started.elapsed();
    let errcode = answer
        .headers()
        .get(crate::wechat::LOGIC_RET)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    crate::metrics::request(api, errcode, answer.status().as_u16(), took);
    if let Some((method, uri)) = logged {
        log_request(&method, &uri, answer, took);
    }
}

/// The most body the edge reads of a request: the admin API's limit for a request that shows
/// the admin token on an address that answers the admin API, the WeChat API's otherwise (a
/// handler refuses what is larger).
fn body_limit<B>(shared: &Shared, req: &hyper::Request<B>) -> usize {
    let app = &shared.app;
    let limits = &app.config().limits;
    if shared.admin
        && crate::admin::answers(req.uri().path())
        && crate::admin::shows_admin_token(app, req.headers())
    {
        limits.admin_body_limit
    } else {
        limits.body_limit
    }
}

/// Whether the router answers `path`: the admin API (on an address that answers it: `admin`),
/// the dashboard, the API's description, the health checks (and the metrics, when on the main
/// address). Every other path is the WeChat API's.
pub(crate) fn on_router(app: &App, admin: bool, path: &str) -> bool {
    (admin && crate::admin::answers(path))
        || path == "/"
        || path.starts_with("/dashboard/")
        || path == "/openapi.json"
        || path == "/docs"
        || path.starts_with("/docs/")
        || path == "/healthz"
        || path == "/readyz"
        || (path == "/metrics" && app.config().metrics_on_main)
}

/// Answers one request. The WeChat API is the hot path: straight to its handler; the router
/// only for the admin API, the dashboard, the API's description and the health checks (a test
/// walks the description: every path in it is answered, and nothing else).
async fn answer(
    app: &App,
    router: &Router,
    admin: bool,
    main: &tokio::runtime::Handle,
    req: hyper::Request<Prefetched>,
) -> Response {
    if on_router(app, admin, req.uri().path()) {
        // On the main runtime: a long import or export holds none of this loop's connections.
        // Cancelled with its request (a client gone, a connection the edge closed), as it
        // would be on the loop.
        let mut task = AbortOnDrop(main.spawn(route(router.clone(), req)));
        match (&mut task.0).await {
            Ok(answer) => answer,
            Err(e) => app.internal("a request's task failed", &e),
        }
    } else {
        crate::wechat::dispatch_request(app.clone(), req.map(axum::body::Body::new)).await
    }
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
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
        .get(crate::wechat::LOGIC_RET)
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
