//! HTTP/2 connections to a service: one to every address the service's host resolves to (in
//! Kubernetes the headless service's pods), shared by every call, the calls taken round robin
//! over the addresses. The host is looked up again every so often (the gateway's
//! `gateway.upstream_resolve_seconds`; [`SIBLING_RESOLVE`] for calls between services), so pods
//! that a scale-up adds get calls and pods that went away stop getting them; an address whose
//! connect fails is passed over for a while. Without this every caller held one connection per
//! service, and every call went to whichever pod DNS named first: replicas added behind a service
//! took no load from it.
//!
//! The gateway forwards every public call through these; services call each other through them
//! as a tonic client's transport ([`UpstreamConnection::sibling`]).
//!
//! The gateway forwards every public call, so what a call costs here is paid on the whole public
//! path. tonic's `Channel` queues each request to a worker task (`tower::buffer`) that owns the
//! connection and its reconnection, and sends the answer back through a oneshot: a task hop and
//! two channel operations a call. HTTP/2 multiplexes by itself, and hyper's `SendRequest` is a
//! cheap clonable handle to one connection, so the gateway holds that handle and sends from the
//! calling task. What the channel did besides is done here: a connection is opened on the first
//! call (a service that starts after the gateway is found then), with a connect timeout, no
//! Nagle, and keep-alive pings; the requests forwarded together leave in a few writes, not one
//! each (`xinyong_platform::coalescing`); a broken connection is replaced on the next call; a
//! request that never left (its connection had just closed) is sent once more, on a new
//! connection when the old one has closed. Nothing else is retried: a request that may have reached the service is
//! answered `UNAVAILABLE`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::coalescing::Coalescing;
use http::uri::{Authority, Scheme, Uri};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use tonic::body::Body;

/// Why a call could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("the connection to {address} failed: {source}")]
    Send { address: String, source: hyper::Error },
}

/// How the addresses behind an upstream's host are found: DNS, or a fixed list in tests.
pub type Resolver =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>> + Send + Sync>;

/// How often a service calling another looks the other's host up again.
pub const SIBLING_RESOLVE: Duration = Duration::from_secs(10);
/// How long a service calling another waits for a connection.
pub const SIBLING_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an address whose connect failed is passed over while others answer.
const FAILED_FOR: Duration = Duration::from_secs(2);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An upstream service (`http://host:port`) and lazily opened HTTP/2 connections to every address
/// its host resolves to, one each, shared by every call.
#[derive(Clone)]
pub struct UpstreamConnection {
    inner: Arc<Inner>,
}

struct Inner {
    scheme: Scheme,
    authority: Authority,
    connect_timeout: Duration,
    resolver: Resolver,
    resolve_every: Duration,
    /// The addresses last resolved, in address order, each with its connection.
    endpoints: Mutex<Arc<Vec<Arc<Endpoint>>>>,
    resolved_at: Mutex<Option<Instant>>,
    /// Held while resolving, so that one call resolves and the others go on with the list they have.
    resolving: tokio::sync::Mutex<()>,
    /// Round robin over the addresses: each call starts at the next.
    next: AtomicUsize,
    /// How many addresses the host resolved to last.
    observed: Option<Gauge>,
}

/// One address of an upstream and its connection.
struct Endpoint {
    address: SocketAddr,
    /// The current connection's handle, cloned by every call (a reference count).
    sender: Mutex<Option<SendRequest<Body>>>,
    /// Held while connecting, so that calls arriving together open one connection, not one each.
    connecting: tokio::sync::Mutex<()>,
    /// Until when a failed connect has this address passed over.
    failed_until: Mutex<Option<Instant>>,
}

impl UpstreamConnection {
    /// An upstream at `uri` (`http://host:port`) whose host is looked up in DNS again every
    /// `resolve_every`; nothing is resolved or opened until the first call.
    pub fn new(uri: &Uri, connect_timeout: Duration, resolve_every: Duration) -> Option<UpstreamConnection> {
        let authority = uri.authority().cloned()?;
        let (host, port) = (authority.host().to_owned(), authority.port_u16().unwrap_or(80));
        let resolver: Resolver = Arc::new(move || {
            let host = host.clone();
            Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) })
        });
        UpstreamConnection::with_resolver(uri, connect_timeout, resolve_every, resolver)
    }

    /// The transport of a service's client of another service at `url` (`http://host:port`).
    pub fn sibling(url: &str) -> Option<UpstreamConnection> {
        UpstreamConnection::new(&url.parse().ok()?, SIBLING_CONNECT_TIMEOUT, SIBLING_RESOLVE)
    }

    /// [`UpstreamConnection::new`] with the addresses found by `resolver`.
    pub fn with_resolver(
        uri: &Uri,
        connect_timeout: Duration,
        resolve_every: Duration,
        resolver: Resolver,
    ) -> Option<UpstreamConnection> {
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
                resolver,
                resolve_every,
                endpoints: Mutex::new(Arc::new(Vec::new())),
                resolved_at: Mutex::new(None),
                resolving: tokio::sync::Mutex::new(()),
                next: AtomicUsize::new(0),
                observed: None,
            }),
        })
    }

    /// Report how many addresses the host resolves to in `gauge`.
    pub fn observed(mut self, gauge: Gauge) -> UpstreamConnection {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.observed = Some(gauge);
        }
        self
    }

    /// Send `request` (its path kept, scheme and authority the upstream's) to the next address in
    /// turn and return the answer with its body still streaming. An address that cannot be
    /// connected to is passed over for the next; the request goes to one address only.
    pub async fn send(&self, request: http::Request<Body>) -> Result<http::Response<Body>, UpstreamError> {
        let endpoints = self.endpoints().await?;
        let count = endpoints.len();
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        // Addresses that failed lately go last, tried only when the others cannot be reached.
        let order = (0..count)
            .map(|offset| &endpoints[(start + offset) % count])
            .filter(|endpoint| !endpoint.failing(now))
            .chain(
                (0..count).map(|offset| &endpoints[(start + offset) % count]).filter(|endpoint| endpoint.failing(now)),
            );
        let mut request = Some(self.addressed(request));
        let mut last_error = None;
        for endpoint in order {
            match endpoint.sender(&self.inner, false).await {
                Ok(sender) => {
                    let request = request.take().expect("a request is sent once");
                    return endpoint.send(&self.inner, sender, request).await;
                }
                Err(error) => {
                    *lock(&endpoint.failed_until) = Some(Instant::now() + FAILED_FOR);
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| UpstreamError::Connect {
            address: self.address(),
            reason: "no address to connect to".to_owned(),
        }))
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

    /// The addresses to call: resolved on the first call, and again once `resolve_every` has
    /// passed, by one call while the others use the list they have. A lookup that fails or finds
    /// nothing keeps the list; with no list yet the call fails.
    async fn endpoints(&self) -> Result<Arc<Vec<Arc<Endpoint>>>, UpstreamError> {
        let current = lock(&self.inner.endpoints).clone();
        // With no address yet (the service's pods not up when first called) every call looks again.
        let due = current.is_empty()
            || lock(&self.inner.resolved_at).is_none_or(|at| at.elapsed() >= self.inner.resolve_every);
        if !due {
            return Ok(current);
        }
        let _resolving = if current.is_empty() {
            self.inner.resolving.lock().await
        } else {
            match self.inner.resolving.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(current),
            }
        };
        // Resolved by another call while this one waited?
        let resolved = lock(&self.inner.endpoints).clone();
        if !resolved.is_empty()
            && lock(&self.inner.resolved_at).is_some_and(|at| at.elapsed() < self.inner.resolve_every)
        {
            return Ok(resolved);
        }
        let found = (self.inner.resolver)().await;
        *lock(&self.inner.resolved_at) = Some(Instant::now());
        let mut addresses = match found {
            Ok(addresses) if !addresses.is_empty() => addresses,
            outcome => {
                let reason = match outcome {
                    Err(error) => error.to_string(),
                    Ok(_) => "the name resolves to no address".to_owned(),
                };
                if current.is_empty() {
                    return Err(UpstreamError::Connect { address: self.address(), reason });
                }
                tracing::warn!(upstream = %self.address(), %reason, "upstream not resolved again; keeping its addresses");
                return Ok(current);
            }
        };
        addresses.sort_unstable();
        addresses.dedup();
        // Addresses still there keep their connections; those gone are dropped with theirs.
        let endpoints: Vec<Arc<Endpoint>> = addresses
            .into_iter()
            .map(|address| {
                current.iter().find(|endpoint| endpoint.address == address).cloned().unwrap_or_else(|| {
                    Arc::new(Endpoint {
                        address,
                        sender: Mutex::new(None),
                        connecting: tokio::sync::Mutex::new(()),
                        failed_until: Mutex::new(None),
                    })
                })
            })
            .collect();
        if endpoints.len() != current.len() || endpoints.iter().zip(current.iter()).any(|(a, b)| a.address != b.address)
        {
            tracing::info!(upstream = %self.address(), addresses = endpoints.len(), "upstream addresses changed");
        }
        if let Some(gauge) = &self.inner.observed {
            gauge.set(endpoints.len() as i64);
        }
        let endpoints = Arc::new(endpoints);
        *lock(&self.inner.endpoints) = endpoints.clone();
        Ok(endpoints)
    }
}

impl Endpoint {
    fn failing(&self, now: Instant) -> bool {
        lock(&self.failed_until).is_some_and(|until| until > now)
    }

    /// Send on `sender`; a request that never left (its connection had just closed) is sent once
    /// more, on the connection a concurrent call may have opened meanwhile or a new one.
    async fn send(
        &self,
        inner: &Inner,
        mut sender: SendRequest<Body>,
        mut request: http::Request<Body>,
    ) -> Result<http::Response<Body>, UpstreamError> {
        let mut fresh = false;
        loop {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response.map(Body::new)),
                Err(mut error) => {
                    self.forget_if_closed();
                    match error.take_message() {
                        Some(unsent) if !fresh => {
                            request = unsent;
                            fresh = true;
                            sender = self.sender(inner, true).await?;
                        }
                        _ => {
                            let address = self.address.to_string();
                            return Err(UpstreamError::Send { address, source: error.into_error() });
                        }
                    }
                }
            }
        }
    }

    /// The current connection's handle, or a new connection's when there is none or it has closed.
    /// `fresh` (a resend) skips the unlocked look and waits for any connect under way.
    async fn sender(&self, inner: &Inner, fresh: bool) -> Result<SendRequest<Body>, UpstreamError> {
        if !fresh && let Some(sender) = self.current() {
            return Ok(sender);
        }
        let _connecting = self.connecting.lock().await;
        // Another call may have connected while this one waited.
        if let Some(sender) = self.current() {
            return Ok(sender);
        }
        let sender = self.connect(inner).await?;
        *lock(&self.sender) = Some(sender.clone());
        *lock(&self.failed_until) = None;
        Ok(sender)
    }

    fn current(&self) -> Option<SendRequest<Body>> {
        lock(&self.sender).as_ref().filter(|sender| !sender.is_closed()).cloned()
    }

    /// After a failed call: drop the current connection if it has closed (a failure of one stream
    /// leaves an open connection in place, and so does a connection another call has opened since).
    fn forget_if_closed(&self) {
        let mut sender = lock(&self.sender);
        if sender.as_ref().is_some_and(SendRequest::is_closed) {
            *sender = None;
        }
    }

    async fn connect(&self, inner: &Inner) -> Result<SendRequest<Body>, UpstreamError> {
        let address = self.address;
        let failed = |reason: String| UpstreamError::Connect {
            address: format!("{}://{} ({address})", inner.scheme, inner.authority),
            reason,
        };
        let stream = tokio::time::timeout(inner.connect_timeout, tokio::net::TcpStream::connect(address))
            .await
            .map_err(|_| failed(format!("no answer within {} ms", inner.connect_timeout.as_millis())))?
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
    use std::sync::atomic::AtomicU32;

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn only_plain_http_addresses_with_a_host_are_upstreams() {
        assert!(UpstreamConnection::new(&"http://sanctions:50051".parse().unwrap(), SECOND, SECOND).is_some());
        assert!(UpstreamConnection::new(&"https://sanctions:50051".parse().unwrap(), SECOND, SECOND).is_none());
        assert!(UpstreamConnection::new(&"/no/host".parse().unwrap(), SECOND, SECOND).is_none());
    }

    #[test]
    fn a_forwarded_request_keeps_its_path_and_takes_the_upstreams_address() {
        let upstream = UpstreamConnection::new(&"http://sanctions:50051".parse().unwrap(), SECOND, SECOND).unwrap();
        let request = http::Request::builder()
            .uri("http://gateway.example:443/xinyong.sanctions.v1.SanctionsService/CheckEntity")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            upstream.addressed(request).uri().to_string(),
            "http://sanctions:50051/xinyong.sanctions.v1.SanctionsService/CheckEntity"
        );
    }

    /// An HTTP/2 server on a free port that counts the requests it answers, until aborted.
    async fn backend() -> (SocketAddr, Arc<AtomicU32>, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let answered = Arc::new(AtomicU32::new(0));
        let counter = answered.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                let service = hyper::service::service_fn(move |_request: http::Request<hyper::body::Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty())))
                });
                connections.spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (address, answered, task)
    }

    fn request() -> http::Request<Body> {
        http::Request::builder().uri("/xinyong.registry.v1.RegistryService/GetEntity").body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn calls_go_round_robin_over_the_addresses_resolved_and_follow_them_as_they_change() {
        let (first, first_answered, first_task) = backend().await;
        let (second, second_answered, _second_task) = backend().await;
        let addresses = Arc::new(Mutex::new(vec![first, second]));
        let listed = addresses.clone();
        let resolver: Resolver = Arc::new(move || {
            let found = lock(&listed).clone();
            Box::pin(async move { Ok(found) })
        });
        let gauge = Gauge::default();
        // Looked up again on every call.
        let upstream = UpstreamConnection::with_resolver(
            &"http://registry-headless:50061".parse().unwrap(),
            SECOND,
            Duration::ZERO,
            resolver,
        )
        .unwrap()
        .observed(gauge.clone());
        for _ in 0..10 {
            upstream.send(request()).await.unwrap();
        }
        assert_eq!((first_answered.load(Ordering::SeqCst), second_answered.load(Ordering::SeqCst)), (5, 5));
        assert_eq!(gauge.get(), 2);

        // A pod gone from DNS gets nothing more.
        *lock(&addresses) = vec![second];
        for _ in 0..4 {
            upstream.send(request()).await.unwrap();
        }
        assert_eq!((first_answered.load(Ordering::SeqCst), second_answered.load(Ordering::SeqCst)), (5, 9));
        assert_eq!(gauge.get(), 1);

        // A pod still named but down is passed over: every call is answered by the other.
        first_task.abort();
        let _ = first_task.await;
        *lock(&addresses) = vec![first, second];
        for _ in 0..6 {
            upstream.send(request()).await.unwrap();
        }
        assert_eq!(second_answered.load(Ordering::SeqCst), 15);

        // Nothing to resolve to, and nothing resolved before: the call fails naming the upstream,
        // and the next call looks again at once, not after the interval.
        let later = Arc::new(Mutex::new(Vec::new()));
        let listed = later.clone();
        let not_yet: Resolver = Arc::new(move || {
            let found = lock(&listed).clone();
            Box::pin(async move { Ok(found) })
        });
        let hour = Duration::from_secs(3600);
        let starting =
            UpstreamConnection::with_resolver(&"http://ghost:1".parse().unwrap(), SECOND, hour, not_yet).unwrap();
        let error = starting.send(request()).await.unwrap_err();
        assert!(error.to_string().contains("http://ghost:1"), "{error}");
        *lock(&later) = vec![second];
        starting.send(request()).await.unwrap();
    }
}
