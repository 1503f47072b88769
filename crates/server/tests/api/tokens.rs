//! Access tokens (reference §4): rotation with a 5-minute overlap, expiry, stable_token,
//! force_refresh, isolation of the two families, persistence across restarts.

use crate::helpers::*;

const RANGE: (&str, &str) = ("2021-09-01", "2021-09-07");

async fn works(t: &TestApp, token: &str) -> i64 {
    let a = t.datacube("getusersummary", token, RANGE.0, RANGE.1).await;
    a.errcode()
}

async fn stable(t: &TestApp, force: bool) -> (String, i64) {
    let a = t
        .post(
            "/cgi-bin/stable_token",
            &serde_json::json!({"grant_type": "client_credential", "appid": APPID,
                                "secret": SECRET, "force_refresh": force})
            .to_string(),
        )
        .await;
    let v = a.json();
    (
        v["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{}", a.body))
            .to_owned(),
        v["expires_in"].as_i64().unwrap(),
    )
}

fn at(offset_s: i64) -> String {
    let base: jiff::Timestamp = NOW.parse().unwrap();
    jiff::Timestamp::from_second(base.as_second() + offset_s)
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn each_token_call_rotates_and_the_old_token_lives_five_more_minutes() {
    let t = spawn_app().await;
    let a = t
        .get(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret={SECRET}"
        ))
        .await;
    assert_eq!(
        a.headers["content-type"],
        "application/json; encoding=utf-8"
    );
    let v = a.json();
    assert_eq!(v["expires_in"], 7200);
    assert_eq!(
        a.body,
        format!(
            r#"{{"access_token":"{}","expires_in":7200}}"#,
            v["access_token"].as_str().unwrap()
        ),
        "compact, access_token first"
    );
    let t1 = v["access_token"].as_str().unwrap().to_owned();
    t.set_clock(&at(100)).await;
    let t2 = t.token().await;
    assert_ne!(t1, t2);
    assert_eq!(works(&t, &t1).await, 0);
    t.set_clock(&at(100 + 299)).await;
    assert_eq!(works(&t, &t1).await, 0, "still inside the 5-minute overlap");
    t.set_clock(&at(100 + 300)).await;
    assert_eq!(works(&t, &t1).await, 40001, "superseded after 5 minutes");
    assert_eq!(works(&t, &t2).await, 0);
}

#[tokio::test]
async fn tokens_expire_after_7200_seconds() {
    let t = spawn_app().await;
    let token = t.token().await;
    t.set_clock(&at(7199)).await;
    assert_eq!(works(&t, &token).await, 0);
    t.set_clock(&at(7200)).await;
    assert_eq!(works(&t, &token).await, 42001);
}

#[tokio::test]
async fn stable_token_returns_the_same_token_until_five_minutes_before_expiry() {
    let t = spawn_app().await;
    let (s1, e1) = stable(&t, false).await;
    assert_eq!(e1, 7200);
    t.set_clock(&at(1000)).await;
    let (again, e2) = stable(&t, false).await;
    assert_eq!(again, s1);
    assert!((6199..=6200).contains(&e2), "remaining lifetime, got {e2}");
    // Within the last 5 minutes a new token comes, and the old one lives to its expiry.
    t.set_clock(&at(6950)).await;
    let (s2, e3) = stable(&t, false).await;
    assert_ne!(s2, s1);
    assert_eq!(e3, 7200);
    assert_eq!(works(&t, &s1).await, 0);
    t.set_clock(&at(7200)).await;
    assert_eq!(works(&t, &s1).await, 42001);
    assert_eq!(works(&t, &s2).await, 0);
    let (s3, _) = stable(&t, false).await;
    assert_eq!(s3, s2);
}

#[tokio::test]
async fn force_refresh_replaces_the_token_at_once_but_not_twice_within_30_seconds() {
    let t = spawn_app().await;
    let (s1, _) = stable(&t, false).await;
    let (s2, e) = stable(&t, true).await;
    assert_ne!(s1, s2);
    assert_eq!(e, 7200);
    assert_eq!(
        works(&t, &s1).await,
        40001,
        "the previous token dies at once"
    );
    t.set_clock(&at(20)).await;
    let (s3, _) = stable(&t, true).await;
    assert_eq!(s3, s2, "no refresh within 30 s");
    t.set_clock(&at(31)).await;
    let (s4, _) = stable(&t, true).await;
    assert_ne!(s4, s2);
}

#[tokio::test]
async fn force_refresh_is_limited_to_20_a_day() {
    let t = spawn_app().await;
    for i in 0..20 {
        t.set_clock(&at(i * 31)).await;
        stable(&t, true).await;
    }
    t.set_clock(&at(21 * 31)).await;
    let a = t
        .post(
            "/cgi-bin/stable_token",
            &serde_json::json!({"grant_type": "client_credential", "appid": APPID,
                                "secret": SECRET, "force_refresh": true})
            .to_string(),
        )
        .await;
    assert_wechat_error(&a, 45009, t.unix());
    // The normal mode still answers.
    stable(&t, false).await;
}

#[tokio::test]
async fn stable_and_basic_tokens_do_not_affect_each_other() {
    let t = spawn_app().await;
    let (s1, _) = stable(&t, false).await;
    let b1 = t.token().await;
    let b2 = t.token().await;
    let (s2, _) = stable(&t, false).await;
    assert_eq!(s1, s2, "issuing basic tokens leaves the stable token alone");
    t.set_clock(&at(301)).await;
    assert_eq!(works(&t, &s1).await, 0);
    assert_eq!(works(&t, &b1).await, 40001);
    t.set_clock(&at(400)).await;
    stable(&t, true).await;
    assert_eq!(
        works(&t, &b2).await,
        0,
        "a forced stable refresh leaves basic tokens alone"
    );
}

#[tokio::test]
async fn tokens_look_real_are_unique_and_survive_a_restart() {
    let t = spawn_app().await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..30 {
        let token = t.token().await;
        assert!(token.len() >= 128, "{token}");
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(seen.insert(token));
    }
    let token = t.token().await;
    let (stable_token, _) = stable(&t, false).await;
    let db = t.db_url.clone();
    let dir = t.stop().await;
    let t2 = spawn_on(&db, |_| {}).await;
    assert_eq!(works(&t2, &token).await, 0);
    assert_eq!(works(&t2, &stable_token).await, 0);
    assert_eq!(stable(&t2, false).await.0, stable_token);
    drop(dir);
}
