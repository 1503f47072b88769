//! The daily mirror: `serve --mirror` and `sync --mirror --daemon`, their schedule, retries,
//! stops and recorded runs.

use super::*;

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

/// When the daemon of `serve --mirror` looks next (`GET /admin/sync/mirror`'s
/// `next_attempt`), once `ready` accepts it: the daemon's plan, read instead of waiting to
/// see that nothing happens before it (waiting up to 30 s for the daemon to plan).
async fn next_attempt(
    base: &str,
    admin: &str,
    ready: impl Fn(jiff::Timestamp) -> bool,
) -> jiff::Timestamp {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = reqwest::Client::new()
            .get(format!("{base}/admin/sync/mirror"))
            .bearer_auth(admin)
            .answer_json()
            .await;
        let next = state["next_attempt"].as_str().and_then(|t| t.parse().ok());
        match next {
            Some(at) if ready(at) => return at,
            _ if Instant::now() > deadline => panic!("no such next attempt: {state}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn at(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

/// The runs a server's admin API lists, oldest first: (slot, attempt, outcome).
pub(super) async fn runs(base: &str, admin: &str) -> Vec<(String, i64, String)> {
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
pub(super) async fn wait_runs(
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

pub(super) fn mirror_config(dir: &std::path::Path, upstream: &str) -> std::path::PathBuf {
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

pub(super) const ADMIN: &str = "mirror-admin-token";

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
    // Just before the next 08:30: nothing more, the next attempt at 08:30.
    both("2026-06-16T08:29:58+08:00").await;
    let next = next_attempt(&base, ADMIN, |_| true).await;
    assert_eq!(next, at("2026-06-16T08:30:00+08:00"));
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
    let retry = next_attempt(&base, ADMIN, |t| t > at("2026-06-17T08:30:01+08:00")).await;
    assert!(
        retry >= at("2026-06-17T08:30:31+08:00") && retry <= at("2026-06-17T08:31:32+08:00"),
        "the retry 30–90 s after the failure: {retry}"
    );
    both("2026-06-17T08:30:20+08:00").await;
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
    // Planned: the 20th's, no other.
    let next = next_attempt(&base, ADMIN, |t| t > at("2026-06-19T09:00:00+08:00")).await;
    assert_eq!(next, at("2026-06-20T08:30:00+08:00"));
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

/// `sync --mirror FILE --daemon`: a run at start when the day's run is due, recorded and
/// shown by `sync --status`; SIGTERM while it waits for the next morning stops it at once.
/// A one-shot `sync --mirror` whose upstream is unreachable fails, and `--status` says so in
/// its exit code. Mistakes in the configuration are usage errors.
#[tokio::test]
async fn sync_daemon_runs_stops_on_sigterm_and_reports_its_status() {
    let (_d1, up_db) = temp_db();
    let up = serve(&up_db, &["--demo", "--demo-days", "20"]).await;
    let (dir, mirror_db) = temp_db();
    let config = mirror_config(dir.path(), &up.base);
    let config = config.to_str().unwrap();
    let mut daemon = datacube(&mirror_db)
        .args(["sync", "--mirror", config, "--daemon"])
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
            &["sync", "--status", "--mirror", config, "--report", "json"],
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
    let (code, text, _) = run(&mirror_db, &["sync", "--status", "--mirror", config], None).await;
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
    let (code, _, err) = run(&mirror_db, &["sync", "--mirror", down], None).await;
    assert_eq!(
        code, 2,
        "the secret's variable is not set: a usage error: {err}"
    );
    assert!(
        err.contains("secret_env names \"DAILY_MIRROR_SECRET\", which is not set"),
        "{err}"
    );
    let out = datacube(&mirror_db)
        .args(["sync", "--mirror", down])
        .env("DAILY_MIRROR_SECRET", DEMO_SECRET)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains(DEMO_SECRET), "{err}");
    assert!(
        !err.contains("other users can read it"),
        "no inline secret: {err}"
    );
    // The secret inline, in a file others can read: said; readable by its owner alone: not.
    let inline = dir.path().join("inline.toml");
    std::fs::write(
        &inline,
        std::fs::read_to_string(down).unwrap().replace(
            "secret_env = \"DAILY_MIRROR_SECRET\"",
            &format!("secret = \"{DEMO_SECRET}\""),
        ),
    )
    .unwrap();
    for (mode, warned) in [(0o644, true), (0o600, false)] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&inline, std::fs::Permissions::from_mode(mode)).unwrap();
        let (code, _, err) = run(
            &mirror_db,
            &["sync", "--mirror", inline.to_str().unwrap()],
            None,
        )
        .await;
        assert_eq!(code, 1, "{err}");
        assert_eq!(
            err.contains("other users can read it"),
            warned,
            "{mode:o}: {err}"
        );
        assert!(!err.contains(DEMO_SECRET), "{err}");
    }
    let (code, text, _) = run(&mirror_db, &["sync", "--status", "--mirror", down], None).await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(", failed in "), "{text}");

    // Usage errors exit 2, naming what is wrong.
    let one = ["sync", "--appid", "wx1", "--secret", "s"];
    for (args, says) in [
        (&["sync", "--daemon"][..], "--mirror"),
        (
            &["sync", "--mirror", "/nonexistent/mirror.toml"],
            "/nonexistent/mirror.toml",
        ),
        (&[&one[..], &["--timeout", "0"]].concat(), "--timeout"),
        (
            &[&one[..], &["--max-answer", "12 parsecs"]].concat(),
            "unit",
        ),
        (
            &[&one[..], &["--from", "2026-06-02", "--to", "2026-06-01"]].concat(),
            "--from is after --to",
        ),
    ] {
        let (code, _, err) = run(&mirror_db, args, None).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\nschedule = \"8.30\"\n").unwrap();
    let (code, _, err) = run(
        &mirror_db,
        &["sync", "--mirror", bad.to_str().unwrap()],
        None,
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("bad.toml: schedule: \"8.30\" is not HH:MM"),
        "{err}"
    );
}
