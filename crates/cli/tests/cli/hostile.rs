//! `serve` against hostile clients, as an attacker on the same machine would go at it:
//! thousands of connections sending a head or a body a byte at a time, reopened as soon as
//! they are closed, while an honest client gets tokens and statistics.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::common::*;

/// Opens a connection from `from` (a loopback address of its own: `127.0.0.x`).
async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    socket.connect(to).await
}

/// Keeps `n` connections from `from` open, each sending `opening` and then a byte of `then`
/// a second; a closed one is opened again at once. Returns how many were opened in all.
fn trickle(
    n: usize,
    from: &'static str,
    to: SocketAddr,
    opening: &'static [u8],
    then: &'static [u8],
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let opened = Arc::new(AtomicU64::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (stop, opened) = (stop.clone(), opened.clone());
            set.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = connect_from(from, to).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    opened.fetch_add(1, Ordering::Relaxed);
                    if s.write_all(opening).await.is_err() {
                        continue;
                    }
                    let mut buf = [0u8; 512];
                    'open: for b in then.iter().cycle() {
                        tokio::select! {
                            read = s.read(&mut buf) => {
                                // Closed by the server (or answered): open another.
                                if matches!(read, Ok(0) | Err(_)) {
                                    break 'open;
                                }
                            }
                            () = tokio::time::sleep(Duration::from_secs(1)) => {
                                if stop.load(Ordering::Relaxed) || s.write_all(&[*b]).await.is_err() {
                                    break 'open;
                                }
                            }
                        }
                    }
                }
            });
            // Not all in the same millisecond: the listen queue is 1,024 long.
            tokio::task::yield_now().await;
        }
        while set.join_next().await.is_some() {}
        opened.load(Ordering::Relaxed)
    })
}

/// What an honest client saw: how long each of its calls took (`None`: failed).
async fn honest_client(
    base: &str,
    (appid, secret): (&str, &str),
    for_how_long: Duration,
) -> Vec<Option<Duration>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut took = Vec::new();
    let started = Instant::now();
    while started.elapsed() < for_how_long {
        // A token, statistics with it, and the readiness check.
        let at = Instant::now();
        let token = client
            .post(format!("{base}/cgi-bin/stable_token"))
            .body(format!(
                r#"{{"grant_type":"client_credential","appid":"{appid}","secret":"{secret}"}}"#
            ))
            .send()
            .await;
        let token = match token {
            Ok(answer) => answer.json::<serde_json::Value>().await.ok(),
            Err(_) => None,
        }
        .and_then(|v| v["access_token"].as_str().map(str::to_owned));
        took.push(token.is_some().then(|| at.elapsed()));
        let Some(token) = token else { continue };
        let at = Instant::now();
        let stats = client
            .post(format!(
                "{base}/datacube/getusersummary?access_token={token}"
            ))
            .body(r#"{"begin_date":"2026-06-01","end_date":"2026-06-07"}"#)
            .send()
            .await;
        let ok = match stats {
            Ok(answer) => answer
                .text()
                .await
                .is_ok_and(|t| t.starts_with(r#"{"list":["#)),
            Err(_) => false,
        };
        took.push(ok.then(|| at.elapsed()));
        let at = Instant::now();
        let ready = client.get(format!("{base}/readyz")).send().await;
        let ok = match ready {
            Ok(answer) => answer.text().await.is_ok_and(|t| t.contains(r#""ready""#)),
            Err(_) => false,
        };
        took.push(ok.then(|| at.elapsed()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    took
}

fn within_a_second(took: &[Option<Duration>]) -> f64 {
    let fast = took
        .iter()
        .filter(|t| t.is_some_and(|t| t <= Duration::from_secs(1)))
        .count();
    fast as f64 / took.len().max(1) as f64
}

/// 1,100 connections stuck in their bodies and 4,000 stuck in their heads, all from the
/// honest client's own address (as behind a load balancer), reopened whenever closed: the
/// honest client is answered, `/readyz` says ready, and the server says so in a few lines,
/// not one per connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_and_slow_heads_take_nothing_from_an_honest_client() {
    let (_dir, db) = db_with_account().await;
    let mut served = Serve::new(&db).log("info").stderr().start().await;
    let log = served.stderr_log();
    let addr: SocketAddr = served.base.trim_start_matches("http://").parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let bodies = trickle(
        1_100,
        "127.0.0.1",
        addr,
        b"POST /cgi-bin/stable_token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"gr",
        b"ant_type",
        stop.clone(),
    );
    let heads = trickle(
        4_000,
        "127.0.0.1",
        addr,
        b"GET /cgi-bin/token?grant_type=client_",
        b"credential",
        stop.clone(),
    );
    // Let the attack reach its full size, then measure through two rounds of its deadlines.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let took = honest_client(&served.base, ACCOUNT, Duration::from_secs(22)).await;
    stop.store(true, Ordering::Relaxed);
    let (bodies, heads) = (bodies.await.unwrap(), heads.await.unwrap());
    let share = within_a_second(&took);
    eprintln!(
        "{:.1} % of {} calls within 1 s; {bodies} slow bodies and {heads} slow heads opened",
        share * 100.0,
        took.len()
    );
    assert!(took.len() > 100, "{} calls", took.len());
    assert!(
        share >= 0.95,
        "{:.1} % of {} calls answered within 1 s",
        share * 100.0,
        took.len()
    );
    assert!(bodies >= 1_100 && heads >= 4_000, "{bodies} {heads}");
    // The attackers' connections were closed (and reopened) all along.
    assert!(bodies + heads > 5_100 * 2, "{bodies} + {heads} opened");
    // Counted for Prometheus, by reason.
    let metrics = reqwest::get(format!("{}/metrics", served.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let closed = |reason: &str| {
        sample(
            &metrics,
            &format!("datacube_connections_closed_total{{reason=\"{reason}\"}}"),
        )
    };
    assert!(closed("evicted") > 1000.0, "{metrics}");
    let open = sample(&metrics, "datacube_connections_open");
    assert!((1.0..=4096.0).contains(&open), "{open}");
    kill(&served.child, "-TERM");
    let _ = served.child.wait().await;
    let log = log.await.unwrap();
    let lines = log.lines().filter(|l| l.contains("by the limits")).count();
    assert!(
        (1..=5).contains(&lines),
        "closings summed up every 10 s, not logged one by one: {lines} lines\n{}",
        &log[..log.len().min(3000)]
    );
}

/// A year of an account's events in one 90 MB `POST /admin/events`: every event is counted,
/// the body is loaded as `datacube ingest` loads a file (sorted in bounded memory, stored in
/// batches), and the memory is given back once it is done (before: 372 MiB at the peak, and
/// still 369 MiB afterwards).
#[tokio::test]
async fn a_large_post_of_events_takes_bounded_memory_and_gives_it_back() {
    const ADMIN: &str = "admin-token-for-a-large-post";
    const APPID: &str = "wxbig0000000000001";
    let (_dir, db) = temp_db();
    add_account(&db, APPID, "big-post-secret").await;
    let served = Serve::new(&db)
        .args(&["--admin-token", ADMIN])
        .start()
        .await;
    let pid = served.child.id().unwrap();
    let lines = datacube_engine::demo::events(APPID, jiff::civil::date(2026, 6, 14), 365, 7);
    let body = lines.join("\n");
    assert!(body.len() > 80 << 20, "{} bytes", body.len());
    let answer = reqwest::Client::new()
        .post(format!("{}/admin/events", served.base))
        .bearer_auth(ADMIN)
        .body(body)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let report: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(report["accepted"], lines.len(), "{report}");
    assert_eq!(report["rejected_total"], 0, "{report}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (now, peak) = (rss_mib(pid), peak_mib(pid));
    eprintln!(
        "after a {} MiB POST: {now:.0} MiB, {peak:.0} MiB at the peak",
        lines.iter().map(|l| l.len() + 1).sum::<usize>() >> 20
    );
    assert!(peak < 330.0, "{peak:.0} MiB at the peak");
    assert!(now < 200.0, "{now:.0} MiB three seconds later");
}
