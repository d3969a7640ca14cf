//! Starts the whole platform for a test: a throw-away database with one role and schema per
//! service, a private Redis key prefix, and the gateway and seven services as real processes on
//! free ports. Dropping the [`Platform`] kills the processes and drops the database and roles.
//!
//! Environment: `DATABASE_URL` (an administrator's URL, default `postgres://postgres@127.0.0.1:5432/postgres`),
//! `REDIS_URL` (default `redis://127.0.0.1:6379`), `TEST_LOG` (show the services' logs).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rand::RngCore;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use xinyong_platform::config::SERVICES;
use xinyong_platform::db::Provisioned;
use xinyong_platform::testing::{TestDatabase, redis_url};

/// The seven services behind the gateway.
pub const BACKENDS: &[&str] = &["registry", "ingestion", "grading", "sanctions", "lottery", "objections", "reports"];

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A port for a service process. With `cargo test` every end-to-end test runs in this one process,
/// so a shared counter hands each port out once; with nextest each test is a process of its own,
/// with consecutive ids, so each process starts in a block of 32 ports of its own (one platform
/// takes 14). It runs below Linux's ephemeral range (32768 and up), where every bind to port 0 and
/// every outgoing connection lands, so nothing else takes the port between this choice and the
/// child's bind (binding port 0 and releasing it here would race with that).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let block = (std::process::id() % 350) as u16;
    let _ = NEXT.compare_exchange(0, 20_000 + block * 32, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(port < 32_700, "ran out of test ports");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One running service process.
pub struct Node {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
}

/// A running platform.
pub struct Platform {
    pub database: String,
    pub provisioned: Provisioned,
    pub redis_prefix: String,
    pub internal_token: String,
    pub admin_token: String,
    pub personal_data_key: String,
    pub nodes: HashMap<String, Node>,
    log_dir: PathBuf,
    /// Dropped last, after the processes are gone: drops the database, its roles and Redis keys.
    _test_database: TestDatabase,
}

impl Platform {
    /// Provision a database and start all seven processes; returns once each reports SERVING.
    pub async fn start() -> Platform {
        let mut platform = Platform::provision().await;
        let mut ports = HashMap::new();
        for service in SERVICES {
            ports.insert(service.name.to_owned(), (free_port(), free_port()));
        }
        for service in BACKENDS {
            platform.spawn(service, ports[*service], &[], &ports);
        }
        platform.spawn("gateway", ports["gateway"], &[], &ports);
        for service in SERVICES {
            platform.wait_serving(service.name).await;
        }
        platform
    }

    /// Only the database and Redis prefix; start nodes with [`Platform::start_node`].
    pub async fn provision() -> Platform {
        let test_database = TestDatabase::new().await;
        let database = test_database.name.clone();
        let log_dir = std::env::temp_dir().join(format!("xinyong-e2e-{database}"));
        std::fs::create_dir_all(&log_dir).expect("log folder");
        Platform {
            redis_prefix: database.clone(),
            provisioned: test_database.provisioned.clone(),
            database,
            internal_token: random_hex(16),
            admin_token: format!("admin-{}", random_hex(16)),
            personal_data_key: random_hex(32),
            nodes: HashMap::new(),
            log_dir,
            _test_database: test_database,
        }
    }

    /// The environment a service process gets.
    pub fn environment(
        &self,
        service: &str,
        ports: (u16, u16),
        all_ports: &HashMap<String, (u16, u16)>,
    ) -> Vec<(String, String)> {
        let mut env = vec![
            ("XINYONG__SERVER__LISTEN".to_owned(), format!("127.0.0.1:{}", ports.0)),
            ("XINYONG__ADMIN__LISTEN".to_owned(), format!("127.0.0.1:{}", ports.1)),
            (
                "XINYONG__DATABASE__URL".to_owned(),
                self.provisioned.url_of(service).expect("provisioned service").to_owned(),
            ),
            ("XINYONG__REDIS__URL".to_owned(), redis_url()),
            ("XINYONG__REDIS__KEY_PREFIX".to_owned(), self.redis_prefix.clone()),
            ("XINYONG__INTERNAL__TOKEN".to_owned(), self.internal_token.clone()),
            ("XINYONG__GATEWAY__ADMIN_TOKEN".to_owned(), self.admin_token.clone()),
            ("XINYONG__SERVER__DRAIN_SECONDS".to_owned(), "5".to_owned()),
            ("XINYONG__REGISTRY__PERSONAL_DATA_KEY".to_owned(), self.personal_data_key.clone()),
            ("RUST_LOG".to_owned(), std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned())),
        ];
        for (name, (grpc, _)) in all_ports {
            env.push((
                format!("XINYONG__GATEWAY__UPSTREAMS__{}", name.to_uppercase()),
                format!("http://127.0.0.1:{grpc}"),
            ));
        }
        if let Some((registry, _)) = all_ports.get("registry") {
            env.push(("XINYONG__INGESTION__REGISTRY_URL".to_owned(), format!("http://127.0.0.1:{registry}")));
        }
        if let Some((ingestion, _)) = all_ports.get("ingestion") {
            env.push(("XINYONG__OBJECTIONS__INGESTION_URL".to_owned(), format!("http://127.0.0.1:{ingestion}")));
        }
        for owner in ["registry", "ingestion", "grading", "sanctions"] {
            if let Some((grpc, _)) = all_ports.get(owner) {
                env.push((
                    format!("XINYONG__REPORTS__{}_URL", owner.to_uppercase()),
                    format!("http://127.0.0.1:{grpc}"),
                ));
            }
        }
        env
    }

    /// Start (or restart) a service process with extra environment.
    pub fn spawn(
        &mut self,
        service: &str,
        ports: (u16, u16),
        extra: &[(&str, &str)],
        all_ports: &HashMap<String, (u16, u16)>,
    ) {
        let log = self.log_dir.join(format!("{service}.log"));
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_xinyong-node"));
        command.arg(service).stdin(Stdio::null());
        if std::env::var_os("TEST_LOG").is_some() {
            command.stdout(Stdio::inherit()).stderr(Stdio::inherit());
        } else {
            command.stdout(log_file.try_clone().expect("log file")).stderr(log_file);
        }
        for (key, value) in self.environment(service, ports, all_ports) {
            command.env(key, value);
        }
        for (key, value) in extra {
            command.env(key, value);
        }
        let child = command.spawn().expect("start xinyong-node");
        self.nodes.insert(
            service.to_owned(),
            Node {
                grpc: SocketAddr::from(([127, 0, 0, 1], ports.0)),
                admin: SocketAddr::from(([127, 0, 0, 1], ports.1)),
                child: Some(child),
                log,
            },
        );
    }

    /// Restart a stopped service on its ports with extra environment.
    pub fn restart(&mut self, service: &str, extra: &[(&str, &str)]) {
        let ports: HashMap<String, (u16, u16)> =
            self.nodes.iter().map(|(name, node)| (name.clone(), (node.grpc.port(), node.admin.port()))).collect();
        self.spawn(service, ports[service], extra, &ports);
    }

    pub fn node(&self, service: &str) -> &Node {
        self.nodes.get(service).unwrap_or_else(|| panic!("{service} was not started"))
    }

    /// The last lines a service logged, for failure messages.
    pub fn log_tail(&self, service: &str) -> String {
        let text = std::fs::read_to_string(&self.node(service).log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Wait until a service (its own port) answers SERVING.
    pub async fn wait_serving(&mut self, service: &str) {
        let address = self.node(service).grpc;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.nodes.get_mut(service).and_then(|node| node.child.as_mut())
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("{service} exited with {status} while starting:\n{}", self.log_tail(service));
            }
            if let Ok(channel) = Endpoint::from_shared(format!("http://{address}")).expect("endpoint").connect().await {
                let mut client = HealthClient::new(channel);
                if let Ok(response) = client.check(HealthCheckRequest { service: String::new() }).await
                    && response.get_ref().status == ServingStatus::Serving as i32
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{service} did not become SERVING within 60 s:\n{}",
                self.log_tail(service)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kill a service at once (SIGKILL): nothing of it runs after this returns.
    pub fn kill(&mut self, service: &str) {
        if let Some(mut child) = self.nodes.get_mut(service).and_then(|node| node.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Ask a service to stop (SIGTERM), as Kubernetes does.
    pub fn terminate(&mut self, service: &str) {
        if let Some(child) = self.nodes.get(service).and_then(|node| node.child.as_ref()) {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        }
    }

    /// Wait for a service process to exit by itself.
    pub async fn wait_exit(&mut self, service: &str, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            let node = self.nodes.get_mut(service).expect("started");
            if let Some(status) = node.child.as_mut().expect("running").try_wait().expect("wait") {
                node.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "{service} did not exit within {within:?}:\n{}", self.log_tail(service));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A channel to the gateway.
    pub async fn gateway(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.node("gateway").grpc))
            .expect("endpoint")
            .connect()
            .await
            .expect("gateway reachable")
    }

    /// A channel straight to a service (bypassing the gateway).
    pub async fn direct(&self, service: &str) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.node(service).grpc))
            .expect("endpoint")
            .connect()
            .await
            .expect("service reachable")
    }

    /// A pool that logs in as a service's own role.
    pub async fn pool_of(&self, service: &str) -> sqlx::PgPool {
        self._test_database.pool_of(service).await
    }

    /// Redis settings with this platform's prefix.
    pub fn redis_settings(&self) -> xinyong_platform::config::RedisSettings {
        xinyong_platform::config::RedisSettings {
            url: secrecy::SecretString::from(redis_url()),
            timeout_ms: 1_000,
            key_prefix: self.redis_prefix.clone(),
        }
    }
}

/// Attach a bearer token to a request.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("token is ASCII"));
    request
}

impl Drop for Platform {
    fn drop(&mut self) {
        let services: Vec<String> = self.nodes.keys().cloned().collect();
        for service in services {
            self.kill(&service);
        }
        // Logs stay for a failed test to read; the database goes with `_test_database`.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
    }
}
