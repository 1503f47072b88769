//! Statistics deferred (live events posted to `/admin/events`, and what `push` and `proxy`
//! record): pending periods, recomputed an account at a time when due, and the live tallies of
//! messages and replies that absorb only the chunks stored since the last refresh.

use crate::db::{p, Db};
use crate::Result;
use datacube_api::date::{add_days, date_to_epoch_day, epoch_day_to_date, monday_of};
use datacube_api::endpoint::Group;
use datacube_api::{Endpoint, Period};
use jiff::civil::Date;
use rustc_hash::FxHashSet;
use std::collections::HashMap;

use super::*;

/// Recomputes, from the stored events, every period of `appid` marked pending, and clears the
/// marks; returns whether any was marked (a bulk load's accounts: no live tallies).
pub(crate) fn recompute_pending(tx: &dyn Db, appid: &str, yesterday: Date) -> Result<bool> {
    flush_account(tx, yesterday, appid, None, None, |_| Ok(()))
}

/// Which pending statistics a flush recomputes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Due {
    /// Every period pending.
    All,
    /// Every period pending of the accounts with a period pending on or before the date: what
    /// an answer for days up to it may show. Periods of later days only — today's, say —
    /// change nothing that can be read yet, and wait.
    Through(Date),
}

/// Whether `appid` has a period pending on or before `ready` (see [`Due::Through`]).
pub(crate) fn pending_through(db: &dyn Db, appid: &str, ready: Date) -> Result<bool> {
    Ok(db
        .opt(
            "SELECT 1 FROM stat_pending WHERE appid = ?1 AND lo <= ?2 LIMIT 1",
            p![appid, date_to_epoch_day(ready)],
            |_| Ok(()),
        )?
        .is_some())
}

/// The accounts with pending periods that `due` names, by appid.
pub(crate) fn due_accounts(db: &dyn Db, due: Due) -> Result<Vec<String>> {
    match due {
        Due::All => db.all(
            "SELECT DISTINCT appid FROM stat_pending ORDER BY appid",
            p![],
            |r| Ok(r.text(0)?.to_owned()),
        ),
        Due::Through(ready) => db.all(
            "SELECT DISTINCT appid FROM stat_pending WHERE lo <= ?1 ORDER BY appid",
            p![date_to_epoch_day(ready)],
            |r| Ok(r.text(0)?.to_owned()),
        ),
    }
}

/// Recomputes every pending period of `appid` (see [`store_batch_deferred`]) — if it still
/// has one on or before `ready`, when given (another writer may have done it) — and clears
/// their marks; `changed` is called if it did. Returns whether it did.
///
/// With `live`, messages and replies — what `push` and `proxy` record, all day long — are not
/// recomputed from their day's events but answered from live tallies that absorb only the
/// chunks stored since the last flush; the other classes are recomputed as a batch would.
pub(crate) fn flush_account(
    tx: &dyn Db,
    yesterday: Date,
    appid: &str,
    ready: Option<Date>,
    mut live: Option<&mut LiveTallies>,
    mut changed: impl FnMut(&str) -> Result<()>,
) -> Result<bool> {
    if let Some(ready) = ready {
        if !pending_through(tx, appid, ready)? {
            return Ok(false);
        }
    }
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
    if let Some(live) = live.as_deref_mut() {
        for class in LIVE_CLASSES {
            if let Some(span) = touched.get(class) {
                live.refresh(tx, appid, class, span)?;
            }
        }
    }
    let own = AccountBatch {
        appid: appid.to_owned(),
        classes: Default::default(),
    };
    let appended = Appended {
        touched,
        own_chunks: FxHashSet::default(),
    };
    let elsewhere: &[Class] = if live.is_some() { &LIVE_CLASSES } else { &[] };
    recompute_but(tx, &own, &appended, yesterday, elsewhere)?;
    tx.exec("DELETE FROM stat_pending WHERE appid = ?1", p![appid])?;
    changed(appid)?;
    Ok(true)
}

/// The classes [`flush_account`] answers from live tallies.
pub(super) const LIVE_CLASSES: [Class; 2] = [Class::Message, Class::Reply];

/// The whole weeks and months around `lo..=hi`: what a message tally must hold to answer
/// the week and month rows of those days.
pub(super) fn whole_periods((lo, hi): (Date, Date)) -> (Date, Date) {
    (
        monday_of(lo).min(lo.first_of_month()),
        add_days(monday_of(hi), 6).max(hi.last_of_month()),
    )
}

/// The endpoints of the message or reply class, each with the dates of its rows that days `lo..=hi` feed.
pub(super) fn class_endpoints(
    class: Class,
    (lo, hi): (Date, Date),
) -> Vec<(Endpoint, (Date, Date))> {
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
pub(super) struct LiveState {
    pub(super) window: (i64, i64),
    pub(super) max_seq: i64,
    pub(super) chunks: i64,
    pub(super) tally: datacube_engine::live::Live,
}

/// Live tallies of messages and replies, by account and class, for [`flush_account`]. Kept
/// by the store for the life of the process; they follow the database, whoever writes to it:
/// new chunks are absorbed by their `seq`, and a tally whose chunks changed otherwise (a day
/// merged by another writer) is rebuilt from the stored events.
#[derive(Default)]
pub(crate) struct LiveTallies {
    pub(super) states: HashMap<(String, Class), LiveState>,
    /// Tallies (re)built from the stored events.
    pub(crate) rebuilds: u64,
    /// The [`LiveShelf`]'s generation they belong to.
    generation: u64,
}

/// Each account's [`LiveTallies`], behind a lock of its own: taken with the account's write
/// transaction open, so that recomputing one account's statistics never waits for another's.
#[derive(Default)]
pub(crate) struct LiveShelf {
    accounts: std::sync::Mutex<HashMap<String, std::sync::Arc<std::sync::Mutex<LiveTallies>>>>,
    /// Changed by every [`LiveShelf::clear`]: tallies of an older generation — taken before a
    /// reset, used after it — start over ([`LiveShelf::current`]).
    generation: std::sync::atomic::AtomicU64,
}

impl LiveShelf {
    /// `appid`'s tallies (empty the first time).
    pub(crate) fn of(&self, appid: &str) -> std::sync::Arc<std::sync::Mutex<LiveTallies>> {
        let mut accounts = crate::db::locked(&self.accounts);
        match accounts.get(appid) {
            Some(t) => t.clone(),
            None => {
                let t = std::sync::Arc::<std::sync::Mutex<LiveTallies>>::default();
                accounts.insert(appid.to_owned(), t.clone());
                t
            }
        }
    }

    /// Forgets `appid`'s tallies (its events are gone).
    pub(crate) fn forget(&self, appid: &str) {
        crate::db::locked(&self.accounts).remove(appid);
    }

    /// Forgets every account's tallies: one taken before and used after is started over
    /// ([`LiveShelf::current`]) — an SQLite database whose chunks were all deleted numbers new
    /// ones from 1 again, which the check of a tally against the stored chunks cannot tell.
    pub(crate) fn clear(&self) {
        let mut accounts = crate::db::locked(&self.accounts);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        accounts.clear();
    }

    /// `tallies` as they may be used now, in a write transaction of their account: started
    /// over when the shelf was cleared since they were made.
    pub(crate) fn current(&self, tallies: &mut LiveTallies) {
        let now = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        if tallies.generation != now {
            *tallies = LiveTallies {
                generation: now,
                rebuilds: tallies.rebuilds,
                ..Default::default()
            };
        }
    }

    /// How many times tallies were built from the stored events, in all.
    #[cfg(test)]
    pub(crate) fn rebuilds(&self) -> u64 {
        let accounts = crate::db::locked(&self.accounts);
        accounts
            .values()
            .map(|t| crate::db::locked(t).rebuilds)
            .sum()
    }
}

/// The most days a live tally holds (when a refresh asks for other days, a tally grows to
/// hold them up to this span, else it starts over on the days asked for).
pub(super) const LIVE_DAYS: i64 = 75;

impl LiveTallies {
    /// Brings the tally of (`appid`, `class`) up to date with the stored chunks, and writes
    /// the rows of the endpoints that days `span` feed.
    pub(super) fn refresh(
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
pub(super) fn compact_newest(tx: &dyn Db, appid: &str, class: Class, day: i64) -> Result<()> {
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
pub(super) fn newest_run(parts: &[(i64, i64)]) -> usize {
    let mut from = parts.len() - 2;
    let mut newer: i64 = parts[from..].iter().map(|p| p.1).sum();
    while from > 0 && parts[from - 1].1 <= newer {
        from -= 1;
        newer += parts[from].1;
    }
    from
}
