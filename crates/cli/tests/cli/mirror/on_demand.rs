//! `POST /admin/sync/run`: `serve --mirror` runs now, the whole mirror or one account, recorded
//! like its daily runs; its configuration read again first; with two instances on one
//! PostgreSQL database, asked at once, it runs once.

use super::daemon::{mirror_config, runs, wait_runs, ADMIN};
use super::*;

async fn run_now(base: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/admin/sync/run"))
        .bearer_auth(ADMIN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_run_asked_for_runs_now_and_is_recorded_like_the_daily_ones() {
    let (_d1, up_db) = temp_db();
    let up = serve(&up_db, &["--demo", "--demo-days", "20"]).await;
    let (dir, mirror_db) = temp_db();
    let config = mirror_config(dir.path(), &up.base);
    let mirror = Serve::new(&mirror_db)
        .args(&["--mirror", config.to_str().unwrap(), "--admin-token", ADMIN])
        .env("DAILY_MIRROR_SECRET", DEMO_SECRET)
        .start()
        .await;
    let base = mirror.base.clone();
    // The day's run, at start (the clock is past 08:30).
    let day = "2026-06-15";
    let done = |slot: &'static str, attempt: i64| {
        move |r: &[(String, i64, String)]| {
            r.iter()
                .any(|(s, a, o)| s == slot && *a == attempt && o != "running")
        }
    };
    wait_runs(&base, ADMIN, "the day's run", done(day, 1)).await;

    // The whole mirror, now: the day's next attempt (once the day's run is more than a moment
    // old: requests within 5 s of a run's start are that run).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (status, started) = run_now(&base, None).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["mirror"], "daily");
    assert_eq!(started["slot"], day);
    assert_eq!(started["attempt"], 2);
    assert!(started["appid"].is_null(), "{started}");
    let id = started["id"].as_i64().unwrap();
    // Pressed again at once: the same run (under way, or started a moment ago), not another.
    let (status, again) = run_now(&base, None).await;
    assert_eq!(status, 409, "{again}");
    let why = again["error"].as_str().unwrap();
    assert!(
        why.contains("is under way") || why.contains("started less than 5 s ago"),
        "{why}"
    );
    let all = wait_runs(&base, ADMIN, "the run asked for", done(day, 2)).await;
    assert_eq!(all.last().unwrap().2, "ok", "{all:?}");
    assert_eq!(all.len(), 2, "{all:?}");

    // One account: a slot of its own, so the daily schedule's attempts are not used up.
    let (status, one) = run_now(&base, Some(serde_json::json!({ "appid": DEMO_APPID }))).await;
    assert_eq!(status, 202, "{one}");
    let slot = format!("{day} {DEMO_APPID}");
    assert_eq!(one["slot"], slot.as_str());
    assert_eq!(one["attempt"], 1);
    assert_eq!(one["appid"], DEMO_APPID);
    assert!(one["id"].as_i64().unwrap() > id);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !runs(&base, ADMIN)
        .await
        .iter()
        .any(|(s, _, o)| *s == slot && o == "ok")
    {
        assert!(Instant::now() < deadline, "the account's run never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An appid the mirror does not have; a body that is not what the call takes.
    let (status, refused) = run_now(
        &base,
        Some(serde_json::json!({ "appid": "wxnotinthemirror0" })),
    )
    .await;
    assert_eq!(status, 404, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("wxnotinthemirror0"),
        "{refused}"
    );
    let (status, _) = run_now(&base, Some(serde_json::json!({ "account": DEMO_APPID }))).await;
    assert_eq!(status, 400);

    // The configuration is read again first: a broken file is named, and the one in use stays.
    std::fs::write(&config, "name = \"daily\"\nupstream = 7\n").unwrap();
    let (status, refused) = run_now(&base, None).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("mirror.toml: line 2"),
        "{refused}"
    );

    // A server without --mirror says so.
    let (_d3, plain_db) = temp_db();
    let plain = serve(&plain_db, &["--admin-token", ADMIN]).await;
    let (status, refused) = run_now(&plain.base, None).await;
    assert_eq!(status, 404, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("--mirror"),
        "{refused}"
    );
}

#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set DATACUBE_TEST_POSTGRES (scripts/test does)"
)]
async fn two_instances_asked_at_once_run_once() {
    let (_d1, up_db) = temp_db();
    let up = serve(&up_db, &["--demo", "--demo-days", "20"]).await;
    let (dir, mirror_db) = temp_db();
    assert!(mirror_db.starts_with("postgres://"), "{mirror_db}");
    let config = mirror_config(dir.path(), &up.base);
    let instance = || {
        Serve::new(&mirror_db)
            .args(&["--mirror", config.to_str().unwrap(), "--admin-token", ADMIN])
            .env("DAILY_MIRROR_SECRET", DEMO_SECRET)
            .start()
    };
    let (a, b) = (instance().await, instance().await);
    let day_done = |r: &[(String, i64, String)]| {
        r.iter()
            .any(|(s, a, o)| s == "2026-06-15" && *a == 1 && o != "running")
    };
    wait_runs(&a.base, ADMIN, "the day's run", day_done).await;
    let before = runs(&a.base, ADMIN).await;
    assert_eq!(
        before.len(),
        1,
        "the day's run ran once on two instances: {before:?}"
    );

    for round in 0..2 {
        // Past the moment within which requests are one with the run before (AT_ONCE, 5 s by
        // the clocks of two instances started a moment apart).
        tokio::time::sleep(Duration::from_secs(7)).await;
        let ((sa, va), (sb, vb)) = tokio::join!(run_now(&a.base, None), run_now(&b.base, None));
        let mut statuses = [sa, sb];
        statuses.sort_unstable();
        assert_eq!(statuses, [202, 409], "round {round}: {va} {vb}");
        let started = if sa == 202 { va } else { vb };
        let attempt = started["attempt"].as_i64().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = runs(&a.base, ADMIN).await;
            if now
                .iter()
                .any(|(s, at, o)| s == "2026-06-15" && *at == attempt && o != "running")
            {
                assert_eq!(
                    now.len(),
                    before.len() + round + 1,
                    "one run per request pair: {now:?}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: {now:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
