//! The event log's chunks: one account's events of one class and China day from one batch,
//! encoded back to back (postcard) and compressed; reading a day, and merging its chunks.

use crate::db::{p, Db};
use crate::Result;
use datacube_api::date::date_to_epoch_day;
use datacube_engine::{Event, Kind};
use jiff::civil::Date;
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::*;

/// A day is merged into one chunk when reading it finds this many.
pub(super) const COMPACT_AT: usize = 16;

#[derive(Serialize)]
pub(super) struct Encode<'a> {
    pub(super) id: Option<&'a str>,
    pub(super) time: i64,
    pub(super) kind: &'a Kind,
}

#[derive(Deserialize)]
pub(super) struct Decode {
    pub(super) id: Option<String>,
    pub(super) time: i64,
    pub(super) kind: Kind,
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
pub(super) const PLAIN: i64 = 0;

pub(super) const ZSTD: i64 = 1;

/// Decodes a stored chunk of either codec.
pub(super) fn decode_chunk(
    appid: &str,
    codec: i64,
    data: &[u8],
    out: &mut Vec<Event>,
) -> Result<()> {
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
pub(super) fn plain_chunk(appid: &str, codec: i64, data: Vec<u8>) -> Result<Vec<u8>> {
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

pub(super) fn decode_all(appid: &str, mut data: &[u8], out: &mut Vec<Event>) -> Result<()> {
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

/// Loads an account's events of one class on days `range` (all days when `None`), merging
/// the chunks of a day that has accumulated many.
pub(super) fn load(
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
pub(super) fn compact(
    tx: &dyn Db,
    appid: &str,
    class: Class,
    day: i64,
    seqs: &[i64],
) -> Result<()> {
    let mut merged = Vec::new();
    for seq in seqs {
        let (codec, data) = tx.one(
            "SELECT codec, data FROM event_chunk WHERE appid = ?1 AND seq = ?2",
            p![appid, *seq],
            |r| Ok((r.int(0)?, r.blob(1)?.to_vec())),
        )?;
        merged.extend_from_slice(&plain_chunk(appid, codec, data)?);
    }
    for seq in seqs {
        tx.exec(
            "DELETE FROM event_chunk WHERE appid = ?1 AND seq = ?2",
            p![appid, *seq],
        )?;
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
