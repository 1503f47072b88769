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
//! Recording (`push`, `proxy`) stores events with their statistics deferred and refreshes them
//! every few seconds ([`flush_pending`]): messages and replies from live tallies that absorb
//! only the chunks stored since the last refresh, so that a refresh costs what arrived, not
//! the day so far; a day recorded in many small chunks is merged a few chunks at a time.

use std::collections::{BTreeMap, HashMap};

use datacube_api::date::{add_days, china_date, date_to_epoch_day, epoch_day_to_date, monday_of};
use datacube_api::endpoint::Group;
use datacube_api::{Endpoint, Period};
use datacube_engine::{Event, Kind};
use jiff::civil::Date;
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

use crate::db::{p, Db};
use crate::Result;

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

/// A day is merged into one chunk when reading it finds this many.
const COMPACT_AT: usize = 16;
/// The id index doubles its buckets when they hold more than this many ids on average.
#[cfg(not(test))]
const BUCKET_TARGET: u64 = 512;
#[cfg(test)]
const BUCKET_TARGET: u64 = 4;
const MAX_BUCKET_BITS: u32 = 24;
/// The id index's deltas are merged into its buckets when there are this many.
#[cfg(not(test))]
const MAX_DELTAS: usize = 8;
#[cfg(test)]
const MAX_DELTAS: usize = 3;
/// The deltas are merged into the buckets once they hold at least 1/DELTA_SHARE of the ids
/// (else among themselves).
const DELTA_SHARE: u64 = 8;
/// One id index entry: the hash (8 bytes) and the event's day × 8 + class (4 bytes).
const ENTRY: usize = 12;

#[derive(Serialize)]
struct Encode<'a> {
    id: Option<&'a str>,
    time: i64,
    kind: &'a Kind,
}

#[derive(Deserialize)]
struct Decode {
    id: Option<String>,
    time: i64,
    kind: Kind,
}

pub(crate) fn encode_into(event: &Event, out: &mut Vec<u8>) {
    let item = Encode {
        id: event.id.as_deref(),
        time: event.time,
        kind: &event.kind,
    };
    // Serializing into a Vec cannot fail for these types.
    if let Ok(bytes) = postcard::to_extend(&item, std::mem::take(out)) {
        *out = bytes;
    }
}

/// How a chunk's bytes are stored (`event_chunk.codec`).
const PLAIN: i64 = 0;
const ZSTD: i64 = 1;

/// Decodes a stored chunk of either codec.
fn decode_chunk(appid: &str, codec: i64, data: &[u8], out: &mut Vec<Event>) -> Result<()> {
    match codec {
        PLAIN => decode_all(appid, data, out),
        ZSTD => decode_all(
            appid,
            &crate::codec::decompress(data, &format!("an event chunk of {appid}"))?,
            out,
        ),
        other => Err(crate::StoreError::Corrupt(format!(
            "an event chunk of {appid} has unknown codec {other}"
        ))),
    }
}

/// A chunk's plain bytes.
fn plain_chunk(appid: &str, codec: i64, data: Vec<u8>) -> Result<Vec<u8>> {
    match codec {
        ZSTD => crate::codec::decompress(&data, &format!("an event chunk of {appid}")),
        _ => Ok(data),
    }
}

/// Decodes one event encoded by [`encode_into`] (and nothing after it).
pub(crate) fn decode_one(appid: &str, data: &[u8]) -> Result<Event> {
    let d = postcard::from_bytes::<Decode>(data)
        .map_err(|e| crate::StoreError::Corrupt(format!("a sorted event of {appid}: {e}")))?;
    Ok(Event {
        appid: appid.to_owned(),
        id: d.id,
        time: d.time,
        kind: d.kind,
    })
}

fn decode_all(appid: &str, mut data: &[u8], out: &mut Vec<Event>) -> Result<()> {
    while !data.is_empty() {
        let (d, rest) = postcard::take_from_bytes::<Decode>(data)
            .map_err(|e| crate::StoreError::Corrupt(format!("an event chunk of {appid}: {e}")))?;
        out.push(Event {
            appid: appid.to_owned(),
            id: d.id,
            time: d.time,
            kind: d.kind,
        });
        data = rest;
    }
    Ok(())
}

#[cfg(not(test))]
fn id_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// Under test, 16 hash values spread over the whole range: ids collide all the time, so that
/// every found hash must be confirmed against the stored ids, and buckets split.
#[cfg(test)]
fn id_hash(id: &str) -> u64 {
    (xxhash_rust::xxh3::xxh3_64(id.as_bytes()) & 0xF) * 0x1111_1111_1111_1111
}

fn tag(day: i64, class: Class) -> u32 {
    // Days from 1970 to 9998 (the event format's range) fit with room to spare.
    (day as u32) * 8 + class as u32
}

fn untag(tag: u32) -> (i64, Class) {
    (i64::from(tag / 8), Class::from_index(tag % 8))
}

fn bucket_of(hash: u64, bits: u32) -> i64 {
    if bits == 0 {
        0
    } else {
        (hash >> (64 - bits)) as i64
    }
}

/// In a sorted entries blob, from entry `at` on: the tags of the entries with `hash`, and the
/// first entry whose hash is not below it (binary search: a few ids against a large level).
fn entries_from(blob: &[u8], at: usize, hash: u64) -> (Vec<u32>, usize) {
    let n = blob.len() / ENTRY;
    let hash_at = |i: usize| {
        let mut h = [0u8; 8];
        h.copy_from_slice(&blob[i * ENTRY..i * ENTRY + 8]);
        u64::from_le_bytes(h)
    };
    let (mut lo, mut hi) = (at.min(n), n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if hash_at(mid) < hash {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let tags = (lo..n)
        .take_while(|i| hash_at(*i) == hash)
        .map(|i| {
            let mut t = [0u8; 4];
            t.copy_from_slice(&blob[i * ENTRY + 8..(i + 1) * ENTRY]);
            u32::from_le_bytes(t)
        })
        .collect();
    (tags, lo)
}

fn read_entries(blob: &[u8]) -> Vec<(u64, u32)> {
    blob.chunks_exact(ENTRY)
        .map(|c| {
            let mut h = [0u8; 8];
            let mut t = [0u8; 4];
            h.copy_from_slice(&c[..8]);
            t.copy_from_slice(&c[8..]);
            (u64::from_le_bytes(h), u32::from_le_bytes(t))
        })
        .collect()
}

fn write_entries(entries: &[(u64, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY);
    for (h, t) in entries {
        out.extend_from_slice(&h.to_le_bytes());
        out.extend_from_slice(&t.to_le_bytes());
    }
    out
}

/// The days one batch touched for one account, per class.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Touched {
    spans: [Option<(Date, Date)>; CLASSES],
}

impl Touched {
    fn add(&mut self, class: Class, day: Date) {
        let span = &mut self.spans[class as usize];
        *span = union(*span, Some((day, day)));
    }

    fn get(&self, class: Class) -> Option<(Date, Date)> {
        self.spans[class as usize]
    }

    fn overall(&self) -> Option<(Date, Date)> {
        self.spans.iter().copied().fold(None, union)
    }
}

fn union(a: Option<(Date, Date)>, b: Option<(Date, Date)>) -> Option<(Date, Date)> {
    match (a, b) {
        (Some((a0, a1)), Some((b0, b1))) => Some((a0.min(b0), a1.max(b1))),
        (x, None) | (None, x) => x,
    }
}

/// A batch of events made ready to store: grouped by account, class and day, ids hashed,
/// chunks encoded and compressed. Preparing is pure work on the events, done before the
/// database is involved (on the caller's thread), so that the single writer only writes.
#[derive(Debug, Default)]
pub struct Batch {
    len: usize,
    accounts: Vec<AccountBatch>,
}

#[derive(Debug)]
struct AccountBatch {
    appid: String,
    /// By class: the events, in (day, batch order) order.
    classes: [ClassBatch; CLASSES],
}

#[derive(Debug, Default)]
struct ClassBatch {
    events: Vec<Event>,
    /// Per event: its position in the batch, its China day, its id's hash (if it has an id
    /// and is the first in the batch with that id), whether it is taken.
    pos: Vec<u32>,
    days: Vec<i64>,
    hashes: Vec<Option<u64>>,
    /// `false` for a later event with the same id as an earlier one of the batch, and, once
    /// stored, for an id accepted before.
    take: Vec<bool>,
    /// One per day: the events `range`, encoded and compressed (those taken at preparation).
    chunks: Vec<Chunk>,
}

#[derive(Debug)]
struct Chunk {
    day: i64,
    range: std::ops::Range<usize>,
    packed: Vec<u8>,
}

impl Batch {
    /// Prepares `events` for [`crate::Store::ingest_batch`].
    pub fn prepare(mut events: Vec<Event>) -> Result<Batch> {
        let len = events.len();
        // Accounts, in appid order, and each event's: (account, class, day, position) packed
        // into one sortable number, so that the events move once, into their class.
        let mut appids: Vec<&str> = Vec::new();
        let mut account_of: Vec<u32> = Vec::with_capacity(len);
        {
            let mut index: rustc_hash::FxHashMap<&str, u32> = Default::default();
            let mut last: Option<(&str, u32)> = None;
            for e in &events {
                let a = match last {
                    Some((appid, a)) if appid == e.appid => a,
                    _ => {
                        let next = appids.len() as u32;
                        let a = *index.entry(&e.appid).or_insert(next);
                        if a == next {
                            appids.push(&e.appid);
                        }
                        last = Some((&e.appid, a));
                        a
                    }
                };
                account_of.push(a);
            }
        }
        let mut order: Vec<u32> = (0..appids.len() as u32).collect();
        order.sort_by_key(|a| appids[*a as usize]);
        let mut rank = vec![0u32; appids.len()];
        for (r, a) in order.iter().enumerate() {
            rank[*a as usize] = r as u32;
        }
        let names: Vec<String> = order
            .iter()
            .map(|a| appids[*a as usize].to_owned())
            .collect();
        // Days fit 22 bits (the event format's 1970 to 9998), positions 32.
        if let Some(e) = events
            .iter()
            .find(|e| !(0..1 << 22).contains(&date_to_epoch_day(china_date(e.time))))
        {
            return Err(crate::StoreError::Corrupt(format!(
                "an event of {} at {} is outside the years 1970 to 9998",
                e.appid, e.time
            )));
        }
        let mut keys: Vec<(u64, u32)> = events
            .iter()
            .zip(&account_of)
            .enumerate()
            .map(|(pos, (e, a))| {
                let day = date_to_epoch_day(china_date(e.time)) as u64;
                let class = Class::of(&e.kind) as u64;
                let account = u64::from(rank[*a as usize]);
                ((account << 25) | (class << 22) | day, pos as u32)
            })
            .collect();
        // By account, class, day; the batch's order within a day.
        keys.sort_unstable();
        let mut accounts: Vec<AccountBatch> = names
            .into_iter()
            .map(|appid| AccountBatch {
                appid,
                classes: Default::default(),
            })
            .collect();
        for group in keys.chunk_by(|x, y| x.0 >> 22 == y.0 >> 22) {
            let account = (group[0].0 >> 25) as usize;
            let class = ((group[0].0 >> 22) & 7) as usize;
            let c = &mut accounts[account].classes[class];
            c.events.reserve_exact(group.len());
            c.pos.reserve_exact(group.len());
            c.days.reserve_exact(group.len());
            for &(key, pos) in group {
                // Moved out; what is left behind owns nothing.
                let e = std::mem::replace(
                    &mut events[pos as usize],
                    Event {
                        appid: String::new(),
                        id: None,
                        time: 0,
                        kind: Kind::Reply {
                            cost_ms: 0,
                            ok: true,
                        },
                    },
                );
                c.pos.push(pos);
                c.days.push((key & ((1 << 22) - 1)) as i64);
                c.events.push(e);
            }
        }
        for account in &mut accounts {
            // Ids: only the first event with an id counts in a batch (in the batch's order,
            // across classes).
            let mut firsts: Vec<(u32, u8, u32)> = Vec::new();
            for (ci, c) in account.classes.iter().enumerate() {
                for (k, pos) in c.pos.iter().enumerate() {
                    if c.events[k].id.is_some() {
                        firsts.push((*pos, ci as u8, k as u32));
                    }
                }
            }
            firsts.sort_unstable();
            let mut first = vec![Vec::new(); CLASSES];
            for (ci, c) in account.classes.iter().enumerate() {
                first[ci] = vec![true; c.events.len()];
            }
            {
                let mut seen: FxHashSet<&str> = FxHashSet::default();
                for (_, ci, k) in &firsts {
                    let id = account.classes[*ci as usize].events[*k as usize]
                        .id
                        .as_deref();
                    if let Some(id) = id {
                        first[*ci as usize][*k as usize] = seen.insert(id);
                    }
                }
            }
            for (c, first) in account.classes.iter_mut().zip(first) {
                c.hashes = c
                    .events
                    .iter()
                    .zip(&first)
                    .map(|(e, f)| e.id.as_deref().filter(|_| *f).map(id_hash))
                    .collect();
                c.take = first;
                let mut start = 0;
                while start < c.events.len() {
                    let day = c.days[start];
                    let end = start + c.days[start..].iter().take_while(|d| **d == day).count();
                    let packed = c.encode(start..end)?;
                    c.chunks.push(Chunk {
                        day,
                        range: start..end,
                        packed,
                    });
                    start = end;
                }
            }
        }
        Ok(Batch { len, accounts })
    }

    /// How many events the batch holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl ClassBatch {
    /// The events of `range` that are taken, encoded and compressed.
    fn encode(&self, range: std::ops::Range<usize>) -> Result<Vec<u8>> {
        self.encode_taken(&self.take, range)
    }

    /// The events of `range` that `take` says, encoded and compressed.
    fn encode_taken(&self, take: &[bool], range: std::ops::Range<usize>) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        for k in range {
            if take[k] {
                encode_into(&self.events[k], &mut data);
            }
        }
        crate::codec::compress(&data)
    }
}

/// What storing one account's events of a batch did.
pub(crate) struct Appended {
    pub(crate) touched: Touched,
    /// The `event_chunk` rows written, whose events are [`Appended::own`]'s.
    own_chunks: FxHashSet<i64>,
}

/// Stores a prepared batch: duplicates (by id, per account, against the store and earlier in
/// the batch) are left out, and dropped from the batch. Returns, for each event, whether it
/// was accepted, and what was stored for each account.
pub(crate) fn append(
    tx: &dyn Db,
    batch: &mut Batch,
) -> Result<(Vec<bool>, BTreeMap<String, Appended>)> {
    let (takes, appended) = store_events(tx, batch)?;
    Ok((keep_taken(batch, takes), appended))
}

/// Which events of each class of an account were stored (not duplicates).
type Takes = [Vec<bool>; CLASSES];

/// Stores the events of a prepared batch that are not duplicates (by id, per account, against
/// the store and earlier in the batch), leaving the batch as it is. Returns, per account,
/// which events were stored, and what was stored for each account that stored any.
fn store_events(tx: &dyn Db, batch: &Batch) -> Result<(Vec<Takes>, BTreeMap<String, Appended>)> {
    let mut takes = Vec::with_capacity(batch.accounts.len());
    let mut out = BTreeMap::new();
    for account in &batch.accounts {
        let appid = account.appid.as_str();
        let mut take: Takes = account.classes.each_ref().map(|c| c.take.clone());
        // Ids against the index.
        let mut candidates: Vec<Candidate> = Vec::new();
        for (ci, c) in account.classes.iter().enumerate() {
            for (k, hash) in c.hashes.iter().enumerate() {
                if let Some(hash) = hash {
                    candidates.push(Candidate {
                        hash: *hash,
                        tag: tag(c.days[k], Class::from_index(ci as u32)),
                        class: ci as u8,
                        index: k as u32,
                    });
                }
            }
        }
        if !candidates.is_empty() {
            let fresh = dedup_ids(tx, appid, &account.classes, candidates)?;
            for (c, take) in account.classes.iter().zip(take.iter_mut()) {
                for (k, hash) in c.hashes.iter().enumerate() {
                    if hash.is_some() {
                        take[k] = false;
                    }
                }
            }
            for (class, index) in fresh {
                take[class as usize][index as usize] = true;
            }
        }
        // Chunks, re-encoded where the index found duplicates.
        let mut appended = Appended {
            touched: Touched::default(),
            own_chunks: FxHashSet::default(),
        };
        for (ci, c) in account.classes.iter().enumerate() {
            let class = Class::from_index(ci as u32);
            let take = &take[ci];
            for chunk in &c.chunks {
                let taken = take[chunk.range.clone()].iter().filter(|t| **t).count();
                if taken == 0 {
                    continue;
                }
                let reencoded;
                // Unchanged unless the index found an id of the chunk (ids leave, never come).
                let packed = if chunk
                    .range
                    .clone()
                    .all(|k| c.hashes[k].is_none() || take[k])
                {
                    &chunk.packed
                } else {
                    reencoded = c.encode_taken(take, chunk.range.clone())?;
                    &reencoded
                };
                let seq = tx.int(
                    "INSERT INTO event_chunk (appid, class, day, data, codec)
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING seq",
                    p![appid, ci, chunk.day, packed, ZSTD],
                )?;
                appended.own_chunks.insert(seq);
                appended.touched.add(class, epoch_day_to_date(chunk.day));
            }
        }
        if !appended.own_chunks.is_empty() {
            // Known as an account with events (see `carry_forward`).
            tx.exec(
                "INSERT INTO event_app (appid, id_bits, ids) VALUES (?1, 0, 0)
                 ON CONFLICT (appid) DO NOTHING",
                p![appid],
            )?;
            out.insert(appid.to_owned(), appended);
        }
        takes.push(take);
    }
    Ok((takes, out))
}

/// Keeps in `batch` only the events stored (`takes`, from [`store_events`]): the recompute
/// counts them from there. Returns, for each event of the batch, whether it was stored.
fn keep_taken(batch: &mut Batch, takes: Vec<Takes>) -> Vec<bool> {
    let mut accepted = vec![false; batch.len];
    for (account, take) in batch.accounts.iter_mut().zip(takes) {
        for (c, take) in account.classes.iter_mut().zip(take) {
            let mut k = 0;
            let pos = std::mem::take(&mut c.pos);
            c.events.retain(|_| {
                let keep = take[k];
                if keep {
                    accepted[pos[k] as usize] = true;
                }
                k += 1;
                keep
            });
            c.take = Vec::new();
            c.chunks.clear();
        }
    }
    accepted
}

/// Whether every event of `account` would be stored unless the store knows its id already
/// (no duplicate within the batch), and the periods it would then touch.
fn touched_if_new(account: &AccountBatch) -> Option<Touched> {
    let mut touched = Touched::default();
    for (ci, c) in account.classes.iter().enumerate() {
        if c.take.iter().any(|t| !t) {
            return None;
        }
        for chunk in &c.chunks {
            touched.add(Class::from_index(ci as u32), epoch_day_to_date(chunk.day));
        }
    }
    Some(touched)
}

/// Stores a prepared batch and recomputes the statistics it touches, inside `tx`; returns,
/// for each event, whether it was accepted. `changed` is called for each account whose
/// statistics were rewritten.
pub(crate) fn store_batch(
    tx: &dyn Db,
    batch: &mut Batch,
    yesterday: Date,
    mut changed: impl FnMut(&str) -> Result<()>,
) -> Result<Vec<bool>> {
    let (accepted, appended) = append(tx, batch)?;
    for account in &batch.accounts {
        if let Some(appended) = appended.get(&account.appid) {
            recompute(tx, account, appended, yesterday)?;
            changed(&account.appid)?;
        }
    }
    Ok(accepted)
}

/// Stores a prepared batch without recomputing statistics: the periods it touched are marked
/// pending (in the same transaction) for [`flush_pending`]. Returns, for each event, whether
/// it was accepted.
pub(crate) fn store_batch_deferred(tx: &dyn Db, batch: &mut Batch) -> Result<Vec<bool>> {
    let (accepted, appended) = append(tx, batch)?;
    for (appid, appended) in &appended {
        mark_pending(tx, appid, &appended.touched)?;
    }
    Ok(accepted)
}

/// Marks the periods `touched` of `appid` as pending (see [`flush_pending`]).
fn mark_pending(tx: &dyn Db, appid: &str, touched: &Touched) -> Result<()> {
    for (class, span) in touched.spans.iter().enumerate() {
        if let Some((lo, hi)) = span {
            tx.exec(
                "INSERT INTO stat_pending (appid, class, lo, hi) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (appid, class) DO UPDATE SET
                     lo = CASE WHEN excluded.lo < stat_pending.lo
                               THEN excluded.lo ELSE stat_pending.lo END,
                     hi = CASE WHEN excluded.hi > stat_pending.hi
                               THEN excluded.hi ELSE stat_pending.hi END",
                p![appid, class, date_to_epoch_day(*lo), date_to_epoch_day(*hi)],
            )?;
        }
    }
    Ok(())
}

/// Stores one batch of a bulk load (see [`crate::bulk`]), inside `tx`. The batch holds
/// accounts in turn, each whole unless its events began in an earlier batch (it is then in
/// `spread`) or go on in the next one (it is `partial`):
///
/// - an account held whole is recomputed at once, from the batch's events and the stored
///   ones, as [`store_batch`] does — but, when it has many events, its computations run while
///   the batch is being stored, on the assumption that none of its events is a duplicate
///   (the usual case of a bulk load: a first load, or new events); one that turns out to have
///   a duplicate is recomputed afterwards, from what was stored;
/// - the periods of a spread or partial account are marked pending, in this transaction, and
///   once its last events are in (the account is in `spread` but is not `partial`), every
///   period marked is recomputed from the store, once.
///
/// Returns, for each event, whether it was accepted, and the spread accounts that are now
/// complete (recomputed).
pub(crate) fn store_bulk(
    tx: &dyn Db,
    batch: &mut Batch,
    yesterday: Date,
    partial: Option<&str>,
    spread: &FxHashSet<String>,
    mut changed: impl FnMut(&str) -> Result<()>,
) -> Result<(Vec<bool>, Vec<String>)> {
    let whole = |appid: &str| partial != Some(appid) && !spread.contains(appid);
    // The accounts computed ahead: loaded now, before anything of the batch is stored.
    let nothing = FxHashSet::default();
    let mut ahead: Vec<(usize, Loaded)> = Vec::new();
    for (i, account) in batch.accounts.iter().enumerate() {
        let events: usize = account.classes.iter().map(|c| c.events.len()).sum();
        if !whole(&account.appid) || events < PARALLEL_FROM {
            continue;
        }
        let Some(touched) = touched_if_new(account) else {
            continue;
        };
        if let Some(loaded) = load_for(tx, &account.appid, &touched, &nothing, yesterday, &[])? {
            ahead.push((i, loaded));
        }
    }
    let (takes, appended, computed) = {
        let jobs: Vec<Job> = ahead
            .iter()
            .flat_map(|(i, loaded)| loaded.jobs(&batch.accounts[*i]))
            .collect();
        // Whether an account's computations hold: none of its events was a duplicate.
        let holds = |takes: &[Takes], appid: &str| {
            batch
                .accounts
                .iter()
                .position(|a| a.appid == appid)
                .is_some_and(|i| takes[i].iter().all(|t| t.iter().all(|t| *t)))
        };
        let mut computed: FxHashSet<String> = FxHashSet::default();
        let stored = &*batch;
        let (takes, appended) = with_jobs(
            &jobs,
            true,
            || store_events(tx, stored),
            |(takes, _), job, days| {
                if holds(takes, job.appid) {
                    job.write(tx, days?)?;
                    computed.insert(job.appid.to_owned());
                }
                Ok(())
            },
        )?;
        (takes, appended, computed)
    };
    let accepted = keep_taken(batch, takes);
    for account in &batch.accounts {
        let appid = account.appid.as_str();
        let Some(appended) = appended.get(appid) else {
            continue;
        };
        if !whole(appid) {
            mark_pending(tx, appid, &appended.touched)?;
        } else {
            if !computed.contains(appid) {
                recompute(tx, account, appended, yesterday)?;
            }
            changed(appid)?;
        }
    }
    // Accounts come one after another: a spread account that does not go on is complete.
    let mut complete = Vec::new();
    for appid in spread {
        if partial != Some(appid.as_str()) {
            if recompute_pending(tx, appid, yesterday)? {
                changed(appid)?;
            }
            complete.push(appid.clone());
        }
    }
    Ok((accepted, complete))
}

/// Recomputes, from the stored events, every period of `appid` marked pending, and clears the
/// marks; returns whether any was marked.
pub(crate) fn recompute_pending(tx: &dyn Db, appid: &str, yesterday: Date) -> Result<bool> {
    let mut touched = Touched::default();
    tx.each(
        "SELECT class, lo, hi FROM stat_pending WHERE appid = ?1",
        p![appid],
        &mut |row| {
            let (class, lo, hi) = (row.int(0)?, row.int(1)?, row.int(2)?);
            let span = &mut touched.spans[(class.max(0) as usize).min(CLASSES - 1)];
            *span = union(*span, Some((epoch_day_to_date(lo), epoch_day_to_date(hi))));
            Ok(())
        },
    )?;
    if touched.overall().is_none() {
        return Ok(false);
    }
    let own = AccountBatch {
        appid: appid.to_owned(),
        classes: Default::default(),
    };
    let appended = Appended {
        touched,
        own_chunks: FxHashSet::default(),
    };
    recompute_but(tx, &own, &appended, yesterday, &[])?;
    tx.exec("DELETE FROM stat_pending WHERE appid = ?1", p![appid])?;
    Ok(true)
}

/// The accounts with periods marked pending.
pub(crate) fn pending_accounts(tx: &dyn Db) -> Result<Vec<String>> {
    tx.all(
        "SELECT DISTINCT appid FROM stat_pending ORDER BY appid",
        p![],
        |r| Ok(r.text(0)?.to_owned()),
    )
}

/// Recomputes every pending period (see [`store_batch_deferred`]) and clears the marks;
/// `changed` is called for each account. Returns the accounts recomputed.
///
/// Messages and replies — what `push` and `proxy` record, all day long — are not recomputed
/// from their day's events but answered from live tallies (`live`) that absorb only the
/// chunks stored since the last flush; the other classes are recomputed as a batch would.
pub(crate) fn flush_pending(
    tx: &dyn Db,
    yesterday: Date,
    live: &mut LiveTallies,
    mut changed: impl FnMut(&str) -> Result<()>,
) -> Result<usize> {
    let mut pending: BTreeMap<String, Touched> = BTreeMap::new();
    tx.each(
        "SELECT appid, class, lo, hi FROM stat_pending",
        p![],
        &mut |row| {
            let (class, lo, hi) = (row.int(1)?, row.int(2)?, row.int(3)?);
            let touched = pending.entry(row.text(0)?.to_owned()).or_default();
            let span = &mut touched.spans[(class as usize).min(CLASSES - 1)];
            *span = union(*span, Some((epoch_day_to_date(lo), epoch_day_to_date(hi))));
            Ok(())
        },
    )?;
    for (appid, touched) in &pending {
        for class in LIVE_CLASSES {
            if let Some(span) = touched.get(class) {
                live.refresh(tx, appid, class, span)?;
            }
        }
        let own = AccountBatch {
            appid: appid.clone(),
            classes: Default::default(),
        };
        let appended = Appended {
            touched: *touched,
            own_chunks: FxHashSet::default(),
        };
        recompute_but(tx, &own, &appended, yesterday, &LIVE_CLASSES)?;
        changed(appid)?;
    }
    if !pending.is_empty() {
        tx.exec("DELETE FROM stat_pending", p![])?;
    }
    Ok(pending.len())
}

/// The classes [`flush_pending`] answers from live tallies.
const LIVE_CLASSES: [Class; 2] = [Class::Message, Class::Reply];

/// The whole weeks and months around `lo..=hi`: what a message tally must hold to answer
/// the week and month rows of those days.
fn whole_periods((lo, hi): (Date, Date)) -> (Date, Date) {
    (
        monday_of(lo).min(lo.first_of_month()),
        add_days(monday_of(hi), 6).max(hi.last_of_month()),
    )
}

/// The endpoints of the message or reply class, each with the dates of its rows that days `lo..=hi` feed.
fn class_endpoints(class: Class, (lo, hi): (Date, Date)) -> Vec<(Endpoint, (Date, Date))> {
    let group = match class {
        Class::Message => Group::Message,
        _ => Group::Interface,
    };
    Endpoint::ALL
        .iter()
        .copied()
        .filter(|e| e.group() == group)
        .map(|e| {
            let range = match e.period() {
                Period::Day | Period::Hour => (lo, hi),
                Period::Week => (monday_of(lo), monday_of(hi)),
                Period::Month => (lo.first_of_month(), hi.first_of_month()),
            };
            (e, range)
        })
        .collect()
}

/// One account's live tally of one class: the chunks of days `window` it has absorbed are
/// those with `seq <= max_seq`, `chunks` of them.
struct LiveState {
    window: (i64, i64),
    max_seq: i64,
    chunks: i64,
    tally: datacube_engine::live::Live,
}

/// Live tallies of messages and replies, by account and class, for [`flush_pending`]. Kept
/// by the store for the life of the process; they follow the database, whoever writes to it:
/// new chunks are absorbed by their `seq`, and a tally whose chunks changed otherwise (a day
/// merged by another writer) is rebuilt from the stored events.
#[derive(Default)]
pub(crate) struct LiveTallies {
    states: HashMap<(String, Class), LiveState>,
    /// Tallies (re)built from the stored events.
    pub(crate) rebuilds: u64,
}

/// The most days a live tally holds (when a refresh asks for other days, a tally grows to
/// hold them up to this span, else it starts over on the days asked for).
const LIVE_DAYS: i64 = 75;

impl LiveTallies {
    /// Brings the tally of (`appid`, `class`) up to date with the stored chunks, and writes
    /// the rows of the endpoints that days `span` feed.
    fn refresh(
        &mut self,
        tx: &dyn Db,
        appid: &str,
        class: Class,
        span: (Date, Date),
    ) -> Result<()> {
        let (w0, w1) = whole_periods(span);
        let window = (date_to_epoch_day(w0), date_to_epoch_day(w1));
        let key = (appid.to_owned(), class);
        let usable = match self.states.get(&key) {
            Some(s) if s.window.0 <= window.0 && s.window.1 >= window.1 => {
                let n = tx.int(
                    "SELECT COUNT(*) FROM event_chunk
                     WHERE appid = ?1 AND class = ?2 AND day BETWEEN ?3 AND ?4 AND seq <= ?5",
                    p![appid, class as i64, s.window.0, s.window.1, s.max_seq],
                )?;
                n == s.chunks
            }
            _ => false,
        };
        if !usable {
            // Rebuilt over the window asked for, and the one held too when both fit in about
            // two months: a late event for last week must not make this week's tally start over
            // and over.
            let window = match self.states.get(&key) {
                Some(s) if s.window.1.max(window.1) - s.window.0.min(window.0) < LIVE_DAYS => {
                    (s.window.0.min(window.0), s.window.1.max(window.1))
                }
                _ => window,
            };
            self.rebuilds += 1;
            self.states.insert(
                key.clone(),
                LiveState {
                    window,
                    max_seq: 0,
                    chunks: 0,
                    tally: datacube_engine::live::Live::new(),
                },
            );
        }
        let state = self.states.get_mut(&key).expect("just ensured");
        let mut events = Vec::new();
        let (from_seq, window) = (state.max_seq, state.window);
        tx.each(
            "SELECT seq, codec, data FROM event_chunk
             WHERE appid = ?1 AND class = ?2 AND day BETWEEN ?3 AND ?4 AND seq > ?5
             ORDER BY seq",
            p![appid, class as i64, window.0, window.1, from_seq],
            &mut |row| {
                let seq = row.int(0)?;
                events.clear();
                decode_chunk(appid, row.int(1)?, row.blob(2)?, &mut events)?;
                for e in &events {
                    state.tally.absorb(e);
                }
                state.max_seq = state.max_seq.max(seq);
                state.chunks += 1;
                Ok(())
            },
        )?;
        // Days recorded in many small chunks are merged (a few at a time, see
        // `compact_newest`); every chunk of the window is absorbed now, so the tally stays
        // valid and only its bookkeeping is taken again.
        let crowded: Vec<i64> = tx.all(
            "SELECT day FROM event_chunk WHERE appid = ?1 AND class = ?2 AND day BETWEEN ?3 AND ?4
             GROUP BY day HAVING COUNT(*) >= ?5",
            p![appid, class as i64, window.0, window.1, COMPACT_AT],
            |r| r.int(0),
        )?;
        if !crowded.is_empty() {
            for day in crowded {
                compact_newest(tx, appid, class, day)?;
            }
            (state.chunks, state.max_seq) = tx.one(
                "SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM event_chunk
                 WHERE appid = ?1 AND class = ?2 AND day BETWEEN ?3 AND ?4",
                p![appid, class as i64, window.0, window.1],
                |r| Ok((r.int(0)?, r.int(1)?)),
            )?;
        }
        for (endpoint, range) in class_endpoints(class, span) {
            let rows = state.tally.rows(endpoint, range);
            let days = crate::days::prepare_days(&rows, range)?;
            crate::days::replace(tx, appid, endpoint, range, days)?;
        }
        Ok(())
    }
}

/// Merges the newest chunks of one day: the last two, and older ones while each is no larger
/// than the newer ones together. A day recorded in many small chunks so ends up in a few
/// chunks of geometrically growing size, and each event is rewritten a logarithmic number of
/// times, where merging the whole day each time would rewrite a busy day again and again.
fn compact_newest(tx: &dyn Db, appid: &str, class: Class, day: i64) -> Result<()> {
    let chunks: Vec<(i64, i64)> = tx.all(
        "SELECT seq, length(data) FROM event_chunk WHERE appid = ?1 AND class = ?2 AND day = ?3
         ORDER BY seq",
        p![appid, class as i64, day],
        |r| Ok((r.int(0)?, r.int(1)?)),
    )?;
    if chunks.len() < 2 {
        return Ok(());
    }
    let from = newest_run(&chunks);
    let seqs: Vec<i64> = chunks[from..].iter().map(|c| c.0).collect();
    compact(tx, appid, class, day, &seqs)
}

/// Of parts in age order, each `(seq, size)` (at least two), where the run to merge starts:
/// the last two, and older ones while each is no larger than the newer ones together. Parts
/// merged this way grow geometrically, so each item is rewritten a logarithmic number of
/// times.
fn newest_run(parts: &[(i64, i64)]) -> usize {
    let mut from = parts.len() - 2;
    let mut newer: i64 = parts[from..].iter().map(|p| p.1).sum();
    while from > 0 && parts[from - 1].1 <= newer {
        from -= 1;
        newer += parts[from].1;
    }
    from
}

/// An id to look up in the index: its hash, the tag of its event's day and class, and where
/// the event is in the account's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    hash: u64,
    tag: u32,
    class: u8,
    index: u32,
}

/// Checks `candidates` (ids distinct within the batch) against the account's id index, adds
/// the new ones to it, and returns where their events are: (class, index).
///
/// The index has two levels: buckets by hash (`event_id`), and deltas (`event_id_delta`), one
/// per batch, holding the batch's new ids. A batch searches the buckets its ids fall in and
/// the deltas (binary search in the stored bytes), and writes one delta. When there are
/// [`MAX_DELTAS`] deltas, they are merged into the buckets if they hold at least
/// 1/[`DELTA_SHARE`] of the ids — a large batch thus rewrites the whole index (its ids fall in
/// every bucket) only one time in [`MAX_DELTAS`] — and otherwise the newest deltas are merged
/// together: small batches (a live recording, every 200 ms) must not cost the whole index
/// each, nor rewrite it every few batches.
fn dedup_ids(
    tx: &dyn Db,
    appid: &str,
    classes: &[ClassBatch; CLASSES],
    mut candidates: Vec<Candidate>,
) -> Result<Vec<(u8, u32)>> {
    let (bits, mut count): (u32, u64) = tx
        .opt(
            "SELECT id_bits, ids FROM event_app WHERE appid = ?1",
            p![appid],
            |r| Ok((r.int(0)? as u32, r.int(1)? as u64)),
        )?
        .unwrap_or((0, 0));
    candidates.sort_unstable();
    // The deltas as stored (sorted entries), searched in place.
    let deltas: Vec<(i64, Vec<u8>)> = tx.all(
        "SELECT seq, data FROM event_id_delta WHERE appid = ?1 ORDER BY seq",
        p![appid],
        |r| Ok((r.int(0)?, r.blob(1)?.to_vec())),
    )?;
    // Ids already stored, by (day, class): loaded only to confirm a hash that was found.
    let mut stored_ids: HashMap<u32, FxHashSet<String>> = HashMap::new();
    let mut fresh = Vec::with_capacity(candidates.len());
    let mut added: Vec<(u64, u32)> = Vec::with_capacity(candidates.len());
    let mut delta_at = vec![0usize; deltas.len()];
    let mut start = 0;
    while start < candidates.len() {
        let bucket = bucket_of(candidates[start].hash, bits);
        let end = start
            + candidates[start..]
                .iter()
                .take_while(|c| bucket_of(c.hash, bits) == bucket)
                .count();
        let bucket_blob: Vec<u8> = tx
            .opt(
                "SELECT data FROM event_id WHERE appid = ?1 AND bucket = ?2",
                p![appid, bucket],
                |r| Ok(r.blob(0)?.to_vec()),
            )?
            .unwrap_or_default();
        let mut bucket_at = 0;
        for c in &candidates[start..end] {
            let hash = c.hash;
            // Read only when a hash is found: the events are far apart in memory.
            let id = || {
                classes[c.class as usize].events[c.index as usize]
                    .id
                    .as_deref()
            };
            let mut duplicate = false;
            // Candidates and every level (the bucket, each delta) are sorted by hash: one cursor
            // per level moves forward, by binary search (a level may be large beside a small
            // batch). Equal hashes stay under the cursor: the next candidate may share one.
            let levels = std::iter::once((&bucket_blob, &mut bucket_at))
                .chain(
                    deltas
                        .iter()
                        .zip(delta_at.iter_mut())
                        .map(|((_, d), at)| (d, at)),
                )
                .map(|(level, at)| {
                    let (tags, next) = entries_from(level, *at, hash);
                    *at = next;
                    tags
                });
            'levels: for tags in levels {
                for stored_tag in tags {
                    let ids = match stored_ids.entry(stored_tag) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(ids_of(tx, appid, stored_tag)?)
                        }
                    };
                    if id().is_some_and(|id| ids.contains(id)) {
                        duplicate = true;
                        break 'levels;
                    }
                }
            }
            if !duplicate {
                added.push((hash, c.tag));
                fresh.push((c.class, c.index));
            }
        }
        start = end;
    }
    if !added.is_empty() {
        // `added` is in hash order already: candidates were sorted.
        let own_delta = tx.int(
            "INSERT INTO event_id_delta (appid, data) VALUES (?1, ?2) RETURNING seq",
            p![appid, &write_entries(&added)],
        )?;
        count += added.len() as u64;
        tx.exec(
            "INSERT INTO event_app (appid, id_bits, ids) VALUES (?1, ?2, ?3)
             ON CONFLICT (appid) DO UPDATE SET ids = excluded.ids",
            p![appid, bits, count],
        )?;
        if deltas.len() + 1 >= MAX_DELTAS {
            let pending: usize =
                deltas.iter().map(|(_, d)| d.len() / ENTRY).sum::<usize>() + added.len();
            if pending as u64 * DELTA_SHARE >= count {
                let parsed: Vec<Vec<(u64, u32)>> =
                    deltas.iter().map(|(_, d)| read_entries(d)).collect();
                let mut levels: Vec<&[(u64, u32)]> = parsed.iter().map(|d| &d[..]).collect();
                levels.push(&added);
                merge_deltas(tx, appid, bits, count, &levels)?;
            } else {
                // Few ids beside the buckets (small batches, a live recording): rewriting
                // every bucket for them would cost the whole index each time. The newest
                // deltas are merged together instead.
                let mut sizes: Vec<(i64, i64)> = deltas
                    .iter()
                    .map(|(seq, d)| (*seq, (d.len() / ENTRY) as i64))
                    .collect();
                sizes.push((own_delta, added.len() as i64));
                let from = newest_run(&sizes);
                let mut merged: Vec<(u64, u32)> = Vec::new();
                for (_, d) in &deltas[from..] {
                    merged.extend(read_entries(d));
                }
                merged.extend_from_slice(&added);
                merged.sort_unstable();
                for (seq, _) in &sizes[from..] {
                    tx.exec("DELETE FROM event_id_delta WHERE seq = ?1", p![*seq])?;
                }
                tx.exec(
                    "INSERT INTO event_id_delta (appid, data) VALUES (?1, ?2)",
                    p![appid, &write_entries(&merged)],
                )?;
            }
        }
    }
    Ok(fresh)
}

/// Merges the deltas (`levels`, each sorted by hash) into the buckets, one bucket at a time,
/// and drops them. The buckets are doubled first while they would hold too many ids on
/// average, so that the merge writes each bucket once, in its final layout.
fn merge_deltas(
    tx: &dyn Db,
    appid: &str,
    bits: u32,
    count: u64,
    levels: &[&[(u64, u32)]],
) -> Result<()> {
    let mut bits = bits;
    let mut new_bits = bits;
    while count > BUCKET_TARGET << new_bits && new_bits < MAX_BUCKET_BITS {
        new_bits += 1;
    }
    if new_bits != bits {
        split_buckets(tx, appid, bits, new_bits)?;
        tx.exec(
            "UPDATE event_app SET id_bits = ?2 WHERE appid = ?1",
            p![appid, new_bits],
        )?;
        bits = new_bits;
    }
    let mut at = vec![0usize; levels.len()];
    // Each time, the next bucket any level has entries for.
    while let Some(bucket) = levels
        .iter()
        .zip(&at)
        .filter_map(|(l, i)| l.get(*i).map(|e| bucket_of(e.0, bits)))
        .min()
    {
        let blob: Option<Vec<u8>> = tx.opt(
            "SELECT data FROM event_id WHERE appid = ?1 AND bucket = ?2",
            p![appid, bucket],
            |r| Ok(r.blob(0)?.to_vec()),
        )?;
        let mut entries = blob.as_deref().map(read_entries).unwrap_or_default();
        for (level, i) in levels.iter().zip(at.iter_mut()) {
            let n = level[*i..]
                .iter()
                .take_while(|e| bucket_of(e.0, bits) == bucket)
                .count();
            entries.extend_from_slice(&level[*i..*i + n]);
            *i += n;
        }
        entries.sort_unstable();
        tx.exec(
            "INSERT INTO event_id (appid, bucket, data) VALUES (?1, ?2, ?3)
             ON CONFLICT (appid, bucket) DO UPDATE SET data = excluded.data",
            p![appid, bucket, &write_entries(&entries)],
        )?;
    }
    tx.exec("DELETE FROM event_id_delta WHERE appid = ?1", p![appid])?;
    Ok(())
}

/// Re-buckets an account's id index from `2^bits` to `2^new_bits` buckets, one old bucket at
/// a time (highest first, so that new numbers never meet an old bucket not yet split).
fn split_buckets(tx: &dyn Db, appid: &str, bits: u32, new_bits: u32) -> Result<()> {
    let old: Vec<i64> = tx.all(
        "SELECT bucket FROM event_id WHERE appid = ?1 ORDER BY bucket DESC",
        p![appid],
        |r| r.int(0),
    )?;
    for bucket in old {
        let blob: Vec<u8> = tx.one(
            "SELECT data FROM event_id WHERE appid = ?1 AND bucket = ?2",
            p![appid, bucket],
            |r| Ok(r.blob(0)?.to_vec()),
        )?;
        tx.exec(
            "DELETE FROM event_id WHERE appid = ?1 AND bucket = ?2",
            p![appid, bucket],
        )?;
        let entries = read_entries(&blob);
        let mut start = 0;
        while start < entries.len() {
            let b = bucket_of(entries[start].0, new_bits);
            debug_assert_eq!(b >> (new_bits - bits), bucket);
            let end = start
                + entries[start..]
                    .iter()
                    .take_while(|e| bucket_of(e.0, new_bits) == b)
                    .count();
            tx.exec(
                "INSERT INTO event_id (appid, bucket, data) VALUES (?1, ?2, ?3)",
                p![appid, b, &write_entries(&entries[start..end])],
            )?;
            start = end;
        }
    }
    Ok(())
}

/// The ids of an account's stored events of one day and class.
fn ids_of(tx: &dyn Db, appid: &str, stored_tag: u32) -> Result<FxHashSet<String>> {
    let (day, class) = untag(stored_tag);
    let mut events = Vec::new();
    tx.each(
        "SELECT codec, data FROM event_chunk WHERE appid = ?1 AND class = ?2 AND day = ?3",
        p![appid, class as i64, day],
        &mut |row| decode_chunk(appid, row.int(0)?, row.blob(1)?, &mut events),
    )?;
    Ok(events.into_iter().filter_map(|e| e.id).collect())
}

/// Loads an account's events of one class on days `range` (all days when `None`), merging
/// the chunks of a day that has accumulated many.
fn load(
    tx: &dyn Db,
    appid: &str,
    class: Class,
    range: Option<(Date, Date)>,
    skip: &FxHashSet<i64>,
    out: &mut Vec<Event>,
) -> Result<()> {
    let (from, to) = range.map_or((i64::MIN, i64::MAX), |(a, b)| {
        (date_to_epoch_day(a), date_to_epoch_day(b))
    });
    let mut per_day: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    tx.each(
        "SELECT seq, day, codec, data FROM event_chunk
         WHERE appid = ?1 AND class = ?2 AND day BETWEEN ?3 AND ?4 ORDER BY day, seq",
        p![appid, class as i64, from, to],
        &mut |row| {
            let seq = row.int(0)?;
            if skip.contains(&seq) {
                return Ok(());
            }
            per_day.entry(row.int(1)?).or_default().push(seq);
            decode_chunk(appid, row.int(2)?, row.blob(3)?, out)
        },
    )?;
    for (day, seqs) in per_day {
        if seqs.len() >= COMPACT_AT {
            compact(tx, appid, class, day, &seqs)?;
        }
    }
    Ok(())
}

/// Replaces the chunks `seqs` of one day by one chunk holding the same events.
fn compact(tx: &dyn Db, appid: &str, class: Class, day: i64, seqs: &[i64]) -> Result<()> {
    let mut merged = Vec::new();
    for seq in seqs {
        let (codec, data) = tx.one(
            "SELECT codec, data FROM event_chunk WHERE seq = ?1",
            p![*seq],
            |r| Ok((r.int(0)?, r.blob(1)?.to_vec())),
        )?;
        merged.extend_from_slice(&plain_chunk(appid, codec, data)?);
    }
    for seq in seqs {
        tx.exec("DELETE FROM event_chunk WHERE seq = ?1", p![*seq])?;
    }
    tx.exec(
        "INSERT INTO event_chunk (appid, class, day, data, codec) VALUES (?1, ?2, ?3, ?4, ?5)",
        p![
            appid,
            class as i64,
            day,
            &crate::codec::compress(&merged)?,
            ZSTD
        ],
    )?;
    Ok(())
}

/// One computation of a recompute: the endpoints it builds from which events, and the dates
/// of each endpoint's rows it replaces.
/// One computation of a recompute: endpoints of one account from some of its events.
struct Job<'a> {
    appid: &'a str,
    parts: Vec<&'a [Event]>,
    window: (Date, Date),
    replaces: Vec<(Endpoint, (Date, Date))>,
}

/// A job's days to write, one list per endpoint it replaces.
type Days = Vec<Vec<crate::days::StoredDay>>;

impl Job<'_> {
    /// Computes the rows and prepares the days to write (compressing them): everything but
    /// the writing, so that it can run beside other jobs.
    fn run(&self) -> Result<Days> {
        let wanted: Vec<Endpoint> = self.replaces.iter().map(|(e, _)| *e).collect();
        let computed = datacube_engine::rollup::compute_parts(
            &self.parts,
            self.window.0,
            self.window.1,
            &wanted,
        );
        self.replaces
            .iter()
            .map(|(endpoint, range)| {
                let rows = computed.get(endpoint).map_or(&[][..], Vec::as_slice);
                crate::days::prepare_days(rows, *range)
            })
            .collect()
    }

    /// Writes what [`Job::run`] computed, inside `tx`.
    fn write(&self, tx: &dyn Db, days: Days) -> Result<()> {
        for ((endpoint, range), days) in self.replaces.iter().zip(days) {
            crate::days::replace(tx, self.appid, *endpoint, *range, days)?;
        }
        Ok(())
    }

    fn events(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }
}

/// Below this many events, a recompute runs its jobs on the calling thread.
const PARALLEL_FROM: usize = 20_000;

/// Runs `jobs` — on worker threads, the largest first, when `parallel` — while this thread
/// does `meanwhile`; then hands each job's outcome to `done`, with what `meanwhile` returned,
/// as soon as both are there. Without `parallel`, `meanwhile` runs first, then each job here.
fn with_jobs<T>(
    jobs: &[Job],
    parallel: bool,
    meanwhile: impl FnOnce() -> Result<T>,
    mut done: impl FnMut(&T, &Job, Result<Days>) -> Result<()>,
) -> Result<T> {
    if !parallel || jobs.is_empty() {
        let before = meanwhile()?;
        for job in jobs {
            done(&before, job, job.run())?;
        }
        return Ok(before);
    }
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].events()));
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8)
        .min(jobs.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (send, results) = std::sync::mpsc::channel::<(usize, Result<Days>)>();
        for _ in 0..workers {
            let (send, order, next, stop) = (send.clone(), &order, &next, &stop);
            let spawned = std::thread::Builder::new()
                .name("datacube-compute".into())
                .spawn_scoped(scope, move || {
                    use std::sync::atomic::Ordering::Relaxed;
                    while !stop.load(Relaxed) {
                        let Some(&i) = order.get(next.fetch_add(1, Relaxed)) else {
                            return;
                        };
                        // A computation panics only on a bug: the scope passes it on.
                        if send.send((i, jobs[i].run())).is_err() {
                            return;
                        }
                    }
                });
            if spawned.is_err() {
                // No thread to be had: the jobs left are run here, below.
                break;
            }
        }
        drop(send);
        let outcome = (|| {
            let before = meanwhile()?;
            for (i, days) in results.iter() {
                done(&before, &jobs[i], days)?;
            }
            // Jobs no worker took: no thread could be started, or a worker panicked (the
            // scope passes the panic on when it ends).
            let taken = next
                .load(std::sync::atomic::Ordering::Relaxed)
                .min(order.len());
            for &i in &order[taken..] {
                done(&before, &jobs[i], jobs[i].run())?;
            }
            Ok(before)
        })();
        if outcome.is_err() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        outcome
    })
}

/// Recomputes the statistics of `appid` that a batch touching `touched` can change, replacing
/// the stored rows, inside `tx`. Each class is recomputed over the periods it feeds:
///
/// - followers: getusersummary and getusercumulate from the first touched day to `yesterday`
///   (or the account's latest day), from the account's whole follow history;
/// - messages: the touched days and hours, and the whole weeks and months that contain them;
/// - replies: the touched days and hours;
/// - articles: reads and shares (getuserread[hour], getusershare[hour], getarticleread,
///   getarticleshare) and getbizsummary on the touched days; getarticlesummary up to 6 days
///   after them; getarticletotal and getarticletotaldetail for sends from 29 days before them
///   — and for every send from 29 days before the first touched follow on, whose
///   `target_user` and `read_subscribe_user` may have changed.
///
/// The events are loaded first, the computations (pure) then run side by side on threads of
/// their own when there are many events, and the rows are written last.
fn recompute(tx: &dyn Db, own: &AccountBatch, appended: &Appended, yesterday: Date) -> Result<()> {
    recompute_but(tx, own, appended, yesterday, &[])
}

/// [`recompute`], leaving the statistics of the classes `elsewhere` (their followers part
/// aside) to the caller.
fn recompute_but(
    tx: &dyn Db,
    own: &AccountBatch,
    appended: &Appended,
    yesterday: Date,
    elsewhere: &[Class],
) -> Result<()> {
    let Some(loaded) = load_for(
        tx,
        &own.appid,
        &appended.touched,
        &appended.own_chunks,
        yesterday,
        elsewhere,
    )?
    else {
        return Ok(());
    };
    let jobs = loaded.jobs(own);
    let events: usize = jobs.iter().map(Job::events).sum();
    with_jobs(
        &jobs,
        events >= PARALLEL_FROM && jobs.len() > 1,
        || Ok(()),
        |(), job, days| job.write(tx, days?),
    )
}

/// What a recompute of one account rewrites, and the stored events it computes from (its
/// batch's own events aside).
struct Loaded {
    u0: Option<Date>,
    u1: Date,
    /// The touched days of messages, and the whole weeks and months around them.
    messages_window: Option<((Date, Date), (Date, Date))>,
    replies_window: Option<(Date, Date)>,
    /// Sends whose figures may change, all of them and getarticletotal's.
    sends: Option<(Date, Date)>,
    total_sends: Option<(Date, Date)>,
    articles: Option<(Date, Date)>,
    history: Vec<Event>,
    messages: Vec<Event>,
    replies: Vec<Event>,
    publishes: Vec<Event>,
    reads: Vec<Event>,
}

/// Articles: sends are followed for 30 days (getarticletotaldetail).
const TRACKED: i64 = datacube_api::endpoint::PUBLISHED_WINDOW_DAYS - 1;

/// Plans the recompute of `appid` for events on the days `touched` and loads the stored
/// events it needs, but those of the chunks `skip` (the batch's own). `None`: nothing touched.
fn load_for(
    tx: &dyn Db,
    appid: &str,
    touched: &Touched,
    skip: &FxHashSet<i64>,
    yesterday: Date,
    elsewhere: &[Class],
) -> Result<Option<Loaded>> {
    let here = |class: Class| {
        if elsewhere.contains(&class) {
            None
        } else {
            touched.get(class)
        }
    };
    let Some((lo, hi)) = touched.overall() else {
        return Ok(None);
    };
    let follows = touched.get(Class::Follow);
    let articles = union(touched.get(Class::Article), touched.get(Class::Publish));

    // Followers.
    let stored = crate::days::bounds(tx, appid, Endpoint::GetUserCumulate)?;
    let u1 = hi.max(yesterday).max(stored.map_or(hi, |s| s.1));
    let mut u0: Option<Date> = follows.map(|f| f.0);
    match stored {
        None => u0 = Some(lo),
        Some((first, last)) => {
            if lo < first {
                u0 = Some(u0.map_or(lo, |u| u.min(lo)));
            }
            if last < u1 {
                let next = add_days(last, 1);
                u0 = Some(u0.map_or(next, |u| u.min(next)));
            }
        }
    }
    // Articles: sends whose figures may have changed are those from 29 days before the touched
    // days (getarticletotaldetail follows a send for 30 days, getarticletotal for 7), and
    // every send from 29 days before a touched follow on (target_user, read_subscribe_user).
    let sends = union(
        articles.map(|(a, b)| (add_days(a, -TRACKED), b)),
        follows.map(|(f, _)| (add_days(f, -TRACKED), u1)),
    );
    // getarticletotal's own: 6 days before, and from a follow on (target_user only).
    let total_sends = union(
        articles.map(|(a, b)| (add_days(a, -6), b)),
        follows.map(|(f, _)| (f, u1)),
    );
    // Messages: whole weeks and months.
    let message_window = here(Class::Message).map(whole_periods);

    // Load the stored events; the batch's own are in `own` (every load range covers the
    // days the batch's events of that class are on).
    let mut history = Vec::new();
    if u0.is_some() || sends.is_some() {
        load(tx, appid, Class::Follow, None, skip, &mut history)?;
    }
    let mut messages = Vec::new();
    if let Some(window) = message_window {
        load(tx, appid, Class::Message, Some(window), skip, &mut messages)?;
    }
    let mut replies = Vec::new();
    if let Some(range) = here(Class::Reply) {
        load(tx, appid, Class::Reply, Some(range), skip, &mut replies)?;
    }
    let (mut publishes, mut reads) = (Vec::new(), Vec::new());
    if let Some((t0, t1)) = sends {
        load(tx, appid, Class::Publish, None, skip, &mut publishes)?;
        load(
            tx,
            appid,
            Class::Article,
            Some((t0, add_days(t1, TRACKED))),
            skip,
            &mut reads,
        )?;
    }

    Ok(Some(Loaded {
        u0,
        u1,
        messages_window: here(Class::Message).zip(message_window),
        replies_window: here(Class::Reply),
        sends,
        total_sends,
        articles,
        history,
        messages,
        replies,
        publishes,
        reads,
    }))
}

impl Loaded {
    /// The computations of the recompute, from these events and the batch's own (`own`).
    fn jobs<'a>(&'a self, own: &'a AccountBatch) -> Vec<Job<'a>> {
        let appid = own.appid.as_str();
        let mine = |class: Class| own.classes[class as usize].events.as_slice();
        let Loaded {
            u0,
            u1,
            messages_window,
            replies_window,
            sends,
            total_sends,
            articles,
            history,
            messages,
            replies,
            publishes,
            reads,
        } = self;
        let (u1, sends, total_sends, articles) = (*u1, *sends, *total_sends, *articles);
        let mut jobs: Vec<Job> = Vec::new();
        if let Some(u0) = *u0 {
            jobs.push(Job {
                appid,
                parts: vec![history, mine(Class::Follow)],
                window: (u0, u1),
                replaces: vec![
                    (Endpoint::GetUserSummary, (u0, u1)),
                    (Endpoint::GetUserCumulate, (u0, u1)),
                ],
            });
        }
        if let Some((span, window)) = *messages_window {
            jobs.push(Job {
                appid,
                parts: vec![messages, mine(Class::Message)],
                window,
                replaces: class_endpoints(Class::Message, span),
            });
        }
        if let Some(range) = *replies_window {
            jobs.push(Job {
                appid,
                parts: vec![replies, mine(Class::Reply)],
                window: range,
                replaces: class_endpoints(Class::Reply, range),
            });
        }
        if let Some((t0, t1)) = sends {
            let window = (t0, add_days(t1, TRACKED));
            if let Some((a_lo, a_hi)) = articles {
                // Reads and shares, of all articles and per article and day: no sends, no
                // followers.
                jobs.push(Job {
                    appid,
                    parts: vec![reads, mine(Class::Article)],
                    window: (a_lo, a_hi),
                    replaces: [
                        Endpoint::GetUserRead,
                        Endpoint::GetUserReadHour,
                        Endpoint::GetUserShare,
                        Endpoint::GetUserShareHour,
                        Endpoint::GetArticleRead,
                        Endpoint::GetArticleShare,
                    ]
                    .into_iter()
                    .map(|e| (e, (a_lo, a_hi)))
                    .collect(),
                });
            }
            let with_sends = vec![
                &history[..],
                mine(Class::Follow),
                publishes,
                mine(Class::Publish),
                reads,
                mine(Class::Article),
            ];
            if let Some((a_lo, a_hi)) = articles {
                // Titles and send days; no followers.
                jobs.push(Job {
                    appid,
                    parts: with_sends[2..].to_vec(),
                    window: (add_days(a_lo, -6), add_days(a_hi, 6)),
                    replaces: vec![
                        (Endpoint::GetArticleSummary, (a_lo, add_days(a_hi, 6))),
                        (Endpoint::GetBizSummary, (a_lo, a_hi)),
                    ],
                });
            }
            jobs.push(Job {
                appid,
                parts: with_sends,
                window,
                replaces: vec![
                    (Endpoint::GetArticleTotal, total_sends.unwrap_or((t0, t1))),
                    (Endpoint::GetArticleTotalDetail, (t0, t1)),
                ],
            });
        }
        jobs
    }
}

/// Extends the daily follower rows (getusersummary's `user_source` 0 row and getusercumulate)
/// of every account with events up to `yesterday`, so that days without events have their
/// rows too. Accounts whose statistics were only imported have no events and are left alone.
/// `changed` is called for each account extended; returns how many were.
pub(crate) fn carry_forward(
    tx: &dyn Db,
    yesterday: Date,
    mut changed: impl FnMut(&str) -> Result<()>,
) -> Result<usize> {
    let appids: Vec<String> = tx.all("SELECT appid FROM event_app ORDER BY appid", p![], |r| {
        Ok(r.text(0)?.to_owned())
    })?;
    let mut extended = 0;
    for appid in appids {
        let Some((_, last)) = crate::days::bounds(tx, &appid, Endpoint::GetUserCumulate)? else {
            continue;
        };
        if last >= yesterday {
            continue;
        }
        let range = (add_days(last, 1), yesterday);
        let mut history = Vec::new();
        load(
            tx,
            &appid,
            Class::Follow,
            None,
            &FxHashSet::default(),
            &mut history,
        )?;
        let job = Job {
            appid: &appid,
            parts: vec![&history],
            window: range,
            replaces: vec![
                (Endpoint::GetUserSummary, range),
                (Endpoint::GetUserCumulate, range),
            ],
        };
        job.write(tx, job.run()?)?;
        changed(&appid)?;
        extended += 1;
    }
    Ok(extended)
}

/// Moves the events of the version-3 `event` table (JSON lines) into the event log, a page at
/// a time, and drops the table. Their statistics were computed when they were accepted.
pub(crate) fn move_v3_events(tx: &rusqlite::Connection) -> Result<()> {
    const PAGE: i64 = 50_000;
    let mut after = i64::MIN;
    loop {
        let mut page: Vec<(i64, String)> = Vec::new();
        {
            let mut stmt =
                tx.prepare("SELECT seq, body FROM event WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
            let mut rows = stmt.query(rusqlite::params![after, PAGE])?;
            while let Some(row) = rows.next()? {
                page.push((row.get(0)?, row.get(1)?));
            }
        }
        let Some(&(last, _)) = page.last() else {
            break;
        };
        after = last;
        let events: Vec<Event> = page
            .iter()
            .filter_map(|(_, body)| match datacube_engine::parse_line(body) {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::error!(error = %e, "a stored event no longer parses; left out");
                    None
                }
            })
            .collect();
        append(tx, &mut Batch::prepare(events)?)?;
    }
    tx.execute_batch("DROP TABLE event")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Inner;
    use datacube_api::date::format_date;
    use jiff::civil::date;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use rusqlite::{params, Connection};

    /// A computed row as [`stored`] gives it back: both sides through `serde_json::Value`, so
    /// that key order compares equal.
    fn as_stored(row: &datacube_api::row::Row) -> String {
        serde_json::from_str::<serde_json::Value>(&row.json)
            .unwrap()
            .to_string()
    }

    fn stored(store: &Inner, appid: &str, endpoint: Endpoint) -> Vec<String> {
        let mut out = String::new();
        let n = store
            .list_rows_into(
                appid,
                endpoint,
                date(1970, 1, 1),
                date(9999, 1, 1),
                &mut out,
            )
            .unwrap();
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
            let mut got = String::new();
            store
                .list_rows_into(
                    "wxa",
                    endpoint,
                    date(1970, 1, 1),
                    date(9999, 1, 1),
                    &mut got,
                )
                .unwrap();
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
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(&crate::testing::fresh_database(dir.path(), "d"))
            .unwrap()
            .inner;
        let last = date(2024, 4, 30);
        let events: Vec<Event> = datacube_engine::demo::events("wxa", last, 20, 5)
            .iter()
            .map(|l| datacube_engine::parse_line(l).unwrap())
            .collect();
        for chunk in events.chunks(997) {
            let out = store
                .ingest_deferred(Batch::prepare(chunk.to_vec()).unwrap())
                .unwrap();
            assert!(out.accepted.iter().all(|a| *a));
        }
        assert!(stored(&store, "wxa", Endpoint::GetUpstreamMsg).is_empty());
        assert_eq!(store.flush_pending(last).unwrap(), 1);
        assert_eq!(
            store.flush_pending(last).unwrap(),
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
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(&crate::testing::fresh_database(dir.path(), "l"))
            .unwrap()
            .inner;
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
                        .ingest_deferred(Batch::prepare(batch).unwrap())
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
                    .ingest_deferred(Batch::prepare(batch).unwrap())
                    .unwrap();
            }
            if burst || rng.random_bool(0.3) || at == events.len() {
                flushes += 1;
                store.flush_pending(last).unwrap();
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
            let dir = tempfile::tempdir().unwrap();
            let store = crate::Store::open(&crate::testing::fresh_database(dir.path(), "t"))
                .unwrap()
                .inner;
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
}
