//! The real `datacube` binary, as a user runs it: one test binary, one module per part of the
//! command line, sharing the helpers of [`common`] (among them [`common::Serve`], the one way
//! these tests start `datacube serve`).

mod common;

mod admin_address;
mod commands;
mod database_wait;
mod health;
mod hostile;
mod ingest;
mod instances;
mod live;
mod message_snapshots;
mod mirror;
mod push;
mod reset;
mod secrets;
mod settings;
mod sync;
mod views;
