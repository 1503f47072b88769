//! What a generated client or a fuzzer sends that no SDK does (issue 29): identifiers with a
//! NUL, a JSON array for a body, a clock moved back over a token, a clock moved centuries on —
//! each answered as WeChat answers its kind of mistake, on both backends, never `-1`.

use serde_json::Value;

use crate::helpers::*;

const BODY: &str = r#"{"begin_date":"2021-09-01","end_date":"2021-09-07"}"#;

/// PostgreSQL's text cannot hold a NUL (SQLite's can): an identifier with one is the unknown
/// identifier it is, not a database error.
#[tokio::test]
async fn identifiers_with_a_nul_are_unknown_not_errors() {
    let t = spawn_app().await;
    let now = t.unix();
    let a = t
        .post("/datacube/getusersummary?access_token=%00", BODY)
        .await;
    assert_wechat_error(&a, 40001, now);
    let a = t
        .post("/datacube/getusersummary?access_token=ab%00cd", BODY)
        .await;
    assert_wechat_error(&a, 40001, now);
    let a = t
        .get(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid=wx%00&secret={SECRET}"
        ))
        .await;
    assert_wechat_error(&a, 40013, now);
    let a = t
        .post(
            "/cgi-bin/stable_token",
            &format!(
                r#"{{"grant_type":"client_credential","appid":"wx\u0000","secret":"{SECRET}"}}"#
            ),
        )
        .await;
    assert_wechat_error(&a, 40013, now);
    let a = t
        .post(
            "/cgi-bin/component/api_component_token",
            r#"{"component_appid":"wxc\u0000","component_appsecret":"s","component_verify_ticket":"t"}"#,
        )
        .await;
    assert_wechat_error(&a, 61011, now);
    // An event's appid with a NUL: one rejected line, the others stored.
    let line = |appid: &str, id: &str| {
        format!(
            r#"{{"type":"follow","appid":"{appid}","id":"{id}","time":"2021-09-01T10:00:00+08:00","openid":"o1","source":0}}"#
        )
    };
    let body = [line(APPID, "1"), line("wx\\u0000", "2"), line(APPID, "3")].join("\n");
    let report = t.admin_post("/admin/events", &body).await;
    assert_eq!(report.status, 200, "{}", report.body);
    let report = report.json();
    assert_eq!(report["accepted"], 2, "{report}");
    assert_eq!(report["rejected"][0]["line"], 2, "{report}");
    // The admin API: unknown, not a 500.
    let removed = t
        .client
        .delete(t.url("/admin/accounts/wx%00"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 404);
    let runs = t
        .client
        .get(t.url("/admin/sync/runs?mirror=%00"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(runs.status(), 200);
    assert_eq!(
        runs.json::<Value>().await.unwrap()["runs"],
        serde_json::json!([])
    );
}

/// Only a JSON object is a datacube body: an array of the two dates is a format error.
#[tokio::test]
async fn a_json_array_is_not_a_datacube_body() {
    let t = spawn_app().await;
    let token = t.token().await;
    for body in [
        r#"["2021-09-01","2021-09-07"]"#,
        r#" [{"begin_date":"2021-09-01"}]"#,
    ] {
        let a = t
            .post(
                &format!("/datacube/getusersummary?access_token={token}"),
                body,
            )
            .await;
        assert_wechat_error(&a, 61500, t.unix());
        let a = t
            .admin_post(
                &format!("/admin/datacube/getusersummary?appid={APPID}"),
                body,
            )
            .await;
        assert_eq!(a.json()["errcode"], 61500, "{}", a.body);
    }
}

/// A stable token taken with the clock in 2100 and asked for again with the clock back in
/// 2026 says it lives 7200 s at most, not 74 years.
#[tokio::test]
async fn expires_in_never_exceeds_a_tokens_lifetime_whatever_the_clock_did() {
    let t = spawn_app().await;
    let body =
        format!(r#"{{"grant_type":"client_credential","appid":"{APPID}","secret":"{SECRET}"}}"#);
    t.set_clock("2100-01-01T09:00:00+08:00").await;
    let first: Value = t.post("/cgi-bin/stable_token", &body).await.json();
    assert_eq!(first["expires_in"], 7200, "{first}");
    t.set_clock("2026-01-01T09:00:00+08:00").await;
    let again: Value = t.post("/cgi-bin/stable_token", &body).await.json();
    let lives = again["expires_in"].as_i64().unwrap();
    assert!((1..=7200).contains(&lives), "{again}");
}

/// The clock moved to the year 9998: the next sign-in is answered at once, the store grows by
/// a year of quiet days at most, and any window of 9998 is answered — quiet days, the
/// followers as they were.
#[tokio::test]
async fn a_clock_moved_centuries_on_costs_a_bounded_write_once() {
    let t = spawn_app().await;
    t.set_clock("2021-09-10T09:00:00+08:00").await;
    let follow = format!(
        r#"{{"type":"follow","appid":"{APPID}","id":"f1","time":"2021-09-01T10:00:00+08:00","openid":"o1","source":30}}"#
    );
    assert_eq!(
        t.admin_post("/admin/events", &follow).await.json()["accepted"],
        1
    );
    t.set_clock("9998-06-15T09:00:00+08:00").await;
    // The server rolls its days (carrying quiet days forward) within a quarter of a second.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let started = std::time::Instant::now();
    let token = t.token().await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let (_, stored) = t
        .app
        .store()
        .list_rows(
            APPID,
            datacube_api::Endpoint::GetUserCumulate,
            jiff::civil::date(1970, 1, 1),
            jiff::civil::date(9999, 12, 31),
        )
        .await
        .unwrap();
    assert!(stored <= 9 + 367, "{stored} days stored");
    let cumulate = t
        .datacube("getusercumulate", &token, "9998-06-08", "9998-06-14")
        .await;
    let want: Vec<String> = (8..=14)
        .map(|d| format!(r#"{{"ref_date":"9998-06-{d:02}","user_source":0,"cumulate_user":1}}"#))
        .collect();
    assert_eq!(cumulate.body, format!(r#"{{"list":[{}]}}"#, want.join(",")));
    let summary = t
        .datacube("getusersummary", &token, "9998-06-14", "9998-06-14")
        .await;
    assert_eq!(
        summary.body,
        r#"{"list":[{"ref_date":"9998-06-14","user_source":0,"new_user":0,"cancel_user":0}]}"#
    );
    // Across the last stored day: stored rows, then quiet ones, in one list.
    let edge = t
        .datacube("getusercumulate", &token, "2022-08-31", "2022-09-06")
        .await;
    assert_eq!(
        edge.json()["list"].as_array().unwrap().len(),
        7,
        "{}",
        edge.body
    );
    assert!(edge
        .body
        .contains(r#"{"ref_date":"2022-09-06","user_source":0,"cumulate_user":1}"#));
}
