//! Articles: getuserread[hour] and getusershare[hour] (all articles), getarticlesummary (per
//! article and day), getarticletotal (per send, a cumulative snapshot a day), and what the
//! 2025 endpoints need of the sends (getarticletotaldetail).

use datacube_api::date::{add_days, days_between};
use datacube_api::row::{RowBuilder, Val};
use datacube_api::Endpoint;
use jiff::civil::Date;
use rustc_hash::FxHashMap as HashMap;

use super::{
    article_counts, by_code, by_read_key, emit, flush_day_articles, read_key, share_slot, start,
    start_hour, write_article, ArticleCounts, At, Counts, Label, Out, Period, Window, FAV, INT,
    ORI, READ_ALL, READ_KEYS, SHARE, SHARE_CODES,
};
use crate::event::{Kind, Page, ReadScene, ShareFrom, ShareScene};
use crate::published;

/// One article of a send, as the send said.
pub(super) struct Send<'a> {
    date: Date,
    title: &'a str,
    /// The follower count at the moment of the send.
    target: i64,
    publish_type: u8,
    url: Option<&'a str>,
}

/// The article tallies of the wanted endpoints.
pub(super) struct Articles<'a> {
    /// getuserread, getuserreadhour; getusershare, getusersharehour.
    read_on: [bool; 2],
    share_on: [bool; 2],
    /// getarticlesummary, getarticletotal, getarticletotaldetail.
    day_article_on: bool,
    total_on: bool,
    detail_on: bool,
    sends: HashMap<&'a str, Send<'a>>,
    /// Per article, its events in time order (for getarticletotal[detail]).
    events: HashMap<&'a str, Vec<(Date, &'a Kind, u32)>>,
    /// Reads: 8 keys × 4 counters; shares: 3 scenes.
    read_rows: [Vec<(Label, u32, ArticleCounts)>; 2],
    read_periods: [Period<Label>; 2],
    share_rows: [Vec<(Label, u32, Counts)>; 2],
    share_periods: [Period<Label>; 2],
    /// Per article and day: the day's articles, each with 4 counters.
    day_article_rows: Vec<(Date, &'a str, ArticleCounts)>,
    day_articles: Vec<&'a str>,
    day_article_index: HashMap<&'a str, usize>,
    day_article_period: Period<Date>,
    /// Users who read (int page) an article today, and which: a follow after it is a
    /// `read_subscribe_user` of those articles.
    read_today: HashMap<u32, Vec<&'a str>>,
}

impl<'a> Articles<'a> {
    pub(super) fn new(want: impl Fn(Endpoint) -> bool) -> Articles<'a> {
        Articles {
            read_on: [Endpoint::GetUserRead, Endpoint::GetUserReadHour].map(&want),
            share_on: [Endpoint::GetUserShare, Endpoint::GetUserShareHour].map(&want),
            day_article_on: want(Endpoint::GetArticleSummary),
            total_on: want(Endpoint::GetArticleTotal),
            detail_on: want(Endpoint::GetArticleTotalDetail),
            sends: HashMap::default(),
            events: HashMap::default(),
            read_rows: Default::default(),
            read_periods: std::array::from_fn(|_| Period::new(READ_KEYS.len() * 4)),
            share_rows: Default::default(),
            share_periods: std::array::from_fn(|_| Period::new(SHARE_CODES.len())),
            day_article_rows: Vec::new(),
            day_articles: Vec::new(),
            day_article_index: HashMap::default(),
            day_article_period: Period::new(0),
            read_today: HashMap::default(),
        }
    }

    /// Whether the articles' events are kept one by one (getarticletotal[detail]).
    fn per_article(&self) -> bool {
        self.total_on || self.detail_on
    }

    /// A new China day began.
    pub(super) fn new_day(&mut self) {
        self.read_today.clear();
    }

    /// Keeps an article's event for the per-article endpoints.
    pub(super) fn keep(&mut self, date: Date, kind: &'a Kind, user: u32) {
        if !self.per_article() {
            return;
        }
        let Some(msgid) = kind.article() else {
            return;
        };
        self.events
            .entry(msgid)
            .or_default()
            .push((date, kind, user));
        if self.detail_on {
            if let Kind::Read {
                page: Page::Int, ..
            } = kind
            {
                let read = self.read_today.entry(user).or_default();
                if !read.contains(&msgid) {
                    read.push(msgid);
                }
            }
        }
    }

    /// A follow: after reading articles today, a mark in each of them.
    pub(super) fn followed(&mut self, date: Date, kind: &'a Kind, user: u32) {
        if let Some(read) = self.read_today.get(&user) {
            for msgid in read {
                self.events
                    .entry(msgid)
                    .or_default()
                    .push((date, kind, user));
            }
        }
    }

    /// A send (or a publication): the first one of an article counts.
    pub(super) fn publish(
        &mut self,
        date: Date,
        kind: &'a Kind,
        followers: i64,
        published_days: &mut published::Days<'a>,
    ) {
        let (msgid, title, publish_type, url) = kind.publish().expect("a publish event");
        self.sends.entry(msgid).or_insert_with(|| {
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

    /// A read, a share or a favourite of `msgid`.
    pub(super) fn absorb(&mut self, at: At, kind: &'a Kind, msgid: &'a str, user: u32) {
        // Slots of the all-articles tallies: key × 4 + counter. The original page and
        // favourites have only the all-channels figure.
        let (counter, scene_key) = match kind {
            Kind::Read {
                page: Page::Int,
                scene,
                ..
            } => (INT, Some(read_key(*scene))),
            Kind::Read { .. } => (ORI, None),
            Kind::Share { from, .. } => (SHARE, Some(read_key(from.read_scene()))),
            _ => (FAV, None),
        };
        let labels = [(at.date, 0), (at.date, at.hour)];
        for (k, label) in labels.into_iter().enumerate() {
            if self.read_on[k] {
                let period = &mut self.read_periods[k];
                period.enter(label, &mut by_read_key(&mut self.read_rows[k]));
                if let Some(key) = scene_key {
                    period.add(key * 4 + counter, user);
                }
                period.add(READ_ALL * 4 + counter, user);
            }
        }
        if let Kind::Share { scene, .. } = kind {
            for (k, label) in labels.into_iter().enumerate() {
                if self.share_on[k] {
                    let period = &mut self.share_periods[k];
                    period.enter(label, &mut by_code(&mut self.share_rows[k], &SHARE_CODES));
                    period.add(share_slot(*scene), user);
                }
            }
        }
        if self.day_article_on {
            if self.day_article_period.label != Some(at.date) {
                flush_day_articles(
                    &mut self.day_article_period,
                    &mut self.day_articles,
                    &mut self.day_article_index,
                    &mut self.day_article_rows,
                );
                self.day_article_period.label = Some(at.date);
            }
            let next = self.day_articles.len();
            let a = *self.day_article_index.entry(msgid).or_insert(next);
            if a == next {
                self.day_articles.push(msgid);
                self.day_article_period
                    .slots
                    .extend_from_slice(&[Counts::default(); 4]);
            }
            self.day_article_period.add(a * 4 + counter, user);
        }
    }

    /// Hands the last periods over.
    pub(super) fn finish(&mut self) {
        for (period, rows) in self.read_periods.iter_mut().zip(&mut self.read_rows) {
            period.finish(&mut by_read_key(rows));
        }
        for (period, rows) in self.share_periods.iter_mut().zip(&mut self.share_rows) {
            period.finish(&mut by_code(rows, &SHARE_CODES));
        }
        flush_day_articles(
            &mut self.day_article_period,
            &mut self.day_articles,
            &mut self.day_article_index,
            &mut self.day_article_rows,
        );
    }

    /// getuserread[hour], getusershare[hour], getarticlesummary and getarticletotal.
    pub(super) fn emit(&self, out: &mut Out, window: &Window) {
        self.emit_reads_and_shares(out, window);
        // Per article: read on a day within 7 days of its send, with a score of 3 at least.
        for (date, msgid, c) in self.day_article_rows.iter().filter(|r| window.days(r.0)) {
            let Some(send) = self.sends.get(msgid) else {
                continue;
            };
            let age = days_between(send.date, *date);
            let score =
                c[INT].users + c[ORI].users + c[SHARE].users + c[SHARE].count + c[FAV].count;
            if !(0..7).contains(&age) || score < 3 {
                continue;
            }
            let e = Endpoint::GetArticleSummary;
            let mut b = start(e, *date);
            b.field("msgid", Val::Text(msgid))
                .field("title", Val::Text(send.title))
                .field("user_source", Val::Int(0));
            write_article(&mut b, c);
            emit(out, b, e);
        }
        if self.total_on {
            for (msgid, send) in self.sent_in(window) {
                let events = self.events.get(msgid).map_or(&[][..], Vec::as_slice);
                emit(
                    out,
                    total_row(msgid, send, events, window.last),
                    Endpoint::GetArticleTotal,
                );
            }
        }
    }

    fn emit_reads_and_shares(&self, out: &mut Out, window: &Window) {
        for (k, endpoint) in [(0, Endpoint::GetUserRead), (1, Endpoint::GetUserReadHour)] {
            for ((date, hour), source, c) in
                self.read_rows[k].iter().filter(|r| window.days(r.0 .0))
            {
                let mut b = if k == 1 {
                    start_hour(endpoint, *date, *hour)
                } else {
                    start(endpoint, *date)
                };
                b.field("user_source", Val::Int((*source).into()));
                write_article(&mut b, c);
                emit(out, b, endpoint);
            }
        }
        for (k, endpoint) in [(0, Endpoint::GetUserShare), (1, Endpoint::GetUserShareHour)] {
            for ((date, hour), scene, c) in
                self.share_rows[k].iter().filter(|r| window.days(r.0 .0))
            {
                let mut b = if k == 1 {
                    start_hour(endpoint, *date, *hour)
                } else {
                    start(endpoint, *date)
                };
                b.field("user_source", Val::Int(0))
                    .field("share_scene", Val::Int((*scene).into()))
                    .field("share_count", Val::Int(c.count))
                    .field("share_user", Val::Int(c.users));
                emit(out, b, endpoint);
            }
        }
    }

    /// The articles sent in the window, by send day and msgid.
    fn sent_in(&self, window: &Window) -> Vec<(&'a str, &Send<'a>)> {
        let mut sent: Vec<(&'a str, &Send<'a>)> = self
            .sends
            .iter()
            .filter(|(_, s)| window.days(s.date))
            .map(|(msgid, s)| (*msgid, s))
            .collect();
        sent.sort_by_key(|(msgid, s)| (s.date, *msgid));
        sent
    }

    /// getarticletotaldetail: each article published in the window, a snapshot a day.
    pub(super) fn emit_total_detail(&self, out: &mut Out, window: &Window) {
        if !self.detail_on {
            return;
        }
        for (msgid, send) in self.sent_in(window) {
            let events = self.events.get(msgid).map_or(&[][..], Vec::as_slice);
            let article = published::Sent {
                msgid,
                date: send.date,
                title: send.title,
                url: send.url,
                publish_type: send.publish_type,
                target: send.target.max(0) as u64,
            };
            let row = published::total_detail(&article, events, window.last);
            out.entry(Endpoint::GetArticleTotalDetail)
                .or_default()
                .push(row);
        }
    }
}

/// Slots of a getarticletotal tally: the 4 article counters, the 7 read scenes, the 3 origins
/// of Moments shares.
const SCENE0: usize = 4;
const FEED0: usize = SCENE0 + 7;

fn scene_slot(s: ReadScene) -> usize {
    SCENE0 + ReadScene::ALL.iter().position(|x| *x == s).unwrap_or(0)
}

fn feed_slot(f: ShareFrom) -> usize {
    FEED0 + ShareFrom::ALL.iter().position(|x| *x == f).unwrap_or(0)
}

/// One getarticletotal row: the send, with a cumulative snapshot a day from the send day to 6
/// days later or `last`. `events` are the article's, in time order.
fn total_row(msgid: &str, send: &Send, events: &[(Date, &Kind, u32)], last: Date) -> RowBuilder {
    let mut tally: Period<()> = Period::new(FEED0 + 3);
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
        details.push(snapshot(stat, send.target, &tally.slots));
    }
    tally.finish(&mut |_, _| {});
    let mut b = start(Endpoint::GetArticleTotal, send.date);
    b.field("msgid", Val::Text(msgid))
        .field("title", Val::Text(send.title))
        .field("user_source", Val::Int(0))
        .field("details", Val::List(&details));
    b
}

/// One day's snapshot of a getarticletotal row, in the order of WeChat's detail shape (the
/// scenes of 2022's sample, then the feed shares, then the scenes added later).
fn snapshot(stat: Date, target: i64, t: &[Counts]) -> String {
    let mut d = RowBuilder::detail();
    d.field("stat_date", Val::Date(stat))
        .field("target_user", Val::Int(target.max(0) as u64));
    write_article(&mut d, &article_counts(t));
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
    d.finish_detail()
}
