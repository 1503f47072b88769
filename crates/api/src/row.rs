//! Row shapes of the 21 endpoints, and the canonical form datacube stores and serves.
//!
//! A row is validated against its endpoint's [`Shape`] (required fields present, types right,
//! no unknown field) and re-serialized compactly in WeChat's field order. The natural key of
//! a row — `(ref_date, ref_hour, key)` — decides upserts and the order rows are served in.
//!
//! Fields WeChat sends without documenting them (`user_source: 0` on most endpoints) are
//! optional here: a row keeps them when it has them, at the position real responses show.

use std::fmt::Write as _;

use jiff::civil::Date;
use serde_json::{Map, Value};

use crate::date;
use crate::endpoint::{Endpoint, Period};

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
    fields: &[
        REF_DATE,
        key("user_source", Kind::Int),
        req("new_user", Kind::Int),
        req("cancel_user", Kind::Int),
    ],
};
static USER_CUMULATE: Shape = Shape {
    fields: &[REF_DATE, USER_SOURCE_0, req("cumulate_user", Kind::Int)],
};
static ARTICLE_SUMMARY: Shape = Shape {
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
    fields: &[
        REF_DATE,
        USER_SOURCE_0,
        key("share_scene", Kind::Int),
        req("share_count", Kind::Int),
        req("share_user", Kind::Int),
    ],
};
static USER_SHARE_HOUR: Shape = Shape {
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
    fields: &[
        REF_DATE,
        USER_SOURCE_0,
        key("msg_type", Kind::Int),
        req("msg_user", Kind::Int),
        req("msg_count", Kind::Int),
    ],
};
static UPSTREAM_MSG_HOUR: Shape = Shape {
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
    fields: &[
        REF_DATE,
        USER_SOURCE_0,
        key("count_interval", Kind::Int),
        req("msg_user", Kind::Int),
    ],
};
static INTERFACE_SUMMARY: Shape = Shape {
    fields: &[
        REF_DATE,
        req("callback_count", Kind::Int),
        req("fail_count", Kind::Int),
        req("total_time_cost", Kind::Int),
        req("max_time_cost", Kind::Int),
    ],
};
static INTERFACE_SUMMARY_HOUR: Shape = Shape {
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
    fields: &[req("user_count", Kind::Int), req("scene_desc", Kind::Text)],
};
/// `read_jump_position[]`: the share of readers who left in each fifth of the article.
pub static JUMP_POSITION: Shape = Shape {
    fields: &[req("position", Kind::Int), req("rate", Kind::Float)],
};
/// getarticleread's `detail`.
pub static ARTICLE_READ_DETAIL: Shape = Shape {
    fields: &[
        req("read_user", Kind::Int),
        req("read_user_source", Kind::List(&SCENE_USERS)),
    ],
};
/// getarticleshare's `detail`.
pub static ARTICLE_SHARE_DETAIL: Shape = Shape {
    fields: &[req("share_user", Kind::Int)],
};
/// getbizsummary's `detail`.
pub static BIZ_SUMMARY_DETAIL: Shape = Shape {
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
    fields: &[
        REF_DATE,
        key("msgid", Kind::Text),
        req("detail", Kind::Object(&ARTICLE_READ_DETAIL)),
    ],
};
static ARTICLE_SHARE: Shape = Shape {
    fields: &[
        REF_DATE,
        key("msgid", Kind::Text),
        req("detail", Kind::Object(&ARTICLE_SHARE_DETAIL)),
    ],
};
static BIZ_SUMMARY: Shape = Shape {
    fields: &[REF_DATE, req("detail", Kind::Object(&BIZ_SUMMARY_DETAIL))],
};
static ARTICLE_TOTAL_DETAIL_2025: Shape = Shape {
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

/// Validates one row of `endpoint` and returns its canonical form.
pub fn canonicalize(endpoint: Endpoint, value: &Value) -> Result<Row, RowError> {
    let obj = value.as_object().ok_or_else(|| RowError {
        field: None,
        message: format!("a row of {endpoint} must be a JSON object"),
    })?;
    let shape = endpoint.shape();
    let mut json = String::with_capacity(128);
    write_object(endpoint, shape, obj, "", &mut json)?;

    let ref_date = obj
        .get("ref_date")
        .and_then(Value::as_str)
        .and_then(date::parse_date)
        .expect("validated by write_object");
    match endpoint.period() {
        Period::Week if !date::is_monday(ref_date) => {
            return Err(field_error(
                "ref_date",
                format!(
                    "{} is not a Monday; {endpoint} labels each week with its Monday",
                    date::format_date(ref_date)
                ),
            ));
        }
        Period::Month if ref_date.day() != 1 => {
            return Err(field_error(
                "ref_date",
                format!(
                    "{} is not the 1st; {endpoint} labels each month with its 1st",
                    date::format_date(ref_date)
                ),
            ));
        }
        _ => {}
    }
    let ref_hour = match obj.get("ref_hour").and_then(Value::as_i64) {
        Some(h) => (h / 100) as i16,
        None => -1,
    };
    let mut key = String::new();
    for field in shape.fields.iter().filter(|f| f.key) {
        if !key.is_empty() {
            key.push('|');
        }
        match (field.kind, &obj[field.name]) {
            (Kind::Int, v) => {
                let _ = write!(key, "{:020}", v.as_i64().unwrap_or_default());
            }
            (_, v) => push_text_key(&mut key, v.as_str().unwrap_or_default()),
        }
    }
    Ok(Row {
        ref_date,
        ref_hour,
        key,
        json,
    })
}

/// `2247483650_1` sorts by its two numbers; any other text sorts after them, as text.
fn push_text_key(key: &mut String, text: &str) {
    if let Some((a, b)) = text.split_once('_') {
        if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u32>()) {
            let _ = write!(key, "{a:020}_{b:010}");
            return;
        }
    }
    key.push('~');
    key.push_str(text);
}

fn write_object(
    endpoint: Endpoint,
    shape: &Shape,
    obj: &Map<String, Value>,
    path: &str,
    out: &mut String,
) -> Result<(), RowError> {
    for name in obj.keys() {
        if !shape.fields.iter().any(|f| f.name == name) {
            return Err(field_error(
                &format!("{path}{name}"),
                format!("{endpoint} has no such field"),
            ));
        }
    }
    out.push('{');
    let mut first = true;
    for field in shape.fields {
        let full = format!("{path}{}", field.name);
        let Some(value) = obj.get(field.name) else {
            if field.required {
                return Err(field_error(&full, "missing"));
            }
            continue;
        };
        if !first {
            out.push(',');
        }
        first = false;
        out.push('"');
        out.push_str(field.name);
        out.push_str("\":");
        match field.kind {
            Kind::Date => {
                let s = value
                    .as_str()
                    .ok_or_else(|| field_error(&full, "must be a \"YYYY-MM-DD\" string"))?;
                let d = date::parse_date(s).ok_or_else(|| {
                    field_error(&full, format!("{s:?} is not a real YYYY-MM-DD date"))
                })?;
                let _ = write!(out, "\"{}\"", date::format_date(d));
            }
            Kind::Hour => {
                let h = value
                    .as_i64()
                    .filter(|h| (0..=2300).contains(h) && h % 100 == 0)
                    .ok_or_else(|| {
                        field_error(
                            &full,
                            format!("{value} is not an hour × 100 (0, 100, … 2300)"),
                        )
                    })?;
                let _ = write!(out, "{h}");
            }
            Kind::Int => {
                let n = value.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
                    field_error(&full, format!("{value} is not a non-negative integer"))
                })?;
                let _ = write!(out, "{n}");
            }
            Kind::Text => {
                let s = value
                    .as_str()
                    .ok_or_else(|| field_error(&full, format!("{value} is not a string")))?;
                if field.key && s.is_empty() {
                    return Err(field_error(&full, "must not be empty"));
                }
                out.push_str(&serde_json::to_string(s).expect("a string serializes"));
            }
            Kind::Float => {
                if !value.as_f64().is_some_and(|x| x.is_finite() && x >= 0.0) {
                    return Err(field_error(
                        &full,
                        format!("{value} is not a non-negative number"),
                    ));
                }
                // As written: serde_json prints a parsed number in its shortest form.
                let _ = write!(out, "{value}");
            }
            Kind::Object(inner) => {
                let item = value
                    .as_object()
                    .ok_or_else(|| field_error(&full, "must be a JSON object"))?;
                write_object(endpoint, inner, item, &format!("{full}."), out)?;
            }
            Kind::List(inner) => {
                if let Some(item) = value.as_object() {
                    write_object(endpoint, inner, item, &format!("{full}."), out)?;
                    continue;
                }
                let items = value
                    .as_array()
                    .ok_or_else(|| field_error(&full, "must be an array"))?;
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let item_path = format!("{full}[{i}].");
                    let item = item.as_object().ok_or_else(|| {
                        field_error(&format!("{full}[{i}]"), "must be a JSON object")
                    })?;
                    write_object(endpoint, inner, item, &item_path, out)?;
                }
                out.push(']');
            }
        }
    }
    out.push('}');
    Ok(())
}

/// One field's value, for [`RowBuilder`].
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    /// A `YYYY-MM-DD` date.
    Date(Date),
    /// `ref_hour`, given as the hour 0..=23 (written × 100).
    Hour(u8),
    /// A non-negative integer.
    Int(u64),
    /// A non-negative number, written in its shortest form (WeChat's rates look like single
    /// precision: `0.6304348`).
    Float(f32),
    /// A string (escaped as JSON).
    Text(&'a str),
    /// A nested object already built with [`RowBuilder::part`].
    Object(&'a str),
    /// An array of objects already built with [`RowBuilder::part`] (or [`RowBuilder::detail`]).
    List(&'a [String]),
}

/// Builds a row of one endpoint directly in canonical form, for code that computes rows (the
/// event engine) rather than receiving them: no JSON tree, no re-ordering. Fields must be
/// given in WeChat's order; optional ones may be left out. Giving a field the shape does not
/// have at that point is a bug in the caller, and panics.
#[derive(Debug)]
pub struct RowBuilder {
    endpoint: Endpoint,
    fields: &'static [Field],
    next: usize,
    json: String,
    ref_date: Option<Date>,
    ref_hour: i16,
    key: String,
}

impl RowBuilder {
    /// Starts a row of `endpoint`.
    pub fn new(endpoint: Endpoint) -> RowBuilder {
        RowBuilder::with_fields(endpoint, endpoint.shape().fields)
    }

    /// Starts one element of getarticletotal's `details`, finished with
    /// [`RowBuilder::finish_detail`].
    pub fn detail() -> RowBuilder {
        RowBuilder::with_fields(Endpoint::GetArticleTotal, ARTICLE_TOTAL_DETAIL.fields)
    }

    /// Starts a nested object of `shape` (a `detail`, an element of a list) of a row of
    /// `endpoint`, finished with [`RowBuilder::finish_detail`].
    pub fn part(endpoint: Endpoint, shape: &'static Shape) -> RowBuilder {
        RowBuilder::with_fields(endpoint, shape.fields)
    }

    fn with_fields(endpoint: Endpoint, fields: &'static [Field]) -> RowBuilder {
        let mut json = String::with_capacity(256);
        json.push('{');
        RowBuilder {
            endpoint,
            fields,
            next: 0,
            json,
            ref_date: None,
            ref_hour: -1,
            key: String::new(),
        }
    }

    /// Adds the next field.
    pub fn field(&mut self, name: &str, value: Val<'_>) -> &mut RowBuilder {
        let field = loop {
            let field = self
                .fields
                .get(self.next)
                .unwrap_or_else(|| panic!("{}: no field `{name}` at this point", self.endpoint));
            self.next += 1;
            if field.name == name {
                break *field;
            }
            assert!(
                !field.required,
                "{}: `{}` must come before `{name}`",
                self.endpoint, field.name
            );
        };
        if self.json.len() > 1 {
            self.json.push(',');
        }
        self.json.push('"');
        self.json.push_str(field.name);
        self.json.push_str("\":");
        match value {
            Val::Date(d) => {
                push_date(&mut self.json, d);
                if name == "ref_date" {
                    self.ref_date = Some(d);
                }
            }
            Val::Hour(h) => {
                let _ = write!(self.json, "{}", u32::from(h) * 100);
                self.ref_hour = i16::from(h);
            }
            Val::Int(n) => {
                let _ = write!(self.json, "{n}");
                if field.key {
                    push_key_sep(&mut self.key);
                    let _ = write!(self.key, "{n:020}");
                }
            }
            Val::Text(t) => {
                self.json
                    .push_str(&serde_json::to_string(t).expect("a string serializes"));
                if field.key {
                    push_key_sep(&mut self.key);
                    push_text_key(&mut self.key, t);
                }
            }
            Val::Float(x) => {
                assert!(
                    x.is_finite() && x >= 0.0,
                    "{}: `{name}` is {x}",
                    self.endpoint
                );
                let _ = write!(self.json, "{x}");
            }
            Val::Object(json) => self.json.push_str(json),
            Val::List(items) => {
                self.json.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.json.push(',');
                    }
                    self.json.push_str(item);
                }
                self.json.push(']');
            }
        }
        self
    }

    fn check_complete(&self) {
        if let Some(missing) = self.fields[self.next..].iter().find(|f| f.required) {
            panic!("{}: `{}` is missing", self.endpoint, missing.name);
        }
    }

    /// The finished row.
    pub fn finish(mut self) -> Row {
        self.check_complete();
        self.json.push('}');
        Row {
            ref_date: self.ref_date.expect("every row has a ref_date"),
            ref_hour: self.ref_hour,
            key: self.key,
            json: self.json,
        }
    }

    /// The finished nested object (a `details` element, a `detail`…), as JSON.
    pub fn finish_detail(mut self) -> String {
        self.check_complete();
        self.json.push('}');
        self.json
    }
}

fn push_key_sep(key: &mut String) {
    if !key.is_empty() {
        key.push('|');
    }
}

fn push_date(out: &mut String, d: Date) {
    let _ = write!(out, "\"{:04}-{:02}-{:02}\"", d.year(), d.month(), d.day());
}

/// Why a `{"list":[…]}` body cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// Not a JSON object with a `list` array.
    #[error("{0}")]
    Body(String),
    /// One row does not fit (rows are numbered from 1).
    #[error("row {row} (list[{index}]): {error}", index = .row - 1)]
    Row {
        /// 1-based row number.
        row: usize,
        /// What is wrong with it.
        error: RowError,
    },
    /// Two rows share a natural key.
    #[error("rows {first} and {second} have the same key (ref_date {date}{rest}); a WeChat answer never repeats a row")]
    Duplicate {
        /// 1-based.
        first: usize,
        /// 1-based.
        second: usize,
        /// The shared date.
        date: String,
        /// The rest of the key, for people.
        rest: String,
    },
}

/// Validates a whole WeChat answer for `endpoint`, `{"list":[…]}` exactly as WeChat returns
/// it, into canonical rows. Any bad row refuses the whole body.
pub fn parse_list(endpoint: Endpoint, body: &[u8]) -> Result<Vec<Row>, ListError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ListError::Body(format!("not JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ListError::Body("expected a JSON object {\"list\":[…]}".into()))?;
    if let Some(code) = obj
        .get("errcode")
        .and_then(Value::as_i64)
        .filter(|c| *c != 0)
    {
        return Err(ListError::Body(format!(
            "this is a WeChat error answer (errcode {code}), not statistics"
        )));
    }
    let list = obj
        .get("list")
        .and_then(Value::as_array)
        .ok_or_else(|| ListError::Body("expected a `list` array, as WeChat returns it".into()))?;
    let mut rows = Vec::with_capacity(list.len());
    let mut seen = std::collections::HashMap::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let row =
            canonicalize(endpoint, item).map_err(|error| ListError::Row { row: i + 1, error })?;
        let key = (row.ref_date, row.ref_hour, row.key.clone());
        if let Some(first) = seen.insert(key, i + 1) {
            let rest = if row.ref_hour >= 0 {
                format!(", ref_hour {}", i32::from(row.ref_hour) * 100)
            } else {
                String::new()
            };
            return Err(ListError::Duplicate {
                first,
                second: i + 1,
                date: date::format_date(row.ref_date),
                rest,
            });
        }
        rows.push(row);
    }
    Ok(rows)
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

/// getarticletotal's `details` and getarticletotaldetail's `detail_list` reach only the last
/// ready day (reference §7 item 3; 2025 reference §5): drops the snapshots of a stored
/// `{"list":[…]}` body whose `stat_date` is after `last_ready`, keeping WeChat's field order.
/// `None` when nothing needed dropping (or `endpoint` has no snapshots).
pub fn trim_snapshots(endpoint: Endpoint, body: &str, last_ready: Date) -> Option<String> {
    let field = snapshots_field(endpoint)?;
    let last = date::format_date(last_ready);
    // Dates compare as text; most answers have nothing to trim.
    let needs = body.match_indices("\"stat_date\":\"").any(|(at, m)| {
        body.get(at + m.len()..at + m.len() + 10)
            .is_some_and(|d| d > last.as_str())
    });
    if !needs {
        return None;
    }
    let mut value: Value = serde_json::from_str(body).ok()?;
    let rows = value.get_mut("list")?.as_array_mut()?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows.iter_mut() {
        if let Some(details) = row.get_mut(field).and_then(Value::as_array_mut) {
            details.retain(|d| d["stat_date"].as_str().is_some_and(|s| s <= last.as_str()));
        }
        out.push(canonicalize(endpoint, row).ok()?.json);
    }
    Some(list_body(out.iter().map(String::as_str)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_are_reordered_into_wechat_field_order() {
        let row = canonicalize(
            Endpoint::GetUserSummary,
            &json!({"cancel_user": 5, "new_user": 3, "user_source": 0, "ref_date": "2021-09-01"}),
        )
        .unwrap();
        assert_eq!(
            row.json,
            r#"{"ref_date":"2021-09-01","user_source":0,"new_user":3,"cancel_user":5}"#
        );
        assert_eq!(row.key, "00000000000000000000");
        assert_eq!(row.ref_hour, -1);
    }

    #[test]
    fn missing_unknown_and_mistyped_fields_are_named() {
        let e = canonicalize(
            Endpoint::GetUserSummary,
            &json!({"ref_date": "2021-09-01", "user_source": 0, "new_user": 3}),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("cancel_user"));
        let e = canonicalize(
            Endpoint::GetUserCumulate,
            &json!({"ref_date": "2021-09-01", "cumulate_user": 3, "new_user": 1}),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("new_user"));
        assert!(
            e.message.contains("getusercumulate has no such field"),
            "{e}"
        );
        let e = canonicalize(
            Endpoint::GetInterfaceSummary,
            &json!({"ref_date": "2021-09-01", "callback_count": 1.5, "fail_count": 0,
                    "total_time_cost": 1, "max_time_cost": 1}),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("callback_count"));
        let e = canonicalize(
            Endpoint::GetInterfaceSummaryHour,
            &json!({"ref_date": "2021-09-01", "ref_hour": 150, "callback_count": 1,
                    "fail_count": 0, "total_time_cost": 1, "max_time_cost": 1}),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("ref_hour"));
    }

    #[test]
    fn nested_details_errors_name_the_path() {
        let e = canonicalize(
            Endpoint::GetArticleTotal,
            &json!({"ref_date": "2022-08-19", "msgid": "2247485082_1", "title": "t",
                    "details": [{"stat_date": "2022-08-19", "target_user": 1}]}),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("details[0].int_page_read_user"));
    }

    #[test]
    fn whole_bodies_are_refused_with_the_row_named() {
        let e = parse_list(
            Endpoint::GetUserSummary,
            br#"{"list":[{"ref_date":"2021-09-01","user_source":0,"new_user":3,"cancel_user":5},{"ref_date":"2021-09-01","user_source":1,"new_user":6}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "row 2 (list[1]): field `cancel_user`: missing"
        );
        let e = parse_list(
            Endpoint::GetUserSummary,
            br#"{"errcode":40001,"errmsg":"x"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("errcode 40001"), "{e}");
        let e = parse_list(
            Endpoint::GetUserCumulate,
            br#"{"list":[{"ref_date":"2021-09-01","cumulate_user":1},{"ref_date":"2021-09-01","cumulate_user":2}]}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("rows 1 and 2 have the same key"),
            "{e}"
        );
    }

    #[test]
    fn total_details_stop_at_the_last_ready_day() {
        let detail = |d: &str| {
            format!(
                r#"{{"stat_date":"{d}","target_user":5,"int_page_read_user":1,"int_page_read_count":1,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":0,"share_count":0,"add_to_fav_user":0,"add_to_fav_count":0}}"#
            )
        };
        let body = format!(
            r#"{{"list":[{{"ref_date":"2024-05-06","msgid":"1_1","title":"标题","user_source":0,"details":[{},{},{}]}}]}}"#,
            detail("2024-05-06"),
            detail("2024-05-07"),
            detail("2024-05-08")
        );
        assert_eq!(
            trim_snapshots(
                Endpoint::GetArticleTotal,
                &body,
                jiff::civil::date(2024, 5, 8)
            ),
            None
        );
        assert_eq!(
            trim_snapshots(
                Endpoint::GetArticleTotal,
                &body,
                jiff::civil::date(2024, 5, 7)
            )
            .unwrap(),
            format!(
                r#"{{"list":[{{"ref_date":"2024-05-06","msgid":"1_1","title":"标题","user_source":0,"details":[{},{}]}}]}}"#,
                detail("2024-05-06"),
                detail("2024-05-07")
            )
        );
    }

    #[test]
    fn week_and_month_labels_are_checked() {
        let e = canonicalize(
            Endpoint::GetUpstreamMsgWeek,
            &json!({"ref_date": "2014-12-07", "msg_type": 1, "msg_user": 1, "msg_count": 1}),
        )
        .unwrap_err();
        assert!(e.message.contains("not a Monday"), "{e}");
        let e = canonicalize(
            Endpoint::GetUpstreamMsgDistMonth,
            &json!({"ref_date": "2014-12-07", "count_interval": 1, "msg_user": 1}),
        )
        .unwrap_err();
        assert!(e.message.contains("not the 1st"), "{e}");
    }

    #[test]
    fn built_rows_equal_canonical_rows() {
        let mut b = RowBuilder::new(Endpoint::GetUserReadHour);
        b.field("ref_date", Val::Date(jiff::civil::date(2020, 1, 2)))
            .field("ref_hour", Val::Hour(13))
            .field("user_source", Val::Int(99999999));
        for (i, f) in C.iter().enumerate() {
            b.field(f.name, Val::Int(i as u64));
        }
        let built = b.finish();
        let value: Value = serde_json::from_str(&built.json).unwrap();
        assert_eq!(
            built,
            canonicalize(Endpoint::GetUserReadHour, &value).unwrap()
        );
        assert_eq!(built.ref_hour, 13);

        let mut d = RowBuilder::detail();
        d.field("stat_date", Val::Date(jiff::civil::date(2020, 1, 2)))
            .field("target_user", Val::Int(7));
        for f in &C {
            d.field(f.name, Val::Int(1));
        }
        d.field("feed_share_from_other_cnt", Val::Int(2));
        let details = [d.finish_detail()];
        let mut b = RowBuilder::new(Endpoint::GetArticleTotal);
        b.field("ref_date", Val::Date(jiff::civil::date(2020, 1, 2)))
            .field("msgid", Val::Text("2247483654_2"))
            .field("title", Val::Text("标\"题"))
            .field("user_source", Val::Int(0))
            .field("details", Val::List(&details));
        let built = b.finish();
        let value: Value = serde_json::from_str(&built.json).unwrap();
        assert_eq!(
            built,
            canonicalize(Endpoint::GetArticleTotal, &value).unwrap()
        );
    }

    #[test]
    #[should_panic(expected = "`new_user` must come before `cancel_user`")]
    fn a_builder_refuses_fields_out_of_order() {
        let mut b = RowBuilder::new(Endpoint::GetUserSummary);
        b.field("ref_date", Val::Date(jiff::civil::date(2020, 1, 2)))
            .field("user_source", Val::Int(0))
            .field("cancel_user", Val::Int(0));
    }

    #[test]
    fn keys_sort_in_wechat_row_order() {
        let k = |src: i64| {
            canonicalize(
                Endpoint::GetUserRead,
                &json!({"ref_date": "2020-01-01", "user_source": src,
                        "int_page_read_user": 0, "int_page_read_count": 0,
                        "ori_page_read_user": 0, "ori_page_read_count": 0,
                        "share_user": 0, "share_count": 0,
                        "add_to_fav_user": 0, "add_to_fav_count": 0}),
            )
            .unwrap()
            .key
        };
        assert!(k(0) < k(7) && k(7) < k(99999999));
        let mut ids = vec!["2247483654_10", "2247483654_2", "10000050_1"];
        ids.sort_by_key(|m| {
            let mut s = String::new();
            push_text_key(&mut s, m);
            s
        });
        assert_eq!(ids, ["10000050_1", "2247483654_2", "2247483654_10"]);
    }
}
