//! One client connection and its upstream connection, request after request, every wait on
//! the client bounded ([`super::Limits`]) and ended early when the slot is needed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datacube_protocol::http1::Framing;
use datacube_protocol::xml::Verdict;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::record::record;
use super::wire::{
    read_request_head, read_response_head, stream_through, Head, ProxyError, RequestHead, Side,
};
use super::{Reply, Slot, State, INSPECT_LIMIT, MAX_ANSWER_HEAD, MAX_CHUNKED};

const GATEWAY_TIMEOUT: &[u8] = b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n";
const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n";
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const TOO_LARGE: &[u8] =
    b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// How a wait on the client ended badly.
enum Cut {
    /// Too slow, or closed to make room: 408 if a request had begun.
    Late,
    Failed(ProxyError),
}

/// Runs `read` while the connection waits on its client: within `limit`, and unless the slot
/// is wanted for another connection.
async fn from_client<T>(
    slot: &Slot,
    limit: Duration,
    read: impl std::future::Future<Output = Result<T, ProxyError>>,
) -> Result<T, Cut> {
    slot.waiting();
    let out = tokio::select! {
        r = tokio::time::timeout(limit, read) => match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Cut::Failed(e)),
            Err(_) => Err(Cut::Late),
        },
        () = slot.evicted() => Err(Cut::Late),
    };
    slot.busy();
    out
}

/// Serves one client connection.
pub(super) async fn serve(state: Arc<State>, stream: TcpStream, slot: Slot) {
    let limits = state.config.limits;
    let mut client = Side::new(stream);
    let mut upstream: Option<Side> = None;
    let mut first = true;
    loop {
        let wait = if first {
            limits.header_timeout
        } else {
            limits.idle_timeout + limits.header_timeout
        };
        first = false;
        let Some(request) = next_request(&state, &mut client, &slot, wait).await else {
            break;
        };
        let started = Instant::now();
        let Some(body) = request_body(&mut client, &slot, limits, &request).await else {
            break;
        };
        if !exchange(&state, &mut client, &mut upstream, &request, body, started).await {
            break;
        }
    }
}

/// Reads the next request's head from the client within `wait`; `None` when the connection
/// ends instead (closed, too slow, or refused with a 408, 413 or 400).
async fn next_request(
    state: &State,
    client: &mut Side,
    slot: &Slot,
    wait: Duration,
) -> Option<RequestHead> {
    let limits = state.config.limits;
    let head = from_client(
        slot,
        wait,
        read_request_head(client, &state.prefix, limits.max_head),
    )
    .await;
    match head {
        Ok(Some(r)) => Some(r),
        Ok(None) => None,
        Err(Cut::Late) => {
            if !client.buf.is_empty() {
                let _ = client.stream.write_all(REQUEST_TIMEOUT).await;
            }
            None
        }
        Err(Cut::Failed(ProxyError::TooLarge)) => {
            crate::metrics::refused("too_large");
            let _ = client.stream.write_all(TOO_LARGE).await;
            None
        }
        Err(Cut::Failed(e)) => {
            tracing::debug!(error = %e, "a request refused");
            crate::metrics::refused("bad_request");
            let _ = client.stream.write_all(BAD_REQUEST).await;
            None
        }
    }
}

/// Reads `request`'s body from the client (after a 100 Continue if it expects one); `None`
/// when the connection ends instead (refused with a 413, 408 or 400, or failed).
async fn request_body(
    client: &mut Side,
    slot: &Slot,
    limits: super::Limits,
    request: &RequestHead,
) -> Option<Vec<u8>> {
    let framing = request.head.framed.framing;
    if matches!(framing, Framing::Length(n) if n > limits.max_body as u64) {
        crate::metrics::refused("too_large");
        let _ = client.stream.write_all(TOO_LARGE).await;
        return None;
    }
    if request.head.framed.expect_continue {
        // The body follows only after a 100: say it here (the upstream's is skipped).
        if client
            .stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
        {
            return None;
        }
    }
    let body = from_client(
        slot,
        limits.body_timeout,
        client.read_body(framing, limits.max_body),
    )
    .await;
    match body {
        Ok(Some(b)) => Some(b),
        Ok(None) | Err(Cut::Failed(ProxyError::TooLarge)) => {
            crate::metrics::refused("too_large");
            let _ = client.stream.write_all(TOO_LARGE).await;
            None
        }
        Err(Cut::Late) => {
            crate::metrics::refused("timeout");
            let _ = client.stream.write_all(REQUEST_TIMEOUT).await;
            None
        }
        Err(Cut::Failed(ProxyError::Malformed(_))) => {
            crate::metrics::refused("bad_request");
            let _ = client.stream.write_all(BAD_REQUEST).await;
            None
        }
        Err(Cut::Failed(_)) => None,
    }
}

/// Sends the request upstream, passes the answer (or a 504 or 502) back to the client and
/// records the exchange; whether the client connection stays open for another request.
async fn exchange(
    state: &State,
    client: &mut Side,
    upstream: &mut Option<Side>,
    request: &RequestHead,
    body: Vec<u8>,
    started: Instant,
) -> bool {
    let limit = state.config.timeout;
    let to_head = request.method == "HEAD";
    let exchange = tokio::time::timeout(
        limit,
        send_upstream(state, upstream, request, &body, to_head),
    )
    .await;
    let (status, head) = match exchange {
        Ok(Ok(answer)) => answer,
        failed => {
            *upstream = None;
            let (verdict, reply) = match failed {
                Err(_) => (Verdict::Timeout, GATEWAY_TIMEOUT),
                Ok(Err(e)) => (Verdict::Unreachable(e.to_string()), BAD_GATEWAY),
                Ok(Ok(_)) => unreachable!("handled above"),
            };
            let sent = client.stream.write_all(reply).await;
            let keep = sent.is_ok() && request.head.framed.keep_alive;
            record(state, request, Some(body), Reply::Judged(verdict), started).await;
            return keep;
        }
    };
    // The answer goes back as it came; its body is held when small enough to judge.
    let Some(up) = upstream.as_mut() else {
        return false;
    };
    let answered = pass_answer(up, &mut client.stream, &head).await;
    let failed = answered.is_err();
    if failed || !head.framed.keep_alive {
        *upstream = None;
    }
    let reply = match (answered, status) {
        (Err(e), _) => Reply::Judged(Verdict::Unreachable(e.to_string())),
        (Ok(Some(b)), 200) => Reply::Body(b, head.framed.framing),
        (Ok(None), 200) => Reply::Judged(Verdict::Malformed("a reply over 1 MiB".into())),
        (Ok(_), status) => Reply::Judged(Verdict::Status(status)),
    };
    let keep = !failed && request.head.framed.keep_alive;
    record(state, request, Some(body), reply, started).await;
    keep
}

/// Passes the upstream's answer (its head already read) back to the client as it came, and
/// returns its body when it is small enough to be judged.
async fn pass_answer(
    up: &mut Side,
    client: &mut TcpStream,
    head: &Head,
) -> Result<Option<Vec<u8>>, ProxyError> {
    let held = match head.framed.framing {
        Framing::Length(n) if n > INSPECT_LIMIT as u64 => {
            client.write_all(&head.bytes).await?;
            stream_through(up, client, n).await?;
            None
        }
        framing => {
            let limit = if framing == Framing::Close {
                INSPECT_LIMIT
            } else {
                MAX_CHUNKED
            };
            match up.read_body(framing, limit).await? {
                // Head and body in one write.
                Some(b) => {
                    let mut out = Vec::with_capacity(head.bytes.len() + b.len());
                    out.extend_from_slice(&head.bytes);
                    out.extend_from_slice(&b);
                    client.write_all(&out).await?;
                    Some(b)
                }
                // An answer to the end of the connection, longer than is held:
                // passed on as it comes.
                None => {
                    client.write_all(&head.bytes).await?;
                    client.write_all(&up.buf).await?;
                    up.buf.clear();
                    tokio::io::copy(&mut up.stream, client).await?;
                    None
                }
            }
        }
    };
    Ok(held)
}

/// Sends the request (head and body) upstream on the kept connection, or a new one, and reads
/// the answer's head. A kept connection the upstream has meanwhile closed fails before any
/// answer: then the request goes once more on a new connection.
async fn send_upstream(
    state: &State,
    upstream: &mut Option<Side>,
    request: &RequestHead,
    body: &[u8],
    to_head: bool,
) -> Result<(u16, Head), ProxyError> {
    for attempt in 0..2 {
        let reused = upstream.is_some();
        let up = match &mut *upstream {
            Some(u) => u,
            none => none.insert(Side::new(
                TcpStream::connect(&state.addr)
                    .await
                    .map_err(ProxyError::Io)?,
            )),
        };
        let sent = async {
            // Head and body in one write: one segment, one wake-up upstream.
            let mut out = Vec::with_capacity(request.head.bytes.len() + body.len());
            out.extend_from_slice(&request.head.bytes);
            out.extend_from_slice(body);
            up.stream.write_all(&out).await?;
            read_response_head(up, to_head, MAX_ANSWER_HEAD).await
        }
        .await;
        match sent {
            Err(ProxyError::Io(_) | ProxyError::Closed)
                if reused && attempt == 0 && up.buf.is_empty() =>
            {
                *upstream = None;
            }
            other => return other,
        }
    }
    Err(ProxyError::Closed)
}
