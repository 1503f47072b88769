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
//! digest of (appid, stored hash, secret), under a random key that never leaves the process;
//! right verdicts apart from wrong ones, so that a flood of wrong guesses cannot push the
//! owner's out. At most [`PER_APPID`] checks of one appid wait at once (more: `-1`): a flood
//! against one account leaves the queue to the others. Its first right check replaces the
//! hash with a fast one (see `App::upgrade_secret`), and then none of this applies.
//!
//! Memory is bounded: at most [`MAX_KNOWN`] digests of each kind; past them the oldest half is
//! dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

// tokio's clock, not std's: tests drive it (`tokio::time::pause`, `advance`) rather than wait.
use tokio::time::Instant;

use blake2::digest::{KeyInit, Mac};
use rand::RngCore;

use crate::secret::SecretChecker;

/// How long a verdict on an argon2 hash is remembered after its last use.
const REMEMBER: Duration = Duration::from_secs(600);
/// Digests remembered at most (right ones, and wrong ones).
const MAX_KNOWN: usize = 100_000;
/// Argon2 checks of one appid waiting or under way at most.
const PER_APPID: usize = 2;

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

/// Every verdict's label, for metrics present at zero.
pub(crate) const VERDICTS: [&str; 3] = ["right", "wrong", "busy"];

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Right => "right",
            Verdict::Wrong => "wrong",
            Verdict::Busy => "busy",
        }
    }
}

/// Secret checks: fast hashes inline, argon2 hashes behind known answers and a bounded queue.
pub struct SecretGate {
    checker: SecretChecker,
    key: [u8; 32],
    memory: Mutex<Memory>,
}

#[derive(Default)]
struct Memory {
    right: HashMap<[u8; 32], Instant>,
    wrong: HashMap<[u8; 32], Instant>,
    /// Argon2 checks under way, by appid.
    checking: HashMap<String, usize>,
}

impl SecretGate {
    /// A gate over `checker` (for argon2 hashes).
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
            let mut guard = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            let m = &mut *guard;
            if let Some(verdict) = m.recall(&digest, now) {
                return verdict;
            }
            let checking = m.checking.entry(appid.to_owned()).or_default();
            if *checking >= PER_APPID {
                return Verdict::Busy;
            }
            *checking += 1;
        }
        let under_way = Checking(self, appid);
        let checked = self.checker.verify(secret, hash).await;
        drop(under_way);
        let mut guard = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        let m = &mut *guard;
        let Ok(right) = checked else {
            return Verdict::Busy;
        };
        let known = if right { &mut m.right } else { &mut m.wrong };
        if known.len() >= MAX_KNOWN {
            forget_oldest(known, |used| *used);
        }
        known.insert(digest, now);
        if right {
            Verdict::Right
        } else {
            Verdict::Wrong
        }
    }
}

impl Memory {
    /// The verdict on `digest` if it was used within [`REMEMBER`] of `now` (its use renewed).
    fn recall(&mut self, digest: &[u8; 32], now: Instant) -> Option<Verdict> {
        for (known, verdict) in [
            (&mut self.right, Verdict::Right),
            (&mut self.wrong, Verdict::Wrong),
        ] {
            if let Some(used) = known.get_mut(digest) {
                if now.duration_since(*used) < REMEMBER {
                    *used = now;
                    return Some(verdict);
                }
            }
        }
        None
    }
}

/// An argon2 check of an appid under way: counted until dropped, however its request ends.
struct Checking<'a>(&'a SecretGate, &'a str);

impl Drop for Checking<'_> {
    fn drop(&mut self) {
        let mut m = self.0.memory.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.checking.get_mut(self.1) {
            *n -= 1;
            if *n == 0 {
                m.checking.remove(self.1);
            }
        }
    }
}

/// Drops the older half of `map` by `when`.
fn forget_oldest<K: Eq + std::hash::Hash + Copy, V>(
    map: &mut HashMap<K, V>,
    when: impl Fn(&V) -> Instant,
) {
    let mut times: Vec<Instant> = map.values().map(&when).collect();
    // The newest of the older half: it and everything older go.
    let Some(last_old) = (times.len() / 2).checked_sub(1) else {
        return;
    };
    let (_, cut, _) = times.select_nth_unstable(last_old);
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

    #[tokio::test]
    async fn a_flood_against_one_legacy_account_leaves_the_queue_to_the_others() {
        let g = std::sync::Arc::new(gate());
        let (one, two) = (legacy_hash_secret("one"), legacy_hash_secret("two"));
        let flood: Vec<_> = (0..20)
            .map(|i| {
                let (g, h) = (g.clone(), one.clone());
                tokio::spawn(async move { g.check("wx1", &format!("guess{i}"), &h).await })
            })
            .collect();
        tokio::task::yield_now().await;
        // The other account's owner waits behind two checks of wx1 at most, not twenty.
        let started = Instant::now();
        assert_eq!(g.check("wx2", "two", &two).await, Verdict::Right);
        let took = started.elapsed();
        let mut busy = 0;
        for f in flood {
            busy += usize::from(f.await.unwrap() == Verdict::Busy);
        }
        assert!(busy >= 15, "{busy} of 20 guesses turned away");
        let one_check = {
            let started = Instant::now();
            g.check("wx3", "x", &legacy_hash_secret("y")).await;
            started.elapsed()
        };
        assert!(took < one_check * 6, "{took:?}, one check {one_check:?}");
    }

    /// Whether `gate` answers `secret` for `hash` from memory now (without renewing it).
    fn remembered(gate: &SecretGate, secret: &str, hash: &str) -> Option<Verdict> {
        let digest = gate.digest("wx1", hash, secret);
        let m = gate.memory.lock().unwrap();
        let now = Instant::now();
        let found = [(&m.right, Verdict::Right), (&m.wrong, Verdict::Wrong)]
            .into_iter()
            .find_map(|(known, verdict)| {
                known
                    .get(&digest)
                    .filter(|used| now.duration_since(**used) < REMEMBER)
                    .map(|_| verdict)
            });
        found
    }

    /// A verdict is remembered ten minutes after its last use, then forgotten: the clock is
    /// driven, not waited for.
    #[tokio::test(start_paused = true)]
    async fn a_verdict_is_forgotten_ten_minutes_after_its_last_use() {
        let g = gate();
        let h = legacy_hash_secret("the-right-secret");
        assert_eq!(g.check("wx1", "the-right-secret", &h).await, Verdict::Right);
        assert_eq!(g.check("wx1", "a-wrong-secret", &h).await, Verdict::Wrong);
        tokio::time::advance(Duration::from_secs(9 * 60)).await;
        assert_eq!(remembered(&g, "the-wrong-secret", &h), None);
        assert_eq!(remembered(&g, "a-wrong-secret", &h), Some(Verdict::Wrong));
        // Used again at 9 minutes: remembered until 19.
        assert_eq!(g.check("wx1", "the-right-secret", &h).await, Verdict::Right);
        tokio::time::advance(Duration::from_secs(9 * 60)).await;
        assert_eq!(remembered(&g, "the-right-secret", &h), Some(Verdict::Right));
        assert_eq!(
            remembered(&g, "a-wrong-secret", &h),
            None,
            "unused for 18 minutes"
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(
            remembered(&g, "the-right-secret", &h),
            None,
            "unused for 10 minutes"
        );
        // Forgotten is not wrong: checked again, and right.
        assert_eq!(g.check("wx1", "the-right-secret", &h).await, Verdict::Right);
    }

    #[test]
    fn the_oldest_half_is_forgotten() {
        let now = Instant::now();
        let mut m: HashMap<u32, Instant> = (0..10)
            .map(|i| (i, now + Duration::from_secs(u64::from(i))))
            .collect();
        forget_oldest(&mut m, |t| *t);
        assert_eq!(m.len(), 5, "the older half goes, the newer half stays");
        assert!(m.keys().all(|k| *k >= 5));
    }
}
