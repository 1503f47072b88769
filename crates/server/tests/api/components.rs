//! Third-party platforms over HTTP: the token flow's answers and errors, and the permission
//! sets enforced on every datacube endpoint (component reference §2, §4, §5, §7).

use datacube_api::{Endpoint, Group};
use serde_json::{json, Value};

use crate::helpers::*;

const C: &str = "wxc0000000000000c1";
const C_SECRET: &str = "component-secret-for-tests-000001";
const C_TOKEN: &str = "componenttoken";
const C_AES: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
/// A ready day of both generations.
const DAY: &str = "2026-01-05";

async fn app() -> TestApp {
    app_with(|_| {}).await
}

/// A server at 2026-01-10 09:00 with the component C (no event URL).
async fn app_with(configure: impl FnOnce(&mut datacube_server::config::Config)) -> TestApp {
    let t = spawn_app_with(configure).await;
    t.set_clock("2026-01-10T09:00:00+08:00").await;
    add_component(&t, None).await;
    t
}

async fn add_component(t: &TestApp, event_url: Option<&str>) {
    let a = t
        .admin_post(
            "/admin/components",
            &json!({"appid": C, "secret": C_SECRET, "token": C_TOKEN, "aes_key": C_AES,
                    "event_url": event_url})
            .to_string(),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
}

/// A fresh ticket (no event URL: only answered).
async fn ticket(t: &TestApp) -> String {
    let a = t
        .admin_post(&format!("/admin/components/{C}/ticket"), "")
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["pushed"], false);
    a.json()["ticket"].as_str().unwrap().to_owned()
}

async fn component_post(t: &TestApp, name: &str, token: &str, body: Value) -> Answer {
    t.post(
        &format!("/cgi-bin/component/{name}?component_access_token={token}"),
        &body.to_string(),
    )
    .await
}

async fn component_token(t: &TestApp) -> String {
    token_for_ticket(t, &ticket(t).await).await
}

/// A component token from `ticket`.
async fn token_for_ticket(t: &TestApp, ticket: &str) -> String {
    let a = t
        .post(
            "/cgi-bin/component/api_component_token",
            &json!({"component_appid": C, "component_appsecret": C_SECRET,
                    "component_verify_ticket": ticket})
            .to_string(),
        )
        .await;
    assert_eq!(a.json()["expires_in"], 7200, "{}", a.body);
    a.json()["component_access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `authorizer` grants `sets`; the code is exchanged: (authorizer token, refresh token).
async fn authorize(t: &TestApp, ctoken: &str, authorizer: &str, sets: &[u32]) -> (String, String) {
    let g = t
        .admin_post(
            &format!("/admin/components/{C}/grants"),
            &json!({"authorizer_appid": authorizer, "func_ids": sets}).to_string(),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.body);
    let code = g.json()["authorization_code"].as_str().unwrap().to_owned();
    let a = component_post(
        t,
        "api_query_auth",
        ctoken,
        json!({"component_appid": C, "authorization_code": code}),
    )
    .await;
    let info = &a.json()["authorization_info"];
    assert_eq!(info["authorizer_appid"], authorizer, "{}", a.body);
    let ids: Vec<u64> = info["func_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["funcscope_category"]["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, sets.iter().map(|s| u64::from(*s)).collect::<Vec<_>>());
    (
        info["authorizer_access_token"].as_str().unwrap().to_owned(),
        info["authorizer_refresh_token"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

#[tokio::test]
async fn every_endpoint_answers_exactly_the_sets_granted() {
    let t = app().await;
    let ctoken = component_token(&t).await;
    let now = t.unix();
    // Each set alone (a new authorization replaces the sets), then all four together.
    let cases: &[(&[u32], usize)] = &[
        (&[1], 7),
        (&[2], 2),
        (&[3], 2),
        (&[7], 10),
        (&[4], 0),
        (&[11, 15], 0),
        (&[2, 7], 12),
        (&[1, 2, 3, 7], 21),
    ];
    for (sets, expected) in cases {
        let (token, _) = authorize(&t, &ctoken, APPID, sets).await;
        let mut answered = 0;
        for endpoint in Endpoint::ALL {
            let a = t.datacube(endpoint.name(), &token, DAY, DAY).await;
            let set = endpoint.group().permission_set();
            if sets.contains(&set) {
                assert!(
                    a.body.starts_with("{\"list\":"),
                    "{endpoint} with sets {sets:?}: {}",
                    a.body
                );
                answered += 1;
            } else {
                let text = assert_wechat_error(&a, 61007, now);
                assert_eq!(text, "api is unauthorized to component", "{endpoint}");
            }
        }
        assert_eq!(answered, *expected, "sets {sets:?}");
    }
    // The families' sets, as each page states them.
    assert_eq!(Group::User.permission_set(), 2);
    assert_eq!(Group::Article.permission_set(), 7);
    assert_eq!(Group::Message.permission_set(), 1);
    assert_eq!(Group::Interface.permission_set(), 3);
}

#[tokio::test]
async fn an_authorizer_token_reads_its_account_only() {
    let t = app().await;
    const B: &str = "wxb0000000000000b2";
    t.add_account(B, "secret-of-b", true).await;
    let row = |n: u32| format!(r#"{{"ref_date":"{DAY}","user_source":0,"cumulate_user":{n}}}"#);
    assert_eq!(
        t.import("getusercumulate", &format!(r#"{{"list":[{}]}}"#, row(111)))
            .await
            .status,
        200
    );
    let b = t
        .admin_post(
            &format!("/admin/import?appid={B}&endpoint=getusercumulate"),
            &format!(r#"{{"list":[{}]}}"#, row(222)),
        )
        .await;
    assert_eq!(b.status, 200);
    let ctoken = component_token(&t).await;
    let (token_a, refresh_a) = authorize(&t, &ctoken, APPID, &[2]).await;
    let (token_b, refresh_b) = authorize(&t, &ctoken, B, &[2]).await;
    let read = |token: String| {
        let t = &t;
        async move { t.datacube("getusercumulate", &token, DAY, DAY).await.body }
    };
    assert_eq!(read(token_a).await, format!(r#"{{"list":[{}]}}"#, row(111)));
    assert_eq!(read(token_b).await, format!(r#"{{"list":[{}]}}"#, row(222)));
    // A's refresh token gets no token for B.
    let now = t.unix();
    let a = component_post(
        &t,
        "api_authorizer_token",
        &ctoken,
        json!({"component_appid": C, "authorizer_appid": B, "authorizer_refresh_token": refresh_a}),
    )
    .await;
    assert_eq!(
        assert_wechat_error(&a, 61023, now),
        "refresh_token is invalid"
    );
    let a = component_post(
        &t,
        "api_authorizer_token",
        &ctoken,
        json!({"component_appid": C, "authorizer_appid": B, "authorizer_refresh_token": refresh_b}),
    )
    .await;
    assert_eq!(
        a.json()["authorizer_refresh_token"],
        refresh_b.as_str(),
        "{}",
        a.body
    );
    assert_eq!(
        read(
            a.json()["authorizer_access_token"]
                .as_str()
                .unwrap()
                .to_owned()
        )
        .await,
        format!(r#"{{"list":[{}]}}"#, row(222))
    );
    let list = component_post(
        &t,
        "api_get_authorizer_list",
        &ctoken,
        json!({"component_appid": C, "offset": 0, "count": 10}),
    )
    .await;
    assert_eq!(list.json()["total_count"], 2, "{}", list.body);
}

#[tokio::test]
async fn the_reference_error_strings() {
    let t = app().await;
    let now = t.unix();
    let err = |a: &Answer, code: i64| assert_wechat_error(a, code, now);
    // An appid is an account's or a component's, never both.
    let a = t
        .admin_post(
            "/admin/components",
            &json!({"appid": APPID, "secret": C_SECRET, "token": C_TOKEN, "aes_key": C_AES})
                .to_string(),
        )
        .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(a.body.contains("is an account"), "{}", a.body);
    let a = t
        .admin_post(
            "/admin/accounts",
            &json!({"appid": C, "secret": "x-secret"}).to_string(),
        )
        .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(a.body.contains("is a component"), "{}", a.body);
    // /cgi-bin/token with a component's appid.
    let a = t
        .get(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={C}&secret={C_SECRET}"
        ))
        .await;
    assert_eq!(
        err(&a, 61024),
        "must use api(api_component_token) to get token for component acct"
    );
    // api_component_token, in the order of checks.
    let ticket = ticket(&t).await;
    let ask = |body: Value| {
        let t = &t;
        async move {
            t.post("/cgi-bin/component/api_component_token", &body.to_string())
                .await
        }
    };
    let a = ask(json!({"component_appsecret": C_SECRET, "component_verify_ticket": ticket})).await;
    assert_eq!(err(&a, 41018), "missing component_appid");
    let a = ask(json!({"component_appid": APPID, "component_appsecret": SECRET, "component_verify_ticket": ticket})).await;
    assert_eq!(err(&a, 61011), "invalid component");
    let a = ask(json!({"component_appid": C, "component_verify_ticket": ticket})).await;
    assert_eq!(err(&a, 41004), "appsecret missing");
    let a = ask(json!({"component_appid": C, "component_appsecret": "wrong", "component_verify_ticket": ticket})).await;
    assert_eq!(err(&a, 40125), "invalid appsecret");
    for bad in [json!(null), json!(""), json!("ticket@@@nope")] {
        let a = ask(json!({"component_appid": C, "component_appsecret": C_SECRET, "component_verify_ticket": bad})).await;
        assert_eq!(err(&a, 61006), "component ticket is invalid");
    }
    let a = t
        .post("/cgi-bin/component/api_component_token", "{not json")
        .await;
    assert_eq!(err(&a, 47001), "data format error");

    // Tokens on component APIs.
    let ctoken = component_token(&t).await;
    let account_token = t.token().await;
    let body = json!({"component_appid": C});
    let a = t
        .post(
            "/cgi-bin/component/api_create_preauthcode",
            &body.to_string(),
        )
        .await;
    assert_eq!(err(&a, 41001), "access_token missing");
    let a = component_post(&t, "api_create_preauthcode", &account_token, body.clone()).await;
    assert_eq!(err(&a, 61014), "must use component token for component api");
    let a = component_post(&t, "api_create_preauthcode", "nope", body.clone()).await;
    assert_eq!(
        err(&a, 40001),
        "invalid credential, access_token is invalid or not latest"
    );
    // The new docs' `access_token` name works too.
    let a = t
        .post(
            &format!("/cgi-bin/component/api_create_preauthcode?access_token={ctoken}"),
            &body.to_string(),
        )
        .await;
    assert_eq!(a.json()["expires_in"], 1800, "{}", a.body);

    // Codes.
    let a = component_post(
        &t,
        "api_query_auth",
        &ctoken,
        json!({"component_appid": C, "authorization_code": "queryauthcode@@@nope"}),
    )
    .await;
    assert_eq!(err(&a, 61009), "code is invalid");
    let g = t
        .admin_post(
            &format!("/admin/components/{C}/grants"),
            &json!({"authorizer_appid": APPID, "func_ids": [2]}).to_string(),
        )
        .await;
    let code = g.json()["authorization_code"].as_str().unwrap().to_owned();
    let q = json!({"component_appid": C, "authorization_code": code});
    let a = component_post(&t, "api_query_auth", &ctoken, q.clone()).await;
    let token = a.json()["authorization_info"]["authorizer_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = component_post(&t, "api_query_auth", &ctoken, q).await;
    assert_eq!(err(&a, 61010), "code is expired");

    // api_authorizer_token for an account that never authorized.
    let a = component_post(&t, "api_authorizer_token", &ctoken, json!({"component_appid": C, "authorizer_appid": "wx0000000000000099", "authorizer_refresh_token": "x"})).await;
    assert_eq!(
        err(&a, 61003),
        "component is not authorized by this account"
    );

    // Datacube: a component token is not an account's; set 7 not granted.
    let a = t.datacube("getusersummary", &ctoken, DAY, DAY).await;
    assert_eq!(err(&a, 61014), "must use component token for component api");
    let a = t.datacube("getarticleread", &token, DAY, DAY).await;
    assert_eq!(err(&a, 61007), "api is unauthorized to component");
    assert!(t
        .datacube("getusersummary", &token, DAY, DAY)
        .await
        .body
        .starts_with("{\"list\""));

    // Revoked: the token answers 40001, the refresh token 61003.
    let r = t
        .client
        .delete(t.url(&format!("/admin/components/{C}/grants/{APPID}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let a = t.datacube("getusersummary", &token, DAY, DAY).await;
    assert_eq!(
        err(&a, 40001),
        "invalid credential, access_token is invalid or not latest"
    );
}

#[tokio::test]
async fn expiry_tickets_and_unverified_accounts() {
    let t = app().await;
    const U: &str = "wxu0000000000000u3";
    t.add_account(U, "secret-of-u", false).await;
    let ctoken = component_token(&t).await;
    let (token, _) = authorize(&t, &ctoken, U, &[2]).await;
    let old_ticket = ticket(&t).await;
    // An unverified account: 48001 comes before the permission sets (61007).
    let now = t.unix();
    for name in ["getusersummary", "getarticleread"] {
        let a = t.datacube(name, &token, DAY, DAY).await;
        assert_eq!(assert_wechat_error(&a, 48001, now), "api unauthorized");
    }
    // Two hours later: 42001 for both kinds of token.
    t.set_clock("2026-01-10T11:00:01+08:00").await;
    let now = t.unix();
    let a = t.datacube("getusersummary", &token, DAY, DAY).await;
    assert_eq!(assert_wechat_error(&a, 42001, now), "access_token expired");
    let a = component_post(
        &t,
        "api_create_preauthcode",
        &ctoken,
        json!({"component_appid": C}),
    )
    .await;
    assert_eq!(assert_wechat_error(&a, 42001, now), "access_token expired");
    // Twelve hours after the push, a ticket is no longer good for a token.
    t.set_clock("2026-01-10T21:00:00+08:00").await;
    let now = t.unix();
    let a = t
        .post(
            "/cgi-bin/component/api_component_token",
            &json!({"component_appid": C, "component_appsecret": C_SECRET,
                    "component_verify_ticket": old_ticket})
            .to_string(),
        )
        .await;
    assert_eq!(
        assert_wechat_error(&a, 61005, now),
        "component ticket is expired"
    );
}

#[tokio::test]
async fn an_authorizers_calls_count_in_its_own_quota() {
    let t = app_with(|c| c.api_daily_quota = Some(2)).await;
    let ctoken = component_token(&t).await;
    let (authorizer_token, _) = authorize(&t, &ctoken, APPID, &[2]).await;
    let own = t.token().await;
    // One call each way: the account's quota of 2 is used up for both.
    assert!(t
        .datacube("getusersummary", &own, DAY, DAY)
        .await
        .body
        .starts_with("{\"list\""));
    assert!(t
        .datacube("getusersummary", &authorizer_token, DAY, DAY)
        .await
        .body
        .starts_with("{\"list\""));
    let now = t.unix();
    for token in [&own, &authorizer_token] {
        let a = t.datacube("getusersummary", token, DAY, DAY).await;
        assert_eq!(
            assert_wechat_error(&a, 45009, now),
            "reach max api daily quota limit"
        );
    }
}

/// A component's event URL, served here: counts the pushes, checks their signature, decrypts
/// them with the component's key and keeps the tickets with the moment each arrived.
struct Receiver {
    url: String,
    tickets: Tickets,
}

type Tickets = std::sync::Arc<std::sync::Mutex<Vec<(std::time::Instant, String)>>>;

impl Receiver {
    fn tickets(&self) -> Vec<String> {
        let pushed = self.tickets.lock().unwrap();
        pushed.iter().map(|(_, t)| t.clone()).collect()
    }
}

async fn receiver() -> Receiver {
    use axum::extract::{Query, State};
    async fn push(
        State(tickets): State<Tickets>,
        Query(q): Query<std::collections::HashMap<String, String>>,
        body: String,
    ) -> &'static str {
        let encrypt = body
            .split("<Encrypt><![CDATA[")
            .nth(1)
            .and_then(|r| r.split("]]>").next())
            .unwrap_or_default();
        let expected =
            datacube_protocol::sign::msg_signature(C_TOKEN, &q["timestamp"], &q["nonce"], encrypt);
        if q.get("msg_signature") != Some(&expected)
            || q.get("encrypt_type").map(String::as_str) != Some("aes")
        {
            return "bad signature";
        }
        let key = datacube_protocol::crypto::AesKey::from_encoding_key(C_AES).unwrap();
        let Ok(xml) = key.decrypt(encrypt, C) else {
            return "undecryptable";
        };
        if let Some(t) = xml
            .split("<ComponentVerifyTicket><![CDATA[")
            .nth(1)
            .and_then(|r| r.split("]]>").next())
        {
            let now = std::time::Instant::now();
            tickets.lock().unwrap().push((now, t.to_owned()));
        }
        "success"
    }
    let tickets: Tickets = Default::default();
    let app = axum::Router::new()
        .route("/events", axum::routing::post(push))
        .with_state(tickets.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, tickets }
}

impl Receiver {
    /// The tickets received, once there are at least `n` (waiting up to 10 s for them).
    async fn at_least(&self, n: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let tickets = self.tickets();
            if tickets.len() >= n || std::time::Instant::now() > deadline {
                return tickets;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// How many tickets arrived, once none has for a while (the push loop looks at the clock
    /// every 250 ms).
    async fn settled(&self) -> usize {
        let mut seen = self.tickets().len();
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(600)).await;
            let now = self.tickets().len();
            if now == seen {
                return now;
            }
            seen = now;
        }
    }
}

/// Tickets come every `--ticket-interval` of the server's clock: moving the clock brings
/// the next one, as time passing would; each ticket gets a component token.
#[tokio::test]
async fn tickets_are_pushed_every_interval_of_the_clock_and_each_gets_a_token() {
    let r = receiver().await;
    let t = spawn_app().await; // WeChat's interval: 10 minutes
    add_component(&t, Some(&r.url)).await;
    t.set_clock("2026-01-10T09:00:00+08:00").await;
    let first = r.at_least(1).await.len();
    assert!(first >= 1, "a ticket once the component exists");
    let first = r.settled().await;
    // Half an interval: nothing; a whole one: the next ticket.
    t.set_clock("2026-01-10T09:05:00+08:00").await;
    assert_eq!(r.settled().await, first, "no ticket within the interval");
    for (n, at) in ["2026-01-10T09:10:01+08:00", "2026-01-10T09:20:02+08:00"]
        .into_iter()
        .enumerate()
    {
        t.set_clock(at).await;
        assert_eq!(
            r.at_least(first + n + 1).await.len(),
            first + n + 1,
            "at {at}"
        );
    }
    assert_eq!(r.settled().await, first + 2);
    for ticket in &r.tickets() {
        assert!(ticket.starts_with("ticket@@@"), "{ticket}");
        assert!(token_for_ticket(&t, ticket).await.len() > 100);
    }
}

/// Two instances on one database push in turn: a ticket pushed by one within nine tenths of
/// the interval is the current one for the other.
#[tokio::test]
async fn instances_on_one_database_push_tickets_in_turn() {
    let r = receiver().await;
    let a = spawn_app().await;
    add_component(&a, Some(&r.url)).await;
    a.set_clock("2026-01-10T09:00:00+08:00").await;
    r.at_least(1).await;
    let pushed = r.settled().await;
    // B starts at A's time: A's ticket is current, B pushes none.
    let b = spawn_on_at(&a.db_url, a.app.clock().now(), |_| {}).await;
    assert_eq!(r.settled().await, pushed, "B pushed at start");
    // An interval on B's clock: B's turn.
    b.set_clock("2026-01-10T09:10:01+08:00").await;
    assert_eq!(r.at_least(pushed + 1).await.len(), pushed + 1);
    // A's interval ends a second later: B's ticket is current, A pushes none…
    a.set_clock("2026-01-10T09:10:02+08:00").await;
    assert_eq!(
        r.settled().await,
        pushed + 1,
        "A pushed within B's interval"
    );
    // …until the next interval.
    a.set_clock("2026-01-10T09:20:03+08:00").await;
    assert_eq!(r.at_least(pushed + 2).await.len(), pushed + 2);
    assert_eq!(r.settled().await, pushed + 2);
}

/// An event URL that answers 200 and then streams 1 MiB chunks without end: datacube reads a
/// kilobyte of it, no more, and says what it got in a short, escaped message at once.
#[tokio::test]
async fn a_streaming_event_url_is_read_a_kilobyte_and_quoted_briefly() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    {
        let sent = sent.clone();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 8192];
            let _ = s.read(&mut head).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            let mut chunk = b"100000\r\n".to_vec();
            chunk.extend(std::iter::repeat_n(b'\x1b', 1 << 20));
            chunk.extend_from_slice(b"\r\n");
            while s.write_all(&chunk).await.is_ok() {
                sent.fetch_add(1 << 20, Ordering::Relaxed);
            }
        });
    }
    let t = spawn_app().await;
    t.set_clock("2026-01-10T09:00:00+08:00").await;
    add_component(&t, Some(&url)).await;
    let started = std::time::Instant::now();
    let a = t
        .admin_post(&format!("/admin/components/{C}/ticket"), "")
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let error = a.json()["push_error"].as_str().unwrap().to_owned();
    assert!(
        error.len() <= 1024,
        "{} bytes: {}",
        error.len(),
        &error[..200]
    );
    assert!(error.contains("\\u{1b}"), "escaped: {error}");
    assert!(error.contains("HTTP 200"), "{error}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "answered at once: {:?}",
        started.elapsed()
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent < 64 << 20, "{} MiB were taken in", sent >> 20);
}
