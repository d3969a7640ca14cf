//! The start-up every service shares: Postgres bound to its schema and migrated, Redis, metrics,
//! health, the outbox relay, then serving until a shutdown signal.

use std::future::Future;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tonic::service::Routes;

use crate::bus::Relay;
use crate::config::PlatformSettings;
use crate::db::{DbError, connect_and_migrate};
use crate::redis::{Redis, RedisUrlError};
use crate::server::{Host, ServeError, ServeOptions};

/// Errors starting a service.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Redis(#[from] RedisUrlError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("{0}")]
    Settings(String),
}

/// What a service's handlers share.
#[derive(Clone)]
pub struct Context {
    pub settings: PlatformSettings,
    pub pool: PgPool,
    pub redis: Redis,
    pub host: Host,
}

impl Context {
    /// Connect Postgres (migrating the service's schema) and Redis.
    pub async fn start(settings: PlatformSettings, migrator: &Migrator) -> Result<Context, StartError> {
        settings.events.check().map_err(StartError::Settings)?;
        let pool = connect_and_migrate(&settings.database, migrator).await?;
        let redis = Redis::connect(&settings.redis)?;
        let host = Host::new(settings.clone());
        Ok(Context { settings, pool, redis, host })
    }

    /// Serve `routes` (whose gRPC names are `names`) with the outbox relay running beside them,
    /// until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        admin_listener: Option<TcpListener>,
        routes: Routes,
        names: &[&str],
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        self.serve_then(listener, admin_listener, routes, names, shutdown, async {}).await
    }

    /// [`Context::serve`], running `drained` once the server has drained and before the pool
    /// closes: for work the calls left behind that still needs the database.
    pub async fn serve_then(
        self,
        listener: TcpListener,
        admin_listener: Option<TcpListener>,
        routes: Routes,
        names: &[&str],
        shutdown: impl Future<Output = ()> + Send + 'static,
        drained: impl Future<Output = ()>,
    ) -> Result<(), StartError> {
        let stop_relay = std::sync::Arc::new(tokio::sync::Notify::new());
        let relay_task = self.settings.events.relay_enabled.then(|| {
            let relay = Relay::new(
                self.pool.clone(),
                self.redis.clone(),
                &self.settings.service_name,
                self.settings.events.clone(),
                self.host.metrics.clone(),
            );
            let stop = stop_relay.clone();
            tokio::spawn(relay.run(async move { stop.notified().await }))
        });
        for name in names {
            self.host.set_serving(name).await;
        }
        tracing::info!(
            service = %self.settings.service_name,
            address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            "serving"
        );
        let result = self.host.serve(listener, admin_listener, routes, ServeOptions::SERVICE, shutdown).await;
        drained.await;
        stop_relay.notify_one();
        if let Some(task) = relay_task {
            let _ = task.await;
        }
        self.pool.close().await;
        Ok(result?)
    }
}

/// Run `tick` at once, then every `period`, until `stop` resolves: for the gauges a query keeps
/// (overdue work), counted on a timer rather than on every change.
pub async fn every<F, Fut>(period: std::time::Duration, stop: impl Future<Output = ()>, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    tokio::pin!(stop);
    loop {
        tick().await;
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(period) => {}
        }
    }
}

/// Stops a service's background tasks (consumers, sweeps, listeners) once its server has drained.
/// A watch rather than a `Notify`: a task that has not polled its stop future yet still sees it.
pub struct Background {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Default for Background {
    fn default() -> Self {
        Background { stop: tokio::sync::watch::channel(false).0, tasks: Vec::new() }
    }
}

impl Background {
    /// Run `task(stopped)` until `stopped` resolves.
    pub fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut stopped = self.stop.subscribe();
        let signal = Box::pin(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        });
        self.tasks.push(tokio::spawn(task(signal)));
    }

    /// Tell every task to stop and wait for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Bind the gRPC and admin listeners named in the settings.
pub async fn bind_listeners(settings: &PlatformSettings) -> Result<(TcpListener, Option<TcpListener>), ServeError> {
    let listener = crate::server::bind(&settings.server.listen).await?;
    let admin =
        if settings.admin.listen.is_empty() { None } else { Some(crate::server::bind(&settings.admin.listen).await?) };
    Ok((listener, admin))
}

/// The whole `main` of a service binary: settings, runtime, telemetry, listeners, then `run` until
/// SIGTERM or Ctrl-C. Returns the process exit code.
pub fn main<S, F, Fut, E>(service_name: &str, run: F) -> std::process::ExitCode
where
    S: serde::de::DeserializeOwned + AsRef<PlatformSettings>,
    F: FnOnce(S, TcpListener, Option<TcpListener>, crate::server::ShutdownSignal) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let settings: S = match crate::config::load(service_name) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("xinyong-{service_name}: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let platform = settings.as_ref().clone();
    let runtime = match crate::runtime(&platform.runtime) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("xinyong-{service_name}: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _telemetry = match crate::telemetry::init(service_name, &platform.telemetry) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("xinyong-{service_name}: {error}");
                return std::process::ExitCode::from(2);
            }
        };
        let (listener, admin) = match bind_listeners(&platform).await {
            Ok(listeners) => listeners,
            Err(error) => {
                tracing::error!(%error, "cannot start");
                return std::process::ExitCode::FAILURE;
            }
        };
        match run(settings, listener, admin, Box::pin(crate::server::shutdown_signal())).await {
            Ok(()) => {
                tracing::info!("stopped");
                std::process::ExitCode::SUCCESS
            }
            Err(error) => {
                tracing::error!(%error, "stopped with an error");
                std::process::ExitCode::FAILURE
            }
        }
    })
}
