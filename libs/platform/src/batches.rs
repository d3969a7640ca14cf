//! Reading a client stream in batches, for bulk calls that answer per row after each commit: up to
//! `size` messages, or whatever arrived within `window` of the batch's first message, so a slow
//! client still gets answers promptly and a fast one fills whole batches.

use std::time::Duration;

use futures::{Stream, StreamExt};

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
}
