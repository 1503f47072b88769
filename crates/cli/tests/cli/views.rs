//! The statistics as SQL (`docs/sql.md`): after `datacube ingest` and after a `datacube sync`
//! mirror, `SELECT … FROM wechat_<endpoint>` holds exactly the rows the API answers, for all 21
//! endpoints and the views of their nested lists, with the documented column types — read
//! with the database's own client library, as a BI tool reads them.

use std::collections::BTreeMap;

use crate::common::*;
use datacube_api::date::{add_days, china_date, format_date};
use datacube_api::Endpoint;
use datacube_store::views::{self, ColumnType, View};
use serde_json::Value;

const APPID: &str = "wxaaaa000000000077";
const SECRET: &str = "s3cret-for-views";
const DAYS: i64 = 40;

/// What the API answered for each endpoint over the window: its rows.
type Answered = BTreeMap<Endpoint, Vec<Value>>;

async fn answered(base: &str, (first, last): (jiff::civil::Date, jiff::civil::Date)) -> Answered {
    let mut out = Answered::new();
    for endpoint in Endpoint::ALL {
        let rows = out.entry(endpoint).or_default();
        for (label, answer) in answers(base, (APPID, SECRET), &[endpoint], (first, last)).await {
            let v: Value = serde_json::from_str(&answer).unwrap();
            let list = v["list"]
                .as_array()
                .unwrap_or_else(|| panic!("{label}: {answer}"));
            rows.extend(list.iter().cloned());
        }
    }
    out
}

/// The value at `path` of a row, or null.
fn at<'a>(row: &'a Value, path: &[&str]) -> &'a Value {
    path.iter()
        .fold(row, |v, k| v.get(k).unwrap_or(&Value::Null))
}

/// A value as its column holds it: integers as integers, rates as floats (to 12 significant
/// digits: the databases' decimal-to-binary conversions may differ in the last bit).
fn typed(v: &Value, ty: ColumnType) -> Value {
    match (ty, v) {
        (_, Value::Null) => Value::Null,
        (ColumnType::Real, v) => Value::from(format!("{:.11e}", v.as_f64().unwrap())),
        (ColumnType::Integer, v) => Value::from(v.as_i64().unwrap()),
        (_, v) => v.clone(),
    }
}

/// The rows `view` must hold for the API's rows of its endpoint, each as its columns' values.
fn expected(view: &View, rows: &[Value]) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    for row in rows {
        let elements: Vec<Option<&Value>> = match &view.list {
            None => vec![None],
            Some(list) => match at(row, list) {
                Value::Array(items) => items.iter().map(Some).collect(),
                Value::Null => Vec::new(),
                one => vec![Some(one)],
            },
        };
        for element in elements {
            let values = view
                .columns
                .iter()
                .map(|c| match element {
                    _ if c.path.is_empty() => Value::from(APPID),
                    Some(e) if c.from_element() => typed(at(e, &c.path), c.ty),
                    _ => typed(at(row, &c.path), c.ty),
                })
                .collect();
            out.push(values);
        }
    }
    sorted(out)
}

fn sorted(mut rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
    rows.sort_by_key(|r| serde_json::to_string(r).unwrap());
    rows
}

/// Every row of every view for the account (dated within `window`), as its columns' values,
/// each column's type checked against the view's description.
fn selected(db: &str, window: (String, String)) -> BTreeMap<String, Vec<Vec<Value>>> {
    let db = db.to_owned();
    std::thread::spawn(move || match db.strip_prefix("sqlite://") {
        Some(path) => from_sqlite(path, &window),
        None => from_postgres(&db, &window),
    })
    .join()
    .unwrap()
}

fn from_sqlite(path: &str, (first, last): &(String, String)) -> BTreeMap<String, Vec<Vec<Value>>> {
    use rusqlite::types::ValueRef;
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut out = BTreeMap::new();
    for view in views::all() {
        let sql = format!(
            // No upper bound: what the view shows past the last ready day (today's figures,
            // June's month) is its own filter's doing.
            "SELECT * FROM {} WHERE appid = ?1 AND ref_date >= ?2 AND ?3 = ?3",
            view.name
        );
        let mut stmt = conn.prepare(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
        let want: Vec<&str> = view.columns.iter().map(|c| c.name).collect();
        assert_eq!(names, want, "{}'s columns", view.name);
        let mut rows = Vec::new();
        let mut q = stmt.query((APPID, first, last)).unwrap();
        while let Some(r) = q.next().unwrap() {
            let values = view
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let v = r.get_ref(i).unwrap();
                    let ok = match (v, c.ty) {
                        (ValueRef::Null, _) => !c.required,
                        (ValueRef::Integer(_), ColumnType::Integer) => true,
                        (ValueRef::Real(_), ColumnType::Real) => true,
                        (
                            ValueRef::Text(_),
                            ColumnType::Text | ColumnType::Date | ColumnType::Json,
                        ) => true,
                        _ => false,
                    };
                    assert!(ok, "{}.{}: {:?} is not {:?}", view.name, c.name, v, c.ty);
                    match v {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(n) => Value::from(n),
                        ValueRef::Real(x) => typed(&Value::from(x), c.ty),
                        ValueRef::Text(t) => {
                            let t = std::str::from_utf8(t).unwrap();
                            if c.ty == ColumnType::Json {
                                serde_json::from_str(t).unwrap()
                            } else {
                                Value::from(t)
                            }
                        }
                        ValueRef::Blob(_) => panic!("{}.{} is a blob", view.name, c.name),
                    }
                })
                .collect();
            rows.push(values);
        }
        out.insert(view.name.clone(), sorted(rows));
    }
    out
}

fn from_postgres(url: &str, (first, last): &(String, String)) -> BTreeMap<String, Vec<Vec<Value>>> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let mut out = BTreeMap::new();
    for view in views::all() {
        // The columns' types, as PostgreSQL describes the view.
        let types: Vec<(String, String)> = client
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns
                 WHERE table_name = $1 ORDER BY ordinal_position",
                &[&view.name],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let want: Vec<(String, String)> = view
            .columns
            .iter()
            .map(|c| {
                (
                    c.name.to_owned(),
                    c.ty.describe(views::Dialect::Postgres).to_owned(),
                )
            })
            .collect();
        assert_eq!(types, want, "{}'s columns and types", view.name);
        // Each row as JSON: dates as text, bigints and doubles as numbers, jsonb as JSON.
        let sql = format!(
            "SELECT row_to_json(v)::text FROM {} AS v
             WHERE appid = $1 AND ref_date >= $2::text::date AND $3::text = $3::text",
            view.name
        );
        let mut rows = Vec::new();
        for r in client.query(&sql, &[&APPID, first, last]).unwrap() {
            let object: serde_json::Map<String, Value> =
                serde_json::from_str(r.get::<_, &str>(0)).unwrap();
            let values = view
                .columns
                .iter()
                .map(|c| {
                    let v = object[c.name].clone();
                    assert!(
                        !v.is_null() || !c.required,
                        "{}.{} is NULL",
                        view.name,
                        c.name
                    );
                    typed(&v, c.ty)
                })
                .collect();
            rows.push(values);
        }
        out.insert(view.name.clone(), sorted(rows));
    }
    out
}

/// Asserts that every view holds exactly what the API answered, and that every field of every
/// answered row is a column of its endpoint's view (nested objects flattened).
fn assert_views_hold(what: &str, db: &str, answered: &Answered, window: (String, String)) {
    let selected = selected(db, window);
    for view in views::all() {
        let rows = &answered[&view.endpoint];
        let want = expected(&view, rows);
        let got = &selected[&view.name];
        if view.list.is_none() {
            assert!(
                !want.is_empty(),
                "{what}: {} answered no rows",
                view.endpoint
            );
            for row in rows {
                for (key, value) in row.as_object().unwrap() {
                    let names: Vec<&str> = match value {
                        Value::Object(inner) => inner.keys().map(String::as_str).collect(),
                        _ => vec![key.as_str()],
                    };
                    for name in names {
                        assert!(
                            view.columns.iter().any(|c| c.name == name),
                            "{what}: {}'s field {name} is no column of {}",
                            view.endpoint,
                            view.name
                        );
                    }
                }
            }
        }
        assert_eq!(
            got.len(),
            want.len(),
            "{what}: {} holds as many rows as answered",
            view.name
        );
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{what}: {}", view.name);
        }
    }
}

#[tokio::test]
async fn the_views_hold_what_the_api_answers_after_an_ingest_and_after_a_mirror() {
    // An ingest: a demo account's events (every kind, the 2025 ones too) through a file.
    let (dir, db) = temp_db();
    add_account(&db, APPID, SECRET).await;
    let days = DAYS.to_string();
    let file = dir.path().join("events.ndjson");
    let (code, _, err) = run(
        &db,
        &[
            "demo",
            "--appid",
            APPID,
            "--days",
            &days,
            "--output",
            file.to_str().unwrap(),
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&db, &["ingest", file.to_str().unwrap()], None).await;
    assert_eq!(code, 0, "{out}{err}");

    let clock: jiff::Timestamp = CLOCK.parse().unwrap();
    let last = add_days(china_date(clock.as_second()), -1);
    let first = add_days(last, -DAYS).first_of_month();
    let window = (format_date(first), format_date(last));
    let served = serve(&db, &[]).await;
    let answered = answered(&served.base, (first, last)).await;
    for endpoint in Endpoint::ALL {
        assert!(
            !answered[&endpoint].is_empty(),
            "{endpoint} answered no rows"
        );
    }
    assert_views_hold("after an ingest", &db, &answered, window.clone());

    // A mirror of that server, through `datacube sync`.
    let (_mirror_dir, mirror) = temp_db();
    let (code, out, err) = run(
        &mirror,
        &[
            "sync",
            "--appid",
            APPID,
            "--secret",
            SECRET,
            "--upstream",
            &served.base,
            "--from",
            &window.0,
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_views_hold("after a mirror", &mirror, &answered, window);
}
