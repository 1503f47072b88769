//! `serve`'s edge: what one client may take of the server — time, bytes, connections,
//! requests — and what happens past each bound. Every client is hostile in timing; none may
//! hold what another needs.
//!
//! - **Phases and deadlines.** A connection is always in one phase: sending a request head
//!   (from its start, or from the first byte after an idle wait), sending a body, busy (its
//!   request is being answered), taking its answer, or idle between requests. A watchdog closes it when the phase
//!   outlasts its bound: the header timeout, the body timeout (plus a second per MiB received,
//!   so that a large admin import at 1 MiB/s or faster always fits, while a trickle never
//!   extends anything), the idle timeout, and for taking an answer the idle timeout too (a
//!   client that never reads holds nothing for long) — looked at by one sweep over the
//!   connections every 100 ms. hyper's own header timer is off: this one counts the head from its first byte,
//!   and the idle wait apart.
//! - **In flight only when whole.** A request counts against `--max-in-flight` (and its
//!   address's share) only once its body has arrived whole: the edge reads it first. A client
//!   sending slowly holds a connection, never a request slot.
//! - **Room is made, not refused.** Past `--max-connections` a new connection takes the place
//!   of a connection waiting on its client (sending a head or body, or idle) of the address
//!   that holds the most connections — the one of them that has waited longest, which is
//!   closed; past its own address's share, of its own address's. A request under way, or an
//!   answer being taken, is never cut (a phase changes and a connection is closed by one
//!   compare-and-swap, so neither can overtake the other); only when every connection is
//!   busy is a new one refused (`-1`, then closed). Addresses are counted as clients are: an
//!   IPv6 client by its /64, an IPv4-mapped one by its IPv4 address.
//! - **Health answers whatever the load.** `/healthz` and `/readyz` skip the in-flight limits,
//!   and are answered even on a refused connection.
//! - **Refusals are counted, and logged at most once per [`LOG_EVERY`]** (one line with the
//!   counts), never once per connection: a flood cannot flood the log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::Limits;

/// Refusals and closings are logged at most this often (one line with the counts).
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// How often deadlines are looked at: a connection is closed at most this late.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// A body arriving at least this fast (bytes a second) never reaches its deadline: each byte
/// received extends it by `1 / MIN_BODY_RATE` s.
const MIN_BODY_RATE: u64 = 1 << 20;

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Sending a request head.
    Head = 0,
    /// Sending a request body.
    Body = 1,
    /// Its request is being answered.
    Busy = 2,
    /// Between requests.
    Idle = 3,
    /// Taking its answer.
    Send = 4,
}

/// The state of a connection the edge closed (in place of a phase).
const CLOSED: u64 = 7;

impl Phase {
    fn from_bits(bits: u64) -> Option<Phase> {
        match bits & 7 {
            0 => Some(Phase::Head),
            1 => Some(Phase::Body),
            2 => Some(Phase::Busy),
            3 => Some(Phase::Idle),
            4 => Some(Phase::Send),
            _ => None,
        }
    }

    /// Whether a connection in this phase may be closed to make room: it waits on its client.
    fn evictable(self) -> bool {
        matches!(self, Phase::Head | Phase::Body | Phase::Idle)
    }
}

/// Why a connection was closed or refused by the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    HeaderTimeout,
    BodyTimeout,
    IdleTimeout,
    /// Closed to make room for a new connection.
    Evicted,
    /// Refused: every connection busy.
    Full,
    /// Refused: every connection of its address busy.
    AddressFull,
    /// Waiting for a request when the server shut down.
    Shutdown,
}

/// Every [`Closed::label`], for metrics present at zero.
pub(crate) const CLOSE_REASONS: [&str; 6] = [
    "header_timeout",
    "body_timeout",
    "idle_timeout",
    "evicted",
    "full",
    "address_full",
];

impl Closed {
    const ALL: [Closed; 7] = [
        Closed::HeaderTimeout,
        Closed::BodyTimeout,
        Closed::IdleTimeout,
        Closed::Evicted,
        Closed::Full,
        Closed::AddressFull,
        Closed::Shutdown,
    ];

    /// The metrics label ([`CLOSE_REASONS`] lists them all).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::BodyTimeout => "body_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::Evicted => "evicted",
            Closed::Full => "full",
            Closed::AddressFull => "address_full",
            Closed::Shutdown => "shutdown",
        }
    }

    fn refused(self) -> bool {
        matches!(self, Closed::Full | Closed::AddressFull)
    }
}

/// One client connection's state, shared by the sweep, its reads and its requests.
pub(crate) struct Conn {
    id: u64,
    /// Its address, as counted ([`group`]).
    ip: IpAddr,
    /// The phase (low 3 bits; [`CLOSED`] once closed) and since when, in ms since the edge
    /// started (the rest).
    state: AtomicU64,
    /// Bytes of the body received in the current body phase.
    body_bytes: AtomicU64,
    /// Requests of its address in flight.
    address_in_flight: Arc<AtomicUsize>,
    /// Why the edge closed it (a [`Closed`] + 1), 0 while open.
    closed_for: AtomicU8,
    /// Waiting for a request with none of its bytes read (told by the front).
    waiting: std::sync::atomic::AtomicBool,
    /// The task waiting for [`Conn::must_close`].
    evict: atomic_waker::AtomicWaker,
    edge: Arc<Edge>,
}

struct Address {
    open: usize,
    in_flight: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Registry {
    next: u64,
    conns: HashMap<u64, Arc<Conn>>,
    addresses: HashMap<IpAddr, Address>,
}

/// The address a client is counted under: an IPv6 client by its /64 (one host's share of the
/// addresses it may use), an IPv4-mapped IPv6 address as the IPv4 one.
pub(crate) fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from_bits(
                v6.to_bits() & !((1u128 << 64) - 1),
            )),
        },
    }
}

/// Milliseconds of the monotonic clock, read cheaply: phases change five times a request and
/// their deadlines are looked at every [`SWEEP_EVERY`], so the kernel's coarse clock (a few
/// milliseconds' resolution, no hardware read) is precise enough.
#[cfg(target_os = "linux")]
fn coarse_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

/// Milliseconds of the monotonic clock since the first call.
#[cfg(not(target_os = "linux"))]
fn coarse_ms() -> u64 {
    static START: std::sync::LazyLock<std::time::Instant> =
        std::sync::LazyLock::new(std::time::Instant::now);
    START.elapsed().as_millis() as u64
}

/// The connections of one server, and the bounds they share.
pub(crate) struct Edge {
    limits: Limits,
    /// [`coarse_ms`] when it started.
    epoch: u64,
    registry: Mutex<Registry>,
    /// Closings and refusals since the last log line, by [`Closed`].
    unlogged: [AtomicU64; 7],
    /// Shutdown began: a connection waiting for a request is closed by the next sweep.
    draining: std::sync::atomic::AtomicBool,
    /// When the last summary was logged (ms since `epoch`, plus one; 0: never).
    logged_at: AtomicU64,
}

impl Edge {
    pub(crate) fn new(limits: Limits) -> Arc<Edge> {
        Arc::new(Edge {
            limits,
            epoch: coarse_ms(),
            registry: Mutex::default(),
            unlogged: Default::default(),
            draining: Default::default(),
            logged_at: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        coarse_ms().saturating_sub(self.epoch)
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection from `ip`: a free one, or that of a connection waiting on
    /// its client — of the address holding the most connections, or, when `ip`'s address is at
    /// its share, of its own — which is told to close.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Closed> {
        let ip = group(ip);
        let per_address = self.limits.max_connections_per_address.max(1);
        let mut r = self.registry();
        let open_here = r.addresses.get(&ip).map_or(0, |a| a.open);
        let mut evicted = false;
        if open_here >= per_address {
            if !r.evict(Some(ip)) {
                drop(r);
                self.closed(Closed::AddressFull);
                return Err(Closed::AddressFull);
            }
            evicted = true;
        } else if r.conns.len() >= self.limits.max_connections.max(1) {
            if !r.evict(None) {
                drop(r);
                self.closed(Closed::Full);
                return Err(Closed::Full);
            }
            evicted = true;
        }
        r.next += 1;
        let id = r.next;
        let address = r.addresses.entry(ip).or_insert_with(|| Address {
            open: 0,
            in_flight: Arc::default(),
        });
        address.open += 1;
        let conn = Arc::new(Conn {
            id,
            ip,
            state: AtomicU64::new(pack(Phase::Head, self.now_ms())),
            body_bytes: AtomicU64::new(0),
            address_in_flight: address.in_flight.clone(),
            closed_for: AtomicU8::new(0),
            waiting: Default::default(),
            evict: atomic_waker::AtomicWaker::new(),
            edge: self.clone(),
        });
        r.conns.insert(id, conn.clone());
        metrics::gauge!("datacube_connections_open").set(r.conns.len() as f64);
        drop(r);
        if evicted {
            self.closed(Closed::Evicted);
        }
        Ok(Admitted(conn))
    }

    /// Closes every connection whose phase outlasted its bound, every [`SWEEP_EVERY`], until
    /// dropped: one pass over the connections instead of a timer each (whose deadline would
    /// have to move at every phase).
    pub(crate) async fn sweep(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = self.now_ms();
            let mut r = self.registry();
            let draining = self.draining.load(Ordering::Acquire);
            let late: Vec<(u64, u64, Closed)> = r
                .conns
                .values()
                .filter_map(|c| {
                    let state = c.state.load(Ordering::Relaxed);
                    if draining
                        && c.waiting.load(Ordering::Relaxed)
                        && matches!(Phase::from_bits(state), Some(Phase::Head | Phase::Idle))
                    {
                        return Some((c.id, state, Closed::Shutdown));
                    }
                    let (deadline, why) = c.deadline(state, &self.limits)?;
                    (deadline <= now).then_some((c.id, state, why))
                })
                .collect();
            let mut closed = Vec::with_capacity(late.len());
            for (id, state, why) in late {
                // Only if it is still in that phase (it may just have moved on).
                if r.close(id, state, why) {
                    closed.push(why);
                }
            }
            drop(r);
            for why in closed.into_iter().filter(|why| *why != Closed::Shutdown) {
                self.closed(why);
            }
        }
    }

    /// Shutdown began: from the next sweep on, every connection waiting for a request (none
    /// of its bytes read yet) is closed.
    pub(crate) fn drain(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Counts a closing or refusal (and the metric).
    fn note(&self, why: Closed) {
        metrics::counter!("datacube_connections_closed_total", "reason" => why.label())
            .increment(1);
        self.unlogged[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// [`Edge::note`], and the summary line if none was logged for [`LOG_EVERY`].
    pub(crate) fn closed(&self, why: Closed) {
        self.note(why);
        let now = self.now_ms() + 1;
        let last = self.logged_at.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < LOG_EVERY.as_millis() as u64 {
            return;
        }
        if self
            .logged_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let counts: Vec<(Closed, u64)> = Closed::ALL
            .iter()
            .map(|c| (*c, self.unlogged[*c as usize].swap(0, Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let refused: u64 = counts
            .iter()
            .filter(|(c, _)| c.refused())
            .map(|x| x.1)
            .sum();
        let summary = counts
            .iter()
            .map(|(c, n)| format!("{} {n}", c.label()))
            .collect::<Vec<_>>()
            .join(", ");
        let open = self.registry().conns.len();
        if refused > 0 {
            tracing::warn!(
                open,
                "connections refused or closed by the limits: {summary}"
            );
        } else {
            tracing::info!(open, "connections closed by the limits: {summary}");
        }
    }
}

impl Registry {
    /// Closes a connection waiting on its client to make room: of `address`, or else of the
    /// address holding the most connections (among those with one waiting) — the one that has
    /// waited longest. False when there is none.
    fn evict(&mut self, address: Option<IpAddr>) -> bool {
        // A few tries: a connection may move on between the look and the close.
        for _ in 0..4 {
            // Per address: its oldest connection waiting on its client.
            let mut oldest: HashMap<IpAddr, (u64, u64, u64)> = HashMap::new();
            for c in self.conns.values() {
                if address.is_some_and(|a| a != c.ip) {
                    continue;
                }
                let state = c.state.load(Ordering::Relaxed);
                if !Phase::from_bits(state).is_some_and(Phase::evictable) {
                    continue;
                }
                let candidate = (state >> 3, c.id, state);
                let entry = oldest.entry(c.ip).or_insert(candidate);
                if candidate < *entry {
                    *entry = candidate;
                }
            }
            let heaviest = oldest
                .iter()
                .max_by_key(|(ip, (since, _, _))| {
                    (
                        self.addresses.get(*ip).map_or(0, |a| a.open),
                        std::cmp::Reverse(*since),
                    )
                })
                .map(|(_, victim)| *victim);
            let Some((_, id, state)) = heaviest else {
                return false;
            };
            if self.close(id, state, Closed::Evicted) {
                return true;
            }
        }
        false
    }

    /// Closes connection `id` for `why` if its state is still `state` (one compare-and-swap:
    /// a request that began meanwhile is not cut); it no longer counts then.
    fn close(&mut self, id: u64, state: u64, why: Closed) -> bool {
        let Some(conn) = self.conns.get(&id) else {
            return false;
        };
        if conn
            .state
            .compare_exchange(state, CLOSED, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        if let Some(conn) = self.forget(id) {
            conn.closed_for.store(why as u8 + 1, Ordering::Release);
            conn.evict.wake();
        }
        true
    }

    fn forget(&mut self, id: u64) -> Option<Arc<Conn>> {
        let conn = self.conns.remove(&id)?;
        if let Some(a) = self.addresses.get_mut(&conn.ip) {
            a.open -= 1;
            if a.open == 0 {
                self.addresses.remove(&conn.ip);
            }
        }
        metrics::gauge!("datacube_connections_open").set(self.conns.len() as f64);
        Some(conn)
    }
}

fn pack(phase: Phase, ms: u64) -> u64 {
    (ms << 3) | phase as u64
}

/// A connection's place at the edge; given back when dropped.
pub(crate) struct Admitted(pub(crate) Arc<Conn>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.edge.registry().forget(self.0.id);
    }
}

impl Conn {
    fn phase(&self) -> Option<Phase> {
        Phase::from_bits(self.state.load(Ordering::Relaxed))
    }

    /// Enters `phase` from now; false when the connection was closed (nothing more may start
    /// on it).
    pub(crate) fn enter(&self, phase: Phase) -> bool {
        if phase == Phase::Body {
            self.body_bytes.store(0, Ordering::Relaxed);
        }
        let new = pack(phase, self.edge.now_ms());
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            if current == CLOSED {
                return false;
            }
            match self.state.compare_exchange_weak(
                current,
                new,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }

    /// Bytes of a body arrived: its deadline moves by what they earned, counted over the whole
    /// body (so that small reads earn as much as large ones).
    pub(crate) fn received(&self, bytes: usize) {
        self.body_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// When the phase of `state` must end, and why (`None` while busy: an answer under way is
    /// never cut; nor a closed connection).
    fn deadline(&self, state: u64, limits: &Limits) -> Option<(u64, Closed)> {
        let since = state >> 3;
        let (bound, why) = match Phase::from_bits(state)? {
            Phase::Head => (limits.header_timeout, Closed::HeaderTimeout),
            Phase::Body => {
                let earned =
                    self.body_bytes.load(Ordering::Relaxed).saturating_mul(1000) / MIN_BODY_RATE;
                (
                    limits.body_timeout + Duration::from_millis(earned),
                    Closed::BodyTimeout,
                )
            }
            Phase::Idle | Phase::Send => (limits.idle_timeout, Closed::IdleTimeout),
            Phase::Busy => return None,
        };
        Some((since + bound.as_millis() as u64, why))
    }

    /// Tells whether the connection waits for a request with none of its bytes read: then
    /// shutdown closes it.
    pub(crate) fn waiting(&self, waiting: bool) {
        self.waiting.store(waiting, Ordering::Relaxed);
    }

    /// Whether the server is shutting down.
    pub(crate) fn draining(&self) -> bool {
        self.edge.draining.load(Ordering::Acquire)
    }

    /// Resolves when the connection must close — its phase outlasted its bound, or it was
    /// closed to make room — with why.
    ///
    /// (Polled at every wake of its connection's task: a check and a registration of the
    /// task, no lock.)
    pub(crate) fn must_close(&self) -> impl std::future::Future<Output = Closed> + '_ {
        std::future::poll_fn(|cx| {
            if let Some(why) = self.closed_for() {
                return Poll::Ready(why);
            }
            self.evict.register(cx.waker());
            match self.closed_for() {
                Some(why) => Poll::Ready(why),
                None => Poll::Pending,
            }
        })
    }

    fn closed_for(&self) -> Option<Closed> {
        match self.closed_for.load(Ordering::Acquire) {
            0 => None,
            n => Closed::ALL.get(usize::from(n) - 1).copied(),
        }
    }

    /// Takes a request slot of the server and of this connection's address, if both have
    /// room; the slot is given back when the returned guard drops.
    pub(crate) fn take_slot<'a>(&'a self, server: &'a AtomicUsize) -> Option<Slot<'a>> {
        let limits = &self.edge.limits;
        let before = server.fetch_add(1, Ordering::Relaxed);
        let here = self.address_in_flight.fetch_add(1, Ordering::Relaxed);
        let slot = Slot {
            server,
            address: &self.address_in_flight,
        };
        (before < limits.max_in_flight && here < limits.max_in_flight_per_address.max(1))
            .then_some(slot)
    }
}

/// A request slot, given back when dropped.
pub(crate) struct Slot<'a> {
    server: &'a AtomicUsize,
    address: &'a AtomicUsize,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.server.fetch_sub(1, Ordering::Relaxed);
        self.address.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's socket, watched: the first byte after an idle wait starts a head.
pub(crate) struct Watched<T> {
    pub(crate) io: T,
    pub(crate) conn: Arc<Conn>,
    /// Bytes read from the socket already and not answered, read again first (the front
    /// handing its connection to hyper, [`crate::front`]).
    pub(crate) unread: Bytes,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before && self.conn.phase() == Some(Phase::Idle) {
            self.conn.enter(Phase::Head);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Reads a request's body, at most `limit + 1` bytes (one more than allowed tells a handler
/// it was too large), while the connection is in its body phase. What was read is handed on as
/// the request's body; a body cut off is handed on as a failing one.
pub(crate) async fn prefetch(body: Incoming, limit: usize, conn: &Conn) -> Prefetched {
    if body.is_end_stream() {
        return Prefetched::default();
    }
    if !conn.enter(Phase::Body) {
        return Prefetched {
            data: None,
            broken: true,
        };
    }
    let take = limit.saturating_add(1);
    let hint = body.size_hint().exact().unwrap_or(0).min(take as u64) as usize;
    let mut buf = BytesMut::with_capacity(hint.min(16 << 20));
    let mut body = body;
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                conn.received(data.len());
                let room = take - buf.len();
                buf.extend_from_slice(&data[..data.len().min(room)]);
                if buf.len() >= take {
                    break;
                }
            }
            Some(Err(_)) => {
                return Prefetched {
                    data: Some(buf.freeze()),
                    broken: true,
                }
            }
        }
    }
    Prefetched {
        data: Some(buf.freeze()),
        broken: false,
    }
}

/// `answer`, with the connection in its send phase until the answer's body has been written
/// (or dropped): idle, and so a candidate to make room, only then.
pub(crate) fn sending(conn: &Arc<Conn>, answer: axum::response::Response) -> hyper::Response<Sent> {
    conn.enter(Phase::Send);
    let guard = IdleWhenSent(conn.clone());
    answer.map(|body| Sent {
        body,
        _idle: Some(guard),
    })
}

/// Sets its connection idle when dropped.
struct IdleWhenSent(Arc<Conn>);

impl Drop for IdleWhenSent {
    fn drop(&mut self) {
        self.0.enter(Phase::Idle);
    }
}

/// An answer's body, with the guard that marks its end.
pub(crate) struct Sent {
    body: axum::body::Body,
    _idle: Option<IdleWhenSent>,
}

impl Sent {
    /// A body whose end marks nothing (its connection is closed already).
    pub(crate) fn unguarded(body: axum::body::Body) -> Sent {
        Sent { body, _idle: None }
    }
}

impl hyper::body::Body for Sent {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body the edge has read (or tried to).
#[derive(Default)]
pub(crate) struct Prefetched {
    data: Option<Bytes>,
    /// The client stopped sending before the end.
    broken: bool,
}

impl Prefetched {
    /// A body read whole.
    pub(crate) fn read(data: Bytes) -> Prefetched {
        Prefetched {
            data: Some(data),
            broken: false,
        }
    }

    /// The whole body, if it came whole.
    pub(crate) fn whole(&self) -> Option<&[u8]> {
        match (&self.data, self.broken) {
            (_, true) => None,
            (data, false) => Some(data.as_deref().unwrap_or_default()),
        }
    }
}

impl hyper::body::Body for Prefetched {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(data) = self.data.take().filter(|d| !d.is_empty()) {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if std::mem::take(&mut self.broken) {
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the request body was cut off",
            ))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.as_ref().is_none_or(Bytes::is_empty) && !self.broken
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.data, self.broken) {
            (data, false) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How far behind the real clock [`coarse_ms`] may be.
    fn coarse_resolution() -> Duration {
        #[cfg(target_os = "linux")]
        {
            let t = rustix::time::clock_getres(rustix::time::ClockId::MonotonicCoarse);
            Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
        }
        #[cfg(not(target_os = "linux"))]
        Duration::ZERO
    }

    fn limits(max: usize, per_address: usize) -> Limits {
        Limits {
            max_connections: max,
            max_connections_per_address: per_address,
            ..Limits::default()
        }
    }

    #[tokio::test]
    async fn the_longest_waiting_connection_makes_room_and_busy_ones_are_never_cut() {
        let edge = Edge::new(limits(3, 10));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = edge.admit(ip).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let b = edge.admit(ip).unwrap();
        let c = edge.admit(ip).unwrap();
        a.0.enter(Phase::Busy);
        // Full: b waited longest among those not busy.
        let d = edge.admit(ip).unwrap();
        assert_eq!(b.0.must_close().await, Closed::Evicted);
        for conn in [&c, &d] {
            conn.0.enter(Phase::Busy);
        }
        // Every one busy: refused.
        assert_eq!(edge.admit(ip).err(), Some(Closed::Full));
        drop(b);
        assert_eq!(
            edge.registry().conns.len(),
            3,
            "the evicted one is not counted twice"
        );
        drop(c);
        assert!(edge.admit(ip).is_ok(), "room again");
    }

    #[tokio::test]
    async fn an_address_at_its_share_makes_room_among_its_own() {
        let edge = Edge::new(limits(10, 2));
        let (one, two): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let other = edge.admit(two).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let a = edge.admit(one).unwrap();
        let b = edge.admit(one).unwrap();
        let _c = edge.admit(one).unwrap();
        // `a` made room, not the other address's older connection.
        assert_eq!(a.0.must_close().await, Closed::Evicted);
        b.0.enter(Phase::Busy);
        _c.0.enter(Phase::Busy);
        assert_eq!(edge.admit(one).err(), Some(Closed::AddressFull));
        assert!(edge.admit(two).is_ok());
        drop(other);
    }

    #[tokio::test]
    async fn a_head_is_closed_at_its_deadline_and_an_idle_wait_at_its_own() {
        let edge = Edge::new(Limits {
            header_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(600),
            ..Limits::default()
        });
        let sweeper = tokio::spawn(edge.clone().sweep());
        // (Deadlines are kept in whole milliseconds of the coarse clock: one may come a
        // millisecond and the clock's resolution early.)
        let early = Duration::from_millis(1) + coarse_resolution();
        let started = std::time::Instant::now();
        let a = edge.admit("10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(a.0.must_close().await, Closed::HeaderTimeout);
        assert!(started.elapsed() >= Duration::from_millis(200) - early);
        let b = edge.admit("10.0.0.1".parse().unwrap()).unwrap();
        let started = std::time::Instant::now();
        b.0.enter(Phase::Idle);
        assert_eq!(b.0.must_close().await, Closed::IdleTimeout);
        assert!(started.elapsed() >= Duration::from_millis(600) - early);
        // Busy: never cut.
        let c = edge.admit("10.0.0.1".parse().unwrap()).unwrap();
        c.0.enter(Phase::Busy);
        let waited = tokio::time::timeout(Duration::from_millis(900), c.0.must_close()).await;
        assert!(waited.is_err());
        sweeper.abort();
    }

    #[test]
    fn clients_are_counted_by_ipv4_address_and_ipv6_64() {
        let g = |s: &str| group(s.parse().unwrap()).to_string();
        assert_eq!(g("10.0.0.1"), "10.0.0.1");
        assert_eq!(g("::ffff:10.0.0.1"), "10.0.0.1");
        assert_eq!(g("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(g("2001:db8:1:2::1"), g("2001:db8:1:2:ffff::9"));
        assert_ne!(g("2001:db8:1:2::1"), g("2001:db8:1:3::1"));
    }

    #[tokio::test]
    async fn room_is_made_from_the_address_holding_the_most_connections() {
        let edge = Edge::new(limits(4, 10));
        let (honest, flood): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        // An honest upload, older than every connection of the flood.
        let upload = edge.admit(honest).unwrap();
        upload.0.enter(Phase::Body);
        let f: Vec<_> = (0..3).map(|_| edge.admit(flood).unwrap()).collect();
        let newcomer = edge.admit(flood).unwrap();
        // The flood's oldest made room, not the older upload.
        assert_eq!(f[0].0.must_close().await, Closed::Evicted);
        assert_eq!(upload.0.phase(), Some(Phase::Body));
        drop(newcomer);
    }

    #[tokio::test]
    async fn a_connection_that_began_a_request_is_not_closed_by_a_look_taken_before() {
        let edge = Edge::new(limits(1, 1));
        let a = edge.admit("10.0.0.1".parse().unwrap()).unwrap();
        let seen = a.0.state.load(Ordering::Relaxed);
        assert!(a.0.enter(Phase::Busy));
        // The look said Head; the request began since: not closed.
        assert!(!edge.registry().close(a.0.id, seen, Closed::Evicted));
        assert!(a.0.enter(Phase::Idle));
        let seen = a.0.state.load(Ordering::Relaxed);
        assert!(edge.registry().close(a.0.id, seen, Closed::Evicted));
        // Closed: nothing more begins on it.
        assert!(!a.0.enter(Phase::Busy));
    }

    #[tokio::test]
    async fn request_slots_are_bounded_per_server_and_per_address() {
        let edge = Edge::new(Limits {
            max_in_flight: 3,
            max_in_flight_per_address: 2,
            ..Limits::default()
        });
        let server = AtomicUsize::new(0);
        let a = edge.admit("10.0.0.1".parse().unwrap()).unwrap();
        let b = edge.admit("10.0.0.2".parse().unwrap()).unwrap();
        let s1 = a.0.take_slot(&server).unwrap();
        let s2 = a.0.take_slot(&server).unwrap();
        assert!(a.0.take_slot(&server).is_none(), "the address's share");
        let s3 = b.0.take_slot(&server).unwrap();
        assert!(b.0.take_slot(&server).is_none(), "the server's limit");
        drop((s1, s2, s3));
        assert_eq!(server.load(Ordering::Relaxed), 0);
        assert!(b.0.take_slot(&server).is_some());
    }
}
