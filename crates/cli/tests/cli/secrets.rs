//! No secret is ever shown (issue 18): every command runs with sentinel secrets — AppSecret,
//! component secret, ticket and tokens, push Token and EncodingAESKey, admin token, database
//! password — at the most verbose log level, through its error paths (unreachable upstream,
//! unreachable database, duplicate account, wrong credentials, bad input) and its `--help`
//! with the environment set, and no sentinel (nor an access token the server issued) shows in
//! any stdout, stderr or log line. With SQLite, and again with a PostgreSQL URL when the run
//! is on PostgreSQL.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

/// `datacube export` of two days of getusersummary.
const EXPORT: [&str; 9] = [
    "export",
    "--appid",
    APPID,
    "--endpoint",
    "getusersummary",
    "--from",
    "2026-06-01",
    "--to",
    "2026-06-02",
];
const APP_SECRET: &str = "SENTINELappsecret0123456789abcdef";
const COMPONENT_SECRET: &str = "SENTINELcomponentsecret00000001";
const TICKET: &str = "SENTINELticket0001";
const COMPONENT_TOKEN: &str = "SENTINELcomponenttoken0001";
const REFRESH_TOKEN: &str = "SENTINELrefreshtoken0001";
const PUSH_TOKEN: &str = "SENTINELpushtoken";
/// 43 characters, as an EncodingAESKey is.
const AES_KEY: &str = "SENTINELaeskeyabcdefghijklmnopqrstuvwxyz012";
const ADMIN: &str = "SENTINELadmintoken0123456789";
/// With `?` and `#` in it, as a generated password may have: typed raw into a URL, the driver
/// still reads it whole (its userinfo ends at the first `@`).
const DB_PASSWORD: &str = "SENTINEL?db#password";
const APPID: &str = "wx00000000000005e1";

/// Every output seen, with what produced it.
#[derive(Default)]
struct Outputs(Vec<(String, String)>);

impl Outputs {
    fn add(&mut self, what: &str, text: impl Into<String>) {
        self.0.push((what.to_owned(), text.into()));
    }

    /// Runs `datacube ARGS` with `env` and the log at trace; records stdout and stderr.
    async fn run(&mut self, what: &str, db: &str, args: &[&str], env: &[(&str, &str)]) -> i32 {
        let mut cmd = datacube(db);
        cmd.args(args)
            .env("DATACUBE_LOG", "trace")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().await.unwrap();
        self.add(
            &format!("{what} (stdout)"),
            String::from_utf8_lossy(&out.stdout),
        );
        self.add(
            &format!("{what} (stderr)"),
            String::from_utf8_lossy(&out.stderr),
        );
        out.status.code().unwrap_or(-1)
    }

    /// No output holds a sentinel, nor any of `also`.
    fn check(&self, also: &[String]) {
        assert!(self.0.len() > 40, "the commands ran: {}", self.0.len());
        for (what, text) in &self.0 {
            assert!(
                !text.contains("SENTINEL"),
                "{what} shows a secret:\n{}",
                text.lines()
                    .filter(|l| l.contains("SENTINEL"))
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            for secret in also {
                assert!(!text.contains(secret.as_str()), "{what} shows a token");
            }
        }
    }
}

/// The database URL of this run with the sentinel password in it: a PostgreSQL database of
/// this run's server (which trusts and ignores the password), or an SQLite file.
fn databases(dir: &std::path::Path) -> Vec<String> {
    let mut out = vec![format!("sqlite://{}", dir.join("secrets.db").display())];
    if datacube_store::testing::postgres_server().is_some() {
        let url = datacube_store::testing::fresh_database(dir, "secrets");
        out.push(url.replacen("://postgres@", &format!("://postgres:{DB_PASSWORD}@"), 1));
        assert!(out[1].contains(DB_PASSWORD), "{}", out[1]);
    }
    out
}

const UNREACHABLE_DB: &str =
    "postgres://dc:SENTINELdbpassword@127.0.0.1:9/datacube?password=SENTINELdbpassword";

#[tokio::test]
async fn no_command_shows_a_secret_at_any_log_level_or_in_any_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Outputs::default();
    let mut tokens = Vec::new();
    let env: Vec<(&str, &str)> = vec![
        ("DATACUBE_DATABASE", UNREACHABLE_DB),
        ("DATACUBE_ADMIN_TOKEN", ADMIN),
        ("DATACUBE_SECRET", APP_SECRET),
        ("DATACUBE_COMPONENT_SECRET", COMPONENT_SECRET),
        ("DATACUBE_COMPONENT_TICKET", TICKET),
        ("DATACUBE_COMPONENT_TOKEN", COMPONENT_TOKEN),
        ("DATACUBE_REFRESH_TOKEN", REFRESH_TOKEN),
        (
            "DATACUBE_UPSTREAM",
            "http://proxy:SENTINELupstreampw@127.0.0.1:9",
        ),
        ("DATACUBE_PUSH_TOKEN", PUSH_TOKEN),
        ("DATACUBE_PUSH_AES_KEY", AES_KEY),
    ];
    // --help with every variable set.
    for command in [
        &["serve"][..],
        &["sync"],
        &["push"],
        &["proxy"],
        &["account", "add"],
        &["component", "add"],
        &["import"],
        &["export"],
    ] {
        let args = [command, &["--help"]].concat();
        let code = seen.run(&args.join(" "), UNREACHABLE_DB, &args, &env).await;
        assert_eq!(code, 0);
    }
    // Every command against a database it cannot reach, named in every form the driver reads
    // a password from.
    for bad in [
        UNREACHABLE_DB,
        "postgres://dc:SENTINEL?dbpassword@127.0.0.1:9/datacube",
        "postgresql://dc:SENTINEL#db/password@127.0.0.1:9/datacube?sslmode=disable",
        "postgres://dc@127.0.0.1:9/datacube?pass%77ord=SENTINELdbpassword",
        "host=127.0.0.1 port=9 password = SENTINELdbpassword dbname=datacube",
    ] {
        let code = seen
            .run(
                &format!("account list on {bad:.12}"),
                bad,
                &["account", "list"],
                &[],
            )
            .await;
        assert_ne!(code, 0, "{bad}");
    }
    // An upstream URL that does not parse, with a password in it.
    for upstream in [
        "http://proxy:SENTINELupstreampw@ho st:80",
        "http://proxy:SENTINEL?upstreampw@host:99999",
    ] {
        let sync = [
            "sync",
            "--appid",
            APPID,
            "--secret",
            APP_SECRET,
            "--upstream",
            upstream,
        ];
        let code = seen
            .run("sync, bad upstream URL", UNREACHABLE_DB, &sync, &[])
            .await;
        assert_eq!(code, 2, "{upstream}");
    }
    let bad = UNREACHABLE_DB;
    for args in [
        &["account", "add", "--appid", APPID, "--secret", APP_SECRET][..],
        &["account", "list"],
        &["component", "list"],
        &[
            "import",
            "--appid",
            APPID,
            "--endpoint",
            "getusersummary",
            "-",
        ],
        &["ingest", "-"],
        &EXPORT,
        &[
            "sync",
            "--appid",
            APPID,
            "--secret",
            APP_SECRET,
            "--upstream",
            "http://127.0.0.1:9",
        ],
        &["serve", "--listen", "127.0.0.1:0", "--admin-token", ADMIN],
    ] {
        let code = seen
            .run(&format!("{args:?} on a bad database"), bad, args, &[])
            .await;
        assert_ne!(code, 0, "{args:?}");
    }
    let reported = &seen.0.last().unwrap().1;
    assert!(
        reported.contains("postgres://dc:***@127.0.0.1:9/datacube?password=***"),
        "{reported}"
    );

    for db in databases(dir.path()) {
        let db = db.as_str();
        let on = |what: &str| format!("{what} on {}", &db[..8]);
        // Accounts and components, twice (the second time: already exists).
        for _ in 0..2 {
            seen.run(
                &on("account add"),
                db,
                &["account", "add", "--appid", APPID, "--secret", APP_SECRET],
                &[],
            )
            .await;
            let component = [
                "component",
                "add",
                "--appid",
                "wxc00000000000005e",
                "--secret",
                COMPONENT_SECRET,
                "--token",
                PUSH_TOKEN,
                "--aes-key",
                AES_KEY,
            ];
            seen.run(&on("component add"), db, &component, &[]).await;
        }
        seen.run(&on("account list"), db, &["account", "list"], &[])
            .await;
        seen.run(&on("component list"), db, &["component", "list"], &[])
            .await;
        seen.run(
            &on("import"),
            db,
            &[
                "import",
                "--appid",
                APPID,
                "--endpoint",
                "getusersummary",
                "/nonexistent",
            ],
            &[],
        )
        .await;
        seen.run(&on("export"), db, &EXPORT, &[]).await;

        // serve, at trace, with calls that carry the secret, tokens and the admin token.
        let server = Serve::new(db)
            .args(&["--admin-token", ADMIN])
            .log("trace")
            .stderr()
            .start()
            .await;
        let base = server.base.clone();
        let token = access_token(&base, APPID, APP_SECRET).await;
        tokens.push(token.clone());
        datacube_post(
            &base,
            &token,
            "getusersummary",
            r#"{"begin_date":"2026-06-01","end_date":"2026-06-02"}"#,
        )
        .await;
        let wrong: serde_json::Value = token_json(&base, APPID, "SENTINELwrongsecret").await;
        assert_eq!(wrong["errcode"], 40125);
        let http = reqwest::Client::new();
        for bearer in [ADMIN, "SENTINELwrongadmintoken"] {
            http.get(format!("{base}/admin/accounts"))
                .bearer_auth(bearer)
                .send()
                .await
                .unwrap();
        }
        // sync from it, with the right secret, a wrong one, and as a component.
        let upstream = [
            "--upstream",
            base.as_str(),
            "--from",
            "2026-06-10",
            "--endpoints",
            "getusersummary",
        ];
        let mirror = format!("sqlite://{}", dir.path().join("mirror.db").display());
        seen.run(
            &on("sync"),
            &mirror,
            &[
                &["sync", "--appid", APPID, "--secret", APP_SECRET][..],
                &upstream,
            ]
            .concat(),
            &[],
        )
        .await;
        seen.run(
            &on("sync, wrong secret"),
            &mirror,
            &[
                &["sync", "--appid", APPID, "--secret", "SENTINELwrong"][..],
                &upstream,
            ]
            .concat(),
            &[],
        )
        .await;
        seen.run(
            &on("sync as a component"),
            &mirror,
            &[
                &[
                    "sync",
                    "--component-appid",
                    "wxc00000000000005e",
                    "--component-secret",
                    COMPONENT_SECRET,
                    "--component-ticket",
                    TICKET,
                    "--report",
                    "json",
                ][..],
                &upstream,
            ]
            .concat(),
            &[],
        )
        .await;
        seen.run(
            &on("sync, unreachable upstream"),
            &mirror,
            &[
                "sync",
                "--appid",
                APPID,
                "--secret",
                APP_SECRET,
                "--upstream",
                "http://u:SENTINELupstreampw@127.0.0.1:9",
                "--retries",
                "1",
            ],
            &[],
        )
        .await;
        seen.run(
            &on("sync --status"),
            &mirror,
            &["sync", "--status", "--report", "json"],
            &[],
        )
        .await;
        kill(&server.child, "-TERM");
        let out = server.child.wait_with_output().await.unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(log.contains("datacube serving"), "{log}");
        if db.starts_with("postgres") {
            assert!(
                log.contains("postgres://postgres:***@"),
                "the database is named, redacted"
            );
        }
        seen.add(&on("serve (stderr)"), log);
        let rest = server.later.await.unwrap();
        seen.add(
            &on("serve (stdout)"),
            server.stdout.join("\n") + "\n" + &rest,
        );

        // push to the developer's server directly and through proxy, in safe mode.
        let dev = dev_server(PUSH_TOKEN, AES_KEY, APPID).await;
        let push = |url: String| {
            vec![
                "push".to_owned(),
                "--appid".into(),
                APPID.into(),
                "--url".into(),
                url,
                "--token".into(),
                PUSH_TOKEN.into(),
                "--aes-key".into(),
                AES_KEY.into(),
                "--mode".into(),
                "safe".into(),
                "--count".into(),
                "5".into(),
            ]
        };
        let direct = push(dev.url());
        let direct: Vec<&str> = direct.iter().map(String::as_str).collect();
        assert_eq!(seen.run(&on("push"), db, &direct, &[]).await, 0);
        let unreachable = push("http://127.0.0.1:9/wechat".into());
        let unreachable: Vec<&str> = unreachable.iter().map(String::as_str).collect();
        seen.run(&on("push, unreachable"), db, &unreachable, &[])
            .await;

        let port = free_port();
        let proxy = datacube(db)
            .args([
                "proxy",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--workers",
                "1",
            ])
            .args([
                "--upstream",
                &format!("http://127.0.0.1:{}", dev.port),
                "--appid",
                APPID,
            ])
            .args(["--token", PUSH_TOKEN, "--aes-key", AES_KEY])
            .env("DATACUBE_LOG", "trace")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let through = push(format!("http://127.0.0.1:{port}/wechat"));
        let through: Vec<&str> = through.iter().map(String::as_str).collect();
        seen.run(&on("push through proxy"), db, &through, &[]).await;
        kill(&proxy, "-INT");
        let out = tokio::time::timeout(Duration::from_secs(20), proxy.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let summary = String::from_utf8_lossy(&out.stdout);
        assert!(
            summary.contains("recorded"),
            "the proxy's summary: {summary}"
        );
        seen.add(&on("proxy (stdout)"), summary);
        seen.add(&on("proxy (stderr)"), String::from_utf8_lossy(&out.stderr));
    }
    seen.check(&tokens);
}

async fn token_json(base: &str, appid: &str, secret: &str) -> serde_json::Value {
    token(base, appid, secret).await.json().await.unwrap()
}

/// An admin token too short to resist guessing, or of white space only, is a usage error that
/// does not repeat it; an empty one leaves the admin API off.
#[tokio::test]
async fn a_weak_admin_token_is_refused_before_anything_opens() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("never.db").display());
    for weak in [
        "SENTINELshort",
        "                    ",
        "SENTINEL with spaces in it",
    ] {
        let (code, _, err) = run(&db, &["serve", "--admin-token", weak], None).await;
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("an admin token is at least 16 characters"),
            "{err}"
        );
        assert!(!err.contains("SENTINEL"), "{err}");
    }
    assert!(!dir.path().join("never.db").exists(), "nothing was opened");
}
