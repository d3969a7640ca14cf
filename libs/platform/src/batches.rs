//! Batches: of a client stream, for bulk calls that answer per row after each commit ([`Batches`]);
//! and of a queue that a writer stores behind the calls that fill it ([`Gathered`]).

use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};

/// Batches of a client stream. A client that breaks the stream ends it after the messages already
/// read: those are still handed out, so what was received is stored and answered if it can be.
pub struct Batches<S> {
    inbound: S,
    size: usize,
    window: Duration,
    finished: bool,
}

impl<S, T> Batches<S>
where
    S: Stream<Item = Result<T, tonic::Status>> + Unpin,
{
    pub fn new(inbound: S, size: usize, window: Duration) -> Batches<S> {
        Batches { inbound, size: size.max(1), window, finished: false }
    }

    /// The next batch, or `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<Vec<T>> {
        if self.finished {
            return None;
        }
        let mut batch = Vec::with_capacity(self.size);
        let mut deadline = None;
        while batch.len() < self.size {
            let next = match deadline {
                None => self.inbound.next().await,
                Some(deadline) => match tokio::time::timeout_at(deadline, self.inbound.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            match next {
                Some(Ok(message)) => {
                    batch.push(message);
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.window);
                }
                Some(Err(status)) => {
                    tracing::info!(%status, "client stream broken; keeping the messages already received");
                    self.finished = true;
                    break;
                }
                None => {
                    self.finished = true;
                    break;
                }
            }
        }
        (!batch.is_empty()).then_some(batch)
    }
}

/// Batches of a queue that one writer stores behind the calls filling it (sanctions' check log,
/// the gateway's audit log). Each batch waits for a first item, then gathers until `gather` after
/// the previous batch was handed out, so that a busy queue costs a write every `gather` rather
/// than one for every few items; unless the batch is full, an item that cannot wait came
/// (`urgent`), or the writer was told to stop. Once told to stop, the queue is closed and what it
/// holds is still handed out, at once and a batch at a time.
pub struct Gathered<T> {
    receiver: mpsc::Receiver<T>,
    stop: oneshot::Receiver<()>,
    stopping: bool,
    size: usize,
    gather: Duration,
    not_before: tokio::time::Instant,
}

impl<T> Gathered<T> {
    pub fn new(receiver: mpsc::Receiver<T>, stop: oneshot::Receiver<()>, size: usize, gather: Duration) -> Self {
        Gathered { receiver, stop, stopping: false, size: size.max(1), gather, not_before: tokio::time::Instant::now() }
    }

    /// Fill `batch`, empty on entry, with the next batch; false once the queue is closed and empty.
    pub async fn next(&mut self, batch: &mut Vec<T>, urgent: impl Fn(&T) -> bool) -> bool {
        loop {
            tokio::select! {
                received = self.receiver.recv_many(batch, self.size) => {
                    if received == 0 {
                        return false;
                    }
                    break;
                }
                _ = &mut self.stop, if !self.stopping => {
                    // Closed, the channel still yields what it holds, then nothing.
                    self.stopping = true;
                    self.receiver.close();
                }
            }
        }
        let mut waits = !batch.iter().any(&urgent);
        while waits && !self.stopping && batch.len() < self.size {
            let before = batch.len();
            tokio::select! {
                () = tokio::time::sleep_until(self.not_before) => break,
                received = self.receiver.recv_many(batch, self.size - before) => {
                    if received == 0 {
                        break;
                    }
                    waits = !batch[before..].iter().any(&urgent);
                }
                _ = &mut self.stop => {
                    self.stopping = true;
                    self.receiver.close();
                }
            }
        }
        self.not_before = tokio::time::Instant::now() + self.gather;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_fill_to_size_and_keep_what_came_before_an_error() {
        let items: Vec<Result<u32, tonic::Status>> =
            vec![Ok(1), Ok(2), Ok(3), Ok(4), Ok(5), Err(tonic::Status::cancelled("client left")), Ok(6)];
        let mut batches = Batches::new(futures::stream::iter(items), 2, Duration::from_millis(50));
        assert_eq!(batches.next().await, Some(vec![1, 2]));
        assert_eq!(batches.next().await, Some(vec![3, 4]));
        assert_eq!(batches.next().await, Some(vec![5]), "the message before the error is kept");
        assert_eq!(batches.next().await, None, "nothing after the error");
    }

    #[tokio::test]
    async fn a_slow_client_gets_a_partial_batch_after_the_window() {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<u32, tonic::Status>>(4);
        sender.send(Ok(1)).await.unwrap();
        let mut batches =
            Batches::new(tokio_stream::wrappers::ReceiverStream::new(receiver), 100, Duration::from_millis(20));
        assert_eq!(batches.next().await, Some(vec![1]));
        drop(sender);
        assert_eq!(batches.next().await, None);
    }

    /// A queue's batches: what came gathers into one, an urgent item cuts the gathering short
    /// (the gathering here is an hour, so only the cut lets the test end), and a stop hands out
    /// what is queued, a batch at a time, then nothing.
    #[tokio::test]
    async fn a_queue_gathers_until_an_urgent_item_or_the_stop() {
        let (sender, receiver) = mpsc::channel::<u32>(16);
        let (stop, stopped) = oneshot::channel();
        let mut batches = Gathered::new(receiver, stopped, 3, Duration::from_secs(3600));
        let mut batch = Vec::new();
        for item in [1, 2] {
            sender.send(item).await.unwrap();
        }
        assert!(batches.next(&mut batch, |_| false).await, "the first batch goes at once");
        assert_eq!(std::mem::take(&mut batch), [1, 2]);

        // Gathering now: 3 waits, 0 is urgent.
        sender.send(3).await.unwrap();
        let urgent = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            sender.send(0).await.unwrap();
            sender
        });
        assert!(batches.next(&mut batch, |item| *item == 0).await);
        assert_eq!(std::mem::take(&mut batch), [3, 0]);

        // Told to stop: the queue is closed, and what it held comes out in full batches.
        let sender = urgent.await.unwrap();
        for item in [4, 5, 6, 7] {
            sender.send(item).await.unwrap();
        }
        stop.send(()).unwrap();
        assert!(batches.next(&mut batch, |_| false).await);
        assert_eq!(std::mem::take(&mut batch), [4, 5, 6]);
        assert!(batches.next(&mut batch, |_| false).await);
        assert_eq!(std::mem::take(&mut batch), [7]);
        assert!(!batches.next(&mut batch, |_| false).await, "closed and empty");
        assert!(sender.send(8).await.is_err(), "nothing is taken after the stop");
    }
}
