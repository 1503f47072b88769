//! Snapshots (insta) of every error answer, as a client reads it over HTTP: the WeChat API's
//! `{"errcode":…,"errmsg":"… rid: …"}` bodies, byte for byte (SDKs parse them), and the admin
//! API's `{"error":"…"}` bodies with their status. The files are in `snapshots/`, one per
//! situation; a changed text shows as a diff to review (`cargo insta review`, or
//! `INSTA_UPDATE=always` and `git diff`).
//!
//! The request id's three groups (time and two random ones) are replaced by `[rid]`; each
//! WeChat answer is also checked whole by [`assert_wechat_error`] (envelope, headers, rid).

use serde_json::json;

use crate::helpers::*;

const RANGE: &str = r#"{"begin_date":"2021-09-01","end_date":"2021-09-07"}"#;

/// What a client sees of an answer: its status, the headers that say how to read it, and the
/// body as sent.
fn seen(a: &Answer) -> String {
    let mut text = format!("HTTP {}\n", a.status);
    for name in ["content-type", "allow", "www-authenticate", "connection"] {
        if let Some(v) = a.headers.get(name) {
            text.push_str(&format!("{name}: {}\n", v.to_str().unwrap()));
        }
    }
    text.push('\n');
    text.push_str(&a.body);
    text
}

/// Snapshots `a` as `name`, with the request id made stable.
fn snap(name: &str, what: &str, a: &Answer) {
    insta::with_settings!({
        description => what,
        omit_expression => true,
        filters => vec![(r"rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}", "rid: [rid]")],
    }, {
        insta::assert_snapshot!(name, seen(a));
    });
}

/// Checks a WeChat error answer whole, then snapshots it.
fn snap_wechat(t: &TestApp, name: &str, what: &str, a: &Answer, code: i64) {
    assert_wechat_error(a, code, t.unix());
    snap(name, what, a);
}

async fn send(t: &TestApp, method: &str, path: &str, body: &str, admin: bool) -> Answer {
    let mut req = t
        .client
        .request(method.parse().unwrap(), t.url(path))
        .body(body.to_owned());
    if admin {
        req = req.bearer_auth(ADMIN);
    }
    Answer::of(req.send().await.unwrap()).await
}

trait Of {
    async fn of(resp: reqwest::Response) -> Answer;
}

impl Of for Answer {
    async fn of(resp: reqwest::Response) -> Answer {
        Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }
}

// ---- the WeChat API ----

#[tokio::test]
async fn wechat_datacube_errors() {
    let t = spawn_app_with(|c| {
        c.api_daily_quota = Some(1);
        c.retire_legacy_articles = true;
    })
    .await;
    t.add_account("wxunverified0000001", "s3cret", false).await;
    let unverified = t.token_for("wxunverified0000001", "s3cret").await;
    let token = t.token().await;
    let q = format!("access_token={token}");
    let summary = format!("/datacube/getusersummary?{q}");
    let cases: Vec<(&str, &str, &str, String, &str, i64)> = vec![
        (
            "wechat_require_post",
            "GET on a datacube endpoint",
            "GET",
            summary.clone(),
            "",
            43002,
        ),
        (
            "wechat_access_token_missing",
            "no access_token parameter",
            "POST",
            "/datacube/getusersummary".into(),
            RANGE,
            41001,
        ),
        (
            "wechat_access_token_invalid",
            "an access_token datacube never issued",
            "POST",
            "/datacube/getusersummary?access_token=98_nope".into(),
            RANGE,
            40001,
        ),
        (
            "wechat_empty_post_data",
            "an empty body",
            "POST",
            summary.clone(),
            "",
            44002,
        ),
        (
            "wechat_date_format_error_bad_json",
            "a body that is not JSON (cut off)",
            "POST",
            summary.clone(),
            r#"{"begin_date":"2021-09-01","end_date":"2021-09-07""#,
            61500,
        ),
        (
            "wechat_date_format_error_bad_date",
            "a date without its leading zero",
            "POST",
            summary.clone(),
            r#"{"begin_date":"2021-9-01","end_date":"2021-09-07"}"#,
            61500,
        ),
        (
            "wechat_date_range_error_begin_after_end",
            "begin_date after end_date",
            "POST",
            summary.clone(),
            r#"{"begin_date":"2021-09-07","end_date":"2021-09-01"}"#,
            61501,
        ),
        (
            "wechat_date_range_error_span_too_long",
            "8 days on an endpoint of 7 at most",
            "POST",
            summary.clone(),
            r#"{"begin_date":"2021-09-01","end_date":"2021-09-08"}"#,
            61501,
        ),
        (
            "wechat_date_range_error_not_ready",
            "a range ending today (only yesterday is ready)",
            "POST",
            summary.clone(),
            r#"{"begin_date":"2021-09-09","end_date":"2021-09-10"}"#,
            61501,
        ),
        (
            "wechat_invalid_url_datacube_name",
            "an unknown datacube endpoint",
            "POST",
            format!("/datacube/getusersummaryx?{q}"),
            RANGE,
            40066,
        ),
        (
            "wechat_invalid_url_path",
            "a path that names no API",
            "GET",
            "/cgi-bin/tools/shorturl".into(),
            "",
            40066,
        ),
        (
            "wechat_api_unauthorized_unverified",
            "an unverified account on a datacube endpoint",
            "POST",
            format!("/datacube/getusersummary?access_token={unverified}"),
            RANGE,
            48001,
        ),
        (
            "wechat_api_offline_retired_article",
            "an old article endpoint with --retire-legacy-articles",
            "POST",
            format!("/datacube/getarticlesummary?{q}"),
            r#"{"begin_date":"2021-09-08","end_date":"2021-09-08"}"#,
            47009,
        ),
    ];
    for (name, what, method, path, body, code) in &cases {
        let a = send(&t, method, path, body, false).await;
        snap_wechat(&t, name, what, &a, *code);
    }
    // The quota of 1: one answer, then 45009.
    let a = t
        .datacube("getusersummary", &token, "2021-09-01", "2021-09-07")
        .await;
    assert_eq!(a.body, r#"{"list":[]}"#);
    let a = t
        .datacube("getusersummary", &token, "2021-09-01", "2021-09-07")
        .await;
    snap_wechat(
        &t,
        "wechat_daily_quota_reached",
        "past --api-daily-quota",
        &a,
        45009,
    );
    // Two hours and a second later the token is expired.
    t.set_clock("2021-09-10T11:00:01+08:00").await;
    let a = t
        .datacube("getusercumulate", &token, "2021-09-01", "2021-09-07")
        .await;
    snap_wechat(
        &t,
        "wechat_access_token_expired",
        "a token past its 7200 seconds",
        &a,
        42001,
    );
}

#[tokio::test]
async fn wechat_token_errors() {
    let t = spawn_app().await;
    let c = "wxc0000000000000c1";
    let added = t
        .admin_post(
            "/admin/components",
            &json!({"appid": c, "secret": "component-secret-for-tests-000001",
                    "token": "componenttoken", "aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"})
            .to_string(),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.body);
    let base = "/cgi-bin/token?";
    let cases = [
        (
            "wechat_token_invalid_grant_type",
            "grant_type=password",
            format!("{base}grant_type=password&appid={APPID}&secret={SECRET}"),
            40002,
        ),
        (
            "wechat_token_appid_missing",
            "no appid",
            format!("{base}grant_type=client_credential&secret={SECRET}"),
            41002,
        ),
        (
            "wechat_token_appsecret_missing",
            "no secret",
            format!("{base}grant_type=client_credential&appid={APPID}"),
            41004,
        ),
        (
            "wechat_token_invalid_appid",
            "an appid of no account",
            format!("{base}grant_type=client_credential&appid=wxnosuchaccount00&secret={SECRET}"),
            40013,
        ),
        (
            "wechat_token_invalid_appsecret",
            "a wrong secret",
            format!("{base}grant_type=client_credential&appid={APPID}&secret=wrong"),
            40125,
        ),
        (
            "wechat_token_component_appid",
            "a component's appid on /cgi-bin/token",
            format!(
                "{base}grant_type=client_credential&appid={c}&secret=component-secret-for-tests-000001"
            ),
            61024,
        ),
    ];
    for (name, what, path, code) in &cases {
        let a = t.get(path).await;
        snap_wechat(&t, name, what, &a, *code);
    }
    let a = t
        .post("/cgi-bin/stable_token", "grant_type=client_credential")
        .await;
    snap_wechat(
        &t,
        "wechat_stable_token_data_format_error",
        "a form body on /cgi-bin/stable_token (JSON expected)",
        &a,
        47001,
    );
}

/// Codes datacube answers only when told to (`--faults`, `/admin/faults`).
#[tokio::test]
async fn wechat_injected_faults() {
    let t = spawn_app().await;
    let token = t.token().await;
    let set = send(
        &t,
        "PUT",
        "/admin/faults",
        &json!({"rules": "getusersummary:-1@first1,getusercumulate:45011@first1,getuserread:61503@first1"})
            .to_string(),
        true,
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.body);
    let cases = [
        ("wechat_system_error", "getusersummary", -1),
        ("wechat_minute_quota_reached", "getusercumulate", 45011),
        ("wechat_data_not_ready", "getuserread", 61503),
    ];
    for (name, endpoint, code) in cases {
        let a = t
            .datacube(endpoint, &token, "2021-09-01", "2021-09-03")
            .await;
        snap_wechat(&t, name, &format!("fault {endpoint}:{code}"), &a, code);
    }
}

#[tokio::test]
async fn wechat_suffix_styles() {
    let t = spawn_app_with(|c| c.suffix = datacube_api::SuffixStyle::CommaRid).await;
    let a = t.post("/datacube/getusersummary", RANGE).await;
    snap_wechat(
        &t,
        "wechat_suffix_comma_rid",
        "--errmsg-suffix comma-rid",
        &a,
        41001,
    );
    let t = spawn_app_with(|c| c.suffix = datacube_api::SuffixStyle::None).await;
    let a = t.post("/datacube/getusersummary", RANGE).await;
    assert_eq!(a.errcode(), 41001);
    snap("wechat_suffix_none", "--errmsg-suffix none", &a);
}

#[tokio::test]
async fn wechat_body_too_large() {
    let t = spawn_app_with(|c| c.limits.body_limit = 64).await;
    let token = t.token().await;
    let a = t
        .post(
            &format!("/datacube/getusersummary?access_token={token}"),
            &format!(
                r#"{{"begin_date":"2021-09-01","end_date":"2021-09-07","pad":"{}"}}"#,
                "x".repeat(100)
            ),
        )
        .await;
    snap_wechat(
        &t,
        "wechat_body_too_large",
        "a datacube body past the body limit: 61500, and the connection closed",
        &a,
        61500,
    );
}

/// datacube's own paths answer a method they do not take as HTTP does.
#[tokio::test]
async fn own_path_method_not_allowed() {
    let t = spawn_app().await;
    let a = send(&t, "POST", "/healthz", "", false).await;
    assert_eq!(a.status, 405);
    snap("own_path_method_not_allowed", "POST /healthz", &a);
}

/// The third-party platform APIs (`/cgi-bin/component/…`) and a component's authorizer
/// tokens on the datacube endpoints.
#[tokio::test]
async fn wechat_component_errors() {
    const C: &str = "wxc0000000000000c1";
    const C_SECRET: &str = "component-secret-for-tests-000001";
    let t = spawn_app().await;
    t.set_clock("2026-01-10T09:00:00+08:00").await;
    let added = t
        .admin_post(
            "/admin/components",
            &json!({"appid": C, "secret": C_SECRET, "token": "componenttoken",
                    "aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"})
            .to_string(),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.body);
    let pushed = t
        .admin_post(&format!("/admin/components/{C}/ticket"), "")
        .await;
    assert_eq!(pushed.status, 200, "{}", pushed.body);
    let first_ticket = pushed.json()["ticket"].as_str().unwrap().to_owned();
    let token_api = "/cgi-bin/component/api_component_token";
    let ask = |body: serde_json::Value| {
        let t = &t;
        async move { t.post(token_api, &body.to_string()).await }
    };
    let a = ask(json!({"component_appsecret": C_SECRET, "component_verify_ticket": first_ticket}))
        .await;
    snap_wechat(
        &t,
        "wechat_component_appid_missing",
        "api_component_token without component_appid",
        &a,
        41018,
    );
    let a = ask(
        json!({"component_appid": APPID, "component_appsecret": SECRET,
                       "component_verify_ticket": first_ticket}),
    )
    .await;
    snap_wechat(
        &t,
        "wechat_component_invalid",
        "api_component_token with an account's appid",
        &a,
        61011,
    );
    let a = ask(
        json!({"component_appid": C, "component_appsecret": C_SECRET,
                       "component_verify_ticket": "ticket@@@nope"}),
    )
    .await;
    snap_wechat(
        &t,
        "wechat_component_ticket_invalid",
        "an unknown component_verify_ticket",
        &a,
        61006,
    );
    let a = ask(
        json!({"component_appid": C, "component_appsecret": C_SECRET,
                       "component_verify_ticket": first_ticket}),
    )
    .await;
    let ctoken = a.json()["component_access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", a.body))
        .to_owned();
    let call = |name: &str, token: &str, body: serde_json::Value| {
        let t = &t;
        let path = format!("/cgi-bin/component/{name}?component_access_token={token}");
        async move { t.post(&path, &body.to_string()).await }
    };
    let account_token = t.token().await;
    let a = call(
        "api_create_preauthcode",
        &account_token,
        json!({"component_appid": C}),
    )
    .await;
    snap_wechat(
        &t,
        "wechat_component_token_required",
        "an account's token on a component API",
        &a,
        61014,
    );
    let a = call(
        "api_query_auth",
        &ctoken,
        json!({"component_appid": C, "authorization_code": "queryauthcode@@@nope"}),
    )
    .await;
    snap_wechat(
        &t,
        "wechat_component_code_invalid",
        "an unknown authorization_code",
        &a,
        61009,
    );
    let g = t
        .admin_post(
            &format!("/admin/components/{C}/grants"),
            &json!({"authorizer_appid": APPID, "func_ids": [2]}).to_string(),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.body);
    let code = g.json()["authorization_code"].as_str().unwrap().to_owned();
    let q = json!({"component_appid": C, "authorization_code": code});
    let a = call("api_query_auth", &ctoken, q.clone()).await;
    let info = &a.json()["authorization_info"];
    let authorizer_token = info["authorizer_access_token"].as_str().unwrap().to_owned();
    let a = call("api_query_auth", &ctoken, q).await;
    snap_wechat(
        &t,
        "wechat_component_code_expired",
        "an authorization_code used twice",
        &a,
        61010,
    );
    let a = call(
        "api_authorizer_token",
        &ctoken,
        json!({"component_appid": C, "authorizer_appid": "wx0000000000000099",
               "authorizer_refresh_token": "x"}),
    )
    .await;
    snap_wechat(
        &t,
        "wechat_component_not_authorized",
        "api_authorizer_token for an account that never authorized",
        &a,
        61003,
    );
    let a = call(
        "api_authorizer_token",
        &ctoken,
        json!({"component_appid": C, "authorizer_appid": APPID,
               "authorizer_refresh_token": "refreshtoken@@@nope"}),
    )
    .await;
    snap_wechat(
        &t,
        "wechat_component_refresh_token_invalid",
        "a wrong authorizer_refresh_token",
        &a,
        61023,
    );
    let a = t
        .datacube(
            "getarticleread",
            &authorizer_token,
            "2026-01-05",
            "2026-01-05",
        )
        .await;
    snap_wechat(
        &t,
        "wechat_component_api_unauthorized",
        "an authorizer token on an endpoint of a permission set not granted",
        &a,
        61007,
    );
    // Twelve hours after its push, a ticket is no longer good.
    t.set_clock("2026-01-10T21:00:00+08:00").await;
    let a = ask(
        json!({"component_appid": C, "component_appsecret": C_SECRET,
                       "component_verify_ticket": first_ticket}),
    )
    .await;
    snap_wechat(
        &t,
        "wechat_component_ticket_expired",
        "a component_verify_ticket older than 12 hours",
        &a,
        61005,
    );
}

// ---- the admin API ----

/// Snapshots an admin answer as `name`, checking its status first.
fn snap_admin(name: &str, what: &str, a: &Answer, status: u16) {
    assert_eq!(a.status, status, "{name}: {}", a.body);
    snap(name, what, a);
}

#[tokio::test]
async fn admin_token_errors() {
    let t = spawn_app().await;
    let a = t.get("/admin/accounts").await;
    snap_admin(
        "admin_token_missing",
        "GET /admin/accounts without Authorization",
        &a,
        401,
    );
    let a = Answer::of(
        t.client
            .get(t.url("/admin/accounts"))
            .bearer_auth("not-the-admin-token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    snap_admin(
        "admin_token_wrong",
        "GET /admin/accounts with a wrong admin token",
        &a,
        401,
    );
    assert!(!a.body.contains(ADMIN) && !a.body.contains("not-the-admin-token"));
    let a = Answer::of(
        t.client
            .get(t.url("/admin/accounts"))
            .basic_auth("admin", Some(ADMIN))
            .send()
            .await
            .unwrap(),
    )
    .await;
    snap_admin(
        "admin_token_not_bearer",
        "GET /admin/accounts with Basic authentication",
        &a,
        401,
    );
    // Without an admin token configured, the whole admin API answers 404.
    let dir = tempfile::tempdir().unwrap();
    let db_url = datacube_store::testing::fresh_database(dir.path(), "test");
    let t = spawn_on(&db_url, |c| c.admin_token = None).await;
    let a = send(&t, "GET", "/admin/accounts", "", true).await;
    snap_admin(
        "admin_disabled",
        "the admin API of a server started without --admin-token",
        &a,
        404,
    );
}

#[tokio::test]
async fn admin_routing_errors() {
    let t = spawn_app().await;
    // An unknown admin path is the admin API's 404 (its query not named), not WeChat's 40066.
    let a = send(&t, "GET", "/admin/nothing-here?appid=wx1", "", true).await;
    snap_admin("admin_unknown_path", "GET /admin/nothing-here", &a, 404);
    let a = send(&t, "PATCH", "/admin/accounts", "", true).await;
    snap_admin("admin_method_not_allowed", "PATCH /admin/accounts", &a, 405);
    // Without the admin token, neither says what the admin API has.
    for (method, path) in [("GET", "/admin/nothing-here"), ("PATCH", "/admin/accounts")] {
        let a = send(&t, method, path, "", false).await;
        assert_eq!(a.status, 401, "{method} {path}: {}", a.body);
    }
    // Every other unknown path is still WeChat's.
    let a = send(&t, "GET", "/administrator", "", true).await;
    assert_wechat_error(&a, 40066, t.unix());
}

#[tokio::test]
async fn admin_body_errors() {
    let t = spawn_app_with(|c| c.limits.admin_body_limit = 128).await;
    let cases = [
        (
            "admin_json_syntax_error",
            "POST /admin/accounts with a body that is not JSON",
            "{appid: wx1}",
        ),
        (
            "admin_json_array",
            "POST /admin/accounts with a JSON array",
            r#"["wx1", "s3cret"]"#,
        ),
        (
            "admin_json_unknown_field",
            "POST /admin/accounts with a field no account has",
            r#"{"appid":"wx1","secret":"s3cret","name":"x"}"#,
        ),
        (
            "admin_json_missing_field",
            "POST /admin/accounts without a secret",
            r#"{"appid":"wx1"}"#,
        ),
        (
            "admin_json_wrong_type",
            "POST /admin/accounts with verified as a string",
            r#"{"appid":"wx1","secret":"s3cret","verified":"yes"}"#,
        ),
    ];
    for (name, what, body) in cases {
        let a = t.admin_post("/admin/accounts", body).await;
        snap_admin(name, what, &a, 400);
    }
    let a = t
        .admin_post(
            "/admin/accounts",
            &format!(r#"{{"pad":"{}"}}"#, "x".repeat(200)),
        )
        .await;
    snap_admin(
        "admin_body_too_large",
        "a body past --admin-body-limit",
        &a,
        413,
    );
}

#[tokio::test]
async fn admin_account_errors() {
    let t = spawn_app().await;
    let cases = [
        (
            "admin_account_bad_appid",
            "an appid with a space",
            json!({"appid": "wx 1", "secret": "s3cret"}),
            400,
        ),
        (
            "admin_account_empty_secret",
            "an empty secret",
            json!({"appid": "wx2", "secret": ""}),
            400,
        ),
        (
            "admin_account_bad_secret",
            "a secret with a space",
            json!({"appid": "wx2", "secret": "my secret"}),
            400,
        ),
        (
            "admin_account_exists",
            "an appid already an account",
            json!({"appid": APPID, "secret": SECRET}),
            409,
        ),
    ];
    for (name, what, body, status) in cases {
        let a = t.admin_post("/admin/accounts", &body.to_string()).await;
        snap_admin(name, what, &a, status);
        assert!(
            !a.body.contains("s3cret") && !a.body.contains(SECRET),
            "{}",
            a.body
        );
    }
    let a = send(&t, "DELETE", "/admin/accounts/wxnosuchaccount00", "", true).await;
    snap_admin(
        "admin_account_remove_unknown",
        "DELETE of an appid that is no account",
        &a,
        404,
    );
}

#[tokio::test]
async fn admin_import_errors() {
    let t = spawn_app().await;
    let row = r#"{"list":[{"ref_date":"2021-09-01","user_source":0,"cumulate_user":1}]}"#;
    let cases = [
        (
            "admin_import_appid_missing",
            "no appid",
            "/admin/import?endpoint=getusercumulate".to_owned(),
            row,
            400,
        ),
        (
            "admin_import_bad_appid",
            "an appid that cannot be one",
            "/admin/import?appid=wx%201&endpoint=getusercumulate".to_owned(),
            row,
            400,
        ),
        (
            "admin_import_endpoint_missing",
            "no endpoint",
            format!("/admin/import?appid={APPID}"),
            row,
            400,
        ),
        (
            "admin_import_unknown_endpoint",
            "an endpoint that is none",
            format!("/admin/import?appid={APPID}&endpoint=getnothing"),
            row,
            400,
        ),
        (
            "admin_import_bad_strict",
            "strict=maybe",
            format!("/admin/import?appid={APPID}&endpoint=getusercumulate&strict=maybe"),
            row,
            400,
        ),
        (
            "admin_import_row_wrong_type",
            "a row whose cumulate_user is a string",
            format!("/admin/import?appid={APPID}&endpoint=getusercumulate"),
            r#"{"list":[{"ref_date":"2021-09-01","user_source":0,"cumulate_user":"1"}]}"#,
            422,
        ),
        (
            "admin_import_no_list",
            "a body without list",
            format!("/admin/import?appid={APPID}&endpoint=getusercumulate"),
            r#"{"rows":[]}"#,
            422,
        ),
        (
            "admin_import_strict_new_field",
            "strict and a field no shape lists",
            format!("/admin/import?appid={APPID}&endpoint=getusercumulate&strict=true"),
            r#"{"list":[{"ref_date":"2021-09-01","user_source":0,"cumulate_user":1,"x":2}]}"#,
            422,
        ),
    ];
    for (name, what, path, body, status) in cases {
        let a = t.admin_post(&path, body).await;
        snap_admin(name, what, &a, status);
    }
}

#[tokio::test]
async fn admin_control_errors() {
    let t = spawn_app().await;
    let cases = [
        (
            "admin_sync_runs_bad_limit",
            "GET /admin/sync/runs?limit=0",
            "GET",
            "/admin/sync/runs?limit=0",
            "".to_owned(),
            400,
        ),
        (
            "admin_datacube_unknown_endpoint",
            "POST /admin/datacube/getnothing",
            "POST",
            "/admin/datacube/getnothing?appid=wx1",
            RANGE.to_owned(),
            404,
        ),
        (
            "admin_datacube_appid_missing",
            "POST /admin/datacube/getusersummary without appid",
            "POST",
            "/admin/datacube/getusersummary",
            RANGE.to_owned(),
            400,
        ),
        (
            "admin_datacube_unknown_account",
            "POST /admin/datacube/getusersummary for no account",
            "POST",
            "/admin/datacube/getusersummary?appid=wxnosuchaccount00",
            RANGE.to_owned(),
            404,
        ),
        (
            "admin_clock_bad_time",
            "POST /admin/clock with a date, not an instant",
            "POST",
            "/admin/clock",
            json!({"now": "2021-09-10"}).to_string(),
            400,
        ),
        (
            "admin_reset_unknown_field",
            "POST /admin/reset with a field it does not take",
            "POST",
            "/admin/reset",
            json!({"everything": true}).to_string(),
            400,
        ),
        (
            "admin_faults_bad_rule",
            "PUT /admin/faults with a rule that is not one",
            "PUT",
            "/admin/faults",
            json!({"rules": "getusersummary:12345@first1"}).to_string(),
            400,
        ),
        (
            "admin_faults_seed_on_post",
            "POST /admin/faults with a seed",
            "POST",
            "/admin/faults",
            json!({"rules": "", "seed": 7}).to_string(),
            400,
        ),
        (
            "admin_sync_run_no_mirror",
            "POST /admin/sync/run on a server without --mirror",
            "POST",
            "/admin/sync/run",
            "".to_owned(),
            404,
        ),
        (
            "admin_sync_run_bad_appid",
            "POST /admin/sync/run with an appid that cannot be one",
            "POST",
            "/admin/sync/run",
            json!({"appid": "wx 1"}).to_string(),
            400,
        ),
        (
            "admin_sync_mirror_no_mirror",
            "GET /admin/sync/mirror on a server without --mirror",
            "GET",
            "/admin/sync/mirror",
            "".to_owned(),
            404,
        ),
    ];
    for (name, what, method, path, body, status) in cases {
        let a = send(&t, method, path, &body, true).await;
        snap_admin(name, what, &a, status);
    }
    // Bytes that are not UTF-8 (reqwest sends them as they are).
    let a = Answer::of(
        t.client
            .post(t.url("/admin/events"))
            .bearer_auth(ADMIN)
            .body(vec![b'{', 0xff, b'}'])
            .send()
            .await
            .unwrap(),
    )
    .await;
    snap_admin(
        "admin_events_invalid_utf8",
        "POST /admin/events with bytes that are not UTF-8",
        &a,
        400,
    );
}

#[tokio::test]
async fn admin_component_errors() {
    const C: &str = "wxc0000000000000c1";
    const AES: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    let t = spawn_app().await;
    let component = |appid: &str, token: &str, aes_key: &str, event_url: Option<&str>| {
        json!({"appid": appid, "secret": "component-secret-for-tests-000001",
               "token": token, "aes_key": aes_key, "event_url": event_url})
        .to_string()
    };
    let a = t
        .admin_post(
            "/admin/components",
            &component(C, "componenttoken", AES, None),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let wrong_key = "a-wrong-aes-key-that-must-not-be-shown";
    let cases = [
        (
            "admin_component_bad_token",
            "a push token of 2 characters",
            component("wxc2", "ab", AES, None),
            400,
        ),
        (
            "admin_component_bad_aes_key",
            "an EncodingAESKey that is not 43 letters and digits",
            component("wxc2", "componenttoken", wrong_key, None),
            400,
        ),
        (
            "admin_component_bad_event_url",
            "an event URL that is not http(s)",
            component(
                "wxc2",
                "componenttoken",
                AES,
                Some("ftp://example.invalid/"),
            ),
            400,
        ),
        (
            "admin_component_exists",
            "a component added twice",
            component(C, "componenttoken", AES, None),
            409,
        ),
        (
            "admin_component_appid_is_an_account",
            "a component with an account's appid",
            component(APPID, "componenttoken", AES, None),
            409,
        ),
    ];
    for (name, what, body, status) in cases {
        let a = t.admin_post("/admin/components", &body).await;
        snap_admin(name, what, &a, status);
        assert!(
            !a.body.contains(wrong_key),
            "{name} shows the key: {}",
            a.body
        );
    }
    let a = t
        .admin_post(
            "/admin/accounts",
            &json!({"appid": C, "secret": "s3cret"}).to_string(),
        )
        .await;
    snap_admin(
        "admin_account_appid_is_a_component",
        "an account with a component's appid",
        &a,
        409,
    );
    let a = t
        .admin_post("/admin/components/wxnosuchcomponent/ticket", "")
        .await;
    snap_admin(
        "admin_component_unknown",
        "a ticket pushed for no component",
        &a,
        404,
    );
    let grants = format!("/admin/components/{C}/grants");
    let cases = [
        (
            "admin_grant_unknown_account",
            "a grant by an appid that is no account",
            json!({"authorizer_appid": "wxnosuchaccount00", "func_ids": [2]}),
            409,
        ),
        (
            "admin_grant_set_zero",
            "a grant of permission set 0",
            json!({"authorizer_appid": APPID, "func_ids": [0]}),
            400,
        ),
        (
            "admin_grant_bad_pre_auth_code",
            "a grant with an unknown pre_auth_code",
            json!({"authorizer_appid": APPID, "func_ids": [2], "pre_auth_code": "nope"}),
            409,
        ),
    ];
    for (name, what, body, status) in cases {
        let a = t.admin_post(&grants, &body.to_string()).await;
        snap_admin(name, what, &a, status);
    }
    let a = send(&t, "DELETE", &format!("{grants}/{APPID}"), "", true).await;
    snap_admin(
        "admin_revoke_not_authorized",
        "a revoke of an authorization never given",
        &a,
        404,
    );
}
