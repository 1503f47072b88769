//! `datacube proxy`: stands between WeChat and the developer's server, passes every request
//! and answer through unchanged, and records what it saw.
//!
//! The proxy works on the bytes: each client connection is one task that owns it and its own
//! connection to the upstream, reads a request head (`httparse`, framed by
//! [`datacube_protocol::http1`]: ambiguous framing is refused with 400, never forwarded),
//! sends the head and body on as they came — only the hop-by-hop headers (RFC 9110 §7.6.1:
//! `Connection`, `Keep-Alive`…) stay on their own hop — and sends the answer back the same
//! way. Nothing is re-encoded: header names keep their case and order, bodies their framing.
//!
//! A WeChat push (a POST with `signature`, `timestamp` and `nonce`) is also recorded
//! (`record`): its delivery as one callback (time cost and verdict, judged as `push` judges
//! replies) and, once per `MsgId`, its message (or follow). If the upstream does not answer
//! within the limit (WeChat's 5 s), the proxy answers `504` itself just before WeChat would
//! give up, and records a failed callback.
//!
//! It faces the internet, so every client is bounded ([`Limits`]): the time to send a head, a
//! body, and between requests; the size of a head and of a request body (a push is a few KB,
//! held whole to be read); the connections at once. At the limit, the connection that has
//! waited longest on its client (idle, or sending slowly) is closed to make room, and a new
//! one is answered `503` only when every connection is busy with a request under way.
//!
//! # Layout
//! - this file: settings, the accept loop and its workers, the connection slots;
//! - `connection`: one client connection, request after request;
//! - `wire`: buffered sides, heads and bodies on the wire;
//! - `record`: pushes read, judged and recorded.

mod connection;
mod record;
mod wire;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datacube_engine::Event;
use datacube_protocol::crypto::AesKey;
use datacube_protocol::http1::Framing;
use datacube_protocol::xml::Verdict;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::recorder::{Now, Recorder};

/// Answer bodies up to this size are read whole, to be judged.
pub const INSPECT_LIMIT: usize = 1 << 20;
/// Chunked answers are held whole up to this size (past it: 502).
pub const MAX_CHUNKED: usize = 4 << 20;
/// Upstream answers' heads larger than this are refused.
const MAX_ANSWER_HEAD: usize = 64 * 1024;

const SERVICE_UNAVAILABLE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// What one client may take: time, bytes and connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Until a request's whole head has arrived (from the connection's start, or from its
    /// first byte after an idle wait).
    pub header_timeout: Duration,
    /// Until a request's whole body has arrived.
    pub body_timeout: Duration,
    /// Between requests on a kept connection.
    pub idle_timeout: Duration,
    /// The largest request head.
    pub max_head: usize,
    /// The largest request body (a WeChat push is a few KB); past it: 413.
    pub max_body: usize,
    /// Client connections at once, over all workers.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            max_head: 16 * 1024,
            max_body: 64 * 1024,
            max_connections: default_max_connections(),
        }
    }
}

/// Connections at once by default: half the files the process may open (each client may hold
/// a connection upstream), less a reserve for the database and the listeners; 4096 at most.
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<u64>().ok()
        })
        .unwrap_or(1024);
    (soft.saturating_sub(64) / 2).clamp(16, 4096) as usize
}

/// The proxy's settings.
#[derive(Clone)]
pub struct ProxyConfig {
    /// The developer's server, `http://host:port` (a path prefix is kept).
    pub upstream: hyper::Uri,
    /// The account whose statistics get the events.
    pub appid: String,
    /// The server's token: replies' `MsgSignature` checked when given.
    pub token: Option<String>,
    /// The EncodingAESKey's key: encrypted pushes and replies read when given.
    pub key: Option<AesKey>,
    /// The upstream's time limit (WeChat's is 5 s).
    pub timeout: Duration,
    /// What one client may take.
    pub limits: Limits,
}

struct State {
    config: ProxyConfig,
    /// `host:port` of the upstream, and its path prefix (no trailing slash).
    addr: String,
    prefix: String,
    recorder: Recorder,
    now: Now,
    /// Events waiting to be handed to the recorder (every 50 ms, or sooner when many).
    outbox: std::sync::Mutex<Vec<Event>>,
    /// Messages seen lately: WeChat's retries of one are not recorded again (the store would
    /// find them duplicates too, at a higher price).
    recent: Arc<std::sync::Mutex<Recent>>,
}

/// The last [`RECENT`] message ids (and event keys) seen, by all of a proxy's workers.
#[derive(Default)]
struct Recent {
    set: rustc_hash::FxHashSet<String>,
    order: std::collections::VecDeque<String>,
}

const RECENT: usize = 65_536;
/// Events handed over at once when this many wait.
const OUTBOX: usize = 4096;

/// The client connections: how many are open, and which wait on their client (idle, or
/// sending a head or body) since when — those can be closed to make room.
pub(crate) struct Slots {
    max: usize,
    inner: Mutex<SlotsInner>,
}

#[derive(Default)]
struct SlotsInner {
    open: usize,
    next: u64,
    waiting: BTreeMap<(Instant, u64), Arc<Notify>>,
}

impl Slots {
    fn new(max: usize) -> Arc<Slots> {
        Arc::new(Slots {
            max: max.max(1),
            inner: Mutex::default(),
        })
    }

    /// A slot for a new connection: a free one, or that of the connection that has waited on
    /// its client the longest (it is told to close). `None` when every connection is busy.
    fn take(self: &Arc<Self>) -> Option<Slot> {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if s.open >= self.max {
            // Its client has had the longest to send; a request under way is never cut.
            let oldest = s.waiting.keys().next().copied()?;
            if let Some(evict) = s.waiting.remove(&oldest) {
                evict.notify_one();
            }
        }
        s.open += 1;
        s.next += 1;
        // A new connection waits on its client from the start (it may not even have been
        // polled yet when the next one needs room).
        let (id, now, evict) = (s.next, Instant::now(), Arc::new(Notify::new()));
        s.waiting.insert((now, id), evict.clone());
        Some(Slot {
            slots: self.clone(),
            id,
            evict,
            since: Mutex::new(Some(now)),
        })
    }
}

/// One connection's place among the [`Slots`].
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    evict: Arc<Notify>,
    /// Since when it waits on its client, if it does.
    since: Mutex<Option<Instant>>,
}

impl Slot {
    /// Marks the connection as waiting on its client (it may be closed to make room) until
    /// [`Slot::busy`].
    fn waiting(&self) {
        let mut s = self.slots.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        if since.is_none() {
            let now = Instant::now();
            *since = Some(now);
            s.waiting.insert((now, self.id), self.evict.clone());
        }
    }

    /// The connection has a request under way: it is not closed to make room.
    fn busy(&self) {
        let mut s = self.slots.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = since.take() {
            s.waiting.remove(&(old, self.id));
        }
    }

    /// Resolves when the connection is told to close to make room.
    async fn evicted(&self) {
        self.evict.notified().await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut since = self.since.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = since.take() {
            s.waiting.remove(&(old, self.id));
        }
        s.open = s.open.saturating_sub(1);
    }
}

/// How the upstream answered a delivery. Whether a POST is a push at all (signature, XML,
/// decryption) and whether its reply is one WeChat accepts are decided once the answer is on
/// its way back, not before the request goes upstream.
pub(super) enum Reply {
    /// Already known: a timeout, a failure, a status other than 200, a reply too large.
    Judged(Verdict),
    /// A 200 with this body (as framed), to judge.
    Body(Vec<u8>, Framing),
}

impl Recent {
    /// Whether `id` is new (and remembers it).
    pub(super) fn first(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= RECENT {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

/// Serves the proxy on `listener` until `shutdown` completes; open connections then get up to
/// the time limit and a second to finish.
pub async fn serve(
    listener: TcpListener,
    config: ProxyConfig,
    recorder: Recorder,
    now: Now,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Slots::new(config.limits.max_connections);
    serve_with(
        listener,
        config,
        recorder,
        now,
        shutdown,
        Arc::default(),
        slots,
    )
    .await
}

/// Binds `workers` listening sockets to `addr` (`SO_REUSEPORT`: the kernel spreads new
/// connections over them). With port 0, the first socket picks the port and the others take it.
pub fn bind_workers(
    addr: std::net::SocketAddr,
    workers: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut listeners: Vec<std::net::TcpListener> = Vec::with_capacity(workers.max(1));
    for _ in 0..workers.max(1) {
        let at = listeners
            .first()
            .map_or(Ok(addr), std::net::TcpListener::local_addr)?;
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(at),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        #[cfg(unix)]
        if workers > 1 {
            socket.set_reuse_port(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&at.into())?;
        socket.listen(1024)?;
        listeners.push(socket.into());
    }
    Ok(listeners)
}

/// Serves the proxy with one event loop per listener (from [`bind_workers`]), as nginx runs
/// one worker per CPU: the first on the calling runtime, the others each on a thread and
/// runtime of its own. A request is read, forwarded and answered on one thread, never handed
/// between threads; all workers record into `recorder` and share the memory of recent
/// MsgIds (WeChat's retry of a message may come on another connection).
pub async fn serve_workers(
    listeners: Vec<std::net::TcpListener>,
    config: ProxyConfig,
    recorder: Recorder,
    now: Now,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let recent: Arc<std::sync::Mutex<Recent>> = Arc::default();
    // One count of connections for all workers.
    let slots = Slots::new(config.limits.max_connections);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut listeners = listeners.into_iter();
    let Some(first) = listeners.next() else {
        return Ok(());
    };
    let mut threads = Vec::new();
    for (i, listener) in listeners.enumerate() {
        let (config, recorder, now, recent, slots) = (
            config.clone(),
            recorder.clone(),
            now.clone(),
            recent.clone(),
            slots.clone(),
        );
        let mut stopped = stopped.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("datacube-proxy-{}", i + 1))
                .spawn(move || -> std::io::Result<()> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async move {
                        let listener = TcpListener::from_std(listener)?;
                        let shutdown = async move {
                            let _ = stopped.wait_for(|s| *s).await;
                        };
                        serve_with(listener, config, recorder, now, shutdown, recent, slots).await
                    })
                })?,
        );
    }
    let listener = TcpListener::from_std(first)?;
    let result = serve_with(listener, config, recorder, now, shutdown, recent, slots).await;
    let _ = stop.send(true);
    for t in threads {
        // Joining blocks: done off the event loop (the recorder may still run on it).
        let joined = tokio::task::spawn_blocking(move || t.join())
            .await
            .map_err(std::io::Error::other)?;
        match joined {
            Ok(r) => r?,
            Err(_) => return Err(std::io::Error::other("a proxy worker panicked")),
        }
    }
    result
}

/// The next connection accepted on `listener` (with `TCP_NODELAY` set), or `None` once
/// `shutdown` completes. A failed accept — out of file descriptors and the like — is logged and
/// tried again 50 ms later instead of spinning. (datacube's HTTP server has a loop
/// of its own, `datacube_server::serve`.)
async fn accept_until<F: std::future::Future<Output = ()>>(
    listener: &tokio::net::TcpListener,
    mut shutdown: std::pin::Pin<&mut F>,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => return None,
        }
    }
}

async fn serve_with(
    listener: TcpListener,
    config: ProxyConfig,
    recorder: Recorder,
    now: Now,
    shutdown: impl std::future::Future<Output = ()>,
    recent: Arc<std::sync::Mutex<Recent>>,
    slots: Arc<Slots>,
) -> std::io::Result<()> {
    let addr = format!(
        "{}:{}",
        config.upstream.host().unwrap_or("127.0.0.1"),
        config.upstream.port_u16().unwrap_or(80)
    );
    let prefix = config.upstream.path().trim_end_matches('/').to_owned();
    let grace = config.timeout + Duration::from_secs(1);
    let state = Arc::new(State {
        config,
        addr,
        prefix,
        recorder,
        now,
        outbox: std::sync::Mutex::new(Vec::new()),
        recent,
    });
    // Events go to the recorder in batches, not one wake-up per request.
    let flusher = {
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let events = state.take_outbox();
                state.recorder.record_many(events).await;
            }
        })
    };
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let Some((mut stream, peer)) = accept_until(&listener, shutdown.as_mut()).await else {
            break;
        };
        match slots.take() {
            Some(slot) => {
                connections.spawn(connection::serve(state.clone(), stream, slot));
            }
            None => {
                // Every slot busy with a request under way: say so, and close.
                tracing::warn!(%peer, "connection limit reached; answering 503");
                crate::metrics::refused("busy");
                connections.spawn(async move {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        tokio::io::AsyncWriteExt::write_all(&mut stream, SERVICE_UNAVAILABLE),
                    )
                    .await;
                });
            }
        }
        while connections.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    flusher.abort();
    let events = state.take_outbox();
    state.recorder.record_many(events).await;
    Ok(())
}

impl State {
    fn take_outbox(&self) -> Vec<Event> {
        self.outbox
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default()
    }
}
