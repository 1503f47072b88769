//! `datacube proxy`: stands between WeChat and the developer's server, passes every request
//! and answer through unchanged, and records what it saw.
//!
//! Every request goes to the upstream with its method, path, query, headers (hop-by-hop
//! headers aside, as any HTTP proxy) and body; the upstream's status, headers and body come
//! back as they are. A WeChat push (a POST with `signature`, `timestamp` and `nonce`) is also
//! recorded: its delivery as one callback (time cost and verdict, as `push` judges replies)
//! and, once per `MsgId`, its message. If the upstream does not answer within the limit
//! (WeChat's 5 s), the proxy answers 504 itself just before WeChat would give up, and records
//! a failed callback. Bodies are held in memory only up to [`INSPECT_LIMIT`]; larger ones
//! stream through without being inspected.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use datacube_engine::event::MsgType;
use datacube_engine::{Event, Kind};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::crypto::AesKey;
use crate::recorder::{Now, Recorder};
use crate::sign;
use crate::xml::{self, Expect, Mode, Verdict};

/// Bodies up to this size are read whole (to be inspected); larger ones stream through.
pub const INSPECT_LIMIT: usize = 1 << 20;

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

type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, hyper::Error>;

struct State {
    config: ProxyConfig,
    client: Client<HttpConnector, ProxyBody>,
    recorder: Recorder,
    now: Now,
}

/// Serves the proxy on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: ProxyConfig,
    recorder: Recorder,
    now: Now,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .http1_preserve_header_case(true)
        .build(connector);
    let state = Arc::new(State {
        config,
        client,
        recorder,
        now,
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
        let state = state.clone();
        let service = hyper::service::service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(state, req).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .preserve_header_case(true)
            // The upstream's Date (if any) passes through; none is added.
            .auto_date_header(false)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "proxy connection ended with an error");
            }
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(6)) => {}
    }
    Ok(())
}

/// Hop-by-hop headers (RFC 9110 §7.6.1): they belong to one connection, not the message.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers.keys().filter(|n| hop_by_hop(n)).cloned().collect();
    for name in names {
        headers.remove(&name);
    }
}

/// A body read whole when it is small, or its first part and the rest still to come.
enum Read {
    Whole(Bytes),
    Partial(Bytes, Incoming),
}

async fn read_up_to(mut body: Incoming, limit: usize) -> Result<Read, hyper::Error> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > limit {
                return Ok(Read::Partial(buf.freeze(), body));
            }
        }
    }
    Ok(Read::Whole(buf.freeze()))
}

fn boxed_full(b: Bytes) -> ProxyBody {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

fn boxed_chain(first: Bytes, rest: Incoming) -> ProxyBody {
    Prefixed {
        first: Some(first),
        rest,
    }
    .boxed_unsync()
}

/// The bytes read so far, then the rest of the body as it comes.
struct Prefixed {
    first: Option<Bytes>,
    rest: Incoming,
}

impl hyper::body::Body for Prefixed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(first) = self.first.take() {
            return std::task::Poll::Ready(Some(Ok(Frame::data(first))));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(boxed_full(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r
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

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Response<ProxyBody> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let upstream = &state.config.upstream;
    let base = upstream.path().trim_end_matches('/');
    let uri = format!(
        "{}://{}{}{}",
        upstream.scheme_str().unwrap_or("http"),
        upstream.authority().map_or("", |a| a.as_str()),
        base,
        path_and_query
    );
    let Ok(uri) = uri.parse::<hyper::Uri>() else {
        return plain(
            StatusCode::BAD_REQUEST,
            "datacube proxy: a request target it cannot forward",
        );
    };
    let read = match read_up_to(body, INSPECT_LIMIT).await {
        Ok(r) => r,
        Err(_) => {
            return plain(
                StatusCode::BAD_REQUEST,
                "datacube proxy: the request body broke off",
            )
        }
    };
    let query = parts.uri.query().unwrap_or("").to_owned();
    let seen = match (&parts.method, &read) {
        (&hyper::Method::POST, Read::Whole(b)) => read_push(&state.config, &query, b),
        _ => None,
    };
    // The request's own parts go on (their extensions carry the header names' case).
    let mut parts = parts;
    parts.uri = uri;
    parts.version = hyper::Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    let out_body = match read {
        Read::Whole(b) => boxed_full(b),
        Read::Partial(first, rest) => boxed_chain(first, rest),
    };
    let out = Request::from_parts(parts, out_body);
    let limit = state.config.timeout;
    let answered = tokio::time::timeout(limit, async {
        let resp = state.client.request(out).await?;
        let (parts, body) = resp.into_parts();
        let read = read_up_to(body, INSPECT_LIMIT)
            .await
            .map_err(|e| ProxyFailure::Body(e.to_string()))?;
        Ok::<_, ProxyFailure>((parts, read))
    })
    .await;
    let (response, verdict) = match answered {
        Err(_) => (plain(StatusCode::GATEWAY_TIMEOUT, ""), Verdict::Timeout),
        Ok(Err(e)) => (
            plain(StatusCode::BAD_GATEWAY, ""),
            Verdict::Unreachable(e.to_string()),
        ),
        Ok(Ok((parts, read))) => {
            let verdict = match (&seen, parts.status.as_u16(), &read) {
                (Some(seen), 200, Read::Whole(b)) => judge(&state.config, seen, b),
                (_, 200, Read::Partial(..)) => Verdict::Malformed("a reply over 1 MiB".into()),
                (_, status, _) => {
                    if status == 200 {
                        Verdict::Answered("?".into())
                    } else {
                        Verdict::Status(status)
                    }
                }
            };
            let body = match read {
                Read::Whole(b) => boxed_full(b),
                Read::Partial(first, rest) => boxed_chain(first, rest),
            };
            let mut parts = parts;
            strip_hop_by_hop(&mut parts.headers);
            (Response::from_parts(parts, body), verdict)
        }
    };
    if let Some(seen) = seen {
        let cost = started.elapsed();
        let cost_ms = if verdict == Verdict::Timeout {
            cost.max(limit)
        } else {
            cost
        }
        .as_millis() as u64;
        let now = (state.now)().as_second();
        let mut events = Vec::with_capacity(2);
        if let Some(e) = push_event(&state.config.appid, &seen, now) {
            events.push(e);
        }
        events.push(Event {
            appid: state.config.appid.clone(),
            id: None,
            time: now,
            kind: Kind::Reply {
                cost_ms,
                ok: verdict.ok(),
            },
        });
        tracing::debug!(verdict = %verdict.label(), cost_ms, "push proxied");
        // Recorded beside the answer, not before it.
        let recorder = state.recorder.clone();
        tokio::spawn(async move {
            for e in events {
                recorder.record(e).await;
            }
        });
    }
    response
}

#[derive(Debug, thiserror::Error)]
enum ProxyFailure {
    #[error("{0}")]
    Client(#[from] hyper_util::client::legacy::Error),
    #[error("the answer broke off: {0}")]
    Body(String),
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
