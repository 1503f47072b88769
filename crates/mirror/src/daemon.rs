//! The daily mirror: one run per scheduled day, at the scheduled time (China time), retried
//! with jitter after a failed or partial run.
//!
//! Each day's run is a *slot* (its China date). A slot's attempts are recorded in the store
//! before they start, under (mirror, slot, attempt), so that instances sharing a database run
//! each attempt once, and a restarted daemon does not run a slot again. A daemon started after
//! a slot's time with no run for it catches up at once. Time is read from the run's clock
//! every second at most, so an emulated clock moved forward is noticed within a second.

use std::time::Duration;

use datacube_api::date::{add_days, china_date, format_date};
use jiff::civil::Date;
use jiff::Timestamp;

use crate::report::RunReport;
use crate::{run_claimed, run_once, Claimed, Context, Mirror};

/// A request to run now (`POST /admin/sync/run`): the whole mirror, or one account. Answered
/// as soon as the run is recorded as started (or refused).
pub struct RunRequest {
    /// One account; every account when `None`.
    pub appid: Option<String>,
    /// Where the answer goes.
    pub reply: tokio::sync::oneshot::Sender<Result<Started, Refused>>,
}

/// A run started on request.
#[derive(Debug, Clone)]
pub struct Started {
    /// Its number in the store.
    pub id: i64,
    /// The mirror's name.
    pub mirror: String,
    /// Its slot: the day's, or `day appid` for one account's run.
    pub slot: String,
    /// Its attempt within the slot.
    pub attempt: i64,
}

/// Why a run asked for was not started.
#[derive(Debug, Clone)]
pub enum Refused {
    /// The appid is no account of the mirror.
    UnknownAccount(String),
    /// A run is under way, here or on another instance.
    Busy(String),
    /// The configuration, read again, is wrong (the one in use stays).
    Configuration(String),
}

/// Reads the mirror's configuration again (its file), for a run asked for.
pub type Reload = Box<dyn Fn() -> Result<Mirror, String> + Send + Sync>;

/// What a daemon is asked besides its schedule: runs now, and how to read its configuration
/// again before them; and where it tells what it knows of itself.
pub struct OnDemand {
    /// Runs asked for.
    pub requests: tokio::sync::mpsc::Receiver<RunRequest>,
    /// The configuration read again before each; `None` keeps the one given.
    pub reload: Option<Reload>,
    /// Kept current by the daemon.
    pub info: std::sync::Arc<std::sync::Mutex<DaemonInfo>>,
}

/// What a daemon knows of itself, for its admin API and dashboard.
#[derive(Debug, Clone, Default)]
pub struct DaemonInfo {
    /// The mirror's name.
    pub name: String,
    /// Its daily time, `HH:MM` China time.
    pub schedule: String,
    /// The accounts its configuration names.
    pub accounts: Vec<String>,
    /// When it looks next.
    pub next: Option<Timestamp>,
}

impl DaemonInfo {
    /// What `mirror` says of itself, with the next attempt unknown.
    pub fn of(mirror: &Mirror) -> DaemonInfo {
        DaemonInfo {
            name: mirror.name.clone(),
            schedule: format!("{:02}:{:02}", mirror.schedule.0, mirror.schedule.1),
            accounts: mirror.named_accounts().map(str::to_owned).collect(),
            next: None,
        }
    }
}

/// Runs asked for within this many seconds of one another (by the run's clock) are one run.
pub const AT_ONCE: i64 = 5;

/// An attempt not finished whose last sign of life (every 30 s while it runs) is older than
/// this (by the run's clock) is taken for dead: its process stopped without recording an end.
pub const STALE: i64 = 300;

fn china() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::fixed(jiff::tz::offset(8))
}

/// When `day`'s run is due.
fn due(day: Date, (hour, minute): (u8, u8)) -> Timestamp {
    day.at(hour as i8, minute as i8, 0, 0)
        .to_zoned(china())
        .map_or(Timestamp::MAX, |z| z.timestamp())
}

/// The latest slot due at `now`.
fn current_slot(now: Timestamp, schedule: (u8, u8)) -> Date {
    let today = china_date(now.as_second());
    if now >= due(today, schedule) {
        today
    } else {
        add_days(today, -1)
    }
}

/// The next slot after `now` and when it is due.
pub fn next_slot(now: Timestamp, schedule: (u8, u8)) -> (Date, Timestamp) {
    let next = add_days(current_slot(now, schedule), 1);
    (next, due(next, schedule))
}

/// What to do about a slot.
#[derive(Debug, PartialEq)]
enum Decision {
    /// Run this attempt now.
    Run(i64),
    /// Look again at this time (a retry's time, or another instance's run under way).
    At(Timestamp),
    /// The slot is done (or given up): wait for the next.
    Done,
}

/// The wait before attempt `attempt + 1`: `retry_delay` doubled per attempt, times 0.5–1.5
/// drawn from (mirror, slot, attempt), so that every instance and a restart agree on it.
fn retry_wait(mirror: &Mirror, slot: &str, attempt: i64) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in mirror
        .name
        .bytes()
        .chain(slot.bytes())
        .chain(attempt.to_le_bytes())
    {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let jitter = 0.5 + (h >> 11) as f64 / (1u64 << 53) as f64;
    let doubled = 1u32 << (attempt - 1).clamp(0, 10) as u32;
    mirror.retry_delay.saturating_mul(doubled).mul_f64(jitter)
}

async fn decide(
    mirror: &Mirror,
    ctx: &Context,
    slot: &str,
    now: Timestamp,
) -> Result<Decision, datacube_store::StoreError> {
    let Some(last) = ctx.store.sync_slot_run(&mirror.name, slot).await? else {
        return Ok(Decision::Run(1));
    };
    let attempts_left = last.attempt <= i64::from(mirror.run_retries);
    let next = |at: Timestamp| {
        if !attempts_left {
            Decision::Done
        } else if now >= at {
            Decision::Run(last.attempt + 1)
        } else {
            Decision::At(at)
        }
    };
    let ts = |s: i64| Timestamp::from_second(s).unwrap_or(Timestamp::MAX);
    Ok(match (last.finished, last.outcome.as_deref()) {
        (None, _) if now.as_second() - last.beat > STALE => next(now),
        // Under way here or on another instance: look again in a while.
        (None, _) => Decision::At(now + jiff::SignedDuration::from_secs(30)),
        (Some(_), Some("ok" | "credentials")) => Decision::Done,
        // Only accounts whose secret was refused failed: a new secret, not a retry, fixes
        // them (the run after the configuration changes, or the next day's).
        (Some(_), Some("partial"))
            if last
                .report
                .as_deref()
                .and_then(|r| serde_json::from_str::<RunReport>(r).ok())
                .is_some_and(|r| !r.retriable()) =>
        {
            Decision::Done
        }
        (Some(_), Some("interrupted")) => next(now),
        (Some(finished), _) => {
            let wait = retry_wait(mirror, slot, last.attempt);
            next(ts(finished) + jiff::SignedDuration::try_from(wait).unwrap_or_default())
        }
    })
}

/// Runs `mirror` every day until `ctx.cancel` is cancelled: at once when the current slot has
/// no run yet, then at each scheduled time, and when `on_demand` asks; `each` gets every
/// run's report. A run under way when it is cancelled ends with its calls in flight, recorded
/// as interrupted.
pub async fn daemon(
    mut mirror: Mirror,
    ctx: Context,
    mut on_demand: Option<OnDemand>,
    each: impl Fn(&RunReport),
) {
    let stopped = || ctx.cancel.is_cancelled();
    tracing::info!(
        mirror = %mirror.name,
        upstream = %datacube_client::redacted_url(&mirror.upstream),
        schedule = %format!("{:02}:{:02} China time", mirror.schedule.0, mirror.schedule.1),
        "mirror daemon started"
    );
    // The next attempt, said when it changes (a run under way elsewhere is looked at every
    // 30 s: that is no news).
    let mut said: Option<Timestamp> = None;
    while !stopped() {
        let now = (ctx.now)();
        let slot = format_date(current_slot(now, mirror.schedule));
        let until = match decide(&mirror, &ctx, &slot, now).await {
            Ok(Decision::Run(attempt)) => {
                tracing::info!(mirror = %mirror.name, %slot, attempt, "mirror run starting");
                match run_once(&mirror, &ctx, Some((&slot, attempt))).await {
                    Ok(Some(report)) => each(&report),
                    Ok(None) => {
                        tracing::info!(%slot, attempt, "another instance took this run");
                        let later = now + jiff::SignedDuration::from_secs(5);
                        wait_until(&ctx, later, None).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot record the mirror run");
                        wait_until(&ctx, now + jiff::SignedDuration::from_secs(30), None).await;
                    }
                }
                continue;
            }
            Ok(Decision::At(at)) => at.min(next_slot(now, mirror.schedule).1),
            Ok(Decision::Done) => next_slot(now, mirror.schedule).1,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the mirror's runs; trying again in 30 s");
                now + jiff::SignedDuration::from_secs(30)
            }
        };
        if let Some(o) = &on_demand {
            if let Ok(mut info) = o.info.lock() {
                info.next = Some(until);
            }
        }
        if said.is_none_or(|at| until.duration_since(at).as_secs().abs() > 300) {
            tracing::info!(
                mirror = %mirror.name,
                next = %datacube_api::date::china_time(until),
                "next mirror attempt"
            );
            said = Some(until);
        }
        let requests = on_demand.as_mut().map(|o| &mut o.requests);
        if let Some(request) = wait_until(&ctx, until, requests).await {
            if let Some(o) = &on_demand {
                run_asked(&mut mirror, &ctx, request, o, &each).await;
            }
            said = None;
        }
    }
    tracing::info!(mirror = %mirror.name, "mirror daemon stopped");
}

/// A run asked for: the configuration read again, the run recorded under the day's slot (or
/// `day appid`) with the next attempt — so that instances asked at once run it once — the
/// answer sent, then the run.
async fn run_asked(
    mirror: &mut Mirror,
    ctx: &Context,
    RunRequest { appid, reply }: RunRequest,
    on_demand: &OnDemand,
    each: &impl Fn(&RunReport),
) {
    if reply.is_closed() {
        return; // the caller gave up waiting
    }
    let (claimed, slot, attempt) =
        match start_asked(mirror, ctx, appid.as_deref(), on_demand, &reply).await {
            Ok(Some(started)) => started,
            Ok(None) => return,
            Err(refused) => {
                let _ = reply.send(Err(refused));
                return;
            }
        };
    tracing::info!(mirror = %mirror.name, %slot, attempt, run = claimed.id, "mirror run asked for, starting");
    let _ = reply.send(Ok(Started {
        id: claimed.id,
        mirror: mirror.name.clone(),
        slot,
        attempt,
    }));
    match run_claimed(mirror, ctx, claimed, appid.as_deref()).await {
        Ok(report) => each(&report),
        Err(e) => tracing::error!(error = %e, "cannot record the mirror run"),
    }
}

/// The run asked for claimed, with its slot and attempt; or why not; `None` when the caller
/// gave up waiting before it was claimed (nothing is claimed for an answer nobody reads).
async fn start_asked(
    mirror: &mut Mirror,
    ctx: &Context,
    appid: Option<&str>,
    on_demand: &OnDemand,
    reply: &tokio::sync::oneshot::Sender<Result<Started, Refused>>,
) -> Result<Option<(Claimed, String, i64)>, Refused> {
    if let Some(reload) = &on_demand.reload {
        let fresh = reload().map_err(Refused::Configuration)?;
        if let Ok(mut info) = on_demand.info.lock() {
            *info = DaemonInfo {
                next: info.next,
                ..DaemonInfo::of(&fresh)
            };
        }
        *mirror = fresh;
    }
    if let Some(a) = appid.filter(|a| !mirror.may_reach(a)) {
        return Err(Refused::UnknownAccount(a.to_owned()));
    }
    let now = (ctx.now)();
    let day = format_date(current_slot(now, mirror.schedule));
    let slot = match appid {
        Some(a) => format!("{day} {a}"),
        None => day,
    };
    let attempt = next_attempt(mirror, ctx, &slot, now).await?;
    if reply.is_closed() {
        return Ok(None);
    }
    // Claimed only if nothing above changed meanwhile — another instance asked at the same
    // moment may have claimed a run after the runs were read.
    let started = (ctx.now)();
    match ctx
        .store
        .start_sync_run_unless_busy(
            (&mirror.name, &slot, attempt),
            started.as_second(),
            (STALE, AT_ONCE),
        )
        .await
    {
        Ok(Some(id)) => Ok(Some((Claimed { id, started }, slot, attempt))),
        Ok(None) => Err(Refused::Busy(
            "another instance started this run first".into(),
        )),
        Err(e) => Err(Refused::Busy(format!("cannot record the run: {e}"))),
    }
}

/// The attempt a run of `slot` asked for at `now` would be, unless the mirror is busy.
///
/// A run of the mirror under way, here or elsewhere (a fresh sign of life), whatever its
/// slot: not two at once. And one of this slot that started moments ago answers requests
/// made "at once" — on several instances, or a button pressed twice — which its own may have
/// finished before they are read.
async fn next_attempt(
    mirror: &Mirror,
    ctx: &Context,
    slot: &str,
    now: Timestamp,
) -> Result<i64, Refused> {
    let unreadable =
        |e: datacube_store::StoreError| Refused::Busy(format!("cannot read the runs: {e}"));
    let runs = ctx
        .store
        .sync_runs(Some(&mirror.name), 50)
        .await
        .map_err(unreadable)?;
    let busy = runs.iter().find(|r| {
        (r.finished.is_none() && now.as_second() - r.beat <= STALE)
            || (r.slot.as_deref() == Some(slot) && (now.as_second() - r.started).abs() < AT_ONCE)
    });
    if let Some(busy) = busy {
        return Err(Refused::Busy(if busy.finished.is_none() {
            format!("run #{} of mirror {} is under way", busy.id, mirror.name)
        } else {
            format!(
                "run #{} of mirror {} started less than {AT_ONCE} s ago",
                busy.id, mirror.name
            )
        }));
    }
    let last = ctx
        .store
        .sync_slot_run(&mirror.name, slot)
        .await
        .map_err(unreadable)?;
    Ok(last.map_or(1, |r| r.attempt + 1))
}

/// Sleeps until the run's clock reads `until`, looking at it every second (it may be moved),
/// or until cancelled, or until a run is asked for (returned).
async fn wait_until(
    ctx: &Context,
    until: Timestamp,
    mut requests: Option<&mut tokio::sync::mpsc::Receiver<RunRequest>>,
) -> Option<RunRequest> {
    loop {
        if ctx.cancel.is_cancelled() {
            return None;
        }
        let left = until.as_millisecond() - (ctx.now)().as_millisecond();
        if left <= 0 {
            return None;
        }
        let nap = Duration::from_millis(left.clamp(1, 1000) as u64);
        let asked = async {
            match requests.as_deref_mut() {
                Some(r) => r.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(nap) => {}
            () = ctx.cancel.cancelled() => return None,
            Some(request) = asked => return Some(request),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn slots_turn_at_the_scheduled_china_time() {
        let s = (8, 30);
        assert_eq!(
            current_slot(t("2026-12-03T08:29:59+08:00"), s),
            jiff::civil::date(2026, 12, 2)
        );
        assert_eq!(
            current_slot(t("2026-12-03T08:30:00+08:00"), s),
            jiff::civil::date(2026, 12, 3)
        );
        assert_eq!(
            next_slot(t("2026-12-03T08:30:00+08:00"), s),
            (
                jiff::civil::date(2026, 12, 4),
                t("2026-12-04T08:30:00+08:00")
            )
        );
        // 08:30 China time is 00:30 UTC.
        assert_eq!(
            current_slot(t("2026-12-03T00:30:00Z"), s),
            jiff::civil::date(2026, 12, 3)
        );
    }

    #[test]
    fn retry_waits_double_with_a_stable_jitter() {
        let m = Mirror {
            name: "m".into(),
            retry_delay: Duration::from_secs(600),
            ..Mirror::default()
        };
        let w1 = retry_wait(&m, "2026-12-03", 1);
        let w2 = retry_wait(&m, "2026-12-03", 2);
        assert_eq!(w1, retry_wait(&m, "2026-12-03", 1));
        assert!(w1 >= Duration::from_secs(300) && w1 < Duration::from_secs(900));
        assert!(w2 >= Duration::from_secs(600) && w2 < Duration::from_secs(1800));
        assert_ne!(w1, retry_wait(&m, "2026-12-04", 1));
    }
}
