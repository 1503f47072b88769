//! `datacube ingest` of files in any order: the same events give the same answers, byte for
//! byte, from every endpoint — whatever the order of the lines, however they are split into
//! runs and batches, with resends and duplicates; and a load killed at any point completes,
//! exactly once, when the same command is run again.

use crate::common::*;
use datacube_api::date::{add_days, china_date};
use datacube_api::Endpoint;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::time::Instant;

pub(crate) const SECRET: &str = "s3cret-for-tests";

pub(crate) fn appids(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("wxaaaa0000000000{i:02}")).collect()
}

/// `days` days of demo activity (every kind of event, the 2025 ones too) of each account,
/// account after account, each in time order.
pub(crate) async fn demo_lines(db: &str, accounts: &[String], days: u32) -> Vec<String> {
    let mut lines = Vec::new();
    for appid in accounts {
        let days = days.to_string();
        let (code, out, err) = run(
            db,
            &["demo", "--appid", appid, "--days", &days, "--output", "-"],
            None,
        )
        .await;
        assert_eq!(code, 0, "{err}");
        lines.extend(out.lines().map(str::to_owned));
    }
    lines
}

pub(crate) fn time_of(line: &str) -> jiff::Timestamp {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["time"].as_str().unwrap().parse().unwrap()
}

pub(crate) async fn fresh(accounts: &[String]) -> (tempfile::TempDir, String) {
    let (dir, db) = temp_db();
    for appid in accounts {
        add_account(&db, appid, SECRET).await;
    }
    (dir, db)
}

/// Ingests `lines` from a file with `extra` flags; returns stdout.
async fn ingest(db: &str, dir: &std::path::Path, name: &str, lines: &[String], extra: &[&str]) {
    let file = dir.join(name);
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let mut args = vec!["ingest", file.to_str().unwrap()];
    args.extend(extra);
    let (code, out, err) = run(db, &args, None).await;
    assert_eq!(code, 0, "{name}: {out}{err}");
}

/// Every endpoint's answers for every account, call by call over the demo's days.
pub(crate) async fn all_answers(db: &str, accounts: &[String], days: u32) -> Vec<(String, String)> {
    let served = serve(db, &[]).await;
    let clock: jiff::Timestamp = CLOCK.parse().unwrap();
    let yesterday = add_days(china_date(clock.as_second()), -1);
    // From the first of the month of the demo's first day: monthly rows are dated the 1st.
    let first = add_days(yesterday, -i64::from(days));
    let first = first.first_of_month();
    let mut out = Vec::new();
    for appid in accounts {
        for (label, answer) in answers(
            &served.base,
            (appid, SECRET),
            &Endpoint::ALL,
            (first, yesterday),
        )
        .await
        {
            out.push((format!("{appid} {label}"), answer));
        }
    }
    out
}

/// Asserts that every endpoint answered rows somewhere (so that equal answers mean something).
pub(crate) fn assert_every_endpoint_has_rows(answers: &[(String, String)]) {
    for endpoint in Endpoint::ALL {
        let prefix = format!(" {endpoint} ");
        assert!(
            answers.iter().any(
                |(label, answer)| label.contains(&prefix) && answer.starts_with("{\"list\":[{")
            ),
            "{endpoint} answered no rows at all"
        );
    }
}

pub(crate) fn assert_same(what: &str, expected: &[(String, String)], got: &[(String, String)]) {
    assert_eq!(expected.len(), got.len(), "{what}: as many answers");
    for ((label, want), (_, answer)) in expected.iter().zip(got) {
        assert_eq!(want, answer, "{what}: {label}");
    }
}

#[tokio::test]
async fn every_order_and_every_split_gives_the_same_answers_byte_for_byte() {
    const DAYS: u32 = 35;
    let accounts = appids(3);
    let mut rng = StdRng::seed_from_u64(19);

    // Account after account, each in time order, in one run.
    let (dir_a, db_a) = fresh(&accounts).await;
    let by_account = demo_lines(&db_a, &accounts, DAYS).await;
    let total = by_account.len();
    assert!(total > 10_000, "{total} events");
    ingest(&db_a, dir_a.path(), "account.ndjson", &by_account, &[]).await;
    let expected = all_answers(&db_a, &accounts, DAYS).await;
    assert_every_endpoint_has_rows(&expected);

    // One time-ordered stream of the three accounts, in small transactions (accounts spread
    // over many of them).
    let mut by_time = by_account.clone();
    by_time.sort_by_key(|l| time_of(l));
    let (dir_b, db_b) = fresh(&accounts).await;
    ingest(
        &db_b,
        dir_b.path(),
        "time.ndjson",
        &by_time,
        &["--batch", "777"],
    )
    .await;
    assert_same(
        "time order",
        &expected,
        &all_answers(&db_b, &accounts, DAYS).await,
    );

    // No order, split into runs of random sizes, each with a random batch size and a small
    // sort memory; some runs resent whole, some lines repeated within and across runs.
    let mut shuffled = by_account.clone();
    shuffled.shuffle(&mut rng);
    let (dir_c, db_c) = fresh(&accounts).await;
    let mut runs: Vec<Vec<String>> = Vec::new();
    let mut rest = &shuffled[..];
    while !rest.is_empty() {
        let n = rng.random_range(1..=total / 4).min(rest.len());
        runs.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    for _ in 0..300 {
        let line = shuffled[rng.random_range(0..total)].clone();
        let run = rng.random_range(0..runs.len());
        let at = rng.random_range(0..=runs[run].len());
        runs[run].insert(at, line);
    }
    let resent: Vec<usize> = (0..2).map(|_| rng.random_range(0..runs.len())).collect();
    let mut accepted = 0u64;
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.extend(&resent);
    for (n, &i) in order.iter().enumerate() {
        let batch = rng.random_range(50..5_000).to_string();
        let file = dir_c.path().join(format!("run-{n}.ndjson"));
        std::fs::write(&file, runs[i].join("\n") + "\n").unwrap();
        let (code, out, err) = run(
            &db_c,
            &[
                "ingest",
                "--batch",
                &batch,
                "--memory",
                "16",
                file.to_str().unwrap(),
            ],
            None,
        )
        .await;
        assert_eq!(code, 0, "run {n}: {out}{err}");
        let (a, d) = counts(&out);
        assert_eq!(a + d, runs[i].len() as u64, "run {n}: {out}");
        accepted += a;
    }
    assert_eq!(accepted, total as u64, "every event accepted once");
    assert_same(
        "no order",
        &expected,
        &all_answers(&db_c, &accounts, DAYS).await,
    );
}

/// `N accepted, N duplicates, N rejected` → (accepted, duplicates).
pub(crate) fn counts(out: &str) -> (u64, u64) {
    let numbers: Vec<u64> = out
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(numbers.len(), 3, "{out}");
    assert_eq!(numbers[2], 0, "no line rejected: {out}");
    (numbers[0], numbers[1])
}

#[tokio::test]
async fn an_ingest_killed_at_random_points_completes_exactly_once_when_run_again() {
    const DAYS: u32 = 30;
    let accounts = appids(2);
    let mut rng = StdRng::seed_from_u64(23);
    let (dir_clean, db_clean) = fresh(&accounts).await;
    let mut lines = demo_lines(&db_clean, &accounts, DAYS).await;
    lines.shuffle(&mut rng);
    let file = dir_clean.path().join("events.ndjson");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let file = file.to_str().unwrap();

    // A clean run of the same command, timed, to know where to kill the others.
    let args = ["ingest", "--batch", "2000", "--memory", "16", file];
    let started = Instant::now();
    let (code, out, err) = run(&db_clean, &args, None).await;
    let clean = started.elapsed();
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("{} accepted, 0 duplicates, 0 rejected\n", lines.len())
    );

    // The same command killed at random points — while reading and sorting, while storing.
    // The first kill falls in the first half of a run on an empty store like the clean one,
    // so at least one run is always killed, however fast or slow the machine is today.
    let (_dir, db) = fresh(&accounts).await;
    let mut finished_early = 0;
    for round in 0..6 {
        let mut child = datacube(&db)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let at = clean.mul_f64(if round == 0 {
            rng.random_range(0.05..0.5)
        } else {
            rng.random_range(0.05..1.2)
        });
        match tokio::time::timeout(at, child.wait()).await {
            Ok(_) => finished_early += 1,
            Err(_) => {
                child.start_kill().unwrap();
                child.wait().await.unwrap();
            }
        }
    }
    assert!(finished_early < 6, "at least one run was killed");
    let (code, out, err) = run(&db, &args, None).await;
    assert_eq!(code, 0, "{err}");
    let (accepted, duplicates) = counts(&out);
    assert_eq!(accepted + duplicates, lines.len() as u64, "{out}");
    // Once more: everything is in.
    let (_, out, _) = run(&db, &args, None).await;
    assert_eq!(
        out,
        format!("0 accepted, {} duplicates, 0 rejected\n", lines.len())
    );

    let expected = all_answers(&db_clean, &accounts, DAYS).await;
    assert_every_endpoint_has_rows(&expected);
    assert_same(
        "after kills",
        &expected,
        &all_answers(&db, &accounts, DAYS).await,
    );
}

/// A line past the size limit, lines of unknown accounts and bad lines are named, in line
/// order, and the others stored; the exit code says the run was partial.
#[tokio::test]
async fn rejected_lines_are_named_in_order_and_the_rest_stored() {
    let accounts = appids(1);
    let (dir, db) = fresh(&accounts).await;
    let reply = |id: u32, day: u32| {
        format!(
            r#"{{"type":"reply","appid":"wxaaaa000000000001","id":"r{id}","time":"2026-06-{day:02}T09:00:00+08:00","cost_ms":{id},"ok":true}}"#
        )
    };
    let mut lines = vec![reply(1, 3), reply(2, 1)];
    lines.push(r#"{"type":"reply","appid":"wxbbbb000000000009","time":"2026-06-01T09:00:00+08:00","cost_ms":1,"ok":true}"#.into());
    lines.push(format!(
        r#"{{"type":"message","appid":"wxaaaa000000000001","openid":"{}"}}"#,
        "x".repeat(17 << 20)
    ));
    lines.push(reply(3, 2));
    lines.push("not json".into());
    lines.push(reply(4, 1));
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let (code, out, err) = run(&db, &["ingest", file.to_str().unwrap()], None).await;
    assert_eq!(code, 3, "partial success: {err}");
    assert_eq!(out, "4 accepted, 0 duplicates, 3 rejected\n");
    let named: Vec<&str> = err.lines().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(named.len(), 3, "{err}");
    assert!(
        named[0].starts_with("line 3: no account wxbbbb000000000009"),
        "{err}"
    );
    assert!(named[1].starts_with("line 4: longer than 16 MiB"), "{err}");
    assert!(named[2].starts_with("line 6: "), "{err}");
    let served = serve(&db, &[]).await;
    let body = served
        .datacube(
            (&accounts[0], SECRET),
            "getinterfacesummary",
            ("2026-06-01", "2026-06-03"),
        )
        .await;
    assert_eq!(
        body,
        r#"{"list":[{"ref_date":"2026-06-01","callback_count":2,"fail_count":0,"total_time_cost":6,"max_time_cost":4},{"ref_date":"2026-06-02","callback_count":1,"fail_count":0,"total_time_cost":3,"max_time_cost":3},{"ref_date":"2026-06-03","callback_count":1,"fail_count":0,"total_time_cost":1,"max_time_cost":1}]}"#
    );
}

/// Usage errors exit 2 before the database is opened.
#[tokio::test]
async fn bad_ingest_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("never.db").display());
    for args in [
        &["ingest", "--memory", "1", "x.ndjson"][..],
        &["ingest", "--batch", "0", "x.ndjson"],
        &["ingest", "--temp-dir", "/nonexistent/dir", "x.ndjson"],
    ] {
        let (code, _, err) = run(&db, args, None).await;
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    assert!(
        !dir.path().join("never.db").exists(),
        "nothing opened on a usage error"
    );
}

/// Five million bad lines: all counted, the first hundred named, and memory does not grow with
/// them (before: 522 MiB at the peak; each rejected line was kept).
#[tokio::test]
async fn bad_lines_are_counted_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.ndjson");
    std::fs::write(&file, "not an event\n".repeat(5_000_000)).unwrap();
    let db = format!("sqlite://{}", dir.path().join("bad.db").display());
    let child = datacube(&db)
        .args(["ingest", file.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let watch = tokio::spawn(async move {
        let mut peak = 0f64;
        while std::path::Path::new(&format!("/proc/{pid}/status")).exists() {
            peak = peak.max(peak_mib(pid));
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        peak
    });
    let out = child.wait_with_output().await.unwrap();
    let peak = watch.await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stdout.contains("0 accepted, 0 duplicates, 5000000 rejected"),
        "{stdout}"
    );
    assert!(stderr.starts_with("line 1: not JSON"), "{}", &stderr[..200]);
    assert!(
        stderr.contains("… and 4999900 more rejected lines"),
        "{stderr:.300}"
    );
    assert!(peak > 0.0 && peak < 150.0, "{peak:.0} MiB at the peak");
}
