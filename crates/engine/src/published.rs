//! The 2025 "published content" endpoints, computed from events (2025 reference §2–5;
//! definitions in docs/compatibility.md):
//!
//! - getarticleread: every article with int-page readers on a day; `read_user` is its distinct
//!   readers of the day (getarticlesummary's `int_page_read_user`), `read_user_source` the
//!   `全部` entry (the same number) and one entry per scene with readers, each its own
//!   distinct readers — a reader of two scenes counts in both and once in `全部`;
//! - getarticleshare: every article with sharers on a day, `share_user` its distinct sharers;
//! - getbizsummary: the account's day, listed when anything happened that day: distinct
//!   readers (by scene), sharers, 在看 and thumb likers, comments, favouriters, readers of the
//!   original page, and the articles published;
//! - getarticletotaldetail: the articles published on a day, each with one snapshot a day
//!   for 30 days, every figure cumulative from the publish day to `stat_date`.

use std::collections::BTreeMap;

use datacube_api::date::add_days;
use datacube_api::endpoint::PUBLISHED_WINDOW_DAYS;
use datacube_api::row::{
    self, Row, RowBuilder, Val, ARTICLE_READ_DETAIL, ARTICLE_SHARE_DETAIL, BIZ_SUMMARY_DETAIL,
    JUMP_POSITION, PUBLISHED_DETAIL, SCENE_USERS,
};
use datacube_api::Endpoint;
use jiff::civil::Date;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::event::{Kind, Page, ReadScene};
use crate::rollup::Counts;

/// The scenes of `read_user_source`, in the order of WeChat's enumeration (after `全部`).
const SCENES: [ReadScene; 7] = [
    ReadScene::Session,
    ReadScene::Friends,
    ReadScene::Feed,
    ReadScene::History,
    ReadScene::Other,
    ReadScene::Kanyikan,
    ReadScene::Souyisou,
];

// Slots of the tallies: readers (全部), the scenes, sharers — the per-article-and-day part —
// then the figures of getbizsummary and getarticletotaldetail.
const READ: usize = 0;
const SCENE0: usize = 1;
const SHARE: usize = SCENE0 + SCENES.len();
const PER_ARTICLE: usize = SHARE + 1;
const ZAIKAN: usize = PER_ARTICLE;
const LIKE: usize = ZAIKAN + 1;
const COMMENT: usize = LIKE + 1;
const FAV: usize = COMMENT + 1;
const ORI: usize = FAV + 1;
const SUBSCRIBE: usize = ORI + 1;
const SLOTS: usize = SUBSCRIBE + 1;

fn scene_slot(scene: ReadScene) -> usize {
    SCENE0 + SCENES.iter().position(|s| *s == scene).unwrap_or(4)
}

/// The slots an event counts in (a read in two: `全部` and its scene).
fn slots(kind: &Kind) -> &'static [usize] {
    const SCENE_READS: [[usize; 2]; 7] = [
        [READ, SCENE0],
        [READ, SCENE0 + 1],
        [READ, SCENE0 + 2],
        [READ, SCENE0 + 3],
        [READ, SCENE0 + 4],
        [READ, SCENE0 + 5],
        [READ, SCENE0 + 6],
    ];
    match kind {
        Kind::Read {
            page: Page::Int,
            scene,
            ..
        } => &SCENE_READS[scene_slot(*scene) - SCENE0],
        Kind::Read { .. } => &[ORI],
        Kind::Share { .. } => &[SHARE],
        Kind::Favorite { .. } => &[FAV],
        Kind::Like { heart: true, .. } => &[ZAIKAN],
        Kind::Like { heart: false, .. } => &[LIKE],
        Kind::Comment { .. } => &[COMMENT],
        _ => &[],
    }
}

/// Distinct users and events in numbered slots.
#[derive(Default)]
struct Users {
    seen: HashSet<u64>,
    slots: Vec<Counts>,
}

impl Users {
    fn with(slots: usize) -> Users {
        Users {
            seen: HashSet::default(),
            slots: vec![Counts::default(); slots],
        }
    }

    fn add(&mut self, slot: usize, user: u32) {
        let c = &mut self.slots[slot];
        c.count += 1;
        if self.seen.insert(((slot as u64) << 32) | u64::from(user)) {
            c.users += 1;
        }
    }

    fn users(&self, slot: usize) -> u64 {
        self.slots[slot].users
    }

    fn clear(&mut self) {
        self.seen.clear();
        self.slots.fill(Counts::default());
    }
}

/// The day tallies of getarticleread, getarticleshare and getbizsummary. Events come in
/// time order, so each day is tallied once and handed over when the next one starts.
#[derive(Default)]
pub(crate) struct Days<'a> {
    day: Option<Date>,
    articles: Vec<&'a str>,
    index: HashMap<&'a str, usize>,
    per_article: Users,
    account: Option<Users>,
    article_rows: Vec<(Date, &'a str, [u64; PER_ARTICLE])>,
    account_rows: BTreeMap<Date, [Counts; SLOTS]>,
    sends: BTreeMap<Date, u64>,
}

impl<'a> Days<'a> {
    /// Counts one event of `day` (`per_article`: also per article).
    pub(crate) fn absorb(&mut self, day: Date, kind: &'a Kind, user: u32, per_article: bool) {
        let slots = slots(kind);
        if slots.is_empty() {
            return;
        }
        if self.day != Some(day) {
            self.finish();
            self.day = Some(day);
        }
        let account = self.account.get_or_insert_with(|| Users::with(SLOTS));
        for slot in slots {
            account.add(*slot, user);
        }
        if per_article && slots[0] < PER_ARTICLE {
            let msgid = kind.article().expect("an article event");
            let next = self.articles.len();
            let a = *self.index.entry(msgid).or_insert(next);
            if a == next {
                self.articles.push(msgid);
                self.per_article
                    .slots
                    .extend_from_slice(&[Counts::default(); PER_ARTICLE]);
            }
            for slot in slots {
                self.per_article.add(a * PER_ARTICLE + slot, user);
            }
        }
    }

    /// An article was published on `day`.
    pub(crate) fn sent(&mut self, day: Date) {
        *self.sends.entry(day).or_default() += 1;
    }

    /// Hands the current day over.
    pub(crate) fn finish(&mut self) {
        let Some(day) = self.day.take() else {
            return;
        };
        for (a, msgid) in self.articles.iter().enumerate() {
            let mut users = [0; PER_ARTICLE];
            for (slot, u) in users.iter_mut().enumerate() {
                *u = self.per_article.users(a * PER_ARTICLE + slot);
            }
            self.article_rows.push((day, msgid, users));
        }
        self.articles.clear();
        self.index.clear();
        self.per_article.seen.clear();
        self.per_article.slots.clear();
        if let Some(account) = self.account.as_mut() {
            let mut counts = [Counts::default(); SLOTS];
            counts.copy_from_slice(&account.slots);
            self.account_rows.insert(day, counts);
            account.clear();
        }
    }

    /// The rows of days `window` of getarticleread, getarticleshare and getbizsummary (those
    /// `wanted`, in that order).
    pub(crate) fn emit(
        &self,
        out: &mut BTreeMap<Endpoint, Vec<Row>>,
        (first, last): (Date, Date),
        wanted: [bool; 3],
    ) {
        let in_window = |d: Date| d >= first && d <= last;
        for (day, msgid, users) in self.article_rows.iter().filter(|r| in_window(r.0)) {
            if wanted[0] && users[READ] > 0 {
                let e = Endpoint::GetArticleRead;
                let mut detail = RowBuilder::part(e, &ARTICLE_READ_DETAIL);
                detail.field("read_user", Val::Int(users[READ])).field(
                    "read_user_source",
                    Val::List(&scene_sources(e, |slot| users[slot])),
                );
                out.entry(e).or_default().push(article_row(
                    e,
                    *day,
                    msgid,
                    &detail.finish_detail(),
                ));
            }
            if wanted[1] && users[SHARE] > 0 {
                let e = Endpoint::GetArticleShare;
                let mut detail = RowBuilder::part(e, &ARTICLE_SHARE_DETAIL);
                detail.field("share_user", Val::Int(users[SHARE]));
                out.entry(e).or_default().push(article_row(
                    e,
                    *day,
                    msgid,
                    &detail.finish_detail(),
                ));
            }
        }
        if !wanted[2] {
            return;
        }
        let zero = [Counts::default(); SLOTS];
        let days: std::collections::BTreeSet<Date> = self
            .account_rows
            .keys()
            .chain(self.sends.keys())
            .copied()
            .filter(|d| in_window(*d))
            .collect();
        let e = Endpoint::GetBizSummary;
        for day in days {
            let c = self.account_rows.get(&day).unwrap_or(&zero);
            let mut detail = RowBuilder::part(e, &BIZ_SUMMARY_DETAIL);
            detail
                .field("read_user", Val::Int(c[READ].users))
                .field(
                    "read_user_source",
                    Val::List(&scene_sources(e, |slot| c[slot].users)),
                )
                .field("share_user", Val::Int(c[SHARE].users))
                .field("zaikan_user", Val::Int(c[ZAIKAN].users))
                .field("like_user", Val::Int(c[LIKE].users))
                .field("comment_count", Val::Int(c[COMMENT].count))
                .field("collection_user", Val::Int(c[FAV].users))
                .field("redirect_ori_page_user", Val::Int(c[ORI].users))
                .field(
                    "send_page_count",
                    Val::Int(self.sends.get(&day).copied().unwrap_or(0)),
                );
            let detail = detail.finish_detail();
            let mut b = RowBuilder::new(e);
            b.field("ref_date", Val::Date(day))
                .field("detail", Val::Object(&detail));
            out.entry(e).or_default().push(b.finish());
        }
    }
}

/// A getarticleread or getarticleshare row: the day, the article, its `detail`.
fn article_row(e: Endpoint, day: Date, msgid: &str, detail: &str) -> Row {
    let mut b = RowBuilder::new(e);
    b.field("ref_date", Val::Date(day))
        .field("msgid", Val::Text(msgid))
        .field("detail", Val::Object(detail));
    b.finish()
}

/// `read_user_source`: `全部`, then each scene with readers.
fn scene_sources(endpoint: Endpoint, users: impl Fn(usize) -> u64) -> Vec<String> {
    let entry = |n: u64, desc: &str| {
        let mut b = RowBuilder::part(endpoint, &SCENE_USERS);
        b.field("user_count", Val::Int(n))
            .field("scene_desc", Val::Text(desc));
        b.finish_detail()
    };
    let mut out = vec![entry(users(READ), "全部")];
    for (i, scene) in SCENES.iter().enumerate() {
        let n = users(SCENE0 + i);
        if n > 0 {
            out.push(entry(n, scene.scene_desc()));
        }
    }
    out
}

/// An article published in the window, for getarticletotaldetail.
pub(crate) struct Sent<'a> {
    pub(crate) msgid: &'a str,
    pub(crate) date: Date,
    pub(crate) title: &'a str,
    pub(crate) url: Option<&'a str>,
    pub(crate) publish_type: u8,
    /// Followers at the moment of the publish.
    pub(crate) target: u64,
}

/// `a / b` in single precision (WeChat's rates look so: `0.6304348` = 29/46), 0 when `b` is 0.
fn rate(a: u64, b: u64) -> f32 {
    if b == 0 {
        0.0
    } else {
        a as f32 / b as f32
    }
}

/// The fifth of an article a reader left in: 1 for 0–20 %, … 5 for 80–100 %.
fn jump_band(progress: u8) -> usize {
    (usize::from(progress) / 20).clamp(0, 4) + 1
}

/// One getarticletotaldetail row: the article's snapshots from its publish day to 29 days
/// later or `last`, from its events in time order (`events`: the article's events with their
/// day and interned user; a follow among them is a follow after reading it).
///
/// Definitions (docs/compatibility.md): `read_delivery_rate` is the readers who came from
/// the account's message (`公众号消息`) over the followers it was delivered to, 0 for a
/// publish without notification; the finish rate, average time (minutes) and drop-off
/// positions are over the readers who left a `leave` event, each with the furthest point and
/// the total active time of their leaves.
pub(crate) fn total_detail(sent: &Sent, events: &[(Date, &Kind, u32)], last: Date) -> Row {
    let e = Endpoint::GetArticleTotalDetail;
    let mut so_far = SoFar {
        tally: Users::with(SLOTS),
        praise: 0,
        active_ms: 0,
        furthest: HashMap::default(),
    };
    let mut details: Vec<String> = Vec::new();
    let mut next = 0;
    for k in 0..PUBLISHED_WINDOW_DAYS {
        let stat = add_days(sent.date, k);
        if stat > last {
            break;
        }
        let mut changed = false;
        while let Some((date, kind, user)) = events.get(next).filter(|(d, _, _)| *d <= stat) {
            next += 1;
            if *date < sent.date {
                continue;
            }
            changed = true;
            so_far.absorb(kind, *user);
        }
        // A day without events repeats the day before but for its date (most of the 30 days:
        // the tail, and the days still to come).
        if let Some(previous) = details.last().filter(|_| !changed) {
            details.push(row::redate_snapshot(previous, stat));
            continue;
        }
        details.push(so_far.snapshot(sent, stat));
    }
    let mut b = RowBuilder::new(e);
    b.field("ref_date", Val::Date(sent.date))
        .field("msgid", Val::Text(sent.msgid))
        .field("publish_type", Val::Int(sent.publish_type.into()))
        .field("title", Val::Text(sent.title));
    if let Some(url) = sent.url {
        b.field("content_url", Val::Text(url));
    }
    b.field("detail_list", Val::List(&details));
    b.finish()
}

/// What an article's readers did from its publish day up to a day of getarticletotaldetail.
struct SoFar {
    /// Distinct users and events by slot.
    tally: Users,
    /// Tips, in fen.
    praise: u64,
    /// The readers' total active time.
    active_ms: u64,
    /// How far each reader who left a `leave` event read, at the furthest.
    furthest: HashMap<u32, u8>,
}

impl SoFar {
    /// Counts one event of the article, by `user`.
    fn absorb(&mut self, kind: &Kind, user: u32) {
        match kind {
            Kind::Follow { .. } => self.tally.add(SUBSCRIBE, user),
            // Sums saturate at the largest figure a row holds (an import would refuse more).
            Kind::Praise { fen, .. } => {
                self.praise = self
                    .praise
                    .saturating_add(*fen)
                    .min(crate::event::MAX_STATISTIC)
            }
            Kind::Leave {
                active_ms: ms,
                progress,
                ..
            } => {
                self.active_ms = self
                    .active_ms
                    .saturating_add(*ms)
                    .min(crate::event::MAX_STATISTIC);
                let p = self.furthest.entry(user).or_default();
                *p = (*p).max(*progress);
            }
            _ => {
                for slot in slots(kind) {
                    self.tally.add(*slot, user);
                }
            }
        }
    }

    /// The snapshot of `stat`, an element of the row's `detail_list`, as JSON.
    fn snapshot(&self, sent: &Sent, stat: Date) -> String {
        let e = Endpoint::GetArticleTotalDetail;
        let tally = &self.tally;
        let leavers = self.furthest.len() as u64;
        let finished = self.furthest.values().filter(|p| **p >= 100).count() as u64;
        let delivered = if sent.publish_type == 0 {
            sent.target
        } else {
            0
        };
        let avg_minutes = if leavers == 0 {
            0.0
        } else {
            (self.active_ms as f64 / 60_000.0 / leavers as f64) as f32
        };
        let mut d = RowBuilder::part(e, &PUBLISHED_DETAIL);
        d.field("stat_date", Val::Date(stat))
            .field("read_user", Val::Int(tally.users(READ)))
            .field(
                "read_user_source",
                Val::List(&scene_sources(e, |slot| tally.users(slot))),
            )
            .field("share_user", Val::Int(tally.users(SHARE)))
            .field("zaikan_user", Val::Int(tally.users(ZAIKAN)))
            .field("like_user", Val::Int(tally.users(LIKE)))
            .field("comment_count", Val::Int(tally.slots[COMMENT].count))
            .field("collection_user", Val::Int(tally.users(FAV)))
            .field("praise_money", Val::Int(self.praise))
            .field("read_subscribe_user", Val::Int(tally.users(SUBSCRIBE)))
            .field(
                "read_delivery_rate",
                Val::Float(rate(tally.users(scene_slot(ReadScene::Session)), delivered)),
            )
            .field("read_finish_rate", Val::Float(rate(finished, leavers)))
            .field("read_avg_activetime", Val::Float(avg_minutes))
            .field("read_jump_position", Val::List(&self.jump_positions()));
        d.finish_detail()
    }

    /// The `read_jump_position` entries: for each fifth of the article some leavers left in,
    /// their share of the leavers.
    fn jump_positions(&self) -> Vec<String> {
        let e = Endpoint::GetArticleTotalDetail;
        let leavers = self.furthest.len() as u64;
        let mut bands = [0u64; 5];
        for p in self.furthest.values() {
            bands[jump_band(*p) - 1] += 1;
        }
        bands
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| {
                let mut b = RowBuilder::part(e, &JUMP_POSITION);
                b.field("position", Val::Int(i as u64 + 1))
                    .field("rate", Val::Float(rate(*n, leavers)));
                b.finish_detail()
            })
            .collect()
    }
}
