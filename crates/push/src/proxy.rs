//! `datacube proxy`: stands between WeChat and the developer's server, passes every request
//! and answer through unchanged, and records what it saw.
//!
//! The proxy works on the bytes: each client connection is one task that owns it and its own
//! connection to the upstream, reads a request head (`httparse`), sends the head and body on
//! as they came — only the hop-by-hop headers (RFC 9110 §7.6.1: `Connection`, `Keep-Alive`…)
//! stay on their own hop — and sends the answer back the same way. Nothing is re-encoded:
//! header names keep their case and order, bodies their framing.
//!
//! A WeChat push (a POST with `signature`, `timestamp` and `nonce`) is also recorded: its
//! delivery as one callback (time cost and verdict, judged as `push` judges replies) and, once
//! per `MsgId`, its message (or follow). If the upstream does not answer within the limit
//! (WeChat's 5 s), the proxy answers `504` itself just before WeChat would give up, and records
//! a failed callback. Bodies up to [`INSPECT_LIMIT`] are held to be inspected; larger ones with
//! a `Content-Length` stream through in pieces, and chunked ones are held up to
//! [`MAX_CHUNKED`]: memory stays bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use datacube_engine::event::MsgType;
use datacube_engine::{Event, Kind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::crypto::AesKey;
use crate::recorder::{Now, Recorder};
use crate::sign;
use crate::xml::{self, Expect, Mode, Verdict};

/// Bodies up to this size are read whole, to be inspected.
pub const INSPECT_LIMIT: usize = 1 << 20;
/// Chunked bodies are held whole up to this size (past it: 413 or 502).
pub const MAX_CHUNKED: usize = 16 << 20;
/// Request and response heads larger than this are refused.
const MAX_HEAD: usize = 64 * 1024;

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

/// How the upstream answered a delivery. Whether a POST is a push at all (signature, XML,
/// decryption) and whether its reply is one WeChat accepts are decided once the answer is on
/// its way back, not before the request goes upstream.
enum Reply {
    /// Already known: a timeout, a failure, a status other than 200, a reply too large.
    Judged(Verdict),
    /// A 200 with this body (as framed), to judge.
    Body(Vec<u8>, Framing),
}

impl Recent {
    /// Whether `id` is new (and remembers it).
    fn first(&mut self, id: &str) -> bool {
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
    serve_with(listener, config, recorder, now, shutdown, Arc::default()).await
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
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut listeners = listeners.into_iter();
    let Some(first) = listeners.next() else {
        return Ok(());
    };
    let mut threads = Vec::new();
    for (i, listener) in listeners.enumerate() {
        let (config, recorder, now, recent) = (
            config.clone(),
            recorder.clone(),
            now.clone(),
            recent.clone(),
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
                        serve_with(listener, config, recorder, now, shutdown, recent).await
                    })
                })?,
        );
    }
    let listener = TcpListener::from_std(first)?;
    let result = serve_with(listener, config, recorder, now, shutdown, recent).await;
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

async fn serve_with(
    listener: TcpListener,
    config: ProxyConfig,
    recorder: Recorder,
    now: Now,
    shutdown: impl std::future::Future<Output = ()>,
    recent: Arc<std::sync::Mutex<Recent>>,
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
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(state.clone(), stream));
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

/// Hop-by-hop headers (RFC 9110 §7.6.1): they belong to one connection, not the message.
fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(usize),
    Chunked,
    /// Up to the end of the connection (answers only).
    Close,
}

/// A parsed head: the bytes to send on (hop-by-hop headers left out), and what matters.
struct Head {
    bytes: Vec<u8>,
    framing: Framing,
    /// The sender's side of the connection stays open after this message.
    keep_alive: bool,
    expect_continue: bool,
}

fn parse_framing(
    headers: &[httparse::Header<'_>],
    http10: bool,
) -> Result<(Framing, bool, bool), &'static str> {
    let (mut framing, mut close, mut keep, mut expect) = (None, http10, false, false);
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or("a bad Content-Length")?;
            if framing.is_some_and(|f| f != Framing::Length(n)) {
                return Err("conflicting Content-Length");
            }
            framing = Some(Framing::Length(n));
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !h.value.eq_ignore_ascii_case(b"chunked") {
                return Err("a Transfer-Encoding other than chunked");
            }
            framing = Some(Framing::Chunked);
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            close |= v.contains("close");
            keep |= v.contains("keep-alive");
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect = h.value.eq_ignore_ascii_case(b"100-continue");
        }
    }
    let keep_alive = if http10 { keep } else { !close };
    Ok((framing.unwrap_or(Framing::None), keep_alive, expect))
}

/// Writes the head lines of `raw` (a complete head) without the hop-by-hop headers.
fn strip_head(raw: &[u8], out: &mut Vec<u8>) {
    let mut lines = raw.split_inclusive(|b| *b == b'\n');
    if let Some(first) = lines.next() {
        out.extend_from_slice(first);
    }
    for line in lines {
        let name = line.split(|b| *b == b':').next().unwrap_or(b"");
        let name = std::str::from_utf8(name).unwrap_or("").trim();
        if line != b"\r\n" && hop_by_hop(name) {
            continue;
        }
        out.extend_from_slice(line);
    }
}

/// A connection's buffered reader.
struct Side {
    stream: TcpStream,
    buf: BytesMut,
}

impl Side {
    fn new(stream: TcpStream) -> Side {
        Side {
            stream,
            buf: BytesMut::with_capacity(8192),
        }
    }

    /// Reads more; `Ok(0)` at the end of the connection.
    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(8192);
        }
        self.stream.read_buf(&mut self.buf).await
    }

    /// Reads the whole body of `framing` into memory (its raw bytes, framing included), when
    /// it is at most `limit` long.
    async fn read_body(
        &mut self,
        framing: Framing,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, ProxyError> {
        match framing {
            Framing::None => Ok(Some(Vec::new())),
            Framing::Length(n) if n <= limit => {
                while self.buf.len() < n {
                    if self.fill().await? == 0 {
                        return Err(ProxyError::Closed);
                    }
                }
                Ok(Some(self.buf.split_to(n).to_vec()))
            }
            Framing::Length(_) => Ok(None),
            Framing::Chunked => {
                let mut at = 0;
                loop {
                    match chunked_end(&self.buf[..], at) {
                        ChunkScan::Done(end) => return Ok(Some(self.buf.split_to(end).to_vec())),
                        ChunkScan::More(next) => at = next,
                        ChunkScan::Bad => return Err(ProxyError::Malformed("a bad chunked body")),
                    }
                    if self.buf.len() > MAX_CHUNKED {
                        return Err(ProxyError::TooLarge);
                    }
                    if self.fill().await? == 0 {
                        return Err(ProxyError::Closed);
                    }
                }
            }
            Framing::Close => {
                while self.fill().await? > 0 {
                    if self.buf.len() > limit {
                        return Ok(None);
                    }
                }
                Ok(Some(self.buf.split().to_vec()))
            }
        }
    }
}

enum ChunkScan {
    /// The body ends at this offset.
    Done(usize),
    /// Complete chunks up to this offset; more bytes are needed.
    More(usize),
    Bad,
}

/// Walks chunked framing in `buf` from `at` (the start of a chunk-size line).
fn chunked_end(buf: &[u8], mut at: usize) -> ChunkScan {
    loop {
        match httparse::parse_chunk_size(&buf[at..]) {
            Ok(httparse::Status::Complete((len, 0))) => {
                // Trailers, then an empty line.
                let mut pos = at + len;
                loop {
                    match buf[pos..].windows(2).position(|w| w == b"\r\n") {
                        Some(0) => return ChunkScan::Done(pos + 2),
                        Some(i) => pos += i + 2,
                        None => return ChunkScan::More(at),
                    }
                }
            }
            Ok(httparse::Status::Complete((len, size))) => {
                let next = at + len + size as usize + 2;
                if next > buf.len() {
                    return ChunkScan::More(at);
                }
                if &buf[next - 2..next] != b"\r\n" {
                    return ChunkScan::Bad;
                }
                at = next;
            }
            Ok(httparse::Status::Partial) => return ChunkScan::More(at),
            Err(_) => return ChunkScan::Bad,
        }
    }
}

/// Copies exactly `n` body bytes from `from` (its buffer first) to `to`.
async fn stream_through(
    from: &mut Side,
    to: &mut TcpStream,
    mut n: usize,
) -> Result<(), ProxyError> {
    loop {
        let take = n.min(from.buf.len());
        if take > 0 {
            to.write_all(&from.buf[..take]).await?;
            from.buf.advance(take);
            n -= take;
        }
        if n == 0 {
            return Ok(());
        }
        if from.fill().await? == 0 {
            return Err(ProxyError::Closed);
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ProxyError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the connection closed mid-message")]
    Closed,
    #[error("{0}")]
    Malformed(&'static str),
    #[error("too large")]
    TooLarge,
}

/// A request's head, parsed: the target and the method matter besides the framing.
struct RequestHead {
    head: Head,
    method: String,
    target: String,
}

async fn read_request_head(
    client: &mut Side,
    prefix: &str,
) -> Result<Option<RequestHead>, ProxyError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&client.buf) {
            Ok(httparse::Status::Complete(len)) => {
                let method = req.method.unwrap_or("GET").to_owned();
                let target = req.path.unwrap_or("/").to_owned();
                let http10 = req.version == Some(0);
                let (framing, keep_alive, expect_continue) =
                    parse_framing(req.headers, http10).map_err(ProxyError::Malformed)?;
                let raw = client.buf.split_to(len);
                let mut bytes = Vec::with_capacity(len + prefix.len());
                if prefix.is_empty() {
                    strip_head(&raw, &mut bytes);
                } else {
                    // The upstream's path prefix goes before the target.
                    let first_line_end = raw.iter().position(|b| *b == b'\n').unwrap_or(0);
                    let line = String::from_utf8_lossy(&raw[..first_line_end]);
                    let line =
                        line.replacen(&format!(" {target} "), &format!(" {prefix}{target} "), 1);
                    bytes.extend_from_slice(line.as_bytes());
                    let mut rest = Vec::new();
                    strip_head(&raw[first_line_end..], &mut rest);
                    bytes.extend_from_slice(&rest);
                }
                return Ok(Some(RequestHead {
                    head: Head {
                        bytes,
                        framing,
                        keep_alive,
                        expect_continue,
                    },
                    method,
                    target,
                }));
            }
            Ok(httparse::Status::Partial) => {
                if client.buf.len() > MAX_HEAD {
                    return Err(ProxyError::TooLarge);
                }
                if client.fill().await? == 0 {
                    return if client.buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(ProxyError::Closed)
                    };
                }
            }
            Err(_) => return Err(ProxyError::Malformed("not an HTTP/1.1 request")),
        }
    }
}

/// Reads an answer's head, skipping interim (1xx) answers: status and head.
async fn read_response_head(up: &mut Side, head_request: bool) -> Result<(u16, Head), ProxyError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&up.buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = resp.code.unwrap_or(0);
                let http10 = resp.version == Some(0);
                let (mut framing, keep_alive, _) =
                    parse_framing(resp.headers, http10).map_err(ProxyError::Malformed)?;
                if (100..200).contains(&status) {
                    up.buf.advance(len);
                    continue;
                }
                if head_request || status == 204 || status == 304 {
                    framing = Framing::None;
                } else if framing == Framing::None {
                    framing = Framing::Close;
                }
                let raw = up.buf.split_to(len);
                let mut bytes = Vec::with_capacity(len);
                strip_head(&raw, &mut bytes);
                return Ok((
                    status,
                    Head {
                        bytes,
                        framing,
                        keep_alive: keep_alive && framing != Framing::Close,
                        expect_continue: false,
                    },
                ));
            }
            Ok(httparse::Status::Partial) => {
                if up.buf.len() > MAX_HEAD {
                    return Err(ProxyError::TooLarge);
                }
                if up.fill().await? == 0 {
                    return Err(ProxyError::Closed);
                }
            }
            Err(_) => return Err(ProxyError::Malformed("not an HTTP/1.1 answer")),
        }
    }
}

const GATEWAY_TIMEOUT: &[u8] = b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n";
const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const TOO_LARGE: &[u8] =
    b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// One client connection and its upstream connection, request after request.
async fn connection(state: Arc<State>, stream: TcpStream) {
    let mut client = Side::new(stream);
    let mut upstream: Option<Side> = None;
    loop {
        let request = match read_request_head(&mut client, &state.prefix).await {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(ProxyError::TooLarge) => {
                let _ = client.stream.write_all(TOO_LARGE).await;
                break;
            }
            Err(_) => {
                let _ = client.stream.write_all(BAD_REQUEST).await;
                break;
            }
        };
        let started = Instant::now();
        if request.head.expect_continue {
            // The body follows only after a 100: say it here (the upstream's is skipped).
            if client
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
            {
                break;
            }
        }
        let body = match client.read_body(request.head.framing, INSPECT_LIMIT).await {
            Ok(b) => b,
            Err(ProxyError::TooLarge) => {
                let _ = client.stream.write_all(TOO_LARGE).await;
                break;
            }
            Err(_) => break,
        };
        let limit = state.config.timeout;
        let head_request = request.method == "HEAD";
        let exchange = tokio::time::timeout(limit, async {
            // A kept connection the upstream has meanwhile closed fails before any answer:
            // then the request (when it is held) goes once more on a new connection.
            for attempt in 0..2 {
                let reused = upstream.is_some();
                let up = match &mut upstream {
                    Some(u) => u,
                    none => none.insert(Side::new(
                        TcpStream::connect(&state.addr)
                            .await
                            .map_err(ProxyError::Io)?,
                    )),
                };
                let sent = async {
                    match (&body, request.head.framing) {
                        // Head and body in one write: one segment, one wake-up upstream.
                        (Some(b), _) => {
                            let mut out = Vec::with_capacity(request.head.bytes.len() + b.len());
                            out.extend_from_slice(&request.head.bytes);
                            out.extend_from_slice(b);
                            up.stream.write_all(&out).await?;
                        }
                        (None, Framing::Length(n)) => {
                            up.stream.write_all(&request.head.bytes).await?;
                            stream_through(&mut client, &mut up.stream, n).await?
                        }
                        _ => return Err(ProxyError::Malformed("a body it cannot forward")),
                    }
                    read_response_head(up, head_request).await
                }
                .await;
                match sent {
                    Err(ProxyError::Io(_) | ProxyError::Closed)
                        if reused && attempt == 0 && body.is_some() && up.buf.is_empty() =>
                    {
                        upstream = None;
                    }
                    other => return other,
                }
            }
            Err(ProxyError::Closed)
        })
        .await;
        let (status, head) = match exchange {
            Ok(Ok(answer)) => answer,
            failed => {
                upstream = None;
                let (verdict, reply) = match failed {
                    Err(_) => (Verdict::Timeout, GATEWAY_TIMEOUT),
                    Ok(Err(e)) => (Verdict::Unreachable(e.to_string()), BAD_GATEWAY),
                    Ok(Ok(_)) => unreachable!("handled above"),
                };
                let sent = client.stream.write_all(reply).await;
                let keep = sent.is_ok() && request.head.keep_alive && body.is_some();
                record(&state, &request, body, Reply::Judged(verdict), started).await;
                if !keep {
                    break;
                }
                continue;
            }
        };
        // The answer goes back as it came; its body is held when small enough to judge.
        let Some(up) = upstream.as_mut() else { break };
        let answered = async {
            let held = match head.framing {
                Framing::Length(n) if n > INSPECT_LIMIT => {
                    client.stream.write_all(&head.bytes).await?;
                    stream_through(up, &mut client.stream, n).await?;
                    None
                }
                framing => {
                    let b = up.read_body(framing, MAX_CHUNKED).await?;
                    match &b {
                        // Head and body in one write.
                        Some(b) => {
                            let mut out = Vec::with_capacity(head.bytes.len() + b.len());
                            out.extend_from_slice(&head.bytes);
                            out.extend_from_slice(b);
                            client.stream.write_all(&out).await?;
                        }
                        None => client.stream.write_all(&head.bytes).await?,
                    }
                    b
                }
            };
            Ok::<_, ProxyError>(held)
        }
        .await;
        let failed = answered.is_err();
        if failed || !head.keep_alive {
            upstream = None;
        }
        let reply = match (answered, status) {
            (Err(e), _) => Reply::Judged(Verdict::Unreachable(e.to_string())),
            (Ok(Some(b)), 200) => Reply::Body(b, head.framing),
            (Ok(None), 200) => Reply::Judged(Verdict::Malformed("a reply over 1 MiB".into())),
            (Ok(_), status) => Reply::Judged(Verdict::Status(status)),
        };
        let keep = !failed && request.head.keep_alive;
        record(&state, &request, body, reply, started).await;
        if !keep {
            break;
        }
    }
}

/// The payload of a held body: chunked framing removed.
fn body_of(raw: &[u8], framing: Framing) -> Option<Vec<u8>> {
    if framing != Framing::Chunked {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    while let Ok(httparse::Status::Complete((len, size))) = httparse::parse_chunk_size(&raw[at..]) {
        if size == 0 {
            break;
        }
        let start = at + len;
        let end = start + size as usize;
        out.extend_from_slice(raw.get(start..end)?);
        at = end + 2;
    }
    Some(out)
}

/// Records a POST's delivery (other requests are not pushes), once its answer is written.
async fn record(
    state: &State,
    request: &RequestHead,
    body: Option<Vec<u8>>,
    reply: Reply,
    started: Instant,
) {
    let (Some(body), "POST") = (body, request.method.as_str()) else {
        return;
    };
    let limit = state.config.timeout;
    let cost = started.elapsed();
    let cost = match reply {
        Reply::Judged(Verdict::Timeout) => cost.max(limit),
        _ => cost,
    };
    let query = request.target.split_once('?').map_or("", |(_, q)| q);
    let time = (state.now)().as_second();
    let mut events = Vec::with_capacity(2);
    delivery_events(
        state,
        query,
        &body,
        reply,
        cost.as_millis() as u64,
        time,
        &mut events,
    );
    if events.is_empty() {
        return;
    }
    let full = match state.outbox.lock() {
        Ok(mut o) => {
            o.append(&mut events);
            (o.len() >= OUTBOX).then(|| std::mem::take(&mut *o))
        }
        Err(_) => None,
    };
    if let Some(full) = full {
        // Many waiting: hand them over now (and wait if the recorder is behind).
        state.recorder.record_many(full).await;
    }
}

/// The events of one push's delivery: the callback, and the message (or follow) once.
fn delivery_events(
    state: &State,
    query: &str,
    body: &[u8],
    reply: Reply,
    cost_ms: u64,
    time: i64,
    events: &mut Vec<Event>,
) {
    let config = &state.config;
    let Some(seen) = read_push(config, query, body) else {
        return;
    };
    let verdict = match reply {
        Reply::Judged(v) => v,
        Reply::Body(b, framing) => {
            judge(config, &seen, body_of(&b, framing).as_deref().unwrap_or(&b))
        }
    };
    if let Some(e) = push_event(&config.appid, &seen, time) {
        let first = match (&e.id, state.recent.lock()) {
            (Some(id), Ok(mut recent)) => recent.first(id),
            _ => true,
        };
        if first {
            events.push(e);
        }
    }
    events.push(Event {
        appid: config.appid.clone(),
        id: None,
        time,
        kind: Kind::Reply {
            cost_ms,
            ok: verdict.ok(),
        },
    });
    tracing::debug!(verdict = %verdict.label(), cost_ms, "push proxied");
}

/// What a push request said, as far as it could be read.
struct Seen {
    mode: Mode,
    openid: Option<String>,
    original_id: Option<String>,
    /// The message's kind and id, or the event.
    what: Option<Fields>,
}

type Fields = xml::Fields;

fn query_map(query: &str) -> std::collections::HashMap<String, String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => match (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a push: its mode, user and message, decrypting when the key is known.
fn read_push(config: &ProxyConfig, query: &str, body: &[u8]) -> Option<Seen> {
    let q = query_map(query);
    let (timestamp, nonce, signature) = (q.get("timestamp")?, q.get("nonce")?, q.get("signature")?);
    // With the token known, a request that does not carry WeChat's signature is not a push.
    if let Some(token) = &config.token {
        if !sign::same(&sign::signature(token, timestamp, nonce), signature) {
            tracing::debug!("a POST whose signature does not verify: not recorded");
            return None;
        }
    }
    let text = std::str::from_utf8(body).ok()?;
    let outer = xml::parse(text).ok();
    let encrypted = q.get("encrypt_type").is_some_and(|t| t == "aes");
    let mode = match (&outer, encrypted) {
        (_, false) => Mode::Plain,
        (Some(f), true) if f.get("MsgType").is_some() => Mode::Compat,
        _ => Mode::Safe,
    };
    let inner = match (mode, &outer, &config.key) {
        (Mode::Safe, Some(f), Some(key)) => f
            .get("Encrypt")
            .and_then(|e| key.decrypt(e, &config.appid).ok())
            .and_then(|x| xml::parse(&x).ok()),
        (Mode::Safe, _, _) => None,
        _ => outer.clone(),
    };
    Some(Seen {
        mode,
        openid: q
            .get("openid")
            .cloned()
            .or_else(|| inner.as_ref()?.get("FromUserName").map(str::to_owned)),
        original_id: inner
            .as_ref()
            .and_then(|f| f.get("ToUserName"))
            .or_else(|| outer.as_ref()?.get("ToUserName"))
            .map(str::to_owned),
        what: inner,
    })
}

/// The events of what a push carried (a message, a follow or an unfollow), if any.
fn push_event(appid: &str, seen: &Seen, time: i64) -> Option<Event> {
    let f = seen.what.as_ref()?;
    let openid = f.get("FromUserName")?.to_owned();
    let (id, kind) = match f.get("MsgType")? {
        "event" => {
            let created = f.get("CreateTime").unwrap_or("");
            match f.get("Event")? {
                // WeChat de-duplicates events by FromUserName + CreateTime.
                "subscribe" => (
                    format!("proxy-{openid}-{created}-subscribe"),
                    Kind::Follow {
                        openid,
                        // A follow through a QR code carries `qrscene_…`: channel 30 (扫描二维码).
                        source: if f.get("EventKey").is_some_and(|k| k.starts_with("qrscene_")) {
                            30
                        } else {
                            0
                        },
                    },
                ),
                "unsubscribe" => (
                    format!("proxy-{openid}-{created}-unsubscribe"),
                    Kind::Unfollow { openid },
                ),
                _ => return None,
            }
        }
        t => {
            let msg_type = match t {
                "text" => MsgType::Text,
                "image" => MsgType::Image,
                "voice" => MsgType::Voice,
                "video" => MsgType::Video,
                "shortvideo" => MsgType::ShortVideo,
                "location" => MsgType::Location,
                "link" => MsgType::Link,
                _ => return None,
            };
            // Retries carry the same MsgId: the message counts once.
            (
                format!("proxy-{}", f.get("MsgId")?),
                Kind::Message { openid, msg_type },
            )
        }
    };
    Some(Event {
        appid: appid.to_owned(),
        id: Some(id),
        time,
        kind,
    })
}

/// Judges a reply the proxy saw, as far as its settings allow: without the token, an
/// encrypted reply's envelope is checked but its signature cannot be; without the key, it is
/// not decrypted.
fn judge(config: &ProxyConfig, seen: &Seen, body: &[u8]) -> Verdict {
    let expect = Expect {
        mode: seen.mode,
        token: config.token.as_deref().unwrap_or(""),
        key: config.key.as_ref(),
        appid: &config.appid,
        openid: seen.openid.as_deref().unwrap_or(""),
        original_id: seen.original_id.as_deref().unwrap_or(""),
    };
    if config.token.is_none() && seen.mode != Mode::Plain {
        if let Ok(f) = xml::parse(std::str::from_utf8(body).unwrap_or("")) {
            if f.get("Encrypt").is_some() {
                return if ["MsgSignature", "TimeStamp", "Nonce"]
                    .iter()
                    .all(|k| f.get(k).is_some())
                {
                    Verdict::Answered("encrypted, not verified".into())
                } else {
                    Verdict::Malformed(
                        "an encrypted reply needs MsgSignature, TimeStamp and Nonce".into(),
                    )
                };
            }
        }
    }
    xml::judge_body(body, &expect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded() {
        let q = query_map("signature=ab&timestamp=1&nonce=2&openid=o%2Bx&x=a+b");
        assert_eq!(q["openid"], "o+x");
        assert_eq!(q["x"], "a b");
        assert_eq!(percent_decode("%zz%"), "%zz%");
    }

    #[test]
    fn pushes_become_events() {
        let config = ProxyConfig {
            upstream: "http://127.0.0.1:1".parse().unwrap(),
            appid: "wx1".into(),
            token: None,
            key: None,
            timeout: Duration::from_secs(5),
        };
        let body = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName>\n<FromUserName><![CDATA[oU]]></FromUserName>\n<CreateTime>1</CreateTime>\n<MsgType><![CDATA[voice]]></MsgType>\n<MediaId><![CDATA[m]]></MediaId>\n<Format><![CDATA[amr]]></Format>\n<MsgId>23892507910728562</MsgId>\n<Recognition><![CDATA[]]></Recognition>\n</xml>";
        let seen = read_push(
            &config,
            "signature=s&timestamp=1&nonce=2&openid=oU",
            body.as_bytes(),
        )
        .unwrap();
        let e = push_event("wx1", &seen, 100).unwrap();
        assert_eq!(e.id.as_deref(), Some("proxy-23892507910728562"));
        assert_eq!(
            e.kind,
            Kind::Message {
                openid: "oU".into(),
                msg_type: MsgType::Voice
            }
        );
        let sub = body
            .replace("<![CDATA[voice]]>", "<![CDATA[event]]>")
            .replace(
                "<MediaId><![CDATA[m]]></MediaId>",
                "<Event><![CDATA[subscribe]]></Event>\n<EventKey><![CDATA[qrscene_7]]></EventKey>",
            );
        let seen = read_push(&config, "signature=s&timestamp=1&nonce=2", sub.as_bytes()).unwrap();
        assert_eq!(
            push_event("wx1", &seen, 100).unwrap().kind,
            Kind::Follow {
                openid: "oU".into(),
                source: 30
            }
        );
        assert!(
            read_push(&config, "timestamp=1&nonce=2", body.as_bytes()).is_none(),
            "not a push without a signature"
        );
    }
}
