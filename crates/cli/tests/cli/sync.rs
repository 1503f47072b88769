//! `datacube sync` against a faulty `datacube serve --demo`, then `datacube serve` on the
//! mirror: the same answers byte for byte; the fewest calls; nothing fetched twice; resumable
//! after SIGINT and SIGKILL; `datacube export`.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use datacube_api::date::{add_days, format_date, parse_date};
use datacube_api::Endpoint;

use tokio::process::Command;

const DEMO_APPID: &str = "wx6461746163756265";
const DEMO_SECRET: &str = "64656d6f5f7365637265745f32303236";
/// 10:00 on 2026-06-15: the 14th is the last ready day.
const NOW: &str = "2026-06-15T10:00:00+08:00";
const DAYS: i64 = 45;
/// Errors and delays on a share of the calls, and on token requests.
const FAULTS: &str = "*:-1@5%,*:45011@1%,*:+1ms@5%,token:-1@30%";

async fn serve_at(db: &str, extra: &[&str]) -> Served {
    Serve::new(db)
        .clock(NOW)
        .log("error")
        .args(extra)
        .start()
        .await
}

fn first_day() -> String {
    format_date(add_days(parse_date("2026-06-14").unwrap(), -(DAYS - 1)))
}

fn sync_cmd(db: &str, upstream: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("DATACUBE_DATABASE", db)
        .env("DATACUBE_CLOCK", NOW)
        .env("DATACUBE_LOG", "warn")
        .args([
            "sync",
            "--appid",
            DEMO_APPID,
            "--secret",
            DEMO_SECRET,
            "--upstream",
            upstream,
            "--slow-down",
            "0.05",
            "--from",
        ])
        .arg(first_day())
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn sync(db: &str, upstream: &str, extra: &[&str]) -> (i32, String, String) {
    let out = sync_cmd(db, upstream, extra).output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `N calls` of a dry run, `(calls, retries)` of a run.
fn planned(dry: &str) -> u64 {
    dry.lines()
        .next()
        .and_then(|l| l.rsplit(": ").next())
        .and_then(|l| l.strip_suffix(" calls"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no plan in {dry}"))
}

/// The calls a dry run plans for one endpoint.
fn planned_for(dry: &str, endpoint: &str) -> u64 {
    dry.lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(endpoint)).then(|| words.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {endpoint} in {dry}"))
}

fn made(report: &str) -> (u64, u64) {
    let line = report
        .strip_prefix(&format!("{DEMO_APPID}: "))
        .unwrap_or_else(|| panic!("the summary names its account: {report}"));
    let after = line
        .split(": ")
        .nth(1)
        .unwrap_or_else(|| panic!("{report}"));
    let calls = after.split(' ').next().unwrap().parse().unwrap();
    let retries = after
        .split('(')
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    (calls, retries)
}

/// Every endpoint's answers over the demo range, call by call within each span.
async fn answers(base: &str) -> Vec<(String, String)> {
    answers_of(base, &Endpoint::ALL).await
}

/// The answers of `endpoints` over the demo range, call by call within each span.
async fn answers_of(base: &str, endpoints: &[Endpoint]) -> Vec<(String, String)> {
    let first = parse_date(&first_day()).unwrap();
    let last = parse_date("2026-06-14").unwrap();
    crate::common::answers(base, (DEMO_APPID, DEMO_SECRET), endpoints, (first, last)).await
}

#[tokio::test]
async fn a_mirror_answers_like_the_original_and_syncs_only_what_changes() {
    let (_d1, up_db) = temp_db();
    let (_d2, mirror_db) = temp_db();
    let days = DAYS.to_string();
    let up = serve_at(
        &up_db,
        &["--demo", "--demo-days", &days, "--faults", FAULTS],
    )
    .await;

    let (code, dry, err) = sync(&mirror_db, &up.base, &["--dry-run"]).await;
    assert_eq!(code, 0, "{err}");
    let plan = planned(&dry);
    // 45 days: 7 spans of 7 days, 15 of 3, 45 of 1…
    assert_eq!(planned_for(&dry, "getusersummary"), 7, "{dry}");
    assert_eq!(planned_for(&dry, "getuserread"), 15, "{dry}");
    assert_eq!(planned_for(&dry, "getuserreadhour"), 45, "{dry}");

    let (code, out, err) = sync(&mirror_db, &up.base, &[]).await;
    assert_eq!(code, 0, "{err}\n{out}");
    let (calls, retries) = made(&out);
    assert_eq!(calls, plan, "the calls made are the plan's: {out}");
    assert!(retries > 0, "faults were injected: {out}");
    assert!(err.contains("added the local account"), "{err}");

    // Nothing new: only getarticletotal's last 6 days and getarticletotaldetail's last 29
    // (answered `"is_delay":true`) are not final.
    let (_, dry2, _) = sync(&mirror_db, &up.base, &["--dry-run"]).await;
    assert_eq!(planned(&dry2), 6 + 29, "{dry2}");
    assert_eq!(planned_for(&dry2, "getarticletotal"), 6, "{dry2}");
    assert_eq!(planned_for(&dry2, "getarticletotaldetail"), 29, "{dry2}");
    let (code, out2, err2) = sync(&mirror_db, &up.base, &[]).await;
    assert_eq!(code, 0, "{err2}");
    assert_eq!(made(&out2).0, 6 + 29, "{out2}");

    // The mirror answers byte for byte as the original (without faults, same clock).
    drop(up);
    let original = serve_at(&up_db, &[]).await;
    let mirror = serve_at(&mirror_db, &[]).await;
    let want = answers(&original.base).await;
    let got = answers(&mirror.base).await;
    assert_eq!(want.len(), got.len());
    let rows: usize = want
        .iter()
        .map(|(_, a)| a.matches("\"ref_date\"").count())
        .sum();
    assert!(rows > 2000, "the demo has statistics: {rows} rows");
    for ((what, a), (_, b)) in want.iter().zip(&got) {
        assert_eq!(a, b, "{what}");
    }

    // export: WeChat's body, NDJSON, CSV.
    let from = first_day();
    // `format` "" leaves --format out: WeChat's body is the default.
    let export = |endpoint: &'static str, format: &'static str| {
        let (db, from) = (mirror_db.clone(), from.clone());
        async move {
            let mut args = vec!["export", "--appid", DEMO_APPID, "--endpoint", endpoint];
            args.extend(["--from", &from, "--to", "2026-06-14", "--clock", NOW]);
            if !format.is_empty() {
                args.extend(["--format", format]);
            }
            let (code, out, err) = run(&db, &args, None).await;
            assert_eq!(code, 0, "{err}");
            out
        }
    };
    let json = export("getusersummary", "").await;
    let mut whole = String::new();
    for (what, a) in &want {
        if what.starts_with("getusersummary ") {
            let inner = &a[9..a.len() - 2];
            if !inner.is_empty() {
                if !whole.is_empty() {
                    whole.push(',');
                }
                whole.push_str(inner);
            }
        }
    }
    assert_eq!(json.trim_end(), format!("{{\"list\":[{whole}]}}"));
    let ndjson = export("getusersummary", "ndjson").await;
    assert_eq!(ndjson.lines().count(), json.matches("\"ref_date\"").count());
    let csv = export("getarticletotal", "csv").await;
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("ref_date,msgid,title,user_source,stat_date,target_user,int_page_read_user"));
    assert!(lines.count() > DAYS as usize, "a line per detail: {csv}");

    // The 2025 endpoints: a line per snapshot, the `detail` object's fields as columns, the
    // nested lists as JSON; WeChat's body with `is_delay`.
    let csv = export("getarticletotaldetail", "csv").await;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "ref_date,msgid,publish_type,title,content_url,stat_date,read_user,read_user_source,\
         share_user,zaikan_user,like_user,comment_count,collection_user,praise_money,\
         read_subscribe_user,read_delivery_rate,read_finish_rate,read_avg_activetime,\
         read_jump_position"
    );
    let line = lines.next().unwrap();
    assert!(line.contains(",\"[{\"\"user_count\"\":"), "{line}");
    assert!(lines.count() > 10 * DAYS as usize, "a line per snapshot");
    let csv = export("getbizsummary", "csv").await;
    assert!(csv.starts_with(
        "ref_date,read_user,read_user_source,share_user,zaikan_user,like_user,comment_count,"
    ));
    assert_eq!(csv.lines().count(), DAYS as usize + 1, "{csv}");
    let json = export("getbizsummary", "json").await;
    assert!(json.trim_end().ends_with("],\"is_delay\":false}"), "{json}");
    let json = export("getarticletotaldetail", "json").await;
    assert!(json.trim_end().ends_with("],\"is_delay\":true}"), "{json}");
}

/// Killed (SIGKILL) or interrupted (SIGINT) in the middle, a sync run again completes, and
/// the mirror then answers like the original: no row missing or doubled.
#[tokio::test]
async fn an_interrupted_sync_resumes_without_loss_or_doubling() {
    let (_d1, up_db) = temp_db();
    let (_d2, mirror_db) = temp_db();
    let days = DAYS.to_string();
    // Slow enough to be caught in the middle.
    let up = serve_at(
        &up_db,
        &["--demo", "--demo-days", &days, "--faults", "*:+20ms@100%"],
    )
    .await;
    let (_, dry, _) = sync(&mirror_db, &up.base, &["--dry-run"]).await;
    let plan = planned(&dry);

    for signal in ["-KILL", "-INT"] {
        let child = sync_cmd(&mirror_db, &up.base, &["--concurrency", "2"])
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        kill(&child, signal);
        let out = child.wait_with_output().await.unwrap();
        assert!(!out.status.success(), "{signal}: the sync was cut short");
        if signal == "-INT" {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("run the same command again to resume"),
                "{err}"
            );
        }
    }
    let (_, dry, _) = sync(&mirror_db, &up.base, &["--dry-run"]).await;
    let left = planned(&dry);
    assert!(
        left > 0 && left < plan,
        "part done, part left: {left} of {plan}"
    );
    let (code, out, err) = sync(&mirror_db, &up.base, &[]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(made(&out).0, left, "{out}");

    drop(up);
    let original = serve_at(&up_db, &[]).await;
    let mirror = serve_at(&mirror_db, &[]).await;
    let want = answers(&original.base).await;
    let got = answers(&mirror.base).await;
    for ((what, a), (_, b)) in want.iter().zip(&got) {
        assert_eq!(a, b, "{what}");
    }
}

#[tokio::test]
async fn a_used_up_daily_quota_stops_the_sync_with_a_clear_message() {
    let (_d1, up_db) = temp_db();
    let (_d2, mirror_db) = temp_db();
    let up = serve_at(
        &up_db,
        &[
            "--demo",
            "--demo-days",
            "10",
            "--faults",
            "getuserread:45009@100%",
        ],
    )
    .await;
    let (code, out, err) = sync(&mirror_db, &up.base, &[]).await;
    // getuserread stops at its first 45009; every other endpoint is mirrored: partly done.
    assert_eq!(code, 3, "{out}");
    assert!(
        err.contains(
            "getuserread: failed: datacube/getuserread: the daily quota is used up (45009"
        ),
        "{err}"
    );
    assert!(err.contains("windows left for the next run"), "{err}");
    // The token is fetched once however many calls were made.
    assert!(out.contains("(0 retries, 1 token requests)"), "{out}");
    let (_, dry, _) = sync(&mirror_db, &up.base, &["--dry-run"]).await;
    assert_eq!(
        planned(&dry),
        planned_for(&dry, "getuserread") + 6 + 29,
        "only getuserread is left, beside what may still change: {dry}"
    );
}

const LEGACY_ARTICLES: [&str; 6] = [
    "getarticlesummary",
    "getarticletotal",
    "getuserread",
    "getuserreadhour",
    "getusershare",
    "getusersharehour",
];

/// An upstream that retired the old article endpoints as WeChat did (47009): the sync mirrors
/// everything else, asks each retired endpoint no more after its first 47009, and says so once.
#[tokio::test]
async fn endpoints_answering_47009_are_asked_no_more() {
    let (_d1, up_db) = temp_db();
    let up = serve_at(
        &up_db,
        &["--demo", "--demo-days", "20", "--retire-legacy-articles"],
    )
    .await;
    let (_d2, mirror_db) = temp_db();
    let (code, dry, err) = sync(&mirror_db, &up.base, &["--dry-run"]).await;
    assert_eq!(code, 0, "{err}");
    let legacy: u64 = LEGACY_ARTICLES.iter().map(|e| planned_for(&dry, e)).sum();
    let others = planned(&dry) - legacy;
    assert!(legacy > 6 && others > 0, "{dry}");

    // One call at a time: exactly one call to each retired endpoint.
    let (code, out, err) = sync(&mirror_db, &up.base, &["--concurrency", "1"]).await;
    assert_eq!(code, 0, "the rest was mirrored: {err}\n{out}");
    assert_eq!(made(&out).0, others + 6, "{out}");
    for e in LEGACY_ARTICLES {
        let said: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with(&format!("{DEMO_APPID} {e}: the upstream answered 47009")))
            .collect();
        assert_eq!(said.len(), 1, "said once for {e}: {out}");
    }
    // Every window of the other endpoints was mirrored.
    let synced: u64 = out
        .strip_prefix(&format!("{DEMO_APPID}: synced "))
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(synced, others, "{out}");
    // The article statistics came through the 2025 endpoints: the mirror answers them as the
    // upstream does, window by window, and they are not empty.
    let published = [
        Endpoint::GetArticleRead,
        Endpoint::GetArticleShare,
        Endpoint::GetBizSummary,
        Endpoint::GetArticleTotalDetail,
    ];
    let mirror = serve_at(&mirror_db, &["--retire-legacy-articles"]).await;
    let want = answers_of(&up.base, &published).await;
    let got = answers_of(&mirror.base, &published).await;
    for endpoint in published {
        let rows: usize = want
            .iter()
            .filter(|(what, _)| what.starts_with(&format!("{endpoint} ")))
            .map(|(_, a)| a.matches("\"ref_date\"").count())
            .sum();
        assert!(rows >= 15, "{endpoint}: {rows} rows in the demo");
    }
    for ((what, a), (_, b)) in want.iter().zip(&got) {
        assert_eq!(a, b, "{what}");
    }
    drop(mirror);

    // Eight at a time: the calls already in flight when the first 47009 came back may answer
    // 47009 too, but no call starts after it.
    let (_d3, mirror_db) = temp_db();
    let (code, out, err) = sync(&mirror_db, &up.base, &[]).await;
    assert_eq!(code, 0, "{err}\n{out}");
    let calls = made(&out).0;
    assert!(
        calls >= others + 6 && calls <= others + 6 * 8,
        "{calls} calls: {out}"
    );
}

/// A third-party platform mirrors every account that authorized it, with authorizer tokens:
/// the endpoints of the sets granted are mirrored byte for byte, the others answer 61007 once
/// each and are asked no more.
#[tokio::test]
async fn a_third_party_platform_mirrors_the_accounts_that_authorized_it() {
    const C: &str = "wxc0000000000000c9";
    const C_SECRET: &str = "component-secret-for-sync-0000001";
    let (_d1, up_db) = temp_db();
    let up = serve_at(
        &up_db,
        &[
            "--demo",
            "--demo-days",
            "20",
            "--admin-token",
            "sync-admin-token-0001",
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let admin = |path: &str, body: serde_json::Value| {
        http.post(format!("{}{path}", up.base))
            .bearer_auth("sync-admin-token-0001")
            .json(&body)
            .send()
    };
    let a = admin(
        "/admin/components",
        serde_json::json!({"appid": C, "secret": C_SECRET, "token": "synctoken",
                           "aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}),
    )
    .await
    .unwrap();
    assert_eq!(a.status(), 201);
    let ticket: serde_json::Value = admin(
        &format!("/admin/components/{C}/ticket"),
        serde_json::json!({}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let ticket = ticket["ticket"].as_str().unwrap().to_owned();
    // Users, messages and interface; not articles (7).
    let g = admin(
        &format!("/admin/components/{C}/grants"),
        serde_json::json!({"authorizer_appid": DEMO_APPID, "func_ids": [2, 1, 3]}),
    )
    .await
    .unwrap();
    assert_eq!(g.status(), 200);

    // The mirror's account exists with the demo secret, to compare answers afterwards.
    let (_d2, mirror_db) = temp_db();
    add_account(&mirror_db, DEMO_APPID, DEMO_SECRET).await;
    let out = Command::new(BIN)
        .env("DATACUBE_DATABASE", &mirror_db)
        .env("DATACUBE_CLOCK", NOW)
        .env("DATACUBE_LOG", "warn")
        .env_remove("DATACUBE_SECRET")
        .args(["sync", "--upstream", &up.base, "--from", &first_day()])
        .args(["--component-appid", C, "--component-secret", C_SECRET])
        .args(["--component-ticket", &ticket, "--concurrency", "1"])
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}\n{stdout}");
    assert!(
        stdout.starts_with(&format!("1 accounts authorized {C}")),
        "{stdout}"
    );
    let articles: Vec<Endpoint> = Endpoint::ALL
        .into_iter()
        .filter(|e| e.group() == datacube_api::Group::Article)
        .collect();
    for e in &articles {
        let said = stdout
            .lines()
            .filter(|l| l.starts_with(&format!("{DEMO_APPID} {e}: the upstream answered 61007")))
            .count();
        assert_eq!(said, 1, "{e}: {stdout}");
    }
    // Token requests: the component token (from the ticket) and one authorizer token, beside
    // the authorizer list.
    assert!(stdout.contains("(0 retries, 2 token requests)"), "{stdout}");

    let granted: Vec<Endpoint> = Endpoint::ALL
        .into_iter()
        .filter(|e| e.group() != datacube_api::Group::Article)
        .collect();
    let mirror = serve_at(&mirror_db, &[]).await;
    let want = answers_of(&up.base, &granted).await;
    let got = answers_of(&mirror.base, &granted).await;
    let rows: usize = want
        .iter()
        .map(|(_, a)| a.matches("\"ref_date\"").count())
        .sum();
    assert!(rows > 500, "{rows} rows");
    for ((what, a), (_, b)) in want.iter().zip(&got) {
        assert_eq!(a, b, "{what}");
    }
    // Nothing of the articles was mirrored.
    for (what, answer) in answers_of(&mirror.base, &articles).await {
        assert!(!answer.contains("\"ref_date\""), "{what}: {answer}");
    }
}
