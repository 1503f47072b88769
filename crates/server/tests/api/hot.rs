//! Answers asked again and again: each event loop holds its own copy of its hottest answers
//! (issue 32). Whatever changes, the next answer is what the whole path would give.

use serde_json::json;

use crate::helpers::*;

const ASKED: usize = 6;

/// The same request `ASKED` times on one connection (one loop): every answer equal (errors:
/// the same code; each has its own request id).
async fn asked_again(t: &TestApp, token: &str) -> Answer {
    let first = t
        .datacube("getusersummary", token, "2024-05-06", "2024-05-08")
        .await;
    for _ in 1..ASKED {
        let again = t
            .datacube("getusersummary", token, "2024-05-06", "2024-05-08")
            .await;
        assert_eq!(again.errcode(), first.errcode(), "{}", again.body);
        if first.errcode() == 0 {
            assert_eq!(again.body, first.body);
        }
    }
    first
}

/// A follow by `id` on 2024-05-`day`, posted live.
pub(crate) async fn follow(t: &TestApp, id: &str, day: u32, source: u32) {
    let line = json!({"id": id, "appid": APPID, "type": "follow",
        "time": format!("2024-05-{day:02}T09:00:00+08:00"), "openid": id, "source": source});
    let a = t.admin_post("/admin/events", &line.to_string()).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn a_hot_answer_follows_statistics_tokens_faults_the_clock_and_removal() {
    let t = spawn_app().await;
    t.set_clock("2024-05-20T09:00:00+08:00").await;
    follow(&t, "o1", 7, 30).await;
    let token = t.token().await;
    let counted = || async {
        let metrics = t.get("/metrics").await.body;
        ["hit", "miss"].map(|result| {
            let series = format!("datacube_response_cache_total{{result=\"{result}\"}} ");
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&series)?.parse::<u64>().ok())
                .unwrap_or(0)
        })
    };
    let before = counted().await;
    let first = asked_again(&t, &token).await;
    assert!(
        first.body.contains(r#""user_source":30,"new_user":1"#),
        "{}",
        first.body
    );
    // Every answer counted once: a kept answer (the loop's or the shared cache's) or one
    // rendered (on the loop from held statistics, or by the whole path). The metrics are the
    // process's, shared with the tests running beside this one: at least these.
    let after = counted().await;
    assert!(
        after[0] + after[1] - before[0] - before[1] >= ASKED as u64,
        "{before:?} -> {after:?}"
    );

    // New statistics: in the very next answer, and in every one after it.
    follow(&t, "o2", 7, 30).await;
    let changed = asked_again(&t, &token).await;
    assert!(
        changed.body.contains(r#""user_source":30,"new_user":2"#),
        "{}",
        changed.body
    );

    // A fault set: drawn on the next request; cleared, the answer is back.
    let set = t
        .client
        .put(t.url("/admin/faults"))
        .bearer_auth(ADMIN)
        .body(json!({"rules": "getusersummary:45009@first1"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let faulty = t
        .datacube("getusersummary", &token, "2024-05-06", "2024-05-08")
        .await;
    assert_eq!(faulty.errcode(), 45009, "{}", faulty.body);
    assert_eq!(asked_again(&t, &token).await.body, changed.body);

    // A new token: the old one still answers for its hand-over, then is superseded (40001).
    let newer = t.token().await;
    assert_eq!(asked_again(&t, &token).await.body, changed.body);
    t.set_clock("2024-05-20T09:06:00+08:00").await;
    assert_eq!(asked_again(&t, &token).await.errcode(), 40001);
    assert_eq!(asked_again(&t, &newer).await.body, changed.body);

    // Expired: 42001.
    t.set_clock("2024-05-20T11:07:00+08:00").await;
    assert_eq!(asked_again(&t, &newer).await.errcode(), 42001);

    // The clock back before the range ends: the dates are refused now (61500's range check).
    let fresh = t.token().await;
    assert_eq!(asked_again(&t, &fresh).await.body, changed.body);
    t.set_clock("2024-05-08T09:00:00+08:00").await;
    let early = t
        .datacube("getusersummary", &fresh, "2024-05-06", "2024-05-08")
        .await;
    assert_ne!(early.errcode(), 0, "{}", early.body);
    t.set_clock("2024-05-20T11:10:00+08:00").await;

    // The account removed: its token is unknown at once.
    let fresh = t.token().await;
    assert_eq!(asked_again(&t, &fresh).await.body, changed.body);
    let gone = t
        .client
        .delete(t.url(&format!("/admin/accounts/{APPID}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success(), "{}", gone.status());
    assert_eq!(asked_again(&t, &fresh).await.errcode(), 40001);
}

/// Ranges of held statistics answered on the loop: each as a server holding nothing answers
/// it, errors included; a change in the very next answer, whatever its range.
#[tokio::test]
async fn other_ranges_of_held_statistics_answer_as_the_database() {
    let t = spawn_app().await;
    let plain = spawn_holding_nothing().await;
    for app in [&t, &plain] {
        app.set_clock("2024-05-20T09:00:00+08:00").await;
        for (i, day) in [6, 7, 9, 13].into_iter().enumerate() {
            follow(app, &format!("o{i}"), day, 30).await;
        }
    }
    let (token, plain_token) = (t.token().await, plain.token().await);
    let compare = |name: &'static str, b: String, e: String| {
        let (t, plain, token, plain_token) = (&t, &plain, &token, &plain_token);
        async move {
            let got = t.datacube(name, token, &b, &e).await;
            let want = plain.datacube(name, plain_token, &b, &e).await;
            assert_eq!(
                got.errcode(),
                want.errcode(),
                "{name} {b}..{e}: {}",
                got.body
            );
            if want.errcode() == 0 {
                assert_eq!(got.body, want.body, "{name} {b}..{e}");
            }
            got
        }
    };
    for name in ["getusersummary", "getusercumulate", "getinterfacesummary"] {
        for i in 0..30i64 {
            let b = jiff::civil::date(2024, 5, 1) + jiff::Span::new().days(i % 15);
            let e = b + jiff::Span::new().days(i % 7);
            compare(name, b.to_string(), e.to_string()).await;
        }
        // Refused dates are told as the whole path tells them.
        compare(name, "2024-05-09".into(), "2024-05-08".into()).await;
        compare(name, "2024-05-01".into(), "2024-05-30".into()).await;
        compare(name, "2024-5-1".into(), "2024-05-03".into()).await;
    }
    // A body past the limit is refused as the whole path refuses it, even when what fits
    // within the limit is a good request.
    let padded = format!(
        r#"{{"begin_date":"2024-05-06","end_date":"2024-05-08"}}{}"#,
        " ".repeat(200_000)
    );
    let path = |token: &str| format!("/datacube/getusersummary?access_token={token}");
    // Whichever loop the padded request reaches has answered the token from held statistics:
    // connections go to the loops in turn, so two new ones reach both.
    for _ in 0..2 {
        let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
        let body = r#"{"begin_date":"2024-05-06","end_date":"2024-05-08"}"#;
        let a = fresh
            .post(t.url(&path(&token)))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(a.status(), 200);
    }
    let got = t.post(&path(&token), &padded).await;
    let want = plain.post(&path(&plain_token), &padded).await;
    assert_ne!(want.errcode(), 0, "{}", want.body);
    assert_eq!(got.errcode(), want.errcode(), "{}", got.body);
    assert_eq!(
        got.headers.get("connection"),
        want.headers.get("connection")
    );

    // A new follow on a day no range asked so far: in the next answer of a range with it.
    for app in [&t, &plain] {
        follow(app, "late", 11, 0).await;
    }
    let after = compare("getusersummary", "2024-05-10".into(), "2024-05-12".into()).await;
    assert!(
        after
            .body
            .contains(r#""ref_date":"2024-05-11","user_source":0,"new_user":1"#),
        "{}",
        after.body
    );
    let cumulate = compare("getusercumulate", "2024-05-12".into(), "2024-05-14".into()).await;
    assert!(
        cumulate
            .body
            .contains(r#""ref_date":"2024-05-13","user_source":0,"cumulate_user":5"#),
        "{}",
        cumulate.body
    );
}
