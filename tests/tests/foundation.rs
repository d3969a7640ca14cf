//! The foundation (issue #2): every service up behind the gateway, authentication, credentials,
//! schema ownership, the event bus under a crashing relay, graceful shutdown.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use xinyong_platform::bus::{self, Consumer, EventHandler, HandlerError};
use xinyong_proto::events::v1::{EntityRegistered, Envelope};
use xinyong_proto::gateway::v1 as admin;
use xinyong_proto::gateway::v1::gateway_admin_service_client::GatewayAdminServiceClient;
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;
use xinyong_proto::registry::v1::{GetEntityRequest, RegisterEntityRequest, get_entity_request};

use crate::support::{BACKENDS, Platform, free_port, with_token};

const SERVICE_NAMES: &[&str] = &[
    "xinyong.registry.v1.RegistryService",
    "xinyong.ingestion.v1.IngestionService",
    "xinyong.grading.v1.GradingService",
    "xinyong.sanctions.v1.SanctionsService",
    "xinyong.lottery.v1.LotteryService",
    "xinyong.objections.v1.ObjectionService",
    "xinyong.reports.v1.ReportService",
];

fn get_entity() -> GetEntityRequest {
    GetEntityRequest {
        key: Some(get_entity_request::Key::CreditCode("91110000600037341L".into())),
        include_history: false,
    }
}

async fn health_at(channel: tonic::transport::Channel, service: &str) -> Result<i32, tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest { service: service.to_owned() })
        .await
        .map(|response| response.into_inner().status)
}

#[tokio::test]
async fn every_service_reports_serving_through_the_gateway_and_reflection_lists_them() {
    let platform = Platform::start().await;
    let gateway = platform.gateway().await;
    for name in SERVICE_NAMES {
        let status =
            health_at(gateway.clone(), name).await.unwrap_or_else(|status| panic!("health of {name}: {status}"));
        assert_eq!(status, ServingStatus::Serving as i32, "{name} is not SERVING through the gateway");
    }
    assert_eq!(health_at(gateway.clone(), "").await.unwrap(), ServingStatus::Serving as i32);

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(gateway)
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let response = responses.next().await.expect("one answer").expect("no error");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("not a service list")
    };
    let listed: Vec<String> = list.service.into_iter().map(|service| service.name).collect();
    for name in SERVICE_NAMES.iter().chain(&["xinyong.gateway.v1.GatewayAdminService"]) {
        assert!(listed.iter().any(|listed| listed == name), "reflection does not list {name}: {listed:?}");
    }
}

#[tokio::test]
async fn calls_without_a_valid_credential_are_refused() {
    let platform = Platform::start().await;
    let mut registry = RegistryServiceClient::new(platform.gateway().await);

    let missing = registry.get_entity(get_entity()).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated, "{missing:?}");
    assert!(missing.message().contains("Bearer"), "the refusal says how to authenticate: {}", missing.message());

    let forged = registry.get_entity(with_token(get_entity(), "0123456789abcdef.not-the-secret")).await.unwrap_err();
    assert_eq!(forged.code(), Code::Unauthenticated);

    // Around the gateway, straight to a service: refused for lack of the internal token, even
    // with a department identity header set by hand.
    let mut direct = RegistryServiceClient::new(platform.direct("registry").await);
    let mut request = tonic::Request::new(get_entity());
    request.metadata_mut().insert("x-xinyong-department", "forged".parse().unwrap());
    let bypass = direct.get_entity(request).await.unwrap_err();
    assert_eq!(bypass.code(), Code::Unauthenticated, "{bypass:?}");
    assert!(bypass.message().contains("gateway"));
}

#[tokio::test]
async fn the_gateway_answers_unavailable_while_a_service_is_down_and_reconnects_when_it_is_back() {
    let mut platform = Platform::start().await;
    let token = crate::ingestion::department(
        &platform,
        "samr-110107",
        &["call:xinyong.registry.v1.RegistryService/ValidateCreditCode"],
    )
    .await;
    let mut registry = RegistryServiceClient::new(platform.gateway().await);
    let validate = || {
        with_token(
            xinyong_proto::registry::v1::ValidateCreditCodeRequest { credit_code: "91110000600037341L".into() },
            &token,
        )
    };
    assert!(registry.validate_credit_code(validate()).await.expect("forwarded").into_inner().valid);

    // The registry dies: the gateway's connection to it breaks, and calls say so, naming it.
    platform.kill("registry");
    for _ in 0..2 {
        let down = registry.validate_credit_code(validate()).await.unwrap_err();
        assert_eq!(down.code(), Code::Unavailable, "{down:?}");
        assert!(down.message().contains("registry"), "{}", down.message());
    }

    // Back on the same address: the next call opens a new connection, without a gateway restart.
    platform.restart("registry", &[]);
    platform.wait_serving("registry").await;
    let answer = registry.validate_credit_code(validate()).await.expect("forwarded again");
    assert!(answer.into_inner().valid);
}

#[tokio::test]
async fn an_administrator_creates_a_department_whose_credential_works_until_revoked() {
    let platform = Platform::start().await;
    let gateway = platform.gateway().await;
    let mut admin_client = GatewayAdminServiceClient::new(gateway.clone());
    let admin_token = platform.admin_token.clone();

    let created = admin_client
        .create_department(with_token(
            admin::CreateDepartmentRequest {
                department_id: "samr-110107".into(),
                name: "石景山区市场监督管理局".into(),
                permissions: vec![],
            },
            &admin_token,
        ))
        .await
        .expect("administrator creates a department")
        .into_inner();
    assert!(created.created);
    let again = admin_client
        .create_department(with_token(
            admin::CreateDepartmentRequest {
                department_id: "samr-110107".into(),
                name: "石景山区市场监督管理局".into(),
                permissions: vec![],
            },
            &admin_token,
        ))
        .await
        .expect("creating the same department again is a no-op")
        .into_inner();
    assert!(!again.created);

    let bad_id = admin_client
        .create_department(with_token(
            admin::CreateDepartmentRequest { department_id: "Bad Id".into(), name: "x".into(), permissions: vec![] },
            &admin_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_id.code(), Code::InvalidArgument);
    assert!(bad_id.message().contains("department_id"), "{}", bad_id.message());

    let issued = admin_client
        .issue_credential(with_token(
            admin::IssueCredentialRequest { department_id: "samr-110107".into() },
            &admin_token,
        ))
        .await
        .expect("credential issued")
        .into_inner();

    // The new credential passes authentication and reaches the registry, which answers for the
    // unknown subject (not the gateway refusing).
    let mut registry = RegistryServiceClient::new(gateway.clone());
    let reached = registry.get_entity(with_token(get_entity(), &issued.token)).await.unwrap_err();
    assert_eq!(reached.code(), Code::NotFound, "{reached:?}");
    assert!(reached.message().contains("91110000600037341L"), "{}", reached.message());

    // A department is not an administrator.
    let not_admin = admin_client
        .list_departments(with_token(
            admin::ListDepartmentsRequest { page_size: 0, page_token: String::new() },
            &issued.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(not_admin.code(), Code::PermissionDenied);
    assert!(not_admin.message().contains("admin"));

    let listed = admin_client
        .list_departments(with_token(
            admin::ListDepartmentsRequest { page_size: 0, page_token: String::new() },
            &admin_token,
        ))
        .await
        .unwrap()
        .into_inner();
    let department = listed.departments.iter().find(|d| d.department_id == "samr-110107").expect("listed");
    assert_eq!(department.credentials.len(), 1);
    assert!(department.credentials[0].revoked_at.is_none());

    let revoked = admin_client
        .revoke_credential(with_token(
            admin::RevokeCredentialRequest { credential_id: issued.credential_id.clone() },
            &admin_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked);
    let refused = registry.get_entity(with_token(get_entity(), &issued.token)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "a revoked credential stops working at once: {refused:?}");
    assert!(refused.message().contains("revoked"));
}

#[tokio::test]
async fn a_service_cannot_read_another_services_tables() {
    let platform = Platform::start().await;
    let registry = platform.pool_of("registry").await;
    let own: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&registry)
        .await
        .expect("its own schema is readable");
    assert_eq!(own, 0);
    for other in BACKENDS.iter().filter(|service| **service != "registry").chain(&["gateway"]) {
        let error = sqlx::query(&format!("SELECT * FROM {other}.outbox LIMIT 1"))
            .fetch_optional(&registry)
            .await
            .expect_err("another service's table must not be readable");
        let code = error.as_database_error().and_then(|e| e.code()).map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("42501"), "reading {other}.outbox: {error}");
    }
    let departments = sqlx::query("SELECT * FROM gateway.credentials").fetch_optional(&registry).await.unwrap_err();
    assert!(departments.to_string().contains("permission denied"), "{departments}");
}

/// Counts the events it handles; the bus must call it once per event however often it is delivered.
struct Counting(Arc<AtomicUsize>);

impl EventHandler for Counting {
    async fn handle(&self, connection: &mut sqlx::PgConnection, envelope: &Envelope) -> Result<(), HandlerError> {
        if let Some(event) = bus::outbox::decode::<EntityRegistered>(envelope) {
            let event = event?;
            assert_eq!(event.credit_code, "91110000600037341L");
            // The handler's own write commits with the processed-event row.
            sqlx::query("SELECT 1").execute(&mut *connection).await?;
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[tokio::test]
async fn an_event_reaches_another_service_exactly_once_when_the_relay_dies() {
    let mut platform = Platform::provision().await;
    let mut ports = std::collections::HashMap::new();
    ports.insert("registry".to_owned(), (free_port(), free_port()));
    // 1. The producer commits an event while its relay is off, and dies before publishing it.
    platform.spawn("registry", ports["registry"], &[("XINYONG__EVENTS__RELAY_ENABLED", "false")], &ports);
    platform.wait_serving("registry").await;
    let registry_pool = platform.pool_of("registry").await;
    let mut transaction = registry_pool.begin().await.unwrap();
    let event = EntityRegistered {
        credit_code: "91110000600037341L".into(),
        name: "联想(北京)有限公司".into(),
        ..Default::default()
    };
    let event_id = bus::enqueue(&mut transaction, "registry", &event).await.unwrap();
    transaction.commit().await.unwrap();
    platform.kill("registry");

    // 2. The consumer in another service's schema starts reading.
    let grading_pool = platform.pool_of("grading").await;
    xinyong_platform::db::migrate(&grading_pool, &xinyong_grading::MIGRATOR).await.expect("grading schema migrated");
    let redis = xinyong_platform::redis::Redis::connect_and_wait(&platform.redis_settings(), Duration::from_secs(5))
        .await
        .unwrap();
    let handled = Arc::new(AtomicUsize::new(0));
    let metrics = xinyong_platform::metrics::Metrics::new("grading");
    let mut consumer = Consumer::new(
        grading_pool.clone(),
        redis.clone(),
        "grading",
        &["registry"],
        Counting(handled.clone()),
        metrics,
    );
    consumer.block = Duration::from_millis(100);
    let stop = Arc::new(tokio::sync::Notify::new());
    let consumer_stop = stop.clone();
    let consumer_task = tokio::spawn(consumer.run(async move { consumer_stop.notified().await }));

    // 3. The producer comes back with a relay that publishes and dies before marking the row.
    platform.restart("registry", &[("XINYONG__EVENTS__FAULT_ABORT_AFTER_PUBLISH", "true")]);
    let status = platform.wait_exit("registry", Duration::from_secs(60)).await;
    assert!(!status.success(), "the relay was told to abort after publishing");
    let published: Option<bool> = sqlx::query_scalar("SELECT published_at IS NOT NULL FROM outbox WHERE event_id = $1")
        .bind(event_id)
        .fetch_optional(&registry_pool)
        .await
        .unwrap();
    assert_eq!(published, Some(false), "the crash came between publishing and marking");

    // 4. Back once more, normally: the row is published again, and marked.
    platform.restart("registry", &[]);
    platform.wait_serving("registry").await;
    wait_for(|| async {
        sqlx::query_scalar::<_, bool>("SELECT published_at IS NOT NULL FROM outbox WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(&registry_pool)
            .await
            .unwrap()
    })
    .await;

    // The stream holds the event twice; the consumer handled it once and acknowledged both.
    let stream = redis.stream_key("registry");
    let mut connection = redis.connection().await.unwrap();
    let length: i64 = redis::cmd("XLEN").arg(&stream).query_async(&mut connection).await.unwrap();
    assert_eq!(length, 2, "published once by the crashed relay and once after the restart");
    let last_entry: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(&stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut connection)
        .await
        .unwrap();
    let last_id = last_entry.ids[0].id.clone();
    wait_for(|| {
        let mut connection = connection.clone();
        let stream = stream.clone();
        let last_id = last_id.clone();
        async move {
            let info: redis::streams::StreamInfoGroupsReply =
                redis::cmd("XINFO").arg("GROUPS").arg(&stream).query_async(&mut connection).await.unwrap();
            info.groups
                .iter()
                .any(|group| group.name == "grading" && group.pending == 0 && group.last_delivered_id == last_id)
        }
    })
    .await;
    assert_eq!(handled.load(Ordering::SeqCst), 1, "the event was handled exactly once");
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE consumer = 'grading' AND event_id = $1")
            .bind(event_id)
            .fetch_one(&grading_pool)
            .await
            .unwrap();
    assert_eq!(rows, 1);

    stop.notify_one();
    consumer_task.await.unwrap();
}

async fn wait_for<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "condition not met within 30 s");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn shutdown_reports_not_serving_then_drains() {
    let mut platform = Platform::provision().await;
    let mut ports = std::collections::HashMap::new();
    ports.insert("lottery".to_owned(), (free_port(), free_port()));
    platform.spawn("lottery", ports["lottery"], &[("XINYONG__SERVER__SHUTDOWN_DELAY_MS", "1500")], &ports);
    platform.wait_serving("lottery").await;
    let channel = platform.direct("lottery").await;
    platform.terminate("lottery");
    wait_for(|| {
        let channel = channel.clone();
        async move {
            matches!(health_at(channel, "xinyong.lottery.v1.LotteryService").await, Ok(status) if status == ServingStatus::NotServing as i32)
        }
    })
    .await;
    let status = platform.wait_exit("lottery", Duration::from_secs(30)).await;
    assert!(status.success(), "a terminated service exits cleanly: {status}");
}

/// A department over its rate limit is refused with RESOURCE_EXHAUSTED, a retry delay and its
/// own name, and the refusals counted; another department is not held back; the administrator
/// sets and lifts the limit.
#[tokio::test]
async fn a_department_over_its_rate_limit_is_refused_and_others_are_not() {
    let platform = Platform::start().await;
    let busy = crate::ingestion::department(&platform, "samr-440305", &[]).await;
    let quiet = crate::ingestion::department(&platform, "tax-440305", &[]).await;
    let gateway = platform.gateway().await;
    let mut admin_client = GatewayAdminServiceClient::new(gateway.clone());
    let limit = |department: &str, calls_per_second: u32| {
        with_token(
            admin::SetRateLimitRequest { department_id: department.into(), calls_per_second },
            &platform.admin_token,
        )
    };
    let set = admin_client.set_rate_limit(limit("samr-440305", 2)).await.unwrap().into_inner();
    assert_eq!(set.department.unwrap().calls_per_second, 2);
    let too_many = admin_client.set_rate_limit(limit("samr-440305", u32::MAX)).await.unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument, "{too_many:?}");
    assert!(too_many.message().contains("calls_per_second"), "{}", too_many.message());
    let unknown = admin_client.set_rate_limit(limit("nobody-440305", 2)).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let not_admin =
        admin_client.set_rate_limit(with_token(admin::SetRateLimitRequest::default(), &busy)).await.unwrap_err();
    assert_eq!(not_admin.code(), Code::PermissionDenied, "{not_admin:?}");

    // Two calls a second with bursts of two seconds' worth (the default `gateway.burst_seconds`):
    // of ten calls in a row the first four pass (the registry answers NOT_FOUND), and the bucket
    // runs dry before the tenth (it refills one call each half second).
    let mut registry = RegistryServiceClient::new(gateway.clone());
    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.push(registry.get_entity(with_token(get_entity(), &busy)).await.unwrap_err());
    }
    assert!(answers[..4].iter().all(|answer| answer.code() == Code::NotFound), "the burst passes: {answers:?}");
    assert!(
        answers.iter().all(|answer| matches!(answer.code(), Code::NotFound | Code::ResourceExhausted)),
        "{answers:?}"
    );
    let refusals: Vec<&tonic::Status> =
        answers.iter().filter(|answer| answer.code() == Code::ResourceExhausted).collect();
    assert!(!refusals.is_empty(), "ten calls at once exceed two a second");
    let refused = refusals[0];
    assert!(refused.message().contains("samr-440305") && refused.message().contains("2 calls a second"));
    use tonic_types::StatusExt;
    let retry = refused.get_error_details().retry_info().and_then(|info| info.retry_delay).expect("a retry delay");
    assert!(retry > Duration::ZERO && retry <= Duration::from_millis(500), "{retry:?}");
    for _ in 0..10 {
        let answer = registry.get_entity(with_token(get_entity(), &quiet)).await.unwrap_err();
        assert_eq!(answer.code(), Code::NotFound, "another department is not held back: {answer:?}");
    }
    let metrics = xinyong_platform::testing::http_get(platform.node("gateway").admin, "/metrics").await;
    let counted = format!(
        r#"xinyong_gateway_rate_limited_total{{component="gateway",department="samr-440305"}} {}"#,
        refusals.len()
    );
    assert!(metrics.lines().any(|line| line == counted), "{counted} not in\n{metrics}");

    // Back to the platform's default, which here is no limit.
    let lifted = admin_client.set_rate_limit(limit("samr-440305", 0)).await.unwrap().into_inner();
    assert_eq!(lifted.department.unwrap().calls_per_second, 0);
    for _ in 0..10 {
        let answer = registry.get_entity(with_token(get_entity(), &busy)).await.unwrap_err();
        assert_eq!(answer.code(), Code::NotFound, "the limit is lifted: {answer:?}");
    }
}

/// Every call through the gateway is in the audit log with its department, method and answer,
/// refused ones and administration too; entries from two writers (two replicas) form one chain;
/// an entry changed or removed afterwards breaks the chain at that place.
#[tokio::test]
async fn every_call_is_in_the_audit_log_and_an_entry_changed_afterwards_breaks_the_chain() {
    use xinyong_gateway::audit::{self, AuditLog, Entry, Verified};
    let platform = Platform::start().await;
    let market = crate::ingestion::department(&platform, "samr-440305", &[]).await;
    let mut registry = RegistryServiceClient::new(platform.gateway().await);
    // A second replica's writer, appending beside the gateway's.
    let pool = platform.pool_of("gateway").await;
    let (other_replica, other_task) = AuditLog::start(pool.clone(), &xinyong_platform::metrics::Metrics::new("other"));
    for _ in 0..3 {
        let answer = registry.get_entity(with_token(get_entity(), &market)).await.unwrap_err();
        assert_eq!(answer.code(), Code::NotFound);
        other_replica
            .record(Entry::now(
                "samr-440305".into(),
                audit::method("/xinyong.registry.v1.RegistryService/GetEntity"),
                Code::Ok,
            ))
            .await;
    }
    let anonymous = registry.get_entity(get_entity()).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    other_task.finish(Duration::from_secs(5)).await;

    let expected = [
        ("platform-admin", "xinyong.gateway.v1.GatewayAdminService/CreateDepartment", Code::Ok as i16),
        ("platform-admin", "xinyong.gateway.v1.GatewayAdminService/IssueCredential", Code::Ok as i16),
        ("samr-440305", "xinyong.registry.v1.RegistryService/GetEntity", Code::NotFound as i16),
        ("", "xinyong.registry.v1.RegistryService/GetEntity", Code::Unauthenticated as i16),
        ("samr-440305", "xinyong.registry.v1.RegistryService/GetEntity", Code::Ok as i16),
    ];
    let mut recorded: Vec<(String, String, i16)> = Vec::new();
    for _ in 0..200 {
        recorded = sqlx::query_as("SELECT department_id, method, code FROM audit_log ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
        if recorded.len() >= 2 + 3 + 1 + 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for (department, method, code) in expected {
        let times = recorded.iter().filter(|row| (row.0.as_str(), row.1.as_str(), row.2) == (department, method, code));
        let wanted = if method.ends_with("GetEntity") && department == "samr-440305" { 3 } else { 1 };
        assert_eq!(times.count(), wanted, "{department} {method} {code} in {recorded:?}");
    }
    let entries = recorded.len() as u64;
    let Verified::Intact { entries: walked, last_seq, last_hash } = audit::verify(&pool, None).await.unwrap() else {
        panic!("the log does not verify")
    };
    assert_eq!((walked, last_seq, last_hash.len()), (entries, entries as i64, 32));

    // The administrator reads the log page by page, or one department's calls; each answer names
    // the newest entry and its hash, to be kept outside the platform.
    let mut admin_client = GatewayAdminServiceClient::new(platform.gateway().await);
    let list = |after_seq: i64, department_id: &str| {
        with_token(
            admin::ListAuditEntriesRequest {
                after_seq,
                page_size: 4,
                department_id: department_id.into(),
                ..Default::default()
            },
            &platform.admin_token,
        )
    };
    let mut listed = Vec::new();
    let mut after = 0;
    let mut anchor = None;
    loop {
        let page = admin_client.list_audit_entries(list(after, "")).await.unwrap().into_inner();
        assert!(page.newest_seq >= entries as i64, "{}", page.newest_seq);
        assert_eq!(page.newest_hash.len(), 32);
        anchor.get_or_insert((page.newest_seq, page.newest_hash.clone()));
        listed.extend(page.entries);
        if page.next_after_seq == 0 {
            break;
        }
        after = page.next_after_seq;
    }
    // Listing is itself a call, recorded after its answer: the pages hold at least what was there.
    assert!(listed.len() as u64 >= entries, "{} listed", listed.len());
    assert!(listed.windows(2).all(|pair| pair[1].seq == pair[0].seq + 1 && pair[1].previous_hash == pair[0].hash));
    let third = &listed[2];
    assert_eq!(
        (third.department_id.as_str(), third.method.as_str(), third.code),
        (recorded[2].0.as_str(), recorded[2].1.as_str(), i32::from(recorded[2].2))
    );
    let market_only = admin_client.list_audit_entries(list(0, "samr-440305")).await.unwrap().into_inner();
    assert_eq!(market_only.entries.len(), 4, "a full page of the department's six");
    assert!(market_only.entries.iter().all(|entry| entry.department_id == "samr-440305"));
    // Who looked at the subject: the three lookups forwarded name it; the one refused before
    // forwarding and the other writer's entries (recorded without a request) do not.
    let about =
        admin::ListAuditEntriesRequest { subject: "91110000600037341L".into(), page_size: 100, ..Default::default() };
    let about = admin_client.list_audit_entries(with_token(about, &platform.admin_token)).await.unwrap().into_inner();
    let lookups: Vec<(&str, &str, i32)> =
        about.entries.iter().map(|entry| (entry.department_id.as_str(), entry.method.as_str(), entry.code)).collect();
    let forwarded = ("samr-440305", "xinyong.registry.v1.RegistryService/GetEntity", Code::NotFound as i32);
    assert_eq!(lookups, [forwarded; 3], "{about:?}");
    assert!(listed.iter().filter(|entry| entry.department_id.is_empty()).all(|entry| entry.subject.is_empty()));
    let not_admin = admin_client
        .list_audit_entries(with_token(admin::ListAuditEntriesRequest::default(), &market))
        .await
        .unwrap_err();
    assert_eq!(not_admin.code(), Code::PermissionDenied);
    let listing_recorded = audit::verify(&pool, None).await.unwrap();
    assert!(matches!(listing_recorded, Verified::Intact { .. }), "{listing_recorded:?}");

    // The newest hash kept from a listing verifies through the API; a wrong one does not.
    let (anchor_seq, anchor_hash) = anchor.unwrap();
    let verifier = admin_client.clone();
    let verify = |anchor_seq: i64, anchor_hash: Vec<u8>| {
        let request = admin::VerifyAuditLogRequest { anchor_seq, anchor_hash, ..Default::default() };
        let mut client = verifier.clone();
        let token = platform.admin_token.clone();
        async move { client.verify_audit_log(with_token(request, &token)).await.map(|answer| answer.into_inner()) }
    };
    let verified = verify(anchor_seq, anchor_hash.clone()).await.unwrap();
    assert!(verified.intact && verified.last_seq >= anchor_seq, "{verified:?}");
    let wrong = verify(anchor_seq, vec![7; 32]).await.unwrap();
    assert_eq!((wrong.intact, wrong.broken_at), (false, anchor_seq), "{wrong:?}");
    assert_eq!(verify(anchor_seq, vec![7; 3]).await.unwrap_err().code(), Code::InvalidArgument);
    let not_admin = with_token(admin::VerifyAuditLogRequest::default(), &market);
    assert_eq!(admin_client.verify_audit_log(not_admin).await.unwrap_err().code(), Code::PermissionDenied);
    // A periodic check from the last hash it verified reads only what came after.
    let since = |from_seq: i64, from_hash: Vec<u8>| {
        let request = admin::VerifyAuditLogRequest { from_seq, from_hash, ..Default::default() };
        let mut client = admin_client.clone();
        let token = platform.admin_token.clone();
        async move { client.verify_audit_log(with_token(request, &token)).await.map(|answer| answer.into_inner()) }
    };
    let later = since(listed[2].seq, listed[2].hash.clone()).await.unwrap();
    assert!(later.intact && later.entries == later.last_seq - listed[2].seq, "{later:?}");
    let wrong = since(listed[2].seq, vec![7; 32]).await.unwrap();
    assert_eq!((wrong.intact, wrong.broken_at), (false, listed[2].seq), "{wrong:?}");
    assert_eq!(since(0, vec![7; 32]).await.unwrap_err().code(), Code::InvalidArgument);

    // Someone with the database's keys rewrites who made a call, then removes another entry. Only
    // a segment's last hash is stored, so the walk names the segment the changed entry is in.
    let segment_of = |seq: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT first_seq, last_seq FROM audit_segments WHERE $1 BETWEEN first_seq AND last_seq",
            )
            .bind(seq)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    set_entry_field(&pool, 3, "department_ids", "tax-440305").await;
    let Verified::Broken { seq, reason } = audit::verify(&pool, None).await.unwrap() else { panic!("not seen") };
    let (first, last) = segment_of(3).await;
    assert_eq!(seq, first, "{reason}");
    assert!(reason.contains(&format!("entries {first} to {last}")) && reason.contains("changed"), "{reason}");
    set_entry_field(&pool, 3, "department_ids", &recorded[2].0).await;
    assert!(matches!(audit::verify(&pool, None).await.unwrap(), Verified::Intact { .. }), "restored");
    // Or whom a call was about.
    let about_seq = about.entries[0].seq;
    set_entry_field(&pool, about_seq, "subjects", "9144030071526726XG").await;
    let Verified::Broken { seq, .. } = audit::verify(&pool, None).await.unwrap() else { panic!("not seen") };
    assert_eq!(seq, segment_of(about_seq).await.0);
    set_entry_field(&pool, about_seq, "subjects", "91110000600037341L").await;
    assert!(matches!(audit::verify(&pool, None).await.unwrap(), Verified::Intact { .. }), "restored");

    // Someone who also recomputes every later hash (holding the writers' lock meanwhile) leaves a
    // chain that verifies on its own; the hash kept outside catches it.
    rewrite_chain(&pool, 3, |row| {
        if row.0 == 3 {
            row.2 = "court-440305".to_owned();
        }
    })
    .await;
    assert!(matches!(audit::verify(&pool, None).await.unwrap(), Verified::Intact { .. }), "a rewrite verifies alone");
    let caught = verify(anchor_seq, anchor_hash).await.unwrap();
    assert_eq!((caught.intact, caught.broken_at), (false, anchor_seq), "{caught:?}");
    assert!(caught.reason.contains("kept outside"), "{}", caught.reason);

    // An entry taken out of its segment.
    let (first, last) = segment_of(4).await;
    let place = 4 - first + 1;
    let columns = ["at", "department_ids", "methods", "codes", "subjects"]
        .map(|column| format!("{column} = {column}[:{}] || {column}[{}:]", place - 1, place + 1))
        .join(", ");
    sqlx::query(&format!("UPDATE audit_segments SET {columns} WHERE first_seq = $1"))
        .bind(first)
        .execute(&pool)
        .await
        .unwrap();
    let Verified::Broken { seq, reason } = audit::verify(&pool, None).await.unwrap() else { panic!("not seen") };
    assert_eq!(seq, first, "{reason}");
    let held = format!("holds {} entries for the {} numbered {first} to {last}", last - first, last - first + 1);
    assert!(reason.contains(&held), "{reason}");
}

/// Set one field of audit entry `seq` where its segment stores it, as someone with the database's
/// keys could.
async fn set_entry_field(pool: &sqlx::PgPool, seq: i64, column: &str, value: &str) {
    sqlx::query(&format!(
        "UPDATE audit_segments SET {column}[$1 - first_seq + 1] = $2 WHERE $1 BETWEEN first_seq AND last_seq"
    ))
    .bind(seq)
    .bind(value)
    .execute(pool)
    .await
    .unwrap();
}

/// An audit entry as a test that rewrites it reads it: seq, time, department, method, code,
/// subject.
type AuditRow = (i64, chrono::DateTime<chrono::Utc>, String, String, i16, String);

/// Change the audit entries from `from_seq` on with `change` and recompute every hash after, as
/// someone holding the database's keys could, holding the writers' lock meanwhile.
async fn rewrite_chain(pool: &sqlx::PgPool, from_seq: i64, change: impl Fn(&mut AuditRow)) {
    use xinyong_gateway::audit::{Entry, link};
    let mut rewrite = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('gateway:audit'))").execute(&mut *rewrite).await.unwrap();
    let segments: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT first_seq, last_seq, previous_hash FROM audit_segments WHERE last_seq >= $1 ORDER BY first_seq",
    )
    .bind(from_seq)
    .fetch_all(&mut *rewrite)
    .await
    .unwrap();
    let mut previous = segments[0].2.clone();
    for (first_seq, last_seq, _) in segments {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT seq, at, department_id, method, code, subject FROM audit_log
             WHERE seq BETWEEN $1 AND $2 ORDER BY seq",
        )
        .bind(first_seq)
        .bind(last_seq)
        .fetch_all(&mut *rewrite)
        .await
        .unwrap();
        let segment_previous = previous.clone();
        let mut entries = Vec::new();
        for mut row in rows {
            if row.0 >= from_seq {
                change(&mut row);
            }
            let (seq, at, department_id, method, code, subject) = row;
            let entry = Entry { at, department_id, method, code, subject };
            previous = link(&previous, seq, &entry).to_vec();
            entries.push(entry);
        }
        sqlx::query(
            "UPDATE audit_segments SET previous_hash = $2, last_hash = $3, last_at = $4, at = $5, department_ids = $6,
                 methods = $7, codes = $8, subjects = $9, first_at = $10
             WHERE first_seq = $1",
        )
        .bind(first_seq)
        .bind(&segment_previous)
        .bind(&previous)
        .bind(entries.iter().map(|entry| entry.at).max())
        .bind(entries.iter().map(|entry| entry.at).collect::<Vec<_>>())
        .bind(entries.iter().map(|entry| entry.department_id.clone()).collect::<Vec<_>>())
        .bind(entries.iter().map(|entry| entry.method.clone()).collect::<Vec<_>>())
        .bind(entries.iter().map(|entry| entry.code).collect::<Vec<_>>())
        .bind(entries.iter().map(|entry| entry.subject.clone()).collect::<Vec<_>>())
        .bind(entries.iter().map(|entry| entry.at).min())
        .execute(&mut *rewrite)
        .await
        .unwrap();
    }
    rewrite.commit().await.unwrap();
}

/// Retention removes entries past it from the start of the chain; what remains still verifies
/// from the last one removed, and a hash kept of a removed entry is reported as such.
#[tokio::test]
async fn audit_retention_removes_the_oldest_entries_and_the_rest_still_verifies() {
    use xinyong_gateway::audit::{self, Anchor, Verified};
    let platform = Platform::start().await;
    let market = crate::ingestion::department(&platform, "samr-440305", &[]).await;
    let mut registry = RegistryServiceClient::new(platform.gateway().await);
    for _ in 0..4 {
        registry.get_entity(with_token(get_entity(), &market)).await.unwrap_err();
    }
    let pool = platform.pool_of("gateway").await;
    let mut written = 0;
    for _ in 0..200 {
        written = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_log").fetch_one(&pool).await.unwrap();
        if written >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(written >= 6, "{written} entries");
    // The first three were recorded 200 days ago (the chain recomputed to match).
    let long_ago = chrono::Utc::now() - chrono::Duration::days(200);
    rewrite_chain(&pool, 1, |row| {
        if row.0 <= 3 {
            row.1 = long_ago + chrono::Duration::seconds(row.0);
        }
    })
    .await;
    let old_third = audit::entries(&pool, 2, audit::Wanted::default(), 1).await.unwrap()[0].hash.to_vec();

    let cutoff = chrono::Utc::now() - chrono::Duration::days(180);
    assert_eq!(audit::prune(&pool, cutoff).await.unwrap(), 3);
    assert_eq!(audit::prune(&pool, cutoff).await.unwrap(), 0, "nothing more is past it");
    let base: (i64, Vec<u8>) = sqlx::query_as("SELECT seq, hash FROM audit_log_base").fetch_one(&pool).await.unwrap();
    assert_eq!(base, (3, old_third.clone()));
    let Verified::Intact { last_seq, .. } = audit::verify(&pool, None).await.unwrap() else {
        panic!("what remains does not verify")
    };
    assert!(last_seq >= written);
    let gone = audit::verify(&pool, Some(&Anchor { seq: 3, hash: old_third })).await.unwrap();
    assert!(matches!(&gone, Verified::Broken { seq: 3, reason } if reason.contains("retention")), "{gone:?}");

    // Even when every entry is past it, the newest stays: the chain goes on from it.
    let newest: i64 = sqlx::query_scalar("SELECT max(seq) FROM audit_log").fetch_one(&pool).await.unwrap();
    let everything = audit::prune(&pool, chrono::Utc::now() + chrono::Duration::days(1)).await.unwrap();
    assert!(everything >= (newest - 4) as u64, "{everything}");
    registry.get_entity(with_token(get_entity(), &market)).await.unwrap_err();
    for _ in 0..200 {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log").fetch_one(&pool).await.unwrap();
        if count >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let verified = audit::verify(&pool, None).await.unwrap();
    assert!(matches!(verified, Verified::Intact { entries, .. } if entries >= 2), "{verified:?}");
}

/// An audit log stored as a row per entry becomes segments that verify as the rows did, from the
/// base retention left, with every entry listed with the hashes it had; retention then removes
/// whole segments and cuts the one it ends in.
#[tokio::test]
async fn an_audit_log_stored_as_rows_verifies_as_segments() {
    use xinyong_gateway::audit::{self, Entry, Verified, link};
    let database = xinyong_platform::testing::TestDatabase::new().await;
    let pool = database.pool_before("gateway", &xinyong_gateway::MIGRATOR, 20261125000005).await;
    // Retention removed entries up to 10; 5,000 follow, more than one segment's 4,096.
    let base = [9_u8; 32];
    sqlx::query("INSERT INTO audit_log_base (seq, hash) VALUES (10, $1)").bind(&base[..]).execute(&pool).await.unwrap();
    // Stored to the microsecond, which is what the hash covers.
    let start = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now() - chrono::Duration::days(3), 6);
    let mut rows = Vec::new();
    let mut previous = base;
    for seq in 11..=5010_i64 {
        let entry = Entry {
            at: start + chrono::Duration::milliseconds(seq),
            department_id: if seq % 3 == 0 { String::new() } else { format!("samr-{}", 440300 + seq % 7) },
            method: "xinyong.registry.v1.RegistryService/GetEntity".into(),
            code: (seq % 5) as i16,
            subject: if seq % 2 == 0 { "91110000600037341L".into() } else { String::new() },
        };
        let hash = link(&previous, seq, &entry);
        rows.push((seq, entry, previous, hash));
        previous = hash;
    }
    for chunk in rows.chunks(1000) {
        let mut insert = sqlx::QueryBuilder::new(
            "INSERT INTO audit_log (seq, at, department_id, method, code, subject, previous_hash, hash) ",
        );
        insert.push_values(chunk, |mut row, (seq, entry, previous, hash)| {
            row.push_bind(seq)
                .push_bind(entry.at)
                .push_bind(&entry.department_id)
                .push_bind(&entry.method)
                .push_bind(entry.code)
                .push_bind(&entry.subject)
                .push_bind(&previous[..])
                .push_bind(&hash[..]);
        });
        insert.build().execute(&pool).await.unwrap();
    }
    xinyong_platform::db::migrate(&pool, &xinyong_gateway::MIGRATOR).await.unwrap();

    let segments: Vec<(i64, i64)> = sqlx::query_as("SELECT first_seq, last_seq FROM audit_segments ORDER BY first_seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(segments, [(11, 4096), (4097, 5010)]);
    assert_eq!(
        audit::verify(&pool, None).await.unwrap(),
        Verified::Intact { entries: 5000, last_seq: 5010, last_hash: previous.to_vec() }
    );
    assert_eq!(audit::newest(&pool).await.unwrap(), Some((5010, previous.to_vec())));
    // Across the segments' border, each entry as it was stored.
    let listed = audit::entries(&pool, 4090, audit::Wanted::default(), 10).await.unwrap();
    assert_eq!(listed.iter().map(|listed| listed.seq).collect::<Vec<_>>(), (4091..=4100).collect::<Vec<_>>());
    for listed in &listed {
        let (seq, entry, previous, hash) = &rows[(listed.seq - 11) as usize];
        assert_eq!((listed.seq, &listed.entry, listed.previous_hash, listed.hash), (*seq, entry, *previous, *hash));
    }
    let about = audit::entries(
        &pool,
        0,
        audit::Wanted { department_id: "samr-440301", subject: "91110000600037341L", ..Default::default() },
        5000,
    )
    .await
    .unwrap();
    let expected = rows
        .iter()
        .filter(|(_, entry, ..)| entry.department_id == "samr-440301" && !entry.subject.is_empty())
        .map(|(seq, ..)| *seq);
    assert_eq!(about.iter().map(|listed| listed.seq).collect::<Vec<_>>(), expected.collect::<Vec<_>>());
    // Each segment knows the range of its times (the migration read them from the rows), and a
    // period lists what lies in it, across the border: entry `seq` was answered `seq` ms after
    // `start`.
    let ranges: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT first_at, last_at FROM audit_segments ORDER BY first_seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    let at = |seq: i64| start + chrono::Duration::milliseconds(seq);
    assert_eq!(ranges, [(at(11), at(4096)), (at(4097), at(5010))]);
    let march = audit::Wanted { since: Some(at(4000)), until: Some(at(4200)), ..Default::default() };
    let in_march = audit::entries(&pool, 0, march, 5000).await.unwrap();
    assert_eq!(in_march.iter().map(|listed| listed.seq).collect::<Vec<_>>(), (4000..4200).collect::<Vec<_>>());
    for listed in &in_march {
        assert_eq!(listed.hash, rows[(listed.seq - 11) as usize].3, "entry {} has its own hash", listed.seq);
    }
    let later = audit::Wanted { since: Some(at(5000)), ..Default::default() };
    assert_eq!(audit::entries(&pool, 0, later, 5000).await.unwrap().len(), 11);
    let earlier = audit::Wanted { until: Some(at(20)), subject: "91110000600037341L", ..Default::default() };
    let early: Vec<i64> =
        audit::entries(&pool, 0, earlier, 5000).await.unwrap().iter().map(|listed| listed.seq).collect();
    assert_eq!(early, [12, 14, 16, 18]);
    // The view shows the rows for whoever reads them in SQL.
    let shown: Vec<(i64, String, i16)> = sqlx::query_as(
        "SELECT seq, department_id, code FROM audit_log WHERE seq IN (11, 4096, 4097, 5010) ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let stored = [11, 4096, 4097, 5010].map(|seq| {
        let (_, entry, ..) = &rows[(seq - 11) as usize];
        (seq, entry.department_id.clone(), entry.code)
    });
    assert_eq!(shown, stored);

    // A periodic check walks from an entry whose hash it kept: from the middle of a segment, its
    // end, or the newest entry; a kept hash that differs, an entry changed before the start in its
    // segment, and a start past the end are reported.
    let kept = |seq: i64| audit::Anchor { seq, hash: rows[(seq - 11) as usize].3.to_vec() };
    let intact = |entries: u64| Verified::Intact { entries, last_seq: 5010, last_hash: previous.to_vec() };
    assert_eq!(audit::verify_from(&pool, Some(&kept(4000)), None).await.unwrap(), intact(1010));
    assert_eq!(audit::verify_from(&pool, Some(&kept(4096)), Some(&kept(5000))).await.unwrap(), intact(914));
    assert_eq!(audit::verify_from(&pool, Some(&kept(5010)), None).await.unwrap(), intact(0));
    let wrong = audit::Anchor { seq: 4000, hash: vec![7; 32] };
    let Verified::Broken { seq, reason } = audit::verify_from(&pool, Some(&wrong), None).await.unwrap() else {
        panic!("a wrong kept hash passed")
    };
    assert_eq!(seq, 4000);
    assert!(reason.contains("kept outside"), "{reason}");
    let beyond = audit::Anchor { seq: 5011, hash: vec![7; 32] };
    let Verified::Broken { seq, reason } = audit::verify_from(&pool, Some(&beyond), None).await.unwrap() else {
        panic!("a start past the end passed")
    };
    assert_eq!(seq, 5011);
    assert!(reason.contains("ends at entry 5010"), "{reason}");
    set_entry_field(&pool, 100, "methods", "xinyong.registry.v1.RegistryService/RegisterEntity").await;
    let Verified::Broken { seq, .. } = audit::verify_from(&pool, Some(&kept(4000)), None).await.unwrap() else {
        panic!("a change before the start in its segment passed")
    };
    assert_eq!(seq, 11);
    set_entry_field(&pool, 100, "methods", "xinyong.registry.v1.RegistryService/GetEntity").await;
    assert_eq!(audit::verify_from(&pool, Some(&kept(4096)), None).await.unwrap(), intact(914));

    // Retention cuts a segment an entry of which is not past it, removes whole ones that are, and
    // keeps the newest entry even when every one is past it.
    let hash_of = |seq: i64| rows[(seq - 11) as usize].3.to_vec();
    let base_now = || async {
        sqlx::query_as::<_, (i64, Vec<u8>)>("SELECT seq, hash FROM audit_log_base").fetch_one(&pool).await.unwrap()
    };
    let entry_at = |seq: i64| start + chrono::Duration::milliseconds(seq);
    assert_eq!(audit::prune(&pool, entry_at(2000)).await.unwrap(), 1989);
    assert_eq!(base_now().await, (1999, hash_of(1999)));
    let segments: Vec<(i64, i64)> = sqlx::query_as("SELECT first_seq, last_seq FROM audit_segments ORDER BY first_seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(segments, [(2000, 4096), (4097, 5010)]);
    // The cut segment's times start where it now starts: a period before it finds nothing there.
    let first_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT first_at FROM audit_segments WHERE first_seq = 2000")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(first_at, entry_at(2000));
    let before_the_cut = audit::Wanted { until: Some(entry_at(2000)), ..Default::default() };
    assert!(audit::entries(&pool, 0, before_the_cut, 10).await.unwrap().is_empty());
    assert!(matches!(audit::verify(&pool, None).await.unwrap(), Verified::Intact { entries: 3011, .. }));
    assert_eq!(audit::prune(&pool, entry_at(4500)).await.unwrap(), 2500);
    assert_eq!(base_now().await, (4499, hash_of(4499)));
    assert_eq!(audit::entries(&pool, 0, audit::Wanted::default(), 1).await.unwrap()[0].seq, 4500);
    assert!(matches!(audit::verify(&pool, None).await.unwrap(), Verified::Intact { entries: 511, .. }));
    assert_eq!(audit::prune(&pool, chrono::Utc::now()).await.unwrap(), 510);
    assert_eq!(
        audit::verify(&pool, None).await.unwrap(),
        Verified::Intact { entries: 1, last_seq: 5010, last_hash: previous.to_vec() }
    );
}

/// The metrics docs/configuration.md lists, as their samples are named (a counter with `_total`).
fn documented_metrics() -> BTreeSet<String> {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md"))
        .expect("docs/configuration.md is readable");
    docs.lines()
        .filter_map(|line| line.strip_prefix("| `xinyong_"))
        .map(|rest| format!("xinyong_{}", rest.split(['{', '`']).next().unwrap_or_default()))
        .collect()
}

/// The chart's dashboard and alerts are checked against the documented metrics
/// (helm/check_monitoring.py); this holds the documentation to what the processes export, so a
/// metric renamed in the code alone fails here rather than leaving a panel empty.
#[tokio::test]
async fn the_audit_log_lists_a_period_wherever_its_entries_lie_in_the_chain() {
    use xinyong_gateway::audit::{AuditLog, Entry};
    let mut platform = Platform::provision().await;
    let ports: std::collections::HashMap<String, (u16, u16)> =
        [("gateway".to_owned(), (free_port(), free_port()))].into();
    platform.spawn("gateway", ports["gateway"], &[], &ports);
    platform.wait_serving("gateway").await;
    let pool = platform.pool_of("gateway").await;
    let day = |month: u32, day: u32| {
        chrono::NaiveDate::from_ymd_opt(2026, month, day).unwrap().and_hms_opt(9, 0, 0).unwrap().and_utc()
    };
    let lookup = |at, department: &str| Entry {
        at,
        department_id: department.into(),
        method: "xinyong.registry.v1.RegistryService/GetEntity".into(),
        code: Code::Ok as i16,
        subject: "91110000600037341L".into(),
    };
    // Three batches, each a segment: February and March; then, written last, entries a replica
    // held through an outage, one of them from March; then April.
    let batches = [
        vec![lookup(day(2, 27), "samr-440305"), lookup(day(3, 2), "samr-440305")],
        vec![lookup(day(2, 28), "tax-440305"), lookup(day(3, 31), "tax-440305")],
        vec![lookup(day(4, 1), "samr-440305")],
    ];
    for batch in batches {
        let (writer, task) = AuditLog::start(pool.clone(), &xinyong_platform::metrics::Metrics::new("replica"));
        for entry in batch {
            writer.record(entry).await;
        }
        task.finish(Duration::from_secs(5)).await;
    }
    let admin_client = GatewayAdminServiceClient::new(platform.gateway().await);
    let timestamp = |at: chrono::DateTime<chrono::Utc>| prost_types::Timestamp { seconds: at.timestamp(), nanos: 0 };
    let listed = |since: Option<prost_types::Timestamp>, until: Option<prost_types::Timestamp>, page_size: i32| {
        let request = admin::ListAuditEntriesRequest { since, until, page_size, ..Default::default() };
        let mut client = admin_client.clone();
        let token = platform.admin_token.clone();
        async move { client.list_audit_entries(with_token(request, &token)).await.map(tonic::Response::into_inner) }
    };
    let march = listed(Some(timestamp(day(3, 1))), Some(timestamp(day(4, 1))), 0).await.unwrap();
    let found: Vec<(i64, &str)> = march.entries.iter().map(|entry| (entry.seq, entry.department_id.as_str())).collect();
    assert_eq!(found, [(2, "samr-440305"), (4, "tax-440305")], "{march:?}");
    // Page by page, in chain order.
    let first = listed(Some(timestamp(day(2, 28))), None, 1).await.unwrap();
    assert_eq!((first.entries[0].seq, first.next_after_seq), (2, 2));
    let up_to_march = listed(None, Some(timestamp(day(3, 1))), 0).await.unwrap();
    assert_eq!(up_to_march.entries.iter().map(|entry| entry.seq).collect::<Vec<_>>(), [1, 3]);
    // Up to the end of `until`, not including it.
    let april_first = listed(Some(timestamp(day(3, 31))), Some(timestamp(day(4, 1))), 0).await.unwrap();
    assert_eq!(april_first.entries.iter().map(|entry| entry.seq).collect::<Vec<_>>(), [4]);

    let backwards = listed(Some(timestamp(day(4, 1))), Some(timestamp(day(3, 1))), 0).await.unwrap_err();
    assert_eq!(backwards.code(), Code::InvalidArgument);
    assert!(backwards.message().contains("until"), "{}", backwards.message());
    let garbled = listed(Some(prost_types::Timestamp { seconds: 0, nanos: -1 }), None, 0).await.unwrap_err();
    assert_eq!(garbled.code(), Code::InvalidArgument);
    assert!(garbled.message().contains("since"), "{}", garbled.message());
}

#[tokio::test]
async fn the_processes_export_exactly_the_documented_metrics() {
    let platform = Platform::start().await;
    // A labelled family is described only once it has a series: one registration makes an event
    // that a relay publishes and consumers handle.
    let market = crate::ingestion::department(&platform, "samr-440305", &["report:licence"]).await;
    RegistryServiceClient::new(platform.gateway().await)
        .register_entity(with_token(RegisterEntityRequest { entity: Some(crate::ingestion::enterprise()) }, &market))
        .await
        .expect("the entity is registered");
    // And one call refused over a rate limit of one a second (a bucket of two).
    let mut admin_client = GatewayAdminServiceClient::new(platform.gateway().await);
    let limit = admin::SetRateLimitRequest { department_id: "samr-440305".into(), calls_per_second: 1 };
    admin_client.set_rate_limit(with_token(limit, &platform.admin_token)).await.unwrap();
    let mut registry = RegistryServiceClient::new(platform.gateway().await);
    let mut refused = false;
    for _ in 0..20 {
        let answer = registry.get_entity(with_token(get_entity(), &market)).await.unwrap_err();
        refused = answer.code() == Code::ResourceExhausted;
        if refused {
            break;
        }
    }
    assert!(refused, "a call over the limit");
    let documented = documented_metrics();
    assert!(documented.len() >= 10, "the metrics table was not found: {documented:?}");
    let mut exported = BTreeSet::new();
    for _ in 0..100 {
        exported.clear();
        for (name, node) in &platform.nodes {
            let response = xinyong_platform::testing::http_get(node.admin, "/metrics").await;
            assert!(response.contains(" 200 "), "{name}'s /metrics: {response}");
            // `# TYPE name kind`, a counter named without its `_total`.
            for line in response.lines() {
                let Some(described) = line.strip_prefix("# TYPE ") else { continue };
                let mut parts = described.split(' ');
                let (Some(metric), Some(kind)) = (parts.next(), parts.next()) else { continue };
                exported.insert(if kind == "counter" { format!("{metric}_total") } else { metric.to_owned() });
            }
        }
        if documented.is_subset(&exported) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let undocumented: Vec<&String> = exported.difference(&documented).collect();
    let missing: Vec<&String> = documented.difference(&exported).collect();
    assert!(undocumented.is_empty(), "exported but not in docs/configuration.md: {undocumented:?}");
    assert!(missing.is_empty(), "in docs/configuration.md but exported by no process: {missing:?}");
}

/// Redis loses the registry's stream while grading is down, with the registration grading never
/// read: grading never grades the subject, until the operator's `xinyong-cli events-replay` has the
/// registry's relay publish it again.
#[tokio::test]
async fn an_event_lost_with_redis_reaches_its_consumer_after_an_events_replay() {
    use xinyong_proto::grading::v1::GetGradeRequest;
    use xinyong_proto::grading::v1::grading_service_client::GradingServiceClient;

    let mut platform = Platform::start().await;
    let market = crate::ingestion::department(&platform, "samr-440305", &[]).await;
    platform.kill("grading");
    let before = chrono::Utc::now();
    RegistryServiceClient::new(platform.gateway().await)
        .register_entity(with_token(RegisterEntityRequest { entity: Some(crate::ingestion::enterprise()) }, &market))
        .await
        .unwrap();
    let registry = platform.pool_of("registry").await;
    for attempt in 0.. {
        let published: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
            .fetch_one(&registry)
            .await
            .unwrap();
        if published > 0 {
            break;
        }
        assert!(attempt < 400, "the registration was never published");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut redis = redis::Client::open(xinyong_platform::testing::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stream = format!("{}:events:registry", platform.redis_prefix);
    let removed: i64 = redis::cmd("DEL").arg(&stream).query_async(&mut redis).await.unwrap();
    assert_eq!(removed, 1, "the registry's stream {stream}");

    platform.restart("grading", &[]);
    platform.wait_serving("grading").await;
    let mut grading = GradingServiceClient::new(platform.gateway().await);
    let grade = || GetGradeRequest { credit_code: crate::ingestion::enterprise().credit_code, scheme: String::new() };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let lost = grading.get_grade(with_token(grade(), &market)).await.unwrap_err();
    assert_eq!(lost.code(), Code::NotFound, "grading never heard of the subject");

    let admin_url = xinyong_platform::testing::admin_database_url();
    let replayed =
        xinyong_cli::replay::run(&admin_url, &platform.database, &["registry", "grading"], before).await.unwrap();
    let republished = replayed[0].1.expect("the registry has an outbox");
    assert_eq!((replayed[0].0.as_str(), republished.events), ("registry", 1));
    assert_eq!(replayed[1].1.map(|grading| grading.events), Some(0), "grading published nothing since");
    for attempt in 0.. {
        if grading.get_grade(with_token(grade(), &market)).await.is_ok() {
            break;
        }
        assert!(attempt < 400, "grading never graded the replayed registration\n{}", platform.log_tail("grading"));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
