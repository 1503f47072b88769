//! What the proxy records: a POST carrying WeChat's signature is a push — its message (or
//! follow) once per `MsgId`, and its delivery as a callback judged as `push` judges replies.

use std::time::Instant;

use datacube_engine::event::MsgType;
use datacube_engine::{Event, Kind};
use datacube_protocol::http1::{self, Framing};
use datacube_protocol::sign;
use datacube_protocol::xml::{self, Expect, Mode, Verdict};

use super::wire::RequestHead;
use super::{ProxyConfig, Reply, State, OUTBOX};

/// Records a POST's delivery (other requests are not pushes), once its answer is written.
pub(super) async fn record(
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
    delivery_events(state, query, &body, reply, cost, time, &mut events);
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
    cost: std::time::Duration,
    time: i64,
    events: &mut Vec<Event>,
) {
    let cost_ms = cost.as_millis() as u64;
    let config = &state.config;
    let Some(seen) = read_push(config, query, body) else {
        return;
    };
    let verdict = match reply {
        Reply::Judged(v) => v,
        Reply::Body(b, framing) => judge(
            config,
            &seen,
            (if framing == Framing::Chunked {
                http1::dechunk(&b)
            } else {
                None
            })
            .as_deref()
            .unwrap_or(&b),
        ),
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
    crate::metrics::callback("proxy", &verdict, cost);
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
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
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
    use crate::proxy::Limits;
    use std::time::Duration;

    #[test]
    fn queries_are_decoded() {
        let q = query_map("signature=ab&timestamp=1&nonce=2&openid=o%2Bx&x=a+b");
        assert_eq!(q["openid"], "o+x");
        assert_eq!(q["x"], "a b");
        assert_eq!(query_map("a=%zz%")["a"], "%zz%");
    }

    #[test]
    fn pushes_become_events() {
        let config = ProxyConfig {
            upstream: "http://127.0.0.1:1".parse().unwrap(),
            appid: "wx1".into(),
            token: None,
            key: None,
            timeout: Duration::from_secs(5),
            limits: Limits::default(),
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
