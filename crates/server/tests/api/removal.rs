//! Removing an account (or resetting with the accounts) while writes for it are under way: a
//! large `POST /admin/events` (loaded in bulk: it is over 16 MiB) and token requests. Whatever
//! the order they end in, the appid added again afterwards has nothing of the old account — no
//! event, id, statistic or token. (The store's own test covers a batch checked before a
//! removal and stored after the appid was added again: `store/src/reset.rs`.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use datacube_api::Endpoint;
use jiff::civil::date;

use crate::helpers::*;

/// The last day of the events: the clock is the day after, past 08:00.
const LAST: &str = "2024-05-19";

/// `n` events with ids: the last of a year of demo activity.
fn lines(n: usize) -> Vec<String> {
    let mut all = datacube_engine::demo::events(APPID, date(2024, 5, 19), 365, 27);
    all.split_off(all.len() - n)
}

enum Removal {
    Delete,
    ResetAccounts,
}

async fn remove(t: &TestApp, how: &Removal) {
    let answer = match how {
        Removal::Delete => t
            .client
            .delete(t.url(&format!("/admin/accounts/{APPID}")))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap(),
        Removal::ResetAccounts => t
            .client
            .post(t.url("/admin/reset"))
            .bearer_auth(ADMIN)
            .body(r#"{"accounts":true}"#)
            .send()
            .await
            .unwrap(),
    };
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
}

/// `events` events posted; `after` later, the account is removed `how`.
async fn race(how: Removal, events: usize, after: Duration) {
    let t = spawn_app().await;
    t.set_clock("2024-05-20T09:00:00+08:00").await;
    let lines = lines(events);
    let body = Arc::new(lines.join("\n"));
    let old_token = t.token().await;
    // The POST: parsed, checked and prepared first (its account exists then), stored later.
    let post = {
        let (client, url, body) = (t.client.clone(), t.url("/admin/events"), body.clone());
        tokio::spawn(async move {
            let answer = client
                .post(url)
                .bearer_auth(ADMIN)
                .body(body.as_bytes().to_vec())
                .timeout(Duration::from_secs(300))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200);
            answer.json::<serde_json::Value>().await.unwrap()
        })
    };
    // Token requests, again and again, until the removal is done.
    let stop = Arc::new(AtomicBool::new(false));
    let tokens = {
        let (client, stop) = (t.client.clone(), stop.clone());
        let url = t.url(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret={SECRET}"
        ));
        tokio::spawn(async move {
            let mut got = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let answer: serde_json::Value =
                    client.get(&url).send().await.unwrap().json().await.unwrap();
                if let Some(token) = answer["access_token"].as_str() {
                    got.push(token.to_owned());
                }
            }
            got
        })
    };
    // Most often, after the body's accounts were checked and before it is stored.
    tokio::time::sleep(after).await;
    remove(&t, &how).await;
    stop.store(true, Ordering::Relaxed);
    let mut tokens = tokens.await.unwrap();
    tokens.push(old_token);
    let report = post.await.unwrap();
    // Afterwards, the appid again: a new account.
    t.add_account(APPID, SECRET, true).await;
    let (accepted, rejected) = (
        report["accepted"].as_u64().unwrap(),
        report["rejected_total"].as_u64().unwrap(),
    );
    eprintln!(
        "accepted {accepted}, rejected {rejected} ({}), {} tokens",
        report["rejected"][0]["reason"],
        tokens.len()
    );
    // Stored before the removal (and removed with the account), or refused, named.
    assert_eq!(accepted + rejected, lines.len() as u64, "{report:#}");
    if rejected > 0 {
        // Removed before its events were checked, or between the check and the store.
        let why = report["rejected"][0]["reason"].as_str().unwrap();
        assert!(
            why.contains("was removed") || why.starts_with("no account"),
            "{report:#}"
        );
    }
    // No token of the old account works on the new one.
    for token in &tokens {
        let a = t
            .datacube("getusersummary", token, "2024-05-13", LAST)
            .await;
        assert_eq!(a.errcode(), 40001, "{token}: {}", a.body);
    }
    // No statistic of the old account.
    for endpoint in Endpoint::ALL {
        let (_, rows) = t
            .app
            .store()
            .list_rows(APPID, endpoint, date(2023, 5, 1), date(2024, 5, 19))
            .await
            .unwrap();
        assert_eq!(rows, 0, "{}: old rows are left", endpoint.name());
    }
    // No event or id: sent again, every event is new.
    let again = t.admin_post("/admin/events", &body).await;
    let again = again.json();
    assert_eq!(
        again["accepted"].as_u64(),
        Some(lines.len() as u64),
        "{again:#}"
    );
    assert_eq!(again["duplicates"], 0);
}

/// 200,000 events (36 MB: loaded in bulk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_racing_a_large_post_and_token_requests_leaves_nothing_behind() {
    race(Removal::Delete, 200_000, Duration::from_millis(1000)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_with_the_accounts_racing_a_large_post_leaves_nothing_behind() {
    race(Removal::ResetAccounts, 200_000, Duration::from_millis(1000)).await;
}

/// 60,000 events (11 MB: one transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_racing_a_post_of_one_transaction_leaves_nothing_behind() {
    race(Removal::Delete, 60_000, Duration::from_millis(200)).await;
}
