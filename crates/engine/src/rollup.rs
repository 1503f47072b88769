//! WeChat's statistics, computed exactly from one account's events.
//!
//! Definitions (reference §3, §7; decisions in docs/compatibility.md):
//! - every `*_user` field counts distinct openids over the row's period and key; every
//!   `*_count` (and `_cnt`) field counts events;
//! - days and hours are China time; weeks are labelled with their Monday, months with their 1st;
//! - followers: a follow counts once however often the openid follows; an unfollow is
//!   attributed to the channel of the openid's latest follow (0 when unknown);
//! - messages: location messages have no `msg_type` and are not counted anywhere;
//! - `count_interval`: messages per user in the period, 1–5 → 1, 6–10 → 2, more → 3;
//! - articles: getarticlesummary lists articles read on a day within 7 days of their send
//!   (send day included) whose score — int readers + ori readers + sharers + shares +
//!   favourites — is at least 3; getarticletotal lists articles sent on a day, with one
//!   cumulative detail per day from the send day to 6 days later or the last computed day;
//!   `target_user` is the follower count at the moment of the send;
//! - the 2025 endpoints (docs/compatibility.md): getarticleread lists every article with int
//!   page readers on a day, getarticleshare every article with sharers — the same readers and
//!   sharers getarticlesummary counts; `全部` is the distinct readers of all scenes, each
//!   scene its own distinct readers; getbizsummary is the account's day, listed when anything
//!   happened; getarticletotaldetail lists the articles published on a day, each with one
//!   cumulative snapshot a day for 30 days.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use datacube_api::date::{
    add_days, china_date_hour, days_between, monday_of, CHINA_OFFSET_SECONDS as CHINA_OFFSET,
};
use datacube_api::row::{Row, RowBuilder, Val};
use datacube_api::Endpoint;
use jiff::civil::Date;

use crate::event::{Event, Kind, Page, ReadScene, ShareFrom, ShareScene};
use crate::published;

/// getuserread's all-channels row.
pub const ALL_SCENES: u32 = 99_999_999;

/// Distinct users and events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) users: u64,
    pub(crate) count: u64,
}

/// The tallies of the current period (an hour, a day, a week, a month) in numbered slots.
/// Events come in time order, so the events of a period are consecutive: each period is
/// tallied in a small set and handed over once, when the next one starts.
struct Period<L> {
    label: Option<L>,
    /// (slot << 32) | user, for the users counted in this period.
    seen: HashSet<u64>,
    slots: Vec<Counts>,
}

impl<L: Copy + PartialEq> Period<L> {
    fn new(slots: usize) -> Self {
        Period {
            label: None,
            seen: HashSet::default(),
            slots: vec![Counts::default(); slots],
        }
    }

    /// Makes `label` the current period, handing the finished one to `done`.
    fn enter(&mut self, label: L, done: &mut impl FnMut(L, &[Counts])) {
        if self.label != Some(label) {
            self.finish(done);
            self.label = Some(label);
        }
    }

    /// Hands the current period, if any, to `done`.
    fn finish(&mut self, done: &mut impl FnMut(L, &[Counts])) {
        if let Some(label) = self.label.take() {
            done(label, &self.slots);
            self.seen.clear();
            self.slots.fill(Counts::default());
        }
    }

    fn add(&mut self, slot: usize, user: u32) {
        let c = &mut self.slots[slot];
        c.count += 1;
        if self.seen.insert(((slot as u64) << 32) | u64::from(user)) {
            c.users += 1;
        }
    }
}

/// Article counters, in the order of WeChat's fields: int page, original page, shares,
/// favourites.
const INT: usize = 0;
const ORI: usize = 1;
const SHARE: usize = 2;
const FAV: usize = 3;
type ArticleCounts = [Counts; 4];

/// getuserread's keys: the user_source codes of the scenes, then the all-channels row.
const READ_KEYS: [u32; 8] = [0, 1, 2, 4, 5, 6, 7, ALL_SCENES];
const READ_ALL: usize = 7;

fn read_key(scene: ReadScene) -> usize {
    match scene.user_source() {
        0 => 0,
        1 => 1,
        2 => 2,
        4 => 3,
        5 => 4,
        6 => 5,
        _ => 6,
    }
}

/// getupstreammsg's msg_type codes (location has none).
pub(crate) const MSG_CODES: [u32; 5] = [1, 2, 3, 4, 6];

pub(crate) fn msg_slot(code: u32) -> usize {
    match code {
        1 => 0,
        2 => 1,
        3 => 2,
        4 => 3,
        _ => 4,
    }
}

/// getusershare's share_scene codes.
const SHARE_CODES: [u32; 3] = [1, 2, 255];

fn share_slot(scene: ShareScene) -> usize {
    match scene {
        ShareScene::Friends => 0,
        ShareScene::Feed => 1,
        ShareScene::Other => 2,
    }
}

fn write_article(row: &mut RowBuilder, c: &ArticleCounts) {
    row.field("int_page_read_user", Val::Int(c[INT].users))
        .field("int_page_read_count", Val::Int(c[INT].count))
        .field("ori_page_read_user", Val::Int(c[ORI].users))
        .field("ori_page_read_count", Val::Int(c[ORI].count))
        .field("share_user", Val::Int(c[SHARE].users))
        .field("share_count", Val::Int(c[SHARE].count))
        .field("add_to_fav_user", Val::Int(c[FAV].users))
        .field("add_to_fav_count", Val::Int(c[FAV].count));
}

fn article_counts(slots: &[Counts]) -> ArticleCounts {
    [slots[0], slots[1], slots[2], slots[3]]
}

fn is_empty(c: &ArticleCounts) -> bool {
    c.iter().all(|c| c.count == 0)
}

/// Messages per user in the current period, for getupstreammsgdist.
struct PerUser<L> {
    label: Option<L>,
    n: HashMap<u32, u64>,
}

impl<L: Copy + PartialEq> PerUser<L> {
    fn new() -> Self {
        PerUser {
            label: None,
            n: HashMap::default(),
        }
    }
    fn enter(&mut self, label: L, out: &mut Vec<(L, u64, u64)>) {
        if self.label != Some(label) {
            self.finish(out);
            self.label = Some(label);
        }
    }
    /// Hands over the finished period as (label, count_interval, users) rows.
    fn finish(&mut self, out: &mut Vec<(L, u64, u64)>) {
        if let Some(label) = self.label.take() {
            let mut buckets = [0u64; 3];
            for n in self.n.values() {
                buckets[count_interval(*n) as usize - 1] += 1;
            }
            for (i, users) in buckets.iter().enumerate() {
                if *users > 0 {
                    out.push((label, i as u64 + 1, *users));
                }
            }
            self.n.clear();
        }
    }
}

/// Openids that followed and that unfollowed, in one day and channel.
type FollowSets = (HashSet<u32>, HashSet<u32>);

/// One period's passive replies.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interface {
    pub(crate) callbacks: u64,
    pub(crate) fails: u64,
    pub(crate) total: u64,
    pub(crate) max: u64,
}

impl Interface {
    /// Sums saturate at the largest figure a row holds (an import would refuse more), never
    /// wrap.
    pub(crate) fn add(&mut self, cost_ms: u64, ok: bool) {
        let cap = crate::event::MAX_STATISTIC;
        self.callbacks = self.callbacks.saturating_add(1).min(cap);
        self.fails = self.fails.saturating_add(u64::from(!ok)).min(cap);
        self.total = self.total.saturating_add(cost_ms).min(cap);
        self.max = self.max.max(cost_ms).min(cap);
    }
}

/// The message endpoints, in the order of the day, hour, week and month tallies.
pub(crate) const MSG_ENDPOINTS: [Endpoint; 4] = [
    Endpoint::GetUpstreamMsg,
    Endpoint::GetUpstreamMsgHour,
    Endpoint::GetUpstreamMsgWeek,
    Endpoint::GetUpstreamMsgMonth,
];
/// The distribution endpoints: day, week, month.
pub(crate) const DIST_ENDPOINTS: [Endpoint; 3] = [
    Endpoint::GetUpstreamMsgDist,
    Endpoint::GetUpstreamMsgDistWeek,
    Endpoint::GetUpstreamMsgDistMonth,
];

fn start_row(e: Endpoint, (date, hour): Label) -> RowBuilder {
    let mut b = RowBuilder::new(e);
    b.field("ref_date", Val::Date(date));
    if e.period() == datacube_api::endpoint::Period::Hour {
        b.field("ref_hour", Val::Hour(hour));
    }
    b
}

/// A getupstreammsg* row.
pub(crate) fn msg_row(e: Endpoint, label: Label, code: u32, c: Counts) -> Row {
    let mut b = start_row(e, label);
    b.field("user_source", Val::Int(0))
        .field("msg_type", Val::Int(code.into()))
        .field("msg_user", Val::Int(c.users))
        .field("msg_count", Val::Int(c.count));
    b.finish()
}

/// A getupstreammsgdist* row.
pub(crate) fn dist_row(e: Endpoint, date: Date, interval: u64, users: u64) -> Row {
    let mut b = start_row(e, (date, 0));
    b.field("user_source", Val::Int(0))
        .field("count_interval", Val::Int(interval))
        .field("msg_user", Val::Int(users));
    b.finish()
}

/// A getinterfacesummary[hour] row.
pub(crate) fn iface_row(e: Endpoint, label: Label, it: &Interface) -> Row {
    let mut b = start_row(e, label);
    b.field("callback_count", Val::Int(it.callbacks))
        .field("fail_count", Val::Int(it.fails))
        .field("total_time_cost", Val::Int(it.total))
        .field("max_time_cost", Val::Int(it.max));
    b.finish()
}

/// The count_interval of a user's messages in a period: 1–5 → 1, 6–10 → 2, more → 3.
pub(crate) fn count_interval(n: u64) -> u64 {
    match n {
        0..=5 => 1,
        6..=10 => 2,
        _ => 3,
    }
}

/// Computes every endpoint's rows for days `first..=last` from all of one account's events
/// (events outside the window still count where they matter: followers, sends).
///
/// Rows come back in WeChat's order for each endpoint. Week and month rows are produced for
/// every period that overlaps the window (serving shows only completed ones).
pub fn compute(events: &[Event], first: Date, last: Date) -> BTreeMap<Endpoint, Vec<Row>> {
    compute_some(events, first, last, &Endpoint::ALL)
}

/// [`compute`], building only the rows of the endpoints in `wanted`.
pub fn compute_some(
    events: &[Event],
    first: Date,
    last: Date,
    wanted: &[Endpoint],
) -> BTreeMap<Endpoint, Vec<Row>> {
    compute_parts(&[events], first, last, wanted)
}

/// [`compute_some`] over the events of several slices taken together.
pub fn compute_parts(
    parts: &[&[Event]],
    first: Date,
    last: Date,
    wanted: &[Endpoint],
) -> BTreeMap<Endpoint, Vec<Row>> {
    let want = |e: Endpoint| wanted.contains(&e);
    // Time order; events of the same second in the order given.
    let mut sorted: Vec<(i64, u32, u32)> = parts
        .iter()
        .enumerate()
        .flat_map(|(p, events)| {
            events
                .iter()
                .enumerate()
                .map(move |(i, e)| (e.time, p as u32, i as u32))
        })
        .collect();
    sorted.sort_unstable();
    let in_window = |d: Date| d >= first && d <= last;
    let week_range = (monday_of(first), last);
    let month_range = (first.first_of_month(), last);
    let in_weeks = |d: Date| d >= week_range.0 && d <= week_range.1;
    let in_months = |d: Date| d >= month_range.0 && d <= month_range.1;

    // Which tallies are kept: only those of the wanted endpoints.
    let w_msg_day = want(Endpoint::GetUpstreamMsg);
    let w_msg_hour = want(Endpoint::GetUpstreamMsgHour);
    let w_msg_week = want(Endpoint::GetUpstreamMsgWeek);
    let w_msg_month = want(Endpoint::GetUpstreamMsgMonth);
    let w_dist_day = want(Endpoint::GetUpstreamMsgDist);
    let w_dist_week = want(Endpoint::GetUpstreamMsgDistWeek);
    let w_dist_month = want(Endpoint::GetUpstreamMsgDistMonth);
    let w_iface_day = want(Endpoint::GetInterfaceSummary);
    let w_iface_hour = want(Endpoint::GetInterfaceSummaryHour);
    let w_read_day = want(Endpoint::GetUserRead);
    let w_read_hour = want(Endpoint::GetUserReadHour);
    let w_share_day = want(Endpoint::GetUserShare);
    let w_share_hour = want(Endpoint::GetUserShareHour);
    let w_day_article = want(Endpoint::GetArticleSummary);
    let w_total = want(Endpoint::GetArticleTotal);
    let w_aread = want(Endpoint::GetArticleRead);
    let w_ashare = want(Endpoint::GetArticleShare);
    let w_biz = want(Endpoint::GetBizSummary);
    let w_tdetail = want(Endpoint::GetArticleTotalDetail);
    let w_messages = w_msg_day
        || w_msg_hour
        || w_msg_week
        || w_msg_month
        || w_dist_day
        || w_dist_week
        || w_dist_month;
    let w_articles = w_read_day
        || w_read_hour
        || w_share_day
        || w_share_hour
        || w_day_article
        || w_total
        || w_aread
        || w_ashare
        || w_biz
        || w_tdetail;
    let w_per_article = w_total || w_tdetail;

    // Openids, interned: every tally below holds numbers.
    let mut interned: HashMap<&str, u32> = HashMap::default();
    // Followers.
    let mut state: HashMap<u32, (bool, u32)> = HashMap::default();
    let mut followers: i64 = 0;
    let mut followers_at_end: BTreeMap<Date, i64> = BTreeMap::new();
    let mut summary: BTreeMap<(Date, u32), FollowSets> = BTreeMap::new();
    // Messages: (label, code, counts) rows of finished periods.
    let mut msg_rows: [Vec<(Label, u32, Counts)>; 4] = Default::default();
    let mut msg_periods: [Period<Label>; 4] = [
        Period::new(MSG_CODES.len()),
        Period::new(MSG_CODES.len()),
        Period::new(MSG_CODES.len()),
        Period::new(MSG_CODES.len()),
    ];
    let mut dist_rows: [Vec<(Date, u64, u64)>; 3] = Default::default();
    let mut dist: [PerUser<Date>; 3] = [PerUser::new(), PerUser::new(), PerUser::new()];
    // Replies.
    let mut iface_day: HashMap<Date, Interface> = HashMap::default();
    let mut iface_hour: HashMap<(Date, u8), Interface> = HashMap::default();
    // Articles.
    struct Send<'a> {
        date: Date,
        title: &'a str,
        target: i64,
        publish_type: u8,
        url: Option<&'a str>,
    }
    let mut sends: HashMap<&str, Send> = HashMap::default();
    let mut article_events: HashMap<&str, Vec<(Date, &Kind, u32)>> = HashMap::default();
    // Reads: 8 keys × 4 counters; shares: 3 scenes.
    let mut read_rows: [Vec<(Label, u32, ArticleCounts)>; 2] = Default::default();
    let mut read_periods: [Period<Label>; 2] = [
        Period::new(READ_KEYS.len() * 4),
        Period::new(READ_KEYS.len() * 4),
    ];
    let mut share_rows: [Vec<(Label, u32, Counts)>; 2] = Default::default();
    let mut share_periods: [Period<Label>; 2] = [
        Period::new(SHARE_CODES.len()),
        Period::new(SHARE_CODES.len()),
    ];
    // Per article and day: the day's articles, each with 4 counters.
    let mut day_article_rows: Vec<(Date, &str, ArticleCounts)> = Vec::new();
    let mut day_articles: Vec<&str> = Vec::new();
    let mut day_article_index: HashMap<&str, usize> = HashMap::default();
    let mut day_article_period: Period<Date> = Period::new(0);
    // The 2025 endpoints: per article and day, and per day.
    let mut published_days = published::Days::default();
    // Users who read (int page) an article today, and which: a follow after it is a
    // `read_subscribe_user` of those articles.
    let mut read_today: HashMap<u32, Vec<&str>> = HashMap::default();

    // Events come in time order: the date (and its week and month) changes rarely.
    let mut day_start = i64::MIN;
    let mut date = Date::MIN;
    let (mut week, mut month) = (date, date);
    for &(time, p, i) in &sorted {
        let event = &parts[p as usize][i as usize];
        if time < day_start || time >= day_start + 86_400 {
            date = china_date_hour(time).0;
            day_start = time - (time + CHINA_OFFSET).rem_euclid(86_400);
            week = monday_of(date);
            month = date.first_of_month();
            read_today.clear();
        }
        let hour = ((time - day_start) / 3600) as u8;
        let openid = match &event.kind {
            Kind::Follow { openid, .. } | Kind::Unfollow { openid } => openid,
            Kind::Message { openid, .. } if w_messages => openid,
            Kind::Read { openid, .. }
            | Kind::Share { openid, .. }
            | Kind::Favorite { openid, .. }
            | Kind::Like { openid, .. }
            | Kind::Comment { openid, .. }
            | Kind::Praise { openid, .. }
            | Kind::Leave { openid, .. }
                if w_articles =>
            {
                openid
            }
            Kind::Reply { .. } | Kind::Publish { .. } | Kind::Published { .. } => "",
            // A class whose endpoints are not wanted.
            _ => continue,
        };
        let user = if openid.is_empty() {
            0
        } else {
            let next = interned.len() as u32;
            *interned.entry(openid).or_insert(next)
        };
        if w_per_article {
            if let Some(msgid) = event.kind.article() {
                article_events
                    .entry(msgid)
                    .or_default()
                    .push((date, &event.kind, user));
                if w_tdetail {
                    if let Kind::Read {
                        page: Page::Int, ..
                    } = &event.kind
                    {
                        let read = read_today.entry(user).or_default();
                        if !read.contains(&msgid) {
                            read.push(msgid);
                        }
                    }
                }
            }
        }
        if w_aread || w_ashare || w_biz {
            published_days.absorb(date, &event.kind, user, w_aread || w_ashare);
        }
        match &event.kind {
            Kind::Follow { source, .. } => {
                let entry = state.entry(user).or_insert((false, *source));
                if !entry.0 {
                    followers += 1;
                }
                *entry = (true, *source);
                summary.entry((date, *source)).or_default().0.insert(user);
                followers_at_end.insert(date, followers);
                // Followed after reading: a mark in each article read today.
                if let Some(read) = read_today.get(&user) {
                    for msgid in read {
                        article_events
                            .entry(msgid)
                            .or_default()
                            .push((date, &event.kind, user));
                    }
                }
            }
            Kind::Unfollow { .. } => {
                let source = state.get(&user).map_or(0, |s| s.1);
                if let Some(entry) = state.get_mut(&user) {
                    if entry.0 {
                        followers -= 1;
                        entry.0 = false;
                    }
                }
                summary.entry((date, source)).or_default().1.insert(user);
                followers_at_end.insert(date, followers);
            }
            Kind::Message { msg_type, .. } => {
                let Some(code) = msg_type.wechat_code() else {
                    continue;
                };
                let slot = msg_slot(code);
                for (k, on, label) in [
                    (0, w_msg_day, (date, 0)),
                    (1, w_msg_hour, (date, hour)),
                    (2, w_msg_week, (week, 0)),
                    (3, w_msg_month, (month, 0)),
                ] {
                    if on {
                        msg_periods[k].enter(label, &mut by_code(&mut msg_rows[k], &MSG_CODES));
                        msg_periods[k].add(slot, user);
                    }
                }
                for (k, on, label) in [
                    (0, w_dist_day, date),
                    (1, w_dist_week, week),
                    (2, w_dist_month, month),
                ] {
                    if on {
                        dist[k].enter(label, &mut dist_rows[k]);
                        *dist[k].n.entry(user).or_default() += 1;
                    }
                }
            }
            Kind::Reply { cost_ms, ok } => {
                if w_iface_day {
                    iface_day.entry(date).or_default().add(*cost_ms, *ok);
                }
                if w_iface_hour {
                    iface_hour
                        .entry((date, hour))
                        .or_default()
                        .add(*cost_ms, *ok);
                }
            }
            Kind::Publish { .. } | Kind::Published { .. } => {
                let (msgid, title, publish_type, url) =
                    event.kind.publish().expect("a publish event");
                sends.entry(msgid).or_insert_with(|| {
                    published_days.sent(date);
                    Send {
                        date,
                        title,
                        target: followers,
                        publish_type,
                        url,
                    }
                });
            }
            // Only the 2025 endpoints count these (above).
            Kind::Like { .. } | Kind::Comment { .. } | Kind::Praise { .. } | Kind::Leave { .. } => {
            }
            Kind::Read { msgid, .. } | Kind::Share { msgid, .. } | Kind::Favorite { msgid, .. } => {
                // Slots of the all-articles tallies: key × 4 + counter. The original page
                // and favourites have only the all-channels figure.
                let (counter, scene_key) = match &event.kind {
                    Kind::Read {
                        page: Page::Int,
                        scene,
                        ..
                    } => (INT, Some(read_key(*scene))),
                    Kind::Read { .. } => (ORI, None),
                    Kind::Share { from, .. } => (SHARE, Some(read_key(from.read_scene()))),
                    _ => (FAV, None),
                };
                for (k, on, label) in [(0, w_read_day, (date, 0)), (1, w_read_hour, (date, hour))] {
                    if on {
                        read_periods[k].enter(label, &mut by_read_key(&mut read_rows[k]));
                        if let Some(key) = scene_key {
                            read_periods[k].add(key * 4 + counter, user);
                        }
                        read_periods[k].add(READ_ALL * 4 + counter, user);
                    }
                }
                if let Kind::Share { scene, .. } = &event.kind {
                    for (k, on, label) in
                        [(0, w_share_day, (date, 0)), (1, w_share_hour, (date, hour))]
                    {
                        if on {
                            share_periods[k]
                                .enter(label, &mut by_code(&mut share_rows[k], &SHARE_CODES));
                            share_periods[k].add(share_slot(*scene), user);
                        }
                    }
                }
                if w_day_article {
                    if day_article_period.label != Some(date) {
                        flush_day_articles(
                            &mut day_article_period,
                            &mut day_articles,
                            &mut day_article_index,
                            &mut day_article_rows,
                        );
                        day_article_period.label = Some(date);
                    }
                    let next = day_articles.len();
                    let a = *day_article_index.entry(msgid).or_insert(next);
                    if a == next {
                        day_articles.push(msgid);
                        day_article_period
                            .slots
                            .extend_from_slice(&[Counts::default(); 4]);
                    }
                    day_article_period.add(a * 4 + counter, user);
                }
            }
        }
    }
    // The last periods.
    for (period, rows) in msg_periods.iter_mut().zip(&mut msg_rows) {
        period.finish(&mut by_code(rows, &MSG_CODES));
    }
    for (d, rows) in dist.iter_mut().zip(&mut dist_rows) {
        d.finish(rows);
    }
    for (period, rows) in read_periods.iter_mut().zip(&mut read_rows) {
        period.finish(&mut by_read_key(rows));
    }
    for (period, rows) in share_periods.iter_mut().zip(&mut share_rows) {
        period.finish(&mut by_code(rows, &SHARE_CODES));
    }
    flush_day_articles(
        &mut day_article_period,
        &mut day_articles,
        &mut day_article_index,
        &mut day_article_rows,
    );

    let mut out: BTreeMap<Endpoint, Vec<Row>> = BTreeMap::new();
    fn emit(out: &mut BTreeMap<Endpoint, Vec<Row>>, row: RowBuilder, e: Endpoint) {
        out.entry(e).or_default().push(row.finish());
    }
    let start = |e: Endpoint, date: Date| {
        let mut b = RowBuilder::new(e);
        b.field("ref_date", Val::Date(date));
        b
    };
    let start_hour = |e: Endpoint, date: Date, hour: u8| {
        let mut b = start(e, date);
        b.field("ref_hour", Val::Hour(hour));
        b
    };

    // getusersummary: a user_source 0 row every day, other channels when not zero.
    let mut day = first;
    while day <= last && (want(Endpoint::GetUserSummary) || want(Endpoint::GetUserCumulate)) {
        if want(Endpoint::GetUserSummary) {
            let zero = (HashSet::default(), HashSet::default());
            let (new, cancel) = summary.get(&(day, 0)).unwrap_or(&zero);
            let rows = std::iter::once((0, new, cancel)).chain(
                summary
                    .range((day, 1)..=(day, u32::MAX))
                    .map(|((_, source), (new, cancel))| (*source, new, cancel)),
            );
            for (source, new, cancel) in rows {
                let mut b = start(Endpoint::GetUserSummary, day);
                b.field("user_source", Val::Int(source.into()))
                    .field("new_user", Val::Int(new.len() as u64))
                    .field("cancel_user", Val::Int(cancel.len() as u64));
                emit(&mut out, b, Endpoint::GetUserSummary);
            }
        }
        if want(Endpoint::GetUserCumulate) {
            let cumulate = followers_at_end
                .range(..=day)
                .next_back()
                .map_or(0, |(_, n)| *n);
            let mut b = start(Endpoint::GetUserCumulate, day);
            b.field("user_source", Val::Int(0))
                .field("cumulate_user", Val::Int(cumulate.max(0) as u64));
            emit(&mut out, b, Endpoint::GetUserCumulate);
        }
        day = add_days(day, 1);
    }

    // Messages.
    for (k, keep) in [
        (0, &in_window as &dyn Fn(Date) -> bool),
        (1, &in_window),
        (2, &in_weeks),
        (3, &in_months),
    ] {
        for (label, code, c) in msg_rows[k].iter().filter(|r| keep(r.0 .0)) {
            let e = MSG_ENDPOINTS[k];
            out.entry(e)
                .or_default()
                .push(msg_row(e, *label, *code, *c));
        }
    }
    for (k, keep) in [
        (0, &in_window as &dyn Fn(Date) -> bool),
        (1, &in_weeks),
        (2, &in_months),
    ] {
        for (label, interval, users) in dist_rows[k].iter().filter(|r| keep(r.0)) {
            let e = DIST_ENDPOINTS[k];
            out.entry(e)
                .or_default()
                .push(dist_row(e, *label, *interval, *users));
        }
    }

    // Interface.
    for (date, it) in iface_day.iter().filter(|(d, _)| in_window(**d)) {
        let e = Endpoint::GetInterfaceSummary;
        out.entry(e).or_default().push(iface_row(e, (*date, 0), it));
    }
    for ((date, hour), it) in iface_hour.iter().filter(|((d, _), _)| in_window(*d)) {
        let e = Endpoint::GetInterfaceSummaryHour;
        out.entry(e)
            .or_default()
            .push(iface_row(e, (*date, *hour), it));
    }

    // Reads and shares, all articles.
    for (k, endpoint) in [(0, Endpoint::GetUserRead), (1, Endpoint::GetUserReadHour)] {
        for ((date, hour), source, c) in read_rows[k].iter().filter(|r| in_window(r.0 .0)) {
            let mut b = if k == 1 {
                start_hour(endpoint, *date, *hour)
            } else {
                start(endpoint, *date)
            };
            b.field("user_source", Val::Int((*source).into()));
            write_article(&mut b, c);
            emit(&mut out, b, endpoint);
        }
    }
    for (k, endpoint) in [(0, Endpoint::GetUserShare), (1, Endpoint::GetUserShareHour)] {
        for ((date, hour), scene, c) in share_rows[k].iter().filter(|r| in_window(r.0 .0)) {
            let mut b = if k == 1 {
                start_hour(endpoint, *date, *hour)
            } else {
                start(endpoint, *date)
            };
            b.field("user_source", Val::Int(0))
                .field("share_scene", Val::Int((*scene).into()))
                .field("share_count", Val::Int(c.count))
                .field("share_user", Val::Int(c.users));
            emit(&mut out, b, endpoint);
        }
    }

    // Per article.
    for (date, msgid, c) in day_article_rows.iter().filter(|r| in_window(r.0)) {
        let Some(send) = sends.get(msgid) else {
            continue;
        };
        let age = days_between(send.date, *date);
        let score = c[INT].users + c[ORI].users + c[SHARE].users + c[SHARE].count + c[FAV].count;
        if !(0..7).contains(&age) || score < 3 {
            continue;
        }
        let e = Endpoint::GetArticleSummary;
        let mut b = start(e, *date);
        b.field("msgid", Val::Text(msgid))
            .field("title", Val::Text(send.title))
            .field("user_source", Val::Int(0));
        write_article(&mut b, c);
        emit(&mut out, b, e);
    }
    let mut sent: Vec<(&&str, &Send)> = sends
        .iter()
        .filter(|(_, s)| w_total && in_window(s.date))
        .collect();
    let article_events = &article_events;
    sent.sort_by_key(|(msgid, s)| (s.date, **msgid));
    // Slots: the 4 article counters, the 7 read scenes, the 3 origins of Moments shares.
    const SCENE0: usize = 4;
    const FEED0: usize = SCENE0 + 7;
    let mut tally: Period<()> = Period::new(FEED0 + 3);
    let scene_slot =
        |s: ReadScene| SCENE0 + ReadScene::ALL.iter().position(|x| *x == s).unwrap_or(0);
    let feed_slot = |f: ShareFrom| FEED0 + ShareFrom::ALL.iter().position(|x| *x == f).unwrap_or(0);
    for (msgid, send) in sent {
        // Events are in time order: the tallies run forward, one snapshot per day.
        let events = article_events.get(*msgid).map_or(&[][..], Vec::as_slice);
        let mut details: Vec<String> = Vec::new();
        tally.enter((), &mut |_, _| {});
        let mut next = 0;
        for k in 0..7 {
            let stat = add_days(send.date, k);
            if stat > last {
                break;
            }
            let mut changed = false;
            while let Some((date, kind, user)) = events.get(next).filter(|(d, _, _)| *d <= stat) {
                let user = *user;
                next += 1;
                if *date < send.date {
                    continue;
                }
                changed |= matches!(
                    kind,
                    Kind::Read { .. } | Kind::Share { .. } | Kind::Favorite { .. }
                );
                match kind {
                    Kind::Read {
                        page: Page::Int,
                        scene,
                        ..
                    } => {
                        tally.add(INT, user);
                        tally.add(scene_slot(*scene), user);
                    }
                    Kind::Read {
                        page: Page::Ori, ..
                    } => tally.add(ORI, user),
                    Kind::Share { scene, from, .. } => {
                        tally.add(SHARE, user);
                        if *scene == ShareScene::Feed {
                            tally.add(feed_slot(*from), user);
                        }
                    }
                    Kind::Favorite { .. } => tally.add(FAV, user),
                    _ => {}
                }
            }
            // A day without events repeats the day before but for its date.
            if let Some(previous) = details.last().filter(|_| !changed) {
                details.push(datacube_api::row::redate_snapshot(previous, stat));
                continue;
            }
            let t = &tally.slots;
            let mut d = RowBuilder::detail();
            d.field("stat_date", Val::Date(stat))
                .field("target_user", Val::Int(send.target.max(0) as u64));
            write_article(&mut d, &article_counts(t));
            // In the order of WeChat's detail shape (the scenes of 2022's sample, then
            // the feed shares, then the scenes added later).
            let scene = |d: &mut RowBuilder, scene: ReadScene| {
                let c = t[scene_slot(scene)];
                let infix = scene.total_infix();
                d.field(
                    &format!("int_page_from_{infix}_read_user"),
                    Val::Int(c.users),
                )
                .field(
                    &format!("int_page_from_{infix}_read_count"),
                    Val::Int(c.count),
                );
            };
            for s in [
                ReadScene::Session,
                ReadScene::History,
                ReadScene::Feed,
                ReadScene::Friends,
                ReadScene::Other,
            ] {
                scene(&mut d, s);
            }
            for from in [ShareFrom::Session, ShareFrom::Feed, ShareFrom::Other] {
                let c = t[feed_slot(from)];
                let name = from.name();
                d.field(&format!("feed_share_from_{name}_user"), Val::Int(c.users))
                    .field(&format!("feed_share_from_{name}_cnt"), Val::Int(c.count));
            }
            for s in [ReadScene::Kanyikan, ReadScene::Souyisou] {
                scene(&mut d, s);
            }
            details.push(d.finish_detail());
        }
        tally.finish(&mut |_, _| {});
        let e = Endpoint::GetArticleTotal;
        let mut b = start(e, send.date);
        b.field("msgid", Val::Text(msgid))
            .field("title", Val::Text(send.title))
            .field("user_source", Val::Int(0))
            .field("details", Val::List(&details));
        emit(&mut out, b, e);
    }

    // The 2025 endpoints.
    published_days.finish();
    if w_aread || w_ashare || w_biz {
        published_days.emit(&mut out, (first, last), [w_aread, w_ashare, w_biz]);
    }
    if w_tdetail {
        let mut sent: Vec<(&&str, &Send)> =
            sends.iter().filter(|(_, s)| in_window(s.date)).collect();
        sent.sort_by_key(|(msgid, s)| (s.date, **msgid));
        for (msgid, send) in sent {
            let events = article_events.get(*msgid).map_or(&[][..], Vec::as_slice);
            let article = published::Sent {
                msgid,
                date: send.date,
                title: send.title,
                url: send.url,
                publish_type: send.publish_type,
                target: send.target.max(0) as u64,
            };
            let row = published::total_detail(&article, events, last);
            out.entry(Endpoint::GetArticleTotalDetail)
                .or_default()
                .push(row);
        }
    }

    for rows in out.values_mut() {
        rows.sort_by(|a, b| {
            (a.ref_date, a.ref_hour, &a.key).cmp(&(b.ref_date, b.ref_hour, &b.key))
        });
    }
    out
}

pub(crate) type Label = (Date, u8);

/// Hands a finished period's slots over as rows, one per code that counted something.
fn by_code<'a>(
    rows: &'a mut Vec<(Label, u32, Counts)>,
    codes: &'a [u32],
) -> impl FnMut(Label, &[Counts]) + 'a {
    move |label, slots| {
        for (c, code) in slots.iter().zip(codes) {
            if c.count > 0 {
                rows.push((label, *code, *c));
            }
        }
    }
}

/// Hands a finished period's read slots (key × 4 counters) over as rows, one per key that
/// counted something.
fn by_read_key(rows: &mut Vec<(Label, u32, ArticleCounts)>) -> impl FnMut(Label, &[Counts]) + '_ {
    move |label, slots| {
        for (key, code) in READ_KEYS.iter().enumerate() {
            let c = article_counts(&slots[key * 4..]);
            if !is_empty(&c) {
                rows.push((label, *code, c));
            }
        }
    }
}

/// Hands the day's per-article tallies over as rows and starts an empty day.
fn flush_day_articles<'a>(
    period: &mut Period<Date>,
    articles: &mut Vec<&'a str>,
    index: &mut HashMap<&'a str, usize>,
    rows: &mut Vec<(Date, &'a str, ArticleCounts)>,
) {
    if let Some(date) = period.label.take() {
        for (a, msgid) in articles.iter().enumerate() {
            rows.push((date, msgid, article_counts(&period.slots[a * 4..])));
        }
    }
    articles.clear();
    index.clear();
    period.seen.clear();
    period.slots.clear();
}
