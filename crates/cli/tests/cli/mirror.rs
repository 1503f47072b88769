//! `datacube sync` against an upstream that misbehaves ([`upstream`]), in front of
//! a real `datacube serve --demo`: rows in any order, new fields, rows outside their window,
//! HTTP errors, HTML, answers that never end or never start, answers over the limit, odd token
//! lifetimes, broken endpoints; wrong secrets; `--strict`; the daily daemon (`serve --mirror`,
//! `sync --mirror --daemon`) with its recorded runs.

mod accounts;
mod daemon;
mod on_demand;
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
    sync_with_secret(db, upstream, DEMO_SECRET, extra).await
}

/// [`sync`] with another secret.
async fn sync_with_secret(
    db: &str,
    upstream: &str,
    secret: &str,
    extra: &[&str],
) -> (i32, String, String, Duration) {
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
        .env("DATACUBE_SECRET", secret)
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
    assert!(err.contains(&format!(
        "error: {DEMO_APPID} getusershare: failed: datacube/getusershare: HTTP 502"
    )));

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
        err.matches(&format!(
            "warning: {DEMO_APPID} getarticletotal: new field \"url\" kept"
        ))
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

    // An upstream that echoes the request in its errmsg: the secret, as sent (percent-encoded)
    // and decoded, is blanked from what sync prints and stores.
    hostile.set(|m| m.echo_request = true);
    let (_d4, echo_db) = temp_db();
    let secret = "SENTINEL+echo/secret=1";
    let (code, out, err, _) = sync_with_secret(
        &echo_db,
        &hostile.base,
        secret,
        &[&only[..], &["--report", "json"]].concat(),
    )
    .await;
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("invalid appsecret, request GET"), "{err}");
    let runs = run(&echo_db, &["sync", "--status"], None).await;
    for text in [&out, &err, &runs.1, &runs.2] {
        assert!(!text.contains("SENTINEL"), "{text}");
        assert!(!text.contains("SENTINEL%2Becho"), "{text}");
    }
    hostile.set(|m| m.echo_request = false);

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
