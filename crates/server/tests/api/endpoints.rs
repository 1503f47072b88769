//! For every endpoint: import a body in WeChat's real shape (reference examples and captured
//! real responses), then read exactly those bytes back for the matching dates.

use crate::helpers::*;

struct Sample {
    endpoint: &'static str,
    /// Compact, exactly as WeChat returns it.
    body: &'static str,
    begin: &'static str,
    end: &'static str,
    /// A moment at which the data is ready.
    now: &'static str,
}

const SAMPLES: &[Sample] = &[
    // Real, 2021-09 (several channels per day, ordered by date then user_source).
    Sample {
        endpoint: "getusersummary",
        body: r#"{"list":[{"ref_date":"2021-09-01","user_source":0,"new_user":3,"cancel_user":5},{"ref_date":"2021-09-01","user_source":1,"new_user":6,"cancel_user":1},{"ref_date":"2021-09-01","user_source":17,"new_user":3,"cancel_user":0},{"ref_date":"2021-09-01","user_source":30,"new_user":149,"cancel_user":1},{"ref_date":"2021-09-02","user_source":0,"new_user":1,"cancel_user":2}]}"#,
        begin: "2021-09-01",
        end: "2021-09-02",
        now: "2021-09-10T09:00:00+08:00",
    },
    // Real, 2021-04: a quiet day still has its user_source 0 row.
    Sample {
        endpoint: "getusersummary",
        body: r#"{"list":[{"ref_date":"2021-04-14","user_source":0,"new_user":0,"cancel_user":0}]}"#,
        begin: "2021-04-14",
        end: "2021-04-14",
        now: "2021-04-20T09:00:00+08:00",
    },
    // Documentation example (no user_source) for the documented request 12-02..12-07.
    Sample {
        endpoint: "getusercumulate",
        body: r#"{"list":[{"ref_date":"2014-12-07","cumulate_user":1217056}]}"#,
        begin: "2014-12-02",
        end: "2014-12-07",
        now: "2014-12-08T08:00:00+08:00",
    },
    // Real, 2023, with the undocumented user_source.
    Sample {
        endpoint: "getusercumulate",
        body: r#"{"list":[{"ref_date":"2023-04-20","user_source":0,"cumulate_user":11}]}"#,
        begin: "2023-04-20",
        end: "2023-04-20",
        now: "2023-04-21T10:00:00+08:00",
    },
    Sample {
        endpoint: "getarticlesummary",
        body: r#"{"list":[{"ref_date":"2014-12-08","msgid":"10000050_1","title":"12月27日 DiLi日报","int_page_read_user":23676,"int_page_read_count":25615,"ori_page_read_user":29,"ori_page_read_count":34,"share_user":122,"share_count":994,"add_to_fav_user":1,"add_to_fav_count":3}]}"#,
        begin: "2014-12-08",
        end: "2014-12-08",
        now: "2014-12-09T08:30:00+08:00",
    },
    // Real, 2022 (second detail filled in the same shape).
    Sample {
        endpoint: "getarticletotal",
        body: r#"{"list":[{"ref_date":"2022-08-19","msgid":"2247485082_1","title":"群发","user_source":0,"details":[{"stat_date":"2022-08-19","target_user":1,"int_page_read_user":0,"int_page_read_count":0,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":0,"share_count":0,"add_to_fav_user":0,"add_to_fav_count":0,"int_page_from_session_read_user":0,"int_page_from_session_read_count":0,"int_page_from_hist_msg_read_user":0,"int_page_from_hist_msg_read_count":0,"int_page_from_feed_read_user":0,"int_page_from_feed_read_count":0,"int_page_from_friends_read_user":0,"int_page_from_friends_read_count":0,"int_page_from_other_read_user":0,"int_page_from_other_read_count":0,"feed_share_from_session_user":0,"feed_share_from_session_cnt":0,"feed_share_from_feed_user":0,"feed_share_from_feed_cnt":0,"feed_share_from_other_user":0,"feed_share_from_other_cnt":0},{"stat_date":"2022-08-20","target_user":1,"int_page_read_user":1,"int_page_read_count":2,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":0,"share_count":0,"add_to_fav_user":0,"add_to_fav_count":0,"int_page_from_session_read_user":1,"int_page_from_session_read_count":2,"int_page_from_hist_msg_read_user":0,"int_page_from_hist_msg_read_count":0,"int_page_from_feed_read_user":0,"int_page_from_feed_read_count":0,"int_page_from_friends_read_user":0,"int_page_from_friends_read_count":0,"int_page_from_other_read_user":0,"int_page_from_other_read_count":0,"feed_share_from_session_user":0,"feed_share_from_session_cnt":0,"feed_share_from_feed_user":0,"feed_share_from_feed_cnt":0,"feed_share_from_other_user":0,"feed_share_from_other_cnt":0,"int_page_from_kanyikan_read_user":0,"int_page_from_kanyikan_read_count":0,"int_page_from_souyisou_read_user":0,"int_page_from_souyisou_read_count":0}]}]}"#,
        begin: "2022-08-19",
        end: "2022-08-19",
        now: "2022-08-30T09:00:00+08:00",
    },
    Sample {
        endpoint: "getuserread",
        body: r#"{"list":[{"ref_date":"2014-12-07","user_source":0,"int_page_read_user":45524,"int_page_read_count":48946,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":11,"share_count":276,"add_to_fav_user":0,"add_to_fav_count":0},{"ref_date":"2014-12-07","user_source":2,"int_page_read_user":120,"int_page_read_count":130,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":1,"share_count":2,"add_to_fav_user":0,"add_to_fav_count":0},{"ref_date":"2014-12-07","user_source":99999999,"int_page_read_user":45600,"int_page_read_count":49076,"ori_page_read_user":11,"ori_page_read_count":35,"share_user":12,"share_count":278,"add_to_fav_user":5,"add_to_fav_count":15},{"ref_date":"2014-12-08","user_source":99999999,"int_page_read_user":3,"int_page_read_count":3,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":0,"share_count":0,"add_to_fav_user":0,"add_to_fav_count":0}]}"#,
        begin: "2014-12-06",
        end: "2014-12-08",
        now: "2014-12-09T09:00:00+08:00",
    },
    // Real, 2020-04: sparse hours, the 99999999 row last.
    Sample {
        endpoint: "getuserreadhour",
        body: r#"{"list":[{"ref_date":"2020-04-13","ref_hour":1100,"user_source":4,"int_page_read_user":1,"int_page_read_count":1,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":0,"share_count":0,"add_to_fav_user":0,"add_to_fav_count":0},{"ref_date":"2020-04-13","ref_hour":1100,"user_source":99999999,"int_page_read_user":1,"int_page_read_count":1,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":0,"share_count":0,"add_to_fav_user":0,"add_to_fav_count":0}]}"#,
        begin: "2020-04-13",
        end: "2020-04-13",
        now: "2020-04-14T08:00:00+08:00",
    },
    // Documentation example (its share_scene 5 is a doc defect, kept as given).
    Sample {
        endpoint: "getusershare",
        body: r#"{"list":[{"ref_date":"2014-12-07","share_scene":1,"share_count":207,"share_user":11},{"ref_date":"2014-12-07","share_scene":5,"share_count":23,"share_user":11}]}"#,
        begin: "2014-12-01",
        end: "2014-12-07",
        now: "2014-12-08T09:00:00+08:00",
    },
    Sample {
        endpoint: "getusersharehour",
        body: r#"{"list":[{"ref_date":"2014-12-07","ref_hour":1200,"share_scene":1,"share_count":72,"share_user":4}]}"#,
        begin: "2014-12-07",
        end: "2014-12-07",
        now: "2014-12-08T09:00:00+08:00",
    },
    Sample {
        endpoint: "getupstreammsg",
        body: r#"{"list":[{"ref_date":"2014-12-07","msg_type":1,"msg_user":282,"msg_count":817}]}"#,
        begin: "2014-12-01",
        end: "2014-12-07",
        now: "2014-12-08T09:00:00+08:00",
    },
    Sample {
        endpoint: "getupstreammsghour",
        body: r#"{"list":[{"ref_date":"2014-12-07","ref_hour":0,"msg_type":1,"msg_user":9,"msg_count":10}]}"#,
        begin: "2014-12-07",
        end: "2014-12-07",
        now: "2014-12-08T09:00:00+08:00",
    },
    // Week rows are labelled with the Monday, served once the week is over.
    Sample {
        endpoint: "getupstreammsgweek",
        body: r#"{"list":[{"ref_date":"2014-12-08","msg_type":1,"msg_user":16,"msg_count":27}]}"#,
        begin: "2014-12-08",
        end: "2014-12-14",
        now: "2014-12-15T08:00:00+08:00",
    },
    // The documented month example: asked on 12-01 for 11-01..11-05, November's row comes back.
    Sample {
        endpoint: "getupstreammsgmonth",
        body: r#"{"list":[{"ref_date":"2014-11-01","msg_type":1,"msg_user":7989,"msg_count":42206}]}"#,
        begin: "2014-11-01",
        end: "2014-11-05",
        now: "2014-12-01T09:00:00+08:00",
    },
    Sample {
        endpoint: "getupstreammsgdist",
        body: r#"{"list":[{"ref_date":"2014-12-07","count_interval":1,"msg_user":246}]}"#,
        begin: "2014-12-07",
        end: "2014-12-07",
        now: "2014-12-08T09:00:00+08:00",
    },
    // The docs label these 2014-12-07, a Sunday (a copy-paste defect); WeChat's rule is the Monday.
    Sample {
        endpoint: "getupstreammsgdistweek",
        body: r#"{"list":[{"ref_date":"2014-12-08","count_interval":1,"msg_user":246}]}"#,
        begin: "2014-12-08",
        end: "2014-12-14",
        now: "2014-12-15T09:00:00+08:00",
    },
    Sample {
        endpoint: "getupstreammsgdistmonth",
        body: r#"{"list":[{"ref_date":"2014-12-01","count_interval":1,"msg_user":246}]}"#,
        begin: "2014-12-01",
        end: "2014-12-30",
        now: "2015-01-01T09:00:00+08:00",
    },
    Sample {
        endpoint: "getinterfacesummary",
        body: r#"{"list":[{"ref_date":"2014-12-07","callback_count":36974,"fail_count":67,"total_time_cost":14994291,"max_time_cost":5044}]}"#,
        begin: "2014-12-07",
        end: "2014-12-07",
        now: "2014-12-08T09:00:00+08:00",
    },
    Sample {
        endpoint: "getinterfacesummaryhour",
        body: r#"{"list":[{"ref_date":"2014-12-01","ref_hour":0,"callback_count":331,"fail_count":18,"total_time_cost":167870,"max_time_cost":5042}]}"#,
        begin: "2014-12-01",
        end: "2014-12-01",
        now: "2014-12-02T09:00:00+08:00",
    },
    // The example of wechat-datacube-2025.md (2025 reference §2–5): the official example values.
    Sample {
        endpoint: "getarticleread",
        body: r#"{"list":[{"ref_date":"2025-11-01","msgid":"2247490098_1","detail":{"read_user":4123,"read_user_source":[{"user_count":4123,"scene_desc":"全部"},{"user_count":234,"scene_desc":"公众号消息"}]}}],"is_delay":false}"#,
        begin: "2025-11-01",
        end: "2025-11-01",
        // getarticletotaldetail's 30-day window is closed: `is_delay` false, as in the example.
        now: "2025-12-01T09:00:00+08:00",
    },
    // The example of wechat-datacube-2025.md (2025 reference §2–5): the official example values.
    Sample {
        endpoint: "getarticleshare",
        body: r#"{"list":[{"ref_date":"2025-11-01","msgid":"2247490098_1","detail":{"share_user":366}}],"is_delay":false}"#,
        begin: "2025-11-01",
        end: "2025-11-01",
        // getarticletotaldetail's 30-day window is closed: `is_delay` false, as in the example.
        now: "2025-12-01T09:00:00+08:00",
    },
    // The example of wechat-datacube-2025.md (2025 reference §2–5): the official example values.
    Sample {
        endpoint: "getbizsummary",
        body: r#"{"list":[{"ref_date":"2025-11-01","detail":{"read_user":4123,"read_user_source":[{"user_count":4123,"scene_desc":"全部"},{"user_count":234,"scene_desc":"公众号消息"}],"share_user":366,"zaikan_user":191,"like_user":386,"comment_count":33,"collection_user":233,"redirect_ori_page_user":369,"send_page_count":512}}],"is_delay":false}"#,
        begin: "2025-11-01",
        end: "2025-11-30",
        // getarticletotaldetail's 30-day window is closed: `is_delay` false, as in the example.
        now: "2025-12-01T09:00:00+08:00",
    },
    // The example of wechat-datacube-2025.md (2025 reference §2–5): the official example values.
    Sample {
        endpoint: "getarticletotaldetail",
        body: r#"{"list":[{"ref_date":"2025-11-01","msgid":"2247490098_1","publish_type":0,"title":"标题","content_url":"https://mp.weixin.qq.com/s/...","detail_list":[{"stat_date":"2025-11-01","read_user":4123,"read_user_source":[{"user_count":4123,"scene_desc":"全部"}],"share_user":366,"zaikan_user":191,"like_user":386,"comment_count":33,"collection_user":233,"praise_money":361,"read_subscribe_user":327,"read_delivery_rate":0.0271002,"read_finish_rate":0.6304348,"read_avg_activetime":1.0588236,"read_jump_position":[{"position":1,"rate":0.5304147},{"position":2,"rate":0.1023412}]}]}],"is_delay":false}"#,
        begin: "2025-11-01",
        end: "2025-11-01",
        // getarticletotaldetail's 30-day window is closed: `is_delay` false, as in the example.
        now: "2025-12-01T09:00:00+08:00",
    },
];

#[tokio::test]
async fn every_endpoint_returns_imported_bytes_exactly() {
    let t = spawn_app().await;
    let mut covered = std::collections::BTreeSet::new();
    for s in SAMPLES {
        let a = t.import(s.endpoint, s.body).await;
        assert_eq!(a.status, 200, "{}: {}", s.endpoint, a.body);
        t.set_clock(s.now).await;
        let token = t.token().await;
        let a = t.datacube(s.endpoint, &token, s.begin, s.end).await;
        assert_eq!(a.status, 200);
        assert_eq!(
            a.headers["content-type"],
            "application/json; encoding=utf-8"
        );
        assert_eq!(a.headers["logicret"], "0");
        assert_eq!(a.body, s.body, "{} {}..{}", s.endpoint, s.begin, s.end);
        covered.insert(s.endpoint);
    }
    assert_eq!(
        covered.len(),
        datacube_api::Endpoint::ALL.len(),
        "a sample for every endpoint"
    );
}

#[tokio::test]
async fn rows_are_served_in_wechat_order_whatever_the_import_order() {
    let t = spawn_app().await;
    // The same 2021-09 sample, rows shuffled and fields reordered.
    let shuffled = r#"{"list":[{"user_source":30,"ref_date":"2021-09-01","cancel_user":1,"new_user":149},{"ref_date":"2021-09-02","user_source":0,"new_user":1,"cancel_user":2},{"ref_date":"2021-09-01","user_source":17,"new_user":3,"cancel_user":0},{"ref_date":"2021-09-01","user_source":0,"new_user":3,"cancel_user":5},{"ref_date":"2021-09-01","user_source":1,"new_user":6,"cancel_user":1}]}"#;
    assert_eq!(t.import("getusersummary", shuffled).await.status, 200);
    let token = t.token().await;
    let a = t
        .datacube("getusersummary", &token, "2021-09-01", "2021-09-02")
        .await;
    assert_eq!(a.body, SAMPLES[0].body);
}

#[tokio::test]
async fn only_the_requested_and_ready_days_are_served() {
    let t = spawn_app().await;
    let day = |d: &str, n: u32| {
        format!(
            r#"{{"ref_date":"{d}","callback_count":{n},"fail_count":0,"total_time_cost":{n},"max_time_cost":1}}"#
        )
    };
    let body = format!(
        r#"{{"list":[{},{},{},{}]}}"#,
        day("2021-09-01", 1),
        day("2021-09-02", 2),
        day("2021-09-08", 8),
        day("2021-09-09", 9)
    );
    assert_eq!(t.import("getinterfacesummary", &body).await.status, 200);
    let token = t.token().await;
    let a = t
        .datacube("getinterfacesummary", &token, "2021-09-02", "2021-09-09")
        .await;
    assert_eq!(
        a.body,
        format!(
            r#"{{"list":[{},{},{}]}}"#,
            day("2021-09-02", 2),
            day("2021-09-08", 8),
            day("2021-09-09", 9)
        )
    );
    // Before 08:00 China time yesterday is left out — not an error.
    t.set_clock("2021-09-10T07:59:00+08:00").await;
    let token = t.token().await;
    let a = t
        .datacube("getinterfacesummary", &token, "2021-09-08", "2021-09-09")
        .await;
    assert_eq!(a.body, format!(r#"{{"list":[{}]}}"#, day("2021-09-08", 8)));
    let a = t
        .datacube("getinterfacesummary", &token, "2021-09-09", "2021-09-09")
        .await;
    assert_eq!(a.body, r#"{"list":[]}"#);
}

#[tokio::test]
async fn weeks_and_months_appear_only_once_complete() {
    let t = spawn_app().await;
    let week = r#"{"list":[{"ref_date":"2021-08-30","msg_type":1,"msg_user":16,"msg_count":27},{"ref_date":"2021-09-06","msg_type":1,"msg_user":5,"msg_count":6}]}"#;
    assert_eq!(t.import("getupstreammsgweek", week).await.status, 200);
    let token = t.token().await;
    // On 2021-09-10 (a Friday) the week of 09-06 is not over.
    let a = t
        .datacube("getupstreammsgweek", &token, "2021-08-30", "2021-09-09")
        .await;
    assert_eq!(
        a.body,
        r#"{"list":[{"ref_date":"2021-08-30","msg_type":1,"msg_user":16,"msg_count":27}]}"#
    );
    t.set_clock("2021-09-13T08:00:00+08:00").await;
    let token = t.token().await;
    let a = t
        .datacube("getupstreammsgweek", &token, "2021-08-30", "2021-09-12")
        .await;
    assert_eq!(a.body, week);
}

#[tokio::test]
async fn accounts_see_only_their_own_statistics() {
    let t = spawn_app().await;
    t.add_account("wxother0000000001", "other-secret", true)
        .await;
    assert_eq!(
        t.import("getusersummary", SAMPLES[0].body).await.status,
        200
    );
    let other = t.token_for("wxother0000000001", "other-secret").await;
    let a = t
        .datacube("getusersummary", &other, "2021-09-01", "2021-09-02")
        .await;
    assert_eq!(a.body, r#"{"list":[]}"#);
}

#[tokio::test]
async fn imports_are_idempotent_and_all_or_nothing() {
    let t = spawn_app().await;
    let a = t.import("getusersummary", SAMPLES[0].body).await;
    assert_eq!(
        a.json(),
        serde_json::json!({"inserted": 5, "updated": 0, "unchanged": 0, "new_fields": []})
    );
    let a = t.import("getusersummary", SAMPLES[0].body).await;
    assert_eq!(
        a.json(),
        serde_json::json!({"inserted": 0, "updated": 0, "unchanged": 5, "new_fields": []})
    );
    // A body with one bad row stores nothing and names the row and the field.
    let bad = r#"{"list":[{"ref_date":"2021-09-03","user_source":0,"new_user":1,"cancel_user":0},{"ref_date":"2021-09-04","user_source":0,"new_user":"7","cancel_user":0}]}"#;
    let a = t.import("getusersummary", bad).await;
    assert_eq!(a.status, 422);
    assert_eq!(
        a.json()["error"],
        "getusersummary body refused, nothing stored: row 2 (list[1]): field `new_user`: \"7\" is not a non-negative integer"
    );
    let token = t.token().await;
    let a = t
        .datacube("getusersummary", &token, "2021-09-03", "2021-09-04")
        .await;
    assert_eq!(a.body, r#"{"list":[]}"#);
    // A changed row replaces the old one.
    let changed =
        r#"{"list":[{"ref_date":"2021-09-02","user_source":0,"new_user":100,"cancel_user":2}]}"#;
    let a = t.import("getusersummary", changed).await;
    assert_eq!(
        a.json(),
        serde_json::json!({"inserted": 0, "updated": 1, "unchanged": 0, "new_fields": []})
    );
    let a = t
        .datacube("getusersummary", &token, "2021-09-02", "2021-09-02")
        .await;
    assert_eq!(a.body, changed);
}

/// A field WeChat's documentation does not list is kept where it came, served back, and
/// named; `strict=true` refuses the body instead.
#[tokio::test]
async fn imported_new_fields_are_kept_unless_strict() {
    let t = spawn_app().await;
    let body = r#"{"list":[{"ref_date":"2021-09-01","user_source":0,"new_user":1,"cancel_user":0,"x_new":{"b":[1, 2],"a":null}}]}"#;
    let strict = t
        .admin_post(
            &format!("/admin/import?appid={APPID}&endpoint=getusersummary&strict=true"),
            body,
        )
        .await;
    assert_eq!(strict.status, 422);
    assert!(
        strict.json()["error"]
            .as_str()
            .unwrap()
            .ends_with("row 1 (list[0]): field `x_new`: getusersummary has no such field"),
        "{}",
        strict.body
    );
    let a = t.import("getusersummary", body).await;
    assert_eq!(
        a.json(),
        serde_json::json!({"inserted": 1, "updated": 0, "unchanged": 0, "new_fields": ["x_new"]})
    );
    let token = t.token().await;
    let served = t
        .datacube("getusersummary", &token, "2021-09-01", "2021-09-01")
        .await;
    assert_eq!(
        served.body,
        r#"{"list":[{"ref_date":"2021-09-01","user_source":0,"new_user":1,"cancel_user":0,"x_new":{"b":[1,2],"a":null}}]}"#
    );
}
