//! Demo statistics for `serve --demo`: a deterministic, internally consistent history for all
//! 17 endpoints, written through the same import path as `datacube import`.
//!
//! Until the event engine computes statistics from events, these are generated as WeChat
//! answers directly: hours add up to days, days to weeks and months, the `99999999` row of
//! getuserread de-duplicates its channels, and getarticletotal's details are cumulative.

use std::collections::BTreeMap;

use datacube_api::date::{add_days, format_date, monday_of};
use datacube_api::Endpoint;
use datacube_store::Store;
use jiff::civil::Date;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::import::{import_body, ImportError};

/// The demo account's appid (`wx` + "datacube" in hex).
pub const DEMO_APPID: &str = "wx6461746163756265";
/// The demo account's secret, printed by `serve --demo`. Public: demo use only.
pub const DEMO_SECRET: &str = "64656d6f5f7365637265745f32303236";

/// Relative message traffic per China-time hour.
const HOURLY: [f64; 24] = [
    0.3, 0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 1.0, 1.4, 1.5, 1.5, 1.6, 1.8, 1.5, 1.3, 1.3, 1.3, 1.4, 1.5,
    1.8, 2.0, 2.2, 1.6, 0.8,
];

/// Follow channels (user_source) and their mean daily follows at the start.
const CHANNELS: [(u32, f64); 7] = [
    (0, 4.0),
    (1, 25.0),
    (17, 3.0),
    (30, 40.0),
    (57, 10.0),
    (100, 6.0),
    (161, 2.0),
];

/// Message types (msg_type) and their share of messages.
const MSG_TYPES: [(u32, f64); 5] = [(1, 0.70), (2, 0.15), (3, 0.08), (4, 0.03), (6, 0.04)];

/// Read scenes: getuserread's user_source, getarticletotal's field infix, share of reads.
const SCENES: [(u32, &str, f64); 7] = [
    (0, "session", 0.55),
    (1, "friends", 0.18),
    (2, "feed", 0.12),
    (4, "hist_msg", 0.08),
    (5, "other", 0.03),
    (6, "kanyikan", 0.02),
    (7, "souyisou", 0.02),
];

/// Share of an article's first-week readers on each day after its send.
const DECAY: [f64; 7] = [0.45, 0.25, 0.10, 0.08, 0.06, 0.04, 0.02];

const TITLES: [&str; 8] = [
    "一周数据回顾",
    "新功能上线：数据统计看板",
    "如何读懂你的粉丝增长曲线",
    "消息回复速度优化实践",
    "周末活动预告",
    "用户故事｜从零到一万粉丝",
    "常见问题解答",
    "年度盘点",
];

/// What `seed` stored.
#[derive(Debug, Default, Clone, Copy)]
pub struct DemoReport {
    /// Rows generated over all endpoints.
    pub rows: usize,
    /// Days covered.
    pub days: u32,
}

struct Gen {
    rng: StdRng,
}

impl Gen {
    /// A noisy non-negative count around `mean`.
    fn count(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        let (u1, u2): (f64, f64) = (self.rng.random::<f64>().max(1e-12), self.rng.random());
        let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (mean + normal * mean.sqrt()).round().max(0.0) as u64
    }
}

#[derive(Default, Clone, Copy)]
struct Counters {
    read_user: u64,
    read_count: u64,
    ori_user: u64,
    ori_count: u64,
    share_user: u64,
    share_count: u64,
    fav_user: u64,
    fav_count: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.read_user += o.read_user;
        self.read_count += o.read_count;
        self.ori_user += o.ori_user;
        self.ori_count += o.ori_count;
        self.share_user += o.share_user;
        self.share_count += o.share_count;
        self.fav_user += o.fav_user;
        self.fav_count += o.fav_count;
    }
    fn json(&self, row: &mut serde_json::Map<String, Value>) {
        row.insert("int_page_read_user".into(), self.read_user.into());
        row.insert("int_page_read_count".into(), self.read_count.into());
        row.insert("ori_page_read_user".into(), self.ori_user.into());
        row.insert("ori_page_read_count".into(), self.ori_count.into());
        row.insert("share_user".into(), self.share_user.into());
        row.insert("share_count".into(), self.share_count.into());
        row.insert("add_to_fav_user".into(), self.fav_user.into());
        row.insert("add_to_fav_count".into(), self.fav_count.into());
    }
}

/// One article's figures on one day after its send.
struct ArticleDay {
    total: Counters,
    /// Per read scene (SCENES order): readers, reads.
    scenes: [(u64, u64); 7],
    /// Shares to Moments from the session, from Moments, from elsewhere: users, times.
    feed: [(u64, u64); 3],
}

struct Article {
    msgid: String,
    title: &'static str,
    send: Date,
    target: u64,
    /// Day 0 (the send day) to day 6.
    days: Vec<ArticleDay>,
}

/// One day of messages: per MSG_TYPES entry (users, messages).
struct MsgDay {
    date: Date,
    types: [(u64, u64); 5],
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("built from json!({{…}})"),
    }
}

/// Generates `days` days of statistics ending at `last_day` for `appid` and stores them.
/// The same `seed` gives the same numbers.
pub async fn seed(
    store: &Store,
    appid: &str,
    last_day: Date,
    days: u32,
    seed: u64,
) -> Result<DemoReport, ImportError> {
    let lists = generate(last_day, days, seed);
    let mut report = DemoReport { rows: 0, days };
    for (endpoint, rows) in lists {
        report.rows += rows.len();
        let body = serde_json::to_vec(&json!({ "list": rows })).expect("JSON values serialize");
        import_body(store, appid, endpoint, &body).await?;
    }
    Ok(report)
}

/// The generated WeChat rows, per endpoint.
pub fn generate(last_day: Date, days: u32, seed: u64) -> BTreeMap<Endpoint, Vec<Value>> {
    let mut g = Gen {
        rng: StdRng::seed_from_u64(seed),
    };
    let first = add_days(last_day, -(i64::from(days) - 1)).max(datacube_api::date::FIRST_DAY);
    let mut out: BTreeMap<Endpoint, Vec<Value>> = BTreeMap::new();
    let mut push = |e: Endpoint, v: Value| out.entry(e).or_default().push(v);

    let mut cumulate: u64 = 12_000;
    let mut msg_data_id: u64 = 2_247_483_649;
    let mut articles: Vec<Article> = Vec::new();
    // Per-day message figures, for weeks and months.
    let mut msg_days: Vec<MsgDay> = Vec::new();

    let mut day = first;
    let mut i = 0u32;
    while day <= last_day {
        let d = format_date(day);
        let growth = 1.0 + f64::from(i) / 365.0;
        let weekend = matches!(
            day.weekday(),
            jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
        );
        let weekday_factor = if weekend { 0.8 } else { 1.0 };

        // Followers.
        for (source, mean) in CHANNELS {
            let new = g.count(mean * growth * weekday_factor);
            let cancel =
                g.count(mean * 0.35 * weekday_factor + if source == 0 { 3.0 } else { 0.0 });
            cumulate = (cumulate + new).saturating_sub(cancel);
            if source == 0 || new > 0 || cancel > 0 {
                push(
                    Endpoint::GetUserSummary,
                    json!({"ref_date": d, "user_source": source, "new_user": new, "cancel_user": cancel}),
                );
            }
        }
        push(
            Endpoint::GetUserCumulate,
            json!({"ref_date": d, "user_source": 0, "cumulate_user": cumulate}),
        );

        // Messages and the passive replies they get, hour by hour.
        let base = 300.0 * growth * weekday_factor;
        let total_weight: f64 = HOURLY.iter().sum();
        let mut day_types = [(0u64, 0u64); 5];
        let mut day_iface = (0u64, 0u64, 0u64, 0u64);
        for (h, w) in HOURLY.iter().enumerate() {
            let hour_total = base * w / total_weight;
            let mut callbacks = 0;
            for (t, (msg_type, share)) in MSG_TYPES.iter().enumerate() {
                let count = g.count(hour_total * share);
                if count == 0 {
                    continue;
                }
                let users = ((count as f64) / 1.6).ceil() as u64;
                day_types[t].0 += users;
                day_types[t].1 += count;
                callbacks += count;
                push(
                    Endpoint::GetUpstreamMsgHour,
                    json!({"ref_date": d, "ref_hour": h * 100, "user_source": 0, "msg_type": msg_type,
                           "msg_user": users, "msg_count": count}),
                );
            }
            if callbacks > 0 {
                let fails = (0..callbacks).filter(|_| g.rng.random_bool(0.003)).count() as u64;
                let total_cost: u64 = (0..callbacks - fails)
                    .map(|_| 120 + g.rng.random_range(0..300u64))
                    .sum::<u64>()
                    + fails * (5000 + g.rng.random_range(0..60u64));
                let max = if fails > 0 {
                    5000 + g.rng.random_range(0..60u64)
                } else {
                    420 + g.rng.random_range(0..900u64)
                };
                day_iface.0 += callbacks;
                day_iface.1 += fails;
                day_iface.2 += total_cost;
                day_iface.3 = day_iface.3.max(max);
                push(
                    Endpoint::GetInterfaceSummaryHour,
                    json!({"ref_date": d, "ref_hour": h * 100, "callback_count": callbacks,
                           "fail_count": fails, "total_time_cost": total_cost, "max_time_cost": max}),
                );
            }
        }
        let mut senders = 0;
        for (t, (msg_type, _)) in MSG_TYPES.iter().enumerate() {
            let (hour_users, count) = day_types[t];
            if count == 0 {
                continue;
            }
            // A user who writes in several hours is one user of the day.
            let users = ((hour_users as f64) * 0.7).ceil().min(count as f64) as u64;
            day_types[t].0 = users;
            senders += users;
            push(
                Endpoint::GetUpstreamMsg,
                json!({"ref_date": d, "user_source": 0, "msg_type": msg_type,
                       "msg_user": users, "msg_count": count}),
            );
        }
        let senders = ((senders as f64) * 0.9).ceil() as u64;
        for (interval, share) in [(1, 0.80), (2, 0.15), (3, 0.05)] {
            let users = ((senders as f64) * share).round() as u64;
            if users > 0 {
                push(
                    Endpoint::GetUpstreamMsgDist,
                    json!({"ref_date": d, "user_source": 0, "count_interval": interval, "msg_user": users}),
                );
            }
        }
        msg_days.push(MsgDay {
            date: day,
            types: day_types,
        });
        if day_iface.0 > 0 {
            push(
                Endpoint::GetInterfaceSummary,
                json!({"ref_date": d, "callback_count": day_iface.0, "fail_count": day_iface.1,
                       "total_time_cost": day_iface.2, "max_time_cost": day_iface.3}),
            );
        }

        // A mass send on most days, 1–3 articles.
        if g.rng.random_bool(0.85) {
            let n = g.rng.random_range(1..=3u32);
            for idx in 1..=n {
                let reach = cumulate as f64 * 0.08 / f64::from(idx);
                let mut days_v = Vec::new();
                for share in DECAY {
                    let users = g.count(reach * share);
                    let mut scenes = [(0u64, 0u64); 7];
                    for (s, (_, _, part)) in SCENES.iter().enumerate() {
                        let u = ((users as f64) * part).round() as u64;
                        scenes[s] = (u, ((u as f64) * 1.15).round() as u64);
                    }
                    let share_user = ((users as f64) * 0.04).round() as u64;
                    let c = Counters {
                        read_user: users,
                        read_count: scenes.iter().map(|s| s.1).sum::<u64>().max(users),
                        ori_user: ((users as f64) * 0.03).round() as u64,
                        ori_count: ((users as f64) * 0.035).round() as u64,
                        share_user,
                        share_count: ((share_user as f64) * 1.3).round() as u64,
                        fav_user: ((users as f64) * 0.02).round() as u64,
                        fav_count: ((users as f64) * 0.021).round() as u64,
                    };
                    // Shares to Moments from the session, from Moments, from elsewhere.
                    let feed = [
                        (((share_user as f64) * 0.25).round() as u64, 0),
                        (((share_user as f64) * 0.08).round() as u64, 0),
                        (((share_user as f64) * 0.02).round() as u64, 0),
                    ]
                    .map(|(u, _)| (u, ((u as f64) * 1.1).round() as u64));
                    days_v.push(ArticleDay {
                        total: c,
                        scenes,
                        feed,
                    });
                }
                articles.push(Article {
                    msgid: format!("{msg_data_id}_{idx}"),
                    title: TITLES[g.rng.random_range(0..TITLES.len())],
                    send: day,
                    target: cumulate,
                    days: days_v,
                });
            }
            msg_data_id += 1;
        }

        // Article figures of this day, from every article sent in the last 7 days.
        let mut by_scene = [Counters::default(); 7];
        let mut all = Counters::default();
        let mut shares = [(0u64, 0u64); 3];
        for a in articles
            .iter()
            .filter(|a| a.send <= day && day < add_days(a.send, 7))
        {
            let k = datacube_api::date::days_between(a.send, day) as usize;
            let ArticleDay {
                total: c, scenes, ..
            } = &a.days[k];
            let score = c.read_user + c.ori_user + c.share_user + c.share_count + c.fav_count;
            if score >= 3 {
                let mut row = obj(
                    json!({"ref_date": d, "msgid": a.msgid, "title": a.title, "user_source": 0}),
                );
                c.json(&mut row);
                push(Endpoint::GetArticleSummary, Value::Object(row));
            }
            all.add(c);
            for (s, (u, n)) in scenes.iter().enumerate() {
                by_scene[s].read_user += u;
                by_scene[s].read_count += n;
                let part = SCENES[s].2;
                by_scene[s].share_user += ((c.share_user as f64) * part).round() as u64;
                by_scene[s].share_count += ((c.share_count as f64) * part).round() as u64;
            }
            shares[0].0 += ((c.share_user as f64) * 0.6).round() as u64;
            shares[0].1 += ((c.share_count as f64) * 0.6).round() as u64;
            shares[1].0 += ((c.share_user as f64) * 0.35).round() as u64;
            shares[1].1 += ((c.share_count as f64) * 0.35).round() as u64;
            shares[2].0 += ((c.share_user as f64) * 0.05).round() as u64;
            shares[2].1 += ((c.share_count as f64) * 0.05).round() as u64;
        }
        if all.read_user > 0 {
            let mut total = all;
            // Readers of several articles are one reader of the day.
            total.read_user = ((all.read_user as f64) * 0.92).round() as u64;
            total.read_user = total
                .read_user
                .max(by_scene.iter().map(|c| c.read_user).max().unwrap_or(0));
            for (s, c) in by_scene.iter().enumerate() {
                if c.read_user == 0 && c.share_user == 0 {
                    continue;
                }
                let mut row = obj(json!({"ref_date": d, "user_source": SCENES[s].0}));
                Counters {
                    ori_user: 0,
                    ori_count: 0,
                    fav_user: 0,
                    fav_count: 0,
                    ..*c
                }
                .json(&mut row);
                push(Endpoint::GetUserRead, Value::Object(row));
            }
            let mut row = obj(json!({"ref_date": d, "user_source": 99_999_999}));
            total.json(&mut row);
            push(Endpoint::GetUserRead, Value::Object(row));

            // The day's reads by hour: evenings after a send, the usual rhythm otherwise.
            let weights: Vec<f64> = HOURLY.to_vec();
            let wsum: f64 = weights.iter().sum();
            for (h, w) in weights.iter().enumerate() {
                let part = w / wsum;
                let scale = |n: u64| ((n as f64) * part).round() as u64;
                let mut hour_total = Counters::default();
                for (s, c) in by_scene.iter().enumerate() {
                    let hc = Counters {
                        read_user: scale(c.read_user),
                        read_count: scale(c.read_count),
                        share_user: scale(c.share_user),
                        share_count: scale(c.share_count),
                        ..Counters::default()
                    };
                    if hc.read_user == 0 && hc.share_user == 0 {
                        continue;
                    }
                    hour_total.add(&hc);
                    let mut row = obj(
                        json!({"ref_date": d, "ref_hour": h * 100, "user_source": SCENES[s].0}),
                    );
                    hc.json(&mut row);
                    push(Endpoint::GetUserReadHour, Value::Object(row));
                }
                if hour_total.read_user > 0 {
                    hour_total.ori_user = scale(total.ori_user);
                    hour_total.ori_count = scale(total.ori_count);
                    hour_total.fav_user = scale(total.fav_user);
                    hour_total.fav_count = scale(total.fav_count);
                    let mut row =
                        obj(json!({"ref_date": d, "ref_hour": h * 100, "user_source": 99_999_999}));
                    hour_total.json(&mut row);
                    push(Endpoint::GetUserReadHour, Value::Object(row));
                }
                for (k, scene) in [1u32, 2, 255].iter().enumerate() {
                    let (u, n) = (scale(shares[k].0), scale(shares[k].1));
                    if n > 0 {
                        push(
                            Endpoint::GetUserShareHour,
                            json!({"ref_date": d, "ref_hour": h * 100, "user_source": 0,
                                   "share_scene": scene, "share_count": n, "share_user": u.max(1)}),
                        );
                    }
                }
            }
        }
        for (k, scene) in [1u32, 2, 255].iter().enumerate() {
            if shares[k].1 > 0 {
                push(
                    Endpoint::GetUserShare,
                    json!({"ref_date": d, "user_source": 0, "share_scene": scene,
                           "share_count": shares[k].1, "share_user": shares[k].0.max(1)}),
                );
            }
        }
        day = add_days(day, 1);
        i += 1;
    }

    // getarticletotal: per send date, cumulative details up to 7 days or the last day.
    for a in &articles {
        let mut cum = Counters::default();
        let mut cum_scenes = [(0u64, 0u64); 7];
        let mut cum_feed = [(0u64, 0u64); 3];
        let mut details = Vec::new();
        for (
            k,
            ArticleDay {
                total: c,
                scenes,
                feed,
            },
        ) in a.days.iter().enumerate()
        {
            let stat = add_days(a.send, k as i64);
            if stat > last_day {
                break;
            }
            cum.add(c);
            for s in 0..7 {
                cum_scenes[s].0 += scenes[s].0;
                cum_scenes[s].1 += scenes[s].1;
            }
            for f in 0..3 {
                cum_feed[f].0 += feed[f].0;
                cum_feed[f].1 += feed[f].1;
            }
            let mut detail = obj(json!({"stat_date": format_date(stat), "target_user": a.target}));
            cum.json(&mut detail);
            for (s, (_, infix, _)) in SCENES.iter().enumerate() {
                detail.insert(
                    format!("int_page_from_{infix}_read_user"),
                    cum_scenes[s].0.into(),
                );
                detail.insert(
                    format!("int_page_from_{infix}_read_count"),
                    cum_scenes[s].1.into(),
                );
            }
            for (f, from) in ["session", "feed", "other"].iter().enumerate() {
                detail.insert(format!("feed_share_from_{from}_user"), cum_feed[f].0.into());
                detail.insert(format!("feed_share_from_{from}_cnt"), cum_feed[f].1.into());
            }
            details.push(Value::Object(detail));
        }
        out.entry(Endpoint::GetArticleTotal)
            .or_default()
            .push(json!({
                "ref_date": format_date(a.send), "msgid": a.msgid, "title": a.title,
                "user_source": 0, "details": details,
            }));
    }

    // Weeks (Monday labels) and months (1st labels) of messages: complete periods only.
    let mut weeks: BTreeMap<Date, Vec<&MsgDay>> = BTreeMap::new();
    let mut months: BTreeMap<Date, Vec<&MsgDay>> = BTreeMap::new();
    for md in &msg_days {
        weeks.entry(monday_of(md.date)).or_default().push(md);
        months.entry(md.date.first_of_month()).or_default().push(md);
    }
    let complete_weeks = weeks
        .into_iter()
        .filter(|(m, v)| v.len() == 7 && add_days(*m, 6) <= last_day);
    let complete_months = months
        .into_iter()
        .filter(|(m, v)| v.len() == usize::from(m.days_in_month() as u8));
    for (label, period_days, e_msg, e_dist) in complete_weeks
        .map(|(l, v)| {
            (
                l,
                v,
                Endpoint::GetUpstreamMsgWeek,
                Endpoint::GetUpstreamMsgDistWeek,
            )
        })
        .chain(complete_months.map(|(l, v)| {
            (
                l,
                v,
                Endpoint::GetUpstreamMsgMonth,
                Endpoint::GetUpstreamMsgDistMonth,
            )
        }))
    {
        let d = format_date(label);
        let mut senders = 0;
        for (t, (msg_type, _)) in MSG_TYPES.iter().enumerate() {
            let count: u64 = period_days.iter().map(|x| x.types[t].1).sum();
            let users_sum: u64 = period_days.iter().map(|x| x.types[t].0).sum();
            let users_max: u64 = period_days.iter().map(|x| x.types[t].0).max().unwrap_or(0);
            if count == 0 {
                continue;
            }
            let users = (((users_sum as f64) * 0.55).round() as u64).max(users_max);
            senders += users;
            out.entry(e_msg).or_default().push(json!({
                "ref_date": d, "user_source": 0, "msg_type": msg_type, "msg_user": users, "msg_count": count,
            }));
        }
        let senders = ((senders as f64) * 0.9).ceil() as u64;
        for (interval, share) in [(1, 0.55), (2, 0.25), (3, 0.20)] {
            let users = ((senders as f64) * share).round() as u64;
            if users > 0 {
                out.entry(e_dist).or_default().push(json!({
                    "ref_date": d, "user_source": 0, "count_interval": interval, "msg_user": users,
                }));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_is_deterministic_and_covers_every_endpoint() {
        let last = jiff::civil::date(2026, 11, 22);
        let a = generate(last, 60, 7);
        assert_eq!(a, generate(last, 60, 7));
        assert_ne!(a, generate(last, 60, 8));
        for e in Endpoint::ALL {
            let rows = a.get(&e).map_or(0, Vec::len);
            assert!(rows > 0, "{e} has no demo rows");
            for row in &a[&e] {
                datacube_api::row::canonicalize(e, row)
                    .unwrap_or_else(|err| panic!("{e}: {err}: {row}"));
            }
        }
    }

    #[test]
    fn demo_hours_add_up_to_days() {
        let last = jiff::civil::date(2026, 11, 22);
        let rows = generate(last, 3, 1);
        let sum = |e: Endpoint, field: &str| -> u64 {
            rows[&e]
                .iter()
                .filter(|r| r["ref_date"] == "2026-11-21")
                .map(|r| r[field].as_u64().unwrap())
                .sum()
        };
        assert_eq!(
            sum(Endpoint::GetInterfaceSummaryHour, "callback_count"),
            sum(Endpoint::GetInterfaceSummary, "callback_count")
        );
        assert_eq!(
            sum(Endpoint::GetUpstreamMsgHour, "msg_count"),
            sum(Endpoint::GetUpstreamMsg, "msg_count")
        );
    }
}
