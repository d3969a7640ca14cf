//! Objections and repair through the gateway (flow 4 of ARCHITECTURE.md): the credit office files
//! an objection about a fine, the grade names the record as disputed, the provider answers; the
//! subject applies for repair, the provider approves, and the grade goes back to A while ingestion
//! keeps the record as repaired. Every hop is real: gateway → objections → outbox → relay → Redis
//! Stream → grading and ingestion.

use std::time::Duration;

use xinyong_proto::common::v1::{Grade, Nature};
use xinyong_proto::grading::v1::grading_service_client::GradingServiceClient;
use xinyong_proto::grading::v1::{GetGradeRequest, GradeInfo};
use xinyong_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use xinyong_proto::ingestion::v1::{GetRecordRequest, PenaltyKind, RecordInput, RecordState, SubmitRecordRequest};
use xinyong_proto::objections::v1::objection_service_client::ObjectionServiceClient;
use xinyong_proto::objections::v1::{
    ApplyRepairRequest, DecideRepairRequest, FileObjectionRequest, ObjectionGround, ObjectionStatus, RepairStatus,
    RespondObjectionRequest,
};
use xinyong_proto::registry::v1::RegisterEntityRequest;
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;

use crate::ingestion::{department, enterprise};
use crate::support::{Platform, with_token};

const SUBJECT: &str = "9144030071526726XG";

async fn grade_when(platform: &Platform, token: &str, done: impl Fn(&GradeInfo) -> bool) -> GradeInfo {
    let mut grading = GradingServiceClient::new(platform.gateway().await);
    let mut last = None;
    for _ in 0..300 {
        let request = GetGradeRequest { credit_code: SUBJECT.into(), scheme: String::new() };
        if let Ok(response) = grading.get_grade(with_token(request, token)).await {
            let info = response.into_inner().grade.unwrap();
            if done(&info) {
                return info;
            }
            last = Some(info);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the grade never reached the state expected; last {last:?}\n{}", platform.log_tail("grading"));
}

fn disputed(info: &GradeInfo) -> Vec<String> {
    info.reasons.iter().flat_map(|reason| reason.disputed_record_ids.iter().cloned()).collect()
}

#[tokio::test]
async fn an_objection_marks_the_grade_and_an_approved_repair_restores_it_through_the_platform() {
    let platform = Platform::start().await;
    let market = department(&platform, "samr-440305", &[]).await;
    let office = department(&platform, "credit-office-440305", &[]).await;
    let gateway = platform.gateway().await;
    let mut registry = RegistryServiceClient::new(gateway.clone());
    registry.register_entity(with_token(RegisterEntityRequest { entity: Some(enterprise()) }, &market)).await.unwrap();

    // A fine 200 days old: general dishonesty inside the 12-month window, past its 3 months.
    let record = RecordInput {
        credit_code: SUBJECT.into(),
        source_record_id: "NS-2026-7".into(),
        category: "penalty".into(),
        decided_on: (xinyong_domain::calendar::today() - chrono::Duration::days(200)).to_string(),
        document_number: "深南市监罚〔2026〕7号".into(),
        fields: [("content", "罚款5000元"), ("legal_basis", "《广告法》"), ("authority", "南山区市场监督管理局")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        penalty_kind: PenaltyKind::Fine as i32,
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
    assert_eq!(stored.nature, Nature::GeneralDishonesty as i32);
    grade_when(&platform, &market, |info| info.grade == Grade::B as i32).await;

    // The credit office files an objection: the record still counts, and is marked disputed.
    let mut objections = ObjectionServiceClient::new(gateway.clone());
    let filing = FileObjectionRequest {
        credit_code: SUBJECT.into(),
        record_id: stored.record_id.clone(),
        ground: ObjectionGround::Wrong as i32,
        statement: "处罚对象并非本企业".into(),
        source_objection_id: "YY-2026-001".into(),
    };
    let objection =
        objections.file_objection(with_token(filing, &office)).await.unwrap().into_inner().objection.unwrap();
    assert_eq!(objection.department_id, "samr-440305", "routed to the provider");
    let marked = grade_when(&platform, &market, |info| !disputed(info).is_empty()).await;
    assert_eq!(marked.grade, Grade::B as i32, "a disputed record still counts");
    assert_eq!(disputed(&marked), std::slice::from_ref(&stored.record_id));

    // The provider rejects it: the mark goes, the grade stays.
    let answer = RespondObjectionRequest {
        objection_id: objection.objection_id.clone(),
        upheld: false,
        answer: "经核查，处罚对象无误".into(),
    };
    let answered =
        objections.respond_objection(with_token(answer, &market)).await.unwrap().into_inner().objection.unwrap();
    assert_eq!(answered.status, ObjectionStatus::Rejected as i32);
    let cleared = grade_when(&platform, &market, |info| disputed(info).is_empty()).await;
    assert_eq!(cleared.grade, Grade::B as i32);

    // The subject rectifies and applies for repair through the office; the provider approves.
    let application = ApplyRepairRequest {
        credit_code: SUBJECT.into(),
        record_id: stored.record_id.clone(),
        commitment: "已整改到位，承诺依法发布广告".into(),
        evidence: vec!["整改报告".into(), "信用修复培训结业证明".into()],
        source_repair_id: "XF-2026-001".into(),
    };
    let repair = objections.apply_repair(with_token(application, &office)).await.unwrap().into_inner().repair.unwrap();
    let decision =
        DecideRepairRequest { repair_id: repair.repair_id.clone(), approved: true, decision: "同意修复".into() };
    let decided = objections.decide_repair(with_token(decision, &market)).await.unwrap().into_inner().repair.unwrap();
    assert_eq!(decided.status, RepairStatus::Approved as i32);
    let restored = grade_when(&platform, &market, |info| info.grade == Grade::A as i32).await;
    assert!(restored.reasons.iter().all(|reason| !reason.record_ids.contains(&stored.record_id)));
    for _ in 0..300 {
        let request = GetRecordRequest { record_id: stored.record_id.clone() };
        let record = ingestion.get_record(with_token(request, &market)).await.unwrap().into_inner().record.unwrap();
        if record.state == RecordState::Repaired as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ingestion never marked the record repaired\n{}", platform.log_tail("ingestion"));
}
