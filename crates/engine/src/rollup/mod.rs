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

use datacube_api::date::{china_date_hour, monday_of, CHINA_OFFSET_SECONDS as CHINA_OFFSET};
use datacube_api::row::{Row, RowBuilder, Val};
use datacube_api::Endpoint;
use jiff::civil::Date;

use crate::event::{Event, Kind, ReadScene, ShareScene};
use crate::published;

mod articles;
mod followers;
mod messages;
mod replies;

use articles::Articles;
use followers::Followers;
use messages::Messages;
use replies::Replies;

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
///
/// The events are replayed in time order through one tally per group of endpoints
/// (followers, messages, replies, articles, the 2025 published content), each keeping only
/// what its wanted endpoints need; then each group writes its rows.
pub fn compute_parts<'a>(
    parts: &[&'a [Event]],
    first: Date,
    last: Date,
    wanted: &[Endpoint],
) -> BTreeMap<Endpoint, Vec<Row>> {
    let want = |e: Endpoint| wanted.contains(&e);
    let sorted = time_order(parts);
    let window = Window {
        first,
        last,
        weeks: (monday_of(first), last),
        months: (first.first_of_month(), last),
    };
    let mut tallies = Tallies::new(want);
    let w_articles = ARTICLE_ENDPOINTS.iter().any(|e| want(*e));
    // Openids, interned: every tally holds numbers.
    let mut interned: HashMap<&str, u32> = HashMap::default();

    // Events come in time order: the date (and its week and month) changes rarely.
    let mut day_start = i64::MIN;
    let mut at = At {
        date: Date::MIN,
        hour: 0,
        week: Date::MIN,
        month: Date::MIN,
    };
    for &(time, p, i) in &sorted {
        let event: &'a Event = &parts[p as usize][i as usize];
        if time < day_start || time >= day_start + 86_400 {
            at.date = china_date_hour(time).0;
            day_start = time - (time + CHINA_OFFSET).rem_euclid(86_400);
            at.week = monday_of(at.date);
            at.month = at.date.first_of_month();
            tallies.articles.new_day();
        }
        at.hour = ((time - day_start) / 3600) as u8;
        let openid = match &event.kind {
            Kind::Follow { openid, .. } | Kind::Unfollow { openid } => openid,
            Kind::Message { openid, .. } if tallies.messages.wanted() => openid,
            Kind::Reply { .. } | Kind::Publish { .. } | Kind::Published { .. } => "",
            kind => match kind.article_and_reader() {
                Some((_, openid)) if w_articles => openid,
                // A class whose endpoints are not wanted.
                _ => continue,
            },
        };
        let user = if openid.is_empty() {
            0
        } else {
            let next = interned.len() as u32;
            *interned.entry(openid).or_insert(next)
        };
        tallies.absorb(at, &event.kind, user);
    }
    tallies.emit(&window, want)
}

/// Where each event of `parts` is, `(time, part, index)`, in time order; events of the same
/// second in the order given.
fn time_order(parts: &[&[Event]]) -> Vec<(i64, u32, u32)> {
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
    sorted
}

/// One tally per group of endpoints, each keeping only what its wanted endpoints need.
struct Tallies<'a> {
    followers: Followers,
    messages: Messages,
    replies: Replies,
    articles: Articles<'a>,
    published_days: published::Days<'a>,
    /// Whether getarticleread, getarticleshare and getbizsummary are wanted.
    w_aread: bool,
    w_ashare: bool,
    w_biz: bool,
}

impl<'a> Tallies<'a> {
    /// Empty tallies for the endpoints `want` says are wanted.
    fn new(want: impl Fn(Endpoint) -> bool + Copy) -> Tallies<'a> {
        Tallies {
            followers: Followers::default(),
            messages: Messages::new(want),
            replies: Replies::new(want),
            articles: Articles::new(want),
            published_days: published::Days::default(),
            w_aread: want(Endpoint::GetArticleRead),
            w_ashare: want(Endpoint::GetArticleShare),
            w_biz: want(Endpoint::GetBizSummary),
        }
    }

    /// Counts one event of `kind`, at `at`, by `user` (0 for none) in every tally it concerns.
    #[inline]
    fn absorb(&mut self, at: At, kind: &'a Kind, user: u32) {
        let (w_aread, w_ashare, w_biz) = (self.w_aread, self.w_ashare, self.w_biz);
        self.articles.keep(at.date, kind, user);
        if w_aread || w_ashare || w_biz {
            self.published_days
                .absorb(at.date, kind, user, w_aread || w_ashare);
        }
        match kind {
            Kind::Follow { source, .. } => {
                self.followers.follow(at.date, user, *source);
                self.articles.followed(at.date, kind, user);
            }
            Kind::Unfollow { .. } => self.followers.unfollow(at.date, user),
            Kind::Message { msg_type, .. } => {
                if let Some(code) = msg_type.wechat_code() {
                    self.messages.absorb(at, code, user);
                }
            }
            Kind::Reply { cost_ms, ok } => self.replies.absorb(at, *cost_ms, *ok),
            Kind::Publish { .. } | Kind::Published { .. } => {
                let followers = self.followers.count();
                self.articles
                    .publish(at.date, kind, followers, &mut self.published_days);
            }
            // Only the 2025 endpoints count these (above).
            Kind::Like { .. } | Kind::Comment { .. } | Kind::Praise { .. } | Kind::Leave { .. } => {
            }
            Kind::Read { msgid, .. } | Kind::Share { msgid, .. } | Kind::Favorite { msgid, .. } => {
                self.articles.absorb(at, kind, msgid, user);
            }
        }
    }

    /// Every wanted endpoint's rows over `window`, in WeChat's order.
    fn emit(mut self, window: &Window, want: impl Fn(Endpoint) -> bool) -> Out {
        let (w_aread, w_ashare, w_biz) = (self.w_aread, self.w_ashare, self.w_biz);
        self.messages.finish();
        self.articles.finish();

        let mut out = Out::new();
        self.followers.emit(
            &mut out,
            window,
            want(Endpoint::GetUserSummary),
            want(Endpoint::GetUserCumulate),
        );
        self.messages.emit(&mut out, window);
        self.replies.emit(&mut out, window);
        self.articles.emit(&mut out, window);
        self.published_days.finish();
        if w_aread || w_ashare || w_biz {
            self.published_days.emit(
                &mut out,
                (window.first, window.last),
                [w_aread, w_ashare, w_biz],
            );
        }
        self.articles.emit_total_detail(&mut out, window);
        for rows in out.values_mut() {
            rows.sort_by(|a, b| {
                (a.ref_date, a.ref_hour, &a.key).cmp(&(b.ref_date, b.ref_hour, &b.key))
            });
        }
        out
    }
}

/// The endpoints whose rows come from article events (reads, shares, favourites and the 2025
/// kinds): without any of them wanted, those events are skipped.
const ARTICLE_ENDPOINTS: [Endpoint; 10] = [
    Endpoint::GetUserRead,
    Endpoint::GetUserReadHour,
    Endpoint::GetUserShare,
    Endpoint::GetUserShareHour,
    Endpoint::GetArticleSummary,
    Endpoint::GetArticleTotal,
    Endpoint::GetArticleRead,
    Endpoint::GetArticleShare,
    Endpoint::GetBizSummary,
    Endpoint::GetArticleTotalDetail,
];

/// Rows by endpoint, as a computation builds them.
type Out = BTreeMap<Endpoint, Vec<Row>>;

/// The days asked for; weeks and months are kept when they overlap them.
struct Window {
    first: Date,
    last: Date,
    weeks: (Date, Date),
    months: (Date, Date),
}

impl Window {
    fn days(&self, d: Date) -> bool {
        d >= self.first && d <= self.last
    }

    fn weeks(&self, d: Date) -> bool {
        d >= self.weeks.0 && d <= self.weeks.1
    }

    fn months(&self, d: Date) -> bool {
        d >= self.months.0 && d <= self.months.1
    }
}

/// When an event happened: its China day and hour, the week (its Monday) and month (its 1st).
#[derive(Debug, Clone, Copy)]
struct At {
    date: Date,
    hour: u8,
    week: Date,
    month: Date,
}

fn emit(out: &mut Out, row: RowBuilder, e: Endpoint) {
    out.entry(e).or_default().push(row.finish());
}

fn start(e: Endpoint, date: Date) -> RowBuilder {
    let mut b = RowBuilder::new(e);
    b.field("ref_date", Val::Date(date));
    b
}

fn start_hour(e: Endpoint, date: Date, hour: u8) -> RowBuilder {
    let mut b = start(e, date);
    b.field("ref_hour", Val::Hour(hour));
    b
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
