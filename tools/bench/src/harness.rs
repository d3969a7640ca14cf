//! What every benchmark needs: services running in-process against a throw-away database, an
//! administrator's connection to it, and a raw `COPY` baseline on a quiet database.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use sqlx::{Executor, PgPool};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use xinyong_platform::identity::{Caller, InternalInterceptor};
use xinyong_platform::testing::{TestDatabase, redis_url};
use xinyong_registry::{RegistrySection, RegistrySettings};

pub use xinyong_platform::testing::Spawned as Running;

/// The registry's settings for a benchmark.
pub fn registry_settings(database: &TestDatabase, import_batch: usize) -> RegistrySettings {
    let mut platform = database.settings("registry", &redis_url());
    platform.events.relay_enabled = std::env::var("BENCH_RELAY").map_or(true, |value| value != "off");
    RegistrySettings {
        platform,
        registry: RegistrySection {
            personal_data_key: SecretString::from("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"),
            import_batch,
            ..RegistrySection::default()
        },
    }
}

/// A channel to a service once it answers.
pub async fn connect(address: SocketAddr) -> Channel {
    let endpoint = Endpoint::from_shared(format!("http://{address}")).expect("endpoint");
    loop {
        if let Ok(channel) = endpoint.connect().await {
            return channel;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls as the gateway would, for department `department`.
pub fn interceptor(database: &TestDatabase, department: &str) -> InternalInterceptor {
    let token = database.settings("registry", &redis_url()).internal.token;
    InternalInterceptor::new(&token, Some(Caller::new(department, vec![]))).expect("token")
}

pub type Intercepted = InterceptedService<Channel, InternalInterceptor>;

/// An administrator's connection to the benchmark's database.
pub async fn admin_pool(database: &TestDatabase) -> PgPool {
    let admin = xinyong_platform::testing::admin_database_url();
    let server = admin.rsplit_once('/').expect("URL with a database").0;
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&format!("{server}/{}", database.name))
        .await
        .expect("admin connection to the benchmark database")
}

/// How many times the raw `COPY` baseline runs (`BENCH_BASELINE_RUNS`, default 3); its median is
/// the baseline. One COPY of 300,000 rows moved by a tenth between runs minutes apart, which made
/// a single ratio say little.
pub fn baseline_runs() -> u64 {
    setting("BENCH_BASELINE_RUNS", 3).max(1)
}

/// `COPY` `count` text lines into a new table, [`baseline_runs`] times, each followed by a
/// checkpoint so that what follows starts on a quiet database. Returns the median rows copied
/// per second.
pub async fn copy_baseline(
    pool: &PgPool,
    create: &str,
    table: &str,
    count: u64,
    mut line: impl FnMut(u64, &mut String),
) -> f64 {
    let mut rates = Vec::new();
    for run in 1..=baseline_runs() {
        pool.execute(create).await.expect("baseline table");
        let started = Instant::now();
        let copied = copy_lines(pool, &format!("COPY {table} FROM STDIN"), count, &mut line).await;
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(copied, count);
        // Dropped once measured: left behind, its rows would have autovacuum visit it in the
        // middle of the run it is compared with (1M imports: 0.263 and 0.315 of it in two runs).
        pool.execute(format!("DROP TABLE {table}").as_str()).await.expect("baseline table dropped");
        pool.execute("CHECKPOINT").await.expect("checkpoint");
        let rate = count as f64 / seconds;
        eprintln!("baseline: raw COPY run {run}: {rate:.0} rows/s");
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// `COPY` `count` text lines made by `line` with `statement`; returns the rows copied.
pub async fn copy_lines(pool: &PgPool, statement: &str, count: u64, mut line: impl FnMut(u64, &mut String)) -> u64 {
    let mut connection = pool.acquire().await.expect("connection");
    let mut copy = connection.copy_in_raw(statement).await.expect("COPY starts");
    let mut chunk = String::with_capacity(4 << 20);
    for index in 0..count {
        line(index, &mut chunk);
        if chunk.len() > (4 << 20) - 8192 {
            copy.send(chunk.as_bytes()).await.expect("COPY data");
            chunk.clear();
        }
    }
    copy.send(chunk.as_bytes()).await.expect("COPY data");
    copy.finish().await.expect("COPY ends")
}

/// `BENCH_<NAME>` from the environment, or a default.
pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// Postgres's write-ahead log position (bytes) and the checkpoints it has had to start because
/// the log outgrew `max_wal_size`: a run that writes more log per row also pays more checkpoints
/// and the full-page images that follow each one.
pub async fn wal_and_checkpoints(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as(
        "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint, (SELECT checkpoints_req FROM pg_stat_bgwriter)",
    )
    .fetch_one(pool)
    .await
    .expect("WAL position")
}
