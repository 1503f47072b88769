//! The fast path: a borrowing deserializer for well-formed lines. It accepts a line only when
//! the general parser would accept it too and give the same event (tested at the end of this file); whatever
//! it is unsure of — a null, a wrong type, a repeated key, an escape it cannot borrow — it
//! leaves to the general parser.

use std::borrow::Cow;

use jiff::Timestamp;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::{
    published, Event, Kind, MsgType, Page, ReadScene, ShareFrom, ShareScene, EARLIEST, LATEST,
};

/// A string field: borrowed unless it holds escapes.
type Text<'a> = Option<Cow<'a, str>>;

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(borrow)]
    appid: Text<'a>,
    #[serde(borrow)]
    time: Text<'a>,
    #[serde(default)]
    id: Id,
    #[serde(borrow)]
    openid: Text<'a>,
    source: Option<u64>,
    #[serde(borrow)]
    msg_type: Text<'a>,
    cost_ms: Option<u64>,
    ok: Option<bool>,
    #[serde(borrow)]
    msgid: Text<'a>,
    #[serde(borrow)]
    title: Text<'a>,
    #[serde(borrow)]
    page: Text<'a>,
    #[serde(borrow)]
    scene: Text<'a>,
    #[serde(rename = "from", borrow)]
    from: Text<'a>,
    publish_type: Option<u64>,
    #[serde(borrow)]
    content_url: Text<'a>,
    money: Option<u64>,
    active_ms: Option<u64>,
    progress: Option<u64>,
}

/// `id`: absent or null, a string, or an integer (kept as its decimal text).
#[derive(Default)]
enum Id {
    #[default]
    None,
    Text(String),
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Id, E> {
                Ok(Id::Text(s.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Id, E> {
                Ok(Id::Text(n.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Id, E> {
                Ok(Id::Text(n.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Id, E> {
                Ok(Id::None)
            }
        }
        d.deserialize_any(V)
    }
}

/// A non-empty string field.
fn text(t: Text<'_>) -> Option<String> {
    t.filter(|s| !s.is_empty()).map(Cow::into_owned)
}

fn choice<T>(t: &Text<'_>, parse: fn(&str) -> Option<T>) -> Option<T> {
    t.as_deref().and_then(parse)
}

pub(super) fn parse(line: &str) -> Option<Event> {
    let raw: Raw = serde_json::from_str(line).ok()?;
    let kind_name = raw.kind.as_deref().filter(|s| !s.is_empty())?;
    let appid = text(raw.appid)?;
    let time = raw
        .time
        .as_deref()
        .filter(|s| !s.is_empty())?
        .parse::<Timestamp>()
        .ok()?
        .as_second();
    if !(EARLIEST..=LATEST).contains(&time) {
        return None;
    }
    let id = match raw.id {
        Id::None => None,
        Id::Text(s) if s.is_empty() => return None,
        Id::Text(s) => Some(s),
    };
    let kind = match kind_name {
        "follow" => Kind::Follow {
            openid: text(raw.openid)?,
            source: u32::try_from(raw.source?).ok()?,
        },
        "unfollow" => Kind::Unfollow {
            openid: text(raw.openid)?,
        },
        "message" => Kind::Message {
            msg_type: choice(&raw.msg_type, MsgType::parse)?,
            openid: text(raw.openid)?,
        },
        "reply" => Kind::Reply {
            cost_ms: raw.cost_ms.filter(|ms| *ms <= super::MAX_STATISTIC)?,
            ok: raw.ok?,
        },
        "publish" => {
            let publish_type = match raw.publish_type {
                None => None,
                Some(n @ 0..=1) => Some(n as u8),
                Some(_) => return None,
            };
            published(
                text(raw.msgid)?,
                raw.title?.into_owned(),
                publish_type,
                raw.content_url.map(Cow::into_owned),
            )
        }
        "read" => Kind::Read {
            page: choice(&raw.page, Page::parse)?,
            scene: choice(&raw.scene, ReadScene::parse_with_aliases)?,
            msgid: text(raw.msgid)?,
            openid: text(raw.openid)?,
        },
        "share" => Kind::Share {
            scene: choice(&raw.scene, ShareScene::parse)?,
            from: choice(&raw.from, ShareFrom::parse)?,
            msgid: text(raw.msgid)?,
            openid: text(raw.openid)?,
        },
        "favorite" => Kind::Favorite {
            msgid: text(raw.msgid)?,
            openid: text(raw.openid)?,
        },
        "zaikan" | "like" => Kind::Like {
            msgid: text(raw.msgid)?,
            openid: text(raw.openid)?,
            heart: kind_name == "zaikan",
        },
        "comment" => Kind::Comment {
            msgid: text(raw.msgid)?,
            openid: text(raw.openid)?,
        },
        "praise" => Kind::Praise {
            msgid: text(raw.msgid)?,
            openid: text(raw.openid)?,
            fen: raw.money.filter(|n| *n <= super::MAX_STATISTIC)?,
        },
        "leave" => Kind::Leave {
            msgid: text(raw.msgid)?,
            openid: text(raw.openid)?,
            active_ms: raw.active_ms.filter(|n| *n <= super::MAX_STATISTIC)?,
            progress: u8::try_from(raw.progress?).ok().filter(|p| *p <= 100)?,
        },
        _ => return None,
    };
    Some(Event {
        appid,
        id,
        time,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use crate::event::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Values a field may be given in a mutated line.
    const VALUES: &[&str] = &[
        "null",
        "true",
        "false",
        "0",
        "-3",
        "30",
        "4294967296",
        "1.5",
        "1e3",
        "\"\"",
        "\"x\"",
        "\"o\\u0031\"",
        "\"text\"",
        "\"int\"",
        "\"ori\"",
        "\"session\"",
        "\"friends\"",
        "\"feed\"",
        "\"home\"",
        "\"follow\"",
        "\"zaikan\"",
        "\"leave\"",
        "\"praise\"",
        "100",
        "101",
        "\"read\"",
        "\"share\"",
        "\"2024-05-01T10:00:00+08:00\"",
        "\"2024-05-01T10:00:00Z\"",
        "\"9999-01-01T00:00:00Z\"",
        "[]",
        "{}",
        "\"\\\"q\\\"\"",
    ];
    const KEYS: &[&str] = &[
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
        "extra",
        "\\u0074ype",
    ];

    /// The fast path accepts every line the demo writes, and whatever it accepts the general
    /// parser accepts as the same event; mutated lines (values of other types, missing,
    /// repeated and escaped keys, nulls) never make the two disagree.
    #[test]
    fn the_fast_path_agrees_with_the_general_parser() {
        let lines = crate::demo::events("wx1", jiff::civil::date(2024, 5, 1), 20, 3);
        for line in &lines {
            let fast = fast::parse(line).unwrap_or_else(|| panic!("fast path refused {line}"));
            assert_eq!(parse_slow(line), Ok(fast));
        }
        let mut rng = StdRng::seed_from_u64(11);
        let mut accepted = 0;
        for i in 0..40_000 {
            let line = &lines[i % lines.len()];
            let mut obj: Vec<(String, String)> = match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(m)) => m
                    .into_iter()
                    .map(|(k, v)| (format!("\"{k}\""), v.to_string()))
                    .collect(),
                _ => unreachable!(),
            };
            for _ in 0..rng.random_range(1..=3) {
                let key = format!("\"{}\"", KEYS[rng.random_range(0..KEYS.len())]);
                let value = VALUES[rng.random_range(0..VALUES.len())].to_owned();
                match rng.random_range(0..4) {
                    0 => obj.retain(|(k, _)| *k != key),
                    1 => obj.push((key, value)),
                    _ => match obj.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = value,
                        None => obj.push((key, value)),
                    },
                }
            }
            let mutated = format!(
                "{{{}}}",
                obj.iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            if let Some(fast) = fast::parse(&mutated) {
                accepted += 1;
                assert_eq!(parse_slow(&mutated), Ok(fast), "{mutated}");
            }
        }
        assert!(
            accepted > 1000,
            "the mutations should leave many lines valid"
        );
    }
}
