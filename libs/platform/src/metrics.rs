//! Prometheus metrics: RED metrics per gRPC method (a tower layer on the server), the registry that
//! services add their own business metrics to, and the admin HTTP server that exposes them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tower::{Layer, Service};

/// Labels of a gRPC call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    /// `package.Service`.
    pub service: String,
    /// Method name.
    pub method: String,
}

/// Labels of a finished gRPC call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub service: String,
    pub method: String,
    /// gRPC status code name, e.g. `OK`, `INVALID_ARGUMENT`.
    pub code: String,
}

/// Labels of a cache lookup.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: String,
    /// `hit`, `miss`, `error` (Redis unreachable: answered from Postgres).
    pub outcome: String,
}

/// Labels of an event-bus counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    pub stream: String,
}

/// Every metric of a process. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    pub requests: Family<CodeLabels, Counter>,
    pub latency: Family<MethodLabels, Histogram>,
    pub in_flight: Gauge,
    pub shed: Counter,
    pub cache: Family<CacheLabels, Counter>,
    pub events_published: Family<StreamLabels, Counter>,
    pub events_consumed: Family<StreamLabels, Counter>,
    /// Events on a stream this process's consumer group has not handled yet (see
    /// [`crate::bus::Consumer`]).
    pub consumer_lag: Family<StreamLabels, Gauge>,
    pub outbox_lag: Gauge,
    pub outbox_pruned: Counter,
    pub processed_pruned: Counter,
    /// Each served method's handles, found once (see [`MethodMetrics`]).
    methods: Arc<RwLock<HashMap<String, Arc<MethodMetrics>>>>,
}

/// A method's latency histogram and its OK counter, looked up in their families once: a call then
/// builds no label strings and hashes only its path.
struct MethodMetrics {
    labels: MethodLabels,
    latency: Histogram,
    ok: Counter,
}

/// Methods whose handles are kept; paths beyond it (a client calling made-up methods) are counted
/// through the families as before, without growing the table.
const CACHED_METHODS: usize = 256;

fn latency_histogram() -> Histogram {
    // 100 µs to ~26 s; a cache hit and a full recompute must both land in a bucket that says something.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 19))
}

impl Metrics {
    pub fn new(service_name: &str) -> Metrics {
        let mut registry = Registry::with_prefix_and_labels(
            "xinyong",
            [(std::borrow::Cow::Borrowed("component"), std::borrow::Cow::Owned(service_name.to_owned()))].into_iter(),
        );
        let requests = Family::<CodeLabels, Counter>::default();
        let latency = Family::<MethodLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let in_flight = Gauge::default();
        let shed = Counter::default();
        let cache = Family::<CacheLabels, Counter>::default();
        let events_published = Family::<StreamLabels, Counter>::default();
        let events_consumed = Family::<StreamLabels, Counter>::default();
        let consumer_lag = Family::<StreamLabels, Gauge>::default();
        let outbox_lag = Gauge::default();
        let outbox_pruned = Counter::default();
        let processed_pruned = Counter::default();
        registry.register("grpc_requests", "gRPC calls finished, by method and status code", requests.clone());
        registry.register(
            "grpc_request_duration_seconds",
            "gRPC call latency until the response headers, by method",
            latency.clone(),
        );
        registry.register("grpc_in_flight", "gRPC calls being served", in_flight.clone());
        registry.register(
            "grpc_shed",
            "gRPC calls refused with RESOURCE_EXHAUSTED because too many were in flight",
            shed.clone(),
        );
        registry.register("cache_lookups", "cache lookups by cache and outcome", cache.clone());
        registry.register("events_published", "events published from the outbox to a stream", events_published.clone());
        registry.register("events_consumed", "events handled by a consumer, by stream", events_consumed.clone());
        registry.register(
            "events_consumer_lag",
            "events on a stream that this service's consumer group has not handled: not yet read, or read and not acknowledged",
            consumer_lag.clone(),
        );
        registry.register("outbox_lag", "outbox rows not yet published", outbox_lag.clone());
        registry.register(
            "outbox_pruned",
            "published outbox rows deleted once older than events.outbox_retention_hours",
            outbox_pruned.clone(),
        );
        registry.register(
            "events_processed_pruned",
            "handled-event records a consumer forgot once older than events.processed_retention_hours",
            processed_pruned.clone(),
        );
        Metrics {
            registry: Arc::new(Mutex::new(registry)),
            requests,
            latency,
            in_flight,
            shed,
            cache,
            events_published,
            events_consumed,
            consumer_lag,
            outbox_lag,
            outbox_pruned,
            processed_pruned,
            methods: Arc::default(),
        }
    }

    fn method(&self, path: &str) -> Arc<MethodMetrics> {
        if let Some(found) = self.methods.read().expect("method metrics lock").get(path) {
            return found.clone();
        }
        let (service, method) = split_path(path);
        let labels = MethodLabels { service: service.to_owned(), method: method.to_owned() };
        let ok = CodeLabels { service: labels.service.clone(), method: labels.method.clone(), code: "OK".to_owned() };
        let found = Arc::new(MethodMetrics {
            latency: self.latency.get_or_create(&labels).clone(),
            ok: self.requests.get_or_create(&ok).clone(),
            labels,
        });
        let mut methods = self.methods.write().expect("method metrics lock");
        if methods.len() < CACHED_METHODS {
            methods.insert(path.to_owned(), found.clone());
        }
        found
    }

    /// Register a service's own metric (business counters).
    pub fn register(&self, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
        self.registry.lock().expect("metrics registry lock").register(name, help, metric);
    }

    /// Count a cache lookup.
    pub fn cache_lookup(&self, cache: &str, outcome: &str) {
        self.cache_counter(cache, outcome).inc();
    }

    /// The counter of one cache's lookups with one outcome, for a path hot enough that building
    /// the labels on every lookup (two strings) shows.
    pub fn cache_counter(&self, cache: &str, outcome: &str) -> Counter {
        self.cache.get_or_create(&CacheLabels { cache: cache.to_owned(), outcome: outcome.to_owned() }).clone()
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().expect("metrics registry lock");
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::error!(%error, "could not encode metrics");
        }
        text
    }
}

/// Split `/package.Service/Method` into its two parts.
pub fn split_path(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    trimmed.split_once('/').unwrap_or((trimmed, ""))
}

/// Name of a gRPC status code as Prometheus labels show it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The status a call was answered with, as far as its response headers tell: a refused call is
/// answered trailers-only, its `grpc-status` among the headers; otherwise `OK` (a stream that fails
/// after sending messages says so only in its trailers).
pub fn answered_with(headers: &http::HeaderMap) -> tonic::Code {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
        .unwrap_or(tonic::Code::Ok)
}

/// Records RED metrics for every call through the server.
///
/// The status is read from the response headers: tonic sends handler errors as trailers-only
/// responses, so every refused call is counted with its code; a stream that fails after sending
/// messages is counted as OK (its latency is the time to the first response headers).
#[derive(Clone)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    pub fn new(metrics: Metrics) -> MetricsLayer {
        MetricsLayer { metrics: Arc::new(metrics) }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService { inner, metrics: self.metrics.clone() }
    }
}

/// Behind one `Arc`: the server clones its service stack for every call, and a `Metrics` is ten
/// handles, each a reference count to raise and drop again.
#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, ResBody> Service<http::Request<B>> for MetricsService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // Per call: one lookup by path and three reference counts, where it used to clone every
        // handle of `Metrics` and build five label strings (a check costs ~40 µs of a core in all).
        let method = self.metrics.method(request.uri().path());
        let in_flight = self.metrics.in_flight.clone();
        let requests = self.metrics.requests.clone();
        let started = Instant::now();
        in_flight.inc();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            in_flight.dec();
            method.latency.observe(started.elapsed().as_secs_f64());
            let code = match &result {
                Ok(response) => answered_with(response.headers()),
                Err(_) => tonic::Code::Internal,
            };
            if code == tonic::Code::Ok {
                method.ok.inc();
            } else {
                requests
                    .get_or_create(&CodeLabels {
                        service: method.labels.service.clone(),
                        method: method.labels.method.clone(),
                        code: code_name(code).to_owned(),
                    })
                    .inc();
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_cache_counter_counts_in_the_same_series_as_a_lookup() {
        let metrics = Metrics::new("test");
        let hits = metrics.cache_counter("subjects", "hit");
        hits.inc();
        metrics.cache_lookup("subjects", "hit");
        metrics.cache_lookup("subjects", "miss");
        let text = metrics.encode();
        assert!(
            text.contains(r#"xinyong_cache_lookups_total{component="test",cache="subjects",outcome="hit"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"xinyong_cache_lookups_total{component="test",cache="subjects",outcome="miss"} 1"#),
            "{text}"
        );
    }
}
