//! datacube's HTTP server: the WeChat API (`/cgi-bin/token`, `/cgi-bin/stable_token`,
//! `/datacube/<name>`) answered byte for byte as WeChat does, and the admin API (`/admin`).
//!
//! # Layout
//! - `serve` ([`serve()`], [`serve_on`]): the accept loop — takes bound listeners (the main
//!   address, and the admin and metrics ones of their own) and a shutdown future — the
//!   change-log watcher and the day roller.
//! - [`waiting`]: what the addresses answer before the server serves (its database not open
//!   yet: `serve --database-wait`).
//! - `edge`: what one client may take — connections, requests, deadlines — and who makes room.
//! - `state` ([`App`]): shared state (store, clock, settings, the caches of tokens, accounts
//!   and grants).
//! - `wechat`: the WeChat API handlers, in WeChat's order of checks.
//! - `cache`: datacube answers, retired per account when its statistics change.
//! - [`admin`]: accounts, imports, events over HTTP; `control`: what a test suite drives —
//!   reset, the clock, faults at run time.
//! - [`demo`]: generated demo statistics for `serve --demo`.
//! - [`seed`]: fixtures loaded by `serve --seed`.
//! - `component`: third-party platforms — the component APIs, ticket and authorization pushes.
//! - `dashboard`: the dashboard's files, served from the binary, with their security headers.
//! - `health`: `/healthz` and `/readyz`, for orchestrators.
//! - [`openapi`]: the API described in OpenAPI 3.1 (`/openapi.json`), and its page (`/docs`).
//! - [`metrics`]: Prometheus metrics at `/metrics`.
//! - [`mirror`]: `POST /admin/sync/run`, asking `serve --mirror`'s daemon to run now.
//! - [`config`], [`secret`]: settings, and secrets checked on a bounded set of threads.
//! - [`gate`]: known answers and throttles in front of the secret checks.
//! - [`faults`]: injected error answers and latency (`serve --faults`).

pub mod admin;
mod cache;
mod component;
pub mod config;
mod control;
mod dashboard;
pub mod demo;
mod edge;
pub mod faults;
mod front;
pub mod gate;
pub mod health;
mod hot;
pub mod metrics;
pub mod mirror;
pub mod openapi;
mod resident;
pub mod secret;
pub mod seed;
mod serve;
mod state;
pub mod waiting;
mod wechat;

pub use serve::{router, serve, serve_internal, serve_on, Listeners};
pub use state::App;
