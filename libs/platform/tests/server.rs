use std::time::Duration;

use http::uri::PathAndQuery;
use secrecy::SecretString;
use tonic::Code;
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use xinyong_platform::config::{PlatformSettings, load_with};
use xinyong_platform::server::{Host, ServeOptions, bind};
use xinyong_platform::testing::http_get;

/// A method that takes a while, so calls overlap.
#[derive(Clone)]
struct Slow;

impl tonic::server::NamedService for Slow {
    const NAME: &'static str = "test.Slow";
}

impl tower::Service<http::Request<tonic::body::Body>> for Slow {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            Ok(tonic::Status::not_found("slow call finished").into_http())
        })
    }
}

struct Running {
    channel: Channel,
    admin: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(max_in_flight: &str, token: &str) -> Running {
    let mut settings: PlatformSettings =
        load_with("registry", [("XINYONG__SERVER__MAX_IN_FLIGHT".to_owned(), max_in_flight.to_owned())]).unwrap();
    settings.internal.token = SecretString::from(token);
    let listener = bind("127.0.0.1:0").await.unwrap();
    let admin_listener = bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let admin = admin_listener.local_addr().unwrap();
    let host = Host::new(settings);
    host.set_serving("test.Slow").await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        host.serve(listener, Some(admin_listener), Routes::new(Slow), ServeOptions::SERVICE, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let channel = Endpoint::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
    Running { channel, admin, stop, task }
}

async fn call_slow(channel: Channel, token: Option<&str>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    if let Some(token) = token {
        request.metadata_mut().insert("x-xinyong-internal-token", token.parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, tonic_health::pb::HealthCheckResponse>::default();
    grpc.unary(request, PathAndQuery::from_static("/test.Slow/Call"), codec).await.unwrap_err()
}

#[tokio::test]
async fn calls_beyond_the_limit_in_flight_get_resource_exhausted() {
    let running = start("1", "secret").await;
    let first = tokio::spawn(call_slow(running.channel.clone(), Some("secret")));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = call_slow(running.channel.clone(), Some("secret")).await;
    assert_eq!(second.code(), Code::ResourceExhausted, "{second:?}");
    assert!(second.message().contains("retry"), "{}", second.message());
    let first = first.await.unwrap();
    assert_eq!(first.code(), Code::NotFound, "the call in flight finished normally: {first:?}");

    let metrics = http_get(running.admin, "/metrics").await;
    assert!(metrics.contains("xinyong_grpc_shed_total{component=\"registry\"} 1"), "{metrics}");
    assert!(
        metrics.contains("method=\"Call\",code=\"RESOURCE_EXHAUSTED\"")
            && metrics.contains("method=\"Call\",code=\"NOT_FOUND\""),
        "requests are counted per method and code: {metrics}"
    );
    assert!(metrics.contains("xinyong_grpc_request_duration_seconds_bucket"), "{metrics}");
    running.stop.send(()).unwrap();
    running.task.await.unwrap();
}

#[tokio::test]
async fn services_refuse_calls_without_the_internal_token_but_not_health() {
    let running = start("8", "secret").await;
    let refused = call_slow(running.channel.clone(), None).await;
    assert_eq!(refused.code(), Code::Unauthenticated);
    let wrong = call_slow(running.channel.clone(), Some("guess")).await;
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let accepted = call_slow(running.channel.clone(), Some("secret")).await;
    assert_eq!(accepted.code(), Code::NotFound, "with the token the call reaches the service");

    let health = HealthClient::new(running.channel.clone())
        .check(HealthCheckRequest { service: "test.Slow".into() })
        .await
        .expect("health needs no token")
        .into_inner();
    assert_eq!(health.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    // Calls are counted per method and code, answered ones as OK, and timed per method.
    let metrics = http_get(running.admin, "/metrics").await;
    let line = |start: &str, end: &str| metrics.lines().any(|line| line.starts_with(start) && line.ends_with(end));
    assert!(line("xinyong_grpc_requests_total{", "method=\"Check\",code=\"OK\"} 1"), "{metrics}");
    assert!(line("xinyong_grpc_requests_total{", "method=\"Call\",code=\"UNAUTHENTICATED\"} 2"), "{metrics}");
    assert!(line("xinyong_grpc_request_duration_seconds_count{", "method=\"Check\"} 1"), "{metrics}");
    assert!(line("xinyong_grpc_request_duration_seconds_count{", "method=\"Call\"} 3"), "{metrics}");
    running.stop.send(()).unwrap();
    running.task.await.unwrap();
}

#[tokio::test]
async fn an_empty_internal_token_accepts_nothing() {
    // A service deployed without its secret must not become open.
    let running = start("8", "").await;
    let refused = call_slow(running.channel.clone(), Some("")).await;
    assert_eq!(refused.code(), Code::Unauthenticated);
    running.stop.send(()).unwrap();
    running.task.await.unwrap();
}

#[tokio::test]
async fn readiness_follows_the_serving_state() {
    let running = start("8", "secret").await;
    let ready = http_get(running.admin, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.0 200"), "{ready}");
    assert!(http_get(running.admin, "/healthz").await.starts_with("HTTP/1.0 200"));
    running.stop.send(()).unwrap();
    running.task.await.unwrap();
}
