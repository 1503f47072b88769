//! Preparing a batch (grouped by account, class and day, encoded before the database is
//! involved) and storing it: duplicates left out, statistics recomputed or marked pending.

use crate::db::{p, Db};
use crate::Result;
use datacube_api::date::{china_date, date_to_epoch_day, epoch_day_to_date};
use datacube_engine::{Event, Kind};
use jiff::civil::Date;
use rustc_hash::FxHashSet;
use std::collections::BTreeMap;

use super::*;

/// The days one batch touched for one account, per class.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Touched {
    pub(super) spans: [Option<(Date, Date)>; CLASSES],
}

impl Touched {
    pub(super) fn add(&mut self, class: Class, day: Date) {
        let span = &mut self.spans[class as usize];
        *span = union(*span, Some((day, day)));
    }

    pub(super) fn get(&self, class: Class) -> Option<(Date, Date)> {
        self.spans[class as usize]
    }

    pub(super) fn overall(&self) -> Option<(Date, Date)> {
        self.spans.iter().copied().fold(None, union)
    }
}

pub(super) fn union(a: Option<(Date, Date)>, b: Option<(Date, Date)>) -> Option<(Date, Date)> {
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
    pub(super) len: usize,
    pub(super) accounts: Vec<AccountBatch>,
    /// Which accounts' events may be stored (see [`fence`]).
    pub(super) fence: Fence,
    /// Accounts whose events were refused by the fence, and how many events they had.
    pub(super) gone: Vec<String>,
    pub(crate) gone_events: usize,
}

/// What a batch's accounts must be when it is stored.
#[derive(Debug, Default)]
pub(super) enum Fence {
    /// Each must exist.
    #[default]
    Exists,
    /// Each must exist as the incarnation given (where one is given).
    Incarnations(rustc_hash::FxHashMap<String, i64>),
    /// Nothing is checked (a migration moving stored events).
    Unchecked,
}

#[derive(Debug)]
pub(super) struct AccountBatch {
    pub(super) appid: String,
    /// By class: the events, in (day, batch order) order.
    pub(super) classes: [ClassBatch; CLASSES],
}

#[derive(Debug, Default)]
pub(super) struct ClassBatch {
    pub(super) events: Vec<Event>,
    /// Per event: its position in the batch, its China day, its id's hash (if it has an id
    /// and is the first in the batch with that id), whether it is taken.
    pub(super) pos: Vec<u32>,
    pub(super) days: Vec<i64>,
    pub(super) hashes: Vec<Option<u64>>,
    /// `false` for a later event with the same id as an earlier one of the batch, and, once
    /// stored, for an id accepted before.
    pub(super) take: Vec<bool>,
    /// One per day: the events `range`, encoded and compressed (those taken at preparation).
    pub(super) chunks: Vec<Chunk>,
}

#[derive(Debug)]
pub(super) struct Chunk {
    pub(super) day: i64,
    pub(super) range: std::ops::Range<usize>,
    pub(super) packed: Vec<u8>,
}

/// The batch's appids in appid order, and each event's account as its rank in that order.
fn accounts_in_order(events: &[Event]) -> (Vec<String>, Vec<u32>) {
    let mut appids: Vec<&str> = Vec::new();
    let mut account_of: Vec<u32> = Vec::with_capacity(events.len());
    let mut index: rustc_hash::FxHashMap<&str, u32> = Default::default();
    let mut last: Option<(&str, u32)> = None;
    for e in events {
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
    for a in &mut account_of {
        *a = rank[*a as usize];
    }
    (names, account_of)
}

/// Refuses a batch with an event whose China day does not fit the 22 bits of a key (the
/// event format's years 1970 to 9998).
fn check_days(events: &[Event]) -> Result<()> {
    match events
        .iter()
        .find(|e| !(0..1 << 22).contains(&date_to_epoch_day(china_date(e.time))))
    {
        Some(e) => Err(crate::StoreError::Corrupt(format!(
            "an event of {} at {} is outside the years 1970 to 9998",
            e.appid, e.time
        ))),
        None => Ok(()),
    }
}

/// Each event's (account rank, class, day) packed into one number (days 22 bits, classes 3),
/// with its position, sorted: by account, class, day; the batch's order within a day.
fn sort_keys(events: &[Event], ranks: &[u32]) -> Vec<(u64, u32)> {
    let mut keys: Vec<(u64, u32)> = events
        .iter()
        .zip(ranks)
        .enumerate()
        .map(|(pos, (e, rank))| {
            let day = date_to_epoch_day(china_date(e.time)) as u64;
            let class = Class::of(&e.kind) as u64;
            let account = u64::from(*rank);
            ((account << 25) | (class << 22) | day, pos as u32)
        })
        .collect();
    keys.sort_unstable();
    keys
}

/// Moves the events out of `events` into their account's class, in `keys`' order, with
/// their positions and days.
fn group(events: &mut [Event], keys: &[(u64, u32)], names: Vec<String>) -> Vec<AccountBatch> {
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
    accounts
}

impl AccountBatch {
    /// By class, per event: whether it is the first of the batch with its id (in the batch's
    /// order, across classes), or has none. Only the first event with an id counts.
    fn first_ids(&self) -> Vec<Vec<bool>> {
        let mut firsts: Vec<(u32, u8, u32)> = Vec::new();
        for (ci, c) in self.classes.iter().enumerate() {
            for (k, pos) in c.pos.iter().enumerate() {
                if c.events[k].id.is_some() {
                    firsts.push((*pos, ci as u8, k as u32));
                }
            }
        }
        firsts.sort_unstable();
        let mut first = vec![Vec::new(); CLASSES];
        for (ci, c) in self.classes.iter().enumerate() {
            first[ci] = vec![true; c.events.len()];
        }
        let mut seen: FxHashSet<&str> = FxHashSet::default();
        for (_, ci, k) in &firsts {
            let id = self.classes[*ci as usize].events[*k as usize].id.as_deref();
            if let Some(id) = id {
                first[*ci as usize][*k as usize] = seen.insert(id);
            }
        }
        first
    }
}

impl Batch {
    /// Prepares `events` for [`crate::Store::ingest_batch`].
    pub fn prepare(mut events: Vec<Event>) -> Result<Batch> {
        let len = events.len();
        // Accounts, in appid order, and each event's: (account, class, day, position) packed
        // into one sortable number, so that the events move once, into their class.
        let (names, ranks) = accounts_in_order(&events);
        check_days(&events)?;
        let keys = sort_keys(&events, &ranks);
        let mut accounts = group(&mut events, &keys, names);
        for account in &mut accounts {
            let first = account.first_ids();
            for (c, first) in account.classes.iter_mut().zip(first) {
                c.take_and_pack(first)?;
            }
        }
        Ok(Batch {
            len,
            accounts,
            fence: Fence::Exists,
            gone: Vec::new(),
            gone_events: 0,
        })
    }

    /// The batch, to be stored only for the accounts that are still, when it is stored, the
    /// incarnations `incarnations` names (those it does not name must exist): events begun
    /// for an account removed meanwhile — and perhaps added again — are refused.
    pub fn fenced(mut self, incarnations: impl IntoIterator<Item = (String, i64)>) -> Batch {
        self.fence = Fence::Incarnations(incarnations.into_iter().collect());
        self
    }

    /// [`Batch::fenced`] with the incarnations `incarnations` names of the batch's accounts.
    pub(crate) fn fenced_from(
        self,
        incarnations: &std::collections::HashMap<String, i64>,
    ) -> Batch {
        let mine: Vec<(String, i64)> = self
            .accounts
            .iter()
            .filter_map(|a| Some((a.appid.clone(), *incarnations.get(&a.appid)?)))
            .collect();
        self.fenced(mine)
    }

    /// The batch, stored whatever its accounts (a migration's move of stored events).
    pub(crate) fn unchecked(mut self) -> Batch {
        self.fence = Fence::Unchecked;
        self
    }

    /// The accounts the batch holds events of.
    pub(crate) fn appids(&self) -> impl Iterator<Item = &str> {
        self.accounts.iter().map(|a| a.appid.as_str())
    }

    /// How many events the batch holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The accounts whose events the fence refused when the batch was stored.
    pub(crate) fn gone(&self) -> &[String] {
        &self.gone
    }
}

impl ClassBatch {
    /// Takes the events `first` marks (hashing their ids) and encodes and compresses them one
    /// chunk per day.
    fn take_and_pack(&mut self, first: Vec<bool>) -> Result<()> {
        self.hashes = self
            .events
            .iter()
            .zip(&first)
            .map(|(e, f)| e.id.as_deref().filter(|_| *f).map(id_hash))
            .collect();
        self.take = first;
        let mut start = 0;
        while start < self.events.len() {
            let day = self.days[start];
            let end = start + self.days[start..].iter().take_while(|d| **d == day).count();
            let packed = self.encode(start..end)?;
            self.chunks.push(Chunk {
                day,
                range: start..end,
                packed,
            });
            start = end;
        }
        Ok(())
    }

    /// The events of `range` that are taken, encoded and compressed.
    pub(super) fn encode(&self, range: std::ops::Range<usize>) -> Result<Vec<u8>> {
        self.encode_taken(&self.take, range)
    }

    /// The events of `range` that `take` says, encoded and compressed.
    pub(super) fn encode_taken(
        &self,
        take: &[bool],
        range: std::ops::Range<usize>,
    ) -> Result<Vec<u8>> {
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
    pub(super) own_chunks: FxHashSet<i64>,
}

/// Stores a prepared batch: duplicates (by id, per account, against the store and earlier in
/// the batch) are left out, and dropped from the batch, and so are the events of accounts the
/// fence refuses. Returns, for each event, whether it was accepted, and what was stored for
/// each account.
pub(crate) fn append(
    tx: &dyn Db,
    batch: &mut Batch,
    cache: &IdCache,
) -> Result<(Vec<bool>, BTreeMap<String, Appended>)> {
    fence(tx, batch)?;
    let (takes, appended) = store_events(tx, batch, cache)?;
    Ok((keep_taken(batch, takes), appended))
}

/// Sets aside, inside the writing transaction, the events of every account of `batch` its
/// fence refuses — removed, or removed and added again, since the batch was checked — and
/// names those accounts in `batch.gone`: nothing of theirs is stored.
pub(super) fn fence(tx: &dyn Db, batch: &mut Batch) -> Result<()> {
    if matches!(batch.fence, Fence::Unchecked) {
        return Ok(());
    }
    for account in &mut batch.accounts {
        let expected = match &batch.fence {
            Fence::Incarnations(map) => map.get(&account.appid).copied(),
            _ => None,
        };
        match crate::accounts::fence(tx, &account.appid, expected) {
            Ok(()) => continue,
            Err(crate::StoreError::AccountGone(_)) => {}
            Err(e) => return Err(e),
        }
        for c in &mut account.classes {
            batch.gone_events += c.events.len();
            c.take.fill(false);
            c.hashes.fill(None);
            c.chunks.clear();
        }
        batch.gone.push(account.appid.clone());
    }
    Ok(())
}

/// Which events of each class of an account were stored (not duplicates).
pub(super) type Takes = [Vec<bool>; CLASSES];

/// Stores the events of a prepared batch that are not duplicates (by id, per account, against
/// the store and earlier in the batch), leaving the batch as it is. Returns, per account,
/// which events were stored, and what was stored for each account that stored any.
pub(super) fn store_events(
    tx: &dyn Db,
    batch: &Batch,
    cache: &IdCache,
) -> Result<(Vec<Takes>, BTreeMap<String, Appended>)> {
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
            let fresh = dedup_ids(tx, appid, &account.classes, candidates, cache)?;
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
pub(super) fn keep_taken(batch: &mut Batch, takes: Vec<Takes>) -> Vec<bool> {
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
pub(super) fn touched_if_new(account: &AccountBatch) -> Option<Touched> {
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
    cache: &IdCache,
    mut changed: impl FnMut(&str) -> Result<()>,
) -> Result<Vec<bool>> {
    let (accepted, appended) = append(tx, batch, cache)?;
    for account in &batch.accounts {
        if let Some(appended) = appended.get(&account.appid) {
            recompute(tx, account, appended, yesterday)?;
            changed(&account.appid)?;
        }
    }
    Ok(accepted)
}

/// Stores a prepared batch without recomputing statistics: the periods it touched are marked
/// pending (in the same transaction) for [`flush_account`]. Returns, for each event, whether
/// it was accepted. `changed` is called for each account that stored events.
pub(crate) fn store_batch_deferred(
    tx: &dyn Db,
    batch: &mut Batch,
    cache: &IdCache,
    mut changed: impl FnMut(&str) -> Result<()>,
) -> Result<Vec<bool>> {
    let (accepted, appended) = append(tx, batch, cache)?;
    for (appid, appended) in &appended {
        mark_pending(tx, appid, &appended.touched)?;
        changed(appid)?;
    }
    Ok(accepted)
}

/// Marks the periods `touched` of `appid` as pending (see [`flush_account`]).
pub(super) fn mark_pending(tx: &dyn Db, appid: &str, touched: &Touched) -> Result<()> {
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
    cache: &IdCache,
    mut changed: impl FnMut(&str) -> Result<()>,
) -> Result<(Vec<bool>, Vec<String>)> {
    fence(tx, batch)?;
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
            || store_events(tx, stored, cache),
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
