//! Credit reports through the gateway: a subject's file gathered from registry, ingestion, grading
//! and sanctions as they are at that moment, issued under a number, kept, fetched again and
//! verified by a department that was only shown the number and digest; and the special report that
//! replaces "no violation" certificates.

use std::time::Duration;

use tonic::Code;
use tonic_types::StatusExt;
use xinyong_domain::calendar::today;
use xinyong_proto::common::v1::{DateRange, Grade, ListKind, Person};
use xinyong_proto::grading::v1::GetGradeRequest;
use xinyong_proto::grading::v1::grading_service_client::GradingServiceClient;
use xinyong_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use xinyong_proto::ingestion::v1::{PenaltyKind, Record, RecordInput, SubmitRecordRequest, WithdrawRecordRequest};
use xinyong_proto::registry::v1::RegisterEntityRequest;
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;
use xinyong_proto::reports::v1::report_service_client::ReportServiceClient;
use xinyong_proto::reports::v1::{
    CreditReport, GetReportRequest, IssueReportRequest, ListReportsRequest, ReportKind, VerifyReportRequest,
};
use xinyong_proto::sanctions::v1::GetSubjectSanctionsRequest;
use xinyong_proto::sanctions::v1::sanctions_service_client::SanctionsServiceClient;

use crate::ingestion::{department, enterprise};
use crate::support::{Platform, with_token};

const SUBJECT: &str = "9144030071526726XG";

fn input(source: &str, category: &str, days_ago: i64, fields: &[(&str, &str)]) -> RecordInput {
    RecordInput {
        credit_code: SUBJECT.into(),
        source_record_id: source.into(),
        category: category.into(),
        decided_on: (today() - chrono::Duration::days(days_ago)).to_string(),
        document_number: format!("深南〔2026〕{source}号"),
        fields: fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        ..Default::default()
    }
}

async fn submit(platform: &Platform, token: &str, record: RecordInput) -> Record {
    let mut ingestion = IngestionServiceClient::new(platform.gateway().await);
    let request = SubmitRecordRequest { record: Some(record) };
    ingestion.submit_record(with_token(request, token)).await.unwrap().into_inner().record.unwrap()
}

fn issue(kind: ReportKind, source: &str) -> IssueReportRequest {
    IssueReportRequest {
        credit_code: SUBJECT.into(),
        kind: kind as i32,
        period: None,
        source_request_id: source.into(),
    }
}

fn ids(report: &CreditReport) -> Vec<&str> {
    report.records.iter().map(|record| record.record_id.as_str()).collect()
}

#[tokio::test]
async fn a_credit_report_gathers_the_subjects_file_and_is_verifiable_by_its_number_and_digest() {
    let platform = Platform::start().await;
    let market = department(&platform, "samr-440305", &["personal_data"]).await;
    let court = department(&platform, "court-440305", &[]).await;
    let bank = department(&platform, "bank-440305", &[]).await;
    let gateway = platform.gateway().await;
    let mut subject = enterprise();
    subject.legal_representative =
        Some(Person { name: "任正非".into(), id_number: "11010519491231002X".into(), id_number_masked: false });
    let mut registry = RegistryServiceClient::new(gateway.clone());
    registry.register_entity(with_token(RegisterEntityRequest { entity: Some(subject) }, &market)).await.unwrap();

    // A licence, a recent fine, a warning (a minor penalty, never published) and a criminal
    // judgment of the company; and a fine from five years ago, out of every window.
    let authority = [("content", "内容"), ("legal_basis", "依据"), ("authority", "南山区市场监督管理局")];
    let licence = submit(&platform, &market, input("XK-1", "licence", 30, &authority)).await;
    let mut fine = input("CF-1", "penalty", 60, &authority);
    fine.penalty_kind = PenaltyKind::Fine as i32;
    let fine = submit(&platform, &market, fine).await;
    let mut warning = input("CF-2", "penalty", 90, &authority);
    warning.penalty_kind = PenaltyKind::Warning as i32;
    let warning = submit(&platform, &market, warning).await;
    let judgment = [("content", "单位行贿罪，判处罚金"), ("authority", "南山区人民法院")];
    let judgment = submit(&platform, &court, input("XS-1", "criminal_judgment", 120, &judgment)).await;
    let mut old = input("CF-0", "penalty", 5 * 366, &authority);
    old.penalty_kind = PenaltyKind::Fine as i32;
    let old = submit(&platform, &market, old).await;
    // And the registration authority lists it as abnormal (unreachable at its address).
    let abnormal = [("content", "通过登记的住所无法联系"), ("authority", "南山区市场监督管理局")];
    let abnormal = submit(&platform, &market, input("YC-1", "abnormal_operation_list", 10, &abnormal)).await;
    let mut sanctions = SanctionsServiceClient::new(gateway.clone());
    for attempt in 0.. {
        let request = GetSubjectSanctionsRequest { credit_code: SUBJECT.into(), include_ended: false };
        let standing = sanctions.get_subject_sanctions(with_token(request, &market)).await.unwrap().into_inner();
        if !standing.listings.is_empty() {
            break;
        }
        assert!(attempt < 300, "sanctions never listed the subject");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Wait until grading has taken every record in: two general dishonesty records, grade B.
    let mut grading = GradingServiceClient::new(gateway.clone());
    for _ in 0..300 {
        let request = GetGradeRequest { credit_code: SUBJECT.into(), scheme: String::new() };
        if let Ok(answer) = grading.get_grade(with_token(request, &market)).await {
            let grade = answer.into_inner().grade.unwrap();
            let counted: usize = grade.reasons.iter().map(|reason| reason.record_ids.len()).sum();
            if grade.grade == Grade::B as i32 && counted >= 2 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut reports = ReportServiceClient::new(gateway.clone());
    let issued =
        reports.issue_report(with_token(issue(ReportKind::Credit, "BG-1"), &market)).await.unwrap().into_inner();
    assert!(issued.issued);
    let report = issued.report.unwrap();
    assert!(report.report_no.starts_with(&format!("XY{}-", today().format("%Y%m%d"))), "{}", report.report_no);
    assert_eq!((report.issued_to.as_str(), report.kind), ("samr-440305", ReportKind::Credit as i32));
    let entity = report.entity.as_ref().unwrap();
    assert_eq!(entity.name, "华为技术有限公司");
    let person = entity.legal_representative.as_ref().unwrap();
    assert!(person.id_number_masked && person.id_number.contains('*'), "masked although the caller may see it");
    let public = report.grades.iter().find(|grade| grade.scheme == "public_credit").unwrap();
    assert_eq!(public.grade, Grade::B as i32);
    assert!(public.reasons.iter().any(|reason| reason.record_ids.contains(&fine.record_id)));
    for record in [&licence, &fine, &judgment] {
        assert!(ids(&report).contains(&record.record_id.as_str()), "{} in force: {:?}", record.category, ids(&report));
    }
    assert!(!ids(&report).contains(&old.record_id.as_str()), "past its disclosure period");
    let decided: Vec<&str> = report.records.iter().map(|record| record.decided_on.as_str()).collect();
    assert!(decided.windows(2).all(|pair| pair[0] >= pair[1]), "newest first: {decided:?}");
    assert!(report.repairs.is_empty());
    let listed: Vec<(i32, &str, &str)> = report
        .listings
        .iter()
        .map(|listing| (listing.list, listing.record_id.as_str(), listing.until.as_str()))
        .collect();
    assert_eq!(listed, [(ListKind::AbnormalOperation as i32, abnormal.record_id.as_str(), "")]);
    assert_eq!(report.digest.len(), 64);

    // A retry with the same request id is the same report; another department's id is its own.
    let retried =
        reports.issue_report(with_token(issue(ReportKind::Credit, "BG-1"), &market)).await.unwrap().into_inner();
    assert!(!retried.issued);
    assert_eq!(retried.report.as_ref().unwrap().report_no, report.report_no);
    assert_eq!(retried.report.unwrap().digest, report.digest);
    let reused = reports.issue_report(with_token(issue(ReportKind::Special, "BG-1"), &market)).await.unwrap_err();
    assert_eq!(reused.get_error_details().bad_request().unwrap().field_violations[0].field, "source_request_id");

    // The bank is shown the number and digest: it can check them, not read the report.
    let verify =
        |report_no: &str, digest: &str| VerifyReportRequest { report_no: report_no.into(), digest: digest.into() };
    let checked =
        reports.verify_report(with_token(verify(&report.report_no, &report.digest), &bank)).await.unwrap().into_inner();
    assert!(checked.valid);
    assert_eq!((checked.credit_code.as_str(), checked.issued_to.as_str()), (SUBJECT, "samr-440305"));
    let mut forged_digest = report.digest.clone();
    forged_digest.replace_range(0..1, if forged_digest.starts_with('0') { "1" } else { "0" });
    let forged =
        reports.verify_report(with_token(verify(&report.report_no, &forged_digest), &bank)).await.unwrap().into_inner();
    assert!(!forged.valid && forged.credit_code.is_empty());
    let unknown_no = format!("XY20261125-{}", uuid::Uuid::now_v7().simple());
    assert!(
        !reports
            .verify_report(with_token(verify(&unknown_no, &report.digest), &bank))
            .await
            .unwrap()
            .into_inner()
            .valid
    );
    let bad = reports.verify_report(with_token(verify("BG-1", "xyz"), &bank)).await.unwrap_err();
    let fields: Vec<String> =
        bad.get_error_details().bad_request().unwrap().field_violations.iter().map(|v| v.field.clone()).collect();
    assert_eq!(fields, ["report_no", "digest"]);
    let get = |report_no: &str| GetReportRequest { report_no: report_no.into() };
    let denied = reports.get_report(with_token(get(&report.report_no), &bank)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let again =
        reports.get_report(with_token(get(&report.report_no), &market)).await.unwrap().into_inner().report.unwrap();
    assert_eq!(again, report, "kept as issued");

    // The report kept is changed in the database: it no longer verifies.
    let pool = platform.pool_of("reports").await;
    // (field 5, `issued_to`, once more: the report decodes, but says something else)
    sqlx::query("UPDATE reports SET body = body || '\\x2a0158'::bytea").execute(&pool).await.unwrap();
    let tampered =
        reports.verify_report(with_token(verify(&report.report_no, &report.digest), &bank)).await.unwrap().into_inner();
    assert!(!tampered.valid, "a body changed after issue");

    // The special report: the fine and the warning (a summary penalty, never published), the
    // judgment, and none of enforcement or the serious-dishonesty list in three years.
    let special =
        reports.issue_report(with_token(issue(ReportKind::Special, "ZX-1"), &bank)).await.unwrap().into_inner();
    let special = special.report.unwrap();
    let period = special.period.as_ref().unwrap();
    assert_eq!(period.to, today().to_string());
    let section = |category: &str| special.sections.iter().find(|section| section.category == category).unwrap();
    let mut penalties = section("penalty").record_ids.clone();
    penalties.sort();
    let mut expected = vec![fine.record_id.clone(), warning.record_id.clone()];
    expected.sort();
    assert_eq!(penalties, expected, "the old fine is outside the three years");
    assert!(section("penalty").statement.contains("有2条行政处罚记录"));
    assert_eq!(section("criminal_judgment").record_ids, std::slice::from_ref(&judgment.record_id));
    assert!(section("enforcement").statement.contains("无行政强制记录"));
    assert!(section("serious_dishonesty_list").record_ids.is_empty());
    assert!(special.grades.is_empty() && !ids(&special).contains(&licence.record_id.as_str()));
    // A period of six years takes the old fine in.
    let mut longer = issue(ReportKind::Special, "");
    longer.period =
        Some(DateRange { from: (today() - chrono::Duration::days(6 * 366)).to_string(), to: String::new() });
    let longer = reports.issue_report(with_token(longer, &bank)).await.unwrap().into_inner().report.unwrap();
    assert!(ids(&longer).contains(&old.record_id.as_str()));
    assert_ne!(longer.report_no, special.report_no, "no request id: a new report each time");
    // The provider withdraws the warning (its mistake): a special report no longer shows it.
    let withdraw = WithdrawRecordRequest { record_id: warning.record_id.clone(), reason: "误录".into() };
    IngestionServiceClient::new(gateway.clone()).withdraw_record(with_token(withdraw, &market)).await.unwrap();
    let after = reports.issue_report(with_token(issue(ReportKind::Special, ""), &court)).await.unwrap().into_inner();
    let after = after.report.unwrap();
    let penalties = &after.sections.iter().find(|section| section.category == "penalty").unwrap().record_ids;
    assert_eq!(penalties, std::slice::from_ref(&fine.record_id), "a withdrawn record is not a violation");

    // Bad requests name the field; an unknown subject is NOT_FOUND.
    let mut future = issue(ReportKind::Special, "");
    future.period = Some(DateRange { from: String::new(), to: "2999-01-01".into() });
    let error = reports.issue_report(with_token(future, &bank)).await.unwrap_err();
    assert_eq!(error.get_error_details().bad_request().unwrap().field_violations[0].field, "period.to");
    let mut unknown = issue(ReportKind::Credit, "");
    unknown.credit_code = "91110000600037341L".into();
    let error = reports.issue_report(with_token(unknown, &bank)).await.unwrap_err();
    assert_eq!(error.code(), Code::NotFound, "{error:?}");
    let error = reports.issue_report(with_token(issue(ReportKind::Unspecified, ""), &bank)).await.unwrap_err();
    assert_eq!(error.get_error_details().bad_request().unwrap().field_violations[0].field, "kind");

    // Each department lists what it was issued, newest first, a page at a time; not another's.
    let list = |page_size: i32, page_token: &str, issued_to: &str| ListReportsRequest {
        credit_code: SUBJECT.into(),
        issued_to: issued_to.into(),
        page_size,
        page_token: page_token.into(),
    };
    let first = reports.list_reports(with_token(list(1, "", ""), &bank)).await.unwrap().into_inner();
    assert_eq!(first.reports.len(), 1);
    assert_eq!(first.reports[0].report_no, longer.report_no, "the newest first");
    let rest =
        reports.list_reports(with_token(list(10, &first.next_page_token, ""), &bank)).await.unwrap().into_inner();
    let numbers: Vec<&str> = rest.reports.iter().map(|listed| listed.report_no.as_str()).collect();
    assert_eq!(numbers, [special.report_no.as_str()]);
    assert!(rest.next_page_token.is_empty());
    assert_eq!(
        (rest.reports[0].kind, rest.reports[0].digest.as_str()),
        (ReportKind::Special as i32, special.digest.as_str())
    );
    let mine = reports.list_reports(with_token(list(10, "", ""), &market)).await.unwrap().into_inner();
    assert_eq!(mine.reports.len(), 1, "the retry issued nothing more");
    assert_eq!(mine.reports[0].report_no, report.report_no);
    let others = reports.list_reports(with_token(list(10, "", "samr-440305"), &bank)).await.unwrap_err();
    assert_eq!(others.code(), Code::PermissionDenied);
}
