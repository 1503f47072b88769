//! What a run of `datacube sync` did, per account and per endpoint: the report printed with
//! `--report json`, stored with each run, and shown by `datacube sync --status` and the admin
//! API.

use serde::{Deserialize, Serialize};

/// How an endpoint of an account ended in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    /// Every window planned was mirrored.
    Done,
    /// Nothing to ask: every day in range is mirrored for good.
    UpToDate,
    /// The upstream answered 47009: the endpoint is offline there (WeChat's old article
    /// endpoints since 2026). Not an error.
    Offline,
    /// The upstream answered 61007: the third-party platform was not granted the endpoint's
    /// permission set. Not an error.
    Unauthorized,
    /// A call failed for good (after its retries); the endpoint's other windows were not
    /// asked. The other endpoints went on.
    Failed,
    /// The run was stopped (SIGINT, SIGTERM) before every window was asked.
    Interrupted,
    /// The account's trouble (its credentials, the token API) stopped the run before these
    /// windows were asked.
    NotAsked,
}

impl EndpointStatus {
    /// Whether the endpoint is as mirrored as the upstream allows.
    pub fn is_complete(self) -> bool {
        matches!(
            self,
            EndpointStatus::Done
                | EndpointStatus::UpToDate
                | EndpointStatus::Offline
                | EndpointStatus::Unauthorized
        )
    }
}

/// One endpoint of one account in a run.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointReport {
    /// The endpoint's name.
    pub endpoint: String,
    /// How it ended.
    pub status: EndpointStatus,
    /// Windows (calls) planned.
    pub windows: u64,
    /// Windows mirrored.
    pub windows_done: u64,
    /// Calls made (first attempts).
    pub calls: u64,
    /// Attempts after the first: retries after `-1`, HTTP 5xx, timeouts…, slow-downs after
    /// `45011`, calls again with a renewed token.
    pub retries: u64,
    /// Rows stored.
    pub rows_stored: u64,
    /// Of those, rows not stored so before (new, or changed since an earlier run): what the
    /// run added to the mirror.
    #[serde(default)]
    pub rows_changed: u64,
    /// Rows the upstream answered dated outside the window asked: not stored.
    pub rows_skipped: u64,
    /// The first few of those, each as `ref_date (asked begin..end)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// Fields the endpoint's documentation does not list, kept as sent (`url`,
    /// `details[].url`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_fields: Vec<String>,
    /// Why it failed (or the code that closed it).
    pub error: Option<String>,
}

/// How an account (or a whole run) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Everything the upstream serves is mirrored.
    Ok,
    /// Some endpoints are complete, others failed or were not reached.
    Partial,
    /// Nothing was completed.
    Failed,
    /// Stopped by a signal; run again to resume.
    Interrupted,
    /// An account only: the token API refused its appid or secret (40001, 40013, 40125…).
    /// Not retried — running again cannot fix a secret — and told apart in the report, the
    /// metrics and the advice.
    Credentials,
}

impl Outcome {
    /// Every outcome, for metrics present from the first scrape.
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Partial,
        Outcome::Failed,
        Outcome::Interrupted,
        Outcome::Credentials,
    ];

    /// The name stored and shown: `ok`, `partial`, `failed`, `interrupted`, `credentials`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
            Outcome::Credentials => "credentials",
        }
    }

    /// The outcome of parts that ended so (an empty list is [`Outcome::Ok`]).
    pub fn of(parts: impl IntoIterator<Item = Outcome>) -> Outcome {
        let (mut ok, mut bad, mut interrupted) = (false, false, false);
        // Whether every part that failed failed for its credentials.
        let mut refused = true;
        for p in parts {
            match p {
                Outcome::Ok => ok = true,
                Outcome::Partial => (ok, bad, refused) = (true, true, false),
                Outcome::Failed => (bad, refused) = (true, false),
                Outcome::Credentials => bad = true,
                Outcome::Interrupted => interrupted = true,
            }
        }
        match (ok, bad, interrupted) {
            (_, _, true) => Outcome::Interrupted,
            (false, true, _) if refused => Outcome::Credentials,
            (true, true, _) => Outcome::Partial,
            (false, true, _) => Outcome::Failed,
            _ => Outcome::Ok,
        }
    }
}

/// One account in a run.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountReport {
    /// Its appid.
    pub appid: String,
    /// How it ended.
    pub outcome: Outcome,
    /// What stopped the whole account (credentials, the token API), if anything did.
    pub error: Option<String>,
    /// What happened to the local account, in words (added, its secret updated), if anything.
    pub local_account: Option<String>,
    /// How long it took, in seconds.
    #[serde(default)]
    pub seconds: f64,
    /// Datacube calls made (first attempts).
    pub calls: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// Token requests.
    pub token_calls: u64,
    /// Rows stored.
    pub rows_stored: u64,
    /// Of those, rows new or changed.
    #[serde(default)]
    pub rows_changed: u64,
    /// Rows dated outside their window, not stored.
    pub rows_skipped: u64,
    /// Per endpoint, in the order asked.
    pub endpoints: Vec<EndpointReport>,
}

impl AccountReport {
    /// An account that could not be mirrored at all.
    pub fn failed(appid: &str, error: String) -> AccountReport {
        AccountReport {
            appid: appid.to_owned(),
            outcome: Outcome::Failed,
            error: Some(error),
            local_account: None,
            seconds: 0.0,
            calls: 0,
            retries: 0,
            token_calls: 0,
            rows_stored: 0,
            rows_changed: 0,
            rows_skipped: 0,
            endpoints: Vec::new(),
        }
    }

    /// An account whose appid or secret the token API refused.
    pub fn refused(appid: &str, error: String) -> AccountReport {
        AccountReport {
            outcome: Outcome::Credentials,
            ..AccountReport::failed(appid, error)
        }
    }

    /// The account's outcome from its endpoints' and its own error.
    pub fn settle(&mut self) {
        let complete = self
            .endpoints
            .iter()
            .filter(|e| e.status.is_complete())
            .count();
        let interrupted = self
            .endpoints
            .iter()
            .any(|e| e.status == EndpointStatus::Interrupted);
        self.outcome = if interrupted {
            Outcome::Interrupted
        } else if self.error.is_none() && complete == self.endpoints.len() {
            Outcome::Ok
        } else if complete > 0 {
            Outcome::Partial
        } else {
            Outcome::Failed
        };
    }
}

/// A whole run.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The mirror's name (a configuration's `name`); empty for a one-shot sync with flags.
    pub mirror: String,
    /// The server mirrored.
    pub upstream: String,
    /// When it started (RFC 3339, by the run's clock).
    pub started: String,
    /// When it ended.
    pub finished: String,
    /// How long it took, in seconds (real time).
    pub seconds: f64,
    /// How it ended.
    pub outcome: Outcome,
    /// What stopped the run before any account (a third-party platform's list of accounts
    /// could not be read…).
    pub error: Option<String>,
    /// The one account a run asked for mirrored (`POST /admin/sync/run` with an appid); absent
    /// for a run of every account.
    #[serde(default)]
    pub only: Option<String>,
    /// Notes for people: how many accounts authorized a component…
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Datacube calls made, over all accounts.
    pub calls: u64,
    /// Attempts after the first.
    pub retries: u64,
    /// Token requests.
    pub token_calls: u64,
    /// Rows stored.
    pub rows_stored: u64,
    /// Of those, rows new or changed: what `datacube_sync_rows_total` counts.
    #[serde(default)]
    pub rows_changed: u64,
    /// Rows not stored: dated outside their window.
    pub rows_skipped: u64,
    /// Per account.
    pub accounts: Vec<AccountReport>,
}

impl RunReport {
    /// Totals and the outcome from the accounts.
    pub fn settle(&mut self) {
        let sum = |f: fn(&AccountReport) -> u64| self.accounts.iter().map(f).sum::<u64>();
        (
            self.calls,
            self.retries,
            self.token_calls,
            self.rows_stored,
            self.rows_changed,
            self.rows_skipped,
        ) = (
            sum(|a| a.calls),
            sum(|a| a.retries),
            sum(|a| a.token_calls),
            sum(|a| a.rows_stored),
            sum(|a| a.rows_changed),
            sum(|a| a.rows_skipped),
        );
        self.outcome = if self.error.is_some() && self.accounts.is_empty() {
            Outcome::Failed
        } else {
            let mut outcome = Outcome::of(self.accounts.iter().map(|a| a.outcome));
            if self.error.is_some() && outcome == Outcome::Ok {
                outcome = Outcome::Partial;
            }
            outcome
        };
    }

    /// Whether running again could mirror more: something failed other than an account's
    /// credentials (which only a new secret fixes).
    pub fn retriable(&self) -> bool {
        self.error.is_some()
            || self.accounts.iter().any(|a| {
                matches!(
                    a.outcome,
                    Outcome::Partial | Outcome::Failed | Outcome::Interrupted
                )
            })
    }

    /// The endpoints that did not complete, as `appid endpoint: error`.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = &self.error {
            out.push(e.clone());
        }
        for a in &self.accounts {
            if let Some(e) = &a.error {
                out.push(format!("{}: {e}", a.appid));
            }
            for e in &a.endpoints {
                if e.status == EndpointStatus::Failed {
                    out.push(format!(
                        "{} {}: {}",
                        a.appid,
                        e.endpoint,
                        e.error.as_deref().unwrap_or("failed")
                    ));
                }
            }
        }
        out
    }
}

/// How much a line of a report's summary matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// What was done.
    Info,
    /// Done on the side (the local account added): the CLI prints it on stderr.
    Note,
    /// Something to look at: new fields, rows not stored.
    Warn,
    /// What failed.
    Error,
}

impl RunReport {
    /// The report for people, line by line: notes, a line per account (windows, calls,
    /// retries, token requests, rows), what each endpoint met that is worth a look, and what
    /// failed.
    pub fn lines(&self) -> Vec<(Level, String)> {
        let mut out: Vec<(Level, String)> = self
            .notes
            .iter()
            .map(|n| (Level::Info, n.clone()))
            .collect();
        if let Some(e) = &self.error {
            out.push((Level::Error, e.clone()));
        }
        for a in &self.accounts {
            out.extend(a.lines(&self.upstream));
        }
        out
    }
}

impl AccountReport {
    fn lines(&self, upstream: &str) -> Vec<(Level, String)> {
        let mut out = Vec::new();
        if let Some(local) = &self.local_account {
            out.push((Level::Note, format!("{}: {local}", self.appid)));
        }
        let windows: u64 = self.endpoints.iter().map(|e| e.windows).sum();
        let done: u64 = self.endpoints.iter().map(|e| e.windows_done).sum();
        let appid = &self.appid;
        // An account stopped before any endpoint was planned has nothing synced to tell.
        if self.error.is_none() || !self.endpoints.is_empty() {
            out.push((
            Level::Info,
            format!(
                "{appid}: synced {done} of {windows} from {upstream}: {} calls ({} retries, {} token requests), {} rows stored in {:.1} s ({:.0} rows/s)",
                self.calls,
                self.retries,
                self.token_calls,
                self.rows_stored,
                self.seconds,
                self.rows_stored as f64 / self.seconds.max(0.001)
            ),
        ));
        }
        for e in &self.endpoints {
            let name = format!("{appid} {}", e.endpoint);
            for field in &e.new_fields {
                out.push((Level::Warn, format!("{name}: new field {field:?} kept")));
            }
            if e.rows_skipped > 0 {
                out.push((
                    Level::Warn,
                    format!(
                        "{name}: {} rows dated outside the window asked, not stored: {}{}",
                        e.rows_skipped,
                        e.skipped.join(", "),
                        if e.rows_skipped > e.skipped.len() as u64 {
                            ", …"
                        } else {
                            ""
                        }
                    ),
                ));
            }
            let not_asked = e.windows.saturating_sub(e.calls);
            match e.status {
                EndpointStatus::Offline | EndpointStatus::Unauthorized => {
                    let why = if e.status == EndpointStatus::Offline {
                        "47009 (this api is offline, please use the new api)"
                    } else {
                        "61007 (api is unauthorized to component: its permission set was not granted)"
                    };
                    out.push((
                        Level::Info,
                        format!(
                            "{name}: the upstream answered {why}; not asked again ({not_asked} more windows not asked)"
                        ),
                    ));
                }
                EndpointStatus::Failed => out.push((
                    Level::Error,
                    format!(
                        "{name}: failed: {}; {} windows left for the next run",
                        e.error.as_deref().unwrap_or("unknown error"),
                        e.windows.saturating_sub(e.windows_done)
                    ),
                )),
                _ => {}
            }
        }
        if let Some(e) = &self.error {
            out.push((Level::Error, format!("{}: {e}", self.appid)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_combine() {
        use Outcome::*;
        assert_eq!(Outcome::of([]), Ok);
        assert_eq!(Outcome::of([Ok, Ok]), Ok);
        assert_eq!(Outcome::of([Ok, Failed]), Partial);
        assert_eq!(Outcome::of([Failed, Failed]), Failed);
        assert_eq!(Outcome::of([Partial]), Partial);
        assert_eq!(Outcome::of([Ok, Interrupted]), Interrupted);
        assert_eq!(Outcome::of([Credentials, Credentials]), Credentials);
        assert_eq!(Outcome::of([Credentials, Failed]), Failed);
        assert_eq!(Outcome::of([Ok, Credentials]), Partial);
    }
}
