//! Sanctions: the measures catalogue, check on every handling (逢办必查), pushes and lifts that
//! follow the grades and listings, notices before listing, precise push of registrations (双告知),
//! leads and overdue work. See docs/sanctions.md.

pub mod answers;
pub mod api;
pub mod listings;
pub mod notices;
pub mod overdue;
pub mod projection;
pub mod routes;
pub mod state;
pub mod store;
pub mod tasks;
pub mod writer;

use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::Routes;
use xinyong_platform::PlatformSettings;
use xinyong_platform::bus::Consumer;
use xinyong_platform::server::ShutdownSignal;
use xinyong_platform::service::{Background, Context, StartError};

/// The service's own schema, migrated at start after the platform's event-bus tables.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a shutdown waits for queued checks to be stored (see `writer`).
const CHECK_LOG_DRAIN: Duration = Duration::from_secs(10);

/// Sanctions' settings: the platform's plus the `sanctions` section.
#[derive(Debug, Clone, Deserialize)]
pub struct SanctionsSettings {
    #[serde(flatten)]
    pub platform: PlatformSettings,
    #[serde(default)]
    pub sanctions: SanctionsSection,
}

impl AsRef<PlatformSettings> for SanctionsSettings {
    fn as_ref(&self) -> &PlatformSettings {
        &self.platform
    }
}

/// `sanctions.*` keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SanctionsSection {
    /// Working days a department has to report what it did after a check with measures.
    pub report_within_working_days: u32,
    /// Working days a department has to execute a pushed sanction or lift (seed 002 art. 9: 15)
    /// and to answer a lead.
    pub execute_within_working_days: u32,
    /// How long this process trusts its own copy of a subject, in milliseconds, while it hears
    /// the other replicas' changes (without them it trusts no copy).
    pub local_cache_ms: u64,
    /// How long a subject's grades stay in Redis without a refresh, in seconds.
    pub cache_ttl_seconds: u64,
    /// The registration authority (登记机关): returned registration pushes go back to it.
    pub registration_authority: String,
    /// How often the catalogue is reloaded (another replica may have changed it), in seconds.
    pub catalogue_refresh_seconds: u64,
    /// How often overdue tasks and reports are counted for the metrics, in seconds.
    pub overdue_count_seconds: u64,
    /// How often the abnormal-operation list's timer looks for listings to warn about or to
    /// transfer, in seconds (`listings`); 0: this replica does not sweep (another does).
    pub listing_sweep_seconds: u64,
}

impl Default for SanctionsSection {
    fn default() -> Self {
        SanctionsSection {
            report_within_working_days: 5,
            execute_within_working_days: 15,
            local_cache_ms: 30_000,
            cache_ttl_seconds: 3600,
            catalogue_refresh_seconds: 30,
            overdue_count_seconds: 60,
            listing_sweep_seconds: 3600,
            registration_authority: "market-regulation".to_owned(),
        }
    }
}

/// Errors starting sanctions.
#[derive(Debug, thiserror::Error)]
pub enum SanctionsError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("the measures catalogue cannot be read: {0}")]
    Catalogue(#[from] sqlx::Error),
}

/// Run the service on `listener` until `shutdown` resolves.
pub async fn run(
    settings: SanctionsSettings,
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    shutdown: ShutdownSignal,
) -> Result<(), SanctionsError> {
    let section = settings.sanctions.clone();
    let context = Context::start(settings.platform, &MIGRATOR).await?;
    let store = store::Store::new(context.pool.clone());
    let catalogue = api::Catalogue::default();
    catalogue.refresh(&store).await?;
    let state = state::SubjectState::new(
        store.clone(),
        context.redis.clone(),
        context.host.metrics.clone(),
        Duration::from_millis(section.local_cache_ms),
        Duration::from_secs(section.cache_ttl_seconds),
    );

    let mut background = Background::default();
    let mut consumer = Consumer::new(
        context.pool.clone(),
        context.redis.clone(),
        projection::GROUP,
        projection::PRODUCERS,
        projection::Projection::new(state.clone(), catalogue.clone(), section.execute_within_working_days),
        context.host.metrics.clone(),
    );
    consumer.processed_retention = context.settings.events.processed_retention();
    background.spawn(|stop| consumer.run(stop));
    let invalidations = state.clone();
    background.spawn(|stop| invalidations.listen(stop));
    {
        let (catalogue, store) = (catalogue.clone(), store.clone());
        let every = Duration::from_secs(section.catalogue_refresh_seconds.max(1));
        background.spawn(move |stop| async move {
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    () = &mut stop => return,
                    () = tokio::time::sleep(every) => {}
                }
                if let Err(error) = catalogue.refresh(&store).await {
                    tracing::warn!(%error, "measures catalogue not reloaded");
                }
            }
        });
    }

    let overdue = overdue::OverdueMetrics::register(&context.host.metrics);
    let (pool, every) = (context.pool.clone(), Duration::from_secs(section.overdue_count_seconds.max(1)));
    background.spawn(move |stop| overdue.run(pool, every, xinyong_domain::calendar::today, stop));

    if section.listing_sweep_seconds > 0 {
        let (pool, section) = (context.pool.clone(), section.clone());
        let every = Duration::from_secs(section.listing_sweep_seconds);
        background.spawn(move |stop| async move {
            let calendar = xinyong_domain::calendar::Calendar::official();
            let sweep = listings::Sweep {
                calendar: &calendar,
                execute_within_working_days: section.execute_within_working_days,
                registration_authority: &section.registration_authority,
            };
            xinyong_platform::service::every(every, stop, || async {
                match listings::announce_if_asked(&pool).await {
                    Ok(Some(announced)) => tracing::info!(announced, "standing listings announced again"),
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "standing listings not announced; the next sweep tries again"),
                }
                match sweep.run(&pool, xinyong_domain::calendar::today()).await {
                    Ok(swept) if swept != listings::Swept::default() => {
                        tracing::info!(
                            warnings = swept.warnings,
                            transfers = swept.transfers,
                            "abnormal-operation listings swept"
                        )
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "abnormal-operation listings not swept; the next sweep catches up")
                    }
                }
            })
            .await;
        });
    }

    let (checks, check_writer) = writer::CheckLog::start(store.clone(), &context.host.metrics);
    let api = api::Sanctions::new(store, checks, context.pool.clone(), state, catalogue, &section);
    let routes = Routes::new(routes::SanctionsRoutes::new(api));
    // Once the server has drained no call can queue a check any more; the queue is written out
    // before the pool closes.
    let served = context
        .serve_then(
            listener,
            admin_listener,
            routes,
            &[routes::SanctionsRoutes::NAME],
            shutdown,
            check_writer.finish(CHECK_LOG_DRAIN),
        )
        .await;
    background.stop().await;
    served?;
    Ok(())
}
