//! The event log in the database (SQLite or PostgreSQL), and the recomputation of the statistics a batch of events touches.
//!
//! Events are kept compactly: one `event_chunk` row holds the events of one account, class and
//! China day that one batch brought, encoded back to back (postcard), so a batch costs a few
//! hundred rows however many events it holds. Recomputing a period reads the chunks of its
//! days; a day whose chunks have become many is merged into one when it is read.
//!
//! Ids are de-duplicated per account through `event_id`: the 64-bit xxh3 hashes of the ids,
//! with the day and class of the event that holds each, sorted in buckets (by the hash's top
//! bits; the number of buckets doubles as the account grows, so that a bucket stays small). A
//! hash that is found is confirmed against the ids stored in that day's chunks, so a hash
//! collision never drops an event.
//!
//! Live events (`POST /admin/events`) are stored with their statistics deferred, recomputed
//! when they can first be read (see `live`). Recording (`push`, `proxy`) defers them too and
//! refreshes them every few seconds ([`flush_account`]): messages and replies from live
//! tallies that absorb only the chunks stored since the last refresh, so that a refresh costs
//! what arrived, not the day so far; a day recorded in many small chunks is merged a few
//! chunks at a time.
//!
//! # Layout
//! - `chunk`: a chunk's encoding and codecs; reading a day's chunks and merging them.
//! - `ids`: the id index (hashes in buckets and deltas) and de-duplication against it.
//! - `batch`: preparing a batch and storing it (also `datacube ingest`'s bulk path).
//! - `live`: periods pending while recording, and the live tallies of messages and replies.
//! - `recompute`: loading what a batch's periods need and recomputing them on workers.
//! - here: the classes events are stored by, and the tests of the whole.

mod batch;
mod chunk;
mod ids;
mod live;
mod recompute;

use datacube_engine::Kind;

pub use batch::Batch;
pub(crate) use batch::{append, store_batch, store_batch_deferred, store_bulk, Appended, Touched};
pub(crate) use chunk::{decode_one, encode_into};
pub(crate) use ids::IdCache;
pub(crate) use live::{
    due_accounts, flush_account, pending_through, recompute_pending, Due, LiveShelf,
};
pub(crate) use recompute::{carry_forward, carry_range, with_events};
use {batch::*, chunk::*, ids::*, live::*, recompute::*};

/// Events are stored by class: the statistics of one class are recomputed from its events
/// alone (articles also need followers and sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Class {
    Follow = 0,
    Message = 1,
    Reply = 2,
    Publish = 3,
    Article = 4,
}

const CLASSES: usize = 5;

impl Class {
    fn of(kind: &Kind) -> Class {
        match kind {
            Kind::Follow { .. } | Kind::Unfollow { .. } => Class::Follow,
            Kind::Message { .. } => Class::Message,
            Kind::Reply { .. } => Class::Reply,
            Kind::Publish { .. } | Kind::Published { .. } => Class::Publish,
            Kind::Read { .. }
            | Kind::Share { .. }
            | Kind::Favorite { .. }
            | Kind::Like { .. }
            | Kind::Comment { .. }
            | Kind::Praise { .. }
            | Kind::Leave { .. } => Class::Article,
        }
    }

    fn from_index(i: u32) -> Class {
        match i {
            0 => Class::Follow,
            1 => Class::Message,
            2 => Class::Reply,
            3 => Class::Publish,
            _ => Class::Article,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::p;
    use crate::Inner;
    use datacube_api::date::{add_days, china_date, date_to_epoch_day, format_date};
    use datacube_api::endpoint::Group;
    use datacube_api::Endpoint;
    use datacube_engine::Event;
    use jiff::civil::date;
    use jiff::civil::Date;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use rusqlite::{params, Connection};
    use std::collections::BTreeMap;

    /// A fresh database of its own (named `name`) with the accounts `wxa` and `wxb`, and the
    /// store's blocking side over it.
    fn fresh(name: &str) -> (tempfile::TempDir, std::sync::Arc<Inner>) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(&crate::testing::fresh_database(dir.path(), name));
        let inner = store.unwrap().inner;
        with_accounts(&inner);
        (dir, inner)
    }

    /// Adds the accounts the tests' events are of (events of no account are refused).
    fn with_accounts(inner: &Inner) {
        for appid in ["wxa", "wxb"] {
            let account = crate::AccountRecord {
                appid: appid.into(),
                secret_hash: String::new(),
                verified: true,
                created_at: 0,
                incarnation: 0,
            };
            inner
                .write(&crate::Scope::account(appid), |tx| {
                    crate::accounts::add_account(tx, &account, true)
                })
                .unwrap();
        }
    }

    /// A computed row as [`stored`] gives it back: both sides through `serde_json::Value`, so
    /// that key order compares equal.
    fn as_stored(row: &datacube_api::row::Row) -> String {
        serde_json::from_str::<serde_json::Value>(&row.json)
            .unwrap()
            .to_string()
    }

    fn stored(store: &Inner, appid: &str, endpoint: Endpoint) -> Vec<String> {
        let (out, n) = store.all_rows(appid, endpoint).unwrap();
        let list: Vec<serde_json::Value> = serde_json::from_str(&format!("[{out}]")).unwrap();
        assert_eq!(list.len(), n);
        list.iter().map(|v| v.to_string()).collect()
    }

    /// A database of the previous layout (events as JSON rows, one database row per
    /// statistics row) opens with its events and rows moved: the same answers, and the same
    /// events sent again are duplicates.
    #[test]
    fn a_version_3_database_is_migrated_with_its_events_and_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.db");
        let last = date(2024, 4, 29);
        let lines = datacube_engine::demo::events("wxa", last, 9, 7);
        let events: Vec<Event> = lines
            .iter()
            .map(|l| datacube_engine::parse_line(l).unwrap())
            .collect();
        let first = add_days(last, -8);
        let computed = datacube_engine::compute(&events, first, last);
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &crate::schema::MIGRATIONS[..3] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 3).unwrap();
            for (e, line) in events.iter().zip(&lines) {
                conn.execute(
                    "INSERT INTO event (appid, id, time, day, kind, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![e.appid, e.id, e.time, format_date(china_date(e.time)), e.kind.type_name(), line],
                )
                .unwrap();
            }
            for (endpoint, rows) in &computed {
                for r in rows {
                    conn.execute(
                        "INSERT INTO stat_row (appid, endpoint, ref_date, ref_hour, row_key, json)
                         VALUES ('wxa', ?1, ?2, ?3, ?4, ?5)",
                        params![
                            endpoint.id(),
                            format_date(r.ref_date),
                            r.ref_hour,
                            r.key,
                            r.json
                        ],
                    )
                    .unwrap();
                }
            }
        }
        let store = crate::Store::open(&format!("sqlite://{}", path.display()))
            .unwrap()
            .inner;
        for endpoint in Endpoint::ALL.iter().copied() {
            let (got, _) = store.all_rows("wxa", endpoint).unwrap();
            let want: Vec<&str> = computed
                .get(&endpoint)
                .map(|rows| rows.iter().map(|r| r.json.as_str()).collect())
                .unwrap_or_default();
            assert_eq!(got, want.join(","), "{}", endpoint.name());
        }
        let again = store
            .ingest(Batch::prepare(events.clone()).unwrap(), last)
            .unwrap();
        assert!(again.accepted.iter().all(|a| !a), "moved events are known");
        let conn = Connection::open(&path).unwrap();
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('event', 'stat_row')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "the old tables are dropped");
    }

    /// A version-5 database (plain event chunks, no delta table, accounts without ids
    /// unknown to `event_app`) opens, its chunks are read alongside new compressed ones, and
    /// its accounts are extended day by day.
    #[test]
    fn a_version_5_database_keeps_its_plain_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v5.db");
        let last = date(2024, 4, 29);
        let mut events: Vec<Event> = datacube_engine::demo::events("wxa", last, 6, 3)
            .iter()
            .map(|l| datacube_engine::parse_line(l).unwrap())
            .collect();
        for e in &mut events {
            e.id = None;
        }
        let (old, new) = events.split_at(events.len() / 2);
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &crate::schema::MIGRATIONS[..5] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 5).unwrap();
            let mut chunks: BTreeMap<(i64, i64), Vec<u8>> = BTreeMap::new();
            for e in old {
                let day = date_to_epoch_day(china_date(e.time));
                encode_into(
                    e,
                    chunks.entry((Class::of(&e.kind) as i64, day)).or_default(),
                );
            }
            for ((class, day), data) in chunks {
                conn.execute(
                    "INSERT INTO event_chunk (appid, class, day, data) VALUES ('wxa', ?1, ?2, ?3)",
                    params![class, day, data],
                )
                .unwrap();
            }
        }
        let store = crate::Store::open(&format!("sqlite://{}", path.display()))
            .unwrap()
            .inner;
        with_accounts(&store);
        store
            .ingest(Batch::prepare(new.to_vec()).unwrap(), last)
            .unwrap();
        let first = events.iter().map(|e| china_date(e.time)).min().unwrap();
        let want = datacube_engine::compute(&events, first, last);
        for (endpoint, class) in [
            (Endpoint::GetUpstreamMsg, Class::Message),
            (Endpoint::GetInterfaceSummaryHour, Class::Reply),
            (Endpoint::GetUserReadHour, Class::Article),
        ] {
            // The new batch recomputed the days its events of the class are on.
            let days: std::collections::BTreeSet<Date> = new
                .iter()
                .filter(|e| Class::of(&e.kind) == class)
                .map(|e| china_date(e.time))
                .collect();
            let got: Vec<String> = stored(&store, "wxa", endpoint)
                .into_iter()
                .filter(|r| days.iter().any(|d| r.contains(&format_date(*d))))
                .collect();
            let want: Vec<String> = want[&endpoint]
                .iter()
                .filter(|r| days.contains(&r.ref_date))
                .map(as_stored)
                .collect();
            assert!(!want.is_empty());
            assert_eq!(got, want, "{}", endpoint.name());
        }
        let extended = store.carry_forward(add_days(last, 3)).unwrap();
        assert_eq!(
            extended, 1,
            "the account without ids is known to have events"
        );
    }

    /// Events stored with their statistics deferred, in batches, give the statistics of the
    /// whole stream once the pending periods are recomputed — and nothing before.
    #[test]
    fn deferred_statistics_catch_up_when_flushed() {
        let (_dir, store) = fresh("d");
        let last = date(2024, 4, 30);
        let events: Vec<Event> = datacube_engine::demo::events("wxa", last, 20, 5)
            .iter()
            .map(|l| datacube_engine::parse_line(l).unwrap())
            .collect();
        for chunk in events.chunks(997) {
            let out = store
                .ingest_deferred(Batch::prepare(chunk.to_vec()).unwrap(), false)
                .unwrap();
            assert!(out.accepted.iter().all(|a| *a));
        }
        assert!(stored(&store, "wxa", Endpoint::GetUpstreamMsg).is_empty());
        assert_eq!(store.flush_pending(last, Due::All).unwrap(), 1);
        assert_eq!(
            store.flush_pending(last, Due::All).unwrap(),
            0,
            "nothing left pending"
        );
        let first = events.iter().map(|e| china_date(e.time)).min().unwrap();
        let want = datacube_engine::compute(&events, first, last);
        for endpoint in [
            Endpoint::GetUpstreamMsg,
            Endpoint::GetUpstreamMsgDistMonth,
            Endpoint::GetInterfaceSummaryHour,
            Endpoint::GetUserReadHour,
            Endpoint::GetUserCumulate,
        ] {
            let want: Vec<String> = want[&endpoint].iter().map(as_stored).collect();
            assert_eq!(stored(&store, "wxa", endpoint), want, "{}", endpoint.name());
        }
    }

    /// A live recording: small deferred batches in time order with flushes between (answered
    /// from live tallies), late events for days already flushed, and now and then a whole
    /// batch ingested the ordinary way (which merges crowded days behind the tallies' back).
    /// After every flush the message and interface rows equal the engine's over everything
    /// stored so far, and busy days stay in a few chunks.
    #[test]
    fn live_tallies_follow_small_batches_merges_and_other_writers() {
        let (_dir, store) = fresh("l");
        let last = date(2024, 4, 30);
        let mut events: Vec<Event> = datacube_engine::demo::events("wxa", last, 40, 7)
            .iter()
            .map(|l| datacube_engine::parse_line(l).unwrap())
            .filter(|e| matches!(e.kind, Kind::Message { .. } | Kind::Reply { .. }))
            .collect();
        // Live traffic: many events per day.
        let extra: Vec<Event> = events
            .iter()
            .enumerate()
            .map(|(i, e)| Event {
                time: e.time + (i % 7) as i64,
                id: Some(format!("x{i}")),
                ..e.clone()
            })
            .collect();
        events.extend(extra);
        events.sort_by_key(|e| e.time);
        let mut rng = StdRng::seed_from_u64(11);
        let wanted: Vec<Endpoint> = Endpoint::ALL
            .iter()
            .copied()
            .filter(|e| matches!(e.group(), Group::Message | Group::Interface))
            .collect();
        let mut stored_so_far: Vec<Event> = Vec::new();
        let (mut at, mut flushes, mut ordinary) = (0, 0, 0);
        while at < events.len() {
            // Now and then a burst of tiny batches with no flush, then an ordinary batch: its
            // recompute merges the crowded day behind the tallies' back.
            let burst = flushes % 25 == 24 && at + 40 < events.len();
            if burst {
                for _ in 0..COMPACT_AT {
                    let batch = events[at..at + 2].to_vec();
                    at += 2;
                    stored_so_far.extend(batch.iter().cloned());
                    store
                        .ingest_deferred(Batch::prepare(batch).unwrap(), false)
                        .unwrap();
                }
            }
            let n = rng.random_range(1..40).min(events.len() - at);
            let mut batch: Vec<Event> = events[at..at + n].to_vec();
            at += n;
            // A straggler from days ago.
            if rng.random_bool(0.1) && !stored_so_far.is_empty() {
                let old = &stored_so_far[rng.random_range(0..stored_so_far.len())];
                batch.push(Event {
                    id: Some(format!("late{at}")),
                    ..old.clone()
                });
            }
            stored_so_far.extend(batch.iter().cloned());
            if burst || rng.random_bool(0.05) {
                ordinary += 1;
                store.ingest(Batch::prepare(batch).unwrap(), last).unwrap();
            } else {
                store
                    .ingest_deferred(Batch::prepare(batch).unwrap(), false)
                    .unwrap();
            }
            if burst || rng.random_bool(0.3) || at == events.len() {
                flushes += 1;
                store.flush_pending(last, Due::All).unwrap();
                let first = stored_so_far
                    .iter()
                    .map(|e| china_date(e.time))
                    .min()
                    .unwrap();
                let newest = stored_so_far
                    .iter()
                    .map(|e| china_date(e.time))
                    .max()
                    .unwrap();
                let want = datacube_engine::compute_some(&stored_so_far, first, newest, &wanted);
                for endpoint in &wanted {
                    let want: Vec<String> = want
                        .get(endpoint)
                        .map_or(vec![], |rows| rows.iter().map(as_stored).collect());
                    assert_eq!(
                        stored(&store, "wxa", *endpoint),
                        want,
                        "{} after {at} events",
                        endpoint.name()
                    );
                }
            }
        }
        assert!(
            flushes > 50 && ordinary > 2,
            "{flushes} flushes, {ordinary} ordinary batches"
        );
        // Tallies were rebuilt for new months and after the ordinary batches' merges, not at
        // every flush (two classes are tallied).
        let rebuilds = store.live_rebuilds();
        assert!(
            rebuilds >= 2 && rebuilds < flushes / 4,
            "{rebuilds} rebuilds in {flushes} flushes"
        );
        // Each day's chunks were merged as they came: a few per day, not one per batch.
        let most: i64 = store
            .read(|db| {
                db.int(
                    "SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM event_chunk
                                         GROUP BY appid, class, day) AS per_day",
                    p![],
                )
            })
            .unwrap();
        assert!(most < COMPACT_AT as i64, "a day kept {most} chunks");
    }

    /// Realistic streams ingested in random batches, out of order, with batches sent twice:
    /// the stored statistics equal the engine's over all the events at once, for every
    /// endpoint, and each event is accepted exactly once.
    #[test]
    fn batches_in_any_order_give_the_statistics_of_the_whole_stream() {
        let yesterday = date(2024, 4, 30);
        for seed in 0..3u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let (_dir, store) = fresh("t");
            let mut all: Vec<Event> = Vec::new();
            for (appid, days) in [("wxa", 45), ("wxb", 20)] {
                let last = add_days(yesterday, -rng.random_range(0..10));
                all.extend(
                    datacube_engine::demo::events(appid, last, days, seed)
                        .iter()
                        .map(|l| datacube_engine::parse_line(l).unwrap()),
                );
            }
            // Some events without ids: each one counts.
            for e in all.iter_mut().step_by(17) {
                e.id = None;
            }
            let expected_total = all.len();
            // Mostly in order with a few late stragglers, or fully shuffled.
            let mut order = all.clone();
            if seed == 0 {
                order.shuffle(&mut rng);
            } else {
                for _ in 0..order.len() / 20 {
                    let (a, b) = (
                        rng.random_range(0..order.len()),
                        rng.random_range(0..order.len()),
                    );
                    order.swap(a, b);
                }
            }
            let mut accepted = 0;
            let (mut swapped, mut dropped): (Vec<Event>, Vec<Event>) = (Vec::new(), Vec::new());
            let mut rest = &order[..];
            while !rest.is_empty() {
                let n = rng.random_range(1..=rest.len().min(6000));
                let (batch, tail) = rest.split_at(n);
                rest = tail;
                // Sometimes the batch repeats some of its events with ids, anywhere in it,
                // also with another time: only the first of each counts.
                let mut sent = batch.to_vec();
                let mut repeats = 0;
                if rng.random_bool(0.2) {
                    for _ in 0..rng.random_range(1..=5) {
                        let mut e = batch[rng.random_range(0..batch.len())].clone();
                        if e.id.is_some() {
                            e.time -= rng.random_range(0..200_000);
                            let at = rng.random_range(0..=sent.len());
                            sent.insert(at, e);
                            repeats += 1;
                        }
                    }
                }
                let out = store
                    .ingest(Batch::prepare(sent.clone()).unwrap(), yesterday)
                    .unwrap();
                let taken = out.accepted.iter().filter(|a| **a).count();
                if repeats > 0 {
                    // An inserted copy may come before its original: then it is the one
                    // counted, and the original is the duplicate — the same count.
                    let with_id = sent.iter().filter(|e| e.id.is_some()).count();
                    // Ids are per account.
                    let distinct: std::collections::HashSet<(&str, &str)> = sent
                        .iter()
                        .filter_map(|e| Some((e.appid.as_str(), e.id.as_deref()?)))
                        .collect();
                    assert_eq!(
                        taken,
                        sent.len() - (with_id - distinct.len()),
                        "seed {seed}: in-batch repeats"
                    );
                    // Which copy was taken decides the counted time: count what was taken.
                    for (e, a) in sent.iter().zip(&out.accepted) {
                        if *a && !batch.contains(e) {
                            swapped.push(e.clone());
                        }
                    }
                    for (e, a) in sent.iter().zip(&out.accepted) {
                        if !*a && batch.contains(e) {
                            dropped.push(e.clone());
                        }
                    }
                }
                accepted += taken;
                if rng.random_bool(0.15) {
                    // A resend: only the events without an id count again.
                    let again = store
                        .ingest(Batch::prepare(batch.to_vec()).unwrap(), yesterday)
                        .unwrap();
                    let no_id = batch.iter().filter(|e| e.id.is_none()).count();
                    assert_eq!(again.accepted.iter().filter(|a| **a).count(), no_id);
                    for e in batch.iter().filter(|e| e.id.is_none()) {
                        all.push(e.clone());
                    }
                }
            }
            assert_eq!(accepted, expected_total, "seed {seed}");
            // Much later, everything with an id is sent again, in other batches: the index
            // still knows every id, however its levels were merged and split since.
            let mut again: Vec<Event> = order.iter().filter(|e| e.id.is_some()).cloned().collect();
            again.shuffle(&mut rng);
            for chunk in again.chunks(2500) {
                let out = store
                    .ingest(Batch::prepare(chunk.to_vec()).unwrap(), yesterday)
                    .unwrap();
                assert!(
                    out.accepted.iter().all(|a| !a),
                    "seed {seed}: an id was forgotten"
                );
            }
            // Where a repeat came first, its time is the one counted.
            all.retain(|e| !dropped.contains(e));
            all.extend(swapped.iter().cloned());
            for appid in ["wxa", "wxb"] {
                let events: Vec<Event> = all.iter().filter(|e| e.appid == appid).cloned().collect();
                let first = events.iter().map(|e| china_date(e.time)).min().unwrap();
                let want = datacube_engine::compute(&events, first, yesterday);
                // getarticletotal and getarticletotaldetail are stored with all their
                // snapshots (7, 30), also those after yesterday (serving trims them): the
                // sends up to yesterday, computed to 29 days later.
                let mut totals = datacube_engine::compute(&events, first, add_days(yesterday, 29));
                let mut snapshots = |e: Endpoint| -> Vec<datacube_api::row::Row> {
                    totals
                        .remove(&e)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|r| r.ref_date <= yesterday)
                        .collect()
                };
                let totals = [
                    (
                        Endpoint::GetArticleTotal,
                        snapshots(Endpoint::GetArticleTotal),
                    ),
                    (
                        Endpoint::GetArticleTotalDetail,
                        snapshots(Endpoint::GetArticleTotalDetail),
                    ),
                ];
                for endpoint in Endpoint::ALL.iter().copied() {
                    let want: Vec<String> = match totals.iter().find(|(e, _)| *e == endpoint) {
                        Some((_, rows)) => Some(rows),
                        None => want.get(&endpoint),
                    }
                    .map(|rows| rows.iter().map(as_stored).collect())
                    .unwrap_or_default();
                    let got = stored(&store, appid, endpoint);
                    assert!(
                        got == want,
                        "seed {seed}, {appid}, {}: {} rows stored, {} expected; first difference: {:?}",
                        endpoint.name(),
                        got.len(),
                        want.len(),
                        got.iter().zip(&want).find(|(a, b)| a != b)
                    );
                }
            }
        }
    }

    #[test]
    fn chunks_round_trip_every_kind() {
        let lines = [
            r#"{"type":"follow","appid":"wxa","id":"1","time":"2024-01-01T00:00:00+08:00","openid":"o1","source":30}"#,
            r#"{"type":"unfollow","appid":"wxa","time":"2024-01-01T00:00:00+08:00","openid":"o1"}"#,
            r#"{"type":"message","appid":"wxa","time":"2024-01-01T00:00:00+08:00","openid":"o1","msg_type":"shortvideo"}"#,
            r#"{"type":"reply","appid":"wxa","time":"2024-01-01T00:00:00+08:00","cost_ms":5000,"ok":false}"#,
            r#"{"type":"publish","appid":"wxa","time":"2024-01-01T00:00:00+08:00","msgid":"1_2","title":"标题"}"#,
            r#"{"type":"read","appid":"wxa","time":"1970-01-01T00:00:00Z","msgid":"1_2","openid":"o1","page":"ori","scene":"souyisou"}"#,
            r#"{"type":"share","appid":"wxa","time":"9998-12-31T23:59:59+08:00","msgid":"1_2","openid":"o1","scene":"other","from":"feed"}"#,
            r#"{"type":"favorite","appid":"wxa","id":"x","time":"2024-01-01T00:00:00-05:00","msgid":"1_2","openid":"o1"}"#,
        ];
        let events: Vec<Event> = lines
            .iter()
            .map(|l| datacube_engine::parse_line(l).unwrap())
            .collect();
        let mut data = Vec::new();
        for e in &events {
            encode_into(e, &mut data);
        }
        let mut back = Vec::new();
        decode_all("wxa", &data, &mut back).unwrap();
        assert_eq!(back, events);
        assert!(decode_all("wxa", &data[..data.len() - 1], &mut Vec::new()).is_err());
    }

    #[test]
    fn tags_and_buckets() {
        for day in [0, 1, 19_000, 2_932_896] {
            for class in [Class::Follow, Class::Article] {
                assert_eq!(untag(tag(day, class)), (day, class));
            }
        }
        assert_eq!(bucket_of(u64::MAX, 0), 0);
        assert_eq!(bucket_of(u64::MAX, 3), 7);
        assert_eq!(bucket_of(1 << 60, 4), 1);
        let entries = vec![(1, 2), (u64::MAX, u32::MAX)];
        assert_eq!(read_entries(&write_entries(&entries)), entries);
    }

    /// Searching a level from a cursor finds what a scan of the whole level finds: the tags of
    /// the hash, and where the first entry not below it is — for sorted lookups that move the
    /// cursor, far apart and close together, with repeated hashes.
    #[test]
    fn a_level_searched_from_a_cursor_is_searched_whole() {
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..200 {
            let n = rng.random_range(0..3_000);
            let spread = rng.random_range(1..100_000u64);
            let mut entries: Vec<(u64, u32)> = (0..n)
                .map(|_| (rng.random_range(0..spread), rng.random()))
                .collect();
            entries.sort_unstable();
            let level = write_entries(&entries);
            let mut lookups: Vec<u64> = (0..rng.random_range(1..500))
                .map(|_| rng.random_range(0..spread + 2))
                .collect();
            lookups.sort_unstable();
            let mut at = 0;
            for hash in lookups {
                let span = (rng.random_bool(0.5)).then_some((0, spread + 2));
                let (tags, next) = entries_from(&level, at, hash, span);
                let first = entries.partition_point(|e| e.0 < hash);
                let want: Vec<u32> = entries[first..]
                    .iter()
                    .take_while(|e| e.0 == hash)
                    .map(|e| e.1)
                    .collect();
                assert_eq!((tags, next), (want, first), "{hash} from {at}");
                at = next;
            }
        }
    }

    /// A delta's filter never rules out a hash it holds, and rules out nearly every other.
    #[test]
    fn a_delta_filter_keeps_every_hash_held() {
        let mut rng = StdRng::seed_from_u64(8);
        for n in [0, 1, 5, 100, 10_000] {
            let mut entries: Vec<(u64, u32)> = (0..n).map(|_| (rng.random(), 0)).collect();
            entries.sort_unstable();
            let level = ids::Level::new(write_entries(&entries).into());
            assert!(entries.iter().all(|e| level.may_hold(e.0)), "{n}");
            let others = (0..10_000).filter(|_| level.may_hold(rng.random())).count();
            assert!(
                others < 300,
                "{n} entries: {others} of 10,000 other hashes pass"
            );
        }
    }

    /// The id deltas a process holds are those stored, whoever wrote them: a delta deleted and
    /// another written under the same seq (SQLite gives a seq again after a delete) is read
    /// again, and one written before deltas were stamped is stamped, then held.
    #[test]
    fn held_deltas_are_what_is_stored() {
        let (_dir, inner) = fresh("held");
        let cache = IdCache::default();
        type Deltas = Vec<(i64, Vec<(u64, u32)>)>;
        let held = |tx: &dyn crate::db::Db| -> crate::Result<Deltas> {
            Ok(cache
                .deltas(tx, "wxa")?
                .iter()
                .map(|(seq, d)| (*seq, read_entries(&d.data)))
                .collect())
        };
        inner
            .write(&crate::Scope::account("wxa"), |tx| {
                let seq = cache.write(tx, "wxa", write_entries(&[(1, 8)]))?;
                assert_eq!(held(tx)?, vec![(seq, vec![(1, 8)])]);
                // Another writer: the delta merged away, a new one under the same seq, written
                // before stamps (0).
                tx.exec("DELETE FROM event_id_delta WHERE seq = ?1", p![seq])?;
                tx.exec(
                    "INSERT INTO event_id_delta (seq, appid, data) VALUES (?1, 'wxa', ?2)",
                    p![seq, &write_entries(&[(2, 16)])],
                )?;
                assert_eq!(held(tx)?, vec![(seq, vec![(2, 16)])]);
                let stamp = tx.int(
                    "SELECT stamp FROM event_id_delta WHERE seq = ?1",
                    p![seq],
                )?;
                assert_ne!(stamp, 0, "stamped when first read");
                // And again, under a stamp of its own.
                tx.exec("DELETE FROM event_id_delta WHERE seq = ?1", p![seq])?;
                tx.exec(
                    "INSERT INTO event_id_delta (seq, appid, data, stamp) VALUES (?1, 'wxa', ?2, ?3)",
                    p![seq, &write_entries(&[(3, 24)]), stamp + 2],
                )?;
                assert_eq!(held(tx)?, vec![(seq, vec![(3, 24)])]);
                // Gone: nothing held for it.
                tx.exec("DELETE FROM event_id_delta WHERE appid = 'wxa'", p![])?;
                assert_eq!(held(tx)?, vec![]);
                Ok(())
            })
            .unwrap();
    }

    /// The buckets a process holds are used while its account's index stamp is theirs, read
    /// again under another stamp (another writer rewrote them), and never held unstamped.
    #[test]
    fn held_buckets_follow_the_index_stamp() {
        let (_dir, inner) = fresh("buckets");
        let cache = IdCache::default();
        inner
            .write(&crate::Scope::account("wxa"), |tx| {
                tx.exec(
                    "INSERT INTO event_id (appid, bucket, data) VALUES ('wxa', 0, ?1)",
                    p![&write_entries(&[(1, 8)])],
                )?;
                let read = |stamp: i64| -> crate::Result<Vec<Vec<(u64, u32)>>> {
                    Ok(cache
                        .buckets(tx, "wxa", stamp, &[0, 1])?
                        .iter()
                        .map(|b| read_entries(b))
                        .collect())
                };
                assert_eq!(read(7)?, vec![vec![(1, 8)], vec![]]);
                let rewrite = |entries: &[(u64, u32)]| {
                    tx.exec(
                        "UPDATE event_id SET data = ?1 WHERE appid = 'wxa' AND bucket = 0",
                        p![&write_entries(entries)],
                    )
                };
                rewrite(&[(2, 16)])?;
                assert_eq!(read(7)?[0], vec![(1, 8)], "held under its stamp");
                assert_eq!(read(9)?[0], vec![(2, 16)], "read again under another");
                rewrite(&[(3, 24)])?;
                assert_eq!(read(0)?[0], vec![(3, 24)], "unstamped: read");
                rewrite(&[(4, 32)])?;
                assert_eq!(read(0)?[0], vec![(4, 32)], "unstamped: never held");
                Ok(())
            })
            .unwrap();
    }

    /// Two processes writing one account by turns — each holding the index it read, the other
    /// merging and splitting its buckets meanwhile (ids collide all the time under test) —
    /// never take an id twice, nor refuse a new one.
    #[test]
    fn two_writers_by_turns_take_each_id_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::testing::fresh_database(dir.path(), "turns");
        let one = crate::Store::open(&url).unwrap().inner;
        with_accounts(&one);
        let other = crate::Store::open(&url).unwrap().inner;
        let mut rng = StdRng::seed_from_u64(23);
        let reply = |id: String, time: i64| Event {
            appid: "wxa".into(),
            id: Some(id),
            time,
            kind: Kind::Reply {
                cost_ms: 10,
                ok: true,
            },
        };
        let mut sent: Vec<Event> = Vec::new();
        let mut accepted = 0;
        for round in 0..80 {
            let store = if rng.random_bool(0.5) { &one } else { &other };
            let new: Vec<Event> = (0..rng.random_range(1..60))
                .map(|i| reply(format!("r{round}-{i}"), 1_714_000_000 + round * 3_600))
                .collect();
            let mut batch = new.clone();
            for _ in 0..rng.random_range(0..10) {
                if !sent.is_empty() {
                    batch.push(sent[rng.random_range(0..sent.len())].clone());
                }
            }
            let outcome = store
                .ingest_deferred(Batch::prepare(batch).unwrap(), false)
                .unwrap();
            let taken = outcome.accepted.iter().filter(|a| **a).count();
            assert_eq!(
                taken,
                new.len(),
                "round {round}: the new ids, and only them"
            );
            accepted += taken;
            sent.extend(new);
        }
        assert_eq!(accepted, sent.len());
    }
}
