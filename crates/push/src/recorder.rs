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
        let fence = vec![(account.appid.clone(), account.incarnation)];
        let appid = account.appid.clone();
        let (tx, mut rx) = mpsc::channel::<Vec<Event>>(QUEUE);
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut recorded = Recorded::default();
            // Handovers as they came: appending them to one vector would copy it again and again
            // as it grows, on the thread that records (a proxy's own).
            let mut pending: Vec<Vec<Event>> = Vec::new();
            let mut waiting = 0usize;
            let mut job: Option<Job> = None;
            let (mut stopping, mut closed) = (false, false);
            // Stored since the last recompute; the recompute's interval adapts to its cost.
            let mut dirty = false;
            let mut every = FLUSH_MIN;
            let mut last_flush = tokio::time::Instant::now();
            let mut last_store = tokio::time::Instant::now();
            let mut gone = false;
            loop {
                if gone && !pending.is_empty() {
                    recorded.gone += pending.iter().map(Vec::len).sum::<usize>();
                    pending.clear();
                    waiting = 0;
                }
                let ending = (stopping || closed) && pending.is_empty();
                if job.is_none() {
                    if dirty && (ending || last_flush.elapsed() >= every) {
                        let yesterday = datacube_api::date::add_days(
                            datacube_api::date::china_date(now().as_second()),
                            -1,
                        );
                        let store = store.clone();
                        let started = tokio::time::Instant::now();
                        job = Some(Job::Flush(
                            tokio::spawn(async move { store.flush_pending(yesterday).await }),
                            started,
                        ));
                    } else if !pending.is_empty()
                        && (stopping
                            || closed
                            || waiting >= STORE_NOW
                            || last_store.elapsed() >= STORE_EVERY)
                    {
                        let (store, parts) = (store.clone(), std::mem::take(&mut pending));
                        let fence = fence.clone();
                        waiting = 0;
                        last_store = tokio::time::Instant::now();
                        job = Some(Job::Store(tokio::spawn(async move {
                            store.ingest_deferred_parts(parts, fence).await
                        })));
                    }
                }
                if ending && job.is_none() && !dirty {
                    break;
                }
                let room = waiting < PENDING && !closed && !stopping;
                let wake = last_flush + every;
                tokio::select! {
                    e = rx.recv(), if room => match e {
                        Some(e) => {
                            waiting += e.len();
                            pending.push(e);
                            while waiting < PENDING {
                                match rx.try_recv() {
                                    Ok(e) => {
                                        waiting += e.len();
                                        pending.push(e);
                                    }
                                    Err(_) => break,
                                }
                            }
                        }
                        None => closed = true,
                    },
                    done = async { job.as_mut().expect("guarded").done().await }, if job.is_some() => {
                        job = None;
                        match done? {
                            Done::Stored(outcome) => {
                                let accepted = outcome.accepted;
                                tracing::debug!(events = accepted.len(), "events stored");
                                let n = accepted.iter().filter(|a| **a).count();
                                if outcome.gone.is_empty() {
                                    recorded.duplicates += accepted.len() - n;
                                } else {
                                    recorded.gone += accepted.len() - n;
                                    if !gone {
                                        tracing::error!(
                                            appid,
                                            "the account was removed: its events are no longer recorded"
                                        );
                                        metrics::counter!("datacube_recording_refused_total").increment(1);
                                    }
                                    gone = true;
                                }
                                recorded.accepted += n;
                                recorded.batches += 1;
                                dirty = true;
                            }
                            Done::Flushed(took) => {
                                tracing::debug!(?took, "statistics recomputed");
                                dirty = false;
                                last_flush = tokio::time::Instant::now();
                                every = (took * 10).clamp(FLUSH_MIN, FLUSH_MAX);
                            }
                        }
                    }
                    () = tokio::time::sleep_until(wake), if dirty && job.is_none() => {}
                    () = tokio::time::sleep_until(last_store + STORE_EVERY),
                        if !pending.is_empty() && job.is_none() => {}
                    _ = stopped.changed(), if !stopping => {
                        // Stopping: what is queued is stored and counted, then the task ends.
                        stopping = true;
                        while let Ok(e) = rx.try_recv() {
                            waiting += e.len();
                            pending.push(e);
                        }
                    }
                }
            }
            Ok(recorded)
        });
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
