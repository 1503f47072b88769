//! An account's statistics of one endpoint, held in memory to answer ranges without reading
//! the database: the stored days' rows in one string, in date order, so that a range's rows
//! are one slice of it; what the answer adds after the stored days (getusersummary's and
//! getusercumulate's quiet days); and whether something of the account is still pending
//! (live events not counted yet), in which case it must not answer.
//!
//! Loaded in one snapshot ([`crate::Store::resident`]); the server keeps it until the change
//! log says the account changed. Answers are byte for byte those of
//! [`crate::Store::list_body`] (a test compares them over every range of an account).

use datacube_api::date::{date_to_epoch_day, epoch_day_to_date};
use datacube_api::Endpoint;
use jiff::civil::Date;

use crate::db::{p, Db};
use crate::{days, Result};

/// One endpoint's statistics of one account, as stored when it was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resident {
    endpoint: Endpoint,
    /// The stored days with rows, ascending (China days since the epoch).
    days: Vec<i64>,
    /// Where each day's rows end in `text` (they start after the previous day's comma).
    ends: Vec<u32>,
    /// Every day's rows, comma-joined, in date order.
    text: String,
    /// The quiet days answered after the stored ones, if any.
    quiet: Option<days::Quiet>,
    /// The first day with live events not counted yet.
    pending_from: Option<Date>,
}

impl Resident {
    /// Reads `endpoint`'s statistics of `appid` (run it in one snapshot).
    pub(crate) fn load(db: &dyn Db, appid: &str, endpoint: Endpoint) -> Result<Resident> {
        let pending_from = db
            .one(
                "SELECT MIN(lo) FROM stat_pending WHERE appid = ?1",
                p![appid],
                |r| r.opt_int(0),
            )?
            .map(epoch_day_to_date);
        let mut resident = Resident {
            endpoint,
            days: Vec::new(),
            ends: Vec::new(),
            text: String::new(),
            quiet: days::quiet(db, appid, endpoint)?,
            pending_from,
        };
        days::each_day(db, appid, endpoint, &mut |day, rows| {
            if rows.is_empty() {
                return Ok(());
            }
            if !resident.text.is_empty() {
                resident.text.push(',');
            }
            resident.text.push_str(rows);
            resident.days.push(date_to_epoch_day(day));
            resident.ends.push(resident.text.len() as u32);
            Ok(())
        })?;
        Ok(resident)
    }

    /// Whether live events of the account dated on or before `ready` are not counted yet:
    /// then the answer must come from [`crate::Store::list_body`], which counts them first.
    pub fn pending_through(&self, ready: Date) -> bool {
        self.pending_from.is_some_and(|from| from <= ready)
    }

    /// How many stored days come before `day`. Most accounts have a row every day: then it is
    /// arithmetic (a binary search over a year's days costs a cache miss a step).
    fn position(&self, day: i64) -> usize {
        let days = &self.days;
        match (days.first(), days.last()) {
            (Some(&first), Some(&last)) if last - first + 1 == days.len() as i64 => {
                day.clamp(first, last + 1).abs_diff(first) as usize
            }
            _ => days.partition_point(|&d| d < day),
        }
    }

    /// Memory held, in bytes (about).
    pub fn size(&self) -> usize {
        std::mem::size_of::<Resident>()
            + self.text.capacity()
            + self.days.capacity() * 8
            + self.ends.capacity() * 4
    }

    /// The body `{"list":[…]}` of the rows dated `begin..=end`, as
    /// [`crate::Store::list_body`] answers it (`end` at most the last ready day).
    pub fn body(&self, (begin, end): (Date, Date)) -> String {
        let (first, last) = (date_to_epoch_day(begin), date_to_epoch_day(end));
        let from = self.position(first);
        let to = self.position(last.saturating_add(1));
        let rows = if from < to {
            let start = if from == 0 {
                0
            } else {
                self.ends[from - 1] as usize + 1
            };
            &self.text[start..self.ends[to - 1] as usize]
        } else {
            ""
        };
        let mut out = String::with_capacity(rows.len() + 16);
        out.push_str("{\"list\":[");
        out.push_str(rows);
        if let Some(quiet) = &self.quiet {
            days::quiet_rows(
                self.endpoint,
                quiet,
                (begin, end),
                usize::from(!rows.is_empty()),
                &mut out,
            );
        }
        out.push_str("]}");
        out
    }

    /// The first and last stored day (for tests and logs).
    pub fn span(&self) -> Option<(Date, Date)> {
        Some((
            epoch_day_to_date(*self.days.first()?),
            epoch_day_to_date(*self.days.last()?),
        ))
    }

    /// The endpoint.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn held(days: Vec<i64>) -> Resident {
        Resident {
            endpoint: Endpoint::GetUserSummary,
            ends: (1..=days.len() as u32).collect(),
            days,
            text: String::new(),
            quiet: None,
            pending_from: None,
        }
    }

    proptest! {
        /// Dense days (arithmetic) and scattered ones (a search) place every day alike.
        #[test]
        fn a_day_is_placed_as_a_search_places_it(
            start in -1000i64..30_000,
            gaps in proptest::collection::vec(prop_oneof![4 => Just(1i64), 1 => 2i64..40], 0..400),
            dense in any::<bool>(),
            day in -2000i64..32_000,
        ) {
            let days: Vec<i64> = gaps
                .iter()
                .scan(start, |d, &g| { *d += if dense { 1 } else { g }; Some(*d) })
                .collect();
            let searched = days.partition_point(|&d| d < day);
            prop_assert_eq!(held(days).position(day), searched);
        }
    }
}
