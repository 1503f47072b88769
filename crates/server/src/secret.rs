//! AppSecrets are stored as argon2id hashes and compared through them; never kept in clear.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;

/// The PHC string of `secret`'s argon2id hash, with a fresh random salt.
pub fn hash_secret(secret: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 with default parameters cannot fail")
        .to_string()
}

/// Whether `secret` matches `hash` (a PHC string made by [`hash_secret`]).
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Compares two strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_secret_and_never_contain_it() {
        let h = hash_secret("0123456789abcdef0123456789abcdef");
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains("0123456789abcdef"));
        assert!(verify_secret("0123456789abcdef0123456789abcdef", &h));
        assert!(!verify_secret("0123456789abcdef0123456789abcdeF", &h));
        assert!(!verify_secret("x", "not a hash"));
        assert_ne!(h, hash_secret("0123456789abcdef0123456789abcdef"), "salted");
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}
