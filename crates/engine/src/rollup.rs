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

use datacube_api::date::{add_days, china_date_hour, format_date, monday_of};
use datacube_api::row::{canonicalize, Row};
use datacube_api::Endpoint;
use jiff::civil::Date;
use serde_json::{json, Map, Value};

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
    fn write(&self, row: &mut Map<String, Value>) {
        row.insert("int_page_read_user".into(), self.int.users().into());
        row.insert("int_page_read_count".into(), self.int.count.into());
        row.insert("ori_page_read_user".into(), self.ori.users().into());
        row.insert("ori_page_read_count".into(), self.ori.count.into());
        row.insert("share_user".into(), self.share.users().into());
        row.insert("share_count".into(), self.share.count.into());
        row.insert("add_to_fav_user".into(), self.fav.users().into());
        row.insert("add_to_fav_count".into(), self.fav.count.into());
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
    let want = |e: Endpoint| wanted.contains(&e);
    let mut sorted: Vec<(i64, usize)> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.time, i))
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

    for &(time, i) in &sorted {
        let event = &events[i];
        let (date, hour) = china_date_hour(time);
        let user = match &event.kind {
            Kind::Follow { openid, .. }
            | Kind::Unfollow { openid }
            | Kind::Message { openid, .. }
            | Kind::Read { openid, .. }
            | Kind::Share { openid, .. }
            | Kind::Favorite { openid, .. } => {
                let next = interned.len() as u32;
                *interned.entry(openid).or_insert(next)
            }
            Kind::Reply { .. } | Kind::Publish { .. } => 0,
        };
        if let Kind::Read { msgid, .. } | Kind::Share { msgid, .. } | Kind::Favorite { msgid, .. } =
            &event.kind
        {
            article_events
                .entry(msgid)
                .or_default()
                .push((date, &event.kind, user));
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
                msg_day.entry((date, code)).or_default().add(user);
                msg_hour.entry((date, hour, code)).or_default().add(user);
                msg_week
                    .entry((monday_of(date), code))
                    .or_default()
                    .add(user);
                msg_month
                    .entry((date.first_of_month(), code))
                    .or_default()
                    .add(user);
                *per_user_day.entry((date, user)).or_default() += 1;
                *per_user_week.entry((monday_of(date), user)).or_default() += 1;
                *per_user_month
                    .entry((date.first_of_month(), user))
                    .or_default() += 1;
            }
            Kind::Reply { cost_ms, ok } => {
                for it in [
                    iface_day.entry(date).or_default(),
                    iface_hour.entry((date, hour)).or_default(),
                ] {
                    it.callbacks += 1;
                    it.fails += u64::from(!ok);
                    it.total += cost_ms;
                    it.max = it.max.max(*cost_ms);
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
                let day = day_article.entry((date, msgid)).or_default();
                match page {
                    Page::Int => {
                        day.int.add(user);
                        for key in [scene.user_source(), ALL_SCENES] {
                            read_day.entry((date, key)).or_default().int.add(user);
                            read_hour
                                .entry((date, hour, key))
                                .or_default()
                                .int
                                .add(user);
                        }
                    }
                    // The original page has only the all-channels figure.
                    Page::Ori => {
                        day.ori.add(user);
                        read_day
                            .entry((date, ALL_SCENES))
                            .or_default()
                            .ori
                            .add(user);
                        read_hour
                            .entry((date, hour, ALL_SCENES))
                            .or_default()
                            .ori
                            .add(user);
                    }
                }
            }
            Kind::Share {
                msgid,
                openid: _,
                scene,
                from,
            } => {
                day_article
                    .entry((date, msgid))
                    .or_default()
                    .share
                    .add(user);
                for key in [from.read_scene().user_source(), ALL_SCENES] {
                    read_day.entry((date, key)).or_default().share.add(user);
                    read_hour
                        .entry((date, hour, key))
                        .or_default()
                        .share
                        .add(user);
                }
                share_day
                    .entry((date, scene.wechat_code()))
                    .or_default()
                    .add(user);
                share_hour
                    .entry((date, hour, scene.wechat_code()))
                    .or_default()
                    .add(user);
            }
            Kind::Favorite { msgid, .. } => {
                day_article.entry((date, msgid)).or_default().fav.add(user);
                read_day
                    .entry((date, ALL_SCENES))
                    .or_default()
                    .fav
                    .add(user);
                read_hour
                    .entry((date, hour, ALL_SCENES))
                    .or_default()
                    .fav
                    .add(user);
            }
        }
        if !matches!(event.kind, Kind::Follow { .. } | Kind::Unfollow { .. }) {
            continue;
        }
        followers_at_end.insert(date, followers);
    }

    let mut out: BTreeMap<Endpoint, Vec<Value>> = BTreeMap::new();
    let mut emit = |e: Endpoint, v: Value| {
        if want(e) {
            out.entry(e).or_default().push(v);
        }
    };

    // getusersummary: a user_source 0 row every day, other channels when not zero.
    let mut day = first;
    while day <= last && (want(Endpoint::GetUserSummary) || want(Endpoint::GetUserCumulate)) {
        let d = format_date(day);
        let zero = (HashSet::default(), HashSet::default());
        let (new, cancel) = summary.get(&(day, 0)).unwrap_or(&zero);
        emit(
            Endpoint::GetUserSummary,
            json!({"ref_date": d, "user_source": 0, "new_user": new.len(), "cancel_user": cancel.len()}),
        );
        for ((_, source), (new, cancel)) in summary.range((day, 1)..=(day, u32::MAX)) {
            emit(
                Endpoint::GetUserSummary,
                json!({"ref_date": d, "user_source": source, "new_user": new.len(), "cancel_user": cancel.len()}),
            );
        }
        let cumulate = followers_at_end
            .range(..=day)
            .next_back()
            .map_or(0, |(_, n)| *n);
        emit(
            Endpoint::GetUserCumulate,
            json!({"ref_date": d, "user_source": 0, "cumulate_user": cumulate}),
        );
        day = add_days(day, 1);
    }

    // Messages.
    for ((date, code), t) in msg_day
        .iter()
        .filter(|_| want(Endpoint::GetUpstreamMsg))
        .filter(|((d, _), _)| in_window(*d))
    {
        emit(
            Endpoint::GetUpstreamMsg,
            json!({"ref_date": format_date(*date), "user_source": 0,
            "msg_type": code, "msg_user": t.users(), "msg_count": t.count}),
        );
    }
    for ((date, hour, code), t) in msg_hour
        .iter()
        .filter(|_| want(Endpoint::GetUpstreamMsgHour))
        .filter(|((d, _, _), _)| in_window(*d))
    {
        emit(
            Endpoint::GetUpstreamMsgHour,
            json!({"ref_date": format_date(*date),
            "ref_hour": u32::from(*hour) * 100, "user_source": 0, "msg_type": code,
            "msg_user": t.users(), "msg_count": t.count}),
        );
    }
    for ((label, code), t) in msg_week
        .iter()
        .filter(|_| want(Endpoint::GetUpstreamMsgWeek))
        .filter(|((d, _), _)| in_weeks(*d))
    {
        emit(
            Endpoint::GetUpstreamMsgWeek,
            json!({"ref_date": format_date(*label), "user_source": 0,
            "msg_type": code, "msg_user": t.users(), "msg_count": t.count}),
        );
    }
    for ((label, code), t) in msg_month
        .iter()
        .filter(|_| want(Endpoint::GetUpstreamMsgMonth))
        .filter(|((d, _), _)| in_months(*d))
    {
        emit(
            Endpoint::GetUpstreamMsgMonth,
            json!({"ref_date": format_date(*label), "user_source": 0,
            "msg_type": code, "msg_user": t.users(), "msg_count": t.count}),
        );
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
            emit(
                endpoint,
                json!({"ref_date": format_date(label), "user_source": 0,
                "count_interval": interval, "msg_user": users}),
            );
        }
    }

    // Interface.
    for (date, it) in iface_day
        .iter()
        .filter(|_| want(Endpoint::GetInterfaceSummary))
        .filter(|(d, _)| in_window(**d))
    {
        emit(
            Endpoint::GetInterfaceSummary,
            json!({"ref_date": format_date(*date),
            "callback_count": it.callbacks, "fail_count": it.fails,
            "total_time_cost": it.total, "max_time_cost": it.max}),
        );
    }
    for ((date, hour), it) in iface_hour
        .iter()
        .filter(|_| want(Endpoint::GetInterfaceSummaryHour))
        .filter(|((d, _), _)| in_window(*d))
    {
        emit(
            Endpoint::GetInterfaceSummaryHour,
            json!({"ref_date": format_date(*date),
            "ref_hour": u32::from(*hour) * 100, "callback_count": it.callbacks,
            "fail_count": it.fails, "total_time_cost": it.total, "max_time_cost": it.max}),
        );
    }

    // Reads and shares, all articles.
    for ((date, source), t) in read_day
        .iter()
        .filter(|((d, _), t)| want(Endpoint::GetUserRead) && in_window(*d) && !t.is_empty())
    {
        let mut row = obj(json!({"ref_date": format_date(*date), "user_source": source}));
        t.write(&mut row);
        emit(Endpoint::GetUserRead, Value::Object(row));
    }
    for ((date, hour, source), t) in read_hour
        .iter()
        .filter(|((d, _, _), t)| want(Endpoint::GetUserReadHour) && in_window(*d) && !t.is_empty())
    {
        let mut row = obj(json!({"ref_date": format_date(*date),
            "ref_hour": u32::from(*hour) * 100, "user_source": source}));
        t.write(&mut row);
        emit(Endpoint::GetUserReadHour, Value::Object(row));
    }
    for ((date, scene), t) in share_day
        .iter()
        .filter(|_| want(Endpoint::GetUserShare))
        .filter(|((d, _), _)| in_window(*d))
    {
        emit(
            Endpoint::GetUserShare,
            json!({"ref_date": format_date(*date), "user_source": 0,
            "share_scene": scene, "share_count": t.count, "share_user": t.users()}),
        );
    }
    for ((date, hour, scene), t) in share_hour
        .iter()
        .filter(|_| want(Endpoint::GetUserShareHour))
        .filter(|((d, _, _), _)| in_window(*d))
    {
        emit(
            Endpoint::GetUserShareHour,
            json!({"ref_date": format_date(*date),
            "ref_hour": u32::from(*hour) * 100, "user_source": 0, "share_scene": scene,
            "share_count": t.count, "share_user": t.users()}),
        );
    }

    // Per article.
    for ((date, msgid), t) in day_article
        .iter()
        .filter(|_| want(Endpoint::GetArticleSummary))
        .filter(|((d, _), _)| in_window(*d))
    {
        let Some(send) = sends.get(msgid) else {
            continue;
        };
        let age = datacube_api::date::days_between(send.date, *date);
        let score = t.int.users() + t.ori.users() + t.share.users() + t.share.count + t.fav.count;
        if !(0..7).contains(&age) || score < 3 {
            continue;
        }
        let mut row = obj(json!({"ref_date": format_date(*date), "msgid": msgid,
            "title": send.title, "user_source": 0}));
        t.write(&mut row);
        emit(Endpoint::GetArticleSummary, Value::Object(row));
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
                        openid: _,
                        page: Page::Int,
                        scene,
                        ..
                    } => {
                        total.int.add(user);
                        scenes.entry(*scene).or_default().add(user);
                    }
                    Kind::Read {
                        openid: _,
                        page: Page::Ori,
                        ..
                    } => total.ori.add(user),
                    Kind::Share {
                        openid: _,
                        scene,
                        from,
                        ..
                    } => {
                        total.share.add(user);
                        if *scene == ShareScene::Feed {
                            feed.entry(*from).or_default().add(user);
                        }
                    }
                    Kind::Favorite { .. } => total.fav.add(user),
                    _ => {}
                }
            }
            let mut detail =
                obj(json!({"stat_date": format_date(stat), "target_user": send.target.max(0)}));
            total.write(&mut detail);
            // Field order does not matter here: rows are re-serialized in WeChat's order.
            for scene in ReadScene::ALL {
                let t = scenes.get(scene).unwrap_or(&empty);
                let infix = scene.total_infix();
                detail.insert(format!("int_page_from_{infix}_read_user"), t.users().into());
                detail.insert(format!("int_page_from_{infix}_read_count"), t.count.into());
            }
            for (from, name) in [
                (ShareFrom::Session, "session"),
                (ShareFrom::Feed, "feed"),
                (ShareFrom::Other, "other"),
            ] {
                let t = feed.get(&from).unwrap_or(&empty);
                detail.insert(format!("feed_share_from_{name}_user"), t.users().into());
                detail.insert(format!("feed_share_from_{name}_cnt"), t.count.into());
            }
            details.push(Value::Object(detail));
        }
        emit(
            Endpoint::GetArticleTotal,
            json!({"ref_date": format_date(send.date), "msgid": msgid,
            "title": send.title, "user_source": 0, "details": details}),
        );
    }

    out.into_iter()
        .map(|(endpoint, values)| {
            let mut rows: Vec<Row> = values
                .iter()
                .map(|v| {
                    canonicalize(endpoint, v)
                        .expect("the engine builds rows of the endpoint's shape")
                })
                .collect();
            rows.sort_by(|a, b| {
                (a.ref_date, a.ref_hour, &a.key).cmp(&(b.ref_date, b.ref_hour, &b.key))
            });
            (endpoint, rows)
        })
        .collect()
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
