//! How every binary serves: bind first, then serve gRPC behind the same layers (metrics, global
//! load shedding, internal-token check, request timeout), with the health service, an admin HTTP
//! port, and a graceful shutdown that reports NOT_SERVING before it stops taking work and drains.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::{Layer, Service};

use crate::coalescing::Coalescing;
use crate::config::PlatformSettings;
use crate::identity::{ExpectedSecret, INTERNAL_TOKEN_HEADER};
use crate::metrics::{Metrics, MetricsLayer};

/// Errors starting or running a server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: std::io::Error },
    #[error("gRPC server failed: {}", with_causes(.0))]
    Transport(#[from] tonic::transport::Error),
    #[error("admin server failed: {0}")]
    Admin(std::io::Error),
}

/// An error with what caused it: tonic's transport error says only "transport error", its causes
/// say which (a TLS key that does not go with its certificate, say).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(source) = cause {
        text.push_str(": ");
        text.push_str(&source.to_string());
        cause = source.source();
    }
    text
}

/// Bind a listener; `host:port` with port 0 picks a free port (tests).
pub async fn bind(address: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(address).await.map_err(|source| ServeError::Bind { address: address.to_owned(), source })
}

/// Everything a binary needs to serve, created before the service so handlers can share
/// metrics and health.
#[derive(Clone)]
pub struct Host {
    pub settings: PlatformSettings,
    pub metrics: Metrics,
    health: HealthReporter,
    health_service: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
    served_names: Arc<std::sync::Mutex<Vec<String>>>,
    ready: Arc<AtomicBool>,
}

impl Host {
    pub fn new(settings: PlatformSettings) -> Host {
        let metrics = Metrics::new(&settings.service_name);
        let health = HealthReporter::new();
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(health.clone()),
        );
        Host {
            settings,
            metrics,
            health,
            health_service,
            served_names: Arc::default(),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Mark a gRPC service (by its full name) as serving; shutdown turns it NOT_SERVING.
    pub async fn set_serving(&self, service_name: &str) {
        self.served_names.lock().expect("served names lock").push(service_name.to_owned());
        self.health.set_service_status(service_name, ServingStatus::Serving).await;
    }

    /// The health reporter, for services that change their status at run time.
    pub fn health(&self) -> &HealthReporter {
        &self.health
    }

    /// Serve `routes` on `listener` until `shutdown` resolves, then drain.
    pub async fn serve(
        self,
        listener: TcpListener,
        admin_listener: Option<TcpListener>,
        routes: Routes,
        options: ServeOptions,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let settings = self.settings.server.clone();
        let require_internal_token = options.require_internal_token;
        let builder = tonic::transport::Server::builder();
        let routes = if options.add_health { routes.add_service(self.health_service.clone()) } else { routes };
        self.health.set_service_status("", ServingStatus::Serving).await;
        self.ready.store(true, Ordering::SeqCst);

        let admin_stop = Arc::new(tokio::sync::Notify::new());
        let admin_task = admin_listener.map(|listener| {
            let stop = admin_stop.clone();
            tokio::spawn(serve_admin(listener, self.metrics.clone(), self.ready.clone(), async move {
                stop.notified().await
            }))
        });

        let internal_token = require_internal_token.then(|| self.settings.internal.token.clone());
        let layers = tower::ServiceBuilder::new()
            .layer(MetricsLayer::new(self.metrics.clone()))
            .layer(LoadShedLayer::new(settings.max_in_flight, self.metrics.clone()))
            .layer(InternalAuthLayer::new(internal_token));

        let draining = Arc::new(tokio::sync::Notify::new());
        let host = self.clone();
        let draining_signal = draining.clone();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: health NOT_SERVING, then draining");
            host.ready.store(false, Ordering::SeqCst);
            host.health.set_service_status("", ServingStatus::NotServing).await;
            let names = host.served_names.lock().expect("served names lock").clone();
            for name in names {
                host.health.set_service_status(&name, ServingStatus::NotServing).await;
            }
            tokio::time::sleep(Duration::from_millis(host.settings.server.shutdown_delay_ms)).await;
            draining_signal.notify_one();
        };

        // The builder's `tcp_nodelay` only reaches sockets it binds itself; these come from our
        // listener, so the incoming stream sets it. Without it a response written in pieces waits
        // for the client's delayed ACK: 40 ms per call. Answers completed together leave in a few
        // writes, not one each (`coalescing`).
        let incoming = futures::StreamExt::map(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            |accepted| accepted.map(Coalescing::new),
        );
        let router = builder.timeout(settings.request_timeout()).layer(layers).add_routes(routes);
        let server: Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>> = match options.tls {
            Some(tls) => Box::pin(router.serve_with_incoming_shutdown(crate::tls::incoming(incoming, tls), signal)),
            None => Box::pin(router.serve_with_incoming_shutdown(incoming, signal)),
        };
        tokio::pin!(server);

        let result = tokio::select! {
            result = &mut server => result.map_err(ServeError::from),
            () = async {
                draining.notified().await;
                tokio::time::sleep(Duration::from_secs(settings.drain_seconds)).await;
            } => {
                tracing::warn!(seconds = settings.drain_seconds, "drain period over; closing remaining calls");
                Ok(())
            }
        };
        admin_stop.notify_one();
        if let Some(task) = admin_task {
            match task.await {
                Ok(Err(error)) => tracing::error!(%error, "admin server failed"),
                Err(error) => tracing::error!(%error, "admin server task failed"),
                Ok(Ok(())) => {}
            }
        }
        result
    }
}

/// How [`Host::serve`] serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Refuse calls without the platform's internal token (services); the gateway, which
    /// authenticates departments itself, passes false.
    pub require_internal_token: bool,
    /// Serve the standard health service; the gateway serves its own, which asks the upstreams.
    pub add_health: bool,
    /// Speak TLS on the gRPC port (the gateway, when `gateway.tls` is configured). Inside the
    /// cluster the services speak plain HTTP/2; a mesh may encrypt it (k8s/README.md).
    pub tls: Option<crate::tls::Tls>,
}

impl ServeOptions {
    /// A service behind the gateway.
    pub const SERVICE: ServeOptions = ServeOptions { require_internal_token: true, add_health: true, tls: None };
}

/// A boxed shutdown future, as binaries and tests pass it.
pub type ShutdownSignal = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

async fn serve_admin(
    listener: TcpListener,
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    use axum::http::StatusCode;
    use axum::routing::get;

    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(Ordering::SeqCst) {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map_err(ServeError::Admin)
}

/// A gRPC error response for a status, without calling the service behind.
fn status_response(status: tonic::Status) -> http::Response<Body> {
    status.into_http()
}

/// Refuses calls with RESOURCE_EXHAUSTED once `max_in_flight` are being served, across every
/// connection (tonic's own load shedding counts per connection, which a gateway funnels into a few).
#[derive(Clone)]
pub struct LoadShedLayer {
    permits: Arc<Semaphore>,
    metrics: Metrics,
}

impl LoadShedLayer {
    pub fn new(max_in_flight: usize, metrics: Metrics) -> LoadShedLayer {
        LoadShedLayer { permits: Arc::new(Semaphore::new(max_in_flight.max(1))), metrics }
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShed<S>;
    fn layer(&self, inner: S) -> Self::Service {
        LoadShed { inner, permits: self.permits.clone(), metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct LoadShed<S> {
    inner: S,
    permits: Arc<Semaphore>,
    metrics: Metrics,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for LoadShed<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.metrics.shed.inc();
            return Box::pin(async {
                Ok(status_response(tonic::Status::resource_exhausted(
                    "the server is at its limit of calls in flight; retry with backoff",
                )))
            });
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            drop(permit);
            response
        })
    }
}

/// Refuses calls that do not carry the internal token. Health and reflection stay open: probes
/// and operators use them without credentials.
#[derive(Clone)]
pub struct InternalAuthLayer {
    token: Option<ExpectedSecret>,
}

impl InternalAuthLayer {
    pub fn new(token: Option<SecretString>) -> InternalAuthLayer {
        InternalAuthLayer { token: token.as_ref().map(ExpectedSecret::new) }
    }
}

impl<S> Layer<S> for InternalAuthLayer {
    type Service = InternalAuth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        InternalAuth { inner, token: self.token.clone() }
    }
}

#[derive(Clone)]
pub struct InternalAuth<S> {
    inner: S,
    token: Option<ExpectedSecret>,
}

fn is_open_path(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

impl<S, B> Service<http::Request<B>> for InternalAuth<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Some(expected) = &self.token
            && !is_open_path(request.uri().path())
        {
            let presented = request.headers().get(INTERNAL_TOKEN_HEADER).map(|value| value.as_bytes());
            let accepted = presented.is_some_and(|presented| expected.matches(presented));
            if !accepted {
                return Box::pin(async {
                    Ok(status_response(tonic::Status::unauthenticated(
                        "this service only accepts calls from the gateway or a sibling service; call the gateway",
                    )))
                });
            }
        }
        Box::pin(self.inner.call(request))
    }
}
