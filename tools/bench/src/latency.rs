//! The delay from `SubmitRecord` answering to `GetGrade` showing the new grade: ingestion's
//! outbox, its relay (at the production interval), the Redis Stream, grading's consumer, the
//! regrade and the read model. N changes, one at a time, each on its own subject; median and p99.

use std::time::{Duration, Instant};

use xinyong_grading::{GradingSection, GradingSettings};
use xinyong_ingestion::{IngestionSection, IngestionSettings};
use xinyong_platform::testing::{TestDatabase, connect_when_serving, redis_url};
use xinyong_proto::common::v1::{Grade, Nature};
use xinyong_proto::grading::v1::GetGradeRequest;
use xinyong_proto::grading::v1::grading_service_client::GradingServiceClient;
use xinyong_proto::ingestion::v1::SubmitRecordRequest;
use xinyong_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;

use crate::{harness, import, ingest};

/// The relay interval services run with by default (`events.relay_interval_ms`).
const RELAY_INTERVAL_MS: u64 = 50;

pub async fn run() {
    let changes = harness::setting("BENCH_CHANGES", 1000);
    let database = TestDatabase::new().await;

    let mut settings = harness::registry_settings(&database, 1000);
    settings.platform.events.relay_interval_ms = RELAY_INTERVAL_MS;
    let registry =
        harness::Running::start(|listener, stop| xinyong_registry::run(settings, listener, None, stop)).await;
    let mut grading_settings =
        GradingSettings { platform: database.settings("grading", &redis_url()), grading: GradingSection::default() };
    grading_settings.platform.events.relay_interval_ms = RELAY_INTERVAL_MS;
    let grading =
        harness::Running::start(|listener, stop| xinyong_grading::run(grading_settings, listener, None, stop)).await;
    let mut ingestion_settings = IngestionSettings {
        platform: database.settings("ingestion", &redis_url()),
        ingestion: IngestionSection { registry_url: format!("http://{}", registry.address), ..Default::default() },
    };
    ingestion_settings.platform.events.relay_interval_ms = RELAY_INTERVAL_MS;
    let ingestion =
        harness::Running::start(|listener, stop| xinyong_ingestion::run(ingestion_settings, listener, None, stop))
            .await;

    let mut registry_client = RegistryServiceClient::with_interceptor(
        connect_when_serving(registry.address, "xinyong.registry.v1.RegistryService").await,
        harness::interceptor(&database, "bench"),
    );
    let mut grading_client = GradingServiceClient::with_interceptor(
        connect_when_serving(grading.address, "xinyong.grading.v1.GradingService").await,
        harness::interceptor(&database, "bench"),
    );
    let mut ingestion_client = IngestionServiceClient::with_interceptor(
        connect_when_serving(ingestion.address, "xinyong.ingestion.v1.IngestionService").await,
        harness::interceptor(&database, "bench"),
    );
    assert_eq!(import::load(&mut registry_client, changes).await, changes);
    // Every subject has its first grade before the clock starts.
    let last = import::subject(changes - 1).credit_code;
    wait_for_grade(&mut grading_client, &last, Grade::A, Duration::from_secs(60)).await.expect("first grades");

    let decided_on = (xinyong_domain::calendar::today() - chrono::Duration::days(1)).to_string();
    let mut delays = Vec::with_capacity(changes as usize);
    eprintln!("grade-latency: {changes} changes, one at a time (relay every {RELAY_INTERVAL_MS} ms)");
    for index in 0..changes {
        let mut record = ingest::record(index, &import::subject(index).credit_code);
        record.nature = Nature::SeriousDishonesty as i32;
        record.decided_on = decided_on.clone();
        let code = record.credit_code.clone();
        let started = Instant::now();
        ingestion_client.submit_record(SubmitRecordRequest { record: Some(record) }).await.expect("accepted");
        wait_for_grade(&mut grading_client, &code, Grade::C, Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("{code} never graded C"));
        delays.push(started.elapsed());
    }
    delays.sort();
    let at = |fraction: f64| delays[((delays.len() as f64 * fraction).ceil() as usize).clamp(1, delays.len()) - 1];
    let (median, p99, max) = (at(0.5), at(0.99), delays[delays.len() - 1]);
    ingestion.stop().await;
    grading.stop().await;
    registry.stop().await;
    println!(
        "grade-latency: p99 {:.0} ms (median {:.0} ms, max {:.0} ms over {changes} changes, SubmitRecord to GetGrade)",
        p99.as_secs_f64() * 1000.0,
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    );
}

/// Poll `GetGrade` every millisecond until it shows `grade`; how long that took.
async fn wait_for_grade(
    client: &mut GradingServiceClient<harness::Intercepted>,
    credit_code: &str,
    grade: Grade,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        let answer = client
            .get_grade(GetGradeRequest { credit_code: credit_code.to_owned(), scheme: String::new() })
            .await
            .ok()
            .and_then(|response| response.into_inner().grade);
        if answer.is_some_and(|info| info.grade == grade as i32) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}
