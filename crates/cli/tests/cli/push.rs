//! `datacube push` and `datacube proxy` against a real developer server: a wechatpy 1.8.18 app
//! (PyPI, installed into `target/wechatpy-venv` by the test itself) written as its users write
//! them (`tests/push/server.py`), in plaintext, compatible and safe mode.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const APPID: &str = "wxpush000000000001";
const SECRET: &str = "push-test-secret";
const TOKEN: &str = "GreedIsGood";
const AES_KEY: &str = "h7ZycbpEh2vNdfkYulfw9pG95HjLYwmrKBFeqIktff6";
/// Pushes happen at 10:00 on 2024-05-01; statistics are read the next morning.
const PUSH_CLOCK: &str = "2024-05-01T10:00:00+08:00";
const READ_CLOCK: &str = "2024-05-02T09:00:00+08:00";

/// `datacube push` with the common flags; returns its stdout (asserting success).
async fn push(db: &str, url: &str, mode: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "push",
        "--appid",
        APPID,
        "--url",
        url,
        "--token",
        TOKEN,
        "--aes-key",
        AES_KEY,
        "--mode",
        mode,
        "--clock",
        PUSH_CLOCK,
        "--rate",
        "0",
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = run(db, &args, None).await;
    assert_eq!(code, 0, "push {extra:?}: {err}\n{out}");
    assert!(err.contains("passed URL verification"), "{err}");
    out
}

/// `messages: 5 image, 30 text` → {"image": 5, "text": 30}.
fn types(report: &str) -> BTreeMap<String, u64> {
    let line = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("messages: "))
        .unwrap_or_else(|| panic!("no message line in {report}"));
    line.split(", ")
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (n, t) = s.split_once(' ').unwrap();
            (t.to_owned(), n.parse().unwrap())
        })
        .collect()
}

/// Statistics of 2024-05-01 through the WeChat API of a server on `db`.
async fn day_figures(db: &str) -> (serde_json::Value, serde_json::Value, serde_json::Value) {
    let served = Serve::new(db).clock(READ_CLOCK).start().await;
    let token = access_token(&served.base, APPID, SECRET).await;
    let body = r#"{"begin_date":"2024-05-01","end_date":"2024-05-01"}"#;
    let get = |endpoint: &'static str| {
        let (base, token) = (served.base.clone(), token.clone());
        async move {
            let text = datacube_post(&base, &token, endpoint, body).await;
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["list"].clone()
        }
    };
    (
        get("getinterfacesummary").await,
        get("getinterfacesummaryhour").await,
        get("getupstreammsg").await,
    )
}

/// Messages of a run, by getupstreammsg's msg_type (location has none).
fn expected_by_code(runs: &[BTreeMap<String, u64>]) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for run in runs {
        for (t, n) in run {
            let code = match t.as_str() {
                "text" => 1,
                "image" => 2,
                "voice" => 3,
                "video" | "shortvideo" => 4,
                "link" => 6,
                _ => continue,
            };
            *out.entry(code).or_default() += n;
        }
    }
    out
}

/// A push run in one mode against the wechatpy server: ordinary messages (answered with text
/// replies, `success` and empty bodies), a handler that raises (HTTP 500, delivered 3 times)
/// and one that sleeps past 5 s (3 timeouts of about 5,000 ms); then the figures through the
/// datacube API.
async fn push_scenario(mode: &str) {
    let (_dir, db) = temp_db();
    add_account(&db, APPID, SECRET).await;
    let server = dev_server(TOKEN, AES_KEY, APPID).await;
    let url = server.url();

    let hello = push(
        &db,
        &url,
        mode,
        &["--text", "hello", "--count", "20", "--users", "1"],
    )
    .await;
    assert!(
        hello.contains("answered 20, failed 0 (20 deliveries)"),
        "{hello}"
    );
    assert!(hello.contains("20 × answered (text)"), "{hello}");
    let mixed = push(&db, &url, mode, &["--count", "40"]).await;
    assert!(
        mixed.contains("answered 40, failed 0 (40 deliveries)"),
        "{mixed}"
    );
    let boom = push(&db, &url, mode, &["--text", "boom", "--count", "2"]).await;
    assert!(
        boom.contains("answered 0, failed 2 (6 deliveries)"),
        "{boom}"
    );
    assert!(boom.contains("6 × HTTP 500"), "{boom}");
    let sleep = push(&db, &url, mode, &["--text", "sleep", "--count", "1"]).await;
    assert!(
        sleep.contains("answered 0, failed 1 (3 deliveries)"),
        "{sleep}"
    );
    assert!(sleep.contains("3 × timeout"), "{sleep}");

    let (day, hours, messages) = day_figures(&db).await;
    let day = &day[0];
    assert_eq!(day["callback_count"], 20 + 40 + 6 + 3, "{day}");
    assert_eq!(day["fail_count"], 6 + 3, "{day}");
    let max = day["max_time_cost"].as_u64().unwrap();
    assert!(
        (5000..5500).contains(&max),
        "a timed-out delivery costs about 5 s: {day}"
    );
    assert!(day["total_time_cost"].as_u64().unwrap() >= 15_000, "{day}");
    assert_eq!(hours.as_array().unwrap().len(), 1, "{hours}");
    assert_eq!(hours[0]["ref_hour"], 1000);
    assert_eq!(hours[0]["callback_count"], day["callback_count"]);

    // Each message once, however many deliveries it took.
    let runs: Vec<BTreeMap<String, u64>> = [&hello, &mixed, &boom, &sleep]
        .iter()
        .map(|r| types(r))
        .collect();
    let want = expected_by_code(&runs);
    let got: BTreeMap<u64, u64> = messages
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["msg_type"].as_u64().unwrap(),
                r["msg_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, want, "{messages}");
}

#[tokio::test]
async fn push_in_plaintext_mode() {
    push_scenario("plain").await;
}

#[tokio::test]
async fn push_in_compatible_mode() {
    push_scenario("compat").await;
}

#[tokio::test]
async fn push_in_safe_mode() {
    push_scenario("safe").await;
}

#[tokio::test]
async fn push_refuses_a_server_that_fails_verification() {
    let (_dir, db) = temp_db();
    add_account(&db, APPID, SECRET).await;
    let server = dev_server(TOKEN, AES_KEY, APPID).await;
    let url = server.url();
    let (code, _, err) = push_to(&db, (APPID, &url, "wrong-token"), &["--count", "1"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("did not pass URL verification"), "{err}");
    assert!(err.contains("HTTP 403"), "{err}");
    let (code, _, err) = push_to(
        &db,
        (APPID, &url, TOKEN),
        &["--mode", "safe", "--count", "1"],
    )
    .await;
    // A usage error, found before anything is opened (this asserted 1 before the commands
    // were split).
    assert_eq!(code, 2);
    assert!(
        err.contains("give the EncodingAESKey with --aes-key"),
        "{err}"
    );
}

/// Starts `datacube proxy` in front of `upstream`; returns it and its address.
async fn proxy(db: &str, upstream: &str, extra: &[&str]) -> (Child, String) {
    let (child, addr, _) = proxy_and_metrics(db, upstream, extra).await;
    (child, addr)
}

/// As [`proxy`], and the address of its `/metrics` when `extra` asks for one.
async fn proxy_and_metrics(
    db: &str,
    upstream: &str,
    extra: &[&str],
) -> (Child, String, Option<String>) {
    start_proxy(db, upstream, extra, Stdio::inherit()).await
}

/// As [`proxy`], with what it writes to stderr, whole once it exits.
async fn proxy_with_log(
    db: &str,
    upstream: &str,
    extra: &[&str],
) -> (Child, String, tokio::task::JoinHandle<String>) {
    let (mut child, addr, _) = start_proxy(db, upstream, extra, Stdio::piped()).await;
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all).await;
        all
    });
    (child, addr, log)
}

async fn start_proxy(
    db: &str,
    upstream: &str,
    extra: &[&str],
    stderr: Stdio,
) -> (Child, String, Option<String>) {
    let mut child = Command::new(BIN)
        .env("DATACUBE_DATABASE", db)
        .env("DATACUBE_CLOCK", PUSH_CLOCK)
        .env("DATACUBE_LOG", "warn")
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            upstream,
            "--appid",
            APPID,
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut metrics = None;
    let addr = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("proxy prints its address");
        if let Some(url) = line.strip_prefix("datacube metrics on ") {
            metrics = Some(url.to_owned());
            continue;
        }
        break line
            .strip_prefix("datacube proxy on http://")
            .and_then(|r| r.split(' ').next())
            .unwrap_or_else(|| panic!("unexpected: {line}"))
            .to_owned();
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr, metrics)
}

/// Reads one HTTP/1.1 message (head and Content-Length body) from `stream`.
async fn read_message(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                buf.truncate(end + 4 + len);
                return buf;
            }
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "the connection closed mid-message: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The exact bytes of a request and of its answer cross the proxy unchanged (header names'
/// case and order included), and the push is recorded.
#[tokio::test]
async fn the_proxy_passes_bytes_unchanged_both_ways() {
    let (_dir, db) = temp_db();
    add_account(&db, APPID, SECRET).await;
    // The push of reference §9 (its signature checks with the token), and a reply to it.
    let body = "<xml><ToUserName><![CDATA[gh_de0f036ce08f]]></ToUserName>\n<FromUserName><![CDATA[ooUo26seZPcU3qKfcMiXLneG3fO4]]></FromUserName>\n<CreateTime>1668869541</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[文本消息]]></Content>\n<MsgId>23892468385179204</MsgId>\n</xml>";
    let request = format!(
        "POST /wechat?signature=8e54ae7d2bee997f244afeea959387250adfb889&timestamp=1668869542&nonce=973755032&openid=ooUo26seZPcU3qKfcMiXLneG3fO4 HTTP/1.1\r\nHost: wx.example.com\r\nUser-Agent: Mozilla/4.0\r\nAccept: */*\r\nPragma: no-cache\r\nContent-Type: text/xml\r\nX-Forwarded-For: 81.69.103.236\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let reply = "<xml><ToUserName><![CDATA[ooUo26seZPcU3qKfcMiXLneG3fO4]]></ToUserName><FromUserName><![CDATA[gh_de0f036ce08f]]></FromUserName><CreateTime>1668869542</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[收到]]></Content></xml>";
    let response = format!(
        "HTTP/1.1 200 OK\r\nServer: dev\r\nContent-Type: application/xml;charset=UTF-8\r\nX-Request-Id: Ab-12\r\nDate: Sat, 19 Nov 2022 14:52:22 GMT\r\nContent-Length: {}\r\n\r\n{reply}",
        reply.len()
    );
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let expected_response = response.clone();
    let seen = tokio::spawn(async move {
        let (mut s, _) = upstream.accept().await.unwrap();
        let got = read_message(&mut s).await;
        s.write_all(expected_response.as_bytes()).await.unwrap();
        got
    });
    let (_proxy, addr) = proxy(&db, &format!("http://{up_addr}"), &["--token", TOKEN]).await;
    let mut client = tokio::net::TcpStream::connect(&addr).await.unwrap();
    client.write_all(request.as_bytes()).await.unwrap();
    let answer = read_message(&mut client).await;
    let forwarded = seen.await.unwrap();
    assert_eq!(
        String::from_utf8(forwarded).unwrap(),
        request,
        "the upstream gets the request as sent"
    );
    assert_eq!(
        String::from_utf8(answer).unwrap(),
        response,
        "the client gets the answer as sent"
    );
    drop(client);

    // The push was recorded: one message, one answered callback.
    let mut figures = serde_json::Value::Null;
    for _ in 0..50 {
        figures = day_figures_on(&db, "2024-05-01").await;
        if figures[0]["callback_count"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(figures[0]["callback_count"], 1, "{figures}");
    assert_eq!(figures[0]["fail_count"], 0, "{figures}");
}

async fn day_figures_on(db: &str, day: &str) -> serde_json::Value {
    let served = Serve::new(db).clock(READ_CLOCK).start().await;
    let token = access_token(&served.base, APPID, SECRET).await;
    let text = datacube_post(
        &served.base,
        &token,
        "getinterfacesummary",
        &format!(r#"{{"begin_date":"{day}","end_date":"{day}"}}"#),
    )
    .await;
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["list"].clone()
}

/// Pushes replayed through the proxy in front of the wechatpy server: the proxy records the
/// same callbacks and messages as `push` does, a handler past the proxy's limit gets a 504
/// before WeChat would give up, and safe-mode pushes are read with the key.
#[tokio::test]
async fn the_proxy_records_what_push_records() {
    let (_dir, push_db) = temp_db();
    let (_dir2, proxy_db) = temp_db();
    add_account(&push_db, APPID, SECRET).await;
    add_account(&proxy_db, APPID, SECRET).await;
    let server = dev_server(TOKEN, AES_KEY, APPID).await;
    let (_proxy, addr, metrics) = proxy_and_metrics(
        &proxy_db,
        &format!("http://127.0.0.1:{}", server.port),
        &[
            "--token",
            TOKEN,
            "--aes-key",
            AES_KEY,
            "--timeout",
            "4.5",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    let metrics = metrics.expect("proxy announces its /metrics");
    let url = format!("http://{addr}/wechat");
    let plain = push(&push_db, &url, "plain", &["--count", "25"]).await;
    let safe = push(&push_db, &url, "safe", &["--count", "25"]).await;
    let boom = push(&push_db, &url, "safe", &["--text", "boom", "--count", "1"]).await;
    assert!(boom.contains("3 × HTTP 500"), "{boom}");
    let sleep = push(
        &push_db,
        &url,
        "plain",
        &["--text", "sleep", "--count", "1"],
    )
    .await;
    assert!(
        sleep.contains("3 × HTTP 504"),
        "the proxy answers before 5 s: {sleep}"
    );

    let runs: Vec<BTreeMap<String, u64>> = [&plain, &safe, &boom, &sleep]
        .iter()
        .map(|r| types(r))
        .collect();
    let want = expected_by_code(&runs);
    let mut last = None;
    for _ in 0..50 {
        let (p_day, _, p_msg) = day_figures(&proxy_db).await;
        let (d_day, _, d_msg) = day_figures(&push_db).await;
        let counts = |m: &serde_json::Value| -> BTreeMap<u64, u64> {
            m.as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["msg_type"].as_u64().unwrap(),
                        r["msg_count"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        if p_day[0]["callback_count"] == 56 && counts(&p_msg) == want {
            assert_eq!(p_day[0]["callback_count"], d_day[0]["callback_count"]);
            assert_eq!(p_day[0]["fail_count"], 6, "{p_day}");
            assert_eq!(d_day[0]["fail_count"], 6, "{d_day}");
            assert_eq!(counts(&d_msg), want);
            let max = p_day[0]["max_time_cost"].as_u64().unwrap();
            assert!((4500..5000).contains(&max), "the proxy's limit: {p_day}");
            // The same callbacks, counted for Prometheus: 50 answered, 3 HTTP 500s (the
            // handler that raises), 3 timeouts (the proxy's own 504).
            let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
            let callbacks = |verdict: &str| {
                sample(
                    &text,
                    &format!("datacube_callbacks_total{{source=\"proxy\",verdict=\"{verdict}\"}}"),
                )
            };
            assert_eq!(callbacks("answered"), 50.0, "{text}");
            assert_eq!(callbacks("status"), 3.0, "{text}");
            assert_eq!(callbacks("timeout"), 3.0, "{text}");
            assert_eq!(
                sample(&text, "datacube_callback_seconds_count{source=\"proxy\"}"),
                56.0,
                "{text}"
            );
            return;
        }
        last = Some((p_day, p_msg));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the proxy's figures never matched: {last:?}, want {want:?}");
}

/// An account removed (and added again) while a proxy records for it: the proxy goes on
/// passing pushes, records nothing more — the new account has nothing of the old — says so,
/// and exits 3.
#[tokio::test]
async fn a_running_proxy_records_nothing_for_a_removed_account() {
    let (_dir, push_db) = temp_db();
    let (_dir2, proxy_db) = temp_db();
    add_account(&push_db, APPID, SECRET).await;
    add_account(&proxy_db, APPID, SECRET).await;
    let server = dev_server(TOKEN, AES_KEY, APPID).await;
    let upstream = format!("http://127.0.0.1:{}", server.port);
    let (mut proxy, addr, log) = proxy_with_log(&proxy_db, &upstream, &["--token", TOKEN]).await;
    let url = format!("http://{addr}/wechat");
    push(&push_db, &url, "plain", &["--count", "10"]).await;
    let mut recorded = false;
    for _ in 0..50 {
        let (day, _, _) = day_figures(&proxy_db).await;
        if day[0]["callback_count"] == 10 {
            recorded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recorded, "the proxy records while the account is there");
    for args in [
        &["account", "remove", "--appid", APPID][..],
        &["account", "add", "--appid", APPID, "--secret", SECRET],
    ] {
        let (code, _, err) = run(&proxy_db, args, None).await;
        assert_eq!(code, 0, "{err}");
    }
    // Pushes still pass through to the developer's server.
    let after = push(&push_db, &url, "plain", &["--count", "10"]).await;
    assert!(
        after.contains("answered 10") || after.contains("10 answered"),
        "{after}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    kill(&proxy, "-TERM");
    let status = proxy.wait().await.unwrap();
    let log = log.await.unwrap();
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(log.contains("the account was removed"), "{log}");
    // Each push is a callback and a message.
    assert!(
        log.contains(&format!(
            "20 events not recorded: account {APPID} was removed"
        )),
        "{log}"
    );
    let (day, hours, messages) = day_figures(&proxy_db).await;
    assert_eq!(day, serde_json::json!([]), "{day}");
    assert_eq!(hours, serde_json::json!([]), "{hours}");
    assert_eq!(messages, serde_json::json!([]), "{messages}");
}

/// An upstream that closes each connection after one answer (without saying so, as a server
/// dropping an idle keep-alive connection does): the next request still gets through.
#[tokio::test]
async fn the_proxy_reconnects_when_the_upstream_dropped_a_kept_connection() {
    let (_dir, db) = temp_db();
    add_account(&db, APPID, SECRET).await;
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = upstream.accept().await.unwrap();
            tokio::spawn(async move {
                let _ = read_message(&mut s).await;
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccess")
                    .await
                    .unwrap();
                // Then gone, without a Connection: close.
            });
        }
    });
    let (_proxy, addr) = proxy(&db, &format!("http://{up_addr}"), &[]).await;
    let mut client = tokio::net::TcpStream::connect(&addr).await.unwrap();
    for _ in 0..3 {
        client
            .write_all(b"POST /w HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
            .await
            .unwrap();
        let answer = read_message(&mut client).await;
        assert_eq!(
            String::from_utf8(answer).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccess"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An upstream that answers every request `success` and counts what it received.
async fn counting_upstream() -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let counted = counted.clone();
            tokio::spawn(async move {
                loop {
                    let mut buf = [0u8; 8192];
                    match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => {
                            counted.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                            let reply = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccess";
                            if s.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), received)
}

/// Sends `raw` on a new connection to the proxy and reads what comes back until it closes.
async fn exchange_raw(addr: &str, raw: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The classic request-smuggling framings — CL.TE, TE.CL, TE.TE, two lengths, a signed
/// length — are refused with 400 and the connection closed; the upstream never sees a byte of
/// them. A plainly chunked request still goes through.
#[tokio::test]
async fn the_proxy_refuses_ambiguous_framing() {
    let (_dir, db) = temp_db();
    add_account(&db, APPID, SECRET).await;
    let (upstream, received) = counting_upstream().await;
    let (_proxy, addr, metrics) =
        proxy_and_metrics(&db, &upstream, &["--metrics-listen", "127.0.0.1:0"]).await;
    let smuggled = "GPOST /admin HTTP/1.1\r\nHost: x\r\n\r\n";
    for (name, head) in [
        ("CL.TE", "Content-Length: 6\r\nTransfer-Encoding: chunked"),
        ("TE.CL", "Transfer-Encoding: chunked\r\nContent-Length: 6"),
        (
            "TE.TE twice",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: x",
        ),
        ("TE.TE list", "Transfer-Encoding: chunked, identity"),
        ("TE.TE obfuscated", "Transfer-Encoding: xchunked"),
        ("TE.TE space", "Transfer-Encoding : chunked"),
        ("two lengths", "Content-Length: 6\r\nContent-Length: 40"),
        ("a signed length", "Content-Length: +6"),
    ] {
        let raw = format!("POST /wechat HTTP/1.1\r\nHost: x\r\n{head}\r\n\r\n0\r\n\r\n{smuggled}");
        let answer = exchange_raw(&addr, raw.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{name}: {answer:?}"
        );
        assert_eq!(
            answer.matches("HTTP/1.1").count(),
            1,
            "{name}: one answer, then closed"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        received.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "nothing went upstream"
    );
    let plain = "POST /wechat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\n<xm>\r\n0\r\n\r\n";
    let answer = exchange_raw(&addr, plain.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(answer.ends_with("success"), "{answer:?}");
    // Each refusal counted for Prometheus, by reason.
    let text = reqwest::get(metrics.expect("proxy announces its /metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(
            &text,
            "datacube_proxy_refused_total{reason=\"bad_request\"}"
        ),
        8.0,
        "{text}"
    );
}

/// 5,000 idle connections and 5,000 that send half a body and stall, against a proxy limited
/// to 1,024 open files: pushes are still answered within a second each, its memory stays
/// bounded and comes back down once they are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_keeps_answering_under_idle_and_half_sent_floods() {
    let (_dir, db) = temp_db();
    add_account(&db, APPID, SECRET).await;
    let (upstream, _) = counting_upstream().await;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 1024 && exec {BIN} proxy --listen 127.0.0.1:0 --workers 1 --upstream {upstream} --appid {APPID}"
        ))
        .env("DATACUBE_DATABASE", &db)
        .env("DATACUBE_CLOCK", PUSH_CLOCK)
        .env("DATACUBE_LOG", "error")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let addr = line
        .strip_prefix("datacube proxy on http://")
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let push = |addr: String| async move {
        let started = std::time::Instant::now();
        let body = "<xml><MsgType><![CDATA[text]]></MsgType></xml>";
        let raw = format!(
            "POST /wechat?signature=s&timestamp=1&nonce=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer =
            tokio::time::timeout(Duration::from_secs(5), exchange_raw(&addr, raw.as_bytes()))
                .await
                .unwrap_or_default();
        let ok = answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("success");
        if !ok {
            eprintln!("push answered {answer:?} after {:?}", started.elapsed());
        }
        (ok, started.elapsed())
    };
    let (ok, _) = push(addr.clone()).await;
    assert!(ok, "a push is answered");
    let before = rss_mib(pid);

    // The flood: connections that send nothing, and connections that send a head and half a
    // body, then wait.
    let mut held = Vec::new();
    let mut opening = tokio::task::JoinSet::new();
    for i in 0..10_000 {
        let addr = addr.clone();
        opening.spawn(async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
            if i % 2 == 1 {
                let head = "POST /wechat?signature=s&timestamp=1&nonce=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n";
                s.write_all(head.as_bytes()).await.ok()?;
                s.write_all(&[b'x'; 30_000]).await.ok()?;
            }
            Some(s)
        });
        if opening.len() >= 500 {
            while let Some(s) = opening.join_next().await {
                held.extend(s.ok().flatten());
                if opening.len() < 250 {
                    break;
                }
            }
        }
    }
    while let Some(s) = opening.join_next().await {
        held.extend(s.ok().flatten());
    }
    let held_count = held.len();
    assert!(
        held_count > 5_000,
        "{held_count} attacking connections opened"
    );
    // Pushes are answered, each within a second, while the flood holds its connections.
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let (ok, took) = push(addr.clone()).await;
        assert!(ok, "a push during the flood was answered");
        slowest = slowest.max(took);
    }
    assert!(slowest < Duration::from_secs(1), "slowest push {slowest:?}");
    let during = rss_mib(pid);
    assert!(
        during < 200.0,
        "{during:.0} MiB during the flood (was {before:.0})"
    );
    drop(held);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_mib(pid);
    assert!(
        after < before + 40.0,
        "{after:.0} MiB after the flood, {before:.0} before ({during:.0} during)"
    );
    eprintln!(
        "proxy under a flood of {} connections: slowest push {slowest:?}; RSS {before:.0} MiB before, {during:.0} during, {after:.0} after",
        held_count
    );
    let (ok, _) = push(addr.clone()).await;
    assert!(ok, "a push after the flood is answered");
    let _ = child.start_kill();
}

/// `push --metrics-listen`: a long run can be watched from Prometheus while it goes on.
#[tokio::test]
async fn push_serves_metrics_while_it_runs() {
    let (_dir, db) = temp_db();
    add_account(&db, APPID, SECRET).await;
    let server = dev_server(TOKEN, AES_KEY, APPID).await;
    let url = server.url();
    let mut child = Command::new(BIN)
        .env("DATACUBE_DATABASE", &db)
        .env("DATACUBE_LOG", "warn")
        .args(["push", "--appid", APPID, "--url", &url, "--token", TOKEN])
        .args(["--clock", PUSH_CLOCK, "--text", "hello", "--rate", "4"])
        .args(["--count", "12", "--metrics-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().expect("push prints");
    let metrics = line
        .strip_prefix("datacube metrics on ")
        .unwrap_or_else(|| panic!("unexpected: {line}"))
        .to_owned();
    // Twelve messages at four a second: about three seconds. Before they are all sent, some
    // are counted — each message answered by its one delivery.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        let messages = sample(&text, "datacube_push_messages_total{outcome=\"answered\"}");
        if messages >= 1.0 {
            break text;
        }
        assert!(Instant::now() < deadline, "nothing counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let answered = sample(
        &text,
        "datacube_callbacks_total{source=\"push\",verdict=\"answered\"}",
    );
    let messages = sample(&text, "datacube_push_messages_total{outcome=\"answered\"}");
    assert!(
        (1.0..12.0).contains(&messages) && answered >= messages,
        "while running: {answered} callbacks, {messages} messages in:\n{text}"
    );
    assert!(text.contains("datacube_callback_seconds_bucket{source=\"push\",le=\"0.1\"}"));
    let mut report = String::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        report.push_str(&l);
        report.push('\n');
    }
    assert!(child.wait().await.unwrap().success());
    assert!(
        report.contains("answered 12, failed 0 (12 deliveries)"),
        "{report}"
    );
}
