//! The gateway: the only public endpoint. It serves all seven services (forwarded to their owners),
//! `gateway.v1` administration, health and reflection, on one port.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod limits;
pub mod proxy;
pub mod store;
pub mod subject;
pub mod x509;

use std::collections::HashMap;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::service::Routes;
use xinyong_platform::config::{PlatformSettings, SERVICES};
use xinyong_platform::db::{DbError, connect_and_migrate};
use xinyong_platform::identity::InternalInterceptor;
use xinyong_platform::server::{Host, ServeError, ServeOptions, ShutdownSignal};
use xinyong_platform::service::Background;
use xinyong_proto::gateway::v1::gateway_admin_service_server::GatewayAdminServiceServer;

use crate::audit::AuditLog;
use crate::auth::Authenticator;
use crate::limits::RateLimits;
use crate::proxy::{
    Checks, Forward, GatewayHealth, Grading, Ingestion, Lottery, Objections, Registry, Reports, Sanctions, UPSTREAMS,
    Upstream,
};
use xinyong_platform::upstream::UpstreamConnection;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The gateway's settings: the platform's plus the `gateway` section.
#[derive(Debug, Clone, Deserialize)]
pub struct GatewaySettings {
    #[serde(flatten)]
    pub platform: PlatformSettings,
    #[serde(default)]
    pub gateway: GatewaySection,
}

impl AsRef<PlatformSettings> for GatewaySettings {
    fn as_ref(&self) -> &PlatformSettings {
        &self.platform
    }
}

/// `gateway.*` keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GatewaySection {
    /// Bootstrap administrator credential. `XINYONG__GATEWAY__ADMIN_TOKEN`. Empty: no bootstrap
    /// administrator (departments with the `admin` permission still are).
    pub admin_token: SecretString,
    /// Upstream addresses by service name (`XINYONG__GATEWAY__UPSTREAMS__REGISTRY=http://registry:50061`).
    /// In Kubernetes, point them at the headless services.
    pub upstreams: HashMap<String, String>,
    /// How long a verified credential is trusted without asking Postgres, in milliseconds.
    pub credential_cache_ms: u64,
    /// Connect timeout to an upstream, in milliseconds.
    pub upstream_connect_timeout_ms: u64,
    /// Calls a second a department may make through this replica unless it has a limit of its own
    /// (`SetRateLimit`); 0: no limit.
    pub calls_per_second: u32,
    /// How many seconds' worth of calls a department may make at once (its bucket's size).
    pub burst_seconds: f64,
    /// How often each upstream's host is looked up again, in seconds: the pods behind a headless
    /// service that calls are spread over.
    pub upstream_resolve_seconds: u64,
    /// Days an audit entry is kept; older ones are removed from the start of the chain once an
    /// hour. 0: kept for ever. Logs of network operations are kept at least six months in China
    /// (网络安全法 art. 21), so 180 or more.
    pub audit_retention_days: u32,
    /// TLS on the gateway's gRPC port, and departments' client certificates.
    pub tls: TlsSection,
}

/// `gateway.tls.*`: PEM files. Every key empty: plain HTTP/2, as behind an ingress that terminates
/// TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TlsSection {
    /// The gateway's certificate chain, leaf first.
    pub certificate_file: String,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// The certificate authorities whose client certificates are asked for and checked in the
    /// handshake. A client certificate is optional: a call may still carry a bearer token. A
    /// certificate identifies a department once registered (`RegisterCertificate`).
    pub client_ca_file: String,
    /// Revocation lists (PEM CRLs) of those CAs: a client certificate listed in its CA's list fails
    /// the handshake. Read again with the other files, so a CA's new list is taken without a restart.
    pub client_crl_file: String,
    /// How often the files are read again, in seconds: changed files (a renewed certificate) are
    /// taken for new connections without a restart. 0: read at start only.
    pub reload_seconds: u64,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            certificate_file: String::new(),
            key_file: String::new(),
            client_ca_file: String::new(),
            client_crl_file: String::new(),
            reload_seconds: 60,
        }
    }
}

/// The TLS files as read: the configuration they make, what they held, and when the certificate
/// ends.
pub struct LoadedTls {
    pub config: rustls::ServerConfig,
    pub expiry: Option<chrono::DateTime<chrono::Utc>>,
    contents: Vec<Vec<u8>>,
}

impl TlsSection {
    /// The files' TLS configuration, `None` when TLS is off.
    pub fn load(&self) -> Result<Option<LoadedTls>, GatewayError> {
        let read = |key: &'static str, path: &str| {
            std::fs::read(path).map_err(|source| GatewayError::TlsFile { key, path: path.to_owned(), source })
        };
        match (self.certificate_file.is_empty(), self.key_file.is_empty()) {
            (true, true) if self.client_ca_file.is_empty() => return Ok(None),
            (true, true) => {
                return Err(GatewayError::TlsIncomplete(
                    "gateway.tls.client_ca_file needs gateway.tls.certificate_file and gateway.tls.key_file".into(),
                ));
            }
            (false, true) => {
                return Err(GatewayError::TlsIncomplete(
                    "gateway.tls.certificate_file needs gateway.tls.key_file".into(),
                ));
            }
            (true, false) => {
                return Err(GatewayError::TlsIncomplete(
                    "gateway.tls.key_file needs gateway.tls.certificate_file".into(),
                ));
            }
            (false, false) => {}
        }
        let certificate = read("gateway.tls.certificate_file", &self.certificate_file)?;
        let key = read("gateway.tls.key_file", &self.key_file)?;
        let authorities = match self.client_ca_file.as_str() {
            "" => None,
            path => Some(read("gateway.tls.client_ca_file", path)?),
        };
        let revocation_lists = match (self.client_crl_file.as_str(), &authorities) {
            ("", _) => None,
            (_, None) => {
                return Err(GatewayError::TlsIncomplete(
                    "gateway.tls.client_crl_file needs gateway.tls.client_ca_file".into(),
                ));
            }
            (path, Some(_)) => Some(read("gateway.tls.client_crl_file", path)?),
        };
        let clients = authorities.as_deref().map(|certificates| xinyong_platform::tls::ClientAuthorities {
            certificates,
            revocation_lists: revocation_lists.as_deref(),
        });
        let config =
            xinyong_platform::tls::server_config(&certificate, &key, clients).map_err(GatewayError::TlsIncomplete)?;
        let expiry = {
            use rustls_pki_types::CertificateDer;
            use rustls_pki_types::pem::PemObject;
            CertificateDer::from_pem_slice(&certificate).ok().and_then(|leaf| x509::not_after(&leaf))
        };
        let mut contents = vec![certificate, key];
        contents.extend(authorities);
        contents.extend(revocation_lists);
        Ok(Some(LoadedTls { config, expiry, contents }))
    }
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            admin_token: SecretString::from(""),
            upstreams: HashMap::new(),
            credential_cache_ms: 5_000,
            upstream_connect_timeout_ms: 2_000,
            calls_per_second: 0,
            burst_seconds: 2.0,
            upstream_resolve_seconds: 10,
            audit_retention_days: 0,
            tls: TlsSection::default(),
        }
    }
}

impl GatewaySection {
    /// The address of an upstream: configured, or the local default port.
    pub fn upstream(&self, service: &str) -> String {
        self.upstreams.get(service).cloned().unwrap_or_else(|| {
            let port = SERVICES.iter().find(|s| s.name == service).map_or(0, |s| s.grpc_port);
            format!("http://127.0.0.1:{port}")
        })
    }
}

/// Errors starting the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("upstream address `{address}` of {service} must be http://host:port")]
    UpstreamAddress { service: String, address: String },
    #[error("the internal token is not a valid header value")]
    InternalToken,
    #[error("{0}")]
    TlsIncomplete(String),
    #[error("cannot read {key} `{path}`: {source}")]
    TlsFile { key: &'static str, path: String, source: std::io::Error },
    #[error("reflection cannot be built: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

/// The connections that carry `service`'s calls and health checks (plain HTTP/2 inside the
/// cluster), the number of its addresses in `addresses`.
fn upstream(
    section: &GatewaySection,
    service: &str,
    addresses: &Family<ServiceLabels, Gauge>,
) -> Result<UpstreamConnection, GatewayError> {
    let address = section.upstream(service);
    let connect_timeout = Duration::from_millis(section.upstream_connect_timeout_ms);
    let resolve_every = Duration::from_secs(section.upstream_resolve_seconds.max(1));
    let gauge = addresses.get_or_create(&ServiceLabels { service: service.to_owned() }).clone();
    address
        .parse()
        .ok()
        .and_then(|uri| UpstreamConnection::new(&uri, connect_timeout, resolve_every))
        .map(|connection| connection.observed(gauge))
        .ok_or_else(|| GatewayError::UpstreamAddress { service: service.to_owned(), address })
}

/// TLS for the gateway's port from the loaded files, and its certificate's end as a gauge for the
/// alert that asks for a renewal in time; the files read again every `reload_seconds`, a change
/// taken for new connections.
fn serve_tls(
    host: &Host,
    section: &TlsSection,
    loaded: Option<LoadedTls>,
    background: &mut Background,
) -> Option<xinyong_platform::tls::Tls> {
    let own = Gauge::<i64>::default();
    host.metrics.register(
        "gateway_tls_certificate_expiry_timestamp_seconds",
        "when the gateway's own TLS certificate stops being valid, in Unix seconds; 0 without TLS",
        own.clone(),
    );
    let loaded = loaded?;
    let expires = |expiry: Option<chrono::DateTime<chrono::Utc>>| expiry.map_or(0, |expiry| expiry.timestamp());
    own.set(expires(loaded.expiry));
    tracing::info!(expires = ?loaded.expiry.map(|expiry| expiry.to_rfc3339()), "serving TLS");
    let tls = xinyong_platform::tls::Tls::new(loaded.config);
    if section.reload_seconds > 0 {
        let (section, current, mut held) = (section.clone(), tls.clone(), loaded.contents);
        background.spawn(move |stop| {
            xinyong_platform::service::every(Duration::from_secs(section.reload_seconds), stop, move || {
                match section.load() {
                    Ok(Some(reloaded)) if reloaded.contents != held => {
                        tracing::info!(expires = ?reloaded.expiry.map(|expiry| expiry.to_rfc3339()), "TLS files changed: new connections get them");
                        own.set(expires(reloaded.expiry));
                        current.replace(reloaded.config);
                        held = reloaded.contents;
                    }
                    Ok(_) => {}
                    // Half-written files, say: the connections keep what was read before.
                    Err(error) => tracing::warn!(%error, "TLS files not taken; the ones read before stay"),
                }
                std::future::ready(())
            })
        });
    }
    Some(tls)
}

/// How long shutdown waits for the audit log's queue to be written out.
const AUDIT_DRAIN: Duration = Duration::from_secs(10);

/// Run the gateway until `shutdown` resolves.
pub async fn run(
    settings: GatewaySettings,
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    shutdown: ShutdownSignal,
) -> Result<(), GatewayError> {
    // Before the database: a missing certificate file, or a key that does not go with it, is told
    // at once.
    let loaded = settings.gateway.tls.load()?;
    let pool = connect_and_migrate(&settings.platform.database, &MIGRATOR).await?;
    let section = &settings.gateway;
    if section.admin_token.expose_secret().is_empty() {
        tracing::warn!("no XINYONG__GATEWAY__ADMIN_TOKEN: only departments with the admin permission can administer");
    }
    let store = store::Store::new(pool.clone());
    let auth =
        Authenticator::new(store.clone(), &section.admin_token, Duration::from_millis(section.credential_cache_ms));
    let internal = settings.platform.internal.token.clone();
    let internal_header =
        http::HeaderValue::from_str(internal.expose_secret()).map_err(|_| GatewayError::InternalToken)?;

    let host = Host::new(settings.platform.clone());
    let addresses = Family::<ServiceLabels, Gauge>::default();
    host.metrics.register(
        "gateway_upstream_addresses",
        "addresses each service's host resolved to when last looked up (its pods); 0 until first called",
        addresses.clone(),
    );
    let mut upstreams = HashMap::new();
    let mut health_clients = HashMap::new();
    for (service, name) in UPSTREAMS {
        let connection = upstream(section, service, &addresses)?;
        let interceptor = InternalInterceptor::new(&internal, None).map_err(|_| GatewayError::InternalToken)?;
        health_clients.insert(
            *name,
            tonic_health::pb::health_client::HealthClient::with_interceptor(connection.clone(), interceptor),
        );
        upstreams.insert(*service, connection);
    }
    fn forward<U: Upstream>(upstreams: &HashMap<&str, UpstreamConnection>, checks: &Checks) -> Forward<U> {
        Forward::new(upstreams[U::SERVICE].clone(), checks.clone())
    }

    let (audit, audit_task) = AuditLog::start(pool.clone(), &host.metrics);
    let mut background = Background::default();
    let tls = serve_tls(&host, &section.tls, loaded, &mut background);
    let departments_certificates = admin::CertificateExpiry::new(store.clone(), &host.metrics);
    let watched = departments_certificates.clone();
    background.spawn(move |stop| {
        // Registrations and revocations may come through any replica.
        xinyong_platform::service::every(Duration::from_secs(60), stop, move || {
            let watched = watched.clone();
            async move { watched.refresh().await }
        })
    });
    if section.audit_retention_days > 0 {
        let (pool, days) = (pool.clone(), i64::from(section.audit_retention_days));
        background.spawn(move |stop| {
            xinyong_platform::service::every(Duration::from_secs(3600), stop, move || {
                let pool = pool.clone();
                async move {
                    let cutoff = chrono::Utc::now() - chrono::Duration::days(days);
                    match audit::prune(&pool, cutoff).await {
                        Ok(0) => {}
                        Ok(removed) => tracing::info!(removed, days, "audit entries past their retention removed"),
                        Err(error) => tracing::warn!(%error, "audit retention did not run; the next hour tries again"),
                    }
                }
            })
        });
    }
    let checks = Checks {
        auth: auth.clone(),
        limits: RateLimits::new(section.calls_per_second, section.burst_seconds, &host.metrics),
        audit: audit.clone(),
        internal_token: internal_header,
    };

    let health = GatewayHealth::new(
        tonic_health::server::HealthService::from_health_reporter(host.health().clone()),
        health_clients,
    );
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(xinyong_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // grpcurl before 1.8.8 (the one on PyPI) asks the older v1alpha protocol.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(xinyong_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let admin_service = audit::Audited::new(
        GatewayAdminServiceServer::new(admin::Admin::new(store, auth.clone(), departments_certificates)),
        auth,
        audit,
    );
    let routes = Routes::new(admin_service)
        .add_service(forward::<Registry>(&upstreams, &checks))
        .add_service(forward::<Ingestion>(&upstreams, &checks))
        .add_service(forward::<Grading>(&upstreams, &checks))
        .add_service(forward::<Sanctions>(&upstreams, &checks))
        .add_service(forward::<Lottery>(&upstreams, &checks))
        .add_service(forward::<Objections>(&upstreams, &checks))
        .add_service(forward::<Reports>(&upstreams, &checks))
        .add_service(tonic_health::pb::health_server::HealthServer::new(health))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    host.set_serving(GatewayAdminServiceServer::<admin::Admin>::NAME).await;
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "gateway serving");
    let options = ServeOptions { require_internal_token: false, add_health: false, tls };
    let result = host.serve(listener, admin_listener, routes, options, shutdown).await;
    // Once the server has drained no call can queue an entry any more.
    audit_task.finish(AUDIT_DRAIN).await;
    background.stop().await;
    pool.close().await;
    Ok(result?)
}
