//! De-duplication by event id: per account, the 64-bit hashes of the ids in buckets (by the
//! hash's top bits, doubling as the account grows) and deltas merged into them; a hash that is
//! found is confirmed against the ids stored in that day's chunks.

use crate::db::{p, Db};
use crate::Result;
use rustc_hash::FxHashSet;
use std::collections::HashMap;

use super::*;

/// The id index doubles its buckets when they hold more than this many ids on average.
#[cfg(not(test))]
pub(super) const BUCKET_TARGET: u64 = 512;

#[cfg(test)]
pub(super) const BUCKET_TARGET: u64 = 4;

pub(super) const MAX_BUCKET_BITS: u32 = 24;

/// The id index's deltas are merged into its buckets when there are this many.
#[cfg(not(test))]
pub(super) const MAX_DELTAS: usize = 8;

#[cfg(test)]
pub(super) const MAX_DELTAS: usize = 3;

/// The deltas are merged into the buckets once they hold at least 1/DELTA_SHARE of the ids
/// (else among themselves).
pub(super) const DELTA_SHARE: u64 = 8;

/// One id index entry: the hash (8 bytes) and the event's day × 8 + class (4 bytes).
pub(super) const ENTRY: usize = 12;

#[cfg(not(test))]
pub(super) fn id_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// Under test, 16 hash values spread over the whole range: ids collide all the time, so that
/// every found hash must be confirmed against the stored ids, and buckets split.
#[cfg(test)]
pub(super) fn id_hash(id: &str) -> u64 {
    (xxhash_rust::xxh3::xxh3_64(id.as_bytes()) & 0xF) * 0x1111_1111_1111_1111
}

pub(super) fn tag(day: i64, class: Class) -> u32 {
    // Days from 1970 to 9998 (the event format's range) fit with room to spare.
    (day as u32) * 8 + class as u32
}

pub(super) fn untag(tag: u32) -> (i64, Class) {
    (i64::from(tag / 8), Class::from_index(tag % 8))
}

pub(super) fn bucket_of(hash: u64, bits: u32) -> i64 {
    if bits == 0 {
        0
    } else {
        (hash >> (64 - bits)) as i64
    }
}

/// In a sorted entries blob, from entry `at` on (every entry before it has a smaller hash):
/// the tags of the entries with `hash`, and the first entry whose hash is not below it.
///
/// Hashes are uniform, so where `hash` lies is guessed — from `span`, the range of hashes the
/// blob covers when it is known (a bucket's), else from the hashes at both ends of what is
/// left (interpolation) — then found by galloping from the guess, both ways, and a binary
/// search: a few probes close together, where a binary search of a large level (a bucket, a
/// delta of tens of thousands) would miss the processor's cache at each of its steps. The
/// guess only decides where to start, so the answer holds for any hashes (tests collide them
/// on purpose).
pub(super) fn entries_from(
    blob: &[u8],
    at: usize,
    hash: u64,
    span: Option<(u64, u64)>,
) -> (Vec<u32>, usize) {
    let n = blob.len() / ENTRY;
    let hash_at = |i: usize| {
        let mut h = [0u8; 8];
        h.copy_from_slice(&blob[i * ENTRY..i * ENTRY + 8]);
        u64::from_le_bytes(h)
    };
    let start = at.min(n);
    // The answer is in [lo, hi]: every entry before `lo` is below `hash`, the one at `hi` (if
    // any) is not.
    let (mut lo, mut hi) = (start, n);
    if n - start > 16 {
        let guess = match span {
            Some((low, high)) => {
                let width = u128::from(high.saturating_sub(low)).max(1);
                let off = u128::from(hash.saturating_sub(low)).min(width);
                Some(((off * (n - 1) as u128 / width) as usize).clamp(start, n - 1))
            }
            None => {
                let (first, last) = (hash_at(start), hash_at(n - 1));
                if hash <= first {
                    hi = start;
                    None
                } else if hash > last {
                    lo = n;
                    None
                } else {
                    let width = u128::from(last - first).max(1);
                    let off = u128::from(hash - first) * (n - 1 - start) as u128 / width;
                    Some(start + off as usize)
                }
            }
        };
        if let Some(guess) = guess {
            let mut step = 1;
            if hash_at(guess) < hash {
                lo = guess + 1;
                while lo + step <= n && hash_at(lo + step - 1) < hash {
                    lo += step;
                    step *= 2;
                }
                hi = (lo + step).min(n);
            } else {
                hi = guess;
                while hi >= start + step && hash_at(hi - step) >= hash {
                    hi -= step;
                    step *= 2;
                }
                lo = hi.saturating_sub(step).max(start);
            }
        }
    } else {
        let mut step = 1;
        while lo + step <= n && hash_at(lo + step - 1) < hash {
            lo += step;
            step *= 2;
        }
        hi = (lo + step).min(n);
    }
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

pub(super) fn read_entries(blob: &[u8]) -> Vec<(u64, u32)> {
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

pub(super) fn write_entries(entries: &[(u64, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY);
    for (h, t) in entries {
        out.extend_from_slice(&h.to_le_bytes());
        out.extend_from_slice(&t.to_le_bytes());
    }
    out
}

/// The id index as last read or written, by account, so that what a small batch costs does
/// not grow with the account's history (reading every delta whole, and a bucket per id, each
/// time):
///
/// - deltas by `seq`, each with the random `stamp` it was written with: a batch lists its
///   account's deltas (seq and stamp, from an index alone) and reads only those it does not
///   hold. Deltas are never changed once written, and a seq SQLite gives again after a delete
///   comes with another stamp;
/// - buckets, as of the account's index stamp (`event_app.id_stamp`), which every rewrite of
///   the buckets (a merge, a split) changes: held buckets are used while the stamp is theirs.
///
/// So what is held is what is stored, whoever wrote it (another process, another instance),
/// and a transaction rolled back leaves only stamps no row has. Bounded: past
/// [`CACHE_BYTES`] it starts over.
#[derive(Default)]
pub(crate) struct IdCache {
    held: std::sync::Mutex<IdCacheInner>,
}

#[derive(Default)]
struct IdCacheInner {
    accounts: HashMap<String, Held>,
    bytes: usize,
}

/// One account's index held.
#[derive(Default)]
struct Held {
    /// By seq: the stamp and the delta.
    deltas: HashMap<i64, (i64, std::sync::Arc<Level>)>,
    /// The index stamp the buckets are of (0: none held).
    stamp: i64,
    /// By bucket number: the stored bytes (empty: no such bucket).
    buckets: HashMap<i64, std::sync::Arc<[u8]>>,
}

/// A delta of the id index as held: its entries, and a filter of their hashes (two bits of
/// sixteen per entry, a Bloom filter) that rules out all but about one in seventy hashes it
/// does not hold without searching it — a batch checks each id against every delta, and a
/// search probes memory far apart.
pub(super) struct Level {
    pub(super) data: std::sync::Arc<[u8]>,
    filter: Vec<u64>,
    mask: u64,
}

impl Level {
    pub(super) fn new(data: std::sync::Arc<[u8]>) -> Level {
        let n = data.len() / ENTRY;
        let bits = (n * 16).next_power_of_two().max(64);
        let mut level = Level {
            data,
            filter: vec![0; bits / 64],
            mask: bits as u64 - 1,
        };
        for e in level.data.chunks_exact(ENTRY) {
            let mut h = [0u8; 8];
            h.copy_from_slice(&e[..8]);
            for bit in level.bits(u64::from_le_bytes(h)) {
                level.filter[(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }
        level
    }

    /// Two bits of the filter, from two parts of the hash (uniform: no hashing again).
    fn bits(&self, hash: u64) -> [u64; 2] {
        [hash & self.mask, hash.rotate_right(32) & self.mask]
    }

    /// Whether the delta may hold `hash` (never `false` when it does).
    pub(super) fn may_hold(&self, hash: u64) -> bool {
        self.bits(hash)
            .iter()
            .all(|bit| self.filter[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    fn size(&self) -> usize {
        self.data.len() + self.filter.len() * 8
    }
}

/// The most bytes of deltas and buckets an [`IdCache`] holds.
const CACHE_BYTES: usize = 64 << 20;

impl IdCacheInner {
    /// Makes room for `bytes` more: everything is let go when they would not fit.
    fn room(&mut self, bytes: usize) {
        if self.bytes + bytes > CACHE_BYTES {
            *self = IdCacheInner::default();
        }
    }

    /// The buckets of `appid` held, as of index stamp `stamp`: kept if they were of `from`,
    /// else let go.
    fn set_buckets(&mut self, appid: &str, from: i64, stamp: i64) {
        let mine = self.accounts.entry(appid.to_owned()).or_default();
        if mine.stamp != from || stamp == 0 {
            let freed: usize = mine.buckets.values().map(|b| b.len()).sum();
            mine.buckets.clear();
            self.bytes -= freed;
        }
        mine.stamp = stamp;
    }
}

impl IdCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdCacheInner> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The deltas of `appid`, in seq order: those held, the others read (and then held).
    pub(super) fn deltas(
        &self,
        tx: &dyn Db,
        appid: &str,
    ) -> Result<Vec<(i64, std::sync::Arc<Level>)>> {
        let listed: Vec<(i64, i64)> = tx.all(
            "SELECT seq, stamp FROM event_id_delta WHERE appid = ?1 ORDER BY seq",
            p![appid],
            |r| Ok((r.int(0)?, r.int(1)?)),
        )?;
        let mut out = Vec::with_capacity(listed.len());
        {
            let mut held = self.lock();
            let inner = &mut *held;
            if let Some(mine) = inner.accounts.get_mut(appid) {
                // Deltas merged away since.
                mine.deltas.retain(|seq, (stamp, level)| {
                    let keep = listed.contains(&(*seq, *stamp));
                    if !keep {
                        inner.bytes -= level.size();
                    }
                    keep
                });
            }
        }
        for (seq, stamp) in listed {
            let held = self
                .lock()
                .accounts
                .get(appid)
                .and_then(|m| m.deltas.get(&seq))
                .filter(|(s, _)| *s == stamp && stamp != 0)
                .map(|(_, level)| level.clone());
            let level = match held {
                Some(level) => level,
                None => {
                    let blob: std::sync::Arc<[u8]> = tx.one(
                        "SELECT data FROM event_id_delta WHERE appid = ?1 AND seq = ?2",
                        p![appid, seq],
                        |r| Ok(r.blob(0)?.into()),
                    )?;
                    let stamp = if stamp == 0 {
                        // Written before stamps were: stamped now (this is a write).
                        let stamp = new_stamp();
                        tx.exec(
                            "UPDATE event_id_delta SET stamp = ?3 WHERE appid = ?1 AND seq = ?2",
                            p![appid, seq, stamp],
                        )?;
                        stamp
                    } else {
                        stamp
                    };
                    self.hold(appid, seq, stamp, blob)
                }
            };
            out.push((seq, level));
        }
        Ok(out)
    }

    /// Writes a delta of `appid` and holds it.
    pub(super) fn write(&self, tx: &dyn Db, appid: &str, data: Vec<u8>) -> Result<i64> {
        let stamp = new_stamp();
        let seq = tx.int(
            "INSERT INTO event_id_delta (appid, data, stamp) VALUES (?1, ?2, ?3) RETURNING seq",
            p![appid, &data, stamp],
        )?;
        // Held: the next batch of the account searches it.
        self.hold(appid, seq, stamp, data.into());
        Ok(seq)
    }

    /// Holds the delta `seq` of `appid`, stamped `stamp` (not 0), and gives it back.
    fn hold(
        &self,
        appid: &str,
        seq: i64,
        stamp: i64,
        blob: std::sync::Arc<[u8]>,
    ) -> std::sync::Arc<Level> {
        debug_assert_ne!(stamp, 0);
        let level = std::sync::Arc::new(Level::new(blob));
        let mut held = self.lock();
        held.room(level.size());
        held.bytes += level.size();
        let before = held
            .accounts
            .entry(appid.to_owned())
            .or_default()
            .deltas
            .insert(seq, (stamp, level.clone()));
        if let Some((_, old)) = before {
            held.bytes -= old.size();
        }
        level
    }

    /// Bucket `bucket` of `appid`'s index, whose stamp is `stamp`: held, or read (and then
    /// held, unless the stamp is 0: an index no merge has stamped yet).
    fn bucket(
        &self,
        tx: &dyn Db,
        appid: &str,
        stamp: i64,
        bucket: i64,
    ) -> Result<std::sync::Arc<[u8]>> {
        if stamp != 0 {
            let held = self.lock();
            if let Some(blob) = held
                .accounts
                .get(appid)
                .filter(|h| h.stamp == stamp)
                .and_then(|h| h.buckets.get(&bucket))
            {
                return Ok(blob.clone());
            }
        }
        let blob: std::sync::Arc<[u8]> = tx
            .opt(
                "SELECT data FROM event_id WHERE appid = ?1 AND bucket = ?2",
                p![appid, bucket],
                |r| Ok(r.blob(0)?.into()),
            )?
            .unwrap_or_else(|| std::sync::Arc::from(&[][..]));
        if stamp != 0 {
            let mut held = self.lock();
            held.room(blob.len());
            held.set_buckets(appid, stamp, stamp);
            held.bytes += blob.len();
            let mine = held.accounts.entry(appid.to_owned()).or_default();
            if let Some(old) = mine.buckets.insert(bucket, blob.clone()) {
                held.bytes -= old.len();
            }
        }
        Ok(blob)
    }

    /// [`IdCache::bucket`] of each of `buckets`, in their order (one look at what is held).
    pub(super) fn buckets(
        &self,
        tx: &dyn Db,
        appid: &str,
        stamp: i64,
        buckets: &[i64],
    ) -> Result<Vec<std::sync::Arc<[u8]>>> {
        let mut out: Vec<Option<std::sync::Arc<[u8]>>> = vec![None; buckets.len()];
        if stamp != 0 {
            let held = self.lock();
            if let Some(mine) = held.accounts.get(appid).filter(|h| h.stamp == stamp) {
                for (slot, bucket) in out.iter_mut().zip(buckets) {
                    *slot = mine.buckets.get(bucket).cloned();
                }
            }
        }
        out.into_iter()
            .zip(buckets)
            .map(|(held, bucket)| match held {
                Some(blob) => Ok(blob),
                None => self.bucket(tx, appid, stamp, *bucket),
            })
            .collect()
    }

    /// The buckets of `appid` were rewritten, from the index stamped `old` to the one stamped
    /// `new`: those in `written` are now what they hold; with `all`, every other is unknown.
    fn rebucketed(
        &self,
        appid: &str,
        (old, new): (i64, i64),
        written: Vec<(i64, Vec<u8>)>,
        all: bool,
    ) {
        let mut held = self.lock();
        let size: usize = written.iter().map(|(_, b)| b.len()).sum();
        held.room(size);
        held.set_buckets(appid, old, if all { 0 } else { new });
        held.set_buckets(appid, new, new);
        for (bucket, blob) in written {
            held.bytes += blob.len();
            let mine = held.accounts.entry(appid.to_owned()).or_default();
            if let Some(old) = mine.buckets.insert(bucket, blob.into()) {
                held.bytes -= old.len();
            }
        }
    }
}

/// A delta's stamp: random, never 0 (the stamp of deltas written before stamps were).
fn new_stamp() -> i64 {
    rand::random::<i64>() | 1
}

/// Gives `appid`'s buckets a new stamp (they were rewritten, or never stamped), and returns it.
fn restamp(tx: &dyn Db, appid: &str) -> Result<i64> {
    let stamp = new_stamp();
    tx.exec(
        "UPDATE event_app SET id_stamp = ?2 WHERE appid = ?1",
        p![appid, stamp],
    )?;
    Ok(stamp)
}

/// An id to look up in the index: its hash, the tag of its event's day and class, and where
/// the event is in the account's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Candidate {
    pub(super) hash: u64,
    pub(super) tag: u32,
    pub(super) class: u8,
    pub(super) index: u32,
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
pub(super) fn dedup_ids(
    tx: &dyn Db,
    appid: &str,
    classes: &[ClassBatch; CLASSES],
    mut candidates: Vec<Candidate>,
    cache: &IdCache,
) -> Result<Vec<(u8, u32)>> {
    let (bits, mut count, stamp): (u32, u64, i64) = tx
        .opt(
            "SELECT id_bits, ids, id_stamp FROM event_app WHERE appid = ?1",
            p![appid],
            |r| Ok((r.int(0)? as u32, r.int(1)? as u64, r.int(2)?)),
        )?
        .unwrap_or((0, 0, 0));
    // An index written before stamps were: stamped now, so that its buckets may be held.
    let stamp = if stamp == 0 && count > 0 {
        restamp(tx, appid)?
    } else {
        stamp
    };
    candidates.sort_unstable();
    // The deltas as stored (sorted entries), searched in place.
    let deltas = cache.deltas(tx, appid)?;
    // Ids already stored, by (day, class): loaded only to confirm a hash that was found.
    let mut stored_ids: HashMap<u32, FxHashSet<String>> = HashMap::new();
    let mut fresh = Vec::with_capacity(candidates.len());
    let mut added: Vec<(u64, u32)> = Vec::with_capacity(candidates.len());
    let mut delta_at = vec![0usize; deltas.len()];
    let mut wanted: Vec<i64> = candidates.iter().map(|c| bucket_of(c.hash, bits)).collect();
    wanted.dedup();
    let mut blobs = cache.buckets(tx, appid, stamp, &wanted)?.into_iter();
    let mut start = 0;
    while start < candidates.len() {
        let bucket = bucket_of(candidates[start].hash, bits);
        let end = start
            + candidates[start..]
                .iter()
                .take_while(|c| bucket_of(c.hash, bits) == bucket)
                .count();
        let bucket_blob = blobs.next().expect("a bucket for each group of candidates");
        // The hashes a bucket holds: its number is their top `bits` bits.
        let bucket_span = (bits > 0).then(|| {
            let low = (bucket as u64) << (64 - bits);
            (low, low | (u64::MAX >> bits))
        });
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
            // per level moves forward (a level may be large beside a small batch); a delta whose
            // filter rules the hash out is not searched (its cursor stays behind, which is
            // fine). Equal hashes stay under the cursor: the next candidate may share one.
            let levels = std::iter::once((&bucket_blob[..], &mut bucket_at, bucket_span))
                .chain(
                    deltas
                        .iter()
                        .zip(delta_at.iter_mut())
                        .filter(|((_, d), _)| d.may_hold(hash))
                        .map(|((_, d), at)| (&d.data[..], at, None)),
                )
                .map(|(level, at, span)| {
                    let (tags, next) = entries_from(level, *at, hash, span);
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
        let own_delta = cache.write(tx, appid, write_entries(&added))?;
        count += added.len() as u64;
        tx.exec(
            "INSERT INTO event_app (appid, id_bits, ids) VALUES (?1, ?2, ?3)
             ON CONFLICT (appid) DO UPDATE SET ids = excluded.ids",
            p![appid, bits, count],
        )?;
        if deltas.len() + 1 >= MAX_DELTAS {
            let pending: usize = deltas
                .iter()
                .map(|(_, d)| d.data.len() / ENTRY)
                .sum::<usize>()
                + added.len();
            if pending as u64 * DELTA_SHARE >= count {
                let parsed: Vec<Vec<(u64, u32)>> =
                    deltas.iter().map(|(_, d)| read_entries(&d.data)).collect();
                let mut levels: Vec<&[(u64, u32)]> = parsed.iter().map(|d| &d[..]).collect();
                levels.push(&added);
                merge_deltas(tx, appid, (bits, stamp), count, &levels, cache)?;
            } else {
                // Few ids beside the buckets (small batches, a live recording): rewriting
                // every bucket for them would cost the whole index each time. The newest
                // deltas are merged together instead.
                let mut sizes: Vec<(i64, i64)> = deltas
                    .iter()
                    .map(|(seq, d)| (*seq, (d.data.len() / ENTRY) as i64))
                    .collect();
                sizes.push((own_delta, added.len() as i64));
                let from = newest_run(&sizes);
                let mut merged: Vec<(u64, u32)> = Vec::new();
                for (_, d) in &deltas[from..] {
                    merged.extend(read_entries(&d.data));
                }
                merged.extend_from_slice(&added);
                merged.sort(); // sorted runs, merged
                for (seq, _) in &sizes[from..] {
                    tx.exec(
                        "DELETE FROM event_id_delta WHERE appid = ?1 AND seq = ?2",
                        p![appid, *seq],
                    )?;
                }
                cache.write(tx, appid, write_entries(&merged))?;
            }
        }
    }
    Ok(fresh)
}

/// Merges the deltas (`levels`, each sorted by hash) into the buckets, one bucket at a time,
/// and drops them. The buckets are doubled first while they would hold too many ids on
/// average, so that the merge writes each bucket once, in its final layout.
pub(super) fn merge_deltas(
    tx: &dyn Db,
    appid: &str,
    (bits, stamp): (u32, i64),
    count: u64,
    levels: &[&[(u64, u32)]],
    cache: &IdCache,
) -> Result<()> {
    let mut bits = bits;
    let mut new_bits = bits;
    while count > BUCKET_TARGET << new_bits && new_bits < MAX_BUCKET_BITS {
        new_bits += 1;
    }
    let split = new_bits != bits;
    if split {
        split_buckets(tx, appid, bits, new_bits)?;
        tx.exec(
            "UPDATE event_app SET id_bits = ?2 WHERE appid = ?1",
            p![appid, new_bits],
        )?;
        bits = new_bits;
    }
    let mut at = vec![0usize; levels.len()];
    let mut written = Vec::new();
    // Each time, the next bucket any level has entries for.
    while let Some(bucket) = levels
        .iter()
        .zip(&at)
        .filter_map(|(l, i)| l.get(*i).map(|e| bucket_of(e.0, bits)))
        .min()
    {
        // Split: the buckets held are of the old layout.
        let blob = cache.bucket(tx, appid, if split { 0 } else { stamp }, bucket)?;
        let mut entries = read_entries(&blob);
        for (level, i) in levels.iter().zip(at.iter_mut()) {
            let n = level[*i..]
                .iter()
                .take_while(|e| bucket_of(e.0, bits) == bucket)
                .count();
            entries.extend_from_slice(&level[*i..*i + n]);
            *i += n;
        }
        entries.sort(); // sorted runs, merged
        let data = write_entries(&entries);
        tx.exec(
            "INSERT INTO event_id (appid, bucket, data) VALUES (?1, ?2, ?3)
             ON CONFLICT (appid, bucket) DO UPDATE SET data = excluded.data",
            p![appid, bucket, &data],
        )?;
        written.push((bucket, data));
    }
    tx.exec("DELETE FROM event_id_delta WHERE appid = ?1", p![appid])?;
    let new_stamp = restamp(tx, appid)?;
    cache.rebucketed(appid, (stamp, new_stamp), written, split);
    Ok(())
}

/// Re-buckets an account's id index from `2^bits` to `2^new_bits` buckets, one old bucket at
/// a time (highest first, so that new numbers never meet an old bucket not yet split).
pub(super) fn split_buckets(tx: &dyn Db, appid: &str, bits: u32, new_bits: u32) -> Result<()> {
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
pub(super) fn ids_of(tx: &dyn Db, appid: &str, stored_tag: u32) -> Result<FxHashSet<String>> {
    let (day, class) = untag(stored_tag);
    let mut events = Vec::new();
    tx.each(
        "SELECT codec, data FROM event_chunk WHERE appid = ?1 AND class = ?2 AND day = ?3",
        p![appid, class as i64, day],
        &mut |row| decode_chunk(appid, row.int(0)?, row.blob(1)?, &mut events),
    )?;
    Ok(events.into_iter().filter_map(|e| e.id).collect())
}
