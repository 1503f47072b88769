//! Live events (`POST /admin/events`): their statistics are counted when they can first be
//! read, not in the batch that brings them — and every answer is the same as if they had
//! been loaded at once: however a stream is split between POSTs and `ingest` runs, with events
//! days late and batches resent, and in an answer read between two POSTs.

use crate::common::*;
use crate::ingest::{
    all_answers, appids, assert_every_endpoint_has_rows, assert_same, counts, demo_lines, fresh,
    time_of, SECRET,
};
use datacube_api::date::{add_days, format_date};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ADMIN: &str = "adm-token-for-live-tests";

use datacube_api::date::china_time_of as china;

/// Unix seconds at 00:00 China time of `day`.
fn day_start(day: jiff::civil::Date) -> i64 {
    datacube_api::date::date_to_epoch_day(day) * 86_400 - 8 * 3600
}

async fn set_clock(base: &str, unix: i64) {
    let answer = reqwest::Client::new()
        .post(format!("{base}/admin/clock"))
        .bearer_auth(ADMIN)
        .body(format!(r#"{{"now":"{}"}}"#, china(unix)))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
}

/// POSTs `lines`; returns (accepted, duplicates).
async fn post_events(base: &str, lines: &[String]) -> (u64, u64) {
    let v: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/admin/events"))
        .bearer_auth(ADMIN)
        .body(lines.join("\n"))
        .answer_json()
        .await;
    assert_eq!(v["rejected_total"], 0, "{v}");
    (
        v["accepted"].as_u64().unwrap(),
        v["duplicates"].as_u64().unwrap(),
    )
}

/// One time-ordered stream of demo events of three accounts — about one in twelve arriving one
/// to four days late — posted in batches of 1 to 2,000 lines, with about one part in five
/// loaded by `datacube ingest` runs in between (while the server runs) and some batches sent
/// twice, the server's clock following the stream: every endpoint of every account answers,
/// byte for byte, what one bulk `ingest` of the same events answers.
#[tokio::test]
async fn a_stream_split_between_posts_and_ingest_runs_answers_as_one_bulk_load() {
    const DAYS: u32 = 35;
    let accounts = appids(3);
    let mut rng = StdRng::seed_from_u64(31);

    let (dir_a, db_a) = fresh(&accounts).await;
    let lines = demo_lines(&db_a, &accounts, DAYS).await;
    let total = lines.len() as u64;
    let file = dir_a.path().join("all.ndjson");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let (code, out, err) = run(&db_a, &["ingest", file.to_str().unwrap()], None).await;
    assert_eq!(code, 0, "{out}{err}");
    let expected = all_answers(&db_a, &accounts, DAYS).await;
    assert_every_endpoint_has_rows(&expected);

    // Arrival order: time order, a share of the events late.
    let mut arrivals: Vec<(i64, usize, String)> = lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            let time = time_of(&line).as_second();
            let late = if rng.random_bool(1.0 / 12.0) {
                rng.random_range(1..=4) * 86_400 + rng.random_range(0..3_600)
            } else {
                0
            };
            (time + late, i, line)
        })
        .collect();
    arrivals.sort();
    let late = arrivals.windows(2).filter(|w| w[1].1 < w[0].1).count();
    assert!(late > 1_000, "{late} events out of time order");

    let (dir, db) = fresh(&accounts).await;
    let first = arrivals[0].0;
    let served = Serve::new(&db)
        .args(&["--admin-token", ADMIN])
        .clock(&china(first))
        .start()
        .await;
    let (mut accepted, mut duplicates, mut sent) = (0u64, 0u64, 0u64);
    let (mut posts, mut runs) = (0, 0);
    let mut posted: Vec<Vec<String>> = Vec::new();
    let mut at = 0;
    while at < arrivals.len() {
        // 1 to 2,000 lines, as many batches of each order of magnitude.
        let n = (2_000f64.powf(rng.random_range(0.0..=1.0)) as usize)
            .clamp(1, 2_000)
            .min(arrivals.len() - at);
        let part: Vec<String> = arrivals[at..at + n].iter().map(|a| a.2.clone()).collect();
        // Now: just after the last event of the part arrived.
        let now = arrivals[at + n - 1].0 + 60;
        set_clock(&served.base, now).await;
        if rng.random_bool(0.2) {
            let file = dir.path().join(format!("run-{runs}.ndjson"));
            std::fs::write(&file, part.join("\n") + "\n").unwrap();
            let out = datacube(&db)
                .env("DATACUBE_CLOCK", china(now))
                .args(["ingest", file.to_str().unwrap()])
                .output()
                .await
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let (a, d) = counts(&stdout);
            accepted += a;
            duplicates += d;
            runs += 1;
        } else {
            let (a, d) = post_events(&served.base, &part).await;
            accepted += a;
            duplicates += d;
            posts += 1;
            posted.push(part.clone());
        }
        sent += n as u64;
        // Now and then, a batch sent again: nothing new in it.
        if rng.random_bool(0.05) {
            let again = posted[rng.random_range(0..posted.len())].clone();
            let (a, d) = post_events(&served.base, &again).await;
            assert_eq!((a, d), (0, again.len() as u64), "a batch sent again");
            duplicates += d;
            sent += again.len() as u64;
        }
        at += n;
    }
    assert!(
        posts >= 20 && runs >= 3,
        "{posts} POSTs, {runs} ingest runs"
    );
    assert_eq!(accepted, total, "every event accepted once");
    assert_eq!(accepted + duplicates, sent);
    drop(served);
    assert_same(
        "posts and ingest runs",
        &expected,
        &all_answers(&db, &accounts, DAYS).await,
    );
}

/// The answer of `endpoint` over `from..=to`: each row's `ref_date` and its `field`.
async fn by_day(
    base: &str,
    token: &str,
    (endpoint, field): (&str, &str),
    (from, to): (jiff::civil::Date, jiff::civil::Date),
) -> Vec<(String, u64)> {
    let body = format!(
        r#"{{"begin_date":"{}","end_date":"{}"}}"#,
        format_date(from),
        format_date(to)
    );
    let answer = datacube_post(base, token, endpoint, &body).await;
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    v["list"]
        .as_array()
        .unwrap_or_else(|| panic!("{endpoint} {body}: {answer}"))
        .iter()
        .map(|r| {
            (
                r["ref_date"].as_str().unwrap().to_owned(),
                r[field].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Batches of follows and replies on days from ten days back to today — late ones and today's
/// — each read back at once through the API (getusercumulate and getinterfacesummary of the
/// last readable week): every answer counts every event accepted before it, also after the clock
/// moves past 08:00 and yesterday's events become readable.
#[tokio::test]
async fn an_answer_read_between_two_posts_counts_every_event_accepted_before_it() {
    let appid = "wxaaaa000000000001";
    let (_dir, db) = fresh(&[appid.to_owned()]).await;
    let served = Serve::new(&db)
        .args(&["--admin-token", ADMIN])
        .start()
        .await;
    let mut rng = StdRng::seed_from_u64(7);
    let start: jiff::Timestamp = CLOCK.parse().unwrap();
    let mut now = start.as_second();
    let today = |now: i64| datacube_api::date::china_date(now);
    // Follows and replies posted, per day.
    let mut follows: std::collections::BTreeMap<jiff::civil::Date, u64> = Default::default();
    let mut replies: std::collections::BTreeMap<jiff::civil::Date, u64> = Default::default();
    let mut token = access_token(&served.base, appid, SECRET).await;
    let mut serial = 0;
    for round in 0..60 {
        if round == 30 {
            // The next day, 09:00: yesterday's events (today's until now) become readable.
            now = day_start(add_days(today(now), 1)) + 9 * 3600;
            set_clock(&served.base, now).await;
            token = access_token(&served.base, appid, SECRET).await;
        }
        let day = add_days(today(now), -rng.random_range(0..=10));
        let base = day_start(day);
        let latest = if day == today(now) {
            now - base
        } else {
            86_400
        };
        let mut batch = Vec::new();
        for _ in 0..rng.random_range(1..40) {
            serial += 1;
            let time = china(base + rng.random_range(0..latest));
            if rng.random_bool(0.5) {
                batch.push(format!(
                    r#"{{"type":"follow","appid":"{appid}","id":"f{serial}","time":"{time}","openid":"o{serial}","source":30}}"#
                ));
                *follows.entry(day).or_default() += 1;
            } else {
                batch.push(format!(
                    r#"{{"type":"reply","appid":"{appid}","id":"r{serial}","time":"{time}","cost_ms":100,"ok":true}}"#
                ));
                *replies.entry(day).or_default() += 1;
            }
        }
        let (accepted, _) = post_events(&served.base, &batch).await;
        assert_eq!(accepted, batch.len() as u64);

        let ready = datacube_api::date::last_ready_day(now);
        // A week: getusercumulate's longest span.
        let window = (add_days(ready, -6), ready);
        let cumulate = by_day(
            &served.base,
            &token,
            ("getusercumulate", "cumulate_user"),
            window,
        )
        .await;
        let mut expected = Vec::new();
        let mut d = window.0;
        while d <= window.1 {
            let n: u64 = follows.range(..=d).map(|(_, n)| n).sum();
            if n > 0 {
                expected.push((format_date(d), n));
            }
            d = add_days(d, 1);
        }
        let got: Vec<(String, u64)> = cumulate.into_iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(got, expected, "round {round}: getusercumulate");

        let calls = by_day(
            &served.base,
            &token,
            ("getinterfacesummary", "callback_count"),
            window,
        )
        .await;
        let expected: Vec<(String, u64)> = replies
            .range(window.0..=window.1)
            .map(|(d, n)| (format_date(*d), *n))
            .collect();
        assert_eq!(calls, expected, "round {round}: getinterfacesummary");
    }
    // Today's events were posted too, and not readable until the clock moved.
    assert!(
        follows.contains_key(&today(start.as_second()))
            || replies.contains_key(&today(start.as_second()))
    );
}
