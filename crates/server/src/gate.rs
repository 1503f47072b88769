//! The gate in front of the secret checks: a flood of wrong secrets must neither starve the
//! right ones nor be a cheap way to guess.
//!
//! An argon2 check costs ~20 ms of a core and 19 MiB, on a few threads behind a bounded
//! queue ([`SecretChecker`]). In front of it:
//! - **Known answers.** A secret checked lately — right or wrong — is answered from memory:
//!   the gate keeps a keyed BLAKE2b digest of (appid, stored hash, secret) with the verdict, for
//!   10 minutes after its last use (the key is random per process and never leaves it; the
//!   stored hash in the digest retires it when the secret changes). A client that keeps
//!   sending the right secret, or a loop that keeps sending the same wrong one, costs no check.
//! - **Failures throttled.** Wrong secrets are counted per client address and per appid over
//!   one-minute windows. Past 10 from one address, or 60 against one appid, the next new
//!   secrets from that address (for that appid) are answered WeChat's own "slow down",
//!   `45011 api minute-quota reach limit`, until the minute ends — except that a throttled
//!   appid still admits one new secret a second, so that its rightful owner gets through a
//!   distributed guess. Known right secrets are never throttled.
//!
//! Memory is bounded: at most [`MAX_KNOWN`] digests and [`MAX_COUNTED`] counters; past them
//! the oldest half is dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use blake2::digest::{KeyInit, Mac};
use rand::RngCore;

use crate::secret::SecretChecker;

/// How long a verdict is remembered after its last use.
const REMEMBER: Duration = Duration::from_secs(600);
/// The window failures are counted over.
const WINDOW: Duration = Duration::from_secs(60);
/// Failures from one client address per window before it is slowed down.
const PER_ADDRESS: u32 = 10;
/// Failures against one appid per window before it is slowed down.
const PER_APPID: u32 = 60;
/// A throttled appid still admits a new secret this often.
const TRICKLE: Duration = Duration::from_secs(1);
/// Digests remembered at most.
const MAX_KNOWN: usize = 100_000;
/// Addresses and appids counted at most.
const MAX_COUNTED: usize = 100_000;

tokio::task_local! {
    /// The address of the client whose request the task serves (set by the server's
    /// connection loop).
    pub(crate) static CLIENT: IpAddr;
}

/// A gate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The secret is right.
    Right,
    /// The secret is wrong (40125).
    Wrong,
    /// Too many wrong secrets lately from this address or for this appid (45011).
    SlowDown,
    /// Too many checks waiting (-1).
    Busy,
}

struct Known {
    right: bool,
    used: Instant,
}

#[derive(Default)]
struct Window {
    start: Option<Instant>,
    failures: u32,
    /// Checks under way: counted against the limit until they end, so that a burst of
    /// guesses cannot all start before the first one fails.
    pending: u32,
    /// When a throttled appid last admitted a new secret.
    trickled: Option<Instant>,
}

impl Window {
    fn current(&mut self, now: Instant) -> &mut Window {
        if self.start.is_none_or(|s| now.duration_since(s) >= WINDOW) {
            *self = Window {
                start: Some(now),
                failures: 0,
                pending: self.pending,
                trickled: self.trickled,
            };
        }
        self
    }
}

#[derive(Default)]
struct Memory {
    known: HashMap<[u8; 32], Known>,
    addresses: HashMap<IpAddr, Window>,
    appids: HashMap<String, Window>,
}

/// Secret checks behind known answers and throttles.
pub struct SecretGate {
    checker: SecretChecker,
    key: [u8; 32],
    memory: Mutex<Memory>,
}

impl SecretGate {
    /// A gate over `checker`.
    pub fn new(checker: SecretChecker) -> SecretGate {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        SecretGate {
            checker,
            key,
            memory: Mutex::default(),
        }
    }

    fn digest(&self, appid: &str, hash: &str, secret: &str) -> [u8; 32] {
        let mut mac =
            <blake2::Blake2bMac<blake2::digest::consts::U32> as KeyInit>::new_from_slice(&self.key)
                .expect("a 32-byte key fits BLAKE2b");
        for part in [appid, hash, secret] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `secret` is `appid`'s (whose stored hash is `hash`), asked by the client of the
    /// current request (see [`CLIENT`]).
    pub async fn check(&self, appid: &str, secret: &str, hash: &str) -> Verdict {
        let client = CLIENT.try_with(|c| *c).ok();
        self.check_from(client, appid, secret, hash).await
    }

    /// [`SecretGate::check`] for a client at `client`.
    pub async fn check_from(
        &self,
        client: Option<IpAddr>,
        appid: &str,
        secret: &str,
        hash: &str,
    ) -> Verdict {
        let digest = self.digest(appid, hash, secret);
        let now = Instant::now();
        {
            let mut m = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(k) = m.known.get_mut(&digest) {
                if now.duration_since(k.used) < REMEMBER {
                    k.used = now;
                    return if k.right {
                        Verdict::Right
                    } else {
                        Verdict::Wrong
                    };
                }
            }
            if let Some(ip) = client {
                let w = m.addresses.entry(ip).or_default().current(now);
                if w.failures + w.pending >= PER_ADDRESS {
                    return Verdict::SlowDown;
                }
            }
            let w = m.appids.entry(appid.to_owned()).or_default().current(now);
            if w.failures + w.pending >= PER_APPID {
                if w.trickled.is_some_and(|t| now.duration_since(t) < TRICKLE) {
                    return Verdict::SlowDown;
                }
                w.trickled = Some(now);
            }
            w.pending += 1;
            if let Some(ip) = client {
                m.addresses.entry(ip).or_default().pending += 1;
            }
        }
        let checked = self.checker.verify(secret, hash).await;
        let mut m = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = m.appids.get_mut(appid) {
            w.pending = w.pending.saturating_sub(1);
        }
        if let Some(w) = client.and_then(|ip| m.addresses.get_mut(&ip)) {
            w.pending = w.pending.saturating_sub(1);
        }
        let Ok(right) = checked else {
            return Verdict::Busy;
        };
        if m.known.len() >= MAX_KNOWN {
            forget_oldest(&mut m.known, |k| k.used);
        }
        m.known.insert(digest, Known { right, used: now });
        if right {
            return Verdict::Right;
        }
        for counted in [m.addresses.len(), m.appids.len()] {
            if counted >= MAX_COUNTED {
                m.addresses.clear();
                m.appids.clear();
                break;
            }
        }
        if let Some(ip) = client {
            m.addresses.entry(ip).or_default().current(now).failures += 1;
        }
        m.appids
            .entry(appid.to_owned())
            .or_default()
            .current(now)
            .failures += 1;
        Verdict::Wrong
    }
}

/// Drops the older half of `map` by `when`.
fn forget_oldest<K: Eq + std::hash::Hash + Copy, V>(
    map: &mut HashMap<K, V>,
    when: impl Fn(&V) -> Instant,
) {
    let mut times: Vec<Instant> = map.values().map(&when).collect();
    let mid = times.len() / 2;
    let (_, cut, _) = times.select_nth_unstable(mid);
    let cut = *cut;
    map.retain(|_, v| when(v) > cut);
}

#[cfg(test)]
mod tests {
    use super::*;
    use datacube_api::account::hash_secret;

    fn gate() -> (SecretGate, String) {
        (
            SecretGate::new(SecretChecker::new(1, 64)),
            hash_secret("the-right-secret"),
        )
    }

    #[tokio::test]
    async fn known_answers_cost_no_check() {
        let (g, h) = gate();
        let ip: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        assert_eq!(
            g.check_from(ip, "wx1", "the-right-secret", &h).await,
            Verdict::Right
        );
        let started = Instant::now();
        for _ in 0..1000 {
            assert_eq!(
                g.check_from(ip, "wx1", "the-right-secret", &h).await,
                Verdict::Right
            );
            assert_eq!(
                g.check_from(ip, "wx1", "the-wrong-secret", &h).await,
                Verdict::Wrong
            );
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        // Another account's hash (a changed secret) is not answered from memory.
        let other = hash_secret("another");
        assert_eq!(
            g.check_from(ip, "wx1", "the-right-secret", &other).await,
            Verdict::Wrong
        );
    }

    #[tokio::test]
    async fn guessing_is_slowed_down_per_address_and_per_appid() {
        let (g, h) = gate();
        let attacker: Option<IpAddr> = Some("10.0.0.66".parse().unwrap());
        let owner: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        for i in 0..PER_ADDRESS {
            assert_eq!(
                g.check_from(attacker, "wx1", &format!("guess{i}"), &h)
                    .await,
                Verdict::Wrong
            );
        }
        assert_eq!(
            g.check_from(attacker, "wx1", "guess-next", &h).await,
            Verdict::SlowDown
        );
        // Even the right secret, from the throttled address, waits for the next minute…
        assert_eq!(
            g.check_from(attacker, "wx1", "the-right-secret", &h).await,
            Verdict::SlowDown
        );
        // …while the owner, elsewhere, is answered.
        assert_eq!(
            g.check_from(owner, "wx1", "the-right-secret", &h).await,
            Verdict::Right
        );
        // A distributed guess: every address under its own limit, the appid over its.
        for i in 0..PER_APPID {
            let ip: Option<IpAddr> = Some(format!("10.1.{}.{}", i / 250, i % 250).parse().unwrap());
            g.check_from(ip, "wx2", &format!("g{i}"), &h).await;
        }
        let fresh: Option<IpAddr> = Some("10.2.0.1".parse().unwrap());
        // One new secret a second still gets checked.
        assert_eq!(
            g.check_from(fresh, "wx2", "the-right-secret", &h).await,
            Verdict::Right
        );
        assert_eq!(
            g.check_from(fresh, "wx2", "another-guess", &h).await,
            Verdict::SlowDown
        );
        // What is known stays answered.
        assert_eq!(
            g.check_from(fresh, "wx2", "the-right-secret", &h).await,
            Verdict::Right
        );
    }

    #[test]
    fn the_oldest_half_is_forgotten() {
        let now = Instant::now();
        let mut m: HashMap<u32, Instant> = (0..10)
            .map(|i| (i, now + Duration::from_secs(u64::from(i))))
            .collect();
        forget_oldest(&mut m, |t| *t);
        assert_eq!(m.len(), 4);
        assert!(m.keys().all(|k| *k > 5));
    }
}
