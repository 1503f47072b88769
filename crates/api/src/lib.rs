//! The facts of WeChat's datacube API, as data and pure functions: no I/O here (the clock and
//! new tokens read the system's time and randomness, nothing else).
//!
//! # Layout
//! - [`endpoint`]: the 21 endpoints (17 of 2014, four of 2025) — name, maximum span, period, permission set, row shape.
//! - [`date`]: China time, the request body, the span rule, readiness, week/month labels.
//! - [`row`]: row shapes, validation and the canonical JSON datacube stores and serves.
//! - [`error`]: WeChat's error codes, `errmsg` texts and the request-id suffix.
//! - [`json`]: the one rule for a key given twice.
//! - [`token`]: access-token lifetimes and limits.
//! - [`account`]: an account's AppID and AppSecret, checked ([`Appid`], [`Secret`]), and the
//!   hashes secrets are kept as.
//! - [`clock`]: "now", real or emulated (`--clock`, `POST /admin/clock`).
//! - [`text`]: text from outside, bounded and escaped for messages, secrets blanked.
//!
//! Start with [`endpoint::Endpoint`]; every other piece hangs off it.

pub mod account;
pub mod clock;
pub mod date;
pub mod duration;
pub mod endpoint;
pub mod error;
pub mod json;
pub mod row;
pub mod secret;
pub mod text;
pub mod token;

pub use account::{Appid, Secret};
pub use endpoint::{Endpoint, Generation, Group, Period};
pub use error::{ErrCode, Rid, SuffixStyle};
