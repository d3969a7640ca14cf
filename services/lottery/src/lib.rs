//! Random inspections (双随机、一公开): the inspector directory with recusals, plans over the subject
//! directory with ratios by grade, reproducible draws that anyone can verify, visits merged across
//! plans, results that become the subjects' inspection records, and their publication. See
//! docs/lottery.md.

pub mod api;
pub mod backlog;
pub mod projection;
pub mod store;

use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::Routes;
use xinyong_platform::PlatformSettings;
use xinyong_platform::bus::Consumer;
use xinyong_platform::server::ShutdownSignal;
use xinyong_platform::service::{Background, Context, StartError};
use xinyong_proto::lottery::v1::lottery_service_server::LotteryServiceServer;

/// The service's own schema, migrated at start after the platform's event-bus tables.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The name events are produced under.
pub const PRODUCER: &str = "lottery";

/// Lottery's settings: the platform's plus the `lottery` section.
#[derive(Debug, Clone, Deserialize)]
pub struct LotterySettings {
    #[serde(flatten)]
    pub platform: PlatformSettings,
    #[serde(default)]
    pub lottery: LotterySection,
}

impl AsRef<PlatformSettings> for LotterySettings {
    fn as_ref(&self) -> &PlatformSettings {
        &self.platform
    }
}

/// `lottery.*` keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LotterySection {
    /// Working days after an inspection by which its result must be published (seed 002 art. 8: 20).
    pub publish_within_working_days: u32,
    /// How often results past their publication day and stale inspector lists are counted for the
    /// metrics, in seconds.
    pub overdue_count_seconds: u64,
}

impl Default for LotterySection {
    fn default() -> Self {
        LotterySection { publish_within_working_days: 20, overdue_count_seconds: 60 }
    }
}

/// Errors starting lottery.
#[derive(Debug, thiserror::Error)]
pub enum LotteryError {
    #[error(transparent)]
    Start(#[from] StartError),
}

/// Run the service on `listener` until `shutdown` resolves.
pub async fn run(
    settings: LotterySettings,
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    shutdown: ShutdownSignal,
) -> Result<(), LotteryError> {
    let section = settings.lottery.clone();
    let context = Context::start(settings.platform, &MIGRATOR).await?;
    let store = store::Store::new(context.pool.clone());

    let mut background = Background::default();
    let mut consumer = Consumer::new(
        context.pool.clone(),
        context.redis.clone(),
        projection::GROUP,
        projection::PRODUCERS,
        projection::Projection,
        context.host.metrics.clone(),
    );
    consumer.processed_retention = context.settings.events.processed_retention();
    background.spawn(|stop| consumer.run(stop));
    let backlog = backlog::Backlog::register(&context.host.metrics);
    let (counted, every) = (store.clone(), Duration::from_secs(section.overdue_count_seconds.max(1)));
    background.spawn(move |stop| backlog.run(counted, every, stop));

    let api = api::Lottery::new(store, section.publish_within_working_days);
    let routes = Routes::new(LotteryServiceServer::new(api));
    let served =
        context.serve(listener, admin_listener, routes, &[LotteryServiceServer::<api::Lottery>::NAME], shutdown).await;
    background.stop().await;
    served?;
    Ok(())
}
