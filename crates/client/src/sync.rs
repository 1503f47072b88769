//! `datacube sync`: mirror an account's statistics from WeChat (or any compatible server)
//! into datacube's store, incrementally.
//!
//! For each endpoint the range to mirror, minus the days already mirrored as final, is cut
//! into the fewest windows the endpoint's span allows; each window is one call, and its
//! answer replaces the stored rows of its days in one transaction that also records which of
//! those days are final. A day is final once WeChat will not change it any more: a day is
//! final once it is ready (yesterday after 08:00), except getarticletotal's (its details grow
//! for 7 days) and getarticletotaldetail's (30 days, or while the answer says `is_delay`); a
//! week or month once it has ended. Interrupted, a sync resumes where it stopped; run again,
//! it fetches only what it lacks or what could still change.
//!
//! The 2025 endpoints are asked from 2025-11-01 on (they have nothing before). The six old
//! article endpoints are asked over the whole range: an upstream that still serves them (a
//! `datacube serve`, WeChat before it retired them) so gets mirrored whole, and one that
//! answers 47009 is asked once (see [`run`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use datacube_api::date::{add_days, days_between, monday_of};
use datacube_api::{Endpoint, Generation, Period};
use datacube_store::Store;
use jiff::civil::Date;

use crate::client::{Client, ClientError};

/// WeChat's statistics start on this day.
pub const EARLIEST: Date = jiff::civil::date(2014, 12, 1);

/// The last label of `endpoint` whose figures will not change, when `last_ready` is the last
/// ready day.
pub fn final_through(endpoint: Endpoint, last_ready: Date) -> Date {
    match endpoint.period() {
        Period::Day | Period::Hour => match endpoint {
            // Details are added day by day for 7 days after the send.
            Endpoint::GetArticleTotal => add_days(last_ready, -6),
            // A publish day's snapshots are added for 30 days.
            Endpoint::GetArticleTotalDetail => add_days(
                last_ready,
                -(datacube_api::endpoint::PUBLISHED_WINDOW_DAYS - 1),
            ),
            _ => last_ready,
        },
        Period::Week => monday_of(add_days(last_ready, -6)),
        Period::Month => add_days(add_days(last_ready, 1).first_of_month(), -1).first_of_month(),
    }
}

/// The last label of `endpoint` a server serves when `last_ready` is the last ready day.
fn last_label(endpoint: Endpoint, last_ready: Date) -> Date {
    match endpoint.period() {
        Period::Day | Period::Hour => last_ready,
        _ => final_through(endpoint, last_ready),
    }
}

/// `[from, to]` minus `done` (sorted, merged ranges), as sorted ranges.
pub fn missing(from: Date, to: Date, done: &[(Date, Date)]) -> Vec<(Date, Date)> {
    let mut out = Vec::new();
    let mut at = from;
    for &(lo, hi) in done {
        if hi < at {
            continue;
        }
        if lo > to {
            break;
        }
        if lo > at {
            out.push((at, add_days(lo, -1).min(to)));
        }
        at = add_days(hi, 1);
        if at > to {
            return out;
        }
    }
    if at <= to {
        out.push((at, to));
    }
    out
}

/// The fewest windows that cover `ranges` with calls of `endpoint`'s span.
pub fn windows(endpoint: Endpoint, ranges: &[(Date, Date)]) -> Vec<(Date, Date)> {
    let span = i64::from(endpoint.max_span());
    let mut out = Vec::new();
    for &(lo, hi) in ranges {
        let mut at = lo;
        while at <= hi {
            let end = add_days(at, span - 1).min(hi);
            out.push((at, end));
            at = add_days(end, 1);
        }
    }
    out
}

/// What a sync will do: the windows to fetch, per endpoint.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Per endpoint, in the order given.
    pub endpoints: Vec<(Endpoint, Vec<(Date, Date)>)>,
    /// The last ready day the plan was made for.
    pub last_ready: Option<Date>,
}

impl Plan {
    /// Calls in all.
    pub fn calls(&self) -> usize {
        self.endpoints.iter().map(|(_, w)| w.len()).sum()
    }
}

/// The days of `[from, to]` a sync asks `endpoint` for: the 2025 endpoints from their first
/// day on.
pub fn span_of(endpoint: Endpoint, from: Date, to: Date) -> (Date, Date) {
    match endpoint.generation() {
        Generation::Published => (from.max(endpoint.first_day()), to),
        Generation::Classic => (from, to),
    }
}

/// Plans a sync of `appid` for `endpoints` over `[from, to]` (labels; `to` no later than the
/// last ready day).
pub async fn plan(
    store: &Store,
    appid: &str,
    endpoints: &[Endpoint],
    (from, to): (Date, Date),
    last_ready: Date,
) -> Result<Plan, datacube_store::StoreError> {
    let mut plan = Plan {
        endpoints: Vec::new(),
        last_ready: Some(last_ready),
    };
    for &endpoint in endpoints {
        let (from, to) = span_of(endpoint, from, to);
        let to = to.min(last_label(endpoint, last_ready));
        let done = store.final_ranges(appid, endpoint).await?;
        let ranges = if from <= to {
            missing(from, to, &done)
        } else {
            Vec::new()
        };
        plan.endpoints.push((endpoint, windows(endpoint, &ranges)));
    }
    Ok(plan)
}

/// Per-endpoint progress, for a progress bar.
pub trait Progress: Send + Sync {
    /// A window of `endpoint` is mirrored: `rows` rows.
    fn window_done(&self, endpoint: Endpoint, rows: usize);
}

impl Progress for () {
    fn window_done(&self, _: Endpoint, _: usize) {}
}

/// What a sync did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Windows mirrored.
    pub windows: u64,
    /// Rows stored.
    pub rows: u64,
    /// Windows left undone (interrupted, or stopped by an error).
    pub left: u64,
    /// Endpoints the upstream refused for good — 47009 (offline) or 61007 (a third-party
    /// platform without the endpoint's permission set) — each asked no more after that
    /// answer: the endpoint, the code, and the windows not asked.
    pub offline: Vec<(Endpoint, i64, u64)>,
}

/// Why a sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The client failed (45009, credentials, an error after every retry…).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The answer did not fit the endpoint's shape.
    #[error("{endpoint} {begin}..{end}: {error}")]
    Answer {
        /// The endpoint.
        endpoint: Endpoint,
        /// The window.
        begin: Date,
        /// The window.
        end: Date,
        /// What is wrong.
        error: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] datacube_store::StoreError),
}

/// Runs `plan` with at most `concurrency` calls at once; windows of all endpoints are taken
/// in turn. Stops early, leaving the rest for the next run, when `stop` becomes true or a
/// call fails for good (its error is returned with the summary of what was done).
pub async fn run(
    client: Arc<Client>,
    store: Store,
    appid: &str,
    plan: &Plan,
    concurrency: usize,
    stop: Arc<AtomicBool>,
    progress: Arc<dyn Progress>,
) -> (Summary, Option<SyncError>) {
    let last_ready = plan.last_ready.unwrap_or(EARLIEST);
    // Round-robin over the endpoints, so that every endpoint moves on together.
    let mut queue: Vec<(Endpoint, (Date, Date))> = Vec::with_capacity(plan.calls());
    let longest = plan
        .endpoints
        .iter()
        .map(|(_, w)| w.len())
        .max()
        .unwrap_or(0);
    for i in 0..longest {
        for (endpoint, windows) in &plan.endpoints {
            if let Some(w) = windows.get(i) {
                queue.push((*endpoint, *w));
            }
        }
    }
    let total = queue.len() as u64;
    let next = Arc::new(AtomicU64::new(0));
    let queue = Arc::new(queue);
    let rows = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed: Arc<std::sync::Mutex<Option<SyncError>>> = Arc::default();
    // Endpoints answered 47009, and how many of their windows were not asked.
    let offline: Arc<std::sync::Mutex<Vec<(Endpoint, i64, u64)>>> = Arc::default();
    // Calls answered 47009 (more than one per endpoint when several were in flight).
    let offline_answers = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, store, appid) = (client.clone(), store.clone(), appid.to_owned());
        let (queue, next, rows, done, failed, stop, progress) = (
            queue.clone(),
            next.clone(),
            rows.clone(),
            done.clone(),
            failed.clone(),
            stop.clone(),
            progress.clone(),
        );
        let (offline, offline_answers) = (offline.clone(), offline_answers.clone());
        workers.spawn(async move {
            loop {
                if stop.load(Ordering::Relaxed) || failed.lock().map_or(true, |f| f.is_some()) {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&(endpoint, (begin, end))) = queue.get(i) else {
                    return;
                };
                let skip = |list: &mut Vec<(Endpoint, i64, u64)>| {
                    let entry = list.iter_mut().find(|(e, _, _)| *e == endpoint);
                    entry.map(|(_, _, skipped)| *skipped += 1).is_some()
                };
                if offline.lock().is_ok_and(|mut o| skip(&mut o)) {
                    continue;
                }
                let outcome =
                    mirror_one(&client, &store, &appid, endpoint, begin, end, last_ready).await;
                match outcome {
                    Ok(n) => {
                        rows.fetch_add(n as u64, Ordering::Relaxed);
                        done.fetch_add(1, Ordering::Relaxed);
                        progress.window_done(endpoint, n);
                    }
                    // 47009: this endpoint is offline upstream (WeChat's old article
                    // endpoints since 2026); 61007: read as a third-party platform without
                    // the endpoint's permission set. The other endpoints go on.
                    Err(SyncError::Client(ClientError::Api {
                        code: code @ (47009 | 61007),
                        ..
                    })) => {
                        offline_answers.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut o) = offline.lock() {
                            if !o.iter().any(|(e, _, _)| *e == endpoint) {
                                o.push((endpoint, code, 0));
                            }
                        }
                    }
                    Err(e) => {
                        if let Ok(mut f) = failed.lock() {
                            f.get_or_insert(e);
                        }
                        return;
                    }
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let done = done.load(Ordering::Relaxed);
    let offline = offline.lock().map(|o| o.clone()).unwrap_or_default();
    // The calls answered 47009 and the windows not asked are not left for later in this run.
    let answered_offline =
        offline_answers.load(Ordering::Relaxed) + offline.iter().map(|(_, _, n)| n).sum::<u64>();
    let summary = Summary {
        windows: done,
        rows: rows.load(Ordering::Relaxed),
        left: total - done - answered_offline,
        offline,
    };
    let error = failed.lock().ok().and_then(|mut f| f.take());
    (summary, error)
}

async fn mirror_one(
    client: &Client,
    store: &Store,
    appid: &str,
    endpoint: Endpoint,
    begin: Date,
    end: Date,
    last_ready: Date,
) -> Result<usize, SyncError> {
    let body = client.datacube_raw(endpoint, begin, end).await?;
    let rows = datacube_api::row::parse_list(endpoint, body.as_bytes()).map_err(|e| {
        SyncError::Answer {
            endpoint,
            begin,
            end,
            error: e.to_string(),
        }
    })?;
    let n = rows.len();
    // `"is_delay":true`: the upstream says the window may still change.
    let final_through = (!says_delayed(&body)).then(|| final_through(endpoint, last_ready));
    store
        .mirror_window(appid, endpoint, (begin, end), rows, final_through)
        .await?;
    Ok(n)
}

/// Whether a 2025 answer says `"is_delay":true`.
fn says_delayed(body: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Delay {
        #[serde(default)]
        is_delay: bool,
    }
    serde_json::from_str::<Delay>(body).is_ok_and(|d| d.is_delay)
}

/// Days from `a` to `b`, both included (for reports).
pub fn days(a: Date, b: Date) -> i64 {
    days_between(a, b) + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn ranges_are_cut_into_the_fewest_windows() {
        let w = windows(
            Endpoint::GetUserSummary,
            &[(date(2024, 1, 1), date(2024, 1, 15))],
        );
        assert_eq!(
            w,
            [
                (date(2024, 1, 1), date(2024, 1, 7)),
                (date(2024, 1, 8), date(2024, 1, 14)),
                (date(2024, 1, 15), date(2024, 1, 15)),
            ]
        );
        assert_eq!(
            windows(
                Endpoint::GetArticleTotal,
                &[(date(2024, 1, 1), date(2024, 1, 3))]
            )
            .len(),
            3
        );
        assert_eq!(
            windows(
                Endpoint::GetInterfaceSummary,
                &[(date(2024, 1, 1), date(2024, 12, 31))]
            )
            .len(),
            13
        );
    }

    #[test]
    fn what_is_missing_is_what_is_not_final() {
        let (a, b) = (date(2024, 1, 1), date(2024, 1, 31));
        assert_eq!(missing(a, b, &[]), [(a, b)]);
        assert_eq!(
            missing(
                a,
                b,
                &[
                    (date(2023, 12, 1), date(2024, 1, 10)),
                    (date(2024, 1, 20), date(2024, 1, 25))
                ]
            ),
            [
                (date(2024, 1, 11), date(2024, 1, 19)),
                (date(2024, 1, 26), b)
            ]
        );
        assert!(missing(a, b, &[(date(2023, 1, 1), date(2024, 2, 1))]).is_empty());
    }

    #[test]
    fn final_days_follow_the_period() {
        let ready = date(2024, 5, 15); // a Wednesday
        assert_eq!(final_through(Endpoint::GetUserSummary, ready), ready);
        assert_eq!(
            final_through(Endpoint::GetArticleTotal, ready),
            date(2024, 5, 9)
        );
        // The last complete week is 05-06..05-12.
        assert_eq!(
            final_through(Endpoint::GetUpstreamMsgWeek, ready),
            date(2024, 5, 6)
        );
        assert_eq!(
            final_through(Endpoint::GetUpstreamMsgMonth, ready),
            date(2024, 4, 1)
        );
        assert_eq!(
            final_through(Endpoint::GetUpstreamMsgMonth, date(2024, 4, 30)),
            date(2024, 4, 1)
        );
        assert_eq!(
            final_through(Endpoint::GetArticleTotalDetail, ready),
            date(2024, 4, 16)
        );
    }

    #[test]
    fn the_2025_endpoints_are_asked_from_their_first_day() {
        let (from, to) = (date(2025, 1, 1), date(2026, 11, 20));
        assert_eq!(
            span_of(Endpoint::GetArticleRead, from, to),
            (date(2025, 11, 1), to)
        );
        assert_eq!(span_of(Endpoint::GetArticleSummary, from, to), (from, to));
        let early = date(2025, 10, 1);
        let (a, b) = span_of(Endpoint::GetBizSummary, from, early);
        assert!(a > b, "nothing to ask before 2025-11-01");
    }

    #[test]
    fn is_delay_is_read_from_the_answer() {
        assert!(says_delayed(r#"{"list":[],"is_delay":true}"#));
        assert!(!says_delayed(r#"{"list":[],"is_delay":false}"#));
        assert!(!says_delayed(r#"{"list":[]}"#));
    }
}
