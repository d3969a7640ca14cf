//! The registry: every subject under its unified social credit code (统一社会信用代码).

pub mod api;
pub mod cache;
pub mod personal;
pub mod rules;
pub mod store;

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::Routes;
use xinyong_platform::PlatformSettings;
use xinyong_platform::server::ShutdownSignal;
use xinyong_platform::service::{Context, StartError};
use xinyong_proto::registry::v1::registry_service_server::RegistryServiceServer;

/// The service's own schema, migrated at start after the platform's event-bus tables.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The registry's settings: the platform's plus the `registry` section.
#[derive(Debug, Clone, Deserialize)]
pub struct RegistrySettings {
    #[serde(flatten)]
    pub platform: PlatformSettings,
    #[serde(default)]
    pub registry: RegistrySection,
}

impl AsRef<PlatformSettings> for RegistrySettings {
    fn as_ref(&self) -> &PlatformSettings {
        &self.platform
    }
}

/// `registry.*` keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RegistrySection {
    /// 32 bytes as 64 hex characters; seals resident ID numbers. `XINYONG__REGISTRY__PERSONAL_DATA_KEY`.
    /// Required. Losing it makes stored ID numbers unreadable (they stay masked).
    pub personal_data_key: SecretString,
    /// How long an entity summary stays in Redis, in seconds.
    pub cache_ttl_seconds: u64,
    /// Rows per transaction in `ImportEntities`.
    pub import_batch: usize,
}

impl Default for RegistrySection {
    fn default() -> Self {
        RegistrySection { personal_data_key: SecretString::from(""), cache_ttl_seconds: 3600, import_batch: 4000 }
    }
}

/// Errors starting the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Key(#[from] personal::KeyError),
}

/// Run the service on `listener` until `shutdown` resolves.
pub async fn run(
    settings: RegistrySettings,
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    shutdown: ShutdownSignal,
) -> Result<(), RegistryError> {
    let personal = personal::PersonalData::new(&settings.registry.personal_data_key)?;
    let context = Context::start(settings.platform.clone(), &MIGRATOR).await?;
    let cache = cache::EntityCache::new(
        context.redis.clone(),
        context.host.metrics.clone(),
        Duration::from_secs(settings.registry.cache_ttl_seconds),
    );
    let api =
        api::Registry::new(store::Store::new(context.pool.clone()), cache, personal, settings.registry.import_batch);
    let server = RegistryServiceServer::new(api);
    let routes = Routes::new(server);
    context.serve(listener, admin_listener, routes, &[RegistryServiceServer::<api::Registry>::NAME], shutdown).await?;
    Ok(())
}
