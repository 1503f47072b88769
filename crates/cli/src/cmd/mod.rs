//! The commands that have outgrown `main.rs`, one module each.

pub mod sync;
