//! Reports over real gRPC against real Postgres and Redis, with a real registry, ingestion,
//! grading and sanctions beside them (grading and sanctions hear the records through the event
//! bus): what is kept, how retries meet, and what an owner that does not answer does to a report.

use std::time::Duration;

use secrecy::SecretString;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use xinyong_domain::calendar::today;
use xinyong_grading::{GradingSection, GradingSettings};
use xinyong_ingestion::{IngestionSection, IngestionSettings};
use xinyong_platform::identity::{Caller, InternalInterceptor};
use xinyong_platform::testing::{Spawned, TestDatabase, connect_when_serving, http_get, redis_url};
use xinyong_proto::common::v1::{Grade, SubjectKind};
use xinyong_proto::grading::v1::GetGradeRequest;
use xinyong_proto::grading::v1::grading_service_client::GradingServiceClient;
use xinyong_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use xinyong_proto::ingestion::v1::{PenaltyKind, RecordInput, SubmitRecordRequest};
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;
use xinyong_proto::registry::v1::{Entity, RegisterEntityRequest};
use xinyong_proto::reports::v1::report_service_client::ReportServiceClient;
use xinyong_proto::reports::v1::{GetReportRequest, IssueReportRequest, ReportKind, VerifyReportRequest};
use xinyong_registry::{RegistrySection, RegistrySettings};
use xinyong_reports::{ReportsSection, ReportsSettings};
use xinyong_sanctions::{SanctionsSection, SanctionsSettings};

type Reports = ReportServiceClient<InterceptedService<Channel, InternalInterceptor>>;

const LENOVO: &str = "91110000600037341L";
const MARKET: &str = "samr-110108";

struct App {
    token: SecretString,
    reports: Spawned,
    admin: std::net::SocketAddr,
    section: ReportsSection,
    /// Registry, ingestion, grading and sanctions, by name.
    owners: Vec<(&'static str, Spawned)>,
    pool: sqlx::PgPool,
    database: TestDatabase,
}

impl App {
    async fn client(&self, department: &str) -> Reports {
        let channel = connect_when_serving(self.reports.address, "xinyong.reports.v1.ReportService").await;
        ReportServiceClient::with_interceptor(
            channel,
            InternalInterceptor::new(&self.token, Some(Caller::new(department, vec![]))).unwrap(),
        )
    }

    async fn stop_owner(&mut self, name: &str) {
        let at = self.owners.iter().position(|(owner, _)| *owner == name).unwrap();
        self.owners.remove(at).1.stop().await;
    }

    async fn kept(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM reports").fetch_one(&self.pool).await.unwrap()
    }

    async fn stop(self) {
        self.reports.stop().await;
        for (_, owner) in self.owners {
            owner.stop().await;
        }
    }
}

async fn start_reports(database: &TestDatabase, section: ReportsSection) -> (Spawned, std::net::SocketAddr) {
    let settings = ReportsSettings { platform: database.settings("reports", &redis_url()), reports: section };
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = admin_listener.local_addr().unwrap();
    let spawned =
        Spawned::start(|listener, stop| xinyong_reports::run(settings, listener, Some(admin_listener), stop)).await;
    (spawned, admin)
}

/// The owners and reports, with Lenovo registered and fined 30 days ago, graded B.
async fn spawn_app() -> App {
    let database = TestDatabase::new().await;
    let registry_settings = RegistrySettings {
        platform: database.settings("registry", &redis_url()),
        registry: RegistrySection {
            personal_data_key: SecretString::from("ab".repeat(32)),
            ..RegistrySection::default()
        },
    };
    let token = registry_settings.platform.internal.token.clone();
    let caller = || InternalInterceptor::new(&token, Some(Caller::new(MARKET, vec![]))).unwrap();
    let registry =
        Spawned::start(|listener, stop| xinyong_registry::run(registry_settings, listener, None, stop)).await;
    let channel = connect_when_serving(registry.address, "xinyong.registry.v1.RegistryService").await;
    let entity = Entity {
        credit_code: LENOVO.into(),
        name: "联想(北京)有限公司".into(),
        kind: SubjectKind::Enterprise as i32,
        region_code: "110108".into(),
        industry_code: "C3911".into(),
        established_on: "1992-11-12".into(),
        ..Default::default()
    };
    let mut registry_client = RegistryServiceClient::with_interceptor(channel, caller());
    registry_client.register_entity(RegisterEntityRequest { entity: Some(entity) }).await.unwrap();

    let ingestion_settings = IngestionSettings {
        platform: database.settings("ingestion", &redis_url()),
        ingestion: IngestionSection {
            registry_url: format!("http://{}", registry.address),
            ..IngestionSection::default()
        },
    };
    let ingestion =
        Spawned::start(|listener, stop| xinyong_ingestion::run(ingestion_settings, listener, None, stop)).await;
    let grading_settings =
        GradingSettings { platform: database.settings("grading", &redis_url()), grading: GradingSection::default() };
    let grading = Spawned::start(|listener, stop| xinyong_grading::run(grading_settings, listener, None, stop)).await;
    let sanctions_settings = SanctionsSettings {
        platform: database.settings("sanctions", &redis_url()),
        sanctions: SanctionsSection { listing_sweep_seconds: 0, ..SanctionsSection::default() },
    };
    let sanctions =
        Spawned::start(|listener, stop| xinyong_sanctions::run(sanctions_settings, listener, None, stop)).await;

    let channel = connect_when_serving(ingestion.address, "xinyong.ingestion.v1.IngestionService").await;
    let fine = RecordInput {
        credit_code: LENOVO.into(),
        source_record_id: "CF-1".into(),
        category: "penalty".into(),
        decided_on: (today() - chrono::Duration::days(30)).to_string(),
        document_number: "京海市监罚〔2026〕1号".into(),
        fields: [("content", "罚款5000元"), ("legal_basis", "《食品安全法》"), ("authority", "海淀区市场监督管理局")]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect(),
        penalty_kind: PenaltyKind::Fine as i32,
        // A person's ID number, which the report masks even for the department that reported it.
        text: "当事人（110105194912310021）已缴纳罚款".into(),
        ..Default::default()
    };
    let mut ingestion_client = IngestionServiceClient::with_interceptor(channel, caller());
    ingestion_client.submit_record(SubmitRecordRequest { record: Some(fine) }).await.unwrap();
    let channel = connect_when_serving(grading.address, "xinyong.grading.v1.GradingService").await;
    let mut grading_client = GradingServiceClient::with_interceptor(channel, caller());
    let mut graded = None;
    for _ in 0..300 {
        let request = GetGradeRequest { credit_code: LENOVO.into(), scheme: String::new() };
        graded = grading_client.get_grade(request).await.ok().and_then(|answer| answer.into_inner().grade);
        if graded.as_ref().is_some_and(|grade| grade.grade == Grade::B as i32) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(graded.map(|grade| grade.grade), Some(Grade::B as i32), "the fine was graded");
    connect_when_serving(sanctions.address, "xinyong.sanctions.v1.SanctionsService").await;

    let section = ReportsSection {
        registry_url: format!("http://{}", registry.address),
        ingestion_url: format!("http://{}", ingestion.address),
        grading_url: format!("http://{}", grading.address),
        sanctions_url: format!("http://{}", sanctions.address),
        read_timeout_seconds: 2,
    };
    let (reports, admin) = start_reports(&database, section.clone()).await;
    App {
        token,
        reports,
        admin,
        section,
        owners: vec![("registry", registry), ("ingestion", ingestion), ("grading", grading), ("sanctions", sanctions)],
        pool: database.pool_of("reports").await,
        database,
    }
}

fn credit_report(source: &str) -> IssueReportRequest {
    IssueReportRequest {
        credit_code: LENOVO.into(),
        kind: ReportKind::Credit as i32,
        period: None,
        source_request_id: source.into(),
    }
}

#[tokio::test]
async fn retries_at_once_issue_one_report_which_is_kept_across_a_restart() {
    let mut app = spawn_app().await;
    let client = app.client(MARKET).await;
    let retries: Vec<_> = (0..6)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.issue_report(credit_report("BG-7")).await.unwrap().into_inner() })
        })
        .collect();
    let mut answers = Vec::new();
    for retry in retries {
        answers.push(retry.await.unwrap());
    }
    let issued: Vec<_> = answers.iter().filter(|answer| answer.issued).collect();
    assert_eq!(issued.len(), 1, "one of the retries issued it");
    let report = issued[0].report.clone().unwrap();
    assert!(answers.iter().all(|answer| answer.report.as_ref() == Some(&report)), "every retry got that report");
    assert_eq!(app.kept().await, 1);
    assert_eq!(report.grades.iter().find(|grade| grade.scheme == "public_credit").unwrap().grade, Grade::B as i32);
    let texts: Vec<&str> = report.records.iter().map(|record| record.text.as_str()).collect();
    assert_eq!(texts, ["当事人（110105********0021）已缴纳罚款"], "issued by the department that reported it");
    let metrics = http_get(app.admin, "/metrics").await;
    assert!(metrics.contains("xinyong_reports_issued_total{component=\"reports\",kind=\"credit\"} 1"), "{metrics}");

    // Restarted, it still has the report and still vouches for it.
    app.reports.stop().await;
    let (reports, admin) = start_reports(&app.database, app.section.clone()).await;
    (app.reports, app.admin) = (reports, admin);
    let mut client = app.client(MARKET).await;
    let kept = client.get_report(GetReportRequest { report_no: report.report_no.clone() }).await.unwrap();
    assert_eq!(kept.into_inner().report.as_ref(), Some(&report));
    let check = VerifyReportRequest { report_no: report.report_no.clone(), digest: report.digest.to_uppercase() };
    assert!(app.client("bank-110108").await.verify_report(check).await.unwrap().into_inner().valid, "hex in any case");
    let missing =
        client.get_report(GetReportRequest { report_no: format!("XY20260101-{}", uuid::Uuid::now_v7().simple()) });
    assert_eq!(missing.await.unwrap_err().code(), Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn an_owner_that_does_not_answer_is_named_and_no_report_is_kept() {
    let mut app = spawn_app().await;
    app.stop_owner("grading").await;
    let mut client = app.client(MARKET).await;
    let error = client.issue_report(credit_report("")).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable);
    assert!(error.message().contains("grading"), "{}", error.message());
    assert_eq!(app.kept().await, 0, "a report without its grades is not issued");

    // A special report does not ask grading: it is issued.
    let special = IssueReportRequest { kind: ReportKind::Special as i32, ..credit_report("ZX-1") };
    let report = client.issue_report(special.clone()).await.unwrap().into_inner().report.unwrap();
    assert_eq!(report.sections[0].record_ids.len(), 1, "the fine, in the penalty section");
    assert_eq!(app.kept().await, 1);

    app.stop_owner("sanctions").await;
    let special = IssueReportRequest { source_request_id: "ZX-2".into(), ..special };
    let error = client.issue_report(special).await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable);
    assert!(error.message().contains("sanctions"), "{}", error.message());
    assert_eq!(app.kept().await, 1);
    app.stop().await;
}
