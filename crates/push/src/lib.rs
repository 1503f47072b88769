//! datacube acting on WeChat's message push protocol (the protocol itself is
//! `datacube-protocol`'s): as WeChat toward a developer's server, and between the two.
//!
//! # Layout
//! - [`driver`]: `datacube push` — datacube as WeChat toward a developer's server.
//! - [`http`]: `push`'s client connection (framed by `datacube_protocol::http1`).
//! - [`proxy`]: `datacube proxy` — between WeChat and the developer's server, recording; its
//!   accept loop.
//! - [`recorder`]: what `push` and `proxy` see, stored as events through the ingestion path.
//! - [`metrics`]: what they count for Prometheus (`--metrics-listen`).

pub mod driver;
pub mod http;
pub mod metrics;
pub mod proxy;
pub mod recorder;
