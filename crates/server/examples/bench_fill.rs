//! Fills a database for the serving benchmark: ACCOUNTS accounts × DAYS days of statistics for
//! five daily endpoints, written through the real import path (validation, canonical rows,
//! upserts).
//!
//! cargo run --release -p datacube-server --example bench_fill -- sqlite:///tmp/bench.db 1000 1096

use datacube_api::account::hash_secret;
use datacube_api::date::{add_days, format_date, parse_date};
use datacube_api::row::NewFields;
use datacube_api::Endpoint;
use datacube_store::import::import_body;
use datacube_store::{AccountRecord, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).map_or("sqlite://bench.db", String::as_str);
    let accounts: u32 = args.get(2).map_or(Ok(1000), |s| s.parse())?;
    let days: i64 = args.get(3).map_or(Ok(1096), |s| s.parse())?;
    let last = parse_date(args.get(4).map_or("2025-12-31", String::as_str)).ok_or("bad date")?;
    let first = add_days(last, -(days - 1));
    let store = Store::open(url)?;
    // One hash for all: the benchmark measures serving, not sign-in.
    let hash = hash_secret("bench-secret");
    let mut rng = StdRng::seed_from_u64(1);
    let started = std::time::Instant::now();
    let mut rows = 0usize;
    for a in 0..accounts {
        let appid = format!("wxbench{a:011}");
        store
            .put_account(AccountRecord {
                appid: appid.clone(),
                secret_hash: hash.clone(),
                verified: true,
                created_at: 0,
                incarnation: 0, // drawn by the store
            })
            .await?;
        let mut bodies: Vec<(Endpoint, Vec<String>)> = vec![
            (Endpoint::GetInterfaceSummary, vec![]),
            (Endpoint::GetUserCumulate, vec![]),
            (Endpoint::GetUserSummary, vec![]),
            (Endpoint::GetUpstreamMsg, vec![]),
            (Endpoint::GetUserRead, vec![]),
        ];
        let mut followers: u64 = rng.random_range(100..200_000);
        for d in 0..days {
            let date = format_date(add_days(first, d));
            let cb: u64 = rng.random_range(0..40_000);
            let fail = rng.random_range(0..=cb / 200);
            bodies[0].1.push(format!(
                r#"{{"ref_date":"{date}","callback_count":{cb},"fail_count":{fail},"total_time_cost":{},"max_time_cost":{}}}"#,
                cb * rng.random_range(150..450),
                if fail > 0 { 5000 + rng.random_range(0..60) } else { rng.random_range(300..2000) }
            ));
            let (new, cancel) = (rng.random_range(0..300u64), rng.random_range(0..100u64));
            followers = (followers + new).saturating_sub(cancel);
            bodies[1].1.push(format!(
                r#"{{"ref_date":"{date}","user_source":0,"cumulate_user":{followers}}}"#
            ));
            bodies[2].1.push(format!(
                r#"{{"ref_date":"{date}","user_source":0,"new_user":{},"cancel_user":{cancel}}}"#,
                new / 3
            ));
            bodies[2].1.push(format!(
                r#"{{"ref_date":"{date}","user_source":30,"new_user":{},"cancel_user":0}}"#,
                new - new / 3
            ));
            for t in [1, 2] {
                let n = rng.random_range(1..3000u64);
                bodies[3].1.push(format!(
                    r#"{{"ref_date":"{date}","user_source":0,"msg_type":{t},"msg_user":{},"msg_count":{n}}}"#,
                    n / 2 + 1
                ));
            }
            let r = rng.random_range(0..5000u64);
            bodies[4].1.push(format!(
                r#"{{"ref_date":"{date}","user_source":99999999,"int_page_read_user":{r},"int_page_read_count":{},"ori_page_read_user":0,"ori_page_read_count":0,"share_user":{},"share_count":{},"add_to_fav_user":0,"add_to_fav_count":0}}"#,
                r + r / 10, r / 20, r / 15
            ));
        }
        for (endpoint, list) in bodies {
            rows += list.len();
            let body = format!(r#"{{"list":[{}]}}"#, list.join(","));
            import_body(&store, &appid, endpoint, body.as_bytes(), NewFields::Refuse).await?;
        }
        if a % 100 == 99 {
            eprintln!("{} accounts, {rows} rows, {:.0?}", a + 1, started.elapsed());
        }
    }
    eprintln!(
        "done: {accounts} accounts, {rows} rows in {:.1?}",
        started.elapsed()
    );
    Ok(())
}
