//! Group commit of checks. Every check is stored before it is answered (a department must be
//! able to show what it was told), but one transaction per check would cap `CheckEntity` at what
//! Postgres commits per second. Calls hand their check to one writer, which stores everything
//! waiting in one statement and then answers each call; under load a commit carries many checks,
//! when idle it carries one and adds no wait.

use tokio::sync::{mpsc, oneshot};

use crate::store::{CheckRow, Store};

/// Checks per statement at most.
const BATCH: usize = 512;

type Pending = (CheckRow, oneshot::Sender<Result<(), String>>);

#[derive(Clone)]
pub struct CheckWriter {
    sender: mpsc::Sender<Pending>,
}

impl CheckWriter {
    /// Start the writer; it stops when every `CheckWriter` is dropped, after the last batch.
    pub fn start(store: Store) -> CheckWriter {
        let (sender, receiver) = mpsc::channel(BATCH * 8);
        tokio::spawn(write(store, receiver));
        CheckWriter { sender }
    }

    /// Store a check; returns once it is committed.
    pub async fn store(&self, check: CheckRow) -> Result<(), String> {
        let (done, stored) = oneshot::channel();
        self.sender.send((check, done)).await.map_err(|_| "the check writer has stopped".to_owned())?;
        stored.await.map_err(|_| "the check writer has stopped".to_owned())?
    }
}

async fn write(store: Store, mut receiver: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        let (checks, waiting): (Vec<CheckRow>, Vec<_>) = batch.drain(..).unzip();
        let result = store.insert_checks(&checks).await.map_err(|error| error.to_string());
        if let Err(error) = &result {
            tracing::error!(%error, checks = checks.len(), "checks not stored; their calls fail");
        }
        for done in waiting {
            let _ = done.send(result.clone());
        }
    }
}
