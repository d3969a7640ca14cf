//! Objections (异议) and credit repair (信用修复): an objection about a record is routed to the
//! department that provided it, which answers within 3 working days (seed 001 三(三)); a repair
//! application, once approved by that department, stops the record being published and counted
//! (seed 003 (13), 004 (三)). Grading, sanctions and ingestion follow through the events. See
//! docs/objections.md.

pub mod api;
pub mod overdue;
pub mod records;
pub mod store;

use std::time::Duration;

use serde::Deserialize;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::Routes;
use xinyong_platform::PlatformSettings;
use xinyong_platform::identity::{Caller, InternalInterceptor};
use xinyong_platform::server::ShutdownSignal;
use xinyong_platform::service::{Background, Context, StartError};
use xinyong_platform::upstream::UpstreamConnection;
use xinyong_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use xinyong_proto::objections::v1::objection_service_server::ObjectionServiceServer;

/// The service's own schema, migrated at start after the platform's event-bus tables.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The name events are produced under.
pub const PRODUCER: &str = "objections";

/// Objections' settings: the platform's plus the `objections` section.
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectionsSettings {
    #[serde(flatten)]
    pub platform: PlatformSettings,
    #[serde(default)]
    pub objections: ObjectionsSection,
}

impl AsRef<PlatformSettings> for ObjectionsSettings {
    fn as_ref(&self) -> &PlatformSettings {
        &self.platform
    }
}

/// `objections.*` keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ObjectionsSection {
    /// Where ingestion is, to read the record an objection or a repair is about.
    /// `XINYONG__OBJECTIONS__INGESTION_URL`.
    pub ingestion_url: String,
    /// Working days the providing department has to answer an objection (seed 001 三(三): 3).
    pub answer_within_working_days: u32,
    /// How often overdue objections and pending repairs are counted for the metrics, in seconds.
    pub overdue_count_seconds: u64,
}

impl Default for ObjectionsSection {
    fn default() -> Self {
        ObjectionsSection {
            ingestion_url: "http://127.0.0.1:50062".to_owned(),
            answer_within_working_days: 3,
            overdue_count_seconds: 60,
        }
    }
}

/// Errors starting objections.
#[derive(Debug, thiserror::Error)]
pub enum ObjectionsError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("objections.ingestion_url `{0}` is not an http://host:port URL")]
    IngestionUrl(String),
    #[error("the internal token is not usable in a header")]
    InternalToken,
}

/// Run the service on `listener` until `shutdown` resolves.
pub async fn run(
    settings: ObjectionsSettings,
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    shutdown: ShutdownSignal,
) -> Result<(), ObjectionsError> {
    let section = settings.objections.clone();
    let context = Context::start(settings.platform.clone(), &MIGRATOR).await?;
    // Every ingestion pod behind the URL's name, round robin (xinyong_platform::upstream).
    let channel = UpstreamConnection::sibling(&section.ingestion_url)
        .ok_or_else(|| ObjectionsError::IngestionUrl(section.ingestion_url.clone()))?;
    let interceptor =
        InternalInterceptor::new(&settings.platform.internal.token, Some(Caller::new("service-objections", vec![])))
            .map_err(|_| ObjectionsError::InternalToken)?;
    let records = records::Records::new(IngestionServiceClient::with_interceptor(channel, interceptor));
    let store = store::Store::new(context.pool.clone());

    let mut background = Background::default();
    let overdue = overdue::OverdueMetrics::register(&context.host.metrics);
    let (counted, every) = (store.clone(), Duration::from_secs(section.overdue_count_seconds.max(1)));
    background.spawn(move |stop| overdue.run(counted, every, xinyong_domain::calendar::today, stop));

    let api = api::Objections::new(store, records, section.answer_within_working_days);
    let routes = Routes::new(ObjectionServiceServer::new(api));
    let served = context
        .serve(listener, admin_listener, routes, &[ObjectionServiceServer::<api::Objections>::NAME], shutdown)
        .await;
    background.stop().await;
    served?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingestion_address_and_deadline_come_from_the_environment() {
        let settings: ObjectionsSettings = xinyong_platform::config::load_with(
            "objections",
            [
                ("XINYONG__OBJECTIONS__INGESTION_URL".to_owned(), "http://127.0.0.1:1234".to_owned()),
                ("XINYONG__OBJECTIONS__ANSWER_WITHIN_WORKING_DAYS".to_owned(), "5".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!(settings.objections.ingestion_url, "http://127.0.0.1:1234");
        assert_eq!(settings.objections.answer_within_working_days, 5);
        assert_eq!(settings.platform.server.listen, "0.0.0.0:50066");
    }
}
