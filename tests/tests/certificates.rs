//! Departments authenticated by client certificate (ARCHITECTURE "Identity and permissions"; seed
//! 002 art. 19, 数字证书): the gateway speaking TLS on its public port, a certificate registered to
//! a department acting as it, and every way one is refused.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use prost::Message;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use xinyong_cli::ingest::{Options, RecordSigner, Tls, run};
use xinyong_proto::common::v1::SubjectKind;
use xinyong_proto::gateway::v1 as admin;
use xinyong_proto::gateway::v1::gateway_admin_service_client::GatewayAdminServiceClient;
use xinyong_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use xinyong_proto::ingestion::v1::{
    CorrectRecordRequest, GetRecordHistoryRequest, GetRecordRequest, ListRecordsRequest, PenaltyKind, RecordInput,
    RecordSignature, SubmitRecordRequest,
};
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;
use xinyong_proto::registry::v1::{Entity, GetEntityRequest, RegisterEntityRequest, get_entity_request};

use crate::support::{Platform, free_port, with_token};

/// The committed test certificates (`tests/fixtures/tls/make.sh`).
fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls").join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).expect("a TLS fixture")
}

/// A TLS connection to the gateway that trusts the test CA, presenting `client` (a fixture's
/// name) when given.
async fn connect(platform: &Platform, client: Option<&str>) -> Result<Channel, tonic::transport::Error> {
    connect_trusting(platform, "ca.pem", client).await
}

/// A TLS connection to the gateway that trusts only the CA `authority` (a fixture's name).
async fn connect_trusting(
    platform: &Platform,
    authority: &str,
    client: Option<&str>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(authority))).domain_name("localhost");
    if let Some(client) = client {
        tls = tls.identity(Identity::from_pem(read(&format!("{client}.pem")), read(&format!("{client}.key"))));
    }
    Endpoint::from_shared(format!("https://{}", platform.node("gateway").grpc))
        .expect("endpoint")
        .tls_config(tls)?
        .connect()
        .await
}

fn get_entity() -> GetEntityRequest {
    GetEntityRequest {
        key: Some(get_entity_request::Key::CreditCode("91110000600037341L".into())),
        include_history: false,
    }
}

/// The registry and ingestion and, in front of them, the gateway with TLS and the test CA for
/// client certificates; returns once the gateway answers SERVING over TLS.
async fn gateway_over_tls() -> Platform {
    let mut platform = Platform::provision().await;
    let ports: HashMap<String, (u16, u16)> =
        ["registry", "ingestion", "gateway"].map(|service| (service.to_owned(), (free_port(), free_port()))).into();
    platform.spawn("registry", ports["registry"], &[], &ports);
    platform.spawn("ingestion", ports["ingestion"], &[], &ports);
    let (certificate, key, authorities) = (fixture("server.pem"), fixture("server.key"), fixture("ca.pem"));
    let revoked = fixture("ca.crl.pem");
    platform.spawn(
        "gateway",
        ports["gateway"],
        &[
            ("XINYONG__GATEWAY__TLS__CERTIFICATE_FILE", certificate.to_str().expect("a path")),
            ("XINYONG__GATEWAY__TLS__KEY_FILE", key.to_str().expect("a path")),
            ("XINYONG__GATEWAY__TLS__CLIENT_CA_FILE", authorities.to_str().expect("a path")),
            ("XINYONG__GATEWAY__TLS__CLIENT_CRL_FILE", revoked.to_str().expect("a path")),
        ],
        &ports,
    );
    platform.wait_serving("registry").await;
    platform.wait_serving("ingestion").await;
    serving_over_tls(&platform).await;
    platform
}

/// Once the gateway answers SERVING over TLS to a client that trusts the test CA.
async fn serving_over_tls(platform: &Platform) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !serves_to(platform, "ca.pem").await {
        assert!(Instant::now() < deadline, "the gateway did not serve over TLS:\n{}", platform.log_tail("gateway"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many audit entries match `condition`, once at least one does (the log is written a batch
/// at a time, after the answers) or after five seconds.
async fn audit_entries(pool: &sqlx::PgPool, condition: &str) -> i64 {
    let query = format!("SELECT count(*) FROM audit_log WHERE {condition}");
    for _ in 0..200 {
        let counted: i64 = sqlx::query_scalar(&query).fetch_one(pool).await.unwrap();
        if counted > 0 {
            return counted;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    0
}

/// The gateway's samples from its admin port, by name without labels (each process labels its
/// samples with its component).
async fn gauge_values(platform: &Platform) -> HashMap<String, i64> {
    let metrics = xinyong_platform::testing::http_get(platform.node("gateway").admin, "/metrics").await;
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(' '))
        .filter_map(|(name, value)| {
            let name = name.split_once('{').map_or(name, |(name, _)| name);
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The signature checked as anyone would, with openssl and the certificate alone (when openssl is
/// there: the unit tests of `signatures` hold the platform to a signature openssl made).
fn checked_by_openssl(signed: &RecordSignature, folder: &std::path::Path) {
    let (certificate, public_key) = (folder.join("signer.pem"), folder.join("signer.pub"));
    let (input, signature) = (folder.join("signed_input.bin"), folder.join("signature.bin"));
    std::fs::write(&certificate, &signed.certificate_pem).unwrap();
    std::fs::write(&input, &signed.signed_input).unwrap();
    std::fs::write(&signature, &signed.signature).unwrap();
    let Ok(key) =
        std::process::Command::new("openssl").args(["x509", "-pubkey", "-noout", "-in"]).arg(&certificate).output()
    else {
        return;
    };
    std::fs::write(&public_key, key.stdout).unwrap();
    let verified = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(&public_key)
        .arg("-signature")
        .arg(&signature)
        .arg(&input)
        .output()
        .expect("openssl runs");
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));
}

async fn register(
    administration: &mut GatewayAdminServiceClient<Channel>,
    token: &str,
    department_id: &str,
    certificate_pem: String,
) -> Result<admin::RegisterCertificateResponse, tonic::Status> {
    administration
        .register_certificate(with_token(
            admin::RegisterCertificateRequest { department_id: department_id.into(), certificate_pem },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_registered_client_certificate_acts_as_its_department_until_revoked() {
    let platform = gateway_over_tls().await;
    let token = platform.admin_token.clone();

    // The public port speaks TLS only now.
    let plain = Endpoint::from_shared(format!("http://{}", platform.node("gateway").grpc)).expect("endpoint");
    if let Ok(channel) = plain.connect().await {
        let answer = RegistryServiceClient::new(channel).get_entity(with_token(get_entity(), &token)).await;
        assert!(answer.is_err(), "a clear-text call was answered: {answer:?}");
    }

    // The administrator, by bearer token over TLS without a certificate of its own.
    let mut administration = GatewayAdminServiceClient::new(connect(&platform, None).await.expect("TLS"));
    for (id, name) in [("samr-110107", "石景山区市场监督管理局"), ("tax-110107", "石景山区税务局")] {
        administration
            .create_department(with_token(
                admin::CreateDepartmentRequest { department_id: id.into(), name: name.into(), permissions: vec![] },
                &token,
            ))
            .await
            .expect("a department");
    }
    let registered = register(&mut administration, &token, "samr-110107", read("department.pem")).await.unwrap();
    assert!(registered.created);
    // The fingerprint `openssl x509 -noout -fingerprint -sha256` prints of the fixture.
    let printed = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(fixture("department.pem"))
        .output()
        .ok()
        .filter(|output| output.status.success());
    match printed {
        Some(output) => {
            let printed = String::from_utf8_lossy(&output.stdout).to_lowercase().replace(':', "");
            assert!(printed.trim().ends_with(&registered.certificate_sha256), "{printed} against {registered:?}");
        }
        None => assert_eq!(registered.certificate_sha256.len(), 64, "{registered:?}"),
    }
    // The fixtures end on 31 December 2126 (tests/fixtures/tls/make.sh).
    let end = chrono::NaiveDate::from_ymd_opt(2126, 12, 31).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let ends = Some(prost_types::Timestamp { seconds: end.timestamp(), nanos: 0 });
    assert_eq!(registered.expires_at, ends);
    // The expiry an SRE watches: the gateway's own certificate, and the first departments' one.
    let gauges = gauge_values(&platform).await;
    assert_eq!(
        gauges.get("xinyong_gateway_tls_certificate_expiry_timestamp_seconds"),
        Some(&end.timestamp()),
        "{gauges:?}"
    );
    assert_eq!(
        gauges.get("xinyong_gateway_client_certificate_first_expiry_timestamp_seconds"),
        Some(&end.timestamp()),
        "{gauges:?}"
    );
    let again = register(&mut administration, &token, "samr-110107", read("department.pem")).await.unwrap();
    assert_eq!((again.credential_id.as_str(), again.created), (registered.credential_id.as_str(), false));
    let listed = administration
        .list_departments(with_token(admin::ListDepartmentsRequest::default(), &token))
        .await
        .unwrap()
        .into_inner();
    let department = listed.departments.iter().find(|d| d.department_id == "samr-110107").expect("listed");
    assert_eq!(department.credentials.len(), 1);
    assert_eq!(department.credentials[0].credential_id, registered.credential_id);
    assert_eq!(department.credentials[0].certificate_sha256, registered.certificate_sha256);
    assert_eq!(department.credentials[0].expires_at, ends);

    // What registration refuses, naming why.
    let taken = register(&mut administration, &token, "tax-110107", read("department.pem")).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    assert!(taken.message().contains("samr-110107"), "{}", taken.message());
    let garbled = register(&mut administration, &token, "tax-110107", "not a certificate".into()).await.unwrap_err();
    assert_eq!(garbled.code(), Code::InvalidArgument);
    assert!(garbled.message().contains("certificate_pem"), "{}", garbled.message());
    let chain = format!("{}{}", read("unregistered.pem"), read("ca.pem"));
    let two = register(&mut administration, &token, "tax-110107", chain).await.unwrap_err();
    assert_eq!(two.code(), Code::InvalidArgument);
    assert!(two.message().contains("more than one certificate"), "{}", two.message());
    let expired = register(&mut administration, &token, "tax-110107", read("expired.pem")).await.unwrap_err();
    assert_eq!(expired.code(), Code::InvalidArgument);
    assert!(expired.message().contains("expired at 2024-01-31"), "{}", expired.message());
    let nobody = register(&mut administration, &token, "no-such-office", read("unregistered.pem")).await.unwrap_err();
    assert_eq!(nobody.code(), Code::NotFound, "{nobody:?}");

    // The certificate alone reaches the registry as its department (the registry answers for the
    // unknown subject, not the gateway refusing), and the audit log names the department.
    let mut as_department = RegistryServiceClient::new(connect(&platform, Some("department")).await.expect("TLS"));
    let reached = as_department.get_entity(get_entity()).await.unwrap_err();
    assert_eq!(reached.code(), Code::NotFound, "{reached:?}");
    assert!(reached.message().contains("91110000600037341L"), "{}", reached.message());
    let pool = platform.pool_of("gateway").await;
    let recorded = audit_entries(
        &pool,
        "department_id = 'samr-110107' AND method = 'xinyong.registry.v1.RegistryService/GetEntity' AND code = 5",
    )
    .await;
    assert_eq!(recorded, 1, "the call is in the audit log under the certificate's department");
    // A department is not an administrator, whichever way it authenticates.
    let mut department_administration =
        GatewayAdminServiceClient::new(connect(&platform, Some("department")).await.expect("TLS"));
    let denied =
        department_administration.list_departments(admin::ListDepartmentsRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    // A bearer token decides over the connection's certificate.
    department_administration
        .list_departments(with_token(admin::ListDepartmentsRequest::default(), &token))
        .await
        .expect("the administrator's token on a department's connection");

    // The file channel with the certificate and no token: the stream of SubmitRecords over TLS.
    let entity = Entity {
        credit_code: "91330100799655058B".into(),
        name: "北京某某商贸有限公司".into(),
        kind: SubjectKind::Enterprise as i32,
        region_code: "330106".into(),
        industry_code: "F5211".into(),
        established_on: "2019-05-01".into(),
        ..Default::default()
    };
    as_department.register_entity(RegisterEntityRequest { entity: Some(entity) }).await.expect("registered");
    let folder = std::env::temp_dir().join(format!("xinyong-certificates-{}", platform.database));
    std::fs::create_dir_all(&folder).unwrap();
    let file = folder.join("records.csv");
    std::fs::write(
        &file,
        "credit_code,source_record_id,category,decided_on,document_number,penalty_kind,field.content,field.legal_basis,field.authority
91330100799655058B,SJS-1,penalty,2026-10-09,京石市监罚〔2026〕1号,FINE,罚款5000元,《广告法》第五十五条,北京市石景山区市场监督管理局
",
    )
    .unwrap();
    let ingest = |gateway: String, identity: Option<(PathBuf, PathBuf)>| Options {
        file: file.clone(),
        gateway,
        token: None,
        tls: Tls { ca_file: Some(fixture("ca.pem")), sign: identity.is_some(), identity },
        rejects: None,
        progress_every: None,
    };
    let address = platform.node("gateway").grpc;
    let department_identity = Some((fixture("department.pem"), fixture("department.key")));
    let summary = run(ingest(format!("https://localhost:{}", address.port()), department_identity.clone()))
        .await
        .expect("the file goes through");
    assert_eq!((summary.rows, summary.accepted, summary.rejected), (1, 1, 0), "{summary:?}");
    let without = run(ingest(format!("https://localhost:{}", address.port()), None)).await.unwrap_err();
    assert!(without.to_string().contains("no credential"), "{without}");
    let plain = run(ingest(format!("http://{address}"), department_identity)).await.unwrap_err();
    assert!(plain.to_string().contains("https://"), "{plain}");

    // The file channel signed every row with the department's key (`--sign`).
    let mut ingestion = IngestionServiceClient::new(connect(&platform, Some("department")).await.expect("TLS"));
    let listed = ingestion
        .list_records(ListRecordsRequest { credit_code: "91330100799655058B".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let from_file = listed.records.iter().find(|record| record.source_record_id == "SJS-1").expect("the file's row");
    assert!(from_file.signature.is_none(), "a listing leaves signatures out");
    let reader = ingestion.clone();
    let signature_of = |record_id: String| {
        let mut client = reader.clone();
        async move {
            let answer = client.get_record(GetRecordRequest { record_id }).await.unwrap().into_inner();
            answer.record.expect("a record")
        }
    };
    let from_file = signature_of(from_file.record_id.clone()).await;
    let signed = from_file.signature.clone().expect("the row was signed");
    assert_eq!(signed.certificate_sha256, registered.certificate_sha256);
    assert!(signed.certificate_pem.starts_with("-----BEGIN CERTIFICATE-----"), "{}", signed.certificate_pem);
    assert_eq!(RecordInput::decode(signed.signed_input.as_slice()).unwrap().source_record_id, "SJS-1");
    checked_by_openssl(&signed, &folder);

    // A record signed by a client of the API: taken from the signed bytes.
    let signer = RecordSigner::load(&fixture("department.key")).expect("the department's key");
    let fine = |source: &str| RecordInput {
        credit_code: "91330100799655058B".into(),
        source_record_id: source.into(),
        category: "penalty".into(),
        decided_on: "2026-10-10".into(),
        document_number: format!("京石市监罚〔2026〕{source}号"),
        penalty_kind: PenaltyKind::Fine as i32,
        fields: [
            ("content", "罚款3000元"),
            ("legal_basis", "《广告法》第五十五条"),
            ("authority", "北京市石景山区市场监督管理局"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .into(),
        ..RecordInput::default()
    };
    let submitted = ingestion
        .submit_record(SubmitRecordRequest { record: Some(signer.sign(fine("SJS-2")).unwrap()) })
        .await
        .expect("a signed record is accepted")
        .into_inner();
    let stored = signature_of(submitted.record.expect("the record").record_id).await;
    // Its audit entry names the subject read from inside the signed bytes.
    let about = audit_entries(
        &pool,
        "department_id = 'samr-110107' AND method = 'xinyong.ingestion.v1.IngestionService/SubmitRecord'
             AND subject = '91330100799655058B'",
    )
    .await;
    assert_eq!(about, 1, "the signed SubmitRecord's audit entry names its subject");
    assert_eq!((stored.source_record_id.as_str(), stored.fields["content"].as_str()), ("SJS-2", "罚款3000元"));
    assert!(stored.signature.is_some());
    // A correction signed as well: each version keeps its own signature; an unsigned one has none.
    let corrected = RecordInput {
        fields: [
            ("content", "罚款2000元"),
            ("legal_basis", "《广告法》第五十五条"),
            ("authority", "北京市石景山区市场监督管理局"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .into(),
        ..fine("SJS-2")
    };
    let correction = |record: RecordInput| CorrectRecordRequest {
        record_id: stored.record_id.clone(),
        reason: "罚款金额更正".into(),
        record: Some(record),
    };
    ingestion.correct_record(correction(signer.sign(corrected.clone()).unwrap())).await.expect("a signed correction");
    ingestion.correct_record(correction(fine("SJS-2"))).await.expect("an unsigned correction");
    let history = ingestion
        .get_record_history(GetRecordHistoryRequest { record_id: stored.record_id.clone() })
        .await
        .unwrap()
        .into_inner();
    let signed_versions: Vec<(i32, Option<String>)> = history
        .versions
        .iter()
        .map(|version| {
            let record = version.record.as_ref().expect("a version's record");
            let signed = record.signature.as_ref().map(|signature| {
                RecordInput::decode(signature.signed_input.as_slice()).unwrap().fields["content"].clone()
            });
            (version.version, signed)
        })
        .collect();
    assert_eq!(
        signed_versions,
        [(1, Some("罚款3000元".to_owned())), (2, Some("罚款2000元".to_owned())), (3, None)],
        "{history:?}"
    );
    assert!(signature_of(stored.record_id.clone()).await.signature.is_none(), "the current version is unsigned");
    // A signature that does not verify rejects the row, naming the field.
    let mut forged = signer.sign(fine("SJS-3")).unwrap();
    forged.signed_input = signer.sign(fine("SJS-4")).unwrap().signed_input;
    let refused = ingestion.submit_record(SubmitRecordRequest { record: Some(forged) }).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("signature"), "{}", refused.message());
    // Signed, but the call authenticated by a token: nothing to check the signature against.
    let department_token = administration
        .issue_credential(with_token(admin::IssueCredentialRequest { department_id: "samr-110107".into() }, &token))
        .await
        .unwrap()
        .into_inner()
        .token;
    let mut by_token = IngestionServiceClient::new(connect(&platform, None).await.expect("TLS"));
    let signed_request = SubmitRecordRequest { record: Some(signer.sign(fine("SJS-5")).unwrap()) };
    let unchecked = by_token.submit_record(with_token(signed_request, &department_token)).await.unwrap_err();
    assert_eq!(unchecked.code(), Code::InvalidArgument);
    assert!(unchecked.message().contains("client certificate"), "{}", unchecked.message());
    // Another department sees the record masked, and so not the signed bytes.
    let other = administration
        .issue_credential(with_token(
            admin::IssueCredentialRequest { department_id: "tax-110107".into() },
            &platform.admin_token,
        ))
        .await
        .unwrap()
        .into_inner()
        .token;
    let shown = by_token
        .get_record(with_token(GetRecordRequest { record_id: stored.record_id.clone() }, &other))
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert!(shown.signature.is_none(), "{shown:?}");
    std::fs::remove_dir_all(folder).unwrap();

    // A certificate of the trusted CA that nobody registered, and none at all.
    let mut unregistered = RegistryServiceClient::new(connect(&platform, Some("unregistered")).await.expect("TLS"));
    let unknown = unregistered.get_entity(get_entity()).await.unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated, "{unknown:?}");
    assert!(unknown.message().contains("not registered"), "{}", unknown.message());
    let mut anonymous = RegistryServiceClient::new(connect(&platform, None).await.expect("TLS"));
    let none = anonymous.get_entity(get_entity()).await.unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated);
    assert!(none.message().contains("client certificate"), "{}", none.message());
    // One of a CA the gateway does not trust ends in the handshake.
    let stranger = match connect(&platform, Some("stranger")).await {
        Ok(channel) => RegistryServiceClient::new(channel).get_entity(get_entity()).await.map(|_| ()),
        Err(error) => Err(tonic::Status::unavailable(error.to_string())),
    };
    let stranger = stranger.unwrap_err();
    assert_ne!(stranger.code(), Code::NotFound, "an untrusted certificate reached the registry: {stranger:?}");
    // So does one its CA revoked (ca.crl.pem), though the CA itself is trusted.
    let revoked_by_its_ca = match connect(&platform, Some("revoked")).await {
        Ok(channel) => RegistryServiceClient::new(channel).get_entity(get_entity()).await.map(|_| ()),
        Err(error) => Err(tonic::Status::unavailable(error.to_string())),
    };
    let revoked_by_its_ca = revoked_by_its_ca.unwrap_err();
    // Refused in the handshake, not by the gateway's own look-up (which would answer UNAUTHENTICATED,
    // "not registered").
    assert!(
        !matches!(revoked_by_its_ca.code(), Code::NotFound | Code::PermissionDenied | Code::Unauthenticated),
        "a certificate its CA revoked passed the handshake: {revoked_by_its_ca:?}"
    );

    // Revoked: refused at once, and not registered again.
    let revoked = administration
        .revoke_credential(with_token(
            admin::RevokeCredentialRequest { credential_id: registered.credential_id.clone() },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked);
    let refused = as_department.get_entity(get_entity()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "a revoked certificate stops working at once: {refused:?}");
    assert!(refused.message().contains("revoked"), "{}", refused.message());
    let gauges = gauge_values(&platform).await;
    assert_eq!(gauges.get("xinyong_gateway_client_certificate_first_expiry_timestamp_seconds"), Some(&0));
    let again = register(&mut administration, &token, "samr-110107", read("department.pem")).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    assert!(again.message().contains(&registered.credential_id), "{}", again.message());
}

#[tokio::test]
async fn a_gateway_with_a_broken_tls_configuration_refuses_to_start_saying_why() {
    let mut platform = Platform::provision().await;
    let ports: HashMap<String, (u16, u16)> = [("gateway".to_owned(), (free_port(), free_port()))].into();
    let (certificate, other_key) = (fixture("server.pem"), fixture("department.key"));
    let (certificate, other_key) = (certificate.to_str().expect("a path"), other_key.to_str().expect("a path"));
    let half = [("XINYONG__GATEWAY__TLS__CERTIFICATE_FILE", certificate)];
    let mismatched =
        [("XINYONG__GATEWAY__TLS__CERTIFICATE_FILE", certificate), ("XINYONG__GATEWAY__TLS__KEY_FILE", other_key)];
    for (configuration, said) in [(&half[..], "gateway.tls.key_file"), (&mismatched[..], "KeyMismatch")] {
        platform.spawn("gateway", ports["gateway"], configuration, &ports);
        let status = platform.wait_exit("gateway", Duration::from_secs(30)).await;
        assert!(!status.success());
        assert!(platform.log_tail("gateway").contains(said), "{}", platform.log_tail("gateway"));
    }
}

/// Whether the gateway answers SERVING over a TLS connection that trusts only `authority`.
async fn serves_to(platform: &Platform, authority: &str) -> bool {
    let Ok(channel) = connect_trusting(platform, authority, None).await else { return false };
    let answer = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await;
    answer.is_ok_and(|answer| answer.get_ref().status == ServingStatus::Serving as i32)
}

#[tokio::test]
async fn a_renewed_certificate_is_taken_for_new_connections_without_a_restart() {
    let mut platform = Platform::provision().await;
    let ports: HashMap<String, (u16, u16)> = [("gateway".to_owned(), (free_port(), free_port()))].into();
    let folder = std::env::temp_dir().join(format!("xinyong-renewal-{}", platform.database));
    std::fs::create_dir_all(&folder).unwrap();
    let (certificate, key) = (folder.join("tls.crt"), folder.join("tls.key"));
    std::fs::copy(fixture("server.pem"), &certificate).unwrap();
    std::fs::copy(fixture("server.key"), &key).unwrap();
    let files = [
        ("XINYONG__GATEWAY__TLS__CERTIFICATE_FILE", certificate.to_str().expect("a path")),
        ("XINYONG__GATEWAY__TLS__KEY_FILE", key.to_str().expect("a path")),
        ("XINYONG__GATEWAY__TLS__RELOAD_SECONDS", "1"),
    ];
    platform.spawn("gateway", ports["gateway"], &files, &ports);
    serving_over_tls(&platform).await;
    let until = || Instant::now() + Duration::from_secs(30);
    let expiry = |platform: &Platform| {
        let platform_admin = platform.node("gateway").admin;
        async move {
            let metrics = xinyong_platform::testing::http_get(platform_admin, "/metrics").await;
            metrics
                .lines()
                .find(|line| line.starts_with("xinyong_gateway_tls_certificate_expiry_timestamp_seconds{"))
                .and_then(|line| line.rsplit(' ').next()?.parse::<i64>().ok())
        }
    };
    let day =
        |year: i32| chrono::NaiveDate::from_ymd_opt(year, 12, 31).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
    assert_eq!(expiry(&platform).await, Some(day(2126).timestamp()));
    assert!(!serves_to(&platform, "other-ca.pem").await, "the renewal's CA is not the certificate's yet");

    // Renewed in place, as cert-manager rewrites a mounted secret: the key first, then the chain.
    std::fs::copy(fixture("renewed.key"), &key).unwrap();
    std::fs::copy(fixture("renewed.pem"), &certificate).unwrap();
    let deadline = until();
    while expiry(&platform).await != Some(day(2125).timestamp()) {
        assert!(Instant::now() < deadline, "the renewal was not taken:\n{}", platform.log_tail("gateway"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(serves_to(&platform, "other-ca.pem").await, "a new connection gets the renewed certificate");
    assert!(!serves_to(&platform, "ca.pem").await, "and no longer the old one");

    // A file half written is not taken: the renewed certificate stays.
    std::fs::write(&certificate, "-----BEGIN CERTIFICATE-----\nMII").unwrap();
    let deadline = until();
    while !platform.log_tail("gateway").contains("TLS files not taken") {
        assert!(Instant::now() < deadline, "{}", platform.log_tail("gateway"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(serves_to(&platform, "other-ca.pem").await);
    assert_eq!(expiry(&platform).await, Some(day(2125).timestamp()));
    std::fs::remove_dir_all(folder).unwrap();
}
