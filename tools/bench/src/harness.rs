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

/// `COPY` `count` text lines into a new table, [`baseline_runs`] times, each between two
/// checkpoints so that it, and what follows, starts on a quiet database. Returns the median rows
/// copied per second.
pub async fn copy_baseline(
    pool: &PgPool,
    create: &str,
    table: &str,
    count: u64,
    mut line: impl FnMut(u64, &mut String),
) -> f64 {
    let mut rates = Vec::new();
    for run in 1..=baseline_runs() {
        // The first run would otherwise inherit the log of whatever ran before it (another
        // benchmark's millions of rows) and pay for that checkpoint and its full-page images.
        pool.execute("CHECKPOINT").await.expect("checkpoint");
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

/// CPU seconds used so far by this process (the services under test and their load run in it)
/// and by the local Postgres server, exited backends included. Rows per second say how well the
/// two cores were kept busy as much as what a row costs; the CPU a row, per side, says which side
/// a change made cheaper.
pub struct CpuUse {
    own: f64,
    /// `None` when Postgres runs elsewhere (its processes are not in this machine's `/proc`).
    postgres: Option<f64>,
}

impl CpuUse {
    pub async fn now(pool: &PgPool) -> CpuUse {
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(pool).await.expect("backend pid");
        let postgres = proc_stat(backend).and_then(|backend| {
            let postmaster = backend.parent;
            let server = proc_stat(postmaster)?;
            // Exited backends count in the postmaster's reaped-children times; live ones by themselves.
            let live: u64 = std::fs::read_dir("/proc")
                .ok()?
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter_map(proc_stat)
                .filter(|process| process.parent == postmaster)
                .map(|process| process.ticks)
                .sum();
            Some((server.ticks + server.children_ticks + live) as f64 / clock_ticks())
        });
        let own = proc_stat(std::process::id() as i32).map_or(0.0, |process| process.ticks as f64 / clock_ticks());
        CpuUse { own, postgres }
    }

    /// `"Postgres X µs + ours Y µs"` a row between `self` and `later`, over `rows` rows.
    fn per_row(&self, later: &CpuUse, rows: u64) -> String {
        let micros = |seconds: f64| seconds * 1e6 / rows as f64;
        let ours = micros(later.own - self.own);
        match (self.postgres, later.postgres) {
            (Some(before), Some(after)) => format!("Postgres {:.2} µs + ours {ours:.2} µs", micros(after - before)),
            _ => format!("ours {ours:.2} µs (Postgres not on this machine)"),
        }
    }

    /// `"CPU Postgres X s + ours Y s"` between `self` and `later`: for a phase that is not rows.
    pub fn spent_until(&self, later: &CpuUse) -> String {
        let ours = later.own - self.own;
        match (self.postgres, later.postgres) {
            (Some(before), Some(after)) => format!("CPU Postgres {:.1} s + ours {ours:.1} s", after - before),
            _ => format!("CPU ours {ours:.1} s (Postgres not on this machine)"),
        }
    }

    /// Both sides' CPU seconds between `self` and `later`, when Postgres's are known.
    fn total_until(&self, later: &CpuUse) -> Option<f64> {
        Some(later.own - self.own + later.postgres? - self.postgres?)
    }
}

/// Print the CPU a row of the baseline (its runs together) and of the measured phase, and how
/// the two compare: the baseline's CPU a row over the measured phase's, the CPU-side counterpart
/// of the ratio of rates.
pub fn report_cpu(bench: &str, measured: &str, baseline: (&CpuUse, &CpuUse), run: (&CpuUse, &CpuUse), rows: u64) {
    let baseline_rows = rows * baseline_runs();
    let compared = match (baseline.0.total_until(baseline.1), run.0.total_until(run.1)) {
        (Some(copy), Some(ours)) => {
            format!("; the COPY's CPU a row over ours: {:.3}", (copy / baseline_rows as f64) / (ours / rows as f64))
        }
        _ => String::new(),
    };
    eprintln!(
        "{bench}: CPU a row: raw COPY {}; {measured} {}{compared}",
        baseline.0.per_row(baseline.1, baseline_rows),
        run.0.per_row(run.1, rows),
    );
}

struct ProcStat {
    parent: i32,
    /// User and system time.
    ticks: u64,
    /// User and system time of the children it has waited for.
    children_ticks: u64,
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after its closing one do not.
    let fields: Vec<u64> =
        stat.rsplit_once(')')?.1.split_whitespace().skip(1).map(|field| field.parse().unwrap_or(0)).collect();
    // From field 4 (ppid) on: utime and stime are fields 14 and 15, cutime and cstime 16 and 17.
    Some(ProcStat {
        parent: *fields.first()? as i32,
        ticks: fields.get(10)? + fields.get(11)?,
        children_ticks: fields.get(12)? + fields.get(13)?,
    })
}

/// Ticks a second of `/proc`'s CPU times (`USER_HZ`): 100 on every Linux this runs on, asked of
/// `getconf` in case one differs.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields are read at the right places: the parent is the parent, and the CPU this
    /// process spends shows in its times.
    #[test]
    fn own_stat_names_the_parent_and_counts_cpu() {
        let pid = std::process::id() as i32;
        let before = proc_stat(pid).expect("own stat");
        assert_eq!(before.parent, std::os::unix::process::parent_id() as i32);
        // A fixed amount of work (tens of milliseconds of CPU or more, however busy the machine is),
        // well over the 10 ms a tick stands for.
        let mut spin = 0u64;
        for step in 0..100_000_000u64 {
            spin = std::hint::black_box(spin.wrapping_add(step));
        }
        let after = proc_stat(pid).expect("own stat");
        assert!(after.ticks > before.ticks, "{} then {} ticks", before.ticks, after.ticks);
    }
}
