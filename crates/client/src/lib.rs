//! A client for WeChat's statistics ("datacube") API, and `datacube sync`.
//!
//! # Layout
//! - [`client`]: [`Client`] — tokens (cached, refreshed at most once per call), retries with
//!   backoff and jitter, WeChat's quota errors handled; raw and typed datacube calls.
//! - `answer`: token and error answers read leniently, never quoted (they carry tokens).
//! - `http`: one bounded HTTP exchange (timeouts, size limit, errors without URLs).
//! - [`mirror`]: what to mirror (flags or a TOML file), one run over every account, recorded;
//!   the daily daemon.
//! - [`report`]: what a run of `datacube sync` did, per account and endpoint.
//! - [`types`]: the rows of the 21 endpoints as Rust types.
//! - [`sync`]: mirroring an account into datacube's store, incrementally and resumably.

mod answer;
pub mod client;
mod http;

pub use http::redacted_url;
pub mod mirror;
pub mod report;
pub mod sync;
pub mod types;

pub use client::{
    Authorizer, Client, ClientConfig, ClientError, TokenApi, DEFAULT_MAX_ANSWER, WECHAT,
};
