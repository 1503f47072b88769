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

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datacube_api::date::{add_days, days_between, format_date, monday_of};
use datacube_api::row::{NewFields, Row};
use datacube_api::{Endpoint, ErrCode, Generation, Period};
use datacube_client::{Client, ClientError};
use datacube_store::Store;
use jiff::civil::Date;

use crate::report::{AccountReport, EndpointReport, EndpointStatus, Outcome};
use crate::CancellationToken;

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

/// How a sync treats what it receives.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Calls at once, at most.
    pub concurrency: usize,
    /// Refuse rows with fields the endpoint's shape does not list, instead of keeping them.
    pub strict: bool,
}

/// Why one window could not be mirrored.
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

/// How many examples of rows dated outside their window a report names.
const SKIPPED_NAMED: usize = 5;

/// One endpoint's part of a run, as the workers fill it.
struct Part {
    report: EndpointReport,
    /// No more windows of it are asked (it failed, or the upstream closed it).
    closed: bool,
    new_fields: BTreeSet<String>,
}

impl Part {
    fn new(endpoint: Endpoint, windows: usize) -> Part {
        Part {
            report: EndpointReport {
                endpoint: endpoint.name().to_owned(),
                status: EndpointStatus::Done,
                windows: windows as u64,
                windows_done: 0,
                calls: 0,
                retries: 0,
                rows_stored: 0,
                rows_changed: 0,
                rows_skipped: 0,
                skipped: Vec::new(),
                new_fields: Vec::new(),
                error: None,
            },
            closed: false,
            new_fields: BTreeSet::new(),
        }
    }

    /// One window stored: its rows, the rows dated outside it (the earliest few named), the new
    /// fields it brought.
    fn window_done(&mut self, window: Window, (begin, end): (Date, Date)) {
        self.report.windows_done += 1;
        self.report.rows_stored += window.stored as u64;
        self.report.rows_changed += window.changed;
        self.report.rows_skipped += window.outside.len() as u64;
        // The earliest few, whatever order the windows finish in (they run side by side).
        for d in window.outside {
            self.report.skipped.push(format!(
                "{} (asked {}..{})",
                format_date(d),
                format_date(begin),
                format_date(end)
            ));
        }
        self.report.skipped.sort_unstable();
        self.report.skipped.truncate(SKIPPED_NAMED);
        self.new_fields.extend(window.new_fields);
    }

    /// Its report at the end of the run: the status of an endpoint still open follows from
    /// its windows, the account's error and an interruption.
    fn finish(&mut self, account_failed: bool, interrupted: bool) -> EndpointReport {
        let mut r = self.report.clone();
        r.new_fields = self.new_fields.iter().cloned().collect();
        if !self.closed {
            r.status = match () {
                _ if r.windows == 0 => EndpointStatus::UpToDate,
                _ if r.windows_done == r.windows => EndpointStatus::Done,
                _ if account_failed => EndpointStatus::NotAsked,
                _ if interrupted => EndpointStatus::Interrupted,
                // Unreachable in practice: every window is taken unless one of the above.
                _ => EndpointStatus::Interrupted,
            };
        }
        self.closed = true;
        r
    }
}

/// Runs `plan` for `appid`: at most `options.concurrency` calls at once, the windows of all
/// endpoints taken in turn. An endpoint whose call fails for good (after its retries), or that
/// the upstream closes (47009, 61007), is asked no more; the others go on. What stops the
/// account — its credentials, the token API — stops every endpoint. `cancel` stops the run
/// between calls, leaving the rest for the next one.
///
/// The report's counters and statuses are filled; the account's `local_account` is left to
/// the caller.
pub async fn run(
    client: Arc<Client>,
    store: Store,
    appid: &str,
    plan: &Plan,
    options: Options,
    cancel: CancellationToken,
    progress: Arc<dyn Progress>,
) -> AccountReport {
    let token_calls_before = client.counters.token_calls.load(Ordering::Relaxed);
    // Mirrored for the account as it is now: removed during the run, it gets nothing more.
    let fence = store
        .account(appid)
        .await
        .ok()
        .flatten()
        .map(|a| a.incarnation);
    let run = Arc::new(Run {
        client,
        store,
        fence,
        appid: appid.to_owned(),
        queue: round_robin(plan),
        next: AtomicU64::new(0),
        endpoints: plan.endpoints.iter().map(|(e, _)| *e).collect(),
        parts: plan
            .endpoints
            .iter()
            .map(|(endpoint, windows)| Mutex::new(Part::new(*endpoint, windows.len())))
            .collect(),
        last_ready: plan.last_ready.unwrap_or(EARLIEST),
        strict: options.strict,
        account_error: Mutex::default(),
        cancel,
        progress,
    });
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.concurrency.max(1) {
        workers.spawn(run.clone().work());
    }
    while let Some(joined) = workers.join_next().await {
        // A worker that panicked is a bug; its account stops with it named, rather than
        // passing for an interruption.
        if let Err(e) = joined {
            run.stop_account(format!("internal error: a sync worker failed: {e}"));
        }
    }
    let token_calls = run.client.counters.token_calls.load(Ordering::Relaxed) - token_calls_before;
    run.report(token_calls)
}

/// The windows of every endpoint, round-robin, so that every endpoint moves on together:
/// (the endpoint's place in the plan, the window).
fn round_robin(plan: &Plan) -> Vec<(usize, (Date, Date))> {
    let mut queue = Vec::with_capacity(plan.calls());
    let longest = plan
        .endpoints
        .iter()
        .map(|(_, w)| w.len())
        .max()
        .unwrap_or(0);
    for i in 0..longest {
        for (at, (_, windows)) in plan.endpoints.iter().enumerate() {
            if let Some(w) = windows.get(i) {
                queue.push((at, *w));
            }
        }
    }
    queue
}

/// One account's run, shared by its workers.
struct Run {
    client: Arc<Client>,
    store: Store,
    /// The local account's incarnation when the run began.
    fence: Option<i64>,
    appid: String,
    /// The calls to make, taken in order: `next` is the first not taken yet.
    queue: Vec<(usize, (Date, Date))>,
    next: AtomicU64,
    endpoints: Vec<Endpoint>,
    parts: Vec<Mutex<Part>>,
    last_ready: Date,
    strict: bool,
    /// What stopped the whole account, if anything did.
    account_error: Mutex<Option<String>>,
    /// Cancelled when the run is stopped (SIGINT, SIGTERM, the daemon's end).
    cancel: CancellationToken,
    progress: Arc<dyn Progress>,
}

impl Run {
    /// A worker: takes the next call until none is left, or the run or the account stops.
    async fn work(self: Arc<Self>) {
        loop {
            if self.cancel.is_cancelled() || self.account_error.lock().map_or(true, |e| e.is_some())
            {
                return;
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed) as usize;
            let Some(&(at, window)) = self.queue.get(i) else {
                return;
            };
            if self.parts[at].lock().map_or(true, |p| p.closed) {
                continue;
            }
            let mut retried = 0;
            let outcome = mirror_one(
                &self.client,
                (&self.store, self.fence),
                &self.appid,
                (self.endpoints[at], window.0, window.1),
                self.last_ready,
                self.strict,
                &mut retried,
            )
            .await;
            if !self.settle(at, window, retried, outcome) {
                return;
            }
        }
    }

    /// Records the outcome of a call for the endpoint at `at`; false when the worker stops
    /// (the run was interrupted, or the account stopped).
    fn settle(
        &self,
        at: usize,
        window: (Date, Date),
        retried: u64,
        outcome: Result<Window, SyncError>,
    ) -> bool {
        let Ok(mut p) = self.parts[at].lock() else {
            return false;
        };
        p.report.calls += 1;
        p.report.retries += retried;
        let error = match outcome {
            Ok(done) => {
                let stored = done.stored;
                p.window_done(done, window);
                drop(p);
                self.progress.window_done(self.endpoints[at], stored);
                return true;
            }
            // 47009: this endpoint is offline upstream (WeChat's old article endpoints since
            // 2026); 61007: read as a third-party platform without the endpoint's permission
            // set. The other endpoints go on.
            Err(SyncError::Client(ClientError::Api { code, errmsg, .. }))
                if closed_upstream(code).is_some() =>
            {
                let status = closed_upstream(code).unwrap_or(EndpointStatus::Failed);
                (status, format!("{code} {errmsg}"))
            }
            // Stopped (SIGINT, SIGTERM): the window is left for the next run.
            Err(SyncError::Client(ClientError::Interrupted)) => return false,
            Err(SyncError::Client(e)) if e.stops_the_account() => {
                drop(p);
                self.stop_account(e.to_string());
                return false;
            }
            Err(e) => (EndpointStatus::Failed, e.to_string()),
        };
        if !p.closed {
            p.closed = true;
            (p.report.status, p.report.error) = (error.0, Some(error.1));
        }
        true
    }

    /// Stops the whole account, for this reason (the first given stays).
    fn stop_account(&self, why: String) {
        if let Ok(mut error) = self.account_error.lock() {
            error.get_or_insert(why);
        }
    }

    /// The account's report, its endpoints' figures added up.
    fn report(&self, token_calls: u64) -> AccountReport {
        let error = self.account_error.lock().ok().and_then(|mut e| e.take());
        let interrupted = self.cancel.is_cancelled();
        let mut report = AccountReport {
            appid: self.appid.clone(),
            outcome: Outcome::Ok,
            error,
            local_account: None,
            seconds: 0.0,
            calls: 0,
            retries: 0,
            token_calls,
            rows_stored: 0,
            rows_changed: 0,
            rows_skipped: 0,
            endpoints: Vec::new(),
        };
        for part in &self.parts {
            let Ok(mut p) = part.lock() else { continue };
            let r = p.finish(report.error.is_some(), interrupted);
            report.calls += r.calls;
            report.retries += r.retries;
            report.rows_stored += r.rows_stored;
            report.rows_changed += r.rows_changed;
            report.rows_skipped += r.rows_skipped;
            report.endpoints.push(r);
        }
        report.settle();
        report
    }
}

/// The status of an endpoint the upstream closed: 47009 (offline: WeChat's old article
/// endpoints since 2026) or 61007 (read as a third-party platform without its permission set).
fn closed_upstream(code: i64) -> Option<EndpointStatus> {
    match i32::try_from(code).ok().and_then(ErrCode::from_code)? {
        ErrCode::ApiOffline => Some(EndpointStatus::Offline),
        ErrCode::ApiUnauthorizedToComponent => Some(EndpointStatus::Unauthorized),
        _ => None,
    }
}

/// Answers up to this size are validated on the async thread that received them.
const INLINE_PARSE: usize = 64 << 10;

/// What one window came to.
struct Window {
    /// Rows stored.
    stored: usize,
    /// Of those, rows new or changed.
    changed: u64,
    /// The `ref_date` of each row dated outside the window (not stored).
    outside: Vec<Date>,
    /// Fields no shape lists, kept.
    new_fields: BTreeSet<String>,
}

async fn mirror_one(
    client: &Client,
    (store, fence): (&Store, Option<i64>),
    appid: &str,
    (endpoint, begin, end): (Endpoint, Date, Date),
    last_ready: Date,
    strict: bool,
    retried: &mut u64,
) -> Result<Window, SyncError> {
    let body = client
        .datacube_counted(endpoint, begin, end, retried)
        .await?;
    let new = if strict {
        NewFields::Refuse
    } else {
        NewFields::Keep
    };
    let inline = body.len() <= INLINE_PARSE;
    let validate = move || {
        let parsed = datacube_api::row::parse_list(endpoint, body.as_bytes(), new);
        (parsed, says_delayed(&body))
    };
    // Up to 64 MiB of JSON to validate: a large answer is CPU work for the blocking threads
    // (a server with `--mirror` keeps answering meanwhile); a small one — nearly all — costs
    // less than handing it over.
    let (parsed, delayed) = if inline {
        validate()
    } else {
        tokio::task::spawn_blocking(validate)
            .await
            .map_err(|e| SyncError::Answer {
                endpoint,
                begin,
                end,
                error: format!("internal error: {e}"),
            })?
    };
    let parsed = parsed.map_err(|e| SyncError::Answer {
        endpoint,
        begin,
        end,
        error: e.to_string(),
    })?;
    let (rows, outside): (Vec<Row>, Vec<Row>) = parsed
        .rows
        .into_iter()
        .partition(|r| r.ref_date >= begin && r.ref_date <= end);
    let stored = rows.len();
    // `"is_delay":true`: the upstream says the window may still change.
    let final_through = (!delayed).then(|| final_through(endpoint, last_ready));
    let changed = store
        .mirror_window(appid, endpoint, (begin, end), rows, final_through, fence)
        .await?;
    Ok(Window {
        stored,
        changed,
        outside: outside.into_iter().map(|r| r.ref_date).collect(),
        new_fields: parsed.new_fields,
    })
}

/// Whether an answer may still change: a 2025 answer's `is_delay` is anything but absent or
/// `false` (`true`, `1`, `"true"`, given twice…: in doubt, the days are fetched again).
fn says_delayed(body: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Delay<'a> {
        #[serde(borrow)]
        is_delay: Option<&'a serde_json::value::RawValue>,
    }
    match serde_json::from_str::<Delay>(body) {
        Ok(d) => d.is_delay.is_some_and(|v| v.get() != "false"),
        Err(_) => true,
    }
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
        assert!(says_delayed(r#"{"list":[],"is_delay":1}"#));
        assert!(says_delayed(r#"{"list":[],"is_delay":"true"}"#));
        assert!(says_delayed(
            r#"{"list":[],"is_delay":false,"is_delay":true}"#
        ));
    }
}
