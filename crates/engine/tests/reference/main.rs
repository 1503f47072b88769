//! The engine against a naive reference written here, over many random event streams, for
//! every endpoint. The reference recomputes each row from scratch by filtering all events: slow
//! and obviously right.

use std::collections::{BTreeMap, BTreeSet};

use datacube_api::date::{add_days, china_date_hour, format_date, monday_of};
use datacube_api::row::canonicalize;
use datacube_api::Endpoint;
use datacube_engine::event::{MsgType, Page, ReadScene, ShareFrom, ShareScene};
use datacube_engine::{compute, Event, Kind};
use jiff::civil::{date, Date};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

mod classic;
mod published;

use classic::reference;
use published::published;

const FIRST: Date = date(2024, 5, 6);
const LAST: Date = date(2024, 5, 19);

fn random_events(rng: &mut StdRng) -> Vec<Event> {
    let n = rng.random_range(0..160);
    // Some streams are mostly messages from few users, so that every count_interval occurs.
    let chatty = rng.random_bool(0.4);
    let start = 1_714_924_800 - 2 * 86_400; // two days before the window, China midnight-ish
    let openid = |rng: &mut StdRng| format!("o{}", rng.random_range(0..6));
    let msgid = |rng: &mut StdRng| {
        format!(
            "22474836{}_{}",
            rng.random_range(50..53),
            rng.random_range(1..3)
        )
    };
    (0..n)
        .map(|_| {
            // Coarse times so that ties happen.
            let time =
                start + rng.random_range(0..(18 * 24)) * 3600 + rng.random_range(0..2) * 1800;
            let pick = if chatty && rng.random_bool(0.7) {
                2
            } else {
                rng.random_range(0..14)
            };
            let kind = match pick {
                0 => Kind::Follow {
                    openid: openid(rng),
                    source: [0, 1, 30][rng.random_range(0..3)],
                },
                1 => Kind::Unfollow {
                    openid: openid(rng),
                },
                2 => Kind::Message {
                    openid: if chatty {
                        format!("o{}", rng.random_range(0..2))
                    } else {
                        openid(rng)
                    },
                    msg_type: MsgType::ALL[rng.random_range(0..MsgType::ALL.len())],
                },
                3 => Kind::Reply {
                    cost_ms: rng.random_range(0..6000),
                    ok: rng.random_bool(0.8),
                },
                4 => Kind::Publish {
                    msgid: msgid(rng),
                    title: format!("t{}", rng.random_range(0..3)),
                },
                9 => Kind::Published {
                    msgid: msgid(rng),
                    title: format!("t{}", rng.random_range(0..3)),
                    publish_type: rng.random_range(0..2),
                    url: rng
                        .random_bool(0.5)
                        .then(|| format!("https://mp.weixin.qq.com/s/{}", rng.random_range(0..3))),
                },
                10 => Kind::Like {
                    msgid: msgid(rng),
                    openid: openid(rng),
                    heart: rng.random_bool(0.5),
                },
                11 => Kind::Comment {
                    msgid: msgid(rng),
                    openid: openid(rng),
                },
                12 => Kind::Praise {
                    msgid: msgid(rng),
                    openid: openid(rng),
                    fen: rng.random_range(1..1000),
                },
                13 => Kind::Leave {
                    msgid: msgid(rng),
                    openid: openid(rng),
                    active_ms: rng.random_range(0..300_000),
                    progress: [0, 19, 20, 55, 80, 99, 100][rng.random_range(0..7)],
                },
                5 | 6 => Kind::Read {
                    msgid: msgid(rng),
                    openid: openid(rng),
                    page: Page::ALL[rng.random_range(0..2)],
                    scene: ReadScene::ALL[rng.random_range(0..ReadScene::ALL.len())],
                },
                7 => Kind::Share {
                    msgid: msgid(rng),
                    openid: openid(rng),
                    scene: ShareScene::ALL[rng.random_range(0..3)],
                    from: ShareFrom::ALL[rng.random_range(0..3)],
                },
                _ => Kind::Favorite {
                    msgid: msgid(rng),
                    openid: openid(rng),
                },
            };
            Event {
                appid: "wx1".into(),
                id: None,
                time,
                kind,
            }
        })
        .collect()
}

fn distinct<'a>(it: impl Iterator<Item = &'a str>) -> u64 {
    it.collect::<BTreeSet<_>>().len() as u64
}

fn day_of(e: &Event) -> Date {
    china_date_hour(e.time).0
}
fn hour_of(e: &Event) -> u8 {
    china_date_hour(e.time).1
}

/// Whether event `a` (index i) happened before event `b` (index j): time, then input order.
fn before(events: &[Event], i: usize, j: usize) -> bool {
    (events[i].time, i) < (events[j].time, j)
}

/// One article's events in a span: int readers, ori readers, sharers, favourites (one entry
/// per event), int reads by scene, shares to Moments by origin.
type Tallies<'a> = (
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<(ReadScene, &'a str)>,
    Vec<(ShareFrom, &'a str)>,
);

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

/// Canonical JSON, in WeChat's row order.
fn canonical(endpoint: Endpoint, rows: &[Value]) -> Vec<String> {
    let mut rows: Vec<_> = rows
        .iter()
        .map(|v| canonicalize(endpoint, v).unwrap())
        .collect();
    rows.sort_by(|a, b| (a.ref_date, a.ref_hour, &a.key).cmp(&(b.ref_date, b.ref_hour, &b.key)));
    rows.into_iter().map(|r| r.json).collect()
}

#[test]
fn the_engine_agrees_with_the_naive_reference_on_random_streams() {
    let mut rng = StdRng::seed_from_u64(20_241_123);
    let mut exercised: BTreeMap<Endpoint, usize> = BTreeMap::new();
    let mut intervals: BTreeSet<String> = BTreeSet::new();
    for case in 0..100 {
        let events = random_events(&mut rng);
        let engine = compute(&events, FIRST, LAST);
        let want = reference(&events);
        for endpoint in Endpoint::ALL {
            let got: Vec<String> = engine
                .get(&endpoint)
                .map_or(vec![], |rows| rows.iter().map(|r| r.json.clone()).collect());
            let expected = canonical(endpoint, want.get(&endpoint).map_or(&[][..], Vec::as_slice));
            if !expected.is_empty() {
                *exercised.entry(endpoint).or_default() += 1;
            }
            if endpoint == Endpoint::GetUpstreamMsgDist
                || endpoint == Endpoint::GetUpstreamMsgDistWeek
            {
                intervals.extend(expected.iter().cloned());
            }
            assert_eq!(
                got, expected,
                "case {case}, {endpoint}, events: {events:#?}"
            );
        }
    }
    for interval in 1..=3 {
        assert!(
            intervals
                .iter()
                .any(|r| r.contains(&format!("\"count_interval\":{interval}"))),
            "count_interval {interval} never occurs"
        );
    }
    // The streams are rich enough that every endpoint has rows in many cases.
    for endpoint in Endpoint::ALL {
        let n = exercised.get(&endpoint).copied().unwrap_or(0);
        assert!(n >= 15, "{endpoint} had rows in only {n} of 100 cases");
    }
}
