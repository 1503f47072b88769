//! The 2025 "published content" endpoints on a small scenario computed by hand. China time
//! throughout; 2025-11-03 is a Monday.
//!
//! Two articles are published on 11-03 to 4 followers: `_1` with notification, `_2` without.
//! On 11-03 o1 reads `_1` three times from two scenes (公众号消息 twice, 朋友圈 once), o2 from a
//! chat (聊天会话) and its original page, o5 from 搜一搜 and then follows; o3 reads `_2` from the
//! account's home page (the `home` scene). Nothing happens on 11-04. On 11-05 o3 reads `_1`
//! from 推荐 (the `recommend` scene), favourites and shares it.

use std::collections::BTreeMap;

use datacube_api::Endpoint;
use jiff::civil::date;

/// The scenario (also ingested by the server's tests).
const EVENTS: &str = include_str!("../data/published.ndjson");

/// Every endpoint's rows for 11-03..11-06.
fn rows() -> BTreeMap<Endpoint, Vec<String>> {
    super::rows(EVENTS, date(2025, 11, 3), date(2025, 11, 6))
}

fn of(r: &BTreeMap<Endpoint, Vec<String>>, e: Endpoint) -> Vec<&str> {
    r.get(&e)
        .map_or(vec![], |rows| rows.iter().map(String::as_str).collect())
}

#[test]
fn article_read_lists_each_article_read_with_a_deduplicated_all_scene() {
    let r = rows();
    // 11-03, `_1`: o1 (公众号消息 and 朋友圈), o2 (聊天会话), o5 (搜一搜): 3 readers, 4 scene
    // entries. `_2`: o3 from the home page. 11-04: no row. 11-05: o3 from 推荐.
    assert_eq!(
        of(&r, Endpoint::GetArticleRead),
        [
            r#"{"ref_date":"2025-11-03","msgid":"2247490098_1","detail":{"read_user":3,"read_user_source":[{"user_count":3,"scene_desc":"全部"},{"user_count":1,"scene_desc":"公众号消息"},{"user_count":1,"scene_desc":"聊天会话"},{"user_count":1,"scene_desc":"朋友圈"},{"user_count":1,"scene_desc":"搜一搜"}]}}"#,
            r#"{"ref_date":"2025-11-03","msgid":"2247490098_2","detail":{"read_user":1,"read_user_source":[{"user_count":1,"scene_desc":"全部"},{"user_count":1,"scene_desc":"公众号主页"}]}}"#,
            r#"{"ref_date":"2025-11-05","msgid":"2247490098_1","detail":{"read_user":1,"read_user_source":[{"user_count":1,"scene_desc":"全部"},{"user_count":1,"scene_desc":"推荐"}]}}"#,
        ]
    );
}

#[test]
fn article_read_counts_the_readers_getarticlesummary_counts() {
    let r = rows();
    // getarticlesummary lists `_1` on 11-03 (score ≥ 3): its int_page_read_user is getarticleread's
    // read_user.
    let summary = of(&r, Endpoint::GetArticleSummary);
    let row = summary
        .iter()
        .find(|s| s.contains("\"2025-11-03\"") && s.contains("2247490098_1"))
        .expect("a getarticlesummary row");
    assert!(row.contains("\"int_page_read_user\":3,"), "{row}");
    assert!(row.contains("\"share_user\":1,"), "{row}");
}

#[test]
fn article_share_lists_each_article_shared() {
    let r = rows();
    assert_eq!(
        of(&r, Endpoint::GetArticleShare),
        [
            r#"{"ref_date":"2025-11-03","msgid":"2247490098_1","detail":{"share_user":1}}"#,
            r#"{"ref_date":"2025-11-05","msgid":"2247490098_1","detail":{"share_user":1}}"#,
        ]
    );
}

#[test]
fn biz_summary_is_the_accounts_day_and_skips_a_day_without_change() {
    let r = rows();
    // 11-03: readers o1 o2 o5 (of `_1`) and o3 (of `_2`) = 4; o2 sharer; o1 在看; o2 thumb (twice,
    // one user); 2 comments by o1; o2 read the original page; 2 articles published.
    // 11-04: nothing, no row. 11-05: o3 reads, shares, favourites.
    assert_eq!(
        of(&r, Endpoint::GetBizSummary),
        [
            r#"{"ref_date":"2025-11-03","detail":{"read_user":4,"read_user_source":[{"user_count":4,"scene_desc":"全部"},{"user_count":1,"scene_desc":"公众号消息"},{"user_count":1,"scene_desc":"聊天会话"},{"user_count":1,"scene_desc":"朋友圈"},{"user_count":1,"scene_desc":"公众号主页"},{"user_count":1,"scene_desc":"搜一搜"}],"share_user":1,"zaikan_user":1,"like_user":1,"comment_count":2,"collection_user":0,"redirect_ori_page_user":1,"send_page_count":2}}"#,
            r#"{"ref_date":"2025-11-05","detail":{"read_user":1,"read_user_source":[{"user_count":1,"scene_desc":"全部"},{"user_count":1,"scene_desc":"推荐"}],"share_user":1,"zaikan_user":0,"like_user":0,"comment_count":0,"collection_user":1,"redirect_ori_page_user":0,"send_page_count":0}}"#,
        ]
    );
}

#[test]
fn total_detail_has_cumulative_snapshots_from_the_publish_day() {
    let r = rows();
    // `_1` on 11-03: readers o1 o2 o5; 1 sharer, 1 在看, 1 thumb, 2 comments, 500 fen, o5
    // followed after reading; delivered to the 4 followers of 20:00, 1 came from the message
    // (0.25); of the two who left, o1 finished (0.5), 2 minutes in all (1 min each), o2 left in
    // the second fifth, o1 in the fifth. 11-04 is the same (cumulative). 11-05 adds o3 (推荐,
    // favourite, share, left at 85 % after 45 s): 4 readers, 2 sharers, 1/3 finished, 165 s
    // over 3 = 0.9166667 min, fifths 2 and 5 at 1/3 and 2/3. 11-06 as 11-05.
    let d1 = r#"{"read_user":3,"read_user_source":[{"user_count":3,"scene_desc":"全部"},{"user_count":1,"scene_desc":"公众号消息"},{"user_count":1,"scene_desc":"聊天会话"},{"user_count":1,"scene_desc":"朋友圈"},{"user_count":1,"scene_desc":"搜一搜"}],"share_user":1,"zaikan_user":1,"like_user":1,"comment_count":2,"collection_user":0,"praise_money":500,"read_subscribe_user":1,"read_delivery_rate":0.25,"read_finish_rate":0.5,"read_avg_activetime":1,"read_jump_position":[{"position":2,"rate":0.5},{"position":5,"rate":0.5}]}"#;
    let d3 = r#"{"read_user":4,"read_user_source":[{"user_count":4,"scene_desc":"全部"},{"user_count":1,"scene_desc":"公众号消息"},{"user_count":1,"scene_desc":"聊天会话"},{"user_count":1,"scene_desc":"朋友圈"},{"user_count":1,"scene_desc":"推荐"},{"user_count":1,"scene_desc":"搜一搜"}],"share_user":2,"zaikan_user":1,"like_user":1,"comment_count":2,"collection_user":1,"praise_money":500,"read_subscribe_user":1,"read_delivery_rate":0.25,"read_finish_rate":0.33333334,"read_avg_activetime":0.9166667,"read_jump_position":[{"position":2,"rate":0.33333334},{"position":5,"rate":0.6666667}]}"#;
    let snap = |day: &str, rest: &str| format!(r#"{{"stat_date":"{day}",{}"#, &rest[1..]);
    let first = format!(
        r#"{{"ref_date":"2025-11-03","msgid":"2247490098_1","publish_type":0,"title":"春天","content_url":"https://mp.weixin.qq.com/s/a","detail_list":[{},{},{},{}]}}"#,
        snap("2025-11-03", d1),
        snap("2025-11-04", d1),
        snap("2025-11-05", d3),
        snap("2025-11-06", d3),
    );
    // `_2`: published without notification (no delivery), o3 its only reader, no leave.
    let d2 = r#"{"read_user":1,"read_user_source":[{"user_count":1,"scene_desc":"全部"},{"user_count":1,"scene_desc":"公众号主页"}],"share_user":0,"zaikan_user":0,"like_user":0,"comment_count":0,"collection_user":0,"praise_money":0,"read_subscribe_user":0,"read_delivery_rate":0,"read_finish_rate":0,"read_avg_activetime":0,"read_jump_position":[]}"#;
    let second = format!(
        r#"{{"ref_date":"2025-11-03","msgid":"2247490098_2","publish_type":1,"title":"夏天","detail_list":[{},{},{},{}]}}"#,
        snap("2025-11-03", d2),
        snap("2025-11-04", d2),
        snap("2025-11-05", d2),
        snap("2025-11-06", d2),
    );
    assert_eq!(
        of(&r, Endpoint::GetArticleTotalDetail),
        [first.as_str(), second.as_str()]
    );
}

#[test]
fn total_detail_follows_an_article_for_thirty_days() {
    let rows = super::rows(EVENTS, date(2025, 11, 3), date(2026, 1, 31));
    let row = &rows[&Endpoint::GetArticleTotalDetail][0];
    assert_eq!(row.matches("\"stat_date\"").count(), 30);
    assert!(row.contains("\"stat_date\":\"2025-12-02\""), "the 30th day");
    assert!(!row.contains("\"stat_date\":\"2025-12-03\""));
}
