//! Configuration: defaults in code, then an optional file, then `XINYONG__SECTION__KEY` environment
//! variables, so that Helm (or an operator's shell) can override any key.
//!
//! Every binary reads [`PlatformSettings`] plus its own section (e.g. `gateway`). The file is named by
//! `XINYONG_CONFIG` (TOML); without it only defaults and the environment apply.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Environment prefix; `XINYONG__DATABASE__URL` sets `database.url`.
pub const ENV_PREFIX: &str = "XINYONG";
/// Environment variable naming an optional TOML file.
pub const CONFIG_FILE_ENV: &str = "XINYONG_CONFIG";

/// The services of the platform with their default ports, in one place so that scripts, tests and
/// the gateway's upstream defaults agree.
pub const SERVICES: &[ServiceDefaults] = &[
    ServiceDefaults { name: "gateway", grpc_port: 50051, admin_port: 9150 },
    ServiceDefaults { name: "registry", grpc_port: 50061, admin_port: 9161 },
    ServiceDefaults { name: "ingestion", grpc_port: 50062, admin_port: 9162 },
    ServiceDefaults { name: "grading", grpc_port: 50063, admin_port: 9163 },
    ServiceDefaults { name: "sanctions", grpc_port: 50064, admin_port: 9164 },
    ServiceDefaults { name: "lottery", grpc_port: 50065, admin_port: 9165 },
    ServiceDefaults { name: "objections", grpc_port: 50066, admin_port: 9166 },
    ServiceDefaults { name: "reports", grpc_port: 50067, admin_port: 9167 },
];

/// Default ports of one service.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDefaults {
    pub name: &'static str,
    pub grpc_port: u16,
    pub admin_port: u16,
}

impl ServiceDefaults {
    /// The defaults of a named service; unknown names get the registry's ports (tests always set
    /// their own).
    pub fn of(name: &str) -> ServiceDefaults {
        SERVICES.iter().copied().find(|service| service.name == name).unwrap_or(SERVICES[1])
    }
}

/// Settings every binary shares.
#[derive(Debug, Clone, Deserialize)]
pub struct PlatformSettings {
    /// The service's name (`registry`, …); also its schema's default name. Set by the binary.
    pub service_name: String,
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub admin: AdminSettings,
    #[serde(default)]
    pub database: DatabaseSettings,
    #[serde(default)]
    pub redis: RedisSettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    #[serde(default)]
    pub internal: InternalSettings,
    #[serde(default)]
    pub events: EventSettings,
    #[serde(default)]
    pub runtime: RuntimeSettings,
}

impl AsRef<PlatformSettings> for PlatformSettings {
    fn as_ref(&self) -> &PlatformSettings {
        self
    }
}

/// The gRPC server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    /// `host:port` to listen on. `XINYONG__SERVER__LISTEN`.
    pub listen: String,
    /// Longest a unary call or a stream may run before it is cancelled, in milliseconds.
    pub request_timeout_ms: u64,
    /// Requests in flight across all connections before new ones get RESOURCE_EXHAUSTED.
    pub max_in_flight: usize,
    /// How long graceful shutdown waits for in-flight requests, in seconds.
    pub drain_seconds: u64,
    /// How long health reports NOT_SERVING before the listener closes, so that load balancers stop
    /// sending new calls first, in milliseconds.
    pub shutdown_delay_ms: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: String::new(),
            request_timeout_ms: 30_000,
            max_in_flight: 1024,
            drain_seconds: 20,
            shutdown_delay_ms: 0,
        }
    }
}

impl ServerSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// The admin HTTP port: `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct AdminSettings {
    /// `host:port`; empty disables the admin server. `XINYONG__ADMIN__LISTEN`.
    pub listen: String,
}

/// Postgres.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// Connection URL of the service's own role. `XINYONG__DATABASE__URL`.
    pub url: SecretString,
    /// The schema the service owns; defaults to the service name.
    pub schema: String,
    pub max_connections: u32,
    pub connect_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: SecretString::from("postgres://postgres@127.0.0.1:5432/xinyong"),
            schema: String::new(),
            max_connections: 16,
            connect_timeout_ms: 5_000,
        }
    }
}

/// Redis.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RedisSettings {
    /// `XINYONG__REDIS__URL`.
    pub url: SecretString,
    /// Connect and response timeout, in milliseconds. Short, because every Redis use has a
    /// Postgres fallback.
    pub timeout_ms: u64,
    /// Prefix of every key and stream, so that several platforms (or test runs) can share one Redis.
    pub key_prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: SecretString::from("redis://127.0.0.1:6379"),
            timeout_ms: 250,
            key_prefix: "xinyong".to_owned(),
        }
    }
}

/// Logs, traces.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TelemetrySettings {
    /// `tracing` env-filter directives; `RUST_LOG` wins when set.
    pub log_filter: String,
    /// `text` or `json`.
    pub log_format: String,
    /// OTLP/gRPC endpoint; `OTEL_EXPORTER_OTLP_ENDPOINT` wins when set. Empty disables export.
    pub otlp_endpoint: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings { log_filter: "info".to_owned(), log_format: "text".to_owned(), otlp_endpoint: String::new() }
    }
}

/// Trust between the gateway and the services.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct InternalSettings {
    /// Shared secret that the gateway and sibling services present in `x-xinyong-internal-token`.
    /// `XINYONG__INTERNAL__TOKEN`. Services refuse every call without it (health excepted).
    pub token: SecretString,
}

impl Default for InternalSettings {
    fn default() -> Self {
        InternalSettings { token: SecretString::from("") }
    }
}

/// The event bus.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct EventSettings {
    /// Run the outbox relay in this process.
    pub relay_enabled: bool,
    /// Idle poll interval of the relay, in milliseconds.
    pub relay_interval_ms: u64,
    /// Outbox rows published per transaction.
    pub relay_batch: i64,
    /// Approximate length each stream is trimmed to.
    pub stream_max_len: usize,
    /// Hours a published outbox row is kept before the relay deletes it; 0 keeps them all.
    pub outbox_retention_hours: u64,
    /// Hours a stream entry is kept, besides `stream_max_len`; 0 trims by count alone.
    pub stream_retention_hours: u64,
    /// Hours a consumer remembers an event it handled (`processed_events`), counted from when the
    /// event was written; 0 remembers them all. Keep it well above `outbox_retention_hours`: an
    /// event published again (`xinyong-cli events-replay`) must still be recognised.
    pub processed_retention_hours: u64,
    /// Fault injection for the end-to-end tests only: abort the process after publishing to Redis
    /// and before marking the outbox rows published. Never set it in production.
    pub fault_abort_after_publish: bool,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            relay_enabled: true,
            relay_interval_ms: 50,
            relay_batch: 500,
            stream_max_len: 1_000_000,
            outbox_retention_hours: 168,
            stream_retention_hours: 0,
            processed_retention_hours: 720,
            fault_abort_after_publish: false,
        }
    }
}

impl EventSettings {
    /// Refuse settings under which a consumer could handle an event twice: an event that an
    /// outbox still holds may be published again (`events-replay`), so consumers must remember
    /// handled events at least as long as outboxes keep them.
    pub fn check(&self) -> Result<(), String> {
        let (processed, outbox) = (self.processed_retention_hours, self.outbox_retention_hours);
        if processed > 0 && outbox > 0 && processed < outbox {
            return Err(format!(
                "events.processed_retention_hours ({processed}) must be 0 or at least events.outbox_retention_hours \
                 ({outbox}): a consumer would forget events an outbox can still publish again"
            ));
        }
        Ok(())
    }

    /// `processed_retention_hours` as a duration; `None` when every handled event is remembered.
    pub fn processed_retention(&self) -> Option<std::time::Duration> {
        (self.processed_retention_hours > 0)
            .then(|| std::time::Duration::from_secs(self.processed_retention_hours.saturating_mul(3600)))
    }
}

/// The tokio runtime.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct RuntimeSettings {
    /// Worker threads; 0 means the number of CPUs tokio sees (which is not a pod's CPU limit).
    pub worker_threads: usize,
}

/// Errors loading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration is invalid: {0}")]
    Invalid(#[from] config::ConfigError),
}

/// Load a binary's settings: `T` is its own struct, which usually flattens [`PlatformSettings`].
pub fn load<T: DeserializeOwned>(service_name: &str) -> Result<T, ConfigError> {
    load_with(service_name, std::env::vars())
}

/// Like [`load`], reading the given variables instead of the process environment (for tests).
pub fn load_with<T: DeserializeOwned>(
    service_name: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let defaults = ServiceDefaults::of(service_name);
    let vars: std::collections::HashMap<String, String> = vars.into_iter().collect();
    let mut builder = config::Config::builder()
        .set_default("service_name", service_name)?
        .set_default("server.listen", format!("0.0.0.0:{}", defaults.grpc_port))?
        .set_default("admin.listen", format!("0.0.0.0:{}", defaults.admin_port))?
        .set_default("database.schema", service_name)?;
    if let Some(path) = vars.get(CONFIG_FILE_ENV) {
        builder = builder.add_source(config::File::with_name(path).required(true));
    }
    let environment = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .source(Some(vars));
    let settings = builder.add_source(environment).build()?;
    Ok(settings.try_deserialize()?)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn consumers_must_remember_handled_events_as_long_as_outboxes_keep_them() {
        let settings = |processed: u64, outbox: u64| EventSettings {
            processed_retention_hours: processed,
            outbox_retention_hours: outbox,
            ..EventSettings::default()
        };
        assert!(EventSettings::default().check().is_ok());
        assert!(settings(168, 168).check().is_ok());
        assert!(settings(0, 168).check().is_ok(), "remembering every event");
        assert!(settings(24, 0).check().is_ok(), "an outbox kept for good is for looking, not replaying all");
        let refused = settings(24, 168).check().unwrap_err();
        assert!(refused.contains("events.processed_retention_hours (24)"), "{refused}");
    }

    #[test]
    fn defaults_depend_on_the_service() {
        let settings: PlatformSettings = load_with("grading", vars(&[])).unwrap();
        assert_eq!(settings.server.listen, "0.0.0.0:50063");
        assert_eq!(settings.admin.listen, "0.0.0.0:9163");
        assert_eq!(settings.database.schema, "grading");
        assert!(settings.events.relay_enabled);
    }

    #[test]
    fn environment_overrides_defaults_with_typed_values() {
        let settings: PlatformSettings = load_with(
            "registry",
            vars(&[
                ("XINYONG__SERVER__LISTEN", "127.0.0.1:7000"),
                ("XINYONG__SERVER__MAX_IN_FLIGHT", "8"),
                ("XINYONG__EVENTS__RELAY_ENABLED", "false"),
                ("XINYONG__DATABASE__URL", "postgres://a@b/c"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.server.listen, "127.0.0.1:7000");
        assert_eq!(settings.server.max_in_flight, 8);
        assert!(!settings.events.relay_enabled);
        assert_eq!(settings.database.url.expose_secret(), "postgres://a@b/c");
    }

    #[test]
    fn a_file_sits_between_defaults_and_environment() {
        let dir = std::env::temp_dir().join(format!("xinyong-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("registry.toml");
        std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:1\"\nmax_in_flight = 3\n").unwrap();
        let settings: PlatformSettings = load_with(
            "registry",
            vars(&[(CONFIG_FILE_ENV, file.to_str().unwrap()), ("XINYONG__SERVER__LISTEN", "127.0.0.1:2")]),
        )
        .unwrap();
        assert_eq!(settings.server.listen, "127.0.0.1:2", "environment beats the file");
        assert_eq!(settings.server.max_in_flight, 3, "the file beats the default");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_wrongly_typed_value_is_refused_with_its_key() {
        let error =
            load_with::<PlatformSettings>("registry", vars(&[("XINYONG__SERVER__MAX_IN_FLIGHT", "many")])).unwrap_err();
        assert!(error.to_string().contains("max_in_flight"), "{error}");
    }
}
