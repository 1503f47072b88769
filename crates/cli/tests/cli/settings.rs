//! The settings file (`--config FILE` or `DATACUBE_CONFIG`), under the environment and the
//! flags: what each command runs with, the errors naming the file's key, and secrets kept out
//! of both.

use std::path::Path;

use crate::common::{datacube, run, temp_db, token, Serve};

/// `datacube ARGS --show-config` with the settings file `file` and the environment `env`.
async fn show(db: &str, file: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let mut cmd = datacube(db);
    cmd.env("DATACUBE_CONFIG", file)
        .args(args)
        .arg("--show-config");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// The line of `--show-config` for `key`.
fn line<'a>(shown: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key} = ");
    shown
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {key} in:\n{shown}"))
}

/// For a setting of each command that has settings: the file's value, the environment's over
/// it, the flag's over both — as the command reports it with `--show-config`.
#[tokio::test]
async fn each_command_takes_a_setting_from_the_file_then_the_environment_then_a_flag() {
    let (dir, db) = temp_db();
    // (the command and what it needs, the setting, its environment variable, three values)
    let cases: [(&[&str], &str, &str, [&str; 3]); 5] = [
        (
            &["serve"],
            "max-in-flight",
            "DATACUBE_MAX_IN_FLIGHT",
            ["100", "200", "300"],
        ),
        (
            &["serve"],
            "header-timeout",
            "DATACUBE_HEADER_TIMEOUT",
            ["3s", "4", "5m"],
        ),
        (
            &["sync", "--appid", "wx1", "--secret", "s"],
            "upstream",
            "DATACUBE_UPSTREAM",
            ["http://a.example", "http://b.example", "http://c.example"],
        ),
        (
            &[
                "push",
                "--appid",
                "wx1",
                "--url",
                "http://127.0.0.1:1/",
                "--token",
                "t",
            ],
            "metrics-listen",
            "DATACUBE_PUSH_METRICS_LISTEN",
            ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"],
        ),
        (
            &[
                "proxy",
                "--upstream",
                "http://127.0.0.1:1/",
                "--appid",
                "wx1",
            ],
            "max-connections",
            "DATACUBE_PROXY_MAX_CONNECTIONS",
            ["10", "20", "30"],
        ),
    ];
    for (args, key, env, [file_value, env_value, flag_value]) in cases {
        let section = args[0];
        let file = dir.path().join(format!("{section}-{key}.toml"));
        std::fs::write(&file, format!("[{section}]\n{key} = {file_value:?}\n")).unwrap();
        let hidden = key == "upstream"; // an upstream URL may carry credentials
        let value = |v: &str| {
            if hidden {
                "\"***\"".to_owned()
            } else {
                format!("{v:?}")
            }
        };
        let number = |v: &str| {
            if v.parse::<u64>().is_ok() {
                v.to_owned()
            } else {
                value(v)
            }
        };

        let from_file = show(&db, &file, &[], args).await;
        assert_eq!(
            line(&from_file, key),
            format!("{key} = {}  # file", number(file_value)),
            "{section}"
        );
        let from_env = show(&db, &file, &[(env, env_value)], args).await;
        assert_eq!(
            line(&from_env, key),
            format!("{key} = {}  # {env}", number(env_value)),
            "{section}"
        );
        let mut with_flag = args.to_vec();
        let flag = format!("--{key}");
        with_flag.extend([flag.as_str(), flag_value]);
        let from_flag = show(&db, &file, &[(env, env_value)], &with_flag).await;
        assert_eq!(
            line(&from_flag, key),
            format!("{key} = {}  # --{key}", number(flag_value)),
            "{section}"
        );
    }
}

/// What the file says changes what the server does, and the environment and a flag override
/// it: WeChat's errmsg ends as `errmsg-suffix` says.
#[tokio::test]
async fn the_server_answers_as_its_settings_file_says_unless_overridden() {
    let (dir, db) = temp_db();
    let file = dir.path().join("datacube.toml");
    std::fs::write(&file, "[serve]\nerrmsg-suffix = \"none\"\n").unwrap();
    let file = file.to_str().unwrap();
    let errmsg = |served: &crate::common::Served| {
        let base = served.base.clone();
        async move {
            let v: serde_json::Value = token(&base, "wx0000000000000000", "nope")
                .await
                .json()
                .await
                .unwrap();
            v["errmsg"].as_str().unwrap().to_owned()
        }
    };
    let served = Serve::new(&db).args(&["--config", file]).start().await;
    let said = errmsg(&served).await;
    assert!(!said.contains("rid"), "{said}");
    drop(served);
    let served = Serve::new(&db)
        .args(&["--config", file])
        .env("DATACUBE_ERRMSG_SUFFIX", "comma-rid")
        .start()
        .await;
    let said = errmsg(&served).await;
    assert!(said.contains(", rid: "), "{said}");
    drop(served);
    let served = Serve::new(&db)
        .args(&["--config", file, "--errmsg-suffix", "rid"])
        .env("DATACUBE_ERRMSG_SUFFIX", "comma-rid")
        .start()
        .await;
    let said = errmsg(&served).await;
    assert!(said.contains(" rid: ") && !said.contains(", rid"), "{said}");
}

/// `sync` plans the endpoints its settings name; a flag overrides them.
#[tokio::test]
async fn sync_plans_what_its_settings_file_names() {
    let (dir, db) = temp_db();
    let file = dir.path().join("datacube.toml");
    std::fs::write(
        &file,
        "[sync]\nendpoints = [\"getusersummary\", \"getupstreammsg\"]\ncall_retries = 3\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let args = [
        "--config",
        file,
        "sync",
        "--appid",
        "wx1",
        "--secret",
        "s",
        "--dry-run",
        "--from",
        "2024-01-01",
        "--to",
        "2024-01-10",
    ];
    let (code, out, err) = run(&db, &args, None).await;
    assert_eq!(code, 0, "{err}");
    let planned: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(planned, ["getusersummary", "getupstreammsg"], "{out}");
    let mut overridden = args.to_vec();
    overridden.extend(["--endpoints", "getusercumulate"]);
    let (code, out, err) = run(&db, &overridden, None).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("getusercumulate") && !out.contains("getusersummary"),
        "{out}"
    );
}

/// A key no command takes, a wrong type, a bad value: exit 2 naming the file and the key,
/// before anything is opened.
#[tokio::test]
async fn a_bad_settings_file_is_a_usage_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let never = dir.path().join("never.db");
    let db = format!("sqlite://{}", never.display());
    let cases = [
        (
            "[serve]\nlistn = \"127.0.0.1:1\"\n",
            "`serve.listn` (did you mean `listen`?)",
        ),
        ("bogus = 1\n", "unknown key `bogus`"),
        (
            "[serve]\nmax-connections = \"many\"\n",
            "`serve.max-connections` = \"many\"",
        ),
        (
            "[serve]\ndemo = \"yes\"\n",
            "`serve.demo` is a switch: true or false",
        ),
        (
            "[sync]\nendpoints = [\"getnothing\"]\n",
            "\"getnothing\" is not a datacube endpoint",
        ),
        (
            "[serve]\nlisten = [\"127.0.0.1:1\"]\n",
            "`serve.listen` takes one value, not a list",
        ),
        (
            "[serve]\nheader-timeout = \"0s\"\n",
            "`serve.header-timeout`",
        ),
        (
            "name = \"acme\"\n[[account]]\nappid = \"wx1\"\n",
            "this looks like a mirror's configuration",
        ),
        ("[serve\n", "not TOML: line 1, column 7"),
    ];
    for (text, named) in cases {
        let file = dir.path().join("datacube.toml");
        std::fs::write(&file, text).unwrap();
        let file = file.to_str().unwrap();
        for args in [
            &["serve", "--config", file][..],
            &["sync", "--config", file, "--status"],
        ] {
            // Every table is checked, whichever command runs.
            let (code, _, err) = run(&db, args, None).await;
            assert_eq!(code, 2, "{text}: {err}");
            assert!(err.contains(named), "{text}: {err}");
            assert!(err.contains("datacube.toml"), "{text}: {err}");
        }
    }
    let (code, _, err) = run(
        &db,
        &["serve", "--config", "/nonexistent/datacube.toml"],
        None,
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/datacube.toml"), "{err}");
    assert!(!never.exists(), "a usage error opened the database");
}

/// Secrets in a settings file are never shown: not by `--show-config`, not in an error about
/// their value; a file others can read that holds one is warned about.
#[tokio::test]
async fn a_settings_file_never_shows_its_secrets() {
    let (dir, db) = temp_db();
    let file = dir.path().join("datacube.toml");
    std::fs::write(
        &file,
        "database = \"postgres://datacube:hunter2hunter2@127.0.0.1:1/x\"\n\
         [serve]\nadmin-token = \"admin-secret-0123456789\"\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut cmd = datacube(&db);
    cmd.env_remove("DATACUBE_DATABASE").args([
        "serve",
        "--config",
        file.to_str().unwrap(),
        "--show-config",
    ]);
    let out = cmd.output().await.unwrap();
    let shown = String::from_utf8(out.stdout).unwrap();
    assert_eq!(line(&shown, "admin-token"), "admin-token = \"***\"  # file");
    assert_eq!(
        line(&shown, "database"),
        "database = \"postgres://datacube:***@127.0.0.1:1/x\"  # file"
    );
    assert!(
        !shown.contains("hunter2") && !shown.contains("admin-secret"),
        "{shown}"
    );

    // Values refused: the errors name the setting, never the secret.
    for (text, named) in [
        (
            "[serve]\nadmin-token = \"hunter2 hunter2 hunter2\"\n",
            "--admin-token: an admin token",
        ),
        (
            "[serve]\nadmin-token = [\"hunter2hunter2hunter2\"]\n",
            "`serve.admin-token` takes one value",
        ),
        (
            "database = \"mysql://root:hunter2hunter2@db/x\"\n",
            "mysql://root:***@db/x",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let mut cmd = datacube(&db);
        cmd.env_remove("DATACUBE_DATABASE").args([
            "serve",
            "--database-wait",
            "0",
            "--config",
            file.to_str().unwrap(),
        ]);
        let out = cmd.output().await.unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_ne!(out.status.code(), Some(0), "{err}");
        assert!(err.contains(named), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    // Readable by others and holding the admin token: a warning, the token not in it.
    std::fs::write(
        &file,
        "[serve]\nadmin-token = \"admin-secret-0123456789\"\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut served = Serve::new(&db)
        .args(&["--config", file.to_str().unwrap()])
        .stderr()
        .start()
        .await;
    let log = served.stderr_log();
    served.child.start_kill().unwrap();
    served.child.wait().await.unwrap();
    let log = log.await.unwrap();
    assert!(
        log.contains("holds `serve.admin-token` and other users can read it"),
        "{log}"
    );
    assert!(!log.contains("admin-secret"), "{log}");
}

/// Where a file and a command line meet: a command's table wins over the top of the file
/// whatever their order; a flag that conflicts with a file's setting wins over it; a switch
/// the file turns on is turned off by `--switch=false`; a list can be one text as on the
/// command line; the mirror named by `[sync] mirror` is run without `--appid`.
#[tokio::test]
async fn a_settings_file_gives_way_where_a_user_expects() {
    let (dir, db) = temp_db();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    // `timeout` sorts after `sync`, `concurrency` before: the table wins both.
    let file = write(
        "order.toml",
        "timeout = \"7s\"\nconcurrency = 2\n[sync]\ntimeout = \"3s\"\nconcurrency = 3\n",
    );
    let shown = show(&db, &file, &[], &["sync", "--appid", "a", "--secret", "b"]).await;
    assert_eq!(line(&shown, "timeout"), "timeout = \"3s\"  # file");
    assert_eq!(line(&shown, "concurrency"), "concurrency = 3  # file");
    // …and the top's value holds for the other commands.
    let shown = show(&db, &file, &[], &["healthcheck"]).await;
    assert_eq!(line(&shown, "timeout"), "timeout = \"7s\"  # file");

    let file = write("push.toml", "[push]\ncount = 100\n");
    let args = [
        "push",
        "--appid",
        "a",
        "--token",
        "t",
        "--url",
        "http://127.0.0.1:1/",
    ];
    let shown = show(
        &db,
        &file,
        &[],
        &[&args[..], &["--duration", "5s"]].concat(),
    )
    .await;
    assert!(shown.contains("# count: not set"), "{shown}");
    assert_eq!(line(&shown, "duration"), "duration = \"5s\"  # --duration");

    let file = write("switch.toml", "[serve]\nretire-legacy-articles = true\n");
    let shown = show(&db, &file, &[], &["serve"]).await;
    assert_eq!(
        line(&shown, "retire-legacy-articles"),
        "retire-legacy-articles = true  # file"
    );
    let shown = show(
        &db,
        &file,
        &[],
        &["serve", "--retire-legacy-articles=false"],
    )
    .await;
    assert_eq!(
        line(&shown, "retire-legacy-articles"),
        "retire-legacy-articles = false  # --retire-legacy-articles"
    );

    let file = write(
        "list.toml",
        "[sync]\nendpoints = \"getusersummary,getusercumulate\"\n",
    );
    let shown = show(&db, &file, &[], &["sync", "--appid", "a", "--secret", "b"]).await;
    assert_eq!(
        line(&shown, "endpoints"),
        "endpoints = [\"getusersummary\", \"getusercumulate\"]  # file"
    );

    let mirror = write(
        "mirror.toml",
        "name = \"m\"\nendpoints = [\"getusersummary\"]\n[[account]]\nappid = \"wx1\"\nsecret = \"s\"\n",
    );
    let file = write(
        "sync.toml",
        &format!("[sync]\nmirror = {:?}\n", mirror.display().to_string()),
    );
    let file = file.to_str().unwrap();
    let (code, out, err) = run(
        &db,
        &[
            "--config",
            file,
            "sync",
            "--dry-run",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-10",
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("sync of wx1 from 2024-01-01"), "{out}");
}

/// `--help` shows a file's values as defaults, but never a secret's; a file that is not TOML
/// is said to be so, where, without quoting the line (it may hold a secret).
#[tokio::test]
async fn help_and_parse_errors_never_quote_a_files_secrets() {
    let (dir, db) = temp_db();
    let file = dir.path().join("datacube.toml");
    std::fs::write(
        &file,
        "[serve]\nadmin-token = \"hunter2hunter2hunter2\"\ndatabase = \"postgres://u:hunter2pw@h/db\"\nlisten = \"127.0.0.1:9999\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let (code, help, err) = run(&db, &["--config", file, "serve", "--help"], None).await;
    assert_eq!(code, 0, "{err}");
    assert!(help.contains("[default: 127.0.0.1:9999]"), "{help}");
    assert!(!help.contains("hunter2"), "{help}");
    for text in [
        "[serve]\nadmin-token = \"hunter2-unterminated\n",
        "[serve]\nadmin-token = \"hunter2a\"\nadmin-token = \"hunter2b\"\n",
        "[serve]\nadmin-token = hunter2-bare\n",
    ] {
        std::fs::write(dir.path().join("datacube.toml"), text).unwrap();
        let (code, _, err) = run(&db, &["--config", file, "serve"], None).await;
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("not TOML: line "), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
