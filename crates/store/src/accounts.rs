//! Accounts, access tokens, quotas and the change log, on either backend.

use datacube_api::secret::Secret;

use datacube_api::date::{china_date, format_date};
use datacube_api::token::{
    LIFETIME_SECONDS, OVERLAP_SECONDS, STABLE_DAILY_QUOTA, STABLE_FORCE_REFRESH_DAILY,
    STABLE_FORCE_REFRESH_INTERVAL_SECONDS,
};
use jiff::civil::Date;

use crate::db::{p, Db, DbRow};
use crate::{AccountRecord, Issued, Result, StoreError, TokenKind, TokenRecord};

pub(crate) fn add_account(db: &dyn Db, a: &AccountRecord, replace: bool) -> Result<()> {
    if crate::components::component(db, &a.appid)?.is_some() {
        return Err(StoreError::AppidInUse(a.appid.clone(), "a component"));
    }
    let exists = db
        .opt(
            "SELECT 1 FROM account WHERE appid = ?1",
            p![&a.appid],
            |_| Ok(()),
        )?
        .is_some();
    if exists && !replace {
        return Err(StoreError::AccountExists(a.appid.clone()));
    }
    // A new incarnation for a new account; a replaced secret keeps the account's.
    let incarnation = rand::random_range(1..i64::MAX);
    db.exec(
        "INSERT INTO account (appid, secret_hash, verified, created_at, incarnation)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (appid) DO UPDATE SET secret_hash = excluded.secret_hash,
                                           verified = excluded.verified",
        p![
            &a.appid,
            &a.secret_hash,
            a.verified,
            a.created_at,
            incarnation
        ],
    )?;
    Ok(())
}

/// Refuses a write for `appid` unless the account exists — as `incarnation`, when given —
/// now, inside the write's transaction: what began before a removal ends with nothing
/// written ([`StoreError::AccountGone`]).
pub(crate) fn fence(tx: &dyn Db, appid: &str, incarnation: Option<i64>) -> Result<()> {
    let current = tx.opt(
        "SELECT incarnation FROM account WHERE appid = ?1",
        p![appid],
        |r| r.int(0),
    )?;
    match (current, incarnation) {
        (Some(now), Some(then)) if now != then => Err(StoreError::AccountGone(appid.to_owned())),
        (Some(_), _) => Ok(()),
        (None, _) => Err(StoreError::AccountGone(appid.to_owned())),
    }
}

/// Replaces the secret hash of account (or, with `component`, component) `appid` by `new` if
/// it is still `old`; returns whether it was.
pub(crate) fn replace_secret_hash(
    component: bool,
    db: &dyn Db,
    appid: &str,
    old: &str,
    new: &str,
) -> Result<bool> {
    let sql = if component {
        "UPDATE component SET secret_hash = ?3 WHERE appid = ?1 AND secret_hash = ?2"
    } else {
        "UPDATE account SET secret_hash = ?3 WHERE appid = ?1 AND secret_hash = ?2"
    };
    Ok(db.exec(sql, p![appid, old, new])? > 0)
}

pub(crate) fn account(db: &dyn Db, appid: &str) -> Result<Option<AccountRecord>> {
    db.opt(
        "SELECT appid, secret_hash, verified, created_at, incarnation FROM account
         WHERE appid = ?1",
        p![appid],
        account_from_row,
    )
}

pub(crate) fn accounts(db: &dyn Db) -> Result<Vec<AccountRecord>> {
    db.all(
        "SELECT appid, secret_hash, verified, created_at, incarnation FROM account
         ORDER BY appid",
        p![],
        account_from_row,
    )
}

pub(crate) fn token(db: &dyn Db, token: &str) -> Result<Option<TokenRecord>> {
    db.opt(
        "SELECT token, appid, kind, issued_at, expires_at, invalid_after, component
         FROM token WHERE token = ?1",
        p![token],
        token_from_row,
    )
}

pub(crate) fn issue_basic_token(
    tx: &dyn Db,
    (appid, incarnation): (&str, i64),
    token: String,
    now: i64,
    daily_quota: u32,
) -> Result<Issued> {
    fence(tx, appid, Some(incarnation))?;
    let day = format_date(china_date(now));
    if !take(tx, appid, "token", &day, u64::from(daily_quota), now)? {
        return Ok(Issued::QuotaExceeded);
    }
    // The previous tokens stay valid for the hand-over, then answer 40001.
    tx.exec(
        "UPDATE token SET invalid_after = ?3
         WHERE appid = ?1 AND kind = 'basic' AND invalid_after IS NULL AND expires_at > ?2",
        p![appid, now, now + OVERLAP_SECONDS],
    )?;
    insert_token(tx, &token, appid, TokenKind::Basic, now)?;
    Ok(Issued::Token {
        token: Secret::new(token),
        expires_in: LIFETIME_SECONDS,
    })
}

pub(crate) fn stable_token(
    tx: &dyn Db,
    (appid, incarnation): (&str, i64),
    candidate: String,
    now: i64,
    force_refresh: bool,
) -> Result<Issued> {
    fence(tx, appid, Some(incarnation))?;
    let day = format_date(china_date(now));
    if !take(
        tx,
        appid,
        "stable_token",
        &day,
        u64::from(STABLE_DAILY_QUOTA),
        now,
    )? {
        return Ok(Issued::QuotaExceeded);
    }
    // The current one: issued by now (a token issued when the emulated clock stood later is
    // not current once it was moved back) and not expired.
    let current: Option<TokenRecord> = tx.opt(
        "SELECT token, appid, kind, issued_at, expires_at, invalid_after, component FROM token
         WHERE appid = ?1 AND kind = 'stable' AND invalid_after IS NULL AND expires_at > ?2
           AND issued_at <= ?2
         ORDER BY issued_at DESC, rowid DESC LIMIT 1",
        p![appid, now],
        token_from_row,
    )?;
    // Never more than a token's lifetime, whatever the clock did.
    let reuse = |t: TokenRecord| Issued::Token {
        expires_in: (t.expires_at - now).clamp(0, LIFETIME_SECONDS),
        token: t.token,
    };
    let outcome = if force_refresh {
        let last_force: Option<i64> = tx.one(
            "SELECT MAX(last_at) FROM quota WHERE appid = ?1 AND api = 'stable_force'",
            p![appid],
            |r| r.opt_int(0),
        )?;
        let too_soon =
            last_force.is_some_and(|at| now - at < STABLE_FORCE_REFRESH_INTERVAL_SECONDS);
        match current {
            // "否则不会刷新": too soon, the current token comes back unchanged.
            Some(t) if too_soon => reuse(t),
            _ if quota_used(tx, appid, "stable_force", &day)?
                >= u64::from(STABLE_FORCE_REFRESH_DAILY) =>
            {
                Issued::QuotaExceeded
            }
            _ => {
                quota_bump(tx, appid, "stable_force", &day, 1, now)?;
                // A forced refresh invalidates the previous token at once.
                tx.exec(
                    "UPDATE token SET invalid_after = ?2
                     WHERE appid = ?1 AND kind = 'stable' AND invalid_after IS NULL",
                    p![appid, now],
                )?;
                insert_token(tx, &candidate, appid, TokenKind::Stable, now)?;
                Issued::Token {
                    token: Secret::new(candidate),
                    expires_in: LIFETIME_SECONDS,
                }
            }
        }
    } else {
        match current {
            Some(t) if now < t.expires_at - OVERLAP_SECONDS => reuse(t),
            // None yet, or within its last 5 minutes: a new token. The old one keeps its own
            // expiry, so both work during the hand-over.
            _ => {
                insert_token(tx, &candidate, appid, TokenKind::Stable, now)?;
                Issued::Token {
                    token: Secret::new(candidate),
                    expires_in: LIFETIME_SECONDS,
                }
            }
        }
    };
    Ok(outcome)
}

/// Takes one use of `api` if fewer than `limit` were taken on `day`.
pub(crate) fn quota_take(
    tx: &dyn Db,
    (appid, incarnation): (&str, i64),
    api: &str,
    day: Date,
    limit: u64,
) -> Result<bool> {
    fence(tx, appid, Some(incarnation))?;
    take(tx, appid, api, &format_date(day), limit, 0)
}

/// Takes one use of `api` on `day` (at `now`) if fewer than `limit` were taken.
fn take(tx: &dyn Db, appid: &str, api: &str, day: &str, limit: u64, now: i64) -> Result<bool> {
    if quota_used(tx, appid, api, day)? >= limit {
        return Ok(false);
    }
    quota_bump(tx, appid, api, day, 1, now)?;
    Ok(true)
}

/// Records that `appid`'s statistics changed: it gets the next change number, so servers
/// (this process's and other instances') drop its cached answers. Numbers are committed in
/// the order they are drawn ([`Db::log_change`]).
pub(crate) fn bump_change(tx: &dyn Db, appid: &str) -> Result<()> {
    tx.log_change(appid)
}

/// Accounts whose statistics changed after change `seq`, with their latest change number and
/// the incarnation the account is now (`None`: removed).
pub(crate) fn changes_since(db: &dyn Db, seq: i64) -> Result<Vec<(String, i64, Option<i64>)>> {
    db.all(
        "SELECT c.appid, c.seq, a.incarnation FROM stat_change c
         LEFT JOIN account a ON a.appid = c.appid
         WHERE c.seq > ?1 ORDER BY c.seq",
        p![seq],
        |r| Ok((r.text(0)?.to_owned(), r.int(1)?, r.opt_int(2)?)),
    )
}

fn account_from_row(r: &dyn DbRow) -> Result<AccountRecord> {
    Ok(AccountRecord {
        appid: r.text(0)?.to_owned(),
        secret_hash: r.text(1)?.to_owned(),
        verified: r.int(2)? != 0,
        created_at: r.int(3)?,
        incarnation: r.int(4)?,
    })
}

fn token_from_row(r: &dyn DbRow) -> Result<TokenRecord> {
    Ok(TokenRecord {
        token: Secret::new(r.text(0)?),
        appid: r.text(1)?.to_owned(),
        kind: TokenKind::parse(r.text(2)?),
        issued_at: r.int(3)?,
        expires_at: r.int(4)?,
        invalid_after: r.opt_int(5)?,
        component: r.opt_text(6)?.map(str::to_owned),
    })
}

fn insert_token(tx: &dyn Db, token: &str, appid: &str, kind: TokenKind, now: i64) -> Result<()> {
    tx.exec(
        "INSERT INTO token (token, appid, kind, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        p![token, appid, kind.as_str(), now, now + LIFETIME_SECONDS],
    )?;
    Ok(())
}

fn quota_used(tx: &dyn Db, appid: &str, api: &str, day: &str) -> Result<u64> {
    Ok(tx
        .opt(
            "SELECT used FROM quota WHERE appid = ?1 AND api = ?2 AND day = ?3",
            p![appid, api, day],
            |r| r.int(0),
        )?
        .unwrap_or(0) as u64)
}

fn quota_bump(tx: &dyn Db, appid: &str, api: &str, day: &str, n: u64, now: i64) -> Result<()> {
    tx.exec(
        "INSERT INTO quota (appid, api, day, used, last_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (appid, api, day) DO UPDATE SET
             used = quota.used + excluded.used,
             last_at = CASE WHEN excluded.last_at > quota.last_at
                            THEN excluded.last_at ELSE quota.last_at END",
        p![appid, api, day, n, now],
    )?;
    Ok(())
}
