//! WeChat's message push protocol: what a push and its reply are on the wire, with no I/O.
//! `datacube-push` (`datacube push`, `datacube proxy`) and the server's third-party platform
//! pushes speak it.
//!
//! # Layout
//! - [`sign`]: `signature` and `msg_signature` (sorted SHA-1).
//! - [`crypto`]: the AES safe/compatible mode (AES-256-CBC, 32-byte PKCS#7, appid tail).
//! - [`xml`]: push bodies byte for byte as WeChat writes them, and replies judged as WeChat
//!   judges them.
//! - [`http1`]: HTTP/1.1 framing (RFC 9112 §6), ambiguous framing refused — one parser for
//!   `push`'s client connection and for `proxy`.
//! - [`default_original_id`]: the account's original id (`ToUserName`) when none is given.

pub mod crypto;
pub mod http1;
pub mod sign;
pub mod xml;

pub use crypto::{AesKey, CryptoError};
pub use xml::{Mode, Push, PushKind, Verdict};

/// The account's original id when none is given: `gh_` and 12 hex digits derived from the appid.
pub fn default_original_id(appid: &str) -> String {
    format!("gh_{:012x}", fnv1a(appid, 0) & 0xffff_ffff_ffff)
}

/// FNV-1a of `appid` and `i`: small, and stable across versions (an original id must not
/// change between releases). `datacube push` spreads its openids with the same hash.
fn fnv1a(appid: &str, i: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in appid.bytes().chain(i.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_original_id_is_stable() {
        let gh = default_original_id("wx1234567890abcdef");
        assert_eq!(gh.len(), 15);
        assert_eq!(
            gh, "gh_cdd60a7acefc",
            "a stored account's original id must not change"
        );
    }
}
