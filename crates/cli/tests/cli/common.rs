//! Helpers shared by the test modules: run the real `datacube`, serve it ([`Serve`]), call the API.

use std::path::PathBuf;
use std::process::Command as StdCommand;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_datacube");
pub const CLOCK: &str = "2026-06-15T10:00:00+08:00";

pub fn datacube(db: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("DATACUBE_LISTEN")
        .env_remove("DATACUBE_ADMIN_TOKEN")
        .env_remove("DATACUBE_CONFIG")
        .env("DATACUBE_DATABASE", db)
        .env("DATACUBE_CLOCK", CLOCK)
        .env("DATACUBE_LOG", "warn")
        .kill_on_drop(true);
    cmd
}

/// A running `datacube serve`, killed when dropped.
pub struct Served {
    pub child: Child,
    pub base: String,
    /// What it printed up to its address line (and, with `--demo`, the demo banner after it).
    pub stdout: Vec<String>,
    /// What it prints after that, whole once it exits.
    pub later: tokio::task::JoinHandle<String>,
}

impl Served {
    /// The demo account's appid and secret, read from the curl line of the `--demo` banner.
    pub fn demo_account(&self) -> (String, String) {
        let (mut appid, mut secret) = (None, None);
        for word in self
            .stdout
            .iter()
            .flat_map(|l| l.split(|c: char| c.is_whitespace() || "&?'".contains(c)))
        {
            if let Some(v) = word.strip_prefix("appid=") {
                appid = Some(v.to_owned());
            }
            if let Some(v) = word.strip_prefix("secret=") {
                secret = Some(v.to_owned());
            }
        }
        (
            appid.expect("the banner names the demo appid"),
            secret.expect("the banner names the demo secret"),
        )
    }

    /// Everything the server writes to stderr from now on (after [`Serve::stderr`]), collected
    /// until it exits.
    pub fn stderr_log(&mut self) -> tokio::task::JoinHandle<String> {
        let stderr = self
            .child
            .stderr
            .take()
            .expect("Serve::stderr() was asked for");
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut all = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                all.push_str(&line);
                all.push('\n');
            }
            all
        })
    }
}

/// How a test starts `datacube serve` on a free port: the database, then any flags, clock,
/// log level and environment; [`Serve::start`] returns once it prints its address.
pub struct Serve {
    cmd: Command,
    demo: bool,
}

impl Serve {
    pub fn new(db: &str) -> Serve {
        let mut cmd = datacube(db);
        cmd.env_remove("DATACUBE_FAULTS")
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        Serve { cmd, demo: false }
    }

    pub fn args(mut self, args: &[&str]) -> Serve {
        self.demo |= args.contains(&"--demo");
        self.cmd.args(args);
        self
    }

    /// The server's clock (`DATACUBE_CLOCK`; [`CLOCK`] unless set).
    pub fn clock(mut self, clock: &str) -> Serve {
        self.cmd.env("DATACUBE_CLOCK", clock);
        self
    }

    /// `DATACUBE_LOG` (`warn` unless set).
    pub fn log(mut self, level: &str) -> Serve {
        self.cmd.env("DATACUBE_LOG", level);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Serve {
        self.cmd.env(key, value);
        self
    }

    /// Keeps stderr piped, for [`Served::stderr_log`] or `child.stderr`.
    pub fn stderr(mut self) -> Serve {
        self.cmd.stderr(Stdio::piped());
        self
    }

    pub async fn start(self) -> Served {
        self.start_until(|line| line.strip_prefix("datacube is serving the WeChat API on "))
            .await
    }

    /// Starts it and returns once it says it waits for its database (`--database-wait`), with
    /// the address that answers its health checks meanwhile.
    pub async fn start_waiting(self) -> Served {
        self.start_until(|line| {
            line.strip_prefix("datacube is waiting for its database; /healthz and /readyz on ")
        })
        .await
    }

    /// Starts it and returns once `address` finds the server's address in a line it printed.
    async fn start_until(mut self, address: impl Fn(&str) -> Option<&str>) -> Served {
        let mut child = self.cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stdout = Vec::new();
        let base = tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .unwrap()
                    .expect("serve printed its address");
                stdout.push(line.clone());
                if let Some(addr) = address(&line) {
                    return addr.to_owned();
                }
            }
        })
        .await
        .expect("serve starts");
        // The demo banner follows the address line.
        if self.demo {
            while let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await
            {
                stdout.push(line);
            }
        }
        // Whatever it prints later is read at once, so that it never blocks on a full pipe.
        let later = tokio::spawn(async move {
            let mut all = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        Served {
            child,
            base,
            stdout,
            later,
        }
    }
}

/// The account most tests add.
pub const ACCOUNT: (&str, &str) = ("wxaaaa000000000001", "s3cret");

/// A fresh database that holds [`ACCOUNT`].
pub async fn db_with_account() -> (tempfile::TempDir, String) {
    let (dir, db) = temp_db();
    add_account(&db, ACCOUNT.0, ACCOUNT.1).await;
    (dir, db)
}

impl Served {
    /// The answer of `endpoint` over `begin..=end` for an account, with a token of its own.
    pub async fn datacube(
        &self,
        (appid, secret): (&str, &str),
        endpoint: &str,
        (begin, end): (&str, &str),
    ) -> String {
        let token = access_token(&self.base, appid, secret).await;
        let body = format!(r#"{{"begin_date":"{begin}","end_date":"{end}"}}"#);
        datacube_post(&self.base, &token, endpoint, &body).await
    }
}

/// `datacube serve` with these flags and the defaults of [`Serve`].
pub async fn serve(db: &str, extra: &[&str]) -> Served {
    Serve::new(db).args(extra).start().await
}

pub async fn run(db: &str, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = datacube(db)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        tokio::io::AsyncWriteExt::write_all(&mut input, text.as_bytes())
            .await
            .unwrap();
    }
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

pub async fn add_account(db: &str, appid: &str, secret: &str) {
    let (code, _, err) = run(
        db,
        &["account", "add", "--appid", appid, "--secret", secret],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
}

pub async fn access_token(base: &str, appid: &str, secret: &str) -> String {
    let v: serde_json::Value = token(base, appid, secret).await.json().await.unwrap();
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {v}"))
        .to_owned()
}

pub async fn datacube_post(base: &str, token: &str, endpoint: &str, body: &str) -> String {
    post(
        format!("{base}/datacube/{endpoint}?access_token={token}"),
        body,
    )
    .await
}

pub fn temp_db() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = datacube_store::testing::fresh_database(dir.path(), "cli");
    (dir, url)
}

pub async fn token(base: &str, appid: &str, secret: &str) -> reqwest::Response {
    reqwest::get(format!(
        "{base}/cgi-bin/token?grant_type=client_credential&appid={appid}&secret={secret}"
    ))
    .await
    .unwrap()
}

/// Sending a request and reading its answer as JSON, in one step.
pub trait AnswerJson {
    fn answer_json(self) -> impl std::future::Future<Output = serde_json::Value>;
}

impl AnswerJson for reqwest::RequestBuilder {
    async fn answer_json(self) -> serde_json::Value {
        self.send().await.unwrap().json().await.unwrap()
    }
}

pub async fn post(url: String, body: &str) -> String {
    reqwest::Client::new()
        .post(url)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A TCP port nobody listens on at the moment.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv with wechatpy 1.8.18, made once (the wechatpy end-to-end test uses the same).
pub fn python() -> PathBuf {
    static READY: Mutex<bool> = Mutex::new(false);
    let venv = root().join("target/wechatpy-venv");
    let python = venv.join("bin/python");
    let mut ready = READY.lock().unwrap_or_else(|p| p.into_inner());
    if !*ready {
        let ok = std::process::Command::new(&python)
            .args([
                "-c",
                "import wechatpy, cryptography; assert wechatpy.__version__ == '1.8.18'",
            ])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let made = std::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3 runs");
            assert!(made.success(), "python3 -m venv failed");
            let pip = std::process::Command::new(venv.join("bin/pip"))
                .args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "wechatpy==1.8.18",
                    "cryptography",
                ])
                .status()
                .expect("pip runs");
            assert!(pip.success(), "installing wechatpy 1.8.18 from PyPI failed");
        }
        *ready = true;
    }
    python
}

/// The developer's server (tests/push/server.py), on a free port.
pub struct DevServer {
    _child: Child,
    pub port: u16,
}

impl DevServer {
    /// Where it answers pushes.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/wechat", self.port)
    }
}

/// `datacube push` for `appid` to the developer's server at `url` with the push `token`, and
/// further flags: its exit code, stdout and stderr.
pub async fn push_to(
    db: &str,
    (appid, url, token): (&str, &str, &str),
    extra: &[&str],
) -> (i32, String, String) {
    let mut args = vec!["push", "--appid", appid, "--url", url, "--token", token];
    args.extend_from_slice(extra);
    run(db, &args, None).await
}

/// The developer's server of `tests/push/server.py` (wechatpy), for this token, key and appid.
pub async fn dev_server(token: &str, aes_key: &str, appid: &str) -> DevServer {
    let mut child = Command::new(python())
        .arg(root().join("tests/push/server.py"))
        .args([token, aes_key, appid])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the wechatpy server starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the wechatpy server says where it listens")
        .unwrap()
        .unwrap();
    let port = line
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected: {line}"));
    DevServer {
        _child: child,
        port,
    }
}

/// The answers of `endpoints` over `first..=last`, call by call within each endpoint's span,
/// each with a label (`endpoint {"begin_date":…}`).
pub async fn answers(
    base: &str,
    (appid, secret): (&str, &str),
    endpoints: &[datacube_api::Endpoint],
    (first, last): (jiff::civil::Date, jiff::civil::Date),
) -> Vec<(String, String)> {
    use datacube_api::date::{add_days, format_date};
    let token = access_token(base, appid, secret).await;
    let mut out = Vec::new();
    for &endpoint in endpoints {
        let span = i64::from(endpoint.max_span());
        let mut at = first;
        while at <= last {
            let end = add_days(at, span - 1).min(last);
            let body = format!(
                r#"{{"begin_date":"{}","end_date":"{}"}}"#,
                format_date(at),
                format_date(end)
            );
            let answer = datacube_post(base, &token, endpoint.name(), &body).await;
            assert!(
                answer.starts_with("{\"list\""),
                "{endpoint} {body}: {answer}"
            );
            out.push((format!("{endpoint} {body}"), answer));
            at = add_days(end, 1);
        }
    }
    out
}

/// The value of the sample `name` (with its labels, as Prometheus' text format writes them)
/// in `text`, 0 when it is absent.
pub fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Sends a signal to a running child as `kill` does (`"-TERM"`, `"-INT"`, `"-KILL"`).
pub fn kill(child: &Child, signal: &str) {
    let pid = child.id().expect("the child still runs").to_string();
    let sent = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {pid}");
}

/// A process's memory now (`VmRSS`), in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// A process's peak memory so far (`VmHWM`), in MiB.
pub fn peak_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Real Prometheus (Debian's `prometheus`, installed by `scripts/test`; `PROMETHEUS` names
/// another) scraping `base`'s `/metrics` every 200 ms, with `rules` loaded; stopped on drop.
pub struct Prometheus {
    /// Its HTTP API's port on 127.0.0.1.
    pub port: u16,
    _work: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl Prometheus {
    pub fn start(base: &str, rules: &[&std::path::Path]) -> Prometheus {
        let prometheus =
            std::env::var("PROMETHEUS").unwrap_or_else(|_| "/usr/bin/prometheus".into());
        assert!(
            std::path::Path::new(&prometheus).exists(),
            "{prometheus} is missing: apt-get install prometheus (scripts/test does it as root), or set PROMETHEUS"
        );
        let work = tempfile::tempdir().unwrap();
        let target = base.trim_start_matches("http://");
        let rule_files: String = rules
            .iter()
            .map(|r| format!("  - '{}'\n", r.display()))
            .collect();
        let config = work.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 200ms\n  evaluation_interval: 200ms\n\
                 rule_files:\n{rule_files}scrape_configs:\n  - job_name: datacube\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = tokio::process::Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Prometheus {
            port,
            _work: work,
            _child: child,
        }
    }

    /// A PromQL query's result list, once it has `want` series (or after 60 s, failing).
    pub async fn wait_for(
        &self,
        query: &str,
        want: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let started = std::time::Instant::now();
        loop {
            let answer = promql(self.port, query).await;
            let result = answer["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if want(&result) {
                return result;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "Prometheus never answered {query} as wanted: {answer}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    }
}

/// A PromQL query over Prometheus' HTTP API (`Null` while it does not answer yet).
pub async fn promql(port: u16, query: &str) -> serde_json::Value {
    match reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
    {
        Ok(answer) => answer.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

/// A PostgreSQL cluster of the test's own: `initdb` into a temporary directory (as the
/// `postgres` user when the test runs as root, which PostgreSQL refuses), on a free port.
pub struct Cluster {
    _dir: tempfile::TempDir,
    data: PathBuf,
    port: u16,
}

pub fn as_postgres(program: &str) -> StdCommand {
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

pub fn run_ok(mut c: StdCommand, what: &str) {
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
    pub fn start() -> Cluster {
        Cluster::start_with(|_| {})
    }

    /// A cluster whose data directory `setup` may add to before it starts (as root, the
    /// files are handed to the `postgres` user afterwards).
    pub fn start_with(setup: impl FnOnce(&std::path::Path)) -> Cluster {
        let cluster = Cluster::init_with(setup);
        cluster.up();
        cluster
    }

    /// A cluster made but not started ([`Cluster::up`] starts it): nobody listens on its
    /// port until then.
    pub fn init() -> Cluster {
        Cluster::init_with(|_| {})
    }

    fn init_with(setup: impl FnOnce(&std::path::Path)) -> Cluster {
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
        setup(&data);
        let mut chown = StdCommand::new("chown");
        chown.args(["-R", "postgres:", data.to_str().unwrap()]);
        let _ = chown.output();
        Cluster {
            _dir: dir,
            data,
            port: free_port(),
        }
    }

    fn ctl(&self, args: &[&str]) {
        let mut c = as_postgres("pg_ctl");
        c.args(["-D", self.data.to_str().unwrap(), "-w"]).args(args);
        run_ok(c, &format!("pg_ctl {args:?}"));
    }

    /// Starts it, and returns once it accepts connections.
    pub fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data.display()
        );
        let log = self.data.join("log");
        self.ctl(&["-o", &options, "-l", log.to_str().unwrap(), "start"]);
    }

    pub fn down(&self) {
        self.ctl(&["-m", "fast", "stop"]);
    }

    /// Its URL, with a password (the cluster trusts every connection: any password works).
    pub fn url(&self, password: &str) -> String {
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
