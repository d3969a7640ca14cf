//! Grading: versioned rule sets, grades with reasons, grade history. The evaluation itself is the
//! pure function in `xinyong_domain::grading`.

pub mod api;
pub mod cache;
pub mod grades;
pub mod jobs;
pub mod projection;
pub mod store;

use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::Routes;
use xinyong_domain::grading::{DISTRICT_SUPERVISION, PUBLIC_CREDIT, RuleSet};
use xinyong_platform::PlatformSettings;
use xinyong_platform::bus::Consumer;
use xinyong_platform::server::ShutdownSignal;
use xinyong_platform::service::{Background, Context, StartError};
use xinyong_proto::grading::v1::grading_service_server::GradingServiceServer;

/// The service's own schema, migrated at start after the platform's event-bus tables.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Grading's settings: the platform's plus the `grading` section.
#[derive(Debug, Clone, Deserialize)]
pub struct GradingSettings {
    #[serde(flatten)]
    pub platform: PlatformSettings,
    #[serde(default)]
    pub grading: GradingSection,
}

impl AsRef<PlatformSettings> for GradingSettings {
    fn as_ref(&self) -> &PlatformSettings {
        &self.platform
    }
}

/// `grading.*` keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GradingSection {
    /// How often the service looks whether today's sweep is due (and picks up rule sets another
    /// replica published), in seconds. `XINYONG__GRADING__SWEEP_INTERVAL_SECONDS`.
    pub sweep_interval_seconds: u64,
    /// How long a grade stays in Redis without a refresh, in seconds.
    pub cache_ttl_seconds: u64,
    /// Subjects per transaction in `Recompute`. 4,000 since chunks hold the recompute fence
    /// instead of locking their subjects: each chunk's statements, event and commit are then
    /// shared by twice the subjects (every pass 3-10% faster in the benchmark, about 55 MiB more
    /// at the peak), and a regrade that arrives during a recompute waits for chunks of about a
    /// fifth of a second.
    pub recompute_chunk: i64,
}

impl Default for GradingSection {
    fn default() -> Self {
        GradingSection { sweep_interval_seconds: 300, cache_ttl_seconds: 3600, recompute_chunk: 4000 }
    }
}

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
    settings: GradingSettings,
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    shutdown: ShutdownSignal,
) -> Result<(), GradingError> {
    let section = settings.grading.clone();
    let context = Context::start(settings.platform, &MIGRATOR).await?;
    let store = store::Store::new(context.pool.clone());
    publish_shipped(&store).await?;
    let schemes = grades::Schemes::default();
    schemes.refresh(&store).await.map_err(|error| GradingError::Seed(error.to_string()))?;
    let grader = grades::Grader::new(schemes.clone());
    let cache = cache::GradeCache::new(
        context.redis.clone(),
        context.host.metrics.clone(),
        Duration::from_secs(section.cache_ttl_seconds),
        schemes,
    );
    let today = xinyong_domain::calendar::today;

    let mut background = Background::default();
    let mut consumer = Consumer::new(
        context.pool.clone(),
        context.redis.clone(),
        projection::GROUP,
        projection::PRODUCERS,
        projection::Projection::new(grader.clone(), cache.clone(), today),
        context.host.metrics.clone(),
    );
    consumer.processed_retention = context.settings.events.processed_retention();
    background.spawn(|stop| consumer.run(stop));
    let sweeper = jobs::Sweeper {
        pool: context.pool.clone(),
        store: store.clone(),
        grader: grader.clone(),
        cache: cache.clone(),
        metrics: jobs::SweepMetrics::register(&context.host.metrics),
    };
    let interval = Duration::from_secs(section.sweep_interval_seconds.max(1));
    background.spawn(move |stop| sweeper.run(interval, today, stop));

    let api = api::Grading::new(store, context.pool.clone(), grader, cache, section.recompute_chunk.max(1), today);
    let routes = Routes::new(GradingServiceServer::new(api));
    let served =
        context.serve(listener, admin_listener, routes, &[GradingServiceServer::<api::Grading>::NAME], shutdown).await;
    background.stop().await;
    served?;
    Ok(())
}
