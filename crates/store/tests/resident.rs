//! Statistics held in memory answer every range byte for byte as the database does: every
//! endpoint of an account with events on scattered days, quiet days stored after them and
//! quiet days answered without being stored, ranges over all of it and past both ends; an
//! account with live events not counted yet says so. On SQLite and PostgreSQL.

use datacube_api::date::add_days;
use datacube_api::Endpoint;
use datacube_store::ingest::{ingest_lines, parse_lines, KnownAccounts, Recompute};
use datacube_store::{AccountRecord, Settle, Store};
use jiff::civil::{date, Date};

const APPID: &str = "wxresident000000001";
const FIRST: Date = date(2024, 3, 1);

/// Events on 40 days over four months: follows from several sources, unfollows, messages,
/// replies, an article published, read, shared and favourited.
fn lines() -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    for i in 0..40i64 {
        let day = add_days(FIRST, i * 3 + i % 2);
        let at = |h: i64| format!("{day}T{h:02}:{:02}:00+08:00", (i * 7) % 60);
        let mut push = |s: String| lines.push((lines.len() + 1, s));
        for k in 0..(i % 5 + 1) {
            push(format!(
                r#"{{"type":"follow","appid":"{APPID}","time":"{}","openid":"o{i}_{k}","source":{}}}"#,
                at(8 + k),
                [0, 1, 30, 43, 17][(k % 5) as usize]
            ));
        }
        if i % 3 == 0 {
            push(format!(
                r#"{{"type":"unfollow","appid":"{APPID}","time":"{}","openid":"o{}_0"}}"#,
                at(20),
                i / 2
            ));
        }
        push(format!(
            r#"{{"type":"message","appid":"{APPID}","time":"{}","openid":"o{i}_0","msg_type":"text"}}"#,
            at(9)
        ));
        push(format!(
            r#"{{"type":"reply","appid":"{APPID}","time":"{}","cost_ms":{},"ok":{}}}"#,
            at(9),
            100 + i * 13,
            i % 7 != 0
        ));
        if i % 10 == 0 {
            push(format!(
                r#"{{"type":"publish","appid":"{APPID}","time":"{}","msgid":"22474836{i:02}_1","title":"t{i}"}}"#,
                at(7)
            ));
        }
        let msgid = format!("22474836{:02}_1", (i / 10) * 10);
        push(format!(
            r#"{{"type":"read","appid":"{APPID}","time":"{}","msgid":"{msgid}","openid":"o{i}_0","page":"int","scene":"session"}}"#,
            at(12)
        ));
        if i % 2 == 0 {
            push(format!(
                r#"{{"type":"share","appid":"{APPID}","time":"{}","msgid":"{msgid}","openid":"o{i}_0","scene":"friends","from":"session"}}"#,
                at(13)
            ));
            push(format!(
                r#"{{"type":"favorite","appid":"{APPID}","time":"{}","msgid":"{msgid}","openid":"o{i}_0"}}"#,
                at(14)
            ));
        }
    }
    lines
}

async fn filled(url: &str, yesterday: Date) -> Store {
    let store = Store::open(url).unwrap();
    store
        .add_account(AccountRecord {
            appid: APPID.into(),
            secret_hash: datacube_api::account::hash_secret("resident-secret"),
            verified: true,
            created_at: 0,
            incarnation: 0,
        })
        .await
        .unwrap();
    let (report, _) = ingest_lines(&store, &lines(), yesterday, &mut KnownAccounts::default())
        .await
        .unwrap();
    assert_eq!(report.rejected_total, 0, "{:?}", report.rejected);
    store.carry_forward(yesterday).await.unwrap();
    store
}

async fn compare(store: &Store, yesterday: Date) {
    let mut compared = 0;
    for endpoint in Endpoint::ALL {
        let held = store.resident(APPID, endpoint).await.unwrap();
        assert!(!held.pending_through(yesterday));
        // Ranges from before the first event to yesterday: every start every 17 days, every
        // length every 11 (the quiet days answered without being stored included).
        let mut begin = add_days(FIRST, -5);
        while begin <= yesterday {
            let mut end = begin;
            while end <= yesterday {
                let from_db = store
                    .list_body(APPID, endpoint, (begin, end), None)
                    .await
                    .unwrap();
                assert_eq!(
                    held.body((begin, end)),
                    from_db,
                    "{} {begin}..{end}",
                    endpoint.name()
                );
                compared += 1;
                end = add_days(end, 11);
            }
            begin = add_days(begin, 17);
        }
    }
    assert!(compared > 10_000, "{compared} ranges compared");
}

/// Runs `check` on a fresh database: SQLite, or PostgreSQL when the suite runs on it.
async fn each_backend(check: impl AsyncFn(String)) {
    let dir = tempfile::tempdir().unwrap();
    check(datacube_store::testing::fresh_database(
        dir.path(),
        "resident",
    ))
    .await;
}

/// Two years after the last event: 366 quiet days stored, the rest answered without rows.
#[tokio::test(flavor = "multi_thread")]
async fn held_statistics_answer_as_the_database_does() {
    each_backend(async |url: String| {
        let yesterday = date(2026, 6, 30);
        let store = filled(&url, yesterday).await;
        let summary = store
            .resident(APPID, Endpoint::GetUserCumulate)
            .await
            .unwrap();
        let (first, last) = summary.span().unwrap();
        assert!(
            first <= add_days(FIRST, 1) && last < add_days(yesterday, -300),
            "{first}..{last}"
        );
        compare(&store, yesterday).await;
    })
    .await;
}

/// A live event not counted yet: the held copy says so (the store answers, counting it).
#[tokio::test(flavor = "multi_thread")]
async fn pending_live_events_are_not_answered_from_memory() {
    each_backend(async |url: String| {
        let yesterday = date(2024, 8, 31);
        let store = filled(&url, yesterday).await;
        let range = (date(2024, 8, 20), date(2024, 8, 20));
        let before = store
            .list_body(APPID, Endpoint::GetUserSummary, range, None)
            .await
            .unwrap();
        let line = format!(
            r#"{{"type":"follow","appid":"{APPID}","time":"2024-08-20T10:00:00+08:00","openid":"late","source":0}}"#
        );
        let parsed = parse_lines(&store, &[(1, line)], &mut KnownAccounts::default())
            .await
            .unwrap();
        parsed.store(&store, Recompute::WhenRead).await.unwrap();
        let held = store.resident(APPID, Endpoint::GetUserSummary).await.unwrap();
        assert!(held.pending_through(yesterday));
        assert!(!held.pending_through(date(2024, 8, 19)));
        // Once counted, the copy read again answers as the database does, the follow in it.
        let settle = Settle {
            ready: yesterday,
            yesterday,
        };
        let settled = store
            .list_body(APPID, Endpoint::GetUserSummary, range, Some(settle))
            .await
            .unwrap();
        let held = store.resident(APPID, Endpoint::GetUserSummary).await.unwrap();
        assert!(!held.pending_through(yesterday));
        assert_eq!(held.body(range), settled);
        assert_ne!(settled, before, "the late follow is counted");
    })
    .await;
}
