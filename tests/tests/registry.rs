//! The registry through the gateway: who may see a legal representative's ID number is decided by
//! the department's permissions as the gateway holds them.

use xinyong_proto::common::v1::{Person, SubjectKind};
use xinyong_proto::gateway::v1 as admin;
use xinyong_proto::gateway::v1::gateway_admin_service_client::GatewayAdminServiceClient;
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;
use xinyong_proto::registry::v1::{Entity, GetEntityRequest, RegisterEntityRequest, get_entity_request};

use crate::support::{Platform, with_token};

async fn department(platform: &Platform, id: &str, permissions: &[&str]) -> String {
    let mut client = GatewayAdminServiceClient::new(platform.gateway().await);
    client
        .create_department(with_token(
            admin::CreateDepartmentRequest {
                department_id: id.into(),
                name: id.into(),
                permissions: permissions.iter().map(|p| p.to_string()).collect(),
            },
            &platform.admin_token,
        ))
        .await
        .unwrap();
    client
        .issue_credential(with_token(admin::IssueCredentialRequest { department_id: id.into() }, &platform.admin_token))
        .await
        .unwrap()
        .into_inner()
        .token
}

#[tokio::test]
async fn id_numbers_are_shown_only_to_departments_with_the_personal_data_permission() {
    let platform = Platform::start().await;
    let market = department(&platform, "samr-110108", &["personal_data"]).await;
    let tax = department(&platform, "tax-110108", &[]).await;
    let mut registry = RegistryServiceClient::new(platform.gateway().await);

    let entity = Entity {
        credit_code: "91110000600037341L".into(),
        name: "联想(北京)有限公司".into(),
        kind: SubjectKind::Enterprise as i32,
        region_code: "110108".into(),
        industry_code: "C3911".into(),
        established_on: "1992-11-12".into(),
        legal_representative: Some(Person {
            name: "杨元庆".into(),
            id_number: "11010519491231002X".into(),
            id_number_masked: false,
        }),
        ..Default::default()
    };
    let registered = registry
        .register_entity(with_token(RegisterEntityRequest { entity: Some(entity) }, &market))
        .await
        .unwrap()
        .into_inner();
    assert!(registered.created);

    let get = || GetEntityRequest {
        key: Some(get_entity_request::Key::CreditCode("91110000600037341L".into())),
        include_history: true,
    };
    let seen_by_tax = registry.get_entity(with_token(get(), &tax)).await.unwrap().into_inner();
    let person = seen_by_tax.entity.unwrap().legal_representative.unwrap();
    assert_eq!(person.id_number, "110105********002X");
    assert!(person.id_number_masked);
    assert_eq!(seen_by_tax.history[0].department_id, "samr-110108", "the registering department is recorded");

    let seen_by_market = registry.get_entity(with_token(get(), &market)).await.unwrap().into_inner();
    assert_eq!(seen_by_market.entity.unwrap().legal_representative.unwrap().id_number, "11010519491231002X");

    // A caller cannot grant itself the permission by sending the gateway's headers.
    let mut forged = with_token(get(), &tax);
    forged.metadata_mut().insert("x-xinyong-permissions", "personal_data".parse().unwrap());
    forged.metadata_mut().insert("x-xinyong-department", "samr-110108".parse().unwrap());
    let still_masked = registry.get_entity(forged).await.unwrap().into_inner();
    assert!(still_masked.entity.unwrap().legal_representative.unwrap().id_number_masked);
}
