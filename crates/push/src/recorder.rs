//! Records what `push` and `proxy` see as events, through the ingestion path.
//!
//! Events go through a bounded queue to one task that stores them in batches: each batch is
//! whatever arrived while the previous one was being stored, so a quiet run stores each event
//! within a moment, and when events come fast the batches grow — which matters because a
//! batch recomputes the periods it touches from all their stored events (for the current
//! day, everything recorded so far today): growing batches keep that work proportional to the
//! events, not to their square. Events are stored with their statistics deferred
//! ([`Store::ingest_deferred`]) every 200 ms and the statistics recomputed every 2 s at the
//! soonest — less often when recomputing takes long (ten times its last duration, at most every
//! 30 s) — and once more at the end; a crash in between leaves the
//! periods marked, and `datacube serve` recomputes them. At most [`PENDING`] events wait beside
//! the batch being stored (plus [`QUEUE`] handovers in the queue); past that, recording waits:
//! never unbounded memory, never a lost event.

use std::sync::Arc;

use datacube_engine::Event;
use datacube_store::Store;
use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Handovers (single events, or a worker's few hundred) waiting in the queue, at most.
pub const QUEUE: usize = 1024;
/// Events gathered for the next transaction while one is being stored, at most.
pub const PENDING: usize = 500_000;

/// Events are stored at most this often (unless many wait): fewer, larger transactions.
const STORE_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
/// Events that are stored at once, however soon.
const STORE_NOW: usize = 50_000;
/// Statistics are recomputed at most this often…
const FLUSH_MIN: std::time::Duration = std::time::Duration::from_secs(2);
/// …and at least this often while events come (the interval is 10× the last recompute's
/// time, so that recomputing takes a tenth of the time at most).
const FLUSH_MAX: std::time::Duration = std::time::Duration::from_secs(30);

type StoreResult<T> = Result<T, datacube_store::StoreError>;

/// The job under way: storing a batch, or recomputing what was stored.
enum Job {
    Store(JoinHandle<StoreResult<datacube_store::IngestOutcome>>),
    Flush(JoinHandle<StoreResult<usize>>, tokio::time::Instant),
}

enum Done {
    Stored(datacube_store::IngestOutcome),
    Flushed(std::time::Duration),
}

impl Job {
    async fn done(&mut self) -> StoreResult<Done> {
        let task = |e: tokio::task::JoinError| datacube_store::StoreError::Task(e.to_string());
        match self {
            Job::Store(h) => Ok(Done::Stored(h.await.map_err(task)??)),
            Job::Flush(h, started) => {
                h.await.map_err(task)??;
                Ok(Done::Flushed(started.elapsed()))
            }
        }
    }
}

/// "Now", by the command's clock (`--clock`).
pub type Now = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// What recording stored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// Events stored and counted.
    pub accepted: usize,
    /// Events whose id had been stored before.
    pub duplicates: usize,
    /// Transactions.
    pub batches: usize,
    /// Events refused because the account was removed while recording.
    pub gone: usize,
}

/// The recording task: what waits to be stored, the job under way, and when events were last
/// stored and statistics last recomputed.
struct Worker {
    store: Store,
    now: Now,
    fence: Vec<(String, i64)>,
    appid: String,
    recorded: Recorded,
    /// Handovers as they came: appending them to one vector would copy it again and again as
    /// it grows, on the thread that records (a proxy's own).
    pending: Vec<Vec<Event>>,
    /// Events in `pending`.
    waiting: usize,
    job: Option<Job>,
    stopping: bool,
    closed: bool,
    /// Stored since the last recompute; the recompute's interval adapts to its cost.
    dirty: bool,
    every: std::time::Duration,
    last_flush: tokio::time::Instant,
    last_store: tokio::time::Instant,
    /// The account was removed: its events are refused.
    gone: bool,
}

impl Worker {
    /// Stores and recomputes until stopped (or every sender is gone) and all is stored, then
    /// reports.
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Vec<Event>>,
        mut stopped: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Recorded, datacube_store::StoreError> {
        loop {
            if self.gone && !self.pending.is_empty() {
                self.recorded.gone += self.pending.iter().map(Vec::len).sum::<usize>();
                self.pending.clear();
                self.waiting = 0;
            }
            let ending = (self.stopping || self.closed) && self.pending.is_empty();
            if self.job.is_none() {
                self.start_job(ending);
            }
            let idle = self.job.is_none();
            if ending && idle && !self.dirty {
                break;
            }
            let room = self.waiting < PENDING && !self.closed && !self.stopping;
            let wake = self.last_flush + self.every;
            let job = &mut self.job;
            tokio::select! {
                e = rx.recv(), if room => match e {
                    Some(e) => self.take(e, &mut rx),
                    None => self.closed = true,
                },
                done = async { job.as_mut().expect("guarded").done().await }, if !idle => {
                    self.job = None;
                    self.finished(done?);
                }
                () = tokio::time::sleep_until(wake), if self.dirty && idle => {}
                () = tokio::time::sleep_until(self.last_store + STORE_EVERY),
                    if !self.pending.is_empty() && idle => {}
                _ = stopped.changed(), if !self.stopping => {
                    // Stopping: what is queued is stored and counted, then the task ends.
                    self.stopping = true;
                    while let Ok(e) = rx.try_recv() {
                        self.waiting += e.len();
                        self.pending.push(e);
                    }
                }
            }
        }
        Ok(self.recorded)
    }

    /// Starts the next job, if one is due: recomputing the statistics (when something was
    /// stored, and it is time or the end), or storing what waits (when it is time, enough
    /// waits, or the end).
    fn start_job(&mut self, ending: bool) {
        if self.dirty && (ending || self.last_flush.elapsed() >= self.every) {
            let yesterday = datacube_api::date::add_days(
                datacube_api::date::china_date((self.now)().as_second()),
                -1,
            );
            let store = self.store.clone();
            let started = tokio::time::Instant::now();
            self.job = Some(Job::Flush(
                tokio::spawn(async move { store.flush_pending(yesterday).await }),
                started,
            ));
        } else if !self.pending.is_empty()
            && (self.stopping
                || self.closed
                || self.waiting >= STORE_NOW
                || self.last_store.elapsed() >= STORE_EVERY)
        {
            let (store, parts) = (self.store.clone(), std::mem::take(&mut self.pending));
            let fence = self.fence.clone();
            self.waiting = 0;
            self.last_store = tokio::time::Instant::now();
            self.job = Some(Job::Store(tokio::spawn(async move {
                store.ingest_deferred_parts(parts, fence).await
            })));
        }
    }

    /// Takes a handover, and what else is queued while there is room.
    fn take(&mut self, e: Vec<Event>, rx: &mut mpsc::Receiver<Vec<Event>>) {
        self.waiting += e.len();
        self.pending.push(e);
        while self.waiting < PENDING {
            match rx.try_recv() {
                Ok(e) => {
                    self.waiting += e.len();
                    self.pending.push(e);
                }
                Err(_) => break,
            }
        }
    }

    /// Counts what a finished job did: events stored (or refused for a removed account), or
    /// statistics recomputed (and when to next).
    fn finished(&mut self, done: Done) {
        match done {
            Done::Stored(outcome) => {
                let accepted = outcome.accepted;
                tracing::debug!(events = accepted.len(), "events stored");
                let n = accepted.iter().filter(|a| **a).count();
                if outcome.gone.is_empty() {
                    self.recorded.duplicates += accepted.len() - n;
                } else {
                    self.recorded.gone += accepted.len() - n;
                    if !self.gone {
                        tracing::error!(
                            appid = self.appid,
                            "the account was removed: its events are no longer recorded"
                        );
                        metrics::counter!("datacube_recording_refused_total").increment(1);
                    }
                    self.gone = true;
                }
                self.recorded.accepted += n;
                self.recorded.batches += 1;
                self.dirty = true;
            }
            Done::Flushed(took) => {
                tracing::debug!(?took, "statistics recomputed");
                self.dirty = false;
                self.last_flush = tokio::time::Instant::now();
                self.every = (took * 10).clamp(FLUSH_MIN, FLUSH_MAX);
            }
        }
    }
}

/// A running recorder. Cheap to clone; [`Recorder::finish`] on the last one waits for the
/// queue to drain.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Vec<Event>>,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    task: Arc<std::sync::Mutex<Option<Task>>>,
}

type Task = JoinHandle<Result<Recorded, datacube_store::StoreError>>;

impl Recorder {
    /// Starts recording into `store` for `account`; daily rows reach the day before `now()`.
    /// Once the account is removed (or removed and added again: another incarnation), its
    /// events are refused — logged once as an error, counted in [`Recorded::gone`] — and what
    /// comes later is dropped: nothing is left behind for an account that is gone.
    pub fn start(store: Store, now: Now, account: &datacube_store::AccountRecord) -> Recorder {
        let (tx, rx) = mpsc::channel::<Vec<Event>>(QUEUE);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let worker = Worker {
            store,
            now,
            fence: vec![(account.appid.clone(), account.incarnation)],
            appid: account.appid.clone(),
            recorded: Recorded::default(),
            pending: Vec::new(),
            waiting: 0,
            job: None,
            stopping: false,
            closed: false,
            dirty: false,
            every: FLUSH_MIN,
            last_flush: tokio::time::Instant::now(),
            last_store: tokio::time::Instant::now(),
            gone: false,
        };
        let task = tokio::spawn(worker.run(rx, stopped));
        Recorder {
            tx,
            stop: Arc::new(stop),
            task: Arc::new(std::sync::Mutex::new(Some(task))),
        }
    }

    /// Queues an event (waits while the queue is full).
    pub async fn record(&self, event: Event) {
        self.record_many(vec![event]).await;
    }

    /// Queues events (waits while the queue is full).
    pub async fn record_many(&self, events: Vec<Event>) {
        if !events.is_empty() {
            // Sending fails only once the recorder has finished: late events are dropped.
            let _ = self.tx.send(events).await;
        }
    }

    /// Stores what is queued, stops, and reports. Events recorded afterwards are dropped.
    pub async fn finish(self) -> Result<Recorded, datacube_store::StoreError> {
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        let _ = self.stop.send(true);
        drop(self.tx);
        match task {
            Some(task) => task
                .await
                .map_err(|e| datacube_store::StoreError::Task(e.to_string()))?,
            None => Ok(Recorded::default()),
        }
    }
}
