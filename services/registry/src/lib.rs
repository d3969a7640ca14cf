//! The registry: every subject under its unified social credit code.

use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::Routes;
use xinyong_platform::PlatformSettings;
use xinyong_platform::server::ShutdownSignal;
use xinyong_platform::service::{Context, StartError};

/// The service's own schema, migrated at start after the platform's event-bus tables.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

xinyong_platform::pending_service!(
    PendingRegistry,
    "xinyong.registry.v1.RegistryService",
    "the entity registry arrives with issue #3"
);

/// Run the service on `listener` until `shutdown` resolves.
pub async fn run(
    settings: PlatformSettings,
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    shutdown: ShutdownSignal,
) -> Result<(), StartError> {
    let context = Context::start(settings, &MIGRATOR).await?;
    let routes = Routes::new(PendingRegistry);
    context.serve(listener, admin_listener, routes, &[PendingRegistry::NAME], shutdown).await
}
