//! The front (issue 32): plain WeChat API requests are read and written by datacube itself,
//! everything else by hyper. A client cannot tell which: the same bytes come back, requests
//! in a pipeline or a byte at a time are answered in order, and whatever the front does not
//! take is served by hyper on the same connection.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// One answer read off `s`: its head and its body (by its `Content-Length`).
async fn read_answer(s: &mut TcpStream, pending: &mut Vec<u8>) -> String {
    let deadline = Duration::from_secs(10);
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end + 4]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map_or(0, |n| n.trim().parse().unwrap());
            if pending.len() >= end + 4 + length {
                let whole: Vec<u8> = pending.drain(..end + 4 + length).collect();
                return String::from_utf8(whole).unwrap();
            }
        }
        let mut chunk = [0u8; 16384];
        let n = tokio::time::timeout(deadline, s.read(&mut chunk))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before the answer: {:?}",
            String::from_utf8_lossy(pending)
        );
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// `answer` with what differs from one answer to the next masked: the date, request ids.
fn masked(answer: &str) -> String {
    let mut out = String::new();
    for line in answer.split_inclusive("\r\n") {
        if line.starts_with("Date: ") {
            out.push_str("Date: …\r\n");
        } else {
            out.push_str(line);
        }
    }
    let mut rest = out.as_str();
    let mut done = String::new();
    while let Some(at) = rest.find("rid: ") {
        done.push_str(&rest[..at + 5]);
        rest = rest[at + 5..].trim_start_matches(|c: char| c.is_ascii_alphanumeric() || c == '-');
        done.push('…');
    }
    done.push_str(rest);
    done
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: datacube\r\nUser-Agent: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The answer to `request` on a new connection, served by the front when `by_hyper` is false,
/// and by hyper when true (a health check first hands the connection over).
async fn ask(t: &TestApp, request: &[u8], by_hyper: bool) -> String {
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    let mut pending = Vec::new();
    if by_hyper {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: datacube\r\n\r\n")
            .await
            .unwrap();
        let health = read_answer(&mut s, &mut pending).await;
        assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    }
    s.write_all(request).await.unwrap();
    read_answer(&mut s, &mut pending).await
}

#[tokio::test]
async fn the_front_writes_the_bytes_hyper_writes() {
    let t = spawn_app().await;
    t.set_clock("2024-05-20T09:00:00+08:00").await;
    crate::hot::follow(&t, "o1", 7, 30).await;
    let token = t.token().await;
    let range = r#"{"begin_date":"2024-05-06","end_date":"2024-05-08"}"#;
    let requests = [
        // An answer (again: from the loop's copy), errors, an unknown endpoint and path.
        post(&format!("/datacube/getusersummary?access_token={token}"), range),
        post(&format!("/datacube/getusersummary?access_token={token}"), range),
        post(&format!("/datacube/getupstreammsg?access_token={token}"), range),
        post("/datacube/getusersummary?access_token=nope", range),
        post(&format!("/datacube/getusersummary?access_token={token}"), "{"),
        post(&format!("/datacube/getnothing?access_token={token}"), range),
        post("/nothing/here", ""),
        format!("GET /datacube/getusersummary?access_token={token} HTTP/1.1\r\nHost: d\r\n\r\n"),
        "GET /cgi-bin/token?grant_type=client_credential&appid=wxnone&secret=x HTTP/1.1\r\nHost: d\r\n\r\n".to_owned(),
    ];
    let mut answered = Vec::new();
    for request in &requests {
        let front = ask(&t, request.as_bytes(), false).await;
        let hyper = ask(&t, request.as_bytes(), true).await;
        assert_eq!(masked(&front), masked(&hyper), "{request}");
        assert!(front.contains("\r\nDate: "), "{front}");
        answered.push(front);
    }
    assert!(answered[0].contains(r#""new_user":1"#), "{}", answered[0]);
    assert!(
        answered[3].contains(r#""errcode":40001"#),
        "{}",
        answered[3]
    );
}

#[tokio::test]
async fn pipelined_and_trickled_requests_are_answered_in_order() {
    let t = spawn_app().await;
    t.set_clock("2024-05-20T09:00:00+08:00").await;
    crate::hot::follow(&t, "o1", 7, 30).await;
    let token = t.token().await;
    let a = post(
        &format!("/datacube/getusersummary?access_token={token}"),
        r#"{"begin_date":"2024-05-06","end_date":"2024-05-08"}"#,
    );
    let b = post(
        &format!("/datacube/getusercumulate?access_token={token}"),
        r#"{"begin_date":"2024-05-07","end_date":"2024-05-08"}"#,
    );
    let (alone_a, alone_b) = (
        masked(&ask(&t, a.as_bytes(), false).await),
        masked(&ask(&t, b.as_bytes(), false).await),
    );
    assert_ne!(alone_a, alone_b);
    // Three requests in one write, the last one's body cut in two writes.
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    let all = format!("{a}{b}{a}");
    let cut = all.len() - 10;
    s.write_all(&all.as_bytes()[..cut]).await.unwrap();
    let mut pending = Vec::new();
    assert_eq!(masked(&read_answer(&mut s, &mut pending).await), alone_a);
    assert_eq!(masked(&read_answer(&mut s, &mut pending).await), alone_b);
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(&all.as_bytes()[cut..]).await.unwrap();
    assert_eq!(masked(&read_answer(&mut s, &mut pending).await), alone_a);
    // A byte at a time.
    for byte in b.as_bytes() {
        s.write_all(std::slice::from_ref(byte)).await.unwrap();
    }
    assert_eq!(masked(&read_answer(&mut s, &mut pending).await), alone_b);
    assert!(pending.is_empty());
}

#[tokio::test]
async fn what_the_front_does_not_take_hyper_serves_on_the_same_connection() {
    let t = spawn_app().await;
    t.set_clock("2024-05-20T09:00:00+08:00").await;
    let token = t.token().await;
    let path = format!("/datacube/getusersummary?access_token={token}");
    let range = r#"{"begin_date":"2024-05-06","end_date":"2024-05-08"}"#;
    let plain = masked(&ask(&t, post(&path, range).as_bytes(), false).await);
    let chunked = format!(
        "POST {path} HTTP/1.1\r\nHost: d\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{range}\r\n0\r\n\r\n",
        range.len()
    );
    let expect = format!(
        "POST {path} HTTP/1.1\r\nHost: d\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        range.len()
    );
    // Chunked, then a plain one after it on the same connection: both answered (by hyper).
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    let mut pending = Vec::new();
    s.write_all(format!("{chunked}{}", post(&path, range)).as_bytes())
        .await
        .unwrap();
    assert_eq!(masked(&read_answer(&mut s, &mut pending).await), plain);
    assert_eq!(masked(&read_answer(&mut s, &mut pending).await), plain);
    // `Expect: 100-continue`: hyper says continue, then answers.
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    s.write_all(expect.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let mut seen = String::new();
    while !seen.contains("100 Continue\r\n\r\n") {
        let mut chunk = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    pending.extend_from_slice(
        seen.split_once("100 Continue\r\n\r\n")
            .unwrap()
            .1
            .as_bytes(),
    );
    s.write_all(range.as_bytes()).await.unwrap();
    assert_eq!(masked(&read_answer(&mut s, &mut pending).await), plain);
    // `Connection: close`: answered, with hyper's `Connection: close`, then closed.
    let close =
        post(&path, range).replacen("Host: datacube\r\n", "Host: d\r\nConnection: close\r\n", 1);
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    s.write_all(close.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let all = String::from_utf8(all).unwrap();
    assert!(all.contains("\r\nConnection: close\r\n"), "{all}");
    assert!(all.ends_with(body_of(&plain)), "{all}");
    // Two lengths, a length with a transfer coding, a signed length: hyper's answer (a 400, or
    // for the transfer coding an empty body's error), then closed: the request behind is
    // never read as one.
    for smuggled in [
        format!("POST {path} HTTP/1.1\r\nHost: d\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        format!("POST {path} HTTP/1.1\r\nHost: d\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        format!("POST {path} HTTP/1.1\r\nHost: d\r\nContent-Length: +5\r\n\r\nhello"),
    ] {
        let mut s = TcpStream::connect(t.addr).await.unwrap();
        s.write_all(format!("{smuggled}{}", post(&path, range)).as_bytes())
            .await
            .unwrap();
        let mut all = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all)).await;
        let all = String::from_utf8_lossy(&all);
        assert_eq!(all.matches("HTTP/1.1 ").count(), 1, "{smuggled}: {all}");
        assert!(
            all.starts_with("HTTP/1.1 400 Bad Request\r\n") || all.contains("\"errcode\":44002"),
            "{smuggled}: {all}"
        );
    }
}

/// The body of an answer.
fn body_of(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").unwrap().1
}

#[tokio::test]
async fn shutdown_closes_waiting_connections_at_once_and_lets_an_answer_finish() {
    let t = spawn_app_with(|c| {
        c.limits.idle_timeout = Duration::from_secs(60);
        c.limits.shutdown_grace = Duration::from_secs(60);
    })
    .await;
    t.set_clock("2024-05-20T09:00:00+08:00").await;
    let token = t.token().await;
    let request = post(
        &format!("/datacube/getusersummary?access_token={token}"),
        r#"{"begin_date":"2024-05-06","end_date":"2024-05-08"}"#,
    );
    // Waiting: after an answer of the front, after one of hyper, and before any request.
    let mut front = TcpStream::connect(t.addr).await.unwrap();
    front.write_all(request.as_bytes()).await.unwrap();
    read_answer(&mut front, &mut Vec::new()).await;
    let mut hyper = TcpStream::connect(t.addr).await.unwrap();
    hyper
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: d\r\n\r\n")
        .await
        .unwrap();
    read_answer(&mut hyper, &mut Vec::new()).await;
    let mut fresh = TcpStream::connect(t.addr).await.unwrap();
    // Half a request sent: it is answered, and says the connection closes.
    let mut half = TcpStream::connect(t.addr).await.unwrap();
    half.write_all(&request.as_bytes()[..20]).await.unwrap();
    // And half a request for hyper (the front hands it over once it is whole).
    let health = b"GET /healthz HTTP/1.1\r\nHost: d\r\n\r\n";
    let mut half_hyper = TcpStream::connect(t.addr).await.unwrap();
    half_hyper.write_all(&health[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = tokio::spawn(t.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    half.write_all(&request.as_bytes()[20..]).await.unwrap();
    half_hyper.write_all(&health[10..]).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), half_hyper.read_to_end(&mut answer))
        .await
        .expect("answered and closed")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), half.read_to_end(&mut answer))
        .await
        .expect("answered and closed")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    assert!(answer.contains(r#""list":["#), "{answer}");
    for s in [&mut front, &mut hyper, &mut fresh] {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .expect("closed within seconds, not at the idle timeout")
            .unwrap();
        assert!(rest.is_empty());
    }
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("the server stops within seconds")
        .unwrap();
}
