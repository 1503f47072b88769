//! The front: datacube's own HTTP/1.1 for the WeChat API (issue 32).
//!
//! A connection's requests are read here first. A request of the plain shape every WeChat
//! client sends — HTTP/1.1, `GET` or `POST`, a path of the WeChat API, its body (if any)
//! told by one `Content-Length` within the body limit, no `Transfer-Encoding`, `Expect` or
//! `Upgrade`, a `Connection` header of `keep-alive` if any — is read, answered through the
//! same way as every request ([`crate::serve::respond`]: slots, the loops' answers, metrics,
//! the request log) and written here, with the bytes hyper would write (headers title-cased in
//! their order, then `Content-Length`, then `Date`). That skips what hyper costs around an
//! answer (its dispatcher, the body channel, the header map's writer), which is what kept
//! cache hits below nginx's rate: a bare hyper server answering a constant measured 0.9×
//! nginx (BENCHMARKS.md).
//!
//! Anything else — another method or version, a chunked or oversized body, a header the
//! front does not take, a head it cannot parse or longer than [`MAX_HEAD`], the admin API and
//! the pages — hands the connection to hyper with every byte not yet answered, untouched:
//! hyper then serves it to its end exactly as it served every connection before (its errors,
//! its limits). So no request is ever parsed two ways.

use std::sync::Arc;

use axum::http::header::{CONNECTION, CONTENT_LENGTH, DATE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::edge::{Phase, Prefetched, Watched};
use crate::serve::{FromLoop, Shared};

/// The longest request head the front reads; a longer one goes to hyper (which refuses heads
/// past its buffer).
const MAX_HEAD: usize = 16 * 1024;

/// The most headers a request the front takes may have.
const MAX_HEADERS: usize = 32;

/// A request of the shape the front takes, as ranges of the bytes read.
struct Head {
    method: Method,
    target: std::ops::Range<usize>,
    headers: Vec<(HeaderName, std::ops::Range<usize>)>,
    /// The head's length (its blank line included).
    len: usize,
    body: usize,
}

/// What became of the bytes read so far.
enum Parsed {
    /// A whole head the front takes.
    Take(Head),
    /// More bytes needed.
    Partial,
    /// hyper's to answer.
    HandOver,
}

/// Serves connection `io` of `shared` until it closes, or hands it to hyper. At shutdown a
/// connection waiting for a request is closed by the edge, and one answering closes after its
/// answer, which says so; `drain` turns true then, for hyper's connections.
pub(crate) async fn serve(
    mut io: Watched<TcpStream>,
    shared: Arc<Shared>,
    drain: watch::Receiver<bool>,
) {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut out = Vec::with_capacity(8 * 1024);
    // Bytes of a partial head parsed already: it is parsed again only once its end may have
    // come (a head sent a byte at a time is not parsed once per byte). New bytes are parsed
    // at once.
    let mut scanned = 0;
    loop {
        let parsed = if scanned == 0 || may_end_head(&buf, scanned) {
            parse(&shared, &buf)
        } else {
            Parsed::Partial
        };
        scanned = buf.len();
        let head = match parsed {
            Parsed::Take(head) => head,
            Parsed::HandOver => return hand_over(io, buf.freeze(), shared, drain).await,
            Parsed::Partial => {
                if buf.len() >= MAX_HEAD {
                    return hand_over(io, buf.freeze(), shared, drain).await;
                }
                if !read_head(&mut io, &mut buf, &shared).await {
                    return;
                }
                continue;
            }
        };
        let whole = head.len + head.body;
        if buf.len() < whole && !read_body(&mut io, &mut buf, &shared, head.len, whole).await {
            return;
        }
        let raw = buf.split_to(whole).freeze();
        scanned = 0;
        let target = std::str::from_utf8(&raw[head.target.clone()]).unwrap_or_default();
        let from_loop = if plain(target) {
            let body = &raw[head.len..];
            crate::serve::respond_from_loop(&shared, &head.method, target, Some(body))
        } else {
            FromLoop::Whole
        };
        let answer = match from_loop {
            FromLoop::Answered(answer) => answer,
            FromLoop::Closed => return,
            FromLoop::Whole => {
                let Some(req) = request(&raw, head) else {
                    // A target or header value httparse took and the http crate does not (hyper
                    // refuses it): hyper's, with all that came after it.
                    let mut unread = BytesMut::with_capacity(raw.len() + buf.len());
                    unread.extend_from_slice(&raw);
                    unread.extend_from_slice(&buf);
                    return hand_over(io, unread.freeze(), shared, drain).await;
                };
                let Some(answer) = crate::serve::respond(&shared, req).await else {
                    return;
                };
                answer
            }
        };
        if !send(&mut io, &mut out, &shared, answer).await {
            return;
        }
        shared.conn.enter(Phase::Idle);
        if !buf.is_empty() {
            // The next request came with this one (pipelined): its head is under way.
            shared.conn.enter(Phase::Head);
        }
    }
}

/// Reads more of a request head into `buf`; `false` when the connection ends instead (it
/// closed, or shutdown began while no request was under way).
#[inline]
async fn read_head(io: &mut Watched<TcpStream>, buf: &mut BytesMut, shared: &Shared) -> bool {
    // Waiting for a request, none of it read: shutdown closes the connection here (the edge's
    // next sweep).
    let waiting = buf.is_empty();
    if waiting {
        if shared.conn.draining() {
            return false;
        }
        shared.conn.waiting(true);
    }
    let read = read_more(io, buf).await;
    if waiting {
        // (A sweep that looked just before this may still close the connection: a request
        // sent as shutdown begins may meet a close, as on any server closing idle
        // connections; clients send it again.)
        shared.conn.waiting(false);
    }
    matches!(read, Ok(n) if n > 0)
}

/// Reads the rest of a request's body, until `buf` holds the `whole` request (its head
/// `head_len` bytes); `false` when the connection ends first (or the edge ends it).
#[inline]
async fn read_body(
    io: &mut Watched<TcpStream>,
    buf: &mut BytesMut,
    shared: &Shared,
    head_len: usize,
    whole: usize,
) -> bool {
    // The body is still coming: the edge counts its bytes against its deadline.
    if !shared.conn.enter(Phase::Body) {
        return false;
    }
    shared.conn.received(buf.len() - head_len);
    while buf.len() < whole {
        buf.reserve(whole - buf.len());
        match io.read_buf(buf).await {
            Ok(n) if n > 0 => shared.conn.received(n),
            _ => return false,
        }
    }
    true
}

/// Writes `answer` (encoded in `out`, left empty); `false` when the connection ends after it
/// (it closes, or writing failed) or without it.
#[inline]
async fn send(
    io: &mut Watched<TcpStream>,
    out: &mut Vec<u8>,
    shared: &Shared,
    answer: axum::response::Response,
) -> bool {
    let closing = shared.conn.draining();
    let Some(close) = encode(answer, closing, out).await else {
        return false;
    };
    if !shared.conn.enter(Phase::Send) {
        return false;
    }
    let written = io.write_all(out).await;
    out.clear();
    if written.is_err() || close {
        let _ = io.shutdown().await;
        return false;
    }
    true
}

/// Resolves once shutdown began (or the server is gone).
async fn drained(drain: &mut watch::Receiver<bool>) {
    let _ = drain.wait_for(|d| *d).await;
}

/// Reads what came, into room for a few kilobytes at least.
async fn read_more(io: &mut Watched<TcpStream>, buf: &mut BytesMut) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(8 * 1024);
    }
    io.read_buf(buf).await
}

/// The connection to hyper, with `read` (bytes read and not answered) first.
async fn hand_over(
    io: Watched<TcpStream>,
    read: Bytes,
    shared: Arc<Shared>,
    mut drain: watch::Receiver<bool>,
) {
    // Shutting down already: the request that came is answered, and says the connection
    // closes (a graceful shutdown before hyper read it would close it unanswered).
    let draining = shared.conn.draining();
    let svc = crate::serve::service(shared);
    let io = Watched { unread: read, ..io };
    let http = crate::serve::connection(io, svc, !draining, None);
    tokio::pin!(http);
    let ended = tokio::select! {
        biased;
        ended = http.as_mut() => ended,
        () = drained(&mut drain), if !draining => {
            http.as_mut().graceful_shutdown();
            http.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Whether the bytes from `scanned` on (with the three before, where an end may have begun)
/// hold a head's end: a blank line.
fn may_end_head(buf: &[u8], scanned: usize) -> bool {
    let from = scanned.saturating_sub(3);
    buf.get(from..).is_some_and(|new| {
        new.windows(2).any(|w| w == b"\n\n") || new.windows(3).any(|w| w == b"\n\r\n")
    })
}

/// Whether every byte of a request target is one the http crate takes in a path or query,
/// so that the loop may look it up as sent (anything else is parsed first, as hyper does).
fn plain(target: &str) -> bool {
    target.bytes().all(|b| PLAIN[usize::from(b)])
}

/// The bytes [`plain`] takes: letters, digits and `/?=&-_.~%+:@!$'()*,;`.
static PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"/?=&-_.~%+:@!$'()*,;";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

/// Looks at the bytes read: a whole head the front takes, a partial one, or hyper's.
fn parse(shared: &Shared, buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Complete(_)) => return Parsed::HandOver,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::HandOver,
    };
    let method = match req.method {
        Some("POST") => Method::POST,
        Some("GET") => Method::GET,
        _ => return Parsed::HandOver,
    };
    let Some(path) = req.path else {
        return Parsed::HandOver;
    };
    // (A fragment is dropped by the http crate: what is before it would be the path.)
    if req.version != Some(1)
        || !path.starts_with('/')
        || path.contains('#')
        || crate::serve::on_router(
            &shared.app,
            shared.admin,
            path.split('?').next().unwrap_or(path),
        )
    {
        return Parsed::HandOver;
    }
    let at = |s: &[u8]| {
        let start = s.as_ptr() as usize - buf.as_ptr() as usize;
        start..start + s.len()
    };
    let mut body = None;
    let mut named = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return Parsed::HandOver;
        };
        if name == CONTENT_LENGTH {
            let digits = h.value;
            if body.is_some()
                || digits.is_empty()
                || digits.len() > 18
                || !digits.iter().all(u8::is_ascii_digit)
            {
                return Parsed::HandOver;
            }
            let n = digits.iter().fold(0usize, |n, d| {
                n.saturating_mul(10).saturating_add(usize::from(d - b'0'))
            });
            if n > shared.app.config().limits.body_limit {
                return Parsed::HandOver;
            }
            body = Some(n);
        } else if name == CONNECTION {
            if !h.value.trim_ascii().eq_ignore_ascii_case(b"keep-alive") {
                return Parsed::HandOver;
            }
        } else if matches!(
            name.as_str(),
            "transfer-encoding" | "expect" | "upgrade" | "te"
        ) {
            return Parsed::HandOver;
        }
        named.push((name, at(h.value)));
    }
    Parsed::Take(Head {
        method,
        target: at(path.as_bytes()),
        headers: named,
        len,
        body: body.unwrap_or(0),
    })
}

/// The request of `head` in `raw` (its head and body), as hyper would have made it.
fn request(raw: &Bytes, head: Head) -> Option<hyper::Request<Prefetched>> {
    let uri = Uri::from_maybe_shared(raw.slice(head.target)).ok()?;
    let mut headers = HeaderMap::with_capacity(head.headers.len());
    for (name, value) in head.headers {
        let value = HeaderValue::from_maybe_shared(raw.slice(value)).ok()?;
        headers.append(name, value);
    }
    let body = match head.body {
        0 => Prefetched::default(),
        _ => Prefetched::read(raw.slice(head.len..)),
    };
    let mut req = hyper::Request::new(body);
    *req.method_mut() = head.method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Some(req)
}

/// Writes `answer` into `out` as hyper does (with `Connection: close` when `closing`, as
/// hyper adds when it will close); whether the connection closes after it. `None` when its
/// body failed.
async fn encode(
    answer: axum::response::Response,
    closing: bool,
    out: &mut Vec<u8>,
) -> Option<bool> {
    let (parts, mut body) = answer.into_parts();
    // An answer's body is one frame of bytes: taken as it is (collected when it is not).
    let body = match body.frame().await {
        None => Bytes::new(),
        Some(frame) => {
            let first = frame.ok()?.into_data().unwrap_or_default();
            if hyper::body::Body::is_end_stream(&body) {
                first
            } else {
                let rest = body.collect().await.ok()?.to_bytes();
                let mut whole = BytesMut::with_capacity(first.len() + rest.len());
                whole.extend_from_slice(&first);
                whole.extend_from_slice(&rest);
                whole.freeze()
            }
        }
    };
    let status = parts.status;
    if status == axum::http::StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut close = closing;
    let mut headers = parts.headers;
    if closing {
        match headers.entry(CONNECTION) {
            axum::http::header::Entry::Occupied(mut entry) => {
                if !entry
                    .iter()
                    .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
                {
                    entry.append(HeaderValue::from_static("close"));
                }
            }
            axum::http::header::Entry::Vacant(entry) => {
                entry.insert(HeaderValue::from_static("close"));
            }
        }
    }
    let mut dated = false;
    for (name, value) in &headers {
        if name == CONTENT_LENGTH || name == axum::http::header::TRANSFER_ENCODING {
            // (The front's answers never carry their own; the length written is the body's.)
            continue;
        }
        if name == CONNECTION && says_close(value) {
            close = true;
        }
        dated |= name == DATE;
        title_case(out, name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let bodiless = status.is_informational()
        || status == axum::http::StatusCode::NO_CONTENT
        || status == axum::http::StatusCode::NOT_MODIFIED;
    if !bodiless {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !dated {
        out.extend_from_slice(b"Date: ");
        http_date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !bodiless {
        out.extend_from_slice(&body);
    }
    Some(close)
}

/// Whether a `Connection` value has the `close` option (as hyper reads it).
fn says_close(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .split(|b| *b == b',')
        .any(|option| option.trim_ascii().eq_ignore_ascii_case(b"close"))
}

/// A header name as hyper writes it with title case on: upper case first and after a dash.
fn title_case(out: &mut Vec<u8>, name: &[u8]) {
    let mut prev = b'-';
    for &c in name {
        out.push(if prev == b'-' {
            c.to_ascii_uppercase()
        } else {
            c
        });
        prev = c;
    }
}

thread_local! {
    /// The `Date` of the current second, formatted once a second per loop.
    static HTTP_DATE: std::cell::RefCell<(u64, String)> = const {
        std::cell::RefCell::new((u64::MAX, String::new()))
    };
}

fn http_date(out: &mut Vec<u8>) {
    let now = unix_seconds();
    HTTP_DATE.with_borrow_mut(|(at, date)| {
        if *at != now {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(now);
            *date = httpdate::fmt_http_date(t);
            *at = now;
        }
        out.extend_from_slice(date.as_bytes());
    });
}

/// The wall clock's second, read cheaply (the kernel's coarse clock on Linux).
fn unix_seconds() -> u64 {
    #[cfg(target_os = "linux")]
    {
        rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse).tv_sec as u64
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_targets_are_ones_the_http_crate_takes_as_they_are() {
        for b in 0..=255u8 {
            let target = format!("/datacube/x?access_token={}", b as char);
            if plain(&target) {
                let uri: Uri = target.parse().unwrap();
                assert_eq!(uri.path_and_query().unwrap().as_str(), target);
            }
        }
        assert!(plain(
            "/datacube/getusersummary?access_token=98_aB-c.d~e%2B"
        ));
        assert!(!plain("/datacube/x?a=\"b\""));
        assert!(!plain("/datacube/x#f"));
    }

    #[test]
    fn header_names_are_title_cased_as_hyper_does() {
        for (name, cased) in [
            ("content-type", "Content-Type"),
            ("retkey", "Retkey"),
            ("logicret", "Logicret"),
            ("x--a", "X--A"),
            ("-a", "-A"),
        ] {
            let mut out = Vec::new();
            title_case(&mut out, name.as_bytes());
            assert_eq!(String::from_utf8(out).unwrap(), cased);
        }
    }
}
