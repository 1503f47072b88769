//! What `datacube sync` has mirrored for good: ranges of days per account and endpoint whose
//! figures are final, so that a later sync fetches only what it lacks or what could still
//! change.

use datacube_api::date::{date_to_epoch_day, epoch_day_to_date};
use datacube_api::Endpoint;
use jiff::civil::Date;

use crate::db::{p, Db};
use crate::Result;

/// The final ranges of `endpoint` for `appid`, in order, merged.
pub(crate) fn final_ranges(
    db: &dyn Db,
    appid: &str,
    endpoint: Endpoint,
) -> Result<Vec<(Date, Date)>> {
    db.all(
        "SELECT lo, hi FROM sync_final WHERE appid = ?1 AND endpoint = ?2 ORDER BY lo",
        p![appid, endpoint.id()],
        |r| Ok((epoch_day_to_date(r.int(0)?), epoch_day_to_date(r.int(1)?))),
    )
}

/// Adds `range` to the final ranges, merging it with those it overlaps or touches.
pub(crate) fn mark_final(
    tx: &dyn Db,
    appid: &str,
    endpoint: Endpoint,
    range: (Date, Date),
) -> Result<()> {
    let (mut lo, mut hi) = (date_to_epoch_day(range.0), date_to_epoch_day(range.1));
    let touching: Vec<(i64, i64)> = tx.all(
        "SELECT lo, hi FROM sync_final
         WHERE appid = ?1 AND endpoint = ?2 AND lo <= ?4 + 1 AND hi >= ?3 - 1",
        p![appid, endpoint.id(), lo, hi],
        |r| Ok((r.int(0)?, r.int(1)?)),
    )?;
    for (l, h) in touching {
        lo = lo.min(l);
        hi = hi.max(h);
        tx.exec(
            "DELETE FROM sync_final WHERE appid = ?1 AND endpoint = ?2 AND lo = ?3",
            p![appid, endpoint.id(), l],
        )?;
    }
    tx.exec(
        "INSERT INTO sync_final (appid, endpoint, lo, hi) VALUES (?1, ?2, ?3, ?4)",
        p![appid, endpoint.id(), lo, hi],
    )?;
    Ok(())
}

/// Records the start of a run; `None` when a run with this `(mirror, slot, attempt)` exists
/// (another instance on the database took it). One-shot runs have no slot and never collide.
pub(crate) fn start_run(
    tx: &dyn Db,
    mirror: &str,
    slot: Option<&str>,
    attempt: i64,
    started: i64,
) -> Result<Option<i64>> {
    tx.opt(
        "INSERT INTO sync_run (mirror, slot, attempt, started, beat) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (mirror, slot, attempt) DO NOTHING RETURNING id",
        p![mirror, slot, attempt, started],
        |r| r.int(0),
    )
}

/// [`start_run`] unless a run of `mirror` is under way (not finished, a sign of life within
/// `stale` seconds of `started`) or one of `slot` started within `at_once` seconds of it —
/// checked in the claiming transaction, which claims of one mirror take in turn, so that of
/// requests made at once on several instances one runs.
pub(crate) fn start_run_unless_busy(
    tx: &dyn Db,
    (mirror, slot, attempt): (&str, &str, i64),
    started: i64,
    (stale, at_once): (i64, i64),
) -> Result<Option<i64>> {
    let busy = tx
        .opt(
            "SELECT id FROM sync_run WHERE mirror = ?1
             AND ((finished IS NULL AND ?3 - beat <= ?4)
                  OR (slot = ?2 AND started > ?3 - ?5 AND started < ?3 + ?5))
             LIMIT 1",
            p![mirror, slot, started, stale, at_once],
            |r| r.int(0),
        )?
        .is_some();
    if busy {
        return Ok(None);
    }
    start_run(tx, mirror, Some(slot), attempt, started)
}

/// A sign of life of run `id`, at `now`.
pub(crate) fn beat_run(tx: &dyn Db, id: i64, now: i64) -> Result<()> {
    tx.exec(
        "UPDATE sync_run SET beat = ?2 WHERE id = ?1 AND finished IS NULL",
        p![id, now],
    )?;
    Ok(())
}

/// The newest attempt of `mirror`'s run for `slot`, if any.
pub(crate) fn slot_run(db: &dyn Db, mirror: &str, slot: &str) -> Result<Option<SyncRun>> {
    db.opt(
        "SELECT id, mirror, slot, attempt, started, beat, finished, outcome, report FROM sync_run
         WHERE mirror = ?1 AND slot = ?2 ORDER BY attempt DESC LIMIT 1",
        p![mirror, slot],
        run_row,
    )
}

fn run_row(r: &dyn crate::db::DbRow) -> Result<SyncRun> {
    Ok(SyncRun {
        id: r.int(0)?,
        mirror: r.text(1)?.to_owned(),
        slot: r.opt_text(2)?.map(str::to_owned),
        attempt: r.int(3)?,
        started: r.int(4)?,
        beat: r.int(5)?,
        finished: r.opt_int(6)?,
        outcome: r.opt_text(7)?.map(str::to_owned),
        report: r.opt_text(8)?.map(str::to_owned),
    })
}

/// Records how a run ended.
pub(crate) fn finish_run(
    tx: &dyn Db,
    id: i64,
    finished: i64,
    outcome: &str,
    report: &str,
) -> Result<()> {
    tx.exec(
        "UPDATE sync_run SET finished = ?2, outcome = ?3, report = ?4 WHERE id = ?1",
        p![id, finished, outcome, report],
    )?;
    Ok(())
}

/// The newest `limit` runs (of `mirror`, or of all), newest first.
pub(crate) fn runs(db: &dyn Db, mirror: Option<&str>, limit: i64) -> Result<Vec<SyncRun>> {
    match mirror {
        Some(m) => db.all(
            "SELECT id, mirror, slot, attempt, started, beat, finished, outcome, report
             FROM sync_run WHERE mirror = ?1 ORDER BY id DESC LIMIT ?2",
            p![m, limit],
            run_row,
        ),
        None => db.all(
            "SELECT id, mirror, slot, attempt, started, beat, finished, outcome, report
             FROM sync_run ORDER BY id DESC LIMIT ?1",
            p![limit],
            run_row,
        ),
    }
}

/// One run of `datacube sync`, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRun {
    /// Its number, in the order runs started.
    pub id: i64,
    /// The mirror's name (a daemon's configuration); empty for a one-shot sync.
    pub mirror: String,
    /// The China day a daemon's run was scheduled for; `None` for a one-shot sync.
    pub slot: Option<String>,
    /// 1 for a slot's first try, 2 for its first retry…
    pub attempt: i64,
    /// Unix seconds, by the clock of the run.
    pub started: i64,
    /// The run's last sign of life (Unix seconds, its clock): a run under way updates it
    /// every 30 seconds.
    pub beat: i64,
    /// `None` while it runs (or if the process died during it).
    pub finished: Option<i64>,
    /// `ok`, `partial`, `failed` or `interrupted`.
    pub outcome: Option<String>,
    /// The run report (JSON).
    pub report: Option<String>,
}
