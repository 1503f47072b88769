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

fn reference(events: &[Event]) -> BTreeMap<Endpoint, Vec<Value>> {
    let mut out: BTreeMap<Endpoint, Vec<Value>> = BTreeMap::new();
    let days: Vec<Date> = (0..14).map(|k| add_days(FIRST, k)).collect();
    let idx: Vec<usize> = (0..events.len()).collect();
    let following_before = |limit: &dyn Fn(usize) -> bool| -> i64 {
        // Openids whose last follow/unfollow event within `limit` is a follow.
        let mut last: BTreeMap<&str, (i64, usize, bool)> = BTreeMap::new();
        for &i in idx.iter().filter(|&&i| limit(i)) {
            let (o, f) = match &events[i].kind {
                Kind::Follow { openid, .. } => (openid.as_str(), true),
                Kind::Unfollow { openid } => (openid.as_str(), false),
                _ => continue,
            };
            let key = (events[i].time, i, f);
            let entry = last.entry(o).or_insert(key);
            if (key.0, key.1) > (entry.0, entry.1) {
                *entry = key;
            }
        }
        last.values().filter(|v| v.2).count() as i64
    };
    for &d in &days {
        let ds = format_date(d);
        // getusersummary
        let mut sources: BTreeSet<u32> = BTreeSet::from([0]);
        let mut new: BTreeMap<u32, BTreeSet<&str>> = BTreeMap::new();
        let mut cancel: BTreeMap<u32, BTreeSet<&str>> = BTreeMap::new();
        for &i in idx.iter().filter(|&&i| day_of(&events[i]) == d) {
            match &events[i].kind {
                Kind::Follow { openid, source } => {
                    sources.insert(*source);
                    new.entry(*source).or_default().insert(openid);
                }
                Kind::Unfollow { openid } => {
                    let source = idx
                        .iter()
                        .filter(|&&j| before(events, j, i))
                        .filter_map(|&j| match &events[j].kind {
                            Kind::Follow { openid: o, source } if o == openid => {
                                Some((events[j].time, j, *source))
                            }
                            _ => None,
                        })
                        .max()
                        .map_or(0, |x| x.2);
                    sources.insert(source);
                    cancel.entry(source).or_default().insert(openid);
                }
                _ => {}
            }
        }
        for s in sources {
            out.entry(Endpoint::GetUserSummary).or_default().push(json!({"ref_date": ds, "user_source": s,
                "new_user": new.get(&s).map_or(0, |x| x.len()), "cancel_user": cancel.get(&s).map_or(0, |x| x.len())}));
        }
        let end_of_day = following_before(&|i| day_of(&events[i]) <= d);
        out.entry(Endpoint::GetUserCumulate)
            .or_default()
            .push(json!({"ref_date": ds, "user_source": 0, "cumulate_user": end_of_day}));
    }

    // Messages, by any grouping.
    let msgs: Vec<(usize, u32, &str)> = idx
        .iter()
        .filter_map(|&i| match &events[i].kind {
            Kind::Message { openid, msg_type } => {
                msg_type.wechat_code().map(|c| (i, c, openid.as_str()))
            }
            _ => None,
        })
        .collect();
    let labels = |f: fn(Date) -> Date| -> BTreeSet<Date> {
        msgs.iter().map(|m| f(day_of(&events[m.0]))).collect()
    };
    let week_ok = |l: Date| l >= monday_of(FIRST) && l <= LAST;
    let month_ok = |l: Date| l >= FIRST.first_of_month() && l <= LAST;
    let day_ok = |l: Date| l >= FIRST && l <= LAST;
    for (endpoint, dist, f, ok) in [
        (
            Endpoint::GetUpstreamMsg,
            Endpoint::GetUpstreamMsgDist,
            (|d| d) as fn(Date) -> Date,
            &day_ok as &dyn Fn(Date) -> bool,
        ),
        (
            Endpoint::GetUpstreamMsgWeek,
            Endpoint::GetUpstreamMsgDistWeek,
            monday_of as fn(Date) -> Date,
            &week_ok,
        ),
        (
            Endpoint::GetUpstreamMsgMonth,
            Endpoint::GetUpstreamMsgDistMonth,
            (|d: Date| d.first_of_month()) as fn(Date) -> Date,
            &month_ok,
        ),
    ] {
        for label in labels(f).into_iter().filter(|l| ok(*l)) {
            let in_period: Vec<&(usize, u32, &str)> = msgs
                .iter()
                .filter(|m| f(day_of(&events[m.0])) == label)
                .collect();
            for code in [1, 2, 3, 4, 6] {
                let of: Vec<_> = in_period.iter().filter(|m| m.1 == code).collect();
                if !of.is_empty() {
                    out.entry(endpoint).or_default().push(json!({"ref_date": format_date(label), "user_source": 0,
                        "msg_type": code, "msg_user": distinct(of.iter().map(|m| m.2)), "msg_count": of.len()}));
                }
            }
            for interval in 1..=3 {
                let users = in_period
                    .iter()
                    .map(|m| m.2)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .filter(|u| {
                        let n = in_period.iter().filter(|m| m.2 == *u).count();
                        match interval {
                            1 => n <= 5,
                            2 => (6..=10).contains(&n),
                            _ => n > 10,
                        }
                    })
                    .count();
                if users > 0 {
                    out.entry(dist)
                        .or_default()
                        .push(json!({"ref_date": format_date(label), "user_source": 0,
                        "count_interval": interval, "msg_user": users}));
                }
            }
        }
    }
    for &d in &days {
        for h in 0..24u8 {
            let of: Vec<_> = msgs
                .iter()
                .filter(|m| day_of(&events[m.0]) == d && hour_of(&events[m.0]) == h)
                .collect();
            for code in [1, 2, 3, 4, 6] {
                let t: Vec<_> = of.iter().filter(|m| m.1 == code).collect();
                if !t.is_empty() {
                    out.entry(Endpoint::GetUpstreamMsgHour).or_default().push(
                        json!({"ref_date": format_date(d),
                        "ref_hour": u32::from(h) * 100, "user_source": 0, "msg_type": code,
                        "msg_user": distinct(t.iter().map(|m| m.2)), "msg_count": t.len()}),
                    );
                }
            }
        }
    }

    // Replies, reads and shares by day and hour.
    for &d in &days {
        for hour in std::iter::once(None).chain((0..24u8).map(Some)) {
            let at =
                |i: usize| day_of(&events[i]) == d && hour.is_none_or(|h| hour_of(&events[i]) == h);
            let with_hour = |mut row: Map<String, Value>| {
                if let Some(h) = hour {
                    row.insert("ref_hour".into(), (u32::from(h) * 100).into());
                }
                Value::Object(row)
            };
            let replies: Vec<(u64, bool)> = idx
                .iter()
                .filter(|&&i| at(i))
                .filter_map(|&i| match events[i].kind {
                    Kind::Reply { cost_ms, ok } => Some((cost_ms, ok)),
                    _ => None,
                })
                .collect();
            if !replies.is_empty() {
                let e = if hour.is_some() {
                    Endpoint::GetInterfaceSummaryHour
                } else {
                    Endpoint::GetInterfaceSummary
                };
                let row = with_hour(obj(
                    json!({"ref_date": format_date(d), "callback_count": replies.len(),
                    "fail_count": replies.iter().filter(|r| !r.1).count(),
                    "total_time_cost": replies.iter().map(|r| r.0).sum::<u64>(),
                    "max_time_cost": replies.iter().map(|r| r.0).max().unwrap()}),
                ));
                out.entry(e).or_default().push(row);
            }
            for key in [0u32, 1, 2, 4, 5, 6, 7, 99_999_999] {
                let all = key == 99_999_999;
                let scene_is = |s: ReadScene| all || s.user_source() == key;
                let int: Vec<&str> = idx
                    .iter()
                    .filter(|&&i| at(i))
                    .filter_map(|&i| match &events[i].kind {
                        Kind::Read {
                            openid,
                            page: Page::Int,
                            scene,
                            ..
                        } if scene_is(*scene) => Some(openid.as_str()),
                        _ => None,
                    })
                    .collect();
                let ori: Vec<&str> = idx
                    .iter()
                    .filter(|&&i| at(i) && all)
                    .filter_map(|&i| match &events[i].kind {
                        Kind::Read {
                            openid,
                            page: Page::Ori,
                            ..
                        } => Some(openid.as_str()),
                        _ => None,
                    })
                    .collect();
                let share: Vec<&str> = idx
                    .iter()
                    .filter(|&&i| at(i))
                    .filter_map(|&i| match &events[i].kind {
                        Kind::Share { openid, from, .. } if scene_is(from.read_scene()) => {
                            Some(openid.as_str())
                        }
                        _ => None,
                    })
                    .collect();
                let fav: Vec<&str> = idx
                    .iter()
                    .filter(|&&i| at(i) && all)
                    .filter_map(|&i| match &events[i].kind {
                        Kind::Favorite { openid, .. } => Some(openid.as_str()),
                        _ => None,
                    })
                    .collect();
                if int.len() + ori.len() + share.len() + fav.len() > 0 {
                    let e = if hour.is_some() {
                        Endpoint::GetUserReadHour
                    } else {
                        Endpoint::GetUserRead
                    };
                    let row = with_hour(obj(
                        json!({"ref_date": format_date(d), "user_source": key,
                        "int_page_read_user": distinct(int.iter().copied()), "int_page_read_count": int.len(),
                        "ori_page_read_user": distinct(ori.iter().copied()), "ori_page_read_count": ori.len(),
                        "share_user": distinct(share.iter().copied()), "share_count": share.len(),
                        "add_to_fav_user": distinct(fav.iter().copied()), "add_to_fav_count": fav.len()}),
                    ));
                    out.entry(e).or_default().push(row);
                }
            }
            for scene in ShareScene::ALL {
                let sharers: Vec<&str> = idx
                    .iter()
                    .filter(|&&i| at(i))
                    .filter_map(|&i| match &events[i].kind {
                        Kind::Share {
                            openid, scene: s, ..
                        } if s == scene => Some(openid.as_str()),
                        _ => None,
                    })
                    .collect();
                if !sharers.is_empty() {
                    let e = if hour.is_some() {
                        Endpoint::GetUserShareHour
                    } else {
                        Endpoint::GetUserShare
                    };
                    let row = with_hour(obj(json!({"ref_date": format_date(d), "user_source": 0,
                        "share_scene": scene.wechat_code(), "share_count": sharers.len(),
                        "share_user": distinct(sharers.iter().copied())})));
                    out.entry(e).or_default().push(row);
                }
            }
        }
    }

    // Articles: the first publish of each msgid is its send.
    let mut sends: BTreeMap<&str, usize> = BTreeMap::new();
    for &i in &idx {
        if let Some((msgid, ..)) = events[i].kind.publish() {
            let entry = sends.entry(msgid).or_insert(i);
            if before(events, i, *entry) {
                *entry = i;
            }
        }
    }
    let article = |msgid: &str, from: Date, to: Date| -> Tallies<'_> {
        let mut t = (vec![], vec![], vec![], vec![], vec![], vec![]);
        for e in events
            .iter()
            .filter(|e| day_of(e) >= from && day_of(e) <= to)
        {
            match &e.kind {
                Kind::Read {
                    msgid: m,
                    openid,
                    page: Page::Int,
                    scene,
                } if m == msgid => {
                    t.0.push(openid.as_str());
                    t.4.push((*scene, openid.as_str()));
                }
                Kind::Read {
                    msgid: m,
                    openid,
                    page: Page::Ori,
                    ..
                } if m == msgid => t.1.push(openid.as_str()),
                Kind::Share {
                    msgid: m,
                    openid,
                    scene,
                    from,
                } if m == msgid => {
                    t.2.push(openid.as_str());
                    if *scene == ShareScene::Feed {
                        t.5.push((*from, openid.as_str()));
                    }
                }
                Kind::Favorite { msgid: m, openid } if m == msgid => t.3.push(openid.as_str()),
                _ => {}
            }
        }
        t
    };
    let counters = |row: &mut Map<String, Value>, t: &Tallies<'_>| {
        for (name, v) in [
            ("int_page_read", &t.0),
            ("ori_page_read", &t.1),
            ("share", &t.2),
            ("add_to_fav", &t.3),
        ] {
            row.insert(format!("{name}_user"), distinct(v.iter().copied()).into());
            row.insert(format!("{name}_count"), v.len().into());
        }
    };
    for (msgid, &i) in &sends {
        let Some((_, title, ..)) = events[i].kind.publish() else {
            unreachable!()
        };
        let send = day_of(&events[i]);
        for k in 0..7 {
            let d = add_days(send, k);
            if d < FIRST || d > LAST {
                continue;
            }
            let t = article(msgid, d, d);
            let score = distinct(t.0.iter().copied())
                + distinct(t.1.iter().copied())
                + distinct(t.2.iter().copied())
                + t.2.len() as u64
                + t.3.len() as u64;
            if score >= 3 {
                let mut row = obj(
                    json!({"ref_date": format_date(d), "msgid": msgid, "title": title, "user_source": 0}),
                );
                counters(&mut row, &t);
                out.entry(Endpoint::GetArticleSummary)
                    .or_default()
                    .push(Value::Object(row));
            }
        }
        if send < FIRST || send > LAST {
            continue;
        }
        let target = following_before(&|j| before(events, j, i));
        let mut details = vec![];
        for k in 0..7 {
            let stat = add_days(send, k);
            if stat > LAST {
                break;
            }
            let t = article(msgid, send, stat);
            let mut d = obj(json!({"stat_date": format_date(stat), "target_user": target}));
            counters(&mut d, &t);
            for (scene, infix) in [
                (ReadScene::Session, "session"),
                (ReadScene::History, "hist_msg"),
                (ReadScene::Feed, "feed"),
                (ReadScene::Friends, "friends"),
                (ReadScene::Other, "other"),
                (ReadScene::Kanyikan, "kanyikan"),
                (ReadScene::Souyisou, "souyisou"),
            ] {
                let of: Vec<&str> = t.4.iter().filter(|x| x.0 == scene).map(|x| x.1).collect();
                d.insert(
                    format!("int_page_from_{infix}_read_user"),
                    distinct(of.iter().copied()).into(),
                );
                d.insert(format!("int_page_from_{infix}_read_count"), of.len().into());
            }
            for (from, name) in [
                (ShareFrom::Session, "session"),
                (ShareFrom::Feed, "feed"),
                (ShareFrom::Other, "other"),
            ] {
                let of: Vec<&str> = t.5.iter().filter(|x| x.0 == from).map(|x| x.1).collect();
                d.insert(
                    format!("feed_share_from_{name}_user"),
                    distinct(of.iter().copied()).into(),
                );
                d.insert(format!("feed_share_from_{name}_cnt"), of.len().into());
            }
            details.push(Value::Object(d));
        }
        out.entry(Endpoint::GetArticleTotal)
            .or_default()
            .push(json!({"ref_date": format_date(send), "msgid": msgid,
            "title": title, "user_source": 0, "details": details}));
    }
    published(events, &sends, &following_before, &mut out);
    out
}

/// The scenes of `read_user_source` after `全部`, in WeChat's order.
const SCENES: [(ReadScene, &str); 7] = [
    (ReadScene::Session, "公众号消息"),
    (ReadScene::Friends, "聊天会话"),
    (ReadScene::Feed, "朋友圈"),
    (ReadScene::History, "公众号主页"),
    (ReadScene::Other, "其他"),
    (ReadScene::Kanyikan, "推荐"),
    (ReadScene::Souyisou, "搜一搜"),
];

/// A float written as the engine writes it: single precision, shortest form.
fn float(x: f32) -> Value {
    serde_json::from_str(&format!("{x}")).unwrap()
}

/// Followers whose last follow event among those `limit` admits is a follow.
type FollowingBefore<'a> = dyn Fn(&dyn Fn(usize) -> bool) -> i64 + 'a;

/// The 2025 endpoints, each row from scratch.
fn published(
    events: &[Event],
    sends: &BTreeMap<&str, usize>,
    following_before: &FollowingBefore,
    out: &mut BTreeMap<Endpoint, Vec<Value>>,
) {
    let msgids: BTreeSet<&str> = events.iter().filter_map(|e| e.kind.article()).collect();
    // Distinct int readers of `msgid` (any when None) on days `from..=to`, and by scene.
    let readers = |msgid: Option<&str>, from: Date, to: Date| {
        let mut all = BTreeSet::new();
        let mut by: BTreeMap<ReadScene, BTreeSet<&str>> = BTreeMap::new();
        for e in events
            .iter()
            .filter(|e| day_of(e) >= from && day_of(e) <= to)
        {
            if let Kind::Read {
                msgid: m,
                openid,
                page: Page::Int,
                scene,
            } = &e.kind
            {
                if msgid.is_none_or(|x| x == m) {
                    all.insert(openid.as_str());
                    by.entry(*scene).or_default().insert(openid.as_str());
                }
            }
        }
        let mut sources = vec![json!({"user_count": all.len(), "scene_desc": "全部"})];
        for (scene, desc) in SCENES {
            if let Some(users) = by.get(&scene) {
                sources.push(json!({"user_count": users.len(), "scene_desc": desc}));
            }
        }
        (all.len(), sources)
    };
    // Distinct users of events matching `pick` on `msgid` (any when None) on days `from..=to`,
    // and how many events.
    let users_of = |msgid: Option<&str>, from: Date, to: Date, pick: &dyn Fn(&Kind) -> bool| {
        let mut users = BTreeSet::new();
        let mut n = 0;
        for e in events
            .iter()
            .filter(|e| day_of(e) >= from && day_of(e) <= to)
        {
            let Some((m, openid)) = e.kind.article_and_reader() else {
                continue;
            };
            if msgid.is_none_or(|x| x == m) && pick(&e.kind) {
                n += 1;
                users.insert(openid);
            }
        }
        (users.len(), n)
    };
    let share = |k: &Kind| matches!(k, Kind::Share { .. });
    let zaikan = |k: &Kind| matches!(k, Kind::Like { heart: true, .. });
    let like = |k: &Kind| matches!(k, Kind::Like { heart: false, .. });
    let comment = |k: &Kind| matches!(k, Kind::Comment { .. });
    let fav = |k: &Kind| matches!(k, Kind::Favorite { .. });
    let ori = |k: &Kind| {
        matches!(
            k,
            Kind::Read {
                page: Page::Ori,
                ..
            }
        )
    };
    for k in 0..14 {
        let d = add_days(FIRST, k);
        let ds = format_date(d);
        for msgid in &msgids {
            let (n, sources) = readers(Some(msgid), d, d);
            if n > 0 {
                out.entry(Endpoint::GetArticleRead)
                    .or_default()
                    .push(json!({
                    "ref_date": ds, "msgid": msgid,
                    "detail": {"read_user": n, "read_user_source": sources}}));
            }
            let (sharers, _) = users_of(Some(msgid), d, d, &share);
            if sharers > 0 {
                out.entry(Endpoint::GetArticleShare)
                    .or_default()
                    .push(json!({
                    "ref_date": ds, "msgid": msgid, "detail": {"share_user": sharers}}));
            }
        }
        let counted = |k: &Kind| share(k) || zaikan(k) || like(k) || comment(k) || fav(k);
        let sent = sends.values().filter(|&&i| day_of(&events[i]) == d).count();
        let active = events
            .iter()
            .filter(|e| day_of(e) == d)
            .any(|e| counted(&e.kind) || matches!(e.kind, Kind::Read { .. }));
        if active || sent > 0 {
            let (n, sources) = readers(None, d, d);
            out.entry(Endpoint::GetBizSummary).or_default().push(json!({
                "ref_date": ds, "detail": {
                    "read_user": n, "read_user_source": sources,
                    "share_user": users_of(None, d, d, &share).0,
                    "zaikan_user": users_of(None, d, d, &zaikan).0,
                    "like_user": users_of(None, d, d, &like).0,
                    "comment_count": users_of(None, d, d, &comment).1,
                    "collection_user": users_of(None, d, d, &fav).0,
                    "redirect_ori_page_user": users_of(None, d, d, &ori).0,
                    "send_page_count": sent}}));
        }
    }
    for (msgid, &i) in sends {
        let send = day_of(&events[i]);
        if send < FIRST || send > LAST {
            continue;
        }
        let (_, title, publish_type, url) = events[i].kind.publish().unwrap();
        let target = following_before(&|j| before(events, j, i));
        let mut list = vec![];
        for k in 0..30 {
            let stat = add_days(send, k);
            if stat > LAST {
                break;
            }
            let (n, sources) = readers(Some(msgid), send, stat);
            let in_span = |e: &Event| day_of(e) >= send && day_of(e) <= stat;
            // Followed on the day of a read of this article, after it.
            let subscribers: BTreeSet<&str> = (0..events.len())
                .filter(|&f| in_span(&events[f]))
                .filter_map(|f| match &events[f].kind {
                    Kind::Follow { openid, .. } => {
                        let read_before = (0..events.len()).any(|r| {
                            day_of(&events[r]) == day_of(&events[f])
                                && before(events, r, f)
                                && matches!(&events[r].kind, Kind::Read { msgid: m, openid: o, page: Page::Int, .. } if m == msgid && o == openid)
                        });
                        read_before.then_some(openid.as_str())
                    }
                    _ => None,
                })
                .collect();
            let praise: u64 = events
                .iter()
                .filter(|e| in_span(e))
                .filter_map(|e| match &e.kind {
                    Kind::Praise { msgid: m, fen, .. } if m == msgid => Some(*fen),
                    _ => None,
                })
                .sum();
            let mut furthest: BTreeMap<&str, u8> = BTreeMap::new();
            let mut active_ms = 0u64;
            for e in events.iter().filter(|e| in_span(e)) {
                if let Kind::Leave {
                    msgid: m,
                    openid,
                    active_ms: ms,
                    progress,
                } = &e.kind
                {
                    if m == msgid {
                        active_ms += ms;
                        let p = furthest.entry(openid).or_default();
                        *p = (*p).max(*progress);
                    }
                }
            }
            let leavers = furthest.len();
            let rate = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f32 / b as f32 };
            let session: BTreeSet<&str> = events
                .iter()
                .filter(|e| in_span(e))
                .filter_map(|e| match &e.kind {
                    Kind::Read {
                        msgid: m,
                        openid,
                        page: Page::Int,
                        scene: ReadScene::Session,
                    } if m == msgid => Some(openid.as_str()),
                    _ => None,
                })
                .collect();
            let delivered = if publish_type == 0 {
                target.max(0) as usize
            } else {
                0
            };
            let mut jumps = vec![];
            for band in 1..=5usize {
                let lo = (band as u8 - 1) * 20;
                let inside = furthest
                    .values()
                    .filter(|p| **p >= lo && (band == 5 || **p < lo + 20))
                    .count();
                if inside > 0 {
                    jumps.push(json!({"position": band, "rate": float(rate(inside, leavers))}));
                }
            }
            let avg = if leavers == 0 {
                0.0
            } else {
                (active_ms as f64 / 60_000.0 / leavers as f64) as f32
            };
            list.push(json!({
                "stat_date": format_date(stat),
                "read_user": n, "read_user_source": sources,
                "share_user": users_of(Some(msgid), send, stat, &share).0,
                "zaikan_user": users_of(Some(msgid), send, stat, &zaikan).0,
                "like_user": users_of(Some(msgid), send, stat, &like).0,
                "comment_count": users_of(Some(msgid), send, stat, &comment).1,
                "collection_user": users_of(Some(msgid), send, stat, &fav).0,
                "praise_money": praise,
                "read_subscribe_user": subscribers.len(),
                "read_delivery_rate": float(rate(session.len(), delivered)),
                "read_finish_rate": float(rate(furthest.values().filter(|p| **p >= 100).count(), leavers)),
                "read_avg_activetime": float(avg),
                "read_jump_position": jumps,
            }));
        }
        let mut row = json!({"ref_date": format_date(send), "msgid": msgid,
            "publish_type": publish_type, "title": title, "detail_list": list});
        if let Some(url) = url {
            row["content_url"] = url.into();
        }
        out.entry(Endpoint::GetArticleTotalDetail)
            .or_default()
            .push(row);
    }
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
