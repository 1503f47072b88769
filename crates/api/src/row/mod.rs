//! Row shapes of the 21 endpoints, and the canonical form datacube stores and serves.
//!
//! A row is validated against its endpoint's [`Shape`] (required fields present, types right)
//! and re-serialized compactly in WeChat's field order. The natural key of a row —
//! `(ref_date, ref_hour, key)` — decides upserts and the order rows are served in.
//!
//! Fields WeChat sends without documenting them (`user_source: 0` on most endpoints) are
//! optional here: a row keeps them when it has them, at the position real responses show.
//! Fields no shape lists — WeChat adds some without notice — are kept verbatim at the place
//! they came in, or refused ([`NewFields`]).
//!
//! # Layout
//! - this file: the shapes, [`Row`], and the `{"list":[…]}` bodies served;
//! - `canonical`: validating what comes from outside (imports, mirrored answers):
//!   [`parse_list`], [`canonicalize`], [`trim_snapshots`];
//! - `builder`: [`RowBuilder`], rows built in canonical form by code that computes them.

mod builder;
mod canonical;

pub use builder::{RowBuilder, Val};
pub use canonical::{canonicalize, parse_list, trim_snapshots, ListError, NewFields, Parsed};

use std::fmt::Write as _;

use jiff::civil::Date;

use crate::date;
use crate::endpoint::Endpoint;

/// The type of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `"YYYY-MM-DD"`.
    Date,
    /// `ref_hour`: hour × 100, 0..=2300.
    Hour,
    /// A non-negative JSON integer.
    Int,
    /// A non-negative JSON number, kept as written (rates and times of the 2025 endpoints:
    /// `0.0271002`).
    Float,
    /// A JSON string.
    Text,
    /// A nested object of this shape (the 2025 endpoints' `detail`).
    Object(&'static Shape),
    /// An array of objects of this shape (`details`, `detail_list`, `read_user_source`,
    /// `read_jump_position`). A lone object is accepted and kept as it is: one source types
    /// `read_jump_position` so (2025 reference §9.3).
    List(&'static Shape),
}

/// One field of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The JSON key.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Whether every row must have it. Optional fields are the undocumented ones.
    pub required: bool,
    /// Whether it belongs to the row's natural key (besides `ref_date` and `ref_hour`).
    pub key: bool,
}

/// The fields of one endpoint's rows, in WeChat's order.
#[derive(Debug, PartialEq, Eq)]
pub struct Shape {
    /// A name for descriptions of the API (OpenAPI schema names): `UserSummaryRow`,
    /// `SceneUsers`.
    pub name: &'static str,
    /// Top-level fields.
    pub fields: &'static [Field],
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: true,
        key: false,
    }
}
const fn key(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: true,
        key: true,
    }
}
const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
        key: false,
    }
}

const REF_DATE: Field = req("ref_date", Kind::Date);
const REF_HOUR: Field = req("ref_hour", Kind::Hour);
/// Undocumented, always 0 in real responses (reference §7 item 2).
const USER_SOURCE_0: Field = opt("user_source", Kind::Int);

macro_rules! counters {
    () => {
        [
            req("int_page_read_user", Kind::Int),
            req("int_page_read_count", Kind::Int),
            req("ori_page_read_user", Kind::Int),
            req("ori_page_read_count", Kind::Int),
            req("share_user", Kind::Int),
            req("share_count", Kind::Int),
            req("add_to_fav_user", Kind::Int),
            req("add_to_fav_count", Kind::Int),
        ]
    };
}
const C: [Field; 8] = counters!();

static USER_SUMMARY: Shape = Shape {
    name: "UserSummaryRow",
    fields: &[
        REF_DATE,
        key("user_source", Kind::Int),
        req("new_user", Kind::Int),
        req("cancel_user", Kind::Int),
    ],
};
static USER_CUMULATE: Shape = Shape {
    name: "UserCumulateRow",
    fields: &[REF_DATE, USER_SOURCE_0, req("cumulate_user", Kind::Int)],
};
static ARTICLE_SUMMARY: Shape = Shape {
    name: "ArticleSummaryRow",
    fields: &[
        REF_DATE,
        key("msgid", Kind::Text),
        req("title", Kind::Text),
        USER_SOURCE_0,
        C[0],
        C[1],
        C[2],
        C[3],
        C[4],
        C[5],
        C[6],
        C[7],
    ],
};
static ARTICLE_TOTAL: Shape = Shape {
    name: "ArticleTotalRow",
    fields: &[
        REF_DATE,
        key("msgid", Kind::Text),
        req("title", Kind::Text),
        USER_SOURCE_0,
        req("details", Kind::List(&ARTICLE_TOTAL_DETAIL)),
    ],
};
/// getarticletotal `details[]`, in the order of the 2022 real response; the kanyikan and
/// souyisou pairs were added later and their position is unconfirmed (reference §8 row 16).
pub static ARTICLE_TOTAL_DETAIL: Shape = Shape {
    name: "ArticleTotalSnapshot",
    fields: &[
        req("stat_date", Kind::Date),
        req("target_user", Kind::Int),
        C[0],
        C[1],
        C[2],
        C[3],
        C[4],
        C[5],
        C[6],
        C[7],
        opt("int_page_from_session_read_user", Kind::Int),
        opt("int_page_from_session_read_count", Kind::Int),
        opt("int_page_from_hist_msg_read_user", Kind::Int),
        opt("int_page_from_hist_msg_read_count", Kind::Int),
        opt("int_page_from_feed_read_user", Kind::Int),
        opt("int_page_from_feed_read_count", Kind::Int),
        opt("int_page_from_friends_read_user", Kind::Int),
        opt("int_page_from_friends_read_count", Kind::Int),
        opt("int_page_from_other_read_user", Kind::Int),
        opt("int_page_from_other_read_count", Kind::Int),
        opt("feed_share_from_session_user", Kind::Int),
        opt("feed_share_from_session_cnt", Kind::Int),
        opt("feed_share_from_feed_user", Kind::Int),
        opt("feed_share_from_feed_cnt", Kind::Int),
        opt("feed_share_from_other_user", Kind::Int),
        opt("feed_share_from_other_cnt", Kind::Int),
        opt("int_page_from_kanyikan_read_user", Kind::Int),
        opt("int_page_from_kanyikan_read_count", Kind::Int),
        opt("int_page_from_souyisou_read_user", Kind::Int),
        opt("int_page_from_souyisou_read_count", Kind::Int),
    ],
};
static USER_READ: Shape = Shape {
    name: "UserReadRow",
    fields: &[
        REF_DATE,
        key("user_source", Kind::Int),
        C[0],
        C[1],
        C[2],
        C[3],
        C[4],
        C[5],
        C[6],
        C[7],
    ],
};
static USER_READ_HOUR: Shape = Shape {
    name: "UserReadHourRow",
    fields: &[
        REF_DATE,
        REF_HOUR,
        key("user_source", Kind::Int),
        C[0],
        C[1],
        C[2],
        C[3],
        C[4],
        C[5],
        C[6],
        C[7],
        // Seen by one SDK author around 2015, always 0; absent from the 2020 sample.
        opt("total_online_time", Kind::Int),
    ],
};
static USER_SHARE: Shape = Shape {
    name: "UserShareRow",
    fields: &[
        REF_DATE,
        USER_SOURCE_0,
        key("share_scene", Kind::Int),
        req("share_count", Kind::Int),
        req("share_user", Kind::Int),
    ],
};
static USER_SHARE_HOUR: Shape = Shape {
    name: "UserShareHourRow",
    fields: &[
        REF_DATE,
        REF_HOUR,
        USER_SOURCE_0,
        key("share_scene", Kind::Int),
        req("share_count", Kind::Int),
        req("share_user", Kind::Int),
    ],
};
static UPSTREAM_MSG: Shape = Shape {
    name: "UpstreamMsgRow",
    fields: &[
        REF_DATE,
        USER_SOURCE_0,
        key("msg_type", Kind::Int),
        req("msg_user", Kind::Int),
        req("msg_count", Kind::Int),
    ],
};
static UPSTREAM_MSG_HOUR: Shape = Shape {
    name: "UpstreamMsgHourRow",
    fields: &[
        REF_DATE,
        REF_HOUR,
        USER_SOURCE_0,
        key("msg_type", Kind::Int),
        req("msg_user", Kind::Int),
        req("msg_count", Kind::Int),
    ],
};
static UPSTREAM_MSG_DIST: Shape = Shape {
    name: "UpstreamMsgDistRow",
    fields: &[
        REF_DATE,
        USER_SOURCE_0,
        key("count_interval", Kind::Int),
        req("msg_user", Kind::Int),
    ],
};
static INTERFACE_SUMMARY: Shape = Shape {
    name: "InterfaceSummaryRow",
    fields: &[
        REF_DATE,
        req("callback_count", Kind::Int),
        req("fail_count", Kind::Int),
        req("total_time_cost", Kind::Int),
        req("max_time_cost", Kind::Int),
    ],
};
static INTERFACE_SUMMARY_HOUR: Shape = Shape {
    name: "InterfaceSummaryHourRow",
    fields: &[
        REF_DATE,
        REF_HOUR,
        req("callback_count", Kind::Int),
        req("fail_count", Kind::Int),
        req("total_time_cost", Kind::Int),
        req("max_time_cost", Kind::Int),
    ],
};

// The 2025 "published content" endpoints (2025 reference §2–5). Fields every source and the
// readable part of the official tables agree on are required; those only the SDK
// transcriptions give are optional, so that an answer without them still mirrors.

/// `read_user_source[]`: readers by scene; `scene_desc` is a Chinese label (§1).
pub static SCENE_USERS: Shape = Shape {
    name: "SceneUsers",
    fields: &[req("user_count", Kind::Int), req("scene_desc", Kind::Text)],
};
/// `read_jump_position[]`: the share of readers who left in each fifth of the article.
pub static JUMP_POSITION: Shape = Shape {
    name: "JumpPosition",
    fields: &[req("position", Kind::Int), req("rate", Kind::Float)],
};
/// getarticleread's `detail`.
pub static ARTICLE_READ_DETAIL: Shape = Shape {
    name: "ArticleReadDetail",
    fields: &[
        req("read_user", Kind::Int),
        req("read_user_source", Kind::List(&SCENE_USERS)),
    ],
};
/// getarticleshare's `detail`.
pub static ARTICLE_SHARE_DETAIL: Shape = Shape {
    name: "ArticleShareDetail",
    fields: &[req("share_user", Kind::Int)],
};
/// getbizsummary's `detail`.
pub static BIZ_SUMMARY_DETAIL: Shape = Shape {
    name: "BizSummaryDetail",
    fields: &[
        req("read_user", Kind::Int),
        req("read_user_source", Kind::List(&SCENE_USERS)),
        req("share_user", Kind::Int),
        req("zaikan_user", Kind::Int),
        req("like_user", Kind::Int),
        req("comment_count", Kind::Int),
        opt("collection_user", Kind::Int),
        opt("redirect_ori_page_user", Kind::Int),
        opt("send_page_count", Kind::Int),
        // Listed by one source only (§9.6); kept when an answer has it.
        opt("read_subscribe_user", Kind::Int),
    ],
};
/// getarticletotaldetail's `detail_list[]`: cumulative from the publish day to `stat_date`.
pub static PUBLISHED_DETAIL: Shape = Shape {
    name: "PublishedSnapshot",
    fields: &[
        req("stat_date", Kind::Date),
        req("read_user", Kind::Int),
        req("read_user_source", Kind::List(&SCENE_USERS)),
        req("share_user", Kind::Int),
        opt("zaikan_user", Kind::Int),
        opt("like_user", Kind::Int),
        opt("comment_count", Kind::Int),
        opt("collection_user", Kind::Int),
        opt("praise_money", Kind::Int),
        opt("read_subscribe_user", Kind::Int),
        opt("read_delivery_rate", Kind::Float),
        opt("read_finish_rate", Kind::Float),
        opt("read_avg_activetime", Kind::Float),
        opt("read_jump_position", Kind::List(&JUMP_POSITION)),
    ],
};
static ARTICLE_READ: Shape = Shape {
    name: "ArticleReadRow",
    fields: &[
        REF_DATE,
        key("msgid", Kind::Text),
        req("detail", Kind::Object(&ARTICLE_READ_DETAIL)),
    ],
};
static ARTICLE_SHARE: Shape = Shape {
    name: "ArticleShareRow",
    fields: &[
        REF_DATE,
        key("msgid", Kind::Text),
        req("detail", Kind::Object(&ARTICLE_SHARE_DETAIL)),
    ],
};
static BIZ_SUMMARY: Shape = Shape {
    name: "BizSummaryRow",
    fields: &[REF_DATE, req("detail", Kind::Object(&BIZ_SUMMARY_DETAIL))],
};
static ARTICLE_TOTAL_DETAIL_2025: Shape = Shape {
    name: "ArticleTotalDetailRow",
    fields: &[
        REF_DATE,
        key("msgid", Kind::Text),
        req("publish_type", Kind::Int),
        // In the official example, not in its field table (§9.5).
        opt("title", Kind::Text),
        opt("content_url", Kind::Text),
        req("detail_list", Kind::List(&PUBLISHED_DETAIL)),
    ],
};

pub(crate) fn shape_of(endpoint: Endpoint) -> &'static Shape {
    match endpoint {
        Endpoint::GetUserSummary => &USER_SUMMARY,
        Endpoint::GetUserCumulate => &USER_CUMULATE,
        Endpoint::GetArticleSummary => &ARTICLE_SUMMARY,
        Endpoint::GetArticleTotal => &ARTICLE_TOTAL,
        Endpoint::GetUserRead => &USER_READ,
        Endpoint::GetUserReadHour => &USER_READ_HOUR,
        Endpoint::GetUserShare => &USER_SHARE,
        Endpoint::GetUserShareHour => &USER_SHARE_HOUR,
        Endpoint::GetUpstreamMsg | Endpoint::GetUpstreamMsgWeek | Endpoint::GetUpstreamMsgMonth => {
            &UPSTREAM_MSG
        }
        Endpoint::GetUpstreamMsgHour => &UPSTREAM_MSG_HOUR,
        Endpoint::GetUpstreamMsgDist
        | Endpoint::GetUpstreamMsgDistWeek
        | Endpoint::GetUpstreamMsgDistMonth => &UPSTREAM_MSG_DIST,
        Endpoint::GetInterfaceSummary => &INTERFACE_SUMMARY,
        Endpoint::GetInterfaceSummaryHour => &INTERFACE_SUMMARY_HOUR,
        Endpoint::GetArticleRead => &ARTICLE_READ,
        Endpoint::GetArticleShare => &ARTICLE_SHARE,
        Endpoint::GetBizSummary => &BIZ_SUMMARY,
        Endpoint::GetArticleTotalDetail => &ARTICLE_TOTAL_DETAIL_2025,
    }
}

/// A validated row in canonical form, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// `ref_date` (the Monday for weeks, the 1st for months; the send day for getarticletotal).
    pub ref_date: Date,
    /// `ref_hour / 100` for hourly endpoints; -1 for the others.
    pub ref_hour: i16,
    /// The rest of the natural key, encoded so that string order is WeChat's row order
    /// (numbers ascending, `99999999` last). Empty for one-row-per-period endpoints.
    pub key: String,
    /// The compact JSON object, fields in WeChat's order.
    pub json: String,
}

/// Why a row does not fit its endpoint's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RowError {
    /// The offending field (`details[2].stat_date` for nested ones), when one is to blame.
    pub field: Option<String>,
    /// What is wrong, for a person.
    pub message: String,
}

fn field_error(field: &str, message: impl Into<String>) -> RowError {
    RowError {
        field: Some(field.to_owned()),
        message: format!("field `{field}`: {}", message.into()),
    }
}

/// `2247483650_1` sorts by its two numbers; any other text sorts after them, as text.
fn push_text_key(key: &mut String, text: &str) {
    // Only digits written as numbers are (`+1_1` and `01_1` are text, not 1_1, or two
    // msgids would share a key).
    let number = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
    };
    if let Some((a, b)) = text.split_once('_') {
        if number(a) && number(b) {
            if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u32>()) {
                let _ = write!(key, "{a:020}_{b:010}");
                return;
            }
        }
    }
    key.push('~');
    key.push_str(text);
}

fn push_key_sep(key: &mut String) {
    if !key.is_empty() {
        key.push('|');
    }
}

fn push_date(out: &mut String, d: Date) {
    let (y, m, day) = (d.year(), d.month(), d.day());
    if !(0..=9999).contains(&y) {
        let _ = write!(out, "\"{y:04}-{m:02}-{day:02}\"");
        return;
    }
    // `"YYYY-MM-DD"` digit by digit: this runs for every row built.
    let (y, m, day) = (y as u16, m as u8, day as u8);
    let digit = |n: u16| char::from(b'0' + (n % 10) as u8);
    out.push('"');
    out.extend([digit(y / 1000), digit(y / 100), digit(y / 10), digit(y)]);
    out.push('-');
    out.extend([digit(u16::from(m) / 10), digit(u16::from(m))]);
    out.push('-');
    out.extend([digit(u16::from(day) / 10), digit(u16::from(day))]);
    out.push('"');
}

/// The array of cumulative snapshots of `endpoint`'s rows, if it has one: getarticletotal's
/// `details`, getarticletotaldetail's `detail_list`.
pub fn snapshots_field(endpoint: Endpoint) -> Option<&'static str> {
    match endpoint {
        Endpoint::GetArticleTotal => Some("details"),
        Endpoint::GetArticleTotalDetail => Some("detail_list"),
        _ => None,
    }
}

/// A snapshot (an element of `details` or `detail_list`, canonical, so starting
/// `{"stat_date":"YYYY-MM-DD"`) with its `stat_date` changed to `stat`: a day without events
/// repeats the day before.
pub fn redate_snapshot(previous: &str, stat: Date) -> String {
    const PREFIX: &str = "{\"stat_date\":\"";
    debug_assert!(previous.starts_with(PREFIX), "{previous}");
    let mut out = String::with_capacity(previous.len());
    out.push_str(PREFIX);
    out.push_str(&date::format_date(stat));
    out.push_str(&previous[PREFIX.len() + 10..]);
    out
}

/// Whether an answer of `endpoint` for the days from `begin` can still change when `last_ready`
/// is the last ready day: the 2025 endpoints' `is_delay` as datacube defines it
/// (docs/compatibility.md). True only for getarticletotaldetail while the publish day's
/// 30-day window is open: its `detail_list` will gain snapshots. A served day of the other
/// endpoints is complete (every event accepted by then is counted).
pub fn is_delay(endpoint: Endpoint, begin: Date, last_ready: Date) -> bool {
    endpoint == Endpoint::GetArticleTotalDetail
        && date::add_days(begin, crate::endpoint::PUBLISHED_WINDOW_DAYS - 1) > last_ready
}

/// A `{"list":[…]}` body as `endpoint` answers it: the 2025 endpoints add `"is_delay"`.
pub fn answer_body(endpoint: Endpoint, mut list_body: String, is_delay: bool) -> String {
    if endpoint.generation() == crate::Generation::Published && list_body.ends_with('}') {
        list_body.pop();
        list_body.push_str(if is_delay {
            ",\"is_delay\":true}"
        } else {
            ",\"is_delay\":false}"
        });
    }
    list_body
}

/// The success body for `rows` (each a canonical JSON object): `{"list":[…]}`.
pub fn list_body<'a>(rows: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("{\"list\":[");
    for (i, row) in rows.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(row);
    }
    out.push_str("]}");
    out
}
