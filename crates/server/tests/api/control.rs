//! What a test suite drives: faults at run time (counted, and seeded), the clock in China time,
//! and a reset of everything a test leaves behind.

use serde_json::{json, Value};

use crate::helpers::*;

const WEEK: (&str, &str) = ("2021-09-01", "2021-09-07");

async fn faults(t: &TestApp, method: reqwest::Method, body: Value) -> (u16, Value) {
    let answer = t
        .client
        .request(method, t.url("/admin/faults"))
        .bearer_auth(ADMIN)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

async fn cumulate(t: &TestApp, token: &str) -> i64 {
    t.datacube("getusercumulate", token, WEEK.0, WEEK.1)
        .await
        .errcode()
}

async fn summary(t: &TestApp, token: &str) -> i64 {
    t.datacube("getusersummary", token, WEEK.0, WEEK.1)
        .await
        .errcode()
}

/// The next two calls fail, the third succeeds — the test every retry loop needs — and the
/// rules' counts say so.
#[tokio::test]
async fn counted_faults_fail_exactly_the_calls_they_name() {
    let t = spawn_app().await;
    let token = t.token().await;
    let (status, set) = faults(
        &t,
        reqwest::Method::PUT,
        json!({"rules": "getusersummary:-1@first2,getusercumulate:45011@after1"}),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    let got: Vec<i64> = [
        summary(&t, &token).await,
        summary(&t, &token).await,
        summary(&t, &token).await,
    ]
    .into();
    assert_eq!(got, [-1, -1, 0]);

    assert_eq!(cumulate(&t, &token).await, 0);
    assert_eq!(cumulate(&t, &token).await, 45011);
    assert_eq!(cumulate(&t, &token).await, 45011);
    let (_, now) = faults(&t, reqwest::Method::GET, json!({})).await;
    assert_eq!(
        now["rules"],
        json!([
            {"rule": "getusersummary:-1@first2", "calls": 3},
            {"rule": "getusercumulate:45011@after1", "calls": 3},
        ])
    );
    // Added rules come after; cleared, none.
    let (_, added) = faults(
        &t,
        reqwest::Method::POST,
        json!({"rules": "token:-1@first1"}),
    )
    .await;
    assert_eq!(added["rules"].as_array().unwrap().len(), 3);
    let a = t
        .get(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret={SECRET}"
        ))
        .await;
    assert_wechat_error(&a, -1, t.unix());
    let (_, cleared) = faults(&t, reqwest::Method::DELETE, json!({})).await;
    assert_eq!(cleared["rules"], json!([]));
    assert_eq!(cumulate(&t, &token).await, 0);
    // A bad rule is named.
    let (status, bad) = faults(&t, reqwest::Method::PUT, json!({"rules": "*:-1@sometimes"})).await;
    assert_eq!(status, 400);
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("\"*:-1@sometimes\""),
        "{bad}"
    );
}

/// The same seed gives the same faults, run after run.
#[tokio::test]
async fn seeded_faults_repeat() {
    let t = spawn_app().await;
    let token = t.token().await;
    let mut runs = Vec::new();
    for seed in [7, 7, 8] {
        faults(
            &t,
            reqwest::Method::PUT,
            json!({"rules": "getusersummary:-1@40%", "seed": seed}),
        )
        .await;
        let mut run = Vec::new();
        for _ in 0..25 {
            run.push(summary(&t, &token).await);
        }
        runs.push(run);
    }
    assert_eq!(runs[0], runs[1]);
    assert_ne!(runs[0], runs[2]);
    assert!(
        runs[0].contains(&-1) && runs[0].contains(&0),
        "{:?}",
        runs[0]
    );
    let (_, now) = faults(&t, reqwest::Method::GET, json!({})).await;
    assert_eq!(now["seed"], 8);
}

/// The clock speaks China time; a reset with `clock` and `faults` puts both back where the
/// server started them, and with `accounts` leaves nothing of the test before.
#[tokio::test]
async fn a_reset_puts_the_clock_and_the_faults_back() {
    let t = spawn_app_with(|c| {
        c.faults = datacube_server::faults::Faults::parse("getuserread:-1@1").unwrap();
    })
    .await;
    let clock = t
        .client
        .get(t.url("/admin/clock"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let now = clock["now"].as_str().unwrap();
    assert!(
        now.starts_with("2021-09-10T09:00:0") && now.ends_with("+08:00"),
        "{now}"
    );
    t.set_clock("2024-05-20T09:00:00+08:00").await;
    faults(&t, reqwest::Method::DELETE, json!({})).await;
    let a = t
        .admin_post(
            "/admin/reset",
            r#"{"accounts":true,"clock":true,"faults":true}"#,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["clock"], true);
    let clock: Value = t
        .client
        .get(t.url("/admin/clock"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        clock["now"]
            .as_str()
            .unwrap()
            .starts_with("2021-09-10T09:00:0"),
        "{clock}"
    );
    let (_, now) = faults(&t, reqwest::Method::GET, json!({})).await;
    assert_eq!(now["rules"][0]["rule"], "getuserread:-1@1");
    // The account is gone with the rest.
    let a = t
        .get(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret={SECRET}"
        ))
        .await;
    assert_wechat_error(&a, 40013, t.unix());
}
