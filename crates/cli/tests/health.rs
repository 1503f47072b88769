//! Health checks: `/healthz`, `/readyz` and `datacube healthcheck`, against a PostgreSQL
//! cluster this test starts (and stops) itself.

mod common;

use std::path::PathBuf;
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use common::*;

/// A PostgreSQL cluster of the test's own: `initdb` into a temporary directory (as the
/// `postgres` user when the test runs as root, which PostgreSQL refuses), on a free port.
struct Cluster {
    _dir: tempfile::TempDir,
    data: PathBuf,
    port: u16,
}

fn as_postgres(program: &str) -> StdCommand {
    let root = StdCommand::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root {
        let mut c = StdCommand::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        StdCommand::new(program)
    }
}

fn run_ok(mut c: StdCommand, what: &str) {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run it ({e}); PostgreSQL's server binaries are needed (apt-get install postgresql)"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("pg");
        std::fs::create_dir(&data).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut chown = StdCommand::new("chown");
        chown.args(["postgres:", data.to_str().unwrap()]);
        // Only root can, and only root needs to.
        let _ = chown.output();
        let mut initdb = as_postgres("initdb");
        initdb.args([
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        run_ok(initdb, "initdb");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster {
            _dir: dir,
            data,
            port,
        };
        cluster.up();
        cluster
    }

    fn ctl(&self, args: &[&str]) {
        let mut c = as_postgres("pg_ctl");
        c.args(["-D", self.data.to_str().unwrap(), "-w"]).args(args);
        run_ok(c, &format!("pg_ctl {args:?}"));
    }

    fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data.display()
        );
        let log = self.data.join("log");
        self.ctl(&["-o", &options, "-l", log.to_str().unwrap(), "start"]);
    }

    fn down(&self) {
        self.ctl(&["-m", "fast", "stop"]);
    }

    fn url(&self, password: &str) -> String {
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut c = as_postgres("pg_ctl");
        c.args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"]);
        let _ = c.output();
    }
}

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
