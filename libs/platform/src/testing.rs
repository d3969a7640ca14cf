//! Test support for every crate's integration tests (feature `testing`): a throw-away database
//! provisioned like production, and a TCP proxy that can be cut to simulate an outage.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::config::SERVICES;
use crate::db::{self, Provisioned};

/// An administrator's Postgres URL: `DATABASE_URL`, else the local default.
pub fn admin_database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Redis: `REDIS_URL`, else the local default.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn random_name() -> String {
    format!("xyt_{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// A database with one role and schema per service, dropped (with its roles and Redis keys) on drop.
pub struct TestDatabase {
    pub name: String,
    pub provisioned: Provisioned,
    admin_url: String,
}

impl TestDatabase {
    pub async fn new() -> TestDatabase {
        let name = random_name();
        let admin_url = admin_database_url();
        let services: Vec<&str> = SERVICES.iter().map(|service| service.name).collect();
        let provisioned =
            match db::provision(&admin_url, &name, &services, &uuid::Uuid::new_v4().simple().to_string()).await {
                Ok(provisioned) => provisioned,
                Err(error) => {
                    let _ = db::drop_provisioned(&admin_url, &name, &services).await;
                    panic!("cannot provision a test database through DATABASE_URL={admin_url}: {error}");
                }
            };
        TestDatabase { name, provisioned, admin_url }
    }

    /// A small pool that logs in as a service's own role, bound to its schema (to look at what the
    /// service stored, with exactly its rights).
    pub async fn pool_of(&self, service: &str) -> sqlx::PgPool {
        let settings = crate::config::DatabaseSettings {
            url: secrecy::SecretString::from(
                self.provisioned.url_of(service).expect("a provisioned service").to_owned(),
            ),
            schema: service.to_owned(),
            max_connections: 2,
            connect_timeout_ms: 5_000,
        };
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_with(db::connect_options(&settings).expect("connect options"))
            .await
            .expect("connect as the service's role")
    }

    /// A pool of `service`'s role whose schema has the platform's migrations and those of
    /// `migrator` older than `version`: a test of a migration stores rows the way the schema before
    /// it held them, then applies the rest with [`db::migrate`].
    pub async fn pool_before(&self, service: &str, migrator: &sqlx::migrate::Migrator, version: i64) -> sqlx::PgPool {
        let pool = self.pool_of(service).await;
        let before: Vec<_> =
            migrator.migrations.iter().filter(|migration| migration.version < version).cloned().collect();
        let earlier = sqlx::migrate::Migrator { migrations: before.into(), ..sqlx::migrate::Migrator::DEFAULT };
        db::migrate(&pool, &earlier).await.expect("the migrations before the one under test");
        pool
    }

    /// Settings for a service in this database, with a private Redis prefix and the given Redis URL.
    pub fn settings(&self, service: &str, redis_url: &str) -> crate::PlatformSettings {
        let mut settings: crate::PlatformSettings =
            crate::config::load_with(service, std::iter::empty()).expect("default settings load");
        settings.database.url =
            secrecy::SecretString::from(self.provisioned.url_of(service).expect("service").to_owned());
        settings.database.max_connections = 8;
        settings.redis.url = secrecy::SecretString::from(redis_url.to_owned());
        settings.redis.key_prefix = self.name.clone();
        settings.server.listen = "127.0.0.1:0".to_owned();
        settings.admin.listen = String::new();
        settings.internal.token = secrecy::SecretString::from(format!("internal-{}", self.name));
        settings.events.relay_interval_ms = 10;
        settings
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async {
                let services: Vec<&str> = SERVICES.iter().map(|service| service.name).collect();
                if let Err(error) = db::drop_provisioned(&admin_url, &name, &services).await {
                    eprintln!("could not drop test database {name}: {error}");
                }
                if let Ok(client) = redis::Client::open(redis_url())
                    && let Ok(mut connection) = client.get_multiplexed_async_connection().await
                {
                    let keys: Vec<String> = redis::cmd("KEYS")
                        .arg(format!("{name}:*"))
                        .query_async(&mut connection)
                        .await
                        .unwrap_or_default();
                    if !keys.is_empty() {
                        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut connection).await;
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Forwards TCP connections to `target` until cut: then it closes every connection and refuses
/// new ones, as a dead server would.
pub struct TcpProxy {
    pub address: SocketAddr,
    cut: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> TcpProxy {
        TcpProxy::start_at("127.0.0.1:0".parse().expect("address"), target).await
    }

    /// A proxy on a given address: after a [`TcpProxy::cut`], the same address comes back to life
    /// as a server that was down would.
    pub async fn start_at(address: SocketAddr, target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind(address).await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let cut = Arc::new(Notify::new());
        let cut_all = cut.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    () = cut_all.notified() => break,
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        connections.spawn(async move {
                            if let Ok(mut outbound) = TcpStream::connect(target).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            }
                        });
                    }
                }
            }
            connections.abort_all();
        });
        TcpProxy { address, cut, task }
    }

    /// Cut every connection and stop listening.
    pub async fn cut(self) {
        self.cut.notify_one();
        let _ = self.task.await;
    }
}

/// A service running in this process on a free port, stopped by [`Spawned::stop`].
pub struct Spawned {
    pub address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Spawned {
    /// Start a service's `run(listener, shutdown)` on a free port of 127.0.0.1.
    pub async fn start<F, Fut, E>(run: F) -> Spawned
    where
        F: FnOnce(TcpListener, crate::server::ShutdownSignal) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port on 127.0.0.1");
        let address = listener.local_addr().expect("the bound address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let future = run(
            listener,
            Box::pin(async move {
                let _ = stopped.await;
            }),
        );
        let task = tokio::spawn(async move {
            if let Err(error) = future.await {
                panic!("the service stopped with an error: {error}");
            }
        });
        Spawned { address, stop: Some(stop), task: Some(task) }
    }

    /// Shut the service down gracefully and wait for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// The whole HTTP/1.0 response to `GET path` at `address` (an admin port: `/metrics`, `/healthz`).
pub async fn http_get(address: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(address).await.expect("the admin port accepts");
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes()).await.expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("response read");
    response
}

/// A channel to a server once it answers SERVING for `service` on its health service.
pub async fn connect_when_serving(address: SocketAddr, service: &str) -> tonic::transport::Channel {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{address}")).expect("an address is a valid URI");
    for _ in 0..500 {
        if let Ok(channel) = endpoint.connect().await {
            let answer =
                HealthClient::new(channel.clone()).check(HealthCheckRequest { service: service.to_owned() }).await;
            if answer.is_ok_and(|answer| answer.into_inner().status == ServingStatus::Serving as i32) {
                return channel;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{service} did not start serving at {address}");
}

/// The socket address of a `redis://host:port` URL.
pub fn redis_address(url: &str) -> SocketAddr {
    let rest = url.trim_start_matches("redis://");
    let host_port = rest.rsplit('@').next().unwrap_or(rest).split('/').next().unwrap_or(rest);
    let host_port = if host_port.starts_with("localhost") {
        host_port.replacen("localhost", "127.0.0.1", 1)
    } else {
        host_port.to_owned()
    };
    host_port.parse().expect("redis URL with an IP address and port")
}

/// Put an event on a producer's stream the way its relay would (fields `id`, `type`, `payload`),
/// for a consumer under test that should not need the producing service running.
pub async fn publish_event<E: crate::bus::outbox::Event>(
    settings: &crate::PlatformSettings,
    producer: &str,
    event: &E,
) -> uuid::Uuid {
    use prost::Message;
    use secrecy::ExposeSecret;
    let event_id = uuid::Uuid::now_v7();
    let envelope = crate::bus::outbox::envelope(event_id, producer, event, "");
    let client = redis::Client::open(settings.redis.url.expose_secret()).expect("a Redis URL");
    let mut connection = client.get_multiplexed_async_connection().await.expect("Redis is reachable");
    let key = format!("{}:events:{producer}", settings.redis.key_prefix);
    let _: String = redis::cmd("XADD")
        .arg(key)
        .arg("*")
        .arg("id")
        .arg(event_id.to_string())
        .arg("type")
        .arg(E::TYPE)
        .arg("payload")
        .arg(envelope.encode_to_vec())
        .query_async(&mut connection)
        .await
        .expect("XADD");
    event_id
}
