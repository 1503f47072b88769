//! The commands that have outgrown `main.rs`, one module each.

pub mod healthcheck;
pub mod ingest;
pub mod sync;
