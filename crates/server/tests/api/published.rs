//! The 2025 endpoints over HTTP: the `{"list":[…],"is_delay":…}` envelope, an empty list for a
//! day without change, snapshots up to the last ready day, `is_delay` while the 30-day window
//! is open, the spans, the 2025-11-01 floor, and imports of the shapes sources disagree on.
//! The events are the engine's hand-computed scenario (crates/engine/tests/scenarios/published.rs).

use crate::helpers::*;

const SCENARIO: &str = include_str!("../../../engine/tests/data/published.ndjson");

async fn with_scenario(now: &str) -> TestApp {
    let t = spawn_app().await;
    t.set_clock(now).await;
    let body = SCENARIO.replace("\"appid\":\"wx1\"", &format!("\"appid\":\"{APPID}\""));
    let a = t.admin_post("/admin/events", &body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["accepted"], 27, "{}", a.body);
    t
}

#[tokio::test]
async fn computed_answers_have_the_2025_envelope() {
    // 11-07 09:00: 11-06 is the last ready day.
    let t = with_scenario("2025-11-07T09:00:00+08:00").await;
    let token = t.token().await;
    let read = t
        .datacube("getarticleread", &token, "2025-11-05", "2025-11-05")
        .await;
    assert_eq!(
        read.body,
        r#"{"list":[{"ref_date":"2025-11-05","msgid":"2247490098_1","detail":{"read_user":1,"read_user_source":[{"user_count":1,"scene_desc":"全部"},{"user_count":1,"scene_desc":"推荐"}]}}],"is_delay":false}"#
    );
    // Nothing happened on 11-04: an empty list, not an error, on every per-day endpoint.
    for name in ["getarticleread", "getarticleshare", "getbizsummary"] {
        let a = t.datacube(name, &token, "2025-11-04", "2025-11-04").await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body, r#"{"list":[],"is_delay":false}"#, "{name}");
    }
    let share = t
        .datacube("getarticleshare", &token, "2025-11-03", "2025-11-03")
        .await;
    assert_eq!(
        share.body,
        r#"{"list":[{"ref_date":"2025-11-03","msgid":"2247490098_1","detail":{"share_user":1}}],"is_delay":false}"#
    );
    let biz = t
        .datacube("getbizsummary", &token, "2025-11-01", "2025-11-06")
        .await;
    assert_eq!(biz.status, 200, "{}", biz.body);
    let biz_json = biz.json();
    let days: Vec<&str> = biz_json["list"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", biz.body))
        .iter()
        .map(|r| r["ref_date"].as_str().unwrap())
        .collect();
    assert_eq!(days, ["2025-11-03", "2025-11-05"], "{}", biz.body);
    assert!(biz.body.ends_with("],\"is_delay\":false}"), "{}", biz.body);

    // getarticletotaldetail: snapshots to the last ready day; the window is open.
    let total = t
        .datacube("getarticletotaldetail", &token, "2025-11-03", "2025-11-03")
        .await;
    let v = total.json();
    assert_eq!(v["is_delay"], true, "{}", total.body);
    let list = v["list"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let stats: Vec<&str> = list[0]["detail_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["stat_date"].as_str().unwrap())
        .collect();
    assert_eq!(
        stats,
        ["2025-11-03", "2025-11-04", "2025-11-05", "2025-11-06"]
    );
    assert!(
        total
            .body
            .contains(r#""read_finish_rate":0.33333334,"read_avg_activetime":0.9166667,"#),
        "{}",
        total.body
    );
    // A publish day without publishes.
    let a = t
        .datacube("getarticletotaldetail", &token, "2025-11-04", "2025-11-04")
        .await;
    assert_eq!(a.body, r#"{"list":[],"is_delay":true}"#);

    // On 12-03 (ready 12-02 = the 30th day) the window is closed: 30 snapshots, final.
    t.set_clock("2025-12-03T09:00:00+08:00").await;
    let token = t.token().await;
    let total = t
        .datacube("getarticletotaldetail", &token, "2025-11-03", "2025-11-03")
        .await;
    let v = total.json();
    assert_eq!(v["is_delay"], false);
    let snapshots = v["list"][0]["detail_list"].as_array().unwrap();
    assert_eq!(snapshots.len(), 30);
    assert_eq!(snapshots[29]["stat_date"], "2025-12-02");
    assert_eq!(
        snapshots[29]["read_user"], 4,
        "cumulative: the last is the total"
    );
}

#[tokio::test]
async fn spans_and_the_first_day_follow_the_2025_pages() {
    let t = spawn_app().await;
    t.set_clock("2026-01-10T09:00:00+08:00").await;
    let token = t.token().await;
    let now = t.unix();
    // One day for the per-article endpoints, 30 for getbizsummary.
    for name in ["getarticleread", "getarticleshare", "getarticletotaldetail"] {
        let a = t.datacube(name, &token, "2025-12-01", "2025-12-02").await;
        assert_wechat_error(&a, 61501, now);
    }
    let a = t
        .datacube("getbizsummary", &token, "2025-12-01", "2025-12-31")
        .await;
    assert_wechat_error(&a, 61501, now);
    let a = t
        .datacube("getbizsummary", &token, "2025-12-01", "2025-12-30")
        .await;
    assert_eq!(a.body, r#"{"list":[],"is_delay":false}"#);
    // Today is not served.
    let a = t
        .datacube("getarticleread", &token, "2026-01-10", "2026-01-10")
        .await;
    assert_wechat_error(&a, 61501, now);
    // Before 2025-11-01 there is nothing ("之前日期数据无效"): an empty list.
    let body = r#"{"list":[{"ref_date":"2025-10-31","detail":{"read_user":1,"read_user_source":[{"user_count":1,"scene_desc":"全部"}],"share_user":0,"zaikan_user":0,"like_user":0,"comment_count":0}},{"ref_date":"2025-11-01","detail":{"read_user":2,"read_user_source":[{"user_count":2,"scene_desc":"全部"}],"share_user":0,"zaikan_user":0,"like_user":0,"comment_count":0}}]}"#;
    assert_eq!(t.import("getbizsummary", body).await.status, 200);
    let a = t
        .datacube("getbizsummary", &token, "2025-10-20", "2025-11-05")
        .await;
    assert_eq!(
        a.body,
        r#"{"list":[{"ref_date":"2025-11-01","detail":{"read_user":2,"read_user_source":[{"user_count":2,"scene_desc":"全部"}],"share_user":0,"zaikan_user":0,"like_user":0,"comment_count":0}}],"is_delay":false}"#
    );
    let a = t
        .datacube("getarticleread", &token, "2025-10-31", "2025-10-31")
        .await;
    assert_eq!(a.body, r#"{"list":[],"is_delay":false}"#);
}

#[tokio::test]
async fn imports_take_what_the_sources_disagree_on_and_name_what_is_wrong() {
    let t = spawn_app().await;
    t.set_clock("2026-01-10T09:00:00+08:00").await;
    let token = t.token().await;
    // `read_jump_position` as one object (one SDK's typing), no title or URL, `is_delay`
    // ignored: kept as written.
    let body = r#"{"list":[{"ref_date":"2025-12-01","msgid":"2247490099_2","publish_type":1,"detail_list":[{"stat_date":"2025-12-01","read_user":3,"read_user_source":[{"user_count":3,"scene_desc":"全部"},{"user_count":3,"scene_desc":"视频号"}],"share_user":0,"read_jump_position":{"position":5,"rate":1.0}}]}],"is_delay":true}"#;
    let a = t.import("getarticletotaldetail", body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = t
        .datacube("getarticletotaldetail", &token, "2025-12-01", "2025-12-01")
        .await;
    assert_eq!(
        a.body,
        body.replace(r#""is_delay":true"#, r#""is_delay":false"#)
    );
    // A rate that is not a number, a missing `全部` count: refused, the field named.
    let bad = body.replace(r#""rate":1.0"#, r#""rate":"1""#);
    let a = t.import("getarticletotaldetail", &bad).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(
        a.body.contains("detail_list[0].read_jump_position.rate"),
        "{}",
        a.body
    );
    let bad =
        r#"{"list":[{"ref_date":"2025-12-01","msgid":"1_1","detail":{"read_user_source":[]}}]}"#;
    let a = t.import("getarticleread", bad).await;
    assert_eq!(a.status, 422);
    assert!(a.body.contains("detail.read_user"), "{}", a.body);
}

/// Tips and reading times sum to at most the largest figure an import takes back; one past it
/// is refused with its line named, and what is answered imports back unchanged.
#[tokio::test]
async fn tips_and_reading_times_saturate_and_import_back() {
    let t = with_scenario("2025-11-07T09:00:00+08:00").await;
    let max = i64::MAX;
    let event = |id: &str, rest: String| {
        format!(
            r#"{{"appid":"{APPID}","id":"{id}","time":"2025-11-04T10:00:00+08:00","msgid":"2247490098_1",{rest}}}"#
        )
    };
    let body = [
        event(
            "p1",
            format!(r#""type":"praise","openid":"o7","money":{max}"#),
        ),
        event(
            "p2",
            format!(r#""type":"praise","openid":"o8","money":{max}"#),
        ),
        event(
            "p3",
            format!(r#""type":"praise","openid":"o9","money":{}"#, u64::MAX),
        ),
        event(
            "l1",
            format!(r#""type":"leave","openid":"o7","active_ms":{max},"progress":50"#),
        ),
        event(
            "l2",
            format!(r#""type":"leave","openid":"o8","active_ms":{max},"progress":50"#),
        ),
        event(
            "l3",
            format!(
                r#""type":"leave","openid":"o9","active_ms":{},"progress":50"#,
                u64::MAX
            ),
        ),
    ]
    .join("\n");
    let a = t.admin_post("/admin/events", &body).await;
    let report = a.json();
    assert_eq!(report["accepted"], 4, "{report}");
    let lines: Vec<u64> = report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 6], "{report}");
    assert!(
        report["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("`money` must be at most 9223372036854775807"),
        "{report}"
    );
    let token = t.token().await;
    let detail = t
        .datacube("getarticletotaldetail", &token, "2025-11-03", "2025-11-03")
        .await;
    assert!(
        detail.body.contains(&format!(r#""praise_money":{max}"#)),
        "{}",
        detail.body
    );
    // What the server answers, its own import takes back.
    let again = t.import("getarticletotaldetail", &detail.body).await;
    assert_eq!(again.status, 200, "{}", again.body);
}
