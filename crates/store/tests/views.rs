//! The statistics as SQL views need their rows as plain JSON: days that versions 6 to 9 stored
//! zstd (1 KiB or more) are made plain by the migration to version 10 (PostgreSQL's 5), their
//! answers unchanged and the views reading them; a day an older instance still writes zstd
//! during a rolling upgrade is answered all the same. On SQLite and PostgreSQL.

use datacube_api::row::{parse_list, NewFields, Row};
use datacube_api::Endpoint;
use datacube_store::Store;
use jiff::civil::{date, Date};

const DAY: Date = date(2026, 5, 4);
const APPID: &str = "wxc0c0c0c0c0c0c0c1";

/// A day of getuserreadhour rows — 24 hours × 4 channels, about 5 KiB of JSON: a day versions
/// 6 to 9 stored compressed.
fn day_rows() -> Vec<Row> {
    let mut list = Vec::new();
    for hour in 0..24 {
        for source in [0, 2, 5, 99999999] {
            list.push(format!(
                r#"{{"ref_date":"{DAY}","ref_hour":{},"user_source":{source},"int_page_read_user":{},"int_page_read_count":2,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":0,"share_count":0,"add_to_fav_user":0,"add_to_fav_count":0}}"#,
                hour * 100,
                hour + source % 7
            ));
        }
    }
    let body = format!(r#"{{"list":[{}]}}"#, list.join(","));
    parse_list(
        Endpoint::GetUserReadHour,
        body.as_bytes(),
        NewFields::Refuse,
    )
    .unwrap()
    .rows
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

/// The database as versions 6 to 9 left it: the day compressed, no views, the schema's version
/// one before them (or, with `only_compress`, the day compressed as an older instance writes it).
fn back_to_compressed(url: &str, only_compress: bool) {
    let url = url.to_owned();
    std::thread::spawn(move || match url.strip_prefix("sqlite://") {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            let (rows, keys): (String, Vec<u8>) = conn
                .query_row("SELECT rows, keys FROM stat_day WHERE appid = ?1", [APPID], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            assert!(rows.len() > 1024, "a day large enough to have been compressed");
            conn.execute(
                "UPDATE stat_day SET rows = ?1, keys = ?2 WHERE appid = ?3",
                rusqlite::params![zstd(rows.as_bytes()), zstd(&keys), APPID],
            )
            .unwrap();
            if only_compress {
                return;
            }
            let views: Vec<String> = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'view'")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(views.len() >= 21, "{views:?}");
            for v in views {
                conn.execute_batch(&format!("DROP VIEW {v}")).unwrap();
            }
            // And version 11's stamps of the id index's deltas.
            conn.execute_batch(
                "DROP TABLE view_clock;
                 DROP INDEX event_id_delta_by_app;
                 ALTER TABLE event_id_delta DROP COLUMN stamp;
                 ALTER TABLE event_app DROP COLUMN id_stamp;
                 CREATE INDEX event_id_delta_by_app ON event_id_delta (appid, seq);
                 PRAGMA user_version = 9;",
            )
            .unwrap();
        }
        None => {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let row = client
                .query_one("SELECT rows, keys FROM stat_day WHERE appid = $1", &[&APPID])
                .unwrap();
            let (rows, keys): (Vec<u8>, Vec<u8>) = (row.get(0), row.get(1));
            assert!(rows.len() > 1024, "a day large enough to have been compressed");
            client
                .execute(
                    "UPDATE stat_day SET rows = $1, keys = $2 WHERE appid = $3",
                    &[&zstd(&rows), &zstd(&keys), &APPID],
                )
                .unwrap();
            if only_compress {
                return;
            }
            let views: Vec<String> = client
                .query(
                    "SELECT table_name::text FROM information_schema.views WHERE table_name LIKE 'wechat%'",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            assert!(views.len() >= 21, "{views:?}");
            for v in views {
                client.batch_execute(&format!("DROP VIEW {v}")).unwrap();
            }
            // Version 7's keys, then version 6's stamps.
            client
                .batch_execute(datacube_store::testing::UNDO_POSTGRES_ACCOUNT_KEYS)
                .unwrap();
            client
                .batch_execute(
                    "DROP INDEX event_id_delta_by_app;
                     DROP TABLE view_clock;
                     ALTER TABLE event_id_delta DROP COLUMN stamp;
                     ALTER TABLE event_app DROP COLUMN id_stamp;
                     CREATE INDEX event_id_delta_by_app ON event_id_delta (appid, seq);
                     UPDATE datacube_schema SET version = 4;",
                )
                .unwrap();
        }
    })
    .join()
    .unwrap();
}

/// How many rows the view shows, and whether the stored day is plain.
fn in_the_view(url: &str) -> (i64, bool) {
    let url = url.to_owned();
    std::thread::spawn(move || match url.strip_prefix("sqlite://") {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            let n = conn
                .query_row(
                    "SELECT count(*) FROM wechat_getuserreadhour WHERE appid = ?1",
                    [APPID],
                    |r| r.get(0),
                )
                .unwrap();
            let plain: bool = conn
                .query_row(
                    "SELECT typeof(rows) = 'text' FROM stat_day WHERE appid = ?1",
                    [APPID],
                    |r| r.get(0),
                )
                .unwrap();
            (n, plain)
        }
        None => {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let n = client
                .query_one(
                    "SELECT count(*) FROM wechat_getuserreadhour WHERE appid = $1",
                    &[&APPID],
                )
                .unwrap()
                .get(0);
            let plain = client
                .query_one(
                    "SELECT substring(rows from 1 for 1) = '{'::bytea FROM stat_day WHERE appid = $1",
                    &[&APPID],
                )
                .unwrap()
                .get(0);
            (n, plain)
        }
    })
    .join()
    .unwrap()
}

#[tokio::test]
async fn compressed_days_are_made_plain_by_the_migration_and_read_by_the_views() {
    let dir = tempfile::tempdir().unwrap();
    let url = datacube_store::testing::fresh_database(dir.path(), "views");
    let rows = day_rows();
    let n = rows.len() as i64;
    let store = Store::open(&url).unwrap();
    store
        .upsert_rows(APPID, Endpoint::GetUserReadHour, rows, None)
        .await
        .unwrap();
    let before = store
        .list_body(APPID, Endpoint::GetUserReadHour, (DAY, DAY), None)
        .await
        .unwrap();
    assert_eq!(in_the_view(&url), (n, true), "stored plain, shown whole");
    drop(store);

    back_to_compressed(&url, false);
    let store = Store::open(&url).unwrap();
    let after = store
        .list_body(APPID, Endpoint::GetUserReadHour, (DAY, DAY), None)
        .await
        .unwrap();
    assert_eq!(after, before, "the same answer after the migration");
    assert_eq!(in_the_view(&url), (n, true), "made plain, shown whole");
    drop(store);

    // An older instance, still running during a rolling upgrade, writes the day compressed:
    // the API still answers it (the view cannot read it until it is written again).
    back_to_compressed(&url, true);
    let store = Store::open(&url).unwrap();
    let again = store
        .list_body(APPID, Endpoint::GetUserReadHour, (DAY, DAY), None)
        .await
        .unwrap();
    assert_eq!(again, before, "a compressed day is still answered");
}

/// Article snapshots dated after the last ready day are not shown, as the API trims them; a
/// lone object where a list is expected (accepted as a list of one) is kept whole, as the API
/// keeps it — in the row's JSON column and in the list's own view alike.
#[tokio::test]
async fn the_views_trim_snapshots_as_the_api_does() {
    let dir = tempfile::tempdir().unwrap();
    let url = datacube_store::testing::fresh_database(dir.path(), "snapshots");
    let snapshot = |day: &str| {
        format!(
            r#"{{"stat_date":"{day}","target_user":10,"int_page_read_user":1,"int_page_read_count":1,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":0,"share_count":0,"add_to_fav_user":0,"add_to_fav_count":0}}"#
        )
    };
    let body = format!(
        r#"{{"list":[{{"ref_date":"{DAY}","msgid":"1000_1","title":"a","details":[{},{},{}]}},{{"ref_date":"{DAY}","msgid":"1000_2","title":"b","details":{}}}]}}"#,
        snapshot("2026-05-04"),
        snapshot("2026-05-05"),
        snapshot("2026-05-06"),
        snapshot("2026-05-06"),
    );
    let rows = parse_list(
        Endpoint::GetArticleTotal,
        body.as_bytes(),
        NewFields::Refuse,
    )
    .unwrap()
    .rows;
    let store = Store::open(&url).unwrap();
    store
        .upsert_rows(APPID, Endpoint::GetArticleTotal, rows, None)
        .await
        .unwrap();
    // The last ready day is the 5th: the 6th's snapshots are not answered yet.
    let last_ready = date(2026, 5, 5);
    store.set_view_clock(Some(last_ready)).await.unwrap();
    let listed = store
        .list_body(APPID, Endpoint::GetArticleTotal, (DAY, DAY), None)
        .await
        .unwrap();
    let answered =
        datacube_api::row::trim_snapshots(Endpoint::GetArticleTotal, &listed, last_ready).unwrap();
    let answered: serde_json::Value = serde_json::from_str(&answered).unwrap();
    let details: Vec<serde_json::Value> = answered["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["details"].clone())
        .collect();
    assert_eq!(details[0].as_array().unwrap().len(), 2, "{answered}");
    assert!(details[1].is_object(), "{answered}");

    let url2 = url.clone();
    let (json_columns, elements): (Vec<serde_json::Value>, i64) = std::thread::spawn(move || {
        match url2.strip_prefix("sqlite://") {
            Some(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                let json: Vec<serde_json::Value> = conn
                    .prepare("SELECT details FROM wechat_getarticletotal WHERE appid = ?1 ORDER BY msgid")
                    .unwrap()
                    .query_map([APPID], |r| r.get::<_, String>(0))
                    .unwrap()
                    .map(|t| serde_json::from_str(&t.unwrap()).unwrap())
                    .collect();
                let n = conn
                    .query_row(
                        "SELECT count(*) FROM wechat_getarticletotal_details WHERE appid = ?1",
                        [APPID],
                        |r| r.get(0),
                    )
                    .unwrap();
                (json, n)
            }
            None => {
                let mut client = postgres::Client::connect(&url2, postgres::NoTls).unwrap();
                let json: Vec<serde_json::Value> = client
                    .query(
                        "SELECT details::text FROM wechat_getarticletotal WHERE appid = $1 ORDER BY msgid",
                        &[&APPID],
                    )
                    .unwrap()
                    .iter()
                    .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
                    .collect();
                let n = client
                    .query_one(
                        "SELECT count(*) FROM wechat_getarticletotal_details WHERE appid = $1",
                        &[&APPID],
                    )
                    .unwrap()
                    .get(0);
                (json, n)
            }
        }
    })
    .join()
    .unwrap();
    assert_eq!(
        json_columns, details,
        "the rows' JSON columns are the API's"
    );
    assert_eq!(
        elements, 3,
        "two snapshots of the list, and the lone object"
    );
}
