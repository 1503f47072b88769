//! Health checks: `/healthz`, `/readyz` and `datacube healthcheck`, against a PostgreSQL
//! cluster this test starts (and stops) itself.

use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use crate::common::*;

async fn get(url: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

async fn healthcheck(base: &str) -> (i32, String) {
    let (code, out, err) = run(
        "sqlite://unused",
        &["healthcheck", "--url", &format!("{base}/readyz")],
        None,
    )
    .await;
    (code, out + &err)
}

/// Waits up to 30 s for `/readyz` to answer `status`.
async fn wait_ready(base: &str, status: u16) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let (got, body) = get(&format!("{base}/readyz")).await;
        if got == status {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "/readyz still answers {got} {body}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn readyz_follows_the_database_and_healthz_the_process() {
    const PASSWORD: &str = "pw-never-shown-7731";
    let cluster = Cluster::start();
    // The cluster offers no TLS: libpq's default, prefer, falls back to plaintext — said once;
    // with sslmode=disable it is what was asked, and nothing is said.
    let (code, _, err) = run(&cluster.url(PASSWORD), &["account", "list"], None).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("not encrypted"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
    let plain = format!("{}?sslmode=disable", cluster.url(PASSWORD));
    let (code, _, err) = run(&plain, &["account", "list"], None).await;
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("not encrypted"), "{err}");
    let served = serve(&cluster.url(PASSWORD), &[]).await;
    let base = served.base.clone();

    let (status, body) = get(&format!("{base}/healthz")).await;
    assert_eq!((status, body), (200, serde_json::json!({"status": "ok"})));
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"status": "ready"}))
    );
    let (code, out) = healthcheck(&base).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, format!("{base}/readyz: ready\n"));
    // The address alone, as people type it: its /readyz is asked.
    let (code, out, err) = run("sqlite://unused", &["healthcheck", "--url", &base], None).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{base}/readyz: ready\n"));

    // The database goes away: not ready, with the reason; the process is still healthy.
    cluster.down();
    let started = Instant::now();
    let body = wait_ready(&base, 503).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "503 within the readiness timeout"
    );
    assert_eq!(body["status"], "unavailable", "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.contains("database"), "{reason}");
    assert!(!reason.contains(PASSWORD), "{reason}");
    let (status, _) = get(&format!("{base}/healthz")).await;
    assert_eq!(status, 200);
    let (code, out) = healthcheck(&base).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("HTTP 503") && out.contains("database"),
        "{out}"
    );
    assert!(!out.contains(PASSWORD), "{out}");

    // Back: ready again, without restarting datacube.
    cluster.up();
    wait_ready(&base, 200).await;
    let (code, out) = healthcheck(&base).await;
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn healthcheck_names_what_is_wrong() {
    let (dir, db) = temp_db();
    let served = serve(&db, &[]).await;
    // A WeChat path answers HTTP 200 with an error code: not a health answer.
    let (code, _, err) = run(
        &db,
        &[
            "healthcheck",
            "--url",
            &format!(
                "{}/cgi-bin/nothing?access_token=tok-secret-123",
                served.base
            ),
        ],
        None,
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("not a health answer"), "{err}");
    assert!(!err.contains("tok-secret-123"), "{err}");
    // Nobody listening.
    let (code, _, err) = run(&db, &["healthcheck", "--listen", "127.0.0.1:9"], None).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("http://127.0.0.1:9/readyz: cannot connect"),
        "{err}"
    );
    // Usage errors exit 2.
    for args in [
        &["healthcheck", "--url", "ftp://example.com/"][..],
        &["healthcheck", "--timeout", "0"],
    ] {
        let (code, _, err) = run(&db, args, None).await;
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    drop(dir);
}

/// A server that answers every connection with `answer` (then, with `stream`, megabytes of
/// body without end); returns its address.
async fn hostile_health(answer: &'static [u8], stream: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = s.read(&mut head).await;
                let _ = s.write_all(answer).await;
                let block = vec![b'x'; 1 << 20];
                while stream && s.write_all(&block).await.is_ok() {}
            });
        }
    });
    addr
}

/// `healthcheck` against answers a hostile or broken server might give: a redirect is not
/// followed, an endless body is read 64 KiB, a reason with terminal escapes and line breaks is
/// quoted escaped, and a proxy in the environment is not used.
#[tokio::test]
async fn healthcheck_takes_no_more_than_it_needs_and_repeats_nothing_raw() {
    let check = |url: String, env: Option<(&'static str, &'static str)>| async move {
        let mut cmd = datacube("sqlite://unused");
        cmd.args(["healthcheck", "--url", &url, "--timeout", "3"]);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().await.unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // A redirect to a server that would say "ready": not followed.
    let ready = hostile_health(
        b"HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\n{\"status\":\"ready\"}",
        false,
    )
    .await;
    let location: &'static str = Box::leak(
        format!(
            "HTTP/1.1 302 Found\r\nLocation: http://{ready}/readyz\r\nContent-Length: 0\r\n\r\n"
        )
        .into_boxed_str(),
    );
    let redirect = hostile_health(location.as_bytes(), false).await;
    let (code, out) = check(format!("http://{redirect}/readyz"), None).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("HTTP 302"), "{out}");
    // An endless body: read 64 KiB, answered within the timeout.
    let endless = hostile_health(b"HTTP/1.1 503 Service Unavailable\r\n\r\n", true).await;
    let started = Instant::now();
    let (code, out) = check(format!("http://{endless}/readyz"), None).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(out.len() < 1000, "{} bytes: {}", out.len(), &out[..300]);
    // A reason with an escape sequence and a forged line.
    let forged = hostile_health(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 64\r\n\r\n{\"status\":\"x\",\"reason\":\"\\u001b[2Jok\\nready: all good\"}      ",
        false,
    )
    .await;
    let (code, out) = check(format!("http://{forged}/readyz"), None).await;
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(!out.contains("\nready: all good"), "one line: {out:?}");
    // A proxy in the environment that does not exist: the server is asked directly.
    let (code, out) = check(
        format!("http://{ready}/readyz"),
        Some(("HTTP_PROXY", "http://127.0.0.1:9")),
    )
    .await;
    assert_eq!(code, 0, "{out}");
}

/// Starts `serve --demo` with logs at info on stderr (text or JSON); returns the child, its
/// base URL and the demo account's secret.
async fn serve_logging(
    db: &str,
    json: bool,
    extra: &[&str],
) -> (tokio::process::Child, String, String, String) {
    let mut serve = Serve::new(db)
        .args(&["--demo", "--demo-days", "3"])
        .args(extra)
        .log("info")
        .stderr();
    if json {
        serve = serve.env("DATACUBE_LOG_FORMAT", "json");
    }
    let served = serve.start().await;
    let (appid, secret) = served.demo_account();
    (served.child, served.base, appid, secret)
}

async fn stderr_of(mut child: tokio::process::Child) -> String {
    use tokio::io::AsyncReadExt;
    let _ = child.start_kill();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    let _ = child.wait().await;
    err
}

async fn some_requests(base: &str, appid: &str, secret: &str) -> String {
    let token = access_token(base, appid, secret).await;
    let body = datacube_post(
        base,
        &token,
        "getusersummary",
        r#"{"begin_date":"2026-06-10","end_date":"2026-06-12"}"#,
    )
    .await;
    assert!(body.starts_with("{\"list\""), "{body}");
    post(format!("{base}/datacube/nope?access_token={token}"), "{}").await;
    get(&format!("{base}/readyz")).await;
    token
}

#[tokio::test]
async fn every_request_is_logged_once_without_its_token_or_secret() {
    let (_dir, db) = temp_db();
    let (child, base, appid, secret) = serve_logging(&db, false, &[]).await;
    let token = some_requests(&base, &appid, &secret).await;
    let err = stderr_of(child).await;
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("datacube::request"))
        .collect();
    assert_eq!(lines.len(), 4, "{err}");
    let expect = [
        (
            "method=GET path=\"/cgi-bin/token\"",
            "endpoint=\"-\" errcode=\"0\" status=200",
        ),
        (
            "method=POST path=\"/datacube/getusersummary\"",
            "endpoint=\"getusersummary\" errcode=\"0\" status=200",
        ),
        (
            "method=POST path=\"/datacube/nope\"",
            "endpoint=\"-\" errcode=\"40066\" status=200",
        ),
        ("method=GET path=\"/readyz\"", "errcode=\"-\" status=200"),
    ];
    for (line, (head, tail)) in lines.iter().zip(expect) {
        assert!(line.contains(head) && line.contains(tail), "{line}");
        assert!(line.contains(" ms="), "{line}");
    }
    assert!(
        lines[0].contains(&format!("appid=\"{appid}\"")),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(&format!("appid=\"{appid}\"")),
        "{}",
        lines[1]
    );
    assert!(!err.contains(&token), "the access token is never logged");
    assert!(!err.contains(&secret), "the secret is never logged");

    // JSON lines, with the same fields.
    let (_dir, db) = temp_db();
    let (child, base, appid, secret) = serve_logging(&db, true, &[]).await;
    let token = some_requests(&base, &appid, &secret).await;
    let err = stderr_of(child).await;
    let logged: Vec<serde_json::Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "datacube::request")
        .collect();
    assert_eq!(logged.len(), 4, "{err}");
    assert_eq!(
        logged[1]["fields"]["endpoint"], "getusersummary",
        "{}",
        logged[1]
    );
    assert_eq!(logged[1]["fields"]["appid"], appid.as_str());
    assert_eq!(logged[1]["fields"]["status"], 200);
    assert!(!err.contains(&token) && !err.contains(&secret));

    // Off.
    let (_dir, db) = temp_db();
    let (child, base, appid, secret) = serve_logging(&db, false, &["--no-request-log"]).await;
    some_requests(&base, &appid, &secret).await;
    let err = stderr_of(child).await;
    assert!(!err.contains("datacube::request"), "{err}");
}

/// `datacube --version` names the commit it was built from.
#[tokio::test]
async fn the_version_names_the_commit() {
    let (code, out, _) = run("sqlite://unused", &["--version"], None).await;
    assert_eq!(code, 0);
    let version = out.trim();
    assert!(
        version.starts_with(&format!("datacube {} (commit ", env!("CARGO_PKG_VERSION")))
            && version.ends_with(')'),
        "{version}"
    );
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(root())
        .output();
    if let Some(head) = head.ok().filter(|o| o.status.success()) {
        let head = String::from_utf8(head.stdout).unwrap();
        assert!(version.contains(head.trim()), "{version} vs HEAD {head}");
    }
}

/// `openssl` with `args`, in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let mut c = StdCommand::new("openssl");
    c.current_dir(dir).args(args);
    run_ok(c, &format!("openssl {args:?}"));
}

/// A CA (`ca.pem`), a server certificate it signs for the name `db.example` only
/// (`server.pem`, `server.key`), and an unrelated CA (`other-ca.pem`), in `dir`.
fn certificates(dir: &std::path::Path) {
    for (name, subject) in [
        ("ca", "/CN=datacube test CA"),
        ("other-ca", "/CN=another CA"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                subject,
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=db.example",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:db.example\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ],
    );
}

#[tokio::test]
async fn tls_to_postgresql_follows_libpq_sslmode() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let cluster = Cluster::start_with(|data| {
        std::fs::copy(certs.path().join("server.pem"), data.join("server.crt")).unwrap();
        std::fs::copy(certs.path().join("server.key"), data.join("server.key")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(data.join("postgresql.conf"), conf).unwrap();
        // TLS only, over TCP.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
    });
    let ca = certs.path().join("ca.pem");
    let other = certs.path().join("other-ca.pem");
    let url = |query: String| format!("{}?{query}", cluster.url("pw-tls-never-shown"));
    let try_url = |url: String| async move {
        let (code, out, err) = run(&url, &["account", "list"], None).await;
        (code, out + &err)
    };

    for ok in [
        url("sslmode=require".into()),
        url(format!("sslmode=verify-ca&sslrootcert={}", ca.display())),
        // libpq's default, prefer: encrypted when the server offers it.
        cluster.url("pw-tls-never-shown"),
    ] {
        let (code, out) = try_url(ok.clone()).await;
        assert_eq!(code, 0, "{ok}: {out}");
        assert!(!out.contains("not encrypted"), "{ok}: {out}");
    }
    // A password with a `?` in it does not hide the query: sslmode=disable is still read (and
    // refused by this server, which wants TLS).
    let (code, out) = try_url(format!(
        "{}?sslmode=disable",
        cluster.url("pw?tls-never-shown")
    ))
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no encryption"), "{out}");
    let refused = [
        (
            url(format!("sslmode=verify-full&sslrootcert={}", ca.display())),
            "certificate not valid for name \"127.0.0.1\"",
        ),
        (
            url(format!(
                "sslmode=verify-full&sslrootcert={}",
                other.display()
            )),
            "UnknownIssuer",
        ),
        (
            url(format!("sslmode=require&sslrootcert={}", other.display())),
            "UnknownIssuer",
        ),
        (url("sslmode=disable".into()), "no encryption"),
        (
            url("sslmode=bogus".into()),
            "expected disable, prefer, require, verify-ca or verify-full",
        ),
    ];
    for (bad, why) in refused {
        let (code, out) = try_url(bad.clone()).await;
        assert_eq!(code, 1, "{bad}: {out}");
        assert!(out.contains(why), "{bad}: {out}");
        assert!(!out.contains("pw-tls-never-shown"), "{out}");
    }
}

/// Real Prometheus (Debian's `prometheus`, installed by `scripts/test`) scrapes `/metrics`
/// while requests of known outcomes are sent; PromQL over its HTTP API gives the same counts.
#[tokio::test]
async fn prometheus_scrapes_request_counts_by_errcode() {
    let (_dir, db) = temp_db();
    add_account(&db, "wxaaaa000000000001", "s3cret-metrics").await;
    let served = serve(&db, &[]).await;
    let base = served.base.clone();

    let prom = Prometheus::start(&base, &[]);
    let port = prom.port;

    // Known traffic: 5 tokens and 4 answers (0), 3 bad tokens (40001), 2 unknown paths (40066).
    let mut token = String::new();
    for _ in 0..5 {
        token = access_token(&base, "wxaaaa000000000001", "s3cret-metrics").await;
    }
    let week = r#"{"begin_date":"2026-06-01","end_date":"2026-06-07"}"#;
    for _ in 0..4 {
        let body = datacube_post(&base, &token, "getusersummary", week).await;
        assert!(body.starts_with("{\"list\""), "{body}");
    }
    for _ in 0..3 {
        datacube_post(&base, "not-a-token", "getusersummary", week).await;
    }
    for _ in 0..2 {
        post(format!("{base}/datacube/nothing"), "{}").await;
    }
    let expected: std::collections::BTreeMap<String, f64> =
        [("0", 9.0), ("40001", 3.0), ("40066", 2.0)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();

    let query = "sum by (errcode) (datacube_requests_total{api!=\"metrics\"})";
    let started = std::time::Instant::now();
    loop {
        let last = promql(port, query).await;
        let got: std::collections::BTreeMap<String, f64> = last["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["metric"]["errcode"].as_str().unwrap_or("").to_owned(),
                    s["value"][1].as_str().unwrap_or("0").parse().unwrap_or(0.0),
                )
            })
            .collect();
        if got == expected {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "Prometheus never saw {expected:?}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The latency histogram and the token counter are there too.
    let answer = promql(
        port,
        "sum(datacube_request_duration_seconds_count{api=\"getusersummary\"}) + sum(datacube_tokens_issued_total)",
    )
    .await;
    assert_eq!(answer["data"]["result"][0]["value"][1], "12", "{answer}");
}

/// `/metrics` counts quota refusals and events, in Prometheus' text format.
#[tokio::test]
async fn metrics_count_quota_refusals_and_events() {
    let (_dir, db) = temp_db();
    add_account(&db, "wxaaaa000000000001", "s3cret-metrics").await;
    let admin = "admin-token-for-metrics";
    let served = serve(&db, &["--api-quota", "1", "--admin-token", admin]).await;
    let base = &served.base;
    let token = access_token(base, "wxaaaa000000000001", "s3cret-metrics").await;
    let week = r#"{"begin_date":"2026-06-01","end_date":"2026-06-07"}"#;
    datacube_post(base, &token, "getusersummary", week).await;
    let refused = datacube_post(base, &token, "getusersummary", week).await;
    assert!(refused.contains("45009"), "{refused}");
    let events = (0..3)
        .map(|i| {
            format!(
                r#"{{"type":"reply","appid":"wxaaaa000000000001","id":"m{i}","time":"2026-06-01T09:00:00+08:00","cost_ms":5,"ok":true}}"#
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n{\"type\":\"poke\"}";
    let r = reqwest::Client::new()
        .post(format!("{base}/admin/events"))
        .bearer_auth(admin)
        .body(events)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    for line in [
        "datacube_quota_refusals_total{api=\"getusersummary\"} 1",
        "datacube_events_total{outcome=\"accepted\"} 3",
        "datacube_events_total{outcome=\"rejected\"} 1",
        "datacube_ingest_seconds_count 1",
        "datacube_tokens_issued_total{kind=\"basic\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
    // The store's waits: reads (the account, the statistics) and writes (token, events).
    for op in ["read", "write"] {
        let count = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("datacube_db_wait_seconds_count{{op=\"{op}\"}} "))
            })
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        assert!(count >= 2, "{op} waits: {count} in:\n{text}");
    }
}

/// The `/metrics` address `serve --metrics-listen` announced.
fn metrics_address(served: &Served) -> String {
    served
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("datacube metrics on "))
        .expect("serve announces the metrics address")
        .to_owned()
}

/// Requests are counted per event loop and added up at every scrape: after 1,300 answers over
/// eight connections (both loops, past several folds), the counters and the histogram say
/// 1,300 exactly, and the response cache's hits and misses add up to it.
#[tokio::test]
async fn every_request_is_counted_exactly_across_loops() {
    let (_dir, db) = temp_db();
    add_account(&db, "wxaaaa000000000003", "s3cret-metrics-3").await;
    let served = serve(&db, &["--metrics-listen", "127.0.0.1:0"]).await;
    let metrics = metrics_address(&served);
    let token = access_token(&served.base, "wxaaaa000000000003", "s3cret-metrics-3").await;
    let url = format!(
        "{}/datacube/getusercumulate?access_token={token}",
        served.base
    );
    let mut asked = tokio::task::JoinSet::new();
    for c in 0..8 {
        let url = url.clone();
        asked.spawn(async move {
            // A client each: a connection each.
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            for i in 0..(if c < 4 { 163 } else { 162 }) {
                let body = format!(
                    r#"{{"begin_date":"2021-08-{:02}","end_date":"2021-08-20"}}"#,
                    14 + i % 7
                );
                let r = client.post(&url).body(body).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        });
    }
    asked.join_all().await;
    let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    assert_eq!(
        value(r#"datacube_requests_total{api="getusercumulate",errcode="0",status="200"}"#),
        1300.0
    );
    assert_eq!(
        value(r#"datacube_request_duration_seconds_count{api="getusercumulate"}"#),
        1300.0
    );
    let (hits, misses) = (
        value(r#"datacube_response_cache_total{result="hit"}"#),
        value(r#"datacube_response_cache_total{result="miss"}"#),
    );
    assert_eq!(hits + misses, 1300.0, "{hits} hits, {misses} misses");
}

/// `--metrics-listen`: `/metrics`, `/healthz` and `/readyz` on an address of their own, and no
/// `/metrics` on the WeChat API's.
#[tokio::test]
async fn metrics_on_an_address_of_their_own() {
    let (_dir, db) = temp_db();
    add_account(&db, "wxaaaa000000000002", "s3cret-metrics-2").await;
    let served = serve(&db, &["--metrics-listen", "127.0.0.1:0"]).await;
    let metrics = metrics_address(&served);
    assert_ne!(
        metrics,
        format!("{}/metrics", served.base),
        "an address of their own"
    );
    access_token(&served.base, "wxaaaa000000000002", "s3cret-metrics-2").await;
    let r = reqwest::get(&metrics).await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.lines()
            .any(|l| l == "datacube_requests_total{api=\"token\",errcode=\"0\",status=\"200\"} 1"),
        "{text}"
    );
    let internal = metrics.trim_end_matches("/metrics");
    let ready = reqwest::get(format!("{internal}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), r#"{"status":"ready"}"#);
    // The WeChat API's address answers /metrics as WeChat answers a path it does not know.
    let main = reqwest::get(format!("{}/metrics", served.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !main.contains("# TYPE") && main.contains("\"errcode\""),
        "{main}"
    );
}

/// Once shutdown began, `/readyz` on the `--metrics-listen` address (which stays up while
/// open requests finish) answers 503, so that an orchestrator sends no more traffic.
#[tokio::test]
async fn readiness_ends_when_shutdown_begins() {
    use tokio::io::AsyncWriteExt;
    let (_dir, db) = temp_db();
    let mut served = serve(&db, &["--metrics-listen", "127.0.0.1:0"]).await;
    let internal = served
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("datacube metrics on "))
        .expect("serve announces the metrics address")
        .trim_end_matches("/metrics")
        .to_owned();
    let ready = || async {
        let r = reqwest::get(format!("{internal}/readyz")).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(ready().await.0, 200);
    // A request under way: its body not all sent, so the server drains instead of exiting.
    let addr = served.base.trim_start_matches("http://").to_owned();
    let mut open = tokio::net::TcpStream::connect(&addr).await.unwrap();
    open.write_all(
        b"POST /cgi-bin/stable_token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    kill(&served.child, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    let (status, body) = loop {
        let (status, body) = ready().await;
        if status != 200 || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("shutting down"), "{body}");
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "still draining the open request"
    );
    drop(open);
    let exit = tokio::time::timeout(Duration::from_secs(15), served.child.wait())
        .await
        .expect("exits once the open request is gone")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// `datacube healthcheck` with no address asks the one a running `serve` listens on, whatever
/// its `--listen` (a container's HEALTHCHECK, `serve --listen 0.0.0.0:9000`); once that server
/// is gone, `DATACUBE_LISTEN` again.
#[tokio::test]
async fn healthcheck_follows_the_address_serve_listens_on() {
    let (dir, db) = temp_db();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let tmp = tmp.to_str().unwrap().to_owned();
    let served = Serve::new(&db).env("TMPDIR", &tmp).start().await;
    let check = || {
        datacube(&db)
            .env("TMPDIR", &tmp)
            .env("DATACUBE_LISTEN", "127.0.0.1:9")
            .arg("healthcheck")
            .output()
    };
    let out = check().await.unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!("{}/readyz: ready", served.base)),
        "{said}"
    );
    drop(served);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let out = check().await.unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        if said.contains("http://127.0.0.1:9/readyz: cannot connect") {
            assert_eq!(out.status.code(), Some(1));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{said}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
