//! Push bodies and passive replies (reference §6.2, §6.4).
//!
//! Push bodies are written byte for byte as WeChat writes them — layouts checked against real
//! captures' `Content-Length` (§9): a plaintext push puts its first element on the `<xml>` line,
//! every further element on its own line and no newline after `</xml>`; a safe-mode push is
//! `<xml>`, the account and `Encrypt` indented by four spaces, `</xml>` and a newline; a
//! compatible-mode push is the same indented form with every plaintext element before
//! `Encrypt` (832 bytes for the captured one: the layout is this).
//!
//! Replies are read with quick-xml and judged the way WeChat treats them ([`judge`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use quick_xml::events::Event;
use quick_xml::Reader;

mod judge;

pub use judge::{judge_body, Expect, Mode, Verdict};

/// What a push carries.
#[derive(Debug, Clone, PartialEq)]
pub enum PushKind {
    /// A text message.
    Text {
        /// What the user typed.
        content: String,
    },
    /// An image message.
    Image {
        /// The picture's URL.
        pic_url: String,
        /// Its media id.
        media_id: String,
    },
    /// A voice message.
    Voice {
        /// Its media id.
        media_id: String,
        /// `amr`, `speex`…
        format: String,
        /// Speech recognition, when the account has it on (an empty element otherwise).
        recognition: Option<String>,
    },
    /// A video message.
    Video {
        /// Its media id.
        media_id: String,
        /// Its thumbnail's media id.
        thumb_media_id: String,
    },
    /// A short video message.
    ShortVideo {
        /// Its media id.
        media_id: String,
        /// Its thumbnail's media id.
        thumb_media_id: String,
    },
    /// A location message. The numbers are kept as WeChat writes them.
    Location {
        /// Latitude.
        x: String,
        /// Longitude.
        y: String,
        /// Map scale.
        scale: String,
        /// The place's name.
        label: String,
    },
    /// A link message.
    Link {
        /// Title.
        title: String,
        /// Description.
        description: String,
        /// URL.
        url: String,
    },
    /// The user followed the account (`EventKey` is `qrscene_…` when through a QR code).
    Subscribe {
        /// The event key (empty for a plain follow).
        event_key: String,
    },
    /// The user unfollowed.
    Unsubscribe,
}

impl PushKind {
    /// `MsgType`.
    pub fn msg_type(&self) -> &'static str {
        match self {
            PushKind::Text { .. } => "text",
            PushKind::Image { .. } => "image",
            PushKind::Voice { .. } => "voice",
            PushKind::Video { .. } => "video",
            PushKind::ShortVideo { .. } => "shortvideo",
            PushKind::Location { .. } => "location",
            PushKind::Link { .. } => "link",
            PushKind::Subscribe { .. } | PushKind::Unsubscribe => "event",
        }
    }

    /// Whether this is a user message (with a `MsgId`), not an event.
    pub fn is_message(&self) -> bool {
        !matches!(self, PushKind::Subscribe { .. } | PushKind::Unsubscribe)
    }
}

/// One push: a user message or event sent to the account's server.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    /// The account's original id (`gh_…`): `ToUserName`.
    pub to_user: String,
    /// The user's openid: `FromUserName`.
    pub from_user: String,
    /// Unix seconds.
    pub create_time: i64,
    /// What it carries.
    pub kind: PushKind,
    /// `MsgId` of a message: 64 bits, beyond what a double holds exactly.
    pub msg_id: u64,
}

/// Writes elements one after the other with the layout's separators.
struct Emit<'a> {
    out: &'a mut String,
    first: &'a str,
    before: &'a str,
    after: &'a str,
    n: usize,
}

impl Emit<'_> {
    fn open(&mut self, name: &str) {
        self.out
            .push_str(if self.n == 0 { self.first } else { self.before });
        self.n += 1;
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
    }

    fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self.out.push_str(self.after);
    }

    fn text(&mut self, name: &str, value: &str) {
        self.open(name);
        cdata(self.out, value);
        self.close(name);
    }

    fn number(&mut self, name: &str, value: &dyn std::fmt::Display) {
        self.open(name);
        let _ = write!(self.out, "{value}");
        self.close(name);
    }
}

/// Appends `<![CDATA[text]]>`, splitting any `]]>` in the text across two sections.
fn cdata(out: &mut String, text: &str) {
    out.push_str("<![CDATA[");
    out.push_str(&text.replace("]]>", "]]]]><![CDATA[>"));
    out.push_str("]]>");
}

impl Push {
    /// Writes the elements after `<xml>`, each `<Name>…</Name>` in WeChat's order, the first
    /// preceded by `first`, the others by `before`, each followed by `after`.
    fn write_elements(&self, out: &mut String, first: &str, before: &str, after: &str) {
        let mut e = Emit {
            out,
            first,
            before,
            after,
            n: 0,
        };
        e.text("ToUserName", &self.to_user);
        e.text("FromUserName", &self.from_user);
        e.number("CreateTime", &self.create_time);
        e.text("MsgType", self.kind.msg_type());
        let id = self.msg_id;
        // The orders below are those of real pushes (reference §9, the captures' test source).
        match &self.kind {
            PushKind::Text { content } => {
                e.text("Content", content);
                e.number("MsgId", &id);
            }
            PushKind::Image { pic_url, media_id } => {
                e.text("PicUrl", pic_url);
                e.number("MsgId", &id);
                e.text("MediaId", media_id);
            }
            PushKind::Voice {
                media_id,
                format,
                recognition,
            } => {
                e.text("MediaId", media_id);
                e.text("Format", format);
                e.number("MsgId", &id);
                e.text("Recognition", recognition.as_deref().unwrap_or(""));
            }
            PushKind::Video {
                media_id,
                thumb_media_id,
            }
            | PushKind::ShortVideo {
                media_id,
                thumb_media_id,
            } => {
                e.text("MediaId", media_id);
                e.text("ThumbMediaId", thumb_media_id);
                e.number("MsgId", &id);
            }
            PushKind::Location { x, y, scale, label } => {
                e.number("Location_X", x);
                e.number("Location_Y", y);
                e.number("Scale", scale);
                e.text("Label", label);
                e.number("MsgId", &id);
            }
            PushKind::Link {
                title,
                description,
                url,
            } => {
                e.text("Title", title);
                e.text("Description", description);
                e.text("Url", url);
                e.number("MsgId", &id);
            }
            PushKind::Subscribe { event_key } => {
                e.text("Event", "subscribe");
                e.text("EventKey", event_key);
            }
            PushKind::Unsubscribe => {
                e.text("Event", "unsubscribe");
                e.text("EventKey", "");
            }
        }
    }

    /// The plaintext body (and the message encrypted in the other modes).
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(320);
        out.push_str("<xml>");
        self.write_elements(&mut out, "", "\n", "");
        out.push_str("\n</xml>");
        out
    }

    /// The safe-mode body around an `Encrypt` value.
    pub fn safe_body(&self, encrypt: &str) -> String {
        let mut out = String::from("<xml>\n    <ToUserName>");
        cdata(&mut out, &self.to_user);
        out.push_str("</ToUserName>\n    <Encrypt>");
        cdata(&mut out, encrypt);
        out.push_str("</Encrypt>\n</xml>\n");
        out
    }

    /// The compatible-mode body: every plaintext element, then `Encrypt`.
    pub fn compat_body(&self, encrypt: &str) -> String {
        let mut out = String::from("<xml>\n");
        self.write_elements(&mut out, "    ", "    ", "\n");
        out.push_str("    <Encrypt>");
        cdata(&mut out, encrypt);
        out.push_str("</Encrypt>\n</xml>\n");
        out
    }
}

/// A parsed XML document of one level under `<xml>` (and the names of nested elements):
/// enough for WeChat's pushes and replies.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields {
    /// Top-level elements' text (CDATA or text, entities resolved).
    pub top: BTreeMap<String, String>,
    /// Nested elements by path (`Image/MediaId`, `Articles/item/Title`), counted.
    pub nested: BTreeMap<String, usize>,
}

impl Fields {
    /// A top-level field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.top.get(name).map(String::as_str)
    }
}

/// Parses `<xml>…</xml>`. Errors say what is wrong.
pub fn parse(xml: &str) -> Result<Fields, String> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(true);
    let mut fields = Fields::default();
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut saw_root = false;
    loop {
        match reader.read_event() {
            Err(e) => return Err(format!("not well-formed XML: {e}")),
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => {
                let name = e.name().as_ref().to_owned();
                if path.is_empty() {
                    if saw_root || name != "xml" {
                        return Err(format!("the root element is <{name}>, not <xml>"));
                    }
                    saw_root = true;
                } else if path.len() >= 2 {
                    *fields
                        .nested
                        .entry(format!("{}/{name}", path[1..].join("/")))
                        .or_default() += 1;
                }
                path.push(name);
                text.clear();
            }
            Ok(Event::Empty(e)) => {
                let name = e.name().as_ref().to_owned();
                match path.len() {
                    0 => return Err(format!("the root element is <{name}/>, not <xml>")),
                    1 => {
                        fields.top.insert(name, String::new());
                    }
                    _ => {
                        *fields
                            .nested
                            .entry(format!("{}/{name}", path[1..].join("/")))
                            .or_default() += 1;
                    }
                }
            }
            Ok(Event::End(_)) => {
                if let Some(name) = path.pop() {
                    if path.len() == 1 {
                        fields.top.insert(name, std::mem::take(&mut text));
                    }
                }
                text.clear();
            }
            Ok(Event::Text(t)) => {
                if path.is_empty() {
                    return Err("not an <xml> document: text outside <xml>".into());
                }
                text.push_str(&t.xml10_content());
            }
            Ok(Event::CData(c)) => text.push_str(&c.into_inner()),
            Ok(Event::GeneralRef(r)) => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else if let Some(s) =
                    quick_xml::escape::resolve_predefined_entity(&r.into_inner())
                {
                    text.push_str(s);
                } else {
                    return Err("an unknown entity reference".into());
                }
            }
            Ok(_) => {}
        }
    }
    if !saw_root || !path.is_empty() {
        return Err("not a complete <xml> document".into());
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(kind: PushKind, time: i64, id: u64) -> Push {
        Push {
            to_user: "gh_de0f036ce08f".into(),
            from_user: "ooUo26seZPcU3qKfcMiXLneG3fO4".into(),
            create_time: time,
            kind,
            msg_id: id,
        }
    }

    /// Real pushes (reference §9; the captures' test source): the same bytes, and the
    /// captured Content-Length where it was recorded.
    #[test]
    fn pushes_have_wechats_byte_layout() {
        let text = push(
            PushKind::Text {
                content: "文本消息".into(),
            },
            1_668_869_541,
            23_892_468_385_179_204,
        )
        .to_xml();
        assert_eq!(text, "<xml><ToUserName><![CDATA[gh_de0f036ce08f]]></ToUserName>\n<FromUserName><![CDATA[ooUo26seZPcU3qKfcMiXLneG3fO4]]></FromUserName>\n<CreateTime>1668869541</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[文本消息]]></Content>\n<MsgId>23892468385179204</MsgId>\n</xml>");
        assert_eq!(text.len(), 283);
        let subscribe = push(
            PushKind::Subscribe {
                event_key: String::new(),
            },
            1_668_926_536,
            0,
        )
        .to_xml();
        assert_eq!(subscribe.len(), 278);
        assert!(subscribe.ends_with(
            "<Event><![CDATA[subscribe]]></Event>\n<EventKey><![CDATA[]]></EventKey>\n</xml>"
        ));
        let video = push(
            PushKind::Video {
                media_id: "LpJA9bW3JX2VI5qoTLP4ZOWVScSQuUg0RMGlYmDF1cH-lQo143YnzKvEjL0fbk3h".into(),
                thumb_media_id: "LpJA9bW3JX2VI5qoTLP4ZK4WesEf0KTyQVrQ2Pouhy6fSPZX2eZzWcReAu-LP_97"
                    .into(),
            },
            1_668_926_576,
            23_893_282_193_621_731,
        )
        .to_xml();
        assert_eq!(video.len(), 442);
        let image = push(
            PushKind::Image {
                pic_url: "http://mmbiz.qpic.cn/x/0".into(),
                media_id: "m".into(),
            },
            1,
            2,
        )
        .to_xml();
        assert!(image.contains("<PicUrl><![CDATA[http://mmbiz.qpic.cn/x/0]]></PicUrl>\n<MsgId>2</MsgId>\n<MediaId><![CDATA[m]]></MediaId>\n</xml>"));
        let location = push(
            PushKind::Location {
                x: "31.237238".into(),
                y: "121.666672".into(),
                scale: "16".into(),
                label: "浦东新区上丰路1270号".into(),
            },
            1_668_931_049,
            23_893_347_810_211_482,
        )
        .to_xml();
        assert!(location.contains("<Location_X>31.237238</Location_X>\n<Location_Y>121.666672</Location_Y>\n<Scale>16</Scale>\n<Label><![CDATA[浦东新区上丰路1270号]]></Label>\n<MsgId>23893347810211482</MsgId>"));
        let voice = push(
            PushKind::Voice {
                media_id: "r17pubpoqgAFxSEC15N0DfEpiGWN1IAIOTA8IR5IqnUL6dSen03mYFngOYxahsbo".into(),
                format: "amr".into(),
                recognition: None,
            },
            1_668_872_383,
            23_892_507_910_728_562,
        )
        .to_xml();
        assert!(voice.ends_with("<Format><![CDATA[amr]]></Format>\n<MsgId>23892507910728562</MsgId>\n<Recognition><![CDATA[]]></Recognition>\n</xml>"));
    }

    /// The captured safe-mode push is 578 bytes, and the captured compatible-mode one 832:
    /// both layouts rebuild them from their parts.
    #[test]
    fn encrypted_envelopes_have_the_captured_lengths() {
        let safe = Push {
            to_user: "gh_b4f0e22ae50e".into(),
            ..push(PushKind::Unsubscribe, 0, 0)
        }
        .safe_body(crate::crypto::tests::CAPTURED_ENCRYPT);
        assert_eq!(safe.len(), 578);
        assert!(safe.starts_with("<xml>\n    <ToUserName><![CDATA[gh_b4f0e22ae50e]]></ToUserName>\n    <Encrypt><![CDATA["));
        let compat = Push {
            to_user: "gh_b4f0e22ae50e".into(),
            from_user: "oJqxQwYRyZMXFTc8sipB5TSe6Vw4".into(),
            create_time: 1_669_640_883,
            kind: PushKind::Text {
                content: "测试文本消息/:share©".into(),
            },
            msg_id: 23_903_507_600_338_688,
        }
        .compat_body(COMPAT_ENCRYPT);
        assert_eq!(compat.len(), 832);
        assert!(
            compat.contains("\n    <MsgId>23903507600338688</MsgId>\n    <Encrypt><![CDATA[XcXR")
        );
        // And its ciphertext holds the same message in the plaintext layout.
        let key =
            crate::crypto::AesKey::from_encoding_key("h7ZycbpEh2vNdfkYulfw9pG95HjLYwmrKBFeqIktff6")
                .unwrap();
        let inner = key.decrypt(COMPAT_ENCRYPT, "wxabb8e5e80f591861").unwrap();
        let fields = parse(&inner).unwrap();
        assert_eq!(fields.get("Content"), Some("测试文本消息/:share©"));
        assert_eq!(fields.get("MsgId"), Some("23903507600338688"));
    }

    const COMPAT_ENCRYPT: &str = "XcXRgKvv9hrHKuJ27qEU5uqB2GCuM8XHRq0Kwt2CrV8MfiSba2dTDhrob5k9p3cyZp59xme5JyYl9YRDgbgUkaoA8iBvXehvjNKJbWX/YjlrfMbOmXveubd0KltgavzyjvUvh75QIf0bMSeKvZZxqGfCct/Ldlp4xyKW7FEk9WOoBask4y3yBCf683qHvkCFRvNwCjPwAdtM/c/Y/xIt1FXd+ezWFRwtgJc4X5+XmI1il6s/sX8l6w9K0nVGPsBSsG7x+cTFafR+SHCLofCX2LB6ysXtAr2/KjNwklN7TOM4FiqO8vyYVxvVoiIUZA3nhoz/N7Hvyvt3/L4XavbjcTH1sFvdTe6wwca/z2u7EA8d7bhMY4vQ4iPX42+NYU5VJb52CmFy0p6uf7VR5vm6k79Ac2eH+blWg1E3kZxMd922T/JJuEqNEuxG7+1w5EIvQOIhy9F4dO0QsXBYY3RZtQ==";

    #[test]
    fn cdata_never_breaks() {
        let p = push(
            PushKind::Text {
                content: "a]]>b".into(),
            },
            1,
            1,
        );
        let f = parse(&p.to_xml()).unwrap();
        assert_eq!(f.get("Content"), Some("a]]>b"));
    }
}
