//! Work over many subjects: the daily sweep (time moves grades too) and `Recompute`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};
use sqlx::PgPool;

use crate::cache::GradeCache;
use crate::grades::{FENCE_FOR_CHUNKS, Grader, Read, Scheme, grade_number};
use crate::store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use xinyong_domain::grading::Grade;
use xinyong_platform::bus::Announce;
use xinyong_platform::metrics::Metrics;

/// What one sweep or recompute chunk did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub subjects: u64,
    pub changed: u64,
}

/// Subjects per transaction in the sweep.
const SWEEP_CHUNK: i64 = 1000;

/// Regrade, as of `day`, every subject with a grade whose review day has come. Idempotent: a
/// second run on the same day finds nothing due (each regrade moves `review_on` past `day`), and
/// a run after downtime catches up on every day missed, since it takes everything due by `day`.
/// One sweeper at a time across replicas: `None` when another holds the sweep.
pub async fn sweep(
    pool: &PgPool,
    grader: &Grader,
    cache: &GradeCache,
    day: NaiveDate,
) -> Result<Option<Progress>, sqlx::Error> {
    let Some(held) = hold_if_free(pool, SWEEP_LOCK).await? else {
        return Ok(None);
    };
    let result = sweep_locked(pool, grader, cache, day).await;
    // A rollback that fails has lost the connection, and the lock with it.
    let _ = held.rollback().await;
    result.map(Some)
}

async fn sweep_locked(
    pool: &PgPool,
    grader: &Grader,
    cache: &GradeCache,
    day: NaiveDate,
) -> Result<Progress, sqlx::Error> {
    let mut progress = Progress::default();
    // Keyset over the codes, so a subject whose review day somehow stays due cannot hold the
    // sweep in a loop. Each query walks the primary key on from `after`, filtering on `review_on`
    // (it has no index: every grade written would pay an entry there), so the whole sweep is one
    // pass over the grades in code order.
    let mut after = String::new();
    loop {
        let codes: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT credit_code FROM grades WHERE review_on <= $1 AND credit_code > $2
             ORDER BY credit_code LIMIT $3",
        )
        .bind(day)
        .bind(&after)
        .bind(SWEEP_CHUNK)
        .fetch_all(pool)
        .await?;
        let Some(last) = codes.last() else { break };
        after = last.clone();
        let mut transaction = pool.begin().await?;
        let regraded = grader.regrade(&mut transaction, &codes, day, "sweep", Announce::OneBatch, None).await?;
        transaction.commit().await?;
        cache.put_all(&regraded.changed).await;
        progress.subjects += regraded.subjects as u64;
        progress.changed += regraded.changed.len() as u64;
    }
    sqlx::query(
        "INSERT INTO sweeps (day, regraded, changed) VALUES ($1, $2, $3)
         ON CONFLICT (day) DO UPDATE SET regraded = sweeps.regraded + excluded.regraded,
             changed = sweeps.changed + excluded.changed, finished_at = now()",
    )
    .bind(day)
    .bind(progress.subjects as i64)
    .bind(progress.changed as i64)
    .execute(pool)
    .await?;
    if progress.subjects > 0 {
        tracing::info!(%day, regraded = progress.subjects, changed = progress.changed, "daily sweep done");
    }
    Ok(progress)
}

/// Whether the sweep of `day` has completed.
pub async fn swept(pool: &PgPool, day: NaiveDate) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sweeps WHERE day = $1)").bind(day).fetch_one(pool).await
}

/// What grading's background work shows on the admin port: the daily sweep's, so that a day left
/// unswept (grades that time should have moved and did not) can raise an alert rather than wait
/// for a complaint; and how many subjects hold each grade.
#[derive(Clone)]
pub struct SweepMetrics {
    swept_day: Gauge,
    failures: Counter,
    subjects: Family<GradeLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GradeLabels {
    scheme: String,
    /// `A` to `D`.
    grade: String,
}

impl SweepMetrics {
    pub fn register(metrics: &Metrics) -> SweepMetrics {
        let (swept_day, failures) = (Gauge::default(), Counter::default());
        metrics.register(
            "grading_swept_day_timestamp_seconds",
            "the last day the daily sweep is known to have completed, by any replica, as the Unix time it began \
             (China Standard Time)",
            swept_day.clone(),
        );
        metrics.register(
            "grading_sweep_failures",
            "daily sweeps that failed, or whose day could not be looked up; each is tried again at the next tick",
            failures.clone(),
        );
        let subjects = Family::<GradeLabels, Gauge>::default();
        metrics.register(
            "grading_subjects",
            "subjects per grade of each scheme but the internal ones, counted at every sweep tick",
            subjects.clone(),
        );
        SweepMetrics { swept_day, failures, subjects }
    }

    fn swept(&self, day: NaiveDate) {
        self.swept_day.set(start_of(day));
    }

    /// Count the current grades of every scheme that is not internal: an internal scheme's
    /// grades (industry risk classes) are for inspection planning, and even their spread is not
    /// for a dashboard. A grade no subject holds shows 0 rather than its last count.
    async fn count_grades(&self, pool: &PgPool, schemes: &[Scheme]) -> Result<(), sqlx::Error> {
        let public: Vec<&str> =
            schemes.iter().filter(|scheme| !scheme.internal).map(|scheme| scheme.name.as_str()).collect();
        let counts: Vec<(String, i16, i64)> =
            sqlx::query_as("SELECT scheme, grade, count(*) FROM grades WHERE scheme = ANY($1) GROUP BY scheme, grade")
                .bind(&public)
                .fetch_all(pool)
                .await?;
        for scheme in public {
            for grade in [Grade::A, Grade::B, Grade::C, Grade::D] {
                let held = counts
                    .iter()
                    .find(|(name, number, _)| name == scheme && *number == grade_number(grade))
                    .map_or(0, |(_, _, count)| *count);
                let labels = GradeLabels { scheme: scheme.to_owned(), grade: format!("{grade:?}") };
                self.subjects.get_or_create(&labels).set(held);
            }
        }
        Ok(())
    }
}

/// When `day` began in China Standard Time (UTC+8), the calendar days are counted in, as Unix
/// seconds: once a day has been swept, the gauge is less than a day behind the clock.
pub fn start_of(day: NaiveDate) -> i64 {
    day.and_time(chrono::NaiveTime::MIN).and_utc().timestamp() - 8 * 3600
}

/// The daily sweep's background work.
pub struct Sweeper {
    pub pool: PgPool,
    pub store: Store,
    pub grader: Grader,
    pub cache: GradeCache,
    pub metrics: SweepMetrics,
}

impl Sweeper {
    /// Every `interval`, pick up rule sets another replica published and sweep today when that
    /// has not been done, until `stop`.
    pub async fn run(self, interval: Duration, today: fn() -> NaiveDate, stop: impl std::future::Future<Output = ()>) {
        let Sweeper { pool, store, grader, cache, metrics } = self;
        tokio::pin!(stop);
        loop {
            if let Err(error) = grader.schemes.refresh(&store).await {
                tracing::warn!(%error, "rule sets not refreshed");
            }
            let day = today();
            match swept(&pool, day).await {
                Ok(true) => metrics.swept(day),
                Ok(false) => match sweep(&pool, &grader, &cache, day).await {
                    Ok(Some(_)) => metrics.swept(day),
                    // Another replica is sweeping; the next tick finds the day recorded.
                    Ok(None) => {}
                    Err(error) => {
                        metrics.failures.inc();
                        tracing::warn!(%error, %day, "daily sweep failed; it runs again at the next tick");
                    }
                },
                Err(error) => {
                    metrics.failures.inc();
                    tracing::warn!(%error, "cannot tell whether today was swept");
                }
            }
            if let Err(error) = metrics.count_grades(&pool, &grader.schemes.current()).await {
                tracing::warn!(%error, "grades not counted for the metrics");
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// A recompute's scope.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// One scheme, or every scheme.
    pub scheme: Option<String>,
    pub region_prefix: String,
    /// Continue after this code.
    pub resume_after: String,
}

/// Chunks of a recompute under way at once: one evaluating while the others are in Postgres or
/// waiting for their commit's WAL flush. With two the machine was idle a sixth of the time; with
/// three, a million subjects took 4.3-4.6 s in place, 8.3-10.8 s from no grades and 11.2-12.5 s
/// after a new version, against 3.9-4.1, 7.8-8.8 and 10.1-11.1 s with six (five alternated pairs;
/// four and eight in between). Never more than half the pool's connections, so that the events,
/// the sweep and `GetGrade` still find one while a recompute runs.
const CHUNKS_IN_FLIGHT: usize = 6;

/// Chunks a recompute runs at once with a pool of `max_connections`.
fn chunks_in_flight(max_connections: u32) -> usize {
    CHUNKS_IN_FLIGHT.min((max_connections / 2).max(1) as usize)
}

/// Regrade every subject in scope, `chunk` subjects per transaction, in code order, as many chunks
/// at a time as [`chunks_in_flight`] gives for the pool. Memory is that many chunks. After each
/// committed chunk, in order, `report` gets the progress so far and the last code of that chunk (a
/// restart passes it as `resume_after`: every subject up to it is done); when `report` returns
/// false the recompute stops there, and returns once the chunks already under way have finished.
/// A chunk that fails stops it the same way, its error returned after the others have finished. A
/// chunk that commits before an earlier one is reported after it; if the recompute stops in
/// between, a restart regrades it again, which changes nothing.
///
/// One recompute runs at a time across replicas; another waits for it to finish. Chunks fence
/// out other regrades but not each other, so two recomputes' chunks over the same codes could
/// both take a subject's old grade into the history.
pub async fn recompute(
    pool: &PgPool,
    grader: &Grader,
    cache: &GradeCache,
    scope: &Scope,
    as_of: NaiveDate,
    chunk: i64,
    mut report: impl FnMut(Progress, &str) -> bool,
) -> Result<Progress, sqlx::Error> {
    let turn = take_turn(pool).await?;
    let pattern = format!("{}%", scope.region_prefix);
    // Without a region, a chunk is every subject between its first and last code, and its facts
    // and grades are read as that range alone.
    let read = if scope.region_prefix.is_empty() { Read::WholeRange } else { Read::Listed };
    let in_flight = chunks_in_flight(pool.options().get_max_connections());
    // Set when the recompute stops (its client went away, or a chunk failed): no chunk starts after
    // it, and the chunks under way are waited for before the turn is handed on. Otherwise a
    // resumed recompute could regrade their subjects beside them.
    let stopping = Arc::new(AtomicBool::new(false));
    // The closures hand owned handles to their futures: futures that borrow from a closure's
    // captures are not `Send` for every lifetime, which a spawned task needs.
    let chunks = futures::stream::try_unfold(scope.resume_after.clone(), |after| {
        let (pool, pattern, stopping) = (pool.clone(), pattern.clone(), stopping.clone());
        async move {
            if stopping.load(Ordering::Relaxed) {
                return Ok(None);
            }
            next_chunk(pool, after, pattern, chunk).await
        }
    });
    let regraded = chunks
        .enumerate()
        .map(|(number, chunk)| chunk.map(|chunk| (number, chunk)))
        .map_ok(|(number, chunk)| {
            // Each chunk runs as a task of its own: when the recompute stops (its client went
            // away), a chunk already under way still commits and drops the cache entries it
            // changed. Dropped between the two, it left those subjects' old grades in Redis
            // until their TTL.
            let task =
                tokio::spawn(regrade_chunk(grader.clone(), cache.clone(), scope.scheme.clone(), read, as_of, chunk));
            async move {
                match task.await {
                    Ok(result) => result.map(|done| (number, done)),
                    Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                    // Cancelled: the runtime is shutting down, and the pool with it.
                    Err(_) => Err(sqlx::Error::PoolClosed),
                }
            }
        })
        // Unordered: a chunk that finished behind a slower one frees its place at once, where in
        // order it held it until every chunk before it had finished.
        .try_buffer_unordered(in_flight);
    futures::pin_mut!(regraded);
    let mut progress = Progress::default();
    let mut finished = InOrder::default();
    let mut failed = None;
    while let Some(result) = regraded.next().await {
        let (number, done) = match result {
            Ok(done) => done,
            Err(error) => {
                stopping.store(true, Ordering::Relaxed);
                failed.get_or_insert(error);
                continue;
            }
        };
        if stopping.load(Ordering::Relaxed) {
            continue;
        }
        finished.insert(number, done);
        while let Some((subjects, changed, last)) = finished.next() {
            progress.subjects += subjects as u64;
            progress.changed += changed as u64;
            if !report(progress, &last) {
                stopping.store(true, Ordering::Relaxed);
                break;
            }
        }
    }
    if let Some(error) = failed {
        return Err(error);
    }
    if progress.changed > chunk.max(0) as u64 {
        // More than a chunk's worth of grades changed: the planner's statistics of `grades`
        // predate it (after a first recompute they say the table is empty), and until autovacuum
        // gets round to it the next regrades look grades up by bitmap scans and sorts. With
        // fresh statistics the pass in place took 3.8-3.9 s against 4.1-4.3 s, and Postgres's CPU
        // after a new version was 6% lower. Sampling the table takes a fraction of a second.
        if let Err(error) = sqlx::query("ANALYZE grades").execute(pool).await {
            tracing::warn!(%error, "grades not analyzed after the recompute; autovacuum will");
        }
    }
    // A rollback that fails has lost the connection, and the lock with it.
    let _ = turn.rollback().await;
    Ok(progress)
}

/// Begin a transaction and try to take the advisory lock `key` in it (one sweep, one recompute at
/// a time across replicas): the transaction, and whether the lock was free. The lock is a
/// transaction's, so that it goes with the rollback however the work ends (an error, a cancelled
/// or panicking task); a session's stayed on the pooled connection, and then no replica could
/// take it until that connection closed.
async fn try_hold(pool: &PgPool, key: &str) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, bool), sqlx::Error> {
    let mut held = pool.begin().await?;
    // The transaction sits idle while the work runs on other connections, for as long as it
    // takes: a deployment's `idle_in_transaction_session_timeout` would end it part way, and the
    // lock with it, silently, so that a second sweep or recompute could start beside this one. And
    // a recompute waits for the one under way however long that runs, which a deployment's
    // `lock_timeout` or `statement_timeout` would cut short with an error. The work's own
    // transactions keep them all.
    sqlx::query(
        "SELECT set_config('idle_in_transaction_session_timeout', '0', true),
             set_config('lock_timeout', '0', true), set_config('statement_timeout', '0', true)",
    )
    .execute(&mut *held)
    .await?;
    let free: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1))").bind(key).fetch_one(&mut *held).await?;
    Ok((held, free))
}

/// The lock `key` held until the transaction returned ends, or `None` when someone else holds it.
async fn hold_if_free(
    pool: &PgPool,
    key: &str,
) -> Result<Option<sqlx::Transaction<'static, sqlx::Postgres>>, sqlx::Error> {
    let (held, free) = try_hold(pool, key).await?;
    if !free {
        held.rollback().await?;
        return Ok(None);
    }
    Ok(Some(held))
}

/// Wait until no other recompute runs, and hold that until the transaction returned ends.
async fn take_turn(pool: &PgPool) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let (mut turn, free) = try_hold(pool, RECOMPUTE_LOCK).await?;
    if !free {
        tracing::info!("another recompute is under way; this one starts when it has finished");
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind(RECOMPUTE_LOCK).execute(&mut *turn).await?;
    }
    Ok(turn)
}

/// Keys of the advisory locks (hashed with `hashtext`): one sweep, one recompute at a time.
const SWEEP_LOCK: &str = "grading:sweep";
const RECOMPUTE_LOCK: &str = "grading:recompute";

/// Items numbered 0, 1, 2, … that arrive in any order, handed out in their numbers' order: chunks
/// finished ahead of an earlier one wait here (a handful of counts) until it has finished.
struct InOrder<T> {
    next: usize,
    held: std::collections::BTreeMap<usize, T>,
}

impl<T> Default for InOrder<T> {
    fn default() -> Self {
        InOrder { next: 0, held: std::collections::BTreeMap::new() }
    }
}

impl<T> InOrder<T> {
    fn insert(&mut self, number: usize, item: T) {
        self.held.insert(number, item);
    }

    /// The next item in order, if it has arrived.
    fn next(&mut self) -> Option<T> {
        let item = self.held.remove(&self.next)?;
        self.next += 1;
        Some(item)
    }
}

/// A recompute's chunk: its transaction, which holds the recompute fence, and its subjects in
/// code order with their status.
struct Chunk {
    transaction: sqlx::Transaction<'static, sqlx::Postgres>,
    subjects: Vec<(String, i16)>,
}

/// The chunk after `after`: the recompute fence taken (no event's or the sweep's regrade runs
/// until the chunk commits, and none is under way when it reads), its subjects found by keyset,
/// and its last code; `None` at the end. Its subject rows are not locked: other chunks cover
/// other codes, and locking 2,000 rows scattered over the heap cost a tenth of every pass.
async fn next_chunk(
    pool: PgPool,
    after: String,
    pattern: String,
    chunk: i64,
) -> Result<Option<(Chunk, String)>, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    sqlx::query(FENCE_FOR_CHUNKS).execute(&mut *transaction).await?;
    let subjects: Vec<(String, i16)> = sqlx::query_as(
        "SELECT credit_code, status FROM subjects WHERE credit_code > $1 AND region_code LIKE $2
         ORDER BY credit_code LIMIT $3",
    )
    .bind(&after)
    .bind(&pattern)
    .bind(chunk)
    .fetch_all(&mut *transaction)
    .await?;
    let Some((last, _)) = subjects.last() else { return Ok(None) };
    let last = last.clone();
    Ok(Some((Chunk { transaction, subjects }, last)))
}

/// Regrade and commit one chunk; its subjects, changed grades and last code.
async fn regrade_chunk(
    grader: Grader,
    cache: GradeCache,
    scheme: Option<String>,
    read: Read,
    as_of: NaiveDate,
    Chunk { mut transaction, subjects }: Chunk,
) -> Result<(usize, usize, String), sqlx::Error> {
    let regraded = grader
        .regrade_locked(&mut transaction, &subjects, read, as_of, "recompute", Announce::OneBatch, scheme.as_deref())
        .await?;
    transaction.commit().await?;
    cache.forget_all(regraded.replacing()).await;
    let last = subjects.last().map(|(code, _)| code.clone()).unwrap_or_default();
    Ok((regraded.subjects, regraded.changed.len(), last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recompute_takes_at_most_half_the_pool_and_always_one_chunk() {
        assert_eq!(chunks_in_flight(16), CHUNKS_IN_FLIGHT);
        assert_eq!(chunks_in_flight(100), CHUNKS_IN_FLIGHT);
        assert_eq!(chunks_in_flight(8), 4);
        assert_eq!(chunks_in_flight(3), 1);
        assert_eq!(chunks_in_flight(1), 1);
    }

    /// Progress and the resume point only ever move past chunks that have all finished.
    #[test]
    fn chunks_finished_out_of_order_are_handed_out_in_order() {
        let mut finished = InOrder::default();
        finished.insert(2, "c");
        finished.insert(1, "b");
        assert_eq!(finished.next(), None, "chunk 0 has not finished");
        finished.insert(0, "a");
        assert_eq!([finished.next(), finished.next(), finished.next()], [Some("a"), Some("b"), Some("c")]);
        assert_eq!(finished.next(), None);
        finished.insert(4, "e");
        assert_eq!(finished.next(), None, "chunk 3 has not finished");
        finished.insert(3, "d");
        assert_eq!([finished.next(), finished.next()], [Some("d"), Some("e")]);
    }
}
