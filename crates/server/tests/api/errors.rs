//! Every WeChat error code datacube answers, with its exact text and envelope, and the order of
//! checks of reference §2.5.

use crate::helpers::*;

const RANGE: &str = r#"{"begin_date":"2021-09-01","end_date":"2021-09-07"}"#;

#[tokio::test]
async fn every_datacube_error_code_in_its_envelope() {
    let t = spawn_app_with(|c| c.api_daily_quota = Some(2)).await;
    let token = t.token().await;
    let q = format!("access_token={token}");
    // (what, method, path, body, errcode, errmsg)
    let cases: Vec<(&str, &str, String, &str, i64, &str)> = vec![
        (
            "GET on a POST API",
            "GET",
            format!("/datacube/getusersummary?{q}"),
            "",
            43002,
            "require POST method",
        ),
        (
            "PUT on a POST API",
            "PUT",
            format!("/datacube/getusersummary?{q}"),
            RANGE,
            43002,
            "require POST method",
        ),
        (
            "no token",
            "POST",
            "/datacube/getusersummary".into(),
            RANGE,
            41001,
            "access_token missing",
        ),
        (
            "empty token",
            "POST",
            "/datacube/getusersummary?access_token=".into(),
            RANGE,
            41001,
            "access_token missing",
        ),
        (
            "unknown token",
            "POST",
            "/datacube/getusersummary?access_token=98_nope".into(),
            RANGE,
            40001,
            "invalid credential, access_token is invalid or not latest",
        ),
        (
            "empty body",
            "POST",
            format!("/datacube/getusersummary?{q}"),
            "",
            44002,
            "empty post data",
        ),
        (
            "form body",
            "POST",
            format!("/datacube/getusersummary?{q}"),
            "begin_date=2021-09-01&end_date=2021-09-07",
            61500,
            "date format error",
        ),
        (
            "empty object",
            "POST",
            format!("/datacube/getusersummary?{q}"),
            "{}",
            61500,
            "date format error",
        ),
        (
            "short month",
            "POST",
            format!("/datacube/getusersummary?{q}"),
            r#"{"begin_date":"2021-9-01","end_date":"2021-09-07"}"#,
            61500,
            "date format error",
        ),
        (
            "impossible date",
            "POST",
            format!("/datacube/getusersummary?{q}"),
            r#"{"begin_date":"2021-02-29","end_date":"2021-03-01"}"#,
            61500,
            "date format error",
        ),
        (
            "numbers",
            "POST",
            format!("/datacube/getusersummary?{q}"),
            r#"{"begin_date":20210901,"end_date":20210907}"#,
            61500,
            "date format error",
        ),
        (
            "truncated JSON",
            "POST",
            format!("/datacube/getusersummary?{q}"),
            r#"{"begin_date":"2021-09-01","end_date":"2021-09-07""#,
            61500,
            "date format error",
        ),
        (
            "end before begin",
            "POST",
            format!("/datacube/getusersummary?{q}"),
            r#"{"begin_date":"2021-09-07","end_date":"2021-09-01"}"#,
            61501,
            "date range error",
        ),
        (
            "span of 8 days",
            "POST",
            format!("/datacube/getusersummary?{q}"),
            r#"{"begin_date":"2021-09-01","end_date":"2021-09-08"}"#,
            61501,
            "date range error",
        ),
        (
            "end today",
            "POST",
            format!("/datacube/getusersummary?{q}"),
            r#"{"begin_date":"2021-09-09","end_date":"2021-09-10"}"#,
            61501,
            "date range error",
        ),
        (
            "end tomorrow",
            "POST",
            format!("/datacube/getinterfacesummary?{q}"),
            r#"{"begin_date":"2021-09-10","end_date":"2021-09-11"}"#,
            61501,
            "date range error",
        ),
        (
            "two days on a one-day API",
            "POST",
            format!("/datacube/getarticlesummary?{q}"),
            r#"{"begin_date":"2021-09-01","end_date":"2021-09-02"}"#,
            61501,
            "date range error",
        ),
        (
            "unknown datacube name",
            "POST",
            format!("/datacube/getusersummaryx?{q}"),
            RANGE,
            40066,
            "invalid url",
        ),
        (
            "upper-case name",
            "POST",
            format!("/datacube/GetUserSummary?{q}"),
            RANGE,
            40066,
            "invalid url",
        ),
        (
            "unknown path",
            "GET",
            "/cgi-bin/tools/shorturl".into(),
            "",
            40066,
            "invalid url",
        ),
    ];
    for (what, method, path, body, code, text) in cases {
        let req = t
            .client
            .request(method.parse().unwrap(), t.url(&path))
            .body(body.to_owned());
        let resp = req.send().await.unwrap();
        let a = Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        };
        let got = assert_wechat_error(&a, code, t.unix());
        assert_eq!(got, text, "{what}");
    }
    // datacube's own paths (the dashboard, its description, health checks) answer a method
    // they do not take as HTTP does: 405 and the methods they take.
    for (method, path) in [
        ("POST", "/"),
        ("POST", "/dashboard/app.js"),
        ("DELETE", "/openapi.json"),
        ("PUT", "/docs"),
        ("POST", "/healthz"),
        ("TRACE", "/readyz"),
    ] {
        let resp = t
            .client
            .request(method.parse().unwrap(), t.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 405, "{method} {path}");
        assert_eq!(resp.headers()["allow"], "GET,HEAD", "{method} {path}");
    }
    // 45009 after the configured daily quota; refused requests did not count.
    for _ in 0..2 {
        let a = t
            .datacube("getusersummary", &token, "2021-09-01", "2021-09-07")
            .await;
        assert_eq!(a.body, r#"{"list":[]}"#);
    }
    let a = t
        .datacube("getusersummary", &token, "2021-09-01", "2021-09-07")
        .await;
    assert_eq!(
        assert_wechat_error(&a, 45009, t.unix()),
        "reach max api daily quota limit"
    );
    // Quotas are per endpoint and per China-time day.
    let a = t
        .datacube("getusercumulate", &token, "2021-09-01", "2021-09-07")
        .await;
    assert_eq!(a.body, r#"{"list":[]}"#);
    t.set_clock("2021-09-11T00:00:01+08:00").await;
    let token = t.token().await;
    let a = t
        .datacube("getusersummary", &token, "2021-09-01", "2021-09-07")
        .await;
    assert_eq!(a.body, r#"{"list":[]}"#);
}

#[tokio::test]
async fn checks_run_in_wechats_order() {
    let t = spawn_app().await;
    t.add_account("wxunverified0000001", "s3cret", false).await;
    let unverified = t.token_for("wxunverified0000001", "s3cret").await;
    let token = t.token().await;
    let cases = [
        // method before token
        (
            "GET",
            "/datacube/getusersummary?access_token=bad".to_string(),
            "",
            43002,
        ),
        // token before body
        (
            "POST",
            "/datacube/getusersummary?access_token=bad".into(),
            "",
            40001,
        ),
        // verification before body
        (
            "POST",
            format!("/datacube/getusersummary?access_token={unverified}"),
            "",
            48001,
        ),
        (
            "POST",
            format!("/datacube/getusersummary?access_token={unverified}"),
            RANGE,
            48001,
        ),
        // empty body before format, format before range
        (
            "POST",
            format!("/datacube/getusersummary?access_token={token}"),
            "",
            44002,
        ),
        (
            "POST",
            format!("/datacube/getusersummary?access_token={token}"),
            r#"{"begin_date":"2021-09-30","end_date":"2021-9-1"}"#,
            61500,
        ),
        // unknown path before everything
        ("GET", "/datacube/nope".into(), "", 40066),
    ];
    for (method, path, body, code) in cases {
        let resp = t
            .client
            .request(method.parse().unwrap(), t.url(&path))
            .body(body)
            .send()
            .await
            .unwrap();
        let a = Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        };
        assert_wechat_error(&a, code, t.unix());
    }
    // An expired token is 42001 whatever the body.
    t.set_clock("2021-09-10T11:00:01+08:00").await;
    let a = t
        .post(
            &format!("/datacube/getusersummary?access_token={token}"),
            "junk",
        )
        .await;
    assert_wechat_error(&a, 42001, t.unix());
    assert_eq!(
        a.json()["errmsg"].as_str().unwrap().split(" rid: ").next(),
        Some("access_token expired")
    );
}

#[tokio::test]
async fn token_api_errors() {
    let t = spawn_app_with(|c| c.token_daily_quota = 2).await;
    let base = "/cgi-bin/token?";
    let cases = [
        (
            format!("{base}appid={APPID}&secret={SECRET}"),
            40002,
            "invalid grant_type",
        ),
        (
            format!("{base}grant_type=password&appid={APPID}&secret={SECRET}"),
            40002,
            "invalid grant_type",
        ),
        (
            format!("{base}grant_type=client_credential&secret={SECRET}"),
            41002,
            "appid missing",
        ),
        (
            format!("{base}grant_type=client_credential&appid={APPID}"),
            41004,
            "appsecret missing",
        ),
        (
            format!("{base}grant_type=client_credential&appid=wxnosuchaccount00&secret={SECRET}"),
            40013,
            "invalid appid",
        ),
        (
            format!("{base}grant_type=client_credential&appid={APPID}&secret=wrong"),
            40125,
            "invalid appsecret",
        ),
    ];
    for (path, code, text) in cases {
        let a = t.get(&path).await;
        assert_eq!(assert_wechat_error(&a, code, t.unix()), text, "{path}");
    }
    t.token().await;
    t.token().await;
    let a = t
        .get(&format!(
            "{base}grant_type=client_credential&appid={APPID}&secret={SECRET}"
        ))
        .await;
    assert_eq!(
        assert_wechat_error(&a, 45009, t.unix()),
        "reach max api daily quota limit"
    );
    // A new China-time day has a new quota.
    t.set_clock("2021-09-11T00:00:00+08:00").await;
    t.token().await;
}

#[tokio::test]
async fn stable_token_api_errors() {
    let t = spawn_app().await;
    let body = |v: serde_json::Value| v.to_string();
    let a = t.get("/cgi-bin/stable_token").await;
    assert_eq!(
        assert_wechat_error(&a, 43002, t.unix()),
        "require POST method"
    );
    let cases = [
        (String::new(), 44002, "empty post data"),
        (
            "grant_type=client_credential".into(),
            47001,
            "data format error",
        ),
        (
            body(
                serde_json::json!({"grant_type": "client_credential", "appid": APPID, "secret": SECRET, "force_refresh": "yes"}),
            ),
            47001,
            "data format error",
        ),
        (
            body(serde_json::json!({"appid": APPID, "secret": SECRET})),
            40002,
            "invalid grant_type",
        ),
        (
            body(serde_json::json!({"grant_type": "client_credential", "secret": SECRET})),
            41002,
            "appid missing",
        ),
        (
            body(serde_json::json!({"grant_type": "client_credential", "appid": APPID})),
            41004,
            "appsecret missing",
        ),
        (
            body(
                serde_json::json!({"grant_type": "client_credential", "appid": "wxnosuch", "secret": SECRET}),
            ),
            40013,
            "invalid appid",
        ),
        (
            body(
                serde_json::json!({"grant_type": "client_credential", "appid": APPID, "secret": "nope"}),
            ),
            40125,
            "invalid appsecret",
        ),
    ];
    for (b, code, text) in cases {
        let a = t.post("/cgi-bin/stable_token", &b).await;
        assert_eq!(assert_wechat_error(&a, code, t.unix()), text, "{b}");
    }
}

#[tokio::test]
async fn the_suffix_style_is_configurable() {
    let t = spawn_app_with(|c| c.suffix = datacube_api::SuffixStyle::CommaRid).await;
    let a = t.post("/datacube/getusersummary", RANGE).await;
    assert!(
        a.body
            .starts_with(r#"{"errcode":41001,"errmsg":"access_token missing, rid: "#),
        "{}",
        a.body
    );
    let t = spawn_app_with(|c| c.suffix = datacube_api::SuffixStyle::None).await;
    let a = t.post("/datacube/getusersummary", RANGE).await;
    assert_eq!(
        a.body,
        r#"{"errcode":41001,"errmsg":"access_token missing"}"#
    );
}

/// `--retire-legacy-articles`: the six old article endpoints answer 47009 with WeChat's text,
/// whatever the body; the other eleven and the default server answer as before.
#[tokio::test]
async fn retired_article_endpoints_answer_47009() {
    let retired = spawn_app_with(|c| c.retire_legacy_articles = true).await;
    let plain = spawn_app().await;
    let (t_retired, t_plain) = (retired.token().await, plain.token().await);
    for endpoint in datacube_api::Endpoint::ALL {
        let name = endpoint.name();
        let a = retired
            .datacube(name, &t_retired, "2021-09-08", "2021-09-08")
            .await;
        if endpoint.is_legacy_article() {
            let msg = assert_wechat_error(&a, 47009, retired.unix());
            assert_eq!(msg, "this api is offline, please use the new api", "{name}");
            // Whatever the body.
            let a = retired
                .post(&format!("/datacube/{name}?access_token={t_retired}"), "{}")
                .await;
            assert_eq!(a.errcode(), 47009, "{name}: {}", a.body);
        } else {
            assert!(a.body.starts_with("{\"list\":"), "{name}: {}", a.body);
        }
        let a = plain
            .datacube(name, &t_plain, "2021-09-08", "2021-09-08")
            .await;
        assert!(
            a.body.starts_with("{\"list\":"),
            "{name} by default: {}",
            a.body
        );
    }
}

/// One rule for a key given twice, everywhere (docs/compatibility.md): a key datacube reads,
/// given twice, is refused with the error of that key being wrong; others are ignored.
#[tokio::test]
async fn a_key_given_twice_is_refused_everywhere_it_is_read() {
    let t = spawn_app().await;
    let now = t.unix();
    let token_url = |q: &str| format!("/cgi-bin/token?grant_type=client_credential&{q}");
    let twice_appid = token_url(&format!("appid={APPID}&appid={APPID}&secret={SECRET}"));
    assert_wechat_error(&t.get(&twice_appid).await, 40013, now);
    let twice_secret = token_url(&format!("appid={APPID}&secret={SECRET}&secret=x"));
    assert_wechat_error(&t.get(&twice_secret).await, 40125, now);
    let twice_grant = format!(
        "/cgi-bin/token?grant_type=client_credential&grant_type=client_credential&appid={APPID}&secret={SECRET}"
    );
    assert_wechat_error(&t.get(&twice_grant).await, 40002, now);
    // An unknown parameter given twice is ignored.
    let other = token_url(&format!("appid={APPID}&secret={SECRET}&x=1&x=2"));
    assert!(t.get(&other).await.body.contains("access_token"));
    let token = t.token().await;
    let body = r#"{"begin_date":"2021-09-01","end_date":"2021-09-07"}"#;
    let a = t
        .post(
            &format!("/datacube/getusersummary?access_token={token}&access_token={token}"),
            body,
        )
        .await;
    assert_wechat_error(&a, 40001, now);
    let a = t
        .post(
            &format!("/datacube/getusersummary?access_token={token}"),
            r#"{"begin_date":"2021-09-01","end_date":"2021-09-07","end_date":"2021-09-03"}"#,
        )
        .await;
    assert_wechat_error(&a, 61500, now);
    let t = &t;
    let stable = |body: String| async move { t.post("/cgi-bin/stable_token", &body).await };
    let a = stable(format!(
        r#"{{"grant_type":"client_credential","appid":"{APPID}","secret":"x","secret":"{SECRET}"}}"#
    ))
    .await;
    assert_wechat_error(&a, 47001, now);
    let a = stable(format!(
        r#"{{"grant_type":"client_credential","appid":"{APPID}","secret":"{SECRET}","note":1,"note":2}}"#
    ))
    .await;
    assert!(a.body.contains("access_token"), "{}", a.body);
    // An event: the line is refused, named.
    let line = format!(
        r#"{{"type":"follow","appid":"{APPID}","time":"2021-09-01T10:00:00+08:00","time":"2021-09-02T10:00:00+08:00","openid":"o1","source":0}}"#
    );
    let report = t.admin_post("/admin/events", &line).await.json();
    assert_eq!(report["accepted"], 0, "{report}");
    assert_eq!(report["rejected"][0]["reason"], "`time` is given twice");
}
