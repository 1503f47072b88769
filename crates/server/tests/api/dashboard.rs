//! The dashboard's files and the admin read it uses (`/admin/datacube/<name>?appid=`); the
//! page itself is driven in a browser by tests/dashboard.

use crate::helpers::*;

#[tokio::test]
async fn the_dashboard_and_its_files_are_served_from_the_binary() {
    let t = spawn_app().await;
    let page = t.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.body.contains("/dashboard/app.js"), "{}", page.body);
    for (path, kind) in [
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
        ("/dashboard/echarts.min.js", "text/javascript"),
    ] {
        let a = t.get(path).await;
        assert_eq!(a.status, 200, "{path}");
        assert!(
            a.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        assert!(a.body.len() > 1000, "{path}: {} bytes", a.body.len());
    }
    let meta = t.get("/dashboard/meta.json").await.json();
    assert_eq!(meta["last_ready"], "2021-09-09");
    assert_eq!(meta["admin"], true);
    let endpoints = meta["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), datacube_api::Endpoint::ALL.len());
    let span = |name: &str| {
        endpoints.iter().find(|e| e["name"] == name).unwrap()["span"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(span("getusersummary"), 7);
    assert_eq!(span("getupstreammsghour"), 1);
    assert_eq!(span("getinterfacesummary"), 30);
    assert_eq!(span("getbizsummary"), 30);
    assert_eq!(span("getarticletotaldetail"), 1);
    assert!(
        endpoints.iter().all(|e| e["offline"] == false),
        "both generations served"
    );
    // Other unknown paths are still WeChat's 40066.
    assert_eq!(t.get("/dashboard/nothing").await.errcode(), 40066);
    assert_eq!(t.get("/index.html").await.errcode(), 40066);
}

#[tokio::test]
async fn the_admin_reads_any_account_as_the_account_would_without_its_quota() {
    let t = spawn_app_with(|c| c.api_daily_quota = Some(2)).await;
    let body = r#"{"list":[{"ref_date":"2021-09-01","user_source":0,"new_user":3,"cancel_user":5},{"ref_date":"2021-09-01","user_source":30,"new_user":149,"cancel_user":1}]}"#;
    assert_eq!(t.import("getusersummary", body).await.status, 200);
    let range = r#"{"begin_date":"2021-09-01","end_date":"2021-09-02"}"#;
    let path = format!("/admin/datacube/getusersummary?appid={APPID}");
    for _ in 0..5 {
        let a = t.admin_post(&path, range).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body, body, "the account's own bytes");
    }
    // The account's quota was not taken by the administrator's reads.
    let token = t.token().await;
    for _ in 0..2 {
        let a = t
            .datacube("getusersummary", &token, "2021-09-01", "2021-09-02")
            .await;
        assert_eq!(a.body, body);
    }
    let a = t
        .datacube("getusersummary", &token, "2021-09-01", "2021-09-02")
        .await;
    assert_eq!(a.errcode(), 45009, "{}", a.body);
    // WeChat's date checks apply as for the account: more than 7 days is 61501.
    let long = t
        .admin_post(
            &path,
            r#"{"begin_date":"2021-08-01","end_date":"2021-09-02"}"#,
        )
        .await;
    assert_eq!(long.errcode(), 61501, "{}", long.body);
}

#[tokio::test]
async fn admin_reads_name_what_is_wrong() {
    let t = spawn_app().await;
    let range = r#"{"begin_date":"2021-09-01","end_date":"2021-09-02"}"#;
    let a = t
        .post(
            &format!("/admin/datacube/getusersummary?appid={APPID}"),
            range,
        )
        .await;
    assert_eq!(a.status, 401);
    assert!(a.body.contains("Authorization"), "{}", a.body);
    let a = t.admin_post("/admin/datacube/getusersummary", range).await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("appid"), "{}", a.body);
    let a = t
        .admin_post("/admin/datacube/getnothing?appid=x", range)
        .await;
    assert_eq!(a.status, 404);
    assert!(a.body.contains("unknown endpoint"), "{}", a.body);
    let a = t
        .admin_post(
            "/admin/datacube/getusersummary?appid=wxnobody0000000001",
            range,
        )
        .await;
    assert_eq!(a.status, 404);
    assert!(
        a.body.contains("no account wxnobody0000000001"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn the_page_knows_which_endpoints_are_retired() {
    let t = spawn_app_with(|c| c.retire_legacy_articles = true).await;
    let meta = t.get("/dashboard/meta.json").await.json();
    let offline: Vec<&str> = meta["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["offline"] == true)
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        offline,
        [
            "getarticlesummary",
            "getarticletotal",
            "getuserread",
            "getuserreadhour",
            "getusershare",
            "getusersharehour"
        ]
    );
}

/// Every dashboard answer limits what the page may do: its own scripts only, no framing, no
/// referrer, no sniffing. The WeChat API's answers keep WeChat's headers.
#[tokio::test]
async fn the_dashboard_is_served_with_security_headers() {
    let t = spawn_app().await;
    for path in [
        "/",
        "/dashboard/app.js",
        "/dashboard/app.css",
        "/dashboard/echarts.min.js",
        "/dashboard/meta.json",
    ] {
        let a = t.get(path).await;
        assert_eq!(a.status, 200, "{path}");
        let csp = a.headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "connect-src 'self'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-eval"), "{path}");
        assert_eq!(a.headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(a.headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(a.headers["referrer-policy"], "no-referrer", "{path}");
    }
    let token = t.token().await;
    let api = t
        .datacube("getusersummary", &token, "2021-09-01", "2021-09-01")
        .await;
    assert!(!api.headers.contains_key("content-security-policy"));
}
