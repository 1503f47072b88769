//! Records what `push` and `proxy` see as events, through the ingestion path.
//!
//! Events go through a bounded queue to one task that stores them in batches: each batch is
//! whatever arrived while the previous one was being stored, so the batches grow when events
//! come fast and a quiet run still stores each event within a moment. When the store falls
//! behind by [`QUEUE`] events, recording waits (never unbounded memory, never a lost event).

use std::sync::Arc;

use datacube_engine::Event;
use datacube_store::Store;
use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Events waiting to be stored, at most.
pub const QUEUE: usize = 100_000;
/// Events stored in one transaction, at most.
const BATCH: usize = 50_000;

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
}

/// A running recorder. Cheap to clone; [`Recorder::finish`] on the last one waits for the
/// queue to drain.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    task: Arc<std::sync::Mutex<Option<Task>>>,
}

type Task = JoinHandle<Result<Recorded, datacube_store::StoreError>>;

impl Recorder {
    /// Starts recording into `store`; daily rows reach the day before `now()`.
    pub fn start(store: Store, now: Now) -> Recorder {
        let (tx, mut rx) = mpsc::channel::<Event>(QUEUE);
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut recorded = Recorded::default();
            let mut batch = Vec::with_capacity(1024);
            let mut stopping = false;
            loop {
                let first = if stopping {
                    rx.try_recv().ok()
                } else {
                    tokio::select! {
                        biased;
                        e = rx.recv() => e,
                        // Stopping: what is queued is stored, then the task ends.
                        _ = stopped.changed() => {
                            stopping = true;
                            rx.try_recv().ok()
                        }
                    }
                };
                let Some(first) = first else { break };
                batch.push(first);
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                let yesterday = datacube_api::date::add_days(
                    datacube_api::date::china_date(now().as_second()),
                    -1,
                );
                let outcome = store.ingest(std::mem::take(&mut batch), yesterday).await?;
                let accepted = outcome.accepted.iter().filter(|a| **a).count();
                recorded.accepted += accepted;
                recorded.duplicates += outcome.accepted.len() - accepted;
                recorded.batches += 1;
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
        // The task ends only after every sender is gone: sending cannot fail before that.
        let _ = self.tx.send(event).await;
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
