//! `serve --database-wait`: a server started before its database answers its health checks
//! (alive, not ready) and serves once the database comes up; past the wait it exits 1 naming
//! why — against a PostgreSQL cluster this test makes (and stops) itself.

use std::time::{Duration, Instant};

use crate::common::*;

const PASSWORD: &str = "pw-never-shown-4412";
const APPID: &str = "wxwait0000000000001";
const SECRET: &str = "wait-secret";

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A seed directory holding the account of this test.
fn seed() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("accounts.json"),
        format!(r#"[{{"appid":"{APPID}","secret":"{SECRET}"}}]"#),
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn serve_waits_for_a_database_that_comes_up_later() {
    let cluster = Cluster::init();
    let seed = seed();
    let mut served = Serve::new(&cluster.url(PASSWORD))
        .args(&[
            "--database-wait",
            "30s",
            "--seed",
            seed.path().to_str().unwrap(),
        ])
        .log("warn")
        .stderr()
        .start_waiting()
        .await;
    let stderr = served.stderr_log();
    let base = served.base.clone();

    // Five seconds without a database: alive, not ready, every other request answered.
    let down_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < down_until {
        let (status, body) = get(&format!("{base}/healthz")).await;
        assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
        let (status, body) = get(&format!("{base}/readyz")).await;
        assert_eq!(status, 503, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "unavailable", "{body}");
        let reason = v["reason"].as_str().unwrap();
        assert!(reason.starts_with("database unavailable: "), "{reason}");
        // Why, not where: anyone may read /readyz (the log names the database).
        assert!(reason.contains("Connection refused"), "{reason}");
        assert!(
            !reason.contains("127.0.0.1") && !reason.contains("postgres://"),
            "{reason}"
        );
        assert!(!reason.contains(PASSWORD), "{reason}");
        // The WeChat API: "busy, retry", at once.
        let answer = token(&base, APPID, SECRET).await;
        assert_eq!(answer.status(), 200);
        let v: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(v["errcode"], -1, "{v}");
        assert!(
            v["errmsg"].as_str().unwrap().starts_with("system error"),
            "{v}"
        );
        assert!(
            served.child.try_wait().unwrap().is_none(),
            "serve exited while waiting"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The database comes up: ready within seconds (the pauses between attempts reach 5 s),
    // and the API answers from it.
    cluster.up();
    let up = Instant::now();
    loop {
        let (status, body) = get(&format!("{base}/readyz")).await;
        if status == 200 {
            assert_eq!(body, r#"{"status":"ready"}"#);
            break;
        }
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "not ready {:?} after the database came up: {body}",
            up.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("ready {:?} after the database came up", up.elapsed());
    let token = access_token(&base, APPID, SECRET).await;
    let answer = datacube_post(
        &base,
        &token,
        "getusersummary",
        r#"{"begin_date":"2026-06-08","end_date":"2026-06-14"}"#,
    )
    .await;
    assert!(answer.starts_with(r#"{"list":"#), "{answer}");

    // A database that answers but refuses is not waited for, however long the wait.
    let missing = cluster
        .url(PASSWORD)
        .replace("/postgres", "/no_such_database");
    let started = Instant::now();
    let (code, _, err) = run(
        &missing,
        &["serve", "--listen", "127.0.0.1:0", "--database-wait", "30s"],
        None,
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
    assert!(err.contains("no_such_database\" does not exist"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");

    kill(&served.child, "-TERM");
    let exit = tokio::time::timeout(Duration::from_secs(15), served.child.wait())
        .await
        .expect("serve exits on SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    let log = stderr.await.unwrap();
    assert!(
        log.contains("the database is unavailable; trying again"),
        "{log}"
    );
    assert!(log.contains("postgres://postgres:***@127.0.0.1:"), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");
    let stdout = served.later.await.unwrap();
    assert!(
        stdout.contains("datacube is serving the WeChat API on "),
        "{stdout}"
    );
}

#[tokio::test]
async fn serve_exits_when_the_database_stays_away() {
    // Made, never started: nobody listens on its port.
    let cluster = Cluster::init();
    let url = cluster.url(PASSWORD);
    let started = Instant::now();
    let (code, out, err) = run(
        &url,
        &["serve", "--listen", "127.0.0.1:0", "--database-wait", "2s"],
        None,
    )
    .await;
    let took = started.elapsed();
    assert_eq!(code, 1, "{err}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "exited after {took:?}: {err}"
    );
    assert!(
        out.starts_with("datacube is waiting for its database; /healthz and /readyz on http://"),
        "{out}"
    );
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: the database was unavailable for --database-wait 2s ("),
        "{err}"
    );
    let shown = url.replace(PASSWORD, "***");
    assert!(
        last.contains(&format!("cannot open database {shown}: ")),
        "{err}"
    );
    assert!(last.contains("Connection refused"), "{err}");
    assert!(!err.contains(PASSWORD) && !out.contains(PASSWORD), "{err}");

    // 0: one attempt, today's error as it was.
    let started = Instant::now();
    let (code, out, err) = run(
        &url,
        &["serve", "--listen", "127.0.0.1:0", "--database-wait", "0"],
        None,
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "{err}");
    assert_eq!(out, "");
    assert!(
        err.starts_with("error: cannot open database postgres://postgres:***@"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");

    // A wait that is not a duration is a usage error, found before anything is opened.
    for wait in ["2x", "-1s", "soon"] {
        let flag = format!("--database-wait={wait}");
        let (code, out, err) = run(&url, &["serve", &flag], None).await;
        assert_eq!(code, 2, "{wait}: {err}");
        assert_eq!(out, "", "{wait}");
        assert!(err.contains("--database-wait"), "{wait}: {err}");
        assert!(!err.contains(PASSWORD), "{wait}: {err}");
    }
}
