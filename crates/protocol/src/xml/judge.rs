//! Judging a developer's answer to a push the way WeChat treats it: `success`, an empty body,
//! or a passive reply (plain, or encrypted and signed in safe mode) of a known `MsgType`.

use super::{parse, Fields};
use crate::crypto::AesKey;
use crate::sign;

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// `success`, an empty body, or a valid reply of this `MsgType`.
    Answered(String),
    /// No answer within the time limit.
    Timeout,
    /// The connection failed.
    Unreachable(String),
    /// An HTTP status other than 200.
    Status(u16),
    /// A 200 whose body WeChat would not accept: the reason.
    Malformed(String),
}

impl Verdict {
    /// Whether WeChat counts the callback as answered.
    pub fn ok(&self) -> bool {
        matches!(self, Verdict::Answered(_))
    }

    /// Whether WeChat delivers the message again (no answer reached it).
    pub fn retried(&self) -> bool {
        matches!(
            self,
            Verdict::Timeout | Verdict::Unreachable(_) | Verdict::Status(_)
        )
    }

    /// The verdict's kind, without its detail (a metric's label): `answered`, `timeout`,
    /// `unreachable`, `status`, `malformed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Answered(_) => "answered",
            Verdict::Timeout => "timeout",
            Verdict::Unreachable(_) => "unreachable",
            Verdict::Status(_) => "status",
            Verdict::Malformed(_) => "malformed",
        }
    }

    /// A short label for reports.
    pub fn label(&self) -> String {
        match self {
            Verdict::Answered(kind) => format!("answered ({kind})"),
            Verdict::Timeout => "timeout".into(),
            Verdict::Unreachable(e) => format!("unreachable: {e}"),
            Verdict::Status(s) => format!("HTTP {s}"),
            Verdict::Malformed(why) => format!("malformed reply: {why}"),
        }
    }
}

/// The push mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plaintext.
    Plain,
    /// Compatible: plaintext and ciphertext side by side; replies either way.
    Compat,
    /// Safe: ciphertext only; replies must be encrypted.
    Safe,
}

impl Mode {
    /// `plain`, `compat` or `safe`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Compat => "compat",
            Mode::Safe => "safe",
        }
    }

    /// Parses `plain`, `compat` or `safe`.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "plain" => Some(Mode::Plain),
            "compat" => Some(Mode::Compat),
            "safe" => Some(Mode::Safe),
            _ => None,
        }
    }
}

/// What a reply is checked against. `Debug` shows no token.
#[derive(Clone)]
pub struct Expect<'a> {
    /// The mode of the push.
    pub mode: Mode,
    /// The server's token (for `MsgSignature`).
    pub token: &'a str,
    /// The AES key (encrypted replies).
    pub key: Option<&'a AesKey>,
    /// The account's appid (the tail of encrypted replies).
    pub appid: &'a str,
    /// The user the reply must go to (`ToUserName`).
    pub openid: &'a str,
    /// The account it must come from (`FromUserName`).
    pub original_id: &'a str,
}

impl std::fmt::Debug for Expect<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expect")
            .field("mode", &self.mode)
            .field("token", &"***")
            .field("key", &self.key.map(|_| "***"))
            .field("appid", &self.appid)
            .field("openid", &self.openid)
            .field("original_id", &self.original_id)
            .finish()
    }
}

/// Judges the body of a 200 answer as WeChat does (reference §6.4).
pub fn judge_body(body: &[u8], expect: &Expect<'_>) -> Verdict {
    if body.is_empty() {
        return Verdict::Answered("empty".into());
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Verdict::Malformed("the body is not UTF-8".into());
    };
    if text == "success" {
        return Verdict::Answered("success".into());
    }
    let fields = match parse(text) {
        Ok(f) => f,
        Err(e) => return Verdict::Malformed(e),
    };
    if let Some(encrypt) = fields.get("Encrypt") {
        if expect.mode == Mode::Plain {
            return Verdict::Malformed("an encrypted reply to a plaintext push".into());
        }
        let (Some(signature), Some(timestamp), Some(nonce)) = (
            fields.get("MsgSignature"),
            fields.get("TimeStamp"),
            fields.get("Nonce"),
        ) else {
            return Verdict::Malformed(
                "an encrypted reply needs MsgSignature, TimeStamp and Nonce".into(),
            );
        };
        let expected = sign::msg_signature(expect.token, timestamp, nonce, encrypt);
        if !sign::same(&expected, signature) {
            return Verdict::Malformed("MsgSignature does not verify".into());
        }
        let Some(key) = expect.key else {
            // Its signature verified; without the key it cannot be read further.
            return Verdict::Answered("encrypted, not decrypted".into());
        };
        return match key.decrypt(encrypt, expect.appid) {
            Ok(inner) => match parse(&inner) {
                Ok(inner) => check_reply(&inner, expect),
                Err(e) => Verdict::Malformed(format!("the decrypted reply: {e}")),
            },
            Err(e) => Verdict::Malformed(format!("the encrypted reply: {e}")),
        };
    }
    if expect.mode == Mode::Safe {
        return Verdict::Malformed("a plaintext reply to a safe-mode push".into());
    }
    check_reply(&fields, expect)
}

/// Checks a plaintext reply's fields.
fn check_reply(f: &Fields, expect: &Expect<'_>) -> Verdict {
    for name in ["ToUserName", "FromUserName", "CreateTime", "MsgType"] {
        if f.get(name).is_none() {
            return Verdict::Malformed(format!("<{name}> is missing"));
        }
    }
    if f.get("ToUserName") != Some(expect.openid) {
        return Verdict::Malformed(format!(
            "ToUserName is {:?}, not the user {:?}",
            f.get("ToUserName").unwrap_or(""),
            expect.openid
        ));
    }
    if f.get("FromUserName") != Some(expect.original_id) {
        return Verdict::Malformed(format!(
            "FromUserName is {:?}, not the account {:?}",
            f.get("FromUserName").unwrap_or(""),
            expect.original_id
        ));
    }
    if !f
        .get("CreateTime")
        .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
    {
        return Verdict::Malformed("CreateTime is not a number".into());
    }
    let msg_type = f.get("MsgType").unwrap_or("");
    let nested = |path: &str| f.nested.get(path).copied().unwrap_or(0) > 0;
    let problem = match msg_type {
        "text" => f
            .get("Content")
            .is_none()
            .then_some("a text reply needs <Content>"),
        "image" => (!nested("Image/MediaId")).then_some("an image reply needs <Image><MediaId>"),
        "voice" => (!nested("Voice/MediaId")).then_some("a voice reply needs <Voice><MediaId>"),
        "video" => (!nested("Video/MediaId")).then_some("a video reply needs <Video><MediaId>"),
        "music" => {
            (!nested("Music/ThumbMediaId")).then_some("a music reply needs <Music><ThumbMediaId>")
        }
        "news" => {
            let items = f.nested.get("Articles/item").copied().unwrap_or(0);
            let count = f.get("ArticleCount").and_then(|c| c.parse::<usize>().ok());
            if items == 0 || items > 8 {
                Some("a news reply needs 1 to 8 <Articles><item>")
            } else if count != Some(items) {
                Some("ArticleCount does not match the items")
            } else {
                None
            }
        }
        "transfer_customer_service" => None,
        _ => Some("MsgType is not one WeChat replies with"),
    };
    match problem {
        Some(p) => Verdict::Malformed(p.into()),
        None => Verdict::Answered(msg_type.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect<'a>(mode: Mode, key: Option<&'a AesKey>) -> Expect<'a> {
        Expect {
            mode,
            token: "tok",
            key,
            appid: "wxabb8e5e80f591861",
            openid: "oUser",
            original_id: "gh_1",
        }
    }

    #[test]
    fn replies_are_judged_as_wechat_does() {
        let e = expect(Mode::Plain, None);
        assert_eq!(judge_body(b"", &e), Verdict::Answered("empty".into()));
        assert_eq!(
            judge_body(b"success", &e),
            Verdict::Answered("success".into())
        );
        let text = "<xml><ToUserName><![CDATA[oUser]]></ToUserName><FromUserName><![CDATA[gh_1]]></FromUserName><CreateTime>12345678</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好]]></Content></xml>";
        assert_eq!(
            judge_body(text.as_bytes(), &e),
            Verdict::Answered("text".into())
        );
        let news = "<xml><ToUserName>oUser</ToUserName><FromUserName>gh_1</FromUserName><CreateTime>1</CreateTime><MsgType>news</MsgType><ArticleCount>1</ArticleCount><Articles><item><Title>t &amp; u</Title><Url>u</Url></item></Articles></xml>";
        assert_eq!(
            judge_body(news.as_bytes(), &e),
            Verdict::Answered("news".into())
        );
        for (body, why) in [
            ("{\"ok\":true}", "not an <xml> document"),
            ("<html></html>", "the root element is <html>"),
            (
                "<xml><ToUserName>oUser</ToUserName></xml>",
                "<FromUserName> is missing",
            ),
            (&text.replace("[oUser]", "[oOther]"), "not the user"),
            (&text.replace("[gh_1]", "[gh_2]"), "not the account"),
            (&text.replace("[text]", "[gif]"), "MsgType is not one"),
            (
                &text.replace("<Content><![CDATA[你好]]></Content>", ""),
                "needs <Content>",
            ),
            (
                &news.replace("<ArticleCount>1", "<ArticleCount>2"),
                "ArticleCount",
            ),
            ("<xml><a>", "not a complete"),
        ] {
            match judge_body(body.as_bytes(), &e) {
                Verdict::Malformed(w) => assert!(w.contains(why), "{body}: {w}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn encrypted_replies_are_verified_and_decrypted() {
        let key = AesKey::from_encoding_key("h7ZycbpEh2vNdfkYulfw9pG95HjLYwmrKBFeqIktff6").unwrap();
        let inner = "<xml><ToUserName><![CDATA[oUser]]></ToUserName><FromUserName><![CDATA[gh_1]]></FromUserName><CreateTime>1</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content></xml>";
        let encrypt = key.encrypt(inner, "wxabb8e5e80f591861");
        let sig = sign::msg_signature("tok", "1700000000", "n1", &encrypt);
        let judged = |body: &str, mode| judge_body(body.as_bytes(), &expect(mode, Some(&key)));
        let reply = format!("<xml>\n<Encrypt><![CDATA[{encrypt}]]></Encrypt>\n<MsgSignature><![CDATA[{sig}]]></MsgSignature>\n<TimeStamp>1700000000</TimeStamp>\n<Nonce><![CDATA[n1]]></Nonce>\n</xml>");
        for mode in [Mode::Safe, Mode::Compat] {
            assert_eq!(judged(&reply, mode), Verdict::Answered("text".into()));
        }
        let bad_sig = reply.replace(&sig, &"0".repeat(40));
        assert!(matches!(
            judged(&bad_sig, Mode::Safe),
            Verdict::Malformed(w) if w.contains("MsgSignature does not verify")
        ));
        assert!(matches!(judged(&reply, Mode::Plain), Verdict::Malformed(_)));
        let other_app = key.encrypt(inner, "wx0000000000000000");
        let sig2 = sign::msg_signature("tok", "1", "n", &other_app);
        let reply2 = format!("<xml><Encrypt>{other_app}</Encrypt><MsgSignature>{sig2}</MsgSignature><TimeStamp>1</TimeStamp><Nonce>n</Nonce></xml>");
        assert!(matches!(
            judged(&reply2, Mode::Safe),
            Verdict::Malformed(w) if w.contains("wx0000000000000000")
        ));
        // Safe mode refuses a plaintext reply; compatible mode takes it.
        assert!(matches!(judged(inner, Mode::Safe), Verdict::Malformed(_)));
        assert_eq!(
            judged(inner, Mode::Compat),
            Verdict::Answered("text".into())
        );
    }
}
