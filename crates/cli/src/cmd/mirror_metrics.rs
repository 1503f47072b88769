//! `serve --mirror`'s metrics: per mirror and per account of its configuration, every series
//! present from the start (at zero, or `never`), so that a staleness alert fires for a mirror
//! or an account that never worked and `increase()` sees the first run. Described in
//! `datacube_server::metrics`; alerting rules on them in `deploy/prometheus/`.

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex};

use datacube_mirror::report::{Outcome, RunReport};
use datacube_mirror::Mirror;

/// Accounts per mirror with series of their own: those of the configuration, and a third-party
/// platform's authorizers as they appear, up to this many (the list comes from the upstream).
const MAX_ACCOUNTS: usize = 1000;

/// The appids with series, per mirror (a mirror registered has an entry).
static ACCOUNTS: LazyLock<Mutex<HashMap<String, HashSet<String>>>> =
    LazyLock::new(Default::default);

/// The outcomes an account's series take: `never` until its first run ends.
fn outcomes() -> impl Iterator<Item = &'static str> {
    std::iter::once("never").chain(Outcome::ALL.iter().map(|o| o.as_str()))
}

/// Sets the account's outcome series: 1 on `now`, 0 on the others.
fn set_outcome(mirror: &str, appid: &str, now: &str) {
    for outcome in outcomes() {
        metrics::gauge!(
            "datacube_sync_account_outcome",
            "mirror" => mirror.to_owned(),
            "appid" => appid.to_owned(),
            "outcome" => outcome
        )
        .set(if outcome == now { 1.0 } else { 0.0 });
    }
}

/// Whether `appid` of `mirror` has series (given them now if there is room).
fn tracked(mirror: &str, appid: &str) -> bool {
    let Ok(mut all) = ACCOUNTS.lock() else {
        return false;
    };
    let known = all.entry(mirror.to_owned()).or_default();
    if known.contains(appid) {
        return true;
    }
    if known.len() >= MAX_ACCOUNTS {
        return false;
    }
    known.insert(appid.to_owned());
    set_outcome(mirror, appid, "never");
    metrics::gauge!(
        "datacube_sync_account_last_success_timestamp_seconds",
        "mirror" => mirror.to_owned(),
        "appid" => appid.to_owned()
    )
    .set(0.0);
    true
}

/// The series of `mirror` and of every account its configuration names, at zero — those it
/// does not have yet: a configuration read again keeps what was recorded.
pub fn register(mirror: &Mirror) {
    let name = mirror.name.clone();
    let known = ACCOUNTS
        .lock()
        .map(|mut all| {
            let had = all.contains_key(&name);
            all.entry(name.clone()).or_default();
            had
        })
        .unwrap_or(true);
    for appid in mirror.named_accounts() {
        tracked(&name, appid);
    }
    if known {
        return;
    }
    for outcome in Outcome::ALL {
        metrics::counter!("datacube_sync_runs_total", "mirror" => name.clone(), "outcome" => outcome.as_str())
            .absolute(0);
    }
    metrics::counter!("datacube_sync_rows_total", "mirror" => name.clone()).absolute(0);
    metrics::gauge!("datacube_sync_last_success_timestamp_seconds", "mirror" => name.clone())
        .set(0.0);
}

/// The last successes and outcomes the database recorded (earlier runs, other instances):
/// a restarted server does not say "never" of a mirror that worked yesterday.
pub async fn seed(store: &datacube_store::Store, mirror: &str) {
    let Ok(runs) = store.sync_runs(Some(mirror), 500).await else {
        return;
    };
    let mut mirror_done = false;
    let mut seen: HashSet<String> = HashSet::new();
    let mut succeeded: HashSet<String> = HashSet::new();
    // Newest first.
    for run in &runs {
        let (Some(finished), Some(report)) = (run.finished, run.report.as_deref()) else {
            continue;
        };
        let Ok(report) = serde_json::from_str::<RunReport>(report) else {
            continue;
        };
        if !mirror_done && report.only.is_none() && report.outcome == Outcome::Ok {
            mirror_done = true;
            metrics::gauge!("datacube_sync_last_success_timestamp_seconds", "mirror" => mirror.to_owned())
                .set(finished as f64);
        }
        for account in &report.accounts {
            if !tracked(mirror, &account.appid) {
                continue;
            }
            if seen.insert(account.appid.clone()) {
                set_outcome(mirror, &account.appid, account.outcome.as_str());
            }
            if account.outcome == Outcome::Ok && succeeded.insert(account.appid.clone()) {
                metrics::gauge!(
                    "datacube_sync_account_last_success_timestamp_seconds",
                    "mirror" => mirror.to_owned(),
                    "appid" => account.appid.clone()
                )
                .set(finished as f64);
            }
        }
    }
}

/// A run that ended: its outcome, the rows it stored new or changed, each account's outcome,
/// and the times of success (real time: what Prometheus' `time()` compares with).
pub fn record(report: &RunReport) {
    let mirror = report.mirror.clone();
    let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
    metrics::counter!("datacube_sync_runs_total", "mirror" => mirror.clone(), "outcome" => report.outcome.as_str())
        .increment(1);
    metrics::counter!("datacube_sync_rows_total", "mirror" => mirror.clone())
        .increment(report.rows_changed);
    // A run of one account asked for is no run of the whole mirror.
    if report.outcome == Outcome::Ok && report.only.is_none() {
        metrics::gauge!("datacube_sync_last_success_timestamp_seconds", "mirror" => mirror.clone())
            .set(now);
    }
    for account in &report.accounts {
        if !tracked(&mirror, &account.appid) {
            continue;
        }
        set_outcome(&mirror, &account.appid, account.outcome.as_str());
        if account.outcome == Outcome::Ok {
            metrics::gauge!(
                "datacube_sync_account_last_success_timestamp_seconds",
                "mirror" => mirror.clone(),
                "appid" => account.appid.clone()
            )
            .set(now);
        }
    }
}
