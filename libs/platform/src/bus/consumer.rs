//! Consuming streams in a consumer group, each event handled once in effect.
//!
//! For every entry the consumer opens a transaction, inserts `(consumer, event_id)` into
//! `processed_events`, runs the handler on the same transaction and commits, then acknowledges the
//! entry in Redis. An entry seen again (the relay republished it, or the ack was lost) finds its id
//! already there and is acknowledged without running the handler. A handler that fails leaves the
//! entry pending; it is claimed again after `claim_idle` and retried.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use redis::Value;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use sqlx::{PgConnection, PgPool};
use xinyong_proto::events::v1::Envelope;

use crate::metrics::{Metrics, StreamLabels};
use crate::redis::Redis;

/// A failure inside a handler; the event will be retried.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the event could not be decoded: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("{0}")]
    Other(String),
}

/// What a service does with the events it consumes.
pub trait EventHandler: Send + Sync + 'static {
    /// Handle one event inside `connection`'s transaction. Events of types the handler does not
    /// know should be ignored (return `Ok`).
    fn handle(
        &self,
        connection: &mut PgConnection,
        envelope: &Envelope,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Called once the transaction `handle` wrote into has committed, for effects outside
    /// Postgres that must never run ahead of the database (refreshing a cache). Not called when
    /// the event had been handled before.
    fn committed(&self, envelope: &Envelope) -> impl Future<Output = ()> + Send {
        let _ = envelope;
        std::future::ready(())
    }
}

/// A consumer group reading the streams of some producers into one service.
pub struct Consumer<H> {
    pool: PgPool,
    redis: Redis,
    group: String,
    instance: String,
    streams: Vec<String>,
    handler: Arc<H>,
    metrics: Metrics,
    /// How long an entry may stay unacknowledged (its consumer died) before another takes it over.
    pub claim_idle: Duration,
    /// Longest wait in one XREADGROUP.
    pub block: Duration,
    /// How often the group's lag is read into the metrics.
    pub lag_every: Duration,
    /// How long the service remembers an event it handled (`events.processed_retention_hours`),
    /// counted from when the event was written; `None` remembers every one.
    pub processed_retention: Option<Duration>,
}

/// Handled-event records forgotten per statement, and statements per round.
const FORGET_BATCH: i64 = 5_000;
const FORGET_BATCHES_PER_ROUND: u64 = 20;
/// How often a consumer forgets what is past `processed_retention`.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// Why a consumer round failed; the loop logs it and tries again.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis is not connected")]
    RedisDown,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl<H: EventHandler> Consumer<H> {
    /// `group` is the consuming service's name; `producers` the services whose streams it reads.
    pub fn new(
        pool: PgPool,
        redis: Redis,
        group: &str,
        producers: &[&str],
        handler: H,
        metrics: Metrics,
    ) -> Consumer<H> {
        let streams = producers.iter().map(|producer| redis.stream_key(producer)).collect();
        let block = Duration::from_millis(1000);
        Consumer {
            pool,
            // Its own connection: a blocking read on the shared one would stall the service's
            // cache reads behind it.
            redis: redis.dedicated(block + Duration::from_secs(2)),
            group: group.to_owned(),
            instance: format!("{group}-{}", uuid::Uuid::new_v4().simple()),
            streams,
            handler: Arc::new(handler),
            metrics,
            claim_idle: Duration::from_secs(30),
            block,
            lag_every: Duration::from_secs(15),
            processed_retention: crate::config::EventSettings::default().processed_retention(),
        }
    }

    /// Run until `stop` resolves.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut groups_ready = false;
        // Entries left pending (a handler failed, or an instance died) are taken over once they
        // have been idle for `claim_idle`, so look for them that often.
        let mut last_claim: Option<tokio::time::Instant> = None;
        let mut last_lag: Option<tokio::time::Instant> = None;
        let mut last_forget: Option<tokio::time::Instant> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            let round = async {
                if !groups_ready {
                    self.create_groups().await?;
                    groups_ready = true;
                }
                if last_claim.is_none_or(|at| at.elapsed() >= self.claim_idle) {
                    last_claim = Some(tokio::time::Instant::now());
                    self.claim_stale().await?;
                }
                if last_lag.is_none_or(|at| at.elapsed() >= self.lag_every) {
                    last_lag = Some(tokio::time::Instant::now());
                    self.report_lag().await?;
                }
                if last_forget.is_none_or(|at| at.elapsed() >= FORGET_EVERY) {
                    last_forget = Some(tokio::time::Instant::now());
                    self.forget_processed().await?;
                }
                self.read_new().await
            };
            let pause = tokio::select! {
                () = &mut stop => return,
                result = round => match result {
                    Ok(_) => {
                        backoff = Duration::from_millis(100);
                        Duration::ZERO
                    }
                    Err(error) => {
                        tracing::warn!(%error, group = %self.group, "event consumer round failed; retrying");
                        groups_ready = false;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        backoff
                    }
                },
            };
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Forget the handled events written longer ago than `processed_retention`: without it
    /// `processed_events` grew by every event every consumer ever handled. Event ids are UUID v7,
    /// so "written before" is a range of the primary key. Returns how many were forgotten.
    pub async fn forget_processed(&self) -> Result<u64, ConsumerError> {
        let Some(retention) = self.processed_retention else { return Ok(0) };
        let Ok(retention) = chrono::Duration::from_std(retention) else { return Ok(0) };
        let before = crate::first_v7_at(chrono::Utc::now() - retention);
        let mut forgotten = 0;
        for _ in 0..FORGET_BATCHES_PER_ROUND {
            let deleted = sqlx::query(
                "DELETE FROM processed_events WHERE consumer = $1 AND event_id IN (
                     SELECT event_id FROM processed_events WHERE consumer = $1 AND event_id < $2
                     ORDER BY event_id LIMIT $3)",
            )
            .bind(&self.group)
            .bind(before)
            .bind(FORGET_BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
            forgotten += deleted;
            if deleted < FORGET_BATCH as u64 {
                break;
            }
        }
        self.metrics.processed_pruned.inc_by(forgotten);
        Ok(forgotten)
    }

    async fn connection(&self) -> Result<redis::aio::ConnectionManager, ConsumerError> {
        self.redis.connection().await.ok_or(ConsumerError::RedisDown)
    }

    async fn create_groups(&self) -> Result<(), ConsumerError> {
        let mut connection = self.connection().await?;
        for stream in &self.streams {
            // From the start of the stream: events published before the group existed count too.
            let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(stream)
                .arg(&self.group)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut connection)
                .await;
            match created {
                Ok(()) => {}
                Err(error) if error.code() == Some("BUSYGROUP") => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// Set each stream's lag gauge: what the group has not read yet (Redis counts it from the
    /// entries ever added, so entries trimmed unread still count: they were never handled) plus
    /// what it read and has not acknowledged. Every replica of a service reports its group's.
    async fn report_lag(&self) -> Result<(), ConsumerError> {
        let mut connection = self.connection().await?;
        for stream in &self.streams {
            let groups: Vec<std::collections::HashMap<String, Value>> =
                redis::cmd("XINFO").arg("GROUPS").arg(stream).query_async(&mut connection).await?;
            let ours = groups.iter().find(|group| {
                group.get("name").is_some_and(|name| {
                    redis::from_redis_value_ref::<String>(name).is_ok_and(|name| name == self.group)
                })
            });
            let count = |field: &str| {
                ours.and_then(|group| group.get(field)).and_then(|value| redis::from_redis_value_ref::<i64>(value).ok())
            };
            // Redis answers no lag when it cannot tell (entries deleted from the middle); the
            // gauge then keeps its last value.
            if let (Some(lag), Some(pending)) = (count("lag"), count("pending")) {
                self.metrics.consumer_lag.get_or_create(&StreamLabels { stream: stream.clone() }).set(lag + pending);
            }
        }
        Ok(())
    }

    /// Take over entries that another instance read but never acknowledged.
    async fn claim_stale(&self) -> Result<usize, ConsumerError> {
        let mut handled = 0;
        for stream in &self.streams {
            let mut start = "0-0".to_owned();
            loop {
                let mut connection = self.connection().await?;
                let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                    .arg(stream)
                    .arg(&self.group)
                    .arg(&self.instance)
                    .arg(self.claim_idle.as_millis() as u64)
                    .arg(&start)
                    .arg("COUNT")
                    .arg(100)
                    .query_async(&mut connection)
                    .await?;
                for entry in &reply.claimed {
                    self.process(stream, entry).await?;
                    handled += 1;
                }
                if reply.next_stream_id == "0-0" || reply.claimed.is_empty() {
                    break;
                }
                start = reply.next_stream_id;
            }
        }
        Ok(handled)
    }

    async fn read_new(&self) -> Result<usize, ConsumerError> {
        let mut connection = self.connection().await?;
        let mut command = redis::cmd("XREADGROUP");
        command
            .arg("GROUP")
            .arg(&self.group)
            .arg(&self.instance)
            .arg("COUNT")
            .arg(200)
            .arg("BLOCK")
            .arg(self.block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.streams);
        for _ in &self.streams {
            command.arg(">");
        }
        // The blocking read must outlive the connection's short response timeout.
        let reply: Option<StreamReadReply> =
            match tokio::time::timeout(self.block + Duration::from_secs(2), command.query_async(&mut connection)).await
            {
                Ok(result) => {
                    result.or_else(|error: redis::RedisError| if error.is_timeout() { Ok(None) } else { Err(error) })?
                }
                Err(_elapsed) => None,
            };
        let Some(reply) = reply else { return Ok(0) };
        let mut handled = 0;
        for key in &reply.keys {
            for entry in &key.ids {
                self.process(&key.key, entry).await?;
                handled += 1;
            }
        }
        Ok(handled)
    }

    async fn process(&self, stream: &str, entry: &StreamId) -> Result<(), ConsumerError> {
        match self.handle_entry(entry).await {
            Ok(()) => {}
            Err(HandleFailure::Retry(error)) => {
                // Left pending: claimed again after `claim_idle`.
                tracing::error!(%error, stream, entry = %entry.id, "event handler failed; will retry");
                return Ok(());
            }
            Err(HandleFailure::Poison(reason)) => {
                tracing::error!(stream, entry = %entry.id, %reason, "dropping an event that cannot be read");
            }
        }
        let mut connection = self.connection().await?;
        let _: i64 =
            redis::cmd("XACK").arg(stream).arg(&self.group).arg(&entry.id).query_async(&mut connection).await?;
        self.metrics.events_consumed.get_or_create(&StreamLabels { stream: stream.to_owned() }).inc();
        Ok(())
    }

    async fn handle_entry(&self, entry: &StreamId) -> Result<(), HandleFailure> {
        let payload = match entry.map.get("payload") {
            Some(Value::BulkString(bytes)) => bytes.as_slice(),
            _ => return Err(HandleFailure::Poison("entry has no payload".into())),
        };
        let envelope = Envelope::decode(payload).map_err(|error| HandleFailure::Poison(error.to_string()))?;
        let event_id = uuid::Uuid::parse_str(&envelope.event_id)
            .map_err(|error| HandleFailure::Poison(format!("event id is not a UUID: {error}")))?;
        let mut transaction = self.pool.begin().await.map_err(|error| HandleFailure::Retry(error.into()))?;
        let first_time =
            sqlx::query("INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(&self.group)
                .bind(event_id)
                .execute(&mut *transaction)
                .await
                .map_err(|error| HandleFailure::Retry(error.into()))?
                .rows_affected()
                == 1;
        if first_time {
            self.handler.handle(&mut transaction, &envelope).await.map_err(HandleFailure::Retry)?;
        }
        transaction.commit().await.map_err(|error| HandleFailure::Retry(error.into()))?;
        if first_time {
            self.handler.committed(&envelope).await;
        }
        Ok(())
    }
}

enum HandleFailure {
    Retry(HandlerError),
    Poison(String),
}
