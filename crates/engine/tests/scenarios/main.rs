//! Small scenarios computed by hand, endpoint by endpoint: the endpoints of 2014
//! ([`classic`]) and the 2025 "published content" ones ([`published`]).

use std::collections::BTreeMap;

use datacube_api::Endpoint;
use datacube_engine::{compute, parse_line};
use jiff::civil::Date;

mod classic;
mod published;

/// Every endpoint's rows, as JSON, computed from the NDJSON `events` for `first..=last`.
fn rows(events: &str, first: Date, last: Date) -> BTreeMap<Endpoint, Vec<String>> {
    let events: Vec<_> = events
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse_line(l).unwrap())
        .collect();
    compute(&events, first, last)
        .into_iter()
        .map(|(e, rows)| (e, rows.into_iter().map(|r| r.json).collect()))
        .collect()
}
