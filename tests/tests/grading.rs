//! Grades through the gateway, following what departments do: a registration gives the first
//! grade, a record moves it, a withdrawal moves it back, a revoked business licence makes it D.
//! Every hop is real: gateway → registry/ingestion → outbox → relay → Redis Stream → grading →
//! outbox → relay → Redis Stream → sanctions, whose `CheckEntity` tells a department what to do.

use std::time::Duration;

use xinyong_proto::common::v1::{EntityStatus, Grade, Nature, SubjectKind};
use xinyong_proto::grading::v1::grading_service_client::GradingServiceClient;
use xinyong_proto::grading::v1::{GetGradeHistoryRequest, GetGradeRequest, GradeInfo};
use xinyong_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use xinyong_proto::ingestion::v1::{PenaltyKind, RecordInput, SubmitRecordRequest, WithdrawRecordRequest};
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;
use xinyong_proto::registry::v1::{Entity, RegisterEntityRequest, UpdateEntityStatusRequest};
use xinyong_proto::sanctions::v1::sanctions_service_client::SanctionsServiceClient;
use xinyong_proto::sanctions::v1::{CheckEntityRequest, MatterType};

use crate::ingestion::department;
use crate::support::{Platform, with_token};

const SUBJECT: &str = "9144030071526726XG";

async fn grade_becomes(platform: &Platform, token: &str, grade: Grade) -> GradeInfo {
    let mut grading = GradingServiceClient::new(platform.gateway().await);
    let mut last = None;
    for _ in 0..300 {
        let request = GetGradeRequest { credit_code: SUBJECT.into(), scheme: String::new() };
        if let Ok(response) = grading.get_grade(with_token(request, token)).await {
            let info = response.into_inner().grade.unwrap();
            if info.grade == grade as i32 {
                return info;
            }
            last = Some(info);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never graded {grade:?}; last {last:?}\n{}", platform.log_tail("grading"));
}

/// `CheckEntity` for a procurement until the measures satisfy `done`.
async fn check_until(platform: &Platform, token: &str, done: impl Fn(&Vec<String>) -> bool) -> Vec<String> {
    let mut sanctions = SanctionsServiceClient::new(platform.gateway().await);
    let mut last = Vec::new();
    for _ in 0..300 {
        let request = CheckEntityRequest { credit_code: SUBJECT.into(), matter_type: MatterType::Procurement as i32 };
        let answer = sanctions.check_entity(with_token(request, token)).await.unwrap().into_inner();
        last = answer.measures.into_iter().map(|measure| measure.code).collect();
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("CheckEntity never satisfied the test; last measures {last:?}\n{}", platform.log_tail("sanctions"));
}

#[tokio::test]
async fn grades_and_measures_follow_registrations_records_withdrawals_and_status_through_the_platform() {
    let platform = Platform::start().await;
    let market = department(&platform, "samr-440305", &[]).await;
    let gateway = platform.gateway().await;
    let entity = Entity {
        credit_code: SUBJECT.into(),
        name: "深圳市测试科技有限公司".into(),
        kind: SubjectKind::Enterprise as i32,
        region_code: "440305".into(),
        industry_code: "I6421".into(),
        established_on: "1998-11-11".into(),
        ..Default::default()
    };
    let mut registry = RegistryServiceClient::new(gateway.clone());
    registry.register_entity(with_token(RegisterEntityRequest { entity: Some(entity) }, &market)).await.unwrap();
    grade_becomes(&platform, &market, Grade::A).await;

    let decided_on = (xinyong_domain::calendar::today() - chrono::Duration::days(3)).to_string();
    let record = RecordInput {
        credit_code: SUBJECT.into(),
        source_record_id: "NS-2026-1".into(),
        category: "penalty".into(),
        nature: Nature::SeriousDishonesty as i32,
        decided_on,
        document_number: "深南市监罚〔2026〕1号".into(),
        fields: [("content", "责令停产停业"), ("legal_basis", "《食品安全法》"), ("authority", "南山区市场监督管理局")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        penalty_kind: PenaltyKind::OrderToStop as i32,
        ..Default::default()
    };
    let mut ingestion = IngestionServiceClient::new(gateway.clone());
    let stored = ingestion
        .submit_record(with_token(SubmitRecordRequest { record: Some(record) }, &market))
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    let graded = grade_becomes(&platform, &market, Grade::C).await;
    let codes: Vec<&str> = graded.reasons.iter().map(|reason| reason.code.as_str()).collect();
    assert_eq!(codes, ["severe_penalty", "serious_dishonesty"]);
    assert!(graded.reasons.iter().all(|reason| reason.record_ids == [stored.record_id.clone()]));

    // Sanctions learned the grade from grading's event: the department checking before a
    // procurement is told to restrict.
    let measures = check_until(&platform, &market, |codes| codes.contains(&"c-procurement-restrict".to_owned())).await;
    assert_eq!(measures, ["c-procurement-restrict"]);

    let withdrawal = WithdrawRecordRequest { record_id: stored.record_id.clone(), reason: "复议撤销".into() };
    ingestion.withdraw_record(with_token(withdrawal, &market)).await.unwrap();
    grade_becomes(&platform, &market, Grade::A).await;
    let measures = check_until(&platform, &market, |codes| codes.contains(&"a-procurement-priority".to_owned())).await;
    assert_eq!(measures, ["a-procurement-priority"], "the restriction stopped at once");

    let revoke = UpdateEntityStatusRequest {
        credit_code: SUBJECT.into(),
        status: EntityStatus::LicenceRevoked as i32,
        effective_on: xinyong_domain::calendar::today().to_string(),
        reason: "吊销营业执照".into(),
    };
    registry.update_entity_status(with_token(revoke, &market)).await.unwrap();
    grade_becomes(&platform, &market, Grade::D).await;

    let history = GradingServiceClient::new(gateway)
        .get_grade_history(with_token(
            GetGradeHistoryRequest { credit_code: SUBJECT.into(), ..Default::default() },
            &market,
        ))
        .await
        .unwrap()
        .into_inner()
        .grades;
    let grades: Vec<i32> = history.iter().map(|grade| grade.grade).collect();
    assert_eq!(grades, [Grade::D as i32, Grade::A as i32, Grade::C as i32, Grade::A as i32]);
}
