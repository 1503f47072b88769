//! Limits that keep the server up: idle timeout, connection and in-flight limits, body limit,
//! graceful shutdown.

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
async fn idle_connections_are_closed() {
    let t = spawn_app_with(|c| c.limits.idle_timeout = Duration::from_millis(500)).await;
    // Silent from the start.
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    let started = std::time::Instant::now();
    let got = read_all(&mut s, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed by the server"
    );
    assert!(!got.contains("200 OK"));
    // Idle after one keep-alive request.
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    s.write_all(datacube_request("x", "").as_bytes())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let got = read_all(&mut s, Duration::from_secs(5)).await;
    assert!(got.contains("\"errcode\":40001"), "{got}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "idle keep-alive closed"
    );
}

#[tokio::test]
async fn past_the_connection_limit_the_answer_is_minus_one() {
    let t = spawn_app_with(|c| c.limits.max_connections = 1).await;
    let _holder = TcpStream::connect(t.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
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
}

#[tokio::test]
async fn past_the_in_flight_limit_the_answer_is_minus_one() {
    let t = spawn_app_with(|c| c.limits.max_in_flight = 1).await;
    let token = t.token().await;
    // One request in flight: its body is announced but not yet sent.
    let mut slow = TcpStream::connect(t.addr).await.unwrap();
    let body = r#"{"begin_date":"2021-09-01","end_date":"2021-09-07"}"#;
    let req = datacube_request(&token, body);
    let (head, tail) = req.split_at(req.len() - 5);
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = t
        .datacube("getusersummary", &token, "2021-09-01", "2021-09-07")
        .await;
    assert_wechat_error(&a, -1, t.unix());
    // The slow one completes normally.
    slow.write_all(tail.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let got = String::from_utf8_lossy(&buf[..n]);
    assert!(got.ends_with(r#"{"list":[]}"#), "{got}");
    // And capacity is back.
    let a = t
        .datacube("getusersummary", &token, "2021-09-01", "2021-09-07")
        .await;
    assert_eq!(a.body, r#"{"list":[]}"#);
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
