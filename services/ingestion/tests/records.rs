//! Single submissions, idempotency, corrections and withdrawals with their history, disclosure,
//! listing and timeliness.

use tonic::Code;
use xinyong_platform::identity::Caller;
use xinyong_proto::common::v1::{DateRange, Nature};
use xinyong_proto::ingestion::v1::{
    CorrectRecordRequest, GetRecordHistoryRequest, GetTimelinessRequest, ListCategoriesRequest, ListRecordsRequest,
    PenaltyKind, RecordState, SubmitOutcome, SubmitRecordRequest, WithdrawRecordRequest,
};

use crate::support::{HUAWEI, LENOVO, fine, spawn_app};

#[tokio::test]
async fn a_record_is_accepted_once_and_a_different_payload_points_to_correct_record() {
    let mut app = spawn_app().await;
    let first = app
        .market
        .submit_record(SubmitRecordRequest { record: Some(fine("0001", "2025-03-03")) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.outcome, SubmitOutcome::Accepted as i32);
    let record = first.record.unwrap();
    assert_eq!(record.department_id, "samr-110108", "the department comes from the caller");
    assert_eq!(record.nature, Nature::GeneralDishonesty as i32, "the category's default nature");
    assert_eq!(record.version, 1);

    let again = app
        .market
        .submit_record(SubmitRecordRequest { record: Some(fine("0001", "2025-03-03")) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.outcome, SubmitOutcome::Duplicate as i32);
    assert_eq!(again.record.unwrap().record_id, record.record_id);

    let mut changed = fine("0001", "2025-03-03");
    changed.fields.insert("content".into(), "罚款8000元".into());
    let conflict = app.market.submit_record(SubmitRecordRequest { record: Some(changed) }).await.unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists);
    assert!(
        conflict.message().contains("CorrectRecord") && conflict.message().contains(&record.record_id),
        "{}",
        conflict.message()
    );

    // The same source id from another department is another record.
    let other = app
        .tax
        .submit_record(SubmitRecordRequest { record: Some(fine("0001", "2025-03-03")) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(other.outcome, SubmitOutcome::Accepted as i32);

    let events: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM outbox ORDER BY seq").fetch_all(&app.pool).await.unwrap();
    assert_eq!(events, ["xinyong.events.v1.RecordIngested", "xinyong.events.v1.RecordIngested"]);
    for (outcome, rows) in [("accepted", 2), ("duplicate", 1), ("conflict", 1), ("invalid", 0), ("unknown_subject", 0)]
    {
        assert_eq!(app.rows_counted(outcome).await, Some(rows), "{outcome}");
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_records_are_refused_naming_their_fields() {
    let mut app = spawn_app().await;
    let mut bad = fine("0002", "2099-01-01");
    bad.fields.remove("legal_basis");
    bad.penalty_kind = 0;
    let status = app.market.submit_record(SubmitRecordRequest { record: Some(bad) }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("decided_on: is in the future"), "{}", status.message());
    assert!(status.message().contains("fields.legal_basis: required for category penalty"));
    assert!(status.message().contains("penalty_kind"));

    let mut unknown = fine("0003", "2025-03-03");
    unknown.credit_code = "91310000631696382C".into();
    let status = app.market.submit_record(SubmitRecordRequest { record: Some(unknown) }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("91310000631696382C"));

    let restricted = (app.client_for)(Caller::new("housing-110108", vec!["report:licence".into()]));
    let mut restricted = restricted;
    let status =
        restricted.submit_record(SubmitRecordRequest { record: Some(fine("0004", "2025-03-03")) }).await.unwrap_err();
    assert!(status.message().contains("report:penalty"), "{}", status.message());

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM records").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 0);
    assert_eq!(app.rows_counted("invalid").await, Some(2), "the bad record and the restricted department's");
    assert_eq!(app.rows_counted("unknown_subject").await, Some(1));
    assert_eq!(app.rows_counted("accepted").await, Some(0));
    app.stop().await;
}

#[tokio::test]
async fn only_the_reporting_department_changes_a_record_and_every_version_is_kept() {
    let mut app = spawn_app().await;
    let record = app
        .market
        .submit_record(SubmitRecordRequest { record: Some(fine("0005", "2025-03-03")) })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();

    let mut corrected = fine("0005", "2025-03-03");
    corrected.fields.insert("content".into(), "罚款3000元".into());
    let by_tax = app
        .tax
        .correct_record(CorrectRecordRequest {
            record_id: record.record_id.clone(),
            record: Some(corrected.clone()),
            reason: "改".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(by_tax.code(), Code::PermissionDenied);
    assert!(by_tax.message().contains("samr-110108"), "{}", by_tax.message());

    let no_reason = app
        .market
        .correct_record(CorrectRecordRequest {
            record_id: record.record_id.clone(),
            record: Some(corrected.clone()),
            reason: " ".into(),
        })
        .await
        .unwrap_err();
    assert!(no_reason.message().contains("reason"));

    let v2 = app
        .market
        .correct_record(CorrectRecordRequest {
            record_id: record.record_id.clone(),
            record: Some(corrected),
            reason: "罚款金额录入错误".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!((v2.version, v2.fields["content"].as_str()), (2, "罚款3000元"));

    let withdrawn = app
        .market
        .withdraw_record(WithdrawRecordRequest {
            record_id: record.record_id.clone(), reason: "行政复议撤销".into()
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!((withdrawn.version, withdrawn.state), (3, RecordState::Withdrawn as i32));
    let again = app
        .market
        .withdraw_record(WithdrawRecordRequest { record_id: record.record_id.clone(), reason: "再次".into() })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);

    let history = app
        .tax
        .get_record_history(GetRecordHistoryRequest { record_id: record.record_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .versions;
    let summary: Vec<(i32, &str, &str, &str)> =
        history.iter().map(|v| (v.version, v.change.as_str(), v.changed_by.as_str(), v.reason.as_str())).collect();
    assert_eq!(
        summary,
        [
            (1, "submitted", "samr-110108", ""),
            (2, "corrected", "samr-110108", "罚款金额录入错误"),
            (3, "withdrawn", "samr-110108", "行政复议撤销")
        ]
    );
    assert_eq!(
        history[0].record.as_ref().unwrap().fields["content"],
        "罚款5000元",
        "the first version is kept as it was"
    );

    let events: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM outbox ORDER BY seq").fetch_all(&app.pool).await.unwrap();
    assert_eq!(
        events,
        ["xinyong.events.v1.RecordIngested", "xinyong.events.v1.RecordCorrected", "xinyong.events.v1.RecordWithdrawn"]
    );
    app.stop().await;
}

#[tokio::test]
async fn disclosure_windows_follow_the_rule_of_the_decision_date_and_lists_show_what_is_public() {
    let mut app = spawn_app().await;
    let serious = |source: &str, decided: &str| {
        let mut input = fine(source, decided);
        input.nature = Nature::SeriousDishonesty as i32;
        input.penalty_kind = PenaltyKind::LicenceRevocation as i32;
        input
    };
    let under_2019 = app
        .market
        .submit_record(SubmitRecordRequest { record: Some(serious("S2019", "2025-06-02")) })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!(
        (under_2019.disclosure_rule.as_str(), under_2019.disclosure_until.as_str()),
        ("ndrc-2019-527", "2028-06-02")
    );
    assert_eq!(under_2019.repair_allowed_from, "2025-12-02", "6 months under the 2019 rule");
    let under_2025 = app
        .market
        .submit_record(SubmitRecordRequest { record: Some(serious("S2025", "2026-01-12")) })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!(
        (under_2025.disclosure_rule.as_str(), under_2025.repair_allowed_from.as_str()),
        ("gov-2025-22", "2027-01-12")
    );

    // An old general record whose year of publication is over, and a minor warning never shown.
    let expired = app
        .market
        .submit_record(SubmitRecordRequest { record: Some(fine("OLD", "2023-02-01")) })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    let mut warning = fine("WARN", "2026-02-02");
    warning.nature = Nature::Minor as i32;
    warning.penalty_kind = PenaltyKind::Warning as i32;
    let warning = app
        .market
        .submit_record(SubmitRecordRequest { record: Some(warning) })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!(warning.disclosure_until, "");

    let list = |include_expired: bool| ListRecordsRequest {
        credit_code: LENOVO.into(),
        include_expired,
        ..Default::default()
    };
    let public: Vec<String> = app
        .tax
        .list_records(list(false))
        .await
        .unwrap()
        .into_inner()
        .records
        .into_iter()
        .map(|r| r.record_id)
        .collect();
    assert_eq!(
        public,
        [under_2025.record_id.clone(), under_2019.record_id.clone()],
        "newest first, only what is public today"
    );
    let all = app.tax.list_records(list(true)).await.unwrap().into_inner().records;
    assert_eq!(all.len(), 4);
    assert!(
        all.iter().any(|r| r.record_id == expired.record_id) && all.iter().any(|r| r.record_id == warning.record_id)
    );

    let paged = app
        .tax
        .list_records(ListRecordsRequest {
            credit_code: LENOVO.into(),
            include_expired: true,
            page_size: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paged.records.len(), 3);
    let rest = app
        .tax
        .list_records(ListRecordsRequest {
            credit_code: LENOVO.into(),
            include_expired: true,
            page_size: 3,
            page_token: paged.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.records.len(), 1);
    assert!(rest.next_page_token.is_empty());
    let none = app
        .tax
        .list_records(ListRecordsRequest { credit_code: HUAWEI.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(none.records.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn timeliness_counts_late_reports_per_department_and_category() {
    let mut app = spawn_app().await;
    // Decided long ago: reported today, far past seven working days.
    app.market.submit_record(SubmitRecordRequest { record: Some(fine("LATE", "2025-01-24")) }).await.unwrap();
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    let on_time = app
        .market
        .submit_record(SubmitRecordRequest { record: Some(fine("NOW", &today.to_string())) })
        .await
        .unwrap()
        .into_inner();
    let record = on_time.record.unwrap();
    assert!(record.on_time);
    assert_eq!(record.reporting_delay_working_days, 0);

    let report = app
        .market
        .get_timeliness(GetTimelinessRequest {
            department_id: String::new(),
            period: Some(DateRange { from: "2025-01-01".into(), to: String::new() }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.departments.len(), 1, "a department sees itself");
    let mine = &report.departments[0];
    assert_eq!((mine.department_id.as_str(), mine.on_time, mine.late), ("samr-110108", 1, 1));
    assert_eq!(mine.categories[0].category, "penalty");
    assert!(mine.mean_delay_working_days > 100.0);

    let others = app
        .market
        .get_timeliness(GetTimelinessRequest { department_id: "tax-110108".into(), period: None })
        .await
        .unwrap_err();
    assert_eq!(others.code(), Code::PermissionDenied);
    let categories = app.market.list_categories(ListCategoriesRequest {}).await.unwrap().into_inner().categories;
    assert_eq!(categories.len(), 16);
    assert!(categories.iter().any(|c| c.code == "criminal_judgment" && c.monthly), "for the special credit report");
    let penalty = categories.iter().find(|c| c.code == "penalty").unwrap();
    assert_eq!((penalty.deadline_working_days, penalty.monthly), (7, false));
    app.stop().await;
}

// The records' category is guarded by the catalogue (a trigger), not by a per-row foreign key.
#[tokio::test]
async fn a_category_in_use_can_be_neither_deleted_nor_renamed_and_an_unused_one_can() {
    let mut app = spawn_app().await;
    app.market.submit_record(SubmitRecordRequest { record: Some(fine("0001", "2025-03-03")) }).await.unwrap();
    let used = fine("0001", "2025-03-03").category;

    let deleted = sqlx::query("DELETE FROM categories WHERE code = $1").bind(&used).execute(&app.pool).await;
    let error = deleted.unwrap_err().into_database_error().unwrap();
    assert_eq!(error.code().as_deref(), Some("23503"), "{error}");
    let renamed =
        sqlx::query("UPDATE categories SET code = 'renamed' WHERE code = $1").bind(&used).execute(&app.pool).await;
    assert_eq!(renamed.unwrap_err().into_database_error().unwrap().code().as_deref(), Some("23503"));
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM records r JOIN categories c ON c.code = r.category")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(still, 1, "the record's category is still in the catalogue");

    let unused: String = sqlx::query_scalar("SELECT code FROM categories WHERE code <> $1 ORDER BY code LIMIT 1")
        .bind(&used)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let removed = sqlx::query("DELETE FROM categories WHERE code = $1").bind(&unused).execute(&app.pool).await.unwrap();
    assert_eq!(removed.rows_affected(), 1);
    app.stop().await;
}

/// A person's ID number written into a record is shown to the department that reported it and to
/// holders of `personal_data`, and masked for everyone else, in every read.
#[tokio::test]
async fn id_numbers_in_a_record_are_masked_for_departments_without_the_right_to_see_them() {
    use xinyong_proto::ingestion::v1::GetRecordRequest;
    let mut app = spawn_app().await;
    let id = "110105194912310021";
    let masked = "110105********0021";
    let mut input = fine("0009", "2025-03-03");
    input.fields.insert("violation".into(), format!("经营者张三，身份证号{id}"));
    input.text = format!("当事人（{id}）已缴纳罚款");
    let reported = app
        .market
        .submit_record(SubmitRecordRequest { record: Some(input) })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!(reported.fields["violation"], format!("经营者张三，身份证号{id}"), "the reporter sees what it sent");
    let record_id = reported.record_id.clone();
    let get = |mut client: crate::support::Client| {
        let record_id = record_id.clone();
        async move { client.get_record(GetRecordRequest { record_id }).await.unwrap().into_inner().record.unwrap() }
    };
    let own = get(app.market.clone()).await;
    assert_eq!(
        (own.fields["violation"].as_str(), own.text.as_str()),
        (reported.fields["violation"].as_str(), reported.text.as_str())
    );
    let other = get(app.tax.clone()).await;
    assert_eq!(other.fields["violation"], format!("经营者张三，身份证号{masked}"));
    assert_eq!(other.text, format!("当事人（{masked}）已缴纳罚款"));
    assert_eq!(other.fields["content"], "罚款5000元", "the rest as reported");
    let entitled = get((app.client_for)(Caller::new("court-110108", vec!["personal_data".into()]))).await;
    assert_eq!(entitled.text, reported.text);
    let listed = app
        .tax
        .list_records(ListRecordsRequest { credit_code: LENOVO.into(), include_expired: true, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert!(
        listed
            .iter()
            .all(|record| !record.text.contains(id) && record.fields.values().all(|value| !value.contains(id)))
    );
    assert_eq!(listed.iter().find(|record| record.record_id == record_id).unwrap().text, other.text);
    let history = app
        .tax
        .get_record_history(GetRecordHistoryRequest { record_id: record_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert!(history.iter().all(|version| version.record.as_ref().unwrap().text == other.text));
}
