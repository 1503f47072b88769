//! Settings, in one place: a TOML file (`--config FILE` or `DATACUBE_CONFIG`), then the
//! environment (`DATACUBE_…`), then flags — each later one overriding the earlier.
//!
//! The file's keys are the flags' long names (`max-connections`, or `max_connections`): at the
//! top level for every command that has that flag (`database`, `clock`, `log-format`), and in
//! a table named after the command for that command alone (`[serve]`, `[sync]`, `[push]`,
//! `[proxy]`, `[account.add]`…):
//!
//! ```toml
//! database = "postgres://datacube@db/datacube"
//!
//! [serve]
//! listen = "0.0.0.0:8080"
//! max-connections = 4096
//! header-timeout = "10s"
//!
//! [sync]
//! mirror = "/etc/datacube/acme.toml"
//! call-retries = 8
//! ```
//!
//! A file's value becomes the flag's default before the command line is parsed, so clap reads
//! it with the flag's own parser: a value is accepted or refused alike from the file, the
//! environment or the command line. Unknown keys, wrong types and bad values are usage errors
//! (exit 2) naming the file and the key, before anything is opened. `--show-config` prints
//! what a command would run with and where each value came from.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// The environment variable naming the settings file.
pub const CONFIG_ENV: &str = "DATACUBE_CONFIG";

/// Flags that are not settings: they never come from the file.
const NOT_SETTINGS: [&str; 4] = ["help", "version", "config", "show-config"];

/// The command line parsed over the settings file.
pub struct Parsed {
    pub matches: ArgMatches,
    /// The command as declared (before the file's values, which move the flags they set to
    /// the end), for `--show-config`.
    command: Command,
    /// The file, if one was read, and which settings (command path, flag id) it gave.
    file: Option<(PathBuf, BTreeSet<Setting>)>,
    /// What to say once logging is set up (a file others can read holding a secret).
    pub warnings: Vec<String>,
}

/// A setting the file gave: the path of the command it is for (empty: the top), and the
/// flag's id.
type Setting = (Vec<String>, String);

/// A usage error in the settings file (exit 2).
#[derive(Debug)]
pub struct FileError(pub String);

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses `argv` as `command`, over the settings file it names (or `DATACUBE_CONFIG` does).
/// Clap's own errors (and `--help`) end the process as clap does; the file's are returned.
pub fn parse(command: Command, argv: Vec<OsString>) -> Result<Parsed, FileError> {
    // `--show-config` prints what was given even when a required flag was not.
    let command = if argv.iter().any(|a| a == "--show-config") {
        command.ignore_errors(true)
    } else {
        command
    };
    let Some(path) = config_path(&argv) else {
        let command = command.clone();
        let matches = command.clone().get_matches_from(argv);
        return Ok(Parsed {
            matches,
            command,
            file: None,
            warnings: Vec::new(),
        });
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        FileError(format!(
            "--config {}: cannot read the settings file: {e}",
            path.display()
        ))
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| not_toml(&path, &text, &e))?;
    let mut applied = Applied {
        file: path.clone(),
        set: BTreeMap::new(),
        secrets: BTreeSet::new(),
        globals: command
            .get_arguments()
            .filter(|a| a.is_global_set())
            .filter_map(Arg::get_long)
            .map(str::to_owned)
            .collect(),
    };
    let declared = command.clone();
    let command = applied.table(command, &table, &[])?;
    let mut warnings = Vec::new();
    if !applied.secrets.is_empty() && others_can_read(&path) {
        warnings.push(format!(
            "the settings file {} holds {} and other users can read it: chmod 600 it, or give \
             secrets in the environment",
            path.display(),
            applied
                .secrets
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let matches = command.clone().get_matches_from(argv.clone());
    // A flag (or an environment variable) given with one that conflicts with it, and that the
    // file set, wins: the file's value is dropped, as clap would refuse the two as flags.
    let overridden = applied.overridden(&command, &matches);
    let matches = if overridden.is_empty() {
        matches
    } else {
        let mut command = command;
        for (at, id) in &overridden {
            let original = applied.set.remove(&(at.clone(), id.clone())).flatten();
            command = mut_at(command, at, &|sub: Command| {
                sub.mut_arg(id.as_str(), |a| match &original {
                    Some(values) => a.default_values(values.clone()),
                    None => a.default_value(None::<&str>),
                })
            });
        }
        command.get_matches_from(argv)
    };
    Ok(Parsed {
        matches,
        command: declared,
        file: Some((path, applied.set.into_keys().collect())),
        warnings,
    })
}

/// `--config FILE` or `--config=FILE` before any `--`, else `DATACUBE_CONFIG` (an empty one is
/// none; clap does not read that variable itself, so an empty one is no error).
fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        if text == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The file's values applied to a command as its flags' defaults.
struct Applied {
    file: PathBuf,
    /// The settings it gave, each with the default its value replaced (none: there was none),
    /// to put back when a flag overrides it.
    set: BTreeMap<Setting, Option<Vec<String>>>,
    /// Keys of the file holding secrets (flags whose environment values clap hides; a
    /// database URL with a password).
    secrets: BTreeSet<String>,
    /// The top command's global flags (`log-format`…).
    globals: Vec<String>,
}

impl Applied {
    /// Applies `table` to `command`, whose path from the top is `at`.
    fn table(
        &mut self,
        mut command: Command,
        table: &toml::Table,
        at: &[String],
    ) -> Result<Command, FileError> {
        // This level's keys first, then the commands' tables: a command's own value wins over
        // one for every command, whatever the order of the file.
        let (tables, keys): (Vec<_>, Vec<_>) = table.iter().partition(|(key, value)| {
            value.is_table() && command.find_subcommand(key.replace('_', "-")).is_some()
        });
        for (key, value) in keys {
            let name = key.replace('_', "-");
            if !at.is_empty() && self.is_global(&command, &name) {
                return Err(FileError(format!(
                    "{}: `{}` is a setting of every command: put it at the top of the file",
                    self.file.display(),
                    dotted(at, key)
                )));
            }
            let (next, applied) = self.key(command, &name, value, at, &dotted(at, key))?;
            command = next;
            if !applied {
                return Err(self.unknown(key, &name, value, at, &command));
            }
        }
        for (key, value) in tables {
            let name = key.replace('_', "-");
            let mut path = at.to_vec();
            path.push(name.clone());
            let sub = command.find_subcommand(&name).cloned().expect("filtered");
            let inner = value.as_table().expect("filtered");
            let sub = self.table(sub, inner, &path)?;
            command = command.mut_subcommand(&name, |_| sub);
        }
        Ok(command)
    }

    /// Whether `name` is one of the top command's global flags (`--log-format`…), which a
    /// subcommand's table cannot set.
    fn is_global(&self, command: &Command, name: &str) -> bool {
        self.globals.iter().any(|n| n == name)
            && !command
                .get_arguments()
                .any(|a| a.get_long() == Some(name) && !a.is_global_set())
    }

    /// The file's settings of the command that ran that conflict with a flag or environment
    /// variable given to it.
    fn overridden(&self, command: &Command, matches: &ArgMatches) -> Vec<Setting> {
        let mut path = Vec::new();
        let (mut matches, mut command) = (matches, command.clone());
        while let Some((name, sub)) = matches.subcommand() {
            path.push(name.to_owned());
            matches = sub;
            command = command
                .find_subcommand(name)
                .cloned()
                .expect("parsed from it");
        }
        command.build();
        let given = |id: &str| {
            matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        let mut out = Vec::new();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            let from_file = (0..=path.len())
                .find(|n| self.set.contains_key(&(path[..*n].to_vec(), id.to_owned())));
            let Some(n) = from_file else { continue };
            if given(id) {
                continue;
            }
            let conflicts = command.get_arguments().any(|other| {
                let other_id = other.get_id().as_str();
                given(other_id)
                    && (command
                        .get_arg_conflicts_with(arg)
                        .iter()
                        .any(|c| c.get_id() == other_id)
                        || command
                            .get_arg_conflicts_with(other)
                            .iter()
                            .any(|c| c.get_id() == id))
            });
            if conflicts {
                out.push((path[..n].to_vec(), id.to_owned()));
            }
        }
        out
    }

    /// Sets `name` on `command` if it has such a flag, else on each of its subcommands that
    /// has one; whether any had it.
    fn key(
        &mut self,
        mut command: Command,
        name: &str,
        value: &toml::Value,
        at: &[String],
        file_key: &str,
    ) -> Result<(Command, bool), FileError> {
        if NOT_SETTINGS.contains(&name) {
            return Ok((command, false));
        }
        let found = command
            .get_arguments()
            .find(|a| a.get_long() == Some(name))
            .cloned();
        if let Some(arg) = found {
            let values = self.values(&arg, name, value, at)?;
            let id = arg.get_id().to_string();
            let secret = arg.is_hide_env_values_set();
            if secret && (name != "database" || values.iter().any(|v| has_password(v))) {
                self.secrets.insert(format!("`{file_key}`"));
            }
            let original: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            self.set
                .entry((at.to_vec(), id.clone()))
                .or_insert((!original.is_empty()).then_some(original));
            let switch = matches!(arg.get_action(), ArgAction::SetTrue);
            command = command.mut_arg(id, |a| {
                // A switch the file turns on can be turned off again: `--demo=false`.
                let a = if switch {
                    a.action(ArgAction::Set)
                        .num_args(0..=1)
                        .require_equals(true)
                        .default_missing_value("true")
                        .value_parser(clap::value_parser!(bool))
                } else {
                    a
                };
                // `--help` shows defaults: never a secret's.
                a.default_values(values)
                    .required(false)
                    .hide_default_value(secret)
            });
            return Ok((command, true));
        }
        let names: Vec<String> = command
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect();
        let mut any = false;
        for sub_name in names {
            let sub = command.find_subcommand(&sub_name).cloned().expect("listed");
            let mut path = at.to_vec();
            path.push(sub_name.clone());
            let (sub, applied) = self.key(sub, name, value, &path, file_key)?;
            any |= applied;
            command = command.mut_subcommand(&sub_name, |_| sub);
        }
        Ok((command, any))
    }

    /// The file's value for `arg` as the strings its parser reads, each checked by it.
    fn values(
        &self,
        arg: &Arg,
        name: &str,
        value: &toml::Value,
        at: &[String],
    ) -> Result<Vec<String>, FileError> {
        let key = dotted(at, name);
        let wrong = |what: &str| FileError(format!("{}: `{key}` {what}", self.file.display()));
        let flag = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
        let many = matches!(arg.get_action(), ArgAction::Append);
        let texts = match value {
            toml::Value::Boolean(b) if flag => return Ok(vec![b.to_string()]),
            _ if flag => return Err(wrong("is a switch: true or false")),
            toml::Value::Array(items) if many => items
                .iter()
                .map(|v| {
                    scalar(v).ok_or_else(|| wrong("holds a list of values, not tables or lists"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            toml::Value::Array(_) => return Err(wrong("takes one value, not a list")),
            // A list flag given as one text splits as on the command line (`a,b`).
            toml::Value::String(text) if many => match arg.get_value_delimiter() {
                Some(d) => text.split(d).map(str::to_owned).collect(),
                None => vec![text.clone()],
            },
            other => vec![scalar(other).ok_or_else(|| wrong("takes a value, not a table"))?],
        };
        // The flag's own parser, on a command of that one flag (the value parser's own
        // method is clap's).
        let probe = Command::new("datacube").no_binary_name(true).arg(
            Arg::new("value")
                .long(name.to_owned())
                .value_name("VALUE")
                .action(ArgAction::Set)
                .value_parser(arg.get_value_parser().clone()),
        );
        for text in &texts {
            // `--name=VALUE`: a value starting with `-` is a value, not a flag.
            if let Err(e) = probe
                .clone()
                .try_get_matches_from([OsString::from(format!("--{name}={text}"))])
            {
                // Clap's message repeats the value: never for a secret.
                let why = if arg.is_hide_env_values_set() {
                    "is not a valid value (not shown: it is a secret)".to_owned()
                } else if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
                    format!("= {text:?}: not one of {}", valid.join(", "))
                } else if let Some(cause) = std::error::Error::source(&e) {
                    format!("= {text:?}: {cause}")
                } else {
                    // Clap's message, e.g. the possible values, without its usage lines.
                    let rendered = e.to_string();
                    let lines: Vec<&str> = rendered
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
                        .collect();
                    lines.join(" ").trim_start_matches("error: ").to_owned()
                };
                return Err(wrong(&why));
            }
        }
        Ok(texts)
    }

    /// The error for a key nothing took: the keys this table takes, and a hint when the file
    /// looks like a mirror's configuration.
    fn unknown(
        &self,
        key: &str,
        name: &str,
        value: &toml::Value,
        at: &[String],
        command: &Command,
    ) -> FileError {
        let mut known: Vec<String> = Vec::new();
        collect_longs(command, &mut known);
        known.sort();
        known.dedup();
        let mut message = format!("{}: unknown key `{}`", self.file.display(), dotted(at, key));
        if at.is_empty() && is_mirror_key(key, value) {
            message.push_str(
                " — this looks like a mirror's configuration (docs/sync.md): give it to \
                 `sync --mirror` or `serve --mirror`, or name it in the settings file as \
                 `[sync] mirror = \"…\"`",
            );
        } else if command.find_subcommand(name).is_some() {
            let _ = write!(
                message,
                ": `{name}` is a command, whose settings go in a `[{}]` table",
                dotted(at, name)
            );
        } else if let Some(close) = known
            .iter()
            .filter(|k| strsim::jaro_winkler(k, name) > 0.9)
            .max_by(|a, b| strsim::jaro_winkler(a, name).total_cmp(&strsim::jaro_winkler(b, name)))
        {
            let _ = write!(message, " (did you mean `{close}`?)");
        } else if !at.is_empty() {
            let _ = write!(message, "; `{}` takes: {}", at.join(" "), known.join(", "));
        }
        FileError(message)
    }
}

/// Whether a database URL holds a password (its shown form differs).
fn has_password(url: &str) -> bool {
    datacube_store::redacted(url) != url
}

/// The TOML error of `path`: where, and what, without quoting the line (it may hold a
/// secret).
fn not_toml(path: &Path, text: &str, e: &toml::de::Error) -> FileError {
    let at = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("line {line}, column {column}: ")
    });
    FileError(format!(
        "{}: not TOML: {}{}",
        path.display(),
        at.unwrap_or_default(),
        e.message().trim_end()
    ))
}

/// `command` with `f` applied to its subcommand at `path` (itself when empty).
fn mut_at(command: Command, path: &[String], f: &dyn Fn(Command) -> Command) -> Command {
    match path.split_first() {
        None => f(command),
        Some((first, rest)) => command.mut_subcommand(first.as_str(), |sub| mut_at(sub, rest, f)),
    }
}

/// `serve.listen`, `listen`.
fn dotted(at: &[String], key: &str) -> String {
    at.iter()
        .map(String::as_str)
        .chain([key])
        .collect::<Vec<_>>()
        .join(".")
}

/// A scalar TOML value as the text a flag would carry.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(x) => Some(x.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

/// The long flags of `command` and of its subcommands that are settings.
fn collect_longs(command: &Command, into: &mut Vec<String>) {
    into.extend(
        command
            .get_arguments()
            .filter_map(Arg::get_long)
            .filter(|l| !NOT_SETTINGS.contains(l))
            .map(str::to_owned),
    );
    for sub in command.get_subcommands() {
        collect_longs(sub, into);
    }
}

/// Top-level keys of a mirror's configuration (`datacube_mirror::config`) that no flag has.
fn is_mirror_key(key: &str, value: &toml::Value) -> bool {
    matches!(key, "name" | "schedule" | "call_retries" | "retry_delay")
        || (key == "account" && value.is_array())
        || (key == "component" && value.get("appid").is_some())
}

#[cfg(unix)]
fn others_can_read(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o044 != 0)
}

#[cfg(not(unix))]
fn others_can_read(_: &Path) -> bool {
    false
}

impl Parsed {
    /// What the command named by `matches` runs with: each setting, its value (secrets as
    /// `***`, a database URL without its password) and where it came from, as TOML a settings
    /// file could start from.
    pub fn show(&self) -> String {
        let mut path = Vec::new();
        let mut matches = &self.matches;
        let mut command = &self.command;
        while let Some((name, sub)) = matches.subcommand() {
            path.push(name.to_owned());
            matches = sub;
            command = command.find_subcommand(name).expect("parsed from it");
        }
        let mut out = format!(
            "# datacube {}: each setting from the file (--config), the environment, a flag or \
             the default\n",
            path.join(" ")
        );
        if let Some((file, _)) = &self.file {
            let _ = writeln!(out, "# file: {}", file.display());
        }
        // The global settings (given to every command) first, as a file has them at its top.
        let globals = self.command.get_arguments().filter(|a| a.is_global_set());
        for arg in globals {
            self.line(&mut out, arg, matches, &[]);
        }
        if !path.is_empty() {
            let _ = writeln!(out, "\n[{}]", path.join("."));
        }
        for arg in command.get_arguments().filter(|a| !a.is_global_set()) {
            self.line(&mut out, arg, matches, &path);
        }
        out
    }

    /// The line of `--show-config` for `arg`.
    fn line(&self, out: &mut String, arg: &Arg, matches: &ArgMatches, path: &[String]) {
        let Some(long) = arg.get_long() else { return };
        if NOT_SETTINGS.contains(&long) {
            return;
        }
        let id = arg.get_id().as_str();
        let source = match matches.value_source(id) {
            None => {
                let _ = writeln!(out, "# {long}: not set");
                return;
            }
            Some(ValueSource::CommandLine) => format!("--{long}"),
            Some(ValueSource::EnvVariable) => arg.get_env().map_or_else(
                || "environment".to_owned(),
                |e| e.to_string_lossy().into_owned(),
            ),
            Some(_) if self.given_by_file(path, id) => "file".to_owned(),
            Some(_) => "default".to_owned(),
        };
        let shown: Vec<String> = matches
            .get_raw(id)
            .into_iter()
            .flatten()
            .map(|v| shown(arg, long, &v.to_string_lossy()))
            .collect();
        let value = match (
            shown.as_slice(),
            matches!(arg.get_action(), ArgAction::Append),
        ) {
            ([one], false) => toml_text(arg, one),
            (many, _) => format!(
                "[{}]",
                many.iter()
                    .map(|v| toml_text(arg, v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let _ = writeln!(out, "{long} = {value}  # {source}");
    }

    /// Whether the file gave `id` to the command at `path` (or to a command above it).
    fn given_by_file(&self, path: &[String], id: &str) -> bool {
        let Some((_, set)) = &self.file else {
            return false;
        };
        (0..=path.len()).any(|n| set.contains(&(path[..n].to_vec(), id.to_owned())))
    }
}

/// A value as `--show-config` prints it: secrets hidden, a database URL without its password.
fn shown(arg: &Arg, long: &str, value: &str) -> String {
    if long == "database" {
        return datacube_store::redacted(value);
    }
    if arg.is_hide_env_values_set() {
        return "***".to_owned();
    }
    value.to_owned()
}

/// A value as TOML: switches and numbers bare, the rest quoted.
fn toml_text(arg: &Arg, value: &str) -> String {
    let bare = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
        || (value.parse::<f64>().is_ok() && !value.starts_with('+'));
    if bare {
        value.to_owned()
    } else {
        toml::Value::String(value.to_owned()).to_string()
    }
}
