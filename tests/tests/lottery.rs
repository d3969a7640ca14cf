//! Random inspections through the gateway (flow 5 of ARCHITECTURE.md): a registration reaches
//! lottery's directory, a department staffs and draws a plan, records a visit's result, and the
//! result becomes the subject's inspection record in ingestion. Every hop is real: gateway →
//! registry → outbox → relay → Redis Stream → lottery; lottery → outbox → relay → ingestion.

use std::time::Duration;

use tonic::Code;
use xinyong_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use xinyong_proto::ingestion::v1::{ListRecordsRequest, Record};
use xinyong_proto::lottery::v1::lottery_service_client::LotteryServiceClient;
use xinyong_proto::lottery::v1::{
    CreatePlanRequest, DrawRequest, DrawResponse, Inspector, Plan, PublishResultsRequest, RecordResultRequest,
    UpsertInspectorRequest, VerifyDrawRequest,
};
use xinyong_proto::registry::v1::RegisterEntityRequest;
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;

use crate::ingestion::{department, enterprise};
use crate::support::{Platform, with_token};

const SUBJECT: &str = "9144030071526726XG";

#[tokio::test]
async fn a_drawn_visit_result_becomes_the_subjects_inspection_record_through_the_platform() {
    let platform = Platform::start().await;
    let market = department(&platform, "samr-440305", &[]).await;
    let gateway = platform.gateway().await;
    let mut registry = RegistryServiceClient::new(gateway.clone());
    registry.register_entity(with_token(RegisterEntityRequest { entity: Some(enterprise()) }, &market)).await.unwrap();

    let mut lottery = LotteryServiceClient::new(gateway.clone());
    for id in ["m-1", "m-2"] {
        let inspector = Inspector {
            inspector_id: id.into(),
            name: format!("检查员{id}"),
            qualifications: vec!["product_quality".into()],
            active: true,
            ..Default::default()
        };
        let request = UpsertInspectorRequest { inspector: Some(inspector) };
        lottery.upsert_inspector(with_token(request, &market)).await.unwrap();
    }
    let today = xinyong_domain::calendar::today();
    let plan = Plan {
        title: "2026年产品质量双随机抽查".into(),
        items: vec!["product_quality".into()],
        region_prefix: "440305".into(),
        default_percent: 100.0,
        starts_on: today.to_string(),
        ends_on: (today + chrono::Duration::days(30)).to_string(),
        source_plan_id: "CJ-2026-01".into(),
        ..Default::default()
    };
    let plan =
        lottery.create_plan(with_token(CreatePlanRequest { plan: Some(plan) }, &market)).await.unwrap().into_inner();
    let plan_id = plan.plan.unwrap().plan_id;

    // The registration reaches lottery's directory by event; until then the population is empty.
    let mut drawn: Option<DrawResponse> = None;
    for _ in 0..300 {
        let request = DrawRequest { plan_id: plan_id.clone(), seed: "seed-1".into() };
        match lottery.draw(with_token(request, &market)).await {
            Ok(response) => {
                drawn = Some(response.into_inner());
                break;
            }
            Err(status) if status.code() == Code::FailedPrecondition => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("draw failed: {status:?}"),
        }
    }
    let drawn = drawn.unwrap_or_else(|| panic!("never drawn\n{}", platform.log_tail("lottery")));
    assert_eq!(drawn.assignments.len(), 1);
    let visit = &drawn.assignments[0];
    assert_eq!(visit.credit_code, SUBJECT);
    assert_eq!(visit.inspector_ids, ["m-1", "m-2"]);
    let verified = lottery.verify_draw(with_token(VerifyDrawRequest { draw_id: drawn.draw_id.clone() }, &market));
    assert!(verified.await.unwrap().into_inner().reproducible);

    let result = RecordResultRequest {
        assignment_id: visit.assignment_id.clone(),
        inspected_on: today.to_string(),
        outcome: "未发现问题".into(),
        problems_found: false,
        details: String::new(),
    };
    lottery.record_result(with_token(result, &market)).await.unwrap();
    let published = lottery.publish_results(with_token(PublishResultsRequest { plan_id: plan_id.clone() }, &market));
    assert_eq!(published.await.unwrap().into_inner().published, 1);

    let mut ingestion = IngestionServiceClient::new(gateway.clone());
    let mut found: Option<Record> = None;
    for _ in 0..300 {
        let request = ListRecordsRequest { credit_code: SUBJECT.into(), ..Default::default() };
        let records = ingestion.list_records(with_token(request, &market)).await.unwrap().into_inner().records;
        found = records.into_iter().find(|record| record.category == "inspection_result");
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record = found.unwrap_or_else(|| panic!("no inspection record\n{}", platform.log_tail("ingestion")));
    assert_eq!(record.source_record_id, format!("lottery-{}", visit.assignment_id));
    assert_eq!(record.department_id, "samr-440305");
    assert_eq!(record.decided_on, today.to_string());
    assert_eq!(record.fields.get("plan_id"), Some(&plan_id));
    assert_eq!(record.fields.get("outcome").map(String::as_str), Some("未发现问题"));
}

/// A listing reaches lottery through the platform with the record it rests on, and its end ends it
/// there: ingestion → sanctions (listing) → `ListingChanged` → lottery's listings.
#[tokio::test]
async fn a_listing_and_its_end_reach_lottery_by_their_record() {
    use xinyong_proto::common::v1::Nature;
    use xinyong_proto::ingestion::v1::{RecordInput, SubmitRecordRequest, WithdrawRecordRequest};
    let platform = Platform::start().await;
    let market = department(&platform, "samr-440305", &[]).await;
    let gateway = platform.gateway().await;
    let mut registry = RegistryServiceClient::new(gateway.clone());
    registry.register_entity(with_token(RegisterEntityRequest { entity: Some(enterprise()) }, &market)).await.unwrap();
    let listing = RecordInput {
        credit_code: SUBJECT.into(),
        source_record_id: "YC-2026-1".into(),
        category: "abnormal_operation_list".into(),
        nature: Nature::GeneralDishonesty as i32,
        decided_on: xinyong_domain::calendar::today().to_string(),
        fields: [("content", "通过登记的住所无法联系"), ("authority", "深圳市市场监督管理局南山监管局")]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect(),
        ..Default::default()
    };
    let mut ingestion = IngestionServiceClient::new(gateway.clone());
    let record = ingestion
        .submit_record(with_token(SubmitRecordRequest { record: Some(listing) }, &market))
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    let lottery_pool = platform.pool_of("lottery").await;
    let kept = || async {
        sqlx::query_as::<_, (String, i16, bool)>("SELECT record_id, list, ended FROM listings WHERE credit_code = $1")
            .bind(SUBJECT)
            .fetch_all(&lottery_pool)
            .await
            .unwrap()
    };
    let mut seen = Vec::new();
    for _ in 0..300 {
        seen = kept().await;
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, [(record.record_id.clone(), 1, false)], "{}", platform.log_tail("lottery"));

    let withdraw =
        WithdrawRecordRequest { record_id: record.record_id.clone(), reason: "已移出经营异常名录".into() };
    ingestion.withdraw_record(with_token(withdraw, &market)).await.unwrap();
    for _ in 0..300 {
        seen = kept().await;
        if seen.iter().all(|(_, _, ended)| *ended) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, [(record.record_id, 1, true)], "{}", platform.log_tail("lottery"));
}
