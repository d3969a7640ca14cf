//! Grades that follow the events, the sweep, the read model, recompute and statistics.

use std::time::Duration;

use chrono::{Months, NaiveDate};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;
use xinyong_grading::grades::{FENCE_FOR_CHUNKS, GradeRow, stored_grade};
use xinyong_grading::jobs;
use xinyong_platform::bus::{self, Announce};
use xinyong_platform::testing::{TcpProxy, redis_address, redis_url};
use xinyong_proto::common::v1::{DateRange, EntityStatus, Grade, Nature, SubjectKind};
use xinyong_proto::events::v1::{
    EntitiesRegistered, EntityStatusChanged, EntityUpdated, Envelope, GradeChanged, GradesChanged, RecordCorrected,
    RecordDisputeChanged, RecordFacts, RecordWithdrawn, RecordsIngested,
};
use xinyong_proto::grading::v1::{
    GetGradeHistoryRequest, GetGradeRequest, GetStatisticsRequest, GradeInfo, PublishRuleSetRequest, RecomputeRequest,
    RecomputeResponse,
};
use xinyong_proto::ingestion::v1::PenaltyKind;

use crate::support::{App, Client, code, days_ago, industry_risk, record, registered, spawn_app, spawn_app_with};

const RECORD: &str = "0190f3a2-7c1e-7000-8000-000000000001";
const OTHER_RECORD: &str = "0190f3a2-7c1e-7000-8000-000000000002";

async fn history(app: &App, credit_code: &str, page_size: i32, page_token: &str) -> (Vec<i32>, String) {
    let page = app
        .plain
        .clone()
        .get_grade_history(GetGradeHistoryRequest {
            credit_code: credit_code.into(),
            scheme: String::new(),
            page_size,
            page_token: page_token.into(),
        })
        .await
        .unwrap()
        .into_inner();
    (page.grades.iter().map(|grade| grade.grade).collect(), page.next_page_token)
}

/// Grading's announcements so far, in order: each `GradeChanged`, and each `GradesChanged` as sent.
async fn announced(app: &App) -> (Vec<GradeChanged>, Vec<GradesChanged>) {
    use prost::Message;
    let envelopes: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT envelope FROM outbox ORDER BY seq").fetch_all(&app.pool).await.unwrap();
    let (mut single, mut bulk) = (Vec::new(), Vec::new());
    for bytes in envelopes {
        let envelope = Envelope::decode(bytes.as_slice()).unwrap();
        if let Some(event) = bus::outbox::decode::<GradeChanged>(&envelope) {
            single.push(event.unwrap());
        } else if let Some(event) = bus::outbox::decode::<GradesChanged>(&envelope) {
            bulk.push(event.unwrap());
        }
    }
    (single, bulk)
}

#[tokio::test]
async fn a_record_moves_the_grade_with_its_reasons_and_a_correction_or_withdrawal_moves_it_back() {
    let app = spawn_app().await;
    let subject = code("110108", 1);
    app.register(&subject, "110108").await;
    let first = app.grade_becomes(&subject, Grade::A).await;
    assert_eq!((first.scheme.as_str(), first.rule_set_version), ("public_credit", 1));
    assert_eq!(first.reasons[0].code, "no_dishonesty");

    let serious = record(&subject, RECORD, Nature::SeriousDishonesty, &days_ago(10));
    app.publish("ingestion", &serious).await;
    let graded = app.grade_becomes(&subject, Grade::C).await;
    assert_eq!(graded.reasons[0].code, "serious_dishonesty");
    assert_eq!(graded.reasons[0].text, "存在严重失信行为记录", "the text of the version's rule");
    assert_eq!(graded.reasons[0].record_ids, [RECORD], "the record behind the grade");
    // Announced with the grade it replaced and the reasons as answered.
    let (single, _) = announced(&app).await;
    let change = single
        .iter()
        .find(|change| change.scheme == "public_credit" && change.new_grade == Grade::C as i32)
        .expect("a GradeChanged to C");
    assert_eq!(
        (change.credit_code.as_str(), change.old_grade, change.rule_set_version),
        (subject.as_str(), Grade::A as i32, 1)
    );
    assert_eq!(
        (change.reasons[0].text.as_str(), change.reasons[0].record_ids.as_slice()),
        ("存在严重失信行为记录", [RECORD.to_owned()].as_slice())
    );
    // The same record announced again changes nothing.
    app.publish("ingestion", &serious).await;

    // The provider corrects it to general dishonesty: B.
    let corrected = RecordCorrected {
        credit_code: subject.clone(),
        record_id: RECORD.into(),
        version: 2,
        reason: "定性有误".into(),
        facts: Some(RecordFacts {
            nature: Nature::GeneralDishonesty as i32,
            version: 2,
            ..serious.facts.clone().unwrap()
        }),
    };
    app.publish("ingestion", &corrected).await;
    let corrected_grade = app.grade_becomes(&subject, Grade::B).await;
    assert_eq!(corrected_grade.reasons[0].code, "general_dishonesty_up_to_5");

    // An objection is filed: the record still counts, and is marked.
    let disputed = RecordDisputeChanged {
        credit_code: subject.clone(),
        record_id: RECORD.into(),
        objection_id: "obj-1".into(),
        disputed: true,
    };
    app.publish("objections", &disputed).await;
    let marked = app
        .grade_when(&subject, "", |info| info.reasons.first().is_some_and(|r| !r.disputed_record_ids.is_empty()))
        .await;
    let marked = marked.unwrap();
    assert_eq!(
        (marked.grade, marked.reasons[0].disputed_record_ids.clone()),
        (Grade::B as i32, vec![RECORD.to_owned()])
    );

    // Withdrawn: back to A.
    let withdrawn =
        RecordWithdrawn { credit_code: subject.clone(), record_id: RECORD.into(), reason: "撤销".into(), version: 3 };
    app.publish("ingestion", &withdrawn).await;
    app.grade_becomes(&subject, Grade::A).await;

    // Every change is in the history, newest first, in pages.
    let (first_page, token) = history(&app, &subject, 3, "").await;
    assert_eq!(first_page, [Grade::A as i32, Grade::B as i32, Grade::B as i32]);
    let (second_page, end) = history(&app, &subject, 3, &token).await;
    assert_eq!(second_page, [Grade::C as i32, Grade::A as i32], "one C: the repeated record was no change");
    assert!(end.is_empty());
    // A page that ends with the current grade goes on with the grades it replaced.
    let (current, token) = history(&app, &subject, 1, "").await;
    let (replaced, _) = history(&app, &subject, 1, &token).await;
    assert_eq!((current, replaced), (vec![Grade::A as i32], vec![Grade::B as i32]));
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_business_licence_is_d_even_when_a_record_arrives_before_the_registration() {
    let app = spawn_app().await;
    let subject = code("110108", 2);
    // Streams are read independently: ingestion's event may come first.
    app.publish("ingestion", &record(&subject, RECORD, Nature::GeneralDishonesty, &days_ago(3))).await;
    app.grade_becomes(&subject, Grade::B).await;
    app.register(&subject, "110108").await;
    let changed = EntityStatusChanged {
        credit_code: subject.clone(),
        old_status: EntityStatus::Operating as i32,
        new_status: EntityStatus::LicenceRevoked as i32,
        effective_on: days_ago(0),
        reason: "吊销营业执照".into(),
    };
    app.publish("registry", &changed).await;
    let revoked = app.grade_becomes(&subject, Grade::D).await;
    assert_eq!(revoked.reasons[0].code, "business_licence_revoked");
    assert!(revoked.reasons[0].record_ids.is_empty(), "the registry's status, not a record");
    // The registration arriving late did not undo anything: the region is known now.
    let region: String = sqlx::query_scalar("SELECT region_code FROM subjects WHERE credit_code = $1")
        .bind(&subject)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(region, "110108");
    app.stop().await;
}

#[tokio::test]
async fn a_change_registration_moves_the_subject_in_the_statistics_not_its_grade() {
    let app = spawn_app().await;
    let subject = code("110108", 5);
    app.register(&subject, "110108").await;
    app.grade_becomes(&subject, Grade::A).await;
    let updated = EntityUpdated {
        credit_code: subject.clone(),
        name: "测试科技有限公司".into(),
        kind: SubjectKind::Enterprise as i32,
        region_code: "110105".into(),
        industry_code: "I6510".into(),
        business_scope: "软件开发".into(),
        changed_fields: vec!["name".into(), "region_code".into(), "industry_code".into()],
    };
    app.publish("registry", &updated).await;
    let mut placed = (String::new(), String::new());
    for _ in 0..200 {
        placed = sqlx::query_as("SELECT region_code, industry_code FROM subjects WHERE credit_code = $1")
            .bind(&subject)
            .fetch_one(&app.pool)
            .await
            .unwrap();
        if placed.0 == "110105" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(placed, ("110105".to_owned(), "I6510".to_owned()));
    let changes: i64 = sqlx::query_scalar("SELECT count(*) FROM grade_changes WHERE credit_code = $1")
        .bind(&subject)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let first_grades: i64 = sqlx::query_scalar("SELECT count(*) FROM grades WHERE credit_code = $1")
        .bind(&subject)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(changes, first_grades, "only the first grades: the change regraded nothing");
    app.stop().await;
}

#[tokio::test]
async fn a_regrade_of_a_code_without_a_subject_row_makes_the_row_locks_it_and_grades_it_once() {
    let app = spawn_app().await;
    let (grader, _) = app.grader_and_cache().await;
    let subject = code("110108", 4);
    let today = xinyong_domain::calendar::today();
    let mut first = app.pool.begin().await.unwrap();
    let regraded = grader
        .regrade(&mut first, std::slice::from_ref(&subject), today, "test", Announce::OneBatch, None)
        .await
        .unwrap();
    // A first grade is written with a plain insert, which only the lock on the subject row makes
    // safe: a second regrade of the same code waits for this one instead of failing on the key.
    let second = {
        let pool = app.pool.clone();
        let grader = grader.clone();
        let subject = subject.clone();
        tokio::spawn(async move {
            let mut transaction = pool.begin().await.unwrap();
            let regraded =
                grader.regrade(&mut transaction, &[subject], today, "test", Announce::OneBatch, None).await.unwrap();
            transaction.commit().await.unwrap();
            regraded.changed.len()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!second.is_finished(), "the second regrade waits for the first one's lock");
    first.commit().await.unwrap();
    assert_eq!(regraded.changed.len(), 2, "a first grade under each shipped scheme");
    assert_eq!(second.await.unwrap(), 0, "the second regrade finds the grades in place");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM subjects WHERE credit_code = $1")
        .bind(&subject)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    // A first grade is the subject's whole history so far, stored once: in `grades`.
    let (stored, in_history): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM grade_changes WHERE credit_code = $1),
                (SELECT count(*) FROM grade_history WHERE credit_code = $1)",
    )
    .bind(&subject)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((stored, in_history), (2, 0));
}

/// Before the current grade ended its own history, every grade was written twice: in `grades`
/// and as the newest row of `grade_history`. The migration keeps each change once, in order.
#[tokio::test]
async fn grades_stored_twice_before_the_current_grade_ended_its_history_are_kept_once() {
    let database = xinyong_platform::testing::TestDatabase::new().await;
    let pool = database.pool_before("grading", &xinyong_grading::MIGRATOR, 20261124000001).await;
    let (first, second) = (code("110108", 20), code("110108", 21));
    // `first`: A, then B; `second`: C only.
    for (subject, old_grade, grade, cause) in [
        (&first, None, Grade::A, "EntityRegistered"),
        (&first, Some(Grade::A as i16), Grade::B, "RecordIngested"),
        (&second, None, Grade::C, "EntityRegistered"),
    ] {
        sqlx::query(
            "INSERT INTO grade_history (credit_code, scheme, old_grade, grade, rule_set_version, reasons, as_of, cause)
             VALUES ($1, 'public_credit', $2, $3, 1, '[]', current_date, $4)",
        )
        .bind(subject)
        .bind(old_grade)
        .bind(grade as i16)
        .bind(cause)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO grades (credit_code, scheme, grade, rule_set_version, reasons, digest, as_of)
             VALUES ($1, 'public_credit', $2, 1, '[]', 0, current_date)
             ON CONFLICT (credit_code, scheme) DO UPDATE SET grade = excluded.grade",
        )
        .bind(subject)
        .bind(grade as i16)
        .execute(&pool)
        .await
        .unwrap();
    }

    xinyong_platform::db::migrate(&pool, &xinyong_grading::MIGRATOR).await.unwrap();
    let changes: Vec<(String, Option<i16>, i16, String)> =
        sqlx::query_as("SELECT credit_code, old_grade, grade, cause FROM grade_changes ORDER BY credit_code, id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let (a, b, c) = (Grade::A as i16, Grade::B as i16, Grade::C as i16);
    assert_eq!(
        changes,
        [
            (first.clone(), None, a, "EntityRegistered".into()),
            (first.clone(), Some(a), b, "RecordIngested".into()),
            (second.clone(), None, c, "EntityRegistered".into()),
        ]
    );
    let in_history: Vec<(String, i16)> =
        sqlx::query_as("SELECT credit_code, grade FROM grade_history").fetch_all(&pool).await.unwrap();
    assert_eq!(in_history, [(first.clone(), a)], "only the grade since replaced");
    // The grade that was current stays last, and is moved into the history after every older one.
    let newest: (i64, bool) = sqlx::query_as(
        "WITH moved AS (
             INSERT INTO grade_history (credit_code, scheme, old_grade, grade, rule_set_version, reasons, as_of, cause)
             SELECT credit_code, scheme, old_grade, grade, rule_set_version, reasons, as_of, cause
             FROM grades WHERE credit_code = $1 RETURNING id)
         SELECT (SELECT max(id) FROM grade_changes WHERE credit_code = $1),
                (SELECT id FROM moved) > (SELECT max(id) FROM grade_history WHERE credit_code = $1)",
    )
    .bind(&first)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(newest, (i64::MAX, true));
    pool.close().await;
}

/// A subject graded C for a serious record decided 20 days ago, and the day that record leaves
/// the window, when the sweep regrades it.
async fn subject_due_for_sweep(app: &App, number: u32) -> (String, NaiveDate) {
    let subject = code("110108", number);
    app.register(&subject, "110108").await;
    let decided = days_ago(20);
    app.publish("ingestion", &record(&subject, RECORD, Nature::SeriousDishonesty, &decided)).await;
    app.grade_becomes(&subject, Grade::C).await;
    (subject, NaiveDate::parse_from_str(&decided, "%Y-%m-%d").unwrap() + Months::new(12))
}

/// A sweep that ends part way, however it ends, lets go of its lock: otherwise no replica could
/// sweep again until the connection that held it closed.
#[tokio::test]
async fn a_sweep_cut_off_part_way_lets_the_next_one_run() {
    let app = spawn_app().await;
    let (_, due) = subject_due_for_sweep(&app, 61).await;
    let (grader, cache) = app.grader_and_cache().await;
    // A sweep holds its lock and runs its work on connections of its own.
    let pool = app.own_pool(4, |options| options).await;

    // The sweep's regrade stalls behind a recompute chunk's fence, held here; then its task goes.
    let mut chunk = app.pool.begin().await.unwrap();
    sqlx::query(FENCE_FOR_CHUNKS).execute(&mut *chunk).await.unwrap();
    let (sweep_pool, sweep_grader, sweep_cache) = (pool.clone(), grader.clone(), cache.clone());
    let cut_off = tokio::spawn(async move { jobs::sweep(&sweep_pool, &sweep_grader, &sweep_cache, due).await });
    someone_waits_for_a_lock(&app, "relation").await;
    cut_off.abort();
    assert!(cut_off.await.unwrap_err().is_cancelled());
    chunk.rollback().await.unwrap();

    // Another replica, on connections of its own, can take the sweep.
    let mut free = false;
    for _ in 0..250 {
        let mut other = app.pool.begin().await.unwrap();
        free = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('grading:sweep'))")
            .fetch_one(&mut *other)
            .await
            .unwrap();
        other.rollback().await.unwrap();
        if free {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(free, "the cut-off sweep let go of its lock");
    let next = jobs::sweep(&app.pool, &grader, &cache, due).await.unwrap().expect("the next sweep runs");
    assert_eq!((next.subjects, next.changed), (1, 2), "it does the day's work");
    app.stop().await;
}

/// The admin port shows the last day the sweep is known to have completed, so that a day left
/// unswept can raise an alert, how many subjects hold each grade of the schemes that are not
/// internal, and counts the sweeps that could not run.
#[tokio::test]
async fn the_sweeper_shows_the_day_it_swept_the_grades_held_and_what_failed() {
    let app = spawn_app().await;
    let today = xinyong_domain::calendar::today;
    let metrics = xinyong_platform::metrics::Metrics::new("grading-test");
    let sweep_metrics = jobs::SweepMetrics::register(&metrics);
    let sweeper = async |pool: sqlx::PgPool| {
        let (grader, cache) = app.grader_and_cache().await;
        let store = xinyong_grading::store::Store::new(pool.clone());
        jobs::Sweeper { pool, store, grader, cache, metrics: sweep_metrics.clone() }
    };
    // The first round runs at once; the next would come in an hour.
    let run_once = async |sweeper: jobs::Sweeper, shown: &str| {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(sweeper.run(Duration::from_secs(3600), today, async {
            let _ = stopped.await;
        }));
        for _ in 0..250 {
            if metrics.encode().contains(shown) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop.send(());
        running.await.unwrap();
        assert!(metrics.encode().contains(shown), "{shown} not in\n{}", metrics.encode());
    };

    // Grades to count: public_credit C for one subject, A for another; and an internal scheme's,
    // which are not counted.
    subject_due_for_sweep(&app, 81).await;
    app.register(&code("110108", 82), "110108").await;
    app.grade_becomes(&code("110108", 82), Grade::A).await;
    app.risk_office
        .clone()
        .publish_rule_set(PublishRuleSetRequest { scheme: String::new(), document: industry_risk() })
        .await
        .unwrap();
    app.register(&code("110108", 83), "110108").await;
    app.grade_becomes(&code("110108", 83), Grade::A).await;

    let began = jobs::start_of(today());
    let now = chrono::Utc::now().timestamp();
    assert!((0..86_400).contains(&(now - began)), "today began less than a day ago");
    run_once(
        sweeper(app.pool.clone()).await,
        &format!("xinyong_grading_swept_day_timestamp_seconds{{component=\"grading-test\"}} {began}"),
    )
    .await;
    assert!(jobs::swept(&app.pool, today()).await.unwrap(), "the day is recorded as swept");
    assert!(metrics.encode().contains("xinyong_grading_sweep_failures_total{component=\"grading-test\"} 0"));
    let shown = metrics.encode();
    let held = |scheme: &str, grade: &str| {
        let sample =
            format!("xinyong_grading_subjects{{component=\"grading-test\",scheme=\"{scheme}\",grade=\"{grade}\"}} ");
        shown.lines().find_map(|line| line.strip_prefix(sample.as_str())).map(|count| count.parse::<i64>().unwrap())
    };
    assert_eq!(
        ["A", "B", "C", "D"].map(|grade| held("public_credit", grade)),
        [Some(2), Some(0), Some(1), Some(0)],
        "public_credit's subjects per grade in\n{shown}"
    );
    assert!(!shown.contains("food_industry_risk"), "an internal scheme's grades are not shown:\n{shown}");

    // A sweeper that cannot see grading's tables.
    let broken = app.own_pool(2, |options| options.options([("search_path", "no_such_schema")])).await;
    run_once(sweeper(broken).await, "xinyong_grading_sweep_failures_total{component=\"grading-test\"} 1").await;
    app.stop().await;
}

#[tokio::test]
async fn the_sweep_moves_a_grade_when_a_record_ages_out_and_running_it_twice_changes_nothing() {
    let app = spawn_app().await;
    let (subject, leaves) = subject_due_for_sweep(&app, 3).await;
    let (grader, cache) = app.grader_and_cache().await;

    let early = jobs::sweep(&app.pool, &grader, &cache, leaves.pred_opt().unwrap()).await.unwrap().unwrap();
    assert_eq!(early, jobs::Progress::default(), "nothing is due the day before");
    let swept = jobs::sweep(&app.pool, &grader, &cache, leaves).await.unwrap().unwrap();
    // Both schemes were due that day; public_credit goes back to A (district_supervision too).
    assert_eq!((swept.subjects, swept.changed), (1, 2));
    let aged = app.grade_becomes(&subject, Grade::A).await;
    assert_eq!(aged.as_of, leaves.to_string());
    let again = jobs::sweep(&app.pool, &grader, &cache, leaves).await.unwrap().unwrap();
    assert_eq!(again, jobs::Progress::default(), "a second run finds nothing due");
    assert!(jobs::swept(&app.pool, leaves).await.unwrap());
    let causes: Vec<String> = sqlx::query_scalar(
        "SELECT cause FROM grade_changes WHERE credit_code = $1 AND scheme = 'public_credit' ORDER BY id",
    )
    .bind(&subject)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(causes, ["EntityRegistered", "RecordIngested", "sweep"]);
    // Of those, the grades since replaced are in `grade_history`; the current one only in `grades`.
    let replaced: Vec<(Option<i16>, i16, String)> = sqlx::query_as(
        "SELECT old_grade, grade, cause FROM grade_history
         WHERE credit_code = $1 AND scheme = 'public_credit' ORDER BY id",
    )
    .bind(&subject)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let (a, c) = (Grade::A as i16, Grade::C as i16);
    assert_eq!(replaced, [(None, a, "EntityRegistered".into()), (Some(a), c, "RecordIngested".into())]);
    let current: (Option<i16>, i16, String) = sqlx::query_as(
        "SELECT old_grade, grade, cause FROM grades WHERE credit_code = $1 AND scheme = 'public_credit'",
    )
    .bind(&subject)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(current, (Some(c), a, "sweep".into()));
    app.stop().await;
}

#[tokio::test]
async fn grades_are_answered_from_postgres_when_redis_is_down() {
    let proxy = TcpProxy::start(redis_address(&redis_url())).await;
    let proxied = format!("redis://{}", proxy.address);
    let app = spawn_app_with(|settings| {
        settings.platform.redis.url = secrecy::SecretString::from(proxied.clone());
    })
    .await;
    let subject = code("110108", 4);
    app.register(&subject, "110108").await;
    app.publish("ingestion", &record(&subject, RECORD, Nature::GeneralDishonesty, &days_ago(1))).await;
    app.grade_becomes(&subject, Grade::B).await;
    let key = format!("{}:grading:grade:public_credit:{subject}", app.settings.redis.key_prefix);
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let cached: bool = redis::cmd("EXISTS").arg(&key).query_async(&mut connection).await.unwrap();
    assert!(cached, "the read model holds the grade");

    proxy.cut().await;
    let answer = tokio::time::timeout(
        // Redis being gone costs a failed command, not a series of reconnect attempts.
        Duration::from_secs(2),
        app.plain.clone().get_grade(GetGradeRequest { credit_code: subject.clone(), scheme: String::new() }),
    )
    .await
    .expect("an answer without Redis")
    .unwrap()
    .into_inner()
    .grade
    .unwrap();
    assert_eq!((answer.grade, answer.reasons[0].record_ids.clone()), (Grade::B as i32, vec![RECORD.to_owned()]));
    app.stop().await;
}

#[tokio::test]
async fn an_internal_schemes_grades_need_the_permission() {
    let app = spawn_app().await;
    app.risk_office
        .clone()
        .publish_rule_set(PublishRuleSetRequest { scheme: String::new(), document: industry_risk() })
        .await
        .unwrap();
    let subject = code("110108", 5);
    app.register(&subject, "110108").await;
    let graded =
        app.grade_when(&subject, "food_industry_risk", |_| true).await.expect("graded under the internal scheme");
    assert_eq!(graded.grade, Grade::A as i32);
    let refused = app
        .plain
        .clone()
        .get_grade(GetGradeRequest { credit_code: subject.clone(), scheme: "food_industry_risk".into() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("internal_grades"), "{}", refused.message());
    let history = app
        .plain
        .clone()
        .get_grade_history(GetGradeHistoryRequest {
            credit_code: subject.clone(),
            scheme: "food_industry_risk".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(history.code(), Code::PermissionDenied);
    let statistics = app
        .plain
        .clone()
        .get_statistics(GetStatisticsRequest { scheme: "food_industry_risk".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(statistics.code(), Code::PermissionDenied);
    app.stop().await;
}

#[tokio::test]
async fn bad_requests_name_the_field_and_unknown_things_are_not_found() {
    let app = spawn_app().await;
    let mut client = app.plain.clone();
    let bad = client
        .get_grade(GetGradeRequest { credit_code: "91110108MA01ABCD2".into(), scheme: String::new() })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(bad.get_error_details().bad_request().unwrap().field_violations[0].field, "credit_code");
    let unknown_scheme = client
        .get_grade(GetGradeRequest { credit_code: code("110108", 6), scheme: "no_such_scheme".into() })
        .await
        .unwrap_err();
    assert_eq!(unknown_scheme.code(), Code::NotFound);
    assert!(unknown_scheme.message().contains("no_such_scheme"));
    let ungraded =
        client.get_grade(GetGradeRequest { credit_code: code("110108", 6), scheme: String::new() }).await.unwrap_err();
    assert_eq!(ungraded.code(), Code::NotFound);
    assert!(ungraded.message().contains(&code("110108", 6)));
    let bad_period = client
        .get_statistics(GetStatisticsRequest {
            period: Some(DateRange { from: "2026-13-01".into(), to: String::new() }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_period.get_error_details().bad_request().unwrap().field_violations[0].field, "period.from");
    let bad_region = client
        .recompute(RecomputeRequest {
            region_prefix: "11%".into(),
            scheme: "public_credit".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_region.get_error_details().bad_request().unwrap().field_violations[0].field, "region_prefix");
    app.stop().await;
}

/// A new version of `public_credit`: the shipped document with `from` replaced by `to`.
async fn publish_public_credit_with(app: &App, from: &str, to: &str) {
    let document = xinyong_domain::grading::PUBLIC_CREDIT.replace(from, to);
    app.plain
        .clone()
        .publish_rule_set(PublishRuleSetRequest { scheme: "public_credit".into(), document })
        .await
        .unwrap();
}

/// Version 2 of `public_credit`: a single general dishonesty record is C.
async fn publish_stricter_public_credit(app: &App) {
    publish_public_credit_with(app, "\"at_least\": 6", "\"at_least\": 1").await;
}

/// A subject graded A under version 1 of `public_credit`, with version 2 published since: a
/// recompute rewrites its grade (it names the version).
async fn graded_before_a_new_version(app: &App, number: u32) -> String {
    let subject = code("110108", number);
    app.register(&subject, "110108").await;
    app.grade_becomes(&subject, Grade::A).await;
    publish_stricter_public_credit(app).await;
    subject
}

#[tokio::test]
async fn recompute_applies_a_new_version_streams_progress_and_resumes() {
    let app = spawn_app_with(|settings| settings.grading.recompute_chunk = 2).await;
    let subjects: Vec<String> = (10..15).map(|n| code("110108", n)).collect();
    let outside = code("310115", 99);
    let mut entities: Vec<_> = subjects.iter().map(|subject| registered(subject, "110108")).collect();
    entities.push(registered(&outside, "310115"));
    app.publish("registry", &EntitiesRegistered { entities }).await;
    // One general record each: B under version 1.
    let records = subjects
        .iter()
        .enumerate()
        .map(|(index, subject)| {
            record(
                subject,
                &format!("0190f3a2-7c1e-7000-8000-0000000001{index:02}"),
                Nature::GeneralDishonesty,
                &days_ago(5),
            )
        })
        .collect();
    app.publish("ingestion", &RecordsIngested { records }).await;
    for subject in &subjects {
        app.grade_becomes(subject, Grade::B).await;
    }

    // Version 2: a single general record is C. Past grades stay as they were until recomputed.
    publish_stricter_public_credit(&app).await;
    let still = app.grade_when(&subjects[0], "", |_| true).await.unwrap();
    assert_eq!(still.rule_set_version, 1);

    // Interrupted after the first chunk: the client goes away.
    let mut stream = app
        .plain
        .clone()
        .recompute(RecomputeRequest {
            scheme: "public_credit".into(),
            region_prefix: "110108".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!((first.subjects_done, first.finished), (2, false));
    let resume_after = first.last_credit_code.clone();
    assert_eq!(resume_after, subjects[1]);
    drop(stream);

    // Resumed: the rest, in region 110108 only.
    let mut stream = app
        .plain
        .clone()
        .recompute(RecomputeRequest {
            scheme: "public_credit".into(),
            region_prefix: "110108".into(),
            resume_after: resume_after.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut messages = Vec::new();
    while let Some(message) = stream.next().await {
        messages.push(message.unwrap());
    }
    let last = messages.last().unwrap();
    assert!(last.finished);
    assert_eq!(last.subjects_done, 3, "the three after {resume_after}");
    assert_eq!(messages.iter().filter(|message| !message.finished).count(), 2, "progress per chunk of 2");
    for subject in &subjects {
        let grade = app.grade_when(subject, "", |info| info.rule_set_version == 2).await.unwrap();
        assert_eq!((grade.grade, grade.rule_set_version), (Grade::C as i32, 2), "{subject}");
    }
    let outside_grade = app.grade_when(&outside, "", |_| true).await.unwrap();
    assert_eq!(outside_grade.rule_set_version, 1, "outside the region: untouched");
    // Version 1's grades are history, not rewritten.
    let versions: Vec<i32> = sqlx::query_scalar(
        "SELECT rule_set_version FROM grade_changes WHERE credit_code = $1 AND scheme = 'public_credit' ORDER BY id",
    )
    .bind(&subjects[0])
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(versions, [1, 1, 2]);
    app.stop().await;
}

/// Until a backend of the test's database waits for a lock of `kind` ("relation", "advisory",
/// "transactionid" for a row another transaction holds).
async fn someone_waits_for_a_lock(app: &App, kind: &str) {
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE NOT l.granted AND l.locktype = $1 AND a.datname = current_database()",
        )
        .bind(kind)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no one waited for a {kind} lock within 10 s");
}

/// The stored `public_credit` grade of `credit_code`, read from Postgres as `GetGrade` falls back to.
async fn stored_public_credit(app: &App, credit_code: &str) -> GradeRow {
    stored_grade(&app.pool, credit_code, "public_credit").await.unwrap().unwrap()
}

/// Follow a recompute of everyone to its end; its last message.
async fn recompute_everyone(mut client: Client) -> RecomputeResponse {
    let mut stream = client.recompute(RecomputeRequest::default()).await.unwrap().into_inner();
    let mut last = None;
    while let Some(message) = stream.next().await {
        last = Some(message.unwrap());
    }
    last.unwrap()
}

/// A recompute's chunk does not lock its subjects' rows; the recompute fence keeps every other
/// regrade (an event's, the sweep's) from interleaving with it, in both directions.
#[tokio::test]
async fn an_events_regrade_and_a_recompute_chunk_wait_for_each_other() {
    let app = spawn_app().await;
    let subject = code("110108", 40);
    app.register(&subject, "110108").await;
    app.grade_becomes(&subject, Grade::A).await;

    // A chunk under way: its transaction holds the fence as a chunk's does.
    let mut chunk = app.pool.begin().await.unwrap();
    sqlx::query(FENCE_FOR_CHUNKS).execute(&mut *chunk).await.unwrap();
    let records = vec![record(&subject, RECORD, Nature::GeneralDishonesty, &days_ago(3))];
    app.publish("ingestion", &RecordsIngested { records }).await;
    someone_waits_for_a_lock(&app, "relation").await;
    let stored = stored_public_credit(&app, &subject).await;
    assert_eq!(stored.grade, Grade::A as i16, "the event's regrade waits for the chunk");
    chunk.commit().await.unwrap();
    app.grade_becomes(&subject, Grade::B).await;

    // A regrade under way: a recompute's chunk waits for it.
    let (grader, _) = app.grader_and_cache().await;
    let mut regrade = app.pool.begin().await.unwrap();
    let today = xinyong_domain::calendar::today();
    grader
        .regrade(&mut regrade, std::slice::from_ref(&subject), today, "test", Announce::OneBatch, None)
        .await
        .unwrap();
    let recompute = tokio::spawn(recompute_everyone(app.plain.clone()));
    someone_waits_for_a_lock(&app, "relation").await;
    assert!(!recompute.is_finished(), "the chunk waits for the regrade");
    regrade.commit().await.unwrap();
    let last = recompute.await.unwrap();
    assert!(last.finished);
    assert_eq!((last.subjects_done, last.grades_changed), (1, 0), "the regrade had left nothing to change");
    app.stop().await;
}

/// Chunks fence out other regrades, not each other: a second recompute waits for the first.
#[tokio::test]
async fn a_second_recompute_waits_for_the_one_under_way() {
    let app = spawn_app().await;
    let subject = graded_before_a_new_version(&app, 41).await;

    // The recompute under way, as far as the next one can tell.
    let mut under_way = app.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('grading:recompute'))").execute(&mut *under_way).await.unwrap();
    let next = tokio::spawn(recompute_everyone(app.plain.clone()));
    someone_waits_for_a_lock(&app, "advisory").await;
    let stored = stored_public_credit(&app, &subject).await;
    assert_eq!(stored.rule_set_version, 1, "nothing regraded while the other recompute runs");
    under_way.rollback().await.unwrap();
    let last = next.await.unwrap();
    assert_eq!((last.finished, last.subjects_done, last.grades_changed), (true, 1, 1));
    // And the next one after it runs at once.
    let last = recompute_everyone(app.plain.clone()).await;
    assert_eq!((last.finished, last.subjects_done, last.grades_changed), (true, 1, 0));
    app.stop().await;
}

/// A deployment may end transactions left idle and cut lock waits short. A recompute's turn is a
/// transaction left idle while its chunks run, and keeps its lock however long they take; the next
/// recompute waits for it however long that is.
#[tokio::test]
async fn a_recompute_keeps_its_turn_and_the_next_waits_where_a_deployment_sets_timeouts() {
    let app = spawn_app().await;
    let subject = graded_before_a_new_version(&app, 60).await;
    let (grader, cache) = app.grader_and_cache().await;
    let pool_with = async |settings: &[&str]| {
        app.own_pool(4, |options| options.options(settings.iter().map(|s| (s, "100ms")))).await
    };
    let idle_ended = pool_with(&["idle_in_transaction_session_timeout"]).await;
    let waits_cut = pool_with(&["lock_timeout", "statement_timeout"]).await;
    let recompute = |pool: sqlx::PgPool| {
        let (grader, cache) = (grader.clone(), cache.clone());
        let scope = jobs::Scope { scheme: Some("public_credit".into()), ..jobs::Scope::default() };
        let today = xinyong_domain::calendar::today();
        tokio::spawn(async move { jobs::recompute(&pool, &grader, &cache, &scope, today, 10, |_, _| true).await })
    };

    // The first recompute's only chunk stalls on the subject's grade, held here, for several times
    // both timeouts; the second waits for the first.
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM grades WHERE credit_code = $1 AND scheme = 'public_credit' FOR UPDATE")
        .bind(&subject)
        .execute(&mut *holder)
        .await
        .unwrap();
    let first = recompute(idle_ended);
    someone_waits_for_a_lock(&app, "transactionid").await;
    let second = recompute(waits_cut);
    someone_waits_for_a_lock(&app, "advisory").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!second.is_finished(), "the second recompute still waits for the first, which holds its turn");
    holder.rollback().await.unwrap();
    let progress = first.await.unwrap().unwrap();
    assert_eq!((progress.subjects, progress.changed), (1, 1));
    let progress = second.await.unwrap().unwrap();
    assert_eq!((progress.subjects, progress.changed), (1, 0), "the second ran after the first");
    assert_eq!(stored_public_credit(&app, &subject).await.rule_set_version, 2);
    app.stop().await;
}

/// A recompute that stops (its client went away) hands its turn on only after the chunks it had
/// under way have committed: a recompute resumed at once would otherwise regrade their subjects
/// beside them, and chunks do not fence each other out.
#[tokio::test]
async fn a_stopped_recompute_returns_after_its_chunks_under_way() {
    let app = spawn_app().await;
    let subjects: Vec<String> = (50..56).map(|n| code("110108", n)).collect();
    let entities = subjects.iter().map(|subject| registered(subject, "110108")).collect();
    app.publish("registry", &EntitiesRegistered { entities }).await;
    for subject in &subjects {
        app.grade_becomes(subject, Grade::A).await;
    }
    publish_stricter_public_credit(&app).await;
    let (grader, cache) = app.grader_and_cache().await;
    // Room for two chunks at once, besides the turn and the next chunk.
    let pool = app.own_pool(6, |options| options).await;
    let version = async |subject: &str| stored_public_credit(&app, subject).await.rule_set_version;

    // The second chunk (subjects 2 and 3) stalls on a grade this transaction holds.
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM grades WHERE credit_code = $1 AND scheme = 'public_credit' FOR UPDATE")
        .bind(&subjects[2])
        .execute(&mut *holder)
        .await
        .unwrap();
    let scope = jobs::Scope { scheme: Some("public_credit".into()), ..jobs::Scope::default() };
    let today = xinyong_domain::calendar::today();
    // The client goes away at the first progress report.
    let recompute =
        tokio::spawn(async move { jobs::recompute(&pool, &grader, &cache, &scope, today, 2, |_, _| false).await });
    someone_waits_for_a_lock(&app, "transactionid").await;
    for _ in 0..100 {
        if version(&subjects[0]).await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(version(&subjects[0]).await, 2, "the first chunk committed and was reported");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!recompute.is_finished(), "the stopped recompute waits for its second chunk");
    holder.rollback().await.unwrap();
    let progress = recompute.await.unwrap().unwrap();
    assert_eq!(progress.subjects, 2, "only the first chunk was reported");
    assert_eq!(version(&subjects[2]).await, 2, "the second chunk committed before the recompute returned");
    let fenced: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE relation = 'recompute_fence'::regclass")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(fenced, 0, "no chunk is left under way");
    app.stop().await;
}

#[tokio::test]
async fn a_recompute_of_everyone_grades_each_subject_by_its_own_records_and_a_second_changes_nothing() {
    let app = spawn_app_with(|settings| settings.grading.recompute_chunk = 2).await;
    // In code order: three in 110108, then two in 310115; chunks of two span the regions.
    let subjects: Vec<(String, usize)> = vec![
        (code("110108", 30), 0),
        (code("110108", 31), 1),
        (code("110108", 32), 2),
        (code("310115", 33), 1),
        (code("310115", 34), 0),
    ];
    let entities = subjects.iter().map(|(subject, _)| registered(subject, &subject[2..8])).collect();
    app.publish("registry", &EntitiesRegistered { entities }).await;
    let mut records = Vec::new();
    for (index, (subject, count)) in subjects.iter().enumerate() {
        for n in 0..*count {
            let id = format!("0190f3a2-7c1e-7000-8000-0000000002{index}{n}");
            records.push(record(subject, &id, Nature::GeneralDishonesty, &days_ago(5)));
        }
    }
    app.publish("ingestion", &RecordsIngested { records }).await;
    for (subject, count) in &subjects {
        app.grade_becomes(subject, if *count == 0 { Grade::A } else { Grade::B }).await;
    }

    publish_stricter_public_credit(&app).await;
    let recompute = || async {
        let mut stream = app.plain.clone().recompute(RecomputeRequest::default()).await.unwrap().into_inner();
        let mut last = None;
        while let Some(message) = stream.next().await {
            last = Some(message.unwrap());
        }
        last.unwrap()
    };
    let analyzed = || async {
        let analyzed: bool = sqlx::query_scalar(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables
             WHERE schemaname = current_schema() AND relname = 'grades'",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        analyzed
    };
    assert!(!analyzed().await);
    let (_, before) = announced(&app).await;
    let first = recompute().await;
    assert!(first.finished);
    assert_eq!(first.subjects_done, 5);
    assert!(analyzed().await, "more than a chunk of grades changed: their statistics are fresh");
    // One event per chunk of two; each text once in its event, not in every entry.
    let (_, bulk) = announced(&app).await;
    let bulk = &bulk[before.len()..];
    assert_eq!(bulk.len(), 3);
    let mut changes = Vec::new();
    for event in bulk {
        assert!(event.grades.iter().flat_map(|grade| &grade.reasons).all(|reason| reason.text.is_empty()));
        let mut keys: Vec<_> =
            event.reason_texts.iter().map(|text| (&text.scheme, text.rule_set_version, &text.code)).collect();
        let given = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), given, "each text given once");
        changes.extend(event.clone().into_grades_with_texts());
    }
    for (subject, count) in &subjects {
        let grade = app.grade_when(subject, "", |info| info.rule_set_version == 2).await.unwrap();
        let expected = if *count == 0 { Grade::A } else { Grade::C };
        assert_eq!(grade.grade, expected as i32, "{subject}");
        let records: usize = grade.reasons.iter().map(|reason| reason.record_ids.len()).sum();
        assert_eq!(records, *count, "{subject}: its own records and no neighbour's");
        let change = changes.iter().find(|change| change.credit_code == *subject && change.scheme == "public_credit");
        let change = change.unwrap_or_else(|| panic!("{subject}'s new grade announced"));
        let sent: Vec<&str> = change.reasons.iter().map(|reason| reason.text.as_str()).collect();
        let answered: Vec<&str> = grade.reasons.iter().map(|reason| reason.text.as_str()).collect();
        assert_eq!(sent, answered, "{subject}: the texts as answered");
        assert!(answered.iter().all(|text| !text.is_empty()));
    }
    let history: i64 = sqlx::query_scalar("SELECT count(*) FROM grade_changes").fetch_one(&app.pool).await.unwrap();

    let again = recompute().await;
    assert_eq!((again.subjects_done, again.grades_changed), (5, 0));
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM grade_changes").fetch_one(&app.pool).await.unwrap();
    assert_eq!(after, history, "nothing changed, nothing appended");
    app.stop().await;
}

#[tokio::test]
async fn a_recompute_reads_each_facts_penalty_kind_and_flags_as_a_single_regrade_does() {
    let app = spawn_app().await;
    let subject = code("110108", 40);
    app.register(&subject, "110108").await;
    let id = |n: u32| format!("0190f3a2-7c1e-7000-8000-0000000004{n:02}");
    // Two licences revoked, one under objection; a serious record withdrawn; a serious record
    // never published. Only the first two count: C for severe penalties, one record marked.
    let revoked = |n: u32| {
        let mut revoked = record(&subject, &id(n), Nature::GeneralDishonesty, &days_ago(3));
        revoked.facts.as_mut().unwrap().penalty_kind = PenaltyKind::LicenceRevocation as i32;
        revoked
    };
    let withdrawn = record(&subject, &id(2), Nature::SeriousDishonesty, &days_ago(4));
    let mut unpublished = record(&subject, &id(3), Nature::SeriousDishonesty, &days_ago(5));
    unpublished.facts.as_mut().unwrap().published = false;
    app.publish("ingestion", &RecordsIngested { records: vec![revoked(1), withdrawn, unpublished, revoked(4)] }).await;
    let gone = RecordWithdrawn { credit_code: subject.clone(), record_id: id(2), reason: "撤销".into(), version: 2 };
    app.publish("ingestion", &gone).await;
    let disputed = RecordDisputeChanged {
        credit_code: subject.clone(),
        record_id: id(1),
        objection_id: "obj-4".into(),
        disputed: true,
    };
    app.publish("objections", &disputed).await;
    let marked = |info: &GradeInfo| info.reasons.first().is_some_and(|reason| !reason.disputed_record_ids.is_empty());
    let single = app.grade_when(&subject, "public_credit", marked).await.unwrap();
    assert_eq!((single.grade, single.reasons[0].code.as_str()), (Grade::C as i32, "severe_penalty"));
    let mut counted = single.reasons[0].record_ids.clone();
    counted.sort();
    assert_eq!((counted, single.reasons.len()), (vec![id(1), id(4)], 1));
    assert_eq!(single.reasons[0].disputed_record_ids, [id(1)]);

    // A new version (its text changed, nothing else) makes the recompute rewrite the grade from
    // the facts it reads in bulk: the same grade and reasons.
    publish_public_credit_with(&app, "已被依法吊销营业执照", "营业执照已被依法吊销").await;
    let mut stream = app.plain.clone().recompute(RecomputeRequest::default()).await.unwrap().into_inner();
    while let Some(message) = stream.next().await {
        message.unwrap();
    }
    let recomputed = app.grade_when(&subject, "public_credit", |info| info.rule_set_version == 2).await.unwrap();
    assert_eq!(recomputed.rule_set_version, 2);
    assert_eq!((recomputed.grade, recomputed.reasons), (single.grade, single.reasons));
    app.stop().await;
}

#[tokio::test]
async fn statistics_count_subjects_per_grade_changes_and_records() {
    let app = spawn_app().await;
    let clean = code("110108", 20);
    let fined = code("110108", 21);
    let elsewhere = code("310115", 22);
    for (subject, region) in [(&clean, "110108"), (&fined, "110108"), (&elsewhere, "310115")] {
        app.register(subject, region).await;
    }
    app.grade_becomes(&fined, Grade::A).await;
    app.publish("ingestion", &record(&fined, OTHER_RECORD, Nature::GeneralDishonesty, &days_ago(2))).await;
    app.grade_becomes(&fined, Grade::B).await;
    app.grade_becomes(&elsewhere, Grade::A).await;
    let statistics = app
        .plain
        .clone()
        .get_statistics(GetStatisticsRequest {
            scheme: String::new(),
            region_prefix: "1101".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let grades: Vec<(i32, &str, i64)> =
        statistics.grades.iter().map(|count| (count.grade, count.region_code.as_str(), count.subjects)).collect();
    assert_eq!(grades, [(Grade::A as i32, "110108", 1), (Grade::B as i32, "110108", 1)]);
    let changes: Vec<(i32, i32, i64)> =
        statistics.changes.iter().map(|change| (change.from_grade, change.to_grade, change.changes)).collect();
    assert_eq!(changes, [(0, Grade::A as i32, 2), (Grade::A as i32, Grade::B as i32, 1)]);
    let records: Vec<(&str, &str, i64)> = statistics
        .records
        .iter()
        .map(|count| (count.category.as_str(), count.department_id.as_str(), count.records))
        .collect();
    assert_eq!(records, [("penalty", "samr-110108", 1)]);
    let before = app
        .plain
        .clone()
        .get_statistics(GetStatisticsRequest {
            period: Some(DateRange { from: String::new(), to: "2020-01-01".into() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(before.changes.is_empty() && before.records.is_empty(), "nothing in that period");
    app.stop().await;
}
