//! The statistics as SQL views: `wechat_<endpoint>` for each of the 21 endpoints, one row per
//! row the API answers, with an `appid` column and WeChat's fields as typed columns, on SQLite
//! and PostgreSQL alike — what SQL clients and BI tools (Grafana, Metabase, Superset) read.
//!
//! The views are generated from the row shapes ([`datacube_api::row::Shape`]) and read
//! `stat_day` itself, so they show exactly what is stored and served, mirrored and computed
//! alike. A nested object (`detail` of the 2025 endpoints) is flattened into columns; a list
//! (`details`, `detail_list`, `read_user_source`, `read_jump_position`) is a JSON column, and
//! the lists of a row's top level (or of its `detail`) are views of their own as well —
//! `wechat_getarticletotal_details` — one row per element, beside the parent row's key.
//!
//! `docs/sql.md` lists every view and column; [`markdown`] writes that list, and a test keeps
//! the document equal to it.

use std::fmt::Write as _;

use datacube_api::row::{Kind, Shape};
use datacube_api::{Endpoint, Generation, Period};

/// The SQL a view is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite's JSON functions (`json_each`, `json_extract`; built in since 3.38).
    Sqlite,
    /// PostgreSQL's `jsonb`.
    Postgres,
}

/// The type of a view's column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// A calendar day: `date` on PostgreSQL, `YYYY-MM-DD` text on SQLite (which has no date
    /// type; its date functions read that form).
    Date,
    /// A count, an hour (`ref_hour`: 0, 100, … 2300), a scene or type code: `bigint`.
    Integer,
    /// A rate or an average (the 2025 endpoints): `double precision` / `REAL`.
    Real,
    /// Text.
    Text,
    /// A nested list, as WeChat sends it: `jsonb` on PostgreSQL, JSON text on SQLite.
    Json,
}

impl ColumnType {
    /// The type's name in `docs/sql.md`.
    pub fn describe(self, dialect: Dialect) -> &'static str {
        match (self, dialect) {
            (ColumnType::Date, Dialect::Postgres) => "date",
            (ColumnType::Date, Dialect::Sqlite) => "text (YYYY-MM-DD)",
            (ColumnType::Integer, Dialect::Postgres) => "bigint",
            (ColumnType::Integer, Dialect::Sqlite) => "integer",
            (ColumnType::Real, Dialect::Postgres) => "double precision",
            (ColumnType::Real, Dialect::Sqlite) => "real",
            (ColumnType::Text, _) => "text",
            (ColumnType::Json, Dialect::Postgres) => "jsonb",
            (ColumnType::Json, Dialect::Sqlite) => "text (JSON)",
        }
    }
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// `stat_day.appid`.
    Appid,
    /// `stat_day.ref_date`: the row's `ref_date` (rows are stored by it).
    RefDate,
    /// A field of the row, by its path from the row's top (`["detail", "read_user"]`).
    Row(Vec<&'static str>),
    /// A field of a list's element.
    Element(Vec<&'static str>),
}

/// One column of a view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name: the JSON field's (a nested object's fields keep their own names).
    pub name: &'static str,
    /// Its type.
    pub ty: ColumnType,
    /// Where it is read: the JSON path of the field within the API's row (or within the list
    /// element, for a list's view); empty for `appid`.
    pub path: Vec<&'static str>,
    /// Whether every row has a value (the field is required); optional fields are NULL where
    /// the row does not have them.
    pub required: bool,
    /// A list of dated snapshots (`stat_date`): only those up to the last ready day are shown,
    /// as the API answers them.
    pub dated: bool,
    source: Source,
}

impl Column {
    /// Whether the column is read from a list's element (in a list's view) rather than from
    /// the row.
    pub fn from_element(&self) -> bool {
        matches!(self.source, Source::Element(_))
    }
}

/// One view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// `wechat_getusersummary`, `wechat_getarticletotal_details`.
    pub name: String,
    /// The endpoint whose rows it shows.
    pub endpoint: Endpoint,
    /// For a list's view, the list's path within the row (`["details"]`,
    /// `["detail", "read_user_source"]`).
    pub list: Option<Vec<&'static str>>,
    /// Its columns, in order.
    pub columns: Vec<Column>,
    /// A list's view of dated snapshots: only those up to the last ready day.
    pub dated: bool,
}

/// Every view: the 21 endpoints' in [`Endpoint::ALL`]'s order, each followed by the views of
/// its lists.
pub fn all() -> Vec<View> {
    let mut out = Vec::new();
    for endpoint in Endpoint::ALL {
        let shape = endpoint.shape();
        let mut columns = vec![appid()];
        let mut lists = Vec::new();
        flatten(shape, &[], &mut columns, &mut lists, false);
        out.push(View {
            name: format!("wechat_{}", endpoint.name()),
            endpoint,
            list: None,
            columns: columns.clone(),
            dated: false,
        });
        // A list's view: the parent row's key, then the element's fields.
        for (path, element) in lists {
            let mut columns: Vec<Column> = columns
                .iter()
                .filter(|c| {
                    c.source == Source::Appid
                        || c.source == Source::RefDate
                        || is_key(shape, c.name)
                })
                .cloned()
                .collect();
            let mut nested = Vec::new();
            flatten(element, &[], &mut columns, &mut nested, true);
            // Lists within an element stay JSON columns (`detail_list[].read_user_source`).
            out.push(View {
                name: format!("wechat_{}_{}", endpoint.name(), path[path.len() - 1]),
                endpoint,
                list: Some(path),
                columns,
                dated: is_dated(element),
            });
        }
    }
    out
}

fn appid() -> Column {
    Column {
        name: "appid",
        ty: ColumnType::Text,
        path: Vec::new(),
        required: true,
        dated: false,
        source: Source::Appid,
    }
}

/// Whether a list's elements are dated snapshots (`stat_date`), which the API answers only up
/// to the last ready day.
fn is_dated(element: &Shape) -> bool {
    element.fields.iter().any(|f| f.name == "stat_date")
}

/// Whether `name` is part of a row's natural key (`ref_hour`, `msgid`, `user_source` where it
/// tells rows apart).
fn is_key(shape: &Shape, name: &str) -> bool {
    shape
        .fields
        .iter()
        .any(|f| f.name == name && (f.key || matches!(f.kind, Kind::Hour)))
}

type ListAt = (Vec<&'static str>, &'static Shape);

/// The columns of `shape`'s fields under `prefix` — of a list's `element`, or of the row —:
/// scalars as typed columns, objects flattened, lists as JSON columns (each also noted in
/// `lists`, when at a row's top or in its object).
fn flatten(
    shape: &'static Shape,
    prefix: &[&'static str],
    columns: &mut Vec<Column>,
    lists: &mut Vec<ListAt>,
    element: bool,
) {
    for field in shape.fields {
        let mut path = prefix.to_vec();
        path.push(field.name);
        let mut dated = false;
        let ty = match field.kind {
            Kind::Object(inner) => {
                flatten(inner, &path, columns, lists, element);
                continue;
            }
            Kind::List(inner) => {
                lists.push((path.clone(), inner));
                dated = is_dated(inner);
                ColumnType::Json
            }
            kind => scalar(kind),
        };
        let source = match (element, field.name == "ref_date" && prefix.is_empty()) {
            (true, _) => Source::Element(path.clone()),
            (false, true) => Source::RefDate,
            (false, false) => Source::Row(path.clone()),
        };
        columns.push(Column {
            name: field.name,
            ty,
            path,
            required: field.required,
            dated,
            source,
        });
    }
}

/// The last day whose statistics the API answers, as `YYYY-MM-DD` text: the emulated clock's,
/// when a `serve --clock` recorded it in `view_clock`, else the database server's clock's
/// (yesterday from 08:00 China time, which is midnight UTC).
fn last_ready(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => {
            "COALESCE((SELECT last_ready FROM view_clock WHERE id = 1), date('now', '-1 day'))"
        }
        Dialect::Postgres => {
            "COALESCE((SELECT last_ready FROM view_clock WHERE id = 1), \
             to_char((now() AT TIME ZONE 'UTC')::date - 1, 'YYYY-MM-DD'))"
        }
    }
}

fn scalar(kind: Kind) -> ColumnType {
    match kind {
        Kind::Date => ColumnType::Date,
        Kind::Hour | Kind::Int => ColumnType::Integer,
        Kind::Float => ColumnType::Real,
        Kind::Text => ColumnType::Text,
        Kind::Object(_) | Kind::List(_) => ColumnType::Json,
    }
}

impl View {
    /// `CREATE VIEW …` in `dialect`.
    pub fn create(&self, dialect: Dialect) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{} AS {}", expression(c, dialect), c.name))
            .collect();
        let id = self.endpoint.id();
        let ready = last_ready(dialect);
        // What the API answers: days up to the last ready day, a week or a month once it has
        // ended by then, the 2025 endpoints from their first day; snapshots up to it.
        let period = match (dialect, self.endpoint.period()) {
            (_, Period::Day | Period::Hour) => format!("d.ref_date <= {ready}"),
            (Dialect::Sqlite, Period::Week) => format!("date(d.ref_date, '+6 days') <= {ready}"),
            (Dialect::Sqlite, Period::Month) => {
                format!("date(d.ref_date, '+1 month') <= date({ready}, '+1 day')")
            }
            (Dialect::Postgres, Period::Week) => {
                format!("d.ref_date::date + 6 <= ({ready})::date")
            }
            (Dialect::Postgres, Period::Month) => {
                format!("(d.ref_date::date + interval '1 month')::date <= ({ready})::date + 1")
            }
        };
        let first = match self.endpoint.generation() {
            Generation::Published => format!(
                " AND d.ref_date >= '{}'",
                datacube_api::date::format_date(self.endpoint.first_day())
            ),
            Generation::Classic => String::new(),
        };
        // Snapshots in a list are trimmed as the API trims them; a lone object (accepted as a
        // list of one) is kept as it is, as the API keeps it.
        let list = self.list.as_deref().unwrap_or_default();
        let until = match (dialect, self.dated) {
            (_, false) => format!("{period}{first}"),
            (Dialect::Sqlite, true) => format!(
                "{period}{first} AND (json_type(r.value, '{}') <> 'array' \
                 OR json_extract(e.value, '$.stat_date') <= {ready})",
                sqlite_path(list)
            ),
            (Dialect::Postgres, true) => format!(
                "{period}{first} AND (jsonb_typeof(r.value #> '{}') <> 'array' \
                 OR (e.value ->> 'stat_date') <= {ready})",
                pg_path(list)
            ),
        };
        let from = match (dialect, &self.list) {
            (Dialect::Sqlite, None) => format!(
                "stat_day AS d, json_each('[' || d.rows || ']') AS r WHERE d.endpoint = {id} AND {until}"
            ),
            (Dialect::Sqlite, Some(list)) => {
                let p = sqlite_path(list);
                format!(
                    "stat_day AS d, json_each('[' || d.rows || ']') AS r, json_each(
                       CASE json_type(r.value, '{p}')
                         WHEN 'object' THEN '[' || json_extract(r.value, '{p}') || ']'
                         ELSE json_extract(r.value, '{p}') END) AS e
                     WHERE d.endpoint = {id} AND {until}"
                )
            }
            (Dialect::Postgres, None) => format!(
                "stat_day AS d CROSS JOIN LATERAL
                   jsonb_array_elements(('[' || convert_from(d.rows, 'UTF8') || ']')::jsonb) AS r
                 WHERE d.endpoint = {id} AND {until}"
            ),
            (Dialect::Postgres, Some(list)) => {
                let p = pg_path(list);
                format!(
                    "stat_day AS d CROSS JOIN LATERAL
                       jsonb_array_elements(('[' || convert_from(d.rows, 'UTF8') || ']')::jsonb) AS r
                     CROSS JOIN LATERAL jsonb_array_elements(
                       CASE jsonb_typeof(r.value #> '{p}')
                         WHEN 'object' THEN jsonb_build_array(r.value #> '{p}')
                         WHEN 'array' THEN r.value #> '{p}'
                         ELSE '[]'::jsonb END) AS e
                     WHERE d.endpoint = {id} AND {until}"
                )
            }
        };
        format!(
            "CREATE VIEW {} AS SELECT {} FROM {from};",
            self.name,
            columns.join(", ")
        )
    }
}

fn sqlite_path(path: &[&str]) -> String {
    format!("$.{}", path.join("."))
}

fn pg_path(path: &[&str]) -> String {
    format!("{{{}}}", path.join(","))
}

fn expression(c: &Column, dialect: Dialect) -> String {
    let (table, path) = match &c.source {
        Source::Appid => return "d.appid".to_owned(),
        Source::RefDate => {
            return match dialect {
                Dialect::Sqlite => "d.ref_date".to_owned(),
                Dialect::Postgres => "d.ref_date::date".to_owned(),
            }
        }
        Source::Row(path) => ("r", path),
        Source::Element(path) => ("e", path),
    };
    match dialect {
        Dialect::Sqlite => {
            let p = sqlite_path(path);
            let value = format!("json_extract({table}.value, '{p}')");
            match c.ty {
                // An integral rate (`1`) is a REAL like the others.
                ColumnType::Real => format!("CAST({value} AS REAL)"),
                ColumnType::Json if c.dated => format!(
                    "CASE json_type({table}.value, '{p}') WHEN 'array' THEN
                       (SELECT json_group_array(json(s.value)) FROM json_each({table}.value, '{p}') AS s
                        WHERE json_extract(s.value, '$.stat_date') <= {ready})
                     ELSE {value} END",
                    ready = last_ready(dialect)
                ),
                _ => value,
            }
        }
        Dialect::Postgres => {
            let p = pg_path(path);
            let text = format!("({table}.value #>> '{p}')");
            match c.ty {
                ColumnType::Date => format!("{text}::date"),
                ColumnType::Integer => format!("{text}::bigint"),
                ColumnType::Real => format!("{text}::double precision"),
                ColumnType::Text => text,
                ColumnType::Json if c.dated => format!(
                    "CASE jsonb_typeof({table}.value #> '{p}') WHEN 'array' THEN
                       (SELECT COALESCE(jsonb_agg(s.value ORDER BY s.n), '[]'::jsonb)
                        FROM jsonb_array_elements({table}.value #> '{p}') WITH ORDINALITY AS s(value, n)
                        WHERE (s.value ->> 'stat_date') <= {ready})
                     ELSE ({table}.value #> '{p}') END",
                    ready = last_ready(dialect)
                ),
                ColumnType::Json => format!("({table}.value #> '{p}')"),
            }
        }
    }
}

/// The script that (re)creates every view: dropped first, so that a later migration can run
/// it again when the shapes change.
pub(crate) fn script(dialect: Dialect) -> String {
    let views = all();
    let mut out = String::new();
    for view in views.iter().rev() {
        let _ = writeln!(out, "DROP VIEW IF EXISTS {};", view.name);
    }
    for view in &views {
        let _ = writeln!(out, "{}", view.create(dialect));
    }
    out
}

/// The list of views and their columns, as `docs/sql.md` gives it.
pub fn markdown() -> String {
    let mut out = String::new();
    for view in all() {
        let what = match &view.list {
            None => format!("The rows of `{}`", view.endpoint.name()),
            Some(path) => format!(
                "One row per element of `{}` in `{}`'s rows, after its row's key",
                path.join("."),
                view.endpoint.name()
            ),
        };
        let _ = writeln!(out, "### `{}`\n\n{what}.\n", view.name);
        let _ = writeln!(out, "| column | PostgreSQL | SQLite | from |");
        let _ = writeln!(out, "|---|---|---|---|");
        for c in &view.columns {
            let from = match &c.source {
                Source::Appid => "the account".to_owned(),
                Source::RefDate | Source::Row(_) => format!("`{}`", c.path.join(".")),
                Source::Element(path) => format!(
                    "`{}[].{}`",
                    view.list.as_ref().map_or(String::new(), |l| l.join(".")),
                    path.join(".")
                ),
            };
            let from = if c.required {
                from
            } else {
                format!("{from}, NULL when absent")
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {from} |",
                c.name,
                c.ty.describe(Dialect::Postgres),
                c.ty.describe(Dialect::Sqlite)
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_has_a_view_and_every_list_one_of_its_own() {
        let views = all();
        for endpoint in Endpoint::ALL {
            let name = format!("wechat_{}", endpoint.name());
            assert!(views.iter().any(|v| v.name == name), "{name}");
        }
        let lists: Vec<&str> = views
            .iter()
            .filter(|v| v.list.is_some())
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(
            lists,
            [
                "wechat_getarticletotal_details",
                "wechat_getarticleread_read_user_source",
                "wechat_getbizsummary_read_user_source",
                "wechat_getarticletotaldetail_detail_list",
            ]
        );
    }

    #[test]
    fn column_names_are_distinct_within_a_view() {
        for view in all() {
            let mut names: Vec<&str> = view.columns.iter().map(|c| c.name).collect();
            names.sort_unstable();
            let n = names.len();
            names.dedup();
            assert_eq!(names.len(), n, "{}", view.name);
        }
    }

    #[test]
    fn a_list_view_starts_with_its_rows_key() {
        let views = all();
        let details = views
            .iter()
            .find(|v| v.name == "wechat_getarticletotal_details")
            .unwrap();
        let names: Vec<&str> = details.columns.iter().map(|c| c.name).collect();
        assert_eq!(
            &names[..5],
            ["appid", "ref_date", "msgid", "stat_date", "target_user"]
        );
        let hourly = views
            .iter()
            .find(|v| v.name == "wechat_getuserreadhour")
            .unwrap();
        let names: Vec<&str> = hourly.columns.iter().map(|c| c.name).collect();
        assert_eq!(
            &names[..4],
            ["appid", "ref_date", "ref_hour", "user_source"]
        );
    }

    #[test]
    fn docs_sql_md_lists_every_view() {
        let doc = include_str!("../../../docs/sql.md");
        let begin = "<!-- views: generated by datacube_store::views::markdown -->\n";
        let end = "<!-- end of views -->";
        let at = doc.find(begin).expect("docs/sql.md has the views' marker") + begin.len();
        let until = doc[at..].find(end).expect("docs/sql.md ends the views") + at;
        let listed = &doc[at..until];
        if listed != markdown() {
            if std::env::var_os("DATACUBE_BLESS").is_some() {
                let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/sql.md");
                let fresh = format!("{}{}{}", &doc[..at], markdown(), &doc[until..]);
                std::fs::write(path, fresh).expect("writing docs/sql.md");
            } else {
                panic!(
                    "docs/sql.md's list of views is not what the code makes; \
                     DATACUBE_BLESS=1 cargo test -p datacube-store views writes it"
                );
            }
        }
    }
}
