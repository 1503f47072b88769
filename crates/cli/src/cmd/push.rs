//! `datacube push`: datacube as WeChat toward a developer's server.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::args::{aes_key, duration, timeout, ClockArg, DatabaseArg};
use crate::Exit;

#[derive(Args)]
pub struct PushArgs {
    /// The account the messages are for (it must exist; its statistics get the events).
    #[arg(long)]
    appid: String,
    /// The developer's server URL (the one configured on the Official Account Platform).
    #[arg(long)]
    url: String,
    /// The server's token.
    #[arg(long, env = "DATACUBE_PUSH_TOKEN", hide_env_values = true)]
    token: String,
    /// The EncodingAESKey (43 characters), for the compat and safe modes.
    #[arg(long, env = "DATACUBE_PUSH_AES_KEY", hide_env_values = true)]
    aes_key: Option<String>,
    /// The push mode.
    #[arg(long, value_enum, default_value_t = ModeArg::Plain)]
    mode: ModeArg,
    /// Messages per second; 0: as fast as --concurrency allows.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Messages to send.
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,
    /// How long to send (e.g. 30s, 5m, 1h).
    #[arg(long, value_parser = duration)]
    duration: Option<Duration>,
    /// Users (openids) the messages come from.
    #[arg(long, default_value_t = 100)]
    users: u32,
    /// Messages in flight at most.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The account's original id (`gh_…`), the pushes' ToUserName; derived from the appid
    /// when not given.
    #[arg(long)]
    original_id: Option<String>,
    /// Send only text messages saying this.
    #[arg(long)]
    text: Option<String>,
    /// How long to wait for an answer (WeChat waits 5 s).
    #[arg(long, default_value = "5s", value_parser = timeout)]
    timeout: Duration,
    #[command(flatten)]
    db: DatabaseArg,
    #[command(flatten)]
    clock: ClockArg,
    /// Serve `GET /metrics` on this address while pushing (deliveries by verdict, their time
    /// cost, messages answered and failed).
    #[arg(long, env = "DATACUBE_PUSH_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
}

/// `--mode`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ModeArg {
    /// Plaintext.
    Plain,
    /// Compatible: plaintext and ciphertext side by side.
    Compat,
    /// Safe: ciphertext only.
    Safe,
}

impl From<ModeArg> for datacube_protocol::Mode {
    fn from(mode: ModeArg) -> datacube_protocol::Mode {
        match mode {
            ModeArg::Plain => datacube_protocol::Mode::Plain,
            ModeArg::Compat => datacube_protocol::Mode::Compat,
            ModeArg::Safe => datacube_protocol::Mode::Safe,
        }
    }
}

pub async fn run(args: PushArgs) -> Result<()> {
    use datacube_push::driver::{self, Stats};
    use std::sync::Arc;
    if args.count.is_none() && args.duration.is_none() {
        return Err(Exit::usage(
            "say how many messages to send: --count N or --duration D",
        ));
    }
    let key = aes_key(args.aes_key.as_deref())?;
    let mode = datacube_protocol::Mode::from(args.mode);
    if mode != datacube_protocol::Mode::Plain && key.is_none() {
        return Err(Exit::usage(
            "--mode compat and safe encrypt: give the EncodingAESKey with --aes-key",
        ));
    }
    let (recorder, now) =
        super::recording_for(&args.db, &args.appid, args.metrics_listen, &args.clock).await?;
    let config = Arc::new(config(&args, key, mode));
    let client = driver::http_client(config.concurrency)?;
    driver::verify_url(&client, &config, &now).await?;
    eprintln!("{} passed URL verification", config.url);
    let stats = Arc::new(Stats::default());
    let started = std::time::Instant::now();
    let progress = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    let running = tokio::spawn(driver::run(
        config.clone(),
        recorder.clone(),
        now.clone(),
        stats.clone(),
    ));
    tokio::pin!(running);
    loop {
        tokio::select! {
            done = &mut running => {
                done.context("the push run failed")??;
                break;
            }
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                progress.set_message(progress_line(&stats, started.elapsed().as_secs_f64()));
                progress.tick();
            }
        }
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let recorded = recorder.finish().await?;
    report(&config, &stats, elapsed);
    println!(
        "  recorded {} events in {} ({} already there)",
        recorded.accepted, args.db.database, recorded.duplicates
    );
    super::account_removed_while_recording(&args.appid, recorded.gone)
}

/// The run's configuration, from the arguments (checked already) and the key and mode.
fn config(
    args: &PushArgs,
    key: Option<datacube_protocol::AesKey>,
    mode: datacube_protocol::Mode,
) -> datacube_push::driver::Config {
    datacube_push::driver::Config {
        original_id: args
            .original_id
            .clone()
            .unwrap_or_else(|| datacube_protocol::default_original_id(&args.appid)),
        appid: args.appid.clone(),
        url: args.url.clone(),
        token: args.token.clone(),
        key,
        mode,
        rate: (args.rate > 0.0).then_some(args.rate),
        count: args.count,
        duration: args.duration,
        users: args.users.max(1),
        concurrency: args.concurrency.max(1),
        timeout: args.timeout,
        deliveries: 3,
        text: args.text.clone(),
    }
}

/// The progress line: messages sent, answered and failed, delivery times and the rate, after
/// `elapsed` seconds.
fn progress_line(s: &datacube_push::driver::Stats, elapsed: f64) -> String {
    use std::sync::atomic::Ordering;
    let sent = s.sent.load(Ordering::Relaxed);
    format!(
        "sent {sent} · answered {} · failed {} · p50 {} · p99 {} · {:.0}/s",
        s.answered.load(Ordering::Relaxed),
        s.failed.load(Ordering::Relaxed),
        s.percentile_ms(0.5)
            .map_or("–".into(), |v| format!("{v:.1} ms")),
        s.percentile_ms(0.99)
            .map_or("–".into(), |v| format!("{v:.1} ms")),
        sent as f64 / elapsed.max(0.001)
    )
}

/// Prints what the run of `elapsed` seconds sent: messages by type, answers, verdicts and
/// delivery times.
fn report(
    config: &datacube_push::driver::Config,
    stats: &datacube_push::driver::Stats,
    elapsed: f64,
) {
    use std::sync::atomic::Ordering;
    let sent = stats.sent.load(Ordering::Relaxed);
    println!(
        "pushed {sent} message{} to {} in {elapsed:.1} s ({:.1}/s), {} mode",
        if sent == 1 { "" } else { "s" },
        config.url,
        sent as f64 / elapsed.max(0.001),
        config.mode.name()
    );
    let types: Vec<String> = stats
        .types()
        .iter()
        .map(|(t, n)| format!("{n} {t}"))
        .collect();
    println!("  messages: {}", types.join(", "));
    println!(
        "  answered {}, failed {} ({} deliveries)",
        stats.answered.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed),
        stats.deliveries.load(Ordering::Relaxed)
    );
    for (verdict, n) in stats.verdicts() {
        println!("  {n} × {verdict}");
    }
    if let (Some(p50), Some(p99), Some(max)) = (
        stats.percentile_ms(0.5),
        stats.percentile_ms(0.99),
        stats.percentile_ms(1.0),
    ) {
        println!("  delivery time: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms");
    }
}
