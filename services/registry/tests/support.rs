//! `spawn_app`: a registry on a free port, in a throw-away database, with clients that call it as
//! the gateway would (internal token and a department identity).

use secrecy::SecretString;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use xinyong_platform::identity::{Caller, InternalInterceptor};
use xinyong_platform::testing::{Spawned, TestDatabase, connect_when_serving, redis_url};
use xinyong_proto::common::v1::{Person, SubjectKind};
use xinyong_proto::registry::v1::Entity;
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;
use xinyong_registry::{RegistrySection, RegistrySettings};

pub type Client = RegistryServiceClient<InterceptedService<Channel, InternalInterceptor>>;

pub const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

pub struct App {
    /// A department without the personal-data permission.
    pub clerk: Client,
    /// A department holding `personal_data`.
    pub officer: Client,
    pub pool: sqlx::PgPool,
    pub redis_prefix: String,
    service: Spawned,
    _database: TestDatabase,
}

impl App {
    pub async fn stop(self) {
        self.service.stop().await;
    }
}

pub async fn spawn_app() -> App {
    spawn_app_with_redis(&redis_url()).await
}

pub async fn spawn_app_with_redis(redis: &str) -> App {
    let database = TestDatabase::new().await;
    let platform = database.settings("registry", redis);
    let token = platform.internal.token.clone();
    let settings = RegistrySettings {
        platform,
        registry: RegistrySection { personal_data_key: SecretString::from(KEY), ..RegistrySection::default() },
    };
    let service = Spawned::start(|listener, stop| xinyong_registry::run(settings, listener, None, stop)).await;
    let address = service.address;
    let channel = connect_when_serving(address, "xinyong.registry.v1.RegistryService").await;
    let client = |caller: Caller| {
        RegistryServiceClient::with_interceptor(
            channel.clone(),
            InternalInterceptor::new(&token, Some(caller)).unwrap(),
        )
    };
    let pool = database.pool_of("registry").await;
    App {
        clerk: client(Caller::new("samr-110108", vec![])),
        officer: client(Caller::new("samr-110000", vec!["personal_data".into()])),
        pool,
        redis_prefix: database.name.clone(),
        service,
        _database: database,
    }
}

/// Lenovo (Beijing), a real enterprise with a real credit code; the representative's ID number is
/// the worked example of GB 11643.
pub fn lenovo() -> Entity {
    Entity {
        credit_code: "91110000600037341L".into(),
        name: "联想(北京)有限公司".into(),
        kind: SubjectKind::Enterprise as i32,
        registration_number: xinyong_domain::registration_number::complete("11000045000000").unwrap(),
        region_code: "110108".into(),
        industry_code: "C3911".into(),
        business_scope: "生产计算机及外部设备；食品经营".into(),
        established_on: "1992-11-12".into(),
        registered_capital: "56500".into(),
        address: "北京市海淀区上地信息产业基地创业路6号".into(),
        legal_representative: Some(Person {
            name: "杨元庆".into(),
            id_number: "11010519491231002X".into(),
            id_number_masked: false,
        }),
        ..Default::default()
    }
}

/// A generated valid subject: code from `region` and `serial`.
pub fn generated(region: &str, serial: u32, name: &str, kind: SubjectKind) -> Entity {
    let (authority, organisation_type) = match kind {
        SubjectKind::IndividualBusiness => ('9', '2'),
        SubjectKind::FarmerCooperative => ('9', '3'),
        SubjectKind::SocialOrganisation => ('5', '1'),
        _ => ('9', '1'),
    };
    let first16 = format!("{authority}{organisation_type}{region}{serial:08}");
    Entity {
        credit_code: xinyong_domain::credit_code::complete(&first16).unwrap(),
        name: name.to_owned(),
        kind: kind as i32,
        region_code: region.to_owned(),
        industry_code: "F5211".into(),
        established_on: "2015-06-01".into(),
        ..Default::default()
    }
}
