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
//!
//! Each loop also knows, per access token it saw, the statistics held in memory it answered
//! from ([`crate::resident`]): another range of them is answered on the loop too — the same
//! checks, the body's dates checked as the whole path checks them, the rows sliced from the
//! held copy as the whole path slices them — without the shared caches. Only answers are
//! given so; anything else (an error to tell, statistics not held, live events pending) takes
//! the whole path. The loop refers to held statistics weakly: what the server drops (a
//! change, the memory budget) is gone from the loops too.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock, Weak};
use std::time::Instant;

use axum::http::Method;
use axum::response::Response;
use bytes::Bytes;
use datacube_api::date::{check_range, china_date, last_ready_day, parse_request, served_labels};
use datacube_api::Endpoint;
use datacube_store::{Resident, TokenKind, TokenRecord, TokenStatus};
use jiff::civil::Date;

use crate::state::App;
use crate::wechat::AnsweredFor;

/// Answers held per loop, at most.
const PER_LOOP: usize = 1024;
/// Bytes of requests and answers held per loop, at most.
const BYTES_PER_LOOP: usize = 8 << 20;
/// Access tokens known per loop.
const TOKENS_PER_LOOP: usize = 4096;
/// The largest answer held (a datacube answer over its longest span is far smaller).
const LARGEST: usize = 64 * 1024;
/// The largest request (path, query and body) whose answer is held: a datacube request is
/// about 200 bytes; one padded to the body limit is answered, not held.
const LARGEST_REQUEST: usize = 4096;

thread_local! {
    static TABLE: RefCell<Table> = RefCell::default();
    static ON_LOOP: Cell<bool> = const { Cell::new(false) };
    static TOKENS: RefCell<HashMap<Box<str>, Holder>> = RefCell::new(HashMap::new());
    /// The China day and the last ready day of a second ([`days`]).
    static DAYS: Cell<(i64, Date, Date)> = const { Cell::new((i64::MIN, Date::MIN, Date::MIN)) };
}

/// The China day and the last ready day at `now` (the clock's, in seconds), computed once a
/// second per loop.
fn days(now: i64) -> (Date, Date) {
    let (at, today, ready) = DAYS.get();
    if at == now {
        return (today, ready);
    }
    let (today, ready) = (china_date(now), last_ready_day(now));
    DAYS.set((now, today, ready));
    (today, ready)
}

/// The table's keys are hashes already (xxh3 under the process's seed): used as they are.
#[derive(Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Keys the table: a process's own seed, so that no client can aim at another's entries.
static SEED: LazyLock<u64> = LazyLock::new(rand::random);

/// Marks this thread as an event loop: it learns answers from now on.
pub(crate) fn on_loop() {
    ON_LOOP.set(true);
}

/// What the whole path checked of a request's access token and account.
#[derive(Clone)]
pub(crate) struct Checked {
    /// The access token's record.
    pub(crate) token: Arc<TokenRecord>,
    /// Until when the shared caches trust the token's and the account's records.
    pub(crate) until: Instant,
    /// [`App::forgotten`] before the token was looked up.
    pub(crate) forgotten: u64,
}

impl Checked {
    /// Whether it still holds at `now` (the clock's).
    fn holds(&self, app: &App, now: i64) -> bool {
        self.forgotten == app.forgotten()
            && Instant::now() < self.until
            && self.token.status(now) == TokenStatus::Valid
    }

    /// Whether a loop may learn from it.
    fn learnable(&self) -> bool {
        ON_LOOP.get() && matches!(self.token.kind, TokenKind::Basic | TokenKind::Stable)
    }
}

/// What the whole path checked to answer a request from the response cache.
pub(crate) struct Learned {
    /// The token and the account.
    pub(crate) checked: Checked,
    /// The account's generation the answer is of.
    pub(crate) generation: u64,
    /// The China day and the last ready day of the answer.
    pub(crate) days: (Date, Date),
    /// The answer's body.
    pub(crate) answer: Bytes,
}

/// A loop's answers, within [`PER_LOOP`] and [`BYTES_PER_LOOP`].
#[derive(Default)]
struct Table {
    entries: HashMap<u64, Entry, std::hash::BuildHasherDefault<Prehashed>>,
    bytes: usize,
}

impl Table {
    fn remove(&mut self, key: &u64) {
        if let Some(gone) = self.entries.remove(key) {
            self.bytes -= gone.size();
        }
    }

    fn insert(&mut self, key: u64, entry: Entry) {
        self.remove(&key);
        while !self.entries.is_empty()
            && (self.entries.len() >= PER_LOOP || self.bytes + entry.size() > BYTES_PER_LOOP)
        {
            // Any one makes room (the table's order is its hashes', keyed by the seed).
            let Some(&any) = self.entries.keys().next() else {
                break;
            };
            self.remove(&any);
        }
        self.bytes += entry.size();
        self.entries.insert(key, entry);
    }
}

struct Entry {
    /// Path and query, then the body.
    request: Box<[u8]>,
    split: usize,
    learned: Learned,
    cell: Arc<AtomicU64>,
}

impl Entry {
    fn size(&self) -> usize {
        self.request.len() + self.learned.answer.len()
    }

    fn holds(&self, app: &App, now: i64) -> bool {
        let l = &self.learned;
        l.checked.holds(app, now)
            && app.inner.answers.generation_by(&self.cell) == l.generation
            && days(now) == l.days
    }
}

/// What a loop knows of an access token: what the whole path checked, and the statistics
/// held in memory it answered from, each with the account's generation it is of.
struct Holder {
    checked: Checked,
    cell: Arc<AtomicU64>,
    held: Vec<(Endpoint, u64, Weak<Resident>)>,
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

/// The loop's held answer to a request — its method, target (path and query, as the
/// client sent them) and body, if it came whole — if it still holds. `log`: the request log
/// wants the account's name on the answer.
pub(crate) fn answer(
    app: &App,
    method: &Method,
    target: &str,
    body: Option<&[u8]>,
    log: bool,
) -> Option<Response> {
    if method != Method::POST || !target.starts_with("/datacube/") {
        return None;
    }
    if !ON_LOOP.get() || !enabled(app) {
        return None;
    }
    let body = body?;
    // One byte past the limit tells the whole path the body was too large (an error, told
    // there).
    if body.len() > app.config().limits.body_limit {
        return None;
    }
    let now = app.clock().unix();
    let answered =
        exact(app, target, body, now, log).or_else(|| from_held(app, target, body, now, log));
    let (answer, appid) = answered?;
    let mut resp = crate::wechat::wechat_response(answer, 0);
    if let Some(appid) = appid {
        resp.extensions_mut().insert(appid);
    }
    Some(resp)
}

/// The request log's name of the account (only when `log`).
fn named(log: bool, token: &TokenRecord) -> Option<AnsweredFor> {
    log.then(|| AnsweredFor(token.appid.clone()))
}

/// The answer the loop holds for exactly this request.
fn exact(
    app: &App,
    target: &str,
    body: &[u8],
    now: i64,
    log: bool,
) -> Option<(Bytes, Option<AnsweredFor>)> {
    let pq = target.as_bytes();
    let key = key(pq, body);
    let answered = TABLE.with_borrow_mut(|table| {
        let entry = table.entries.get(&key)?;
        let (p, b) = entry.request.split_at(entry.split);
        if p != pq || b != body {
            return None;
        }
        if !entry.holds(app, now) {
            table.remove(&key);
            return None;
        }
        let named = named(log, &entry.learned.checked.token);
        Some((entry.learned.answer.clone(), named))
    })?;
    crate::metrics::response_cache(true);
    Some(answered)
}

/// The answer from statistics held in memory that this loop answered the token from before.
fn from_held(
    app: &App,
    target: &str,
    body: &[u8],
    now: i64,
    log: bool,
) -> Option<(Bytes, Option<AnsweredFor>)> {
    if !app.inner.residents.enabled() {
        return None;
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let endpoint = Endpoint::from_name(path.strip_prefix("/datacube/")?)?;
    if endpoint.is_legacy_article() && app.config().retire_legacy_articles {
        return None;
    }
    let token = crate::wechat::query_value(query, "access_token").ok()??;
    let (resident, appid) = TOKENS.with_borrow_mut(|tokens| {
        let holder = tokens.get_mut(&*token)?;
        if !holder.checked.holds(app, now) {
            tokens.remove(&*token);
            return None;
        }
        let generation = app.inner.answers.generation_by(&holder.cell);
        let at = holder.held.iter().position(|(e, _, _)| *e == endpoint)?;
        let (_, held_at, weak) = &holder.held[at];
        match weak.upgrade().filter(|_| *held_at == generation) {
            Some(resident) => Some((resident, named(log, &holder.checked.token))),
            None => {
                holder.held.swap_remove(at);
                None
            }
        }
    })?;
    let range = parse_request(body).ok()?;
    let (today, ready) = days(now);
    check_range(endpoint, range, today).ok()?;
    let (begin, end) = served_labels(endpoint, range, ready)?;
    if resident.pending_through(ready) {
        return None;
    }
    let answer = crate::wechat::rendered(endpoint, resident.body((begin, end)), begin, ready);
    crate::metrics::response_cache(false);
    Some((Bytes::from(answer), appid))
}

/// Remembers, for `token`, that `endpoint`'s statistics held at `generation` answered it.
pub(crate) fn learn_held(
    app: &App,
    token: &str,
    checked: &Checked,
    endpoint: Endpoint,
    generation: u64,
    resident: &Arc<Resident>,
) {
    if !checked.learnable() {
        return;
    }
    let held = (endpoint, generation, Arc::downgrade(resident));
    TOKENS.with_borrow_mut(|tokens| {
        if let Some(holder) = tokens.get_mut(token) {
            if holder.checked.forgotten == checked.forgotten
                && Arc::ptr_eq(&holder.checked.token, &checked.token)
            {
                holder.checked.until = checked.until;
                holder.held.retain(|(e, _, _)| *e != endpoint);
                holder.held.push(held);
                return;
            }
        }
        if tokens.len() >= TOKENS_PER_LOOP && !tokens.contains_key(token) {
            if let Some(any) = tokens.keys().next().cloned() {
                tokens.remove(&any);
            }
        }
        let holder = Holder {
            checked: checked.clone(),
            cell: app.inner.answers.cell(&checked.token.appid),
            held: vec![held],
        };
        tokens.insert(token.into(), holder);
    });
}

/// Holds `learned` as the answer to the request (`path_and_query`, `body`), on a loop.
pub(crate) fn learn(app: &App, path_and_query: &str, body: &[u8], learned: Learned) {
    let pq = path_and_query.as_bytes();
    if !learned.checked.learnable()
        || learned.answer.len() > LARGEST
        || pq.len() + body.len() > LARGEST_REQUEST
    {
        return;
    }
    let mut request = Vec::with_capacity(pq.len() + body.len());
    request.extend_from_slice(pq);
    request.extend_from_slice(body);
    let answers = &app.inner.answers;
    let entry = Entry {
        request: request.into(),
        split: pq.len(),
        cell: answers.cell(&learned.checked.token.appid),
        learned: Learned {
            // The loop's own copy: its count of references is touched by this thread only.
            answer: Bytes::copy_from_slice(&learned.answer),
            ..learned
        },
    };
    let key = key(pq, body);
    TABLE.with_borrow_mut(|table| table.insert(key, entry));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(request: usize, answer: usize) -> Entry {
        let token = TokenRecord {
            token: "t".into(),
            appid: "wx".into(),
            kind: TokenKind::Basic,
            issued_at: 0,
            expires_at: 7200,
            invalid_after: None,
            component: None,
        };
        Entry {
            request: vec![b'r'; request].into(),
            split: 0,
            learned: Learned {
                checked: Checked {
                    token: Arc::new(token),
                    until: Instant::now(),
                    forgotten: 0,
                },
                generation: 0,
                days: (Date::MIN, Date::MIN),
                answer: Bytes::from(vec![b'a'; answer]),
            },
            cell: Arc::default(),
        }
    }

    #[test]
    fn a_loops_table_stays_within_its_count_and_bytes() {
        let mut table = Table::default();
        for key in 0..3 * PER_LOOP as u64 {
            table.insert(key, entry(100, 1000));
        }
        assert_eq!(table.entries.len(), PER_LOOP);
        assert_eq!(table.bytes, PER_LOOP * 1100);
        for key in 0..100 {
            table.insert(key, entry(100, LARGEST));
        }
        assert!(table.bytes <= BYTES_PER_LOOP, "{}", table.bytes);
        let held: usize = table.entries.values().map(Entry::size).sum();
        assert_eq!(held, table.bytes);
    }
}
