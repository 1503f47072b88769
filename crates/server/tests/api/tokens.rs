//! Access tokens (reference §4): rotation with a 5-minute overlap, expiry, stable_token,
//! force_refresh, isolation of the two families, persistence across restarts.

use std::time::Duration;

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

/// Guessers from `attackers` (`connections` at once, spread over the addresses), guessing flat
/// out for `seconds` while the owner, from 127.0.0.1, asks for its token again and again.
/// Returns how many guesses were answered 40125, how many anything else, and how long each of
/// the owner's requests took (`Duration::MAX`: no token).
async fn flood(
    t: &TestApp,
    attackers: &[&str],
    connections: usize,
    seconds: u64,
) -> (u64, u64, Vec<Duration>) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let (wrong, other) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut guessers = Vec::new();
    for i in 0..connections {
        let client = reqwest::Client::builder()
            .no_proxy()
            .local_address(
                attackers[i % attackers.len()]
                    .parse::<std::net::IpAddr>()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let url = t.url("/cgi-bin/token");
        let (stop, wrong, other) = (stop.clone(), wrong.clone(), other.clone());
        guessers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let answer = client
                    .get(format!(
                        "{url}?grant_type=client_credential&appid={APPID}&secret=guess-{i}-{n}"
                    ))
                    .send()
                    .await;
                let Ok(answer) = answer else { continue };
                let code = answer
                    .json::<serde_json::Value>()
                    .await
                    .map_or(0, |v| v["errcode"].as_i64().unwrap_or(0));
                match code {
                    40125 => wrong.fetch_add(1, Ordering::Relaxed),
                    _ => other.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // The owner, from 127.0.0.1: ten clients asking again and again.
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    let mut owners = Vec::new();
    for _ in 0..10 {
        let url = t.url(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret={SECRET}"
        ));
        owners.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            let mut times = Vec::new();
            while std::time::Instant::now() < deadline {
                let started = std::time::Instant::now();
                let ok = match client.get(&url).send().await {
                    Ok(a) => a.text().await.unwrap_or_default().contains("access_token"),
                    Err(_) => false,
                };
                times.push(if ok { started.elapsed() } else { Duration::MAX });
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            times
        }));
    }
    let mut times = Vec::new();
    for o in owners {
        times.extend(o.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    for g in guessers {
        g.await.unwrap();
    }
    (
        wrong.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
        times,
    )
}

fn served_within_a_second(times: &[Duration]) -> f64 {
    times
        .iter()
        .filter(|t| **t <= Duration::from_secs(1))
        .count() as f64
        / times.len() as f64
}

fn assert_owner_served(times: &[Duration]) {
    let share = served_within_a_second(times);
    assert!(times.len() > 100, "{} owner requests", times.len());
    let failed = times.iter().filter(|t| **t == Duration::MAX).count();
    let slowest = times.iter().filter(|t| **t != Duration::MAX).max();
    assert!(
        share >= 0.95,
        "{:.1} % of the owner's {} requests got a token within 1 s ({failed} failed; slowest {slowest:?})",
        share * 100.0,
        times.len()
    );
}

/// 100 connections on one other address guessing flat out: the owner, cold, gets its tokens
/// at once, and every guess is answered 40125, as WeChat answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_secrets_from_one_address_starves_no_one() {
    // The owner asks ~2,000 times: more than a day's quota of tokens.
    let t = spawn_app_with(|c| c.token_daily_quota = 1_000_000).await;
    let (wrong, other, times) = flood(&t, &["127.0.0.2"], 100, 15).await;
    assert_owner_served(&times);
    assert!(wrong > 1000, "{wrong} guesses answered");
    assert_eq!(other, 0, "every guess is a wrong secret, never a 45011");
}

/// The same from 40 addresses, and from the owner's own address (everyone behind one load
/// balancer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_forty_addresses_or_from_the_owners_own_starves_no_one() {
    let t = spawn_app_with(|c| c.token_daily_quota = 1_000_000).await;
    let forty: Vec<String> = (0..40).map(|i| format!("127.0.1.{}", i + 1)).collect();
    let forty: Vec<&str> = forty.iter().map(String::as_str).collect();
    let (wrong, other, times) = flood(&t, &forty, 120, 10).await;
    assert_owner_served(&times);
    assert!(wrong > 1000 && other == 0, "{wrong} {other}");
    let (wrong, other, times) = flood(&t, &["127.0.0.1"], 100, 10).await;
    assert_owner_served(&times);
    assert!(wrong > 1000 && other == 0, "{wrong} {other}");
}

/// A suite checking its handling of 40125 many times, for one account, then asking for a
/// token of another account, and of the same, from the same address: both answered at once.
#[tokio::test]
async fn wrong_secrets_for_one_account_never_lock_out_another_or_the_next_right_one() {
    let t = spawn_app().await;
    t.add_account("wxbbbb000000000002", "the-other-secret", true)
        .await;
    for i in 0..50 {
        let a = t
            .get(&format!(
                "/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret=wrong-{i}"
            ))
            .await;
        assert_wechat_error(&a, 40125, t.unix());
    }
    let a = t
        .get("/cgi-bin/token?grant_type=client_credential&appid=wxbbbb000000000002&secret=the-other-secret")
        .await;
    assert!(a.body.contains("access_token"), "{}", a.body);
    let a = t
        .get(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret={SECRET}"
        ))
        .await;
    assert!(a.body.contains("access_token"), "{}", a.body);
    let a = t
        .post(
            "/cgi-bin/stable_token",
            &format!(r#"{{"grant_type":"client_credential","appid":"{APPID}","secret":"wrong"}}"#),
        )
        .await;
    assert_wechat_error(&a, 40125, t.unix());
}

/// An account whose secret an older datacube stored as an argon2 hash: still signs in, and
/// its first right sign-in stores a fast hash in its place.
#[tokio::test]
async fn an_argon2_hash_of_an_older_version_is_upgraded_on_the_first_right_sign_in() {
    let t = spawn_app().await;
    let appid = "wxcccc000000000003";
    t.app
        .store()
        .add_account(datacube_store::AccountRecord {
            appid: appid.into(),
            secret_hash: datacube_api::account::legacy_hash_secret("an-old-secret"),
            verified: true,
            created_at: 0,
            incarnation: 0,
        })
        .await
        .unwrap();
    let ask = |secret: &'static str| {
        format!("/cgi-bin/token?grant_type=client_credential&appid={appid}&secret={secret}")
    };
    assert_wechat_error(&t.get(&ask("wrong")).await, 40125, t.unix());
    let stored = t.app.store().account(appid).await.unwrap().unwrap();
    assert!(
        stored.secret_hash.starts_with("$argon2id$"),
        "a wrong one changes nothing"
    );
    assert!(t
        .get(&ask("an-old-secret"))
        .await
        .body
        .contains("access_token"));
    let stored = t.app.store().account(appid).await.unwrap().unwrap();
    assert!(
        datacube_api::account::is_fast(&stored.secret_hash),
        "{}",
        stored.secret_hash
    );
    assert!(t
        .get(&ask("an-old-secret"))
        .await
        .body
        .contains("access_token"));
    assert_wechat_error(&t.get(&ask("wrong")).await, 40125, t.unix());
}
