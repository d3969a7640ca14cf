//! Credit reports (信用报告): one subject's credit file, gathered from the services that own its
//! parts (registry, ingestion, grading, sanctions) on behalf of the calling department, issued
//! under a number with a digest, kept, and checkable by anyone who holds both. Also the special
//! report that replaces "no violation" certificates (专项信用报告, 发改财金〔2025〕565号). See
//! docs/reports.md.

pub mod api;
pub mod gather;
pub mod report;
pub mod store;

use serde::Deserialize;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::Routes;
use xinyong_platform::PlatformSettings;
use xinyong_platform::server::ShutdownSignal;
use xinyong_platform::service::{Context, StartError};
use xinyong_platform::upstream::UpstreamConnection;
use xinyong_proto::reports::v1::report_service_server::ReportServiceServer;

/// The service's own schema, migrated at start after the platform's event-bus tables.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Reports' settings: the platform's plus the `reports` section.
#[derive(Debug, Clone, Deserialize)]
pub struct ReportsSettings {
    #[serde(flatten)]
    pub platform: PlatformSettings,
    #[serde(default)]
    pub reports: ReportsSection,
}

impl AsRef<PlatformSettings> for ReportsSettings {
    fn as_ref(&self) -> &PlatformSettings {
        &self.platform
    }
}

/// `reports.*` keys: where the owners of a report's parts are.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ReportsSection {
    pub registry_url: String,
    pub ingestion_url: String,
    pub grading_url: String,
    pub sanctions_url: String,
    /// How long each owner may take to answer before the report answers UNAVAILABLE, in seconds.
    pub read_timeout_seconds: u64,
}

impl Default for ReportsSection {
    fn default() -> Self {
        let local = |port: u16| format!("http://127.0.0.1:{port}");
        ReportsSection {
            registry_url: local(50061),
            ingestion_url: local(50062),
            grading_url: local(50063),
            sanctions_url: local(50064),
            read_timeout_seconds: 10,
        }
    }
}

/// Errors starting reports.
#[derive(Debug, thiserror::Error)]
pub enum ReportsError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("reports.{key} `{url}` is not an http://host:port URL")]
    Url { key: &'static str, url: String },
    #[error("the internal token is not usable in a header")]
    InternalToken,
}

/// Run the service on `listener` until `shutdown` resolves.
pub async fn run(
    settings: ReportsSettings,
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    shutdown: ShutdownSignal,
) -> Result<(), ReportsError> {
    let section = settings.reports.clone();
    let context = Context::start(settings.platform.clone(), &MIGRATOR).await?;
    // Every pod behind each URL's name, round robin (xinyong_platform::upstream).
    let upstream = |key: &'static str, url: &str| {
        UpstreamConnection::sibling(url).ok_or_else(|| ReportsError::Url { key, url: url.to_owned() })
    };
    let owners = gather::Owners::new(
        gather::Upstreams {
            registry: upstream("registry_url", &section.registry_url)?,
            ingestion: upstream("ingestion_url", &section.ingestion_url)?,
            grading: upstream("grading_url", &section.grading_url)?,
            sanctions: upstream("sanctions_url", &section.sanctions_url)?,
        },
        &settings.platform.internal.token,
        std::time::Duration::from_secs(section.read_timeout_seconds.max(1)),
    )
    .map_err(|_| ReportsError::InternalToken)?;
    let api = api::Reports::new(store::Store::new(context.pool.clone()), owners, &context.host.metrics);
    let routes = Routes::new(ReportServiceServer::new(api));
    context.serve(listener, admin_listener, routes, &[ReportServiceServer::<api::Reports>::NAME], shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_come_from_the_environment() {
        let settings: ReportsSettings = xinyong_platform::config::load_with(
            "reports",
            [("XINYONG__REPORTS__GRADING_URL".to_owned(), "http://grading:50063".to_owned())],
        )
        .unwrap();
        assert_eq!(settings.reports.grading_url, "http://grading:50063");
        assert_eq!(settings.reports.registry_url, "http://127.0.0.1:50061");
        assert_eq!(settings.platform.server.listen, "0.0.0.0:50067");
    }
}
