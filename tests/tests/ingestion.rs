//! Ingestion through the gateway: records filed by departments under a subject the registry knows,
//! reporting rights as the gateway holds them, and changes only by the reporting department.

use tonic::Code;
use xinyong_proto::common::v1::SubjectKind;
use xinyong_proto::gateway::v1 as admin;
use xinyong_proto::gateway::v1::gateway_admin_service_client::GatewayAdminServiceClient;
use xinyong_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use xinyong_proto::ingestion::v1::{
    CorrectRecordRequest, PenaltyKind, RecordInput, SubmitOutcome, SubmitRecordRequest,
};
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;
use xinyong_proto::registry::v1::{Entity, RegisterEntityRequest};

use crate::support::{Platform, with_token};

pub async fn department(platform: &Platform, id: &str, permissions: &[&str]) -> String {
    let mut client = GatewayAdminServiceClient::new(platform.gateway().await);
    let request = admin::CreateDepartmentRequest {
        department_id: id.into(),
        name: id.into(),
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
    };
    client.create_department(with_token(request, &platform.admin_token)).await.unwrap();
    let issued = admin::IssueCredentialRequest { department_id: id.into() };
    client.issue_credential(with_token(issued, &platform.admin_token)).await.unwrap().into_inner().token
}

/// An enterprise in 440305, registered by the tests that need a subject to file records under.
pub fn enterprise() -> Entity {
    Entity {
        credit_code: "9144030071526726XG".into(),
        name: "华为技术有限公司".into(),
        kind: SubjectKind::Enterprise as i32,
        region_code: "440305".into(),
        industry_code: "C3921".into(),
        established_on: "1987-09-15".into(),
        ..Default::default()
    }
}

fn penalty(source: &str) -> RecordInput {
    RecordInput {
        credit_code: "9144030071526726XG".into(),
        source_record_id: source.into(),
        category: "penalty".into(),
        decided_on: "2025-10-09".into(),
        document_number: "深南市监罚〔2025〕88号".into(),
        fields: [
            ("content", "罚款2万元"),
            ("legal_basis", "《广告法》第五十五条"),
            ("authority", "深圳市南山区市场监督管理局"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        penalty_kind: PenaltyKind::Fine as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn departments_file_records_under_registered_subjects_within_their_rights() {
    let platform = Platform::start().await;
    let market = department(&platform, "samr-440305", &["report:penalty", "report:licence"]).await;
    let housing = department(&platform, "housing-440305", &["report:licence"]).await;
    let gateway = platform.gateway().await;

    RegistryServiceClient::new(gateway.clone())
        .register_entity(with_token(RegisterEntityRequest { entity: Some(enterprise()) }, &market))
        .await
        .unwrap();

    let mut ingestion = IngestionServiceClient::new(gateway);
    let accepted = ingestion
        .submit_record(with_token(SubmitRecordRequest { record: Some(penalty("NS-88")) }, &market))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(accepted.outcome, SubmitOutcome::Accepted as i32);
    let record = accepted.record.unwrap();
    assert_eq!(record.department_id, "samr-440305");

    let refused = ingestion
        .submit_record(with_token(SubmitRecordRequest { record: Some(penalty("H-1")) }, &housing))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("report:penalty"), "{}", refused.message());

    let correction = CorrectRecordRequest {
        record_id: record.record_id.clone(),
        record: Some(penalty("NS-88")),
        reason: "改".into(),
    };
    let not_theirs = ingestion.correct_record(with_token(correction, &housing)).await.unwrap_err();
    assert_eq!(not_theirs.code(), Code::PermissionDenied);

    let mut unknown = penalty("NS-89");
    unknown.credit_code = "91110000600037341L".into();
    let status =
        ingestion.submit_record(with_token(SubmitRecordRequest { record: Some(unknown) }, &market)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}
