//! Migrations. Each entry moves the schema one version up; `PRAGMA user_version` records where
//! a database stands. Never edit an entry that has shipped: add a new one.

/// Migrations, in order; `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: accounts, tokens, quotas, statistics rows.
    r#"
    CREATE TABLE account (
        appid        TEXT PRIMARY KEY,
        secret_hash  TEXT NOT NULL,
        verified     INTEGER NOT NULL,
        created_at   INTEGER NOT NULL
    );
    CREATE TABLE token (
        token         TEXT PRIMARY KEY,
        appid         TEXT NOT NULL,
        kind          TEXT NOT NULL,          -- 'basic' | 'stable'
        issued_at     INTEGER NOT NULL,
        expires_at    INTEGER NOT NULL,
        invalid_after INTEGER                 -- NULL while the token is the latest
    );
    CREATE INDEX token_by_appid ON token (appid, kind, issued_at);
    CREATE TABLE quota (
        appid TEXT NOT NULL,
        api   TEXT NOT NULL,
        day   TEXT NOT NULL,                  -- China-time YYYY-MM-DD
        used  INTEGER NOT NULL,
        last_at INTEGER NOT NULL DEFAULT 0,   -- Unix seconds of the last use
        PRIMARY KEY (appid, api, day)
    ) WITHOUT ROWID;
    -- One row of one endpoint's answer, already in WeChat's byte form. The primary key is the
    -- natural key and also the serving order: (date, hour, key) ascending.
    CREATE TABLE stat_row (
        appid     TEXT NOT NULL,
        endpoint  INTEGER NOT NULL,           -- datacube_api::Endpoint::id()
        ref_date  TEXT NOT NULL,              -- YYYY-MM-DD
        ref_hour  INTEGER NOT NULL,           -- 0..23, or -1 for non-hourly endpoints
        row_key   TEXT NOT NULL,
        json      TEXT NOT NULL,
        PRIMARY KEY (appid, endpoint, ref_date, ref_hour, row_key)
    ) WITHOUT ROWID;
    "#,
    // 2: which accounts' statistics changed, in commit order, so that servers can drop exactly
    // the cached answers that went stale (also those written by another process or instance).
    r#"
    CREATE TABLE stat_change (
        appid TEXT PRIMARY KEY,
        seq   INTEGER NOT NULL
    );
    CREATE INDEX stat_change_by_seq ON stat_change (seq);
    "#,
    // 3: events, the source of computed statistics. `id` de-duplicates per account; `day` is the
    // China-time date, for recomputing a window.
    r#"
    CREATE TABLE event (
        seq   INTEGER PRIMARY KEY,
        appid TEXT NOT NULL,
        id    TEXT,
        time  INTEGER NOT NULL,
        day   TEXT NOT NULL,
        kind  TEXT NOT NULL,
        body  TEXT NOT NULL
    );
    CREATE UNIQUE INDEX event_by_id ON event (appid, id) WHERE id IS NOT NULL;
    CREATE INDEX event_by_day ON event (appid, day);
    CREATE INDEX event_by_kind ON event (appid, kind, day);
    "#,
    // 4: the event log (crate::events): events kept compactly per account, class and China day,
    // and a de-duplication index of their ids. The events of version 3's `event` table are
    // moved here by `move_v3_events` (below), which then drops that table.
    r#"
    CREATE TABLE event_chunk (
        seq   INTEGER PRIMARY KEY,
        appid TEXT NOT NULL,
        class INTEGER NOT NULL,               -- follow 0, message 1, reply 2, publish 3, article 4
        day   INTEGER NOT NULL,               -- China-time date, days since 1970-01-01
        data  BLOB NOT NULL                   -- events, postcard-encoded back to back
    );
    CREATE INDEX event_chunk_by_day ON event_chunk (appid, class, day);
    CREATE TABLE event_id (
        appid  TEXT NOT NULL,
        bucket INTEGER NOT NULL,              -- top id_bits bits of the id's xxh3 hash
        data   BLOB NOT NULL,                 -- sorted (hash u64, day * 8 + class u32), LE
        PRIMARY KEY (appid, bucket)
    );
    CREATE TABLE event_app (
        appid   TEXT PRIMARY KEY,
        id_bits INTEGER NOT NULL,
        ids     INTEGER NOT NULL
    );
    "#,
    // 5: statistics rows kept one database row per account, endpoint and day (crate::days);
    // `days::move_v4_rows` moves version 4's stat_row here and drops it.
    r#"
    CREATE TABLE stat_day (
        appid    TEXT NOT NULL,
        endpoint INTEGER NOT NULL,            -- datacube_api::Endpoint::id()
        ref_date TEXT NOT NULL,               -- YYYY-MM-DD
        n        INTEGER NOT NULL,            -- rows
        rows     TEXT NOT NULL,               -- the rows' JSON, comma-joined, in serving order
        keys     BLOB NOT NULL,               -- each row's (hour, natural key, length), postcard
        PRIMARY KEY (appid, endpoint, ref_date)
    ) WITHOUT ROWID;
    "#,
    // 6: event chunks compressed (crate::codec): `codec` 0 is plain postcard (chunks written
    // before version 6), 1 is zstd. Statistics days may be compressed too: `stat_day.rows` is
    // then a BLOB (zstd of the text) instead of TEXT, and `keys` is zstd as well. The id index
    // gets a second level: one delta of new ids per batch, merged into the buckets in groups.
    r#"
    ALTER TABLE event_chunk ADD COLUMN codec INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE event_id_delta (
        seq   INTEGER PRIMARY KEY,
        appid TEXT NOT NULL,
        data  BLOB NOT NULL                   -- sorted (hash u64, day * 8 + class u32), LE
    );
    CREATE INDEX event_id_delta_by_app ON event_id_delta (appid, seq);
    -- Periods whose statistics wait for a recompute: events stored with deferred statistics
    -- (`datacube push` and `proxy` record continuously and recompute every few seconds).
    CREATE TABLE stat_pending (
        appid TEXT NOT NULL,
        class INTEGER NOT NULL,
        lo    INTEGER NOT NULL,               -- first and last China day touched
        hi    INTEGER NOT NULL,
        PRIMARY KEY (appid, class)
    );
    -- Days of an endpoint mirrored by `datacube sync` whose figures are final: a later sync
    -- does not fetch them again. Ranges of China days, merged.
    CREATE TABLE sync_final (
        appid    TEXT NOT NULL,
        endpoint INTEGER NOT NULL,
        lo       INTEGER NOT NULL,
        hi       INTEGER NOT NULL,
        PRIMARY KEY (appid, endpoint, lo)
    );
    -- Every account with events has an event_app row (before, only those with ids did).
    INSERT OR IGNORE INTO event_app (appid, id_bits, ids) SELECT DISTINCT appid, 0, 0 FROM event_chunk;
    "#,
    // 7: third-party platforms (components): their tickets, codes, grants and tokens.
    COMPONENTS,
    // 8: the runs of `datacube sync` (one-shot and daemon), each with its report. A daemon's
    // run takes its (mirror, slot, attempt) first, so that instances sharing a database run
    // each scheduled mirror once.
    SYNC_RUNS,
    // 9: accounts' incarnations, fencing writes against a removal (crate::accounts::fence).
    INCARNATIONS,
    // 10: the statistics as SQL views (crate::views), run after the schema changes; days
    // stored compressed are made plain first (days::make_plain).
    STAT_VIEWS,
    // 11: the id index stamped (each delta when written, the buckets whenever rewritten), so
    // that a process may keep what it has read (crate::events::IdCache).
    DELTA_STAMPS,
    // 12: the token table keyed by appid first, as every table of an account's data (the
    // event and id logs are rowid tables: their key is the rowid, their index leads with appid).
    TOKEN_BY_ACCOUNT,
];

/// Version 12: the token table keyed by `(appid, token)` (it was the token), each token still
/// unique by an index of its own; rowids kept (the newest token of a kind is the last one in
/// rowid order when two share a second).
pub(crate) const TOKEN_BY_ACCOUNT: &str = r#"
    CREATE TABLE token_by_account (
        token         TEXT NOT NULL,
        appid         TEXT NOT NULL,
        kind          TEXT NOT NULL,
        issued_at     INTEGER NOT NULL,
        expires_at    INTEGER NOT NULL,
        invalid_after INTEGER,
        component     TEXT,
        PRIMARY KEY (appid, token)
    );
    INSERT INTO token_by_account
        (rowid, token, appid, kind, issued_at, expires_at, invalid_after, component)
        SELECT rowid, token, appid, kind, issued_at, expires_at, invalid_after, component
        FROM token;
    DROP TABLE token;
    ALTER TABLE token_by_account RENAME TO token;
    CREATE INDEX token_by_appid ON token (appid, kind, issued_at);
    CREATE UNIQUE INDEX token_by_token ON token (token);
"#;

/// Version 11 (PostgreSQL's 6): a random stamp per id delta, 0 for those written before (the
/// index that lists an account's deltas holds it, so that listing them reads no delta), and
/// one per account's buckets, changed whenever they are rewritten (0: not stamped yet).
pub(crate) const DELTA_STAMPS: &str = r#"
    ALTER TABLE event_app ADD COLUMN id_stamp INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE event_id_delta ADD COLUMN stamp INTEGER NOT NULL DEFAULT 0;
    DROP INDEX event_id_delta_by_app;
    CREATE INDEX event_id_delta_by_app ON event_id_delta (appid, seq, stamp);
"#;

/// Version 10 (PostgreSQL's 5): the statistics as SQL views. The views themselves are
/// generated from the row shapes ([`crate::views::script`]) and created after the last
/// migration's schema change; a later migration that changes them runs the script again.
pub(crate) const STAT_VIEWS: &str = r#"
    -- The last ready day of an emulated clock (`serve --clock`), which the views answer up to
    -- as the API does; none: the database server's clock.
    CREATE TABLE view_clock (
        id         INTEGER PRIMARY KEY,
        last_ready TEXT NOT NULL
    );
"#;

/// The SQLite version from which the views exist.
pub(crate) const VIEWS_SINCE: i64 = 10;

/// Moves the events of the version-3 `event` table (JSON lines) into the event log, a page at
/// a time, and drops the table. Their statistics were computed when they were accepted.
pub(crate) fn move_v3_events(tx: &rusqlite::Connection) -> crate::Result<()> {
    const PAGE: i64 = 50_000;
    let mut after = i64::MIN;
    loop {
        let mut page: Vec<(i64, String)> = Vec::new();
        {
            let mut stmt =
                tx.prepare("SELECT seq, body FROM event WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
            let mut rows = stmt.query(rusqlite::params![after, PAGE])?;
            while let Some(row) = rows.next()? {
                page.push((row.get(0)?, row.get(1)?));
            }
        }
        let Some(&(last, _)) = page.last() else {
            break;
        };
        after = last;
        let events: Vec<datacube_engine::Event> = page
            .iter()
            .filter_map(|(_, body)| match datacube_engine::parse_line(body) {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::error!(error = %e, "a stored event no longer parses; left out");
                    None
                }
            })
            .collect();
        crate::events::append(
            tx,
            &mut crate::events::Batch::prepare(events)?.unchecked(),
            &crate::events::IdCache::default(),
        )?;
    }
    tx.execute_batch("DROP TABLE event")?;
    Ok(())
}

/// Version 9 (PostgreSQL's 4, through [`for_postgres`]): which incarnation of an appid an
/// account is — a random number drawn when it is added, so that a write begun for an account
/// that was removed (and perhaps added again) meanwhile is refused. Accounts of older versions
/// are incarnation 0.
pub(crate) const INCARNATIONS: &str = r#"
    ALTER TABLE account ADD COLUMN incarnation INTEGER NOT NULL DEFAULT 0;
"#;

/// Version 7 (PostgreSQL's 2, through [`for_postgres`]): third-party platforms.
pub(crate) const COMPONENTS: &str = r#"
    CREATE TABLE component (
        appid       TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL,
        token       TEXT NOT NULL,            -- the push Token
        aes_key     TEXT NOT NULL,            -- the EncodingAESKey (43 characters)
        event_url   TEXT,                     -- 授权事件接收URL: tickets and authorization pushes
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE component_ticket (
        ticket    TEXT PRIMARY KEY,
        component TEXT NOT NULL,
        issued_at INTEGER NOT NULL
    );
    CREATE INDEX component_ticket_by_component ON component_ticket (component, issued_at);
    -- Pre-auth codes and authorization codes: single use.
    CREATE TABLE component_code (
        code       TEXT PRIMARY KEY,
        kind       TEXT NOT NULL,             -- 'preauth' | 'auth'
        component  TEXT NOT NULL,
        authorizer TEXT,
        expires_at INTEGER NOT NULL,
        used       INTEGER NOT NULL DEFAULT 0
    );
    -- An account's authorization of a component: the permission sets granted.
    CREATE TABLE component_grant (
        component     TEXT NOT NULL,
        authorizer    TEXT NOT NULL,
        sets          TEXT NOT NULL,          -- funcscope_category ids, comma-separated, in order
        refresh_token TEXT NOT NULL,
        auth_time     INTEGER NOT NULL,
        PRIMARY KEY (component, authorizer)
    );
    -- Component tokens (kind 'component', appid = the component) and authorizer tokens (kind
    -- 'authorizer', appid = the account, component = the component acting for it).
    ALTER TABLE token ADD COLUMN component TEXT;
    "#;

/// Version 8 (PostgreSQL's 3, through [`for_postgres`]): the runs of `datacube sync`.
pub(crate) const SYNC_RUNS: &str = r#"
    CREATE TABLE sync_run (
        id       INTEGER PRIMARY KEY,
        mirror   TEXT NOT NULL,               -- the mirror's name; '' for a one-shot sync
        slot     TEXT,                        -- a daemon's scheduled China day; NULL one-shot
        attempt  INTEGER NOT NULL,              -- 1 for a slot's first try
        started  INTEGER NOT NULL,              -- Unix seconds, by the (emulated) clock
        beat     INTEGER NOT NULL,              -- the last sign of life of the run under way
        finished INTEGER,                       -- NULL while it runs (or if it died)
        outcome  TEXT,                        -- 'ok' | 'partial' | 'failed' | 'interrupted'
        report   TEXT                         -- the run report, JSON
    );
    CREATE UNIQUE INDEX sync_run_slot ON sync_run (mirror, slot, attempt);
    CREATE INDEX sync_run_by_mirror ON sync_run (mirror, id);
    "#;

/// Whether a schema at version `found` needs migrating to `known`; one newer than this binary
/// knows is an error.
pub(crate) fn pending(found: i64, known: i64) -> crate::Result<bool> {
    if found > known {
        return Err(crate::StoreError::TooNew { found, known });
    }
    Ok(found < known)
}

/// A migration written for SQLite, in PostgreSQL's types: 64-bit integers, and a generated
/// key for `INTEGER PRIMARY KEY`.
pub(crate) fn for_postgres(sqlite: &str) -> String {
    sqlite
        .replace("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY")
        .replace("INTEGER", "BIGINT")
}
