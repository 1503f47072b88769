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
//!   `target_user` is the follower count at the moment of the send.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use datacube_api::date::{
    add_days, china_date_hour, monday_of, CHINA_OFFSET_SECONDS as CHINA_OFFSET,
};
use datacube_api::row::{Row, RowBuilder, Val};
use datacube_api::Endpoint;
use jiff::civil::Date;

use crate::event::{Event, Kind, Page, ReadScene, ShareFrom, ShareScene};

/// getuserread's all-channels row.
pub const ALL_SCENES: u32 = 99_999_999;

/// Distinct users and event count.
#[derive(Default, Clone)]
struct Tally {
    /// Interned openids.
    users: HashSet<u32>,
    count: u64,
}

impl Tally {
    fn add(&mut self, user: u32) {
        self.users.insert(user);
        self.count += 1;
    }
    fn users(&self) -> u64 {
        self.users.len() as u64
    }
}

/// The eight counters of article rows.
#[derive(Default, Clone)]
struct ArticleTally {
    int: Tally,
    ori: Tally,
    share: Tally,
    fav: Tally,
}

impl ArticleTally {
    fn is_empty(&self) -> bool {
        self.int.count + self.ori.count + self.share.count + self.fav.count == 0
    }
    fn write(&self, row: &mut RowBuilder) {
        row.field("int_page_read_user", Val::Int(self.int.users()))
            .field("int_page_read_count", Val::Int(self.int.count))
            .field("ori_page_read_user", Val::Int(self.ori.users()))
            .field("ori_page_read_count", Val::Int(self.ori.count))
            .field("share_user", Val::Int(self.share.users()))
            .field("share_count", Val::Int(self.share.count))
            .field("add_to_fav_user", Val::Int(self.fav.users()))
            .field("add_to_fav_count", Val::Int(self.fav.count));
    }
}

/// Openids that followed and that unfollowed, in one day and channel.
type FollowSets = (HashSet<u32>, HashSet<u32>);

#[derive(Default)]
struct Interface {
    callbacks: u64,
    fails: u64,
    total: u64,
    max: u64,
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

    // Followers.
    let mut state: HashMap<u32, (bool, u32)> = HashMap::default();
    // Openids, interned: every tally below holds numbers.
    let mut interned: HashMap<&str, u32> = HashMap::default();
    let mut followers: i64 = 0;
    let mut followers_at_end: BTreeMap<Date, i64> = BTreeMap::new();
    let mut summary: BTreeMap<(Date, u32), FollowSets> = BTreeMap::new();
    // Messages.
    let mut msg_day: HashMap<(Date, u32), Tally> = HashMap::default();
    let mut msg_hour: HashMap<(Date, u8, u32), Tally> = HashMap::default();
    let mut msg_week: HashMap<(Date, u32), Tally> = HashMap::default();
    let mut msg_month: HashMap<(Date, u32), Tally> = HashMap::default();
    let mut per_user_day: HashMap<(Date, u32), u64> = HashMap::default();
    let mut per_user_week: HashMap<(Date, u32), u64> = HashMap::default();
    let mut per_user_month: HashMap<(Date, u32), u64> = HashMap::default();
    // Replies.
    let mut iface_day: HashMap<Date, Interface> = HashMap::default();
    let mut iface_hour: HashMap<(Date, u8), Interface> = HashMap::default();
    // Articles.
    struct Send<'a> {
        date: Date,
        title: &'a str,
        target: i64,
    }
    let mut sends: HashMap<&str, Send> = HashMap::default();
    let mut article_events: HashMap<&str, Vec<(Date, &Kind, u32)>> = HashMap::default();
    let mut read_day: HashMap<(Date, u32), ArticleTally> = HashMap::default();
    let mut read_hour: HashMap<(Date, u8, u32), ArticleTally> = HashMap::default();
    let mut share_day: HashMap<(Date, u32), Tally> = HashMap::default();
    let mut share_hour: HashMap<(Date, u8, u32), Tally> = HashMap::default();
    let mut day_article: HashMap<(Date, &str), ArticleTally> = HashMap::default();

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
    let w_messages = w_msg_day
        || w_msg_hour
        || w_msg_week
        || w_msg_month
        || w_dist_day
        || w_dist_week
        || w_dist_month;
    let w_articles =
        w_read_day || w_read_hour || w_share_day || w_share_hour || w_day_article || w_total;

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
        }
        let hour = ((time - day_start) / 3600) as u8;
        let openid = match &event.kind {
            Kind::Follow { openid, .. } | Kind::Unfollow { openid } => openid,
            Kind::Message { openid, .. } if w_messages => openid,
            Kind::Read { openid, .. }
            | Kind::Share { openid, .. }
            | Kind::Favorite { openid, .. }
                if w_articles =>
            {
                openid
            }
            Kind::Reply { .. } | Kind::Publish { .. } => "",
            // A class whose endpoints are not wanted.
            _ => continue,
        };
        let user = if openid.is_empty() {
            0
        } else {
            let next = interned.len() as u32;
            *interned.entry(openid).or_insert(next)
        };
        if w_total {
            if let Kind::Read { msgid, .. }
            | Kind::Share { msgid, .. }
            | Kind::Favorite { msgid, .. } = &event.kind
            {
                article_events
                    .entry(msgid)
                    .or_default()
                    .push((date, &event.kind, user));
            }
        }
        match &event.kind {
            Kind::Follow { source, .. } => {
                let entry = state.entry(user).or_insert((false, *source));
                if !entry.0 {
                    followers += 1;
                }
                *entry = (true, *source);
                summary.entry((date, *source)).or_default().0.insert(user);
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
            }
            Kind::Message { msg_type, .. } => {
                let Some(code) = msg_type.wechat_code() else {
                    continue;
                };
                if w_msg_day {
                    msg_day.entry((date, code)).or_default().add(user);
                }
                if w_msg_hour {
                    msg_hour.entry((date, hour, code)).or_default().add(user);
                }
                if w_msg_week {
                    msg_week.entry((week, code)).or_default().add(user);
                }
                if w_msg_month {
                    msg_month.entry((month, code)).or_default().add(user);
                }
                if w_dist_day {
                    *per_user_day.entry((date, user)).or_default() += 1;
                }
                if w_dist_week {
                    *per_user_week.entry((week, user)).or_default() += 1;
                }
                if w_dist_month {
                    *per_user_month.entry((month, user)).or_default() += 1;
                }
            }
            Kind::Reply { cost_ms, ok } => {
                let add = |it: &mut Interface| {
                    it.callbacks += 1;
                    it.fails += u64::from(!ok);
                    it.total += cost_ms;
                    it.max = it.max.max(*cost_ms);
                };
                if w_iface_day {
                    add(iface_day.entry(date).or_default());
                }
                if w_iface_hour {
                    add(iface_hour.entry((date, hour)).or_default());
                }
            }
            Kind::Publish { msgid, title } => {
                sends.entry(msgid).or_insert(Send {
                    date,
                    title,
                    target: followers,
                });
            }
            Kind::Read {
                msgid,
                openid: _,
                page,
                scene,
            } => {
                // The original page has only the all-channels figure.
                let (pick, keys): (fn(&mut ArticleTally) -> &mut Tally, &[u32]) = match page {
                    Page::Int => (|t| &mut t.int, &[scene.user_source(), ALL_SCENES]),
                    Page::Ori => (|t| &mut t.ori, &[ALL_SCENES]),
                };
                if w_day_article {
                    pick(day_article.entry((date, msgid)).or_default()).add(user);
                }
                for &key in keys {
                    if w_read_day {
                        pick(read_day.entry((date, key)).or_default()).add(user);
                    }
                    if w_read_hour {
                        pick(read_hour.entry((date, hour, key)).or_default()).add(user);
                    }
                }
            }
            Kind::Share {
                msgid,
                openid: _,
                scene,
                from,
            } => {
                if w_day_article {
                    day_article
                        .entry((date, msgid))
                        .or_default()
                        .share
                        .add(user);
                }
                for key in [from.read_scene().user_source(), ALL_SCENES] {
                    if w_read_day {
                        read_day.entry((date, key)).or_default().share.add(user);
                    }
                    if w_read_hour {
                        read_hour
                            .entry((date, hour, key))
                            .or_default()
                            .share
                            .add(user);
                    }
                }
                if w_share_day {
                    share_day
                        .entry((date, scene.wechat_code()))
                        .or_default()
                        .add(user);
                }
                if w_share_hour {
                    share_hour
                        .entry((date, hour, scene.wechat_code()))
                        .or_default()
                        .add(user);
                }
            }
            Kind::Favorite { msgid, .. } => {
                if w_day_article {
                    day_article.entry((date, msgid)).or_default().fav.add(user);
                }
                if w_read_day {
                    read_day
                        .entry((date, ALL_SCENES))
                        .or_default()
                        .fav
                        .add(user);
                }
                if w_read_hour {
                    read_hour
                        .entry((date, hour, ALL_SCENES))
                        .or_default()
                        .fav
                        .add(user);
                }
            }
        }
        if !matches!(event.kind, Kind::Follow { .. } | Kind::Unfollow { .. }) {
            continue;
        }
        followers_at_end.insert(date, followers);
    }

    let mut out: BTreeMap<Endpoint, Vec<Row>> = BTreeMap::new();
    let mut emit = |row: RowBuilder, e: Endpoint| {
        out.entry(e).or_default().push(row.finish());
    };
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
                emit(b, Endpoint::GetUserSummary);
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
            emit(b, Endpoint::GetUserCumulate);
        }
        day = add_days(day, 1);
    }

    // Messages.
    let msg = |mut b: RowBuilder, code: u32, t: &Tally| {
        b.field("user_source", Val::Int(0))
            .field("msg_type", Val::Int(code.into()))
            .field("msg_user", Val::Int(t.users()))
            .field("msg_count", Val::Int(t.count));
        b
    };
    if want(Endpoint::GetUpstreamMsg) {
        for ((date, code), t) in msg_day.iter().filter(|((d, _), _)| in_window(*d)) {
            let e = Endpoint::GetUpstreamMsg;
            emit(msg(start(e, *date), *code, t), e);
        }
    }
    if want(Endpoint::GetUpstreamMsgHour) {
        for ((date, hour, code), t) in msg_hour.iter().filter(|((d, _, _), _)| in_window(*d)) {
            let e = Endpoint::GetUpstreamMsgHour;
            emit(msg(start_hour(e, *date, *hour), *code, t), e);
        }
    }
    if want(Endpoint::GetUpstreamMsgWeek) {
        for ((label, code), t) in msg_week.iter().filter(|((d, _), _)| in_weeks(*d)) {
            let e = Endpoint::GetUpstreamMsgWeek;
            emit(msg(start(e, *label), *code, t), e);
        }
    }
    if want(Endpoint::GetUpstreamMsgMonth) {
        for ((label, code), t) in msg_month.iter().filter(|((d, _), _)| in_months(*d)) {
            let e = Endpoint::GetUpstreamMsgMonth;
            emit(msg(start(e, *label), *code, t), e);
        }
    }
    for (endpoint, per_user, keep) in [
        (
            Endpoint::GetUpstreamMsgDist,
            &per_user_day,
            &in_window as &dyn Fn(Date) -> bool,
        ),
        (Endpoint::GetUpstreamMsgDistWeek, &per_user_week, &in_weeks),
        (
            Endpoint::GetUpstreamMsgDistMonth,
            &per_user_month,
            &in_months,
        ),
    ] {
        if !want(endpoint) {
            continue;
        }
        let mut buckets: BTreeMap<(Date, u32), u64> = BTreeMap::new();
        for ((label, _), n) in per_user.iter().filter(|((d, _), _)| keep(*d)) {
            let interval = match n {
                1..=5 => 1,
                6..=10 => 2,
                _ => 3,
            };
            *buckets.entry((*label, interval)).or_default() += 1;
        }
        for ((label, interval), users) in buckets {
            let mut b = start(endpoint, label);
            b.field("user_source", Val::Int(0))
                .field("count_interval", Val::Int(interval.into()))
                .field("msg_user", Val::Int(users));
            emit(b, endpoint);
        }
    }

    // Interface.
    let iface = |mut b: RowBuilder, it: &Interface| {
        b.field("callback_count", Val::Int(it.callbacks))
            .field("fail_count", Val::Int(it.fails))
            .field("total_time_cost", Val::Int(it.total))
            .field("max_time_cost", Val::Int(it.max));
        b
    };
    if want(Endpoint::GetInterfaceSummary) {
        for (date, it) in iface_day.iter().filter(|(d, _)| in_window(**d)) {
            let e = Endpoint::GetInterfaceSummary;
            emit(iface(start(e, *date), it), e);
        }
    }
    if want(Endpoint::GetInterfaceSummaryHour) {
        for ((date, hour), it) in iface_hour.iter().filter(|((d, _), _)| in_window(*d)) {
            let e = Endpoint::GetInterfaceSummaryHour;
            emit(iface(start_hour(e, *date, *hour), it), e);
        }
    }

    // Reads and shares, all articles.
    if want(Endpoint::GetUserRead) {
        for ((date, source), t) in read_day
            .iter()
            .filter(|((d, _), t)| in_window(*d) && !t.is_empty())
        {
            let e = Endpoint::GetUserRead;
            let mut b = start(e, *date);
            b.field("user_source", Val::Int((*source).into()));
            t.write(&mut b);
            emit(b, e);
        }
    }
    if want(Endpoint::GetUserReadHour) {
        for ((date, hour, source), t) in read_hour
            .iter()
            .filter(|((d, _, _), t)| in_window(*d) && !t.is_empty())
        {
            let e = Endpoint::GetUserReadHour;
            let mut b = start_hour(e, *date, *hour);
            b.field("user_source", Val::Int((*source).into()));
            t.write(&mut b);
            emit(b, e);
        }
    }
    let share = |mut b: RowBuilder, scene: u32, t: &Tally| {
        b.field("user_source", Val::Int(0))
            .field("share_scene", Val::Int(scene.into()))
            .field("share_count", Val::Int(t.count))
            .field("share_user", Val::Int(t.users()));
        b
    };
    if want(Endpoint::GetUserShare) {
        for ((date, scene), t) in share_day.iter().filter(|((d, _), _)| in_window(*d)) {
            let e = Endpoint::GetUserShare;
            emit(share(start(e, *date), *scene, t), e);
        }
    }
    if want(Endpoint::GetUserShareHour) {
        for ((date, hour, scene), t) in share_hour.iter().filter(|((d, _, _), _)| in_window(*d)) {
            let e = Endpoint::GetUserShareHour;
            emit(share(start_hour(e, *date, *hour), *scene, t), e);
        }
    }

    // Per article.
    if want(Endpoint::GetArticleSummary) {
        for ((date, msgid), t) in day_article.iter().filter(|((d, _), _)| in_window(*d)) {
            let Some(send) = sends.get(msgid) else {
                continue;
            };
            let age = datacube_api::date::days_between(send.date, *date);
            let score =
                t.int.users() + t.ori.users() + t.share.users() + t.share.count + t.fav.count;
            if !(0..7).contains(&age) || score < 3 {
                continue;
            }
            let e = Endpoint::GetArticleSummary;
            let mut b = start(e, *date);
            b.field("msgid", Val::Text(msgid))
                .field("title", Val::Text(send.title))
                .field("user_source", Val::Int(0));
            t.write(&mut b);
            emit(b, e);
        }
    }
    let mut sent: Vec<(&&str, &Send)> = sends
        .iter()
        .filter(|(_, s)| want(Endpoint::GetArticleTotal) && in_window(s.date))
        .collect();
    sent.sort_by_key(|(msgid, s)| (s.date, **msgid));
    for (msgid, send) in sent {
        // Events are in time order: the tallies run forward, one snapshot per day.
        let events = article_events.get(*msgid).map_or(&[][..], Vec::as_slice);
        let mut details = Vec::new();
        let mut total = ArticleTally::default();
        let mut scenes: BTreeMap<ReadScene, Tally> = BTreeMap::new();
        let mut feed: BTreeMap<ShareFrom, Tally> = BTreeMap::new();
        let mut next = 0;
        let empty = Tally::default();
        for k in 0..7 {
            let stat = add_days(send.date, k);
            if stat > last {
                break;
            }
            while let Some((date, kind, user)) = events.get(next).filter(|(d, _, _)| *d <= stat) {
                let user = *user;
                next += 1;
                if *date < send.date {
                    continue;
                }
                match kind {
                    Kind::Read {
                        page: Page::Int,
                        scene,
                        ..
                    } => {
                        total.int.add(user);
                        scenes.entry(*scene).or_default().add(user);
                    }
                    Kind::Read {
                        page: Page::Ori, ..
                    } => total.ori.add(user),
                    Kind::Share { scene, from, .. } => {
                        total.share.add(user);
                        if *scene == ShareScene::Feed {
                            feed.entry(*from).or_default().add(user);
                        }
                    }
                    Kind::Favorite { .. } => total.fav.add(user),
                    _ => {}
                }
            }
            let mut d = RowBuilder::detail();
            d.field("stat_date", Val::Date(stat))
                .field("target_user", Val::Int(send.target.max(0) as u64));
            total.write(&mut d);
            // In the order of WeChat's detail shape (the scenes of 2022's sample, then
            // the feed shares, then the scenes added later).
            let scene = |d: &mut RowBuilder, scene: ReadScene| {
                let t = scenes.get(&scene).unwrap_or(&empty);
                let infix = scene.total_infix();
                d.field(
                    &format!("int_page_from_{infix}_read_user"),
                    Val::Int(t.users()),
                )
                .field(
                    &format!("int_page_from_{infix}_read_count"),
                    Val::Int(t.count),
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
                let t = feed.get(&from).unwrap_or(&empty);
                let name = from.name();
                d.field(&format!("feed_share_from_{name}_user"), Val::Int(t.users()))
                    .field(&format!("feed_share_from_{name}_cnt"), Val::Int(t.count));
            }
            for s in [ReadScene::Kanyikan, ReadScene::Souyisou] {
                scene(&mut d, s);
            }
            details.push(d.finish_detail());
        }
        let e = Endpoint::GetArticleTotal;
        let mut b = start(e, send.date);
        b.field("msgid", Val::Text(msgid))
            .field("title", Val::Text(send.title))
            .field("user_source", Val::Int(0))
            .field("details", Val::Details(&details));
        emit(b, e);
    }

    for rows in out.values_mut() {
        rows.sort_by(|a, b| {
            (a.ref_date, a.ref_hour, &a.key).cmp(&(b.ref_date, b.ref_hour, &b.key))
        });
    }
    out
}
