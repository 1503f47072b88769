//! Statistics rows, kept one database row per account, endpoint and day (`stat_day`).
//!
//! `rows` holds the day's rows as WeChat serializes them, comma-joined in serving order (hour,
//! then natural key), so that answering a range is a concatenation; `keys` holds each row's
//! hour, natural key and length (postcard), so that an import can merge row by row. An hourly
//! endpoint has up to a few hundred rows a day: one database row for them all keeps writing
//! and reading them cheap.

use std::collections::BTreeMap;

use datacube_api::date::{format_date, parse_date};
use datacube_api::row::Row;
use datacube_api::Endpoint;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::db::{p, Db, V};
use crate::{Result, StoreError, UpsertReport};

#[derive(Serialize, Deserialize)]
struct Entry<K> {
    hour: i32,
    key: K,
    len: u32,
}

/// One stored row: (hour, natural key) → JSON.
type DayRows = BTreeMap<(i32, String), String>;

fn encode<'a>(rows: impl Iterator<Item = (i32, &'a str, &'a str)>) -> (String, Vec<u8>, i64) {
    let mut text = String::new();
    let mut entries: Vec<Entry<&str>> = Vec::new();
    for (hour, key, json) in rows {
        if !entries.is_empty() {
            text.push(',');
        }
        text.push_str(json);
        entries.push(Entry {
            hour,
            key,
            len: json.len() as u32,
        });
    }
    let n = entries.len() as i64;
    (text, postcard::to_allocvec(&entries).unwrap_or_default(), n)
}

/// A stored day's rows text: TEXT on SQLite, `bytea` on PostgreSQL, JSON either way — what
/// the SQL views read (crate::views). Days written before version 10 (PostgreSQL 5) may have
/// been zstd; the migration made them plain ([`make_plain`]), and one an older instance still
/// writes during a rolling upgrade is read all the same.
fn rows_text<'a>(appid: &str, rows: V<'a>) -> Result<std::borrow::Cow<'a, str>> {
    match rows {
        V::Text(t) => Ok(std::borrow::Cow::Borrowed(t)),
        V::Blob(b) if b.starts_with(&ZSTD_MAGIC) => {
            let plain = crate::codec::decompress(b, &format!("statistics rows of {appid}"))?;
            String::from_utf8(plain)
                .map(std::borrow::Cow::Owned)
                .map_err(|e| corrupt(appid, &e.to_string()))
        }
        V::Blob(b) => std::str::from_utf8(b)
            .map(std::borrow::Cow::Borrowed)
            .map_err(|e| corrupt(appid, &e.to_string())),
        _ => Err(corrupt(appid, "rows are neither text nor bytes")),
    }
}

/// A stored day's keys, plain (or zstd, written by an older instance beside its rows).
fn keys_of<'a>(appid: &str, keys: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>> {
    if keys.starts_with(&ZSTD_MAGIC) {
        Ok(std::borrow::Cow::Owned(crate::codec::decompress(
            keys,
            &format!("statistics keys of {appid}"),
        )?))
    } else {
        Ok(std::borrow::Cow::Borrowed(keys))
    }
}

fn corrupt(appid: &str, what: &str) -> StoreError {
    StoreError::Corrupt(format!("statistics rows of {appid}: {what}"))
}

fn decode(appid: &str, text: &str, keys: &[u8]) -> Result<DayRows> {
    let corrupt = |what: &str| corrupt(appid, what);
    let entries: Vec<Entry<String>> =
        postcard::from_bytes(keys).map_err(|e| corrupt(&e.to_string()))?;
    let mut out = DayRows::new();
    let mut at = 0usize;
    for e in entries {
        let end = at + e.len as usize;
        let json = text.get(at..end).ok_or_else(|| corrupt("lengths"))?;
        out.insert((e.hour, e.key), json.to_owned());
        at = end + 1;
    }
    Ok(out)
}

/// One day of one endpoint's rows, ready to store: its date, its row count, the rows' text
/// and their keys.
pub(crate) struct StoredDay {
    date: String,
    n: i64,
    rows: String,
    keys: Vec<u8>,
}

impl StoredDay {
    fn new(date: String, (rows, keys, n): (String, Vec<u8>, i64)) -> StoredDay {
        StoredDay {
            date,
            n,
            rows,
            keys,
        }
    }
}

/// The zstd frame's magic number, at the start of a day version 6 to 9 compressed.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Makes plain every day stored compressed (versions 6 to 9 kept days of 1 KiB or more as
/// zstd, which SQL cannot read): `compressed` selects `appid, endpoint, ref_date, rows, keys`
/// of at most a batch of the candidates (the backend's own test of the magic number, with a
/// `LIMIT`), asked again until none is left — memory bounded by the batch. Returns how many.
pub(crate) fn make_plain(db: &dyn Db, compressed: &'static str) -> Result<usize> {
    let mut total = 0;
    loop {
        let n = make_plain_batch(db, compressed)?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
    }
}

fn make_plain_batch(db: &dyn Db, compressed: &'static str) -> Result<usize> {
    let mut days: Vec<(String, i64, String, String, Vec<u8>)> = Vec::new();
    db.each(compressed, &[], &mut |r| {
        let appid = r.text(0)?.to_owned();
        let rows = r.blob(3)?;
        if !rows.starts_with(&ZSTD_MAGIC) {
            return Ok(());
        }
        let what = format!("statistics rows of {appid}");
        let text = String::from_utf8(crate::codec::decompress(rows, &what)?)
            .map_err(|e| corrupt(&appid, &e.to_string()))?;
        let keys = keys_of(&appid, r.blob(4)?)?.into_owned();
        days.push((appid, r.int(1)?, r.text(2)?.to_owned(), text, keys));
        Ok(())
    })?;
    for (appid, endpoint, date, rows, keys) in &days {
        db.exec(
            "UPDATE stat_day SET rows = ?4, keys = ?5
             WHERE appid = ?1 AND endpoint = ?2 AND ref_date = ?3",
            p![appid, *endpoint, date, rows.as_str(), keys.as_slice()],
        )?;
    }
    Ok(days.len())
}

/// Writes days of one endpoint: each replaces the stored day (a day without rows deletes
/// it).
fn write_days(db: &dyn Db, appid: &str, endpoint: Endpoint, days: &[StoredDay]) -> Result<()> {
    let mut params: Vec<V<'_>> = Vec::with_capacity(days.len() * 6);
    for day in days {
        if day.n == 0 {
            db.exec(
                "DELETE FROM stat_day WHERE appid = ?1 AND endpoint = ?2 AND ref_date = ?3",
                p![appid, endpoint.id(), &day.date],
            )?;
        } else {
            params.extend_from_slice(&[
                V::from(appid),
                V::from(endpoint.id()),
                V::from(&day.date),
                V::from(day.n),
                V::from(&day.rows),
                V::from(&day.keys),
            ]);
        }
    }
    db.insert_many(
        "INSERT INTO stat_day (appid, endpoint, ref_date, n, rows, keys) VALUES",
        "ON CONFLICT (appid, endpoint, ref_date)
         DO UPDATE SET n = excluded.n, rows = excluded.rows, keys = excluded.keys",
        6,
        &params,
    )
}

/// The days of `rows` dated `from..=to`, ready to store. `rows` must be in serving order —
/// by date, hour and key, as the engine returns them; rows from outside go through
/// [`sort_rows`] first — with distinct keys (`parse_list` refuses a body that repeats one).
/// Pure work: it may run away from the writer.
pub(crate) fn prepare_days(rows: &[Row], (from, to): (Date, Date)) -> Result<Vec<StoredDay>> {
    let in_range: Vec<&Row> = rows
        .iter()
        .filter(|r| r.ref_date >= from && r.ref_date <= to)
        .collect();
    in_range
        .chunk_by(|a, b| a.ref_date == b.ref_date)
        .map(|day| {
            let encoded = encode(
                day.iter()
                    .map(|r| (i32::from(r.ref_hour), r.key.as_str(), r.json.as_str())),
            );
            Ok(StoredDay::new(format_date(day[0].ref_date), encoded))
        })
        .collect()
}

/// Puts rows that came from outside (an upstream's answer, in any order) in serving order, so
/// that [`prepare_days`] groups them by their natural key, never by how they were listed.
pub(crate) fn sort_rows(rows: &mut [Row]) {
    fn key(r: &Row) -> (Date, i16, &str) {
        (r.ref_date, r.ref_hour, r.key.as_str())
    }
    if !rows.is_sorted_by(|a, b| key(a) <= key(b)) {
        rows.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
    }
}

/// Replaces the rows of `endpoint` dated `from..=to` by `days` (from [`prepare_days`]).
pub(crate) fn replace(
    conn: &dyn Db,
    appid: &str,
    endpoint: Endpoint,
    (from, to): (Date, Date),
    days: Vec<StoredDay>,
) -> Result<()> {
    conn.exec(
        "DELETE FROM stat_day WHERE appid = ?1 AND endpoint = ?2 AND ref_date BETWEEN ?3 AND ?4",
        p![appid, endpoint.id(), &format_date(from), &format_date(to)],
    )?;
    // The range is empty now: days without rows need no delete.
    let days: Vec<StoredDay> = days.into_iter().filter(|d| d.n > 0).collect();
    write_days(conn, appid, endpoint, &days)
}

/// [`replace`], returning how many of the new rows were not stored so before (new, or
/// changed): a window mirrored again counts only what it changed. One more read of the
/// range — for the mirror, not for the events' recompute.
pub(crate) fn replace_counting(
    conn: &dyn Db,
    appid: &str,
    endpoint: Endpoint,
    (from, to): (Date, Date),
    days: Vec<StoredDay>,
) -> Result<u64> {
    let mut before: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
    conn.each(
        "SELECT ref_date, rows, keys FROM stat_day
         WHERE appid = ?1 AND endpoint = ?2 AND ref_date BETWEEN ?3 AND ?4",
        p![appid, endpoint.id(), &format_date(from), &format_date(to)],
        &mut |r| {
            let rows = rows_text(appid, r.get(1)?)?.into_owned();
            let keys = keys_of(appid, r.blob(2)?)?.into_owned();
            before.insert(r.text(0)?.to_owned(), (rows, keys));
            Ok(())
        },
    )?;
    let mut changed = 0u64;
    for day in &days {
        match before.get(&day.date) {
            Some((rows, _)) if *rows == day.rows => {}
            Some((rows, keys)) => {
                let old = decode(appid, rows, keys)?;
                let new = decode(appid, &day.rows, &day.keys)?;
                changed += new
                    .iter()
                    .filter(|(key, json)| old.get(*key) != Some(*json))
                    .count() as u64;
            }
            None => changed += day.n as u64,
        }
    }
    replace(conn, appid, endpoint, (from, to), days)?;
    Ok(changed)
}

/// Imports rows: each replaces the stored row with its natural key, if any.
pub(crate) fn upsert(
    conn: &dyn Db,
    appid: &str,
    endpoint: Endpoint,
    rows: &[Row],
) -> Result<UpsertReport> {
    let mut report = UpsertReport::default();
    let mut changed_days = Vec::new();
    let mut by_day: BTreeMap<Date, Vec<&Row>> = BTreeMap::new();
    for row in rows {
        by_day.entry(row.ref_date).or_default().push(row);
    }
    let stored_day = |r: &dyn crate::db::DbRow, rows_at: usize| -> Result<DayRows> {
        decode(
            appid,
            &rows_text(appid, r.get(rows_at)?)?,
            &keys_of(appid, r.blob(rows_at + 1)?)?,
        )
    };
    // The stored days, read in one query when the import's days are close together (a
    // round trip per day costs a networked database more than the rows themselves).
    let mut prefetched: Option<BTreeMap<String, DayRows>> = None;
    if let (Some(first), Some(last)) = (by_day.keys().next(), by_day.keys().next_back()) {
        let span = (*last - *first).get_days() as usize + 1;
        if span <= 4 * by_day.len() + 16 {
            let mut days = BTreeMap::new();
            conn.each(
                "SELECT ref_date, rows, keys FROM stat_day
                 WHERE appid = ?1 AND endpoint = ?2 AND ref_date BETWEEN ?3 AND ?4",
                p![
                    appid,
                    endpoint.id(),
                    &format_date(*first),
                    &format_date(*last)
                ],
                &mut |r| {
                    days.insert(r.text(0)?.to_owned(), stored_day(r, 1)?);
                    Ok(())
                },
            )?;
            prefetched = Some(days);
        }
    }
    for (date, new) in by_day {
        let date = format_date(date);
        let stored: Option<DayRows> = match &mut prefetched {
            Some(days) => days.remove(&date),
            None => conn.opt(
                "SELECT rows, keys FROM stat_day WHERE appid = ?1 AND endpoint = ?2 AND ref_date = ?3",
                p![appid, endpoint.id(), &date],
                |r| stored_day(r, 0),
            )?,
        };
        let mut day = stored.unwrap_or_default();
        let mut changed = false;
        for row in new {
            match day.insert((i32::from(row.ref_hour), row.key.clone()), row.json.clone()) {
                Some(old) if old == row.json => report.unchanged += 1,
                Some(_) => {
                    report.updated += 1;
                    changed = true;
                }
                None => {
                    report.inserted += 1;
                    changed = true;
                }
            }
        }
        if changed {
            let encoded = encode(
                day.iter()
                    .map(|((hour, key), json)| (*hour, key.as_str(), json.as_str())),
            );
            changed_days.push(StoredDay::new(date, encoded));
        }
    }
    write_days(conn, appid, endpoint, &changed_days)?;
    Ok(report)
}

/// Appends the rows of `endpoint` dated `begin..=end`, comma-separated, in WeChat's order,
/// to `out`; returns how many.
pub(crate) fn list_into(
    conn: &dyn Db,
    appid: &str,
    endpoint: Endpoint,
    begin: Date,
    end: Date,
    out: &mut String,
) -> Result<usize> {
    let mut n = 0;
    conn.each(
        "SELECT n, rows FROM stat_day
         WHERE appid = ?1 AND endpoint = ?2 AND ref_date BETWEEN ?3 AND ?4
         ORDER BY ref_date",
        p![appid, endpoint.id(), &format_date(begin), &format_date(end)],
        &mut |row| {
            if n > 0 {
                out.push(',');
            }
            out.push_str(&rows_text(appid, row.get(1)?)?);
            n += row.int(0)? as usize;
            Ok(())
        },
    )?;
    Ok(n)
}

/// Quiet days (no event) stored after an account's last event day; the days after them, up to
/// yesterday, are answered without being stored ([`quiet_tail`]) — so that moving the clock
/// centuries on costs nothing until a day is asked for, and then only that window.
pub(crate) const QUIET_STORED: i64 = 366;

/// The rows of the days `begin..=end` after the last stored day of an account with events, for
/// getusersummary and getusercumulate: quiet days — nobody followed or left, the followers as
/// on the last stored day — byte for byte as they would be stored. Appended to `out` after
/// `listed` rows; returns how many. `end` must be a day the caller may serve (at most the last
/// ready day).
pub(crate) fn quiet_tail(
    conn: &dyn Db,
    appid: &str,
    endpoint: Endpoint,
    (begin, end): (Date, Date),
    listed: usize,
    out: &mut String,
) -> Result<usize> {
    match quiet_after(conn, appid, endpoint, Some(end))? {
        Some(quiet) => Ok(quiet_rows(endpoint, &quiet, (begin, end), listed, out)),
        None => Ok(0),
    }
}

/// What the quiet days after an account's stored ones say (see [`quiet_tail`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Quiet {
    /// The last stored day of getusercumulate.
    last: Date,
    /// Its followers (getusercumulate; 0 for getusersummary).
    cumulate: i64,
}

/// The quiet days of `endpoint` of `appid`, if its answers have any: getusersummary and
/// getusercumulate of an account with events and stored follower days.
pub(crate) fn quiet(conn: &dyn Db, appid: &str, endpoint: Endpoint) -> Result<Option<Quiet>> {
    quiet_after(conn, appid, endpoint, None)
}

/// [`quiet`], or `None` at once when `end` is given and no quiet day comes by then (the last
/// stored day is on or after it): an answer within the stored days costs no more queries.
fn quiet_after(
    conn: &dyn Db,
    appid: &str,
    endpoint: Endpoint,
    end: Option<Date>,
) -> Result<Option<Quiet>> {
    if !matches!(
        endpoint,
        Endpoint::GetUserSummary | Endpoint::GetUserCumulate
    ) {
        return Ok(None);
    }
    let Some((_, last)) = bounds(conn, appid, Endpoint::GetUserCumulate)? else {
        return Ok(None);
    };
    if end.is_some_and(|end| end <= last) {
        return Ok(None);
    }
    let with_events = conn
        .opt(
            "SELECT 1 FROM event_app WHERE appid = ?1",
            p![appid],
            |_| Ok(()),
        )?
        .is_some();
    if !with_events {
        return Ok(None);
    }
    let cumulate = if endpoint == Endpoint::GetUserCumulate {
        let mut text = String::new();
        list_into(conn, appid, endpoint, last, last, &mut text)?;
        let row: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| corrupt(appid, &format!("the last cumulate row: {e}")))?;
        row["cumulate_user"].as_i64().unwrap_or(0)
    } else {
        0
    };
    Ok(Some(Quiet { last, cumulate }))
}

/// Appends the quiet days of `begin..=end` after `quiet.last` to `out`, after `listed` rows;
/// returns how many.
pub(crate) fn quiet_rows(
    endpoint: Endpoint,
    quiet: &Quiet,
    (begin, end): (Date, Date),
    listed: usize,
    out: &mut String,
) -> usize {
    let mut n = 0;
    let mut day = datacube_api::date::add_days(quiet.last, 1).max(begin);
    while day <= end {
        if listed + n > 0 {
            out.push(',');
        }
        let date = format_date(day);
        match endpoint {
            Endpoint::GetUserSummary => out.push_str(&format!(
                r#"{{"ref_date":"{date}","user_source":0,"new_user":0,"cancel_user":0}}"#
            )),
            _ => out.push_str(&format!(
                r#"{{"ref_date":"{date}","user_source":0,"cumulate_user":{}}}"#,
                quiet.cumulate
            )),
        }
        n += 1;
        day = datacube_api::date::add_days(day, 1);
    }
    n
}

/// Calls `f` with each stored day of `endpoint` of `appid` and its rows (comma-joined), in
/// date order.
pub(crate) fn each_day(
    conn: &dyn Db,
    appid: &str,
    endpoint: Endpoint,
    f: &mut dyn FnMut(Date, &str) -> Result<()>,
) -> Result<()> {
    conn.each(
        "SELECT ref_date, rows FROM stat_day
         WHERE appid = ?1 AND endpoint = ?2 ORDER BY ref_date",
        p![appid, endpoint.id()],
        &mut |row| {
            let day = parse_date(row.text(0)?)
                .ok_or_else(|| corrupt(appid, "a stored day that is not a date"))?;
            f(day, &rows_text(appid, row.get(1)?)?)
        },
    )
}

/// The first and last date with rows of `endpoint`.
pub(crate) fn bounds(
    conn: &dyn Db,
    appid: &str,
    endpoint: Endpoint,
) -> Result<Option<(Date, Date)>> {
    let bound = |sql: &'static str| -> Result<Option<Date>> {
        conn.one(sql, p![appid, endpoint.id()], |r| {
            Ok(r.opt_text(0)?.and_then(parse_date))
        })
    };
    let min = bound("SELECT MIN(ref_date) FROM stat_day WHERE appid = ?1 AND endpoint = ?2")?;
    let max = bound("SELECT MAX(ref_date) FROM stat_day WHERE appid = ?1 AND endpoint = ?2")?;
    Ok(min.zip(max))
}

/// Moves version 4's `stat_row` (one database row per statistics row) into `stat_day`, and
/// drops it.
pub(crate) fn move_v4_rows(conn: &rusqlite::Connection) -> Result<()> {
    type Key = (String, u8, String);
    let mut current: Option<Key> = None;
    let mut rows: Vec<(i32, String, String)> = Vec::new();
    let flush = |key: &Key, rows: &[(i32, String, String)]| -> Result<()> {
        let Some(endpoint) = Endpoint::from_id(key.1) else {
            return Ok(());
        };
        let encoded = encode(rows.iter().map(|(h, k, j)| (*h, k.as_str(), j.as_str())));
        write_days(
            conn,
            &key.0,
            endpoint,
            &[StoredDay::new(key.2.clone(), encoded)],
        )
    };
    let mut stmt = conn.prepare(
        "SELECT appid, endpoint, ref_date, ref_hour, row_key, json FROM stat_row
         ORDER BY appid, endpoint, ref_date, ref_hour, row_key",
    )?;
    let mut q = stmt.query([])?;
    while let Some(r) = q.next()? {
        let key: Key = (r.get(0)?, r.get(1)?, r.get(2)?);
        if current.as_ref() != Some(&key) {
            if let Some(done) = current.take() {
                flush(&done, &rows)?;
            }
            rows.clear();
            current = Some(key);
        }
        rows.push((r.get(3)?, r.get(4)?, r.get(5)?));
    }
    if let Some(done) = current {
        flush(&done, &rows)?;
    }
    drop(q);
    drop(stmt);
    conn.execute_batch("DROP TABLE stat_row")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_round_trips() {
        let rows = [
            (0, "a", "{\"x\":1}"),
            (3, "b", "{\"y\":\"é,\"}"),
            (23, "", "{}"),
        ];
        let (text, keys, n) = encode(rows.iter().copied());
        assert_eq!(n, 3);
        assert_eq!(text, "{\"x\":1},{\"y\":\"é,\"},{}");
        let back = decode("wx", &text, &keys).unwrap();
        let back: Vec<(i32, &str, &str)> = back
            .iter()
            .map(|((h, k), j)| (*h, k.as_str(), j.as_str()))
            .collect();
        assert_eq!(back, rows);
        assert!(decode("wx", &text[..5], &keys).is_err());
    }
}
