//! An account's identity as datacube accepts it: its AppID and its AppSecret. The checks are
//! the same everywhere one arrives — the admin API, the CLI, seed fixtures.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;

/// An AppID: 1–64 characters of `[A-Za-z0-9_-]` (real ones are `wx` and 16 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Appid(String);

impl Appid {
    /// Checks `appid`; the error says what is wrong with it.
    pub fn parse(appid: &str) -> Result<Appid, String> {
        if appid.is_empty() || appid.len() > 64 {
            return Err(format!("appid {appid:?} must be 1 to 64 characters"));
        }
        if !appid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "appid {appid:?} may only contain letters, digits, `_` and `-`"
            ));
        }
        Ok(Appid(appid.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Appid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An AppSecret: 1–128 visible ASCII characters. Never shown: `Debug` prints `Secret(***)`
/// and there is no `Display`; [`Secret::expose`] is for hashing it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Checks `secret`; the error never repeats it.
    pub fn parse(secret: &str) -> Result<Secret, String> {
        if secret.is_empty() || secret.len() > 128 || !secret.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err("secret must be 1 to 128 visible ASCII characters".into());
        }
        Ok(Secret(secret.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

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
    fn appids_and_secrets_are_checked_and_secrets_never_shown() {
        assert_eq!(
            Appid::parse("wx1234567890abcdef").unwrap().as_str(),
            "wx1234567890abcdef"
        );
        assert!(Appid::parse("").unwrap_err().contains("1 to 64"));
        assert!(Appid::parse(&"a".repeat(65)).is_err());
        assert!(Appid::parse("bad appid")
            .unwrap_err()
            .contains("may only contain"));
        let secret = Secret::parse("s3cret-value").unwrap();
        assert_eq!(secret.expose(), "s3cret-value");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        let err = Secret::parse("two words").unwrap_err();
        assert!(!err.contains("two words"), "{err}");
        assert!(Secret::parse(&"x".repeat(129)).is_err());
    }
}
