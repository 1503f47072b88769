//! An account's identity as datacube accepts it: its AppID and its AppSecret. The checks are
//! the same everywhere one arrives — the admin API, the CLI, seed fixtures.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;

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

pub use crate::secret::{Secret, SHORTEST_SAFE};

/// How a fast hash starts: `$hmac-sha256$<salt>$<mac>`, the salt and the MAC in base64
/// without padding.
const FAST: &str = "$hmac-sha256$";

/// The stored form of `secret`: HMAC-SHA-256 keyed by a fresh random 16-byte salt.
///
/// AppSecrets are 128-bit random strings (WeChat's, and those datacube makes): no guess can
/// find one online or from a stolen database, so a password hash (argon2, ~20 ms and 19 MiB a
/// check) buys nothing and makes every sign-in a target for a flood. A keyed fast hash, as
/// API-key stores use, costs a microsecond. The threat model is in docs/compatibility.md.
pub fn hash_secret(secret: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    format!(
        "{FAST}{}${}",
        B64.encode(salt),
        B64.encode(mac(&salt, secret))
    )
}

fn mac(salt: &[u8], secret: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(salt).expect("HMAC takes any key");
    mac.update(secret.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Whether `hash` is a fast hash ([`hash_secret`]'s), not an argon2 one of an older
/// datacube (upgraded on the next right sign-in).
pub fn is_fast(hash: &str) -> bool {
    hash.starts_with(FAST)
}

/// Whether `secret` matches the fast hash `hash`; `None` when `hash` is not one.
pub fn verify_fast(secret: &str, hash: &str) -> Option<bool> {
    let (salt, expected) = hash.strip_prefix(FAST)?.split_once('$')?;
    let (Ok(salt), Ok(expected)) = (B64.decode(salt), B64.decode(expected)) else {
        return Some(false);
    };
    let mut check = <Hmac<Sha256> as KeyInit>::new_from_slice(&salt).expect("HMAC takes any key");
    check.update(secret.as_bytes());
    // In constant time.
    Some(check.verify_slice(&expected).is_ok())
}

/// Whether `secret` matches `hash`: a fast hash ([`hash_secret`]), or the argon2id PHC string
/// an older datacube stored.
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    if let Some(right) = verify_fast(secret, hash) {
        return right;
    }
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// An argon2id hash of `secret`, as datacube stored secrets before it used [`hash_secret`]
/// (for tests of the upgrade).
pub fn legacy_hash_secret(secret: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 with default parameters cannot fail")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_secret_and_never_contain_it() {
        let h = hash_secret("0123456789abcdef0123456789abcdef");
        assert!(h.starts_with("$hmac-sha256$") && is_fast(&h), "{h}");
        assert!(!h.contains("0123456789abcdef"));
        assert!(verify_secret("0123456789abcdef0123456789abcdef", &h));
        assert!(!verify_secret("0123456789abcdef0123456789abcdeF", &h));
        assert!(!verify_secret("", &h));
        assert!(!verify_secret("x", "not a hash"));
        assert_eq!(verify_fast("x", "$hmac-sha256$!!$!!"), Some(false));
        assert_eq!(verify_fast("x", "$argon2id$…"), None);
        assert_ne!(h, hash_secret("0123456789abcdef0123456789abcdef"), "salted");
        // What older versions stored still verifies.
        let old = legacy_hash_secret("s3cret");
        assert!(old.starts_with("$argon2id$") && !is_fast(&old));
        assert!(verify_secret("s3cret", &old));
        assert!(!verify_secret("s3creT", &old));
    }

    #[test]
    fn a_fast_hash_of_a_known_salt_is_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        const MAC: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let hash = format!(
            "$hmac-sha256${}${}",
            B64.encode(b"Jefe"),
            B64.encode(
                (0..32)
                    .map(|i| u8::from_str_radix(&MAC[2 * i..2 * i + 2], 16).unwrap())
                    .collect::<Vec<u8>>()
            )
        );
        assert_eq!(
            verify_fast("what do ya want for nothing?", &hash),
            Some(true)
        );
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
