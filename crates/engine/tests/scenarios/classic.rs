//! A small scenario computed by hand, for every endpoint. China time throughout; 2024-05-06 is
//! a Monday.

use std::collections::BTreeMap;

use datacube_api::Endpoint;
use jiff::civil::date;

const EVENTS: &str = r#"
{"type":"follow","appid":"wx1","time":"2024-05-06T09:00:00+08:00","openid":"o1","source":30}
{"type":"follow","appid":"wx1","time":"2024-05-06T10:00:00+08:00","openid":"o2","source":1}
{"type":"unfollow","appid":"wx1","time":"2024-05-06T11:00:00+08:00","openid":"o1"}
{"type":"follow","appid":"wx1","time":"2024-05-06T12:00:00+08:00","openid":"o1","source":30}
{"type":"follow","appid":"wx1","time":"2024-05-07T09:00:00+08:00","openid":"o3","source":0}
{"type":"unfollow","appid":"wx1","time":"2024-05-07T02:00:00Z","openid":"o2"}
{"type":"message","appid":"wx1","time":"2024-05-06T09:10:00+08:00","openid":"o1","msg_type":"text"}
{"type":"message","appid":"wx1","time":"2024-05-06T09:20:00+08:00","openid":"o1","msg_type":"text"}
{"type":"message","appid":"wx1","time":"2024-05-06T09:30:00+08:00","openid":"o2","msg_type":"image"}
{"type":"message","appid":"wx1","time":"2024-05-06T10:05:00+08:00","openid":"o1","msg_type":"text"}
{"type":"message","appid":"wx1","time":"2024-05-06T10:10:00+08:00","openid":"o2","msg_type":"location"}
{"type":"message","appid":"wx1","time":"2024-05-07T15:00:00+08:00","openid":"o1","msg_type":"text"}
{"type":"message","appid":"wx1","time":"2024-05-07T15:01:00+08:00","openid":"o1","msg_type":"text"}
{"type":"message","appid":"wx1","time":"2024-05-07T15:02:00+08:00","openid":"o1","msg_type":"text"}
{"type":"message","appid":"wx1","time":"2024-05-07T15:03:00+08:00","openid":"o1","msg_type":"text"}
{"type":"message","appid":"wx1","time":"2024-05-07T15:04:00+08:00","openid":"o1","msg_type":"text"}
{"type":"message","appid":"wx1","time":"2024-05-07T15:05:00+08:00","openid":"o1","msg_type":"text"}
{"type":"reply","appid":"wx1","time":"2024-05-06T09:10:01+08:00","cost_ms":100,"ok":true}
{"type":"reply","appid":"wx1","time":"2024-05-06T09:20:05+08:00","cost_ms":5003,"ok":false}
{"type":"reply","appid":"wx1","time":"2024-05-06T10:05:00+08:00","cost_ms":300,"ok":true}
{"type":"publish","appid":"wx1","time":"2024-05-06T20:00:00+08:00","msgid":"2247483650_1","title":"A"}
{"type":"publish","appid":"wx1","time":"2024-05-06T20:00:00+08:00","msgid":"2247483650_2","title":"B"}
{"type":"read","appid":"wx1","time":"2024-05-06T20:05:00+08:00","msgid":"2247483650_1","openid":"o1","page":"int","scene":"session"}
{"type":"read","appid":"wx1","time":"2024-05-06T20:06:00+08:00","msgid":"2247483650_1","openid":"o1","page":"int","scene":"session"}
{"type":"read","appid":"wx1","time":"2024-05-06T20:10:00+08:00","msgid":"2247483650_1","openid":"o2","page":"int","scene":"friends"}
{"type":"read","appid":"wx1","time":"2024-05-06T20:11:00+08:00","msgid":"2247483650_1","openid":"o2","page":"ori","scene":"friends"}
{"type":"share","appid":"wx1","time":"2024-05-06T20:12:00+08:00","msgid":"2247483650_1","openid":"o2","scene":"feed","from":"session"}
{"type":"read","appid":"wx1","time":"2024-05-06T21:00:00+08:00","msgid":"2247483650_2","openid":"o3","page":"int","scene":"feed"}
{"type":"favorite","appid":"wx1","time":"2024-05-07T08:00:00+08:00","msgid":"2247483650_1","openid":"o1"}
{"type":"read","appid":"wx1","time":"2024-05-13T10:00:00+08:00","msgid":"2247483650_1","openid":"o2","page":"int","scene":"history"}
"#;

fn rows() -> BTreeMap<Endpoint, Vec<String>> {
    super::rows(EVENTS, date(2024, 5, 6), date(2024, 5, 13))
}

fn on(rows: &[String], day: &str) -> Vec<String> {
    rows.iter()
        .filter(|r| r.contains(&format!("\"ref_date\":\"{day}\"")))
        .cloned()
        .collect()
}

#[test]
fn followers_count_re_follows_once_and_attribute_unfollows_to_their_channel() {
    let r = rows();
    // 05-06: o1 follows (30), unfollows, follows again (30): one new user of channel 30, who
    // also cancelled; o2 follows (1). 05-07: o3 follows (0); o2 (of channel 1) unfollows.
    assert_eq!(
        on(&r[&Endpoint::GetUserSummary], "2024-05-06"),
        [
            r#"{"ref_date":"2024-05-06","user_source":0,"new_user":0,"cancel_user":0}"#,
            r#"{"ref_date":"2024-05-06","user_source":1,"new_user":1,"cancel_user":0}"#,
            r#"{"ref_date":"2024-05-06","user_source":30,"new_user":1,"cancel_user":1}"#,
        ]
    );
    assert_eq!(
        on(&r[&Endpoint::GetUserSummary], "2024-05-07"),
        [
            r#"{"ref_date":"2024-05-07","user_source":0,"new_user":1,"cancel_user":0}"#,
            r#"{"ref_date":"2024-05-07","user_source":1,"new_user":0,"cancel_user":1}"#,
        ]
    );
    // A quiet day still has its user_source 0 row.
    assert_eq!(
        on(&r[&Endpoint::GetUserSummary], "2024-05-08"),
        [r#"{"ref_date":"2024-05-08","user_source":0,"new_user":0,"cancel_user":0}"#]
    );
    // End of 05-06: o1, o2. End of 05-07: o1, o3. Then unchanged.
    let cumulate: Vec<u64> = r[&Endpoint::GetUserCumulate]
        .iter()
        .map(|j| {
            serde_json::from_str::<serde_json::Value>(j).unwrap()["cumulate_user"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(cumulate, [2, 2, 2, 2, 2, 2, 2, 2]);
    assert_eq!(
        r[&Endpoint::GetUserCumulate][0],
        r#"{"ref_date":"2024-05-06","user_source":0,"cumulate_user":2}"#
    );
}

#[test]
fn messages_by_type_hour_week_month_and_interval() {
    let r = rows();
    // The location message counts nowhere.
    assert_eq!(
        r[&Endpoint::GetUpstreamMsg],
        [
            r#"{"ref_date":"2024-05-06","user_source":0,"msg_type":1,"msg_user":1,"msg_count":3}"#,
            r#"{"ref_date":"2024-05-06","user_source":0,"msg_type":2,"msg_user":1,"msg_count":1}"#,
            r#"{"ref_date":"2024-05-07","user_source":0,"msg_type":1,"msg_user":1,"msg_count":6}"#,
        ]
    );
    assert_eq!(
        on(&r[&Endpoint::GetUpstreamMsgHour], "2024-05-06"),
        [
            r#"{"ref_date":"2024-05-06","ref_hour":900,"user_source":0,"msg_type":1,"msg_user":1,"msg_count":2}"#,
            r#"{"ref_date":"2024-05-06","ref_hour":900,"user_source":0,"msg_type":2,"msg_user":1,"msg_count":1}"#,
            r#"{"ref_date":"2024-05-06","ref_hour":1000,"user_source":0,"msg_type":1,"msg_user":1,"msg_count":1}"#,
        ]
    );
    // Week of Monday 05-06 and month of 05-01: o1 sent 9 texts, o2 one image.
    assert_eq!(
        r[&Endpoint::GetUpstreamMsgWeek],
        [
            r#"{"ref_date":"2024-05-06","user_source":0,"msg_type":1,"msg_user":1,"msg_count":9}"#,
            r#"{"ref_date":"2024-05-06","user_source":0,"msg_type":2,"msg_user":1,"msg_count":1}"#,
        ]
    );
    assert_eq!(
        r[&Endpoint::GetUpstreamMsgMonth][0],
        r#"{"ref_date":"2024-05-01","user_source":0,"msg_type":1,"msg_user":1,"msg_count":9}"#
    );
    // 05-06: o1 sent 3, o2 sent 1 (both 1–5); 05-07: o1 sent 6 (6–10).
    assert_eq!(
        r[&Endpoint::GetUpstreamMsgDist],
        [
            r#"{"ref_date":"2024-05-06","user_source":0,"count_interval":1,"msg_user":2}"#,
            r#"{"ref_date":"2024-05-07","user_source":0,"count_interval":2,"msg_user":1}"#,
        ]
    );
    // The week: o2 one message, o1 nine.
    assert_eq!(
        r[&Endpoint::GetUpstreamMsgDistWeek],
        [
            r#"{"ref_date":"2024-05-06","user_source":0,"count_interval":1,"msg_user":1}"#,
            r#"{"ref_date":"2024-05-06","user_source":0,"count_interval":2,"msg_user":1}"#,
        ]
    );
    assert_eq!(r[&Endpoint::GetUpstreamMsgDistMonth].len(), 2);
}

#[test]
fn replies_sum_and_max_their_costs() {
    let r = rows();
    assert_eq!(
        r[&Endpoint::GetInterfaceSummary],
        [
            r#"{"ref_date":"2024-05-06","callback_count":3,"fail_count":1,"total_time_cost":5403,"max_time_cost":5003}"#
        ]
    );
    assert_eq!(
        r[&Endpoint::GetInterfaceSummaryHour],
        [
            r#"{"ref_date":"2024-05-06","ref_hour":900,"callback_count":2,"fail_count":1,"total_time_cost":5103,"max_time_cost":5003}"#,
            r#"{"ref_date":"2024-05-06","ref_hour":1000,"callback_count":1,"fail_count":0,"total_time_cost":300,"max_time_cost":300}"#,
        ]
    );
}

#[test]
fn article_summary_keeps_scores_of_three_within_seven_days() {
    let r = rows();
    // _1 on 05-06: readers o1 (twice) and o2, o2 read the original and shared once: score
    // 2 + 1 + 1 + 1 = 5. _2: one reader, score 1. 05-07: one favourite, score 1. 05-13 is day 7.
    assert_eq!(
        r[&Endpoint::GetArticleSummary],
        [
            r#"{"ref_date":"2024-05-06","msgid":"2247483650_1","title":"A","user_source":0,"int_page_read_user":2,"int_page_read_count":3,"ori_page_read_user":1,"ori_page_read_count":1,"share_user":1,"share_count":1,"add_to_fav_user":0,"add_to_fav_count":0}"#
        ]
    );
}

#[test]
fn article_total_is_cumulative_for_seven_days_with_the_audience_at_send_time() {
    let r = rows();
    let totals: Vec<serde_json::Value> = r[&Endpoint::GetArticleTotal]
        .iter()
        .map(|j| serde_json::from_str(j).unwrap())
        .collect();
    assert_eq!(totals.len(), 2);
    let a = &totals[0];
    assert_eq!(a["msgid"], "2247483650_1");
    let details = a["details"].as_array().unwrap();
    let dates: Vec<&str> = details
        .iter()
        .map(|d| d["stat_date"].as_str().unwrap())
        .collect();
    assert_eq!(
        dates,
        [
            "2024-05-06",
            "2024-05-07",
            "2024-05-08",
            "2024-05-09",
            "2024-05-10",
            "2024-05-11",
            "2024-05-12"
        ]
    );
    // At 20:00 on 05-06, o1 (re-followed) and o2 follow.
    assert!(details.iter().all(|d| d["target_user"] == 2));
    let d0 = &details[0];
    assert_eq!(
        (
            d0["int_page_read_user"].as_u64(),
            d0["int_page_read_count"].as_u64()
        ),
        (Some(2), Some(3))
    );
    assert_eq!(
        (
            d0["int_page_from_session_read_user"].as_u64(),
            d0["int_page_from_session_read_count"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(d0["int_page_from_friends_read_user"], 1);
    assert_eq!(
        (
            d0["feed_share_from_session_user"].as_u64(),
            d0["feed_share_from_session_cnt"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(d0["add_to_fav_count"], 0);
    // The favourite of 05-07 is in every later detail; the read of 05-13 is past the 7 days.
    for d in &details[1..] {
        assert_eq!(d["add_to_fav_user"], 1);
        assert_eq!(d["int_page_read_count"], 3);
        assert_eq!(d["int_page_from_hist_msg_read_user"], 0);
    }
    assert_eq!(totals[1]["msgid"], "2247483650_2");
    assert_eq!(totals[1]["details"][0]["int_page_from_feed_read_user"], 1);
}

#[test]
fn user_read_has_channels_and_a_deduplicated_all_row() {
    let r = rows();
    assert_eq!(
        on(&r[&Endpoint::GetUserRead], "2024-05-06"),
        [
            // Session: o1 read twice; o2's share came from the session.
            r#"{"ref_date":"2024-05-06","user_source":0,"int_page_read_user":1,"int_page_read_count":2,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":1,"share_count":1,"add_to_fav_user":0,"add_to_fav_count":0}"#,
            r#"{"ref_date":"2024-05-06","user_source":1,"int_page_read_user":1,"int_page_read_count":1,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":0,"share_count":0,"add_to_fav_user":0,"add_to_fav_count":0}"#,
            r#"{"ref_date":"2024-05-06","user_source":2,"int_page_read_user":1,"int_page_read_count":1,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":0,"share_count":0,"add_to_fav_user":0,"add_to_fav_count":0}"#,
            r#"{"ref_date":"2024-05-06","user_source":99999999,"int_page_read_user":3,"int_page_read_count":4,"ori_page_read_user":1,"ori_page_read_count":1,"share_user":1,"share_count":1,"add_to_fav_user":0,"add_to_fav_count":0}"#,
        ]
    );
    // Original-page reads and favourites exist only in the all-channels row.
    assert_eq!(
        on(&r[&Endpoint::GetUserRead], "2024-05-07"),
        [
            r#"{"ref_date":"2024-05-07","user_source":99999999,"int_page_read_user":0,"int_page_read_count":0,"ori_page_read_user":0,"ori_page_read_count":0,"share_user":0,"share_count":0,"add_to_fav_user":1,"add_to_fav_count":1}"#
        ]
    );
    // Reads of any age count here, unlike getarticlesummary.
    assert_eq!(on(&r[&Endpoint::GetUserRead], "2024-05-13").len(), 2);
    let hours: Vec<String> = on(&r[&Endpoint::GetUserReadHour], "2024-05-06")
        .iter()
        .map(|j| {
            let v: serde_json::Value = serde_json::from_str(j).unwrap();
            format!(
                "{}/{}/{}",
                v["ref_hour"], v["user_source"], v["int_page_read_user"]
            )
        })
        .collect();
    assert_eq!(
        hours,
        [
            "2000/0/1",
            "2000/1/1",
            "2000/99999999/2",
            "2100/2/1",
            "2100/99999999/1"
        ]
    );
}

#[test]
fn shares_by_scene_and_hour() {
    let r = rows();
    assert_eq!(
        r[&Endpoint::GetUserShare],
        [
            r#"{"ref_date":"2024-05-06","user_source":0,"share_scene":2,"share_count":1,"share_user":1}"#
        ]
    );
    assert_eq!(
        r[&Endpoint::GetUserShareHour],
        [
            r#"{"ref_date":"2024-05-06","ref_hour":2000,"user_source":0,"share_scene":2,"share_count":1,"share_user":1}"#
        ]
    );
}
