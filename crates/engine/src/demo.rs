//! A deterministic, realistic stream of events for demos and tests: follower growth by channel
//! with churn, a mass send most evenings whose reads decay over a week, messages with a daily
//! and hourly rhythm, and replies with a realistic latency distribution and a few timeouts;
//! for the 2025 endpoints, reads over 30 days, likes, comments, tips and reading times.
//!
//! The same seed gives the same lines, with the same ids, so generating twice is idempotent.
//! The 2025 events come from a generator of their own (ids `demo-<seed>-p<n>`): the other
//! lines are those earlier versions wrote, so re-importing an older demo adds only them.

use datacube_api::date::{add_days, date_to_epoch_day, CHINA_OFFSET_SECONDS};
use jiff::civil::{Date, Weekday};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Relative activity per China-time hour.
const HOURLY: [f64; 24] = [
    0.3, 0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 1.0, 1.4, 1.5, 1.5, 1.6, 1.8, 1.5, 1.3, 1.3, 1.3, 1.4, 1.5,
    1.8, 2.0, 2.2, 1.6, 0.8,
];

/// Follow channels and their mean daily follows at the start.
const CHANNELS: [(u32, f64); 7] = [
    (0, 3.0),
    (1, 12.0),
    (17, 2.0),
    (30, 18.0),
    (57, 5.0),
    (100, 3.0),
    (161, 1.0),
];

const MSG_TYPES: [(&str, f64); 7] = [
    ("text", 0.68),
    ("image", 0.14),
    ("voice", 0.08),
    ("video", 0.02),
    ("shortvideo", 0.02),
    ("link", 0.04),
    ("location", 0.02),
];

const READ_SCENES: [(&str, f64); 7] = [
    ("session", 0.55),
    ("friends", 0.18),
    ("feed", 0.12),
    ("history", 0.08),
    ("other", 0.03),
    ("kanyikan", 0.02),
    ("souyisou", 0.02),
];

/// Share of an article's first-week readers on each day after the send.
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

fn pick<'a, T>(rng: &mut StdRng, weighted: &'a [(T, f64)]) -> &'a T {
    let total: f64 = weighted.iter().map(|w| w.1).sum();
    let mut x = rng.random::<f64>() * total;
    for (item, w) in weighted {
        if x < *w {
            return item;
        }
        x -= w;
    }
    &weighted[weighted.len() - 1].0
}

/// A noisy non-negative count around `mean`.
fn count(rng: &mut StdRng, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    let normal = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    (mean + normal * mean.sqrt()).round().max(0.0) as u64
}

/// A Unix time on `day` in China time, at an hour drawn from the daily rhythm.
fn time_on(rng: &mut StdRng, day: Date) -> i64 {
    let hour = *pick(
        rng,
        &HOURLY
            .iter()
            .enumerate()
            .map(|(h, w)| (h as i64, *w))
            .collect::<Vec<_>>(),
    );
    date_to_epoch_day(day) * 86_400 - CHINA_OFFSET_SECONDS + hour * 3600 + rng.random_range(0..3600)
}

fn openid(n: u64) -> String {
    format!("oDemo{n:08}")
}

fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(8)))
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .unwrap_or_default()
}

/// Adds an event to `out`, stamped with the account, the next id of its series
/// (`demo-<seed>-<series><n>`) and its time.
fn stamper<'a>(
    appid: &'a str,
    seed: u64,
    series: &'static str,
) -> impl FnMut(&mut Vec<(i64, String)>, i64, serde_json::Value) + 'a {
    let mut n = 0u64;
    move |out, time, mut v| {
        n += 1;
        v["appid"] = json!(appid);
        v["id"] = json!(format!("demo-{seed}-{series}{n}"));
        v["time"] = json!(rfc3339(time));
        out.push((time, v.to_string()));
    }
}

/// `days` days of activity for `appid`, ending on `last`, as NDJSON lines in time order.
pub fn events(appid: &str, last: Date, days: u32, seed: u64) -> Vec<String> {
    let mut demo = Demo {
        rng: StdRng::seed_from_u64(seed),
        extra: StdRng::seed_from_u64(seed ^ 0x2025_1101),
        push: stamper(appid, seed, ""),
        push_extra: stamper(appid, seed, "p"),
        out: Vec::new(),
        followers: Vec::new(),
        gone: Vec::new(),
        next_openid: 0,
        msg_data_id: 2_247_483_649,
        last,
    };
    let first = add_days(last, -(i64::from(days.max(1)) - 1));
    let mut day = first;
    let mut i = 0u32;
    while day <= last {
        let growth = 1.0 + f64::from(i) / 365.0;
        let weekend = matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday);
        let factor = if weekend { 0.8 } else { 1.0 };
        demo.follows(day, growth, factor);
        demo.messages(day, growth, factor);
        // A mass send most evenings; its readers over the following week.
        if demo.rng.random_bool(0.85) && !demo.followers.is_empty() {
            demo.mass_send(day);
            demo.msg_data_id += 1;
        }
        day = add_days(day, 1);
        i += 1;
    }
    let mut out = demo.out;
    out.sort_by_key(|(t, _)| *t);
    out.into_iter().map(|(_, line)| line).collect()
}

/// The generator's state between days: its two random streams (the 2025 events draw from
/// `extra`), the lines so far, who follows and who left.
struct Demo<S> {
    rng: StdRng,
    extra: StdRng,
    /// Stamps the lines of earlier versions (ids `demo-<seed>-<n>`).
    push: S,
    /// Stamps the 2025 events (ids `demo-<seed>-p<n>`).
    push_extra: S,
    out: Vec<(i64, String)>,
    followers: Vec<u64>,
    gone: Vec<u64>,
    next_openid: u64,
    msg_data_id: u64,
    last: Date,
}

impl<S: FnMut(&mut Vec<(i64, String)>, i64, serde_json::Value)> Demo<S> {
    /// A day's follows by channel, some of them people coming back, and its unfollows from
    /// current followers.
    fn follows(&mut self, day: Date, growth: f64, factor: f64) {
        let rng = &mut self.rng;
        for (source, mean) in CHANNELS {
            for _ in 0..count(rng, mean * growth * factor) {
                let who = if !self.gone.is_empty() && rng.random_bool(0.05) {
                    self.gone.swap_remove(rng.random_range(0..self.gone.len()))
                } else {
                    self.next_openid += 1;
                    self.next_openid
                };
                self.followers.push(who);
                let t = time_on(rng, day);
                (self.push)(
                    &mut self.out,
                    t,
                    json!({"type": "follow", "openid": openid(who), "source": source}),
                );
            }
        }
        for _ in 0..count(rng, 9.0 * growth * factor) {
            if self.followers.is_empty() {
                break;
            }
            let who = self
                .followers
                .swap_remove(rng.random_range(0..self.followers.len()));
            self.gone.push(who);
            let t = time_on(rng, day);
            (self.push)(
                &mut self.out,
                t,
                json!({"type": "unfollow", "openid": openid(who)}),
            );
        }
    }

    /// A day's messages, each answered by the account's server.
    fn messages(&mut self, day: Date, growth: f64, factor: f64) {
        if self.followers.is_empty() {
            return;
        }
        let (rng, followers) = (&mut self.rng, &self.followers);
        let chatty = followers.len().min(20);
        for _ in 0..count(rng, 40.0 * growth * factor) {
            // A fifth of the messages come from a few chatty followers.
            let who = if rng.random_bool(0.2) {
                followers[rng.random_range(0..chatty)]
            } else {
                followers[rng.random_range(0..followers.len())]
            };
            let t = time_on(rng, day);
            let msg_type = *pick(rng, &MSG_TYPES);
            (self.push)(
                &mut self.out,
                t,
                json!({"type": "message", "openid": openid(who), "msg_type": msg_type}),
            );
            let timeout = rng.random_bool(0.004);
            let cost = if timeout {
                5000 + rng.random_range(0..60)
            } else {
                // Mostly fast, with a long tail.
                let base: f64 = rng.random_range(0.0..1.0);
                (80.0 + 250.0 * base + 1500.0 * base.powi(12)) as u64
            };
            (self.push)(
                &mut self.out,
                t + 1,
                json!({"type": "reply", "cost_ms": cost, "ok": !timeout}),
            );
        }
    }

    /// The evening's mass send on `day`: its articles, their readers over the following week
    /// and the long tail of the 2025 endpoints.
    fn mass_send(&mut self, day: Date) {
        let (rng, extra, followers) = (&mut self.rng, &mut self.extra, &self.followers);
        let (push, push_extra, out) = (&mut self.push, &mut self.push_extra, &mut self.out);
        let (last, msg_data_id) = (self.last, self.msg_data_id);
        let send = date_to_epoch_day(day) * 86_400 - CHINA_OFFSET_SECONDS + 20 * 3600;
        let articles = rng.random_range(1..=3u32);
        for idx in 1..=articles {
            let msgid = format!("{msg_data_id}_{idx}");
            let title = TITLES[rng.random_range(0..TITLES.len())];
            // Most sends notify the followers (publish_type 0), some are published only.
            let publish_type = u8::from(extra.random_bool(0.15));
            let url =
                format!("https://mp.weixin.qq.com/s?__biz=MzDemo&mid={msg_data_id}&idx={idx}");
            push(
                out,
                send,
                json!({"type": "publish", "msgid": msgid, "title": title,
                "publish_type": publish_type, "content_url": url}),
            );
            let reach = followers.len() as f64 * 0.06 / f64::from(idx);
            for (k, share) in DECAY.iter().enumerate() {
                let read_day = add_days(day, k as i64);
                if read_day > last {
                    break;
                }
                for _ in 0..count(rng, reach * share) {
                    let who = openid(followers[rng.random_range(0..followers.len())]);
                    let t = if k == 0 {
                        send + rng.random_range(60..4 * 3600 - 1)
                    } else {
                        time_on(rng, read_day)
                    };
                    let scene = *pick(rng, &READ_SCENES);
                    read_in_first_week(rng, push, out, (t, &msgid, &who), scene);
                    reactions(extra, push_extra, out, (t, &msgid, &who));
                }
            }
            let tail = Send {
                day,
                last,
                reach,
                msgid: &msgid,
            };
            long_tail(extra, push_extra, out, &tail, followers);
        }
    }
}

/// A reader of a send's first week: the read, sometimes again, sometimes the original page, a
/// share (to friends, Moments or elsewhere, from where it was read), a favourite.
fn read_in_first_week(
    rng: &mut StdRng,
    push: &mut impl FnMut(&mut Vec<(i64, String)>, i64, serde_json::Value),
    out: &mut Vec<(i64, String)>,
    (t, msgid, who): (i64, &str, &str),
    scene: &str,
) {
    let mut read = |out: &mut Vec<(i64, String)>, t: i64, page: &str| {
        let read =
            json!({"type": "read", "msgid": msgid, "openid": who, "page": page, "scene": scene});
        push(out, t, read);
    };
    read(out, t, "int");
    if rng.random_bool(0.15) {
        read(out, t + 5, "int");
    }
    if rng.random_bool(0.03) {
        read(out, t + 60, "ori");
    }
    if rng.random_bool(0.05) {
        let to = *pick(rng, &[("friends", 0.6), ("feed", 0.35), ("other", 0.05)]);
        let from = match scene {
            "session" => "session",
            "feed" => "feed",
            _ => "other",
        };
        push(
            out,
            t + 90,
            json!({"type": "share", "msgid": msgid, "openid": who,
            "scene": to, "from": from}),
        );
    }
    if rng.random_bool(0.02) {
        push(
            out,
            t + 120,
            json!({"type": "favorite", "msgid": msgid, "openid": who}),
        );
    }
}

/// One article of a send, for the readers it brings.
struct Send<'a> {
    day: Date,
    /// The last day generated.
    last: Date,
    /// Readers on the send day.
    reach: f64,
    msgid: &'a str,
}

/// The long tail the 2025 endpoints follow for 30 days: recommendation and search bring
/// readers after the first week.
fn long_tail(
    extra: &mut StdRng,
    push_extra: &mut impl FnMut(&mut Vec<(i64, String)>, i64, serde_json::Value),
    out: &mut Vec<(i64, String)>,
    send: &Send,
    followers: &[u64],
) {
    for k in DECAY.len() as i64..30 {
        let read_day = add_days(send.day, k);
        if read_day > send.last {
            break;
        }
        for _ in 0..count(extra, send.reach * 0.004) {
            let who = openid(followers[extra.random_range(0..followers.len())]);
            let t = time_on(extra, read_day);
            let scene = *pick(
                extra,
                &[("recommend", 0.5), ("souyisou", 0.3), ("home", 0.2)],
            );
            push_extra(
                out,
                t,
                json!({"type": "read", "msgid": send.msgid, "openid": who,
                "page": "int", "scene": scene}),
            );
            reactions(extra, push_extra, out, (t, send.msgid, &who));
        }
    }
}

/// What a reader does besides reading, for the 2025 endpoints: leaves the page after a while
/// (most readers), likes, comments, tips.
fn reactions(
    rng: &mut StdRng,
    push: &mut impl FnMut(&mut Vec<(i64, String)>, i64, serde_json::Value),
    out: &mut Vec<(i64, String)>,
    (t, msgid, who): (i64, &str, &str),
) {
    if rng.random_bool(0.7) {
        // Half read to the end; the others leave anywhere.
        let progress: u64 = if rng.random_bool(0.5) {
            100
        } else {
            rng.random_range(0..100)
        };
        let active_ms = 4_000 + progress * rng.random_range(300..2_400);
        push(
            out,
            t + 30 + (active_ms / 1000) as i64,
            json!({"type": "leave", "msgid": msgid, "openid": who,
            "active_ms": active_ms, "progress": progress}),
        );
    }
    for (p, kind) in [(0.03, "zaikan"), (0.04, "like"), (0.01, "comment")] {
        if rng.random_bool(p) {
            push(
                out,
                t + 40,
                json!({"type": kind, "msgid": msgid, "openid": who}),
            );
        }
    }
    if rng.random_bool(0.003) {
        let money = [100, 200, 500, 1000, 5000][rng.random_range(0..5)];
        push(
            out,
            t + 50,
            json!({"type": "praise", "msgid": msgid, "openid": who, "money": money}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datacube_api::Endpoint;

    #[test]
    fn the_demo_is_deterministic_valid_and_exercises_every_endpoint() {
        let last = jiff::civil::date(2026, 11, 22);
        let a = events("wxdemo", last, 60, 7);
        assert_eq!(a, events("wxdemo", last, 60, 7));
        assert_ne!(a, events("wxdemo", last, 60, 8));
        let parsed: Vec<_> = a.iter().map(|l| crate::parse_line(l).unwrap()).collect();
        let rows = crate::compute(&parsed, add_days(last, -59), last);
        for e in Endpoint::ALL {
            assert!(
                rows.get(&e).is_some_and(|r| !r.is_empty()),
                "{e} has no demo rows"
            );
        }
    }
}
