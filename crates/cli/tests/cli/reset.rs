//! Resetting a server between tests (`POST /admin/reset`) and removing accounts
//! (`DELETE /admin/accounts/<appid>`, `datacube account remove`).

use crate::common::*;

const ADMIN: &str = "admin-token-for-reset-tests";
const DEMO: (&str, &str) = (
    datacube_server::demo::DEMO_APPID,
    datacube_server::demo::DEMO_SECRET,
);
const OTHER: (&str, &str) = ("wxbbbb000000000002", "other-secret-1234");
const WEEK: &str = r#"{"begin_date":"2026-06-08","end_date":"2026-06-14"}"#;

fn replies() -> String {
    (0..20)
        .map(|i| {
            format!(
                r#"{{"type":"reply","appid":"{}","id":"r{i}","time":"2026-06-1{}T09:00:00+08:00","cost_ms":{},"ok":true}}"#,
                OTHER.0,
                i % 5,
                100 + i
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `POST /admin/events` of [`replies`]; the answer.
async fn post_replies(base: &str) -> serde_json::Value {
    let (status, v) = admin(
        reqwest::Method::POST,
        format!("{base}/admin/events"),
        &replies(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn admin(method: reqwest::Method, url: String, body: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(ADMIN)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

fn errcode(body: &str) -> i64 {
    serde_json::from_str::<serde_json::Value>(body).unwrap()["errcode"]
        .as_i64()
        .unwrap_or(0)
}

#[tokio::test]
async fn reset_clears_data_keeps_accounts_and_rebuilds_the_demo() {
    let (_dir, db) = temp_db();
    let served = serve(
        &db,
        &["--demo", "--demo-days", "30", "--admin-token", ADMIN],
    )
    .await;
    let base = &served.base;
    let demo_token = access_token(base, DEMO.0, DEMO.1).await;
    let demo_before = datacube_post(base, &demo_token, "getupstreammsg", WEEK).await;
    assert!(demo_before.starts_with("{\"list\":[{"), "{demo_before}");

    let (status, _) = admin(
        reqwest::Method::POST,
        format!("{base}/admin/accounts"),
        &format!(r#"{{"appid":"{}","secret":"{}"}}"#, OTHER.0, OTHER.1),
    )
    .await;
    assert_eq!(status, 201);
    let v = post_replies(base).await;
    assert_eq!(v["accepted"], 20);
    let other_token = access_token(base, OTHER.0, OTHER.1).await;
    let other_before = datacube_post(base, &other_token, "getinterfacesummary", WEEK).await;
    assert!(other_before.starts_with("{\"list\":[{"), "{other_before}");

    let (status, v) = admin(reqwest::Method::POST, format!("{base}/admin/reset"), "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["demo"], true);

    // Tokens are gone; accounts stay; statistics are gone; ids are forgotten.
    let answer = datacube_post(base, &other_token, "getinterfacesummary", WEEK).await;
    assert_eq!(errcode(&answer), 40001, "{answer}");
    let other_token = access_token(base, OTHER.0, OTHER.1).await;
    let answer = datacube_post(base, &other_token, "getinterfacesummary", WEEK).await;
    assert_eq!(answer, r#"{"list":[]}"#);
    let v = post_replies(base).await;
    assert_eq!(v["accepted"], 20, "the same ids are new again: {v}");
    let answer = datacube_post(base, &other_token, "getinterfacesummary", WEEK).await;
    assert_eq!(answer, other_before, "the same events, the same answer");
    // The demo is there again, the same.
    let demo_token = access_token(base, DEMO.0, DEMO.1).await;
    let demo_after = datacube_post(base, &demo_token, "getupstreammsg", WEEK).await;
    assert_eq!(demo_after, demo_before);

    // With the accounts: OTHER is gone, the demo is made again.
    let (status, _) = admin(
        reqwest::Method::POST,
        format!("{base}/admin/reset"),
        r#"{"accounts":true}"#,
    )
    .await;
    assert_eq!(status, 200);
    let body = token(base, OTHER.0, OTHER.1).await.text().await.unwrap();
    assert_eq!(errcode(&body), 40013, "{body}");
    access_token(base, DEMO.0, DEMO.1).await;
    // A body it does not know is refused, naming the field.
    let (status, v) = admin(
        reqwest::Method::POST,
        format!("{base}/admin/reset"),
        r#"{"acounts":true}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().contains("acounts"), "{v}");
}

#[tokio::test]
async fn accounts_are_removed_with_everything_of_them() {
    let (_dir, db) = temp_db();
    add_account(&db, OTHER.0, OTHER.1).await;
    add_account(&db, "wxcccc000000000003", "third-secret-123").await;
    let served = serve(&db, &["--admin-token", ADMIN]).await;
    let base = &served.base;
    let v = post_replies(base).await;
    assert_eq!(v["accepted"], 20);
    let t = access_token(base, OTHER.0, OTHER.1).await;

    let (status, v) = admin(
        reqwest::Method::DELETE,
        format!("{base}/admin/accounts/{}", OTHER.0),
        "",
    )
    .await;
    assert_eq!((status, v["removed"].as_str()), (200, Some(OTHER.0)));
    let answer = datacube_post(base, &t, "getinterfacesummary", WEEK).await;
    assert_eq!(errcode(&answer), 40001, "its token went with it: {answer}");
    let body = token(base, OTHER.0, OTHER.1).await.text().await.unwrap();
    assert_eq!(errcode(&body), 40013, "{body}");
    let (status, v) = admin(
        reqwest::Method::DELETE,
        format!("{base}/admin/accounts/{}", OTHER.0),
        "",
    )
    .await;
    assert_eq!(status, 404, "{v}");

    // Added again: no statistics, and its old events' ids are new.
    add_account(&db, OTHER.0, OTHER.1).await;
    let t = access_token(base, OTHER.0, OTHER.1).await;
    let answer = datacube_post(base, &t, "getinterfacesummary", WEEK).await;
    assert_eq!(answer, r#"{"list":[]}"#);
    let v = post_replies(base).await;
    assert_eq!(v["accepted"], 20);

    // From the command line.
    let (code, out, err) = run(
        &db,
        &["account", "remove", "--appid", "wxcccc000000000003"],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "removed account wxcccc000000000003 and its data\n");
    let (code, _, err) = run(
        &db,
        &["account", "remove", "--appid", "wxcccc000000000003"],
        None,
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("no account wxcccc000000000003"), "{err}");
    let (_, out, _) = run(&db, &["account", "list"], None).await;
    assert!(
        out.contains(OTHER.0) && !out.contains("wxcccc000000000003"),
        "{out}"
    );
}

#[tokio::test]
async fn seed_fixtures_are_loaded_at_start_and_again_after_a_reset() {
    let (_dir, db) = temp_db();
    let seed = root().join("fixtures/seed");
    let seed = seed.to_str().unwrap();
    let args = ["--seed", seed, "--admin-token", ADMIN];
    let served = serve(&db, &args).await;
    let base = served.base.clone();
    let t = access_token(&base, "wx5eed000000000001", "seed-secret-for-tests-1").await;
    let week = r#"{"begin_date":"2026-06-01","end_date":"2026-06-02"}"#;
    let replies = datacube_post(&base, &t, "getinterfacesummary", week).await;
    assert_eq!(
        replies,
        r#"{"list":[{"ref_date":"2026-06-01","callback_count":2,"fail_count":1,"total_time_cost":600,"max_time_cost":480},{"ref_date":"2026-06-02","callback_count":1,"fail_count":0,"total_time_cost":75,"max_time_cost":75}]}"#
    );
    let imported = datacube_post(
        &base,
        &t,
        "getusersummary",
        r#"{"begin_date":"2026-05-01","end_date":"2026-05-01"}"#,
    )
    .await;
    assert_eq!(
        imported,
        r#"{"list":[{"ref_date":"2026-05-01","user_source":0,"new_user":12,"cancel_user":3},{"ref_date":"2026-05-01","user_source":30,"new_user":4,"cancel_user":0}]}"#
    );
    let t2 = access_token(&base, "wx5eed000000000002", "seed-secret-for-tests-2").await;
    let unverified = datacube_post(&base, &t2, "getinterfacesummary", week).await;
    assert_eq!(errcode(&unverified), 48001, "{unverified}");

    // After a reset (accounts too), the fixtures are there again, the same.
    let (status, v) = admin(
        reqwest::Method::POST,
        format!("{base}/admin/reset"),
        r#"{"accounts":true}"#,
    )
    .await;
    assert_eq!(
        (status, &v["seeded"]),
        (200, &serde_json::json!(true)),
        "{v}"
    );
    let t = access_token(&base, "wx5eed000000000001", "seed-secret-for-tests-1").await;
    assert_eq!(
        datacube_post(&base, &t, "getinterfacesummary", week).await,
        replies
    );
    drop(served);

    // A restart on the same database adds nothing twice.
    let served = serve(&db, &args).await;
    let t = access_token(
        &served.base,
        "wx5eed000000000001",
        "seed-secret-for-tests-1",
    )
    .await;
    assert_eq!(
        datacube_post(&served.base, &t, "getinterfacesummary", week).await,
        replies
    );

    // A seed that is not a directory is a usage error, before anything is opened; a bad
    // fixture names its file and line.
    let (code, _, err) = run(&db, &["serve", "--seed", "/nonexistent/seed"], None).await;
    assert_eq!(code, 2, "{err}");
    let bad = tempfile::tempdir().unwrap();
    std::fs::write(bad.path().join("events.ndjson"), "{\"type\":\"poke\"}\n").unwrap();
    let (code, _, err) = run(
        &db,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--seed",
            bad.path().to_str().unwrap(),
        ],
        None,
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("events.ndjson: line 1:"), "{err}");

    // A FIFO by a fixture's name is named, not skipped nor waited on; a line past 16 MiB is
    // named without being held.
    let serve_seed = |dir: std::path::PathBuf| {
        let db = db.clone();
        async move {
            let seed = dir.to_str().unwrap().to_owned();
            tokio::time::timeout(
                std::time::Duration::from_secs(20),
                run(
                    &db,
                    &["serve", "--listen", "127.0.0.1:0", "--seed", &seed],
                    None,
                ),
            )
            .await
            .expect("serve does not wait on the fixture")
        }
    };
    let fifo = tempfile::tempdir().unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(fifo.path().join("accounts.json"))
        .status()
        .unwrap();
    assert!(made.success());
    let (code, _, err) = serve_seed(fifo.path().to_owned()).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("accounts.json: not a regular file"), "{err}");
    let long = tempfile::tempdir().unwrap();
    let line = format!(
        "{{\"type\":\"follow\",\"appid\":\"wx5eed000000000001\",\"time\":\"2026-06-01T10:00:00+08:00\",\"source\":0,\"openid\":\"{}\"}}\n",
        "o".repeat(17 << 20)
    );
    std::fs::write(long.path().join("events.ndjson"), format!("\n{line}")).unwrap();
    let (code, _, err) = serve_seed(long.path().to_owned()).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("events.ndjson: line 2: longer than 16 MiB"),
        "{err}"
    );
}
