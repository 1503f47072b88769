//! Message and reply statistics kept up to date event by event.
//!
//! [`crate::rollup::compute`] replays a period's events in time order; recording a live stream
//! (`datacube push`, `datacube proxy`) would then re-read the whole day so far at every
//! refresh, and the day grows. A [`Live`] tally absorbs events once, in any order (every
//! figure it keeps — counts, distinct users per period and key, messages per user, sums and
//! maxima — is order-independent), and answers the rows of any of its periods at once: the
//! same rows `compute` gives for the same events (a randomized test holds them equal).

use std::collections::BTreeMap;

use datacube_api::date::{china_date_hour, monday_of};
use datacube_api::row::Row;
use datacube_api::Endpoint;
use jiff::civil::Date;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::event::{Event, Kind};
use crate::rollup::{
    count_interval, dist_row, iface_row, msg_row, msg_slot, Counts, Interface, Label,
    DIST_ENDPOINTS, MSG_CODES, MSG_ENDPOINTS,
};

/// One period's message figures: per msg_type slot, distinct users and messages.
#[derive(Default)]
struct MsgTally {
    seen: HashSet<u64>,
    slots: [Counts; MSG_CODES.len()],
}

/// The statistics of one account's messages and replies, for the periods of the events it
/// absorbed. Other events are ignored.
#[derive(Default)]
pub struct Live {
    users: HashMap<Box<str>, u32>,
    /// Day, hour, week and month tallies by label.
    msg: [HashMap<Label, MsgTally>; 4],
    /// Messages per user by day, week and month.
    dist: [HashMap<Date, HashMap<u32, u64>>; 3],
    iface: [HashMap<Label, Interface>; 2],
}

impl Live {
    /// An empty tally.
    pub fn new() -> Live {
        Live::default()
    }

    /// Adds one event's part to every figure it counts in.
    pub fn absorb(&mut self, event: &Event) {
        match &event.kind {
            Kind::Message {
                openid, msg_type, ..
            } => {
                // Location messages have no msg_type and count nowhere (as in `compute`).
                let Some(code) = msg_type.wechat_code() else {
                    return;
                };
                let (date, hour) = china_date_hour(event.time);
                let (week, month) = (monday_of(date), date.first_of_month());
                let next = self.users.len() as u32;
                let user = match self.users.get(openid.as_str()) {
                    Some(u) => *u,
                    None => {
                        self.users.insert(openid.as_str().into(), next);
                        next
                    }
                };
                let slot = msg_slot(code);
                let labels = [(date, 0), (date, hour), (week, 0), (month, 0)];
                for (tallies, label) in self.msg.iter_mut().zip(labels) {
                    let t = tallies.entry(label).or_default();
                    t.slots[slot].count += 1;
                    if t.seen.insert(((slot as u64) << 32) | u64::from(user)) {
                        t.slots[slot].users += 1;
                    }
                }
                for (per_user, label) in self.dist.iter_mut().zip([date, week, month]) {
                    *per_user.entry(label).or_default().entry(user).or_default() += 1;
                }
            }
            Kind::Reply { cost_ms, ok } => {
                let (date, hour) = china_date_hour(event.time);
                self.iface[0]
                    .entry((date, 0))
                    .or_default()
                    .add(*cost_ms, *ok);
                self.iface[1]
                    .entry((date, hour))
                    .or_default()
                    .add(*cost_ms, *ok);
            }
            _ => {}
        }
    }

    /// The rows of a message or interface endpoint whose `ref_date` (a week's Monday, a
    /// month's 1st) is within `from..=to`, in WeChat's order. Other endpoints have none.
    pub fn rows(&self, endpoint: Endpoint, (from, to): (Date, Date)) -> Vec<Row> {
        let within = |d: Date| d >= from && d <= to;
        let mut rows = Vec::new();
        if let Some(k) = MSG_ENDPOINTS.iter().position(|e| *e == endpoint) {
            for (label, t) in self.msg[k].iter().filter(|(l, _)| within(l.0)) {
                for (c, code) in t.slots.iter().zip(MSG_CODES) {
                    if c.count > 0 {
                        rows.push(msg_row(endpoint, *label, code, *c));
                    }
                }
            }
        } else if let Some(k) = DIST_ENDPOINTS.iter().position(|e| *e == endpoint) {
            for (date, per_user) in self.dist[k].iter().filter(|(d, _)| within(**d)) {
                let mut buckets: BTreeMap<u64, u64> = BTreeMap::new();
                for n in per_user.values() {
                    *buckets.entry(count_interval(*n)).or_default() += 1;
                }
                for (interval, users) in buckets {
                    rows.push(dist_row(endpoint, *date, interval, users));
                }
            }
        } else {
            let k = match endpoint {
                Endpoint::GetInterfaceSummary => 0,
                Endpoint::GetInterfaceSummaryHour => 1,
                _ => return rows,
            };
            for (label, it) in self.iface[k].iter().filter(|(l, _)| within(l.0)) {
                rows.push(iface_row(endpoint, *label, it));
            }
        }
        rows.sort_by(|a, b| {
            (a.ref_date, a.ref_hour, &a.key).cmp(&(b.ref_date, b.ref_hour, &b.key))
        });
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::MsgType;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    fn message(time: i64, user: u32, msg_type: MsgType) -> Event {
        Event {
            appid: "wx1".into(),
            id: None,
            time,
            kind: Kind::Message {
                openid: format!("o{user}"),
                msg_type,
            },
        }
    }

    /// Random messages and replies over ~6 weeks, absorbed in random order, give exactly the
    /// rows `compute` gives from the events in time order, for every endpoint and range.
    #[test]
    fn any_order_gives_the_rows_of_compute() {
        let types = [
            MsgType::Text,
            MsgType::Image,
            MsgType::Voice,
            MsgType::Video,
            MsgType::Link,
            MsgType::Location,
        ];
        for seed in 0..20u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let start = 1_761_000_000 + rng.random_range(0..86_400 * 30);
            let users = rng.random_range(1..40);
            let mut events: Vec<Event> = (0..rng.random_range(1..3_000))
                .map(|_| {
                    let time = start + rng.random_range(0..86_400 * 45);
                    if rng.random_bool(0.6) {
                        message(
                            time,
                            rng.random_range(0..users),
                            types[rng.random_range(0..types.len())],
                        )
                    } else {
                        Event {
                            appid: "wx1".into(),
                            id: None,
                            time,
                            kind: Kind::Reply {
                                cost_ms: rng.random_range(0..6_000),
                                ok: rng.random_bool(0.9),
                            },
                        }
                    }
                })
                .collect();
            events.shuffle(&mut rng);
            let mut live = Live::new();
            for e in &events {
                live.absorb(e);
            }
            let dates: Vec<Date> = events.iter().map(|e| china_date_hour(e.time).0).collect();
            let (first, last) = (*dates.iter().min().unwrap(), *dates.iter().max().unwrap());
            // Whole weeks and months, as the store asks.
            let window = (
                monday_of(first).min(first.first_of_month()),
                datacube_api::date::add_days(monday_of(last), 6).max(last.last_of_month()),
            );
            let wanted: Vec<Endpoint> = MSG_ENDPOINTS
                .iter()
                .chain(&DIST_ENDPOINTS)
                .copied()
                .chain([
                    Endpoint::GetInterfaceSummary,
                    Endpoint::GetInterfaceSummaryHour,
                ])
                .collect();
            let computed = crate::rollup::compute_some(&events, window.0, window.1, &wanted);
            for e in &wanted {
                let expected: Vec<&str> = computed
                    .get(e)
                    .map_or(vec![], |r| r.iter().map(|r| r.json.as_str()).collect());
                let got = live.rows(*e, window);
                let got: Vec<&str> = got.iter().map(|r| r.json.as_str()).collect();
                assert_eq!(got, expected, "seed {seed}, {e:?}");
                if events.len() >= 50 {
                    assert!(!expected.is_empty(), "seed {seed}, {e:?}: nothing compared");
                }
                // A narrower range: a middle slice of days.
                let mid = (
                    datacube_api::date::add_days(first, 3),
                    datacube_api::date::add_days(first, 9),
                );
                let got: Vec<String> = live.rows(*e, mid).into_iter().map(|r| r.json).collect();
                let expected: Vec<&String> = computed.get(e).map_or(vec![], |r| {
                    r.iter()
                        .filter(|r| r.ref_date >= mid.0 && r.ref_date <= mid.1)
                        .map(|r| &r.json)
                        .collect()
                });
                assert_eq!(
                    got.iter().collect::<Vec<_>>(),
                    expected,
                    "seed {seed}, {e:?}, middle"
                );
            }
        }
    }
}
