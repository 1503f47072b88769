//! Text from outside — an upstream's `errmsg`, a body, a header, a server's reason — made safe
//! to put in a message, a log line or a report: bounded in length, control characters escaped
//! (no forged lines, no terminal escapes), and secrets blanked.

/// The first bytes of a body, quoted (control characters escaped), for messages: at most 100
/// characters of its first 4 KiB, `…` when there was more; each of `secrets` blanked out
/// (`***`) before cutting, so that no part of one survives.
pub fn snippet(body: &[u8], secrets: &[&str]) -> String {
    let mut text = String::from_utf8_lossy(&body[..body.len().min(4096)]).into_owned();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(s, "***");
    }
    let cut: String = text.chars().take(100).collect();
    let more = body.len() > 4096 || cut.len() < text.len();
    format!("{cut:?}{}", if more { "…" } else { "" })
}

/// Text for messages and reports: at most 200 characters, control characters escaped.
pub fn clean(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == 200 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` with each of `secrets` (and its percent-encoded form, as it appears in a URL's
/// query) replaced by `***`.
pub fn blank(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s, "***");
        let encoded: String = form_encode(s);
        if encoded != *s {
            out = out.replace(&encoded, "***");
        }
    }
    out
}

/// `s` as `application/x-www-form-urlencoded` writes it.
fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_is_bounded_escaped_and_blanked() {
        assert_eq!(snippet(b"ok", &[]), "\"ok\"");
        let long = vec![b'x'; 10_000];
        let s = snippet(&long, &[]);
        assert!(s.ends_with('…') && s.len() < 110, "{s}");
        assert_eq!(snippet(b"a\x1b[31mb\nc", &[]), "\"a\\u{1b}[31mb\\nc\"");
        assert_eq!(snippet(b"secret=abc123 x", &["abc123"]), "\"secret=*** x\"");
        assert_eq!(clean("a\nb"), "a\\nb");
        assert_eq!(clean(&"y".repeat(300)).chars().count(), 201);
        assert_eq!(
            blank("url ?secret=a%2Bb&x=a+b a+b", &["a+b"]),
            "url ?secret=***&x=*** ***"
        );
    }
}
