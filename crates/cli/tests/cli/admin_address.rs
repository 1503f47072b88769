//! `serve --admin-listen`: the admin API and the dashboard's admin sign-in on an address of
//! their own; the WeChat API's address answers admin paths as a path it does not know.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

const ADMIN: &str = "admin-address-token-0001";

/// The admin address `serve --admin-listen` announced (`http://…`).
fn admin_address(served: &Served) -> String {
    served
        .stdout
        .iter()
        .find_map(|l| l.strip_prefix("datacube admin API on "))
        .expect("serve announces the admin address")
        .trim_end_matches("/admin/")
        .to_owned()
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Option<String>, String) {
    let r = req.send().await.unwrap();
    let logic_ret = r
        .headers()
        .get("logicret")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.status().as_u16(), logic_ret, r.text().await.unwrap())
}

/// What an answer says, without WeChat's request id (which differs every time).
fn without_rid(body: &str) -> String {
    body.split(" rid: ").next().unwrap().to_owned()
}

#[tokio::test]
async fn the_admin_api_answers_on_its_own_address_only() {
    let (_dir, db) = db_with_account().await;
    let served = serve(
        &db,
        &["--admin-token", ADMIN, "--admin-listen", "127.0.0.1:0"],
    )
    .await;
    let (main, admin) = (served.base.clone(), admin_address(&served));
    assert_ne!(main, admin);
    let http = reqwest::Client::new();

    // The admin API, on its address, with its token.
    let (status, _, body) = send(
        http.get(format!("{admin}/admin/accounts"))
            .bearer_auth(ADMIN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(ACCOUNT.0), "{body}");
    let (status, _, body) = send(
        http.get(format!("{admin}/admin/accounts"))
            .bearer_auth("not-the-admin-token-at-all"),
    )
    .await;
    assert_eq!(status, 401, "{body}");

    // On the main address, admin paths are answered as any path it does not know: WeChat's
    // 40066, with or without the token, whatever the method.
    let (status, logic_ret, unknown) = send(http.get(format!("{main}/no/such/path"))).await;
    assert_eq!(
        (status, logic_ret.as_deref()),
        (200, Some("40066")),
        "{unknown}"
    );
    for req in [
        http.get(format!("{main}/admin/accounts"))
            .bearer_auth(ADMIN),
        http.get(format!("{main}/admin/accounts")),
        http.post(format!("{main}/admin/accounts"))
            .bearer_auth(ADMIN)
            .body(r#"{"appid":"wxnew0000000000001","secret":"s","verified":true}"#),
        http.post(format!("{main}/admin/reset"))
            .bearer_auth(ADMIN)
            .body("{}"),
        http.post(format!(
            "{main}/admin/datacube/getusersummary?appid={}",
            ACCOUNT.0
        ))
        .bearer_auth(ADMIN)
        .body(r#"{"begin_date":"2026-06-08","end_date":"2026-06-14"}"#),
    ] {
        let (status, logic_ret, body) = send(req).await;
        assert_eq!(
            (status, logic_ret.as_deref()),
            (200, Some("40066")),
            "{body}"
        );
        assert_eq!(without_rid(&body), without_rid(&unknown));
    }
    // Nothing was added through the main address.
    let (_, _, body) = send(
        http.get(format!("{admin}/admin/accounts"))
            .bearer_auth(ADMIN),
    )
    .await;
    assert!(!body.contains("wxnew0000000000001"), "{body}");
    // And counted as the unknown paths they were: `api="admin"` holds the admin address's
    // three requests only (the main address serves /metrics here: no --metrics-listen).
    let (_, _, metrics) = send(http.get(format!("{main}/metrics"))).await;
    let requests = |api: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("datacube_requests_total{") && l.contains(&format!("api=\"{api}\""))
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(requests("admin"), 3.0, "{metrics}");
    assert!(requests("other") >= 6.0, "{metrics}");

    // The WeChat API answers on the main address, as ever.
    let answer = served
        .datacube(ACCOUNT, "getusersummary", ("2026-06-08", "2026-06-14"))
        .await;
    assert!(answer.starts_with(r#"{"list":"#), "{answer}");

    // The dashboard: on the main address it offers no admin sign-in; on the admin address it
    // does, and the sign-in's calls (the accounts, then an account's statistics) answer there.
    for base in [&main, &admin] {
        let (status, _, page) = send(http.get(format!("{base}/"))).await;
        assert_eq!(status, 200);
        assert!(page.contains("admin-form"), "{page}");
    }
    let meta = |base: String| {
        let http = http.clone();
        async move {
            let (status, _, body) = send(http.get(format!("{base}/dashboard/meta.json"))).await;
            assert_eq!(status, 200, "{body}");
            serde_json::from_str::<serde_json::Value>(&body).unwrap()
        }
    };
    assert_eq!(meta(main.clone()).await["admin"], false);
    assert_eq!(meta(admin.clone()).await["admin"], true);
    let (status, _, body) = send(
        http.post(format!(
            "{admin}/admin/datacube/getusersummary?appid={}",
            ACCOUNT.0
        ))
        .bearer_auth(ADMIN)
        .body(r#"{"begin_date":"2026-06-08","end_date":"2026-06-14"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, answer, "the admin reads what the account reads");
    // The account's sign-in works on either address (the page reads the WeChat API where it
    // came from).
    access_token(&admin, ACCOUNT.0, ACCOUNT.1).await;
}

#[tokio::test]
async fn shutdown_lets_an_open_admin_request_finish_and_closes_the_admin_address() {
    let (_dir, db) = db_with_account().await;
    let mut served = serve(
        &db,
        &["--admin-token", ADMIN, "--admin-listen", "127.0.0.1:0"],
    )
    .await;
    let admin = admin_address(&served);
    let at = admin.trim_start_matches("http://").to_owned();
    // A request under way on the admin address: its body not all sent.
    let mut open = tokio::net::TcpStream::connect(&at).await.unwrap();
    open.write_all(
        format!(
            "POST /admin/reset HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\
             Content-Length: 2\r\n\r\n{{"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    kill(&served.child, "-TERM");
    // No new connection on either address, while the open request may still finish.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(&at).await.is_ok() {
        assert!(Instant::now() < deadline, "the admin address still accepts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let main = served.base.trim_start_matches("http://").to_owned();
    assert!(tokio::net::TcpStream::connect(&main).await.is_err());
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "still draining the open request"
    );
    open.write_all(b"}").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), open.read_to_end(&mut answer))
        .await
        .expect("answered, then closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let exit = tokio::time::timeout(Duration::from_secs(15), served.child.wait())
        .await
        .expect("exits once the open request is answered")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn an_admin_address_without_an_admin_token_is_a_usage_error() {
    let (_dir, db) = temp_db();
    let (code, out, err) = run(&db, &["serve", "--admin-listen", "127.0.0.1:0"], None).await;
    assert_eq!(code, 2, "{err}");
    assert_eq!(out, "");
    assert!(
        err.contains("--admin-listen") && err.contains("--admin-token"),
        "{err}"
    );
}
