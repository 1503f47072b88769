//! Recomputing the statistics a batch touched: loading each account's events of the periods
//! it needs, the computations on a pool of workers, each job's days written as it is done.

use crate::db::{p, Db};
use crate::Result;
use datacube_api::date::add_days;
use datacube_api::Endpoint;
use datacube_engine::Event;
use jiff::civil::Date;
use rustc_hash::FxHashSet;

use super::*;

/// One computation of a recompute: the endpoints it builds from which events, and the dates
/// of each endpoint's rows it replaces.
/// One computation of a recompute: endpoints of one account from some of its events.
pub(super) struct Job<'a> {
    pub(super) appid: &'a str,
    pub(super) parts: Vec<&'a [Event]>,
    pub(super) window: (Date, Date),
    pub(super) replaces: Vec<(Endpoint, (Date, Date))>,
}

/// A job's days to write, one list per endpoint it replaces.
pub(super) type Days = Vec<Vec<crate::days::StoredDay>>;

impl Job<'_> {
    /// Computes the rows and prepares the days to write (compressing them): everything but
    /// the writing, so that it can run beside other jobs.
    pub(super) fn run(&self) -> Result<Days> {
        let wanted: Vec<Endpoint> = self.replaces.iter().map(|(e, _)| *e).collect();
        let computed = datacube_engine::rollup::compute_parts(
            &self.parts,
            self.window.0,
            self.window.1,
            &wanted,
        );
        self.replaces
            .iter()
            .map(|(endpoint, range)| {
                let rows = computed.get(endpoint).map_or(&[][..], Vec::as_slice);
                crate::days::prepare_days(rows, *range)
            })
            .collect()
    }

    /// Writes what [`Job::run`] computed, inside `tx`.
    pub(super) fn write(&self, tx: &dyn Db, days: Days) -> Result<()> {
        for ((endpoint, range), days) in self.replaces.iter().zip(days) {
            crate::days::replace(tx, self.appid, *endpoint, *range, days)?;
        }
        Ok(())
    }

    pub(super) fn events(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }
}

/// Below this many events, a recompute runs its jobs on the calling thread.
pub(super) const PARALLEL_FROM: usize = 20_000;

/// Runs `jobs` — on worker threads, the largest first, when `parallel` — while this thread
/// does `meanwhile`; then hands each job's outcome to `done`, with what `meanwhile` returned,
/// as soon as both are there. Without `parallel`, `meanwhile` runs first, then each job here.
pub(super) fn with_jobs<T>(
    jobs: &[Job],
    parallel: bool,
    meanwhile: impl FnOnce() -> Result<T>,
    mut done: impl FnMut(&T, &Job, Result<Days>) -> Result<()>,
) -> Result<T> {
    if !parallel || jobs.is_empty() {
        let before = meanwhile()?;
        for job in jobs {
            done(&before, job, job.run())?;
        }
        return Ok(before);
    }
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].events()));
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8)
        .min(jobs.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (send, results) = std::sync::mpsc::channel::<(usize, Result<Days>)>();
        for _ in 0..workers {
            let (send, order, next, stop) = (send.clone(), &order, &next, &stop);
            let spawned = std::thread::Builder::new()
                .name("datacube-compute".into())
                .spawn_scoped(scope, move || {
                    use std::sync::atomic::Ordering::Relaxed;
                    while !stop.load(Relaxed) {
                        let Some(&i) = order.get(next.fetch_add(1, Relaxed)) else {
                            return;
                        };
                        // A computation panics only on a bug: the scope passes it on.
                        if send.send((i, jobs[i].run())).is_err() {
                            return;
                        }
                    }
                });
            if spawned.is_err() {
                // No thread to be had: the jobs left are run here, below.
                break;
            }
        }
        drop(send);
        let outcome = (|| {
            let before = meanwhile()?;
            for (i, days) in results.iter() {
                done(&before, &jobs[i], days)?;
            }
            // Jobs no worker took: no thread could be started, or a worker panicked (the
            // scope passes the panic on when it ends).
            let taken = next
                .load(std::sync::atomic::Ordering::Relaxed)
                .min(order.len());
            for &i in &order[taken..] {
                done(&before, &jobs[i], jobs[i].run())?;
            }
            Ok(before)
        })();
        if outcome.is_err() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        outcome
    })
}

/// Recomputes the statistics of `appid` that a batch touching `touched` can change, replacing
/// the stored rows, inside `tx`. Each class is recomputed over the periods it feeds:
///
/// - followers: getusersummary and getusercumulate from the first touched day to `yesterday`
///   (or the account's latest day), from the account's whole follow history;
/// - messages: the touched days and hours, and the whole weeks and months that contain them;
/// - replies: the touched days and hours;
/// - articles: reads and shares (getuserread[hour], getusershare[hour], getarticleread,
///   getarticleshare) and getbizsummary on the touched days; getarticlesummary up to 6 days
///   after them; getarticletotal and getarticletotaldetail for sends from 29 days before them
///   — and for every send from 29 days before the first touched follow on, whose
///   `target_user` and `read_subscribe_user` may have changed.
///
/// The events are loaded first, the computations (pure) then run side by side on threads of
/// their own when there are many events, and the rows are written last.
pub(super) fn recompute(
    tx: &dyn Db,
    own: &AccountBatch,
    appended: &Appended,
    yesterday: Date,
) -> Result<()> {
    recompute_but(tx, own, appended, yesterday, &[])
}

/// [`recompute`], leaving the statistics of the classes `elsewhere` (their followers part
/// aside) to the caller.
pub(super) fn recompute_but(
    tx: &dyn Db,
    own: &AccountBatch,
    appended: &Appended,
    yesterday: Date,
    elsewhere: &[Class],
) -> Result<()> {
    let Some(loaded) = load_for(
        tx,
        &own.appid,
        &appended.touched,
        &appended.own_chunks,
        yesterday,
        elsewhere,
    )?
    else {
        return Ok(());
    };
    let jobs = loaded.jobs(own);
    let events: usize = jobs.iter().map(Job::events).sum();
    with_jobs(
        &jobs,
        events >= PARALLEL_FROM && jobs.len() > 1,
        || Ok(()),
        |(), job, days| job.write(tx, days?),
    )
}

/// What a recompute of one account rewrites, and the stored events it computes from (its
/// batch's own events aside).
pub(super) struct Loaded {
    pub(super) u0: Option<Date>,
    pub(super) u1: Date,
    /// The touched days of messages, and the whole weeks and months around them.
    pub(super) messages_window: Option<((Date, Date), (Date, Date))>,
    pub(super) replies_window: Option<(Date, Date)>,
    /// Sends whose figures may change, all of them and getarticletotal's.
    pub(super) sends: Option<(Date, Date)>,
    pub(super) total_sends: Option<(Date, Date)>,
    pub(super) articles: Option<(Date, Date)>,
    pub(super) history: Vec<Event>,
    pub(super) messages: Vec<Event>,
    pub(super) replies: Vec<Event>,
    pub(super) publishes: Vec<Event>,
    pub(super) reads: Vec<Event>,
}

/// Articles: sends are followed for 30 days (getarticletotaldetail).
pub(super) const TRACKED: i64 = datacube_api::endpoint::PUBLISHED_WINDOW_DAYS - 1;

/// Plans the recompute of `appid` for events on the days `touched` and loads the stored
/// events it needs, but those of the chunks `skip` (the batch's own). `None`: nothing touched.
pub(super) fn load_for(
    tx: &dyn Db,
    appid: &str,
    touched: &Touched,
    skip: &FxHashSet<i64>,
    yesterday: Date,
    elsewhere: &[Class],
) -> Result<Option<Loaded>> {
    let here = |class: Class| {
        if elsewhere.contains(&class) {
            None
        } else {
            touched.get(class)
        }
    };
    let Some((lo, hi)) = touched.overall() else {
        return Ok(None);
    };
    let follows = touched.get(Class::Follow);
    let articles = union(touched.get(Class::Article), touched.get(Class::Publish));

    // Followers: up to yesterday, but no more than QUIET_STORED days past the batch's last
    // (what lies beyond is served as quiet days: crate::days::quiet_tail).
    let stored = crate::days::bounds(tx, appid, Endpoint::GetUserCumulate)?;
    let u1 = hi
        .max(yesterday.min(add_days(hi, crate::days::QUIET_STORED)))
        .max(stored.map_or(hi, |s| s.1));
    let mut u0: Option<Date> = follows.map(|f| f.0);
    match stored {
        None => u0 = Some(lo),
        Some((first, last)) => {
            if lo < first {
                u0 = Some(u0.map_or(lo, |u| u.min(lo)));
            }
            if last < u1 {
                let next = add_days(last, 1);
                u0 = Some(u0.map_or(next, |u| u.min(next)));
            }
        }
    }
    // Articles: sends whose figures may have changed are those from 29 days before the touched
    // days (getarticletotaldetail follows a send for 30 days, getarticletotal for 7), and
    // every send from 29 days before a touched follow on (target_user, read_subscribe_user).
    let sends = union(
        articles.map(|(a, b)| (add_days(a, -TRACKED), b)),
        follows.map(|(f, _)| (add_days(f, -TRACKED), u1)),
    );
    // getarticletotal's own: 6 days before, and from a follow on (target_user only).
    let total_sends = union(
        articles.map(|(a, b)| (add_days(a, -6), b)),
        follows.map(|(f, _)| (f, u1)),
    );
    // Messages: whole weeks and months.
    let message_window = here(Class::Message).map(whole_periods);

    // Load the stored events; the batch's own are in `own` (every load range covers the
    // days the batch's events of that class are on).
    let mut history = Vec::new();
    if u0.is_some() || sends.is_some() {
        load(tx, appid, Class::Follow, None, skip, &mut history)?;
    }
    let mut messages = Vec::new();
    if let Some(window) = message_window {
        load(tx, appid, Class::Message, Some(window), skip, &mut messages)?;
    }
    let mut replies = Vec::new();
    if let Some(range) = here(Class::Reply) {
        load(tx, appid, Class::Reply, Some(range), skip, &mut replies)?;
    }
    let (mut publishes, mut reads) = (Vec::new(), Vec::new());
    if let Some((t0, t1)) = sends {
        load(tx, appid, Class::Publish, None, skip, &mut publishes)?;
        load(
            tx,
            appid,
            Class::Article,
            Some((t0, add_days(t1, TRACKED))),
            skip,
            &mut reads,
        )?;
    }

    Ok(Some(Loaded {
        u0,
        u1,
        messages_window: here(Class::Message).zip(message_window),
        replies_window: here(Class::Reply),
        sends,
        total_sends,
        articles,
        history,
        messages,
        replies,
        publishes,
        reads,
    }))
}

impl Loaded {
    /// The computations of the recompute, from these events and the batch's own (`own`).
    pub(super) fn jobs<'a>(&'a self, own: &'a AccountBatch) -> Vec<Job<'a>> {
        let appid = own.appid.as_str();
        let mine = |class: Class| own.classes[class as usize].events.as_slice();
        let Loaded {
            u1,
            sends,
            total_sends,
            articles,
            ..
        } = *self;
        let mut jobs: Vec<Job> = Vec::new();
        if let Some(u0) = self.u0 {
            jobs.push(Job {
                appid,
                parts: vec![&self.history, mine(Class::Follow)],
                window: (u0, u1),
                replaces: vec![
                    (Endpoint::GetUserSummary, (u0, u1)),
                    (Endpoint::GetUserCumulate, (u0, u1)),
                ],
            });
        }
        if let Some((span, window)) = self.messages_window {
            jobs.push(Job {
                appid,
                parts: vec![&self.messages, mine(Class::Message)],
                window,
                replaces: class_endpoints(Class::Message, span),
            });
        }
        if let Some(range) = self.replies_window {
            jobs.push(Job {
                appid,
                parts: vec![&self.replies, mine(Class::Reply)],
                window: range,
                replaces: class_endpoints(Class::Reply, range),
            });
        }
        if let Some((t0, t1)) = sends {
            let window = (t0, add_days(t1, TRACKED));
            if let Some((a_lo, a_hi)) = articles {
                // Reads and shares, of all articles and per article and day: no sends, no
                // followers.
                jobs.push(Job {
                    appid,
                    parts: vec![&self.reads, mine(Class::Article)],
                    window: (a_lo, a_hi),
                    replaces: [
                        Endpoint::GetUserRead,
                        Endpoint::GetUserReadHour,
                        Endpoint::GetUserShare,
                        Endpoint::GetUserShareHour,
                        Endpoint::GetArticleRead,
                        Endpoint::GetArticleShare,
                    ]
                    .into_iter()
                    .map(|e| (e, (a_lo, a_hi)))
                    .collect(),
                });
            }
            let with_sends = vec![
                &self.history[..],
                mine(Class::Follow),
                &self.publishes,
                mine(Class::Publish),
                &self.reads,
                mine(Class::Article),
            ];
            if let Some((a_lo, a_hi)) = articles {
                // Titles and send days; no followers.
                jobs.push(Job {
                    appid,
                    parts: with_sends[2..].to_vec(),
                    window: (add_days(a_lo, -6), add_days(a_hi, 6)),
                    replaces: vec![
                        (Endpoint::GetArticleSummary, (a_lo, add_days(a_hi, 6))),
                        (Endpoint::GetBizSummary, (a_lo, a_hi)),
                    ],
                });
            }
            jobs.push(Job {
                appid,
                parts: with_sends,
                window,
                replaces: vec![
                    (Endpoint::GetArticleTotal, total_sends.unwrap_or((t0, t1))),
                    (Endpoint::GetArticleTotalDetail, (t0, t1)),
                ],
            });
        }
        jobs
    }
}

/// The accounts [`carry_forward`] looks at: those with events. Accounts whose statistics were
/// only imported have none and are left alone.
pub(crate) fn with_events(db: &dyn Db) -> Result<Vec<String>> {
    db.all("SELECT appid FROM event_app ORDER BY appid", p![], |r| {
        Ok(r.text(0)?.to_owned())
    })
}

/// Extends `appid`'s daily follower rows (getusersummary's `user_source` 0 row and
/// getusercumulate) up to `yesterday` (at most [`crate::days::QUIET_STORED`] days past its last
/// event), so that days without events have their rows too. Returns whether it did (its
/// change is then logged).
pub(crate) fn carry_forward(tx: &dyn Db, yesterday: Date, appid: &str) -> Result<bool> {
    let Some(range) = carry_range(tx, yesterday, appid)? else {
        return Ok(false);
    };
    let mut history = Vec::new();
    load(
        tx,
        appid,
        Class::Follow,
        None,
        &FxHashSet::default(),
        &mut history,
    )?;
    let job = Job {
        appid,
        parts: vec![&history],
        window: range,
        replaces: vec![
            (Endpoint::GetUserSummary, range),
            (Endpoint::GetUserCumulate, range),
        ],
    };
    job.write(tx, job.run()?)?;
    crate::accounts::bump_change(tx, appid)?;
    Ok(true)
}

/// The days [`carry_forward`] would add to `appid`'s follower rows, if any (a read: most
/// accounts need none, and are not written).
pub(crate) fn carry_range(
    tx: &dyn Db,
    yesterday: Date,
    appid: &str,
) -> Result<Option<(Date, Date)>> {
    let Some((_, last)) = crate::days::bounds(tx, appid, Endpoint::GetUserCumulate)? else {
        return Ok(None);
    };
    // Quiet days are stored up to QUIET_STORED past the account's last event, not to a
    // yesterday centuries on: a far clock jump costs a bounded write, once.
    let Some(last_event) = tx.one(
        "SELECT MAX(day) FROM event_chunk WHERE appid = ?1",
        p![appid],
        |r| r.opt_int(0),
    )?
    else {
        return Ok(None);
    };
    let through = yesterday.min(add_days(
        datacube_api::date::epoch_day_to_date(last_event),
        crate::days::QUIET_STORED,
    ));
    Ok((last < through).then(|| (add_days(last, 1), through)))
}
