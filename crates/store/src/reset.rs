//! Clearing data: a test suite's reset between tests (`POST /admin/reset`), and removing one
//! account (`DELETE /admin/accounts/<appid>`, `datacube account remove`). Every account whose
//! data goes has its change logged, so that every server drops its cached answers.

use crate::accounts::bump_change;
use crate::db::{p, Db};
use crate::Result;

/// What an account's rows are kept in, by `appid`.
const PER_ACCOUNT: [&str; 11] = [
    "DELETE FROM event_chunk WHERE appid = ?1",
    "DELETE FROM event_id WHERE appid = ?1",
    "DELETE FROM event_id_delta WHERE appid = ?1",
    "DELETE FROM event_app WHERE appid = ?1",
    "DELETE FROM stat_day WHERE appid = ?1",
    "DELETE FROM stat_pending WHERE appid = ?1",
    "DELETE FROM quota WHERE appid = ?1",
    "DELETE FROM sync_final WHERE appid = ?1",
    "DELETE FROM token WHERE appid = ?1",
    "DELETE FROM component_grant WHERE authorizer = ?1",
    "DELETE FROM component_code WHERE authorizer = ?1",
];

/// What a reset clears: everything but accounts and components.
const DATA: [&str; 12] = [
    "DELETE FROM event_chunk",
    "DELETE FROM event_id",
    "DELETE FROM event_id_delta",
    "DELETE FROM event_app",
    "DELETE FROM stat_day",
    "DELETE FROM stat_pending",
    "DELETE FROM quota",
    "DELETE FROM sync_final",
    "DELETE FROM sync_run",
    "DELETE FROM token",
    "DELETE FROM component_ticket",
    "DELETE FROM component_code",
];

/// Clears events, statistics, tokens, quotas, sync records and components' tickets and codes;
/// with `accounts`, the accounts, components and their grants too. Returns how many accounts had
/// their data cleared.
pub(crate) fn reset(tx: &dyn Db, accounts: bool) -> Result<usize> {
    // Every account that has or had anything: its cached answers must go everywhere.
    let appids: Vec<String> = tx.all(
        "SELECT appid FROM account UNION SELECT appid FROM stat_change",
        p![],
        |r| Ok(r.text(0)?.to_owned()),
    )?;
    for sql in DATA {
        tx.exec(sql, p![])?;
    }
    if accounts {
        tx.exec("DELETE FROM component_grant", p![])?;
        tx.exec("DELETE FROM component", p![])?;
        tx.exec("DELETE FROM account", p![])?;
    }
    for appid in &appids {
        bump_change(tx, appid)?;
    }
    Ok(appids.len())
}

/// Removes `appid` and everything of it (events, statistics, tokens, quotas, sync records,
/// the grants it gave); returns whether it existed.
pub(crate) fn remove_account(tx: &dyn Db, appid: &str) -> Result<bool> {
    let existed = tx.exec("DELETE FROM account WHERE appid = ?1", p![appid])? > 0;
    for sql in PER_ACCOUNT {
        tx.exec(sql, p![appid])?;
    }
    if existed {
        bump_change(tx, appid)?;
    }
    Ok(existed)
}

#[cfg(test)]
mod tests {
    use crate::{AccountRecord, Batch, Store, StoreError};
    use datacube_api::Endpoint;
    use jiff::civil::date;

    fn account(appid: &str) -> AccountRecord {
        AccountRecord {
            appid: appid.into(),
            secret_hash: String::new(),
            verified: true,
            created_at: 0,
            incarnation: 0,
        }
    }

    fn events(appid: &str) -> Vec<datacube_engine::Event> {
        datacube_engine::demo::events(appid, date(2024, 4, 29), 3, 1)
            .iter()
            .map(|l| datacube_engine::parse_line(l).unwrap())
            .collect()
    }

    /// Everything a write begun for one incarnation of an account could leave: after a removal
    /// (and after the appid is added again) nothing of it is written.
    #[tokio::test]
    async fn writes_begun_before_a_removal_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::testing::fresh_database(dir.path(), "fence")).unwrap();
        store.add_account(account("wxgone")).await.unwrap();
        store.add_account(account("wxstays")).await.unwrap();
        let old = store.account("wxgone").await.unwrap().unwrap();
        assert_ne!(old.incarnation, 0, "drawn by the store");
        // A batch of both accounts, checked now, stored after the removal and a new account
        // of the same appid.
        let mut both = events("wxgone");
        let gone_events = both.len();
        both.extend(events("wxstays"));
        let stays = store.account("wxstays").await.unwrap().unwrap();
        let batch = Batch::prepare(both.clone()).unwrap().fenced([
            ("wxgone".into(), old.incarnation),
            ("wxstays".into(), stays.incarnation),
        ]);
        assert!(store.remove_account("wxgone").await.unwrap());
        store.add_account(account("wxgone")).await.unwrap();
        let new = store.account("wxgone").await.unwrap().unwrap();
        assert_ne!(new.incarnation, old.incarnation);
        let yesterday = date(2024, 4, 29);
        let outcome = store.ingest_batch(batch, yesterday).await.unwrap();
        assert_eq!(outcome.gone, vec!["wxgone".to_owned()]);
        let accepted = outcome.accepted.iter().filter(|a| **a).count();
        assert_eq!(
            accepted,
            both.len() - gone_events,
            "the other account's are stored"
        );
        // Tokens and quotas taken for the old incarnation are refused too.
        let refused = store.issue_basic_token(&old, "t1".into(), 0, 10).await;
        assert!(
            matches!(refused, Err(StoreError::AccountGone(_))),
            "{refused:?}"
        );
        let refused = store.stable_token(&old, "t2".into(), 0, false).await;
        assert!(
            matches!(refused, Err(StoreError::AccountGone(_))),
            "{refused:?}"
        );
        let refused = store
            .quota_take(&old, "datacube/getusersummary", yesterday, 10)
            .await;
        assert!(
            matches!(refused, Err(StoreError::AccountGone(_))),
            "{refused:?}"
        );
        assert!(store.token("t1").await.unwrap().is_none());
        // The new account has nothing of the old: no statistic, and the old ids are new to it.
        for endpoint in Endpoint::ALL {
            let (_, rows) = store
                .list_rows("wxgone", endpoint, date(2024, 1, 1), yesterday)
                .await
                .unwrap();
            assert_eq!(rows, 0, "{}", endpoint.name());
        }
        let again = store.ingest(events("wxgone"), yesterday).await.unwrap();
        assert!(
            again.accepted.iter().all(|a| *a),
            "no id of the old account is known"
        );
        // Removing it with events of an unfenced batch on the way: refused as well.
        assert!(store.remove_account("wxgone").await.unwrap());
        let outcome = store.ingest(events("wxgone"), yesterday).await.unwrap();
        assert_eq!(outcome.gone, vec!["wxgone".to_owned()]);
        let upsert = store
            .upsert_rows(
                "wxgone",
                Endpoint::GetUserSummary,
                vec![],
                Some(new.incarnation),
            )
            .await;
        assert!(
            matches!(upsert, Err(StoreError::AccountGone(_))),
            "{upsert:?}"
        );
    }
}
