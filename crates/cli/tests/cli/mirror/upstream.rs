//! An upstream that behaves as real servers sometimes do, in front of a real `datacube serve`:
//! it lists rows in any order, adds fields WeChat's documentation does not list, answers a row
//! outside the window asked, fails with HTTP 500 and 502, answers an HTML page, never ends an
//! answer or never starts one, answers more than the client's limit, announces odd token
//! lifetimes, and can keep one endpoint broken. Plain HTTP/1.1 over TCP, one request per
//! connection (`Connection: close`), so that every byte and every stall is under its control.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datacube_api::date::{add_days, format_date, parse_date};
use rand::seq::SliceRandom;
use serde_json::value::RawValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the upstream misbehaves; change it at any time through [`Hostile::set`].
#[derive(Debug, Clone, Default)]
pub struct Mode {
    /// Rows in a random order, within and across days.
    pub shuffle: bool,
    /// Fields no documentation lists, on every row, in nested objects and in the envelope.
    pub new_fields: bool,
    /// getusersummary answers one more row, dated the day after the window.
    pub out_of_window: bool,
    /// Every 13th datacube call fails: HTTP 500, HTTP 502 with a page, an HTML page with
    /// HTTP 200, an answer that never ends, no answer at all — in turn.
    pub flaky: bool,
    /// Endpoints that always answer HTTP 502.
    pub broken: Vec<&'static str>,
    /// Endpoints whose answers are 1.5 MiB (over a 1 MiB limit), sent without a length.
    pub oversized: Vec<&'static str>,
    /// `expires_in` of token answers, as JSON text (`0`, `18446744073709551615`).
    pub expires_in: Option<&'static str>,
    /// Everything answers HTTP 502.
    pub down: bool,
    /// Endpoints that answer `307` to `/stolen` on this server (a client must not follow).
    pub redirect: Vec<&'static str>,
    /// Endpoints that answer errcode 40078 with a megabyte of errmsg holding a forged line and
    /// terminal escapes.
    pub forged_errmsg: Vec<&'static str>,
    /// Every datacube call gets no answer at all.
    pub hang: bool,
    /// The body of `api_get_authorizer_list`, instead of the upstream's.
    pub authorizer_list: Option<String>,
    /// Token requests answer 40125 with an errmsg that echoes the request (the secret in its
    /// query, as sent and decoded), and datacube calls 40001 echoing the token.
    pub echo_request: bool,
}

/// The running upstream.
pub struct Hostile {
    pub base: String,
    mode: Arc<Mutex<Mode>>,
    /// Datacube calls answered.
    pub calls: Arc<AtomicU64>,
    /// Faults served (every kind).
    pub faults: Arc<AtomicU64>,
    /// Requests that followed a redirect to `/stolen`.
    pub stolen: Arc<AtomicU64>,
    /// Requests for the component's authorizer list.
    pub listed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    /// Starts in front of `upstream` (a `datacube serve`).
    pub async fn start(upstream: &str, mode: Mode) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mode = Arc::new(Mutex::new(mode));
        let calls = Arc::new(AtomicU64::new(0));
        let faults = Arc::new(AtomicU64::new(0));
        let stolen = Arc::new(AtomicU64::new(0));
        let listed = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Shared {
            stolen: stolen.clone(),
            listed: listed.clone(),
            upstream: upstream.to_owned(),
            mode: mode.clone(),
            calls: calls.clone(),
            faults: faults.clone(),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = shared.handle(conn).await;
                });
            }
        });
        Hostile {
            base,
            mode,
            calls,
            faults,
            stolen,
            listed,
            task,
        }
    }

    /// Changes how it misbehaves.
    pub fn set(&self, change: impl FnOnce(&mut Mode)) {
        change(&mut self.mode.lock().unwrap());
    }
}

struct Shared {
    upstream: String,
    mode: Arc<Mutex<Mode>>,
    calls: Arc<AtomicU64>,
    faults: Arc<AtomicU64>,
    stolen: Arc<AtomicU64>,
    listed: Arc<AtomicU64>,
    http: reqwest::Client,
}

impl Shared {
    async fn handle(&self, mut conn: TcpStream) -> std::io::Result<()> {
        let Some((method, target, body)) = read_request(&mut conn).await? else {
            return Ok(());
        };
        let mode = self.mode.lock().unwrap().clone();
        if mode.down {
            return respond(
                &mut conn,
                "502 Bad Gateway",
                "text/html",
                b"<html>down</html>",
            )
            .await;
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let url = format!("{}{path}?{query}", self.upstream);
        if path == "/stolen" {
            self.stolen.fetch_add(1, Ordering::Relaxed);
            return respond(&mut conn, "200 OK", "application/json", b"{\"list\":[]}").await;
        }
        if path == "/cgi-bin/component/api_get_authorizer_list" {
            if let Some(list) = &mode.authorizer_list {
                self.listed.fetch_add(1, Ordering::Relaxed);
                return respond(&mut conn, "200 OK", "application/json", list.as_bytes()).await;
            }
        }
        if mode.echo_request && path == "/cgi-bin/token" {
            let decoded: String = reqwest::Url::parse(&format!("http://x/?{query}"))
                .unwrap()
                .query_pairs()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&");
            let echo = serde_json::json!({
                "errcode": 40125,
                "errmsg": format!("invalid appsecret, request GET {path}?{query} ({decoded})"),
            });
            return respond(
                &mut conn,
                "200 OK",
                "application/json",
                echo.to_string().as_bytes(),
            )
            .await;
        }
        if path.starts_with("/cgi-bin/") {
            let request = if method == "GET" {
                self.http.get(&url)
            } else {
                self.http.post(&url).body(body)
            };
            let mut text = request.send().await.unwrap().text().await.unwrap();
            if let Some(lifetime) = mode.expires_in {
                text = text.replace("\"expires_in\":7200", &format!("\"expires_in\":{lifetime}"));
            }
            return respond(&mut conn, "200 OK", "application/json", text.as_bytes()).await;
        }
        let Some(name) = path.strip_prefix("/datacube/") else {
            return respond(&mut conn, "404 Not Found", "text/plain", b"no").await;
        };
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        if mode.hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Ok(());
        }
        if mode.redirect.contains(&name) {
            let head = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: /stolen?{query}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            conn.write_all(head.as_bytes()).await?;
            return conn.shutdown().await;
        }
        if mode.forged_errmsg.contains(&name) {
            let forged = format!(
                "{{\"errcode\":40078,\"errmsg\":\"bad\\nsynced 1 of 1 from https://api.weixin.qq.com: all good \\u001b[2J{}\"}}",
                "x".repeat(1 << 20)
            );
            return respond(&mut conn, "200 OK", "application/json", forged.as_bytes()).await;
        }
        if mode.broken.contains(&name) {
            self.faults.fetch_add(1, Ordering::Relaxed);
            return respond(
                &mut conn,
                "502 Bad Gateway",
                "text/html",
                b"<html><body>502 Bad Gateway</body></html>",
            )
            .await;
        }
        if mode.oversized.contains(&name) {
            self.faults.fetch_add(1, Ordering::Relaxed);
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
            conn.write_all(head.as_bytes()).await?;
            conn.write_all(b"{\"list\":[],\"pad\":\"").await?;
            let chunk = vec![b'x'; 64 << 10];
            for _ in 0..24 {
                conn.write_all(&chunk).await?;
            }
            conn.write_all(b"\"}").await?;
            return Ok(());
        }
        if mode.flaky && n % 13 == 6 {
            self.faults.fetch_add(1, Ordering::Relaxed);
            return match (n / 13) % 5 {
                0 => {
                    respond(
                        &mut conn,
                        "500 Internal Server Error",
                        "text/plain",
                        b"oops",
                    )
                    .await
                }
                1 => {
                    respond(
                        &mut conn,
                        "502 Bad Gateway",
                        "text/html",
                        b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                    )
                    .await
                }
                2 => {
                    respond(
                        &mut conn,
                        "200 OK",
                        "text/html",
                        b"<html><head><title>busy</title></head></html>",
                    )
                    .await
                }
                3 => {
                    // Headers, the start of a list, then nothing.
                    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n{\"list\":[";
                    conn.write_all(head.as_bytes()).await?;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                }
                _ => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                }
            };
        }
        let answer = self
            .http
            .post(&url)
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let text = if answer.starts_with("{\"list\"") {
            serve_body(name, &answer, &body, &mode)
        } else {
            answer
        };
        respond(
            &mut conn,
            "200 OK",
            "application/json; encoding=utf-8",
            text.as_bytes(),
        )
        .await
    }
}

/// `{"list":[…]}` (and the 2025 endpoints' `is_delay`): its rows, and what follows them.
fn split(body: &str) -> (Vec<String>, String) {
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        list: Vec<&'a RawValue>,
        is_delay: Option<bool>,
    }
    let parsed: Body = serde_json::from_str(body).unwrap();
    let rest = parsed
        .is_delay
        .map(|d| format!(",\"is_delay\":{d}"))
        .unwrap_or_default();
    (
        parsed.list.iter().map(|r| r.get().to_owned()).collect(),
        rest,
    )
}

/// A row with the new fields this upstream adds: one leading and one trailing field on every
/// row; `url` after getarticletotal's `title`; one leading field in each snapshot of
/// `details`/`detail_list`; one in each 2025 `detail` object, and in each `read_user_source`
/// entry.
fn with_new_fields(endpoint: &str, row: &str) -> String {
    let mut row = format!(
        "{{\"x_top\":{{\"tags\":[1, 2],\"since\":\"2026\"}},{},\"x_end\":\"new\"}}",
        &row[1..row.len() - 1]
    );
    if endpoint == "getarticletotal" {
        let msgid = row
            .split("\"msgid\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_owned();
        row = row.replacen(
            ",\"user_source\":",
            &format!(
                ",\"url\":\"http://mp.weixin.qq.com/s?__biz=MzA&mid={msgid}\",\"user_source\":"
            ),
            1,
        );
    }
    row.replace("{\"stat_date\":", "{\"x_snapshot\":true,\"stat_date\":")
        .replace("\"detail\":{", "\"detail\":{\"x_nested\":0.5,")
        .replace("{\"user_count\":", "{\"scene\":7,\"user_count\":")
}

/// What a mirror should answer for an upstream answer: the rows with their new fields, in
/// WeChat's order.
pub fn expected(endpoint: &str, answer: &str, new_fields: bool) -> String {
    if !new_fields || !answer.starts_with("{\"list\"") {
        return answer.to_owned();
    }
    let (rows, rest) = split(answer);
    // Kept verbatim, but without the whitespace between tokens.
    let rows: Vec<String> = rows
        .iter()
        .map(|r| with_new_fields(endpoint, r).replace("[1, 2]", "[1,2]"))
        .collect();
    format!("{{\"list\":[{}]{rest}}}", rows.join(","))
}

/// The body this upstream sends for an upstream answer to `request`.
fn serve_body(endpoint: &str, answer: &str, request: &[u8], mode: &Mode) -> String {
    let (mut rows, rest) = split(answer);
    if mode.new_fields {
        rows = rows.iter().map(|r| with_new_fields(endpoint, r)).collect();
    }
    if mode.out_of_window && endpoint == "getusersummary" {
        if let Some(first) = rows.first().cloned() {
            let asked: serde_json::Value = serde_json::from_slice(request).unwrap();
            let end = parse_date(asked["end_date"].as_str().unwrap()).unwrap();
            let date = first.split("\"ref_date\":\"").nth(1).unwrap()[..10].to_owned();
            rows.push(first.replacen(&date, &format_date(add_days(end, 1)), 1));
        }
    }
    if mode.shuffle {
        rows.shuffle(&mut rand::rng());
    }
    let envelope = if mode.new_fields {
        ",\"x_envelope\":{\"a\":1}"
    } else {
        ""
    };
    format!("{{\"list\":[{}]{rest}{envelope}}}", rows.join(","))
}

async fn read_request(conn: &mut TcpStream) -> std::io::Result<Option<(String, String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 << 10 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (
        first.next().unwrap_or_default().to_owned(),
        first.next().unwrap_or_default().to_owned(),
    );
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((method, target, body)))
}

async fn respond(
    conn: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body).await?;
    conn.shutdown().await
}
