//! `CheckEntity` against the cheapest possible answers, in the same run:
//!
//! - an echo: the same gRPC method answering a constant ~200-byte reply, no I/O;
//! - a bare pass-through proxy (tonic, no authentication) in front of that echo;
//! - sanctions answering `CheckEntity` called directly, as in-cluster services call it: the
//!   subject from the in-process cache, the check stored in Postgres by group commit;
//! - the gateway in front of sanctions: a department's bearer credential, its permissions, the
//!   forward;
//! - the same gateway speaking TLS, against it in clear (both loaded through tonic's `Channel`).
//!
//! The servers run in this process (pinned to core 0 by `scripts/bench.sh` when `taskset` exists);
//! the load runs in a child process of this binary (`check-load`, pinned to core 1): N calls in
//! flight for a fixed time, then the same at half the measured rate for the latency.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Command;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};
use tower::ServiceExt;
use xinyong_gateway::{GatewaySection, GatewaySettings};
use xinyong_platform::testing::{TestDatabase, connect_when_serving, publish_event, redis_url};
use xinyong_platform::upstream::UpstreamConnection;
use xinyong_proto::common::v1::Grade;
use xinyong_proto::events::v1::{GradeChanged, GradeReason};
use xinyong_proto::gateway::v1 as admin;
use xinyong_proto::gateway::v1::gateway_admin_service_client::GatewayAdminServiceClient;
use xinyong_proto::sanctions::v1 as pb;
use xinyong_proto::sanctions::v1::sanctions_service_client::SanctionsServiceClient;
use xinyong_sanctions::{SanctionsSection, SanctionsSettings};

use crate::{harness, import};

/// The echo: every call to the sanctions service path answered, as a tonic unary method, with a
/// constant `CheckEntityResponse` of about 200 bytes (the benchmark calls `CheckEntity` only).
#[derive(Clone)]
struct Echo(pb::CheckEntityResponse);

impl Echo {
    fn new() -> Echo {
        Echo(pb::CheckEntityResponse {
            check_id: "0190f3a2-7c1e-7000-8000-000000000001".into(),
            credit_code: "91110000600037341L".into(),
            grades: vec![pb::SchemeGrade { scheme: "public_credit".into(), grade: 3, rule_set_version: 1 }],
            lists: Vec::new(),
            measures: vec![pb::Measure {
                code: "c-procurement-restrict".into(),
                title: "依法限制参加政府采购、政府投资项目招标".into(),
                legal_basis: "第十一条第（三）项".into(),
                ..Default::default()
            }],
            disputed_record_ids: Vec::new(),
            checked_at: None,
        })
    }
}

impl NamedService for Echo {
    const NAME: &'static str = "xinyong.sanctions.v1.SanctionsService";
}

impl tonic::server::UnaryService<pb::CheckEntityRequest> for Echo {
    type Response = pb::CheckEntityResponse;
    type Future = std::future::Ready<Result<Response<pb::CheckEntityResponse>, Status>>;

    fn call(&mut self, _: Request<pb::CheckEntityRequest>) -> Self::Future {
        std::future::ready(Ok(Response::new(self.0.clone())))
    }
}

impl tower::Service<http::Request<Body>> for Echo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let echo = self.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.unary(echo, request).await)
        })
    }
}

/// The bare proxy: every sanctions call forwarded as it is.
#[derive(Clone)]
struct Proxy(Channel);

impl NamedService for Proxy {
    const NAME: &'static str = "xinyong.sanctions.v1.SanctionsService";
}

impl tower::Service<http::Request<Body>> for Proxy {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let channel = self.0.clone();
        Box::pin(async move {
            Ok(channel
                .oneshot(request)
                .await
                .unwrap_or_else(|error| Status::unavailable(error.to_string()).into_http()))
        })
    }
}

async fn serve(routes: Routes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)))
            .await
            .expect("serves");
    });
    address
}

/// One load run's result, as the child prints it, with this process's CPU time per answered
/// call: the servers' own cost (the load is the child, Postgres and Redis other processes),
/// steadier than requests/s on a VM whose neighbours come and go.
#[derive(Debug, Clone, Copy, Default)]
struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_us: f64,
    /// The load's own CPU time per call.
    load_us: f64,
}

/// This process's CPU time (user and system) so far, in seconds, and that of its waited-for
/// children (the loads).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<f64>().ok()).unwrap_or(0.0);
    // utime, stime, cutime and cstime are fields 14 to 17 of the line, 12 to 15 after the name;
    // at 100 ticks/s.
    ((ticks(11) + ticks(12)) / 100.0, (ticks(13) + ticks(14)) / 100.0)
}

/// Run the load in a child process, on core 1 when `taskset` is there.
fn load(address: SocketAddr, token: &str, seconds: u64, rate: f64, headers: &str) -> Load {
    let exe = std::env::current_exe().expect("this binary");
    let in_flight = harness::setting("BENCH_IN_FLIGHT", 64).to_string();
    let mut arguments: Vec<String> = vec![
        "check-load".into(),
        address.to_string(),
        in_flight,
        seconds.to_string(),
        format!("{rate:.0}"),
        token.to_owned(),
        headers.to_owned(),
    ];
    let pinned = Command::new("taskset").arg("-V").output().is_ok_and(|output| output.status.success());
    let mut command = if pinned {
        let mut command = Command::new("taskset");
        command.arg("-c").arg("1").arg(exe);
        command
    } else {
        Command::new(exe)
    };
    command.args(arguments.drain(..));
    let before = cpu_seconds();
    let output = command.output().expect("the load runs");
    let after = cpu_seconds();
    let text = String::from_utf8_lossy(&output.stdout);
    let values: Vec<f64> = text.split_whitespace().filter_map(|word| word.parse().ok()).collect();
    assert!(
        values.len() == 3 && output.status.success(),
        "load failed: {text} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let calls = values[0] * seconds as f64;
    let per_call = |seconds: f64| seconds * 1e6 / calls.max(1.0);
    Load {
        rps: values[0],
        p50_ms: values[1],
        p99_ms: values[2],
        server_us: per_call(after.0 - before.0),
        load_us: per_call(after.1 - before.1),
    }
}

/// One target of the load: where, with which credential.
struct Target<'a> {
    name: &'a str,
    address: SocketAddr,
    token: &'a str,
    headers: &'a str,
}

/// Full load on each pair (a target and its baseline) in turn, `BENCH_ROUNDS` times, so that the
/// machine's drift (a shared VM's steal time moves an echo by a third between runs) hits both
/// sides of a ratio alike; the ratio is the median of the rounds' ratios. Then half of the
/// median load on each target, for the latency.
fn measure_pairs(pairs: &[(Target, Target)]) -> Vec<PairResult> {
    let seconds = harness::setting("BENCH_SECONDS", 10);
    let rounds = harness::setting("BENCH_ROUNDS", 3).max(1);
    let mut loads: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new(), Vec::new()); pairs.len()];
    for round in 1..=rounds {
        for ((target, baseline), (of_target, of_baseline, ratios)) in pairs.iter().zip(loads.iter_mut()) {
            eprintln!("check: round {round}/{rounds}: {} and {}", target.name, baseline.name);
            let base = load(baseline.address, baseline.token, seconds, 0.0, baseline.headers);
            let measured = load(target.address, target.token, seconds, 0.0, target.headers);
            eprintln!(
                "check:   {}: {:.0} requests/s (p99 {:.2} ms; CPU a call: servers {:.1} µs, load {:.1} µs); {}: {:.0} requests/s (p99 {:.2} ms; CPU a call: servers {:.1} µs, load {:.1} µs); ratio {:.3}",
                baseline.name,
                base.rps,
                base.p99_ms,
                base.server_us,
                base.load_us,
                target.name,
                measured.rps,
                measured.p99_ms,
                measured.server_us,
                measured.load_us,
                measured.rps / base.rps
            );
            of_target.push(measured.rps);
            of_baseline.push(base.rps);
            ratios.push(measured.rps / base.rps);
        }
    }
    pairs
        .iter()
        .zip(loads)
        .map(|((target, baseline), (of_target, of_baseline, ratios))| {
            let (rps, baseline_rps, ratio) = (median(of_target), median(of_baseline), median(ratios));
            let half = load(target.address, target.token, seconds, rps / 2.0, target.headers);
            let baseline_half = load(baseline.address, baseline.token, seconds, baseline_rps / 2.0, baseline.headers);
            eprintln!(
                "check: {}: median {rps:.0} requests/s; at {:.0}/s: p50 {:.2} ms, p99 {:.2} ms",
                target.name, half.rps, half.p50_ms, half.p99_ms
            );
            eprintln!(
                "check: {}: median {baseline_rps:.0} requests/s; at {:.0}/s: p50 {:.2} ms, p99 {:.2} ms",
                baseline.name, baseline_half.rps, baseline_half.p50_ms, baseline_half.p99_ms
            );
            PairResult { rps, baseline_rps, ratio, half }
        })
        .collect()
}

struct PairResult {
    rps: f64,
    baseline_rps: f64,
    ratio: f64,
    half: Load,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub async fn run() {
    let subjects = harness::setting("BENCH_SUBJECTS", 10_000);
    // The echo and the bare proxy in front of it.
    let echo = serve(Routes::new(Echo::new())).await;
    let echo_channel = Endpoint::from_shared(format!("http://{echo}")).expect("endpoint").connect_lazy();
    let proxy = serve(Routes::new(Proxy(echo_channel))).await;

    // Sanctions with graded subjects, and the gateway in front of it.
    let database = TestDatabase::new().await;
    let admin_pool = harness::admin_pool(&database).await;
    let mut settings = SanctionsSettings {
        platform: database.settings("sanctions", &redis_url()),
        sanctions: SanctionsSection::default(),
    };
    settings.platform.events.relay_interval_ms = 50;
    let platform = settings.platform.clone();
    let internal_token = platform.internal.token.clone();
    let sanctions =
        harness::Running::start(|listener, stop| xinyong_sanctions::run(settings, listener, None, stop)).await;
    let _ = connect_when_serving(sanctions.address, "xinyong.sanctions.v1.SanctionsService").await;
    // The same echo behind the platform's server (metrics, load shedding, the internal-token
    // check, the timeout, health): what the shared server path costs before any handler work.
    let platform_echo = {
        let settings = platform.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("address");
        let host = xinyong_platform::server::Host::new(settings);
        let routes = Routes::new(Echo::new());
        tokio::spawn(host.serve(
            listener,
            None,
            routes,
            xinyong_platform::server::ServeOptions::SERVICE,
            std::future::pending::<()>(),
        ));
        address
    };

    let codes: Vec<String> = (0..subjects).map(|index| import::subject(index).credit_code).collect();
    let grades: Vec<i16> = (0..subjects).map(|index| [1i16, 1, 2, 3, 4][(index % 5) as usize]).collect();
    sqlx::query(
        "INSERT INTO sanctions.subject_grades (credit_code, scheme, grade, rule_set_version)
         SELECT code, 'public_credit', grade, 1 FROM UNNEST($1::text[], $2::int2[]) AS u (code, grade)",
    )
    .bind(&codes)
    .bind(&grades)
    .execute(&admin_pool)
    .await
    .expect("graded subjects");
    std::fs::write(codes_file(), codes.join("\n")).expect("codes for the load");

    let admin_token = "bench-admin-token";
    let gateway_settings = GatewaySettings {
        platform: database.settings("gateway", &redis_url()),
        gateway: GatewaySection {
            admin_token: SecretString::from(admin_token),
            upstreams: [("sanctions".to_owned(), format!("http://{}", sanctions.address))].into_iter().collect(),
            ..GatewaySection::default()
        },
    };
    // A second replica speaking TLS (the tests' certificate for localhost, no client certificates):
    // what TLS costs a call, against the first in clear.
    let mut tls_settings = gateway_settings.clone();
    tls_settings.gateway.tls.certificate_file = tls_fixture("server.pem");
    tls_settings.gateway.tls.key_file = tls_fixture("server.key");
    let gateway =
        harness::Running::start(|listener, stop| xinyong_gateway::run(gateway_settings, listener, None, stop)).await;
    let gateway_channel = connect_when_serving(gateway.address, "xinyong.sanctions.v1.SanctionsService").await;
    let mut administration = GatewayAdminServiceClient::new(gateway_channel);
    fn with_admin<T>(message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert("authorization", "Bearer bench-admin-token".parse().expect("header"));
        request
    }
    administration
        .create_department(with_admin(admin::CreateDepartmentRequest {
            department_id: "samr-110108".into(),
            name: "海淀区市场监督管理局".into(),
            permissions: vec!["call:xinyong.sanctions.v1.SanctionsService/CheckEntity".into()],
        }))
        .await
        .expect("department");
    let department_token = administration
        .issue_credential(with_admin(admin::IssueCredentialRequest { department_id: "samr-110108".into() }))
        .await
        .expect("credential")
        .into_inner()
        .token;
    let internal = secrecy::ExposeSecret::expose_secret(&internal_token).to_owned();
    let gateway_tls =
        harness::Running::start(|listener, stop| xinyong_gateway::run(tls_settings, listener, None, stop)).await;
    serving_over_tls(gateway_tls.address).await;

    eprintln!("check: {subjects} graded subjects; {} calls in flight", harness::setting("BENCH_IN_FLIGHT", 64));
    // What the shared server path costs before any handler work, once.
    let platform_echo = Target {
        name: "echo behind the platform's server",
        address: platform_echo,
        token: &internal,
        headers: "internal",
    };
    let plain_echo = Target { name: "echo", address: echo, token: "-", headers: "plain" };
    let baseline = measure_pairs(&[(platform_echo, plain_echo)]).remove(0);
    eprintln!("check: the platform's server path: {:.3} of a bare echo", baseline.ratio);
    // One pass over every subject first: the measured runs see the steady state, every subject in
    // the replica's own copy, as a running service does.
    warm_up(sanctions.address, &internal, &codes).await;
    let results = measure_pairs(&[
        (
            Target { name: "sanctions, direct", address: sanctions.address, token: &internal, headers: "internal" },
            Target { name: "echo", address: echo, token: "-", headers: "plain" },
        ),
        (
            Target {
                name: "gateway → sanctions",
                address: gateway.address,
                token: &department_token,
                headers: "bearer",
            },
            Target { name: "bare proxy → echo", address: proxy, token: "-", headers: "plain" },
        ),
        (
            Target {
                name: "gateway over TLS → sanctions",
                address: gateway_tls.address,
                token: &department_token,
                headers: "bearer-tls",
            },
            Target {
                name: "gateway in clear → sanctions",
                address: gateway.address,
                token: &department_token,
                headers: "bearer-channel",
            },
        ),
    ]);
    let (direct, through, tls) = (&results[0], &results[1], &results[2]);

    // From a grade change on the bus to CheckEntity showing it.
    let mut client = SanctionsServiceClient::new(
        Endpoint::from_shared(format!("http://{}", sanctions.address)).expect("endpoint").connect_lazy(),
    );
    let mut delays = Vec::new();
    for index in 0..harness::setting("BENCH_CHANGES", 200) {
        let code = &codes[index as usize % codes.len()];
        let current: i32 = grades[index as usize % codes.len()].into();
        let next = if current == Grade::D as i32 { Grade::A as i32 } else { current + 1 };
        let event = GradeChanged {
            credit_code: code.clone(),
            scheme: "public_credit".into(),
            old_grade: current,
            new_grade: next,
            rule_set_version: 1,
            reasons: vec![GradeReason { code: "bench".into(), ..Default::default() }],
            internal: false,
        };
        let started = Instant::now();
        publish_event(&platform, "grading", &event).await;
        loop {
            let mut request = Request::new(pb::CheckEntityRequest { credit_code: code.clone(), matter_type: 3 });
            internal_headers(request.metadata_mut(), &internal);
            let answer = client.check_entity(request).await.expect("check").into_inner();
            if answer.grades.first().is_some_and(|grade| grade.grade == next) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the change never showed");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        delays.push(started.elapsed());
    }
    delays.sort();
    let p99_change = delays[(delays.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "check: grade change on the bus to CheckEntity: median {:.1} ms, p99 {:.1} ms over {} changes",
        delays[delays.len() / 2].as_secs_f64() * 1000.0,
        p99_change.as_secs_f64() * 1000.0,
        delays.len()
    );
    let rounds = harness::setting("BENCH_ROUNDS", 3).max(1);
    gateway.stop().await;
    gateway_tls.stop().await;
    // Stopped, the service has written out its check log: every answered check is counted.
    sanctions.stop().await;
    let stored: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(cardinality(check_ids)), 0)::bigint FROM sanctions.check_segments")
            .fetch_one(&admin_pool)
            .await
            .expect("checks");
    eprintln!("check: {stored} checks stored");
    admin_pool.close().await;
    let _ = std::fs::remove_file(codes_file());
    println!(
        "check: ratio {:.3} (direct requests/s vs echo, median of {rounds} paired rounds: {:.0} vs {:.0}; p99 at half load {:.2} ms)",
        direct.ratio, direct.rps, direct.baseline_rps, direct.half.p99_ms
    );
    println!(
        "check-gateway: ratio {:.3} (gateway requests/s vs bare proxy, median of {rounds} paired rounds: {:.0} vs {:.0}; p99 at half load {:.2} ms)",
        through.ratio, through.rps, through.baseline_rps, through.half.p99_ms
    );
    println!(
        "check-tls: ratio {:.3} (gateway over TLS requests/s vs in clear, both through tonic's Channel, median of {rounds} paired rounds: {:.0} vs {:.0}; p99 at half load {:.2} ms)",
        tls.ratio, tls.rps, tls.baseline_rps, tls.half.p99_ms
    );
}

/// Once the gateway at `address` answers SERVING over TLS.
async fn serving_over_tls(address: SocketAddr) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(tls_fixture("ca.pem")).expect("the CA")))
        .domain_name("localhost");
    let endpoint = Endpoint::from_shared(format!("https://{address}")).expect("endpoint").tls_config(tls).expect("TLS");
    for _ in 0..200 {
        if let Ok(channel) = endpoint.connect().await {
            let asked = tonic_health::pb::HealthCheckRequest { service: String::new() };
            if HealthClient::new(channel)
                .check(asked)
                .await
                .is_ok_and(|answer| answer.into_inner().status == ServingStatus::Serving as i32)
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway over TLS did not serve");
}

async fn warm_up(address: SocketAddr, internal: &str, codes: &[String]) {
    let mut client = SanctionsServiceClient::new(
        Endpoint::from_shared(format!("http://{address}")).expect("endpoint").connect_lazy(),
    );
    let (mut total, mut largest) = (0usize, 0usize);
    for code in codes {
        let mut request = Request::new(pb::CheckEntityRequest { credit_code: code.clone(), matter_type: 3 });
        internal_headers(request.metadata_mut(), internal);
        let answer = client.check_entity(request).await.expect("warm-up check").into_inner();
        let size = prost::Message::encoded_len(&answer);
        total += size;
        largest = largest.max(size);
    }
    eprintln!(
        "check: answers of {} bytes on average, {largest} at most (the echo's: {} bytes)",
        total / codes.len().max(1),
        prost::Message::encoded_len(&Echo::new().0)
    );
}

fn codes_file() -> std::path::PathBuf {
    std::env::temp_dir().join("xinyong-bench-check-codes.txt")
}

fn internal_headers(metadata: &mut tonic::metadata::MetadataMap, token: &str) {
    metadata.insert("x-xinyong-internal-token", token.parse().expect("token"));
    metadata.insert("x-xinyong-department", "samr-110108".parse().expect("department"));
}

/// `check-load ADDRESS IN_FLIGHT SECONDS RATE TOKEN HEADERS`: prints `rps p50_ms p99_ms`.
pub async fn load_child() {
    let arguments: Vec<String> = std::env::args().skip(2).collect();
    let address = arguments[0].clone();
    let in_flight: usize = arguments[1].parse().expect("in flight");
    let seconds: u64 = arguments[2].parse().expect("seconds");
    let rate: f64 = arguments[3].parse().expect("rate");
    let token = arguments[4].clone();
    let headers = arguments[5].clone();
    let codes: Vec<String> = std::fs::read_to_string(codes_file())
        .map(|text| text.lines().map(str::to_owned).collect())
        .unwrap_or_else(|_| vec!["91110000600037341L".to_owned()]);
    let codes = std::sync::Arc::new(codes);
    // One HTTP/2 connection, sent on from each worker's task through hyper's handle (as the
    // gateway forwards): tonic's `Channel` would add a queue to its buffer task per call, a cost
    // of the load, not of the server it measures, and on the load's core it was what limited the
    // targets whose servers had time to spare.
    let origin: http::Uri = format!("http://{address}").parse().expect("address");
    let connection =
        UpstreamConnection::new(&origin, Duration::from_secs(5), Duration::from_secs(3600)).expect("plain http");
    // Gateway over TLS against the gateway in clear: both through tonic's `Channel`, which speaks
    // TLS (the connection above does not), so that the two differ by TLS alone.
    let channel = match headers.as_str() {
        "bearer-tls" => {
            let tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(
                    std::fs::read(tls_fixture("ca.pem")).expect("the test CA"),
                ))
                .domain_name("localhost");
            let endpoint = Endpoint::from_shared(format!("https://{address}")).expect("endpoint");
            Some(endpoint.tls_config(tls).expect("TLS").connect().await.expect("the gateway over TLS"))
        }
        "bearer-channel" => {
            let endpoint = Endpoint::from_shared(format!("http://{address}")).expect("endpoint");
            Some(endpoint.connect().await.expect("the gateway"))
        }
        _ => None,
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let per_worker = (rate > 0.0).then(|| Duration::from_secs_f64(in_flight as f64 / rate));
    let mut workers = Vec::new();
    // The credential headers parsed once, as a client's interceptor holds them: the plain targets
    // send none, and the load should not spend more on a target's headers than a caller would.
    let credentials: Vec<(&'static str, tonic::metadata::AsciiMetadataValue)> = match headers.as_str() {
        "internal" => vec![
            ("x-xinyong-internal-token", token.parse().expect("token")),
            ("x-xinyong-department", "samr-110108".parse().expect("department")),
        ],
        "bearer" | "bearer-tls" | "bearer-channel" => {
            vec![("authorization", format!("Bearer {token}").parse().expect("header"))]
        }
        _ => Vec::new(),
    };
    let credentials = std::sync::Arc::new(credentials);
    for worker in 0..in_flight {
        let (codes, credentials) = (codes.clone(), credentials.clone());
        let pace = Pace { worker, in_flight, per_worker, deadline };
        workers.push(match &channel {
            Some(channel) => {
                tokio::spawn(calls(SanctionsServiceClient::new(channel.clone()), pace, codes, credentials))
            }
            None => {
                let client = SanctionsServiceClient::with_origin(connection.clone(), origin.clone());
                tokio::spawn(calls(client, pace, codes, credentials))
            }
        });
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    latencies.sort_unstable();
    let at = |fraction: f64| latencies[((latencies.len() as f64 * fraction) as usize).min(latencies.len() - 1)];
    println!(
        "{:.1} {:.3} {:.3}",
        latencies.len() as f64 / seconds as f64,
        f64::from(at(0.5)) / 1000.0,
        f64::from(at(0.99)) / 1000.0
    );
}

/// The committed test certificates (`tests/fixtures/tls`): the gateway's for localhost, its CA.
fn tls_fixture(name: &str) -> String {
    format!("{}/../../tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// When one load worker calls: its share of the period at a fixed rate, until the deadline.
struct Pace {
    worker: usize,
    in_flight: usize,
    per_worker: Option<Duration>,
    deadline: Instant,
}

/// One load worker's calls on `client` until the deadline: their latencies in µs.
async fn calls<T>(
    mut client: SanctionsServiceClient<T>,
    pace: Pace,
    codes: std::sync::Arc<Vec<String>>,
    credentials: std::sync::Arc<Vec<(&'static str, tonic::metadata::AsciiMetadataValue)>>,
) -> Vec<u32>
where
    T: tonic::client::GrpcService<Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let mut latencies = Vec::new();
    // Each worker's ticks offset by its share of the period: arrivals spread evenly over time, as
    // an open-loop load generator sends them, not in bursts of `in_flight` calls at once (which
    // would measure the queue of a burst, not the service).
    let mut ticker = pace.per_worker.map(|period| {
        let offset = period.mul_f64(pace.worker as f64 / pace.in_flight as f64);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    let mut index = pace.worker;
    while Instant::now() < pace.deadline {
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick().await;
        }
        index = (index + 7919) % codes.len();
        let mut request = Request::new(pb::CheckEntityRequest { credit_code: codes[index].clone(), matter_type: 3 });
        for (name, value) in credentials.iter() {
            request.metadata_mut().insert(*name, value.clone());
        }
        let started = Instant::now();
        client.check_entity(request).await.expect("answered");
        latencies.push(started.elapsed().as_micros() as u32);
    }
    latencies
}
