//! Objections and repair over real gRPC against real Postgres and Redis, with a real registry and
//! ingestion beside them: the records objected to are ingestion's, and ingestion hears the
//! disputes and repairs through the event bus.

use std::time::Duration;

use chrono::Days;
use prost::Message;
use secrecy::SecretString;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt;
use xinyong_domain::calendar::{Calendar, today};
use xinyong_ingestion::{IngestionSection, IngestionSettings};
use xinyong_objections::{ObjectionsSection, ObjectionsSettings};
use xinyong_platform::identity::{Caller, InternalInterceptor};
use xinyong_platform::testing::{Spawned, TestDatabase, connect_when_serving, http_get, redis_url};
use xinyong_proto::common::v1::{Nature, SubjectKind};
use xinyong_proto::events::v1::{Envelope, RecordDisputeChanged, RecordRepaired};
use xinyong_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use xinyong_proto::ingestion::v1::{
    CorrectRecordRequest, GetRecordHistoryRequest, GetRecordRequest, PenaltyKind, Record, RecordInput, RecordState,
    SubmitRecordRequest, WithdrawRecordRequest,
};
use xinyong_proto::objections::v1::objection_service_client::ObjectionServiceClient;
use xinyong_proto::objections::v1::{
    ApplyRepairRequest, DecideRepairRequest, FileObjectionRequest, GetObjectionRequest, GetRepairRequest,
    ListObjectionsRequest, ListRepairsRequest, Objection, ObjectionGround, ObjectionStatus, Repair, RepairStatus,
    RespondObjectionRequest,
};
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;
use xinyong_proto::registry::v1::{Entity, RegisterEntityRequest};
use xinyong_registry::{RegistrySection, RegistrySettings};

type Objections = ObjectionServiceClient<InterceptedService<Channel, InternalInterceptor>>;
type Ingestion = IngestionServiceClient<InterceptedService<Channel, InternalInterceptor>>;

const LENOVO: &str = "91110000600037341L";
const HUAWEI: &str = "9144030071526726XG";
/// Haidian market regulation: provides the records.
const MARKET: &str = "samr-110108";
/// The county credit office (县信用办): accepts objections and repair applications.
const OFFICE: &str = "credit-office";
const TAX: &str = "tax-110108";

struct App {
    objections_for: Box<dyn Fn(Caller) -> Objections + Send + Sync>,
    ingestion_for: Box<dyn Fn(Caller) -> Ingestion + Send + Sync>,
    pool: sqlx::PgPool,
    admin: std::net::SocketAddr,
    services: Vec<Spawned>,
    _database: TestDatabase,
}

impl App {
    fn objections(&self, department: &str) -> Objections {
        (self.objections_for)(Caller::new(department, vec![]))
    }

    fn ingestion(&self, department: &str) -> Ingestion {
        (self.ingestion_for)(Caller::new(department, vec![]))
    }

    async fn stop(self) {
        for service in self.services {
            service.stop().await;
        }
    }

    /// The events objections wrote, in order, of type `E`.
    async fn events<E: Message + Default>(&self, event_type: &str) -> Vec<E> {
        let envelopes: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT envelope FROM outbox WHERE event_type = $1 ORDER BY seq")
                .bind(format!("xinyong.events.v1.{event_type}"))
                .fetch_all(&self.pool)
                .await
                .unwrap();
        envelopes
            .iter()
            .map(|bytes| E::decode(Envelope::decode(bytes.as_slice()).unwrap().payload.as_slice()).unwrap())
            .collect()
    }

    /// The record as ingestion has it once `until` holds (ingestion hears objections by events).
    async fn record_when(&self, record_id: &str, until: impl Fn(&Record) -> bool) -> Record {
        let mut ingestion = self.ingestion(MARKET);
        let mut record = Record::default();
        for _ in 0..300 {
            let request = GetRecordRequest { record_id: record_id.into() };
            record = ingestion.get_record(request).await.unwrap().into_inner().record.unwrap();
            if until(&record) {
                return record;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("ingestion's record never reached the state expected: {record:?}");
    }
}

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
    let registry_service =
        Spawned::start(|listener, stop| xinyong_registry::run(registry_settings, listener, None, stop)).await;
    let registry_address = registry_service.address;
    let registry_channel = connect_when_serving(registry_address, "xinyong.registry.v1.RegistryService").await;
    let mut registry = RegistryServiceClient::with_interceptor(
        registry_channel,
        InternalInterceptor::new(&token, Some(Caller::new(MARKET, vec![]))).unwrap(),
    );
    for code in [LENOVO, HUAWEI] {
        let entity = Entity {
            credit_code: code.into(),
            name: format!("企业{code}"),
            kind: SubjectKind::Enterprise as i32,
            region_code: "110108".into(),
            industry_code: "C3911".into(),
            established_on: "1992-11-12".into(),
            ..Default::default()
        };
        registry.register_entity(RegisterEntityRequest { entity: Some(entity) }).await.unwrap();
    }

    let ingestion_settings = IngestionSettings {
        platform: database.settings("ingestion", &redis_url()),
        ingestion: IngestionSection {
            registry_url: format!("http://{registry_address}"),
            ..IngestionSection::default()
        },
    };
    let ingestion_service =
        Spawned::start(|listener, stop| xinyong_ingestion::run(ingestion_settings, listener, None, stop)).await;
    let ingestion_channel =
        connect_when_serving(ingestion_service.address, "xinyong.ingestion.v1.IngestionService").await;

    let objections_settings = ObjectionsSettings {
        platform: database.settings("objections", &redis_url()),
        objections: ObjectionsSection {
            ingestion_url: format!("http://{}", ingestion_service.address),
            overdue_count_seconds: 1,
            ..ObjectionsSection::default()
        },
    };
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = admin_listener.local_addr().unwrap();
    let objections_service = Spawned::start(|listener, stop| {
        xinyong_objections::run(objections_settings, listener, Some(admin_listener), stop)
    })
    .await;
    let channel = connect_when_serving(objections_service.address, "xinyong.objections.v1.ObjectionService").await;
    let objections_token = token.clone();
    App {
        objections_for: Box::new(move |caller| {
            ObjectionServiceClient::with_interceptor(
                channel.clone(),
                InternalInterceptor::new(&objections_token, Some(caller)).unwrap(),
            )
        }),
        ingestion_for: Box::new(move |caller| {
            IngestionServiceClient::with_interceptor(
                ingestion_channel.clone(),
                InternalInterceptor::new(&token, Some(caller)).unwrap(),
            )
        }),
        pool: database.pool_of("objections").await,
        admin,
        services: vec![objections_service, ingestion_service, registry_service],
        _database: database,
    }
}

fn days_ago(days: u64) -> String {
    today().checked_sub_days(Days::new(days)).unwrap().to_string()
}

/// A fine (general dishonesty) Haidian market regulation imposed on `code`, `age` days ago.
fn fine(code: &str, source: &str, age: u64) -> RecordInput {
    RecordInput {
        credit_code: code.into(),
        source_record_id: source.into(),
        category: "penalty".into(),
        decided_on: days_ago(age),
        document_number: format!("京海市监罚〔2026〕{source}号"),
        fields: [
            ("content", "罚款5000元"),
            ("legal_basis", "《食品安全法》第一百二十六条"),
            ("authority", "北京市海淀区市场监督管理局"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect(),
        penalty_kind: PenaltyKind::Fine as i32,
        ..Default::default()
    }
}

async fn submit(app: &App, input: RecordInput) -> Record {
    let request = SubmitRecordRequest { record: Some(input) };
    app.ingestion(MARKET).submit_record(request).await.unwrap().into_inner().record.unwrap()
}

fn objection(code: &str, record_id: &str, source: &str, statement: &str) -> FileObjectionRequest {
    FileObjectionRequest {
        credit_code: code.into(),
        record_id: record_id.into(),
        ground: ObjectionGround::Wrong as i32,
        statement: statement.into(),
        source_objection_id: source.into(),
    }
}

async fn file(app: &App, department: &str, request: FileObjectionRequest) -> Objection {
    app.objections(department).file_objection(request).await.unwrap().into_inner().objection.unwrap()
}

async fn respond(
    app: &App,
    department: &str,
    objection_id: &str,
    upheld: bool,
    answer: &str,
) -> Result<Objection, tonic::Status> {
    let request = RespondObjectionRequest { objection_id: objection_id.into(), upheld, answer: answer.into() };
    app.objections(department).respond_objection(request).await.map(|response| response.into_inner().objection.unwrap())
}

fn fields_of(status: &tonic::Status) -> Vec<String> {
    let details = status.get_details_bad_request().expect("INVALID_ARGUMENT carries the fields");
    details.field_violations.iter().map(|violation| violation.field.clone()).collect()
}

#[tokio::test]
async fn an_objection_goes_to_the_provider_and_keeps_the_record_disputed_until_the_last_is_answered() {
    let app = spawn_app().await;
    let record = submit(&app, fine(LENOVO, "F-1", 30)).await;

    let first = file(&app, OFFICE, objection(LENOVO, &record.record_id, "OB-1", "罚款对象有误")).await;
    assert_eq!(first.status, ObjectionStatus::Open as i32);
    assert_eq!((first.filed_by.as_str(), first.department_id.as_str()), (OFFICE, MARKET));
    assert_eq!(first.record_version, 1);
    let due = Calendar::official().add_working_days(today(), 3);
    assert_eq!(first.answer_due_on, due.to_string(), "3 working days (seed 001 三(三))");
    assert!(!first.overdue);

    // A retry is the same objection; the same id with other content is refused.
    let again = file(&app, OFFICE, objection(LENOVO, &record.record_id, "OB-1", "罚款对象有误")).await;
    assert_eq!(again.objection_id, first.objection_id);
    let reused = app
        .objections(OFFICE)
        .file_objection(objection(LENOVO, &record.record_id, "OB-1", "另一理由"))
        .await
        .unwrap_err();
    assert_eq!(reused.code(), Code::AlreadyExists, "{reused:?}");
    assert!(reused.message().contains("source_objection_id"), "{}", reused.message());

    // A second objection about the same record, by another department.
    let second = file(&app, TAX, objection(LENOVO, &record.record_id, "T-9", "金额有误")).await;
    let opened: Vec<RecordDisputeChanged> = app.events("RecordDisputeChanged").await;
    assert_eq!(opened.len(), 1, "the record is marked once: {opened:?}");
    assert!(
        opened[0].disputed && opened[0].record_id == record.record_id && opened[0].objection_id == first.objection_id
    );
    app.record_when(&record.record_id, |record| record.disputed).await;

    // Only the provider answers, and upholding needs the record changed.
    let stranger = respond(&app, TAX, &first.objection_id, false, "不予采纳").await.unwrap_err();
    assert_eq!(stranger.code(), Code::PermissionDenied, "{stranger:?}");
    assert!(stranger.message().contains(MARKET), "{}", stranger.message());
    let unchanged = respond(&app, MARKET, &first.objection_id, true, "已更正").await.unwrap_err();
    assert_eq!(unchanged.code(), Code::FailedPrecondition, "{unchanged:?}");
    assert!(unchanged.message().contains("CorrectRecord"), "{}", unchanged.message());

    // Rejecting the first leaves the record disputed: the second is still open.
    let rejected = respond(&app, MARKET, &first.objection_id, false, "经核查，信息无误").await.unwrap();
    assert_eq!(rejected.status, ObjectionStatus::Rejected as i32);
    assert_eq!(rejected.answered_by, MARKET);
    assert!(rejected.answered_at.is_some());
    assert_eq!(app.events::<RecordDisputeChanged>("RecordDisputeChanged").await.len(), 1);
    let retried = respond(&app, MARKET, &first.objection_id, false, "经核查，信息无误").await.unwrap();
    assert_eq!(retried.objection_id, first.objection_id, "the same answer again is a retry");
    let changed_mind = respond(&app, MARKET, &first.objection_id, true, "改判").await.unwrap_err();
    assert_eq!(changed_mind.code(), Code::FailedPrecondition);
    assert!(changed_mind.message().contains("rejected already"), "{}", changed_mind.message());

    // The provider corrects the record; now the second can be upheld, and the dispute ends.
    let mut corrected = fine(LENOVO, "F-1", 30);
    corrected.fields.insert("content".into(), "罚款3000元".into());
    let request = CorrectRecordRequest {
        record_id: record.record_id.clone(),
        record: Some(corrected),
        reason: "异议成立".into(),
    };
    app.ingestion(MARKET).correct_record(request).await.unwrap();
    let upheld = respond(&app, MARKET, &second.objection_id, true, "金额已更正").await.unwrap();
    assert_eq!(upheld.status, ObjectionStatus::Upheld as i32);
    let changes: Vec<RecordDisputeChanged> = app.events("RecordDisputeChanged").await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(!changes[1].disputed && changes[1].objection_id == second.objection_id);
    app.record_when(&record.record_id, |record| !record.disputed).await;

    // Who sees what.
    let filer =
        app.objections(TAX).get_objection(GetObjectionRequest { objection_id: second.objection_id.clone() }).await;
    assert_eq!(filer.unwrap().into_inner().objection.unwrap().answer, "金额已更正");
    let outsider = app
        .objections("court-110108")
        .get_objection(GetObjectionRequest { objection_id: first.objection_id.clone() })
        .await;
    assert_eq!(outsider.unwrap_err().code(), Code::PermissionDenied);
    let list = |department: &str, request: ListObjectionsRequest| {
        let mut client = app.objections(department);
        async move { client.list_objections(request).await.unwrap().into_inner() }
    };
    let to_answer = list(MARKET, ListObjectionsRequest { to_answer: true, ..Default::default() }).await;
    assert_eq!(to_answer.objections.len(), 2);
    assert_eq!(list(OFFICE, ListObjectionsRequest::default()).await.objections.len(), 1);
    assert!(list("court-110108", ListObjectionsRequest::default()).await.objections.is_empty());
    let admin = (app.objections_for)(Caller::new("platform-admin", vec!["admin".into()]));
    let all = admin.clone().list_objections(ListObjectionsRequest::default()).await.unwrap().into_inner();
    assert_eq!(all.objections.len(), 2);
    let upheld_only = ListObjectionsRequest { statuses: vec![ObjectionStatus::Upheld as i32], ..Default::default() };
    let upheld_list = list(MARKET, upheld_only).await.objections;
    assert_eq!(upheld_list.iter().map(|o| o.objection_id.as_str()).collect::<Vec<_>>(), [second.objection_id.as_str()]);
    let first_page = list(MARKET, ListObjectionsRequest { page_size: 1, ..Default::default() }).await;
    assert_eq!(first_page.objections[0].objection_id, first.objection_id, "in filing order");
    let next = ListObjectionsRequest { page_size: 1, page_token: first_page.next_page_token, ..Default::default() };
    let second_page = list(MARKET, next).await;
    assert_eq!(second_page.objections[0].objection_id, second.objection_id);
    assert!(second_page.next_page_token.is_empty());
    let other_subject = ListObjectionsRequest { credit_code: HUAWEI.into(), ..Default::default() };
    assert!(admin.clone().list_objections(other_subject).await.unwrap().into_inner().objections.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_late_answer_shows_as_overdue_and_in_the_metrics() {
    let app = spawn_app().await;
    let record = submit(&app, fine(LENOVO, "F-2", 30)).await;
    let filed = file(&app, OFFICE, objection(LENOVO, &record.record_id, "OB-2", "非本企业行为")).await;
    sqlx::query("UPDATE objections SET answer_due_on = $2 WHERE objection_id = $1::uuid")
        .bind(&filed.objection_id)
        .bind(today().pred_opt().unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
    let request = GetObjectionRequest { objection_id: filed.objection_id.clone() };
    assert!(app.objections(OFFICE).get_objection(request).await.unwrap().into_inner().objection.unwrap().overdue);
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = http_get(app.admin, "/metrics").await;
        if metrics.lines().any(|line| line.starts_with("xinyong_objections_overdue{") && line.ends_with(" 1")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metrics.lines().any(|line| line.starts_with("xinyong_objections_overdue{") && line.ends_with(" 1")),
        "{metrics}"
    );
    respond(&app, MARKET, &filed.objection_id, false, "信息无误").await.unwrap();
    let request = GetObjectionRequest { objection_id: filed.objection_id.clone() };
    assert!(!app.objections(OFFICE).get_objection(request).await.unwrap().into_inner().objection.unwrap().overdue);
    app.stop().await;
}

#[tokio::test]
async fn bad_filings_name_the_field_and_only_records_in_force_of_that_subject_are_objected_to() {
    let app = spawn_app().await;
    let mut objections = app.objections(OFFICE);
    let empty = objections.file_objection(FileObjectionRequest::default()).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert_eq!(fields_of(&empty), ["credit_code", "record_id", "ground", "statement", "source_objection_id"]);
    let long = FileObjectionRequest { statement: "长".repeat(2001), ..objection(LENOVO, "x", "S", "") };
    let long = objections.file_objection(long).await.unwrap_err();
    assert_eq!(fields_of(&long), ["record_id", "statement"]);

    let unknown = objection(LENOVO, "0190f3a2-7c1e-7000-8000-000000000001", "S-1", "不存在");
    let unknown = objections.file_objection(unknown).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert!(unknown.message().contains("0190f3a2-7c1e-7000-8000-000000000001"), "{}", unknown.message());

    let record = submit(&app, fine(LENOVO, "F-3", 30)).await;
    let elsewhere = objections.file_objection(objection(HUAWEI, &record.record_id, "S-2", "错误")).await.unwrap_err();
    assert_eq!(fields_of(&elsewhere), ["record_id"]);

    let request = WithdrawRecordRequest { record_id: record.record_id.clone(), reason: "录入错误".into() };
    app.ingestion(MARKET).withdraw_record(request).await.unwrap();
    let withdrawn = objections.file_objection(objection(LENOVO, &record.record_id, "S-3", "错误")).await.unwrap_err();
    assert_eq!(withdrawn.code(), Code::FailedPrecondition);
    assert!(withdrawn.message().contains("withdrawn"), "{}", withdrawn.message());
    assert!(app.events::<RecordDisputeChanged>("RecordDisputeChanged").await.is_empty());

    let bad_answer = RespondObjectionRequest { objection_id: "nope".into(), ..Default::default() };
    let bad_answer = objections.respond_objection(bad_answer).await.unwrap_err();
    assert_eq!(fields_of(&bad_answer), ["objection_id", "answer"]);
    let page = ListObjectionsRequest { page_size: 501, ..Default::default() };
    assert_eq!(fields_of(&objections.list_objections(page).await.unwrap_err()), ["page_size"]);
    app.stop().await;
}

async fn apply(app: &App, department: &str, request: ApplyRepairRequest) -> Result<Repair, tonic::Status> {
    app.objections(department).apply_repair(request).await.map(|response| response.into_inner().repair.unwrap())
}

fn application(record_id: &str, source: &str) -> ApplyRepairRequest {
    ApplyRepairRequest {
        credit_code: LENOVO.into(),
        record_id: record_id.into(),
        commitment: "本企业承诺已整改到位，今后依法经营".into(),
        evidence: vec!["整改报告 2026-09-01".into(), "信用修复培训证明 No.88".into()],
        source_repair_id: source.into(),
    }
}

async fn decide(
    app: &App,
    caller: Caller,
    repair_id: &str,
    approved: bool,
    decision: &str,
) -> Result<Repair, tonic::Status> {
    let request = DecideRepairRequest { repair_id: repair_id.into(), approved, decision: decision.into() };
    (app.objections_for)(caller).decide_repair(request).await.map(|response| response.into_inner().repair.unwrap())
}

#[tokio::test]
async fn a_repair_approved_by_the_provider_ends_the_record_and_ingestion_keeps_the_trace() {
    let app = spawn_app().await;
    // A general-dishonesty fine 200 days old: past its minimum period of 3 months.
    let old = submit(&app, fine(LENOVO, "F-OLD", 200)).await;
    assert_eq!(old.nature, Nature::GeneralDishonesty as i32);
    let recent = submit(&app, fine(LENOVO, "F-NEW", 10)).await;

    let early = apply(&app, OFFICE, application(&recent.record_id, "R-0")).await.unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);
    assert!(early.message().contains(&recent.repair_allowed_from), "{}", early.message());
    let empty = apply(&app, OFFICE, ApplyRepairRequest { evidence: vec![String::new()], ..Default::default() });
    assert_eq!(
        fields_of(&empty.await.unwrap_err()),
        ["credit_code", "record_id", "commitment", "evidence[0]", "source_repair_id"]
    );

    let pending = apply(&app, OFFICE, application(&old.record_id, "R-1")).await.unwrap();
    assert_eq!(pending.status, RepairStatus::Pending as i32);
    assert_eq!((pending.applied_by.as_str(), pending.department_id.as_str()), (OFFICE, MARKET));
    assert_eq!(apply(&app, OFFICE, application(&old.record_id, "R-1")).await.unwrap().repair_id, pending.repair_id);
    let twice = apply(&app, OFFICE, application(&old.record_id, "R-2")).await.unwrap_err();
    assert_eq!(twice.code(), Code::AlreadyExists);
    assert!(twice.message().contains(&pending.repair_id), "{}", twice.message());

    let to_decide = ListRepairsRequest { to_decide: true, ..Default::default() };
    let listed = app.objections(MARKET).list_repairs(to_decide).await.unwrap().into_inner().repairs;
    assert_eq!(listed.iter().map(|r| r.repair_id.as_str()).collect::<Vec<_>>(), [pending.repair_id.as_str()]);
    assert!(
        app.objections(TAX).list_repairs(ListRepairsRequest::default()).await.unwrap().into_inner().repairs.is_empty()
    );

    let stranger = decide(&app, Caller::new(TAX, vec![]), &pending.repair_id, true, "同意").await.unwrap_err();
    assert_eq!(stranger.code(), Code::PermissionDenied);
    assert!(stranger.message().contains("credit_repair"), "{}", stranger.message());
    let approved =
        decide(&app, Caller::new(MARKET, vec![]), &pending.repair_id, true, "整改到位，同意修复").await.unwrap();
    assert_eq!(approved.status, RepairStatus::Approved as i32);
    assert_eq!(approved.decided_by, MARKET);
    let refused_late =
        decide(&app, Caller::new(MARKET, vec![]), &pending.repair_id, false, "不同意").await.unwrap_err();
    assert_eq!(refused_late.code(), Code::FailedPrecondition);

    let repaired: Vec<RecordRepaired> = app.events("RecordRepaired").await;
    assert_eq!(repaired.len(), 1);
    assert_eq!(
        (repaired[0].record_id.as_str(), repaired[0].repair_id.as_str()),
        (old.record_id.as_str(), pending.repair_id.as_str())
    );
    let record = app.record_when(&old.record_id, |record| record.state == RecordState::Repaired as i32).await;
    assert_eq!(record.version, 2);
    let history = app
        .ingestion(MARKET)
        .get_record_history(GetRecordHistoryRequest { record_id: old.record_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .versions;
    let last = history.last().unwrap();
    assert_eq!((last.change.as_str(), last.changed_by.as_str()), ("repaired", "objections"));
    assert!(last.reason.contains(&pending.repair_id), "{last:?}");
    let request = CorrectRecordRequest {
        record_id: old.record_id.clone(),
        record: Some(fine(LENOVO, "F-OLD", 200)),
        reason: "x".into(),
    };
    let frozen = app.ingestion(MARKET).correct_record(request).await.unwrap_err();
    assert_eq!(frozen.code(), Code::FailedPrecondition);
    assert!(frozen.message().contains("repaired"), "{}", frozen.message());
    let again = apply(&app, OFFICE, application(&old.record_id, "R-3")).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");

    // A credit office may decide too, and a refusal announces nothing.
    let other = submit(&app, fine(LENOVO, "F-OTHER", 150)).await;
    let second = apply(&app, TAX, application(&other.record_id, "T-R")).await.unwrap();
    let office = Caller::new(OFFICE, vec!["credit_repair".into()]);
    let refused = decide(&app, office.clone(), &second.repair_id, false, "整改材料不全").await.unwrap();
    assert_eq!(refused.status, RepairStatus::Refused as i32);
    assert_eq!(app.events::<RecordRepaired>("RecordRepaired").await.len(), 1);
    let seen = (app.objections_for)(office).get_repair(GetRepairRequest { repair_id: second.repair_id.clone() }).await;
    assert_eq!(seen.unwrap().into_inner().repair.unwrap().decision, "整改材料不全");
    app.stop().await;
}
