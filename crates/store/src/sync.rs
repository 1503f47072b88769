//! What `datacube sync` has mirrored for good: ranges of days per account and endpoint whose
//! figures are final, so that a later sync fetches only what it lacks or what could still
//! change.

use datacube_api::date::{date_to_epoch_day, epoch_day_to_date};
use datacube_api::Endpoint;
use jiff::civil::Date;
use rusqlite::{params, Connection};

use crate::Result;

/// The final ranges of `endpoint` for `appid`, in order, merged.
pub(crate) fn final_ranges(
    conn: &Connection,
    appid: &str,
    endpoint: Endpoint,
) -> Result<Vec<(Date, Date)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT lo, hi FROM sync_final WHERE appid = ?1 AND endpoint = ?2 ORDER BY lo",
    )?;
    let rows = stmt.query_map(params![appid, endpoint.id()], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    })?;
    let mut out = Vec::new();
    for r in rows {
        let (lo, hi) = r?;
        out.push((epoch_day_to_date(lo), epoch_day_to_date(hi)));
    }
    Ok(out)
}

/// Adds `range` to the final ranges, merging it with those it overlaps or touches.
pub(crate) fn mark_final(
    tx: &Connection,
    appid: &str,
    endpoint: Endpoint,
    range: (Date, Date),
) -> Result<()> {
    let (mut lo, mut hi) = (date_to_epoch_day(range.0), date_to_epoch_day(range.1));
    let touching: Vec<(i64, i64)> = tx
        .prepare_cached(
            "SELECT lo, hi FROM sync_final
             WHERE appid = ?1 AND endpoint = ?2 AND lo <= ?4 + 1 AND hi >= ?3 - 1",
        )?
        .query_map(params![appid, endpoint.id(), lo, hi], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (l, h) in touching {
        lo = lo.min(l);
        hi = hi.max(h);
        tx.prepare_cached("DELETE FROM sync_final WHERE appid = ?1 AND endpoint = ?2 AND lo = ?3")?
            .execute(params![appid, endpoint.id(), l])?;
    }
    tx.prepare_cached("INSERT INTO sync_final (appid, endpoint, lo, hi) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![appid, endpoint.id(), lo, hi])?;
    Ok(())
}
