//! The daily mirror: one run per scheduled day, at the scheduled time (China time), retried
//! with jitter after a failed or partial run.
//!
//! Each day's run is a *slot* (its China date). A slot's attempts are recorded in the store
//! before they start, under (mirror, slot, attempt), so that instances sharing a database run
//! each attempt once, and a restarted daemon does not run a slot again. A daemon started after
//! a slot's time with no run for it catches up at once. Time is read from the run's clock
//! every second at most, so an emulated clock moved forward is noticed within a second.

use std::sync::atomic::Ordering;
use std::time::Duration;

use datacube_api::date::{add_days, china_date, format_date};
use jiff::civil::Date;
use jiff::Timestamp;

use super::{run_once, Context, Mirror};
use crate::report::RunReport;

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
        (Some(_), Some("ok")) => Decision::Done,
        (Some(_), Some("interrupted")) => next(now),
        (Some(finished), _) => {
            let wait = retry_wait(mirror, slot, last.attempt);
            next(ts(finished) + jiff::SignedDuration::try_from(wait).unwrap_or_default())
        }
    })
}

/// Runs `mirror` every day until `ctx.stop` is set (then `wake` is notified): at once when
/// the current slot has no run yet, then at each scheduled time; `each` gets every run's
/// report. A run under way when `stop` is set ends after its calls in flight, recorded as
/// interrupted.
pub async fn daemon(
    mirror: Mirror,
    ctx: Context,
    wake: std::sync::Arc<tokio::sync::Notify>,
    each: impl Fn(&RunReport),
) {
    let stopped = || ctx.stop.load(Ordering::Relaxed);
    tracing::info!(
        mirror = %mirror.name,
        upstream = %crate::redacted_url(&mirror.upstream),
        schedule = %format!("{:02}:{:02} China time", mirror.schedule.0, mirror.schedule.1),
        "mirror daemon started"
    );
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
                        wait_until(&ctx, &wake, later).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot record the mirror run");
                        wait_until(&ctx, &wake, now + jiff::SignedDuration::from_secs(30)).await;
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
        wait_until(&ctx, &wake, until).await;
    }
    tracing::info!(mirror = %mirror.name, "mirror daemon stopped");
}

/// Sleeps until the run's clock reads `until`, looking at it every second (it may be moved),
/// or until stopped.
async fn wait_until(ctx: &Context, wake: &tokio::sync::Notify, until: Timestamp) {
    loop {
        if ctx.stop.load(Ordering::Relaxed) {
            return;
        }
        let left = until.as_millisecond() - (ctx.now)().as_millisecond();
        if left <= 0 {
            return;
        }
        let nap = Duration::from_millis(left.clamp(1, 1000) as u64);
        tokio::select! {
            () = tokio::time::sleep(nap) => {}
            () = wake.notified() => {}
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
