//! Limits that keep the server up: header, body and idle deadlines, connection and in-flight
//! limits, body limit, graceful shutdown.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

async fn read_all(s: &mut TcpStream, within: Duration) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(within, s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

fn datacube_request(token: &str, body: &str) -> String {
    format!(
        "POST /datacube/getusersummary?access_token={token} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn silent_trickling_and_idle_connections_are_closed_each_at_its_own_deadline() {
    let t = spawn_app_with(|c| {
        c.limits.header_timeout = Duration::from_millis(500);
        c.limits.idle_timeout = Duration::from_millis(1500);
    })
    .await;
    // Silent from the start: a head not sent within the header timeout.
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    let started = std::time::Instant::now();
    let got = read_all(&mut s, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1400),
        "closed at the header timeout: {took:?}"
    );
    assert!(!got.contains("200 OK"));
    // A head trickled a byte every 50 ms: the bytes do not extend the deadline.
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    let started = std::time::Instant::now();
    let head = datacube_request("x", "");
    let mut cut_off = false;
    for b in head.as_bytes() {
        if s.write_all(&[*b]).await.is_err() {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = read_all(&mut s, Duration::from_secs(1)).await;
    assert!(
        cut_off || !got.contains("40001"),
        "a trickled head is never answered: {got}"
    );
    assert!(started.elapsed() > Duration::from_millis(500));
    // Idle after one keep-alive request: the idle timeout, not the header one.
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    s.write_all(datacube_request("x", "").as_bytes())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let got = read_all(&mut s, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(got.contains("\"errcode\":40001"), "{got}");
    assert!(
        (Duration::from_millis(1300)..Duration::from_millis(3000)).contains(&took),
        "idle keep-alive closed at the idle timeout: {took:?}"
    );
}

#[tokio::test]
async fn past_the_connection_limit_the_longest_waiting_connection_makes_room() {
    let t = spawn_app_with(|c| c.limits.max_connections = 2).await;
    let token = t.token().await;
    // Two connections that have not finished their heads.
    let mut first = TcpStream::connect(t.addr).await.unwrap();
    first
        .write_all(b"POST /datacube/getusersummary")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = TcpStream::connect(t.addr).await.unwrap();
    second.write_all(b"GET /healthz").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A new client is served: the first (waiting longest) was closed for it.
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    let body = r#"{"begin_date":"2021-09-01","end_date":"2021-09-07"}"#;
    s.write_all(datacube_request(&token, body).as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).ends_with(r#"{"list":[]}"#));
    assert_eq!(
        read_all(&mut first, Duration::from_secs(2)).await,
        "",
        "closed"
    );
    // The second may still finish its request.
    second
        .write_all(b" HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let got = String::from_utf8_lossy(&buf[..n]);
    assert!(got.contains(r#"{"status":"ok"}"#), "{got}");
}

#[tokio::test]
async fn past_the_connection_limit_with_every_connection_busy_the_answer_is_minus_one() {
    // One connection, busy with a request answered late.
    let t = spawn_app_with(|c| {
        c.limits.max_connections = 1;
        c.faults = datacube_server::faults::Faults::parse("getusersummary:+1500ms@1").unwrap();
    })
    .await;
    let token = t.token().await;
    let mut busy = TcpStream::connect(t.addr).await.unwrap();
    let body = r#"{"begin_date":"2021-09-01","end_date":"2021-09-07"}"#;
    busy.write_all(datacube_request(&token, body).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    s.write_all(datacube_request("x", "").as_bytes())
        .await
        .unwrap();
    let got = read_all(&mut s, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    assert!(
        got.contains(r#"{"errcode":-1,"errmsg":"system error rid: "#),
        "{got}"
    );
    assert!(
        got.to_ascii_lowercase().contains("connection: close"),
        "{got}"
    );
    // The health checks are answered even then.
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_all(&mut s, Duration::from_secs(5)).await;
    assert!(got.contains(r#"{"status":"ready"}"#), "{got}");
    // The busy request was not cut.
    let got = read_all(&mut busy, Duration::from_secs(2)).await;
    assert!(got.contains(r#"{"list":[]}"#), "{got}");
}

#[tokio::test]
async fn past_the_in_flight_limit_the_answer_is_minus_one_but_health_is_answered() {
    let t = spawn_app_with(|c| {
        c.limits.max_in_flight = 1;
        c.faults = datacube_server::faults::Faults::parse("getusersummary:+1s@1").unwrap();
    })
    .await;
    let token = t.token().await;
    // One request in flight, answered a second late.
    let mut slow = TcpStream::connect(t.addr).await.unwrap();
    let body = r#"{"begin_date":"2021-09-01","end_date":"2021-09-07"}"#;
    slow.write_all(datacube_request(&token, body).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = t
        .datacube("getusercumulate", &token, "2021-09-01", "2021-09-07")
        .await;
    assert_wechat_error(&a, -1, t.unix());
    for path in ["/healthz", "/readyz"] {
        let a = t.get(path).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
    }
    // The slow one completes normally, and capacity is back.
    let got = read_all(&mut slow, Duration::from_secs(3)).await;
    assert!(got.contains(r#"{"list":[]}"#), "{got}");
    let a = t
        .datacube("getusercumulate", &token, "2021-09-01", "2021-09-07")
        .await;
    assert_eq!(a.body, r#"{"list":[]}"#);
}

#[tokio::test]
async fn a_body_still_arriving_holds_no_request_slot_and_is_closed_at_its_deadline() {
    let t = spawn_app_with(|c| {
        c.limits.max_in_flight = 1;
        c.limits.body_timeout = Duration::from_millis(800);
    })
    .await;
    let token = t.token().await;
    // Ten requests whose bodies are announced and never finished.
    let body = r#"{"begin_date":"2021-09-01","end_date":"2021-09-07"}"#;
    let req = datacube_request(&token, body);
    let mut slow = Vec::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(t.addr).await.unwrap();
        s.write_all(&req.as_bytes()[..req.len() - 5]).await.unwrap();
        slow.push(s);
    }
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let a = t
        .datacube("getusersummary", &token, "2021-09-01", "2021-09-07")
        .await;
    assert_eq!(a.body, r#"{"list":[]}"#, "served while ten bodies trickle");
    let stable = t
        .post(
            "/cgi-bin/stable_token",
            &format!(
                r#"{{"grant_type":"client_credential","appid":"{APPID}","secret":"{SECRET}"}}"#
            ),
        )
        .await;
    assert!(stable.body.contains("access_token"), "{}", stable.body);
    // A body trickled a byte every 100 ms does not move its deadline.
    for _ in 0..4 {
        for s in &mut slow {
            let _ = s.write_all(b" ").await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for s in &mut slow {
        let got = read_all(s, Duration::from_secs(3)).await;
        assert!(!got.contains("list"), "never answered: {got}");
    }
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_and_the_connection_closed() {
    let t = spawn_app().await;
    let token = t.token().await;
    let huge = format!(
        r#"{{"begin_date":"2021-09-01","end_date":"2021-09-07","pad":"{}"}}"#,
        "x".repeat(200_000)
    );
    let a = t
        .post(
            &format!("/datacube/getusersummary?access_token={token}"),
            &huge,
        )
        .await;
    assert_wechat_error(&a, 61500, t.unix());
    assert_eq!(a.headers["connection"], "close");
}

#[tokio::test]
async fn shutdown_lets_open_requests_finish() {
    let t = spawn_app().await;
    let token = t.token().await;
    let mut slow = TcpStream::connect(t.addr).await.unwrap();
    let req = datacube_request(
        &token,
        r#"{"begin_date":"2021-09-01","end_date":"2021-09-07"}"#,
    );
    let (head, tail) = req.split_at(req.len() - 5);
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let addr = t.addr;
    let stopping = tokio::spawn(t.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no new connections once shutdown began"
    );
    slow.write_all(tail.as_bytes()).await.unwrap();
    let got = read_all(&mut slow, Duration::from_secs(5)).await;
    assert!(got.ends_with(r#"{"list":[]}"#), "{got}");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("serve returns once the request is done")
        .unwrap();
}
