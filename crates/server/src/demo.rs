//! Demo statistics.
