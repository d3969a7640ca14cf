//! TCP connections that gather HTTP/2's small frames into fewer writes: every server connection
//! of every service, and the gateway's connections to the services.
//!
//! Over loopback or a pod network a `write` is the dearest thing a small call does: the kernel
//! runs the TCP stack for it (and, on loopback, the receiver's side too). h2 writes whenever its
//! connection task runs and has frames, and under load that was once per call: at 64 calls in
//! flight the echo and sanctions each made 1.0 writes a call, the gateway path 2.3 over its four
//! hops (`perf stat -e 'syscalls:sys_enter_*'` in the check benchmark). Two things gather them:
//!
//! - **No vectored writes.** h2 copies a DATA frame into its write buffer only when the payload is
//!   small: 256 bytes when the socket takes vectored writes, 1,024 when it does not. A larger
//!   payload goes as a separate buffer, and nothing is buffered behind it until it is written. So
//!   every unary answer above 256 bytes (a `CheckEntity` answer naming its measures is 350–600)
//!   cost two system calls, one for headers and data and one for the trailers. Said to take no
//!   vectored writes, the socket gets every answer below 1 KiB copied whole into h2's buffer.
//! - **Held until [`CHUNK`] bytes or the end of the turn.** A flush with less than `CHUNK` held
//!   keeps it and leaves a backstop: a small task that runs once at the back of the run queue and
//!   then wakes the connection, whose next flush sends whatever is held. Meanwhile each call that
//!   completes wakes the connection as before, its frames join the held ones, and a flush that
//!   finds `CHUNK` held sends them at once. So a burst of answers leaves in writes of about ten,
//!   and the caller starts on the first ones while the rest are being made.
//!
//! Why chunks and not the whole turn: holding everything until the run queue was through made
//! all the answers of a batch leave in one write, and a caller with 64 calls in flight on another
//! core then worked while the server waited, and the other way round (direct `CheckEntity` 0.68
//! of the echo, 0.76 without holding). In chunks of 4 KiB it answered 1.06 and 1.11 times as many
//! as the bare echo (two runs of three rounds), through the gateway 1.10 of the bare proxy; in
//! chunks of 16 KiB the bursts were back (0.82). The servers' CPU a direct call fell from 12.4 to
//! 8.5 µs (docs/BENCHMARKS.md, check).
//!
//! An idle connection pays the backstop's task (a microsecond or two) on a small answer, not a
//! timer: nothing waits for a deadline. Without a Tokio runtime (never, in these binaries) a
//! flush sends at once. What is held is bounded: above [`HELD_LIMIT`] bytes a write first sends
//! what is held, waiting for the socket like any write.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker, ready};

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A flush that finds this many bytes held sends them.
pub const CHUNK: usize = 4 * 1024;

/// Above this many held bytes a write sends them before taking more.
pub const HELD_LIMIT: usize = 64 * 1024;

/// A connection that takes no vectored writes and holds its writes until [`CHUNK`] bytes or the
/// end of the scheduler's turn (see the module's documentation).
pub struct Coalescing<S> {
    inner: S,
    held: Vec<u8>,
    /// How much of `held` the socket has taken.
    sent: usize,
    /// A flush decided to send what is held and is waiting for the socket.
    sending: bool,
    /// Shared with the backstop while one is out.
    backstop: Option<Arc<BackstopState>>,
}

impl<S> Coalescing<S> {
    pub fn new(inner: S) -> Coalescing<S> {
        Coalescing { inner, held: Vec::new(), sent: 0, sending: false, backstop: None }
    }

    /// Bytes written and not yet sent.
    pub fn held(&self) -> usize {
        self.held.len() - self.sent
    }

    /// Whether the held bytes wait for more: fewer than a chunk, and a backstop out that has not
    /// run yet (one is left if none is out).
    fn keep_holding(&mut self, connection: &Waker) -> bool {
        if self.held() >= CHUNK {
            return false;
        }
        match &self.backstop {
            Some(state) => {
                // The waker of the latest poll is the one to wake (a future may move between tasks).
                state.connection.register(connection);
                !state.ran.load(Ordering::Acquire)
            }
            None => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let state = Arc::new(BackstopState { ran: AtomicBool::new(false), connection: AtomicWaker::new() });
                    state.connection.register(connection);
                    self.backstop = Some(state.clone());
                    runtime.spawn(Backstop { state, yielded: false });
                    true
                }
                Err(_) => false,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalescing<S> {
    /// Send everything held; pending while the socket is full.
    fn poll_send_held(&mut self, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let sent = ready!(Pin::new(&mut self.inner).poll_write(context, &self.held[self.sent..]))?;
            if sent == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += sent;
        }
        if self.held.capacity() > 4 * CHUNK {
            // A large burst (a stream) does not keep its buffer on a connection that may go idle.
            self.held = Vec::new();
        } else {
            self.held.clear();
        }
        self.sent = 0;
        self.sending = false;
        Poll::Ready(Ok(()))
    }
}

/// What the connection and its backstop share: whether the backstop has run, and whom it wakes.
struct BackstopState {
    ran: AtomicBool,
    connection: AtomicWaker,
}

/// Runs once at the back of the run queue (it is spawned, then yields), then wakes the connection
/// and says so.
struct Backstop {
    state: Arc<BackstopState>,
    yielded: bool,
}

impl Future for Backstop {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        // A task spawned from a worker runs next (Tokio's LIFO slot); yielding once puts it behind
        // the tasks already queued, which are the calls whose answers should join the held ones.
        if !self.yielded {
            self.yielded = true;
            context.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.state.ran.store(true, Ordering::Release);
        self.state.connection.wake();
        Poll::Ready(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalescing<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(context, buffer)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalescing<S> {
    fn poll_write(mut self: Pin<&mut Self>, context: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if self.held() >= HELD_LIMIT {
            self.sending = true;
            ready!(self.poll_send_held(context))?;
        }
        self.held.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.held() > 0 {
            if !self.sending {
                if self.keep_holding(context.waker()) {
                    return Poll::Pending;
                }
                // A backstop still out only wakes the connection once more.
                self.backstop = None;
                self.sending = true;
            }
            ready!(self.poll_send_held(context))?;
        }
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.sending = true;
        ready!(self.poll_send_held(context))?;
        Pin::new(&mut self.inner).poll_shutdown(context)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl tonic::transport::server::Connected for Coalescing<tokio::net::TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        (counter, waker)
    }

    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        (accepted, client)
    }

    #[tokio::test]
    async fn a_small_write_waits_for_the_queued_tasks_and_leaves_with_what_they_add() {
        let (stream, mut peer) = pair().await;
        let mut connection = Coalescing::new(stream);
        let (counter, waker) = counting();
        let mut context = Context::from_waker(&waker);

        assert!(matches!(Pin::new(&mut connection).poll_write(&mut context, b"first "), Poll::Ready(Ok(6))));
        assert!(Pin::new(&mut connection).poll_flush(&mut context).is_pending());
        // A second flush before the backstop has run keeps holding and leaves no second backstop.
        assert!(Pin::new(&mut connection).poll_flush(&mut context).is_pending());
        // What the other calls add in the meantime joins the same write.
        assert!(matches!(Pin::new(&mut connection).poll_write(&mut context, b"second"), Poll::Ready(Ok(6))));
        assert_eq!(connection.held(), 12);
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);

        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "the backstop wakes the connection once");
        assert!(matches!(Pin::new(&mut connection).poll_flush(&mut context), Poll::Ready(Ok(()))));
        assert_eq!(connection.held(), 0);
        let mut received = [0u8; 12];
        peer.read_exact(&mut received).await.unwrap();
        assert_eq!(&received, b"first second");

        // Nothing held: a flush is not delayed.
        assert!(matches!(Pin::new(&mut connection).poll_flush(&mut context), Poll::Ready(Ok(()))));
    }

    #[tokio::test]
    async fn the_backstop_wakes_the_connection_as_it_was_last_polled() {
        let (stream, _peer) = pair().await;
        let mut connection = Coalescing::new(stream);
        let (first, first_waker) = counting();
        let (latest, latest_waker) = counting();
        assert!(matches!(
            Pin::new(&mut connection).poll_write(&mut Context::from_waker(&first_waker), b"held"),
            Poll::Ready(Ok(4))
        ));
        assert!(Pin::new(&mut connection).poll_flush(&mut Context::from_waker(&first_waker)).is_pending());
        assert!(Pin::new(&mut connection).poll_flush(&mut Context::from_waker(&latest_waker)).is_pending());
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        assert_eq!((first.0.load(Ordering::SeqCst), latest.0.load(Ordering::SeqCst)), (0, 1));
    }

    #[tokio::test]
    async fn a_chunk_leaves_at_the_first_flush() {
        let (stream, mut peer) = pair().await;
        let mut connection = Coalescing::new(stream);
        let (counter, waker) = counting();
        let mut context = Context::from_waker(&waker);
        let chunk = vec![1u8; CHUNK];
        assert!(matches!(Pin::new(&mut connection).poll_write(&mut context, &chunk), Poll::Ready(Ok(CHUNK))));
        assert!(matches!(Pin::new(&mut connection).poll_flush(&mut context), Poll::Ready(Ok(()))));
        assert_eq!(connection.held(), 0);
        let mut received = vec![0u8; CHUNK];
        peer.read_exact(&mut received).await.unwrap();
        assert_eq!(received, chunk);
        tokio::task::yield_now().await;
        assert_eq!(counter.0.load(Ordering::SeqCst), 0, "no backstop was left");
    }

    #[tokio::test]
    async fn what_is_held_is_sent_by_shutdown_and_by_writes_past_the_limit() {
        let (stream, mut peer) = pair().await;
        let mut connection = Coalescing::new(stream);
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            peer.read_to_end(&mut received).await.unwrap();
            received
        });
        connection.write_all(&vec![7u8; HELD_LIMIT]).await.unwrap();
        assert_eq!(connection.held(), HELD_LIMIT);
        connection.write_all(b"tail").await.unwrap();
        assert_eq!(connection.held(), 4, "a write past the limit sends what was held first");
        connection.shutdown().await.unwrap();
        let received = reader.await.unwrap();
        assert_eq!(received.len(), HELD_LIMIT + 4);
        assert!(received.ends_with(b"tail"));
    }

    #[test]
    fn outside_a_runtime_a_flush_sends_at_once() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut connection = Coalescing::new(near);
        let (_, waker) = counting();
        let mut context = Context::from_waker(&waker);
        assert!(matches!(Pin::new(&mut connection).poll_write(&mut context, b"alone"), Poll::Ready(Ok(5))));
        assert!(matches!(Pin::new(&mut connection).poll_flush(&mut context), Poll::Ready(Ok(()))));
        let mut received = [0u8; 5];
        let mut buffer = ReadBuf::new(&mut received);
        assert!(matches!(Pin::new(&mut far).poll_read(&mut context, &mut buffer), Poll::Ready(Ok(()))));
        assert_eq!(buffer.filled(), b"alone");
    }

    #[tokio::test]
    async fn an_accepted_connection_takes_no_vectored_writes_and_keeps_its_peer_address() {
        use tonic::transport::server::Connected;
        let (stream, peer) = pair().await;
        let connection = Coalescing::new(stream);
        assert!(!connection.is_write_vectored());
        assert_eq!(connection.connect_info().remote_addr(), Some(peer.local_addr().unwrap()));
    }
}
