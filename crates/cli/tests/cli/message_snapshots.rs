//! Snapshots (insta) of what `datacube` tells a user who got something wrong: the usage error
//! (exit 2) of each command given a bad or missing flag, and the messages of failures at run
//! time (a file that cannot be read, an account that is not there, a database that cannot be
//! opened). Exit code and stderr (and stdout when there is any); the files are in
//! `snapshots/`. Temporary paths are replaced by `[TMP]`. `--help` is not snapshotted: it
//! changes with every flag added.

use crate::common::*;

/// The command line as the snapshot's description: the temporary directory `tmp` shown as
/// `[TMP]`, the values of secret flags as `<secret>` (the snapshots hold no secret at all).
fn command(args: &[&str], tmp: &std::path::Path) -> String {
    let tmp = tmp.display().to_string();
    let mut shown = vec!["datacube".to_owned()];
    let mut hide = false;
    for arg in args {
        shown.push(if hide {
            "<secret>".to_owned()
        } else {
            arg.replace(&tmp, "[TMP]")
        });
        hide = ["--secret", "--aes-key", "--admin-token", "--token"].contains(arg);
    }
    shown.join(" ")
}

/// The exit code and what the command printed, with temporary paths made stable.
fn snap(name: &str, command: String, (code, out, err): (i32, String, String)) {
    let mut text = format!("exit: {code}\n");
    if !out.is_empty() {
        text.push_str("--- stdout\n");
        text.push_str(&out);
    }
    text.push_str("--- stderr\n");
    text.push_str(&err);
    insta::with_settings!({
        description => command,
        omit_expression => true,
        filters => vec![
            // tempfile's directories, wherever TMPDIR puts them.
            (r"(/[^\s/\x22']+)*/\.tmp[A-Za-z0-9]{6}", "[TMP]"),
        ],
    }, {
        insta::assert_snapshot!(name, text);
    });
}

/// Usage errors: exit 2, the flag named, and nothing opened (the database is never created).
#[tokio::test]
async fn usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("never.db").display());
    let missing = dir.path().join("missing").display().to_string();
    let settings = dir.path().join("datacube.toml");
    std::fs::write(&settings, "[serve]\nmax-conections = 10\n").unwrap();
    let settings = settings.display().to_string();
    let push = "push --appid wx0000000000000001 --url http://127.0.0.1:9/ --token t0ken";
    let proxy = "proxy --appid wx0000000000000001";
    let export = "export --appid wx0000000000000001 --endpoint getusersummary";
    let aes_key = "a-wrong-aes-key-that-must-not-be-shown";
    let aes = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    // (snapshot, command line split at spaces)
    let cases = [
        ("unknown_command", "frobnicate".to_owned()),
        ("serve_unknown_flag", "serve --bogus".into()),
        ("serve_bad_listen", "serve --listen localhost".into()),
        ("serve_threads_zero", "serve --threads 0".into()),
        ("serve_max_in_flight_zero", "serve --max-in-flight 0".into()),
        (
            "serve_bad_fault_rule",
            "serve --faults getusersummary:999@first1".into(),
        ),
        (
            "serve_short_admin_token",
            "serve --listen 127.0.0.1:0 --admin-token short".into(),
        ),
        (
            "serve_seed_not_a_directory",
            format!("serve --listen 127.0.0.1:0 --seed {missing}"),
        ),
        (
            "serve_mirror_config_unreadable",
            format!("serve --listen 127.0.0.1:0 --mirror {missing}.toml"),
        ),
        ("ingest_no_file", "ingest".into()),
        ("import_no_endpoint", "import --appid wx1 x.json".into()),
        (
            "import_unknown_endpoint",
            "import --appid wx1 --endpoint nope x.json".into(),
        ),
        ("sync_no_appid", "sync".into()),
        ("sync_no_secret", "sync --appid wx1".into()),
        (
            "sync_bad_from",
            "sync --appid wx1 --secret s --from 2024-13-01".into(),
        ),
        (
            "sync_unknown_endpoint",
            "sync --appid wx1 --secret s --endpoints getnothing".into(),
        ),
        (
            "sync_concurrency_zero",
            "sync --appid wx1 --secret s --concurrency 0".into(),
        ),
        (
            "sync_bad_upstream",
            "sync --appid wx1 --secret s --upstream ftp://x".into(),
        ),
        (
            "sync_daemon_without_mirror",
            "sync --daemon --appid wx1".into(),
        ),
        (
            "sync_mirror_unreadable",
            format!("sync --mirror {missing}.toml"),
        ),
        (
            "settings_file_unreadable",
            format!("sync --config {missing}.toml"),
        ),
        (
            "settings_file_unknown_key",
            format!("serve --config {settings}"),
        ),
        (
            "push_no_url_nor_token",
            "push --appid wx0000000000000001".into(),
        ),
        ("push_no_count", push.into()),
        (
            "push_bad_timeout",
            format!("{push} --count 1 --timeout soon"),
        ),
        (
            "push_safe_mode_without_aes_key",
            format!("{push} --count 1 --mode safe"),
        ),
        (
            "push_bad_aes_key",
            format!("{push} --count 1 --aes-key {aes_key}"),
        ),
        ("proxy_no_upstream", proxy.into()),
        (
            "proxy_https_upstream",
            format!("{proxy} --upstream https://x"),
        ),
        (
            "proxy_workers_zero",
            format!("{proxy} --upstream http://127.0.0.1:9 --workers 0"),
        ),
        ("export_no_range", export.into()),
        (
            "export_from_after_to",
            format!("{export} --from 2024-05-02 --to 2024-05-01"),
        ),
        (
            "export_unknown_format",
            format!("{export} --from 2024-05-01 --to 2024-05-01 --format xml"),
        ),
        ("account_unknown_subcommand", "account frobnicate".into()),
        ("account_add_no_secret", "account add --appid wx1".into()),
        (
            "account_add_bad_appid",
            "account add --appid wx!1 --secret s3cret-long-enough".into(),
        ),
        ("account_remove_no_appid", "account remove".into()),
        (
            "component_add_bad_token",
            format!(
                "component add --appid wxc1 --secret component-secret --token ab --aes-key {aes}"
            ),
        ),
    ];
    for (name, line) in &cases {
        let args: Vec<&str> = line.split(' ').collect();
        let answer = run(&db, &args, None).await;
        assert_eq!(answer.0, 2, "{name} {args:?}: {}{}", answer.2, answer.1);
        assert!(!answer.2.contains(aes_key), "{name} repeats the AES key");
        if args.contains(&"--admin-token") {
            assert!(!answer.2.contains("short"), "{name} repeats the token");
        }
        snap(name, command(&args, dir.path()), answer);
    }
    assert!(
        !dir.path().join("never.db").exists(),
        "nothing opened on a usage error"
    );
}

/// Failures at run time: exit 1 (3 for a partial ingest) and what went wrong, named once.
#[tokio::test]
async fn runtime_errors() {
    // SQLite whatever the suite runs on: the messages name the database.
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("cli.db").display());
    add_account(&db, ACCOUNT.0, ACCOUNT.1).await;
    let path = |name: &str| dir.path().join(name).display().to_string();
    let bad_row = path("bad.json");
    std::fs::write(&bad_row, r#"{"list":[{"ref_date":"2024-05-32"}]}"#).unwrap();
    let events = path("events.ndjson");
    std::fs::write(&events, "not json\n").unwrap();
    let missing = path("missing.json");
    let (appid, _) = ACCOUNT;
    let secret = "a-secret-that-must-never-be-shown";
    let cases: Vec<(&str, Vec<&str>, i32)> = vec![
        ("ingest_unreadable_file", vec!["ingest", &missing], 1),
        ("ingest_rejected_line", vec!["ingest", &events], 3),
        (
            "import_unreadable_file",
            vec![
                "import",
                "--appid",
                appid,
                "--endpoint",
                "getusersummary",
                &missing,
            ],
            1,
        ),
        (
            "import_bad_row",
            vec![
                "import",
                "--appid",
                appid,
                "--endpoint",
                "getusersummary",
                &bad_row,
            ],
            1,
        ),
        (
            "account_add_exists",
            vec!["account", "add", "--appid", appid, "--secret", secret],
            1,
        ),
        (
            "account_remove_unknown",
            vec!["account", "remove", "--appid", "wxnope"],
            1,
        ),
        (
            "demo_unknown_account",
            vec!["demo", "--appid", "wxnope", "--days", "1"],
            1,
        ),
        (
            "sync_upstream_unreachable",
            vec![
                "sync",
                "--appid",
                appid,
                "--secret",
                secret,
                "--upstream",
                "http://127.0.0.1:1",
                "--retries",
                "0",
                "--from",
                "2026-06-01",
            ],
            1,
        ),
    ];
    for (name, args, code) in cases {
        let answer = run(&db, &args, None).await;
        assert_eq!(answer.0, code, "{name} {args:?}: {}{}", answer.2, answer.1);
        assert!(!answer.2.contains(secret), "{name} shows the secret");
        snap(name, command(&args, dir.path()), answer);
    }
    // Databases that cannot be opened: named once, their password hidden.
    let missing_dir = format!("sqlite://{}/x.db", path("missing-dir"));
    let cases = [
        ("database_url_unsupported", "mysql://me:pw-never-shown@h/x"),
        (
            "database_unreachable",
            "postgres://someone:pw-never-shown@127.0.0.1:1/nowhere",
        ),
        ("database_directory_missing", missing_dir.as_str()),
    ];
    for (name, url) in cases {
        let answer = run(url, &["account", "list"], None).await;
        assert_eq!(answer.0, 1, "{name}: {}", answer.2);
        assert!(!answer.2.contains("pw-never-shown"), "{name}: {}", answer.2);
        let url = url
            .replace("pw-never-shown", "<password>")
            .replace(&dir.path().display().to_string(), "[TMP]");
        snap(
            name,
            format!("DATACUBE_DATABASE={url} datacube account list"),
            answer,
        );
    }
}
