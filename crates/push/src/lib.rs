//! WeChat's message push protocol, and datacube acting on it.
//!
//! # Layout
//! - [`sign`]: `signature` and `msg_signature` (sorted SHA-1).
//! - [`crypto`]: the AES safe/compatible mode (AES-256-CBC, 32-byte PKCS#7, appid tail).
//! - [`xml`]: push bodies byte for byte as WeChat writes them, and replies judged as WeChat
//!   judges them.
//! - [`http1`]: HTTP/1.1 framing (RFC 9112 §6), ambiguous framing refused — one parser for
//!   [`http`] (`push`'s client connection) and [`proxy`]; and the accept loop of [`proxy`]
//!   and of datacube's HTTP server.
//! - [`driver`]: `datacube push` — datacube as WeChat toward a developer's server.
//! - [`proxy`]: `datacube proxy` — between WeChat and the developer's server, recording.
//! - [`recorder`]: what `push` and `proxy` see, stored as events through the ingestion path.
//! - [`metrics`]: what they count for Prometheus (`--metrics-listen`).

pub mod crypto;
pub mod driver;
pub mod http;
pub mod http1;
pub mod metrics;
pub mod proxy;
pub mod recorder;
pub mod sign;
pub mod xml;

pub use crypto::{AesKey, CryptoError};
pub use xml::{Mode, Push, PushKind, Verdict};
