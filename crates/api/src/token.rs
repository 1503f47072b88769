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
