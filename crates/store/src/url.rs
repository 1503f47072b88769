//! Database URLs, never shown with their passwords.

/// Where a URL's parts are, as PostgreSQL's driver finds them: its userinfo runs from after
/// `scheme://` to the first `@`, and its query from the next `?`. A password typed with an `@`
/// in it (the driver would fail on it) is taken whole: the userinfo then ends at the last `@`
/// before the query.
struct Parts {
    /// Just after `://`.
    after: usize,
    /// The `@` ending the userinfo, if there is one.
    at: Option<usize>,
    /// The `?` beginning the query, if there is one.
    query: Option<usize>,
}

fn parts(url: &str) -> Option<Parts> {
    let after = url.find("://")? + 3;
    let first_at = url[after..].find('@').map(|i| after + i);
    let from = first_at.map_or(after, |at| at + 1);
    let query = url[from..].find('?').map(|i| from + i);
    let at = first_at.map(|first| {
        url[first..query.unwrap_or(url.len())]
            .rfind('@')
            .map_or(first, |i| first + i)
    });
    Some(Parts { after, at, query })
}

/// `url` without its passwords, for messages — read as PostgreSQL's driver reads it
/// ([`Parts`]), so that nothing it would take for a password is shown: the userinfo's
/// (`postgres://u:***@host/db`, a password with `?`, `#`, `/` or `@` in it hidden whole), a
/// query parameter whose percent-decoded key names a password (`?password=***`,
/// `?pass%77ord=***`, `?sslpassword=***`; looked for after every `?` and `&`, wherever it
/// stands), and the values of a libpq `key=value` string (`host=h password=*** dbname=d`,
/// spaces around `=` and quotes allowed).
pub fn redacted(url: &str) -> String {
    let Some(p) = parts(url) else {
        return redacted_keywords(url);
    };
    let (head, rest) = match p.at {
        Some(at) => {
            let userinfo = &url[p.after..at];
            let shown = match userinfo.find(':') {
                Some(colon) => format!("{}:***", &userinfo[..colon]),
                None => userinfo.to_owned(),
            };
            (format!("{}{shown}@", &url[..p.after]), &url[at + 1..])
        }
        None => (url[..p.after].to_owned(), &url[p.after..]),
    };
    // Every `key=value` after a `?` or an `&`: the query's, and any a mistyped URL has
    // elsewhere.
    let mut out = head;
    let mut first = true;
    for piece in rest.split('?') {
        if !std::mem::take(&mut first) {
            out.push('?');
        }
        let params: Vec<String> = piece
            .split('&')
            .map(|param| match param.split_once('=') {
                Some((k, _)) if names_password(&crate::tls::percent_decoded(k)) => {
                    format!("{k}=***")
                }
                _ => param.to_owned(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// Whether a connection parameter's key names a password (`password`, `sslpassword`, any
/// case).
fn names_password(key: &str) -> bool {
    key.trim().to_ascii_lowercase().contains("password")
}

/// A URL's main part and its query, where the driver finds them ([`Parts`]: a `?` in a
/// password does not begin the query, one in a parameter's value does not end it).
pub(crate) fn split_query(url: &str) -> (&str, Option<&str>) {
    match parts(url).and_then(|p| p.query) {
        Some(q) => (&url[..q], Some(&url[q + 1..])),
        None => match url.find("://") {
            Some(_) => (url, None),
            None => match url.split_once('?') {
                Some((m, q)) => (m, Some(q)),
                None => (url, None),
            },
        },
    }
}

/// A libpq `key=value` connection string, read as libpq reads it (white space around `=`,
/// values quoted `'…'` with `\` escapes, or bare with `\` escapes), written back with the
/// values of password keys replaced by `***`.
fn redacted_keywords(s: &str) -> String {
    if !s.contains('=') {
        return s.to_owned();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut pairs: Vec<String> = Vec::new();
    let mut i = 0;
    let skip_space = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_space(&mut i);
        if i >= chars.len() {
            break;
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        skip_space(&mut i);
        if i >= chars.len() || chars[i] != '=' {
            // Not a key=value string after all: show the key alone, nothing after it.
            pairs.push(key);
            break;
        }
        i += 1;
        skip_space(&mut i);
        let mut value = String::new();
        if i < chars.len() && chars[i] == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
            i += 1;
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
        }
        if names_password(&key) {
            pairs.push(format!("{key}=***"));
        } else if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c == '\'') {
            pairs.push(format!(
                "{key}='{}'",
                value.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        } else {
            pairs.push(format!("{key}={value}"));
        }
    }
    pairs.join(" ")
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
