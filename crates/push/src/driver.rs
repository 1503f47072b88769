//! `datacube push`: datacube acting as WeChat toward a developer's server.
//!
//! It verifies the server URL (the GET with `echostr`), then sends simulated user messages at
//! a chosen rate from a pool of openids. Each message gets up to [`Config::deliveries`]
//! deliveries with the same `MsgId`, each with WeChat's 5-second limit; a delivery that got no
//! answer (timeout, connection failure, an HTTP status other than 200) is delivered again, as
//! WeChat does. Every delivery is one callback for interface analysis (its time cost and
//! verdict); every message is one message for message analysis, however many deliveries it
//! took.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datacube_engine::event::MsgType;
use datacube_engine::{Event, Kind};
use datacube_protocol::crypto::AesKey;
use datacube_protocol::sign;
use datacube_protocol::xml::{judge_body, Expect, Mode, Push, PushKind, Verdict};
use std::io::Write as _;

use rand::{Rng, SeedableRng};

use crate::recorder::{Now, Recorder};

/// WeChat waits this long for an answer.
pub const WECHAT_TIMEOUT: Duration = Duration::from_secs(5);

/// What to push, where, and how fast.
#[derive(Clone)]
pub struct Config {
    /// The account (its events are recorded under it).
    pub appid: String,
    /// The account's original id (`gh_…`), the pushes' `ToUserName`.
    pub original_id: String,
    /// The developer's server URL.
    pub url: String,
    /// The server's token.
    pub token: String,
    /// The EncodingAESKey's key, for the compatible and safe modes.
    pub key: Option<AesKey>,
    /// The mode.
    pub mode: Mode,
    /// Messages per second; `None`: as fast as `concurrency` allows.
    pub rate: Option<f64>,
    /// Stop after this many messages…
    pub count: Option<u64>,
    /// …or after this long (whichever comes first; one of them is needed).
    pub duration: Option<Duration>,
    /// Openids in the pool.
    pub users: u32,
    /// Messages in flight at most.
    pub concurrency: usize,
    /// The answer time limit (WeChat's is 5 s).
    pub timeout: Duration,
    /// Deliveries of one message at most (WeChat's: 3).
    pub deliveries: u32,
    /// Every text message says this (else a mix of types and texts).
    pub text: Option<String>,
}

/// Running totals, read by the live line.
#[derive(Default)]
pub struct Stats {
    /// Messages sent.
    pub sent: AtomicU64,
    /// Messages answered (by some delivery).
    pub answered: AtomicU64,
    /// Messages that got no acceptable answer after every delivery.
    pub failed: AtomicU64,
    /// Deliveries made (retries included).
    pub deliveries: AtomicU64,
    /// Delivery times, and verdicts by kind.
    detail: Mutex<Detail>,
}

struct Detail {
    /// Delivery times in microseconds, 1 µs to an hour at 3 significant digits: a fixed
    /// ~200 KB however long the run (not a number per delivery).
    micros: hdrhistogram::Histogram<u64>,
    verdicts: std::collections::BTreeMap<String, u64>,
    types: std::collections::BTreeMap<&'static str, u64>,
}

impl Default for Detail {
    fn default() -> Detail {
        Detail {
            micros: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
            verdicts: Default::default(),
            types: Default::default(),
        }
    }
}

impl Stats {
    /// Delivery time percentile in milliseconds (`q` in 0..=1), if any delivery was made.
    pub fn percentile_ms(&self, q: f64) -> Option<f64> {
        let d = self.detail.lock().ok()?;
        if d.micros.is_empty() {
            return None;
        }
        Some(d.micros.value_at_quantile(q.clamp(0.0, 1.0)) as f64 / 1000.0)
    }

    /// Deliveries by verdict (`answered (text)`, `timeout`, `HTTP 500`, …).
    pub fn verdicts(&self) -> Vec<(String, u64)> {
        self.detail
            .lock()
            .map(|d| d.verdicts.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// Messages sent by `MsgType`.
    pub fn types(&self) -> Vec<(&'static str, u64)> {
        self.detail
            .lock()
            .map(|d| d.types.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The URL verification failed.
    #[error("the server did not pass URL verification: {0}")]
    Verification(String),
    /// The HTTP client could not be built.
    #[error("cannot start the HTTP client: {0}")]
    Client(String),
}

fn nonce() -> String {
    rand::rng()
        .random_range(100_000_000u64..4_000_000_000)
        .to_string()
}

/// A client that keeps connections open and never follows redirects (WeChat does not).
pub fn http_client(concurrency: usize) -> Result<reqwest::Client, PushError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(concurrency.max(1))
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .map_err(|e| PushError::Client(e.to_string()))
}

/// The GET WeChat sends when the URL is configured: `echostr` must come back verbatim.
pub async fn verify_url(
    client: &reqwest::Client,
    config: &Config,
    now: &Now,
) -> Result<(), PushError> {
    let timestamp = now().as_second().to_string();
    let nonce = nonce();
    let echostr = rand::rng()
        .random_range(1_000_000_000_000_000_000u64..9_999_999_999_999_999_999)
        .to_string();
    let signature = sign::signature(&config.token, &timestamp, &nonce);
    let url = with_query(
        &config.url,
        &format!("signature={signature}&echostr={echostr}&timestamp={timestamp}&nonce={nonce}"),
    );
    let answer = client
        .get(&url)
        .header("User-Agent", "Mozilla/4.0")
        .header("Accept", "*/*")
        .header("Pragma", "no-cache")
        .timeout(config.timeout)
        .send()
        .await
        .map_err(|e| PushError::Verification(format!("GET {url}: {e}")))?;
    let status = answer.status();
    let body = answer
        .bytes()
        .await
        .map_err(|e| PushError::Verification(e.to_string()))?;
    if !status.is_success() {
        return Err(PushError::Verification(format!(
            "GET answered HTTP {} (check the token and the URL)",
            status.as_u16()
        )));
    }
    if body.as_ref() != echostr.as_bytes() {
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        return Err(PushError::Verification(format!(
            "GET answered {shown:?}, not the echostr {echostr:?} (is the token right?)"
        )));
    }
    Ok(())
}

fn with_query(url: &str, query: &str) -> String {
    if url.contains('?') {
        format!("{url}&{query}")
    } else {
        format!("{url}?{query}")
    }
}

/// The pool's `i`-th openid: 28 characters like WeChat's, stable for an account.
pub fn openid(appid: &str, i: u32) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut h = xxh(appid, i);
    let mut out = String::with_capacity(28);
    out.push('o');
    for k in 0..27 {
        if k == 13 {
            h = xxh(appid, i.wrapping_add(0x9e37_79b9));
        }
        out.push(char::from(ALPHABET[(h & 63) as usize]));
        h >>= 6;
    }
    out
}

fn xxh(appid: &str, i: u32) -> u64 {
    // FNV-1a: small, stable across versions, good enough to spread openids.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in appid.bytes().chain(i.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const TEXTS: &[&str] = &[
    "你好",
    "在吗？",
    "请问今天营业吗",
    "怎么退款",
    "谢谢！",
    "hello",
    "1",
    "查询订单",
    "活动什么时候开始？",
    "/:share",
];

/// A simulated message from `openid`.
fn simulated(config: &Config, openid: String, create_time: i64, msg_id: u64) -> Push {
    let mut rng = rand::rng();
    let media = |rng: &mut rand::rngs::ThreadRng| -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..64)
            .map(|_| char::from(A[rng.random_range(0..A.len())]))
            .collect()
    };
    let kind = if let Some(text) = &config.text {
        PushKind::Text {
            content: text.clone(),
        }
    } else {
        match rng.random_range(0..100) {
            0..70 => PushKind::Text {
                content: TEXTS[rng.random_range(0..TEXTS.len())].to_owned(),
            },
            70..80 => PushKind::Image {
                pic_url: format!("http://mmbiz.qpic.cn/mmbiz_jpg/{}/0", media(&mut rng)),
                media_id: media(&mut rng),
            },
            80..88 => PushKind::Voice {
                media_id: media(&mut rng),
                format: "amr".into(),
                recognition: None,
            },
            88..91 => PushKind::Video {
                media_id: media(&mut rng),
                thumb_media_id: media(&mut rng),
            },
            91..93 => PushKind::ShortVideo {
                media_id: media(&mut rng),
                thumb_media_id: media(&mut rng),
            },
            93..96 => PushKind::Location {
                x: format!("{:.6}", 31.2 + rng.random_range(0.0..0.1)),
                y: format!("{:.6}", 121.4 + rng.random_range(0.0..0.2)),
                scale: "16".into(),
                label: "上海市浦东新区".into(),
            },
            _ => PushKind::Link {
                title: "一篇文章".into(),
                description: "分享给你".into(),
                url: "http://mp.weixin.qq.com/s?__biz=MzA4MjEyNTA5Mw==&mid=2652581569&idx=1".into(),
            },
        }
    };
    Push {
        to_user: config.original_id.clone(),
        from_user: openid,
        create_time,
        kind,
        msg_id,
    }
}

/// The event format's msg_type of a pushed message.
pub fn msg_type_of(kind: &PushKind) -> Option<MsgType> {
    Some(match kind {
        PushKind::Text { .. } => MsgType::Text,
        PushKind::Image { .. } => MsgType::Image,
        PushKind::Voice { .. } => MsgType::Voice,
        PushKind::Video { .. } => MsgType::Video,
        PushKind::ShortVideo { .. } => MsgType::ShortVideo,
        PushKind::Location { .. } => MsgType::Location,
        PushKind::Link { .. } => MsgType::Link,
        PushKind::Subscribe { .. } | PushKind::Unsubscribe => return None,
    })
}

/// Where pushes go: the lean client for `http://` URLs, the general one for the others.
enum Target {
    /// `host:port` to connect to, the `Host` header, and the path (with any query it has).
    Plain {
        addr: String,
        host: String,
        path: String,
    },
    General(reqwest::Client),
}

impl Target {
    fn new(config: &Config) -> Result<Target, PushError> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| PushError::Client(format!("{}: {e}", config.url)))?;
        if url.scheme() == "http" {
            let host = url
                .host_str()
                .ok_or_else(|| PushError::Client(format!("{}: no host", config.url)))?;
            let port = url.port_or_known_default().unwrap_or(80);
            let mut path = url.path().to_owned();
            if let Some(q) = url.query() {
                path.push('?');
                path.push_str(q);
            }
            Ok(Target::Plain {
                addr: format!("{host}:{port}"),
                host: match url.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host.to_owned(),
                },
                path,
            })
        } else {
            Ok(Target::General(http_client(config.concurrency)?))
        }
    }
}

/// A push's query string and body in the configured mode.
fn request_parts(config: &Config, push: &Push, plain: &str, timestamp: &str) -> (String, String) {
    let nonce = nonce();
    let signature = sign::signature(&config.token, timestamp, &nonce);
    let openid = &push.from_user;
    match (config.mode, &config.key) {
        (Mode::Plain, _) | (_, None) => (
            format!("signature={signature}&timestamp={timestamp}&nonce={nonce}&openid={openid}"),
            plain.to_owned(),
        ),
        (mode, Some(key)) => {
            let encrypt = key.encrypt(plain, &config.appid);
            let msg_signature = sign::msg_signature(&config.token, timestamp, &nonce, &encrypt);
            let body = if mode == Mode::Safe {
                push.safe_body(&encrypt)
            } else {
                push.compat_body(&encrypt)
            };
            (
                format!("signature={signature}&timestamp={timestamp}&nonce={nonce}&openid={openid}&encrypt_type=aes&msg_signature={msg_signature}"),
                body,
            )
        }
    }
}

/// One worker's connection, opened when needed and dropped after a failure (as WeChat
/// drops a connection it gave up on).
struct Worker<'a> {
    config: &'a Config,
    target: &'a Target,
    conn: Option<crate::http::Conn>,
}

impl Worker<'_> {
    /// One delivery of `push`: the request as WeChat makes it, the verdict and the time it
    /// took (the wait for a connection included).
    async fn deliver(&mut self, push: &Push, plain: &str, timestamp: i64) -> (Verdict, Duration) {
        let config = self.config;
        let (query, body) = request_parts(config, push, plain, &timestamp.to_string());
        let started = Instant::now();
        let outcome = match self.target {
            Target::Plain { addr, host, path } => {
                let sep = if path.contains('?') { '&' } else { '?' };
                let mut request = Vec::with_capacity(256 + body.len());
                let _ = write!(
                    request,
                    "POST {path}{sep}{query} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/4.0\r\nAccept: */*\r\nPragma: no-cache\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                request.extend_from_slice(body.as_bytes());
                let conn = &mut self.conn;
                let answered = tokio::time::timeout(config.timeout, async {
                    let c = match conn {
                        Some(c) => c,
                        none => none.insert(crate::http::Conn::connect(addr).await?),
                    };
                    c.request(&request).await
                })
                .await;
                match answered {
                    Err(_) => {
                        self.conn = None;
                        Err(Verdict::Timeout)
                    }
                    Ok(Err(e)) => {
                        self.conn = None;
                        Err(Verdict::Unreachable(e.to_string()))
                    }
                    Ok(Ok(a)) => {
                        if !a.keep_alive {
                            self.conn = None;
                        }
                        Ok((a.status, a.body))
                    }
                }
            }
            Target::General(client) => {
                let sent = client
                    .post(with_query(&config.url, &query))
                    .header("User-Agent", "Mozilla/4.0")
                    .header("Accept", "*/*")
                    .header("Pragma", "no-cache")
                    .header("Content-Type", "text/xml")
                    .body(body)
                    .send();
                match tokio::time::timeout(config.timeout, async {
                    let answer = sent.await?;
                    let status = answer.status().as_u16();
                    Ok::<_, reqwest::Error>((status, answer.bytes().await?))
                })
                .await
                {
                    Err(_) => Err(Verdict::Timeout),
                    Ok(Err(e)) if e.is_timeout() => Err(Verdict::Timeout),
                    Ok(Err(e)) => Err(Verdict::Unreachable(e.without_url().to_string())),
                    Ok(Ok(a)) => Ok(a),
                }
            }
        };
        let cost = started.elapsed();
        let verdict = match outcome {
            Err(v) => v,
            Ok((200, body)) => judge_body(
                &body,
                &Expect {
                    mode: config.mode,
                    token: &config.token,
                    key: config.key.as_ref(),
                    appid: &config.appid,
                    openid: &push.from_user,
                    original_id: &config.original_id,
                },
            ),
            Ok((status, _)) => Verdict::Status(status),
        };
        (verdict, cost)
    }

    /// Delivers `push` (`plain`, its XML) until a verdict is not retried, at most
    /// `deliveries` times, keeping each delivery's reply event and figures in `local`; whether
    /// it was answered.
    async fn deliveries(
        &mut self,
        push: &Push,
        plain: &str,
        now: &Now,
        stats: &Stats,
        local: &mut Local,
    ) -> bool {
        let config = self.config;
        let mut answered = false;
        for _ in 1..=config.deliveries.max(1) {
            let at = now().as_second();
            let (verdict, cost) = self.deliver(push, plain, at).await;
            stats.deliveries.fetch_add(1, Ordering::Relaxed);
            local
                .micros
                .push(u32::try_from(cost.as_micros()).unwrap_or(u32::MAX));
            local.events.push(Event {
                appid: config.appid.clone(),
                id: None,
                time: at,
                kind: Kind::Reply {
                    cost_ms: cost_ms(&verdict, cost, config.timeout),
                    ok: verdict.ok(),
                },
            });
            answered |= verdict.ok();
            crate::metrics::callback("push", &verdict, cost);
            let retried = verdict.retried();
            match local.verdicts.get_mut(&verdict) {
                Some(n) => *n += 1,
                None => {
                    local.verdicts.insert(verdict, 1);
                }
            }
            if !retried {
                break;
            }
        }
        answered
    }
}

/// Milliseconds of a delivery as interface analysis counts it: a timed-out delivery costs
/// the whole limit.
fn cost_ms(verdict: &Verdict, cost: Duration, timeout: Duration) -> u64 {
    let cost = if *verdict == Verdict::Timeout {
        cost.max(timeout)
    } else {
        cost
    };
    cost.as_millis() as u64
}

/// Which message comes next, and whether the run is over.
struct Tickets {
    issued: AtomicU64,
    started: Instant,
}

impl Tickets {
    /// The next message's number, once it is due; `None` when the run is over.
    async fn next(&self, config: &Config) -> Option<u64> {
        let i = self.issued.fetch_add(1, Ordering::Relaxed);
        if config.count.is_some_and(|c| i >= c) {
            return None;
        }
        let end = config.duration.map(|d| self.started + d);
        if let Some(rate) = config.rate.filter(|r| *r > 0.0) {
            let due = self.started + Duration::from_secs_f64(i as f64 / rate);
            if end.is_some_and(|e| due >= e) {
                return None;
            }
            tokio::time::sleep_until(due.into()).await;
        }
        if end.is_some_and(|e| Instant::now() >= e) {
            return None;
        }
        Some(i)
    }
}

/// Events and figures a worker keeps before handing them over, to keep the shared parts
/// out of the way of every message.
struct Local {
    events: Vec<Event>,
    micros: Vec<u32>,
    verdicts: std::collections::HashMap<Verdict, u64>,
    types: std::collections::HashMap<&'static str, u64>,
    since: Instant,
}

impl Local {
    fn new() -> Local {
        Local {
            events: Vec::with_capacity(256),
            micros: Vec::with_capacity(256),
            verdicts: Default::default(),
            types: Default::default(),
            since: Instant::now(),
        }
    }

    /// Hands what was kept over when there is enough of it, or it waited long enough, or
    /// `now` is asked.
    async fn hand_over(&mut self, recorder: &Recorder, stats: &Stats, now: bool) {
        if !now && self.events.len() < 256 && self.since.elapsed() < Duration::from_millis(250) {
            return;
        }
        if !self.events.is_empty() {
            recorder
                .record_many(std::mem::replace(&mut self.events, Vec::with_capacity(256)))
                .await;
        }
        if let Ok(mut d) = stats.detail.lock() {
            for us in self.micros.drain(..) {
                d.micros.saturating_record(u64::from(us).max(1));
            }
            for (v, n) in self.verdicts.drain() {
                // Group by kind, not by every message of an error.
                let key = match &v {
                    Verdict::Unreachable(_) => "unreachable".to_owned(),
                    Verdict::Malformed(why) => format!("malformed reply: {why}"),
                    v => v.label(),
                };
                *d.verdicts.entry(key).or_default() += n;
            }
            for (t, n) in self.types.drain() {
                *d.types.entry(t).or_default() += n;
            }
        }
        self.since = Instant::now();
    }
}

/// Pushes messages as configured, recording their events; returns when done. Each of
/// `concurrency` workers owns a connection and handles one message at a time, its
/// deliveries included.
pub async fn run(
    config: Arc<Config>,
    recorder: Recorder,
    now: Now,
    stats: Arc<Stats>,
) -> Result<(), PushError> {
    let target = Arc::new(Target::new(&config)?);
    let tickets = Arc::new(Tickets {
        issued: AtomicU64::new(0),
        started: Instant::now(),
    });
    let first_id: u64 = rand::rng().random_range(23_900_000_000_000_000..24_000_000_000_000_000);
    let pool: Arc<Vec<String>> = Arc::new(
        (0..config.users.max(1))
            .map(|i| openid(&config.appid, i))
            .collect(),
    );
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.concurrency.max(1) {
        let (config, recorder, now, stats, target, tickets, pool) = (
            config.clone(),
            recorder.clone(),
            now.clone(),
            stats.clone(),
            target.clone(),
            tickets.clone(),
            pool.clone(),
        );
        workers.spawn(async move {
            let mut worker = Worker {
                config: &config,
                target: &target,
                conn: None,
            };
            let mut local = Local::new();
            let mut rng = rand::rngs::SmallRng::from_rng(&mut rand::rng());
            while let Some(i) = tickets.next(&config).await {
                // Unique, increasing, and past 2^53 like WeChat's.
                let msg_id = first_id + i * 1000 + rng.random_range(0..1000);
                let user = &pool[rng.random_range(0..pool.len())];
                let create_time = now().as_second();
                let push = simulated(&config, user.clone(), create_time, msg_id);
                let plain = push.to_xml();
                stats.sent.fetch_add(1, Ordering::Relaxed);
                *local.types.entry(push.kind.msg_type()).or_default() += 1;
                // Each event is recorded once, here: no id is needed to de-duplicate it.
                if let Some(msg_type) = msg_type_of(&push.kind) {
                    local.events.push(Event {
                        appid: config.appid.clone(),
                        id: None,
                        time: create_time,
                        kind: Kind::Message {
                            openid: push.from_user.clone(),
                            msg_type,
                        },
                    });
                }
                let answered = worker
                    .deliveries(&push, &plain, &now, &stats, &mut local)
                    .await;
                crate::metrics::message(answered);
                if answered {
                    stats.answered.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                }
                local.hand_over(&recorder, &stats, false).await;
            }
            local.hand_over(&recorder, &stats, true).await;
        });
    }
    while workers.join_next().await.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn delivery_percentiles_stay_exact_enough_in_fixed_memory() {
        let stats = Stats::default();
        {
            let mut d = stats.detail.lock().unwrap();
            // A million deliveries, 1 ms to 1,000 ms evenly.
            for i in 0..1_000_000u64 {
                d.micros.saturating_record(1_000 + i % 1_000 * 1_000);
            }
            // One absurd one is clamped, not lost.
            d.micros.saturating_record(u64::MAX);
        }
        let p50 = stats.percentile_ms(0.5).unwrap();
        let p99 = stats.percentile_ms(0.99).unwrap();
        assert!((p50 - 500.0).abs() < 1.5, "{p50}");
        assert!((p99 - 990.0).abs() < 1.5, "{p99}");
        assert_eq!(stats.detail.lock().unwrap().micros.len(), 1_000_001);
    }

    use super::*;

    #[test]
    fn openids_look_like_wechats_and_are_stable() {
        let a = openid("wx1234567890abcdef", 7);
        assert_eq!(a.len(), 28);
        assert!(a.starts_with('o'));
        assert_eq!(a, openid("wx1234567890abcdef", 7));
        assert_ne!(a, openid("wx1234567890abcdef", 8));
        assert_ne!(a, openid("wx1234567890abcdee", 7));
    }

    #[test]
    fn timed_out_deliveries_cost_the_whole_limit() {
        let limit = Duration::from_secs(5);
        assert_eq!(
            cost_ms(&Verdict::Timeout, Duration::from_millis(4990), limit),
            5000
        );
        assert_eq!(
            cost_ms(&Verdict::Timeout, Duration::from_millis(5012), limit),
            5012
        );
        assert_eq!(
            cost_ms(&Verdict::Status(500), Duration::from_millis(12), limit),
            12
        );
    }
}
