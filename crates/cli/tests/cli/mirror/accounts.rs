//! A mirror of several accounts, one with a wrong secret: the failure is that account's, named
//! with where its secret was given; the advice is to fix it, not to run again; every line says
//! which account it is about; the report, `sync --status` and `/admin/sync/runs` agree on times.

use super::{DEMO_APPID, DEMO_SECRET};
use crate::common::*;

const OTHER: &str = "wxbbbb000000000031";
const OTHER_SECRET: &str = "the-right-secret-of-the-other-0031";
const ADMIN: &str = "accounts-admin-token-0123456789";

/// A demo server that also knows OTHER (with OTHER_SECRET); its database lives as long as it.
async fn upstream_with_other() -> ((tempfile::TempDir, Served), String) {
    let (dir, db) = temp_db();
    add_account(&db, OTHER, OTHER_SECRET).await;
    let up = serve(&db, &["--demo", "--demo-days", "10"]).await;
    let base = up.base.clone();
    ((dir, up), base)
}

/// A mirror configuration of the demo account and OTHER, each secret from its own variable
/// (DEMO_SECRET_FOR_TEST, OTHER_SECRET_FOR_TEST), of `endpoints` from 2026-06-05.
fn two_accounts(dir: &std::path::Path, upstream: &str, endpoints: &[&str]) -> std::path::PathBuf {
    let config = dir.join("mirror.toml");
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("{e:?}")).collect();
    std::fs::write(
        &config,
        format!(
            "name = \"agency\"\nupstream = \"{upstream}\"\nfrom = \"2026-06-05\"\n\
             endpoints = [{}]\n\
             [[account]]\nappid = \"{DEMO_APPID}\"\nsecret_env = \"DEMO_SECRET_FOR_TEST\"\n\
             [[account]]\nappid = \"{OTHER}\"\nsecret_env = \"OTHER_SECRET_FOR_TEST\"\n",
            endpoints.join(", ")
        ),
    )
    .unwrap();
    config
}

#[tokio::test]
async fn a_wrong_secret_is_named_with_its_account_and_not_called_a_retry() {
    let (_up, up_base) = upstream_with_other().await;
    let (dir, mirror_db) = temp_db();
    let config = two_accounts(dir.path(), &up_base, &["getusersummary", "getusercumulate"]);
    let config = config.to_str().unwrap();
    let out = datacube(&mirror_db)
        .args(["sync", "--mirror", config, "--report", "json"])
        .env("DEMO_SECRET_FOR_TEST", DEMO_SECRET)
        .env("OTHER_SECRET_FOR_TEST", "a-typo-in-the-other-secret-000031")
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "one account done, one not: {stderr}"
    );
    // The failure names the account and where its secret came from, never the secret.
    let refused =
        format!("error: {OTHER}: the token API refused the credentials: 40125 invalid appsecret");
    assert!(stderr.contains(&refused), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "fix the secret of {OTHER} (given as account[1] ({OTHER})'s secret_env, OTHER_SECRET_FOR_TEST)"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("a-typo-in-the-other-secret"), "{stderr}");
    assert!(!stderr.contains("run the same command again"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "some parts not mirrored (partial); fix the credentials of {OTHER} (above); running again without it changes nothing"
        )) || stderr.contains(&format!(
            "1 part not mirrored (partial); fix the credentials of {OTHER} (above); running again without it changes nothing"
        )),
        "{stderr}"
    );
    // Every line of the summary names its account; the refused one has no "synced 0 of 0".
    for line in stderr.lines().filter(|l| l.contains("synced")) {
        assert!(
            line.starts_with(&format!("{DEMO_APPID}: synced ")),
            "{line}"
        );
    }
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("{DEMO_APPID}: synced "))),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["outcome"], "partial");
    let outcomes: Vec<(&str, &str)> = report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["appid"].as_str().unwrap(), a["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes, [(DEMO_APPID, "ok"), (OTHER, "credentials")]);

    // One format of time everywhere: the report's, --status's and the admin API's.
    let started = report["started"].as_str().unwrap();
    let finished = report["finished"].as_str().unwrap();
    assert!(started.ends_with("+08:00"), "{started}");
    let (_, status, err) = run(&mirror_db, &["sync", "--status", "--report", "json"], None).await;
    let status: serde_json::Value =
        serde_json::from_str(&status).unwrap_or_else(|e| panic!("{e}: {err}"));
    assert_eq!(status[0]["started"], started, "{status:#}");
    assert_eq!(status[0]["finished"], finished, "{status:#}");
    let (_, text, _) = run(&mirror_db, &["sync", "--status"], None).await;
    assert!(text.contains(&format!("started {started}")), "{text}");
    let served = serve(&mirror_db, &["--admin-token", ADMIN]).await;
    let runs: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/admin/sync/runs", served.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(runs["runs"][0]["started"], started, "{runs:#}");
    assert_eq!(runs["runs"][0]["finished"], finished, "{runs:#}");
    assert_eq!(runs["runs"][0]["outcome"], "partial", "{runs:#}");

    // The wrong secret alone: the run is the credentials' outcome, exit 1, the same advice.
    let out = datacube(&mirror_db)
        .args([
            "sync",
            "--appid",
            OTHER,
            "--upstream",
            &up_base,
            "--from",
            "2026-06-05",
        ])
        .env("DATACUBE_SECRET", "a-typo-in-the-other-secret-000031")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "fix the secret of {OTHER} (given as --secret (or DATACUBE_SECRET))"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("run the same command again"), "{stderr}");
    let (code, text, _) = run(&mirror_db, &["sync", "--status"], None).await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("credentials in"), "{text}");
}

/// `serve --mirror` of the same two accounts, scraped by real Prometheus with the shipped
/// alerting rules: PromQL finds the refused account by its series, its alert fires naming it,
/// and every family of `/metrics` has its `# HELP`.
#[tokio::test]
async fn prometheus_names_the_account_whose_secret_was_refused() {
    let (_up, up_base) = upstream_with_other().await;
    let (dir, mirror_db) = temp_db();
    let config = two_accounts(dir.path(), &up_base, &["getusersummary"]);
    let served = Serve::new(&mirror_db)
        .args(&["--mirror", config.to_str().unwrap(), "--admin-token", ADMIN])
        .env("DEMO_SECRET_FOR_TEST", DEMO_SECRET)
        .env("OTHER_SECRET_FOR_TEST", "a-typo-in-the-other-secret-000031")
        .start()
        .await;

    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/prometheus/datacube-rules.yml");
    let prom = Prometheus::start(&served.base, &[&rules]);
    let refused = prom
        .wait_for(
            "datacube_sync_account_outcome{outcome=\"credentials\"} == 1",
            |r| !r.is_empty(),
        )
        .await;
    let appids: Vec<&str> = refused
        .iter()
        .map(|s| s["metric"]["appid"].as_str().unwrap())
        .collect();
    assert_eq!(appids, [OTHER], "{refused:?}");
    prom.wait_for(
        &format!("datacube_sync_account_outcome{{appid=\"{DEMO_APPID}\",outcome=\"ok\"}} == 1"),
        |r| r.len() == 1,
    )
    .await;
    let firing = prom
        .wait_for(
            "ALERTS{alertname=\"DatacubeMirrorAccountRefused\",alertstate=\"firing\"}",
            |r| !r.is_empty(),
        )
        .await;
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert_eq!(firing[0]["metric"]["appid"], OTHER, "{firing:?}");
    assert_eq!(firing[0]["metric"]["mirror"], "agency", "{firing:?}");

    // Every family has its HELP; the series of fixed labels are there at zero.
    let text = reqwest::get(format!("{}/metrics", served.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP:\n{text}"
        );
    }
    for series in [
        "datacube_sync_runs_total{mirror=\"agency\",outcome=\"failed\"} 0",
        "datacube_sync_runs_total{mirror=\"agency\",outcome=\"partial\"} 1",
        "datacube_quota_refusals_total{api=\"getusersummary\"} 0",
        "datacube_tokens_issued_total{kind=\"stable\"} 0",
        "datacube_ready 1",
    ] {
        assert!(
            text.lines().any(|l| l == series),
            "{series} missing:\n{text}"
        );
    }
    // Rows counted as the run's report counts those new or changed.
    let runs: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/admin/sync/runs", served.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let changed = runs["runs"][0]["report"]["rows_changed"].as_f64().unwrap();
    assert!(changed > 0.0, "{runs:#}");
    let rows = sample(&text, "datacube_sync_rows_total{mirror=\"agency\"}");
    assert_eq!(rows, changed, "{text}");
}
