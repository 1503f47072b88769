//! The blocking work behind [`Store`]'s methods: reads and write transactions on either
//! backend, and the steps of ingestion that hold them.

use super::*;

impl Inner {
    pub(crate) fn read<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(s) => s.read(f),
            Backend::Postgres(p) => p.read(f),
        }
    }

    /// Runs `f` in a write transaction holding the locks of `scope` (on PostgreSQL; SQLite
    /// has one writer at a time), committed if `f` succeeds.
    pub(crate) fn write<T>(
        &self,
        scope: &Scope,
        f: impl FnOnce(&dyn Db) -> Result<T>,
    ) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(s) => s.write(f),
            Backend::Postgres(p) => p.write(scope, f),
        }
    }

    pub(crate) fn ingest(&self, mut batch: Batch, yesterday: Date) -> Result<IngestOutcome> {
        let accepted = self.write(&Scope::accounts(batch.appids()), |tx| {
            events::store_batch(tx, &mut batch, yesterday, &self.ids, |appid| {
                accounts::bump_change(tx, appid)
            })
        })?;
        let gone = batch.gone().to_vec();
        // Freeing a large batch's events takes a while: not on the writer's time.
        if batch.len() >= 10_000 {
            std::thread::spawn(move || drop(batch));
        }
        Ok(IngestOutcome { accepted, gone })
    }

    /// Stores `batch` with its statistics pending (see [`Store::ingest_deferred`]); with
    /// `log_changes`, each account that stored events is in the change log at once (servers
    /// drop its cached answers, whose next reading settles what is pending).
    pub(crate) fn ingest_deferred(
        &self,
        mut batch: Batch,
        log_changes: bool,
    ) -> Result<IngestOutcome> {
        let accepted = self.write(&Scope::accounts(batch.appids()), |tx| {
            events::store_batch_deferred(tx, &mut batch, &self.ids, |appid| {
                if log_changes {
                    accounts::bump_change(tx, appid)?;
                }
                Ok(())
            })
        })?;
        let gone = batch.gone().to_vec();
        if batch.len() >= 10_000 {
            std::thread::spawn(move || drop(batch));
        }
        Ok(IngestOutcome { accepted, gone })
    }

    /// Stores a bulk load (see [`bulk`]): the sorted events are cut into batches of about
    /// `batch` events, each stored in one transaction, while the next is decoded and prepared
    /// on a thread of its own. Statistics left pending by an earlier load that was cut short
    /// are recomputed first.
    pub(crate) fn ingest_sorted(
        &self,
        sorted: bulk::Sorted,
        fence: &std::collections::HashMap<String, i64>,
        yesterday: Date,
        batch: usize,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<BulkOutcome> {
        let leftovers = self.read(|db| events::due_accounts(db, events::Due::All))?;
        for appid in leftovers {
            self.write(&Scope::account(&appid), |tx| {
                if events::recompute_pending(tx, &appid, yesterday)? {
                    accounts::bump_change(tx, &appid)?;
                }
                Ok(())
            })?;
        }
        let (send, parts) = std::sync::mpsc::sync_channel::<Result<bulk::Part>>(2);
        std::thread::scope(|scope| {
            let producer = std::thread::Builder::new()
                .name("datacube-bulk".into())
                .spawn_scoped(scope, move || bulk::produce(sorted, batch.max(1), &send))
                .map_err(|e| StoreError::Task(format!("no thread for a bulk load: {e}")))?;
            let mut outcome = BulkOutcome::default();
            let mut spread: FxHashSet<String> = FxHashSet::default();
            for part in parts {
                let bulk::Part { batch, partial } = part?;
                let mut batch = batch.fenced_from(fence);
                // The batch's accounts, and those it may complete.
                let scope =
                    Scope::accounts(batch.appids().chain(spread.iter().map(String::as_str)));
                let (accepted, complete) = self.write(&scope, |tx| {
                    events::store_bulk(
                        tx,
                        &mut batch,
                        yesterday,
                        partial.as_deref(),
                        &spread,
                        &self.ids,
                        |a| accounts::bump_change(tx, a),
                    )
                })?;
                for appid in complete {
                    spread.remove(&appid);
                }
                if let Some(appid) = partial {
                    spread.insert(appid);
                }
                let taken = accepted.iter().filter(|a| **a).count() as u64;
                let gone = batch.gone_events as u64;
                outcome.accepted += taken;
                outcome.gone += gone;
                outcome.duplicates += accepted.len() as u64 - taken - gone;
                progress(outcome.accepted + outcome.duplicates);
                if batch.len() >= 10_000 {
                    std::thread::spawn(move || drop(batch));
                }
            }
            producer
                .join()
                .map_err(|_| StoreError::Task("the bulk load's reader panicked".into()))?;
            Ok(outcome)
        })
    }

    /// How many times the live tallies were built from the stored events.
    #[cfg(test)]
    pub(crate) fn live_rebuilds(&self) -> u64 {
        self.live.rebuilds()
    }

    /// Recomputes the pending periods `due` names, one account per transaction: an account's
    /// recompute holds the writer (and the live tallies) for its own time only — the answers
    /// of other accounts settle meanwhile — and one that fails (logged, the first error
    /// returned once the others are done) leaves the others to be flushed. Returns how many
    /// accounts were.
    pub(crate) fn flush_pending(&self, yesterday: Date, due: events::Due) -> Result<usize> {
        // Usually nothing is due: look before writing.
        let accounts = self.read(|db| events::due_accounts(db, due))?;
        let (ready, trigger) = match due {
            events::Due::All => (None, "all"),
            events::Due::Through(ready) => (Some(ready), "readable"),
        };
        let (mut done, mut failed) = (0, None);
        for appid in &accounts {
            match self.flush_account(appid, ready, yesterday, trigger) {
                Ok(flushed) => done += usize::from(flushed),
                Err(e) => {
                    tracing::warn!(appid = %appid, error = %e, "recomputing pending statistics failed");
                    failed.get_or_insert(e);
                }
            }
        }
        failed.map_or(Ok(done), Err)
    }

    /// Recomputes every pending period of `appid` — if it has one on or before `ready`, when
    /// given — in one transaction, timed as `datacube_recompute_seconds{trigger}`. Returns
    /// whether it did.
    fn flush_account(
        &self,
        appid: &str,
        ready: Option<Date>,
        yesterday: Date,
        trigger: &'static str,
    ) -> Result<bool> {
        let started = std::time::Instant::now();
        let tallies = self.live.of(appid);
        let mut live = crate::db::locked(&tallies);
        let flushed = self.write(&Scope::account(appid), |tx| {
            self.live.current(&mut live);
            events::flush_account(tx, yesterday, appid, ready, Some(&mut live), |appid| {
                accounts::bump_change(tx, appid)
            })
        });
        match flushed {
            Ok(true) => metrics::histogram!("datacube_recompute_seconds", "trigger" => trigger)
                .record(started.elapsed().as_secs_f64()),
            Ok(false) => {}
            // The tallies may count what the rolled-back transaction merged: start over.
            Err(_) => *live = Default::default(),
        }
        flushed
    }

    /// The body `{"list":[…]}` of `endpoint`'s rows of `appid` from `begin` to `end` (see
    /// [`Store::list_body`]); with `settle`, what is pending of the account and readable by
    /// then is recomputed first.
    pub(crate) fn list_body(
        &self,
        appid: &str,
        endpoint: Endpoint,
        range: (Date, Date),
        settle: Option<Settle>,
    ) -> Result<String> {
        if let Some(body) = self.settled_body(appid, endpoint, range, settle)? {
            return Ok(body);
        }
        if let Some(settle) = settle {
            self.settle(appid, settle)?;
        }
        self.snapshot(|db| body_of(db, appid, endpoint, range))
    }

    /// The body, read in one snapshot — unless something of the account readable by
    /// `settle.ready` is still pending (`None`: [`Inner::list_body`] settles it first). One
    /// read when nothing is (the usual case): the check comes first in it.
    pub(crate) fn settled_body(
        &self,
        appid: &str,
        endpoint: Endpoint,
        range: (Date, Date),
        settle: Option<Settle>,
    ) -> Result<Option<String>> {
        self.snapshot(|db| {
            if let Some(settle) = settle {
                if events::pending_through(db, appid, settle.ready)? {
                    return Ok(None);
                }
            }
            body_of(db, appid, endpoint, range).map(Some)
        })
    }

    /// Runs `f` in one read snapshot: every statement sees the same commit (a flush committing
    /// meanwhile is seen whole or not at all).
    pub(crate) fn snapshot<T>(&self, f: impl FnOnce(&dyn Db) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(s) => s.snapshot(f),
            Backend::Postgres(p) => p.snapshot(f),
        }
    }

    /// Recomputes what is pending of `appid` and readable by `settle.ready`; returns whether
    /// anything was.
    pub(crate) fn settle(&self, appid: &str, settle: Settle) -> Result<bool> {
        self.flush_account(appid, Some(settle.ready), settle.yesterday, "answer")
    }

    /// Every stored row of `endpoint`, comma-separated in WeChat's order, and how many.
    #[cfg(test)]
    pub(crate) fn all_rows(&self, appid: &str, endpoint: Endpoint) -> Result<(String, usize)> {
        let (first, last) = (jiff::civil::date(1970, 1, 1), jiff::civil::date(9999, 1, 1));
        let mut out = String::new();
        let n = self.read(|db| days::list_into(db, appid, endpoint, first, last, &mut out))?;
        Ok((out, n))
    }
}

impl Inner {
    /// Extends the daily follower rows of every account with events up to `yesterday` (see
    /// [`events::carry_forward`]), one account per transaction; returns how many were.
    pub(crate) fn carry_forward(&self, yesterday: Date) -> Result<usize> {
        let mut extended = 0;
        for appid in self.read(events::with_events)? {
            // Only an account that needs it waits for its lock (a bulk load may hold it).
            if self
                .read(|db| events::carry_range(db, yesterday, &appid))?
                .is_none()
            {
                continue;
            }
            let done = self.write(&Scope::account(&appid), |tx| {
                events::carry_forward(tx, yesterday, &appid)
            })?;
            extended += usize::from(done);
        }
        Ok(extended)
    }
}

/// The body `{"list":[…]}` of `endpoint`'s rows of `appid` from `begin` to `end`.
fn body_of(
    db: &dyn Db,
    appid: &str,
    endpoint: Endpoint,
    (begin, end): (Date, Date),
) -> Result<String> {
    let mut out = String::with_capacity(4096);
    out.push_str("{\"list\":[");
    let n = days::list_into(db, appid, endpoint, begin, end, &mut out)?;
    days::quiet_tail(db, appid, endpoint, (begin, end), n, &mut out)?;
    out.push_str("]}");
    Ok(out)
}
