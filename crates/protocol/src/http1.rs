//! HTTP/1.1 message framing (RFC 9112 §6), written once: `datacube push`'s client reads
//! answers with it, `datacube proxy` reads requests and answers with it. Every ambiguous
//! framing is refused, never guessed at — two readers that disagree on where a message ends
//! is how requests are smuggled:
//!
//! - `Transfer-Encoding` must be exactly `chunked` (one header, one coding); anything else —
//!   `chunked, chunked`, `xchunked`, `gzip, chunked`, `identity` — is refused, and so is any
//!   `Transfer-Encoding` in an HTTP/1.0 message (§6.1).
//! - A message with both `Transfer-Encoding` and `Content-Length` is refused (§6.3 ¶3
//!   allows it; a proxy must not forward it as it is).
//! - `Content-Length` must be one header of 1 to 19 ASCII digits (`+4`, `4, 4`, `0x4`, two
//!   headers, are refused).
//! - Chunk-size lines are hex digits, optional extensions, and CRLF — a bare LF is refused;
//!   so are chunks not followed by CRLF, and trailers past [`MAX_TRAILERS`] bytes.

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Up to the end of the connection (answers only).
    Close,
}

/// What a head says about its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed {
    /// How the body is delimited.
    pub framing: Framing,
    /// The sender keeps the connection open after this message.
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// Which message a head starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request,
    /// An answer, with its status, to a `HEAD` request or not.
    Response {
        /// The status code.
        status: u16,
        /// The request was `HEAD`.
        to_head: bool,
    },
}

/// Why a head's framing is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FramingError(pub &'static str);

/// The framing of a message whose head has `headers`; `http10` for an HTTP/1.0 message.
pub fn framing(
    headers: &[httparse::Header<'_>],
    http10: bool,
    message: Message,
) -> Result<Framed, FramingError> {
    let (mut length, mut chunked) = (None::<u64>, false);
    let (mut close, mut keep, mut expect) = (false, false, false);
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err(FramingError("more than one Content-Length"));
            }
            let v = h.value;
            if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                return Err(FramingError("a Content-Length that is not 1 to 19 digits"));
            }
            length = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked {
                return Err(FramingError("more than one Transfer-Encoding"));
            }
            if !h.value.eq_ignore_ascii_case(b"chunked") {
                return Err(FramingError("a Transfer-Encoding other than chunked alone"));
            }
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect = h.value.eq_ignore_ascii_case(b"100-continue");
        }
    }
    if chunked && http10 {
        return Err(FramingError("Transfer-Encoding in an HTTP/1.0 message"));
    }
    if chunked && length.is_some() {
        return Err(FramingError("both Transfer-Encoding and Content-Length"));
    }
    let keep_alive = if http10 { keep && !close } else { !close };
    let framing = match (message, chunked, length) {
        // Answers to HEAD, 1xx, 204 and 304 have no body whatever their head says (§6.3).
        (Message::Response { status, to_head }, _, _)
            if to_head || (100..200).contains(&status) || status == 204 || status == 304 =>
        {
            Framing::None
        }
        (_, true, _) => Framing::Chunked,
        (_, false, Some(0)) => Framing::None,
        (_, false, Some(n)) => Framing::Length(n),
        (Message::Request, false, None) => Framing::None,
        (Message::Response { .. }, false, None) => Framing::Close,
    };
    Ok(Framed {
        framing,
        keep_alive: keep_alive && framing != Framing::Close,
        expect_continue: expect,
    })
}

/// The most bytes of trailer fields after a chunked body.
pub const MAX_TRAILERS: usize = 8 * 1024;

/// Where a chunked body in a buffer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkScan {
    /// The body (framing included) ends at this offset.
    Done(usize),
    /// Complete chunks up to this offset; more bytes are needed.
    More(usize),
    /// The framing is broken.
    Bad(&'static str),
}

/// Walks the chunked body at the start of `buf`, resuming at `at` (an offset [`ChunkScan::More`]
/// gave, or 0).
pub fn chunked_end(buf: &[u8], mut at: usize) -> ChunkScan {
    loop {
        let (line, size) = match chunk_size(&buf[at..]) {
            Ok(Some(s)) => s,
            Ok(None) => return ChunkScan::More(at),
            Err(why) => return ChunkScan::Bad(why),
        };
        if size == 0 {
            // Trailer fields, each ending in CRLF, then an empty line.
            let mut pos = at + line;
            loop {
                if pos - (at + line) > MAX_TRAILERS {
                    return ChunkScan::Bad("trailers too large");
                }
                match find_crlf(&buf[pos..]) {
                    Ok(Some(0)) => return ChunkScan::Done(pos + 2),
                    Ok(Some(i)) => pos += i + 2,
                    Ok(None) if buf.len() - (at + line) > MAX_TRAILERS => {
                        return ChunkScan::Bad("trailers too large")
                    }
                    Ok(None) => return ChunkScan::More(at),
                    Err(why) => return ChunkScan::Bad(why),
                }
            }
        }
        let Some(next) = usize::try_from(size)
            .ok()
            .and_then(|s| (at + line).checked_add(s))
            .and_then(|end| end.checked_add(2))
        else {
            return ChunkScan::Bad("a chunk too large");
        };
        if next > buf.len() {
            return ChunkScan::More(at);
        }
        if &buf[next - 2..next] != b"\r\n" {
            return ChunkScan::Bad("a chunk not followed by CRLF");
        }
        at = next;
    }
}

/// A chunk-size line at the start of `buf`: its length (CRLF included) and the size, or
/// `None` when incomplete.
fn chunk_size(buf: &[u8]) -> Result<Option<(usize, u64)>, &'static str> {
    let Some(end) = find_crlf(buf)? else {
        return if buf.len() > 1024 {
            Err("a chunk-size line too long")
        } else {
            Ok(None)
        };
    };
    let line = &buf[..end];
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err("a bad chunk size");
    }
    let rest = line[digits..].trim_ascii_start();
    if !(rest.is_empty() || rest.starts_with(b";")) {
        return Err("a bad chunk size");
    }
    let size = u64::from_str_radix(std::str::from_utf8(&line[..digits]).unwrap_or("x"), 16)
        .map_err(|_| "a bad chunk size")?;
    Ok(Some((end + 2, size)))
}

/// The offset of the first CRLF in `buf`; a bare LF is an error.
fn find_crlf(buf: &[u8]) -> Result<Option<usize>, &'static str> {
    match buf.iter().position(|b| *b == b'\n') {
        Some(0) => Err("a line ending in a bare LF"),
        Some(i) if buf[i - 1] == b'\r' => Ok(Some(i - 1)),
        Some(_) => Err("a line ending in a bare LF"),
        None => Ok(None),
    }
}

/// The payload of a complete chunked body (as [`chunked_end`] delimited it).
pub fn dechunk(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    loop {
        let (line, size) = chunk_size(&raw[at..]).ok()??;
        if size == 0 {
            return Some(out);
        }
        let start = at + line;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        out.extend_from_slice(raw.get(start..end)?);
        at = end + 2;
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1): they belong to one connection, not the message.
pub fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &[&str]) -> Vec<(String, String)> {
        lines
            .iter()
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_owned(), v.trim_start().to_owned())
            })
            .collect()
    }

    fn framing_of(lines: &[&str], http10: bool, m: Message) -> Result<Framed, FramingError> {
        let owned = head(lines);
        let headers: Vec<httparse::Header<'_>> = owned
            .iter()
            .map(|(n, v)| httparse::Header {
                name: n,
                value: v.as_bytes(),
            })
            .collect();
        framing(&headers, http10, m)
    }

    #[test]
    fn ambiguous_framings_are_refused() {
        let req = Message::Request;
        for (lines, http10) in [
            (
                &["Content-Length: 4", "Transfer-Encoding: chunked"][..],
                false,
            ),
            (&["Transfer-Encoding: chunked", "Content-Length: 4"], false),
            (
                &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
                false,
            ),
            (&["Transfer-Encoding: chunked, chunked"], false),
            (&["Transfer-Encoding: xchunked"], false),
            (&["Transfer-Encoding: gzip, chunked"], false),
            (&["Transfer-Encoding: identity"], false),
            (&["Transfer-Encoding: chunked"], true),
            (&["Content-Length: 4", "Content-Length: 5"], false),
            (&["Content-Length: 4", "Content-Length: 4"], false),
            (&["Content-Length: 4, 4"], false),
            (&["Content-Length: +4"], false),
            (&["Content-Length: -1"], false),
            (&["Content-Length: 0x10"], false),
            (&["Content-Length: "], false),
            (&["Content-Length: 99999999999999999999"], false),
        ] {
            assert!(framing_of(lines, http10, req).is_err(), "{lines:?}");
        }
        let ok = framing_of(&["Content-Length: 0004"], false, req).unwrap();
        assert_eq!(ok.framing, Framing::Length(4));
        let ok = framing_of(&["transfer-encoding: Chunked"], false, req).unwrap();
        assert_eq!(ok.framing, Framing::Chunked);
        assert_eq!(framing_of(&[], false, req).unwrap().framing, Framing::None);
        let answer = Message::Response {
            status: 200,
            to_head: false,
        };
        assert_eq!(
            framing_of(&[], false, answer).unwrap().framing,
            Framing::Close
        );
        let to_head = Message::Response {
            status: 200,
            to_head: true,
        };
        assert_eq!(
            framing_of(&["Content-Length: 10"], false, to_head)
                .unwrap()
                .framing,
            Framing::None
        );
        let f = framing_of(&["Connection: keep-alive"], true, req).unwrap();
        assert!(f.keep_alive);
        let f = framing_of(&["Connection: foo, close"], false, req).unwrap();
        assert!(!f.keep_alive);
    }

    #[test]
    fn chunked_bodies_are_read_strictly() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        assert_eq!(chunked_end(body, 0), ChunkScan::Done(body.len() - 4));
        assert_eq!(dechunk(body).unwrap(), b"Wikipedia");
        for cut in 0..body.len() - 4 {
            assert!(
                matches!(chunked_end(&body[..cut], 0), ChunkScan::More(_)),
                "{cut}"
            );
        }
        for bad in [
            &b"4\nWiki\r\n0\r\n\r\n"[..],
            b"4\r\nWikiX\r\n0\r\n\r\n",
            b"g\r\nWiki\r\n0\r\n\r\n",
            b"+4\r\nWiki\r\n0\r\n\r\n",
            b"0\r\n\n",
            b"fffffffffffffffff\r\n",
            b"4 x\r\nWiki\r\n0\r\n\r\n",
        ] {
            assert!(
                matches!(chunked_end(bad, 0), ChunkScan::Bad(_)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // A size no buffer can reach past: refused at once, not waited for.
        let huge = format!("{:x}\r\n", u64::MAX);
        assert_eq!(
            chunked_end(huge.as_bytes(), 0),
            ChunkScan::Bad("a chunk too large")
        );
        let mut trailers = b"0\r\n".to_vec();
        trailers.extend(std::iter::repeat_n(b"X-A: b\r\n".to_vec(), 2000).flatten());
        assert_eq!(
            chunked_end(&trailers, 0),
            ChunkScan::Bad("trailers too large")
        );
    }
}
