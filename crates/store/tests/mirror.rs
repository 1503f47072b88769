//! A mirrored window is stored by its rows' natural keys, whatever order the upstream listed
//! them in (issue 17: rows listed out of order were lost on SQLite and refused on PostgreSQL).

use datacube_api::date::add_days;
use datacube_api::row::{parse_list, NewFields, Row};
use datacube_api::Endpoint;
use datacube_store::Store;
use jiff::civil::{date, Date};
use proptest::prelude::*;

const BEGIN: Date = date(2026, 5, 4);

/// A week of getusersummary rows (several channels a day) and a day of getuserreadhour rows
/// (several hours, several channels), canonical, in serving order.
fn rows(endpoint: Endpoint) -> Vec<Row> {
    let mut list = Vec::new();
    match endpoint {
        Endpoint::GetUserSummary => {
            for d in 0..7 {
                for source in [0, 1, 17, 30, 43, 51, 57, 100] {
                    list.push(format!(
                        r#"{{"ref_date":"{}","user_source":{source},"new_user":{},"cancel_user":{}}}"#,
                        add_days(BEGIN, d),
                        d * 3 + source,
                        source % 4
                    ));
                }
            }
        }
        _ => {
            for hour in [0, 100, 900, 2300] {
                for source in [0, 2, 5, 99999999] {
                    list.push(format!(
                        r#"{{"ref_date":"{BEGIN}","ref_hour":{hour},"user_source":{source},"int_page_read_user":{},"int_page_read_count":2,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":0,"share_count":0,"add_to_fav_user":0,"add_to_fav_count":0}}"#,
                        hour / 100 + source % 7
                    ));
                }
            }
        }
    }
    let body = format!("{{\"list\":[{}]}}", list.join(","));
    parse_list(endpoint, body.as_bytes(), NewFields::Refuse)
        .unwrap()
        .rows
}

/// A fresh store with the accounts the tests mirror (rows of no account are refused).
async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = datacube_store::testing::fresh_database(dir.path(), "mirror");
    let store = Store::open(&url).unwrap();
    for appid in ["wxsorted", "wxshuffled", "wx1"] {
        store
            .add_account(datacube_store::AccountRecord {
                appid: appid.into(),
                secret_hash: String::new(),
                verified: true,
                created_at: 0,
                incarnation: 0,
            })
            .await
            .unwrap();
    }
    (dir, store)
}

async fn stored(store: &Store, appid: &str, endpoint: Endpoint) -> (String, usize) {
    store
        .list_rows(appid, endpoint, add_days(BEGIN, -10), add_days(BEGIN, 10))
        .await
        .unwrap()
}

fn window(endpoint: Endpoint) -> (Date, Date) {
    let span = i64::from(endpoint.max_span());
    (BEGIN, add_days(BEGIN, span - 1))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn any_order_of_a_windows_rows_stores_the_same_rows(
        summary in Just(rows(Endpoint::GetUserSummary)).prop_shuffle(),
        hourly in Just(rows(Endpoint::GetUserReadHour)).prop_shuffle(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (_dir, store) = store().await;
            for (endpoint, shuffled) in [
                (Endpoint::GetUserSummary, summary),
                (Endpoint::GetUserReadHour, hourly),
            ] {
                let sorted = rows(endpoint);
                store
                    .mirror_window("wxsorted", endpoint, window(endpoint), sorted.clone(), None, None)
                    .await
                    .unwrap();
                store
                    .mirror_window("wxshuffled", endpoint, window(endpoint), shuffled, None, None)
                    .await
                    .unwrap();
                let want = stored(&store, "wxsorted", endpoint).await;
                let got = stored(&store, "wxshuffled", endpoint).await;
                prop_assert_eq!(got.1, sorted.len(), "every row stored");
                prop_assert_eq!(&got, &want);
                let joined: Vec<&str> = sorted.iter().map(|r| r.json.as_str()).collect();
                prop_assert_eq!(got.0, joined.join(","), "served in WeChat's order");
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn rows_dated_outside_the_window_are_not_stored() {
    let (_dir, store) = store().await;
    let mut list = rows(Endpoint::GetUserSummary);
    list.reverse();
    // The window is the first three days: the other four are outside it.
    let window = (BEGIN, add_days(BEGIN, 2));
    store
        .mirror_window("wx1", Endpoint::GetUserSummary, window, list, None, None)
        .await
        .unwrap();
    let (_, n) = stored(&store, "wx1", Endpoint::GetUserSummary).await;
    assert_eq!(n, 3 * 8);
}

#[tokio::test]
async fn a_window_mirrored_again_counts_only_the_rows_it_changed() {
    let (_dir, store) = store().await;
    let list = rows(Endpoint::GetUserSummary);
    let n = list.len() as u64;
    let window = (BEGIN, add_days(BEGIN, 6));
    let mirror = |rows: Vec<Row>| {
        let store = store.clone();
        async move {
            store
                .mirror_window("wx1", Endpoint::GetUserSummary, window, rows, None, None)
                .await
                .unwrap()
        }
    };
    assert_eq!(mirror(list.clone()).await, n, "all new");
    assert_eq!(
        mirror(list.clone()).await,
        0,
        "the same rows again: nothing changed"
    );
    let mut changed = list.clone();
    changed[3].json = changed[3].json.replace("\"new_user\":", "\"new_user\":1");
    assert_ne!(changed[3].json, list[3].json);
    assert_eq!(mirror(changed).await, 1, "one row changed");
    let mut fewer = list.clone();
    fewer.pop();
    assert_eq!(
        mirror(fewer).await,
        1,
        "the changed row back; a row gone counts nothing"
    );
}
