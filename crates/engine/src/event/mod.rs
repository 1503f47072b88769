//! The event format: NDJSON, one event per line.
//!
//! ```text
//! {"type":"follow","appid":"wx…","time":"…","openid":"o…","source":30}
//! {"type":"unfollow","appid":"wx…","time":"…","openid":"o…"}
//! {"type":"message","appid":"wx…","time":"…","openid":"o…","msg_type":"text"}
//! {"type":"reply","appid":"wx…","time":"…","cost_ms":412,"ok":true}
//! {"type":"publish","appid":"wx…","time":"…","msgid":"2247483650_1","title":"…"}
//! {"type":"read","appid":"wx…","time":"…","msgid":"…","openid":"o…","page":"int","scene":"session"}
//! {"type":"share","appid":"wx…","time":"…","msgid":"…","openid":"o…","scene":"friends","from":"session"}
//! {"type":"favorite","appid":"wx…","time":"…","msgid":"…","openid":"o…"}
//! ```
//!
//! Added for the 2025 endpoints (docs/events.md); every line above stays valid:
//!
//! ```text
//! {"type":"publish",…,"msgid":"…","title":"…","publish_type":1,"content_url":"https://…"}
//! {"type":"zaikan","appid":"wx…","time":"…","msgid":"…","openid":"o…"}
//! {"type":"like","appid":"wx…","time":"…","msgid":"…","openid":"o…"}
//! {"type":"comment","appid":"wx…","time":"…","msgid":"…","openid":"o…"}
//! {"type":"praise","appid":"wx…","time":"…","msgid":"…","openid":"o…","money":500}
//! {"type":"leave","appid":"wx…","time":"…","msgid":"…","openid":"o…","active_ms":63000,"progress":82}
//! ```
//!
//! and the read scenes `home` (公众号主页, the same as `history`) and `recommend` (推荐, the
//! same as `kanyikan`).
//!
//! `time` is RFC 3339 with any offset; days and hours are China time. `id` (a string or an
//! integer) is optional: an event whose id was already accepted for its appid is a duplicate.

use jiff::Timestamp;
use serde_json::{Map, Value};

mod fast;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Whose statistics it counts in.
    pub appid: String,
    /// The sender's id for de-duplication, if any.
    pub id: Option<String>,
    /// Unix seconds.
    pub time: i64,
    /// What happened.
    pub kind: Kind,
}

/// What happened.
///
/// The store keeps events in a compact binary form (postcard) that numbers the variants in
/// declaration order: add new variants at the end, never reorder or remove one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// A user followed the account through channel `source` (getusersummary's user_source).
    Follow { openid: String, source: u32 },
    /// A user unfollowed.
    Unfollow { openid: String },
    /// A user sent a message.
    Message { openid: String, msg_type: MsgType },
    /// One passive-reply callback: its time cost and whether it succeeded.
    Reply { cost_ms: u64, ok: bool },
    /// One article of a mass send.
    Publish { msgid: String, title: String },
    /// A read of an article's page.
    Read {
        msgid: String,
        openid: String,
        page: Page,
        scene: ReadScene,
    },
    /// A share of an article, to `scene`, by a reader who read it in `from`.
    Share {
        msgid: String,
        openid: String,
        scene: ShareScene,
        from: ShareFrom,
    },
    /// An article added to favourites.
    Favorite { msgid: String, openid: String },
    /// A publish with the 2025 fields: `publish_type` 0 notified the followers (a mass
    /// send, what [`Kind::Publish`] stands for), 1 did not; the article's URL if known.
    Published {
        msgid: String,
        title: String,
        publish_type: u8,
        url: Option<String>,
    },
    /// A like of an article: 爱心赞 / 在看 (`zaikan`, `heart`) or 拇指赞 (`like`).
    Like {
        msgid: String,
        openid: String,
        heart: bool,
    },
    /// A comment (留言) on an article.
    Comment { msgid: String, openid: String },
    /// A tip (赞赏) of `fen` hundredths of a yuan.
    Praise {
        msgid: String,
        openid: String,
        fen: u64,
    },
    /// A reader left an article's page after `active_ms` of reading, having reached
    /// `progress` percent (0–100) of it.
    Leave {
        msgid: String,
        openid: String,
        active_ms: u64,
        progress: u8,
    },
}

macro_rules! names {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        // Stored by position (see `Kind`): append values, never reorder them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
                 serde::Serialize, serde::Deserialize)]
        pub enum $name { $($variant),+ }
        impl $name {
            /// Every value, in the format's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The name used in the event format.
            pub const fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            fn parse(s: &str) -> Option<$name> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
            fn expected() -> String {
                [$($text),+].join("|")
            }
        }
    };
}

names!(
    /// A user message's type.
    MsgType { Text = "text", Image = "image", Voice = "voice", Video = "video",
              ShortVideo = "shortvideo", Link = "link", Location = "location" }
);
names!(
    /// Which page of an article was read.
    Page { Int = "int", Ori = "ori" }
);
names!(
    /// Where an article was read.
    ReadScene { Session = "session", History = "history", Feed = "feed", Friends = "friends",
                Other = "other", Kanyikan = "kanyikan", Souyisou = "souyisou" }
);
names!(
    /// Where an article was shared to.
    ShareScene { Friends = "friends", Feed = "feed", Other = "other" }
);
names!(
    /// Where the sharer had read the article.
    ShareFrom { Session = "session", Feed = "feed", Other = "other" }
);

impl Kind {
    /// The `type` of the event format.
    pub const fn type_name(&self) -> &'static str {
        match self {
            Kind::Follow { .. } => "follow",
            Kind::Unfollow { .. } => "unfollow",
            Kind::Message { .. } => "message",
            Kind::Reply { .. } => "reply",
            Kind::Publish { .. } => "publish",
            Kind::Read { .. } => "read",
            Kind::Share { .. } => "share",
            Kind::Favorite { .. } => "favorite",
            Kind::Published { .. } => "publish",
            Kind::Like { heart: true, .. } => "zaikan",
            Kind::Like { heart: false, .. } => "like",
            Kind::Comment { .. } => "comment",
            Kind::Praise { .. } => "praise",
            Kind::Leave { .. } => "leave",
        }
    }

    /// The article an article event (a read, share, favourite, like, comment, tip or leave)
    /// is about.
    pub fn article(&self) -> Option<&str> {
        self.article_and_reader().map(|(msgid, _)| msgid)
    }

    /// An article event's article and the user behind it.
    pub fn article_and_reader(&self) -> Option<(&str, &str)> {
        match self {
            Kind::Read { msgid, openid, .. }
            | Kind::Share { msgid, openid, .. }
            | Kind::Favorite { msgid, openid, .. }
            | Kind::Like { msgid, openid, .. }
            | Kind::Comment { msgid, openid, .. }
            | Kind::Praise { msgid, openid, .. }
            | Kind::Leave { msgid, openid, .. } => Some((msgid, openid)),
            _ => None,
        }
    }

    /// A publish's article, title, `publish_type` and URL.
    pub fn publish(&self) -> Option<(&str, &str, u8, Option<&str>)> {
        match self {
            Kind::Publish { msgid, title } => Some((msgid, title, 0, None)),
            Kind::Published {
                msgid,
                title,
                publish_type,
                url,
            } => Some((msgid, title, *publish_type, url.as_deref())),
            _ => None,
        }
    }

    /// Whether the event changes state that later days depend on (followers, sends).
    pub const fn is_state(&self) -> bool {
        matches!(
            self,
            Kind::Follow { .. }
                | Kind::Unfollow { .. }
                | Kind::Publish { .. }
                | Kind::Published { .. }
        )
    }
}

impl MsgType {
    /// getupstreammsg's `msg_type`: text 1, image 2, voice 3, video and shortvideo 4, link 6.
    /// Location messages have no msg_type in WeChat's enumeration: `None`.
    pub const fn wechat_code(self) -> Option<u32> {
        match self {
            MsgType::Text => Some(1),
            MsgType::Image => Some(2),
            MsgType::Voice => Some(3),
            MsgType::Video | MsgType::ShortVideo => Some(4),
            MsgType::Link => Some(6),
            MsgType::Location => None,
        }
    }
}

impl ReadScene {
    /// getuserread's `user_source`: 0 session, 1 friends, 2 Moments, 4 history, 5 other,
    /// 6 看一看, 7 搜一搜.
    pub const fn user_source(self) -> u32 {
        match self {
            ReadScene::Session => 0,
            ReadScene::Friends => 1,
            ReadScene::Feed => 2,
            ReadScene::History => 4,
            ReadScene::Other => 5,
            ReadScene::Kanyikan => 6,
            ReadScene::Souyisou => 7,
        }
    }
}

impl ReadScene {
    /// A read scene of the event format: a name of [`ReadScene::ALL`], or one of the 2025
    /// names `home` (公众号主页: the history page is the account's home page) and `recommend`
    /// (推荐: 看一看 is WeChat's recommendation feed).
    pub fn parse_with_aliases(s: &str) -> Option<ReadScene> {
        ReadScene::parse(s).or(match s {
            "home" => Some(ReadScene::History),
            "recommend" => Some(ReadScene::Kanyikan),
            _ => None,
        })
    }

    fn expected_with_aliases() -> String {
        format!("{}|home|recommend", ReadScene::expected())
    }

    /// The 2025 endpoints' `scene_desc` (2025 reference §1).
    pub const fn scene_desc(self) -> &'static str {
        match self {
            ReadScene::Session => "公众号消息",
            ReadScene::Friends => "聊天会话",
            ReadScene::Feed => "朋友圈",
            ReadScene::History => "公众号主页",
            ReadScene::Other => "其他",
            ReadScene::Kanyikan => "推荐",
            ReadScene::Souyisou => "搜一搜",
        }
    }

    /// The infix of getarticletotal's `int_page_from_<infix>_read_user` fields.
    pub const fn total_infix(self) -> &'static str {
        match self {
            ReadScene::Session => "session",
            ReadScene::History => "hist_msg",
            ReadScene::Feed => "feed",
            ReadScene::Friends => "friends",
            ReadScene::Other => "other",
            ReadScene::Kanyikan => "kanyikan",
            ReadScene::Souyisou => "souyisou",
        }
    }
}

impl ShareScene {
    /// getusershare's `share_scene`: 1 friends, 2 Moments, 255 other.
    pub const fn wechat_code(self) -> u32 {
        match self {
            ShareScene::Friends => 1,
            ShareScene::Feed => 2,
            ShareScene::Other => 255,
        }
    }
}

impl ShareFrom {
    /// The read scene a share counts under in getuserread.
    pub const fn read_scene(self) -> ReadScene {
        match self {
            ShareFrom::Session => ReadScene::Session,
            ShareFrom::Feed => ReadScene::Feed,
            ShareFrom::Other => ReadScene::Other,
        }
    }
}

/// 1970-01-01T00:00:00+08:00 and 9998-12-31T23:59:59+08:00: the times an event may have.
const EARLIEST: i64 = -28_800;
const LATEST: i64 = 253_370_735_999;

/// Why a line is not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EventError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, EventError> {
    Err(EventError(msg.into()))
}

fn text<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, EventError> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => err(format!("`{key}` is empty")),
        Some(other) => err(format!("`{key}` must be a string, not {other}")),
        None => err(format!("`{key}` is missing")),
    }
}

fn choice<T>(
    obj: &Map<String, Value>,
    key: &str,
    parse: fn(&str) -> Option<T>,
    expected: String,
) -> Result<T, EventError> {
    let s = text(obj, key)?;
    parse(s).map_or_else(
        || err(format!("`{key}` {s:?} is not one of {expected}")),
        Ok,
    )
}

fn uint(obj: &Map<String, Value>, key: &str) -> Result<u64, EventError> {
    match obj.get(key) {
        Some(v) => v.as_u64().map_or_else(
            || err(format!("`{key}` must be a non-negative integer, not {v}")),
            Ok,
        ),
        None => err(format!("`{key}` is missing")),
    }
}

/// The largest figure a statistics row holds: import reads integers as `i64`, so the server
/// never answers more than it would accept back.
pub const MAX_STATISTIC: u64 = i64::MAX as u64;

/// A figure that is summed into a statistic (`cost_ms`, `money`, `active_ms`): a
/// non-negative integer up to [`MAX_STATISTIC`].
fn figure(obj: &Map<String, Value>, key: &str) -> Result<u64, EventError> {
    match uint(obj, key)? {
        n if n > MAX_STATISTIC => err(format!(
            "`{key}` must be at most {MAX_STATISTIC} (the largest figure a statistics row holds), not {n}"
        )),
        n => Ok(n),
    }
}

/// Every key an event line is read for.
const KEYS: [&str; 19] = [
    "type",
    "appid",
    "time",
    "id",
    "openid",
    "source",
    "msg_type",
    "cost_ms",
    "ok",
    "msgid",
    "title",
    "page",
    "scene",
    "from",
    "publish_type",
    "content_url",
    "money",
    "active_ms",
    "progress",
];

/// The event types.
const TYPES: &str =
    "follow|unfollow|message|reply|publish|read|share|favorite|zaikan|like|comment|praise|leave";

/// A publish: the 2014 form when it has none of the 2025 fields.
fn published(msgid: String, title: String, publish_type: Option<u8>, url: Option<String>) -> Kind {
    if publish_type.is_none() && url.is_none() {
        Kind::Publish { msgid, title }
    } else {
        Kind::Published {
            msgid,
            title,
            publish_type: publish_type.unwrap_or(0),
            url,
        }
    }
}

/// The longest event line taken (an event is a few hundred bytes): a longer one is refused
/// before it is parsed, wherever it comes from.
pub const MAX_LINE: usize = 16 << 20;

/// Parses one NDJSON line into an event.
///
/// Well-formed lines take a fast path that deserializes straight into the event's fields;
/// anything it does not accept goes through the general parser, which gives the same event
/// or says what is wrong.
pub fn parse_line(line: &str) -> Result<Event, EventError> {
    if line.len() > MAX_LINE {
        return err(format!("longer than {} MiB", MAX_LINE >> 20));
    }
    match fast::parse(line) {
        Some(event) => Ok(event),
        None => parse_slow(line),
    }
}

/// The general parser: every check, and a message naming the field at fault.
fn parse_slow(line: &str) -> Result<Event, EventError> {
    let obj = event_object(line)?;
    let kind_name = text(&obj, "type")?;
    let appid = text(&obj, "appid")?.to_owned();
    let time = event_time(&obj)?;
    let id = event_id(&obj)?;
    let kind = event_kind(&obj, kind_name)?;
    Ok(Event {
        appid,
        id,
        time,
        kind,
    })
}

/// Reads `line` as one JSON object, refusing a key read here given twice.
fn event_object(line: &str) -> Result<Map<String, Value>, EventError> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| EventError(format!("not JSON: {e}")))?;
    // A key read here, given twice, is refused (datacube_api::json); the fast path's derived
    // reader refuses it too, and leaves the line here.
    if let Some(key) = datacube_api::json::repeated_key(line.as_bytes(), &KEYS) {
        return err(format!("`{key}` is given twice"));
    }
    match value {
        Value::Object(obj) => Ok(obj),
        Value::Array(_) => err(
            "an event must be a JSON object, not an array: events are NDJSON, one object per line",
        ),
        _ => err("an event must be a JSON object"),
    }
}

/// The event's `time`, an RFC 3339 instant, in seconds since the epoch.
fn event_time(obj: &Map<String, Value>) -> Result<i64, EventError> {
    let time_text = text(obj, "time")?;
    let time = time_text
        .parse::<Timestamp>()
        .map_err(|e| {
            EventError(format!(
                "`time` {time_text:?} is not an RFC 3339 instant: {e}"
            ))
        })?
        .as_second();
    // Statistics are dated YYYY-MM-DD: keep the China-time year to four digits.
    if !(EARLIEST..=LATEST).contains(&time) {
        return err(format!(
            "`time` {time_text:?} is outside the years 1970 to 9998"
        ));
    }
    Ok(time)
}

/// The event's optional `id`: a non-empty string, or an integer written as one.
fn event_id(obj: &Map<String, Value>) -> Result<Option<String>, EventError> {
    match obj.get("id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(Some(n.to_string())),
        Some(other) => err(format!(
            "`id` must be a non-empty string or an integer, not {other}"
        )),
    }
}

/// What happened: the fields of an event of type `kind_name`.
fn event_kind(obj: &Map<String, Value>, kind_name: &str) -> Result<Kind, EventError> {
    let openid = || text(obj, "openid").map(str::to_owned);
    let msgid = || text(obj, "msgid").map(str::to_owned);
    let kind = match kind_name {
        "follow" => {
            let source = uint(obj, "source")?;
            let source = u32::try_from(source)
                .map_err(|_| EventError(format!("`source` {source} is too large")))?;
            Kind::Follow {
                openid: openid()?,
                source,
            }
        }
        "unfollow" => Kind::Unfollow { openid: openid()? },
        "message" => Kind::Message {
            openid: openid()?,
            msg_type: choice(obj, "msg_type", MsgType::parse, MsgType::expected())?,
        },
        "reply" => Kind::Reply {
            cost_ms: figure(obj, "cost_ms")?,
            ok: match obj.get("ok") {
                Some(Value::Bool(b)) => *b,
                Some(v) => return err(format!("`ok` must be true or false, not {v}")),
                None => return err("`ok` is missing"),
            },
        },
        "publish" => publish(obj, msgid()?)?,
        "read" => Kind::Read {
            msgid: msgid()?,
            openid: openid()?,
            page: choice(obj, "page", Page::parse, Page::expected())?,
            scene: choice(
                obj,
                "scene",
                ReadScene::parse_with_aliases,
                ReadScene::expected_with_aliases(),
            )?,
        },
        "share" => Kind::Share {
            msgid: msgid()?,
            openid: openid()?,
            scene: choice(obj, "scene", ShareScene::parse, ShareScene::expected())?,
            from: choice(obj, "from", ShareFrom::parse, ShareFrom::expected())?,
        },
        "favorite" => Kind::Favorite {
            msgid: msgid()?,
            openid: openid()?,
        },
        "zaikan" | "like" => Kind::Like {
            msgid: msgid()?,
            openid: openid()?,
            heart: kind_name == "zaikan",
        },
        "comment" => Kind::Comment {
            msgid: msgid()?,
            openid: openid()?,
        },
        "praise" => Kind::Praise {
            msgid: msgid()?,
            openid: openid()?,
            fen: figure(obj, "money")?,
        },
        "leave" => Kind::Leave {
            msgid: msgid()?,
            openid: openid()?,
            active_ms: figure(obj, "active_ms")?,
            progress: match uint(obj, "progress")? {
                p @ 0..=100 => p as u8,
                p => return err(format!("`progress` is a percentage, 0 to 100, not {p}")),
            },
        },
        other => return err(format!("`type` {other:?} is not one of {TYPES}")),
    };
    Ok(kind)
}

/// The fields of a publish of `msgid` after its `msgid`: its title and the 2025 fields.
fn publish(obj: &Map<String, Value>, msgid: String) -> Result<Kind, EventError> {
    let title = match obj.get("title") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => return err(format!("`title` must be a string, not {v}")),
        None => return err("`title` is missing"),
    };
    let publish_type = match obj.get("publish_type") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n @ 0..=1) => Some(n as u8),
            _ => return err(format!("`publish_type` must be 0 or 1, not {v}")),
        },
    };
    let url = match obj.get("content_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => return err(format!("`content_url` must be a string, not {v}")),
    };
    Ok(published(msgid, title, publish_type, url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_line_parses() {
        let lines = [
            r#"{"type":"follow","appid":"wx1","time":"2024-05-01T10:00:00+08:00","openid":"o1","source":30}"#,
            r#"{"type":"unfollow","appid":"wx1","time":"2024-05-01T02:00:00Z","openid":"o1"}"#,
            r#"{"type":"message","appid":"wx1","time":"2024-05-01T10:00:00+08:00","openid":"o1","msg_type":"shortvideo"}"#,
            r#"{"type":"reply","appid":"wx1","time":"2024-05-01T10:00:00+08:00","cost_ms":412,"ok":true}"#,
            r#"{"type":"publish","appid":"wx1","time":"2024-05-01T20:00:00+08:00","msgid":"2247483650_1","title":"标题"}"#,
            r#"{"type":"read","appid":"wx1","time":"2024-05-01T20:05:00+08:00","msgid":"2247483650_1","openid":"o2","page":"int","scene":"session"}"#,
            r#"{"type":"share","appid":"wx1","time":"2024-05-01T20:06:00+08:00","msgid":"2247483650_1","openid":"o2","scene":"friends","from":"session"}"#,
            r#"{"type":"favorite","appid":"wx1","time":"2024-05-01T20:07:00+08:00","msgid":"2247483650_1","openid":"o2","id":17}"#,
            r#"{"type":"publish","appid":"wx1","time":"2025-11-01T20:00:00+08:00","msgid":"2247490098_1","title":"标题","publish_type":1,"content_url":"https://mp.weixin.qq.com/s/x"}"#,
            r#"{"type":"read","appid":"wx1","time":"2025-11-01T20:05:00+08:00","msgid":"2247490098_1","openid":"o2","page":"int","scene":"home"}"#,
            r#"{"type":"zaikan","appid":"wx1","time":"2025-11-01T20:06:00+08:00","msgid":"2247490098_1","openid":"o2"}"#,
            r#"{"type":"like","appid":"wx1","time":"2025-11-01T20:06:00+08:00","msgid":"2247490098_1","openid":"o2"}"#,
            r#"{"type":"comment","appid":"wx1","time":"2025-11-01T20:06:00+08:00","msgid":"2247490098_1","openid":"o2"}"#,
            r#"{"type":"praise","appid":"wx1","time":"2025-11-01T20:06:00+08:00","msgid":"2247490098_1","openid":"o2","money":500}"#,
            r#"{"type":"leave","appid":"wx1","time":"2025-11-01T20:07:00+08:00","msgid":"2247490098_1","openid":"o2","active_ms":63000,"progress":100}"#,
        ];
        for line in lines {
            parse_line(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
        for edge in ["1970-01-01T00:00:00+08:00", "9998-12-31T23:59:59+08:00"] {
            let line = format!(
                r#"{{"type":"reply","appid":"wx1","time":"{edge}","cost_ms":1,"ok":true}}"#
            );
            let e = parse_line(&line).unwrap();
            let day = datacube_api::date::format_date(datacube_api::date::china_date(e.time));
            assert!(datacube_api::date::parse_date(&day).is_some(), "{day}");
        }
        let e = parse_line(lines[7]).unwrap();
        assert_eq!(e.id.as_deref(), Some("17"));
        assert_eq!(e.time, 1_714_565_220);
        // The 2014 publish line is the 2014 event; the aliases are the old scenes.
        assert!(matches!(
            parse_line(lines[4]).unwrap().kind,
            Kind::Publish { .. }
        ));
        assert_eq!(
            parse_line(lines[8]).unwrap().kind.publish(),
            Some((
                "2247490098_1",
                "标题",
                1,
                Some("https://mp.weixin.qq.com/s/x")
            ))
        );
        assert!(matches!(
            parse_line(lines[9]).unwrap().kind,
            Kind::Read {
                scene: ReadScene::History,
                ..
            }
        ));
        for (line, name) in lines[8..].iter().zip([
            "publish", "read", "zaikan", "like", "comment", "praise", "leave",
        ]) {
            assert_eq!(parse_line(line).unwrap().kind.type_name(), name);
        }
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let cases = [
            ("{", "not JSON"),
            ("[]", "must be a JSON object"),
            (r#"{"type":"follow","appid":"wx1","time":"2024-05-01T10:00:00+08:00","openid":"o1"}"#, "`source` is missing"),
            (r#"{"type":"follow","appid":"wx1","time":"yesterday","openid":"o1","source":1}"#, "`time` \"yesterday\" is not an RFC 3339 instant"),
            (r#"{"type":"message","appid":"wx1","time":"2024-05-01T10:00:00Z","openid":"o1","msg_type":"sticker"}"#, "`msg_type` \"sticker\" is not one of text|image|voice|video|shortvideo|link|location"),
            (r#"{"type":"reply","appid":"wx1","time":"2024-05-01T10:00:00Z","cost_ms":-3,"ok":true}"#, "`cost_ms` must be a non-negative integer, not -3"),
            (r#"{"type":"poke","appid":"wx1","time":"2024-05-01T10:00:00Z"}"#, "`type` \"poke\" is not one of"),
            (r#"{"type":"read","appid":"","time":"2024-05-01T10:00:00Z"}"#, "`appid` is empty"),
            (r#"{"type":"reply","appid":"wx1","time":"-000001-01-01T00:00:00Z","cost_ms":1,"ok":true}"#, "outside the years 1970 to 9998"),
            (r#"{"type":"reply","appid":"wx1","time":"9999-06-01T00:00:00Z","cost_ms":1,"ok":true}"#, "outside the years 1970 to 9998"),
            (r#"{"type":"reply","appid":"wx1","time":"1969-12-31T15:59:59Z","cost_ms":1,"ok":true}"#, "outside the years 1970 to 9998"),
            (r#"{"type":"publish","appid":"wx1","time":"2025-11-01T10:00:00Z","msgid":"1_1","title":"t","publish_type":2}"#, "`publish_type` must be 0 or 1, not 2"),
            (r#"{"type":"leave","appid":"wx1","time":"2025-11-01T10:00:00Z","msgid":"1_1","openid":"o","active_ms":5,"progress":120}"#, "`progress` is a percentage, 0 to 100, not 120"),
            (r#"{"type":"praise","appid":"wx1","time":"2025-11-01T10:00:00Z","msgid":"1_1","openid":"o"}"#, "`money` is missing"),
            (r#"{"type":"read","appid":"wx1","time":"2025-11-01T10:00:00Z","msgid":"1_1","openid":"o","page":"int","scene":"moon"}"#, "|souyisou|home|recommend"),
        ];
        for (line, want) in cases {
            let got = parse_line(line).unwrap_err().to_string();
            assert!(got.contains(want), "{line}: {got}");
        }
    }
}
