//! Ingestion: credit records (信用信息) in from every department, validated, idempotent, versioned,
//! each with its disclosure window and its reporting delay.

pub mod api;
pub mod projection;
pub mod rules;
pub mod signatures;
pub mod store;
pub mod subjects;

use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::Routes;
use xinyong_platform::PlatformSettings;
use xinyong_platform::bus::Consumer;
use xinyong_platform::identity::{Caller, InternalInterceptor};
use xinyong_platform::server::ShutdownSignal;
use xinyong_platform::service::{Background, Context, StartError};
use xinyong_platform::upstream::UpstreamConnection;
use xinyong_proto::ingestion::v1::ingestion_service_server::IngestionServiceServer;
use xinyong_proto::registry::v1::registry_service_client::RegistryServiceClient;

/// The service's own schema, migrated at start after the platform's event-bus tables.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Ingestion's settings: the platform's plus the `ingestion` section.
#[derive(Debug, Clone, Deserialize)]
pub struct IngestionSettings {
    #[serde(flatten)]
    pub platform: PlatformSettings,
    #[serde(default)]
    pub ingestion: IngestionSection,
}

impl AsRef<PlatformSettings> for IngestionSettings {
    fn as_ref(&self) -> &PlatformSettings {
        &self.platform
    }
}

/// `ingestion.*` keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct IngestionSection {
    /// Where the registry is, to confirm that subjects exist. `XINYONG__INGESTION__REGISTRY_URL`.
    pub registry_url: String,
    /// Working days a department has to report a licence or a penalty (seed 002 art. 5: 7;
    /// seed 000 art. 8 allows 10). 0 keeps each category's own deadline.
    pub report_deadline_working_days: u32,
    /// How long a confirmed subject is remembered in the process, in seconds.
    pub known_subject_seconds: u64,
    /// Rows per transaction in `SubmitRecords`. 4000: 4% more records a second than 2000 in the
    /// benchmark (five alternated runs each), for about 20 MiB more memory under a full stream.
    pub batch: usize,
}

impl Default for IngestionSection {
    fn default() -> Self {
        IngestionSection {
            registry_url: "http://127.0.0.1:50061".to_owned(),
            report_deadline_working_days: 0,
            known_subject_seconds: 600,
            batch: 4000,
        }
    }
}

/// Errors starting ingestion.
#[derive(Debug, thiserror::Error)]
pub enum IngestionError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("ingestion.registry_url `{0}` is not an http://host:port URL")]
    RegistryUrl(String),
    #[error("the internal token is not usable in a header")]
    InternalToken,
    #[error("the record catalogue cannot be read: {0}")]
    Catalogue(#[from] store::StoreError),
}

/// Run the service on `listener` until `shutdown` resolves.
pub async fn run(
    settings: IngestionSettings,
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    shutdown: ShutdownSignal,
) -> Result<(), IngestionError> {
    let context = Context::start(settings.platform.clone(), &MIGRATOR).await?;
    let section = &settings.ingestion;
    // Every registry pod behind the URL's name, round robin (xinyong_platform::upstream).
    let channel = UpstreamConnection::sibling(&section.registry_url)
        .ok_or_else(|| IngestionError::RegistryUrl(section.registry_url.clone()))?;
    let interceptor =
        InternalInterceptor::new(&settings.platform.internal.token, Some(Caller::new("service-ingestion", vec![])))
            .map_err(|_| IngestionError::InternalToken)?;
    let subjects = subjects::Subjects::new(
        RegistryServiceClient::with_interceptor(channel, interceptor),
        Duration::from_secs(section.known_subject_seconds),
        context.host.metrics.clone(),
    );
    let store = store::Store::new(context.pool.clone());
    let catalogue = store.catalogue().await?;
    let deadline = (section.report_deadline_working_days > 0).then_some(section.report_deadline_working_days);
    let rows = api::RowMetrics::register(&context.host.metrics);
    let api = api::Ingestion::new(store, subjects, catalogue, deadline, section.batch, rows);
    let mut background = Background::default();
    let mut consumer = Consumer::new(
        context.pool.clone(),
        context.redis.clone(),
        projection::GROUP,
        projection::PRODUCERS,
        projection::Projection { ingestion: api.clone() },
        context.host.metrics.clone(),
    );
    consumer.processed_retention = context.settings.events.processed_retention();
    background.spawn(|stop| consumer.run(stop));
    let routes = Routes::new(IngestionServiceServer::new(api));
    let served = context
        .serve(listener, admin_listener, routes, &[IngestionServiceServer::<api::Ingestion>::NAME], shutdown)
        .await;
    background.stop().await;
    served?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_address_comes_from_the_environment() {
        let settings: IngestionSettings = xinyong_platform::config::load_with(
            "ingestion",
            [("XINYONG__INGESTION__REGISTRY_URL".to_owned(), "http://127.0.0.1:1234".to_owned())],
        )
        .unwrap();
        assert_eq!(settings.ingestion.registry_url, "http://127.0.0.1:1234");
        assert_eq!(settings.platform.server.listen, "0.0.0.0:50062");
    }
}
