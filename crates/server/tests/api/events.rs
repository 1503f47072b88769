//! Events in, statistics out: `POST /admin/events`, then the WeChat API.

use crate::helpers::*;

fn line(id: &str, rest: &str) -> String {
    format!(r#"{{"appid":"{APPID}","id":"{id}",{rest}}}"#)
}

fn batch() -> String {
    [
        line("f1", r#""type":"follow","time":"2024-05-06T09:00:00+08:00","openid":"o1","source":30"#),
        line("f2", r#""type":"follow","time":"2024-05-06T10:00:00+08:00","openid":"o2","source":1"#),
        line("u1", r#""type":"unfollow","time":"2024-05-07T10:00:00+08:00","openid":"o2""#),
        line("m1", r#""type":"message","time":"2024-05-06T09:10:00+08:00","openid":"o1","msg_type":"text""#),
        line("m2", r#""type":"message","time":"2024-05-06T09:20:00+08:00","openid":"o1","msg_type":"text""#),
        line("r1", r#""type":"reply","time":"2024-05-06T09:10:01+08:00","cost_ms":120,"ok":true"#),
        line("r2", r#""type":"reply","time":"2024-05-06T09:20:05+08:00","cost_ms":5001,"ok":false"#),
    ]
    .join("\n")
}

async fn ingest(t: &TestApp, body: &str) -> serde_json::Value {
    let a = t.admin_post("/admin/events", body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

#[tokio::test]
async fn ingested_events_are_served_and_resending_changes_nothing() {
    let t = spawn_app().await;
    t.set_clock("2024-05-20T09:00:00+08:00").await;
    let report = ingest(&t, &batch()).await;
    assert_eq!(
        report,
        serde_json::json!({"accepted": 7, "duplicates": 0, "rejected": [], "rejected_total": 0})
    );
    let token = t.token().await;
    let summary = t
        .datacube("getusersummary", &token, "2024-05-06", "2024-05-08")
        .await;
    assert_eq!(
        summary.body,
        r#"{"list":[{"ref_date":"2024-05-06","user_source":0,"new_user":0,"cancel_user":0},{"ref_date":"2024-05-06","user_source":1,"new_user":1,"cancel_user":0},{"ref_date":"2024-05-06","user_source":30,"new_user":1,"cancel_user":0},{"ref_date":"2024-05-07","user_source":0,"new_user":0,"cancel_user":0},{"ref_date":"2024-05-07","user_source":1,"new_user":0,"cancel_user":1},{"ref_date":"2024-05-08","user_source":0,"new_user":0,"cancel_user":0}]}"#
    );
    // Quiet days up to yesterday (by the clock) carry the follower count.
    let cumulate = t
        .datacube("getusercumulate", &token, "2024-05-13", "2024-05-19")
        .await;
    assert_eq!(cumulate.json()["list"].as_array().unwrap().len(), 7);
    assert!(
        cumulate
            .body
            .contains(r#"{"ref_date":"2024-05-19","user_source":0,"cumulate_user":1}"#),
        "{}",
        cumulate.body
    );
    let iface = t
        .datacube("getinterfacesummary", &token, "2024-05-01", "2024-05-19")
        .await;
    assert_eq!(
        iface.body,
        r#"{"list":[{"ref_date":"2024-05-06","callback_count":2,"fail_count":1,"total_time_cost":5121,"max_time_cost":5001}]}"#
    );
    // The same batch again: every event is a duplicate, nothing changes.
    let report = ingest(&t, &batch()).await;
    assert_eq!(
        report,
        serde_json::json!({"accepted": 0, "duplicates": 7, "rejected": [], "rejected_total": 0})
    );
    assert_eq!(
        t.datacube("getinterfacesummary", &token, "2024-05-01", "2024-05-19")
            .await
            .body,
        iface.body
    );
    assert_eq!(
        t.datacube("getusersummary", &token, "2024-05-06", "2024-05-08")
            .await
            .body,
        summary.body
    );
}

#[tokio::test]
async fn bad_lines_are_reported_and_good_lines_kept() {
    let t = spawn_app().await;
    t.set_clock("2024-05-20T09:00:00+08:00").await;
    let body = [
        line("a", r#""type":"message","time":"2024-05-06T09:10:00+08:00","openid":"o1","msg_type":"text""#),
        "{not json".to_string(),
        String::new(),
        line("b", r#""type":"message","time":"2024-05-06T09:10:00+08:00","openid":"o1","msg_type":"gif""#),
        r#"{"type":"reply","appid":"wxnobody","time":"2024-05-06T09:10:00+08:00","cost_ms":1,"ok":true}"#.to_string(),
        line("c", r#""type":"message","time":"2024-05-06T11:10:00+08:00","openid":"o2","msg_type":"image""#),
    ]
    .join("\n");
    let report = ingest(&t, &body).await;
    assert_eq!(report["accepted"], 2);
    assert_eq!(report["duplicates"], 0);
    let rejected = report["rejected"].as_array().unwrap();
    let lines: Vec<u64> = rejected
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 4, 5]);
    assert!(rejected[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("not JSON"));
    assert_eq!(
        rejected[1]["reason"],
        "`msg_type` \"gif\" is not one of text|image|voice|video|shortvideo|link|location"
    );
    assert_eq!(
        rejected[2]["reason"],
        "no account wxnobody; add it first (datacube account add)"
    );
    let token = t.token().await;
    let a = t
        .datacube("getupstreammsg", &token, "2024-05-06", "2024-05-06")
        .await;
    assert_eq!(
        a.body,
        r#"{"list":[{"ref_date":"2024-05-06","user_source":0,"msg_type":1,"msg_user":1,"msg_count":1},{"ref_date":"2024-05-06","user_source":0,"msg_type":2,"msg_user":1,"msg_count":1}]}"#
    );
}

#[tokio::test]
async fn late_events_update_the_days_weeks_and_months_they_belong_to() {
    let t = spawn_app().await;
    t.set_clock("2024-05-20T09:00:00+08:00").await;
    ingest(&t, &batch()).await;
    let token = t.token().await;
    let week = t
        .datacube("getupstreammsgweek", &token, "2024-05-06", "2024-05-12")
        .await;
    assert_eq!(
        week.body,
        r#"{"list":[{"ref_date":"2024-05-06","user_source":0,"msg_type":1,"msg_user":1,"msg_count":2}]}"#
    );
    // Days later, a message of 05-08 from another user arrives.
    let late = line(
        "late",
        r#""type":"message","time":"2024-05-08T23:59:59+08:00","openid":"o9","msg_type":"text""#,
    );
    assert_eq!(ingest(&t, &late).await["accepted"], 1);
    let day = t
        .datacube("getupstreammsg", &token, "2024-05-08", "2024-05-08")
        .await;
    assert_eq!(
        day.body,
        r#"{"list":[{"ref_date":"2024-05-08","user_source":0,"msg_type":1,"msg_user":1,"msg_count":1}]}"#
    );
    let week = t
        .datacube("getupstreammsgweek", &token, "2024-05-06", "2024-05-12")
        .await;
    assert_eq!(
        week.body,
        r#"{"list":[{"ref_date":"2024-05-06","user_source":0,"msg_type":1,"msg_user":2,"msg_count":3}]}"#
    );
    t.set_clock("2024-06-01T09:00:00+08:00").await;
    let token = t.token().await;
    let month = t
        .datacube("getupstreammsgmonth", &token, "2024-05-01", "2024-05-30")
        .await;
    assert_eq!(
        month.body,
        r#"{"list":[{"ref_date":"2024-05-01","user_source":0,"msg_type":1,"msg_user":2,"msg_count":3}]}"#
    );
}

#[tokio::test]
async fn article_totals_show_details_only_up_to_the_last_ready_day() {
    let t = spawn_app().await;
    // Ingested on 05-08 at 10:00: reads of the 05-06 send on 05-06, 05-07 and 05-08 (today).
    t.set_clock("2024-05-08T10:00:00+08:00").await;
    let body = [
        line("p", r#""type":"publish","time":"2024-05-06T20:00:00+08:00","msgid":"2247483650_1","title":"A""#),
        line("r1", r#""type":"read","time":"2024-05-06T20:05:00+08:00","msgid":"2247483650_1","openid":"o1","page":"int","scene":"session""#),
        line("r2", r#""type":"read","time":"2024-05-07T09:00:00+08:00","msgid":"2247483650_1","openid":"o2","page":"int","scene":"feed""#),
        line("r3", r#""type":"read","time":"2024-05-08T09:30:00+08:00","msgid":"2247483650_1","openid":"o3","page":"int","scene":"feed""#),
    ]
    .join("\n");
    assert_eq!(ingest(&t, &body).await["accepted"], 4);
    let token = t.token().await;
    let dates = |a: &Answer| -> Vec<String> {
        a.json()["list"][0]["details"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                format!(
                    "{}:{}",
                    d["stat_date"].as_str().unwrap(),
                    d["int_page_read_user"]
                )
            })
            .collect()
    };
    let a = t
        .datacube("getarticletotal", &token, "2024-05-06", "2024-05-06")
        .await;
    assert_eq!(
        dates(&a),
        ["2024-05-06:1", "2024-05-07:2"],
        "05-08 is not ready: {}",
        a.body
    );
    assert!(a.body.starts_with(r#"{"list":[{"ref_date":"2024-05-06","msgid":"2247483650_1","title":"A","user_source":0,"details":[{"stat_date":"2024-05-06","target_user":0,"int_page_read_user":1,"#), "{}", a.body);
    // The next morning after 08:00, the 05-08 detail is ready.
    t.set_clock("2024-05-09T08:00:00+08:00").await;
    let token = t.token().await;
    let a = t
        .datacube("getarticletotal", &token, "2024-05-06", "2024-05-06")
        .await;
    assert_eq!(dates(&a), ["2024-05-06:1", "2024-05-07:2", "2024-05-08:3"]);
}

/// Days without events still have their follower rows once they are past: when the server's
/// day changes, accounts with events are extended to yesterday; imported accounts are not.
#[tokio::test]
async fn quiet_days_get_their_follower_rows_as_days_go_by() {
    let t = spawn_app().await;
    t.set_clock("2024-05-20T09:00:00+08:00").await;
    assert_eq!(ingest(&t, &batch()).await["accepted"], 7);
    t.add_account("wxbbbb000000000002", "other", true).await;
    let imported = r#"{"list":[{"ref_date":"2024-05-19","user_source":0,"cumulate_user":42}]}"#;
    let a = t
        .admin_post(
            "/admin/import?appid=wxbbbb000000000002&endpoint=getusercumulate",
            imported,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // Five quiet days later.
    t.set_clock("2024-05-25T09:00:00+08:00").await;
    let token = t.token().await;
    let mut cumulate = String::new();
    for _ in 0..40 {
        cumulate = t
            .datacube("getusercumulate", &token, "2024-05-20", "2024-05-24")
            .await
            .body;
        if cumulate.contains("2024-05-24") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let days: Vec<String> = (20..=24)
        .map(|d| format!(r#"{{"ref_date":"2024-05-{d}","user_source":0,"cumulate_user":1}}"#))
        .collect();
    assert_eq!(cumulate, format!(r#"{{"list":[{}]}}"#, days.join(",")));
    let summary = t
        .datacube("getusersummary", &token, "2024-05-20", "2024-05-24")
        .await;
    let zeros: Vec<String> = (20..=24)
        .map(|d| {
            format!(r#"{{"ref_date":"2024-05-{d}","user_source":0,"new_user":0,"cancel_user":0}}"#)
        })
        .collect();
    assert_eq!(summary.body, format!(r#"{{"list":[{}]}}"#, zeros.join(",")));

    // The imported account's rows are WeChat's own: nothing is invented for it.
    let other = t.token_for("wxbbbb000000000002", "other").await;
    assert_eq!(
        t.datacube("getusercumulate", &other, "2024-05-19", "2024-05-24")
            .await
            .body,
        format!(r#"{{"list":[{}]}}"#, &imported[9..imported.len() - 2])
    );
}

/// Sums of reply times saturate at the largest figure an import accepts back, never wrap; a
/// time past it is refused with the line named.
#[tokio::test]
async fn summed_statistics_saturate_and_are_importable_back() {
    let t = spawn_app().await;
    t.set_clock("2024-05-20T09:00:00+08:00").await;
    let max = i64::MAX;
    let body = [
        line(
            "r1",
            &format!(
                r#""type":"reply","time":"2024-05-06T09:10:01+08:00","cost_ms":{max},"ok":true"#
            ),
        ),
        line(
            "r2",
            &format!(
                r#""type":"reply","time":"2024-05-06T09:10:02+08:00","cost_ms":{max},"ok":true"#
            ),
        ),
        line(
            "r3",
            r#""type":"reply","time":"2024-05-06T09:10:03+08:00","cost_ms":5,"ok":false"#,
        ),
        line(
            "r4",
            &format!(
                r#""type":"reply","time":"2024-05-06T09:10:04+08:00","cost_ms":{},"ok":true"#,
                u64::MAX
            ),
        ),
    ]
    .join("\n");
    let report = ingest(&t, &body).await;
    assert_eq!(report["accepted"], 3);
    assert_eq!(report["rejected"][0]["line"], 4);
    assert!(
        report["rejected"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("`cost_ms` must be at most 9223372036854775807"),
        "{report}"
    );
    let token = t.token().await;
    let day = t
        .datacube("getinterfacesummary", &token, "2024-05-06", "2024-05-06")
        .await;
    assert_eq!(
        day.body,
        format!(
            r#"{{"list":[{{"ref_date":"2024-05-06","callback_count":3,"fail_count":1,"total_time_cost":{max},"max_time_cost":{max}}}]}}"#
        )
    );
    // What the server answers, its own import takes back.
    let again = t.import("getinterfacesummary", &day.body).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["unchanged"], 1);
}

/// A line past 16 MiB (a 17 MiB openid) is refused with its number, whatever it holds; many
/// bad lines are all counted and the first thousand named.
#[tokio::test]
async fn long_lines_are_refused_and_bad_lines_counted_not_all_named() {
    let t = spawn_app().await;
    t.set_clock("2024-05-20T09:00:00+08:00").await;
    let long = line(
        "l1",
        &format!(
            r#""type":"follow","time":"2024-05-06T09:00:00+08:00","openid":"{}","source":0"#,
            "o".repeat(17 << 20)
        ),
    );
    let mut body = vec![long];
    body.extend((0..5000).map(|i| format!("not an event {i}")));
    let report = ingest(&t, &body.join("\n")).await;
    assert_eq!(report["accepted"], 0);
    assert_eq!(report["rejected_total"], 5001);
    let named = report["rejected"].as_array().unwrap();
    assert_eq!(named.len(), 1000);
    assert_eq!(named[0]["line"], 1);
    assert_eq!(named[0]["reason"], "longer than 16 MiB");
    assert_eq!(named[999]["line"], 1000);
}

/// A JSON array posted as events: the line is refused with a hint that events are NDJSON.
#[tokio::test]
async fn a_json_array_of_events_is_told_events_are_ndjson() {
    let t = spawn_app().await;
    let body = format!(
        r#"[{{"type":"follow","appid":"{APPID}","time":"2024-05-06T09:00:00+08:00","openid":"o1","source":0}}]"#
    );
    let report = ingest(&t, &body).await;
    let why = report["rejected"][0]["reason"].as_str().unwrap();
    assert!(why.contains("NDJSON, one object per line"), "{why}");
}

/// Many requests for statistics not held in memory yet, at once (one loads them, the others
/// read the database meanwhile): every one is answered, each range as the database answers it
/// (`--stats-memory 0`) — and a new event is in the next answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_reads_all_answer_as_the_database() {
    let t = spawn_app_with(|c| c.response_cache = 0).await;
    let plain = spawn_holding_nothing().await;
    for app in [&t, &plain] {
        app.set_clock("2024-05-20T09:00:00+08:00").await;
        ingest(app, &batch()).await;
    }
    let (token, plain_token) = (t.token().await, plain.token().await);
    let ranges: Vec<(String, String)> = (0..48)
        .map(|i| {
            let b = jiff::civil::date(2024, 5, 1) + jiff::Span::new().days(i % 12);
            let e = b + jiff::Span::new().days(i % 7);
            (b.to_string(), e.to_string())
        })
        .collect();
    let client = reqwest::Client::new();
    for name in [
        "getusersummary",
        "getusercumulate",
        "getinterfacesummary",
        "getupstreammsg",
    ] {
        let url = t.url(&format!("/datacube/{name}?access_token={token}"));
        let mut asked = tokio::task::JoinSet::new();
        for (i, (b, e)) in ranges.iter().enumerate() {
            let (client, url) = (client.clone(), url.clone());
            let body = format!(r#"{{"begin_date":"{b}","end_date":"{e}"}}"#);
            asked.spawn(async move {
                let text = client
                    .post(url)
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                (i, text)
            });
        }
        let answers = asked.join_all().await;
        assert_eq!(answers.len(), ranges.len());
        for (i, answer) in answers {
            let (b, e) = &ranges[i];
            let expected = plain.datacube(name, &plain_token, b, e).await;
            assert!(
                answer.starts_with(r#"{"list":["#),
                "{name} {b}..{e}: {answer}"
            );
            assert_eq!(answer, expected.body, "{name} {b}..{e}");
        }
    }
    // Held now; a new follow is in the next answer.
    let before = t
        .datacube("getusersummary", &token, "2024-05-09", "2024-05-09")
        .await;
    ingest(
        &t,
        &line(
            "f9",
            r#""type":"follow","time":"2024-05-09T09:00:00+08:00","openid":"o9","source":30"#,
        ),
    )
    .await;
    let after = t
        .datacube("getusersummary", &token, "2024-05-09", "2024-05-09")
        .await;
    assert_ne!(before.body, after.body);
    assert!(
        after.body.contains(r#""user_source":30,"new_user":1"#),
        "{}",
        after.body
    );
}
