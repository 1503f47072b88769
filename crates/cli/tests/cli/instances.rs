//! Two `datacube serve` instances over one PostgreSQL database behave as one service: tokens,
//! stable tokens, quotas, de-duplication by event id, and statistics written through either
//! instance, `datacube ingest`, `push` or `sync`, seen from both within one second. Writers of
//! different accounts never wait for each other; writers of one account lose nothing.
//!
//! Needs PostgreSQL (`DATACUBE_TEST_POSTGRES`, which `scripts/test` sets); reported as ignored
//! without it.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

const APPID: &str = "wxtwin0000000000001";
const SECRET: &str = "twin-secret";
/// A second account, whose quotas the test uses up.
const QUOTA_APPID: &str = "wxtwin0000000000002";
const QUOTA_SECRET: &str = "quota-secret";
const ADMIN: &str = "twin-admin-token-0001";
const TOKEN_QUOTA: usize = 5;
const API_QUOTA: usize = 60;
/// Within this, a write made through one instance (or a command) shows on every instance.
const VISIBLE_WITHIN: Duration = Duration::from_secs(1);

const PUSH_TOKEN: &str = "GreedIsGood";
const PUSH_AES_KEY: &str = "h7ZycbpEh2vNdfkYulfw9pG95HjLYwmrKBFeqIktff6";

async fn instance(db: &str) -> Served {
    let token_quota = TOKEN_QUOTA.to_string();
    let api_quota = API_QUOTA.to_string();
    serve(
        db,
        &[
            "--admin-token",
            ADMIN,
            "--token-quota",
            &token_quota,
            "--api-quota",
            &api_quota,
        ],
    )
    .await
}

async fn admin_events(base: &str, body: &str) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{base}/admin/events"))
        .bearer_auth(ADMIN)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn stable_token(base: &str, appid: &str, secret: &str) -> String {
    let v: Value = reqwest::Client::new()
        .post(format!("{base}/cgi-bin/stable_token"))
        .body(
            serde_json::json!({"grant_type":"client_credential","appid":appid,"secret":secret})
                .to_string(),
        )
        .answer_json()
        .await;
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no stable token: {v}"))
        .to_owned()
}

fn range(day: &str) -> String {
    format!(r#"{{"begin_date":"{day}","end_date":"{day}"}}"#)
}

async fn list(base: &str, token: &str, endpoint: &str, day: &str) -> Value {
    let text = datacube_post(base, token, endpoint, &range(day)).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(
        v.get("list").is_some(),
        "{endpoint} {day} on {base}: {text}"
    );
    v["list"].clone()
}

/// Polls every instance until `want` holds for `endpoint` on `day`; fails unless it holds on
/// all of them within [`VISIBLE_WITHIN`] of `since` (when the write returned).
async fn visible_on_all(
    instances: &[(&str, &str)],
    endpoint: &str,
    day: &str,
    since: Instant,
    what: &str,
    want: impl Fn(&Value) -> bool,
) {
    for (base, token) in instances {
        loop {
            let got = list(base, token, endpoint, day).await;
            if want(&got) {
                break;
            }
            assert!(
                since.elapsed() < VISIBLE_WITHIN,
                "{what}: not visible on {base} within {VISIBLE_WITHIN:?}: {endpoint} {day} = {got}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn field(list: &Value, name: &str) -> i64 {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r[name].as_i64().unwrap_or(0))
        .sum()
}

#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set DATACUBE_TEST_POSTGRES (scripts/test does)"
)]
async fn two_instances_on_one_postgres_behave_as_one_service() {
    let (dir, db) = temp_db();
    assert!(db.starts_with("postgres://"), "{db}");
    add_account(&db, APPID, SECRET).await;
    add_account(&db, QUOTA_APPID, QUOTA_SECRET).await;
    let a = instance(&db).await;
    let b = instance(&db).await;
    let (a, b) = (a.base.as_str(), b.base.as_str());

    // A token issued by one works on the other.
    let ta = access_token(a, APPID, SECRET).await;
    let tb = access_token(b, APPID, SECRET).await;
    list(b, &ta, "getusersummary", "2026-06-10").await;
    list(a, &tb, "getusersummary", "2026-06-10").await;

    // stable_token answers the same token on both.
    let sa = stable_token(a, APPID, SECRET).await;
    let sb = stable_token(b, APPID, SECRET).await;
    assert_eq!(sa, sb, "one stable token for the service");
    list(b, &sa, "getusersummary", "2026-06-10").await;

    // Quotas are counted once: tokens taken alternately from both stop at the quota.
    let mut issued = 0;
    for i in 0..TOKEN_QUOTA + 3 {
        let base = if i % 2 == 0 { a } else { b };
        let v: Value = token(base, QUOTA_APPID, QUOTA_SECRET)
            .await
            .json()
            .await
            .unwrap();
        if v.get("access_token").is_some() {
            issued += 1;
        } else {
            assert_eq!(v["errcode"], 45009, "{v}");
        }
    }
    assert_eq!(
        issued, TOKEN_QUOTA,
        "the token quota is the service's, not each instance's"
    );
    // The stable token has a quota of its own: it still comes.
    let tq = stable_token(a, QUOTA_APPID, QUOTA_SECRET).await;
    let mut answered = 0;
    for i in 0..API_QUOTA + 4 {
        let base = if i % 2 == 0 { a } else { b };
        let text = datacube_post(base, &tq, "getusercumulate", &range("2026-06-10")).await;
        if text.starts_with("{\"list\"") {
            answered += 1;
        } else {
            assert!(text.contains("45009"), "{text}");
        }
    }
    assert_eq!(answered, API_QUOTA, "the API quota is the service's");

    let both = [(a, ta.as_str()), (b, tb.as_str())];

    // The same event (same id) sent to both instances at once is counted once.
    let event = format!(
        r#"{{"type":"message","appid":"{APPID}","id":"twin-1","time":"2026-06-10T09:10:00+08:00","openid":"o1","msg_type":"text"}}"#
    );
    let (ra, rb) = tokio::join!(admin_events(a, &event), admin_events(b, &event));
    assert_eq!(
        ra["accepted"].as_u64().unwrap() + rb["accepted"].as_u64().unwrap(),
        1,
        "{ra} {rb}"
    );
    assert_eq!(
        ra["duplicates"].as_u64().unwrap() + rb["duplicates"].as_u64().unwrap(),
        1,
        "{ra} {rb}"
    );
    let since = Instant::now();
    visible_on_all(
        &both,
        "getupstreammsg",
        "2026-06-10",
        since,
        "an event sent to both",
        |l| field(l, "msg_count") == 1,
    )
    .await;

    // Written through B, seen on A (and B) within a second.
    let event = format!(
        r#"{{"type":"message","appid":"{APPID}","id":"twin-2","time":"2026-06-10T10:00:00+08:00","openid":"o2","msg_type":"text"}}"#
    );
    assert_eq!(admin_events(b, &event).await["accepted"], 1);
    let since = Instant::now();
    visible_on_all(
        &both,
        "getupstreammsg",
        "2026-06-10",
        since,
        "an event written through B",
        |l| field(l, "msg_user") == 2,
    )
    .await;

    // `datacube ingest`, a process of its own.
    let lines = [
        format!(
            r#"{{"type":"reply","appid":"{APPID}","id":"twin-r1","time":"2026-06-11T09:00:00+08:00","cost_ms":200,"ok":true}}"#
        ),
        format!(
            r#"{{"type":"reply","appid":"{APPID}","id":"twin-r2","time":"2026-06-11T09:30:00+08:00","cost_ms":5002,"ok":false}}"#
        ),
    ]
    .join("\n");
    let (code, out, err) = run(&db, &["ingest", "-"], Some(&lines)).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "2 accepted, 0 duplicates, 0 rejected\n");
    let since = Instant::now();
    visible_on_all(
        &both,
        "getinterfacesummary",
        "2026-06-11",
        since,
        "datacube ingest",
        |l| field(l, "callback_count") == 2 && field(l, "fail_count") == 1,
    )
    .await;

    // `datacube push` against a developer's server (wechatpy), recording as it goes.
    let server = dev_server(PUSH_TOKEN, PUSH_AES_KEY, APPID).await;
    let url = server.url();
    let flags = [
        "--aes-key",
        PUSH_AES_KEY,
        "--mode",
        "plain",
        "--rate",
        "0",
        "--count",
        "20",
        "--clock",
        "2026-06-12T10:00:00+08:00",
    ];
    let (code, out, err) = push_to(&db, (APPID, &url, PUSH_TOKEN), &flags).await;
    assert_eq!(code, 0, "{err}\n{out}");
    let since = Instant::now();
    visible_on_all(
        &both,
        "getinterfacesummary",
        "2026-06-12",
        since,
        "datacube push",
        |l| field(l, "callback_count") >= 20,
    )
    .await;
    // Every message but locations (which getupstreammsg has no type for) is counted once.
    let locations: i64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("messages: "))
        .unwrap_or_else(|| panic!("no message line in {out}"))
        .split(", ")
        .filter_map(|s| s.strip_suffix(" location"))
        .map(|n| n.parse::<i64>().unwrap())
        .sum();
    let pushed = list(b, &tb, "getupstreammsg", "2026-06-12").await;
    assert_eq!(
        field(&pushed, "msg_count"),
        20 - locations,
        "{pushed}\n{out}"
    );

    // `datacube sync` from another server (here a demo datacube on SQLite) into this database.
    let up_db = format!("sqlite://{}", dir.path().join("upstream.db").display());
    let up = serve(&up_db, &["--demo", "--demo-days", "10"]).await;
    let demo_appid = "wx6461746163756265";
    let demo_secret = "64656d6f5f7365637265745f32303236";
    let (code, out, err) = run(
        &db,
        &[
            "sync",
            "--appid",
            demo_appid,
            "--secret",
            demo_secret,
            "--upstream",
            &up.base,
            "--slow-down",
            "0",
            "--from",
            "2026-06-10",
            "--endpoints",
            "getusersummary",
        ],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}\n{out}");
    let since = Instant::now();
    let want = list(
        &up.base,
        &access_token(&up.base, demo_appid, demo_secret).await,
        "getusersummary",
        "2026-06-14",
    )
    .await;
    assert!(!want.as_array().unwrap().is_empty());
    let da = access_token(a, demo_appid, demo_secret).await;
    let db_token = access_token(b, demo_appid, demo_secret).await;
    visible_on_all(
        &[(a, da.as_str()), (b, db_token.as_str())],
        "getusersummary",
        "2026-06-14",
        since,
        "datacube sync",
        |l| *l == want,
    )
    .await;
}

/// A third-party platform is one across instances: a ticket issued on A gets a component token
/// on B, a pre-auth code from A is used by an authorization made on B, the authorizer token
/// from A reads on B, and a revocation made on A kills the token on B within a second.
#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set DATACUBE_TEST_POSTGRES (scripts/test does)"
)]
async fn a_third_party_platform_is_one_across_instances() {
    const C: &str = "wxtwinc000000000c01";
    const C_SECRET: &str = "twin-component-secret";
    let (_dir, db) = temp_db();
    add_account(&db, APPID, SECRET).await;
    let a = instance(&db).await;
    let b = instance(&db).await;
    let (a, b) = (a.base.as_str(), b.base.as_str());
    let http = reqwest::Client::new();
    let admin = |base: &str, method: reqwest::Method, path: &str, body: Value| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    let post =
        |base: &str, path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();
    let created = admin(
        a,
        reqwest::Method::POST,
        "/admin/components",
        serde_json::json!({"appid": C, "secret": C_SECRET, "token": "twintoken",
                           "aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"}),
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 201);
    let ticket: Value = admin(
        a,
        reqwest::Method::POST,
        &format!("/admin/components/{C}/ticket"),
        Value::Null,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let v: Value = post(
        b,
        "/cgi-bin/component/api_component_token",
        serde_json::json!({"component_appid": C, "component_appsecret": C_SECRET,
                           "component_verify_ticket": ticket["ticket"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let ctoken = v["component_access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    let v: Value = post(
        a,
        &format!("/cgi-bin/component/api_create_preauthcode?component_access_token={ctoken}"),
        serde_json::json!({"component_appid": C}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let pre = v["pre_auth_code"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    let g: Value = admin(
        b,
        reqwest::Method::POST,
        &format!("/admin/components/{C}/grants"),
        serde_json::json!({"authorizer_appid": APPID, "func_ids": [2], "pre_auth_code": pre}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let code = g["authorization_code"]
        .as_str()
        .unwrap_or_else(|| panic!("{g}"))
        .to_owned();
    let v: Value = post(
        a,
        &format!("/cgi-bin/component/api_query_auth?component_access_token={ctoken}"),
        serde_json::json!({"component_appid": C, "authorization_code": code}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let token = v["authorization_info"]["authorizer_access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned();
    for base in [a, b] {
        let ok = datacube_post(base, &token, "getusersummary", &range("2026-06-10")).await;
        assert!(ok.starts_with("{\"list\""), "{ok}");
        let refused = datacube_post(base, &token, "getarticleread", &range("2026-06-10")).await;
        assert!(refused.starts_with("{\"errcode\":61007,"), "{refused}");
    }
    let revoked = admin(
        a,
        reqwest::Method::DELETE,
        &format!("/admin/components/{C}/grants/{APPID}"),
        Value::Null,
    )
    .await
    .unwrap();
    assert_eq!(revoked.status(), 200);
    let start = Instant::now();
    loop {
        let answer = datacube_post(b, &token, "getusersummary", &range("2026-06-10")).await;
        if answer.starts_with("{\"errcode\":40001,") {
            break;
        }
        assert!(
            start.elapsed() < VISIBLE_WITHIN + Duration::from_secs(1),
            "B still answers a revoked token after {:?}: {answer}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Accounts of the bulk load in [`writers_of_other_accounts_never_wait_for_a_bulk_load`].
const BULK_ACCOUNTS: usize = 12;
/// Events per bulk account: with `--batch` below, each transaction holds several accounts for
/// a second or more (the global write lock before per-account locks made every other writer
/// wait that long).
const BULK_EVENTS: usize = 40_000;
/// The longest a one-event write of another account may take while the bulk load runs.
const WRITE_WITHIN: Duration = Duration::from_millis(250);

fn bulk_appid(i: usize) -> String {
    format!("wxbulk{i:013}")
}

/// Whether another connection holds an account's write lock (an exclusive advisory lock)
/// now: the bulk load is in one of its transactions.
fn bulk_writing(db: &str) -> bool {
    let db = db.to_owned();
    std::thread::spawn(move || {
        let mut client = postgres::Client::connect(&db, postgres::NoTls).unwrap();
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_locks
                 WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock'
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .unwrap()
            .get(0);
        n > 0
    })
    .join()
    .unwrap()
}

/// Writers of different accounts never wait for each other: while `datacube ingest` stores a
/// long bulk load of twelve accounts, one-event writes of another account through two
/// instances each return within 250 ms — and the bulk load's figures are exact.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set DATACUBE_TEST_POSTGRES (scripts/test does)"
)]
async fn writers_of_other_accounts_never_wait_for_a_bulk_load() {
    let (dir, db) = temp_db();
    assert!(db.starts_with("postgres://"), "{db}");
    add_account(&db, APPID, SECRET).await;
    for i in 0..BULK_ACCOUNTS {
        add_account(&db, &bulk_appid(i), SECRET).await;
    }
    let a = instance(&db).await;
    let b = instance(&db).await;

    // Messages on 40 days, each with an id (the id index is part of a batch's work).
    let path = dir.path().join("bulk.ndjson");
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for i in 0..BULK_ACCOUNTS {
            let appid = bulk_appid(i);
            for n in 0..BULK_EVENTS {
                writeln!(
                    out,
                    r#"{{"type":"message","appid":"{appid}","id":"b{n}","time":"2026-05-{:02}T{:02}:{:02}:00+08:00","openid":"o{}","msg_type":"text"}}"#,
                    1 + n % 28,
                    n % 24,
                    n % 60,
                    n % 5000
                )
                .unwrap();
            }
        }
    }
    let mut ingest = datacube(&db)
        .args(["ingest", path.to_str().unwrap(), "--batch", "150000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    let (mut samples, mut during, mut slowest) = (0, 0, Duration::ZERO);
    let mut n = 0;
    let started = Instant::now();
    while ingest.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the bulk load ends"
        );
        let writing = bulk_writing(&db);
        let base = if n % 2 == 0 { &a.base } else { &b.base };
        let event = format!(
            r#"{{"type":"message","appid":"{APPID}","id":"live-{n}","time":"2026-06-10T09:{:02}:00+08:00","openid":"o{n}","msg_type":"text"}}"#,
            n % 60
        );
        let sent = Instant::now();
        let v = admin_events(base, &event).await;
        let took = sent.elapsed();
        assert_eq!(v["accepted"], 1, "{v}");
        n += 1;
        // A sample counts when the bulk load held a lock before it and still does after.
        if writing && bulk_writing(&db) {
            during += 1;
            slowest = slowest.max(took);
        }
        samples += 1;
        assert!(
            !writing || took <= WRITE_WITHIN,
            "a one-event write took {took:?} while the bulk load was writing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = ingest.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{} accepted, 0 duplicates, 0 rejected\n",
            BULK_ACCOUNTS * BULK_EVENTS
        )
    );
    assert!(
        during >= 10,
        "{during} of {samples} writes were made while the bulk load held its locks: too few to tell"
    );
    eprintln!(
        "{during} of {samples} writes during the bulk load's transactions; slowest {slowest:?}"
    );

    // Nothing lost on either side.
    let token = stable_token(&a.base, APPID, SECRET).await;
    let since = Instant::now();
    visible_on_all(
        &[(&a.base, &token), (&b.base, &token)],
        "getupstreammsg",
        "2026-06-10",
        since,
        "the one-event writes",
        |l| field(l, "msg_count") == n as i64,
    )
    .await;
    let bulk = stable_token(&a.base, &bulk_appid(BULK_ACCOUNTS - 1), SECRET).await;
    let text = datacube_post(
        &b.base,
        &bulk,
        "getupstreammsg",
        r#"{"begin_date":"2026-05-01","end_date":"2026-05-07"}"#,
    )
    .await;
    let v: Value = serde_json::from_str(&text).unwrap();
    let per_day = BULK_EVENTS.div_ceil(28) as i64;
    let counts: Vec<i64> = v["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["msg_count"].as_i64().unwrap())
        .collect();
    assert!(
        counts.len() == 7 && counts.iter().all(|c| (per_day - 1..=per_day).contains(c)),
        "{text}"
    );
}

/// Four writers on two instances posting to one account at once lose nothing and count
/// nothing twice: every event is accepted once, and the statistics hold them all.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set DATACUBE_TEST_POSTGRES (scripts/test does)"
)]
async fn four_writers_on_two_instances_lose_nothing() {
    const WRITERS: usize = 4;
    const BATCHES: usize = 25;
    const PER_BATCH: usize = 20;
    let (_dir, db) = temp_db();
    add_account(&db, APPID, SECRET).await;
    let a = instance(&db).await;
    let b = instance(&db).await;
    let bases = [a.base.clone(), b.base.clone()];
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let base = bases[w % 2].clone();
        writers.push(tokio::spawn(async move {
            let (mut accepted, mut duplicates) = (0, 0);
            for k in 0..BATCHES {
                // Each batch resends the previous writer's batch of the same number too: the
                // same ids through another writer, often at the same moment.
                let mut lines = Vec::new();
                for owner in [w, (w + WRITERS - 1) % WRITERS] {
                    for e in 0..PER_BATCH {
                        lines.push(format!(
                            r#"{{"type":"message","appid":"{APPID}","id":"w{owner}-{k}-{e}","time":"2026-06-{:02}T{:02}:{:02}:00+08:00","openid":"o{owner}{e}","msg_type":"text"}}"#,
                            10 + (k + e) % 3,
                            (e % 24),
                            owner * 10 + k % 10
                        ));
                    }
                }
                let v = admin_events(&base, &lines.join("\n")).await;
                accepted += v["accepted"].as_u64().unwrap();
                duplicates += v["duplicates"].as_u64().unwrap();
            }
            (accepted, duplicates)
        }));
    }
    let (mut accepted, mut duplicates) = (0, 0);
    for w in writers {
        let (a, d) = w.await.unwrap();
        accepted += a;
        duplicates += d;
    }
    let unique = (WRITERS * BATCHES * PER_BATCH) as u64;
    assert_eq!(accepted, unique, "each event accepted once");
    assert_eq!(duplicates, unique, "each resent event a duplicate");
    let token = stable_token(&a.base, APPID, SECRET).await;
    for base in &bases {
        let text = datacube_post(
            base,
            &token,
            "getupstreammsg",
            r#"{"begin_date":"2026-06-10","end_date":"2026-06-12"}"#,
        )
        .await;
        let v: Value = serde_json::from_str(&text).unwrap();
        let total: i64 = v["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["msg_count"].as_i64().unwrap())
            .sum();
        assert_eq!(
            total, unique as i64,
            "every event counted on {base}: {text}"
        );
    }
}

/// An account with many writes waiting for it — behind a long transaction of its own — takes
/// none of the writer connections other accounts need: of its writes in one instance, one
/// waits for the account's database lock, the others wait in the instance holding nothing.
#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs PostgreSQL: set DATACUBE_TEST_POSTGRES (scripts/test does)"
)]
async fn a_busy_account_leaves_the_writers_to_the_others() {
    const BUSY: &str = "wxbusy0000000000001";
    let (_dir, db) = temp_db();
    add_account(&db, APPID, SECRET).await;
    add_account(&db, BUSY, SECRET).await;
    // Writer connections are twice the CPUs by default: more waiting writes than that.
    let a = serve(&db, &["--admin-token", ADMIN]).await;
    access_token(&a.base, BUSY, SECRET).await;
    // The busy account's quota row held by a long transaction (as a backfill of it would
    // hold its lock): its token requests wait.
    let (unlock, locked) = std::sync::mpsc::channel::<()>();
    let (held, is_held) = tokio::sync::oneshot::channel();
    let holder = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&db, postgres::NoTls).unwrap();
            let mut tx = client.transaction().unwrap();
            tx.query("SELECT * FROM quota WHERE appid = $1 FOR UPDATE", &[&BUSY])
                .unwrap();
            held.send(()).unwrap();
            let _ = locked.recv_timeout(Duration::from_secs(30));
            tx.commit().unwrap();
        })
    };
    is_held.await.unwrap();
    let waiting: Vec<_> = (0..12)
        .map(|_| {
            let base = a.base.clone();
            tokio::spawn(async move { token(&base, BUSY, SECRET).await.status() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    access_token(&a.base, APPID, SECRET).await;
    let took = started.elapsed();
    unlock.send(()).unwrap();
    holder.join().unwrap();
    for w in waiting {
        assert_eq!(w.await.unwrap(), 200);
    }
    assert!(
        took < Duration::from_millis(500),
        "another account's token took {took:?} while twelve requests waited for a busy one"
    );
}

/// A bulk load of thousands of small accounts does not exhaust PostgreSQL's lock table
/// (`max_locks_per_transaction` × connections, shared by every session of the server): its
/// transactions hold 64 accounts at most, each locked. On a cluster of its own with a small
/// lock table (with every account in one transaction: "out of shared memory").
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_of_thousands_of_accounts_fits_the_lock_table() {
    const ACCOUNTS: usize = 2000;
    let cluster = Cluster::start_with(|data| {
        use std::io::Write;
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        writeln!(conf, "max_locks_per_transaction = 10\nmax_connections = 20").unwrap();
    });
    let db = cluster.url("pw");
    let appid = |i: usize| format!("wxlocks{i:012}");
    add_account(&db, &appid(0), SECRET).await;
    {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&db, postgres::NoTls).unwrap();
            client
                .execute(
                    "INSERT INTO account (appid, secret_hash, verified, created_at, incarnation)
                     SELECT 'wxlocks' || lpad(g::text, 12, '0'), secret_hash, verified, created_at, g
                     FROM account, generate_series(1, $1::bigint - 1) g",
                    &[&(ACCOUNTS as i64)],
                )
                .unwrap();
        })
        .join()
        .unwrap();
    }
    let lines: Vec<String> = (0..ACCOUNTS)
        .map(|i| {
            format!(
                r#"{{"type":"message","appid":"{}","id":"m{i}","time":"2026-06-10T09:00:00+08:00","openid":"o{i}","msg_type":"text"}}"#,
                appid(i)
            )
        })
        .collect();
    let (code, out, err) = run(&db, &["ingest", "-"], Some(&lines.join("\n"))).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("{ACCOUNTS} accepted, 0 duplicates, 0 rejected\n")
    );
}
