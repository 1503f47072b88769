//! Clearing data: a test suite's reset between tests (`POST /admin/reset`), and removing one
//! account (`DELETE /admin/accounts/<appid>`, `datacube account remove`). Every account whose
//! data goes has its change logged, so that every server drops its cached answers.

use crate::accounts::bump_change;
use crate::db::{p, Db};
use crate::Result;

/// What an account's rows are kept in, by `appid`.
const PER_ACCOUNT: [&str; 10] = [
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
