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
