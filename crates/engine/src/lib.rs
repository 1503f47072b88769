//! datacube's event engine: the event format, and WeChat's statistics computed exactly from
//! events.
//!
//! # Layout
//! - [`demo`]: a deterministic, realistic stream of demo events.
//! - [`event`]: the NDJSON event format and its parser (errors say what is wrong with a line).
//! - [`rollup`]: [`rollup::compute`] — one account's events to every endpoint's rows, with
//!   WeChat's definitions (distinct users per period, re-follows, the ≥ 3 article threshold,
//!   the 7-day article window, the de-duplicated `99999999` row, week and month labels).
//!
//! - `published`: the 2025 endpoints' tallies, used by [`rollup`].
//! - [`live`]: message and reply statistics kept up to date event by event, in any order.
//!
//! The engine is pure: storage and ingestion build on it.

pub mod demo;
pub mod event;
pub mod live;
mod published;
pub mod rollup;

pub use event::{parse_line, Event, EventError, Kind, MAX_LINE};
pub use rollup::{compute, compute_some};
