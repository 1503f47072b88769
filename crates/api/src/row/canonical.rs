//! Validating rows that come from outside — `datacube import`, the answers `datacube sync`
//! mirrors — into canonical form.
//!
//! Objects are read in the order they were written (`serde_json::Value` would sort their
//! keys), so that a field no shape lists can be kept where it came: WeChat adds fields to its
//! answers without notice (`url` on getarticletotal rows, WxJava #2028), and a mirror must
//! serve back what WeChat sent. Known fields are written in WeChat's order; each unknown field
//! follows the known field it followed in the input (or leads, if it led), its value as sent,
//! whitespace removed.

use std::collections::{BTreeSet, HashSet};
use std::fmt::{self, Write as _};

use jiff::civil::Date;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use super::{field_error, list_body, push_text_key, snapshots_field, Kind, Row, RowError, Shape};
use crate::date;
use crate::endpoint::{Endpoint, Period};

/// What to do with a field the endpoint's shape does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NewFields {
    /// Keep it, verbatim, where it came, and name it in [`Parsed::new_fields`].
    #[default]
    Keep,
    /// Refuse the row that has it (`--strict`).
    Refuse,
}

/// A JSON object's members in the order written, each value as written.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Members<'a>, M::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, v)) = map.next_entry::<String, &'a RawValue>()? {
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

impl<'a> Members<'a> {
    fn parse(raw: &'a str) -> Option<Members<'a>> {
        serde_json::from_str(raw).ok()
    }

    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }
}

/// JSON text as written, without the whitespace between tokens.
fn push_compact(raw: &str, out: &mut String) {
    let (mut in_string, mut escaped) = (false, false);
    for c in raw.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
            in_string = c == '"';
        }
    }
}

/// A field no shape lists is kept only within these bounds (a hostile upstream could send
/// millions of them, or nest one a million deep): the row is refused past them.
const MAX_NEW_FIELDS: usize = 64;
/// The most new fields a body's report names.
const MAX_NAMED: usize = 100;
/// The longest name of a kept field, in bytes.
const MAX_NAME: usize = 128;
/// The deepest nesting of a kept value (objects and arrays).
const MAX_DEPTH: usize = 32;

/// A name from outside, for messages: as is when short and printable, else quoted with its
/// control characters escaped, and cut.
fn shown(name: &str) -> String {
    if name.len() <= 64 && name.chars().all(|c| !c.is_control()) {
        return name.to_owned();
    }
    let cut: String = name.chars().take(64).collect();
    format!("{cut:?}{}", if cut.len() < name.len() { "…" } else { "" })
}

/// Whether a kept value is plain JSON any client can read back: nested at most
/// [`MAX_DEPTH`] deep, numbers that fit a double, no key twice in an object.
fn check_kept(raw: &RawValue, depth: usize) -> Result<(), String> {
    let text = raw.get();
    let deep = || format!("a kept value may nest {MAX_DEPTH} levels at most");
    match text.as_bytes().first() {
        Some(b'{') => {
            if depth >= MAX_DEPTH {
                return Err(deep());
            }
            let members = Members::parse(text).ok_or("not a JSON object")?;
            let mut keys = HashSet::new();
            for (k, v) in &members.0 {
                if !keys.insert(k.as_str()) {
                    return Err(format!("a kept object has the key {} twice", shown(k)));
                }
                check_kept(v, depth + 1)?;
            }
        }
        Some(b'[') => {
            if depth >= MAX_DEPTH {
                return Err(deep());
            }
            let items: Vec<&RawValue> =
                serde_json::from_str(text).map_err(|_| "not a JSON array".to_owned())?;
            for item in items {
                check_kept(item, depth + 1)?;
            }
        }
        Some(b'-' | b'0'..=b'9')
            if !serde_json::from_str::<f64>(text).is_ok_and(f64::is_finite) =>
        {
            return Err(format!("{} does not fit a double", shown(text)));
        }
        _ => {}
    }
    Ok(())
}

/// Where validation is, and what it found.
struct Walk<'s> {
    endpoint: Endpoint,
    new: NewFields,
    /// The unknown fields met, by path without indices (`details[].url`).
    found: &'s mut BTreeSet<String>,
}

impl Walk<'_> {
    /// Writes `members` (an object of `shape`) in canonical form. `path` names fields in
    /// errors (`details[2].`), `generic` in the list of new fields (`details[].`).
    fn object(
        &mut self,
        shape: &Shape,
        members: &Members<'_>,
        path: &str,
        generic: &str,
        out: &mut String,
    ) -> Result<(), RowError> {
        let endpoint = self.endpoint;
        // Each known field's member, and the unknown members after each known field
        // (`after[0]`: before any).
        let mut slot: Vec<Option<&RawValue>> = vec![None; shape.fields.len()];
        let mut after: Vec<Vec<usize>> = vec![Vec::new(); shape.fields.len() + 1];
        let mut last_known = 0;
        let mut new_names: HashSet<&str> = HashSet::new();
        for (i, (name, value)) in members.0.iter().enumerate() {
            let named = || format!("{path}{}", shown(name));
            let duplicate = || field_error(&named(), "appears twice");
            match shape.fields.iter().position(|f| f.name == name) {
                Some(at) => {
                    if slot[at].replace(value).is_some() {
                        return Err(duplicate());
                    }
                    last_known = at + 1;
                }
                None => {
                    if self.new == NewFields::Refuse {
                        return Err(field_error(
                            &named(),
                            format!("{endpoint} has no such field"),
                        ));
                    }
                    if !new_names.insert(name) {
                        return Err(duplicate());
                    }
                    if new_names.len() > MAX_NEW_FIELDS {
                        return Err(field_error(
                            &named(),
                            format!(
                                "more than {MAX_NEW_FIELDS} fields the documentation does not list in one object"
                            ),
                        ));
                    }
                    if name.len() > MAX_NAME {
                        return Err(field_error(
                            &named(),
                            format!("a field name longer than {MAX_NAME} bytes"),
                        ));
                    }
                    check_kept(value, 0).map_err(|why| field_error(&named(), why))?;
                    after[last_known].push(i);
                }
            }
        }
        out.push('{');
        let mut first = true;
        let unknown = |at: usize, out: &mut String, first: &mut bool, found: &mut BTreeSet<_>| {
            for &i in &after[at] {
                let (name, value) = &members.0[i];
                if !std::mem::take(first) {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(name).expect("a string serializes"));
                out.push(':');
                push_compact(value.get(), out);
                // Named once each, and no more than a report can show.
                if found.len() < MAX_NAMED {
                    found.insert(format!("{generic}{}", shown(name)));
                }
            }
        };
        unknown(0, out, &mut first, self.found);
        for (at, field) in shape.fields.iter().enumerate() {
            let full = format!("{path}{}", field.name);
            let Some(raw) = slot[at] else {
                if field.required {
                    return Err(field_error(&full, "missing"));
                }
                unknown(at + 1, out, &mut first, self.found);
                continue;
            };
            if !std::mem::take(&mut first) {
                out.push(',');
            }
            out.push('"');
            out.push_str(field.name);
            out.push_str("\":");
            self.value(field, raw, &full, &format!("{generic}{}", field.name), out)?;
            unknown(at + 1, out, &mut first, self.found);
        }
        out.push('}');
        Ok(())
    }

    /// Writes `raw`, the value of `field`, in canonical form, checking it against the field's
    /// kind. `full` names the field in errors, `generic` in the list of new fields.
    fn value(
        &mut self,
        field: &super::Field,
        raw: &RawValue,
        full: &str,
        generic: &str,
        out: &mut String,
    ) -> Result<(), RowError> {
        let scalar = || serde_json::from_str::<Value>(raw.get()).unwrap_or(Value::Null);
        match field.kind {
            Kind::Date => {
                let value = scalar();
                let s = value
                    .as_str()
                    .ok_or_else(|| field_error(full, "must be a \"YYYY-MM-DD\" string"))?;
                let d = date::parse_date(s).ok_or_else(|| {
                    field_error(full, format!("{s:?} is not a real YYYY-MM-DD date"))
                })?;
                let _ = write!(out, "\"{}\"", date::format_date(d));
            }
            Kind::Hour => {
                let value = scalar();
                let h = value
                    .as_i64()
                    .filter(|h| (0..=2300).contains(h) && h % 100 == 0)
                    .ok_or_else(|| {
                        field_error(
                            full,
                            format!("{value} is not an hour × 100 (0, 100, … 2300)"),
                        )
                    })?;
                let _ = write!(out, "{h}");
            }
            Kind::Int => {
                let value = scalar();
                let n = value.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
                    field_error(full, format!("{value} is not a non-negative integer"))
                })?;
                let _ = write!(out, "{n}");
            }
            Kind::Text => {
                let value = scalar();
                let s = value
                    .as_str()
                    .ok_or_else(|| field_error(full, format!("{value} is not a string")))?;
                if field.key && s.is_empty() {
                    return Err(field_error(full, "must not be empty"));
                }
                out.push_str(&serde_json::to_string(s).expect("a string serializes"));
            }
            Kind::Float => {
                let value = scalar();
                if !value.as_f64().is_some_and(|x| x.is_finite() && x >= 0.0) {
                    return Err(field_error(
                        full,
                        format!("{value} is not a non-negative number"),
                    ));
                }
                // As written: serde_json prints a parsed number in its shortest form.
                let _ = write!(out, "{value}");
            }
            Kind::Object(inner) => {
                let item = Members::parse(raw.get())
                    .ok_or_else(|| field_error(full, "must be a JSON object"))?;
                self.object(
                    inner,
                    &item,
                    &format!("{full}."),
                    &format!("{generic}."),
                    out,
                )?;
            }
            Kind::List(inner) => self.list(inner, raw, full, generic, out)?,
        }
        Ok(())
    }

    /// Writes `raw`, the value of a list field of `inner` objects, in canonical form: an array
    /// object by object, or a lone object as itself.
    fn list(
        &mut self,
        inner: &Shape,
        raw: &RawValue,
        full: &str,
        generic: &str,
        out: &mut String,
    ) -> Result<(), RowError> {
        if let Some(item) = Members::parse(raw.get()) {
            return self.object(
                inner,
                &item,
                &format!("{full}."),
                &format!("{generic}."),
                out,
            );
        }
        let items: Vec<&RawValue> =
            serde_json::from_str(raw.get()).map_err(|_| field_error(full, "must be an array"))?;
        out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let item = Members::parse(item.get())
                .ok_or_else(|| field_error(&format!("{full}[{i}]"), "must be a JSON object"))?;
            self.object(
                inner,
                &item,
                &format!("{full}[{i}]."),
                &format!("{generic}[]."),
                out,
            )?;
        }
        out.push(']');
        Ok(())
    }
}

/// Validates one row of `endpoint` (a JSON object's text) and returns its canonical form; new
/// fields are added to `found`.
fn canonical_row(
    endpoint: Endpoint,
    text: &str,
    new: NewFields,
    found: &mut BTreeSet<String>,
) -> Result<Row, RowError> {
    let members = Members::parse(text).ok_or_else(|| RowError {
        field: None,
        message: format!("a row of {endpoint} must be a JSON object"),
    })?;
    let mut json = String::with_capacity(text.len());
    Walk {
        endpoint,
        new,
        found,
    }
    .object(endpoint.shape(), &members, "", "", &mut json)?;
    let value = |name: &str| {
        members
            .get(name)
            .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
            .unwrap_or(Value::Null)
    };
    let ref_date = value("ref_date")
        .as_str()
        .and_then(date::parse_date)
        .expect("validated by Walk::object");
    match endpoint.period() {
        Period::Week if !date::is_monday(ref_date) => {
            return Err(field_error(
                "ref_date",
                format!(
                    "{} is not a Monday; {endpoint} labels each week with its Monday",
                    date::format_date(ref_date)
                ),
            ));
        }
        Period::Month if ref_date.day() != 1 => {
            return Err(field_error(
                "ref_date",
                format!(
                    "{} is not the 1st; {endpoint} labels each month with its 1st",
                    date::format_date(ref_date)
                ),
            ));
        }
        _ => {}
    }
    let ref_hour = match value("ref_hour").as_i64() {
        Some(h) => (h / 100) as i16,
        None => -1,
    };
    let mut key = String::new();
    for field in endpoint.shape().fields.iter().filter(|f| f.key) {
        if !key.is_empty() {
            key.push('|');
        }
        match (field.kind, value(field.name)) {
            (Kind::Int, v) => {
                let _ = write!(key, "{:020}", v.as_i64().unwrap_or_default());
            }
            (_, v) => push_text_key(&mut key, v.as_str().unwrap_or_default()),
        }
    }
    Ok(Row {
        ref_date,
        ref_hour,
        key,
        json,
    })
}

/// Validates one row of `endpoint` and returns its canonical form, refusing fields the shape
/// does not list. (A [`Value`] has lost its fields' order; bodies go through [`parse_list`].)
pub fn canonicalize(endpoint: Endpoint, value: &Value) -> Result<Row, RowError> {
    canonical_row(
        endpoint,
        &value.to_string(),
        NewFields::Refuse,
        &mut BTreeSet::new(),
    )
}

/// Why a `{"list":[…]}` body cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// Not a JSON object with a `list` array.
    #[error("{0}")]
    Body(String),
    /// One row does not fit (rows are numbered from 1).
    #[error("row {row} (list[{index}]): {error}", index = .row - 1)]
    Row {
        /// 1-based row number.
        row: usize,
        /// What is wrong with it.
        error: RowError,
    },
    /// Two rows share a natural key.
    #[error("rows {first} and {second} have the same key (ref_date {date}{rest}); a WeChat answer never repeats a row")]
    Duplicate {
        /// 1-based.
        first: usize,
        /// 1-based.
        second: usize,
        /// The shared date.
        date: String,
        /// The rest of the key, for people.
        rest: String,
    },
}

/// A body's rows, in canonical form, and what they had that no shape lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The rows, in the order of the body.
    pub rows: Vec<Row>,
    /// The fields kept that the endpoint's shape does not list, by path: `url`,
    /// `details[].url`, `detail.read_user_source[].x`.
    pub new_fields: BTreeSet<String>,
}

/// Validates a whole WeChat answer for `endpoint`, `{"list":[…]}` exactly as WeChat returns
/// it (other members, such as the 2025 endpoints' `is_delay`, aside), into canonical rows. Any
/// bad row refuses the whole body; a field no shape lists is kept or refused as `new` says.
pub fn parse_list(endpoint: Endpoint, body: &[u8], new: NewFields) -> Result<Parsed, ListError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ListError::Body(format!("not JSON: not UTF-8 ({e})")))?;
    let top: Members<'_> = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            return Err(ListError::Body(
                match serde_json::from_str::<IgnoredAny>(text) {
                    Ok(_) => "expected a JSON object {\"list\":[…]}".into(),
                    Err(_) => format!("not JSON: {e}"),
                },
            ))
        }
    };
    if let Some(code) = top
        .get("errcode")
        .and_then(|raw| raw.get().parse::<i64>().ok())
        .filter(|c| *c != 0)
    {
        return Err(ListError::Body(format!(
            "this is a WeChat error answer (errcode {code}), not statistics"
        )));
    }
    let list: Vec<&RawValue> = top
        .get("list")
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .ok_or_else(|| ListError::Body("expected a `list` array, as WeChat returns it".into()))?;
    let mut parsed = Parsed {
        rows: Vec::with_capacity(list.len()),
        new_fields: BTreeSet::new(),
    };
    let mut seen = std::collections::HashMap::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let row = canonical_row(endpoint, item.get(), new, &mut parsed.new_fields)
            .map_err(|error| ListError::Row { row: i + 1, error })?;
        let key = (row.ref_date, row.ref_hour, row.key.clone());
        if let Some(first) = seen.insert(key, i + 1) {
            let rest = if row.ref_hour >= 0 {
                format!(", ref_hour {}", i32::from(row.ref_hour) * 100)
            } else {
                String::new()
            };
            return Err(ListError::Duplicate {
                first,
                second: i + 1,
                date: date::format_date(row.ref_date),
                rest,
            });
        }
        parsed.rows.push(row);
    }
    Ok(parsed)
}

/// getarticletotal's `details` and getarticletotaldetail's `detail_list` reach only the last
/// ready day (reference §7 item 3; 2025 reference §5): drops the snapshots of a stored
/// `{"list":[…]}` body whose `stat_date` is after `last_ready`, keeping every other byte
/// (fields in WeChat's order, new fields included). `None` when nothing needed dropping (or
/// `endpoint` has no snapshots).
pub fn trim_snapshots(endpoint: Endpoint, body: &str, last_ready: Date) -> Option<String> {
    let field = snapshots_field(endpoint)?;
    let last = date::format_date(last_ready);
    // Dates compare as text; most answers have nothing to trim.
    let needs = body.match_indices("\"stat_date\":\"").any(|(at, m)| {
        body.get(at + m.len()..at + m.len() + 10)
            .is_some_and(|d| d > last.as_str())
    });
    if !needs {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Stat {
        stat_date: Option<String>,
    }
    let top = Members::parse(body)?;
    let list: Vec<&RawValue> = serde_json::from_str(top.get("list")?.get()).ok()?;
    let mut rows = Vec::with_capacity(list.len());
    for row in list {
        let members = Members::parse(row.get())?;
        let mut out = String::with_capacity(row.get().len());
        out.push('{');
        for (i, (name, value)) in members.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::to_string(name).ok()?);
            out.push(':');
            match serde_json::from_str::<Vec<&RawValue>>(value.get()) {
                Ok(snapshots) if name == field => {
                    out.push('[');
                    let kept = snapshots.iter().filter(|s| {
                        serde_json::from_str::<Stat>(s.get())
                            .ok()
                            .and_then(|s| s.stat_date)
                            .is_some_and(|d| d.as_str() <= last.as_str())
                    });
                    for (j, s) in kept.enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        out.push_str(s.get());
                    }
                    out.push(']');
                }
                _ => out.push_str(value.get()),
            }
        }
        out.push('}');
        rows.push(out);
    }
    Some(list_body(rows.iter().map(String::as_str)))
}

#[cfg(test)]
mod tests;
