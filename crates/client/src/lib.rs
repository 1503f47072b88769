//! A client for WeChat's statistics ("datacube") API and its token APIs: the wire, and no
//! more — what to mirror and where it is stored are `datacube-mirror`'s.
//!
//! # Layout
//! - [`client`]: [`Client`] — tokens (cached, refreshed at most once per call), retries with
//!   backoff and jitter, WeChat's quota errors handled; raw and typed datacube calls.
//! - `answer`: token and error answers read leniently, never quoted (they carry tokens).
//! - `http`: one bounded HTTP exchange (timeouts, size limit, errors without URLs).
//! - `retry`: the one retry loop of every call (backoff with jitter, the count of retries,
//!   pauses that end when the client is cancelled).
//! - [`types`]: the rows of the 21 endpoints as Rust types.

mod answer;
pub mod client;
mod http;
mod retry;

pub use http::redacted_url;
pub use tokio_util::sync::CancellationToken;
pub mod types;

pub use client::{
    Authorizer, Client, ClientConfig, ClientError, TokenApi, DEFAULT_MAX_ANSWER, WECHAT,
};
