//! Database URLs, never shown with their passwords.

/// `url` without its passwords, for messages: the userinfo's (`postgres://u:***@host/db`),
/// a `password=` query parameter's (`?password=***`), and in a libpq key=value string
/// (`host=h password=*** dbname=d`) too.
pub fn redacted(url: &str) -> String {
    let Some(scheme) = url.find("://") else {
        return redacted_keywords(url);
    };
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (url, None),
    };
    let mut out = match main.rfind('@').filter(|at| *at > scheme) {
        Some(at) => {
            let userinfo = &main[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{}", &main[..scheme + 3 + colon], &main[at..]),
                None => main.to_owned(),
            }
        }
        None => main.to_owned(),
    };
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((k, _)) if k.to_ascii_lowercase().contains("password") => format!("{k}=***"),
                _ => param.to_owned(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// A libpq `key=value` connection string with the values of password keys replaced.
fn redacted_keywords(s: &str) -> String {
    if !s.contains('=') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = &rest[..eq];
        out.push_str(key);
        out.push('=');
        let after = &rest[eq + 1..];
        // A value runs to the next space, or is quoted ('a b', with \' escapes).
        let end = if let Some(quoted) = after.strip_prefix('\'') {
            let mut escaped = false;
            let close = quoted
                .char_indices()
                .find(|&(_, c)| {
                    let stop = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    stop
                })
                .map_or(after.len(), |(i, _)| i + 2);
            close
        } else {
            after.find(' ').unwrap_or(after.len())
        };
        if key.trim().to_ascii_lowercase().contains("password") {
            out.push_str("***");
        } else {
            out.push_str(&after[..end]);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// A database URL. `Display` and `Debug` show it without its password ([`redacted`]), so that
/// no message or log line can print one by accident; [`DatabaseUrl::expose`] gives it whole.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL, password included: to open the database with, nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<DatabaseUrl, Self::Err> {
        Ok(DatabaseUrl(s.to_owned()))
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redacted(&self.0))
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}
