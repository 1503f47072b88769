//! A mirror's configuration file (TOML), for `datacube sync --mirror FILE [--daemon]` and
//! `datacube serve --mirror FILE`:
//!
//! ```toml
//! name = "acme"                      # runs are recorded under this name
//! upstream = "https://api.weixin.qq.com"
//! schedule = "08:30"                 # daily, China time (WeChat publishes yesterday at 08:00)
//! from = "2024-01-01"                # first day (default 2014-12-01)
//! endpoints = ["getusersummary", "getusercumulate"]   # default: all 21
//!
//! [[account]]
//! appid = "wx1234567890abcdef"
//! secret_env = "ACME_SECRET"         # or secret = "…", or secret_file = "/run/secrets/acme"
//!
//! [component]                        # and/or a third-party platform's authorizers
//! appid = "wxc0000000000000c1"
//! secret_env = "C_SECRET"
//! ticket_file = "/var/lib/provider/ticket"
//! ```
//!
//! Every key is checked: an unknown one, a wrong type or a bad value is an error naming the
//! key and its line. Secrets can be given in the file, or better by the name of an
//! environment variable (`…_env`) or of a file (`…_file`) that holds them.

use std::path::Path;
use std::time::Duration;

use datacube_api::date::parse_date;
use datacube_api::Endpoint;
use serde::Deserialize;

use crate::{AccountSource, ComponentSource, Mirror, Secret};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<String>,
    upstream: Option<String>,
    schedule: Option<String>,
    from: Option<String>,
    endpoints: Option<Vec<String>>,
    concurrency: Option<usize>,
    strict: Option<bool>,
    stable_token: Option<bool>,
    /// Retries of one call (after -1, HTTP 5xx, timeouts).
    call_retries: Option<u32>,
    slow_down: Option<Seconds>,
    connect_timeout: Option<Seconds>,
    header_timeout: Option<Seconds>,
    timeout: Option<Seconds>,
    max_answer: Option<Size>,
    /// Runs after a failed one, per day (also read as `retries`, its earlier name).
    #[serde(alias = "retries")]
    run_retries: Option<u32>,
    retry_delay: Option<Seconds>,
    #[serde(default, rename = "account")]
    accounts: Vec<FileAccount>,
    component: Option<FileComponent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAccount {
    appid: String,
    secret: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileComponent {
    appid: String,
    secret: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<String>,
    ticket: Option<String>,
    ticket_env: Option<String>,
    ticket_file: Option<String>,
    token: Option<String>,
    token_env: Option<String>,
    token_file: Option<String>,
    #[serde(default, rename = "authorizer")]
    authorizers: Vec<FileAuthorizer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuthorizer {
    appid: String,
    refresh_token: Option<String>,
    refresh_token_env: Option<String>,
    refresh_token_file: Option<String>,
}

/// A duration: a number of seconds, or text with units (`30s`, `250ms`, `5m`), read as flags
/// read them ([`datacube_api::duration`]).
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(f64),
    Text(String),
}

/// A size: bytes, or text with a unit (`64MiB`, `512 KiB`, `1GiB`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

/// Reads the mirror configuration at `path`. Errors name the file, and the key and line.
pub fn load(path: &Path) -> Result<Mirror, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the mirror configuration {}: {e}",
            path.display()
        )
    })?;
    let mirror = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    warn_if_others_can_read(path, &text);
    Ok(mirror)
}

/// Keys whose value, given inline, is a secret.
const SECRET_KEYS: [&str; 4] = ["secret", "ticket", "token", "refresh_token"];

/// A configuration that holds secrets inline should be readable by its owner alone: said once,
/// when it is read (the file is the operator's; datacube does not change it).
fn warn_if_others_can_read(path: &Path, text: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fn inline(v: &toml::Value) -> bool {
            match v {
                toml::Value::Table(t) => t
                    .iter()
                    .any(|(k, v)| (SECRET_KEYS.contains(&k.as_str()) && v.is_str()) || inline(v)),
                toml::Value::Array(a) => a.iter().any(inline),
                _ => false,
            }
        }
        let Ok(table) = toml::from_str::<toml::Table>(text) else {
            return;
        };
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let mode = meta.permissions().mode();
        if mode & 0o044 != 0 && inline(&toml::Value::Table(table)) {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the mirror configuration holds secrets inline and other users can read it: \
                 chmod 600 it, or give them with secret_env / secret_file"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, text, SECRET_KEYS);
}

/// The mirror's name in the configuration at `path`, without resolving its secrets (for
/// `sync --status`, which needs none).
pub fn name_of(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the mirror configuration {}: {e}",
            path.display()
        )
    })?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    match table.get("name") {
        None => Ok("mirror".to_owned()),
        Some(toml::Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{}: name: a string", path.display())),
    }
}

/// Parses a mirror configuration.
pub fn parse(text: &str) -> Result<Mirror, String> {
    let mut file = read(text)?;
    let mut m = Mirror {
        name: file.name.take().unwrap_or_else(|| "mirror".to_owned()),
        ..Mirror::default()
    };
    if m.name.is_empty() || m.name.len() > 64 {
        return Err("name: 1 to 64 characters".into());
    }
    what_and_when(&mut m, &mut file)?;
    how_calls_go(&mut m, &mut file)?;
    if let Some(n) = file.run_retries {
        if n > 24 {
            return Err("run_retries: 0 to 24".into());
        }
        m.run_retries = n;
    }
    if let Some(s) = file.retry_delay.take() {
        m.retry_delay = seconds("retry_delay", s, 1.0)?;
    }
    m.accounts = accounts(std::mem::take(&mut file.accounts))?;
    m.component = file.component.take().map(component).transpose()?;
    if m.accounts.is_empty() && m.component.is_none() {
        return Err("nothing to mirror: add an [[account]] or a [component]".into());
    }
    Ok(m)
}

/// The file's TOML, read into its keys; an error names the line.
fn read(text: &str) -> Result<File, String> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text.get(..s.start).unwrap_or(text).matches('\n').count() + 1);
        let message = without_values(e.message());
        match line {
            Some(line) => format!("line {line}: {message}"),
            None => message,
        }
    })
}

/// Where from, when, and what: `upstream`, `schedule`, `from`, `endpoints`.
fn what_and_when(m: &mut Mirror, file: &mut File) -> Result<(), String> {
    if let Some(u) = file.upstream.take() {
        m.upstream = check_upstream(&u).map_err(|e| format!("upstream: {e}"))?;
    }
    if let Some(s) = file.schedule.take() {
        m.schedule = parse_schedule(&s)?;
    }
    if let Some(f) = file.from.take() {
        m.from = parse_date(&f).ok_or_else(|| format!("from: {f:?} is not a YYYY-MM-DD date"))?;
    }
    for name in file.endpoints.take().unwrap_or_default() {
        let e = Endpoint::from_name(&name)
            .ok_or_else(|| format!("endpoints: {name:?} is not a datacube endpoint"))?;
        if !m.endpoints.contains(&e) {
            m.endpoints.push(e);
        }
    }
    Ok(())
}

/// How the calls go: `concurrency`, `strict`, `stable_token`, `call_retries`, `slow_down`, the
/// timeouts and `max_answer`.
fn how_calls_go(m: &mut Mirror, file: &mut File) -> Result<(), String> {
    if let Some(n) = file.concurrency {
        if !(1..=64).contains(&n) {
            return Err("concurrency: 1 to 64".into());
        }
        m.options.concurrency = n;
    }
    m.options.strict = file.strict.unwrap_or(false);
    m.stable_token = file.stable_token.unwrap_or(false);
    if let Some(n) = file.call_retries {
        if n > 20 {
            return Err("call_retries: 0 to 20".into());
        }
        m.call_retries = n;
    }
    if let Some(s) = file.slow_down.take() {
        m.slow_down = seconds("slow_down", s, 0.0)?;
    }
    if let Some(s) = file.connect_timeout.take() {
        m.timeouts.connect = seconds("connect_timeout", s, 0.001)?;
    }
    if let Some(s) = file.header_timeout.take() {
        m.timeouts.header = seconds("header_timeout", s, 0.001)?;
    }
    if let Some(s) = file.timeout.take() {
        m.timeouts.answer = seconds("timeout", s, 0.001)?;
    }
    if let Some(size) = file.max_answer.take() {
        m.max_answer = match size {
            Size::Bytes(n) => n,
            Size::Text(t) => parse_size(&t).map_err(|e| format!("max_answer: {e}"))?,
        };
        if m.max_answer < 1024 {
            return Err("max_answer: at least 1 KiB".into());
        }
    }
    Ok(())
}

/// The `[[account]]`s, each with its secret.
fn accounts(listed: Vec<FileAccount>) -> Result<Vec<AccountSource>, String> {
    let mut out: Vec<AccountSource> = Vec::new();
    for (i, a) in listed.into_iter().enumerate() {
        let at = format!("account[{i}] ({})", a.appid);
        if !crate::valid_appid(&a.appid) {
            return Err(format!(
                "{at}: an appid is 1 to 64 letters, digits, `_` or `-`"
            ));
        }
        let secret_from = match (&a.secret_env, &a.secret_file) {
            (Some(var), _) => format!("{at}'s secret_env, {var}"),
            (None, Some(path)) => format!("{at}'s secret_file, {path}"),
            (None, None) => format!("{at}'s secret"),
        };
        let secret = one_secret(&at, "secret", a.secret, a.secret_env, a.secret_file)?
            .ok_or_else(|| format!("{at}: give secret, secret_env or secret_file"))?;
        if out.iter().any(|b| b.appid == a.appid) {
            return Err(format!("{at}: listed twice"));
        }
        out.push(AccountSource {
            appid: a.appid,
            secret,
            secret_from,
        });
    }
    Ok(out)
}

/// The `[component]`, with its secret, ticket or token, and its listed authorizers.
fn component(c: FileComponent) -> Result<ComponentSource, String> {
    let at = format!("component ({})", c.appid);
    let secret = one_secret(&at, "secret", c.secret, c.secret_env, c.secret_file)?
        .ok_or_else(|| format!("{at}: give secret, secret_env or secret_file"))?;
    let ticket = one_secret(&at, "ticket", c.ticket, c.ticket_env, c.ticket_file)?;
    let token = one_secret(&at, "token", c.token, c.token_env, c.token_file)?;
    if ticket.is_none() && token.is_none() {
        return Err(format!(
            "{at}: give a ticket or a token (component_access_token)"
        ));
    }
    let mut authorizers = Vec::new();
    for (i, a) in c.authorizers.into_iter().enumerate() {
        let at = format!("component.authorizer[{i}] ({})", a.appid);
        let refresh = one_secret(
            &at,
            "refresh_token",
            a.refresh_token,
            a.refresh_token_env,
            a.refresh_token_file,
        )?
        .ok_or_else(|| {
            format!("{at}: give refresh_token, refresh_token_env or refresh_token_file")
        })?;
        authorizers.push((a.appid, refresh));
    }
    Ok(ComponentSource {
        appid: c.appid,
        secret,
        ticket,
        token,
        authorizers,
    })
}

/// A parser's message without the values it quotes (`invalid type: integer `1234…`,
/// expected a string` could be a secret in the wrong place); field names stay.
fn without_values(message: &str) -> String {
    if message.starts_with("unknown field") || message.starts_with("missing field") {
        return message.to_owned();
    }
    let mut out = String::new();
    let mut quoted = false;
    for part in message.split('`') {
        if !quoted {
            out.push_str(part);
        } else {
            out.push('…');
        }
        quoted = !quoted;
    }
    out
}

/// A secret given in one of three ways: in the file, by environment variable, or by file.
fn one_secret(
    at: &str,
    key: &str,
    plain: Option<String>,
    env: Option<String>,
    file: Option<String>,
) -> Result<Option<Secret>, String> {
    let value = match (plain, env, file) {
        (None, None, None) => return Ok(None),
        (Some(s), None, None) => s,
        (None, Some(var), None) => std::env::var(&var).map_err(|_| {
            format!("{at}: {key}_env names {var:?}, which is not set (or not UTF-8)")
        })?,
        (None, None, Some(path)) => std::fs::read_to_string(&path)
            .map_err(|e| format!("{at}: {key}_file {path:?}: {e}"))?
            .trim_end_matches(['\n', '\r'])
            .to_owned(),
        _ => return Err(format!("{at}: give one of {key}, {key}_env, {key}_file")),
    };
    if value.is_empty() {
        return Err(format!("{at}: {key} is empty"));
    }
    Ok(Some(Secret::new(value)))
}

/// `https://…` or `http://…`, without a trailing slash.
pub fn check_upstream(url: &str) -> Result<String, String> {
    let shown = datacube_client::redacted_url(url);
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{shown:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(format!("{shown:?} is not an http:// or https:// URL"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// `HH:MM`, China time.
pub fn parse_schedule(s: &str) -> Result<(u8, u8), String> {
    let bad = || format!("schedule: {s:?} is not HH:MM (China time, e.g. \"08:30\")");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (u8, u8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 || s.len() != 5 {
        return Err(bad());
    }
    Ok((h, m))
}

/// `64MiB`, `512 KiB`, `1GiB`, `1000000`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 64MiB"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" | "K" | "KB" => 10,
        "MiB" | "M" | "MB" => 20,
        "GiB" | "G" | "GB" => 30,
        _ => return Err(format!("{s:?}: the unit is one of B, KiB, MiB, GiB")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// The duration of `key`, at least `least` and at most a day.
fn seconds(key: &str, s: Seconds, least: f64) -> Result<Duration, String> {
    let d = match s {
        Seconds::Number(n) => datacube_api::duration::seconds(n),
        Seconds::Text(t) => datacube_api::duration::parse(&t),
    };
    d.and_then(|d| datacube_api::duration::within(d, Duration::from_secs_f64(least)))
        .map_err(|e| format!("{key}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_configuration_is_read() {
        std::env::set_var("DATACUBE_TEST_MIRROR_SECRET", "s3cret-from-env");
        let m = parse(
            r#"
            name = "acme"
            upstream = "http://127.0.0.1:9/"
            schedule = "09:05"
            from = "2024-01-01"
            endpoints = ["getusersummary", "getbizsummary"]
            concurrency = 2
            strict = true
            timeout = 2.5
            max_answer = "1MiB"
            retries = 5
            retry_delay = 30
            [[account]]
            appid = "wx1"
            secret = "plain"
            [[account]]
            appid = "wx2"
            secret_env = "DATACUBE_TEST_MIRROR_SECRET"
            [component]
            appid = "wxc"
            secret = "cs"
            ticket = "t"
            [[component.authorizer]]
            appid = "wx3"
            refresh_token = "r"
            "#,
        )
        .unwrap();
        assert_eq!(m.name, "acme");
        assert_eq!(m.upstream, "http://127.0.0.1:9");
        assert_eq!(m.schedule, (9, 5));
        assert_eq!(
            m.endpoints,
            [Endpoint::GetUserSummary, Endpoint::GetBizSummary]
        );
        assert_eq!(m.options.concurrency, 2);
        assert!(m.options.strict);
        assert_eq!(m.timeouts.answer, Duration::from_millis(2500));
        assert_eq!(m.max_answer, 1 << 20);
        assert_eq!((m.run_retries, m.retry_delay), (5, Duration::from_secs(30)));
        assert_eq!(m.accounts[1].secret.expose(), "s3cret-from-env");
        let c = m.component.unwrap();
        assert_eq!(c.authorizers[0].0, "wx3");
        assert!(
            !format!("{:?}", m.accounts).contains("plain"),
            "secrets never in Debug"
        );
    }

    #[test]
    fn mistakes_are_named_with_their_line() {
        let e = parse("name = \"x\"\nschedul = \"08:30\"\n").unwrap_err();
        assert!(e.starts_with("line 2: unknown field `schedul`"), "{e}");
        let e = parse("schedule = \"8:30\"\n[[account]]\nappid=\"a\"\nsecret=\"b\"").unwrap_err();
        assert!(e.contains("is not HH:MM"), "{e}");
        let e = parse("[[account]]\nappid = \"a\"\n").unwrap_err();
        assert!(e.contains("give secret, secret_env or secret_file"), "{e}");
        let e =
            parse("[[account]]\nappid = \"a\"\nsecret = \"b\"\nsecret_env = \"C\"\n").unwrap_err();
        assert!(
            e.contains("give one of secret, secret_env, secret_file"),
            "{e}"
        );
        let e =
            parse("[[account]]\nappid = \"a\"\nsecret_env = \"DATACUBE_NOT_SET_X\"\n").unwrap_err();
        assert!(e.contains("which is not set"), "{e}");
        let e = parse("[[account]]\nappid = \"a\"\nsecret = 1234567890123456\n").unwrap_err();
        assert!(e.starts_with("line 3: invalid type: integer …"), "{e}");
        assert!(!e.contains("1234567890123456"), "no value quoted: {e}");
        let e = parse("endpoints = [\"getnothing\"]\n[[account]]\nappid=\"a\"\nsecret=\"b\"")
            .unwrap_err();
        assert!(
            e.contains("\"getnothing\" is not a datacube endpoint"),
            "{e}"
        );
        assert!(parse("").unwrap_err().contains("nothing to mirror"));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert!(parse_size("5 parsecs").is_err());
    }

    /// Durations read as flags read them; a count out of range is refused, not clamped.
    #[test]
    fn durations_and_counts_are_read_as_flags_read_them() {
        let account = "[[account]]\nappid = \"a\"\nsecret = \"b\"\n";
        let m = parse(&format!(
            "retry_delay = \"10m\"\nslow_down = 0.5\ntimeout = \"90s\"\nrun_retries = 2\n{account}"
        ))
        .unwrap();
        assert_eq!(m.retry_delay, Duration::from_secs(600));
        assert_eq!(m.slow_down, Duration::from_millis(500));
        assert_eq!(m.timeouts.answer, Duration::from_secs(90));
        assert_eq!(m.run_retries, 2);
        for (text, says) in [
            ("call_retries = 21\n", "call_retries: 0 to 20"),
            ("run_retries = 25\n", "run_retries: 0 to 24"),
            ("timeout = \"2d\"\n", "timeout: "),
            ("timeout = 0\n", "timeout: "),
            (
                "retry_delay = \"soon\"\n",
                "retry_delay: \"soon\" is not a duration",
            ),
            ("slow_down = -1\n", "slow_down: "),
        ] {
            let e = parse(&format!("{text}{account}")).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
