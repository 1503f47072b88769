//! AppSecrets stored as argon2id hashes by older versions (this one stores fast hashes:
//! [`datacube_api::account::hash_secret`]) are checked here, on a bounded set of threads,
//! until their first right check upgrades them; never kept in clear.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::oneshot;

type Job = (String, String, oneshot::Sender<bool>);

/// Checks secrets on a fixed set of threads, each reusing one argon2 working memory (19 MiB
/// with the default parameters), behind a bounded queue. Memory stays bounded however many
/// sign-ins arrive; a full queue is refused rather than queued.
pub struct SecretChecker {
    jobs: SyncSender<Job>,
}

/// The queue of secret checks is full.
#[derive(Debug)]
pub struct Busy;

impl SecretChecker {
    /// `threads` workers and room for `queue` waiting checks.
    pub fn new(threads: usize, queue: usize) -> SecretChecker {
        let (jobs, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("datacube-secret-{i}"))
                .spawn(move || worker(&rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a secret-checking thread");
            }
        }
        SecretChecker { jobs }
    }

    /// Whether `secret` matches `hash`; `Err(Busy)` when too many checks are waiting.
    pub async fn verify(&self, secret: &str, hash: &str) -> Result<bool, Busy> {
        let (tx, rx) = oneshot::channel();
        match self.jobs.try_send((secret.to_owned(), hash.to_owned(), tx)) {
            Ok(()) => rx.await.map_err(|_| Busy),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        // The lock is held only while waiting for the next job; when the checker is dropped
        // the channel closes and the thread ends.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((secret, hash, reply)) = job else {
            return;
        };
        let _ = reply.send(verify_with_memory(&secret, &hash, &mut memory));
    }
}

/// [`verify_secret`], computing the hash in `memory` (grown once, then reused).
fn verify_with_memory(secret: &str, hash: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = parsed
        .version
        .map_or(Ok(Version::default()), Version::try_from);
    let (Ok(version), Some(salt), Some(expected)) = (version, parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::new());
    }
    let blocks = params.block_count();
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(secret.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_ok()
        && constant_time_eq_bytes(&out, expected.as_bytes())
}

fn constant_time_eq_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Compares two strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    constant_time_eq_bytes(a.as_bytes(), b.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datacube_api::account::legacy_hash_secret as hash_secret;

    #[test]
    fn reused_memory_gives_the_same_verdicts() {
        let h = hash_secret("s3cret");
        let mut memory = Vec::new();
        for _ in 0..3 {
            assert!(verify_with_memory("s3cret", &h, &mut memory));
            assert!(!verify_with_memory("s3creT", &h, &mut memory));
        }
        assert!(!verify_with_memory(
            "s3cret",
            "$argon2id$v=19$m=8,t=1,p=1$bad",
            &mut memory
        ));
    }

    #[tokio::test]
    async fn the_checker_answers_and_refuses_past_its_queue() {
        let h = hash_secret("s3cret");
        let checker = std::sync::Arc::new(SecretChecker::new(1, 1));
        assert!(checker.verify("s3cret", &h).await.unwrap());
        assert!(!checker.verify("nope", &h).await.unwrap());
        // Eight at once: one runs, one waits, the rest are refused (a check takes ~20 ms).
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (checker, h) = (checker.clone(), h.clone());
                tokio::spawn(async move { checker.verify("s3cret", &h).await })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        assert!(results.iter().any(|r| r.is_err()), "a full queue refuses");
        assert!(results.iter().any(|r| matches!(r, Ok(true))));
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}
