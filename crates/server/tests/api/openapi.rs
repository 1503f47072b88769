//! The API's description (`/openapi.json`): the committed `docs/openapi.json` is what the server
//! answers, every operation it lists is answered, and nothing beside them is.
//!
//! After a change of the API: `DATACUBE_BLESS=1 cargo test -p datacube-server --test api
//! openapi` writes the new description to `docs/openapi.json` (review the diff, commit it).

use std::path::PathBuf;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::*;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

#[tokio::test]
async fn the_served_description_is_the_committed_one() {
    let t = spawn_app().await;
    let served = t.get("/openapi.json").await;
    assert_eq!(served.status, 200);
    assert!(served.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert!(
        served.body == datacube_server::openapi::document_json(),
        "the description is not the same every time it is made"
    );
    let path = committed_path();
    if std::env::var_os("DATACUBE_BLESS").is_some() {
        std::fs::write(&path, &served.body).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == served.body,
        "docs/openapi.json is not what the server describes: after a change of the API, run \
         `DATACUBE_BLESS=1 cargo test -p datacube-server --test api openapi` and commit the file"
    );
    let doc: Value = serde_json::from_str(&served.body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}

/// `template` with its parameters filled in: a name the server knows where one is needed.
fn filled(template: &str) -> String {
    template
        .replace("{name}", "getusersummary")
        .replace("{appid}", "wx0000000000000000")
        .replace("{authorizer}", "wx0000000000000001")
}

fn operations(doc: &Value) -> Vec<(String, Method)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            found.push((path.clone(), method));
        }
    }
    found
}

/// Whether an answer is the server's "no such route": WeChat's 40066, the admin API's 404 for
/// a path under `/admin/` it does not have, or 405 for a method.
fn unknown_route(status: u16, body: &str) -> bool {
    let json = serde_json::from_str::<Value>(body);
    status == 405
        || (status == 200 && json.as_ref().is_ok_and(|v| v["errcode"] == 40066))
        || (status == 404
            && json.is_ok_and(|v| {
                v["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("no admin API at /admin/"))
            }))
}

async fn call(t: &TestApp, method: Method, path: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .request(method, t.url(path))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

#[tokio::test]
async fn every_operation_described_is_answered_and_nothing_else_is() {
    let t = spawn_app().await;
    let doc: Value = serde_json::from_str(&datacube_server::openapi::document_json()).unwrap();
    let ops = operations(&doc);
    // Every endpoint, token and component API, and every route of the router.
    assert!(ops.len() >= 21 + 2 + 7 + 20, "{} operations", ops.len());
    for endpoint in datacube_api::Endpoint::ALL {
        let path = format!("/datacube/{}", endpoint.name());
        assert!(ops.contains(&(path.clone(), Method::POST)), "{path}");
    }
    for (path, method) in &ops {
        let (status, body) = call(&t, method.clone(), &filled(path)).await;
        assert!(
            !unknown_route(status, &body),
            "{method} {path} is described but not answered: {status} {body}"
        );
    }
    // Methods not described: the router's paths refuse them, WeChat's answer them as WeChat
    // does (43002 for a POST-only API; `/cgi-bin/token` takes any method).
    let wechat = |path: &str| path.starts_with("/datacube/") || path.starts_with("/cgi-bin/");
    for path in doc["paths"].as_object().unwrap().keys() {
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            if ops.contains(&(path.clone(), method.clone())) {
                continue;
            }
            let (status, body) = call(&t, method.clone(), &filled(path)).await;
            if wechat(path) {
                // A WeChat error of the API (43002, or what comes before it in the order of
                // checks: a component API checks its token first), never 40066.
                let v: Value = serde_json::from_str(&body).unwrap();
                let code = v["errcode"].as_i64().unwrap_or(0);
                assert!(
                    (code != 0 && code != 40066) || path == "/cgi-bin/token",
                    "{method} {path}: {body}"
                );
            } else {
                assert!(
                    unknown_route(status, &body),
                    "{method} {path} is answered but not described: {status} {body}"
                );
            }
        }
        // Next to every path, nothing: no route answers a longer or other-case name.
        // (`{path}x` is another value of a path that ends in a parameter: described.)
        let longer = (!path.ends_with('}')).then(|| format!("{path}x"));
        for near in [longer, Some(format!("{path}/x")), Some(path.to_uppercase())]
            .into_iter()
            .flatten()
        {
            let near = filled(&near);
            if near == filled(path) {
                continue;
            }
            for method in [Method::GET, Method::POST] {
                let (status, body) = call(&t, method.clone(), &near).await;
                assert!(
                    unknown_route(status, &body),
                    "{method} {near} is answered but not described: {status} {body}"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_reference_page_and_its_files_are_served() {
    let t = spawn_app().await;
    let page = t.get("/docs").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("docs/swagger-ui-bundle.js"),
        "{}",
        page.body
    );
    for (path, kind) in [
        ("/docs/swagger-ui-bundle.js", "text/javascript"),
        ("/docs/swagger-ui.css", "text/css"),
        ("/docs/docs.js", "text/javascript"),
        ("/docs/docs.css", "text/css"),
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
        assert!(a.headers.contains_key("content-security-policy"), "{path}");
    }
    // The dashboard links to it.
    assert!(t.get("/").await.body.contains("href=\"docs\""));
}
