//! Lifetimes and limits of access tokens (reference §4).

/// Lifetime of every access token, in seconds (`expires_in`).
pub const LIFETIME_SECONDS: i64 = 7200;

/// How long a token stays valid after `/cgi-bin/token` issued its successor, and how long
/// before expiry `stable_token` renews (both tokens work during this hand-over).
pub const OVERLAP_SECONDS: i64 = 300;

/// Default daily quota of `/cgi-bin/token` per account (test accounts: 200).
pub const DEFAULT_TOKEN_DAILY_QUOTA: u32 = 2000;

/// `stable_token` with `force_refresh`: at most this many refreshes a day…
pub const STABLE_FORCE_REFRESH_DAILY: u32 = 20;

/// …and a forced refresh within this many seconds of the previous one returns the current
/// token unchanged ("连续使用该模式时，请保证调用时间隔至少为30s，否则不会刷新").
pub const STABLE_FORCE_REFRESH_INTERVAL_SECONDS: i64 = 30;

/// Daily limit of `stable_token` calls per account.
pub const STABLE_DAILY_QUOTA: u32 = 500_000;

/// The only `grant_type` both token APIs accept.
pub const GRANT_TYPE: &str = "client_credential";

/// A new access token: unguessable (128 bytes from the thread's CSPRNG, seeded by the OS) and
/// shaped like WeChat's: an era number, `_`, then URL-safe base64 (about 175 characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; 128];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let mut token = String::with_capacity(180);
    token.push_str("98_");
    base64::Engine::encode_string(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        bytes,
        &mut token,
    );
    token
}
