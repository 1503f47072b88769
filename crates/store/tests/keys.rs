//! Every table that holds an account's data is keyed by `appid` first, so that it can be
//! distributed by account (`docs/scaling.md`); the migration that made it so (PostgreSQL's
//! version 7) keeps every answer byte for byte. On SQLite and PostgreSQL.

use datacube_api::date::add_days;
use datacube_api::Endpoint;
use datacube_store::ingest::{ingest_lines, KnownAccounts};
use datacube_store::{AccountRecord, Store};
use jiff::civil::{date, Date};

const APPIDS: [&str; 2] = ["wxkeys0000000000001", "wxkeys0000000000002"];
const FIRST: Date = date(2025, 9, 1);
const YESTERDAY: Date = date(2025, 10, 20);

/// Events of both accounts on 30 days, each with an id (so that the id index has buckets and
/// deltas): follows, unfollows, messages, replies, an article published, read and shared.
fn lines(appid: &str, salt: i64) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    for i in 0..30i64 {
        let day = add_days(FIRST, i + i % 3);
        let at = |h: i64| format!("{day}T{h:02}:{:02}:00+08:00", (i * 7 + salt) % 60);
        let mut push = |s: String| lines.push((lines.len() + 1, s));
        let id = |k: &str| format!("{appid}-{i}-{k}");
        for k in 0..(i % 4 + 1) {
            push(format!(
                r#"{{"type":"follow","appid":"{appid}","id":"{}","time":"{}","openid":"o{i}_{k}","source":{}}}"#,
                id(&format!("f{k}")),
                at(8 + k),
                [0, 1, 30, 43][k as usize]
            ));
        }
        if i % 4 == 0 {
            push(format!(
                r#"{{"type":"unfollow","appid":"{appid}","id":"{}","time":"{}","openid":"o{}_0"}}"#,
                id("u"),
                at(20),
                i / 2
            ));
        }
        push(format!(
            r#"{{"type":"message","appid":"{appid}","id":"{}","time":"{}","openid":"o{i}_0","msg_type":"text"}}"#,
            id("m"),
            at(9)
        ));
        push(format!(
            r#"{{"type":"reply","appid":"{appid}","id":"{}","time":"{}","cost_ms":{},"ok":{}}}"#,
            id("r"),
            at(9),
            100 + i * 13 + salt,
            i % 7 != 0
        ));
        if i % 10 == 0 {
            push(format!(
                r#"{{"type":"publish","appid":"{appid}","id":"{}","time":"{}","msgid":"22474836{i:02}_1","title":"t{i}"}}"#,
                id("p"),
                at(7)
            ));
        }
        let msgid = format!("22474836{:02}_1", (i / 10) * 10);
        push(format!(
            r#"{{"type":"read","appid":"{appid}","id":"{}","time":"{}","msgid":"{msgid}","openid":"o{i}_0","page":"int","scene":"session"}}"#,
            id("rd"),
            at(12)
        ));
        push(format!(
            r#"{{"type":"share","appid":"{appid}","id":"{}","time":"{}","msgid":"{msgid}","openid":"o{i}_0","scene":"friends","from":"session"}}"#,
            id("s"),
            at(13)
        ));
    }
    lines
}

/// Every answer of every endpoint of both accounts over a few ranges, and what the tokens
/// issued look up to.
async fn answers(store: &Store, tokens: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for appid in APPIDS {
        for endpoint in Endpoint::ALL {
            let mut begin = add_days(FIRST, -2);
            while begin <= YESTERDAY {
                let end = add_days(begin, 6).min(YESTERDAY);
                out.push(
                    store
                        .list_body(appid, endpoint, (begin, end), None)
                        .await
                        .unwrap(),
                );
                begin = add_days(begin, 5);
            }
        }
    }
    for t in tokens {
        let record = store.token(t).await.unwrap().expect("a token issued");
        out.push(format!(
            "{} {} {} {:?}",
            record.appid,
            record.token.expose(),
            record.expires_at,
            record.invalid_after
        ));
    }
    out
}

/// The database as the version before account keys left it: PostgreSQL's 6, SQLite's 11.
fn back_before_account_keys(url: &str) {
    let url = url.to_owned();
    std::thread::spawn(move || {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.execute_batch(
                "CREATE TABLE token_old (
                     token TEXT PRIMARY KEY, appid TEXT NOT NULL, kind TEXT NOT NULL,
                     issued_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
                     invalid_after INTEGER, component TEXT);
                 INSERT INTO token_old (rowid, token, appid, kind, issued_at, expires_at, invalid_after, component)
                     SELECT rowid, token, appid, kind, issued_at, expires_at, invalid_after, component FROM token;
                 DROP TABLE token;
                 ALTER TABLE token_old RENAME TO token;
                 CREATE INDEX token_by_appid ON token (appid, kind, issued_at);
                 PRAGMA user_version = 11;",
            )
            .unwrap();
            return;
        }
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .batch_execute(datacube_store::testing::UNDO_POSTGRES_ACCOUNT_KEYS)
            .unwrap();
        client
            .batch_execute("UPDATE datacube_schema SET version = 6")
            .unwrap();
    })
    .join()
    .unwrap();
}

/// Each table with an `appid` column, with the columns of its primary key in order and of
/// every other index, each in order. On SQLite a rowid table's `INTEGER PRIMARY KEY` is the
/// rowid itself.
fn keys(url: &str) -> Vec<(String, Vec<String>, Vec<Vec<String>>)> {
    let url = url.to_owned();
    std::thread::spawn(move || match url.strip_prefix("sqlite://") {
        Some(path) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            let tables: Vec<String> = conn
                .prepare(
                    "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) c
                     WHERE m.type = 'table' AND c.name = 'appid' ORDER BY m.name",
                )
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            tables
                .into_iter()
                .map(|t| {
                    let mut pk: Vec<(i64, String)> = conn
                        .prepare("SELECT pk, name FROM pragma_table_info(?1) WHERE pk > 0")
                        .unwrap()
                        .query_map([&t], |r| Ok((r.get(0)?, r.get(1)?)))
                        .unwrap()
                        .map(Result::unwrap)
                        .collect();
                    pk.sort();
                    let indexes: Vec<String> = conn
                        .prepare("SELECT name FROM pragma_index_list(?1)")
                        .unwrap()
                        .query_map([&t], |r| r.get(0))
                        .unwrap()
                        .map(Result::unwrap)
                        .collect();
                    let others = indexes
                        .iter()
                        .map(|i| {
                            conn.prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
                                .unwrap()
                                .query_map([i], |r| r.get(0))
                                .unwrap()
                                .map(Result::unwrap)
                                .collect()
                        })
                        .collect();
                    (t, pk.into_iter().map(|(_, c)| c).collect(), others)
                })
                .collect()
        }
        None => {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let rows = client
                .query(
                    "SELECT c.relname::text,
                            i.indisprimary,
                            array(SELECT a.attname::text
                                  FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY k(n, o)
                                  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.n
                                  ORDER BY k.o)
                     FROM pg_class c
                     JOIN pg_namespace s ON s.oid = c.relnamespace AND s.nspname = current_schema()
                     JOIN pg_index i ON i.indrelid = c.oid
                     WHERE c.relkind = 'r'
                       AND EXISTS (SELECT 1 FROM pg_attribute a
                                   WHERE a.attrelid = c.oid AND a.attname = 'appid' AND NOT a.attisdropped)
                     ORDER BY c.relname, i.indisprimary DESC",
                    &[],
                )
                .unwrap();
            // Every table with an appid column, also one without any index.
            let mut out: Vec<(String, Vec<String>, Vec<Vec<String>>)> = client
                .query(
                    "SELECT c.relname::text FROM pg_class c
                     JOIN pg_namespace s ON s.oid = c.relnamespace AND s.nspname = current_schema()
                     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'appid' AND NOT a.attisdropped
                     WHERE c.relkind = 'r' ORDER BY c.relname",
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| (r.get(0), Vec::new(), Vec::new()))
                .collect();
            for row in rows {
                let (table, primary, columns): (String, bool, Vec<String>) =
                    (row.get(0), row.get(1), row.get(2));
                let entry = out.iter_mut().find(|(t, _, _)| *t == table).unwrap();
                if primary {
                    entry.1 = columns;
                } else {
                    entry.2.push(columns);
                }
            }
            out
        }
    })
    .join()
    .unwrap()
}

async fn filled(url: &str) -> (Store, Vec<String>) {
    let store = Store::open(url).unwrap();
    let mut tokens = Vec::new();
    for (n, appid) in APPIDS.into_iter().enumerate() {
        let account = AccountRecord {
            appid: appid.into(),
            secret_hash: datacube_api::account::hash_secret("keys-secret"),
            verified: true,
            created_at: 0,
            incarnation: 0,
        };
        store.add_account(account).await.unwrap();
        let account = store.account(appid).await.unwrap().unwrap();
        let (report, _) = ingest_lines(
            &store,
            &lines(appid, n as i64),
            YESTERDAY,
            &mut KnownAccounts::default(),
        )
        .await
        .unwrap();
        assert_eq!(report.rejected_total, 0, "{:?}", report.rejected);
        for k in 0..2 {
            let token = format!("keys-token-{n}-{k}");
            store
                .issue_basic_token(&account, token.clone(), 1_760_000_000 + k, 2000)
                .await
                .unwrap();
            tokens.push(token);
        }
    }
    store.carry_forward(YESTERDAY).await.unwrap();
    (store, tokens)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_table_of_an_account_is_keyed_by_appid_first() {
    let dir = tempfile::tempdir().unwrap();
    let url = datacube_store::testing::fresh_database(dir.path(), "keys");
    let (store, _) = filled(&url).await;
    drop(store);
    let tables = keys(&url);
    let names: Vec<&str> = tables.iter().map(|(t, _, _)| t.as_str()).collect();
    for expected in ["event_chunk", "event_id_delta", "stat_day", "token"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    for (table, primary, others) in &tables {
        if url.starts_with("sqlite://") && primary.len() == 1 && primary[0] == "seq" {
            // An SQLite rowid table (the event and id logs): its key is the rowid, and an
            // index leads with appid.
            assert!(
                others
                    .iter()
                    .any(|i| i.first().map(String::as_str) == Some("appid")),
                "{table}: {others:?}"
            );
            continue;
        }
        assert_eq!(
            primary.first().map(String::as_str),
            Some("appid"),
            "{table}'s primary key {primary:?} must lead with appid"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_migration_to_account_keys_keeps_every_answer() {
    let dir = tempfile::tempdir().unwrap();
    let url = datacube_store::testing::fresh_database(dir.path(), "keys_migration");
    let (store, tokens) = filled(&url).await;
    let before = answers(&store, &tokens).await;
    drop(store);
    back_before_account_keys(&url);
    let token = keys(&url)
        .into_iter()
        .find(|(t, _, _)| t == "token")
        .unwrap();
    assert_eq!(token.1, ["token"], "back as the version before keyed it");
    let store = Store::open(&url).unwrap();
    let after = answers(&store, &tokens).await;
    assert!(
        before.iter().filter(|a| a.contains("ref_date")).count() > 200,
        "answers with rows compared"
    );
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a, b, "the same answer after the migration");
    }
    // And the database still takes events, ids checked against what it held before.
    let (report, _) = ingest_lines(
        &store,
        &lines(APPIDS[0], 0),
        YESTERDAY,
        &mut KnownAccounts::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        (report.accepted, report.duplicates),
        (0, lines(APPIDS[0], 0).len()),
        "every event a duplicate: {report:?}"
    );
    drop(store);
    let token = keys(&url)
        .into_iter()
        .find(|(t, _, _)| t == "token")
        .unwrap();
    assert_eq!(token.1, ["appid", "token"], "migrated");
}
