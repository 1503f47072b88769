//! Rows built in canonical form by code that computes them (the event engine): no JSON tree,
//! no re-ordering.

use std::fmt::Write as _;

use jiff::civil::Date;

use super::{push_date, push_key_sep, push_text_key, Field, Row, Shape, ARTICLE_TOTAL_DETAIL};
use crate::endpoint::Endpoint;

/// One field's value, for [`RowBuilder`].
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    /// A `YYYY-MM-DD` date.
    Date(Date),
    /// `ref_hour`, given as the hour 0..=23 (written × 100).
    Hour(u8),
    /// A non-negative integer.
    Int(u64),
    /// A non-negative number, written in its shortest form (WeChat's rates look like single
    /// precision: `0.6304348`).
    Float(f32),
    /// A string (escaped as JSON).
    Text(&'a str),
    /// A nested object already built with [`RowBuilder::part`].
    Object(&'a str),
    /// An array of objects already built with [`RowBuilder::part`] (or [`RowBuilder::detail`]).
    List(&'a [String]),
}

/// Builds a row of one endpoint directly in canonical form, for code that computes rows (the
/// event engine) rather than receiving them: no JSON tree, no re-ordering. Fields must be
/// given in WeChat's order; optional ones may be left out. Giving a field the shape does not
/// have at that point is a bug in the caller, and panics.
#[derive(Debug)]
pub struct RowBuilder {
    endpoint: Endpoint,
    fields: &'static [Field],
    next: usize,
    json: String,
    ref_date: Option<Date>,
    ref_hour: i16,
    key: String,
}

impl RowBuilder {
    /// Starts a row of `endpoint`.
    pub fn new(endpoint: Endpoint) -> RowBuilder {
        RowBuilder::with_fields(endpoint, endpoint.shape().fields)
    }

    /// Starts one element of getarticletotal's `details`, finished with
    /// [`RowBuilder::finish_detail`].
    pub fn detail() -> RowBuilder {
        RowBuilder::with_fields(Endpoint::GetArticleTotal, ARTICLE_TOTAL_DETAIL.fields)
    }

    /// Starts a nested object of `shape` (a `detail`, an element of a list) of a row of
    /// `endpoint`, finished with [`RowBuilder::finish_detail`].
    pub fn part(endpoint: Endpoint, shape: &'static Shape) -> RowBuilder {
        RowBuilder::with_fields(endpoint, shape.fields)
    }

    fn with_fields(endpoint: Endpoint, fields: &'static [Field]) -> RowBuilder {
        let mut json = String::with_capacity(256);
        json.push('{');
        RowBuilder {
            endpoint,
            fields,
            next: 0,
            json,
            ref_date: None,
            ref_hour: -1,
            key: String::new(),
        }
    }

    /// Adds the next field.
    pub fn field(&mut self, name: &str, value: Val<'_>) -> &mut RowBuilder {
        let field = loop {
            let field = self
                .fields
                .get(self.next)
                .unwrap_or_else(|| panic!("{}: no field `{name}` at this point", self.endpoint));
            self.next += 1;
            if field.name == name {
                break *field;
            }
            assert!(
                !field.required,
                "{}: `{}` must come before `{name}`",
                self.endpoint, field.name
            );
        };
        if self.json.len() > 1 {
            self.json.push(',');
        }
        self.json.push('"');
        self.json.push_str(field.name);
        self.json.push_str("\":");
        match value {
            Val::Date(d) => {
                push_date(&mut self.json, d);
                if name == "ref_date" {
                    self.ref_date = Some(d);
                }
            }
            Val::Hour(h) => {
                self.json
                    .push_str(itoa::Buffer::new().format(u32::from(h) * 100));
                self.ref_hour = i16::from(h);
            }
            Val::Int(n) => {
                let mut digits = itoa::Buffer::new();
                let digits = digits.format(n);
                self.json.push_str(digits);
                if field.key {
                    // Zero-padded to u64's 20 digits, so that keys sort as numbers.
                    push_key_sep(&mut self.key);
                    self.key.extend(std::iter::repeat_n('0', 20 - digits.len()));
                    self.key.push_str(digits);
                }
            }
            Val::Text(t) => {
                self.json
                    .push_str(&serde_json::to_string(t).expect("a string serializes"));
                if field.key {
                    push_key_sep(&mut self.key);
                    push_text_key(&mut self.key, t);
                }
            }
            Val::Float(x) => {
                assert!(
                    x.is_finite() && x >= 0.0,
                    "{}: `{name}` is {x}",
                    self.endpoint
                );
                let _ = write!(self.json, "{x}");
            }
            Val::Object(json) => self.json.push_str(json),
            Val::List(items) => {
                self.json.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.json.push(',');
                    }
                    self.json.push_str(item);
                }
                self.json.push(']');
            }
        }
        self
    }

    fn check_complete(&self) {
        if let Some(missing) = self.fields[self.next..].iter().find(|f| f.required) {
            panic!("{}: `{}` is missing", self.endpoint, missing.name);
        }
    }

    /// The finished row.
    pub fn finish(mut self) -> Row {
        self.check_complete();
        self.json.push('}');
        Row {
            ref_date: self.ref_date.expect("every row has a ref_date"),
            ref_hour: self.ref_hour,
            key: self.key,
            json: self.json,
        }
    }

    /// The finished nested object (a `details` element, a `detail`…), as JSON.
    pub fn finish_detail(mut self) -> String {
        self.check_complete();
        self.json.push('}');
        self.json
    }
}

#[cfg(test)]
mod tests {
    use super::super::{canonicalize, C};
    use super::*;
    use serde_json::Value;

    #[test]
    fn built_rows_equal_canonical_rows() {
        let mut b = RowBuilder::new(Endpoint::GetUserReadHour);
        b.field("ref_date", Val::Date(jiff::civil::date(2020, 1, 2)))
            .field("ref_hour", Val::Hour(13))
            .field("user_source", Val::Int(99999999));
        for (i, f) in C.iter().enumerate() {
            b.field(f.name, Val::Int(i as u64));
        }
        let built = b.finish();
        let value: Value = serde_json::from_str(&built.json).unwrap();
        assert_eq!(
            built,
            canonicalize(Endpoint::GetUserReadHour, &value).unwrap()
        );
        assert_eq!(built.ref_hour, 13);

        let mut d = RowBuilder::detail();
        d.field("stat_date", Val::Date(jiff::civil::date(2020, 1, 2)))
            .field("target_user", Val::Int(7));
        for f in &C {
            d.field(f.name, Val::Int(1));
        }
        d.field("feed_share_from_other_cnt", Val::Int(2));
        let details = [d.finish_detail()];
        let mut b = RowBuilder::new(Endpoint::GetArticleTotal);
        b.field("ref_date", Val::Date(jiff::civil::date(2020, 1, 2)))
            .field("msgid", Val::Text("2247483654_2"))
            .field("title", Val::Text("标\"题"))
            .field("user_source", Val::Int(0))
            .field("details", Val::List(&details));
        let built = b.finish();
        let value: Value = serde_json::from_str(&built.json).unwrap();
        assert_eq!(
            built,
            canonicalize(Endpoint::GetArticleTotal, &value).unwrap()
        );
    }

    #[test]
    #[should_panic(expected = "`new_user` must come before `cancel_user`")]
    fn a_builder_refuses_fields_out_of_order() {
        let mut b = RowBuilder::new(Endpoint::GetUserSummary);
        b.field("ref_date", Val::Date(jiff::civil::date(2020, 1, 2)))
            .field("user_source", Val::Int(0))
            .field("cancel_user", Val::Int(0));
    }
}
