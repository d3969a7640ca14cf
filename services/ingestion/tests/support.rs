//! `spawn_app`: the registry and ingestion on free ports in one throw-away database (each in its
//! own schema, as its own role), with clients that call as the gateway would.

use secrecy::SecretString;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use xinyong_ingestion::{IngestionSection, IngestionSettings};
use xinyong_platform::identity::{Caller, InternalInterceptor};
use xinyong_platform::testing::{Spawned, TestDatabase, connect_when_serving, redis_url};
use xinyong_proto::common::v1::SubjectKind;
use xinyong_proto::ingestion::v1::RecordInput;
use xinyong_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;
use xinyong_proto::registry::v1::{Entity, RegisterEntityRequest};
use xinyong_registry::{RegistrySection, RegistrySettings};

pub type Client = IngestionServiceClient<InterceptedService<Channel, InternalInterceptor>>;

pub const LENOVO: &str = "91110000600037341L";
pub const HUAWEI: &str = "9144030071526726XG";

pub struct App {
    /// Market regulation, Haidian: reports penalties.
    pub market: Client,
    /// Tax, Haidian: another department.
    pub tax: Client,
    pub client_for: Box<dyn Fn(Caller) -> Client + Send + Sync>,
    pub pool: sqlx::PgPool,
    /// Ingestion's admin port (`/metrics`).
    pub admin: std::net::SocketAddr,
    services: Vec<Spawned>,
    _database: TestDatabase,
}

impl App {
    /// Rows counted with `outcome` on the admin port (`xinyong_ingestion_rows_total`), or none.
    pub async fn rows_counted(&self, outcome: &str) -> Option<u64> {
        let metrics = xinyong_platform::testing::http_get(self.admin, "/metrics").await;
        let series = format!("xinyong_ingestion_rows_total{{component=\"ingestion\",outcome=\"{outcome}\"}} ");
        metrics.lines().find_map(|line| line.strip_prefix(&series)).map(|count| count.parse().unwrap())
    }

    pub async fn stop(self) {
        for service in self.services {
            service.stop().await;
        }
    }
}

pub async fn spawn_app() -> App {
    let database = TestDatabase::new().await;

    let registry_settings = RegistrySettings {
        platform: database.settings("registry", &redis_url()),
        registry: RegistrySection {
            personal_data_key: SecretString::from("ab".repeat(32)),
            ..RegistrySection::default()
        },
    };
    let token = registry_settings.platform.internal.token.clone();
    let registry_service =
        Spawned::start(|listener, stop| xinyong_registry::run(registry_settings, listener, None, stop)).await;
    let registry_address = registry_service.address;
    let registry_channel = connect_when_serving(registry_address, "xinyong.registry.v1.RegistryService").await;
    let mut registry = RegistryServiceClient::with_interceptor(
        registry_channel,
        InternalInterceptor::new(&token, Some(Caller::new("samr-110108", vec![]))).unwrap(),
    );
    for (code, name) in [(LENOVO, "联想(北京)有限公司"), (HUAWEI, "华为技术有限公司")] {
        let entity = Entity {
            credit_code: code.into(),
            name: name.into(),
            kind: SubjectKind::Enterprise as i32,
            region_code: "110108".into(),
            industry_code: "C3911".into(),
            established_on: "1992-11-12".into(),
            ..Default::default()
        };
        registry.register_entity(RegisterEntityRequest { entity: Some(entity) }).await.unwrap();
    }

    let ingestion_settings = IngestionSettings {
        platform: database.settings("ingestion", &redis_url()),
        ingestion: IngestionSection {
            registry_url: format!("http://{registry_address}"),
            batch: 200,
            ..IngestionSection::default()
        },
    };
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = admin_listener.local_addr().unwrap();
    let ingestion = Spawned::start(|listener, stop| {
        xinyong_ingestion::run(ingestion_settings, listener, Some(admin_listener), stop)
    })
    .await;
    let address = ingestion.address;
    let channel = connect_when_serving(address, "xinyong.ingestion.v1.IngestionService").await;
    let client_for: Box<dyn Fn(Caller) -> Client + Send + Sync> = Box::new(move |caller: Caller| {
        IngestionServiceClient::with_interceptor(
            channel.clone(),
            InternalInterceptor::new(&token, Some(caller)).unwrap(),
        )
    });
    let pool = database.pool_of("ingestion").await;
    App {
        market: client_for(Caller::new("samr-110108", vec![])),
        tax: client_for(Caller::new("tax-110108", vec![])),
        client_for,
        pool,
        admin,
        services: vec![ingestion, registry_service],
        _database: database,
    }
}

/// A fine imposed on Lenovo by Haidian market regulation.
pub fn fine(source: &str, decided_on: &str) -> RecordInput {
    RecordInput {
        credit_code: LENOVO.into(),
        source_record_id: source.into(),
        category: "penalty".into(),
        nature: 0,
        decided_on: decided_on.into(),
        document_number: format!("京海市监罚〔2025〕{source}号"),
        fields: [
            ("content", "罚款5000元"),
            ("legal_basis", "《食品安全法》第一百二十六条"),
            ("authority", "北京市海淀区市场监督管理局"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        text: String::new(),
        penalty_kind: xinyong_proto::ingestion::v1::PenaltyKind::Fine as i32,
        ..RecordInput::default()
    }
}
