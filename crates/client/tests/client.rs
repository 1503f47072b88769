//! The client against a real `datacube serve` (in process, real HTTP on loopback): token
//! renewal at most once per call, quota errors, typed rows.

use std::sync::atomic::Ordering;

use datacube_api::clock::Clock;
use datacube_client::types::{GetUserCumulate, GetUserSummary};
use datacube_client::{Client, ClientConfig, ClientError};
use datacube_server::config::Config;
use datacube_server::faults::Faults;
use datacube_server::App;
use datacube_store::{AccountRecord, Store};
use jiff::civil::date;

const APPID: &str = "wx00000000000000c1";
const SECRET: &str = "client-test-secret";
const NOW: &str = "2024-05-10T09:00:00+08:00";

struct Server {
    base: String,
    app: App,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn server(faults: &str) -> Server {
    server_on(faults, NOW, date(2024, 5, 9)).await
}

/// A server whose clock says `now`, with 20 days of demo activity up to `last`.
async fn server_on(faults: &str, now: &str, last: jiff::civil::Date) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let url = datacube_store::testing::fresh_database(dir.path(), "c");
    let store = Store::open(&url).unwrap();
    store
        .add_account(AccountRecord {
            appid: APPID.into(),
            secret_hash: datacube_api::account::hash_secret(SECRET),
            verified: true,
            created_at: 0,
            incarnation: 0, // drawn by the store
        })
        .await
        .unwrap();
    datacube_server::demo::seed(&store, APPID, last, 20, 1, last)
        .await
        .unwrap();
    let config = Config {
        faults: Faults::parse(faults).unwrap(),
        ..Config::default()
    };
    let app = App::new(store, Clock::starting_at(now.parse().unwrap()), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(datacube_server::serve(listener, app.clone(), async move {
        let _ = stopped.await;
    }));
    Server {
        base,
        app,
        _dir: dir,
        _stop: stop,
    }
}

fn client(base: &str) -> Client {
    let mut config = ClientConfig::new(APPID, SECRET);
    config.base = base.to_owned();
    config.backoff = std::time::Duration::from_millis(5);
    Client::new(config).unwrap()
}

#[tokio::test]
async fn typed_rows_come_back() {
    let s = server("").await;
    let c = client(&s.base);
    let rows = c
        .datacube::<GetUserSummary>(date(2024, 5, 1), date(2024, 5, 7))
        .await
        .unwrap();
    assert!(rows
        .iter()
        .any(|r| r.user_source == 0 && r.ref_date == "2024-05-01"));
    let cumulate = c
        .datacube::<GetUserCumulate>(date(2024, 5, 1), date(2024, 5, 7))
        .await
        .unwrap();
    assert_eq!(cumulate.len(), 7);
    let totals = c
        .datacube::<datacube_client::types::GetArticleTotal>(date(2024, 5, 2), date(2024, 5, 2))
        .await
        .unwrap();
    let detail = &totals[0].details[0];
    assert_eq!(detail.stat_date, "2024-05-02");
    assert!(detail.counters.int_page_read_user > 0);
    assert!(detail
        .by_scene
        .contains_key("int_page_from_session_read_user"));
    assert_eq!(
        c.counters.token_calls.load(Ordering::Relaxed),
        1,
        "the token is cached"
    );
    assert_eq!(c.counters.calls.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn typed_rows_of_the_2025_endpoints_come_back() {
    use datacube_client::types::{
        GetArticleRead, GetArticleTotalDetail, GetBizSummary, JumpPositions,
    };
    let s = server_on("", "2026-01-10T09:00:00+08:00", date(2026, 1, 9)).await;
    let c = client(&s.base);
    let day = date(2026, 1, 5);
    let reads = c.datacube::<GetArticleRead>(day, day).await.unwrap();
    assert!(!reads.is_empty());
    for r in &reads {
        let all = &r.detail.read_user_source[0];
        assert_eq!(
            (all.scene_desc.as_str(), all.user_count),
            ("全部", r.detail.read_user)
        );
    }
    let biz = c
        .datacube::<GetBizSummary>(date(2025, 12, 21), date(2026, 1, 9))
        .await
        .unwrap();
    assert_eq!(biz.len(), 20, "a row a day");
    assert!(biz.iter().all(|b| b.detail.send_page_count.is_some()));
    let totals = c.datacube::<GetArticleTotalDetail>(day, day).await.unwrap();
    let last = totals[0].detail_list.last().unwrap();
    assert_eq!(
        last.stat_date, "2026-01-09",
        "snapshots up to the last ready day"
    );
    assert!(matches!(last.read_jump_position, Some(JumpPositions::List(ref j)) if !j.is_empty()));
    assert!(last.read_finish_rate.is_some_and(|r| r > 0.0 && r <= 1.0));
}

/// A token that stays invalid is renewed once, then the call fails: no refresh loop.
#[tokio::test]
async fn an_invalid_token_is_renewed_once_per_call_never_in_a_loop() {
    let s = server("*:40001@100%").await;
    let c = client(&s.base);
    let err = c
        .datacube_raw(
            datacube_api::Endpoint::GetUserSummary,
            date(2024, 5, 1),
            date(2024, 5, 1),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Api { code: 40001, .. }), "{err}");
    assert_eq!(c.counters.token_calls.load(Ordering::Relaxed), 2);
    assert_eq!(c.counters.retries.load(Ordering::Relaxed), 1);
}

/// A token superseded elsewhere (another client took a new one, and the overlap passed) is
/// replaced transparently.
#[tokio::test]
async fn a_superseded_token_is_replaced_and_the_call_succeeds() {
    let s = server("").await;
    let c = client(&s.base);
    let d = date(2024, 5, 1);
    c.datacube::<GetUserSummary>(d, d).await.unwrap();
    // Someone else takes a token; five minutes later the client's is superseded.
    let other = client(&s.base);
    other.access_token().await.unwrap();
    s.app
        .clock()
        .set(jiff::Timestamp::from_second(s.app.clock().unix() + 301).unwrap());
    c.datacube::<GetUserSummary>(d, d).await.unwrap();
    assert_eq!(c.counters.token_calls.load(Ordering::Relaxed), 2);
    assert_eq!(c.counters.retries.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn system_errors_are_retried_and_quota_errors_are_not() {
    let s = server("getusersummary:-1@30%,getusercumulate:45009@100%").await;
    let mut config = ClientConfig::new(APPID, SECRET);
    config.base = s.base.clone();
    config.backoff = std::time::Duration::from_millis(1);
    config.retries = 12;
    let c = Client::new(config).unwrap();
    let d = date(2024, 5, 1);
    // 60 calls at a 30% fault rate: the chance that none is retried is 0.7^60 ≈ 5e-10, and
    // the chance that one call sees 13 faults in a row is 60 × 0.3^13 ≈ 1e-5.
    for _ in 0..60 {
        c.datacube::<GetUserSummary>(d, d).await.unwrap();
    }
    assert!(c.counters.retries.load(Ordering::Relaxed) > 0);
    assert!(c.counters.calls.load(Ordering::Relaxed) >= 60);
    let err = c.datacube::<GetUserCumulate>(d, d).await.unwrap_err();
    assert!(matches!(err, ClientError::QuotaExhausted { .. }), "{err}");
    assert!(err.to_string().contains("resets at midnight"), "{err}");
}
