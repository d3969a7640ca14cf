//! Publishes the outbox to the service's Redis Stream.
//!
//! One relay per service publishes at a time (a transaction-scoped advisory lock), so a stream
//! keeps the commit order of its outbox. Rows are marked published only after Redis accepted them;
//! a crash in between publishes them again, which consumers absorb by their event ids.

use std::time::Duration;

use sqlx::{PgPool, Row};

use crate::config::EventSettings;
use crate::metrics::{Metrics, StreamLabels};
use crate::redis::Redis;

/// Published rows deleted per statement when pruning: short transactions of a few thousand rows.
const PRUNE_BATCH: i64 = 5_000;
/// Statements per pruning round; a round that used them all is followed by another right after
/// the next publishing round, so a large backlog goes without holding publishing up.
const PRUNE_BATCHES_PER_ROUND: u64 = 20;
/// How often the relay looks for published rows past their retention.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The outbox relay of one service.
#[derive(Clone)]
pub struct Relay {
    pool: PgPool,
    redis: Redis,
    producer: String,
    settings: EventSettings,
    metrics: Metrics,
}

/// Why a relay round failed; the loop logs it and tries again.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox query failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("Redis refused the events: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis is not connected")]
    RedisDown,
}

impl Relay {
    pub fn new(pool: PgPool, redis: Redis, producer: &str, settings: EventSettings, metrics: Metrics) -> Relay {
        Relay { pool, redis, producer: producer.to_owned(), settings, metrics }
    }

    /// Run until `stop` resolves.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let idle = Duration::from_millis(self.settings.relay_interval_ms.max(1));
        let mut backoff = idle;
        let mut next_prune = tokio::time::Instant::now();
        loop {
            let pause = match self.publish_batch().await {
                Ok(published) if published as i64 >= self.settings.relay_batch => Duration::ZERO,
                Ok(_) => {
                    backoff = idle;
                    idle
                }
                Err(error) => {
                    tracing::warn!(%error, producer = %self.producer, "outbox relay round failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    backoff
                }
            };
            if tokio::time::Instant::now() >= next_prune {
                next_prune = match self.prune().await {
                    Ok(pruned) if pruned >= PRUNE_BATCH as u64 * PRUNE_BATCHES_PER_ROUND => tokio::time::Instant::now(),
                    Ok(_) => tokio::time::Instant::now() + PRUNE_EVERY,
                    Err(error) => {
                        tracing::warn!(%error, producer = %self.producer, "outbox pruning failed; retrying later");
                        tokio::time::Instant::now() + PRUNE_EVERY
                    }
                };
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Delete published rows older than `events.outbox_retention_hours` from the head of the
    /// outbox, at most [`PRUNE_BATCHES_PER_ROUND`] statements of [`PRUNE_BATCH`] rows; returns how
    /// many went. The stream has a published row by then, and nothing reads it again, but without
    /// this the outbox grew by every event ever written. Unpublished rows are never touched,
    /// however old. One replica prunes at a time (an advisory lock per schema, as for publishing).
    pub async fn prune(&self) -> Result<u64, RelayError> {
        if self.settings.outbox_retention_hours == 0 {
            return Ok(0);
        }
        let hours = i32::try_from(self.settings.outbox_retention_hours).unwrap_or(i32::MAX);
        let mut pruned = 0;
        for _ in 0..PRUNE_BATCHES_PER_ROUND {
            let mut transaction = self.pool.begin().await?;
            if !locked(&mut transaction, ":outbox-prune").await? {
                break;
            }
            // Only the oldest rows are looked at: rows are published in `seq` order, so those past
            // the retention lead the primary key, and a round with nothing due reads one batch of
            // index entries instead of every row a busy service wrote in a week.
            let deleted = sqlx::query(
                "WITH head AS (SELECT seq, published_at FROM outbox ORDER BY seq LIMIT $2)
                 DELETE FROM outbox o USING head h
                 WHERE o.seq = h.seq AND h.published_at < now() - make_interval(hours => $1)",
            )
            .bind(hours)
            .bind(PRUNE_BATCH)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
            transaction.commit().await?;
            pruned += deleted;
            if deleted < PRUNE_BATCH as u64 {
                break;
            }
        }
        self.metrics.outbox_pruned.inc_by(pruned);
        Ok(pruned)
    }

    /// Publish one batch; returns how many rows were published.
    pub async fn publish_batch(&self) -> Result<usize, RelayError> {
        let mut transaction = self.pool.begin().await?;
        if !locked(&mut transaction, ":outbox-relay").await? {
            return Ok(0);
        }
        let rows = sqlx::query(
            "SELECT seq, event_id, event_type, envelope FROM outbox
             WHERE published_at IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(self.settings.relay_batch)
        .fetch_all(&mut *transaction)
        .await?;
        if rows.is_empty() {
            self.metrics.outbox_lag.set(0);
            return Ok(0);
        }
        let mut connection = self.redis.connection().await.ok_or(RelayError::RedisDown)?;
        let key = self.redis.stream_key(&self.producer);
        let mut pipeline = redis::pipe();
        let mut sequences = Vec::with_capacity(rows.len());
        for row in &rows {
            let event_id: uuid::Uuid = row.try_get("event_id")?;
            let event_type: String = row.try_get("event_type")?;
            let envelope: Vec<u8> = row.try_get("envelope")?;
            sequences.push(row.try_get::<i64, _>("seq")?);
            pipeline
                .cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.settings.stream_max_len)
                .arg("*")
                .arg("id")
                .arg(event_id.to_string())
                .arg("type")
                .arg(event_type)
                .arg("payload")
                .arg(envelope)
                .ignore();
        }
        if self.settings.stream_retention_hours > 0 {
            // Entries older than the retention go too, whatever their number: a bulk batch's
            // entry is hundreds of kilobytes, so a count alone does not bound the stream's memory.
            // Exact trimming: it costs what it removes, and nothing when nothing is due.
            let retention_ms = self.settings.stream_retention_hours.saturating_mul(3_600_000);
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_millis() as u64);
            pipeline
                .cmd("XTRIM")
                .arg(&key)
                .arg("MINID")
                .arg(format!("{}-0", now_ms.saturating_sub(retention_ms)))
                .ignore();
        }
        pipeline.query_async::<()>(&mut connection).await?;
        if self.settings.fault_abort_after_publish {
            tracing::error!("fault injection: aborting after publishing and before marking the outbox");
            std::process::abort();
        }
        sqlx::query("UPDATE outbox SET published_at = now() WHERE seq = ANY($1)")
            .bind(&sequences)
            .execute(&mut *transaction)
            .await?;
        // A batch that was not full took everything unpublished. After a full one, the newest seq
        // minus the last published bounds what waits (gaps from rolled-back writes only
        // overstate it), from one primary-key lookup instead of counting the backlog each time.
        let lag: i64 = if (sequences.len() as i64) < self.settings.relay_batch {
            0
        } else {
            let newest: i64 =
                sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM outbox").fetch_one(&mut *transaction).await?;
            newest - sequences.last().copied().unwrap_or(newest)
        };
        transaction.commit().await?;
        self.metrics.outbox_lag.set(lag);
        self.metrics.events_published.get_or_create(&StreamLabels { stream: key }).inc_by(sequences.len() as u64);
        Ok(sequences.len())
    }
}

/// Take the transaction-scoped advisory lock of `purpose` in this schema, if no one holds it. The
/// key is per schema, so one replica of a service does that work at a time.
async fn locked(transaction: &mut sqlx::PgConnection, purpose: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || $1))")
        .bind(purpose)
        .fetch_one(transaction)
        .await
}
