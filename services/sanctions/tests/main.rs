//! Sanctions over real gRPC against real Postgres and Redis: the catalogue and check on every
//! handling (逢办必查), fed by grade events put on the bus as grading's relay would.

use std::time::Duration;

use chrono::{Datelike, Days};
use secrecy::ExposeSecret;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt;
use xinyong_domain::calendar::Calendar;
use xinyong_platform::PlatformSettings;
use xinyong_platform::identity::{Caller, InternalInterceptor};
use xinyong_platform::testing::{
    Spawned, TcpProxy, TestDatabase, connect_when_serving, publish_event, redis_address, redis_url,
};
use xinyong_proto::common::v1::{DateRange, Grade, ListKind};
use xinyong_proto::events::v1::{
    EntitiesRegistered, EntityRegistered, EntityUpdated, GradeChanged, GradeReason, GradesChanged, ListingChanged,
    RecordIngested, RecordRepaired, RecordWithdrawn,
};
use xinyong_proto::sanctions::v1::sanctions_service_client::SanctionsServiceClient;
use xinyong_proto::sanctions::v1::{
    CheckEntityRequest, CheckEntityResponse, ClaimTaskRequest, CompleteTaskRequest, GetOverdueRequest,
    GetSubjectSanctionsRequest, GetSubjectSanctionsResponse, GetTaskStatisticsRequest, ListMeasuresRequest,
    ListTasksRequest, MatterType, Measure, MeasureHandling, MeasureTarget, PushLeadRequest, ReportHandlingRequest,
    ReturnTaskRequest, ServeNoticeRequest, Task, TaskKind, TaskStatus, UpsertMeasureRequest,
};
use xinyong_sanctions::listings;
use xinyong_sanctions::{SanctionsSection, SanctionsSettings};

type Client = SanctionsServiceClient<InterceptedService<Channel, InternalInterceptor>>;

const SUBJECT: &str = "91110000600037341L";
const RECORD: &str = "0190f3a2-7c1e-7000-8000-000000000001";

struct App {
    client_for: Box<dyn Fn(Caller) -> Client + Send + Sync>,
    market: Client,
    finance: Client,
    risk_office: Client,
    settings: PlatformSettings,
    pool: sqlx::PgPool,
    /// The admin port (`/metrics`).
    admin: std::net::SocketAddr,
    service: Spawned,
    _database: TestDatabase,
}

async fn spawn_app(adjust: impl FnOnce(&mut SanctionsSettings)) -> App {
    spawn_app_in(TestDatabase::new().await, adjust).await
}

async fn spawn_app_in(database: TestDatabase, adjust: impl FnOnce(&mut SanctionsSettings)) -> App {
    let mut settings = SanctionsSettings {
        platform: database.settings("sanctions", &redis_url()),
        sanctions: SanctionsSection::default(),
    };
    adjust(&mut settings);
    let platform = settings.platform.clone();
    let token = platform.internal.token.clone();
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = admin_listener.local_addr().unwrap();
    let service =
        Spawned::start(|listener, stop| xinyong_sanctions::run(settings, listener, Some(admin_listener), stop)).await;
    let channel = connect_when_serving(service.address, "xinyong.sanctions.v1.SanctionsService").await;
    let client_for: Box<dyn Fn(Caller) -> Client + Send + Sync> = Box::new(move |caller: Caller| {
        SanctionsServiceClient::with_interceptor(
            channel.clone(),
            InternalInterceptor::new(&token, Some(caller)).unwrap(),
        )
    });
    let client = |caller: Caller| client_for(caller);
    App {
        market: client(Caller::new("samr-110108", vec![])),
        finance: client(Caller::new("finance-110108", vec![])),
        risk_office: client(Caller::new("risk-office", vec!["internal_grades".into()])),
        pool: database.pool_of("sanctions").await,
        settings: platform,
        admin,
        service,
        client_for,
        _database: database,
    }
}

fn graded(scheme: &str, grade: Grade, disputed: &[&str]) -> GradeChanged {
    GradeChanged {
        credit_code: SUBJECT.into(),
        scheme: scheme.into(),
        old_grade: 0,
        new_grade: grade as i32,
        rule_set_version: 1,
        reasons: vec![GradeReason {
            code: "serious_dishonesty".into(),
            text: "存在严重失信行为记录".into(),
            record_ids: vec![RECORD.into()],
            disputed_record_ids: disputed.iter().map(|id| id.to_string()).collect(),
        }],
        internal: scheme != "public_credit" && scheme != "district_supervision",
    }
}

async fn check(client: &Client, matter: MatterType) -> CheckEntityResponse {
    client
        .clone()
        .check_entity(CheckEntityRequest { credit_code: SUBJECT.into(), matter_type: matter as i32 })
        .await
        .unwrap()
        .into_inner()
}

/// Check until the answer shows `grade` under `public_credit` (the event travels through Redis).
async fn check_when(client: &Client, matter: MatterType, grade: Grade) -> CheckEntityResponse {
    let mut last = None;
    for _ in 0..200 {
        let answer = check(client, matter).await;
        if answer.grades.iter().any(|g| g.scheme == "public_credit" && g.grade == grade as i32) {
            return answer;
        }
        last = Some(answer);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never checked {grade:?}: {last:?}");
}

/// Check until the answer satisfies `done`: a task written in the event's transaction can be seen
/// a moment before the read model is refreshed after that transaction's commit.
async fn check_until(
    client: &Client,
    matter: MatterType,
    done: impl Fn(&CheckEntityResponse) -> bool,
) -> CheckEntityResponse {
    let mut last = None;
    for _ in 0..500 {
        let answer = check(client, matter).await;
        if done(&answer) {
            return answer;
        }
        last = Some(answer);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the check never came to what the test waits for: {last:?}");
}

fn codes(answer: &CheckEntityResponse) -> Vec<&str> {
    answer.measures.iter().map(|measure| measure.code.as_str()).collect()
}

#[tokio::test]
async fn a_subject_graded_c_gets_the_measures_for_the_asking_department_and_matter_and_loses_them_at_once() {
    let app = spawn_app(|_| {}).await;
    // Before any grade: nothing to apply, and the check is still recorded.
    let unknown = check(&app.market, MatterType::Procurement).await;
    assert!(unknown.grades.is_empty() && unknown.measures.is_empty());

    publish_event(&app.settings, "grading", &graded("public_credit", Grade::C, &[])).await;
    let procurement = check_when(&app.market, MatterType::Procurement, Grade::C).await;
    assert_eq!(codes(&procurement), ["c-procurement-restrict"]);
    assert_eq!(procurement.measures[0].source, "000 art. 11(3)");
    assert!(!procurement.measures[0].title.is_empty() && !procurement.measures[0].legal_basis.is_empty());
    // What made it apply is the catalogue's business, not the answer's.
    let listed = &procurement.measures[0];
    assert!(listed.executing_departments.is_empty() && listed.grades.is_empty() && listed.matter_types.is_empty());
    assert_eq!(codes(&check(&app.market, MatterType::Licensing).await), ["c-licensing-restrict"]);
    assert_eq!(codes(&check(&app.market, MatterType::Honours).await), ["c-honours-restrict"]);

    // A measure only market regulation executes.
    let own = Measure {
        code: "c-food-licence-review".into(),
        title: "食品经营许可从严审查".into(),
        legal_basis: "《食品经营许可管理办法》".into(),
        source: "deployment".into(),
        executing_departments: vec!["samr-110108".into()],
        grades: vec![Grade::C as i32, Grade::D as i32],
        target: MeasureTarget::Organisation as i32,
        matter_types: vec![MatterType::Licensing as i32],
        ..Default::default()
    };
    let saved = app.market.clone().upsert_measure(UpsertMeasureRequest { measure: Some(own) }).await.unwrap();
    assert!(saved.into_inner().created);
    assert_eq!(
        codes(&check(&app.market, MatterType::Licensing).await),
        ["c-food-licence-review", "c-licensing-restrict"]
    );
    let finance = check(&app.finance, MatterType::Licensing).await;
    assert_eq!(codes(&finance), ["c-licensing-restrict"]);

    // The grade improves: the restrictions stop applying in the next check.
    publish_event(&app.settings, "grading", &graded("public_credit", Grade::A, &[])).await;
    let priority = check_when(&app.market, MatterType::Procurement, Grade::A).await;
    assert_eq!(codes(&priority), ["a-procurement-priority"]);
    assert!(priority.measures[0].incentive);
    let last = check(&app.market, MatterType::Licensing).await;
    assert!(codes(&last).is_empty());

    // Every check was stored with who asked and what was answered. The log writes just after the
    // answer, so the test waits for these checks by id: the polling checks above are stored too,
    // and a count could be reached before the ones that matter are in.
    stored_ids(&app.pool, &[unknown.check_id.clone(), finance.check_id.clone(), last.check_id.clone()]).await;
    let stored: Vec<(String, i16)> =
        sqlx::query_as("SELECT department_id, matter_type FROM checks WHERE credit_code = $1 ORDER BY checked_at")
            .bind(SUBJECT)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(stored.len() >= 7, "{stored:?}");
    assert!(stored.iter().any(|(department, _)| department == "finance-110108"));
    // Each distinct answer is stored once, and every check finds its own.
    let (checks, answers, orphans): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM checks), (SELECT count(*) FROM check_answers),
                (SELECT count(*) FROM checks c WHERE NOT EXISTS
                    (SELECT 1 FROM check_answers a WHERE a.digest = c.answer_digest))",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0, "a check without its answer");
    assert!(answers < checks, "{answers} answers stored for {checks} checks: repeated answers are shared");
    app.service.stop().await;
}

#[tokio::test]
async fn not_applied_needs_a_reason_every_measure_is_reported_and_a_report_is_final() {
    let app = spawn_app(|_| {}).await;
    publish_event(&app.settings, "grading", &graded("public_credit", Grade::D, &[])).await;
    let answer = check_when(&app.market, MatterType::Bidding, Grade::D).await;
    assert_eq!(codes(&answer), ["bl-public-resources-restrict", "c-procurement-restrict"]);
    let report =
        |handlings: Vec<MeasureHandling>| ReportHandlingRequest { check_id: answer.check_id.clone(), handlings };
    let applied = |code: &str| MeasureHandling { measure_code: code.into(), applied: true, reason: String::new() };

    let no_reason = vec![
        applied("bl-public-resources-restrict"),
        MeasureHandling { measure_code: "c-procurement-restrict".into(), applied: false, reason: " ".into() },
    ];
    let refused = app.market.clone().report_handling(report(no_reason)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let fields: Vec<String> =
        refused.get_error_details().bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
    assert_eq!(fields, ["handlings[1].reason"]);

    let partial =
        app.market.clone().report_handling(report(vec![applied("c-procurement-restrict")])).await.unwrap_err();
    assert!(partial.message().contains("missing: bl-public-resources-restrict"), "{}", partial.message());
    let stranger = app.market.clone().report_handling(report(vec![applied("c-honours-restrict")])).await.unwrap_err();
    assert!(stranger.message().contains("not among the check's measures"), "{}", stranger.message());
    let other_department =
        app.finance.clone().report_handling(report(vec![applied("c-procurement-restrict")])).await.unwrap_err();
    assert_eq!(other_department.code(), Code::PermissionDenied);

    let full = vec![
        applied("bl-public-resources-restrict"),
        MeasureHandling {
            measure_code: "c-procurement-restrict".into(),
            applied: false,
            reason: "已由上级采购中心处理".into(),
        },
    ];
    assert!(app.market.clone().report_handling(report(full.clone())).await.unwrap().into_inner().recorded);
    assert!(app.market.clone().report_handling(report(full)).await.unwrap().into_inner().recorded, "a retry");
    let changed = vec![applied("bl-public-resources-restrict"), applied("c-procurement-restrict")];
    let final_report = app.market.clone().report_handling(report(changed)).await.unwrap_err();
    assert_eq!(final_report.code(), Code::FailedPrecondition);
    let stored: Vec<(String, bool, String)> =
        sqlx::query_as("SELECT measure_code, applied, reason FROM handlings ORDER BY measure_code")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored[1], ("c-procurement-restrict".to_owned(), false, "已由上级采购中心处理".to_owned()));
    // The stored check is what was answered: every column as the binary COPY wrote it.
    type Stored = (String, String, i16, serde_json::Value, chrono::DateTime<chrono::Utc>, Option<chrono::NaiveDate>);
    let (code, department, matter, stored_answer, checked_at, due): Stored = sqlx::query_as(
        "SELECT c.credit_code, c.department_id, c.matter_type, a.answer::jsonb, c.checked_at, c.report_due_on
         FROM checks c JOIN check_answers a ON a.digest = c.answer_digest WHERE c.check_id = $1::uuid",
    )
    .bind(&answer.check_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((code.as_str(), department.as_str()), (answer.credit_code.as_str(), "samr-110108"));
    assert_eq!(matter, MatterType::Bidding as i16);
    assert_eq!(
        stored_answer["measures"],
        serde_json::json!(["bl-public-resources-restrict", "c-procurement-restrict"])
    );
    let answered_at = answer.checked_at.unwrap();
    assert_eq!(
        (checked_at.timestamp(), checked_at.timestamp_subsec_micros()),
        (answered_at.seconds, answered_at.nanos as u32 / 1000),
        "stored to the microsecond it was answered"
    );
    // Five working days from the day of the check (which may have been yesterday, at midnight).
    let today = xinyong_domain::calendar::today();
    let owed = [today, today.pred_opt().unwrap()].map(|day| Some(Calendar::official().add_working_days(day, 5)));
    assert!(owed.contains(&due), "a check with measures owes a report: {due:?}");
    app.service.stop().await;
}

#[tokio::test]
async fn internal_grades_are_hidden_and_disputed_records_are_marked() {
    let app = spawn_app(|_| {}).await;
    publish_event(&app.settings, "grading", &graded("public_credit", Grade::C, &[RECORD])).await;
    publish_event(&app.settings, "grading", &graded("food_industry_risk", Grade::D, &[])).await;
    let plain = check_when(&app.market, MatterType::Filing, Grade::C).await;
    assert_eq!(plain.disputed_record_ids, [RECORD], "a disputed record still counts and is marked");
    let mut seen = None;
    for _ in 0..200 {
        let answer = check(&app.risk_office, MatterType::Filing).await;
        if answer.grades.len() == 2 {
            seen = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(seen.is_some(), "the risk office sees the internal scheme");
    let plain = check(&app.market, MatterType::Filing).await;
    assert_eq!(plain.grades.iter().map(|g| g.scheme.as_str()).collect::<Vec<_>>(), ["public_credit"]);
    app.service.stop().await;
}

#[tokio::test]
async fn check_entity_keeps_answering_with_redis_stopped() {
    let proxy = TcpProxy::start(redis_address(&redis_url())).await;
    let proxied = format!("redis://{}", proxy.address);
    let app = spawn_app(|settings| {
        settings.platform.redis.url = secrecy::SecretString::from(proxied.clone());
        // No in-process copy: every check goes to Redis, then Postgres.
        settings.sanctions.local_cache_ms = 0;
    })
    .await;
    publish_event(&app.settings, "grading", &graded("public_credit", Grade::C, &[])).await;
    check_when(&app.market, MatterType::Procurement, Grade::C).await;
    proxy.cut().await;
    let answer = tokio::time::timeout(Duration::from_secs(2), check(&app.market, MatterType::Procurement))
        .await
        .expect("an answer without Redis");
    assert_eq!(codes(&answer), ["c-procurement-restrict"]);
    app.service.stop().await;
}

/// Wait until every check of `ids` is stored.
async fn stored_ids(pool: &sqlx::PgPool, ids: &[String]) {
    let mut missing = Vec::new();
    for _ in 0..600 {
        missing = missing_checks(pool, ids).await;
        if missing.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("checks {missing:?} never stored");
}

/// Those of `ids` not stored.
async fn missing_checks(pool: &sqlx::PgPool, ids: &[String]) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT id FROM unnest($1::text[]) AS id WHERE NOT EXISTS (SELECT 1 FROM checks WHERE check_id = id::uuid)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn checks_answered_while_postgres_is_away_are_stored_when_it_is_back() {
    let database = TestDatabase::new().await;
    // postgres://user:password@host:port/database: the service reaches host:port through a proxy.
    let direct = database.settings("sanctions", &redis_url()).database.url.expose_secret().to_owned();
    let (head, rest) = direct.rsplit_once('@').unwrap();
    let (host, tail) = rest.split_once('/').unwrap();
    let postgres = tokio::net::lookup_host(host).await.unwrap().next().unwrap();
    let proxy = TcpProxy::start(postgres).await;
    let at = proxy.address;
    let proxied = format!("{head}@{at}/{tail}");
    let app = spawn_app_in(database, |settings| {
        settings.platform.database.url = secrecy::SecretString::from(proxied);
    })
    .await;
    publish_event(&app.settings, "grading", &graded("public_credit", Grade::C, &[])).await;
    check_when(&app.market, MatterType::Procurement, Grade::C).await;

    // Postgres is away: the in-process copy still answers, and the answers are not forgotten.
    proxy.cut().await;
    let mut answered = Vec::new();
    for _ in 0..5 {
        let answer = check(&app.market, MatterType::Procurement).await;
        assert_eq!(codes(&answer), ["c-procurement-restrict"]);
        answered.push(answer.check_id);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(missing_checks(&app.pool, &answered).await.len(), 5, "nothing can be stored yet");
    let _back = TcpProxy::start_at(at, postgres).await;
    stored_ids(&app.pool, &answered).await;
    app.service.stop().await;
}

#[tokio::test]
async fn a_shutdown_stores_every_check_it_answered() {
    let app = spawn_app(|_| {}).await;
    publish_event(&app.settings, "grading", &graded("public_credit", Grade::C, &[])).await;
    check_when(&app.market, MatterType::Procurement, Grade::C).await;
    let calls: Vec<_> = (0..200).map(|_| check(&app.market, MatterType::Licensing)).collect();
    let answered: Vec<String> =
        futures::future::join_all(calls).await.into_iter().map(|answer| answer.check_id).collect();
    app.service.stop().await;
    assert_eq!(missing_checks(&app.pool, &answered).await, Vec::<String>::new());
}

#[tokio::test]
async fn bad_input_names_the_field() {
    let app = spawn_app(|_| {}).await;
    let bad = app
        .market
        .clone()
        .check_entity(CheckEntityRequest { credit_code: "9111000060003734".into(), matter_type: 0 })
        .await
        .unwrap_err();
    let fields: Vec<String> =
        bad.get_error_details().bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
    assert_eq!(fields, ["credit_code", "matter_type"]);
    let measure = Measure { code: "Bad Code".into(), target: 0, ..Default::default() };
    let refused = app.market.clone().upsert_measure(UpsertMeasureRequest { measure: Some(measure) }).await.unwrap_err();
    let fields: Vec<String> =
        refused.get_error_details().bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
    assert_eq!(
        fields,
        ["measure.code", "measure.title", "measure.legal_basis", "measure.source", "measure.grades", "measure.target"]
    );
    let catalogue = app
        .market
        .clone()
        .list_measures(ListMeasuresRequest { grade: Grade::D as i32, matter_type: MatterType::Practice as i32 })
        .await
        .unwrap()
        .into_inner()
        .measures;
    let codes: Vec<&str> = catalogue.iter().map(|m| m.code.as_str()).collect();
    assert_eq!(codes, ["bl-rep-practice-suspend", "d-business-prohibit"]);
    assert_eq!(catalogue[0].target, MeasureTarget::LegalRepresentative as i32, "seed 004 lists both kinds");
    app.service.stop().await;
}

async fn tasks_of(client: &Client, kinds: &[TaskKind]) -> Vec<Task> {
    client
        .clone()
        .list_tasks(ListTasksRequest { kinds: kinds.iter().map(|kind| *kind as i32).collect(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .tasks
}

async fn tasks_when(client: &Client, kinds: &[TaskKind], count: usize) -> Vec<Task> {
    for _ in 0..200 {
        let tasks = tasks_of(client, kinds).await;
        if tasks.len() >= count {
            return tasks;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never {count} tasks of {kinds:?}: {:?}", tasks_of(client, kinds).await);
}

fn joint_procurement_ban() -> Measure {
    Measure {
        code: "c-joint-procurement-ban".into(),
        title: "限制参加政府采购".into(),
        legal_basis: "《政府采购法》第二十二条".into(),
        source: "000 art. 11(3)".into(),
        executing_departments: vec!["samr-110108".into(), "finance-110108".into()],
        grades: vec![Grade::C as i32, Grade::D as i32],
        target: MeasureTarget::Organisation as i32,
        matter_types: vec![MatterType::Procurement as i32],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_c_grade_pushes_each_executing_department_once_and_an_improvement_lifts_every_push() {
    let app = spawn_app(|_| {}).await;
    app.market.clone().upsert_measure(UpsertMeasureRequest { measure: Some(joint_procurement_ban()) }).await.unwrap();
    publish_event(&app.settings, "grading", &graded("public_credit", Grade::C, &[])).await;
    let pushed = tasks_when(&app.market, &[TaskKind::Sanction], 1).await;
    assert_eq!(pushed.len(), 1);
    assert_eq!(
        (pushed[0].measure_code.as_str(), pushed[0].status),
        ("c-joint-procurement-ban", TaskStatus::Open as i32)
    );
    let due = chrono::NaiveDate::parse_from_str(&pushed[0].due_on, "%Y-%m-%d").unwrap();
    let expected = Calendar::official().add_working_days(xinyong_domain::calendar::today(), 15);
    assert_eq!(due, expected, "15 working days (seed 002 art. 9)");
    assert_eq!(tasks_when(&app.finance, &[TaskKind::Sanction], 1).await.len(), 1);

    // The same grade again, then D (the measure still applies): nothing new.
    publish_event(&app.settings, "grading", &graded("public_credit", Grade::C, &[])).await;
    publish_event(
        &app.settings,
        "grading",
        &GradesChanged { grades: vec![graded("public_credit", Grade::D, &[])], reason_texts: vec![] },
    )
    .await;
    check_when(&app.market, MatterType::Procurement, Grade::D).await;
    assert_eq!(tasks_of(&app.market, &[TaskKind::Sanction]).await.len(), 1, "pushed once");

    // Feedback on execution: only by the department, with words, once.
    let task_id = pushed[0].task_id.clone();
    let (mut market, mut finance) = (app.market.clone(), app.finance.clone());
    let empty = market.complete_task(CompleteTaskRequest { task_id: task_id.clone(), feedback: " ".into() }).await;
    assert_eq!(empty.unwrap_err().get_error_details().bad_request().unwrap().field_violations[0].field, "feedback");
    let stranger =
        finance.complete_task(CompleteTaskRequest { task_id: task_id.clone(), feedback: "已执行".into() }).await;
    assert_eq!(stranger.unwrap_err().code(), Code::PermissionDenied);
    let done = app
        .market
        .clone()
        .complete_task(CompleteTaskRequest { task_id: task_id.clone(), feedback: "已限制其投标资格".into() })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(done.status, TaskStatus::Completed as i32);
    let late_return =
        market.return_task(ReturnTaskRequest { task_id: task_id.clone(), reason: "非本部门职责".into() });
    assert_eq!(late_return.await.unwrap_err().code(), Code::FailedPrecondition);

    // The grade improves: every department that was pushed the measure is told to stop.
    publish_event(&app.settings, "grading", &graded("public_credit", Grade::A, &[])).await;
    let lifts = tasks_when(&app.market, &[TaskKind::Lift], 1).await;
    assert_eq!(lifts[0].measure_code, "c-joint-procurement-ban");
    assert_eq!(tasks_when(&app.finance, &[TaskKind::Lift], 1).await.len(), 1);
    check_until(&app.market, MatterType::Procurement, |answer| !codes(answer).contains(&"c-joint-procurement-ban"))
        .await;

    // Falling again is a new episode: a new push.
    publish_event(&app.settings, "grading", &graded("public_credit", Grade::C, &[])).await;
    assert_eq!(tasks_when(&app.market, &[TaskKind::Sanction], 2).await.len(), 2);
    app.service.stop().await;
}

#[tokio::test]
async fn a_lead_reaches_each_department_about_each_subject_once() {
    let app = spawn_app(|_| {}).await;
    let other = "91440300MA5FXXXX0X";
    let lead = |source: &str| PushLeadRequest {
        credit_codes: vec![SUBJECT.into()],
        to_departments: vec!["finance-110108".into(), "tax-110108".into()],
        risk_level: 3,
        urgency: 2,
        summary: "检查发现虚开发票线索".into(),
        source_lead_id: source.into(),
    };
    let pushed = app.market.clone().push_lead(lead("L-1")).await.unwrap().into_inner().tasks;
    assert_eq!(pushed.len(), 2);
    assert!(pushed.iter().all(|task| task.kind == TaskKind::Lead as i32 && task.risk_level == 3));
    let again = app.market.clone().push_lead(lead("L-1")).await.unwrap().into_inner().tasks;
    let ids = |tasks: &[Task]| tasks.iter().map(|task| task.task_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&pushed), "a retry creates nothing new");
    assert_eq!(tasks_of(&app.finance, &[TaskKind::Lead]).await.len(), 1);

    let bad = PushLeadRequest {
        credit_codes: vec![other.into()],
        to_departments: vec!["samr-110108".into()],
        risk_level: 0,
        urgency: 4,
        summary: String::new(),
        source_lead_id: String::new(),
    };
    let refused = app.market.clone().push_lead(bad).await.unwrap_err();
    let fields: Vec<String> =
        refused.get_error_details().bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
    assert_eq!(fields, ["credit_codes[0]", "to_departments", "risk_level", "urgency", "summary", "source_lead_id"]);

    // Completed by the receiver with its feedback.
    let mine = tasks_of(&app.finance, &[TaskKind::Lead]).await;
    let done = app
        .finance
        .clone()
        .complete_task(CompleteTaskRequest { task_id: mine[0].task_id.clone(), feedback: "已立案调查".into() })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!((done.status, done.feedback.as_str()), (TaskStatus::Completed as i32, "已立案调查"));
    app.service.stop().await;
}

#[tokio::test]
async fn overdue_tasks_and_unreported_checks_are_counted_per_department() {
    let app = spawn_app(|settings| settings.sanctions.overdue_count_seconds = 1).await;
    app.market.clone().upsert_measure(UpsertMeasureRequest { measure: Some(joint_procurement_ban()) }).await.unwrap();
    publish_event(&app.settings, "grading", &graded("public_credit", Grade::C, &[])).await;
    tasks_when(&app.market, &[TaskKind::Sanction], 1).await;
    tasks_when(&app.finance, &[TaskKind::Sanction], 1).await;
    let checked = check_when(&app.market, MatterType::Procurement, Grade::C).await;
    assert!(!checked.measures.is_empty());
    assert!(tasks_of(&app.market, &[]).await.iter().all(|task| !task.overdue), "nothing is late yet");

    // Time passes: the deadlines are behind us.
    stored_ids(&app.pool, std::slice::from_ref(&checked.check_id)).await;
    sqlx::query("UPDATE tasks SET due_on = current_date - 1").execute(&app.pool).await.unwrap();
    sqlx::query(
        "UPDATE check_segments SET report_due_on = ARRAY(
             SELECT CASE WHEN due IS NOT NULL THEN current_date - 1 END
             FROM unnest(report_due_on) WITH ORDINALITY AS u(due, n) ORDER BY n)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE reports_owed SET due_on = current_date - 1").execute(&app.pool).await.unwrap();
    let late = app
        .market
        .clone()
        .list_tasks(ListTasksRequest { overdue_only: true, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(late.len(), 1);
    assert!(late[0].overdue);
    let overdue = app.market.clone().get_overdue(GetOverdueRequest::default()).await.unwrap().into_inner().departments;
    let summary: Vec<(&str, i64, bool)> =
        overdue.iter().map(|d| (d.department_id.as_str(), d.overdue_tasks, d.unreported_checks > 0)).collect();
    assert_eq!(summary, [("finance-110108", 1, false), ("samr-110108", 1, true)]);
    // The totals on the admin port, for a dashboard.
    let owed: i64 =
        sqlx::query_scalar("SELECT sum(owed - reported)::bigint FROM reports_owed").fetch_one(&app.pool).await.unwrap();
    let expected = [
        r#"xinyong_sanctions_tasks_overdue{component="sanctions",kind="sanction"} 2"#.to_owned(),
        r#"xinyong_sanctions_tasks_overdue{component="sanctions",kind="lead"} 0"#.to_owned(),
        format!(r#"xinyong_sanctions_check_reports_overdue{{component="sanctions"}} {owed}"#),
    ];
    let mut shown = String::new();
    for _ in 0..200 {
        shown = xinyong_platform::testing::http_get(app.admin, "/metrics").await;
        if expected.iter().all(|line| shown.lines().any(|shown| shown == line)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(expected.iter().all(|line| shown.lines().any(|shown| shown == line)), "{expected:?} not all in\n{shown}");
    let one = app
        .market
        .clone()
        .get_overdue(GetOverdueRequest { department_id: "finance-110108".into() })
        .await
        .unwrap()
        .into_inner()
        .departments;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].tasks.len(), 1);

    // A report settles its check: the department owes one report fewer, and a retry changes nothing.
    let unreported = |departments: &[xinyong_proto::sanctions::v1::DepartmentOverdue]| {
        departments.iter().find(|d| d.department_id == "samr-110108").map_or(0, |d| d.unreported_checks)
    };
    let before = unreported(&overdue);
    let handlings = checked
        .measures
        .iter()
        .map(|measure| MeasureHandling { measure_code: measure.code.clone(), applied: true, reason: String::new() })
        .collect::<Vec<_>>();
    for _ in 0..2 {
        let request = ReportHandlingRequest { check_id: checked.check_id.clone(), handlings: handlings.clone() };
        assert!(app.market.clone().report_handling(request).await.unwrap().into_inner().recorded);
    }
    let after = app.market.clone().get_overdue(GetOverdueRequest::default()).await.unwrap().into_inner().departments;
    assert_eq!(unreported(&after), before - 1);
    let (owed, reported): (i64, i64) = sqlx::query_as(
        "SELECT sum(owed)::bigint, sum(reported)::bigint FROM reports_owed WHERE department_id = 'samr-110108'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM checks WHERE department_id = 'samr-110108' AND report_due_on IS NOT NULL",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((owed, reported), (stored, 1), "the counts are the stored checks'");
    app.service.stop().await;
}

fn registration(credit_code: &str, scope: &str) -> EntityRegistered {
    EntityRegistered {
        credit_code: credit_code.into(),
        name: "测试有限公司".into(),
        kind: 1,
        region_code: "110108".into(),
        industry_code: "F5211".into(),
        business_scope: scope.into(),
        established_on: "2026-11-01".into(),
        status: 1,
    }
}

#[tokio::test]
async fn registrations_are_pushed_to_approving_departments_returned_to_the_authority_or_claimed_from_the_pool() {
    let app = spawn_app(|_| {}).await;
    let client = |department: &str| (app.client_for)(Caller::new(department, vec![]));
    let (market, medical, culture, housing) = (
        client("market-regulation"),
        client("medical-products"),
        client("culture-tourism"),
        client("housing-construction"),
    );

    let food_and_devices = registration(SUBJECT, "食品经营（销售预包装食品）；第二类医疗器械销售；技术开发");
    publish_event(&app.settings, "registry", &food_and_devices).await;
    let pushed = tasks_when(&market, &[TaskKind::Registration], 1).await;
    assert!(pushed[0].summary.contains("食品经营许可"), "{}", pushed[0].summary);
    let device = tasks_when(&medical, &[TaskKind::Registration], 1).await;
    assert!(device[0].summary.contains("医疗器械"));
    // The same registration announced again pushes nothing new.
    publish_event(&app.settings, "registry", &EntitiesRegistered { entities: vec![food_and_devices] }).await;

    // Medical products says it is not theirs: back to the registration authority with the reason.
    let returned = medical
        .clone()
        .return_task(ReturnTaskRequest {
            task_id: device[0].task_id.clone(), reason: "仅销售第二类，已备案".into()
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    assert_eq!(returned.status, TaskStatus::Returned as i32);
    let at_authority = tasks_when(&market, &[TaskKind::Registration], 2).await;
    assert!(at_authority[1].summary.contains("仅销售第二类，已备案"), "{}", at_authority[1].summary);
    assert_eq!(tasks_of(&medical, &[TaskKind::Registration]).await.len(), 1, "pushed once despite the repeat");
    // The authority confirms by hand and pushes again, to the department it found responsible.
    let repush = PushLeadRequest {
        credit_codes: vec![SUBJECT.into()],
        to_departments: vec!["health".into()],
        risk_level: 1,
        urgency: 1,
        summary: "经人工确认：经营范围涉及医疗器械第三类，请办理审批告知".into(),
        source_lead_id: format!("registration-return:{}", device[0].task_id),
    };
    market.clone().push_lead(repush).await.unwrap();
    let health = client("health");
    assert_eq!(tasks_of(&health, &[TaskKind::Lead]).await.len(), 1, "pushed again to the confirmed department");

    // A scope that names no approval item goes to the pool.
    let plain = "91110108MA01B2C3XQ";
    publish_event(&app.settings, "registry", &registration(plain, "技术开发、技术咨询、技术服务")).await;
    let mut pooled = Vec::new();
    for _ in 0..200 {
        pooled = housing
            .clone()
            .list_tasks(ListTasksRequest { pool: true, ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .tasks;
        if !pooled.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(pooled.len(), 1);
    assert_eq!((pooled[0].status, pooled[0].credit_code.as_str()), (TaskStatus::Pooled as i32, plain));
    let claim = ClaimTaskRequest { task_id: pooled[0].task_id.clone() };
    let claimed = culture.clone().claim_task(claim.clone()).await.unwrap().into_inner().task.unwrap();
    assert_eq!((claimed.status, claimed.department_id.as_str()), (TaskStatus::Open as i32, "culture-tourism"));
    assert!(culture.clone().claim_task(claim.clone()).await.is_ok(), "a retry");
    let late = housing.clone().claim_task(claim).await.unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    let empty_pool =
        housing.clone().list_tasks(ListTasksRequest { pool: true, ..Default::default() }).await.unwrap().into_inner();
    assert!(empty_pool.tasks.is_empty());

    // A change registration that adds approval items reaches the departments approving what it
    // adds, and no one it reached before; a change that adds none goes nowhere, not to the pool.
    let widened = EntityUpdated {
        credit_code: SUBJECT.into(),
        business_scope: "食品经营（销售预包装食品）；第二类医疗器械销售；技术开发；旅行社业务".into(),
        changed_fields: vec!["business_scope".into()],
        ..Default::default()
    };
    publish_event(&app.settings, "registry", &widened).await;
    publish_event(&app.settings, "registry", &widened).await;
    let travel = tasks_when(&culture, &[TaskKind::Registration], 2).await;
    let changed: Vec<&str> = travel.iter().map(|task| task.summary.as_str()).filter(|s| s.contains("变更")).collect();
    assert_eq!(changed.len(), 1, "{travel:?}");
    assert!(changed[0].contains("旅行社业务经营许可"), "{}", changed[0]);
    let renamed = EntityUpdated {
        credit_code: plain.into(),
        business_scope: "软件开发".into(),
        changed_fields: vec!["name".into(), "business_scope".into()],
        ..Default::default()
    };
    publish_event(&app.settings, "registry", &renamed).await;
    // Events of one stream are handled in order: once this one shows, the ones before it are done.
    let marker = registration("91110108MA01B2C4X0", "烟草制品零售");
    publish_event(&app.settings, "registry", &marker).await;
    tasks_when(&client("tobacco-monopoly"), &[TaskKind::Registration], 1).await;
    assert_eq!(tasks_of(&market, &[TaskKind::Registration]).await.len(), 2, "nothing new for food: pushed before");
    assert_eq!(tasks_of(&medical, &[TaskKind::Registration]).await.len(), 1);
    let pool =
        housing.clone().list_tasks(ListTasksRequest { pool: true, ..Default::default() }).await.unwrap().into_inner();
    assert!(pool.tasks.is_empty(), "a change without approval items is not pooled");
    app.service.stop().await;
}

#[tokio::test]
async fn a_listing_takes_effect_only_once_its_notice_is_served_and_ends_with_the_repair() {
    let app = spawn_app(|_| {}).await;
    let subsidy_ban = Measure {
        code: "bl-subsidy-ban".into(),
        title: "限制申请财政资金补贴".into(),
        legal_basis: "国办发〔2020〕49号".into(),
        source: "004 二(五)3".into(),
        executing_departments: vec!["finance-110108".into()],
        lists: vec![ListKind::SeriousDishonesty as i32],
        target: MeasureTarget::Organisation as i32,
        matter_types: vec![MatterType::Subsidies as i32],
        ..Default::default()
    };
    app.market.clone().upsert_measure(UpsertMeasureRequest { measure: Some(subsidy_ban) }).await.unwrap();
    let listing = RecordIngested {
        credit_code: SUBJECT.into(),
        record_id: RECORD.into(),
        department_id: "samr-110108".into(),
        category: "serious_dishonesty_list".into(),
        nature: 5,
        decided_on: "2026-11-02".into(),
        facts: None,
    };
    publish_event(&app.settings, "ingestion", &listing).await;
    let notice_task = tasks_when(&app.market, &[TaskKind::Notice], 1).await.remove(0);
    assert!(!notice_task.notice_id.is_empty());
    let before = check(&app.finance, MatterType::Subsidies).await;
    assert!(before.lists.is_empty() && before.measures.is_empty(), "not listed before the notice is served");

    let serve = |served_on: &str| ServeNoticeRequest {
        notice_id: notice_task.notice_id.clone(),
        served_on: served_on.into(),
        method: "direct".into(),
    };
    let future = app.market.clone().serve_notice(serve("2999-01-01")).await.unwrap_err();
    assert_eq!(future.get_error_details().bad_request().unwrap().field_violations[0].field, "served_on");
    let today = xinyong_domain::calendar::today().to_string();
    let notice = app.market.clone().serve_notice(serve(&today)).await.unwrap().into_inner().notice.unwrap();
    assert!(notice.objection_rights.contains("异议") && notice.repair_guidance.contains("信用修复"));
    assert!(notice.measure_codes.contains(&"bl-subsidy-ban".to_owned()));
    assert_eq!(notice.served_on, today);
    assert!(app.market.clone().serve_notice(serve(&today)).await.is_ok(), "a retry");
    let other_day = app.market.clone().serve_notice(serve("2026-11-20")).await.unwrap_err();
    assert_eq!(other_day.code(), Code::FailedPrecondition);

    let listed = check(&app.finance, MatterType::Subsidies).await;
    assert_eq!(listed.lists, [ListKind::SeriousDishonesty as i32]);
    assert!(codes(&listed).contains(&"bl-subsidy-ban"));
    assert_eq!(tasks_when(&app.finance, &[TaskKind::Sanction], 1).await[0].measure_code, "bl-subsidy-ban");
    let served_task = tasks_of(&app.market, &[TaskKind::Notice]).await.remove(0);
    assert_eq!(served_task.status, TaskStatus::Completed as i32);
    let standing = subject_sanctions(&app.finance, false).await;
    assert_eq!(standing.listings.len(), 1);
    let listing = &standing.listings[0];
    assert_eq!((listing.list, listing.record_id.as_str()), (ListKind::SeriousDishonesty as i32, RECORD));
    assert_eq!(
        (listing.since.as_str(), listing.until.as_str(), listing.department_id.as_str()),
        (today.as_str(), "", "samr-110108")
    );
    let push = &standing.pushes[0];
    assert_eq!((push.measure_code.as_str(), push.department_id.as_str()), ("bl-subsidy-ban", "finance-110108"));
    assert_eq!(
        (push.measure_title.as_str(), push.legal_basis.as_str()),
        ("限制申请财政资金补贴", "国办发〔2020〕49号")
    );
    assert_eq!((push.pushed_on.as_str(), push.lifted_on.as_str(), push.executed), (today.as_str(), "", false));

    // The record is repaired: the listing ends, the measure stops, the pushed department is told.
    let repaired = RecordRepaired { credit_code: SUBJECT.into(), record_id: RECORD.into(), repair_id: "R-1".into() };
    publish_event(&app.settings, "objections", &repaired).await;
    assert_eq!(tasks_when(&app.finance, &[TaskKind::Lift], 1).await[0].measure_code, "bl-subsidy-ban");
    let after = check_until(&app.finance, MatterType::Subsidies, |answer| answer.lists.is_empty()).await;
    assert!(!codes(&after).contains(&"bl-subsidy-ban"));
    let announced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE event_type = 'xinyong.events.v1.ListingChanged' AND credit_code = $1",
    )
    .bind(SUBJECT)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(announced, 2, "listed, then taken off");
    let standing = subject_sanctions(&app.finance, false).await;
    assert!(standing.listings.is_empty() && standing.pushes.is_empty(), "{standing:?}");
    let ended = subject_sanctions(&app.finance, true).await;
    assert_eq!((ended.listings.len(), ended.listings[0].until.as_str()), (1, today.as_str()));
    assert_eq!((ended.pushes.len(), ended.pushes[0].lifted_on.as_str()), (1, today.as_str()));
    let bad = app
        .finance
        .clone()
        .get_subject_sanctions(GetSubjectSanctionsRequest {
            credit_code: "91350100M000100Y4Z".into(),
            include_ended: false,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.get_error_details().bad_request().unwrap().field_violations[0].field, "credit_code");
    app.service.stop().await;
}

#[tokio::test]
async fn every_replica_stops_answering_a_changed_grade_once_one_of_them_handles_the_change() {
    let app = spawn_app(|_| {}).await;
    let second = Spawned::start({
        let settings = SanctionsSettings { platform: app.settings.clone(), sanctions: SanctionsSection::default() };
        |listener, stop| xinyong_sanctions::run(settings, listener, None, stop)
    })
    .await;
    let channel = connect_when_serving(second.address, "xinyong.sanctions.v1.SanctionsService").await;
    let other: Client = SanctionsServiceClient::with_interceptor(
        channel,
        InternalInterceptor::new(&app.settings.internal.token, Some(Caller::new("samr-110108", vec![]))).unwrap(),
    );
    publish_event(&app.settings, "grading", &graded("public_credit", Grade::C, &[])).await;
    // Both replicas hold the C in their own copies.
    check_when(&app.market, MatterType::Procurement, Grade::C).await;
    check_when(&other, MatterType::Procurement, Grade::C).await;
    check_when(&other, MatterType::Procurement, Grade::C).await;

    // One of them consumes the change; both answer it. Expiry cannot be what refreshes them: the
    // in-process copies live 30 s and Redis's an hour, and `check_when` gives up after about five
    // seconds. How fast the change arrives is the check benchmark's business, not a test's.
    let section = SanctionsSection::default();
    assert_eq!((section.local_cache_ms, section.cache_ttl_seconds), (30_000, 3600));
    publish_event(&app.settings, "grading", &graded("public_credit", Grade::A, &[])).await;
    check_when(&app.market, MatterType::Procurement, Grade::A).await;
    check_when(&other, MatterType::Procurement, Grade::A).await;
    second.stop().await;
    app.service.stop().await;
}

#[tokio::test]
async fn a_court_or_registrar_listing_stands_from_its_record_without_a_notice_and_ends_with_its_withdrawal() {
    let app = spawn_app(|_| {}).await;
    let debtor_ban = Measure {
        code: "jd-subsidy-ban".into(),
        title: "限制失信被执行人申请财政补贴".into(),
        legal_basis: "《最高人民法院关于公布失信被执行人名单信息的若干规定》".into(),
        source: "deployment".into(),
        executing_departments: vec!["finance-110108".into()],
        lists: vec![ListKind::DishonestJudgmentDebtor as i32],
        target: MeasureTarget::Organisation as i32,
        matter_types: vec![MatterType::Subsidies as i32],
        ..Default::default()
    };
    app.market.clone().upsert_measure(UpsertMeasureRequest { measure: Some(debtor_ban) }).await.unwrap();
    let debtor = RecordIngested {
        credit_code: SUBJECT.into(),
        record_id: RECORD.into(),
        department_id: "court-110108".into(),
        category: "dishonest_judgment_debtor".into(),
        nature: 5,
        decided_on: "2026-11-02".into(),
        facts: None,
    };
    publish_event(&app.settings, "ingestion", &debtor).await;
    publish_event(&app.settings, "ingestion", &debtor).await;
    let listed = check_until(&app.finance, MatterType::Subsidies, |answer| !answer.lists.is_empty()).await;
    assert_eq!(listed.lists, [ListKind::DishonestJudgmentDebtor as i32]);
    assert_eq!(codes(&listed), ["jd-subsidy-ban"]);
    let pushed = tasks_when(&app.finance, &[TaskKind::Sanction], 1).await;
    assert_eq!((pushed.len(), pushed[0].measure_code.as_str()), (1, "jd-subsidy-ban"), "one push for a repeated event");
    assert!(tasks_of(&app.market, &[TaskKind::Notice]).await.is_empty(), "the court notified; no notice here");
    let since: chrono::NaiveDate = sqlx::query_scalar("SELECT since FROM listings WHERE record_id = $1")
        .bind(RECORD)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(since.to_string(), "2026-11-02", "standing from the court's decision");

    // An abnormal-operation record of another subject lists that subject, not this one.
    let other = "9144030071526726XG";
    let abnormal = RecordIngested {
        credit_code: other.into(),
        record_id: "0190f3a2-7c1e-7000-8000-000000000002".into(),
        department_id: "samr-110108".into(),
        category: "abnormal_operation_list".into(),
        nature: 3,
        decided_on: "2026-11-03".into(),
        facts: None,
    };
    publish_event(&app.settings, "ingestion", &abnormal).await;
    let request = CheckEntityRequest { credit_code: other.into(), matter_type: MatterType::Subsidies as i32 };
    let mut lists = Vec::new();
    for _ in 0..200 {
        lists = app.finance.clone().check_entity(request.clone()).await.unwrap().into_inner().lists;
        if !lists.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(lists, [ListKind::AbnormalOperation as i32]);

    // The court withdraws the listing: it ends, the measure stops, finance is told to lift.
    let withdrawn =
        RecordWithdrawn {
            credit_code: SUBJECT.into(), record_id: RECORD.into(), reason: "已履行".into(), version: 2
        };
    publish_event(&app.settings, "ingestion", &withdrawn).await;
    assert_eq!(tasks_when(&app.finance, &[TaskKind::Lift], 1).await[0].measure_code, "jd-subsidy-ban");
    let after = check_until(&app.finance, MatterType::Subsidies, |answer| answer.lists.is_empty()).await;
    assert!(codes(&after).is_empty());
    app.service.stop().await;
}

#[tokio::test]
async fn a_measure_changed_reaches_the_subjects_already_graded_at_once() {
    let app = spawn_app(|_| {}).await;
    publish_event(&app.settings, "grading", &graded("public_credit", Grade::C, &[])).await;
    check_when(&app.market, MatterType::Subsidies, Grade::C).await;
    let mut measure = Measure {
        code: "c-subsidy-review".into(),
        title: "财政补贴从严审核".into(),
        legal_basis: "第十一条第（三）项".into(),
        source: "000 art. 11(3)".into(),
        executing_departments: vec!["finance-110108".into()],
        grades: vec![Grade::C as i32, Grade::D as i32],
        target: MeasureTarget::Organisation as i32,
        matter_types: vec![MatterType::Subsidies as i32],
        ..Default::default()
    };
    app.market.clone().upsert_measure(UpsertMeasureRequest { measure: Some(measure.clone()) }).await.unwrap();
    let pushed = tasks_of(&app.finance, &[TaskKind::Sanction]).await;
    assert_eq!(pushed.iter().map(|task| task.measure_code.as_str()).collect::<Vec<_>>(), ["c-subsidy-review"]);

    // Finance hands the measure to market regulation: finance is told to lift, market is pushed.
    measure.executing_departments = vec!["samr-110108".into()];
    app.market.clone().upsert_measure(UpsertMeasureRequest { measure: Some(measure.clone()) }).await.unwrap();
    assert_eq!(tasks_of(&app.finance, &[TaskKind::Lift]).await[0].measure_code, "c-subsidy-review");
    let market: Vec<String> =
        tasks_of(&app.market, &[TaskKind::Sanction]).await.into_iter().map(|task| task.measure_code).collect();
    assert!(market.contains(&"c-subsidy-review".to_owned()), "{market:?}");

    // Saving it again unchanged pushes nothing new.
    app.market.clone().upsert_measure(UpsertMeasureRequest { measure: Some(measure) }).await.unwrap();
    let again = tasks_of(&app.market, &[TaskKind::Sanction]).await;
    assert_eq!(again.iter().filter(|task| task.measure_code == "c-subsidy-review").count(), 1);
    app.service.stop().await;
}

/// Checks stored while a partial index counted the unreported ones become the counts of
/// `reports_owed` when the index goes.
#[tokio::test]
async fn checks_stored_before_the_report_counters_are_counted() {
    let database = xinyong_platform::testing::TestDatabase::new().await;
    let pool = database.pool_before("sanctions", &xinyong_sanctions::MIGRATOR, 20261123000002).await;
    // Three owed a report on one day, one of them reported; one on another day; one owed none.
    let rows = [
        ("samr-110108", Some(1), false),
        ("samr-110108", Some(1), true),
        ("samr-110108", Some(1), false),
        ("samr-110108", Some(2), false),
        ("finance-110108", None, false),
    ];
    for (department, due_in, reported) in rows {
        sqlx::query(
            "INSERT INTO checks (check_id, credit_code, department_id, matter_type, answer_digest, report_due_on, reported_at)
             VALUES (gen_random_uuid(), '91110000600037341L', $1, 3, '\\x00', current_date + $2, CASE WHEN $3 THEN now() END)",
        )
        .bind(department)
        .bind(due_in)
        .bind(reported)
        .execute(&pool)
        .await
        .unwrap();
    }

    xinyong_platform::db::migrate(&pool, &xinyong_sanctions::MIGRATOR).await.unwrap();
    let counts: Vec<(String, i32, i64, i64)> = sqlx::query_as(
        "SELECT department_id, due_on - current_date, owed, reported FROM reports_owed ORDER BY department_id, due_on",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(counts, [("samr-110108".to_owned(), 1, 3, 1), ("samr-110108".to_owned(), 2, 1, 0)]);
    pool.close().await;
}

fn abnormal_listing(credit_code: &str, record_id: &str, decided_on: chrono::NaiveDate) -> RecordIngested {
    RecordIngested {
        credit_code: credit_code.into(),
        record_id: record_id.into(),
        department_id: "samr-110108".into(),
        category: "abnormal_operation_list".into(),
        nature: 3,
        decided_on: decided_on.to_string(),
        facts: None,
    }
}

#[tokio::test]
async fn an_abnormal_operation_listing_is_warned_about_in_its_last_60_days_and_sent_for_transfer_at_three_years() {
    let app = spawn_app(|settings| settings.sanctions.listing_sweep_seconds = 1).await;
    let today = xinyong_domain::calendar::today();
    let three_years_before = today.checked_sub_months(chrono::Months::new(36)).unwrap();
    // Listed three years and ten days ago: the running sweep sends it for transfer, with no
    // warning any more (its time is past).
    let (old, old_code) = ("0190f3a2-7c1e-7000-8000-00000000a001", SUBJECT);
    publish_event(&app.settings, "ingestion", &abnormal_listing(old_code, old, three_years_before - Days::new(10)))
        .await;
    // Listed three years less thirty days ago: in its warning period.
    let (near, near_code) = ("0190f3a2-7c1e-7000-8000-00000000a002", "9144030071526726XG");
    let near_since = three_years_before + Days::new(30);
    publish_event(&app.settings, "ingestion", &abnormal_listing(near_code, near, near_since)).await;

    let swept = tasks_when(&app.market, &[TaskKind::ListingWarning, TaskKind::ListingTransfer], 2).await;
    let of = |record: &str| swept.iter().find(|task| task.record_id == record).unwrap();
    let calendar = Calendar::official();
    assert_eq!(swept.len(), 2, "{swept:?}");
    assert_eq!((of(old).kind, of(old).credit_code.as_str()), (TaskKind::ListingTransfer as i32, old_code));
    assert_eq!(of(old).due_on, calendar.add_working_days(today, 15).to_string());
    assert_eq!(of(near).kind, TaskKind::ListingWarning as i32);
    assert_eq!(of(near).due_on, listings::transfer_on(near_since).to_string(), "due when the three years are up");
    assert!(of(near).summary.contains("严重违法失信名单"));

    // Another replica's sweep the same day makes nothing again.
    assert_eq!(sweep(&calendar).run(&app.pool, today).await.unwrap(), listings::Swept::default());
    assert_eq!(timer_tasks(&app.pool).await, 2);

    // The registrar removes the near listing: its warning has nothing left to do.
    let removed =
        RecordWithdrawn {
            credit_code: near_code.into(), record_id: near.into(), reason: "已补报".into(), version: 2
        };
    publish_event(&app.settings, "ingestion", &removed).await;
    // The registrar reports the old one's serious-violation listing: the transfer is done, and the
    // notice before listing follows as for any serious listing.
    let reported = "0190f3a2-7c1e-7000-8000-00000000a004";
    let transfer = RecordIngested {
        credit_code: old_code.into(),
        record_id: reported.into(),
        department_id: "samr-110108".into(),
        category: "serious_dishonesty_list".into(),
        nature: 5,
        decided_on: today.to_string(),
        facts: None,
    };
    publish_event(&app.settings, "ingestion", &transfer).await;
    tasks_when(&app.market, &[TaskKind::Notice], 1).await;
    let mut closed = Vec::new();
    for _ in 0..200 {
        closed = tasks_of(&app.market, &[TaskKind::ListingWarning, TaskKind::ListingTransfer]).await;
        if closed.iter().all(|task| task.status == TaskStatus::Completed as i32) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let of = |record: &str| closed.iter().find(|task| task.record_id == record).unwrap();
    assert_eq!(of(near).status, TaskStatus::Completed as i32);
    assert!(of(near).feedback.contains("名单已移出"), "{:?}", of(near));
    assert_eq!(of(old).status, TaskStatus::Completed as i32);
    assert!(of(old).feedback.contains(reported), "{:?}", of(old));
    assert_eq!(timer_tasks(&app.pool).await, 2, "a withdrawn listing is not swept again");
    app.service.stop().await;
}

#[tokio::test]
async fn the_listing_timer_counts_calendar_years_to_the_day_and_falls_back_to_the_registration_authority() {
    // No sweep of its own: every sweep here is run for a chosen day.
    let app = spawn_app(|settings| settings.sanctions.listing_sweep_seconds = 0).await;
    let calendar = Calendar::official();
    let day = |text: &str| text.parse::<chrono::NaiveDate>().unwrap();
    // Listed on a leap day: three years end on 28 February 2027, the warning begins 60 days before.
    let leap = "0190f3a2-7c1e-7000-8000-00000000b001";
    assert_eq!(listings::transfer_on(day("2024-02-29")), day("2027-02-28"));
    assert_eq!(listings::warn_from(day("2024-02-29")), day("2026-12-30"));
    publish_event(&app.settings, "ingestion", &abnormal_listing(SUBJECT, leap, day("2024-02-29"))).await;
    for _ in 0..200 {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM listings").fetch_one(&app.pool).await.unwrap();
        if stored == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // As a build before the department was kept stored it.
    sqlx::query("UPDATE listings SET department_id = ''").execute(&app.pool).await.unwrap();
    let tasks = || async {
        let rows: Vec<(i16, String, chrono::NaiveDate)> =
            sqlx::query_as("SELECT kind, department_id, due_on FROM tasks WHERE record_id = $1 ORDER BY kind")
                .bind(leap)
                .fetch_all(&app.pool)
                .await
                .unwrap();
        rows
    };
    let sweep = sweep(&calendar);
    assert_eq!(sweep.run(&app.pool, day("2026-12-29")).await.unwrap(), listings::Swept::default());
    let warned = sweep.run(&app.pool, day("2026-12-30")).await.unwrap();
    assert_eq!(warned, listings::Swept { warnings: 1, transfers: 0 });
    assert_eq!(tasks().await, [(6, "market-regulation".to_owned(), day("2027-02-28"))]);
    assert_eq!(sweep.run(&app.pool, day("2027-01-15")).await.unwrap(), listings::Swept::default(), "warned once");
    assert_eq!(sweep.run(&app.pool, day("2027-02-27")).await.unwrap(), listings::Swept::default());
    // Down over the anniversary: the first sweep after it catches up.
    let caught_up = sweep.run(&app.pool, day("2027-03-10")).await.unwrap();
    assert_eq!(caught_up, listings::Swept { warnings: 0, transfers: 1 });
    let due = calendar.add_working_days(day("2027-03-10"), 15);
    assert_eq!(tasks().await[1], (7, "market-regulation".to_owned(), due));
    assert_eq!(sweep.run(&app.pool, day("2027-03-11")).await.unwrap(), listings::Swept::default());
    app.service.stop().await;
}

/// The `ListingChanged` events in the outbox, in order: record, list, listed, effective day.
async fn listing_events(pool: &sqlx::PgPool) -> Vec<(String, i32, bool, String)> {
    use prost::Message;
    let envelopes: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT envelope FROM outbox WHERE event_type = 'xinyong.events.v1.ListingChanged' ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    envelopes
        .iter()
        .map(|envelope| {
            let envelope = xinyong_proto::events::v1::Envelope::decode(envelope.as_slice()).unwrap();
            let event = ListingChanged::decode(envelope.payload.as_slice()).unwrap();
            (event.record_id, event.list, event.listed, event.effective_on)
        })
        .collect()
}

#[tokio::test]
async fn standing_listings_are_announced_again_with_their_records_once_and_whenever_asked() {
    // No sweep of its own, which would announce on its first run: the migration leaves it asked for.
    let app = spawn_app(|settings| settings.sanctions.listing_sweep_seconds = 0).await;
    // A listing taking effect names its record.
    let record = "0190f3a2-7c1e-7000-8000-00000000c001";
    let on = "2025-03-04".parse::<chrono::NaiveDate>().unwrap();
    publish_event(&app.settings, "ingestion", &abnormal_listing(SUBJECT, record, on)).await;
    for _ in 0..200 {
        if !listing_events(&app.pool).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let taken = (record.to_owned(), ListKind::AbnormalOperation as i32, true, "2025-03-04".to_owned());
    assert_eq!(listing_events(&app.pool).await, std::slice::from_ref(&taken));
    // Two more listings, as a build that announced them without their records stored them; one ended.
    sqlx::query(
        "INSERT INTO listings (record_id, credit_code, list, since, until)
         VALUES ('r-serious', $1, 2, '2024-01-02', NULL), ('r-ended', $1, 1, '2023-05-06', '2024-05-06')",
    )
    .bind(SUBJECT)
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(listings::announce_if_asked(&app.pool).await.unwrap(), Some(2));
    let serious = ("r-serious".to_owned(), ListKind::SeriousDishonesty as i32, true, "2024-01-02".to_owned());
    let announced = [taken.clone(), taken.clone(), serious.clone()];
    assert_eq!(listing_events(&app.pool).await, announced, "standing ones, by record");
    assert_eq!(listings::announce_if_asked(&app.pool).await.unwrap(), None, "once");
    assert_eq!(listing_events(&app.pool).await.len(), 3);
    // An operator asks again (`xinyong-cli listings-announce`).
    assert_eq!(listings::announce_again(&app.pool).await.unwrap(), Some(2));
    assert_eq!(listing_events(&app.pool).await[3..], [taken, serious]);
    // And its end names the record, which lottery's copy ends by.
    let withdrawn =
        RecordWithdrawn {
            credit_code: SUBJECT.into(), record_id: record.into(), reason: "已补报".into(), version: 2
        };
    publish_event(&app.settings, "ingestion", &withdrawn).await;
    for _ in 0..200 {
        if listing_events(&app.pool).await.len() == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let ended = listing_events(&app.pool).await.pop().unwrap();
    assert_eq!((ended.0.as_str(), ended.2), (record, false), "{ended:?}");
    app.service.stop().await;
}

fn sweep(calendar: &Calendar) -> listings::Sweep<'_> {
    listings::Sweep { calendar, execute_within_working_days: 15, registration_authority: "market-regulation" }
}

async fn timer_tasks(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM tasks WHERE kind IN (6, 7)").fetch_one(pool).await.unwrap()
}

async fn subject_sanctions(client: &Client, include_ended: bool) -> GetSubjectSanctionsResponse {
    let request = GetSubjectSanctionsRequest { credit_code: SUBJECT.into(), include_ended };
    client.clone().get_subject_sanctions(request).await.unwrap().into_inner()
}

#[tokio::test]
async fn task_statistics_count_what_became_of_the_tasks_made_in_a_period_per_department_and_kind() {
    let app = spawn_app(|_| {}).await;
    let lead = |source: &str, to: &[&str]| PushLeadRequest {
        credit_codes: vec![SUBJECT.into()],
        to_departments: to.iter().map(|department| (*department).to_owned()).collect(),
        risk_level: 2,
        urgency: 1,
        summary: "线索".into(),
        source_lead_id: source.into(),
    };
    let pushed = app.market.clone().push_lead(lead("S-1", &["finance-110108", "tax-110108"])).await.unwrap();
    let pushed = pushed.into_inner().tasks;
    let finance_task = pushed.iter().find(|task| task.department_id == "finance-110108").unwrap().task_id.clone();
    app.market.clone().push_lead(lead("S-2", &["finance-110108"])).await.unwrap();
    app.market.clone().push_lead(lead("S-3", &["finance-110108"])).await.unwrap();
    let finance = tasks_of(&app.finance, &[TaskKind::Lead]).await;
    assert_eq!(finance.len(), 3);
    // One completed on time, one completed after its day, one left open past its day; tax's is
    // returned.
    let complete = |task_id: &str| CompleteTaskRequest { task_id: task_id.into(), feedback: "已处理".into() };
    app.finance.clone().complete_task(complete(&finance_task)).await.unwrap();
    let (late, overdue) = (finance[1].task_id.clone(), finance[2].task_id.clone());
    let set_due = |task_id: String, due: chrono::NaiveDate| {
        let pool = app.pool.clone();
        async move {
            sqlx::query("UPDATE tasks SET due_on = $2 WHERE task_id = $1::uuid")
                .bind(task_id)
                .bind(due)
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    let today = xinyong_domain::calendar::today();
    set_due(late.clone(), today - Days::new(2)).await;
    app.finance.clone().complete_task(complete(&late)).await.unwrap();
    set_due(overdue, today - Days::new(1)).await;
    let tax_task = tasks_of(&(app.client_for)(Caller::new("tax-110108", vec![])), &[TaskKind::Lead]).await.remove(0);
    let returned = ReturnTaskRequest { task_id: tax_task.task_id, reason: "不属本部门职责".into() };
    (app.client_for)(Caller::new("tax-110108", vec![])).return_task(returned).await.unwrap();
    // A lead made a year ago is outside this month.
    let old = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, 1_733_000_000, 0));
    sqlx::query(
        "INSERT INTO tasks (task_id, kind, status, department_id, credit_code, summary, due_on, created_by)
         VALUES ($1, 4, 1, 'finance-110108', $2, '旧线索', '2024-12-31', 'samr-110108')",
    )
    .bind(old)
    .bind(SUBJECT)
    .execute(&app.pool)
    .await
    .unwrap();

    let statistics = app.market.clone().get_task_statistics(GetTaskStatisticsRequest::default()).await.unwrap();
    let statistics = statistics.into_inner();
    let period = statistics.period.unwrap();
    assert_eq!((period.from, period.to), (today.with_day(1).unwrap().to_string(), today.to_string()));
    let of = |department: &str| {
        statistics
            .departments
            .iter()
            .find(|row| row.department_id == department && row.kind == TaskKind::Lead as i32)
            .unwrap()
    };
    let finance = of("finance-110108");
    assert_eq!(
        (finance.made, finance.completed_on_time, finance.completed_late, finance.open, finance.open_overdue),
        (3, 1, 1, 1, 1),
        "{finance:?}"
    );
    assert_eq!((of("tax-110108").made, of("tax-110108").returned), (1, 1));
    let total = statistics.totals.iter().find(|row| row.kind == TaskKind::Lead as i32).unwrap();
    assert_eq!((total.department_id.as_str(), total.made, total.returned, total.open_overdue), ("", 4, 1, 1));

    // The old lead's month, for finance alone.
    let last_year = GetTaskStatisticsRequest {
        period: Some(DateRange { from: "2024-11-01".into(), to: "2024-12-31".into() }),
        department_id: "finance-110108".into(),
    };
    let old_counts = app.market.clone().get_task_statistics(last_year).await.unwrap().into_inner();
    assert_eq!(old_counts.departments.len(), 1);
    assert_eq!((old_counts.departments[0].made, old_counts.departments[0].open_overdue), (1, 1));
    let inverted = GetTaskStatisticsRequest {
        period: Some(DateRange { from: "2025-02-01".into(), to: "2025-01-01".into() }),
        department_id: String::new(),
    };
    let error = app.market.clone().get_task_statistics(inverted).await.unwrap_err();
    assert_eq!(error.get_error_details().bad_request().unwrap().field_violations[0].field, "period.from");
    app.service.stop().await;
}
