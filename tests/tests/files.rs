//! The file channel: `xinyong-cli ingest` streams a CSV or JSON-lines file through the gateway,
//! answers every line, and writes the rejected ones with their reasons.

use xinyong_cli::ingest::{Options, Tls, run};
use xinyong_proto::common::v1::SubjectKind;
use xinyong_proto::gateway::v1 as admin;
use xinyong_proto::gateway::v1::gateway_admin_service_client::GatewayAdminServiceClient;
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;
use xinyong_proto::registry::v1::{Entity, RegisterEntityRequest};

use crate::support::{Platform, with_token};

const CSV: &str = "\u{feff}credit_code,source_record_id,category,decided_on,nature,document_number,penalty_kind,field.content,field.legal_basis,field.authority
91330100799655058B,HZ-1,penalty,2025-10-09,,杭西市监罚〔2025〕1号,FINE,罚款1万元,《产品质量法》第五十条,杭州市西湖区市场监督管理局
91330100799655058B,HZ-2,penalty,2025-10-10,SERIOUS_DISHONESTY,杭西市监罚〔2025〕2号,LICENCE_REVOCATION,\"吊销许可证，没收违法所得\",《食品安全法》第一百三十五条,杭州市西湖区市场监督管理局
91330100799655058B,HZ-3,penalty,2025-10-11,,杭西市监罚〔2025〕3号,FINE,罚款,,杭州市西湖区市场监督管理局
91330100799655058B,HZ-4,penalty,2025-10-12,TERRIBLE,杭西市监罚〔2025〕4号,FINE,罚款,依据,杭州市西湖区市场监督管理局
";

async fn setup(platform: &Platform) -> String {
    let mut admin_client = GatewayAdminServiceClient::new(platform.gateway().await);
    let request = admin::CreateDepartmentRequest {
        department_id: "samr-330106".into(),
        name: "西湖区市场监督管理局".into(),
        permissions: vec![],
    };
    admin_client.create_department(with_token(request, &platform.admin_token)).await.unwrap();
    let issue = admin::IssueCredentialRequest { department_id: "samr-330106".into() };
    let token =
        admin_client.issue_credential(with_token(issue, &platform.admin_token)).await.unwrap().into_inner().token;
    let entity = Entity {
        credit_code: "91330100799655058B".into(),
        name: "杭州某某科技有限公司".into(),
        kind: SubjectKind::Enterprise as i32,
        region_code: "330106".into(),
        industry_code: "I6510".into(),
        established_on: "2007-03-01".into(),
        ..Default::default()
    };
    RegistryServiceClient::new(platform.gateway().await)
        .register_entity(with_token(RegisterEntityRequest { entity: Some(entity) }, &token))
        .await
        .unwrap();
    token
}

#[tokio::test]
async fn a_csv_file_goes_through_line_by_line_and_its_rejects_are_written() {
    let platform = Platform::start().await;
    let token = setup(&platform).await;
    let folder = std::env::temp_dir().join(format!("xinyong-files-{}", platform.database));
    std::fs::create_dir_all(&folder).unwrap();
    let file = folder.join("records.csv");
    std::fs::write(&file, CSV).unwrap();
    let options = Options {
        file: file.clone(),
        gateway: format!("http://{}", platform.node("gateway").grpc),
        token: Some(token),
        tls: Tls::default(),
        rejects: None,
        progress_every: None,
    };

    let summary = run(options.clone()).await.expect("the file goes through");
    assert_eq!((summary.rows, summary.accepted, summary.duplicate, summary.rejected), (4, 2, 0, 2));
    let rejects = std::fs::read_to_string(&summary.rejects_file).unwrap();
    assert!(rejects.starts_with("line,source_record_id,field,reason"), "{rejects}");
    assert!(rejects.contains("4,HZ-3,fields.legal_basis,required for category penalty"), "{rejects}");
    assert!(rejects.contains("5,,line,\"nature `TERRIBLE` is not one of"), "{rejects}");

    // The same file again: nothing new.
    let again = run(options).await.unwrap();
    assert_eq!((again.accepted, again.duplicate, again.rejected), (0, 2, 2));

    // JSON lines, with a field object.
    let jsonl = folder.join("records.jsonl");
    std::fs::write(
        &jsonl,
        r#"{"credit_code":"91330100799655058B","source_record_id":"HZ-J1","category":"tax_arrears","decided_on":"2025-09-01","fields":{"content":"欠缴增值税","authority":"国家税务总局杭州市西湖区税务局"}}
"#,
    )
    .unwrap();
    let json = run(Options {
        file: jsonl,
        gateway: format!("http://{}", platform.node("gateway").grpc),
        token: Some(again_token(&platform).await),
        tls: Tls::default(),
        rejects: None,
        progress_every: None,
    })
    .await
    .unwrap();
    assert_eq!((json.accepted, json.rejected), (1, 0));
    std::fs::remove_dir_all(folder).unwrap();
}

/// Another department's credential (records are keyed by department, so its rows are new).
async fn again_token(platform: &Platform) -> String {
    let mut admin_client = GatewayAdminServiceClient::new(platform.gateway().await);
    let request = admin::CreateDepartmentRequest {
        department_id: "tax-330106".into(),
        name: "西湖区税务局".into(),
        permissions: vec![],
    };
    admin_client.create_department(with_token(request, &platform.admin_token)).await.unwrap();
    let issue = admin::IssueCredentialRequest { department_id: "tax-330106".into() };
    admin_client.issue_credential(with_token(issue, &platform.admin_token)).await.unwrap().into_inner().token
}

#[tokio::test]
async fn a_file_with_an_unknown_column_is_refused_before_anything_is_sent() {
    let platform = Platform::start().await;
    let token = setup(&platform).await;
    let file = std::env::temp_dir().join(format!("xinyong-bad-header-{}.csv", platform.database));
    std::fs::write(&file, "credit_code,source_record_id,category,decided_on,colour\n").unwrap();
    let error = run(Options {
        file: file.clone(),
        gateway: format!("http://{}", platform.node("gateway").grpc),
        token: Some(token),
        tls: Tls::default(),
        rejects: None,
        progress_every: None,
    })
    .await
    .unwrap_err();
    assert!(error.to_string().contains("unknown column `colour`"), "{error}");
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(format!("{}.rejects.csv", file.display()));
}
