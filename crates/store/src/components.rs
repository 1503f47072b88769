//! Third-party platforms ("components"): their records, verify tickets, pre-auth and
//! authorization codes, the accounts' grants of permission sets, and their tokens (kept in the
//! `token` table beside the accounts' own).

use datacube_api::secret::Secret;

use datacube_api::token::LIFETIME_SECONDS;

use crate::db::{p, Db, DbRow};
use crate::{ComponentRecord, Grant, Result, StoreError, TokenKind};

pub(crate) fn add_component(db: &dyn Db, c: &ComponentRecord) -> Result<()> {
    if crate::accounts::account(db, &c.appid)?.is_some() {
        return Err(StoreError::AppidInUse(c.appid.clone(), "an account"));
    }
    if component(db, &c.appid)?.is_some() {
        return Err(StoreError::AccountExists(c.appid.clone()));
    }
    db.exec(
        "INSERT INTO component (appid, secret_hash, token, aes_key, event_url, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        p![
            &c.appid,
            &c.secret_hash,
            &c.token,
            &c.aes_key,
            c.event_url.as_deref(),
            c.created_at
        ],
    )?;
    Ok(())
}

fn component_from_row(r: &dyn DbRow) -> Result<ComponentRecord> {
    Ok(ComponentRecord {
        appid: r.text(0)?.to_owned(),
        secret_hash: r.text(1)?.to_owned(),
        token: Secret::new(r.text(2)?),
        aes_key: Secret::new(r.text(3)?),
        event_url: r.opt_text(4)?.map(str::to_owned),
        created_at: r.int(5)?,
    })
}

pub(crate) fn component(db: &dyn Db, appid: &str) -> Result<Option<ComponentRecord>> {
    db.opt(
        "SELECT appid, secret_hash, token, aes_key, event_url, created_at
         FROM component WHERE appid = ?1",
        p![appid],
        component_from_row,
    )
}

pub(crate) fn components(db: &dyn Db) -> Result<Vec<ComponentRecord>> {
    db.all(
        "SELECT appid, secret_hash, token, aes_key, event_url, created_at
         FROM component ORDER BY appid",
        p![],
        component_from_row,
    )
}

pub(crate) fn add_ticket(tx: &dyn Db, component: &str, ticket: &str, now: i64) -> Result<()> {
    tx.exec(
        "INSERT INTO component_ticket (ticket, component, issued_at) VALUES (?1, ?2, ?3)",
        p![ticket, component, now],
    )?;
    // Tickets live 12 hours: older ones are of no use to anyone.
    tx.exec(
        "DELETE FROM component_ticket WHERE component = ?1 AND issued_at < ?2",
        p![component, now - 2 * 86_400],
    )?;
    Ok(())
}

pub(crate) fn ticket_issued_at(db: &dyn Db, component: &str, ticket: &str) -> Result<Option<i64>> {
    db.opt(
        "SELECT issued_at FROM component_ticket WHERE ticket = ?1 AND component = ?2",
        p![ticket, component],
        |r| r.int(0),
    )
}

pub(crate) fn latest_ticket_at(db: &dyn Db, component: &str) -> Result<Option<i64>> {
    db.one(
        "SELECT MAX(issued_at) FROM component_ticket WHERE component = ?1",
        p![component],
        |r| r.opt_int(0),
    )
}

pub(crate) fn issue_token(
    tx: &dyn Db,
    appid: &str,
    component: Option<&str>,
    kind: TokenKind,
    token: &str,
    now: i64,
) -> Result<()> {
    // An authorizer's token only while its grant stands (a removed account has none).
    if let (TokenKind::Authorizer, Some(component)) = (kind, component) {
        if grant(tx, component, appid)?.is_none() {
            return Err(crate::StoreError::AccountGone(appid.to_owned()));
        }
    }
    tx.exec(
        "INSERT INTO token (token, appid, kind, issued_at, expires_at, component)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        p![
            token,
            appid,
            kind.as_str(),
            now,
            now + LIFETIME_SECONDS,
            component
        ],
    )?;
    Ok(())
}

pub(crate) fn new_code(
    tx: &dyn Db,
    code: &str,
    kind: &str,
    component: &str,
    authorizer: Option<&str>,
    expires_at: i64,
) -> Result<()> {
    // An authorizer's code only while the account is there (a removal takes its codes).
    if let Some(authorizer) = authorizer {
        crate::accounts::fence(tx, authorizer, None)?;
    }
    tx.exec(
        "INSERT INTO component_code (code, kind, component, authorizer, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        p![code, kind, component, authorizer, expires_at],
    )?;
    Ok(())
}

/// What a code turned out to be when used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeUse {
    /// No such code of this kind for this component (61009).
    Unknown,
    /// Expired, or used before (61010).
    Expired,
    /// Valid, and now used; with the account it names, if any.
    Used(Option<String>),
}

pub(crate) fn use_code(
    tx: &dyn Db,
    code: &str,
    kind: &str,
    component: &str,
    now: i64,
) -> Result<CodeUse> {
    let found: Option<(Option<String>, i64, i64)> = tx.opt(
        "SELECT authorizer, expires_at, used FROM component_code
         WHERE code = ?1 AND kind = ?2 AND component = ?3",
        p![code, kind, component],
        |r| Ok((r.opt_text(0)?.map(str::to_owned), r.int(1)?, r.int(2)?)),
    )?;
    Ok(match found {
        None => CodeUse::Unknown,
        Some((_, expires_at, used)) if used != 0 || now >= expires_at => CodeUse::Expired,
        Some((authorizer, _, _)) => {
            tx.exec(
                "UPDATE component_code SET used = 1 WHERE code = ?1",
                p![code],
            )?;
            CodeUse::Used(authorizer)
        }
    })
}

fn grant_from_row(r: &dyn DbRow) -> Result<Grant> {
    Ok(Grant {
        component: r.text(0)?.to_owned(),
        authorizer: r.text(1)?.to_owned(),
        sets: r
            .text(2)?
            .split(',')
            .filter_map(|s| s.parse().ok())
            .collect(),
        refresh_token: Secret::new(r.text(3)?),
        auth_time: r.int(4)?,
    })
}

/// Records (or replaces) `authorizer`'s grant of `sets` to `component`.
pub(crate) fn put_grant(tx: &dyn Db, g: &Grant, incarnation: Option<i64>) -> Result<()> {
    crate::accounts::fence(tx, &g.authorizer, incarnation)?;
    let sets = g
        .sets
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    tx.exec(
        "INSERT INTO component_grant (component, authorizer, sets, refresh_token, auth_time)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (component, authorizer) DO UPDATE SET sets = excluded.sets,
             refresh_token = excluded.refresh_token, auth_time = excluded.auth_time",
        p![
            &g.component,
            &g.authorizer,
            &sets,
            &g.refresh_token,
            g.auth_time
        ],
    )?;
    Ok(())
}

pub(crate) fn grant(db: &dyn Db, component: &str, authorizer: &str) -> Result<Option<Grant>> {
    db.opt(
        "SELECT component, authorizer, sets, refresh_token, auth_time FROM component_grant
         WHERE component = ?1 AND authorizer = ?2",
        p![component, authorizer],
        grant_from_row,
    )
}

pub(crate) fn grants(db: &dyn Db, component: &str) -> Result<Vec<Grant>> {
    db.all(
        "SELECT component, authorizer, sets, refresh_token, auth_time FROM component_grant
         WHERE component = ?1 ORDER BY auth_time, authorizer",
        p![component],
        grant_from_row,
    )
}

/// Ends `authorizer`'s grant to `component`: the grant goes, and so do its tokens (40001 from
/// now on). Whether there was a grant.
pub(crate) fn revoke(tx: &dyn Db, component: &str, authorizer: &str, now: i64) -> Result<bool> {
    let removed = tx.exec(
        "DELETE FROM component_grant WHERE component = ?1 AND authorizer = ?2",
        p![component, authorizer],
    )?;
    tx.exec(
        "UPDATE token SET invalid_after = ?3
         WHERE appid = ?1 AND component = ?2 AND kind = 'authorizer' AND invalid_after IS NULL",
        p![authorizer, component, now],
    )?;
    Ok(removed > 0)
}
