//! One HTTP/2 connection from the gateway to each owning service, shared by every call.
//!
//! The gateway forwards every public call, so what a call costs here is paid on the whole public
//! path. tonic's `Channel` queues each request to a worker task (`tower::buffer`) that owns the
//! connection and its reconnection, and sends the answer back through a oneshot: a task hop and
//! two channel operations a call. HTTP/2 multiplexes by itself, and hyper's `SendRequest` is a
//! cheap clonable handle to one connection, so the gateway holds that handle and sends from the
//! calling task. What the channel did besides is done here: the connection is opened on the first
//! call (a service that starts after the gateway is found then), with a connect timeout, no
//! Nagle, and keep-alive pings; the requests forwarded together leave in a few writes, not one
//! each (`xinyong_platform::coalescing`); a broken connection is replaced on the next call; a
//! request that never left (its connection had just closed) is sent once more, on a new
//! connection when the old one has closed. Nothing else is retried: a request that may have reached the service is
//! answered `UNAVAILABLE`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::{Authority, Scheme, Uri};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tonic::body::Body;
use xinyong_platform::coalescing::Coalescing;

/// Why a call could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("the connection to {address} failed: {source}")]
    Send { address: String, source: hyper::Error },
}

/// A lazily opened, shared HTTP/2 connection to one upstream address (`http://host:port`).
#[derive(Clone)]
pub struct UpstreamConnection {
    inner: Arc<Inner>,
}

struct Inner {
    scheme: Scheme,
    authority: Authority,
    connect_timeout: Duration,
    /// The current connection's handle, cloned by every call (a reference count).
    sender: Mutex<Option<SendRequest<Body>>>,
    /// Held while connecting, so that calls arriving together open one connection, not one each.
    connecting: tokio::sync::Mutex<()>,
}

impl UpstreamConnection {
    /// An upstream at `uri` (`http://host:port`); nothing is opened until the first call.
    pub fn new(uri: &Uri, connect_timeout: Duration) -> Option<UpstreamConnection> {
        let scheme = uri.scheme().cloned()?;
        if scheme != Scheme::HTTP {
            return None;
        }
        let authority = uri.authority().cloned()?;
        Some(UpstreamConnection {
            inner: Arc::new(Inner {
                scheme,
                authority,
                connect_timeout,
                sender: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Send `request` (its path kept, scheme and authority the upstream's) and return the answer
    /// with its body still streaming.
    pub async fn send(&self, request: http::Request<Body>) -> Result<http::Response<Body>, UpstreamError> {
        let mut request = self.addressed(request);
        let mut fresh = false;
        loop {
            let mut sender = self.sender(fresh).await?;
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response.map(Body::new)),
                Err(mut error) => {
                    self.forget_if_closed();
                    // Never sent (the connection had closed under it): safe to send once more, on
                    // the connection a concurrent call may have opened meanwhile or a new one.
                    match error.take_message() {
                        Some(unsent) if !fresh => {
                            request = unsent;
                            fresh = true;
                        }
                        _ => return Err(UpstreamError::Send { address: self.address(), source: error.into_error() }),
                    }
                }
            }
        }
    }

    fn address(&self) -> String {
        format!("{}://{}", self.inner.scheme, self.inner.authority)
    }

    fn addressed(&self, request: http::Request<Body>) -> http::Request<Body> {
        let (mut parts, body) = request.into_parts();
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.inner.scheme.clone());
        uri.authority = Some(self.inner.authority.clone());
        uri.path_and_query = parts.uri.path_and_query().cloned();
        if let Ok(uri) = Uri::from_parts(uri) {
            parts.uri = uri;
        }
        http::Request::from_parts(parts, body)
    }

    /// The current connection's handle, or a new connection's when there is none or it has closed.
    /// `fresh` (a resend) skips the unlocked look and waits for any connect under way.
    async fn sender(&self, fresh: bool) -> Result<SendRequest<Body>, UpstreamError> {
        if !fresh && let Some(sender) = self.current() {
            return Ok(sender);
        }
        let _connecting = self.inner.connecting.lock().await;
        // Another call may have connected while this one waited.
        if let Some(sender) = self.current() {
            return Ok(sender);
        }
        let sender = self.connect().await?;
        *self.inner.sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(sender.clone());
        Ok(sender)
    }

    fn current(&self) -> Option<SendRequest<Body>> {
        let sender = self.inner.sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sender.as_ref().filter(|sender| !sender.is_closed()).cloned()
    }

    /// After a failed call: drop the current connection if it has closed (a failure of one stream
    /// leaves an open connection in place, and so does a connection another call has opened since).
    fn forget_if_closed(&self) {
        let mut sender = self.inner.sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if sender.as_ref().is_some_and(SendRequest::is_closed) {
            *sender = None;
        }
    }

    async fn connect(&self) -> Result<SendRequest<Body>, UpstreamError> {
        let host = self.inner.authority.host();
        let port = self.inner.authority.port_u16().unwrap_or(80);
        let failed = |reason: String| UpstreamError::Connect { address: self.address(), reason };
        let stream = tokio::time::timeout(self.inner.connect_timeout, tokio::net::TcpStream::connect((host, port)))
            .await
            .map_err(|_| failed(format!("no answer within {} ms", self.inner.connect_timeout.as_millis())))?
            .map_err(|error| failed(error.to_string()))?;
        // Small answers must not wait for the peer's delayed ACK.
        stream.set_nodelay(true).map_err(|error| failed(error.to_string()))?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(Coalescing::new(stream)))
            .await
            .map_err(|error| failed(error.to_string()))?;
        let address = self.address();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(upstream = %address, %error, "upstream connection closed");
            }
        });
        Ok(sender)
    }
}

/// As a tonic client transport: the gateway's health checks of the services ride the same
/// connection as the calls it forwards.
impl tower::Service<http::Request<Body>> for UpstreamConnection {
    type Response = http::Response<Body>;
    type Error = UpstreamError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let connection = self.clone();
        Box::pin(async move { connection.send(request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_addresses_with_a_host_are_upstreams() {
        let timeout = Duration::from_secs(1);
        assert!(UpstreamConnection::new(&"http://sanctions:50051".parse().unwrap(), timeout).is_some());
        assert!(UpstreamConnection::new(&"https://sanctions:50051".parse().unwrap(), timeout).is_none());
        assert!(UpstreamConnection::new(&"/no/host".parse().unwrap(), timeout).is_none());
    }

    #[test]
    fn a_forwarded_request_keeps_its_path_and_takes_the_upstreams_address() {
        let upstream =
            UpstreamConnection::new(&"http://sanctions:50051".parse().unwrap(), Duration::from_secs(1)).unwrap();
        let request = http::Request::builder()
            .uri("http://gateway.example:443/xinyong.sanctions.v1.SanctionsService/CheckEntity")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            upstream.addressed(request).uri().to_string(),
            "http://sanctions:50051/xinyong.sanctions.v1.SanctionsService/CheckEntity"
        );
    }
}
