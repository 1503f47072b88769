//! Secrets — AppSecrets, access and refresh tokens, push Tokens and AES keys, the admin token —
//! as one type that is shown nowhere: `Debug` prints `Secret(***)`, there is no `Display`,
//! and [`Secret::expose`] is the one way to the text (to hash it, compare it in constant time,
//! or send it where it belongs). A struct that derives `Debug` may hold one safely.

use std::fmt;

/// A secret. Never shown: `Debug` prints `Secret(***)` and there is no `Display`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Secret(String);

impl Secret {
    /// `text` as a secret, unchecked (a token, a key, a hash's input).
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// Checks `secret` as an AppSecret — 1–128 visible ASCII characters; the error never
    /// repeats it.
    pub fn parse(secret: &str) -> Result<Secret, String> {
        if secret.is_empty() || secret.len() > 128 || !secret.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err("secret must be 1 to 128 visible ASCII characters".into());
        }
        Ok(Secret(secret.to_owned()))
    }

    /// The text itself: for hashing, comparing, or sending it where it belongs — never for a
    /// message or a log line.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is shorter than WeChat's 32 characters: a chosen secret that short may be
    /// guessed, as nothing slows guesses down (see docs/compatibility.md).
    pub fn is_short(&self) -> bool {
        self.0.len() < SHORTEST_SAFE
    }
}

/// The length of WeChat's AppSecrets (32 hex digits: 128 bits).
pub const SHORTEST_SAFE: usize = 32;

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Secret {
        Secret(text)
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Secret {
        Secret(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_never_shown() {
        let s = Secret::new("tok-en-value");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            token: Secret,
        }
        let shown = format!("{:?}", Holder { token: s.clone() });
        assert!(!shown.contains("tok-en-value"), "{shown}");
        assert_eq!(s.expose(), "tok-en-value");
    }
}
