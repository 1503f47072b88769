//! Each event loop's own copy of its hottest datacube answers (issue 32).
//!
//! When the response cache answers a request, the answer is also copied into the table of the
//! loop that served it, keyed by the request's bytes (path and query — the access token with
//! them — and body). The next identical request on that loop is answered from the table: no
//! lock, no shared counter, nothing written that another core reads. An entry answers only
//! while nothing it was checked against has moved:
//! - the account's statistics: its generation in the response cache, read from its cell;
//! - cached tokens and accounts: nothing forgotten since (an admin change, a new token, a
//!   removal — [`App::forgotten`]), and the token's and account's records trusted no longer
//!   than the shared caches trust them (a second: another instance's changes show as soon);
//! - the clock: the token valid now, and the same China day and last ready day;
//! - no fault injected and no daily quota (those requests always take the whole path).
//!
//! Otherwise the request takes the whole path, which learns the answer again.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use axum::http::Method;
use axum::response::Response;
use bytes::Bytes;
use datacube_api::date::{china_date, last_ready_day};
use datacube_store::{TokenKind, TokenRecord, TokenStatus};
use jiff::civil::Date;

use crate::edge::Prefetched;
use crate::state::App;
use crate::wechat::AnsweredFor;

/// Answers held per loop.
const PER_LOOP: usize = 1024;
/// The largest answer held (a datacube answer over its longest span is far smaller).
const LARGEST: usize = 64 * 1024;

thread_local! {
    static TABLE: RefCell<HashMap<u64, Entry>> = RefCell::new(HashMap::new());
    static ON_LOOP: Cell<bool> = const { Cell::new(false) };
}

/// Keys the table: a process's own seed, so that no client can aim at another's entries.
static SEED: LazyLock<u64> = LazyLock::new(rand::random);

/// Marks this thread as an event loop: it learns answers from now on.
pub(crate) fn on_loop() {
    ON_LOOP.set(true);
}

/// What the whole path checked to answer a request from the response cache.
pub(crate) struct Learned {
    /// The access token's record.
    pub(crate) token: Arc<TokenRecord>,
    /// Until when the shared caches trust the token's and the account's records.
    pub(crate) until: Instant,
    /// [`App::forgotten`] before the token was looked up.
    pub(crate) forgotten: u64,
    /// The account's generation the answer is of.
    pub(crate) generation: u64,
    /// The China day and the last ready day of the answer.
    pub(crate) days: (Date, Date),
    /// The answer's body.
    pub(crate) answer: Bytes,
}

struct Entry {
    /// Path and query, then the body.
    request: Box<[u8]>,
    split: usize,
    learned: Learned,
    cell: Arc<AtomicU64>,
    appid: Arc<str>,
}

impl Entry {
    fn holds(&self, app: &App, now: i64) -> bool {
        let l = &self.learned;
        l.forgotten == app.forgotten()
            && app.inner.answers.generation_by(&self.cell) == l.generation
            && Instant::now() < l.until
            && l.token.status(now) == TokenStatus::Valid
            && (china_date(now), last_ready_day(now)) == l.days
    }
}

/// Whether answers may be held on the loops now: the response cache on, no daily quota to
/// count, no fault to draw.
fn enabled(app: &App) -> bool {
    app.inner.answers.enabled()
        && app.config().api_daily_quota.is_none()
        && !app.inner.faults.active()
}

fn key(path_and_query: &[u8], body: &[u8]) -> u64 {
    use xxhash_rust::xxh3::xxh3_64_with_seed;
    xxh3_64_with_seed(body, xxh3_64_with_seed(path_and_query, *SEED))
}

/// The loop's held answer to `req`, if it still holds. `log`: the request log wants the
/// account's name on the answer.
pub(crate) fn answer(app: &App, req: &hyper::Request<Prefetched>, log: bool) -> Option<Response> {
    if req.method() != Method::POST || !req.uri().path().starts_with("/datacube/") {
        return None;
    }
    if !ON_LOOP.get() || !enabled(app) {
        return None;
    }
    let pq = req.uri().path_and_query()?.as_str().as_bytes();
    let body = req.body().whole()?;
    let key = key(pq, body);
    let now = app.clock().unix();
    let (answer, appid) = TABLE.with_borrow_mut(|table| {
        let entry = table.get(&key)?;
        let (p, b) = entry.request.split_at(entry.split);
        if p != pq || b != body {
            return None;
        }
        if !entry.holds(app, now) {
            table.remove(&key);
            return None;
        }
        Some((entry.learned.answer.clone(), entry.appid.clone()))
    })?;
    crate::metrics::response_cache(true);
    let mut resp = crate::wechat::wechat_response(answer, 0);
    if log {
        resp.extensions_mut().insert(AnsweredFor(appid.to_string()));
    }
    Some(resp)
}

/// Holds `learned` as the answer to the request (`path_and_query`, `body`), on a loop.
pub(crate) fn learn(app: &App, path_and_query: &str, body: &[u8], learned: Learned) {
    let kind = learned.token.kind;
    if !ON_LOOP.get()
        || !matches!(kind, TokenKind::Basic | TokenKind::Stable)
        || learned.answer.len() > LARGEST
    {
        return;
    }
    let pq = path_and_query.as_bytes();
    let mut request = Vec::with_capacity(pq.len() + body.len());
    request.extend_from_slice(pq);
    request.extend_from_slice(body);
    let answers = &app.inner.answers;
    let entry = Entry {
        request: request.into(),
        split: pq.len(),
        cell: answers.cell(&learned.token.appid),
        appid: learned.token.appid.as_str().into(),
        learned: Learned {
            // The loop's own copy: its count of references is touched by this thread only.
            answer: Bytes::copy_from_slice(&learned.answer),
            ..learned
        },
    };
    let key = key(pq, body);
    TABLE.with_borrow_mut(|table| {
        if table.len() >= PER_LOOP && !table.contains_key(&key) {
            // Any one makes room (the table's order is its hashes', keyed by the seed).
            if let Some(&any) = table.keys().next() {
                table.remove(&any);
            }
        }
        table.insert(key, entry);
    });
}

impl App {
    /// How many times cached tokens or accounts were forgotten.
    pub(crate) fn forgotten(&self) -> u64 {
        self.inner.forgotten.load(Ordering::Acquire)
    }
}
