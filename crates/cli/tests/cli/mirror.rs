//! `datacube sync` against an upstream that misbehaves ([`upstream`]), in front of
//! a real `datacube serve --demo`: rows in any order, new fields, rows outside their window,
//! HTTP errors, HTML, answers that never end or never start, answers over the limit, odd token
//! lifetimes, broken endpoints; wrong secrets; `--strict`; the daily daemon (`serve --mirror`,
//! `sync --config --daemon`) with its recorded runs.

#[path = "mirror/upstream.rs"]
mod upstream;

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use datacube_api::date::parse_date;
use datacube_api::Endpoint;

use self::upstream::{expected, Hostile, Mode};

const DEMO_APPID: &str = "wx6461746163756265";
const DEMO_SECRET: &str = "64656d6f5f7365637265745f32303236";
/// The demo's 20 days end on the last ready day, 2026-06-14 (the clock is 2026-06-15 10:00).
const FIRST: &str = "2026-05-26";
const LAST: &str = "2026-06-14";

fn range() -> (jiff::civil::Date, jiff::civil::Date) {
    (parse_date(FIRST).unwrap(), parse_date(LAST).unwrap())
}

/// `datacube sync` of the demo account from `upstream`, with tight limits.
async fn sync(db: &str, upstream: &str, extra: &[&str]) -> (i32, String, String, Duration) {
    let started = Instant::now();
    let out = datacube(db)
        .args(["sync", "--appid", DEMO_APPID, "--upstream", upstream])
        .args(["--from", FIRST, "--slow-down", "0.05", "--retries", "5"])
        .args([
            "--timeout",
            "2",
            "--header-timeout",
            "1.5",
            "--connect-timeout",
            "1",
        ])
        .args(extra)
        .env("DATACUBE_SECRET", DEMO_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        started.elapsed(),
    )
}

fn endpoint_report<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["accounts"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["endpoint"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

fn strings(v: &serde_json::Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default()
}

/// The mirror answers every endpoint of `endpoints` as the upstream answers it, with the new
/// fields the hostile upstream adds (when `new_fields`), row for row and byte for byte.
async fn assert_mirrors(
    mirror: &str,
    original: &str,
    endpoints: &[Endpoint],
    new_fields: bool,
) -> usize {
    let creds = (DEMO_APPID, DEMO_SECRET);
    let want = answers(original, creds, endpoints, range()).await;
    let got = answers(mirror, creds, endpoints, range()).await;
    let mut rows = 0;
    for ((what, a), (_, b)) in want.iter().zip(&got) {
        let name = what.split(' ').next().unwrap();
        let a = expected(name, a, new_fields);
        rows += a.matches("\"ref_date\"").count();
        assert_eq!(&a, b, "{what}");
    }
    rows
}

#[tokio::test]
async fn a_hostile_upstream_is_mirrored_row_for_row_and_its_failures_stay_its_own() {
    let (_d1, up_db) = temp_db();
    let up = serve(&up_db, &["--demo", "--demo-days", "20"]).await;
    let hostile = Hostile::start(
        &up.base,
        Mode {
            shuffle: true,
            new_fields: true,
            out_of_window: true,
            flaky: true,
            broken: vec!["getusershare"],
            oversized: vec!["getupstreammsgdist"],
            expires_in: Some("0"),
            ..Mode::default()
        },
    )
    .await;
    let (_d2, mirror_db) = temp_db();
    let (code, out, err, took) = sync(
        &mirror_db,
        &hostile.base,
        &["--report", "json", "--max-answer", "1MiB"],
    )
    .await;
    // Two endpoints broken, nineteen mirrored: partly done.
    assert_eq!(code, 3, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["outcome"], "partial", "{report:#}");
    assert!(
        took < Duration::from_secs(60),
        "bounded by its timeouts: {took:?}"
    );
    assert!(hostile.faults.load(std::sync::atomic::Ordering::Relaxed) > 10);
    let account = &report["accounts"][0];
    assert!(account["retries"].as_u64().unwrap() > 5, "{account:#}");
    // `expires_in: 0` is taken as a minute, not as a token per call.
    let calls = account["calls"].as_u64().unwrap();
    assert!(calls > 200, "{calls}");
    assert!(account["token_calls"].as_u64().unwrap() <= 2, "{account:#}");

    let share = endpoint_report(&report, "getusershare");
    assert_eq!(share["status"], "failed");
    let why = share["error"].as_str().unwrap();
    assert!(
        why.contains("HTTP 502 Bad Gateway (after 6 attempts)"),
        "{why}"
    );
    let dist = endpoint_report(&report, "getupstreammsgdist");
    assert_eq!(dist["status"], "failed");
    assert!(
        dist["error"]
            .as_str()
            .unwrap()
            .contains("the answer is larger than the 1 MiB limit (--max-answer)"),
        "{dist:#}"
    );
    assert_eq!(dist["calls"], 1, "not asked again after it failed");
    assert!(err.contains("error: getusershare: failed: datacube/getusershare: HTTP 502"));

    let working: Vec<Endpoint> = Endpoint::ALL
        .into_iter()
        .filter(|e| !matches!(e.name(), "getusershare" | "getupstreammsgdist"))
        .collect();
    for e in &working {
        // The month endpoints have nothing complete in 20 days of June: up to date.
        let status = &endpoint_report(&report, e.name())["status"];
        assert!(status == "done" || status == "up_to_date", "{e}: {status}");
    }
    assert_eq!(
        hostile.calls.load(std::sync::atomic::Ordering::Relaxed),
        calls + account["retries"].as_u64().unwrap(),
        "every call and retry reached the upstream once"
    );
    // Rows outside the window: one per getusersummary window (three for 20 days), named.
    let summary = endpoint_report(&report, "getusersummary");
    assert_eq!(summary["rows_skipped"], 3, "{summary:#}");
    assert_eq!(
        strings(&summary["skipped"])[0],
        "2026-06-02 (asked 2026-05-26..2026-06-01)"
    );
    assert_eq!(report["rows_skipped"], 3);
    // New fields: named once per endpoint and field, at any depth.
    assert_eq!(
        strings(&endpoint_report(&report, "getarticletotal")["new_fields"]),
        ["details[].x_snapshot", "url", "x_end", "x_top"]
    );
    assert_eq!(
        strings(&endpoint_report(&report, "getarticleread")["new_fields"]),
        [
            "detail.read_user_source[].scene",
            "detail.x_nested",
            "x_end",
            "x_top"
        ]
    );
    assert_eq!(
        strings(&endpoint_report(&report, "getarticletotaldetail")["new_fields"]),
        [
            "detail_list[].read_user_source[].scene",
            "detail_list[].x_snapshot",
            "x_end",
            "x_top"
        ]
    );
    assert_eq!(
        err.matches("warning: getarticletotal: new field \"url\" kept")
            .count(),
        1,
        "{err}"
    );

    // The mirror serves what the upstream sent, in WeChat's order, new fields included.
    let mirror = serve(&mirror_db, &[]).await;
    let rows = assert_mirrors(&mirror.base, &up.base, &working, true).await;
    assert!(rows > 1000, "{rows} rows");
    assert_eq!(
        report["rows_stored"].as_u64().unwrap() as usize,
        rows,
        "the count reported is the count stored"
    );
    drop(mirror);

    // The upstream mends its two endpoints and announces tokens that never expire: the next
    // run fetches what is missing and completes.
    hostile.set(|m| {
        m.broken.clear();
        m.oversized.clear();
        m.expires_in = Some("18446744073709551615");
    });
    let (code, out, err, _) = sync(&mirror_db, &hostile.base, &["--report", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["outcome"], "ok");
    assert_eq!(report["accounts"][0]["token_calls"], 1, "{report:#}");
    assert_eq!(endpoint_report(&report, "getusershare")["status"], "done");
    let mirror = serve(&mirror_db, &[]).await;
    assert_mirrors(&mirror.base, &up.base, &Endpoint::ALL, true).await;

    // Both runs are recorded.
    let (code, status, _) = run(&mirror_db, &["sync", "--status"], None).await;
    assert_eq!(code, 0, "the newest run completed: {status}");
    let lines: Vec<&str> = status.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(lines.len(), 2, "{status}");
    assert!(
        lines[0].starts_with("#2 (flags): started 2026-06-15T10:"),
        "{status}"
    );
    assert!(lines[0].contains(", ok in "), "{status}");
    assert!(lines[1].contains(", partial in "), "{status}");
    assert!(
        status.contains("wx6461746163756265 getusershare: datacube/getusershare: HTTP 502"),
        "{status}"
    );
}

#[tokio::test]
async fn a_wrong_secret_never_reaches_the_mirror_and_strict_refuses_new_fields() {
    let (_d1, up_db) = temp_db();
    let up = serve(&up_db, &["--demo", "--demo-days", "20"]).await;
    let hostile = Hostile::start(
        &up.base,
        Mode {
            new_fields: true,
            ..Mode::default()
        },
    )
    .await;
    let (_d2, mirror_db) = temp_db();
    let wrong = ["--secret", "a-typo-in-the-secret-0000000000000"];
    let (code, _, err, _) = sync(&mirror_db, &hostile.base, &wrong).await;
    assert_eq!(code, 1, "nothing done: {err}");
    assert!(
        err.contains("the token API refused the credentials: 40125"),
        "{err}"
    );
    let (_, accounts, _) = run(&mirror_db, &["account", "list"], None).await;
    assert!(!accounts.contains(DEMO_APPID), "{accounts}");

    // --strict: every row has a new field, so nothing is stored; the secret was right, so
    // the local account exists.
    let only = ["--endpoints", "getusersummary,getarticletotal", "--strict"];
    let (code, _, err, _) = sync(&mirror_db, &hostile.base, &only).await;
    assert_eq!(code, 1, "nothing done: {err}");
    assert!(
        err.contains("field `x_top`: getusersummary has no such field"),
        "{err}"
    );
    assert!(
        err.contains("added the local account with the same secret"),
        "{err}"
    );
    let (_, accounts, _) = run(&mirror_db, &["account", "list"], None).await;
    assert!(accounts.contains(DEMO_APPID), "{accounts}");

    // A local account with another secret gets the one the upstream accepted.
    let (_d3, other_db) = temp_db();
    add_account(&other_db, DEMO_APPID, "the-old-secret-of-the-mirror-00000").await;
    let (code, _, err, _) = sync(
        &other_db,
        &hostile.base,
        &["--endpoints", "getusercumulate"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("updated the local account's secret to the one the upstream accepted"),
        "{err}"
    );
    let mirror = serve(&other_db, &[]).await;
    let refused: serde_json::Value = token(
        &mirror.base,
        DEMO_APPID,
        "the-old-secret-of-the-mirror-00000",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(refused["errcode"], 40125);
    access_token(&mirror.base, DEMO_APPID, DEMO_SECRET).await;

    // `import` keeps new fields too, and `--strict` refuses them.
    let body = r#"{"list":[{"ref_date":"2026-06-01","msgid":"1_1","title":"t","url":"http://mp.weixin.qq.com/s?x","user_source":0,"details":[]}]}"#;
    let args = [
        "import",
        "--appid",
        DEMO_APPID,
        "--endpoint",
        "getarticletotal",
        "-",
    ];
    let (code, out, err) = run(&other_db, &args, Some(body)).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 inserted"), "{out}");
    assert!(
        err.contains("warning: getarticletotal: new field \"url\" kept"),
        "{err}"
    );
    let strict = [
        "import",
        "--strict",
        "--appid",
        DEMO_APPID,
        "--endpoint",
        "getarticletotal",
        "-",
    ];
    let (code, _, err) = run(&other_db, &strict, Some(body)).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("field `url`: getarticletotal has no such field"),
        "{err}"
    );
}

/// Moves a server's emulated clock with its admin API.
async fn set_clock(base: &str, admin: &str, now: &str) {
    let answer = reqwest::Client::new()
        .post(format!("{base}/admin/clock"))
        .bearer_auth(admin)
        .json(&serde_json::json!({ "now": now }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{now}");
}

/// The runs a server's admin API lists, oldest first: (slot, attempt, outcome).
async fn runs(base: &str, admin: &str) -> Vec<(String, i64, String)> {
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/admin/sync/runs?limit=100"))
        .bearer_auth(admin)
        .answer_json()
        .await;
    let mut out: Vec<(String, i64, String)> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["slot"].as_str().unwrap_or_default().to_owned(),
                r["attempt"].as_i64().unwrap(),
                r["outcome"].as_str().unwrap_or("running").to_owned(),
            )
        })
        .collect();
    out.reverse();
    out
}

/// Waits until the runs satisfy `done`; returns them.
async fn wait_runs(
    base: &str,
    admin: &str,
    what: &str,
    done: impl Fn(&[(String, i64, String)]) -> bool,
) -> Vec<(String, i64, String)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = runs(base, admin).await;
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mirror_config(dir: &std::path::Path, upstream: &str) -> std::path::PathBuf {
    let path = dir.join("mirror.toml");
    std::fs::write(
        &path,
        format!(
            r#"# The demo account, every morning.
name = "daily"
upstream = "{upstream}"
schedule = "08:30"
from = "{FIRST}"
endpoints = ["getusersummary", "getusercumulate", "getinterfacesummary", "getupstreammsg"]
call_retries = 1
timeout = 2
retries = 2
retry_delay = 60

[[account]]
appid = "{DEMO_APPID}"
secret_env = "DAILY_MIRROR_SECRET"
"#
        ),
    )
    .unwrap();
    path
}

const ADMIN: &str = "mirror-admin-token";

/// `serve --mirror`: one run per day at 08:30 China time as the emulated clock moves across
/// several mornings, a failed run retried after its jittered delay, every run recorded, and
/// SIGTERM between runs stops the server and its daemon at once.
#[tokio::test]
async fn serve_mirror_runs_once_a_day_and_retries_a_failed_run() {
    let (_d1, up_db) = temp_db();
    let up = serve(
        &up_db,
        &["--demo", "--demo-days", "20", "--admin-token", ADMIN],
    )
    .await;
    let hostile = Hostile::start(&up.base, Mode::default()).await;
    let (dir, mirror_db) = temp_db();
    let config = mirror_config(dir.path(), &hostile.base);
    let config = config.to_str().unwrap();
    // 08:40 on the 15th: the 15th's run is due; the daemon catches up at once.
    let start = "2026-06-15T08:40:00+08:00";
    set_clock(&up.base, ADMIN, start).await;
    let mut mirror = Serve::new(&mirror_db)
        .args(&["--mirror", config, "--admin-token", ADMIN, "--clock", start])
        .env("DAILY_MIRROR_SECRET", DEMO_SECRET)
        .log("info")
        .stderr()
        .start()
        .await;
    let base = mirror.base.clone();
    let log = mirror.stderr_log();
    let ok = |slot: &str| {
        let slot = slot.to_owned();
        move |r: &[(String, i64, String)]| r.iter().any(|(s, _, o)| *s == slot && o == "ok")
    };
    wait_runs(&base, ADMIN, "the catch-up run", ok("2026-06-15")).await;

    let both = |now: &'static str| {
        let (up, base) = (up.base.clone(), base.clone());
        async move {
            set_clock(&up, ADMIN, now).await;
            set_clock(&base, ADMIN, now).await;
        }
    };
    // Just before the next 08:30: nothing more.
    both("2026-06-16T08:29:58+08:00").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(runs(&base, ADMIN).await.len(), 1);
    both("2026-06-16T08:30:01+08:00").await;
    wait_runs(&base, ADMIN, "the 16th's run", ok("2026-06-16")).await;

    // The 17th: the upstream is down at 08:30; the run fails, and is tried again after its
    // delay (60 s doubled per attempt, ±50 %): not before 30 s, by 90 s.
    hostile.set(|m| m.down = true);
    both("2026-06-17T08:30:01+08:00").await;
    let failed = |r: &[(String, i64, String)]| {
        r.iter()
            .any(|(s, a, o)| s == "2026-06-17" && *a == 1 && o == "failed")
    };
    wait_runs(&base, ADMIN, "the 17th's failed run", failed).await;
    hostile.set(|m| m.down = false);
    both("2026-06-17T08:30:20+08:00").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        runs(&base, ADMIN).await.len(),
        3,
        "no retry before its time"
    );
    both("2026-06-17T08:32:40+08:00").await;
    wait_runs(&base, ADMIN, "the 17th's retry", ok("2026-06-17")).await;

    // Two more mornings.
    both("2026-06-18T08:31:00+08:00").await;
    wait_runs(&base, ADMIN, "the 18th's run", ok("2026-06-18")).await;
    both("2026-06-19T09:00:00+08:00").await;
    let all = wait_runs(&base, ADMIN, "the 19th's run", ok("2026-06-19")).await;
    let expected_runs: Vec<(String, i64, String)> = [
        ("2026-06-15", 1, "ok"),
        ("2026-06-16", 1, "ok"),
        ("2026-06-17", 1, "failed"),
        ("2026-06-17", 2, "ok"),
        ("2026-06-18", 1, "ok"),
        ("2026-06-19", 1, "ok"),
    ]
    .into_iter()
    .map(|(s, a, o)| (s.to_owned(), a, o.to_owned()))
    .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(all, expected_runs);
    assert_eq!(runs(&base, ADMIN).await, expected_runs, "one run a day");
    // The same runs on /metrics, for an alert on a mirror that stopped succeeding.
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let runs_by = |outcome: &str| {
        sample(
            &text,
            &format!("datacube_sync_runs_total{{mirror=\"daily\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!((runs_by("ok"), runs_by("failed")), (5.0, 1.0), "{text}");
    assert!(
        sample(&text, "datacube_sync_rows_total{mirror=\"daily\"}") > 0.0,
        "{text}"
    );
    assert!(
        sample(
            &text,
            "datacube_sync_last_success_timestamp_seconds{mirror=\"daily\"}"
        ) > 1.7e9,
        "{text}"
    );

    // The mirror answers as the upstream for the days mirrored.
    let endpoints = [
        Endpoint::GetUserSummary,
        Endpoint::GetUserCumulate,
        Endpoint::GetInterfaceSummary,
        Endpoint::GetUpstreamMsg,
    ];
    let creds = (DEMO_APPID, DEMO_SECRET);
    let days = (
        parse_date(FIRST).unwrap(),
        parse_date("2026-06-18").unwrap(),
    );
    let want = answers(&up.base, creds, &endpoints, days).await;
    let got = answers(&base, creds, &endpoints, days).await;
    assert_eq!(want, got);

    // SIGTERM between runs: the server and its daemon stop at once, cleanly.
    let stopped = Instant::now();
    kill(&mirror.child, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), mirror.child.wait())
        .await
        .expect("stops within seconds")
        .unwrap();
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopped.elapsed()
    );
    assert!(status.success(), "{status:?}");
    let log = log.await.unwrap();
    assert!(log.contains("mirror daemon stopped"), "{log}");
    assert!(
        log.contains("mirror run did not complete"),
        "the failed run is logged: {log}"
    );
    assert!(!log.contains(DEMO_SECRET), "no secret in the log");
}

/// `sync --config FILE --daemon`: a run at start when the day's run is due, recorded and
/// shown by `sync --status`; SIGTERM while it waits for the next morning stops it at once.
/// A one-shot `sync --config` whose upstream is unreachable fails, and `--status` says so in
/// its exit code. Mistakes in the configuration are usage errors.
#[tokio::test]
async fn sync_daemon_runs_stops_on_sigterm_and_reports_its_status() {
    let (_d1, up_db) = temp_db();
    let up = serve(&up_db, &["--demo", "--demo-days", "20"]).await;
    let (dir, mirror_db) = temp_db();
    let config = mirror_config(dir.path(), &up.base);
    let config = config.to_str().unwrap();
    let mut daemon = datacube(&mirror_db)
        .args(["sync", "--config", config, "--daemon"])
        .args(["--clock", "2026-06-15T09:00:00+08:00"])
        .env("DAILY_MIRROR_SECRET", DEMO_SECRET)
        .env("DATACUBE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = || async {
        run(
            &mirror_db,
            &["sync", "--status", "--config", config, "--report", "json"],
            None,
        )
        .await
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let listed = loop {
        let (code, out, err) = status().await;
        let list: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|_| panic!("{err}"));
        if list[0]["outcome"] == "ok" {
            assert_eq!(code, 0);
            break list;
        }
        if Instant::now() > deadline {
            let _ = daemon.start_kill();
            let out = daemon.wait_with_output().await.unwrap();
            panic!("no run: {list}\n{}", String::from_utf8_lossy(&out.stderr));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["mirror"], "daily");
    assert_eq!(listed[0]["slot"], "2026-06-15");
    let report = &listed[0]["report"];
    assert_eq!(report["accounts"][0]["appid"], DEMO_APPID);
    assert!(report["rows_stored"].as_u64().unwrap() > 20, "{report:#}");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = Instant::now();
    kill(&daemon, "-TERM");
    let out = tokio::time::timeout(Duration::from_secs(10), daemon.wait_with_output())
        .await
        .expect("stops within seconds")
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(stopped.elapsed() < Duration::from_secs(3));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("mirror daemon stopped"), "{log}");
    let (code, text, _) = run(&mirror_db, &["sync", "--status", "--config", config], None).await;
    assert_eq!(code, 0);
    assert!(
        text.starts_with("#1 daily for 2026-06-15, attempt 1: started 2026-06-15T09:00:"),
        "{text}"
    );

    // An unreachable upstream: the one-shot run fails, and so does --status after it.
    let down = dir.path().join("down.toml");
    std::fs::write(
        &down,
        std::fs::read_to_string(config)
            .unwrap()
            .replace(&up.base, "http://127.0.0.1:9")
            .replace("\"daily\"", "\"down\""),
    )
    .unwrap();
    let down = down.to_str().unwrap();
    let (code, _, err) = run(&mirror_db, &["sync", "--config", down], None).await;
    assert_eq!(
        code, 2,
        "the secret's variable is not set: a usage error: {err}"
    );
    assert!(
        err.contains("secret_env names \"DAILY_MIRROR_SECRET\", which is not set"),
        "{err}"
    );
    let out = datacube(&mirror_db)
        .args(["sync", "--config", down])
        .env("DAILY_MIRROR_SECRET", DEMO_SECRET)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains(DEMO_SECRET), "{err}");
    let (code, text, _) = run(&mirror_db, &["sync", "--status", "--config", down], None).await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(", failed in "), "{text}");

    // Usage errors exit 2, naming what is wrong.
    for (args, says) in [
        (vec!["sync", "--daemon"], "--config"),
        (
            vec!["sync", "--config", "/nonexistent/mirror.toml"],
            "/nonexistent/mirror.toml",
        ),
        (
            vec!["sync", "--appid", "wx1", "--secret", "s", "--timeout", "0"],
            "--timeout",
        ),
        (
            vec![
                "sync",
                "--appid",
                "wx1",
                "--secret",
                "s",
                "--max-answer",
                "12 parsecs",
            ],
            "unit",
        ),
        (
            vec![
                "sync",
                "--appid",
                "wx1",
                "--secret",
                "s",
                "--from",
                "2026-06-02",
                "--to",
                "2026-06-01",
            ],
            "--from is after --to",
        ),
    ] {
        let (code, _, err) = run(&mirror_db, &args, None).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\nschedule = \"8.30\"\n").unwrap();
    let (code, _, err) = run(
        &mirror_db,
        &["sync", "--config", bad.to_str().unwrap()],
        None,
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad.toml: schedule: \"8.30\" is not HH:MM"),
        "{err}"
    );
}

/// What an upstream answers never leaks a secret, forges a line, grows a report without
/// bound, or follows a redirect; an upstream password is not shown.
#[tokio::test]
async fn hostile_answers_never_leak_forge_or_redirect() {
    let (_d1, up_db) = temp_db();
    let up = serve(&up_db, &["--demo", "--demo-days", "20"]).await;
    let hostile = Hostile::start(
        &up.base,
        Mode {
            redirect: vec!["getusershare"],
            forged_errmsg: vec!["getuserread"],
            ..Mode::default()
        },
    )
    .await;
    // The upstream's URL carries a password (a proxy's): it is never shown.
    let with_password = hostile
        .base
        .replace("http://", "http://proxyuser:PROXY_PASSWORD_SENTINEL@");
    let (_d2, mirror_db) = temp_db();
    let only = ["--endpoints", "getusershare,getuserread,getusercumulate"];
    let (code, out, err, _) = sync(
        &mirror_db,
        &with_password,
        &[&only[..], &["--report", "json"]].concat(),
    )
    .await;
    assert_eq!(code, 3, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["upstream"],
        hostile.base.replace("http://", "http://proxyuser:***@")
    );
    for text in [&out, &err] {
        assert!(!text.contains("PROXY_PASSWORD_SENTINEL"), "{text}");
        assert!(!text.contains(DEMO_SECRET), "{text}");
        assert!(
            !text.contains('\u{1b}'),
            "no terminal escape passes through"
        );
    }
    let share = endpoint_report(&report, "getusershare");
    assert_eq!(share["status"], "failed");
    assert!(
        share["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 307 Temporary Redirect (redirects are not followed)"),
        "{share:#}"
    );
    assert_eq!(
        hostile.stolen.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the token was not sent where the redirect pointed"
    );
    let read = endpoint_report(&report, "getuserread");
    let why = read["error"].as_str().unwrap();
    assert!(
        why.starts_with("datacube/getuserread answered 40078 bad\\nsynced 1 of 1"),
        "{why}"
    );
    assert!(
        why.len() < 400,
        "a megabyte of errmsg is cut: {} bytes",
        why.len()
    );
    assert!(
        out.len() < 20_000,
        "the report stays small: {} bytes",
        out.len()
    );
    assert!(
        !err.lines()
            .any(|l| l.starts_with("synced 1 of 1 from https://api.weixin.qq.com")),
        "no forged line: {err}"
    );
    assert_eq!(
        endpoint_report(&report, "getusercumulate")["status"],
        "done"
    );

    // A token answer that cannot be read is named, never quoted (it holds the token).
    hostile.set(|m| m.expires_in = Some("1e400"));
    let (_d3, other_db) = temp_db();
    let (code, _, err, _) = sync(&other_db, &hostile.base, &only).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is not JSON we can read: number out of range"),
        "{err}"
    );
    assert!(!err.contains("access_token\":\""), "{err}");
}

/// SIGINT while every call hangs: the run stops within a second, not after its timeouts and
/// retries; killed outright, `sync --status` says the run died once it has been silent for
/// five minutes. A component's list of accounts that lists one without a refresh token is read
/// to its end, not asked again forever.
#[tokio::test]
async fn a_run_stops_at_once_and_a_dead_run_is_told() {
    let (_d1, up_db) = temp_db();
    let up = serve(&up_db, &["--demo", "--demo-days", "20"]).await;
    let hostile = Hostile::start(
        &up.base,
        Mode {
            hang: true,
            ..Mode::default()
        },
    )
    .await;
    let (_d2, mirror_db) = temp_db();
    for signal in ["-INT", "-KILL"] {
        let before = hostile.calls.load(std::sync::atomic::Ordering::Relaxed);
        let child = datacube(&mirror_db)
            .args(["sync", "--appid", DEMO_APPID, "--upstream", &hostile.base])
            .args(["--from", FIRST, "--timeout", "60", "--header-timeout", "60"])
            .env("DATACUBE_SECRET", DEMO_SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while hostile.calls.load(std::sync::atomic::Ordering::Relaxed) == before {
            assert!(Instant::now() < deadline, "the sync made no call");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let signalled = Instant::now();
        kill(&child, signal);
        let out = child.wait_with_output().await.unwrap();
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "{signal}: stopped in {:?}",
            signalled.elapsed()
        );
        if signal == "-INT" {
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(3), "{err}");
            assert!(
                err.contains("interrupted; run the same command again to resume"),
                "{err}"
            );
            let (code, status, _) = run(&mirror_db, &["sync", "--status"], None).await;
            assert_eq!(code, 3, "{status}");
            assert!(status.contains(", interrupted in "), "{status}");
        }
    }
    // The killed run never finished: running for a while, then taken for dead.
    let (code, status, _) = run(&mirror_db, &["sync", "--status"], None).await;
    assert_eq!(code, 0, "{status}");
    assert!(
        status.lines().next().unwrap().ends_with(", running"),
        "{status}"
    );
    let later = ["sync", "--status", "--clock", "2026-06-15T10:20:00+08:00"];
    let (code, status, err) = run(&mirror_db, &later, None).await;
    assert_eq!(code, 1, "{status}");
    assert!(
        status.contains("stopped without finishing (no sign of life since"),
        "{status}"
    );
    assert!(
        err.contains("stopped without finishing (its process died)"),
        "{err}"
    );

    // A component whose list has an account without a refresh token (never exchanged).
    hostile.set(|m| {
        m.hang = false;
        m.authorizer_list = Some(
            r#"{"total_count":2,"list":[{"authorizer_appid":"wx00000000000000a1","refresh_token":"r1"},{"authorizer_appid":"wx00000000000000a2"}]}"#.into(),
        );
    });
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        datacube(&mirror_db)
            .args(["sync", "--upstream", &hostile.base, "--from", FIRST])
            .args(["--component-appid", "wxc0000000000000c7"])
            .args(["--component-secret", "cs", "--component-token", "ct"])
            .args(["--report", "json"])
            .output(),
    )
    .await
    .expect("the list is read to its end")
    .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(hostile.listed.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(
        report["accounts"].as_array().unwrap().len(),
        1,
        "{report:#}"
    );
    assert_eq!(report["accounts"][0]["appid"], "wx00000000000000a1");
    assert_eq!(
        report["notes"][0],
        format!(
            "1 accounts authorized wxc0000000000000c7 on {}",
            hostile.base
        )
    );
}
