//! Grading: versioned rule sets, grades with reasons, grade history. The evaluation itself is the
//! pure function in `xinyong_domain::grading`.

pub mod api;
pub mod store;

use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::Routes;
use xinyong_domain::grading::{DISTRICT_SUPERVISION, PUBLIC_CREDIT, RuleSet};
use xinyong_platform::PlatformSettings;
use xinyong_platform::server::ShutdownSignal;
use xinyong_platform::service::{Context, StartError};
use xinyong_proto::grading::v1::grading_service_server::GradingServiceServer;

/// The service's own schema, migrated at start after the platform's event-bus tables.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Who publishes the shipped schemes.
const PLATFORM: &str = "platform";

/// Errors starting grading.
#[derive(Debug, thiserror::Error)]
pub enum GradingError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("the shipped scheme cannot be published: {0}")]
    Seed(String),
}

/// Publish the shipped schemes as version 1 when a scheme has none yet (publishing the same
/// document again is a no-op, so every start may try).
pub async fn publish_shipped(store: &store::Store) -> Result<(), GradingError> {
    for document in [PUBLIC_CREDIT, DISTRICT_SUPERVISION] {
        let rule_set = RuleSet::parse(document).map_err(|error| GradingError::Seed(error.to_string()))?;
        let existing =
            store.list(Some(&rule_set.scheme)).await.map_err(|error| GradingError::Seed(error.to_string()))?;
        if existing.is_empty() {
            store
                .publish(&rule_set.scheme, &rule_set.title, rule_set.internal, document, PLATFORM)
                .await
                .map_err(|error| GradingError::Seed(error.to_string()))?;
        }
    }
    Ok(())
}

/// Run the service on `listener` until `shutdown` resolves.
pub async fn run(
    settings: PlatformSettings,
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    shutdown: ShutdownSignal,
) -> Result<(), GradingError> {
    let context = Context::start(settings, &MIGRATOR).await?;
    let store = store::Store::new(context.pool.clone());
    publish_shipped(&store).await?;
    let routes = Routes::new(GradingServiceServer::new(api::Grading::new(store)));
    context.serve(listener, admin_listener, routes, &[GradingServiceServer::<api::Grading>::NAME], shutdown).await?;
    Ok(())
}
