//! Lottery over real gRPC against real Postgres and Redis, its directory and grades fed by
//! registry's and grading's events put on the bus as their relays would.

use std::time::Duration;

use prost::Message;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt;
use xinyong_domain::calendar::{Calendar, today};
use xinyong_domain::credit_code::complete;
use xinyong_lottery::{LotterySection, LotterySettings};
use xinyong_platform::identity::{Caller, InternalInterceptor};
use xinyong_platform::testing::{Spawned, TestDatabase, connect_when_serving, publish_event, redis_url};
use xinyong_proto::common::v1::{EntityStatus, Grade, ListKind, SubjectKind};
use xinyong_proto::events::v1::{
    EntitiesRegistered, EntityRegistered, EntityStatusChanged, Envelope, GradeChanged, GradesChanged,
    InspectionResultRecorded, ListingChanged,
};
use xinyong_proto::lottery::v1::lottery_service_client::LotteryServiceClient;
use xinyong_proto::lottery::v1::{
    Assignment, CreatePlanRequest, DrawRequest, DrawResponse, GetInspectionStatisticsRequest, GradeRatio, Inspector,
    ListAssignmentsRequest, Plan, PublishResultsRequest, RecordResultRequest, UpsertInspectorRequest,
    VerifyDrawRequest,
};

type Client = LotteryServiceClient<InterceptedService<Channel, InternalInterceptor>>;

const MARKET: &str = "samr-440305";
const ENV: &str = "env-440305";

struct App {
    client_for: Box<dyn Fn(Caller) -> Client + Send + Sync>,
    settings: xinyong_platform::PlatformSettings,
    pool: sqlx::PgPool,
    /// The admin port (`/metrics`).
    admin: std::net::SocketAddr,
    service: Spawned,
    _database: TestDatabase,
}

impl App {
    fn client(&self, department: &str) -> Client {
        (self.client_for)(Caller::new(department, vec![]))
    }
}

async fn spawn_app() -> App {
    let database = TestDatabase::new().await;
    let settings = LotterySettings {
        platform: database.settings("lottery", &redis_url()),
        lottery: LotterySection { overdue_count_seconds: 1, ..LotterySection::default() },
    };
    let platform = settings.platform.clone();
    let token = platform.internal.token.clone();
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = admin_listener.local_addr().unwrap();
    let service =
        Spawned::start(|listener, stop| xinyong_lottery::run(settings, listener, Some(admin_listener), stop)).await;
    let channel = connect_when_serving(service.address, "xinyong.lottery.v1.LotteryService").await;
    App {
        client_for: Box::new(move |caller| {
            LotteryServiceClient::with_interceptor(
                channel.clone(),
                InternalInterceptor::new(&token, Some(caller)).unwrap(),
            )
        }),
        pool: database.pool_of("lottery").await,
        admin,
        settings: platform,
        service,
        _database: database,
    }
}

/// The `index`-th enterprise of Nanshan (440305), a valid code.
fn code(index: usize) -> String {
    complete(&format!("91440305{index:08}")).unwrap()
}

fn entity(index: usize, region: &str, industry: &str) -> EntityRegistered {
    EntityRegistered {
        credit_code: code(index),
        kind: SubjectKind::Enterprise as i32,
        region_code: region.into(),
        industry_code: industry.into(),
        status: EntityStatus::Operating as i32,
        ..Default::default()
    }
}

/// The directory lottery hears of: subjects 0–124 in Nanshan's catering (A: 0–99, C: 100–119,
/// D: 120–124), 125–129 in another district, 130 deregistered.
async fn feed_directory(app: &App) {
    // Subject 0 first named in another district, then corrected in the same batch: the last wins.
    let mut entities = vec![entity(0, "440306", "H6210")];
    entities.extend((0..125).map(|index| entity(index, "440305", "H6210")));
    entities.extend((125..130).map(|index| entity(index, "440306", "H6210")));
    entities.push(entity(130, "440305", "H6210"));
    publish_event(&app.settings, "registry", &EntitiesRegistered { entities }).await;
    let gone = EntityStatusChanged {
        credit_code: code(130),
        old_status: EntityStatus::Operating as i32,
        new_status: EntityStatus::Deregistered as i32,
        ..Default::default()
    };
    publish_event(&app.settings, "registry", &gone).await;
    let grade = |index: usize| GradeChanged {
        credit_code: code(index),
        scheme: "public_credit".into(),
        new_grade: match index {
            100..=119 => Grade::C,
            120..=124 => Grade::D,
            _ => Grade::A,
        } as i32,
        ..Default::default()
    };
    publish_event(
        &app.settings,
        "grading",
        &GradesChanged { grades: (0..131).map(grade).collect(), ..Default::default() },
    )
    .await;
    for _ in 0..300 {
        let (subjects, graded, gone): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM subjects), (SELECT count(*) FROM subject_grades),
                    (SELECT count(*) FROM subjects WHERE status = 3)",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if (subjects, graded, gone) == (131, 131, 1) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("lottery never heard the directory");
}

fn inspector(id: &str, department: &str, qualifications: &[&str], recusals: &[String], active: bool) -> Inspector {
    Inspector {
        inspector_id: id.into(),
        name: format!("检查员{id}"),
        department_id: department.into(),
        qualifications: qualifications.iter().map(|q| q.to_string()).collect(),
        recusals: recusals.to_vec(),
        active,
        ..Default::default()
    }
}

async fn upsert(app: &App, department: &str, inspector: Inspector) -> Result<(Inspector, bool), tonic::Status> {
    let request = UpsertInspectorRequest { inspector: Some(inspector) };
    app.client(department)
        .upsert_inspector(request)
        .await
        .map(|response| response.into_inner())
        .map(|answer| (answer.inspector.unwrap(), answer.created))
}

/// Market regulation's inspectors: four qualified for food safety, one of them recused from every
/// D subject; one qualified for something else; one inactive.
async fn staff(app: &App) {
    let recused: Vec<String> = (120..125).map(code).collect();
    for (id, qualifications, recusals, active) in [
        ("m-1", &["food_safety"][..], &recused[..], true),
        ("m-2", &["food_safety", "pricing"][..], &[][..], true),
        ("m-3", &["food_safety"][..], &[][..], true),
        ("m-4", &["food_safety"][..], &[][..], true),
        ("m-5", &["pricing"][..], &[][..], true),
        ("m-6", &["food_safety"][..], &[][..], false),
    ] {
        upsert(app, MARKET, inspector(id, MARKET, qualifications, recusals, active)).await.unwrap();
    }
}

fn plan(source: &str) -> Plan {
    Plan {
        title: "2026年餐饮服务食品安全双随机抽查".into(),
        departments: vec![MARKET.into()],
        items: vec!["food_safety".into()],
        region_prefix: "440305".into(),
        industry_prefix: "H62".into(),
        kinds: vec![SubjectKind::Enterprise as i32],
        ratios: vec![
            GradeRatio { grade: Grade::A as i32, percent: 5.0 },
            GradeRatio { grade: Grade::C as i32, percent: 60.0 },
            GradeRatio { grade: Grade::D as i32, percent: 100.0 },
        ],
        default_percent: 20.0,
        inspectors_per_visit: 2,
        starts_on: today().to_string(),
        ends_on: (today() + chrono::Duration::days(60)).to_string(),
        source_plan_id: source.into(),
        ..Default::default()
    }
}

async fn create(app: &App, department: &str, plan: Plan) -> Result<Plan, tonic::Status> {
    let request = CreatePlanRequest { plan: Some(plan) };
    app.client(department).create_plan(request).await.map(|response| response.into_inner().plan.unwrap())
}

async fn draw(app: &App, department: &str, plan_id: &str, seed: &str) -> Result<DrawResponse, tonic::Status> {
    let request = DrawRequest { plan_id: plan_id.into(), seed: seed.into() };
    app.client(department).draw(request).await.map(|response| response.into_inner())
}

fn index_of(credit_code: &str) -> usize {
    (0..131).find(|index| code(*index) == credit_code).unwrap()
}

#[tokio::test]
async fn a_plan_draws_each_grade_at_its_ratio_with_eligible_inspectors_and_the_draw_verifies() {
    let app = spawn_app().await;
    feed_directory(&app).await;
    staff(&app).await;
    let created = create(&app, MARKET, plan("P-1")).await.unwrap();
    assert_eq!(created.scheme, "public_credit");
    assert_eq!(create(&app, MARKET, plan("P-1")).await.unwrap().plan_id, created.plan_id, "a retry");
    let other = Plan { title: "另一计划".into(), ..plan("P-1") };
    assert_eq!(create(&app, MARKET, other).await.unwrap_err().code(), Code::AlreadyExists);

    let drawn = draw(&app, MARKET, &created.plan_id, "2026-南山-餐饮").await.unwrap();
    assert_eq!(drawn.seed, "2026-南山-餐饮");
    assert_eq!(drawn.population, 125, "operating subjects of 440305 in H62 only");
    let indices: Vec<usize> = drawn.assignments.iter().map(|visit| index_of(&visit.credit_code)).collect();
    let count = |range: std::ops::Range<usize>| indices.iter().filter(|index| range.contains(index)).count();
    assert_eq!((count(0..100), count(100..120), count(120..125)), (5, 12, 5), "A 5%, C 60%, D 100%");
    for visit in &drawn.assignments {
        assert_eq!(visit.inspector_ids.len(), 2);
        assert_eq!(visit.state, "pending");
        assert!(visit.inspector_ids.iter().all(|id| ["m-1", "m-2", "m-3", "m-4"].contains(&id.as_str())), "{visit:?}");
        if index_of(&visit.credit_code) >= 120 {
            assert!(!visit.inspector_ids.contains(&"m-1".to_owned()), "m-1 is recused from D subjects");
        }
    }

    // The same plan drawn again is the same draw; another seed is refused.
    let again = draw(&app, MARKET, &created.plan_id, "").await.unwrap();
    assert_eq!((again.draw_id.as_str(), again.assignments.len()), (drawn.draw_id.as_str(), drawn.assignments.len()));
    let redraw = draw(&app, MARKET, &created.plan_id, "another").await.unwrap_err();
    assert_eq!(redraw.code(), Code::FailedPrecondition);
    assert!(redraw.message().contains("drawn once"), "{}", redraw.message());
    // Another plan with the same inputs and seed draws the same subjects and inspectors.
    let twin = create(&app, MARKET, plan("P-2")).await.unwrap();
    let twin_drawn = draw(&app, MARKET, &twin.plan_id, "2026-南山-餐饮").await.unwrap();
    assert_eq!(twin_drawn.inputs_digest, drawn.inputs_digest);
    let teams = |draw: &DrawResponse| -> Vec<(String, Vec<String>)> {
        draw.assignments.iter().map(|visit| (visit.credit_code.clone(), visit.inspector_ids.clone())).collect()
    };
    assert_eq!(teams(&twin_drawn), teams(&drawn));
    assert!(twin_drawn.assignments.iter().all(|visit| visit.merged_plan_ids == [created.plan_id.clone()]));

    let verify = |draw_id: String| {
        let mut client = app.client(MARKET);
        async move { client.verify_draw(VerifyDrawRequest { draw_id }).await.unwrap().into_inner() }
    };
    let verified = verify(drawn.draw_id.clone()).await;
    assert!(verified.reproducible, "{}", verified.difference);
    // A visit altered after the draw is caught, naming it; so are altered inputs.
    let altered = &drawn.assignments[0];
    sqlx::query("UPDATE assignments SET inspector_ids = '{m-3,m-9}' WHERE assignment_id = $1::uuid")
        .bind(&altered.assignment_id)
        .execute(&app.pool)
        .await
        .unwrap();
    let caught = verify(drawn.draw_id.clone()).await;
    assert!(!caught.reproducible && caught.difference.contains(&altered.credit_code), "{}", caught.difference);
    sqlx::query("UPDATE draws SET grades[1] = 4 WHERE draw_id = $1::uuid")
        .bind(&twin_drawn.draw_id)
        .execute(&app.pool)
        .await
        .unwrap();
    let tampered = verify(twin_drawn.draw_id.clone()).await;
    assert!(!tampered.reproducible && tampered.difference.contains("altered"), "{}", tampered.difference);
    app.service.stop().await;
}

#[tokio::test]
async fn results_are_recorded_once_announced_and_published() {
    let app = spawn_app().await;
    feed_directory(&app).await;
    staff(&app).await;
    let created = create(&app, MARKET, Plan { ratios: vec![], default_percent: 4.0, ..plan("P-3") }).await.unwrap();
    let drawn = draw(&app, MARKET, &created.plan_id, "").await.unwrap();
    assert_eq!(drawn.seed.len(), 32, "the platform chose and recorded a seed");
    assert_eq!(drawn.assignments.len(), 6, "4% of each grade, rounded up: 4 of 100 A, 1 of 20 C, 1 of 5 D");
    let visit = &drawn.assignments[0];

    let result = |outcome: &str| RecordResultRequest {
        assignment_id: visit.assignment_id.clone(),
        inspected_on: today().to_string(),
        outcome: outcome.into(),
        problems_found: true,
        details: "后厨卫生不达标，已责令整改".into(),
    };
    let outsider = app.client(ENV).record_result(result("发现问题已责令整改")).await.unwrap_err();
    assert_eq!(outsider.code(), Code::PermissionDenied);
    let done: Assignment =
        app.client(MARKET).record_result(result("发现问题已责令整改")).await.unwrap().into_inner().assignment.unwrap();
    assert_eq!(done.state, "done");
    assert_eq!(done.publish_due_on, Calendar::official().add_working_days(today(), 20).to_string());
    assert!(!done.overdue);
    let retried = app.client(MARKET).record_result(result("发现问题已责令整改")).await.unwrap();
    assert_eq!(retried.into_inner().assignment.unwrap().state, "done");
    let changed = app.client(MARKET).record_result(result("未发现问题")).await.unwrap_err();
    assert_eq!(changed.code(), Code::FailedPrecondition);
    let envelopes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT envelope FROM outbox WHERE event_type = $1")
        .bind("xinyong.events.v1.InspectionResultRecorded")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(envelopes.len(), 1, "announced once");
    let event = InspectionResultRecorded::decode(Envelope::decode(envelopes[0].as_slice()).unwrap().payload.as_slice())
        .unwrap();
    assert_eq!((event.credit_code.as_str(), event.department_id.as_str()), (visit.credit_code.as_str(), MARKET));
    assert!(event.problems_found && event.outcome == "发现问题已责令整改");

    let future = RecordResultRequest { inspected_on: "2999-01-01".into(), outcome: String::new(), ..result("") };
    let future = app.client(MARKET).record_result(future).await.unwrap_err();
    let fields: Vec<String> =
        future.get_details_bad_request().unwrap().field_violations.into_iter().map(|v| v.field).collect();
    assert_eq!(fields, ["inspected_on", "outcome"]);

    let publish = PublishResultsRequest { plan_id: created.plan_id.clone() };
    let published = app.client(MARKET).publish_results(publish.clone()).await.unwrap().into_inner();
    assert_eq!((published.published, published.pending), (1, 5));
    let nothing_new = app.client(MARKET).publish_results(publish).await.unwrap().into_inner();
    assert_eq!((nothing_new.published, nothing_new.pending), (0, 5));

    // An inspector's visits, for the inspector's department, in pages.
    let inspector = visit.inspector_ids[0].clone();
    let mine = ListAssignmentsRequest { inspector_id: inspector.clone(), page_size: 1, ..Default::default() };
    let page = app.client(MARKET).list_assignments(mine).await.unwrap().into_inner();
    assert_eq!(page.assignments.len(), 1);
    assert!(page.assignments[0].inspector_ids.contains(&inspector));
    let of_plan = ListAssignmentsRequest { plan_id: created.plan_id.clone(), ..Default::default() };
    let all = app.client(MARKET).list_assignments(of_plan.clone()).await.unwrap().into_inner().assignments;
    assert_eq!(all.iter().filter(|visit| visit.state == "published").count(), 1);
    assert_eq!(app.client(ENV).list_assignments(of_plan).await.unwrap_err().code(), Code::PermissionDenied);
    let theirs = ListAssignmentsRequest { inspector_id: inspector, ..Default::default() };
    assert_eq!(app.client(ENV).list_assignments(theirs).await.unwrap_err().code(), Code::PermissionDenied);

    // A second result, left unpublished past its day: overdue, in the list and the statistics.
    let late = &drawn.assignments[1];
    let second = RecordResultRequest { assignment_id: late.assignment_id.clone(), ..result("未发现问题") };
    app.client(MARKET).record_result(RecordResultRequest { problems_found: false, ..second }).await.unwrap();
    sqlx::query("UPDATE assignments SET publish_due_on = $2 WHERE assignment_id = $1::uuid")
        .bind(&late.assignment_id)
        .bind(today() - chrono::Duration::days(1))
        .execute(&app.pool)
        .await
        .unwrap();
    let of_plan = ListAssignmentsRequest { plan_id: created.plan_id.clone(), ..Default::default() };
    let listed = app.client(MARKET).list_assignments(of_plan).await.unwrap().into_inner().assignments;
    assert!(listed.iter().find(|visit| visit.assignment_id == late.assignment_id).unwrap().overdue);
    let statistics = |department: &str, request: GetInspectionStatisticsRequest| {
        let mut client = app.client(department);
        async move { client.get_inspection_statistics(request).await }
    };
    let mine = statistics(MARKET, GetInspectionStatisticsRequest::default()).await.unwrap().into_inner();
    assert_eq!(mine.plans.len(), 1);
    let plan = &mine.plans[0];
    assert_eq!(
        (plan.population, plan.drawn, plan.done, plan.problems_found, plan.published, plan.publication_overdue),
        (125, 6, 2, 1, 1, 1)
    );
    assert_eq!((mine.drawn, mine.done, mine.publication_overdue), (6, 2, 1));
    assert!(statistics(ENV, GetInspectionStatisticsRequest::default()).await.unwrap().into_inner().plans.is_empty());
    let later = GetInspectionStatisticsRequest {
        from: (today() + chrono::Duration::days(61)).to_string(),
        ..Default::default()
    };
    assert!(statistics(MARKET, later).await.unwrap().into_inner().plans.is_empty(), "the plan ended before");
    let admin = (app.client_for)(Caller::new("platform-admin", vec!["admin".into()]));
    let everyone = admin.clone().get_inspection_statistics(GetInspectionStatisticsRequest::default()).await;
    assert_eq!(everyone.unwrap().into_inner().plans.len(), 1);
    let backwards =
        GetInspectionStatisticsRequest { from: "2026-12-01".into(), to: "2026-01-01".into(), ..Default::default() };
    let backwards = statistics(MARKET, backwards).await.unwrap_err();
    assert_eq!(backwards.get_details_bad_request().unwrap().field_violations[0].field, "to");
    app.service.stop().await;
}

#[tokio::test]
async fn bad_plans_name_the_field_and_draws_that_cannot_be_staffed_say_why() {
    let app = spawn_app().await;
    let empty = create(&app, MARKET, Plan { inspectors_per_visit: 1, default_percent: 120.0, ..Default::default() })
        .await
        .unwrap_err();
    let fields: Vec<String> =
        empty.get_details_bad_request().unwrap().field_violations.into_iter().map(|v| v.field).collect();
    assert_eq!(
        fields,
        [
            "plan.title",
            "plan.source_plan_id",
            "plan.default_percent",
            "plan.inspectors_per_visit",
            "plan.starts_on",
            "plan.ends_on"
        ]
    );
    let crowded = Plan { departments: vec![MARKET.into(), ENV.into(), "tax-440305".into()], ..plan("P-J") };
    let crowded = create(&app, MARKET, crowded).await.unwrap_err();
    let fields: Vec<String> =
        crowded.get_details_bad_request().unwrap().field_violations.into_iter().map(|v| v.field).collect();
    assert_eq!(fields, ["plan.inspectors_per_visit"], "two inspectors cannot cover three departments");
    let elsewhere = create(&app, ENV, Plan { departments: vec![MARKET.into()], ..plan("P-X") }).await.unwrap_err();
    assert_eq!(elsewhere.code(), Code::PermissionDenied);
    let bad_recusal = upsert(&app, MARKET, inspector("m-9", MARKET, &[], &["nope".into()], true)).await.unwrap_err();
    assert_eq!(bad_recusal.code(), Code::InvalidArgument);
    let (_, created) = upsert(&app, MARKET, inspector("m-1", MARKET, &["food_safety"], &[], true)).await.unwrap();
    assert!(created);
    let (_, created) = upsert(&app, MARKET, inspector("m-1", MARKET, &["food_safety"], &[], true)).await.unwrap();
    assert!(!created, "the same id again replaces");
    let taken = upsert(&app, ENV, inspector("m-1", ENV, &[], &[], true)).await.unwrap_err();
    assert_eq!(taken.code(), Code::PermissionDenied, "another department's inspector");

    // Market regulation's list, last touched a month ago, is stale; the metric says so.
    sqlx::query("UPDATE inspectors SET updated_at = now() - interval '30 days'").execute(&app.pool).await.unwrap();
    let stale = "xinyong_lottery_inspector_lists_stale{component=\"lottery\"} 1";
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = xinyong_platform::testing::http_get(app.admin, "/metrics").await;
        if metrics.lines().any(|line| line == stale) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metrics.lines().any(|line| line == stale), "{metrics}");

    let early = create(&app, MARKET, plan("P-4")).await.unwrap();
    let nobody = draw(&app, MARKET, &early.plan_id, "").await.unwrap_err();
    assert_eq!(nobody.code(), Code::FailedPrecondition);
    assert!(nobody.message().contains("no operating subjects"), "{}", nobody.message());
    feed_directory(&app).await;
    let short = draw(&app, MARKET, &early.plan_id, "s").await.unwrap_err();
    assert_eq!(short.code(), Code::FailedPrecondition);
    assert!(short.message().contains("eligible inspectors"), "{}", short.message());
    assert_eq!(draw(&app, ENV, &early.plan_id, "s").await.unwrap_err().code(), Code::PermissionDenied);
    app.service.stop().await;
}

#[tokio::test]
async fn listed_subjects_are_drawn_at_the_plans_listed_ratio_and_a_draw_keeps_who_was_listed() {
    let app = spawn_app().await;
    feed_directory(&app).await;
    staff(&app).await;
    // Grade-A subjects 0–5 stand on the abnormal-operation list; 0 twice (two records), and one of
    // its listings ends; 5's only listing ends; 6 is on the courts' list, which does not count.
    // Sanctions then announces standing listings again (after an upgrade): 3's is still one listing,
    // and 0's first, which ended, stays ended. A change without its record (sent before sanctions
    // named it) is passed over.
    let listing = |index: usize, record: &str, list: ListKind, listed: bool| ListingChanged {
        credit_code: code(index),
        list: list as i32,
        listed,
        record_id: record.into(),
        ..Default::default()
    };
    let abnormal = ListKind::AbnormalOperation;
    let mut events = vec![listing(0, "r0a", abnormal, true)];
    events.extend((0..6).map(|index| listing(index, &format!("r{index}"), abnormal, true)));
    events.push(listing(0, "r0a", abnormal, false));
    events.push(listing(5, "r5", abnormal, false));
    events.push(listing(6, "r6", ListKind::DishonestJudgmentDebtor, true));
    events.push(listing(7, "", abnormal, true));
    events.push(listing(0, "r0a", abnormal, true));
    events.push(listing(3, "r3", abnormal, true));
    // Last, on the courts' list: once it is there, everything before it was handled.
    events.push(listing(9, "r9", ListKind::DishonestJudgmentDebtor, true));
    for event in &events {
        publish_event(&app.settings, "sanctions", event).await;
    }
    for _ in 0..300 {
        let last: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM listings WHERE record_id = 'r9')")
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kept: Vec<(String, bool)> =
        sqlx::query_as("SELECT record_id, ended FROM listings ORDER BY record_id").fetch_all(&app.pool).await.unwrap();
    let expected_kept = [("r0", false), ("r0a", true), ("r1", false), ("r2", false), ("r3", false), ("r4", false)]
        .into_iter()
        .chain([("r5", true), ("r6", false), ("r9", false)])
        .map(|(record, ended)| (record.to_owned(), ended))
        .collect::<Vec<_>>();
    assert_eq!(kept, expected_kept);
    let everyone_listed = Plan { listed_percent: 100.0, ..plan("L-1") };
    let created = create(&app, MARKET, everyone_listed).await.unwrap();
    assert_eq!(created.listed_percent, 100.0);
    let drawn = draw(&app, MARKET, &created.plan_id, "2026-名录").await.unwrap();
    let indices: Vec<usize> = drawn.assignments.iter().map(|visit| index_of(&visit.credit_code)).collect();
    for listed in 0..5 {
        assert!(indices.contains(&listed), "listed subject {listed} is always drawn: {indices:?}");
    }
    // The other 95 grade-A subjects at 5%: 5 more, wherever they fall; C and D as before.
    let count = |range: std::ops::Range<usize>| indices.iter().filter(|index| range.contains(index)).count();
    assert_eq!((count(0..100), count(100..120), count(120..125)), (5 + 5, 12, 5), "{indices:?}");
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT unnest(listed) FROM draws WHERE draw_id = $1::uuid ORDER BY 1")
            .bind(&drawn.draw_id)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let mut expected: Vec<String> = (0..5).map(code).collect();
    expected.sort();
    assert_eq!(stored, expected, "the draw keeps who was listed");
    // Verification reruns it with the listings as they were, not as they are now.
    publish_event(&app.settings, "sanctions", &listing(1, "r1", abnormal, false)).await;
    let verified = app
        .client(MARKET)
        .verify_draw(VerifyDrawRequest { draw_id: drawn.draw_id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(verified.reproducible, "{}", verified.difference);
    // Without the rule the listed are grade A like the rest: 5 of those 100 in all.
    let by_grade = create(&app, MARKET, plan("L-2")).await.unwrap();
    let drawn = draw(&app, MARKET, &by_grade.plan_id, "2026-名录").await.unwrap();
    let grade_a = drawn.assignments.iter().filter(|visit| index_of(&visit.credit_code) < 100).count();
    assert_eq!(grade_a, 5);
    let bad = create(&app, MARKET, Plan { listed_percent: 120.0, ..plan("L-3") }).await.unwrap_err();
    assert_eq!(bad.get_error_details().bad_request().unwrap().field_violations[0].field, "plan.listed_percent");
    app.service.stop().await;
}
