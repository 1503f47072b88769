//! A client for WeChat's statistics ("datacube") API, and `datacube sync`.
//!
//! # Layout
//! - [`client`]: [`Client`] — tokens (cached, refreshed at most once per call), retries with
//!   backoff and jitter, WeChat's quota errors handled; raw and typed datacube calls.
//! - [`types`]: the rows of the 21 endpoints as Rust types.
//! - [`sync`]: mirroring an account into datacube's store, incrementally and resumably.

pub mod client;
pub mod sync;
pub mod types;

pub use client::{Authorizer, Client, ClientConfig, ClientError, TokenApi, WECHAT};
