//! Sanctions through the gateway: a registration pushed to its approving department, a measure
//! pushed to its executing department when the grade falls and lifted when it recovers, and the
//! loop of a check closed with a report.

use std::time::Duration;

use tonic::transport::Channel;

use xinyong_proto::common::v1::{Grade, Nature, SubjectKind};
use xinyong_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use xinyong_proto::ingestion::v1::{PenaltyKind, RecordInput, SubmitRecordRequest, WithdrawRecordRequest};
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;
use xinyong_proto::registry::v1::{Entity, RegisterEntityRequest};
use xinyong_proto::sanctions::v1::sanctions_service_client::SanctionsServiceClient;
use xinyong_proto::sanctions::v1::{
    CheckEntityRequest, CheckEntityResponse, ListTasksRequest, MatterType, Measure, MeasureHandling, MeasureTarget,
    ReportHandlingRequest, Task, TaskKind, UpsertMeasureRequest,
};

use crate::ingestion::department;
use crate::support::{Platform, with_token};

const SUBJECT: &str = "91110000600037341L";

async fn tasks_when(platform: &Platform, token: &str, kind: TaskKind, count: usize) -> Vec<Task> {
    let mut sanctions = SanctionsServiceClient::new(platform.gateway().await);
    for _ in 0..300 {
        let request = ListTasksRequest { kinds: vec![kind as i32], ..Default::default() };
        let tasks = sanctions.list_tasks(with_token(request, token)).await.unwrap().into_inner().tasks;
        if tasks.len() >= count {
            return tasks;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never {count} {kind:?} tasks\n{}", platform.log_tail("sanctions"));
}

async fn check_until(sanctions: &mut SanctionsServiceClient<Channel>, token: &str, code: &str) -> CheckEntityResponse {
    let mut codes = Vec::new();
    for _ in 0..300 {
        let request = CheckEntityRequest { credit_code: SUBJECT.into(), matter_type: MatterType::Subsidies as i32 };
        let check = sanctions.check_entity(with_token(request, token)).await.unwrap().into_inner();
        codes = check.measures.iter().map(|m| m.code.clone()).collect();
        if codes.iter().any(|c| c == code) {
            return check;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the check never named {code}: {codes:?}");
}

#[tokio::test]
async fn registrations_and_sanctions_reach_the_departments_that_must_act_through_the_gateway() {
    let platform = Platform::start().await;
    let registrar = department(&platform, "samr-110108", &[]).await;
    let food = department(&platform, "market-regulation", &[]).await;
    let finance = department(&platform, "finance-110108", &[]).await;
    let gateway = platform.gateway().await;

    // Precise push: the scope names a food business, so the food regulator is told.
    let entity = Entity {
        credit_code: SUBJECT.into(),
        name: "联想(北京)有限公司".into(),
        kind: SubjectKind::Enterprise as i32,
        region_code: "110108".into(),
        industry_code: "F5211".into(),
        business_scope: "食品经营（销售预包装食品）；计算机软硬件开发".into(),
        established_on: "1992-11-12".into(),
        ..Default::default()
    };
    RegistryServiceClient::new(gateway.clone())
        .register_entity(with_token(RegisterEntityRequest { entity: Some(entity) }, &registrar))
        .await
        .unwrap();
    let pushed = tasks_when(&platform, &food, TaskKind::Registration, 1).await;
    assert!(pushed[0].summary.contains("食品经营许可"), "{}", pushed[0].summary);

    // A measure finance executes; the grade falls to C: finance is pushed it, once.
    let mut sanctions = SanctionsServiceClient::new(gateway.clone());
    let measure = Measure {
        code: "c-subsidy-stop".into(),
        title: "暂停财政资金补贴".into(),
        legal_basis: "第十一条第（三）项".into(),
        source: "000 art. 11(3)".into(),
        executing_departments: vec!["finance-110108".into()],
        grades: vec![Grade::C as i32, Grade::D as i32],
        target: MeasureTarget::Organisation as i32,
        matter_types: vec![MatterType::Subsidies as i32],
        ..Default::default()
    };
    sanctions.upsert_measure(with_token(UpsertMeasureRequest { measure: Some(measure) }, &finance)).await.unwrap();
    let record = RecordInput {
        credit_code: SUBJECT.into(),
        source_record_id: "HD-2026-7".into(),
        category: "penalty".into(),
        nature: Nature::SeriousDishonesty as i32,
        decided_on: (xinyong_domain::calendar::today() - chrono::Duration::days(2)).to_string(),
        document_number: "京海市监罚〔2026〕7号".into(),
        fields: [("content", "罚款20万元"), ("legal_basis", "《食品安全法》"), ("authority", "海淀区市场监督管理局")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        penalty_kind: PenaltyKind::Fine as i32,
        ..Default::default()
    };
    let mut ingestion = IngestionServiceClient::new(gateway.clone());
    let stored = ingestion
        .submit_record(with_token(SubmitRecordRequest { record: Some(record) }, &registrar))
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    let push = tasks_when(&platform, &finance, TaskKind::Sanction, 1).await;
    assert_eq!(push[0].measure_code, "c-subsidy-stop");

    // Before paying a subsidy finance checks, and must report; not applied needs a reason.
    // The task is committed before the check's read model is refreshed (that happens after the
    // commit), so the check may lag the inbox by a moment.
    let check = check_until(&mut sanctions, &finance, "c-subsidy-stop").await;
    let handlings: Vec<MeasureHandling> = check
        .measures
        .iter()
        .map(|m| MeasureHandling { measure_code: m.code.clone(), applied: false, reason: String::new() })
        .collect();
    let refused = sanctions
        .report_handling(with_token(
            ReportHandlingRequest { check_id: check.check_id.clone(), handlings: handlings.clone() },
            &finance,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let applied = handlings.into_iter().map(|h| MeasureHandling { applied: true, ..h }).collect();
    let report = ReportHandlingRequest { check_id: check.check_id, handlings: applied };
    assert!(sanctions.report_handling(with_token(report, &finance)).await.unwrap().into_inner().recorded);

    // The record is withdrawn: the grade recovers and finance is told to stop.
    let withdrawal = WithdrawRecordRequest { record_id: stored.record_id, reason: "行政复议撤销".into() };
    ingestion.withdraw_record(with_token(withdrawal, &registrar)).await.unwrap();
    let lift = tasks_when(&platform, &finance, TaskKind::Lift, 1).await;
    assert_eq!(lift[0].measure_code, "c-subsidy-stop");
}
