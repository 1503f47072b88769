//! The one retry loop of the client's calls (token requests, component calls, datacube calls):
//! the backoff (a base doubled per retry, capped, times a jitter of 0.5–1.5), the count of
//! retries, the pause that ends at once when the client is cancelled, and the error of a call
//! whose every attempt failed. What is particular to a call — what an answer means, a token
//! renewed once, `45011`'s own budget — stays with the call, in the [`Step`] each attempt
//! comes to.

use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::client::ClientError;

/// A doubling wait: `base` × 2ⁿ before retry n + 1, at most `cap`, times a jitter of 0.5–1.5.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    /// The first wait (before the jitter).
    pub base: Duration,
    /// The longest wait (before the jitter).
    pub cap: Duration,
}

impl Backoff {
    /// The wait before retry `n + 1`, without its jitter.
    pub fn ceiling(&self, n: u32) -> Duration {
        self.base.saturating_mul(1u32 << n.min(16)).min(self.cap)
    }

    /// The wait before retry `n + 1`.
    pub fn wait(&self, n: u32) -> Duration {
        self.ceiling(n).mul_f64(rand::rng().random_range(0.5..1.5))
    }
}

/// What one attempt of a call came to.
#[derive(Debug)]
pub(crate) enum Step<T> {
    /// The call's result.
    Done(T),
    /// Worth another try after the backoff, for this reason, while retries are left; then the
    /// call fails with [`Retry::gave_up`]'s error.
    Retry(String),
    /// Worth another try after the backoff while retries are left; then the call fails with
    /// this error.
    RetryOr(ClientError),
    /// Another try after this wait (zero: at once), not counted among the retries: a token
    /// renewed, a `45011` slow-down under its own budget.
    Again(Duration),
}

/// How a call is retried: [`Retry::run`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry<'a> {
    /// Attempts after the first, on [`Step::Retry`] and [`Step::RetryOr`].
    pub retries: u32,
    /// The waits before them.
    pub backoff: Backoff,
    /// Ends a pause at once, failing the call with [`ClientError::Interrupted`].
    pub cancel: &'a CancellationToken,
    /// The account, for the log.
    pub appid: &'a str,
}

impl Retry<'_> {
    /// Calls `attempt` (with the number of attempts before it) until it comes to an end:
    /// [`Step::Done`] or an error, or a retry when none is left.
    ///
    /// An attempt's future borrows nothing from `attempt` (a plain closure returning an
    /// `async move` block, not an async closure): the futures of async closures cannot be
    /// shown to be `Send` for every lifetime (rust-lang/rust#110338), and the mirror's calls
    /// run on spawned tasks. State an attempt changes lives outside the closure.
    pub async fn run<T, Attempt>(
        &self,
        api: &str,
        mut attempt: impl FnMut(u32) -> Attempt,
    ) -> Result<T, ClientError>
    where
        Attempt: std::future::Future<Output = Result<Step<T>, ClientError>>,
    {
        let (mut tries, mut retried) = (0u32, 0u32);
        loop {
            let step = attempt(tries).await?;
            let wait = match step {
                Step::Done(done) => return Ok(done),
                Step::Again(wait) => wait,
                Step::Retry(why) if retried >= self.retries => return Err(self.gave_up(api, why)),
                Step::RetryOr(error) if retried >= self.retries => return Err(error),
                Step::Retry(why) => {
                    tracing::debug!(appid = %self.appid, %api, %why, "call failed; retrying");
                    self.next_retry(&mut retried)
                }
                Step::RetryOr(error) => {
                    tracing::debug!(appid = %self.appid, %api, %error, "call failed; retrying");
                    self.next_retry(&mut retried)
                }
            };
            self.pause(wait).await?;
            tries = tries.saturating_add(1);
        }
    }

    /// The wait before the next retry, counted.
    fn next_retry(&self, retried: &mut u32) -> Duration {
        let wait = self.backoff.wait(*retried);
        *retried += 1;
        wait
    }

    /// Sleeps for `wait`, unless cancelled first ([`ClientError::Interrupted`]).
    pub async fn pause(&self, wait: Duration) -> Result<(), ClientError> {
        if wait.is_zero() {
            return Ok(());
        }
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(ClientError::Interrupted),
            () = tokio::time::sleep(wait) => Ok(()),
        }
    }

    /// The error of a call whose every attempt failed, the last for `why`.
    pub fn gave_up(&self, api: &str, why: String) -> ClientError {
        ClientError::Transport {
            api: api.to_owned(),
            message: match self.retries + 1 {
                1 => format!("{why} (after 1 attempt)"),
                n => format!("{why} (after {n} attempts)"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn policy(cancel: &CancellationToken, retries: u32) -> Retry<'_> {
        Retry {
            retries,
            backoff: Backoff {
                base: Duration::from_millis(100),
                cap: Duration::from_secs(1),
            },
            cancel,
            appid: "wx",
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_counted_and_their_pauses_grow_up_to_the_cap() {
        let cancel = CancellationToken::new();
        let retry = policy(&cancel, 6);
        let mut at = Vec::new();
        let failed = retry
            .run::<(), _>("datacube/x", |n| {
                assert_eq!(n as usize, at.len());
                at.push(Instant::now());
                async { Ok(Step::Retry("HTTP 502".into())) }
            })
            .await;
        // The first attempt and six retries, then the error says so.
        assert_eq!(at.len(), 7);
        match failed {
            Err(ClientError::Transport { api, message }) => {
                assert_eq!(api, "datacube/x");
                assert_eq!(message, "HTTP 502 (after 7 attempts)");
            }
            other => panic!("{other:?}"),
        }
        // 100 ms doubled per retry (200, 400, 800), then capped at 1 s; each times 0.5–1.5.
        let ceilings = [100, 200, 400, 800, 1000, 1000].map(Duration::from_millis);
        for (i, ceiling) in ceilings.iter().enumerate() {
            assert_eq!(retry.backoff.ceiling(i as u32), *ceiling);
            let pause = at[i + 1] - at[i];
            assert!(
                pause >= ceiling.mul_f64(0.5) && pause <= ceiling.mul_f64(1.5),
                "pause {i}: {pause:?} for {ceiling:?}"
            );
        }
        // They grow: the fourth (≥ 400 ms) is longer than the first (≤ 150 ms), and the cap
        // holds where 100 ms × 2⁵ would be 3.2 s.
        assert!(at[4] - at[3] > at[1] - at[0]);
        assert!(at[6] - at[5] <= Duration::from_millis(1500));
        assert_eq!(retry.backoff.ceiling(30), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_ends_the_retries_and_waits_apart_are_not_counted() {
        let cancel = CancellationToken::new();
        // No retry: one attempt.
        let mut attempts = 0;
        let failed = policy(&cancel, 0)
            .run::<(), _>("cgi-bin/token", |_| {
                attempts += 1;
                async { Ok(Step::Retry("system error".into())) }
            })
            .await;
        assert_eq!(attempts, 1);
        assert!(
            matches!(failed, Err(ClientError::Transport { message, .. }) if message == "system error (after 1 attempt)")
        );
        // Retried twice, then the attempt's own error; waits apart (a renewed token, a
        // slow-down) come on top of the retries.
        let (mut attempts, start) = (0, Instant::now());
        let failed = policy(&cancel, 2)
            .run::<(), _>("datacube/x", |n| {
                attempts += 1;
                async move {
                    Ok(match n {
                        0 => Step::Again(Duration::ZERO),
                        1 => Step::Again(Duration::from_secs(30)),
                        _ => Step::RetryOr(ClientError::Api {
                            api: "datacube/x".into(),
                            code: -1,
                            errmsg: "system error".into(),
                        }),
                    })
                }
            })
            .await;
        assert_eq!(attempts, 5);
        assert!(matches!(failed, Err(ClientError::Api { code: -1, .. })));
        assert!(Instant::now() - start >= Duration::from_secs(30));
        // An error is not retried; a result ends the call.
        let mut attempts = 0;
        let done = policy(&cancel, 5)
            .run("datacube/x", |n| {
                attempts += 1;
                async move {
                    match n {
                        0 => Ok(Step::Retry("HTTP 503".into())),
                        _ => Ok(Step::Done(n)),
                    }
                }
            })
            .await;
        assert_eq!((done.unwrap(), attempts), (1, 2));
        let failed = policy(&cancel, 5)
            .run::<(), _>("datacube/x", |_| async { Err(ClientError::Interrupted) })
            .await;
        assert!(matches!(failed, Err(ClientError::Interrupted)));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_ends_a_pause_at_once() {
        let cancel = CancellationToken::new();
        let mut retry = policy(&cancel, 5);
        retry.backoff.base = Duration::from_secs(10);
        retry.backoff.cap = Duration::from_secs(60);
        {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                cancel.cancel();
            });
        }
        let (start, mut attempts) = (Instant::now(), 0);
        let failed = retry
            .run::<(), _>("datacube/x", |_| {
                attempts += 1;
                async { Ok(Step::Retry("HTTP 502".into())) }
            })
            .await;
        assert!(
            matches!(failed, Err(ClientError::Interrupted)),
            "{failed:?}"
        );
        // The first pause (5–15 s) ended when the token was cancelled, 50 ms in.
        assert_eq!(attempts, 1);
        assert_eq!(Instant::now() - start, Duration::from_millis(50));
        // Cancelled already: the next pause ends before it begins.
        let start = Instant::now();
        assert!(matches!(
            retry.pause(Duration::from_secs(1)).await,
            Err(ClientError::Interrupted)
        ));
        assert_eq!(Instant::now(), start);
        assert!(retry.pause(Duration::ZERO).await.is_ok());
    }
}
