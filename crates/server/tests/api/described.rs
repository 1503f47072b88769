//! The admin API held to its description (issue 29): what schemathesis found where the server
//! and `/openapi.json` disagreed — each answered now as the description says.

use serde_json::json;

use crate::helpers::*;

/// serde's derived readers take an array of a struct's fields: `[]` was a struct of defaults.
#[tokio::test]
async fn an_admin_body_is_a_json_object_not_an_array() {
    let t = spawn_app().await;
    for (path, body) in [
        ("/admin/faults", "[]"),
        ("/admin/clock", r#"["2026-01-01T00:00:00Z"]"#),
        ("/admin/accounts", r#"["wx0000000000000001","secret",true]"#),
        ("/admin/reset", "[false,false,false]"),
    ] {
        let a = t.admin_post(path, body).await;
        assert_eq!(a.status, 400, "{path} {body}: {}", a.body);
        assert!(
            a.json()["error"].as_str().unwrap().contains("JSON object"),
            "{}",
            a.body
        );
    }
    // `null` for a reset's options is none of them.
    let a = t.admin_post("/admin/reset", "null").await;
    assert_eq!(a.status, 200, "{}", a.body);
}

/// JSON Schema's integers include `7.0`; the range of the type holds.
#[tokio::test]
async fn integers_written_with_a_fraction_of_zero_are_integers() {
    let t = spawn_app().await;
    let put = |body: serde_json::Value| {
        let t = &t;
        async move {
            t.client
                .put(t.url("/admin/faults"))
                .bearer_auth(ADMIN)
                .body(body.to_string())
                .send()
                .await
                .unwrap()
        }
    };
    let a = put(json!({"rules": "", "seed": 7.0})).await;
    assert_eq!(a.status(), 200);
    assert_eq!(a.json::<serde_json::Value>().await.unwrap()["seed"], 7);
    for bad in [json!(7.5), json!(-1), json!(9_223_372_036_854_775_808_u64)] {
        let a = put(json!({"rules": "", "seed": bad})).await;
        assert_eq!(a.status(), 400, "{bad}");
    }
}

/// Only RFC 3339 moves the clock (jiff reads more ISO 8601 forms than the description allows).
#[tokio::test]
async fn the_clock_takes_rfc_3339_and_nothing_else() {
    let t = spawn_app().await;
    for (now, unix) in [
        ("2024-05-01T08:00:00+08:00", 1_714_521_600),
        ("2024-05-01t00:00:00z", 1_714_521_600),
        ("2024-05-01T00:00:00.1234567891Z", 1_714_521_600),
        ("2016-12-31T23:59:60Z", 1_483_228_799),
    ] {
        let a = t
            .admin_post("/admin/clock", &json!({ "now": now }).to_string())
            .await;
        assert_eq!(a.status, 200, "{now}: {}", a.body);
        assert_eq!(a.json()["unix"], unix, "{now}");
    }
    for now in [
        "2024-05-01 08:00:00Z",
        "2024-05-01T08:00:00+0800",
        "2024-05-01T08:00Z",
        "2024-05-01T08:00:00",
        "2024-05-01T24:00:00Z",
        "2024-05-01T08:00:00+08:00[Asia/Shanghai]",
        "20240501T080000Z",
        "2024-05-01T08:00:00.Z",
    ] {
        let a = t
            .admin_post("/admin/clock", &json!({ "now": now }).to_string())
            .await;
        assert_eq!(a.status, 400, "{now}: {}", a.body);
    }
}

/// A grant names an account in its body: one that does not exist is a conflict with what the
/// server holds (409), not the component of the path missing (404).
#[tokio::test]
async fn a_grant_for_an_account_not_added_is_a_conflict() {
    let t = spawn_app().await;
    let a = t
        .admin_post(
            "/admin/components",
            &json!({"appid": "wxc0000000000000c9", "secret": "component-secret-for-tests-000009",
                    "token": "componenttoken", "aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"})
            .to_string(),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let grant = |body: serde_json::Value| {
        let t = &t;
        async move {
            t.admin_post(
                "/admin/components/wxc0000000000000c9/grants",
                &body.to_string(),
            )
            .await
        }
    };
    let a = grant(json!({"authorizer_appid": "wxnobody0000000001", "func_ids": [1]})).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(
        a.body.contains("no account wxnobody0000000001"),
        "{}",
        a.body
    );
    let a =
        grant(json!({"authorizer_appid": APPID, "func_ids": [1], "pre_auth_code": "nope"})).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(a.body.contains("pre_auth_code refused"), "{}", a.body);
    // `2.0` is the integer 2.
    let a = grant(json!({"authorizer_appid": APPID, "func_ids": [1, 2.0]})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = t
        .admin_post(
            "/admin/components/wxnone00000000000/grants",
            &json!({"authorizer_appid": APPID, "func_ids": [1]}).to_string(),
        )
        .await;
    assert_eq!(a.status, 404, "{}", a.body);
}
