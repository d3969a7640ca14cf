//! The check log. Every check is stored: a department must be able to show what it was told.
//! But the answer itself comes from memory in microseconds, and waiting for a commit would make
//! every check cost a Postgres round trip and a WAL flush. So a call queues its check and
//! answers; one writer stores whatever is queued with one `COPY`, in the order the calls came,
//! at most one `COPY` every few tens of milliseconds ([`GATHER`]).
//!
//! What that costs and what keeps it safe:
//! - a queued check is lost only if the process dies without its shutdown; a graceful shutdown
//!   writes the queue out before the process exits ([`CheckLogTask::finish`]);
//! - a write that fails because Postgres is away is retried with back-off, never dropped; the
//!   queue is bounded, so when Postgres stays away the calls wait for room instead of the
//!   process growing without end;
//! - reading a check back (`ReportHandling`) first [`CheckLog::flush`]es, so a caller never finds
//!   its own check missing.

use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use xinyong_platform::batches::Gathered;
use xinyong_platform::metrics::Metrics;

use crate::store::{KnownAnswers, NewCheck, Store};

/// Checks per `COPY` at most.
const BATCH: usize = 4096;
/// Checks queued at most before calls wait for the writer.
const QUEUE: usize = 64 * 1024;
/// The shortest time between the starts of two `COPY`s. A `COPY` has a fixed cost in Postgres
/// (a statement, its plan, opening the table and its indexes, a commit with its WAL flush) of about
/// half a millisecond of CPU on the benchmark machine, and that CPU is taken from the cores that
/// answer the calls: at 100 checks a `COPY` it was twice the cost of the rows themselves. So the
/// writer gathers: a check waits at most this much longer to be stored. A flush (a
/// `ReportHandling` looking for its check), a full batch or the stop cuts the wait short, so no
/// caller waits on it. 50 ms rather than 25: in the benchmark Postgres took 0.11–0.14 of a core
/// with 60 ms against 0.15–0.16 with 25, and the larger `COPY`s did not stall the calls more; it
/// widens what a process killed outright (no graceful shutdown) can lose to its last 50 ms.
const GATHER: Duration = Duration::from_millis(50);

enum Entry {
    Check(NewCheck),
    /// Answered once every entry queued before it is stored.
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct CheckLog {
    sender: mpsc::Sender<Entry>,
    queued: Gauge,
}

/// The writer behind a [`CheckLog`].
pub struct CheckLogTask {
    task: JoinHandle<()>,
    stop: oneshot::Sender<()>,
    queued: Gauge,
}

const STOPPED: &str = "the check log has stopped";

impl CheckLog {
    /// Start the writer; [`CheckLogTask::finish`] stops it once the queue is written out.
    pub fn start(store: Store, metrics: &Metrics) -> (CheckLog, CheckLogTask) {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let (stop, stopped) = oneshot::channel();
        let queued = Gauge::default();
        metrics.register("sanctions_checks_queued", "checks answered and not yet stored", queued.clone());
        let task = tokio::spawn(write(store, receiver, stopped, queued.clone()));
        (CheckLog { sender, queued: queued.clone() }, CheckLogTask { task, stop, queued })
    }

    /// Queue a check for storing; waits only when the queue is full.
    pub async fn record(&self, check: NewCheck) -> Result<(), String> {
        self.queued.inc();
        self.sender.send(Entry::Check(check)).await.map_err(|_| {
            self.queued.dec();
            STOPPED.to_owned()
        })
    }

    /// Wait until every check queued so far is stored.
    pub async fn flush(&self) -> Result<(), String> {
        let (done, flushed) = oneshot::channel();
        self.sender.send(Entry::Flush(done)).await.map_err(|_| STOPPED.to_owned())?;
        flushed.await.map_err(|_| STOPPED.to_owned())
    }
}

impl CheckLogTask {
    /// Close the queue and wait for the writer to store what is in it, at most `within`. Called
    /// once the server has drained; a call queueing after this is refused. What could not be
    /// stored in time is logged as lost.
    pub async fn finish(self, within: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(within, self.task).await.is_err() {
            tracing::error!(checks = self.queued.get(), "checks not stored before shutdown");
        }
    }
}

async fn write(store: Store, receiver: mpsc::Receiver<Entry>, stop: oneshot::Receiver<()>, queued: Gauge) {
    // A flush cuts the gathering short: a caller is waiting on it.
    let mut batches = Gathered::new(receiver, stop, BATCH, GATHER);
    let mut entries = Vec::with_capacity(BATCH);
    let mut known = KnownAnswers::default();
    while batches.next(&mut entries, |entry| matches!(entry, Entry::Flush(_))).await {
        let mut checks = Vec::with_capacity(entries.len());
        let mut flushes = Vec::new();
        for entry in entries.drain(..) {
            match entry {
                Entry::Check(check) => checks.push(check),
                Entry::Flush(done) => flushes.push(done),
            }
        }
        store_with_retries(&store, &checks, &mut known).await;
        queued.dec_by(checks.len() as i64);
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Store `checks`, retrying while Postgres is unreachable. A row Postgres refuses outright would
/// be refused forever; that batch is logged (without its contents) and dropped.
async fn store_with_retries(store: &Store, checks: &[NewCheck], known: &mut KnownAnswers) {
    if checks.is_empty() {
        return;
    }
    let mut delay = Duration::from_millis(50);
    loop {
        match store.copy_checks(checks, known).await {
            Ok(()) => return,
            // Bad data (class 22) or a broken constraint (class 23) would be refused forever.
            Err(sqlx::Error::Database(error))
                if error.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23")) =>
            {
                tracing::error!(%error, checks = checks.len(), "checks refused by Postgres; not stored");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, checks = checks.len(), retry_in_ms = delay.as_millis() as u64, "checks not stored yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
