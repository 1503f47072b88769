//! The real `datacube` binary, as a user runs it.

use std::time::Duration;

use crate::common::*;
use tokio::process::Command;

const SUMMARY: &str = r#"{"list":[{"ref_date":"2021-09-01","user_source":0,"new_user":3,"cancel_user":5},{"ref_date":"2021-09-01","user_source":1,"new_user":6,"cancel_user":1},{"ref_date":"2021-09-01","user_source":17,"new_user":3,"cancel_user":0},{"ref_date":"2021-09-01","user_source":30,"new_user":149,"cancel_user":1},{"ref_date":"2021-09-02","user_source":0,"new_user":1,"cancel_user":2}]}"#;

#[tokio::test]
async fn serve_demo_prints_credentials_and_a_curl_line_that_works() {
    let (_dir, db) = temp_db();
    let served = serve(&db, &["--demo", "--demo-days", "40"]).await;
    let all = served.stdout.join("\n");
    assert!(all.contains("appid wx6461746163756265"), "{all}");
    assert!(
        all.contains("secret 64656d6f5f7365637265745f32303236"),
        "{all}"
    );
    let curl = served
        .stdout
        .iter()
        .find(|l| l.trim_start().starts_with("curl "))
        .unwrap_or_else(|| panic!("no curl line in {all}"))
        .trim()
        .to_owned();
    let out = Command::new("bash")
        .args(["-c", &curl])
        .output()
        .await
        .unwrap();
    let body = String::from_utf8(out.stdout).unwrap();
    // 2026-06-15 10:00 China time: 06-08..06-14 are ready, a row per day at least.
    assert!(
        body.starts_with(r#"{"list":[{"ref_date":"2026-06-08","user_source":0,"#),
        "{body}"
    );
    assert!(body.contains(r#""ref_date":"2026-06-14""#), "{body}");
    drop(served);
}

#[tokio::test]
async fn accounts_are_added_listed_and_never_show_their_secret() {
    let (_dir, db) = temp_db();
    let (code, out, _) = run(
        &db,
        &[
            "account",
            "add",
            "--appid",
            "wxaaaa000000000001",
            "--secret",
            "topsecretvalue",
        ],
        None,
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(out, "added account wxaaaa000000000001 (verified)\n");
    let (code, _, err) = run(
        &db,
        &[
            "account",
            "add",
            "--appid",
            "wxaaaa000000000001",
            "--secret",
            "x",
        ],
        None,
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("account wxaaaa000000000001 already exists"),
        "{err}"
    );
    let (code, _, err) = run(
        &db,
        &["account", "add", "--appid", "bad appid", "--secret", "x"],
        None,
    )
    .await;
    // A usage error, as the README says (this asserted 1 before the commands were split).
    assert_eq!(code, 2);
    assert!(err.contains("may only contain"), "{err}");
    run(
        &db,
        &[
            "account",
            "add",
            "--appid",
            "wxbbbb000000000002",
            "--secret",
            "other",
            "--unverified",
        ],
        None,
    )
    .await;
    let (code, out, _) = run(&db, &["account", "list"], None).await;
    assert_eq!(code, 0);
    assert!(out.contains("wxaaaa000000000001       yes"), "{out}");
    assert!(out.contains("wxbbbb000000000002       no"), "{out}");
    assert!(!out.contains("topsecretvalue"));
    match db.strip_prefix("sqlite://") {
        Some(path) => {
            let raw = std::fs::read(path).unwrap();
            assert!(
                !raw.windows(14).any(|w| w == b"topsecretvalue"),
                "the secret is not in the database file"
            );
        }
        None => {
            let store = datacube_store::Store::open(&db).unwrap();
            for account in store.accounts().await.unwrap() {
                assert!(
                    account.secret_hash.starts_with("$hmac-sha256$"),
                    "{account:?}"
                );
                assert!(!account.secret_hash.contains("topsecretvalue"));
            }
        }
    }
    // The unverified account gets 48001 from datacube endpoints.
    let served = serve(&db, &[]).await;
    let body = served
        .datacube(
            ("wxbbbb000000000002", "other"),
            "getusersummary",
            ("2026-06-01", "2026-06-07"),
        )
        .await;
    assert!(
        body.starts_with(r#"{"errcode":48001,"errmsg":"api unauthorized rid: "#),
        "{body}"
    );
}

#[tokio::test]
async fn cli_imports_are_idempotent_and_refuse_bad_bodies_whole() {
    let (dir, db) = temp_db();
    let file = dir.path().join("summary.json");
    std::fs::write(&file, SUMMARY).unwrap();
    let file = file.to_str().unwrap();
    let args = [
        "import",
        "--appid",
        "wxaaaa000000000001",
        "--endpoint",
        "getusersummary",
        file,
    ];
    let (code, out, err) = run(&db, &args, None).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "getusersummary: 5 rows — 5 inserted, 0 updated, 0 unchanged\n"
    );
    assert!(err.contains("no account wxaaaa000000000001 yet"), "{err}");
    let (_, out, _) = run(&db, &args, None).await;
    assert_eq!(
        out,
        "getusersummary: 5 rows — 0 inserted, 0 updated, 5 unchanged\n"
    );
    // From standard input; one bad row refuses the whole body.
    let bad = r#"{"list":[{"ref_date":"2021-09-05","user_source":0,"new_user":3,"cancel_user":5},{"ref_date":"2021-09-06","user_source":1,"new_user":6}]}"#;
    let (code, out, err) = run(
        &db,
        &[
            "import",
            "--appid",
            "wxaaaa000000000001",
            "--endpoint",
            "getusersummary",
            "-",
        ],
        Some(bad),
    )
    .await;
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert!(
        err.contains("getusersummary body refused, nothing stored: row 2 (list[1]): field `cancel_user`: missing"),
        "{err}"
    );
    let (code, _, err) = run(
        &db,
        &[
            "import",
            "--appid",
            "wxaaaa000000000001",
            "--endpoint",
            "getnothing",
            file,
        ],
        None,
    )
    .await;
    // A usage error, as the README says (this asserted 1 before the commands were split).
    assert_eq!(code, 2);
    assert!(
        err.contains("\"getnothing\" is not a datacube endpoint"),
        "{err}"
    );
}

#[tokio::test]
async fn a_running_server_sees_rows_imported_by_the_cli() {
    let (dir, db) = db_with_account().await;
    let served = serve(&db, &[]).await;
    let t = &access_token(&served.base, "wxaaaa000000000001", "s3cret").await;
    let url = format!("{}/datacube/getusersummary?access_token={t}", served.base);
    let range = r#"{"begin_date":"2021-09-01","end_date":"2021-09-02"}"#;
    assert_eq!(post(url.clone(), range).await, r#"{"list":[]}"#);
    let file = dir.path().join("s.json");
    std::fs::write(&file, SUMMARY).unwrap();
    let (code, _, err) = run(
        &db,
        &[
            "import",
            "--appid",
            "wxaaaa000000000001",
            "--endpoint",
            "getusersummary",
            file.to_str().unwrap(),
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    // The server polls the store's change log every 0.1 s; allow it a second.
    let started = std::time::Instant::now();
    loop {
        let body = post(url.clone(), range).await;
        if body == SUMMARY {
            break;
        }
        assert_eq!(body, r#"{"list":[]}"#);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "import not seen within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let (_dir, db) = temp_db();
    let mut served = serve(&db, &[]).await;
    kill(&served.child, "-TERM");
    let exit = tokio::time::timeout(Duration::from_secs(15), served.child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn an_unsupported_database_url_is_named() {
    let (code, _, err) = run("mysql://localhost/x", &["account", "list"], None).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("unsupported database URL \"mysql://localhost/x\""),
        "{err}"
    );
    let (code, _, err) = run("mysql://me:pw-never-shown@h/x", &["account", "list"], None).await;
    assert_eq!(code, 1);
    assert!(err.contains("\"mysql://me:***@h/x\""), "{err}");
    assert!(!err.contains("pw-never-shown"), "{err}");
}

/// A database that cannot be opened is named once, its password hidden.
#[tokio::test]
async fn an_unreachable_database_is_named_once_without_its_password() {
    let url = "postgres://someone:pw-never-shown@127.0.0.1:1/nowhere";
    let (code, _, err) = run(url, &["account", "list"], None).await;
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.matches("127.0.0.1:1/nowhere").count(), 1, "{err}");
    assert!(
        err.contains("postgres://someone:***@127.0.0.1:1/nowhere"),
        "{err}"
    );
    assert!(!err.contains("pw-never-shown"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = format!("sqlite://{}/missing-dir/x.db", dir.path().display());
    let (code, _, err) = run(&file, &["account", "list"], None).await;
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.matches("missing-dir/x.db").count(), 1, "the URL: {err}");
    assert!(
        err.contains(&format!(
            "the directory {}/missing-dir does not exist",
            dir.path().display()
        )),
        "what is wrong with it: {err}"
    );
}

#[tokio::test]
async fn ingest_counts_events_reports_bad_lines_and_dedups_resends() {
    let (dir, db) = db_with_account().await;
    let events = [
        r#"{"type":"reply","appid":"wxaaaa000000000001","id":"1","time":"2026-06-01T09:00:00+08:00","cost_ms":200,"ok":true}"#,
        r#"{"type":"reply","appid":"wxaaaa000000000001","id":"2","time":"2026-06-01T09:30:00+08:00","cost_ms":5002}"#,
        r#"{"type":"reply","appid":"wxaaaa000000000001","id":"3","time":"2026-06-01T10:00:00+08:00","cost_ms":400,"ok":false}"#,
        r#"{"type":"reply","appid":"wxaaaa000000000001","id":"4","time":"2026-06-02T10:00:00+08:00","cost_ms":100,"ok":true}"#,
    ]
    .join("\n");
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, &events).unwrap();
    let file = file.to_str().unwrap();
    let (code, out, err) = run(&db, &["ingest", file], None).await;
    assert_eq!(
        code, 3,
        "a rejected line makes the run partial: exit code 3"
    );
    assert_eq!(out, "3 accepted, 0 duplicates, 1 rejected\n");
    assert!(err.contains("line 2: `ok` is missing"), "{err}");
    // Resending the same lines: the ids were accepted before.
    let (_, out, _) = run(&db, &["ingest", "-"], Some(&events)).await;
    assert_eq!(out, "0 accepted, 3 duplicates, 1 rejected\n");
    let served = serve(&db, &[]).await;
    let body = served
        .datacube(ACCOUNT, "getinterfacesummary", ("2026-06-01", "2026-06-02"))
        .await;
    assert_eq!(
        body,
        r#"{"list":[{"ref_date":"2026-06-01","callback_count":2,"fail_count":1,"total_time_cost":600,"max_time_cost":400},{"ref_date":"2026-06-02","callback_count":1,"fail_count":0,"total_time_cost":100,"max_time_cost":100}]}"#
    );
}

/// Line numbers stay right across batches, with blank lines, CRLF endings, a line that is
/// not UTF-8 and a last line without a newline.
#[tokio::test]
async fn ingest_numbers_lines_across_batches() {
    let (dir, db) = db_with_account().await;
    let reply = |id: u32| {
        format!(
            r#"{{"type":"reply","appid":"wxaaaa000000000001","id":"{id}","time":"2026-06-01T09:00:00+08:00","cost_ms":{id},"ok":true}}"#
        )
    };
    let mut bytes: Vec<u8> = Vec::new();
    bytes.extend(format!("{}\r\n\r\n{}\n", reply(1), reply(2)).as_bytes());
    bytes.extend(b"{\"type\":\"reply\",\"appid\":\"\xff\"}\n");
    bytes.extend(format!("{}\n{{\"type\":\"poke\"}}\n{}", reply(3), reply(4)).as_bytes());
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, &bytes).unwrap();
    let (code, out, err) = run(
        &db,
        &["ingest", "--batch", "2", file.to_str().unwrap()],
        None,
    )
    .await;
    assert_eq!(code, 3, "rejected lines: partial success");
    assert_eq!(out, "4 accepted, 0 duplicates, 2 rejected\n");
    assert!(err.contains("line 4: not UTF-8 text"), "{err}");
    assert!(err.contains("line 6: `appid` is missing"), "{err}");
    let served = serve(&db, &[]).await;
    let body = served
        .datacube(ACCOUNT, "getinterfacesummary", ("2026-06-01", "2026-06-01"))
        .await;
    assert_eq!(
        body,
        r#"{"list":[{"ref_date":"2026-06-01","callback_count":4,"fail_count":0,"total_time_cost":10,"max_time_cost":4}]}"#
    );
}

/// One batch of 300 reply events with unique ids, spread over 2026-06-01..06-10.
fn reply_batch(batch: usize) -> String {
    (0..300)
        .map(|i| {
            let day = 1 + (batch * 7 + i) % 10;
            format!(
                r#"{{"type":"reply","appid":"wxaaaa000000000001","id":"b{batch}-{i}","time":"2026-06-{day:02}T{:02}:00:00+08:00","cost_ms":{},"ok":true}}"#,
                i % 24,
                100 + i
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn events_acknowledged_before_a_sigkill_are_counted_exactly_once() {
    use rand::{Rng, SeedableRng};
    let (_dir, db) = db_with_account().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let client = reqwest::Client::new();
    let mut next_batch = 0usize;
    let mut unacknowledged: Vec<usize> = Vec::new();
    let mut acknowledged: Vec<usize> = Vec::new();
    for _kill in 0..8 {
        let mut served = serve(&db, &["--admin-token", "adm-token-for-tests"]).await;
        let base = served.base.clone();
        let client2 = client.clone();
        let first = next_batch;
        // Send batches one after another until the server dies; report what was acknowledged.
        let sender = tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut batch = first;
            loop {
                let resp = client2
                    .post(format!("{base}/admin/events"))
                    .bearer_auth("adm-token-for-tests")
                    .body(reply_batch(batch))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status() == 200 => {
                        let v: serde_json::Value = match r.json().await {
                            Ok(v) => v,
                            Err(_) => return (acked, batch),
                        };
                        assert_eq!(v["accepted"], 300, "a fresh batch is accepted whole");
                        acked.push(batch);
                        batch += 1;
                    }
                    _ => return (acked, batch),
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..400))).await;
        kill(&served.child, "-KILL");
        let _ = served.child.wait().await;
        let (acked, in_flight) = sender.await.unwrap();
        acknowledged.extend(acked);
        unacknowledged.push(in_flight);
        next_batch = in_flight + 1;
    }
    assert!(
        acknowledged.len() >= 8,
        "the server acknowledged batches between kills"
    );
    // Recovery: resend what was not acknowledged, and one acknowledged batch for good measure.
    let served = serve(
        &db,
        &[
            "--admin-token",
            "adm-token-for-tests",
            "--clock",
            "2026-06-20T09:00:00+08:00",
        ],
    )
    .await;
    let mut resent_new = 0;
    for batch in unacknowledged.iter().copied().chain([acknowledged[0]]) {
        let v: serde_json::Value = client
            .post(format!("{}/admin/events", served.base))
            .bearer_auth("adm-token-for-tests")
            .body(reply_batch(batch))
            .answer_json()
            .await;
        let (accepted, duplicates) = (
            v["accepted"].as_u64().unwrap(),
            v["duplicates"].as_u64().unwrap(),
        );
        assert_eq!(accepted + duplicates, 300);
        assert!(
            accepted == 0 || accepted == 300,
            "a batch is all in or all out: {v}"
        );
        resent_new += accepted;
    }
    // Every batch sent is now in, once.
    let batches = acknowledged.len() + unacknowledged.len();
    let body = served
        .datacube(ACCOUNT, "getinterfacesummary", ("2026-06-01", "2026-06-10"))
        .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let total: u64 = v["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["callback_count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        total,
        300 * batches as u64,
        "{batches} batches, {resent_new} events newly accepted on resend"
    );
}

#[tokio::test]
async fn demo_events_are_deterministic_and_ingestible() {
    let (dir, db) = temp_db();
    let args = [
        "demo",
        "--appid",
        "wxaaaa000000000001",
        "--days",
        "5",
        "--output",
        "-",
    ];
    let (code, first, _) = run(&db, &args, None).await;
    assert_eq!(code, 0);
    let (_, second, _) = run(&db, &args, None).await;
    assert_eq!(first, second, "the same seed gives the same events");
    let lines = first.lines().count();
    assert!(lines > 500, "{lines} events in 5 days");
    add_account(&db, "wxaaaa000000000001", "s3cret").await;
    let file = dir.path().join("demo.ndjson");
    std::fs::write(&file, &first).unwrap();
    let (code, out, err) = run(&db, &["ingest", file.to_str().unwrap()], None).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{lines} accepted, 0 duplicates, 0 rejected\n"));
    // `datacube demo` without --output ingests the same events: all duplicates now.
    let (code, out, _) = run(
        &db,
        &["demo", "--appid", "wxaaaa000000000001", "--days", "5"],
        None,
    )
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!("5 days of demo events for wxaaaa000000000001: 0 accepted, {lines} duplicates\n")
    );
}

/// `datacube export` of wx1's getarticlesummary of 2026-06-01 in `format`.
fn export_articles(format: &str) -> [&str; 11] {
    [
        "export",
        "--appid",
        "wx1",
        "--endpoint",
        "getarticlesummary",
        "--from",
        "2026-06-01",
        "--to",
        "2026-06-01",
        "--format",
        format,
    ]
}

/// A title that a spreadsheet would run as a formula is exported as text (OWASP's CSV
/// injection rule): `'` before `=`, `+`, `-`, `@`; JSON and NDJSON keep it as it is.
#[tokio::test]
async fn csv_exports_neutralise_formulas() {
    let (_dir, db) = temp_db();
    let body = r#"{"list":[{"ref_date":"2026-06-01","msgid":"1_1","title":"=HYPERLINK(\"http://evil.example\",\"x\")","int_page_read_user":1,"int_page_read_count":1,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":0,"share_count":0,"add_to_fav_user":0,"add_to_fav_count":0},{"ref_date":"2026-06-01","msgid":"1_2","title":"@SUM(A1)","int_page_read_user":2,"int_page_read_count":2,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":0,"share_count":0,"add_to_fav_user":0,"add_to_fav_count":0}]}"#;
    let import = [
        "import",
        "--appid",
        "wx1",
        "--endpoint",
        "getarticlesummary",
        "-",
    ];
    let (code, _, err) = run(&db, &import, Some(body)).await;
    assert_eq!(code, 0, "{err}");
    let export = |format: &'static str| {
        let db = db.clone();
        async move { run(&db, &export_articles(format), None).await.1 }
    };
    let csv = export("csv").await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[1],
        r#"2026-06-01,1_1,"'=HYPERLINK(""http://evil.example"",""x"")",,1,1,0,0,0,0,0,0"#
    );
    assert_eq!(lines[2], "2026-06-01,1_2,'@SUM(A1),,2,2,0,0,0,0,0,0");
    assert!(export("ndjson").await.contains(r#""title":"=HYPERLINK("#));
}

/// A reader that stops early (`datacube export … | head -1`) ends the export quietly, exit 0,
/// in every format — the CSV writer's broken pipe too.
#[tokio::test]
async fn an_export_read_in_part_ends_quietly() {
    let (_dir, db) = temp_db();
    let rows: Vec<String> = (0..4000)
        .map(|i| {
            format!(
                r#"{{"ref_date":"2026-06-01","msgid":"{i}_1","title":"an article with a title long enough {i}","int_page_read_user":1,"int_page_read_count":1,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":0,"share_count":0,"add_to_fav_user":0,"add_to_fav_count":0}}"#
            )
        })
        .collect();
    let body = format!(r#"{{"list":[{}]}}"#, rows.join(","));
    let import = [
        "import",
        "--appid",
        "wx1",
        "--endpoint",
        "getarticlesummary",
        "-",
    ];
    let (code, _, err) = run(&db, &import, Some(&body)).await;
    assert_eq!(code, 0, "{err}");
    for format in ["csv", "ndjson", "json"] {
        let mut child = datacube(&db)
            .args(export_articles(format))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 256];
        let n = tokio::io::AsyncReadExt::read(&mut stdout, &mut first)
            .await
            .unwrap();
        assert!(n > 0, "{format}: the export begins");
        drop(stdout);
        let out = child.wait_with_output().await.unwrap();
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned()
            ),
            (Some(0), String::new()),
            "{format}: a reader gone is not an error"
        );
    }
}

/// Usage errors of every command exit 2 with a message naming the flag, before anything is
/// opened (the database file is never created), and never repeat a secret given on the line.
#[tokio::test]
async fn usage_errors_exit_2_naming_the_flag_before_anything_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("never.db").display());
    let key = "a-wrong-aes-key-that-must-not-be-shown";
    let push = [
        "push",
        "--appid",
        "wx0000000000000001",
        "--url",
        "http://127.0.0.1:9/",
    ];
    let push = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut args = push.to_vec();
        args.extend_from_slice(&["--token", "t0ken"]);
        args.extend_from_slice(extra);
        args
    };
    let proxy = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut args = vec!["proxy", "--appid", "wx0000000000000001"];
        args.extend_from_slice(&["--upstream", "http://127.0.0.1:9"]);
        args.extend_from_slice(extra);
        args
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (push(&["--count", "1", "--timeout", "0"]), "--timeout"),
        (push(&["--count", "1", "--timeout", "soon"]), "--timeout"),
        (push(&[]), "--count"),
        (push(&["--count", "1", "--mode", "safe"]), "--aes-key"),
        (
            push(&[
                "--count",
                "1",
                "--aes-key",
                "a-wrong-aes-key-that-must-not-be-shown",
            ]),
            "--aes-key",
        ),
        (proxy(&["--workers", "0"]), "--workers"),
        (proxy(&["--idle-timeout", "0"]), "--idle-timeout"),
        (
            vec![
                "proxy",
                "--appid",
                "wx0000000000000001",
                "--upstream",
                "https://x",
            ],
            "--upstream",
        ),
        (
            vec![
                "export",
                "--appid",
                "wx0000000000000001",
                "--endpoint",
                "getusersummary",
            ]
            .into_iter()
            .chain(["--from", "2024-05-02", "--to", "2024-05-01"])
            .collect(),
            "--from",
        ),
        (
            vec!["export", "--appid", "wx1", "--endpoint", "getnothing"]
                .into_iter()
                .chain(["--from", "2024-05-01", "--to", "2024-05-01"])
                .collect(),
            "--endpoint",
        ),
        (
            vec![
                "import",
                "--appid",
                "wx0000000000000001",
                "--endpoint",
                "nope",
                "x.json",
            ],
            "--endpoint",
        ),
        (
            vec![
                "import",
                "--appid",
                "not an appid",
                "--endpoint",
                "getusersummary",
                "x.json",
            ],
            "--appid",
        ),
        (
            vec![
                "account",
                "add",
                "--appid",
                "not an appid",
                "--secret",
                "s3cret-long-enough",
            ],
            "appid",
        ),
        (
            vec!["demo", "--appid", "wx1", "--clock", "yesterday"],
            "--clock",
        ),
    ];
    for (args, flag) in &cases {
        let (code, out, err) = run(&db, args, None).await;
        assert_eq!(code, 2, "{args:?}: {err}{out}");
        assert!(err.contains(flag), "{args:?} names {flag}: {err}");
        assert!(!err.contains(key), "{args:?} repeats the key: {err}");
    }
    assert!(
        !dir.path().join("never.db").exists(),
        "nothing opened on a usage error"
    );
}

/// The SQLite database holds live tokens: made readable by its owner alone, with its `-wal`
/// and `-shm` files; one that others can read is said.
#[tokio::test]
async fn a_new_sqlite_database_is_readable_by_its_owner_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("owner.db");
    let db = format!("sqlite://{}", path.display());
    add_account(&db, "wxaaaa000000000001", "s3cret").await;
    let served = serve(&db, &[]).await;
    access_token(&served.base, "wxaaaa000000000001", "s3cret").await;
    for name in ["owner.db", "owner.db-wal", "owner.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}: {:o}", mode & 0o777);
    }
    drop(served);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = run(&db, &["account", "list"], None).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("can be read by other users"), "{err}");
}

/// `sqlite::memory:`: a database of the server alone, gone when it exits — tokens, events and
/// statistics work on it as on a file.
#[tokio::test]
async fn an_in_memory_database_serves_tokens_and_statistics() {
    let served = Serve::new("sqlite::memory:")
        .args(&["--demo", "--demo-days", "10"])
        .start()
        .await;
    let (appid, secret) = served.demo_account();
    let token = access_token(&served.base, &appid, &secret).await;
    let body = r#"{"begin_date":"2026-06-08","end_date":"2026-06-14"}"#;
    let summary = datacube_post(&served.base, &token, "getusersummary", body).await;
    assert!(
        summary.starts_with(r#"{"list":[{"ref_date":"2026-06-08""#),
        "{summary}"
    );
    let cumulate = datacube_post(&served.base, &token, "getusercumulate", body).await;
    assert_eq!(cumulate.matches("ref_date").count(), 7, "{cumulate}");
}
