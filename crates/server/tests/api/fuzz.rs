//! Random and malformed requests over raw TCP: the server never panics, never answers 5xx and
//! never hangs, and still serves correctly afterwards.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "BREW", "", "G\0T",
];

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

fn random_bytes(rng: &mut StdRng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.random()).collect()
}

fn random_date(rng: &mut StdRng) -> String {
    match rng.random_range(0..6) {
        0 => format!(
            "{:04}-{:02}-{:02}",
            rng.random_range(0..10000),
            rng.random_range(0..14),
            rng.random_range(0..33)
        ),
        1 => "2021-02-29".into(),
        2 => format!("2021-09-{:02}", rng.random_range(1..12)),
        3 => String::from_utf8_lossy(&random_bytes(rng, 10)).into_owned(),
        4 => "".into(),
        _ => format!(
            "2021-0{}-0{}",
            rng.random_range(1..10),
            rng.random_range(1..10)
        ),
    }
}

fn random_request(rng: &mut StdRng, token: &str) -> Vec<u8> {
    let method = pick(rng, METHODS);
    let endpoints: Vec<String> = datacube_api::Endpoint::ALL
        .iter()
        .map(|e| format!("/datacube/{}", e.name()))
        .collect();
    let path = match rng.random_range(0..8) {
        0..=3 => endpoints[rng.random_range(0..endpoints.len())].clone(),
        4 => pick(
            rng,
            &[
                "/cgi-bin/token",
                "/cgi-bin/stable_token",
                "/admin/accounts",
                "/admin/clock",
                "/admin/import",
                "/",
                "/datacube/",
                "/datacube//x",
                "/cgi-bin/component/api_component_token",
                "/cgi-bin/component/api_create_preauthcode",
                "/cgi-bin/component/api_query_auth",
                "/cgi-bin/component/api_authorizer_token",
                "/cgi-bin/component/api_get_authorizer_info",
                "/cgi-bin/component/api_start_push_ticket",
                "/cgi-bin/component/",
                "/admin/components",
                "/admin/components/wxc0000000000000f1/ticket",
                "/admin/components/wxc0000000000000f1/grants",
                "/admin/components/wxc0000000000000f1/grants/wx1234567890abcdef",
            ],
        )
        .into(),
        5 => format!("/{}", "a".repeat(rng.random_range(0..20_000))),
        6 => format!(
            "/datacube/{}",
            String::from_utf8_lossy(&random_bytes(rng, 8)).replace(['\r', '\n', ' '], "")
        ),
        _ => "/datacube/getusersummary%00%zz".into(),
    };
    let query = match rng.random_range(0..7) {
        0 => String::new(),
        1 => format!("?access_token={token}"),
        2 => "?access_token=%ZZ%&&==".into(),
        3 => format!("?access_token={}", "t".repeat(rng.random_range(0..5000))),
        4 => format!("?grant_type=client_credential&appid={APPID}&secret={SECRET}&appid=x"),
        5 => format!("?appid=wx%20&endpoint=getusersummary&access_token={token}"),
        _ => format!("?access_token={token}&access_token=other"),
    };
    let body: Vec<u8> = match rng.random_range(0..11) {
        9 => br#"{"component_appid":"wxc0000000000000f1","component_appsecret":"s","component_verify_ticket":null,"authorization_code":7,"authorizer_appid":["x"],"offset":-1,"count":1e30}"#.to_vec(),
        10 => br#"{"appid":"wxc0000000000000f1","secret":"component-secret","token":"abc","aes_key":"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG","authorizer_appid":"wx1234567890abcdef","func_ids":[1,2,4294967295]}"#.to_vec(),
        0 => Vec::new(),
        1 => format!(r#"{{"begin_date":"{}","end_date":"{}"}}"#, random_date(rng), random_date(rng)).into_bytes(),
        2 => {
            let n = rng.random_range(0..3000);
            random_bytes(rng, n)
        }
        3 => vec![b'['; rng.random_range(0..100_000)],
        4 => br#"{"grant_type":"client_credential","appid":"wx1234567890abcdef","secret":"0123456789abcdef0123456789abcdef","force_refresh":true}"#.to_vec(),
        5 => br#"{"list":[{"ref_date":"2021-09-01","user_source":0,"new_user":1,"cancel_user":"x"}]}"#.to_vec(),
        6 => vec![b'x'; 70_000],
        7 => br#"{"now":"not a time"}"#.to_vec(),
        _ => br#"{"begin_date":"2021-09-01","end_date":"2021-09-07"}"#.to_vec(),
    };
    let mut req = format!("{method} {path}{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n").into_bytes();
    if rng.random_bool(0.2) {
        req.extend_from_slice(format!("Authorization: Bearer {ADMIN}\r\n").as_bytes());
    }
    match rng.random_range(0..6) {
        // A Content-Length shorter or longer than the body.
        0 => req.extend_from_slice(format!("Content-Length: {}\r\n", body.len() / 2).as_bytes()),
        1 => req.extend_from_slice(format!("Content-Length: {}\r\n", body.len() + 10).as_bytes()),
        2 => req.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        3 => req.extend_from_slice(
            format!("X-Big: {}\r\n", "h".repeat(rng.random_range(0..120_000))).as_bytes(),
        ),
        4 => req.extend_from_slice(b"Content-Length: -1\r\n"),
        _ => req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes()),
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(&body);
    // Sometimes cut the request anywhere.
    if rng.random_bool(0.15) && !req.is_empty() {
        let cut = rng.random_range(0..req.len());
        req.truncate(cut);
    }
    req
}

#[tokio::test]
async fn random_and_malformed_requests_never_panic_5xx_or_hang() {
    let t = spawn_app_with(|c| {
        c.limits.header_timeout = Duration::from_secs(1);
        c.limits.idle_timeout = Duration::from_secs(1);
        c.limits.body_timeout = Duration::from_secs(1);
    })
    .await;
    let token = t.token().await;
    let mut rng = StdRng::seed_from_u64(0x0da7ac0be);
    let mut answered = 0;
    let requests: Vec<(Vec<u8>, bool)> = (0..600)
        .map(|_| (random_request(&mut rng, &token), rng.random_bool(0.5)))
        .collect();
    for (batch_no, batch) in requests.chunks(24).enumerate() {
        let mut set = tokio::task::JoinSet::new();
        for (j, (req, close_write)) in batch.iter().cloned().enumerate() {
            let addr = t.addr;
            set.spawn(async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                // The server may close early (e.g. on an oversized head); a failed write is fine.
                let _ = s.write_all(&req).await;
                if close_write {
                    let _ = s.shutdown().await;
                }
                let mut buf = Vec::new();
                let read =
                    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
                (batch_no * 24 + j, req, read.is_ok(), buf)
            });
        }
        while let Some(done) = set.join_next().await {
            let (i, req, finished, buf) = done.expect("no panic in the client");
            assert!(
                finished,
                "request {i} hung: {:?}",
                String::from_utf8_lossy(&req[..req.len().min(300)])
            );
            let text = String::from_utf8_lossy(&buf);
            for (at, _) in text.match_indices("HTTP/1.1 ") {
                let status = &text[at + 9..(at + 12).min(text.len())];
                let code: u16 = status.parse().unwrap_or(0);
                assert!(
                    code != 0 && code < 500,
                    "request {i} got {status}: {text:.400}"
                );
                answered += 1;
            }
        }
    }
    assert!(answered > 300, "most requests get an answer ({answered})");
    // Still alive, still right.
    let a = t
        .datacube("getusersummary", &token, "2021-09-01", "2021-09-07")
        .await;
    assert_eq!(a.status, 200);
    assert!(
        a.body == r#"{"list":[]}"# || a.body.starts_with(r#"{"list":[{"#),
        "{}",
        a.body
    );
    let fresh = t.token().await;
    let a = t
        .datacube("getinterfacesummary", &fresh, "2021-09-01", "2021-09-07")
        .await;
    assert_eq!(a.body, r#"{"list":[]}"#);
}
