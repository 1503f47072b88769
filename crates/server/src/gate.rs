//! The secret checks of `/cgi-bin/token`, `/cgi-bin/stable_token` and the component APIs.
//!
//! Secrets stored by this version are fast hashes ([`datacube_api::account::hash_secret`]):
//! checked inline in a microsecond, with no throttle. A wrong secret is answered 40125 every
//! time, as WeChat answers it, and a right one at once whatever came before it, from any
//! address and for any account: no owner can be locked out by someone else's guesses, nor a
//! test suite by its own checks of 40125. Guessing a 128-bit secret is hopeless at any rate
//! (the threat model is in docs/compatibility.md).
//!
//! An argon2 hash stored by an older datacube (~20 ms of a core and 19 MiB a check) is checked
//! on a few threads behind a bounded queue ([`SecretChecker`]; full: `-1`, WeChat's "busy,
//! retry"), with the verdicts of the last 10 minutes answered from memory — a keyed BLAKE2b
//! digest of (appid, stored hash, secret), under a random key that never leaves the process.
//! Its first right check replaces it with a fast hash (see `App::upgrade_secret`).
//!
//! Memory is bounded: at most [`MAX_KNOWN`] digests; past them the oldest half is dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use blake2::digest::{KeyInit, Mac};
use rand::RngCore;

use crate::secret::SecretChecker;

/// How long a verdict on an argon2 hash is remembered after its last use.
const REMEMBER: Duration = Duration::from_secs(600);
/// Digests remembered at most.
const MAX_KNOWN: usize = 100_000;

/// A gate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The secret is right.
    Right,
    /// The secret is wrong (40125).
    Wrong,
    /// Too many argon2 checks waiting (-1).
    Busy,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Right => "right",
            Verdict::Wrong => "wrong",
            Verdict::Busy => "busy",
        }
    }
}

struct Known {
    right: bool,
    used: Instant,
}

/// Secret checks: fast hashes inline, argon2 hashes behind known answers and a bounded queue.
pub struct SecretGate {
    checker: SecretChecker,
    key: [u8; 32],
    known: Mutex<HashMap<[u8; 32], Known>>,
}

impl SecretGate {
    /// A gate over `checker` (for argon2 hashes).
    pub fn new(checker: SecretChecker) -> SecretGate {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        SecretGate {
            checker,
            key,
            known: Mutex::default(),
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

    /// Whether `secret` is `appid`'s, whose stored hash is `hash`.
    pub async fn check(&self, appid: &str, secret: &str, hash: &str) -> Verdict {
        let verdict = match datacube_api::account::verify_fast(secret, hash) {
            Some(true) => Verdict::Right,
            Some(false) => Verdict::Wrong,
            None => self.check_argon2(appid, secret, hash).await,
        };
        metrics::counter!("datacube_secret_checks_total", "verdict" => verdict.label())
            .increment(1);
        verdict
    }

    async fn check_argon2(&self, appid: &str, secret: &str, hash: &str) -> Verdict {
        let digest = self.digest(appid, hash, secret);
        let now = Instant::now();
        {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(k) = known.get_mut(&digest) {
                if now.duration_since(k.used) < REMEMBER {
                    k.used = now;
                    return if k.right {
                        Verdict::Right
                    } else {
                        Verdict::Wrong
                    };
                }
            }
        }
        let Ok(right) = self.checker.verify(secret, hash).await else {
            return Verdict::Busy;
        };
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_KNOWN {
            forget_oldest(&mut known, |k| k.used);
        }
        known.insert(digest, Known { right, used: now });
        if right {
            Verdict::Right
        } else {
            Verdict::Wrong
        }
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
    use datacube_api::account::{hash_secret, legacy_hash_secret};

    fn gate() -> SecretGate {
        SecretGate::new(SecretChecker::new(1, 64))
    }

    #[tokio::test]
    async fn a_right_secret_is_right_after_any_number_of_wrong_ones() {
        let g = gate();
        let h = hash_secret("the-right-secret");
        let started = Instant::now();
        for i in 0..10_000 {
            assert_eq!(
                g.check("wx1", &format!("guess{i}"), &h).await,
                Verdict::Wrong
            );
        }
        assert_eq!(g.check("wx1", "the-right-secret", &h).await, Verdict::Right);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "10,000 checks took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn argon2_verdicts_are_remembered_per_stored_hash() {
        let g = gate();
        let h = legacy_hash_secret("the-right-secret");
        assert_eq!(g.check("wx1", "the-right-secret", &h).await, Verdict::Right);
        let started = Instant::now();
        for _ in 0..1000 {
            assert_eq!(g.check("wx1", "the-right-secret", &h).await, Verdict::Right);
            assert_eq!(g.check("wx1", "the-wrong-secret", &h).await, Verdict::Wrong);
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        // Another hash (a changed secret) is not answered from memory.
        let other = legacy_hash_secret("another");
        assert_eq!(
            g.check("wx1", "the-right-secret", &other).await,
            Verdict::Wrong
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
