//! Integration tests of the HTTP server: a real server on 127.0.0.1:0 over its own SQLite
//! file, driven over real HTTP.

mod components;
mod control;
mod dashboard;
mod described;
mod endpoints;
mod error_snapshots;
mod errors;
mod events;
mod front;
mod fuzz;
mod helpers;
mod hot;
mod limits;
mod oddities;
mod openapi;
mod published;
mod removal;
mod tokens;
