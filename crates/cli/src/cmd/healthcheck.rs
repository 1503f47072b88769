//! `datacube healthcheck`: asks a running server whether it is ready (`GET /readyz`), for a
//! container's `HEALTHCHECK` (no curl needed in the image) or a script. Exit 0 ready, 1 not
//! (the reason on stderr), 2 usage error. Opens no database.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use crate::{Code, Exit};

#[derive(Args)]
pub struct HealthcheckArgs {
    /// The URL to check (a server's address alone, `http://host:port`, asks its `/readyz`).
    /// Default: `/readyz` at the address `serve` listens on — the one a running `serve` of this
    /// user recorded (whatever its `--listen`), else `DATACUBE_LISTEN`, else 127.0.0.1:8080
    /// (0.0.0.0 and :: are asked on loopback).
    #[arg(long)]
    url: Option<String>,
    /// The address `serve` listens on, when `--url` is not given.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// How long to wait for the answer (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = crate::args::timeout)]
    timeout: Duration,
}

/// The address to ask a server listening on `addr` at: the same, but loopback for 0.0.0.0 and ::.
pub fn on_loopback(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    addr
}

pub async fn run(args: HealthcheckArgs) -> Result<()> {
    let url = match args.url {
        Some(url) => {
            let mut parsed = reqwest::Url::parse(&url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .ok_or_else(|| Exit::usage(format!("--url {url}: not an http(s) URL")))?;
            // The server's address alone (what people type): its readiness check.
            if parsed.path() == "/" {
                parsed.set_path("/readyz");
            }
            parsed
        }
        None => {
            let listen = match args.listen {
                Some(addr) => addr,
                None => match recorded() {
                    Some(addr) => addr,
                    None => match std::env::var("DATACUBE_LISTEN") {
                        Ok(v) => v.parse().map_err(|e| {
                            Exit::usage(format!("DATACUBE_LISTEN={v}: not an address: {e}"))
                        })?,
                        Err(_) => SocketAddr::from(([127, 0, 0, 1], 8080)),
                    },
                },
            };
            let addr = on_loopback(listen);
            reqwest::Url::parse(&format!("http://{addr}/readyz"))
                .map_err(|e| Exit::usage(format!("--listen {addr}: {e}")))?
        }
    };
    let shown = format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    ) + url.path();
    // The server asked, directly: no redirect followed, no proxy from the environment.
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?;
    let answer = client.get(url).send().await;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            let why = if e.is_timeout() {
                format!("no answer within {:?}", args.timeout)
            } else if e.is_connect() {
                "cannot connect".to_owned()
            } else {
                "the request failed".to_owned()
            };
            return Err(Exit::code(Code::Failure, format!("{shown}: {why}")));
        }
    };
    let status = answer.status();
    let body = read_at_most(answer, MAX_ANSWER).await;
    let json = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
    // WeChat's paths answer 200 to anything (an error code in the body): only a health
    // answer counts.
    let healthy = matches!(json["status"].as_str(), Some("ready" | "ok"));
    if status.is_success() && healthy {
        println!("{shown}: ready");
        return Ok(());
    }
    // What the server says is quoted, bounded and escaped: it cannot forge lines or send
    // terminal escapes.
    let reason = match json["reason"].as_str() {
        Some(reason) => datacube_api::text::clean(reason),
        None if status.is_success() => "not a health answer (is this datacube's /readyz?)".into(),
        None => datacube_api::text::snippet(&body, &[]),
    };
    Err(Exit::code(
        Code::Failure,
        format!("{shown}: HTTP {status}: {reason}"),
    ))
}

/// Where a running `serve` records the address it listens on, for `healthcheck` with no
/// address (a container's HEALTHCHECK follows `serve --listen` so): a directory of this user's
/// own in the temporary directory, named by the effective uid (the owner of `/proc/self`).
fn record_dir() -> Option<std::path::PathBuf> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self").ok()?.uid();
        Some(std::env::temp_dir().join(format!("datacube-{uid}")))
    }
    #[cfg(not(unix))]
    None
}

/// Whether `dir` is a directory of this user's own that nobody else may write in: only then is
/// a record in it written or believed (a symlink or another user's directory is neither).
fn own_dir(dir: &std::path::Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let (Ok(meta), Ok(me)) = (
            std::fs::symlink_metadata(dir),
            std::fs::metadata("/proc/self"),
        ) else {
            return false;
        };
        meta.is_dir() && meta.uid() == me.uid() && meta.permissions().mode() & 0o022 == 0
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        false
    }
}

/// The address a running `serve` recorded, if its process still runs.
fn recorded() -> Option<SocketAddr> {
    let dir = record_dir()?;
    if !own_dir(&dir) {
        return None;
    }
    let text = std::fs::read_to_string(dir.join("serve.addr")).ok()?;
    let (addr, pid) = text.trim().split_once(' ')?;
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
    alive.then(|| addr.parse().ok()).flatten()
}

/// Records `addr` as the address this `serve` listens on (see [`recorded`]); the record is
/// removed when the returned guard drops. Nothing is recorded where that cannot be done safely.
pub fn record(addr: SocketAddr) -> Option<Recorded> {
    let dir = record_dir()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    }
    if !own_dir(&dir) {
        return None;
    }
    let pid = std::process::id();
    let temp = dir.join(format!("serve.addr.{pid}"));
    std::fs::write(&temp, format!("{addr} {pid}\n")).ok()?;
    std::fs::rename(&temp, dir.join("serve.addr")).ok()?;
    Some(Recorded {
        file: dir.join("serve.addr"),
        mine: format!("{addr} {pid}\n"),
    })
}

/// A recorded address, removed on drop (when it is still this process's).
pub struct Recorded {
    file: std::path::PathBuf,
    mine: String,
}

impl Drop for Recorded {
    fn drop(&mut self) {
        if std::fs::read_to_string(&self.file).is_ok_and(|t| t == self.mine) {
            let _ = std::fs::remove_file(&self.file);
        }
    }
}

/// A health answer is a few dozen bytes; more than this is not read.
const MAX_ANSWER: usize = 64 * 1024;

/// At most `limit` bytes of the answer's body (what arrived before it failed or timed out).
async fn read_at_most(mut answer: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = answer.chunk().await {
        let room = limit - body.len();
        if chunk.len() >= room {
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    body
}
