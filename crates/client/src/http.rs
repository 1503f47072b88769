//! One HTTP exchange with an upstream, bounded: the time to its answer's head, the time to
//! its whole answer, the answer's size. What went wrong is said in words a person can act on
//! — the status, the timeout, the kind of body — and never with the request's URL, which
//! carries the AppSecret (`/cgi-bin/token`) or an access token (every datacube call).

use std::time::Duration;

/// How an exchange failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Worth another try: a transport error, a timeout, HTTP 5xx/429/408, a body that is not
    /// JSON (a gateway's error page).
    Transient(String),
    /// Not worth another try: the answer is over the size limit, or another HTTP status.
    Fatal(String),
}

/// Limits of one exchange.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Until the answer's status and headers have arrived.
    pub header_timeout: Duration,
    /// Until the whole answer has arrived (the client's own timeout enforces it too).
    pub timeout: Duration,
    /// The largest answer read, in bytes.
    pub max_answer: u64,
}

/// Sends `request` and reads its answer's body as text. `secrets` (what the request carries:
/// the AppSecret, a token…) are blanked out of any part of the answer quoted in an error, in
/// case the upstream echoes them.
pub(crate) async fn exchange(
    request: reqwest::RequestBuilder,
    limits: Limits,
    secrets: &[&str],
) -> Result<String, Failure> {
    let answer = head(request, limits).await?;
    let content_type = answer
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("no content type")
        .to_owned();
    let body = body(answer, limits).await?;
    json_text(body, &content_type, secrets)
}

/// Sends `request` and waits for its answer's status and headers: a success, or why not.
async fn head(
    request: reqwest::RequestBuilder,
    limits: Limits,
) -> Result<reqwest::Response, Failure> {
    let answer = match tokio::time::timeout(limits.header_timeout, request.send()).await {
        Err(_) => {
            return Err(Failure::Transient(format!(
                "no answer within {} s (header timeout)",
                seconds(limits.header_timeout)
            )))
        }
        Ok(Err(e)) => return Err(Failure::Transient(describe(&e, limits))),
        Ok(Ok(answer)) => answer,
    };
    let status = answer.status();
    if status.is_redirection() {
        // WeChat never redirects; following one would send the secret or the token elsewhere.
        return Err(Failure::Fatal(format!(
            "HTTP {status} (redirects are not followed)"
        )));
    }
    if !status.is_success() {
        let what = format!("HTTP {status}");
        return Err(
            if status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::REQUEST_TIMEOUT
            {
                Failure::Transient(what)
            } else {
                Failure::Fatal(what)
            },
        );
    }
    Ok(answer)
}

/// Reads the answer's body, up to the size limit (by its announced length, then as it comes).
async fn body(mut answer: reqwest::Response, limits: Limits) -> Result<Vec<u8>, Failure> {
    let too_large = || {
        Failure::Fatal(format!(
            "the answer is larger than the {} limit (--max-answer)",
            bytes(limits.max_answer)
        ))
    };
    if answer
        .content_length()
        .is_some_and(|n| n > limits.max_answer)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match answer.chunk().await {
            Ok(Some(chunk)) => {
                if (body.len() + chunk.len()) as u64 > limits.max_answer {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(Failure::Transient(describe(&e, limits))),
        }
    }
}

/// The body as text if it is a JSON object; otherwise (a gateway's error page) what it is,
/// its secrets blanked out.
fn json_text(body: Vec<u8>, content_type: &str, secrets: &[&str]) -> Result<String, Failure> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(Failure::Transient(format!(
            "not a JSON answer ({}): {}",
            clean(content_type),
            snippet(&body, secrets)
        )));
    }
    String::from_utf8(body).map_err(|e| {
        Failure::Transient(format!(
            "not a JSON answer ({}): not UTF-8 at byte {}",
            clean(content_type),
            e.utf8_error().valid_up_to()
        ))
    })
}

pub(crate) use datacube_api::text::{clean, snippet};

/// A transport error in words, with its causes, without the URL.
fn describe(e: &reqwest::Error, limits: Limits) -> String {
    if e.is_timeout() {
        return format!(
            "the answer did not complete within {} s (timeout)",
            seconds(limits.timeout)
        );
    }
    let mut out = if e.is_connect() {
        "cannot connect".to_owned()
    } else if e.is_body() || e.is_decode() {
        "the answer broke off".to_owned()
    } else {
        "the request failed".to_owned()
    };
    // The innermost cause names what happened (`Connection refused (os error 111)`, a DNS or
    // TLS failure); the layers above it are reqwest's and hyper's wrappers, and reqwest's
    // repeat the URL.
    let mut root = None;
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.contains("://") {
            root = Some(text);
        }
        cause = c.source();
    }
    if let Some(text) = root {
        out.push_str(": ");
        out.push_str(&text);
    }
    out
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s}")
    }
}

/// `url` for people: its password, if any, replaced by `***` — also in a URL that does not
/// parse (everything between the user's `:` and the last `@` is taken for the password).
pub fn redacted_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.as_str().trim_end_matches('/').to_owned()
        }
        Ok(_) => url.to_owned(),
        Err(_) => {
            let after = url.find("://").map_or(0, |s| s + 3);
            let at = url.rfind('@').filter(|at| *at >= after);
            let colon = at.and_then(|at| url[after..at].find(':').map(|c| after + c));
            match (colon, at) {
                (Some(colon), Some(at)) => format!("{}:***{}", &url[..colon], &url[at..]),
                _ => url.to_owned(),
            }
        }
    }
}

/// `67108864` → `64 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_snippets_read_well() {
        assert_eq!(bytes(64 << 20), "64 MiB");
        assert_eq!(bytes(1000), "1000 bytes");
        assert_eq!(snippet(b"<html>busy</html>", &[]), "\"<html>busy</html>\"");
        assert!(snippet(&[b'x'; 500], &[]).ends_with('…'));
        assert_eq!(
            snippet(b"bad secret=S3CRET&x", &["S3CRET"]),
            "\"bad secret=***&x\""
        );
        assert_eq!(clean("a\nb\u{1b}[2J"), "a\\nb\\u{1b}[2J");
        assert_eq!(clean(&"x".repeat(300)).chars().count(), 201);
        assert_eq!(
            redacted_url("http://u:PROXY_PW@127.0.0.1:9/"),
            "http://u:***@127.0.0.1:9"
        );
        assert_eq!(
            redacted_url("https://api.weixin.qq.com"),
            "https://api.weixin.qq.com"
        );
        // A URL that does not parse still keeps its password to itself.
        for bad in [
            "http://u:PASS?WORD@ho st:80",
            "http://u:PASSWORD@host:99999",
            "ftp://u:PASS@WORD@host",
        ] {
            let shown = redacted_url(bad);
            assert!(!shown.contains("PASS"), "{bad} → {shown}");
        }
    }
}
