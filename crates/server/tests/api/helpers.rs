//! `spawn_app()` and typed helpers for the calls tests make.

use std::net::SocketAddr;

use datacube_api::clock::Clock;
use datacube_server::config::Config;
use datacube_server::App;
use datacube_store::Store;
use serde_json::Value;
use tokio::sync::oneshot;

pub const APPID: &str = "wx1234567890abcdef";
pub const SECRET: &str = "0123456789abcdef0123456789abcdef";
pub const ADMIN: &str = "admin-token-for-tests";
/// 2021-09-10 09:00 China time: 2021-09-09 is ready.
pub const NOW: &str = "2021-09-10T09:00:00+08:00";

pub struct TestApp {
    pub addr: SocketAddr,
    pub app: App,
    pub client: reqwest::Client,
    pub db_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    pub fn errcode(&self) -> i64 {
        self.json()["errcode"].as_i64().unwrap_or(0)
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db_url = datacube_store::testing::fresh_database(dir.path(), "test");
    let mut app = spawn_on(&db_url, configure).await;
    app._dir = Some(dir);
    app.add_account(APPID, SECRET, true).await;
    app
}

/// A server that holds nothing in memory (no response cache, no statistics held): every answer
/// read from the database, to compare the others with.
pub async fn spawn_holding_nothing() -> TestApp {
    spawn_app_with(|c| {
        c.response_cache = 0;
        c.stats_memory = 0;
    })
    .await
}

/// A server over an existing database (for restarts).
pub async fn spawn_on(db_url: &str, configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_on_at(db_url, NOW.parse().unwrap(), configure).await
}

/// [`spawn_on`] with the clock at `now` (another instance's "now", say).
pub async fn spawn_on_at(
    db_url: &str,
    now: jiff::Timestamp,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let store = Store::open(db_url).unwrap();
    let mut config = Config {
        admin_token: Some(ADMIN.into()),
        ..Config::default()
    };
    configure(&mut config);
    let clock = Clock::starting_at(now);
    let app = App::new(store, clock, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(datacube_server::serve(listener, app.clone(), async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        app,
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
        db_url: db_url.to_owned(),
        shutdown: Some(tx),
        handle: Some(handle),
        _dir: None,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        self._dir.take()
    }

    async fn answer(resp: reqwest::Response) -> Answer {
        Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        Self::answer(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: &str) -> Answer {
        Self::answer(
            self.client
                .post(self.url(path))
                .body(body.to_owned())
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn admin_post(&self, path: &str, body: &str) -> Answer {
        Self::answer(
            self.client
                .post(self.url(path))
                .bearer_auth(ADMIN)
                .body(body.to_owned())
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn add_account(&self, appid: &str, secret: &str, verified: bool) {
        let a = self
            .admin_post(
                "/admin/accounts",
                &serde_json::json!({"appid": appid, "secret": secret, "verified": verified})
                    .to_string(),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }

    pub async fn set_clock(&self, now: &str) {
        let a = self
            .admin_post(
                "/admin/clock",
                &serde_json::json!({ "now": now }).to_string(),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }

    pub async fn token_for(&self, appid: &str, secret: &str) -> String {
        let a = self
            .get(&format!(
                "/cgi-bin/token?grant_type=client_credential&appid={appid}&secret={secret}"
            ))
            .await;
        a.json()["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {}", a.body))
            .to_owned()
    }

    pub async fn token(&self) -> String {
        self.token_for(APPID, SECRET).await
    }

    pub async fn datacube(&self, name: &str, token: &str, begin: &str, end: &str) -> Answer {
        self.post(
            &format!("/datacube/{name}?access_token={token}"),
            &format!(r#"{{"begin_date":"{begin}","end_date":"{end}"}}"#),
        )
        .await
    }

    pub async fn import(&self, endpoint: &str, body: &str) -> Answer {
        self.admin_post(
            &format!("/admin/import?appid={APPID}&endpoint={endpoint}"),
            body,
        )
        .await
    }

    pub fn unix(&self) -> i64 {
        self.app.clock().unix()
    }
}

/// Checks the whole WeChat error envelope and returns the errmsg.
pub fn assert_wechat_error(a: &Answer, code: i64, now_unix: i64) -> String {
    assert_eq!(
        a.status, 200,
        "WeChat answers errors with HTTP 200: {}",
        a.body
    );
    assert_eq!(
        a.headers["content-type"], "application/json; encoding=utf-8",
        "{}",
        a.body
    );
    assert_eq!(
        a.headers["content-length"].to_str().unwrap(),
        a.body.len().to_string()
    );
    assert!(!a.body.ends_with('\n'));
    let v = a.json();
    assert_eq!(v["errcode"].as_i64(), Some(code), "{}", a.body);
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 2, "{}", a.body);
    assert!(
        a.body
            .starts_with(&format!("{{\"errcode\":{code},\"errmsg\":\"")),
        "errcode comes first, compact: {}",
        a.body
    );
    let msg = v["errmsg"].as_str().unwrap();
    let (text, rid) = msg.rsplit_once(" rid: ").expect("rid suffix");
    let groups: Vec<&str> = rid.split('-').collect();
    assert_eq!(groups.len(), 3, "{msg}");
    for g in &groups {
        assert!(
            g.len() == 8
                && g.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{msg}"
        );
    }
    let t = i64::from_str_radix(groups[0], 16).unwrap();
    assert!(
        (t - now_unix).abs() <= 2,
        "rid time {t} vs clock {now_unix}"
    );
    assert_eq!(a.headers["logicret"].to_str().unwrap(), code.to_string());
    text.to_owned()
}
